/*
 * test_metrics.c: the metrics registry (src/server/metrics.c) and its Prometheus text output.
 *   1. The output of an empty and of a used registry obeys the text format 0.0.4, checked line by line: every
 *      sample's family has HELP then TYPE before it, names and labels are well-formed, counters end in _total,
 *      histogram buckets rise with le, are cumulative, and the +Inf one equals _count.
 *   2. Values after known observations: bucket placement at the bounds, sums, the gauge, error kinds mapped to
 *      "other", route labels bounded.
 *   3. Threads observing while another renders: the output stays valid and the final counts add up.
 */
#include "server/metrics.h"

#include "test.h"

#include <ctype.h>
#include <pthread.h>

/* The value of the sample line starting with `prefix ` in text, or -1. */
static double value_of(const char *text, const char *prefix)
{
    size_t pl = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (!strncmp(p, prefix, pl) && p[pl] == ' ') return strtod(p + pl + 1, NULL);
    }
    return -1;
}

struct family {
    char name[96];
    char type[32];
    bool help;
};

static bool name_ok(const char *s, size_t n)
{
    if (!n || !(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':')) return false;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == ':')) return false;
    return true;
}

/* Checks text against the format rules; returns the number of samples. */
static int check_format(const char *text)
{
    enum { MAXF = 64 };
    struct family fams[MAXF];
    int n_fams = 0, n_samples = 0;
    struct family *cur = NULL;
    /* Histogram state for the current label set. */
    char hist_key[256] = "";
    double last_le = -1, last_count = -1;
    bool saw_inf = false;
    double inf_count = -1;

    CHECK(text[0] && text[strlen(text) - 1] == '\n');
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        CHECK(nl != NULL);
        if (!nl) break;
        char line[512];
        size_t len = (size_t)(nl - p);
        CHECK(len > 0 && len < sizeof line);
        snprintf(line, sizeof line, "%.*s", (int)len, p);
        p = nl + 1;
        if (!strncmp(line, "# HELP ", 7)) {
            const char *name = line + 7, *sp = strchr(name, ' ');
            CHECK(sp && name_ok(name, (size_t)(sp - name)) && sp[1]);
            CHECK(n_fams < MAXF);
            cur = &fams[n_fams++];
            snprintf(cur->name, sizeof cur->name, "%.*s", sp ? (int)(sp - name) : 0, name);
            for (int i = 0; i < n_fams - 1; i++)
                CHECK(strcmp(fams[i].name, cur->name)); /* each family once */
            cur->help = true;
            cur->type[0] = 0;
            continue;
        }
        if (!strncmp(line, "# TYPE ", 7)) {
            CHECK(cur != NULL);
            if (!cur) continue;
            char name[96], type[32];
            CHECK_INT_EQ(sscanf(line + 7, "%95s %31s", name, type), 2);
            CHECK_STR_EQ(name, cur->name); /* TYPE right after its HELP */
            CHECK(!strcmp(type, "counter") || !strcmp(type, "gauge") || !strcmp(type, "histogram"));
            snprintf(cur->type, sizeof cur->type, "%s", type);
            if (!strcmp(type, "counter")) {
                size_t nl2 = strlen(name);
                CHECK(nl2 > 6 && !strcmp(name + nl2 - 6, "_total"));
            }
            continue;
        }
        CHECK(line[0] != '#');
        /* A sample: name{labels} value */
        n_samples++;
        CHECK(cur != NULL && cur->type[0]);
        if (!cur) continue;
        const char *brace = strchr(line, '{'), *space = strrchr(line, ' ');
        CHECK(space != NULL);
        if (!space) continue;
        size_t nlen = (size_t)((brace && brace < space ? brace : space) - line);
        CHECK(name_ok(line, nlen));
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)nlen, line);
        char labels[256] = "";
        if (brace && brace < space) {
            const char *close = strchr(brace, '}');
            CHECK(close && close + 1 == space);
            snprintf(labels, sizeof labels, "%.*s", close ? (int)(close - brace - 1) : 0, brace + 1);
            /* label="value" pairs, comma separated, values without quotes or backslashes */
            const char *q = labels;
            while (*q) {
                const char *eq = strchr(q, '=');
                CHECK(eq && name_ok(q, (size_t)(eq - q)) && eq[1] == '"');
                if (!eq || eq[1] != '"') break;
                const char *endq = strchr(eq + 2, '"');
                CHECK(endq != NULL);
                if (!endq) break;
                for (const char *c = eq + 2; c < endq; c++)
                    CHECK(*c != '\\' && *c != '\n');
                q = endq + 1;
                if (*q == ',') q++;
                else
                    CHECK(*q == 0);
            }
        }
        char *endv = NULL;
        double v = strtod(space + 1, &endv);
        CHECK(endv && *endv == 0 && endv != space + 1);
        CHECK(v >= 0);
        if (!strcmp(cur->type, "histogram")) {
            size_t fl = strlen(cur->name);
            CHECK(!strncmp(name, cur->name, fl));
            const char *suffix = name + fl;
            /* The label set without le identifies one histogram. */
            char key[256];
            snprintf(key, sizeof key, "%s", labels);
            char *le = strstr(key, "le=\"");
            if (le) {
                char *lend = strchr(le + 4, '"');
                double bound = !strncmp(le + 4, "+Inf", 4) ? INFINITY : strtod(le + 4, NULL);
                if (le > key && le[-1] == ',') le--;
                memmove(le, lend + 1, strlen(lend + 1) + 1);
                CHECK_STR_EQ(suffix, "_bucket");
                if (strcmp(key, hist_key)) { /* a new histogram starts with its first bucket */
                    snprintf(hist_key, sizeof hist_key, "%s", key);
                    last_le = -INFINITY;
                    last_count = 0;
                    saw_inf = false;
                }
                CHECK(bound > last_le);  /* buckets in rising order */
                CHECK(v >= last_count);  /* and cumulative */
                last_le = bound;
                last_count = v;
                if (isinf(bound)) saw_inf = true, inf_count = v;
            } else if (!strcmp(suffix, "_sum")) {
                CHECK_STR_EQ(key, hist_key);
                CHECK(saw_inf);
            } else {
                CHECK_STR_EQ(suffix, "_count");
                CHECK_STR_EQ(key, hist_key);
                CHECK(saw_inf);
                CHECK_NEAR(v, inf_count, 0); /* +Inf equals _count */
            }
        } else {
            CHECK_STR_EQ(name, cur->name);
        }
    }
    return n_samples;
}

