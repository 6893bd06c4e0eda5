/* trace.c - the tracer: symbolic tensors, lifting, functionalized writes, gradient write-backs.
 *
 * A trace runs the user's function once on symbolic copies of its arguments. Every op it calls
 * appends a node (emcap_record). A realized tensor an op reads is looked up by its storage and
 * geometry (so autograd's detached aliases of a parameter find the parameter's value): tensors
 * whose storage existed before the trace are lifted to graph inputs and passed again on every
 * call; storage made during the trace is baked in as a constant. Writes into realized tensors
 * (em_assign, the gradients a traced backward accumulates) only rebind the tensor's current graph
 * value; when the function returns they become extra graph outputs plus write-backs, and every
 * tensor's gradient is restored to what it was before the trace.
 */
#include "capture.h"

#include "../compiler/compiler.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

_Thread_local emcap_tracer *emcap_current;

typedef struct {
    em_tensor_t *t; /* owned ref: the realized tensor (or its first alias seen) */
    int val;        /* its current graph value */
    int input;      /* graph input id, or -1 for a constant */
    bool written;
} lift_entry;

typedef struct {
    em_tensor_t *t;         /* owned ref: leaf whose grad the trace changes (realized or a proxy) */
    em_tensor_t *orig_grad; /* owned ref or NULL: the grad before the trace */
    em_tensor_t *real;      /* for proxies: the argument written back to */
    bool restored;          /* finish put the original back */
} grad_note;

struct emcap_tracer {
    emg_graph *g;
    uint64_t serial0;
    bool fullgraph, broke;
    char reason[256];
    lift_entry *lifts;
    int n_lifts, cap_lifts;
    grad_note *notes;
    int n_notes, cap_notes;
    em_tensor_t **proxies, **args; /* n_args each; proxies owned */
    int n_args;
    bool no_lift; /* rewriting an existing graph: realized inputs can only be constants */
    /* lazy mode (graph-break segments): every realized tensor is an input, the symbolic tensors
       made are kept (one reference each) until the next flush */
    bool lazy;
    em_tensor_t **made;
    int n_made, cap_made;
    emcap_segcache *sc;
    uint64_t seg_base; /* the generator's offset when the segment began */
    char site[160];    /* the call site of the data read that broke the trace */
};

static bool grow(void **p, int *cap, int need, size_t elem) {
    if (need <= *cap) return true;
    int c = *cap ? *cap * 2 : 16;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

static bool same_geometry(const em_tensor_t *a, const em_tensor_t *b) {
    if (a->storage != b->storage || a->offset != b->offset || a->dtype != b->dtype || a->ndim != b->ndim) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d] || (a->shape[d] != 1 && a->strides[d] != b->strides[d])) return false;
    return true;
}

static lift_entry *find_lift(emcap_tracer *tr, const em_tensor_t *t) {
    for (int i = 0; i < tr->n_lifts; i++)
        if (same_geometry(tr->lifts[i].t, t)) return &tr->lifts[i];
    return NULL;
}

/* another view of a written storage would read stale data: refuse rather than be wrong */
static em_status check_aliasing(emcap_tracer *tr, const em_tensor_t *t, bool writing) {
    for (int i = 0; i < tr->n_lifts; i++) {
        lift_entry *e = &tr->lifts[i];
        if (e->t->storage == t->storage && !same_geometry(e->t, t) && (writing || e->written))
            return em_seterr(EM_ERR_COMPILE, "em_compile: the function writes (em_assign) into one view of a "
                             "tensor and reads another view of the same storage; compiled functions cannot "
                             "track that yet. Write into the whole tensor, or run this part eagerly");
    }
    return EM_OK;
}

