/* lower.c - lowering: every graph value becomes loop IR.
 *
 * needs: c->g, a verified graph of primitives (after emg_decompose), and an empty c->pool.
 * fills: c->lv[v] for every value, c->rand (one slot per random node), c->fallback_node.
 *
 * Inductor's lowering in C. A value is one of:
 *   - an input or constant: a buffer the caller passes (one-element constants also get a
 *     literal, so `x * 0.5` needs no load);
 *   - a view (reshape, permute, slice, expand, flip, copy): a load of its input at a rewritten
 *     index, never a copy - reshape goes through the flat index, and the simplifier in loopir.c
 *     folds it back into strides whenever the layouts allow;
 *   - a pointwise value: an expression over its own index VAR(0..nd-1) with loads (EMX_LOADV) of
 *     its inputs at broadcast indices. Dtypes follow the eager kernels exactly: f64 computes in
 *     f64, f32/f16/bf16 in f32, integers in i64, and every result is rounded to its dtype
 *     (emc_cast, which does what emt_copy does), so a fused chain of f16 ops rounds where eager
 *     rounds and an i32 sum wraps where eager wraps;
 *   - a reduction (sum, prod, amax, amin, max_dim, min_dim, argmax, argmin) or a scan (cumsum):
 *     the input element over the input's dims X, the reduced dims, the accumulator type (double
 *     for float sums and products, like reduce.c);
 *   - a matmul (extern template: emk_sgemm / emk_dgemm / emk_gemm (bf16) on strided operands);
 *   - a fallback: the eager kernel called through the runtime table, for the ops not generated
 *     (scatter_add, integer and f16 matmuls, 0-dim corner cases). Every op keeps working.
 * The scheduler decides afterwards which values get buffers and which are inlined.
 */
#include "compiler.h"

#include <math.h>
#include <stdio.h>

typedef struct {
    emc_ctx *c;
    emc_pool *p;
    const emg_graph *g;
} lctx;

static const emo_meta *meta(const lctx *L, int v) { return &L->g->vals[v].meta; }

/* the loop variables of a value's own index space */
static void vars_of(lctx *L, const emo_meta *m, int *V) {
    for (int d = 0; d < m->ndim; d++) V[d] = emc_var(L->p, d, m->shape[d]);
}

/* value u at idx (its literal when it is a one-element constant) */
static int ld(lctx *L, int u, const int *idx) {
    if (L->c->lv[u].literal >= 0) return L->c->lv[u].literal;
    const emo_meta *m = meta(L, u);
    return emc_loadv(L->p, u, m->dtype, idx, m->ndim);
}

/* u broadcast to the index space V of shape (nd dims), aligned from the right */
static int ld_b(lctx *L, int u, const int *V, int nd) {
    const emo_meta *m = meta(L, u);
    int q[EM_MAX_DIMS];
    for (int k = 0; k < m->ndim; k++) q[k] = m->shape[k] == 1 ? emc_const_i(L->p, EMC_I64, 0) : V[k + nd - m->ndim];
    return ld(L, u, q);
}

/* the dtype an elementwise op computes in (pointwise.c's compute_type) */
static emc_ty compute_ty(em_dtype d) { return d == EM_F64 ? EMC_F64 : emt_is_float(d) ? EMC_F32 : EMC_I64; }

static bool unary_float_op(int op) {
    switch (op) {
    case EMO_exp: case EMO_log: case EMO_log1p: case EMO_sqrt: case EMO_rsqrt: case EMO_sin: case EMO_cos:
    case EMO_tanh: case EMO_sigmoid: case EMO_gelu: case EMO_gelu_tanh: case EMO_silu: case EMO_reciprocal:
        return true;
    default: return false;
    }
}

