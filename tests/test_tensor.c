/*
 * test_tensor.c: the type table, half/bfloat conversions, quantizer error, and every matrix kernel at every
 * CPU level against the scalar reference and against an independent float64 product of the dequantized
 * operands.
 */
#include "core/core.h"
#include "core/pool.h"
#include "tensor/tensor.h"
#include "test.h"

#include <float.h>

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd_u64(void)
{
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float rnd_uniform(void) /* [-1, 1) */
{
    return (float)((double)(rnd_u64() >> 11) * 0x1p-52 - 1.0);
}

/* Values with a spread of magnitudes and an occasional outlier, like real weights and activations. */
static void fill(float *x, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++) {
        float v = rnd_uniform() * scale;
        if ((rnd_u64() & 63) == 0) v *= 8;
        x[i] = v;
    }
}

static float bits_to_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---------------------------------------------------------------------------------------------------------
 */

static void test_traits(void)
{
    static const struct {
        uint32_t id;
        const char *name;
        int64_t blck;
        size_t size;
    } want[] = {
        {0, "F32", 1, 4},         {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},      {3, "Q4_1", 32, 20},
        {6, "Q5_0", 32, 22},      {7, "Q5_1", 32, 24},      {8, "Q8_0", 32, 34},      {9, "Q8_1", 32, 36},
        {10, "Q2_K", 256, 84},    {11, "Q3_K", 256, 110},   {12, "Q4_K", 256, 144},   {13, "Q5_K", 256, 176},
        {14, "Q6_K", 256, 210},   {15, "Q8_K", 256, 292},   {16, "IQ2_XXS", 256, 66}, {17, "IQ2_XS", 256, 74},
        {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50},   {20, "IQ4_NL", 32, 18},   {21, "IQ3_S", 256, 110},
        {22, "IQ2_S", 256, 82},   {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},         {25, "I16", 1, 2},
        {26, "I32", 1, 4},        {27, "I64", 1, 8},        {28, "F64", 1, 8},        {29, "IQ1_M", 256, 56},
        {30, "BF16", 1, 2},       {34, "TQ1_0", 256, 54},   {35, "TQ2_0", 256, 66},   {39, "MXFP4", 32, 17},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const struct tensor_traits *t = tensor_traits(want[i].id);
        CHECK(t != NULL);
        if (!t) continue;
        CHECK_STR_EQ(t->name, want[i].name);
        CHECK_STR_EQ(tensor_type_name(want[i].id), want[i].name);
        CHECK_INT_EQ(t->blck, want[i].blck);
        CHECK_INT_EQ(t->size, want[i].size);
        CHECK_INT_EQ(tensor_row_size(want[i].id, want[i].blck * 3), want[i].size * 3);
    }
    static const uint32_t unassigned[] = {4, 5, 31, 32, 33, 36, 37, 38, 40, 1000, 0xffffffffu};
    for (size_t i = 0; i < sizeof unassigned / sizeof unassigned[0]; i++) {
        CHECK(tensor_traits(unassigned[i]) == NULL);
        CHECK_STR_EQ(tensor_type_name(unassigned[i]), "?");
        CHECK_INT_EQ(tensor_row_size(unassigned[i], 256), 0);
    }
    CHECK_INT_EQ(tensor_row_size(TENSOR_Q8_0, 33), 0);
    CHECK_INT_EQ(tensor_row_size(TENSOR_Q4_K, 128), 0);
    CHECK_INT_EQ(tensor_row_size(TENSOR_Q8_0, -32), 0);
    CHECK_INT_EQ(tensor_row_size(TENSOR_F16, 7), 14);
    CHECK_INT_EQ(tensor_row_size(TENSOR_Q8_0, 0), 0);

    static const uint32_t supported[] = {TENSOR_F32,  TENSOR_F16,  TENSOR_BF16, TENSOR_Q8_0,
                                         TENSOR_Q4_0, TENSOR_Q4_K, TENSOR_Q6_K, TENSOR_Q8_K};
    int n_sup = 0;
    for (uint32_t id = 0; id < TENSOR_N_TYPES; id++) {
        const struct tensor_traits *t = tensor_traits(id);
        if (t && t->supported) n_sup++;
    }
    CHECK_INT_EQ(n_sup, (int)(sizeof supported / sizeof supported[0]));
    CHECK_INT_EQ(tensor_traits(TENSOR_Q8_0)->vec_dot_type, TENSOR_Q8_0);
    CHECK_INT_EQ(tensor_traits(TENSOR_Q4_0)->vec_dot_type, TENSOR_Q8_0);
    CHECK_INT_EQ(tensor_traits(TENSOR_Q4_K)->vec_dot_type, TENSOR_Q8_K);
    CHECK_INT_EQ(tensor_traits(TENSOR_Q6_K)->vec_dot_type, TENSOR_Q8_K);
    CHECK_INT_EQ(tensor_traits(TENSOR_F16)->vec_dot_type, TENSOR_F32);
    CHECK_INT_EQ(tensor_traits(TENSOR_BF16)->vec_dot_type, TENSOR_F32);
    CHECK_INT_EQ(tensor_traits(TENSOR_F32)->vec_dot_type, TENSOR_F32);
}

