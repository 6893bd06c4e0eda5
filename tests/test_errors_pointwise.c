/* test_errors_pointwise.c - error paths of the pointwise ops (NULL handles, shapes that do not
 * broadcast, refused dtypes), each message naming the op, plus the semantics the op table's
 * random cases cannot pin down: NaN and infinity handling, integer wrapping, weak-scalar dtypes,
 * the half/half gradient of maximum at ties, and no leaks. */
#include "harness.h"

static em_tensor_t *vec(const double *v, int64_t n, em_dtype dt) {
    em_tensor_t *t = em_from_data(v, &n, 1, EM_F64);
    return em_cast(t, dt);
}

static double at(em_tensor_t *t, int64_t i) {
    em_tensor_t *f = em_flatten(t, 0, -1);
    return em_item(em_select(f, 0, i));
}

typedef em_tensor_t *(*un_fn)(em_tensor_t *);
typedef em_tensor_t *(*bin_fn)(em_tensor_t *, em_tensor_t *);
typedef em_tensor_t *(*sc_fn)(em_tensor_t *, double);

static void test_null_inputs(void) {
    em_scope_t *s = em_scope_begin();
    struct { un_fn f; const char *name; } un[] = {
        {em_neg, "em_neg"}, {em_abs, "em_abs"}, {em_exp, "em_exp"}, {em_log, "em_log"},
        {em_log1p, "em_log1p"}, {em_sqrt, "em_sqrt"}, {em_rsqrt, "em_rsqrt"}, {em_sin, "em_sin"},
        {em_cos, "em_cos"}, {em_tanh, "em_tanh"}, {em_sigmoid, "em_sigmoid"}, {em_relu, "em_relu"},
        {em_gelu, "em_gelu"}, {em_gelu_tanh, "em_gelu_tanh"}, {em_silu, "em_silu"}, {em_sign, "em_sign"},
        {em_reciprocal, "em_reciprocal"}, {em_square, "em_square"}, {em_logical_not, "em_logical_not"},
    };
    for (int i = 0; i < (int)(sizeof un / sizeof *un); i++) {
        em_clear_error();
        TH_CHECK(un[i].f(NULL) == NULL, "%s(NULL) fails", un[i].name);
        TH_CHECK_ERR(EM_ERR_ARG, un[i].name, "%s(NULL): EM_ERR_ARG naming the op (%s)", un[i].name, em_last_error());
    }
    struct { bin_fn f; const char *name; } bin[] = {
        {em_add, "em_add"}, {em_sub, "em_sub"}, {em_mul, "em_mul"}, {em_div, "em_div"}, {em_pow, "em_pow"},
        {em_maximum, "em_maximum"}, {em_minimum, "em_minimum"}, {em_eq, "em_eq"}, {em_ne, "em_ne"},
        {em_lt, "em_lt"}, {em_le, "em_le"}, {em_gt, "em_gt"}, {em_ge, "em_ge"},
        {em_logical_and, "em_logical_and"}, {em_logical_or, "em_logical_or"},
    };
    em_tensor_t *x = em_ones((int64_t[]){2}, 1, EM_F32);
    for (int i = 0; i < (int)(sizeof bin / sizeof *bin); i++) {
        em_clear_error();
        TH_CHECK(bin[i].f(NULL, x) == NULL, "%s(NULL, x) fails", bin[i].name);
        TH_CHECK_ERR(EM_ERR_ARG, bin[i].name, "%s(NULL, x) names the op (%s)", bin[i].name, em_last_error());
        em_clear_error();
        TH_CHECK(bin[i].f(x, NULL) == NULL, "%s(x, NULL) fails", bin[i].name);
        TH_CHECK_ERR(EM_ERR_ARG, "argument `b`", "%s(x, NULL) names argument b (%s)", bin[i].name, em_last_error());
    }
    struct { sc_fn f; const char *name; } sc[] = {
        {em_add_scalar, "em_add_scalar"}, {em_sub_scalar, "em_sub_scalar"}, {em_mul_scalar, "em_mul_scalar"},
        {em_div_scalar, "em_div_scalar"}, {em_pow_scalar, "em_pow_scalar"},
    };
    for (int i = 0; i < (int)(sizeof sc / sizeof *sc); i++) {
        em_clear_error();
        TH_CHECK(sc[i].f(NULL, 1.0) == NULL, "%s(NULL, 1) fails", sc[i].name);
        TH_CHECK_ERR(EM_ERR_ARG, sc[i].name, "%s(NULL) names the op (%s)", sc[i].name, em_last_error());
    }
    em_tensor_t *m = em_ones((int64_t[]){2}, 1, EM_BOOL);
    em_clear_error();
    TH_CHECK(!em_where(NULL, x, x), "where(NULL cond)");
    TH_CHECK_ERR(EM_ERR_ARG, "em_where", "where names itself");
    TH_CHECK(!em_where(m, NULL, x) && !em_where(m, x, NULL), "where(NULL a / b)");
    TH_CHECK_ERR(EM_ERR_ARG, "em_where", "where names itself");
    em_clear_error();
    TH_CHECK(!em_clamp(NULL, 0, 1), "clamp(NULL)");
    TH_CHECK_ERR(EM_ERR_ARG, "em_clamp", "clamp names itself");
    em_clear_error();
    TH_CHECK(!em_masked_fill(NULL, m, 0) && !em_masked_fill(x, NULL, 0), "masked_fill(NULL)");
    TH_CHECK_ERR(EM_ERR_ARG, "em_masked_fill", "masked_fill names itself");
    /* a failed call feeding the next one: the root cause survives in the message */
    em_clear_error();
    em_tensor_t *bad = em_add(em_ones((int64_t[]){3}, 1, EM_F32), x);
    TH_CHECK(!em_exp(bad), "a chain of calls fails softly");
    TH_CHECK_ERR(EM_ERR_ARG, "em_add", "the chained error mentions the root cause (%s)", em_last_error());
    em_scope_end(s);
}

