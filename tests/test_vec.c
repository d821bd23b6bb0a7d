/*
 * test_vec.c: the float32 vector primitives at every CPU level against float64 references.
 */
#include "core/core.h"
#include "tensor/vec.h"
#include "test.h"

static double gelu_ref(double x)
{
    return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
}

static double silu_ref(double x)
{
    return x / (1.0 + exp(-x));
}

static uint32_t rng = 1;
static float frand(float scale)
{
    rng = rng * 1664525u + 1013904223u;
    return scale * ((float)(rng >> 8) / 16777216.0f * 2.0f - 1.0f);
}

static void check_level(enum core_cpu_level level)
{
    core_cpu_force(level);
    if (core_cpu_level() != level) return; /* machine lacks it */
    static float a[1000], b[1000], y[1000], y0[1000], g[1000], u[1000];
    const int sizes[] = {1, 7, 8, 15, 16, 17, 31, 33, 64, 256, 999};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        int n = sizes[si];
        double dref = 0, mag = 0;
        for (int i = 0; i < n; i++) {
            a[i] = frand(2);
            b[i] = frand(2);
            dref += (double)a[i] * b[i];
            mag += fabs((double)a[i] * b[i]);
        }
        CHECK_NEAR(vec_dot_f32(a, b, n), dref, 1e-5 * mag + 1e-6);
        for (int i = 0; i < n; i++) y[i] = y0[i] = frand(1);
        vec_axpy_f32(y, a, 0.37f, n);
        for (int i = 0; i < n; i++) CHECK_NEAR(y[i], y0[i] + 0.37 * a[i], 1e-6);
        for (int i = 0; i < n; i++) {
            g[i] = frand(12); /* covers the saturated tails */
            u[i] = frand(3);
        }
        float gs[1000];
        memcpy(gs, g, sizeof gs);
        vec_gelu_mul_f32(g, u, n);
        for (int i = 0; i < n; i++) CHECK_NEAR(g[i], gelu_ref(gs[i]) * u[i], 2e-6 * (fabs(gs[i] * u[i]) + 1));
        memcpy(g, gs, sizeof gs);
        vec_silu_mul_f32(g, u, n);
        for (int i = 0; i < n; i++) CHECK_NEAR(g[i], silu_ref(gs[i]) * u[i], 2e-6 * (fabs(gs[i] * u[i]) + 1));
    }
    /* Attention helpers: scores over strided keys, weighted sums over strided values. */
    static float kv[40 * 300], sc[40], out[300], ref_out[300];
    for (int i = 0; i < 40 * 300; i++) kv[i] = frand(1);
    for (int d = 1; d <= 290; d += 17) {
        for (int n = 1; n <= 40; n += 13) {
            vec_scores_f32(a, kv, 300, n, d, 0.125f, sc);
            for (int j = 0; j < n; j++) {
                double r = 0;
                for (int i = 0; i < d; i++) r += (double)a[i] * kv[j * 300 + i];
                CHECK_NEAR(sc[j], 0.125 * r, 1e-5 * d);
            }
            vec_wsum_f32(kv, 300, sc, n, d, out);
            vec_wsum_f32_ref(kv, 300, sc, n, d, ref_out);
            for (int i = 0; i < d; i++) CHECK_NEAR(out[i], ref_out[i], 1e-5 * n);
        }
    }
    /* Extremes saturate instead of producing NaN or Inf. */
    float big[16] = {1e30f, -1e30f, 100.0f, -100.0f, 88.0f, -88.0f, 0.0f, -0.0f,
                     1e30f, -1e30f, 100.0f, -100.0f, 88.0f, -88.0f, 0.0f, -0.0f};
    float ones[16];
    for (int i = 0; i < 16; i++) ones[i] = 1.0f;
    float gg[16];
    memcpy(gg, big, sizeof gg);
    vec_gelu_mul_f32(gg, ones, 16);
    for (int i = 0; i < 16; i++) CHECK(isfinite(gg[i]) || fabsf(big[i]) > 1e29f);
    CHECK_NEAR(gg[2], 100.0, 1e-4);
    CHECK_NEAR(gg[3], 0.0, 1e-6);
}

int main(void)
{
    check_level(CORE_CPU_SCALAR);
    check_level(CORE_CPU_AVX2);
    check_level(CORE_CPU_AVX512);
    return test_finish("test_vec");
}
