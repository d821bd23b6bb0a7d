/*
 * chat.h: the OpenAI chat-completions wire format behind POST /v1/chat/completions: parsing and validating a
 * request, filtering the generated text (UTF-8 holdback, stop strings), and rendering the answer, either one
 * chat.completion object or the server-sent events of a stream. Nothing here touches a socket or a model, so
 * all of it is unit-tested and fuzzed on its own (tests/test_chat_api.c, fuzz/fuzz_chat_request.c).
 *
 * Request: a JSON object; fields not listed are ignored.
 *
 *   model                  string (at most CHAT_MAX_MODEL bytes), echoed back; absent: the server's model id
 *   messages               array of 1..CHAT_MAX_MESSAGES {"role", "content"}; role system, developer (taken as
 *                          system), user or assistant; content a string, or an array of {"type":"text","text"}
 *                          parts (joined with "\n"); null content only for assistant (empty). At most
 *                          CHAT_MAX_TEXT bytes of text in all.
 *   max_completion_tokens  integer 1..CHAT_MAX_TOKENS; max_tokens is the older name (the newer wins)
 *   temperature            number 0..2          top_p  number 0..1 (0 keeps only the likeliest token: greedy)
 *   seed                   integer              n      1 (only one choice is produced)
 *   stop                   a string or an array of at most CHAT_MAX_STOP strings, each 1..CHAT_MAX_STOP_LEN
 *                          bytes: the reply ends before the first of them, which is not part of it
 *   stream                 boolean; stream_options {"include_usage": boolean} only with stream
 *   tools, functions       only absent, null or empty; tool_choice only "none"; response_format only
 *                          {"type":"text"}: everything else answers "not supported"
 * null counts as absent for every optional field.
 *
 * Response (stream false):
 *
 *   {"id":"chatcmpl-<24 hex>","object":"chat.completion","created":UNIX_SECONDS,"model":MODEL,
 *    "choices":[{"index":0,"message":{"role":"assistant","content":TEXT},"finish_reason":"stop"|"length"}],
 *    "usage":{"prompt_tokens":P,"completion_tokens":C,"total_tokens":P+C}}
 *
 * Stream (Content-Type text/event-stream): events "data: JSON\n\n" of object "chat.completion.chunk" with the
 * same id, created and model: first {"delta":{"role":"assistant","content":""}}, then {"delta":{"content":
 * TEXT}} as text is generated, then {"delta":{},"finish_reason":...}; with include_usage every chunk so far
 * has "usage":null and one more follows with "choices":[] and the usage; then "data: [DONE]\n\n". An error in
 * the middle of a stream is sent as an event {"error":{...}} followed by [DONE].
 *
 * Generated text arrives in pieces that may end inside a UTF-8 character or inside a stop string. The filter
 * (struct chat_filter) keeps the reply as valid UTF-8 (bytes that cannot form a character become U+FFFD) and
 * holds back the end of the text while it could still be the start of a stop string or of a character, so
 * what it releases never changes afterwards.
 */
#ifndef BANTER_SERVER_CHAT_H
#define BANTER_SERVER_CHAT_H

#include "agent/agent_llm.h"
#include "banter.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CHAT_MAX_MESSAGES 4096
#define CHAT_MAX_TEXT ((size_t)256 << 10) /* bytes of message text in one request */
#define CHAT_MAX_MODEL 256
#define CHAT_MAX_TOKENS 32768
#define CHAT_DEFAULT_MAX_TOKENS 2048 /* the backend still keeps a reply within half its context */
#define CHAT_MAX_STOP 4
#define CHAT_MAX_STOP_LEN 256

struct chat_request {
    char *model;               /* NULL when absent */
    banter_chat_message *msgs; /* [n_msgs]: role a static string ("system", "user", "assistant"), content
                                  malloc'd */
    size_t n_msgs;
    size_t n_text;             /* bytes of content in all */
    int max_tokens;            /* 0 = not given */
    bool has_temperature, has_top_p, has_seed;
    double temperature, top_p;
    uint64_t seed;
    char *stop[CHAT_MAX_STOP]; /* [n_stop], malloc'd */
    size_t n_stop;
    bool stream, include_usage;
    char param[64];            /* after a failed parse: the field at fault ("messages[2].role"), or "" */
};

