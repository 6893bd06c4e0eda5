/* cases_pointwise.c - op cases for the pointwise group (src/ops/pointwise.c); see
 * tests/lib/harness.h for how a case is run.
 *
 * The oracles compute in float64 from the inputs' actual values and apply the result dtype's
 * rules independently of the library: PyTorch promotion (0-dim tensors only win across
 * categories), integer results wrapping like two's complement, bool results as "non-zero".
 */
#include "harness.h"

#include <stdint.h>

/* ---- independent dtype rules ---------------------------------------------------------------- */
static int category(em_dtype d) {
    return d == EM_BOOL ? 0 : (d == EM_I32 || d == EM_I64 || d == EM_U8) ? 1 : 2;
}
static int is_float(em_dtype d) { return category(d) == 2; }

static em_dtype promote(em_dtype a, em_dtype b) {
    if (a == b) return a;
    if (category(a) != category(b)) return category(a) > category(b) ? a : b;
    if (category(a) == 2) return (a == EM_F64 || b == EM_F64) ? EM_F64 : EM_F32;
    if (a == EM_I64 || b == EM_I64) return EM_I64;
    return EM_I32; /* u8 with i32 */
}

/* PyTorch result_type of two tensors: a 0-dim one only wins from a higher category */
static em_dtype result_type(const th_rt *a, const th_rt *b) {
    if ((a->ndim == 0) == (b->ndim == 0)) return promote(a->dtype, b->dtype);
    const th_rt *d = a->ndim ? a : b, *z = a->ndim ? b : a;
    return category(z->dtype) > category(d->dtype) ? z->dtype : d->dtype;
}

/* the dtype of a weak scalar v combined with a tensor of dtype x (em_add_scalar & co.) */
static em_dtype scalar_result(em_dtype x, double v) {
    int integral = isfinite(v) && v == floor(v);
    if (is_float(x)) return x;
    if (!integral) return EM_F32;
    return x == EM_BOOL ? EM_I64 : x;
}

static em_dtype float_of(em_dtype d) { return is_float(d) ? d : EM_F32; }

/* a float64 result as dtype dt stores it: integers truncate and wrap, bool is "non-zero", f32
   overflows to infinity (other float roundings are within the tolerances) */
static double as_dtype(double v, em_dtype dt) {
    switch (dt) {
    case EM_U8: return (double)((((int64_t)v % 256) + 256) % 256);
    case EM_I32: return (double)(int32_t)(uint32_t)(uint64_t)(int64_t)v;
    case EM_I64: return trunc(v);
    case EM_BOOL: return v != 0;
    case EM_F32: return fabs(v) > 3.4028235677973366e38 ? v * INFINITY : v;
    default: return v;
    }
}

static void fix_ints(th_rt *o) {
    for (int64_t i = 0; i < th_numel(o); i++) o->d[i] = as_dtype(o->d[i], o->dtype);
}

/* ---- unary ---------------------------------------------------------------------------------- */
static double f_neg(double x) { return -x; }
static double f_abs(double x) { return fabs(x); }
static double f_sigmoid(double x) { return 1 / (1 + exp(-x)); }
static double f_relu(double x) { return x < 0 ? 0 : x; }
static double f_gelu(double x) { return 0.5 * x * (1 + erf(x / sqrt(2.0))); }
static double f_gelu_tanh(double x) {
    return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}
static double f_silu(double x) { return x / (1 + exp(-x)); }
static double f_sign(double x) { return (x > 0) - (x < 0); }
static double f_rsqrt(double x) { return 1 / sqrt(x); }
static double f_reciprocal(double x) { return 1 / x; }
static double f_square(double x) { return x * x; }
static double f_logical_not(double x) { return x == 0; }

static int ref_unary(const th_rt *in, th_rt *out, double (*f)(double), em_dtype odt) {
    th_ref_unary(&in[0], out, f, odt);
    fix_ints(out);
    return 1;
}

/* ops that keep the dtype (ints exact), float ops (ints give f32), ops giving bool */
#define UNARY_CASE(NAME, FN, ODT)                                                                  \
    static int fwd_##NAME(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {           \
        (void)c;                                                                                   \
        out[0] = em_##NAME(in[0]);                                                                 \
        return out[0] ? 1 : 0;                                                                     \
    }                                                                                              \
    static int ref_##NAME(const th_rt *in, const th_case *c, th_rt *out) {                        \
        (void)c;                                                                                   \
        return ref_unary(in, out, FN, ODT);                                                        \
    }
