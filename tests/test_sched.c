/*
 * test_sched.c: the native backend's batching scheduler and its shared system-prompt prefixes.
 *
 * Every check compares against the same conversation run alone, with batching off, on a backend of its own (so
 * nothing is shared and every prompt is prefilled cold): the replies and the exact tokens the cache holds must
 * be equal. Equality is exact, not within a tolerance: the forward pass computes each entry's row of every
 * matrix product with the same kernel and summation order whatever else the batch holds, and attention is per
 * entry over its own sequence, so batching changes which tokens share a pass but not a single bit of any
 * result. (Should a kernel ever reorder its sums by batch size, these tests fail loudly rather than pass on a
 * loosened comparison.)
 */
#include "agent/agent_llm.h"
#include "banter.h"
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

static const char *g_model;

enum { N_TURNS = 3, MAX_TOKENS = 12, N_CONV = 4 };

/* A system prompt long enough to be shared (the backend forks prefixes of 32 tokens or more). */
static const char *SYS_A =
    "You are a helpful voice assistant. Answer in one short sentence, never use lists or markup, and speak "
    "plainly so that the answer sounds natural when it is read aloud by a speech synthesizer.";
static const char *SYS_B =
    "You are a terse ship's computer. Report facts only, in as few words as possible, with no greeting, no "
    "apology and no question back to the crew; numbers are spoken as words.";

static const char *USER[N_CONV][N_TURNS] = {
    {"hello there", "what is the weather like", "thanks, bye"},
    {"tell me a joke", "another one please", "that was funny"},
    {"status report", "how much fuel is left", "set course for home"},
    {"open the pod bay doors", "why not", "I see"},
};

struct transcript {
    char reply[N_TURNS][1024];
    int rc[N_TURNS];
    banter_token toks[2048];
    int n_toks;
};

struct piece_sink {
    char *s;
    size_t n, cap;
    int pieces;
    void *conv;
    int fault_after; /* pieces; 0 = never */
};

static int sink_piece(const char *p, size_t len, void *user)
{
    struct piece_sink *k = user;
    if (k->n + len < k->cap) {
        memcpy(k->s + k->n, p, len);
        k->n += len;
        k->s[k->n] = 0;
    }
    k->pieces++;
    if (k->fault_after && k->pieces == k->fault_after) agent_llm_native_inject_fault(k->conv);
    return 1;
}

static void *open_conv(struct agent_llm *be, int max_tokens)
{
    struct agent_reply_config rc = {.max_tokens = max_tokens};
    rc.sampler = banter_sampler_config_default();
    rc.sampler.temperature = 0;
    void *conv = NULL;
    char err[256] = "";
    int st = be->ops->conv_open(be->state, &rc, &conv, err, sizeof err);
    if (st) printf("conv_open: %s (%s)\n", banter_status_str(st), err);
    CHECK_INT_EQ(st, 0);
    return conv;
}

/* Runs conversation i's turns on conv (the model's replies go back into the history, as the session does). With
 * use_prepare, each turn is prefilled speculatively first. fault_turn >= 0 injects a fault into that turn. */
static void run_turns(struct agent_llm *be, void *conv, int i, const char *sys, bool use_prepare, int fault_turn,
                      struct transcript *out)
{
    banter_chat_message m[1 + 2 * N_TURNS];
    size_t n = 0;
    m[n++] = (banter_chat_message){"system", sys};
    memset(out, 0, sizeof *out);
    for (int t = 0; t < N_TURNS; t++) {
        char err[256] = "";
        m[n++] = (banter_chat_message){"user", USER[i][t]};
        if (use_prepare) CHECK_INT_EQ(be->ops->prepare(conv, m, n, NULL, err, sizeof err), 0);
        struct piece_sink k = {out->reply[t], 0, sizeof out->reply[t], 0, conv, t == fault_turn ? 2 : 0};
        out->rc[t] = be->ops->reply(conv, m, n, sink_piece, &k, NULL, err, sizeof err);
        if (out->rc[t]) break;
        const char *a = out->reply[t];
        while (*a == ' ' || *a == '\n') a++;
        m[n++] = (banter_chat_message){"assistant", a};
    }
    int nt = 0;
    const banter_token *tk = agent_llm_native_tokens(conv, &nt);
    CHECK(nt <= (int)(sizeof out->toks / sizeof *out->toks));
    if (nt > (int)(sizeof out->toks / sizeof *out->toks)) nt = 0;
    memcpy(out->toks, tk, (size_t)nt * sizeof *tk);
    out->n_toks = nt;
}

