/*
 * sse.c: the chat-completions event-stream parser (the wire format and what each event means are in sse.h).
 *
 * Bytes are scanned for line ends; a line that is complete within one feed is processed where it lies, and
 * only a line split across feeds is gathered in the line buffer, so the common case copies nothing. A lone CR
 * ends a line too, and remembers (after_cr) that an LF right after it, possibly at the start of the next
 * feed, is the second half of a CRLF rather than a blank line.
 *
 * Each event's JSON is parsed with jansson, which bounds nesting depth, so hostile input cannot exhaust the
 * stack. Messages quote the offending bytes escaped (\xNN for anything not printable ASCII) and truncated, so
 * a binary or enormous body never ends up raw in a log line.
 */
#include "agent/sse.h"
#include "core/core.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* How many bytes of the offending input a message quotes. */
#define QUOTE_MAX 160

void agent_sse_init(struct agent_sse *p, size_t max_line)
{
    memset(p, 0, sizeof *p);
    p->max_line = max_line ? max_line : AGENT_SSE_MAX_LINE;
}

void agent_sse_deinit(struct agent_sse *p)
{
    core_free(p->line);
    core_free(p->data);
    p->line = p->data = NULL;
    p->line_len = p->line_cap = p->data_len = p->data_cap = 0;
}

/* Records the sticky failure and returns its status. */
__attribute__((format(printf, 3, 4))) static int fail(struct agent_sse *p, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->msg, sizeof p->msg, fmt, ap);
    va_end(ap);
    p->status = status;
    return status;
}

static int report(const struct agent_sse *p, char *err, size_t err_len)
{
    if (p->status) core_errf(err, err_len, "%s", p->msg);
    return p->status;
}

/* Writes src[0, n) into dst as readable text: printable ASCII as is, backslash and quote escaped, other bytes
 * as \xNN, except that with keep_utf8 bytes >= 0x80 are kept (the text is known to be UTF-8). Stops after
 * QUOTE_MAX source bytes or when dst is full, ending with "..." and never inside a kept UTF-8 character. */
static void quote(char *dst, size_t dst_len, const char *src, size_t n, bool keep_utf8)
{
    BANTER_ASSERT(dst_len >= 8);
    size_t o = 0, room = dst_len - 4; /* leave room for "..." and the NUL */
    size_t i = 0;
    for (; i < n && i < QUOTE_MAX; i++) {
        unsigned char c = (unsigned char)src[i];
        char tmp[5];
        size_t k;
        if (c == '\\' || c == '"') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            k = 2;
        } else if ((c >= 0x20 && c < 0x7f) || (keep_utf8 && c >= 0x80)) {
            tmp[0] = (char)c;
            k = 1;
        } else {
            snprintf(tmp, sizeof tmp, "\\x%02x", c);
            k = 4;
        }
        if (o + k > room) break;
        memcpy(dst + o, tmp, k);
        o += k;
    }
    if (i < n) {
        /* Truncated: do not end in the middle of a kept multi-byte character. */
        if (keep_utf8) {
            size_t back = o;
            while (back > 0 && ((unsigned char)dst[back - 1] & 0xc0) == 0x80)
                back--;
            if (back > 0 && (unsigned char)dst[back - 1] >= 0xc0) o = back - 1;
        }
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = 0;
}

/* Makes *buf hold at least need bytes. */
static int reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c = c > SIZE_MAX / 2 ? need : c * 2;
    char *nb = core_realloc(*buf, c);
    if (!nb) return BANTER_ERR_NOMEM;
    *buf = nb;
    *cap = c;
    return 0;
}

/* Field names are tokens; anything else means the body is not an event stream. */
static bool is_token(const char *s, size_t n)
{
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '_'))
            return false;
    }
    return true;
}

static bool equals(const char *s, size_t n, const char *word)
{
    return strlen(word) == n && memcmp(s, word, n) == 0;
}

static int append_data(struct agent_sse *p, const char *val, size_t n)
{
    size_t sep = p->has_data ? 1 : 0;
    if (n > p->max_line || p->data_len + sep > p->max_line - n)
        return fail(p, BANTER_ERR_FORMAT,
                    "an event of the model server's stream has more than %zu bytes of data", p->max_line);
    if (reserve(&p->data, &p->data_cap, p->data_len + sep + n))
        return fail(p, BANTER_ERR_NOMEM, "out of memory reading the model server's stream");
    if (sep) p->data[p->data_len++] = '\n';
    if (n) memcpy(p->data + p->data_len, val, n);
    p->data_len += n;
    p->has_data = true;
    return 0;
}

