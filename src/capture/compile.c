/* compile.c - em_compile and em_call: the specialization cache, guards, and running programs.
 *
 * A compiled function keeps a list of specializations. Each holds the guards it was traced
 * under (per argument: dtype, shape, strides, requires_grad; per lifted tensor: that it is still
 * alive elsewhere and unchanged in storage, dtype, shape, strides, requires_grad and whether it
 * has a gradient; and the grad mode), and the traced program. em_call takes the first
 * specialization whose guards pass; a miss traces a new one, up to the recompile limit, after
 * which calls run fn eagerly with one warning. EMBER_LOG=recompiles names the guard that failed
 * with its old and new values; EMBER_LOG=guards prints the guard set of each specialization. A
 * trace that reads tensor data (a graph break) makes its specialization run in lazy mode: fn runs
 * as compiled segments split at the reads, found again by a structural hash (trace.c). Running a
 * program: reserve the Philox counters its random nodes use, execute the graph, hand the outputs
 * to the caller's scope, then apply the write-backs (in-place updates and gradients).
 *
 * Dynamic shapes ("specialise, then generalise"). When a call misses only on sizes (same
 * dtypes, ranks, requires_grad, grad mode, lifted tensors; contiguous arguments) and the new
 * sizes are >= 2, the dims that changed become symbols (dims that changed from and to the same
 * values share one), as do dims marked with em_mark_dynamic (or every dim, EM_DYNAMIC_ALL).
 * The function is traced at the new sizes and at two probe sizes, each generated as C without
 * the C compiler, and dynamic.c turns the literals that differ into parameters of one template,
 * compiled once: a "family" (fN-dynK) with guards on the fixed sizes, the symbols (>= 2, equal
 * dims equal) and the lifted tensors. Every later size that passes them is traced and generated
 * again and must match the template (its parameter values are read off its source); it then
 * runs the template's code with its own host side (arena, outputs, fallbacks) as an "instance"
 * specialization whose guards are its exact sizes, so a repeated size costs one guard check. A
 * size whose code differs (a size-dependent choice) gets a static specialization instead. With
 * backend "interp" an instance is just its trace. Families count against the recompile limit
 * like specializations; instances do not.
 *
 * Names: compiled function N is "fN", its specialization K "fN-specK", its lazy segments
 * "fN-segK-<hash>", its generalised programs "fN-dynK"; log lines and EMBER_DEBUG_DIR folders
 * use the same names.
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
    em_dtype mm_prec; /* em_get_matmul_precision() when traced: a global mode matmul nodes record */
    bool lazy;     /* a graph break: fn runs as compiled segments (f->segs) */
    emcap_trace tr;
    int *rand_nodes; /* nodes with EMO_RANDOM, with their offsets as traced */
    uint64_t *rand_off;
    int n_rand;
    emc_program *prog; /* backend "c": the generated program (NULL: the interpreter runs the graph) */
    int fam;           /* an instance of family fam (dynamic shapes); -1 for specializations */
} spec;

/* a generalised program: the sizes it serves, and its template */
typedef struct {
    int n_args;
    guard *args;              /* dtype, rank, requires_grad; the fixed sizes (symbolic dims: the size at creation) */
    int8_t (*sym)[EM_MAX_DIMS]; /* per argument and dim: its symbol, -1 when the size is fixed */
    int n_sym;
    bool grad_mode;
    em_dtype mm_prec;
    int ref;                  /* the instance traced at creation: its lifted-tensor guards hold for the family */
    emcap_template *tmpl;     /* backend "c" */
    emc_jit jit;
} family;

struct em_compiled {
    em_traceable_fn fn;
    void *ctx;
    em_compile_opts opts;
    spec *specs;
    int n_specs;
    bool warned, warned_c;
    bool use_c; /* backend "c" */
    em_compile_stats stats;
    int id;
    emcap_segcache segs;
    bool ran;
    family *fams;
    int n_fams;
    int n_programs; /* specializations and families: what the recompile limit counts */
};

static void family_free(family *F);

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

static char *dims_str(char *buf, const int64_t *v, int n) { return emb_shape_str(buf, v, n); }

/* false when t passes g; else writes what differs, with the old and new values, into why */
static bool guard_fails(const em_tensor_t *t, const guard *g, bool with_storage, const char *what, char *why,
                        size_t n) {
    char a[EMB_SHAPE_BUF], b[EMB_SHAPE_BUF];
    if (t->dtype != g->dtype)
        return snprintf(why, n, "%s dtype: %s -> %s", what, em_dtype_name(g->dtype), em_dtype_name(t->dtype)), true;
    if (t->ndim != g->ndim) return snprintf(why, n, "%s rank: %d -> %d", what, g->ndim, t->ndim), true;
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] != g->shape[d])
            return snprintf(why, n, "%s size(%d): %lld -> %lld (shape %s -> %s)", what, d, (long long)g->shape[d],
                            (long long)t->shape[d], dims_str(a, g->shape, g->ndim), dims_str(b, t->shape, t->ndim)),
                   true;
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] != 1 && t->strides[d] != g->strides[d])
            return snprintf(why, n, "%s stride(%d): %lld -> %lld (strides %s -> %s)", what, d,
                            (long long)g->strides[d], (long long)t->strides[d], dims_str(a, g->strides, g->ndim),
                            dims_str(b, t->strides, t->ndim)),
                   true;
    if (t->requires_grad != g->requires_grad)
        return snprintf(why, n, "%s requires_grad: %d -> %d", what, g->requires_grad, t->requires_grad), true;
    if (with_storage && t->storage != g->storage)
        return snprintf(why, n, "%s storage: replaced (em_assign into it instead, or em_compile again)", what), true;
    if (with_storage && (t->grad != NULL) != g->has_grad)
        return snprintf(why, n, "%s has a gradient: %d -> %d", what, g->has_grad, t->grad != NULL), true;
    return false;
}

