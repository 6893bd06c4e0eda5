/* compiled_ops.c - the op-table cases (tests/ops/) run compiled: the compiled-vs-eager half of
 * the op test (tests/test_ops.c calls it; docs/compiler.md, "Correctness", documents it).
 *
 * Compiling each case on its own would cost one C compiler run per case and dtype (hundreds of
 * seconds), so cases are batched: for one group of cases (view, pointwise, ...) and one dtype, a
 * single traced function runs the forward of every case of the group that supports the dtype on
 * that case's own inputs, and returns all their outputs. That function is traced, compiled once
 * (one C file, one cc run) and its outputs are compared with the same cases run eagerly, within
 * the op test's per-dtype tolerances (th_tol times the case's factor). In f64, a second function
 * also runs backward with fixed random cotangents and returns the inputs' gradients, so the
 * compiled backward graph of every differentiable op is checked the same way (tolerance x10: the
 * backward graph is decomposed too, and rounds differently from the eager backward formulas).
 *
 * A case that cannot be traced or that fails eagerly (an error case) is skipped (the copy cases,
 * which check em_shares_storage, trace: symbolic tensors compare by graph value); the caller counts, per op, the
 * cases that did run compiled (th_compiled_cov) and fails when an op has none, so a new op
 * cannot land without a compiled case.
 *
 * The JIT cache: programs are keyed by their source, so runs of the same test binary share
 * compiled programs when they share $EMBER_CACHE_DIR (test_ops sets it to a directory beside
 * its binary unless the caller set it), and a second run compiles nothing.
 */
#include "harness.h"

#include "capture/capture.h"
#include "compiler/compiler.h"
#include "ops/op.h"

#define OPS_MAX 256

_Static_assert(EMO_NUM_OPS <= TH_MAX_OPS, "raise TH_MAX_OPS in harness.h");

typedef struct {
    const th_case *c[OPS_MAX];
    int n_case, first_in[OPS_MAX], first_out[OPS_MAX], n_outs[OPS_MAX], first_w[OPS_MAX];
    int n_in_total;
    bool grad;                            /* return input gradients instead of outputs */
    em_tensor_t *w[OPS_MAX * TH_MAX_OUT]; /* cotangents (grad mode) */
} ops_ctx;

/* the traced function: every case's forward (and backward in grad mode) on its own inputs */
static em_status ops_fn(void *vctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    ops_ctx *o = vctx;
    (void)n_in;
    (void)n_out;
    int w = 0;
    for (int k = 0; k < o->n_case; k++) {
        const th_case *c = o->c[k];
        em_tensor_t *cin[TH_MAX_IN], *cout[TH_MAX_OUT] = {0};
        for (int i = 0; i < c->n_in; i++) cin[i] = in[o->first_in[k] + i];
        int n = c->fwd(cin, c, cout);
        if (n != o->n_outs[k]) return em_seterr(EM_ERR_STATE, "case %s [%s] gave %d outputs", c->op, c->label, n);
        if (!o->grad) {
            for (int j = 0; j < n; j++) out[w++] = cout[j];
            continue;
        }
        int last = -1;
        em_tensor_t **wk = o->w + o->first_w[k];
        for (int j = 0; j < n; j++)
            if (wk[j]) last = j;
        for (int j = 0; j <= last; j++)
            if (wk[j] && em_backward_ex(cout[j], wk[j], j < last) != EM_OK) return em_last_status();
        for (int i = 0; i < c->n_in; i++) {
            em_tensor_t *g = em_requires_grad(cin[i]) ? em_grad(cin[i]) : NULL;
            out[w++] = g ? em_mul_scalar(g, 1.0) : em_zeros((int64_t[]){1}, 1, EM_F64);
        }
    }
    return EM_OK;
}

static bool selected(const th_case *c, const char *filter) { return !filter || strstr(c->op, filter); }