/* The message of an error the server sent in the stream: {"error": {"message": ...}}, {"error": "..."},
 * {"message": ...}, or the data itself when it is not JSON of that shape. */
static int server_error(struct agent_sse *p, const char *data, size_t n)
{
    char text[2 * QUOTE_MAX];
    json_t *root = json_loadb(data, n, 0, NULL);
    json_t *e = root && json_is_object(root) ? json_object_get(root, "error") : NULL;
    json_t *m = NULL;
    if (json_is_string(e))
        m = e;
    else if (json_is_object(e))
        m = json_object_get(e, "message");
    else if (json_is_object(root))
        m = json_object_get(root, "message");
    if (json_is_string(m)) {
        quote(text, sizeof text, json_string_value(m), json_string_length(m), true);
    } else if (e && !json_is_null(e)) {
        char *dump = json_dumps(e, JSON_COMPACT);
        if (dump)
            quote(text, sizeof text, dump, strlen(dump), true);
        else
            quote(text, sizeof text, data, n, false);
        free(dump); /* jansson's allocation */
    } else {
        quote(text, sizeof text, data, n, false);
    }
    json_decref(root);
    return fail(p, BANTER_ERR_IO, "the model server reported an error: %s", text);
}

/* A chunk's choices[0].delta.content, when it has one; NULL when it carries no text; sets the failure and
 * returns NULL with *bad set when the chunk is not of the expected shape. */
static json_t *chunk_content(struct agent_sse *p, json_t *root, bool *bad)
{
    *bad = true;
    json_t *choices = json_object_get(root, "choices");
    if (!choices || json_is_null(choices)) goto none;
    if (!json_is_array(choices)) {
        fail(p, BANTER_ERR_FORMAT,
             "the model server's stream is not chat completions: \"choices\" is not an array");
        return NULL;
    }
    if (json_array_size(choices) == 0) goto none;
    json_t *c0 = json_array_get(choices, 0);
    if (!json_is_object(c0)) {
        fail(p, BANTER_ERR_FORMAT,
             "the model server's stream is not chat completions: a choice is not an object");
        return NULL;
    }
    json_t *delta = json_object_get(c0, "delta");
    if (!delta || json_is_null(delta)) goto none;
    if (!json_is_object(delta)) {
        fail(p, BANTER_ERR_FORMAT,
             "the model server's stream is not chat completions: \"delta\" is not an object");
        return NULL;
    }
    json_t *content = json_object_get(delta, "content");
    if (!content || json_is_null(content)) goto none;
    if (!json_is_string(content)) {
        fail(p, BANTER_ERR_FORMAT,
             "the model server's stream is not chat completions: \"content\" is not a string");
        return NULL;
    }
    *bad = false;
    return content;
none:
    *bad = false;
    return NULL;
}

/* Acts on the event gathered so far (a blank line ended it). */
static int dispatch(struct agent_sse *p, agent_sse_piece_fn fn, void *user)
{
    bool is_error = p->is_error;
    size_t n = p->data_len;
    bool has_data = p->has_data;
    p->is_error = false;
    p->has_data = false;
    p->data_len = 0;
    if (!has_data || n == 0) return 0;
    p->n_events++;
    const char *d = p->data;
    if (is_error) return server_error(p, d, n);

    /* "[DONE]", tolerating surrounding whitespace. */
    size_t a = 0, b = n;
    while (a < b && (d[a] == ' ' || d[a] == '\t' || d[a] == '\n'))
        a++;
    while (b > a && (d[b - 1] == ' ' || d[b - 1] == '\t' || d[b - 1] == '\n'))
        b--;
    if (equals(d + a, b - a, "[DONE]")) {
        p->done = true;
        return 0;
    }

    char text[2 * QUOTE_MAX];
    json_error_t jerr;
    json_t *root = json_loadb(d, n, JSON_ALLOW_NUL | JSON_DECODE_ANY, &jerr);
    if (!root) {
        quote(text, sizeof text, d, n, false);
        return fail(p, BANTER_ERR_FORMAT,
                    "the model server's stream is not chat completions: data is not JSON (%s): \"%s\"",
                    jerr.text, text);
    }
    if (!json_is_object(root)) {
        json_decref(root);
        quote(text, sizeof text, d, n, false);
        return fail(p, BANTER_ERR_FORMAT,
                    "the model server's stream is not chat completions: data is not a JSON object: \"%s\"",
                    text);
    }
    json_t *e = json_object_get(root, "error");
    if (e && !json_is_null(e)) {
        json_decref(root);
        return server_error(p, d, n);
    }
    bool bad;
    json_t *content = chunk_content(p, root, &bad);
    int rc = bad ? p->status : 0;
    if (content && json_string_length(content) > 0) {
        p->n_pieces++;
        if (!fn(json_string_value(content), json_string_length(content), user))
            rc = fail(p, BANTER_ERR_CANCELLED, "the reply was stopped by its receiver");
    }
    json_decref(root);
    return rc;
}

