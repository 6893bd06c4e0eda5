/* interp.c - the reference interpreter: runs a graph with the eager kernels.
 *
 * needs: a verified graph and realized inputs of the declared types (checked)
 * fills: outputs[0 .. n_outputs-1], new references owned by the caller's current scope
 *
 * Each node is one emo_call on the tensors of its inputs, in node order, under no-grad and
 * inside a scope of its own, so every intermediate is released at the end and only the outputs
 * survive (retained across the scope's end, then handed to the enclosing scope). It is the
 * oracle for the passes (a graph gives the same outputs before and after each of them) and lets
 * capture replay a graph before code generation exists. It must not run while a tracer is
 * installed on the thread: emo_call would record nodes instead of computing.
 */
#include "graph.h"

#include <stdio.h>

static em_status check_inputs(const emg_graph *g, em_tensor_t *const *inputs, int n_inputs) {
    if (n_inputs != g->n_inputs)
        return em_seterr(EM_ERR_ARG, "emg_run: the graph takes %d inputs, got %d", g->n_inputs, n_inputs);
    for (int k = 0; k < n_inputs; k++) {
        char what[32];
        snprintf(what, sizeof what, "input %d", k);
        if (!emt_check(inputs[k], "emg_run", what)) return em_last_status();
        if (!inputs[k]->storage) return em_seterr(EM_ERR_ARG, "emg_run: input %d has no data (a symbolic tensor?)", k);
        emo_meta m;
        emo_meta_of(inputs[k], &m);
        const emo_meta *want = &g->vals[g->inputs[k]].meta;
        if (!emg_meta_equal(&m, want)) {
            char b1[EMG_TYPE_BUF], b2[EMG_TYPE_BUF];
            return em_seterr(EM_ERR_SHAPE, "emg_run: input %d is %s but the graph declares %s", k, emg_type_str(b1, &m),
                             emg_type_str(b2, want));
        }
    }
    return EM_OK;
}

/* runs every node; t[v] gets each value's tensor (borrowed from the inputs, the constants or the
   open scope) */
static em_status run_nodes(const emg_graph *g, em_tensor_t **t) {
    em_tensor_t *small[8];
    for (int k = 0; k < g->n_nodes; k++) {
        const emg_node *n = &g->nodes[k];
        em_tensor_t **in = n->n_in <= 8 ? small : malloc((size_t)n->n_in * sizeof *in);
        if (!in) return em_seterr(EM_ERR_OOM, "emg_run: out of memory");
        for (int i = 0; i < n->n_in; i++) in[i] = t[n->in[i]];
        int got = emo_call(n->op, in, n->n_in, &n->attrs, t + n->out0, n->n_out);
        if (in != small) free(in);
        if (got < 0) {
            char msg[900];
            snprintf(msg, sizeof msg, "%s", em_last_error());
            return em_seterr(em_last_status(), "emg_run: node %d (%s): %s", k, emo_table[n->op].name, msg);
        }
        for (int j = 0; j < n->n_out; j++) {
            emo_meta m;
            emo_meta_of(t[n->out0 + j], &m);
            if (got != n->n_out || !emg_meta_equal(&m, &g->vals[n->out0 + j].meta))
                return em_seterr(EM_ERR_STATE, "emg_run: node %d (%s): output %d does not have its declared type "
                                 "(run emg_verify)", k, emo_table[n->op].name, j);
        }
    }
    return EM_OK;
}

em_status emg_run(const emg_graph *g, em_tensor_t *const *inputs, int n_inputs, em_tensor_t **outputs) {
    if (!g) return em_seterr(EM_ERR_ARG, "emg_run: graph is NULL");
    if (g->n_outputs > 0 && !outputs) return em_seterr(EM_ERR_ARG, "emg_run: outputs is NULL");
    if (n_inputs > 0 && !inputs) return em_seterr(EM_ERR_ARG, "emg_run: inputs is NULL");
    em_status st = check_inputs(g, inputs, n_inputs);
    if (st != EM_OK) return st;
    em_tensor_t **t = calloc((size_t)g->n_vals + 1, sizeof *t);
    if (!t) return em_seterr(EM_ERR_OOM, "emg_run: out of memory");
    for (int k = 0; k < g->n_inputs; k++) t[g->inputs[k]] = inputs[k];
    for (int v = 0; v < g->n_vals; v++)
        if (g->vals[v].kind == EMG_CONST) t[v] = g->consts[g->vals[v].index];
    em_scope_t *s = em_scope_begin();
    if (!s) {
        free(t);
        return em_last_status();
    }
    em_no_grad_begin();
    st = run_nodes(g, t);
    em_no_grad_end();
    if (st == EM_OK)
        for (int k = 0; k < g->n_outputs; k++) outputs[k] = em_retain(t[g->outputs[k]]);
    em_scope_end(s);
    if (st == EM_OK)
        for (int k = 0; k < g->n_outputs; k++) emt_own(outputs[k]);
    free(t);
    return st;
}