#define SAME (in[0].dtype)
#define FLOAT (float_of(in[0].dtype))
UNARY_CASE(neg, f_neg, SAME)
UNARY_CASE(abs, f_abs, SAME)
UNARY_CASE(exp, exp, FLOAT)
UNARY_CASE(log, log, FLOAT)
UNARY_CASE(log1p, log1p, FLOAT)
UNARY_CASE(sqrt, sqrt, FLOAT)
UNARY_CASE(rsqrt, f_rsqrt, FLOAT)
UNARY_CASE(sin, sin, FLOAT)
UNARY_CASE(cos, cos, FLOAT)
UNARY_CASE(tanh, tanh, FLOAT)
UNARY_CASE(sigmoid, f_sigmoid, FLOAT)
UNARY_CASE(relu, f_relu, SAME)
UNARY_CASE(gelu, f_gelu, FLOAT)
UNARY_CASE(gelu_tanh, f_gelu_tanh, FLOAT)
UNARY_CASE(silu, f_silu, FLOAT)
UNARY_CASE(sign, f_sign, SAME)
UNARY_CASE(reciprocal, f_reciprocal, FLOAT)
UNARY_CASE(square, f_square, SAME)
UNARY_CASE(logical_not, f_logical_not, EM_BOOL)

/* clamp: fa = lo, hi; integer tensors clamp to the integers inside [lo, hi] */
static int fwd_clamp(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    out[0] = em_clamp(in[0], c->fa[0], c->fa[1]);
    return out[0] ? 1 : 0;
}
static int ref_clamp(const th_rt *in, const th_case *c, th_rt *out) {
    double lo = c->fa[0], hi = c->fa[1];
    if (!is_float(in[0].dtype)) {
        lo = ceil(lo);
        hi = floor(hi);
    }
    th_rt_alloc(out, in[0].shape, in[0].ndim, in[0].dtype);
    for (int64_t i = 0; i < th_numel(out); i++) {
        double x = in[0].d[i], m = x < lo ? lo : x;
        out->d[i] = m > hi ? hi : m;
    }
    return 1;
}

/* ---- binary --------------------------------------------------------------------------------- */
static double f_add(double a, double b) { return a + b; }
static double f_sub(double a, double b) { return a - b; }
static double f_mul(double a, double b) { return a * b; }
static double f_div(double a, double b) { return a / b; }
static double f_max(double a, double b) { return (a > b || a != a) ? a : b; }
static double f_min(double a, double b) { return (a < b || a != a) ? a : b; }
static double f_eq(double a, double b) { return a == b; }
static double f_ne(double a, double b) { return a != b; }
static double f_lt(double a, double b) { return a < b; }
static double f_le(double a, double b) { return a <= b; }
static double f_gt(double a, double b) { return a > b; }
static double f_ge(double a, double b) { return a >= b; }
static double f_and(double a, double b) { return a != 0 && b != 0; }
static double f_or(double a, double b) { return a != 0 || b != 0; }

/* integer power as PyTorch: negative exponents give 1, +-1 or 0 */
static double powi(double a, double b) {
    if (b < 0) return a == 1 ? 1 : a == -1 ? (fmod(-b, 2) != 0 ? -1 : 1) : 0;
    return pow(a, b);
}

enum { ARITH, DIV, CMP };
static em_dtype binary_dtype(const th_rt *a, const th_rt *b, int kind) {
    em_dtype dt = result_type(a, b);
    if (kind == CMP) return EM_BOOL;
    if (kind == DIV && !is_float(dt)) return EM_F32;
    return dt;
}

#define BINARY_CASE(NAME, FN, KIND)                                                                \
    static int fwd_##NAME(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {           \
        (void)c;                                                                                   \
        out[0] = em_##NAME(in[0], in[1]);                                                          \
        return out[0] ? 1 : 0;                                                                     \
    }                                                                                              \
    static int ref_##NAME(const th_rt *in, const th_case *c, th_rt *out) {                        \
        (void)c;                                                                                   \
        th_ref_binary(&in[0], &in[1], out, FN, binary_dtype(&in[0], &in[1], KIND));                \
        fix_ints(out);                                                                             \
        return 1;                                                                                  \
    }