void th_compiled_group(const th_case *g, const char *gname, em_dtype dt, int grad, const char *filter,
                       th_compiled_cov *cov) {
    em_scope_t *s = em_scope_begin();
    static ops_ctx o;
    memset(&o, 0, sizeof o);
    o.grad = grad;
    static em_tensor_t *in[OPS_MAX * TH_MAX_IN], *eager[OPS_MAX * TH_MAX_OUT];
    int n_out = 0, n_w = 0, skipped = 0;
    for (const th_case *c = g; c->op && o.n_case < OPS_MAX; c++) {
        unsigned mask = c->dtypes ? c->dtypes : (TH_F32 | TH_F64);
        if (!(mask & (1u << dt)) || (grad && !c->grad) || !selected(c, filter)) continue;
        th_seed((uint64_t)(c - g) * 7919 + 17);
        int k = o.n_case, base = o.n_in_total;
        for (int i = 0; i < c->n_in; i++) {
            in[base + i] = th_make_input(&c->in[i], dt);
            if (grad && em_dtype_is_float(em_type(in[base + i])) && !c->in[i].nodiff)
                em_set_requires_grad(in[base + i], true);
        }
        em_tensor_t *cout[TH_MAX_OUT] = {0};
        int n = c->fwd(in + base, c, cout);
        if (n <= 0) continue; /* a case that errors eagerly (error cases) */
        o.c[k] = c;
        o.first_in[k] = base;
        o.first_out[k] = n_out;
        o.first_w[k] = n_w;
        o.n_outs[k] = n;
        if (grad) {
            for (int j = 0; j < n; j++) {
                o.w[n_w + j] = NULL;
                if (em_dtype_is_float(em_type(cout[j])) && em_requires_grad(cout[j]))
                    o.w[n_w + j] = th_randn(em_shape(cout[j]), em_ndim(cout[j]), em_type(cout[j]));
            }
        }
        /* this case alone, on its own inputs: eager results (gradients) and whether it traces
           (a case that cannot run symbolically does not) */
        ops_ctx *one = calloc(1, sizeof *one);
        if (!one) break;
        *one = o;
        one->n_case = 1;
        one->c[0] = c;
        one->first_in[0] = 0;
        one->first_w[0] = n_w;
        one->n_outs[0] = n;
        em_tensor_t **ins = in + base, *res[TH_MAX_IN + TH_MAX_OUT] = {0};
        int nres = grad ? c->n_in : n;
        bool ok = true;
        if (grad) {
            ok = ops_fn(one, ins, c->n_in, res, nres) == EM_OK;
            for (int i = 0; i < c->n_in; i++)
                if (em_requires_grad(ins[i])) em_zero_grad(ins[i]);
        } else {
            for (int j = 0; j < n; j++) res[j] = cout[j];
        }
        emcap_trace tr1;
        if (ok && emcap_trace_fn(ops_fn, one, ins, c->n_in, nres, true, &tr1) == EM_OK) emcap_trace_free(&tr1);
        else ok = false;
        free(one);
        if (!ok) {
            skipped++;
            continue;
        }
        for (int j = 0; j < nres; j++) eager[n_out++] = res[j];
        o.n_in_total += c->n_in;
        if (grad) n_w += n;
        o.n_case++;
    }
    if (skipped && getenv("EMBER_TEST_VERBOSE"))
        printf("compiled %s cases %s%s: %d case(s) not traceable, skipped\n", gname, em_dtype_name(dt),
               grad ? " gradients" : "", skipped);
    if (o.n_case == 0) {
        em_scope_end(s);
        return;
    }
    emcap_trace tr;
    em_clear_error();
    em_status st = emcap_trace_fn(ops_fn, &o, in, o.n_in_total, n_out, true, &tr);
    TH_CHECK(st == EM_OK, "compiled %s cases %s%s trace: %s", gname, em_dtype_name(dt), grad ? " gradients" : "",
             st == EM_OK ? "ok" : em_last_error());
    if (st != EM_OK) {
        em_scope_end(s);
        return;
    }
    emg_cse(tr.g);
    emg_dce(tr.g);
    emc_program *p = emc_compile_graph(tr.g, NULL);
    TH_CHECK(p != NULL, "compiled %s cases %s%s compile (%d cases): %s", gname, em_dtype_name(dt),
             grad ? " gradients" : "", o.n_case, p ? "ok" : em_last_error());
    em_tensor_t **got = calloc((size_t)tr.g->n_outputs + 1, sizeof *got);
    em_tensor_t **ins = calloc((size_t)tr.g->n_inputs + 1, sizeof *ins);
    for (int i = 0; i < o.n_in_total; i++) ins[i] = in[i];
    for (int i = 0; i < tr.n_lifted; i++) ins[o.n_in_total + i] = tr.lifted[i];
    if (p && getenv("EMBER_TEST_VERBOSE"))
        printf("compiled %s cases %s%s: %d cases, %d nodes, %d kernels, %d fallbacks, %.0f ms to compile%s\n", gname,
               em_dtype_name(dt), grad ? " gradients" : "", o.n_case, emc_program_stats(p)->graph_nodes,
               emc_program_stats(p)->kernels, emc_program_stats(p)->fallbacks, emc_program_stats(p)->compile_ms,
               emc_program_stats(p)->disk_hit ? " (disk hit)" : "");
    if (p) {
        st = emc_run(p, ins, tr.g->n_inputs, got);
        TH_CHECK(st == EM_OK, "compiled %s cases %s run: %s", gname, em_dtype_name(dt), st == EM_OK ? "ok" : em_last_error());
        for (int k = 0; st == EM_OK && k < o.n_case; k++) {
            const th_case *c = o.c[k];
            int n = grad ? c->n_in : o.n_outs[k];
            bool all = true;
            for (int j = 0; j < n; j++) {
                int q = o.first_out[k] + j;
                th_rt want = th_rt_from(eager[q]);
                char what[200];
                snprintf(what, sizeof what, "%s [%s] %s%s output %d", c->op, c->label, em_dtype_name(dt),
                         grad ? " gradient" : "", j);
                double tol = th_tol(want.dtype) * (c->tol > 0 ? c->tol : 1.0) * (grad ? 10 : 1);
                bool same = th_compare(got[q], &want, tol, what);
                TH_CHECK(same, "%s compiled == eager", what);
                all &= same;
                th_rt_free(&want);
            }
            int op = emo_lookup(c->op);
            if (all && op >= 0 && cov) (grad ? cov->grad : cov->fwd)[op]++;
        }
    }
    emc_program_free(p);
    free(got);
    free(ins);
    emcap_trace_free(&tr);
    em_scope_end(s);
}

void th_compiled_cases(const th_case *const *groups, const char *const *names, int n_groups, const char *filter,
                       th_compiled_cov *cov) {
    for (int gi = 0; gi < n_groups; gi++) {
        for (int dt = 0; dt < EM_NUM_DTYPES; dt++) th_compiled_group(groups[gi], names[gi], (em_dtype)dt, false, filter, cov);
        th_compiled_group(groups[gi], names[gi], EM_F64, true, filter, cov);
    }
}