/* false when the call passes s's guards; else why names the guard, with old and new values */
static bool spec_fails(const spec *s, em_tensor_t *const *in, int n_in, char *why, size_t n) {
    if (s->n_args != n_in) return snprintf(why, n, "number of inputs: %d -> %d", s->n_args, n_in), true;
    if (s->grad_mode != em_is_grad_enabled())
        return snprintf(why, n, "grad mode: %d -> %d", s->grad_mode, em_is_grad_enabled()), true;
    if (s->mm_prec != em_get_matmul_precision())
        return snprintf(why, n, "matmul precision: %s -> %s", em_dtype_name(s->mm_prec),
                        em_dtype_name(em_get_matmul_precision())), true;
    char what[48];
    for (int i = 0; i < n_in; i++) {
        snprintf(what, sizeof what, "in[%d]", i);
        if (guard_fails(in[i], &s->args[i], false, what, why, n)) return true;
    }
    for (int i = 0; !s->lazy && i < s->tr.n_lifted; i++) {
        em_tensor_t *t = s->tr.lifted[i];
        snprintf(what, sizeof what, "lifted[%d] (a tensor read through ctx)", i);
        if (t->refcount <= 1) return snprintf(why, n, "%s: released by its owner", what), true;
        if (guard_fails(t, &s->lifted[i], true, what, why, n)) return true;
    }
    return false;
}

static void log_guards(const em_compiled_t *f, const spec *s, int k) {
    if (!emb_log_on("guards")) return;
    char a[EMB_SHAPE_BUF], b[EMB_SHAPE_BUF];
    emb_log("guards", "f%d-spec%d: %d argument guard(s), %d lifted-tensor guard(s), grad mode %d%s", f->id, k,
            s->n_args, s->lazy ? 0 : s->tr.n_lifted, s->grad_mode, s->lazy ? " (lazy: graph-break segments)" : "");
    for (int i = 0; i < s->n_args; i++) {
        const guard *g = &s->args[i];
        emb_log("guards", "f%d-spec%d:   in[%d]: %s shape %s strides %s requires_grad %d", f->id, k, i,
                em_dtype_name(g->dtype), dims_str(a, g->shape, g->ndim), dims_str(b, g->strides, g->ndim),
                g->requires_grad);
    }
    for (int i = 0; !s->lazy && i < s->tr.n_lifted; i++) {
        const guard *g = &s->lifted[i];
        emb_log("guards", "f%d-spec%d:   lifted[%d]: the same tensor, %s shape %s strides %s requires_grad %d "
                "has_grad %d", f->id, k, i, em_dtype_name(g->dtype), dims_str(a, g->shape, g->ndim),
                dims_str(b, g->strides, g->ndim), g->requires_grad, g->has_grad);
    }
}

