/* Mixed-precision GEMM: emk_gemm (gemm.h). A, B and C are each f32 or bf16 (uint16_t bit
   patterns); EMK_MM_EXACT widens bf16 to f32 and gives emk_sgemm's bits, EMK_MM_BF16 rounds f32
   operands to bf16 (nearest even, NaN kept quiet: emt_f32_to_bf16) and sums bf16 products in f32.

   EMK_MM_BF16, packed path (any M): GotoBLAS/BLIS blocking as in gemm.c (NC columns, KC k, MC
   rows; KC a multiple of 32 that splits K evenly), but the panels hold bf16 PAIRS: one 32-bit
   word per (row or column, k pair) with k = 2p in the low half and 2p + 1 in the high half, the
   layout vdpbf16ps (_mm512_dpbf16_ps) reads. f32 operands are rounded while they are packed, so
   f32 master weights cost no extra pass; an odd K is padded with a zero pair half. The
   micro-kernel keeps an 8 x 48 f32 tile in 24 zmm accumulators; per k pair it loads three B
   vectors (48 columns x 2 k) and broadcasts eight A pairs into 24 vdpbf16ps (64 FLOPs each).
   EMK_MM_EXACT, packed path: bf16 operands are widened into emk_sgemm's f32 panels (f32 ones use
   its packers) and emk_sgemm's own micro-kernel and K blocking run on them, so the bits are
   emk_sgemm's on widened copies. A bf16 C is accumulated in an f32 scratch block (M chunk x
   NC) across all K blocks and rounded once; with accumulate the scratch starts from the widened
   old C, which gives the same sums as the f32-C path (C_old + block 1 + block 2 ...).
   Small M (<= 4) against B = W^T (rsb == 1, a linear layer's forward, a decode step): no
   packing; 16 rows of W are read side by side (software prefetch along each row, as in gemm.c)
   and transposed in registers as 32-bit words: for bf16 W a word is already a k pair, so one
   16 x 16 transpose serves 32 k. BF16 mode feeds the pairs to vdpbf16ps; EXACT mode widens each
   pair into two f32 vectors (shift / mask) for f32 FMAs in k order. Both use the packed paths' K
   blocks and summation order, so a row gets the same bits whether it comes alone or with 255
   others (the determinism promise of gemm.h holds across paths, threads and slicing).
   Small M against a row-major B (csb == 1, BF16 mode: attention's weights @ cached values in a
   decode step): no packing either; per k pair the two rows of B are zipped into the packed
   path's pair words in registers, 64 columns at a time. Small products run without an OpenMP
   region and keep A's pairs on the stack: for a 64 x 128 head the call overhead was most of it.
   vdpbf16ps, per lane and pair: acc += a_odd * b_odd, then acc += a_even * b_even, each a
   correctly rounded f32 add of an exact product (measured bit-exact on Zen 5 against two fmaf
   over 20M random pairs), with bf16 denormal inputs read as zero and denormal results flushed
   to zero (tininess after rounding). The portable path (no avx512_bf16, or
   EMK_GEMM_BF16_PORTABLE, or emk_gemm_bf16_force_portable(1) in tests) does exactly that with
   fmaf plus the flushes, on the same packed pairs in the same order, so it gives the same bits
   (NaN payloads aside). */
#include "gemm_impl.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#if EMK_SGEMM_AVX512 && defined(__AVX512BF16__) && defined(__AVX512BW__) && \
    !defined(EMK_GEMM_BF16_PORTABLE)
#define BG_HW 1 /* vdpbf16ps kernels */
#else
#define BG_HW 0
#endif

/* Blocking of the bf16 packed path (k counted in elements; KC is a multiple of 32). The B
   micro-panel is KC/2 x 48 words (KC * 96 bytes), the A block MC x KC bf16. */
#define BG_MR 8
#define BG_NV 3
#define BG_NR (16 * BG_NV)
#ifndef BG_KC
#define BG_KC 384
#endif
#ifndef BG_MC
#define BG_MC (BG_MR * 24)
#endif
#ifndef BG_NC
#define BG_NC 3072
#endif
#ifndef BG_GEMV_PF
#define BG_GEMV_PF 256 /* prefetch distance along a row of W in the small-M paths, elements */
#endif
#ifndef BG_PACK_PF_BYTES
#define BG_PACK_PF_BYTES 1024 /* the same when packing a transposed B (W^T), bytes */
#endif
#ifndef BG_ROWS_PF
#define BG_ROWS_PF 4 /* packing a row-major B: prefetch this many rows ahead */
#endif
#define BG_GEMV_MAX_M 4
#define BG_CSCRATCH_BYTES ((size_t)4 << 20) /* f32 scratch for a bf16 C, per thread */

#define BG_INLINE static inline __attribute__((always_inline))

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

static int force_portable; /* tests: emk_gemm_bf16_force_portable */

void emk_gemm_bf16_force_portable(int on) { force_portable = on; }

int emk_gemm_bf16_has_hw(void) { return BG_HW; }

/* ---------------------------------------------------------------------------------------------
   Scalar conversions and element access.
   --------------------------------------------------------------------------------------------- */
static inline float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

static inline uint16_t f32_to_bf16(float f) /* nearest even, NaN kept quiet (emt_f32_to_bf16) */
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline size_t esize(emk_type t) { return t == EMK_BF16 ? 2 : 4; }

static inline const void *eoff(const void *p, emk_type t, int64_t off)
{
    return (const char *)p + off * (int64_t)esize(t);
}

/* element at offset off, widened exactly */
static inline float get_f32(const void *p, emk_type t, int64_t off)
{
    return t == EMK_BF16 ? bf16_to_f32(((const uint16_t *)p)[off]) : ((const float *)p)[off];
}

/* An f32 operand rounded as vcvtne2ps2bf16 does: nearest even, NaN kept quiet, and f32 denormals
   become zeros of their sign (the only difference from emt_f32_to_bf16, and only for inputs within
   2^-9 below FLT_MIN, which emt rounds up to FLT_MIN: every other denormal gives a bf16 denormal
   that vdpbf16ps reads as zero anyway). */
static inline uint16_t f32_to_bf16_daz(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if (!(u & 0x7f800000u))
        return (uint16_t)((u >> 16) & 0x8000u);
    return f32_to_bf16(f);
}

/* element at offset off as bf16 bits (f32 rounded as an operand) */
static inline uint32_t get_bf16(const void *p, emk_type t, int64_t off)
{
    return t == EMK_BF16 ? ((const uint16_t *)p)[off] : f32_to_bf16_daz(((const float *)p)[off]);
}

static inline void put_c(void *c, emk_type t, int64_t off, float v)
{
    if (t == EMK_BF16)
        ((uint16_t *)c)[off] = f32_to_bf16(v);
    else
        ((float *)c)[off] = v;
}

/* One vdpbf16ps lane step, emulated: acc + a * b (exact product, one rounding) with bf16
   denormal inputs read as zero (DAZ) and a result that is tiny after rounding to f32 precision
   with unbounded exponent flushed to a zero of its sign (FTZ). The product of two bf16 values is
   exact in float and double, so the double sum below decides tininess at the one boundary case
   (fmaf rounding to exactly FLT_MIN) correctly. */
