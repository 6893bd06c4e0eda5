/* program.c - the compiler driver and the runtime side of a compiled program.
 *
 * needs: any verified graph. fills: an emc_program that runs it.
 *
 * emc_compile_graph runs the pipeline one stage per line, each stage verified by the next
 * one's checks (emg_verify after decomposition; the schedule and the memory plan check
 * themselves): copy the graph, decompose composites, merge the repeats decompositions make
 * (emg_cse) and renumber (emg_dce), lower, schedule, plan memory, generate C, compile and load
 * it (jit.c). emc_run is the host half of the program:
 * it makes inputs contiguous, allocates the outputs (the graph's output metadata; an in-place
 * output, memplan.c, is written into its target input instead when the call allows), fills the
 * runtime table (GEMM kernels, thread count, the Philox state of every random node, the
 * fallback callback that runs an eager kernel on arena buffers) and calls ember_run. The arena
 * is allocated once, at compile time, so calls allocate nothing but their outputs.
 */
#include "compiler.h"

#include "../ops/gemm.h"

#include <stdio.h>
#include <time.h>

struct emc_program {
    emc_ctx c;
    emc_jit jit;
    char *src;
    emc_stats stats;
    char *arena;
    em_tensor_t **consts; /* contiguous copies of the graph's constants (owned) */
    uint64_t *rng_seed, *rng_off;
    /* dynamic shapes (emc_program_bind): the entry point is a generalised template's, and these
       are the values of its parameters at this program's sizes, passed in struct ember_rt_dyn */
    bool dyn;
    int64_t *dyn_s;
    double *dyn_f;
    bool mem_logged; /* EMBER_LOG=memory: the first run's outputs were logged */
    emc_prof *prof; /* EMBER_LOG=profile: per-kernel times (backend/cpu/profile.c), else NULL */
};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static emc_program *finish(emc_program *p, em_status st, double t0);

void emc_ctx_free(emc_ctx *c) {
    emc_pool_free(&c->pool);
    free(c->lv);
    free(c->mat);
    free(c->rand);
    for (int k = 0; k < c->n_k; k++) free(c->k[k].m);
    free(c->k);
    free(c->kern_of);
    free(c->fallback_node);
    free(c->buf);
    free(c->out_first);
    free(c->inplace);
    emg_free(c->g);
    memset(c, 0, sizeof *c);
}

void emc_program_free(emc_program *p) {
    if (!p) return;
    emc_prof_free(p->prof); /* prints the profile table, when there is one */
    emc_jit_unload(&p->jit);
    for (int i = 0; p->consts && i < p->c.g->n_consts; i++) em_release(p->consts[i]);
    free(p->consts);
    emc_ctx_free(&p->c);
    free(p->src);
    emb_free(p->arena);
    free(p->rng_seed);
    free(p->rng_off);
    free(p->dyn_s);
    free(p->dyn_f);
    free(p);
}

/* the stages up to the source text */
static em_status build(emc_program *p, const emg_graph *g, const emc_opts *opts) {
    emc_ctx *c = &p->c;
    if (!(c->g = emg_clone(g))) return em_last_status();
    /* the write-back targets the caller offers (emc_plan_memory keeps those it can honour) */
    if (!(c->inplace = malloc(sizeof *c->inplace * ((size_t)g->n_outputs + 1))))
        return em_seterr(EM_ERR_OOM, "compiler: out of memory");
    for (int o = 0; o < g->n_outputs; o++) c->inplace[o] = opts && opts->out_target ? opts->out_target[o] : -1;
    /* decompositions repeat work (three cross-entropies each take the max of the same logits):
       CSE merges it before lowering */
    if (emg_decompose(c->g) < 0 || emg_cse(c->g) < 0 || emg_dce(c->g) < 0) return em_last_status();
    em_status st = emg_verify(c->g);
    if (st == EM_OK && emb_log_on("graph")) {
        char *txt = emg_print(c->g);
        emb_log("graph", "after decomposition, CSE and DCE (%d nodes, what the compiler lowers):\n%s", c->g->n_nodes,
                txt ? txt : "(print failed)");
        free(txt);
    }
    if (st == EM_OK) st = emc_lower(c);
    if (st == EM_OK) st = emc_schedule(c);
    if (st == EM_OK) st = emc_plan_memory(c);
    if (st == EM_OK && !(p->src = emc_codegen_c(c))) st = em_last_status();
    return st;
}