/* the graph value a tensor stands for, lifting or baking realized tensors on first sight */
static int value_of(emcap_tracer *tr, em_tensor_t *t) {
    if (emt_is_symbolic(t)) {
        if (t->sym != tr) {
            em_seterr(EM_ERR_COMPILE, "em_compile: a symbolic tensor from another trace was used (a handle "
                      "kept from inside a compiled function?)");
            return -1;
        }
        return t->sym_id;
    }
    lift_entry *e = find_lift(tr, t);
    if (e) return e->val;
    if (check_aliasing(tr, t, false) != EM_OK) return -1;
    if (!grow((void **)&tr->lifts, &tr->cap_lifts, tr->n_lifts + 1, sizeof *tr->lifts)) {
        em_seterr(EM_ERR_OOM, "em_compile: out of memory");
        return -1;
    }
    emo_meta m;
    emo_meta_of(t, &m);
    int val, input = -1;
    if (tr->no_lift && t->storage->serial < tr->serial0) {
        em_seterr(EM_ERR_COMPILE, "graph rewrite: an op read a tensor from outside the graph");
        return -1;
    }
    if (!tr->lazy && t->storage->serial >= tr->serial0) { /* made during the trace: a constant */
        em_tensor_t *c = emt_contiguous_copy(t, t->dtype);
        if (!c) return -1;
        val = emg_add_const(tr->g, c);
        em_release(c);
    } else {
        val = input = emg_add_input(tr->g, &m);
    }
    if (val < 0) return -1;
    t->refcount++;
    tr->lifts[tr->n_lifts++] = (lift_entry){t, val, input, false};
    return val;
}

em_status emcap_record(emo_op op, const emo_attrs *a, em_tensor_t *const *in, int n_in, const emo_meta *om,
                       int n_out, em_tensor_t **out) {
    emcap_tracer *tr = emcap_current;
    int small[16] = {0}, *vals = n_in <= 16 ? small : malloc(sizeof(int) * (size_t)n_in);
    if (!vals) return em_seterr(EM_ERR_OOM, "em_compile: out of memory");
    em_status st = EM_OK;
    for (int i = 0; i < n_in && st == EM_OK; i++)
        if ((vals[i] = value_of(tr, in[i])) < 0) st = em_last_status();
    int v0 = st == EM_OK ? emg_add_node(tr->g, op, a, vals, n_in) : -1;
    if (vals != small) free(vals);
    if (v0 < 0) return st != EM_OK ? st : em_last_status();
    for (int j = 0; j < n_out; j++) {
        out[j] = emt_new_symbolic(tr, v0 + j, om[j].dtype, om[j].shape, om[j].ndim);
        if (!out[j]) {
            for (int k = 0; k < j; k++) em_release(out[k]);
            return em_last_status();
        }
    }
    if (tr->lazy) {
        if (!grow((void **)&tr->made, &tr->cap_made, tr->n_made + n_out, sizeof *tr->made)) {
            for (int k = 0; k < n_out; k++) em_release(out[k]);
            return em_seterr(EM_ERR_OOM, "em_call: out of memory");
        }
        for (int j = 0; j < n_out; j++) {
            out[j]->refcount++;
            tr->made[tr->n_made++] = out[j];
        }
    }
    return EM_OK;
}

em_status emcap_assign(em_tensor_t *dst, em_tensor_t *src) {
    emcap_tracer *tr = emcap_current;
    if (!tr || (emt_is_symbolic(dst) && dst->sym != tr) || (emt_is_symbolic(src) && src->sym != tr))
        return em_seterr(EM_ERR_COMPILE, "em_assign: a symbolic tensor (from inside a compiled function) "
                         "was used outside its trace");
    if (em_is_grad_enabled() && (dst->requires_grad || src->requires_grad))
        return em_seterr(EM_ERR_AUTOGRAD, "em_assign: in-place writes are not recorded by autograd; a tensor "
                         "here requires grad. Wrap the update in em_no_grad_begin()/em_no_grad_end()");
    em_tensor_t *s = src->dtype != dst->dtype ? em_cast(src, dst->dtype) : src;
    if (s && (s->ndim != dst->ndim || memcmp(s->shape, dst->shape, sizeof(int64_t) * (size_t)dst->ndim)))
        s = em_expand(s, dst->shape, dst->ndim);
    if (!s) return em_last_status();
    int v = value_of(tr, s);
    if (v < 0) return em_last_status();
    if (emt_is_symbolic(dst)) { /* rebinding: later reads of this handle see the new value */
        dst->sym_id = v;
        return EM_OK;
    }
    if (check_aliasing(tr, dst, true) != EM_OK) return em_last_status();
    if (value_of(tr, dst) < 0) return em_last_status(); /* lifts it if needed */
    lift_entry *e = find_lift(tr, dst);
    EM_ASSERT(e);
    e->val = v;
    e->written = true;
    return EM_OK;
}