static inline float bf_daz(uint32_t h16) /* h16: bf16 bits in the low half */
{
    return (h16 & 0x7f80u) ? bits_f32(h16 << 16) : bits_f32((h16 & 0x8000u) << 16);
}

static inline float dp_step(float acc, float a, float b)
{
    float r = fmaf(a, b, acc);
    float m = fabsf(r);
    if (m < FLT_MIN || (m == FLT_MIN && fabs((double)acc + (double)a * (double)b) <
                                            (double)FLT_MIN - 0x1p-151))
        r = copysignf(0.0f, r);
    return r;
}

/* acc += the pair product of A pair word aw and B pair word bw, vdpbf16ps order */
static inline float dp_pair(float acc, uint32_t aw, uint32_t bw)
{
    acc = dp_step(acc, bf_daz(aw >> 16), bf_daz(bw >> 16));
    return dp_step(acc, bf_daz(aw & 0xffffu), bf_daz(bw & 0xffffu));
}

#if defined(__FMA__)
#define MADD_F(a, b, c) fmaf(a, b, c)
#else
#define MADD_F(a, b, c) ((a) * (b) + (c))
#endif

/* ---------------------------------------------------------------------------------------------
   The operation, as every path sees it.
   --------------------------------------------------------------------------------------------- */
typedef struct {
    int64_t M, N, K;
    const void *A;
    int64_t rsa, csa;
    const void *B;
    int64_t rsb, csb;
    void *C;
    int64_t rsc, csc;
    emk_type ta, tb, tc;
    int accumulate;
    int bf16; /* EMK_MM_BF16 */
} gm_t;

/* The sub-problem rows [i0, i0 + m) and columns [j0, j0 + n) of g. */
static gm_t sub_problem(const gm_t *g, int64_t i0, int64_t m, int64_t j0, int64_t n)
{
    gm_t s = *g;
    s.M = m, s.N = n;
    s.A = eoff(g->A, g->ta, i0 * g->rsa);
    s.B = eoff(g->B, g->tb, j0 * g->csb);
    s.C = (void *)eoff(g->C, g->tc, i0 * g->rsc + j0 * g->csc);
    return s;
}

/* K block of each mode: the bits depend on it, so every path of a mode uses the same. */
static int64_t bf16_kc(int64_t K) { return emk_gemm_balanced_block(K, BG_KC, 32); }
static int64_t exact_kc(int64_t K) { return emk_gemm_balanced_block(K, SG_KC, 16); }

/* Reference-order scalar GEMM: every element summed in the same order, K blocks and pair steps
   as the optimized paths of its mode (EXACT: emk_sgemm's fused multiply-adds; BF16: the
   emulated vdpbf16ps), so it gives the same bits. Used when no buffer can be had and for the
   portable small-M path. Rows [0, M), columns [j0, j1). */
static void scalar_gemm(const gm_t *g, int64_t j0, int64_t j1)
{
    int64_t K = g->K, KC = g->bf16 ? bf16_kc(K) : exact_kc(K);
    for (int64_t i = 0; i < g->M; i++)
        for (int64_t j = j0; j < j1; j++) {
            int64_t co = i * g->rsc + j * g->csc;
            float tot = 0.0f;
            for (int64_t pc = 0; pc < K; pc += KC) {
                int64_t kc = min64(KC, K - pc);
                float acc = 0.0f;
                if (g->bf16) {
                    for (int64_t k = pc; k < pc + kc; k += 2) {
                        uint32_t aw = get_bf16(g->A, g->ta, i * g->rsa + k * g->csa);
                        uint32_t bw = get_bf16(g->B, g->tb, k * g->rsb + j * g->csb);
                        if (k + 1 < K) {
                            aw |= get_bf16(g->A, g->ta, i * g->rsa + (k + 1) * g->csa) << 16;
                            bw |= get_bf16(g->B, g->tb, (k + 1) * g->rsb + j * g->csb) << 16;
                        }
                        acc = dp_pair(acc, aw, bw);
                    }
                } else {
                    for (int64_t k = pc; k < pc + kc; k++)
                        acc = MADD_F(get_f32(g->A, g->ta, i * g->rsa + k * g->csa),
                                     get_f32(g->B, g->tb, k * g->rsb + j * g->csb), acc);
                }
                if (pc == 0)
                    tot = g->accumulate ? acc + get_f32(g->C, g->tc, co) : acc;
                else
                    tot = acc + tot;
            }
            put_c(g->C, g->tc, co, tot);
        }
}

/* ---------------------------------------------------------------------------------------------
   AVX-512 helpers: rounding to bf16, pairs of a row, widening.
   --------------------------------------------------------------------------------------------- */
#if EMK_SGEMM_AVX512 && defined(__AVX512BW__)
#define BG_AVX512 1

static inline __mmask32 mask32(int64_t n) /* first min(n, 32) lanes; n >= 0 */
{
    return n >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << n) - 1u);
}

/* bf16 rounding of 16 floats (nearest even, NaN quiet), in the high half of each word; the low
   half is zero. */
static inline __m512i round_hi(__m512 x)
{
    __m512i u = _mm512_castps_si512(x);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(u, _mm512_set1_epi32(0x00400000)));
    return _mm512_and_si512(r, _mm512_set1_epi32((int)0xFFFF0000u));
}

/* Operand rounding (f32_to_bf16_daz) of 16 floats, in the high half of each word. */
static inline __m512i round_hi_daz(__m512 x)
{
    __mmask16 tiny = _mm512_testn_epi32_mask(_mm512_castps_si512(x), _mm512_set1_epi32(0x7f800000));
    x = _mm512_mask_mov_ps(x, tiny, _mm512_castsi512_ps(_mm512_and_si512(
                                        _mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u))));
    return round_hi(x);
}

/* 32 consecutive f32 values x0 (k 0..15), x1 (k 16..31) as 16 pair words, k order */
static inline __m512i pairs_along(__m512 x0, __m512 x1)
{
#if BG_HW
    return (__m512i)_mm512_cvtne2ps_pbh(x1, x0);
#else
    const __m512i odd = _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37,
                                         35, 33, 31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9,
                                         7, 5, 3, 1);
    return _mm512_permutex2var_epi16(round_hi_daz(x0), odd, round_hi_daz(x1));
#endif
}

/* lane j: bf16(lo[j]) | bf16(hi[j]) << 16 (two rows k, k + 1 of f32) */
static inline __m512i pairs_across(__m512 lo, __m512 hi)
{
#if BG_HW
    const __m512i zip = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9,
                                         24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1,
                                         16, 0);
    return _mm512_permutexvar_epi16(zip, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
#else
    return _mm512_or_si512(_mm512_srli_epi32(round_hi_daz(lo), 16), round_hi_daz(hi));
#endif
}

/* 32 consecutive elements (n <= 32 valid, the rest zero) of an f32 or bf16 row as 16 pair
   words: word q = bf16(x[2q]) | bf16(x[2q + 1]) << 16. */