static int rand_slot(lctx *L, int node) {
    emc_ctx *c = L->c;
    emc_rslot *r = realloc(c->rand, sizeof *r * (size_t)(c->n_rand + 1));
    if (!r) return em_seterr(EM_ERR_OOM, "compiler: out of memory"), -1;
    c->rand = r;
    const emg_node *n = &L->g->nodes[node];
    emc_rslot s = {node, n->attrs.seed, n->attrs.offset, 0, 0};
    if (n->op == EMO_randint) {
        s.lo = n->attrs.j[0];
        s.range = (uint64_t)(n->attrs.j[1] - n->attrs.j[0]);
    }
    c->rand[c->n_rand] = s;
    return c->n_rand++;
}

/* reshape: out index -> flat -> input index */
static int lower_reshape(lctx *L, int u, const emo_meta *om, const int *V) {
    const emo_meta *im = meta(L, u);
    int flat = emc_ix_flat(L->p, V, om->shape, om->ndim), q[EM_MAX_DIMS];
    int64_t st = 1;
    for (int d = im->ndim - 1; d >= 0; d--) {
        int e = emc_ix_div(L->p, flat, st);
        q[d] = d > 0 ? emc_ix_mod(L->p, e, im->shape[d] > 0 ? im->shape[d] : 1) : e;
        if (im->shape[d] == 1) q[d] = emc_const_i(L->p, EMC_I64, 0);
        st *= im->shape[d] > 0 ? im->shape[d] : 1;
    }
    return ld(L, u, q);
}

static int lower_cat(lctx *L, const emg_node *n, const emo_meta *om, const int *V) {
    int dim = (int)n->attrs.j[1];
    bool skip_empty = false;
    for (int i = 0; i < n->n_in; i++) {
        const emo_meta *m = meta(L, n->in[i]);
        skip_empty |= !(m->ndim == 1 && m->shape[0] == 0);
    }
    int expr = -1;
    int64_t start[64];
    if (n->n_in > 64) return em_seterr(EM_ERR_COMPILE, "compiler: cat of more than 64 inputs"), -1;
    int64_t s = 0;
    for (int i = 0; i < n->n_in; i++) {
        const emo_meta *m = meta(L, n->in[i]);
        start[i] = s;
        if (!(skip_empty && m->ndim == 1 && m->shape[0] == 0)) s += m->shape[dim];
    }
    for (int i = n->n_in - 1; i >= 0; i--) {
        const emo_meta *m = meta(L, n->in[i]);
        if ((skip_empty && m->ndim == 1 && m->shape[0] == 0) || m->shape[dim] == 0) continue;
        int q[EM_MAX_DIMS];
        for (int d = 0; d < om->ndim; d++) q[d] = V[d];
        q[dim] = emc_ix_clamp(L->p, emc_ix_addc(L->p, V[dim], -start[i]), 0, m->shape[dim] - 1);
        int xi = emc_cast(L->p, ld(L, n->in[i], q), om->dtype);
        if (expr < 0) {
            expr = xi;
        } else {
            int below = emc_bin(L->p, EMO_lt, V[dim], emc_const_i(L->p, EMC_I64, start[i] + m->shape[dim]));
            expr = emc_where(L->p, below, xi, expr);
        }
    }
    return expr >= 0 ? expr : emc_const_of(L->p, om->dtype, 0);
}

static int lower_pad(lctx *L, const emg_node *n, const emo_meta *om, const int *V) {
    int u = n->in[0];
    const emo_meta *im = meta(L, u);
    int nd = im->ndim, q[EM_MAX_DIMS], cond = emc_const_i(L->p, EMC_BOOL, 1);
    for (int d = 0; d < nd; d++) q[d] = V[d];
    for (int k = 0; k < n->attrs.ni / 2; k++) {
        int d = nd - 1 - k;
        int64_t lo = n->attrs.i[2 * k], hi = n->attrs.i[2 * k + 1], s = im->shape[d];
        if (s == 0) return emc_const_of(L->p, om->dtype, n->attrs.f[0]);
        q[d] = emc_ix_addc(L->p, V[d], -lo);
        if (lo > 0 || hi > 0) {
            if (lo > 0) cond = emc_bin(L->p, EMO_logical_and, cond, emc_bin(L->p, EMO_ge, V[d], emc_const_i(L->p, EMC_I64, lo)));
            if (hi > 0)
                cond = emc_bin(L->p, EMO_logical_and, cond,
                               emc_bin(L->p, EMO_lt, V[d], emc_const_i(L->p, EMC_I64, lo + s)));
            q[d] = emc_ix_clamp(L->p, q[d], 0, s - 1);
        }
    }
    int x = ld(L, u, q); /* sequenced: node ids follow creation order (see loopir.c, x_cmp) */
    return emc_where(L->p, cond, x, emc_const_of(L->p, om->dtype, n->attrs.f[0]));
}

