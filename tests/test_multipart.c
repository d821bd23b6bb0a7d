/*
 * test_multipart.c: the multipart/form-data parser behind POST /v1/audio/transcriptions.
 *
 *   1. A body as curl -F file=@x.wav -F model=whisper-1 ... sends it (boundary of 24 dashes and 16 hex
 *      digits), with CRLF and with bare LF line ends: names, filename, Content-Type and data of every part;
 *      the WAV data holds CR and LF bytes, "--" boundary not at a line start, and a line start with the
 *      boundary followed by other bytes, none of which may cut it.
 *   2. Content-Type: quoted and token boundaries, case-insensitive names, other parameters, and rejected
 *      values (not form data, no or empty boundary, too long, bad characters, unterminated quote, repeated).
 *   3. Part details: escaped quotes in filename and name, empty data, transport padding, preamble and
 *      epilogue, a form without parts, unquoted values.
 *   4. Errors with their messages: every truncation of a valid body (from an exact-size copy, so ASan sees
 *      any overread), too many parts, an oversized header block, no Content-Disposition or name, bad quoting,
 *      folded headers, a wrong boundary. Every part of every successful parse must lie inside the body.
 *   5. Cross-check against Python's email package on generated bodies (random binary data, CRLF and LF),
 *      comparing names, filenames and data; skipped with a note when python3 is absent.
 */
#include "banter.h"
#include "server/multipart.h"
#include "test.h"

#include <stdint.h>

#define MAX_PARTS 16
#define CURL_BOUNDARY "------------------------d74496d66958873e"

struct buf {
    char *p;
    size_t len, cap;
};

static void put(struct buf *b, const void *s, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        char *t = realloc(b->p, cap);
        if (!t) abort();
        b->p = t;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void puts_(struct buf *b, const char *s)
{
    put(b, s, strlen(s));
}

static bool inside(const char *body, size_t len, const char *p, size_t n)
{
    return p >= body && p <= body + len && n <= (size_t)(body + len - p);
}

/* Checks that every string and data span of every part lies in body[0, len). */
static void check_inside(const char *body, size_t len, const struct srv_part *parts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct srv_part *p = &parts[i];
        CHECK(p->name.ptr && p->name.len > 0 && inside(body, len, p->name.ptr, p->name.len));
        CHECK(!p->filename.ptr || inside(body, len, p->filename.ptr, p->filename.len));
        CHECK(!p->content_type.ptr || inside(body, len, p->content_type.ptr, p->content_type.len));
        CHECK(p->data && inside(body, len, p->data, p->len));
    }
}

/* Parses from an exact-size heap copy; returns the status, with parts checked to lie inside it. */
static int parse(const char *body, size_t len, const char *boundary, struct srv_part *parts, size_t max,
                 size_t *n, char *err, size_t err_len)
{
    char *copy = malloc(len ? len : 1);
    if (!copy) abort();
    memcpy(copy, body, len);
    err[0] = 0;
    int rc = srv_multipart_parse(copy, len, boundary, parts, max, n, err, err_len);
    if (rc == 0)
        check_inside(copy, len, parts, *n);
    else {
        CHECK_INT_EQ(*n, 0);
        CHECK(err[0] != 0);
    }
    /* Rebase the parts onto the caller's body so they stay readable after the copy is freed. */
    for (size_t i = 0; rc == 0 && i < *n; i++) {
        struct srv_part *p = &parts[i];
        p->name.ptr = body + (p->name.ptr - copy);
        if (p->filename.ptr) p->filename.ptr = body + (p->filename.ptr - copy);
        if (p->content_type.ptr) p->content_type.ptr = body + (p->content_type.ptr - copy);
        p->data = body + (p->data - copy);
    }
    free(copy);
    return rc;
}

static bool str_is(const struct srv_str *s, const char *want)
{
    return s->ptr && s->len == strlen(want) && memcmp(s->ptr, want, s->len) == 0;
}

