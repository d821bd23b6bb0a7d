/*
 * sse.h: an incremental parser for the Server-Sent Events stream of an OpenAI-compatible
 * /v1/chat/completions reply ("stream": true), turning it into the text pieces of the reply.
 *
 * The wire format (WHATWG HTML, "server-sent events", as model servers use it):
 *
 *   stream  = *( line EOL )           EOL is CRLF, LF or a lone CR
 *   line    = ":" comment             ignored (servers send ": ping" as a keep-alive)
 *           | name ":" [" "] value    one leading space of the value is dropped
 *           | name                    a field with an empty value
 *           | ""                      a blank line ends (dispatches) the event
 *
 *   : keep-alive
 *   data: {"choices":[{"index":0,"delta":{"role":"assistant"}}]}
 *
 *   data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}
 *
 *   data: {"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}
 *
 *   data: [DONE]
 *
 * Fields: "data" lines of one event are joined with "\n" (so a JSON object may span several data lines);
 * "event: NAME" names the event; "id" and "retry" are accepted and ignored, as is any other field whose name
 * is a token (letters, digits, '-', '_'). An event is dispatched at the blank line that ends it; an event
 * without data, or whose data is empty, is dropped (as the standard says).
 *
 * What an event means here:
 * - data "[DONE]": the reply is complete; everything after it is ignored.
 * - data that is a JSON object with an "error" member, an event named "error", or an "error:" field (the form
 *   llama.cpp's server uses): the server failed mid-reply; the parser fails with the server's message.
 * - any other data must be a JSON object (a chat.completion.chunk): choices[0].delta.content, when it is a
 *   non-empty string, is one piece of the reply. Chunks without choices, with an empty choices array (the
 *   usage chunk), or with a delta without content (the role chunk, the finish_reason chunk, reasoning text)
 *   deliver nothing.
 * Anything else is not the stream we asked for: data that is not JSON, JSON of another shape (choices not an
 * array, content neither string nor null), or a line whose field name is not a token (an HTML page, a plain
 * JSON body, a text error) fails with BANTER_ERR_FORMAT and the offending bytes, escaped, in the message.
 *
 * Limits: a line, and the joined data of one event, may be at most max_line bytes (default 1 MiB); longer
 * fails with BANTER_ERR_FORMAT rather than growing without bound. Memory is the line and data buffers, grown
 * on demand up to that limit and freed by agent_sse_deinit.
 *
 * At the end of the stream (agent_sse_finish) an unterminated last line is taken as a line and a pending
 * event is dispatched, although the standard drops it: a server that closes after "data: [DONE]" without the
 * blank line has still said it is done, and a truncated JSON object fails to parse either way.
 *
 * The result does not depend on how the bytes are split between feeds (a CRLF split across two feeds is one
 * line end). Failures are sticky: once a feed fails, every later call returns the same status and message.
 * A parser is used by one thread at a time.
 */
#ifndef BANTER_AGENT_SSE_H
#define BANTER_AGENT_SSE_H

#include <stdbool.h>
#include <stddef.h>

#define AGENT_SSE_MAX_LINE ((size_t)1 << 20)

/* Receives one piece of the reply's text (UTF-8, possibly ending inside a character). Return nonzero to
 * continue, 0 to stop: the feed then returns BANTER_ERR_CANCELLED. */
typedef int (*agent_sse_piece_fn)(const char *text, size_t len, void *user);

struct agent_sse {
    size_t max_line; /* longest line, and longest joined data of one event, in bytes */
    char *line;      /* the line being read: [0, line_len), not terminated */
    size_t line_len, line_cap;
    char *data; /* the data of the event being read, lines joined with "\n" */
    size_t data_len, data_cap;
    bool has_data; /* a data field was seen since the last dispatch */
    bool is_error; /* the event being read is an error ("event: error" or an "error:" field) */
    bool after_cr; /* the last byte fed ended a line with CR: a following LF belongs to it */
    bool done;     /* "[DONE]" was seen */
    int status;    /* 0, or the sticky failure */
    int n_events;  /* events dispatched (data events, including [DONE] and errors) */
    int n_pieces;  /* pieces delivered */
    char msg[512]; /* the failure's message */
};

/* Prepares p (caller-owned storage). max_line 0 = AGENT_SSE_MAX_LINE. Allocates nothing yet. */
void agent_sse_init(struct agent_sse *p, size_t max_line);

/* Frees p's buffers; p may be initialized again afterwards. */
void agent_sse_deinit(struct agent_sse *p);

/* Parses len more bytes of the stream, delivering each piece of text through fn as its event completes.
 * Returns 0; BANTER_ERR_FORMAT for a stream that is not chat-completion events, or a line or event over
 * max_line; BANTER_ERR_IO when the server reported an error in the stream; BANTER_ERR_CANCELLED when fn
 * returned 0; BANTER_ERR_NOMEM. On failure the message is copied into err (err may be NULL). After [DONE],
 * bytes are ignored and 0 is returned. */
int agent_sse_feed(struct agent_sse *p, const char *buf, size_t len, agent_sse_piece_fn fn, void *user,
                   char *err, size_t err_len);

/* Ends the stream: takes an unterminated last line as complete and dispatches a pending event. Returns as
 * agent_sse_feed. Afterwards p->done says whether [DONE] came, p->n_events how many events there were. */
int agent_sse_finish(struct agent_sse *p, agent_sse_piece_fn fn, void *user, char *err, size_t err_len);

#endif
