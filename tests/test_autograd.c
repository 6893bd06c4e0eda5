/* test_autograd.c - the autograd engine: accumulation, shared subexpressions, no_grad, non-leaf
 * gradients, the second-backward and in-place errors, grad_output, deep graphs, and leaks.
 * Per-op gradient formulas are checked by finite differences in test_ops.c. */
#include "harness.h"

static em_tensor_t *leaf(const double *v, int64_t n) {
    em_tensor_t *t = em_from_data(v, &n, 1, EM_F64);
    em_set_requires_grad(t, true);
    return t;
}

static double at(em_tensor_t *t, int64_t i) { return em_item(em_select(t, 0, i)); }

static void test_basic(void) {
    em_scope_t *s = em_scope_begin();
    em_tensor_t *a = leaf((double[]){1, 2, 3}, 3), *b = leaf((double[]){4, 5, 6}, 3);
    /* L = sum(a*b + a*a): dL/da = b + 2a, dL/db = a; a is used three times */
    em_tensor_t *L = em_sum(em_add(em_mul(a, b), em_mul(a, a)), NULL, 0, false);
    TH_CHECK(em_requires_grad(L) && !em_is_leaf(L), "L is a non-leaf that requires grad");
    TH_CHECK(em_backward(L) == EM_OK, "backward");
    em_tensor_t *ga = em_grad(a), *gb = em_grad(b);
    TH_CHECK(ga && at(ga, 0) == 6 && at(ga, 1) == 9 && at(ga, 2) == 12, "dL/da = b + 2a");
    TH_CHECK(gb && at(gb, 0) == 1 && at(gb, 2) == 3, "dL/db = a");
    /* a second graph accumulates into the same .grad */
    em_tensor_t *L2 = em_sum(em_mul_scalar(a, 10), NULL, 0, false);
    TH_CHECK(em_backward(L2) == EM_OK, "second backward through a new graph");
    TH_CHECK(at(em_grad(a), 0) == 16, "gradients accumulate: %g", at(em_grad(a), 0));
    TH_CHECK(at(ga, 0) == 16, "the handle from em_grad sees the accumulation");
    em_zero_grad(a);
    TH_CHECK(em_grad(a) == NULL, "em_zero_grad drops the gradient");
    em_scope_end(s);
}

static void test_broadcast_and_grad_output(void) {
    em_scope_t *s = em_scope_begin();
    em_tensor_t *w = leaf((double[]){1, 2}, 2);
    em_tensor_t *x = em_ones((int64_t[]){3, 2}, 2, EM_F64);
    em_tensor_t *y = em_mul(x, w); /* (3, 2): w broadcast over rows */
    em_tensor_t *go = em_full((int64_t[]){3, 2}, 2, 0.5, EM_F64);
    TH_CHECK(em_backward_ex(y, go, false) == EM_OK, "backward with grad_output");
    TH_CHECK(em_ndim(em_grad(w)) == 1 && at(em_grad(w), 0) == 1.5, "broadcast dims are summed back (got %g)",
             at(em_grad(w), 0));
    em_clear_error();
    TH_CHECK(em_backward(em_mul(x, w)) == EM_ERR_SHAPE, "backward of a non-scalar needs grad_output");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_backward", "the message names em_backward");
    TH_CHECK(em_backward_ex(em_mul(x, w), em_ones((int64_t[]){2}, 1, EM_F64), false) == EM_ERR_SHAPE,
             "grad_output of the wrong shape");
    em_scope_end(s);
}