static inline __m512i load_pairs(const void *p, emk_type t, int64_t n)
{
    if (t == EMK_BF16)
        return _mm512_maskz_loadu_epi16(mask32(n), p);
    const float *f = p;
    return pairs_along(_mm512_maskz_loadu_ps(emk_lane_mask(n), f),
                       _mm512_maskz_loadu_ps(emk_lane_mask(n > 16 ? n - 16 : 0), f + 16));
}

/* 16 elements (n valid) at p (row k) and, if has_hi, at q (row k + 1) as pair words */
static inline __m512i load_pairs_across(const void *p, const void *q, int has_hi, emk_type t, int64_t n)
{
    __mmask16 m = emk_lane_mask(n), mh = has_hi ? m : 0;
    if (t == EMK_BF16) {
        __m512i lo = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
        __m512i hi = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mh, q));
        return _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
    }
    return pairs_across(_mm512_maskz_loadu_ps(m, p), _mm512_maskz_loadu_ps(mh, q));
}

/* 16 bf16 (n valid) widened to f32 */
static inline __m512 widen16(const uint16_t *p, int64_t n)
{
    __m512i w = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(emk_lane_mask(n), p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}

static inline void transpose16i(const __m512i in[16], __m512i out[16])
{
    emk_transpose16((const __m512 *)in, (__m512 *)out);
}
#else
#define BG_AVX512 0
#endif

/* ---------------------------------------------------------------------------------------------
   BF16 mode packing: A block (mc x kc) -> ceil(mc / MR) panels of kp x MR pair words
   (kp = ceil(kc / 2)); B block (kc x nc) -> ceil(nc / NR) panels of kp x NR words. Zero padded.
   --------------------------------------------------------------------------------------------- */
static void pack_pairs_a_panel(int64_t mr, int64_t kc, const void *a, emk_type ta, int64_t rsa,
                               int64_t csa, uint32_t *dst)
{
    int64_t kp = (kc + 1) / 2;
#if BG_AVX512
    if (csa == 1) { /* rows contiguous along k: pairs of each row, transposed 16 x 16 */
        for (int64_t k0 = 0; k0 < kc; k0 += 32) {
            int64_t cols = min64(32, kc - k0);
            __m512i in[16], out[16];
            for (int r = 0; r < 16; r++)
                in[r] = r < mr ? load_pairs(eoff(a, ta, r * rsa + k0), ta, cols)
                               : _mm512_setzero_si512();
            transpose16i(in, out);
            for (int64_t q = 0; q < (cols + 1) / 2; q++)
                _mm512_mask_storeu_epi32(dst + (k0 / 2 + q) * BG_MR, emk_lane_mask(BG_MR), out[q]);
        }
        return;
    }
    if (rsa == 1) { /* contiguous along i: one vector per k */
        for (int64_t p = 0; p < kp; p++) {
            int has_hi = 2 * p + 1 < kc;
            __m512i w = load_pairs_across(eoff(a, ta, 2 * p * csa),
                                          eoff(a, ta, (2 * p + has_hi) * csa), has_hi, ta, mr);
            _mm512_mask_storeu_epi32(dst + p * BG_MR, emk_lane_mask(BG_MR), w);
        }
        return;
    }
#endif
    for (int64_t p = 0; p < kp; p++)
        for (int64_t i = 0; i < BG_MR; i++) {
            uint32_t w = 0;
            if (i < mr) {
                w = get_bf16(a, ta, i * rsa + 2 * p * csa);
                if (2 * p + 1 < kc)
                    w |= get_bf16(a, ta, i * rsa + (2 * p + 1) * csa) << 16;
            }
            dst[p * BG_MR + i] = w;
        }
}

/* nleft >= nr: valid columns from b on (bounds the software prefetches) */
static void pack_pairs_b_panel(int64_t nr, int64_t nleft, int64_t kc, const void *b, emk_type tb,
                               int64_t rsb, int64_t csb, uint32_t *dst)
{
    int64_t kp = (kc + 1) / 2;
#if BG_AVX512
    if (csb == 1) { /* rows of B contiguous along j (pack_pairs_b_block walks whole rows) */
        for (int64_t p = 0; p < kp; p++) {
            int has_hi = 2 * p + 1 < kc;
            for (int v = 0; v < BG_NV; v++) {
                int64_t n = nr - 16 * v;
                __m512i w = n > 0 ? load_pairs_across(eoff(b, tb, 2 * p * rsb + 16 * v),
                                                      eoff(b, tb, (2 * p + has_hi) * rsb + 16 * v),
                                                      has_hi, tb, n)
                                  : _mm512_setzero_si512();
                _mm512_store_si512(dst + p * BG_NR + 16 * v, w);
            }
        }
        return;
    }
    if (rsb == 1) { /* B = W^T: 16 rows of W at a time, pairs transposed 16 x 16 */
        int64_t pf = BG_PACK_PF_BYTES / (int64_t)esize(tb); /* prefetch distance, elements */
        for (int v = 0; v < BG_NV; v++) {
            int64_t rows = nr - 16 * v;
            for (int64_t k0 = 0; k0 < kc; k0 += 32) {
                int64_t cols = min64(32, kc - k0);
                uint32_t *d = dst + (k0 / 2) * BG_NR + 16 * v;
                int64_t kq = k0 + pf, jq = 16 * v;
                if (kq >= kc)
                    kq -= kc, jq += 16;
                if (kq < kc)
                    for (int64_t r = jq; r < jq + 16 && r < nleft; r++)
                        _mm_prefetch((const char *)eoff(b, tb, r * csb + kq), _MM_HINT_T0);
                if (rows > 0) {
                    __m512i in[16], out[16];
                    for (int r = 0; r < 16; r++)
                        in[r] = r < rows ? load_pairs(eoff(b, tb, (16 * v + r) * csb + k0), tb, cols)
                                         : _mm512_setzero_si512();
                    transpose16i(in, out);
                    for (int64_t q = 0; q < (cols + 1) / 2; q++)
                        _mm512_store_si512(d + q * BG_NR, out[q]);
                } else {
                    for (int64_t q = 0; q < (cols + 1) / 2; q++)
                        _mm512_store_si512(d + q * BG_NR, _mm512_setzero_si512());
                }
            }
        }
        return;
    }
#else
    (void)nleft;
#endif
    for (int64_t p = 0; p < kp; p++)
        for (int64_t j = 0; j < BG_NR; j++) {
            uint32_t w = 0;
            if (j < nr) {
                w = get_bf16(b, tb, 2 * p * rsb + j * csb);
                if (2 * p + 1 < kc)
                    w |= get_bf16(b, tb, (2 * p + 1) * rsb + j * csb) << 16;
            }
            dst[p * BG_NR + j] = w;
        }
}

/* ---------------------------------------------------------------------------------------------
   EXACT mode packing of bf16 operands into emk_sgemm's f32 panel layout (A: kc x SG_MR,
   B: kc x SG_NR per panel, zero padded); f32 operands use gemm.c's packers.
   --------------------------------------------------------------------------------------------- */
static void widen_a_panel(int64_t mr, int64_t kc, const uint16_t *a, int64_t rsa, int64_t csa,
                          float *dst)
{
#if BG_AVX512
    if (csa == 1 && SG_MR <= 16) {
        for (int64_t k0 = 0; k0 < kc; k0 += 16) {
            int64_t cols = min64(16, kc - k0);
            __m512 in[16], out[16];
            for (int r = 0; r < 16; r++)
                in[r] = r < mr ? widen16(a + r * rsa + k0, cols) : _mm512_setzero_ps();
            emk_transpose16(in, out);
            for (int64_t c = 0; c < cols; c++)
                _mm512_mask_storeu_ps(dst + (k0 + c) * SG_MR, emk_lane_mask(SG_MR), out[c]);
        }
        return;
    }
    if (rsa == 1 && SG_MR <= 16) {
        for (int64_t k = 0; k < kc; k++)
            _mm512_mask_storeu_ps(dst + k * SG_MR, emk_lane_mask(SG_MR), widen16(a + k * csa, mr));
        return;
    }
#endif
    for (int64_t k = 0; k < kc; k++)
        for (int64_t i = 0; i < SG_MR; i++)
            dst[k * SG_MR + i] = i < mr ? bf16_to_f32(a[i * rsa + k * csa]) : 0.0f;
}

static void widen_b_panel(int64_t nr, int64_t kc, const uint16_t *b, int64_t rsb, int64_t csb,
                          float *dst)
{
#if BG_AVX512
    if (csb == 1 && SG_NR % 16 == 0) {
        for (int64_t k = 0; k < kc; k++)
            for (int64_t v = 0; v < SG_NR / 16; v++) {
                int64_t n = nr - 16 * v;
                _mm512_storeu_ps(dst + k * SG_NR + 16 * v,
                                 n > 0 ? widen16(b + k * rsb + 16 * v, n) : _mm512_setzero_ps());
            }
        return;
    }
    if (rsb == 1 && SG_NR % 16 == 0) {
        for (int64_t v = 0; v < SG_NR / 16; v++) {
            int64_t rows = nr - 16 * v;
            for (int64_t k0 = 0; k0 < kc; k0 += 16) {
                int64_t cols = min64(16, kc - k0);
                __m512 in[16], out[16];
                for (int r = 0; r < 16; r++)
                    in[r] = r < rows ? widen16(b + (16 * v + r) * csb + k0, cols) : _mm512_setzero_ps();
                emk_transpose16(in, out);
                for (int64_t c = 0; c < cols; c++)
                    _mm512_storeu_ps(dst + (k0 + c) * SG_NR + 16 * v, out[c]);
            }
        }
        return;
    }
#endif
    for (int64_t k = 0; k < kc; k++)
        for (int64_t j = 0; j < SG_NR; j++)
            dst[k * SG_NR + j] = j < nr ? bf16_to_f32(b[k * rsb + j * csb]) : 0.0f;
}

/* ---------------------------------------------------------------------------------------------
   BF16 micro-kernels: C tile (mr x nr) = or += sum over kp pairs of a[p][0..MR) . b[p][0..NR).
   C is f32 here (a bf16 C goes through the scratch block).
   --------------------------------------------------------------------------------------------- */
static void store_tile_scalar(const float *t, int64_t ldt, float *c, int64_t rsc, int64_t csc,
                              int64_t mr, int64_t nr, int accumulate)
{
    for (int64_t i = 0; i < mr; i++)
        for (int64_t j = 0; j < nr; j++) {
            float *p = c + i * rsc + j * csc;
            *p = accumulate ? t[i * ldt + j] + *p : t[i * ldt + j];
        }
}

#if BG_HW
static void bg_micro_hw(int64_t kp, const uint32_t *restrict a, const uint32_t *restrict b,
                        float *restrict c, int64_t rsc, int64_t csc, int64_t mr, int64_t nr,
                        int accumulate)
{
    _Static_assert(BG_MR == SG_MR && BG_NR == SG_NR, "the bf16 tile is emk_sgemm's shape");
    __m512 acc[BG_MR][BG_NV];
    emk_start_tile(acc, c, rsc, csc, mr, nr);
#pragma GCC unroll 4
    for (int64_t p = 0; p < kp; p++) {
        __m512bh bv[BG_NV];
#pragma GCC unroll 8
        for (int v = 0; v < BG_NV; v++)
            bv[v] = (__m512bh)_mm512_load_si512(b + p * BG_NR + 16 * v);
#pragma GCC unroll 32
        for (int i = 0; i < BG_MR; i++) {
            __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[p * BG_MR + i]);
#pragma GCC unroll 8
            for (int v = 0; v < BG_NV; v++)
                acc[i][v] = _mm512_dpbf16_ps(acc[i][v], bv[v], ai);
        }
    }
    emk_store_tile(acc, c, rsc, csc, mr, nr, accumulate);
}
#endif