static em_status lazy_flush(emcap_tracer *tr, bool at_break);

em_status emcap_data_read_at(const char *op, em_tensor_t *t, void *site) {
    emcap_tracer *tr = emcap_current;
    char sh[EMB_SHAPE_BUF];
    if (!tr || t->sym != tr)
        return em_seterr(EM_ERR_COMPILE, "%s: a symbolic tensor (from inside a compiled function) was used "
                         "outside its trace", op);
    emcap_site_str(tr->site, sizeof tr->site, site);
    snprintf(tr->reason, sizeof tr->reason, "%s reads the data of a traced tensor %s", op,
             emb_shape_str(sh, t->shape, t->ndim));
    tr->broke = true;
    if (tr->lazy) return lazy_flush(tr, true); /* t is realized now: the read goes on */
    if (tr->fullgraph)
        return em_seterr(EM_ERR_COMPILE, "em_compile (fullgraph): graph break in %s (called at %s): it needs the "
                         "value of a tensor %s that only exists when the compiled program runs. Instead, "
                         "compute with tensors (em_where for a data-dependent choice, a mask for a "
                         "data-dependent count), or return the tensor as an output and read it after "
                         "em_call, or compile without fullgraph so the function runs as compiled segments "
                         "split at the read", op, tr->site, sh);
    return em_seterr(EM_ERR_COMPILE, "graph break: %s", tr->reason);
}

em_status emcap_data_read(const char *op, em_tensor_t *t) { return emcap_data_read_at(op, t, NULL); }

em_status emcap_note_alias(em_tensor_t *t) {
    emcap_tracer *tr = emcap_current;
    if (!tr || !tr->lazy || t->sym != tr) return EM_OK;
    if (!grow((void **)&tr->made, &tr->cap_made, tr->n_made + 1, sizeof *tr->made))
        return em_seterr(EM_ERR_OOM, "em_call: out of memory");
    t->refcount++;
    tr->made[tr->n_made++] = t;
    return EM_OK;
}

em_status emcap_note_grad(em_tensor_t *t) {
    emcap_tracer *tr = emcap_current;
    if (tr->lazy) return EM_OK; /* gradients are set directly; a flush realizes them */
    em_tensor_t *real = NULL;
    if (emt_is_symbolic(t)) { /* only the argument proxies' gradients leave the trace */
        for (int i = 0; i < tr->n_args; i++)
            if (tr->proxies[i] == t) real = tr->args[i];
        if (!real) return EM_OK;
    }
    for (int i = 0; i < tr->n_notes; i++)
        if (tr->notes[i].t == t) return EM_OK;
    if (!grow((void **)&tr->notes, &tr->cap_notes, tr->n_notes + 1, sizeof *tr->notes))
        return em_seterr(EM_ERR_OOM, "em_compile: out of memory");
    t->refcount++;
    if (t->grad) t->grad->refcount++;
    tr->notes[tr->n_notes++] = (grad_note){t, t->grad, real, false};
    return EM_OK;
}

emcap_tracer *emcap_begin_on(emg_graph *g) {
    if (emcap_current) return em_seterr_null(EM_ERR_COMPILE, "graph rewrite: already tracing");
    emcap_tracer *tr = calloc(1, sizeof *tr);
    if (!tr) return em_seterr_null(EM_ERR_OOM, "graph rewrite: out of memory");
    tr->g = g;
    tr->no_lift = true;
    tr->serial0 = emt_next_serial();
    emcap_current = tr;
    return tr;
}

em_tensor_t *emcap_symbolic(emcap_tracer *tr, int v) {
    const emo_meta *m = &tr->g->vals[v].meta;
    return emt_own(emt_new_symbolic(tr, v, m->dtype, m->shape, m->ndim));
}

static void tracer_free(emcap_tracer *tr);

void emcap_end(emcap_tracer *tr) {
    if (!tr) return;
    if (emcap_current == tr) emcap_current = NULL;
    tr->g = NULL; /* not ours */
    tracer_free(tr);
}

