/* test_breaks.c - graph breaks as compiled segments, the fullgraph error, em_explain, and the
 * EMBER_DEBUG_DIR dumps.
 *
 * A function that reads data (em_item) in the middle runs as compiled segments: both branches of
 * a data-dependent choice must give the eager result, and once each branch has been seen no call
 * compiles anything (segments are found again by their structure). Training through a break
 * (gradients and em_assign crossing a segment boundary) must match eager to 1e-12 in f64. */
#include "harness.h"

#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    em_tensor_t *w, *v; /* parameters read through ctx */
} model;

static double max_diff(em_tensor_t *a, em_tensor_t *b) {
    return em_item(em_amax(em_abs(em_sub(em_cast(a, EM_F64), em_cast(b, EM_F64))), NULL, 0, false));
}

/* h = tanh(x @ w); if sum(h) > 0: out = h * 2 + exp(h) else out = softmax(h) - v */
static em_status branchy(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    model *m = ctx;
    (void)n_in;
    (void)n_out;
    em_tensor_t *h = em_tanh(em_matmul(in[0], m->w));
    double s = em_item(em_sum(h, NULL, 0, false));
    if (s != s) return em_last_status();
    out[0] = s > 0 ? em_add(em_mul_scalar(h, 2), em_exp(h)) : em_sub(em_softmax(h, -1), m->v);
    return out[0] ? EM_OK : em_last_status();
}

static void test_branches(const char *backend) {
    em_scope_t *sc = em_scope_begin();
    model m = {th_randn((int64_t[]){4, 3}, 2, EM_F32), th_randn((int64_t[]){3}, 1, EM_F32)};
    em_compiled_t *f = em_compile(branchy, &m, &(em_compile_opts){.backend = backend});
    em_tensor_t *x = th_randn((int64_t[]){5, 4}, 2, EM_F32);
    em_tensor_t *xs[2] = {x, em_neg(x)}; /* tanh is odd: the sum flips sign with x */
    int taken[2] = {0, 0};
    for (int it = 0; it < 6; it++) {
        em_tensor_t *in = xs[it % 2], *o = NULL, *r = NULL;
        TH_CHECK(em_call(f, &in, 1, &o, 1) == EM_OK && o, "[%s] call %d runs: %s", backend, it, em_last_error());
        TH_CHECK(branchy(&m, &in, 1, &r, 1) == EM_OK, "eager runs");
        taken[em_item(em_sum(em_tanh(em_matmul(in, m.w)), NULL, 0, false)) > 0]++;
        TH_CHECK(o && max_diff(o, r) < 1e-5, "[%s] call %d: segments == eager (%g)", backend, it, o ? max_diff(o, r) : -1);
        if (it == 1) {
            em_compile_stats st = em_compiled_stats(f);
            TH_CHECK(st.segments == 3 && st.graph_breaks == 1, "[%s] 3 segments (one before the break, one per "
                     "branch), 1 break: %d, %d", backend, st.segments, st.graph_breaks);
        }
    }
    TH_CHECK(taken[0] == 3 && taken[1] == 3, "both branches were taken");
    em_compile_stats st = em_compiled_stats(f);
    TH_CHECK(st.segments == 3 && st.compiles == 3 && st.eager_calls == 0,
             "[%s] after the first calls nothing compiles: %d segments, %d compiles, %d eager", backend, st.segments,
             st.compiles, st.eager_calls);
    em_compiled_free(f);
    em_scope_end(sc);
}

static em_status reads_data(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    (void)ctx;
    (void)n_in;
    (void)n_out;
    double v = em_item(em_sum(in[0], NULL, 0, false));
    out[0] = v > 0 ? em_mul_scalar(in[0], 2) : em_neg(in[0]);
    return out[0] ? EM_OK : em_last_status();
}