BINARY_CASE(add, f_add, ARITH)
BINARY_CASE(sub, f_sub, ARITH)
BINARY_CASE(mul, f_mul, ARITH)
BINARY_CASE(div, f_div, DIV)
BINARY_CASE(maximum, f_max, ARITH)
BINARY_CASE(minimum, f_min, ARITH)
BINARY_CASE(eq, f_eq, CMP)
BINARY_CASE(ne, f_ne, CMP)
BINARY_CASE(lt, f_lt, CMP)
BINARY_CASE(le, f_le, CMP)
BINARY_CASE(gt, f_gt, CMP)
BINARY_CASE(ge, f_ge, CMP)
BINARY_CASE(logical_and, f_and, CMP)
BINARY_CASE(logical_or, f_or, CMP)

static int fwd_pow(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    (void)c;
    out[0] = em_pow(in[0], in[1]);
    return out[0] ? 1 : 0;
}
static int ref_pow(const th_rt *in, const th_case *c, th_rt *out) {
    (void)c;
    em_dtype dt = binary_dtype(&in[0], &in[1], ARITH);
    th_ref_binary(&in[0], &in[1], out, is_float(dt) ? pow : powi, dt);
    fix_ints(out);
    return 1;
}

/* scalar forms: fa[0] is the scalar */
#define SCALAR_CASE(NAME, FN, KIND)                                                                \
    static int fwd_##NAME##_scalar(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {  \
        out[0] = em_##NAME##_scalar(in[0], c->fa[0]);                                              \
        return out[0] ? 1 : 0;                                                                     \
    }                                                                                              \
    static int ref_##NAME##_scalar(const th_rt *in, const th_case *c, th_rt *out) {               \
        em_dtype dt = scalar_result(in[0].dtype, c->fa[0]);                                        \
        if (KIND == DIV && !is_float(dt)) dt = EM_F32;                                             \
        th_rt_alloc(out, in[0].shape, in[0].ndim, dt);                                             \
        for (int64_t i = 0; i < th_numel(out); i++) out->d[i] = FN(in[0].d[i], c->fa[0]);          \
        fix_ints(out);                                                                             \
        return 1;                                                                                  \
    }
SCALAR_CASE(add, f_add, ARITH)
SCALAR_CASE(sub, f_sub, ARITH)
SCALAR_CASE(mul, f_mul, ARITH)
SCALAR_CASE(div, f_div, DIV)

static int fwd_pow_scalar(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    out[0] = em_pow_scalar(in[0], c->fa[0]);
    return out[0] ? 1 : 0;
}
static int ref_pow_scalar(const th_rt *in, const th_case *c, th_rt *out) {
    em_dtype dt = scalar_result(in[0].dtype, c->fa[0]);
    th_rt_alloc(out, in[0].shape, in[0].ndim, dt);
    for (int64_t i = 0; i < th_numel(out); i++)
        out->d[i] = is_float(dt) ? pow(in[0].d[i], c->fa[0]) : powi(in[0].d[i], c->fa[0]);
    fix_ints(out);
    return 1;
}

/* ---- where, masked_fill ------------------------------------------------------------------- */
static int fwd_where(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    (void)c;
    out[0] = em_where(in[0], in[1], in[2]);
    return out[0] ? 1 : 0;
}
static int ref_where(const th_rt *in, const th_case *c, th_rt *out) {
    (void)c;
    int64_t s1[TH_MAX_DIMS], shape[TH_MAX_DIMS], idx[TH_MAX_DIMS];
    th_rt t1 = {.ndim = th_bshape(&in[0], &in[1], s1)};
    memcpy(t1.shape, s1, sizeof s1);
    int nd = th_bshape(&t1, &in[2], shape);
    th_rt_alloc(out, shape, nd, result_type(&in[1], &in[2]));
    for (int64_t i = 0; i < th_numel(out); i++) {
        th_unravel(i, shape, nd, idx);
        double cnd = in[0].d[th_bidx(&in[0], idx, nd)];
        out->d[i] = cnd != 0 ? in[1].d[th_bidx(&in[1], idx, nd)] : in[2].d[th_bidx(&in[2], idx, nd)];
    }
    fix_ints(out);
    return 1;
}

static int fwd_masked_fill(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    out[0] = em_masked_fill(in[0], in[1], c->fa[0]);
    return out[0] ? 1 : 0;
}
static int ref_masked_fill(const th_rt *in, const th_case *c, th_rt *out) {
    int64_t idx[TH_MAX_DIMS];
    int nd = in[0].ndim;
    th_rt_alloc(out, in[0].shape, nd, in[0].dtype);
    for (int64_t i = 0; i < th_numel(out); i++) {
        th_unravel(i, in[0].shape, nd, idx);
        out->d[i] = in[1].d[th_bidx(&in[1], idx, nd)] != 0 ? c->fa[0] : in[0].d[i];
    }
    fix_ints(out);
    return 1;
}

