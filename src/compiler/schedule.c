/* schedule.c - fusion: which values get buffers, and which kernel computes each.
 *
 * needs: c->lv from emc_lower. fills: c->mat (values with a buffer), c->k (kernels in run order,
 * each with its members' expressions resolved into the kernel's loop variables), c->kern_of.
 * emc_verify_schedule checks the result.
 *
 * 1. Buffers. Views never get one (they are index rewrites of their input). A pointwise value
 *    gets one when it is a graph output, feeds a fallback or a matmul (whose operands are passed
 *    as strided views: a permuted weight is read in place), or when it has several readers and
 *    recomputing it in each would cost too much (Inductor's "realize"). Everything else is
 *    inlined into every reader: a chain of pointwise ops is one expression.
 * 2. Kernels. The roots (values with buffers, and every reduction) are placed in node order.
 *    Each root joins the newest existing kernel it is compatible with and whose inputs are ready
 *    (nothing it reads is computed in a later kernel), else it opens a new kernel:
 *      - pointwise kernels take values of their iteration shape;
 *      - a reduce kernel (iteration space X = kept dims x reduced dims) takes reductions over the
 *        same X and dims (each gets the loop after the loops of the reductions it reads: softmax
 *        is max, then sum of exp, then the stores), values of shape X (stores in the first loop
 *        where their inputs exist), values over the kept dims (an epilogue once per row),
 *        reductions of those over all rows (accumulated across rows: the mean of a cross-entropy)
 *        and one-element values of those (after the loop);
 *      - a matmul kernel takes values of its output shape (the epilogue: bias, activation,
 *        residual, cast), computed on each thread's slice right after its GEMM.
 *    A root may read a value computed in its own kernel only at the same element (the
 *    accumulator of its row, or the value it recomputes in place); that is what "resolving" an
 *    expression in a kernel checks while it inlines producers and turns loads into
 *    accumulators (EMX_ACC) or buffer reads (EMX_LOAD).
 * 3. Afterwards the loop dims that every index walks as one are merged (an f32[4, 64, 768]
 *    pointwise kernel is one loop of 196608), and EMBER_LOG=fusion prints every decision.
 */
#include "compiler.h"

#include <stdio.h>

#define CHEAP 12       /* a value read several times is recomputed when its expression costs at most this */
#define MAX_MEMBERS 48 /* values one kernel computes at most */

typedef struct {
    emc_ctx *c;
    emc_pool *p;
    bool *need;       /* values some kernel loads (so they keep a buffer) */
    emc_view *mmv;    /* per node: its two matmul operands, then where its product goes (value -1:
                         its own buffer) */
} sctx;

static const emo_meta *meta(const emc_ctx *c, int v) { return &c->g->vals[v].meta; }

static bool is_elementwise(const emc_lval *lv) { return lv->kind == EMC_L_POINTWISE || lv->kind == EMC_L_VIEW; }
static bool inlinable(const emc_ctx *c, int v) { return is_elementwise(&c->lv[v]) && !c->mat[v]; }

static char *vname(char *buf, size_t n, const emc_ctx *c, int v) {
    const emc_lval *lv = &c->lv[v];
    if (lv->node >= 0) snprintf(buf, n, "%%%d %s", v, emo_table[c->g->nodes[lv->node].op].name);
    else snprintf(buf, n, "%%%d input", v);
    return buf;
}

/* ---- context-free resolution: inline what is inlined everywhere ---------------------------------- */
typedef struct {
    emc_ctx *c;
    bool views_only;
} free_ctx;

static int free_fn(void *vctx, emc_pool *p, int node, const int *args);

static int inline_value(emc_pool *p, const emc_ctx *c, int u, const int *idx, emc_rewrite_fn fn, void *ctx) {
    for (int d = 0; d < meta(c, u)->ndim; d++)
        if (idx[d] < 0) return -1;
    int e = emc_subst(p, c->lv[u].expr, idx, meta(c, u)->ndim);
    return emc_rewrite(p, e, fn, ctx);
}

static int free_fn(void *vctx, emc_pool *p, int node, const int *args) {
    free_ctx *f = vctx;
    const emc_x *x = EMC_X(p, node);
    if (x->kind != EMX_LOADV) return -2;
    int u = (int)x->i;
    if (!inlinable(f->c, u) || (f->views_only && f->c->lv[u].kind != EMC_L_VIEW)) return -2;
    return inline_value(p, f->c, u, args, free_fn, f);
}

static int resolve_free(emc_ctx *c, int e, bool views_only) {
    free_ctx f = {c, views_only};
    return emc_rewrite(&c->pool, e, free_fn, &f);
}

/* the LOADV and LOAD leaves below e: calls fn(ctx, value, node) for each */
static void each_load_rec(const emc_pool *p, int e, uint32_t gen, void (*fn)(void *, int, int), void *ctx) {
    if (e < 0 || emc_seen(p, e, gen)) return;
    const emc_x *x = &p->x[e];
    if (x->kind == EMX_LOADV || x->kind == EMX_LOAD) fn(ctx, (int)x->i, e);
    for (int k = 0; k < x->n; k++) each_load_rec(p, p->argv[x->a + k], gen, fn, ctx);
}

static void each_load(const emc_pool *p, int e, void (*fn)(void *, int, int), void *ctx) {
    each_load_rec(p, e, emc_visit_new(p), fn, ctx);
}

