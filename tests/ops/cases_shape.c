/* cases_shape.c - op cases for the shape group (src/ops/shape.c): cat, stack, split, gather,
 * index_select, scatter_add, triu, tril, pad, repeat, flip. See tests/lib/harness.h for how a
 * case is run. The refs index plain row-major float64 arrays; nothing here calls Ember ops
 * except em_promote_types for the expected dtype of cat and stack. */
#include "harness.h"

#define ALL_DT (TH_FLOATS | TH_INTS | TH_BOOLS)

/* ---- index helpers ------------------------------------------------------------------------- */
static int64_t ravel(const int64_t *idx, const int64_t *shape, int nd) {
    int64_t off = 0;
    for (int d = 0; d < nd; d++) off = off * shape[d] + idx[d];
    return off;
}

static int wrap(int64_t d, int nd) {
    int n = nd > 0 ? nd : 1;
    return (int)(d < 0 ? d + n : d);
}

/* ---- cat: ia[0] = dim ------------------------------------------------------------------------ */
static int fwd_cat(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    out[0] = em_cat(in, c->n_in, (int)c->ia[0]);
    return out[0] ? 1 : 0;
}

static int is_legacy_empty(const th_rt *t) { return t->ndim == 1 && t->shape[0] == 0; }

static int ref_cat(const th_rt *in, const th_case *c, th_rt *out) {
    int ref = 0, n = c->n_in;
    while (ref < n && is_legacy_empty(&in[ref])) ref++;
    if (ref == n) ref = 0;
    int nd = in[ref].ndim, dim = wrap(c->ia[0], nd);
    int64_t shape[8], idx[8];
    em_dtype dt = in[0].dtype;
    for (int d = 0; d < nd; d++) shape[d] = in[ref].shape[d];
    shape[dim] = 0;
    for (int i = 0; i < n; i++) {
        dt = em_promote_types(dt, in[i].dtype);
        if (!(is_legacy_empty(&in[i]) && !is_legacy_empty(&in[ref]))) shape[dim] += in[i].shape[dim];
    }
    th_rt_alloc(&out[0], shape, nd, dt);
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        if (is_legacy_empty(&in[i]) && !is_legacy_empty(&in[ref])) continue;
        for (int64_t e = 0; e < th_numel(&in[i]); e++) {
            th_unravel(e, in[i].shape, nd, idx);
            idx[dim] += off;
            out[0].d[ravel(idx, shape, nd)] = in[i].d[e];
        }
        off += in[i].shape[dim];
    }
    return 1;
}

/* ---- stack: ia[0] = dim -------------------------------------------------------------------------- */
static int fwd_stack(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    out[0] = em_stack(in, c->n_in, (int)c->ia[0]);
    return out[0] ? 1 : 0;
}

static int ref_stack(const th_rt *in, const th_case *c, th_rt *out) {
    int nd = in[0].ndim + 1, dim = (int)(c->ia[0] < 0 ? c->ia[0] + nd : c->ia[0]);
    int64_t shape[8], idx[8], oidx[8];
    em_dtype dt = in[0].dtype;
    for (int i = 1; i < c->n_in; i++) dt = em_promote_types(dt, in[i].dtype);
    for (int d = 0, k = 0; d < nd; d++) shape[d] = d == dim ? c->n_in : in[0].shape[k++];
    th_rt_alloc(&out[0], shape, nd, dt);
    for (int i = 0; i < c->n_in; i++)
        for (int64_t e = 0; e < th_numel(&in[i]); e++) {
            th_unravel(e, in[i].shape, in[i].ndim, idx);
            for (int d = 0, k = 0; d < nd; d++) oidx[d] = d == dim ? i : idx[k++];
            out[0].d[ravel(oidx, shape, nd)] = in[i].d[e];
        }
    return 1;
}

/* ---- split: ia[0] = split_size, ia[1] = dim -------------------------------------------------------- */
static int fwd_split(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    int n = em_split(in[0], c->ia[0], (int)c->ia[1], out, TH_MAX_OUT);
    return n > 0 ? n : 0;
}

