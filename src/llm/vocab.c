/*
 * vocab.c: loading a tokenizer from GGUF metadata, lookups, the split around special tokens, and turning
 * tokens back into text. The merge algorithms live in vocab_spm.c and vocab_bpe.c.
 *
 * Loading is linear in the vocabulary: texts are copied into one pool and hashed once (a 262144-token Gemma
 * vocabulary loads in a few milliseconds). Every array taken from the file is checked for its element type
 * and length, every id for its range; a bad file gives BANTER_ERR_FORMAT naming the key.
 *
 * The special-token split follows llama.cpp's tokenizer_st_partition: for each special token, longest text
 * first, every occurrence in the text fragments not yet claimed becomes its own fragment. A 64 Kbit table of
 * the byte pairs present in the text skips, without a search, the many special tokens that cannot occur.
 */
#include "llm/vocab.h"

#include "core/core.h"
#include "gguf/gguf.h"
#include "llm/unicode.h"
#include "llm/vocab_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------------------------
 * Lookups.
 */

int32_t llm_vocab_find(const struct llm_vocab *v, const char *text, size_t len)
{
    uint64_t h = llm_hash_bytes(LLM_HASH_INIT, text, len);
    uint32_t tag = llm_hash_tag(h);
    for (size_t i = llm_hash_slot(h, v->hash_mask);; i = (i + 1) & v->hash_mask) {
        struct llm_slot e = v->hash[i];
        if (e.id < 0) return -1;
        if (e.tag == tag && v->tok_len[e.id] == len && memcmp(llm_tok_text(v, e.id), text, len) == 0)
            return e.id;
    }
}

int32_t llm_bpe_rank(const struct llm_vocab *v, const char *left, size_t nl, const char *right, size_t nr)
{
    if (!v->merge_hash) return -1;
    uint64_t h = llm_hash_bytes(LLM_HASH_INIT, left, nl);
    h = llm_hash_bytes(h, " ", 1);
    h = llm_hash_bytes(h, right, nr);
    uint32_t tag = llm_hash_tag(h);
    for (size_t i = llm_hash_slot(h, v->merge_mask);; i = (i + 1) & v->merge_mask) {
        struct llm_slot e = v->merge_hash[i];
        if (e.id < 0) return -1;
        if (e.tag != tag) continue;
        int32_t r = e.id;
        const char *m = v->merge_pool + v->merge_off[r];
        if (v->merge_split[r] == nl && v->merge_len[r] == nl + 1 + nr && memcmp(m, left, nl) == 0 &&
            memcmp(m + nl + 1, right, nr) == 0)
            return r;
    }
}

static size_t table_size(size_t n)
{
    size_t s = 16;
    while (s < 2 * n)
        s *= 2;
    return s;
}

/* ---------------------------------------------------------------------------------------------------------------
 * Loading.
 */

static bool is_int_type(enum gguf_vtype t)
{
    return t == GGUF_U8 || t == GGUF_I8 || t == GGUF_U16 || t == GGUF_I16 || t == GGUF_U32 || t == GGUF_I32 ||
           t == GGUF_U64 || t == GGUF_I64;
}

/* Reads an optional token id; out-of-range or mistyped values count as absent, with a warning, because real
 * files sometimes carry a padding id one past the vocabulary. */
static int32_t read_id(const struct gguf_file *f, const char *key, int32_t dflt, int n_tokens)
{
    int64_t id;
    int rc = gguf_get_i64(f, key, &id);
    if (rc == BANTER_ERR_NOT_FOUND) return dflt < n_tokens ? dflt : -1;
    if (rc != 0 || id < 0 || id >= n_tokens) {
        if (!(rc == 0 && id == -1)) core_warn("vocab: ignoring %s (not a token id below %d)", key, n_tokens);
        return -1;
    }
    return (int32_t)id;
}

