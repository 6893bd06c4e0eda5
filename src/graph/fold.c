/* fold.c - constant folding.
 *
 * needs: a verified graph
 * fills: uses of each foldable node's outputs point at new constants holding their values; the
 *        folded nodes are left dead for emg_dce. Returns how many nodes were folded.
 *
 * A node folds when every input is a constant (creation ops such as full and arange have none,
 * so they fold too), its op is not EMO_RANDOM (random nodes stay in the graph, where the
 * compiled program's Philox reproduces them), and each output has at most FOLD_MAX_NUMEL
 * elements, so folding never bloats a graph with big tensors. The value comes from the eager
 * kernel itself (emo_call under no-grad, inside a scope), which is the reference the compiled
 * program is checked against anyway; results are stored contiguous. A node whose kernel fails
 * on its data (an index out of range) is left alone, so the error shows when the graph runs.
 * One forward sweep folds chains: a node whose inputs were just folded sees constants.
 *
 *     %1: f32[] = full() f=[2, 0, 0, 0] dtype=f32          %2: f32[4] = const(#1)   (2 * #0)
 *     %2: f32[4] = mul(%0, %1)               ==>           ...
 *     (with %0 = const(#0))
 */
#include "graph.h"

#define FOLD_MAX_NUMEL 65536

static bool foldable(const emg_graph *g, const emg_node *n) {
    if (emo_table[n->op].flags & EMO_RANDOM) return false;
    for (int i = 0; i < n->n_in; i++)
        if (g->vals[n->in[i]].kind != EMG_CONST) return false;
    for (int j = 0; j < n->n_out; j++) {
        int64_t numel = emg_numel(&g->vals[n->out0 + j].meta);
        if (numel < 0 || numel > FOLD_MAX_NUMEL) return false;
    }
    return true;
}

/* runs node k eagerly on its constant inputs; out[] gets owned contiguous results (n_out of
   them) or all NULL when the kernel refused */
static void evaluate(const emg_graph *g, const emg_node *n, em_tensor_t **out) {
    em_tensor_t *small[8], **in = n->n_in <= 8 ? small : malloc((size_t)n->n_in * sizeof *in);
    for (int j = 0; j < n->n_out; j++) out[j] = NULL;
    if (!in) return;
    for (int i = 0; i < n->n_in; i++) in[i] = g->consts[g->vals[n->in[i]].index];
    em_scope_t *s = em_scope_begin();
    if (s) {
        em_no_grad_begin();
        em_tensor_t *res[EMO_MAX_OUT];
        int got = emo_call(n->op, in, n->n_in, &n->attrs, res, EMO_MAX_OUT);
        em_no_grad_end();
        if (got == n->n_out) {
            for (int j = 0; j < n->n_out; j++) {
                em_tensor_t *c = em_contiguous(res[j]);
                out[j] = c ? em_retain(c) : NULL;
            }
        }
        em_scope_end(s);
    }
    if (in != small) free(in);
    bool all = true;
    for (int j = 0; j < n->n_out; j++) all = all && out[j];
    if (!all)
        for (int j = 0; j < n->n_out; j++) {
            em_release(out[j]);
            out[j] = NULL;
        }
}

int emg_fold_constants(emg_graph *g) {
    if (!g) return em_seterr(EM_ERR_ARG, "emg_fold_constants: graph is NULL"), -1;
    int cap = g->n_vals + 16;
    int *repl = malloc((size_t)cap * sizeof *repl);
    if (!repl) return em_seterr(EM_ERR_OOM, "emg_fold_constants: out of memory"), -1;
    for (int v = 0; v < cap; v++) repl[v] = v;
    int changes = 0;
    for (int k = 0; k < g->n_nodes && changes >= 0; k++) {
        emg_node *n = &g->nodes[k];
        for (int i = 0; i < n->n_in; i++) n->in[i] = repl[n->in[i]];
        if (!foldable(g, n)) continue;
        em_tensor_t *out[EMO_MAX_OUT];
        evaluate(g, n, out);
        if (!out[0] && n->n_out > 0) {
            em_clear_error();
            continue;
        }
        if (g->n_vals + n->n_out > cap) {
            int ncap = 2 * (g->n_vals + n->n_out);
            int *q = realloc(repl, (size_t)ncap * sizeof *q);
            if (!q) {
                for (int j = 0; j < n->n_out; j++) em_release(out[j]);
                em_seterr(EM_ERR_OOM, "emg_fold_constants: out of memory");
                changes = -1;
                break;
            }
            repl = q;
            for (int v = cap; v < ncap; v++) repl[v] = v;
            cap = ncap;
        }
        for (int j = 0; j < n->n_out && changes >= 0; j++) {
            int c = emg_add_const(g, out[j]);
            if (c < 0) changes = -1;
            else repl[n->out0 + j] = c;
        }
        for (int j = 0; j < n->n_out; j++) em_release(out[j]);
        if (changes >= 0) changes++;
    }
    for (int k = 0; k < g->n_outputs; k++) g->outputs[k] = repl[g->outputs[k]];
    free(repl);
    return changes;
}
