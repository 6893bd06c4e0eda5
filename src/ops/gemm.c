/* GEMM kernels, GotoBLAS/BLIS style. For C (M x N) += A (M x K) @ B (K x N) the driver walks
   N in blocks of NC columns, K in blocks of KC, M in blocks of MC rows (KC and MC are chosen to
   split K and M evenly). Each KC x NC block of B is packed into NR-wide column panels (k-major:
   panel[k][0..NR)), each MC x KC block of A into MR-tall row panels (panel[k][0..MR)), both
   zero-padded, so the micro-kernel never sees a ragged input edge. The AVX-512 micro-kernel
   keeps an 8 x 48 tile of C in 24 zmm registers; per k it loads three vectors of B and
   broadcasts eight values of A into 24 FMAs. Ragged M/N edges are handled at store time with
   masks. Of 6x64, 8x48, 9x48, 12x32 and 14x32, 8 x 48 measured as fast as or slightly faster
   than the rest on the Zen 5 dev box (full-width 512-bit FMA), and it wastes no padding on
   M = 256 or N = 768/2304/3072. A B micro-panel
   (KC x 48) is reused from L1/L2 across the A block, which streams from L2; the B block sits
   in L3. For skinny problems (M <= 6 MR) with row-major B, packing B would cost more than it
   saves, so B is read in place; for M <= 4 rows against B = W^T (rsb == 1: a linear layer's
   forward, a decode step) sgemm_gemv_cols transposes 16 rows of W in registers and uses them at
   once (no packing; each weight byte read once; the same k order and blocks as the packed path,
   so the bits match). Reading 16 rows of W side by side (there and when packing a transposed B)
   is a pattern the hardware prefetcher follows poorly, so both issue software prefetches along
   the rows (1.5-2x on a decode step's cold weights). Packing reads any strided view:
   contiguous rows or columns use AVX-512 loads (with a 16 x 16 in-register transpose when the
   view runs the "wrong" way), anything else scalar loops. Threads split the output into
   disjoint column (or row) ranges, each with its own packing buffer from a small process-wide
   pool, so a call needs no locks or barriers inside. Without AVX-512 an AVX2/FMA 6 x 16 kernel or a plain-C 4 x 32 kernel (which
   the compiler vectorizes) runs under the same driver. emk_dgemm is a simpler float64 version of
   the same structure with a plain-C 4 x 32 register tile. */
#include "gemm_impl.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Packing-buffer pool (see below); off under AddressSanitizer so every buffer is exact-size. */
#if defined(__SANITIZE_ADDRESS__) /* gcc */
#define EMK_ASAN 1
#elif defined(__has_feature) /* clang */
#if __has_feature(address_sanitizer)
#define EMK_ASAN 1
#endif
#endif
#if !defined(__STDC_NO_ATOMICS__) && !defined(EMK_ASAN)
#define GEMM_USE_POOL 1
#include <stdatomic.h>
#else
#define GEMM_USE_POOL 0
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

/* Kernel selection (EMK_SGEMM_AVX512 / EMK_SGEMM_AVX2, EMK_GEMM_PORTABLE) and the blocking
   parameters SG_MR, SG_NR, SG_KC, SG_MC, SG_NC live in gemm_impl.h (gemm_bf16.c blocks K the same way). */

/* Fused multiply-add for the plain-C kernels (-std=c11 turns off automatic contraction). */
#if defined(__FMA__)
#define MADD_F(a, b, c) fmaf(a, b, c)
#define MADD_D(a, b, c) fma(a, b, c)
#else
#define MADD_F(a, b, c) ((a) * (b) + (c))
#define MADD_D(a, b, c) ((a) * (b) + (c))
#endif

/* Below this many multiply-adds (M*N*K) a call stays on the calling thread; each extra thread
   must also get at least this much work. */
#ifndef GEMM_PARALLEL_MIN_WORK
#define GEMM_PARALLEL_MIN_WORK (1LL << 18)
#endif

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* 64-byte aligned buffer of `bytes` bytes (rounded up, as aligned_alloc requires). */
static void *alloc_aligned(size_t bytes)
{
    size_t rounded = (bytes + 63) & ~(size_t)63;
    return aligned_alloc(64, rounded ? rounded : 64);
}

/* ---------------------------------------------------------------------------------------------
   Packing-buffer pool. Allocating the buffers per call looks free but is not: glibc returns
   freed memory above its trim threshold to the OS, so a call needing ~100-300 KiB page-faults
   its buffers in again every time (5x slower on e.g. 128 x 128 x 160). Instead a few
   process-wide slots keep their buffers between calls; a caller locks a free slot (atomic flag)
   for the duration of one serial GEMM. Slot buffers stay reachable from `buffer_pool`, so leak
   checkers do not report them; if every slot is busy the call falls back to malloc/free.
   Under AddressSanitizer the pool is off so that every buffer has its exact size.
   --------------------------------------------------------------------------------------------- */
