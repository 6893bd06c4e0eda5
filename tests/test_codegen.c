/* test_codegen.c - the code-generating compiler: every op family compiled vs eager, fusion
 * (through the stats and the generated source), the disk cache across processes, a broken C
 * compiler, and compiled training steps.
 *
 * (The op-table cases, compiled, are in test_ops: tests/lib/compiled_ops.c.)
 *
 * Each case is a function traced with the capture machinery and compiled with
 * emc_compile_graph (or through em_compile with backend "c"), run on random inputs and compared
 * with the same function run eagerly. The cache lives in a fresh temporary directory the test
 * makes (EMBER_CACHE_DIR) and removes at the end. `test_codegen --child DIR` is the second
 * process of the disk-cache test; `test_codegen --example` prints docs/compiler.md's worked example
 * (run it with EMBER_LOG=graph,fusion,code,cache), which the log and doc tests run as a child.
 */
#include "harness.h"

#include "capture/capture.h"
#include "compiler/compiler.h"

#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef em_status (*fn_t)(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out);

static double max_rel(em_tensor_t *a, em_tensor_t *b) {
    if (!a || !b) return INFINITY;
    if (em_ndim(a) != em_ndim(b) || em_type(a) != em_type(b)) return INFINITY;
    for (int d = 0; d < em_ndim(a); d++)
        if (em_shape(a)[d] != em_shape(b)[d]) return INFINITY;
    if (em_numel(a) == 0) return 0;
    em_tensor_t *x = em_cast(a, EM_F64), *y = em_cast(b, EM_F64);
    double num = em_item(em_amax(em_abs(em_sub(x, y)), NULL, 0, false));
    double den = em_item(em_amax(em_abs(y), NULL, 0, false));
    if (num != num) { /* NaN somewhere: equal only if NaNs agree */
        em_tensor_t *nx = em_ne(x, x), *ny = em_ne(y, y);
        if (em_item(em_sum(em_ne(nx, ny), NULL, 0, false)) != 0) return INFINITY;
        em_tensor_t *z = em_scalar(0, EM_F64);
        x = em_where(nx, z, x);
        y = em_where(ny, z, y);
        num = em_item(em_amax(em_abs(em_sub(x, y)), NULL, 0, false));
        den = em_item(em_amax(em_abs(y), NULL, 0, false));
    }
    return num / (den > 1 ? den : 1);
}

/* traces fn on in, compiles it; *outs gets n_out compiled results and *eager the eager ones */
static emc_program *compile_and_run(fn_t fn, void *ctx, em_tensor_t *const *in, int n_in, int n_out,
                                    em_tensor_t **got, em_tensor_t **want) {
    emcap_trace tr;
    if (emcap_trace_fn(fn, ctx, in, n_in, n_out, true, &tr) != EM_OK) return NULL;
    emg_cse(tr.g);
    emg_dce(tr.g);
    emc_program *p = emc_compile_graph(tr.g, NULL);
    if (p) {
        if (emc_run(p, in, n_in, got) != EM_OK) {
            emc_program_free(p);
            p = NULL;
        }
    }
    emcap_trace_free(&tr);
    if (fn(ctx, in, n_in, want, n_out) != EM_OK) return p;
    return p;
}

static int count_str(const char *s, const char *needle) {
    int n = 0;
    for (const char *q = s; q && (q = strstr(q, needle)); q += strlen(needle)) n++;
    return n;
}

/* runs a case: compiled vs eager on every output within tol; returns the program (or NULL) */
static emc_program *check_case(const char *name, fn_t fn, void *ctx, em_tensor_t *const *in, int n_in, int n_out,
                               double tol) {
    em_tensor_t *got[32] = {0}, *want[32] = {0};
    emc_program *p = compile_and_run(fn, ctx, in, n_in, n_out, got, want);
    TH_CHECK(p != NULL, "%s: compiles and runs", name);
    for (int j = 0; p && j < n_out; j++) {
        double r = max_rel(got[j], want[j]);
        TH_CHECK(r <= tol, "%s: output %d compiled == eager (rel %g, tol %g)", name, j, r, tol);
        if (!(r <= tol) && got[j] && want[j] && getenv("EMBER_TEST_VERBOSE")) {
            char *a = em_to_string(got[j]), *b = em_to_string(want[j]);
            fprintf(stderr, "  got  %s %s\n  want %s %s\n", em_dtype_name(em_type(got[j])), a, em_dtype_name(em_type(want[j])), b);
            free(a);
            free(b);
        }
    }
    return p;
}

static void run_case(const char *name, fn_t fn, void *ctx, em_tensor_t *const *in, int n_in, int n_out, double tol) {
    emc_program *p = check_case(name, fn, ctx, in, n_in, n_out, tol);
    emc_program_free(p);
}

/* ---- pointwise ------------------------------------------------------------------------------------ */
static em_status f_chain5(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    em_tensor_t *x = in[0];
    out[0] = em_tanh(em_mul_scalar(em_exp(em_sub(em_mul(x, x), in[1])), 0.5));
    out[0] = em_add_scalar(out[0], 1.0);
    return out[0] ? EM_OK : em_last_status();
}

static em_status f_unary_all(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    em_tensor_t *x = in[0], *p = em_add_scalar(em_abs(x), 0.5);
    em_tensor_t *a = em_add(em_add(em_neg(x), em_abs(x)), em_add(em_exp(x), em_log(p)));
    a = em_add(a, em_add(em_log1p(p), em_sqrt(p)));
    a = em_add(a, em_add(em_rsqrt(p), em_sin(x)));
    a = em_add(a, em_add(em_cos(x), em_tanh(x)));
    a = em_add(a, em_add(em_sigmoid(x), em_relu(x)));
    a = em_add(a, em_add(em_gelu(x), em_gelu_tanh(x)));
    a = em_add(a, em_add(em_silu(x), em_sign(x)));
    a = em_add(a, em_add(em_reciprocal(p), em_square(x)));
    a = em_add(a, em_clamp(x, -0.3, 0.4));
    out[0] = a;
    out[1] = em_logical_not(em_gt(x, em_scalar(0, em_type(x))));
    return a && out[1] ? EM_OK : em_last_status();
}

static em_status f_binary(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    em_tensor_t *a = in[0], *b = in[1]; /* b broadcasts: (4, 1, 5) vs (3, 5) */
    em_tensor_t *r = em_add(em_sub(a, b), em_mul(a, b));
    r = em_add(r, em_div(a, em_add_scalar(em_abs(b), 1.0)));
    r = em_add(r, em_pow(em_add_scalar(em_abs(a), 0.1), b));
    r = em_add(r, em_maximum(a, b));
    r = em_add(r, em_minimum(a, b));
    r = em_add(r, em_pow_scalar(a, 2.0));
    out[0] = r;
    em_tensor_t *cmp = em_logical_or(em_logical_and(em_lt(a, b), em_ge(a, em_scalar(-1, EM_F32))), em_eq(a, b));
    out[1] = em_where(em_logical_or(cmp, em_ne(a, b)), a, em_le(b, a) ? b : b);
    out[2] = em_where(em_gt(a, b), a, b);
    return out[0] && out[1] && out[2] ? EM_OK : em_last_status();
}

static em_status f_views(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    em_tensor_t *x = in[0]; /* (4, 6, 8) */
    em_tensor_t *t = em_permute(x, (int[]){2, 0, 1}, 3);                     /* (8, 4, 6) */
    em_tensor_t *r = em_reshape(t, (int64_t[]){8, 24}, 2);                   /* a copy in eager */
    em_tensor_t *s = em_slice(r, 1, 2, 20, 3);                               /* (8, 6) */
    em_tensor_t *e = em_expand(em_reshape(in[1], (int64_t[]){8, 1}, 2), (int64_t[]){8, 6}, 2);
    out[0] = em_add(s, e);
    out[1] = em_reshape(em_transpose(x, 0, 2), (int64_t[]){-1}, 1);
    out[2] = em_flip(x, (int[]){1}, 1);
    return out[0] && out[1] && out[2] ? EM_OK : em_last_status();
}

static em_status f_ints(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    em_tensor_t *a = in[0], *b = in[1]; /* i32 (5, 7), i64 (7) */
    out[0] = em_add(em_mul(a, a), em_sub(b, a));
    out[1] = em_div(a, em_add_scalar(em_abs(b), 1.0));
    out[2] = em_cast(em_mul_scalar(em_cast(a, EM_F32), 1.7), EM_I32);
    out[3] = em_sum(a, (int[]){1}, 1, false);
    out[4] = em_neg(em_cast(em_gt(a, b), EM_U8));
    return out[0] && out[1] && out[2] && out[3] && out[4] ? EM_OK : em_last_status();
}

static em_status f_half(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    em_tensor_t *x = in[0]; /* f16 or bf16 */
    out[0] = em_mul(em_exp(em_neg(em_square(x))), em_add_scalar(x, 0.25));
    out[1] = em_softmax(x, -1);
    out[2] = em_sum(x, (int[]){0}, 1, false);
    return out[0] && out[1] && out[2] ? EM_OK : em_last_status();
}

