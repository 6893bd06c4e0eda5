/* Internal interface between the GEMM files (not installed, not public API): gemm.c (emk_sgemm,
   emk_dgemm) and gemm_bf16.c (emk_gemm) share the kernel selection, the f32 blocking parameters
   (emk_gemm's EXACT mode must split K exactly as emk_sgemm does to give its bits), the
   packing-buffer pool, the threading helpers, and the f32 packers and micro-kernel. */
#ifndef EMBER_OPS_GEMM_IMPL_H
#define EMBER_OPS_GEMM_IMPL_H

#include "gemm.h"

#include <stddef.h>
#include <stdint.h>

/* Kernel selection: AVX-512F, else AVX2 + FMA, else plain C. Define EMK_GEMM_PORTABLE to force
   the plain-C kernel (for testing it on a machine that has the others). */
#if defined(__AVX512F__) && !defined(EMK_GEMM_PORTABLE)
#define EMK_SGEMM_AVX512 1
#define EMK_SGEMM_AVX2 0
#elif defined(__AVX2__) && defined(__FMA__) && !defined(EMK_GEMM_PORTABLE)
#define EMK_SGEMM_AVX512 0
#define EMK_SGEMM_AVX2 1
#else
#define EMK_SGEMM_AVX512 0
#define EMK_SGEMM_AVX2 0
#endif
#if EMK_SGEMM_AVX512 || EMK_SGEMM_AVX2
#include <immintrin.h>
#endif

/* ---------------------------------------------------------------------------------------------
   Blocking parameters (float). MR x NR is the register tile; KC x NR floats of B should fit L1,
   MC x KC floats of A should fit (half of) L2, KC x NC floats of B sit in L3.
   --------------------------------------------------------------------------------------------- */
#if EMK_SGEMM_AVX512
#ifndef SG_MR
#define SG_MR 8 /* rows of C per micro-tile */
#endif
#ifndef SG_NV
#define SG_NV 3 /* zmm vectors (16 floats) per row of the micro-tile */
#endif
#define SG_NR (16 * SG_NV) /* columns of C per micro-tile */
#elif EMK_SGEMM_AVX2
#define SG_MR 6 /* 6 x 16: 12 ymm accumulators */
#define SG_NR 16
#else
#define SG_MR 4 /* plain C: a shape GCC reliably keeps in vector registers */
#define SG_NR 32
#endif

#ifndef SG_KC
#define SG_KC 512 /* max; the actual KC splits K evenly (multiple of 16) */
#endif
#ifndef SG_MC
#define SG_MC (SG_MR * 24) /* max; the actual MC splits M evenly (multiple of MR) */
#endif
#ifndef SG_NC
#define SG_NC 3072
#endif
#ifndef SG_DIRECT_B_MAX_M /* up to this many rows, row-major B is used in place, unpacked */
#define SG_DIRECT_B_MAX_M (6 * SG_MR)
#endif

/* A 64-byte aligned scratch buffer from the process-wide pool (slot >= 0) or malloc (slot -1);
   ptr is NULL on failure. Released with emk_gemm_buf_release. */
typedef struct {
    void *ptr;
    int slot;
} emk_gemm_buf_t;
emk_gemm_buf_t emk_gemm_buf_acquire(size_t bytes);
void emk_gemm_buf_release(emk_gemm_buf_t b);

/* How many threads a call of M*N*K multiply-adds should use (1 inside a parallel region). */
int emk_gemm_num_threads(int64_t M, int64_t N, int64_t K, int parallel);
/* Splits [0, len) into `parts` contiguous ranges whose boundaries are multiples of `unit`
   (except the end); writes part `idx`'s range to [*lo, *hi). Ranges may be empty. */
void emk_gemm_split_range(int64_t len, int64_t unit, int parts, int idx, int64_t *lo, int64_t *hi);
/* Largest block <= max_blk (a multiple of unit) that splits len into equal-ish blocks. */
int64_t emk_gemm_balanced_block(int64_t len, int64_t max_blk, int64_t unit);

/* emk_sgemm's packers and micro-kernel. pack_a: A block (mc x kc, any strides) into MR-tall
   k-major panels at dst + i * kc; pack_b: B block (kc x nc) into NR-wide panels at dst + j * kc.
   micro: C tile (mr x nr) = (accumulate ? C + : ) packed A panel (kc x MR) @ B panel (rows ldb
   apart), the f32 kernel emk_sgemm runs. */
void emk_sgemm_pack_a_block(int64_t mc, int64_t kc, const float *a, int64_t rsa, int64_t csa, float *dst);
void emk_sgemm_pack_b_block(int64_t kc, int64_t nc, const float *b, int64_t rsb, int64_t csb, float *dst);
void emk_sgemm_micro(int64_t kc, const float *a, const float *b, int64_t ldb, float *c, int64_t rsc,
                     int64_t csc, int64_t mr, int64_t nr, int accumulate);

/* gemm_bf16.c, for tests: force the portable (emulated vdpbf16ps) EMK_MM_BF16 path on a CPU that
   has avx512_bf16 (not thread-safe against concurrent emk_gemm calls); whether this build has
   the vdpbf16ps kernels at all. */