#if GEMM_USE_POOL
#define POOL_SLOTS 16
#define POOL_GRAIN ((size_t)64 << 10) /* slot sizes are rounded up to 64 KiB */

typedef struct {
    atomic_int busy; /* 0 free, 1 locked; guards size and ptr */
    size_t size;
    void *ptr;
} pool_slot_t;

static pool_slot_t buffer_pool[POOL_SLOTS];
#endif

/* emk_gemm_buf_t (gemm_impl.h): ptr, and slot = index into buffer_pool or -1 for a private allocation */

/* A 64-byte aligned scratch buffer of at least `bytes` bytes; ptr is NULL on failure. */
emk_gemm_buf_t emk_gemm_buf_acquire(size_t bytes)
{
#if GEMM_USE_POOL
    /* Pass 0: a free slot that is already big enough. Pass 1: any free slot, regrown. */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < POOL_SLOTS; i++) {
            pool_slot_t *s = &buffer_pool[i];
            int expected = 0;
            if (!atomic_compare_exchange_strong_explicit(&s->busy, &expected, 1,
                                                         memory_order_acquire,
                                                         memory_order_relaxed))
                continue;
            if (s->size >= bytes)
                return (emk_gemm_buf_t){s->ptr, i};
            if (pass == 1) {
                size_t size = (bytes + POOL_GRAIN - 1) / POOL_GRAIN * POOL_GRAIN;
                void *p = alloc_aligned(size);
                if (p) {
                    free(s->ptr);
                    s->ptr = p, s->size = size;
                    return (emk_gemm_buf_t){p, i};
                }
            }
            atomic_store_explicit(&s->busy, 0, memory_order_release);
        }
#endif
    return (emk_gemm_buf_t){alloc_aligned(bytes), -1};
}

void emk_gemm_buf_release(emk_gemm_buf_t b)
{
#if GEMM_USE_POOL
    if (b.slot >= 0) {
        atomic_store_explicit(&buffer_pool[b.slot].busy, 0, memory_order_release);
        return;
    }
#endif
    free(b.ptr);
}

/* ---------------------------------------------------------------------------------------------
   Threading helpers shared by the float and double paths.
   --------------------------------------------------------------------------------------------- */

/* How many threads a call of M*N*K multiply-adds should use. */
int emk_gemm_num_threads(int64_t M, int64_t N, int64_t K, int parallel)
{
#ifdef _OPENMP
    if (!parallel || omp_in_parallel())
        return 1;
    double work = (double)M * (double)N * (double)K;
    if (work < (double)GEMM_PARALLEL_MIN_WORK)
        return 1;
    int nt = parallel > 1 ? parallel : omp_get_max_threads();
    double cap = work / (double)GEMM_PARALLEL_MIN_WORK; /* at least MIN_WORK per thread */
    if ((double)nt > cap)
        nt = (int)cap;
    return nt < 1 ? 1 : nt;
#else
    (void)M; (void)N; (void)K; (void)parallel;
    return 1;
#endif
}

/* Splits [0, len) into `parts` contiguous ranges whose boundaries are multiples of `unit`
   (except the end); writes part `idx`'s range to [*lo, *hi). Ranges may be empty. */
void emk_gemm_split_range(int64_t len, int64_t unit, int parts, int idx, int64_t *lo, int64_t *hi)
{
    int64_t units = (len + unit - 1) / unit;
    int64_t u0 = units * idx / parts, u1 = units * (idx + 1) / parts;
    *lo = min64(u0 * unit, len);
    *hi = min64(u1 * unit, len);
}

/* Sets C (M x N view) to zero; used for K == 0 without accumulation. */
#define ZERO_VIEW(C, M, N, rsc, csc)                                                               \
    do {                                                                                           \
        for (int64_t i_ = 0; i_ < (M); i_++)                                                       \
            for (int64_t j_ = 0; j_ < (N); j_++)                                                   \
                (C)[i_ * (rsc) + j_ * (csc)] = 0;                                                  \
    } while (0)

/* ---------------------------------------------------------------------------------------------
   AVX-512 packing helpers.
   --------------------------------------------------------------------------------------------- */
#if EMK_SGEMM_AVX512

/* emk_lane_mask and emk_transpose16 are in gemm_impl.h (shared with gemm_bf16.c). */

/* Transposing copy of one tile: `rows` (<= 16) source rows start at src + r * ld and are read
   for `cols` (1..16) contiguous elements; column c of the tile (rows >= `rows` read as zero) is
   written to dst + c * dld under store mask `smask`. */
static void pack_tile_transposed(const float *src, int64_t ld, int64_t rows, int64_t cols,
                                 float *dst, int64_t dld, __mmask16 smask)
{
    __m512 in[16], out[16];
    __mmask16 lmask = emk_lane_mask(cols);
    for (int r = 0; r < 16; r++)
        in[r] = r < rows ? _mm512_maskz_loadu_ps(lmask, src + r * ld) : _mm512_setzero_ps();
    emk_transpose16(in, out);
    for (int c = 0; c < 16; c++)
        if (c < cols)
            _mm512_mask_storeu_ps(dst + c * dld, smask, out[c]);
}

