/* autograd.c - recording nodes and the backward engine.
 *
 * em_backward walks the nodes reachable from the output once to count each node's consumers,
 * then runs them in dependency order (Kahn's algorithm), so each node's backward sees the sum of
 * all gradients flowing into its outputs before it runs. Each backward runs in its own scope with
 * grad mode off, and only the gradients it hands on survive, so the engine's peak memory is the
 * live gradients, not every temporary. Gradients are summed and cast to each input's metadata
 * here (emo_sum_to), so op backward rules may return broadcast shapes.
 */
#include "autograd.h"

#include "../capture/capture.h"

#include <stdio.h>

static _Thread_local int no_grad_depth;
static uint64_t epoch_counter;

void em_no_grad_begin(void) { no_grad_depth++; }
void em_no_grad_end(void) {
    if (no_grad_depth > 0) no_grad_depth--;
}
bool em_is_grad_enabled(void) { return no_grad_depth == 0; }

const char *ema_node_name(const ema_node *n) { return emo_table[n->op].name; }

bool ema_needs_grad(emo_op op, em_tensor_t *const *in, int n_in) {
    if (no_grad_depth > 0 || (emo_table[op].flags & EMO_NODIFF)) return false;
    for (int i = 0; i < n_in; i++)
        if (in[i]->requires_grad) return true;
    return false;
}

/* ---- nodes ----------------------------------------------------------------------------------- */
static void release_saved(ema_node *n) {
    for (int i = 0; i < n->n_in; i++) {
        em_release(n->saved_in[i]);
        n->saved_in[i] = NULL;
    }
    for (int j = 0; j < n->n_out; j++) {
        em_release(n->saved_out[j]);
        n->saved_out[j] = NULL;
    }
}

static void node_free_one(ema_node *n, ema_node ***stack, int *sn, int *scap) {
    release_saved(n);
    for (int i = 0; i < n->n_in; i++) {
        if (n->next[i].leaf) em_release(n->next[i].leaf);
        ema_node *m = n->next[i].fn;
        if (m && --m->refcount == 0) {
            if (*sn == *scap) {
                *scap = *scap ? 2 * *scap : 64;
                ema_node **s = realloc(*stack, (size_t)*scap * sizeof **stack);
                if (!s) em_die(__FILE__, __LINE__, "out of memory freeing an autograd graph");
                *stack = s;
            }
            (*stack)[(*sn)++] = m;
        }
    }
    free(n->next);
    free(n->needs_grad);
    free(n->in_meta);
    free(n->out_meta);
    free(n->saved_in);
    free(n->saved_out);
    free(n->saved_in_ver);
    free(n->saved_out_ver);
    free(n->retained);
    free(n->gacc);
    free(n);
}

/* iterative, so a long chain of nodes (an RNN unrolled 10^5 steps) cannot overflow the stack */
void ema_node_release(ema_node *n) {
    if (!n || --n->refcount > 0) return;
    ema_node **stack = NULL;
    int sn = 0, scap = 0;
    node_free_one(n, &stack, &sn, &scap);
    while (sn > 0) node_free_one(stack[--sn], &stack, &sn, &scap);
    free(stack);
}

void ema_forget_output(ema_node *n, int idx, em_tensor_t *t) {
    if (n->retained && n->retained[idx] == t) n->retained[idx] = NULL;
}