/* ---- running a trace ------------------------------------------------------------------------- */
static int add_output(int **outs, int *n, int *cap, int v) {
    if (!grow((void **)outs, cap, *n + 1, sizeof **outs)) return -1;
    (*outs)[(*n)++] = v;
    return *n - 1;
}

static em_status add_writeback(emcap_trace *t, em_tensor_t *target, int value, bool is_grad) {
    emcap_writeback *wb = realloc(t->wb, sizeof *wb * (size_t)(t->n_wb + 1));
    if (!wb) return em_seterr(EM_ERR_OOM, "em_compile: out of memory");
    t->wb = wb;
    target->refcount++;
    t->wb[t->n_wb++] = (emcap_writeback){target, value, is_grad};
    return EM_OK;
}

/* outputs, written tensors and changed gradients become graph outputs and write-backs;
   gradients are restored as they were before the trace */
static em_status finish(emcap_tracer *tr, em_tensor_t **outs, int n_out, emcap_trace *t) {
    int *ov = NULL, n = 0, cap = 0;
    em_status st = EM_OK;
    for (int j = 0; j < n_out && st == EM_OK; j++) {
        int v = outs[j] ? value_of(tr, outs[j]) : -1;
        if (!outs[j]) st = em_seterr(EM_ERR_ARG, "em_call: the function left output %d unset", j);
        else if (v < 0 || add_output(&ov, &n, &cap, v) < 0) st = em_last_status();
    }
    t->n_user_out = n_out;
    for (int i = 0; i < tr->n_lifts && st == EM_OK; i++) {
        if (!tr->lifts[i].written) continue;
        int k = add_output(&ov, &n, &cap, tr->lifts[i].val);
        if (k < 0) st = em_seterr(EM_ERR_OOM, "em_compile: out of memory");
        else st = add_writeback(t, tr->lifts[i].t, k, false);
    }
    for (int i = 0; i < tr->n_notes; i++) {
        grad_note *g = &tr->notes[i];
        em_tensor_t *final = g->t->grad, *target = g->real ? g->real : g->t;
        if (st == EM_OK && (final || g->orig_grad)) {
            int v = final ? value_of(tr, final) : -1;
            int k = v >= 0 ? add_output(&ov, &n, &cap, v) : -1;
            if (final && k < 0) st = em_last_status();
            else st = add_writeback(t, target, k, true);
        }
        g->t->grad = g->orig_grad; /* restore (the note's reference moves back to the tensor) */
        g->orig_grad = NULL;
        g->restored = true;
        em_release(final);
    }
    if (st == EM_OK) st = emg_set_outputs(tr->g, ov, n);
    free(ov);
    return st;
}

static void tracer_free(emcap_tracer *tr) {
    for (int i = 0; i < tr->n_lifts; i++) em_release(tr->lifts[i].t);
    for (int i = 0; i < tr->n_notes; i++) {
        if (!tr->notes[i].restored) { /* not restored by finish (a break or an error): put it back */
            em_release(tr->notes[i].t->grad);
            tr->notes[i].t->grad = tr->notes[i].orig_grad;
        }
        em_release(tr->notes[i].t);
    }
    for (int i = 0; i < tr->n_args; i++) em_release(tr->proxies[i]);
    for (int i = 0; i < tr->n_made; i++) em_release(tr->made[i]);
    free(tr->made);
    free(tr->lifts);
    free(tr->notes);
    free(tr->proxies);
    free(tr);
}

