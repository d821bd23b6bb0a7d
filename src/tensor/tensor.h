/*
 * tensor.h: weight formats and the kernels that multiply by them.
 *
 * Types carry ggml's numeric ids, because GGUF stores those ids. Block layouts are bit-identical to ggml's
 * (a block of `blck` values stored in `size` bytes, little-endian):
 *
 *   F32   1 value   4 bytes
 *   F16   1 value   2 bytes (IEEE half)
 *   BF16  1 value   2 bytes (upper half of an f32)
 *   Q8_0  32 values 34 bytes: f16 d; int8 qs[32]                      x = d * q
 *   Q4_0  32 values 18 bytes: f16 d; uint8 qs[16]                     x = d * (nibble - 8); value j < 16 is the
 *                                                                      low nibble of qs[j], j >= 16 the high one
 *   Q4_K  256 values 144 bytes: f16 d, f16 dmin, uint8 scales[12] (8 six-bit scales and 8 six-bit mins),
 *                               uint8 qs[128]                          x = d*sc*q - dmin*m per 32-value group
 *   Q6_K  256 values 210 bytes: uint8 ql[128], uint8 qh[64], int8 scales[16], f16 d   x = d * sc * (q - 32)
 *   Q8_K  256 values 292 bytes: f32 d; int8 qs[256]; int16 bsums[16]  (activations only)
 *
 * Matrix products follow llama.cpp's scheme: the activation row is first converted to the weight type's
 * "vec_dot_type" (Q8_0 for Q8_0/Q4_0, Q8_K for K-quants, F32 for float weights), then every weight row is dotted
 * with it using integer arithmetic where possible. This is both the fast path and what the reference dumps were
 * computed with, so results agree closely.
 *
 * Every kernel has a plain scalar version (tensor.c) which is the reference the SIMD versions (*_avx2.c,
 * *_avx512.c) are tested against. The level is picked at run time from CPUID (core_cpu_level).
 */
#ifndef BANTER_TENSOR_H
#define BANTER_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pool;

enum tensor_type {
    TENSOR_F32 = 0,
    TENSOR_F16 = 1,
    TENSOR_Q4_0 = 2,
    TENSOR_Q4_1 = 3,
    TENSOR_Q5_0 = 6,
    TENSOR_Q5_1 = 7,
    TENSOR_Q8_0 = 8,
    TENSOR_Q8_1 = 9,
    TENSOR_Q2_K = 10,
    TENSOR_Q3_K = 11,
    TENSOR_Q4_K = 12,
    TENSOR_Q5_K = 13,
    TENSOR_Q6_K = 14,
    TENSOR_Q8_K = 15,
    TENSOR_IQ2_XXS = 16,
    TENSOR_IQ2_XS = 17,
    TENSOR_IQ3_XXS = 18,
    TENSOR_IQ1_S = 19,
    TENSOR_IQ4_NL = 20,
    TENSOR_IQ3_S = 21,
    TENSOR_IQ2_S = 22,
    TENSOR_IQ4_XS = 23,
    TENSOR_I8 = 24,
    TENSOR_I16 = 25,
    TENSOR_I32 = 26,
    TENSOR_I64 = 27,
    TENSOR_F64 = 28,
    TENSOR_IQ1_M = 29,
    TENSOR_BF16 = 30,
    TENSOR_TQ1_0 = 34,
    TENSOR_TQ2_0 = 35,
    TENSOR_MXFP4 = 39,
    TENSOR_N_TYPES = 40
};

struct block_q8_0 {
    uint16_t d;
    int8_t qs[32];
};
struct block_q4_0 {
    uint16_t d;
    uint8_t qs[16];
};
struct block_q4_k {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qs[128];
};
struct block_q6_k {
    uint8_t ql[128];
    uint8_t qh[64];
    int8_t scales[16];
    uint16_t d;
};
struct block_q8_k {
    float d;
    int8_t qs[256];
    int16_t bsums[16];
};

struct tensor_traits {
    const char *name; /* "Q8_0"; NULL for ids that ggml never assigned or retired */
    int64_t blck;     /* values per block */
    size_t size;      /* bytes per block */
    bool supported;   /* Banter can compute with it (dequantize and multiply) */
    enum tensor_type vec_dot_type;
};

/* Traits of a type id; NULL if the id is out of range or unassigned. */
const struct tensor_traits *tensor_traits(uint32_t type);
const char *tensor_type_name(uint32_t type); /* "?" if unknown */

/* Bytes of a row of n values (n must be a multiple of the block size; returns 0 otherwise or if unknown). */
size_t tensor_row_size(uint32_t type, int64_t n);

/* Half and bfloat conversions (scalar, exact round-to-nearest-even for f32 -> f16/bf16). */
float tensor_f16_to_f32(uint16_t h);
uint16_t tensor_f32_to_f16(float f);
float tensor_bf16_to_f32(uint16_t h);
uint16_t tensor_f32_to_bf16(float f);

/* Converts n values (a multiple of the block size) of a supported type to float. */
void tensor_dequantize(uint32_t type, const void *src, float *dst, int64_t n);

/* Quantizes n floats to a supported type with ggml's reference quantizer (the same rounding, so files written
 * by `banter model synth` match what llama.cpp's quantize tool would produce). Q8_K included (activations). */
void tensor_quantize(uint32_t type, const float *src, void *dst, int64_t n);

/* A weight matrix: n_rows rows of n_cols values each, rows `row_bytes` apart. */
struct tensor_mat {
    uint32_t type;
    int64_t n_cols;
    int64_t n_rows;
    size_t row_bytes;
    const void *data;
};

/* Bytes needed to hold n_tok activation rows of n_cols values converted to w's vec_dot_type. */
size_t tensor_act_size(const struct tensor_mat *w, int n_tok);

/* Converts activation rows x ([n_tok, n_cols] floats, rows x_stride floats apart) to w's vec_dot_type in xq
 * (rows tensor_row_size(vec_dot_type, n_cols) bytes apart). Rows are split over ith/nth. */
void tensor_act_convert(const struct tensor_mat *w, const float *x, size_t x_stride, int n_tok, void *xq, int ith,
                        int nth);

/* y[t*y_stride + r] = dot(W row r, activation row t) for t < n_tok and r in [r0, r1). xq as produced by
 * tensor_act_convert. Picks the best kernel for the CPU and processes several activation rows per weight-row
 * load when n_tok > 1. */
void tensor_matmul_rows(const struct tensor_mat *w, const void *xq, int n_tok, float *y, size_t y_stride,
                        int64_t r0, int64_t r1);

/* Convenience: the whole product on a pool (convert, barrier, rows split evenly), using scratch of
 * tensor_act_size bytes. */
void tensor_matmul(struct pool *pool, const struct tensor_mat *w, const float *x, size_t x_stride, int n_tok,
                   float *y, size_t y_stride, void *scratch);

/* Scalar reference of one dot product (weights in w's type, activation in its vec_dot_type), for tests. */
float tensor_vec_dot_ref(uint32_t type, int64_t n, const void *wrow, const void *xq);

#endif
