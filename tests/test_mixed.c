/* test_mixed.c - bf16 mixed precision: em_set_matmul_precision, bf16 matmuls in eager and
 * compiled code, and training under it.
 *
 * The oracle is float64 on the operands rounded to bf16 (round to nearest even, written here
 * independently of Ember): a bf16-precision product must equal sum_k bf16(a_ik) bf16(b_kj) within
 * what an f32 accumulation of K terms can lose (K 2^-23 sum_k |a_ik b_kj|), and the EM_F32 result
 * must miss that bound for most elements (so the setting really changes the arithmetic).
 * Gradients are checked against the float64 reference of the same bf16 formulas (dA = G B^T with
 * G and B rounded, ...), including a backward run under another setting than its forward.
 * Compiled code must give eager's bits (the same emk_gemm called on the same operands; gemm.h
 * promises the bits whatever the slicing), the generated source must call rt->gemm with no
 * fallback, and switching the setting between calls of one compiled function must compile a
 * second program and go back to the first, never reuse the wrong one. bf16 tensors (bf16
 * models) are checked against the reference with a bf16 result's rounding. Finally a tiny GPT
 * trains 50 steps under f32 and under bf16 from the same start: the loss curves must stay close
 * (far closer than a run from another initialisation), both must learn, and a bf16 checkpoint
 * resumes as bf16 bit for bit.
 */
#include "harness.h"

#include "capture/capture.h"
#include "compiler/compiler.h"

