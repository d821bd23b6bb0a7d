/*
 * chunker.c: clause chunking of a streamed text for speech synthesis (see chunker.h for the rules and why).
 *
 * The chunker works byte by byte: each byte is appended to the pending buffer, and only a whitespace byte (or
 * the last byte of a CJK sentence end) can complete a boundary, so the decision always looks backwards at
 * text that is already complete. Everything is ASCII-driven except the few multi-byte punctuation marks
 * recognized explicitly (… ” ’ » 。！？), which keeps it safe against pieces that split UTF-8 characters.
 */
#include "tts/chunker.h"

#include "core/core.h"

#include <limits.h>
#include <string.h>

/* Words that end with a dot but rarely end a sentence. Compared case-insensitively, without their final dot.
 * "etc" and "no" are left out on purpose: they end sentences often enough that cutting there is the better
 * mistake. */
static const char *const ABBREVIATIONS[] = {
    "mr",     "mrs",  "ms",  "dr",  "prof", "sr",  "jr",   "st",   "vs",   "e.g", "i.e", "cf",
    "approx", "inc",  "ltd", "co",  "corp", "mt",  "ft",   "fig",  "dept", "gen", "gov", "rev",
    "sgt",    "capt", "col", "lt",  "u.s",  "a.m", "p.m",  "ph.d", "est",  "vol", "jan", "feb",
    "mar",    "apr",  "jun", "jul", "aug",  "sep", "sept", "oct",  "nov",  "dec", NULL,
};

enum boundary {
    B_NONE,
    B_COMMA,    /* , */
    B_CLAUSE,   /* ; : */
    B_SENTENCE, /* . ! ? … */
};

static bool is_space(unsigned char b)
{
    return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\f' || b == '\v';
}

static unsigned char lower(unsigned char b)
{
    return (b >= 'A' && b <= 'Z') ? (unsigned char)(b - 'A' + 'a') : b;
}

/* Length of the UTF-8 sequence a lead byte announces (1 for ASCII and for stray continuation bytes). */
static size_t utf8_len(unsigned char b)
{
    if (b < 0xC0) return 1;
    if (b < 0xE0) return 2;
    if (b < 0xF0) return 3;
    return 4;
}

/* Does text [0, end) end with the byte sequence s? */
static bool ends_with(const char *text, size_t end, const char *s)
{
    size_t n = strlen(s);
    return end >= n && memcmp(text + end - n, s, n) == 0;
}

void tts_chunker_init(struct tts_chunker *c, const struct tts_chunker_config *cfg)
{
    memset(c, 0, sizeof *c);
    if (cfg) c->cfg = *cfg;
    if (c->cfg.first_min_words <= 0) c->cfg.first_min_words = 2;
    if (c->cfg.comma_min_words <= 0) c->cfg.comma_min_words = 8;
    if (c->cfg.clause_min_words <= 0) c->cfg.clause_min_words = 4;
    if (c->cfg.max_bytes == 0) c->cfg.max_bytes = 300;
    if (c->cfg.first_max_words <= 0) c->cfg.first_max_words = INT_MAX;
    if (c->cfg.first_max_bytes == 0) c->cfg.first_max_bytes = c->cfg.max_bytes;
    /* Room for a whole UTF-8 character past the limit, so a hard cut always finds a character boundary. */
    if (c->cfg.max_bytes > TTS_CHUNKER_CAP - 8) c->cfg.max_bytes = TTS_CHUNKER_CAP - 8;
    if (c->cfg.max_bytes < 16) c->cfg.max_bytes = 16;
    if (c->cfg.first_max_bytes > c->cfg.max_bytes) c->cfg.first_max_bytes = c->cfg.max_bytes;
    if (c->cfg.first_max_bytes < 16) c->cfg.first_max_bytes = 16;
}

static int count_words(const char *s, size_t n)
{
    int words = 0;
    bool in_word = false;
    for (size_t i = 0; i < n; i++) {
        bool sp = is_space((unsigned char)s[i]);
        if (!sp && !in_word) words++;
        in_word = !sp;
    }
    return words;
}

/* Emits buf[0, end) trimmed, then drops buf[0, consumed) from the buffer. */
static int emit_prefix(struct tts_chunker *c, size_t end, size_t consumed, tts_chunk_fn emit, void *user)
{
    BANTER_ASSERT(end <= consumed && consumed <= c->len);
    size_t s = 0, e = end;
    while (s < e && is_space((unsigned char)c->buf[s]))
        s++;
    while (e > s && is_space((unsigned char)c->buf[e - 1]))
        e--;
    int keep_going = 1;
    if (e > s) {
        struct tts_chunk chunk = {
            .text = c->buf + s, .len = e - s, .offset = c->base + s, .index = c->n_emitted};
        c->n_emitted++;
        keep_going = emit(&chunk, user);
    }
    memmove(c->buf, c->buf + consumed, c->len - consumed);
    c->len -= consumed;
    c->base += consumed;
    return keep_going ? 0 : BANTER_ERR_CANCELLED;
}

/* Skips closing quotes and brackets backwards from end; returns the position just after the punctuation. */
static size_t skip_closers(const char *b, size_t end)
{
    for (;;) {
        if (end > 0 && b[end - 1] != 0 && strchr("\"')]}", b[end - 1])) {
            end--;
        } else if (ends_with(b, end, "\xE2\x80\x9D") || ends_with(b, end, "\xE2\x80\x99")) { /* ” ’ */
            end -= 3;
        } else if (ends_with(b, end, "\xC2\xBB")) { /* » */
            end -= 2;
        } else {
            return end;
        }
    }
}

