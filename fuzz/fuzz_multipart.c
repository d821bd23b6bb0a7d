/*
 * fuzz_multipart.c: libFuzzer target for the multipart/form-data parser (src/server/multipart.c).
 *
 * The first input byte picks the boundary from a few candidates (short, curl's, one with RFC 2046's odd
 * characters, the longest allowed) and, through its high bits, the most parts allowed (1, 4 or 64), so the
 * too-many-parts path is reached by small inputs. The rest is the body, parsed from an exact-size heap copy
 * (so ASan sees any read past the end). On success every part's name, filename, Content-Type and data must
 * lie inside the body, names must be non-empty, parts must come in body order without overlapping, and each
 * part must be found by its own name; on failure there must be a message and no parts. The whole input is
 * also given, NUL-terminated, to srv_multipart_boundary as a Content-Type value; what it accepts must
 * be 1..70 characters and, used as the boundary, must not break the parser.
 *
 * Seeds: fuzz/corpus/multipart (first byte 0: boundary "b"; 1: curl's boundary).
 */
#include "banter.h"
#include "server/multipart.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PARTS 64

static const char *const boundaries[] = {
    "b",
    "------------------------d74496d66958873e",
    "a'()+_,-./:=? z",
    "0123456789012345678901234567890123456789012345678901234567890123456789",
};

static volatile size_t sink;

static bool inside(const char *body, size_t len, const char *p, size_t n)
{
    return p >= body && p <= body + len && n <= (size_t)(body + len - p);
}

static void check(const char *body, size_t len, const char *boundary, size_t max_parts)
{
    struct srv_part parts[MAX_PARTS];
    size_t n = 12345;
    char err[256];
    err[0] = 0;
    int rc = srv_multipart_parse(body, len, boundary, parts, max_parts, &n, err, sizeof err);
    if (rc) {
        if (rc != BANTER_ERR_FORMAT || n != 0 || !err[0]) abort();
        return;
    }
    if (n > max_parts) abort();
    const char *prev_end = body;
    for (size_t i = 0; i < n; i++) {
        const struct srv_part *p = &parts[i];
        if (!p->name.ptr || !p->name.len || !inside(body, len, p->name.ptr, p->name.len)) abort();
        if (p->filename.ptr && !inside(body, len, p->filename.ptr, p->filename.len)) abort();
        if (p->content_type.ptr && !inside(body, len, p->content_type.ptr, p->content_type.len)) abort();
        if (!p->data || !inside(body, len, p->data, p->len)) abort();
        /* Headers come before the data, and each part after the one before it. */
        if (p->name.ptr < prev_end || p->name.ptr + p->name.len > p->data) abort();
        if (p->filename.ptr && p->filename.ptr + p->filename.len > p->data) abort();
        prev_end = p->data + p->len;
        for (size_t k = 0; k < p->len; k++)
            sink += (unsigned char)p->data[k];
        char name[128], fname[64];
        size_t nl = srv_multipart_unquote(&p->name, name, sizeof name);
        if (nl > p->name.len) abort();
        if (srv_multipart_unquote(&p->filename, fname, sizeof fname) > p->filename.len) abort();
        if (nl < sizeof name && memchr(name, 0, nl) == NULL) {
            const struct srv_part *f = srv_multipart_find(parts, n, name);
            if (!f || f > p) abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const char *boundary = boundaries[data[0] % (sizeof boundaries / sizeof boundaries[0])];
    size_t max_parts = (data[0] >> 6) == 1 ? 1 : (data[0] >> 6) == 2 ? 4 : MAX_PARTS;
    size_t n = size - 1;

    char *copy = malloc(n ? n : 1);
    if (!copy) return 0;
    if (n) memcpy(copy, data + 1, n);
    check(copy, n, boundary, max_parts);

    /* The whole input as a Content-Type value; an accepted boundary is then tried on the body. */
    char *ct = malloc(size + 1);
    if (!ct) {
        free(copy);
        return 0;
    }
    memcpy(ct, data, size);
    ct[size] = 0;
    char b[SRV_MULTIPART_MAX_BOUNDARY + 1], err[256];
    int rc = srv_multipart_boundary(ct, b, sizeof b, err, sizeof err);
    if (rc == 0) {
        size_t bl = strlen(b);
        if (bl < 1 || bl > SRV_MULTIPART_MAX_BOUNDARY) abort();
        check(copy, n, b, MAX_PARTS);
    } else if (rc != BANTER_ERR_FORMAT || !err[0] || b[0]) {
        abort();
    }
    free(ct);
    free(copy);
    return 0;
}
