/* test_optim.c - optim/: AdamW and SGD against hand-written float64 updates, clipping by global
 * norm, the cosine schedule, gradient accumulation, optimizer state for checkpoints, errors.
 *
 * Gradients come from a loss whose gradient is known in closed form, L = sum(a * p + p^2 / 2)
 * (so g = a + p), and the reference updates are the published formulas in plain C, step by step.
 * Every test runs inside a scope and checks that em_live_tensors() returns to where it started.
 */
#include "harness.h"

#define CHECK_LIVE(start, what) \
    TH_CHECK(em_live_tensors() == (start), "%s: no tensor leaked (%lld live, %lld at start)", what, \
             (long long)em_live_tensors(), (long long)(start))

/* a leaf parameter with values v (n of them, shaped as given) */
static em_tensor_t *leaf(const double *v, const int64_t *shape, int nd, em_dtype dt) {
    em_tensor_t *t = em_contiguous(em_cast(em_from_data(v, shape, nd, EM_F64), dt));
    t = em_detach(t);
    em_set_requires_grad(t, true);
    return t;
}

/* backward of L = sum over params of sum(a_i * p_i + p_i^2 / 2): g_i = a_i + p_i */
static void backward_quad(em_tensor_t **ps, em_tensor_t **as, int n) {
    em_scope_t *s = em_scope_begin();
    em_tensor_t *L = NULL;
    for (int i = 0; i < n; i++) {
        em_tensor_t *t = em_sum(em_add(em_mul(as[i], ps[i]), em_mul_scalar(em_square(ps[i]), 0.5)), NULL, 0, false);
        L = L ? em_add(L, t) : t;
    }
    em_backward(L);
    em_scope_end(s);
}

static void values(em_tensor_t *t, double *out) {
    em_scope_t *s = em_scope_begin();
    em_to_data(em_cast(t, EM_F64), out, sizeof(double) * (size_t)em_numel(t));
    em_scope_end(s);
}

static double max_err(const double *a, const double *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(a[i] - b[i]) / (1 + fabs(b[i])));
    return m;
}

/* ---- AdamW ---------------------------------------------------------------------------------------- */
static void check_adamw(em_dtype dt, int64_t big, double tol, const char *what) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    /* param 0: (2, 3) decayed; param 1: (big,) not decayed (big > the update's chunk size exercises
       the chunked path) */
    const int64_t n0 = 6, n1 = big;
    double *p0 = malloc(sizeof(double) * n0), *a0 = malloc(sizeof(double) * n0);
    double *p1 = malloc(sizeof(double) * n1), *a1 = malloc(sizeof(double) * n1);
    th_seed(1);
    for (int64_t i = 0; i < n0; i++) { p0[i] = th_uniform() * 2 - 1; a0[i] = th_uniform() * 4 - 2; }
    for (int64_t i = 0; i < n1; i++) { p1[i] = th_uniform() * 2 - 1; a1[i] = th_uniform() * 4 - 2; }
    em_tensor_t *ps[2] = {leaf(p0, (int64_t[]){2, 3}, 2, dt), leaf(p1, &n1, 1, dt)};
    em_tensor_t *as[2] = {em_cast(em_from_data(a0, (int64_t[]){2, 3}, 2, EM_F64), dt),
                          em_cast(em_from_data(a1, &n1, 1, EM_F64), dt)};
    const double lr = 0.05, b1 = 0.8, b2 = 0.9, eps = 1e-3, wd = 0.3;
    em_optimizer_t *o = em_adamw_new(ps, 2, lr, b1, b2, eps, wd);
    TH_CHECK(o && em_optimizer_set_weight_decay(o, 1, 0.0) == EM_OK, "%s: AdamW with a per-parameter decay", what);
    double *m0 = calloc(n0, sizeof(double)), *v0 = calloc(n0, sizeof(double));
    double *m1 = calloc(n1, sizeof(double)), *v1 = calloc(n1, sizeof(double));
    double *got = malloc(sizeof(double) * (size_t)(n1 > n0 ? n1 : n0)), worst = 0;
    for (int t = 1; t <= 3; t++) {
        backward_quad(ps, as, 2);
        TH_CHECK(em_optimizer_step(o) == EM_OK, "%s: step %d", what, t);
        em_optimizer_zero_grad(o);
        /* the reference: decoupled decay, moments, bias correction (eps outside the sqrt) */
        double bc1 = 1 - pow(b1, t), bc2 = 1 - pow(b2, t);
        for (int which = 0; which < 2; which++) {
            double *p = which ? p1 : p0, *a = which ? a1 : a0, *m = which ? m1 : m0, *v = which ? v1 : v0;
            double dec = which ? 0 : wd;
            for (int64_t i = 0; i < (which ? n1 : n0); i++) {
                double g = a[i] + p[i];
                p[i] *= 1 - lr * dec;
                m[i] = b1 * m[i] + (1 - b1) * g;
                v[i] = b2 * v[i] + (1 - b2) * g * g;
                p[i] -= lr * (m[i] / bc1) / (sqrt(v[i] / bc2) + eps);
            }
        }
        values(ps[0], got);
        worst = fmax(worst, max_err(got, p0, n0));
        values(ps[1], got);
        worst = fmax(worst, max_err(got, p1, n1));
    }
    TH_CHECK(worst < tol, "%s: 3 steps equal the float64 reference (worst %g)", what, worst);
    TH_CHECK(em_optimizer_get_step(o) == 3, "%s: step count 3", what);
    /* state: 2 tensors per parameter, named by parameter index */
    const char *name;
    TH_CHECK(em_optimizer_num_state(o) == 4, "%s: four state tensors", what);
    em_tensor_t *st = em_optimizer_state(o, 3, &name);
    TH_CHECK(st && !strcmp(name, "1.exp_avg_sq") && em_numel(st) == n1, "%s: state 3 is 1.exp_avg_sq", what);
    values(st, got);
    TH_CHECK(max_err(got, v1, n1) < tol, "%s: and holds v", what);
    free(p0); free(a0); free(p1); free(a1); free(m0); free(v0); free(m1); free(v1); free(got);
    em_optimizer_free(o);
    em_scope_end(s);
    CHECK_LIVE(live, what);
}