/* ---------------------------------------------------------------------------------------------------------
 */

/* The value of a half, computed from its definition in double precision. */
static double f16_value(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -v : v;
}

/* Checks that h is the half nearest to f with ties to even, by comparing it with its two neighbours. */
static int is_nearest_f16(float f, uint16_t h)
{
    if (isnan(f)) return ((h >> 10) & 31) == 31 && (h & 1023);
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    double a = fabs((double)f);
    if ((h & 0x8000) != sign) return 0;
    uint16_t mag = h & 0x7fff;
    if (a >= 65520.0) return mag == 0x7c00;
    if (mag >= 0x7c00) return 0;
    double v = f16_value(mag), err = fabs(a - v);
    if (mag > 0 && fabs(a - f16_value((uint16_t)(mag - 1))) < err) return 0;
    double up = mag + 1 < 0x7c00 ? f16_value((uint16_t)(mag + 1)) : 65536.0;
    if (fabs(a - up) < err) return 0;
    if (fabs(a - up) == err && (mag & 1)) return 0; /* a tie must go to the even half */
    if (mag > 0 && fabs(a - f16_value((uint16_t)(mag - 1))) == err && (mag & 1)) return 0;
    return 1;
}

static void test_f16(void)
{
    int bad_value = 0, bad_trip = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = tensor_f16_to_f32((uint16_t)h);
        int e = (h >> 10) & 31;
        if (e == 31) {
            if ((h & 1023) ? !isnan(f) : !isinf(f)) bad_value++;
            if ((h & 1023) && !(((tensor_f32_to_f16(f) >> 10) & 31) == 31 && (tensor_f32_to_f16(f) & 1023)))
                bad_trip++;
            if (!(h & 1023) && tensor_f32_to_f16(f) != h) bad_trip++;
            continue;
        }
        if ((double)f != f16_value((uint16_t)h) || !!signbit(f) != !!(h & 0x8000)) bad_value++;
        if (tensor_f32_to_f16(f) != h) bad_trip++;
    }
    CHECK_INT_EQ(bad_value, 0);
    CHECK_INT_EQ(bad_trip, 0);

    /* f32 -> f16 on random bit patterns (every exponent), on values near half-way points, and on edges. */
    int bad_round = 0;
    for (int i = 0; i < 400000; i++) {
        uint32_t u = (uint32_t)rnd_u64();
        if (i & 1)
            u = (u & 0x80001fffu) | ((uint32_t)(100 + rnd_u64() % 45) << 23) | (rnd_u64() & 1 ? 0x1000 : 0);
        float f = bits_to_f32(u);
        if (!is_nearest_f16(f, tensor_f32_to_f16(f))) {
            if (bad_round++ < 5) fprintf(stderr, "f32 %08x -> f16 %04x\n", u, tensor_f32_to_f16(f));
        }
    }
    static const float edges[] = {0.f,      -0.f,         65504.f,         65519.99f,        65520.f,
                                  1e10f,    0x1p-24f,     0x1p-25f,        0x1.8p-25f,       0x1p-26f,
                                  0x1p-14f, 0x1.ffcp-15f, 1.0f + 0x1p-11f, 1.0f + 0x1.8p-11f};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        CHECK(is_nearest_f16(edges[i], tensor_f32_to_f16(edges[i])));
        CHECK(is_nearest_f16(-edges[i], tensor_f32_to_f16(-edges[i])));
    }
    CHECK_INT_EQ(tensor_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);   /* tie, to even */
    CHECK_INT_EQ(tensor_f32_to_f16(1.0f + 0x1.8p-11f), 0x3c01); /* tie, to even (up) */
    CHECK_INT_EQ(tensor_f32_to_f16(65520.f), 0x7c00);
    CHECK_INT_EQ(tensor_f32_to_f16(0x1p-25f), 0x0000);
    CHECK_INT_EQ(tensor_f32_to_f16(0x1.8p-25f), 0x0001);
    CHECK(isnan(tensor_f16_to_f32(tensor_f32_to_f16(NAN))));
    CHECK_INT_EQ(bad_round, 0);
}