/* corner cases: empty tensors, 0-dim tensors, outputs that are inputs or repeat */
static em_status f_corners(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    em_tensor_t *e = in[0], *s0 = in[1]; /* (0, 5), () */
    out[0] = em_add_scalar(e, 1.0);
    out[1] = em_sum(e, (int[]){0}, 1, false);   /* zeros (5) */
    out[2] = em_matmul(em_transpose(e, 0, 1), e); /* (5, 5) of zeros, K = 0 */
    out[3] = em_mul(s0, s0);
    out[4] = in[1];
    out[5] = out[3];
    out[6] = em_sum(s0, NULL, 0, false);
    out[7] = em_softmax(e, -1);
    for (int i = 0; i < 8; i++)
        if (!out[i]) return em_last_status();
    return EM_OK;
}

static void test_pointwise(void) {
    em_scope_t *s = em_scope_begin();
    th_seed(1);
    em_tensor_t *x = th_randn((int64_t[]){16, 64}, 2, EM_F32), *y = th_randn((int64_t[]){64}, 1, EM_F32);
    em_tensor_t *in[2] = {x, y};
    emc_program *p = check_case("chain of 5 pointwise ops", f_chain5, NULL, in, 2, 1, 1e-6);
    if (p) {
        TH_CHECK(emc_program_stats(p)->kernels == 1, "the chain is one kernel (%d)", emc_program_stats(p)->kernels);
        TH_CHECK(count_str(emc_program_source(p), "static void kernel_") == 1, "one kernel in the source");
        TH_CHECK(emc_program_stats(p)->planned_peak_bytes == 0, "no intermediate buffer (%lld bytes)",
                 (long long)emc_program_stats(p)->planned_peak_bytes);
    }
    emc_program_free(p);
    em_tensor_t *x64 = th_randn((int64_t[]){16, 64}, 2, EM_F64), *y64 = th_randn((int64_t[]){64}, 1, EM_F64);
    run_case("chain of 5, f64", f_chain5, NULL, (em_tensor_t *[]){x64, y64}, 2, 1, 1e-12);
    run_case("every unary op, f32", f_unary_all, NULL, &x, 1, 2, 1e-6);
    run_case("every unary op, f64", f_unary_all, NULL, &x64, 1, 2, 1e-12);
    em_tensor_t *a = th_randn((int64_t[]){4, 1, 5}, 3, EM_F32), *b = th_randn((int64_t[]){3, 5}, 2, EM_F32);
    run_case("binary ops with broadcasting", f_binary, NULL, (em_tensor_t *[]){a, b}, 2, 3, 1e-6);
    em_tensor_t *v = th_randn((int64_t[]){4, 6, 8}, 3, EM_F32), *w = th_randn((int64_t[]){8}, 1, EM_F32);
    emc_program *pv = check_case("views: permute, reshape, slice, expand, flip", f_views, NULL, (em_tensor_t *[]){v, w}, 2, 3, 0);
    emc_program_free(pv);
    em_tensor_t *vt = em_transpose(th_randn((int64_t[]){8, 6, 4}, 3, EM_F32), 0, 2); /* non-contiguous input */
    run_case("non-contiguous input", f_views, NULL, (em_tensor_t *[]){vt, w}, 2, 3, 0);
    th_input ia = {.ndim = 2, .shape = {5, 7}, .dtype = EM_I32, .gen = TH_SMALLINT};
    th_input ib = {.ndim = 1, .shape = {7}, .dtype = EM_I64, .gen = TH_SMALLINT};
    em_tensor_t *ai = th_make_input(&ia, EM_I32), *bi = th_make_input(&ib, EM_I64);
    run_case("integer ops", f_ints, NULL, (em_tensor_t *[]){ai, bi}, 2, 5, 0);
    em_tensor_t *h = em_cast(th_randn((int64_t[]){6, 40}, 2, EM_F32), EM_F16);
    run_case("f16", f_half, NULL, &h, 1, 3, 2e-3);
    run_case("empty and 0-dim tensors, outputs that are inputs", f_corners, NULL,
             (em_tensor_t *[]){em_zeros((int64_t[]){0, 5}, 2, EM_F32), em_scalar(1.5, EM_F32)}, 2, 8, 0);
    em_tensor_t *hb = em_cast(th_randn((int64_t[]){6, 40}, 2, EM_F32), EM_BF16);
    run_case("bf16", f_half, NULL, &hb, 1, 3, 1e-2);
    em_scope_end(s);
}


/* the generated math is the eager math to the bit (prelude.c copies vecmath.h and dtype.c) */
static em_status f_bitwise(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    em_tensor_t *x = in[0];
    int k = 0;
    out[k++] = em_exp(x);
    out[k++] = em_log(em_abs(x));
    out[k++] = em_tanh(x);
    out[k++] = em_gelu(x);
    out[k++] = em_gelu_tanh(x);
    out[k++] = em_sigmoid(x);
    out[k++] = em_silu(x);
    out[k++] = em_cast(x, EM_F16);
    out[k++] = em_cast(x, EM_BF16);
    out[k++] = em_cast(em_mul_scalar(x, 1e9), EM_I32);
    out[k++] = em_cast(em_mul_scalar(x, 100), EM_U8);
    out[k++] = em_cast(x, EM_BOOL);
    for (int i = 0; i < k; i++)
        if (!out[i]) return em_last_status();
    return EM_OK;
}

/* the same values (NaN matches NaN, -0 only -0), or the count of elements that differ */
static int64_t n_differ(em_tensor_t *a, em_tensor_t *b) {
    if (!a || !b || em_numel(a) != em_numel(b) || em_type(a) != em_type(b)) return -1;
    int64_t n = em_numel(a), bad = 0;
    double *x = malloc(sizeof(double) * (size_t)n), *y = malloc(sizeof(double) * (size_t)n);
    em_to_data(em_cast(a, EM_F64), x, sizeof(double) * (size_t)n);
    em_to_data(em_cast(b, EM_F64), y, sizeof(double) * (size_t)n);
    for (int64_t i = 0; i < n; i++)
        if (!((x[i] == y[i] && signbit(x[i]) == signbit(y[i])) || (x[i] != x[i] && y[i] != y[i]))) bad++;
    free(x);
    free(y);
    return bad;
}

static void test_bitwise_math(void) {
    em_scope_t *s = em_scope_begin();
    int64_t n = 4096;
    float *v = malloc(sizeof(float) * (size_t)n);
    th_seed(9);
    for (int64_t i = 0; i < n; i++) v[i] = (float)((th_uniform() - 0.5) * 60.0 * th_uniform() * th_uniform());
    float special[] = {0.0f, -0.0f, NAN, INFINITY, -INFINITY, 1e-40f, -1e-40f, 88.7f, -103.9f, 1e30f, -1e30f, 0.625f};
    memcpy(v, special, sizeof special);
    em_tensor_t *x = em_from_data(v, &n, 1, EM_F32);
    free(v);
    em_tensor_t *got[16] = {0}, *want[16] = {0};
    emc_program *p = compile_and_run(f_bitwise, NULL, &x, 1, 12, got, want);
    TH_CHECK(p != NULL, "math and casts compile");
    const char *names[] = {"exp", "log", "tanh", "gelu", "gelu_tanh", "sigmoid", "silu", "f16", "bf16", "i32", "u8", "bool"};
    for (int i = 0; p && i < 12; i++)
        TH_CHECK(n_differ(got[i], want[i]) == 0, "%s: compiled == eager bit for bit (%lld differ)", names[i],
                 (long long)n_differ(got[i], want[i]));
    emc_program_free(p);
    em_scope_end(s);
}

/* ---- reductions ------------------------------------------------------------------------------------ */
static em_status f_reduce(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    em_tensor_t *x = in[0]; /* (6, 10, 12) */
    int k = 0;
    out[k++] = em_sum(x, (int[]){2}, 1, false);
    out[k++] = em_sum(x, (int[]){0}, 1, true);
    out[k++] = em_sum(x, (int[]){0, 2}, 2, false);
    out[k++] = em_sum(x, NULL, 0, false);
    out[k++] = em_prod(em_add_scalar(em_mul_scalar(x, 0.1), 1.0), (int[]){1}, 1, false);
    out[k++] = em_amax(x, (int[]){1, 2}, 2, false);
    out[k++] = em_amin(x, (int[]){0}, 1, false);
    em_tensor_t *idx = NULL;
    out[k++] = em_max(x, 2, false, &idx);
    out[k++] = idx;
    out[k++] = em_min(x, 0, true, &idx);
    out[k++] = idx;
    out[k++] = em_argmax(x, 1, false);
    out[k++] = em_argmin(x, 2, true);
    out[k++] = em_cumsum(x, 1);
    out[k++] = em_mean(x, (int[]){1}, 1, false);
    out[k++] = em_var(x, (int[]){2}, 1, 1, false);
    out[k++] = em_std(x, (int[]){0, 1}, 2, 0, true);
    out[k++] = em_logsumexp(x, (int[]){2}, 1, false);
    for (int i = 0; i < k; i++)
        if (!out[i]) return em_last_status();
    return EM_OK;
}

