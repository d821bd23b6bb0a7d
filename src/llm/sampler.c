/*
 * sampler.c: choosing the next token from logits (the public banter_sampler_* API).
 *
 * The chain is llama.cpp's default order: repetition penalty -> top-k -> top-p -> min-p -> temperature ->
 * draw. top-p and min-p therefore judge the distribution at temperature 1, and temperature only reshapes what
 * survives. Temperature 0 is greedy: the argmax of the penalized logits, ties to the lowest id.
 *
 * Speed without sorting the vocabulary (262144 logits for Gemma 3):
 * - The penalty is a per-token count of occurrences in the last repeat_last_n accepted tokens, so one
 *   pass over the logits applies it with a rarely taken branch.
 * - top-k keeps a min-heap of k candidates while scanning; most logits lose against the heap's minimum
 *   at once.
 * - Without top-k, top-p is a quickselect by probability mass (expected linear time, no full sort), so
 *   even the flat distributions of untrained models cost a few passes over the logits.
 * - min-p is a threshold on the logit: x >= max + ln(min_p).
 * All buffers are allocated at open; sampling allocates nothing.
 *
 * Randomness is xoshiro256** seeded through splitmix64, so a seed gives the same stream on every machine.
 */
#include "banter.h"
#include "core/core.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_SEED 0x5eed5eed5eed5eedull
#define MAX_REPEAT_LAST_N (1 << 20)

struct cand {
    float logit;
    int32_t id;
};

struct banter_sampler {
    banter_sampler_config cfg;
    int n_vocab;
    struct cand *cand; /* [n_vocab] candidates of the current step */
    float *weight;     /* [n_vocab] scratch: their probabilities (unnormalized) */
    uint32_t *count;   /* [n_vocab] occurrences of each token in the history window */
    int32_t *history;  /* [repeat_last_n] ring of accepted tokens */
    int n_history;     /* tokens in the ring (<= repeat_last_n) */
    int history_pos;   /* next slot to write */
    uint64_t rng[4];
};

/* ---------------------------------------------------------------------------------------------------------------
 * Random numbers.
 */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t next_u64(uint64_t s[4])
{
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1). */
static double next_unit(uint64_t s[4])
{
    return (double)(next_u64(s) >> 11) * 0x1.0p-53;
}

