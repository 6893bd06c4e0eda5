/* verify.c - the graph verifier, run between passes (QBE's habit: a pass may assume a verified
 * graph and must leave one).
 *
 * needs: any graph (it trusts nothing: every id is range-checked before it is followed)
 * fills:  nothing; EM_OK, or EM_ERR_COMPILE with a message naming the node (index and op) or
 *         value and what is wrong
 *
 * Checked, in order: the input and constant tables point at values of the right kind and back;
 * every node-output value points at a node that lists it; each node's outputs are consecutive,
 * its arity matches the op table, it reads only existing values defined before it (inputs,
 * constants, outputs of earlier nodes), its attributes are in range, and its output metadata is
 * exactly what the op's infer gives now; the output list names existing values.
 */
#include "graph.h"

#include <stdio.h>

#define FAIL(...) return em_seterr(EM_ERR_COMPILE, "emg_verify: " __VA_ARGS__)

static em_status check_tables(const emg_graph *g) {
    if (g->n_vals < 0 || g->n_nodes < 0 || g->n_inputs < 0 || g->n_consts < 0 || g->n_outputs < 0)
        FAIL("negative table size");
    for (int k = 0; k < g->n_inputs; k++) {
        int v = g->inputs[k];
        if (v < 0 || v >= g->n_vals) FAIL("input %d is value %d, out of range (0..%d)", k, v, g->n_vals - 1);
        if (g->vals[v].kind != EMG_INPUT || g->vals[v].index != k)
            FAIL("input %d is %%%d, which is not marked as input %d", k, v, k);
    }
    for (int k = 0; k < g->n_consts; k++)
        if (!g->consts[k] || !emt_valid(g->consts[k]) || !g->consts[k]->storage) FAIL("constant #%d is not a realized tensor", k);
    int *const_seen = calloc((size_t)g->n_consts + 1, sizeof *const_seen);
    if (!const_seen) return em_seterr(EM_ERR_OOM, "emg_verify: out of memory");
    em_status st = EM_OK;
    for (int v = 0; v < g->n_vals && st == EM_OK; v++) {
        const emg_value *x = &g->vals[v];
        const emo_meta *m = &x->meta;
        if ((unsigned)m->dtype >= EM_NUM_DTYPES || m->ndim < 0 || m->ndim > EM_MAX_DIMS || emg_numel(m) < 0) {
            st = em_seterr(EM_ERR_COMPILE, "emg_verify: value %%%d has bad metadata (dtype %d, %d dims)", v,
                           (int)m->dtype, m->ndim);
        } else if (x->kind == EMG_INPUT) {
            if (x->index < 0 || x->index >= g->n_inputs || g->inputs[x->index] != v)
                st = em_seterr(EM_ERR_COMPILE, "emg_verify: value %%%d claims to be input %d, which is not it", v, x->index);
        } else if (x->kind == EMG_CONST) {
            if (x->index < 0 || x->index >= g->n_consts) {
                st = em_seterr(EM_ERR_COMPILE, "emg_verify: value %%%d names constant #%d, out of range", v, x->index);
            } else if (const_seen[x->index]++) {
                st = em_seterr(EM_ERR_COMPILE, "emg_verify: constant #%d is named by two values", x->index);
            } else {
                emo_meta cm;
                emo_meta_of(g->consts[x->index], &cm);
                if (!emg_meta_equal(&cm, m))
                    st = em_seterr(EM_ERR_COMPILE, "emg_verify: value %%%d's type differs from constant #%d's tensor",
                                   v, x->index);
            }
        } else if (x->kind == EMG_NODE) {
            const emg_node *n = x->node >= 0 && x->node < g->n_nodes ? &g->nodes[x->node] : NULL;
            if (!n || x->out_idx < 0 || x->out_idx >= n->n_out || n->out0 + x->out_idx != v)
                st = em_seterr(EM_ERR_COMPILE, "emg_verify: value %%%d claims to be output %d of node %d, which does "
                               "not list it", v, x->out_idx, x->node);
        } else {
            st = em_seterr(EM_ERR_COMPILE, "emg_verify: value %%%d has unknown kind %d", v, (int)x->kind);
        }
    }
    for (int k = 0; k < g->n_consts && st == EM_OK; k++)
        if (!const_seen[k]) st = em_seterr(EM_ERR_COMPILE, "emg_verify: constant #%d has no value", k);
    free(const_seen);
    return st;
}

