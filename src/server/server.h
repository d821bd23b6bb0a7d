/*
 * server.h: `banter serve`, an HTTP server (libwebsockets) with OpenAI-compatible speech routes.
 *
 * Routes: GET /health, GET /v1/models, POST /v1/audio/speech (JSON in, WAV or raw PCM out),
 * POST /v1/audio/transcriptions (multipart/form-data with a `file` field, when a recognizer is given),
 * POST /v1/chat/completions (OpenAI chat completions, whole or streamed as server-sent events, when a language
 * model is given; the wire format is in chat.h) and GET /metrics (Prometheus text format; the families are
 * in metrics.h). Every route but CORS preflight needs the API key when one is set.
 * Errors are OpenAI-shaped:
 * {"error":{"message":"...","type":"invalid_request_error","param":null,"code":null}}.
 *
 * Threads: srv_run runs the event loop on the calling thread; that thread owns every socket and never
 * computes. Request bodies are collected there (at most max_body bytes), then the request is queued to a
 * fixed pool of n_workers threads, which produce the whole response and wake the loop (lws_cancel_service) to
 * write it. A streamed chat completion is written while its worker still generates: the worker queues each
 * event on the request (at most STREAM_MAX_QUEUED bytes waiting; beyond that it pauses, and gives up after
 * STREAM_STALL_S) and wakes the loop, which writes them as the client takes them, closing the connection at the
 * end of the stream. A client that leaves cancels the generation. srv_stop may be called from any thread or a signal handler; the other functions from one thread
 * at a time.
 */
#ifndef BANTER_SERVER_H
#define BANTER_SERVER_H

#include "banter.h"

#include <stddef.h>

struct srv_config {
    const char *host;    /* address to listen on; NULL = "127.0.0.1" */
    int port;            /* TCP port; 0 = let the kernel pick a free one (see srv_port) */
    const char *api_key; /* when set, every route but CORS preflight needs "Authorization: Bearer KEY" */
    size_t max_body;     /* largest request body in bytes; 0 = 25 MiB; larger ones get 413 */
    int n_workers;       /* worker threads computing responses; 0 = 2 */
    int max_queue;       /* requests waiting for a worker before new ones get 503; 0 = 64 */
    const char *allowed_origin; /* CORS: the origin allowed to call (or "*"); NULL = no CORS headers */
    const char *model_id;       /* the id GET /v1/models lists; NULL = "banter" */
    banter_llm *llm; /* the language model for chat completions (and realtime sessions); NULL = none (those
                        answer 503). Borrowed: it must outlive the server; it is thread-safe, and a native one
                        serves at most its n_sessions conversations at once (more answer 503). */
    /* The realtime endpoint /v1/realtime (realtime.h; it needs llm and the recognizer). */
    int max_sessions;         /* realtime sessions at once; 0 = 16 (more are refused with 503) */
    size_t max_message;       /* largest WebSocket message in bytes; 0 = 16 MiB (larger close with 1009) */
    int idle_timeout_s;       /* a realtime connection silent this long is closed; 0 = 600 */
    int rt_workers;           /* threads handling realtime events; 0 = 2 */
    const char *instructions; /* the sessions' default instructions; NULL = Banter's voice-assistant prompt */
};

struct srv;
struct metrics;

/* Opens the listening socket and starts the workers. asr may be NULL (transcriptions then answer 503); it is
 * borrowed, must outlive the server, and is used by one worker at a time. The config's strings are copied.
 * Returns 0, or a negative banter_status with *out NULL and a message in err (e.g. the port is in use). */
int srv_open(const struct srv_config *cfg, banter_asr *asr, struct srv **out, char *err, size_t err_len);

/* The server's metrics registry, for the code that serves sessions to count into (see metrics.h; thread-safe).
 * Owned by s; valid until srv_close. */
struct metrics *srv_metrics(struct srv *s);

/* The TCP port the server listens on (the kernel's pick when cfg->port was 0). */
int srv_port(const struct srv *s);

/* Runs the event loop on the calling thread until srv_stop. Returns 0, or a negative banter_status if the
 * loop failed. */
int srv_run(struct srv *s);

/* Makes srv_run return soon. Async-signal-safe (an atomic store and a write to lws's wakeup pipe); may be
 * called before srv_run, which then returns at once. */
void srv_stop(struct srv *s);

/* Closes every connection, stops the workers (abandoning queued requests) and frees the server. Call after
 * srv_run has returned (or without running it). Accepts NULL. */
void srv_close(struct srv *s);

#endif
