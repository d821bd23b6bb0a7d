/*
 * bench_kernels.c: speed of the matrix kernels on the shapes of a small decoder (Gemma 3 270M by default).
 *
 * For each weight type it prints the matrix-vector product as weight GB/s streamed (with 1 and 2 threads, and
 * as a fraction of the machine's measured read bandwidth), and batched products (n_tok = 8, 32, 512) as
 * tokens/s and GMAC/s, each the median of several runs, with the scalar kernel run in the same process as the
 * baseline.
 *
 *   bench_kernels [--quick] [--thp] [--types Q8_0,Q4_K,...]
 *
 * --thp backs the weights with transparent huge pages (madvise), which streams faster than 4 KiB pages.
 * On a shared machine run it as `chrt -f 10 bench_kernels` so that other processes do not stall the threads
 * at the pool's barriers.
 *
 * K-quants need rows of a multiple of 256 values, so their matrices use 768 columns instead of 640.
 */
#include "core/core.h"
#include "core/pool.h"
#include "tensor/tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static int g_thp; /* --thp: back the weights with transparent huge pages */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

struct bench {
    struct tensor_mat w;
    uint8_t *wdata;
    float *x, *y;
    void *scratch;
    int n_tok;
};

/* Fills a matrix with random bytes, then makes every scale field a small normal half (and float values
 * small), so the data is valid and every page differs: a hypervisor may merge identical pages, and a matrix
 * made of repeated pages would then be read from the cache. Speed does not depend on the values otherwise. */
static int bench_init(struct bench *b, uint32_t type, int64_t n_rows, int64_t n_cols, int n_tok)
{
    memset(b, 0, sizeof *b);
    b->w.type = type;
    b->w.n_rows = n_rows;
    b->w.n_cols = n_cols;
    b->w.row_bytes = tensor_row_size(type, n_cols);
    size_t total = b->w.row_bytes * (size_t)n_rows;
    b->wdata = core_alloc_aligned(total);
    if (!b->wdata) return -1;
    if (g_thp) {
        uintptr_t a0 = ((uintptr_t)b->wdata + 4095) & ~(uintptr_t)4095;
        madvise((void *)a0, total - (a0 - (uintptr_t)b->wdata), MADV_HUGEPAGE);
    }
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i + 8 <= total; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(b->wdata + i, &x, 8);
    }
    const struct tensor_traits *tr = tensor_traits(type);
    size_t n_blocks = total / tr->size;
    static const uint16_t d16 = 0x2000; /* 2^-7 */
    for (size_t i = 0; i < n_blocks; i++) {
        uint8_t *blk = b->wdata + i * tr->size;
        uint16_t h;
        uint32_t u;
        switch (type) {
        case TENSOR_Q8_0:
        case TENSOR_Q4_0:
            memcpy(blk, &d16, 2);
            break;
        case TENSOR_Q4_K:
            memcpy(blk, &d16, 2);
            memcpy(blk + 2, &d16, 2);
            break;
        case TENSOR_Q6_K:
            memcpy(blk + 208, &d16, 2);
            break;
        case TENSOR_F16:
        case TENSOR_BF16: /* clear the top exponent bit: |v| < 2 */
            memcpy(&h, blk, 2);
            h &= 0xbfff;
            memcpy(blk, &h, 2);
            break;
        case TENSOR_F32:
            memcpy(&u, blk, 4);
            u &= 0xbfffffffu;
            memcpy(blk, &u, 4);
            break;
        default:
            break;
        }
    }
    uint32_t s = 12345;
    b->w.data = b->wdata;
    b->n_tok = n_tok;
    b->x = malloc((size_t)n_tok * (size_t)n_cols * sizeof(float));
    b->y = core_alloc_aligned((size_t)n_tok * (size_t)n_rows * sizeof(float));
    b->scratch = core_alloc_aligned(tensor_act_size(&b->w, n_tok));
    if (!b->x || !b->y || !b->scratch) return -1;
    for (int64_t i = 0; i < (int64_t)n_tok * n_cols; i++) {
        s = s * 1664525u + 1013904223u;
        b->x[i] = (float)(s >> 8) / 16777216.f - 0.5f;
    }
    return 0;
}

static void bench_free(struct bench *b)
{
    core_free_aligned(b->wdata);
    core_free_aligned(b->y);
    core_free_aligned(b->scratch);
    free(b->x);
}

/* Median seconds of one product, over at least min_reps runs and about budget_s seconds. */
static double time_matmul(struct bench *b, struct pool *pool, int min_reps, double budget_s)
{
    enum { MAX_REPS = 101 };
    double t[MAX_REPS];
    int n = 0;
    tensor_matmul(pool, &b->w, b->x, (size_t)b->w.n_cols, b->n_tok, b->y, (size_t)b->w.n_rows, b->scratch);
    double start = core_time_ms();
    while (n < MAX_REPS && (n < min_reps || core_time_ms() - start < budget_s * 1e3)) {
        double t0 = core_time_ms();
        tensor_matmul(pool, &b->w, b->x, (size_t)b->w.n_cols, b->n_tok, b->y, (size_t)b->w.n_rows,
                      b->scratch);
        t[n++] = (core_time_ms() - t0) * 1e-3;
    }
    qsort(t, (size_t)n, sizeof t[0], cmp_double);
    return t[n / 2];
}

