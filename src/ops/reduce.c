/* reduce.c - reductions (sum, mean, prod, amax, amin, logsumexp, var, std), max/min along a dim
 * with indices, argmax/argmin and cumsum, with their public wrappers.
 *
 * Every kernel first brings its input to one canonical layout: a contiguous (M, R, N) block in
 * the compute dtype (f64 stays f64, other floats compute in f32, integers and bool in i64), where
 * R is the reduced extent and the result is (M, N). An input that is a permutation of a
 * contiguous block (a transposed view) is read in place in memory order; its results go back
 * through a permuted view of the output. When the reduced dims form one run of adjacent dims
 * (size-1 dims aside) the block is the input itself, or one contiguous copy; otherwise one copy
 * moves the reduced dims last, giving (M, R, 1).
 * Two loop shapes then cover everything: rows (N == 1: `omp simd` reductions over R contiguous
 * values - sums in double by blocks, max/min in the input type with NaN noted on the side, the
 * f32 exp of logsumexp as a vectorizable polynomial) and columns (N > 1: walk R rows of N and
 * update up to COLS accumulators with a contiguous inner loop - the bias-gradient case). Work is
 * split over OpenMP threads by (m, column chunk); when that gives too few tasks (a full
 * reduction, a tall narrow column sum) R itself is cut into pieces whose partial results are
 * combined in a fixed order. Floats accumulate in double, integers in wrapping 64-bit
 * arithmetic; results land in the output directly when it has the accumulator dtype, else in an
 * f64 (or i64) tensor cast into it once.
 * Backward rules and decompositions use public em_ ops only.
 */
#include "kernels.h"
#include "vecmath.h"

#include <math.h>

#define PAR_WORK 32768 /* elements below which threads cost more than they save */
#define BLOCK 4096     /* row sums add blocks of this many values, then the block sums */
#define COLS 1024      /* columns per task in column reductions (8 KB of accumulators) */
#define PIECE_MIN 4096 /* smallest slice of R worth a thread of its own */

typedef enum { RK_SUM, RK_PROD, RK_MAX, RK_MIN, RK_SQDEV, RK_SUMEXP } rkind;

/* ---- canonical layout --------------------------------------------------------------------------- */
typedef struct {
    em_tensor_t *x;        /* contiguous (M, R, N) in the compute dtype; one reference owned */
    int64_t M, R, N;
    bool permuted;         /* the input was read in place in the dim order perm */
    int perm[EM_MAX_DIMS]; /* results come out with the kept dims in this order */
} rlayout;

static em_dtype compute_dtype(em_dtype d) {
    if (d == EM_F64) return EM_F64;
    return emt_is_float(d) ? EM_F32 : EM_I64;
}

/* the order of x's dims in memory, when x is a permutation of a contiguous block (a transposed
   view, say): read in that order it is contiguous and needs no copy */
static bool dense_order(const em_tensor_t *x, int *perm) {
    int nd = x->ndim;
    for (int d = 0; d < nd; d++) perm[d] = d;
    for (int i = 1; i < nd; i++) { /* stable insertion sort, strides descending */
        int p = perm[i], j = i;
        for (; j > 0 && x->strides[perm[j - 1]] < x->strides[p]; j--) perm[j] = perm[j - 1];
        perm[j] = p;
    }
    int64_t s = 1;
    for (int k = nd - 1; k >= 0; k--) {
        int d = perm[k];
        if (x->shape[d] != 1 && x->strides[d] != s) return false;
        s *= x->shape[d];
    }
    return true;
}

/* t (contiguous in its own dim order) in dtype ct; integers widen to i64 in a plain loop */
static em_tensor_t *to_compute(em_tensor_t *t, em_dtype ct) {
    if (!emt_is_contiguous(t) || ct != EM_I64 || t->dtype == EM_I64) return emt_as_contiguous(t, ct);
    em_tensor_t *o = emt_new(EM_I64, t->shape, t->ndim);
    if (!o) return NULL;
    int64_t n = emt_numel(t), *d = (int64_t *)(void *)emt_data(o);
    const void *s = emt_data(t);
    if (t->dtype == EM_I32) {
        const int32_t *p = s;
#pragma omp parallel for num_threads(emb_num_threads()) if (n >= 4 * PAR_WORK)
        for (int64_t i = 0; i < n; i++) d[i] = p[i];
    } else { /* u8 and bool are both one unsigned byte */
        const uint8_t *p = s;
#pragma omp parallel for num_threads(emb_num_threads()) if (n >= 4 * PAR_WORK)
        for (int64_t i = 0; i < n; i++) d[i] = p[i];
    }
    return o;
}

/* x viewed as (M, R, N) with the mask's dims in R; ct is the dtype to compute in */
static em_status make_layout(em_tensor_t *x, const bool *mask, em_dtype ct, rlayout *L) {
    int nd = x->ndim, first = -1, last = -1;
    bool pm[EM_MAX_DIMS];
    em_tensor_t *src = x, *pv = NULL;
    L->permuted = !emt_is_contiguous(x) && dense_order(x, L->perm);
    if (L->permuted) {
        int64_t sh[EM_MAX_DIMS], st[EM_MAX_DIMS];
        for (int k = 0; k < nd; k++) {
            sh[k] = x->shape[L->perm[k]];
            st[k] = x->strides[L->perm[k]];
        }
        if (!(pv = src = emt_view(x, sh, st, nd, x->offset))) return em_last_status();
    } else {
        for (int d = 0; d < nd; d++) L->perm[d] = d;
    }
    for (int k = 0; k < nd; k++) pm[k] = mask[L->perm[k]];
    for (int d = 0; d < nd; d++)
        if (pm[d] && src->shape[d] != 1) {
            if (first < 0) first = d;
            last = d;
        }
    bool one_run = true;
    for (int d = first + 1; first >= 0 && d < last; d++)
        if (!pm[d] && src->shape[d] != 1) one_run = false;
    L->M = L->R = L->N = 1;
    if (one_run) {
        for (int d = 0; d < nd; d++) {
            if (first < 0 || d < first) L->M *= src->shape[d];
            else if (d <= last) L->R *= src->shape[d];
            else L->N *= src->shape[d];
        }
        L->x = to_compute(src, ct);
    } else { /* kept dims first, reduced dims last, in one copy: (M, R, 1) */
        int64_t sh[EM_MAX_DIMS], st[EM_MAX_DIMS];
        int k = 0;
        for (int pass = 0; pass < 2; pass++)
            for (int d = 0; d < nd; d++) {
                if (pm[d] != (pass == 1)) continue;
                sh[k] = src->shape[d];
                st[k++] = src->strides[d];
                if (pass == 0) L->M *= src->shape[d];
                else L->R *= src->shape[d];
            }
        em_tensor_t *v = emt_view(src, sh, st, nd, src->offset);
        L->x = v ? emt_contiguous_copy(v, ct) : NULL;
        em_release(v);
    }
    em_release(pv);
    return L->x ? EM_OK : em_last_status();
}

