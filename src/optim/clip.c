/* clip.c - gradient clipping by global L2 norm (torch.nn.utils.clip_grad_norm_).
 *
 * The norm is sqrt of the sum over every gradient of sum(g^2), each partial sum cast to f64 and
 * added as a 0-dim tensor, so nothing is read back to the host until the caller asks:
 * em_clip_grad_norm_tensor never reads data (it traces into a compiled training step) and, like
 * PyTorch, always multiplies the gradients by min(1, max_norm / (norm + 1e-6));
 * em_clip_grad_norm reads the norm and skips that pass when the coefficient is 1. Both walk the
 * gradients in chunks like the optimizer updates (optim.h).
 */
#include "optim.h"

#include <math.h>

typedef struct {
    em_tensor_t **parts; /* one retained 0-dim f64 sum of squares per chunk */
    int n, cap;
} sums;

static em_status sumsq_chunk(em_tensor_t *const *c, void *ctx) {
    sums *s = ctx;
    em_tensor_t *part = em_cast(em_sum(em_square(c[0]), NULL, 0, false), EM_F64); /* () */
    if (!part) return em_last_status();
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 64;
        em_tensor_t **p = realloc(s->parts, sizeof *p * (size_t)cap);
        if (!p) return em_seterr(EM_ERR_OOM, "em_clip_grad_norm: out of memory");
        s->parts = p;
        s->cap = cap;
    }
    s->parts[s->n++] = em_retain(part); /* outlives the chunk's scope */
    return EM_OK;
}

static em_status scale_chunk(em_tensor_t *const *c, void *ctx) { return em_assign(c[0], em_mul(c[0], ctx)); }

static bool args_ok(em_tensor_t *const *params, int n, double max_norm, const char *op) {
    if (!params || n < 1) {
        em_seterr(EM_ERR_ARG, "%s: need an array of n >= 1 parameters (got n = %d)", op, n);
        return false;
    }
    if (!(max_norm > 0)) {
        em_seterr(EM_ERR_ARG, "%s: max_norm must be positive, got %g", op, max_norm);
        return false;
    }
    for (int i = 0; i < n; i++) {
        char what[32];
        snprintf(what, sizeof what, "params[%d]", i);
        if (!emt_check(params[i], op, what)) return false;
    }
    return true;
}

/* the global norm, a 0-dim f64 tensor in the current scope (run under no-grad) */
static em_tensor_t *global_norm(em_tensor_t *const *params, int n) {
    sums s = {0};
    em_status st = EM_OK;
    for (int i = 0; i < n && st == EM_OK; i++) {
        em_tensor_t *g = em_grad(params[i]);
        if (g) st = emp_foreach_chunk(&g, 1, sumsq_chunk, &s);
    }
    em_tensor_t *total = st == EM_OK ? em_scalar(0.0, EM_F64) : NULL;
    for (int k = 0; k < s.n; k++) {
        if (total) total = em_add(total, s.parts[k]);
        em_release(s.parts[k]);
    }
    free(s.parts);
    return total ? em_sqrt(total) : NULL;
}

static em_status scale_all(em_tensor_t *const *params, int n, em_tensor_t *coef) {
    em_status st = EM_OK;
    for (int i = 0; i < n && st == EM_OK; i++) {
        em_tensor_t *g = em_grad(params[i]);
        if (g) st = emp_foreach_chunk(&g, 1, scale_chunk, coef);
    }
    return st;
}

em_tensor_t *em_clip_grad_norm_tensor(em_tensor_t *const *params, int n, double max_norm) {
    const char *op = "em_clip_grad_norm_tensor";
    if (!args_ok(params, n, max_norm, op)) return NULL;
    em_no_grad_begin();
    em_scope_t *s = em_scope_begin();
    em_tensor_t *norm = global_norm(params, n); /* () */
    em_tensor_t *coef = em_clamp(em_div(em_scalar(max_norm, EM_F64), em_add_scalar(norm, 1e-6)), -INFINITY, 1.0);
    em_status st = coef ? scale_all(params, n, coef) : em_last_status();
    if (st == EM_OK) em_keep(norm);
    em_scope_end(s);
    em_no_grad_end();
    return st == EM_OK ? norm : NULL;
}

double em_clip_grad_norm(em_tensor_t *const *params, int n, double max_norm) {
    if (!args_ok(params, n, max_norm, "em_clip_grad_norm")) return -1;
    em_no_grad_begin();
    em_scope_t *s = em_scope_begin();
    em_tensor_t *t = global_norm(params, n);
    double norm = t ? em_item(t) : -1, coef = max_norm / (norm + 1e-6);
    em_status st = t ? EM_OK : em_last_status();
    if (st == EM_OK && isfinite(norm) && coef < 1) st = scale_all(params, n, em_scalar(coef, EM_F64));
    em_scope_end(s);
    em_no_grad_end();
    return st == EM_OK ? norm : -1;
}
