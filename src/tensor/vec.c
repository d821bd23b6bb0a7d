/*
 * vec.c: scalar float32 vector primitives and run-time dispatch to the SIMD versions.
 *
 * GELU uses the tanh approximation that Gemma was trained with, written through the identity
 * 0.5 * (1 + tanh(z)) = 1 / (1 + exp(-2z)), which the SIMD versions evaluate with a polynomial exp.
 */
#include "tensor/vec.h"
#include "core/core.h"

#include <math.h>

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_C 0.044715f

float vec_dot_f32_ref(const float *a, const float *b, int n)
{
    float s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

void vec_axpy_f32_ref(float *y, const float *x, float alpha, int n)
{
    for (int i = 0; i < n; i++) y[i] += alpha * x[i];
}

void vec_gelu_mul_f32_ref(float *g, const float *u, int n)
{
    for (int i = 0; i < n; i++) {
        float x = g[i];
        float z = GELU_K * x * (1.0f + GELU_C * x * x);
        g[i] = x / (1.0f + expf(-2.0f * z)) * u[i];
    }
}

void vec_silu_mul_f32_ref(float *g, const float *u, int n)
{
    for (int i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

float vec_dot_f32(const float *a, const float *b, int n)
{
    switch (core_cpu_level()) {
    case CORE_CPU_AVX512: return vec_dot_f32_avx512(a, b, n);
    case CORE_CPU_AVX2: return vec_dot_f32_avx2(a, b, n);
    default: return vec_dot_f32_ref(a, b, n);
    }
}

void vec_axpy_f32(float *y, const float *x, float alpha, int n)
{
    switch (core_cpu_level()) {
    case CORE_CPU_AVX512: vec_axpy_f32_avx512(y, x, alpha, n); break;
    case CORE_CPU_AVX2: vec_axpy_f32_avx2(y, x, alpha, n); break;
    default: vec_axpy_f32_ref(y, x, alpha, n);
    }
}

void vec_gelu_mul_f32(float *g, const float *u, int n)
{
    switch (core_cpu_level()) {
    case CORE_CPU_AVX512: vec_gelu_mul_f32_avx512(g, u, n); break;
    case CORE_CPU_AVX2: vec_gelu_mul_f32_avx2(g, u, n); break;
    default: vec_gelu_mul_f32_ref(g, u, n);
    }
}

void vec_silu_mul_f32(float *g, const float *u, int n)
{
    switch (core_cpu_level()) {
    case CORE_CPU_AVX512: vec_silu_mul_f32_avx512(g, u, n); break;
    case CORE_CPU_AVX2: vec_silu_mul_f32_avx2(g, u, n); break;
    default: vec_silu_mul_f32_ref(g, u, n);
    }
}

void vec_scores_f32_ref(const float *q, const float *k, int stride, int n_keys, int d, float scale, float *out)
{
    for (int j = 0; j < n_keys; j++) out[j] = scale * vec_dot_f32_ref(q, k + (size_t)j * stride, d);
}

void vec_wsum_f32_ref(const float *v, int stride, const float *w, int n, int d, float *out)
{
    for (int i = 0; i < d; i++) out[i] = 0;
    for (int j = 0; j < n; j++) vec_axpy_f32_ref(out, v + (size_t)j * stride, w[j], d);
}

void vec_scores_f32(const float *q, const float *k, int stride, int n_keys, int d, float scale, float *out)
{
    switch (core_cpu_level()) {
    case CORE_CPU_AVX512: vec_scores_f32_avx512(q, k, stride, n_keys, d, scale, out); break;
    case CORE_CPU_AVX2: vec_scores_f32_avx2(q, k, stride, n_keys, d, scale, out); break;
    default: vec_scores_f32_ref(q, k, stride, n_keys, d, scale, out);
    }
}

void vec_wsum_f32(const float *v, int stride, const float *w, int n, int d, float *out)
{
    switch (core_cpu_level()) {
    case CORE_CPU_AVX512: vec_wsum_f32_avx512(v, stride, w, n, d, out); break;
    case CORE_CPU_AVX2: vec_wsum_f32_avx2(v, stride, w, n, d, out); break;
    default: vec_wsum_f32_ref(v, stride, w, n, d, out);
    }
}