/* where a kernel writes its result: out itself when it has the accumulator dtype and the layout
   kept out's element order, else a fresh tensor of the kept dims (those not in `drop`) in the
   layout's order */
static em_tensor_t *result_for(em_tensor_t *out, const rlayout *L, const em_tensor_t *x, const bool *drop,
                               em_dtype acc) {
    if (!L->permuted) {
        if (out->dtype != acc) return emt_new(acc, out->shape, out->ndim);
        out->refcount++;
        return out;
    }
    int64_t sh[EM_MAX_DIMS];
    int k = 0;
    for (int i = 0; i < x->ndim; i++)
        if (!drop[L->perm[i]]) sh[k++] = x->shape[L->perm[i]];
    return emt_new(acc, sh, k);
}

/* out = res (cast to out's dtype, put back in out's dim order); releases res */
static em_status result_done(em_tensor_t *out, em_tensor_t *res, const rlayout *L, const em_tensor_t *x,
                             const bool *drop, bool keepdim) {
    em_status st = EM_OK;
    if (res != out && !L->permuted) {
        emt_copy(out, res);
    } else if (res != out) {
        int64_t ost[EM_MAX_DIMS], sh[EM_MAX_DIMS], vst[EM_MAX_DIMS];
        for (int d = 0, od = 0; d < x->ndim; d++) { /* out's stride for each kept dim of x */
            if (!drop[d]) ost[d] = out->strides[od++];
            else if (keepdim) od++;
        }
        int k = 0;
        for (int i = 0; i < x->ndim; i++) {
            int d = L->perm[i];
            if (drop[d]) continue;
            sh[k] = x->shape[d];
            vst[k++] = ost[d];
        }
        em_tensor_t *v = emt_view(out, sh, vst, k, out->offset);
        if (v) emt_copy(v, res);
        else st = em_last_status();
        em_release(v);
    }
    em_release(res);
    return st;
}

/* ---- row and column loops (floats: T is float or double, accumulators double) ----------------- */
static double identity_d(rkind k) {
    switch (k) {
    case RK_PROD: return 1.0;
    case RK_MAX: return -INFINITY;
    case RK_MIN: return INFINITY;
    default: return 0.0;
    }
}

/* NaN propagates through max and min, like PyTorch */
static inline double combine_d(rkind k, double a, double b) {
    switch (k) {
    case RK_PROD: return a * b;
    case RK_MAX: return (b > a || b != b) ? b : a;
    case RK_MIN: return (b < a || b != b) ? b : a;
    default: return a + b;
    }
}


/* sum of exp(x[i] - p): f32 in blocks of 1024 summed in float lanes, then in double */
static double row_sumexp_f32(const float *restrict x, int64_t n, double p) {
    float pf = (float)p;
    double total = 0;
    for (int64_t b = 0; b < n; b += 1024) {
        int64_t e = EM_MIN(n, b + 1024);
        float s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t i = b; i < e; i++) s += exp_f32(x[i] - pf);
        total += s;
    }
    return total;
}

static double row_sumexp_f64(const double *restrict x, int64_t n, double p) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += exp(x[i] - p);
    return s;
}

static inline double exp_f32_d(double x) { return exp_f32((float)x); }

#define COL_LOOP(T, EXPR)                                                                        \
    do {                                                                                         \
        for (int64_t r = 0; r < R; r++) {                                                        \
            const T *restrict row = x + r * N;                                                   \
            for (int64_t j = 0; j < nj; j++) {                                                   \
                double v = (double)row[j], a = acc[j];                                           \
                acc[j] = (EXPR);                                                                 \
            }                                                                                    \
        }                                                                                        \
    } while (0)

/* row_sum: blocks of BLOCK values summed with simd lanes, then the block sums (accurate to
   about (BLOCK/lanes + n/BLOCK) ulps); row_ext: max or min in T with NaN noted on the side;
   row: reduce x[0..n) (p: the row's mean for SQDEV, its max for SUMEXP);
   col: acc[j] = reduce over r < R of x[r * N + j] for j < nj (p: per-column parameters) */
#define DEF_FLOAT_LOOPS(SUF, T, EXP)                                                             \
    static double row_sum_##SUF(const T *restrict x, int64_t n, bool sq, double p) {             \
        double total = 0;                                                                        \
        for (int64_t b = 0; b < n; b += BLOCK) {                                                 \
            int64_t e = EM_MIN(n, b + BLOCK);                                                    \
            double s = 0;                                                                        \
            if (sq) {                                                                            \
                _Pragma("omp simd reduction(+ : s)")                                             \
                for (int64_t i = b; i < e; i++) s += ((double)x[i] - p) * ((double)x[i] - p);    \
            } else {                                                                             \
                _Pragma("omp simd reduction(+ : s)")                                             \
                for (int64_t i = b; i < e; i++) s += (double)x[i];                               \
            }                                                                                    \
            total += s;                                                                          \
        }                                                                                        \
        return total;                                                                            \
    }                                                                                            \
    static double row_ext_##SUF(const T *restrict x, int64_t n, bool is_max) {                   \
        T m = is_max ? (T)-INFINITY : (T)INFINITY;                                               \
        int nan = 0;                                                                             \
        if (is_max) {                                                                            \
            _Pragma("omp simd reduction(max : m) reduction(| : nan)")                            \
            for (int64_t i = 0; i < n; i++) {                                                    \
                m = x[i] > m ? x[i] : m;                                                         \
                nan |= x[i] != x[i];                                                             \
            }                                                                                    \
        } else {                                                                                 \
            _Pragma("omp simd reduction(min : m) reduction(| : nan)")                            \
            for (int64_t i = 0; i < n; i++) {                                                    \
                m = x[i] < m ? x[i] : m;                                                         \
                nan |= x[i] != x[i];                                                             \
            }                                                                                    \
        }                                                                                        \
        return nan ? NAN : (double)m;                                                            \
    }                                                                                            \
    static double row_##SUF(rkind k, const T *restrict x, int64_t n, double p) {                 \
        double s = k == RK_PROD ? 1.0 : 0.0;                                                     \
        switch (k) {                                                                             \
        case RK_SUM: return row_sum_##SUF(x, n, false, 0.0);                                     \
        case RK_SQDEV: return row_sum_##SUF(x, n, true, p);                                      \
        case RK_MAX: return row_ext_##SUF(x, n, true);                                           \
        case RK_MIN: return row_ext_##SUF(x, n, false);                                          \
        case RK_PROD:                                                                            \
            _Pragma("omp simd reduction(* : s)")                                                 \
            for (int64_t i = 0; i < n; i++) s *= (double)x[i];                                   \
            break;                                                                               \
        case RK_SUMEXP: return row_sumexp_##SUF(x, n, p);                                        \
        }                                                                                        \
        return s;                                                                                \
    }                                                                                            \
    static void col_##SUF(rkind k, const T *restrict x, int64_t R, int64_t N, int64_t nj,        \
                          const double *restrict p, double *restrict acc) {                      \
        for (int64_t j = 0; j < nj; j++) acc[j] = identity_d(k);                                 \
        switch (k) {                                                                             \
        case RK_SUM: COL_LOOP(T, a + v); break;                                                  \
        case RK_PROD: COL_LOOP(T, a * v); break;                                                 \
        case RK_MAX: COL_LOOP(T, (v > a || v != v) ? v : a); break;                              \
        case RK_MIN: COL_LOOP(T, (v < a || v != v) ? v : a); break;                              \
        case RK_SQDEV: COL_LOOP(T, a + (v - p[j]) * (v - p[j])); break;                          \
        case RK_SUMEXP: COL_LOOP(T, a + EXP(v - p[j])); break;                                   \
        }                                                                                        \
    }