/* ---- the cases ---------------------------------------------------------------------------- */
#define ALL (TH_FLOATS | TH_INTS | TH_BOOLS)
#define NUM (TH_FLOATS | TH_INTS)
#define M(r, c) 2, {r, c}                       /* a matrix input's ndim and shape */

/* five cases for a float function: plain (+ grad), ints, noncontig, size0, 0-dim */
#define FLOAT_UNARY(NAME, GEN)                                                                       \
    {#NAME, "plain", 1, {{M(3, 5), TH_T, GEN}}, fwd_##NAME, ref_##NAME, TH_FLOATS, 1},                 \
    {#NAME, "ints", 1, {{M(3, 4), TH_T, TH_SMALLINT}}, fwd_##NAME, ref_##NAME, TH_INTS | TH_BOOLS},    \
    {#NAME, "noncontig", 1, {{3, {2, 3, 4}, TH_T, GEN, .noncontig = 1}}, fwd_##NAME, ref_##NAME, TH_FLOATS, 1}, \
    {#NAME, "size0", 1, {{M(0, 3), TH_T, GEN}}, fwd_##NAME, ref_##NAME, TH_FLOATS},                    \
    {#NAME, "0-dim", 1, {{0, {0}, TH_T, GEN}}, fwd_##NAME, ref_##NAME, TH_F32 | TH_F64, 1},            \
    {#NAME, "long", 1, {{1, {70001}, TH_T, GEN}}, fwd_##NAME, ref_##NAME, TH_F32 | TH_F64 | TH_BF16}

/* the same for ops that keep integer dtypes (INTS: which integer dtypes) */
#define INT_UNARY(NAME, GEN, INTS)                                                                   \
    {#NAME, "plain", 1, {{M(3, 5), TH_T, GEN}}, fwd_##NAME, ref_##NAME, TH_FLOATS, 1},                 \
    {#NAME, "ints", 1, {{M(3, 4), TH_T, TH_SMALLINT}}, fwd_##NAME, ref_##NAME, INTS},                  \
    {#NAME, "noncontig", 1, {{3, {2, 3, 4}, TH_T, GEN, .noncontig = 1}}, fwd_##NAME, ref_##NAME, NUM, 1}, \
    {#NAME, "size0", 1, {{M(0, 3), TH_T, GEN}}, fwd_##NAME, ref_##NAME, NUM},                          \
    {#NAME, "0-dim", 1, {{0, {0}, TH_T, GEN}}, fwd_##NAME, ref_##NAME, TH_F32 | TH_F64 | TH_I64, 1},   \
    {#NAME, "long", 1, {{1, {70001}, TH_T, GEN}}, fwd_##NAME, ref_##NAME, TH_F32 | TH_F64 | TH_I32}

/* binary arithmetic: plain (+ grad), broadcast (3,1,4)x(2,4) (+ grad), noncontig, scalar 0-dim,
   size0, mixed dtypes, long rows with a broadcast row (the vectorized paths) */
#define BINARY(NAME, GA, GB, DTS)                                                                    \
    {#NAME, "plain", 2, {{M(3, 5), TH_T, GA}, {M(3, 5), TH_T, GB}}, fwd_##NAME, ref_##NAME, DTS, 1}, \
    {#NAME, "broadcast", 2, {{3, {3, 1, 4}, TH_T, GA}, {M(2, 4), TH_T, GB}}, fwd_##NAME, ref_##NAME, DTS, 1}, \
    {#NAME, "noncontig", 2, {{M(4, 3), TH_T, GA, .noncontig = 1}, {1, {3}, TH_T, GB, .noncontig = 1}},  \
     fwd_##NAME, ref_##NAME, DTS, 1},                                                                \
    {#NAME, "0-dim b", 2, {{M(2, 3), TH_T, GA}, {0, {0}, TH_T, GB}}, fwd_##NAME, ref_##NAME, DTS, 1}, \
    {#NAME, "0-dim a", 2, {{0, {0}, TH_T, GA}, {M(2, 3), TH_T, GB}}, fwd_##NAME, ref_##NAME, DTS, 1}, \
    {#NAME, "size0", 2, {{M(0, 3), TH_T, GA}, {1, {3}, TH_T, GB}}, fwd_##NAME, ref_##NAME, DTS},      \
    {#NAME, "size1 dims", 2, {{3, {1, 3, 1}, TH_T, GA}, {3, {2, 1, 1}, TH_T, GB}}, fwd_##NAME, ref_##NAME, DTS}, \
    {#NAME, "mixed f64 0-dim", 2, {{M(2, 3), TH_T, GA}, {0, {0}, EM_F64, GB}}, fwd_##NAME, ref_##NAME, NUM}, \
    {#NAME, "mixed i64", 2, {{M(2, 3), TH_T, GA}, {1, {3}, EM_I64, TH_SMALLINT}}, fwd_##NAME, ref_##NAME, NUM}, \
    {#NAME, "mixed f16 bf16", 2, {{M(2, 3), EM_F16, GA}, {1, {3}, EM_BF16, GB}}, fwd_##NAME, ref_##NAME, TH_F32}, \
    {#NAME, "long rows", 2, {{M(3, 20000), TH_T, GA}, {M(1, 20000), TH_T, GB}}, fwd_##NAME, ref_##NAME, TH_F32 | TH_F64 | TH_F16 | TH_I32}, \
    {#NAME, "long scalar", 2, {{1, {50000}, TH_T, GA}, {0, {0}, TH_T, GB}}, fwd_##NAME, ref_##NAME, TH_F32 | TH_F64 | TH_I64}, \
    {#NAME, "ints", 2, {{M(3, 4), TH_T, TH_SMALLINT}, {1, {4}, TH_T, TH_SMALLINT}}, fwd_##NAME, ref_##NAME, DTS}

/* comparisons and logical ops (small ints make ties) */
#define COMPARE(NAME)                                                                                \
    {#NAME, "plain", 2, {{M(3, 5), TH_T, TH_SMALLINT}, {M(3, 5), TH_T, TH_SMALLINT}}, fwd_##NAME, ref_##NAME, ALL}, \
    {#NAME, "broadcast", 2, {{3, {3, 1, 4}, TH_T, TH_SMALLINT}, {M(2, 4), TH_T, TH_SMALLINT}}, fwd_##NAME, ref_##NAME, ALL}, \
    {#NAME, "noncontig", 2, {{M(4, 3), TH_T, TH_SMALLINT, .noncontig = 1}, {1, {3}, TH_T, TH_SMALLINT, .noncontig = 1}}, \
     fwd_##NAME, ref_##NAME, ALL},                                                                   \
    {#NAME, "0-dim", 2, {{M(2, 3), TH_T, TH_SMALLINT}, {0, {0}, TH_T, TH_SMALLINT}}, fwd_##NAME, ref_##NAME, ALL}, \
    {#NAME, "size0", 2, {{M(0, 3), TH_T, TH_NORMAL}, {1, {3}, TH_T, TH_NORMAL}}, fwd_##NAME, ref_##NAME, ALL}, \
    {#NAME, "mixed", 2, {{M(2, 3), TH_T, TH_SMALLINT}, {1, {3}, EM_F64, TH_SMALLINT}}, fwd_##NAME, ref_##NAME, ALL}, \
    {#NAME, "bool vs int", 2, {{M(2, 3), TH_T, TH_BOOL}, {0, {0}, EM_I64, TH_BOOL}}, fwd_##NAME, ref_##NAME, ALL}, \
    {#NAME, "long", 2, {{M(2, 40000), TH_T, TH_SMALLINT}, {M(1, 40000), TH_T, TH_SMALLINT}}, fwd_##NAME, ref_##NAME, TH_F32 | TH_I64 | TH_BOOLS}

const th_case th_cases_pointwise[] = {
    /* unary float functions */
    FLOAT_UNARY(exp, TH_NORMAL),
    FLOAT_UNARY(log, TH_POS),
    FLOAT_UNARY(log1p, TH_UNIT),
    FLOAT_UNARY(sqrt, TH_POS),
    FLOAT_UNARY(rsqrt, TH_POS),
    FLOAT_UNARY(sin, TH_NORMAL),
    FLOAT_UNARY(cos, TH_NORMAL),
    FLOAT_UNARY(tanh, TH_NORMAL),
    FLOAT_UNARY(sigmoid, TH_NORMAL),
    FLOAT_UNARY(gelu, TH_NORMAL),
    FLOAT_UNARY(gelu_tanh, TH_NORMAL),
    FLOAT_UNARY(silu, TH_NORMAL),
    FLOAT_UNARY(reciprocal, TH_POS),
    {"gelu", "at 0", 1, {{1, {5}, TH_T, TH_BOOL}}, fwd_gelu, ref_gelu, TH_F64, 1},
    {"reciprocal", "negative", 1, {{M(3, 4), TH_T, TH_AWAY}}, fwd_reciprocal, ref_reciprocal, TH_FLOATS, 1},
    /* unary ops that keep integer dtypes */
    INT_UNARY(neg, TH_NORMAL, TH_INTS),
    INT_UNARY(abs, TH_AWAY, TH_INTS | TH_BOOLS),
    INT_UNARY(relu, TH_AWAY, TH_INTS | TH_BOOLS),
    INT_UNARY(sign, TH_AWAY, TH_INTS | TH_BOOLS),
    INT_UNARY(square, TH_NORMAL, TH_INTS | TH_BOOLS),
    {"clamp", "plain", 1, {{M(3, 5), TH_T}}, fwd_clamp, ref_clamp, TH_FLOATS, 1, .fa = {-0.5, 0.7}},
    {"clamp", "ints", 1, {{M(3, 4), TH_T, TH_SMALLINT}}, fwd_clamp, ref_clamp, TH_INTS, .fa = {-2, 3}},
    {"clamp", "int frac bounds", 1, {{M(3, 4), TH_T, TH_SMALLINT}}, fwd_clamp, ref_clamp, TH_I32 | TH_I64, .fa = {-2.5, 3.5}},
    {"clamp", "one side", 1, {{M(3, 4), TH_T}}, fwd_clamp, ref_clamp, NUM, 1, .fa = {-INFINITY, 0.3}},
    {"clamp", "lo > hi", 1, {{M(3, 4), TH_T}}, fwd_clamp, ref_clamp, TH_FLOATS | TH_I32 | TH_I64, 1, .fa = {1.0, -1.0}},
    {"clamp", "noncontig", 1, {{3, {2, 3, 4}, TH_T, .noncontig = 1}}, fwd_clamp, ref_clamp, NUM, 1, .fa = {-1, 1}},
    {"clamp", "size0", 1, {{M(0, 3), TH_T}}, fwd_clamp, ref_clamp, NUM, .fa = {-1, 1}},
    {"clamp", "0-dim", 1, {{0, {0}, TH_T}}, fwd_clamp, ref_clamp, NUM, 1, .fa = {-0.2, 0.2}},
    {"logical_not", "plain", 1, {{M(3, 5), TH_T, TH_SMALLINT}}, fwd_logical_not, ref_logical_not, ALL},
    {"logical_not", "bools", 1, {{M(3, 5), TH_T, TH_BOOL}}, fwd_logical_not, ref_logical_not, ALL},
    {"logical_not", "noncontig", 1, {{M(4, 3), TH_T, TH_SMALLINT, .noncontig = 1}}, fwd_logical_not, ref_logical_not, ALL},
    {"logical_not", "size0", 1, {{M(0, 3), TH_T}}, fwd_logical_not, ref_logical_not, ALL},
    {"logical_not", "0-dim", 1, {{0, {0}, TH_T, TH_BOOL}}, fwd_logical_not, ref_logical_not, ALL},

    /* binary arithmetic */
    BINARY(add, TH_NORMAL, TH_NORMAL, ALL),
    BINARY(sub, TH_NORMAL, TH_NORMAL, NUM),
    BINARY(mul, TH_NORMAL, TH_NORMAL, ALL),
    BINARY(div, TH_NORMAL, TH_AWAY, NUM),
    BINARY(maximum, TH_NORMAL, TH_NORMAL, ALL),
    BINARY(minimum, TH_NORMAL, TH_NORMAL, ALL),
    {"div", "bools", 2, {{M(2, 3), TH_T, TH_BOOL}, {M(2, 3), TH_T, TH_BOOL}}, fwd_div, ref_div, TH_BOOLS},
    {"maximum", "ties", 2, {{M(3, 4), TH_T, TH_SMALLINT}, {M(3, 4), TH_T, TH_SMALLINT}}, fwd_maximum, ref_maximum, ALL},
    {"sub", "bool - int", 2, {{M(2, 3), EM_BOOL, TH_BOOL}, {1, {3}, TH_T, TH_SMALLINT}}, fwd_sub, ref_sub, TH_INTS | TH_FLOATS},
    {"pow", "plain", 2, {{M(3, 5), TH_T, TH_POS}, {M(3, 5), TH_T, TH_NORMAL}}, fwd_pow, ref_pow, TH_FLOATS, 1},
    {"pow", "broadcast", 2, {{3, {3, 1, 4}, TH_T, TH_POS}, {M(2, 4), TH_T, TH_UNIT}}, fwd_pow, ref_pow, TH_FLOATS, 1},
    {"pow", "noncontig", 2, {{M(4, 3), TH_T, TH_POS, .noncontig = 1}, {1, {3}, TH_T, .noncontig = 1}}, fwd_pow, ref_pow, TH_FLOATS, 1},
    {"pow", "0-dim exponent", 2, {{M(2, 3), TH_T, TH_POS}, {0, {0}, TH_T, TH_UNIT}}, fwd_pow, ref_pow, TH_FLOATS, 1},
    {"pow", "0-dim base", 2, {{0, {0}, TH_T, TH_POS}, {M(2, 3), TH_T}}, fwd_pow, ref_pow, TH_FLOATS, 1},
    {"pow", "negative base", 2, {{M(2, 3), TH_T, TH_AWAY}, {M(2, 3), TH_T, TH_SMALLINT, .nodiff = 1}}, fwd_pow, ref_pow, TH_FLOATS, 1},
    {"pow", "size0", 2, {{M(0, 3), TH_T, TH_POS}, {1, {3}, TH_T}}, fwd_pow, ref_pow, NUM},
    {"pow", "ints", 2, {{M(3, 4), TH_T, TH_SMALLINT}, {1, {4}, TH_T, TH_INDEX, 4}}, fwd_pow, ref_pow, ALL},
    {"pow", "int ** float", 2, {{M(3, 4), TH_T, TH_SMALLINT}, {0, {0}, EM_F32, TH_UNIT}}, fwd_pow, ref_pow, TH_INTS},
    {"pow", "long", 2, {{M(2, 30000), TH_T, TH_POS}, {M(1, 30000), TH_T}}, fwd_pow, ref_pow, TH_F32 | TH_F64},

    /* scalar forms (covering add/sub/mul/div/pow) */
    {"add", "add_scalar", 1, {{M(3, 4), TH_T}}, fwd_add_scalar, ref_add_scalar, NUM | TH_BOOLS, 1, .fa = {2.0}},
    {"add", "add_scalar frac", 1, {{M(3, 4), TH_T, TH_SMALLINT}}, fwd_add_scalar, ref_add_scalar, ALL, 1, .fa = {0.25}},
    {"sub", "sub_scalar", 1, {{M(3, 4), TH_T, TH_SMALLINT}}, fwd_sub_scalar, ref_sub_scalar, ALL, 1, .fa = {3.0}},
    {"mul", "mul_scalar", 1, {{M(3, 4), TH_T}}, fwd_mul_scalar, ref_mul_scalar, NUM | TH_BOOLS, 1, .fa = {-3.0}},
    {"mul", "mul_scalar frac", 1, {{M(3, 4), TH_T, TH_SMALLINT}}, fwd_mul_scalar, ref_mul_scalar, ALL, 1, .fa = {0.5}},
    {"mul", "mul_scalar long", 1, {{1, {100000}, TH_T}}, fwd_mul_scalar, ref_mul_scalar, TH_F32 | TH_F64 | TH_I32, .fa = {0.5}},
    {"div", "div_scalar", 1, {{M(3, 4), TH_T, TH_SMALLINT}}, fwd_div_scalar, ref_div_scalar, ALL, 1, .fa = {4.0}},
    {"pow", "pow_scalar 2", 1, {{M(3, 4), TH_T}}, fwd_pow_scalar, ref_pow_scalar, NUM, 1, .fa = {2.0}},
    {"pow", "pow_scalar 0.5", 1, {{M(3, 4), TH_T, TH_POS}}, fwd_pow_scalar, ref_pow_scalar, NUM, 1, .fa = {0.5}},
    {"pow", "pow_scalar 3", 1, {{M(3, 4), TH_T, TH_SMALLINT}}, fwd_pow_scalar, ref_pow_scalar, NUM, 1, .fa = {3.0}},
    {"pow", "pow_scalar -1", 1, {{M(3, 4), TH_T, TH_SMALLINT}}, fwd_pow_scalar, ref_pow_scalar, TH_I32 | TH_I64, .fa = {-1.0}},
    {"pow", "pow_scalar -2", 1, {{M(3, 4), TH_T, TH_POS}}, fwd_pow_scalar, ref_pow_scalar, TH_FLOATS, 1, .fa = {-2.0}},

    /* comparisons and logical ops */
    COMPARE(eq), COMPARE(ne), COMPARE(lt), COMPARE(le), COMPARE(gt), COMPARE(ge),
    COMPARE(logical_and), COMPARE(logical_or),
    {"lt", "floats", 2, {{M(3, 5), TH_T}, {1, {5}, TH_T}}, fwd_lt, ref_lt, TH_FLOATS},

    /* where */
    {"where", "plain", 3, {{M(3, 4), EM_BOOL, TH_BOOL}, {M(3, 4), TH_T}, {M(3, 4), TH_T}}, fwd_where, ref_where, ALL, 1},
    {"where", "broadcast", 3, {{M(3, 1), EM_BOOL, TH_BOOL}, {3, {2, 1, 4}, TH_T}, {1, {4}, TH_T}}, fwd_where, ref_where, ALL, 1},
    {"where", "noncontig", 3, {{M(4, 3), EM_BOOL, TH_BOOL, .noncontig = 1}, {M(4, 3), TH_T, .noncontig = 1}, {1, {3}, TH_T, .noncontig = 1}},
     fwd_where, ref_where, ALL, 1},
    {"where", "0-dim", 3, {{M(2, 3), EM_BOOL, TH_BOOL}, {0, {0}, TH_T}, {M(2, 3), TH_T}}, fwd_where, ref_where, ALL, 1},
    {"where", "0-dim cond", 3, {{0, {0}, EM_BOOL, TH_BOOL}, {M(2, 3), TH_T}, {M(2, 3), TH_T}}, fwd_where, ref_where, NUM, 1},
    {"where", "u8 cond", 3, {{M(2, 3), EM_U8, TH_BOOL}, {M(2, 3), TH_T}, {M(2, 3), TH_T}}, fwd_where, ref_where, NUM},
    {"where", "size0", 3, {{M(0, 3), EM_BOOL, TH_BOOL}, {M(0, 3), TH_T}, {1, {3}, TH_T}}, fwd_where, ref_where, ALL},
    {"where", "mixed", 3, {{M(2, 3), EM_BOOL, TH_BOOL}, {M(2, 3), TH_T, TH_SMALLINT}, {1, {3}, EM_I64, TH_SMALLINT}},
     fwd_where, ref_where, ALL, 1},
    {"where", "long", 3, {{M(2, 30000), EM_BOOL, TH_BOOL}, {M(2, 30000), TH_T}, {M(2, 30000), TH_T}}, fwd_where, ref_where, TH_F32 | TH_F16},

    /* masked_fill */
    {"masked_fill", "plain", 2, {{M(3, 4), TH_T}, {M(3, 4), EM_BOOL, TH_BOOL}}, fwd_masked_fill, ref_masked_fill, ALL, 1, .fa = {-2.0}},
    {"masked_fill", "broadcast mask", 2, {{3, {2, 3, 4}, TH_T}, {M(1, 4), EM_BOOL, TH_BOOL}}, fwd_masked_fill, ref_masked_fill, ALL, 1, .fa = {3.0}},
    {"masked_fill", "-inf", 2, {{M(3, 4), TH_T}, {M(3, 4), EM_BOOL, TH_BOOL}}, fwd_masked_fill, ref_masked_fill, TH_FLOATS, 0, .fa = {-INFINITY}},
    {"masked_fill", "noncontig", 2, {{M(4, 3), TH_T, .noncontig = 1}, {1, {3}, EM_BOOL, TH_BOOL, .noncontig = 1}}, fwd_masked_fill, ref_masked_fill, ALL, 1, .fa = {0.5}},
    {"masked_fill", "0-dim", 2, {{0, {0}, TH_T}, {0, {0}, EM_BOOL, TH_BOOL}}, fwd_masked_fill, ref_masked_fill, NUM, 1, .fa = {7.0}},
    {"masked_fill", "size0", 2, {{M(0, 4), TH_T}, {1, {4}, EM_BOOL, TH_BOOL}}, fwd_masked_fill, ref_masked_fill, ALL, .fa = {1.0}},
    {"masked_fill", "long", 2, {{M(2, 30000), TH_T}, {M(1, 30000), EM_BOOL, TH_BOOL}}, fwd_masked_fill, ref_masked_fill, TH_F32 | TH_BF16, .fa = {-1e9}},
    {0},
};