static bool read_bool(const struct gguf_file *f, const char *key, bool dflt)
{
    bool b;
    return gguf_get_bool(f, key, &b) == 0 ? b : dflt;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static const struct {
    const char *name;
    enum llm_bpe_pre pre;
} pre_names[] = {
    {"default", LLM_PRE_GPT2},
    {"gpt-2", LLM_PRE_GPT2},
    {"gpt2", LLM_PRE_GPT2},
    {"mpt", LLM_PRE_GPT2},
    {"olmo", LLM_PRE_GPT2},
    {"llama3", LLM_PRE_LLAMA3},
    {"llama-v3", LLM_PRE_LLAMA3},
    {"llama-bpe", LLM_PRE_LLAMA3},
    {"falcon3", LLM_PRE_LLAMA3},
    {"qwen2", LLM_PRE_QWEN2},
    {"deepseek-r1-qwen", LLM_PRE_QWEN2},
    {"smollm", LLM_PRE_SMOLLM},
};

static const char *pre_name(enum llm_bpe_pre p)
{
    switch (p) {
    case LLM_PRE_GPT2:
        return "gpt-2";
    case LLM_PRE_LLAMA3:
        return "llama3";
    case LLM_PRE_QWEN2:
        return "qwen2";
    case LLM_PRE_SMOLLM:
        return "smollm";
    }
    return "?";
}

static void build_byte_map(struct llm_vocab *v)
{
    /* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes map in order
     * to U+0100 and up, so every byte becomes a visible character and no token contains a raw space. */
    for (int i = 0; i < 324; i++)
        v->cpt_to_byte[i] = -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        int cp = printable ? b : 256 + n++;
        v->byte_to_cpt[b] = (uint16_t)cp;
        v->cpt_to_byte[cp] = (int16_t)b;
    }
}

static int load_merges(struct llm_vocab *v, const struct gguf_file *f, char *err, size_t err_len)
{
    const struct gguf_kv *kv = gguf_find(f, "tokenizer.ggml.merges");
    if (!kv || kv->type != GGUF_ARRAY || kv->arr_type != GGUF_STRING || !kv->arr_strs) {
        core_errf(err, err_len, "tokenizer.ggml.merges: missing or not a string array (needed by BPE)");
        return BANTER_ERR_FORMAT;
    }
    size_t n = (size_t)kv->arr_n, total = 0;
    if (kv->arr_n > INT32_MAX) {
        core_errf(err, err_len, "tokenizer.ggml.merges: %llu merges is too many",
                  (unsigned long long)kv->arr_n);
        return BANTER_ERR_FORMAT;
    }
    for (size_t i = 0; i < n; i++) {
        if (core_add_overflow(total, (size_t)kv->arr_strs[i].len + 1, &total) || total > UINT32_MAX) {
            core_errf(err, err_len, "tokenizer.ggml.merges: texts too large");
            return BANTER_ERR_FORMAT;
        }
    }
    v->n_merges = n;
    v->merge_mask = table_size(n) - 1;
    v->merge_pool = core_malloc(total ? total : 1);
    v->merge_off = core_malloc((n ? n : 1) * sizeof(uint32_t));
    v->merge_len = core_malloc((n ? n : 1) * sizeof(uint32_t));
    v->merge_split = core_malloc((n ? n : 1) * sizeof(uint32_t));
    v->merge_hash = core_malloc((v->merge_mask + 1) * sizeof(struct llm_slot));
    if (!v->merge_pool || !v->merge_off || !v->merge_len || !v->merge_split || !v->merge_hash) {
        core_errf(err, err_len, "out of memory loading %zu merges", n);
        return BANTER_ERR_NOMEM;
    }
    v->n_bytes += total + 3 * n * sizeof(uint32_t) + (v->merge_mask + 1) * sizeof(struct llm_slot);
    memset(v->merge_hash, 0xff, (v->merge_mask + 1) * sizeof(struct llm_slot));
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const struct gguf_str *s = &kv->arr_strs[i];
        /* The split is the first space after the first byte, as the reference does it: a left part may itself
         * be a single space in vocabularies that are not byte-level. */
        const char *sp = s->len > 1 ? memchr(s->ptr + 1, ' ', (size_t)s->len - 1) : NULL;
        if (!sp) {
            core_errf(err, err_len, "tokenizer.ggml.merges[%zu]: \"%.*s\" is not \"left right\"", i,
                      (int)(s->len > 64 ? 64 : s->len), s->ptr);
            return BANTER_ERR_FORMAT;
        }
        memcpy(v->merge_pool + off, s->ptr, (size_t)s->len);
        v->merge_pool[off + s->len] = 0;
        v->merge_off[i] = (uint32_t)off;
        v->merge_len[i] = (uint32_t)s->len;
        v->merge_split[i] = (uint32_t)(sp - s->ptr);
        off += (size_t)s->len + 1;
        uint64_t h = llm_hash_bytes(LLM_HASH_INIT, s->ptr, (size_t)s->len);
        uint32_t tag = llm_hash_tag(h);
        for (size_t j = llm_hash_slot(h, v->merge_mask);; j = (j + 1) & v->merge_mask) {
            struct llm_slot e = v->merge_hash[j];
            if (e.id < 0) {
                v->merge_hash[j] = (struct llm_slot){(int32_t)i, tag};
                break;
            }
            /* A repeated merge keeps its first (best) rank. */
            if (e.tag == tag && v->merge_len[e.id] == s->len &&
                memcmp(v->merge_pool + v->merge_off[e.id], s->ptr, (size_t)s->len) == 0)
                break;
        }
    }
    return 0;
}

