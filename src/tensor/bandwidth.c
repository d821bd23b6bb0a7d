/*
 * bandwidth.c: banter_measure_bandwidth, the memory read bandwidth that bounds every decode step.
 *
 * A buffer far larger than the caches (1 GiB, halved until it can be allocated, down to 64 MiB) is written
 * once so that its pages exist, then each thread repeatedly sums its contiguous slice with the widest loads
 * the CPU has. One pass is all threads reading the whole buffer once; the result is the median over the
 * passes that fit in the requested time (at least 5), in GB/s (1e9 bytes per second).
 */
#include "banter.h"
#include "core/core.h"
#include "core/pool.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

/* Reads are prefetched as far ahead as the matrix kernels prefetch weights (tensor_avx512.c), so the probe
 * measures what those kernels can reach rather than what the hardware prefetcher alone achieves. Prefetches
 * past the end of a slice are harmless (they never fault). */
#define PF_DIST 8192

struct bw_job {
    const uint8_t *buf;
    size_t n;
    int fill;
    double sink[64]; /* per-thread sums, so the reads cannot be optimized away */
};

/* Four streams per thread (the quarters of its slice, read in lockstep), like a kernel reading 4 weight rows.
 */
__attribute__((target("avx512f"))) static double sum_avx512(const uint8_t *p, size_t n)
{
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    size_t q = n / 4 & ~(size_t)255;
    const uint8_t *p0 = p, *p1 = p + q, *p2 = p + 2 * q, *p3 = p + 3 * q;
    for (size_t i = 0; i + 128 <= q; i += 128) {
        _mm_prefetch((const char *)p0 + i + PF_DIST, _MM_HINT_T0);
        _mm_prefetch((const char *)p1 + i + PF_DIST, _MM_HINT_T0);
        _mm_prefetch((const char *)p2 + i + PF_DIST, _MM_HINT_T0);
        _mm_prefetch((const char *)p3 + i + PF_DIST, _MM_HINT_T0);
        _mm_prefetch((const char *)p0 + i + PF_DIST + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)p1 + i + PF_DIST + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)p2 + i + PF_DIST + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)p3 + i + PF_DIST + 64, _MM_HINT_T0);
        a0 = _mm512_add_epi64(a0, _mm512_add_epi64(_mm512_load_si512((const void *)(p0 + i)),
                                                   _mm512_load_si512((const void *)(p0 + i + 64))));
        a1 = _mm512_add_epi64(a1, _mm512_add_epi64(_mm512_load_si512((const void *)(p1 + i)),
                                                   _mm512_load_si512((const void *)(p1 + i + 64))));
        a2 = _mm512_add_epi64(a2, _mm512_add_epi64(_mm512_load_si512((const void *)(p2 + i)),
                                                   _mm512_load_si512((const void *)(p2 + i + 64))));
        a3 = _mm512_add_epi64(a3, _mm512_add_epi64(_mm512_load_si512((const void *)(p3 + i)),
                                                   _mm512_load_si512((const void *)(p3 + i + 64))));
    }
    a0 = _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3));
    uint64_t v[8], s = 0; /* unsigned: the sums wrap, and only their existence matters */
    _mm512_storeu_si512((void *)v, a0);
    for (int i = 0; i < 8; i++)
        s += v[i];
    return (double)s;
}

__attribute__((target("avx2"))) static double sum_avx2(const uint8_t *p, size_t n)
{
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 128 <= n; i += 128) {
        _mm_prefetch((const char *)p + i + PF_DIST, _MM_HINT_T0);
        a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i *)(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i *)(p + i + 32)));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i *)(p + i + 64)));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    uint64_t v[4];
    _mm256_storeu_si256((__m256i *)v, a0);
    return (double)(v[0] + v[1] + v[2] + v[3]);
}

static double sum_scalar(const uint8_t *p, size_t n)
{
    uint64_t s = 0;
    for (size_t i = 0; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        s += v;
    }
    return (double)s;
}

static void bw_fn(void *arg, int ith, int nth)
{
    struct bw_job *j = arg;
    /* Slices are multiples of 4 KiB so every load is aligned and no page is shared. */
    size_t pages = j->n / 4096, p0 = pages * (size_t)ith / (size_t)nth,
           p1 = pages * (size_t)(ith + 1) / (size_t)nth;
    uint8_t *p = (uint8_t *)j->buf + p0 * 4096;
    size_t n = (p1 - p0) * 4096;
    if (j->fill) {
        /* Distinct contents in every page: a hypervisor may merge identical pages, and reading one physical
         * page over and over measures the cache, not the memory. */
        uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(p0 + 1);
        for (size_t i = 0; i + 8 <= n; i += 8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            memcpy(p + i, &x, 8);
        }
        return;
    }
    double s;
    switch (core_cpu_level()) {
    case CORE_CPU_AVX512:
        s = sum_avx512(p, n);
        break;
    case CORE_CPU_AVX2:
        s = sum_avx2(p, n);
        break;
    default:
        s = sum_scalar(p, n);
        break;
    }
    j->sink[ith & 63] += s;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

BANTER_API double banter_measure_bandwidth(int n_threads, double seconds)
{
    struct pool *pool = pool_open(n_threads);
    if (!pool) return 0;
    struct bw_job j = {0};
    uint8_t *buf = NULL;
    for (j.n = (size_t)1 << 30; j.n >= ((size_t)64 << 20) && !buf; j.n /= 2)
        buf = core_alloc_aligned(j.n);
    if (!buf) {
        pool_close(pool);
        return 0;
    }
    j.n *= 2; /* undo the last halving */
    j.buf = buf;
    j.fill = 1;
    pool_run(pool, bw_fn, &j);
    j.fill = 0;
    pool_run(pool, bw_fn, &j); /* warm-up pass */

    enum { MAX_PASSES = 200 };
    double rates[MAX_PASSES];
    int n_pass = 0;
    double t_start = core_time_ms();
    while (n_pass < MAX_PASSES && (n_pass < 5 || core_time_ms() - t_start < seconds * 1e3)) {
        double t0 = core_time_ms();
        pool_run(pool, bw_fn, &j);
        double ms = core_time_ms() - t0;
        rates[n_pass++] = ms > 0 ? (double)j.n / (ms * 1e6) : 0;
    }
    qsort(rates, (size_t)n_pass, sizeof rates[0], cmp_double);
    core_free_aligned(buf);
    pool_close(pool);
    return rates[n_pass / 2];
}
