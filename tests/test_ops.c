/* test_ops.c - the table-driven op test: every op in the op table, forward against a float64
 * oracle for each dtype it supports, gradients by central finite differences in float64, and the
 * op's decomposition (when it has one) against the same oracle. Then every case again, compiled
 * (tests/lib/compiled_ops.c: each group of cases is one traced, generated and JIT-compiled program
 * per dtype, forward, plus one for the f64 gradients) against the eager results within the
 * per-dtype tolerances of th_tol. The test fails when an op in the table has no case, a
 * differentiable op has no gradient case, or an op has no case that ran compiled (forward; and
 * gradient, for differentiable ops).
 *
 *   build/tests/test_ops [substring]   runs only the ops whose name contains substring
 *
 * The compiled programs are cached in $EMBER_CACHE_DIR, by default a directory `jit-cache` beside
 * this binary, so the second and later runs (CI runs the test at several thread counts) load them
 * from disk instead of running the C compiler (about 50 programs, a minute of cc on a busy 2-core
 * machine, the first time).
 */
#include "harness.h"

#include "ops/op.h"

#include <limits.h>
#include <unistd.h>

/* EMBER_CACHE_DIR unset: <directory of this binary>/jit-cache, shared by every run of the binary */
static void default_cache_dir(void) {
    if (getenv("EMBER_CACHE_DIR")) return;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 16);
    if (n <= 0) return; /* the library's default cache then */
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash) return;
    strcpy(slash + 1, "jit-cache");
    setenv("EMBER_CACHE_DIR", exe, 1);
}

static const th_case *const groups[] = {th_cases_view, th_cases_pointwise, th_cases_reduce,
                                        th_cases_nn, th_cases_shape, th_cases_linalg};
static const char *const group_names[] = {"view", "pointwise", "reduce", "nn", "shape", "linalg"};

static int run_fwd(const th_case *c, em_tensor_t **in, em_tensor_t **out) {
    for (int j = 0; j < TH_MAX_OUT; j++) out[j] = NULL;
    return c->fwd(in, c, out);
}

static void make_inputs(const th_case *c, em_dtype dt, em_tensor_t **in, th_rt *rin) {
    for (int i = 0; i < c->n_in; i++) {
        in[i] = th_make_input(&c->in[i], dt);
        rin[i] = th_rt_from(in[i]);
    }
}

static int check_forward(const th_case *c, em_dtype dt, bool decomp, uint64_t seed) {
    em_scope_t *s = em_scope_begin();
    th_seed(seed);
    em_tensor_t *in[TH_MAX_IN], *out[TH_MAX_OUT];
    th_rt rin[TH_MAX_IN], want[TH_MAX_OUT];
    make_inputs(c, dt, in, rin);
    emo_set_force_decomp(decomp);
    int n = run_fwd(c, in, out);
    emo_set_force_decomp(false);
    int nref = c->ref(rin, c, want);
    int ok = n == nref && n > 0;
    if (!ok) fprintf(stderr, "  fwd gave %d outputs, ref %d (%s)\n", n, nref, em_last_error());
    for (int j = 0; j < nref; j++) {
        char what[160];
        snprintf(what, sizeof what, "%s [%s] %s%s out %d", c->op, c->label, em_dtype_name(dt),
                 decomp ? " decomposed" : "", j);
        double tol = th_tol(want[j].dtype) * (c->tol > 0 ? c->tol : 1.0);
        if (ok && !th_compare(out[j], &want[j], tol, what)) ok = 0;
        th_rt_free(&want[j]);
    }
    for (int i = 0; i < c->n_in; i++) th_rt_free(&rin[i]);
    em_scope_end(s);
    return ok;
}

/* loss = sum_j <out_j, w_j> over floating outputs, evaluated in float64 from values */
static double loss_of(em_tensor_t **out, int n, th_rt *w) {
    double l = 0;
    for (int j = 0; j < n; j++) {
        if (!w[j].d) continue;
        th_rt o = th_rt_from(out[j]);
        for (int64_t k = 0; k < th_numel(&o); k++) l += o.d[k] * w[j].d[k];
        th_rt_free(&o);
    }
    return l;
}