static int ref_split(const th_rt *in, const th_case *c, th_rt *out) {
    const th_rt *x = &in[0];
    int nd = x->ndim, dim = wrap(c->ia[1], nd);
    int64_t size = c->ia[0], len = x->shape[dim], n = len == 0 ? 1 : (len + size - 1) / size;
    int64_t shape[8], idx[8];
    for (int64_t j = 0; j < n; j++) {
        for (int d = 0; d < nd; d++) shape[d] = x->shape[d];
        shape[dim] = len - j * size < size ? len - j * size : size;
        th_rt_alloc(&out[j], shape, nd, x->dtype);
        for (int64_t e = 0; e < th_numel(&out[j]); e++) {
            th_unravel(e, shape, nd, idx);
            idx[dim] += j * size;
            out[j].d[e] = x->d[ravel(idx, x->shape, nd)];
        }
    }
    return (int)n;
}

/* ---- gather: ia[0] = dim; inputs (x, index) -------------------------------------------------------- */
static int fwd_gather(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    out[0] = em_gather(in[0], (int)c->ia[0], in[1]);
    return out[0] ? 1 : 0;
}

static int ref_gather(const th_rt *in, const th_case *c, th_rt *out) {
    const th_rt *x = &in[0], *ix = &in[1];
    int dim = wrap(c->ia[0], x->ndim);
    int64_t idx[8];
    th_rt_alloc(&out[0], ix->shape, ix->ndim, x->dtype);
    for (int64_t e = 0; e < th_numel(ix); e++) {
        th_unravel(e, ix->shape, ix->ndim, idx);
        if (x->ndim > 0) idx[dim] = (int64_t)ix->d[e];
        out[0].d[e] = x->d[ravel(idx, x->shape, x->ndim)];
    }
    return 1;
}

/* ---- index_select: ia[0] = dim; inputs (x, index 1-d or 0-dim) --------------------------------------- */
static int fwd_index_select(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    out[0] = em_index_select(in[0], (int)c->ia[0], in[1]);
    return out[0] ? 1 : 0;
}

static int ref_index_select(const th_rt *in, const th_case *c, th_rt *out) {
    const th_rt *x = &in[0], *ix = &in[1];
    int nd = x->ndim, dim = wrap(c->ia[0], nd);
    int64_t shape[8], idx[8];
    for (int d = 0; d < nd; d++) shape[d] = x->shape[d];
    if (nd > 0) shape[dim] = th_numel(ix);
    th_rt_alloc(&out[0], shape, nd, x->dtype);
    for (int64_t e = 0; e < th_numel(&out[0]); e++) {
        th_unravel(e, shape, nd, idx);
        if (nd > 0) idx[dim] = (int64_t)ix->d[idx[dim]];
        out[0].d[e] = x->d[ravel(idx, x->shape, nd)];
    }
    return 1;
}

/* ---- scatter_add: ia[0] = dim; inputs (x, index, src) ------------------------------------------------ */
static int fwd_scatter_add(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    out[0] = em_scatter_add(in[0], (int)c->ia[0], in[1], in[2]);
    return out[0] ? 1 : 0;
}

static int ref_scatter_add(const th_rt *in, const th_case *c, th_rt *out) {
    const th_rt *x = &in[0], *ix = &in[1], *src = &in[2];
    int dim = wrap(c->ia[0], x->ndim);
    int64_t idx[8];
    th_rt_alloc(&out[0], x->shape, x->ndim, x->dtype);
    for (int64_t e = 0; e < th_numel(x); e++) out[0].d[e] = x->d[e];
    for (int64_t e = 0; e < th_numel(ix); e++) {
        th_unravel(e, ix->shape, ix->ndim, idx);
        double v = src->d[ravel(idx, src->shape, src->ndim)];
        if (x->ndim > 0) idx[dim] = (int64_t)ix->d[e];
        out[0].d[ravel(idx, x->shape, x->ndim)] += v;
    }
    for (int64_t e = 0; e < th_numel(x); e++) {
        if (x->dtype == EM_BOOL) out[0].d[e] = out[0].d[e] != 0;
        if (x->dtype == EM_U8) out[0].d[e] = fmod(out[0].d[e], 256.0);
    }
    return 1;
}