/* ---- SGD ------------------------------------------------------------------------------------------ */
static void check_sgd(double momentum, double wd, int64_t n, const char *what) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    double *p = malloc(sizeof(double) * n), *a = malloc(sizeof(double) * n), *buf = calloc(n, sizeof(double));
    double *got = malloc(sizeof(double) * n);
    th_seed(2);
    for (int64_t i = 0; i < n; i++) { p[i] = th_uniform() * 2 - 1; a[i] = th_uniform() * 4 - 2; }
    em_tensor_t *ps[1] = {leaf(p, &n, 1, EM_F64)}, *as[1] = {em_from_data(a, &n, 1, EM_F64)};
    const double lr = 0.1;
    em_optimizer_t *o = em_sgd_new(ps, 1, lr, momentum, wd);
    double worst = 0;
    for (int t = 1; t <= 3; t++) {
        backward_quad(ps, as, 1);
        em_optimizer_step(o);
        em_optimizer_zero_grad(o);
        for (int64_t i = 0; i < n; i++) {
            double d = a[i] + p[i] + wd * p[i];
            if (momentum != 0) d = buf[i] = t == 1 ? d : momentum * buf[i] + d; /* PyTorch: buf = d first */
            p[i] -= lr * d;
        }
        values(ps[0], got);
        worst = fmax(worst, max_err(got, p, n));
    }
    TH_CHECK(worst < 1e-14, "%s: 3 steps equal the float64 reference (worst %g)", what, worst);
    TH_CHECK(em_optimizer_num_state(o) == (momentum != 0 ? 1 : 0), "%s: momentum buffer only with momentum", what);
    free(p); free(a); free(buf); free(got);
    em_optimizer_free(o);
    em_scope_end(s);
    CHECK_LIVE(live, what);
}

