/* test_errors_reduce.c - error paths and special values of the reductions (src/ops/reduce.c).
 *
 * Each bad call must fail with the right status and a message naming the op; then a few values
 * the random op cases cannot reach: infinities and NaN, ties, large integer sums, handle
 * ownership of em_max's second output. Everything runs inside a scope, and the live-tensor count
 * must come back to where it started.
 */
#include "harness.h"

#include "ops/op.h"

static em_tensor_t *from(const double *v, const int64_t *shape, int nd, em_dtype dt) {
    return em_cast(em_from_data(v, shape, nd, EM_F64), dt);
}

/* element i of t as a double (NaN when t is NULL); its temporaries live in a scope of their own */
static double at(em_tensor_t *t, int64_t i) {
    em_scope_t *s = em_scope_begin();
    em_tensor_t *c = em_contiguous(em_cast(t, EM_F64));
    double v[64], r = NAN;
    if (c && em_numel(c) <= 64 && i < em_numel(c)) {
        em_to_data(c, v, (size_t)em_numel(c) * sizeof(double));
        r = v[i];
    }
    em_scope_end(s);
    return r;
}

static void null_inputs(void) {
    TH_CHECK(!em_sum(NULL, NULL, 0, false), "sum NULL");
    TH_CHECK_ERR(EM_ERR_ARG, "em_sum", "sum NULL names the op");
    TH_CHECK(!em_mean(NULL, NULL, 0, false), "mean NULL");
    TH_CHECK_ERR(EM_ERR_ARG, "em_mean", "mean NULL names the op");
    TH_CHECK(!em_prod(NULL, NULL, 0, false), "prod NULL");
    TH_CHECK_ERR(EM_ERR_ARG, "em_prod", "prod NULL names the op");
    TH_CHECK(!em_amax(NULL, NULL, 0, false), "amax NULL");
    TH_CHECK_ERR(EM_ERR_ARG, "em_amax", "amax NULL names the op");
    TH_CHECK(!em_amin(NULL, NULL, 0, false), "amin NULL");
    TH_CHECK_ERR(EM_ERR_ARG, "em_amin", "amin NULL names the op");
    TH_CHECK(!em_logsumexp(NULL, NULL, 0, false), "logsumexp NULL");
    TH_CHECK_ERR(EM_ERR_ARG, "em_logsumexp", "logsumexp NULL names the op");
    TH_CHECK(!em_var(NULL, NULL, 0, 1, false), "var NULL");
    TH_CHECK_ERR(EM_ERR_ARG, "em_var", "var NULL names the op");
    TH_CHECK(!em_std(NULL, NULL, 0, 1, false), "std NULL");
    TH_CHECK_ERR(EM_ERR_ARG, "em_std", "std NULL names the op");
    em_tensor_t *idx = (em_tensor_t *)1;
    TH_CHECK(!em_max(NULL, 0, false, &idx) && idx == NULL, "max NULL clears indices");
    TH_CHECK_ERR(EM_ERR_ARG, "em_max", "max NULL names the op");
    TH_CHECK(!em_min(NULL, 0, false, NULL), "min NULL");
    TH_CHECK_ERR(EM_ERR_ARG, "em_min", "min NULL names the op");
    TH_CHECK(!em_argmax(NULL, 0, false), "argmax NULL");
    TH_CHECK_ERR(EM_ERR_ARG, "em_argmax", "argmax NULL names the op");
    TH_CHECK(!em_argmin(NULL, 0, false), "argmin NULL");
    TH_CHECK_ERR(EM_ERR_ARG, "em_argmin", "argmin NULL names the op");
    TH_CHECK(!em_cumsum(NULL, 0), "cumsum NULL");
    TH_CHECK_ERR(EM_ERR_ARG, "em_cumsum", "cumsum NULL names the op");
}

