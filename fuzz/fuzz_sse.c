/*
 * fuzz_sse.c: libFuzzer target for the chat-completions event-stream parser (src/agent/sse.c).
 *
 * The first input byte picks where the rest is split in two (its share of 255 of the length) and, through
 * its low bit, whether the line limit is the default 1 MiB or a small 64 bytes (so the limit paths are
 * reached by inputs of fuzzer size). The rest is parsed three ways: whole, split at that position, and byte
 * by byte, each followed by agent_sse_finish. Splitting must not change anything: the status, whether [DONE]
 * came, the number of events and pieces, and the text delivered must agree, or the target aborts. Every piece
 * must be non-empty, and a failed parser must stay failed.
 *
 * Seeds: none committed; the fuzzer finds "data:", JSON and line ends quickly from the comparisons in the
 * parser. A hand-written seed directory can be passed on the command line.
 */
#include "agent/sse.h"
#include "banter.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct outcome {
    int status;
    bool done;
    int n_events, n_pieces;
    char *text; /* [len], grown as pieces arrive */
    size_t len, cap;
};

static int on_piece(const char *piece, size_t len, void *user)
{
    struct outcome *o = user;
    if (len == 0) abort();
    if (o->len + len > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        while (cap < o->len + len)
            cap *= 2;
        char *t = realloc(o->text, cap);
        if (!t) abort();
        o->text = t;
        o->cap = cap;
    }
    memcpy(o->text + o->len, piece, len);
    o->len += len;
    return 1;
}

/* Parses data[0, n) fed in pieces of `step` bytes, or (step 0) in two pieces split at `cut`. */
static void parse(const uint8_t *data, size_t n, size_t max_line, size_t cut, size_t step, struct outcome *o)
{
    memset(o, 0, sizeof *o);
    struct agent_sse p;
    agent_sse_init(&p, max_line);
    char err[256];
    int rc = 0;
    if (step == 0) {
        rc = agent_sse_feed(&p, (const char *)data, cut, on_piece, o, err, sizeof err);
        if (!rc) rc = agent_sse_feed(&p, (const char *)data + cut, n - cut, on_piece, o, err, sizeof err);
    } else {
        for (size_t at = 0; at < n && !rc; at += step) {
            size_t k = n - at < step ? n - at : step;
            rc = agent_sse_feed(&p, (const char *)data + at, k, on_piece, o, err, sizeof err);
        }
    }
    if (!rc) rc = agent_sse_finish(&p, on_piece, o, err, sizeof err);
    if (rc) {
        if (!err[0]) abort(); /* every failure has a message */
        /* Sticky: later calls fail the same way. */
        if (agent_sse_feed(&p, "data: [DONE]\n\n", 14, on_piece, o, NULL, 0) != rc) abort();
        if (agent_sse_finish(&p, on_piece, o, NULL, 0) != rc) abort();
    }
    o->status = rc;
    o->done = p.done;
    o->n_events = p.n_events;
    o->n_pieces = p.n_pieces;
    agent_sse_deinit(&p);
}

static void same(const struct outcome *a, const struct outcome *b)
{
    if (a->status != b->status || a->done != b->done || a->n_events != b->n_events ||
        a->n_pieces != b->n_pieces || a->len != b->len || (a->len && memcmp(a->text, b->text, a->len)))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const uint8_t *body = data + 1;
    size_t n = size - 1;
    if (n > 1 << 16) return 0; /* byte-by-byte parsing of larger inputs is slow and finds nothing new */
    size_t max_line = (data[0] & 1) ? 64 : 0;
    size_t cut = n * data[0] / 255;

    /* An exact-size heap copy, so ASan sees any read past the end. */
    uint8_t *copy = malloc(n ? n : 1);
    if (!copy) return 0;
    if (n) memcpy(copy, body, n);

    struct outcome whole, split, bytes;
    parse(copy, n, max_line, 0, n ? n : 1, &whole);
    parse(copy, n, max_line, cut, 0, &split);
    parse(copy, n, max_line, 0, 1, &bytes);
    same(&whole, &split);
    same(&whole, &bytes);
    if (whole.status != 0 && whole.status != BANTER_ERR_FORMAT && whole.status != BANTER_ERR_IO) abort();
    free(whole.text);
    free(split.text);
    free(bytes.text);
    free(copy);
    return 0;
}
