/* codegen.c - the CPU backend: one C translation unit per program (Inductor's codegen/cpp +
 * wrapper, in C).
 *
 * needs: a scheduled, planned emc_ctx (kernels, buffers, arena). fills: the source text.
 *
 * The file is: a comment with the graph and the kernel list; the prelude (prelude.c: the runtime
 * table's struct, the f32 math of src/ops/vecmath.h, the dtype conversions of src/tensor, Philox); one
 * `static void kernel_N(...)` per kernel on raw `restrict` pointers; and the exported
 *
 *     int ember_run(void **inputs, void **outputs, char *arena, const struct ember_rt *rt)
 *
 * that points names at the caller's inputs (then constants), outputs and arena offsets and calls
 * the kernels in order, so the .so needs no symbol from libember (GEMM and fallbacks come in
 * through rt). Loop bodies are printed through the emc_ops interface: every expression node
 * becomes one `T vN = ...;` line (index arithmetic and constants print inline), nodes that do
 * not depend on the inner loop's variables are printed once before it (bias loads, a row's
 * 1 / sum), and the inner loop is a plain contiguous `for` with `#pragma omp simd` that gcc
 * vectorizes at -O3 -march=native. Outer loops get `#pragma omp parallel for` when the kernel
 * has enough work. Reductions accumulate like reduce.c: float sums and products in double,
 * integers in wrapping 64-bit arithmetic, max/min with NaN noted on the side; accumulators
 * across rows (a mean over the batch) are per thread and combined in thread order, so results
 * do not change from run to run.
 */
#include "../../compiler/compiler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define PAR_WORK 32768 /* iterations below which a kernel runs on one thread */
#define CB 64          /* columns per task in column-layout reductions */
#define MAXT 256       /* most threads a cross-row accumulation keeps partials for */
#define ROW_CACHE 4096 /* longest row a reduce kernel keeps values of on the stack */
#define CACHE_COST 6   /* a value used by several loops of a row is kept when it costs this much */
#define MAX_PARAMS 1024 /* buffers one kernel may take */

/* ---- text buffers ------------------------------------------------------------------------------ */
typedef struct {
    char *s;
    size_t n, cap;
    bool oom;
} sb;

