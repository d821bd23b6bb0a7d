/*
 * multipart.c: the multipart/form-data parser (the body's layout and what is accepted are in multipart.h).
 *
 * The body is walked once with explicit bounds: every read is preceded by a check against the end, and
 * positions are offsets (size_t) into the body rather than pointers, so no pointer is ever formed past it.
 * Delimiters are found with memmem on "\n--" boundary; a CR before the LF is then taken off the data. A match
 * that is not followed by "--", padding or a line end is not a delimiter, and the search goes on after it.
 *
 * Messages name the part (counting from 1) and the byte offset in the body, never quote the body itself, so
 * that an upload's contents do not end up in a log line.
 */
#include "server/multipart.h"
#include "core/core.h"

#include <string.h>

/* How a candidate delimiter ends (see delim_end). */
enum { DELIM_NEXT, DELIM_CLOSE, DELIM_NOT, DELIM_TRUNCATED };

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* RFC 9110 tchar; bytes >= 0x80 are also let through in unquoted parameter values (UTF-8 filenames). */
static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* RFC 2046 bchars (space is allowed, but not as the last character). */
static bool is_bchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
    return c && strchr("'()+_,-./:=? ", c) != NULL;
}

static bool ieq(const char *a, size_t n, const char *lit)
{
    size_t k = strlen(lit);
    if (n != k) return false;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)lit[i])) return false;
    return true;
}

static size_t skip_ows(const char *s, size_t i, size_t end)
{
    while (i < end && (s[i] == ' ' || s[i] == '\t'))
        i++;
    return i;
}

static size_t skip_token(const char *s, size_t i, size_t end)
{
    while (i < end && is_tchar((unsigned char)s[i]))
        i++;
    return i;
}

/* Scans a quoted string that opens at s[i] == '"'. On success *val is its contents (escapes kept), *next the
 * index after the closing quote, and 0 is returned; -1 when it is not closed before end. */
static int scan_quoted(const char *s, size_t i, size_t end, struct srv_str *val, size_t *next)
{
    BANTER_ASSERT(i < end && s[i] == '"');
    size_t start = ++i;
    bool escaped = false;
    while (i < end) {
        if (s[i] == '"') {
            val->ptr = s + start;
            val->len = i - start;
            val->escaped = escaped;
            *next = i + 1;
            return 0;
        }
        if (s[i] == '\\') {
            if (i + 1 >= end) return -1;
            escaped = true;
            i++;
        }
        i++;
    }
    return -1;
}

/* ---- Content-Type ---- */

int srv_multipart_boundary(const char *content_type, char *boundary, size_t cap, char *err, size_t err_len)
{
    if (boundary && cap) boundary[0] = 0;
    if (!content_type) {
        core_errf(err, err_len,
                  "multipart: no Content-Type header (expected multipart/form-data; boundary=...)");
        return BANTER_ERR_FORMAT;
    }
    const char *s = content_type;
    size_t end = strlen(s);
    size_t i = skip_ows(s, 0, end);
    size_t t = skip_token(s, i, end);
    if (t < end && s[t] == '/') t = skip_token(s, t + 1, end);
    if (!ieq(s + i, t - i, "multipart/form-data")) {
        core_errf(err, err_len,
                  "multipart: Content-Type is not multipart/form-data (send the upload as a form, "
                  "e.g. curl -F file=@audio.wav)");
        return BANTER_ERR_FORMAT;
    }
    i = t;
    struct srv_str found = {0};
    bool have = false;
    for (;;) {
        i = skip_ows(s, i, end);
        if (i == end) break;
        if (s[i] != ';') {
            core_errf(err, err_len, "multipart: Content-Type: expected ';' before parameter at offset %zu",
                      i);
            return BANTER_ERR_FORMAT;
        }
        i = skip_ows(s, i + 1, end);
        if (i == end) break; /* a trailing ';' */
        size_t name = i;
        i = skip_token(s, i, end);
        size_t name_len = i - name;
        i = skip_ows(s, i, end);
        if (!name_len || i == end || s[i] != '=') {
            core_errf(err, err_len, "multipart: Content-Type: malformed parameter at offset %zu", name);
            return BANTER_ERR_FORMAT;
        }
        i = skip_ows(s, i + 1, end);
        struct srv_str val = {0};
        if (i < end && s[i] == '"') {
            if (scan_quoted(s, i, end, &val, &i)) {
                core_errf(err, err_len, "multipart: Content-Type: unterminated quoted parameter value");
                return BANTER_ERR_FORMAT;
            }
        } else {
            size_t v = i;
            i = skip_token(s, i, end);
            val.ptr = s + v;
            val.len = i - v;
            if (!val.len) {
                core_errf(err, err_len, "multipart: Content-Type: parameter without a value at offset %zu",
                          v);
                return BANTER_ERR_FORMAT;
            }
        }
        if (ieq(s + name, name_len, "boundary")) {
            if (have) {
                core_errf(err, err_len, "multipart: Content-Type has more than one boundary parameter");
                return BANTER_ERR_FORMAT;
            }
            found = val;
            have = true;
        }
    }
    if (!have) {
        core_errf(err, err_len, "multipart: Content-Type has no boundary parameter");
        return BANTER_ERR_FORMAT;
    }
    char b[SRV_MULTIPART_MAX_BOUNDARY + 1];
    size_t n = 0;
    for (size_t k = 0; k < found.len; k++) {
        unsigned char c = (unsigned char)found.ptr[k];
        if (c == '\\' && found.escaped) c = (unsigned char)found.ptr[++k]; /* scan_quoted left one after it */
        if (n == SRV_MULTIPART_MAX_BOUNDARY) {
            core_errf(err, err_len, "multipart: boundary is longer than %d characters",
                      SRV_MULTIPART_MAX_BOUNDARY);
            return BANTER_ERR_FORMAT;
        }
        if (!is_bchar(c)) {
            core_errf(err, err_len,
                      "multipart: boundary contains a character RFC 2046 does not allow (0x%02x)", c);
            return BANTER_ERR_FORMAT;
        }
        b[n++] = (char)c;
    }
    if (n == 0 || b[n - 1] == ' ') {
        core_errf(err, err_len, "multipart: boundary is %s", n ? "ending with a space" : "empty");
        return BANTER_ERR_FORMAT;
    }
    if (!boundary || cap < n + 1) {
        core_errf(err, err_len, "multipart: boundary needs %zu bytes, buffer has %zu", n + 1,
                  boundary ? cap : 0);
        return BANTER_ERR_INVALID_ARG;
    }
    memcpy(boundary, b, n);
    boundary[n] = 0;
    return 0;
}

