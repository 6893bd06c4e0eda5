/* dce.c - dead-code elimination and canonical renumbering.
 *
 * needs: a verified graph
 * fills: the same graph without nodes and constants that no output depends on (inputs always
 *        stay: they are the calling convention), values renumbered canonically: inputs in input
 *        order, then constants in table order, then node outputs in node order.
 *
 * One backward sweep marks what the outputs read (a node is live when any of its outputs is);
 * then the surviving values, nodes and constants are copied into fresh arrays in canonical order.
 * Every node is pure (random ops carry their Philox key and counter as attributes, mutation is
 * functionalized before graphs get here), so a node nothing reads can always go. The other
 * passes only redirect uses and count on this one to sweep up.
 *
 *     graph(%0: f32[4]) {                      graph(%0: f32[4]) {
 *       %1: f32[4] = exp(%0)                     %1: f32[4] = neg(%0)
 *       %2: f32[4] = neg(%0)          ==>        return (%1)
 *       return (%2)                            }
 *     }
 */
#include "graph.h"

int emg_dce(emg_graph *g) {
    if (!g) return em_seterr(EM_ERR_ARG, "emg_dce: graph is NULL"), -1;
    int nv = g->n_vals, nn = g->n_nodes, nc = g->n_consts;
    bool *live = calloc((size_t)nv + 1, sizeof *live), *node_live = calloc((size_t)nn + 1, sizeof *node_live);
    int *num = malloc(((size_t)nv + 1) * sizeof *num), *const_val = malloc(((size_t)nc + 1) * sizeof *const_val);
    emg_value *vals = malloc(((size_t)nv + 1) * sizeof *vals);
    emg_node *nodes = malloc(((size_t)nn + 1) * sizeof *nodes);
    em_tensor_t **consts = malloc(((size_t)nc + 1) * sizeof *consts);
    int result = -1;
    if (!live || !node_live || !num || !const_val || !vals || !nodes || !consts) {
        em_seterr(EM_ERR_OOM, "emg_dce: out of memory");
        goto done;
    }
    for (int k = 0; k < g->n_outputs; k++) live[g->outputs[k]] = true;
    for (int k = nn - 1; k >= 0; k--) {
        const emg_node *n = &g->nodes[k];
        for (int j = 0; j < n->n_out && !node_live[k]; j++) node_live[k] = live[n->out0 + j];
        for (int i = 0; node_live[k] && i < n->n_in; i++) live[n->in[i]] = true;
    }
    /* canonical numbering of the survivors */
    for (int v = 0; v < nv; v++) num[v] = -1;
    for (int v = 0; v < nv; v++)
        if (g->vals[v].kind == EMG_CONST) const_val[g->vals[v].index] = v;
    int next = 0, n_nodes = 0, n_consts = 0;
    for (int k = 0; k < g->n_inputs; k++) {
        int v = g->inputs[k];
        vals[next] = g->vals[v];
        num[v] = next++;
    }
    for (int k = 0; k < nc; k++) {
        int v = const_val[k];
        if (!live[v]) continue;
        vals[next] = g->vals[v];
        vals[next].index = n_consts;
        consts[n_consts++] = g->consts[k];
        num[v] = next++;
    }
    for (int k = 0; k < nn; k++) {
        if (!node_live[k]) continue;
        emg_node n = g->nodes[k];
        for (int j = 0; j < n.n_out; j++) {
            vals[next] = g->vals[n.out0 + j];
            vals[next].node = n_nodes;
            num[n.out0 + j] = next++;
        }
        n.out0 = num[n.out0];
        for (int i = 0; i < n.n_in; i++) n.in[i] = num[n.in[i]];
        nodes[n_nodes++] = n;
    }
    /* commit: nothing below can fail */
    for (int k = 0; k < nn; k++)
        if (!node_live[k]) free(g->nodes[k].in);
    for (int k = 0; k < nc; k++)
        if (!live[const_val[k]]) em_release(g->consts[k]);
    for (int k = 0; k < g->n_inputs; k++) g->inputs[k] = k;
    for (int k = 0; k < g->n_outputs; k++) g->outputs[k] = num[g->outputs[k]];
    result = (nn - n_nodes) + (nc - n_consts);
    free(g->vals);
    free(g->nodes);
    free(g->consts);
    g->vals = vals;
    g->nodes = nodes;
    g->consts = consts;
    g->n_vals = next;
    g->n_nodes = n_nodes;
    g->cap_nodes = nn + 1;
    g->n_consts = n_consts;
    g->cap_consts = nc + 1;
    g->cap_vals = nv + 1;
    vals = NULL;
    nodes = NULL;
    consts = NULL;
done:
    free(live);
    free(node_live);
    free(num);
    free(const_val);
    free(vals);
    free(nodes);
    free(consts);
    return result;
}