/* A panel, A contiguous along k (row-major A, csa == 1): dst[k][i] = a[i * rsa + k]. */
static void pack_a_rows_avx512(int64_t mr, int64_t kc, const float *a, int64_t rsa, float *dst)
{
    for (int64_t k0 = 0; k0 < kc; k0 += 16)
        pack_tile_transposed(a + k0, rsa, mr, min64(16, kc - k0), dst + k0 * SG_MR, SG_MR,
                             emk_lane_mask(SG_MR));
}

/* A panel, A contiguous along i (transposed A view, rsa == 1): dst[k][i] = a[i + k * csa]. */
static void pack_a_cols_avx512(int64_t mr, int64_t kc, const float *a, int64_t csa, float *dst)
{
    __mmask16 lmask = emk_lane_mask(mr), smask = emk_lane_mask(SG_MR);
    for (int64_t k = 0; k < kc; k++)
        _mm512_mask_storeu_ps(dst + k * SG_MR, smask, _mm512_maskz_loadu_ps(lmask, a + k * csa));
}

/* B panel, B contiguous along j (row-major B, csb == 1): dst[k][j] = b[k * rsb + j]. */
static void pack_b_rows_avx512(int64_t nr, int64_t kc, const float *b, int64_t rsb, float *dst)
{
    __mmask16 m[SG_NV];
    for (int v = 0; v < SG_NV; v++)
        m[v] = emk_lane_mask(nr > 16 * v ? nr - 16 * v : 0);
    for (int64_t k = 0; k < kc; k++)
        for (int v = 0; v < SG_NV; v++)
            _mm512_store_ps(dst + k * SG_NR + 16 * v,
                            m[v] ? _mm512_maskz_loadu_ps(m[v], b + k * rsb + 16 * v)
                                 : _mm512_setzero_ps());
}

#ifndef SG_PACK_PF
#define SG_PACK_PF 256 /* software prefetch distance along a row of a transposed B view, floats */
#endif

/* B panel, B contiguous along k (transposed B view, rsb == 1): dst[k][j] = b[k + j * csb].
   Each 16 x 16 tile reads 16 rows of the view (16 rows of W in x @ W^T), an access pattern the
   hardware prefetcher follows poorly, so every tile also prefetches one line in each of the 16 rows
   SG_PACK_PF floats ahead in packing order (wrapping into the next 16 rows at the end of kc; the
   view has nleft >= nr valid columns from b on, which bounds the prefetches). */
static void pack_b_cols_avx512(int64_t nr, int64_t nleft, int64_t kc, const float *b, int64_t csb,
                               float *dst)
{
    for (int v = 0; v < SG_NV; v++) {
        int64_t rows = nr - 16 * v; /* valid columns j in this 16-wide slice */
        for (int64_t k0 = 0; k0 < kc; k0 += 16) {
            int64_t cols = min64(16, kc - k0);
            float *d = dst + k0 * SG_NR + 16 * v;
            int64_t kp = k0 + SG_PACK_PF, jp = 16 * v;
            if (kp >= kc)
                kp -= kc, jp += 16;
            if (kp < kc)
                for (int64_t r = jp; r < jp + 16 && r < nleft; r++)
                    _mm_prefetch((const char *)(b + r * csb + kp), _MM_HINT_T0);
            if (rows > 0) {
                pack_tile_transposed(b + 16 * v * csb + k0, csb, min64(rows, 16), cols, d, SG_NR,
                                     (__mmask16)0xFFFF);
            } else {
                for (int64_t c = 0; c < cols; c++)
                    _mm512_store_ps(d + c * SG_NR, _mm512_setzero_ps());
            }
        }
    }
}
#endif /* EMK_SGEMM_AVX512 */

/* ---------------------------------------------------------------------------------------------
   Packing (float). A block (mc x kc) -> ceil(mc / MR) panels of kc x MR; B block (kc x nc) ->
   ceil(nc / NR) panels of kc x NR. Padding rows/columns are zero.
   --------------------------------------------------------------------------------------------- */

/* One A panel: dst[k * MR + i] = A(i, k) for i < mr, 0 for mr <= i < MR. */
static void pack_a_panel(int64_t mr, int64_t kc, const float *a, int64_t rsa, int64_t csa,
                         float *dst)
{
#if EMK_SGEMM_AVX512
    if (csa == 1) {
        pack_a_rows_avx512(mr, kc, a, rsa, dst);
        return;
    }
    if (rsa == 1) {
        pack_a_cols_avx512(mr, kc, a, csa, dst);
        return;
    }
#endif
    for (int64_t k = 0; k < kc; k++) {
        float *d = dst + k * SG_MR;
        for (int64_t i = 0; i < mr; i++)
            d[i] = a[i * rsa + k * csa];
        for (int64_t i = mr; i < SG_MR; i++)
            d[i] = 0.0f;
    }
}