static void test_bf16(void)
{
    int bad_trip = 0, bad_round = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = tensor_bf16_to_f32((uint16_t)h);
        uint32_t u;
        memcpy(&u, &f, 4);
        if (u != h << 16) bad_trip++;
        if (isnan(f)) {
            if (!isnan(tensor_bf16_to_f32(tensor_f32_to_bf16(f)))) bad_trip++;
        } else if (tensor_f32_to_bf16(f) != h) {
            bad_trip++;
        }
    }
    for (int i = 0; i < 200000; i++) {
        uint32_t u = (uint32_t)rnd_u64();
        if (i & 1) u = (u & 0xffff0000u) | 0x8000u; /* exact ties */
        float f = bits_to_f32(u);
        if (isnan(f) || isinf(f)) continue;
        uint16_t h = tensor_f32_to_bf16(f);
        /* Independent: the nearest of the two bfloats around f (truncation and the next one up). */
        uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u;
        double dl = fabs((double)f - (double)bits_to_f32(lo));
        double dh = ((hi >> 23) & 0xff) == 0xff ? INFINITY : fabs((double)bits_to_f32(hi) - (double)f);
        if (((hi >> 23) & 0xff) == 0xff && (hi & 0x7fffff) == 0) dh = fabs(0x1p128 - fabs((double)f));
        uint16_t want = (uint16_t)((dl < dh || (dl == dh && !((lo >> 16) & 1))) ? lo >> 16 : hi >> 16);
        if (h != want) bad_round++;
    }
    CHECK_INT_EQ(bad_trip, 0);
    CHECK_INT_EQ(bad_round, 0);
}

/* ---------------------------------------------------------------------------------------------------------
 */

static const uint32_t k_types[] = {TENSOR_F32,  TENSOR_F16,  TENSOR_BF16, TENSOR_Q8_0,
                                   TENSOR_Q4_0, TENSOR_Q4_K, TENSOR_Q6_K};
#define N_TYPES (sizeof k_types / sizeof k_types[0])