/* ---- Body ---- */

/* Says how the candidate delimiter whose "--" boundary ends at body[i] ends: DELIM_CLOSE for "--",
 * DELIM_NEXT for padding and a line end (*next is then just after it), DELIM_NOT for anything else, and
 * DELIM_TRUNCATED when the body ends before that can be told. */
static int delim_end(const char *body, size_t len, size_t i, size_t *next)
{
    if (i == len) return DELIM_TRUNCATED;
    if (body[i] == '-') {
        if (i + 1 == len) return DELIM_TRUNCATED;
        return body[i + 1] == '-' ? DELIM_CLOSE : DELIM_NOT;
    }
    i = skip_ows(body, i, len);
    if (i == len) return DELIM_TRUNCATED;
    if (body[i] == '\n') {
        *next = i + 1;
        return DELIM_NEXT;
    }
    if (body[i] == '\r') {
        if (i + 1 == len) return DELIM_TRUNCATED;
        if (body[i + 1] == '\n') {
            *next = i + 2;
            return DELIM_NEXT;
        }
    }
    return DELIM_NOT;
}

struct scan {
    const char *body;
    size_t len;
    char needle[3 + SRV_MULTIPART_MAX_BOUNDARY]; /* "\n--" boundary */
    size_t needle_len;
};

/* Finds the first delimiter whose line end starts at or after from (or, with at_start, one that starts the
 * body itself). Returns its kind; *data_end is where the data before it ends (the CR, LF or start of the
 * "--"), *next where the following part starts. DELIM_NOT means none was found. */
static int find_delim(const struct scan *sc, size_t from, bool at_start, size_t *data_end, size_t *next)
{
    const char *dash = sc->needle + 1;
    size_t dash_len = sc->needle_len - 1;
    if (at_start && sc->len >= dash_len && memcmp(sc->body, dash, dash_len) == 0) {
        int kind = delim_end(sc->body, sc->len, dash_len, next);
        if (kind != DELIM_NOT) {
            *data_end = 0;
            return kind;
        }
    }
    size_t lo = from; /* the data starts here: a CR before lo is not the delimiter's */
    while (from < sc->len) {
        const char *hit = memmem(sc->body + from, sc->len - from, sc->needle, sc->needle_len);
        if (!hit) break;
        size_t at = (size_t)(hit - sc->body);
        int kind = delim_end(sc->body, sc->len, at + sc->needle_len, next);
        if (kind != DELIM_NOT) {
            *data_end = at > lo && sc->body[at - 1] == '\r' ? at - 1 : at;
            return kind;
        }
        from = at + 1;
    }
    /* A body that ends in a delimiter cut short ("\r\n--bou") is reported as truncated, so that the message
     * points at the cause; only the kind of failure depends on it. */
    size_t tail = sc->len > sc->needle_len ? sc->len - sc->needle_len : 0;
    if (tail < from) tail = from;
    for (size_t k = tail; k + 3 <= sc->len; k++)
        if (memcmp(sc->body + k, sc->needle, sc->len - k) == 0) return DELIM_TRUNCATED;
    return DELIM_NOT;
}

