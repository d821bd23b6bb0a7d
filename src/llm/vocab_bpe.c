/*
 * vocab_bpe.c: byte-level BPE tokenization (GPT-2, Llama 3, Qwen 2, SmolLM vocabularies), as llama.cpp
 * does it.
 *
 * 1. The text is decoded to code points (U+FFFD for each byte that does not decode) and classified once.
 * 2. A pre-tokenizer cuts it into words. The reference expresses these as regular expressions; here each is a
 *    hand-written matcher that follows the alternatives in order, with the same results as llama.cpp's own
 *    matchers (including "\s+(?!\S)", which leaves the last space of a run to the next word).
 * 3. Each word's UTF-8 bytes are replaced by GPT-2's printable stand-ins (the vocabulary is written in them).
 *    With ignore_merges (Llama 3) a word that is itself a token is emitted whole.
 * 4. Characters are merged pairwise by merge rank, lowest first (ties: the leftmost pair), with a min-heap
 *    and stale entries skipped as in vocab_spm.c. Each final symbol is a token; a symbol that is not (a
 *    vocabulary without some byte) falls back to its single bytes, dropping those that are not tokens.
 *
 * Scratch memory is allocated once per call: code points and classes for the fragment, word ends, and buffers
 * sized for the longest word.
 */
#include "core/core.h"
#include "llm/unicode.h"
#include "llm/vocab_impl.h"

#include <string.h>

#define OUT_OF_RANGE 0xFFFFFFFFu

struct words {
    uint32_t *end; /* end (exclusive, in code points) of each word */
    size_t n;
    size_t prev; /* end of the last word */
};

static void add_word(struct words *w, size_t end)
{
    if (end > w->prev) w->end[w->n++] = (uint32_t)end;
    w->prev = end;
}

/* Inside the matchers, positions at or past `end` read as OUT_OF_RANGE with no class, like the reference's.
 * (Functions, not macros: the matchers pass arguments like ++pos.) */
static inline uint32_t cpt_at(const uint32_t *cp, size_t end, size_t p)
{
    return p < end ? cp[p] : OUT_OF_RANGE;
}

static inline unsigned flags_at(const uint8_t *fl, size_t end, size_t p)
{
    return p < end ? fl[p] : 0u;
}

#define CPT(p) cpt_at(cp, end, (p))
#define FL(p) flags_at(fl, end, (p))

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ over cp[ini .. end). */
static void split_gpt2(const uint32_t *cp, const uint8_t *fl, size_t ini, size_t end, struct words *w)
{
    const unsigned LNW = LLM_CPT_LETTER | LLM_CPT_NUMBER | LLM_CPT_WHITESPACE;
    w->prev = ini;
    for (size_t pos = ini; pos < end;) {
        uint32_t c = cp[pos];
        unsigned f = fl[pos];
        if (c == '\'' && pos + 1 < end) {
            uint32_t c1 = cp[pos + 1];
            if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
                add_word(w, pos += 2);
                continue;
            }
            if (pos + 2 < end) {
                uint32_t c2 = cp[pos + 2];
                if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
                    add_word(w, pos += 3);
                    continue;
                }
            }
        }
        unsigned f2 = c == ' ' ? FL(pos + 1) : f;
        if (f2 & LLM_CPT_LETTER) {
            pos += c == ' ';
            while (f2 & LLM_CPT_LETTER)
                f2 = FL(++pos);
            add_word(w, pos);
            continue;
        }
        if (f2 & LLM_CPT_NUMBER) {
            pos += c == ' ';
            while (f2 & LLM_CPT_NUMBER)
                f2 = FL(++pos);
            add_word(w, pos);
            continue;
        }
        if (!(f2 & LNW) && f2) {
            pos += c == ' ';
            while (!(f2 & LNW) && f2)
                f2 = FL(++pos);
            add_word(w, pos);
            continue;
        }
        size_t n_ws = 0;
        while (FL(pos + n_ws) & LLM_CPT_WHITESPACE)
            n_ws++;
        if (n_ws > 1 && CPT(pos + n_ws) != OUT_OF_RANGE) {
            add_word(w, pos += n_ws - 1);
            continue;
        }
        if (n_ws > 0) {
            add_word(w, pos += n_ws);
            continue;
        }
        add_word(w, ++pos);
    }
}