/* ---- 1. buffers --------------------------------------------------------------------------------- */
/* a matmul operand as a strided view of some buffer, when its index is affine */
static bool operand_view(emc_ctx *c, int a, emc_view *out) {
    emc_pool *p = &c->pool;
    const emo_meta *m = meta(c, a);
    int V[EM_MAX_DIMS];
    for (int d = 0; d < m->ndim; d++) V[d] = emc_var(p, d, m->shape[d]);
    int e = c->lv[a].literal >= 0 ? -1 : resolve_free(c, emc_loadv(p, a, m->dtype, V, m->ndim), true);
    if (e < 0 || EMC_X(p, e)->kind != EMX_LOADV) return false;
    int b = (int)EMC_X(p, e)->i;
    const emo_meta *bm = meta(c, b);
    int idx[EM_MAX_DIMS];
    for (int d = 0; d < bm->ndim; d++) idx[d] = EMC_ARG(p, e, d);
    int flat = emc_ix_flat(p, idx, bm->shape, bm->ndim);
    if (flat < 0) return false;
    memset(out, 0, sizeof *out);
    out->value = b;
    out->nd = m->ndim;
    memcpy(out->shape, m->shape, sizeof out->shape);
    const emc_x *f = EMC_X(p, flat);
    if (f->kind == EMX_CONST) {
        out->off = f->i;
        return true;
    }
    if (f->kind == EMX_VAR) {
        out->st[f->i] = 1;
        return true;
    }
    if (f->kind != EMX_AFF) return false;
    out->off = f->i;
    for (int k = 0; k < f->n; k++) {
        const emc_x *t = EMC_X(p, EMC_ARG(p, flat, k));
        if (t->kind != EMX_VAR) return false;
        out->st[t->i] = p->coefv[f->a + k];
    }
    return true;
}

static void contiguous_view(const emc_ctx *c, int a, emc_view *out) {
    const emo_meta *m = meta(c, a);
    memset(out, 0, sizeof *out);
    out->value = a;
    out->nd = m->ndim;
    memcpy(out->shape, m->shape, sizeof out->shape);
    emt_contig_strides(m->shape, m->ndim, out->st);
}

/* (shape, st) viewed as nshape without a copy (PyTorch's computeStride, as view.c's reshape) */
static bool reshape_strides(const int64_t *shape, const int64_t *st, int nd, const int64_t *nshape, int nnd,
                            int64_t *nst) {
    if (emt_numel_shape(shape, nd) == 0 || nd == 0) {
        emt_contig_strides(nshape, nnd, nst);
        return true;
    }
    int view_d = nnd - 1;
    int64_t chunk = st[nd - 1], tnumel = 1, vnumel = 1;
    for (int d = nd - 1; d >= 0; d--) {
        tnumel *= shape[d];
        if (d == 0 || (shape[d - 1] != 1 && st[d - 1] != tnumel * chunk)) {
            while (view_d >= 0 && (vnumel < tnumel || nshape[view_d] == 1)) {
                nst[view_d] = vnumel * chunk;
                vnumel *= nshape[view_d];
                view_d--;
            }
            if (vnumel != tnumel) return false;
            if (d > 0) {
                chunk = st[d - 1];
                tnumel = 1;
                vnumel = 1;
            }
        }
    }
    return view_d == -1;
}

/* v needs a contiguous buffer to be a matmul operand. When v is reshapes and permutes of a
   matmul's product read by nothing else (attention's (B, NH, T, HS) heads back to (B, T, C)),
   that matmul writes straight into v's buffer at strides and the copy kernel disappears.
   Fills *out (a view of v's buffer in the product's dims) and returns the product's node, or -1. */
static int fold_product(const emc_ctx *c, int v, emc_view *out) {
    const emg_graph *g = c->g;
    if (c->lv[v].kind != EMC_L_VIEW || c->lv[v].node < 0) return -1;
    int nd = meta(c, v)->ndim;
    int64_t shape[EM_MAX_DIMS], st[EM_MAX_DIMS];
    memcpy(shape, meta(c, v)->shape, sizeof shape);
    emt_contig_strides(shape, nd, st);
    int u = v;
    while (c->lv[u].kind == EMC_L_VIEW && c->lv[u].node >= 0) {
        const emg_node *n = &g->nodes[c->lv[u].node];
        if ((n->op != EMO_reshape && n->op != EMO_permute) || n->n_in != 1 || n->n_out != 1) return -1;
        if (u != v && (c->lv[u].n_uses != 1 || c->lv[u].is_output || c->mat[u])) return -1;
        const emo_meta *im = meta(c, n->in[0]);
        int64_t ist[EM_MAX_DIMS];
        if (n->op == EMO_permute) {
            if (im->ndim != nd) return -1;
            for (int j = 0; j < nd; j++) {
                int64_t d = n->attrs.i[j];
                if (d < 0 || d >= nd) return -1;
                ist[d] = st[j];
            }
        } else if (!reshape_strides(shape, st, nd, im->shape, im->ndim, ist)) {
            return -1;
        }
        nd = im->ndim;
        memcpy(shape, im->shape, sizeof shape);
        memcpy(st, ist, sizeof st);
        u = n->in[0];
    }
    const emc_lval *lu = &c->lv[u];
    if (lu->kind != EMC_L_MATMUL || lu->node < 0 || lu->n_uses != 1 || lu->is_output || u == v) return -1;
    if (meta(c, u)->dtype != meta(c, v)->dtype) return -1;
    memset(out, 0, sizeof *out);
    out->value = v;
    out->nd = nd;
    memcpy(out->shape, shape, sizeof out->shape);
    memcpy(out->st, st, sizeof out->st);
    return lu->node;
}

