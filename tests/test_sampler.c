/*
 * test_sampler.c: the sampler.
 *
 *   1. Greedy: the argmax, ties to the lowest id, NaN ignored.
 *   2. Determinism: the same seed gives the same tokens (also after reset), different seeds differ.
 *   3. Distribution: over many draws on a small vocabulary the frequencies match softmax(logits / T), and
 *      with top-k / top-p / min-p they match the renormalized softmax of the kept set (a chi-square bound,
 *      with fixed seeds so the test is not flaky).
 *   4. Exclusion: on a larger vocabulary, top-k / top-p / min-p never pick a token outside the set that a
 *      brute-force reference (a full sort) allows, on both the top-k path and the quickselect path.
 *   5. Repetition penalty: positive logits divided, negative multiplied, only within the last N tokens.
 *   6. Configuration checks, and the time of one draw over a 262144-token vocabulary (printed).
 */
#include "banter.h"
#include "core/core.h"
#include "test.h"

static banter_sampler *open_cfg(float temp, int top_k, float top_p, float min_p, uint64_t seed, int n_vocab)
{
    banter_sampler_config c = banter_sampler_config_default();
    c.temperature = temp;
    c.top_k = top_k;
    c.top_p = top_p;
    c.min_p = min_p;
    c.seed = seed;
    banter_sampler *s = NULL;
    CHECK_INT_EQ(banter_sampler_open(&c, n_vocab, &s), BANTER_OK);
    BANTER_ASSERT(s);
    return s;
}

static void test_greedy(void)
{
    float logits[6] = {1.0f, 3.0f, -2.0f, 3.0f, NAN, 0.5f};
    banter_sampler *s = open_cfg(0, 0, 1, 0, 1, 6);
    CHECK_INT_EQ(banter_sampler_sample(s, logits), 1);
    logits[4] = 5.0f;
    CHECK_INT_EQ(banter_sampler_sample(s, logits), 4);
    float same[4] = {2, 2, 2, 2};
    banter_sampler *s4 = open_cfg(0, 0, 1, 0, 1, 4);
    CHECK_INT_EQ(banter_sampler_sample(s4, same), 0);
    float nans[4] = {NAN, NAN, NAN, NAN};
    CHECK_INT_EQ(banter_sampler_sample(s4, nans), 0);
    float neg_inf[4] = {-INFINITY, -INFINITY, -1e30f, -INFINITY};
    CHECK_INT_EQ(banter_sampler_sample(s4, neg_inf), 2);
    banter_sampler_close(s4);
    banter_sampler_close(s);
    CHECK_INT_EQ(banter_sampler_sample(NULL, logits), -1);

    /* A zeroed config is greedy too. */
    banter_sampler_config zero;
    memset(&zero, 0, sizeof zero);
    banter_sampler *z = NULL;
    CHECK_INT_EQ(banter_sampler_open(&zero, 6, &z), BANTER_OK);
    logits[4] = NAN;
    CHECK_INT_EQ(banter_sampler_sample(z, logits), 1);
    banter_sampler_close(z);
}

static void fill_flat(float *l, int n)
{
    for (int i = 0; i < n; i++)
        l[i] = 0.01f * (float)(i % 7);
}

static void test_determinism(void)
{
    enum { N = 100, DRAWS = 64 };
    float logits[N];
    fill_flat(logits, N);
    int a[DRAWS], b[DRAWS], c[DRAWS];
    banter_sampler *s1 = open_cfg(1.0f, 0, 1, 0, 42, N), *s2 = open_cfg(1.0f, 0, 1, 0, 42, N);
    banter_sampler *s3 = open_cfg(1.0f, 0, 1, 0, 43, N);
    for (int i = 0; i < DRAWS; i++) {
        a[i] = banter_sampler_sample(s1, logits);
        b[i] = banter_sampler_sample(s2, logits);
        c[i] = banter_sampler_sample(s3, logits);
    }
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(a, c, sizeof a) != 0);
    /* reset restarts the stream. */
    banter_sampler_reset(s1);
    int same = 1;
    for (int i = 0; i < DRAWS; i++)
        same &= banter_sampler_sample(s1, logits) == a[i];
    CHECK(same);
    /* Seed 0 is a fixed default, not the clock. */
    banter_sampler *d1 = open_cfg(1.0f, 0, 1, 0, 0, N), *d2 = open_cfg(1.0f, 0, 1, 0, 0, N);
    same = 1;
    for (int i = 0; i < DRAWS; i++)
        same &= banter_sampler_sample(d1, logits) == banter_sampler_sample(d2, logits);
    CHECK(same);
    banter_sampler_close(d1);
    banter_sampler_close(d2);
    banter_sampler_close(s1);
    banter_sampler_close(s2);
    banter_sampler_close(s3);
}

