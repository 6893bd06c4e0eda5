/* test_compile.c - em_compile: capture, guards and recompiles, lifted parameters, functionalized
 * writes, a whole training step against the eager one, random ops, graph breaks, and leaks. */
#include "harness.h"

#include "capture/capture.h"

typedef struct {
    em_tensor_t *w, *b, *running; /* parameters the functions read through ctx */
    int calls;                    /* how often fn itself ran */
} model;

static double max_diff(em_tensor_t *a, em_tensor_t *b) {
    return em_item(em_amax(em_abs(em_sub(em_cast(a, EM_F64), em_cast(b, EM_F64))), NULL, 0, false));
}

/* out = softmax(x @ w + b) * y */
static em_status fwd(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    model *m = ctx;
    (void)n_in;
    (void)n_out;
    m->calls++;
    out[0] = em_mul(em_softmax(em_add(em_matmul(in[0], m->w), m->b), -1), in[1]);
    return out[0] ? EM_OK : em_last_status();
}

static void test_capture_and_guards(void) {
    em_scope_t *s = em_scope_begin();
    model m = {th_randn((int64_t[]){4, 3}, 2, EM_F32), th_randn((int64_t[]){3}, 1, EM_F32), NULL, 0};
    em_compiled_t *f = em_compile(fwd, &m, NULL);
    em_tensor_t *x = th_randn((int64_t[]){5, 4}, 2, EM_F32), *y = th_randn((int64_t[]){5, 3}, 2, EM_F32);
    em_tensor_t *in[2] = {x, y}, *out = NULL, *ref = NULL;
    TH_CHECK(em_call(f, in, 2, &out, 1) == EM_OK && out, "first call compiles and runs");
    fwd(&m, in, 2, &ref, 1);
    TH_CHECK(max_diff(out, ref) < 1e-6, "compiled == eager (%g)", max_diff(out, ref));
    int calls = m.calls;
    TH_CHECK(em_call(f, in, 2, &out, 1) == EM_OK && m.calls == calls, "the second call does not run fn");
    em_compile_stats st = em_compiled_stats(f);
    TH_CHECK(st.compiles == 1 && st.cache_hits == 1 && st.recompiles == 0, "stats: %d compiles, %d hits",
             st.compiles, st.cache_hits);
    char *g = em_compiled_graph(f);
    TH_CHECK(g && strstr(g, "matmul(") && strstr(g, "softmax("), "the graph holds the ops:\n%s", g ? g : "");
    free(g);
    /* parameters are inputs, not constants: an update outside is seen without recompiling */
    em_assign(m.w, em_mul_scalar(m.w, 2.0));
    em_call(f, in, 2, &out, 1);
    fwd(&m, in, 2, &ref, 1);
    TH_CHECK(max_diff(out, ref) < 1e-6 && em_compiled_stats(f).compiles == 1, "lifted parameters are read each call");
    /* guard misses: shape, dtype, requires_grad */
    em_tensor_t *x2 = th_randn((int64_t[]){7, 4}, 2, EM_F32), *y2 = th_randn((int64_t[]){7, 3}, 2, EM_F32);
    em_tensor_t *in2[2] = {x2, y2};
    TH_CHECK(em_call(f, in2, 2, &out, 1) == EM_OK && em_size(out, 0) == 7, "a new shape traces again");
    fwd(&m, in2, 2, &ref, 1);
    TH_CHECK(max_diff(out, ref) < 1e-6, "and computes the right values");
    TH_CHECK(em_compiled_stats(f).recompiles == 1, "one recompile");
    em_tensor_t *xt = em_transpose(th_randn((int64_t[]){4, 5}, 2, EM_F32), 0, 1);
    em_tensor_t *in3[2] = {xt, y};
    em_call(f, in3, 2, &out, 1);
    TH_CHECK(em_compiled_stats(f).recompiles == 2, "other strides are another specialization");
    em_call(f, in, 2, &out, 1);
    TH_CHECK(em_compiled_stats(f).recompiles == 2, "the first specialization still hits");
    em_compiled_free(f);
    em_scope_end(s);
}

/* a running statistic updated in place: running = 0.9 running + 0.1 mean(x) */
static em_status stat_fn(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    model *m = ctx;
    (void)n_in;
    (void)n_out;
    em_tensor_t *upd = em_add(em_mul_scalar(m->running, 0.9), em_mul_scalar(em_mean(in[0], (int[]){0}, 1, false), 0.1));
    if (em_assign(m->running, upd) != EM_OK) return em_last_status();
    out[0] = em_sub(in[0], m->running); /* reads the updated value */
    return out[0] ? EM_OK : em_last_status();
}

