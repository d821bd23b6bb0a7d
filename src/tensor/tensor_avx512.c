/*
 * tensor_avx512.c: AVX-512 F/BW/VL/DQ + VNNI kernels.
 *
 * Every product is computed in tiles of up to R weight rows by T activation rows: the weights of a tile are
 * loaded and unpacked once per block and used against T activation rows held in the same registers, which is
 * what makes batched decode and prefill cheaper per token than T separate matrix-vector products. Each (row,
 * token) pair keeps its own accumulator and is summed in the same order whatever the tile shape, so results
 * do not depend on how rows are split over threads.
 *
 * Integer products use vpdpbusd (unsigned bytes times signed bytes, summed in fours into int32). The weight
 * is made the unsigned operand and the bias this adds is removed with the activation's byte sums: Q8_0: w +
 * 128 (w xor 0x80) times x  =  w*x + 128*x   -> start the accumulator at -128 * sum4(x) Q4_0: nibble n = w +
 * 8 times x       =  w*x + 8*x     -> start it at -8 * sum4(x) Each int32 lane then holds an exact partial
 * dot of 4 values, so no sign fix-up of x per weight is needed. K-quants multiply bytes into int16 pairs
 * (vpmaddubsw, which cannot saturate for 4- and 6-bit weights) and apply the per-group scales with vpdpwssd;
 * Q4_K's mins and Q6_K's -32 offset come from Q8_K's bsums.
 */
#include "core/core.h"
#include "tensor/tensor_kern.h"

#include <immintrin.h>
#include <string.h>

#define ALWAYS_INLINE inline __attribute__((always_inline))

static ALWAYS_INLINE uint32_t ld16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static ALWAYS_INLINE float ld32f(const uint8_t *p)
{
    float v;
    memcpy(&v, p, 4);
    return v;
}

static ALWAYS_INLINE float f16(const uint8_t *p)
{
    return _cvtsh_ss((unsigned short)ld16(p));
}

/* One tile: R weight rows from w (rows wrb bytes apart) times T activation rows from x (xrb apart); results
 * go to y[t*ys + r]. nb is the number of blocks per row. */
/* Weights are prefetched this many bytes ahead of the rows being multiplied. A decode step streams hundreds
 * of MB once, and the hardware prefetchers alone leave a single thread at about half of the memory bandwidth;
 * with the software prefetch one thread gets about 3/4 of it and two threads all of it (Zen 5, 4 KiB pages).
 */
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
#define INST_ALL(K) INST_ROW(K, 1) INST_ROW(K, 2) INST_ROW(K, 3) INST_ROW(K, 4)
#define TROW(K, R)                                                                                           \
    {                                                                                                        \
        K##_##R##_1, K##_##R##_2, K##_##R##_3, K##_##R##_4                                                   \
    }
#define TABLE(K)                                                                                             \
    {                                                                                                        \
        TROW(K, 1), TROW(K, 2), TROW(K, 3), TROW(K, 4)                                                       \
    }

/* Runs the tiles over rows [r0, r1) and all tokens. Tokens are taken in chunks whose activations stay in L2
 * while every weight row of the range passes by; inside a chunk the weight tile is the outer loop, so it
 * stays in L1 while the chunk's activations stream past it. */
static void drive(tile_fn fns[4][4], int rmax, int tmax, const struct tensor_mat *w, const uint8_t *xq,
                  size_t xrb, int n_tok, float *y, size_t ys, int64_t r0, int64_t r1, int64_t nb)
{
    const uint8_t *wd = w->data;
    if (n_tok == 1 && rmax > 1 && (size_t)(r1 - r0) * w->row_bytes >= (size_t)rmax * MV_SPLIT_MIN_BYTES) {
        /* Matrix-vector: the rows of a tile come from rmax equal parts of the range, so that each thread
         * reads rmax distant streams at once. DRAM serves several open pages in parallel much faster than
         * one: on Zen 5 this took a Q8_0 matrix-vector product from about 48 to about 60-70 GB/s on two
         * threads. */
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

/* ------------------------------------------------------------------------------------------------------------
 * Q8_0 and Q4_0 weights times Q8_0 activations, two 32-value blocks per register.
 */

/* [a x8, b x8] from the f16 scales at p and p + bs; the second is 0 when `one`. */
static ALWAYS_INLINE __m512 d_pair(const uint8_t *p, size_t bs, int one)
{
    uint32_t v = ld16(p) | (one ? 0 : ld16(p + bs) << 16);
    __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128((int)v));
    const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(f));
}

