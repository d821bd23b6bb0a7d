/*
 * tensor.c: the type table, half/bfloat conversions, ggml's reference quantizers, dequantization, the scalar
 * reference dot products, and run-time dispatch of the matrix kernels.
 *
 * The table covers every type id ggml has assigned, so the GGUF reader can size any tensor, but only the types
 * marked `supported` can be computed with. The scalar kernels here are written for clarity: they are what the
 * SIMD kernels in tensor_avx2.c and tensor_avx512.c are tested against, and what runs on a CPU without AVX2.
 */
#include "tensor/tensor.h"
#include "core/core.h"

#include <math.h>
#include <string.h>

#define T_ENTRY(id, nm, b, sz, sup, vdt) [id] = {nm, b, sz, sup, vdt}

static const struct tensor_traits g_traits[TENSOR_N_TYPES] = {
    T_ENTRY(TENSOR_F32, "F32", 1, 4, true, TENSOR_F32),
    T_ENTRY(TENSOR_F16, "F16", 1, 2, true, TENSOR_F32),
    T_ENTRY(TENSOR_Q4_0, "Q4_0", 32, 18, true, TENSOR_Q8_0),
    T_ENTRY(TENSOR_Q4_1, "Q4_1", 32, 20, false, TENSOR_Q8_1),
    T_ENTRY(TENSOR_Q5_0, "Q5_0", 32, 22, false, TENSOR_Q8_0),
    T_ENTRY(TENSOR_Q5_1, "Q5_1", 32, 24, false, TENSOR_Q8_1),
    T_ENTRY(TENSOR_Q8_0, "Q8_0", 32, 34, true, TENSOR_Q8_0),
    T_ENTRY(TENSOR_Q8_1, "Q8_1", 32, 36, false, TENSOR_Q8_1),
    T_ENTRY(TENSOR_Q2_K, "Q2_K", 256, 84, false, TENSOR_Q8_K),
    T_ENTRY(TENSOR_Q3_K, "Q3_K", 256, 110, false, TENSOR_Q8_K),
    T_ENTRY(TENSOR_Q4_K, "Q4_K", 256, 144, true, TENSOR_Q8_K),
    T_ENTRY(TENSOR_Q5_K, "Q5_K", 256, 176, false, TENSOR_Q8_K),
    T_ENTRY(TENSOR_Q6_K, "Q6_K", 256, 210, true, TENSOR_Q8_K),
    /* Q8_K is only ever an activation format; it is "supported" so it can be quantized and dequantized. */
    T_ENTRY(TENSOR_Q8_K, "Q8_K", 256, 292, true, TENSOR_Q8_K),
    T_ENTRY(TENSOR_IQ2_XXS, "IQ2_XXS", 256, 66, false, TENSOR_Q8_K),
    T_ENTRY(TENSOR_IQ2_XS, "IQ2_XS", 256, 74, false, TENSOR_Q8_K),
    T_ENTRY(TENSOR_IQ3_XXS, "IQ3_XXS", 256, 98, false, TENSOR_Q8_K),
    T_ENTRY(TENSOR_IQ1_S, "IQ1_S", 256, 50, false, TENSOR_Q8_K),
    T_ENTRY(TENSOR_IQ4_NL, "IQ4_NL", 32, 18, false, TENSOR_Q8_0),
    T_ENTRY(TENSOR_IQ3_S, "IQ3_S", 256, 110, false, TENSOR_Q8_K),
    T_ENTRY(TENSOR_IQ2_S, "IQ2_S", 256, 82, false, TENSOR_Q8_K),
    T_ENTRY(TENSOR_IQ4_XS, "IQ4_XS", 256, 136, false, TENSOR_Q8_K),
    T_ENTRY(TENSOR_I8, "I8", 1, 1, false, TENSOR_I8),
    T_ENTRY(TENSOR_I16, "I16", 1, 2, false, TENSOR_I16),
    T_ENTRY(TENSOR_I32, "I32", 1, 4, false, TENSOR_I32),
    T_ENTRY(TENSOR_I64, "I64", 1, 8, false, TENSOR_I64),
    T_ENTRY(TENSOR_F64, "F64", 1, 8, false, TENSOR_F64),
    T_ENTRY(TENSOR_IQ1_M, "IQ1_M", 256, 56, false, TENSOR_Q8_K),
    T_ENTRY(TENSOR_BF16, "BF16", 1, 2, true, TENSOR_F32),
    T_ENTRY(TENSOR_TQ1_0, "TQ1_0", 256, 54, false, TENSOR_Q8_K),
    T_ENTRY(TENSOR_TQ2_0, "TQ2_0", 256, 66, false, TENSOR_Q8_K),
    T_ENTRY(TENSOR_MXFP4, "MXFP4", 32, 17, false, TENSOR_Q8_0),
};

const struct tensor_traits *tensor_traits(uint32_t type)
{
    if (type >= TENSOR_N_TYPES || !g_traits[type].name) return NULL;
    return &g_traits[type];
}

const char *tensor_type_name(uint32_t type)
{
    const struct tensor_traits *t = tensor_traits(type);
    return t ? t->name : "?";
}

size_t tensor_row_size(uint32_t type, int64_t n)
{
    const struct tensor_traits *t = tensor_traits(type);
    if (!t || n < 0 || n % t->blck) return 0;
    size_t out;
    if (core_mul_overflow((size_t)(n / t->blck), t->size, &out)) return 0;
    return out;
}

/* ------------------------------------------------------------------------------------------------------------
 * Half and bfloat conversions.
 */

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float tensor_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000 | (mant << 13)); /* inf, NaN (payload kept) */
    if (exp == 0) {
        /* Zero or subnormal: mant * 2^-24, exact in f32. */
        float v = (float)mant * 0x1p-24f;
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t tensor_f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    x &= 0x7fffffff;
    if (x > 0x7f800000) return sign | 0x7e00 | (uint16_t)((x >> 13) & 0x3ff); /* NaN stays a (quiet) NaN */
    if (x >= 0x477ff000) return sign | 0x7c00;                                 /* >= 65520 rounds to inf */
    if (x < 0x38800000) {
        /* Below the smallest normal half (2^-14): the result is round(value * 2^24) as a subnormal. */
        if (x < 0x33000000) return sign; /* < 2^-25 (2^-25 itself ties to the even 0) */
        uint32_t e = x >> 23, m = (x & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* value * 2^24 = m * 2^(e - 126) */
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return sign | (uint16_t)r;
    }
    uint32_t h = (x - 0x38000000) >> 13, rem = x & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++; /* a carry into the exponent is still correct */
    return sign | (uint16_t)h;
}

float tensor_bf16_to_f32(uint16_t h)
{
    return bits_f32((uint32_t)h << 16);
}

uint16_t tensor_f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}