em_status emcap_trace_fn(em_traceable_fn fn, void *ctx, em_tensor_t *const *in, int n_in, int n_out,
                         bool fullgraph, emcap_trace *t) {
    memset(t, 0, sizeof *t);
    if (emcap_current) return em_seterr(EM_ERR_COMPILE, "em_call: a compiled function was called while tracing "
                                        "another one; nested compilation is not supported");
    emcap_tracer *tr = calloc(1, sizeof *tr);
    em_tensor_t *outs_small[16] = {0}, **outs = n_out <= 16 ? outs_small : calloc((size_t)n_out, sizeof *outs);
    if (!tr || !outs || !(tr->g = emg_new()) || !(tr->proxies = calloc((size_t)n_in + 1, sizeof *tr->proxies))) {
        if (tr) { emg_free(tr->g); free(tr->proxies); free(tr); }
        if (outs != outs_small) free(outs);
        return em_seterr(EM_ERR_OOM, "em_compile: out of memory");
    }
    tr->fullgraph = fullgraph;
    tr->args = (em_tensor_t **)in;
    em_status st = EM_OK;
    for (int i = 0; i < n_in && st == EM_OK; i++) {
        emo_meta m;
        emo_meta_of(in[i], &m);
        int v = emg_add_input(tr->g, &m);
        tr->proxies[i] = v < 0 ? NULL : emt_new_symbolic(tr, v, m.dtype, m.shape, m.ndim);
        if (!tr->proxies[i]) st = em_last_status();
        else tr->proxies[i]->requires_grad = in[i]->requires_grad;
        tr->n_args = i + 1;
    }
    uint64_t seed0 = em_rng_seed(), off0 = em_rng_offset();
    tr->serial0 = emt_next_serial();
    em_scope_t *s = em_scope_begin();
    if (st == EM_OK && s) {
        emcap_current = tr;
        st = fn(ctx, tr->proxies, n_in, outs, n_out);
        emcap_current = NULL;
        if (tr->broke) {
            t->has_break = true;
            snprintf(t->break_reason, sizeof t->break_reason, "%.255s at %.159s", tr->reason, tr->site);
            st = fullgraph ? EM_ERR_COMPILE : EM_OK;
        } else if (st != EM_OK && em_last_error()[0] == 0) {
            st = em_seterr(st, "em_call: the traced function returned %s", em_status_name(st));
        }
        if (st == EM_OK && !t->has_break) st = finish(tr, outs, n_out, t);
    }
    t->rng_count = em_rng_offset() - off0;
    t->rng_base = off0;
    em_rng_set_state(seed0, off0); /* the compiled run draws them again */
    em_scope_end(s);
    if (st == EM_OK && !t->has_break) {
        t->g = tr->g;
        tr->g = NULL;
        t->n_args = n_in;
        for (int i = 0; i < tr->n_lifts; i++)
            if (tr->lifts[i].input >= 0) t->n_lifted++;
        t->lifted = calloc((size_t)t->n_lifted + 1, sizeof *t->lifted);
        if (!t->lifted) st = em_seterr(EM_ERR_OOM, "em_compile: out of memory");
        for (int i = 0, k = 0; st == EM_OK && i < tr->n_lifts; i++) {
            if (tr->lifts[i].input < 0) continue;
            EM_ASSERT(t->g->vals[tr->lifts[i].input].index == n_in + k);
            t->lifted[k++] = tr->lifts[i].t;
            tr->lifts[i].t->refcount++;
        }
    }
    emg_free(tr->g);
    tracer_free(tr);
    if (outs != outs_small) free(outs);
    if (st != EM_OK) emcap_trace_free(t);
    return st;
}

void emcap_trace_free(emcap_trace *t) {
    emg_free(t->g);
    for (int i = 0; i < t->n_lifted; i++) em_release(t->lifted[i]);
    for (int i = 0; i < t->n_wb; i++) em_release(t->wb[i].target);
    free(t->lifted);
    free(t->wb);
    bool brk = t->has_break;
    char reason[sizeof t->break_reason];
    memcpy(reason, t->break_reason, sizeof reason);
    memset(t, 0, sizeof *t);
    t->has_break = brk;
    memcpy(t->break_reason, reason, sizeof reason);
}

/* ---- lazy mode: graph breaks as compiled segments ------------------------------------------- */
/* a static function has no dynamic symbol: ask addr2line (binutils) when it is there, once per
   address (the answers are kept) */
