/*
 * bench_sched.c: what batching the native backend's forward passes buys when many conversations share one
 * process. For N = 1, 4, 8, 16 concurrent conversations (one thread each, greedy replies of a fixed length to
 * different one-line prompts), it prints the aggregate generated tokens/s, the mean forward-pass (step) latency
 * and the mean conversations per step, batched and with batching off (one conversation per pass, the
 * serialized baseline) in the same process, as medians over repetitions, and their ratio.
 *
 *   bench_sched [--model FILE] [--tokens N] [--reps N] [--max-n N] [--threads N]
 *
 * The model defaults to models/synth-gemma3-270m-q8_0.gguf (scripts/setup.sh, or `banter model synth --shape
 * 270m --type Q8_0 -o FILE`), else the small test fixture ../shared/fixtures/llm/gemma3-small-q8_0.gguf.
 * Aggregate tokens/s counts every generated token over the wall time of the whole round, prefill included;
 * replies stop only at --tokens (an end-of-turn token also ends one, and then fewer are counted).
 */
#include "agent/agent_llm.h"
#include "banter.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *PROMPTS[] = {
    "hello there", "what is the weather like", "tell me a joke", "how far is the moon", "set a timer",
    "play some music", "what time is it", "read me the news", "who wrote hamlet", "turn on the lights",
    "how do I boil an egg", "translate good morning", "what is two plus two", "remind me to call mom",
    "spell necessary", "what day is it",
};
enum { N_PROMPTS = sizeof PROMPTS / sizeof PROMPTS[0], MAX_REPS = 15 };

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct worker {
    struct agent_llm *be;
    void *conv;
    const char *prompt;
    int n_generated;
    int rc;
    pthread_barrier_t *start;
};

static int count_piece(const char *p, size_t len, void *user)
{
    (void)p;
    (void)len;
    (void)user;
    return 1;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    banter_chat_message m[1] = {{"user", w->prompt}};
    struct agent_llm_stats st;
    char err[256];
    pthread_barrier_wait(w->start);
    w->rc = w->be->ops->reply(w->conv, m, 1, count_piece, NULL, &st, err, sizeof err);
    w->n_generated = st.n_generated;
    if (w->rc) fprintf(stderr, "bench_sched: reply failed: %s (%s)\n", banter_status_str(w->rc), err);
    return NULL;
}

struct round {
    double tok_s;   /* generated tokens per second, all conversations together */
    double step_ms; /* mean wall time of one forward pass */
    double seqs;    /* mean conversations per pass */
};

/* One round: n conversations opened fresh, each replying once, all at the same time. */
static struct round run_round(struct agent_llm *be, int n, int tokens)
{
    struct agent_reply_config rc = {.max_tokens = tokens};
    rc.sampler = banter_sampler_config_default();
    rc.sampler.temperature = 0;
    struct worker w[64];
    pthread_t th[64];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)n + 1);
    char err[256];
    for (int i = 0; i < n; i++) {
        w[i] = (struct worker){be, NULL, PROMPTS[i % N_PROMPTS], 0, 0, &start};
        if (be->ops->conv_open(be->state, &rc, &w[i].conv, err, sizeof err)) {
            fprintf(stderr, "bench_sched: %s\n", err);
            exit(1);
        }
        pthread_create(&th[i], NULL, worker_main, &w[i]);
    }
    struct agent_sched_stats s0, s1;
    agent_llm_native_sched_stats(be, &s0);
    pthread_barrier_wait(&start);
    double t0 = now_ms();
    int total = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        total += w[i].n_generated;
    }
    double dt = now_ms() - t0;
    agent_llm_native_sched_stats(be, &s1);
    for (int i = 0; i < n; i++) be->ops->conv_close(w[i].conv);
    pthread_barrier_destroy(&start);
    uint64_t steps = s1.steps - s0.steps;
    struct round r = {total / (dt / 1e3), steps ? (s1.busy_ms - s0.busy_ms) / (double)steps : 0,
                      steps ? (double)(s1.seqs - s0.seqs) / (double)steps : 0};
    return r;
}

int main(int argc, char **argv)
{
    const char *model = NULL;
    int tokens = 32, reps = 3, max_n = 16, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--model") && v) model = argv[++i];
        else if (!strcmp(a, "--tokens") && v) tokens = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(a, "--reps") && v) reps = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(a, "--max-n") && v) max_n = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(a, "--threads") && v) threads = (int)strtol(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: bench_sched [--model FILE] [--tokens N] [--reps N] [--max-n N] [--threads N]\n");
            return 2;
        }
    }
    if (tokens < 1 || reps < 1 || reps > MAX_REPS || max_n < 1 || max_n > 64) {
        fprintf(stderr, "bench_sched: --tokens >= 1, --reps 1..%d, --max-n 1..64\n", MAX_REPS);
        return 2;
    }
    if (!model) {
        model = "models/synth-gemma3-270m-q8_0.gguf";
        if (access(model, R_OK)) model = "../shared/fixtures/llm/gemma3-small-q8_0.gguf";
    }
    printf("model %s, replies of %d tokens, median of %d rounds\n", model, tokens, reps);
    printf("%4s  %12s %12s %7s  %12s %12s %7s  %8s\n", "N", "serial tok/s", "step ms", "seq/st", "batch tok/s",
           "step ms", "seq/st", "speedup");
    static const int NS[] = {1, 4, 8, 16, 32, 64};
    for (size_t k = 0; k < sizeof NS / sizeof NS[0] && NS[k] <= max_n; k++) {
        int n = NS[k];
        struct agent_llm be;
        char err[512];
        /* Room for the prompt and the reply of each conversation, whatever the chat format adds. */
        if (agent_llm_native_open(model, 128 + tokens, n, threads, &be, err, sizeof err)) {
            fprintf(stderr, "bench_sched: %s\n", err);
            return 1;
        }
        double tok[2][MAX_REPS], step[2][MAX_REPS], seqs[2][MAX_REPS];
        for (int r = 0; r < reps; r++) {
            /* Alternate the modes so that drift of the machine affects both alike. */
            for (int mode = 0; mode < 2; mode++) {
                agent_llm_native_set_batching(&be, mode == 1);
                struct round x = run_round(&be, n, tokens);
                tok[mode][r] = x.tok_s;
                step[mode][r] = x.step_ms;
                seqs[mode][r] = x.seqs;
            }
        }
        double ts = median(tok[0], reps), tb = median(tok[1], reps);
        printf("%4d  %12.1f %12.2f %7.2f  %12.1f %12.2f %7.2f  %7.2fx\n", n, ts, median(step[0], reps),
               median(seqs[0], reps), tb, median(step[1], reps), median(seqs[1], reps), tb / ts);
        fflush(stdout);
        be.ops->close(be.state);
    }
    return 0;
}