/* The 32 quants of the block at p (after its 2-byte scale) and of the next one bs bytes on; zero if `one`. */
static ALWAYS_INLINE __m512i q8_pair(const uint8_t *p, size_t bs, int one)
{
    __m512i v = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(p + 2)));
    if (!one) v = _mm512_inserti64x4(v, _mm256_loadu_si256((const __m256i *)(p + bs + 2)), 1);
    return v;
}

/* Q4_0: the nibbles of two blocks as bytes 0..15, in value order: [lo(a), hi(a), lo(b), hi(b)]. */
static ALWAYS_INLINE __m512i q4_pair(const uint8_t *p, int one)
{
    __m128i a = _mm_loadu_si128((const __m128i *)(p + 2));
    __m128i b = one ? _mm_setzero_si128() : _mm_loadu_si128((const __m128i *)(p + 20));
    __m512i v = _mm512_castsi256_si512(_mm256_inserti128_si256(_mm256_castsi128_si256(a), b, 1));
    v = _mm512_shuffle_i64x2(v, v, 0x50);
    v = _mm512_mask_srli_epi16(v, 0xff00ff00u, v, 4);
    return _mm512_and_si512(v, _mm512_set1_epi8(0x0f));
}

static ALWAYS_INLINE void q80_step(const struct tile *a, int R, int T, int q4, int64_t i, int one,
                                   __m512 acc[4][4])
{
    const size_t bs = q4 ? 18 : 34;
    __m512i wv[4];
    __m512 wd[4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        const uint8_t *p = a->w + (size_t)r * a->wrb + (size_t)i * bs;
        prefetch(p);
        prefetch(p + 64); /* a pair of Q8_0 blocks is 68 bytes */
        wv[r] = q4 ? q4_pair(p, one) : _mm512_xor_si512(q8_pair(p, bs, one), _mm512_set1_epi8((char)0x80));
        wd[r] = d_pair(p, bs, one);
    }
    const __m512i bias = _mm512_set1_epi8(q4 ? 8 : (char)0x80);
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        const uint8_t *p = a->x + (size_t)t * a->xrb + (size_t)i * 34;
        __m512i xv = q8_pair(p, 34, one);
        __m512 xd = d_pair(p, 34, one);
        __m512i nc =
            _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, xv));
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m512i s = _mm512_dpbusd_epi32(nc, wv[r], xv);
            acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(wd[r], xd), acc[r][t]);
        }
    }
}

static ALWAYS_INLINE void store_tile(const struct tile *a, int R, int T, __m512 acc[4][4])
{
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            a->y[(size_t)t * a->ys + (size_t)r * a->yrs] = _mm512_reduce_add_ps(acc[r][t]);
}

static ALWAYS_INLINE void q80_tile_gen(const struct tile *a, int R, int T, int q4)
{
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            acc[r][t] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= a->nb; i += 2)
        q80_step(a, R, T, q4, i, 0, acc);
    if (i < a->nb) q80_step(a, R, T, q4, i, 1, acc);
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

INST_ALL(q80)
INST_ALL(q40)

/* ------------------------------------------------------------------------------------------------------------
 * Q4_K weights times Q8_K activations.
 */

struct q4k_w {
    __m512i q[4];  /* 256 nibbles as bytes, in value order */
    __m512i sc[4]; /* int16 scales: register j holds groups 2j (elements 0..15) and 2j+1 (16..31) */
    __m256i mins;  /* int16 mins, each twice (one per 16-value bsum) */
    float d, dmin;
};

static ALWAYS_INLINE void q4k_unpack(const uint8_t *b, struct q4k_w *u)
{
    u->d = f16(b);
    u->dmin = f16(b + 2);
    uint32_t s[3], t[4];
    memcpy(s, b + 4, 12);
    const uint32_t m6 = 0x3f3f3f3f, m4 = 0x0f0f0f0f, m2 = 0x03030303;
    t[0] = s[0] & m6;                                      /* scales 0..3 */
    t[1] = (s[2] & m4) | (((s[0] >> 6) & m2) << 4);        /* scales 4..7 */
    t[2] = s[1] & m6;                                      /* mins 0..3 */
    t[3] = ((s[2] >> 4) & m4) | (((s[1] >> 6) & m2) << 4); /* mins 4..7 */
    uint64_t sc, mn;
    memcpy(&sc, t, 8);
    memcpy(&mn, t + 2, 8);
    __m512i sc16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc)));
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        const __m512i idx = _mm512_set_epi16(
            2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1,
            2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j, 2 * j, 2 * j,
            2 * j, 2 * j, 2 * j, 2 * j, 2 * j, 2 * j, 2 * j, 2 * j, 2 * j, 2 * j, 2 * j, 2 * j, 2 * j);
        u->sc[j] = _mm512_permutexvar_epi16(idx, sc16);
        __m256i y = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * j));
        __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(y), y, 1);
        v = _mm512_mask_srli_epi16(v, 0xffff0000u, v, 4);
        u->q[j] = _mm512_and_si512(v, _mm512_set1_epi8(0x0f));
    }
    __m128i m8 = _mm_cvtsi64_si128((long long)mn);
    u->mins = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8));
}