static int process_line(struct agent_sse *p, const char *s, size_t n, agent_sse_piece_fn fn, void *user)
{
    if (n == 0) return dispatch(p, fn, user);
    if (s[0] == ':') return 0; /* a comment: keep-alive */
    const char *colon = memchr(s, ':', n);
    size_t name_len = colon ? (size_t)(colon - s) : n;
    const char *val = colon ? colon + 1 : s + n;
    size_t val_len = colon ? n - name_len - 1 : 0;
    if (val_len > 0 && val[0] == ' ') {
        val++;
        val_len--;
    }
    if (!is_token(s, name_len)) {
        char text[2 * QUOTE_MAX];
        quote(text, sizeof text, s, n, false);
        return fail(p, BANTER_ERR_FORMAT,
                    "the model server's reply is not an event stream: it has the line \"%s\"", text);
    }
    if (equals(s, name_len, "data")) return append_data(p, val, val_len);
    if (equals(s, name_len, "error")) {
        p->is_error = true;
        return append_data(p, val, val_len);
    }
    if (equals(s, name_len, "event")) p->is_error = equals(val, val_len, "error");
    return 0; /* id, retry and unknown fields */
}

int agent_sse_feed(struct agent_sse *p, const char *buf, size_t len, agent_sse_piece_fn fn, void *user,
                   char *err, size_t err_len)
{
    if (p->status) return report(p, err, err_len);
    size_t i = 0;
    while (i < len && !p->done) {
        if (p->after_cr) {
            p->after_cr = false;
            if (buf[i] == '\n') {
                i++;
                continue;
            }
        }
        size_t j = i;
        while (j < len && buf[j] != '\n' && buf[j] != '\r')
            j++;
        size_t seg = j - i;
        if (seg > p->max_line - p->line_len) {
            fail(p, BANTER_ERR_FORMAT, "the model server's stream has a line longer than %zu bytes",
                 p->max_line);
            return report(p, err, err_len);
        }
        if (j == len || p->line_len > 0) {
            /* The line continues from an earlier feed or into a later one: gather it. */
            if (reserve(&p->line, &p->line_cap, p->line_len + seg)) {
                fail(p, BANTER_ERR_NOMEM, "out of memory reading the model server's stream");
                return report(p, err, err_len);
            }
            if (seg) memcpy(p->line + p->line_len, buf + i, seg);
            p->line_len += seg;
            if (j == len) break;
        }
        const char *s = p->line_len > 0 ? p->line : buf + i;
        size_t n = p->line_len > 0 ? p->line_len : seg;
        p->after_cr = buf[j] == '\r';
        i = j + 1;
        int rc = process_line(p, s, n, fn, user);
        p->line_len = 0;
        if (rc) return report(p, err, err_len);
    }
    return 0;
}

int agent_sse_finish(struct agent_sse *p, agent_sse_piece_fn fn, void *user, char *err, size_t err_len)
{
    if (p->status) return report(p, err, err_len);
    if (p->done) return 0;
    p->after_cr = false;
    if (p->line_len > 0) {
        size_t n = p->line_len;
        p->line_len = 0;
        if (process_line(p, p->line, n, fn, user)) return report(p, err, err_len);
        if (p->done) return 0;
    }
    if (dispatch(p, fn, user)) return report(p, err, err_len);
    return 0;
}