static void bad_dims(void) {
    em_tensor_t *x = em_zeros((int64_t[]){2, 3}, 2, EM_F32);
    TH_CHECK(!em_sum(x, (int[]){2}, 1, false), "sum dim 2 of 2-d");
    TH_CHECK_ERR(EM_ERR_ARG, "em_sum", "sum dim out of range");
    TH_CHECK(!em_mean(x, (int[]){-3}, 1, false), "mean dim -3 of 2-d");
    TH_CHECK_ERR(EM_ERR_ARG, "em_mean", "mean dim out of range");
    TH_CHECK(!em_prod(x, (int[]){0, -2}, 2, false), "prod duplicate dims");
    TH_CHECK_ERR(EM_ERR_ARG, "appears twice", "prod duplicate dims message");
    TH_CHECK(!em_amax(x, (int[]){0}, -1, false), "amax negative ndims");
    TH_CHECK_ERR(EM_ERR_ARG, "em_amax", "amax negative ndims names the op");
    TH_CHECK(!em_amin(x, (int[]){0, 1, 0, 1, 0, 1, 0, 1, 0}, 9, false), "amin too many dims");
    TH_CHECK_ERR(EM_ERR_ARG, "em_amin", "amin too many dims names the op");
    TH_CHECK(!em_logsumexp(x, (int[]){5}, 1, true), "logsumexp bad dim");
    TH_CHECK_ERR(EM_ERR_ARG, "em_logsumexp", "logsumexp bad dim names the op");
    TH_CHECK(!em_var(x, (int[]){1, 1}, 2, 1, false), "var duplicate dims");
    TH_CHECK_ERR(EM_ERR_ARG, "em_var", "var duplicate dims names the op");
    TH_CHECK(!em_std(x, (int[]){2}, 1, 1, false), "std bad dim");
    TH_CHECK_ERR(EM_ERR_ARG, "em_std", "std bad dim names the op");
    TH_CHECK(!em_max(x, 2, false, NULL), "max bad dim");
    TH_CHECK_ERR(EM_ERR_ARG, "em_max", "max bad dim names the op");
    TH_CHECK(!em_min(x, -3, false, NULL), "min bad dim");
    TH_CHECK_ERR(EM_ERR_ARG, "em_min", "min bad dim names the op");
    TH_CHECK(!em_argmax(x, 7, false), "argmax bad dim");
    TH_CHECK_ERR(EM_ERR_ARG, "em_argmax", "argmax bad dim names the op");
    TH_CHECK(!em_argmin(x, -9, true), "argmin bad dim");
    TH_CHECK_ERR(EM_ERR_ARG, "em_argmin", "argmin bad dim names the op");
    TH_CHECK(!em_cumsum(x, 2), "cumsum bad dim");
    TH_CHECK_ERR(EM_ERR_ARG, "em_cumsum", "cumsum bad dim names the op");

    /* a 0-dim tensor takes dim 0 and -1 (reducing nothing), nothing else */
    em_tensor_t *s = em_scalar(2.5, EM_F32);
    em_tensor_t *r = em_sum(s, (int[]){-1}, 1, true);
    TH_CHECK(r && em_ndim(r) == 0 && at(r, 0) == 2.5, "sum of 0-dim over dim -1");
    TH_CHECK(!em_sum(s, (int[]){1}, 1, false), "sum of 0-dim over dim 1");
    TH_CHECK_ERR(EM_ERR_ARG, "em_sum", "0-dim bad dim names the op");
    TH_CHECK(!em_argmax(s, 1, false), "argmax of 0-dim over dim 1");
    TH_CHECK_ERR(EM_ERR_ARG, "em_argmax", "0-dim argmax bad dim names the op");

    /* attributes that bypass the wrapper are checked again by infer */
    emo_attrs a = emo_attrs0();
    a.i[0] = 4;
    a.ni = 1;
    TH_CHECK(!emo_call1(EMO_sum, &x, 1, &a), "infer: dim 4");
    TH_CHECK_ERR(EM_ERR_ARG, "em_sum", "infer dim message names the op");
    a = emo_attrs0();
    a.j[1] = 3;
    TH_CHECK(!emo_call1(EMO_cumsum, &x, 1, &a), "infer: cumsum dim 3");
    TH_CHECK_ERR(EM_ERR_ARG, "em_cumsum", "infer cumsum dim names the op");
    TH_CHECK(!emo_call1(EMO_argmin, &x, 1, &a), "infer: argmin dim 3");
    TH_CHECK_ERR(EM_ERR_ARG, "em_argmin", "infer argmin dim names the op");
}