static void test_mutation(void) {
    em_scope_t *s = em_scope_begin();
    model a = {0}, b = {0};
    a.running = em_zeros((int64_t[]){3}, 1, EM_F64);
    b.running = em_zeros((int64_t[]){3}, 1, EM_F64);
    em_compiled_t *f = em_compile(stat_fn, &a, &(em_compile_opts){.fullgraph = true});
    for (int i = 0; i < 4; i++) {
        em_tensor_t *x = th_randn((int64_t[]){6, 3}, 2, EM_F64), *oc = NULL, *oe = NULL;
        TH_CHECK(em_call(f, &x, 1, &oc, 1) == EM_OK, "call %d", i);
        stat_fn(&b, &x, 1, &oe, 1);
        TH_CHECK(max_diff(oc, oe) < 1e-12 && max_diff(a.running, b.running) < 1e-12,
                 "step %d: the write-back matches eager", i);
    }
    TH_CHECK(em_compiled_stats(f).compiles == 1, "one compile for four calls");
    em_compiled_free(f);
    em_scope_end(s);
}

/* one SGD training step of a 2-layer MLP: forward, loss, backward, update, zero_grad */
typedef struct {
    em_tensor_t *w1, *b1, *w2;
} mlp;

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
        if (st != EM_OK) { em_no_grad_end(); return st; }
        em_zero_grad(ps[i]);
    }
    em_no_grad_end();
    out[0] = em_detach(loss);
    return EM_OK;
}

static void init_mlp(mlp *p, uint64_t seed) {
    th_seed(seed);
    p->w1 = th_randn((int64_t[]){8, 3}, 2, EM_F64);
    p->b1 = th_randn((int64_t[]){8}, 1, EM_F64);
    p->w2 = th_randn((int64_t[]){8, 1}, 2, EM_F64);
    em_set_requires_grad(p->w1, true);
    em_set_requires_grad(p->b1, true);
    em_set_requires_grad(p->w2, true);
}

static void test_training_step(void) {
    em_scope_t *s = em_scope_begin();
    mlp a, b;
    init_mlp(&a, 99);
    init_mlp(&b, 99);
    em_compiled_t *f = em_compile(train_step, &a, &(em_compile_opts){.fullgraph = true});
    double first = 0, last = 0;
    for (int step = 0; step < 6; step++) {
        th_seed(1000 + (uint64_t)step);
        em_tensor_t *x = th_randn((int64_t[]){16, 3}, 2, EM_F64), *y = th_randn((int64_t[]){16, 1}, 2, EM_F64);
        em_tensor_t *in[2] = {x, y}, *lc = NULL, *le = NULL;
        TH_CHECK(em_call(f, in, 2, &lc, 1) == EM_OK, "compiled step %d", step);
        train_step(&b, in, 2, &le, 1);
        TH_CHECK(fabs(em_item(lc) - em_item(le)) < 1e-12, "step %d loss: compiled %.12g eager %.12g", step,
                 em_item(lc), em_item(le));
        TH_CHECK(max_diff(a.w1, b.w1) < 1e-12 && max_diff(a.b1, b.b1) < 1e-12 && max_diff(a.w2, b.w2) < 1e-12,
                 "step %d: parameters match eager", step);
        if (step == 0) first = em_item(lc);
        last = em_item(lc);
    }
    TH_CHECK(em_grad(a.w1) == NULL, "zero_grad inside the step leaves no gradient");
    TH_CHECK(em_compiled_stats(f).compiles == 1 && em_compiled_stats(f).cache_hits == 5, "one program for the run");
    TH_CHECK(last < first, "the loss falls (%g -> %g)", first, last);
    char *g = em_compiled_graph(f);
    TH_CHECK(g && strstr(g, "tanh(") && strstr(g, "linear("), "forward and backward are in one graph");
    free(g);
    em_compiled_free(f);
    em_scope_end(s);
}

/* gradients accumulate into existing .grad and leave the function as write-backs */
static em_status grad_only(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    mlp *p = ctx;
    (void)n_in;
    (void)n_out;
    em_tensor_t *loss = em_sum(em_mul(em_matmul(in[0], p->w2), in[0]), NULL, 0, false);
    if (!loss || em_backward(loss) != EM_OK) return em_last_status();
    out[0] = em_detach(loss);
    return EM_OK;
}