static em_status choose_buffers(sctx *s) {
    emc_ctx *c = s->c;
    const emg_graph *g = c->g;
    bool log = emb_log_on("fusion");
    char nb[96], nb2[96];
    for (int v = 0; v < g->n_vals; v++) {
        const emc_lval *lv = &c->lv[v];
        c->mat[v] = lv->kind == EMC_L_INPUT || lv->kind == EMC_L_MATMUL || lv->kind == EMC_L_FALLBACK ||
                    lv->kind == EMC_L_SCAN || lv->is_output;
    }
    for (int k = 0; k < g->n_nodes; k++) {
        const emg_node *n = &g->nodes[k];
        if (c->lv[n->out0].kind != EMC_L_FALLBACK) continue;
        for (int i = 0; i < n->n_in; i++) {
            c->mat[n->in[i]] = true;
            s->need[n->in[i]] = true;
        }
    }
    /* matmul operands: strided views of a buffer when the index allows (decided once views'
       buffers are known, so the answer does not change afterwards) */
    for (int k = 0; k < g->n_nodes; k++) {
        const emg_node *n = &g->nodes[k];
        if (c->lv[n->out0].kind != EMC_L_MATMUL) continue;
        for (int i = 0; i < 2; i++) {
            int a = n->in[i];
            emc_view *vw = &s->mmv[2 * k + i];
            if (!operand_view(c, a, vw)) {
                contiguous_view(c, a, vw);
                if (log && c->lv[a].kind != EMC_L_INPUT)
                    emb_log("fusion", "%s gets a buffer: matmul operand that is not a strided view",
                            vname(nb, sizeof nb, c, a));
            }
            c->mat[vw->value] = true;
            s->need[vw->value] = true;
        }
    }
    for (int k = 0; k < g->n_nodes; k++) s->mmv[2 * g->n_nodes + k].value = -1;
    for (int k = 0; k < g->n_nodes; k++) {
        const emg_node *n = &g->nodes[k];
        if (c->lv[n->out0].kind != EMC_L_MATMUL) continue;
        for (int i = 0; i < 2; i++) {
            emc_view cv;
            int a = s->mmv[2 * k + i].value, pn = c->lv[a].kind == EMC_L_VIEW ? fold_product(c, a, &cv) : -1;
            if (pn < 0 || s->mmv[2 * g->n_nodes + pn].value >= 0) continue;
            s->mmv[2 * g->n_nodes + pn] = cv;
            c->mat[g->nodes[pn].out0] = false;
            if (log)
                emb_log("fusion", "%s writes its product into %s's buffer at strides (no copy kernel)",
                        vname(nb, sizeof nb, c, g->nodes[pn].out0), vname(nb2, sizeof nb2, c, a));
        }
    }
    /* pointwise values read several times: recompute when cheap */
    for (int k = 0; k < g->n_nodes; k++) {
        int v = g->nodes[k].out0;
        const emc_lval *lv = &c->lv[v];
        if (lv->kind != EMC_L_POINTWISE || c->mat[v]) continue;
        if (lv->n_uses <= 1) continue;
        int e = resolve_free(c, lv->expr, false);
        if (e < 0) return em_last_status();
        int cost = emc_cost(&c->pool, e);
        if (cost > CHEAP || lv->n_uses * cost > 8 * CHEAP) {
            c->mat[v] = true;
            if (log) emb_log("fusion", "%s gets a buffer: %d readers, cost %d", vname(nb, sizeof nb, c, v), lv->n_uses, cost);
        } else if (log) {
            emb_log("fusion", "%s is recomputed by its %d readers (cost %d)", vname(nb, sizeof nb, c, v), lv->n_uses, cost);
        }
    }
    return EM_OK;
}

/* ---- 2. kernels ------------------------------------------------------------------------------------ */
static emc_kernel *new_kernel(emc_ctx *c, emc_kkind kind, const emo_meta *space) {
    if (c->n_k == c->cap_k) {
        int cap = c->cap_k ? c->cap_k * 2 : 16;
        emc_kernel *k = realloc(c->k, sizeof *k * (size_t)cap);
        if (!k) return em_seterr_null(EM_ERR_OOM, "compiler: out of memory");
        c->k = k;
        c->cap_k = cap;
    }
    emc_kernel *k = &c->k[c->n_k++];
    memset(k, 0, sizeof *k);
    k->kind = kind;
    k->node = -1;
    k->fallback = -1;
    k->mm_value = -1;
    if (space) {
        k->nd = space->ndim;
        memcpy(k->shape, space->shape, sizeof k->shape);
    }
    return k;
}

static emc_member *add_member(emc_kernel *k) {
    if (k->n_m == k->cap_m) {
        int cap = k->cap_m ? k->cap_m * 2 : 8;
        emc_member *m = realloc(k->m, sizeof *m * (size_t)cap);
        if (!m) return em_seterr_null(EM_ERR_OOM, "compiler: out of memory");
        k->m = m;
        k->cap_m = cap;
    }
    emc_member *m = &k->m[k->n_m++];
    memset(m, 0, sizeof *m);
    m->value2 = -1;
    m->slot = -1;
    m->store_ix = -1;
    return m;
}

/* vars[] for the dims of m in kernel k's space: m's dims of size > 1 must be, in order, the
   kernel's dims of size > 1 (all of them, or only the kept ones with kept_only) */
static bool map_dims(emc_pool *p, const emc_kernel *k, const emo_meta *m, bool kept_only, int *vars) {
    int kd[EM_MAX_DIMS], nk = 0;
    for (int d = 0; d < k->nd; d++)
        if (k->shape[d] != 1 && !(kept_only && k->mask[d])) kd[nk++] = d;
    int j = 0;
    for (int d = 0; d < m->ndim; d++) {
        if (m->shape[d] == 1) {
            vars[d] = emc_const_i(p, EMC_I64, 0);
            continue;
        }
        if (j >= nk || k->shape[kd[j]] != m->shape[d]) return false;
        vars[d] = emc_var(p, kd[j], k->shape[kd[j]]);
        j++;
    }
    return j == nk;
}

static int find_member(const emc_kernel *k, int v) {
    for (int i = 0; i < k->n_m; i++)
        if (k->m[i].value == v || k->m[i].value2 == v) return i;
    return -1;
}

/* resolving an expression for a member of kernel kj with role `role` */
typedef struct {
    emc_ctx *c;
    int kj;
    emc_role role;
    bool illegal;
    char why[160];
} rctx;

static bool same_idx(const int *a, const int *b, int n) {
    for (int d = 0; d < n; d++)
        if (a[d] != b[d]) return false;
    return true;
}

