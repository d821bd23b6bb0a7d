/*
 * tensor.c: the type table, half/bfloat conversions, ggml's reference quantizers, dequantization, the scalar
 * reference dot products, and run-time dispatch of the matrix kernels.
 *
 * The table covers every type id ggml has assigned, so the GGUF reader can size any tensor, but only the
 * types marked `supported` can be computed with. The scalar kernels here are written for clarity: they are
 * what the SIMD kernels in tensor_avx2.c and tensor_avx512.c are tested against, and what runs on a CPU
 * without AVX2.
 */
#include "tensor/tensor.h"
#include "core/core.h"
#include "core/pool.h"
#include "tensor/tensor_kern.h"

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
    if (x >= 0x477ff000) return sign | 0x7c00;                                /* >= 65520 rounds to inf */
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

/* ------------------------------------------------------------------------------------------------------------
 * Block field access. Blocks inside a GGUF file are packed (a Q8_0 block is 34 bytes), so the 16- and 32-bit
 * fields are read and written through memcpy rather than through struct pointers.
 */

static inline float ld_f16(const void *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return tensor_f16_to_f32(h);
}

static inline void st_f16(void *p, float f)
{
    uint16_t h = tensor_f32_to_f16(f);
    memcpy(p, &h, 2);
}

static inline float ld_f32(const void *p)
{
    float f;
    memcpy(&f, p, 4);
    return f;
}

static inline int16_t ld_i16(const void *p)
{
    int16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* ggml's nearest_int: round half to even through the 1.5*2^23 trick (valid for |f| < 2^22). */
static inline int nearest_int(float f)
{
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}

#define QK 32
#define QKK 256
#define OFF_Q4K_QS 16
#define OFF_Q6K_QH 128
#define OFF_Q6K_SC 192
#define OFF_Q6K_D 208
#define OFF_Q8K_BSUMS 260

/* Unpacks the 6-bit scale and min of group j (0..7) of a Q4_K block. */
static inline void q4k_scale_min(int j, const uint8_t *s, int *sc, int *m)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* ------------------------------------------------------------------------------------------------------------
 * Dequantization.
 */

static void dequant_q8_0(const uint8_t *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, b += 34, y += QK) {
        float d = ld_f16(b);
        const int8_t *q = (const int8_t *)(b + 2);
        for (int j = 0; j < QK; j++)
            y[j] = d * (float)q[j];
    }
}

static void dequant_q4_0(const uint8_t *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, b += 18, y += QK) {
        float d = ld_f16(b);
        const uint8_t *q = b + 2;
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)((q[j] & 0xf) - 8);
            y[j + 16] = d * (float)((q[j] >> 4) - 8);
        }
    }
}

static void dequant_q4_k(const uint8_t *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, b += 144) {
        float d = ld_f16(b), dmin = ld_f16(b + 2);
        const uint8_t *s = b + 4, *q = b + OFF_Q4K_QS;
        for (int j = 0; j < 4; j++, q += 32) {
            int sc0, m0, sc1, m1;
            q4k_scale_min(2 * j, s, &sc0, &m0);
            q4k_scale_min(2 * j + 1, s, &sc1, &m1);
            float d0 = d * (float)sc0, mm0 = dmin * (float)m0, d1 = d * (float)sc1, mm1 = dmin * (float)m1;
            for (int l = 0; l < 32; l++)
                *y++ = d0 * (float)(q[l] & 0xf) - mm0;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * (float)(q[l] >> 4) - mm1;
        }
    }
}

static void dequant_q6_k(const uint8_t *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, b += 210) {
        float d = ld_f16(b + OFF_Q6K_D);
        const uint8_t *ql = b, *qh = b + OFF_Q6K_QH;
        const int8_t *sc = (const int8_t *)(b + OFF_Q6K_SC);
        for (int n = 0; n < 2; n++, ql += 64, qh += 32, sc += 8, y += 128) {
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * (float)sc[is + 0] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}

static void dequant_q8_k(const uint8_t *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, b += 292, y += QKK) {
        float d = ld_f32(b);
        const int8_t *q = (const int8_t *)(b + 4);
        for (int j = 0; j < QKK; j++)
            y[j] = d * (float)q[j];
    }
}