static void test_grad_writeback(void) {
    em_scope_t *s = em_scope_begin();
    mlp a, b;
    init_mlp(&a, 5);
    init_mlp(&b, 5);
    em_compiled_t *f = em_compile(grad_only, &a, NULL);
    em_tensor_t *x = th_randn((int64_t[]){4, 8}, 2, EM_F64), *o = NULL;
    em_set_requires_grad(x, true);
    for (int i = 0; i < 3; i++) {
        TH_CHECK(em_call(f, &x, 1, &o, 1) == EM_OK, "call %d", i);
        grad_only(&b, &x, 1, &o, 1);
    }
    TH_CHECK(em_grad(a.w2) && max_diff(em_grad(a.w2), em_grad(b.w2)) < 1e-12, "accumulated parameter gradient");
    TH_CHECK(em_grad(x) && em_ndim(em_grad(x)) == 2, "argument gradient written back");
    /* x's gradient got 3 compiled + 3 eager contributions, all equal */
    em_zero_grad(x);
    em_call(f, &x, 1, &o, 1);
    em_tensor_t *gc = em_clone(em_grad(x));
    em_zero_grad(x);
    grad_only(&b, &x, 1, &o, 1);
    TH_CHECK(max_diff(gc, em_grad(x)) < 1e-12, "argument gradient matches eager");
    TH_CHECK(em_compiled_stats(f).compiles == 2, "a gradient appearing is a guard change (%d compiles)",
             em_compiled_stats(f).compiles);
    em_compiled_free(f);
    em_scope_end(s);
}

static em_status noisy(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    (void)ctx;
    (void)n_in;
    (void)n_out;
    out[0] = em_add(in[0], em_randn((int64_t[]){4}, 1, EM_F32));
    out[1] = em_dropout(in[0], 0.5, true);
    return out[0] && out[1] ? EM_OK : em_last_status();
}

static void test_random(void) {
    em_scope_t *s = em_scope_begin();
    em_compiled_t *f = em_compile(noisy, NULL, NULL);
    em_tensor_t *x = em_ones((int64_t[]){4}, 1, EM_F32), *c[2][2], *e[2][2];
    em_manual_seed(3);
    em_call(f, &x, 1, c[0], 2);
    em_call(f, &x, 1, c[1], 2);
    uint64_t off = em_rng_offset();
    em_manual_seed(3);
    noisy(NULL, &x, 1, e[0], 2);
    noisy(NULL, &x, 1, e[1], 2);
    TH_CHECK(off == em_rng_offset(), "compiled calls draw as many numbers as eager ones");
    for (int k = 0; k < 2; k++)
        TH_CHECK(max_diff(c[k][0], e[k][0]) == 0 && max_diff(c[k][1], e[k][1]) == 0, "call %d: same random numbers", k);
    TH_CHECK(max_diff(c[0][0], c[1][0]) > 0, "each call draws new numbers");
    em_compiled_free(f);
    em_scope_end(s);
}

static em_status reads_data(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    (void)ctx;
    (void)n_in;
    (void)n_out;
    double v = em_item(em_sum(in[0], NULL, 0, false));
    out[0] = v > 0 ? em_mul_scalar(in[0], 2) : em_neg(in[0]);
    return out[0] ? EM_OK : em_last_status();
}

static void test_graph_break(void) {
    em_scope_t *s = em_scope_begin();
    em_compiled_t *f = em_compile(reads_data, NULL, NULL);
    em_tensor_t *pos = em_ones((int64_t[]){3}, 1, EM_F32), *neg = em_full((int64_t[]){3}, 1, -1, EM_F32), *o = NULL;
    TH_CHECK(em_call(f, &pos, 1, &o, 1) == EM_OK && em_item(em_sum(o, NULL, 0, false)) == 6, "data-dependent branch, taken");
    TH_CHECK(em_call(f, &neg, 1, &o, 1) == EM_OK && em_item(em_sum(o, NULL, 0, false)) == 3, "and not taken");
    TH_CHECK(em_compiled_stats(f).graph_breaks == 1 && em_compiled_stats(f).eager_calls == 0 &&
             em_compiled_stats(f).segments == 3, "one break, compiled segments (tests/test_breaks.c has more)");
    em_compiled_free(f);
    em_compiled_t *g = em_compile(reads_data, NULL, &(em_compile_opts){.fullgraph = true});
    em_clear_error();
    TH_CHECK(em_call(g, &pos, 1, &o, 1) == EM_ERR_COMPILE, "fullgraph: a data read is an error");
    TH_CHECK_ERR(EM_ERR_COMPILE, "em_item", "the error names the op");
    TH_CHECK(strstr(em_last_error(), "graph break") != NULL, "and says it is a graph break: %s", em_last_error());
    em_compiled_free(g);
    em_scope_end(s);
}