static void sb_put(sb *b, const char *fmt, ...) EM_PRINTF(2, 3);
static void sb_put(sb *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->n;
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? room : 0, fmt, ap);
        va_end(ap);
        if (k < 0) return;
        if (b->s && (size_t)k < room) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 65536;
        while (cap < b->n + (size_t)k + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->oom = true;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

/* ---- the printer state --------------------------------------------------------------------------- */
typedef struct {
    const emc_ctx *c;
    const emc_pool *p;
    sb *o;
    int ind;
    /* handles: h[node] indexes hs[] */
    int *h;
    char **hs;
    int nh, caph;
    int *stack;
    int nstack, capstack;
    /* the kernel being printed */
    const emc_kernel *k;
    bool column;          /* per-row accumulators are arrays indexed by c */
    bool *outer_slot;     /* slots of EMC_M_OUTER members */
    signed char *inner;   /* per node: depends on the inner loop (memo, -1 unknown) */
    bool inner_var[EM_MAX_DIMS];
    /* row cache (row-layout reductions): node rc_node[i] is computed in loop rc_phase[i] and kept in
       the stack array rc<node>[R] for the later loops of the same row */
    int rc_node[16], rc_phase[16], n_rc;
    bool aliased;         /* it writes an in-place output over an input it reads (memplan.c) */
    bool oom;
} cg;

static void line(cg *g, const char *fmt, ...) EM_PRINTF(2, 3);
static void line(cg *g, const char *fmt, ...) {
    char tmp[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sb_put(g->o, "%*s%s\n", 4 * g->ind, "", tmp);
}

static const char *ctype_name(emc_ty t) {
    switch (t) {
    case EMC_F32: return "float";
    case EMC_F64: return "double";
    case EMC_I64: return "int64_t";
    default: return "int";
    }
}

static const char *stype_name(em_dtype d) {
    switch (d) {
    case EM_F32: return "float";
    case EM_F64: return "double";
    case EM_F16: case EM_BF16: return "uint16_t";
    case EM_I32: return "int32_t";
    case EM_I64: return "int64_t";
    default: return "uint8_t";
    }
}

static int new_handle(cg *g, int node, const char *text) {
    if (g->nh == g->caph) {
        int cap = g->caph ? g->caph * 2 : 1024;
        char **hs = realloc(g->hs, sizeof *hs * (size_t)cap);
        if (!hs) {
            g->oom = true;
            return -1;
        }
        g->hs = hs;
        g->caph = cap;
    }
    if (g->nstack == g->capstack) {
        int cap = g->capstack ? g->capstack * 2 : 1024;
        int *st = realloc(g->stack, sizeof *st * (size_t)cap);
        if (!st) {
            g->oom = true;
            return -1;
        }
        g->stack = st;
        g->capstack = cap;
    }
    char *s = strdup(text);
    if (!s) {
        g->oom = true;
        return -1;
    }
    g->hs[g->nh] = s;
    g->stack[g->nstack++] = node;
    return g->nh++;
}

/* a statement `T vN = expr;` and the handle "vN" */
static int temp(cg *g, int node, const char *expr) {
    char name[32];
    snprintf(name, sizeof name, "v%d", node);
    line(g, "%s %s = %s;", ctype_name((emc_ty)g->p->x[node].ty), name, expr);
    return new_handle(g, node, name);
}

#define H(i) (g->hs[i])

/* leaving a scope forgets the handles made inside it */
static int scope_mark(const cg *g) { return g->nstack; }
static void scope_pop(cg *g, int mark) {
    while (g->nstack > mark) g->h[g->stack[--g->nstack]] = -1;
}

/* a literal that reads back exactly */
static void lit_f(char *buf, size_t n, double v, bool f32) {
    if (v != v) {
        snprintf(buf, n, f32 ? "NAN" : "(double)NAN");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, n, "%s%s", v < 0 ? "-" : "", f32 ? "INFINITY" : "(double)INFINITY");
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        double back = strtod(buf, NULL);
        if (f32 ? (float)back == (float)v : back == v) break;
    }
    if (!strpbrk(buf, ".eni")) strncat(buf, ".0", n - strlen(buf) - 1);
    if (f32) strncat(buf, "f", n - strlen(buf) - 1);
}

static void lit_i(char *buf, size_t n, int64_t v) {
    if (v == INT64_MIN) snprintf(buf, n, "INT64_MIN");
    else snprintf(buf, n, "%lld", (long long)v);
}

/* x (of compute type src, already exact in its dtype) converted to dtype dst as emt_copy does,
   in dst's compute type */
static void conv_text(char *out, size_t n, emc_ty src, em_dtype dst, const char *x) {
    switch (src) {
    case EMC_F32: case EMC_F64: {
        bool f = src == EMC_F32;
        switch (dst) {
        case EM_F32: snprintf(out, n, f ? "%s" : "(float)%s", x); return;
        case EM_F64: snprintf(out, n, f ? "(double)%s" : "%s", x); return;
        case EM_F16: snprintf(out, n, f ? "r_f16(%s)" : "r_f16((float)%s)", x); return;
        case EM_BF16: snprintf(out, n, f ? "r_bf16(%s)" : "r_bf16((float)%s)", x); return;
        case EM_I64: snprintf(out, n, "f2i64((double)%s)", x); return;
        case EM_I32: snprintf(out, n, "f2i32((double)%s)", x); return;
        case EM_U8: snprintf(out, n, "f2u8((double)%s)", x); return;
        case EM_BOOL: snprintf(out, n, "(%s != 0)", x); return;
        }
        break;
    }
    case EMC_I64:
        switch (dst) {
        case EM_F32: snprintf(out, n, "(float)(double)%s", x); return;
        case EM_F64: snprintf(out, n, "(double)%s", x); return;
        case EM_F16: snprintf(out, n, "r_f16((float)(double)%s)", x); return;
        case EM_BF16: snprintf(out, n, "r_bf16((float)(double)%s)", x); return;
        case EM_I64: snprintf(out, n, "%s", x); return;
        case EM_I32: snprintf(out, n, "wrap32(%s)", x); return;
        case EM_U8: snprintf(out, n, "(int64_t)(uint8_t)(uint64_t)%s", x); return;
        case EM_BOOL: snprintf(out, n, "(%s != 0)", x); return;
        }
        break;
    case EMC_BOOL:
        switch (dst) {
        case EM_F32: case EM_F16: case EM_BF16: snprintf(out, n, "(float)%s", x); return;
        case EM_F64: snprintf(out, n, "(double)%s", x); return;
        case EM_BOOL: snprintf(out, n, "%s", x); return;
        default: snprintf(out, n, "(int64_t)%s", x); return;
        }
    }
    snprintf(out, n, "%s", x);
}

/* storage element -> compute value, and back */
static void load_text(char *out, size_t n, em_dtype d, const char *x) {
    switch (d) {
    case EM_F16: snprintf(out, n, "h2f(%s)", x); return;
    case EM_BF16: snprintf(out, n, "bf2f(%s)", x); return;
    case EM_I32: case EM_U8: snprintf(out, n, "(int64_t)%s", x); return;
    case EM_BOOL: snprintf(out, n, "(int)%s", x); return;
    default: snprintf(out, n, "%s", x); return;
    }
}

static void store_text(char *out, size_t n, em_dtype d, const char *x) {
    switch (d) {
    case EM_F16: snprintf(out, n, "f2h(%s)", x); return;
    case EM_BF16: snprintf(out, n, "f2bf(%s)", x); return;
    case EM_I32: snprintf(out, n, "(int32_t)%s", x); return;
    case EM_U8: snprintf(out, n, "(uint8_t)%s", x); return;
    case EM_BOOL: snprintf(out, n, "(uint8_t)(%s != 0)", x); return;
    default: snprintf(out, n, "%s", x); return;
    }
}

static char *bname(char *buf, size_t n, const emc_ctx *c, int v) {
    const emc_buf *b = &c->buf[v];
    switch (b->kind) {
    case EMC_B_INPUT: snprintf(buf, n, "in%d", b->index); break;
    case EMC_B_CONST: snprintf(buf, n, "cst%d", b->index); break;
    case EMC_B_OUTPUT: snprintf(buf, n, "out%d", b->index); break;
    default: snprintf(buf, n, "buf%d", v); break;
    }
    return buf;
}

/* ---- the ops interface, printing C --------------------------------------------------------------- */
static int c_constant(void *vg, const emc_pool *p, int node) {
    cg *g = vg;
    const emc_x *x = &p->x[node];
    char b[64];
    if (emc_is_float_ty((emc_ty)x->ty)) lit_f(b, sizeof b, x->f, x->ty == EMC_F32);
    else lit_i(b, sizeof b, x->i);
    return new_handle(g, node, b);
}

static int c_index(void *vg, const emc_pool *p, int node, const int *a) {
    cg *g = vg;
    const emc_x *x = &p->x[node];
    char b[1024];
    int n = 0;
    switch ((emc_xk)x->kind) {
    case EMX_VAR: snprintf(b, sizeof b, "i%lld", (long long)x->i); break;
    case EMX_AFF: {
        /* terms in an order that does not depend on node numbering (which changes with the sizes):
           loop variables by dim, then the rest as stored, so sources at two sizes differ only in
           their numbers (src/capture/dynamic.c compares them) */
        int ord[64], no = 0;
        for (int pass = 0; pass < 2; pass++)
            for (int k = 0; k < x->n && no < 64; k++) {
                const emc_x *t = &p->x[EMC_ARG(p, node, k)];
                bool var = t->kind == EMX_VAR;
                if (pass == 0 && var) {
                    int j = no++;
                    while (j > 0 && p->x[EMC_ARG(p, node, ord[j - 1])].i > t->i) ord[j] = ord[j - 1], j--;
                    ord[j] = k;
                } else if (pass == 1 && !var) {
                    ord[no++] = k;
                }
            }
        n += snprintf(b + n, sizeof b - (size_t)n, "(");
        for (int kk = 0; kk < x->n && n < (int)sizeof b - 64; kk++) {
            int k = x->n <= 64 ? ord[kk] : kk;
            long long cf = (long long)p->coefv[x->a + k];
            const char *sep = kk == 0 ? (cf < 0 ? "-" : "") : cf < 0 ? " - " : " + ";
            long long ac = cf < 0 ? -cf : cf;
            if (ac == 1) n += snprintf(b + n, sizeof b - (size_t)n, "%s%s", sep, H(a[k]));
            else n += snprintf(b + n, sizeof b - (size_t)n, "%s%s * %lld", sep, H(a[k]), ac);
        }
        if (x->i) n += snprintf(b + n, sizeof b - (size_t)n, " %s %lld", x->i < 0 ? "-" : "+",
                                (long long)(x->i < 0 ? -x->i : x->i));
        snprintf(b + n, sizeof b - (size_t)n, ")");
        break;
    }
    case EMX_DIV: snprintf(b, sizeof b, "(%s / %lld)", H(a[0]), (long long)x->i); break;
    case EMX_MOD: snprintf(b, sizeof b, "(%s %% %lld)", H(a[0]), (long long)x->i); break;
    default: snprintf(b, sizeof b, "clampi(%s, %lld, %lld)", H(a[0]), (long long)x->i, (long long)x->aux); break;
    }
    return new_handle(g, node, b);
}

static int c_load(void *vg, const emc_pool *p, int node, int flat) {
    cg *g = vg;
    const emc_x *x = &p->x[node];
    char nm[32], el[1100], e[1200];
    snprintf(el, sizeof el, "%s[%s]", bname(nm, sizeof nm, g->c, (int)x->i), H(flat));
    load_text(e, sizeof e, (em_dtype)x->op, el);
    return temp(g, node, e);
}

static int c_acc(void *vg, const emc_pool *p, int node) {
    cg *g = vg;
    char b[32];
    int s = (int)p->x[node].i;
    snprintf(b, sizeof b, g->column && !g->outer_slot[s] ? "red%d[c]" : "red%d", s);
    return new_handle(g, node, b);
}

static const char *fconst(bool f32, double v, char *buf) {
    lit_f(buf, 48, v, f32);
    return buf;
}

static int c_unary(void *vg, const emc_pool *p, int node, int ai) {
    cg *g = vg;
    const emc_x *x = &p->x[node];
    const char *a = H(ai);
    char e[1200];
    if (x->op == EMO_logical_not) {
        snprintf(e, sizeof e, "%s == 0", a);
        return temp(g, node, e);
    }
    if (x->ty == EMC_I64 || x->ty == EMC_BOOL) {
        switch (x->op) {
        case EMO_neg: snprintf(e, sizeof e, "(int64_t)(0 - (uint64_t)%s)", a); break;
        case EMO_abs: snprintf(e, sizeof e, "%s < 0 ? (int64_t)(0 - (uint64_t)%s) : %s", a, a, a); break;
        case EMO_sign: snprintf(e, sizeof e, "(int64_t)((%s > 0) - (%s < 0))", a, a); break;
        case EMO_relu: snprintf(e, sizeof e, "%s < 0 ? 0 : %s", a, a); break;
        case EMO_square: snprintf(e, sizeof e, "(int64_t)((uint64_t)%s * (uint64_t)%s)", a, a); break;
        default: snprintf(e, sizeof e, "%s /* ? */", a); break;
        }
        return temp(g, node, e);
    }
    bool f = x->ty == EMC_F32;
    const char *sfx = f ? "f" : "";
    char k1[48], k2[48], one[48];
    fconst(f, 1.0, one);
    switch (x->op) {
    case EMO_neg: snprintf(e, sizeof e, "-(%s)", a); break;
    case EMO_abs: snprintf(e, sizeof e, "fabs%s(%s)", sfx, a); break;
    case EMO_exp: snprintf(e, sizeof e, f ? "exp_f32(%s)" : "exp(%s)", a); break;
    case EMO_log: snprintf(e, sizeof e, f ? "log_f32(%s)" : "log(%s)", a); break;
    case EMO_log1p: snprintf(e, sizeof e, "log1p%s(%s)", sfx, a); break;
    case EMO_sqrt: snprintf(e, sizeof e, "sqrt%s(%s)", sfx, a); break;
    case EMO_rsqrt: snprintf(e, sizeof e, "%s / sqrt%s(%s)", one, sfx, a); break;
    case EMO_sin: snprintf(e, sizeof e, "sin%s(%s)", sfx, a); break;
    case EMO_cos: snprintf(e, sizeof e, "cos%s(%s)", sfx, a); break;
    case EMO_tanh: snprintf(e, sizeof e, f ? "tanh_f32(%s)" : "tanh(%s)", a); break;
    case EMO_sigmoid: snprintf(e, sizeof e, f ? "%s / (%s + exp_f32(-(%s)))" : "%s / (%s + exp(-(%s)))", one, one, a); break;
    case EMO_relu: snprintf(e, sizeof e, "%s < 0 ? %s : %s", a, fconst(f, 0.0, k1), a); break;
    case EMO_gelu: snprintf(e, sizeof e, f ? "gelu_f32(%s)" : "gelu_f64(%s)", a); break;
    case EMO_gelu_tanh: /* x / (1 + e^(-2u)), u = k (x + c x^3), as pointwise.c writes it */
        snprintf(e, sizeof e, f ? "%s / (%s + exp_f32(%s * (%s + %s * %s * %s * %s)))" : "%s / (%s + exp(%s * (%s + %s * %s * %s * %s)))",
                 a, one, fconst(f, -2 * 0.7978845608028654, k1), a, fconst(f, 0.044715, k2), a, a, a);
        break;
    case EMO_silu: snprintf(e, sizeof e, f ? "%s / (%s + exp_f32(-(%s)))" : "%s / (%s + exp(-(%s)))", a, one, a); break;
    case EMO_sign: snprintf(e, sizeof e, "(%s)((%s > 0) - (%s < 0))", f ? "float" : "double", a, a); break;
    case EMO_reciprocal: snprintf(e, sizeof e, "%s / %s", one, a); break;
    case EMO_square: snprintf(e, sizeof e, "%s * %s", a, a); break;
    default: snprintf(e, sizeof e, "%s /* ? */", a); break;
    }
    return temp(g, node, e);
}

static int c_binary(void *vg, const emc_pool *p, int node, int ai, int bi) {
    cg *g = vg;
    const emc_x *x = &p->x[node];
    const char *a = H(ai), *b = H(bi);
    emc_ty at = (emc_ty)p->x[p->argv[x->a]].ty;
    char e[2400];
    switch (x->op) {
    case EMO_eq: snprintf(e, sizeof e, "%s == %s", a, b); return temp(g, node, e);
    case EMO_ne: snprintf(e, sizeof e, "%s != %s", a, b); return temp(g, node, e);
    case EMO_lt: snprintf(e, sizeof e, "%s < %s", a, b); return temp(g, node, e);
    case EMO_le: snprintf(e, sizeof e, "%s <= %s", a, b); return temp(g, node, e);
    case EMO_gt: snprintf(e, sizeof e, "%s > %s", a, b); return temp(g, node, e);
    case EMO_ge: snprintf(e, sizeof e, "%s >= %s", a, b); return temp(g, node, e);
    case EMO_logical_and: snprintf(e, sizeof e, "(%s != 0) & (%s != 0)", a, b); return temp(g, node, e);
    case EMO_logical_or: snprintf(e, sizeof e, "(%s != 0) | (%s != 0)", a, b); return temp(g, node, e);
    default: break;
    }
    if (at == EMC_I64 || at == EMC_BOOL) {
        switch (x->op) {
        case EMO_add: snprintf(e, sizeof e, "(int64_t)((uint64_t)%s + (uint64_t)%s)", a, b); break;
        case EMO_sub: snprintf(e, sizeof e, "(int64_t)((uint64_t)%s - (uint64_t)%s)", a, b); break;
        case EMO_mul: snprintf(e, sizeof e, "(int64_t)((uint64_t)%s * (uint64_t)%s)", a, b); break;
        case EMO_pow: snprintf(e, sizeof e, "powi(%s, %s)", a, b); break;
        case EMO_maximum: snprintf(e, sizeof e, "%s > %s ? %s : %s", a, b, a, b); break;
        case EMO_minimum: snprintf(e, sizeof e, "%s < %s ? %s : %s", a, b, a, b); break;
        default: snprintf(e, sizeof e, "%s /* ? */", a); break;
        }
        return temp(g, node, e);
    }
    switch (x->op) {
    case EMO_add: snprintf(e, sizeof e, "%s + %s", a, b); break;
    case EMO_sub: snprintf(e, sizeof e, "%s - %s", a, b); break;
    case EMO_mul: snprintf(e, sizeof e, "%s * %s", a, b); break;
    case EMO_div: snprintf(e, sizeof e, "%s / %s", a, b); break;
    case EMO_pow: snprintf(e, sizeof e, at == EMC_F32 ? "powf(%s, %s)" : "pow(%s, %s)", a, b); break;
    case EMO_maximum: snprintf(e, sizeof e, "(%s > %s || %s != %s) ? %s : %s", a, b, a, a, a, b); break;
    case EMO_minimum: snprintf(e, sizeof e, "(%s < %s || %s != %s) ? %s : %s", a, b, a, a, a, b); break;
    default: snprintf(e, sizeof e, "%s /* ? */", a); break;
    }
    return temp(g, node, e);
}

static int c_where(void *vg, const emc_pool *p, int node, int ci, int ai, int bi) {
    (void)p;
    cg *g = vg;
    char e[2400];
    snprintf(e, sizeof e, "%s ? %s : %s", H(ci), H(ai), H(bi));
    return temp(g, node, e);
}

static int c_cast(void *vg, const emc_pool *p, int node, int ai) {
    cg *g = vg;
    const emc_x *x = &p->x[node];
    char e[1200];
    conv_text(e, sizeof e, (emc_ty)p->x[p->argv[x->a]].ty, (em_dtype)x->op, H(ai));
    return temp(g, node, e);
}

static int c_rand(void *vg, const emc_pool *p, int node, int fi) {
    cg *g = vg;
    const emc_x *x = &p->x[node];
    int s = (int)x->i;
    char e[1200];
    if (x->op == EMC_RAND_UNIFORM) {
        snprintf(e, sizeof e, "ph_uniform(rt->rng_seed[%d], rt->rng_off[%d] + (uint64_t)%s)", s, s, H(fi));
    } else if (x->op == EMC_RAND_NORMAL) {
        snprintf(e, sizeof e, "ph_normal(rt->rng_seed[%d], rt->rng_off[%d] + (uint64_t)%s)", s, s, H(fi));
    } else {
        const emc_rslot *r = &g->c->rand[s];
        char lo[40];
        lit_i(lo, sizeof lo, r->lo);
        snprintf(e, sizeof e, "(int64_t)((uint64_t)%s + ph_u64(rt->rng_seed[%d], rt->rng_off[%d] + (uint64_t)%s) %% %lluull)",
                 lo, s, s, H(fi), (unsigned long long)r->range);
    }
    return temp(g, node, e);
}

static int c_check(void *vg, const emc_pool *p, int node, int ai) {
    cg *g = vg;
    char e[1200];
    snprintf(e, sizeof e, "chk(%s, %lld, err)", H(ai), (long long)p->x[node].i);
    return temp(g, node, e);
}

static const emc_ops c_ops = {c_constant, c_index, c_load, c_acc, c_unary, c_binary, c_where, c_cast, c_rand, c_check};

/* ---- emitting loop bodies --------------------------------------------------------------------------- */
static bool is_inner(cg *g, int e) {
    if (g->inner[e] >= 0) return g->inner[e];
    const emc_x *x = &g->p->x[e];
    bool r = (x->kind == EMX_VAR && g->inner_var[x->i]) || (x->kind == EMX_ACC && g->column && !g->outer_slot[x->i]);
    for (int k = 0; k < x->n && !r; k++) r = is_inner(g, g->p->argv[x->a + k]);
    g->inner[e] = (signed char)r;
    return r;
}

static bool walk(cg *g, const int *roots, int n) {
    if (emc_walk(g->p, roots, n, &c_ops, g, g->h) != EM_OK) {
        g->oom = true;
        return false;
    }
    return !g->oom;
}

/* prints, in the current scope, the parts of roots that do not depend on the inner loop */
static void hoist(cg *g, int e) {
    if (e < 0 || g->h[e] >= 0) return;
    if (!is_inner(g, e)) {
        walk(g, &e, 1);
        return;
    }
    const emc_x *x = &g->p->x[e];
    for (int k = 0; k < x->n; k++) hoist(g, g->p->argv[x->a + k]);
}

static void reset_inner(cg *g, const bool *vars) {
    memset(g->inner, -1, (size_t)g->p->nx);
    memcpy(g->inner_var, vars, sizeof g->inner_var);
}

/* `name[ix] = value;` for member m (value v of the kernel) */
static void emit_store(cg *g, int v, int ix, const char *val) {
    char nm[32], s[1200];
    const emo_meta *m = &g->c->g->vals[v].meta;
    if (!walk(g, &ix, 1)) return;
    store_text(s, sizeof s, m->dtype, val);
    line(g, "%s[%s] = %s;", bname(nm, sizeof nm, g->c, v), H(g->h[ix]), s);
}

/* loop variables i<d> for the dims in `dims` (nd of them, extents from k) from the flat index o */
static void unravel(cg *g, const int *dims, int nd, const char *o) {
    int64_t st = 1;
    for (int j = nd - 1; j >= 0; j--) {
        int d = dims[j];
        if (nd == 1) line(g, "int64_t i%d = %s;", d, o);
        else if (j == 0) line(g, "int64_t i%d = %s / %lld;", d, o, (long long)st);
        else if (st == 1) line(g, "int64_t i%d = %s %% %lld;", d, o, (long long)g->k->shape[d]);
        else line(g, "int64_t i%d = (%s / %lld) %% %lld;", d, o, (long long)st, (long long)g->k->shape[d]);
        st *= g->k->shape[d];
    }
}

static int64_t prod_dims(const emc_kernel *k, const int *dims, int n) {
    int64_t s = 1;
    for (int j = 0; j < n; j++) s *= k->shape[dims[j]];
    return s;
}

/* ---- pointwise kernels -------------------------------------------------------------------------- */
static void emit_pointwise(cg *g) {
    const emc_kernel *k = g->k;
    int nd = k->nd, dims[EM_MAX_DIMS];
    int64_t total = emt_numel_shape(k->shape, nd);
    bool vars[EM_MAX_DIMS] = {0};
    if (nd > 0) vars[nd - 1] = true;
    reset_inner(g, vars);
    for (int d = 0; d < nd; d++) dims[d] = d;
    int64_t inner = nd > 0 ? k->shape[nd - 1] : 1, outer = total / (inner > 0 ? inner : 1);
    int64_t bl = inner, nblk = 1;
    if (outer < 64 && inner > 8192) {
        bl = 4096;
        nblk = (inner + bl - 1) / bl;
    }
    if (total == 0) return;
    if (total >= PAR_WORK) line(g, "#pragma omp parallel for schedule(static) num_threads(rt->nthreads)");
    line(g, "for (int64_t t = 0; t < %lld; t++) {", (long long)(outer * nblk));
    g->ind++;
    int mark = scope_mark(g);
    if (nd > 1 && nblk > 1) {
        line(g, "int64_t o = t / %lld;", (long long)nblk);
        unravel(g, dims, nd - 1, "o");
    } else if (nd > 1) {
        unravel(g, dims, nd - 1, "t");
    }
    for (int i = 0; i < k->n_m; i++) {
        hoist(g, k->m[i].expr);
        hoist(g, k->m[i].store_ix);
    }
    if (nd > 0) {
        if (nblk > 1)
            line(g, "int64_t lo = (t %% %lld) * %lld, hi = lo + %lld < %lld ? lo + %lld : %lld;", (long long)nblk,
                 (long long)bl, (long long)bl, (long long)inner, (long long)bl, (long long)inner);
        line(g, "#pragma omp simd");
        if (nblk > 1) line(g, "for (int64_t i%d = lo; i%d < hi; i%d++) {", nd - 1, nd - 1, nd - 1);
        else line(g, "for (int64_t i%d = 0; i%d < %lld; i%d++) {", nd - 1, nd - 1, (long long)inner, nd - 1);
        g->ind++;
    }
    int inner_mark = scope_mark(g);
    /* an in-place output shares its buffer with an input read here at the same element: every
       value is loaded and computed before the first store */
    for (int i = 0; g->aliased && i < k->n_m; i++)
        if (k->m[i].store && walk(g, &k->m[i].expr, 1)) walk(g, &k->m[i].store_ix, 1);
    for (int i = 0; i < k->n_m; i++) {
        const emc_member *m = &k->m[i];
        if (!m->store || !walk(g, &m->expr, 1)) continue;
        emit_store(g, m->value, m->store_ix, H(g->h[m->expr]));
    }
    scope_pop(g, inner_mark);
    if (nd > 0) {
        g->ind--;
        line(g, "}");
    }
    scope_pop(g, mark);
    g->ind--;
    line(g, "}");
}

/* ---- reduce kernels --------------------------------------------------------------------------------- */
static bool float_acc(emc_ty t) { return t == EMC_F32 || t == EMC_F64; }
/* max/min over floats carry a NaN flag beside the accumulator (NaN wins, as in the eager kernels) */
static bool tracks_nan(const emc_lval *lv) {
    return float_acc(lv->acc_ty) && (lv->rk == EMC_R_MAX || lv->rk == EMC_R_MIN);
}

static const char *acc_decl_type(const emc_lval *lv) {
    if (lv->acc_ty == EMC_I64 && (lv->rk == EMC_R_SUM || lv->rk == EMC_R_PROD)) return "uint64_t";
    return ctype_name(lv->acc_ty);
}

static void acc_init(char *b, size_t n, const emc_lval *lv) {
    bool f = float_acc(lv->acc_ty), f32 = lv->acc_ty == EMC_F32;
    switch (lv->rk) {
    case EMC_R_SUM: snprintf(b, n, f ? (f32 ? "0.0f" : "0.0") : "0"); break;
    case EMC_R_PROD: snprintf(b, n, f ? (f32 ? "1.0f" : "1.0") : "1"); break;
    case EMC_R_MAX: case EMC_R_ARGMAX: snprintf(b, n, f ? "-INFINITY" : "INT64_MIN"); break;
    default: snprintf(b, n, f ? "INFINITY" : "INT64_MAX"); break;
    }
}

static bool arg_kind(const emc_lval *lv) { return lv->rk == EMC_R_ARGMAX || lv->rk == EMC_R_ARGMIN; }

/* declarations of slot s's accumulators (scalars, or arrays of CB for the column layout) */
static void decl_acc(cg *g, const emc_lval *lv, int s, bool arr, const char *pre) {
    char init[32];
    acc_init(init, sizeof init, lv);
    const char *t = acc_decl_type(lv);
    bool nanf = tracks_nan(lv);
    if (!arr) {
        line(g, "%s %sacc%d = %s;", t, pre, s, init);
        if (nanf) line(g, "int %snan%d = 0;", pre, s);
        if (arg_kind(lv)) line(g, "int64_t %sarg%d = 0;", pre, s);
        return;
    }
    line(g, "%s acc%d[%d];", t, s, CB);
    if (nanf) line(g, "int nan%d[%d];", s, CB);
    if (arg_kind(lv)) line(g, "int64_t arg%d[%d];", s, CB);
    line(g, "for (int64_t c = 0; c < cn; c++) {");
    line(g, "    acc%d[c] = %s;", s, init);
    if (nanf) line(g, "    nan%d[c] = 0;", s);
    if (arg_kind(lv)) line(g, "    arg%d[c] = 0;", s);
    line(g, "}");
}

/* acc op= v; ix is the reduced position for argmax */
static void update_acc(cg *g, const emc_lval *lv, const char *acc, const char *nan, const char *arg, const char *v,
                       const char *ix) {
    bool f = float_acc(lv->acc_ty);
    switch (lv->rk) {
    case EMC_R_SUM:
        if (f) line(g, "%s += %s;", acc, v);
        else line(g, "%s += (uint64_t)%s;", acc, v);
        break;
    case EMC_R_PROD:
        if (f) line(g, "%s *= %s;", acc, v);
        else line(g, "%s *= (uint64_t)%s;", acc, v);
        break;
    case EMC_R_MAX: case EMC_R_MIN:
        line(g, "%s = %s %s %s ? %s : %s;", acc, v, lv->rk == EMC_R_MAX ? ">" : "<", acc, v, acc);
        if (f) line(g, "%s |= %s != %s;", nan, v, v);
        break;
    default: {
        const char *op = lv->rk == EMC_R_ARGMAX ? ">" : "<";
        if (f) line(g, "{ int better = (%s %s %s) || (%s != %s && %s == %s);", v, op, acc, v, v, acc, acc);
        else line(g, "{ int better = %s %s %s;", v, op, acc);
        line(g, "  %s = better ? %s : %s; %s = better ? %s : %s; }", acc, v, acc, arg, ix, arg);
    }
    }
}

/* the simd reduction clause for the accumulators of a phase (row layout) */
static void simd_clause(char *b, size_t n, const emc_kernel *k, const emc_ctx *c, int phase, bool *has_arg) {
    int w = snprintf(b, n, "#pragma omp simd");
    *has_arg = false;
    for (int i = 0; i < k->n_m; i++) {
        const emc_member *m = &k->m[i];
        if (m->role != EMC_M_REDUCE || m->phase != phase) continue;
        const emc_lval *lv = &c->lv[m->value];
        if (arg_kind(lv)) *has_arg = true;
        const char *op = lv->rk == EMC_R_SUM ? "+" : lv->rk == EMC_R_PROD ? "*" : lv->rk == EMC_R_MAX ? "max" : "min";
        w += snprintf(b + w, n - (size_t)w, " reduction(%s : acc%d)", op, m->slot);
        if (tracks_nan(lv))
            w += snprintf(b + w, n - (size_t)w, " reduction(| : nan%d)", m->slot);
    }
}

/* the C type of red<s> (and red<s+1>) for member m */
static const char *red_type(const cg *g, const emc_member *m) {
    const emc_lval *lv = &g->c->lv[m->value];
    if (arg_kind(lv) && m->value2 < 0) return "int64_t";
    return ctype_name(emc_ctype(g->c->g->vals[m->value2 >= 0 ? m->value2 : m->value].meta.dtype));
}

/* red<s> (and red<s+1> for indices) from the accumulators: declared here in the row layout
   (idx ""), assigned per column in the column layout (idx "[c]", arrays from decl_red) */
static void finish_acc(cg *g, const emc_member *m, const char *idx) {
    const emc_lval *lv = &g->c->lv[m->value];
    const emo_meta *vm = &g->c->g->vals[m->value2 >= 0 ? m->value2 : m->value].meta;
    int s = m->slot;
    char e[256], decl[64] = "", decl2[64] = "";
    if (!idx[0]) {
        snprintf(decl, sizeof decl, "%s ", red_type(g, m));
        snprintf(decl2, sizeof decl2, "int64_t ");
    }
    if (tracks_nan(lv))
        snprintf(e, sizeof e, "nan%d%s ? %s : acc%d%s", s, idx, lv->acc_ty == EMC_F32 ? "NAN" : "(double)NAN", s, idx);
    else if (lv->acc_ty == EMC_I64 && (lv->rk == EMC_R_SUM || lv->rk == EMC_R_PROD))
        snprintf(e, sizeof e, "(int64_t)acc%d%s", s, idx);
    else
        snprintf(e, sizeof e, "acc%d%s", s, idx);
    char out[400], pe[300];
    snprintf(pe, sizeof pe, strchr(e, '?') ? "(%s)" : "%s", e);
    if (arg_kind(lv)) {
        if (m->value2 >= 0) { /* values, then indices */
            conv_text(out, sizeof out, lv->acc_ty, vm->dtype, pe);
            line(g, "%sred%d%s = %s;", decl, s, idx, out);
            line(g, "%sred%d%s = arg%d%s;", decl2, s + 1, idx, s, idx);
        } else {
            line(g, "%sred%d%s = arg%d%s;", decl, s, idx, s, idx);
        }
        return;
    }
    conv_text(out, sizeof out, lv->acc_ty, vm->dtype, pe);
    if (!strcmp(out, pe)) snprintf(out, sizeof out, "%s", e); /* no conversion: no parentheses */
    line(g, "%sred%d%s = %s;", decl, s, idx, out);
}

/* after a parallel region that left one partial per thread in part<slot>[q] (and pnan<slot>[q]):
   fold them in thread order, q = 0 .. nused-1, so the result does not depend on timing */
static void combine_partials(cg *g, const emc_member *m, const emc_lval *lv) {
    decl_acc(g, lv, m->slot, false, "");
    line(g, "for (int q = 0; q < nused; q++) {");
    g->ind++;
    char a[40], n[40], v[40];
    snprintf(a, sizeof a, "acc%d", m->slot);
    snprintf(n, sizeof n, "nan%d", m->slot);
    snprintf(v, sizeof v, "part%d[q]", m->slot);
    update_acc(g, lv, a, n, "", v, "0");
    if (tracks_nan(lv)) line(g, "%s |= pnan%d[q];", n, m->slot);
    g->ind--;
    line(g, "}");
    finish_acc(g, m, "");
}

/* the arrays red<s>[CB] of the column layout */
static void decl_red(cg *g, const emc_member *m) {
    line(g, "%s red%d[%d];", red_type(g, m), m->slot, CB);
    if (m->value2 >= 0) line(g, "int64_t red%d[%d];", m->slot + 1, CB);
}

/* stores of a reduction's results at its store index */
static void store_reduction(cg *g, const emc_member *m, const char *idx) {
    const emc_ctx *c = g->c;
    char r[40];
    if (m->value2 >= 0) {
        if (c->mat[m->value2]) {
            snprintf(r, sizeof r, "red%d%s", m->slot, idx);
            emit_store(g, m->value2, m->store_ix, r);
        }
        if (c->mat[m->value]) {
            snprintf(r, sizeof r, "red%d%s", m->slot + 1, idx);
            emit_store(g, m->value, m->store_ix, r);
        }
        return;
    }
    if (c->mat[m->value]) {
        snprintf(r, sizeof r, "red%d%s", m->slot, idx);
        emit_store(g, m->value, m->store_ix, r);
    }
}

/* the body of one phase: reductions updated, stores written (inside the innermost loop) */
static void phase_body(cg *g, int phase, const char *idx, const char *pos) {
    const emc_kernel *k = g->k;
    for (int i = 0; i < k->n_m; i++) {
        const emc_member *m = &k->m[i];
        if (m->phase != phase || (m->role != EMC_M_REDUCE && m->role != EMC_M_STORE)) continue;
        if (!walk(g, &m->expr, 1)) return;
        if (m->role == EMC_M_STORE) {
            emit_store(g, m->value, m->store_ix, H(g->h[m->expr]));
            continue;
        }
        const emc_lval *lv = &g->c->lv[m->value];
        char a[40], n[40], ar[40];
        snprintf(a, sizeof a, "acc%d%s", m->slot, idx);
        snprintf(n, sizeof n, "nan%d%s", m->slot, idx);
        snprintf(ar, sizeof ar, "arg%d%s", m->slot, idx);
        update_acc(g, lv, a, n, ar, H(g->h[m->expr]), pos);
    }
}

/* the loops over the reduced dims rd (nested, the last one simd) around phase_body */
static void reduced_loops(cg *g, const int *rd, int nr, int phase, bool column, const int *cd) {
    const emc_kernel *k = g->k;
    char clause[1024];
    bool has_arg = false;
    simd_clause(clause, sizeof clause, k, g->c, phase, &has_arg);
    int mark = scope_mark(g);
    for (int j = 0; j < nr; j++) {
        if (j == nr - 1 && !column && !has_arg) line(g, "%s", clause);
        line(g, "for (int64_t i%d = 0; i%d < %lld; i%d++) {", rd[j], rd[j], (long long)k->shape[rd[j]], rd[j]);
        g->ind++;
    }
    if (nr == 0) {
        line(g, "{");
        g->ind++;
    }
    char pos[32];
    snprintf(pos, sizeof pos, nr > 0 ? "i%d" : "0", nr > 0 ? rd[nr - 1] : 0);
    for (int i = 0; i < g->n_rc; i++) { /* kept by an earlier loop: read it back */
        if (g->rc_phase[i] >= phase) continue;
        char b[48];
        snprintf(b, sizeof b, "rc%d[%s]", g->rc_node[i], pos);
        g->h[g->rc_node[i]] = new_handle(g, g->rc_node[i], b);
    }
    if (column) {
        line(g, "#pragma omp simd");
        line(g, "for (int64_t c = 0; c < cn; c++) {");
        g->ind++;
        line(g, "int64_t i%d = c0 + c;", *cd);
        phase_body(g, phase, "[c]", pos);
        g->ind--;
        line(g, "}");
    } else {
        phase_body(g, phase, "", pos);
        for (int i = 0; i < g->n_rc; i++) /* computed here for the first time: keep it */
            if (g->rc_phase[i] == phase && g->h[g->rc_node[i]] >= 0)
                line(g, "rc%d[%s] = %s;", g->rc_node[i], pos, H(g->h[g->rc_node[i]]));
    }
    scope_pop(g, mark);
    for (int j = 0; j < (nr > 0 ? nr : 1); j++) {
        g->ind--;
        line(g, "}");
    }
}

static bool has_role(const emc_kernel *k, emc_role r) {
    for (int i = 0; i < k->n_m; i++)
        if (k->m[i].role == r) return true;
    return false;
}

/* after the loops: reductions stored, epilogue values, contributions to cross-row sums */
static void epilogue_body(cg *g, const char *idx) {
    const emc_kernel *k = g->k;
    for (int i = 0; i < k->n_m; i++) {
        const emc_member *m = &k->m[i];
        if (m->role == EMC_M_REDUCE && m->store) store_reduction(g, m, idx);
    }
    /* an in-place output over an input read here (memplan.c): every load before the first store */
    for (int i = 0; g->aliased && i < k->n_m; i++) {
        const emc_member *m = &k->m[i];
        if ((m->role == EMC_M_EPILOGUE && m->store) || m->role == EMC_M_OUTER) {
            if (!walk(g, &m->expr, 1)) return;
            if (m->store && !walk(g, &m->store_ix, 1)) return;
        }
    }
    for (int i = 0; i < k->n_m; i++) {
        const emc_member *m = &k->m[i];
        if (m->role == EMC_M_EPILOGUE && m->store) {
            if (!walk(g, &m->expr, 1)) return;
            emit_store(g, m->value, m->store_ix, H(g->h[m->expr]));
        } else if (m->role == EMC_M_OUTER) {
            if (!walk(g, &m->expr, 1)) return;
            char a[40], n[40];
            snprintf(a, sizeof a, "oacc%d", m->slot);
            snprintf(n, sizeof n, "onan%d", m->slot);
            update_acc(g, &g->c->lv[m->value], a, n, "", H(g->h[m->expr]), "0");
        }
    }
}

/* The row cache. In the row layout every loop over a row recomputes what it needs (a softmax's
   exp in its sum and in its store), which is right for cheap values (reading the input again
   costs what reading a stored copy would) but not for expensive ones. A value that costs at
   least CACHE_COST, depends on the row position, and is needed by a loop after the first one
   that computes it is written to a stack array of the row (L1-resident) by that first loop and
   read back by the later ones. Chosen top-down, so a kept value's parts are not kept too. */
static void cache_pick(cg *g, int e, int phase, const uint32_t *pm, unsigned char *seen) {
    if (e < 0 || seen[e] || !is_inner(g, e)) return;
    seen[e] = 1;
    const emc_x *x = &g->p->x[e];
    bool value = x->kind == EMX_UN || x->kind == EMX_BIN || x->kind == EMX_WHERE || x->kind == EMX_CAST ||
                 x->kind == EMX_RAND;
    uint32_t earlier = pm[e] & ((1u << phase) - 1);
    if (value && earlier && emc_cost(g->p, e) >= CACHE_COST) {
        for (int i = 0; i < g->n_rc; i++)
            if (g->rc_node[i] == e) return;
        if (g->n_rc < 16) {
            g->rc_node[g->n_rc] = e;
            g->rc_phase[g->n_rc++] = __builtin_ctz(earlier);
        }
        return;
    }
    for (int k = 0; k < x->n; k++) cache_pick(g, g->p->argv[x->a + k], phase, pm, seen);
}

static void phase_marks(cg *g, int e, uint32_t bit, uint32_t *pm) {
    if (e < 0 || (pm[e] & bit) || !is_inner(g, e)) return;
    pm[e] |= bit;
    const emc_x *x = &g->p->x[e];
    for (int k = 0; k < x->n; k++) phase_marks(g, g->p->argv[x->a + k], bit, pm);
}

static void plan_row_cache(cg *g, const int *rd, int nr) {
    const emc_kernel *k = g->k;
    g->n_rc = 0;
    if (k->column || nr != 1 || k->shape[rd[0]] > ROW_CACHE || k->n_phases < 2 || k->n_phases > 32) return;
    uint32_t *pm = calloc((size_t)g->p->nx + 1, sizeof *pm);
    unsigned char *seen = malloc((size_t)g->p->nx + 1);
    if (!pm || !seen) {
        free(pm);
        free(seen);
        return;
    }
    for (int i = 0; i < k->n_m; i++) {
        const emc_member *m = &k->m[i];
        if (m->role == EMC_M_REDUCE || m->role == EMC_M_STORE) phase_marks(g, m->expr, 1u << m->phase, pm);
    }
    for (int ph = 1; ph < k->n_phases; ph++) {
        memset(seen, 0, (size_t)g->p->nx + 1);
        for (int i = 0; i < k->n_m; i++) {
            const emc_member *m = &k->m[i];
            if (m->phase == ph && (m->role == EMC_M_REDUCE || m->role == EMC_M_STORE)) cache_pick(g, m->expr, ph, pm, seen);
        }
    }
    free(pm);
    free(seen);
    for (int i = 0; i < g->n_rc; i++)
        line(g, "%s rc%d[%lld]; /* kept from loop %d for the later loops of the row */",
             ctype_name((emc_ty)g->p->x[g->rc_node[i]].ty), g->rc_node[i], (long long)k->shape[rd[0]], g->rc_phase[i]);
}

/* A reduction of everything (one row) in one loop: threads take pieces of the row and their
   partial results are combined in thread order (so results do not change from run to run). */
static bool split_row_ok(const emc_kernel *k, const emc_ctx *c, int nk, int nr) {
    if (nk != 0 || nr != 1 || k->n_phases != 1 || k->shape[0] < 4 * PAR_WORK) return false;
    for (int i = 0; i < k->n_m; i++) {
        const emc_member *m = &k->m[i];
        if (m->role == EMC_M_STORE || m->role == EMC_M_OUTER) return false;
        if (m->role == EMC_M_REDUCE && arg_kind(&c->lv[m->value])) return false;
    }
    return true;
}

static void emit_split_row(cg *g) {
    const emc_kernel *k = g->k;
    const emc_ctx *c = g->c;
    bool vars[EM_MAX_DIMS] = {true}; /* the one (merged) dim is reduced */
    line(g, "int nused = 1;");
    for (int i = 0; i < k->n_m; i++) {
        const emc_member *m = &k->m[i];
        if (m->role != EMC_M_REDUCE) continue;
        const emc_lval *lv = &c->lv[m->value];
        line(g, "%s part%d[%d];", acc_decl_type(lv), m->slot, MAXT);
        if (tracks_nan(lv)) line(g, "int pnan%d[%d];", m->slot, MAXT);
    }
    line(g, "#pragma omp parallel num_threads(rt->nthreads < %d ? rt->nthreads : %d)", MAXT, MAXT);
    line(g, "{");
    g->ind++;
    line(g, "int nth = omp_get_num_threads(), me = omp_get_thread_num();");
    line(g, "int64_t lo = %lld * me / nth, hi = %lld * (me + 1) / nth;", (long long)k->shape[0], (long long)k->shape[0]);
    for (int i = 0; i < k->n_m; i++)
        if (k->m[i].role == EMC_M_REDUCE) decl_acc(g, &c->lv[k->m[i].value], k->m[i].slot, false, "");
    reset_inner(g, vars);
    char clause[1024];
    bool has_arg;
    simd_clause(clause, sizeof clause, k, c, 0, &has_arg);
    line(g, "%s", clause);
    line(g, "for (int64_t i0 = lo; i0 < hi; i0++) {");
    g->ind++;
    int mark = scope_mark(g);
    phase_body(g, 0, "", "i0");
    scope_pop(g, mark);
    g->ind--;
    line(g, "}");
    for (int i = 0; i < k->n_m; i++) {
        const emc_member *m = &k->m[i];
        if (m->role != EMC_M_REDUCE) continue;
        const emc_lval *lv = &c->lv[m->value];
        line(g, "part%d[me] = acc%d;", m->slot, m->slot);
        if (tracks_nan(lv)) line(g, "pnan%d[me] = nan%d;", m->slot, m->slot);
    }
    line(g, "if (me == 0) nused = nth;");
    g->ind--;
    line(g, "}");
    for (int i = 0; i < k->n_m; i++) {
        const emc_member *m = &k->m[i];
        if (m->role != EMC_M_REDUCE) continue;
        const emc_lval *lv = &c->lv[m->value];
        combine_partials(g, m, lv);
    }
    bool none[EM_MAX_DIMS] = {0};
    reset_inner(g, none);
    epilogue_body(g, "");
    for (int i = 0; i < k->n_m; i++) {
        const emc_member *m = &k->m[i];
        if (m->role != EMC_M_FINAL || !m->store || !walk(g, &m->expr, 1)) continue;
        emit_store(g, m->value, m->store_ix, H(g->h[m->expr]));
    }
}

static void emit_reduce(cg *g) {
    const emc_kernel *k = g->k;
    const emc_ctx *c = g->c;
    int kd[EM_MAX_DIMS], rd[EM_MAX_DIMS], nk = 0, nr = 0;
    for (int d = 0; d < k->nd; d++) {
        if (k->mask[d]) rd[nr++] = d;
        else kd[nk++] = d;
    }
    if (split_row_ok(k, c, nk, nr)) {
        emit_split_row(g);
        return;
    }
    bool column = k->column && nk > 0;
    int cd = column ? kd[nk - 1] : -1;
    int nko = column ? nk - 1 : nk;
    int64_t O = prod_dims(k, kd, nko), NC = column ? k->shape[cd] : 1, nch = column ? (NC + CB - 1) / CB : 1;
    int64_t work = emt_numel_shape(k->shape, k->nd);
    bool outer = has_role(k, EMC_M_OUTER);
    bool par = work >= PAR_WORK && O * nch > 1;
    /* cross-row accumulators: per-thread partials */
    if (outer) {
        line(g, "int nused = 1;");
        for (int i = 0; i < k->n_m; i++) {
            const emc_member *m = &k->m[i];
            if (m->role != EMC_M_OUTER) continue;
            const emc_lval *lv = &c->lv[m->value];
            line(g, "%s part%d[%d];", acc_decl_type(lv), m->slot, MAXT);
            if (tracks_nan(lv)) line(g, "int pnan%d[%d];", m->slot, MAXT);
        }
        if (par) line(g, "#pragma omp parallel num_threads(rt->nthreads < %d ? rt->nthreads : %d)", MAXT, MAXT);
        line(g, "{");
        g->ind++;
        for (int i = 0; i < k->n_m; i++)
            if (k->m[i].role == EMC_M_OUTER) decl_acc(g, &c->lv[k->m[i].value], k->m[i].slot, false, "o");
        if (par) line(g, "#pragma omp for schedule(static)");
    } else if (par) {
        line(g, "#pragma omp parallel for schedule(static) num_threads(rt->nthreads)");
    }
    line(g, "for (int64_t t = 0; t < %lld; t++) {", (long long)(O * nch));
    g->ind++;
    int mark = scope_mark(g);
    if (column) {
        line(g, "int64_t o = t / %lld, c0 = (t %% %lld) * %d, cn = %lld - c0 < %d ? %lld - c0 : %d;", (long long)nch,
             (long long)nch, CB, (long long)NC, CB, (long long)NC, CB);
        unravel(g, kd, nko, "o");
    } else {
        unravel(g, kd, nko, "t");
    }
    bool vars[EM_MAX_DIMS] = {0};
    for (int j = 0; j < nr; j++) vars[rd[j]] = true;
    if (column) vars[cd] = true;
    reset_inner(g, vars);
    plan_row_cache(g, rd, nr);
    for (int ph = 0; ph < k->n_phases; ph++) {
        line(g, "/* loop %d */", ph);
        for (int i = 0; i < k->n_m; i++) {
            const emc_member *m = &k->m[i];
            if (m->role != EMC_M_REDUCE || m->phase != ph) continue;
            decl_acc(g, &c->lv[m->value], m->slot, column, "");
        }
        reset_inner(g, vars);
        for (int i = 0; i < k->n_m; i++)
            if (k->m[i].phase == ph && (k->m[i].role == EMC_M_REDUCE || k->m[i].role == EMC_M_STORE)) {
                hoist(g, k->m[i].expr);
                hoist(g, k->m[i].store_ix);
            }
        reduced_loops(g, rd, nr, ph, column, &cd);
        reset_inner(g, vars);
        for (int i = 0; i < k->n_m; i++) {
            const emc_member *m = &k->m[i];
            if (m->role != EMC_M_REDUCE || m->phase != ph) continue;
            if (column) {
                decl_red(g, m);
                line(g, "for (int64_t c = 0; c < cn; c++) {");
                g->ind++;
                finish_acc(g, m, "[c]");
                g->ind--;
                line(g, "}");
            } else {
                finish_acc(g, m, "");
            }
        }
    }
    bool epi = false;
    for (int i = 0; i < k->n_m; i++)
        epi |= (k->m[i].role == EMC_M_REDUCE && k->m[i].store) || k->m[i].role == EMC_M_EPILOGUE ||
               k->m[i].role == EMC_M_OUTER;
    if (epi) {
        line(g, "/* per row */");
        if (column) {
            bool cv[EM_MAX_DIMS] = {0};
            cv[cd] = true;
            reset_inner(g, cv);
            line(g, "for (int64_t c = 0; c < cn; c++) {");
            g->ind++;
            line(g, "int64_t i%d = c0 + c;", cd);
            int m2 = scope_mark(g);
            epilogue_body(g, "[c]");
            scope_pop(g, m2);
            g->ind--;
            line(g, "}");
        } else {
            epilogue_body(g, "");
        }
    }
    scope_pop(g, mark);
    g->ind--;
    line(g, "}");
    if (!outer) return;
    for (int i = 0; i < k->n_m; i++) {
        const emc_member *m = &k->m[i];
        if (m->role != EMC_M_OUTER) continue;
        const emc_lval *lv = &c->lv[m->value];
        line(g, "part%d[omp_get_thread_num()] = oacc%d;", m->slot, m->slot);
        if (tracks_nan(lv))
            line(g, "pnan%d[omp_get_thread_num()] = onan%d;", m->slot, m->slot);
    }
    line(g, "if (omp_get_thread_num() == 0) nused = omp_get_num_threads();");
    g->ind--;
    line(g, "}");
    /* combine the partials in thread order, then the one-element results */
    for (int i = 0; i < k->n_m; i++) {
        const emc_member *m = &k->m[i];
        if (m->role != EMC_M_OUTER) continue;
        const emc_lval *lv = &c->lv[m->value];
        combine_partials(g, m, lv);
        if (m->store) store_reduction(g, m, "");
    }
    reset_inner(g, vars);
    for (int i = 0; i < k->n_m; i++) {
        const emc_member *m = &k->m[i];
        if (m->role != EMC_M_FINAL || !m->store) continue;
        if (!walk(g, &m->expr, 1)) return;
        emit_store(g, m->value, m->store_ix, H(g->h[m->expr]));
    }
}

/* ---- scans (cumsum) ----------------------------------------------------------------------------------- */
static void emit_scan(cg *g) {
    const emc_kernel *k = g->k;
    const emc_member *m = &k->m[0];
    const emc_lval *lv = &g->c->lv[m->value];
    int kd[EM_MAX_DIMS], nk = 0, sd = -1;
    for (int d = 0; d < k->nd; d++) {
        if (k->mask[d]) sd = d;
        else kd[nk++] = d;
    }
    int64_t O = prod_dims(k, kd, nk), work = emt_numel_shape(k->shape, k->nd);
    if (work >= PAR_WORK && O > 1) line(g, "#pragma omp parallel for schedule(static) num_threads(rt->nthreads)");
    line(g, "for (int64_t t = 0; t < %lld; t++) {", (long long)O);
    g->ind++;
    int mark = scope_mark(g);
    unravel(g, kd, nk, "t");
    const char *t = acc_decl_type(lv);
    line(g, "%s acc = 0;", t);
    line(g, "for (int64_t i%d = 0; i%d < %lld; i%d++) {", sd, sd, (long long)k->shape[sd], sd);
    g->ind++;
    if (walk(g, &m->expr, 1)) {
        update_acc(g, lv, "acc", "", "", H(g->h[m->expr]), "0");
        char e[200], s[64];
        snprintf(s, sizeof s, lv->acc_ty == EMC_I64 ? "(int64_t)acc" : "acc");
        conv_text(e, sizeof e, lv->acc_ty, g->c->g->vals[m->value].meta.dtype, s);
        emit_store(g, m->value, m->store_ix, e);
    }
    g->ind--;
    line(g, "}");
    scope_pop(g, mark);
    g->ind--;
    line(g, "}");
}

/* ---- matmul with its epilogue ------------------------------------------------------------------------- */
static void view_base(char *b, size_t n, const emc_ctx *c, const emc_view *v) {
    char nm[32];
    if (v->off) snprintf(b, n, "%s + %lld", bname(nm, sizeof nm, c, v->value), (long long)v->off);
    else snprintf(b, n, "%s", bname(nm, sizeof nm, c, v->value));
}

/* the epilogue members over rows [r0, r1) and columns [c0, c1) of batch item b's output (dm, dn:
   the kernel dims of M and N, -1 when a 1-d operand dropped them) */
static void matmul_epilogue(cg *g, int dm, int dn, bool fold, const char *r0, const char *r1, const char *c0,
                            const char *c1) {
    const emc_kernel *k = g->k;
    line(g, "/* epilogue on this slice, while it is in cache */");
    int mark = scope_mark(g);
    bool vars[EM_MAX_DIMS] = {0};
    if (dn >= 0) vars[dn] = true;
    reset_inner(g, vars);
    line(g, "for (int64_t ii = %s; ii < %s; ii++) {", r0, r1);
    g->ind++;
    if (fold) { /* rows span the batch dims and M (dims 0..dm) */
        int rd[EM_MAX_DIMS];
        for (int d = 0; d <= dm; d++) rd[d] = d;
        unravel(g, rd, dm + 1, "ii");
    } else if (dm >= 0) {
        line(g, "int64_t i%d = ii;", dm);
    }
    for (int i = 0; i < k->n_m; i++)
        if (k->m[i].role == EMC_M_STORE && k->m[i].store) {
            hoist(g, k->m[i].expr);
            hoist(g, k->m[i].store_ix);
        }
    line(g, "#pragma omp simd");
    line(g, "for (int64_t jj = %s; jj < %s; jj++) {", c0, c1);
    g->ind++;
    if (dn >= 0) line(g, "int64_t i%d = jj;", dn);
    int m2 = scope_mark(g);
    for (int i = 0; i < k->n_m; i++) {
        const emc_member *m = &k->m[i];
        if (m->role != EMC_M_STORE || !m->store || !walk(g, &m->expr, 1)) continue;
        emit_store(g, m->value, m->store_ix, H(g->h[m->expr]));
    }
    scope_pop(g, m2);
    g->ind--;
    line(g, "}");
    g->ind--;
    line(g, "}");
    scope_pop(g, mark);
}

/* dims 0..n-1 of (shape, st) as one run of rows (size-1 dims skipped): their common row stride */
static bool row_chain(const int64_t *shape, const int64_t *st, int n, int64_t *rs) {
    int64_t sz[EM_MAX_DIMS], s2[EM_MAX_DIMS];
    int m = 0;
    for (int d = 0; d < n; d++)
        if (shape[d] != 1) sz[m] = shape[d], s2[m++] = st[d];
    if (m == 0 || s2[m - 1] == 0) return false;
    for (int i = 0; i + 1 < m; i++)
        if (s2[i] != sz[i + 1] * s2[i + 1]) return false;
    *rs = s2[m - 1];
    return true;
}

/* one GEMM call on (m, n) of the product: rt->sgemm / rt->dgemm (gt < 0), else rt->gemm with element
   type gt (0 f32, 1 bf16) for A, B and C and bf16 products (mode 1). Every thread or batch item calls
   it with parallel 0, so the bits are eager's (gemm.h: the same whatever the slicing). */
static void gemm_line(cg *g, const char *fn, int gt, const char *m, const char *n, const char *a, int64_t rsa,
                      int64_t csa, const char *b, int64_t rsb, int64_t csb, const char *cm, int64_t rsc, int64_t csc) {
    if (gt < 0)
        line(g, "%s(%s, %s, K, %s, %lld, %lld, %s, %lld, %lld, %s, %lld, %lld, 0, 0);", fn, m, n, a, (long long)rsa,
             (long long)csa, b, (long long)rsb, (long long)csb, cm, (long long)rsc, (long long)csc);
    else
        line(g, "rt->gemm(%s, %s, K, %s, %d, %lld, %lld, %s, %d, %lld, %lld, %s, %d, %lld, %lld, 0, 1, 0);", m, n, a, gt,
             (long long)rsa, (long long)csa, b, gt, (long long)rsb, (long long)csb, cm, gt, (long long)rsc,
             (long long)csc);
}

/* C (batch..., M, N) = A @ B through rt->sgemm / rt->dgemm, or rt->gemm for bf16 products (an f32
   matmul whose node records bf16 precision in attrs j[0], or bf16 tensors), then the epilogue. C is k->C: the
   product's own buffer, or (schedule.c) the buffer of the reshaped/permuted value it feeds, at
   strides. A batch over a shared B whose rows stay one run (a linear over (B, T, C)) is one product
   of batch * M rows. One big product: threads split the wider output dim like emk_sgemm and finish
   their slice. Many small products (attention heads): threads take whole batch items. */
static void emit_matmul(cg *g) {
    const emc_kernel *k = g->k;
    const emc_ctx *c = g->c;
    const emc_view *A = &k->A, *B = &k->B;
    em_dtype dt = c->g->vals[k->mm_value].meta.dtype;
    bool dbl = dt == EM_F64;
    const emc_lval *mlv = &c->lv[k->mm_value];
    bool bf16_prec = dt == EM_F32 && mlv->node >= 0 && c->g->nodes[mlv->node].attrs.j[0] == EM_BF16;
    int gt = dt == EM_BF16 ? 1 : bf16_prec ? 0 : -1; /* rt->gemm's element type, -1: sgemm / dgemm */
    int nd = k->nd;
    bool has_m = A->nd >= 2, has_n = B->nd >= 2;
    int nb = nd - has_m - has_n, dm = has_m ? nb : -1, dn = has_n ? nd - 1 : -1;
    int64_t M = has_m ? A->shape[A->nd - 2] : 1, K = A->shape[A->nd - 1], N = has_n ? B->shape[B->nd - 1] : 1;
    int64_t rsa = has_m ? A->st[A->nd - 2] : 0, csa = A->st[A->nd - 1];
    int64_t rsb = has_n ? B->st[B->nd - 2] : B->st[0], csb = has_n ? B->st[B->nd - 1] : 0;
    int64_t count = 1;
    for (int d = 0; d < nb; d++) count *= k->shape[d];
    /* the product's place: k->C (its own buffer, or the buffer of the reshaped heads it feeds) */
    const emc_view *Cv = &k->C;
    int64_t rsc = has_m ? Cv->st[dm] : 0, csc = has_n ? Cv->st[dn] : 1;
    char abase[64], bbase[64], cbase[64];
    view_base(abase, sizeof abase, c, A);
    view_base(bbase, sizeof bbase, c, B);
    view_base(cbase, sizeof cbase, c, Cv);
    const char *fn = dbl ? "rt->dgemm" : "rt->sgemm", *T = dbl ? "double" : dt == EM_BF16 ? "uint16_t" : "float";
    int64_t nr = dbl ? 32 : 48, mr = dbl ? 4 : 8;
    double work = (double)M * (double)N * (double)K; /* multiply-adds per item */
    bool epi = false;
    for (int i = 0; i < k->n_m; i++) epi |= k->m[i].role == EMC_M_STORE && k->m[i].store;
    /* B shared by every batch item and A's batch dims one stride chain with its rows (x @ w^T of
       a linear over (B, T, C)): one GEMM over count * M rows, so B is packed once and there is one
       parallel region, as eager's linear does. gemm.h promises the same bits however M is sliced. */
    bool fold = false;
    if (count >= 2 && has_m && A->nd - 2 == nb) {
        bool shared = true;
        for (int d = 0; d < B->nd - 2; d++) shared &= B->shape[d] == 1 || B->st[d] == 0;
        for (int d = 0; d < nb; d++) shared &= A->shape[d] == k->shape[d]; /* A not broadcast */
        int64_t ra, rc;
        if (shared && row_chain(A->shape, A->st, nb + 1, &ra) && row_chain(Cv->shape, Cv->st, nb + 1, &rc)) {
            fold = true;
            rsa = ra;
            rsc = rc;
            M *= count;
            count = 1;
            work = (double)M * (double)N * (double)K;
        }
    }
    bool by_item = count >= 2 && 2 * work < 4e6;
    line(g, "const int64_t M = %lld, N = %lld, K = %lld;%s", (long long)M, (long long)N, (long long)K,
         fold ? " /* the batch dims folded into M */" : "");
    if (by_item && (double)count * work >= (double)(1 << 18))
        line(g, "#pragma omp parallel for schedule(dynamic, 1) num_threads(rt->nthreads)");
    line(g, "for (int64_t b = 0; b < %lld; b++) {", (long long)count);
    g->ind++;
    if (nb > 0 && !fold) {
        int bd[EM_MAX_DIMS];
        for (int d = 0; d < nb; d++) bd[d] = d;
        unravel(g, bd, nb, "b");
    }
    char offa[512] = "", offb[512] = "", offc[512] = "";
    int na = 0, nbb = 0, ncc = 0;
    for (int d = 0; d < nb && !fold; d++) { /* batch dims broadcast: size-1 or missing dims stay put */
        int ka = d - (nb - (A->nd - 2)), kb = d - (nb - (B->nd - 2));
        if (A->nd > 2 && ka >= 0 && A->shape[ka] != 1 && A->st[ka] != 0)
            na += snprintf(offa + na, sizeof offa - (size_t)na, " + i%d * %lld", d, (long long)A->st[ka]);
        if (B->nd > 2 && kb >= 0 && B->shape[kb] != 1 && B->st[kb] != 0)
            nbb += snprintf(offb + nbb, sizeof offb - (size_t)nbb, " + i%d * %lld", d, (long long)B->st[kb]);
        if (k->shape[d] != 1)
            ncc += snprintf(offc + ncc, sizeof offc - (size_t)ncc, " + i%d * %lld", d, (long long)Cv->st[d]);
    }
    line(g, "const %s *a = %s%s, *bm = %s%s;", T, abase, offa, bbase, offb);
    line(g, "%s *cm = %s%s;", T, cbase, offc);
    if (by_item) {
        gemm_line(g, fn, gt, "M", "N", "a", rsa, csa, "bm", rsb, csb, "cm", rsc, csc);
        if (epi) matmul_epilogue(g, dm, dn, fold, "0", "M", "0", "N");
    } else {
        bool split_n = N >= M;
        char csc_txt[32];
        snprintf(csc_txt, sizeof csc_txt, " * %lld", (long long)csc);
        if (work >= (double)(1 << 18)) {
            line(g, "int nt = rt->nthreads;");
            line(g, "if ((double)M * N * K < (double)nt * %d) nt = (int)((double)M * N * K / %d);", 1 << 18, 1 << 18);
            line(g, "#pragma omp parallel num_threads(nt > 0 ? nt : 1)");
        }
        line(g, "{");
        g->ind++;
        if (work >= (double)(1 << 18)) {
            line(g, "int64_t lo, hi;");
            line(g, "split_range(%s, %lld, omp_get_num_threads(), omp_get_thread_num(), &lo, &hi);", split_n ? "N" : "M",
                 (long long)(split_n ? nr : mr));
        } else {
            line(g, "int64_t lo = 0, hi = %s;", split_n ? "N" : "M");
        }
        line(g, "if (hi > lo) {");
        g->ind++;
        char bo[64], co[64];
        if (split_n) {
            snprintf(bo, sizeof bo, "bm + lo * %lld", (long long)csb);
            snprintf(co, sizeof co, "cm + lo%s", csc == 1 ? "" : csc_txt);
            gemm_line(g, fn, gt, "M", "hi - lo", "a", rsa, csa, bo, rsb, csb, co, rsc, csc);
        } else {
            snprintf(bo, sizeof bo, "a + lo * %lld", (long long)rsa);
            snprintf(co, sizeof co, "cm + lo * %lld", (long long)rsc);
            gemm_line(g, fn, gt, "hi - lo", "N", bo, rsa, csa, "bm", rsb, csb, co, rsc, csc);
        }
        if (epi) {
            if (split_n) matmul_epilogue(g, dm, dn, fold, "0", "M", "lo", "hi");
            else matmul_epilogue(g, dm, dn, fold, "lo", "hi", "0", "N");
        }
        g->ind--;
        line(g, "}");
        g->ind--;
        line(g, "}");
    }
    g->ind--;
    line(g, "}");
}

/* ---- kernels and the run function -------------------------------------------------------------------- */
typedef struct {
    int v;
    bool stored;
} param;

static void params_add(param *ps, int *n, int v, bool stored) {
    for (int i = 0; i < *n; i++)
        if (ps[i].v == v) {
            ps[i].stored |= stored;
            return;
        }
    ps[*n].v = v;
    ps[*n].stored = stored;
    (*n)++;
}

static void params_loads(const emc_pool *p, int e, param *ps, int *n, unsigned char *seen, int max) {
    if (e < 0 || seen[e] || *n >= max) return;
    seen[e] = 1;
    const emc_x *x = &p->x[e];
    if (x->kind == EMX_LOAD) params_add(ps, n, (int)x->i, false);
    for (int k = 0; k < x->n; k++) params_loads(p, p->argv[x->a + k], ps, n, seen, max);
}

static int cmp_param(const void *a, const void *b) { return ((const param *)a)->v - ((const param *)b)->v; }

/* the buffers kernel k touches, sorted by value id (-1: out of memory or more than max; the
   scheduler keeps kernels well below MAX_PARAMS buffers) */
static int kernel_params(const emc_ctx *c, const emc_kernel *k, param *ps, int max) {
    int n = 0;
    unsigned char *seen = calloc((size_t)c->pool.nx + 1, 1);
    if (!seen) return -1;
    for (int i = 0; i < k->n_m; i++) {
        const emc_member *m = &k->m[i];
        params_loads(&c->pool, m->expr, ps, &n, seen, max - 4);
        if (m->role == EMC_M_EXTERN) continue;
        if (m->store && c->mat[m->value]) params_add(ps, &n, m->value, true);
        if (m->store && m->value2 >= 0 && c->mat[m->value2]) params_add(ps, &n, m->value2, true);
    }
    free(seen);
    if (n >= max - 4) return -1;
    if (k->kind == EMC_K_MATMUL) {
        params_add(ps, &n, k->A.value, false);
        params_add(ps, &n, k->B.value, false);
        params_add(ps, &n, k->C.value, true);
    }
    qsort(ps, (size_t)n, sizeof *ps, cmp_param);
    return n;
}

/* the parameters of kernel kj that may point at the same memory: an in-place output it writes
   (c->inplace, memplan.c) and the input it is written over, when the kernel also reads that input;
   they lose `restrict`. True when there is such a pair. */
static bool aliased_params(const emc_ctx *c, int kj, const param *ps, int np, bool *alias) {
    bool any = false;
    for (int o = 0; c->inplace && o < c->g->n_outputs; o++) {
        int i = c->inplace[o], v = c->g->outputs[o];
        if (i < 0 || c->kern_of[v] != kj) continue;
        int u = c->g->inputs[i], pu = -1, pv = -1;
        for (int q = 0; q < np; q++) {
            if (ps[q].v == u) pu = q;
            if (ps[q].v == v) pv = q;
        }
        if (pu < 0 || pv < 0) continue;
        alias[pu] = alias[pv] = any = true;
    }
    return any;
}

static void describe_node(char *b, size_t n, const emc_ctx *c, int v) {
    const emc_lval *lv = &c->lv[v];
    char tb[EMG_TYPE_BUF];
    if (lv->node < 0) {
        snprintf(b, n, "%%%d: %s", v, emg_type_str(tb, &c->g->vals[v].meta));
        return;
    }
    const emg_node *nd = &c->g->nodes[lv->node];
    int w = snprintf(b, n, "%%%d: %s = %s(", v, emg_type_str(tb, &c->g->vals[v].meta), emo_table[nd->op].name);
    for (int i = 0; i < nd->n_in && w < (int)n - 16; i++) w += snprintf(b + w, n - (size_t)w, "%s%%%d", i ? ", " : "", nd->in[i]);
    snprintf(b + w, n - (size_t)w, ")");
}

static const char *kind_name(emc_kkind k) {
    static const char *n[] = {"pointwise", "reduce", "matmul", "scan", "fallback"};
    return n[k];
}

static void emit_kernel(cg *g, int kj) {
    const emc_ctx *c = g->c;
    const emc_kernel *k = &c->k[kj];
    g->k = k;
    if (k->kind == EMC_K_FALLBACK) return; /* called from ember_run directly */
    param ps[MAX_PARAMS];
    int np = kernel_params(c, k, ps, MAX_PARAMS);
    if (np < 0) {
        g->oom = true;
        return;
    }
    /* header: what it computes */
    char desc[512], tb[EMG_TYPE_BUF];
    emo_meta sp = {EM_F32, k->nd, {0}};
    memcpy(sp.shape, k->shape, sizeof sp.shape);
    emg_type_str(tb, &sp);
    sb_put(g->o, "/* kernel_%d: %s over [%s", kj, kind_name(k->kind), strchr(tb, '[') ? strchr(tb, '[') + 1 : tb);
    if (k->kind == EMC_K_REDUCE) {
        sb_put(g->o, " (reduced dims:");
        for (int d = 0; d < k->nd; d++)
            if (k->mask[d]) sb_put(g->o, " %d", d);
        sb_put(g->o, ")%s, %d loop(s)", k->column ? ", column layout" : "", k->n_phases);
    }
    sb_put(g->o, "\n");
    for (int i = 0; i < k->n_m; i++) {
        const emc_member *m = &k->m[i];
        describe_node(desc, sizeof desc, c, m->value2 >= 0 ? m->value2 : m->value);
        static const char *rn[] = {"store", "reduction", "per-row epilogue", "sum over rows", "after the rows", ""};
        sb_put(g->o, " *   %s%s%s%s\n", desc, m->role == EMC_M_EXTERN ? "" : "  [", rn[m->role],
               m->role == EMC_M_EXTERN ? "" : m->store ? ", stored]" : "]");
    }
    sb_put(g->o, " */\nstatic void kernel_%d(", kj);
    bool alias[MAX_PARAMS] = {0};
    g->aliased = aliased_params(c, kj, ps, np, alias);
    for (int i = 0; i < np; i++) {
        char nm[32];
        em_dtype dt = c->g->vals[ps[i].v].meta.dtype;
        sb_put(g->o, "%s%s%s *%s%s", i ? ", " : "", ps[i].stored ? "" : "const ", stype_name(dt),
               alias[i] ? "" : "restrict ", bname(nm, sizeof nm, c, ps[i].v));
    }
    sb_put(g->o, "%sconst struct ember_rt *rt, int *err) {\n", np ? ", " : "");
    g->ind = 1;
    memset(g->outer_slot, 0, sizeof(bool) * 64);
    for (int i = 0; i < k->n_m; i++)
        if (k->m[i].role == EMC_M_OUTER) g->outer_slot[k->m[i].slot] = true;
    g->column = k->kind == EMC_K_REDUCE && k->column;
    switch (k->kind) {
    case EMC_K_POINTWISE: emit_pointwise(g); break;
    case EMC_K_REDUCE: emit_reduce(g); break;
    case EMC_K_SCAN: emit_scan(g); break;
    case EMC_K_MATMUL: emit_matmul(g); break;
    default: break;
    }
    g->column = false;
    g->n_rc = 0;
    scope_pop(g, 0);
    sb_put(g->o, "}\n\n");
}

static void emit_run(cg *g) {
    const emc_ctx *c = g->c;
    const emg_graph *gr = c->g;
    sb_put(g->o, "/* inputs: the graph's inputs, then its constants; outputs: one per graph output; arena: %lld "
           "bytes */\n", (long long)c->arena_bytes);
    sb_put(g->o, "int ember_run(void **inputs, void **outputs, char *arena, const struct ember_rt *rt) {\n");
    g->ind = 1;
    line(g, "if (rt->abi != %d) return 3;", EMC_RT_ABI);
    line(g, "int err = 0;");
    /* EMBER_LOG=profile at compile time: one clock read after each kernel (profile.c) */
    bool prof = emc_profile_on();
    if (prof) line(g, "double *prof = rt->prof, pt = omp_get_wtime(), pn; /* profiled: EMBER_LOG=profile */");
    for (int v = 0; v < gr->n_vals; v++) {
        const emc_buf *b = &c->buf[v];
        const emo_meta *m = &gr->vals[v].meta;
        char nm[32], tb[EMG_TYPE_BUF];
        bname(nm, sizeof nm, c, v);
        const char *t = stype_name(m->dtype);
        emg_type_str(tb, m);
        if (b->kind == EMC_B_INPUT) line(g, "%s *%s = (%s *)inputs[%d]; /* %%%d %s */", t, nm, t, b->index, v, tb);
        else if (b->kind == EMC_B_CONST)
            line(g, "%s *%s = (%s *)inputs[%d]; /* %%%d %s, constant */", t, nm, t, gr->n_inputs + b->index, v, tb);
        else if (b->kind == EMC_B_OUTPUT && c->out_first[b->index] == b->index)
            line(g, "%s *%s = (%s *)outputs[%d]; /* %%%d %s */", t, nm, t, b->index, v, tb);
        else if (b->kind == EMC_B_ARENA)
            line(g, "%s *%s = (%s *)(void *)(arena + %lld); /* %%%d %s */", t, nm, t, (long long)b->offset, v, tb);
    }
    for (int kj = 0; kj < c->n_k; kj++) {
        const emc_kernel *k = &c->k[kj];
        if (k->kind == EMC_K_FALLBACK) {
            const emg_node *n = &gr->nodes[k->node];
            char args[4096], outs[1024], nm[32];
            int w = 0, wo = 0;
            for (int i = 0; i < n->n_in && w < (int)sizeof args - 40; i++)
                w += snprintf(args + w, sizeof args - (size_t)w, "%s(void *)%s", i ? ", " : "", bname(nm, sizeof nm, c, n->in[i]));
            for (int j = 0; j < n->n_out && wo < (int)sizeof outs - 40; j++)
                wo += snprintf(outs + wo, sizeof outs - (size_t)wo, "%s(void *)%s", j ? ", " : "", bname(nm, sizeof nm, c, n->out0 + j));
            line(g, "/* %s: eager kernel */", emo_table[n->op].name);
            line(g, "if (rt->fallback(rt->ctx, %d, (void *[]){%s}, (void *[]){%s})) return 2;", k->fallback,
                 w ? args : "0", wo ? outs : "0");
            if (prof) line(g, "if (prof) { pn = omp_get_wtime(); prof[%d] += pn - pt; pt = pn; }", kj);
            continue;
        }
        param ps[MAX_PARAMS];
        int np = kernel_params(c, k, ps, MAX_PARAMS);
        if (np < 0) {
            g->oom = true;
            return;
        }
        char call[8192];
        int w = snprintf(call, sizeof call, "kernel_%d(", kj);
        for (int i = 0; i < np && w < (int)sizeof call - 64; i++) {
            char nm[32];
            w += snprintf(call + w, sizeof call - (size_t)w, "%s, ", bname(nm, sizeof nm, c, ps[i].v));
        }
        snprintf(call + w, sizeof call - (size_t)w, "rt, &err);");
        line(g, "%s", call);
        line(g, "if (err) return 1;");
        if (prof) line(g, "if (prof) { pn = omp_get_wtime(); prof[%d] += pn - pt; pt = pn; }", kj);
    }
    line(g, "return 0;");
    sb_put(g->o, "}\n");
}

char *emc_codegen_c(const emc_ctx *c) {
    sb src = {0};
    cg g;
    memset(&g, 0, sizeof g);
    g.c = c;
    g.p = &c->pool;
    g.o = &src;
    g.h = malloc(sizeof(int) * ((size_t)c->pool.nx + 1));
    g.inner = malloc((size_t)c->pool.nx + 1);
    g.outer_slot = calloc(64, sizeof(bool));
    if (!g.h || !g.inner || !g.outer_slot) {
        free(g.h);
        free(g.inner);
        free(g.outer_slot);
        return em_seterr_null(EM_ERR_OOM, "codegen: out of memory");
    }
    for (int i = 0; i < c->pool.nx; i++) g.h[i] = -1;
    /* the header: the graph (random nodes' seeds and offsets left out: they come from rt, so the
       text, and the cache key, do not change with the generator's state) */
    emg_graph *shown = emg_clone(c->g);
    for (int k = 0; shown && k < shown->n_nodes; k++) shown->nodes[k].attrs.seed = shown->nodes[k].attrs.offset = 0;
    char *gtext = shown ? emg_print(shown) : NULL;
    emg_free(shown);
    sb_put(&src, "/* Generated by Ember's compiler (src/backend/cpu/codegen.c) from this graph:\n *\n");
    for (char *s = gtext; s && *s;) {
        char *e = strchr(s, '\n');
        int len = e ? (int)(e - s) : (int)strlen(s);
        sb_put(&src, " *   %.*s\n", len, s);
        s = e ? e + 1 : s + len;
    }
    free(gtext);
    sb_put(&src, " *\n * %d kernel(s), arena %lld bytes.\n */\n", c->n_k, (long long)c->arena_bytes);
    sb_put(&src, "%s\n", emc_c_prelude);
    for (int kj = 0; kj < c->n_k && !g.oom; kj++) emit_kernel(&g, kj);
    if (!g.oom) emit_run(&g);
    for (int i = 0; i < g.nh; i++) free(g.hs[i]);
    free(g.hs);
    free(g.stack);
    free(g.h);
    free(g.inner);
    free(g.outer_slot);
    if (g.oom || src.oom) {
        free(src.s);
        if (em_last_status() == EM_OK || g.oom) return em_seterr_null(EM_ERR_COMPILE, "codegen: failed (%s)", em_last_error());
        return NULL;
    }
    return src.s;
}