em_status ema_record(emo_op op, const emo_attrs *a, em_tensor_t *const *in, int n_in,
                     em_tensor_t *const *out, int n_out) {
    const emo_def *d = &emo_table[op];
    if (!d->backward)
        return em_seterr(EM_ERR_AUTOGRAD, "em_%s: no gradient is defined for this op; call it "
                         "under em_no_grad_begin() or detach its inputs", d->name);
    ema_node *n = calloc(1, sizeof *n);
    if (!n) return em_seterr(EM_ERR_OOM, "autograd: out of memory");
    n->op = op;
    n->attrs = *a;
    n->n_in = n_in;
    n->n_out = n_out;
    n->next = calloc((size_t)n_in, sizeof *n->next);
    n->needs_grad = calloc((size_t)n_in, sizeof *n->needs_grad);
    n->in_meta = calloc((size_t)n_in, sizeof *n->in_meta);
    n->out_meta = calloc((size_t)n_out, sizeof *n->out_meta);
    n->saved_in = calloc((size_t)n_in, sizeof *n->saved_in);
    n->saved_out = calloc((size_t)n_out, sizeof *n->saved_out);
    n->saved_in_ver = calloc((size_t)n_in, sizeof *n->saved_in_ver);
    n->saved_out_ver = calloc((size_t)n_out, sizeof *n->saved_out_ver);
    n->retained = calloc((size_t)n_out, sizeof *n->retained);
    n->gacc = calloc((size_t)n_out, sizeof *n->gacc);
    if (!n->next || !n->needs_grad || !n->in_meta || !n->out_meta || !n->saved_in || !n->saved_out ||
        !n->saved_in_ver || !n->saved_out_ver || !n->retained || !n->gacc) {
        n->refcount = 1;
        ema_node_release(n);
        return em_seterr(EM_ERR_OOM, "autograd: out of memory");
    }
    for (int i = 0; i < n_in; i++) {
        em_tensor_t *x = in[i];
        emo_meta_of(x, &n->in_meta[i]);
        n->needs_grad[i] = x->requires_grad && emt_is_float(x->dtype);
        if (x->grad_fn && x->requires_grad) {
            n->next[i].fn = x->grad_fn;
            n->next[i].idx = x->out_idx;
            x->grad_fn->refcount++;
        } else if (x->requires_grad) {
            n->next[i].leaf = x;
            x->refcount++;
        }
        if (d->flags & EMO_SAVE_IN) {
            n->saved_in[i] = emt_detached(x);
            n->saved_in_ver[i] = emt_version(x);
        }
    }
    for (int j = 0; j < n_out; j++) {
        emo_meta_of(out[j], &n->out_meta[j]);
        if (d->flags & EMO_SAVE_OUT) {
            n->saved_out[j] = emt_detached(out[j]);
            n->saved_out_ver[j] = emt_version(out[j]);
        }
    }
    for (int j = 0; j < n_out; j++) {
        if (!emt_is_float(out[j]->dtype)) continue;
        out[j]->requires_grad = true;
        out[j]->grad_fn = n;
        out[j]->out_idx = j;
        n->refcount++;
    }
    if (n->refcount == 0) { /* no differentiable output */
        n->refcount = 1;
        ema_node_release(n);
    }
    return EM_OK;
}

/* ---- public autograd API ---------------------------------------------------------------------- */
em_status em_set_requires_grad(em_tensor_t *t, bool on) {
    if (!emt_check(t, "em_set_requires_grad", "t")) return em_last_status();
    if (t->grad_fn)
        return em_seterr(EM_ERR_AUTOGRAD, "em_set_requires_grad: only leaf tensors can be marked; this "
                         "one was computed by %s (use em_detach to make a leaf)", ema_node_name(t->grad_fn));
    if (on && !emt_is_float(t->dtype))
        return em_seterr(EM_ERR_DTYPE, "em_set_requires_grad: only floating tensors can require grad, "
                         "this one is %s (em_cast it first)", em_dtype_name(t->dtype));
    t->requires_grad = on;
    return EM_OK;
}

bool em_requires_grad(em_tensor_t *t) { return emt_check(t, "em_requires_grad", "t") && t->requires_grad; }
bool em_is_leaf(em_tensor_t *t) { return emt_check(t, "em_is_leaf", "t") && !t->grad_fn; }

em_status em_retain_grad(em_tensor_t *t) {
    if (!emt_check(t, "em_retain_grad", "t")) return em_last_status();
    if (!t->requires_grad)
        return em_seterr(EM_ERR_AUTOGRAD, "em_retain_grad: the tensor does not require grad");
    if (t->grad_fn) {
        t->retains_grad = true;
        t->grad_fn->retained[t->out_idx] = t;
    }
    return EM_OK;
}

em_tensor_t *em_grad(em_tensor_t *t) {
    if (!emt_check(t, "em_grad", "t") || !t->grad) return NULL;
    t->grad->refcount++;
    return emt_own(t->grad);
}

em_status em_zero_grad(em_tensor_t *t) {
    if (!emt_check(t, "em_zero_grad", "t")) return em_last_status();
    if (emcap_tracing() && emcap_note_grad(t) != EM_OK) return em_last_status();
    em_release(t->grad);
    t->grad = NULL;
    return EM_OK;
}

/* ---- the engine ------------------------------------------------------------------------------ */
typedef struct {
    ema_node **v;
    int n, cap;
} node_vec;