static void test_fullgraph_error(void) {
    em_scope_t *sc = em_scope_begin();
    em_compiled_t *g = em_compile(reads_data, NULL, &(em_compile_opts){.fullgraph = true});
    em_tensor_t *x = em_ones((int64_t[]){3}, 1, EM_F32), *o = NULL;
    em_clear_error();
    TH_CHECK(em_call(g, &x, 1, &o, 1) == EM_ERR_COMPILE, "fullgraph: a data read is an error");
    const char *e = em_last_error();
    TH_CHECK(strstr(e, "em_item") && strstr(e, "graph break"), "names the op and the break: %s", e);
    TH_CHECK(strstr(e, "only exists when the compiled program runs"), "says why");
    TH_CHECK(strstr(e, "Instead") && strstr(e, "em_where") && strstr(e, "without fullgraph"), "says what to do");
    TH_CHECK(strstr(e, "called at ") && strstr(e, "reads_data"), "names the call site: %s", e);
    em_compiled_free(g);
    em_scope_end(sc);
}

/* a training step through a break: loss printed (em_item) between forward and the update */
typedef struct {
    em_tensor_t *w;
    double seen;
} trainer;

static em_status train_step(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    trainer *t = ctx;
    (void)n_in;
    (void)n_out;
    em_tensor_t *loss = em_mean(em_square(em_sub(em_matmul(in[0], t->w), in[1])), NULL, 0, false);
    t->seen = em_item(loss); /* a break in the middle of a training step */
    if (em_backward(loss) != EM_OK) return em_last_status();
    em_no_grad_begin();
    em_status st = em_assign(t->w, em_sub(t->w, em_mul_scalar(em_grad(t->w), 0.1)));
    em_no_grad_end();
    em_zero_grad(t->w);
    out[0] = em_detach(loss);
    return st != EM_OK ? st : out[0] ? EM_OK : em_last_status();
}

static void test_training_through_break(void) {
    em_scope_t *sc = em_scope_begin();
    em_tensor_t *w0 = th_randn((int64_t[]){4, 2}, 2, EM_F64);
    trainer a = {em_contiguous(em_mul_scalar(w0, 1)), 0}, b = {em_contiguous(em_mul_scalar(w0, 1)), 0};
    em_set_requires_grad(a.w, true);
    em_set_requires_grad(b.w, true);
    em_compiled_t *f = em_compile(train_step, &a, NULL);
    em_tensor_t *in[2] = {th_randn((int64_t[]){8, 4}, 2, EM_F64), th_randn((int64_t[]){8, 2}, 2, EM_F64)};
    for (int it = 0; it < 4; it++) {
        em_tensor_t *lc = NULL, *le = NULL;
        TH_CHECK(em_call(f, in, 2, &lc, 1) == EM_OK, "step %d: %s", it, em_last_error());
        TH_CHECK(train_step(&b, in, 2, &le, 1) == EM_OK, "eager step");
        TH_CHECK(lc && fabs(em_item(lc) - em_item(le)) < 1e-12 && fabs(a.seen - b.seen) < 1e-12,
                 "step %d: loss and the value read inside agree", it);
        TH_CHECK(max_diff(a.w, b.w) < 1e-12, "step %d: parameters agree (%g)", it, max_diff(a.w, b.w));
        TH_CHECK(em_grad(a.w) == NULL, "the gradient was zeroed");
    }
    em_compile_stats st = em_compiled_stats(f);
    TH_CHECK(st.segments == 2 && st.graph_breaks == 1, "two segments, one break: %d %d", st.segments, st.graph_breaks);
    em_compiled_free(f);
    em_scope_end(sc);
}

