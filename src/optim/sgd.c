/* sgd.c - stochastic gradient descent with momentum, as torch.optim.SGD (dampening 0, not
 * Nesterov):
 *
 *     d   <- g + wd p                           coupled (L2) weight decay
 *     buf <- momentum buf + d                   state "<i>.momentum_buffer" (when momentum != 0)
 *     p   <- p - lr buf                         (p - lr d without momentum)
 *
 * The buffer starts at zero, so the first step sets it to d, as PyTorch's first step does.
 */
#include "optim.h"

#include <math.h>

typedef struct {
    em_tensor_t *lr; /* () */
    double wd, momentum;
} sgd_ctx;

/* c: p, g and (with momentum) buf chunks of one parameter */
static em_status sgd_chunk(em_tensor_t *const *c, void *vctx) {
    const sgd_ctx *a = vctx;
    em_tensor_t *p = c[0], *d = c[1];
    if (a->wd != 0) d = em_add(d, em_mul_scalar(p, a->wd));
    if (a->momentum != 0) {
        em_status st = em_assign(c[2], em_add(em_mul_scalar(c[2], a->momentum), d));
        if (st != EM_OK) return st;
        d = c[2];
    }
    return em_assign(p, em_sub(p, em_mul(d, a->lr)));
}

em_status emp_sgd_update(em_optimizer_t *o, const emp_shared *sh, int i, em_tensor_t *g, em_tensor_t *const *state) {
    sgd_ctx a = {.lr = sh->a, .wd = o->wd[i], .momentum = o->momentum};
    em_tensor_t *ts[3] = {o->params[i], g, o->n_state ? state[0] : NULL};
    return emp_foreach_chunk(ts, o->n_state ? 3 : 2, sgd_chunk, &a);
}

em_optimizer_t *em_sgd_new(em_tensor_t *const *params, int n, double lr, double momentum, double weight_decay) {
    const char *op = "em_sgd_new";
    if (!(momentum >= 0) || !isfinite(momentum))
        return em_seterr_null(EM_ERR_ARG, "%s: momentum must be finite and >= 0, got %g", op, momentum);
    static const char *const kinds[1] = {"momentum_buffer"};
    em_optimizer_t *o = emp_new(op, EMP_SGD, params, n, lr, weight_decay, momentum != 0 ? 1 : 0, kinds);
    if (o) o->momentum = momentum;
    return o;
}