static char *render(struct metrics *m)
{
    size_t len = 0;
    char *t = metrics_render(m, NULL, &len);
    CHECK(t != NULL);
    CHECK_INT_EQ(strlen(t), len);
    return t;
}

static void test_values(void)
{
    struct metrics m;
    metrics_init(&m);
    char *t = render(&m);
    CHECK(check_format(t) > 20);
    CHECK_NEAR(value_of(t, "banter_turns_total"), 0, 0);
    CHECK_NEAR(value_of(t, "banter_errors_total{kind=\"other\"}"), 0, 0);
    free(t);

    metrics_session_open(&m);
    metrics_session_open(&m);
    metrics_session_close(&m);
    banter_turn_stats a = {.asr_final_ms = 5, .first_token_ms = 40, .first_audio_ms = 60, .total_ms = 660,
                           .n_prompt = 100, .n_prefilled = 20, .n_generated = 30};
    banter_turn_stats b = {.asr_final_ms = 7.5, .first_token_ms = 0, .first_audio_ms = 31000, .total_ms = 31500,
                           .n_prompt = 120, .n_prefilled = 25, .n_generated = 10, .interrupted = true};
    banter_turn_stats c = {.failed = true, .n_prompt = 130, .n_prefilled = 10};
    metrics_turn(&m, &a);
    metrics_turn(&m, &b);
    metrics_turn(&m, &c);
    metrics_turn(&m, NULL);
    metrics_llm_tokens(&m, 50, 50, 5);
    metrics_error(&m, "llm");
    metrics_error(&m, "llm");
    metrics_error(&m, "made-up kind");
    metrics_error(&m, NULL);
    metrics_http(&m, "/health", 200);
    metrics_http(&m, "/health", 200);
    metrics_http(&m, "/v1/chat/completions", 400);
    metrics_http(&m, "/health", 1000);
    metrics_http(&m, "bad \"label\"", 404);
    t = render(&m);
    check_format(t);
    CHECK_NEAR(value_of(t, "banter_sessions_active"), 1, 0);
    CHECK_NEAR(value_of(t, "banter_sessions_total"), 2, 0);
    CHECK_NEAR(value_of(t, "banter_turns_total"), 3, 0);
    CHECK_NEAR(value_of(t, "banter_turns_interrupted_total"), 1, 0);
    CHECK_NEAR(value_of(t, "banter_turns_failed_total"), 1, 0);
    /* 5 lands in le="5" (bounds are inclusive), 7.5 in le="10". */
    CHECK_NEAR(value_of(t, "banter_turn_latency_ms_bucket{stage=\"asr_final\",le=\"5\"}"), 1, 0);
    CHECK_NEAR(value_of(t, "banter_turn_latency_ms_bucket{stage=\"asr_final\",le=\"10\"}"), 2, 0);
    CHECK_NEAR(value_of(t, "banter_turn_latency_ms_sum{stage=\"asr_final\"}"), 12.5, 1e-9);
    CHECK_NEAR(value_of(t, "banter_turn_latency_ms_count{stage=\"asr_final\"}"), 2, 0);
    /* A stage that did not happen (0) is not observed. */
    CHECK_NEAR(value_of(t, "banter_turn_latency_ms_count{stage=\"first_token\"}"), 1, 0);
    /* 31000 ms is past the last finite bound: only +Inf holds it. */
    CHECK_NEAR(value_of(t, "banter_turn_latency_ms_bucket{stage=\"first_audio\",le=\"30000\"}"), 1, 0);
    CHECK_NEAR(value_of(t, "banter_turn_latency_ms_bucket{stage=\"first_audio\",le=\"+Inf\"}"), 2, 0);
    CHECK_NEAR(value_of(t, "banter_turn_latency_ms_sum{stage=\"total\"}"), 32160, 1e-9);
    CHECK_NEAR(value_of(t, "banter_llm_prompt_tokens_total"), 400, 0);
    CHECK_NEAR(value_of(t, "banter_llm_prefilled_tokens_total"), 105, 0);
    CHECK_NEAR(value_of(t, "banter_llm_generated_tokens_total"), 45, 0);
    CHECK_NEAR(value_of(t, "banter_errors_total{kind=\"llm\"}"), 2, 0);
    CHECK_NEAR(value_of(t, "banter_errors_total{kind=\"other\"}"), 2, 0);
    CHECK_NEAR(value_of(t, "banter_errors_total{kind=\"asr\"}"), 0, 0);
    CHECK_NEAR(value_of(t, "banter_http_requests_total{route=\"/health\",code=\"200\"}"), 2, 0);
    CHECK_NEAR(value_of(t, "banter_http_requests_total{route=\"/v1/chat/completions\",code=\"400\"}"), 1, 0);
    CHECK_NEAR(value_of(t, "banter_http_requests_total{route=\"/health\",code=\"0\"}"), 1, 0);
    CHECK_NEAR(value_of(t, "banter_http_requests_total{route=\"other\",code=\"404\"}"), 1, 0);
    free(t);

    /* Route labels are bounded: beyond METRICS_MAX_ROUTES distinct ones, "other". */
    for (int i = 0; i < 100; i++) {
        char route[32];
        snprintf(route, sizeof route, "/r%d", i);
        metrics_http(&m, route, 200);
    }
    metrics_session_close(&m);
    metrics_session_close(&m); /* more closes than opens: the gauge stays at 0 */
    t = render(&m);
    check_format(t);
    CHECK_NEAR(value_of(t, "banter_sessions_active"), 0, 0);
    CHECK(value_of(t, "banter_http_requests_total{route=\"/r10\",code=\"200\"}") == 1);
    CHECK(value_of(t, "banter_http_requests_total{route=\"/r90\",code=\"200\"}") < 0);
    CHECK(value_of(t, "banter_http_requests_total{route=\"other\",code=\"200\"}") > 50);
    free(t);
    metrics_deinit(&m);
}