static void test_quant_error(void)
{
    static const struct {
        uint32_t type;
        double max_rel_rmse;
    } cases[] = {
        {TENSOR_F32, 0},     {TENSOR_F16, 1e-3},  {TENSOR_BF16, 5e-3},  {TENSOR_Q8_0, 0.006},
        {TENSOR_Q4_0, 0.09}, {TENSOR_Q4_K, 0.06}, {TENSOR_Q6_K, 0.015}, {TENSOR_Q8_K, 0.005},
    };
    enum { N = 4096 };
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    uint8_t *q = malloc(tensor_row_size(TENSOR_F32, N));
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int i = 0; i < N; i++)
            x[i] = rnd_uniform(); /* uniform, so the expected error is known */
        tensor_quantize(cases[c].type, x, q, N);
        tensor_dequantize(cases[c].type, q, y, N);
        double se = 0, sx = 0, max_err = 0, max_x = 0;
        for (int i = 0; i < N; i++) {
            se += (double)(x[i] - y[i]) * (x[i] - y[i]);
            sx += (double)x[i] * x[i];
            if (fabs(x[i] - y[i]) > max_err) max_err = fabs(x[i] - y[i]);
            if (fabs(x[i]) > max_x) max_x = fabs(x[i]);
        }
        double rel = sqrt(se / sx);
        if (rel > cases[c].max_rel_rmse)
            fprintf(stderr, "%s: relative rmse %.5f\n", tensor_type_name(cases[c].type), rel);
        CHECK(rel <= cases[c].max_rel_rmse);
        /* No value may be off by more than a quarter of the largest magnitude, whatever the format. */
        CHECK(max_err <= 0.25 * max_x);
    }

    /* Q8_0 and Q4_0 follow the formula exactly: check one block against a hand computation. */
    float b[32];
    for (int i = 0; i < 32; i++)
        b[i] = (float)(i - 16) * 0.25f; /* amax 4 at i = 0 (value -4) */
    uint8_t blk[34];
    tensor_quantize(TENSOR_Q8_0, b, blk, 32);
    uint16_t d;
    memcpy(&d, blk, 2);
    CHECK_INT_EQ(d, tensor_f32_to_f16(4.0f / 127.f));
    CHECK_INT_EQ((int8_t)blk[2], -127);
    CHECK_INT_EQ((int8_t)blk[2 + 16], 0);
    CHECK_INT_EQ((int8_t)blk[2 + 17], (int)roundf(0.25f * (127.f / 4.0f))); /* 7.9375 -> 8 */
    tensor_quantize(TENSOR_Q4_0, b, blk, 32);
    memcpy(&d, blk, 2);
    CHECK_INT_EQ(d, tensor_f32_to_f16(0.5f)); /* max is -4: d = -4 / -8 */
    CHECK_INT_EQ(blk[2] & 0xf, 0);            /* -4 / 0.5 + 8 = 0 */
    CHECK_INT_EQ(blk[2] >> 4, 8);             /* value 16: 0 / 0.5 + 8 */

    /* All-zero blocks give zero scales and dequantize to zero. */
    memset(x, 0, 256 * sizeof(float));
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        tensor_quantize(cases[c].type, x, q, 256);
        tensor_dequantize(cases[c].type, q, y, 256);
        int nz = 0;
        for (int i = 0; i < 256; i++)
            nz += y[i] != 0;
        CHECK_INT_EQ(nz, 0);
    }
    free(x);
    free(y);
    free(q);
}

/* ---------------------------------------------------------------------------------------------------------
 */

static const char *level_name(int l)
{
    return l == CORE_CPU_AVX512 ? "avx512" : l == CORE_CPU_AVX2 ? "avx2" : "scalar";
}

/* A random matrix of the given type, its activations, and their converted form. */
struct mm_case {
    struct tensor_mat w;
    uint8_t *wdata;
    float *x;  /* [n_tok, n_cols] */
    void *xq;  /* converted */
    size_t xs; /* bytes per converted row */
    int n_tok;
};

static void mm_case_init(struct mm_case *c, uint32_t type, int64_t n_rows, int64_t n_cols, int n_tok)
{
    c->w.type = type;
    c->w.n_cols = n_cols;
    c->w.n_rows = n_rows;
    c->w.row_bytes = tensor_row_size(type, n_cols);
    c->wdata = core_alloc_aligned(c->w.row_bytes * (size_t)n_rows + 64);
    c->w.data = c->wdata;
    float *row = malloc((size_t)n_cols * sizeof(float));
    float scale = 0.5f + (float)(rnd_u64() % 100) * 0.01f;
    for (int64_t r = 0; r < n_rows; r++) {
        fill(row, n_cols, scale);
        tensor_quantize(type, row, c->wdata + (size_t)r * c->w.row_bytes, n_cols);
    }
    free(row);
    c->n_tok = n_tok;
    c->x = malloc((size_t)n_tok * (size_t)n_cols * sizeof(float));
    fill(c->x, (int64_t)n_tok * n_cols, 3.0f);
    c->xs = tensor_row_size(tensor_traits(type)->vec_dot_type, n_cols);
    c->xq = core_alloc_aligned(tensor_act_size(&c->w, n_tok) + 64);
    tensor_act_convert(&c->w, c->x, (size_t)n_cols, n_tok, c->xq, 0, 1);
}

static void mm_case_free(struct mm_case *c)
{
    core_free_aligned(c->wdata);
    core_free_aligned(c->xq);
    free(c->x);
}

/* The float64 product of the dequantized weight row and dequantized activation row, and the sum of the
 * absolute products (the scale that rounding errors are measured against). */