static void test_shapes(void) {
    em_scope_t *s = em_scope_begin();
    em_tensor_t *a = em_ones((int64_t[]){2, 3}, 2, EM_F32), *b = em_ones((int64_t[]){4}, 1, EM_F32);
    bin_fn fs[] = {em_add, em_sub, em_mul, em_div, em_pow, em_maximum, em_minimum, em_eq, em_ne, em_lt,
                   em_le, em_gt, em_ge, em_logical_and, em_logical_or};
    const char *names[] = {"em_add", "em_sub", "em_mul", "em_div", "em_pow", "em_maximum", "em_minimum", "em_eq",
                           "em_ne", "em_lt", "em_le", "em_gt", "em_ge", "em_logical_and", "em_logical_or"};
    for (int i = 0; i < (int)(sizeof fs / sizeof *fs); i++) {
        em_clear_error();
        TH_CHECK(fs[i](a, b) == NULL, "%s (2,3) with (4) fails", names[i]);
        TH_CHECK_ERR(EM_ERR_SHAPE, names[i], "%s: EM_ERR_SHAPE naming the op (%s)", names[i], em_last_error());
        TH_CHECK(strstr(em_last_error(), "(2, 3)") && strstr(em_last_error(), "(4,)"), "the message shows both shapes");
    }
    em_tensor_t *c = em_ones((int64_t[]){2, 3}, 2, EM_BOOL), *c5 = em_ones((int64_t[]){5}, 1, EM_BOOL);
    em_clear_error();
    TH_CHECK(!em_where(c5, a, a), "where: cond (5) with (2,3)");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_where", "where shape error names the op");
    em_clear_error();
    TH_CHECK(!em_where(c, a, b), "where: b (4) with (2,3)");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_where", "where shape error names the op");
    em_clear_error();
    TH_CHECK(!em_masked_fill(a, c5, 0), "masked_fill: mask (5) with x (2,3)");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_masked_fill", "masked_fill shape error names the op");
    /* the mask may not grow x: x (3) with mask (2,3) */
    em_tensor_t *x3 = em_ones((int64_t[]){3}, 1, EM_F32);
    em_clear_error();
    TH_CHECK(!em_masked_fill(x3, c, 0), "masked_fill: mask (2,3) would expand x (3)");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_masked_fill", "masked_fill refuses to grow x");
    em_scope_end(s);
}