/* Draws many times and compares the frequencies with p (zero where excluded) by a chi-square statistic.
 * Returns the statistic; excluded tokens that appear make it infinite. */
static double chi_square(banter_sampler *s, const float *logits, const double *p, int n, int draws)
{
    long count[64] = {0};
    BANTER_ASSERT(n <= 64);
    for (int i = 0; i < draws; i++) {
        int t = banter_sampler_sample(s, logits);
        BANTER_ASSERT(t >= 0 && t < n);
        count[t]++;
    }
    double chi = 0;
    for (int i = 0; i < n; i++) {
        double e = p[i] * draws;
        if (e == 0) {
            if (count[i]) return INFINITY;
            continue;
        }
        chi += (count[i] - e) * (count[i] - e) / e;
    }
    return chi;
}

/* softmax(logits / t) over the tokens in keep (all when keep is NULL). */
static void softmax_ref(const float *l, int n, double t, const bool *keep, double *p)
{
    double m = -INFINITY, z = 0;
    for (int i = 0; i < n; i++)
        if ((!keep || keep[i]) && l[i] > m) m = l[i];
    for (int i = 0; i < n; i++) {
        p[i] = (!keep || keep[i]) ? exp((l[i] - m) / t) : 0;
        z += p[i];
    }
    for (int i = 0; i < n; i++)
        p[i] /= z;
}

static void test_distribution(void)
{
    enum { N = 8, DRAWS = 200000 };
    const float l[N] = {1.0f, 2.0f, 0.5f, -1.0f, 1.5f, 0.0f, 2.2f, -0.3f};
    double p[N];
    /* df <= 7: P(chi2 > 35) < 2e-5, while a biased sampler lands in the hundreds at this many draws. */
    const double bound = 35;

    banter_sampler *s = open_cfg(1.0f, 0, 1, 0, 7, N);
    softmax_ref(l, N, 1.0, NULL, p);
    double chi = chi_square(s, l, p, N, DRAWS);
    if (!(chi < bound)) fprintf(stderr, "chi = %g\n", chi);
    CHECK(chi < bound);
    banter_sampler_close(s);

    s = open_cfg(0.5f, 0, 1, 0, 8, N);
    softmax_ref(l, N, 0.5, NULL, p);
    chi = chi_square(s, l, p, N, DRAWS);
    if (!(chi < bound)) fprintf(stderr, "chi = %g\n", chi);
    CHECK(chi < bound);
    banter_sampler_close(s);

    /* top-k 3 keeps ids 6, 1, 4. */
    bool keep[N] = {0};
    keep[6] = keep[1] = keep[4] = true;
    s = open_cfg(1.0f, 3, 1, 0, 9, N);
    softmax_ref(l, N, 1.0, keep, p);
    chi = chi_square(s, l, p, N, DRAWS);
    if (!(chi < bound)) fprintf(stderr, "chi = %g\n", chi);
    CHECK(chi < bound);
    banter_sampler_close(s);

    /* top-p 0.65 at T=1 keeps 6, 1, 4 (cumulative .33, .60, .76), both over all 8 tokens (threshold path) and
     * over the top 7 (top-k path: top-p renormalizes over what top-k kept, as llama.cpp does). Then again
     * with temperature 2 applied after the cut. */
    double full[N];
    softmax_ref(l, N, 1.0, NULL, full);
    CHECK(full[6] + full[1] < 0.65 && full[6] + full[1] + full[4] >= 0.65);
    for (int path = 0; path < 2; path++) {
        s = open_cfg(1.0f, path ? 0 : 7, 0.65f, 0, 10 + path, N);
        softmax_ref(l, N, 1.0, keep, p);
        chi = chi_square(s, l, p, N, DRAWS);
        if (!(chi < bound)) fprintf(stderr, "chi = %g\n", chi);
        CHECK(chi < bound);
        banter_sampler_close(s);
        s = open_cfg(2.0f, path ? 0 : 7, 0.65f, 0, 20 + path, N);
        softmax_ref(l, N, 2.0, keep, p);
        chi = chi_square(s, l, p, N, DRAWS);
        if (!(chi < bound)) fprintf(stderr, "chi = %g\n", chi);
        CHECK(chi < bound);
        banter_sampler_close(s);
    }

    /* min-p 0.4: keep p_i >= 0.4 p_max, i.e. l_i >= 2.2 + ln 0.4 = 1.284: ids 6, 1, 4. */
    for (int path = 0; path < 2; path++) {
        s = open_cfg(1.0f, path ? 0 : 6, 1, 0.4f, 30 + path, N);
        softmax_ref(l, N, 1.0, keep, p);
        chi = chi_square(s, l, p, N, DRAWS);
        if (!(chi < bound)) fprintf(stderr, "chi = %g\n", chi);
        CHECK(chi < bound);
        banter_sampler_close(s);
    }
}

