/* pointwise.c - elementwise ops: unary math, binary arithmetic with broadcasting and type
 * promotion, comparisons, logical ops, where/clamp/masked_fill, their backward rules, the
 * decompositions of gelu_tanh/silu/masked_fill, and the public wrappers.
 *
 * Every kernel has the same shape: pick the dtype to compute in (f64 stays f64; f32, f16 and
 * bf16 compute in f32; integers and bool compute exactly in i64), convert each input that has
 * another dtype (the small, unexpanded tensor, so broadcasting never materialises), expand the
 * inputs to the output's shape as stride-0 views, and walk (out, in...) with emt_pointwise.
 * The row callbacks switch on the op once per row and then run a plain loop: contiguous rows
 * (and rows where one operand is a broadcast scalar) take a loop over restrict pointers that gcc
 * vectorizes; other rows take a strided loop. When the output's dtype differs from the compute
 * dtype (f16, bf16, i32, u8, bool) the row writes a temporary that is cast into the output.
 * Float rows are written once for float and double through <tgmath.h>, so sqrt(x) is sqrtf(x)
 * in f32 rows; f32 exp, log, tanh, sigmoid, silu, gelu and gelu_tanh use the branch-free
 * versions below, which gcc vectorizes (libm's are scalar calls). Backward rules use public em_
 * ops only; the engine sums broadcast gradients back to the inputs' shapes.
 */
#include "kernels.h"

#include <tgmath.h>

/* what a row callback needs: the op code and its scalar parameters (clamp bounds) */
typedef struct {
    int op;
    double lo, hi;      /* float clamp bounds */
    int64_t ilo, ihi;   /* integer clamp bounds (ceil(lo), floor(hi), saturated) */
} pw_ctx;

enum { /* unary */
    U_NEG, U_ABS, U_EXP, U_LOG, U_LOG1P, U_SQRT, U_RSQRT, U_SIN, U_COS, U_TANH, U_SIGMOID,
    U_RELU, U_GELU, U_GELU_TANH, U_SILU, U_SIGN, U_RECIP, U_SQUARE, U_CLAMP
};
enum { /* binary arithmetic */
    B_ADD, B_SUB, B_MUL, B_DIV, B_POW, B_MAX, B_MIN
};
enum { /* comparisons and logical ops: bool results */
    C_EQ, C_NE, C_LT, C_LE, C_GT, C_GE, C_AND, C_OR
};

#define GELU_K 0.7978845608028654 /* sqrt(2/pi) */
#define GELU_C 0.044715

/* ---- the shared driver ------------------------------------------------------------------------ */
/* the dtype an op computes in: f64 in f64, other floats in f32, integers and bool in i64 */
static em_dtype compute_type(em_dtype d) {
    return d == EM_F64 ? EM_F64 : emt_is_float(d) ? EM_F32 : EM_I64;
}

/* t in dtype dt: a new reference to t itself, or a contiguous converted copy */
static em_tensor_t *converted(em_tensor_t *t, em_dtype dt) {
    if (t->dtype == dt) {
        t->refcount++;
        return t;
    }
    return emt_contiguous_copy(t, dt);
}

/* out = fn(in[0], ..., in[n-1]) elementwise: input i is converted to in_dt[i] and broadcast to
   out's shape; the row writes dtype out_dt, through a temporary when out has another dtype */
static em_status run_rows(em_tensor_t *out, em_dtype out_dt, em_tensor_t *const *in, const em_dtype *in_dt,
                          int n, emt_row_fn fn, pw_ctx *ctx) {
    EM_ASSERT(n >= 1 && n < EMT_ITER_MAX);
    em_tensor_t *ts[EMT_ITER_MAX] = {0}, *conv[EMT_ITER_MAX] = {0};
    em_status st = EM_OK;
    ts[0] = out->dtype == out_dt ? out : emt_new(out_dt, out->shape, out->ndim);
    if (!ts[0]) return em_last_status();
    for (int i = 0; i < n && st == EM_OK; i++) {
        conv[i] = converted(in[i], in_dt[i]);
        ts[i + 1] = conv[i] ? emt_expand_to(conv[i], out->shape, out->ndim) : NULL;
        if (!ts[i + 1]) st = em_last_status();
    }
    if (st == EM_OK) {
        emt_pointwise(n + 1, ts, fn, ctx);
        if (ts[0] != out) emt_copy(out, ts[0]);
    }
    for (int i = 0; i < n; i++) {
        em_release(ts[i + 1]);
        em_release(conv[i]);
    }
    if (ts[0] != out) em_release(ts[0]);
    return st;
}

/* ---- row loops ---------------------------------------------------------------------------------
 * p[0] is the output row, p[1..] the inputs; bs are byte strides (0 for a broadcast operand). */
#define ES(T) ((int64_t)sizeof(T))
#define AT(T, k, i) (*(T *)(void *)(p[k] + (i) * bs[k]))

/* o = EXPR(x) with x of type TI, o of type TO */
#define UN_LOOP(TO, TI, EXPR)                                                                     \
    do {                                                                                          \
        if (bs[0] == ES(TO) && bs[1] == ES(TI)) {                                                 \
            TO *restrict o_ = (TO *)(void *)p[0];                                                 \
            const TI *restrict x_ = (const TI *)(void *)p[1];                                     \
            for (int64_t i = 0; i < n; i++) { TI x = x_[i]; o_[i] = (EXPR); }                     \
        } else {                                                                                  \
            for (int64_t i = 0; i < n; i++) { TI x = AT(const TI, 1, i); AT(TO, 0, i) = (EXPR); } \
        }                                                                                         \
    } while (0)

/* o = EXPR(a, b) with a, b of type TI; contiguous rows and rows with a broadcast scalar operand
   get loops the compiler vectorizes */