/* The scheduler's counters: its batch histogram becomes le 1, 2, 4, 8, 16, +Inf. */
static void test_sched(void)
{
    struct metrics m;
    metrics_init(&m);
    struct agent_sched_stats st = {.steps = 10, .entries = 300, .seqs = 25, .batch_hist = {3, 2, 4, 0, 0, 1},
                                   .busy_ms = 1500, .prefix_hits = 4, .prefix_misses = 1};
    size_t len = 0;
    char *t = metrics_render(&m, &st, &len);
    CHECK(t != NULL);
    if (!t) return;
    check_format(t);
    CHECK_NEAR(value_of(t, "banter_llm_steps_total"), 10, 0);
    CHECK_NEAR(value_of(t, "banter_llm_step_tokens_total"), 300, 0);
    CHECK_NEAR(value_of(t, "banter_llm_batch_size_bucket{le=\"1\"}"), 3, 0);
    CHECK_NEAR(value_of(t, "banter_llm_batch_size_bucket{le=\"4\"}"), 9, 0);
    CHECK_NEAR(value_of(t, "banter_llm_batch_size_bucket{le=\"16\"}"), 9, 0);
    CHECK_NEAR(value_of(t, "banter_llm_batch_size_bucket{le=\"+Inf\"}"), 10, 0);
    CHECK_NEAR(value_of(t, "banter_llm_batch_size_sum"), 25, 0);
    CHECK_NEAR(value_of(t, "banter_llm_batch_size_count"), 10, 0);
    CHECK_NEAR(value_of(t, "banter_llm_busy_seconds_total"), 1.5, 1e-9);
    CHECK_NEAR(value_of(t, "banter_llm_prefix_hits_total"), 4, 0);
    CHECK_NEAR(value_of(t, "banter_llm_prefix_misses_total"), 1, 0);
    free(t);
    metrics_deinit(&m);
}