/* the expression of a pointwise or view node (outputs: one); *view set for pure index moves */
static int lower_elementwise(lctx *L, const emg_node *n, const emo_meta *om, bool *view) {
    emc_pool *p = L->p;
    int V[EM_MAX_DIMS], nd = om->ndim, q[EM_MAX_DIMS];
    vars_of(L, om, V);
    const emo_attrs *a = &n->attrs;
    em_dtype D = om->dtype;
    *view = false;
    int u = n->n_in > 0 ? n->in[0] : -1;
    const emo_meta *im = u >= 0 ? meta(L, u) : NULL;
    switch (n->op) {
    case EMO_reshape: *view = true; return lower_reshape(L, u, om, V);
    case EMO_permute:
        *view = true;
        for (int d = 0; d < nd; d++) q[a->i[d]] = V[d];
        return ld(L, u, q);
    case EMO_slice:
        *view = true;
        for (int d = 0; d < nd; d++) q[d] = V[d];
        q[a->j[0]] = emc_ix_addc(p, emc_ix_mul(p, V[a->j[0]], a->j[3]), a->j[1]);
        return ld(L, u, q);
    case EMO_expand: *view = true; return ld_b(L, u, V, nd);
    case EMO_flip:
        *view = true;
        for (int d = 0; d < nd; d++) q[d] = V[d];
        for (int k = 0; k < a->ni; k++)
            if (a->i[k] < nd) q[a->i[k]] = emc_ix_addc(p, emc_ix_mul(p, V[a->i[k]], -1), om->shape[a->i[k]] - 1);
        return ld(L, u, q);
    case EMO_copy: *view = true; return ld(L, u, V);
    case EMO_cast: return emc_cast(p, ld(L, u, V), D);
    case EMO_full: return emc_const_of(p, D, a->f[0]);
    case EMO_arange: {
        /* integer arange with integer start and step (the one-hot of a cross-entropy backward):
           the index itself, in i64, when every value is exact in double and fits the dtype, which
           is what eager's start + i * step in double gives; a loop then compares integers instead
           of converting each index to double and back */
        double s0 = a->f[0], st = a->f[2], last = s0 + st * (double)((nd == 1 ? om->shape[0] : 1) - 1);
        double lo = s0 < last ? s0 : last, hi = s0 < last ? last : s0;
        if ((D == EM_I64 || D == EM_I32) && s0 == floor(s0) && st == floor(st) && lo >= -9e15 && hi <= 9e15 &&
            (D == EM_I64 || (lo >= -2147483648.0 && hi <= 2147483647.0)))
            return emc_cast(p, emc_ix_addc(p, emc_ix_mul(p, nd == 1 ? V[0] : emc_const_i(p, EMC_I64, 0), (int64_t)st),
                                           (int64_t)s0), D);
        int i = emc_conv(p, nd == 1 ? V[0] : emc_const_i(p, EMC_I64, 0), EMC_F64);
        int step = emc_bin(p, EMO_mul, i, emc_const_f(p, EMC_F64, a->f[2]));
        int x = emc_bin(p, EMO_add, emc_const_f(p, EMC_F64, a->f[0]), step);
        return emc_cast(p, x, D);
    }
    case EMO_rand: case EMO_randn: case EMO_randint: {
        int slot = rand_slot(L, (int)(n - L->g->nodes));
        if (slot < 0) return -1;
        int flat = emc_ix_flat(p, V, om->shape, nd);
        if (n->op == EMO_rand) return emc_cast(p, emc_rand(p, EMC_RAND_UNIFORM, slot, flat, EMC_F32), D);
        if (n->op == EMO_randn) return emc_cast(p, emc_rand(p, EMC_RAND_NORMAL, slot, flat, EMC_F64), D);
        return emc_cast(p, emc_conv(p, emc_rand(p, EMC_RAND_INT, slot, flat, EMC_I64), EMC_F64), D);
    }
    case EMO_logical_not: {
        em_dtype d = im->dtype;
        emc_ty ct = d == EM_BOOL || d == EM_U8 ? EMC_I64 : compute_ty(d);
        return emc_un(p, EMO_logical_not, emc_conv(p, ld(L, u, V), ct));
    }
    case EMO_clamp: {
        emc_ty ct = compute_ty(D);
        int x = emc_conv(p, ld(L, u, V), ct), lo, hi;
        if (ct == EMC_I64) { /* the integers inside [lo, hi] (pointwise.c) */
            double l = a->f[0], h = a->f[1];
            int64_t il = l <= -9.2e18 ? INT64_MIN : l >= 9.2e18 ? INT64_MAX : (int64_t)ceil(l);
            int64_t ih = h >= 9.2e18 ? INT64_MAX : h <= -9.2e18 ? INT64_MIN : (int64_t)floor(h);
            if (l != l) il = INT64_MIN;
            if (h != h) ih = INT64_MAX;
            lo = emc_const_i(p, ct, il);
            hi = emc_const_i(p, ct, ih);
        } else {
            lo = emc_const_f(p, ct, a->f[0]);
            hi = emc_const_f(p, ct, a->f[1]);
        }
        int t = emc_where(p, emc_bin(p, EMO_lt, x, lo), lo, x);
        return emc_cast(p, emc_where(p, emc_bin(p, EMO_gt, t, hi), hi, t), D);
    }
    case EMO_where: {
        int cnd = emc_conv(p, ld_b(L, n->in[0], V, nd), EMC_BOOL);
        int x = emc_cast(p, ld_b(L, n->in[1], V, nd), D), y = emc_cast(p, ld_b(L, n->in[2], V, nd), D);
        return emc_where(p, cnd, x, y);
    }
    case EMO_eq: case EMO_ne: case EMO_lt: case EMO_le: case EMO_gt: case EMO_ge: case EMO_logical_and:
    case EMO_logical_or: {
        const emo_meta *m0 = meta(L, n->in[0]), *m1 = meta(L, n->in[1]);
        em_dtype dts[2] = {m0->dtype, m1->dtype};
        int nds[2] = {m0->ndim, m1->ndim};
        emc_ty ct = compute_ty(emt_result_type(dts, nds, 2));
        int x = emc_conv(p, ld_b(L, n->in[0], V, nd), ct);
        return emc_bin(p, n->op, x, emc_conv(p, ld_b(L, n->in[1], V, nd), ct));
    }
    case EMO_add: case EMO_sub: case EMO_mul: case EMO_div: case EMO_pow: case EMO_maximum: case EMO_minimum: {
        emc_ty ct = compute_ty(D);
        int x = emc_conv(p, ld_b(L, n->in[0], V, nd), ct), y = emc_conv(p, ld_b(L, n->in[1], V, nd), ct);
        const emc_x *yx = EMC_X(p, y);
        if (n->op == EMO_pow && emc_is_float_ty(ct) && yx->kind == EMX_CONST && yx->f == 2.0)
            return emc_cast(p, emc_bin(p, EMO_mul, x, x), D);
        return emc_cast(p, emc_bin(p, n->op, x, y), D);
    }
    case EMO_gather: {
        const emo_meta *xm = im;
        int dim = (int)a->j[1];
        for (int d = 0; d < nd; d++) q[d] = V[d];
        q[dim] = emc_check(p, emc_conv(p, ld(L, n->in[1], V), EMC_I64), xm->shape[dim]);
        return ld(L, u, q);
    }
    case EMO_index_select: {
        int dim = (int)a->j[1];
        const emo_meta *xm = meta(L, n->in[1]);
        for (int d = 0; d < nd; d++) q[d] = V[d];
        int k = xm->ndim == 1 ? V[dim] : -1;
        q[dim] = emc_check(p, emc_conv(p, ld(L, n->in[1], &k), EMC_I64), im->shape[dim]);
        return ld(L, u, q);
    }
    case EMO_cat: return lower_cat(L, n, om, V);
    case EMO_pad: return lower_pad(L, n, om, V);
    default: break;
    }
    if (unary_float_op(n->op) || n->op == EMO_neg || n->op == EMO_abs || n->op == EMO_sign || n->op == EMO_relu ||
        n->op == EMO_square) {
        emc_ty ct = compute_ty(D);
        return emc_cast(p, emc_un(p, n->op, emc_conv(p, ld(L, u, V), ct)), D);
    }
    em_seterr(EM_ERR_COMPILE, "compiler: no lowering for %s", emo_table[n->op].name);
    return -1;
}