static uint32_t ascii_lower(uint32_t c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* The Llama 3 pattern over cp[ini .. end):
 *     (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}|
 *     ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * (the second line's alternative starts with a space). Llama 3 takes up to 3 digits at a time, Qwen 2 one.
 * Only ASCII letters can complete a contraction, so ASCII case folding is all the (?i:) needs. */
static void split_llama3(const uint32_t *cp, const uint8_t *fl, size_t ini, size_t end, size_t max_digits,
                         struct words *w)
{
    const unsigned LNW = LLM_CPT_LETTER | LLM_CPT_NUMBER | LLM_CPT_WHITESPACE;
    w->prev = ini;
    for (size_t pos = ini; pos < end;) {
        uint32_t c = cp[pos];
        unsigned f = fl[pos];
        if (c == '\'' && pos + 1 < end) {
            uint32_t c1 = ascii_lower(cp[pos + 1]);
            if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
                add_word(w, pos += 2);
                continue;
            }
            if (pos + 2 < end) {
                uint32_t c2 = ascii_lower(cp[pos + 2]);
                if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
                    add_word(w, pos += 3);
                    continue;
                }
            }
        }
        if (!(c == '\r' || c == '\n' || (f & LLM_CPT_NUMBER))) {
            if ((f & LLM_CPT_LETTER) || (FL(pos + 1) & LLM_CPT_LETTER)) {
                pos++;
                while (FL(pos) & LLM_CPT_LETTER)
                    pos++;
                add_word(w, pos);
                continue;
            }
        }
        if (f & LLM_CPT_NUMBER) {
            size_t run = pos;
            while (FL(pos) & LLM_CPT_NUMBER) {
                if (++pos - run >= max_digits) {
                    add_word(w, pos);
                    run = pos;
                }
            }
            add_word(w, pos);
            continue;
        }
        unsigned f2 = c == ' ' ? FL(pos + 1) : f;
        if (!(f2 & LNW) && f) {
            pos += c == ' ';
            while (!(f2 & LNW) && f2)
                f2 = FL(++pos);
            uint32_t c2 = CPT(pos);
            while (c2 == '\r' || c2 == '\n')
                c2 = CPT(++pos);
            add_word(w, pos);
            continue;
        }
        size_t n_ws = 0, last_rn = 0;
        while (FL(pos + n_ws) & LLM_CPT_WHITESPACE) {
            uint32_t c2 = cp[pos + n_ws];
            if (c2 == '\r' || c2 == '\n') last_rn = pos + n_ws + 1;
            n_ws++;
        }
        if (last_rn > 0) {
            add_word(w, pos = last_rn);
            continue;
        }
        if (n_ws > 1 && CPT(pos + n_ws) != OUT_OF_RANGE) {
            add_word(w, pos += n_ws - 1);
            continue;
        }
        if (n_ws > 0) {
            add_word(w, pos += n_ws);
            continue;
        }
        add_word(w, ++pos);
    }
#undef CPT
#undef FL
}

/* SmolLM: every digit is a word of its own, and the text between digits goes through the GPT-2 matcher. */
static void split_smollm(const uint32_t *cp, const uint8_t *fl, size_t n, struct words *w)
{
    for (size_t pos = 0; pos < n;) {
        if (fl[pos] & LLM_CPT_NUMBER) {
            w->prev = pos;
            add_word(w, ++pos);
            continue;
        }
        size_t q = pos;
        while (q < n && !(fl[q] & LLM_CPT_NUMBER))
            q++;
        split_gpt2(cp, fl, pos, q, w);
        pos = q;
    }
}