enum { N_THREADS = 4, N_EACH = 2000 };

static void *observer(void *arg)
{
    struct metrics *m = arg;
    for (int i = 0; i < N_EACH; i++) {
        banter_turn_stats t = {.asr_final_ms = i % 50, .first_token_ms = i % 700, .first_audio_ms = 1 + i % 3000,
                               .total_ms = 1 + i, .n_generated = 2};
        metrics_session_open(m);
        metrics_turn(m, &t);
        metrics_error(m, i % 2 ? "tts" : "nope");
        metrics_http(m, i % 3 ? "/a" : "/b", 200 + i % 5);
        metrics_session_close(m);
    }
    return NULL;
}

static void test_threads(void)
{
    struct metrics m;
    metrics_init(&m);
    pthread_t th[N_THREADS];
    for (int i = 0; i < N_THREADS; i++)
        pthread_create(&th[i], NULL, observer, &m);
    for (int k = 0; k < 50; k++) { /* render while they observe */
        char *t = render(&m);
        check_format(t);
        free(t);
    }
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(th[i], NULL);
    char *t = render(&m);
    check_format(t);
    CHECK_NEAR(value_of(t, "banter_turns_total"), N_THREADS * N_EACH, 0);
    CHECK_NEAR(value_of(t, "banter_sessions_total"), N_THREADS * N_EACH, 0);
    CHECK_NEAR(value_of(t, "banter_sessions_active"), 0, 0);
    CHECK_NEAR(value_of(t, "banter_llm_generated_tokens_total"), 2 * N_THREADS * N_EACH, 0);
    CHECK_NEAR(value_of(t, "banter_errors_total{kind=\"tts\"}") + value_of(t, "banter_errors_total{kind=\"other\"}"),
               N_THREADS * N_EACH, 0);
    CHECK_NEAR(value_of(t, "banter_turn_latency_ms_count{stage=\"total\"}"), N_THREADS * N_EACH, 0);
    double http = 0;
    for (int code = 200; code < 205; code++)
        for (int r = 0; r < 2; r++) {
            char key[128];
            snprintf(key, sizeof key, "banter_http_requests_total{route=\"%s\",code=\"%d\"}", r ? "/a" : "/b",
                     code);
            double v = value_of(t, key);
            if (v > 0) http += v;
        }
    CHECK_NEAR(http, N_THREADS * N_EACH, 0);
    free(t);
    metrics_deinit(&m);
}

int main(void)
{
    test_values();
    test_sched();
    test_threads();
    return test_finish("test_metrics");
}
