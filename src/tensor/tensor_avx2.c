/*
 * tensor_avx2.c: AVX2 + FMA + F16C kernels, for x86-64 CPUs without AVX-512 VNNI.
 *
 * The structure follows tensor_avx512.c (tiles of weight rows by activation rows, one accumulator per pair,
 * the same summation order whatever the tile shape), with tiles sized for 16 ymm registers. Without VNNI,
 * bytes are multiplied with vpmaddubsw (unsigned times signed into saturating int16 pairs) and widened with
 * vpmaddwd: Q8_0: |w| times x with x's sign flipped where w < 0 (|w| <= 128, |x| <= 127: no saturation;
 * activations from tensor_act_convert never hold -128); Q4_0: nibble n = w + 8 times x, minus 8 * x (both
 * int16 sums fit); Q4_K, Q6_K: unsigned 4- and 6-bit values times x, scales applied by vpmaddwd, mins and the
 * -32 offset from Q8_K's bsums.
 */
#include "core/core.h"
#include "tensor/tensor_kern.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define ALWAYS_INLINE inline __attribute__((always_inline))

static ALWAYS_INLINE float f16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return _cvtsh_ss(v);
}

static ALWAYS_INLINE float ld32f(const uint8_t *p)
{
    float v;
    memcpy(&v, p, 4);
    return v;
}

static ALWAYS_INLINE float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static ALWAYS_INLINE int hsum_i32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* Weights are prefetched this far ahead of the rows being multiplied (see tensor_avx512.c). */
#define PF_DIST 8192

/* Matrix-vector products read several streams when each would still be at least this long (see drive). */
#define MV_SPLIT_MIN_BYTES (32 * 1024)

static ALWAYS_INLINE void prefetch(const uint8_t *p)
{
    _mm_prefetch((const char *)p + PF_DIST, _MM_HINT_T0);
}

/* Requests the first PF_DIST bytes of a weight stream that is about to be read: the kernels prefetch PF_DIST
 * ahead of what they read, so without this the start of every stream (and a forward pass hands out many short
 * ones) would wait for memory at full latency. */
static void warm(const uint8_t *p, size_t n)
{
    if (n > PF_DIST) n = PF_DIST;
    for (size_t off = 0; off < n; off += 64)
        _mm_prefetch((const char *)p + off, _MM_HINT_T0);
}

struct tile {
    const uint8_t *w;
    size_t wrb; /* bytes between the tile's weight rows */
    const uint8_t *x;
    size_t xrb;
    int64_t nb;
    float *y;
    size_t ys;  /* floats between tokens in y */
    size_t yrs; /* floats between the tile's rows in y */
};

typedef void (*tile_fn)(const struct tile *);

#define INST(K, R, T)                                                                                        \
    static void K##_##R##_##T(const struct tile *a)                                                          \
    {                                                                                                        \
        K##_tile(a, R, T);                                                                                   \
    }
#define INST_ROW(K, R) INST(K, R, 1) INST(K, R, 2) INST(K, R, 3) INST(K, R, 4)
#define TROW(K, R)                                                                                           \
    {                                                                                                        \
        K##_##R##_1, K##_##R##_2, K##_##R##_3, K##_##R##_4                                                   \
    }