DEF_FLOAT_LOOPS(f32, float, exp_f32_d)
DEF_FLOAT_LOOPS(f64, double, exp)

/* ---- integer loops: i64 in, wrapping i64 accumulators (only SUM, PROD, MAX, MIN) ------------- */
static int64_t identity_i(rkind k) {
    return k == RK_PROD ? 1 : k == RK_MAX ? INT64_MIN : k == RK_MIN ? INT64_MAX : 0;
}

static inline int64_t combine_i(rkind k, int64_t a, int64_t b) {
    switch (k) {
    case RK_PROD: return (int64_t)((uint64_t)a * (uint64_t)b);
    case RK_MAX: return b > a ? b : a;
    case RK_MIN: return b < a ? b : a;
    default: return (int64_t)((uint64_t)a + (uint64_t)b);
    }
}

static int64_t row_i64(rkind k, const int64_t *restrict x, int64_t n, int64_t p) {
    EM_UNUSED(p);
    int64_t r = identity_i(k);
    switch (k) {
    case RK_SUM: { uint64_t s = 0; for (int64_t i = 0; i < n; i++) s += (uint64_t)x[i]; r = (int64_t)s; break; }
    case RK_PROD: { uint64_t s = 1; for (int64_t i = 0; i < n; i++) s *= (uint64_t)x[i]; r = (int64_t)s; break; }
    case RK_MAX: for (int64_t i = 0; i < n; i++) r = x[i] > r ? x[i] : r; break;
    case RK_MIN: for (int64_t i = 0; i < n; i++) r = x[i] < r ? x[i] : r; break;
    default: EM_ASSERT(!"integer reduction kind");
    }
    return r;
}

static void col_i64(rkind k, const int64_t *restrict x, int64_t R, int64_t N, int64_t nj,
                    const int64_t *restrict p, int64_t *restrict acc) {
    EM_UNUSED(p);
    for (int64_t j = 0; j < nj; j++) acc[j] = identity_i(k);
    for (int64_t r = 0; r < R; r++) {
        const int64_t *restrict row = x + r * N;
        switch (k) {
        case RK_SUM:
            for (int64_t j = 0; j < nj; j++) acc[j] = (int64_t)((uint64_t)acc[j] + (uint64_t)row[j]);
            break;
        case RK_PROD:
            for (int64_t j = 0; j < nj; j++) acc[j] = (int64_t)((uint64_t)acc[j] * (uint64_t)row[j]);
            break;
        case RK_MAX: for (int64_t j = 0; j < nj; j++) acc[j] = row[j] > acc[j] ? row[j] : acc[j]; break;
        case RK_MIN: for (int64_t j = 0; j < nj; j++) acc[j] = row[j] < acc[j] ? row[j] : acc[j]; break;
        default: EM_ASSERT(!"integer reduction kind");
        }
    }
}

/* ---- the driver: res (M*N) = reduce x (M, R, N); p (M*N) or NULL --------------------------------
 * run: rows [r0, r1) of every (m, column chunk) task; split: cuts R into pieces when there are
 * too few tasks for the threads, then combines the pieces' partial results in order. */
#define DEF_DRIVER(SUF, T, A, COMBINE)                                                           \
    static void run_##SUF(rkind k, const T *x, int64_t M, int64_t R, int64_t N, int64_t r0,      \
                          int64_t r1, const A *p, A *res, int nth) {                             \
        int64_t nch = N == 1 ? 1 : (N + COLS - 1) / COLS, tasks = M * nch;                       \
        _Pragma("omp parallel for schedule(static) num_threads(nth) if (nth > 1)")               \
        for (int64_t t = 0; t < tasks; t++) {                                                    \
            int64_t m = t / nch, j0 = (t % nch) * COLS;                                          \
            const T *xb = x + (m * R + r0) * N;                                                  \
            if (N == 1) {                                                                        \
                res[m] = row_##SUF(k, xb, r1 - r0, p ? p[m] : 0);                                \
            } else {                                                                             \
                int64_t nj = EM_MIN(COLS, N - j0);                                               \
                col_##SUF(k, xb + j0, r1 - r0, N, nj, p ? p + m * N + j0 : NULL, res + m * N + j0); \
            }                                                                                    \
        }                                                                                        \
    }                                                                                            \
    static void reduce_##SUF(rkind k, const T *x, int64_t M, int64_t R, int64_t N, const A *p,   \
                             A *res) {                                                           \
        int64_t MN = M * N, tasks = M * (N == 1 ? 1 : (N + COLS - 1) / COLS);                   \
        int nth = MN * R >= PAR_WORK ? emb_num_threads() : 1;                                    \
        int64_t pieces = 1;                                                                      \
        if (nth > 1 && tasks < 2 * nth) pieces = EM_MIN(4 * (int64_t)nth, MN * R / PIECE_MIN);   \
        A *part = pieces > 1 ? emb_alloc((size_t)(pieces * MN) * sizeof(A)) : NULL;              \
        if (!part) {                                                                             \
            run_##SUF(k, x, M, R, N, 0, R, p, res, nth);                                         \
            return;                                                                              \
        }                                                                                        \
        _Pragma("omp parallel for schedule(static) num_threads(nth)")                            \
        for (int64_t q = 0; q < pieces; q++)                                                     \
            run_##SUF(k, x, M, R, N, R * q / pieces, R * (q + 1) / pieces, p, part + q * MN, 1); \
        for (int64_t i = 0; i < MN; i++) {                                                       \
            A v = part[i];                                                                       \
            for (int64_t q = 1; q < pieces; q++) v = COMBINE(k, v, part[q * MN + i]);            \
            res[i] = v;                                                                          \
        }                                                                                        \
        emb_free(part);                                                                          \
    }

DEF_DRIVER(f32, float, double, combine_d)
DEF_DRIVER(f64, double, double, combine_d)
DEF_DRIVER(i64, int64_t, int64_t, combine_i)

/* res (f64 for float layouts, i64 for integer ones, M*N elements) = reduce L; p like res or NULL */
static void reduce_layout(rkind k, const rlayout *L, const em_tensor_t *p, em_tensor_t *res) {
    const void *x = emt_data(L->x);
    void *r = emt_data(res);
    const void *pp = p ? emt_data(p) : NULL;
    switch (L->x->dtype) {
    case EM_F32: reduce_f32(k, x, L->M, L->R, L->N, pp, r); break;
    case EM_F64: reduce_f64(k, x, L->M, L->R, L->N, pp, r); break;
    default: reduce_i64(k, x, L->M, L->R, L->N, pp, r); break;
    }
}