static void test_modes_and_errors(void) {
    em_scope_t *s = em_scope_begin();
    em_tensor_t *a = leaf((double[]){1, 2}, 2);
    em_no_grad_begin();
    em_tensor_t *n = em_mul(a, a);
    em_no_grad_end();
    TH_CHECK(!em_requires_grad(n) && em_is_grad_enabled(), "no_grad records nothing");
    TH_CHECK(em_backward(em_sum(n, NULL, 0, false)) == EM_ERR_AUTOGRAD, "backward of something that needs no grad");
    /* non-leaf gradients on request */
    em_tensor_t *h = em_mul_scalar(a, 3);
    TH_CHECK(em_retain_grad(h) == EM_OK, "retain_grad");
    em_tensor_t *L = em_sum(em_mul(h, h), NULL, 0, false);
    TH_CHECK(em_backward_ex(L, NULL, true) == EM_OK, "backward with retain_graph");
    TH_CHECK(em_grad(h) && at(em_grad(h), 1) == 12, "the non-leaf's gradient is 2h");
    TH_CHECK(at(em_grad(a), 1) == 36, "and the leaf's is 18a");
    TH_CHECK(em_backward(L) == EM_OK, "a retained graph can be walked again");
    TH_CHECK(at(em_grad(a), 1) == 72, "which accumulates again");
    em_clear_error();
    TH_CHECK(em_backward(L) == EM_ERR_AUTOGRAD, "a third walk after a non-retaining backward fails");
    TH_CHECK_ERR(EM_ERR_AUTOGRAD, "second time", "the message explains the freed graph");
    TH_CHECK(strstr(em_last_error(), "retain_graph") != NULL, "and how to avoid it");
    /* in-place changes of saved tensors are caught */
    em_tensor_t *b = leaf((double[]){1, 2}, 2);
    em_tensor_t *c = em_mul(b, em_full((int64_t[]){2}, 1, 2.0, EM_F64));
    em_tensor_t *e = em_exp(c); /* saves its output */
    em_no_grad_begin();
    em_assign(e, em_zeros((int64_t[]){2}, 1, EM_F64));
    em_no_grad_end();
    TH_CHECK(em_backward(em_sum(e, NULL, 0, false)) == EM_ERR_AUTOGRAD, "modified saved output");
    TH_CHECK_ERR(EM_ERR_AUTOGRAD, "modified in place", "the message says what happened");
    TH_CHECK(em_assign(b, em_ones((int64_t[]){2}, 1, EM_F64)) == EM_ERR_AUTOGRAD, "in-place on a leaf with grad mode on");
    TH_CHECK(em_set_requires_grad(c, false) == EM_ERR_AUTOGRAD, "requires_grad can only be set on leaves");
    TH_CHECK(em_set_requires_grad(em_ones((int64_t[]){2}, 1, EM_I64), true) == EM_ERR_DTYPE, "integer tensors cannot require grad");
    TH_CHECK(em_grad(em_ones((int64_t[]){2}, 1, EM_F64)) == NULL, "no gradient is NULL");
    /* integer outputs of differentiable inputs do not require grad */
    TH_CHECK(!em_requires_grad(em_argmax(b, 0, false)), "argmax does not require grad");
    TH_CHECK(!em_requires_grad(em_gt(b, b)), "comparisons do not require grad");
    em_scope_end(s);
}

static void test_deep_graph(void) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    em_tensor_t *x = leaf((double[]){1.0}, 1), *h = x;
    for (int i = 0; i < 20000; i++) { /* a long chain: freeing must not recurse */
        em_scope_t *inner = em_scope_begin();
        h = em_keep(em_add_scalar(em_mul_scalar(h, 1.0001), 0.0));
        em_scope_end(inner);
    }
    em_tensor_t *L = em_sum(h, NULL, 0, false);
    TH_CHECK(em_backward(L) == EM_OK, "backward through 40000 nodes");
    TH_CHECK(fabs(at(em_grad(x), 0) - pow(1.0001, 20000)) < 1e-6 * pow(1.0001, 20000), "chain rule along the chain");
    em_scope_end(s);
    TH_CHECK(em_live_tensors() == live, "the whole graph is freed with its outputs");
}

static void test_views_grad(void) {
    em_scope_t *s = em_scope_begin();
    em_tensor_t *x = em_from_data((double[]){1, 2, 3, 4, 5, 6}, (int64_t[]){2, 3}, 2, EM_F64);
    em_set_requires_grad(x, true);
    /* L = sum(x^T[1:, :] * 2) + x[0, 2] */
    em_tensor_t *t = em_slice(em_transpose(x, 0, 1), 0, 1, 3, 1);
    em_tensor_t *L = em_add(em_sum(em_mul_scalar(t, 2), NULL, 0, false), em_select(em_select(x, 0, 0), 0, 2));
    TH_CHECK(em_backward(L) == EM_OK, "backward through views");
    double g[6];
    em_to_data(em_grad(x), g, sizeof g);
    TH_CHECK(g[0] == 0 && g[1] == 2 && g[2] == 3 && g[3] == 0 && g[4] == 2 && g[5] == 2, "view gradients land in place: %g %g %g %g %g %g",
             g[0], g[1], g[2], g[3], g[4], g[5]);
    em_scope_end(s);
}

int main(void) {
    int64_t live = em_live_tensors();
    test_basic();
    test_broadcast_and_grad_output();
    test_modes_and_errors();
    test_deep_graph();
    test_views_grad();
    TH_CHECK(em_live_tensors() == live, "no tensor leaked (%lld live)", (long long)(em_live_tensors() - live));
    return th_summary();
}