/* is node n lowered to generated code at all (else: fallback)? */
static bool generated(const lctx *L, const emg_node *n) {
    const emo_meta *m0 = n->n_in > 0 ? meta(L, n->in[0]) : NULL;
    switch (n->op) {
    case EMO_scatter_add: return false;
    case EMO_matmul: return m0->dtype == EM_F32 || m0->dtype == EM_F64 || m0->dtype == EM_BF16;
    case EMO_max_dim: case EMO_min_dim: case EMO_argmax: case EMO_argmin: case EMO_cumsum: return m0->ndim > 0;
    case EMO_gather: return m0->ndim > 0 && meta(L, n->in[1])->ndim == m0->ndim;
    case EMO_index_select: return m0->ndim > 0;
    case EMO_cat: return n->n_in <= 64;
    default: break;
    }
    const emo_def *d = &emo_table[n->op];
    if (!(d->flags & EMO_PRIM)) return false;
    return true;
}

static em_status lower_reduce(lctx *L, const emg_node *n) {
    emc_ctx *c = L->c;
    int u = n->in[0];
    const emo_meta *im = meta(L, u);
    emc_lval base;
    memset(&base, 0, sizeof base);
    base.kind = n->op == EMO_cumsum ? EMC_L_SCAN : EMC_L_REDUCE;
    base.node = (int)(n - L->g->nodes);
    base.literal = -1;
    base.xnd = im->ndim;
    memcpy(base.xshape, im->shape, sizeof base.xshape);
    bool mask[EM_MAX_DIMS] = {0};
    if (n->op == EMO_sum || n->op == EMO_prod || n->op == EMO_amax || n->op == EMO_amin) {
        if (!emo_reduce_mask("reduce", n->attrs.i, n->attrs.ni, im->ndim, mask)) return em_last_status();
    } else {
        mask[n->attrs.j[1]] = true;
    }
    for (int d = 0; d < EM_MAX_DIMS; d++) base.mask[d] = d < im->ndim && mask[d];
    bool fl = emt_is_float(im->dtype);
    switch (n->op) {
    case EMO_sum: base.rk = EMC_R_SUM; base.acc_ty = fl ? EMC_F64 : EMC_I64; break;
    case EMO_prod: base.rk = EMC_R_PROD; base.acc_ty = fl ? EMC_F64 : EMC_I64; break;
    case EMO_amax: base.rk = EMC_R_MAX; base.acc_ty = compute_ty(im->dtype); break;
    case EMO_amin: base.rk = EMC_R_MIN; base.acc_ty = compute_ty(im->dtype); break;
    case EMO_max_dim: case EMO_argmax: base.rk = EMC_R_ARGMAX; base.acc_ty = compute_ty(im->dtype); break;
    case EMO_min_dim: case EMO_argmin: base.rk = EMC_R_ARGMIN; base.acc_ty = compute_ty(im->dtype); break;
    case EMO_cumsum: base.rk = EMC_R_SUM; base.acc_ty = fl ? EMC_F64 : EMC_I64; break;
    default: return em_seterr(EM_ERR_COMPILE, "compiler: %s is not a reduction", emo_table[n->op].name);
    }
    base.with_values = n->op == EMO_max_dim || n->op == EMO_min_dim;
    int V[EM_MAX_DIMS];
    vars_of(L, im, V);
    base.expr = emc_conv(L->p, ld(L, u, V), base.acc_ty);
    if (base.expr < 0) return em_last_status();
    for (int j = 0; j < n->n_out; j++) {
        emc_lval *lv = &c->lv[n->out0 + j];
        int uses = lv->n_uses;
        bool out = lv->is_output;
        *lv = base;
        lv->out_idx = j;
        lv->n_uses = uses;
        lv->is_output = out;
    }
    return EM_OK;
}