static const char *level_name(int l)
{
    return l == CORE_CPU_AVX512 ? "avx512" : l == CORE_CPU_AVX2 ? "avx2" : "scalar";
}

int main(int argc, char **argv)
{
    int quick = 0;
    const char *types_arg = "Q8_0,Q4_0,Q4_K,Q6_K,F16";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--thp"))
            g_thp = 1;
        else if (!strcmp(argv[i], "--types") && i + 1 < argc)
            types_arg = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--quick] [--thp] [--types Q8_0,Q4_0,Q4_K,Q6_K,F16,BF16,F32]\n",
                    argv[0]);
            return 2;
        }
    }
    int hw = core_cpu_level();
    struct pool *p1 = pool_open(1), *p2 = pool_open(2);
    double bw1 = banter_measure_bandwidth(1, 0.5), bw2 = banter_measure_bandwidth(2, 0.5);
    printf("cpu: %s, %d cores; read bandwidth %.1f GB/s (1 thread), %.1f GB/s (2 threads)\n", level_name(hw),
           core_n_cpus(), bw1, bw2);

    for (uint32_t type = 0; type < TENSOR_N_TYPES; type++) {
        const struct tensor_traits *tr = tensor_traits(type);
        if (!tr || !tr->supported || type == TENSOR_Q8_K) continue;
        char want[64];
        snprintf(want, sizeof want, ",%s,", tr->name);
        char have[256];
        snprintf(have, sizeof have, ",%s,", types_arg);
        if (!strstr(have, want)) continue;
        int64_t cols = tr->blck == 256 ? 768 : 640;
        printf("\n%s (matrices with %lld columns)\n", tr->name, (long long)cols);

        /* Matrix-vector: the output matrix (vocab rows) and an FFN-sized one. */
        static const int64_t mv_rows[] = {262144, 2048};
        for (int s = 0; s < 2; s++) {
            if (quick && s == 0) continue;
            struct bench b;
            if (bench_init(&b, type, mv_rows[s], cols, 1)) {
                printf("  allocation failed\n");
                bench_free(&b);
                continue;
            }
            double bytes = (double)b.w.row_bytes * (double)b.w.n_rows;
            core_cpu_force(CORE_CPU_SCALAR);
            double ts = time_matmul(&b, p1, 3, quick ? 0.1 : 0.3);
            core_cpu_force((enum core_cpu_level)hw);
            double t1 = time_matmul(&b, p1, 5, quick ? 0.2 : 0.5),
                   t2 = time_matmul(&b, p2, 5, quick ? 0.2 : 0.5);
            printf("  matvec %6lldx%lld (%6.1f MB): scalar %6.2f GB/s | %s 1 thr %6.2f GB/s (%3.0f%% of bw, "
                   "%5.1fx) "
                   "| 2 thr %6.2f GB/s (%3.0f%% of bw) %8.3f ms\n",
                   (long long)b.w.n_rows, (long long)cols, bytes / 1e6, bytes / ts / 1e9, level_name(hw),
                   bytes / t1 / 1e9, 100 * bytes / t1 / 1e9 / bw1, ts / t1, bytes / t2 / 1e9,
                   100 * bytes / t2 / 1e9 / bw2, t2 * 1e3);
            bench_free(&b);
        }

        /* Batched: an FFN-sized matrix against 8, 32 and 512 activation rows. */
        static const int toks[] = {8, 32, 512};
        for (int k = 0; k < 3; k++) {
            struct bench b;
            if (bench_init(&b, type, 2048, cols, toks[k])) {
                printf("  allocation failed\n");
                bench_free(&b);
                continue;
            }
            double macs = (double)b.w.n_rows * (double)cols * toks[k];
            core_cpu_force(CORE_CPU_SCALAR);
            double ts = time_matmul(&b, p1, toks[k] >= 512 ? 1 : 3, 0.2);
            core_cpu_force((enum core_cpu_level)hw);
            double t1 = time_matmul(&b, p1, 5, quick ? 0.2 : 0.5),
                   t2 = time_matmul(&b, p2, 5, quick ? 0.2 : 0.5);
            printf("  gemm 2048x%lld n_tok %3d: scalar %6.2f GMAC/s | %s 1 thr %7.1f GMAC/s (%5.1fx) | 2 thr "
                   "%7.1f "
                   "GMAC/s, %8.0f tok/s through this matrix\n",
                   (long long)cols, toks[k], macs / ts / 1e9, level_name(hw), macs / t1 / 1e9, ts / t1,
                   macs / t2 / 1e9, toks[k] / t2);
            bench_free(&b);
        }
    }
    pool_close(p1);
    pool_close(p2);
    return 0;
}
