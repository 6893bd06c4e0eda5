/* Standalone unit test for src/ops/gemm.c (emk_sgemm, emk_dgemm). Every case builds A (M x K),
   B (K x N) and C (M x N) as strided views into exactly-sized buffers (row-major, column-major
   i.e. transposed, non-unit column stride with padded rows, or negative row stride), runs the
   kernel and compares each element against a long-double triple loop. The tolerance is
   relative to K * eps: |got - ref| <= 2 (K + 2) eps (sum_k |a_ik b_kj| + |c_ij|). With
   accumulate == 0 the view of C is pre-filled with NaN (the kernel must not read it); buffer
   elements outside the view hold a sentinel that must survive. Shapes cover 0, 1, primes,
   ragged edges around the register tiles (8 x 48 AVX-512, 6 x 16 AVX2, 4 x 32 plain C) and the
   cache blocks (KC <= 512, MC <= 192, NC = 3072), K = 1, and a big-ish 300 x 257 x 129, with
   parallel = 0/1 and accumulate = 0/1; a batch is also run from inside an OpenMP region, and
   slicing the output across calls must reproduce a single call bit for bit. Skinny products
   (M = 1..8) run against every B layout, B = W^T with padded rows included, and rows computed
   one (or three) at a time must equal the rows of one big call bit for bit.
   Prints "N passed, M failed"; exits nonzero on any failure.
   Build: gcc -std=c11 -O3 -march=native -fopenmp -Wall -Wextra -Werror -Isrc tests/test_gemm.c
          src/ops/gemm.c -lm -o /tmp/test_gemm */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "ops/gemm.h"

enum view_kind { ROW_MAJOR, COL_MAJOR, STRIDED, FLIPPED, COL_PADDED, NUM_KINDS };
static const char *const kind_name[] = {"row", "col", "strided", "flipped", "col-padded"};

/* A rows x cols view: element (i, j) sits at base[i * rs + j * cs], base = buffer + origin. */
typedef struct {
    int64_t rows, cols, rs, cs;
    int64_t origin; /* offset of element (0, 0) within the buffer */
    int64_t len;    /* buffer length in elements (>= 1) */
} view_t;

static view_t make_view(int64_t rows, int64_t cols, enum view_kind kind)
{
    view_t v = {rows, cols, cols, 1, 0, 1};
    switch (kind) {
    case ROW_MAJOR: break;
    case COL_MAJOR: v.rs = 1, v.cs = rows; break;
    case STRIDED: v.rs = 2 * cols + 3, v.cs = 2; break; /* every other column, padded rows */
    case FLIPPED: v.rs = -(cols + 1); break;            /* rows in reverse order, padded */
    case COL_PADDED: v.rs = 1, v.cs = rows + 3; break;  /* transposed with padded columns */
    default: break;
    }
    if (rows == 0 || cols == 0)
        return v;
    int64_t lo = 0, hi = 0; /* extreme offsets over the four corners */
    int64_t last_row = (rows - 1) * v.rs, last_col = (cols - 1) * v.cs;
    int64_t corner[4] = {0, last_row, last_col, last_row + last_col};
    for (int c = 0; c < 4; c++) {
        lo = corner[c] < lo ? corner[c] : lo;
        hi = corner[c] > hi ? corner[c] : hi;
    }
    v.origin = -lo;
    v.len = hi - lo + 1;
    return v;
}