/* As in tensor_avx512.c: token chunks that stay in L2, weight tiles outer inside a chunk. */
static void drive(tile_fn fns[][4], int rmax, int tmax, const struct tensor_mat *w, const uint8_t *xq,
                  size_t xrb, int n_tok, float *y, size_t ys, int64_t r0, int64_t r1, int64_t nb)
{
    const uint8_t *wd = w->data;
    if (n_tok == 1 && rmax > 1 && (size_t)(r1 - r0) * w->row_bytes >= (size_t)rmax * MV_SPLIT_MIN_BYTES) {
        /* Matrix-vector: the rows of a tile come from rmax distant parts of the range (see tensor_avx512.c).
         */
        int64_t q = (r1 - r0) / rmax;
        for (int i = 0; i < rmax; i++)
            warm(wd + (size_t)(r0 + i * q) * w->row_bytes, (size_t)q * w->row_bytes);
        for (int64_t r = r0; r < r0 + q; r++) {
            struct tile tl = {
                wd + (size_t)r * w->row_bytes, (size_t)q * w->row_bytes, xq, xrb, nb, y + r, ys, (size_t)q};
            fns[rmax - 1][0](&tl);
        }
        r0 += rmax * q;
    } else if (n_tok == 1) {
        warm(wd + (size_t)r0 * w->row_bytes, (size_t)(r1 - r0) * w->row_bytes);
    }
    int tchunk = (int)((256 * 1024) / (xrb ? xrb : 1));
    tchunk = tchunk < tmax ? tmax : tchunk - tchunk % tmax;
    for (int t0 = 0; t0 < n_tok; t0 += tchunk) {
        int t1 = n_tok - t0 < tchunk ? n_tok : t0 + tchunk;
        for (int64_t r = r0; r < r1; r += rmax) {
            int nr = r1 - r < rmax ? (int)(r1 - r) : rmax;
            for (int t = t0; t < t1; t += tmax) {
                int nt = t1 - t < tmax ? t1 - t : tmax;
                struct tile tl = {wd + (size_t)r * w->row_bytes,
                                  w->row_bytes,
                                  xq + (size_t)t * xrb,
                                  xrb,
                                  nb,
                                  y + (size_t)t * ys + (size_t)r,
                                  ys,
                                  1};
                fns[nr - 1][nt - 1](&tl);
            }
        }
    }
}

static ALWAYS_INLINE void store_tile(const struct tile *a, int R, int T, __m256 acc[4][4])
{
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            a->y[(size_t)t * a->ys + (size_t)r * a->yrs] = hsum(acc[r][t]);
}

static ALWAYS_INLINE void zero_tile(int R, int T, __m256 acc[4][4])
{
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            acc[r][t] = _mm256_setzero_ps();
}

/* ------------------------------------------------------------------------------------------------------------
 * Q8_0 and Q4_0 times Q8_0, one block per register.
 */

static ALWAYS_INLINE void q80_tile_gen(const struct tile *a, int R, int T, int q4)
{
    const size_t bs = q4 ? 18 : 34;
    const __m256i ones = _mm256_set1_epi16(1), lo4 = _mm256_set1_epi8(0x0f), eight = _mm256_set1_epi8(8);
    __m256 acc[4][4];
    zero_tile(R, T, acc);
    for (int64_t i = 0; i < a->nb; i++) {
        __m256i wv[4], wa[4];
        float wd[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *p = a->w + (size_t)r * a->wrb + (size_t)i * bs;
            prefetch(p);
            wd[r] = f16(p);
            if (q4) {
                __m128i q = _mm_loadu_si128((const __m128i *)(p + 2));
                wa[r] = _mm256_and_si256(
                    _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1), lo4);
            } else {
                wv[r] = _mm256_loadu_si256((const __m256i *)(p + 2));
                wa[r] = _mm256_sign_epi8(wv[r], wv[r]);
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const uint8_t *p = a->x + (size_t)t * a->xrb + (size_t)i * 34;
            __m256i xv = _mm256_loadu_si256((const __m256i *)(p + 2));
            float xd = f16(p);
            __m256i corr = q4 ? _mm256_maddubs_epi16(eight, xv) : _mm256_setzero_si256();
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                __m256i s16 = q4 ? _mm256_sub_epi16(_mm256_maddubs_epi16(wa[r], xv), corr)
                                 : _mm256_maddubs_epi16(wa[r], _mm256_sign_epi8(xv, wv[r]));
                __m256 s = _mm256_cvtepi32_ps(_mm256_madd_epi16(s16, ones));
                acc[r][t] = _mm256_fmadd_ps(s, _mm256_set1_ps(wd[r] * xd), acc[r][t]);
            }
        }
    }
    store_tile(a, R, T, acc);
}

static ALWAYS_INLINE void q80_tile(const struct tile *a, int R, int T)
{
    q80_tile_gen(a, R, T, 0);
}
static ALWAYS_INLINE void q40_tile(const struct tile *a, int R, int T)
{
    q80_tile_gen(a, R, T, 1);
}

// clang-format off
INST_ROW(q80, 1)
INST_ROW(q80, 2)
INST_ROW(q40, 1)
INST_ROW(q40, 2)
// clang-format on

/* ------------------------------------------------------------------------------------------------------------
 * Q4_K and Q6_K times Q8_K: one weight row at a time against up to 4 activation rows, 32 values per step,
 * so the unpacked weights of a step fit in registers next to the integer and float accumulators.
 */