/* One B panel: dst[k * NR + j] = B(k, j) for j < nr, 0 for nr <= j < NR. */
static void pack_b_panel(int64_t nr, int64_t nleft, int64_t kc, const float *b, int64_t rsb,
                         int64_t csb, float *dst)
{
#if EMK_SGEMM_AVX512
    if (csb == 1) {
        pack_b_rows_avx512(nr, kc, b, rsb, dst);
        return;
    }
    if (rsb == 1) {
        pack_b_cols_avx512(nr, nleft, kc, b, csb, dst);
        return;
    }
#else
    (void)nleft;
#endif
    for (int64_t k = 0; k < kc; k++) {
        float *d = dst + k * SG_NR;
        for (int64_t j = 0; j < nr; j++)
            d[j] = b[k * rsb + j * csb];
        for (int64_t j = nr; j < SG_NR; j++)
            d[j] = 0.0f;
    }
}

static void pack_a_block(int64_t mc, int64_t kc, const float *a, int64_t rsa, int64_t csa,
                         float *dst)
{
    for (int64_t i = 0; i < mc; i += SG_MR)
        pack_a_panel(min64(SG_MR, mc - i), kc, a + i * rsa, rsa, csa, dst + i * kc);
}

static void pack_b_block(int64_t kc, int64_t nc, const float *b, int64_t rsb, int64_t csb,
                         float *dst)
{
    for (int64_t j = 0; j < nc; j += SG_NR)
        pack_b_panel(min64(SG_NR, nc - j), nc - j, kc, b + j * csb, rsb, csb, dst + j * kc);
}

/* ---------------------------------------------------------------------------------------------
   Micro-kernels: C tile (mr x nr, mr <= MR, nr <= NR) = or += sum_k a[k][0..MR) x b[k][0..NR).
   a: packed A panel (kc x MR); b: B panel whose row k starts at b + k * ldb (ldb = NR for a
   packed panel, the row stride of B when B is read in place).
   --------------------------------------------------------------------------------------------- */
#if EMK_SGEMM_AVX512

static void sgemm_micro(int64_t kc, const float *restrict a, const float *restrict b,
                        int64_t ldb, float *restrict c, int64_t rsc, int64_t csc, int64_t mr,
                        int64_t nr, int accumulate)
{
    __m512 acc[SG_MR][SG_NV];
    emk_start_tile(acc, c, rsc, csc, mr, nr);
#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; k++) {
        __m512 bv[SG_NV];
#pragma GCC unroll 8
        for (int v = 0; v < SG_NV; v++)
            bv[v] = _mm512_loadu_ps(b + k * ldb + 16 * v);
#pragma GCC unroll 32
        for (int i = 0; i < SG_MR; i++) {
            __m512 ai = _mm512_set1_ps(a[k * SG_MR + i]);
#pragma GCC unroll 8
            for (int v = 0; v < SG_NV; v++)
                acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
        }
    }
    emk_store_tile(acc, c, rsc, csc, mr, nr, accumulate);
}

#elif EMK_SGEMM_AVX2

static void sgemm_micro(int64_t kc, const float *restrict a, const float *restrict b,
                        int64_t ldb, float *restrict c, int64_t rsc, int64_t csc, int64_t mr,
                        int64_t nr, int accumulate)
{
    __m256 acc[SG_MR][2];
    for (int i = 0; i < SG_MR; i++)
        acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m256 b0 = _mm256_loadu_ps(b + k * ldb), b1 = _mm256_loadu_ps(b + k * ldb + 8);
#pragma GCC unroll 8
        for (int i = 0; i < SG_MR; i++) {
            __m256 ai = _mm256_broadcast_ss(a + k * SG_MR + i);
            acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
        }
    }
    if (mr == SG_MR && nr == SG_NR && csc == 1) {
        for (int i = 0; i < SG_MR; i++)
            for (int v = 0; v < 2; v++) {
                float *p = c + i * rsc + 8 * v;
                __m256 x = accumulate ? _mm256_add_ps(acc[i][v], _mm256_loadu_ps(p)) : acc[i][v];
                _mm256_storeu_ps(p, x);
            }
        return;
    }
    _Alignas(32) float t[SG_MR * SG_NR];
    for (int i = 0; i < SG_MR; i++)
        for (int v = 0; v < 2; v++)
            _mm256_store_ps(t + i * SG_NR + 8 * v, acc[i][v]);
    for (int64_t i = 0; i < mr; i++)
        for (int64_t j = 0; j < nr; j++) {
            float *p = c + i * rsc + j * csc;
            *p = accumulate ? *p + t[i * SG_NR + j] : t[i * SG_NR + j];
        }
}

#else /* portable micro-kernel */

