/* cases_reduce.c - op cases for the reduce group (src/ops/reduce.c); see tests/lib/harness.h.
 *
 * Dim-list reductions (sum mean prod amax amin logsumexp var std) read ia[0] keepdim,
 * ia[1] correction (var/std), ia[2..nia) the dims (none: every dim). One-dim ops (max_dim
 * min_dim argmax argmin cumsum) read ia[0] keepdim, ia[1] dim. The references are plain float64
 * loops over the input: one pass for sums, products and extremes, a second for squared
 * deviations and shifted exponentials.
 */
#include "harness.h"

#include <stdbool.h>

/* ---- forward calls ---------------------------------------------------------------------------- */
static int fwd_dims(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    int dims[8], nd = c->nia - 2;
    for (int k = 0; k < nd; k++) dims[k] = (int)c->ia[2 + k];
    const int *dp = nd > 0 ? dims : NULL;
    bool keep = c->ia[0] != 0;
    const char *op = c->op;
    if (!strcmp(op, "sum")) out[0] = em_sum(in[0], dp, nd, keep);
    else if (!strcmp(op, "mean")) out[0] = em_mean(in[0], dp, nd, keep);
    else if (!strcmp(op, "prod")) out[0] = em_prod(in[0], dp, nd, keep);
    else if (!strcmp(op, "amax")) out[0] = em_amax(in[0], dp, nd, keep);
    else if (!strcmp(op, "amin")) out[0] = em_amin(in[0], dp, nd, keep);
    else if (!strcmp(op, "logsumexp")) out[0] = em_logsumexp(in[0], dp, nd, keep);
    else if (!strcmp(op, "var")) out[0] = em_var(in[0], dp, nd, c->ia[1], keep);
    else if (!strcmp(op, "std")) out[0] = em_std(in[0], dp, nd, c->ia[1], keep);
    return out[0] ? 1 : 0;
}

static int fwd_dim(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    bool keep = c->ia[0] != 0;
    int dim = (int)c->ia[1];
    const char *op = c->op;
    if (!strcmp(op, "max_dim")) out[0] = em_max(in[0], dim, keep, &out[1]);
    else if (!strcmp(op, "min_dim")) out[0] = em_min(in[0], dim, keep, &out[1]);
    else if (!strcmp(op, "argmax")) return (out[0] = em_argmax(in[0], dim, keep)) ? 1 : 0;
    else if (!strcmp(op, "argmin")) return (out[0] = em_argmin(in[0], dim, keep)) ? 1 : 0;
    else if (!strcmp(op, "cumsum")) return (out[0] = em_cumsum(in[0], dim)) ? 1 : 0;
    return out[0] && out[1] ? 2 : 0;
}

/* ---- reference helpers ------------------------------------------------------------------------- */
static bool is_float(em_dtype d) { return d == EM_F32 || d == EM_F64 || d == EM_F16 || d == EM_BF16; }

/* the output shape for mask and keepdim; returns its rank */
static int out_shape(const th_rt *x, const bool *mask, bool keep, int64_t *osh) {
    int k = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (!mask[d]) osh[k++] = x->shape[d];
        else if (keep) osh[k++] = 1;
    }
    return k;
}

/* flat output index of input element i (the kept coordinates, row-major) */
static int64_t out_index(const th_rt *x, const bool *mask, int64_t i) {
    int64_t idx[TH_MAX_DIMS], o = 0;
    th_unravel(i, x->shape, x->ndim, idx);
    for (int d = 0; d < x->ndim; d++)
        if (!mask[d]) o = o * x->shape[d] + idx[d];
    return o;
}