static em_status f_reduce_int(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    em_tensor_t *x = in[0]; /* i32 (5, 7) */
    out[0] = em_sum(x, (int[]){0}, 1, false);
    out[1] = em_prod(x, (int[]){1}, 1, false);
    out[2] = em_amax(x, NULL, 0, false);
    out[3] = em_argmin(x, 1, false);
    out[4] = em_cumsum(x, 0);
    out[5] = em_sum(em_gt(x, em_scalar(0, EM_I32)), (int[]){1}, 1, true);
    for (int i = 0; i < 6; i++)
        if (!out[i]) return em_last_status();
    return EM_OK;
}

static em_status f_full(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    out[0] = em_mean(em_square(in[0]), NULL, 0, false); /* one row of 160000: threads split it */
    out[1] = em_amax(in[0], NULL, 0, true);
    out[2] = em_div(em_sum(in[0], NULL, 0, false), em_amin(in[0], NULL, 0, false));
    return out[0] && out[1] && out[2] ? EM_OK : em_last_status();
}

static void test_reductions(void) {
    em_scope_t *s = em_scope_begin();
    th_seed(2);
    th_input di = {.ndim = 3, .shape = {6, 10, 12}, .dtype = TH_T, .gen = TH_DISTINCT};
    em_tensor_t *x = th_make_input(&di, EM_F32), *x64 = th_make_input(&di, EM_F64);
    run_case("every reduction, f32", f_reduce, NULL, &x, 1, 18, 1e-5);
    run_case("every reduction, f64", f_reduce, NULL, &x64, 1, 18, 1e-12);
    run_case("every reduction, transposed input", f_reduce, NULL, (em_tensor_t *[]){em_transpose(x64, 0, 2)}, 1, 18, 1e-12);
    th_input ii = {.ndim = 2, .shape = {5, 7}, .dtype = EM_I32, .gen = TH_SMALLINT};
    em_tensor_t *xi = th_make_input(&ii, EM_I32);
    run_case("integer reductions", f_reduce_int, NULL, &xi, 1, 6, 0);
    /* NaN propagates through max and argmax like eager */
    float v[12] = {1, 2, NAN, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    em_tensor_t *xn = em_from_data(v, (int64_t[]){2, 2, 3}, 3, EM_F32);
    run_case("NaN in max, argmax and sum", f_reduce, NULL, &xn, 1, 18, 1e-6);
    em_tensor_t *big = th_randn((int64_t[]){400, 400}, 2, EM_F32);
    emc_program *pf = check_case("full reductions of a large tensor", f_full, NULL, &big, 1, 3, 1e-6);
    TH_CHECK(pf && strstr(emc_program_source(pf), "int64_t lo = 160000 * me / nth"), "threads split the one row");
    emc_program_free(pf);
    em_scope_end(s);
}

/* ---- neural-network blocks --------------------------------------------------------------------------- */
static em_status f_softmax(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    out[0] = em_softmax(in[0], -1);
    return out[0] ? EM_OK : em_last_status();
}

static em_status f_log_softmax(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    out[0] = em_log_softmax(in[0], -1);
    return out[0] ? EM_OK : em_last_status();
}

static em_status f_softmax_mid(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    out[0] = em_softmax(in[0], 1);
    return out[0] ? EM_OK : em_last_status();
}

static em_status f_layer_norm(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    out[0] = em_layer_norm(in[0], in[1], in[2], 1e-5);
    return out[0] ? EM_OK : em_last_status();
}

static em_status f_rms_norm(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    out[0] = em_rms_norm(in[0], in[1], 1e-6);
    return out[0] ? EM_OK : em_last_status();
}

static em_status f_cross_entropy(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    out[0] = em_cross_entropy(in[0], in[1]);
    return out[0] ? EM_OK : em_last_status();
}

static em_status f_cross_entropy_all(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    out[0] = em_cross_entropy_ex(in[0], in[1], 2, EM_REDUCE_MEAN);
    out[1] = em_cross_entropy_ex(in[0], in[1], -100, EM_REDUCE_SUM);
    out[2] = em_cross_entropy_ex(in[0], in[1], 1, EM_REDUCE_NONE);
    return out[0] && out[1] && out[2] ? EM_OK : em_last_status();
}

/* the number of kernel functions in a program's source */
static int kernels_in(const emc_program *p) { return p ? count_str(emc_program_source(p), "static void kernel_") : -1; }

static void test_nn(void) {
    em_scope_t *s = em_scope_begin();
    th_seed(3);
    em_tensor_t *x = th_randn((int64_t[]){4, 16, 96}, 3, EM_F32), *x64 = em_cast(x, EM_F64);
    struct {
        const char *name;
        fn_t fn;
    } one[] = {{"softmax", f_softmax}, {"log_softmax", f_log_softmax}};
    for (int i = 0; i < 2; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "%s over the last dim", one[i].name);
        emc_program *p = check_case(nm, one[i].fn, NULL, &x, 1, 1, 1e-6);
        TH_CHECK(p && emc_program_stats(p)->kernels == 1 && kernels_in(p) == 1, "%s is one kernel (%d)", one[i].name,
                 p ? emc_program_stats(p)->kernels : -1);
        TH_CHECK(p && emc_program_stats(p)->planned_peak_bytes == 0, "%s needs no intermediate buffer", one[i].name);
        emc_program_free(p);
        snprintf(nm, sizeof nm, "%s, f64", one[i].name);
        run_case(nm, one[i].fn, NULL, &x64, 1, 1, 1e-12);
    }
    run_case("softmax over a middle dim", f_softmax_mid, NULL, &x, 1, 1, 1e-6);
    em_tensor_t *w = th_randn((int64_t[]){96}, 1, EM_F32), *b = th_randn((int64_t[]){96}, 1, EM_F32);
    emc_program *p = check_case("layer_norm", f_layer_norm, NULL, (em_tensor_t *[]){x, w, b}, 3, 1, 1e-5);
    TH_CHECK(p && emc_program_stats(p)->kernels == 1, "layer_norm is one kernel (%d)", p ? emc_program_stats(p)->kernels : -1);
    emc_program_free(p);
    run_case("layer_norm, f64", f_layer_norm, NULL, (em_tensor_t *[]){x64, em_cast(w, EM_F64), em_cast(b, EM_F64)}, 3, 1, 1e-12);
    p = check_case("rms_norm", f_rms_norm, NULL, (em_tensor_t *[]){x, w}, 2, 1, 1e-5);
    TH_CHECK(p && emc_program_stats(p)->kernels == 1, "rms_norm is one kernel (%d)", p ? emc_program_stats(p)->kernels : -1);
    emc_program_free(p);
    em_tensor_t *lg = th_randn((int64_t[]){32, 50}, 2, EM_F32);
    th_input ti = {.ndim = 1, .shape = {32}, .dtype = EM_I64, .gen = TH_INDEX, .hi = 50};
    em_tensor_t *tg = th_make_input(&ti, EM_I64);
    p = check_case("cross_entropy", f_cross_entropy, NULL, (em_tensor_t *[]){lg, tg}, 2, 1, 1e-5);
    TH_CHECK(p && emc_program_stats(p)->kernels == 1, "the cross_entropy forward is one kernel (%d)",
             p ? emc_program_stats(p)->kernels : -1);
    emc_program_free(p);
    th_input ts = {.ndim = 1, .shape = {32}, .dtype = EM_I64, .gen = TH_INDEX, .hi = 4};
    em_tensor_t *tsml = th_make_input(&ts, EM_I64);
    run_case("cross_entropy: ignore_index, sum, none", f_cross_entropy_all, NULL, (em_tensor_t *[]){em_cast(lg, EM_F64), tsml},
             2, 3, 1e-12);
    /* a target out of range is an error, like eager */
    em_tensor_t *bad = em_full((int64_t[]){32}, 1, 50, EM_I64), *o = NULL;
    emcap_trace tr;
    if (emcap_trace_fn(f_cross_entropy, NULL, (em_tensor_t *[]){lg, tg}, 2, 1, true, &tr) == EM_OK) {
        emc_program *pc = emc_compile_graph(tr.g, NULL);
        em_clear_error();
        TH_CHECK(pc && emc_run(pc, (em_tensor_t *[]){lg, bad}, 2, &o) == EM_ERR_INDEX, "a bad target is EM_ERR_INDEX");
        emc_program_free(pc);
        emcap_trace_free(&tr);
    }
    em_scope_end(s);
}

/* ---- matmul and its epilogues ------------------------------------------------------------------------ */
static em_status f_linear_gelu(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    out[0] = em_gelu(em_linear(in[0], in[1], in[2]));
    return out[0] ? EM_OK : em_last_status();
}

static em_status f_mlp(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    em_tensor_t *x = in[0], *h = em_gelu(em_linear(x, in[1], in[2]));
    out[0] = em_add(x, em_linear(h, in[3], in[4]));
    return out[0] ? EM_OK : em_last_status();
}