static void sgemm_micro(int64_t kc, const float *restrict a, const float *restrict b,
                        int64_t ldb, float *restrict c, int64_t rsc, int64_t csc, int64_t mr,
                        int64_t nr, int accumulate)
{
    float acc[SG_MR][SG_NR];
    memset(acc, 0, sizeof acc);
    for (int64_t k = 0; k < kc; k++) {
        const float *restrict bk = b + k * ldb;
        for (int i = 0; i < SG_MR; i++) {
            float ai = a[k * SG_MR + i];
            for (int j = 0; j < SG_NR; j++)
                acc[i][j] = MADD_F(ai, bk[j], acc[i][j]);
        }
    }
    for (int64_t i = 0; i < mr; i++)
        for (int64_t j = 0; j < nr; j++) {
            float *p = c + i * rsc + j * csc;
            *p = accumulate ? *p + acc[i][j] : acc[i][j];
        }
}

#endif

/* ---------------------------------------------------------------------------------------------
   Float driver.
   --------------------------------------------------------------------------------------------- */

/* B operand of the macro-kernel: either the packed block (panel jr at p + jr * kc, rows NR
   apart) or, for skinny problems with row-major B, B itself (panel jr at p + jr, rows ld
   apart), whose ragged last panel is copied into `edge` (kc x NR) first. */
typedef struct {
    const float *p;
    int64_t ld;  /* distance between consecutive k rows of a panel */
    int packed;  /* 1: packed block; 0: direct row-major view */
    float *edge; /* direct mode: buffer for a ragged last panel */
} sg_bsrc_t;

/* Macro-kernel: C block (mc x nc) (+)= packed A block (mc x kc) @ B block (kc x nc). */
static void sgemm_macro(int64_t mc, int64_t nc, int64_t kc, const float *ap, sg_bsrc_t b,
                        float *c, int64_t rsc, int64_t csc, int accumulate)
{
    for (int64_t jr = 0; jr < nc; jr += SG_NR) {
        int64_t nr = min64(SG_NR, nc - jr);
        const float *bpanel = b.packed ? b.p + jr * kc : b.p + jr;
        int64_t ldb = b.ld;
        if (!b.packed && nr < SG_NR) {
            pack_b_panel(nr, nr, kc, bpanel, b.ld, 1, b.edge);
            bpanel = b.edge, ldb = SG_NR;
        }
        for (int64_t ir = 0; ir < mc; ir += SG_MR) {
            int64_t mr = min64(SG_MR, mc - ir);
            sgemm_micro(kc, ap + ir * kc, bpanel, ldb, c + ir * rsc + jr * csc, rsc, csc, mr, nr,
                        accumulate);
        }
    }
}

/* Exported for gemm_bf16.c (gemm_impl.h). */
void emk_sgemm_pack_a_block(int64_t mc, int64_t kc, const float *a, int64_t rsa, int64_t csa, float *dst)
{
    pack_a_block(mc, kc, a, rsa, csa, dst);
}

void emk_sgemm_pack_b_block(int64_t kc, int64_t nc, const float *b, int64_t rsb, int64_t csb, float *dst)
{
    pack_b_block(kc, nc, b, rsb, csb, dst);
}

void emk_sgemm_micro(int64_t kc, const float *a, const float *b, int64_t ldb, float *c, int64_t rsc,
                     int64_t csc, int64_t mr, int64_t nr, int accumulate)
{
    sgemm_micro(kc, a, b, ldb, c, rsc, csc, mr, nr, accumulate);
}

/* Naive fallback used only if packing buffers cannot be allocated. */
static void sgemm_naive(int64_t M, int64_t N, int64_t K, const float *A, int64_t rsa,
                        int64_t csa, const float *B, int64_t rsb, int64_t csb, float *C,
                        int64_t rsc, int64_t csc, int accumulate)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            float s = 0.0f;
            for (int64_t k = 0; k < K; k++)
                s += A[i * rsa + k * csa] * B[k * rsb + j * csb];
            float *p = C + i * rsc + j * csc;
            *p = accumulate ? *p + s : s;
        }
}

/* Largest block <= max_blk (a multiple of unit) that splits len into equal-ish blocks, so that
   e.g. K = 768 with KC = 512 runs as 2 x 384 rather than 512 + 256. */
int64_t emk_gemm_balanced_block(int64_t len, int64_t max_blk, int64_t unit)
{
    int64_t nblocks = (len + max_blk - 1) / max_blk;
    return min64(max_blk, round_up((len + nblocks - 1) / nblocks, unit));
}