static int64_t at(const view_t *v, int64_t i, int64_t j)
{
    return v->origin + i * v->rs + j * v->cs;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double rand_uniform(void) /* in [-1, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

static const double SENTINEL = 1234.5;

/* One test configuration. */
typedef struct {
    int64_t M, N, K;
    enum view_kind ka, kb, kc;
    int accumulate, parallel, use_double;
} case_t;

static int passed, failed;

static void report_failure(const case_t *t, int64_t i, int64_t j, double got, double ref,
                           double tol)
{
    if (failed > 20)
        return;
    printf("FAIL %cgemm M=%lld N=%lld K=%lld A=%s B=%s C=%s acc=%d par=%d at (%lld,%lld): "
           "got %.9g want %.9g tol %.3g\n",
           t->use_double ? 'd' : 's', (long long)t->M, (long long)t->N, (long long)t->K,
           kind_name[t->ka], kind_name[t->kb], kind_name[t->kc], t->accumulate, t->parallel,
           (long long)i, (long long)j, got, ref, tol);
}

/* Calls the kernel under test on double-precision buffers (converting through float copies
   for emk_sgemm) and writes the resulting C buffer back into c. */
static void call_gemm(const case_t *t, const view_t *va, const view_t *vb, const view_t *vc,
                      const double *a, const double *b, double *c)
{
    if (t->use_double) {
        emk_dgemm(t->M, t->N, t->K, a + va->origin, va->rs, va->cs, b + vb->origin, vb->rs,
                  vb->cs, c + vc->origin, vc->rs, vc->cs, t->accumulate, t->parallel);
        return;
    }
    float *fa = malloc((size_t)va->len * sizeof(float));
    float *fb = malloc((size_t)vb->len * sizeof(float));
    float *fc = malloc((size_t)vc->len * sizeof(float));
    if (!fa || !fb || !fc) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    for (int64_t x = 0; x < va->len; x++) fa[x] = (float)a[x];
    for (int64_t x = 0; x < vb->len; x++) fb[x] = (float)b[x];
    for (int64_t x = 0; x < vc->len; x++) fc[x] = (float)c[x];
    emk_sgemm(t->M, t->N, t->K, fa + va->origin, va->rs, va->cs, fb + vb->origin, vb->rs, vb->cs,
              fc + vc->origin, vc->rs, vc->cs, t->accumulate, t->parallel);
    for (int64_t x = 0; x < vc->len; x++) c[x] = (double)fc[x];
    free(fa), free(fb), free(fc);
}

/* Checks every element of C against the long-double reference and the untouched sentinels.
   a, b hold the inputs; c0 the C buffer before the call, c after. Returns 1 if all good. */
static int check_result(const case_t *t, const view_t *va, const view_t *vb, const view_t *vc,
                        const double *a, const double *b, const double *c0, const double *c)
{
    double eps = t->use_double ? DBL_EPSILON : (double)FLT_EPSILON;
    char *in_view = calloc((size_t)vc->len, 1);
    int ok = in_view != NULL;
    for (int64_t i = 0; ok && i < t->M; i++)
        for (int64_t j = 0; j < t->N; j++) {
            long double sum = 0, mag = 0;
            for (int64_t k = 0; k < t->K; k++) {
                long double p = (long double)a[at(va, i, k)] * b[at(vb, k, j)];
                sum += p;
                mag += fabsl(p);
            }
            int64_t off = at(vc, i, j);
            in_view[off] = 1;
            if (t->accumulate)
                sum += c0[off], mag += fabs(c0[off]);
            double tol = 2.0 * (double)(t->K + 2) * eps * (double)mag + DBL_MIN;
            double err = fabs(c[off] - (double)sum);
            if (!(err <= tol)) { /* also catches NaN */
                report_failure(t, i, j, c[off], (double)sum, tol);
                ok = 0;
                break;
            }
        }
    for (int64_t x = 0; ok && x < vc->len; x++)
        if (!in_view[x] && c[x] != SENTINEL) {
            if (failed <= 20)
                printf("FAIL: C buffer element %lld outside the view was overwritten\n",
                       (long long)x);
            ok = 0;
        }
    free(in_view);
    return ok;
}

static void run_case(case_t t)
{
    view_t va = make_view(t.M, t.K, t.ka), vb = make_view(t.K, t.N, t.kb),
           vc = make_view(t.M, t.N, t.kc);
    double *a = malloc((size_t)va.len * sizeof(double));
    double *b = malloc((size_t)vb.len * sizeof(double));
    double *c0 = malloc((size_t)vc.len * sizeof(double));
    double *c = malloc((size_t)vc.len * sizeof(double));
    if (!a || !b || !c0 || !c) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    for (int64_t x = 0; x < va.len; x++) a[x] = rand_uniform();
    for (int64_t x = 0; x < vb.len; x++) b[x] = rand_uniform();
    for (int64_t x = 0; x < vc.len; x++) c0[x] = SENTINEL;
    for (int64_t i = 0; i < t.M; i++)
        for (int64_t j = 0; j < t.N; j++)
            c0[at(&vc, i, j)] = t.accumulate ? rand_uniform() : NAN;
    memcpy(c, c0, (size_t)vc.len * sizeof(double));

    call_gemm(&t, &va, &vb, &vc, a, b, c);
    if (check_result(&t, &va, &vb, &vc, a, b, c0, c))
        passed++;
    else
        failed++;
    free(a), free(b), free(c0), free(c);
}

/* Small shapes: every size combination from the lists, all four transpose combos. */
static void test_small_shapes(int use_double)
{
    static const int64_t Ms[] = {0, 1, 2, 5, 7, 8, 9, 13, 16, 17, 29, 31, 43};
    static const int64_t Ns[] = {0, 1, 3, 7, 15, 16, 17, 31, 33, 47, 48, 49, 65, 97};
    static const int64_t Ks[] = {0, 1, 2, 7, 13, 16, 17, 31, 97};
    int n = 0;
    for (size_t im = 0; im < sizeof Ms / sizeof Ms[0]; im++)
        for (size_t in = 0; in < sizeof Ns / sizeof Ns[0]; in++)
            for (size_t ik = 0; ik < sizeof Ks / sizeof Ks[0]; ik++)
                for (int combo = 0; combo < 4; combo++, n++) {
                    case_t t = {Ms[im], Ns[in], Ks[ik], combo & 1 ? COL_MAJOR : ROW_MAJOR,
                                combo & 2 ? COL_MAJOR : ROW_MAJOR, ROW_MAJOR,
                                n % 3 == 1, n % 2, use_double};
                    run_case(t);
                }
}

/* Every view kind for each operand, on a few ragged shapes. */
static void test_view_kinds(int use_double)
{
    static const int64_t shapes[][3] = {{13, 33, 17}, {29, 15, 31}, {1, 47, 7}, {31, 1, 40}};
    int n = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int ka = 0; ka < NUM_KINDS; ka++)
            for (int kb = 0; kb < NUM_KINDS; kb++)
                for (int kc = 0; kc < NUM_KINDS; kc++, n++) {
                    case_t t = {shapes[s][0], shapes[s][1], shapes[s][2], (enum view_kind)ka,
                                (enum view_kind)kb, (enum view_kind)kc, n % 2, (n / 2) % 2,
                                use_double};
                    run_case(t);
                }
}