static void add_eog(struct llm_vocab *v, int32_t id)
{
    if (id < 0) return;
    for (int i = 0; i < v->n_eog; i++)
        if (v->eog[i] == id) return;
    if (v->n_eog < (int)(sizeof(v->eog) / sizeof(v->eog[0]))) v->eog[v->n_eog++] = id;
}

int llm_vocab_load(const struct gguf_file *f, struct llm_vocab **out, char *err, size_t err_len)
{
    *out = NULL;
    char model[32];
    int rc = gguf_get_str(f, "tokenizer.ggml.model", model, sizeof model);
    if (rc != 0) {
        core_errf(err, err_len, "tokenizer.ggml.model: %s (the file has no usable tokenizer)",
                  rc == BANTER_ERR_NOT_FOUND ? "missing" : "not a string");
        return BANTER_ERR_FORMAT;
    }
    enum llm_vocab_type type;
    if (strcmp(model, "llama") == 0)
        type = LLM_VOCAB_SPM;
    else if (strcmp(model, "gpt2") == 0)
        type = LLM_VOCAB_BPE;
    else {
        core_errf(err, err_len, "tokenizer.ggml.model \"%s\" is not supported (only \"llama\" and \"gpt2\")",
                  model);
        return BANTER_ERR_UNSUPPORTED;
    }

    const struct gguf_kv *tokens = gguf_find(f, "tokenizer.ggml.tokens");
    if (!tokens || tokens->type != GGUF_ARRAY || tokens->arr_type != GGUF_STRING || !tokens->arr_strs) {
        core_errf(err, err_len, "tokenizer.ggml.tokens: missing or not a string array");
        return BANTER_ERR_FORMAT;
    }
    if (tokens->arr_n == 0 || tokens->arr_n > (1u << 24)) {
        core_errf(err, err_len, "tokenizer.ggml.tokens: %llu tokens (expected 1 to %u)",
                  (unsigned long long)tokens->arr_n, 1u << 24);
        return BANTER_ERR_FORMAT;
    }
    size_t n = (size_t)tokens->arr_n, total = 0;
    for (size_t i = 0; i < n; i++) {
        if (core_add_overflow(total, (size_t)tokens->arr_strs[i].len + 1, &total) || total > UINT32_MAX) {
            core_errf(err, err_len, "tokenizer.ggml.tokens: texts too large");
            return BANTER_ERR_FORMAT;
        }
    }
    const struct gguf_kv *scores = gguf_find(f, "tokenizer.ggml.scores");
    if (scores && (scores->type != GGUF_ARRAY ||
                   (scores->arr_type != GGUF_F32 && scores->arr_type != GGUF_F64) || scores->arr_n != n)) {
        core_errf(err, err_len, "tokenizer.ggml.scores: expected %zu floats", n);
        return BANTER_ERR_FORMAT;
    }
    const struct gguf_kv *ttype = gguf_find(f, "tokenizer.ggml.token_type");
    if (ttype && (ttype->type != GGUF_ARRAY || !is_int_type(ttype->arr_type) || ttype->arr_n != n)) {
        core_errf(err, err_len, "tokenizer.ggml.token_type: expected %zu integers", n);
        return BANTER_ERR_FORMAT;
    }

    struct llm_vocab *v = core_calloc(1, sizeof *v);
    if (!v) goto nomem;
    v->type = type;
    v->n_tokens = (int)n;
    v->hash_mask = table_size(n) - 1;
    v->pool = core_malloc(total);
    v->tok_off = core_malloc(n * sizeof(uint32_t));
    v->tok_len = core_malloc(n * sizeof(uint32_t));
    v->scores = core_malloc(n * sizeof(float));
    v->types = core_malloc(n);
    v->hash = core_malloc((v->hash_mask + 1) * sizeof(struct llm_slot));
    if (!v->pool || !v->tok_off || !v->tok_len || !v->scores || !v->types || !v->hash) goto nomem;
    v->n_bytes = sizeof *v + total + n * (2 * sizeof(uint32_t) + sizeof(float) + 1) +
                 (v->hash_mask + 1) * sizeof(struct llm_slot);

    memset(v->hash, 0xff, (v->hash_mask + 1) * sizeof(struct llm_slot));
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const struct gguf_str *s = &tokens->arr_strs[i];
        memcpy(v->pool + off, s->ptr, (size_t)s->len);
        v->pool[off + s->len] = 0;
        v->tok_off[i] = (uint32_t)off;
        v->tok_len[i] = (uint32_t)s->len;
        off += (size_t)s->len + 1;
        v->scores[i] = scores ? (float)gguf_arr_f64(scores, i) : 0.0f;
        int64_t t = ttype ? gguf_arr_i64(ttype, i) : LLM_TOKEN_NORMAL;
        v->types[i] = (uint8_t)(t >= LLM_TOKEN_NORMAL && t <= LLM_TOKEN_BYTE ? t : LLM_TOKEN_UNDEFINED);
        /* When two tokens share a text, the later id wins, as in the reference. */
        uint64_t h = llm_hash_bytes(LLM_HASH_INIT, s->ptr, (size_t)s->len);
        uint32_t tag = llm_hash_tag(h);
        for (size_t j = llm_hash_slot(h, v->hash_mask);; j = (j + 1) & v->hash_mask) {
            struct llm_slot e = v->hash[j];
            if (e.id < 0 || (e.tag == tag && v->tok_len[e.id] == s->len &&
                             memcmp(llm_tok_text(v, e.id), s->ptr, (size_t)s->len) == 0)) {
                v->hash[j] = (struct llm_slot){(int32_t)i, tag};
                break;
            }
        }
    }

    char pre[64] = "default";
    if (type == LLM_VOCAB_BPE) {
        rc = gguf_get_str(f, "tokenizer.ggml.pre", pre, sizeof pre);
        if (rc != 0 && rc != BANTER_ERR_NOT_FOUND) {
            core_errf(err, err_len, "tokenizer.ggml.pre: not a string");
            llm_vocab_free(v);
            return BANTER_ERR_FORMAT;
        }
        size_t k = 0, n_names = sizeof pre_names / sizeof pre_names[0];
        while (k < n_names && strcmp(pre, pre_names[k].name) != 0)
            k++;
        if (k == n_names)
            core_warn("vocab: pre-tokenizer \"%s\" is not known; using GPT-2's, so tokens may differ", pre);
        v->pre = k < n_names ? pre_names[k].pre : LLM_PRE_GPT2;
        v->ignore_merges = v->pre == LLM_PRE_LLAMA3;
        rc = load_merges(v, f, err, err_len);
        if (rc != 0) {
            llm_vocab_free(v);
            return rc;
        }
        snprintf(v->describe, sizeof v->describe, "bpe:%s", pre_name(v->pre));
    } else {
        snprintf(v->describe, sizeof v->describe, "spm");
    }
    build_byte_map(v);

    bool spm = type == LLM_VOCAB_SPM;
    v->bos = read_id(f, "tokenizer.ggml.bos_token_id", spm ? 1 : -1, v->n_tokens);
    v->eos = read_id(f, "tokenizer.ggml.eos_token_id", spm ? 2 : -1, v->n_tokens);
    v->unk = read_id(f, "tokenizer.ggml.unknown_token_id", spm ? 0 : -1, v->n_tokens);
    v->pad = read_id(f, "tokenizer.ggml.padding_token_id", -1, v->n_tokens);
    v->eot = read_id(f, "tokenizer.ggml.eot_token_id", -1, v->n_tokens);
    v->add_bos = read_bool(f, "tokenizer.ggml.add_bos_token", spm || v->pre == LLM_PRE_LLAMA3);
    v->add_space_prefix = spm && read_bool(f, "tokenizer.ggml.add_space_prefix", true);

    static const char *const eot_texts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                            "<|endoftext|>"};
    static const char *const eog_texts[] = {"<end_of_turn>", "<|eot_id|>", "<|eom_id|>",
                                            "<|im_end|>",    "<|end|>",    "<|endoftext|>"};
    for (size_t i = 0; v->eot < 0 && i < sizeof eot_texts / sizeof eot_texts[0]; i++)
        v->eot = llm_vocab_find(v, eot_texts[i], strlen(eot_texts[i]));
    add_eog(v, v->eos);
    add_eog(v, v->eot);
    for (size_t i = 0; i < sizeof eog_texts / sizeof eog_texts[0]; i++) {
        int32_t id = llm_vocab_find(v, eog_texts[i], strlen(eog_texts[i]));
        if (id < 0) continue;
        add_eog(v, id);
        /* Turn markers are control tokens even where a converter forgot to say so; the reference fixes them
         * up the same way, and it matters for parse_special and for rendering. */
        if (v->types[id] != LLM_TOKEN_CONTROL) v->types[id] = LLM_TOKEN_CONTROL;
    }

    for (int b = 0; b < 256; b++) {
        static const char hex[] = "0123456789ABCDEF";
        char name[7] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0};
        char raw = (char)b;
        int32_t id = llm_vocab_find(v, name, 6);
        v->byte_tok[b] = id >= 0 ? id : llm_vocab_find(v, &raw, 1);
    }

    /* Special tokens sorted by text length (longest first), then id: keys pack both into one integer. */
    size_t n_special = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t t = v->types[i];
        n_special += (t == LLM_TOKEN_CONTROL || t == LLM_TOKEN_USER_DEFINED || t == LLM_TOKEN_UNKNOWN) &&
                     v->tok_len[i] > 0;
    }
    uint64_t *keys = core_malloc((n_special ? n_special : 1) * sizeof(uint64_t));
    v->special = core_malloc((n_special ? n_special : 1) * sizeof(int32_t));
    if (!keys || !v->special) {
        core_free(keys);
        goto nomem;
    }
    v->n_bytes += n_special * sizeof(int32_t);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t t = v->types[i];
        if ((t == LLM_TOKEN_CONTROL || t == LLM_TOKEN_USER_DEFINED || t == LLM_TOKEN_UNKNOWN) &&
            v->tok_len[i] > 0)
            keys[k++] = ((uint64_t)(UINT32_MAX - v->tok_len[i]) << 32) | i;
    }
    qsort(keys, n_special, sizeof(uint64_t), cmp_u64);
    for (size_t i = 0; i < n_special; i++)
        v->special[i] = (int32_t)(keys[i] & 0xffffffffu);
    v->n_special = n_special;
    core_free(keys);

    *out = v;
    return 0;

