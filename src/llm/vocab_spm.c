/*
 * vocab_spm.c: SentencePiece tokenization as llama.cpp does it for "llama" vocabularies.
 *
 * The text (spaces written as U+2581, optionally with one prepended) is cut into UTF-8 characters, each a
 * symbol in a doubly linked list. Every adjacent pair whose concatenation is a token goes into a max-heap
 * keyed by that token's score (ties: the leftmost pair). Popping the best pair merges the right symbol into
 * the left one and offers the two new neighbouring pairs; entries made stale by an earlier merge are
 * recognised by their length and skipped. What remains are tokens, or characters that are not; those are
 * spelled out as <0xNN> byte tokens (one unknown token when the vocabulary lacks them).
 *
 * Memory is proportional to the fragment: one allocation per call for the escaped text, the symbols and the
 * heap (at most 3 entries per character: n-1 initial pairs plus 2 per merge).
 */
#include "core/core.h"
#include "llm/unicode.h"
#include "llm/vocab_impl.h"

#include <string.h>

struct sym {
    uint32_t off; /* into the escaped text */
    uint32_t n;   /* bytes; 0 once merged into its left neighbour */
    int32_t prev, next;
};

struct bigram {
    float score;
    int32_t left, right;
    uint32_t size; /* bytes of left + right when the pair was offered */
};

struct heap {
    struct bigram *a;
    size_t n;
};

static bool better(const struct bigram *x, const struct bigram *y)
{
    return x->score > y->score || (x->score == y->score && x->left < y->left);
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

static void try_pair(const struct llm_vocab *v, const char *esc, const struct sym *syms, struct heap *h,
                     int32_t l, int32_t r)
{
    if (l < 0 || r < 0) return;
    uint32_t size = syms[l].n + syms[r].n;
    int32_t tok = llm_vocab_find(v, esc + syms[l].off, size);
    if (tok < 0) return;
    heap_push(h, (struct bigram){v->scores[tok], l, r, size});
}

int llm_spm_tokenize(const struct llm_vocab *v, const char *text, size_t len, bool space_prefix,
                     struct llm_tok_sink *sink)
{
    /* Escaped length: at most 3 bytes per input byte plus the prefix; each character is at least a byte. */
    size_t cap;
    if (core_mul_overflow(len, 3, &cap) || core_add_overflow(cap, 3, &cap) || cap > INT32_MAX)
        return BANTER_ERR_NOMEM;
    size_t bytes = cap + cap * sizeof(struct sym) + 3 * cap * sizeof(struct bigram);
    char *mem = core_malloc(bytes);
    if (!mem) return BANTER_ERR_NOMEM;
    struct bigram *heap_mem = (struct bigram *)mem;
    struct sym *syms = (struct sym *)(mem + 3 * cap * sizeof(struct bigram));
    char *esc = (char *)(syms + cap);

    size_t n_esc = 0;
    static const char space[3] = {(char)0xE2, (char)0x96, (char)0x81};
    if (space_prefix) {
        memcpy(esc, space, 3);
        n_esc = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(esc + n_esc, space, 3);
            n_esc += 3;
        } else {
            esc[n_esc++] = text[i];
        }
    }

    int32_t n_syms = 0;
    for (size_t off = 0; off < n_esc;) {
        size_t k = llm_utf8_len((unsigned char)esc[off]);
        if (k > n_esc - off) k = n_esc - off;
        syms[n_syms] =
            (struct sym){(uint32_t)off, (uint32_t)k, n_syms - 1, off + k == n_esc ? -1 : n_syms + 1};
        n_syms++;
        off += k;
    }

    struct heap h = {heap_mem, 0};
    for (int32_t i = 1; i < n_syms; i++)
        try_pair(v, esc, syms, &h, i - 1, i);
    while (h.n > 0) {
        struct bigram b = heap_pop(&h);
        struct sym *l = &syms[b.left], *r = &syms[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) syms[r->next].prev = b.left;
        try_pair(v, esc, syms, &h, l->prev, b.left);
        try_pair(v, esc, syms, &h, b.left, l->next);
    }

    for (int32_t i = n_syms > 0 ? 0 : -1; i >= 0; i = syms[i].next) {
        const char *s = esc + syms[i].off;
        int32_t tok = llm_vocab_find(v, s, syms[i].n);
        if (tok >= 0) {
            llm_sink_push(sink, tok);
            continue;
        }
        /* A character that is no token is spelled in byte tokens; without them it is one unknown token. */
        bool have_bytes = true;
        for (uint32_t j = 0; j < syms[i].n; j++)
            have_bytes = have_bytes && v->byte_tok[(unsigned char)s[j]] >= 0;
        if (have_bytes) {
            for (uint32_t j = 0; j < syms[i].n; j++)
                llm_sink_push(sink, v->byte_tok[(unsigned char)s[j]]);
        } else if (v->unk >= 0) {
            llm_sink_push(sink, v->unk);
        }
    }
    core_free(mem);
    return 0;
}