#define BIN_LOOP(TO, TI, EXPR)                                                                     \
    do {                                                                                           \
        TO *restrict o_ = (TO *)(void *)p[0];                                                      \
        const TI *restrict a_ = (const TI *)(void *)p[1], *restrict b_ = (const TI *)(void *)p[2]; \
        if (bs[0] == ES(TO) && bs[1] == ES(TI) && bs[2] == ES(TI)) {                               \
            for (int64_t i = 0; i < n; i++) { TI a = a_[i], b = b_[i]; o_[i] = (EXPR); }           \
        } else if (bs[0] == ES(TO) && bs[1] == ES(TI) && bs[2] == 0) {                             \
            const TI b = b_[0];                                                                    \
            for (int64_t i = 0; i < n; i++) { TI a = a_[i]; o_[i] = (EXPR); }                      \
        } else if (bs[0] == ES(TO) && bs[1] == 0 && bs[2] == ES(TI)) {                             \
            const TI a = a_[0];                                                                    \
            for (int64_t i = 0; i < n; i++) { TI b = b_[i]; o_[i] = (EXPR); }                      \
        } else {                                                                                   \
            for (int64_t i = 0; i < n; i++) {                                                      \
                TI a = AT(const TI, 1, i), b = AT(const TI, 2, i);                                 \
                AT(TO, 0, i) = (EXPR);                                                             \
            }                                                                                      \
        }                                                                                          \
    } while (0)

#include "vecmath.h"

static inline double log_f64(double x) { return log(x); }
static inline double exp_f64(double x) { return exp(x); }
static inline double tanh_f64(double x) { return tanh(x); }
static inline double gelu_f64(double x) { return 0.5 * x * (1.0 + erf(x * M_SQRT1_2)); }