static void bad_dtypes_and_empty(void) {
    em_tensor_t *i = em_zeros((int64_t[]){2, 3}, 2, EM_I32);
    TH_CHECK(!em_mean(i, NULL, 0, false), "mean of i32");
    TH_CHECK_ERR(EM_ERR_DTYPE, "em_mean", "mean of ints names the op");
    TH_CHECK_ERR(EM_ERR_DTYPE, "em_cast", "mean of ints suggests em_cast");
    TH_CHECK(!em_var(i, NULL, 0, 1, false), "var of i32");
    TH_CHECK_ERR(EM_ERR_DTYPE, "em_var", "var of ints names the op");
    em_tensor_t *b = em_zeros((int64_t[]){4}, 1, EM_BOOL);
    TH_CHECK(!em_std(b, NULL, 0, 1, false), "std of bool");
    TH_CHECK_ERR(EM_ERR_DTYPE, "em_std", "std of bool names the op");
    /* integer sums widen to i64; logsumexp of ints computes in f32 */
    TH_CHECK(em_type(em_sum(i, NULL, 0, false)) == EM_I64, "sum of i32 is i64");
    TH_CHECK(em_type(em_sum(b, NULL, 0, false)) == EM_I64, "sum of bool is i64");
    TH_CHECK(em_type(em_prod(i, NULL, 0, false)) == EM_I64, "prod of i32 is i64");
    TH_CHECK(em_type(em_cumsum(i, 1)) == EM_I64, "cumsum of i32 is i64");
    TH_CHECK(em_type(em_amax(i, NULL, 0, false)) == EM_I32, "amax of i32 stays i32");
    TH_CHECK(em_type(em_logsumexp(i, NULL, 0, false)) == EM_F32, "logsumexp of i32 is f32");

    em_tensor_t *e = em_zeros((int64_t[]){0, 3}, 2, EM_F32);
    TH_CHECK(!em_amax(e, (int[]){0}, 1, false), "amax over an empty dim");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_amax", "amax empty names the op");
    TH_CHECK(!em_amin(e, NULL, 0, false), "amin over everything, empty");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_amin", "amin empty names the op");
    TH_CHECK(!em_max(e, 0, false, NULL), "max over an empty dim");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_max", "max empty names the op");
    TH_CHECK(!em_min(e, 0, true, NULL), "min over an empty dim");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_min", "min empty names the op");
    TH_CHECK(!em_argmax(e, 0, false), "argmax over an empty dim");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_argmax", "argmax empty names the op");
    TH_CHECK(!em_argmin(e, -2, false), "argmin over an empty dim");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_argmin", "argmin empty names the op");
    /* ... but the kept dims may be empty, and sum/prod/logsumexp have identities */
    em_tensor_t *r = em_amax(e, (int[]){1}, 1, false);
    TH_CHECK(r && em_numel(r) == 0, "amax over a non-empty dim of an empty tensor");
    r = em_sum(e, (int[]){0}, 1, false);
    TH_CHECK(r && em_numel(r) == 3 && at(r, 0) == 0.0, "empty sum is 0");
    r = em_prod(e, (int[]){0}, 1, false);
    TH_CHECK(r && at(r, 2) == 1.0, "empty prod is 1");
    r = em_logsumexp(e, (int[]){0}, 1, false);
    TH_CHECK(r && isinf(at(r, 1)) && at(r, 1) < 0, "empty logsumexp is -inf");
    r = em_mean(e, (int[]){0}, 1, false);
    TH_CHECK(r && isnan(at(r, 0)), "empty mean is nan");
}

static void special_values(void) {
    const double inf = INFINITY;
    /* logsumexp: rows of -inf, +inf and NaN */
    double v[] = {-inf, -inf, -inf, 1.0, inf, 2.0, NAN, 1.0, 0.0, 1000.0, 1000.0, -1000.0};
    em_tensor_t *x = from(v, (int64_t[]){4, 3}, 2, EM_F32);
    em_tensor_t *l = em_logsumexp(x, (int[]){1}, 1, false);
    TH_CHECK(isinf(at(l, 0)) && at(l, 0) < 0, "logsumexp of all -inf is -inf");
    TH_CHECK(isinf(at(l, 1)) && at(l, 1) > 0, "logsumexp with +inf is +inf");
    TH_CHECK(isnan(at(l, 2)), "logsumexp with NaN is NaN");
    TH_CHECK(fabs(at(l, 3) - (1000.0 + log(2.0))) < 1e-3, "logsumexp is stable for large values");
    /* NaN propagates through amax and wins argmax, like PyTorch */
    double w[] = {1.0, NAN, 3.0, 2.0, 5.0, 4.0};
    em_tensor_t *y = from(w, (int64_t[]){2, 3}, 2, EM_F32);
    TH_CHECK(isnan(at(em_amax(y, (int[]){1}, 1, false), 0)), "amax propagates NaN");
    TH_CHECK(at(em_amax(y, (int[]){1}, 1, false), 1) == 5.0, "amax of the other row");
    TH_CHECK(at(em_argmax(y, 1, false), 0) == 1.0, "argmax points at the NaN");
    TH_CHECK(at(em_argmin(y, 1, false), 0) == 1.0, "argmin points at the NaN");
    /* var with correction >= N: inf, or NaN when every deviation is 0 */
    double z[] = {1.0, 2.0, 3.0, 3.0};
    em_tensor_t *t = from(z, (int64_t[]){2, 2}, 2, EM_F64);
    em_tensor_t *vr = em_var(t, (int[]){1}, 1, 2, false);
    TH_CHECK(isinf(at(vr, 0)) && isnan(at(vr, 1)), "var with correction = N");
    TH_CHECK(at(em_std(t, NULL, 0, 0, false), 0) > 0.82 && at(em_std(t, NULL, 0, 0, false), 0) < 0.83,
             "std with correction 0");
    /* large integer sums do not overflow i32 */
    int32_t big[] = {2000000000, 2000000000, 2000000000};
    em_tensor_t *bi = em_from_data(big, (int64_t[]){3}, 1, EM_I32);
    int64_t s = 0;
    em_to_data(em_sum(bi, NULL, 0, false), &s, sizeof s);
    TH_CHECK(s == 6000000000LL, "i32 sum widens to i64 (got %lld)", (long long)s);
    /* f32 sums stay accurate over many elements */
    em_tensor_t *ones = em_full((int64_t[]){1 << 24}, 1, 0.1, EM_F32);
    double total = at(em_sum(ones, NULL, 0, false), 0);
    TH_CHECK(fabs(total - 0.1f * (double)(1 << 24)) < 1.0, "f32 sum of 2^24 x 0.1 (got %.3f)", total);
    em_tensor_t *cols = em_full((int64_t[]){1 << 20, 4}, 2, 0.1, EM_F32);
    total = at(em_sum(cols, (int[]){0}, 1, false), 3);
    TH_CHECK(fabs(total - 0.1f * (double)(1 << 20)) < 0.1, "f32 column sum of 2^20 x 0.1 (got %.3f)", total);
    /* bf16 sums accumulate in f32 or better */
    em_tensor_t *hb = em_full((int64_t[]){4096}, 1, 1.0, EM_BF16);
    TH_CHECK(at(em_sum(hb, NULL, 0, false), 0) == 4096.0, "bf16 sum of 4096 ones");
}