static void test_dtypes(void) {
    em_scope_t *s = em_scope_begin();
    em_tensor_t *f = em_ones((int64_t[]){2, 3}, 2, EM_F32), *bl = em_ones((int64_t[]){2, 3}, 2, EM_BOOL);
    em_clear_error();
    TH_CHECK(!em_neg(bl), "neg of bool is refused (like PyTorch)");
    TH_CHECK_ERR(EM_ERR_DTYPE, "em_neg", "neg bool: EM_ERR_DTYPE naming em_neg (%s)", em_last_error());
    em_clear_error();
    TH_CHECK(!em_sub(bl, bl), "bool - bool is refused");
    TH_CHECK_ERR(EM_ERR_DTYPE, "em_sub", "sub bool: EM_ERR_DTYPE naming em_sub (%s)", em_last_error());
    TH_CHECK(em_sub(bl, em_ones((int64_t[]){3}, 1, EM_I32)) != NULL, "bool - int is fine");
    em_clear_error();
    TH_CHECK(em_type(em_sub_scalar(bl, 0.5)) == EM_F32, "bool - 0.5 is f32 arithmetic");
    TH_CHECK(!em_clamp(bl, 0, 1), "clamp of bool is refused");
    TH_CHECK_ERR(EM_ERR_DTYPE, "em_clamp", "clamp bool: EM_ERR_DTYPE naming em_clamp (%s)", em_last_error());
    em_clear_error();
    TH_CHECK(!em_where(f, f, f), "where with a float cond is refused");
    TH_CHECK_ERR(EM_ERR_DTYPE, "em_where", "where cond f32: EM_ERR_DTYPE naming em_where (%s)", em_last_error());
    TH_CHECK(strstr(em_last_error(), "bool"), "the message says what cond must be");
    em_clear_error();
    TH_CHECK(!em_where(em_ones((int64_t[]){2, 3}, 2, EM_I64), f, f), "where with an i64 cond is refused");
    TH_CHECK_ERR(EM_ERR_DTYPE, "em_where", "where cond i64");
    em_clear_error();
    TH_CHECK(!em_masked_fill(f, f, 0), "masked_fill with a float mask is refused");
    TH_CHECK_ERR(EM_ERR_DTYPE, "em_masked_fill", "masked_fill mask f32 (%s)", em_last_error());
    em_clear_error();
    TH_CHECK(!em_masked_fill(f, em_ones((int64_t[]){3}, 1, EM_U8), 0), "masked_fill with a u8 mask is refused");
    TH_CHECK_ERR(EM_ERR_DTYPE, "em_masked_fill", "masked_fill mask u8");
    em_scope_end(s);
}