emc_program *emc_compile_graph(const emg_graph *g, const emc_opts *opts) {
    if (!g) return em_seterr_null(EM_ERR_ARG, "emc_compile_graph: graph is NULL");
    double t0 = now_ms();
    emc_program *p = calloc(1, sizeof *p);
    if (!p) return em_seterr_null(EM_ERR_OOM, "emc_compile_graph: out of memory");
    emc_pool_init(&p->c.pool);
    em_status st = build(p, g, opts);
    if (st == EM_OK) st = emc_jit_load(p->src, opts, &p->jit);
    return finish(p, st, t0);
}

emc_program *emc_prepare_graph(const emg_graph *g, const emc_opts *opts) {
    if (!g) return em_seterr_null(EM_ERR_ARG, "emc_prepare_graph: graph is NULL");
    emc_program *p = calloc(1, sizeof *p);
    if (!p) return em_seterr_null(EM_ERR_OOM, "emc_prepare_graph: out of memory");
    emc_pool_init(&p->c.pool);
    if (build(p, g, opts) != EM_OK) {
        emc_program_free(p);
        return NULL;
    }
    return p;
}

emc_program *emc_program_bind(emc_program *p, emc_entry_fn entry, const int64_t *s, int ns, const double *f, int nf) {
    if (!p || !entry || !p->src || p->jit.entry || p->dyn || ns < 0 || nf < 0) {
        emc_program_free(p);
        return em_seterr_null(EM_ERR_ARG, "emc_program_bind: needs a prepared program that is not loaded yet");
    }
    double t0 = now_ms();
    p->dyn = true;
    p->dyn_s = malloc(sizeof *p->dyn_s * (size_t)(ns + 1));
    p->dyn_f = malloc(sizeof *p->dyn_f * (size_t)(nf + 1));
    if (!p->dyn_s || !p->dyn_f) {
        emc_program_free(p);
        return em_seterr_null(EM_ERR_OOM, "emc_program_bind: out of memory");
    }
    if (ns) memcpy(p->dyn_s, s, sizeof *s * (size_t)ns);
    if (nf) memcpy(p->dyn_f, f, sizeof *f * (size_t)nf);
    p->jit.entry = entry; /* borrowed: jit.dl stays NULL, so nothing is unloaded with p */
    snprintf(p->jit.key, sizeof p->jit.key, "dynamic");
    return finish(p, EM_OK, t0);
}

/* after the JIT: the arena, the constants, the random slots and the stats (p freed on failure) */
static emc_program *finish(emc_program *p, em_status st, double t0) {
    emc_ctx *c = &p->c;
    if (st == EM_OK) {
        p->arena = emb_alloc((size_t)(c->arena_bytes > 0 ? c->arena_bytes : 64));
        p->consts = calloc((size_t)c->g->n_consts + 1, sizeof *p->consts);
        p->rng_seed = calloc((size_t)c->n_rand + 1, sizeof *p->rng_seed);
        p->rng_off = calloc((size_t)c->n_rand + 1, sizeof *p->rng_off);
        if (!p->arena || !p->consts || !p->rng_seed || !p->rng_off)
            st = em_seterr(EM_ERR_OOM, "emc_compile_graph: out of memory for a %lld-byte arena",
                           (long long)c->arena_bytes);
    }
    for (int i = 0; st == EM_OK && i < c->g->n_consts; i++) {
        em_tensor_t *t = c->g->consts[i];
        if (!(p->consts[i] = emt_as_contiguous(t, t->dtype))) st = em_last_status();
    }
    if (st != EM_OK) {
        emc_program_free(p);
        return NULL;
    }
    for (int k = 0; k < c->n_rand; k++) {
        p->rng_seed[k] = c->rand[k].seed;
        p->rng_off[k] = c->rand[k].offset;
    }
    emc_stats *s = &p->stats;
    for (int k = 0; k < c->n_k; k++) {
        s->kernels++;
        if (c->k[k].kind == EMC_K_FALLBACK) s->fallbacks++;
    }
    s->graph_nodes = c->g->n_nodes;
    s->cc_ms = p->jit.cc_ms;
    s->disk_hit = p->jit.disk_hit;
    s->planned_peak_bytes = c->arena_bytes;
    s->unplanned_bytes = c->unplanned_bytes;
    s->inplace_bytes = c->inplace_bytes;
    s->output_bytes = c->output_bytes;
    snprintf(s->key, sizeof s->key, "%s", p->jit.key);
    snprintf(s->source_path, sizeof s->source_path, "%s", p->jit.source_path);
    s->compile_ms = now_ms() - t0;
    p->prof = emc_prof_new(c, s->key, s->source_path); /* NULL unless EMBER_LOG=profile */
    if (emb_log_on("code")) {
        static const char *kind[] = {"pointwise", "reduce", "matmul", "scan", "fallback"};
        char line[1500];
        int n = snprintf(line, sizeof line, "%s: %zu bytes, %d kernel(s) (%d fallback(s)):", s->source_path,
                         strlen(p->src), s->kernels, s->fallbacks);
        for (int k = 0; k < c->n_k && n < (int)sizeof line - 40; k++)
            n += snprintf(line + n, sizeof line - (size_t)n, " kernel_%d %s", k, kind[c->k[k].kind]);
        emb_log("code", "%s", line);
    }
    emb_log("perf", "compiled %d nodes into %d kernels in %.1f ms (C compiler %.1f ms%s), arena %lld bytes",
            s->graph_nodes, s->kernels, s->compile_ms, s->cc_ms, s->disk_hit ? ", disk hit" : "",
            (long long)s->planned_peak_bytes);
    return p;
}