/* Reference sets by full sort. */
static int cmp_desc(const void *a, const void *b, void *ctx)
{
    const float *l = ctx;
    int x = *(const int *)a, y = *(const int *)b;
    if (l[x] != l[y]) return l[x] > l[y] ? -1 : 1;
    return x - y;
}

static void allowed_set(const float *l, int n, int top_k, float top_p, float min_p, bool *ok)
{
    int *idx = malloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++)
        idx[i] = i;
    qsort_r(idx, (size_t)n, sizeof(int), cmp_desc, (void *)l);
    int k = top_k > 0 && top_k < n ? top_k : n;
    double m = l[idx[0]], z = 0;
    for (int i = 0; i < k; i++)
        z += exp(l[idx[i]] - m);
    int keep = k;
    if (top_p < 1) {
        double acc = 0;
        for (int i = 0; i < k; i++) {
            acc += exp(l[idx[i]] - m);
            if (acc >= top_p * z) {
                keep = i + 1;
                break;
            }
        }
    }
    memset(ok, 0, (size_t)n);
    for (int i = 0; i < keep; i++)
        if (i == 0 || !(min_p > 0) || l[idx[i]] >= m + log(min_p) - 1e-6) ok[idx[i]] = true;
    free(idx);
}

static void test_exclusion(void)
{
    enum { N = 5000 };
    float *l = malloc(sizeof(float) * N);
    bool *ok = malloc(N);
    uint64_t x = 12345;
    for (int i = 0; i < N; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        /* A long tail with a few strong tokens, like real logits. */
        l[i] = (float)((double)(x >> 11) * 0x1.0p-53 * 8.0 - 4.0);
        if (i % 500 == 3) l[i] += 6.0f;
    }
    struct {
        int top_k;
        float top_p, min_p;
    } cases[] = {{40, 1, 0},    {5, 1, 0},     {0, 0.5f, 0}, {0, 0.9f, 0},        {0, 0.99f, 0},
                 {40, 0.8f, 0}, {0, 1, 0.05f}, {0, 1, 0.5f}, {100, 0.95f, 0.05f}, {0, 0.95f, 0.02f}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        allowed_set(l, N, cases[c].top_k, cases[c].top_p, cases[c].min_p, ok);
        banter_sampler *s = open_cfg(1.5f, cases[c].top_k, cases[c].top_p, cases[c].min_p, 100 + c, N);
        int bad = 0, n_ok = 0, seen_ok = 0;
        bool *seen = calloc(N, 1);
        for (int i = 0; i < N; i++)
            n_ok += ok[i];
        for (int d = 0; d < 3000; d++) {
            int t = banter_sampler_sample(s, l);
            if (t < 0 || t >= N || !ok[t])
                bad++;
            else if (!seen[t])
                seen[t] = true, seen_ok++;
        }
        CHECK_INT_EQ(bad, 0);
        /* Small allowed sets are fully explored: the sampler did not cut more than it should. */
        if (n_ok <= 10) CHECK_INT_EQ(seen_ok, n_ok);
        free(seen);
        banter_sampler_close(s);
    }
    free(l);
    free(ok);
}

static void test_penalty(void)
{
    banter_sampler_config c = banter_sampler_config_default();
    c.temperature = 0;
    c.repeat_penalty = 1.5f;
    c.repeat_last_n = 3;
    banter_sampler *s = NULL;
    CHECK_INT_EQ(banter_sampler_open(&c, 4, &s), BANTER_OK);
    float pos[4] = {2.0f, 1.9f, 0.1f, 0.0f};
    CHECK_INT_EQ(banter_sampler_sample(s, pos), 0);
    banter_sampler_accept(s, 0);
    CHECK_INT_EQ(banter_sampler_sample(s, pos), 1); /* 2.0 / 1.5 = 1.33 < 1.9 */
    float neg[4] = {-1.0f, -1.2f, -5.0f, -6.0f};
    CHECK_INT_EQ(banter_sampler_sample(s, neg), 1); /* -1.0 * 1.5 = -1.5 < -1.2 */
    /* The window is 3 tokens: after three others, token 0 is free again. */
    banter_sampler_accept(s, 2);
    banter_sampler_accept(s, 3);
    CHECK_INT_EQ(banter_sampler_sample(s, pos), 1);
    banter_sampler_accept(s, 3);
    CHECK_INT_EQ(banter_sampler_sample(s, pos), 0);
    /* Out-of-range ids are ignored; reset forgets the history. */
    banter_sampler_accept(s, -5);
    banter_sampler_accept(s, 4);
    banter_sampler_accept(s, 0);
    CHECK_INT_EQ(banter_sampler_sample(s, pos), 1);
    banter_sampler_reset(s);
    CHECK_INT_EQ(banter_sampler_sample(s, pos), 0);
    banter_sampler_close(s);

    /* With sampling, a penalized token's share drops. */
    c = banter_sampler_config_default();
    c.temperature = 1;
    c.top_k = 0;
    c.top_p = 1;
    c.min_p = 0;
    c.repeat_penalty = 3.0f;
    CHECK_INT_EQ(banter_sampler_open(&c, 4, &s), BANTER_OK);
    float eq[4] = {1, 1, 1, 1};
    banter_sampler_accept(s, 2);
    int hits = 0;
    for (int i = 0; i < 20000; i++)
        hits += banter_sampler_sample(s, eq) == 2;
    /* weights e^1, e^1, e^(1/3), e^1: share of 2 = 0.164. */
    CHECK_NEAR(hits / 20000.0, exp(1.0 / 3) / (3 * exp(1.0) + exp(1.0 / 3)), 0.015);
    banter_sampler_close(s);
}