static void site_from_addr2line(const char *file, unsigned long off, char *out, size_t n) {
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static struct { char file[256]; unsigned long off; char fn[128]; } memo[32];
    static int n_memo;
    out[0] = 0;
    if (strchr(file, '\'') || strlen(file) >= sizeof memo[0].file) return;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n_memo; i++)
        if (memo[i].off == off && !strcmp(memo[i].file, file)) {
            snprintf(out, n, "%s", memo[i].fn);
            pthread_mutex_unlock(&lock);
            return;
        }
    char cmd[400], ln[128] = "";
    snprintf(cmd, sizeof cmd, "addr2line -f -e '%s' 0x%lx 2>/dev/null", file, off - 1); /* the call, not the return */
    FILE *p = popen(cmd, "r");
    if (p) {
        if (!fgets(ln, sizeof ln, p)) ln[0] = 0;
        pclose(p);
    }
    ln[strcspn(ln, "\n")] = 0;
    if (!strcmp(ln, "??")) ln[0] = 0;
    if (n_memo < 32) {
        snprintf(memo[n_memo].file, sizeof memo[n_memo].file, "%s", file);
        memo[n_memo].off = off;
        snprintf(memo[n_memo].fn, sizeof memo[n_memo].fn, "%s", ln);
        n_memo++;
    }
    pthread_mutex_unlock(&lock);
    snprintf(out, n, "%s", ln);
}

void emcap_site_str(char *buf, size_t n, void *addr) {
    Dl_info di;
    if (!addr) {
        snprintf(buf, n, "an unknown call site");
    } else if (dladdr(addr, &di) && di.dli_sname) {
        const char *file = di.dli_fname ? strrchr(di.dli_fname, '/') : NULL;
        snprintf(buf, n, "%s+0x%lx (%s)", di.dli_sname, (unsigned long)((char *)addr - (char *)di.dli_saddr),
                 file ? file + 1 : di.dli_fname ? di.dli_fname : "?");
    } else if (dladdr(addr, &di) && di.dli_fname) {
        unsigned long off = (unsigned long)((char *)addr - (char *)di.dli_fbase);
        char fn[128] = "";
        site_from_addr2line(di.dli_fname, off, fn, sizeof fn);
        if (fn[0]) snprintf(buf, n, "%s (%s+0x%lx)", fn, di.dli_fname, off);
        else snprintf(buf, n, "%s+0x%lx", di.dli_fname, off);
    } else {
        snprintf(buf, n, "%p", addr);
    }
}

uint64_t emcap_hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

void emcap_logf(emcap_segcache *sc, const char *fmt, ...) {
    if (!sc || !sc->log) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(sc->log + sc->log_len, sc->log_cap - sc->log_len, fmt, ap);
        va_end(ap);
        if (k < 0) return;
        if (sc->log_len + (size_t)k < sc->log_cap) {
            sc->log_len += (size_t)k;
            return;
        }
        char *q = realloc(sc->log, sc->log_cap * 2 + (size_t)k);
        if (!q) return;
        sc->log = q;
        sc->log_cap = sc->log_cap * 2 + (size_t)k;
    }
}

void emcap_segcache_free(emcap_segcache *sc) {
    for (int i = 0; i < sc->n; i++) {
        emcap_segment *s = sc->v[i];
        free(s->text);
        emg_free(s->g);
        emc_program_free(s->prog);
        free(s);
    }
    free(sc->v);
    free(sc->log);
    memset(sc, 0, sizeof *sc);
}

/* the segment for graph g (taken over), found by its text or compiled now */
static emcap_segment *segment_of(emcap_tracer *tr, emg_graph *g, bool at_break) {
    emcap_segcache *sc = tr->sc;
    char *text = emg_print(g);
    if (!text) {
        emg_free(g);
        return NULL;
    }
    uint64_t h = emcap_hash_str(text);
    for (int i = 0; i < sc->n; i++)
        if (sc->v[i]->hash == h && !strcmp(sc->v[i]->text, text)) {
            free(text);
            emg_free(g);
            return sc->v[i];
        }
    emcap_segment *s = calloc(1, sizeof *s);
    if (!s || !grow((void **)&sc->v, &sc->cap, sc->n + 1, sizeof *sc->v)) {
        free(s);
        free(text);
        emg_free(g);
        return em_seterr_null(EM_ERR_OOM, "em_call: out of memory");
    }
    s->text = text;
    s->hash = h;
    s->g = g;
    s->id = sc->n;
    s->breaks = at_break;
    if (at_break) {
        snprintf(s->reason, sizeof s->reason, "%s", tr->reason);
        snprintf(s->site, sizeof s->site, "%s", tr->site);
        sc->breaks++;
    }
    sc->v[sc->n++] = s;
    char name[64];
    snprintf(name, sizeof name, "f%d-seg%d-%016llx", sc->fn_id, s->id, (unsigned long long)h);
    if (sc->use_c) {
        s->prog = emc_compile_graph(g, NULL);
        if (!s->prog)
            emb_log("code", "%s: the C backend failed, this segment runs in the interpreter: %s", name, em_last_error());
        else
            emcap_cache_note(g, s->prog);
        em_clear_error();
    }
    sc->compiles++;
    emb_log("breaks", "%s: new segment, %d nodes, %s%s%s%s", name, g->n_nodes,
            at_break ? "ends at a graph break: " : "ends where the function returns",
            at_break ? tr->reason : "", at_break ? " at " : "", at_break ? tr->site : "");
    emcap_dump(name, NULL, g, s->prog);
    return s;
}