static int resolve_fn(void *vctx, emc_pool *p, int node, const int *args) {
    rctx *r = vctx;
    emc_ctx *c = r->c;
    const emc_x *x = EMC_X(p, node);
    if (x->kind != EMX_LOADV) return -2;
    int u = (int)x->i, nd = x->n;
    em_dtype dt = (em_dtype)x->op;
    for (int d = 0; d < nd; d++)
        if (args[d] < 0) return -1;
    const emc_lval *lu = &c->lv[u];
    if (lu->literal >= 0) return lu->literal;
    if (inlinable(c, u)) return inline_value(p, c, u, args, resolve_fn, r);
    int ku = lu->kind == EMC_L_INPUT ? -1 : c->kern_of[u];
    const emo_meta *m = meta(c, u);
    if (ku < 0 && lu->kind != EMC_L_INPUT) {
        r->illegal = true;
        snprintf(r->why, sizeof r->why, "reads %%%d before it is scheduled", u);
        return -1;
    }
    if (ku != r->kj) {
        if (ku > r->kj) {
            r->illegal = true;
            snprintf(r->why, sizeof r->why, "reads %%%d computed in a later kernel", u);
            return -1;
        }
        return emc_load(p, u, dt, emc_ix_flat(p, args, m->shape, nd));
    }
    /* computed in this very kernel: only at the same element */
    const emc_kernel *k = &c->k[r->kj];
    int mi = find_member(k, u), want[EM_MAX_DIMS];
    if (k->kind == EMC_K_MATMUL && u == k->mm_value) {
        if (!map_dims(p, k, m, false, want) || !same_idx(want, args, nd)) goto bad;
        return emc_load(p, u, dt, emc_ix_flat(p, args, m->shape, nd));
    }
    if (mi < 0) goto bad;
    const emc_member *mb = &k->m[mi];
    switch (mb->role) {
    case EMC_M_REDUCE: {
        if (r->role == EMC_M_FINAL || !map_dims(p, k, m, true, want) || !same_idx(want, args, nd)) goto bad;
        int slot = mb->slot + (mb->value2 == u ? 0 : mb->value2 >= 0 ? 1 : 0);
        return emc_acc(p, slot, emc_ctype(m->dtype));
    }
    case EMC_M_OUTER:
        if (r->role != EMC_M_FINAL) goto bad;
        return emc_acc(p, mb->slot, emc_ctype(m->dtype));
    case EMC_M_STORE:
        if (!map_dims(p, k, m, false, want) || !same_idx(want, args, nd)) goto bad;
        return inline_value(p, c, u, args, resolve_fn, r);
    case EMC_M_EPILOGUE:
        if (r->role == EMC_M_FINAL || !map_dims(p, k, m, true, want) || !same_idx(want, args, nd)) goto bad;
        return inline_value(p, c, u, args, resolve_fn, r);
    case EMC_M_FINAL:
        if (r->role != EMC_M_FINAL) goto bad;
        return inline_value(p, c, u, args, resolve_fn, r);
    default: break;
    }
bad:
    r->illegal = true;
    snprintf(r->why, sizeof r->why, "reads %%%d of the same kernel at another element", u);
    return -1;
}

/* e (over the member's own dims) substituted by vars and resolved in kernel kj; -1 when the
   member cannot join (r->illegal) or on error */
static int resolve_in(emc_ctx *c, int kj, emc_role role, int e, const int *vars, int nvars, rctx *r) {
    memset(r, 0, sizeof *r);
    r->c = c;
    r->kj = kj;
    r->role = role;
    int s = emc_subst(&c->pool, e, vars, nvars);
    return emc_rewrite(&c->pool, s, resolve_fn, r);
}

static int max_acc_phase(const emc_pool *p, const emc_kernel *k, int e, const int *slot_phase) {
    int ph = -1;
    uint64_t used = emc_acc_mask(p, e);
    for (int s = 0; s < k->n_slots && s < 64; s++)
        if ((used >> s & 1) && slot_phase[s] > ph) ph = slot_phase[s];
    return ph;
}

static void slot_phases(const emc_kernel *k, int *sp) {
    for (int s = 0; s < k->n_slots; s++) sp[s] = -1;
    for (int i = 0; i < k->n_m; i++) {
        const emc_member *m = &k->m[i];
        if (m->role == EMC_M_REDUCE && m->slot >= 0) { /* (scans have no slot) */
            sp[m->slot] = m->phase;
            if (m->value2 >= 0) sp[m->slot + 1] = m->phase;
        }
    }
}

/* Horizontal fusion only over shared data: a value joins a pointwise or matmul kernel as a store
   only when it reads a buffer (of more than one element) that the kernel's members read, or the
   kernel's product. Loops over unrelated data gain nothing from sharing one loop (no load is
   saved) and lose: each stream they add competes for the same cache sets and prefetchers. The
   AdamW updates of twelve 768x768 weights, appended to a weight-gradient GEMM's epilogue (84
   streams), ran at 3.5 GB/s where one update per loop runs at 30 (EMBER_LOG=profile). */
typedef struct {
    const emc_ctx *c;
    unsigned char *mark;
    bool hit;
    int pass;
} share_ctx;

static void share_fn(void *vctx, int u, int node) {
    (void)node;
    share_ctx *s = vctx;
    const emo_meta *m = meta(s->c, u);
    if (emt_numel_shape(m->shape, m->ndim) < 2) return; /* scalars (AdamW's step factors) don't count */
    if (s->pass == 0) s->mark[u] = 1;
    else if (s->mark[u]) s->hit = true;
}

static bool shares_data(const emc_ctx *c, const emc_kernel *k, int e) {
    unsigned char *mark = calloc((size_t)c->g->n_vals + 1, 1);
    if (!mark) return true; /* (then fuse as before) */
    share_ctx sc = {c, mark, false, 0};
    each_load(&c->pool, e, share_fn, &sc);
    sc.pass = 1;
    if (k->kind == EMC_K_MATMUL) {
        if (k->mm_value >= 0 && mark[k->mm_value]) sc.hit = true;
        if (k->C.value >= 0 && mark[k->C.value]) sc.hit = true;
    }
    for (int i = 0; i < k->n_m && !sc.hit; i++) {
        const emc_member *m = &k->m[i];
        if (mark[m->value] || (m->value2 >= 0 && mark[m->value2])) sc.hit = true;
        if (m->expr >= 0) each_load(&c->pool, m->expr, share_fn, &sc);
    }
    free(mark);
    return sc.hit;
}