const emc_stats *emc_program_stats(const emc_program *p) { return p ? &p->stats : NULL; }
const char *emc_program_source(const emc_program *p) { return p ? p->src : NULL; }

void emc_program_set_rng(emc_program *p, uint64_t seed, uint64_t shift) {
    if (!p) return;
    for (int k = 0; k < p->c.n_rand; k++) {
        p->rng_seed[k] = seed;
        p->rng_off[k] = p->c.rand[k].offset + shift;
    }
}

/* ---- running ------------------------------------------------------------------------------------ */
/* an in-place output may go into inputs[i] when the program reads inputs[i] itself (contiguous:
   not a copy) and no other input shares its storage (another input's old values must survive) */
static bool inplace_ok(em_tensor_t *const *inputs, em_tensor_t *const *held, int n, int i) {
    if (held[i] != inputs[i]) return false;
    for (int j = 0; j < n; j++)
        if (j != i && inputs[j]->storage == inputs[i]->storage) return false;
    return true;
}

/* rt->gemm: emk_gemm with its enums passed as ints (the generated code declares no Ember types) */
static void rt_gemm(int64_t M, int64_t N, int64_t K, const void *A, int ta, int64_t rsa, int64_t csa, const void *B,
                    int tb, int64_t rsb, int64_t csb, void *C, int tc, int64_t rsc, int64_t csc, int accumulate,
                    int mode, int parallel) {
    emk_gemm(M, N, K, A, (emk_type)ta, rsa, csa, B, (emk_type)tb, rsb, csb, C, (emk_type)tc, rsc, csc, accumulate,
             (emk_mm_mode)mode, parallel);
}

/* a contiguous tensor of type m over memory the program owns (an arena or input buffer), for the
   length of one fallback call: an empty tensor whose storage points at data until run_fallback
   puts *saved back (before anything can free it); nbytes is the borrowed size meanwhile */
static em_tensor_t *borrow(const emo_meta *m, void *data, void **saved) {
    em_tensor_t *t = emt_new(m->dtype, (int64_t[]){0}, 1);
    if (!t) return NULL;
    *saved = t->storage->data;
    t->storage->data = data;
    t->storage->nbytes = (size_t)(emt_numel_shape(m->shape, m->ndim) * (int64_t)emt_esize(m->dtype));
    t->ndim = m->ndim;
    for (int d = 0; d < m->ndim; d++) t->shape[d] = m->shape[d];
    emt_contig_strides(m->shape, m->ndim, t->strides);
    return t;
}

/* ends a borrow: t's storage gets its own (empty) memory back before anything can free it */
static void unborrow(em_tensor_t *t, void *saved) {
    t->storage->data = saved;
    t->storage->nbytes = 0;
}

