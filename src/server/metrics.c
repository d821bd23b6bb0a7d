/*
 * metrics.c: the server's metrics registry and its Prometheus text rendering (see metrics.h for the families).
 *
 * Everything sits behind one mutex: updates are a few additions, far rarer than the work they count, so a
 * lock costs nothing measurable and keeps a rendered page consistent (a histogram's buckets, sum and count are
 * read together). Histograms keep per-bucket counts and are made cumulative when rendered.
 */
#include "server/metrics.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Upper bounds in ms; a last, implicit bucket is +Inf. Spans a fast turn's few ms to a slow first reply. */
static const double bucket_le[METRICS_N_BUCKETS - 1] = {5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
                                                        30000};

static const char *const stage_names[METRICS_N_STAGES] = {"asr_final", "first_token", "first_audio", "total"};

static const char *const error_kinds[METRICS_N_ERROR_KINDS] = {
    "invalid_request", "auth", "busy", "llm", "asr", "tts", "session", "internal", "other"};

void metrics_init(struct metrics *m)
{
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->lock, NULL);
}

void metrics_deinit(struct metrics *m)
{
    for (int i = 0; i < m->n_routes; i++)
        free(m->routes[i]);
    pthread_mutex_destroy(&m->lock);
    memset(m, 0, sizeof *m);
}

void metrics_session_open(struct metrics *m)
{
    pthread_mutex_lock(&m->lock);
    m->sessions_active++;
    m->sessions_total++;
    pthread_mutex_unlock(&m->lock);
}

void metrics_session_close(struct metrics *m)
{
    pthread_mutex_lock(&m->lock);
    if (m->sessions_active > 0) m->sessions_active--;
    pthread_mutex_unlock(&m->lock);
}

static void observe(struct metrics_hist *h, double v)
{
    int b = 0;
    while (b < METRICS_N_BUCKETS - 1 && v > bucket_le[b])
        b++;
    h->counts[b]++;
    h->sum += v;
    h->count++;
}

static uint64_t nonneg(int n)
{
    return n > 0 ? (uint64_t)n : 0;
}

void metrics_turn(struct metrics *m, const banter_turn_stats *t)
{
    if (!t) return;
    const double v[METRICS_N_STAGES] = {t->asr_final_ms, t->first_token_ms, t->first_audio_ms, t->total_ms};
    pthread_mutex_lock(&m->lock);
    m->turns_total++;
    m->turns_interrupted += t->interrupted;
    m->turns_failed += t->failed;
    for (int i = 0; i < METRICS_N_STAGES; i++)
        if (v[i] > 0) observe(&m->stage[i], v[i]); /* 0: the stage did not happen in this turn */
    m->prompt_tokens += nonneg(t->n_prompt);
    m->prefilled_tokens += nonneg(t->n_prefilled);
    m->generated_tokens += nonneg(t->n_generated);
    pthread_mutex_unlock(&m->lock);
}

void metrics_llm_tokens(struct metrics *m, int n_prompt, int n_prefilled, int n_generated)
{
    pthread_mutex_lock(&m->lock);
    m->prompt_tokens += nonneg(n_prompt);
    m->prefilled_tokens += nonneg(n_prefilled);
    m->generated_tokens += nonneg(n_generated);
    pthread_mutex_unlock(&m->lock);
}

void metrics_error(struct metrics *m, const char *kind)
{
    int k = METRICS_N_ERROR_KINDS - 1; /* "other" */
    for (int i = 0; kind && i < METRICS_N_ERROR_KINDS - 1; i++)
        if (!strcmp(kind, error_kinds[i])) k = i;
    pthread_mutex_lock(&m->lock);
    m->errors[k]++;
    pthread_mutex_unlock(&m->lock);
}

/* A route label must be safe to print between quotes without escaping: a path of plain characters. */
static bool plain_label(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (s[n] < 0x21 || s[n] > 0x7E || s[n] == '"' || s[n] == '\\') return false;
    return n > 0 && n <= 64;
}