/* tries to add root value v to kernel kj in role; true when it joined */
static bool try_join(sctx *s, int kj, int v, emc_role role, bool *err) {
    emc_ctx *c = s->c;
    emc_pool *p = &c->pool;
    emc_kernel *k = &c->k[kj];
    const emc_lval *lv = &c->lv[v];
    const emo_meta *m = meta(c, v);
    int vars[EM_MAX_DIMS], nvars;
    bool reduce = lv->kind == EMC_L_REDUCE;
    if (role == EMC_M_REDUCE) {
        for (int d = 0; d < k->nd; d++) vars[d] = emc_var(p, d, k->shape[d]);
        nvars = k->nd;
    } else if (role == EMC_M_OUTER) {
        emo_meta xm = {m->dtype, lv->xnd, {0}};
        memcpy(xm.shape, lv->xshape, sizeof xm.shape);
        if (!map_dims(p, k, &xm, true, vars)) return false;
        nvars = lv->xnd;
    } else if (role == EMC_M_FINAL) {
        for (int d = 0; d < m->ndim; d++) vars[d] = emc_const_i(p, EMC_I64, 0);
        nvars = m->ndim;
    } else {
        if (!map_dims(p, k, m, role == EMC_M_EPILOGUE, vars)) return false;
        nvars = m->ndim;
    }
    rctx r;
    int e = resolve_in(c, kj, role, lv->expr, vars, nvars, &r);
    if (e < 0) {
        if (!r.illegal) *err = true;
        else if (emb_log_on("fusion")) {
            char nb[96];
            emb_log("fusion", "%s cannot join kernel %d: %s", vname(nb, sizeof nb, c, v), kj, r.why);
        }
        return false;
    }
    if (role == EMC_M_STORE && (k->kind == EMC_K_POINTWISE || k->kind == EMC_K_MATMUL) && k->n_m > 0 &&
        !shares_data(c, k, e)) {
        if (emb_log_on("fusion")) {
            char nb[96];
            emb_log("fusion", "%s does not join kernel %d: shares no data with it", vname(nb, sizeof nb, c, v), kj);
        }
        return false;
    }
    int sp[64];
    if (k->n_slots + 2 > 64) return false;
    slot_phases(k, sp);
    emc_member *mb = add_member(k);
    if (!mb) {
        *err = true;
        return false;
    }
    mb->role = role;
    mb->expr = e;
    mb->value = v;
    if (reduce) {
        int n0 = lv->node, out0 = c->g->nodes[n0].out0;
        if (lv->with_values) {
            mb->value = out0 + 1; /* indices */
            mb->value2 = out0;    /* values */
        } else {
            mb->value = out0;
        }
        mb->slot = k->n_slots;
        k->n_slots += lv->with_values ? 2 : 1;
        for (int j = 0; j < c->g->nodes[n0].n_out; j++) c->kern_of[out0 + j] = kj;
    } else {
        c->kern_of[v] = kj;
    }
    if (role == EMC_M_REDUCE || role == EMC_M_STORE) {
        mb->phase = k->kind == EMC_K_REDUCE ? max_acc_phase(p, k, e, sp) + 1 : 0;
        if (k->kind == EMC_K_REDUCE && mb->phase + 1 > k->n_phases) k->n_phases = mb->phase + 1;
    }
    return true;
}

static const char *role_name(emc_role r) {
    static const char *n[] = {"store", "reduce", "epilogue", "outer", "final", "extern"};
    return n[r];
}

static bool same_space(const emc_kernel *k, const emc_lval *lv) {
    if (k->nd != lv->xnd) return false;
    for (int d = 0; d < k->nd; d++)
        if (k->shape[d] != lv->xshape[d] || k->mask[d] != lv->mask[d]) return false;
    return true;
}

/* the kernel a reduce root starts when it joins none */
static em_status open_reduce(sctx *s, int v) {
    emc_ctx *c = s->c;
    const emc_lval *lv = &c->lv[v];
    emo_meta xm = {meta(c, v)->dtype, lv->xnd, {0}};
    memcpy(xm.shape, lv->xshape, sizeof xm.shape);
    emc_kernel *k = new_kernel(c, lv->kind == EMC_L_SCAN ? EMC_K_SCAN : EMC_K_REDUCE, &xm);
    if (!k) return em_last_status();
    memcpy(k->mask, lv->mask, sizeof k->mask);
    int last = -1;
    for (int d = 0; d < k->nd; d++)
        if (k->shape[d] != 1) last = d;
    k->column = k->kind == EMC_K_REDUCE && last >= 0 && !k->mask[last] && k->shape[last] >= 8;
    if (k->kind == EMC_K_SCAN) k->node = lv->node;
    bool err = false;
    if (!try_join(s, c->n_k - 1, v, EMC_M_REDUCE, &err)) {
        if (!err) em_seterr(EM_ERR_COMPILE, "compiler: value %%%d does not fit the kernel it opened", v);
        return em_last_status();
    }
    return EM_OK;
}

static em_status open_pointwise(sctx *s, int v) {
    emc_ctx *c = s->c;
    emc_kernel *k = new_kernel(c, EMC_K_POINTWISE, meta(c, v));
    if (!k) return em_last_status();
    bool err = false;
    if (!try_join(s, c->n_k - 1, v, EMC_M_STORE, &err)) {
        if (!err) em_seterr(EM_ERR_COMPILE, "compiler: value %%%d does not fit the kernel it opened", v);
        return em_last_status();
    }
    return EM_OK;
}

static em_status open_extern(sctx *s, int node) {
    emc_ctx *c = s->c;
    const emg_node *n = &c->g->nodes[node];
    const emc_lval *lv = &c->lv[n->out0];
    emc_kkind kind = lv->kind == EMC_L_MATMUL ? EMC_K_MATMUL : EMC_K_FALLBACK;
    emc_kernel *k = new_kernel(c, kind, meta(c, n->out0));
    if (!k) return em_last_status();
    k->node = node;
    int kj = c->n_k - 1;
    for (int j = 0; j < n->n_out; j++) c->kern_of[n->out0 + j] = kj;
    emc_member *mb = add_member(k);
    if (!mb) return em_last_status();
    mb->role = EMC_M_EXTERN;
    mb->value = n->out0;
    mb->expr = -1;
    mb->store = true;
    if (kind == EMC_K_FALLBACK) {
        for (int f = 0; f < c->n_fallback; f++)
            if (c->fallback_node[f] == node) k->fallback = f;
        return EM_OK;
    }
    k->mm_value = n->out0;
    k->A = s->mmv[2 * node];
    k->B = s->mmv[2 * node + 1];
    k->C = s->mmv[2 * c->g->n_nodes + node];
    if (k->C.value >= 0) c->kern_of[k->C.value] = kj; /* computed here: never a root of its own */
    else contiguous_view(c, n->out0, &k->C);
    return EM_OK;
}

