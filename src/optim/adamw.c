/* adamw.c - AdamW, decoupled weight decay with bias correction (Loshchilov & Hutter 2019), as
 * torch.optim.AdamW computes it:
 *
 *     p  <- p (1 - lr wd)                       decay on the value before the update
 *     m  <- b1 m + (1 - b1) g                   first moment   (state "<i>.exp_avg")
 *     v  <- b2 v + (1 - b2) g^2                 second moment  (state "<i>.exp_avg_sq")
 *     p  <- p - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 *
 * with t the step count after this step. The factors that depend on t and lr are 0-dim tensors
 * computed once per step from the optimizer's step and lr tensors (what keeps a compiled step
 * correct from one call to the next); each chunk then costs a handful of pointwise ops, which the
 * compiler will fuse into one loop.
 */
#include "optim.h"

#include <math.h>

emp_shared emp_adamw_prepare(em_optimizer_t *o) {
    em_tensor_t *one = em_scalar(1.0, EM_F64);
    em_tensor_t *bc1 = em_sub(one, em_pow(em_scalar(o->beta1, EM_F64), o->t_step)); /* 1 - b1^t, () */
    em_tensor_t *bc2 = em_sub(one, em_pow(em_scalar(o->beta2, EM_F64), o->t_step)); /* 1 - b2^t, () */
    return (emp_shared){em_div(o->t_lr, bc1), em_rsqrt(bc2)};
}

typedef struct {
    em_tensor_t *decay;     /* 1 - lr wd, (); NULL without decay */
    em_tensor_t *step_size; /* lr / (1 - b1^t), () */
    em_tensor_t *inv_bc2;   /* 1 / sqrt(1 - b2^t), () */
    double b1, b2, eps;
} adamw_ctx;

/* c: p, g, m, v chunks of one parameter */
static em_status adamw_chunk(em_tensor_t *const *c, void *vctx) {
    const adamw_ctx *a = vctx;
    em_tensor_t *p = c[0], *g = c[1], *m = c[2], *v = c[3];
    em_status st = EM_OK;
    if (a->decay) st = em_assign(p, em_mul(p, a->decay));
    if (st == EM_OK) st = em_assign(m, em_add(em_mul_scalar(m, a->b1), em_mul_scalar(g, 1.0 - a->b1)));
    if (st == EM_OK) st = em_assign(v, em_add(em_mul_scalar(v, a->b2), em_mul_scalar(em_square(g), 1.0 - a->b2)));
    if (st != EM_OK) return st;
    em_tensor_t *denom = em_add_scalar(em_mul(em_sqrt(v), a->inv_bc2), a->eps);
    return em_assign(p, em_sub(p, em_mul(em_div(m, denom), a->step_size)));
}

em_status emp_adamw_update(em_optimizer_t *o, const emp_shared *sh, int i, em_tensor_t *g, em_tensor_t *const *state) {
    adamw_ctx a = {
        .decay = o->wd[i] != 0 ? em_sub(em_scalar(1.0, EM_F64), em_mul_scalar(o->t_lr, o->wd[i])) : NULL,
        .step_size = sh->a,
        .inv_bc2 = sh->b,
        .b1 = o->beta1,
        .b2 = o->beta2,
        .eps = o->eps,
    };
    em_tensor_t *ts[4] = {o->params[i], g, state[0], state[1]};
    return emp_foreach_chunk(ts, 4, adamw_chunk, &a);
}

em_optimizer_t *em_adamw_new(em_tensor_t *const *params, int n, double lr, double beta1, double beta2,
                             double eps, double weight_decay) {
    const char *op = "em_adamw_new";
    if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1) || !(eps >= 0) || !isfinite(eps))
        return em_seterr_null(EM_ERR_ARG, "%s: need 0 <= beta1, beta2 < 1 and a finite eps >= 0 (got %g, %g, %g)", op,
                              beta1, beta2, eps);
    static const char *const kinds[2] = {"exp_avg", "exp_avg_sq"};
    em_optimizer_t *o = emp_new(op, EMP_ADAMW, params, n, lr, weight_decay, 2, kinds);
    if (o) {
        o->beta1 = beta1;
        o->beta2 = beta2;
        o->eps = eps;
    }
    return o;
}
