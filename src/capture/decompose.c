/* decompose.c - emg_decompose: composite ops become the primitives their decompositions use.
 *
 * needs: a verified graph. fills: an equivalent graph whose nodes are all EMO_PRIM ops (or ops
 * without a decomposition).
 * The rewrite re-traces: each composite node's decomposition function (the same one eager mode
 * and the op test use) runs on symbolic tensors standing for the node's inputs, under a tracer
 * that appends to a new graph; other nodes are copied. Decompositions may use composite ops
 * themselves, so the pass repeats until nothing changes (a few rounds at most).
 */
#include "capture.h"

static bool composite(const emg_node *n) {
    const emo_def *d = &emo_table[n->op];
    return d->decomp && !(d->flags & EMO_PRIM);
}

/* one round: returns the number of nodes decomposed, -1 on error; *out gets the new graph */
static int round_once(const emg_graph *g, emg_graph **out) {
    emg_graph *ng = emg_new();
    int *map = calloc((size_t)g->n_vals + 1, sizeof *map);
    if (!ng || !map) {
        emg_free(ng);
        free(map);
        em_seterr(EM_ERR_OOM, "emg_decompose: out of memory");
        return -1;
    }
    int changed = 0;
    em_status st = EM_OK;
    for (int i = 0; i < g->n_inputs && st == EM_OK; i++)
        if ((map[g->inputs[i]] = emg_add_input(ng, &g->vals[g->inputs[i]].meta)) < 0) st = em_last_status();
    for (int v = 0; v < g->n_vals && st == EM_OK; v++)
        if (g->vals[v].kind == EMG_CONST && (map[v] = emg_add_const(ng, g->consts[g->vals[v].index])) < 0)
            st = em_last_status();
    em_no_grad_begin();
    for (int k = 0; k < g->n_nodes && st == EM_OK; k++) {
        const emg_node *n = &g->nodes[k];
        int small[16], *in = n->n_in <= 16 ? small : malloc(sizeof(int) * (size_t)n->n_in);
        if (!in) { st = em_seterr(EM_ERR_OOM, "emg_decompose: out of memory"); break; }
        for (int i = 0; i < n->n_in; i++) in[i] = map[n->in[i]];
        if (!composite(n)) {
            int v0 = emg_add_node(ng, n->op, &n->attrs, in, n->n_in);
            if (v0 < 0) st = em_last_status();
            for (int j = 0; j < n->n_out && st == EM_OK; j++) map[n->out0 + j] = v0 + j;
        } else {
            em_scope_t *s = em_scope_begin();
            emcap_tracer *tr = emcap_begin_on(ng);
            em_tensor_t *sin_small[16], **sin = n->n_in <= 16 ? sin_small : malloc(sizeof(*sin) * (size_t)n->n_in);
            em_tensor_t *outs[EMO_MAX_OUT] = {0};
            if (!tr || !sin) st = em_last_status();
            for (int i = 0; st == EM_OK && i < n->n_in; i++)
                if (!(sin[i] = emcap_symbolic(tr, in[i]))) st = em_last_status();
            if (st == EM_OK) st = emo_table[n->op].decomp(&n->attrs, sin, n->n_in, outs, n->n_out);
            for (int j = 0; st == EM_OK && j < n->n_out; j++) {
                if (!outs[j] || !emt_is_symbolic(outs[j]) || outs[j]->sym != tr) {
                    st = em_seterr(EM_ERR_COMPILE, "emg_decompose: %s's decomposition gave output %d that is "
                                   "not a graph value", emo_table[n->op].name, j);
                } else {
                    map[n->out0 + j] = outs[j]->sym_id;
                }
            }
            emcap_end(tr);
            if (sin != sin_small) free(sin);
            em_scope_end(s);
            changed++;
        }
        if (in != small) free(in);
    }
    em_no_grad_end();
    if (st == EM_OK) {
        int *outs = malloc(sizeof(int) * ((size_t)g->n_outputs + 1));
        if (!outs) st = em_seterr(EM_ERR_OOM, "emg_decompose: out of memory");
        for (int i = 0; st == EM_OK && i < g->n_outputs; i++) outs[i] = map[g->outputs[i]];
        if (st == EM_OK) st = emg_set_outputs(ng, outs, g->n_outputs);
        free(outs);
    }
    free(map);
    if (st != EM_OK) {
        emg_free(ng);
        return -1;
    }
    *out = ng;
    return changed;
}

int emg_decompose(emg_graph *g) {
    int total = 0;
    for (int round = 0; round < 8; round++) {
        bool any = false;
        for (int k = 0; k < g->n_nodes && !any; k++) any = composite(&g->nodes[k]);
        if (!any) return total;
        emg_graph *ng = NULL;
        int n = round_once(g, &ng);
        if (n < 0) return -1;
        total += n;
        /* swap contents so the caller's pointer now holds the rewritten graph */
        emg_graph tmp = *g;
        *g = *ng;
        *ng = tmp;
        emg_free(ng);
    }
    em_seterr(EM_ERR_COMPILE, "emg_decompose: decompositions did not reach primitives after 8 rounds");
    return -1;
}
