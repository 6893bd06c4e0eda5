/* Dense matrix-multiply kernels (GEMM) for the CPU backend. Every operand is a strided view
   (base pointer plus row/column element strides), so transposes and slices reach the kernels
   without copies: the packing step inside gemm.c reorders whatever layout it is given into
   cache-friendly panels. emk_sgemm is the performance path (GotoBLAS/BLIS blocking with an
   AVX-512 register-blocked micro-kernel, OpenMP over the larger of M/N); emk_dgemm is a simpler
   cache-blocked float64 path meant for reference and gradient checks. Both are thread-safe;
   packing buffers come from a small process-wide pool (kept between calls, never leaked). The
   thread count for parallel calls is the caller's (parallel >= 2; Ember passes em_get_num_threads()) or
   omp_get_max_threads() (parallel == 1). */
#ifndef EMBER_OPS_GEMM_H
#define EMBER_OPS_GEMM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* C = A @ B (+ C if accumulate). A is M x K, B is K x N, C is M x N. Every matrix is given by a
   base pointer and element strides (row stride rs, column stride cs), so transposed or sliced views
   need no copy (packing handles them). Sizes may be 0. If parallel != 0 the call may use OpenMP
   threads internally (omp parallel): up to `parallel` of them when parallel >= 2, up to
   omp_get_max_threads() when parallel == 1; with parallel == 0 it runs on the calling thread only
   (callers that parallelize over a batch use this).
   Element (i, j) of C lives at C[i * rsc + j * csc]; likewise for A (i, k) and B (k, j).
   C must not overlap A or B. With accumulate == 0 the old contents of C are never read (NaNs in
   C do not leak into the result). Within one build, every element's value depends only on its
   row of A, its column of B and K: results are bitwise identical whatever the thread count or
   however a caller slices M and N across calls. */
void emk_sgemm(int64_t M, int64_t N, int64_t K,
               const float *A, int64_t rsa, int64_t csa,
               const float *B, int64_t rsb, int64_t csb,
               float *C, int64_t rsc, int64_t csc, int accumulate, int parallel);

/* Same contract as emk_sgemm, in double precision. */
void emk_dgemm(int64_t M, int64_t N, int64_t K,
               const double *A, int64_t rsa, int64_t csa,
               const double *B, int64_t rsb, int64_t csb,
               double *C, int64_t rsc, int64_t csc, int accumulate, int parallel);


/* ---- mixed-precision GEMM (src/ops/gemm_bf16.c) --------------------------------------------------
   Element types a mixed GEMM reads and writes, and how it forms the products. */
typedef enum { EMK_F32 = 0, EMK_BF16 = 1 } emk_type;
typedef enum {
    /* bf16 inputs are widened to f32 (exact) and everything runs as emk_sgemm would on the widened
       inputs: the same bits as emk_sgemm on f32 copies of A and B */
    EMK_MM_EXACT = 0,
    /* bf16 mixed precision: f32 inputs are rounded to bf16 (nearest even, NaN kept quiet, and
       values below FLT_MIN taken as zeros of their sign, as vcvtne2ps2bf16 does; bf16 inputs are
       used as they are), products of bf16 pairs are summed in f32 in vdpbf16ps's order: k runs in
       blocks (a multiple of 32 that splits K evenly), and within a block each pair (2p, 2p + 1)
       adds a[2p+1] b[2p+1], then a[2p] b[2p], each a correctly rounded f32 add of an exact
       product, with bf16 denormal inputs read as zero and results below FLT_MIN flushed to zero.
       vdpbf16ps does this where the CPU has avx512_bf16; elsewhere (or with
       EMK_GEMM_BF16_PORTABLE) fmaf plus the same flushes do, giving the same bits. */
    EMK_MM_BF16 = 1,
} emk_mm_mode;

/* C = A @ B (+ C if accumulate) with A, B and C each f32 or bf16 (ta, tb, tc), products formed as
   `mode` says and accumulated in f32; a bf16 C is rounded once (nearest even) at the store, and
   with accumulate its old value is widened and added before that rounding. Strides, sizes,
   `parallel` and the determinism promise are emk_sgemm's (bitwise the same whatever the thread
   count or however a caller slices M and N: few-row calls against B = W^T take a path that reads
   W in place, with the same bits as the packed path). With ta == tb == tc == EMK_F32 and
   EMK_MM_EXACT this is emk_sgemm. bf16 values are uint16_t bit patterns. A mode other than the
   two above is taken as EMK_MM_EXACT. */
void emk_gemm(int64_t M, int64_t N, int64_t K,
              const void *A, emk_type ta, int64_t rsa, int64_t csa,
              const void *B, emk_type tb, int64_t rsb, int64_t csb,
              void *C, emk_type tc, int64_t rsc, int64_t csc, int accumulate, emk_mm_mode mode, int parallel);

#ifdef __cplusplus
}
#endif

#endif /* EMBER_OPS_GEMM_H */