em_status emc_lower(emc_ctx *c) {
    const emg_graph *g = c->g;
    lctx L = {c, &c->pool, g};
    c->lv = calloc((size_t)g->n_vals + 1, sizeof *c->lv);
    c->fallback_node = calloc((size_t)g->n_nodes + 1, sizeof *c->fallback_node);
    if (!c->lv || !c->fallback_node) return em_seterr(EM_ERR_OOM, "compiler: out of memory");
    for (int v = 0; v < g->n_vals; v++) {
        c->lv[v].kind = EMC_L_INPUT;
        c->lv[v].node = -1;
        c->lv[v].expr = -1;
        c->lv[v].literal = -1;
    }
    for (int k = 0; k < g->n_nodes; k++)
        for (int i = 0; i < g->nodes[k].n_in; i++) c->lv[g->nodes[k].in[i]].n_uses++;
    for (int k = 0; k < g->n_outputs; k++) c->lv[g->outputs[k]].is_output = true;
    /* one-element constants read as literals */
    for (int v = 0; v < g->n_vals; v++) {
        if (g->vals[v].kind != EMG_CONST) continue;
        em_tensor_t *t = g->consts[g->vals[v].index];
        if (emt_numel(t) != 1) continue;
        emc_ty ty = emc_ctype(t->dtype);
        c->lv[v].literal = emc_is_float_ty(ty) ? emc_const_f(&c->pool, ty, emt_load(emt_data(t), t->dtype))
                                               : emc_const_i(&c->pool, ty, emt_load_i64(emt_data(t), t->dtype));
        if (c->lv[v].literal < 0) return em_last_status();
    }
    for (int k = 0; k < g->n_nodes; k++) {
        const emg_node *n = &g->nodes[k];
        emc_lval *lv = &c->lv[n->out0];
        lv->node = k;
        if (!generated(&L, n)) {
            for (int j = 0; j < n->n_out; j++) {
                c->lv[n->out0 + j].kind = EMC_L_FALLBACK;
                c->lv[n->out0 + j].node = k;
                c->lv[n->out0 + j].out_idx = j;
            }
            c->fallback_node[c->n_fallback++] = k;
            continue;
        }
        const emo_def *d = &emo_table[n->op];
        em_status st = EM_OK;
        if (n->op == EMO_matmul) {
            lv->kind = EMC_L_MATMUL;
        } else if ((d->flags & EMO_REDUCTION) || n->op == EMO_cumsum) {
            st = lower_reduce(&L, n);
        } else {
            bool view;
            lv->expr = lower_elementwise(&L, n, &g->vals[n->out0].meta, &view);
            lv->kind = view ? EMC_L_VIEW : EMC_L_POINTWISE;
            if (lv->expr < 0) st = em_last_status();
        }
        if (st != EM_OK) {
            char msg[700];
            snprintf(msg, sizeof msg, "%s", em_last_error());
            return em_seterr(st, "compiler: lowering node %d (%s): %s", k, emo_table[n->op].name, msg);
        }
    }
    return EM_OK;
}