static ALWAYS_INLINE __m256i sc_pair(int a, int b) /* int16 [a x8, b x8] */
{
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16((short)a)), _mm_set1_epi16((short)b),
                                   1);
}

static ALWAYS_INLINE void q4k_tile(const struct tile *a, int R, int T)
{
    (void)R; /* always 1 */
    const __m256i lo4 = _mm256_set1_epi8(0x0f);
    __m256 acc[4][4];
    zero_tile(1, T, acc);
    for (int64_t i = 0; i < a->nb; i++) {
        const uint8_t *b = a->w + (size_t)i * 144;
        prefetch(b);
        prefetch(b + 64);
        prefetch(b + 128);
        float d = f16(b), dmin = f16(b + 2);
        uint32_t s[3], u[4];
        memcpy(s, b + 4, 12);
        const uint32_t m6 = 0x3f3f3f3f, m4 = 0x0f0f0f0f, m2 = 0x03030303;
        u[0] = s[0] & m6;
        u[1] = (s[2] & m4) | (((s[0] >> 6) & m2) << 4);
        u[2] = s[1] & m6;
        u[3] = ((s[2] >> 4) & m4) | (((s[1] >> 6) & m2) << 4);
        uint8_t sc[8], mn[8];
        memcpy(sc, u, 8);
        memcpy(mn, u + 2, 8);
        __m256i isum[4];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            isum[t] = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * j));
            __m256i ql = _mm256_and_si256(q, lo4), qh = _mm256_and_si256(_mm256_srli_epi16(q, 4), lo4);
            __m256i s0 = _mm256_set1_epi16(sc[2 * j]), s1 = _mm256_set1_epi16(sc[2 * j + 1]);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                const uint8_t *x = a->x + (size_t)t * a->xrb + (size_t)i * 292 + 4 + 64 * j;
                __m256i p0 = _mm256_maddubs_epi16(ql, _mm256_loadu_si256((const __m256i *)x));
                __m256i p1 = _mm256_maddubs_epi16(qh, _mm256_loadu_si256((const __m256i *)(x + 32)));
                isum[t] = _mm256_add_epi32(
                    isum[t], _mm256_add_epi32(_mm256_madd_epi16(p0, s0), _mm256_madd_epi16(p1, s1)));
            }
        }
        __m128i m8 = _mm_loadl_epi64((const __m128i *)mn);
        __m256i mins = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8));
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const uint8_t *x = a->x + (size_t)t * a->xrb + (size_t)i * 292;
            float dx = ld32f(x);
            __m256i m = _mm256_madd_epi16(mins, _mm256_loadu_si256((const __m256i *)(x + 260)));
            acc[0][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_set1_ps(d * dx), acc[0][t]);
            acc[0][t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(m), _mm256_set1_ps(dmin * dx), acc[0][t]);
        }
    }
    store_tile(a, 1, T, acc);
}

static ALWAYS_INLINE void q6k_tile(const struct tile *a, int R, int T)
{
    (void)R;
    const __m256i lo4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(3);
    __m256 acc[4][4];
    zero_tile(1, T, acc);
    for (int64_t i = 0; i < a->nb; i++) {
        const uint8_t *b = a->w + (size_t)i * 210;
        prefetch(b);
        prefetch(b + 64);
        prefetch(b + 128);
        prefetch(b + 192);
        const int8_t *sc = (const int8_t *)(b + 192);
        float d = f16(b + 208);
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc));
        __m256i isum[4];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            /* Start at -32 * sum(scale * bsum): the offset of the stored 0..63 values. */
            const uint8_t *x = a->x + (size_t)t * a->xrb + (size_t)i * 292;
            __m256i c = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)(x + 260)));
            isum[t] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(c, 5));
        }
        for (int n = 0; n < 2; n++) {
            __m256i l0 = _mm256_loadu_si256((const __m256i *)(b + 64 * n));
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(b + 64 * n + 32));
            __m256i h = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * n));
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, lo4), _mm256_slli_epi16(_mm256_and_si256(h, m3), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, lo4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m3), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), lo4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m3), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), lo4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m3), 4));
            for (int k = 0; k < 4; k++) {
                int g = 8 * n + 2 * k;
                __m256i sv = sc_pair(sc[g], sc[g + 1]);
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                    const uint8_t *x = a->x + (size_t)t * a->xrb + (size_t)i * 292 + 4 + 128 * n + 32 * k;
                    __m256i p = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)x));
                    isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(p, sv));
                }
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            float dx = ld32f(a->x + (size_t)t * a->xrb + (size_t)i * 292);
            acc[0][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_set1_ps(d * dx), acc[0][t]);
        }
    }
    store_tile(a, 1, T, acc);
}