static void ties_and_gradients(void) {
    /* amax splits the gradient evenly among tied maxima */
    double v[] = {1.0, 3.0, 3.0, 2.0};
    em_tensor_t *x = from(v, (int64_t[]){4}, 1, EM_F64);
    em_set_requires_grad(x, true);
    em_tensor_t *m = em_amax(x, NULL, 0, false);
    TH_CHECK(em_backward(m) == EM_OK, "amax backward");
    em_tensor_t *g = em_grad(x);
    TH_CHECK(g && at(g, 0) == 0.0 && at(g, 1) == 0.5 && at(g, 2) == 0.5 && at(g, 3) == 0.0, "amax tie split");
    /* max along a dim sends it all to the first index */
    em_tensor_t *x2 = from(v, (int64_t[]){4}, 1, EM_F64);
    em_set_requires_grad(x2, true);
    em_tensor_t *idx = NULL;
    em_tensor_t *mx = em_max(x2, 0, false, &idx);
    TH_CHECK(idx && at(idx, 0) == 1.0 && em_type(idx) == EM_I64, "max index is the first tie");
    TH_CHECK(em_backward(mx) == EM_OK, "max backward");
    g = em_grad(x2);
    TH_CHECK(g && at(g, 1) == 1.0 && at(g, 2) == 0.0, "max gradient goes to the index");
    /* prod with two zeros: every gradient is 0; with one zero only that position gets one */
    double z[] = {0.0, 2.0, 0.0, 3.0, 0.0, 4.0};
    em_tensor_t *p = from(z, (int64_t[]){2, 3}, 2, EM_F64);
    em_set_requires_grad(p, true);
    TH_CHECK(em_backward(em_sum(em_prod(p, (int[]){1}, 1, false), NULL, 0, false)) == EM_OK, "prod backward");
    g = em_grad(p);
    TH_CHECK(g && at(g, 0) == 0.0 && at(g, 1) == 0.0 && at(g, 2) == 0.0, "prod grad, two zeros");
    TH_CHECK(g && at(g, 3) == 0.0 && at(g, 4) == 12.0 && at(g, 5) == 0.0, "prod grad, one zero");
}

/* em_max outside any scope: the caller owns both handles (or just the values) */
static void ownership(void) {
    int64_t live = em_live_tensors();
    em_tensor_t *x = em_arange(0, 6, 1, EM_F32);
    em_tensor_t *idx = NULL;
    em_tensor_t *v = em_max(x, 0, false, &idx);
    TH_CHECK(v && idx && at(idx, 0) == 5.0, "max outside a scope");
    em_tensor_t *v2 = em_min(x, 0, true, NULL);
    TH_CHECK(v2 && em_ndim(v2) == 1, "min outside a scope without indices");
    em_release(v);
    em_release(idx);
    em_release(v2);
    em_release(x);
    TH_CHECK(em_live_tensors() == live, "em_max/em_min leak nothing outside scopes");
}

int main(void) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    null_inputs();
    bad_dims();
    bad_dtypes_and_empty();
    special_values();
    ties_and_gradients();
    em_scope_end(s);
    ownership();
    TH_CHECK(em_live_tensors() == live, "tensors leaked: %lld live, %lld at start", (long long)em_live_tensors(),
             (long long)live);
    return th_summary();
}