/* rt->fallback: node k's eager kernel on contiguous buffers (inputs borrowed, outputs copied out) */
static int run_fallback(void *ctx, int k, void **in, void **out) {
    const emc_program *p = ctx;
    const emg_graph *g = p->c.g;
    const emg_node *n = &g->nodes[p->c.fallback_node[k]];
    em_scope_t *s = em_scope_begin();
    if (!s) return 1;
    em_no_grad_begin();
    em_tensor_t *small[8] = {0}, **ins = n->n_in <= 8 ? small : calloc((size_t)n->n_in, sizeof *ins);
    em_tensor_t *outs[EMO_MAX_OUT] = {0};
    void *saved_small[8], **saved = n->n_in <= 8 ? saved_small : calloc((size_t)n->n_in, sizeof *saved);
    int got = -1;
    bool ok = ins != NULL && saved != NULL;
    /* the inputs are borrowed, not copied (an embedding backward's scatter_add reads a
       vocabulary-sized buffer: a copy would be 150 MB more at the step's peak), unless an output
       of this call overlaps an input (an in-place output, memplan.c): then copies, read first */
    bool copy = false;
    for (int i = 0; i < n->n_in; i++) {
        const emo_meta *mi = &g->vals[n->in[i]].meta;
        const char *a = in[i], *ae = a + emt_numel_shape(mi->shape, mi->ndim) * (int64_t)emt_esize(mi->dtype);
        for (int j = 0; j < n->n_out; j++) {
            const emo_meta *mo = &g->vals[n->out0 + j].meta;
            const char *b = out[j], *be = b + emt_numel_shape(mo->shape, mo->ndim) * (int64_t)emt_esize(mo->dtype);
            if (a < be && b < ae) copy = true;
        }
    }
    for (int i = 0; ok && i < n->n_in; i++) {
        const emo_meta *m = &g->vals[n->in[i]].meta;
        if (copy) {
            ins[i] = emt_own(emt_new(m->dtype, m->shape, m->ndim));
            if (!ins[i]) ok = false;
            else memcpy(emt_data(ins[i]), in[i], (size_t)emt_numel(ins[i]) * emt_esize(m->dtype));
        } else if (!(ins[i] = emt_own(borrow(m, in[i], &saved[i])))) {
            ok = false;
        }
    }
    /* An op with a kernel that makes fresh outputs writes them straight into the program's
       buffers (borrowed like the inputs, contiguous as the kernel would get them from emo_call):
       no second allocation and no copy after it (for the embedding backward's scatter_add, 150 MB
       less traffic a step). View ops and kernel-less ops go through emo_call and are copied out. */
    const emo_def *d = &emo_table[n->op];
    bool direct = d->kernel && !(d->flags & EMO_VIEW);
    void *saved_out[EMO_MAX_OUT];
    int n_borrowed = 0;
    if (ok && direct) {
        for (int j = 0; ok && j < n->n_out; j++) {
            if (!(outs[j] = emt_own(borrow(&g->vals[n->out0 + j].meta, out[j], &saved_out[j])))) ok = false;
            else n_borrowed++;
        }
        if (ok) got = d->kernel(&n->attrs, ins, n->n_in, outs, n->n_out) == EM_OK ? n->n_out : -1;
    } else if (ok) {
        got = emo_call(n->op, ins, n->n_in, &n->attrs, outs, EMO_MAX_OUT);
    }
    for (int j = 0; ok && !direct && got == n->n_out && j < n->n_out; j++) {
        const emo_meta *m = &g->vals[n->out0 + j].meta;
        em_tensor_t *cont = emt_own(emt_as_contiguous(outs[j], m->dtype));
        if (!cont) ok = false;
        else memcpy(out[j], emt_data(cont), (size_t)emt_numel(cont) * emt_esize(m->dtype));
    }
    for (int j = 0; j < n_borrowed; j++) unborrow(outs[j], saved_out[j]);
    em_no_grad_end();
    for (int i = 0; !copy && ins && saved && i < n->n_in && ins[i]; i++) unborrow(ins[i], saved[i]);
    if (ins != small) free(ins);
    if (saved != saved_small) free(saved);
    if (ok && got != n->n_out) {
        char msg[800];
        snprintf(msg, sizeof msg, "%s", em_last_error());
        em_seterr(em_last_status() ? em_last_status() : EM_ERR_STATE, "compiled program: %s: %s",
                  emo_table[n->op].name, msg);
        ok = false;
    }
    em_status keep = em_last_status();
    char msg[1000];
    snprintf(msg, sizeof msg, "%s", em_last_error());
    em_scope_end(s);
    if (!ok) em_seterr(keep ? keep : EM_ERR_STATE, "%s", msg);
    return ok ? 0 : 1;
}

