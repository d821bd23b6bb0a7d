/*
 * vec.h: float32 vector primitives for the parts of the forward pass that are not matrix products: attention
 * (q·k dot products and weighted sums of values), norms and the gated activations. Each has a scalar version
 * (vec.c) and AVX2 / AVX-512 versions picked at run time, like the matrix kernels.
 */
#ifndef BANTER_TENSOR_VEC_H
#define BANTER_TENSOR_VEC_H

/* sum_i a[i] * b[i] */
float vec_dot_f32(const float *a, const float *b, int n);
/* y[i] += alpha * x[i] */
void vec_axpy_f32(float *y, const float *x, float alpha, int n);
/* g[i] = gelu_tanh(g[i]) * u[i]  (the GeGLU gate) */
void vec_gelu_mul_f32(float *g, const float *u, int n);
/* g[i] = silu(g[i]) * u[i]  (the SwiGLU gate) */
void vec_silu_mul_f32(float *g, const float *u, int n);

/* out[j] = scale * dot(q, k + j*stride) for j < n_keys: the attention scores of one query against a run of cached
 * keys (rows `stride` floats apart). */
void vec_scores_f32(const float *q, const float *k, int stride, int n_keys, int d, float scale, float *out);
/* out[i] = sum_j w[j] * v[j*stride + i] for i < d: the attention-weighted sum of cached values. */
void vec_wsum_f32(const float *v, int stride, const float *w, int n, int d, float *out);

/* Scalar versions, the reference for tests. */
void vec_scores_f32_ref(const float *q, const float *k, int stride, int n_keys, int d, float scale, float *out);
void vec_wsum_f32_ref(const float *v, int stride, const float *w, int n, int d, float *out);
float vec_dot_f32_ref(const float *a, const float *b, int n);
void vec_axpy_f32_ref(float *y, const float *x, float alpha, int n);
void vec_gelu_mul_f32_ref(float *g, const float *u, int n);
void vec_silu_mul_f32_ref(float *g, const float *u, int n);

/* Per-level implementations (vec_avx2.c, vec_avx512.c). */
float vec_dot_f32_avx2(const float *a, const float *b, int n);
void vec_axpy_f32_avx2(float *y, const float *x, float alpha, int n);
void vec_gelu_mul_f32_avx2(float *g, const float *u, int n);
void vec_silu_mul_f32_avx2(float *g, const float *u, int n);
void vec_scores_f32_avx2(const float *q, const float *k, int stride, int n_keys, int d, float scale, float *out);
void vec_wsum_f32_avx2(const float *v, int stride, const float *w, int n, int d, float *out);
float vec_dot_f32_avx512(const float *a, const float *b, int n);
void vec_axpy_f32_avx512(float *y, const float *x, float alpha, int n);
void vec_gelu_mul_f32_avx512(float *g, const float *u, int n);
void vec_silu_mul_f32_avx512(float *g, const float *u, int n);
void vec_scores_f32_avx512(const float *q, const float *k, int stride, int n_keys, int d, float scale, float *out);
void vec_wsum_f32_avx512(const float *v, int stride, const float *w, int n, int d, float *out);

#endif