#include <stdint.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------------------------------- */
static double bf16r(double v) { /* f32 value rounded to bf16, nearest even (the oracle's own) */
    float f = (float)v;
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return v;
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

static em_tensor_t *randt(const int64_t *shape, int nd, em_dtype dt) {
    em_tensor_t *t = th_randn(shape, nd, EM_F32);
    return dt == EM_F32 ? t : em_cast(t, dt);
}

static bool same_bits(em_tensor_t *a, em_tensor_t *b) {
    if (!a || !b || em_type(a) != em_type(b) || em_numel(a) != em_numel(b)) return false;
    size_t n = (size_t)em_numel(a) * em_dtype_size(em_type(a));
    char *x = malloc(n + 1), *y = malloc(n + 1);
    bool ok = x && y && !em_to_data(a, x, n) && !em_to_data(b, y, n) && !memcmp(x, y, n);
    free(x);
    free(y);
    return ok;
}

static double max_abs_diff(em_tensor_t *a, em_tensor_t *b) {
    th_rt x = th_rt_from(a), y = th_rt_from(b);
    double m = th_numel(&x) == th_numel(&y) ? 0 : INFINITY;
    for (int64_t i = 0; m < INFINITY && i < th_numel(&x); i++) m = fmax(m, fabs(x.d[i] - y.d[i]));
    th_rt_free(&x);
    th_rt_free(&y);
    return m;
}

/* ref (batch..., M, N) = a (..., M, K) @ b (..., K, N) in float64, batch dims broadcast; operands
   rounded to bf16 when round; *mag gets sum_k |a_ik b_kj| per element */
static void ref_matmul(const th_rt *a, const th_rt *b, bool round, th_rt *ref, th_rt *mag) {
    int na = a->ndim, nb = b->ndim, nd = na > nb ? na : nb;
    int64_t shape[TH_MAX_DIMS];
    for (int d = 0; d < nd - 2; d++) {
        int ka = d - (nd - na), kb = d - (nd - nb);
        int64_t sa = ka >= 0 ? a->shape[ka] : 1, sb = kb >= 0 ? b->shape[kb] : 1;
        shape[d] = sa > sb ? sa : sb;
    }
    int64_t M = a->shape[na - 2], K = a->shape[na - 1], N = b->shape[nb - 1];
    shape[nd - 2] = M;
    shape[nd - 1] = N;
    th_rt_alloc(ref, shape, nd, EM_F32);
    th_rt_alloc(mag, shape, nd, EM_F32);
    int64_t idx[TH_MAX_DIMS], ia[TH_MAX_DIMS], ib[TH_MAX_DIMS];
    for (int64_t e = 0; e < th_numel(ref); e++) {
        th_unravel(e, shape, nd, idx);
        memcpy(ia, idx, sizeof ia);
        memcpy(ib, idx, sizeof ib);
        double s = 0, m = 0;
        for (int64_t k = 0; k < K; k++) {
            ia[nd - 1] = k;
            ib[nd - 2] = k;
            double x = a->d[th_bidx(a, ia, nd)], y = b->d[th_bidx(b, ib, nd)];
            if (round) x = bf16r(x), y = bf16r(y);
            s += x * y;
            m += fabs(x * y);
        }
        ref->d[e] = s;
        mag->d[e] = m;
    }
}

static th_rt transpose2(const th_rt *a) { /* the last two dims of a 2-d reference swapped */
    th_rt t;
    th_rt_alloc(&t, (int64_t[]){a->shape[1], a->shape[0]}, 2, a->dtype);
    for (int64_t i = 0; i < a->shape[0]; i++)
        for (int64_t j = 0; j < a->shape[1]; j++) t.d[j * a->shape[0] + i] = a->d[i * a->shape[1] + j];
    return t;
}

/* elements of got (f32 or bf16) outside |got - ref| <= K 2^-23 mag (+ |ref| 2^-8 for a bf16 result,
   + extra) */
static int64_t n_outside(em_tensor_t *got, const th_rt *ref, const th_rt *mag, int64_t K, const double *extra) {
    th_rt g = th_rt_from(got);
    int64_t bad = th_numel(&g) == th_numel(ref) ? 0 : -1;
    double rnd = em_type(got) == EM_BF16 ? 1.0 / 256 : 0;
    for (int64_t i = 0; bad >= 0 && i < th_numel(&g); i++) {
        double tol = (double)K * 0x1p-23 * mag->d[i] + rnd * fabs(ref->d[i]) + (extra ? extra[i] : 0) + 1e-30;
        if (!(fabs(g.d[i] - ref->d[i]) <= tol)) bad++;
    }
    th_rt_free(&g);
    return bad;
}

/* mean |got - ref| */
static double mean_err(em_tensor_t *got, const th_rt *ref) {
    th_rt g = th_rt_from(got);
    double s = 0;
    for (int64_t i = 0; i < th_numel(&g); i++) s += fabs(g.d[i] - ref->d[i]);
    s /= (double)(th_numel(&g) ? th_numel(&g) : 1);
    th_rt_free(&g);
    return s;
}

/* ---- the setting --------------------------------------------------------------------------------- */
static void test_api(void) {
    TH_CHECK(em_get_matmul_precision() == EM_F32, "the default is EM_F32");
    TH_CHECK(em_set_matmul_precision(EM_BF16) == EM_OK && em_get_matmul_precision() == EM_BF16, "EM_BF16 is set");
    TH_CHECK(em_set_matmul_precision(EM_F64) == EM_ERR_ARG, "EM_F64 is refused");
    TH_CHECK_ERR(EM_ERR_ARG, "use EM_F32", "the message names what is allowed: %s", em_last_error());
    TH_CHECK(em_set_matmul_precision((em_dtype)77) == EM_ERR_ARG && em_get_matmul_precision() == EM_BF16,
             "a bad value is refused and the setting stays");
    TH_CHECK(em_set_matmul_precision(EM_F32) == EM_OK && em_get_matmul_precision() == EM_F32, "back to EM_F32");
}

/* ---- eager forward --------------------------------------------------------------------------------- */
/* a @ b under EM_BF16 against the bf16 reference; EM_F32's distance to it must be of the order of
   the bf16 rounding, thousands of times EM_BF16's (f32 accumulation) */
static void check_matmul(const char *what, em_tensor_t *a, em_tensor_t *b) {
    em_scope_t *s = em_scope_begin();
    th_rt ra = th_rt_from(a), rb = th_rt_from(b), ref, mag;
    ref_matmul(&ra, &rb, true, &ref, &mag);
    int64_t K = ra.shape[ra.ndim - 1];
    em_set_matmul_precision(EM_BF16);
    em_tensor_t *y16 = em_matmul(a, b);
    em_set_matmul_precision(EM_F32);
    em_tensor_t *y32 = em_matmul(a, b);
    int64_t bad = y16 ? n_outside(y16, &ref, &mag, K, NULL) : -1;
    double e16 = y16 ? mean_err(y16, &ref) : INFINITY, e32 = y32 ? mean_err(y32, &ref) : 0;
    TH_CHECK(bad == 0, "%s: EM_BF16 equals the f64 reference on bf16-rounded operands (%lld outside)", what,
             (long long)bad);
    TH_CHECK(e32 > 100 * e16, "%s: EM_F32 differs from it (mean error %.3g vs EM_BF16's %.3g)", what, e32, e16);
    th_rt_free(&ra), th_rt_free(&rb), th_rt_free(&ref), th_rt_free(&mag);
    em_scope_end(s);
}

static void test_eager(void) {
    em_scope_t *s = em_scope_begin();
    th_seed(11);
    check_matmul("(37, 300) @ (300, 45)", randt((int64_t[]){37, 300}, 2, EM_F32), randt((int64_t[]){300, 45}, 2, EM_F32));
    check_matmul("(128, 768) @ (768, 256)", randt((int64_t[]){128, 768}, 2, EM_F32),
                 randt((int64_t[]){768, 256}, 2, EM_F32));
    check_matmul("(3, 2, 17, 64) @ (64, 19)", randt((int64_t[]){3, 2, 17, 64}, 4, EM_F32),
                 randt((int64_t[]){64, 19}, 2, EM_F32));
    check_matmul("broadcast (2, 1, 9, 40) @ (3, 40, 11)", randt((int64_t[]){2, 1, 9, 40}, 4, EM_F32),
                 randt((int64_t[]){3, 40, 11}, 3, EM_F32));
    check_matmul("transposed operands", em_transpose(randt((int64_t[]){70, 33}, 2, EM_F32), 0, 1),
                 em_transpose(randt((int64_t[]){50, 70}, 2, EM_F32), 0, 1));

    /* linear with a bias: x (2, 13, 96), w (80, 96), b (80) */
    em_tensor_t *x = randt((int64_t[]){2, 13, 96}, 3, EM_F32), *w = randt((int64_t[]){80, 96}, 2, EM_F32);
    em_tensor_t *b = randt((int64_t[]){80}, 1, EM_F32);
    th_rt rx = th_rt_from(em_reshape(x, (int64_t[]){26, 96}, 2)), rw = th_rt_from(w), rb = th_rt_from(b);
    th_rt rwt = transpose2(&rw), ref, mag;
    ref_matmul(&rx, &rwt, true, &ref, &mag);
    double *extra = malloc(sizeof(double) * (size_t)th_numel(&ref));
    for (int64_t i = 0; i < th_numel(&ref); i++) {
        ref.d[i] += rb.d[i % 80];
        extra[i] = 0x1p-24 * (fabs(ref.d[i]) + fabs(rb.d[i % 80])); /* the f32 bias add */
    }
    em_set_matmul_precision(EM_BF16);
    em_tensor_t *y16 = em_linear(x, w, b);
    em_set_matmul_precision(EM_F32);
    em_tensor_t *y32 = em_linear(x, w, b);
    int64_t bad = y16 ? n_outside(em_reshape(y16, (int64_t[]){26, 80}, 2), &ref, &mag, 96, extra) : -1;
    double e16 = y16 ? mean_err(y16, &ref) : INFINITY, e32 = y32 ? mean_err(y32, &ref) : 0;
    TH_CHECK(bad == 0, "linear + bias under EM_BF16 equals the bf16 reference (%lld outside)", (long long)bad);
    TH_CHECK(e32 > 100 * e16, "linear under EM_F32 differs from it (mean error %.3g vs %.3g)", e32, e16);
    free(extra);
    th_rt_free(&rx), th_rt_free(&rw), th_rt_free(&rb), th_rt_free(&rwt), th_rt_free(&ref), th_rt_free(&mag);

    /* f64 ignores the setting */
    em_tensor_t *a64 = randt((int64_t[]){20, 30}, 2, EM_F64), *b64 = randt((int64_t[]){30, 10}, 2, EM_F64);
    em_tensor_t *p = em_matmul(a64, b64);
    em_set_matmul_precision(EM_BF16);
    em_tensor_t *q = em_matmul(a64, b64);
    em_set_matmul_precision(EM_F32);
    TH_CHECK(same_bits(p, q), "f64 matmuls ignore the setting (same bits)");
    em_scope_end(s);
}

/* ---- gradients ------------------------------------------------------------------------------------ */
static void test_grads(void) {
    em_scope_t *s = em_scope_begin();
    th_seed(12);
    const int64_t M = 24, K = 200, N = 36;
    em_tensor_t *A = randt((int64_t[]){M, K}, 2, EM_F32), *B = randt((int64_t[]){K, N}, 2, EM_F32);
    em_tensor_t *G = randt((int64_t[]){M, N}, 2, EM_F32);
    th_rt ra = th_rt_from(A), rb = th_rt_from(B), rg = th_rt_from(G);
    th_rt rbt = transpose2(&rb), rat = transpose2(&ra), rdA, mA, rdB, mB, ry, my;
    ref_matmul(&rg, &rbt, true, &rdA, &mA); /* dA = G B^T */
    ref_matmul(&rat, &rg, true, &rdB, &mB); /* dB = A^T G */
    ref_matmul(&ra, &rb, false, &ry, &my);
    for (int mode = 0; mode < 2; mode++) { /* 0: all under bf16; 1: forward f32, backward bf16 */
        em_tensor_t *a = em_detach(A), *b = em_detach(B);
        em_set_requires_grad(a, true);
        em_set_requires_grad(b, true);
        em_set_matmul_precision(mode ? EM_F32 : EM_BF16);
        em_tensor_t *y = em_matmul(a, b);
        em_tensor_t *loss = em_sum(em_mul(y, G), NULL, 0, false); /* dL/dy = G exactly */
        em_set_matmul_precision(EM_BF16);
        TH_CHECK(em_backward(loss) == EM_OK, "backward runs");
        em_set_matmul_precision(EM_F32);
        int64_t bA = n_outside(em_grad(a), &rdA, &mA, N, NULL), bB = n_outside(em_grad(b), &rdB, &mB, M, NULL);
        TH_CHECK(bA == 0 && bB == 0, "%s: dA and dB equal the f64 reference of the bf16 formulas (%lld, %lld outside)",
                 mode ? "forward f32, backward bf16" : "under bf16", (long long)bA, (long long)bB);
        if (mode) {
            int64_t fy = n_outside(y, &ry, &my, K, NULL);
            TH_CHECK(fy == 0, "the f32 forward stayed exact f32 (%lld outside the f32 bound)", (long long)fy);
        }
    }
    /* linear: dx = g w, dw = g^T x (bf16 products), db = sum of g (f32) */
    em_tensor_t *x = randt((int64_t[]){3, 10, 64}, 3, EM_F32), *w = randt((int64_t[]){48, 64}, 2, EM_F32);
    em_tensor_t *bb = randt((int64_t[]){48}, 1, EM_F32), *g = randt((int64_t[]){3, 10, 48}, 3, EM_F32);
    em_tensor_t *xv = em_detach(x), *wv = em_detach(w), *bv = em_detach(bb);
    em_set_requires_grad(xv, true), em_set_requires_grad(wv, true), em_set_requires_grad(bv, true);
    em_set_matmul_precision(EM_BF16);
    em_tensor_t *loss = em_sum(em_mul(em_linear(xv, wv, bv), g), NULL, 0, false);
    TH_CHECK(em_backward(loss) == EM_OK, "linear backward runs");
    em_set_matmul_precision(EM_F32);
    th_rt rx = th_rt_from(em_reshape(x, (int64_t[]){30, 64}, 2)), rw = th_rt_from(w);
    th_rt rgg = th_rt_from(em_reshape(g, (int64_t[]){30, 48}, 2)), rxt, rgt, rdx, mdx, rdw, mdw;
    rgt = transpose2(&rgg);
    rxt = rx; /* dw = g^T x */
    ref_matmul(&rgg, &rw, true, &rdx, &mdx);
    ref_matmul(&rgt, &rxt, true, &rdw, &mdw);
    int64_t bx = n_outside(em_reshape(em_grad(xv), (int64_t[]){30, 64}, 2), &rdx, &mdx, 48, NULL);
    int64_t bw = n_outside(em_grad(wv), &rdw, &mdw, 30, NULL);
    th_rt dbr;
    th_rt_alloc(&dbr, (int64_t[]){48}, 1, EM_F32);
    th_rt dbm;
    th_rt_alloc(&dbm, (int64_t[]){48}, 1, EM_F32);
    for (int64_t r = 0; r < 30; r++)
        for (int64_t j = 0; j < 48; j++) dbr.d[j] += rgg.d[r * 48 + j], dbm.d[j] += fabs(rgg.d[r * 48 + j]);
    int64_t bbias = n_outside(em_grad(bv), &dbr, &dbm, 30, NULL);
    TH_CHECK(bx == 0 && bw == 0 && bbias == 0, "linear: dx, dw (bf16 products) and db (f32) equal the reference "
             "(%lld, %lld, %lld outside)", (long long)bx, (long long)bw, (long long)bbias);
    th_rt_free(&ra), th_rt_free(&rb), th_rt_free(&rg), th_rt_free(&rbt), th_rt_free(&rat), th_rt_free(&rdA);
    th_rt_free(&mA), th_rt_free(&rdB), th_rt_free(&mB), th_rt_free(&ry), th_rt_free(&my), th_rt_free(&rx);
    th_rt_free(&rw), th_rt_free(&rgg), th_rt_free(&rgt), th_rt_free(&rdx), th_rt_free(&mdx), th_rt_free(&rdw);
    th_rt_free(&mdw), th_rt_free(&dbr), th_rt_free(&dbm);
    em_scope_end(s);
}

/* ---- compiled ------------------------------------------------------------------------------------- */
static em_status f_mm(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    out[0] = em_matmul(in[0], in[1]);
    return out[0] ? EM_OK : em_last_status();
}

static em_status f_lin_gelu(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    out[0] = em_gelu(em_linear(in[0], in[1], in[2]));
    return out[0] ? EM_OK : em_last_status();
}

static em_status f_lin(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    out[0] = em_linear(in[0], in[1], in[2]);
    return out[0] ? EM_OK : em_last_status();
}

/* attention-like: scores = q k^T (batched over (B, NH)), softmax, @ v; outputs {scores, result} */
static em_status f_attn(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    out[0] = em_matmul(in[0], em_transpose(in[1], -1, -2));
    out[1] = em_matmul(em_softmax(em_mul_scalar(out[0], 0.35), -1), in[2]);
    return out[1] ? EM_OK : em_last_status();
}

/* the same product under both settings in one function: CSE must keep them apart */
static em_status f_both(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    em_dtype was = em_get_matmul_precision();
    em_set_matmul_precision(EM_F32);
    out[0] = em_matmul(in[0], in[1]);
    em_set_matmul_precision(EM_BF16);
    out[1] = em_matmul(in[0], in[1]);
    em_set_matmul_precision(was);
    return out[1] ? EM_OK : em_last_status();
}

/* a graph break (em_item) between two matmuls: the function runs as compiled segments */
static em_status f_break(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    em_tensor_t *y = em_matmul(in[0], in[1]);
    double v = em_item(em_sum(y, NULL, 0, false));
    out[0] = em_mul_scalar(em_matmul(em_transpose(in[1], 0, 1), em_transpose(in[0], 0, 1)), v > 0 ? 1.0 : -1.0);
    out[1] = y;
    return out[0] ? EM_OK : em_last_status();
}

/* compiles fn through em_compile and runs it on in; its outputs and eager's, under the current setting */
static bool run_both(em_traceable_fn fn, em_tensor_t *const *in, int n_in, int n_out, em_tensor_t **got,
                     em_tensor_t **want) {
    em_compiled_t *f = em_compile(fn, NULL, NULL);
    bool ok = f && em_call(f, in, n_in, got, n_out) == EM_OK && fn(NULL, in, n_in, want, n_out) == EM_OK;
    em_compiled_free(f);
    return ok;
}

/* traces fn and compiles the graph directly: the program (caller frees) for source and stats checks */
static emc_program *program_of(em_traceable_fn fn, em_tensor_t *const *in, int n_in, int n_out) {
    emcap_trace tr;
    if (emcap_trace_fn(fn, NULL, in, n_in, n_out, true, &tr) != EM_OK) return NULL;
    emc_program *p = emc_compile_graph(tr.g, NULL);
    emcap_trace_free(&tr);
    return p;
}

static void test_compiled(void) {
    em_scope_t *s = em_scope_begin();
    th_seed(13);
    em_set_matmul_precision(EM_BF16);
    em_tensor_t *got[2] = {0}, *want[2] = {0};
    struct { const char *what; int64_t a[4], b[4]; int na, nb; } mm[] = {
        {"matmul (64, 256) @ (256, 384) (threads split the columns)", {64, 256}, {256, 384}, 2, 2},
        {"matmul (300, 96) @ (96, 40) (threads split the rows)", {300, 96}, {96, 40}, 2, 2},
        {"batched (4, 6, 16, 32) @ (4, 6, 32, 16)", {4, 6, 16, 32}, {4, 6, 32, 16}, 4, 4},
        {"folded batch (4, 32, 64) @ (64, 128)", {4, 32, 64}, {64, 128}, 3, 2},
    };
    for (size_t i = 0; i < sizeof mm / sizeof *mm; i++) {
        em_tensor_t *in[2] = {randt(mm[i].a, mm[i].na, EM_F32), randt(mm[i].b, mm[i].nb, EM_F32)};
        bool ok = run_both(f_mm, in, 2, 1, got, want);
        TH_CHECK(ok && same_bits(got[0], want[0]), "%s under EM_BF16: compiled == eager, bitwise", mm[i].what);
    }
    /* linear + bias + gelu: one fused matmul kernel calling rt->gemm */
    em_tensor_t *li[3] = {randt((int64_t[]){4, 16, 64}, 3, EM_F32), randt((int64_t[]){96, 64}, 2, EM_F32),
                          randt((int64_t[]){96}, 1, EM_F32)};
    TH_CHECK(run_both(f_lin_gelu, li, 3, 1, got, want) && same_bits(got[0], want[0]),
             "gelu(linear(x, w, b)) under EM_BF16: compiled == eager, bitwise");
    emc_program *p = program_of(f_lin_gelu, li, 3, 1);
    TH_CHECK(p && strstr(emc_program_source(p), "rt->gemm(") && !strstr(emc_program_source(p), "rt->sgemm(") &&
             emc_program_stats(p)->kernels == 1 && emc_program_stats(p)->fallbacks == 0,
             "it is one kernel calling rt->gemm, the bias and gelu its epilogue (%d kernels)",
             p ? emc_program_stats(p)->kernels : -1);
    emc_program_free(p);
    em_set_matmul_precision(EM_F32);
    p = program_of(f_lin_gelu, li, 3, 1);
    TH_CHECK(p && strstr(emc_program_source(p), "rt->sgemm(") && !strstr(emc_program_source(p), "rt->gemm("),
             "under EM_F32 the same function calls rt->sgemm");
    emc_program_free(p);
    em_set_matmul_precision(EM_BF16);
    /* attention-like */
    em_tensor_t *qkv[3] = {randt((int64_t[]){2, 4, 16, 8}, 4, EM_F32), randt((int64_t[]){2, 4, 16, 8}, 4, EM_F32),
                           randt((int64_t[]){2, 4, 16, 8}, 4, EM_F32)};
    bool ok = run_both(f_attn, qkv, 3, 2, got, want);
    TH_CHECK(ok && same_bits(got[0], want[0]), "attention scores (batched q k^T) under EM_BF16: compiled == eager, bitwise");
    double d = ok ? max_abs_diff(got[1], want[1]) : INFINITY;
    TH_CHECK(d <= 1e-6, "softmax(scores) @ v: compiled == eager within 1e-6 (%g)", d);
    em_set_matmul_precision(EM_F32);

    /* both settings in one traced function: two nodes, each with its own bits */
    em_tensor_t *ab[2] = {randt((int64_t[]){20, 50}, 2, EM_F32), randt((int64_t[]){50, 30}, 2, EM_F32)};
    em_compiled_t *f = em_compile(f_both, NULL, NULL);
    em_tensor_t *o[2] = {0};
    ok = f && em_call(f, ab, 2, o, 2) == EM_OK;
    em_compiled_free(f);
    em_tensor_t *e32 = em_matmul(ab[0], ab[1]);
    em_set_matmul_precision(EM_BF16);
    em_tensor_t *e16 = em_matmul(ab[0], ab[1]);
    em_set_matmul_precision(EM_F32);
    TH_CHECK(ok && same_bits(o[0], e32) && same_bits(o[1], e16) && !same_bits(e16, e32),
             "f32 and bf16 products of the same operands in one graph stay apart (CSE compares attrs)");

    /* switching the setting between calls */
    f = em_compile(f_mm, NULL, NULL);
    em_tensor_t *r1 = NULL, *r2 = NULL, *r3 = NULL, *r4 = NULL;
    em_call(f, ab, 2, &r1, 1);
    em_set_matmul_precision(EM_BF16);
    em_call(f, ab, 2, &r2, 1);
    em_call(f, ab, 2, &r4, 1);
    em_set_matmul_precision(EM_F32);
    em_call(f, ab, 2, &r3, 1);
    em_compile_stats st = em_compiled_stats(f);
    TH_CHECK(same_bits(r1, e32) && same_bits(r2, e16) && same_bits(r4, e16) && same_bits(r3, e32),
             "switching the setting between calls gives each setting's own bits (f32, bf16, bf16, f32)");
    TH_CHECK(st.compiles == 2 && st.recompiles == 1 && st.cache_hits == 2,
             "one program per setting: %d compiles, %d recompile, %d cache hits", st.compiles, st.recompiles,
             st.cache_hits);
    em_compiled_free(f);

    /* graph breaks: segments are found again by their text, which carries the setting */
    f = em_compile(f_break, NULL, NULL);
    em_tensor_t *bo[2][2] = {{0}}, *be[2][2] = {{0}};
    for (int k = 0; k < 2; k++) {
        em_set_matmul_precision(k ? EM_BF16 : EM_F32);
        em_call(f, ab, 2, bo[k], 2);
        f_break(NULL, ab, 2, be[k], 2);
    }
    em_set_matmul_precision(EM_F32);
    TH_CHECK(em_compiled_stats(f).graph_breaks > 0 && same_bits(bo[0][0], be[0][0]) && same_bits(bo[0][1], be[0][1]) &&
                 same_bits(bo[1][0], be[1][0]) && same_bits(bo[1][1], be[1][1]) && !same_bits(bo[0][1], bo[1][1]),
             "a function with a graph break: each setting's segments give eager's bits (%d breaks)",
             em_compiled_stats(f).graph_breaks);
    em_compiled_free(f);

    /* the graph text carries the attribute; a bad one is refused */
    em_tensor_t *sym_in[2] = {ab[0], ab[1]};
    emcap_trace tr;
    em_set_matmul_precision(EM_BF16);
    bool traced = emcap_trace_fn(f_mm, NULL, sym_in, 2, 1, true, &tr) == EM_OK;
    em_set_matmul_precision(EM_F32);
    char *text = traced ? emg_print(tr.g) : NULL;
    TH_CHECK(text && strstr(text, "matmul(%0, %1) j=[3, 0, 0, 0]"), "the traced node prints j=[3, 0, 0, 0]: %s",
             text ? text : "(none)");
    free(text);
    if (traced) emcap_trace_free(&tr);
    emg_graph *bad = emg_parse("graph(%0: f32[2, 3], %1: f32[3, 4]) {\n"
                               "  %2: f32[2, 4] = matmul(%0, %1) j=[7, 0, 0, 0]\n"
                               "  return (%2)\n"
                               "}\n");
    TH_CHECK(bad == NULL && strstr(em_last_error(), "precision attribute"), "a matmul with j[0] = 7 is refused: %s",
             em_last_error());
    emg_free(bad);
    em_scope_end(s);
}

/* ---- bf16 tensors ----------------------------------------------------------------------------------- */
static void test_bf16_tensors(void) {
    em_scope_t *s = em_scope_begin();
    th_seed(14);
    em_tensor_t *a = randt((int64_t[]){3, 40, 160}, 3, EM_BF16), *b = randt((int64_t[]){160, 72}, 2, EM_BF16);
    th_rt ra = th_rt_from(a), rb = th_rt_from(b), ref, mag;
    ref_matmul(&ra, &rb, false, &ref, &mag);
    em_tensor_t *in[2] = {a, b}, *got = NULL, *want = NULL;
    bool ok = run_both(f_mm, in, 2, 1, &got, &want);
    TH_CHECK(ok && em_type(want) == EM_BF16 && n_outside(want, &ref, &mag, 160, NULL) == 0,
             "bf16 matmul, eager: a bf16 result within rounding of the f64 reference");
    TH_CHECK(ok && n_outside(got, &ref, &mag, 160, NULL) == 0 && same_bits(got, want), "compiled: the same bits");
    emc_program *p = program_of(f_mm, in, 2, 1);
    TH_CHECK(p && emc_program_stats(p)->fallbacks == 0 && strstr(emc_program_source(p), "rt->gemm("),
             "compiled bf16 matmul calls rt->gemm (no fallback)");
    emc_program_free(p);
    th_rt_free(&ra), th_rt_free(&rb), th_rt_free(&ref), th_rt_free(&mag);

    /* linear with a bias: the product rounded to bf16, plus b, rounded again */
    em_tensor_t *x = randt((int64_t[]){2, 24, 96}, 3, EM_BF16), *w = randt((int64_t[]){64, 96}, 2, EM_BF16);
    em_tensor_t *bb = randt((int64_t[]){64}, 1, EM_BF16);
    th_rt rx = th_rt_from(em_reshape(x, (int64_t[]){48, 96}, 2)), rw = th_rt_from(w), rbb = th_rt_from(bb);
    th_rt rwt = transpose2(&rw);
    ref_matmul(&rx, &rwt, false, &ref, &mag);
    double *extra = malloc(sizeof(double) * (size_t)th_numel(&ref));
    for (int64_t i = 0; i < th_numel(&ref); i++) {
        extra[i] = (fabs(ref.d[i]) + fabs(rbb.d[i % 64])) / 256; /* the first rounding, before the bias */
        ref.d[i] += rbb.d[i % 64];
    }
    em_tensor_t *li[3] = {x, w, bb};
    ok = run_both(f_lin, li, 3, 1, &got, &want);
    TH_CHECK(ok && em_type(want) == EM_BF16 &&
                 n_outside(em_reshape(want, (int64_t[]){48, 64}, 2), &ref, &mag, 96, extra) == 0,
             "bf16 linear + bias, eager: within rounding of the reference");
    TH_CHECK(ok && same_bits(got, want), "compiled bf16 linear + bias: eager's bits");
    ok = run_both(f_lin_gelu, li, 3, 1, &got, &want);
    p = program_of(f_lin_gelu, li, 3, 1);
    TH_CHECK(ok && same_bits(got, want) && p && emc_program_stats(p)->kernels == 1 &&
                 emc_program_stats(p)->fallbacks == 0,
             "compiled bf16 gelu(linear): eager's bits, one kernel with its epilogue (%d kernels)",
             p ? emc_program_stats(p)->kernels : -1);
    emc_program_free(p);
    free(extra);
    th_rt_free(&rx), th_rt_free(&rw), th_rt_free(&rbb), th_rt_free(&rwt), th_rt_free(&ref), th_rt_free(&mag);
    em_scope_end(s);
}

/* ---- training ------------------------------------------------------------------------------------------ */
#define STEPS 50

/* a learnable token stream: an order-1 Markov chain over 64 ids with 3 likely successors each */
static em_dataset_t *make_data(void) {
    enum { N = 40000 };
    int32_t *ids = malloc(sizeof(int32_t) * N);
    uint64_t r = 88172645463325252ull;
    int32_t cur = 0;
    for (int i = 0; i < N; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        int pick = (int)(r % 10);
        cur = pick < 6 ? (cur * 7 + 3) % 64 : pick < 9 ? (cur * 5 + 11) % 64 : (int32_t)((r >> 20) % 64);
        ids[i] = cur;
    }
    em_dataset_t *d = em_dataset_new(ids, N, 64, 0.1);
    free(ids);
    return d;
}

static em_trainer_t *tiny_trainer(const em_dataset_t *d, uint64_t init_seed, em_dtype prec, bool eager) {
    em_model_config mc;
    em_model_config_preset("gpt2-tiny", &mc);
    em_model_t *m = em_model_new(&mc, init_seed);
    em_train_config tc;
    em_train_config_default(&tc);
    tc.batch = 8;
    tc.seq_len = 16;
    tc.max_steps = STEPS;
    tc.warmup = 5;
    tc.lr = 3e-3;
    tc.min_lr = 3e-4;
    tc.eager = eager;
    tc.precision = prec;
    em_trainer_t *t = m ? em_trainer_new(m, d, &tc) : NULL;
    if (!t) em_model_free(m);
    return t;
}

static bool run_curve(em_trainer_t *t, double *loss, int n) {
    for (int i = 0; i < n; i++) {
        em_train_stats st;
        if (!t || em_trainer_step(t, &st) != EM_OK) return false;
        loss[i] = st.loss;
    }
    return true;
}

static void test_training(void) {
    em_dataset_t *d = make_data();
    TH_CHECK(d != NULL, "dataset");
    if (!d) return;
    double f32[STEPS], bf[STEPS], other[STEPS];
    em_trainer_t *a = tiny_trainer(d, 5, EM_F32, false), *b = tiny_trainer(d, 5, EM_BF16, false);
    em_trainer_t *c = tiny_trainer(d, 6, EM_F32, false);
    bool ok = run_curve(a, f32, STEPS) && run_curve(b, bf, STEPS) && run_curve(c, other, STEPS);
    TH_CHECK(ok, "three runs of %d compiled steps: %s", STEPS, ok ? "ok" : em_last_error());
    TH_CHECK(em_get_matmul_precision() == EM_F32, "the trainer put the caller's setting back");
    double dmax = 0, dmean = 0, nmax = 0, nmean = 0;
    bool differ = false;
    for (int i = 0; i < STEPS; i++) {
        double e = fabs(bf[i] - f32[i]), n = fabs(other[i] - f32[i]);
        dmax = fmax(dmax, e), dmean += e / STEPS;
        nmax = fmax(nmax, n), nmean += n / STEPS;
        differ |= bf[i] != f32[i];
    }
    printf("  tiny GPT, %d steps: loss %.4f -> f32 %.4f, bf16 %.4f; |bf16 - f32| max %.4f mean %.4f; "
           "another init: max %.4f mean %.4f\n", STEPS, f32[0], f32[STEPS - 1], bf[STEPS - 1], dmax, dmean, nmax, nmean);
    TH_CHECK(ok && differ, "the bf16 run is not the f32 run (the setting took effect)");
    TH_CHECK(ok && f32[STEPS - 1] < f32[0] - 1.0 && bf[STEPS - 1] < bf[0] - 1.0, "both runs learn (%.3f -> %.3f, %.3f -> %.3f)",
             f32[0], f32[STEPS - 1], bf[0], bf[STEPS - 1]);
    TH_CHECK(ok && dmax <= 0.01 && dmean <= 0.003, "bf16 follows the f32 curve: max %.4f <= 0.01, mean %.4f <= 0.003",
             dmax, dmean);
    TH_CHECK(ok && dmean * 10 <= nmean, "far closer than another initialisation (mean %.4f vs %.4f)", dmean, nmean);
    em_trainer_free(a);
    em_trainer_free(c);

    /* eager == compiled under bf16 (a training step), and the checkpoint keeps the setting */
    em_trainer_t *e = tiny_trainer(d, 5, EM_BF16, true);
    double el[3];
    ok = run_curve(e, el, 3);
    double ed = 0;
    for (int i = 0; ok && i < 3; i++) ed = fmax(ed, fabs(el[i] - bf[i]));
    TH_CHECK(ok && ed <= 1e-4, "eager bf16 steps follow the compiled ones within 1e-4 (%g; test_train's bound)", ed);
    em_trainer_free(e);

    char path[] = "/tmp/ember-mixed-XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) close(fd);
    em_trainer_t *r = NULL;
    double l1[2], l2[2];
    ok = fd >= 0 && em_trainer_save(b, path) == EM_OK && (r = em_trainer_resume(path, d)) != NULL;
    TH_CHECK(ok && em_trainer_config(r)->precision == EM_BF16, "a bf16 checkpoint resumes as bf16");
    ok = ok && run_curve(b, l1, 2) && run_curve(r, l2, 2);
    TH_CHECK(ok && l1[0] == l2[0] && l1[1] == l2[1], "and continues bit for bit (%.6f %.6f vs %.6f %.6f)", l1[0], l1[1],
             l2[0], l2[1]);
    em_trainer_free(r);
    em_trainer_free(b);
    if (fd >= 0) unlink(path);
    em_dataset_free(d);
}

int main(void) {
    char tmpl[] = "/tmp/ember-mixed-cache-XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (!dir) {
        perror("mkdtemp");
        return 1;
    }
    setenv("EMBER_CACHE_DIR", dir, 1);
    int64_t live = em_live_tensors();
    test_api();
    test_eager();
    test_grads();
    test_compiled();
    test_bf16_tensors();
    test_training();
    em_set_matmul_precision(EM_F32);
    TH_CHECK(em_live_tensors() == live, "no tensor leaked (%lld live)", (long long)(em_live_tensors() - live));
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return th_summary();
}