/* ---- reference: dim-list reductions ---------------------------------------------------------------- */
static int ref_dims(const th_rt *in, const th_case *c, th_rt *out) {
    const th_rt *x = &in[0];
    bool mask[TH_MAX_DIMS] = {0};
    int nd = c->nia - 2;
    for (int d = 0; d < x->ndim; d++) mask[d] = nd == 0;
    for (int k = 0; k < nd && x->ndim > 0; k++) mask[(c->ia[2 + k] + x->ndim) % x->ndim] = true;
    int64_t osh[TH_MAX_DIMS], n = th_numel(x), count = 1;
    int ond = out_shape(x, mask, c->ia[0] != 0, osh);
    for (int d = 0; d < x->ndim; d++)
        if (mask[d]) count *= x->shape[d];
    const char *op = c->op;
    em_dtype dt = x->dtype;
    if (!is_float(dt) && (!strcmp(op, "sum") || !strcmp(op, "prod"))) dt = EM_I64;
    if (!is_float(dt) && !strcmp(op, "logsumexp")) dt = EM_F32;
    th_rt_alloc(&out[0], osh, ond, dt);
    int64_t no = th_numel(&out[0]);
    double *sum = calloc((size_t)no + 1, sizeof *sum), *prod = calloc((size_t)no + 1, sizeof *prod);
    double *mx = calloc((size_t)no + 1, sizeof *mx), *mn = calloc((size_t)no + 1, sizeof *mn);
    double *dev = calloc((size_t)no + 1, sizeof *dev), *ex = calloc((size_t)no + 1, sizeof *ex);
    for (int64_t o = 0; o < no; o++) {
        prod[o] = 1;
        mx[o] = -INFINITY;
        mn[o] = INFINITY;
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t o = out_index(x, mask, i);
        double v = x->d[i];
        sum[o] += v;
        prod[o] *= v;
        if (v > mx[o]) mx[o] = v;
        if (v < mn[o]) mn[o] = v;
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t o = out_index(x, mask, i);
        double m = sum[o] / (double)count;
        dev[o] += (x->d[i] - m) * (x->d[i] - m);
        ex[o] += exp(x->d[i] - mx[o]);
    }
    double div = count - c->ia[1] > 0 ? (double)(count - c->ia[1]) : 0.0;
    for (int64_t o = 0; o < no; o++) {
        double r = 0;
        if (!strcmp(op, "sum")) r = sum[o];
        else if (!strcmp(op, "mean")) r = sum[o] / (double)count;
        else if (!strcmp(op, "prod")) r = prod[o];
        else if (!strcmp(op, "amax")) r = mx[o];
        else if (!strcmp(op, "amin")) r = mn[o];
        else if (!strcmp(op, "logsumexp")) r = isfinite(mx[o]) ? mx[o] + log(ex[o]) : mx[o];
        else if (!strcmp(op, "var")) r = dev[o] / div;
        else if (!strcmp(op, "std")) r = sqrt(dev[o] / div);
        out[0].d[o] = r;
    }
    free(sum), free(prod), free(mx), free(mn), free(dev), free(ex);
    return 1;
}

/* ---- reference: one-dim ops ------------------------------------------------------------------------- */
static int ref_dim(const th_rt *in, const th_case *c, th_rt *out) {
    const th_rt *x = &in[0];
    int dim = x->ndim > 0 ? (int)((c->ia[1] + x->ndim) % x->ndim) : 0;
    bool mask[TH_MAX_DIMS] = {0};
    if (x->ndim > 0) mask[dim] = true;
    const char *op = c->op;
    int64_t n = th_numel(x);
    if (!strcmp(op, "cumsum")) {
        int64_t inner = 1, size = x->ndim > 0 ? x->shape[dim] : 1;
        for (int d = dim + 1; d < x->ndim; d++) inner *= x->shape[d];
        th_rt_alloc(&out[0], x->shape, x->ndim, is_float(x->dtype) ? x->dtype : EM_I64);
        for (int64_t i = 0; i < n; i++) {
            int64_t r = (i / inner) % size;
            out[0].d[i] = x->d[i] + (r > 0 ? out[0].d[i - inner] : 0.0);
        }
        return 1;
    }
    int64_t osh[TH_MAX_DIMS], inner = 1;
    int ond = out_shape(x, mask, c->ia[0] != 0, osh);
    for (int d = dim + 1; d < x->ndim; d++) inner *= x->shape[d];
    int64_t size = x->ndim > 0 ? x->shape[dim] : 1;
    bool is_max = strstr(op, "max") != NULL, with_values = strstr(op, "_dim") != NULL;
    th_rt *vals = with_values ? &out[0] : NULL, *idx = with_values ? &out[1] : &out[0];
    if (vals) th_rt_alloc(vals, osh, ond, x->dtype);
    th_rt_alloc(idx, osh, ond, EM_I64);
    int64_t no = th_numel(idx);
    double *best = calloc((size_t)no + 1, sizeof *best);
    for (int64_t i = 0; i < n; i++) { /* row-major order visits r ascending: strict compare keeps the first */
        int64_t o = out_index(x, mask, i), r = (i / inner) % size;
        double v = x->d[i];
        if (r == 0 || (is_max ? v > best[o] : v < best[o])) {
            best[o] = v;
            idx->d[o] = (double)r;
        }
    }
    if (vals) memcpy(vals->d, best, (size_t)no * sizeof *best);
    free(best);
    return with_values ? 2 : 1;
}