/* ---- clipping ---------------------------------------------------------------------------------------- */
static void test_clip(void) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    /* grads (3, 4) and (0, 0, ..., 12) of a big vector: global norm 13 */
    const int64_t big = 100000;
    double *z = calloc(big, sizeof(double));
    em_tensor_t *ps[3] = {leaf((double[]){0, 0}, (int64_t[]){2}, 1, EM_F32), leaf(z, &big, 1, EM_F32),
                          leaf((double[]){5}, (int64_t[]){1}, 1, EM_F32)};
    em_tensor_t *w0 = em_from_data((double[]){3, 4}, (int64_t[]){2}, 1, EM_F64);
    z[big - 1] = 12;
    em_tensor_t *w1 = em_from_data(z, &big, 1, EM_F64);
    em_backward(em_add(em_sum(em_mul(ps[0], w0), NULL, 0, false), em_sum(em_mul(ps[1], w1), NULL, 0, false)));
    /* ps[2] has no gradient: skipped */
    double norm = em_clip_grad_norm(ps, 3, 100.0);
    TH_CHECK(fabs(norm - 13) < 1e-5, "global norm 13 (got %.8g)", norm);
    TH_CHECK(em_item(em_select(em_grad(ps[0]), 0, 0)) == 3, "below max_norm: gradients untouched");
    norm = em_clip_grad_norm(ps, 3, 6.5);
    TH_CHECK(fabs(norm - 13) < 1e-5, "returns the norm before clipping (got %.8g)", norm);
    double c = 6.5 / (13 + 1e-6);
    TH_CHECK(fabs(em_item(em_select(em_grad(ps[0]), 0, 1)) - 4 * c) < 1e-6 &&
             fabs(em_item(em_select(em_grad(ps[1]), 0, big - 1)) - 12 * c) < 1e-6, "scaled by max_norm / (norm + 1e-6)");
    TH_CHECK(fabs(em_clip_grad_norm(ps, 3, 100.0) - 6.5) < 1e-5, "the new norm is max_norm");
    TH_CHECK(em_grad(ps[2]) == NULL, "a parameter without gradient stays without");
    /* the tensor form: no host read, always multiplies by min(1, coef) */
    em_tensor_t *tn = em_clip_grad_norm_tensor(ps, 3, 100.0);
    TH_CHECK(tn && em_ndim(tn) == 0 && em_type(tn) == EM_F64 && fabs(em_item(tn) - 6.5) < 1e-5,
             "em_clip_grad_norm_tensor returns the norm as a 0-dim f64 tensor");
    TH_CHECK(fabs(em_item(em_select(em_grad(ps[0]), 0, 1)) - 4 * c) < 1e-6, "coefficient 1: unchanged");
    tn = em_clip_grad_norm_tensor(ps, 3, 3.25);
    TH_CHECK(fabs(em_item(em_select(em_grad(ps[1]), 0, big - 1)) - 12 * c * 3.25 / (6.5 + 1e-6)) < 1e-6,
             "and scales like em_clip_grad_norm");
    TH_CHECK(em_clip_grad_norm_tensor(ps, 3, -1) == NULL, "bad max_norm");
    TH_CHECK(em_clip_grad_norm(ps, 3, 0) == -1 && em_last_status() == EM_ERR_ARG, "max_norm 0 is an error (-1)");
    TH_CHECK(em_clip_grad_norm(NULL, 3, 1) == -1, "NULL params");
    em_tensor_t *withnull[2] = {ps[0], NULL};
    TH_CHECK(em_clip_grad_norm(withnull, 2, 1) == -1, "a NULL entry");
    TH_CHECK_ERR(EM_ERR_ARG, "params[1]", "the message names it");
    free(z);
    em_scope_end(s);
    CHECK_LIVE(live, "clip");
}

/* ---- schedule -------------------------------------------------------------------------------------------- */
static void test_schedule(void) {
    const double mx = 1e-3, mn = 1e-4;
    TH_CHECK(fabs(em_lr_cosine(0, 10, 110, mx, mn) - mx / 10) < 1e-18, "warm-up starts at max_lr / warmup");
    TH_CHECK(fabs(em_lr_cosine(4, 10, 110, mx, mn) - mx * 5 / 10) < 1e-18, "linear warm-up");
    TH_CHECK(fabs(em_lr_cosine(9, 10, 110, mx, mn) - mx) < 1e-18, "reaches max_lr at step warmup - 1");
    TH_CHECK(fabs(em_lr_cosine(10, 10, 110, mx, mn) - mx) < 1e-18, "decay starts at max_lr");
    TH_CHECK(fabs(em_lr_cosine(60, 10, 110, mx, mn) - (mn + mx) / 2) < 1e-18, "halfway: the mean");
    double q = mn + 0.5 * (1 + cos(M_PI * 0.25)) * (mx - mn);
    TH_CHECK(fabs(em_lr_cosine(35, 10, 110, mx, mn) - q) < 1e-18, "a quarter of the way: the cosine");
    TH_CHECK(em_lr_cosine(110, 10, 110, mx, mn) == mn && em_lr_cosine(500, 10, 110, mx, mn) == mn, "then min_lr");
    TH_CHECK(em_lr_cosine(0, 0, 100, mx, mn) == mx, "no warm-up");
    bool mono = true;
    for (int t = 10; t < 110; t++) mono = mono && em_lr_cosine(t + 1, 10, 110, mx, mn) <= em_lr_cosine(t, 10, 110, mx, mn);
    TH_CHECK(mono, "non-increasing after warm-up");
}