em_status emc_run(emc_program *p, em_tensor_t *const *inputs, int n_inputs, em_tensor_t **outputs) {
    if (!p) return em_seterr(EM_ERR_ARG, "emc_run: program is NULL");
    const emg_graph *g = p->c.g;
    if (n_inputs != g->n_inputs)
        return em_seterr(EM_ERR_ARG, "emc_run: the program takes %d inputs, got %d", g->n_inputs, n_inputs);
    if (g->n_outputs > 0 && !outputs) return em_seterr(EM_ERR_ARG, "emc_run: outputs is NULL");
    int n_ptr = g->n_inputs + g->n_consts;
    void **in_ptr = calloc((size_t)n_ptr + 1, sizeof *in_ptr), **out_ptr = calloc((size_t)g->n_outputs + 1, sizeof *out_ptr);
    em_tensor_t **held = calloc((size_t)g->n_inputs + 1, sizeof *held), **fresh = calloc((size_t)g->n_outputs + 1, sizeof *fresh);
    em_status st = in_ptr && out_ptr && held && fresh ? EM_OK : em_seterr(EM_ERR_OOM, "emc_run: out of memory");
    for (int i = 0; st == EM_OK && i < g->n_inputs; i++) {
        em_tensor_t *t = inputs ? inputs[i] : NULL;
        char what[32];
        snprintf(what, sizeof what, "input %d", i);
        if (!emt_check(t, "emc_run", what)) {
            st = em_last_status();
            break;
        }
        emo_meta m;
        if (emt_is_symbolic(t)) {
            st = em_seterr(EM_ERR_ARG, "emc_run: input %d has no data (a symbolic tensor?)", i);
            break;
        }
        emo_meta_of(t, &m);
        const emo_meta *want = &g->vals[g->inputs[i]].meta;
        if (!emg_meta_equal(&m, want)) {
            char b1[EMG_TYPE_BUF], b2[EMG_TYPE_BUF];
            st = em_seterr(EM_ERR_SHAPE, "emc_run: input %d is %s but the program was compiled for %s", i,
                           emg_type_str(b1, &m), emg_type_str(b2, want));
            break;
        }
        if (!(held[i] = emt_as_contiguous(t, t->dtype))) st = em_last_status();
        else in_ptr[i] = emt_data(held[i]);
    }
    for (int i = 0; st == EM_OK && i < g->n_consts; i++) in_ptr[g->n_inputs + i] = emt_data(p->consts[i]);
    int64_t n_inplace = 0, n_fresh = 0;
    for (int o = 0; st == EM_OK && o < g->n_outputs; o++) {
        int v = g->outputs[o];
        const emc_buf *b = &p->c.buf[v];
        if (b->kind != EMC_B_OUTPUT || p->c.out_first[o] != o) continue;
        const emo_meta *m = &g->vals[v].meta;
        int i = p->c.inplace[o];
        if (i >= 0 && inplace_ok(inputs, held, g->n_inputs, i)) { /* written into inputs[i] itself */
            fresh[o] = em_retain(inputs[i]);
            out_ptr[o] = in_ptr[i];
            n_inplace += b->bytes;
        } else if (!(fresh[o] = emt_new(m->dtype, m->shape, m->ndim))) {
            st = em_last_status();
        } else {
            out_ptr[o] = emt_data(fresh[o]);
            n_fresh += b->bytes;
        }
    }
    if (st == EM_OK && !p->mem_logged && emb_log_on("memory")) {
        p->mem_logged = true;
        emb_log("memory", "%s: run: arena %.1f MiB; outputs: %.1f MiB written in place into their write-back "
                "targets, %.1f MiB fresh", p->stats.key, (double)p->c.arena_bytes / 1048576.0,
                (double)n_inplace / 1048576.0, (double)n_fresh / 1048576.0);
    }
    if (st == EM_OK) {
        struct ember_rt rt = {EMC_RT_ABI, emb_num_threads(), emk_sgemm, emk_dgemm, run_fallback, p, p->rng_seed, p->rng_off,
                              emc_prof_slots(p->prof), rt_gemm};
        struct ember_rt_dyn drt = {rt, p->dyn_s, p->dyn_f};
        int r = p->jit.entry(in_ptr, out_ptr, p->arena, p->dyn ? &drt.rt : &rt);
        if (r == 0) emc_prof_ran(p->prof);
        if (r == 1)
            st = em_seterr(EM_ERR_INDEX, "compiled program: an index read from data (gather, index_select, embedding, "
                           "cross_entropy targets) is out of range; run the function eagerly to see which");
        else if (r == 2)
            st = em_last_status() ? em_last_status() : em_seterr(EM_ERR_STATE, "compiled program: a fallback failed");
        else if (r != 0)
            st = em_seterr(EM_ERR_STATE, "compiled program: ember_run failed (%d)", r);
    }
    if (st == EM_OK) {
        for (int o = 0; o < g->n_outputs; o++) {
            int v = g->outputs[o];
            const emc_buf *b = &p->c.buf[v];
            em_tensor_t *t = b->kind == EMC_B_INPUT ? inputs[b->index] : b->kind == EMC_B_CONST ? g->consts[b->index]
                             : fresh[p->c.out_first[o]];
            outputs[o] = emt_own(em_retain(t));
        }
    }
    for (int o = 0; fresh && o < g->n_outputs; o++) em_release(fresh[o]);
    for (int i = 0; held && i < g->n_inputs; i++) em_release(held[i]);
    free(in_ptr);
    free(out_ptr);
    free(held);
    free(fresh);
    return st;
}
