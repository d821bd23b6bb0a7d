/*
 * vocab_impl.h: the vocabulary's layout, shared by vocab.c (loading, special tokens, pieces) and the two
 * algorithms in vocab_spm.c and vocab_bpe.c. Not for use outside those files.
 *
 * Token texts live in one pool, each NUL-terminated, addressed by offset. Lookups by text go through an open
 * addressing hash table (power-of-two size, at most half full) of token ids; BPE merge ranks through a second
 * one keyed by the merge's "left right" text, so a pair can be looked up as left bytes, a space, right bytes
 * without building a string.
 */
#ifndef BANTER_LLM_VOCAB_IMPL_H
#define BANTER_LLM_VOCAB_IMPL_H

#include "llm/vocab.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum llm_bpe_pre {
    /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    LLM_PRE_GPT2 = 0,
    /* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|
     * \s+(?!\S)|\s+ */
    LLM_PRE_LLAMA3,
    LLM_PRE_QWEN2,  /* as LLAMA3 but \p{N} one digit at a time */
    LLM_PRE_SMOLLM, /* every digit alone, then GPT2 */
};

/* A hash table entry: the id (-1 = empty) and 32 more bits of the text's hash, so that a probe rarely has to
 * look at the text itself (which would be a cache miss into the pool). */
struct llm_slot {
    int32_t id;
    uint32_t tag;
};

struct llm_vocab {
    enum llm_vocab_type type;
    enum llm_bpe_pre pre;
    char describe[48];
    int n_tokens;

    char *pool;            /* token texts, each NUL-terminated */
    uint32_t *tok_off;     /* [n_tokens] offset of each text in pool */
    uint32_t *tok_len;     /* [n_tokens] */
    float *scores;         /* [n_tokens] */
    uint8_t *types;        /* [n_tokens] enum llm_token_type */
    struct llm_slot *hash; /* [hash_mask + 1] token ids by text */
    size_t hash_mask;

    /* Byte-level BPE merges: text "left right", the split point, and a hash of ranks. */
    char *merge_pool;
    uint32_t *merge_off;   /* [n_merges] */
    uint32_t *merge_len;   /* [n_merges] length of "left right" */
    uint32_t *merge_split; /* [n_merges] length of left */
    size_t n_merges;
    struct llm_slot *merge_hash; /* [merge_mask + 1] ranks */
    size_t merge_mask;

    /* Tokens split out of the text before the algorithm runs, longest text first. */
    int32_t *special;
    size_t n_special;

    int32_t bos, eos, eot, unk, pad;
    int32_t eog[8];
    int n_eog;
    bool add_bos, add_space_prefix, ignore_merges;

    int32_t byte_tok[256];     /* SentencePiece <0xNN> tokens, -1 when absent */
    uint16_t byte_to_cpt[256]; /* GPT-2's printable stand-in for each byte */
    int16_t cpt_to_byte[324];  /* the inverse, -1 for code points that stand for no byte */

    size_t n_bytes;
};

/* Where tokenizers write: ids beyond n_max are counted, not stored. */
struct llm_tok_sink {
    int32_t *out;
    size_t n_max;
    size_t n;
};

static inline void llm_sink_push(struct llm_tok_sink *s, int32_t t)
{
    if (s->n < s->n_max) s->out[s->n] = t;
    s->n++;
}

static inline const char *llm_tok_text(const struct llm_vocab *v, int32_t id)
{
    return v->pool + v->tok_off[id];
}

/* FNV-1a, 64-bit: token texts are short, so a byte loop is as fast as anything. Its low bits are poorly mixed
 * for texts that differ only near the end (numbered tokens like "<unused123>"), so table indices go through
 * llm_hash_slot, a multiplicative finalizer. */
#define LLM_HASH_INIT 0xcbf29ce484222325ull
static inline uint64_t llm_hash_bytes(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static inline size_t llm_hash_slot(uint64_t h, size_t mask)
{
    h ^= h >> 32;
    h *= 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 29) & mask;
}

static inline uint32_t llm_hash_tag(uint64_t h)
{
    return (uint32_t)h;
}

/* The rank of merging left[0..nl) with right[0..nr), or -1. */
int32_t llm_bpe_rank(const struct llm_vocab *v, const char *left, size_t nl, const char *right, size_t nr);

/* The pre-tokenizer alone, for tests: writes the byte offset where each word ends (at most max) and the
 * word count. Returns 0, BANTER_ERR_INVALID_ARG when there are more than max words, or BANTER_ERR_NOMEM. */
int llm_bpe_split_words(enum llm_bpe_pre pre, const char *text, size_t len, size_t *ends, size_t max,
                        size_t *n_words);

/* Tokenize one text fragment (no special tokens inside). Return 0 or BANTER_ERR_NOMEM. */
int llm_spm_tokenize(const struct llm_vocab *v, const char *text, size_t len, bool space_prefix,
                     struct llm_tok_sink *sink);
int llm_bpe_tokenize(const struct llm_vocab *v, const char *text, size_t len, struct llm_tok_sink *sink);

#endif