static void test_result_dtypes(void) {
    em_scope_t *s = em_scope_begin();
    int64_t n = 3;
    em_tensor_t *f32 = em_ones(&n, 1, EM_F32), *f16 = em_ones(&n, 1, EM_F16), *bf = em_ones(&n, 1, EM_BF16);
    em_tensor_t *i32 = em_ones(&n, 1, EM_I32), *u8 = em_ones(&n, 1, EM_U8), *bl = em_ones(&n, 1, EM_BOOL);
    em_tensor_t *f64s = em_scalar(2, EM_F64), *i64s = em_scalar(2, EM_I64);
    TH_CHECK(em_type(em_add(f32, f64s)) == EM_F32, "f32 tensor + f64 0-dim stays f32");
    TH_CHECK(em_type(em_add(i32, f64s)) == EM_F64, "i32 tensor + f64 0-dim is f64 (higher category)");
    TH_CHECK(em_type(em_add(u8, i64s)) == EM_U8, "u8 tensor + i64 0-dim stays u8");
    TH_CHECK(em_type(em_add(f16, bf)) == EM_F32, "f16 + bf16 is f32");
    TH_CHECK(em_type(em_add(bl, bl)) == EM_BOOL, "bool + bool is bool");
    TH_CHECK(em_type(em_div(i32, i32)) == EM_F32, "int / int is f32 (true division)");
    TH_CHECK(em_type(em_exp(i32)) == EM_F32, "exp of int is f32");
    TH_CHECK(em_type(em_abs(i32)) == EM_I32, "abs keeps i32");
    TH_CHECK(em_type(em_lt(f32, i32)) == EM_BOOL, "comparisons give bool");
    TH_CHECK(em_type(em_logical_not(f16)) == EM_BOOL, "logical_not gives bool");
    TH_CHECK(em_type(em_where(em_lt(f32, i32), i32, f16)) == EM_F16, "where promotes a and b");
    TH_CHECK(em_type(em_masked_fill(u8, bl, 3.7)) == EM_U8, "masked_fill keeps x's dtype");
    /* weak scalars */
    TH_CHECK(em_type(em_mul_scalar(f16, 3.14159)) == EM_F16, "f16 * 3.14 stays f16");
    TH_CHECK(em_type(em_add_scalar(i32, 2)) == EM_I32, "i32 + 2 stays i32");
    TH_CHECK(em_type(em_add_scalar(i32, 2.5)) == EM_F32, "i32 + 2.5 is f32");
    TH_CHECK(em_type(em_add_scalar(bl, 2)) == EM_I64, "bool + 2 is i64");
    TH_CHECK(em_type(em_mul_scalar(bl, 0.5)) == EM_F32, "bool * 0.5 is f32");
    TH_CHECK(em_type(em_div_scalar(i32, 2)) == EM_F32, "i32 / 2 is f32");
    TH_CHECK(em_type(em_pow_scalar(i32, 2)) == EM_I32, "i32 ** 2 stays i32");
    em_scope_end(s);
}