/* Single-threaded blocked GEMM on one (sub)problem; M, N, K >= 1. */
static void sgemm_serial(int64_t M, int64_t N, int64_t K, const float *A, int64_t rsa,
                         int64_t csa, const float *B, int64_t rsb, int64_t csb, float *C,
                         int64_t rsc, int64_t csc, int accumulate)
{
    /* With few rows of A each B panel is used only once or twice: read row-major B in place. */
    int direct_b = csb == 1 && M <= SG_DIRECT_B_MAX_M;
#if EMK_SGEMM_AVX512 || EMK_SGEMM_AVX2
    /* a small B read once (a head's cached values in a decode step, from memory): ask for all of
       its lines first, so the misses overlap instead of coming row by row */
    if (direct_b && K * N * (int64_t)sizeof(float) <= ((int64_t)64 << 10))
        for (int64_t k = 0; k < K; k++)
            for (int64_t j = 0; j < N + 15; j += 16)
                _mm_prefetch((const char *)(B + k * rsb + min64(j, N - 1)), _MM_HINT_T0);
#endif
    int64_t KC = emk_gemm_balanced_block(K, SG_KC, 16), MC = emk_gemm_balanced_block(M, SG_MC, SG_MR);
    int64_t NC = direct_b ? SG_NR : round_up(min64(N, SG_NC), SG_NR);
    int64_t a_len = round_up(MC * KC, 16); /* floats; keeps the B part 64-byte aligned */
    emk_gemm_buf_t buf = emk_gemm_buf_acquire((size_t)(a_len + KC * NC) * sizeof(float));
    if (!buf.ptr) {
        sgemm_naive(M, N, K, A, rsa, csa, B, rsb, csb, C, rsc, csc, accumulate);
        return;
    }
    float *ap = buf.ptr, *bp = ap + a_len;
    for (int64_t jc = 0; jc < N; jc += SG_NC) {
        int64_t nc = min64(SG_NC, N - jc);
        for (int64_t pc = 0; pc < K; pc += KC) {
            int64_t kc = min64(KC, K - pc);
            int acc = accumulate || pc > 0;
            const float *b = B + pc * rsb + jc * csb;
            sg_bsrc_t bsrc = {b, rsb, 0, bp};
            if (!direct_b) {
                pack_b_block(kc, nc, b, rsb, csb, bp);
                bsrc = (sg_bsrc_t){bp, SG_NR, 1, NULL};
            }
            for (int64_t ic = 0; ic < M; ic += MC) {
                int64_t mc = min64(MC, M - ic);
                pack_a_block(mc, kc, A + ic * rsa + pc * csa, rsa, csa, ap);
                sgemm_macro(mc, nc, kc, ap, bsrc, C + ic * rsc + jc * csc, rsc, csc, acc);
            }
        }
    }
    emk_gemm_buf_release(buf);
}

/* Few rows of A against a B whose columns are contiguous (rsb == 1: x @ W^T with W stored
   (N, K), every linear layer's forward): the general path would pack (transpose) all of B on every
   call, which for one decode token costs more than the multiply. Here 16 columns of B (16 rows
   of W, read as 16 contiguous streams) are transposed in registers 16 k at a time and used at
   once. Lanes are columns of C and k runs in order inside the same KC blocks as sgemm_serial, with
   the same FMA and the same store (C = acc, or C = acc + C), so every element is bitwise what the
   general path gives: the slicing contract above holds across both paths. Columns [j0, j1). */
#if EMK_SGEMM_AVX512
#ifndef SG_GEMV_MAX_M
#define SG_GEMV_MAX_M 4
#endif
#ifndef SG_GEMV_PF
#define SG_GEMV_PF 256 /* prefetch distance along a row of W, floats */
#endif
static void sgemm_gemv_cols(int64_t M, int64_t j0, int64_t j1, int64_t K, const float *A, int64_t rsa,
                            int64_t csa, const float *B, int64_t csb, float *C, int64_t rsc, int64_t csc,
                            int accumulate)
{
    int64_t KC = emk_gemm_balanced_block(K, SG_KC, 16);
    for (int64_t j = j0; j < j1; j += 16) {
        int64_t nr = min64(16, j1 - j);
        __mmask16 nmask = emk_lane_mask(nr);
        /* rows shorter than the prefetch distance (attention's q @ K^T: K = 64) never reach the
           prefetch below: fetch the next 16 rows whole instead, while this tile computes */
        if (K < SG_GEMV_PF)
            for (int64_t r = j + 16; r < j + 32 && r < j1; r++)
                for (int64_t k = 0; k < K + 15; k += 16)
                    _mm_prefetch((const char *)(B + r * csb + min64(k, K - 1)), _MM_HINT_T0);
        for (int64_t pc = 0; pc < K; pc += KC) {
            int64_t kc = min64(KC, K - pc);
            __m512 acc[SG_GEMV_MAX_M];
            for (int i = 0; i < SG_GEMV_MAX_M; i++)
                acc[i] = _mm512_setzero_ps();
            for (int64_t k0 = 0; k0 < kc; k0 += 16) {
                int64_t cols = min64(16, kc - k0);
                __mmask16 kmask = emk_lane_mask(cols);
                __m512 in[16], out[16];
                /* software prefetch SG_GEMV_PF floats ahead along each of the 16 rows (one line
                   per row per tile, as many as the tile loads), wrapping into the next 16 rows
                   at the end of a row: 16 interleaved streams defeat the hardware prefetcher */
                int64_t kp = pc + k0 + SG_GEMV_PF, jp = j;
                if (kp >= K)
                    kp -= K, jp += 16;
                if (kp < K)
                    for (int64_t r = jp; r < jp + 16 && r < j1; r++)
                        _mm_prefetch((const char *)(B + r * csb + kp), _MM_HINT_T0);
                for (int r = 0; r < 16; r++)
                    in[r] = r < nr ? _mm512_maskz_loadu_ps(kmask, B + (j + r) * csb + pc + k0)
                                   : _mm512_setzero_ps();
                emk_transpose16(in, out); /* out[c] lane r = B(pc + k0 + c, j + r) */
                for (int64_t c = 0; c < cols; c++)
                    for (int64_t i = 0; i < M; i++)
                        acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(A[i * rsa + (pc + k0 + c) * csa]), out[c],
                                                 acc[i]);
            }
            int acc_c = accumulate || pc > 0;
            for (int64_t i = 0; i < M; i++) {
                float *ci = C + i * rsc + j * csc;
                if (csc == 1) {
                    __m512 x = acc[i];
                    if (acc_c)
                        x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(nmask, ci));
                    _mm512_mask_storeu_ps(ci, nmask, x);
                } else {
                    _Alignas(64) float t[16];
                    _mm512_store_ps(t, acc[i]);
                    for (int64_t q = 0; q < nr; q++)
                        ci[q * csc] = acc_c ? ci[q * csc] + t[q] : t[q];
                }
            }
        }
    }
}
#endif