static void bg_micro_portable(int64_t kp, const uint32_t *restrict a, const uint32_t *restrict b,
                              float *restrict c, int64_t rsc, int64_t csc, int64_t mr, int64_t nr,
                              int accumulate)
{
    float t[BG_MR * BG_NR];
    memset(t, 0, sizeof t);
    for (int64_t p = 0; p < kp; p++)
        for (int64_t i = 0; i < mr; i++) {
            uint32_t aw = a[p * BG_MR + i];
            for (int64_t j = 0; j < nr; j++)
                t[i * BG_NR + j] = dp_pair(t[i * BG_NR + j], aw, b[p * BG_NR + j]);
        }
    store_tile_scalar(t, BG_NR, c, rsc, csc, mr, nr, accumulate);
}

typedef void (*bg_micro_fn)(int64_t, const uint32_t *restrict, const uint32_t *restrict,
                            float *restrict, int64_t, int64_t, int64_t, int64_t, int);

static bg_micro_fn bg_micro(void)
{
#if BG_HW
    if (!force_portable)
        return bg_micro_hw;
#endif
    return bg_micro_portable;
}

/* ---------------------------------------------------------------------------------------------
   Packed driver (both modes), one thread's sub-problem; M, N, K >= 1.
   --------------------------------------------------------------------------------------------- */

/* Moves an f32 scratch block (m x n, rows ldt apart) to/from a bf16 C view. */
static void scratch_from_c(float *t, int64_t ldt, const gm_t *g, int64_t i0, int64_t j0,
                           int64_t m, int64_t n)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++)
            t[i * ldt + j] = get_f32(g->C, g->tc, (i0 + i) * g->rsc + (j0 + j) * g->csc);
}