static void split(enum llm_bpe_pre pre, const uint32_t *cp, const uint8_t *fl, size_t n, struct words *w)
{
    switch (pre) {
    case LLM_PRE_GPT2:
        split_gpt2(cp, fl, 0, n, w);
        break;
    case LLM_PRE_LLAMA3:
        split_llama3(cp, fl, 0, n, 3, w);
        break;
    case LLM_PRE_QWEN2:
        split_llama3(cp, fl, 0, n, 1, w);
        break;
    case LLM_PRE_SMOLLM:
        split_smollm(cp, fl, n, w);
        break;
    }
}

int llm_bpe_split_words(enum llm_bpe_pre pre, const char *text, size_t len, size_t *ends, size_t max,
                        size_t *n_words)
{
    *n_words = 0;
    size_t cap = len ? len : 1;
    uint32_t *cp = core_malloc(cap * sizeof(uint32_t));
    uint32_t *wend = core_malloc(cap * sizeof(uint32_t));
    size_t *byte_end = core_malloc(cap * sizeof(size_t));
    uint8_t *fl = core_malloc(cap);
    int rc = 0;
    if (!cp || !wend || !byte_end || !fl) {
        rc = BANTER_ERR_NOMEM;
        goto done;
    }
    size_t n = 0;
    for (size_t off = 0; off < len; n++) {
        size_t k;
        cp[n] = llm_utf8_decode(text + off, len - off, &k);
        fl[n] = (uint8_t)llm_unicode_flags(cp[n]);
        off += k;
        byte_end[n] = off;
    }
    struct words w = {wend, 0, 0};
    split(pre, cp, fl, n, &w);
    for (size_t i = 0; i < w.n && i < max; i++)
        ends[i] = byte_end[w.end[i] - 1];
    *n_words = w.n;
    if (w.n > max) rc = BANTER_ERR_INVALID_ARG;
done:
    core_free(fl);
    core_free(byte_end);
    core_free(wend);
    core_free(cp);
    return rc;
}

struct sym {
    uint32_t off, n;
    int32_t prev, next;
};

struct bigram {
    int32_t rank;
    int32_t left, right;
    uint32_t size;
};

struct heap {
    struct bigram *a;
    size_t n;
};

static bool better(const struct bigram *x, const struct bigram *y)
{
    return x->rank < y->rank || (x->rank == y->rank && x->left < y->left);
}

static void heap_push(struct heap *h, struct bigram b)
{
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!better(&b, &h->a[p])) break;
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i] = b;
}

static struct bigram heap_pop(struct heap *h)
{
    struct bigram top = h->a[0], last = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && better(&h->a[c + 1], &h->a[c])) c++;
        if (!better(&h->a[c], &last)) break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (h->n > 0) h->a[i] = last;
    return top;
}

static void try_pair(const struct llm_vocab *v, const char *word, const struct sym *syms, struct heap *h,
                     int32_t l, int32_t r)
{
    if (l < 0 || r < 0) return;
    int32_t rank = llm_bpe_rank(v, word + syms[l].off, syms[l].n, word + syms[r].off, syms[r].n);
    if (rank < 0) return;
    heap_push(h, (struct bigram){rank, l, r, syms[l].n + syms[r].n});
}