/* ---- attributes to masks ------------------------------------------------------------------------ */
static void attr_mask(const emo_attrs *a, int rank, bool mask[EM_MAX_DIMS]) {
    bool ok = emo_reduce_mask("reduce", a->i, a->ni, rank, mask);
    EM_ASSERT(ok); /* infer checked the dims */
}

static void dim_mask(int64_t dim, int rank, bool mask[EM_MAX_DIMS]) {
    for (int d = 0; d < EM_MAX_DIMS; d++) mask[d] = d == dim && rank > 0;
}

/* the common body of sum, prod, amax, amin: out = reduce x over mask */
static em_status simple_reduce(rkind k, em_tensor_t *x, const bool *mask, bool keepdim, em_tensor_t *out) {
    em_dtype ct = compute_dtype(x->dtype);
    rlayout L;
    if (make_layout(x, mask, ct, &L) != EM_OK) return em_last_status();
    em_tensor_t *res = result_for(out, &L, x, mask, ct == EM_I64 ? EM_I64 : EM_F64);
    if (res) reduce_layout(k, &L, NULL, res);
    em_release(L.x);
    return res ? result_done(out, res, &L, x, mask, keepdim) : em_last_status();
}

/* ---- infer -------------------------------------------------------------------------------------- */
/* checks the dims, writes the reduced shape (keepdim j[0]) with in's dtype */
static em_status reduce_shape(const emo_attrs *a, const emo_meta *in, bool mask[EM_MAX_DIMS], emo_meta *out) {
    if (a->ni > EM_MAX_DIMS)
        return emo_err(EM_ERR_ARG, NULL, in, 1, "%d reduction dims given; a tensor has at most %d", a->ni,
                       EM_MAX_DIMS);
    if (!emo_reduce_mask(NULL, a->i, a->ni, in->ndim, mask)) return em_last_status();
    int k = 0;
    for (int d = 0; d < in->ndim; d++) {
        if (!mask[d]) out->shape[k++] = in->shape[d];
        else if (a->j[0]) out->shape[k++] = 1;
    }
    out->ndim = k;
    out->dtype = in->dtype;
    return EM_OK;
}

static em_status check_nonempty(const emo_meta *in, const bool *mask) {
    for (int d = 0; d < in->ndim; d++)
        if (mask[d] && in->shape[d] == 0)
            return emo_err(EM_ERR_SHAPE, NULL, in, 1, "cannot reduce over dim %d of size 0: this reduction has "
                           "no identity value; reduce over non-empty dims only", d);
    return EM_OK;
}

/* sum, prod: integer and bool inputs give i64 (PyTorch) */
EMO_INFER(emo_infer_reduce) {
    EM_UNUSED(n_in);
    bool mask[EM_MAX_DIMS];
    if (reduce_shape(a, in, mask, out) != EM_OK) return em_last_status();
    if (!emt_is_float(in[0].dtype)) out[0].dtype = EM_I64;
    *n_out = 1;
    return EM_OK;
}

/* amax, amin: keep the dtype; the reduced dims must not be empty */
EMO_INFER(emo_infer_reduce_minmax) {
    EM_UNUSED(n_in);
    bool mask[EM_MAX_DIMS];
    if (reduce_shape(a, in, mask, out) != EM_OK || check_nonempty(in, mask) != EM_OK) return em_last_status();
    *n_out = 1;
    return EM_OK;
}

/* mean, var, std: floating inputs only (PyTorch refuses integers too) */
EMO_INFER(emo_infer_reduce_float) {
    EM_UNUSED(n_in);
    bool mask[EM_MAX_DIMS];
    if (reduce_shape(a, in, mask, out) != EM_OK) return em_last_status();
    if (!emt_is_float(in[0].dtype))
        return emo_err(EM_ERR_DTYPE, NULL, in, 1, "needs a floating-point input, got %s; use em_cast(x, EM_F32) "
                       "first", em_dtype_name(in[0].dtype));
    *n_out = 1;
    return EM_OK;
}

/* logsumexp: integer and bool inputs compute in f32 (PyTorch) */
EMO_INFER(emo_infer_logsumexp) {
    EM_UNUSED(n_in);
    bool mask[EM_MAX_DIMS];
    if (reduce_shape(a, in, mask, out) != EM_OK) return em_last_status();
    if (!emt_is_float(in[0].dtype)) out[0].dtype = EM_F32;
    *n_out = 1;
    return EM_OK;
}

/* one dim j[1] (0 for a 0-dim input), keepdim j[0]; the dim must not be empty */
static em_status dim_shape(const emo_attrs *a, const emo_meta *in, emo_meta *out) {
    int64_t dim = a->j[1];
    if (dim < 0 || dim >= (in->ndim > 0 ? in->ndim : 1))
        return emo_err(EM_ERR_ARG, NULL, in, 1, "dim %lld is out of range for a tensor with %d dims",
                       (long long)dim, in->ndim);
    bool mask[EM_MAX_DIMS];
    dim_mask(dim, in->ndim, mask);
    if (check_nonempty(in, mask) != EM_OK) return em_last_status();
    int k = 0;
    for (int d = 0; d < in->ndim; d++) {
        if (!mask[d]) out->shape[k++] = in->shape[d];
        else if (a->j[0]) out->shape[k++] = 1;
    }
    out->ndim = k;
    out->dtype = in->dtype;
    return EM_OK;
}

/* max_dim, min_dim: (values in x's dtype, indices i64) */
EMO_INFER(emo_infer_reduce_dim) {
    EM_UNUSED(n_in);
    if (dim_shape(a, in, &out[0]) != EM_OK) return em_last_status();
    out[1] = out[0];
    out[1].dtype = EM_I64;
    *n_out = 2;
    return EM_OK;
}

EMO_INFER(emo_infer_argreduce) {
    EM_UNUSED(n_in);
    if (dim_shape(a, in, &out[0]) != EM_OK) return em_last_status();
    out[0].dtype = EM_I64;
    *n_out = 1;
    return EM_OK;
}

/* cumsum: x's shape; integer and bool inputs give i64 (PyTorch) */
EMO_INFER(emo_infer_cumsum) {
    EM_UNUSED(n_in);
    int64_t dim = a->j[1];
    if (dim < 0 || dim >= (in->ndim > 0 ? in->ndim : 1))
        return emo_err(EM_ERR_ARG, NULL, in, 1, "dim %lld is out of range for a tensor with %d dims",
                       (long long)dim, in->ndim);
    out[0] = in[0];
    if (!emt_is_float(in[0].dtype)) out[0].dtype = EM_I64;
    *n_out = 1;
    return EM_OK;
}