static em_status f_matmuls(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    em_tensor_t *a = in[0], *b = in[1]; /* (2, 3, 5, 8), (8, 6) */
    out[0] = em_matmul(a, b);                                  /* broadcast batch */
    out[1] = em_matmul(em_transpose(a, -1, -2), a);           /* (2, 3, 8, 5) @ (2, 3, 5, 8) */
    out[2] = em_matmul(em_reshape(a, (int64_t[]){-1}, 1), em_reshape(a, (int64_t[]){-1}, 1)); /* dot */
    out[3] = em_matmul(em_select(em_select(a, 0, 1), 0, 2), em_select(b, 1, 2)); /* (5, 8) @ (8,) */
    out[4] = em_tanh(em_matmul(a, em_slice(b, 1, 1, 5, 2)));  /* strided operand, epilogue */
    for (int i = 0; i < 5; i++)
        if (!out[i]) return em_last_status();
    return EM_OK;
}

static void test_matmul(void) {
    em_scope_t *s = em_scope_begin();
    th_seed(4);
    em_tensor_t *x = th_randn((int64_t[]){64, 48}, 2, EM_F32), *w = th_randn((int64_t[]){80, 48}, 2, EM_F32);
    em_tensor_t *b = th_randn((int64_t[]){80}, 1, EM_F32);
    emc_program *p = check_case("linear + bias + gelu", f_linear_gelu, NULL, (em_tensor_t *[]){x, w, b}, 3, 1, 1e-5);
    TH_CHECK(p && emc_program_stats(p)->kernels == 1 && kernels_in(p) == 1, "linear + bias + gelu is one kernel (%d)",
             p ? emc_program_stats(p)->kernels : -1);
    TH_CHECK(p && strstr(emc_program_source(p), "gelu_f32(") && strstr(emc_program_source(p), "rt->sgemm("),
             "the kernel calls sgemm and applies gelu");
    emc_program_free(p);
    em_tensor_t *x64 = em_cast(x, EM_F64), *w64 = em_cast(w, EM_F64), *b64 = em_cast(b, EM_F64);
    run_case("linear + bias + gelu, f64", f_linear_gelu, NULL, (em_tensor_t *[]){x64, w64, b64}, 3, 1, 1e-12);
    em_tensor_t *w2 = th_randn((int64_t[]){48, 80}, 2, EM_F32), *b2 = th_randn((int64_t[]){48}, 1, EM_F32);
    p = check_case("MLP block with residual", f_mlp, NULL, (em_tensor_t *[]){x, w, b, w2, b2}, 5, 1, 1e-5);
    TH_CHECK(p && emc_program_stats(p)->kernels == 2, "an MLP block is two kernels (%d)", p ? emc_program_stats(p)->kernels : -1);
    emc_program_free(p);
    em_tensor_t *a = th_randn((int64_t[]){2, 3, 5, 8}, 4, EM_F64), *bb = th_randn((int64_t[]){8, 6}, 2, EM_F64);
    run_case("batched, broadcast, 1-d, strided matmuls", f_matmuls, NULL, (em_tensor_t *[]){a, bb}, 2, 5, 1e-12);
    em_tensor_t *ai = em_cast(em_mul_scalar(a, 3), EM_I64), *bi = em_cast(em_mul_scalar(bb, 3), EM_I64);
    run_case("integer matmul (fallback)", f_matmuls, NULL, (em_tensor_t *[]){ai, bi}, 2, 5, 0);
    em_scope_end(s);
}

/* ---- attention: batch dims folded into M, heads written back in place -------------------------------- */
/* in: x (B, T, C), ln_w, ln_b (C), wqkv (3C, C), bqkv (3C), wo (C, C), bo (C); ctx: the head count */
static em_status f_attn_block(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)n;
    int64_t NH = *(const int64_t *)c, B = em_shape(in[0])[0], T = em_shape(in[0])[1], C = em_shape(in[0])[2], HS = C / NH;
    em_tensor_t *qkv = em_linear(em_layer_norm(in[0], in[1], in[2], 1e-5), in[3], in[4]);
    em_tensor_t *h[3];
    for (int i = 0; i < 3; i++)
        h[i] = em_transpose(em_reshape(em_slice(qkv, 2, i * C, (i + 1) * C, 1), (int64_t[]){B, T, NH, HS}, 4), 1, 2);
    em_tensor_t *y = em_scaled_dot_product_attention(h[0], h[1], h[2], true, 0.0);
    em_tensor_t *yc = em_reshape(em_transpose(y, 1, 2), (int64_t[]){B, T, C}, 3);
    out[0] = em_add(in[0], em_linear(yc, in[5], in[6]));
    if (m > 1) out[1] = em_mul_scalar(y, 2.0); /* the heads read twice: they keep their own buffer */
    return out[0] && (m < 2 || out[1]) ? EM_OK : em_last_status();
}

/* products whose one reader is reshapes/permutes feeding another matmul, written there at strides:
   in: a (2, 3, 4, 5), b (2, 3, 5, 6), w1 (18, 7), w2 (6, 5), w4 (5, 3), w5 (9, 2) */
static em_status f_mm_relayout(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    em_tensor_t *a = in[0], *b = in[1];
    em_tensor_t *y = em_matmul(a, b); /* (2, 3, 4, 6) */
    out[0] = em_matmul(em_reshape(em_permute(y, (int[]){0, 2, 1, 3}, 4), (int64_t[]){2, 4, 18}, 3), in[2]);
    y = em_matmul(em_transpose(b, 2, 3), em_transpose(a, 2, 3)); /* (2, 3, 6, 4): written column-major */
    out[1] = em_matmul(em_reshape(em_transpose(y, 2, 3), (int64_t[]){2, 12, 6}, 3), in[3]);
    y = em_matmul(a, in[4]); /* (2, 3, 4, 3), shared B, but the rows do not stay one run after the transpose */
    out[2] = em_matmul(em_reshape(em_transpose(y, 1, 2), (int64_t[]){2, 4, 9}, 3), in[5]);
    return out[0] && out[1] && out[2] ? EM_OK : em_last_status();
}

static void test_attention(void) {
    em_scope_t *s = em_scope_begin();
    th_seed(11);
    int64_t B = 2, T = 16, C = 64, NH = 4;
    for (int dt = 0; dt < 2; dt++) {
        em_dtype t = dt ? EM_F64 : EM_F32;
        em_tensor_t *in[7] = {
            th_randn((int64_t[]){B, T, C}, 3, t),     th_randn((int64_t[]){C}, 1, t),
            th_randn((int64_t[]){C}, 1, t),           em_mul_scalar(th_randn((int64_t[]){3 * C, C}, 2, t), 0.2),
            th_randn((int64_t[]){3 * C}, 1, t),       em_mul_scalar(th_randn((int64_t[]){C, C}, 2, t), 0.2),
            th_randn((int64_t[]){C}, 1, t)};
        double tol = dt ? 1e-12 : 1e-5;
        emc_program *p = check_case(dt ? "attention block, f64" : "attention block", f_attn_block, &NH, in, 7, 1, tol);
        const char *src = p ? emc_program_source(p) : "";
        /* layer_norm, qkv, q @ k^T, softmax, att @ v (into the (B, T, C) buffer), projection + residual */
        TH_CHECK(p && emc_program_stats(p)->kernels == 6 && kernels_in(p) == 6, "the attention block is six kernels (%d)",
                 p ? emc_program_stats(p)->kernels : -1);
        TH_CHECK(count_str(src, "the batch dims folded into M") == 2, "both linears are one GEMM over B * T rows (%d)",
                 count_str(src, "the batch dims folded into M"));
        TH_CHECK(count_str(src, dt ? "rt->dgemm(" : "rt->sgemm(") == 4, "four GEMM calls (%d)",
                 count_str(src, dt ? "rt->dgemm(" : "rt->sgemm("));
        emc_program_free(p);
        p = check_case("attention block, heads also an output", f_attn_block, &NH, in, 7, 2, tol);
        TH_CHECK(p && emc_program_stats(p)->kernels == 7, "the heads read twice keep their copy (%d kernels)",
                 p ? emc_program_stats(p)->kernels : -1);
        emc_program_free(p);
    }
    em_tensor_t *a = th_randn((int64_t[]){2, 3, 4, 5}, 4, EM_F64), *b = th_randn((int64_t[]){2, 3, 5, 6}, 4, EM_F64);
    em_tensor_t *w1 = th_randn((int64_t[]){18, 7}, 2, EM_F64), *w2 = th_randn((int64_t[]){6, 5}, 2, EM_F64);
    em_tensor_t *w4 = th_randn((int64_t[]){5, 3}, 2, EM_F64), *w5 = th_randn((int64_t[]){9, 2}, 2, EM_F64);
    emc_program *p = check_case("products written at strides", f_mm_relayout, NULL,
                                (em_tensor_t *[]){a, b, w1, w2, w4, w5}, 6, 3, 1e-12);
    TH_CHECK(p && emc_program_stats(p)->kernels == 6, "six matmul kernels and no copy (%d)",
             p ? emc_program_stats(p)->kernels : -1);
    emc_program_free(p);
    em_scope_end(s);
}

