/*
 * realtime.h: the WebSocket endpoint /v1/realtime of `banter serve`: live voice conversations over the OpenAI
 * Realtime API's event protocol (docs/realtime.md is the contract: events, fields, formats, limits).
 *
 * Each connection holds one banter_session (opened with no_playout: the client plays the audio it receives).
 * The event loop thread only moves bytes: it assembles incoming messages and hands them to the connection's
 * inbox, and writes what the connection's outbox holds. A small pool of realtime workers does the rest: it
 * opens and closes sessions and handles client events (JSON parsing, base64, resampling, feeding the session).
 * A connection is handled by one worker at a time, so its events keep their order, while different connections
 * run in parallel. The session's own threads turn its events into server events straight into the outbox and
 * wake the loop with lws_cancel_service.
 *
 * Limits: max_sessions connections at once (more are refused with HTTP 503 before the upgrade); a message
 * larger than max_message bytes closes the connection with status 1009; input waiting to be handled beyond
 * RT_MAX_INBOX bytes, or output waiting for a client that does not read beyond RT_MAX_OUTBOX bytes, closes it
 * (1008); a connection that sends nothing for idle_timeout_s seconds gets an error event and is closed (1000).
 */
#ifndef BANTER_SERVER_REALTIME_H
#define BANTER_SERVER_REALTIME_H

#include "banter.h"

#include <libwebsockets.h>
#include <stdbool.h>
#include <stddef.h>

struct metrics;

#define RT_MAX_INBOX ((size_t)64 << 20)
#define RT_MAX_OUTBOX ((size_t)64 << 20)

struct rt_config {
    banter_llm *llm;          /* borrowed; NULL: connections are refused (503) */
    banter_asr *asr;          /* borrowed; NULL: connections are refused (503) */
    int max_sessions;         /* 0 = 16 */
    size_t max_message;       /* 0 = 16 MiB */
    int idle_timeout_s;       /* 0 = 600 */
    int n_workers;            /* 0 = 2 */
    const char *instructions; /* the sessions' default instructions (NULL = the session's default prompt) */
    const char *model_id;     /* reported in session objects */
    struct metrics *metrics;  /* borrowed; may be NULL */
};

struct rt;
struct rt_conn;

int rt_open(const struct rt_config *cfg, struct lws_context *ctx, struct rt **out, char *err, size_t err_len);

/* Called on the loop thread from the HTTP protocol's LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: checks the path and the
 * session limit (auth and origin are the caller's). Returns 0 to let the upgrade go on, or an HTTP status to
 * refuse it with, with a message in msg. */
int rt_check_upgrade(struct rt *rt, struct lws *wsi, char *msg, size_t msg_len);

/* The WebSocket callbacks of a connection (loop thread). *slot is the connection's pointer in the per-session
 * data. Returns what the lws callback should return. */
int rt_callback(struct rt *rt, struct lws *wsi, enum lws_callback_reasons reason, struct rt_conn **slot,
                void *in, size_t len);

/* On LWS_CALLBACK_EVENT_WAIT_CANCELLED (loop thread): asks for writable callbacks where output waits, and
 * closes connections marked for closing. */
void rt_service(struct rt *rt);

/* Sessions open now. Thread-safe. */
int rt_sessions(struct rt *rt);

/* Before the lws context is destroyed: no worker wakes the loop from now on. */
void rt_detach_loop(struct rt *rt);

/* After the lws context is destroyed (every connection has had its close callback): closes the remaining
 * sessions, stops the workers and frees everything. Accepts NULL. */
void rt_close(struct rt *rt);

#endif
