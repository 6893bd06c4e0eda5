/* fuzz_graph.c - the graph text parser: parse -> verify -> print -> re-parse must be stable, and
 * the cleanup passes must keep small parsed graphs verifiable. Every input must either parse or
 * fail with an error; nothing may crash, leak or read out of bounds. */
#include "graph/graph.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static int small(const emg_graph *g) {
    for (int v = 0; v < g->n_vals; v++) { int64_t n = emg_numel(&g->vals[v].meta); if (n < 0 || n > 4096) return 0; }
    return g->n_nodes < 200;
}
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *t = malloc(size + 1);
    memcpy(t, data, size);
    t[size] = 0;
    em_scope_t *s = em_scope_begin();
    emg_graph *g = emg_parse(t);
    if (g) {
        if (emg_verify(g) != EM_OK) { fprintf(stderr, "verify: %s\n", em_last_error()); abort(); }
        char *p = emg_print(g);
        emg_graph *h = emg_parse(p);
        if (!h) { fprintf(stderr, "reparse: %s\n%s", em_last_error(), p); abort(); }
        char *p2 = emg_print(h);
        if (strcmp(p, p2)) { fprintf(stderr, "unstable print\n%s\n%s", p, p2); abort(); }
        if (small(g)) {
            int (*passes[])(emg_graph *) = {emg_simplify, emg_cse, emg_dce, emg_fold_constants, emg_dce};
            for (int k = 0; k < 5; k++) {
                if (passes[k](h) < 0) { fprintf(stderr, "pass %d: %s\n", k, em_last_error()); abort(); }
                if (emg_verify(h) != EM_OK) { fprintf(stderr, "pass %d broke: %s\n%s", k, em_last_error(), p); abort(); }
            }
        }
        if (small(g) && g->n_inputs <= 16 && g->n_outputs <= 64) {
            em_tensor_t *in[16], *out[64];
            for (int k = 0; k < g->n_inputs; k++) { const emo_meta *m = &g->vals[g->inputs[k]].meta; in[k] = em_zeros(m->shape, m->ndim, m->dtype); }
            em_status a = emg_run(g, in, g->n_inputs, out), b = emg_run(h, in, g->n_inputs, out);
            if ((a == EM_OK) != (b == EM_OK) && a == EM_OK) { fprintf(stderr, "passes changed runnability: %s\n%s", em_last_error(), p); abort(); }
        }
        free(p); free(p2);
        emg_free(h);
        emg_free(g);
    }
    em_scope_end(s);
    free(t);
    return 0;
}