/* Larger shapes crossing the cache-block boundaries and taking the multi-threaded paths. */
static void test_large_shapes(int use_double)
{
    static const int64_t shapes[][3] = {
        {300, 257, 129}, {97, 101, 255}, {97, 101, 513}, {45, 70, 1100}, {193, 50, 40},
        {385, 40, 60},   {700, 21, 50},  {30, 3073, 20}, {3, 3100, 260},  {64, 64, 64},
        {1, 1000, 300},  {1000, 1, 300}, {250, 260, 1},  {20, 97, 600},
    };
    int n = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int combo = 0; combo < 4; combo++)
            for (int par = 0; par < 2; par++, n++) {
                case_t t = {shapes[s][0], shapes[s][1], shapes[s][2],
                            combo & 1 ? COL_MAJOR : ROW_MAJOR, combo & 2 ? COL_MAJOR : ROW_MAJOR,
                            n % 5 == 3 ? STRIDED : ROW_MAJOR, n % 3 == 0, par, use_double};
                run_case(t);
            }
}

/* A batch of float GEMMs issued from inside an OpenMP parallel loop, as a batched matmul would:
   parallel = 0 must stay on the calling thread, parallel = 1 must not oversubscribe or break. */
static void test_inside_parallel_region(void)
{
    enum { BATCH = 6 };
    case_t t = {37, 45, 50, ROW_MAJOR, COL_MAJOR, ROW_MAJOR, 1, 0, 0};
    view_t va = make_view(t.M, t.K, t.ka), vb = make_view(t.K, t.N, t.kb),
           vc = make_view(t.M, t.N, t.kc);
    double *a[BATCH], *b[BATCH], *c0[BATCH], *c[BATCH];
    float *fa[BATCH], *fb[BATCH], *fc[BATCH];
    for (int i = 0; i < BATCH; i++) {
        a[i] = malloc((size_t)va.len * sizeof(double));
        b[i] = malloc((size_t)vb.len * sizeof(double));
        c0[i] = malloc((size_t)vc.len * sizeof(double));
        c[i] = malloc((size_t)vc.len * sizeof(double));
        fa[i] = malloc((size_t)va.len * sizeof(float));
        fb[i] = malloc((size_t)vb.len * sizeof(float));
        fc[i] = malloc((size_t)vc.len * sizeof(float));
        if (!a[i] || !b[i] || !c0[i] || !c[i] || !fa[i] || !fb[i] || !fc[i]) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }
        for (int64_t x = 0; x < va.len; x++) fa[i][x] = (float)(a[i][x] = rand_uniform());
        for (int64_t x = 0; x < vb.len; x++) fb[i][x] = (float)(b[i][x] = rand_uniform());
        for (int64_t x = 0; x < vc.len; x++) fc[i][x] = (float)(c0[i][x] = rand_uniform());
    }