void emk_sgemm(int64_t M, int64_t N, int64_t K,
               const float *A, int64_t rsa, int64_t csa,
               const float *B, int64_t rsb, int64_t csb,
               float *C, int64_t rsc, int64_t csc, int accumulate, int parallel)
{
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) {
        if (!accumulate)
            ZERO_VIEW(C, M, N, rsc, csc);
        return;
    }
    int nt = emk_gemm_num_threads(M, N, K, parallel);
#if EMK_SGEMM_AVX512
    if (M <= SG_GEMV_MAX_M && rsb == 1) {
#ifdef _OPENMP
        if (nt <= 1) { /* no OpenMP region: even an if(0) one costs about a microsecond */
            sgemm_gemv_cols(M, 0, N, K, A, rsa, csa, B, csb, C, rsc, csc, accumulate);
            return;
        }
#pragma omp parallel num_threads(nt)
        {
            int64_t lo, hi;
            emk_gemm_split_range(N, 16, omp_get_num_threads(), omp_get_thread_num(), &lo, &hi);
            if (hi > lo)
                sgemm_gemv_cols(M, lo, hi, K, A, rsa, csa, B, csb, C, rsc, csc, accumulate);
        }
#else
        sgemm_gemv_cols(M, 0, N, K, A, rsa, csa, B, csb, C, rsc, csc, accumulate);
#endif
        return;
    }
#endif
    if (nt <= 1) {
        sgemm_serial(M, N, K, A, rsa, csa, B, rsb, csb, C, rsc, csc, accumulate);
        return;
    }
    /* Split the wider output dimension so each thread re-packs only the smaller operand. */
    int split_n = N >= M;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
    {
        int parts = omp_get_num_threads(), me = omp_get_thread_num();
        int64_t lo, hi;
        emk_gemm_split_range(split_n ? N : M, split_n ? SG_NR : SG_MR, parts, me, &lo, &hi);
        if (hi > lo && split_n)
            sgemm_serial(M, hi - lo, K, A, rsa, csa, B + lo * csb, rsb, csb, C + lo * csc, rsc,
                         csc, accumulate);
        else if (hi > lo)
            sgemm_serial(hi - lo, N, K, A + lo * rsa, rsa, csa, B, rsb, csb, C + lo * rsc, rsc,
                         csc, accumulate);
    }
#else
    (void)split_n;
    (void)emk_gemm_split_range;
#endif
}

/* ---------------------------------------------------------------------------------------------
   Double path, plain C (the compiler vectorizes it for whatever ISA it targets). Same loop
   structure as the float driver with smaller blocks: B block (kc x nc) packed into DG_NR-wide
   zero-padded panels, A packed DG_MR rows at a time, and a DG_MR x DG_NR register tile whose
   fixed-size inner loops become vector FMAs (4 x 32 doubles = 16 zmm accumulators).
   --------------------------------------------------------------------------------------------- */
#define DG_MR 4
#define DG_NR 32
#define DG_KC 128
#define DG_NC 512

/* C tile (mr x nr) (+)= packed A panel ap (kc x MR) @ packed B panel bp (kc x NR). */
static void dgemm_micro(int64_t kc, const double *restrict ap, const double *restrict bp,
                        double *c, int64_t rsc, int64_t csc, int64_t mr, int64_t nr,
                        int accumulate)
{
    double acc[DG_MR][DG_NR];
    memset(acc, 0, sizeof acc);
    for (int64_t k = 0; k < kc; k++) {
        const double *restrict bk = bp + k * DG_NR;
        for (int r = 0; r < DG_MR; r++) {
            double a = ap[k * DG_MR + r];
            for (int j = 0; j < DG_NR; j++)
                acc[r][j] = MADD_D(a, bk[j], acc[r][j]);
        }
    }
    for (int64_t r = 0; r < mr; r++)
        for (int64_t j = 0; j < nr; j++) {
            double *p = c + r * rsc + j * csc;
            *p = accumulate ? *p + acc[r][j] : acc[r][j];
        }
}