static em_status lazy_flush(emcap_tracer *tr, bool at_break) {
    emcap_tracer *saved = emcap_current;
    emcap_current = NULL; /* the segment runs eagerly, not under the tracer */
    emcap_segcache *sc = tr->sc;
    em_status st = EM_OK;
    int n_out = 0, n_wr = 0, *ov = calloc((size_t)(tr->n_made + tr->n_lifts) + 1, sizeof *ov);
    em_tensor_t **alive = calloc((size_t)tr->n_made + 1, sizeof *alive), **inputs = NULL;
    if (!ov || !alive) st = em_seterr(EM_ERR_OOM, "em_call: out of memory");
    for (int i = 0; st == EM_OK && i < tr->n_made; i++) {
        em_tensor_t *t = tr->made[i];
        if (t->refcount > 1 && emt_is_symbolic(t) && t->sym == tr) {
            alive[n_out] = t;
            ov[n_out++] = t->sym_id;
        }
    }
    for (int i = 0; st == EM_OK && i < tr->n_lifts; i++)
        if (tr->lifts[i].written) ov[n_out + n_wr++] = tr->lifts[i].val;
    emg_graph *g = tr->g;
    tr->g = NULL;
    uint64_t seed = em_rng_seed(), base = tr->seg_base;
    if (st == EM_OK && n_out + n_wr > 0) {
        inputs = calloc((size_t)g->n_inputs + 1, sizeof *inputs);
        if (!inputs) st = em_seterr(EM_ERR_OOM, "em_call: out of memory");
        for (int i = 0; st == EM_OK && i < tr->n_lifts; i++) /* before emg_dce renumbers the values */
            if (tr->lifts[i].input >= 0) inputs[g->vals[tr->lifts[i].input].index] = tr->lifts[i].t;
    }
    if (st == EM_OK && n_out + n_wr > 0) {
        if (emg_set_outputs(g, ov, n_out + n_wr) != EM_OK || emg_verify(g) != EM_OK || emg_cse(g) < 0 ||
            emg_dce(g) < 0)
            st = em_last_status();
        for (int i = 0; st == EM_OK && i < g->n_nodes; i++) { /* key random nodes by their relative counter */
            emo_attrs *a = &g->nodes[i].attrs;
            if (!(emo_table[g->nodes[i].op].flags & EMO_RANDOM)) continue;
            if (a->seed != seed)
                st = em_seterr(EM_ERR_COMPILE, "em_call: the random seed changed inside a compiled function "
                               "with graph breaks; seed outside the function");
            a->seed = 0;
            a->offset -= base;
        }
    }
    emcap_segment *seg = NULL;
    if (st == EM_OK && n_out + n_wr > 0) {
        seg = segment_of(tr, g, at_break);
        g = NULL;
        if (!seg) st = em_last_status();
    }
    emg_free(g);
    if (seg) {
        seg->runs++;
        emcap_logf(sc, "segment %d (%d nodes) ran%s%s%s%s\n", seg->id, seg->g->n_nodes,
                   at_break ? ", then graph break: " : ", then the function returned",
                   at_break ? tr->reason : "", at_break ? " at " : "", at_break ? tr->site : "");
        em_scope_t *scope = em_scope_begin();
        em_tensor_t **res = calloc((size_t)seg->g->n_outputs + 1, sizeof *res);
        if (!scope || !res) st = em_seterr(EM_ERR_OOM, "em_call: out of memory");
        if (st == EM_OK && seg->prog) {
            emc_program_set_rng(seg->prog, seed, base);
            st = emc_run(seg->prog, inputs, seg->g->n_inputs, res);
        } else if (st == EM_OK) {
            emg_graph *sg = seg->g;
            for (int i = 0; i < sg->n_nodes; i++)
                if (emo_table[sg->nodes[i].op].flags & EMO_RANDOM) {
                    sg->nodes[i].attrs.seed = seed;
                    sg->nodes[i].attrs.offset += base;
                }
            st = emg_run(sg, inputs, sg->n_inputs, res);
            for (int i = 0; i < sg->n_nodes; i++)
                if (emo_table[sg->nodes[i].op].flags & EMO_RANDOM) {
                    sg->nodes[i].attrs.seed = 0;
                    sg->nodes[i].attrs.offset -= base;
                }
        }
        for (int k = 0; st == EM_OK && k < n_out; k++) { /* realize in place */
            em_tensor_t *t = alive[k], *r = res[k];
            EM_ASSERT(r && r->ndim == t->ndim && r->dtype == t->dtype);
            t->storage = r->storage;
            t->storage->refcount++;
            t->offset = r->offset;
            memcpy(t->strides, r->strides, sizeof t->strides);
            t->sym = NULL;
            t->sym_id = 0;
        }
        for (int i = 0, k = n_out; st == EM_OK && i < tr->n_lifts; i++) {
            if (!tr->lifts[i].written) continue;
            emt_copy(tr->lifts[i].t, res[k++]);
            tr->lifts[i].t->storage->version++;
        }
        free(res);
        em_scope_end(scope);
    }
    free(ov);
    free(alive);
    free(inputs);
    /* a fresh segment */
    for (int i = 0; i < tr->n_made; i++) em_release(tr->made[i]);
    tr->n_made = 0;
    for (int i = 0; i < tr->n_lifts; i++) em_release(tr->lifts[i].t);
    tr->n_lifts = 0;
    tr->seg_base = em_rng_offset();
    if (!(tr->g = emg_new()) && st == EM_OK) st = em_last_status();
    emcap_current = saved;
    return st;
}