#ifdef _OPENMP
#pragma omp parallel for num_threads(3) schedule(static, 1)
#endif
    for (int i = 0; i < BATCH; i++)
        emk_sgemm(t.M, t.N, t.K, fa[i] + va.origin, va.rs, va.cs, fb[i] + vb.origin, vb.rs, vb.cs,
                  fc[i] + vc.origin, vc.rs, vc.cs, 1, i % 2);
    for (int i = 0; i < BATCH; i++) {
        for (int64_t x = 0; x < vc.len; x++) c[i][x] = (double)fc[i][x];
        t.parallel = i % 2;
        if (check_result(&t, &va, &vb, &vc, a[i], b[i], c0[i], c[i]))
            passed++;
        else
            failed++;
        free(a[i]), free(b[i]), free(c0[i]), free(c[i]), free(fa[i]), free(fb[i]), free(fc[i]);
    }
}

/* Results must not depend on how the output is sliced or threaded: per element, the sum runs
   over k in the same blocks and order whatever M/N range a call covers (the compiled backend
   relies on this to match eager mode bit for bit). Compares a parallel full call against
   slices at arbitrary, tile-unaligned boundaries, with memcmp. */
static void test_slicing_is_bitwise_stable(void)
{
    static const int64_t shapes[][3] = {{100, 200, 700}, {300, 257, 129}, {61, 1000, 33}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int nt_layout = 0; nt_layout < 2; nt_layout++) {
            int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            int64_t rsb = nt_layout ? 1 : N, csb = nt_layout ? K : 1;
            float *a = malloc((size_t)(M * K) * sizeof(float));
            float *b = malloc((size_t)(K * N) * sizeof(float));
            float *full = malloc((size_t)(M * N) * sizeof(float));
            float *sliced = malloc((size_t)(M * N) * sizeof(float));
            if (!a || !b || !full || !sliced) {
                fprintf(stderr, "out of memory\n");
                exit(2);
            }
            for (int64_t x = 0; x < M * K; x++) a[x] = (float)rand_uniform();
            for (int64_t x = 0; x < K * N; x++) b[x] = (float)rand_uniform();
            emk_sgemm(M, N, K, a, K, 1, b, rsb, csb, full, N, 1, 0, 1);
            int64_t n_cut[] = {0, 1, 38, N / 2 + 5, N}, m_cut[] = {0, 7, M / 3, M};
            for (int ic = 0; ic < 3; ic++)
                for (int jc = 0; jc < 4; jc++) {
                    int64_t i0 = m_cut[ic], i1 = m_cut[ic + 1], j0 = n_cut[jc], j1 = n_cut[jc + 1];
                    emk_sgemm(i1 - i0, j1 - j0, K, a + i0 * K, K, 1, b + j0 * csb, rsb, csb,
                              sliced + i0 * N + j0, N, 1, 0, 0);
                }
            if (memcmp(full, sliced, (size_t)(M * N) * sizeof(float)) == 0) {
                passed++;
            } else {
                failed++;
                printf("FAIL: sliced sgemm M=%lld N=%lld K=%lld (%s) differs from one call\n",
                       (long long)M, (long long)N, (long long)K, nt_layout ? "B^T" : "B");
            }
            free(a), free(b), free(full), free(sliced);
        }
}