/* ---- triu / tril: ia[0] = diagonal ------------------------------------------------------------------- */
static int fwd_triu(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    out[0] = em_triu(in[0], c->ia[0]);
    return out[0] ? 1 : 0;
}

static int fwd_tril(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    out[0] = em_tril(in[0], c->ia[0]);
    return out[0] ? 1 : 0;
}

static int ref_tri(const th_rt *in, const th_case *c, th_rt *out, int upper) {
    const th_rt *x = &in[0];
    int64_t idx[8], k = c->ia[0];
    th_rt_alloc(&out[0], x->shape, x->ndim, x->dtype);
    for (int64_t e = 0; e < th_numel(x); e++) {
        th_unravel(e, x->shape, x->ndim, idx);
        int64_t i = idx[x->ndim - 2], j = idx[x->ndim - 1];
        int keep = upper ? j - i >= k : j - i <= k;
        out[0].d[e] = keep ? x->d[e] : 0.0;
    }
    return 1;
}
static int ref_triu(const th_rt *in, const th_case *c, th_rt *out) { return ref_tri(in, c, out, 1); }
static int ref_tril(const th_rt *in, const th_case *c, th_rt *out) { return ref_tri(in, c, out, 0); }

/* ---- pad: ia = pads, fa[0] = value ----------------------------------------------------------------- */
static int fwd_pad(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    out[0] = em_pad(in[0], c->ia, c->nia, c->fa[0]);
    return out[0] ? 1 : 0;
}

static int ref_pad(const th_rt *in, const th_case *c, th_rt *out) {
    const th_rt *x = &in[0];
    int nd = x->ndim;
    int64_t shape[8], lo[8] = {0}, idx[8];
    for (int d = 0; d < nd; d++) shape[d] = x->shape[d];
    for (int k = 0; k < c->nia / 2; k++) {
        int d = nd - 1 - k;
        lo[d] = c->ia[2 * k];
        shape[d] += c->ia[2 * k] + c->ia[2 * k + 1];
    }
    th_rt_alloc(&out[0], shape, nd, x->dtype);
    for (int64_t e = 0; e < th_numel(&out[0]); e++) {
        th_unravel(e, shape, nd, idx);
        int inside = 1;
        for (int d = 0; d < nd; d++) {
            idx[d] -= lo[d];
            inside &= idx[d] >= 0 && idx[d] < x->shape[d];
        }
        out[0].d[e] = inside ? x->d[ravel(idx, x->shape, nd)] : c->fa[0];
    }
    return 1;
}

/* ---- repeat: ia = repeats ------------------------------------------------------------------------ */
static int fwd_repeat(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    out[0] = em_repeat(in[0], c->ia, c->nia);
    return out[0] ? 1 : 0;
}

static int ref_repeat(const th_rt *in, const th_case *c, th_rt *out) {
    const th_rt *x = &in[0];
    int n = c->nia, lead = n - x->ndim;
    int64_t s[8], shape[8], idx[8];
    for (int d = 0; d < n; d++) {
        s[d] = d < lead ? 1 : x->shape[d - lead];
        shape[d] = s[d] * c->ia[d];
    }
    th_rt_alloc(&out[0], shape, n, x->dtype);
    for (int64_t e = 0; e < th_numel(&out[0]); e++) {
        th_unravel(e, shape, n, idx);
        for (int d = 0; d < n; d++) idx[d] %= s[d];
        out[0].d[e] = x->d[ravel(idx, s, n)];
    }
    return 1;
}

/* ---- flip: ia = dims --------------------------------------------------------------------------- */
static int fwd_flip(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    int dims[8];
    for (int k = 0; k < c->nia; k++) dims[k] = (int)c->ia[k];
    out[0] = em_flip(in[0], dims, c->nia);
    return out[0] ? 1 : 0;
}