static ALWAYS_INLINE void q4k_tile(const struct tile *a, int R, int T)
{
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            acc[r][t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < a->nb; i++) {
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *p = a->w + (size_t)r * a->wrb + (size_t)i * 144;
            prefetch(p);
            prefetch(p + 64);
            prefetch(p + 128);
            struct q4k_w u;
            q4k_unpack(p, &u);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                const uint8_t *x = a->x + (size_t)t * a->xrb + (size_t)i * 292;
                __m512i s = _mm512_setzero_si512();
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) {
                    __m512i pr =
                        _mm512_maddubs_epi16(u.q[j], _mm512_loadu_si512((const void *)(x + 4 + 64 * j)));
                    s = _mm512_dpwssd_epi32(s, pr, u.sc[j]);
                }
                __m256i m = _mm256_madd_epi16(u.mins, _mm256_loadu_si256((const __m256i *)(x + 260)));
                float dx = ld32f(x);
                acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(u.d * dx), acc[r][t]);
                acc[r][t] = _mm512_fnmadd_ps(_mm512_zextps256_ps512(_mm256_cvtepi32_ps(m)),
                                             _mm512_set1_ps(u.dmin * dx), acc[r][t]);
            }
        }
    }
    store_tile(a, R, T, acc);
}

INST_ALL(q4k)

/* ------------------------------------------------------------------------------------------------------------
 * Q6_K weights times Q8_K activations.
 */

struct q6k_w {
    __m512i q[4];  /* 256 six-bit values 0..63 as bytes, in value order */
    __m512i sc[4]; /* int16 scales: register k holds groups 4k..4k+3, eight elements each */
    __m256i sc16;  /* the 16 scales as int16, for the -32 * scale * bsum correction */
    float d;
};

static ALWAYS_INLINE void q6k_unpack(const uint8_t *b, struct q6k_w *u)
{
    u->d = f16(b + 208);
    u->sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + 192)));
    __m512i sc = _mm512_castsi256_si512(u->sc16);
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        const int g = 4 * k;
        const __m512i idx = _mm512_set_epi16(
            g + 3, g + 3, g + 3, g + 3, g + 3, g + 3, g + 3, g + 3, g + 2, g + 2, g + 2, g + 2, g + 2, g + 2,
            g + 2, g + 2, g + 1, g + 1, g + 1, g + 1, g + 1, g + 1, g + 1, g + 1, g, g, g, g, g, g, g, g);
        u->sc[k] = _mm512_permutexvar_epi16(idx, sc);
    }
    const __m512i lo4 = _mm512_set1_epi8(0x0f), hi2 = _mm512_set1_epi8(0x30);
    const __m512i shl =
        _mm512_set_epi64(0x0002000200020002, 0x0002000200020002, 0x0002000200020002, 0x0002000200020002,
                         0x0004000400040004, 0x0004000400040004, 0x0004000400040004, 0x0004000400040004);
    const __m512i shr = _mm512_set_epi64(0x0002000200020002, 0x0002000200020002, 0x0002000200020002,
                                         0x0002000200020002, 0, 0, 0, 0);
#pragma GCC unroll 2
    for (int n = 0; n < 2; n++) {
        __m512i l = _mm512_loadu_si512((const void *)(b + 64 * n));
        __m256i h = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * n));
        __m512i hz = _mm512_inserti64x4(_mm512_castsi256_si512(h), h, 1);
        /* (a & 0x0f) | b, with b already masked to bits 4..5: ternary-logic table 0xEC = (A & C) | B. */
        __m512i h0 = _mm512_and_si512(_mm512_sllv_epi16(hz, shl), hi2);
        __m512i h1 = _mm512_and_si512(_mm512_srlv_epi16(hz, shr), hi2);
        u->q[2 * n] = _mm512_ternarylogic_epi32(l, h0, lo4, 0xEC);
        u->q[2 * n + 1] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(l, 4), h1, lo4, 0xEC);
    }
}