/* ---- kernels: sum, prod, amax, amin, mean -------------------------------------------------------- */
#define SIMPLE_KERNEL(NAME, KIND)                                                                \
    EMO_KERNEL(NAME) {                                                                           \
        EM_UNUSED(n_in);                                                                         \
        EM_UNUSED(n_out);                                                                        \
        bool mask[EM_MAX_DIMS];                                                                  \
        attr_mask(a, in[0]->ndim, mask);                                                         \
        return simple_reduce(KIND, in[0], mask, a->j[0] != 0, out[0]);                           \
    }

SIMPLE_KERNEL(emo_k_sum, RK_SUM)
SIMPLE_KERNEL(emo_k_prod, RK_PROD)
SIMPLE_KERNEL(emo_k_amax, RK_MAX)
SIMPLE_KERNEL(emo_k_amin, RK_MIN)

/* float statistics share one layout: sums -> mean -> squared deviations (two passes, double);
   logsumexp: max -> sum of exp(x - max) */
typedef enum { ST_MEAN, ST_VAR, ST_STD, ST_LSE } stat_kind;

static void stat_finish(stat_kind s, const rlayout *L, int64_t correction, em_tensor_t *p, em_tensor_t *res) {
    double *r = (double *)(void *)emt_data(res);
    int64_t n = L->M * L->N, R = L->R;
    if (s == ST_LSE) {
        double *m = (double *)(void *)emt_data(p);
        reduce_layout(RK_MAX, L, NULL, p);
        reduce_layout(RK_SUMEXP, L, p, res);
        /* all -inf gives -inf, any +inf gives +inf, NaN stays NaN: the max says it */
        for (int64_t i = 0; i < n; i++) r[i] = isfinite(m[i]) ? m[i] + log(r[i]) : m[i];
        return;
    }
    em_tensor_t *mt = s == ST_MEAN ? res : p;
    double *mean = (double *)(void *)emt_data(mt);
    reduce_layout(RK_SUM, L, NULL, mt);
    for (int64_t i = 0; i < n; i++) mean[i] /= (double)R; /* 0/0: NaN over empty dims */
    if (s == ST_MEAN) return;
    reduce_layout(RK_SQDEV, L, p, res);
    double div = (double)EM_MAX(R - correction, 0); /* N - correction <= 0: inf or NaN */
    for (int64_t i = 0; i < n; i++) r[i] = s == ST_STD ? sqrt(r[i] / div) : r[i] / div;
}

static em_status stat_reduce(stat_kind s, const emo_attrs *a, em_tensor_t *x, em_tensor_t *out) {
    bool mask[EM_MAX_DIMS];
    attr_mask(a, x->ndim, mask);
    rlayout L;
    if (make_layout(x, mask, compute_dtype(out->dtype), &L) != EM_OK) return em_last_status();
    em_tensor_t *res = result_for(out, &L, x, mask, EM_F64), *p = NULL;
    if (res && s != ST_MEAN) p = emt_new(EM_F64, res->shape, res->ndim);
    if (res && (s == ST_MEAN || p)) stat_finish(s, &L, a->j[1], p, res);
    bool ok = res && (s == ST_MEAN || p);
    em_release(p);
    em_release(L.x);
    if (!ok) {
        em_release(res);
        return em_last_status();
    }
    return result_done(out, res, &L, x, mask, a->j[0] != 0);
}

EMO_KERNEL(emo_k_mean) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    return stat_reduce(ST_MEAN, a, in[0], out[0]);
}

EMO_KERNEL(emo_k_var) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    return stat_reduce(ST_VAR, a, in[0], out[0]);
}

EMO_KERNEL(emo_k_std) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    return stat_reduce(ST_STD, a, in[0], out[0]);
}

EMO_KERNEL(emo_k_logsumexp) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    return stat_reduce(ST_LSE, a, in[0], out[0]);
}

/* ---- kernels: max/min along a dim with indices, argmax/argmin ------------------------------------ */
/* val[m*N + j], idx[m*N + j] = best x[m, r, j] over r and its first r (NaN counts as the largest
   for max and the smallest for min, as PyTorch). R >= 1 (infer refuses empty dims).
   Rows (N == 1) take the extreme with a simd pass and then look for its first position. */
#define DEF_ARG_LOOP(SUF, T, EXT)                                                                \
    static void arg_cols_##SUF(bool is_max, const T *xb, int64_t R, int64_t N, int64_t nj,       \
                               T *restrict bv, int64_t *restrict bi) {                           \
        for (int64_t j = 0; j < nj; j++) {                                                       \
            bv[j] = xb[j];                                                                       \
            bi[j] = 0;                                                                           \
        }                                                                                        \
        for (int64_t r = 1; r < R; r++) {                                                        \
            const T *row = xb + r * N;                                                           \
            for (int64_t j = 0; j < nj; j++) {                                                   \
                T v = row[j], b = bv[j];                                                         \
                bool better = (is_max ? v > b : v < b) || (v != v && b == b);                    \
                bv[j] = better ? v : b;                                                          \
                bi[j] = better ? r : bi[j];                                                      \
            }                                                                                    \
        }                                                                                        \
    }                                                                                            \
    static void arg_##SUF(bool is_max, const T *x, int64_t M, int64_t R, int64_t N, T *val,      \
                          int64_t *idx) {                                                        \
        int64_t nch = (N + COLS - 1) / COLS, tasks = M * nch;                                    \
        int nth = M * R * N >= PAR_WORK ? emb_num_threads() : 1;                                 \
        _Pragma("omp parallel for schedule(static) num_threads(nth) if (nth > 1)")               \
        for (int64_t t = 0; t < tasks; t++) {                                                    \
            int64_t m = t / nch, j0 = (t % nch) * COLS, nj = EM_MIN(COLS, N - j0);               \
            const T *xb = x + m * R * N + j0;                                                    \
            if (N > 1) {                                                                         \
                arg_cols_##SUF(is_max, xb, R, N, nj, val + m * N + j0, idx + m * N + j0);        \
                continue;                                                                        \
            }                                                                                    \
            T e = (T)EXT(xb, R, is_max);                                                         \
            int64_t r = 0;                                                                       \
            if (e != e) while (xb[r] == xb[r]) r++;                                              \
            else while (xb[r] != e) r++;                                                         \
            val[m] = e;                                                                          \
            idx[m] = r;                                                                          \
        }                                                                                        \
    }

/* integer extreme for arg rows */
static int64_t row_ext_i64(const int64_t *restrict x, int64_t n, bool is_max) {
    int64_t m = x[0];
    if (is_max) {
#pragma omp simd reduction(max : m)
        for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    } else {
#pragma omp simd reduction(min : m)
        for (int64_t i = 0; i < n; i++) m = x[i] < m ? x[i] : m;
    }
    return m;
}

DEF_ARG_LOOP(f32, float, row_ext_f32)
DEF_ARG_LOOP(f64, double, row_ext_f64)
DEF_ARG_LOOP(i64, int64_t, row_ext_i64)