static double dot64(const struct mm_case *c, int64_t r, int t, double *mag)
{
    int64_t n = c->w.n_cols;
    float *a = malloc((size_t)n * sizeof(float)), *b = malloc((size_t)n * sizeof(float));
    tensor_dequantize(c->w.type, c->wdata + (size_t)r * c->w.row_bytes, a, n);
    tensor_dequantize(tensor_traits(c->w.type)->vec_dot_type, (const uint8_t *)c->xq + (size_t)t * c->xs, b,
                      n);
    double s = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        s += (double)a[i] * b[i];
        m += fabs((double)a[i] * b[i]);
    }
    free(a);
    free(b);
    *mag = m;
    return s;
}

static void test_act_convert_levels(void)
{
    /* Every level must produce the same activation bytes. */
    static const uint32_t wt[] = {TENSOR_Q8_0, TENSOR_Q4_K, TENSOR_F16};
    int hw_level = core_cpu_level();
    for (size_t k = 0; k < sizeof wt / sizeof wt[0]; k++) {
        struct mm_case c;
        mm_case_init(&c, wt[k], 1, 1024, 3);
        size_t n = tensor_act_size(&c.w, 3);
        uint8_t *ref = malloc(n), *got = malloc(n);
        core_cpu_force(CORE_CPU_SCALAR);
        tensor_act_convert(&c.w, c.x, 1024, 3, ref, 0, 1);
        for (int l = CORE_CPU_AVX2; l <= hw_level; l++) {
            core_cpu_force((enum core_cpu_level)l);
            memset(got, 0xaa, n);
            tensor_act_convert(&c.w, c.x, 1024, 3, got, 0, 1);
            if (memcmp(ref, got, n))
                fprintf(stderr, "act_convert %s differs at %s\n", tensor_type_name(wt[k]), level_name(l));
            CHECK(memcmp(ref, got, n) == 0);
        }
        free(ref);
        free(got);
        mm_case_free(&c);
    }
    core_cpu_force((enum core_cpu_level)hw_level);
}

static void test_vec_dot(void)
{
    int hw_level = core_cpu_level();
    for (size_t k = 0; k < N_TYPES; k++) {
        uint32_t type = k_types[k];
        int64_t blck = tensor_traits(type)->blck == 1 ? 1 : tensor_traits(type)->blck;
        static const int64_t float_sizes[] = {1, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 640, 1000};
        static const int64_t block_counts[] = {1, 2, 3, 5, 7, 8, 20, 33};
        int n_sizes = blck == 1 ? 14 : 8;
        for (int s = 0; s < n_sizes; s++) {
            int64_t n = blck == 1 ? float_sizes[s] : block_counts[s] * blck;
            struct mm_case c;
            mm_case_init(&c, type, 3, n, 2);
            for (int r = 0; r < 3; r++) {
                for (int t = 0; t < 2; t++) {
                    const uint8_t *wr = c.wdata + (size_t)r * c.w.row_bytes;
                    const uint8_t *xr = (const uint8_t *)c.xq + (size_t)t * c.xs;
                    float ref = tensor_vec_dot_ref(type, n, wr, xr);
                    double mag, d64 = dot64(&c, r, t, &mag);
                    /* Float sums of up to n terms, against exact integers or float64. */
                    CHECK_NEAR(ref, d64, 1e-5 * mag + 1e-30);
                    for (int l = CORE_CPU_SCALAR; l <= hw_level; l++) {
                        core_cpu_force((enum core_cpu_level)l);
                        float y[3] = {0, 0, 0};
                        tensor_matmul_rows(&c.w, xr, 1, y, 3, r, r + 1);
                        if (!(fabs(y[r] - ref) <= 1e-5 * mag + 1e-30))
                            fprintf(stderr, "vec_dot %s n=%lld level %s: %.9g vs %.9g\n",
                                    tensor_type_name(type), (long long)n, level_name(l), y[r], ref);
                        CHECK_NEAR(y[r], ref, 1e-5 * mag + 1e-30);
                    }
                    core_cpu_force((enum core_cpu_level)hw_level);
                }
            }
            mm_case_free(&c);
        }
    }
}