/* ---- data movement, creation, random ------------------------------------------------------------------ */
static em_status f_shape_ops(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    em_tensor_t *x = in[0], *ix = in[1], *ie = in[2]; /* x (5, 6) f32; ix (5, 3) i64 < 6; ie (4) i64 < 5 */
    int k = 0;
    out[k++] = em_gather(x, 1, ix);
    out[k++] = em_index_select(x, 0, ie);
    out[k++] = em_embedding(x, em_reshape(ie, (int64_t[]){2, 2}, 2));
    out[k++] = em_cat((em_tensor_t *[]){x, em_mul_scalar(x, 2), em_slice(x, 1, 0, 2, 1)}, 3, 1);
    out[k++] = em_stack((em_tensor_t *[]){x, em_neg(x)}, 2, 0);
    out[k++] = em_pad(x, (int64_t[]){1, 2, -1, 3}, 4, 0.5);
    out[k++] = em_flip(x, (int[]){0, 1}, 2);
    out[k++] = em_triu(x, 1);
    out[k++] = em_tril(x, -1);
    out[k++] = em_repeat(x, (int64_t[]){2, 1, 3}, 3);
    em_tensor_t *parts[4];
    int np = em_split(x, 4, 1, parts, 4);
    out[k++] = np == 2 ? em_add_scalar(parts[1], 1) : NULL;
    out[k++] = em_scatter_add(em_zeros((int64_t[]){5, 6}, 2, EM_F32), 1, ix, em_ones((int64_t[]){5, 3}, 2, EM_F32));
    out[k++] = em_masked_fill(x, em_gt(x, em_scalar(0.5, EM_F32)), -3.0);
    out[k++] = em_arange(2, 11, 1.5, EM_F32);
    out[k++] = em_add(em_full((int64_t[]){5, 6}, 2, 2.5, EM_F64), x);
    for (int i = 0; i < k; i++)
        if (!out[i]) return em_last_status();
    return EM_OK;
}

static em_status f_random(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    out[0] = em_add(in[0], em_rand((int64_t[]){3, 5}, 2, EM_F32));
    out[1] = em_randn((int64_t[]){7}, 1, EM_F64);
    out[2] = em_randint(-3, 9, (int64_t[]){2, 6}, 2, EM_I32);
    out[3] = em_dropout(in[0], 0.3, true);
    return out[0] && out[1] && out[2] && out[3] ? EM_OK : em_last_status();
}

static void test_data_movement(void) {
    em_scope_t *s = em_scope_begin();
    th_seed(5);
    em_tensor_t *x = th_randn((int64_t[]){5, 6}, 2, EM_F32);
    th_input g1 = {.ndim = 2, .shape = {5, 3}, .dtype = EM_I64, .gen = TH_INDEX, .hi = 6};
    th_input g2 = {.ndim = 1, .shape = {4}, .dtype = EM_I64, .gen = TH_INDEX, .hi = 5};
    em_tensor_t *ix = th_make_input(&g1, EM_I64), *ie = th_make_input(&g2, EM_I64);
    emc_program *p = check_case("gather, index_select, embedding, cat, stack, pad, flip, triu, tril, repeat, split, "
                                "scatter_add, masked_fill, arange, full", f_shape_ops, NULL, (em_tensor_t *[]){x, ix, ie}, 3, 15, 0);
    TH_CHECK(p && emc_program_stats(p)->fallbacks == 1, "only scatter_add falls back (%d)", p ? emc_program_stats(p)->fallbacks : -1);
    emc_program_free(p);
    /* random ops: same numbers as eager for the same generator state */
    em_tensor_t *y = th_randn((int64_t[]){3, 5}, 2, EM_F32);
    emcap_trace tr;
    em_manual_seed(11);
    if (emcap_trace_fn(f_random, NULL, &y, 1, 4, true, &tr) == EM_OK) {
        emc_program *pr = emc_compile_graph(tr.g, NULL);
        em_tensor_t *got[4] = {0}, *want[4] = {0};
        em_manual_seed(11);
        uint64_t seed, base = emt_rng_reserve(tr.rng_count, &seed);
        emc_program_set_rng(pr, seed, base - tr.rng_base);
        TH_CHECK(pr && emc_run(pr, &y, 1, got) == EM_OK, "random ops compile and run");
        em_manual_seed(11);
        f_random(NULL, &y, 1, want, 4);
        for (int j = 0; pr && j < 4; j++) TH_CHECK(max_rel(got[j], want[j]) == 0, "random output %d equals eager", j);
        emc_program_free(pr);
        emcap_trace_free(&tr);
    }
    em_scope_end(s);
}

/* ---- through em_compile: training steps, the disk cache, a broken compiler ----------------------------- */
static double tensor_diff(em_tensor_t *a, em_tensor_t *b) {
    return em_item(em_amax(em_abs(em_sub(em_cast(a, EM_F64), em_cast(b, EM_F64))), NULL, 0, false));
}

typedef struct {
    em_tensor_t *w1, *b1, *w2;
} mlp;

/* test_compile.c's step: forward, loss, backward, SGD update, zero_grad */
static em_status train_step(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    mlp *p = ctx;
    (void)n_in;
    (void)n_out;
    em_tensor_t *h = em_tanh(em_linear(in[0], p->w1, p->b1));
    em_tensor_t *loss = em_mean(em_square(em_sub(em_matmul(h, p->w2), in[1])), NULL, 0, false);
    if (!loss || em_backward(loss) != EM_OK) return em_last_status();
    em_tensor_t *ps[3] = {p->w1, p->b1, p->w2};
    em_no_grad_begin();
    for (int i = 0; i < 3; i++) {
        em_status st = em_assign(ps[i], em_sub(ps[i], em_mul_scalar(em_grad(ps[i]), 0.1)));
        if (st != EM_OK) {
            em_no_grad_end();
            return st;
        }
        em_zero_grad(ps[i]);
    }
    em_no_grad_end();
    out[0] = em_detach(loss);
    return EM_OK;
}

static void init_mlp(mlp *p, uint64_t seed, em_dtype dt) {
    th_seed(seed);
    p->w1 = th_randn((int64_t[]){8, 3}, 2, dt);
    p->b1 = th_randn((int64_t[]){8}, 1, dt);
    p->w2 = th_randn((int64_t[]){8, 1}, 2, dt);
    em_set_requires_grad(p->w1, true);
    em_set_requires_grad(p->b1, true);
    em_set_requires_grad(p->w2, true);
}

static void training_steps(em_dtype dt, double tol) {
    em_scope_t *s = em_scope_begin();
    mlp a, b;
    init_mlp(&a, 99, dt);
    init_mlp(&b, 99, dt);
    em_compiled_t *f = em_compile(train_step, &a, &(em_compile_opts){.fullgraph = true, .backend = "c"});
    for (int step = 0; step < 6; step++) {
        th_seed(1000 + (uint64_t)step);
        em_tensor_t *x = th_randn((int64_t[]){16, 3}, 2, dt), *y = th_randn((int64_t[]){16, 1}, 2, dt);
        em_tensor_t *in[2] = {x, y}, *lc = NULL, *le = NULL;
        TH_CHECK(em_call(f, in, 2, &lc, 1) == EM_OK, "%s compiled step %d", em_dtype_name(dt), step);
        train_step(&b, in, 2, &le, 1);
        TH_CHECK(fabs(em_item(lc) - em_item(le)) <= tol * fabs(em_item(le)), "%s step %d loss: compiled %.12g eager %.12g",
                 em_dtype_name(dt), step, em_item(lc), em_item(le));
        double d = fmax(tensor_diff(a.w1, b.w1), fmax(tensor_diff(a.b1, b.b1), tensor_diff(a.w2, b.w2)));
        TH_CHECK(d <= tol, "%s step %d: parameters match eager (%g)", em_dtype_name(dt), step, d);
    }
    em_compile_stats st = em_compiled_stats(f);
    TH_CHECK(st.compiles == 1 && st.cache_hits == 5 && st.kernels > 0, "%s: one program (%d compiles, %d kernels)",
             em_dtype_name(dt), st.compiles, st.kernels);
    TH_CHECK(em_grad(a.w1) == NULL, "zero_grad inside the step leaves no gradient");
    em_compiled_free(f);
    em_scope_end(s);
}

/* a GPT-style block: layer_norm, attention-free MLP, residual, cross-entropy loss, backward */
static em_status lm_step(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    em_tensor_t **w = ctx;
    (void)n_in;
    (void)n_out;
    em_tensor_t *x = em_embedding(w[0], in[0]);                       /* (T, C) */
    em_tensor_t *h = em_layer_norm(x, w[1], w[2], 1e-5);
    h = em_add(x, em_linear(em_gelu(em_linear(h, w[3], w[4])), w[5], NULL));
    em_tensor_t *logits = em_matmul(em_rms_norm(h, NULL, 1e-6), em_transpose(w[0], 0, 1)); /* (T, V) */
    em_tensor_t *loss = em_cross_entropy(logits, in[1]);
    if (!loss || em_backward(loss) != EM_OK) return em_last_status();
    em_no_grad_begin();
    for (int i = 0; i < 6; i++) {
        em_assign(w[i], em_sub(w[i], em_mul_scalar(em_grad(w[i]), 0.05)));
        em_zero_grad(w[i]);
    }
    em_no_grad_end();
    out[0] = em_detach(loss);
    return EM_OK;
}