static int ref_flip(const th_rt *in, const th_case *c, th_rt *out) {
    const th_rt *x = &in[0];
    int nd = x->ndim, flip[8] = {0};
    int64_t idx[8];
    for (int k = 0; k < c->nia; k++)
        if (nd > 0) flip[wrap(c->ia[k], nd)] = 1;
    th_rt_alloc(&out[0], x->shape, nd, x->dtype);
    for (int64_t e = 0; e < th_numel(x); e++) {
        th_unravel(e, x->shape, nd, idx);
        for (int d = 0; d < nd; d++)
            if (flip[d]) idx[d] = x->shape[d] - 1 - idx[d];
        out[0].d[ravel(idx, x->shape, nd)] = x->d[e];
    }
    return 1;
}

/* index inputs: i64 or i32 values in [0, hi), never differentiated */
#define IDX64(nd, sh, hi) {nd, sh, EM_I64, TH_INDEX, hi, .nodiff = 1}
#define IDX32(nd, sh, hi) {nd, sh, EM_I32, TH_INDEX, hi, .nodiff = 1}
#define S(...) {__VA_ARGS__}
#define FR(op) fwd_##op, ref_##op

const th_case th_cases_shape[] = {
    /* cat */
    {"cat", "dim0 three inputs", 3, {{2, {2, 3}, TH_T}, {2, {1, 3}, TH_T}, {2, {4, 3}, TH_T}}, FR(cat), ALL_DT, 1, {0}, 1},
    {"cat", "negative dim", 2, {{3, {2, 3, 4}, TH_T}, {3, {2, 1, 4}, TH_T}}, FR(cat), ALL_DT, 1, {-2}, 1},
    {"cat", "noncontig last dim", 2, {{2, {3, 4}, TH_T, .noncontig = 1}, {2, {3, 2}, TH_T}}, FR(cat), 0, 1, {1}, 1},
    {"cat", "size0 input", 2, {{3, {2, 0, 3}, TH_T}, {3, {2, 2, 3}, TH_T}}, FR(cat), ALL_DT, 1, {1}, 1},
    {"cat", "size0 other dim", 2, {{2, {0, 3}, TH_T}, {2, {0, 2}, TH_T}}, FR(cat), 0, 1, {-1}, 1},
    {"cat", "legacy 1-d empty skipped", 3, {{2, {2, 3}, TH_T}, {1, {0}, TH_T}, {2, {1, 3}, TH_T}}, FR(cat), 0, 1, {0}, 1},
    {"cat", "all 1-d empty", 2, {{1, {0}, TH_T}, {1, {0}, TH_T}}, FR(cat), 0, 0, {0}, 1},
    {"cat", "promote with i32", 2, {{2, {2, 2}, TH_T}, {2, {1, 2}, EM_I32, TH_SMALLINT}}, FR(cat), ALL_DT, 1, {0}, 1},
    {"cat", "1-d", 2, {{1, {5}, TH_T, .noncontig = 1}, {1, {3}, TH_T}}, FR(cat), 0, 1, {0}, 1},
    {"cat", "single input", 1, {{2, {2, 3}, TH_T}}, FR(cat), 0, 1, {1}, 1},
    {"cat", "size1 dims", 2, {{3, {1, 1, 3}, TH_T}, {3, {1, 1, 3}, TH_T}}, FR(cat), 0, 1, {1}, 1},
    {"cat", "large", 2, {{2, {200, 150}, TH_T}, {2, {200, 100}, TH_T}}, FR(cat), TH_F32 | TH_BF16, 0, {1}, 1},
    /* stack */
    {"stack", "dim0", 3, {{2, {2, 3}, TH_T}, {2, {2, 3}, TH_T}, {2, {2, 3}, TH_T}}, FR(stack), ALL_DT, 1, {0}, 1},
    {"stack", "last dim negative", 2, {{2, {2, 3}, TH_T}, {2, {2, 3}, TH_T}}, FR(stack), ALL_DT, 1, {-1}, 1},
    {"stack", "noncontig middle", 2, {{2, {3, 4}, TH_T, .noncontig = 1}, {2, {3, 4}, TH_T}}, FR(stack), 0, 1, {1}, 1},
    {"stack", "0-dim inputs", 2, {{0, {0}, TH_T}, {0, {0}, TH_T}}, FR(stack), 0, 1, {0}, 1},
    {"stack", "size0", 2, {{2, {0, 3}, TH_T}, {2, {0, 3}, TH_T}}, FR(stack), 0, 1, {1}, 1},
    {"stack", "promote", 2, {{2, {2, 3}, TH_T}, {2, {2, 3}, EM_BOOL, TH_BOOL}}, FR(stack), ALL_DT, 1, {2}, 1},
    /* split */
    {"split", "uneven dim0", 1, {{2, {7, 3}, TH_T}}, FR(split), ALL_DT, 1, {3, 0}, 2},
    {"split", "noncontig negative dim", 1, {{2, {2, 6}, TH_T, .noncontig = 1}}, FR(split), 0, 1, {2, -1}, 2},
    {"split", "one chunk", 1, {{2, {4, 5}, TH_T}}, FR(split), 0, 1, {5, 0}, 2},
    {"split", "size1 chunks", 1, {{2, {3, 4}, TH_T}}, FR(split), ALL_DT, 1, {1, 1}, 2},
    {"split", "size0 dim", 1, {{2, {0, 3}, TH_T}}, FR(split), 0, 1, {2, 0}, 2},
    {"split", "1-d", 1, {{1, {10}, TH_T}}, FR(split), 0, 1, {4, 0}, 2},
    /* gather */
    {"gather", "dim0 i64", 2, {{2, {3, 4}, TH_T}, IDX64(2, S(2, 4), 3)}, FR(gather), ALL_DT, 1, {0}, 1},
    {"gather", "dim -1 i32", 2, {{2, {3, 5}, TH_T}, IDX32(2, S(3, 2), 5)}, FR(gather), ALL_DT, 1, {-1}, 1},
    {"gather", "noncontig 3d", 2, {{3, {2, 3, 4}, TH_T, .noncontig = 1}, IDX64(3, S(2, 2, 3), 3)}, FR(gather), 0, 1, {1}, 1},
    {"gather", "smaller index", 2, {{2, {4, 5}, TH_T}, IDX64(2, S(2, 3), 5)}, FR(gather), 0, 1, {1}, 1},
    {"gather", "size0 index", 2, {{2, {3, 4}, TH_T}, IDX64(2, S(0, 4), 3)}, FR(gather), 0, 1, {0}, 1},
    {"gather", "0-dim", 2, {{0, {0}, TH_T}, IDX64(0, S(0), 1)}, FR(gather), 0, 1, {0}, 1},
    {"gather", "large dim0", 2, {{2, {64, 600}, TH_T}, IDX64(2, S(64, 600), 64)}, FR(gather), TH_F32 | TH_F16, 0, {0}, 1},
    {"gather", "large dim1", 2, {{2, {64, 600}, TH_T}, IDX32(2, S(64, 600), 600)}, FR(gather), TH_F32, 0, {1}, 1},
    /* index_select */
    {"index_select", "dim0 i64", 2, {{2, {4, 3}, TH_T}, IDX64(1, S(5), 4)}, FR(index_select), ALL_DT, 1, {0}, 1},
    {"index_select", "noncontig i32", 2, {{3, {3, 4, 2}, TH_T, .noncontig = 1}, IDX32(1, S(3), 4)}, FR(index_select), ALL_DT, 1, {1}, 1},
    {"index_select", "last dim", 2, {{2, {3, 5}, TH_T}, IDX32(1, S(4), 5)}, FR(index_select), ALL_DT, 1, {1}, 1},
    {"index_select", "0-dim index", 2, {{2, {3, 4}, TH_T}, IDX64(0, S(0), 4)}, FR(index_select), 0, 1, {-1}, 1},
    {"index_select", "size0 index", 2, {{2, {3, 4}, TH_T}, IDX64(1, S(0), 3)}, FR(index_select), 0, 1, {0}, 1},
    {"index_select", "0-dim input", 2, {{0, {0}, TH_T}, IDX64(1, S(1), 1)}, FR(index_select), 0, 1, {0}, 1},
    {"index_select", "large", 2, {{2, {300, 200}, TH_T}, IDX64(1, S(400), 300)}, FR(index_select), TH_F32, 0, {0}, 1},
    {"index_select", "large last dim", 2, {{2, {300, 200}, TH_T}, IDX64(1, S(250), 200)}, FR(index_select), TH_F32 | TH_BF16, 0, {1}, 1},
    /* scatter_add */
    {"scatter_add", "dim0", 3, {{2, {3, 4}, TH_T}, IDX64(2, S(5, 4), 3), {2, {5, 4}, TH_T}}, FR(scatter_add), ALL_DT, 1, {0}, 1},
    {"scatter_add", "src larger i32", 3, {{2, {3, 5}, TH_T}, IDX32(2, S(3, 2), 5), {2, {3, 3}, TH_T}}, FR(scatter_add), ALL_DT, 1, {-1}, 1},
    {"scatter_add", "noncontig 3d", 3,
     {{3, {2, 3, 4}, TH_T, .noncontig = 1}, IDX64(3, S(2, 4, 3), 3), {3, {2, 4, 4}, TH_T, .noncontig = 1}}, FR(scatter_add), 0, 1, {1}, 1},
    {"scatter_add", "size0 index", 3, {{2, {3, 4}, TH_T}, IDX64(2, S(0, 4), 3), {2, {2, 4}, TH_T}}, FR(scatter_add), 0, 1, {0}, 1},
    {"scatter_add", "0-dim", 3, {{0, {0}, TH_T}, IDX64(0, S(0), 1), {0, {0}, TH_T}}, FR(scatter_add), 0, 1, {0}, 1},
    {"scatter_add", "large dim0", 3, {{2, {64, 600}, TH_T}, IDX64(2, S(64, 600), 64), {2, {64, 600}, TH_T}}, FR(scatter_add), TH_F32 | TH_I64, 0, {0}, 1},
    {"scatter_add", "large dim1", 3, {{2, {64, 600}, TH_T}, IDX64(2, S(64, 600), 600), {2, {64, 600}, TH_T}}, FR(scatter_add), TH_F32, 0, {1}, 1},
    /* triu / tril */
    {"triu", "diag0", 1, {{2, {4, 5}, TH_T}}, FR(triu), ALL_DT, 1, {0}, 1},
    {"triu", "batched noncontig k1", 1, {{3, {2, 3, 4}, TH_T, .noncontig = 1}}, FR(triu), 0, 1, {1}, 1},
    {"triu", "k-1 tall", 1, {{2, {5, 3}, TH_T}}, FR(triu), 0, 1, {-1}, 1},
    {"triu", "k beyond", 1, {{2, {3, 3}, TH_T}}, FR(triu), 0, 1, {10}, 1},
    {"triu", "k far below", 1, {{2, {3, 3}, TH_T}}, FR(triu), 0, 1, {-10}, 1},
    {"triu", "size0", 1, {{3, {2, 0, 4}, TH_T}}, FR(triu), 0, 1, {0}, 1},
    {"tril", "diag0", 1, {{2, {4, 5}, TH_T}}, FR(tril), ALL_DT, 1, {0}, 1},
    {"tril", "batched noncontig k-1", 1, {{3, {2, 4, 3}, TH_T, .noncontig = 1}}, FR(tril), 0, 1, {-1}, 1},
    {"tril", "k2 wide", 1, {{2, {3, 6}, TH_T}}, FR(tril), 0, 1, {2}, 1},
    {"tril", "k far", 1, {{2, {3, 3}, TH_T}}, FR(tril), 0, 1, {-10}, 1},
    {"tril", "size1 and size0", 1, {{3, {0, 1, 3}, TH_T}}, FR(tril), 0, 1, {0}, 1},
    {"tril", "large", 1, {{3, {4, 100, 120}, TH_T}}, FR(tril), TH_F32, 0, {3}, 1},
    /* pad */
    {"pad", "last dim", 1, {{2, {3, 4}, TH_T}}, FR(pad), ALL_DT, 1, {1, 2}, 2, {1.0}},
    {"pad", "two dims", 1, {{3, {2, 3, 4}, TH_T}}, FR(pad), TH_FLOATS, 1, {1, 0, 2, 1}, 4, {-2.5}},
    {"pad", "noncontig", 1, {{2, {3, 4}, TH_T, .noncontig = 1}}, FR(pad), 0, 1, {0, 1, 1, 0}, 4, {0.0}},
    {"pad", "negative crops", 1, {{2, {4, 5}, TH_T}}, FR(pad), ALL_DT, 1, {-1, 2, 1, -2}, 4, {0.0}},
    {"pad", "crop only", 1, {{2, {4, 5}, TH_T}}, FR(pad), 0, 1, {-2, -1}, 2, {7.0}},
    {"pad", "size0 input", 1, {{2, {0, 3}, TH_T}}, FR(pad), 0, 1, {1, 1, 1, 1}, 4, {3.0}},
    {"pad", "no pads", 1, {{2, {2, 3}, TH_T}}, FR(pad), 0, 1, {0}, 0},
    {"pad", "1-d size1", 1, {{1, {1}, TH_T}}, FR(pad), 0, 1, {3, 0}, 2, {-1.0}},
    {"pad", "large", 1, {{2, {300, 200}, TH_T}}, FR(pad), TH_F32 | TH_F16, 0, {4, 4, 2, 2}, 4, {0.5}},
    /* repeat */
    {"repeat", "2x2", 1, {{2, {2, 3}, TH_T}}, FR(repeat), ALL_DT, 1, {2, 2}, 2},
    {"repeat", "leading dims", 1, {{1, {3}, TH_T}}, FR(repeat), 0, 1, {2, 1, 2}, 3},
    {"repeat", "noncontig", 1, {{2, {2, 3}, TH_T, .noncontig = 1}}, FR(repeat), 0, 1, {1, 3}, 2},
    {"repeat", "zero repeat", 1, {{2, {2, 3}, TH_T}}, FR(repeat), 0, 1, {0, 2}, 2},
    {"repeat", "0-dim", 1, {{0, {0}, TH_T}}, FR(repeat), 0, 1, {3}, 1},
    {"repeat", "size1 dim", 1, {{2, {1, 3}, TH_T}}, FR(repeat), 0, 1, {5, 1}, 2},
    {"repeat", "many dims staged", 1, {{5, {2, 2, 2, 2, 2}, TH_T}}, FR(repeat), 0, 1, {2, 2, 2, 2, 2}, 5},
    {"repeat", "odd repeats", 1, {{2, {2, 3}, TH_T}}, FR(repeat), ALL_DT, 1, {3, 7}, 2},
    /* flip */
    {"flip", "dim0", 1, {{2, {3, 4}, TH_T}}, FR(flip), ALL_DT, 1, {0}, 1},
    {"flip", "two dims", 1, {{3, {2, 3, 4}, TH_T}}, FR(flip), 0, 1, {0, 2}, 2},
    {"flip", "noncontig negative dim", 1, {{2, {3, 4}, TH_T, .noncontig = 1}}, FR(flip), 0, 1, {-1}, 1},
    {"flip", "1-d reversed", 1, {{1, {37}, TH_T}}, FR(flip), ALL_DT, 1, {0}, 1},
    {"flip", "size0", 1, {{2, {0, 3}, TH_T}}, FR(flip), 0, 1, {0, 1}, 2},
    {"flip", "0-dim", 1, {{0, {0}, TH_T}}, FR(flip), 0, 1, {0}, 1},
    {"flip", "no dims", 1, {{2, {2, 3}, TH_T}}, FR(flip), 0, 1, {0}, 0},
    {"flip", "large", 1, {{2, {300, 200}, TH_T}}, FR(flip), TH_F32 | TH_F16 | TH_U8 | TH_I64, 0, {1}, 1},
    {0},
};
