/* graph.c - building and owning graphs (the data structure of graph.h), and the small helpers
 * every pass shares.
 *
 * A graph is four growable arrays (values, nodes, inputs, outputs) and a table of constant
 * tensors it holds references to. Building is append-only: emg_add_node runs the op's infer on
 * the input values' metadata, so a node's outputs always carry what the op table says, and a
 * node can only read values that exist when it is added (which is what makes node order a
 * topological order). Passes rewrite graphs in place through the same fields; emg_dce compacts
 * them. Every builder checks what it is given and reports mistakes as values: capture feeds it
 * whatever the user's code does, and the parser feeds it whatever text it is handed.
 */
#include "graph.h"

#include <limits.h>
#include <stdio.h>

/* ---- growable arrays ------------------------------------------------------------------------ */
/* makes room for `need` elements of size esz in *p (capacity *cap); false + OOM error */
static bool grow(void **p, int *cap, int need, size_t esz) {
    if (need <= *cap) return true;
    if (need > INT_MAX / 2) return em_seterr(EM_ERR_OOM, "graph: too many entries (%d)", need), false;
    int ncap = *cap ? *cap : 8;
    while (ncap < need) ncap *= 2;
    void *q = realloc(*p, (size_t)ncap * esz);
    if (!q) return em_seterr(EM_ERR_OOM, "graph: out of memory"), false;
    *p = q;
    *cap = ncap;
    return true;
}
#define GROW(g, arr, n) grow((void **)&(g)->arr, &(g)->cap_##arr, (n), sizeof *(g)->arr)

emg_graph *emg_new(void) {
    emg_graph *g = calloc(1, sizeof *g);
    if (!g) return em_seterr_null(EM_ERR_OOM, "emg_new: out of memory");
    return g;
}

void emg_free(emg_graph *g) {
    if (!g) return;
    for (int k = 0; k < g->n_nodes; k++) free(g->nodes[k].in);
    for (int k = 0; k < g->n_consts; k++) em_release(g->consts[k]);
    free(g->vals);
    free(g->nodes);
    free(g->inputs);
    free(g->consts);
    free(g->outputs);
    free(g);
}

/* a malloc'ed copy of n ints (NULL for n == 0); *ok false on OOM */
static int *dup_ints(const int *src, int n, bool *ok) {
    *ok = true;
    if (n <= 0) return NULL;
    int *p = malloc((size_t)n * sizeof *p);
    if (!p) {
        *ok = false;
        em_seterr(EM_ERR_OOM, "graph: out of memory");
        return NULL;
    }
    memcpy(p, src, (size_t)n * sizeof *p);
    return p;
}

emg_graph *emg_clone(const emg_graph *g) {
    if (!g) return em_seterr_null(EM_ERR_ARG, "emg_clone: graph is NULL");
    emg_graph *c = emg_new();
    if (!c) return NULL;
    if (!GROW(c, vals, g->n_vals) || !GROW(c, nodes, g->n_nodes) || !GROW(c, inputs, g->n_inputs) ||
        !GROW(c, consts, g->n_consts) || !GROW(c, outputs, g->n_outputs)) {
        emg_free(c);
        return NULL;
    }
    if (g->n_vals) memcpy(c->vals, g->vals, (size_t)g->n_vals * sizeof *c->vals);
    if (g->n_inputs) memcpy(c->inputs, g->inputs, (size_t)g->n_inputs * sizeof *c->inputs);
    if (g->n_outputs) memcpy(c->outputs, g->outputs, (size_t)g->n_outputs * sizeof *c->outputs);
    c->n_vals = g->n_vals;
    c->n_inputs = g->n_inputs;
    c->n_outputs = g->n_outputs;
    for (int k = 0; k < g->n_consts; k++) c->consts[c->n_consts++] = em_retain(g->consts[k]);
    for (int k = 0; k < g->n_nodes; k++) {
        bool ok;
        emg_node n = g->nodes[k];
        n.in = dup_ints(g->nodes[k].in, n.n_in, &ok);
        if (!ok) {
            emg_free(c);
            return NULL;
        }
        c->nodes[c->n_nodes++] = n;
    }
    return c;
}

/* ---- helpers shared by the passes ------------------------------------------------------------ */
bool emg_meta_equal(const emo_meta *a, const emo_meta *b) {
    if (a->dtype != b->dtype || a->ndim != b->ndim) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return false;
    return true;
}

int64_t emg_numel(const emo_meta *m) {
    int64_t n = 1;
    for (int d = 0; d < m->ndim; d++)
        if (m->shape[d] < 0 || emb_mul_overflows(n, m->shape[d], &n)) return -1;
    return n;
}

char *emg_type_str(char *buf, const emo_meta *m) {
    size_t n = (size_t)snprintf(buf, EMG_TYPE_BUF, "%s[", em_dtype_name(m->dtype));
    for (int d = 0; d < m->ndim && d < EM_MAX_DIMS && n < EMG_TYPE_BUF; d++)
        n += (size_t)snprintf(buf + n, EMG_TYPE_BUF - n, "%s%lld", d ? ", " : "", (long long)m->shape[d]);
    if (n < EMG_TYPE_BUF) snprintf(buf + n, EMG_TYPE_BUF - n, "]");
    return buf;
}