/* Parses the Content-Disposition value v[0, n) into part's name and filename. */
static int parse_disposition(const char *v, size_t n, struct srv_part *part, size_t ip, char *err,
                             size_t err_len)
{
    size_t i = skip_token(v, 0, n);
    if (!ieq(v, i, "form-data")) {
        core_errf(err, err_len, "multipart: part %zu: Content-Disposition is not form-data", ip);
        return BANTER_ERR_FORMAT;
    }
    for (;;) {
        i = skip_ows(v, i, n);
        if (i == n) break;
        if (v[i] != ';') {
            core_errf(err, err_len,
                      "multipart: part %zu: Content-Disposition: expected ';' between parameters", ip);
            return BANTER_ERR_FORMAT;
        }
        i = skip_ows(v, i + 1, n);
        if (i == n) break;
        size_t name = i;
        i = skip_token(v, i, n);
        size_t name_len = i - name;
        i = skip_ows(v, i, n);
        if (!name_len || i == n || v[i] != '=') {
            core_errf(err, err_len, "multipart: part %zu: Content-Disposition: malformed parameter", ip);
            return BANTER_ERR_FORMAT;
        }
        i = skip_ows(v, i + 1, n);
        struct srv_str val = {0};
        if (i < n && v[i] == '"') {
            if (scan_quoted(v, i, n, &val, &i)) {
                core_errf(
                    err, err_len,
                    "multipart: part %zu: Content-Disposition: invalid quoting (unterminated quoted string)",
                    ip);
                return BANTER_ERR_FORMAT;
            }
        } else {
            size_t s = i;
            while (i < n && (is_tchar((unsigned char)v[i]) || (unsigned char)v[i] >= 0x80))
                i++;
            val.ptr = v + s;
            val.len = i - s;
            if (!val.len) {
                core_errf(
                    err, err_len,
                    "multipart: part %zu: Content-Disposition: invalid quoting (parameter value is neither "
                    "a quoted string nor a token)",
                    ip);
                return BANTER_ERR_FORMAT;
            }
        }
        struct srv_str *dst = NULL;
        if (ieq(v + name, name_len, "name"))
            dst = &part->name;
        else if (ieq(v + name, name_len, "filename"))
            dst = &part->filename;
        if (!dst) continue;
        if (dst->ptr) {
            core_errf(err, err_len, "multipart: part %zu: Content-Disposition repeats the %.*s parameter", ip,
                      (int)name_len, v + name);
            return BANTER_ERR_FORMAT;
        }
        *dst = val;
    }
    if (!part->name.ptr || part->name.len == 0) {
        core_errf(err, err_len, "multipart: part %zu: Content-Disposition has no name (or an empty one)", ip);
        return BANTER_ERR_FORMAT;
    }
    return 0;
}

/* Parses the header block of part ip starting at *pos; on success *pos is where its data starts. */
static int parse_headers(const char *body, size_t len, size_t *pos, struct srv_part *part, size_t ip,
                         char *err, size_t err_len)
{
    size_t start = *pos, i = start;
    size_t limit = len - start > SRV_MULTIPART_MAX_HEADER ? start + SRV_MULTIPART_MAX_HEADER : len;
    bool have_disp = false;
    for (;;) {
        const char *nl = memchr(body + i, '\n', limit - i);
        if (!nl) {
            if (limit == len)
                core_errf(err, err_len, "multipart: body truncated in the headers of part %zu (offset %zu)",
                          ip, start);
            else
                core_errf(err, err_len, "multipart: part %zu: header block is longer than %d bytes", ip,
                          SRV_MULTIPART_MAX_HEADER);
            return BANTER_ERR_FORMAT;
        }
        size_t eol = (size_t)(nl - body), next = eol + 1;
        if (eol > i && body[eol - 1] == '\r') eol--;
        if (eol == i) {
            *pos = next;
            break;
        }
        if (body[i] == ' ' || body[i] == '\t') {
            core_errf(err, err_len, "multipart: part %zu: folded header lines are not supported (offset %zu)",
                      ip, i);
            return BANTER_ERR_FORMAT;
        }
        size_t colon = skip_token(body, i, eol);
        if (colon == i || colon == eol || body[colon] != ':') {
            core_errf(err, err_len, "multipart: part %zu: malformed header line at offset %zu", ip, i);
            return BANTER_ERR_FORMAT;
        }
        size_t v = skip_ows(body, colon + 1, eol), e = eol;
        while (e > v && (body[e - 1] == ' ' || body[e - 1] == '\t'))
            e--;
        if (ieq(body + i, colon - i, "content-disposition")) {
            if (have_disp) {
                core_errf(err, err_len, "multipart: part %zu has two Content-Disposition headers", ip);
                return BANTER_ERR_FORMAT;
            }
            have_disp = true;
            int rc = parse_disposition(body + v, e - v, part, ip, err, err_len);
            if (rc) return rc;
        } else if (ieq(body + i, colon - i, "content-type")) {
            if (part->content_type.ptr) {
                core_errf(err, err_len, "multipart: part %zu has two Content-Type headers", ip);
                return BANTER_ERR_FORMAT;
            }
            part->content_type.ptr = body + v;
            part->content_type.len = e - v;
        }
        i = next;
    }
    if (!have_disp) {
        core_errf(err, err_len, "multipart: part %zu has no Content-Disposition header", ip);
        return BANTER_ERR_FORMAT;
    }
    return 0;
}