/* ---- the cases ------------------------------------------------------------------------------------------ */
#define ALL_DT (TH_FLOATS | TH_INTS | TH_BOOLS)
#define NUM_DT (TH_FLOATS | TH_INTS)
#define X2(a, b, ...) 1, {{2, {a, b}, TH_T, __VA_ARGS__}}
#define X3(a, b, c, ...) 1, {{3, {a, b, c}, TH_T, __VA_ARGS__}}
#define X1(a, ...) 1, {{1, {a}, TH_T, __VA_ARGS__}}
#define X0(...) 1, {{0, {0}, TH_T, __VA_ARGS__}}
/* ia for dim-list ops: keepdim, correction, dims... */
#define D(...) fwd_dims, ref_dims
#define K(...) fwd_dim, ref_dim

const th_case th_cases_reduce[] = {
    /* sum */
    {"sum", "dim 1", X2(3, 4, TH_SMALLINT), D(), ALL_DT, 1, {0, 0, 1}, 3},
    {"sum", "dim 0 (columns)", X2(5, 7), D(), TH_FLOATS | TH_I32, 1, {0, 0, 0}, 3},
    {"sum", "middle dim", X3(4, 5, 6), D(), TH_FLOATS | TH_I64, 1, {0, 0, 1}, 3},
    {"sum", "dims 0,2 keepdim", X3(2, 3, 4), D(), NUM_DT, 1, {1, 0, 0, 2}, 4},
    {"sum", "all", X3(2, 3, 4), D(), ALL_DT, 1, {0, 0}, 2},
    {"sum", "all keepdim", X3(2, 3, 4), D(), 0, 1, {1, 0}, 2},
    {"sum", "negative dims", X3(2, 3, 4), D(), 0, 1, {0, 0, -1, -3}, 4},
    {"sum", "noncontig", X2(5, 6, .noncontig = 1), D(), TH_FLOATS | TH_I32, 1, {0, 0, 0}, 3},
    {"sum", "noncontig rows", X3(3, 4, 5, .noncontig = 1), D(), 0, 1, {1, 0, 2}, 3},
    {"sum", "noncontig 1d", X1(9, .noncontig = 1), D(), 0, 1, {0, 0}, 2},
    {"sum", "size1 dims", X3(3, 1, 4), D(), 0, 1, {0, 0, 1}, 3},
    {"sum", "size1 reduced with others", X3(1, 5, 1), D(), 0, 1, {1, 0, 0, 2}, 4},
    {"sum", "size0 reduced", X2(0, 4), D(), TH_FLOATS | TH_INTS, 1, {0, 0, 0}, 3},
    {"sum", "size0 kept", X2(3, 0), D(), 0, 1, {0, 0, 0}, 3},
    {"sum", "0-dim dim 0", X0(), D(), NUM_DT, 1, {0, 0, 0}, 3},
    {"sum", "0-dim all", X0(), D(), 0, 1, {0, 0, -1}, 3},
    {"sum", "big rows", X2(64, 1000), D(), TH_F32 | TH_F64 | TH_BF16, 1, {0, 0, 1}, 3},
    {"sum", "big columns", X2(64, 1000), D(), TH_F32 | TH_F64 | TH_I32, 1, {0, 0, 0}, 3},
    {"sum", "big all", X2(64, 1000), D(), TH_F32 | TH_F64 | TH_I64, 0, {0, 0}, 2},
    {"sum", "tall narrow", X2(40000, 3), D(), TH_F32, 0, {0, 0, 0}, 3},
    {"sum", "wide columns, several chunks", X3(3, 8, 2100), D(), TH_F32 | TH_I32, 0, {0, 0, 1}, 3},
    {"sum", "noncontig 3d keepdim middle", X3(3, 4, 5, .noncontig = 1), D(), TH_F64, 1, {1, 0, 1}, 3},
    {"sum", "noncontig 3d keepdim outer", X3(3, 4, 5, .noncontig = 1), D(), TH_F64, 0, {1, 0, 0, 1}, 4},
    /* mean */
    {"mean", "dim 1", X2(3, 4), D(), TH_FLOATS, 1, {0, 0, 1}, 3},
    {"mean", "dims 0,2 keepdim", X3(2, 3, 4), D(), TH_FLOATS, 1, {1, 0, 0, 2}, 4},
    {"mean", "all", X3(2, 3, 4), D(), TH_FLOATS, 1, {0, 0}, 2},
    {"mean", "noncontig", X2(5, 6, .noncontig = 1), D(), 0, 1, {0, 0, -2}, 3},
    {"mean", "size0 gives nan", X2(0, 4), D(), TH_FLOATS, 0, {0, 0, 0}, 3},
    {"mean", "0-dim", X0(), D(), 0, 1, {0, 0}, 2},
    {"mean", "big", X2(64, 1000), D(), TH_F32 | TH_BF16, 1, {0, 0, 1}, 3},
    {"mean", "noncontig 3d keepdim", X3(3, 4, 5, .noncontig = 1), D(), TH_F64, 1, {1, 0, 0, 2}, 4},
    /* prod */
    {"prod", "dim 1", X2(3, 4, TH_POS), D(), TH_FLOATS, 1, {0, 0, 1}, 3},
    {"prod", "ints", X2(3, 4, TH_SMALLINT), D(), TH_INTS | TH_BOOLS, 0, {0, 0, 1}, 3},
    {"prod", "zeros (grad)", X2(8, 3, TH_SMALLINT), D(), TH_F64, 1, {0, 0, 1}, 3},
    {"prod", "dims 0,2 keepdim", X3(2, 3, 4, TH_POS), D(), 0, 1, {1, 0, 0, 2}, 4},
    {"prod", "all", X2(3, 4, TH_POS), D(), 0, 1, {0, 0}, 2},
    {"prod", "noncontig", X2(4, 3, TH_POS, .noncontig = 1), D(), 0, 1, {0, 0, 0}, 3},
    {"prod", "size0 gives 1", X2(0, 4), D(), TH_F32 | TH_I32, 0, {0, 0, 0}, 3},
    {"prod", "0-dim", X0(TH_POS), D(), 0, 1, {0, 0}, 2},
    /* amax, amin */
    {"amax", "dim 1", X2(3, 4, TH_DISTINCT), D(), TH_FLOATS, 1, {0, 0, 1}, 3},
    {"amax", "ints", X2(3, 5, TH_SMALLINT), D(), TH_INTS | TH_BOOLS, 0, {0, 0, 1}, 3},
    {"amax", "dims 0,2 keepdim", X3(2, 3, 4, TH_DISTINCT), D(), 0, 1, {1, 0, 0, 2}, 4},
    {"amax", "all", X3(2, 3, 4, TH_DISTINCT), D(), 0, 1, {0, 0}, 2},
    {"amax", "columns noncontig", X2(5, 6, TH_DISTINCT, .noncontig = 1), D(), 0, 1, {0, 0, 0}, 3},
    {"amax", "0-dim", X0(), D(), 0, 1, {0, 0, 0}, 3},
    {"amax", "big", X2(64, 1000, TH_DISTINCT), D(), TH_F32 | TH_I32, 0, {0, 0}, 2},
    {"amin", "dim 1", X2(3, 4, TH_DISTINCT), D(), TH_FLOATS, 1, {0, 0, -1}, 3},
    {"amin", "ints", X2(3, 5, TH_SMALLINT), D(), TH_INTS | TH_BOOLS, 0, {0, 0, 0}, 3},
    {"amin", "dims 0,2 keepdim", X3(2, 3, 4, TH_DISTINCT), D(), 0, 1, {1, 0, 0, 2}, 4},
    {"amin", "noncontig", X2(5, 6, TH_DISTINCT, .noncontig = 1), D(), 0, 1, {0, 0, 1}, 3},
    {"amin", "size0 kept", X2(0, 3), D(), 0, 0, {0, 0, 1}, 3},
    {"amax", "wide columns", X3(2, 5, 2100, TH_DISTINCT), D(), TH_F32 | TH_I64, 0, {0, 0, 1}, 3},
    {"amin", "noncontig 3d keepdim", X3(3, 4, 5, TH_DISTINCT, .noncontig = 1), D(), TH_F64, 1, {1, 0, 1, 2}, 4},
    /* logsumexp */
    {"logsumexp", "dim 1", X2(3, 4), D(), TH_FLOATS, 1, {0, 0, 1}, 3},
    {"logsumexp", "ints give f32", X2(3, 4, TH_SMALLINT), D(), TH_INTS | TH_BOOLS, 0, {0, 0, 1}, 3},
    {"logsumexp", "dims 0,2 keepdim", X3(2, 3, 4), D(), 0, 1, {1, 0, 0, 2}, 4},
    {"logsumexp", "all", X3(2, 3, 4), D(), 0, 1, {0, 0}, 2},
    {"logsumexp", "columns noncontig", X2(5, 6, .noncontig = 1), D(), 0, 1, {0, 0, 0}, 3},
    {"logsumexp", "distinct", X2(3, 4, TH_DISTINCT), D(), 0, 1, {0, 0, 1}, 3},
    {"logsumexp", "0-dim", X0(), D(), 0, 1, {0, 0}, 2},
    {"logsumexp", "wide columns", X3(2, 5, 2100), D(), TH_F32 | TH_F64, 0, {0, 0, 1}, 3},
    {"logsumexp", "noncontig 3d keepdim", X3(3, 4, 5, .noncontig = 1), D(), TH_F64, 1, {1, 0, 0}, 3},
    {"logsumexp", "big rows", X2(64, 1000), D(), TH_F32 | TH_F16, 0, {0, 0, 1}, 3},
    /* var, std */
    {"var", "dim 1", X2(3, 5), D(), TH_FLOATS, 1, {0, 1, 1}, 3},
    {"var", "correction 0 all", X3(2, 3, 4), D(), TH_FLOATS, 1, {0, 0}, 2},
    {"var", "dims 0,2 keepdim", X3(2, 3, 4), D(), 0, 1, {1, 1, 0, 2}, 4},
    {"var", "columns noncontig", X2(6, 5, .noncontig = 1), D(), 0, 1, {0, 2, 0}, 3},
    {"var", "single element gives nan", X2(3, 1), D(), 0, 0, {0, 1, 1}, 3},
    {"var", "big", X2(64, 1000), D(), TH_F32, 1, {0, 1, 1}, 3},
    {"std", "dim 1", X2(3, 5), D(), TH_FLOATS, 1, {0, 1, 1}, 3},
    {"std", "correction 0 all", X3(2, 3, 4), D(), TH_FLOATS, 1, {0, 0}, 2},
    {"std", "dims 0,2 keepdim", X3(2, 3, 4), D(), 0, 1, {1, 1, 0, 2}, 4},
    {"std", "columns noncontig", X2(6, 5, .noncontig = 1), D(), 0, 1, {0, 1, -2}, 3},
    {"var", "wide columns", X3(2, 5, 2100), D(), TH_F32, 0, {0, 1, 1}, 3},
    {"std", "noncontig 3d keepdim", X3(3, 4, 5, .noncontig = 1), D(), TH_F64, 1, {1, 1, 0, 2}, 4},
    /* max, min along a dim (values and indices) */
    {"max_dim", "dim 1", X2(3, 4, TH_DISTINCT), K(), TH_FLOATS, 1, {0, 1}, 2},
    {"max_dim", "dim 0 keepdim", X3(3, 4, 2, TH_DISTINCT), K(), 0, 1, {1, 0}, 2},
    {"max_dim", "ties take the first", X2(4, 6, TH_SMALLINT), K(), NUM_DT | TH_BOOLS, 0, {0, 1}, 2},
    {"max_dim", "negative dim noncontig", X3(3, 4, 5, TH_DISTINCT, .noncontig = 1), K(), 0, 1, {0, -2}, 2},
    {"max_dim", "0-dim", X0(), K(), 0, 1, {0, 0}, 2},
    {"max_dim", "size0 kept", X2(0, 3), K(), 0, 0, {0, 1}, 2},
    {"max_dim", "big rows", X2(64, 1000, TH_DISTINCT), K(), TH_F32, 0, {0, 1}, 2},
    {"min_dim", "dim 1", X2(3, 4, TH_DISTINCT), K(), TH_FLOATS, 1, {0, 1}, 2},
    {"min_dim", "dim 0 keepdim", X3(3, 4, 2, TH_DISTINCT), K(), 0, 1, {1, 0}, 2},
    {"min_dim", "ties take the first", X2(4, 6, TH_SMALLINT), K(), NUM_DT, 0, {0, 0}, 2},
    {"min_dim", "noncontig", X2(5, 4, TH_DISTINCT, .noncontig = 1), K(), 0, 1, {1, -1}, 2},
    {"max_dim", "wide columns", X3(2, 5, 2100, TH_DISTINCT), K(), TH_F32 | TH_I32, 0, {0, 1}, 2},
    {"min_dim", "noncontig 3d keepdim", X3(3, 4, 5, TH_DISTINCT, .noncontig = 1), K(), TH_F64, 1, {1, 0}, 2},
    /* argmax, argmin */
    {"argmax", "dim 1", X2(3, 4, TH_DISTINCT), K(), ALL_DT, 0, {0, 1}, 2},
    {"argmax", "ties take the first", X3(3, 4, 5, TH_SMALLINT), K(), NUM_DT, 0, {1, 1}, 2},
    {"argmax", "noncontig", X2(5, 6, TH_DISTINCT, .noncontig = 1), K(), 0, 0, {0, 0}, 2},
    {"argmax", "0-dim", X0(), K(), 0, 0, {0, -1}, 2},
    {"argmax", "big columns", X2(1000, 64, TH_DISTINCT), K(), TH_F32, 0, {0, 0}, 2},
    {"argmin", "dim 0", X2(3, 4, TH_DISTINCT), K(), ALL_DT, 0, {0, 0}, 2},
    {"argmin", "ties take the first", X3(3, 4, 5, TH_SMALLINT), K(), NUM_DT, 0, {0, -1}, 2},
    {"argmin", "noncontig keepdim", X2(5, 6, TH_DISTINCT, .noncontig = 1), K(), 0, 0, {1, 1}, 2},
    {"argmax", "big rows", X2(64, 1000, TH_DISTINCT), K(), TH_F32 | TH_I64, 0, {0, 1}, 2},
    {"argmin", "noncontig 3d", X3(3, 4, 5, TH_DISTINCT, .noncontig = 1), K(), TH_F64, 0, {0, 1}, 2},
    /* cumsum */
    {"cumsum", "dim 1", X2(3, 5), K(), TH_FLOATS, 1, {0, 1}, 2},
    {"cumsum", "dim 0", X3(4, 3, 2), K(), TH_FLOATS, 1, {0, 0}, 2},
    {"cumsum", "ints give i64", X2(3, 5, TH_SMALLINT), K(), TH_INTS | TH_BOOLS, 0, {0, -1}, 2},
    {"cumsum", "middle dim noncontig", X3(3, 4, 5, .noncontig = 1), K(), 0, 1, {0, 1}, 2},
    {"cumsum", "1d noncontig", X1(7, .noncontig = 1), K(), 0, 1, {0, 0}, 2},
    {"cumsum", "size0", X2(0, 3), K(), 0, 0, {0, 0}, 2},
    {"cumsum", "0-dim", X0(), K(), 0, 1, {0, 0}, 2},
    {"cumsum", "big", X2(64, 1000), K(), TH_F32 | TH_I64, 0, {0, 1}, 2},
    {"cumsum", "wide columns", X3(2, 5, 2100), K(), TH_F32 | TH_I32, 0, {0, 1}, 2},
    {"cumsum", "noncontig 3d last dim", X3(3, 4, 5, .noncontig = 1), K(), TH_F64, 1, {0, -1}, 2},
    {0},
};