emo_attrs emg_attrs_norm(emo_op op, const emo_attrs *a) {
    emo_attrs n;
    memset(&n, 0, sizeof n); /* padding too */
    int ni = a->ni < 0 ? 0 : a->ni > EMO_MAX_INTS ? EMO_MAX_INTS : a->ni;
    for (int k = 0; k < ni; k++) n.i[k] = a->i[k];
    n.ni = a->ni;
    for (int k = 0; k < 4; k++) n.j[k] = a->j[k];
    for (int k = 0; k < EMO_MAX_FLOATS; k++) n.f[k] = a->f[k];
    n.dtype = a->dtype;
    if ((unsigned)op < EMO_NUM_OPS && (emo_table[op].flags & EMO_RANDOM)) {
        n.seed = a->seed;
        n.offset = a->offset;
    }
    return n;
}

/* Shared infer functions name "the op being dispatched" (emo_current_op), which only emo_call
   sets; when the graph runs an infer that name is stale, so the message is re-headed with the
   right op. */
static void rename_error(const char *op) {
    const char *cur = emo_current_op(), *msg = em_last_error();
    char head[80];
    snprintf(head, sizeof head, "em_%s:", cur);
    if (strcmp(cur, op) == 0 || strncmp(msg, head, strlen(head)) != 0) return;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", msg + strlen(head));
    em_seterr(em_last_status(), "em_%s:%s", op, buf);
}

int emg_infer(emo_op op, const emo_attrs *a, const emo_meta *in, int n_in, emo_meta out[EMO_MAX_OUT]) {
    EM_ASSERT((unsigned)op < EMO_NUM_OPS);
    const emo_def *d = &emo_table[op];
    static const emo_meta none; /* infer may take &in[0] of a creation op */
    memset(out, 0, EMO_MAX_OUT * sizeof *out);
    int n_out = d->n_out;
    if (d->infer(a, n_in > 0 ? in : &none, n_in, out, &n_out) != EM_OK) {
        rename_error(d->name);
        return -1;
    }
    if (n_out < 0 || n_out > EMO_MAX_OUT) {
        em_seterr(EM_ERR_STATE, "em_%s: infer gave %d outputs", d->name, n_out);
        return -1;
    }
    for (int j = 0; j < n_out; j++) {
        EM_ASSERT(out[j].ndim >= 0 && out[j].ndim <= EM_MAX_DIMS && (unsigned)out[j].dtype < EM_NUM_DTYPES);
        for (int k = out[j].ndim; k < EM_MAX_DIMS; k++) out[j].shape[k] = 0;
    }
    return n_out;
}

void emg_replace_uses(emg_graph *g, int from, int to) {
    EM_ASSERT(from >= 0 && from < g->n_vals && to >= 0 && to < g->n_vals);
    for (int k = 0; k < g->n_nodes; k++)
        for (int i = 0; i < g->nodes[k].n_in; i++)
            if (g->nodes[k].in[i] == from) g->nodes[k].in[i] = to;
    for (int k = 0; k < g->n_outputs; k++)
        if (g->outputs[k] == from) g->outputs[k] = to;
}

/* ---- building -------------------------------------------------------------------------------- */
static bool meta_ok(const char *fn, const emo_meta *m) {
    if (!m) return em_seterr(EM_ERR_ARG, "%s: metadata is NULL", fn), false;
    if ((unsigned)m->dtype >= EM_NUM_DTYPES) return em_seterr(EM_ERR_DTYPE, "%s: unknown dtype %d", fn, (int)m->dtype), false;
    if (m->ndim < 0 || m->ndim > EM_MAX_DIMS)
        return em_seterr(EM_ERR_SHAPE, "%s: %d dims; at most %d are supported", fn, m->ndim, EM_MAX_DIMS), false;
    if (emg_numel(m) < 0) {
        char b[EMG_TYPE_BUF];
        return em_seterr(EM_ERR_SHAPE, "%s: type %s has a negative size or too many elements", fn,
                         emg_type_str(b, m)), false;
    }
    return true;
}

/* appends one value (room must have been made) */
static int push_value(emg_graph *g, emg_value_kind kind, const emo_meta *m, int node, int out_idx, int index) {
    emg_value *v = &g->vals[g->n_vals];
    memset(v, 0, sizeof *v);
    v->kind = kind;
    v->meta.dtype = m->dtype;
    v->meta.ndim = m->ndim;
    for (int d = 0; d < m->ndim; d++) v->meta.shape[d] = m->shape[d];
    v->node = node;
    v->out_idx = out_idx;
    v->index = index;
    return g->n_vals++;
}

int emg_add_input(emg_graph *g, const emo_meta *m) {
    if (!g) return em_seterr(EM_ERR_ARG, "emg_add_input: graph is NULL"), -1;
    if (!meta_ok("emg_add_input", m)) return -1;
    if (!GROW(g, vals, g->n_vals + 1) || !GROW(g, inputs, g->n_inputs + 1)) return -1;
    int v = push_value(g, EMG_INPUT, m, -1, -1, g->n_inputs);
    g->inputs[g->n_inputs++] = v;
    return v;
}