em_compiled_t *em_compile(em_traceable_fn fn, void *ctx, const em_compile_opts *opts) {
    if (!fn) return em_seterr_null(EM_ERR_ARG, "em_compile: fn is NULL");
    if (opts && opts->backend && strcmp(opts->backend, "interp") != 0 && strcmp(opts->backend, "c") != 0)
        return em_seterr_null(EM_ERR_ARG, "em_compile: unknown backend '%s' (available: interp, c)", opts->backend);
    if (opts && (opts->dynamic < EM_DYNAMIC_AUTO || opts->dynamic > EM_DYNAMIC_ALL))
        return em_seterr_null(EM_ERR_ARG, "em_compile: dynamic must be EM_DYNAMIC_AUTO, EM_DYNAMIC_OFF or "
                              "EM_DYNAMIC_ALL (got %d)", (int)opts->dynamic);
    if (opts && opts->recompile_limit < 0)
        return em_seterr_null(EM_ERR_ARG, "em_compile: recompile_limit must be >= 0");
    em_compiled_t *f = calloc(1, sizeof *f);
    if (!f) return em_seterr_null(EM_ERR_OOM, "em_compile: out of memory");
    f->fn = fn;
    f->ctx = ctx;
    if (opts) f->opts = *opts;
    if (f->opts.recompile_limit == 0) f->opts.recompile_limit = 8;
    f->use_c = !f->opts.backend || strcmp(f->opts.backend, "c") == 0; /* C is the default */
    static int next_id;
    f->id = __atomic_add_fetch(&next_id, 1, __ATOMIC_RELAXED);
    f->segs.use_c = f->use_c;
    f->segs.fn_id = f->id;
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
    for (int k = 0; k < f->n_fams; k++) family_free(&f->fams[k]);
    free(f->fams);
    emcap_segcache_free(&f->segs);
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

/* traces fn on in into s: the argument guards, the optimized graph, the lifted-tensor guards and
   the random nodes (a graph break leaves s lazy). *traced gets a copy of the graph before the
   passes when EMBER_DEBUG_DIR is set. */
static em_status trace_only(em_compiled_t *f, em_tensor_t *const *in, int n_in, int n_out, spec *s, const char *name,
                            emg_graph **traced) {
    *traced = NULL;
    memset(s, 0, sizeof *s);
    s->fam = -1;
    s->n_args = n_in;
    s->grad_mode = em_is_grad_enabled();
    s->mm_prec = em_get_matmul_precision();
    s->args = calloc((size_t)n_in + 1, sizeof *s->args);
    if (!s->args) return em_seterr(EM_ERR_OOM, "em_call: out of memory");
    for (int i = 0; i < n_in; i++) guard_of(in[i], &s->args[i], false);
    em_status st = emcap_trace_fn(f->fn, f->ctx, in, n_in, n_out, f->opts.fullgraph, &s->tr);
    if (st != EM_OK) {
        spec_free(s);
        return st;
    }
    if (s->tr.has_break) {
        s->lazy = true;
        emb_log("breaks", "%s: graph break: %s; the function runs as compiled segments split at its data "
                "reads (EMBER_LOG=breaks names each segment)", name, s->tr.break_reason);
        return EM_OK;
    }
    *traced = getenv("EMBER_DEBUG_DIR") ? emg_clone(s->tr.g) : NULL;
    if (emb_log_on("graph")) {
        char *txt = emg_print(s->tr.g);
        emb_log("graph", "traced graph (%d nodes, before passes):\n%s", s->tr.g->n_nodes, txt ? txt : "(print failed)");
        free(txt);
    }
    if ((st = optimize(s->tr.g)) != EM_OK) {
        emg_free(*traced);
        *traced = NULL;
        spec_free(s);
        return st;
    }
    s->lifted = calloc((size_t)s->tr.n_lifted + 1, sizeof *s->lifted);
    s->rand_nodes = calloc((size_t)s->tr.g->n_nodes + 1, sizeof *s->rand_nodes);
    s->rand_off = calloc((size_t)s->tr.g->n_nodes + 1, sizeof *s->rand_off);
    if (!s->lifted || !s->rand_nodes || !s->rand_off) {
        emg_free(*traced);
        *traced = NULL;
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
        emb_log("graph", "after CSE and DCE (%d nodes):\n%s", s->tr.g->n_nodes, txt ? txt : "(print failed)");
        free(txt);
    }
    return EM_OK;
}

/* per graph output of tr, the graph input it is the new value of (a write-back of an em_assign
   into a lifted tensor), else -1: emc_opts.out_target, so the compiler can write such an output
   straight into the tensor instead of into a fresh buffer copied back after the run. NULL when
   there is none (or out of memory: then every output is simply fresh). */
static int *wb_targets(const emcap_trace *tr) {
    int n = tr->g->n_outputs, *t = NULL;
    for (int k = 0; k < tr->n_wb; k++) {
        const emcap_writeback *w = &tr->wb[k];
        if (w->is_grad || w->value < 0 || w->value >= n) continue;
        for (int j = 0; j < tr->n_lifted; j++) {
            if (tr->lifted[j] != w->target) continue;
            if (!t) {
                if (!(t = malloc(sizeof *t * (size_t)n))) return NULL;
                for (int o = 0; o < n; o++) t[o] = -1;
            }
            t[w->value] = tr->n_args + j;
            break;
        }
    }
    return t;
}

static emc_program *compile_trace(const emcap_trace *tr, bool prepare_only) {
    int *tg = wb_targets(tr);
    emc_opts o = {.out_target = tg};
    emc_program *p = prepare_only ? emc_prepare_graph(tr->g, &o) : emc_compile_graph(tr->g, &o);
    free(tg);
    return p;
}

static void program_stats(em_compiled_t *f, const spec *s, const char *name) {
    const emc_stats *ps = emc_program_stats(s->prog);
    f->stats.kernels = ps->kernels;
    f->stats.disk_cache_hits += ps->disk_hit;
    f->stats.planned_peak_bytes = ps->planned_peak_bytes;
    f->stats.unplanned_bytes = ps->unplanned_bytes;
    f->stats.inplace_bytes = ps->inplace_bytes;
    f->stats.output_bytes = ps->output_bytes;
    if (s->fam < 0) {
        emb_log("code", "%s: program %s, source %s", name, ps->key, ps->source_path);
        emcap_cache_note(s->tr.g, s->prog);
    }
}

static em_status trace_spec(em_compiled_t *f, em_tensor_t *const *in, int n_in, int n_out, spec *s) {
    char name[48];
    snprintf(name, sizeof name, "f%d-spec%d", f->id, f->n_specs);
    emg_graph *traced;
    em_status st = trace_only(f, in, n_in, n_out, s, name, &traced);
    if (st != EM_OK || s->lazy) return st;
    if (f->use_c && !(s->prog = compile_trace(&s->tr, false))) {
        /* the error (naming the generated file and cc's messages) stays in em_last_error() */
        emb_log("code", "%s: the C backend failed, this specialization runs in the interpreter: %s", name,
                em_last_error());
        if (!f->warned_c) {
            fprintf(stderr, "ember: em_call: the C backend failed; running in the interpreter (EMBER_LOG=code "
                    "for details): %.300s\n", em_last_error());
            f->warned_c = true;
        }
    }
    if (s->prog) program_stats(f, s, name);
    emcap_dump(name, traced, s->tr.g, s->prog);
    emg_free(traced);
    return EM_OK;
}

/* ---- dynamic shapes -------------------------------------------------------------------------- */
static bool contiguous(const int64_t *shape, const int64_t *strides, int nd) {
    int64_t st = 1;
    for (int d = nd - 1; d >= 0; d--) {
        if (shape[d] != 1 && strides[d] != st) return false;
        st *= shape[d];
    }
    return true;
}

static void family_free(family *F) {
    free(F->args);
    free(F->sym);
    emcap_template_free(F->tmpl);
    emc_jit_unload(&F->jit);
}

/* a shape with its symbols: (1, s0) */
static char *sym_shape(char *buf, const family *F, int i) {
    const guard *g = &F->args[i];
    int n = snprintf(buf, EMB_SHAPE_BUF, "(");
    for (int d = 0; d < g->ndim && n < EMB_SHAPE_BUF - 24; d++) {
        if (F->sym[i][d] >= 0) n += snprintf(buf + n, EMB_SHAPE_BUF - (size_t)n, "%ss%d", d ? ", " : "", F->sym[i][d]);
        else n += snprintf(buf + n, EMB_SHAPE_BUF - (size_t)n, "%s%lld", d ? ", " : "", (long long)g->shape[d]);
    }
    snprintf(buf + n, EMB_SHAPE_BUF - (size_t)n, g->ndim == 1 ? ",)" : ")");
    return buf;
}

/* the symbols' values in a call that passes F's argument guards (vals has n_sym entries) */
static void sym_values(const family *F, em_tensor_t *const *in, int64_t *vals) {
    for (int i = 0; i < F->n_args; i++)
        for (int d = 0; d < F->args[i].ndim; d++)
            if (F->sym[i][d] >= 0) vals[F->sym[i][d]] = in[i]->shape[d];
}

static void sym_str(char *buf, size_t n, const int64_t *vals, int n_sym) {
    size_t w = 0;
    buf[0] = 0;
    for (int k = 0; k < n_sym && w + 32 < n; k++)
        w += (size_t)snprintf(buf + w, n - w, "%ss%d = %lld", k ? ", " : "", k, (long long)vals[k]);
}

/* false when the call passes family F's guards; else why */
static bool family_fails(const em_compiled_t *f, const family *F, em_tensor_t *const *in, int n_in, char *why,
                         size_t n) {
    if (F->n_args != n_in) return snprintf(why, n, "number of inputs: %d -> %d", F->n_args, n_in), true;
    if (F->grad_mode != em_is_grad_enabled())
        return snprintf(why, n, "grad mode: %d -> %d", F->grad_mode, em_is_grad_enabled()), true;
    if (F->mm_prec != em_get_matmul_precision())
        return snprintf(why, n, "matmul precision: %s -> %s", em_dtype_name(F->mm_prec),
                        em_dtype_name(em_get_matmul_precision())), true;
    int64_t vals[64];
    for (int k = 0; k < F->n_sym && k < 64; k++) vals[k] = -1;
    for (int i = 0; i < n_in; i++) {
        const em_tensor_t *t = in[i];
        const guard *g = &F->args[i];
        char a[EMB_SHAPE_BUF], b[EMB_SHAPE_BUF];
        if (t->dtype != g->dtype)
            return snprintf(why, n, "in[%d] dtype: %s -> %s", i, em_dtype_name(g->dtype), em_dtype_name(t->dtype)), true;
        if (t->ndim != g->ndim) return snprintf(why, n, "in[%d] rank: %d -> %d", i, g->ndim, t->ndim), true;
        if (t->requires_grad != g->requires_grad)
            return snprintf(why, n, "in[%d] requires_grad: %d -> %d", i, g->requires_grad, t->requires_grad), true;
        for (int d = 0; d < t->ndim; d++) {
            int k = F->sym[i][d];
            if (k < 0 && t->shape[d] != g->shape[d])
                return snprintf(why, n, "in[%d] size(%d): %lld -> %lld (shape %s -> %s; that dim is static)", i, d,
                                (long long)g->shape[d], (long long)t->shape[d], sym_shape(a, F, i),
                                dims_str(b, t->shape, t->ndim)), true;
            if (k < 0) continue;
            if (t->shape[d] < 2)
                return snprintf(why, n, "in[%d] size(%d): s%d = %lld, but symbolic sizes are >= 2 (sizes 0 and 1 are "
                                "specialized)", i, d, k, (long long)t->shape[d]), true;
            if (k < 64 && vals[k] >= 0 && vals[k] != t->shape[d])
                return snprintf(why, n, "in[%d] size(%d) is %lld but s%d = %lld in another dim (dims that share a symbol "
                                "must stay equal)", i, d, (long long)t->shape[d], k, (long long)vals[k]), true;
            if (k < 64) vals[k] = t->shape[d];
        }
        if (!contiguous(t->shape, t->strides, t->ndim))
            return snprintf(why, n, "in[%d] is not contiguous (strides %s; a generalised program takes contiguous "
                            "arguments)", i, dims_str(a, t->strides, t->ndim)), true;
    }
    const spec *r = &f->specs[F->ref];
    char what[48];
    for (int i = 0; i < r->tr.n_lifted; i++) {
        em_tensor_t *t = r->tr.lifted[i];
        snprintf(what, sizeof what, "lifted[%d] (a tensor read through ctx)", i);
        if (t->refcount <= 1) return snprintf(why, n, "%s: released by its owner", what), true;
        if (guard_fails(t, &r->lifted[i], true, what, why, n)) return true;
    }
    return false;
}

/* true when the call fails s's guards only on argument sizes (so generalising s could serve it) */
static bool fails_only_on_sizes(const spec *s, em_tensor_t *const *in, int n_in) {
    if (s->lazy || s->n_args != n_in || s->grad_mode != em_is_grad_enabled() ||
        s->mm_prec != em_get_matmul_precision())
        return false;
    for (int i = 0; i < n_in; i++) {
        const guard *g = &s->args[i];
        const em_tensor_t *t = in[i];
        if (t->dtype != g->dtype || t->ndim != g->ndim || t->requires_grad != g->requires_grad) return false;
        if (!contiguous(t->shape, t->strides, t->ndim) || !contiguous(g->shape, g->strides, g->ndim)) return false;
    }
    char why[8];
    for (int i = 0; i < s->tr.n_lifted; i++) {
        em_tensor_t *t = s->tr.lifted[i];
        if (t->refcount <= 1 || guard_fails(t, &s->lifted[i], true, "", why, sizeof why)) return false;
    }
    return true;
}

/* the generated source of fn at the argument shapes of in with the symbols set to vals (a probe:
   made-up arguments, since tracing reads no argument data); NULL (error cleared) when fn does not
   trace or compile to one graph at those sizes */
static char *probe_source(em_compiled_t *f, const family *F, em_tensor_t *const *in, int n_in, int n_out,
                          const int64_t *vals) {
    em_scope_t *sc = em_scope_begin();
    em_tensor_t **args = calloc((size_t)n_in + 1, sizeof *args);
    char *src = NULL;
    bool ok = sc && args;
    for (int i = 0; ok && i < n_in; i++) {
        int64_t shape[EM_MAX_DIMS];
        for (int d = 0; d < in[i]->ndim; d++) shape[d] = F->sym[i][d] >= 0 ? vals[F->sym[i][d]] : in[i]->shape[d];
        if (!(args[i] = em_zeros(shape, in[i]->ndim, in[i]->dtype))) ok = false;
        else if (in[i]->requires_grad) em_set_requires_grad(args[i], true);
    }
    emcap_trace tr;
    if (ok && emcap_trace_fn(f->fn, f->ctx, args, n_in, n_out, true, &tr) == EM_OK) {
        if (!tr.has_break && optimize(tr.g) == EM_OK) {
            emc_program *p = compile_trace(&tr, true);
            if (p && emc_program_source(p)) src = strdup(emc_program_source(p));
            emc_program_free(p);
        }
        emcap_trace_free(&tr);
    }
    free(args);
    if (sc) em_scope_end(sc);
    em_clear_error();
    return src;
}

/* the instance of family fam for the sizes of in: traced, generated and matched against the
   template (backend "c"). 1: *s is ready; 0: the sizes need a static specialization (why). */
static int make_instance(em_compiled_t *f, int fam, em_tensor_t *const *in, int n_in, int n_out, spec *s, char *why,
                         size_t nwhy) {
    family *F = &f->fams[fam];
    char name[48];
    snprintf(name, sizeof name, "f%d-spec%d", f->id, f->n_specs);
    emg_graph *traced;
    if (trace_only(f, in, n_in, n_out, s, name, &traced) != EM_OK) {
        snprintf(why, nwhy, "the trace at these sizes failed: %.200s", em_last_error());
        em_clear_error();
        return 0;
    }
    s->fam = fam;
    if (s->lazy) {
        snprintf(why, nwhy, "the function has a graph break at these sizes");
        spec_free(s);
        return 0;
    }
    if (F->tmpl) {
        emc_program *p = compile_trace(&s->tr, true);
        int ns = emcap_template_ns(F->tmpl), nf = emcap_template_nf(F->tmpl);
        int64_t *sv = calloc((size_t)ns + 1, sizeof *sv);
        double *fv = calloc((size_t)nf + 1, sizeof *fv);
        bool ok = p && sv && fv;
        if (!ok) snprintf(why, nwhy, "code generation failed: %.200s", em_last_error());
        else if (!emcap_template_match(F->tmpl, emc_program_source(p), sv, fv, why, nwhy)) ok = false;
        else if (!(s->prog = emc_program_bind(p, F->jit.entry, sv, ns, fv, nf))) {
            p = NULL; /* bind freed it */
            snprintf(why, nwhy, "binding the generalised program failed: %.200s", em_last_error());
            ok = false;
        } else {
            p = NULL;
        }
        emc_program_free(p);
        free(sv);
        free(fv);
        if (!ok) {
            em_clear_error();
            emg_free(traced);
            spec_free(s);
            return 0;
        }
        program_stats(f, s, name);
    }
    emcap_dump(name, traced, s->tr.g, s->prog);
    emg_free(traced);
    return 1;
}

/* automatic dynamic (or declared dims): the dims of in that become symbols relative to the
   specialization base (-1: none), grouped by their (old, new) sizes. 0 when none does, or when a
   changed dim's new size is 0 or 1 (specialized). sym is n_in x EM_MAX_DIMS. */
static int pick_symbols(const em_compiled_t *f, int base, em_tensor_t *const *in, int n_in, int8_t (*sym)[EM_MAX_DIMS],
                        char *why, size_t nwhy) {
    int64_t key_old[64], key_new[64];
    int n_sym = 0;
    size_t w = 0;
    why[0] = 0;
    const spec *b = base >= 0 ? &f->specs[base] : NULL;
    const family *bf = b && b->fam >= 0 ? &f->fams[b->fam] : NULL;
    for (int i = 0; i < n_in; i++) {
        uint32_t marked = f->opts.dynamic == EM_DYNAMIC_ALL ? ~0u : emcap_marked_dims(in[i]);
        for (int d = 0; d < in[i]->ndim; d++) {
            sym[i][d] = -1;
            int64_t now = in[i]->shape[d], old = b ? b->args[i].shape[d] : now;
            bool changed = old != now, was = bf && bf->sym[i][d] >= 0, mark = (marked >> d) & 1;
            if (changed && now < 2) return 0;
            if (!changed && !was && !mark) continue;
            if (now < 2) continue; /* a marked dim of size 0 or 1 stays specialized */
            int k = 0;
            while (k < n_sym && !(key_old[k] == old && key_new[k] == now)) k++;
            if (k == n_sym) {
                if (n_sym == 64) return 0;
                key_old[k] = old;
                key_new[k] = now;
                n_sym++;
            }
            sym[i][d] = (int8_t)k;
            char ch[64] = "";
            if (changed) snprintf(ch, sizeof ch, ": %lld -> %lld", (long long)old, (long long)now);
            if (w + 160 < nwhy)
                w += (size_t)snprintf(why + w, nwhy - w, "%sin[%d] size(%d) is s%d (%s%s)", w ? ", " : "", i, d, k,
                                      changed ? "it changed" : mark ? "marked dynamic" : "symbolic before", ch);
        }
    }
    return n_sym;
}

static void log_family(const em_compiled_t *f, const family *F, int k) {
    if (!emb_log_on("guards")) return;
    char a[EMB_SHAPE_BUF];
    const spec *r = &f->specs[F->ref];
    emb_log("guards", "f%d-dyn%d: %d argument guard(s) with %d symbol(s), each >= 2; %d lifted-tensor guard(s) "
            "(as f%d-spec%d), grad mode %d", f->id, k, F->n_args, F->n_sym, r->tr.n_lifted, f->id, F->ref,
            F->grad_mode);
    for (int i = 0; i < F->n_args; i++)
        emb_log("guards", "f%d-dyn%d:   in[%d]: %s shape %s contiguous requires_grad %d", f->id, k, i,
                em_dtype_name(F->args[i].dtype), sym_shape(a, F, i), F->args[i].requires_grad);
}

/* makes a family for the call and its first instance (appended to f->specs). 1: made; 0: not
   applicable or failed (the caller specializes statically); < 0: an error to return */
static int make_family(em_compiled_t *f, int base, em_tensor_t *const *in, int n_in, int n_out) {
    if (f->opts.dynamic == EM_DYNAMIC_OFF) return 0;
    for (int i = 0; i < n_in; i++)
        if (!contiguous(in[i]->shape, in[i]->strides, in[i]->ndim)) return 0;
    int8_t (*sym)[EM_MAX_DIMS] = calloc((size_t)n_in + 1, sizeof *sym);
    guard *args = calloc((size_t)n_in + 1, sizeof *args);
    char why[600];
    int n_sym = sym && args ? pick_symbols(f, base, in, n_in, sym, why, sizeof why) : 0;
    if (n_sym <= 0) {
        free(sym);
        free(args);
        return 0;
    }
    family *fams = realloc(f->fams, sizeof *fams * (size_t)(f->n_fams + 1));
    spec *specs = realloc(f->specs, sizeof *specs * (size_t)(f->n_specs + 1));
    if (fams) f->fams = fams;
    if (specs) f->specs = specs;
    if (!fams || !specs) {
        free(sym);
        free(args);
        em_seterr(EM_ERR_OOM, "em_call: out of memory");
        return -1;
    }
    int k = f->n_fams;
    family *F = &f->fams[k];
    memset(F, 0, sizeof *F);
    F->n_args = n_in;
    F->args = args;
    F->sym = sym;
    F->n_sym = n_sym;
    F->grad_mode = em_is_grad_enabled();
    F->mm_prec = em_get_matmul_precision();
    F->ref = f->n_specs;
    for (int i = 0; i < n_in; i++) guard_of(in[i], &args[i], false);
    emb_log("recompiles", "f%d: dynamic shapes: %s; f%d-dyn%d generalises over them", f->id, why, f->id, k);
    emb_log("dynamic", "f%d-dyn%d: symbolic: %s", f->id, k, why);
    int64_t vals[64], probe[64];
    sym_values(F, in, vals);
    char reason[600] = "", sv[400];
    const char *srcs[3] = {NULL, NULL, NULL};
    char *probes[2] = {NULL, NULL};
    bool used[3] = {false, false, false};
    double t0 = now_ms();
    /* the instance at the call's sizes; its trace's lifted tensors are the family's */
    spec *s = &f->specs[f->n_specs];
    emg_graph *traced = NULL;
    char name[48];
    snprintf(name, sizeof name, "f%d-spec%d", f->id, f->n_specs);
    int made = 0;
    if (trace_only(f, in, n_in, n_out, s, name, &traced) != EM_OK) {
        snprintf(reason, sizeof reason, "the trace failed: %.300s", em_last_error());
        goto fail_notrace;
    }
    s->fam = k;
    if (s->lazy) {
        snprintf(reason, sizeof reason, "the function has a graph break");
        goto fail;
    }
    if (f->use_c) {
        emc_program *p = compile_trace(&s->tr, true);
        if (!p) {
            snprintf(reason, sizeof reason, "code generation failed: %.300s", em_last_error());
            goto fail;
        }
        srcs[0] = emc_program_source(p);
        int n_src = 1;
        for (int j = 0; j < 2; j++) {
            for (int q = 0; q < n_sym; q++) probe[q] = vals[q] + (j + 1) * (q + 1);
            probes[j] = probe_source(f, F, in, n_in, n_out, probe);
            sym_str(sv, sizeof sv, probe, n_sym);
            if (probes[j]) srcs[n_src++] = probes[j];
            else emb_log("dynamic", "f%d-dyn%d: the probe at %s does not trace to one graph; left out", f->id, k, sv);
        }
        char tw[400] = "";
        F->tmpl = n_src > 1 ? emcap_template_new(srcs, n_src, used, tw, sizeof tw) : NULL;
        if (F->tmpl && tw[0]) emb_log("dynamic", "f%d-dyn%d: a probe left out: %s", f->id, k, tw);
        int64_t *s0 = NULL;
        double *f0 = NULL;
        bool ok = F->tmpl != NULL;
        if (!ok)
            snprintf(reason, sizeof reason, "no probe size generates the same code structure (%s)", tw[0] ? tw : "no probe");
        if (ok && emc_jit_load(emcap_template_source(F->tmpl), NULL, &F->jit) != EM_OK) {
            snprintf(reason, sizeof reason, "the generalised source does not compile: %.300s", em_last_error());
            ok = false;
        }
        if (ok) {
            s0 = calloc((size_t)emcap_template_ns(F->tmpl) + 1, sizeof *s0);
            f0 = calloc((size_t)emcap_template_nf(F->tmpl) + 1, sizeof *f0);
            if (!s0 || !f0) snprintf(reason, sizeof reason, "out of memory");
            ok = s0 && f0 && emcap_template_match(F->tmpl, srcs[0], s0, f0, reason, sizeof reason);
        }
        if (ok) {
            s->prog = emc_program_bind(p, F->jit.entry, s0, emcap_template_ns(F->tmpl), f0, emcap_template_nf(F->tmpl));
            p = NULL; /* taken by bind */
            if (!s->prog) snprintf(reason, sizeof reason, "binding failed: %.300s", em_last_error());
            made = s->prog != NULL;
        }
        emc_program_free(p);
        free(s0);
        free(f0);
        if (!made) goto fail;
        char dn[48];
        snprintf(dn, sizeof dn, "f%d-dyn%d", f->id, k);
        emcap_dump_text(dn, "source.c", emcap_template_source(F->tmpl));
        program_stats(f, s, name);
        emb_log("code", "%s: generalised program %s, source %s", dn, F->jit.key, F->jit.source_path);
    } else {
        made = 1;
    }
    emcap_dump(name, traced, s->tr.g, s->prog);
    emg_free(traced);
    free(probes[0]);
    free(probes[1]);
    sym_str(sv, sizeof sv, vals, n_sym);
    if (F->tmpl)
        emb_log("dynamic", "f%d-dyn%d: one program for all sizes: %d integer and %d floating-point literal(s) of the "
                "generated code change with the sizes and became parameters (samples: %s and %d probe(s)); compiled once",
                f->id, k, emcap_template_ns(F->tmpl), emcap_template_nf(F->tmpl), sv, (int)used[1] + (int)used[2]);
    else
        emb_log("dynamic", "f%d-dyn%d: backend interp: each new size is traced (no code to generalise)", f->id, k);
    f->n_fams++;
    f->n_specs++;
    f->stats.compile_ms += now_ms() - t0;
    f->stats.dynamic_programs++;
    log_family(f, F, k);
    return 1;
fail:
    emg_free(traced);
    spec_free(s);
fail_notrace:
    free(probes[0]);
    free(probes[1]);
    family_free(F);
    em_clear_error();
    emb_log("dynamic", "f%d-dyn%d: not generalised: %s; these sizes get a static specialization", f->id, k, reason);
    emb_log("recompiles", "f%d: dynamic shapes failed (%s); specializing statically", f->id, reason);
    return 0;
}

static em_status apply_writebacks(const emcap_trace *tr, em_tensor_t **res) {
    for (int k = 0; k < tr->n_wb; k++) {
        const emcap_writeback *w = &tr->wb[k];
        em_tensor_t *t = w->target, *v = w->value >= 0 ? res[w->value] : NULL;
        if (!w->is_grad) {
            if (v != t) emt_copy(t, v); /* v == t: the program wrote t in place (emc_run) */
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
    if (s->lazy) {
        int c0 = f->segs.compiles;
        em_status st = emcap_run_lazy(&f->segs, f->fn, f->ctx, in, n_in, out, n_out);
        f->stats.compiles += f->segs.compiles - c0;
        f->stats.segments = f->segs.compiles;
        f->stats.graph_breaks = f->segs.breaks;
        return st;
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
    f->ran = true;
    char why[400] = "", w[400], all[1600] = "";
    int why_spec = -1;
    size_t n_all = 0;
    for (int i = 0; i < f->n_specs; i++) {
        if (!spec_fails(&f->specs[i], in, n_in, w, sizeof w)) {
            f->stats.cache_hits++;
            if (emb_log_on("cache"))
                emb_log("cache", "memory hit: specialization %d of %d passes its guards (f%d-spec%d)", i, f->n_specs,
                        f->id, i);
            return run_spec(f, &f->specs[i], in, n_in, out, n_out);
        }
        if (f->specs[i].fam >= 0) continue; /* an instance: its family's guards speak for it */
        memcpy(why, w, sizeof why); /* the warning reports the newest specialization's failure */
        why_spec = i;
        if (n_all < sizeof all - 1) /* the log line every one's */
            n_all += (size_t)snprintf(all + n_all, sizeof all - n_all, "%sf%d-spec%d's guard failed: %s",
                                      n_all ? "; " : "", f->id, i, w);
    }
    /* a new size of a family: traced and generated again, checked against its template */
    bool missed = false; /* a family's guards passed but its code did not match */
    for (int k = f->n_fams - 1; k >= 0; k--) { /* the newest first: it was made for sizes an older one missed */
        if (family_fails(f, &f->fams[k], in, n_in, w, sizeof w)) {
            if (n_all < sizeof all - 1)
                n_all += (size_t)snprintf(all + n_all, sizeof all - n_all, "%sf%d-dyn%d's guard failed: %s",
                                          n_all ? "; " : "", f->id, k, w);
            continue;
        }
        spec *specs = realloc(f->specs, sizeof *specs * (size_t)(f->n_specs + 1));
        if (!specs) return em_seterr(EM_ERR_OOM, "em_call: out of memory");
        f->specs = specs;
        double t0 = now_ms();
        int64_t vals[64];
        char sv[400];
        sym_values(&f->fams[k], in, vals);
        sym_str(sv, sizeof sv, vals, f->fams[k].n_sym < 64 ? f->fams[k].n_sym : 64);
        if (make_instance(f, k, in, n_in, n_out, &f->specs[f->n_specs], w, sizeof w)) {
            spec *s = &f->specs[f->n_specs++];
            f->stats.compile_ms += now_ms() - t0;
            f->stats.dynamic_sizes++;
            f->stats.graph_nodes = s->tr.g->n_nodes;
            emb_log("dynamic", "f%d-dyn%d: new sizes %s: %s (f%d-spec%d), no compile", f->id, k, sv,
                    f->fams[k].tmpl ? "the generated code matches the generalised program" : "traced", f->id,
                    f->n_specs - 1);
            return run_spec(f, s, in, n_in, out, n_out);
        }
        f->stats.compile_ms += now_ms() - t0;
        missed = true;
        emb_log("dynamic", "f%d-dyn%d: sizes %s pass its guards but %s; they get their own specialization", f->id, k,
                sv, w);
        if (n_all < sizeof all - 1)
            n_all += (size_t)snprintf(all + n_all, sizeof all - n_all, "%sf%d-dyn%d's generated code differs at %s: %.200s",
                                      n_all ? "; " : "", f->id, k, sv, w);
    }
    if (missed) f->stats.dynamic_fallbacks++;
    if (f->n_programs >= f->opts.recompile_limit) {
        if (!f->warned) {
            fprintf(stderr, "ember: em_call: f%d hit its recompile limit (%d specializations; f%d-spec%d's guard "
                    "failed: %s); calls that match no specialization run eagerly from now on. EMBER_LOG=recompiles "
                    "shows each recompile; docs/troubleshooting.md says how to avoid them\n", f->id,
                    f->opts.recompile_limit, f->id, why_spec, why);
            f->warned = true;
        }
        f->stats.eager_calls++;
        return f->fn(f->ctx, in, n_in, out, n_out);
    }
    if (f->n_programs > 0)
        emb_log("recompiles", "f%d: recompiling (specialization %d of at most %d): %s", f->id, f->n_programs + 1,
                f->opts.recompile_limit, all);
    /* automatic dynamic: the newest specialization (or family instance) this call misses only on
       sizes is generalised; declared dims (em_mark_dynamic, EM_DYNAMIC_ALL) need no base */
    if (f->opts.dynamic != EM_DYNAMIC_OFF) {
        int base = -1;
        for (int i = f->n_specs - 1; i >= 0 && base < 0; i--)
            if ((f->specs[i].fam < 0 || f->fams[f->specs[i].fam].ref == i) && fails_only_on_sizes(&f->specs[i], in, n_in))
                base = i;
        bool declared = f->opts.dynamic == EM_DYNAMIC_ALL;
        for (int i = 0; i < n_in && !declared; i++) declared = emcap_marked_dims(in[i]) != 0;
        if (base >= 0 || declared) {
            int r = make_family(f, base, in, n_in, n_out);
            if (r < 0) return em_last_status();
            if (r > 0) {
                spec *s = &f->specs[f->n_specs - 1];
                f->n_programs++;
                f->stats.compiles++;
                if (f->n_programs > 1) f->stats.recompiles++;
                f->stats.graph_nodes = s->tr.g->n_nodes;
                return run_spec(f, s, in, n_in, out, n_out);
            }
        }
    }
    spec *specs = realloc(f->specs, sizeof *specs * (size_t)(f->n_specs + 1));
    if (!specs) return em_seterr(EM_ERR_OOM, "em_call: out of memory");
    f->specs = specs;
    double t0 = now_ms();
    em_status st = trace_spec(f, in, n_in, n_out, &f->specs[f->n_specs]);
    if (st != EM_OK) return st;
    spec *s = &f->specs[f->n_specs++];
    f->n_programs++;
    f->stats.compile_ms += now_ms() - t0;
    log_guards(f, s, f->n_specs - 1);
    if (!s->lazy) {
        f->stats.compiles++;
        if (f->n_programs > 1) f->stats.recompiles++;
        f->stats.graph_nodes = s->tr.g->n_nodes;
    }
    return run_spec(f, s, in, n_in, out, n_out);
}