static ALWAYS_INLINE void q6k_tile(const struct tile *a, int R, int T)
{
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            acc[r][t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < a->nb; i++) {
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *p = a->w + (size_t)r * a->wrb + (size_t)i * 210;
            prefetch(p);
            prefetch(p + 64);
            prefetch(p + 128);
            prefetch(p + 192);
            struct q6k_w u;
            q6k_unpack(p, &u);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                const uint8_t *x = a->x + (size_t)t * a->xrb + (size_t)i * 292;
                __m256i c = _mm256_madd_epi16(u.sc16, _mm256_loadu_si256((const __m256i *)(x + 260)));
                __m512i s =
                    _mm512_zextsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(c, 5)));
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) {
                    __m512i pr =
                        _mm512_maddubs_epi16(u.q[k], _mm512_loadu_si512((const void *)(x + 4 + 64 * k)));
                    s = _mm512_dpwssd_epi32(s, pr, u.sc[k]);
                }
                acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(u.d * ld32f(x)), acc[r][t]);
            }
        }
    }
    store_tile(a, R, T, acc);
}

INST_ALL(q6k)

/* ------------------------------------------------------------------------------------------------------------
 * Float weights (F32, F16, BF16) times F32 activations, 16 values per step; the tail is masked.
 */

static ALWAYS_INLINE __m512 wload(const uint8_t *p, int kind, __mmask16 m)
{
    switch (kind) {
    case 0:
        return _mm512_maskz_loadu_ps(m, p);
    case 1:
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
    default:
        return _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
    }
}