/* values (may be NULL: argmax/argmin) and indices of the max or min along dim j[1] */
static em_status arg_reduce(bool is_max, const emo_attrs *a, em_tensor_t *x, em_tensor_t *values,
                            em_tensor_t *indices) {
    bool mask[EM_MAX_DIMS];
    dim_mask(a->j[1], x->ndim, mask);
    em_dtype ct = compute_dtype(x->dtype);
    rlayout L;
    if (make_layout(x, mask, ct, &L) != EM_OK) return em_last_status();
    em_tensor_t *idx = result_for(indices, &L, x, mask, EM_I64), *val = NULL;
    if (idx) val = values ? result_for(values, &L, x, mask, ct) : emt_new(ct, idx->shape, idx->ndim);
    if (!idx || !val) {
        em_release(L.x);
        em_release(idx);
        return em_last_status();
    }
    void *xv = emt_data(L.x), *vv = emt_data(val);
    int64_t *iv = (int64_t *)(void *)emt_data(idx);
    if (ct == EM_F32) arg_f32(is_max, xv, L.M, L.R, L.N, vv, iv);
    else if (ct == EM_F64) arg_f64(is_max, xv, L.M, L.R, L.N, vv, iv);
    else arg_i64(is_max, xv, L.M, L.R, L.N, vv, iv);
    em_release(L.x);
    bool keep = a->j[0] != 0;
    em_status st = result_done(indices, idx, &L, x, mask, keep);
    if (!values) em_release(val);
    else if (st == EM_OK) st = result_done(values, val, &L, x, mask, keep);
    else em_release(val);
    return st;
}

EMO_KERNEL(emo_k_max_dim) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    return arg_reduce(true, a, in[0], out[0], out[1]);
}

EMO_KERNEL(emo_k_min_dim) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    return arg_reduce(false, a, in[0], out[0], out[1]);
}

EMO_KERNEL(emo_k_argmax) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    return arg_reduce(true, a, in[0], NULL, out[0]);
}

EMO_KERNEL(emo_k_argmin) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    return arg_reduce(false, a, in[0], NULL, out[0]);
}

/* ---- kernel: cumsum ----------------------------------------------------------------------------- */
/* o[m, r, j] = o[m, r-1, j] + x[m, r, j]: one scan per (m, column chunk), accumulating in A;
   rows (N == 1) are one running sum */
#define DEF_SCAN(SUF, T, A, ADD)                                                                 \
    static void scan_##SUF(const T *x, int64_t M, int64_t R, int64_t N, A *o) {                  \
        int64_t nch = (N + COLS - 1) / COLS, tasks = M * nch;                                    \
        int nth = M * R * N >= PAR_WORK ? emb_num_threads() : 1;                                 \
        _Pragma("omp parallel for schedule(static) num_threads(nth) if (nth > 1)")               \
        for (int64_t t = 0; t < tasks; t++) {                                                    \
            int64_t m = t / nch, j0 = (t % nch) * COLS, nj = EM_MIN(COLS, N - j0);               \
            const T *xb = x + m * R * N + j0;                                                    \
            A *ob = o + m * R * N + j0;                                                          \
            if (N == 1) {                                                                        \
                A acc = 0;                                                                       \
                for (int64_t r = 0; r < R; r++) ob[r] = acc = ADD(acc, (A)xb[r]);                \
                continue;                                                                        \
            }                                                                                    \
            for (int64_t j = 0; R > 0 && j < nj; j++) ob[j] = (A)xb[j];                          \
            for (int64_t r = 1; r < R; r++) {                                                    \
                const T *restrict xr = xb + r * N;                                               \
                const A *prev = ob + (r - 1) * N;                                                \
                A *restrict cur = ob + r * N;                                                    \
                for (int64_t j = 0; j < nj; j++) cur[j] = ADD(prev[j], (A)xr[j]);                \
            }                                                                                    \
        }                                                                                        \
    }

#define ADD_F(a, b) ((a) + (b))
#define ADD_I(a, b) ((int64_t)((uint64_t)(a) + (uint64_t)(b)))
DEF_SCAN(f32, float, double, ADD_F)
DEF_SCAN(f64, double, double, ADD_F)
DEF_SCAN(i64, int64_t, int64_t, ADD_I)

EMO_KERNEL(emo_k_cumsum) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    em_tensor_t *x = in[0];
    bool mask[EM_MAX_DIMS], none[EM_MAX_DIMS] = {0};
    dim_mask(a->j[1], x->ndim, mask);
    em_dtype ct = compute_dtype(x->dtype);
    rlayout L;
    if (make_layout(x, mask, ct, &L) != EM_OK) return em_last_status();
    em_tensor_t *res = result_for(out[0], &L, x, none, ct == EM_I64 ? EM_I64 : EM_F64);
    if (!res) {
        em_release(L.x);
        return em_last_status();
    }
    void *xv = emt_data(L.x), *rv = emt_data(res);
    if (ct == EM_F32) scan_f32(xv, L.M, L.R, L.N, rv);
    else if (ct == EM_F64) scan_f64(xv, L.M, L.R, L.N, rv);
    else scan_i64(xv, L.M, L.R, L.N, rv);
    em_release(L.x);
    return result_done(out[0], res, &L, x, none, false);
}

/* ---- backward helpers ----------------------------------------------------------------------------- */
/* the reduction dims of the attrs as ints for the public API */
static int attr_dims(const emo_attrs *a, int *dims) {
    for (int k = 0; k < a->ni; k++) dims[k] = (int)a->i[k];
    return a->ni;
}

/* g (the output's shape) reshaped to keepdim form: size 1 at every reduced dim */
static em_tensor_t *keepdim_form(em_tensor_t *g, const emo_attrs *a, const emo_meta *im) {
    if (!g || a->j[0]) return g;
    bool mask[EM_MAX_DIMS];
    attr_mask(a, im->ndim, mask);
    int64_t sh[EM_MAX_DIMS];
    for (int d = 0; d < im->ndim; d++) sh[d] = mask[d] ? 1 : im->shape[d];
    return em_reshape(g, sh, im->ndim);
}

/* g (the output's shape) broadcast back to the input's shape */
static em_tensor_t *unreduce(em_tensor_t *g, const emo_attrs *a, const emo_meta *im) {
    g = keepdim_form(g, a, im);
    return g ? em_expand(g, im->shape, im->ndim) : NULL;
}

/* number of input elements per output element */
static int64_t reduce_count(const emo_attrs *a, const emo_meta *im) {
    bool mask[EM_MAX_DIMS];
    attr_mask(a, im->ndim, mask);
    int64_t n = 1;
    for (int d = 0; d < im->ndim; d++)
        if (mask[d]) n *= im->shape[d];
    return n;
}

static em_status set_gin(em_tensor_t **gin, em_tensor_t *g) {
    gin[0] = g;
    return g ? EM_OK : em_last_status();
}

/* ---- backward rules --------------------------------------------------------------------------------- */
EMO_BACKWARD(emo_bw_sum) { return set_gin(gin, unreduce(gout[0], c->attrs, &c->in_meta[0])); }

EMO_BACKWARD(emo_bw_mean) {
    double n = (double)reduce_count(c->attrs, &c->in_meta[0]);
    return set_gin(gin, unreduce(em_div_scalar(gout[0], n), c->attrs, &c->in_meta[0]));
}

