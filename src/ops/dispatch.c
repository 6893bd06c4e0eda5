/* dispatch.c - the table and the one path every op call takes (eager mode).
 *
 * emo_call checks the handles, runs the op's infer (its argument checker), then either runs
 * the eager kernel into freshly allocated outputs and records an autograd node, or runs the op's
 * decomposition (when the op has no kernel, when a gradient is needed and the op has no backward
 * rule of its own, or when tests force decompositions). Outputs go to the innermost scope.
 * On any failure nothing is leaked and -1 comes back with the message set.
 */
#include "kernels.h"

#include "../autograd/autograd.h"
#include "../capture/capture.h"

#include <stdio.h>

const emo_def emo_table[EMO_NUM_OPS] = {
#define EM_OP(name, nin, nout, flags, infer, kernel, backward, decomp) \
    [EMO_##name] = {#name, nin, nout, flags, infer, kernel, backward, decomp},
#include "ops.def"
#undef EM_OP
};

int emo_lookup(const char *name) {
    for (int i = 0; i < EMO_NUM_OPS; i++)
        if (strcmp(emo_table[i].name, name) == 0) return i;
    return -1;
}

static _Thread_local bool force_decomp;
static _Thread_local const char *current_op = "?";
const char *emo_current_op(void) { return current_op; }
void emo_set_force_decomp(bool on) { force_decomp = on; }
bool emo_force_decomp(void) { return force_decomp; }

void emo_meta_of(const em_tensor_t *t, emo_meta *m) {
    m->dtype = t->dtype;
    m->ndim = t->ndim;
    for (int d = 0; d < t->ndim; d++) m->shape[d] = t->shape[d];
}

static bool meta_matches(const emo_meta *m, const em_tensor_t *t) {
    if (m->dtype != t->dtype || m->ndim != t->ndim) return false;
    for (int d = 0; d < m->ndim; d++)
        if (m->shape[d] != t->shape[d]) return false;
    return true;
}

static void release_all(em_tensor_t **out, int n) {
    for (int j = 0; j < n; j++) {
        em_release(out[j]);
        out[j] = NULL;
    }
}

static int run_decomp(const emo_def *d, const emo_attrs *a, em_tensor_t *const *in, int n_in,
                      const emo_meta *om, em_tensor_t **out, int n_out) {
    em_scope_t *s = em_scope_begin();
    if (!s) return -1;
    for (int j = 0; j < n_out; j++) out[j] = NULL;
    em_status st = d->decomp(a, in, n_in, out, n_out);
    for (int j = 0; st == EM_OK && j < n_out; j++) {
        if (!out[j]) st = em_seterr(EM_ERR_STATE, "em_%s: decomposition produced no output %d", d->name, j);
        else if (!meta_matches(&om[j], out[j]))
            em_die(__FILE__, __LINE__, "decomposition of %s gives output %d a shape or dtype its infer does not", d->name, j);
    }
    if (st != EM_OK) {
        em_scope_end(s);
        for (int j = 0; j < n_out; j++) out[j] = NULL;
        return -1;
    }
    for (int j = 0; j < n_out; j++) em_retain(out[j]);
    em_scope_end(s);
    for (int j = 0; j < n_out; j++) emt_own(out[j]);
    return n_out;
}

int emo_call(emo_op op, em_tensor_t *const *in, int n_in, const emo_attrs *a, em_tensor_t **out,
             int max_out) {
    EM_ASSERT((unsigned)op < EMO_NUM_OPS);
    const emo_def *d = &emo_table[op];
    char opname[64];
    snprintf(opname, sizeof opname, "em_%s", d->name);
    if ((d->n_in >= 0 && n_in != d->n_in) || (d->n_in < 0 && n_in < 1) || n_in > 4096) {
        em_seterr(EM_ERR_ARG, "%s: takes %d inputs, got %d", opname, d->n_in, n_in);
        return -1;
    }
    emo_meta small[8], *im = n_in <= 8 ? small : malloc((size_t)n_in * sizeof *im);
    if (!im) return em_seterr(EM_ERR_OOM, "%s: out of memory", opname), -1;
    int result = -1;
    for (int i = 0; i < n_in; i++) {
        char what[32];
        snprintf(what, sizeof what, "input %d", i);
        if (!emt_check(in[i], opname, what)) goto done;
        emo_meta_of(in[i], &im[i]);
    }
    emo_meta om[EMO_MAX_OUT];
    int n_out = d->n_out;
    current_op = d->name;
    if (d->infer(a, im, n_in, om, &n_out) != EM_OK) goto done;
    EM_ASSERT(n_out >= 0 && n_out <= EMO_MAX_OUT);
    if (n_out > max_out) {
        em_seterr(EM_ERR_ARG, "%s: produces %d outputs but room for %d was given", opname, n_out, max_out);
        goto done;
    }
    bool grad = ema_needs_grad(op, in, n_in);
    if (d->decomp && (!d->kernel || force_decomp || (grad && !d->backward))) {
        result = run_decomp(d, a, in, n_in, om, out, n_out);
        goto done;
    }
    for (int j = 0; j < n_out; j++) out[j] = NULL;
    if (emcap_tracing()) { /* capture: a graph node instead of a kernel */
        if (emcap_record(op, a, in, n_in, om, n_out, out) != EM_OK) goto done;
    } else {
    if (!(d->flags & EMO_VIEW)) {
        for (int j = 0; j < n_out; j++) {
            out[j] = emt_new(om[j].dtype, om[j].shape, om[j].ndim);
            if (!out[j]) { release_all(out, j); goto done; }
        }
    }
    if (d->kernel(a, in, n_in, out, n_out) != EM_OK) { release_all(out, n_out); goto done; }
    }
    for (int j = 0; j < n_out; j++) EM_ASSERT(out[j] && meta_matches(&om[j], out[j]));
    if (grad && ema_record(op, a, in, n_in, out, n_out) != EM_OK) { release_all(out, n_out); goto done; }
    for (int j = 0; j < n_out; j++) emt_own(out[j]);
    result = n_out;
done:
    if (im != small) free(im);
    return result;
}

em_tensor_t *emo_call1(emo_op op, em_tensor_t *const *in, int n_in, const emo_attrs *a) {
    em_tensor_t *out = NULL;
    return emo_call(op, in, n_in, a, &out, 1) == 1 ? out : NULL;
}