static void test_matmul_rows(void)
{
    int hw_level = core_cpu_level();
    for (size_t k = 0; k < N_TYPES; k++) {
        uint32_t type = k_types[k];
        int64_t blck = tensor_traits(type)->blck;
        int64_t n_cols = blck == 1 ? 200 : (blck == 32 ? 7 * 32 : 3 * 256);
        int64_t n_rows = 37;
        struct mm_case c;
        mm_case_init(&c, type, n_rows, n_cols, 37);
        float *ref = malloc(37 * 40 * sizeof(float)), *y = malloc(37 * 40 * sizeof(float));
        double *mag = malloc(37 * 40 * sizeof(double));
        for (int t = 0; t < 37; t++)
            for (int64_t r = 0; r < n_rows; r++) {
                ref[t * 40 + r] = tensor_vec_dot_ref(type, n_cols, c.wdata + (size_t)r * c.w.row_bytes,
                                                     (uint8_t *)c.xq + t * c.xs);
                dot64(&c, r, t, &mag[t * 40 + r]);
            }
        for (int l = CORE_CPU_SCALAR; l <= hw_level; l++) {
            core_cpu_force((enum core_cpu_level)l);
            int bad = 0;
            for (int n_tok = 1; n_tok <= 37; n_tok += (l == CORE_CPU_SCALAR ? 6 : 1)) {
                static const int64_t ranges[][2] = {{0, 37}, {3, 20}, {5, 6}, {1, 36}, {16, 33}};
                for (int g = 0; g < 5; g++) {
                    int64_t r0 = ranges[g][0], r1 = ranges[g][1];
                    for (int i = 0; i < 37 * 40; i++)
                        y[i] = -12345.f;
                    tensor_matmul_rows(&c.w, c.xq, n_tok, y, 40, r0, r1);
                    for (int t = 0; t < 37; t++)
                        for (int r = 0; r < 40; r++) {
                            int inside = t < n_tok && r >= r0 && r < r1;
                            if (!inside) {
                                bad += y[t * 40 + r] != -12345.f; /* nothing outside the range is written */
                                continue;
                            }
                            double tol = 1e-5 * mag[t * 40 + r] + 1e-30;
                            if (!(fabs(y[t * 40 + r] - ref[t * 40 + r]) <= tol)) {
                                if (bad < 3)
                                    fprintf(
                                        stderr,
                                        "matmul %s level %s n_tok %d rows [%lld,%lld) t %d r %d: %g vs %g\n",
                                        tensor_type_name(type), level_name(l), n_tok, (long long)r0,
                                        (long long)r1, t, r, y[t * 40 + r], ref[t * 40 + r]);
                                bad++;
                            }
                        }
                }
            }
            CHECK_INT_EQ(bad, 0);
        }
        core_cpu_force((enum core_cpu_level)hw_level);
        free(ref);
        free(y);
        free(mag);
        mm_case_free(&c);
    }
}

/* Matrix-vector products over many rows, which the kernels read as several distant streams at once. */
static void test_matvec_many_rows(void)
{
    int hw_level = core_cpu_level();
    for (size_t k = 0; k < N_TYPES; k++) {
        uint32_t type = k_types[k];
        int64_t n_cols = 2048; /* 203 rows of it are long enough for the multi-stream path */
        enum { ROWS = 203 };
        struct mm_case c;
        mm_case_init(&c, type, ROWS, n_cols, 1);
        float ref[ROWS], y[ROWS];
        double mag[ROWS];
        for (int r = 0; r < ROWS; r++) {
            ref[r] = tensor_vec_dot_ref(type, n_cols, c.wdata + (size_t)r * c.w.row_bytes, c.xq);
            dot64(&c, r, 0, &mag[r]);
        }
        for (int l = CORE_CPU_SCALAR; l <= hw_level; l++) {
            core_cpu_force((enum core_cpu_level)l);
            static const int ranges[][2] = {{0, ROWS}, {5, 200}, {7, 136}};
            int bad = 0;
            for (int g = 0; g < 3; g++) {
                for (int r = 0; r < ROWS; r++)
                    y[r] = -12345.f;
                tensor_matmul_rows(&c.w, c.xq, 1, y, ROWS, ranges[g][0], ranges[g][1]);
                for (int r = 0; r < ROWS; r++) {
                    if (r < ranges[g][0] || r >= ranges[g][1])
                        bad += y[r] != -12345.f;
                    else
                        bad += !(fabs(y[r] - ref[r]) <= 1e-5 * mag[r] + 1e-30);
                }
            }
            if (bad)
                fprintf(stderr, "matvec %s level %s: %d bad\n", tensor_type_name(type), level_name(l), bad);
            CHECK_INT_EQ(bad, 0);
        }
        core_cpu_force((enum core_cpu_level)hw_level);
        mm_case_free(&c);
    }
}