static void test_limits_and_errors(void) {
    em_scope_t *s = em_scope_begin();
    model m = {th_randn((int64_t[]){4, 3}, 2, EM_F32), th_randn((int64_t[]){3}, 1, EM_F32), NULL, 0};
    em_compiled_t *f = em_compile(fwd, &m, &(em_compile_opts){.recompile_limit = 2, .dynamic = EM_DYNAMIC_OFF});
    for (int n = 1; n <= 4; n++) {
        em_tensor_t *in[2] = {th_randn((int64_t[]){n, 4}, 2, EM_F32), th_randn((int64_t[]){n, 3}, 2, EM_F32)}, *o, *r;
        TH_CHECK(em_call(f, in, 2, &o, 1) == EM_OK, "call with %d rows", n);
        fwd(&m, in, 2, &r, 1);
        TH_CHECK(max_diff(o, r) < 1e-6, "right values past the limit too (n=%d)", n);
    }
    TH_CHECK(em_compiled_stats(f).compiles == 2 && em_compiled_stats(f).eager_calls == 2, "limit respected");
    TH_CHECK(em_call(f, NULL, 2, NULL, 1) == EM_ERR_ARG, "NULL arrays");
    em_tensor_t *bad[2] = {NULL, NULL}, *o;
    TH_CHECK(em_call(f, bad, 2, &o, 1) == EM_ERR_ARG, "NULL input");
    TH_CHECK(em_compile(NULL, NULL, NULL) == NULL && em_last_status() == EM_ERR_ARG, "NULL fn");
    TH_CHECK(em_compile(fwd, &m, &(em_compile_opts){.backend = "tpu"}) == NULL, "unknown backend");
    em_compiled_free(f);
    em_scope_end(s);
}

/* composite ops in a traced graph decompose into primitives with the same results */
static em_status composite_fn(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    (void)ctx;
    (void)n_in;
    (void)n_out;
    em_tensor_t *h = em_layer_norm(in[0], in[1], NULL, 1e-5);
    em_tensor_t *p = em_log_softmax(em_linear(h, in[2], NULL), -1);
    out[0] = em_add(em_mean(p, (int[]){-1}, 1, false), em_std(h, (int[]){1}, 1, 1, false));
    out[1] = em_cross_entropy(em_linear(h, in[2], NULL), in[3]);
    return out[0] && out[1] ? EM_OK : em_last_status();
}

static void test_decompose(void) {
    em_scope_t *s = em_scope_begin();
    em_tensor_t *in[4] = {th_randn((int64_t[]){5, 6}, 2, EM_F64), th_randn((int64_t[]){6}, 1, EM_F64),
                          th_randn((int64_t[]){4, 6}, 2, EM_F64), em_randint(0, 4, (int64_t[]){5}, 1, EM_I64)};
    emcap_trace tr;
    TH_CHECK(emcap_trace_fn(composite_fn, NULL, in, 4, 2, true, &tr) == EM_OK, "trace");
    em_tensor_t *before[2], *after[2];
    TH_CHECK(emg_run(tr.g, in, 4, before) == EM_OK, "run the traced graph");
    int n = emg_decompose(tr.g);
    TH_CHECK(n >= 5, "composites decomposed (%d)", n);
    TH_CHECK(emg_verify(tr.g) == EM_OK, "the rewritten graph verifies");
    int composites = 0;
    for (int k = 0; k < tr.g->n_nodes; k++) {
        const emo_def *d = &emo_table[tr.g->nodes[k].op];
        if (d->decomp && !(d->flags & EMO_PRIM)) composites++;
    }
    TH_CHECK(composites == 0, "only primitives remain (%d composites)", composites);
    TH_CHECK(emg_run(tr.g, in, 4, after) == EM_OK, "run the decomposed graph");
    TH_CHECK(max_diff(before[0], after[0]) < 1e-12 && max_diff(before[1], after[1]) < 1e-12,
             "same results (%g, %g)", max_diff(before[0], after[0]), max_diff(before[1], after[1]));
    emcap_trace_free(&tr);
    em_scope_end(s);
}

int main(void) {
    int64_t live = em_live_tensors();
    test_capture_and_guards();
    test_mutation();
    test_training_step();
    test_grad_writeback();
    test_random();
    test_graph_break();
    test_limits_and_errors();
    test_decompose();
    TH_CHECK(em_live_tensors() == live, "no tensor leaked (%lld live)", (long long)(em_live_tensors() - live));
    return th_summary();
}