/* Is the word that ends with the dot at b[dot] an abbreviation, an initial, or a list number that stands
 * alone? */
static bool dot_is_not_an_end(const char *b, size_t dot, int words)
{
    size_t start = dot;
    while (start > 0 && !is_space((unsigned char)b[start - 1]))
        start--;
    while (start < dot && b[start] != 0 && strchr("\"'([{", b[start]))
        start++;
    size_t n = dot - start;
    if (n == 0) return false;
    const char *w = b + start;
    /* An initial: one capital letter ("J. Smith"). "I." ends sentences, so it is not one. */
    if (n == 1 && w[0] >= 'A' && w[0] <= 'Z' && w[0] != 'I') return true;
    /* A list number opening the chunk ("1. Preheat the oven."). */
    if (words == 1) {
        size_t i = 0;
        while (i < n && w[i] >= '0' && w[i] <= '9')
            i++;
        if (i == n) return true;
    }
    for (const char *const *a = ABBREVIATIONS; *a; a++) {
        size_t an = strlen(*a);
        if (an != n) continue;
        size_t i = 0;
        while (i < n && lower((unsigned char)w[i]) == (unsigned char)(*a)[i])
            i++;
        if (i == n) return true;
    }
    return false;
}

/* The boundary (if any) that the whitespace at buf[ws] completes. */
static enum boundary boundary_before(const struct tts_chunker *c, size_t ws, int words)
{
    const char *b = c->buf;
    size_t end = skip_closers(b, ws);
    if (end == 0) return B_NONE;
    if (ends_with(b, end, "\xE2\x80\xA6")) return B_SENTENCE; /* … */
    switch (b[end - 1]) {
    case '!':
    case '?':
        return B_SENTENCE;
    case '.':
        return dot_is_not_an_end(b, end - 1, words) ? B_NONE : B_SENTENCE;
    case ';':
    case ':':
        return B_CLAUSE;
    case ',':
        return B_COMMA;
    default:
        return B_NONE;
    }
}

static bool cut_here(const struct tts_chunker *c, enum boundary kind, int words)
{
    bool first = c->n_emitted == 0;
    switch (kind) {
    case B_SENTENCE:
        return words >= 1;
    case B_CLAUSE:
        return words >= (first ? c->cfg.first_min_words : c->cfg.clause_min_words);
    case B_COMMA:
        return words >= (first ? c->cfg.first_min_words : c->cfg.comma_min_words);
    default:
        return false;
    }
}

/* The pending text has reached max_bytes without a boundary: cut at the last space, or failing that at the
 * last complete character. */
static int hard_cut(struct tts_chunker *c, tts_chunk_fn emit, void *user)
{
    size_t p = c->len;
    while (p > 0 && !is_space((unsigned char)c->buf[p - 1]))
        p--;
    if (p > 0) return emit_prefix(c, p - 1, p, emit, user);
    size_t q = c->len;
    while (q > 0 && ((unsigned char)c->buf[q - 1] & 0xC0) == 0x80)
        q--;
    size_t cut = c->len;
    if (q > 0 && (q - 1) + utf8_len((unsigned char)c->buf[q - 1]) > c->len)
        cut = q - 1;            /* incomplete last char */
    if (cut == 0) cut = c->len; /* only garbage bytes: let them go rather than stall */
    return emit_prefix(c, cut, cut, emit, user);
}

int tts_chunker_feed(struct tts_chunker *c, const char *text, size_t len, tts_chunk_fn emit, void *user)
{
    for (size_t i = 0; i < len; i++) {
        if (c->len >= (c->n_emitted == 0 ? c->cfg.first_max_bytes : c->cfg.max_bytes)) {
            int rc = hard_cut(c, emit, user);
            if (rc) return rc;
        }
        BANTER_ASSERT(c->len < TTS_CHUNKER_CAP);
        unsigned char byte = (unsigned char)text[i];
        c->buf[c->len++] = (char)byte;

        int rc = 0;
        if (is_space(byte)) {
            size_t ws = c->len - 1;
            int words = count_words(c->buf, ws);
            enum boundary kind = boundary_before(c, ws, words);
            bool first_full = c->n_emitted == 0 && words >= c->cfg.first_max_words;
            if (cut_here(c, kind, words) || (byte == '\n' && words >= 1) || first_full)
                rc = emit_prefix(c, ws, c->len, emit, user);
        } else if (byte >= 0x80 && (ends_with(c->buf, c->len, "\xE3\x80\x82") ||  /* 。 */
                                    ends_with(c->buf, c->len, "\xEF\xBC\x81") ||  /* ！ */
                                    ends_with(c->buf, c->len, "\xEF\xBC\x9F"))) { /* ？ */
            rc = emit_prefix(c, c->len, c->len, emit, user);
        }
        if (rc) return rc;
    }
    return 0;
}

int tts_chunker_flush(struct tts_chunker *c, tts_chunk_fn emit, void *user)
{
    /* Drop an incomplete trailing character: the stream ended inside it. */
    size_t q = c->len;
    while (q > 0 && ((unsigned char)c->buf[q - 1] & 0xC0) == 0x80 && c->len - q < 3)
        q--;
    if (q > 0 && (unsigned char)c->buf[q - 1] >= 0xC0 &&
        (q - 1) + utf8_len((unsigned char)c->buf[q - 1]) > c->len)
        c->len = q - 1;
    return emit_prefix(c, c->len, c->len, emit, user);
}
