/* optimizer.c - what AdamW and SGD share: construction (parameter checks, references, state
 * tensors), the step driver, zero_grad, learning rate and weight decay setters, state access for
 * checkpoints, and the chunked traversal of optim.h.
 *
 * The step count and the learning rate live in 0-dim f64 tensors (optim.h says why), read with
 * em_item only by the getters.
 *
 * An optimizer references its parameters (em_retain) and owns its state tensors, zero-filled at
 * construction so that a checkpoint can list them before the first step (SGD's momentum buffer
 * then starts as exactly the first gradient, as in PyTorch, because 0 * momentum + g = g). State
 * names are "<param index>.<kind>", PyTorch's optimizer state_dict keys flattened.
 */
#include "optim.h"

#include <math.h>
#include <string.h>

static void release_all(em_optimizer_t *o) {
    for (int i = 0; o->params && i < o->n; i++) em_release(o->params[i]);
    for (int i = 0; o->state && i < o->n * o->n_state; i++) em_release(o->state[i]);
    em_release(o->t_step);
    em_release(o->t_lr);
    free(o->params);
    free(o->state);
    free(o->state_names);
    free(o->wd);
    free(o);
}

void em_optimizer_free(em_optimizer_t *o) {
    if (o) release_all(o);
}

em_optimizer_t *emp_new(const char *op, emp_kind kind, em_tensor_t *const *params, int n, double lr,
                        double weight_decay, int n_state, const char *const *state_kind) {
    if (!params || n < 1) return em_seterr_null(EM_ERR_ARG, "%s: need an array of n >= 1 parameters (got n = %d)", op, n);
    if (!(lr >= 0) || !(weight_decay >= 0) || !isfinite(lr) || !isfinite(weight_decay))
        return em_seterr_null(EM_ERR_ARG, "%s: lr (%g) and weight_decay (%g) must be finite and >= 0", op, lr,
                              weight_decay);
    for (int i = 0; i < n; i++) {
        char what[32];
        snprintf(what, sizeof what, "params[%d]", i);
        if (!emt_check(params[i], op, what)) return NULL;
        if (!em_is_leaf(params[i]) || !em_requires_grad(params[i]) || !em_dtype_is_float(em_type(params[i])) ||
            !em_is_contiguous(params[i]))
            return em_seterr_null(EM_ERR_ARG, "%s: params[%d] must be a contiguous floating leaf that requires grad "
                                  "(em_set_requires_grad(t, true) on a fresh tensor)", op, i);
        for (int j = 0; j < i; j++)
            if (params[j] == params[i]) return em_seterr_null(EM_ERR_ARG, "%s: params[%d] repeats params[%d]", op, i, j);
    }
    em_optimizer_t *o = calloc(1, sizeof *o);
    if (o) {
        o->params = calloc((size_t)n, sizeof *o->params);
        o->wd = calloc((size_t)n, sizeof *o->wd);
        o->state = calloc((size_t)(n * n_state + 1), sizeof *o->state);
        o->state_names = calloc((size_t)(n * n_state + 1), sizeof *o->state_names);
    }
    if (!o || !o->params || !o->wd || !o->state || !o->state_names) {
        if (o) release_all(o);
        return em_seterr_null(EM_ERR_OOM, "%s: out of memory", op);
    }
    o->kind = kind;
    o->n = n;
    o->n_state = n_state;
    for (int k = 0; k < n_state; k++) o->state_kind[k] = state_kind[k];
    em_scope_t *s = em_scope_begin();
    em_tensor_t *step = em_scalar(0, EM_F64), *tlr = em_scalar(lr, EM_F64);
    if (!step || !tlr) {
        em_scope_end(s);
        release_all(o);
        return NULL;
    }
    o->t_step = em_retain(step); /* the optimizer's references; the scope's go at em_scope_end */
    o->t_lr = em_retain(tlr);
    for (int i = 0; i < n; i++) {
        o->params[i] = em_retain(params[i]);
        o->wd[i] = weight_decay;
        for (int k = 0; k < n_state; k++) {
            em_tensor_t *z = em_zeros_like(params[i]); /* requires no grad: a fresh tensor */
            if (!z) {
                em_scope_end(s);
                release_all(o);
                return NULL;
            }
            o->state[i * n_state + k] = em_retain(z);
            snprintf(o->state_names[i * n_state + k], sizeof o->state_names[0], "%d.%s", i, state_kind[k]);
        }
    }
    em_scope_end(s);
    return o;
}

static bool opt_ok(em_optimizer_t *o, const char *op) {
    if (!o) em_seterr(EM_ERR_ARG, "%s: the optimizer is NULL", op);
    return o != NULL;
}

em_status em_optimizer_step(em_optimizer_t *o) {
    if (!opt_ok(o, "em_optimizer_step")) return em_last_status();
    em_no_grad_begin();
    em_scope_t *s = em_scope_begin();
    em_status st = em_assign(o->t_step, em_add_scalar(o->t_step, 1.0));
    emp_shared sh = {o->t_lr, NULL};
    if (st == EM_OK && o->kind == EMP_ADAMW) sh = emp_adamw_prepare(o);
    for (int i = 0; i < o->n && st == EM_OK; i++) {
        em_scope_t *ps = em_scope_begin();
        em_tensor_t *g = em_grad(o->params[i]);
        if (g) {
            em_tensor_t *const *state = o->state + i * o->n_state;
            st = o->kind == EMP_ADAMW ? emp_adamw_update(o, &sh, i, g, state) : emp_sgd_update(o, &sh, i, g, state);
        }
        em_scope_end(ps);
    }
    em_scope_end(s);
    em_no_grad_end();
    return st;
}