static void scratch_to_c(const float *t, int64_t ldt, const gm_t *g, int64_t i0, int64_t j0,
                         int64_t m, int64_t n)
{
    for (int64_t i = 0; i < m; i++) {
        const float *ti = t + i * ldt;
        uint16_t *ci = (uint16_t *)g->C + (i0 + i) * g->rsc + j0 * g->csc;
#if BG_AVX512
        if (g->csc == 1) {
            for (int64_t j = 0; j < n; j += 16) {
                __mmask16 m16 = emk_lane_mask(n - j);
                __m512i r = _mm512_srli_epi32(round_hi(_mm512_maskz_loadu_ps(m16, ti + j)), 16);
                _mm256_mask_storeu_epi16(ci + j, m16, _mm512_cvtepi32_epi16(r));
            }
            continue;
        }
#endif
        for (int64_t j = 0; j < n; j++)
            ci[j * g->csc] = f32_to_bf16(ti[j]);
    }
}

static void pack_a_block(const gm_t *g, int64_t mc, int64_t kc, int64_t i0, int64_t pc, void *ap)
{
    const void *a = eoff(g->A, g->ta, i0 * g->rsa + pc * g->csa);
    if (g->bf16) {
        int64_t kp = (kc + 1) / 2;
        for (int64_t i = 0; i < mc; i += BG_MR)
            pack_pairs_a_panel(min64(BG_MR, mc - i), kc, eoff(a, g->ta, i * g->rsa), g->ta, g->rsa,
                               g->csa, (uint32_t *)ap + i * kp);
    } else if (g->ta == EMK_F32) {
        emk_sgemm_pack_a_block(mc, kc, a, g->rsa, g->csa, ap);
    } else {
        for (int64_t i = 0; i < mc; i += SG_MR)
            widen_a_panel(min64(SG_MR, mc - i), kc, (const uint16_t *)a + i * g->rsa, g->rsa, g->csa,
                          (float *)ap + i * kc);
    }
}

static void pack_b_block(const gm_t *g, int64_t kc, int64_t nc, int64_t pc, int64_t j0, void *bp)
{
    const void *b = eoff(g->B, g->tb, pc * g->rsb + j0 * g->csb);
    if (g->bf16) {
        int64_t kp = (kc + 1) / 2;
#if BG_AVX512
        if (g->csb == 1) { /* row-major B: two whole rows per k pair, read sequentially */
            uint32_t *d = bp;
            for (int64_t p = 0; p < kp; p++) {
                int has_hi = 2 * p + 1 < kc;
                const void *r0 = eoff(b, g->tb, 2 * p * g->rsb);
                const void *r1 = eoff(b, g->tb, (2 * p + has_hi) * g->rsb);
                /* rows 2p + BG_ROWS_PF, 2p + BG_ROWS_PF + 1 are read BG_ROWS_PF / 2 pairs later */
                int pf = 2 * p + BG_ROWS_PF + 1 < kc;
                const char *q0 = pf ? eoff(b, g->tb, (2 * p + BG_ROWS_PF) * g->rsb) : NULL;
                const char *q1 = pf ? eoff(b, g->tb, (2 * p + BG_ROWS_PF + 1) * g->rsb) : NULL;
                for (int64_t j = 0; j < round_up(nc, BG_NR); j += 16) {
                    int64_t jp = j / BG_NR * BG_NR; /* the panel's first column */
                    if (pf && j < nc && (j * (int64_t)esize(g->tb)) % 64 == 0) {
                        _mm_prefetch(q0 + j * (int64_t)esize(g->tb), _MM_HINT_T0);
                        _mm_prefetch(q1 + j * (int64_t)esize(g->tb), _MM_HINT_T0);
                    }
                    __m512i w = j < nc ? load_pairs_across(eoff(r0, g->tb, j), eoff(r1, g->tb, j),
                                                           has_hi, g->tb, nc - j)
                                       : _mm512_setzero_si512();
                    _mm512_store_si512(d + jp * kp + p * BG_NR + (j - jp), w);
                }
            }
            return;
        }
#endif
        for (int64_t j = 0; j < nc; j += BG_NR)
            pack_pairs_b_panel(min64(BG_NR, nc - j), nc - j, kc, eoff(b, g->tb, j * g->csb), g->tb,
                               g->rsb, g->csb, (uint32_t *)bp + j * kp);
    } else if (g->tb == EMK_F32) {
        emk_sgemm_pack_b_block(kc, nc, b, g->rsb, g->csb, bp);
    } else {
        for (int64_t j = 0; j < nc; j += SG_NR)
            widen_b_panel(min64(SG_NR, nc - j), kc, (const uint16_t *)b + j * g->csb, g->rsb, g->csb,
                          (float *)bp + j * kc);
    }
}

static void packed_serial(const gm_t *g)
{
    int bf = g->bf16;
    int64_t M = g->M, N = g->N, K = g->K;
    int64_t MR = bf ? BG_MR : SG_MR, NR = bf ? BG_NR : SG_NR, NCMAX = bf ? BG_NC : SG_NC;
    int64_t KC = bf ? bf16_kc(K) : exact_kc(K);
    int64_t MC = emk_gemm_balanced_block(M, bf ? BG_MC : SG_MC, MR);
    int64_t NC = round_up(min64(N, NCMAX), NR);
    /* panel words: bf16 pairs (KC / 2 per row or column) or floats (KC) */
    int64_t kw = bf ? KC / 2 : KC;
    int64_t a_len = round_up(MC * kw, 16), b_len = round_up(NC * kw, 16);
    int64_t MCH = M, c_len = 0; /* bf16 C: rows per f32 scratch block */
    if (g->tc == EMK_BF16) {
        int64_t rows = (int64_t)(BG_CSCRATCH_BYTES / 4) / NC;
        MCH = min64(M, max64(MC, rows / MC * MC));
        c_len = round_up(MCH * NC, 16);
    }
    emk_gemm_buf_t buf = emk_gemm_buf_acquire((size_t)(a_len + b_len + c_len) * 4);
    if (!buf.ptr) {
        scalar_gemm(g, 0, N);
        return;
    }
    float *ap = buf.ptr, *bp = ap + a_len, *cs = bp + b_len;
    bg_micro_fn micro = bg_micro();
    for (int64_t m0 = 0; m0 < M; m0 += MCH) {
        int64_t mch = min64(MCH, M - m0);
        for (int64_t jc = 0; jc < N; jc += NCMAX) {
            int64_t nc = min64(NCMAX, N - jc);
            float *ct = cs;
            int64_t rct = NC, cct = 1;
            if (g->tc == EMK_F32) {
                ct = (float *)g->C + m0 * g->rsc + jc * g->csc;
                rct = g->rsc, cct = g->csc;
            } else if (g->accumulate) {
                scratch_from_c(cs, NC, g, m0, jc, mch, nc);
            }
            for (int64_t pc = 0; pc < K; pc += KC) {
                int64_t kc = min64(KC, K - pc), kp = (kc + 1) / 2;
                int acc = g->accumulate || pc > 0;
                pack_b_block(g, kc, nc, pc, jc, bp);
                for (int64_t ic = 0; ic < mch; ic += MC) {
                    int64_t mc = min64(MC, mch - ic);
                    pack_a_block(g, mc, kc, m0 + ic, pc, ap);
                    float *cb = ct + ic * rct;
                    for (int64_t jr = 0; jr < nc; jr += NR) {
                        int64_t nr = min64(NR, nc - jr);
                        for (int64_t ir = 0; ir < mc; ir += MR) {
                            int64_t mr = min64(MR, mc - ir);
                            float *c = cb + ir * rct + jr * cct;
                            if (bf)
                                micro(kp, (const uint32_t *)ap + ir * kp, (const uint32_t *)bp + jr * kp,
                                      c, rct, cct, mr, nr, acc);
                            else
                                emk_sgemm_micro(kc, ap + ir * kc, bp + jr * kc, SG_NR, c, rct, cct,
                                                mr, nr, acc);
                        }
                    }
                }
            }
            if (g->tc == EMK_BF16)
                scratch_to_c(cs, NC, g, m0, jc, mch, nc);
        }
    }
    emk_gemm_buf_release(buf);
}