void emk_gemm_bf16_force_portable(int on);
int emk_gemm_bf16_has_hw(void);

#if EMK_SGEMM_AVX512
static inline __mmask16 emk_lane_mask(int64_t n) /* first min(n, 16) lanes set; n >= 0 */
{
    return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
}

/* In-register transpose of a 16 x 16 float tile: in[r] is row r, out[c] becomes column c. */
static inline void emk_transpose16(const __m512 in[16], __m512 out[16])
{
    __m512 t[16], q[16];
    /* Interleave 32-bit elements of row pairs: per 128-bit lane, t = r0[0] r1[0] r0[1] r1[1]. */
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(in[2 * i], in[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(in[2 * i], in[2 * i + 1]);
    }
    /* Interleave 64-bit pairs: q[4g + c], 128-bit lane L = rows 4g..4g+3 of column 4L + c. */
    for (int g = 0; g < 4; g++) {
        __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 1]);
        __m512d c = _mm512_castps_pd(t[4 * g + 2]), d = _mm512_castps_pd(t[4 * g + 3]);
        q[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        q[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        q[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        q[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    /* Gather 128-bit lane L of q[c], q[4 + c], q[8 + c], q[12 + c] into out[4L + c]. */
    for (int c = 0; c < 4; c++) {
        __m512 u0 = _mm512_shuffle_f32x4(q[c], q[4 + c], 0x44);     /* g0.L0 g0.L1 g1.L0 g1.L1 */
        __m512 u1 = _mm512_shuffle_f32x4(q[c], q[4 + c], 0xEE);     /* g0.L2 g0.L3 g1.L2 g1.L3 */
        __m512 u2 = _mm512_shuffle_f32x4(q[8 + c], q[12 + c], 0x44); /* g2.L0 g2.L1 g3.L0 g3.L1 */
        __m512 u3 = _mm512_shuffle_f32x4(q[8 + c], q[12 + c], 0xEE); /* g2.L2 g2.L3 g3.L2 g3.L3 */
        out[0 + c] = _mm512_shuffle_f32x4(u0, u2, 0x88);
        out[4 + c] = _mm512_shuffle_f32x4(u0, u2, 0xDD);
        out[8 + c] = _mm512_shuffle_f32x4(u1, u3, 0x88);
        out[12 + c] = _mm512_shuffle_f32x4(u1, u3, 0xDD);
    }
}

/* Zeroes an MR x NV-vector register tile of f32 sums and, when C's rows are contiguous, starts
   fetching the C tile (rows < mr, columns < nr) it will be stored to: the start of emk_sgemm's and
   gemm_bf16.c's micro-kernels, whose end is emk_store_tile. */
static inline __attribute__((always_inline)) void emk_start_tile(__m512 acc[SG_MR][SG_NV], const float *c,
                                                                 int64_t rsc, int64_t csc, int64_t mr, int64_t nr)
{
#pragma GCC unroll 32
    for (int i = 0; i < SG_MR; i++)
#pragma GCC unroll 8
        for (int v = 0; v < SG_NV; v++)
            acc[i][v] = _mm512_setzero_ps();
    if (csc == 1)
        for (int64_t i = 0; i < mr; i++)
            for (int64_t j = 0; j < nr; j += 16)
                _mm_prefetch((const char *)(c + i * rsc + j), _MM_HINT_T0);
}

/* Writes an MR x NV-vector register tile of f32 sums to C (rows < mr, columns < nr), added to C
   when accumulate: masked vector stores when rows of C are contiguous, otherwise through a stack
   tile and scalar strided stores. emk_sgemm's micro-kernel and gemm_bf16.c's vdpbf16ps kernel
   (the same 8 x 48 tile) both store with it. */
static inline void emk_store_tile(__m512 acc[SG_MR][SG_NV], float *c, int64_t rsc,
                                  int64_t csc, int64_t mr, int64_t nr, int accumulate)
{
    if (csc == 1) {
        for (int i = 0; i < SG_MR && i < mr; i++) {
            float *ci = c + i * rsc;
            for (int v = 0; v < SG_NV && 16 * v < nr; v++) {
                __mmask16 m = emk_lane_mask(nr - 16 * v);
                __m512 x = acc[i][v];
                if (accumulate)
                    x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, ci + 16 * v));
                _mm512_mask_storeu_ps(ci + 16 * v, m, x);
            }
        }
        return;
    }
    _Alignas(64) float t[SG_MR * SG_NR];
    for (int i = 0; i < SG_MR; i++)
        for (int v = 0; v < SG_NV; v++)
            _mm512_store_ps(t + i * SG_NR + 16 * v, acc[i][v]);
    for (int64_t i = 0; i < mr; i++)
        for (int64_t j = 0; j < nr; j++) {
            float *p = c + i * rsc + j * csc;
            *p = accumulate ? *p + t[i * SG_NR + j] : t[i * SG_NR + j];
        }
}

#endif /* EMK_SGEMM_AVX512 */

#endif /* EMBER_OPS_GEMM_IMPL_H */