/* Conversation i run alone and cold: a backend of its own, batching off. */
static void reference(int i, const char *sys, bool use_prepare, struct transcript *out)
{
    struct agent_llm be;
    char err[512];
    CHECK_INT_EQ(agent_llm_native_open(g_model, 1024, 1, 1, &be, err, sizeof err), 0);
    agent_llm_native_set_batching(&be, false);
    void *c = open_conv(&be, MAX_TOKENS);
    run_turns(&be, c, i, sys, use_prepare, -1, out);
    struct agent_sched_stats st;
    agent_llm_native_sched_stats(&be, &st);
    CHECK_INT_EQ(st.prefix_hits, 0);
    CHECK_INT_EQ(st.batch_hist[0], st.steps); /* one conversation per pass */
    be.ops->conv_close(c);
    be.ops->close(be.state);
}

static void check_same(const struct transcript *got, const struct transcript *want, int i)
{
    for (int t = 0; t < N_TURNS; t++) {
        CHECK_INT_EQ(got->rc[t], want->rc[t]);
        CHECK_STR_EQ(got->reply[t], want->reply[t]);
    }
    CHECK_INT_EQ(got->n_toks, want->n_toks);
    int n = got->n_toks < want->n_toks ? got->n_toks : want->n_toks;
    int first = -1;
    for (int k = 0; k < n && first < 0; k++)
        if (got->toks[k] != want->toks[k]) first = k;
    if (first >= 0) printf("conversation %d: cached tokens differ from the reference at %d\n", i, first);
    CHECK_INT_EQ(first, -1);
}

struct job {
    struct agent_llm *be;
    void *conv;
    int i;
    const char *sys;
    bool use_prepare;
    int fault_turn;
    struct transcript out;
    pthread_barrier_t *start;
};

static void *job_main(void *arg)
{
    struct job *j = arg;
    pthread_barrier_wait(j->start);
    run_turns(j->be, j->conv, j->i, j->sys, j->use_prepare, j->fault_turn, &j->out);
    return NULL;
}

static const char *sys_of(int i)
{
    return i % 2 ? SYS_B : SYS_A;
}

/* Conversation 2 prefills each turn speculatively (prepare) before its reply. */
static bool prepares(int i)
{
    return i == 2;
}

/* Four conversations at once on one backend give the replies and caches of each run alone, in batched passes. */
static void test_concurrent(const struct transcript *ref)
{
    struct agent_llm be;
    char err[512];
    CHECK_INT_EQ(agent_llm_native_open(g_model, 1024, N_CONV, 2, &be, err, sizeof err), 0);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N_CONV);
    struct job jobs[N_CONV];
    pthread_t th[N_CONV];
    for (int i = 0; i < N_CONV; i++) {
        jobs[i] = (struct job){.be = &be, .conv = open_conv(&be, MAX_TOKENS), .i = i, .sys = sys_of(i),
                               .use_prepare = prepares(i), .fault_turn = -1, .start = &start};
        pthread_create(&th[i], NULL, job_main, &jobs[i]);
    }
    for (int i = 0; i < N_CONV; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < N_CONV; i++) check_same(&jobs[i].out, &ref[i], i);
    struct agent_sched_stats st;
    agent_llm_native_sched_stats(&be, &st);
    uint64_t multi = st.steps - st.batch_hist[0];
    printf("concurrent: %llu steps, %llu with more than one conversation, mean %.2f conversations, %llu prefill "
           "+ %llu decode tokens, prefix hits %llu misses %llu\n",
           (unsigned long long)st.steps, (unsigned long long)multi, st.steps ? (double)st.seqs / st.steps : 0.0,
           (unsigned long long)st.prefill_tokens, (unsigned long long)st.decode_tokens,
           (unsigned long long)st.prefix_hits, (unsigned long long)st.prefix_misses);
    CHECK(multi > 0);
    CHECK_INT_EQ(st.entries, st.prefill_tokens + st.decode_tokens);
    uint64_t hist = 0;
    for (int b = 0; b < AGENT_SCHED_HIST; b++) hist += st.batch_hist[b];
    CHECK_INT_EQ(hist, st.steps);
    for (int i = 0; i < N_CONV; i++) be.ops->conv_close(jobs[i].conv);
    pthread_barrier_destroy(&start);
    be.ops->close(be.state);
}

struct victim {
    struct agent_llm *be;
    void *conv;
    char *prompt;
    int rc;
    atomic_bool done;
};

