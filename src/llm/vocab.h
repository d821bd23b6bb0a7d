/*
 * vocab.h: tokenizers read from GGUF metadata: SentencePiece (tokenizer.ggml.model = "llama") and
 * byte-level BPE ("gpt2"), producing the same token ids as llama.cpp for the same text.
 *
 * Metadata read (all under "tokenizer.ggml."):
 *   model                 "llama" (SentencePiece) or "gpt2" (byte-level BPE)
 *   tokens                string[n_vocab]          required
 *   scores                f32[n_vocab]             SentencePiece merge priorities (absent = all 0)
 *   token_type            int[n_vocab]             1 normal, 2 unknown, 3 control, 4 user-defined,
 *                                                  5 unused, 6 byte (absent = all normal)
 *   merges                string[n] "left right"   BPE only, required; the index is the rank
 *   pre                   string                   BPE pre-tokenizer: gpt-2/default, llama3/llama-bpe,
 *                                                  qwen2, smollm
 *   bos/eos/eot/unknown/padding_token_id  u32      special ids (out of range = absent, with a warning)
 *   add_bos_token, add_space_prefix       bool
 *
 * Tokenization mirrors llama.cpp: the text is first split around special tokens (user-defined tokens
 * always, control and unknown tokens when parse_special), longest token text first; the remaining text
 * fragments go through the model's algorithm:
 * - SentencePiece: spaces become U+2581, a U+2581 is prepended to a fragment at the start or after a
 *   special token when add_space_prefix (default true); characters are merged pairwise, highest score
 *   first (ties: the leftmost pair), as long as the merged text is a token; leftovers become <0xNN> byte
 *   tokens, else unknown.
 * - Byte-level BPE: the pre-tokenizer cuts the text into words (hand-written matchers of the reference
 *   regexes), each word's bytes are mapped to printable characters (GPT-2's byte-to-unicode table) and
 *   merged by rank.
 * Invalid UTF-8 never fails: SentencePiece falls back to byte tokens, BPE sees U+FFFD for each bad byte.
 *
 * A vocabulary copies everything it needs out of the gguf_file, so the file may be closed after load. It
 * is immutable after load: every function here is thread-safe.
 */
#ifndef BANTER_LLM_VOCAB_H
#define BANTER_LLM_VOCAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gguf_file;
struct llm_vocab;

enum llm_vocab_type {
    LLM_VOCAB_SPM = 1, /* SentencePiece (Llama 2, Gemma) */
    LLM_VOCAB_BPE = 2, /* byte-level BPE (GPT-2, Llama 3, Qwen) */
};

/* tokenizer.ggml.token_type values (llama.cpp's llama_token_type). */
enum llm_token_type {
    LLM_TOKEN_UNDEFINED = 0,
    LLM_TOKEN_NORMAL = 1,
    LLM_TOKEN_UNKNOWN = 2,
    LLM_TOKEN_CONTROL = 3,
    LLM_TOKEN_USER_DEFINED = 4,
    LLM_TOKEN_UNUSED = 5,
    LLM_TOKEN_BYTE = 6,
};

/* Reads the tokenizer of a GGUF file. Returns 0 or a negative banter_status (BANTER_ERR_FORMAT for missing or
 * malformed metadata, BANTER_ERR_UNSUPPORTED for an unknown tokenizer model, BANTER_ERR_NOMEM) with a message
 * in err; *out is NULL on failure. Free with llm_vocab_free (accepts NULL). */
int llm_vocab_load(const struct gguf_file *f, struct llm_vocab **out, char *err, size_t err_len);
void llm_vocab_free(struct llm_vocab *v);

int llm_vocab_n_tokens(const struct llm_vocab *v);
enum llm_vocab_type llm_vocab_type(const struct llm_vocab *v);
/* "spm" or "bpe:<pre-tokenizer>", for logs. */
const char *llm_vocab_describe(const struct llm_vocab *v);
/* Bytes held by the vocabulary (tables included). */
size_t llm_vocab_bytes(const struct llm_vocab *v);

/* Special ids, -1 when absent. EOT comes from metadata or, failing that, the first of "<|eot_id|>",
 * "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>" that the vocabulary has. */
int32_t llm_vocab_bos(const struct llm_vocab *v);
int32_t llm_vocab_eos(const struct llm_vocab *v);
int32_t llm_vocab_eot(const struct llm_vocab *v);
int32_t llm_vocab_unk(const struct llm_vocab *v);
int32_t llm_vocab_pad(const struct llm_vocab *v);
/* Whether the model asks for BOS (tokenizer.ggml.add_bos_token; default true for SentencePiece). */
bool llm_vocab_add_bos(const struct llm_vocab *v);

/* The raw text of a token as stored in the vocabulary (NUL-terminated, owned by v), or NULL if out of range.
 * *len (may be NULL) receives its length. */
const char *llm_vocab_token_text(const struct llm_vocab *v, int32_t tok, size_t *len);
/* The token's type; LLM_TOKEN_UNDEFINED if out of range. */
enum llm_token_type llm_vocab_token_type(const struct llm_vocab *v, int32_t tok);
/* The token whose text is exactly text[0..len), or -1. */
int32_t llm_vocab_find(const struct llm_vocab *v, const char *text, size_t len);

/* True for tokens that end a turn: EOS, EOT, and any of "<end_of_turn>", "<|eot_id|>", "<|eom_id|>",
 * "<|im_end|>", "<|end|>", "<|endoftext|>" present in the vocabulary. */
bool llm_token_is_eog(const struct llm_vocab *v, int32_t tok);

/* Tokenizes len bytes of text. add_bos prepends BOS when the model asks for it (llm_vocab_add_bos) and has
 * one; EOS is never appended. parse_special recognizes control tokens written in the text. Writes at most
 * n_max ids to out (may be NULL when n_max is 0); *n_out receives the full count. Returns 0,
 * BANTER_ERR_INVALID_ARG when the count exceeds n_max (out then holds the first n_max ids), or
 * BANTER_ERR_NOMEM. Scratch memory is allocated per call and freed before returning. */
int llm_tokenize(const struct llm_vocab *v, const char *text, size_t len, bool add_bos, bool parse_special,
                 int32_t *out, size_t n_max, size_t *n_out);

/* The text of one token as it appears in output: SentencePiece U+2581 becomes a space, byte tokens their
 * byte, BPE characters their bytes. Control and unknown tokens give "" unless render_special; unused tokens
 * always give "". Returns the full byte length (the copy into buf is truncated to len; no NUL is written), or
 * -1 for an id out of range. */
int llm_token_to_piece(const struct llm_vocab *v, int32_t tok, bool render_special, char *buf, size_t len);

/* Concatenates the pieces of n tokens into buf (NUL-terminated when len > 0, truncated to fit). When the
 * tokenizer adds a space prefix, the space that starts the first piece of text is dropped, so that
 * detokenize(tokenize(s)) == s. Returns the full length without the NUL (may be >= len), or -1 for an invalid
 * token. */
long llm_detokenize(const struct llm_vocab *v, const int32_t *toks, size_t n, bool render_special, char *buf,
                    size_t len);

#endif
