/*
 * metrics.h: the server's counters and latency histograms, rendered for GET /metrics in the Prometheus text
 * format 0.0.4:
 *
 *   # HELP banter_turns_total Spoken turns answered.
 *   # TYPE banter_turns_total counter
 *   banter_turns_total 12
 *   # HELP banter_turn_latency_ms ...
 *   # TYPE banter_turn_latency_ms histogram
 *   banter_turn_latency_ms_bucket{stage="first_audio",le="50"} 9        cumulative: samples <= 50 ms
 *   banter_turn_latency_ms_bucket{stage="first_audio",le="+Inf"} 12     always equal to _count
 *   banter_turn_latency_ms_sum{stage="first_audio"} 481.5
 *   banter_turn_latency_ms_count{stage="first_audio"} 12
 *
 * Every family has its HELP and TYPE lines before its samples; counters end in _total. Label values come from
 * fixed sets (error kinds, stages) or from a bounded table (HTTP routes: at most METRICS_MAX_ROUTES distinct
 * strings, later ones count as "other"), so a client cannot grow the output without bound.
 *
 * Families: banter_sessions_active (gauge), banter_sessions_total, banter_turns_total,
 * banter_turns_interrupted_total, banter_turns_failed_total, banter_turn_latency_ms{stage} (asr_final,
 * first_token, first_audio = the processing latency, total = endpoint delay + processing),
 * banter_llm_prompt_tokens_total, banter_llm_prefilled_tokens_total, banter_llm_generated_tokens_total
 * (tokens per second is their rate()), banter_errors_total{kind}, banter_http_requests_total{route,code};
 * and, given the native backend's scheduler counters, banter_llm_steps_total, banter_llm_step_tokens_total,
 * banter_llm_batch_size (histogram of conversations per forward pass), banter_llm_busy_seconds_total,
 * banter_llm_prefix_hits_total and banter_llm_prefix_misses_total.
 *
 * Threads: every function may be called from any thread at any time (one mutex guards the registry).
 */
#ifndef BANTER_SERVER_METRICS_H
#define BANTER_SERVER_METRICS_H

#include "agent/agent_llm.h"
#include "banter.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define METRICS_N_BUCKETS 13 /* latency buckets in ms, the last one +Inf */
#define METRICS_N_STAGES 4
#define METRICS_N_ERROR_KINDS 9
#define METRICS_MAX_ROUTES 24
#define METRICS_MAX_HTTP 256 /* distinct (route, code) pairs */

struct metrics_hist {
    uint64_t counts[METRICS_N_BUCKETS]; /* per bucket, not cumulative; the last is (10 s, +Inf) */
    double sum;
    uint64_t count;
};

struct metrics {
    pthread_mutex_t lock; /* guards every field below */
    int64_t sessions_active;
    uint64_t sessions_total;
    uint64_t turns_total, turns_interrupted, turns_failed;
    struct metrics_hist stage[METRICS_N_STAGES];
    uint64_t prompt_tokens, prefilled_tokens, generated_tokens;
    uint64_t errors[METRICS_N_ERROR_KINDS];
    char *routes[METRICS_MAX_ROUTES]; /* [n_routes] route labels seen, malloc'd */
    int n_routes;
    struct {
        int route; /* index into routes, or -1 for "other" */
        int code;
        uint64_t n;
    } http[METRICS_MAX_HTTP]; /* [n_http] */
    int n_http;
};

/* Caller-owned storage: init before any other call, deinit after the last. */
void metrics_init(struct metrics *m);
void metrics_deinit(struct metrics *m);

/* A realtime session opened / closed (gauge banter_sessions_active; counter banter_sessions_total). */
void metrics_session_open(struct metrics *m);
void metrics_session_close(struct metrics *m);

/* One spoken turn ended: counts it (and whether it was interrupted or failed), observes the stage latencies
 * that happened (those > 0), and adds its prompt, prefilled and generated tokens. */
void metrics_turn(struct metrics *m, const banter_turn_stats *t);

/* Tokens of one language-model call outside a spoken turn (a chat completion): the whole prompt, the part
 * actually prefilled (the rest was cached), and the tokens generated. */
void metrics_llm_tokens(struct metrics *m, int n_prompt, int n_prefilled, int n_generated);

/* One error of the given kind: "invalid_request", "auth", "busy", "llm", "asr", "tts", "session", "internal";
 * anything else (or NULL) counts as "other". */
void metrics_error(struct metrics *m, const char *kind);

/* One HTTP response: route is the path it was served under (a fixed string; after METRICS_MAX_ROUTES distinct
 * ones, or NULL, "other"), status its code (100..599, else 0). */
void metrics_http(struct metrics *m, const char *route, int status);

/* Renders every family, and the scheduler's when sched is not NULL (a snapshot the caller took with
 * agent_llm_native_sched_stats). Returns a malloc'd NUL-terminated text with its length in *len, or NULL when
 * out of memory. */
char *metrics_render(struct metrics *m, const struct agent_sched_stats *sched, size_t *len);

#endif
