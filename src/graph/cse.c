/* cse.c - common-subexpression elimination.
 *
 * needs: a verified graph
 * fills: uses of a node that repeats an earlier one (same op, same attributes, same inputs)
 *        point at the earlier node's outputs; likewise for small constants with the same type
 *        and bytes. The repeats are left dead for emg_dce. Returns how many were merged.
 *
 * One forward sweep with a hash table keyed by (op, normalised attributes, inputs): inputs are
 * rewritten through the replacement map before the lookup, so chains of repeats collapse in one
 * pass. Attributes compare with memcmp on emg_attrs_norm copies (unused i entries, seed/offset of
 * non-random ops and padding zeroed). Every node is a pure function of its inputs and
 * attributes; a random op is too, its Philox key and counter being attributes, so two random
 * nodes with the same seed and offset draw the same numbers and merging them is exact.
 *
 *     %1: f32[4] = exp(%0)                     %1: f32[4] = exp(%0)
 *     %2: f32[4] = exp(%0)          ==>        %2: f32[4] = exp(%0)     (dead)
 *     %3: f32[4] = add(%1, %2)                 %3: f32[4] = add(%1, %1)
 */
#include "graph.h"

static uint64_t mix(uint64_t h, const void *p, size_t n) { /* FNV-1a */
    const unsigned char *c = p;
    for (size_t k = 0; k < n; k++) h = (h ^ c[k]) * 0x100000001b3ull;
    return h;
}

static uint64_t node_hash(const emg_node *n, const emo_attrs *na) {
    uint64_t h = mix(0xcbf29ce484222325ull, &n->op, sizeof n->op);
    h = mix(h, na, sizeof *na);
    h = mix(h, &n->n_in, sizeof n->n_in);
    return n->n_in ? mix(h, n->in, (size_t)n->n_in * sizeof *n->in) : h;
}

static bool node_equal(const emg_node *a, const emg_node *b) {
    if (a->op != b->op || a->n_in != b->n_in || a->n_out != b->n_out) return false;
    if (a->n_in && memcmp(a->in, b->in, (size_t)a->n_in * sizeof *a->in) != 0) return false;
    emo_attrs x = emg_attrs_norm(a->op, &a->attrs), y = emg_attrs_norm(b->op, &b->attrs);
    return memcmp(&x, &y, sizeof x) == 0;
}

/* constants of at most this many elements are compared by value */
#define CONST_CMP_MAX 65536

/* merges equal small constants: repl[v] = the first value holding the same type and bytes */
static int merge_consts(const emg_graph *g, int *repl) {
    int changes = 0, nc = g->n_consts;
    int *cval = malloc(((size_t)nc + 1) * sizeof *cval);
    em_tensor_t **dense = calloc((size_t)nc + 1, sizeof *dense);
    uint64_t *hash = calloc((size_t)nc + 1, sizeof *hash);
    if (!cval || !dense || !hash) {
        free(cval);
        free(dense);
        free(hash);
        return em_seterr(EM_ERR_OOM, "emg_cse: out of memory"), -1;
    }
    for (int v = 0; v < g->n_vals; v++)
        if (g->vals[v].kind == EMG_CONST) cval[g->vals[v].index] = v;
    for (int k = 0; k < nc && changes >= 0; k++) {
        const emo_meta *m = &g->vals[cval[k]].meta;
        int64_t numel = emg_numel(m);
        if (numel < 0 || numel > CONST_CMP_MAX) continue;
        dense[k] = emt_as_contiguous(g->consts[k], m->dtype);
        if (!dense[k]) {
            changes = -1;
            break;
        }
        size_t nbytes = (size_t)numel * em_dtype_size(m->dtype);
        hash[k] = mix(0xcbf29ce484222325ull, emt_data(dense[k]), nbytes);
        for (int e = 0; e < k; e++) {
            if (!dense[e] || hash[e] != hash[k] || !emg_meta_equal(&g->vals[cval[e]].meta, m)) continue;
            if (memcmp(emt_data(dense[e]), emt_data(dense[k]), nbytes) != 0) continue;
            repl[cval[k]] = cval[e];
            changes++;
            em_release(dense[k]); /* k is merged away: later constants compare with e */
            dense[k] = NULL;
            break;
        }
    }
    for (int k = 0; k < nc; k++) em_release(dense[k]);
    free(cval);
    free(dense);
    free(hash);
    return changes;
}

int emg_cse(emg_graph *g) {
    if (!g) return em_seterr(EM_ERR_ARG, "emg_cse: graph is NULL"), -1;
    int cap = 16;
    while (cap < 2 * g->n_nodes) cap *= 2;
    int *repl = malloc(((size_t)g->n_vals + 1) * sizeof *repl), *table = malloc((size_t)cap * sizeof *table);
    if (!repl || !table) {
        free(repl);
        free(table);
        return em_seterr(EM_ERR_OOM, "emg_cse: out of memory"), -1;
    }
    for (int v = 0; v < g->n_vals; v++) repl[v] = v;
    for (int s = 0; s < cap; s++) table[s] = -1;
    int changes = merge_consts(g, repl);
    for (int k = 0; k < g->n_nodes && changes >= 0; k++) {
        emg_node *n = &g->nodes[k];
        for (int i = 0; i < n->n_in; i++) n->in[i] = repl[n->in[i]];
        emo_attrs na = emg_attrs_norm(n->op, &n->attrs);
        size_t s = (size_t)node_hash(n, &na) & (size_t)(cap - 1);
        while (table[s] >= 0 && !node_equal(&g->nodes[table[s]], n)) s = (s + 1) & (size_t)(cap - 1);
        if (table[s] < 0) {
            table[s] = k;
            continue;
        }
        const emg_node *first = &g->nodes[table[s]];
        for (int j = 0; j < n->n_out; j++) repl[n->out0 + j] = first->out0 + j;
        changes++;
    }
    if (changes > 0)
        for (int k = 0; k < g->n_outputs; k++) g->outputs[k] = repl[g->outputs[k]];
    free(repl);
    free(table);
    return changes;
}