static bool vec_push(node_vec *s, ema_node *n) {
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 64;
        ema_node **v = realloc(s->v, (size_t)cap * sizeof *v);
        if (!v) return false;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = n;
    return true;
}

/* t->grad += g, where the first gradient is copied so t owns its buffer alone. Inside a traced
   function the gradient is a graph value: the tracer notes the change and writes it back after
   the compiled program runs (DESIGN decision 5). */
static em_status accumulate(em_tensor_t *t, em_tensor_t *g) {
    if (emcap_tracing()) {
        if (emcap_note_grad(t) != EM_OK) return em_last_status();
        em_tensor_t *s = t->grad ? em_add(t->grad, g) : g;
        if (!s) return em_last_status();
        s->refcount++;
        em_release(t->grad);
        t->grad = s;
        return EM_OK;
    }
    if (!t->grad) {
        em_tensor_t *c = emt_contiguous_copy(g, t->dtype);
        if (!c) return em_last_status();
        t->grad = c;
        return EM_OK;
    }
    em_tensor_t *s = em_add(t->grad, g);
    if (!s) return em_last_status();
    emt_copy(t->grad, s);
    t->grad->storage->version++;
    return EM_OK;
}

static em_status add_into(em_tensor_t **slot, em_tensor_t *g) {
    if (!*slot) {
        *slot = em_retain(g);
        return EM_OK;
    }
    em_tensor_t *s = em_add(*slot, g);
    if (!s) return em_last_status();
    em_release(*slot);
    *slot = em_retain(s);
    return EM_OK;
}

static em_status check_saved(ema_node *n) {
    if (n->freed)
        return em_seterr(EM_ERR_AUTOGRAD, "em_backward: trying to backward through the graph a second "
                         "time (through %s), but its saved tensors were freed by the first backward; "
                         "pass retain_graph=true to em_backward_ex the first time", ema_node_name(n));
    for (int i = 0; i < n->n_in; i++)
        if (n->saved_in[i] && emt_version(n->saved_in[i]) != n->saved_in_ver[i])
            return em_seterr(EM_ERR_AUTOGRAD, "em_backward: input %d of %s was modified in place "
                             "(em_assign) after it was used; its gradient cannot be computed. Assign into "
                             "a copy (em_clone) instead", i, ema_node_name(n));
    for (int j = 0; j < n->n_out; j++)
        if (n->saved_out[j] && emt_version(n->saved_out[j]) != n->saved_out_ver[j])
            return em_seterr(EM_ERR_AUTOGRAD, "em_backward: the output of %s was modified in place "
                             "after it was computed; its gradient cannot be computed", ema_node_name(n));
    return EM_OK;
}

/* runs one node's backward and routes its input gradients */
static em_status run_node(ema_node *n, node_vec *ready) {
    em_status st = check_saved(n);
    if (st != EM_OK) return st;
    const emo_def *d = &emo_table[n->op];
    em_scope_t *s = em_scope_begin();
    if (!s) return em_last_status();
    em_tensor_t *gout[EMO_MAX_OUT], *gin_small[8] = {0}, **gin = gin_small;
    if (n->n_in > 8 && !(gin = calloc((size_t)n->n_in, sizeof *gin))) {
        em_scope_end(s);
        return em_seterr(EM_ERR_OOM, "em_backward: out of memory");
    }
    for (int j = 0; j < n->n_out && st == EM_OK; j++) {
        gout[j] = n->gacc[j];
        if (!gout[j]) gout[j] = em_zeros(n->out_meta[j].shape, n->out_meta[j].ndim, n->out_meta[j].dtype);
        if (!gout[j]) st = em_last_status();
        else if (n->retained[j]) st = accumulate(n->retained[j], gout[j]);
    }
    emo_bctx c = {&n->attrs, n->n_in, n->n_out, n->saved_in, n->saved_out, n->in_meta, n->out_meta, n->needs_grad};
    if (st == EM_OK) st = d->backward(&c, gout, gin);
    for (int i = 0; i < n->n_in && st == EM_OK; i++) {
        if (!gin[i] || !n->needs_grad[i]) continue;
        em_tensor_t *g = emo_sum_to(gin[i], &n->in_meta[i]);
        if (!g) { st = em_last_status(); break; }
        if (n->next[i].leaf) st = accumulate(n->next[i].leaf, g);
        else if (n->next[i].fn) st = add_into(&n->next[i].fn->gacc[n->next[i].idx], g);
    }
    /* dependents are counted whether or not a gradient reached them */
    for (int i = 0; i < n->n_in && st == EM_OK; i++) {
        ema_node *m = n->next[i].fn;
        if (m && --m->deps == 0 && !vec_push(ready, m)) st = em_seterr(EM_ERR_OOM, "em_backward: out of memory");
    }
    for (int j = 0; j < n->n_out; j++) {
        em_release(n->gacc[j]);
        n->gacc[j] = NULL;
    }
    if (gin != gin_small) free(gin);
    em_scope_end(s);
    return st;
}