static ALWAYS_INLINE void flt_step(const struct tile *a, int R, int T, int kind, int64_t i, __mmask16 m,
                                   __m512 acc[4][4])
{
    const size_t es = kind == 0 ? 4 : 2;
    __m512 wv[4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        const uint8_t *p = a->w + (size_t)r * a->wrb + (size_t)i * es;
        if (kind == 0 || (i & 31) == 0) prefetch(p); /* one prefetch per 64 bytes of each row */
        wv[r] = wload(p, kind, m);
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        __m512 xv = _mm512_maskz_loadu_ps(m, a->x + (size_t)t * a->xrb + (size_t)i * 4);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
}

static ALWAYS_INLINE void flt_tile(const struct tile *a, int R, int T, int kind)
{
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            acc[r][t] = _mm512_setzero_ps();
    int64_t i = 0, n = a->nb; /* nb counts values here */
    for (; i + 16 <= n; i += 16)
        flt_step(a, R, T, kind, i, 0xffff, acc);
    if (i < n) flt_step(a, R, T, kind, i, (__mmask16)((1u << (n - i)) - 1), acc);
    store_tile(a, R, T, acc);
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

INST_ALL(f32)
INST_ALL(f16)
INST_ALL(bf16)

/* ------------------------------------------------------------------------------------------------------------
 * Batched Q8_0 and Q4_0: activations interleaved across tokens.
 *
 * For n_tok >= XI_MIN_TOK the activations are first rearranged into groups so that one register holds the
 * same quants of several tokens, stored as x + 128 (unsigned). A group is 16 tokens with one 4-byte piece per
 * lane (L = 1), 8 tokens with two (L = 2) or 4 tokens with four (L = 4): lane l belongs to token l / L and
 * holds bytes 4 * (L * jj + l % L) .. +3 of the block in register jj. A weight row then multiplies the whole
 * group at once: the matching 4 * L bytes of the weight block are broadcast (32-, 64- or 128-bit) and fed to
 * vpdpbusd against the group, 8 / L instructions per block. The int32 lanes are per-token partial dot
 * products, so there is no horizontal reduction inside the loop and only one float multiply-add per block for
 * the group (against four integer and float operations per pair of blocks and token in the tile kernels); the
 * L lanes of a token share its scale, so they are added only once at the end. The +128 bias adds 128 * sum(w)
 * to a token; that sum is computed once per weight block and row tile and starts one lane of each token.
 * Padding lanes hold x = 0 and a zero scale. Groups of 16 are used while more than 8 tokens remain, then 8,
 * then 4. Below XI_MIN_TOK tokens the per-row preparation (block sums and scales, xi_prep) is not repaid and
 * the tile kernels are used.
 *
 * Group layout, per block: 8 / L registers of quants, then 16 float scales (each token's scale in its lanes).
 * Everything lives on the stack (about 180 KB at most), and as many groups as fit in XI_STACK are prepared
 * before the weights are swept, so a weight row is read once per chunk of tokens. Rows are taken 8 at a time
 * (8 independent accumulation chains per block). Measured on Zen 5, one core, Q8_0 2048x640: 135 GMAC/s at
 * 8 tokens, 150 at 16, 185 from 64 up, against 95-100 for the tile kernel.
 *
 * In the whole model the per-row preparation weighs more than in that measurement (the 262144-row output matrix
 * prepares every row for a handful of tokens): `banter bench llm` on the 270M Q8_0 model gave, in tokens/s of
 * batched decode, 8 sequences 234 (this kernel) vs 370 (tile), 12: 295 vs 370, 16: 354 vs 393, 24: 422 vs 401.
 * So the tile kernel serves batches below 20 tokens.
 */
#define XI_MIN_TOK 20
#define XI_STACK (96 * 1024)
#define XI_R 8
#define XI_MAX_COLS 8192

/* acc += u8(a) * s8(the 4 bytes at p, in every lane). Written in assembly because compilers load the
 * broadcast separately, and on Zen 5 the fused form relieves the load ports, which limit this kernel. */
static ALWAYS_INLINE __m512i dpbusd_bcst(__m512i acc, __m512i a, const uint8_t *p)
{
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(a), "m"(*(const int32_t *)p));
    return acc;
}

static ALWAYS_INLINE size_t xi_block_bytes(int L)
{
    return (size_t)(8 / L + 1) * 64;
}

static int xi_lanes_per_token(int remaining)
{
    return remaining > 8 ? 1 : remaining > 4 ? 2 : 4;
}

static void xi_build(const uint8_t *xq, size_t xrb, int nt, int L, int64_t nb, uint8_t *g)
{
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const int shift = L == 1 ? 0 : L == 2 ? 1 : 2;
    const __m512i tok = _mm512_srli_epi32(lane, (unsigned)shift);
    const __m512i part = _mm512_and_si512(lane, _mm512_set1_epi32(L - 1));
    const __m512i toff = _mm512_mullo_epi32(tok, _mm512_set1_epi32((int)xrb));
    const __m512i qoff = _mm512_add_epi32(toff, _mm512_slli_epi32(part, 2));
    const __mmask16 m = _mm512_cmplt_epi32_mask(tok, _mm512_set1_epi32(nt));
    const __m512i bias = _mm512_set1_epi32((int)0x80808080u);
    const int nreg = 8 / L;
    for (int64_t b = 0; b < nb; b++, g += xi_block_bytes(L)) {
        const uint8_t *base = xq + (size_t)b * 34;
        for (int jj = 0; jj < nreg; jj++) {
            __m512i v =
                _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, qoff, base + 2 + 4 * L * jj, 1);
            _mm512_store_si512((void *)(g + 64 * jj), _mm512_xor_si512(v, bias));
        }
        __m512i d = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, toff, base, 1);
        _mm512_store_ps((void *)(g + 64 * nreg), _mm512_cvtph_ps(_mm512_cvtepi32_epi16(d)));
    }
}

/* R weight rows (int8 quants at w, rows wrs bytes apart, blocks wbs apart) times one group of L lanes per
 * token; dw and corr hold the rows' block scales and -128 * block sums, [block][8 rows] (xi_prep). */