nomem:
    llm_vocab_free(v);
    core_errf(err, err_len, "out of memory loading a vocabulary of %zu tokens", n);
    return BANTER_ERR_NOMEM;
}

void llm_vocab_free(struct llm_vocab *v)
{
    if (!v) return;
    core_free(v->merge_hash);
    core_free(v->merge_split);
    core_free(v->merge_len);
    core_free(v->merge_off);
    core_free(v->merge_pool);
    core_free(v->special);
    core_free(v->hash);
    core_free(v->types);
    core_free(v->scores);
    core_free(v->tok_len);
    core_free(v->tok_off);
    core_free(v->pool);
    core_free(v);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Accessors.
 */

int llm_vocab_n_tokens(const struct llm_vocab *v)
{
    return v->n_tokens;
}
enum llm_vocab_type llm_vocab_type(const struct llm_vocab *v)
{
    return v->type;
}
const char *llm_vocab_describe(const struct llm_vocab *v)
{
    return v->describe;
}
size_t llm_vocab_bytes(const struct llm_vocab *v)
{
    return v->n_bytes;
}
int32_t llm_vocab_bos(const struct llm_vocab *v)
{
    return v->bos;
}
int32_t llm_vocab_eos(const struct llm_vocab *v)
{
    return v->eos;
}
int32_t llm_vocab_eot(const struct llm_vocab *v)
{
    return v->eot;
}
int32_t llm_vocab_unk(const struct llm_vocab *v)
{
    return v->unk;
}
int32_t llm_vocab_pad(const struct llm_vocab *v)
{
    return v->pad;
}
bool llm_vocab_add_bos(const struct llm_vocab *v)
{
    return v->add_bos;
}

const char *llm_vocab_token_text(const struct llm_vocab *v, int32_t tok, size_t *len)
{
    if (tok < 0 || tok >= v->n_tokens) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = v->tok_len[tok];
    return llm_tok_text(v, tok);
}

enum llm_token_type llm_vocab_token_type(const struct llm_vocab *v, int32_t tok)
{
    return tok >= 0 && tok < v->n_tokens ? (enum llm_token_type)v->types[tok] : LLM_TOKEN_UNDEFINED;
}

bool llm_token_is_eog(const struct llm_vocab *v, int32_t tok)
{
    for (int i = 0; i < v->n_eog; i++)
        if (v->eog[i] == tok) return true;
    return false;
}

/* ---------------------------------------------------------------------------------------------------------------
 * Tokenizing: the special-token split, then the model's algorithm on each text fragment.
 */

struct frag {
    size_t off, len;
    int32_t tok; /* >= 0: a special token; -1: text[off .. off+len) still to tokenize */
};

struct frag_list {
    struct frag *a;
    size_t n, cap;
};

static int frag_push(struct frag_list *l, size_t off, size_t len, int32_t tok)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        struct frag *a = core_realloc(l->a, cap * sizeof *a);
        if (!a) return BANTER_ERR_NOMEM;
        l->a = a;
        l->cap = cap;
    }
    l->a[l->n++] = (struct frag){off, len, tok};
    return 0;
}