/* Packs A rows (mr x kc) into ap[k * MR + r], zero rows for mr <= r < MR. */
static void dgemm_pack_a(int64_t mr, int64_t kc, const double *a, int64_t rsa, int64_t csa,
                         double *ap)
{
    for (int64_t k = 0; k < kc; k++)
        for (int64_t r = 0; r < DG_MR; r++)
            ap[k * DG_MR + r] = r < mr ? a[r * rsa + k * csa] : 0.0;
}

/* Packs the B block (kc x nc) into NR-wide panels: bp[(j / NR) * kc * NR + k * NR + j % NR]. */
static void dgemm_pack_b(int64_t kc, int64_t nc, const double *b, int64_t rsb, int64_t csb,
                         double *bp)
{
    for (int64_t j0 = 0; j0 < nc; j0 += DG_NR) {
        int64_t nr = min64(DG_NR, nc - j0);
        double *panel = bp + j0 * kc;
        for (int64_t k = 0; k < kc; k++)
            for (int64_t j = 0; j < DG_NR; j++)
                panel[k * DG_NR + j] = j < nr ? b[k * rsb + (j0 + j) * csb] : 0.0;
    }
}

static void dgemm_naive(int64_t M, int64_t N, int64_t K, const double *A, int64_t rsa,
                        int64_t csa, const double *B, int64_t rsb, int64_t csb, double *C,
                        int64_t rsc, int64_t csc, int accumulate)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0.0;
            for (int64_t k = 0; k < K; k++)
                s += A[i * rsa + k * csa] * B[k * rsb + j * csb];
            double *p = C + i * rsc + j * csc;
            *p = accumulate ? *p + s : s;
        }
}

/* Single-threaded blocked float64 GEMM; M, N, K >= 1. */
static void dgemm_serial(int64_t M, int64_t N, int64_t K, const double *A, int64_t rsa,
                         int64_t csa, const double *B, int64_t rsb, int64_t csb, double *C,
                         int64_t rsc, int64_t csc, int accumulate)
{
    int64_t kc_max = min64(K, DG_KC), nc_max = round_up(min64(N, DG_NC), DG_NR);
    int64_t a_len = round_up(kc_max * DG_MR, 8); /* doubles; keeps bp 64-byte aligned */
    emk_gemm_buf_t buf = emk_gemm_buf_acquire((size_t)(a_len + kc_max * nc_max) * sizeof(double));
    if (!buf.ptr) {
        dgemm_naive(M, N, K, A, rsa, csa, B, rsb, csb, C, rsc, csc, accumulate);
        return;
    }
    double *ap = buf.ptr, *bp = ap + a_len;
    for (int64_t jc = 0; jc < N; jc += DG_NC) {
        int64_t nc = min64(DG_NC, N - jc);
        for (int64_t pc = 0; pc < K; pc += DG_KC) {
            int64_t kc = min64(DG_KC, K - pc);
            int acc = accumulate || pc > 0;
            dgemm_pack_b(kc, nc, B + pc * rsb + jc * csb, rsb, csb, bp);
            for (int64_t i = 0; i < M; i += DG_MR) {
                int64_t mr = min64(DG_MR, M - i);
                dgemm_pack_a(mr, kc, A + i * rsa + pc * csa, rsa, csa, ap);
                for (int64_t j = 0; j < nc; j += DG_NR)
                    dgemm_micro(kc, ap, bp + j * kc, C + i * rsc + (jc + j) * csc, rsc, csc, mr,
                                min64(DG_NR, nc - j), acc);
            }
        }
    }
    emk_gemm_buf_release(buf);
}

void emk_dgemm(int64_t M, int64_t N, int64_t K,
               const double *A, int64_t rsa, int64_t csa,
               const double *B, int64_t rsb, int64_t csb,
               double *C, int64_t rsc, int64_t csc, int accumulate, int parallel)
{
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) {
        if (!accumulate)
            ZERO_VIEW(C, M, N, rsc, csc);
        return;
    }
    int nt = emk_gemm_num_threads(M, N, K, parallel);
    if (nt <= 1) {
        dgemm_serial(M, N, K, A, rsa, csa, B, rsb, csb, C, rsc, csc, accumulate);
        return;
    }
    int split_n = N >= M;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
    {
        int parts = omp_get_num_threads(), me = omp_get_thread_num();
        int64_t lo, hi;
        emk_gemm_split_range(split_n ? N : M, split_n ? DG_NR : DG_MR, parts, me, &lo, &hi);
        if (hi > lo && split_n)
            dgemm_serial(M, hi - lo, K, A, rsa, csa, B + lo * csb, rsb, csb, C + lo * csc, rsc,
                         csc, accumulate);
        else if (hi > lo)
            dgemm_serial(hi - lo, N, K, A + lo * rsa, rsa, csa, B, rsb, csb, C + lo * rsc, rsc,
                         csc, accumulate);
    }
#else
    (void)split_n;
#endif
}