static void seed_rng(banter_sampler *s)
{
    uint64_t x = s->cfg.seed ? s->cfg.seed : DEFAULT_SEED;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Open, close, history.
 */

banter_sampler_config banter_sampler_config_default(void)
{
    banter_sampler_config c;
    memset(&c, 0, sizeof c);
    c.temperature = 0.8f;
    c.top_k = 40;
    c.top_p = 0.95f;
    c.min_p = 0.05f;
    c.repeat_penalty = 1.0f;
    c.repeat_last_n = 64;
    c.seed = 0;
    return c;
}

banter_status banter_sampler_open(const banter_sampler_config *cfg, int n_vocab, banter_sampler **out)
{
    if (!out) return BANTER_ERR_INVALID_ARG;
    *out = NULL;
    banter_sampler_config c = cfg ? *cfg : banter_sampler_config_default();
    /* The comparisons are written so that NaN fails them. */
    if (n_vocab <= 0 || !(c.temperature >= 0) || c.top_k < 0 || !(c.top_p >= 0 && c.top_p <= 1) ||
        !(c.min_p >= 0 && c.min_p <= 1) || !(c.repeat_penalty >= 0) || c.repeat_last_n < 0 ||
        c.repeat_last_n > MAX_REPEAT_LAST_N || isinf(c.temperature) || isinf(c.repeat_penalty))
        return BANTER_ERR_INVALID_ARG;
    if (c.repeat_last_n == 0) c.repeat_last_n = 64;
    if (c.top_p == 0) c.top_p = 1;
    if (c.repeat_penalty == 0) c.repeat_penalty = 1;

    banter_sampler *s = core_calloc(1, sizeof *s);
    if (!s) return BANTER_ERR_NOMEM;
    s->cfg = c;
    s->n_vocab = n_vocab;
    s->cand = core_malloc((size_t)n_vocab * sizeof *s->cand);
    s->weight = core_malloc((size_t)n_vocab * sizeof *s->weight);
    s->count = core_calloc((size_t)n_vocab, sizeof *s->count);
    s->history = core_malloc((size_t)c.repeat_last_n * sizeof *s->history);
    if (!s->cand || !s->weight || !s->count || !s->history) {
        banter_sampler_close(s);
        return BANTER_ERR_NOMEM;
    }
    seed_rng(s);
    *out = s;
    return BANTER_OK;
}

void banter_sampler_close(banter_sampler *s)
{
    if (!s) return;
    core_free(s->history);
    core_free(s->count);
    core_free(s->weight);
    core_free(s->cand);
    core_free(s);
}

void banter_sampler_accept(banter_sampler *s, banter_token t)
{
    if (!s || t < 0 || t >= s->n_vocab) return;
    int cap = s->cfg.repeat_last_n;
    if (s->n_history == cap)
        s->count[s->history[s->history_pos]]--;
    else
        s->n_history++;
    s->history[s->history_pos] = t;
    s->count[t]++;
    s->history_pos = (s->history_pos + 1) % cap;
}

void banter_sampler_reset(banter_sampler *s)
{
    if (!s) return;
    for (int i = 0; i < s->n_history; i++)
        s->count[s->history[i]] = 0;
    s->n_history = 0;
    s->history_pos = 0;
    seed_rng(s);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Sampling.
 */

/* llama.cpp's repetition penalty: positive logits are divided, the others multiplied, so both move down. */
static float penalized(const banter_sampler *s, int32_t id, float x)
{
    if (s->count[id] == 0) return x;
    return x > 0 ? x / s->cfg.repeat_penalty : x * s->cfg.repeat_penalty;
}

/* NaN logits never win and never get probability. */
static float clean(float x)
{
    return x == x ? x : -INFINITY;
}

/* Candidate order: higher logit first, then lower id. */
static bool before(const struct cand *a, const struct cand *b)
{
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cmp_cand(const void *pa, const void *pb)
{
    const struct cand *a = pa, *b = pb;
    return before(a, b) ? -1 : before(b, a) ? 1 : 0;
}

/* Min-heap on `before` (the root is the worst kept candidate). */
static void sift_down(struct cand *h, size_t n, size_t i)
{
    struct cand x = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && before(&h[c], &h[c + 1])) c++;
        if (!before(&x, &h[c])) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

/* Fills s->cand with the k best (penalized) logits, sorted best first. */
static size_t select_top_k(banter_sampler *s, const float *logits, size_t k, bool penalty)
{
    struct cand *h = s->cand;
    size_t n = 0;
    for (int32_t i = 0; i < s->n_vocab; i++) {
        float x = clean(logits[i]);
        if (penalty) x = penalized(s, i, x);
        struct cand c = {x, i};
        if (n < k) {
            h[n++] = c;
            if (n == k)
                for (size_t j = k / 2; j-- > 0;)
                    sift_down(h, k, j);
        } else if (before(&c, &h[0])) {
            h[0] = c;
            sift_down(h, k, 0);
        }
    }
    qsort(h, n, sizeof *h, cmp_cand);
    return n;
}

/* Keeps the smallest best-first prefix of the candidates whose probability (temperature 1) reaches p; the
 * candidates must be sorted. Returns the new count (at least 1). */
static size_t top_p_sorted(const struct cand *c, size_t n, float p)
{
    double z = 0, max = c[0].logit, acc = 0;
    for (size_t i = 0; i < n; i++)
        z += exp((double)c[i].logit - max);
    double target = p * z;
    for (size_t i = 0; i < n; i++) {
        acc += exp((double)c[i].logit - max);
        if (acc >= target) return i + 1;
    }
    return n;
}

/* top-p over unsorted candidates, in expected linear time: quickselect by probability mass. Partition around
 * a pivot; if the better side (with the mass already committed) reaches the target, the cut lies inside it,
 * otherwise the whole side and the pivot are kept and the search continues on the worse side. The order of
 * `before` is strict (ids break ties), so every round shrinks the range. Small ranges are sorted and walked.
 * On return c[0 .. count) holds the kept candidates, not sorted. w is scratch for the weights. */
static size_t top_p_unsorted(struct cand *c, float *w, size_t n, float p, float max)
{
    double z = 0;
    for (size_t i = 0; i < n; i++)
        z += w[i] = expf(c[i].logit - max);
    double target = p * z, acc = 0;
    size_t lo = 0, hi = n;
    uint64_t pick = 0x9e3779b97f4a7c15ull;
    while (hi - lo > 32) {
        /* A pseudo-random pivot (deterministic) keeps adversarial logits from making this quadratic. */
        pick = pick * 6364136223846793005ull + 1442695040888963407ull;
        size_t pi = lo + (size_t)((pick >> 33) % (hi - lo));
        struct cand pc = c[pi];
        float pw = w[pi];
        c[pi] = c[hi - 1];
        w[pi] = w[hi - 1];
        size_t f = lo;
        double mass = 0;
        for (size_t i = lo; i < hi - 1; i++) {
            if (before(&c[i], &pc)) {
                struct cand tc = c[f];
                float tw = w[f];
                c[f] = c[i];
                w[f] = w[i];
                c[i] = tc;
                w[i] = tw;
                mass += w[f];
                f++;
            }
        }
        c[hi - 1] = c[f];
        w[hi - 1] = w[f];
        c[f] = pc;
        w[f] = pw;
        if (acc + mass >= target) {
            hi = f;
        } else if (acc + mass + pw >= target) {
            return f + 1;
        } else {
            acc += mass + pw;
            lo = f + 1;
        }
    }
    /* Sort the last few (weights recomputed after the sort; they are a handful). */
    qsort(c + lo, hi - lo, sizeof *c, cmp_cand);
    for (size_t i = lo; i < hi; i++) {
        acc += expf(c[i].logit - max);
        if (acc >= target) return i + 1;
    }
    return hi > 0 ? hi : 1;
}

/* exp(d / T) for d = logit - max <= 0. The best token weighs 1 even when a tiny temperature makes 1/T
 * infinite (0 * inf would be NaN). */
static float weight(float d, float inv_t)
{
    return d == 0 ? 1.0f : expf(d * inv_t);
}

banter_token banter_sampler_sample(banter_sampler *s, const float *logits)
{
    if (!s || !logits) return -1;
    const banter_sampler_config *c = &s->cfg;
    bool penalty = c->repeat_penalty != 1 && s->n_history > 0;

    if (c->temperature <= 0) {
        int32_t best = 0;
        float best_x = -INFINITY;
        for (int32_t i = 0; i < s->n_vocab; i++) {
            float x = clean(logits[i]);
            if (penalty) x = penalized(s, i, x);
            if (x > best_x) {
                best_x = x;
                best = i;
            }
        }
        return best;
    }

    size_t n;
    bool sorted = false;
    if (c->top_k > 0 && c->top_k < s->n_vocab) {
        n = select_top_k(s, logits, (size_t)c->top_k, penalty);
        sorted = true;
    } else {
        for (int32_t i = 0; i < s->n_vocab; i++) {
            float x = clean(logits[i]);
            s->cand[i] = (struct cand){penalty ? penalized(s, i, x) : x, i};
        }
        n = (size_t)s->n_vocab;
    }
    struct cand *cd = s->cand;

    float max = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (cd[i].logit > max) max = cd[i].logit;
    if (!(max > -INFINITY))
        return cd[0].id; /* nothing has any probability: fall back to the first candidate */
    if (max == INFINITY) {
        /* Infinite logits take all the mass: the lowest such id wins, as greedy would choose. */
        int32_t best = -1;
        for (size_t i = 0; i < n; i++)
            if (cd[i].logit == INFINITY && (best < 0 || cd[i].id < best)) best = cd[i].id;
        return best;
    }

    if (c->top_p < 1) {
        if (sorted) {
            n = top_p_sorted(cd, n, c->top_p);
        } else {
            n = top_p_unsorted(cd, s->weight, n, c->top_p, max);
        }
    }
    if (c->min_p > 0) {
        /* p_i >= min_p * p_max  <=>  x_i >= max + ln(min_p); the best token always passes. */
        float thr = max + logf(c->min_p);
        if (sorted) {
            size_t k = 1;
            while (k < n && cd[k].logit >= thr)
                k++;
            n = k;
        } else {
            size_t k = 0;
            for (size_t i = 0; i < n; i++)
                if (cd[i].logit >= thr) cd[k++] = cd[i];
            n = k;
        }
    }

    /* Temperature, then one draw. Weights are relative to the best logit, so exp never overflows. */
    float inv_t = 1.0f / c->temperature;
    double z = 0;
    for (size_t i = 0; i < n; i++)
        z += weight(cd[i].logit - max, inv_t);
    double u = next_unit(s->rng) * z, acc = 0;
    for (size_t i = 0; i < n; i++) {
        acc += weight(cd[i].logit - max, inv_t);
        if (u < acc) return cd[i].id;
    }
    /* Rounding left u at the very top: take the last candidate with any weight. */
    for (size_t i = n; i-- > 0;)
        if (cd[i].logit > -INFINITY) return cd[i].id;
    return cd[0].id;
}