/* ---------------------------------------------------------------------------------------------
   Small M against B = W^T (rsb == 1): columns [j0, j1) of C, 16 rows of W at a time.
   --------------------------------------------------------------------------------------------- */
#if BG_AVX512
/* Loads the 16 x 32 tile (rows j..j+nr of W, k from k0, cols valid) as pair words and
   transposes it: out[q] lane r = pair q of row j + r. Prefetches BG_GEMV_PF elements ahead along
   each row (wrapping into the next 16 rows at the end of K). */
BG_INLINE void gemv_tile(const void *B, emk_type tb, int64_t csb, int64_t j, int64_t nr,
                             int64_t j1, int64_t K, int64_t k0, int64_t cols, __m512i out[16])
{
    int64_t kq = k0 + BG_GEMV_PF, jq = j;
    if (K < BG_GEMV_PF) { /* short rows (attention's q @ K^T): the next 16 rows whole, once */
        if (k0 == 0)
            for (int64_t r = j + 16; r < j + 32 && r < j1; r++)
                for (int64_t k = 0; k < K + 31; k += 32)
                    _mm_prefetch((const char *)eoff(B, tb, r * csb + min64(k, K - 1)), _MM_HINT_T0);
    } else {
        if (kq >= K)
            kq -= K, jq += 16;
        if (kq < K)
            for (int64_t r = jq; r < jq + 16 && r < j1; r++)
                _mm_prefetch((const char *)eoff(B, tb, r * csb + kq), _MM_HINT_T0);
    }
    __m512i in[16];
    for (int r = 0; r < 16; r++)
        in[r] = r < nr ? load_pairs(eoff(B, tb, (j + r) * csb + k0), tb, cols) : _mm512_setzero_si512();
    transpose16i(in, out);
}

/* Stores the running totals of M rows x 16 columns (nr valid) to C. */
static void gemv_store(const __m512 *tot, int64_t M, const gm_t *g, int64_t j, int64_t nr)
{
    __mmask16 nmask = emk_lane_mask(nr);
    for (int64_t i = 0; i < M; i++) {
        int64_t o = i * g->rsc + j * g->csc;
        if (g->csc == 1 && g->tc == EMK_F32) {
            _mm512_mask_storeu_ps((float *)g->C + o, nmask, tot[i]);
        } else if (g->csc == 1) {
            __m512i r = _mm512_srli_epi32(round_hi(tot[i]), 16);
            _mm256_mask_storeu_epi16((uint16_t *)g->C + o, nmask, _mm512_cvtepi32_epi16(r));
        } else {
            _Alignas(64) float t[16];
            _mm512_store_ps(t, tot[i]);
            for (int64_t q = 0; q < nr; q++)
                put_c(g->C, g->tc, o + q * g->csc, t[q]);
        }
    }
}

/* Combines one K block's sums into the running totals as the packed paths' stores do. */
BG_INLINE void gemv_combine(__m512 *tot, const __m512 *acc, int64_t M, const gm_t *g,
                                int64_t j, int64_t nr, int first)
{
    __mmask16 nmask = emk_lane_mask(nr);
    for (int64_t i = 0; i < M; i++) {
        if (!first) {
            tot[i] = _mm512_add_ps(acc[i], tot[i]);
        } else if (g->accumulate) {
            int64_t o = i * g->rsc + j * g->csc;
            __m512 old;
            if (g->csc == 1 && g->tc == EMK_F32) {
                old = _mm512_maskz_loadu_ps(nmask, (const float *)g->C + o);
            } else if (g->csc == 1) {
                __m512i w = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(nmask, (const uint16_t *)g->C + o));
                old = _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
            } else {
                _Alignas(64) float t[16] = {0};
                for (int64_t q = 0; q < nr; q++)
                    t[q] = get_f32(g->C, g->tc, o + q * g->csc);
                old = _mm512_load_ps(t);
            }
            tot[i] = _mm512_add_ps(acc[i], old);
        } else {
            tot[i] = acc[i];
        }
    }
}

/* The small-M kernels below are instantiated per M (1..4, a compile-time constant) so that
   the accumulators and the transposed tile stay in registers; a full 32-k tile runs a loop of
   constant length. */
#if BG_HW
BG_INLINE void bf16_pairs_step(__m512 *acc, const __m512i *out, const uint32_t *ak, int64_t kpa,
                               int64_t npairs, const int M)
{
    if (npairs == 16) {
#pragma GCC unroll 16
        for (int q = 0; q < 16; q++)
#pragma GCC unroll 4
            for (int i = 0; i < M; i++)
                acc[i] = _mm512_dpbf16_ps(acc[i], (__m512bh)out[q],
                                          (__m512bh)_mm512_set1_epi32((int)ak[i * kpa + q]));
        return;
    }
    for (int64_t q = 0; q < npairs; q++)
#pragma GCC unroll 4
        for (int i = 0; i < M; i++)
            acc[i] = _mm512_dpbf16_ps(acc[i], (__m512bh)out[q],
                                      (__m512bh)_mm512_set1_epi32((int)ak[i * kpa + q]));
}

/* BF16 mode, small M against a row-major B (csb == 1: attention's weights @ cached values in a
   decode step): columns [j0, j1) of C, 64 at a time, no packing. Per k pair the two rows of B are
   zipped into pair words exactly as pack_b_block packs them, then fed to vdpbf16ps in the packed
   path's K blocks and order, so the bits are the packed path's. */