INST_ROW(q4k, 1)
INST_ROW(q6k, 1)

/* ------------------------------------------------------------------------------------------------------------
 * Float weights times F32 activations, 8 values per step; the last n % 8 values are added one by one.
 */

static ALWAYS_INLINE __m256 wload(const uint8_t *p, int kind)
{
    switch (kind) {
    case 0:
        return _mm256_loadu_ps((const float *)p);
    case 1:
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    default:
        return _mm256_castsi256_ps(
            _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
    }
}

static ALWAYS_INLINE float wscalar(const uint8_t *p, int kind)
{
    uint16_t h;
    switch (kind) {
    case 0:
        return ld32f(p);
    case 1:
        return f16(p);
    default:
        memcpy(&h, p, 2);
        return tensor_bf16_to_f32(h);
    }
}

static ALWAYS_INLINE void flt_tile(const struct tile *a, int R, int T, int kind)
{
    const size_t es = kind == 0 ? 4 : 2;
    __m256 acc[4][4];
    zero_tile(R, T, acc);
    int64_t i = 0, n = a->nb; /* nb counts values here */
    for (; i + 8 <= n; i += 8) {
        __m256 wv[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *p = a->w + (size_t)r * a->wrb + (size_t)i * es;
            if (kind == 0 || (i & 31) == 0) prefetch(p);
            wv[r] = wload(p, kind);
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            __m256 xv = _mm256_loadu_ps((const float *)(a->x + (size_t)t * a->xrb) + i);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            float s = hsum(acc[r][t]);
            const float *x = (const float *)(a->x + (size_t)t * a->xrb);
            for (int64_t k = i; k < n; k++)
                s += wscalar(a->w + (size_t)r * a->wrb + (size_t)k * es, kind) * x[k];
            a->y[(size_t)t * a->ys + (size_t)r * a->yrs] = s;
        }
}

static ALWAYS_INLINE void f32_tile(const struct tile *a, int R, int T)
{
    flt_tile(a, R, T, 0);
}
static ALWAYS_INLINE void f16_tile(const struct tile *a, int R, int T)
{
    flt_tile(a, R, T, 1);
}
static ALWAYS_INLINE void bf16_tile(const struct tile *a, int R, int T)
{
    flt_tile(a, R, T, 2);
}

// clang-format off
INST_ROW(f32, 1)
INST_ROW(f32, 2)
INST_ROW(f32, 3)
INST_ROW(f32, 4)
INST_ROW(f16, 1)
INST_ROW(f16, 2)
INST_ROW(f16, 3)
INST_ROW(f16, 4)
INST_ROW(bf16, 1)
INST_ROW(bf16, 2)
INST_ROW(bf16, 3)
INST_ROW(bf16, 4)
// clang-format on

/* ------------------------------------------------------------------------------------------------------------
 * Entry points.
 */

bool tensor_matmul_rows_avx2(const struct tensor_mat *w, const void *xq, int n_tok, float *y, size_t y_stride,
                             int64_t r0, int64_t r1)
{
    static tile_fn t_q80[2][4] = {TROW(q80, 1), TROW(q80, 2)}, t_q40[2][4] = {TROW(q40, 1), TROW(q40, 2)};
    static tile_fn t_q4k[1][4] = {TROW(q4k, 1)}, t_q6k[1][4] = {TROW(q6k, 1)};
    static tile_fn t_f32[4][4] = {TROW(f32, 1), TROW(f32, 2), TROW(f32, 3), TROW(f32, 4)};
    static tile_fn t_f16[4][4] = {TROW(f16, 1), TROW(f16, 2), TROW(f16, 3), TROW(f16, 4)};
    static tile_fn t_bf16[4][4] = {TROW(bf16, 1), TROW(bf16, 2), TROW(bf16, 3), TROW(bf16, 4)};
    int64_t n = w->n_cols;
    size_t x8 = (size_t)(n / 32) * 34, xk = (size_t)(n / 256) * 292, xf = (size_t)n * 4;
    switch (w->type) {
    case TENSOR_Q8_0:
        drive(t_q80, 2, 4, w, xq, x8, n_tok, y, y_stride, r0, r1, n / 32);
        return true;
    case TENSOR_Q4_0:
        drive(t_q40, 2, 4, w, xq, x8, n_tok, y, y_stride, r0, r1, n / 32);
        return true;
    case TENSOR_Q4_K:
        drive(t_q4k, 1, 4, w, xq, xk, n_tok, y, y_stride, r0, r1, n / 256);
        return true;
    case TENSOR_Q6_K:
        drive(t_q6k, 1, 4, w, xq, xk, n_tok, y, y_stride, r0, r1, n / 256);
        return true;
    case TENSOR_F32:
        drive(t_f32, 4, 2, w, xq, xf, n_tok, y, y_stride, r0, r1, n);
        return true;
    case TENSOR_F16:
        drive(t_f16, 4, 2, w, xq, xf, n_tok, y, y_stride, r0, r1, n);
        return true;
    case TENSOR_BF16:
        drive(t_bf16, 4, 2, w, xq, xf, n_tok, y, y_stride, r0, r1, n);
        return true;
    default:
        return false;
    }
}

/* ------------------------------------------------------------------------------------------------------------
 * Activation conversion; the same arithmetic as the scalar code in tensor.c, so the bytes are identical.
 */

static ALWAYS_INLINE __m256 abs8(__m256 v)
{
    return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
}

static ALWAYS_INLINE float hmax(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* 32 int32 (four registers) to 32 int8 in order; the values are within int8 range. */
static ALWAYS_INLINE __m256i pack32(__m256i a, __m256i b, __m256i c, __m256i d)
{
    __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    __m256i v = _mm256_packs_epi16(ab, cd);
    return _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static void act_q8_0(const float *x, uint8_t *b, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 32, b += 34) {
        __m256 v[4];
        for (int k = 0; k < 4; k++)
            v[k] = _mm256_loadu_ps(x + 8 * k);
        __m256 m =
            _mm256_max_ps(_mm256_max_ps(abs8(v[0]), abs8(v[1])), _mm256_max_ps(abs8(v[2]), abs8(v[3])));
        float amax = hmax(m);
        float d = amax / 127.f, id = amax != 0.f ? 127.f / amax : 0.f;
        uint16_t h = tensor_f32_to_f16(d);
        memcpy(b, &h, 2);
        __m256 s = _mm256_set1_ps(id);
        __m256i q[4];
        for (int k = 0; k < 4; k++)
            q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], s));
        _mm256_storeu_si256((__m256i *)(b + 2), pack32(q[0], q[1], q[2], q[3]));
    }
}