/* Long rows and many tokens: the batched kernels split the tokens into several chunks here, and fall back to
 * the tile kernels for rows too long for their stack buffers. */
static void test_matmul_long_rows(void)
{
    static const uint32_t types[] = {TENSOR_Q8_0, TENSOR_Q4_0, TENSOR_Q4_K, TENSOR_Q6_K};
    static const int64_t cols[] = {2048, 8448};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++)
        for (int c = 0; c < 2; c++) {
            struct mm_case mc;
            enum { ROWS = 19, TOK = 37 };
            mm_case_init(&mc, types[k], ROWS, cols[c], TOK);
            float *y = malloc(ROWS * TOK * sizeof(float));
            tensor_matmul_rows(&mc.w, mc.xq, TOK, y, ROWS, 0, ROWS);
            int bad = 0;
            for (int t = 0; t < TOK; t++)
                for (int r = 0; r < ROWS; r++) {
                    float ref = tensor_vec_dot_ref(types[k], cols[c], mc.wdata + (size_t)r * mc.w.row_bytes,
                                                   (uint8_t *)mc.xq + t * mc.xs);
                    double mag;
                    dot64(&mc, r, t, &mag);
                    bad += !(fabs(y[t * ROWS + r] - ref) <= 1e-5 * mag);
                }
            if (bad)
                fprintf(stderr, "long rows %s n_cols %lld: %d bad\n", tensor_type_name(types[k]),
                        (long long)cols[c], bad);
            CHECK_INT_EQ(bad, 0);
            free(y);
            mm_case_free(&mc);
        }
}

static void test_matmul_pool(void)
{
    struct pool *pool = pool_open(2);
    CHECK(pool != NULL);
    if (!pool) return;
    for (size_t k = 0; k < N_TYPES; k++) {
        uint32_t type = k_types[k];
        int64_t blck = tensor_traits(type)->blck;
        int64_t n_cols = blck == 1 ? 96 : (blck == 32 ? 640 : 512);
        static const int toks[] = {1, 5, 19};
        for (int i = 0; i < 3; i++) {
            int n_tok = toks[i];
            struct mm_case c;
            mm_case_init(&c, type, 83, n_cols, n_tok);
            size_t ys = 90;
            float *y1 = calloc((size_t)n_tok * ys, sizeof(float)),
                  *y2 = calloc((size_t)n_tok * ys, sizeof(float));
            void *scratch = core_alloc_aligned(tensor_act_size(&c.w, n_tok));
            tensor_matmul(NULL, &c.w, c.x, (size_t)n_cols, n_tok, y1, ys, scratch);
            memset(scratch, 0, tensor_act_size(&c.w, n_tok));
            tensor_matmul(pool, &c.w, c.x, (size_t)n_cols, n_tok, y2, ys, scratch);
            int bad = 0;
            for (int t = 0; t < n_tok; t++)
                for (int r = 0; r < 83; r++) {
                    double mag;
                    dot64(&c, r, t, &mag);
                    bad += !(fabs(y1[t * ys + r] - y2[t * ys + r]) <= 1e-6 * mag);
                }
            CHECK_INT_EQ(bad, 0);
            core_free_aligned(scratch);
            free(y1);
            free(y2);
            mm_case_free(&c);
        }
    }
    pool_close(pool);
}

int main(void)
{
    printf("cpu level: %s\n", level_name(core_cpu_level()));
    test_traits();
    test_f16();
    test_bf16();
    test_quant_error();
    test_act_convert_levels();
    test_vec_dot();
    test_matmul_rows();
    test_matmul_long_rows();
    test_matvec_many_rows();
    test_matmul_pool();
    return test_finish("test_tensor");
}