/* The audio of the curl body: a WAV header, then bytes that look like delimiters but are not. */
static void wav_bytes(struct buf *w, bool crlf)
{
    static const unsigned char hdr[] = {'R', 'I', 'F',  'F',  0x44, 0,   0,   0,    'W', 'A', 'V',
                                        'E', 'f', 'm',  't',  ' ',  16,  0,   0,    0,   1,   0,
                                        1,   0,   0x80, 0x3e, 0,    0,   0,   0x7d, 0,   0,   2,
                                        0,   16,  0,    'd',  'a',  't', 'a', 0x20, 0,   0,   0};
    put(w, hdr, sizeof hdr);
    puts_(w, "\r\n\r\n\n\r");                 /* line ends inside the data */
    puts_(w, "x--" CURL_BOUNDARY "\r\n");     /* the boundary, not at a line start */
    puts_(w, "\r\n--" CURL_BOUNDARY "X\r\n"); /* at a line start but followed by other bytes */
    puts_(w, "\r\n-" CURL_BOUNDARY "--");     /* one dash short */
    for (int i = 0; i < 64; i++) {
        unsigned char c = (unsigned char)(i * 37 + 11);
        put(w, &c, 1);
    }
    /* With CRLF line ends the data ends in a CR: only the CRLF right before the delimiter is the delimiter's.
     * (With bare LF ends a final CR would read as part of a CRLF, so that variant ends in a NUL.) */
    put(w, "\0\r", crlf ? 2 : 1);
}

/* Builds the curl-style body with line end eol ("\r\n" or "\n"). *close_end is where the final delimiter's
 * "--" ends: any shorter prefix is truncated. */
static void curl_body(struct buf *b, const char *eol, const struct buf *wav, size_t *close_end)
{
    const char *dl = "--" CURL_BOUNDARY;
    puts_(b, dl);
    puts_(b, eol);
    puts_(b, "Content-Disposition: form-data; name=\"file\"; filename=\"x.wav\"");
    puts_(b, eol);
    puts_(b, "Content-Type: audio/x-wav");
    puts_(b, eol);
    puts_(b, eol);
    put(b, wav->p, wav->len);
    static const char *const fields[][2] = {{"model", "whisper-1"},
                                            {"language", "en"},
                                            {"response_format", "verbose_json"},
                                            {"temperature", "0.2"}};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        puts_(b, eol);
        puts_(b, dl);
        puts_(b, eol);
        puts_(b, "Content-Disposition: form-data; name=\"");
        puts_(b, fields[i][0]);
        puts_(b, "\"");
        puts_(b, eol);
        puts_(b, eol);
        puts_(b, fields[i][1]);
    }
    puts_(b, eol);
    puts_(b, dl);
    puts_(b, "--");
    *close_end = b->len;
    puts_(b, eol);
}