/* the first kernel a root may join: after every kernel computing what it reads */
typedef struct {
    const emc_ctx *c;
    int min_k;
} deps_ctx;

static void dep_fn(void *vctx, int u, int node) {
    (void)node;
    deps_ctx *d = vctx;
    int k = d->c->kern_of[u];
    if (d->c->lv[u].kind != EMC_L_INPUT && k > d->min_k) d->min_k = k;
}

static int first_kernel(emc_ctx *c, int e) {
    int r = resolve_free(c, e, false);
    if (r < 0) return -2;
    deps_ctx d = {c, -1};
    each_load(&c->pool, r, dep_fn, &d);
    return d.min_k;
}

/* EMBER_NO_EPILOGUE_FUSION=1 (any value but "" and "0"): matmul kernels take no epilogue, so a
   bias, activation or residual after a GEMM is a pointwise kernel of its own that reads the
   product back from memory (for measuring what epilogue fusion saves: bench/compile). Read at
   every compile; the generated source differs, so the disk cache keeps both versions apart. */
static bool no_epilogue_fusion(void) {
    const char *e = getenv("EMBER_NO_EPILOGUE_FUSION");
    return e && e[0] && strcmp(e, "0") != 0;
}

static em_status place_root(sctx *s, int v) {
    emc_ctx *c = s->c;
    const emc_lval *lv = &c->lv[v];
    const emo_meta *m = meta(c, v);
    int lo = first_kernel(c, lv->expr);
    if (lo == -2) return em_last_status();
    bool err = false;
    for (int kj = c->n_k - 1; kj >= 0 && kj >= lo; kj--) {
        const emc_kernel *k = &c->k[kj];
        emc_role roles[3];
        int nr = 0;
        if (lv->kind == EMC_L_REDUCE) {
            if (k->kind != EMC_K_REDUCE) continue;
            if (same_space(k, lv)) roles[nr++] = EMC_M_REDUCE;
            bool all = true;
            for (int d = 0; d < lv->xnd; d++) all &= lv->mask[d] || lv->xshape[d] == 1;
            if (all && !lv->with_values && lv->rk <= EMC_R_MIN) roles[nr++] = EMC_M_OUTER;
        } else if (k->n_m >= MAX_MEMBERS) {
            continue; /* keep kernels (and their parameter lists) a readable size */
        } else if (k->kind == EMC_K_MATMUL && no_epilogue_fusion()) {
            continue; /* EMBER_NO_EPILOGUE_FUSION: the epilogue gets a pointwise kernel of its own */
        } else if (k->kind == EMC_K_POINTWISE || k->kind == EMC_K_MATMUL) {
            roles[nr++] = EMC_M_STORE;
        } else if (k->kind == EMC_K_REDUCE) {
            roles[nr++] = EMC_M_STORE;
            roles[nr++] = EMC_M_EPILOGUE;
            bool outer = false;
            for (int i = 0; i < k->n_m; i++) outer |= k->m[i].role == EMC_M_OUTER;
            if (outer && emt_numel_shape(m->shape, m->ndim) == 1) roles[nr++] = EMC_M_FINAL;
        }
        for (int i = 0; i < nr; i++) {
            if (try_join(s, kj, v, roles[i], &err)) {
                if (emb_log_on("fusion")) {
                    char nb[96];
                    emb_log("fusion", "%s joins kernel %d as %s", vname(nb, sizeof nb, c, v), kj, role_name(roles[i]));
                }
                return EM_OK;
            }
            if (err) return em_last_status();
        }
    }
    em_status st = lv->kind == EMC_L_REDUCE || lv->kind == EMC_L_SCAN ? open_reduce(s, v) : open_pointwise(s, v);
    if (st == EM_OK && emb_log_on("fusion")) {
        char nb[96], tb[EMG_TYPE_BUF];
        emo_meta sp = {m->dtype, c->k[c->n_k - 1].nd, {0}};
        memcpy(sp.shape, c->k[c->n_k - 1].shape, sizeof sp.shape);
        emb_log("fusion", "%s opens kernel %d (%s over %s)", vname(nb, sizeof nb, c, v), c->n_k - 1,
                c->k[c->n_k - 1].kind == EMC_K_POINTWISE ? "pointwise" : c->k[c->n_k - 1].kind == EMC_K_SCAN ? "scan"
                : c->k[c->n_k - 1].column ? "reduce, column layout" : "reduce", emg_type_str(tb, &sp));
    }
    return st;
}

/* ---- 3. after placing: buffers actually read, stores, merged loops -------------------------------- */
static void need_fn(void *vctx, int u, int node) {
    (void)node;
    ((sctx *)vctx)->need[u] = true;
}

static em_status finish_members(sctx *s) {
    emc_ctx *c = s->c;
    emc_pool *p = &c->pool;
    for (int kj = 0; kj < c->n_k; kj++)
        for (int i = 0; i < c->k[kj].n_m; i++) each_load(p, c->k[kj].m[i].expr, need_fn, s);
    for (int v = 0; v < c->g->n_vals; v++) {
        if (c->lv[v].is_output) s->need[v] = true;
        if (c->lv[v].kind == EMC_L_REDUCE) c->mat[v] = s->need[v];
    }
    for (int kj = 0; kj < c->n_k; kj++) {
        emc_kernel *k = &c->k[kj];
        int w = 0;
        for (int i = 0; i < k->n_m; i++) {
            emc_member *m = &k->m[i];
            if (m->role == EMC_M_EXTERN) {
                k->m[w++] = *m;
                continue;
            }
            bool keep = m->role == EMC_M_REDUCE || m->role == EMC_M_OUTER;
            m->store = s->need[m->value] || (m->value2 >= 0 && s->need[m->value2]) || k->kind == EMC_K_SCAN;
            if (!keep && !m->store) { /* recomputed wherever it is read: nothing left to do */
                c->mat[m->value] = false;
                c->kern_of[m->value] = -1;
                continue;
            }
            if (m->store) {
                const emo_meta *mm = meta(c, m->value);
                int vars[EM_MAX_DIMS];
                if (m->role == EMC_M_FINAL || m->role == EMC_M_OUTER) {
                    m->store_ix = emc_const_i(p, EMC_I64, 0);
                } else if (map_dims(p, k, mm, m->role != EMC_M_STORE && k->kind != EMC_K_SCAN, vars)) {
                    m->store_ix = emc_ix_flat(p, vars, mm->shape, mm->ndim);
                } else {
                    return em_seterr(EM_ERR_COMPILE, "compiler: cannot index the store of %%%d", m->value);
                }
                if (m->store_ix < 0) return em_last_status();
            }
            k->m[w++] = *m;
        }
        k->n_m = w;
    }
    return EM_OK;
}