static ALWAYS_INLINE void xi_kernel(int L, int R, const uint8_t *w, size_t wrs, size_t wbs, const float *dw,
                                    const int32_t *corr, const uint8_t *g, int64_t nb, float *y, size_t ys,
                                    int nt)
{
    const int nreg = 8 / L;
    const __mmask16 first = L == 1 ? 0xffff : L == 2 ? 0x5555 : 0x1111; /* one lane per token gets corr */
    __m512 acc[XI_R];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
        acc[r] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++, g += xi_block_bytes(L)) {
        __m512i xv[8];
#pragma GCC unroll 8
        for (int jj = 0; jj < nreg; jj++)
            xv[jj] = _mm512_load_si512((const void *)(g + 64 * jj));
        __m512 xd = _mm512_load_ps((const void *)(g + 64 * nreg));
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            const uint8_t *p = w + (size_t)r * wrs + (size_t)b * wbs;
            /* One chain per row; the 8 rows give the independent chains that hide vpdpbusd's latency. */
            __m512i s = _mm512_maskz_set1_epi32(first, corr[8 * b + r]);
#pragma GCC unroll 8
            for (int jj = 0; jj < nreg; jj++) {
                const uint8_t *q = p + 4 * L * jj;
                if (L == 1) {
                    s = dpbusd_bcst(s, xv[jj], q);
                } else if (L == 2) {
                    int64_t v;
                    memcpy(&v, q, 8);
                    s = _mm512_dpbusd_epi32(s, xv[jj], _mm512_set1_epi64(v));
                } else {
                    s = _mm512_dpbusd_epi32(s, xv[jj],
                                            _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)q)));
                }
            }
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(xd, _mm512_set1_ps(dw[8 * b + r])),
                                     acc[r]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        __m512 a = acc[r];
        if (L >= 2) a = _mm512_add_ps(a, _mm512_permute_ps(a, 0xb1)); /* lanes 2k + 2k+1 */
        if (L >= 4) a = _mm512_add_ps(a, _mm512_permute_ps(a, 0x4e)); /* lanes 4k .. 4k+3 */
        float v[16];
        _mm512_storeu_ps(v, a);
        for (int t = 0; t < nt; t++)
            y[(size_t)t * ys + (size_t)r] = v[t * L];
    }
}

typedef void (*xi_fn)(const uint8_t *, size_t, size_t, const float *, const int32_t *, const uint8_t *,
                      int64_t, float *, size_t, int);

#define XI_INST(L, R)                                                                                        \
    static void xi_kernel_##L##_##R(const uint8_t *w, size_t wrs, size_t wbs, const float *dw,               \
                                    const int32_t *corr, const uint8_t *g, int64_t nb, float *y, size_t ys,  \
                                    int nt)                                                                  \
    {                                                                                                        \
        xi_kernel(L, R, w, wrs, wbs, dw, corr, g, nb, y, ys, nt);                                            \
    }
#define XI_INST_L(L)                                                                                         \
    XI_INST(L, 1)                                                                                            \
    XI_INST(L, 2) XI_INST(L, 3) XI_INST(L, 4) XI_INST(L, 5) XI_INST(L, 6) XI_INST(L, 7) XI_INST(L, 8)
#define XI_ROW(L)                                                                                            \
    {                                                                                                        \
        xi_kernel_##L##_1, xi_kernel_##L##_2, xi_kernel_##L##_3, xi_kernel_##L##_4, xi_kernel_##L##_5,       \
            xi_kernel_##L##_6, xi_kernel_##L##_7, xi_kernel_##L##_8                                          \
    }
XI_INST_L(1)
XI_INST_L(2)
XI_INST_L(4)

/* The block scales and -128 * block sums of nr <= 8 rows, stored [block][row] so that a kernel step finds
 * its 8 rows together. The quants are at wq (rows wrs bytes apart, blocks wbs apart) and the f16 scales at wd
 * (rows row_bytes apart, blocks bs apart). The sums of 8 rows are computed together: 4 registers of 2 rows,
 * vpdpbusd by 128, then a transposing reduction, about 3 operations per row and block. */
static void xi_prep(const uint8_t *wq, size_t wrs, size_t wbs, const uint8_t *wd, size_t row_bytes, size_t bs,
                    int nr, int64_t nb, float *dw, int32_t *corr)
{
    const __m512i c128 = _mm512_set1_epi8((char)0x80);
    const __m512i perm = _mm512_set_epi32(15, 15, 15, 15, 15, 15, 15, 15, 11, 3, 10, 2, 9, 1, 8, 0);
    const __m256i ridx =
        _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)row_bytes));
    const __mmask8 rmask = (__mmask8)((1u << nr) - 1);
    for (int64_t b = 0; b < nb; b++) {
        __m512i z[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            __m256i lo =
                2 * i < nr
                    ? _mm256_loadu_si256((const __m256i *)(wq + (size_t)(2 * i) * wrs + (size_t)b * wbs))
                    : _mm256_setzero_si256();
            __m256i hi =
                2 * i + 1 < nr
                    ? _mm256_loadu_si256((const __m256i *)(wq + (size_t)(2 * i + 1) * wrs + (size_t)b * wbs))
                    : _mm256_setzero_si256();
            z[i] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), c128,
                                       _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1));
        }
        __m512i t0 = _mm512_add_epi32(_mm512_unpacklo_epi32(z[0], z[1]), _mm512_unpackhi_epi32(z[0], z[1]));
        __m512i t1 = _mm512_add_epi32(_mm512_unpacklo_epi32(z[2], z[3]), _mm512_unpackhi_epi32(z[2], z[3]));
        __m512i u = _mm512_add_epi32(_mm512_unpacklo_epi64(t0, t1), _mm512_unpackhi_epi64(t0, t1));
        u = _mm512_add_epi32(u, _mm512_shuffle_i64x2(u, u, 0xb1));
        __m256i sums = _mm512_castsi512_si256(_mm512_permutexvar_epi32(perm, u)); /* rows 0..7 */
        _mm256_storeu_si256((__m256i *)(corr + 8 * b), _mm256_sub_epi32(_mm256_setzero_si256(), sums));
        __m256i d = _mm256_mmask_i32gather_epi32(_mm256_setzero_si256(), rmask, ridx,
                                                 (const int *)(wd + (size_t)b * bs), 1);
        _mm256_storeu_ps(dw + 8 * b, _mm256_cvtph_ps(_mm256_cvtepi32_epi16(d)));
    }
}