static void test_curl_body(const char *eol)
{
    struct buf wav = {0}, b = {0};
    wav_bytes(&wav, eol[0] == '\r');
    size_t close_end;
    curl_body(&b, eol, &wav, &close_end);

    char boundary[SRV_MULTIPART_MAX_BOUNDARY + 1], err[256];
    CHECK_INT_EQ(srv_multipart_boundary("multipart/form-data; boundary=" CURL_BOUNDARY, boundary,
                                        sizeof boundary, err, sizeof err),
                 0);
    CHECK_STR_EQ(boundary, CURL_BOUNDARY);

    struct srv_part parts[MAX_PARTS];
    size_t n = 99;
    int rc = parse(b.p, b.len, boundary, parts, MAX_PARTS, &n, err, sizeof err);
    CHECK_INT_EQ(rc, 0);
    if (rc) fprintf(stderr, "  %s\n", err);
    CHECK_INT_EQ(n, 5);
    if (n == 5) {
        CHECK(str_is(&parts[0].name, "file"));
        CHECK(str_is(&parts[0].filename, "x.wav"));
        CHECK(str_is(&parts[0].content_type, "audio/x-wav"));
        CHECK_INT_EQ(parts[0].len, wav.len);
        CHECK(parts[0].len == wav.len && memcmp(parts[0].data, wav.p, wav.len) == 0);
        CHECK(str_is(&parts[1].name, "model"));
        CHECK(parts[1].filename.ptr == NULL && parts[1].content_type.ptr == NULL);
        CHECK(parts[1].len == 9 && memcmp(parts[1].data, "whisper-1", 9) == 0);
        const struct srv_part *t = srv_multipart_find(parts, n, "temperature");
        CHECK(t == &parts[4]);
        CHECK(t && t->len == 3 && memcmp(t->data, "0.2", 3) == 0);
        const struct srv_part *f = srv_multipart_find(parts, n, "response_format");
        CHECK(f && f->len == 12 && memcmp(f->data, "verbose_json", 12) == 0);
        CHECK(srv_multipart_find(parts, n, "prompt") == NULL);
        CHECK(srv_multipart_find(parts, n, "fil") == NULL);
        CHECK(srv_multipart_find(parts, n, "files") == NULL);
    }

    /* Every truncation before the end of the final delimiter fails; every longer prefix parses the same. */
    int n_bad = 0;
    for (size_t l = 0; l <= b.len; l++) {
        size_t m = 0;
        rc = parse(b.p, l, boundary, parts, MAX_PARTS, &m, err, sizeof err);
        if (l < close_end) {
            if (rc != BANTER_ERR_FORMAT) n_bad++;
        } else if (rc != 0 || m != 5 || parts[0].len != wav.len) {
            n_bad++;
        }
    }
    CHECK_INT_EQ(n_bad, 0);
    /* The messages say what went wrong. */
    rc = parse(b.p, close_end - 1, boundary, parts, MAX_PARTS, &n, err, sizeof err);
    CHECK(strstr(err, "truncated") != NULL);
    rc = parse(b.p, 60, boundary, parts, MAX_PARTS, &n, err, sizeof err);
    CHECK(strstr(err, "truncated") != NULL);
    rc = parse(b.p, 200, boundary, parts, MAX_PARTS, &n, err, sizeof err);
    CHECK(strstr(err, "missing final delimiter") != NULL);

    /* Four parts allowed: too many. */
    rc = parse(b.p, b.len, boundary, parts, 4, &n, err, sizeof err);
    CHECK_INT_EQ(rc, BANTER_ERR_FORMAT);
    CHECK(strstr(err, "more than 4 parts") != NULL);
    rc = parse(b.p, b.len, boundary, parts, 5, &n, err, sizeof err);
    CHECK_INT_EQ(rc, 0);

    /* A wrong boundary: the body has no delimiter. */
    rc = parse(b.p, b.len, "------------------------d74496d66958873f", parts, MAX_PARTS, &n, err, sizeof err);
    CHECK_INT_EQ(rc, BANTER_ERR_FORMAT);
    CHECK(strstr(err, "no --") != NULL);
    if (!strstr(err, "no --")) fprintf(stderr, "  %s\n", err);
    free(wav.p);
    free(b.p);
}