/* VAR(d) -> the kernel's new variables after dims are dropped or merged */
static em_status rewrite_kernel(emc_pool *p, emc_kernel *k, const int *vars) {
    for (int i = 0; i < k->n_m; i++) {
        emc_member *m = &k->m[i];
        if (m->expr >= 0 && (m->expr = emc_subst(p, m->expr, vars, k->nd)) < 0) return em_last_status();
        if (m->store_ix >= 0 && (m->store_ix = emc_subst(p, m->store_ix, vars, k->nd)) < 0) return em_last_status();
    }
    return EM_OK;
}

/* bit 0: e mentions VAR w; bit 1: some DIV, MOD or CLAMP of it is below e (merging made an
   index worse: the dims are not walked as one) */
static int merge_scan(const emc_pool *p, int e, int w, signed char *memo) {
    if (memo[e] >= 0) return memo[e];
    const emc_x *x = &p->x[e];
    int r = x->kind == EMX_VAR && x->i == w;
    for (int k = 0; k < x->n; k++) r |= merge_scan(p, p->argv[x->a + k], w, memo);
    if ((r & 1) && (x->kind == EMX_DIV || x->kind == EMX_MOD || x->kind == EMX_CLAMP)) r |= 2;
    memo[e] = (signed char)r;
    return r;
}

static em_status merge_dims(emc_ctx *c, emc_kernel *k) {
    emc_pool *p = &c->pool;
    if (k->kind != EMC_K_POINTWISE && k->kind != EMC_K_REDUCE) return EM_OK;
    if (emt_numel_shape(k->shape, k->nd) == 0) return EM_OK;
    int vars[EM_MAX_DIMS];
    /* drop size-1 dims (no expression can mention them) */
    int nd = 0;
    int64_t sh[EM_MAX_DIMS];
    bool mk[EM_MAX_DIMS];
    for (int d = 0; d < k->nd; d++) {
        if (k->shape[d] == 1) {
            vars[d] = emc_const_i(p, EMC_I64, 0);
            continue;
        }
        vars[d] = emc_var(p, nd, k->shape[d]);
        sh[nd] = k->shape[d];
        mk[nd++] = k->mask[d];
    }
    if (nd != k->nd) {
        em_status st = rewrite_kernel(p, k, vars);
        if (st != EM_OK) return st;
        k->nd = nd;
        memcpy(k->shape, sh, sizeof sh);
        memcpy(k->mask, mk, sizeof mk);
    }
    for (int d = k->nd - 2; d >= 0; d--) {
        if (k->mask[d] != k->mask[d + 1]) continue;
        int64_t n1 = k->shape[d + 1], n0 = k->shape[d];
        int w = emc_var(p, d, n0 * n1);
        for (int e = 0; e < k->nd; e++)
            vars[e] = e < d ? emc_var(p, e, k->shape[e]) : e == d ? emc_ix_div(p, w, n1)
                      : e == d + 1 ? emc_ix_mod(p, w, n1) : emc_var(p, e - 1, k->shape[e]);
        /* try it on copies of the member expressions */
        int ex[2 * 256];
        if (k->n_m > 256) break;
        for (int i = 0; i < k->n_m; i++) {
            ex[2 * i] = k->m[i].expr >= 0 ? emc_subst(p, k->m[i].expr, vars, k->nd) : -1;
            ex[2 * i + 1] = k->m[i].store_ix >= 0 ? emc_subst(p, k->m[i].store_ix, vars, k->nd) : -1;
            if ((ex[2 * i] < 0 && k->m[i].expr >= 0) || (ex[2 * i + 1] < 0 && k->m[i].store_ix >= 0))
                return em_last_status();
        }
        signed char *memo = malloc((size_t)p->nx);
        if (!memo) return em_seterr(EM_ERR_OOM, "compiler: out of memory");
        memset(memo, -1, (size_t)p->nx);
        bool ok = true;
        for (int i = 0; i < 2 * k->n_m && ok; i++)
            if (ex[i] >= 0) ok = !(merge_scan(p, ex[i], d, memo) & 2);
        free(memo);
        if (!ok) continue;
        for (int i = 0; i < k->n_m; i++) {
            k->m[i].expr = ex[2 * i];
            k->m[i].store_ix = ex[2 * i + 1];
        }
        k->shape[d] = n0 * n1;
        for (int e = d + 1; e + 1 < k->nd; e++) {
            k->shape[e] = k->shape[e + 1];
            k->mask[e] = k->mask[e + 1];
        }
        k->nd--;
    }
    int last = -1;
    for (int d = 0; d < k->nd; d++)
        if (k->shape[d] != 1) last = d;
    if (k->kind == EMC_K_REDUCE) k->column = last >= 0 && !k->mask[last] && k->shape[last] >= 8;
    return EM_OK;
}