/* Merges one byte-encoded word and emits its tokens. syms and heap_mem have room for n_bytes characters. */
static void merge_word(const struct llm_vocab *v, const char *word, size_t n_bytes, struct sym *syms,
                       struct bigram *heap_mem, struct llm_tok_sink *sink)
{
    if (v->ignore_merges) {
        int32_t tok = llm_vocab_find(v, word, n_bytes);
        if (tok >= 0) {
            llm_sink_push(sink, tok);
            return;
        }
    }
    int32_t n_syms = 0;
    for (size_t off = 0; off < n_bytes;) {
        size_t k = llm_utf8_len((unsigned char)word[off]);
        if (k > n_bytes - off) k = n_bytes - off;
        syms[n_syms] =
            (struct sym){(uint32_t)off, (uint32_t)k, n_syms - 1, off + k == n_bytes ? -1 : n_syms + 1};
        n_syms++;
        off += k;
    }
    struct heap h = {heap_mem, 0};
    for (int32_t i = 1; i < n_syms; i++)
        try_pair(v, word, syms, &h, i - 1, i);
    while (h.n > 0) {
        struct bigram b = heap_pop(&h);
        struct sym *l = &syms[b.left], *r = &syms[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) syms[r->next].prev = b.left;
        try_pair(v, word, syms, &h, l->prev, b.left);
        try_pair(v, word, syms, &h, b.left, l->next);
    }
    for (int32_t i = 0; i < n_syms; i++) {
        if (syms[i].n == 0) continue;
        const char *s = word + syms[i].off;
        int32_t tok = llm_vocab_find(v, s, syms[i].n);
        if (tok >= 0) {
            llm_sink_push(sink, tok);
            continue;
        }
        for (uint32_t j = 0; j < syms[i].n; j++) {
            int32_t bt = llm_vocab_find(v, s + j, 1);
            if (bt >= 0) llm_sink_push(sink, bt);
        }
    }
}

int llm_bpe_tokenize(const struct llm_vocab *v, const char *text, size_t len, struct llm_tok_sink *sink)
{
    /* One code point per input byte at most. */
    size_t per = sizeof(uint32_t) + 1 + sizeof(uint32_t), bytes;
    if (core_mul_overflow(len, per, &bytes) || len > UINT32_MAX) return BANTER_ERR_NOMEM;
    char *mem = core_malloc(bytes ? bytes : 1);
    if (!mem) return BANTER_ERR_NOMEM;
    uint32_t *cp = (uint32_t *)mem;
    uint32_t *ends = cp + len;
    uint8_t *fl = (uint8_t *)(ends + len);

    size_t n = 0;
    for (size_t off = 0; off < len; n++) {
        size_t k;
        cp[n] = llm_utf8_decode(text + off, len - off, &k);
        fl[n] = (uint8_t)llm_unicode_flags(cp[n]);
        off += k;
    }

    struct words w = {ends, 0, 0};
    split(v->pre, cp, fl, n, &w);

    /* Each code point is at most 4 UTF-8 bytes, each byte at most 2 bytes once encoded. */
    size_t longest = 0;
    for (size_t i = 0, start = 0; i < w.n; start = w.end[i++])
        if (w.end[i] - start > longest) longest = w.end[i] - start;
    size_t max_bytes = 4 * longest, scratch;
    if (core_mul_overflow(max_bytes, 2 + sizeof(struct sym) + 3 * sizeof(struct bigram), &scratch)) {
        core_free(mem);
        return BANTER_ERR_NOMEM;
    }
    char *wmem = core_malloc(scratch ? scratch : 1);
    if (!wmem) {
        core_free(mem);
        return BANTER_ERR_NOMEM;
    }
    struct bigram *heap_mem = (struct bigram *)wmem;
    struct sym *syms = (struct sym *)(heap_mem + 3 * max_bytes);
    char *word = (char *)(syms + max_bytes);

    for (size_t i = 0, start = 0; i < w.n; start = w.end[i++]) {
        size_t nb = 0;
        for (size_t j = start; j < w.end[i]; j++) {
            char u[4];
            size_t k = llm_utf8_encode(cp[j], u);
            for (size_t b = 0; b < k; b++)
                nb += llm_utf8_encode(v->byte_to_cpt[(unsigned char)u[b]], word + nb);
        }
        merge_word(v, word, nb, syms, heap_mem, sink);
    }
    core_free(wmem);
    core_free(mem);
    return 0;
}