em_status em_backward_ex(em_tensor_t *out, em_tensor_t *grad_output, bool retain_graph) {
    if (!emt_check(out, "em_backward", "out")) return em_last_status();
    if (!out->requires_grad)
        return em_seterr(EM_ERR_AUTOGRAD, "em_backward: the tensor does not require grad: no input of "
                         "the computation had em_set_requires_grad(t, true), or it ran under no_grad");
    char b1[EMB_SHAPE_BUF], b2[EMB_SHAPE_BUF];
    if (!grad_output && emt_numel(out) != 1)
        return em_seterr(EM_ERR_SHAPE, "em_backward: the output %s has %lld elements; a gradient can be "
                         "implied only for one element: reduce it (em_sum, em_mean) or pass grad_output "
                         "to em_backward_ex", emb_shape_str(b1, out->shape, out->ndim), (long long)emt_numel(out));
    if (grad_output) {
        if (!emt_check(grad_output, "em_backward", "grad_output")) return em_last_status();
        if (grad_output->ndim != out->ndim || memcmp(grad_output->shape, out->shape, sizeof(int64_t) * (size_t)out->ndim))
            return em_seterr(EM_ERR_SHAPE, "em_backward: grad_output %s must have the output's shape %s",
                             emb_shape_str(b1, grad_output->shape, grad_output->ndim),
                             emb_shape_str(b2, out->shape, out->ndim));
    }
    em_scope_t *s = em_scope_begin();
    if (!s) return em_last_status();
    em_no_grad_begin();
    em_status st = EM_OK;
    em_tensor_t *g = grad_output ? grad_output : em_ones(out->shape, out->ndim, out->dtype);
    if (!g) st = em_last_status();
    if (st == EM_OK && !out->grad_fn) { /* a leaf */
        st = accumulate(out, g);
        goto done;
    }
    /* count consumers of every reachable node (epoch marks first visits) */
    node_vec all = {0}, ready = {0};
    uint64_t epoch = ++epoch_counter;
    ema_node *root = out->grad_fn;
    root->epoch = epoch;
    root->deps = 0;
    if (st == EM_OK && !vec_push(&all, root)) st = em_seterr(EM_ERR_OOM, "em_backward: out of memory");
    for (int k = 0; k < all.n && st == EM_OK; k++) {
        ema_node *n = all.v[k];
        if (n->freed) st = check_saved(n);
        for (int i = 0; i < n->n_in && st == EM_OK; i++) {
            ema_node *m = n->next[i].fn;
            if (!m) continue;
            if (m->epoch != epoch) {
                m->epoch = epoch;
                m->deps = 0;
                if (!vec_push(&all, m)) st = em_seterr(EM_ERR_OOM, "em_backward: out of memory");
            }
            m->deps++;
        }
    }
    if (st == EM_OK) st = add_into(&root->gacc[out->out_idx], g);
    if (st == EM_OK && !vec_push(&ready, root)) st = em_seterr(EM_ERR_OOM, "em_backward: out of memory");
    while (st == EM_OK && ready.n > 0) {
        ema_node *n = ready.v[--ready.n];
        st = run_node(n, &ready);
        if (st == EM_OK && !retain_graph) {
            release_saved(n);
            n->freed = true;
        }
    }
    /* on failure, drop partial sums so a later backward starts clean */
    for (int k = 0; k < all.n; k++)
        for (int j = 0; j < all.v[k]->n_out; j++) {
            em_release(all.v[k]->gacc[j]);
            all.v[k]->gacc[j] = NULL;
        }
    free(all.v);
    free(ready.v);
done:
    em_no_grad_end();
    em_scope_end(s);
    return st;
}

em_status em_backward(em_tensor_t *loss) { return em_backward_ex(loss, NULL, false); }