static void act_q8_k(const float *x, uint8_t *b, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 256, b += 292) {
        __m256 am = _mm256_setzero_ps();
        for (int j = 0; j < 256; j += 8)
            am = _mm256_max_ps(am, abs8(_mm256_loadu_ps(x + j)));
        float amax = hmax(am);
        if (amax == 0.f) {
            memset(b, 0, 292);
            continue;
        }
        float max = 0;
        for (int j = 0; j < 256; j++) {
            if (fabsf(x[j]) == amax) {
                max = x[j];
                break;
            }
        }
        float iscale = -127.f / max;
        __m256 s = _mm256_set1_ps(iscale);
        const __m256i lim = _mm256_set1_epi32(127);
        for (int j = 0; j < 256; j += 32) {
            __m256i q[4];
            for (int k = 0; k < 4; k++)
                q[k] = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j + 8 * k), s)),
                                        lim);
            _mm256_storeu_si256((__m256i *)(b + 4 + j), pack32(q[0], q[1], q[2], q[3]));
            int16_t s0 = (int16_t)hsum_i32(_mm256_add_epi32(q[0], q[1]));
            int16_t s1 = (int16_t)hsum_i32(_mm256_add_epi32(q[2], q[3]));
            memcpy(b + 260 + j / 8, &s0, 2);
            memcpy(b + 262 + j / 8, &s1, 2);
        }
        float d = 1 / iscale;
        memcpy(b, &d, 4);
    }
}

bool tensor_act_row_avx2(uint32_t vdt, const float *x, void *dst, int64_t n)
{
    switch (vdt) {
    case TENSOR_Q8_0:
        act_q8_0(x, dst, n / 32);
        return true;
    case TENSOR_Q8_K:
        act_q8_k(x, dst, n / 256);
        return true;
    default:
        return false;
    }
}