static void lm_training(void) {
    em_scope_t *s = em_scope_begin();
    int64_t V = 40, C = 16, T = 12;
    em_tensor_t *wa[6], *wb[6];
    int64_t shapes[6][2] = {{V, C}, {C, 0}, {C, 0}, {4 * C, C}, {4 * C, 0}, {C, 4 * C}};
    th_seed(77);
    for (int i = 0; i < 6; i++) {
        int nd = shapes[i][1] ? 2 : 1;
        wa[i] = em_mul_scalar(th_randn(shapes[i], nd, EM_F64), 0.3);
        em_keep(wa[i]);
        wb[i] = em_keep(em_clone(wa[i]));
        em_set_requires_grad(wa[i], true);
        em_set_requires_grad(wb[i], true);
    }
    th_input ti = {.ndim = 1, .shape = {T}, .dtype = EM_I64, .gen = TH_INDEX, .hi = V};
    em_compiled_t *f = em_compile(lm_step, wa, &(em_compile_opts){.fullgraph = true, .backend = "c"});
    for (int step = 0; step < 3; step++) {
        em_tensor_t *tok = th_make_input(&ti, EM_I64), *tgt = th_make_input(&ti, EM_I64), *lc = NULL, *le = NULL;
        em_tensor_t *in[2] = {tok, tgt};
        TH_CHECK(em_call(f, in, 2, &lc, 1) == EM_OK, "embedding/layer_norm/MLP/cross_entropy step %d compiles", step);
        lm_step(wb, in, 2, &le, 1);
        double d = 0;
        for (int i = 0; i < 6; i++) d = fmax(d, tensor_diff(wa[i], wb[i]));
        TH_CHECK(fabs(em_item(lc) - em_item(le)) < 1e-11 && d < 1e-11, "step %d: loss %.12g vs %.12g, params %g", step,
                 em_item(lc), em_item(le), d);
    }
    TH_CHECK(em_compiled_stats(f).compiles == 1, "one program");
    em_compiled_free(f);
    for (int i = 0; i < 6; i++) {
        em_release(wa[i]);
        em_release(wb[i]);
    }
    em_scope_end(s);
}

/* GPT-2 and Llama (tiny, f64): forward with loss, then a whole SGD training step, compiled */
typedef struct {
    em_model_t *m;
    bool train;
} model_ctx;

static em_status model_step(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    model_ctx *mc = ctx;
    (void)n_in;
    (void)n_out;
    em_tensor_t *loss = NULL;
    out[0] = em_model_forward(mc->m, in[0], in[1], &loss);
    out[1] = loss;
    if (!out[0] || !loss) return em_last_status();
    if (!mc->train) return EM_OK;
    if (em_backward(loss) != EM_OK) return em_last_status();
    em_no_grad_begin();
    int np = em_model_num_params(mc->m);
    for (int i = 0; i < np; i++) {
        em_tensor_t *p = em_model_param(mc->m, i, NULL);
        if (em_grad(p)) em_assign(p, em_sub(p, em_mul_scalar(em_grad(p), 0.1)));
    }
    em_no_grad_end();
    em_model_zero_grad(mc->m);
    out[0] = em_detach(out[0]);
    out[1] = em_detach(loss);
    return EM_OK;
}

static void test_models(void) {
    const char *names[] = {"gpt2-tiny", "llama-tiny"};
    for (int a = 0; a < 2; a++) {
        for (int train = 0; train < 2; train++) {
            em_scope_t *s = em_scope_begin();
            em_model_config cfg;
            em_model_config_preset(names[a], &cfg);
            cfg.dtype = EM_F64;
            cfg.dropout = 0;
            em_model_t *mc = em_model_new(&cfg, 5), *me = em_model_new(&cfg, 5);
            model_ctx cc = {mc, train}, ce = {me, train};
            em_compiled_t *f = em_compile(model_step, &cc, &(em_compile_opts){.fullgraph = true, .backend = "c"});
            th_input ti = {.ndim = 2, .shape = {2, 12}, .dtype = EM_I64, .gen = TH_INDEX, .hi = cfg.vocab_size};
            for (int step = 0; step < 2; step++) {
                em_tensor_t *idx = th_make_input(&ti, EM_I64), *tg = th_make_input(&ti, EM_I64);
                em_tensor_t *in[2] = {idx, tg}, *oc[2] = {0}, *oe[2] = {0};
                TH_CHECK(em_call(f, in, 2, oc, 2) == EM_OK, "%s %s step %d runs compiled", names[a],
                         train ? "training" : "forward", step);
                model_step(&ce, in, 2, oe, 2);
                double dl = max_rel(oc[0], oe[0]), dloss = max_rel(oc[1], oe[1]);
                double dp = 0;
                for (int i = 0; i < em_model_num_params(mc); i++)
                    dp = fmax(dp, tensor_diff(em_model_param(mc, i, NULL), em_model_param(me, i, NULL)));
                TH_CHECK(dl < 1e-11 && dloss < 1e-11 && dp < 1e-11, "%s %s step %d: logits %g, loss %g, params %g",
                         names[a], train ? "training" : "forward", step, dl, dloss, dp);
            }
            em_compile_stats st = em_compiled_stats(f);
            TH_CHECK(st.compiles == 1 && st.kernels > 0, "%s: one program of %d kernels", names[a], st.kernels);
            em_compiled_free(f);
            em_model_free(mc);
            em_model_free(me);
            em_scope_end(s);
        }
    }
}

/* every case of the op-table test runs compiled in tests/test_ops.c (tests/lib/compiled_ops.c) */

/* the function both processes of the disk-cache test compile */
static em_status cached_fn(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    out[0] = em_softmax(em_mul_scalar(in[0], 1.25), -1);
    return out[0] ? EM_OK : em_last_status();
}

static int count_files(const char *dir, const char *suffix) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));) {
        size_t l = strlen(e->d_name), k = strlen(suffix);
        if (l > k && !strcmp(e->d_name + l - k, suffix)) n++;
    }
    closedir(d);
    return n;
}

/* second process: compiles cached_fn again; exit 0 when it was a disk hit with correct values */
static int child_main(void) {
    em_scope_t *s = em_scope_begin();
    em_tensor_t *x = em_reshape(em_arange(0, 24, 1, EM_F32), (int64_t[]){4, 6}, 2), *o = NULL, *e = NULL;
    em_compiled_t *f = em_compile(cached_fn, NULL, &(em_compile_opts){.backend = "c"});
    int rc = em_call(f, &x, 1, &o, 1) == EM_OK ? 0 : 2;
    em_compile_stats st = em_compiled_stats(f);
    cached_fn(NULL, &x, 1, &e, 1);
    if (rc == 0 && !(max_rel(o, e) < 1e-6)) rc = 3;
    if (rc == 0 && st.disk_cache_hits != 1) rc = 4;
    printf("child: %d disk hit(s), %d kernel(s), compile %.1f ms\n", st.disk_cache_hits, st.kernels, st.compile_ms);
    em_compiled_free(f);
    em_scope_end(s);
    return rc;
}

static void test_disk_cache(const char *dir) {
    em_scope_t *s = em_scope_begin();
    em_tensor_t *x = em_reshape(em_arange(0, 24, 1, EM_F32), (int64_t[]){4, 6}, 2), *o = NULL;
    em_compiled_t *f = em_compile(cached_fn, NULL, &(em_compile_opts){.backend = "c"});
    TH_CHECK(em_call(f, &x, 1, &o, 1) == EM_OK, "first process compiles");
    em_compile_stats st = em_compiled_stats(f);
    int so = count_files(dir, ".so");
    em_compiled_free(f);
    /* the second process is this program again (fork alone would inherit OpenMP's threads) */
    pid_t pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", "test_codegen", "--child", dir, (char *)NULL);
        _exit(99);
    }
    int status = -1;
    waitpid(pid, &status, 0);
    TH_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a second process finds the program on disk and compiles "
             "nothing (status %d; first process: %d disk hits)", WIFEXITED(status) ? WEXITSTATUS(status) : -1,
             st.disk_cache_hits);
    TH_CHECK(count_files(dir, ".so") == so, "no new shared object (%d vs %d)", count_files(dir, ".so"), so);
    TH_CHECK(count_files(dir, ".c") == so, "each .so has its source beside it");
    em_scope_end(s);
}

static em_status broken_fn(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    out[0] = em_layer_norm(em_add_scalar(in[0], 3.0), NULL, NULL, 1e-5);
    return out[0] ? EM_OK : em_last_status();
}