void metrics_http(struct metrics *m, const char *route, int status)
{
    if (status < 100 || status > 599) status = 0;
    pthread_mutex_lock(&m->lock);
    int r = -1;
    if (route && plain_label(route)) {
        for (int i = 0; i < m->n_routes && r < 0; i++)
            if (!strcmp(m->routes[i], route)) r = i;
        if (r < 0 && m->n_routes < METRICS_MAX_ROUTES && (m->routes[m->n_routes] = strdup(route)))
            r = m->n_routes++;
    }
    int e = -1;
    for (int i = 0; i < m->n_http && e < 0; i++)
        if (m->http[i].route == r && m->http[i].code == status) e = i;
    if (e < 0 && m->n_http < METRICS_MAX_HTTP) {
        e = m->n_http++;
        m->http[e].route = r;
        m->http[e].code = status;
        m->http[e].n = 0;
    }
    /* With the table full (it cannot be: routes x codes in use stay far below), the response goes uncounted. */
    if (e >= 0) m->http[e].n++;
    pthread_mutex_unlock(&m->lock);
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void counter(FILE *f, const char *name, const char *help, uint64_t v)
{
    family(f, name, "counter", help);
    fprintf(f, "%s %llu\n", name, (unsigned long long)v);
}

/* The scheduler's counters. Its batch histogram counts steps by conversations in them in buckets 1, 2, 3-4,
 * 5-8, 9-16 and 17+, which are exactly le 1, 2, 4, 8, 16 and +Inf. */
static void render_sched(FILE *f, const struct agent_sched_stats *st)
{
    counter(f, "banter_llm_steps_total", "Forward passes of the language model's scheduler.", st->steps);
    counter(f, "banter_llm_step_tokens_total", "Tokens in those passes (prefill and decode).", st->entries);
    family(f, "banter_llm_batch_size", "histogram", "Conversations batched into one forward pass.");
    static const char *const le[AGENT_SCHED_HIST] = {"1", "2", "4", "8", "16", "+Inf"};
    uint64_t cum = 0;
    for (int b = 0; b < AGENT_SCHED_HIST; b++) {
        cum += st->batch_hist[b];
        fprintf(f, "banter_llm_batch_size_bucket{le=\"%s\"} %llu\n", le[b], (unsigned long long)cum);
    }
    fprintf(f, "banter_llm_batch_size_sum %llu\n", (unsigned long long)st->seqs);
    fprintf(f, "banter_llm_batch_size_count %llu\n", (unsigned long long)cum); /* = +Inf even mid-update */
    family(f, "banter_llm_busy_seconds_total", "counter", "Seconds the scheduler spent in forward passes.");
    fprintf(f, "banter_llm_busy_seconds_total %.6f\n", st->busy_ms / 1000.0);
    counter(f, "banter_llm_prefix_hits_total", "First prompts that reused a shared system-prompt prefix.",
            st->prefix_hits);
    counter(f, "banter_llm_prefix_misses_total",
            "First prompts with a shareable prefix that no cached template held yet.", st->prefix_misses);
}

char *metrics_render(struct metrics *m, const struct agent_sched_stats *sched, size_t *len)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) return NULL;
    pthread_mutex_lock(&m->lock);

    family(f, "banter_sessions_active", "gauge", "Realtime sessions open now.");
    fprintf(f, "banter_sessions_active %lld\n", (long long)m->sessions_active);
    counter(f, "banter_sessions_total", "Realtime sessions opened.", m->sessions_total);
    counter(f, "banter_turns_total", "Spoken turns answered.", m->turns_total);
    counter(f, "banter_turns_interrupted_total", "Spoken turns whose reply the user interrupted.",
            m->turns_interrupted);
    counter(f, "banter_turns_failed_total", "Spoken turns whose reply the language model failed to produce.",
            m->turns_failed);

    family(f, "banter_turn_latency_ms", "histogram",
           "Milliseconds from the end of the user's turn to each stage of the reply (first_audio is the "
           "processing latency; total adds the endpoint delay).");
    for (int s = 0; s < METRICS_N_STAGES; s++) {
        const struct metrics_hist *h = &m->stage[s];
        uint64_t cum = 0;
        for (int b = 0; b < METRICS_N_BUCKETS; b++) {
            cum += h->counts[b];
            if (b < METRICS_N_BUCKETS - 1)
                fprintf(f, "banter_turn_latency_ms_bucket{stage=\"%s\",le=\"%g\"} %llu\n", stage_names[s],
                        bucket_le[b], (unsigned long long)cum);
            else
                fprintf(f, "banter_turn_latency_ms_bucket{stage=\"%s\",le=\"+Inf\"} %llu\n", stage_names[s],
                        (unsigned long long)cum);
        }
        fprintf(f, "banter_turn_latency_ms_sum{stage=\"%s\"} %.17g\n", stage_names[s], h->sum);
        fprintf(f, "banter_turn_latency_ms_count{stage=\"%s\"} %llu\n", stage_names[s],
                (unsigned long long)h->count);
    }

    counter(f, "banter_llm_prompt_tokens_total", "Prompt tokens of language-model calls (cached ones included).",
            m->prompt_tokens);
    counter(f, "banter_llm_prefilled_tokens_total", "Prompt tokens actually computed (not found in the cache).",
            m->prefilled_tokens);
    counter(f, "banter_llm_generated_tokens_total", "Tokens generated by the language model.",
            m->generated_tokens);

    family(f, "banter_errors_total", "counter", "Errors by kind.");
    for (int k = 0; k < METRICS_N_ERROR_KINDS; k++)
        fprintf(f, "banter_errors_total{kind=\"%s\"} %llu\n", error_kinds[k], (unsigned long long)m->errors[k]);

    family(f, "banter_http_requests_total", "counter", "HTTP responses by route and status code.");
    for (int i = 0; i < m->n_http; i++)
        fprintf(f, "banter_http_requests_total{route=\"%s\",code=\"%d\"} %llu\n",
                m->http[i].route >= 0 ? m->routes[m->http[i].route] : "other", m->http[i].code,
                (unsigned long long)m->http[i].n);

    pthread_mutex_unlock(&m->lock);
    if (sched) render_sched(f, sched);
    if (fclose(f) || !buf) {
        free(buf);
        return NULL;
    }
    if (len) *len = n;
    return buf;
}