/* Splits every text fragment of *cur around the occurrences of special token id into *next, then swaps the
 * two. Only called when the token occurs somewhere. */
static int split_special(const struct llm_vocab *v, const char *text, int32_t id, struct frag_list *cur,
                         struct frag_list *next)
{
    const char *s = llm_tok_text(v, id);
    size_t sl = v->tok_len[id];
    next->n = 0;
    for (size_t i = 0; i < cur->n; i++) {
        struct frag fr = cur->a[i];
        if (fr.tok >= 0) {
            if (frag_push(next, fr.off, fr.len, fr.tok)) return BANTER_ERR_NOMEM;
            continue;
        }
        size_t off = fr.off, end = fr.off + fr.len;
        while (off < end) {
            const char *m = memmem(text + off, end - off, s, sl);
            if (!m) break;
            size_t at = (size_t)(m - text);
            if (at > off && frag_push(next, off, at - off, -1)) return BANTER_ERR_NOMEM;
            if (frag_push(next, at, sl, id)) return BANTER_ERR_NOMEM;
            off = at + sl;
        }
        if (off < end && frag_push(next, off, end - off, -1)) return BANTER_ERR_NOMEM;
    }
    struct frag_list t = *cur;
    *cur = *next;
    *next = t;
    return 0;
}