struct xi_group {
    int t, nt, L;
    size_t off;
};

static bool xi_matmul(const struct tensor_mat *w, const uint8_t *xq, int n_tok, float *y, size_t ys,
                      int64_t r0, int64_t r1)
{
    static const xi_fn fns[3][XI_R] = {XI_ROW(1), XI_ROW(2), XI_ROW(4)};
    const int q4 = w->type == TENSOR_Q4_0;
    const int64_t nb = w->n_cols / 32;
    const size_t xrb = (size_t)nb * 34;
    if (w->n_cols > XI_MAX_COLS || (size_t)nb * xi_block_bytes(1) > XI_STACK) return false;
    _Alignas(64) uint8_t buf[XI_STACK];
    _Alignas(64) int8_t unpacked[XI_R * XI_MAX_COLS]; /* Q4_0 rows as signed bytes */
    float dw[XI_R * XI_MAX_COLS / 32];                /* [block][row] */
    int32_t corr[XI_R * XI_MAX_COLS / 32];            /* [block][row] */
    for (int t0 = 0; t0 < n_tok;) {
        /* Build as many groups as fit, largest first. */
        struct xi_group gs[XI_STACK / 576 + 3]; /* 16-token groups, then at most one of 8 and one of 4 */
        int n_groups = 0;
        size_t used = 0;
        while (t0 < n_tok) {
            int L = xi_lanes_per_token(n_tok - t0), cap = 16 / L;
            size_t bytes = (size_t)nb * xi_block_bytes(L);
            if (used + bytes > XI_STACK) break;
            int nt = n_tok - t0 < cap ? n_tok - t0 : cap;
            gs[n_groups] = (struct xi_group){t0, nt, L, used};
            xi_build(xq + (size_t)t0 * xrb, xrb, nt, L, nb, buf + used);
            n_groups++;
            used += bytes;
            t0 += nt;
        }
        for (int64_t r = r0; r < r1; r += XI_R) {
            int nr = r1 - r < XI_R ? (int)(r1 - r) : XI_R;
            const uint8_t *wr = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
            if (q4) {
                for (int i = 0; i < nr; i++) {
                    const uint8_t *row = wr + (size_t)i * w->row_bytes;
                    for (int64_t b = 0; b < nb; b++) {
                        __m128i v = _mm_loadu_si128((const __m128i *)(row + (size_t)b * 18 + 2));
                        __m256i q =
                            _mm256_inserti128_si256(_mm256_castsi128_si256(v), _mm_srli_epi16(v, 4), 1);
                        q = _mm256_sub_epi8(_mm256_and_si256(q, _mm256_set1_epi8(0x0f)), _mm256_set1_epi8(8));
                        _mm256_store_si256((__m256i *)(unpacked + (size_t)i * w->n_cols + 32 * b), q);
                    }
                }
            }
            const uint8_t *wq = q4 ? (const uint8_t *)unpacked : wr + 2;
            size_t wrs = q4 ? (size_t)w->n_cols : w->row_bytes, wbs = q4 ? 32 : 34;
            xi_prep(wq, wrs, wbs, wr, w->row_bytes, q4 ? 18 : 34, nr, nb, dw, corr);
            for (int gi = 0; gi < n_groups; gi++) {
                const struct xi_group *g = &gs[gi];
                fns[g->L == 1   ? 0
                    : g->L == 2 ? 1
                                : 2][nr - 1](wq, wrs, wbs, dw, corr, buf + g->off, nb,
                                             y + (size_t)g->t * ys + (size_t)r, ys, g->nt);
            }
        }
    }
    return true;
}