BG_INLINE void rows_bf16_body(const gm_t *g, const uint32_t *apairs, int64_t kpa, int64_t j0, int64_t j1,
                              const int M)
{
    int64_t K = g->K, KC = bf16_kc(K);
    for (int64_t j = j0; j < j1; j += 64) {
        int64_t ncol = min64(64, j1 - j);
        int nv = (int)((ncol + 15) / 16);
        __m512 tot[4][BG_GEMV_MAX_M], acc[4][BG_GEMV_MAX_M];
        for (int64_t pc = 0; pc < K; pc += KC) {
            int64_t kc = min64(KC, K - pc), kp = (kc + 1) / 2;
            for (int v = 0; v < 4; v++)
                for (int i = 0; i < M; i++)
                    acc[v][i] = _mm512_setzero_ps();
            for (int64_t p = 0; p < kp; p++) {
                int has_hi = 2 * p + 1 < kc;
                const void *r0 = eoff(g->B, g->tb, (pc + 2 * p) * g->rsb + j);
                const void *r1 = eoff(g->B, g->tb, (pc + 2 * p + has_hi) * g->rsb + j);
                __m512i w[4];
#pragma GCC unroll 4
                for (int v = 0; v < 4; v++)
                    w[v] = v < nv ? load_pairs_across(eoff(r0, g->tb, 16 * v), eoff(r1, g->tb, 16 * v), has_hi,
                                                      g->tb, ncol - 16 * v)
                                  : _mm512_setzero_si512();
#pragma GCC unroll 4
                for (int i = 0; i < M; i++) {
                    __m512bh a = (__m512bh)_mm512_set1_epi32((int)apairs[i * kpa + pc / 2 + p]);
#pragma GCC unroll 4
                    for (int v = 0; v < 4; v++)
                        if (v < nv)
                            acc[v][i] = _mm512_dpbf16_ps(acc[v][i], (__m512bh)w[v], a);
                }
            }
            for (int v = 0; v < nv; v++)
                gemv_combine(tot[v], acc[v], M, g, j + 16 * v, min64(16, ncol - 16 * v), pc == 0);
        }
        for (int v = 0; v < nv; v++)
            gemv_store(tot[v], M, g, j + 16 * v, min64(16, ncol - 16 * v));
    }
}

static void rows_bf16_hw(const gm_t *g, const uint32_t *apairs, int64_t kpa, int64_t j0, int64_t j1)
{
    /* a small B (a head's cached values: 128 rows of 64) is read once, from memory in a decode
       step: ask for all of its lines first, so the misses overlap instead of coming row by row */
    int64_t row_bytes = (j1 - j0) * (int64_t)esize(g->tb);
    if (g->K * row_bytes <= ((int64_t)64 << 10))
        for (int64_t k = 0; k < g->K; k++)
            for (int64_t b = 0; b < row_bytes + 63; b += 64)
                _mm_prefetch((const char *)eoff(g->B, g->tb, k * g->rsb + j0) + min64(b, row_bytes - 1), _MM_HINT_T0);
    switch (g->M) {
    case 1: rows_bf16_body(g, apairs, kpa, j0, j1, 1); break;
    case 2: rows_bf16_body(g, apairs, kpa, j0, j1, 2); break;
    case 3: rows_bf16_body(g, apairs, kpa, j0, j1, 3); break;
    default: rows_bf16_body(g, apairs, kpa, j0, j1, 4); break;
    }
}
#endif

/* EXACT mode, bf16 W: af holds the M rows of A widened (row stride K). The same fused
   multiply-adds in k order as emk_sgemm (sgemm_gemv_cols and the packed kernel). */
BG_INLINE void exact_pair_fma(__m512 *acc, __m512i w, const float *ak, int64_t K, int both,
                              const int M)
{
    __m512 lo = _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
    __m512 hi = _mm512_castsi512_ps(_mm512_and_si512(w, _mm512_set1_epi32((int)0xFFFF0000u)));
#pragma GCC unroll 4
    for (int i = 0; i < M; i++)
        acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(ak[i * K]), lo, acc[i]);
    if (both)
#pragma GCC unroll 4
        for (int i = 0; i < M; i++)
            acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(ak[i * K + 1]), hi, acc[i]);
}

/* EXACT mode's step over one transposed tile (cols k, pair words in out): af + k0 holds the M rows
   of A widened (row stride K) */
BG_INLINE void exact_pairs_step(__m512 *acc, const __m512i *out, const float *ak, int64_t K, int64_t cols,
                                const int M)
{
    if (cols == 32) {
#pragma GCC unroll 16
        for (int q = 0; q < 16; q++)
            exact_pair_fma(acc, out[q], ak + 2 * q, K, 1, M);
        return;
    }
    for (int64_t q = 0; q < (cols + 1) / 2; q++)
        exact_pair_fma(acc, out[q], ak + 2 * q, K, 2 * q + 1 < cols, M);
}

/* Small M against B = W^T, columns [j0, j1) of C, 16 at a time: 16 rows of W transposed per 32 k
   (gemv_tile), each K block's sums combined into the totals as the packed paths store them. BF16
   mode (exact 0, vdpbf16ps only): a holds A's rows as pair words (row stride lda = kpa); EXACT
   mode (exact 1): a holds them widened to f32 (lda = K). */
BG_INLINE void gemv_cols_body(const gm_t *g, const void *a, int64_t lda, int64_t j0, int64_t j1, const int M,
                              const int exact)
{
    int64_t K = g->K, KC = exact ? exact_kc(K) : bf16_kc(K);
    for (int64_t j = j0; j < j1; j += 16) {
        int64_t nr = min64(16, j1 - j);
        __m512 tot[BG_GEMV_MAX_M];
        for (int i = 0; i < BG_GEMV_MAX_M; i++)
            tot[i] = _mm512_setzero_ps();
        for (int64_t pc = 0; pc < K; pc += KC) {
            int64_t kc = min64(KC, K - pc);
            __m512 acc[BG_GEMV_MAX_M];
            for (int i = 0; i < M; i++)
                acc[i] = _mm512_setzero_ps();
            for (int64_t k0 = pc; k0 < pc + kc; k0 += 32) {
                int64_t cols = min64(32, pc + kc - k0);
                __m512i out[16];
                gemv_tile(g->B, g->tb, g->csb, j, nr, j1, K, k0, cols, out);
                if (exact)
                    exact_pairs_step(acc, out, (const float *)a + k0, lda, cols, M);
#if BG_HW
                else
                    bf16_pairs_step(acc, out, (const uint32_t *)a + k0 / 2, lda, (cols + 1) / 2, M);
#endif
            }
            gemv_combine(tot, acc, M, g, j, nr, pc == 0);
        }
        gemv_store(tot, M, g, j, nr);
    }
}

/* gemv_cols_body with M (1..4) and the mode as compile-time constants */
static void gemv_cols(const gm_t *g, const void *a, int64_t lda, int64_t j0, int64_t j1, int exact)
{
#define GEMV_CASES(X)                                                                              \
    switch (g->M) {                                                                                \
    case 1: gemv_cols_body(g, a, lda, j0, j1, 1, X); break;                                         \
    case 2: gemv_cols_body(g, a, lda, j0, j1, 2, X); break;                                         \
    case 3: gemv_cols_body(g, a, lda, j0, j1, 3, X); break;                                         \
    default: gemv_cols_body(g, a, lda, j0, j1, 4, X); break;                                        \
    }
    if (exact)
        GEMV_CASES(1)
    else
        GEMV_CASES(0)
#undef GEMV_CASES
}
#endif /* BG_AVX512 */

/* ---------------------------------------------------------------------------------------------
   Entry point.
   --------------------------------------------------------------------------------------------- */