/* Parses and validates a request body of len bytes (need not be NUL-terminated). Returns 0 with *req filled
 * (free with chat_request_free), or BANTER_ERR_INVALID_ARG (bad JSON or a bad field) or BANTER_ERR_NOMEM, with
 * a message for the client in err, req->param naming the field, and nothing left to free. Thread-safe. */
int chat_request_parse(const char *body, size_t len, struct chat_request *req, char *err, size_t err_len);

/* Frees what a successful parse allocated and zeroes *req. Accepts a zeroed or freed request. */
void chat_request_free(struct chat_request *req);

/* The reply settings the request asks for: banter_sampler_config_default() with temperature, top_p and seed
 * replaced where given, and max_tokens (CHAT_DEFAULT_MAX_TOKENS when not given). */
void chat_request_reply_config(const struct chat_request *req, struct agent_reply_config *out);

/* Generated text on its way out (see the file comment). Caller-owned storage: init, feed, finish, deinit. */
struct chat_filter {
    const char *const *stop; /* [n_stop], borrowed from the request */
    size_t n_stop;
    char *text;              /* [len]: the reply so far, valid UTF-8, cut before a stop string; malloc'd */
    size_t len, cap;
    size_t safe;             /* text[0, safe) is final and may be released */
    unsigned char part[4];   /* [n_part]: an incomplete UTF-8 sequence at the end of the input so far */
    size_t n_part, part_need;
    bool stopped;            /* a stop string ended the reply: feed no more */
};

void chat_filter_init(struct chat_filter *f, const struct chat_request *req);
void chat_filter_deinit(struct chat_filter *f);

/* Adds a piece of generated text. Returns 1 to go on, 0 when a stop string ended the reply (f->stopped; the
 * text is cut before it and all final), or BANTER_ERR_NOMEM. */
int chat_filter_feed(struct chat_filter *f, const char *piece, size_t len);

/* The generation ended: an incomplete character left at the end becomes U+FFFD and the whole text is final.
 * Returns 0 or BANTER_ERR_NOMEM. */
int chat_filter_finish(struct chat_filter *f);

/* What the response objects share. */
struct chat_meta {
    char id[48];       /* "chatcmpl-" and 24 hex digits */
    long long created; /* Unix seconds */
    const char *model; /* borrowed */
    bool include_usage;
};

struct chat_usage {
    int prompt_tokens, completion_tokens;
};

/* Fills m: the id from two random numbers, created, model (borrowed) and include_usage. */
void chat_meta_init(struct chat_meta *m, uint64_t r1, uint64_t r2, long long created, const char *model,
                    bool include_usage);

/* The chat.completion object for text[len] (valid UTF-8) as compact JSON: malloc'd, NUL-terminated, length in
 * *out_len; NULL when out of memory. finish is "stop" or "length". */
char *chat_render_completion(const struct chat_meta *m, const char *text, size_t len, const char *finish,
                             const struct chat_usage *u, size_t *out_len);

/* One stream event "data: {chunk}\n\n" (malloc'd, NUL-terminated, length in *out_len; NULL when out of memory):
 * with role, the opening delta {"role":"assistant","content":""}; else with text (valid UTF-8) a content delta;
 * else an empty delta. finish NULL gives "finish_reason":null. */
char *chat_render_chunk(const struct chat_meta *m, bool role, const char *text, size_t len, const char *finish,
                        size_t *out_len);

/* The closing usage event (choices empty), as chat_render_chunk. */
char *chat_render_usage_chunk(const struct chat_meta *m, const struct chat_usage *u, size_t *out_len);

/* An OpenAI-shaped error object {"error":{"message","type","param","code":null}} as compact JSON (malloc'd;
 * NULL when out of memory). type NULL = "invalid_request_error"; param NULL or "" gives null. With sse, framed
 * as one stream event. */
char *chat_render_error(const char *message, const char *type, const char *param, bool sse, size_t *out_len);

/* The stream's last event. */
#define CHAT_SSE_DONE "data: [DONE]\n\n"

#endif