/* Few rows of A (M = 1..8: decode steps, small batches) against every B layout, in particular
   B = W^T with W (N, K) stored row-major (rsb == 1, with and without padded rows), which has its
   own path for M <= 4 (sgemm_gemv_cols: in-register transposes, software prefetch along the rows
   of W). N crosses the 16-column blocks, the 48-wide tiles and the thread split; K crosses the
   KC blocks (K > 512 splits in two) and the prefetch distance (256 floats). */
static void test_skinny(void)
{
    static const int64_t Ns[] = {1, 15, 17, 49, 130, 1001};
    static const int64_t Ks[] = {1, 17, 255, 300, 777};
    static const enum view_kind Bk[] = {COL_MAJOR, COL_PADDED, ROW_MAJOR};
    int n = 0;
    for (int64_t M = 1; M <= 8; M++)
        for (size_t in = 0; in < sizeof Ns / sizeof Ns[0]; in++)
            for (size_t ik = 0; ik < sizeof Ks / sizeof Ks[0]; ik++)
                for (size_t ib = 0; ib < sizeof Bk / sizeof Bk[0]; ib++, n++) {
                    case_t t = {M, Ns[in], Ks[ik], n % 4 == 1 ? STRIDED : ROW_MAJOR, Bk[ib],
                                n % 3 == 2 ? STRIDED : ROW_MAJOR, n % 2, (n / 2) % 2, 0};
                    run_case(t);
                }
}

/* Row i of C computed alone (M = 1, and in chunks of 3 rows: the skinny path) must equal row i
   of one parallel call on all M rows (the packed path) bit for bit, for B = W^T and row-major B:
   a decode step (one row) then matches the prefill or full forward that computed the same row. */
static void test_rows_match_full(void)
{
    static const int64_t shapes[][3] = {{64, 777, 300}, {20, 130, 1100}, {9, 1001, 17}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int nt_layout = 0; nt_layout < 2; nt_layout++) {
            int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            int64_t rsb = nt_layout ? 1 : N, csb = nt_layout ? K : 1;
            float *a = malloc((size_t)(M * K) * sizeof(float)), *b = malloc((size_t)(K * N) * sizeof(float));
            float *full = malloc((size_t)(M * N) * sizeof(float)), *one = malloc((size_t)(M * N) * sizeof(float));
            float *three = malloc((size_t)(M * N) * sizeof(float));
            if (!a || !b || !full || !one || !three) {
                fprintf(stderr, "out of memory\n");
                exit(2);
            }
            for (int64_t x = 0; x < M * K; x++) a[x] = (float)rand_uniform();
            for (int64_t x = 0; x < K * N; x++) b[x] = (float)rand_uniform();
            emk_sgemm(M, N, K, a, K, 1, b, rsb, csb, full, N, 1, 0, 1);
            for (int64_t i = 0; i < M; i++)
                emk_sgemm(1, N, K, a + i * K, K, 1, b, rsb, csb, one + i * N, N, 1, 0, (int)(i % 2));
            for (int64_t i = 0; i < M; i += 3)
                emk_sgemm(M - i < 3 ? M - i : 3, N, K, a + i * K, K, 1, b, rsb, csb, three + i * N, N, 1, 0,
                          3); /* parallel >= 2: at most that many threads */
            if (!memcmp(full, one, (size_t)(M * N) * sizeof(float)) &&
                !memcmp(full, three, (size_t)(M * N) * sizeof(float))) {
                passed++;
            } else {
                failed++;
                printf("FAIL: sgemm rows computed alone differ from one call, M=%lld N=%lld K=%lld (%s)\n",
                       (long long)M, (long long)N, (long long)K, nt_layout ? "B = W^T" : "row-major B");
            }
            free(a), free(b), free(full), free(one), free(three);
        }
}

int main(void)
{
    test_skinny();
    test_rows_match_full();
    test_slicing_is_bitwise_stable();
    test_inside_parallel_region();
    for (int use_double = 0; use_double < 2; use_double++) {
        test_small_shapes(use_double);
        test_view_kinds(use_double);
        test_large_shapes(use_double);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
