/*
 * vec_avx2.c: AVX2/FMA versions of the float32 vector primitives (see vec.h). The exponential is a degree-6
 * polynomial on a range-reduced argument (relative error about 2e-7 in the range that matters), with inputs
 * clamped so that large |x| saturate instead of overflowing.
 */
#include "tensor/vec.h"

#include <immintrin.h>
#include <math.h>

#define W 8

static inline float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m256 exp_ps(__m256 x)
{
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 t = _mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f));
    __m256 n = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187045e-06f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

float vec_dot_f32_avx2(const float *a, const float *b, int n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + W), _mm256_loadu_ps(b + i + W), s1);
    }
    for (; i + W <= n; i += W) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

void vec_axpy_f32_avx2(float *y, const float *x, float alpha, int n)
{
    __m256 va = _mm256_set1_ps(alpha);
    int i = 0;
    for (; i + W <= n; i += W) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += alpha * x[i];
}

void vec_gelu_mul_f32_avx2(float *g, const float *u, int n)
{
    const __m256 k2 = _mm256_set1_ps(-2.0f * 0.7978845608028654f), c = _mm256_set1_ps(0.044715f), one = _mm256_set1_ps(1.0f);
    int i = 0;
    for (; i + W <= n; i += W) {
        __m256 x = _mm256_loadu_ps(g + i);
        __m256 z = _mm256_mul_ps(_mm256_mul_ps(k2, x), _mm256_fmadd_ps(_mm256_mul_ps(c, x), x, one));
        __m256 s = _mm256_div_ps(x, _mm256_add_ps(one, exp_ps(z)));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
    }
    if (i < n) vec_gelu_mul_f32_ref(g + i, u + i, n - i);
}

void vec_silu_mul_f32_avx2(float *g, const float *u, int n)
{
    const __m256 one = _mm256_set1_ps(1.0f), neg = _mm256_set1_ps(-0.0f);
    int i = 0;
    for (; i + W <= n; i += W) {
        __m256 x = _mm256_loadu_ps(g + i);
        __m256 s = _mm256_div_ps(x, _mm256_add_ps(one, exp_ps(_mm256_xor_ps(x, neg))));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
    }
    if (i < n) vec_silu_mul_f32_ref(g + i, u + i, n - i);
}

void vec_scores_f32_avx2(const float *q, const float *k, int stride, int n_keys, int d, float scale, float *out)
{
    for (int j = 0; j < n_keys; j++) out[j] = scale * vec_dot_f32_avx2(q, k + (size_t)j * stride, d);
}

/* Accumulates in registers, 4 registers (4*W values of the output) at a time over all n value rows, so each
 * output element is stored once. */
void vec_wsum_f32_avx2(const float *v, int stride, const float *w, int n, int d, float *out)
{
    int i = 0;
    for (; i + 4 * W <= d; i += 4 * W) {
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        for (int j = 0; j < n; j++) {
            const float *r = v + (size_t)j * stride + i;
            __m256 wj = _mm256_set1_ps(w[j]);
            a0 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(r), a0);
            a1 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(r + W), a1);
            a2 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(r + 2 * W), a2);
            a3 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(r + 3 * W), a3);
        }
        _mm256_storeu_ps(out + i, a0);
        _mm256_storeu_ps(out + i + W, a1);
        _mm256_storeu_ps(out + i + 2 * W, a2);
        _mm256_storeu_ps(out + i + 3 * W, a3);
    }
    for (; i + W <= d; i += W) {
        __m256 a0 = _mm256_setzero_ps();
        for (int j = 0; j < n; j++) a0 = _mm256_fmadd_ps(_mm256_set1_ps(w[j]), _mm256_loadu_ps(v + (size_t)j * stride + i), a0);
        _mm256_storeu_ps(out + i, a0);
    }
    for (; i < d; i++) {
        float a = 0;
        for (int j = 0; j < n; j++) a += w[j] * v[(size_t)j * stride + i];
        out[i] = a;
    }
}