static void *victim_main(void *arg)
{
    struct victim *v = arg;
    banter_chat_message m[2] = {{"system", SYS_A}, {"user", v->prompt}};
    char err[256];
    v->rc = v->be->ops->prepare(v->conv, m, 2, NULL, err, sizeof err);
    atomic_store(&v->done, true);
    return NULL;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* A cancel stops a long prefill at the next step while the other conversations go on to their right answers;
 * a conversation that fails (a prompt too long for the context; a pass that fails) harms no other. */
static void test_cancel_and_failure(const struct transcript *ref)
{
    struct agent_llm be;
    char err[512];
    enum { N = N_CONV + 2 };
    CHECK_INT_EQ(agent_llm_native_open(g_model, 1024, N, 2, &be, err, sizeof err), 0);

    /* The victim prefills ~650 tokens: several steps of 128. */
    struct victim v = {&be, open_conv(&be, MAX_TOKENS), malloc(8192), 0, false};
    size_t at = 0;
    for (int w = 0; w < 90; w++) at += (size_t)snprintf(v.prompt + at, 8192 - at, "word%d ", w);
    /* Too long for the context: fails in planning, before any pass. */
    void *big = open_conv(&be, MAX_TOKENS);
    char *huge = malloc(65536);
    at = 0;
    for (int w = 0; w < 4000 && at < 60000; w++) at += (size_t)snprintf(huge + at, 65536 - at, "w%d ", w);

    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N_CONV + 1);
    struct job jobs[N_CONV];
    pthread_t th[N_CONV], vt;
    for (int i = 0; i < N_CONV; i++) {
        /* Conversation 1's second turn fails in the scheduler's pass (an injected fault); it alone sees it. */
        jobs[i] = (struct job){.be = &be, .conv = open_conv(&be, MAX_TOKENS), .i = i, .sys = sys_of(i),
                               .use_prepare = prepares(i), .fault_turn = i == 1 ? 1 : -1, .start = &start};
        pthread_create(&th[i], NULL, job_main, &jobs[i]);
    }
    /* The victim starts first; once its first chunk has been through a pass, the others start and the victim is
     * cancelled. */
    pthread_create(&vt, NULL, victim_main, &v);
    struct agent_sched_stats st;
    for (int spin = 0; spin < 200000 && !atomic_load(&v.done); spin++) {
        agent_llm_native_sched_stats(&be, &st);
        if (st.prefill_tokens > 0) break;
        usleep(50);
    }
    pthread_barrier_wait(&start);
    be.ops->cancel(v.conv);
    double t_cancel = now_ms();
    agent_llm_native_sched_stats(&be, &st);
    uint64_t steps_at_cancel = st.steps;
    pthread_join(vt, NULL);
    double t_stop = now_ms() - t_cancel;
    agent_llm_native_sched_stats(&be, &st);
    printf("cancel: the victim stopped %.1f ms and %llu steps after the cancel, with %d tokens cached\n", t_stop,
           (unsigned long long)(st.steps - steps_at_cancel), be.ops->cached(v.conv));
    CHECK_INT_EQ(v.rc, BANTER_ERR_CANCELLED);
    CHECK(st.steps - steps_at_cancel <= 2);
    CHECK(be.ops->cached(v.conv) < 512);

    banter_chat_message hm[2] = {{"system", SYS_A}, {"user", huge}};
    char herr[256] = "";
    struct piece_sink k = {herr, 0, 0, 0, NULL, 0};
    CHECK_INT_EQ(be.ops->reply(big, hm, 2, sink_piece, &k, NULL, herr, sizeof herr), BANTER_ERR_CONTEXT_FULL);

    for (int i = 0; i < N_CONV; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < N_CONV; i++) {
        if (i != 1) {
            check_same(&jobs[i].out, &ref[i], i);
            continue;
        }
        /* The faulted conversation: its first turn is the reference's, its second fails with an error. */
        CHECK_INT_EQ(jobs[i].out.rc[0], 0);
        CHECK_STR_EQ(jobs[i].out.reply[0], ref[i].reply[0]);
        CHECK(jobs[i].out.rc[1] != 0 && jobs[i].out.rc[1] != BANTER_ERR_CANCELLED);
    }

    /* The cancelled and failed conversations still work: run from scratch, they match the reference. */
    banter_chat_message sm[1] = {{"system", sys_of(1)}};
    CHECK_INT_EQ(be.ops->sync(jobs[1].conv, sm, 1), 0);
    struct transcript again;
    run_turns(&be, jobs[1].conv, 1, sys_of(1), false, -1, &again);
    check_same(&again, &ref[1], 1);

    for (int i = 0; i < N_CONV; i++) be.ops->conv_close(jobs[i].conv);
    be.ops->conv_close(big);
    be.ops->conv_close(v.conv);
    pthread_barrier_destroy(&start);
    be.ops->close(be.state);
    free(huge);
    free(v.prompt);
}