static void test_broken_compiler(void) {
    em_scope_t *s = em_scope_begin();
    setenv("EMBER_CC", "false", 1);
    em_tensor_t *x = th_randn((int64_t[]){3, 9}, 2, EM_F32), *o = NULL, *e = NULL;
    em_compiled_t *f = em_compile(broken_fn, NULL, &(em_compile_opts){.backend = "c"});
    em_clear_error();
    TH_CHECK(em_call(f, &x, 1, &o, 1) == EM_OK, "a failing C compiler still gives results (the interpreter runs)");
    TH_CHECK(em_last_status() == EM_ERR_COMPILE && strstr(em_last_error(), ".c") &&
             strstr(em_last_error(), getenv("EMBER_CACHE_DIR")), "the error names the generated file: %s", em_last_error());
    broken_fn(NULL, &x, 1, &e, 1);
    TH_CHECK(max_rel(o, e) == 0, "and the interpreter's values");
    TH_CHECK(em_compiled_stats(f).kernels == 0 && em_compiled_stats(f).compiles == 1, "no kernels were loaded");
    em_compiled_free(f);
    emcap_trace tr;
    if (emcap_trace_fn(broken_fn, NULL, &x, 1, 1, true, &tr) == EM_OK) {
        em_clear_error();
        TH_CHECK(emc_compile_graph(tr.g, NULL) == NULL && em_last_status() == EM_ERR_COMPILE &&
                 strstr(em_last_error(), "C compiler failed"), "emc_compile_graph reports the failure");
        emcap_trace_free(&tr);
    }
    unsetenv("EMBER_CC");
    em_scope_end(s);
}

/* ---- the memory plan: planned peak < the sum of the intermediates ------------------------------------------
 * x @ W1 @ W2 @ W3 @ W4 (four matmul kernels): the three intermediate products need buffers (matmul
 * operands), but each is dead once the next product is computed, so the third reuses the first's
 * bytes: the arena holds two of them, not three. */
static em_status f_chain_mm(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    em_tensor_t *h = in[0];
    for (int i = 1; i <= 4; i++) h = em_matmul(h, in[i]);
    out[0] = h;
    return out[0] ? EM_OK : em_last_status();
}

static void test_memory_plan(void) {
    em_scope_t *s = em_scope_begin();
    th_seed(11);
    em_tensor_t *in[5];
    for (int i = 0; i < 5; i++) in[i] = em_mul_scalar(th_randn((int64_t[]){64, 64}, 2, EM_F32), i ? 0.125 : 1.0);
    const int64_t one = 64 * 64 * 4;
    emc_program *p = check_case("matmul chain", f_chain_mm, NULL, in, 5, 1, 1e-5);
    const emc_stats *st = emc_program_stats(p);
    TH_CHECK(st && st->unplanned_bytes == 3 * one, "three intermediates of %lld bytes (%lld)", (long long)one,
             st ? (long long)st->unplanned_bytes : -1LL);
    TH_CHECK(st && st->planned_peak_bytes == 2 * one && st->planned_peak_bytes < st->unplanned_bytes,
             "the planned peak reuses a dead buffer: %lld < %lld", st ? (long long)st->planned_peak_bytes : -1LL,
             st ? (long long)st->unplanned_bytes : -1LL);
    emc_program_free(p);
    /* the same numbers through em_compile's public stats */
    em_compiled_t *f = em_compile(f_chain_mm, NULL, &(em_compile_opts){.fullgraph = true});
    em_tensor_t *o = NULL;
    TH_CHECK(em_call(f, in, 5, &o, 1) == EM_OK, "the chain runs through em_compile");
    em_compile_stats cs = em_compiled_stats(f);
    TH_CHECK(cs.planned_peak_bytes == 2 * one && cs.unplanned_bytes == 3 * one,
             "em_compiled_stats reports the plan: peak %lld, without reuse %lld", (long long)cs.planned_peak_bytes,
             (long long)cs.unplanned_bytes);
    em_compiled_free(f);
    /* a program with no intermediates has an empty arena */
    em_compiled_t *g = em_compile(cached_fn, NULL, NULL);
    TH_CHECK(em_call(g, in, 1, &o, 1) == EM_OK && em_compiled_stats(g).planned_peak_bytes == 0 &&
             em_compiled_stats(g).unplanned_bytes == 0, "softmax alone needs no arena");
    em_compiled_free(g);
    em_scope_end(s);
}

/* ---- the worked example of docs/compiler.md, and the logs ---------------------------------------------------
 * `test_codegen --example` compiles example_fn in a fresh cache directory through em_compile, calls
 * it twice, compiles it again through a second em_compile (a disk hit), and prints the generated C.
 * Run with EMBER_LOG=graph,fusion,code,cache it prints everything docs/compiler.md shows. The tests
 * below run it as a child process with one log channel at a time and check what each printed, and
 * check that the example's text in docs/compiler.md is still what the code prints. */
static em_status example_fn(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    /* linear + bias + gelu, then a softmax over each row */
    out[0] = em_softmax(em_gelu(em_linear(in[0], in[1], in[2])), -1);
    return out[0] ? EM_OK : em_last_status();
}

static int example_main(void) {
    char tmpl[] = "/tmp/ember-cg-ex-XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (!dir) return 1;
    setenv("EMBER_CACHE_DIR", dir, 1);
    em_scope_t *s = em_scope_begin();
    em_manual_seed(1);
    em_tensor_t *in[3] = {em_randn((int64_t[]){4, 8}, 2, EM_F32), em_randn((int64_t[]){16, 8}, 2, EM_F32),
                          em_randn((int64_t[]){16}, 1, EM_F32)};
    em_tensor_t *o = NULL, *e = NULL;
    int rc = 0;
    em_compiled_t *f = em_compile(example_fn, NULL, &(em_compile_opts){.fullgraph = true});
    for (int i = 0; i < 2 && rc == 0; i++) rc = em_call(f, in, 3, &o, 1) == EM_OK ? 0 : 2;
    em_compiled_t *f2 = em_compile(example_fn, NULL, &(em_compile_opts){.fullgraph = true});
    if (rc == 0) rc = em_call(f2, in, 3, &o, 1) == EM_OK ? 0 : 3;
    example_fn(NULL, in, 3, &e, 1);
    if (rc == 0 && !(max_rel(o, e) < 1e-6)) rc = 4;
    em_compile_stats a = em_compiled_stats(f), b = em_compiled_stats(f2);
    fflush(stderr);
    printf("==== stats: %d kernel(s), first compile: disk hits %d, second: disk hits %d\n", a.kernels,
           a.disk_cache_hits, b.disk_cache_hits);
    DIR *d = opendir(dir);
    for (struct dirent *ent; d && (ent = readdir(d));) {
        size_t l = strlen(ent->d_name);
        if (l < 3 || strcmp(ent->d_name + l - 2, ".c")) continue;
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        FILE *src = fopen(path, "r");
        printf("==== generated C\n");
        for (int ch; src && (ch = fgetc(src)) != EOF;) putchar(ch);
        if (src) fclose(src);
    }
    if (d) closedir(d);
    em_compiled_free(f);
    em_compiled_free(f2);
    em_scope_end(s);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) rc = 5;
    return rc;
}

/* runs `test_codegen --example` with EMBER_LOG=spec; returns its stdout and stderr (malloc'ed) */
static char *run_example(const char *spec, int *status) {
    char path[] = "/tmp/ember-cg-log-XXXXXX";
    int fd = mkstemp(path);
    *status = -1;
    if (fd < 0) return NULL;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        setenv("EMBER_LOG", spec, 1);
        execl("/proc/self/exe", "test_codegen", "--example", (char *)NULL);
        _exit(99);
    }
    int st = -1;
    waitpid(pid, &st, 0);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    off_t n = lseek(fd, 0, SEEK_END);
    char *text = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (text && pread(fd, text, (size_t)n, 0) != (ssize_t)n) n = 0;
    if (text) text[n] = 0;
    close(fd);
    unlink(path);
    return text;
}

static void test_logs(void) {
    static const struct {
        const char *chan;
        const char *want[6];
    } cases[] = {
        {"graph", {"[ember graph] traced graph (", "= softmax(", "[ember graph] after CSE and DCE (",
                   "[ember graph] after decomposition, CSE and DCE (", "= amax(", "= gelu("}},
        {"fusion", {"[ember fusion] %6 gelu is recomputed by its 2 readers", "[ember fusion] kernel 0: matmul",
                    "joins kernel 1 as reduce", "opens kernel 1 (reduce", "[ember fusion] kernel 1: reduce",
                    "[ember fusion] memory plan: arena "}},
        {"code", {"[ember code] generated source: ", ".c (", "[ember code] ", "2 kernel(s) (0 fallback(s)): kernel_0 "
                  "matmul kernel_1 reduce"}},
        {"cache", {"[ember cache] miss: key ", "compiling", "[ember cache] compiled in ", "(command: ",
                   "[ember cache] memory hit: specialization 0 of 1", "[ember cache] disk hit: key "}},
    };
    const char *chans[] = {"graph", "fusion", "code", "cache"};
    for (int c = 0; c < 4; c++) {
        int status;
        char *out = run_example(cases[c].chan, &status);
        TH_CHECK(out && status == 0, "EMBER_LOG=%s: the example runs (exit %d)", cases[c].chan, status);
        for (int k = 0; out && k < 6 && cases[c].want[k]; k++)
            TH_CHECK(strstr(out, cases[c].want[k]) != NULL, "EMBER_LOG=%s prints \"%s\"", cases[c].chan,
                     cases[c].want[k]);
        for (int o = 0; out && o < 4; o++) {
            if (o == c) continue;
            char tag[40];
            snprintf(tag, sizeof tag, "[ember %s]", chans[o]);
            TH_CHECK(strstr(out, tag) == NULL, "EMBER_LOG=%s prints nothing on channel %s", cases[c].chan, chans[o]);
        }
        if (out && getenv("EMBER_TEST_VERBOSE")) printf("---- EMBER_LOG=%s\n%s", cases[c].chan, out);
        free(out);
    }
}