int srv_multipart_parse(const char *body, size_t len, const char *boundary, struct srv_part *parts,
                        size_t max_parts, size_t *n_parts, char *err, size_t err_len)
{
    BANTER_ASSERT(n_parts);
    *n_parts = 0;
    size_t blen = boundary ? strlen(boundary) : 0;
    if (blen == 0 || blen > SRV_MULTIPART_MAX_BOUNDARY) {
        core_errf(err, err_len, "multipart: boundary must be 1 to %d characters", SRV_MULTIPART_MAX_BOUNDARY);
        return BANTER_ERR_INVALID_ARG;
    }
    if (!body && len) {
        core_errf(err, err_len, "multipart: no body");
        return BANTER_ERR_INVALID_ARG;
    }
    struct scan sc = {.body = body ? body : "", .len = len, .needle_len = 3 + blen};
    memcpy(sc.needle, "\n--", 3);
    memcpy(sc.needle + 3, boundary, blen);

    size_t data_end, pos;
    int kind = find_delim(&sc, 0, true, &data_end, &pos);
    if (kind == DELIM_NOT) {
        core_errf(err, err_len,
                  "multipart: the body has no --%s delimiter (wrong boundary, or not form data)", boundary);
        return BANTER_ERR_FORMAT;
    }
    size_t n = 0;
    for (;;) {
        if (kind == DELIM_TRUNCATED) {
            core_errf(err, err_len, "multipart: body truncated in the first delimiter line");
            return BANTER_ERR_FORMAT;
        }
        if (kind == DELIM_CLOSE) break;
        BANTER_ASSERT(kind == DELIM_NEXT && pos <= len);
        if (n == max_parts) {
            core_errf(err, err_len, "multipart: more than %zu parts", max_parts);
            return BANTER_ERR_FORMAT;
        }
        struct srv_part *part = &parts[n];
        memset(part, 0, sizeof *part);
        int rc = parse_headers(body, len, &pos, part, n + 1, err, err_len);
        if (rc) return rc;
        size_t data = pos;
        /* Empty data is the delimiter's own line end right at data (CRLF or LF after the blank line). */
        kind = find_delim(&sc, data, false, &data_end, &pos);
        if (kind == DELIM_NOT) {
            core_errf(
                err, err_len,
                "multipart: missing final delimiter --%s-- after part %zu (body truncated or wrong boundary)",
                boundary, n + 1);
            return BANTER_ERR_FORMAT;
        }
        if (kind == DELIM_TRUNCATED) {
            core_errf(err, err_len, "multipart: body truncated in the delimiter line after part %zu", n + 1);
            return BANTER_ERR_FORMAT;
        }
        BANTER_ASSERT(data_end >= data && data_end <= len);
        part->data = body + data;
        part->len = data_end - data;
        n++;
    }
    *n_parts = n;
    return 0;
}

const struct srv_part *srv_multipart_find(const struct srv_part *parts, size_t n, const char *name)
{
    size_t want = strlen(name);
    for (size_t i = 0; i < n; i++) {
        const struct srv_str *s = &parts[i].name;
        size_t k = 0, j = 0;
        for (; j < s->len && k < want; j++, k++) {
            if (s->escaped && s->ptr[j] == '\\' && j + 1 < s->len) j++;
            if (s->ptr[j] != name[k]) break;
        }
        if (j == s->len && k == want) return &parts[i];
    }
    return NULL;
}

size_t srv_multipart_unquote(const struct srv_str *s, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t j = 0; s->ptr && j < s->len; j++) {
        if (s->escaped && s->ptr[j] == '\\' && j + 1 < s->len) j++;
        if (n + 1 < cap) out[n] = s->ptr[j];
        n++;
    }
    if (cap) out[n < cap ? n : cap - 1] = 0;
    return n;
}