static void log_kernels(const emc_ctx *c) {
    if (!emb_log_on("fusion")) return;
    for (int kj = 0; kj < c->n_k; kj++) {
        const emc_kernel *k = &c->k[kj];
        char line[1024];
        int n = snprintf(line, sizeof line, "kernel %d: %s [", kj,
                         k->kind == EMC_K_POINTWISE ? "pointwise" : k->kind == EMC_K_REDUCE ? "reduce"
                         : k->kind == EMC_K_MATMUL ? "matmul" : k->kind == EMC_K_SCAN ? "scan" : "fallback");
        for (int d = 0; d < k->nd && n < (int)sizeof line - 40; d++)
            n += snprintf(line + n, sizeof line - (size_t)n, "%s%lld%s", d ? ", " : "", (long long)k->shape[d],
                          k->mask[d] ? "r" : "");
        int roots[256], nr = 0;
        for (int i = 0; i < k->n_m && nr < 256; i++)
            if (k->m[i].expr >= 0) roots[nr++] = k->m[i].expr;
        emc_counts ct = {0};
        emc_count(&c->pool, roots, nr, &ct);
        n += snprintf(line + n, sizeof line - (size_t)n, "]%s, %d loop(s), per element %d loads, %d ops (%d heavy):",
                      k->column ? " column" : "", k->n_phases, ct.loads, ct.arith + ct.casts + ct.transcendental,
                      ct.transcendental);
        for (int i = 0; i < k->n_m && n < (int)sizeof line - 40; i++) {
            const emc_member *m = &k->m[i];
            int node = c->lv[m->value].node;
            n += snprintf(line + n, sizeof line - (size_t)n, " %%%d %s(%s%s)", m->value,
                          node >= 0 ? emo_table[c->g->nodes[node].op].name : "?", role_name(m->role),
                          m->store ? ", stored" : "");
        }
        emb_log("fusion", "%s", line);
    }
}

em_status emc_schedule(emc_ctx *c) {
    const emg_graph *g = c->g;
    sctx s = {c, &c->pool, calloc((size_t)g->n_vals + 1, sizeof(bool)), calloc((size_t)g->n_nodes * 3 + 2, sizeof(emc_view))};
    c->mat = calloc((size_t)g->n_vals + 1, sizeof *c->mat);
    c->kern_of = malloc(sizeof(int) * ((size_t)g->n_vals + 1));
    if (!s.need || !s.mmv || !c->mat || !c->kern_of) {
        free(s.need);
        free(s.mmv);
        return em_seterr(EM_ERR_OOM, "compiler: out of memory");
    }
    for (int v = 0; v < g->n_vals; v++) c->kern_of[v] = -1;
    em_status st = choose_buffers(&s);
    for (int kn = 0; kn < g->n_nodes && st == EM_OK; kn++) {
        const emg_node *n = &g->nodes[kn];
        const emc_lval *lv = &c->lv[n->out0];
        switch (lv->kind) {
        case EMC_L_MATMUL: case EMC_L_FALLBACK: st = open_extern(&s, kn); break;
        case EMC_L_SCAN: st = open_reduce(&s, n->out0); break;
        case EMC_L_REDUCE: st = place_root(&s, n->out0); break;
        case EMC_L_POINTWISE: case EMC_L_VIEW:
            if (c->mat[n->out0] && c->kern_of[n->out0] < 0) st = place_root(&s, n->out0);
            break;
        default: break;
        }
    }
    if (st == EM_OK) st = finish_members(&s);
    for (int kj = 0; kj < c->n_k && st == EM_OK; kj++) st = merge_dims(c, &c->k[kj]);
    free(s.need);
    free(s.mmv);
    if (st == EM_OK) log_kernels(c);
    return st == EM_OK ? emc_verify_schedule(c) : st;
}

/* ---- the verifier ------------------------------------------------------------------------------------ */
typedef struct {
    const emc_ctx *c;
    int kj;
    char err[200];
} vctx;

static void verify_load(void *vv, int u, int node) {
    vctx *v = vv;
    const emc_ctx *c = v->c;
    if (v->err[0]) return;
    if (c->pool.x[node].kind == EMX_LOADV) {
        snprintf(v->err, sizeof v->err, "kernel %d keeps an unresolved load of %%%d", v->kj, u);
        return;
    }
    if (!c->mat[u]) {
        snprintf(v->err, sizeof v->err, "kernel %d loads %%%d, which has no buffer", v->kj, u);
        return;
    }
    int ku = c->lv[u].kind == EMC_L_INPUT ? -1 : c->kern_of[u];
    if (ku > v->kj || (ku == v->kj && c->k[v->kj].mm_value != u))
        snprintf(v->err, sizeof v->err, "kernel %d loads %%%d before kernel %d computes it", v->kj, u, ku);
}

em_status emc_verify_schedule(const emc_ctx *c) {
    const emc_pool *p = &c->pool;
    vctx v = {c, 0, {0}};
    for (int kj = 0; kj < c->n_k && !v.err[0]; kj++) {
        const emc_kernel *k = &c->k[kj];
        int sp[64];
        slot_phases(k, sp);
        v.kj = kj;
        for (int i = 0; i < k->n_m && !v.err[0]; i++) {
            const emc_member *m = &k->m[i];
            each_load(p, m->expr, verify_load, &v);
            if (m->store && c->kern_of[m->value] != kj)
                snprintf(v.err, sizeof v.err, "kernel %d stores %%%d but is not its kernel", kj, m->value);
            uint64_t used = emc_acc_mask(p, m->expr);
            for (int s = 0; s < k->n_slots && s < 64 && !v.err[0]; s++) {
                if (!(used >> s & 1)) continue;
                bool outer = sp[s] < 0, bad;
                if (m->role == EMC_M_FINAL) bad = !outer;
                else if (outer) bad = true;
                else bad = (m->role == EMC_M_REDUCE || m->role == EMC_M_STORE) && sp[s] >= m->phase;
                if (bad) snprintf(v.err, sizeof v.err, "kernel %d: %%%d reads accumulator %d too early", kj, m->value, s);
            }
        }
    }
    for (int o = 0; o < c->g->n_outputs && !v.err[0]; o++) {
        int u = c->g->outputs[o];
        if (c->lv[u].kind != EMC_L_INPUT && (c->kern_of[u] < 0 || !c->mat[u]))
            snprintf(v.err, sizeof v.err, "output %d (%%%d) is computed by no kernel", o, u);
    }
    if (v.err[0]) return em_seterr(EM_ERR_COMPILE, "compiler: schedule check failed: %s", v.err);
    return EM_OK;
}