/* ---- deterministic source ---------------------------------------------------------------------------
 * Loop-IR node ids follow creation order, which can follow the C compiler's (unspecified) order of
 * evaluating function arguments; the generated C must not depend on it (the -O3 and sanitizer
 * builds once printed "i0 * 16 + i1" and "i1 + i0 * 16"). */
static char *index_sum_text(int order) {
    emc_pool p;
    emc_pool_init(&p);
    int v0 = emc_var(&p, 0, 8), v1 = emc_var(&p, 1, 12);
    int v0s = emc_ix_mul(&p, v0, 12);
    int flat = emc_ix_add(&p, v0s, v1); /* in [0, 96) */
    int v1m = emc_ix_addc(&p, v1, -3);
    int d = -1, m = -1, c = -1;
    if (order == 0) { /* the same three terms, made in two orders */
        d = emc_ix_div(&p, flat, 5);
        m = emc_ix_mod(&p, flat, 7);
        c = emc_ix_clamp(&p, v1m, 0, 5);
    } else {
        c = emc_ix_clamp(&p, v1m, 0, 5);
        m = emc_ix_mod(&p, flat, 7);
        d = emc_ix_div(&p, flat, 5);
    }
    int d3 = emc_ix_mul(&p, d, 3);
    int s1 = order == 0 ? emc_ix_add(&p, d3, m) : emc_ix_add(&p, m, d3);
    int s2 = order == 0 ? emc_ix_add(&p, s1, c) : emc_ix_add(&p, c, s1);
    int s3 = emc_ix_add(&p, s2, v0);
    char *txt = emc_x_str(&p, s3);
    emc_pool_free(&p);
    return txt;
}

static void test_deterministic_source(void) {
    char *a = index_sum_text(0), *b = index_sum_text(1);
    TH_CHECK(a && b && !strcmp(a, b), "an index sum's text does not depend on the order its terms were made "
             "(%s vs %s)", a ? a : "?", b ? b : "?");
    TH_CHECK(a && strstr(a, "/ 5") && strstr(a, "% 7") && strstr(a, "clamp("), "the sum keeps its div, mod and "
             "clamp terms (%s)", a ? a : "?");
    free(a);
    free(b);
    /* the same function traced and compiled twice in one process: byte-identical source */
    em_scope_t *scope = em_scope_begin();
    em_tensor_t *in[2] = {em_randn((int64_t[]){4, 6, 8}, 3, EM_F32), em_randn((int64_t[]){8}, 1, EM_F32)};
    char *src[2] = {NULL, NULL};
    for (int k = 0; k < 2; k++) {
        em_tensor_t *got[3] = {0}, *want[3] = {0};
        emc_program *p = compile_and_run(f_views, NULL, in, 2, 3, got, want);
        TH_CHECK(p != NULL, "views: compiles (trace %d)", k);
        if (p) src[k] = strdup(emc_program_source(p));
        emc_program_free(p);
    }
    TH_CHECK(src[0] && src[1] && !strcmp(src[0], src[1]), "two traces of one function give byte-identical C");
    free(src[0]);
    free(src[1]);
    em_scope_end(scope);
}

/* em_shares_storage inside a trace: symbolic tensors compare by graph value, not as "both have no
   storage" (which made every copy case untraceable) */
static em_status f_shares(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)n, (void)m;
    int *r = c;
    em_tensor_t *y = em_clone(in[0]), *z = em_add(in[0], in[1]);
    r[0] = em_shares_storage(in[0], in[0]);
    r[1] = em_shares_storage(y, in[0]);
    r[2] = em_shares_storage(in[0], in[1]);
    r[3] = em_shares_storage(z, y);
    r[4] = em_shares_storage(y, y);
    out[0] = em_add(y, z);
    return out[0] ? EM_OK : em_last_status();
}

static void test_shares_storage_symbolic(void) {
    em_scope_t *scope = em_scope_begin();
    em_tensor_t *in[2] = {em_randn((int64_t[]){3, 4}, 2, EM_F32), em_randn((int64_t[]){3, 4}, 2, EM_F32)};
    int r[5] = {-1, -1, -1, -1, -1};
    emcap_trace tr;
    bool ok = emcap_trace_fn(f_shares, r, in, 2, 1, true, &tr) == EM_OK;
    TH_CHECK(ok, "a function calling em_shares_storage traces (%s)", ok ? "" : em_last_error());
    if (ok) emcap_trace_free(&tr);
    TH_CHECK(r[0] == 1 && r[4] == 1, "symbolic: a tensor shares storage with itself (%d %d)", r[0], r[4]);
    TH_CHECK(r[1] == 0 && r[2] == 0 && r[3] == 0, "symbolic: a clone, another input, a new value share nothing "
             "(%d %d %d)", r[1], r[2], r[3]);
    em_scope_end(scope);
}

/* every line of the fenced block after `<!-- example: NAME -->` in docs/compiler.md must be a line of
   (or, for log lines, end a line of) the example's output */
static void check_doc_block(const char *doc, const char *out, const char *name) {
    char marker[80];
    snprintf(marker, sizeof marker, "<!-- example: %s -->", name);
    const char *b = strstr(doc, marker);
    TH_CHECK(b != NULL, "docs/compiler.md has the worked example's block '%s'", name);
    if (!b) return;
    b = strstr(b, "```");
    const char *body = b ? strchr(b, '\n') : NULL, *end = body ? strstr(body + 1, "```") : NULL;
    if (!end) return;
    int lines = 0, bad = 0;
    for (const char *l = body + 1; l < end;) {
        const char *nl = memchr(l, '\n', (size_t)(end - l));
        if (!nl) nl = end;
        char line[600];
        size_t n = (size_t)(nl - l) < sizeof line - 2 ? (size_t)(nl - l) : sizeof line - 2;
        memcpy(line, l, n);
        line[n] = 0;
        l = nl + 1;
        if (n == 0) continue;
        /* every line is compared, index expressions included: the terms of an index sum are
           ordered by structure (loopir.c), not by node ids, so the -O3 and the sanitizer builds
           print the same source */
        lines++;
        char needle[610];
        snprintf(needle, sizeof needle, "%s\n", line); /* the whole line, up to its end */
        const char *hit = strstr(out, needle);
        if (hit && !(hit == out || hit[-1] == '\n' || !strncmp(line, "[ember", 6) || hit[-1] == ' ')) hit = NULL;
        if (!hit) {
            if (bad++ < 3) fprintf(stderr, "  docs/compiler.md (%s): not in the output: %s\n", name, line);
        }
    }
    TH_CHECK(lines > 0 && bad == 0, "docs/compiler.md block '%s' matches the code's output (%d of %d lines differ; "
             "regenerate with EMBER_LOG=graph,fusion,code,cache build/tests/test_codegen --example)", name, bad, lines);
}

static void test_doc_example(void) {
    int status;
    char *out = run_example("graph,fusion,code,cache", &status);
    TH_CHECK(out && status == 0, "the worked example runs (exit %d)", status);
    FILE *f = fopen(EMBER_SRC_DIR "/docs/compiler.md", "r");
    TH_CHECK(f != NULL, "docs/compiler.md is readable");
    if (f && out) {
        static char doc[1 << 20];
        size_t n = fread(doc, 1, sizeof doc - 1, f);
        doc[n] = 0;
        const char *blocks[] = {"traced", "after-passes", "fusion", "kernels"};
        for (int i = 0; i < 4; i++) check_doc_block(doc, out, blocks[i]);
    }
    if (f) fclose(f);
    free(out);
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "--example")) return example_main();
    if (argc == 3 && !strcmp(argv[1], "--child")) {
        setenv("EMBER_CACHE_DIR", argv[2], 1);
        return child_main();
    }
    char tmpl[] = "/tmp/ember-cg-XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (!dir) {
        perror("mkdtemp");
        return 1;
    }
    setenv("EMBER_CACHE_DIR", dir, 1);
    int64_t live = em_live_tensors();
    test_pointwise();
    test_bitwise_math();
    test_reductions();
    test_nn();
    test_matmul();
    test_attention();
    test_data_movement();
    training_steps(EM_F64, 1e-12);
    training_steps(EM_F32, 1e-5);
    lm_training();
    test_models();
    test_disk_cache(dir);
    test_broken_compiler();
    test_memory_plan();
    test_logs();
    test_doc_example();
    test_deterministic_source();
    test_shares_storage_symbolic();
    TH_CHECK(em_live_tensors() == live, "no tensor leaked (%lld live)", (long long)(em_live_tensors() - live));
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (getenv("EMBER_TEST_KEEP_CACHE")) printf("cache kept in %s\n", dir); /* to read the generated C */
    else if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return th_summary();
}