void tensor_dequantize(uint32_t type, const void *src, float *dst, int64_t n)
{
    const struct tensor_traits *t = tensor_traits(type);
    BANTER_ASSERT(t && t->supported && n % t->blck == 0);
    const uint8_t *b = src;
    int64_t nb = n / t->blck;
    switch (type) {
    case TENSOR_F32:
        memmove(dst, src, (size_t)n * sizeof(float));
        break;
    case TENSOR_F16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = ld_f16(b + 2 * i);
        break;
    case TENSOR_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, b + 2 * i, 2);
            dst[i] = tensor_bf16_to_f32(h);
        }
        break;
    case TENSOR_Q8_0:
        dequant_q8_0(b, dst, nb);
        break;
    case TENSOR_Q4_0:
        dequant_q4_0(b, dst, nb);
        break;
    case TENSOR_Q4_K:
        dequant_q4_k(b, dst, nb);
        break;
    case TENSOR_Q6_K:
        dequant_q6_k(b, dst, nb);
        break;
    case TENSOR_Q8_K:
        dequant_q8_k(b, dst, nb);
        break;
    default:
        BANTER_ASSERT(!"unsupported type");
    }
}

/* ------------------------------------------------------------------------------------------------------------
 * Reference quantizers: the same arithmetic as ggml's quantize_row_*_ref, so that the bytes agree.
 */