/* ---- gradient accumulation ------------------------------------------------------------------------------ */
static void test_accumulation(void) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    em_model_config c;
    em_model_config_preset("gpt2-tiny", &c);
    c.dtype = EM_F64;
    em_model_t *m = em_model_new(&c, 3);
    int n = em_model_num_params(m);
    em_tensor_t *idx = em_randint(0, c.vocab_size, (int64_t[]){4, 8}, 2, EM_I64);
    em_tensor_t *tg = em_randint(0, c.vocab_size, (int64_t[]){4, 8}, 2, EM_I64);
    /* one batch of 4 */
    em_tensor_t *loss;
    em_model_forward(m, idx, tg, &loss);
    em_backward(loss);
    em_tensor_t **full = malloc(sizeof(em_tensor_t *) * (size_t)n);
    for (int i = 0; i < n; i++) full[i] = em_clone(em_grad(em_model_params(m)[i]));
    em_model_zero_grad(m);
    /* two micro-batches of 2, each loss scaled by 1/2: the gradients add up in .grad */
    for (int k = 0; k < 2; k++) {
        em_model_forward(m, em_slice(idx, 0, 2 * k, 2 * k + 2, 1), em_slice(tg, 0, 2 * k, 2 * k + 2, 1), &loss);
        TH_CHECK(em_backward(em_mul_scalar(loss, 0.5)) == EM_OK, "micro-batch %d backward", k);
    }
    double worst = 0;
    for (int i = 0; i < n; i++) {
        em_tensor_t *g = em_grad(em_model_params(m)[i]);
        double d = em_item(em_amax(em_abs(em_sub(g, full[i])), NULL, 0, false));
        double sc = em_item(em_amax(em_abs(full[i]), NULL, 0, false));
        worst = fmax(worst, d / (1e-12 + sc));
    }
    TH_CHECK(worst < 1e-12, "2 micro-batches of B/2 with loss/2 give the gradients of one batch of B (worst %g)", worst);
    free(full);
    em_model_free(m);
    em_scope_end(s);
    CHECK_LIVE(live, "accumulation");
}