/* d prod / d x_i = product of the others, computed without dividing by zero: with no zero in
   the slice it is prod / x_i; with exactly one zero only that position gets the product of the
   rest; with two or more every gradient is 0 */
EMO_BACKWARD(emo_bw_prod) {
    const emo_attrs *a = c->attrs;
    em_tensor_t *x = c->in[0];
    int dims[EM_MAX_DIMS], nd = attr_dims(a, dims);
    em_tensor_t *zero = em_scalar(0.0, x->dtype);
    em_tensor_t *z = em_eq(x, zero);
    em_tensor_t *xs = em_where(z, em_scalar(1.0, x->dtype), x);
    em_tensor_t *pnz = em_prod(xs, dims, nd, true);                    /* product of the non-zeros */
    em_tensor_t *nz = em_sum(z, dims, nd, true);                       /* zeros per slice (i64) */
    em_tensor_t *one_zero = em_eq(nz, em_scalar(1.0, EM_I64));
    em_tensor_t *no_zero = em_eq(nz, em_scalar(0.0, EM_I64));
    em_tensor_t *at_zero = em_where(one_zero, pnz, zero);
    em_tensor_t *elsewhere = em_where(no_zero, em_div(pnz, xs), zero);
    em_tensor_t *d = em_where(z, at_zero, elsewhere);
    return set_gin(gin, em_mul(d, keepdim_form(gout[0], a, &c->in_meta[0])));
}

/* the gradient is shared evenly among tied extremes (PyTorch's amax/amin rule) */
static em_status bw_amax_amin(const emo_bctx *c, em_tensor_t *const *gout, em_tensor_t **gin) {
    const emo_attrs *a = c->attrs;
    em_tensor_t *x = c->in[0];
    int dims[EM_MAX_DIMS], nd = attr_dims(a, dims);
    em_tensor_t *hit = em_cast(em_eq(x, keepdim_form(c->out[0], a, &c->in_meta[0])), x->dtype);
    em_tensor_t *count = em_sum(hit, dims, nd, true);
    em_tensor_t *share = em_div(keepdim_form(gout[0], a, &c->in_meta[0]), count);
    return set_gin(gin, em_mul(hit, share));
}

EMO_BACKWARD(emo_bw_amax) { return bw_amax_amin(c, gout, gin); }
EMO_BACKWARD(emo_bw_amin) { return bw_amax_amin(c, gout, gin); }

EMO_BACKWARD(emo_bw_logsumexp) {
    const emo_attrs *a = c->attrs;
    const emo_meta *im = &c->in_meta[0];
    em_tensor_t *soft = em_exp(em_sub(c->in[0], keepdim_form(c->out[0], a, im)));
    return set_gin(gin, em_mul(soft, keepdim_form(gout[0], a, im)));
}

/* d var / d x = 2 (x - mean) / (N - correction); d std = d var / (2 std) */
static em_status bw_var_std(const emo_bctx *c, em_tensor_t *const *gout, em_tensor_t **gin, bool is_std) {
    const emo_attrs *a = c->attrs;
    const emo_meta *im = &c->in_meta[0];
    int dims[EM_MAX_DIMS], nd = attr_dims(a, dims);
    double div = (double)EM_MAX(reduce_count(a, im) - a->j[1], 0);
    em_tensor_t *dev = em_sub(c->in[0], em_mean(c->in[0], dims, nd, true));
    em_tensor_t *g = keepdim_form(gout[0], a, im);
    if (is_std) g = em_div(g, em_mul_scalar(keepdim_form(c->out[0], a, im), div));
    else g = em_mul_scalar(g, 2.0 / div);
    return set_gin(gin, em_mul(dev, g));
}

EMO_BACKWARD(emo_bw_var) { return bw_var_std(c, gout, gin, false); }
EMO_BACKWARD(emo_bw_std) { return bw_var_std(c, gout, gin, true); }

/* gout lands on the index that won: a one-hot mask from comparing an arange with the indices */
static em_status bw_max_min_dim(const emo_bctx *c, em_tensor_t *const *gout, em_tensor_t **gin) {
    const emo_meta *im = &c->in_meta[0];
    int dim = (int)c->attrs->j[1];
    if (im->ndim == 0) return set_gin(gin, gout[0]);
    em_tensor_t *g = gout[0], *idx = c->out[1];
    if (!c->attrs->j[0]) {
        g = em_unsqueeze(g, dim);
        idx = em_unsqueeze(idx, dim);
    }
    int64_t sh[EM_MAX_DIMS];
    for (int d = 0; d < im->ndim; d++) sh[d] = d == dim ? im->shape[d] : 1;
    em_tensor_t *pos = em_reshape(em_arange(0.0, (double)im->shape[dim], 1.0, EM_I64), sh, im->ndim);
    em_tensor_t *hot = em_eq(pos, idx);
    return set_gin(gin, em_mul(em_cast(hot, g ? g->dtype : EM_F32), g));
}

EMO_BACKWARD(emo_bw_max_dim) { return bw_max_min_dim(c, gout, gin); }
EMO_BACKWARD(emo_bw_min_dim) { return bw_max_min_dim(c, gout, gin); }

/* the reverse cumsum of gout, as sum(gout) - cumsum(gout) + gout along the dim */
EMO_BACKWARD(emo_bw_cumsum) {
    int dim = (int)c->attrs->j[1];
    em_tensor_t *g = gout[0];
    if (c->in_meta[0].ndim == 0) return set_gin(gin, g);
    em_tensor_t *total = em_sum(g, &dim, 1, true);
    return set_gin(gin, em_add(em_sub(total, em_cumsum(g, dim)), g));
}

/* ---- decompositions ------------------------------------------------------------------------------------ */
EMO_DECOMP(emo_dc_mean) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    int dims[EM_MAX_DIMS], nd = attr_dims(a, dims);
    emo_meta im;
    emo_meta_of(in[0], &im);
    out[0] = em_div_scalar(em_sum(in[0], dims, nd, a->j[0] != 0), (double)reduce_count(a, &im));
    return out[0] ? EM_OK : em_last_status();
}

/* max-shifted: log(sum(exp(x - m))) + m with m = amax(x) held constant (infinite m replaced by 0
   so that all -inf slices give log(0) = -inf) */