static int check_grad(const th_case *c, bool decomp, uint64_t seed) {
    em_scope_t *s = em_scope_begin();
    th_seed(seed);
    em_tensor_t *in[TH_MAX_IN], *out[TH_MAX_OUT];
    th_rt rin[TH_MAX_IN], w[TH_MAX_OUT];
    memset(w, 0, sizeof w);
    make_inputs(c, EM_F64, in, rin);
    bool diff[TH_MAX_IN];
    for (int i = 0; i < c->n_in; i++) {
        diff[i] = em_dtype_is_float(em_type(in[i])) && !c->in[i].nodiff;
        if (diff[i]) em_set_requires_grad(in[i], true);
    }
    emo_set_force_decomp(decomp);
    int n = run_fwd(c, in, out), ok = n > 0;
    int last = -1;
    for (int j = 0; ok && j < n; j++) {
        if (!em_dtype_is_float(em_type(out[j])) || !em_requires_grad(out[j])) continue;
        em_tensor_t *wt = th_randn(em_shape(out[j]), em_ndim(out[j]), em_type(out[j]));
        w[j] = th_rt_from(wt);
        last = j;
    }
    for (int j = 0; ok && j <= last; j++) {
        if (!w[j].d) continue;
        em_tensor_t *wt = em_from_data(w[j].d, w[j].shape, w[j].ndim, EM_F64);
        if (em_backward_ex(out[j], wt, j < last) != EM_OK) {
            fprintf(stderr, "  backward failed: %s\n", em_last_error());
            ok = 0;
        }
    }
    if (last < 0 && ok) {
        fprintf(stderr, "  %s [%s]: no output requires grad\n", c->op, c->label);
        ok = 0;
    }
    double worst = 0;
    for (int i = 0; ok && i < c->n_in; i++) {
        if (!diff[i]) continue;
        em_tensor_t *g = em_grad(in[i]);
        th_rt ga = g ? th_rt_from(g) : (th_rt){0};
        int64_t numel = th_numel(&rin[i]), stride = numel > 24 ? numel / 24 : 1;
        for (int64_t k = 0; ok && k < numel; k += stride) {
            double x0 = rin[i].d[k], h = 1e-6 * fmax(1.0, fabs(x0)), lp, lm;
            em_tensor_t *pin[TH_MAX_IN], *pout[TH_MAX_OUT];
            em_no_grad_begin();
            for (int sign = 0; sign < 2; sign++) {
                em_scope_t *s2 = em_scope_begin();
                rin[i].d[k] = x0 + (sign ? -h : h);
                for (int q = 0; q < c->n_in; q++)
                    pin[q] = q == i ? em_from_data(rin[i].d, rin[i].shape, rin[i].ndim, EM_F64) : in[q];
                int pn = run_fwd(c, pin, pout);
                double l = pn == n ? loss_of(pout, n, w) : NAN;
                if (sign) lm = l; else lp = l;
                em_scope_end(s2);
            }
            em_no_grad_end();
            rin[i].d[k] = x0;
            double num = (lp - lm) / (2 * h), ana = ga.d ? ga.d[k] : 0.0;
            double err = fabs(num - ana) / (1.0 + fabs(num));
            if (err > worst) worst = err;
            if (!(err <= 1e-5 * (c->tol > 0 ? c->tol : 1.0))) {
                fprintf(stderr, "  %s [%s]%s: d/d input %d [%lld]: analytic %.9g, numeric %.9g\n", c->op, c->label,
                        decomp ? " decomposed" : "", i, (long long)k, ana, num);
                ok = 0;
            }
        }
        if (ga.d) {
            /* the gradient has the input's shape */
            if (ga.ndim != rin[i].ndim) {
                fprintf(stderr, "  %s: gradient of input %d has %d dims, input %d\n", c->op, i, ga.ndim, rin[i].ndim);
                ok = 0;
            }
            th_rt_free(&ga);
        }
    }
    emo_set_force_decomp(false);
    for (int j = 0; j < TH_MAX_OUT; j++) th_rt_free(&w[j]);
    for (int i = 0; i < c->n_in; i++) th_rt_free(&rin[i]);
    em_scope_end(s);
    return ok;
}

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : NULL;
    default_cache_dir();
    int has_case[EMO_NUM_OPS] = {0}, has_grad[EMO_NUM_OPS] = {0};
    int64_t live0 = em_live_tensors();
    for (int g = 0; g < (int)(sizeof groups / sizeof *groups); g++) {
        for (const th_case *c = groups[g]; c->op; c++) {
            int op = emo_lookup(c->op);
            TH_CHECK(op >= 0, "case '%s' [%s] names no op in the table", c->op, c->label);
            if (op < 0) continue;
            has_case[op] = 1;
            if (c->grad) has_grad[op] = 1;
            if (filter && !strstr(c->op, filter)) continue;
            uint64_t seed = (uint64_t)(c - groups[g]) * 7919 + (uint64_t)g * 104729 + 17;
            unsigned mask = c->dtypes ? c->dtypes : (TH_F32 | TH_F64);
            for (int dt = 0; dt < EM_NUM_DTYPES; dt++) {
                if (!(mask & (1u << dt))) continue;
                em_clear_error();
                TH_CHECK(check_forward(c, (em_dtype)dt, false, seed), "%s [%s] forward in %s", c->op, c->label,
                         em_dtype_name((em_dtype)dt));
            }
            const emo_def *d = &emo_table[op];
            bool decomp = d->decomp && d->kernel;
            em_dtype ddt = (mask & TH_F64) ? EM_F64 : EM_F32;
            if (decomp)
                TH_CHECK(check_forward(c, ddt, true, seed), "%s [%s] decomposition forward", c->op, c->label);
            if (c->grad) {
                TH_CHECK(check_grad(c, false, seed), "%s [%s] gradient", c->op, c->label);
                if (decomp) TH_CHECK(check_grad(c, true, seed), "%s [%s] decomposition gradient", c->op, c->label);
            }
        }
    }
    /* compiled mode: every case again through the code generator, against eager */
    static th_compiled_cov cov;
    th_compiled_cases(groups, group_names, (int)(sizeof groups / sizeof *groups), filter, &cov);
    for (int op = 0; op < EMO_NUM_OPS; op++) {
        const emo_def *d = &emo_table[op];
        TH_CHECK(has_case[op], "op '%s' has no test case", d->name);
        bool differentiable = !(d->flags & (EMO_NODIFF | EMO_CREATE));
        if (differentiable) TH_CHECK(has_grad[op], "op '%s' is differentiable but has no gradient case", d->name);
        if (filter && !strstr(d->name, filter)) continue;
        TH_CHECK(cov.fwd[op] > 0, "op '%s' has no case that runs compiled (add a traceable case to tests/ops/)",
                 d->name);
        if (differentiable)
            TH_CHECK(cov.grad[op] > 0, "op '%s' has no gradient case that runs compiled (add a traceable case "
                     "with .grad to tests/ops/)", d->name);
    }
    /* docs/ops.md is kept in step with the table (its table is `ember ops --markdown`) */
    FILE *doc = fopen(EMBER_SRC_DIR "/docs/ops.md", "r");
    TH_CHECK(doc != NULL, "docs/ops.md is readable");
    if (doc) {
        static char text[1 << 20];
        size_t n = fread(text, 1, sizeof text - 1, doc);
        text[n] = 0;
        fclose(doc);
        for (int op = 0; op < EMO_NUM_OPS; op++) {
            char row[96];
            snprintf(row, sizeof row, "| `%s` |", emo_table[op].name);
            TH_CHECK(strstr(text, row) != NULL, "docs/ops.md has no row for op '%s' (regenerate its table with "
                     "`build/ember ops --markdown`)", emo_table[op].name);
        }
    }
    TH_CHECK(em_live_tensors() == live0, "tensors leaked: %lld live after the run, %lld before",
             (long long)em_live_tensors(), (long long)live0);
    return th_summary();
}