/* ---- checkpoint state, resume, setters, errors ------------------------------------------------------- */
static void test_state_and_errors(void) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    double v[4] = {0.5, -1, 2, 0.25}, a[4] = {1, 2, -3, 0.5};
    em_tensor_t *p = leaf(v, (int64_t[]){4}, 1, EM_F64), *q = leaf(v, (int64_t[]){4}, 1, EM_F64);
    em_tensor_t *av = em_from_data(a, (int64_t[]){4}, 1, EM_F64);
    em_optimizer_t *o = em_adamw_new(&p, 1, 0.1, 0.9, 0.99, 1e-8, 0.01);
    for (int t = 0; t < 2; t++) {
        backward_quad(&p, &av, 1);
        em_optimizer_step(o);
        em_optimizer_zero_grad(o);
    }
    /* resume: a fresh optimizer on a copy of the parameter, state and step copied over by name */
    em_no_grad_begin();
    em_assign(q, p);
    em_no_grad_end();
    em_optimizer_t *r = em_adamw_new(&q, 1, 0.1, 0.9, 0.99, 1e-8, 0.01);
    for (int i = 0; i < em_optimizer_num_state(o); i++) {
        const char *name;
        em_tensor_t *t = em_optimizer_state(o, i, &name);
        TH_CHECK(em_optimizer_set_state(r, name, t) == EM_OK, "set_state %s", name);
    }
    TH_CHECK(em_optimizer_set_step(r, em_optimizer_get_step(o)) == EM_OK, "set_step");
    backward_quad(&p, &av, 1);
    backward_quad(&q, &av, 1);
    em_optimizer_step(o);
    em_optimizer_step(r);
    TH_CHECK(em_item(em_amax(em_abs(em_sub(p, q)), NULL, 0, false)) == 0, "a resumed optimizer steps bit-identically");
    /* setters */
    TH_CHECK(em_optimizer_set_lr(o, 0.5) == EM_OK && em_optimizer_get_lr(o) == 0.5, "set_lr / get_lr");
    TH_CHECK(em_optimizer_set_lr(o, -1) == EM_ERR_ARG, "negative lr");
    TH_CHECK(em_optimizer_set_weight_decay(o, 1, 0) == EM_ERR_INDEX, "weight decay of a parameter out of range");
    TH_CHECK(em_optimizer_set_weight_decay(o, -1, 0) == EM_OK, "-1 sets every parameter");
    TH_CHECK(em_optimizer_set_state(o, "0.exp_avg", em_zeros((int64_t[]){5}, 1, EM_F64)) == EM_ERR_SHAPE,
             "set_state checks the shape");
    TH_CHECK(em_optimizer_set_state(o, "0.momentum_buffer", p) == EM_ERR_ARG, "unknown state name");
    TH_CHECK_ERR(EM_ERR_ARG, "exp_avg", "the message shows the naming");
    TH_CHECK(em_optimizer_state(o, 2, NULL) == NULL && em_last_status() == EM_ERR_INDEX, "state index out of range");
    TH_CHECK(em_optimizer_set_step(o, -1) == EM_ERR_ARG, "negative step");
    /* a step with no gradients anywhere changes nothing but the count */
    em_optimizer_zero_grad(o);
    double before = em_item(em_sum(p, NULL, 0, false));
    int64_t steps = em_optimizer_get_step(o);
    TH_CHECK(em_optimizer_step(o) == EM_OK && em_item(em_sum(p, NULL, 0, false)) == before &&
             em_optimizer_get_step(o) == steps + 1, "parameters without gradients are skipped");
    /* construction errors */
    em_tensor_t *nonleaf = em_mul_scalar(p, 2.0);
    TH_CHECK(em_adamw_new(&nonleaf, 1, 0.1, 0.9, 0.99, 1e-8, 0) == NULL, "a non-leaf parameter");
    TH_CHECK_ERR(EM_ERR_ARG, "leaf", "the message says what a parameter must be");
    em_tensor_t *twice[2] = {p, p};
    TH_CHECK(em_sgd_new(twice, 2, 0.1, 0.9, 0) == NULL, "a parameter listed twice");
    TH_CHECK(em_adamw_new(&p, 1, 0.1, 1.0, 0.99, 1e-8, 0) == NULL, "beta1 = 1");
    TH_CHECK(em_adamw_new(&p, 0, 0.1, 0.9, 0.99, 1e-8, 0) == NULL, "no parameters");
    TH_CHECK(em_sgd_new(&p, 1, -0.1, 0.9, 0) == NULL, "negative lr");
    TH_CHECK(em_optimizer_step(NULL) == EM_ERR_ARG, "NULL optimizer");
    em_optimizer_free(NULL);
    em_optimizer_free(o);
    em_optimizer_free(r);
    em_scope_end(s);
    CHECK_LIVE(live, "state");
}

/* ---- a compiled training step ----------------------------------------------------------------------- */
typedef struct {
    em_model_t *m;
    em_optimizer_t *o;
} step_ctx;

/* forward, backward, clipping, AdamW and zero_grad: one traced function */
static em_status train_step(void *vc, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    step_ctx *c = vc;
    (void)n_in;
    (void)n_out;
    em_tensor_t *loss;
    em_model_forward(c->m, in[0], in[1], &loss);
    em_status st = em_backward(loss);
    em_tensor_t *norm = em_clip_grad_norm_tensor(em_model_params(c->m), em_model_num_params(c->m), 0.5);
    if (st == EM_OK && !norm) st = em_last_status();
    if (st == EM_OK) st = em_optimizer_step(c->o);
    if (st == EM_OK) st = em_optimizer_zero_grad(c->o);
    out[0] = loss;
    out[1] = norm;
    return st;
}