static void quant_q8_0(const float *x, uint8_t *b, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += QK, b += 34) {
        float amax = 0;
        for (int j = 0; j < QK; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.f, id = d ? 1.f / d : 0.f;
        st_f16(b, d);
        for (int j = 0; j < QK; j++)
            b[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
    }
}

static void quant_q4_0(const float *x, uint8_t *b, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += QK, b += 18) {
        float amax = 0, max = 0;
        for (int j = 0; j < QK; j++) {
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        float d = max / -8.f, id = d ? 1.f / d : 0.f;
        st_f16(b, d);
        for (int j = 0; j < 16; j++) {
            /* x*id lies in [-8, 8], so the truncating conversion of x*id + 8.5 rounds to 0..16. */
            int q0 = (int)(int8_t)(x[j] * id + 8.5f), q1 = (int)(int8_t)(x[j + 16] * id + 8.5f);
            q0 = q0 < 15 ? q0 : 15;
            q1 = q1 < 15 ? q1 : 15;
            b[2 + j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* ggml's make_qkx2_quants: a scale and a (non-positive) min for n values, searched over nstep+1 candidate
 * scales around the min/max fit, minimising the weighted squared error. Returns the scale, stores -min. */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min,
                              uint8_t *Laux, float rmin, float rdelta, int nstep)
{
    float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = (float)nmax / (max - min), scale = 1 / iscale, best_error = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
        float diff = scale * L[i] + min - x[i];
        best_error += w[i] * diff * diff;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * (x[i] - min));
            l = l < 0 ? 0 : l > nmax ? nmax : l;
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * (float)l;
            sum_l2 += w[i] * (float)l * (float)l;
            sum_xl += w[i] * (float)l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                cur_error += w[i] * diff * diff;
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

static void quant_q4_k(const float *x, uint8_t *b, int64_t nb)
{
    uint8_t L[QKK], Laux[32];
    float weights[32], mins[8], scales[8];
    for (int64_t i = 0; i < nb; i++, x += QKK, b += 144) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < 8; j++) {
            const float *xj = x + 32 * j;
            float sum_x2 = 0;
            for (int l = 0; l < 32; l++)
                sum_x2 += xj[l] * xj[l];
            float av_x = sqrtf(sum_x2 / 32);
            for (int l = 0; l < 32; l++)
                weights[l] = av_x + fabsf(xj[l]);
            scales[j] = make_qkx2_quants(32, 15, xj, weights, L + 32 * j, &mins[j], Laux, -1.f, 0.1f, 20);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
        float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
        uint8_t *s = b + 4;
        memset(s, 0, 12);
        for (int j = 0; j < 8; j++) {
            int ls = nearest_int(inv_scale * scales[j]), lm = nearest_int(inv_min * mins[j]);
            ls = ls < 63 ? ls : 63;
            lm = lm < 63 ? lm : 63;
            if (j < 4) {
                s[j] = (uint8_t)ls;
                s[j + 4] = (uint8_t)lm;
            } else {
                s[j + 4] = (uint8_t)((ls & 0xf) | ((lm & 0xf) << 4));
                s[j - 4] |= (uint8_t)((ls >> 4) << 6);
                s[j] |= (uint8_t)((lm >> 4) << 6);
            }
        }
        st_f16(b, max_scale / 63.f);
        st_f16(b + 2, max_min / 63.f);
        float d_all = ld_f16(b), dmin_all = ld_f16(b + 2);
        for (int j = 0; j < 8; j++) {
            int sc, m;
            q4k_scale_min(j, s, &sc, &m);
            float d = d_all * (float)sc;
            if (!d) continue;
            float dm = dmin_all * (float)m;
            for (int l = 0; l < 32; l++) {
                int q = nearest_int((x[32 * j + l] + dm) / d);
                L[32 * j + l] = (uint8_t)(q < 0 ? 0 : q > 15 ? 15 : q);
            }
        }
        uint8_t *q = b + OFF_Q4K_QS;
        for (int j = 0; j < QKK; j += 64, q += 32)
            for (int l = 0; l < 32; l++)
                q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

#define GROUP_MAX_EPS 1e-15f

/* ggml's make_qx_quants with rmse_type 1 (weights x^2) and no importance: a symmetric scale for n values in
 * [-nmax, nmax-1], refined over 18 nearby candidates. Stores L = q + nmax. */
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L)
{
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -(float)nmax / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * x[i]);
        l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f, best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * x[i]);
            l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
            float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                int l = nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + (l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

static void quant_q6_k(const float *x, uint8_t *b, int64_t nb)
{
    int8_t L[QKK];
    float scales[16];
    for (int64_t i = 0; i < nb; i++, x += QKK, b += 210) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < 16; ib++) {
            scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            if (fabsf(scales[ib]) > max_abs_scale) {
                max_abs_scale = fabsf(scales[ib]);
                max_scale = scales[ib];
            }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(b, 0, 210);
            continue;
        }
        float iscale = -128.f / max_scale;
        st_f16(b + OFF_Q6K_D, 1 / iscale);
        int8_t *sc = (int8_t *)(b + OFF_Q6K_SC);
        for (int ib = 0; ib < 16; ib++) {
            int v = nearest_int(iscale * scales[ib]);
            sc[ib] = (int8_t)(v < 127 ? v : 127);
        }
        float dd = ld_f16(b + OFF_Q6K_D);
        for (int j = 0; j < 16; j++) {
            float d = dd * (float)sc[j];
            if (!d) continue;
            for (int l = 0; l < 16; l++) {
                int q = nearest_int(x[16 * j + l] / d);
                q = q < -32 ? -32 : q > 31 ? 31 : q;
                L[16 * j + l] = (int8_t)(q + 32);
            }
        }
        uint8_t *ql = b, *qh = b + OFF_Q6K_QH;
        for (int j = 0; j < QKK; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; l++) {
                uint8_t q1 = L[j + l] & 0xf, q2 = L[j + l + 32] & 0xf, q3 = L[j + l + 64] & 0xf,
                        q4 = L[j + l + 96] & 0xf;
                ql[l] = (uint8_t)(q1 | (q3 << 4));
                ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
                qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                  ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
            }
        }
    }
}

static void quant_q8_k(const float *x, uint8_t *b, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += QKK, b += 292) {
        float max = 0, amax = 0;
        for (int j = 0; j < QKK; j++) {
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        int8_t *q = (int8_t *)(b + 4);
        if (!amax) {
            memset(b, 0, 292);
            continue;
        }
        /* -127 rather than -128 keeps every quant in [-127, 127], as ggml does. */
        float iscale = -127.f / max;
        for (int j = 0; j < QKK; j++) {
            int v = nearest_int(iscale * x[j]);
            q[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < 16; j++) {
            int16_t sum = 0;
            for (int l = 0; l < 16; l++)
                sum = (int16_t)(sum + q[16 * j + l]);
            memcpy(b + OFF_Q8K_BSUMS + 2 * j, &sum, 2);
        }
        float d = 1 / iscale;
        memcpy(b, &d, 4);
    }
}

void tensor_quantize(uint32_t type, const float *src, void *dst, int64_t n)
{
    const struct tensor_traits *t = tensor_traits(type);
    BANTER_ASSERT(t && t->supported && n % t->blck == 0);
    uint8_t *b = dst;
    int64_t nb = n / t->blck;
    switch (type) {
    case TENSOR_F32:
        memmove(dst, src, (size_t)n * sizeof(float));
        break;
    case TENSOR_F16:
        for (int64_t i = 0; i < n; i++)
            st_f16(b + 2 * i, src[i]);
        break;
    case TENSOR_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = tensor_f32_to_bf16(src[i]);
            memcpy(b + 2 * i, &h, 2);
        }
        break;
    case TENSOR_Q8_0:
        quant_q8_0(src, b, nb);
        break;
    case TENSOR_Q4_0:
        quant_q4_0(src, b, nb);
        break;
    case TENSOR_Q4_K:
        quant_q4_k(src, b, nb);
        break;
    case TENSOR_Q6_K:
        quant_q6_k(src, b, nb);
        break;
    case TENSOR_Q8_K:
        quant_q8_k(src, b, nb);
        break;
    default:
        BANTER_ASSERT(!"unsupported type");
    }
}

/* ------------------------------------------------------------------------------------------------------------
 * Activation conversion.
 *
 * Q8_0 activations follow llama.cpp's x86 quantize_row_q8_0 rather than the _ref version, because the
 * reference logits were computed with it: id = 127/amax (not 1/d) and round-half-to-even (not away from
 * zero). The two differ in a last-bit tie at most. Q8_K uses ggml's reference quantizer, which is also what
 * llama.cpp runs on x86.
 */

static void act_q8_0(const float *x, uint8_t *b, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += QK, b += 34) {
        float amax = 0;
        for (int j = 0; j < QK; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.f, id = amax != 0.f ? 127.f / amax : 0.f;
        st_f16(b, d);
        for (int j = 0; j < QK; j++)
            b[2 + j] = (uint8_t)(int8_t)(int)rintf(x[j] * id);
    }
}

static void act_row(uint32_t vdt, const float *x, void *dst, int64_t n)
{
    switch (core_cpu_level()) {
    case CORE_CPU_AVX512:
        if (tensor_act_row_avx512(vdt, x, dst, n)) return;
        /* fall through */
    case CORE_CPU_AVX2:
        if (tensor_act_row_avx2(vdt, x, dst, n)) return;
        /* fall through */
    default:
        break;
    }
    switch (vdt) {
    case TENSOR_F32:
        memcpy(dst, x, (size_t)n * sizeof(float));
        break;
    case TENSOR_Q8_0:
        act_q8_0(x, dst, n / QK);
        break;
    case TENSOR_Q8_K:
        quant_q8_k(x, dst, n / QKK);
        break;
    default:
        BANTER_ASSERT(!"no activation format");
    }
}

size_t tensor_act_size(const struct tensor_mat *w, int n_tok)
{
    const struct tensor_traits *t = tensor_traits(w->type);
    BANTER_ASSERT(t && t->supported);
    return (size_t)n_tok * tensor_row_size(t->vec_dot_type, w->n_cols);
}

void tensor_act_convert(const struct tensor_mat *w, const float *x, size_t x_stride, int n_tok, void *xq,
                        int ith, int nth)
{
    const struct tensor_traits *t = tensor_traits(w->type);
    BANTER_ASSERT(t && t->supported);
    size_t rs = tensor_row_size(t->vec_dot_type, w->n_cols);
    BANTER_ASSERT(rs);
    int t0 = (int)((int64_t)n_tok * ith / nth), t1 = (int)((int64_t)n_tok * (ith + 1) / nth);
    for (int i = t0; i < t1; i++)
        act_row(t->vec_dot_type, x + (size_t)i * x_stride, (uint8_t *)xq + i * rs, w->n_cols);
}

/* ------------------------------------------------------------------------------------------------------------
 * Scalar reference dot products: exact integer sums per block, then one float multiply-add per block.
 */

static float dot_q8_0(int64_t nb, const uint8_t *w, const uint8_t *x)
{
    float sum = 0;
    for (int64_t i = 0; i < nb; i++, w += 34, x += 34) {
        const int8_t *a = (const int8_t *)(w + 2), *b = (const int8_t *)(x + 2);
        int s = 0;
        for (int j = 0; j < QK; j++)
            s += a[j] * b[j];
        sum += (float)s * (ld_f16(w) * ld_f16(x));
    }
    return sum;
}

static float dot_q4_0(int64_t nb, const uint8_t *w, const uint8_t *x)
{
    float sum = 0;
    for (int64_t i = 0; i < nb; i++, w += 18, x += 34) {
        const int8_t *b = (const int8_t *)(x + 2);
        int s = 0;
        for (int j = 0; j < 16; j++)
            s += ((w[2 + j] & 0xf) - 8) * b[j] + ((w[2 + j] >> 4) - 8) * b[j + 16];
        sum += (float)s * (ld_f16(w) * ld_f16(x));
    }
    return sum;
}

static float dot_q4_k(int64_t nb, const uint8_t *w, const uint8_t *x)
{
    float sum = 0;
    for (int64_t i = 0; i < nb; i++, w += 144, x += 292) {
        const uint8_t *q = w + OFF_Q4K_QS;
        const int8_t *b = (const int8_t *)(x + 4);
        int isum = 0, msum = 0;
        for (int g = 0; g < 8; g++) {
            int sc, m;
            q4k_scale_min(g, w + 4, &sc, &m);
            const uint8_t *qg = q + 32 * (g / 2);
            int shift = (g & 1) * 4, s = 0;
            for (int l = 0; l < 32; l++)
                s += ((qg[l] >> shift) & 0xf) * b[32 * g + l];
            isum += sc * s;
            msum += m * (ld_i16(x + OFF_Q8K_BSUMS + 4 * g) + ld_i16(x + OFF_Q8K_BSUMS + 4 * g + 2));
        }
        float dx = ld_f32(x);
        sum += ld_f16(w) * dx * (float)isum - ld_f16(w + 2) * dx * (float)msum;
    }
    return sum;
}

static float dot_q6_k(int64_t nb, const uint8_t *w, const uint8_t *x)
{
    float sum = 0;
    int8_t q[QKK];
    for (int64_t i = 0; i < nb; i++, w += 210, x += 292) {
        const uint8_t *ql = w, *qh = w + OFF_Q6K_QH;
        for (int n = 0; n < QKK; n += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; l++) {
                q[n + l] = (int8_t)(((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32);
                q[n + l + 32] = (int8_t)(((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32);
                q[n + l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                q[n + l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
        }
        const int8_t *sc = (const int8_t *)(w + OFF_Q6K_SC), *b = (const int8_t *)(x + 4);
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            int s = 0;
            for (int l = 0; l < 16; l++)
                s += q[16 * j + l] * b[16 * j + l];
            isum += sc[j] * s;
        }
        sum += ld_f16(w + OFF_Q6K_D) * ld_f32(x) * (float)isum;
    }
    return sum;
}

static float dot_q8_k(int64_t nb, const uint8_t *w, const uint8_t *x)
{
    float sum = 0;
    for (int64_t i = 0; i < nb; i++, w += 292, x += 292) {
        const int8_t *a = (const int8_t *)(w + 4), *b = (const int8_t *)(x + 4);
        int s = 0;
        for (int j = 0; j < QKK; j++)
            s += a[j] * b[j];
        sum += ld_f32(w) * ld_f32(x) * (float)s;
    }
    return sum;
}

float tensor_vec_dot_ref(uint32_t type, int64_t n, const void *wrow, const void *xq)
{
    const struct tensor_traits *t = tensor_traits(type);
    BANTER_ASSERT(t && t->supported && n % t->blck == 0);
    const uint8_t *w = wrow;
    const float *x = xq;
    int64_t nb = n / t->blck;
    float sum = 0;
    switch (type) {
    case TENSOR_F32:
        for (int64_t i = 0; i < n; i++)
            sum += ld_f32(w + 4 * i) * x[i];
        return sum;
    case TENSOR_F16:
        for (int64_t i = 0; i < n; i++)
            sum += ld_f16(w + 2 * i) * x[i];
        return sum;
    case TENSOR_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, w + 2 * i, 2);
            sum += tensor_bf16_to_f32(h) * x[i];
        }
        return sum;
    case TENSOR_Q8_0:
        return dot_q8_0(nb, w, xq);
    case TENSOR_Q4_0:
        return dot_q4_0(nb, w, xq);
    case TENSOR_Q4_K:
        return dot_q4_k(nb, w, xq);
    case TENSOR_Q6_K:
        return dot_q6_k(nb, w, xq);
    case TENSOR_Q8_K:
        return dot_q8_k(nb, w, xq);
    default:
        BANTER_ASSERT(!"unsupported type");
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------------------------
 * Matrix products.
 */

void tensor_matmul_rows(const struct tensor_mat *w, const void *xq, int n_tok, float *y, size_t y_stride,
                        int64_t r0, int64_t r1)
{
    if (r0 >= r1 || n_tok <= 0) return;
    switch (core_cpu_level()) {
    case CORE_CPU_AVX512:
        if (tensor_matmul_rows_avx512(w, xq, n_tok, y, y_stride, r0, r1)) return;
        /* fall through */
    case CORE_CPU_AVX2:
        if (tensor_matmul_rows_avx2(w, xq, n_tok, y, y_stride, r0, r1)) return;
        /* fall through */
    default:
        break;
    }
    const struct tensor_traits *t = tensor_traits(w->type);
    BANTER_ASSERT(t && t->supported);
    size_t xs = tensor_row_size(t->vec_dot_type, w->n_cols);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *wr = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
        for (int i = 0; i < n_tok; i++)
            y[(size_t)i * y_stride + (size_t)r] =
                tensor_vec_dot_ref(w->type, w->n_cols, wr, (const uint8_t *)xq + i * xs);
    }
}

struct matmul_job {
    struct pool *pool;
    const struct tensor_mat *w;
    const float *x;
    size_t x_stride;
    int n_tok;
    float *y;
    size_t y_stride;
    void *xq;
};

/* Rows are split into nth contiguous slices of a multiple of 16 rows, so each thread streams its own part of
 * the weights and no two threads write the same cache line of y (for y rows aligned to 64 bytes). */
static void matmul_slice(const struct matmul_job *j, int ith, int nth)
{
    int64_t n = j->w->n_rows, chunk = (n + nth - 1) / nth;
    chunk = (chunk + 15) & ~(int64_t)15;
    int64_t r0 = chunk * ith, r1 = r0 + chunk < n ? r0 + chunk : n;
    if (r0 < r1) tensor_matmul_rows(j->w, j->xq, j->n_tok, j->y, j->y_stride, r0, r1);
}

static void matmul_fn(void *arg, int ith, int nth)
{
    const struct matmul_job *j = arg;
    tensor_act_convert(j->w, j->x, j->x_stride, j->n_tok, j->xq, ith, nth);
    pool_barrier(j->pool);
    matmul_slice(j, ith, nth);
}

void tensor_matmul(struct pool *pool, const struct tensor_mat *w, const float *x, size_t x_stride, int n_tok,
                   float *y, size_t y_stride, void *scratch)
{
    struct matmul_job j = {pool, w, x, x_stride, n_tok, y, y_stride, scratch};
    if (!pool || pool_n_threads(pool) == 1) {
        tensor_act_convert(w, x, x_stride, n_tok, scratch, 0, 1);
        matmul_slice(&j, 0, 1);
        return;
    }
    pool_run(pool, matmul_fn, &j);
}