static void test_content_type(void)
{
    char b[SRV_MULTIPART_MAX_BOUNDARY + 1], err[256];
    CHECK_INT_EQ(srv_multipart_boundary("multipart/form-data; boundary=abc", b, sizeof b, err, sizeof err),
                 0);
    CHECK_STR_EQ(b, "abc");
    CHECK_INT_EQ(
        srv_multipart_boundary(" Multipart/Form-Data ;charset=utf-8; BOUNDARY = \"a'()+_,-./:=? b\" ;", b,
                               sizeof b, err, sizeof err),
        0);
    CHECK_STR_EQ(b, "a'()+_,-./:=? b");
    CHECK_INT_EQ(
        srv_multipart_boundary("multipart/form-data; boundary=\"q\\\"x\"", b, sizeof b, err, sizeof err),
        BANTER_ERR_FORMAT); /* '"' is not a boundary character, escaped or not */
    CHECK_INT_EQ(
        srv_multipart_boundary("multipart/form-data; boundary=\"q\\x\"", b, sizeof b, err, sizeof err), 0);
    CHECK_STR_EQ(b, "qx");
    char seventy[128] = "multipart/form-data; boundary=";
    size_t at = strlen(seventy);
    memset(seventy + at, 'z', 70);
    seventy[at + 70] = 0;
    CHECK_INT_EQ(srv_multipart_boundary(seventy, b, sizeof b, err, sizeof err), 0);
    CHECK_INT_EQ(strlen(b), 70);
    CHECK_INT_EQ(srv_multipart_boundary(seventy, b, 70, err, sizeof err), BANTER_ERR_INVALID_ARG);
    seventy[at + 70] = 'z';
    seventy[at + 71] = 0;
    CHECK_INT_EQ(srv_multipart_boundary(seventy, b, sizeof b, err, sizeof err), BANTER_ERR_FORMAT);
    CHECK(strstr(err, "longer than 70") != NULL);

    static const struct {
        const char *ct, *msg;
    } bad[] = {
        {NULL, "no Content-Type"},
        {"", "not multipart/form-data"},
        {"text/plain", "not multipart/form-data"},
        {"multipart/mixed; boundary=abc", "not multipart/form-data"},
        {"multipart/form-dataX; boundary=abc", "not multipart/form-data"},
        {"multipart/form-data", "no boundary"},
        {"multipart/form-data; charset=utf-8", "no boundary"},
        {"multipart/form-data; boundary=", "without a value"},
        {"multipart/form-data; boundary=\"\"", "empty"},
        {"multipart/form-data; boundary=\"abc ", "unterminated"},
        {"multipart/form-data; boundary=\"abc \"", "space"},
        {"multipart/form-data; boundary=a@b", "expected ';'"},
        {"multipart/form-data; boundary=\"a@b\"", "does not allow"},
        {"multipart/form-data; boundary=a*b", "does not allow"},
        {"multipart/form-data; boundary=a; boundary=b", "more than one"},
        {"multipart/form-data boundary=a", "expected ';'"},
        {"multipart/form-data; =a", "malformed"},
        {"multipart/form-data; boundary", "malformed"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        b[0] = 'X';
        err[0] = 0;
        int rc = srv_multipart_boundary(bad[i].ct, b, sizeof b, err, sizeof err);
        CHECK_INT_EQ(rc, BANTER_ERR_FORMAT);
        CHECK_STR_EQ(b, "");
        if (!strstr(err, bad[i].msg)) {
            test_n_failed++;
            fprintf(stderr, "%s:%d: Content-Type \"%s\": message \"%s\" lacks \"%s\"\n", __FILE__, __LINE__,
                    bad[i].ct ? bad[i].ct : "(null)", err, bad[i].msg);
        }
    }
}

/* Parses a NUL-terminated body with boundary "b"; returns the status. */
static int parse_str(const char *body, struct srv_part *parts, size_t *n, char *err, size_t err_len)
{
    return parse(body, strlen(body), "b", parts, MAX_PARTS, n, err, err_len);
}

static void test_details(void)
{
    struct srv_part parts[MAX_PARTS];
    size_t n;
    char err[256], s[64];

    /* Escaped quotes in filename and name; unquoted values; header names in any case; empty data. */
    const char *body =
        "--b\r\n"
        "content-disposition: form-data; NAME=\"fi\\le\"; FileName=\"my \\\"best\\\" take.wav\"\r\n"
        "CONTENT-TYPE:audio/wav  \r\n"
        "X-Other: ignored\r\n"
        "\r\n"
        "DATA\r\n"
        "--b  \t\r\n" /* transport padding */
        "Content-Disposition: form-data; name=model; filename=a.b\r\n"
        "\r\n"
        "\r\n"
        "--b\n"
        "Content-Disposition: form-data; name=\"prompt\"\n"
        "\n"
        "\n"
        "--b--";
    int rc = parse_str(body, parts, &n, err, sizeof err);
    CHECK_INT_EQ(rc, 0);
    if (rc) fprintf(stderr, "  %s\n", err);
    CHECK_INT_EQ(n, 3);
    if (n == 3) {
        CHECK(parts[0].name.escaped && parts[0].filename.escaped);
        CHECK(srv_multipart_find(parts, n, "file") == &parts[0]);
        CHECK_INT_EQ(srv_multipart_unquote(&parts[0].filename, s, sizeof s), 18);
        CHECK_STR_EQ(s, "my \"best\" take.wav");
        CHECK_INT_EQ(srv_multipart_unquote(&parts[0].filename, s, 6), 18); /* cut short */
        CHECK_STR_EQ(s, "my \"b");
        CHECK(str_is(&parts[0].content_type, "audio/wav"));
        CHECK(parts[0].len == 4 && memcmp(parts[0].data, "DATA", 4) == 0);
        CHECK(str_is(&parts[1].name, "model") && !parts[1].name.escaped);
        CHECK(str_is(&parts[1].filename, "a.b"));
        CHECK_INT_EQ(parts[1].len, 0);
        CHECK(str_is(&parts[2].name, "prompt"));
        CHECK_INT_EQ(parts[2].len, 0);
        CHECK_INT_EQ(srv_multipart_unquote(&parts[1].content_type, s, sizeof s), 0);
        CHECK_STR_EQ(s, "");
    }

    /* Preamble and epilogue, the epilogue holding what looks like another part. */
    body =
        "This is the preamble.\r\n--b is not here\r\n--b\r\n"
        "Content-Disposition: form-data; name=\"a\"\r\n\r\n"
        "1\r\n--b--\r\nepilogue\r\n--b\r\nContent-Disposition: form-data; name=\"z\"\r\n\r\nz\r\n--b--\r\n";
    rc = parse_str(body, parts, &n, err, sizeof err);
    CHECK_INT_EQ(rc, 0);
    CHECK_INT_EQ(n, 1);
    CHECK(n == 1 && str_is(&parts[0].name, "a") && parts[0].len == 1 && parts[0].data[0] == '1');

    /* A form without parts. */
    CHECK_INT_EQ(parse_str("--b--\r\n", parts, &n, err, sizeof err), 0);
    CHECK_INT_EQ(n, 0);

    /* Errors and their messages. */
    static const struct {
        const char *body, *msg;
    } bad[] = {
        {"", "no --b"},
        {"just text", "no --b"},
        {"--b\r\n\r\nx\r\n--b--", "no Content-Disposition"},
        {"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--", "no Content-Disposition"},
        {"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--", "no name"},
        {"--b\r\nContent-Disposition: form-data; filename=\"a\"\r\n\r\nx\r\n--b--", "no name"},
        {"--b\r\nContent-Disposition: form-data; name=\"\"\r\n\r\nx\r\n--b--", "no name"},
        {"--b\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nx\r\n--b--", "not form-data"},
        {"--b\r\nContent-Disposition: form-data; name=\"a\r\n\r\nx\r\n--b--", "invalid quoting"},
        {"--b\r\nContent-Disposition: form-data; name=\"a\\\"\r\n\r\nx\r\n--b--", "invalid quoting"},
        {"--b\r\nContent-Disposition: form-data; name=\"a\\\r\n\r\nx\r\n--b--", "invalid quoting"},
        {"--b\r\nContent-Disposition: form-data; name=;\r\n\r\nx\r\n--b--", "invalid quoting"},
        {"--b\r\nContent-Disposition: form-data; name=a b\r\n\r\nx\r\n--b--", "expected ';'"},
        {"--b\r\nContent-Disposition: form-data; name=a; name=c\r\n\r\nx\r\n--b--", "repeats"},
        {"--b\r\nContent-Disposition: form-data; name=a\r\nContent-Disposition: form-data; "
         "name=a\r\n\r\nx\r\n--b--",
         "two Content-Disposition"},
        {"--b\r\nContent-Disposition: form-data; name=a\r\nContent-Type: text/plain;\r\n "
         "charset=utf-8\r\n\r\nx\r\n--b--",
         "folded"},
        {"--b\r\nContent-Disposition form-data; name=a\r\n\r\nx\r\n--b--", "malformed header"},
        {"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--b", "truncated"},
        {"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--b-", "truncated"},
        {"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--b\r", "truncated"},
        {"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--bx--", "missing final delimiter"},
        {"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--b\r\n", "truncated in the headers"},
        {"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nx--b--", "missing final delimiter"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        rc = parse_str(bad[i].body, parts, &n, err, sizeof err);
        CHECK_INT_EQ(rc, BANTER_ERR_FORMAT);
        if (!strstr(err, bad[i].msg)) {
            test_n_failed++;
            fprintf(stderr, "%s:%d: body %zu: message \"%s\" lacks \"%s\"\n", __FILE__, __LINE__, i, err,
                    bad[i].msg);
        }
    }
    CHECK_INT_EQ(srv_multipart_parse("--b--", 5, "", parts, MAX_PARTS, &n, err, sizeof err),
                 BANTER_ERR_INVALID_ARG);
}

static void test_header_limit(void)
{
    struct srv_part parts[MAX_PARTS];
    size_t n;
    char err[256];
    for (int big = 0; big < 2; big++) {
        struct buf b = {0};
        puts_(&b, "--b\r\nContent-Disposition: form-data; name=\"a\"\r\nX-Pad: ");
        /* The block is the headers so far, the pad, "\r\n" and the blank line's "\r\n". */
        size_t pad = SRV_MULTIPART_MAX_HEADER - (b.len - 5) - 4 + (size_t)big;
        for (size_t i = 0; i < pad; i++)
            puts_(&b, "p");
        puts_(&b, "\r\n\r\nx\r\n--b--\r\n");
        int rc = parse(b.p, b.len, "b", parts, MAX_PARTS, &n, err, sizeof err);
        if (big) {
            CHECK_INT_EQ(rc, BANTER_ERR_FORMAT);
            CHECK(strstr(err, "header block is longer than 8192") != NULL);
        } else {
            CHECK_INT_EQ(rc, 0);
            CHECK_INT_EQ(n, 1);
        }
        free(b.p);
    }
}

/* ---- Cross-check with Python's email package ---- */

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

static const char PY[] = "import sys, email\n"
                         "m = email.message_from_bytes(open(sys.argv[1], \"rb\").read())\n"
                         "print(len(m.defects))\n"
                         "for p in m.get_payload():\n"
                         "    f = p.get_filename()\n"
                         "    d = p.get_payload(decode=True)\n"
                         "    print(p.get_param(\"name\", header=\"content-disposition\"), "
                         "\"-\" if f is None else f, d.hex(), sep=\"\\t\")\n";

static void hex(struct buf *o, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char h[3];
        snprintf(h, sizeof h, "%02x", (unsigned char)p[i]);
        put(o, h, 2);
    }
}

static void test_python(void)
{
    if (system("command -v python3 >/dev/null 2>&1") != 0) {
        printf("NOTE: python3 not found; skipping the cross-check with Python's email package\n");
        return;
    }
    char script[] = "/tmp/banter_mp_py_XXXXXX", path[] = "/tmp/banter_mp_body_XXXXXX";
    int fs = mkstemp(script), fb = mkstemp(path);
    CHECK(fs >= 0 && fb >= 0);
    if (fs < 0 || fb < 0) return;
    CHECK(write(fs, PY, sizeof PY - 1) == (ssize_t)(sizeof PY - 1));
    close(fs);
    close(fb);
    int n_compared = 0;
    for (int iter = 0; iter < 12; iter++) {
        const char *eol = iter % 3 == 2 ? "\n" : "\r\n";
        char boundary[48];
        snprintf(boundary, sizeof boundary, "------------------------%08x%08x", rnd(), rnd());
        struct buf body = {0}, want = {0};
        int n_parts = 1 + (int)(rnd() % 5);
        if (iter % 2) {
            puts_(&body, "preamble");
            puts_(&body, eol);
        }
        for (int i = 0; i < n_parts; i++) {
            char line[160];
            puts_(&body, "--");
            puts_(&body, boundary);
            puts_(&body, eol);
            bool has_file = rnd() % 2;
            const char *fname = i == 0 && iter % 4 == 1 ? "a\\\"b.wav" : "take.wav";
            snprintf(line, sizeof line, "Content-Disposition: form-data; name=\"f%d\"%s%s%s", i,
                     has_file ? "; filename=\"" : "", has_file ? fname : "", has_file ? "\"" : "");
            puts_(&body, line);
            puts_(&body, eol);
            if (has_file) {
                puts_(&body, "Content-Type: application/octet-stream");
                puts_(&body, eol);
            }
            puts_(&body, eol);
            /* Random bytes with many CR and LF, but no '-', so no line can look like a delimiter. */
            size_t len = rnd() % 4 == 0 ? 0 : rnd() % 300;
            size_t at = body.len;
            for (size_t k = 0; k < len; k++) {
                uint32_t r = rnd();
                char c = r % 5 == 0 ? '\r' : r % 5 == 1 ? '\n' : (char)(r >> 8);
                if (c == '-') c = '+';
                /* With bare LF line ends a CR ending the data would read as half of a CRLF. */
                if (k + 1 == len && c == '\r' && eol[0] == '\n') c = 'r';
                put(&body, &c, 1);
            }
            snprintf(line, sizeof line, "f%d\t%s\t", i,
                     has_file ? (i == 0 && iter % 4 == 1 ? "a\"b.wav" : fname) : "-");
            puts_(&want, line);
            hex(&want, body.p + at, len);
            puts_(&want, "\n");
            puts_(&body, eol);
        }
        puts_(&body, "--");
        puts_(&body, boundary);
        puts_(&body, "--");
        puts_(&body, eol);

        /* Ours. */
        struct srv_part parts[MAX_PARTS];
        size_t n;
        char err[256];
        int rc = parse(body.p, body.len, boundary, parts, MAX_PARTS, &n, err, sizeof err);
        CHECK_INT_EQ(rc, 0);
        struct buf got = {0};
        for (size_t i = 0; rc == 0 && i < n; i++) {
            char s[64];
            srv_multipart_unquote(&parts[i].name, s, sizeof s);
            puts_(&got, s);
            puts_(&got, "\t");
            if (parts[i].filename.ptr) srv_multipart_unquote(&parts[i].filename, s, sizeof s);
            puts_(&got, parts[i].filename.ptr ? s : "-");
            puts_(&got, "\t");
            hex(&got, parts[i].data, parts[i].len);
            puts_(&got, "\n");
        }
        CHECK(got.len == want.len && memcmp(got.p, want.p, want.len) == 0);

        /* Python's, on the same body behind the request's Content-Type header. */
        FILE *f = fopen(path, "wb");
        CHECK(f != NULL);
        if (!f) break;
        fprintf(f, "Content-Type: multipart/form-data; boundary=\"%s\"%s%s", boundary, eol, eol);
        fwrite(body.p, 1, body.len, f);
        fclose(f);
        char cmd[256];
        snprintf(cmd, sizeof cmd, "python3 %s %s", script, path);
        FILE *py = popen(cmd, "r");
        CHECK(py != NULL);
        if (!py) break;
        struct buf out = {0};
        char chunk[4096];
        size_t k;
        while ((k = fread(chunk, 1, sizeof chunk, py)) > 0)
            put(&out, chunk, k);
        CHECK_INT_EQ(pclose(py), 0);
        put(&got, "", 0);
        /* The first line is the number of defects Python found; it must be 0. */
        bool same =
            out.len == 2 + got.len && memcmp(out.p, "0\n", 2) == 0 && memcmp(out.p + 2, got.p, got.len) == 0;
        CHECK(same);
        if (!same)
            fprintf(stderr, "  body %d: python said:\n%.*s\n  we said:\n%.*s\n", iter, (int)out.len, out.p,
                    (int)got.len, got.p);
        n_compared += same;
        free(out.p);
        free(got.p);
        free(want.p);
        free(body.p);
    }
    printf("python cross-check: %d bodies agree\n", n_compared);
    unlink(script);
    unlink(path);
}

int main(void)
{
    test_curl_body("\r\n");
    test_curl_body("\n");
    test_content_type();
    test_details();
    test_header_limit();
    test_python();
    return test_finish("test_multipart");
}