/* Runs body(g, lo, hi) over column ranges (multiples of 16) of N on nt threads. */
#ifdef _OPENMP
#define PARALLEL_COLUMNS(nt, N, CALL)                                                              \
    do {                                                                                           \
        if (nt <= 1) { /* no parallel region: it costs more than a tiny product */                  \
            int64_t lo = 0, hi = N;                                                                \
            CALL;                                                                                  \
            break;                                                                                 \
        }                                                                                          \
        _Pragma("omp parallel num_threads(nt)")                                                    \
        {                                                                                          \
            int64_t lo, hi;                                                                        \
            emk_gemm_split_range(N, 16, omp_get_num_threads(), omp_get_thread_num(), &lo, &hi);    \
            if (hi > lo)                                                                           \
                CALL;                                                                              \
        }                                                                                          \
    } while (0)
#else
#define PARALLEL_COLUMNS(nt, N, CALL)                                                              \
    do {                                                                                           \
        int64_t lo = 0, hi = N;                                                                    \
        (void)nt;                                                                                  \
        CALL;                                                                                      \
    } while (0)
#endif

#if BG_HW
#define BG_SMALL_A_WORDS 2048 /* A pairs of a small-M product up to this many words go on the stack */

/* The M (<= 4) rows of A as pair words (row stride kpa) in ap. */
static void small_a_pairs(const gm_t *g, int64_t kpa, uint32_t *ap)
{
    for (int64_t i = 0; i < g->M; i++)
        for (int64_t p = 0; p < kpa; p++) {
            uint32_t w = get_bf16(g->A, g->ta, i * g->rsa + 2 * p * g->csa);
            if (2 * p + 1 < g->K)
                w |= get_bf16(g->A, g->ta, i * g->rsa + (2 * p + 1) * g->csa) << 16;
            ap[i * kpa + p] = w;
        }
}

/* Small M, BF16 mode on the hardware, B = W^T (rows 0) or row-major B (rows 1). Returns 0 if it
   did not run (no buffer). */
static int run_small_bf16(const gm_t *g, int nt, int rows)
{
    int64_t kpa = (g->K + 1) / 2;
    _Alignas(64) uint32_t local[BG_SMALL_A_WORDS];
    emk_gemm_buf_t buf = {local, -1};
    int pooled = g->M * kpa > BG_SMALL_A_WORDS;
    if (pooled && !(buf = emk_gemm_buf_acquire((size_t)(g->M * kpa) * 4)).ptr)
        return 0;
    uint32_t *ap = buf.ptr;
    small_a_pairs(g, kpa, ap);
    if (rows)
        PARALLEL_COLUMNS(nt, g->N, rows_bf16_hw(g, ap, kpa, lo, hi));
    else
        PARALLEL_COLUMNS(nt, g->N, gemv_cols(g, ap, kpa, lo, hi, 0));
    if (pooled)
        emk_gemm_buf_release(buf);
    return 1;
}
#endif

/* Small M, B = W^T. Returns 0 if it did not run (no buffer). */
static int run_gemv(const gm_t *g, int nt)
{
#if BG_AVX512
    int64_t M = g->M, K = g->K;
    if (g->bf16) {
#if BG_HW
        if (!force_portable)
            return run_small_bf16(g, nt, 0);
#endif
        PARALLEL_COLUMNS(nt, g->N, scalar_gemm(g, lo, hi));
        return 1;
    }
    emk_gemm_buf_t buf = emk_gemm_buf_acquire((size_t)(M * K) * 4);
    if (!buf.ptr)
        return 0;
    float *af = buf.ptr;
    for (int64_t i = 0; i < M; i++)
        for (int64_t k = 0; k < K; k++)
            af[i * K + k] = get_f32(g->A, g->ta, i * g->rsa + k * g->csa);
    PARALLEL_COLUMNS(nt, g->N, gemv_cols(g, af, K, lo, hi, 1));
    emk_gemm_buf_release(buf);
    return 1;
#else
    if (g->bf16) {
        PARALLEL_COLUMNS(nt, g->N, scalar_gemm(g, lo, hi));
        return 1;
    }
    return 0;
#endif
}

void emk_gemm(int64_t M, int64_t N, int64_t K,
              const void *A, emk_type ta, int64_t rsa, int64_t csa,
              const void *B, emk_type tb, int64_t rsb, int64_t csb,
              void *C, emk_type tc, int64_t rsc, int64_t csc, int accumulate, emk_mm_mode mode, int parallel)
{
    int bf = mode == EMK_MM_BF16;
    if (M <= 0 || N <= 0)
        return;
    if (!bf && ta == EMK_F32 && tb == EMK_F32 && tc == EMK_F32) {
        emk_sgemm(M, N, K, A, rsa, csa, B, rsb, csb, C, rsc, csc, accumulate, parallel);
        return;
    }
    if (K <= 0) { /* C = 0, or C unchanged */
        if (!accumulate)
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++)
                    put_c(C, tc, i * rsc + j * csc, 0.0f);
        return;
    }
    gm_t g = {M, N, K, A, rsa, csa, B, rsb, csb, C, rsc, csc, ta, tb, tc, accumulate, bf};
    int nt = emk_gemm_num_threads(M, N, K, parallel);

    /* EXACT with f32 B and C: emk_sgemm on a widened copy of the (few) rows of A, which keeps its
       skinny paths (B read in place, the W^T gemv). */
    if (!bf && tb == EMK_F32 && tc == EMK_F32 && M <= 6 * SG_MR) {
        emk_gemm_buf_t buf = emk_gemm_buf_acquire((size_t)(M * K) * 4);
        if (buf.ptr) {
            float *af = buf.ptr;
            for (int64_t i = 0; i < M; i++)
                for (int64_t k = 0; k < K; k++)
                    af[i * K + k] = get_f32(A, ta, i * rsa + k * csa);
            emk_sgemm(M, N, K, af, K, 1, B, rsb, csb, C, rsc, csc, accumulate, parallel);
            emk_gemm_buf_release(buf);
            return;
        }
    }
    /* Few rows against W^T: stream W once. */
    if (M <= BG_GEMV_MAX_M && rsb == 1 && (bf || tb == EMK_BF16) && run_gemv(&g, nt))
        return;
#if BG_HW
    /* Few rows against a row-major B (attention's weights @ cached values): no packing. */
    if (M <= BG_GEMV_MAX_M && csb == 1 && bf && !force_portable && run_small_bf16(&g, nt, 1))
        return;
#endif
    if (nt <= 1) {
        packed_serial(&g);
        return;
    }
    /* Split the wider output dimension so each thread re-packs only the smaller operand. */
    int split_n = N >= M;
    int64_t unit = split_n ? (bf ? BG_NR : SG_NR) : (bf ? BG_MR : SG_MR);
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
    {
        int64_t lo, hi;
        emk_gemm_split_range(split_n ? N : M, unit, omp_get_num_threads(), omp_get_thread_num(), &lo, &hi);
        if (hi > lo) {
            gm_t s = split_n ? sub_problem(&g, 0, M, lo, hi - lo) : sub_problem(&g, lo, hi - lo, 0, N);
            packed_serial(&s);
        }
    }
#else
    (void)unit, (void)sub_problem;
    packed_serial(&g);
#endif
}