em_status em_optimizer_zero_grad(em_optimizer_t *o) {
    if (!opt_ok(o, "em_optimizer_zero_grad")) return em_last_status();
    for (int i = 0; i < o->n; i++) em_zero_grad(o->params[i]);
    return EM_OK;
}

em_status em_optimizer_set_lr(em_optimizer_t *o, double lr) {
    if (!opt_ok(o, "em_optimizer_set_lr")) return em_last_status();
    if (!(lr >= 0) || !isfinite(lr)) return em_seterr(EM_ERR_ARG, "em_optimizer_set_lr: lr must be finite and >= 0, got %g", lr);
    return em_fill(o->t_lr, lr);
}

double em_optimizer_get_lr(em_optimizer_t *o) { return opt_ok(o, "em_optimizer_get_lr") ? em_item(o->t_lr) : NAN; }

em_status em_optimizer_set_weight_decay(em_optimizer_t *o, int i, double weight_decay) {
    const char *op = "em_optimizer_set_weight_decay";
    if (!opt_ok(o, op)) return em_last_status();
    if (i < -1 || i >= o->n)
        return em_seterr(EM_ERR_INDEX, "%s: parameter %d is out of range (%d parameters; -1 means all)", op, i, o->n);
    if (!(weight_decay >= 0) || !isfinite(weight_decay))
        return em_seterr(EM_ERR_ARG, "%s: weight_decay must be finite and >= 0, got %g", op, weight_decay);
    for (int j = 0; j < o->n; j++)
        if (i == -1 || j == i) o->wd[j] = weight_decay;
    return EM_OK;
}

int64_t em_optimizer_get_step(em_optimizer_t *o) {
    return opt_ok(o, "em_optimizer_get_step") ? (int64_t)em_item(o->t_step) : -1;
}

em_status em_optimizer_set_step(em_optimizer_t *o, int64_t step) {
    if (!opt_ok(o, "em_optimizer_set_step")) return em_last_status();
    if (step < 0) return em_seterr(EM_ERR_ARG, "em_optimizer_set_step: step must be >= 0, got %lld", (long long)step);
    return em_fill(o->t_step, (double)step);
}

int em_optimizer_num_state(em_optimizer_t *o) {
    return opt_ok(o, "em_optimizer_num_state") ? o->n * o->n_state : -1;
}

em_tensor_t *em_optimizer_state(em_optimizer_t *o, int i, const char **name) {
    if (!opt_ok(o, "em_optimizer_state")) return NULL;
    if (i < 0 || i >= o->n * o->n_state)
        return em_seterr_null(EM_ERR_INDEX, "em_optimizer_state: index %d is out of range (%d state tensors)", i,
                              o->n * o->n_state);
    if (name) *name = o->state_names[i];
    return o->state[i];
}

em_status em_optimizer_set_state(em_optimizer_t *o, const char *name, em_tensor_t *src) {
    const char *op = "em_optimizer_set_state";
    if (!opt_ok(o, op)) return em_last_status();
    int i = -1;
    for (int j = 0; name && j < o->n * o->n_state && i < 0; j++)
        if (!strcmp(o->state_names[j], name)) i = j;
    if (i < 0)
        return em_seterr(EM_ERR_ARG, "%s: no state tensor \"%s\" (names are \"<param index>.%s\"%s)", op,
                         name ? name : "(null)", o->n_state ? o->state_kind[0] : "...",
                         o->n_state ? "" : "; this optimizer keeps no state");
    if (!emt_check(src, op, "src")) return em_last_status();
    em_tensor_t *t = o->state[i];
    bool same = em_ndim(src) == em_ndim(t);
    for (int d = 0; same && d < em_ndim(t); d++) same = em_size(src, d) == em_size(t, d);
    char b1[EMB_SHAPE_BUF], b2[EMB_SHAPE_BUF];
    if (!same)
        return em_seterr(EM_ERR_SHAPE, "%s: \"%s\" is %s but the tensor given is %s", op, name,
                         emb_shape_str(b1, em_shape(t), em_ndim(t)), emb_shape_str(b2, em_shape(src), em_ndim(src)));
    em_no_grad_begin();
    em_status st = em_assign(t, src);
    em_no_grad_end();
    return st;
}

/* ---- chunks ------------------------------------------------------------------------------------ */
em_status emp_foreach_chunk(em_tensor_t *const *ts, int nt, emp_chunk_fn fn, void *ctx) {
    EM_ASSERT(nt >= 1 && nt <= 8);
    int64_t n = em_numel(ts[0]);
    bool flat_ok = true;
    for (int j = 0; j < nt; j++) flat_ok = flat_ok && em_is_contiguous(ts[j]) && em_numel(ts[j]) == n;
    if (!flat_ok || n <= EMP_CHUNK || emcap_tracing()) return fn(ts, ctx); /* one piece: any strides work */
    em_scope_t *outer = em_scope_begin();
    em_tensor_t *flat[8];
    for (int j = 0; j < nt; j++) flat[j] = em_reshape(ts[j], (int64_t[]){n}, 1); /* (n,) views */
    em_status st = EM_OK;
    for (int64_t off = 0; off < n && st == EM_OK; off += EMP_CHUNK) {
        em_scope_t *s = em_scope_begin();
        em_tensor_t *c[8];
        for (int j = 0; j < nt; j++) c[j] = em_slice(flat[j], 0, off, EM_MIN(n, off + EMP_CHUNK), 1);
        st = fn(c, ctx);
        em_scope_end(s);
    }
    em_scope_end(outer);
    return st;
}