/* unary float rows, one body for float and double (tgmath picks expf or exp) */
#define DEF_UNARY_FLOAT_ROW(NAME, T, S)                                                            \
    static void NAME(int64_t n, char **p, const int64_t *bs, void *vctx) {                         \
        const pw_ctx *c = vctx;                                                                    \
        const T lo = (T)c->lo, hi = (T)c->hi;                                                      \
        switch (c->op) {                                                                           \
        case U_NEG: UN_LOOP(T, T, -x); break;                                                      \
        case U_ABS: UN_LOOP(T, T, fabs(x)); break;                                                 \
        case U_EXP: UN_LOOP(T, T, exp_##S(x)); break;                                              \
        case U_LOG: UN_LOOP(T, T, log_##S(x)); break;                                              \
        case U_LOG1P: UN_LOOP(T, T, log1p(x)); break;                                              \
        case U_SQRT: UN_LOOP(T, T, sqrt(x)); break;                                                \
        case U_RSQRT: UN_LOOP(T, T, (T)1 / sqrt(x)); break;                                        \
        case U_SIN: UN_LOOP(T, T, sin(x)); break;                                                  \
        case U_COS: UN_LOOP(T, T, cos(x)); break;                                                  \
        case U_TANH: UN_LOOP(T, T, tanh_##S(x)); break;                                            \
        case U_SIGMOID: UN_LOOP(T, T, (T)1 / ((T)1 + exp_##S(-x))); break;                         \
        case U_RELU: UN_LOOP(T, T, x < 0 ? (T)0 : x); break; /* NaN stays NaN */                   \
        case U_GELU: UN_LOOP(T, T, gelu_##S(x)); break;                                            \
        case U_GELU_TANH:                                                                          \
            /* 0.5 x (1 + tanh(u)) = x / (1 + e^-2u), which does not cancel for x << 0 */         \
            UN_LOOP(T, T, x / ((T)1 + exp_##S((T)(-2 * GELU_K) * (x + (T)GELU_C * x * x * x))));  \
            break;                                                                                 \
        case U_SILU: UN_LOOP(T, T, x / ((T)1 + exp_##S(-x))); break;                               \
        case U_SIGN: UN_LOOP(T, T, (T)((x > 0) - (x < 0))); break; /* NaN gives 0 */               \
        case U_RECIP: UN_LOOP(T, T, (T)1 / x); break;                                              \
        case U_SQUARE: UN_LOOP(T, T, x * x); break;                                                \
        /* min(max(x, lo), hi): NaN x stays NaN, a NaN bound compares false and is ignored */      \
        case U_CLAMP: UN_LOOP(T, T, (x < lo ? lo : x) > hi ? hi : (x < lo ? lo : x)); break;       \
        default: EM_ASSERT(0);                                                                     \
        }                                                                                          \
    }
DEF_UNARY_FLOAT_ROW(un_row_f32, float, f32)
DEF_UNARY_FLOAT_ROW(un_row_f64, double, f64)

/* wrapping integer arithmetic (two's complement, no signed overflow) */
static inline int64_t wrap_neg(int64_t x) { return (int64_t)(0 - (uint64_t)x); }

static void un_row_i64(int64_t n, char **p, const int64_t *bs, void *vctx) {
    const pw_ctx *c = vctx;
    const int64_t lo = c->ilo, hi = c->ihi;
    switch (c->op) {
    case U_NEG: UN_LOOP(int64_t, int64_t, wrap_neg(x)); break;
    case U_ABS: UN_LOOP(int64_t, int64_t, x < 0 ? wrap_neg(x) : x); break;
    case U_SIGN: UN_LOOP(int64_t, int64_t, (int64_t)((x > 0) - (x < 0))); break;
    case U_RELU: UN_LOOP(int64_t, int64_t, x < 0 ? 0 : x); break;
    case U_SQUARE: UN_LOOP(int64_t, int64_t, (int64_t)((uint64_t)x * (uint64_t)x)); break;
    case U_CLAMP: UN_LOOP(int64_t, int64_t, (x < lo ? lo : x) > hi ? hi : (x < lo ? lo : x)); break;
    default: EM_ASSERT(0);
    }
}

/* logical_not: bool out from any input (u8/bool rows read bytes) */
static void not_row_u8(int64_t n, char **p, const int64_t *bs, void *c) { EM_UNUSED(c); UN_LOOP(uint8_t, uint8_t, x == 0); }
static void not_row_f32(int64_t n, char **p, const int64_t *bs, void *c) { EM_UNUSED(c); UN_LOOP(uint8_t, float, x == 0); }
static void not_row_f64(int64_t n, char **p, const int64_t *bs, void *c) { EM_UNUSED(c); UN_LOOP(uint8_t, double, x == 0); }
static void not_row_i64(int64_t n, char **p, const int64_t *bs, void *c) { EM_UNUSED(c); UN_LOOP(uint8_t, int64_t, x == 0); }

/* binary arithmetic; maximum/minimum propagate NaN like PyTorch */
#define DEF_BINARY_FLOAT_ROW(NAME, T)                                                              \
    static void NAME(int64_t n, char **p, const int64_t *bs, void *vctx) {                         \
        const pw_ctx *c = vctx;                                                                    \
        switch (c->op) {                                                                           \
        case B_ADD: BIN_LOOP(T, T, a + b); break;                                                  \
        case B_SUB: BIN_LOOP(T, T, a - b); break;                                                  \
        case B_MUL: BIN_LOOP(T, T, a * b); break;                                                  \
        case B_DIV: BIN_LOOP(T, T, a / b); break;                                                  \
        case B_POW:                                                                                \
            if (bs[2] == 0 && *(const T *)(void *)p[2] == 2) BIN_LOOP(T, T, ((void)b, a * a));       \
            else BIN_LOOP(T, T, pow(a, b));                                                        \
            break;                                                                                 \
        case B_MAX: BIN_LOOP(T, T, (a > b || a != a) ? a : b); break;                              \
        case B_MIN: BIN_LOOP(T, T, (a < b || a != a) ? a : b); break;                              \
        default: EM_ASSERT(0);                                                                     \
        }                                                                                          \
    }
DEF_BINARY_FLOAT_ROW(bin_row_f32, float)
DEF_BINARY_FLOAT_ROW(bin_row_f64, double)

/* integer power by squaring, wrapping; negative exponents follow PyTorch's integer pow
   (1 for base 1, +-1 for base -1, else 0) */
static int64_t powi(int64_t a, int64_t b) {
    if (b < 0) return a == 1 ? 1 : a == -1 ? ((b & 1) ? -1 : 1) : 0;
    uint64_t r = 1, x = (uint64_t)a;
    for (uint64_t e = (uint64_t)b; e; e >>= 1) {
        if (e & 1) r *= x;
        x *= x;
    }
    return (int64_t)r;
}

static void bin_row_i64(int64_t n, char **p, const int64_t *bs, void *vctx) {
    const pw_ctx *c = vctx;
    switch (c->op) {
    case B_ADD: BIN_LOOP(int64_t, int64_t, (int64_t)((uint64_t)a + (uint64_t)b)); break;
    case B_SUB: BIN_LOOP(int64_t, int64_t, (int64_t)((uint64_t)a - (uint64_t)b)); break;
    case B_MUL: BIN_LOOP(int64_t, int64_t, (int64_t)((uint64_t)a * (uint64_t)b)); break;
    case B_POW: BIN_LOOP(int64_t, int64_t, powi(a, b)); break;
    case B_MAX: BIN_LOOP(int64_t, int64_t, a > b ? a : b); break;
    case B_MIN: BIN_LOOP(int64_t, int64_t, a < b ? a : b); break;
    default: EM_ASSERT(0); /* division of integers computes in f32 */
    }
}

/* comparisons and logical ops: bool (u8) out */
#define DEF_COMPARE_ROW(NAME, T)                                                                   \
    static void NAME(int64_t n, char **p, const int64_t *bs, void *vctx) {                         \
        const pw_ctx *c = vctx;                                                                    \
        switch (c->op) {                                                                           \
        case C_EQ: BIN_LOOP(uint8_t, T, a == b); break;                                            \
        case C_NE: BIN_LOOP(uint8_t, T, a != b); break;                                            \
        case C_LT: BIN_LOOP(uint8_t, T, a < b); break;                                             \
        case C_LE: BIN_LOOP(uint8_t, T, a <= b); break;                                            \
        case C_GT: BIN_LOOP(uint8_t, T, a > b); break;                                             \
        case C_GE: BIN_LOOP(uint8_t, T, a >= b); break;                                            \
        case C_AND: BIN_LOOP(uint8_t, T, (a != 0) & (b != 0)); break;                              \
        case C_OR: BIN_LOOP(uint8_t, T, (a != 0) | (b != 0)); break;                               \
        default: EM_ASSERT(0);                                                                     \
        }                                                                                          \
    }
DEF_COMPARE_ROW(cmp_row_f32, float)
DEF_COMPARE_ROW(cmp_row_f64, double)
DEF_COMPARE_ROW(cmp_row_i64, int64_t)
DEF_COMPARE_ROW(cmp_row_u8, uint8_t)

/* where: out = cond ? a : b, moving elements by size (a and b already have out's dtype) */
#define WHERE_LOOP(T)                                                                              \
    do {                                                                                           \
        T *restrict o_ = (T *)(void *)p[0];                                                        \
        const uint8_t *restrict c_ = (const uint8_t *)p[1];                                        \
        const T *restrict a_ = (const T *)(void *)p[2], *restrict b_ = (const T *)(void *)p[3];    \
        if (bs[0] == ES(T) && bs[1] == 1 && bs[2] == ES(T) && bs[3] == ES(T)) {                    \
            for (int64_t i = 0; i < n; i++) o_[i] = c_[i] ? a_[i] : b_[i];                         \
        } else if (bs[0] == ES(T) && bs[1] == 1 && bs[2] == 0 && bs[3] == ES(T)) {                 \
            const T a = a_[0];                                                                     \
            for (int64_t i = 0; i < n; i++) o_[i] = c_[i] ? a : b_[i];                             \
        } else {                                                                                   \
            for (int64_t i = 0; i < n; i++)                                                        \
                AT(T, 0, i) = AT(const uint8_t, 1, i) ? AT(const T, 2, i) : AT(const T, 3, i);      \
        }                                                                                          \
    } while (0)

static void where_row(int64_t n, char **p, const int64_t *bs, void *vctx) {
    switch (((const pw_ctx *)vctx)->op) {
    case 1: WHERE_LOOP(uint8_t); break;
    case 2: WHERE_LOOP(uint16_t); break;
    case 4: WHERE_LOOP(uint32_t); break;
    case 8: WHERE_LOOP(uint64_t); break;
    default: EM_ASSERT(0);
    }
}

/* ---- unary kernels ------------------------------------------------------------------------------ */
static em_status unary(int op, em_tensor_t *const *in, em_tensor_t **out, double lo, double hi) {
    em_dtype ct = compute_type(out[0]->dtype);
    pw_ctx c = {.op = op, .lo = lo, .hi = hi};
    if (ct == EM_I64) { /* integer clamp: the integers inside [lo, hi] */
        c.ilo = lo <= -9.2e18 ? INT64_MIN : lo >= 9.2e18 ? INT64_MAX : (int64_t)ceil(lo);
        c.ihi = hi >= 9.2e18 ? INT64_MAX : hi <= -9.2e18 ? INT64_MIN : (int64_t)floor(hi);
        if (lo != lo) c.ilo = INT64_MIN;
        if (hi != hi) c.ihi = INT64_MAX;
    }
    emt_row_fn fn = ct == EM_F64 ? un_row_f64 : ct == EM_F32 ? un_row_f32 : un_row_i64;
    return run_rows(out[0], ct, in, &ct, 1, fn, &c);
}

#define UNARY_ARGS EM_UNUSED(a); EM_UNUSED(n_in); EM_UNUSED(n_out)
EMO_KERNEL(emo_k_neg) { UNARY_ARGS; return unary(U_NEG, in, out, 0, 0); }
EMO_KERNEL(emo_k_abs) { UNARY_ARGS; return unary(U_ABS, in, out, 0, 0); }
EMO_KERNEL(emo_k_exp) { UNARY_ARGS; return unary(U_EXP, in, out, 0, 0); }
EMO_KERNEL(emo_k_log) { UNARY_ARGS; return unary(U_LOG, in, out, 0, 0); }
EMO_KERNEL(emo_k_log1p) { UNARY_ARGS; return unary(U_LOG1P, in, out, 0, 0); }
EMO_KERNEL(emo_k_sqrt) { UNARY_ARGS; return unary(U_SQRT, in, out, 0, 0); }
EMO_KERNEL(emo_k_rsqrt) { UNARY_ARGS; return unary(U_RSQRT, in, out, 0, 0); }
EMO_KERNEL(emo_k_sin) { UNARY_ARGS; return unary(U_SIN, in, out, 0, 0); }
EMO_KERNEL(emo_k_cos) { UNARY_ARGS; return unary(U_COS, in, out, 0, 0); }
EMO_KERNEL(emo_k_tanh) { UNARY_ARGS; return unary(U_TANH, in, out, 0, 0); }
EMO_KERNEL(emo_k_sigmoid) { UNARY_ARGS; return unary(U_SIGMOID, in, out, 0, 0); }
EMO_KERNEL(emo_k_relu) { UNARY_ARGS; return unary(U_RELU, in, out, 0, 0); }
EMO_KERNEL(emo_k_gelu) { UNARY_ARGS; return unary(U_GELU, in, out, 0, 0); }
EMO_KERNEL(emo_k_gelu_tanh) { UNARY_ARGS; return unary(U_GELU_TANH, in, out, 0, 0); }
EMO_KERNEL(emo_k_silu) { UNARY_ARGS; return unary(U_SILU, in, out, 0, 0); }
EMO_KERNEL(emo_k_sign) { UNARY_ARGS; return unary(U_SIGN, in, out, 0, 0); }
EMO_KERNEL(emo_k_reciprocal) { UNARY_ARGS; return unary(U_RECIP, in, out, 0, 0); }
EMO_KERNEL(emo_k_square) { UNARY_ARGS; return unary(U_SQUARE, in, out, 0, 0); }
EMO_KERNEL(emo_k_clamp) { EM_UNUSED(n_in); EM_UNUSED(n_out); return unary(U_CLAMP, in, out, a->f[0], a->f[1]); }

EMO_KERNEL(emo_k_logical_not) {
    UNARY_ARGS;
    em_dtype d = in[0]->dtype;
    em_dtype ct = d == EM_BOOL || d == EM_U8 ? d : compute_type(d);
    emt_row_fn fn = ct == EM_F64 ? not_row_f64 : ct == EM_F32 ? not_row_f32 : ct == EM_I64 ? not_row_i64 : not_row_u8;
    pw_ctx c = {0};
    return run_rows(out[0], EM_BOOL, in, &ct, 1, fn, &c);
}

/* ---- binary kernels ----------------------------------------------------------------------------- */
static em_status binary(int op, em_tensor_t *const *in, em_tensor_t **out) {
    em_dtype ct = compute_type(out[0]->dtype), cts[2] = {ct, ct};
    emt_row_fn fn = ct == EM_F64 ? bin_row_f64 : ct == EM_F32 ? bin_row_f32 : bin_row_i64;
    pw_ctx c = {.op = op};
    return run_rows(out[0], ct, in, cts, 2, fn, &c);
}

static bool is_byte(em_dtype d) { return d == EM_BOOL || d == EM_U8; }

/* comparisons compute in the promoted dtype of the two inputs; bool and u8 (masks) compare
   as bytes without widening */
static em_status compare(int op, em_tensor_t *const *in, em_tensor_t **out) {
    em_dtype dts[2] = {in[0]->dtype, in[1]->dtype};
    int nds[2] = {in[0]->ndim, in[1]->ndim};
    em_dtype ct = compute_type(emt_result_type(dts, nds, 2)), cts[2] = {ct, ct};
    emt_row_fn fn = ct == EM_F64 ? cmp_row_f64 : ct == EM_F32 ? cmp_row_f32 : cmp_row_i64;
    if (is_byte(dts[0]) && is_byte(dts[1])) {
        cts[0] = dts[0];
        cts[1] = dts[1];
        fn = cmp_row_u8;
    }
    pw_ctx c = {.op = op};
    return run_rows(out[0], EM_BOOL, in, cts, 2, fn, &c);
}

EMO_KERNEL(emo_k_add) { UNARY_ARGS; return binary(B_ADD, in, out); }
EMO_KERNEL(emo_k_sub) { UNARY_ARGS; return binary(B_SUB, in, out); }
EMO_KERNEL(emo_k_mul) { UNARY_ARGS; return binary(B_MUL, in, out); }
EMO_KERNEL(emo_k_div) { UNARY_ARGS; return binary(B_DIV, in, out); }
EMO_KERNEL(emo_k_pow) { UNARY_ARGS; return binary(B_POW, in, out); }
EMO_KERNEL(emo_k_maximum) { UNARY_ARGS; return binary(B_MAX, in, out); }
EMO_KERNEL(emo_k_minimum) { UNARY_ARGS; return binary(B_MIN, in, out); }
EMO_KERNEL(emo_k_eq) { UNARY_ARGS; return compare(C_EQ, in, out); }
EMO_KERNEL(emo_k_ne) { UNARY_ARGS; return compare(C_NE, in, out); }
EMO_KERNEL(emo_k_lt) { UNARY_ARGS; return compare(C_LT, in, out); }
EMO_KERNEL(emo_k_le) { UNARY_ARGS; return compare(C_LE, in, out); }
EMO_KERNEL(emo_k_gt) { UNARY_ARGS; return compare(C_GT, in, out); }
EMO_KERNEL(emo_k_ge) { UNARY_ARGS; return compare(C_GE, in, out); }
EMO_KERNEL(emo_k_logical_and) { UNARY_ARGS; return compare(C_AND, in, out); }
EMO_KERNEL(emo_k_logical_or) { UNARY_ARGS; return compare(C_OR, in, out); }

/* where(cond, a, b): a and b are converted to the output dtype and moved as raw elements */
EMO_KERNEL(emo_k_where) {
    UNARY_ARGS;
    em_dtype dt = out[0]->dtype, cts[3] = {in[0]->dtype, dt, dt};
    pw_ctx c = {.op = (int)emt_esize(dt)};
    return run_rows(out[0], dt, in, cts, 3, where_row, &c);
}

/* masked_fill(x, mask, value) = where(mask, value, x) with value a 0-dim tensor of x's dtype */
EMO_KERNEL(emo_k_masked_fill) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    em_dtype dt = out[0]->dtype;
    em_tensor_t *v = emt_new(dt, NULL, 0);
    if (!v) return em_last_status();
    emt_store(emt_data(v), dt, a->f[0]);
    em_tensor_t *args[3] = {in[1], v, in[0]};
    em_dtype cts[3] = {in[1]->dtype, dt, dt};
    pw_ctx c = {.op = (int)emt_esize(dt)};
    em_status st = run_rows(out[0], dt, args, cts, 3, where_row, &c);
    em_release(v);
    return st;
}

/* ---- infer -------------------------------------------------------------------------------------- */
EMO_INFER(emo_infer_logical) {
    EM_UNUSED(a);
    EM_UNUSED(n_in);
    out[0] = in[0];
    out[0].dtype = EM_BOOL;
    *n_out = 1;
    return EM_OK;
}

/* neg and clamp keep the dtype but, like PyTorch, refuse bool */
EMO_INFER(emo_infer_unary_arith) {
    if (in[0].dtype == EM_BOOL)
        return emo_err(EM_ERR_DTYPE, NULL, in, 1, "not supported on bool tensors; use em_logical_not, or "
                       "em_cast to an integer or float dtype first");
    return emo_infer_unary(a, in, n_in, out, n_out);
}

/* bool - bool is refused like PyTorch's `-` on two bool tensors */
EMO_INFER(emo_infer_sub) {
    em_status st = emo_infer_binary(a, in, n_in, out, n_out);
    if (st == EM_OK && out[0].dtype == EM_BOOL)
        return emo_err(EM_ERR_DTYPE, NULL, in, 2, "subtracting bool tensors is not supported; use em_ne for "
                       "exclusive or, or em_cast to an integer dtype first");
    return st;
}

EMO_INFER(emo_infer_div) {
    em_status st = emo_infer_binary(a, in, n_in, out, n_out);
    if (st == EM_OK && !emt_is_float(out[0].dtype)) out[0].dtype = EM_F32; /* true division */
    return st;
}

EMO_INFER(emo_infer_compare) {
    em_status st = emo_infer_binary(a, in, n_in, out, n_out);
    out[0].dtype = EM_BOOL;
    return st;
}

EMO_INFER(emo_infer_where) {
    EM_UNUSED(a);
    EM_UNUSED(n_in);
    if (in[0].dtype != EM_BOOL && in[0].dtype != EM_U8)
        return emo_err(EM_ERR_DTYPE, NULL, in, 3, "cond must be bool (or u8), got %s; make it with a "
                       "comparison such as em_gt, or em_cast(cond, EM_BOOL)", em_dtype_name(in[0].dtype));
    int64_t s1[EM_MAX_DIMS];
    int n1, nd;
    if (!emt_broadcast_shape(in[0].shape, in[0].ndim, in[1].shape, in[1].ndim, s1, &n1) ||
        !emt_broadcast_shape(s1, n1, in[2].shape, in[2].ndim, out[0].shape, &nd))
        return emo_err(EM_ERR_SHAPE, NULL, in, 3, "cond, a and b do not broadcast together: sizes must "
                       "match or be 1, aligned from the last dim");
    out[0].ndim = nd;
    em_dtype dts[2] = {in[1].dtype, in[2].dtype};
    int nds[2] = {in[1].ndim, in[2].ndim};
    out[0].dtype = emt_result_type(dts, nds, 2);
    *n_out = 1;
    return EM_OK;
}

EMO_INFER(emo_infer_masked_fill) {
    EM_UNUSED(a);
    EM_UNUSED(n_in);
    if (in[1].dtype != EM_BOOL)
        return emo_err(EM_ERR_DTYPE, NULL, in, 2, "mask must be bool, got %s; make it with a comparison "
                       "or em_cast(mask, EM_BOOL)", em_dtype_name(in[1].dtype));
    int64_t s[EM_MAX_DIMS];
    int nd;
    bool ok = emt_broadcast_shape(in[0].shape, in[0].ndim, in[1].shape, in[1].ndim, s, &nd) &&
              nd == in[0].ndim && memcmp(s, in[0].shape, sizeof(int64_t) * (size_t)nd) == 0;
    if (!ok)
        return emo_err(EM_ERR_SHAPE, NULL, in, 2, "mask must broadcast to x's shape (x is not expanded)");
    out[0] = in[0];
    *n_out = 1;
    return EM_OK;
}

/* ---- backward rules ----------------------------------------------------------------------------- */
#define SET_GIN(i, expr)                                                                           \
    do {                                                                                           \
        if (c->needs_grad[i] && !(gin[i] = (expr))) return em_last_status();                       \
    } while (0)

static em_tensor_t *zero_of(em_tensor_t *t) { return t ? em_scalar(0.0, t->dtype) : NULL; }

EMO_BACKWARD(emo_bw_neg) {
    SET_GIN(0, em_neg(gout[0]));
    return EM_OK;
}

EMO_BACKWARD(emo_bw_abs) {
    SET_GIN(0, em_mul(gout[0], em_sign(c->in[0])));
    return EM_OK;
}

EMO_BACKWARD(emo_bw_exp) {
    SET_GIN(0, em_mul(gout[0], c->out[0]));
    return EM_OK;
}

EMO_BACKWARD(emo_bw_log) {
    SET_GIN(0, em_div(gout[0], c->in[0]));
    return EM_OK;
}

EMO_BACKWARD(emo_bw_log1p) {
    SET_GIN(0, em_div(gout[0], em_add_scalar(c->in[0], 1.0)));
    return EM_OK;
}

/* d sqrt(x) = 0.5 / sqrt(x) */
EMO_BACKWARD(emo_bw_sqrt) {
    SET_GIN(0, em_div(em_mul_scalar(gout[0], 0.5), c->out[0]));
    return EM_OK;
}

/* d x^-1/2 = -0.5 x^-3/2 = -0.5 out^3 */
EMO_BACKWARD(emo_bw_rsqrt) {
    em_tensor_t *y = c->out[0];
    SET_GIN(0, em_mul(em_mul_scalar(gout[0], -0.5), em_mul(y, em_square(y))));
    return EM_OK;
}

EMO_BACKWARD(emo_bw_sin) {
    SET_GIN(0, em_mul(gout[0], em_cos(c->in[0])));
    return EM_OK;
}

EMO_BACKWARD(emo_bw_cos) {
    SET_GIN(0, em_neg(em_mul(gout[0], em_sin(c->in[0]))));
    return EM_OK;
}

/* 1 - tanh^2 */
EMO_BACKWARD(emo_bw_tanh) {
    em_tensor_t *y = c->out[0];
    SET_GIN(0, em_mul(gout[0], em_sub(em_ones_like(y), em_square(y))));
    return EM_OK;
}

/* s (1 - s) */
EMO_BACKWARD(emo_bw_sigmoid) {
    em_tensor_t *y = c->out[0];
    SET_GIN(0, em_mul(gout[0], em_mul(y, em_sub(em_ones_like(y), y))));
    return EM_OK;
}

EMO_BACKWARD(emo_bw_relu) {
    em_tensor_t *y = c->out[0];
    SET_GIN(0, em_where(em_gt(y, zero_of(y)), gout[0], zero_of(gout[0])));
    return EM_OK;
}

/* d gelu = Phi(x) + x phi(x). Phi is not a public op, but Phi(x) = gelu(x) / x away from 0 (and
   1/2 at 0); phi(x) = exp(-x^2/2) / sqrt(2 pi) */
EMO_BACKWARD(emo_bw_gelu) {
    em_tensor_t *x = c->in[0]; /* floating: only float inputs get gradients */
    em_tensor_t *Phi = em_where(em_eq(x, zero_of(x)), em_scalar(0.5, x->dtype), em_div(em_gelu(x), x));
    em_tensor_t *phi = em_mul_scalar(em_exp(em_mul_scalar(em_square(x), -0.5)), 0.3989422804014327);
    SET_GIN(0, em_mul(gout[0], em_add(Phi, em_mul(x, phi))));
    return EM_OK;
}

/* gelu_tanh = 0.5 x (1 + t), t = tanh(k (x + c x^3)):
   d = 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2) */
EMO_BACKWARD(emo_bw_gelu_tanh) {
    em_tensor_t *x = c->in[0];
    em_tensor_t *x2 = em_square(x);
    em_tensor_t *t = em_tanh(em_mul_scalar(em_add(x, em_mul_scalar(em_mul(x, x2), GELU_C)), GELU_K));
    em_tensor_t *one = em_ones_like(x);
    em_tensor_t *left = em_mul_scalar(em_add(one, t), 0.5);
    em_tensor_t *inner = em_mul_scalar(em_add(one, em_mul_scalar(x2, 3 * GELU_C)), 0.5 * GELU_K);
    em_tensor_t *right = em_mul(em_mul(x, em_sub(one, em_square(t))), inner);
    SET_GIN(0, em_mul(gout[0], em_add(left, right)));
    return EM_OK;
}

/* silu = x s(x): d = s (1 + x (1 - s)) */
EMO_BACKWARD(emo_bw_silu) {
    em_tensor_t *x = c->in[0];
    em_tensor_t *s = em_sigmoid(x), *one = em_ones_like(s);
    SET_GIN(0, em_mul(gout[0], em_mul(s, em_add(one, em_mul(x, em_sub(one, s))))));
    return EM_OK;
}

EMO_BACKWARD(emo_bw_sign) {
    SET_GIN(0, em_zeros_like(gout[0]));
    return EM_OK;
}

/* d 1/x = -1/x^2 = -out^2 */
EMO_BACKWARD(emo_bw_reciprocal) {
    SET_GIN(0, em_neg(em_mul(gout[0], em_square(c->out[0]))));
    return EM_OK;
}

EMO_BACKWARD(emo_bw_square) {
    SET_GIN(0, em_mul(gout[0], em_mul_scalar(c->in[0], 2.0)));
    return EM_OK;
}

EMO_BACKWARD(emo_bw_add) {
    SET_GIN(0, gout[0]);
    SET_GIN(1, gout[0]);
    return EM_OK;
}

EMO_BACKWARD(emo_bw_sub) {
    SET_GIN(0, gout[0]);
    SET_GIN(1, em_neg(gout[0]));
    return EM_OK;
}

EMO_BACKWARD(emo_bw_mul) {
    SET_GIN(0, em_mul(gout[0], c->in[1]));
    SET_GIN(1, em_mul(gout[0], c->in[0]));
    return EM_OK;
}

/* d(a/b)/da = 1/b, d(a/b)/db = -a/b^2 */
EMO_BACKWARD(emo_bw_div) {
    em_tensor_t *a = c->in[0], *b = c->in[1];
    SET_GIN(0, em_div(gout[0], b));
    SET_GIN(1, em_neg(em_div(em_mul(gout[0], a), em_square(b))));
    return EM_OK;
}

/* d/da = b a^(b-1) (0 where b == 0, as PyTorch); d/db = out log(a), only where a > 0 */
EMO_BACKWARD(emo_bw_pow) {
    em_tensor_t *a = c->in[0], *b = c->in[1], *g = gout[0];
    if (c->needs_grad[0]) {
        em_tensor_t *d = em_mul(b, em_pow(a, em_sub_scalar(b, 1.0)));
        d = em_where(em_eq(b, zero_of(b)), zero_of(g), em_mul(g, d));
        SET_GIN(0, d);
    }
    if (c->needs_grad[1]) {
        em_tensor_t *d = em_mul(g, em_mul(c->out[0], em_log(a)));
        SET_GIN(1, em_where(em_gt(a, zero_of(a)), d, zero_of(g)));
    }
    return EM_OK;
}

/* ties send half the gradient to each side, like PyTorch */
static em_status minmax_backward(const emo_bctx *c, em_tensor_t *const *gout, em_tensor_t **gin, bool is_max) {
    em_tensor_t *a = c->in[0], *b = c->in[1], *g = gout[0], *z = zero_of(g);
    em_tensor_t *tie = em_eq(a, b), *half = em_mul_scalar(g, 0.5);
    em_tensor_t *a_wins = is_max ? em_gt(a, b) : em_lt(a, b);
    em_tensor_t *b_wins = is_max ? em_lt(a, b) : em_gt(a, b);
    SET_GIN(0, em_where(a_wins, g, em_where(tie, half, z)));
    SET_GIN(1, em_where(b_wins, g, em_where(tie, half, z)));
    return EM_OK;
}

EMO_BACKWARD(emo_bw_maximum) { return minmax_backward(c, gout, gin, true); }
EMO_BACKWARD(emo_bw_minimum) { return minmax_backward(c, gout, gin, false); }

EMO_BACKWARD(emo_bw_where) {
    em_tensor_t *cond = c->in[0], *g = gout[0];
    SET_GIN(1, em_where(cond, g, zero_of(g)));
    SET_GIN(2, em_where(cond, zero_of(g), g));
    return EM_OK;
}

/* 1 inside [lo, hi] (bounds included), 0 outside */
EMO_BACKWARD(emo_bw_clamp) {
    em_tensor_t *x = c->in[0], *g = gout[0];
    em_tensor_t *lo = em_scalar(c->attrs->f[0], x->dtype), *hi = em_scalar(c->attrs->f[1], x->dtype);
    em_tensor_t *inside = em_logical_and(em_ge(x, lo), em_le(x, hi));
    SET_GIN(0, em_where(inside, g, zero_of(g)));
    return EM_OK;
}

EMO_BACKWARD(emo_bw_masked_fill) {
    em_tensor_t *g = gout[0];
    SET_GIN(0, em_where(c->in[1], zero_of(g), g));
    return EM_OK;
}

/* ---- decompositions ----------------------------------------------------------------------------- */
static em_tensor_t *as_float(em_tensor_t *x) { return emt_is_float(x->dtype) ? x : em_cast(x, EM_F32); }

/* 0.5 x (1 + tanh(k (x + c x^3))) */
EMO_DECOMP(emo_dc_gelu_tanh) {
    EM_UNUSED(a);
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    em_tensor_t *x = as_float(in[0]);
    em_tensor_t *u = em_mul_scalar(em_add(x, em_mul_scalar(em_mul(x, em_square(x)), GELU_C)), GELU_K);
    out[0] = em_mul(em_mul_scalar(x, 0.5), em_add_scalar(em_tanh(u), 1.0));
    return out[0] ? EM_OK : em_last_status();
}

EMO_DECOMP(emo_dc_silu) {
    EM_UNUSED(a);
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    em_tensor_t *x = as_float(in[0]);
    out[0] = em_mul(x, em_sigmoid(x));
    return out[0] ? EM_OK : em_last_status();
}

EMO_DECOMP(emo_dc_masked_fill) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    out[0] = em_where(in[1], em_scalar(a->f[0], in[0]->dtype), in[0]);
    return out[0] ? EM_OK : em_last_status();
}

/* ---- public wrappers ---------------------------------------------------------------------------- */
static em_tensor_t *call_unary(emo_op op, const char *name, em_tensor_t *x) {
    if (!emt_check(x, name, "x")) return NULL;
    emo_attrs a = emo_attrs0();
    return emo_call1(op, &x, 1, &a);
}

static em_tensor_t *call_binary(emo_op op, const char *name, em_tensor_t *x, em_tensor_t *y) {
    if (!emt_check(x, name, "a") || !emt_check(y, name, "b")) return NULL;
    emo_attrs a = emo_attrs0();
    em_tensor_t *in[2] = {x, y};
    return emo_call1(op, in, 2, &a);
}

/* x op v with v a "weak" scalar (PyTorch): it takes x's dtype when x is floating or v is an
   integer (i64 for a bool x), and f32 otherwise, as a 0-dim tensor that never wins promotion
   within a category */
static em_tensor_t *call_scalar(emo_op op, const char *name, em_tensor_t *x, double v) {
    if (!emt_check(x, name, "x")) return NULL;
    bool integral = isfinite(v) && v == floor(v);
    em_dtype dt = emt_is_float(x->dtype) ? x->dtype : !integral ? EM_F32 : x->dtype == EM_BOOL ? EM_I64 : x->dtype;
    em_tensor_t *s = emt_new(dt, NULL, 0);
    if (!s) return NULL;
    emt_store(emt_data(s), dt, v);
    emo_attrs a = emo_attrs0();
    em_tensor_t *in[2] = {x, s};
    em_tensor_t *r = emo_call1(op, in, 2, &a);
    em_release(s);
    return r;
}

em_tensor_t *em_neg(em_tensor_t *x) { return call_unary(EMO_neg, "em_neg", x); }
em_tensor_t *em_abs(em_tensor_t *x) { return call_unary(EMO_abs, "em_abs", x); }
em_tensor_t *em_exp(em_tensor_t *x) { return call_unary(EMO_exp, "em_exp", x); }
em_tensor_t *em_log(em_tensor_t *x) { return call_unary(EMO_log, "em_log", x); }
em_tensor_t *em_log1p(em_tensor_t *x) { return call_unary(EMO_log1p, "em_log1p", x); }
em_tensor_t *em_sqrt(em_tensor_t *x) { return call_unary(EMO_sqrt, "em_sqrt", x); }
em_tensor_t *em_rsqrt(em_tensor_t *x) { return call_unary(EMO_rsqrt, "em_rsqrt", x); }
em_tensor_t *em_sin(em_tensor_t *x) { return call_unary(EMO_sin, "em_sin", x); }
em_tensor_t *em_cos(em_tensor_t *x) { return call_unary(EMO_cos, "em_cos", x); }
em_tensor_t *em_tanh(em_tensor_t *x) { return call_unary(EMO_tanh, "em_tanh", x); }
em_tensor_t *em_sigmoid(em_tensor_t *x) { return call_unary(EMO_sigmoid, "em_sigmoid", x); }
em_tensor_t *em_relu(em_tensor_t *x) { return call_unary(EMO_relu, "em_relu", x); }
em_tensor_t *em_gelu(em_tensor_t *x) { return call_unary(EMO_gelu, "em_gelu", x); }
em_tensor_t *em_gelu_tanh(em_tensor_t *x) { return call_unary(EMO_gelu_tanh, "em_gelu_tanh", x); }
em_tensor_t *em_silu(em_tensor_t *x) { return call_unary(EMO_silu, "em_silu", x); }
em_tensor_t *em_sign(em_tensor_t *x) { return call_unary(EMO_sign, "em_sign", x); }
em_tensor_t *em_reciprocal(em_tensor_t *x) { return call_unary(EMO_reciprocal, "em_reciprocal", x); }
em_tensor_t *em_square(em_tensor_t *x) { return call_unary(EMO_square, "em_square", x); }
em_tensor_t *em_logical_not(em_tensor_t *x) { return call_unary(EMO_logical_not, "em_logical_not", x); }

em_tensor_t *em_add(em_tensor_t *a, em_tensor_t *b) { return call_binary(EMO_add, "em_add", a, b); }
em_tensor_t *em_sub(em_tensor_t *a, em_tensor_t *b) { return call_binary(EMO_sub, "em_sub", a, b); }
em_tensor_t *em_mul(em_tensor_t *a, em_tensor_t *b) { return call_binary(EMO_mul, "em_mul", a, b); }
em_tensor_t *em_div(em_tensor_t *a, em_tensor_t *b) { return call_binary(EMO_div, "em_div", a, b); }
em_tensor_t *em_pow(em_tensor_t *a, em_tensor_t *b) { return call_binary(EMO_pow, "em_pow", a, b); }
em_tensor_t *em_maximum(em_tensor_t *a, em_tensor_t *b) { return call_binary(EMO_maximum, "em_maximum", a, b); }
em_tensor_t *em_minimum(em_tensor_t *a, em_tensor_t *b) { return call_binary(EMO_minimum, "em_minimum", a, b); }
em_tensor_t *em_eq(em_tensor_t *a, em_tensor_t *b) { return call_binary(EMO_eq, "em_eq", a, b); }
em_tensor_t *em_ne(em_tensor_t *a, em_tensor_t *b) { return call_binary(EMO_ne, "em_ne", a, b); }
em_tensor_t *em_lt(em_tensor_t *a, em_tensor_t *b) { return call_binary(EMO_lt, "em_lt", a, b); }
em_tensor_t *em_le(em_tensor_t *a, em_tensor_t *b) { return call_binary(EMO_le, "em_le", a, b); }
em_tensor_t *em_gt(em_tensor_t *a, em_tensor_t *b) { return call_binary(EMO_gt, "em_gt", a, b); }
em_tensor_t *em_ge(em_tensor_t *a, em_tensor_t *b) { return call_binary(EMO_ge, "em_ge", a, b); }
em_tensor_t *em_logical_and(em_tensor_t *a, em_tensor_t *b) { return call_binary(EMO_logical_and, "em_logical_and", a, b); }
em_tensor_t *em_logical_or(em_tensor_t *a, em_tensor_t *b) { return call_binary(EMO_logical_or, "em_logical_or", a, b); }

em_tensor_t *em_add_scalar(em_tensor_t *x, double v) { return call_scalar(EMO_add, "em_add_scalar", x, v); }
em_tensor_t *em_sub_scalar(em_tensor_t *x, double v) { return call_scalar(EMO_sub, "em_sub_scalar", x, v); }
em_tensor_t *em_mul_scalar(em_tensor_t *x, double v) { return call_scalar(EMO_mul, "em_mul_scalar", x, v); }
em_tensor_t *em_div_scalar(em_tensor_t *x, double v) { return call_scalar(EMO_div, "em_div_scalar", x, v); }
em_tensor_t *em_pow_scalar(em_tensor_t *x, double v) { return call_scalar(EMO_pow, "em_pow_scalar", x, v); }

em_tensor_t *em_where(em_tensor_t *cond, em_tensor_t *a, em_tensor_t *b) {
    if (!emt_check(cond, "em_where", "cond") || !emt_check(a, "em_where", "a") || !emt_check(b, "em_where", "b"))
        return NULL;
    emo_attrs at = emo_attrs0();
    em_tensor_t *in[3] = {cond, a, b};
    return emo_call1(EMO_where, in, 3, &at);
}

em_tensor_t *em_clamp(em_tensor_t *x, double lo, double hi) {
    if (!emt_check(x, "em_clamp", "x")) return NULL;
    emo_attrs a = emo_attrs0();
    a.f[0] = lo;
    a.f[1] = hi;
    return emo_call1(EMO_clamp, &x, 1, &a);
}

em_tensor_t *em_masked_fill(em_tensor_t *x, em_tensor_t *mask, double value) {
    if (!emt_check(x, "em_masked_fill", "x") || !emt_check(mask, "em_masked_fill", "mask")) return NULL;
    emo_attrs a = emo_attrs0();
    a.f[0] = value;
    em_tensor_t *in[2] = {x, mask};
    return emo_call1(EMO_masked_fill, in, 2, &a);
}