em_status emcap_run_lazy(emcap_segcache *sc, em_traceable_fn fn, void *ctx, em_tensor_t *const *in, int n_in,
                         em_tensor_t **out, int n_out) {
    if (emcap_current) return em_seterr(EM_ERR_COMPILE, "em_call: a compiled function was called while tracing "
                                        "another one; nested compilation is not supported");
    emcap_tracer *tr = calloc(1, sizeof *tr);
    if (!tr || !(tr->g = emg_new())) {
        free(tr);
        return em_seterr(EM_ERR_OOM, "em_call: out of memory");
    }
    tr->lazy = true;
    tr->sc = sc;
    tr->serial0 = UINT64_MAX;
    tr->seg_base = em_rng_offset();
    for (int j = 0; j < n_out; j++) out[j] = NULL;
    emcap_current = tr;
    em_status st = fn(ctx, in, n_in, out, n_out);
    if (st != EM_OK && em_last_error()[0] == 0)
        st = em_seterr(st, "em_call: the function returned %s", em_status_name(st));
    for (int j = 0; st == EM_OK && j < n_out; j++)
        if (!out[j]) st = em_seterr(EM_ERR_ARG, "em_call: the function left output %d unset", j);
    if (st == EM_OK) {
        st = lazy_flush(tr, false);
    } else { /* as in eager mode, what ran before the error happened: realize it (best effort) */
        char msg[1000];
        snprintf(msg, sizeof msg, "%s", em_last_error());
        lazy_flush(tr, false);
        em_seterr(st, "%s", msg);
        for (int j = 0; j < n_out; j++) out[j] = NULL;
    }
    emcap_current = NULL;
    emg_free(tr->g);
    tracer_free(tr);
    return st;
}