EMO_DECOMP(emo_dc_logsumexp) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    int dims[EM_MAX_DIMS], nd = attr_dims(a, dims);
    bool keep = a->j[0] != 0;
    em_tensor_t *x = in[0];
    if (!emt_is_float(x->dtype)) x = em_cast(x, EM_F32);
    emo_meta im;
    emo_meta_of(in[0], &im);
    if (reduce_count(a, &im) == 0) { /* amax has no identity; an empty sum of exps is 0 */
        em_tensor_t *s = em_sum(em_exp(x), dims, nd, keep);
        out[0] = em_log(s);
        return out[0] ? EM_OK : em_last_status();
    }
    em_tensor_t *m = em_detach(em_amax(x, dims, nd, true));
    em_tensor_t *inf = em_eq(em_abs(m), em_scalar(INFINITY, m ? m->dtype : EM_F32));
    m = em_masked_fill(m, inf, 0.0);
    em_tensor_t *l = em_add(em_log(em_sum(em_exp(em_sub(x, m)), dims, nd, true)), m);
    if (!keep && l) { /* drop the reduced dims */
        bool mask[EM_MAX_DIMS];
        attr_mask(a, im.ndim, mask);
        int64_t sh[EM_MAX_DIMS];
        int k = 0;
        for (int d = 0; d < l->ndim; d++)
            if (!mask[d]) sh[k++] = l->shape[d];
        l = em_reshape(l, sh, k);
    }
    out[0] = l;
    return out[0] ? EM_OK : em_last_status();
}

EMO_DECOMP(emo_dc_var) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    int dims[EM_MAX_DIMS], nd = attr_dims(a, dims);
    emo_meta im;
    emo_meta_of(in[0], &im);
    double div = (double)EM_MAX(reduce_count(a, &im) - a->j[1], 0);
    em_tensor_t *dev = em_sub(in[0], em_mean(in[0], dims, nd, true));
    out[0] = em_div_scalar(em_sum(em_square(dev), dims, nd, a->j[0] != 0), div);
    return out[0] ? EM_OK : em_last_status();
}

EMO_DECOMP(emo_dc_std) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    int dims[EM_MAX_DIMS], nd = attr_dims(a, dims);
    out[0] = em_sqrt(em_var(in[0], dims, nd, a->j[1], a->j[0] != 0));
    return out[0] ? EM_OK : em_last_status();
}

/* ---- public wrappers ------------------------------------------------------------------------------------ */
/* dims (NULL or none: all) normalised, checked for duplicates and written ascending into a->i;
   a 0-dim tensor accepts dim 0 and -1, which reduce nothing */
static bool reduce_attrs(const char *op, em_tensor_t *x, const int *dims, int ndims, bool keepdim, emo_attrs *a) {
    if (!emt_check(x, op, "x")) return false;
    if (ndims < 0 || ndims > EM_MAX_DIMS)
        return em_seterr(EM_ERR_ARG, "%s: ndims %d must be 0..%d", op, ndims, EM_MAX_DIMS), false;
    bool seen[EM_MAX_DIMS] = {0};
    for (int k = 0; k < (dims ? ndims : 0); k++) {
        int d = dims[k];
        if (!emt_wrap_dim(&d, x->ndim, op)) return false;
        if (x->ndim == 0) continue;
        if (seen[d]) return em_seterr(EM_ERR_ARG, "%s: dim %d appears twice in the reduction dims", op, d), false;
        seen[d] = true;
    }
    bool all = !dims || ndims == 0;
    a->ni = 0;
    for (int d = 0; d < x->ndim; d++)
        if (all || seen[d]) a->i[a->ni++] = d;
    a->j[0] = keepdim;
    return true;
}

#define REDUCE_WRAPPER(NAME, OP)                                                                 \
    em_tensor_t *NAME(em_tensor_t *x, const int *dims, int ndims, bool keepdim) {                \
        emo_attrs a = emo_attrs0();                                                              \
        if (!reduce_attrs(#NAME, x, dims, ndims, keepdim, &a)) return NULL;                      \
        return emo_call1(OP, &x, 1, &a);                                                         \
    }

REDUCE_WRAPPER(em_sum, EMO_sum)
REDUCE_WRAPPER(em_mean, EMO_mean)
REDUCE_WRAPPER(em_prod, EMO_prod)
REDUCE_WRAPPER(em_amax, EMO_amax)
REDUCE_WRAPPER(em_amin, EMO_amin)
REDUCE_WRAPPER(em_logsumexp, EMO_logsumexp)

em_tensor_t *em_var(em_tensor_t *x, const int *dims, int ndims, int64_t correction, bool keepdim) {
    emo_attrs a = emo_attrs0();
    if (!reduce_attrs("em_var", x, dims, ndims, keepdim, &a)) return NULL;
    a.j[1] = correction;
    return emo_call1(EMO_var, &x, 1, &a);
}

em_tensor_t *em_std(em_tensor_t *x, const int *dims, int ndims, int64_t correction, bool keepdim) {
    emo_attrs a = emo_attrs0();
    if (!reduce_attrs("em_std", x, dims, ndims, keepdim, &a)) return NULL;
    a.j[1] = correction;
    return emo_call1(EMO_std, &x, 1, &a);
}

/* one dim, normalised (0 for a 0-dim tensor) into j[1], keepdim into j[0] */
static bool dim_attrs(const char *op, em_tensor_t *x, int dim, bool keepdim, emo_attrs *a) {
    if (!emt_check(x, op, "x") || !emt_wrap_dim(&dim, x->ndim, op)) return false;
    a->j[0] = keepdim;
    a->j[1] = dim;
    return true;
}

/* values and (when indices is not NULL) indices; a private scope drops the unwanted output */
static em_tensor_t *max_min(emo_op op, const char *name, em_tensor_t *x, int dim, bool keepdim,
                            em_tensor_t **indices) {
    if (indices) *indices = NULL;
    emo_attrs a = emo_attrs0();
    if (!dim_attrs(name, x, dim, keepdim, &a)) return NULL;
    em_scope_t *s = em_scope_begin();
    if (!s) return NULL;
    em_tensor_t *out[2] = {NULL, NULL};
    if (emo_call(op, &x, 1, &a, out, 2) != 2) {
        em_scope_end(s);
        return NULL;
    }
    em_keep(out[0]);
    if (indices) *indices = em_keep(out[1]);
    em_scope_end(s);
    return out[0];
}

em_tensor_t *em_max(em_tensor_t *x, int dim, bool keepdim, em_tensor_t **indices) {
    return max_min(EMO_max_dim, "em_max", x, dim, keepdim, indices);
}

em_tensor_t *em_min(em_tensor_t *x, int dim, bool keepdim, em_tensor_t **indices) {
    return max_min(EMO_min_dim, "em_min", x, dim, keepdim, indices);
}

em_tensor_t *em_argmax(em_tensor_t *x, int dim, bool keepdim) {
    emo_attrs a = emo_attrs0();
    if (!dim_attrs("em_argmax", x, dim, keepdim, &a)) return NULL;
    return emo_call1(EMO_argmax, &x, 1, &a);
}

em_tensor_t *em_argmin(em_tensor_t *x, int dim, bool keepdim) {
    emo_attrs a = emo_attrs0();
    if (!dim_attrs("em_argmin", x, dim, keepdim, &a)) return NULL;
    return emo_call1(EMO_argmin, &x, 1, &a);
}

em_tensor_t *em_cumsum(em_tensor_t *x, int dim) {
    emo_attrs a = emo_attrs0();
    if (!dim_attrs("em_cumsum", x, dim, false, &a)) return NULL;
    return emo_call1(EMO_cumsum, &x, 1, &a);
}