/* ------------------------------------------------------------------------------------------------------------
 * Entry points.
 */

bool tensor_matmul_rows_avx512(const struct tensor_mat *w, const void *xq, int n_tok, float *y,
                               size_t y_stride, int64_t r0, int64_t r1)
{
    static tile_fn t_q80[4][4] = TABLE(q80), t_q40[4][4] = TABLE(q40), t_q4k[4][4] = TABLE(q4k),
                   t_q6k[4][4] = TABLE(q6k), t_f32[4][4] = TABLE(f32), t_f16[4][4] = TABLE(f16),
                   t_bf16[4][4] = TABLE(bf16);
    int64_t n = w->n_cols;
    if ((w->type == TENSOR_Q8_0 || w->type == TENSOR_Q4_0) && n_tok >= XI_MIN_TOK &&
        xi_matmul(w, xq, n_tok, y, y_stride, r0, r1))
        return true;
    switch (w->type) {
    case TENSOR_Q8_0:
        drive(t_q80, 4, 4, w, xq, (size_t)(n / 32) * 34, n_tok, y, y_stride, r0, r1, n / 32);
        return true;
    case TENSOR_Q4_0:
        drive(t_q40, 4, 4, w, xq, (size_t)(n / 32) * 34, n_tok, y, y_stride, r0, r1, n / 32);
        return true;
    case TENSOR_Q4_K:
        drive(t_q4k, 4, 4, w, xq, (size_t)(n / 256) * 292, n_tok, y, y_stride, r0, r1, n / 256);
        return true;
    case TENSOR_Q6_K:
        drive(t_q6k, 4, 4, w, xq, (size_t)(n / 256) * 292, n_tok, y, y_stride, r0, r1, n / 256);
        return true;
    case TENSOR_F32:
        drive(t_f32, 4, 4, w, xq, (size_t)n * 4, n_tok, y, y_stride, r0, r1, n);
        return true;
    case TENSOR_F16:
        drive(t_f16, 4, 4, w, xq, (size_t)n * 4, n_tok, y, y_stride, r0, r1, n);
        return true;
    case TENSOR_BF16:
        drive(t_bf16, 4, 4, w, xq, (size_t)n * 4, n_tok, y, y_stride, r0, r1, n);
        return true;
    default:
        return false;
    }
}

/* ------------------------------------------------------------------------------------------------------------
 * Activation conversion; the same arithmetic as the scalar code in tensor.c, so the bytes are identical.
 */

static void act_q8_0(const float *x, uint8_t *b, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 32, b += 34) {
        __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        float d = amax / 127.f, id = amax != 0.f ? 127.f / amax : 0.f;
        uint16_t h = tensor_f32_to_f16(d);
        memcpy(b, &h, 2);
        __m512 m = _mm512_set1_ps(id);
        __m128i q0 = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v0, m)));
        __m128i q1 = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v1, m)));
        _mm_storeu_si128((__m128i *)(b + 2), q0);
        _mm_storeu_si128((__m128i *)(b + 18), q1);
    }
}

static void act_q8_k(const float *x, uint8_t *b, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 256, b += 292) {
        __m512 am = _mm512_setzero_ps();
        for (int j = 0; j < 256; j += 16)
            am = _mm512_max_ps(am, _mm512_abs_ps(_mm512_loadu_ps(x + j)));
        float amax = _mm512_reduce_max_ps(am);
        if (amax == 0.f) {
            memset(b, 0, 292);
            continue;
        }
        /* The signed value of the first element of largest magnitude, as the scalar scan finds it. */
        float max = 0;
        for (int j = 0; j < 256; j += 16) {
            __mmask16 k =
                _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(x + j)), _mm512_set1_ps(amax), _CMP_EQ_OQ);
            if (k) {
                max = x[j + __builtin_ctz(k)];
                break;
            }
        }
        float iscale = -127.f / max;
        __m512 s = _mm512_set1_ps(iscale);
        for (int j = 0; j < 256; j += 16) {
            __m512i q = _mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + j), s)),
                                         _mm512_set1_epi32(127));
            _mm_storeu_si128((__m128i *)(b + 4 + j), _mm512_cvtepi32_epi8(q));
            int16_t bs = (int16_t)_mm512_reduce_add_epi32(q);
            memcpy(b + 260 + j / 8, &bs, 2);
        }
        float d = 1 / iscale;
        memcpy(b, &d, 4);
    }
}

bool tensor_act_row_avx512(uint32_t vdt, const float *x, void *dst, int64_t n)
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