static void test_special_values(void) {
    em_scope_t *s = em_scope_begin();
    double nan = NAN, inf = INFINITY;
    em_tensor_t *x = vec((double[]){nan, -inf, inf, -0.0, 100.0, -100.0}, 6, EM_F32);
    em_tensor_t *r = em_relu(x), *c = em_clamp(x, -1, 1), *sg = em_sigmoid(x), *t = em_tanh(x);
    TH_CHECK(isnan(at(r, 0)) && at(r, 1) == 0 && at(r, 2) == inf, "relu: NaN stays NaN, -inf -> 0, inf stays");
    TH_CHECK(isnan(at(c, 0)) && at(c, 1) == -1 && at(c, 2) == 1, "clamp: NaN stays NaN, infinities clamp");
    TH_CHECK(at(sg, 1) == 0 && at(sg, 2) == 1 && at(sg, 4) == 1 && at(sg, 5) >= 0 && at(sg, 5) < 1e-40,
             "sigmoid saturates without NaN: %g %g %g", at(sg, 1), at(sg, 2), at(sg, 5));
    TH_CHECK(at(t, 1) == -1 && at(t, 2) == 1 && isnan(at(t, 0)), "tanh at +-inf and NaN");
    TH_CHECK(at(em_sign(x), 0) == 0 && at(em_sign(x), 1) == -1 && at(em_sign(x), 3) == 0, "sign: NaN -> 0, -0 -> 0");
    TH_CHECK(at(em_gelu(x), 2) == inf && at(em_gelu(x), 4) == 100 && fabs(at(em_gelu(x), 5)) < 1e-40, "gelu at inf, +-100");
    TH_CHECK(at(em_silu(x), 4) == 100 && fabs(at(em_silu(x), 5)) < 1e-40, "silu at +-100");
    em_tensor_t *y = vec((double[]){1, 1, 1, 1, nan, 2}, 6, EM_F32);
    em_tensor_t *mx = em_maximum(x, y), *mn = em_minimum(y, x);
    TH_CHECK(isnan(at(mx, 0)) && isnan(at(mx, 4)) && isnan(at(mn, 0)) && isnan(at(mn, 4)),
             "maximum/minimum propagate NaN from either side");
    TH_CHECK(at(mx, 1) == 1 && at(mn, 1) == -inf && at(mx, 2) == inf, "maximum/minimum with infinities");
    TH_CHECK(at(em_clamp(x, -INFINITY, 0.5), 2) == 0.5 && at(em_clamp(x, -INFINITY, 0.5), 1) == -inf, "one-sided clamp");
    TH_CHECK(at(em_clamp(x, NAN, 0.5), 4) == 0.5, "a NaN bound is ignored");
    TH_CHECK(at(em_eq(x, x), 0) == 0 && at(em_ne(x, x), 0) == 1, "NaN != NaN");
    TH_CHECK(at(em_logical_not(x), 0) == 0 && at(em_logical_not(x), 3) == 1, "logical_not: NaN is true, -0 is false");
    /* integer semantics: wrapping, exact i64, integer pow */
    em_tensor_t *u = vec((double[]){250, 3, 0}, 3, EM_U8);
    TH_CHECK(at(em_add_scalar(u, 10), 0) == 4 && at(em_neg(u), 1) == 253, "u8 wraps");
    int64_t big[2] = {(int64_t)1 << 60, -((int64_t)1 << 60) - 1}, two = 2;
    em_tensor_t *bi = em_from_data(big, &two, 1, EM_I64), *sum = em_add(bi, em_scalar(1, EM_I64));
    int64_t got[2] = {0, 0};
    em_to_data(sum, got, sizeof got);
    TH_CHECK(got[0] == ((int64_t)1 << 60) + 1 && got[1] == -((int64_t)1 << 60), "i64 arithmetic is exact");
    int64_t mn64[1] = {INT64_MIN}, one = 1, absv = 0;
    em_to_data(em_abs(em_from_data(mn64, &one, 1, EM_I64)), &absv, sizeof absv);
    TH_CHECK(absv == INT64_MIN, "abs(INT64_MIN) wraps like PyTorch");
    em_tensor_t *p = em_pow_scalar(vec((double[]){1, -1, 2, 0}, 4, EM_I64), -3);
    TH_CHECK(at(p, 0) == 1 && at(p, 1) == -1 && at(p, 2) == 0 && at(p, 3) == 0, "integer pow with a negative exponent");
    TH_CHECK(at(em_pow_scalar(vec((double[]){3}, 1, EM_I32), 4), 0) == 81, "integer pow");
    em_tensor_t *ci = em_clamp(vec((double[]){-5, 0, 5}, 3, EM_I32), -2.5, 2.5);
    TH_CHECK(at(ci, 0) == -2 && at(ci, 2) == 2, "integer clamp keeps the integers inside [lo, hi]");
    TH_CHECK(at(em_div(vec((double[]){1, 0}, 2, EM_I32), vec((double[]){0, 0}, 2, EM_I32)), 0) == inf,
             "int / 0 is inf (true division)");
    em_scope_end(s);
}