static bool occurs(const char *text, const struct frag_list *l, const char *s, size_t sl)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->a[i].tok < 0 && l->a[i].len >= sl && memmem(text + l->a[i].off, l->a[i].len, s, sl))
            return true;
    return false;
}

int llm_tokenize(const struct llm_vocab *v, const char *text, size_t len, bool add_bos, bool parse_special,
                 int32_t *out, size_t n_max, size_t *n_out)
{
    struct llm_tok_sink sink = {out, out ? n_max : 0, 0};
    struct frag_list cur = {0}, next = {0};
    uint64_t *pairs = NULL;
    int rc = 0;
    *n_out = 0;

    if (add_bos && v->add_bos && v->bos >= 0) llm_sink_push(&sink, v->bos);
    if (len > 0 && (rc = frag_push(&cur, 0, len, -1))) goto done;

    if (len > 0 && v->n_special > 0) {
        /* Which bytes and byte pairs occur in the text: a special token whose first two bytes never occur
         * together cannot match, and most of a large vocabulary's special tokens are ruled out this way. */
        pairs = core_calloc(65536 / 64 + 4, sizeof(uint64_t));
        if (!pairs) {
            rc = BANTER_ERR_NOMEM;
            goto done;
        }
        uint64_t *single = pairs + 65536 / 64;
        const unsigned char *u = (const unsigned char *)text;
        for (size_t i = 0; i < len; i++) {
            single[u[i] >> 6] |= 1ull << (u[i] & 63);
            if (i + 1 < len) {
                unsigned p = (unsigned)u[i] << 8 | u[i + 1];
                pairs[p >> 6] |= 1ull << (p & 63);
            }
        }
        for (size_t k = 0; k < v->n_special; k++) {
            int32_t id = v->special[k];
            if (!parse_special && v->types[id] != LLM_TOKEN_USER_DEFINED) continue;
            size_t sl = v->tok_len[id];
            if (sl > len) continue;
            const unsigned char *s = (const unsigned char *)llm_tok_text(v, id);
            if (sl == 1) {
                if (!(single[s[0] >> 6] >> (s[0] & 63) & 1)) continue;
            } else {
                unsigned p = (unsigned)s[0] << 8 | s[1];
                if (!(pairs[p >> 6] >> (p & 63) & 1)) continue;
            }
            if (!occurs(text, &cur, (const char *)s, sl)) continue;
            if ((rc = split_special(v, text, id, &cur, &next))) goto done;
        }
    }

    /* SentencePiece prefixes a space to text at the start and after each special token. */
    bool prev_special = true;
    for (size_t i = 0; i < cur.n; i++) {
        const struct frag *fr = &cur.a[i];
        if (fr->tok >= 0) {
            llm_sink_push(&sink, fr->tok);
            prev_special = true;
            continue;
        }
        if (v->type == LLM_VOCAB_SPM)
            rc = llm_spm_tokenize(v, text + fr->off, fr->len, v->add_space_prefix && prev_special, &sink);
        else
            rc = llm_bpe_tokenize(v, text + fr->off, fr->len, &sink);
        if (rc) goto done;
        prev_special = false;
    }
    *n_out = sink.n;
    if (sink.n > n_max) rc = BANTER_ERR_INVALID_ARG;

done:
    core_free(pairs);
    core_free(next.a);
    core_free(cur.a);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------------------
 * From tokens back to text.
 */

struct outbuf {
    char *buf;
    size_t cap;
    size_t pos;
    bool strip; /* drop the next byte written if it is a space */
};

static void ob_put(struct outbuf *o, const char *s, size_t n)
{
    if (n && o->strip) {
        o->strip = false;
        if (s[0] == ' ') {
            s++;
            n--;
        }
    }
    if (o->pos < o->cap) {
        size_t k = o->cap - o->pos < n ? o->cap - o->pos : n;
        memcpy(o->buf + o->pos, s, k);
    }
    o->pos += n;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static bool emit_piece(const struct llm_vocab *v, int32_t tok, bool render_special, struct outbuf *o)
{
    if (tok < 0 || tok >= v->n_tokens) return false;
    const char *s = llm_tok_text(v, tok);
    size_t n = v->tok_len[tok];
    switch ((enum llm_token_type)v->types[tok]) {
    case LLM_TOKEN_CONTROL:
    case LLM_TOKEN_UNKNOWN:
        if (render_special) ob_put(o, s, n);
        return true;
    case LLM_TOKEN_USER_DEFINED:
        ob_put(o, s, n);
        return true;
    case LLM_TOKEN_UNUSED:
    case LLM_TOKEN_UNDEFINED:
        return true;
    case LLM_TOKEN_BYTE:
        if (v->type == LLM_VOCAB_SPM) {
            if (n == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>' && hexval(s[3]) >= 0 && hexval(s[4]) >= 0) {
                char b = (char)(hexval(s[3]) << 4 | hexval(s[4]));
                ob_put(o, &b, 1);
            } else {
                ob_put(o, s, n);
            }
            return true;
        }
        break; /* BPE vocabularies decode byte tokens like normal ones */
    case LLM_TOKEN_NORMAL:
        break;
    }
    if (v->type == LLM_VOCAB_SPM) {
        /* U+2581 (E2 96 81) stands for a space. */
        size_t start = 0;
        for (size_t i = 0; i < n; i++) {
            if (i + 2 < n && (unsigned char)s[i] == 0xE2 && (unsigned char)s[i + 1] == 0x96 &&
                (unsigned char)s[i + 2] == 0x81) {
                ob_put(o, s + start, i - start);
                ob_put(o, " ", 1);
                start = i + 3;
                i += 2;
            }
        }
        ob_put(o, s + start, n - start);
        return true;
    }
    /* Byte-level BPE: each character stands for one byte; characters outside the table pass through. */
    for (size_t i = 0; i < n;) {
        size_t k;
        uint32_t cp = llm_utf8_decode(s + i, n - i, &k);
        if (cp < 324 && v->cpt_to_byte[cp] >= 0) {
            char b = (char)v->cpt_to_byte[cp];
            ob_put(o, &b, 1);
        } else {
            ob_put(o, s + i, k);
        }
        i += k;
    }
    return true;
}

int llm_token_to_piece(const struct llm_vocab *v, int32_t tok, bool render_special, char *buf, size_t len)
{
    struct outbuf o = {buf, buf ? len : 0, 0, false};
    if (!emit_piece(v, tok, render_special, &o)) return -1;
    return o.pos > INT32_MAX ? INT32_MAX : (int)o.pos;
}

long llm_detokenize(const struct llm_vocab *v, const int32_t *toks, size_t n, bool render_special, char *buf,
                    size_t len)
{
    struct outbuf o = {buf, buf && len ? len - 1 : 0, 0, v->add_space_prefix};
    for (size_t i = 0; i < n; i++)
        if (!emit_piece(v, toks[i], render_special, &o)) return -1;
    if (buf && len) buf[o.pos < o.cap ? o.pos : o.cap] = 0;
    return (long)o.pos;
}