/* The optimizer keeps its step count and lr in tensors, so a compiled step (which replays without
   calling train_step) advances the bias correction and follows set_lr: compiled == eager. */
static void check_compiled_step(const char *preset, bool adamw) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    em_model_config cfg;
    em_model_config_preset(preset, &cfg);
    cfg.dtype = EM_F64;
    step_ctx a = {em_model_new(&cfg, 1), NULL}, b = {em_model_new(&cfg, 1), NULL};
    int n = em_model_num_params(a.m);
    a.o = adamw ? em_adamw_new(em_model_params(a.m), n, 1e-2, 0.9, 0.95, 1e-8, 0.1)
                : em_sgd_new(em_model_params(a.m), n, 1e-1, 0.9, 0.01);
    b.o = adamw ? em_adamw_new(em_model_params(b.m), n, 1e-2, 0.9, 0.95, 1e-8, 0.1)
                : em_sgd_new(em_model_params(b.m), n, 1e-1, 0.9, 0.01);
    em_tensor_t *in[2] = {em_randint(0, cfg.vocab_size, (int64_t[]){2, 8}, 2, EM_I64),
                          em_randint(0, cfg.vocab_size, (int64_t[]){2, 8}, 2, EM_I64)};
    em_compile_opts opts = {.fullgraph = true};
    em_compiled_t *f = em_compile(train_step, &a, &opts);
    double worst = 0;
    bool ok = f != NULL;
    for (int step = 0; step < 3 && ok; step++) {
        em_optimizer_set_lr(a.o, 1e-2 * (step + 1));
        em_optimizer_set_lr(b.o, 1e-2 * (step + 1));
        em_tensor_t *out[2] = {0}, *eout[2] = {0};
        ok = em_call(f, in, 2, out, 2) == EM_OK && train_step(&b, in, 2, eout, 2) == EM_OK;
        if (!ok) break;
        worst = fmax(worst, fabs(em_item(out[0]) - em_item(eout[0])) + fabs(em_item(out[1]) - em_item(eout[1])));
        for (int i = 0; i < n; i++)
            worst = fmax(worst, em_item(em_amax(em_abs(em_sub(em_model_params(a.m)[i], em_model_params(b.m)[i])), NULL,
                                                0, false)));
    }
    em_compile_stats cs = em_compiled_stats(f);
    TH_CHECK(ok && cs.compiles == 1 && cs.graph_breaks == 0, "%s %s: the whole training step compiles as one graph "
             "(fullgraph) and replays", preset, adamw ? "AdamW" : "SGD");
    TH_CHECK(ok && worst < 1e-12, "%s %s: three compiled steps equal three eager steps (worst %g)", preset,
             adamw ? "AdamW" : "SGD", worst);
    TH_CHECK(em_optimizer_get_step(a.o) == 3, "%s: the compiled step advanced the step count to 3 (got %lld)", preset,
             (long long)em_optimizer_get_step(a.o));
    em_compiled_free(f);
    em_optimizer_free(a.o);
    em_optimizer_free(b.o);
    em_model_free(a.m);
    em_model_free(b.m);
    em_scope_end(s);
    CHECK_LIVE(live, "compiled step");
}

int main(void) {
    int64_t live = em_live_tensors();
    check_adamw(EM_F64, 5, 1e-14, "AdamW f64");
    check_adamw(EM_F64, 150001, 1e-14, "AdamW f64, chunked");
    check_adamw(EM_F32, 70000, 5e-5, "AdamW f32, chunked"); /* f32 rounding of g = a + p near 0 */
    check_sgd(0.9, 0.1, 7, "SGD momentum + weight decay");
    check_sgd(0.9, 0.0, 140000, "SGD momentum, chunked");
    check_sgd(0.0, 0.05, 7, "SGD without momentum");
    test_clip();
    test_schedule();
    test_accumulation();
    test_state_and_errors();
    check_compiled_step("gpt2-tiny", true);
    check_compiled_step("llama-tiny", false);
    CHECK_LIVE(live, "test_optim");
    return th_summary();
}