static void test_config(void)
{
    banter_sampler_config d = banter_sampler_config_default();
    CHECK_NEAR(d.temperature, 0.8, 1e-6);
    CHECK_INT_EQ(d.top_k, 40);
    CHECK(d.top_p > 0 && d.top_p <= 1);
    CHECK_INT_EQ(d.repeat_last_n, 64);
    banter_sampler *s = (banter_sampler *)1;
    CHECK_INT_EQ(banter_sampler_open(&d, 0, &s), BANTER_ERR_INVALID_ARG);
    CHECK(s == NULL);
    banter_sampler_config bad = d;
    bad.temperature = -1;
    CHECK_INT_EQ(banter_sampler_open(&bad, 10, &s), BANTER_ERR_INVALID_ARG);
    bad = d;
    bad.top_p = 1.5f;
    CHECK_INT_EQ(banter_sampler_open(&bad, 10, &s), BANTER_ERR_INVALID_ARG);
    bad = d;
    bad.min_p = NAN;
    CHECK_INT_EQ(banter_sampler_open(&bad, 10, &s), BANTER_ERR_INVALID_ARG);
    bad = d;
    bad.top_k = -1;
    CHECK_INT_EQ(banter_sampler_open(&bad, 10, &s), BANTER_ERR_INVALID_ARG);
    bad = d;
    bad.repeat_last_n = -1;
    CHECK_INT_EQ(banter_sampler_open(&bad, 10, &s), BANTER_ERR_INVALID_ARG);
    CHECK_INT_EQ(banter_sampler_open(NULL, 10, &s), BANTER_OK);
    banter_sampler_close(s);
    banter_sampler_close(NULL);
    banter_sampler_accept(NULL, 1);
    banter_sampler_reset(NULL);

    /* A tiny temperature behaves like greedy, without NaN. */
    float l[3] = {0.5f, 2.0f, 1.0f};
    s = open_cfg(1e-30f, 0, 1, 0, 5, 3);
    CHECK_INT_EQ(banter_sampler_sample(s, l), 1);
    banter_sampler_close(s);
    /* Allocation failure is reported. */
    core_fail_alloc_after(1);
    CHECK_INT_EQ(banter_sampler_open(&d, 1000, &s), BANTER_ERR_NOMEM);
    core_fail_alloc_after(-1);
    CHECK(s == NULL);
}

static void test_speed(void)
{
    enum { N = 262144 };
    float *l = malloc(sizeof(float) * N);
    uint64_t x = 99;
    for (int i = 0; i < N; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        l[i] = (float)((double)(x >> 11) * 0x1.0p-53 * 10.0 - 5.0);
    }
    l[1234] = 12;
    l[777] = 11;
    struct {
        const char *name;
        float temp;
        int top_k;
        float top_p, min_p;
    } cases[] = {{"greedy", 0, 0, 1, 0},
                 {"default (top-k 40, top-p 0.95, min-p 0.05)", 0.8f, 40, 0.95f, 0.05f},
                 {"top-p 0.95 without top-k", 0.8f, 0, 0.95f, 0},
                 {"temperature only", 1.0f, 0, 1, 0}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        banter_sampler *s = open_cfg(cases[c].temp, cases[c].top_k, cases[c].top_p, cases[c].min_p, 1, N);
        int reps = 20;
        double t0 = core_time_ms();
        for (int r = 0; r < reps; r++) {
            int t = banter_sampler_sample(s, l);
            CHECK(t >= 0 && t < N);
        }
        double ms = (core_time_ms() - t0) / reps;
        /* Printed, not asserted: speed is a benchmark's business, and timings fail on loaded machines. */
        printf("sample over %d logits, %s: %.3f ms\n", N, cases[c].name, ms);
        banter_sampler_close(s);
    }
    free(l);
}

int main(void)
{
    test_greedy();
    test_determinism();
    test_distribution();
    test_exclusion();
    test_penalty();
    test_config();
    test_speed();
    return test_finish("test_sampler");
}