/* The second conversation with a system prompt forks it from the first one's prefix; its cache and replies are
 * those of a cold prefill, through reply and through prepare alike. */
static void test_shared_prefix(const struct transcript *ref)
{
    struct agent_llm be;
    char err[512];
    CHECK_INT_EQ(agent_llm_native_open(g_model, 1024, 3, 2, &be, err, sizeof err), 0);
    struct agent_sched_stats st;
    void *a = open_conv(&be, MAX_TOKENS);
    struct transcript out;
    run_turns(&be, a, 0, SYS_A, false, -1, &out);
    check_same(&out, &ref[0], 0);
    agent_llm_native_sched_stats(&be, &st);
    CHECK_INT_EQ(st.prefix_hits, 0);
    CHECK_INT_EQ(st.prefix_misses, 1);

    void *b = open_conv(&be, MAX_TOKENS);
    banter_chat_message m[2] = {{"system", SYS_A}, {"user", USER[2][0]}};
    struct agent_llm_stats ls;
    char text[1024] = "";
    struct piece_sink k = {text, 0, sizeof text, 0, NULL, 0};
    CHECK_INT_EQ(be.ops->reply(b, m, 2, sink_piece, &k, &ls, err, sizeof err), 0);
    agent_llm_native_sched_stats(&be, &st);
    CHECK_INT_EQ(st.prefix_hits, 1);
    printf("shared prefix: prompt %d tokens, %d prefilled\n", ls.n_prompt, ls.n_fed);
    CHECK(ls.n_fed < ls.n_prompt - 31);
    /* The cold reference of the same first turn. */
    {
        struct agent_llm cold;
        CHECK_INT_EQ(agent_llm_native_open(g_model, 1024, 1, 1, &cold, err, sizeof err), 0);
        void *c = open_conv(&cold, MAX_TOKENS);
        char ctext[1024] = "";
        struct piece_sink ck = {ctext, 0, sizeof ctext, 0, NULL, 0};
        struct agent_llm_stats cs;
        CHECK_INT_EQ(cold.ops->reply(c, m, 2, sink_piece, &ck, &cs, err, sizeof err), 0);
        CHECK_INT_EQ(cs.n_fed, cs.n_prompt);
        CHECK_STR_EQ(text, ctext);
        int nb = 0, nc = 0;
        const banter_token *tb = agent_llm_native_tokens(b, &nb);
        const banter_token *tc = agent_llm_native_tokens(c, &nc);
        CHECK_INT_EQ(nb, nc);
        CHECK(nb == nc && memcmp(tb, tc, (size_t)nb * sizeof *tb) == 0);
        cold.ops->conv_close(c);
        cold.ops->close(cold.state);
    }

    /* Through prepare, over a whole multi-turn conversation. */
    void *d = open_conv(&be, MAX_TOKENS);
    run_turns(&be, d, 2, sys_of(2), prepares(2), -1, &out);
    check_same(&out, &ref[2], 2);
    agent_llm_native_sched_stats(&be, &st);
    CHECK_INT_EQ(st.prefix_hits, 2);
    be.ops->conv_close(d);
    be.ops->conv_close(b);
    be.ops->conv_close(a);
    be.ops->close(be.state);
}

static void run_model(const char *rel)
{
    char path[512];
    g_model = test_shared_path(rel, path, sizeof path);
    if (!g_model) return;
    printf("model %s\n", rel);
    double t0 = now_ms();
    struct transcript ref[N_CONV];
    for (int i = 0; i < N_CONV; i++) reference(i, sys_of(i), prepares(i), &ref[i]);
    for (int i = 0; i < N_CONV; i++) printf("  reference %d: \"%s\" (%d tokens cached)\n", i, ref[i].reply[0],
                                            ref[i].n_toks);
    test_concurrent(ref);
    test_cancel_and_failure(ref);
    test_shared_prefix(ref);
    printf("  %.0f ms\n", now_ms() - t0);
}

int main(void)
{
    char path[512];
    if (!test_shared_path("fixtures/llm/gemma3-tiny-f32.gguf", path, sizeof path)) return TEST_SKIP_CODE;
    run_model("fixtures/llm/gemma3-tiny-f32.gguf");
    run_model("fixtures/llm/gemma3-small-q8_0.gguf");
    return test_finish("test_sched");
}
