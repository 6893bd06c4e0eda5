/* simplify.c - algebraic simplification: local rewrites that keep every value's metadata.
 *
 * needs: a verified graph
 * fills: uses of a node that computes one of its inputs unchanged point at that input; nodes that
 *        read a redundant view read through it. Dead nodes are left for emg_dce. Returns the
 *        number of rewrites.
 *
 * Rewrites (x a value; "1" and "0" a constant or a full node whose every element is exactly 1
 * or 0 after the cast to its dtype). A node is replaced by x only when x has exactly the node's
 * output dtype and shape, so a broadcasting or promoting constant never disappears:
 *     x * 1, 1 * x, x / 1, x + 0, 0 + x, x - 0          -> x   (x + 0 turns -0.0 into +0.0; the
 *                                                             rewrite keeps -0.0, equal in value)
 *     reshape, expand, slice, cast, repeat, 1-input cat  -> x when the output's type is x's
 *     permute by the identity, pad by zeros               -> x
 *     neg(neg(x))                                         -> x
 *     copy(x) where x is a fresh non-view node output     -> x (a graph is functional: a copy
 *                                                             only matters for aliasing, and a
 *                                                             fresh buffer aliases nothing)
 * and in place (the node stays, reading an earlier value):
 *     reshape(reshape(x, a), b) -> reshape(x, b);  expand(expand(x, a), b) -> expand(x, b)
 *     permute(permute(x, p), q) -> permute(x, p[q])
 * Each node is rewritten until nothing applies, in one forward sweep, so chains collapse.
 *
 *     %1: f32[2, 6] = reshape(%0) i=[2, 6]                %1: f32[2, 6] = reshape(%0) i=[2, 6]
 *     %2: f32[3, 4] = reshape(%1) i=[3, 4]      ==>       %2: f32[3, 4] = reshape(%0) i=[3, 4]
 *     %3: f32[3, 4] = mul(%2, %c1)                         return (%2)
 *     return (%3)                   (%0: f32[3, 4]; %c1 a constant f32[] holding 1)
 */
#include "graph.h"

#define CONST_SCAN_MAX 65536

/* every element of v is exactly `want` (v a small constant or a full node) */
static bool is_value(const emg_graph *g, int v, double want) {
    const emg_value *x = &g->vals[v];
    if (x->kind == EMG_NODE && g->nodes[x->node].op == EMO_full) {
        char one[8];
        emt_store(one, x->meta.dtype, g->nodes[x->node].attrs.f[0]);
        return emt_load(one, x->meta.dtype) == want;
    }
    if (x->kind != EMG_CONST) return false;
    int64_t n = emg_numel(&x->meta);
    if (n < 0 || n > CONST_SCAN_MAX) return false;
    em_tensor_t *d = emt_contiguous_copy(g->consts[x->index], EM_F64);
    if (!d) {
        em_clear_error();
        return false;
    }
    const double *p = (const double *)(const void *)emt_data(d);
    bool all = true;
    for (int64_t k = 0; k < n && all; k++) all = p[k] == want;
    em_release(d);
    return all;
}

static bool same_type(const emg_graph *g, int v, const emo_meta *m) { return emg_meta_equal(&g->vals[v].meta, m); }

/* the node defining v when it is op, else NULL */
static const emg_node *def_by(const emg_graph *g, int v, emo_op op) {
    const emg_value *x = &g->vals[v];
    return x->kind == EMG_NODE && g->nodes[x->node].op == op ? &g->nodes[x->node] : NULL;
}

/* x op c == x or c op x == x for the neutral constant c of a binary op */
static int neutral(const emg_graph *g, const emg_node *n, double c, bool both_sides) {
    const emo_meta *om = &g->vals[n->out0].meta;
    if (same_type(g, n->in[0], om) && is_value(g, n->in[1], c)) return n->in[0];
    if (both_sides && same_type(g, n->in[1], om) && is_value(g, n->in[0], c)) return n->in[1];
    return -1;
}

/* the value node n's (single) output equals, or -1 */
static int identity_of(const emg_graph *g, const emg_node *n) {
    if (n->n_out != 1) return -1;
    const emo_meta *om = &g->vals[n->out0].meta;
    const emo_attrs *a = &n->attrs;
    int x = n->n_in > 0 ? n->in[0] : -1;
    switch (n->op) {
    case EMO_mul: return neutral(g, n, 1.0, true);
    case EMO_add: return neutral(g, n, 0.0, true);
    case EMO_sub: return neutral(g, n, 0.0, false);
    case EMO_div: return neutral(g, n, 1.0, false);
    case EMO_reshape:
    case EMO_expand:
    case EMO_slice:
    case EMO_cast:
    case EMO_repeat: return same_type(g, x, om) ? x : -1;
    case EMO_cat: return n->n_in == 1 && same_type(g, x, om) ? x : -1;
    case EMO_permute:
        for (int d = 0; d < a->ni; d++)
            if (a->i[d] != d) return -1;
        return x;
    case EMO_pad:
        for (int d = 0; d < a->ni; d++)
            if (a->i[d] != 0) return -1;
        return same_type(g, x, om) ? x : -1;
    case EMO_neg: {
        const emg_node *inner = def_by(g, x, EMO_neg);
        return inner && same_type(g, inner->in[0], om) ? inner->in[0] : -1;
    }
    case EMO_copy: {
        const emg_value *v = &g->vals[x];
        bool fresh = v->kind == EMG_NODE && !(emo_table[g->nodes[v->node].op].flags & EMO_VIEW);
        return fresh && same_type(g, x, om) ? x : -1;
    }
    default: return -1;
    }
}

/* rewrites that keep the node but let it read further up; true when something changed */
static bool rewrite_in_place(const emg_graph *g, emg_node *n) {
    if (n->op == EMO_reshape || n->op == EMO_expand) {
        const emg_node *inner = def_by(g, n->in[0], n->op);
        if (!inner) return false;
        n->in[0] = inner->in[0]; /* same element order (reshape) / broadcast source (expand) */
        return true;
    }
    if (n->op == EMO_permute) {
        const emg_node *inner = def_by(g, n->in[0], EMO_permute);
        if (!inner || inner->attrs.ni != n->attrs.ni) return false;
        int64_t p[EMO_MAX_INTS];
        for (int d = 0; d < n->attrs.ni; d++) p[d] = inner->attrs.i[n->attrs.i[d]];
        for (int d = 0; d < n->attrs.ni; d++) n->attrs.i[d] = p[d];
        n->in[0] = inner->in[0];
        return true;
    }
    return false;
}

int emg_simplify(emg_graph *g) {
    if (!g) return em_seterr(EM_ERR_ARG, "emg_simplify: graph is NULL"), -1;
    int *repl = malloc(((size_t)g->n_vals + 1) * sizeof *repl);
    if (!repl) return em_seterr(EM_ERR_OOM, "emg_simplify: out of memory"), -1;
    for (int v = 0; v < g->n_vals; v++) repl[v] = v;
    int changes = 0;
    for (int k = 0; k < g->n_nodes; k++) {
        emg_node *n = &g->nodes[k];
        for (int i = 0; i < n->n_in; i++) n->in[i] = repl[n->in[i]];
        for (int round = 0; round < 8; round++) { /* each in-place rewrite moves up a chain */
            int x = identity_of(g, n);
            if (x >= 0) {
                repl[n->out0] = x;
                changes++;
                break;
            }
            if (!rewrite_in_place(g, n)) break;
            changes++;
        }
    }
    for (int k = 0; k < g->n_outputs; k++) g->outputs[k] = repl[g->outputs[k]];
    free(repl);
    return changes;
}
