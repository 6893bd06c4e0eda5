/* compile.c - em_compile and em_call: the specialization cache, guards, and running programs.
 *
 * A compiled function keeps a list of specializations. Each holds the guards it was traced
 * under (per argument: dtype, shape, strides, requires_grad; per lifted tensor: that it is still
 * alive elsewhere and unchanged in storage, dtype, shape, strides, requires_grad and whether it
 * has a gradient; and the grad mode), and the traced program. em_call takes the first
 * specialization whose guards pass; a miss traces a new one, up to the recompile limit, after
 * which calls run fn eagerly with one logged warning. A trace that reads tensor data (a graph
 * break) makes its specialization run eagerly. Running a program: reserve the Philox counters its
 * random nodes use, execute the graph, hand the outputs to the caller's scope, then apply the
 * write-backs (in-place updates and gradients).
 */
#include "capture.h"

#include "../compiler/compiler.h"

#include <stdio.h>
#include <time.h>

typedef struct {
    em_dtype dtype;
    int ndim;
    int64_t shape[EM_MAX_DIMS], strides[EM_MAX_DIMS];
    bool requires_grad, has_grad;
    emt_storage *storage; /* lifted tensors only */
} guard;

typedef struct {
    guard *args;
    int n_args;
    guard *lifted; /* one per tr.lifted */
    bool grad_mode;
    bool eager;    /* a graph break: run fn eagerly */
    emcap_trace tr;
    int *rand_nodes; /* nodes with EMO_RANDOM, with their offsets as traced */
    uint64_t *rand_off;
    int n_rand;
    emc_program *prog; /* backend "c": the generated program (NULL: the interpreter runs the graph) */
} spec;

struct em_compiled {
    em_traceable_fn fn;
    void *ctx;
    em_compile_opts opts;
    spec *specs;
    int n_specs;
    bool warned, warned_c;
    bool use_c; /* backend "c" */
    em_compile_stats stats;
};

static void guard_of(const em_tensor_t *t, guard *g, bool with_storage) {
    g->dtype = t->dtype;
    g->ndim = t->ndim;
    for (int d = 0; d < t->ndim; d++) {
        g->shape[d] = t->shape[d];
        g->strides[d] = t->strides[d];
    }
    g->requires_grad = t->requires_grad;
    g->has_grad = t->grad != NULL;
    g->storage = with_storage ? t->storage : NULL;
}

/* NULL when t passes g, else what differs (for the recompiles log) */
static const char *guard_fails(const em_tensor_t *t, const guard *g, bool with_storage) {
    if (t->dtype != g->dtype) return "dtype";
    if (t->ndim != g->ndim) return "rank";
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] != g->shape[d]) return "shape";
        if (t->shape[d] != 1 && t->strides[d] != g->strides[d]) return "strides";
    }
    if (t->requires_grad != g->requires_grad) return "requires_grad";
    if (with_storage && (t->storage != g->storage || (t->grad != NULL) != g->has_grad)) return "lifted tensor changed";
    return NULL;
}

static const char *spec_fails(const spec *s, em_tensor_t *const *in, int n_in) {
    if (s->n_args != n_in) return "number of inputs";
    if (s->grad_mode != em_is_grad_enabled()) return "grad mode";
    for (int i = 0; i < n_in; i++) {
        const char *why = guard_fails(in[i], &s->args[i], false);
        if (why) return why;
    }
    for (int i = 0; !s->eager && i < s->tr.n_lifted; i++) {
        em_tensor_t *t = s->tr.lifted[i];
        if (t->refcount <= 1) return "a lifted tensor was released by its owner";
        const char *why = guard_fails(t, &s->lifted[i], true);
        if (why) return why;
    }
    return NULL;
}

em_compiled_t *em_compile(em_traceable_fn fn, void *ctx, const em_compile_opts *opts) {
    if (!fn) return em_seterr_null(EM_ERR_ARG, "em_compile: fn is NULL");
    if (opts && opts->backend && strcmp(opts->backend, "interp") != 0 && strcmp(opts->backend, "c") != 0)
        return em_seterr_null(EM_ERR_ARG, "em_compile: unknown backend '%s' (available: interp, c)", opts->backend);
    if (opts && opts->recompile_limit < 0)
        return em_seterr_null(EM_ERR_ARG, "em_compile: recompile_limit must be >= 0");
    em_compiled_t *f = calloc(1, sizeof *f);
    if (!f) return em_seterr_null(EM_ERR_OOM, "em_compile: out of memory");
    f->fn = fn;
    f->ctx = ctx;
    if (opts) f->opts = *opts;
    if (f->opts.recompile_limit == 0) f->opts.recompile_limit = 8;
    f->use_c = !f->opts.backend || strcmp(f->opts.backend, "c") == 0; /* C is the default */
    return f;
}

