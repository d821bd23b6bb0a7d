/*
 * multipart.h: a parser for multipart/form-data request bodies (RFC 7578 on RFC 2046), as sent to
 * POST /v1/audio/transcriptions with the sound file and the form fields.
 *
 * The request's header names the boundary:
 *
 *   Content-Type: multipart/form-data; boundary=------------------------d74496d66958873e
 *
 * and the body is (CRLF shown as \r\n; a bare \n is accepted wherever \r\n is):
 *
 *   body       = [preamble \r\n] dash-bound pad \r\n part *( \r\n dash-bound pad \r\n part )
 *                \r\n dash-bound "--" [epilogue]
 *   dash-bound = "--" boundary        the first one may start the body, without a line end before it
 *   pad        = *( SP / HTAB )       transport padding
 *   part       = *( header \r\n ) \r\n data
 *   header     = name ":" OWS value OWS
 *
 *   --------------------------d74496d66958873e\r\n
 *   Content-Disposition: form-data; name="file"; filename="x.wav"\r\n
 *   Content-Type: audio/wav\r\n
 *   \r\n
 *   RIFF....WAVEfmt ...(binary)...\r\n
 *   --------------------------d74496d66958873e\r\n
 *   Content-Disposition: form-data; name="model"\r\n
 *   \r\n
 *   whisper-1\r\n
 *   --------------------------d74496d66958873e--\r\n
 *
 * A part's data ends at the first line end followed by "--" boundary and then "--", padding or a line end;
 * the boundary string anywhere else (not at the start of a line, or followed by other bytes) is data. The
 * line end before a delimiter belongs to the delimiter, not to the data. Preamble and epilogue are ignored.
 *
 * Part headers: Content-Disposition is required, of type form-data, with a non-empty name parameter and an
 * optional filename; parameter values are quoted strings (with backslash escapes) or tokens, parameter names
 * are case-insensitive, and other parameters (filename*) are ignored. Content-Type is kept as its trimmed
 * value. Other headers are ignored; folded (continued) header lines are rejected. A part's header block,
 * including the blank line that ends it, may be at most SRV_MULTIPART_MAX_HEADER bytes.
 *
 * Nothing is copied: every string and every part's data points into the body, so they live as long as the
 * body does. Strings are therefore (ptr, len) pairs, not NUL-terminated, and a quoted value that contained
 * backslash escapes is left escaped (escaped is set); srv_multipart_unquote copies it out unescaped. The
 * functions keep no state and are safe to call from any thread.
 */
#ifndef BANTER_SERVER_MULTIPART_H
#define BANTER_SERVER_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>

/* Longest boundary RFC 2046 allows. */
#define SRV_MULTIPART_MAX_BOUNDARY 70

/* Largest header block of one part, in bytes, including the blank line that ends it. */
#define SRV_MULTIPART_MAX_HEADER 8192

/* A string inside the body: [ptr, ptr + len). ptr is NULL when the value is absent. */
struct srv_str {
    const char *ptr;
    size_t len;
    bool escaped; /* a quoted value with backslash escapes still in it (see srv_multipart_unquote) */
};

struct srv_part {
    struct srv_str name;         /* the form field's name; never absent or empty */
    struct srv_str filename;     /* the filename parameter; ptr NULL when the part has none */
    struct srv_str content_type; /* the part's Content-Type value, trimmed; ptr NULL when absent */
    const char *data;            /* [len] bytes inside the body; may be empty */
    size_t len;
};

/* Extracts the boundary from a Content-Type header value (NUL-terminated): the media type must be
 * multipart/form-data (case-insensitive) and a boundary parameter (name case-insensitive, token or quoted
 * value) of 1..70 characters from RFC 2046's set must be present, once. Writes it NUL-terminated into
 * boundary (cap bytes; 71 is always enough). Returns 0, BANTER_ERR_FORMAT for a value that is not that (the
 * message in err says why), or BANTER_ERR_INVALID_ARG for a cap too small. */
int srv_multipart_boundary(const char *content_type, char *boundary, size_t cap, char *err, size_t err_len);

/* Parses body[0, len) (not NUL-terminated) delimited by boundary (as srv_multipart_boundary gives it) into
 * parts[0, max_parts), and writes the number found into *n_parts. Returns 0, or BANTER_ERR_FORMAT with a
 * message in err for a body that is not valid form data: no delimiter, no final delimiter, truncated, a part
 * without Content-Disposition or name, a header block too long, more than max_parts parts, invalid quoting.
 * BANTER_ERR_INVALID_ARG for a boundary that is empty or too long. On failure *n_parts is 0. */
int srv_multipart_parse(const char *body, size_t len, const char *boundary, struct srv_part *parts,
                        size_t max_parts, size_t *n_parts, char *err, size_t err_len);

/* The first part whose (unescaped) name equals name, or NULL. */
const struct srv_part *srv_multipart_find(const struct srv_part *parts, size_t n, const char *name);

/* Copies s, with backslash escapes removed when s->escaped, into out (cap bytes), NUL-terminated and cut
 * short if it does not fit. Returns the unescaped length, so a result >= cap means it was cut (as snprintf).
 * An absent s gives "" and 0. */
size_t srv_multipart_unquote(const struct srv_str *s, char *out, size_t cap);

#endif