static void test_gradients(void) {
    em_scope_t *s = em_scope_begin();
    /* maximum/minimum ties split the gradient half and half */
    em_tensor_t *a = vec((double[]){1, 2, 3}, 3, EM_F64), *b = vec((double[]){1, 5, 0}, 3, EM_F64);
    em_set_requires_grad(a, true);
    em_set_requires_grad(b, true);
    TH_CHECK(em_backward(em_sum(em_maximum(a, b), NULL, 0, false)) == EM_OK, "backward through maximum");
    TH_CHECK(at(em_grad(a), 0) == 0.5 && at(em_grad(b), 0) == 0.5, "tie: half each");
    TH_CHECK(at(em_grad(a), 1) == 0 && at(em_grad(b), 1) == 1 && at(em_grad(a), 2) == 1, "winner takes it");
    em_zero_grad(a);
    em_zero_grad(b);
    TH_CHECK(em_backward(em_sum(em_minimum(a, b), NULL, 0, false)) == EM_OK, "backward through minimum");
    TH_CHECK(at(em_grad(a), 0) == 0.5 && at(em_grad(a), 1) == 1 && at(em_grad(b), 2) == 1, "minimum gradient");
    em_zero_grad(a);
    /* clamp: gradient 1 on the closed interval, 0 outside; relu: 0 at 0 */
    em_tensor_t *x = vec((double[]){-1, 0, 0.5, 1, 2}, 5, EM_F64);
    em_set_requires_grad(x, true);
    TH_CHECK(em_backward(em_sum(em_clamp(x, 0, 1), NULL, 0, false)) == EM_OK, "backward through clamp");
    em_tensor_t *g = em_grad(x);
    TH_CHECK(at(g, 0) == 0 && at(g, 1) == 1 && at(g, 2) == 1 && at(g, 3) == 1 && at(g, 4) == 0, "clamp gradient");
    em_zero_grad(x);
    TH_CHECK(em_backward(em_sum(em_relu(x), NULL, 0, false)) == EM_OK, "backward through relu");
    TH_CHECK(at(em_grad(x), 1) == 0 && at(em_grad(x), 2) == 1, "relu gradient is 0 at 0");
    em_zero_grad(x);
    /* pow: exponent gradient only where the base is positive; base gradient 0 where exponent is 0 */
    em_tensor_t *base = vec((double[]){-2, 0, 3}, 3, EM_F64), *ex = vec((double[]){2, 0, 2}, 3, EM_F64);
    em_set_requires_grad(base, true);
    em_set_requires_grad(ex, true);
    TH_CHECK(em_backward(em_sum(em_pow(base, ex), NULL, 0, false)) == EM_OK, "backward through pow");
    TH_CHECK(at(em_grad(ex), 0) == 0 && at(em_grad(ex), 1) == 0 && fabs(at(em_grad(ex), 2) - 9 * log(3.0)) < 1e-12,
             "pow exponent gradient");
    TH_CHECK(at(em_grad(base), 0) == -4 && at(em_grad(base), 1) == 0 && at(em_grad(base), 2) == 6, "pow base gradient");
    /* where: no gradient to the unselected side, and an f32 input of an f64 op gets an f32 grad */
    em_tensor_t *w32 = vec((double[]){1, 2, 3}, 3, EM_F32);
    em_set_requires_grad(w32, true);
    em_tensor_t *cond = em_gt(vec((double[]){1, 0, 1}, 3, EM_F64), em_scalar(0.5, EM_F64));
    TH_CHECK(em_backward(em_sum(em_where(cond, w32, b), NULL, 0, false)) == EM_OK, "backward through where");
    TH_CHECK(em_type(em_grad(w32)) == EM_F32 && at(em_grad(w32), 0) == 1 && at(em_grad(w32), 1) == 0,
             "where gradient: f32, only where cond");
    em_scope_end(s);
}

int main(void) {
    int64_t live0 = em_live_tensors();
    test_null_inputs();
    test_shapes();
    test_dtypes();
    test_result_dtypes();
    test_special_values();
    test_gradients();
    TH_CHECK(em_live_tensors() == live0, "no tensors leaked (%lld live, %lld before)", (long long)em_live_tensors(),
             (long long)live0);
    return th_summary();
}
