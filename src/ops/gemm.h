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

#ifdef __cplusplus
}
#endif

#endif /* EMBER_OPS_GEMM_H */