static em_status check_node(const emg_graph *g, int k) {
    const emg_node *n = &g->nodes[k];
    if ((unsigned)n->op >= EMO_NUM_OPS) FAIL("node %d: unknown op %d", k, (int)n->op);
    const emo_def *d = &emo_table[n->op];
    if (n->n_in < 0 || (d->n_in >= 0 && n->n_in != d->n_in) || (d->n_in < 0 && (n->n_in < 1 || n->n_in > EMG_MAX_IN)))
        FAIL("node %d (%s): has %d inputs, the op takes %s%d", k, d->name, n->n_in, d->n_in < 0 ? "at least " : "",
             d->n_in < 0 ? 1 : d->n_in);
    if (n->n_in > 0 && !n->in) FAIL("node %d (%s): input list is NULL", k, d->name);
    if (n->n_out < 0 || n->n_out > EMO_MAX_OUT || n->out0 < 0 || n->out0 > g->n_vals - n->n_out)
        FAIL("node %d (%s): outputs %%%d .. +%d are out of range", k, d->name, n->out0, n->n_out);
    for (int j = 0; j < n->n_out; j++) {
        const emg_value *x = &g->vals[n->out0 + j];
        if (x->kind != EMG_NODE || x->node != k || x->out_idx != j)
            FAIL("node %d (%s): output %d (%%%d) does not point back at it", k, d->name, j, n->out0 + j);
    }
    if (n->attrs.ni < 0 || n->attrs.ni > EMO_MAX_INTS) FAIL("node %d (%s): attribute ni = %d", k, d->name, n->attrs.ni);
    if ((unsigned)n->attrs.dtype >= EM_NUM_DTYPES) FAIL("node %d (%s): attribute dtype %d", k, d->name, (int)n->attrs.dtype);
    emo_meta small[8], *im = n->n_in <= 8 ? small : malloc((size_t)n->n_in * sizeof *im);
    if (!im) return em_seterr(EM_ERR_OOM, "emg_verify: out of memory");
    em_status st = EM_OK;
    for (int i = 0; i < n->n_in && st == EM_OK; i++) {
        int v = n->in[i];
        if (v < 0 || v >= g->n_vals)
            st = em_seterr(EM_ERR_COMPILE, "emg_verify: node %d (%s): input %d is value %d, out of range (0..%d)", k,
                           d->name, i, v, g->n_vals - 1);
        else if (g->vals[v].kind == EMG_NODE && g->vals[v].node >= k)
            st = em_seterr(EM_ERR_COMPILE, "emg_verify: node %d (%s): input %d is %%%d, %s (node %d)", k, d->name, i, v,
                           g->vals[v].node == k ? "its own output" : "which is defined later", g->vals[v].node);
        else
            im[i] = g->vals[v].meta;
    }
    if (st == EM_OK) {
        emo_meta om[EMO_MAX_OUT];
        int n_out = emg_infer(n->op, &n->attrs, im, n->n_in, om);
        if (n_out < 0) {
            char msg[800];
            snprintf(msg, sizeof msg, "%s", em_last_error());
            st = em_seterr(EM_ERR_COMPILE, "emg_verify: node %d (%s): infer rejects it: %s", k, d->name, msg);
        } else if (n_out != n->n_out) {
            st = em_seterr(EM_ERR_COMPILE, "emg_verify: node %d (%s): has %d outputs, infer gives %d", k, d->name,
                           n->n_out, n_out);
        }
        for (int j = 0; st == EM_OK && j < n_out; j++) {
            if (!emg_meta_equal(&om[j], &g->vals[n->out0 + j].meta)) {
                char b1[EMG_TYPE_BUF], b2[EMG_TYPE_BUF];
                st = em_seterr(EM_ERR_COMPILE, "emg_verify: node %d (%s): output %d (%%%d) is %s but infer gives %s", k,
                               d->name, j, n->out0 + j, emg_type_str(b1, &g->vals[n->out0 + j].meta),
                               emg_type_str(b2, &om[j]));
            }
        }
    }
    if (im != small) free(im);
    return st;
}

em_status emg_verify(const emg_graph *g) {
    if (!g) FAIL("graph is NULL");
    em_status st = check_tables(g);
    for (int k = 0; k < g->n_nodes && st == EM_OK; k++) st = check_node(g, k);
    if (st != EM_OK) return st;
    for (int k = 0; k < g->n_outputs; k++)
        if (g->outputs[k] < 0 || g->outputs[k] >= g->n_vals)
            FAIL("output %d is value %d, out of range (0..%d)", k, g->outputs[k], g->n_vals - 1);
    return EM_OK;
}