int emg_add_const(emg_graph *g, em_tensor_t *t) {
    if (!g) return em_seterr(EM_ERR_ARG, "emg_add_const: graph is NULL"), -1;
    if (!emt_check(t, "emg_add_const", "t")) return -1;
    if (!t->storage) return em_seterr(EM_ERR_ARG, "emg_add_const: the tensor has no data (a symbolic tensor?)"), -1;
    if (!GROW(g, vals, g->n_vals + 1) || !GROW(g, consts, g->n_consts + 1)) return -1;
    emo_meta m;
    emo_meta_of(t, &m);
    int v = push_value(g, EMG_CONST, &m, -1, -1, g->n_consts);
    g->consts[g->n_consts++] = em_retain(t);
    return v;
}

int emg_add_node(emg_graph *g, emo_op op, const emo_attrs *a, const int *in, int n_in) {
    if (!g) return em_seterr(EM_ERR_ARG, "emg_add_node: graph is NULL"), -1;
    if ((unsigned)op >= EMO_NUM_OPS) return em_seterr(EM_ERR_ARG, "emg_add_node: unknown op %d", (int)op), -1;
    const emo_def *d = &emo_table[op];
    emo_attrs zero = emo_attrs0();
    if (!a) a = &zero;
    if ((d->n_in >= 0 && n_in != d->n_in) || (d->n_in < 0 && (n_in < 1 || n_in > EMG_MAX_IN)))
        return em_seterr(EM_ERR_ARG, "em_%s: takes %s%d inputs, got %d", d->name, d->n_in < 0 ? "at least " : "",
                         d->n_in < 0 ? 1 : d->n_in, n_in), -1;
    if (n_in > 0 && !in) return em_seterr(EM_ERR_ARG, "emg_add_node: em_%s: input list is NULL", d->name), -1;
    if (a->ni < 0 || a->ni > EMO_MAX_INTS)
        return em_seterr(EM_ERR_ARG, "em_%s: attribute list i has %d entries (0..%d allowed)", d->name, a->ni,
                         EMO_MAX_INTS), -1;
    if ((unsigned)a->dtype >= EM_NUM_DTYPES)
        return em_seterr(EM_ERR_DTYPE, "em_%s: attribute dtype %d is not a dtype", d->name, (int)a->dtype), -1;
    emo_meta small[8], *im = n_in <= 8 ? small : malloc((size_t)n_in * sizeof *im);
    if (!im) return em_seterr(EM_ERR_OOM, "emg_add_node: out of memory"), -1;
    int result = -1;
    for (int i = 0; i < n_in; i++) {
        if (in[i] < 0 || in[i] >= g->n_vals) {
            em_seterr(EM_ERR_ARG, "em_%s: input %d is value %d, which does not exist (the graph has %d)", d->name, i,
                      in[i], g->n_vals);
            goto done;
        }
        im[i] = g->vals[in[i]].meta;
    }
    emo_attrs na = emg_attrs_norm(op, a);
    emo_meta om[EMO_MAX_OUT];
    int n_out = emg_infer(op, &na, im, n_in, om);
    if (n_out < 0) goto done;
    bool ok;
    int *ins = dup_ints(in, n_in, &ok);
    if (!ok) goto done;
    if (!GROW(g, vals, g->n_vals + n_out) || !GROW(g, nodes, g->n_nodes + 1)) {
        free(ins);
        goto done;
    }
    emg_node *n = &g->nodes[g->n_nodes];
    n->op = op;
    n->attrs = na;
    n->n_in = n_in;
    n->n_out = n_out;
    n->in = ins;
    n->out0 = g->n_vals;
    for (int j = 0; j < n_out; j++) push_value(g, EMG_NODE, &om[j], g->n_nodes, j, -1);
    result = n->out0;
    g->n_nodes++;
done:
    if (im != small) free(im);
    return result;
}

em_status emg_set_outputs(emg_graph *g, const int *vals, int n) {
    if (!g) return em_seterr(EM_ERR_ARG, "emg_set_outputs: graph is NULL");
    if (n < 0 || (n > 0 && !vals)) return em_seterr(EM_ERR_ARG, "emg_set_outputs: bad output list (n = %d)", n);
    for (int k = 0; k < n; k++)
        if (vals[k] < 0 || vals[k] >= g->n_vals)
            return em_seterr(EM_ERR_ARG, "emg_set_outputs: output %d is value %d, which does not exist (the graph "
                             "has %d)", k, vals[k], g->n_vals);
    int *outs = malloc(((size_t)n + 1) * sizeof *outs); /* vals may point into g->outputs */
    if (!outs) return em_seterr(EM_ERR_OOM, "emg_set_outputs: out of memory");
    if (n) memcpy(outs, vals, (size_t)n * sizeof *vals);
    free(g->outputs);
    g->outputs = outs;
    g->n_outputs = n;
    g->cap_outputs = n + 1;
    return EM_OK;
}