static void spec_free(spec *s) {
    emcap_trace_free(&s->tr);
    free(s->args);
    free(s->lifted);
    free(s->rand_nodes);
    free(s->rand_off);
    emc_program_free(s->prog);
}

void em_compiled_free(em_compiled_t *f) {
    if (!f) return;
    for (int i = 0; i < f->n_specs; i++) spec_free(&f->specs[i]);
    free(f->specs);
    free(f);
}

em_compile_stats em_compiled_stats(const em_compiled_t *f) {
    em_compile_stats z = {0};
    return f ? f->stats : z;
}

char *em_compiled_graph(const em_compiled_t *f) {
    for (int i = f ? f->n_specs - 1 : -1; i >= 0; i--)
        if (f->specs[i].tr.g) return emg_print(f->specs[i].tr.g);
    return NULL;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* the graph passes that run before a program is kept */
static em_status optimize(emg_graph *g) {
    if (emg_verify(g) != EM_OK) return em_last_status();
    if (emg_cse(g) < 0 || emg_dce(g) < 0) return em_last_status();
    return emg_verify(g);
}

static em_status trace_spec(em_compiled_t *f, em_tensor_t *const *in, int n_in, int n_out, spec *s) {
    memset(s, 0, sizeof *s);
    s->n_args = n_in;
    s->grad_mode = em_is_grad_enabled();
    s->args = calloc((size_t)n_in + 1, sizeof *s->args);
    if (!s->args) return em_seterr(EM_ERR_OOM, "em_call: out of memory");
    for (int i = 0; i < n_in; i++) guard_of(in[i], &s->args[i], false);
    em_status st = emcap_trace_fn(f->fn, f->ctx, in, n_in, n_out, f->opts.fullgraph, &s->tr);
    if (st != EM_OK) {
        spec_free(s);
        return st;
    }
    if (s->tr.has_break) {
        s->eager = true;
        f->stats.graph_breaks++;
        emb_log("breaks", "graph break: %s; this specialization runs eagerly", s->tr.break_reason);
        return EM_OK;
    }
    if ((st = optimize(s->tr.g)) != EM_OK) {
        spec_free(s);
        return st;
    }
    s->lifted = calloc((size_t)s->tr.n_lifted + 1, sizeof *s->lifted);
    s->rand_nodes = calloc((size_t)s->tr.g->n_nodes + 1, sizeof *s->rand_nodes);
    s->rand_off = calloc((size_t)s->tr.g->n_nodes + 1, sizeof *s->rand_off);
    if (!s->lifted || !s->rand_nodes || !s->rand_off) {
        spec_free(s);
        return em_seterr(EM_ERR_OOM, "em_call: out of memory");
    }
    for (int i = 0; i < s->tr.n_lifted; i++) guard_of(s->tr.lifted[i], &s->lifted[i], true);
    for (int i = 0; i < s->tr.g->n_nodes; i++) {
        if (!(emo_table[s->tr.g->nodes[i].op].flags & EMO_RANDOM)) continue;
        s->rand_nodes[s->n_rand] = i;
        s->rand_off[s->n_rand++] = s->tr.g->nodes[i].attrs.offset - s->tr.rng_base;
    }
    if (emb_log_on("graph")) {
        char *txt = emg_print(s->tr.g);
        emb_log("graph", "compiled graph:\n%s", txt ? txt : "(print failed)");
        free(txt);
    }
    if (f->use_c && !(s->prog = emc_compile_graph(s->tr.g, NULL))) {
        /* the error (naming the generated file and cc's messages) stays in em_last_error() */
        emb_log("code", "the C backend failed, this specialization runs in the interpreter: %s", em_last_error());
        if (!f->warned_c) {
            fprintf(stderr, "ember: em_call: the C backend failed; running in the interpreter (EMBER_LOG=code "
                    "for details): %.300s\n", em_last_error());
            f->warned_c = true;
        }
    }
    if (s->prog) {
        f->stats.kernels = emc_program_stats(s->prog)->kernels;
        f->stats.disk_cache_hits += emc_program_stats(s->prog)->disk_hit;
    }
    return EM_OK;
}

static em_status apply_writebacks(const emcap_trace *tr, em_tensor_t **res) {
    for (int k = 0; k < tr->n_wb; k++) {
        const emcap_writeback *w = &tr->wb[k];
        em_tensor_t *t = w->target, *v = w->value >= 0 ? res[w->value] : NULL;
        if (!w->is_grad) {
            emt_copy(t, v);
            t->storage->version++;
        } else if (!v) {
            em_release(t->grad);
            t->grad = NULL;
        } else if (t->grad && t->grad->ndim == v->ndim && t->grad->dtype == t->dtype &&
                   !memcmp(t->grad->shape, v->shape, sizeof(int64_t) * (size_t)v->ndim)) {
            emt_copy(t->grad, v); /* in place, so handles from em_grad see it */
            t->grad->storage->version++;
        } else {
            em_tensor_t *c = emt_contiguous_copy(v, t->dtype);
            if (!c) return em_last_status();
            em_release(t->grad);
            t->grad = c;
        }
    }
    return EM_OK;
}

static em_status run_spec(em_compiled_t *f, spec *s, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    if (s->eager) {
        f->stats.eager_calls++;
        return f->fn(f->ctx, in, n_in, out, n_out);
    }
    const emcap_trace *tr = &s->tr;
    int n_inputs = tr->n_args + tr->n_lifted, n_res = tr->g->n_outputs;
    em_tensor_t **inputs = calloc((size_t)n_inputs + 1, sizeof *inputs), **res = calloc((size_t)n_res + 1, sizeof *res);
    if (!inputs || !res) {
        free(inputs);
        free(res);
        return em_seterr(EM_ERR_OOM, "em_call: out of memory");
    }
    for (int i = 0; i < n_in; i++) inputs[i] = in[i];
    for (int i = 0; i < tr->n_lifted; i++) inputs[n_in + i] = tr->lifted[i];
    uint64_t seed, base = emt_rng_reserve(tr->rng_count, &seed);
    for (int k = 0; k < s->n_rand; k++) {
        emo_attrs *a = &tr->g->nodes[s->rand_nodes[k]].attrs;
        a->seed = seed;
        a->offset = base + s->rand_off[k];
    }
    em_status st;
    if (s->prog) {
        emc_program_set_rng(s->prog, seed, base - tr->rng_base);
        st = emc_run(s->prog, inputs, n_inputs, res);
    } else {
        st = emg_run(tr->g, inputs, n_inputs, res);
    }
    if (st == EM_OK) st = apply_writebacks(tr, res);
    if (st == EM_OK)
        for (int j = 0; j < n_out; j++) out[j] = res[j];
    free(inputs);
    free(res);
    return st;
}

em_status em_call(em_compiled_t *f, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    if (!f) return em_seterr(EM_ERR_ARG, "em_call: compiled function is NULL");
    if (n_in < 0 || n_out < 0 || (n_in > 0 && !in) || (n_out > 0 && !out))
        return em_seterr(EM_ERR_ARG, "em_call: bad input/output arrays (n_in %d, n_out %d)", n_in, n_out);
    for (int i = 0; i < n_in; i++) {
        char what[32];
        snprintf(what, sizeof what, "in[%d]", i);
        if (!emt_check(in[i], "em_call", what)) return em_last_status();
        if (emt_is_symbolic(in[i])) return em_seterr(EM_ERR_COMPILE, "em_call: in[%d] is symbolic; compiled functions "
                                                     "cannot be called while tracing", i);
    }
    for (int j = 0; j < n_out; j++) out[j] = NULL;
    const char *why = NULL;
    for (int i = 0; i < f->n_specs; i++) {
        const char *w = spec_fails(&f->specs[i], in, n_in);
        if (!w) {
            f->stats.cache_hits++;
            return run_spec(f, &f->specs[i], in, n_in, out, n_out);
        }
        why = w;
    }
    if (f->n_specs >= f->opts.recompile_limit) {
        if (!f->warned) {
            fprintf(stderr, "ember: em_call: recompile limit (%d) reached (last guard failure: %s); "
                    "new specializations run eagerly\n", f->opts.recompile_limit, why ? why : "?");
            f->warned = true;
        }
        f->stats.eager_calls++;
        return f->fn(f->ctx, in, n_in, out, n_out);
    }
    if (f->n_specs > 0) emb_log("recompiles", "recompiling: guard failed on %s", why ? why : "?");
    spec *specs = realloc(f->specs, sizeof *specs * (size_t)(f->n_specs + 1));
    if (!specs) return em_seterr(EM_ERR_OOM, "em_call: out of memory");
    f->specs = specs;
    double t0 = now_ms();
    em_status st = trace_spec(f, in, n_in, n_out, &f->specs[f->n_specs]);
    if (st != EM_OK) return st;
    spec *s = &f->specs[f->n_specs++];
    f->stats.compile_ms += now_ms() - t0;
    if (!s->eager) {
        f->stats.compiles++;
        if (f->n_specs > 1) f->stats.recompiles++;
        f->stats.graph_nodes = s->tr.g->n_nodes;
    }
    return run_spec(f, s, in, n_in, out, n_out);
}