static void test_explain(void) {
    em_scope_t *sc = em_scope_begin();
    model m = {th_randn((int64_t[]){4, 3}, 2, EM_F32), th_randn((int64_t[]){3}, 1, EM_F32)};
    em_tensor_t *x = th_randn((int64_t[]){5, 4}, 2, EM_F32);
    char *r = em_explain(branchy, &m, &x, 1, 1);
    TH_CHECK(r != NULL, "explain runs: %s", em_last_error());
    if (r) {
        TH_CHECK(strstr(r, "explain: 2 graph(s), 1 graph break(s)"), "counts graphs and breaks:\n%s", r);
        TH_CHECK(strstr(r, "em_item reads the data of a traced tensor ()"), "the reason");
        TH_CHECK(strstr(r, "call site: branchy"), "the call site names the function");
        TH_CHECK(strstr(r, "in[0]: f32, shape (5, 4), strides (4, 1)"), "the guards");
        TH_CHECK(strstr(r, "matmul") && strstr(r, "tanh") && strstr(r, "total"), "op counts");
        TH_CHECK(strstr(r, "--- graph 1"), "the graphs");
        free(r);
    }
    /* a function without breaks: one graph, its lifted parameter among the guards */
    r = em_explain(reads_data, NULL, &x, 1, 1);
    TH_CHECK(r && strstr(r, "1 graph break(s)"), "reads_data breaks once");
    free(r);
    TH_CHECK(em_explain(NULL, NULL, NULL, 0, 1) == NULL && em_last_status() == EM_ERR_ARG, "NULL fn");
    em_scope_end(sc);
}

static em_status plain(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    model *m = ctx;
    (void)n_in;
    (void)n_out;
    out[0] = em_softmax(em_add(em_matmul(in[0], m->w), m->v), -1);
    return out[0] ? EM_OK : em_last_status();
}

static void test_explain_plain(void) {
    em_scope_t *sc = em_scope_begin();
    model m = {th_randn((int64_t[]){4, 3}, 2, EM_F32), th_randn((int64_t[]){3}, 1, EM_F32)};
    em_tensor_t *x = th_randn((int64_t[]){5, 4}, 2, EM_F32);
    char *r = em_explain(plain, &m, &x, 1, 1);
    TH_CHECK(r && strstr(r, "explain: 1 graph(s), 0 graph break(s)"), "no breaks:\n%s", r ? r : em_last_error());
    TH_CHECK(r && strstr(r, "lifted[1]: the same tensor"), "lifted parameters are guarded");
    TH_CHECK(r && strstr(r, "softmax") && strstr(r, "--- graph 0 (the whole function)"), "the graph");
    free(r);
    em_scope_end(sc);
}

static bool exists(const char *dir, const char *name, const char *file) {
    char p[1200];
    snprintf(p, sizeof p, "%s/%s/%s", dir, name, file);
    struct stat st;
    return stat(p, &st) == 0 && st.st_size > 0;
}

static void test_debug_dir(const char *dir) {
    em_scope_t *sc = em_scope_begin();
    model m = {th_randn((int64_t[]){4, 3}, 2, EM_F32), th_randn((int64_t[]){3}, 1, EM_F32)};
    em_compiled_t *f = em_compile(plain, &m, NULL);
    em_tensor_t *x = th_randn((int64_t[]){5, 4}, 2, EM_F32), *o;
    TH_CHECK(em_call(f, &x, 1, &o, 1) == EM_OK, "compiles");
    /* f's id is not public: find the folder by its suffix */
    char cmd[1400], name[256] = "";
    snprintf(cmd, sizeof cmd, "ls %s | grep -- '-spec0$' | tail -1", dir);
    FILE *p = popen(cmd, "r");
    if (p) {
        if (!fgets(name, sizeof name, p)) name[0] = 0;
        pclose(p);
    }
    name[strcspn(name, "\n")] = 0;
    TH_CHECK(name[0] == 'f', "a folder named like the log lines (fN-spec0): '%s'", name);
    const char *files[] = {"graph_traced.txt", "graph_optimized.txt", "graph_decomposed.txt", "kernels.txt",
                           "source.c", "program.txt"};
    for (int i = 0; i < 6; i++) TH_CHECK(exists(dir, name, files[i]), "%s/%s/%s is written", dir, name, files[i]);
    em_compiled_free(f);
    em_scope_end(sc);
}

int main(void) {
    char dir[] = "/tmp/ember-dbg-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    setenv("EMBER_DEBUG_DIR", dir, 1);
    test_branches("c");
    test_branches("interp");
    test_fullgraph_error();
    test_training_through_break();
    test_explain();
    test_explain_plain();
    test_debug_dir(dir);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return th_summary();
}
