/* shape.c - shape and data-movement ops: cat, stack, split, gather, index_select, scatter_add,
 * triu, tril, pad, repeat, flip, with their public wrappers.
 *
 * Most kernels here move bytes and never do arithmetic, so they are written as copies between
 * strided views (emt_view + emt_copy, which runs on the pointwise iterator): cat copies each
 * input into a slice view of the output, pad fills and copies into the interior view, repeat
 * copies one block and then doubles it along each dim, flip copies from a view with negative
 * strides. gather and scatter_add walk the index tensor with one shared loop (loop_geo): rows
 * over the dims other than `dim` and the last, an inner (k along dim, l along the last dim)
 * block, so scatter_add can run rows in parallel without two threads writing one element.
 * Backward rules and decompositions use public ops only (slice, cat, pad, gather, scatter_add,
 * where), so they also trace for the compiler. Semantics follow PyTorch; see docs/ops.md.
 */
#include "kernels.h"

#include <math.h>

#define PAR_MIN 32768 /* elements below which threads cost more than they save */

/* shape of a (possibly 0-dim) tensor as at least one dim, like PyTorch's ensure_nonempty_dim */
static int nonempty_ndim(int nd) { return nd > 0 ? nd : 1; }
static int64_t nonempty_size(const emo_meta *m, int d) { return m->ndim > 0 ? m->shape[d] : 1; }

static bool is_index_dtype(em_dtype d) { return d == EM_I32 || d == EM_I64; }

/* ---- same-dtype strided copy (any element size, negative strides fine) ----------------------- */
#define COPY_ROW_T(T)                                                                          \
    do {                                                                                       \
        if (bs[0] == (int64_t)sizeof(T) && bs[1] == -(int64_t)sizeof(T)) {                     \
            T *restrict o = (T *)(void *)p[0];                                                 \
            const T *restrict s = (const T *)(const void *)p[1];                               \
            for (int64_t i = 0; i < n; i++) o[i] = s[-i];                                      \
        } else {                                                                               \
            for (int64_t i = 0; i < n; i++)                                                    \
                *(T *)(void *)(p[0] + i * bs[0]) = *(const T *)(const void *)(p[1] + i * bs[1]); \
        }                                                                                      \
    } while (0)

static void copy_same_row(int64_t n, char **p, const int64_t *bs, void *ctx) {
    size_t es = *(const size_t *)ctx;
    if (bs[0] == (int64_t)es && bs[1] == (int64_t)es) {
        memcpy(p[0], p[1], (size_t)n * es);
        return;
    }
    switch (es) {
    case 1: COPY_ROW_T(uint8_t); break;
    case 2: COPY_ROW_T(uint16_t); break;
    case 4: COPY_ROW_T(uint32_t); break;
    default: COPY_ROW_T(uint64_t); break;
    }
}

/* dst = src for tensors of one shape and dtype, any strides */
static void copy_same(em_tensor_t *dst, em_tensor_t *src) {
    EM_ASSERT(dst->dtype == src->dtype && dst->ndim == src->ndim);
    size_t es = emt_esize(dst->dtype);
    em_tensor_t *ts[2] = {dst, src};
    emt_pointwise(2, ts, copy_same_row, &es);
}

/* dst = src cast to dst's dtype: the typed loops above when no cast is needed */
static void copy_cast(em_tensor_t *dst, em_tensor_t *src) {
    if (dst->dtype == src->dtype) copy_same(dst, src);
    else emt_copy(dst, src);
}

/* every element of contiguous t = v (cast to t's dtype) */
static void fill_value(em_tensor_t *t, double v) {
    EM_ASSERT(emt_is_contiguous(t));
    int64_t n = emt_numel(t);
    char one[8];
    emt_store(one, t->dtype, v);
    char *p = emt_data(t);
    int nth = n >= PAR_MIN ? emb_num_threads() : 1;
    switch (emt_esize(t->dtype)) {
    case 1: memset(p, one[0], (size_t)n); break;
    case 2: {
        uint16_t w, *q = (uint16_t *)(void *)p;
        memcpy(&w, one, 2);
#pragma omp parallel for num_threads(nth) if (nth > 1)
        for (int64_t i = 0; i < n; i++) q[i] = w;
        break;
    }
    case 4: {
        uint32_t w, *q = (uint32_t *)(void *)p;
        memcpy(&w, one, 4);
#pragma omp parallel for num_threads(nth) if (nth > 1)
        for (int64_t i = 0; i < n; i++) q[i] = w;
        break;
    }
    default: {
        uint64_t w, *q = (uint64_t *)(void *)p;
        memcpy(&w, one, 8);
#pragma omp parallel for num_threads(nth) if (nth > 1)
        for (int64_t i = 0; i < n; i++) q[i] = w;
        break;
    }
    }
}

/* a view of t (same strides) of the given shape starting at element coordinates start */
static em_tensor_t *sub_view(em_tensor_t *t, const int64_t *shape, const int64_t *start) {
    int64_t off = t->offset;
    for (int d = 0; d < t->ndim; d++) off += start[d] * t->strides[d];
    return emt_view(t, shape, t->strides, t->ndim, off);
}

/* ---- cat: j[1] dim --------------------------------------------------------------------------- */
/* PyTorch's legacy rule: 1-d empty tensors are skipped when other inputs have another shape */
static bool legacy_empty(const emo_meta *m) { return m->ndim == 1 && m->shape[0] == 0; }

/* the input that decides the shape: the first that is not a legacy empty (or input 0) */
static int cat_ref(const emo_meta *in, int n_in) {
    for (int i = 0; i < n_in; i++)
        if (!legacy_empty(&in[i])) return i;
    return 0;
}

static bool cat_skips(const emo_meta *in, int ref, int i) { return legacy_empty(&in[i]) && !legacy_empty(&in[ref]); }

EMO_INFER(emo_infer_cat) {
    int ref = cat_ref(in, n_in);
    const emo_meta *r = &in[ref];
    int64_t dim = a->j[1];
    if (r->ndim == 0)
        return emo_err(EM_ERR_SHAPE, NULL, in, n_in, "input %d is 0-dim and cannot be concatenated; "
                       "em_unsqueeze it or use em_stack", ref);
    if (dim < 0 || dim >= r->ndim)
        return emo_err(EM_ERR_ARG, NULL, in, n_in, "dim %lld is out of range for %d-dim inputs", (long long)dim, r->ndim);
    out[0] = *r;
    out[0].shape[dim] = 0;
    for (int i = 0; i < n_in; i++) {
        out[0].dtype = i ? em_promote_types(out[0].dtype, in[i].dtype) : in[i].dtype;
        if (cat_skips(in, ref, i)) continue;
        bool ok = in[i].ndim == r->ndim;
        for (int d = 0; ok && d < r->ndim; d++) ok = d == dim || in[i].shape[d] == r->shape[d];
        if (!ok) {
            char b1[EMB_SHAPE_BUF], b2[EMB_SHAPE_BUF];
            return emo_err(EM_ERR_SHAPE, NULL, in, n_in, "input %d has shape %s but input %d has %s; sizes must "
                           "match except in dim %lld (the concatenation dim)", i,
                           emb_shape_str(b1, in[i].shape, in[i].ndim), ref, emb_shape_str(b2, r->shape, r->ndim),
                           (long long)dim);
        }
        out[0].shape[dim] += in[i].shape[dim];
    }
    *n_out = 1;
    return EM_OK;
}

/* out (.., sum n_i, ..) gets each input copied (and cast) into its slice along dim */
EMO_KERNEL(emo_k_cat) {
    EM_UNUSED(n_out);
    em_tensor_t *o = out[0];
    int dim = (int)a->j[1];
    /* the legacy-empty skip rule of cat_skips, on tensors */
    bool skip_empty = false;
    for (int i = 0; i < n_in; i++) skip_empty |= !(in[i]->ndim == 1 && in[i]->shape[0] == 0);
    int64_t start[EM_MAX_DIMS] = {0};
    for (int i = 0; i < n_in; i++) {
        if (skip_empty && in[i]->ndim == 1 && in[i]->shape[0] == 0) continue;
        int64_t len = in[i]->shape[dim];
        if (emt_numel(in[i]) > 0) {
            em_tensor_t *v = sub_view(o, in[i]->shape, start);
            if (!v) return em_last_status();
            copy_cast(v, in[i]);
            em_release(v);
        }
        start[dim] += len;
    }
    return EM_OK;
}

/* each input's gradient is its slice of gout (skipped legacy empties get none) */
EMO_BACKWARD(emo_bw_cat) {
    int dim = (int)c->attrs->j[1];
    int ref = cat_ref(c->in_meta, c->n_in);
    int64_t off = 0;
    for (int i = 0; i < c->n_in; i++) {
        if (cat_skips(c->in_meta, ref, i)) continue;
        int64_t len = c->in_meta[i].shape[dim];
        if (c->needs_grad[i]) {
            gin[i] = em_slice(gout[0], dim, off, off + len, 1);
            if (!gin[i]) return em_last_status();
        }
        off += len;
    }
    return EM_OK;
}

/* ---- stack: j[1] dim (of the output) ---------------------------------------------------------- */
EMO_INFER(emo_infer_stack) {
    int64_t dim = a->j[1];
    if (in[0].ndim + 1 > EM_MAX_DIMS)
        return emo_err(EM_ERR_SHAPE, NULL, in, n_in, "the result would have more than %d dims", EM_MAX_DIMS);
    if (dim < 0 || dim > in[0].ndim)
        return emo_err(EM_ERR_ARG, NULL, in, n_in, "dim %lld is out of range 0..%d", (long long)dim, in[0].ndim);
    em_dtype dt = in[0].dtype;
    for (int i = 1; i < n_in; i++) {
        bool ok = in[i].ndim == in[0].ndim;
        for (int d = 0; ok && d < in[0].ndim; d++) ok = in[i].shape[d] == in[0].shape[d];
        if (!ok) {
            char b1[EMB_SHAPE_BUF], b2[EMB_SHAPE_BUF];
            return emo_err(EM_ERR_SHAPE, NULL, in, n_in, "input %d has shape %s but input 0 has %s; stacked "
                           "tensors must all have the same shape", i, emb_shape_str(b1, in[i].shape, in[i].ndim),
                           emb_shape_str(b2, in[0].shape, in[0].ndim));
        }
        dt = em_promote_types(dt, in[i].dtype);
    }
    out[0].dtype = dt;
    out[0].ndim = in[0].ndim + 1;
    for (int d = 0, k = 0; d < out[0].ndim; d++) out[0].shape[d] = d == dim ? n_in : in[0].shape[k++];
    *n_out = 1;
    return EM_OK;
}

/* input i is copied into out[.., i, ..]: a view of out that drops dim */
EMO_KERNEL(emo_k_stack) {
    EM_UNUSED(n_out);
    em_tensor_t *o = out[0];
    int dim = (int)a->j[1], nd = o->ndim - 1;
    int64_t st[EM_MAX_DIMS];
    for (int d = 0, k = 0; d <= nd; d++)
        if (d != dim) st[k++] = o->strides[d];
    if (emt_numel(o) == 0) return EM_OK;
    for (int i = 0; i < n_in; i++) {
        em_tensor_t *v = emt_view(o, in[i]->shape, st, nd, o->offset + i * o->strides[dim]);
        if (!v) return em_last_status();
        copy_cast(v, in[i]);
        em_release(v);
    }
    return EM_OK;
}

EMO_BACKWARD(emo_bw_stack) {
    int dim = (int)c->attrs->j[1];
    for (int i = 0; i < c->n_in; i++) {
        if (!c->needs_grad[i]) continue;
        gin[i] = em_select(gout[0], dim, i);
        if (!gin[i]) return em_last_status();
    }
    return EM_OK;
}

/* stack = cat of the inputs with a new size-1 dim */
EMO_DECOMP(emo_dc_stack) {
    EM_UNUSED(n_out);
    int dim = (int)a->j[1];
    em_tensor_t *small[8] = {0}, **u = n_in <= 8 ? small : malloc((size_t)n_in * sizeof *u);
    if (!u) return em_seterr(EM_ERR_OOM, "em_stack: out of memory");
    bool ok = true;
    for (int i = 0; i < n_in && ok; i++) ok = (u[i] = em_unsqueeze(in[i], dim)) != NULL;
    out[0] = ok ? em_cat(u, n_in, dim) : NULL;
    if (u != small) free(u);
    return out[0] ? EM_OK : em_last_status();
}

/* ---- split: j[0] split_size, j[1] dim; outputs are views ----------------------------------- */
static int64_t split_count(int64_t len, int64_t size) { return len == 0 ? 1 : (len + size - 1) / size; }

EMO_INFER(emo_infer_split) {
    EM_UNUSED(n_in);
    int64_t size = a->j[0], dim = a->j[1];
    if (in[0].ndim == 0) return emo_err(EM_ERR_ARG, NULL, in, 1, "cannot split a 0-dim tensor");
    if (dim < 0 || dim >= in[0].ndim)
        return emo_err(EM_ERR_ARG, NULL, in, 1, "dim %lld is out of range for %d dims", (long long)dim, in[0].ndim);
    if (size <= 0) return emo_err(EM_ERR_ARG, NULL, in, 1, "split_size must be positive, got %lld", (long long)size);
    int64_t len = in[0].shape[dim], n = split_count(len, size);
    if (n > EMO_MAX_OUT)
        return emo_err(EM_ERR_ARG, NULL, in, 1, "splitting %lld elements into chunks of %lld makes %lld outputs; at "
                       "most %d are supported, use a larger split_size", (long long)len, (long long)size,
                       (long long)n, EMO_MAX_OUT);
    for (int64_t j = 0; j < n; j++) {
        out[j] = in[0];
        out[j].shape[dim] = EM_MIN(size, len - j * size);
    }
    *n_out = (int)n;
    return EM_OK;
}

EMO_KERNEL(emo_k_split) {
    EM_UNUSED(n_in);
    em_tensor_t *x = in[0];
    int dim = (int)a->j[1];
    int64_t size = a->j[0], len = x->shape[dim], sh[EM_MAX_DIMS];
    memcpy(sh, x->shape, sizeof sh);
    for (int j = 0; j < n_out; j++) {
        int64_t start = j * size;
        sh[dim] = EM_MIN(size, len - start);
        out[j] = emt_view(x, sh, x->strides, x->ndim, x->offset + (sh[dim] > 0 ? start * x->strides[dim] : 0));
        if (!out[j]) return em_last_status();
    }
    return EM_OK;
}

EMO_BACKWARD(emo_bw_split) {
    gin[0] = em_cat(gout, c->n_out, (int)c->attrs->j[1]);
    return gin[0] ? EM_OK : em_last_status();
}

EMO_DECOMP(emo_dc_split) {
    EM_UNUSED(n_in);
    int dim = (int)a->j[1];
    int64_t size = a->j[0], len = in[0]->shape[dim];
    for (int j = 0; j < n_out; j++) {
        out[j] = em_slice(in[0], dim, j * size, EM_MIN((j + 1) * size, len), 1);
        if (!out[j]) return em_last_status();
    }
    return EM_OK;
}

/* ---- the gather / scatter_add loop --------------------------------------------------------------
 * Positions p run over the index's shape. Tensor A (gather's out, scatter_add's src) and the
 * index are read at p; tensor B (gather's x, scatter_add's out) at p with p[dim] replaced by
 * the index value. Rows run over the dims other than dim and the last (L); each row is a
 * (k along dim) x (l along L) block, so the last dim stays the inner loop. Tasks are rows, cut
 * into k ranges (gather only) and l chunks when there are too few rows for the threads: two
 * tasks never write one element of B, because scatter_add keeps every k of a row in one task
 * (l, like the row dims, is a coordinate B is addressed at). */
typedef struct {
    int nd, dim, L;
    int64_t shape[EM_MAX_DIMS];               /* the index's shape (0-dim seen as (1)) */
    int64_t sa[EM_MAX_DIMS], si[EM_MAX_DIMS], sb[EM_MAX_DIMS]; /* element strides */
    int64_t rows, nk, nl, bsize;              /* bsize: B's size along dim (index bound) */
    int64_t kg, lc, tasks;                    /* k ranges per row, l chunks per range */
    char *pa, *pi, *pb;
    bool i64;
    size_t es;
} loop_geo;

static void geo_strides(const em_tensor_t *t, int64_t *s) {
    if (t->ndim == 0) s[0] = 1;
    for (int d = 0; d < t->ndim; d++) s[d] = t->strides[d];
}

static void geo_init(loop_geo *g, em_tensor_t *A, em_tensor_t *idx, em_tensor_t *B, int dim, bool split_k, int nth) {
    g->nd = nonempty_ndim(idx->ndim);
    g->dim = dim;
    g->L = g->nd - 1;
    for (int d = 0; d < g->nd; d++) g->shape[d] = idx->ndim ? idx->shape[d] : 1;
    geo_strides(A, g->sa);
    geo_strides(idx, g->si);
    geo_strides(B, g->sb);
    g->nk = g->shape[dim];
    g->nl = dim == g->L ? 1 : g->shape[g->L];
    g->rows = 1;
    for (int d = 0; d < g->nd; d++)
        if (d != dim && d != g->L) g->rows *= g->shape[d];
    g->bsize = B->ndim ? B->shape[dim] : 1;
    g->pa = emt_data(A);
    g->pi = emt_data(idx);
    g->pb = emt_data(B);
    g->i64 = idx->dtype == EM_I64;
    g->es = emt_esize(A->dtype);
    g->kg = 1;
    if (split_k && nth > 1 && g->rows < 4 * nth && g->nk > 1) g->kg = EM_MIN(g->nk, (4 * nth + g->rows - 1) / g->rows);
    int64_t base = g->rows * g->kg;
    g->lc = 1;
    if (nth > 1 && base > 0 && base < 4 * nth) {
        int64_t most = g->nl / 256 > 0 ? g->nl / 256 : 1;
        g->lc = EM_MIN((4 * nth + base - 1) / base, most);
    }
    g->tasks = base * g->lc;
}

/* task t: row r, k in [k0, k1), l in [l0, l1); element offsets of the row's corner in A, the
   index and B */
typedef struct {
    int64_t k0, k1, l0, l1, oa, oi, ob;
} geo_task;

static geo_task geo_task_of(const loop_geo *g, int64_t t) {
    geo_task w;
    int64_t c = t % g->lc, kgi = (t / g->lc) % g->kg, r = t / g->lc / g->kg;
    int64_t kchunk = (g->nk + g->kg - 1) / g->kg;
    w.k0 = kgi * kchunk;
    w.k1 = EM_MIN(g->nk, w.k0 + kchunk);
    int64_t chunk = (g->nl + g->lc - 1) / g->lc;
    w.l0 = c * chunk;
    w.l1 = EM_MIN(g->nl, w.l0 + chunk);
    w.oa = w.oi = w.ob = 0;
    for (int d = g->nd - 1; d >= 0; d--) {
        if (d == g->dim || d == g->L) continue;
        int64_t i = r % g->shape[d];
        r /= g->shape[d];
        w.oa += i * g->sa[d];
        w.oi += i * g->si[d];
        w.ob += i * g->sb[d];
    }
    return w;
}

/* the block of task w with element type T and index type IT; BODY reads and writes the element
   pointers A_AT and B_AT. Strides and bases live in locals so the inner loop stays simple. */
#define GEO_LOOP(T, IT, BODY)                                                                   \
    do {                                                                                        \
        const IT *ip_ = (const IT *)(const void *)g->pi + w.oi;                                 \
        T *pa_ = (T *)(void *)g->pa + w.oa, *pb_ = (T *)(void *)g->pb + w.ob;                   \
        const int64_t sik = g->si[g->dim], sil = g->si[g->L], sak = g->sa[g->dim];              \
        const int64_t sal = g->sa[g->L], sbk = g->sb[g->dim], sbl = g->sb[g->L];                \
        const uint64_t lim = (uint64_t)g->bsize;                                                \
        for (int64_t k = w.k0; k < w.k1; k++) {                                                 \
            const IT *ik = ip_ + k * sik;                                                       \
            T *ak = pa_ + k * sak;                                                              \
            for (int64_t l = w.l0; l < w.l1; l++) {                                             \
                int64_t v = ik[l * sil];                                                        \
                if ((uint64_t)v >= lim) {                                                       \
                    *bad = v;                                                                   \
                    return false;                                                               \
                }                                                                               \
                T *A_AT = ak + l * sal, *B_AT = pb_ + v * sbk + l * sbl;                        \
                BODY;                                                                           \
            }                                                                                   \
        }                                                                                       \
    } while (0)

#define GEO_BLOCK(T, BODY)                                                                      \
    do {                                                                                        \
        if (g->i64) GEO_LOOP(T, int64_t, BODY);                                                 \
        else GEO_LOOP(T, int32_t, BODY);                                                        \
    } while (0)

/* ---- gather: j[1] dim ---------------------------------------------------------------------- */
/* PyTorch's gather/scatter shape rule (0-dim counts as 1-d of size 1) */
static em_status index_shape_check(const emo_meta *in, int n_in, const emo_meta *x, const emo_meta *idx,
                                   const emo_meta *src, int64_t dim) {
    int nd = nonempty_ndim(x->ndim);
    if (!is_index_dtype(idx->dtype))
        return emo_err(EM_ERR_DTYPE, NULL, in, n_in, "index must be i64 or i32, got %s (em_cast it)",
                       em_dtype_name(idx->dtype));
    if (dim < 0 || dim >= nd)
        return emo_err(EM_ERR_ARG, NULL, in, n_in, "dim %lld is out of range for %d dims", (long long)dim, x->ndim);
    if (nonempty_ndim(idx->ndim) != nd || (src && nonempty_ndim(src->ndim) != nd))
        return emo_err(EM_ERR_SHAPE, NULL, in, n_in, "index%s must have as many dims as the input (%d)",
                       src ? " and src" : "", x->ndim);
    for (int d = 0; d < nd; d++) {
        int64_t ni = nonempty_size(idx, d);
        if (d != dim && ni > nonempty_size(x, d))
            return emo_err(EM_ERR_SHAPE, NULL, in, n_in, "index size %lld at dim %d exceeds the input's %lld; "
                           "outside dim %lld the index must not be larger than the input", (long long)ni, d,
                           (long long)nonempty_size(x, d), (long long)dim);
        if (src && ni > nonempty_size(src, d))
            return emo_err(EM_ERR_SHAPE, NULL, in, n_in, "index size %lld at dim %d exceeds src's %lld; the "
                           "index must not be larger than src", (long long)ni, d, (long long)nonempty_size(src, d));
    }
    return EM_OK;
}

EMO_INFER(emo_infer_gather) {
    EM_UNUSED(n_in);
    em_status st = index_shape_check(in, 2, &in[0], &in[1], NULL, a->j[1]);
    if (st != EM_OK) return st;
    out[0] = in[1];
    out[0].dtype = in[0].dtype;
    *n_out = 1;
    return EM_OK;
}

/* one gather task; false (with the bad index) when an index is out of range */
static bool gather_task(const loop_geo *g, int64_t t, int64_t *bad) {
    geo_task w = geo_task_of(g, t);
    switch (g->es) {
    case 1: GEO_BLOCK(uint8_t, *A_AT = *B_AT); break;
    case 2: GEO_BLOCK(uint16_t, *A_AT = *B_AT); break;
    case 4: GEO_BLOCK(uint32_t, *A_AT = *B_AT); break;
    default: GEO_BLOCK(uint64_t, *A_AT = *B_AT); break;
    }
    return true;
}

static em_status index_error(const char *op, int64_t v, int dim, int64_t size) {
    return em_seterr(EM_ERR_INDEX, "%s: index %lld is out of range for dim %d of size %lld (indices must be in "
                     "0..%lld; negative indices are not allowed)", op, (long long)v, dim, (long long)size,
                     (long long)size - 1);
}

EMO_KERNEL(emo_k_gather) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    int64_t total = emt_numel(out[0]), badv = 0;
    int nth = total >= PAR_MIN ? emb_num_threads() : 1, bad = 0;
    if (total == 0) return EM_OK;
    loop_geo g;
    geo_init(&g, out[0], in[1], in[0], (int)a->j[1], true, nth);
#pragma omp parallel for schedule(static) num_threads(nth) if (nth > 1)
    for (int64_t t = 0; t < g.tasks; t++) {
        int64_t v;
        if (!gather_task(&g, t, &v)) {
#pragma omp critical(emo_gather_bad)
            {
                bad = 1;
                badv = v;
            }
        }
    }
    return bad ? index_error("em_gather", badv, (int)a->j[1], g.bsize) : EM_OK;
}

/* d x[p with p[dim] = index[p]] += gout[p]: a scatter_add into zeros */
EMO_BACKWARD(emo_bw_gather) {
    const emo_meta *m = &c->in_meta[0];
    if (!c->needs_grad[0]) return EM_OK;
    em_tensor_t *z = em_zeros(m->shape, m->ndim, gout[0]->dtype);
    gin[0] = em_scatter_add(z, (int)c->attrs->j[1], c->in[1], gout[0]);
    return gin[0] ? EM_OK : em_last_status();
}

/* ---- scatter_add: j[1] dim -------------------------------------------------------------------- */
EMO_INFER(emo_infer_scatter_add) {
    EM_UNUSED(n_in);
    em_status st = index_shape_check(in, 3, &in[0], &in[1], &in[2], a->j[1]);
    if (st != EM_OK) return st;
    if (in[2].dtype != in[0].dtype)
        return emo_err(EM_ERR_DTYPE, NULL, in, 3, "src is %s but the input is %s; they must match (em_cast src)",
                       em_dtype_name(in[2].dtype), em_dtype_name(in[0].dtype));
    out[0] = in[0];
    *n_out = 1;
    return EM_OK;
}

/* B[.., index, ..] = ADD(B, A) for one task */
#define SCATTER(T, ADD) GEO_BLOCK(T, *B_AT = ADD(*B_AT, *A_AT))
#define ADD_PLAIN(b, a) ((b) + (a))
#define ADD_I32(b, a) ((int32_t)((uint32_t)(b) + (uint32_t)(a)))
#define ADD_I64(b, a) ((int64_t)((uint64_t)(b) + (uint64_t)(a)))
#define ADD_U8(b, a) ((uint8_t)((b) + (a)))
#define ADD_BOOL(b, a) ((uint8_t)((b) | (a)))
#define ADD_F16(b, a) emt_f32_to_f16(emt_f16_to_f32(b) + emt_f16_to_f32(a))
#define ADD_BF16(b, a) emt_f32_to_bf16(emt_bf16_to_f32(b) + emt_bf16_to_f32(a))

static bool scatter_task(const loop_geo *g, em_dtype dt, int64_t t, int64_t *bad) {
    geo_task w = geo_task_of(g, t);
    switch (dt) {
    case EM_F32: SCATTER(float, ADD_PLAIN); break;
    case EM_F64: SCATTER(double, ADD_PLAIN); break;
    case EM_F16: SCATTER(uint16_t, ADD_F16); break;
    case EM_BF16: SCATTER(uint16_t, ADD_BF16); break;
    case EM_I32: SCATTER(int32_t, ADD_I32); break;
    case EM_I64: SCATTER(int64_t, ADD_I64); break;
    case EM_U8: SCATTER(uint8_t, ADD_U8); break;
    case EM_BOOL: SCATTER(uint8_t, ADD_BOOL); break;
    }
    return true;
}

EMO_KERNEL(emo_k_scatter_add) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    emt_copy(out[0], in[0]);
    int64_t total = emt_numel(in[1]), badv = 0;
    int nth = total >= PAR_MIN ? emb_num_threads() : 1, bad = 0;
    if (total == 0) return EM_OK;
    loop_geo g;
    geo_init(&g, in[2], in[1], out[0], (int)a->j[1], false, nth);
#pragma omp parallel for schedule(static) num_threads(nth) if (nth > 1)
    for (int64_t t = 0; t < g.tasks; t++) {
        int64_t v;
        if (!scatter_task(&g, out[0]->dtype, t, &v)) {
#pragma omp critical(emo_scatter_bad)
            {
                bad = 1;
                badv = v;
            }
        }
    }
    return bad ? index_error("em_scatter_add", badv, (int)a->j[1], g.bsize) : EM_OK;
}

/* gx = gout; gsrc = gout gathered at the index, zero-padded where src is larger than index */
EMO_BACKWARD(emo_bw_scatter_add) {
    int dim = (int)c->attrs->j[1];
    if (c->needs_grad[0]) gin[0] = gout[0];
    if (!c->needs_grad[2]) return EM_OK;
    em_tensor_t *g = em_gather(gout[0], dim, c->in[1]);
    const emo_meta *ms = &c->in_meta[2], *mi = &c->in_meta[1];
    int64_t pads[2 * EM_MAX_DIMS] = {0}, ish[EM_MAX_DIMS];
    bool pad = false;
    for (int d = 0; d < ms->ndim; d++) {
        ish[d] = nonempty_size(mi, d);
        pads[2 * (ms->ndim - 1 - d) + 1] = ms->shape[d] - ish[d];
        pad |= ms->shape[d] != ish[d];
    }
    if (g && mi->ndim != ms->ndim) g = em_reshape(g, ish, ms->ndim); /* a 0-dim index with 1-d src */
    if (g && pad) g = em_pad(g, pads, 2 * ms->ndim, 0.0);
    gin[2] = g;
    return g ? EM_OK : em_last_status();
}

/* ---- index_select: j[1] dim; index 1-d or 0-dim --------------------------------------------- */
EMO_INFER(emo_infer_index_select) {
    EM_UNUSED(n_in);
    int64_t dim = a->j[1];
    const emo_meta *x = &in[0], *idx = &in[1];
    if (!is_index_dtype(idx->dtype))
        return emo_err(EM_ERR_DTYPE, NULL, in, 2, "index must be i64 or i32, got %s (em_cast it)", em_dtype_name(idx->dtype));
    if (idx->ndim > 1) return emo_err(EM_ERR_SHAPE, NULL, in, 2, "index must be 1-d or 0-dim, it has %d dims", idx->ndim);
    if (dim < 0 || dim >= nonempty_ndim(x->ndim))
        return emo_err(EM_ERR_ARG, NULL, in, 2, "dim %lld is out of range for %d dims", (long long)dim, x->ndim);
    int64_t n = emt_numel_shape(idx->shape, idx->ndim);
    out[0] = *x;
    if (x->ndim == 0) {
        if (n != 1) return emo_err(EM_ERR_SHAPE, NULL, in, 2, "a 0-dim input takes exactly one index, got %lld", (long long)n);
    } else {
        out[0].shape[dim] = n;
    }
    *n_out = 1;
    return EM_OK;
}

/* out (O, N) = x (O, X) at the N indices, for elements of type T */
#define SELECT1(T)                                                                             \
    do {                                                                                       \
        const T *s_ = (const T *)(const void *)src;                                            \
        T *d_ = (T *)(void *)dst;                                                              \
        _Pragma("omp parallel for schedule(static) num_threads(nth) if (nth > 1)")             \
        for (int64_t o = 0; o < O; o++)                                                        \
            for (int64_t k = 0; k < n; k++) d_[o * n + k] = s_[o * X + iv[k]];                 \
    } while (0)

/* out (O, N, I) = x (O, X, I) rows picked by the N indices; x made contiguous first */
EMO_KERNEL(emo_k_index_select) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    int dim = (int)a->j[1];
    em_tensor_t *x = in[0], *idx = in[1];
    int64_t n = emt_numel(idx), X = x->ndim ? x->shape[dim] : 1, O = 1, I = 1;
    for (int d = 0; d < x->ndim; d++) {
        if (d < dim) O *= x->shape[d];
        if (d > dim) I *= x->shape[d];
    }
    int64_t *iv = malloc((size_t)(n > 0 ? n : 1) * sizeof *iv);
    if (!iv) return em_seterr(EM_ERR_OOM, "em_index_select: out of memory");
    const char *ip = emt_data(idx);
    int64_t is = idx->ndim ? idx->strides[0] : 0;
    for (int64_t k = 0; k < n; k++) {
        iv[k] = idx->dtype == EM_I64 ? ((const int64_t *)(const void *)ip)[k * is]
                                     : ((const int32_t *)(const void *)ip)[k * is];
        if (iv[k] < 0 || iv[k] >= X) {
            em_status st = index_error("em_index_select", iv[k], dim, X);
            free(iv);
            return st;
        }
    }
    if (emt_numel(out[0]) == 0) {
        free(iv);
        return EM_OK;
    }
    em_tensor_t *xc = emt_as_contiguous(x, x->dtype);
    if (!xc) {
        free(iv);
        return em_last_status();
    }
    size_t es = emt_esize(x->dtype), row = (size_t)I * es;
    const char *src = emt_data(xc);
    char *dst = emt_data(out[0]);
    int64_t tasks = O * n;
    int nth = tasks * I >= PAR_MIN && tasks > 1 ? emb_num_threads() : 1;
    if (I == 1) { /* one element per row: typed loads instead of tiny memcpys */
        switch (es) {
        case 1: SELECT1(uint8_t); break;
        case 2: SELECT1(uint16_t); break;
        case 4: SELECT1(uint32_t); break;
        default: SELECT1(uint64_t); break;
        }
    } else {
#pragma omp parallel for schedule(static) num_threads(nth) if (nth > 1)
        for (int64_t t = 0; t < tasks; t++) {
            int64_t o = t / n, k = t % n;
            memcpy(dst + (size_t)t * row, src + (size_t)(o * X + iv[k]) * row, row);
        }
    }
    em_release(xc);
    free(iv);
    return EM_OK;
}

/* gx = zeros(x) scatter-added with gout at the index expanded to gout's shape */
EMO_BACKWARD(emo_bw_index_select) {
    if (!c->needs_grad[0]) return EM_OK;
    int dim = (int)c->attrs->j[1];
    const emo_meta *m = &c->in_meta[0];
    em_tensor_t *g = gout[0], *idx = c->in[1];
    int64_t sh[EM_MAX_DIMS];
    for (int d = 0; d < g->ndim; d++) sh[d] = d == dim ? g->shape[d] : 1;
    idx = em_reshape(idx, sh, g->ndim);
    idx = em_expand(idx, g->shape, g->ndim);
    em_tensor_t *z = em_zeros(m->shape, m->ndim, g->dtype);
    gin[0] = em_scatter_add(z, dim, idx, g);
    return gin[0] ? EM_OK : em_last_status();
}

/* ---- triu / tril: j[0] diagonal; the last two dims are the matrix -------------------------- */
EMO_INFER(emo_infer_tri) {
    EM_UNUSED(a);
    EM_UNUSED(n_in);
    if (in[0].ndim < 2)
        return emo_err(EM_ERR_SHAPE, NULL, in, 1, "needs at least 2 dims (the last two form the matrices), got %d",
                       in[0].ndim);
    out[0] = in[0];
    *n_out = 1;
    return EM_OK;
}

/* copy x, then zero per row: triu keeps cols j >= i + k, tril keeps cols j <= i + k */
static em_status tri_kernel(em_tensor_t *x, em_tensor_t *o, int64_t k, bool upper) {
    copy_same(o, x);
    int64_t H = o->shape[o->ndim - 2], W = o->shape[o->ndim - 1], rows = emt_numel(o) / (W > 0 ? W : 1);
    if (emt_numel(o) == 0) return EM_OK;
    k = EM_MAX(-(H + 1), EM_MIN(k, W + 1)); /* same result, and i + k cannot overflow */
    size_t es = emt_esize(o->dtype);
    char *p = emt_data(o);
    int nth = emt_numel(o) >= PAR_MIN ? emb_num_threads() : 1;
#pragma omp parallel for schedule(static) num_threads(nth) if (nth > 1)
    for (int64_t r = 0; r < rows; r++) {
        int64_t i = r % H, lo, hi; /* zero cols [lo, hi) */
        if (upper) {
            lo = 0;
            hi = EM_MAX(0, EM_MIN(W, i + k));
        } else {
            lo = EM_MAX(0, EM_MIN(W, i + k + 1));
            hi = W;
        }
        if (hi > lo) memset(p + (size_t)(r * W + lo) * es, 0, (size_t)(hi - lo) * es);
    }
    return EM_OK;
}

EMO_KERNEL(emo_k_triu) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    return tri_kernel(in[0], out[0], a->j[0], true);
}

EMO_KERNEL(emo_k_tril) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    return tri_kernel(in[0], out[0], a->j[0], false);
}

EMO_BACKWARD(emo_bw_triu) {
    gin[0] = em_triu(gout[0], c->attrs->j[0]);
    return gin[0] ? EM_OK : em_last_status();
}

EMO_BACKWARD(emo_bw_tril) {
    gin[0] = em_tril(gout[0], c->attrs->j[0]);
    return gin[0] ? EM_OK : em_last_status();
}

/* where(col - row >= k (triu) or <= k (tril), x, 0) with iotas for rows (H,1) and cols (1,W) */
static em_status tri_decomp(em_tensor_t *x, int64_t k, bool upper, em_tensor_t **out) {
    int64_t H = x->shape[x->ndim - 2], W = x->shape[x->ndim - 1];
    em_tensor_t *rows = em_reshape(em_arange(0, (double)H, 1, EM_I64), (int64_t[]){H, 1}, 2);
    em_tensor_t *cols = em_reshape(em_arange(0, (double)W, 1, EM_I64), (int64_t[]){1, W}, 2);
    em_tensor_t *diff = em_sub(cols, rows), *kk = em_scalar((double)k, EM_I64);
    em_tensor_t *mask = upper ? em_ge(diff, kk) : em_le(diff, kk);
    out[0] = em_where(mask, x, em_zeros(NULL, 0, x->dtype));
    return out[0] ? EM_OK : em_last_status();
}

EMO_DECOMP(emo_dc_triu) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    return tri_decomp(in[0], a->j[0], true, out);
}

EMO_DECOMP(emo_dc_tril) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    return tri_decomp(in[0], a->j[0], false, out);
}

/* ---- pad: i = pads (last dim first, lo/hi pairs), f[0] value --------------------------------
 * Negative pads crop first (as PyTorch's constant pad allows), then positive pads add value. */
EMO_INFER(emo_infer_pad) {
    EM_UNUSED(n_in);
    const emo_meta *x = &in[0];
    if (a->ni % 2 != 0) return emo_err(EM_ERR_ARG, NULL, in, 1, "pads must come in (lo, hi) pairs, got %d values", a->ni);
    if (a->ni / 2 > x->ndim)
        return emo_err(EM_ERR_ARG, NULL, in, 1, "%d pads pad %d dims but the input has %d", a->ni, a->ni / 2, x->ndim);
    out[0] = *x;
    for (int k = 0; k < a->ni / 2; k++) {
        int d = x->ndim - 1 - k;
        int64_t lo = a->i[2 * k], hi = a->i[2 * k + 1], s = x->shape[d];
        int64_t kept = s + EM_MIN(lo, 0) + EM_MIN(hi, 0);
        if (kept < 0)
            return emo_err(EM_ERR_SHAPE, NULL, in, 1, "negative pads (%lld, %lld) crop more than the %lld elements of "
                           "dim %d", (long long)lo, (long long)hi, (long long)s, d);
        if (lo > ((int64_t)1 << 40) || hi > ((int64_t)1 << 40))
            return emo_err(EM_ERR_ARG, NULL, in, 1, "pads (%lld, %lld) are too large", (long long)lo, (long long)hi);
        out[0].shape[d] = s + lo + hi;
    }
    *n_out = 1;
    return EM_OK;
}

EMO_KERNEL(emo_k_pad) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    em_tensor_t *x = in[0], *o = out[0];
    int nd = x->ndim;
    int64_t len[EM_MAX_DIMS], xs[EM_MAX_DIMS] = {0}, os[EM_MAX_DIMS] = {0};
    bool grow = false;
    for (int d = 0; d < nd; d++) len[d] = x->shape[d];
    for (int k = 0; k < a->ni / 2; k++) {
        int d = nd - 1 - k;
        int64_t lo = a->i[2 * k], hi = a->i[2 * k + 1];
        xs[d] = EM_MAX(-lo, 0);
        os[d] = EM_MAX(lo, 0);
        len[d] = x->shape[d] + EM_MIN(lo, 0) + EM_MIN(hi, 0);
        grow |= lo > 0 || hi > 0;
    }
    if (grow) fill_value(o, a->f[0]);
    if (emt_numel_shape(len, nd) == 0) return EM_OK;
    em_tensor_t *vx = sub_view(x, len, xs), *vo = sub_view(o, len, os);
    if (vx && vo) copy_same(vo, vx);
    em_release(vx);
    em_release(vo);
    return vx && vo ? EM_OK : em_last_status();
}

/* positive pads are sliced off gout; negative pads (crops) are padded back with zeros */
EMO_BACKWARD(emo_bw_pad) {
    const emo_meta *m = &c->in_meta[0];
    const int64_t *p = c->attrs->i;
    int np = c->attrs->ni;
    em_tensor_t *g = gout[0];
    int64_t back[2 * EM_MAX_DIMS] = {0};
    bool crop = false;
    for (int k = 0; k < np / 2 && g; k++) {
        int d = m->ndim - 1 - k;
        int64_t lo = EM_MAX(p[2 * k], 0), hi = EM_MAX(p[2 * k + 1], 0);
        if (lo > 0 || hi > 0) g = em_slice(g, d, lo, g->shape[d] - hi, 1);
        back[2 * k] = EM_MAX(-p[2 * k], 0);
        back[2 * k + 1] = EM_MAX(-p[2 * k + 1], 0);
        crop |= back[2 * k] > 0 || back[2 * k + 1] > 0;
    }
    if (g && crop) g = em_pad(g, back, np, 0.0);
    gin[0] = g;
    return g ? EM_OK : em_last_status();
}

/* ---- repeat: i = repeats (n >= ndim; leading repeats add dims) --------------------------------- */
EMO_INFER(emo_infer_repeat) {
    EM_UNUSED(n_in);
    const emo_meta *x = &in[0];
    int n = a->ni, lead = n - x->ndim;
    if (n < x->ndim)
        return emo_err(EM_ERR_ARG, NULL, in, 1, "%d repeats for a tensor with %d dims; give at least one per dim", n,
                       x->ndim);
    if (n > EM_MAX_DIMS) return emo_err(EM_ERR_ARG, NULL, in, 1, "at most %d repeats", EM_MAX_DIMS);
    int64_t total = 1;
    out[0].dtype = x->dtype;
    out[0].ndim = n;
    for (int d = 0; d < n; d++) {
        int64_t r = a->i[d], s = d < lead ? 1 : x->shape[d - lead];
        if (r < 0) return emo_err(EM_ERR_ARG, NULL, in, 1, "repeat %lld at dim %d is negative", (long long)r, d);
        if (emb_mul_overflows(r, s, &out[0].shape[d]) || emb_mul_overflows(total, out[0].shape[d], &total) ||
            total > ((int64_t)1 << 44))
            return emo_err(EM_ERR_SHAPE, NULL, in, 1, "the result is too large");
    }
    *n_out = 1;
    return EM_OK;
}

/* x with leading size-1 dims up to n dims (shape s) */
static void repeat_padded(const int64_t *xshape, int nd, int n, int64_t *s) {
    for (int d = 0; d < n; d++) s[d] = d < n - nd ? 1 : xshape[d - (n - nd)];
}

/* x is copied into the first block; then, last dim first, the filled region is doubled along
   each dim until it has its repeats (log2 copies per dim) */
EMO_KERNEL(emo_k_repeat) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    em_tensor_t *x = in[0], *o = out[0];
    int n = o->ndim;
    if (emt_numel(o) == 0) return EM_OK;
    int64_t s[EM_MAX_DIMS], xst[EM_MAX_DIMS], cur[EM_MAX_DIMS], zero[EM_MAX_DIMS] = {0};
    repeat_padded(x->shape, x->ndim, n, s);
    for (int d = 0; d < n; d++) xst[d] = d < n - x->ndim ? 0 : x->strides[d - (n - x->ndim)];
    em_tensor_t *xv = emt_view(x, s, xst, n, x->offset), *blk = sub_view(o, s, zero);
    if (xv && blk) copy_same(blk, xv);
    em_release(xv);
    em_release(blk);
    if (!xv || !blk) return em_last_status();
    memcpy(cur, s, sizeof cur);
    for (int d = n - 1; d >= 0; d--) {
        int64_t r = a->i[d], done = 1;
        while (done < r) {
            int64_t m = EM_MIN(done, r - done), at[EM_MAX_DIMS] = {0};
            cur[d] = m * s[d];
            at[d] = done * s[d];
            em_tensor_t *src = sub_view(o, cur, zero), *dst = sub_view(o, cur, at);
            if (src && dst) copy_same(dst, src);
            em_release(src);
            em_release(dst);
            if (!src || !dst) return em_last_status();
            done += m;
        }
        cur[d] = o->shape[d];
    }
    return EM_OK;
}

/* g (A, r*s, B) -> (A, s, B) summed over the r copies, for one dim at a time */
static em_tensor_t *sum_repeats_one(em_tensor_t *g, int d, int64_t r, int64_t s) {
    int64_t A = 1, B = 1, sh[EM_MAX_DIMS];
    for (int e = 0; e < g->ndim; e++) {
        if (e < d) A *= g->shape[e];
        if (e > d) B *= g->shape[e];
        sh[e] = e == d ? s : g->shape[e];
    }
    int nd = g->ndim;
    em_tensor_t *t = em_reshape(g, (int64_t[]){A, r, s, B}, 4);
    t = em_sum(t, (int[]){1}, 1, false);
    return em_reshape(t, sh, nd);
}

/* gout reshaped to (r0, s0, r1, s1, ...) (r kept only where r != 1) and summed over the r dims;
   one dim at a time when that shape has more than EM_MAX_DIMS dims */
EMO_BACKWARD(emo_bw_repeat) {
    const emo_meta *m = &c->in_meta[0];
    const int64_t *r = c->attrs->i;
    int n = c->attrs->ni;
    int64_t s[EM_MAX_DIMS] = {0}, sh[2 * EM_MAX_DIMS] = {0};
    int dims[EM_MAX_DIMS], k = 0, nd = 0;
    repeat_padded(m->shape, m->ndim, n, s);
    for (int d = 0; d < n; d++) {
        if (r[d] != 1) {
            dims[nd++] = k;
            sh[k++] = r[d];
        }
        sh[k++] = s[d];
    }
    em_tensor_t *g = gout[0];
    if (k <= EM_MAX_DIMS) {
        g = em_reshape(g, sh, k);
        if (g && nd > 0) g = em_sum(g, dims, nd, false);
    } else {
        for (int d = 0; d < n && g; d++)
            if (r[d] != 1) g = sum_repeats_one(g, d, r[d], s[d]);
    }
    gin[0] = g ? em_reshape(g, m->shape, m->ndim) : NULL;
    return gin[0] ? EM_OK : em_last_status();
}

/* x viewed with leading dims, then per repeated dim: (A, 1, s, B) expanded to (A, r, s, B) and
   flattened back */
EMO_DECOMP(emo_dc_repeat) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    em_tensor_t *x = in[0];
    int n = a->ni;
    int64_t cur[EM_MAX_DIMS] = {0};
    repeat_padded(x->shape, x->ndim, n, cur);
    em_tensor_t *g = em_reshape(x, cur, n);
    bool copied = false;
    for (int d = 0; d < n && g; d++) {
        int64_t r = a->i[d], s = cur[d], A = 1, B = 1;
        if (r == 1) continue;
        for (int e = 0; e < n; e++) {
            if (e < d) A *= cur[e];
            if (e > d) B *= cur[e];
        }
        g = em_reshape(g, (int64_t[]){A, 1, s, B}, 4);
        g = em_expand(g, (int64_t[]){A, r, s, B}, 4);
        cur[d] = r * s;
        g = em_reshape(g, cur, n);
        copied = true;
    }
    out[0] = g && !copied ? em_clone(g) : g;
    return out[0] ? EM_OK : em_last_status();
}

/* ---- flip: i = dims -------------------------------------------------------------------------- */
EMO_INFER(emo_infer_flip) {
    EM_UNUSED(n_in);
    bool seen[EM_MAX_DIMS] = {0};
    int nd = nonempty_ndim(in[0].ndim);
    for (int k = 0; k < a->ni; k++) {
        int64_t d = a->i[k];
        if (d < 0 || d >= nd)
            return emo_err(EM_ERR_ARG, NULL, in, 1, "dim %lld is out of range for %d dims", (long long)d, in[0].ndim);
        if (seen[d]) return emo_err(EM_ERR_ARG, NULL, in, 1, "dim %lld appears twice in dims", (long long)d);
        seen[d] = true;
    }
    out[0] = in[0];
    *n_out = 1;
    return EM_OK;
}

/* out = x read through a view whose flipped dims have negated strides */
EMO_KERNEL(emo_k_flip) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    em_tensor_t *x = in[0];
    if (emt_numel(x) == 0) return EM_OK;
    int64_t st[EM_MAX_DIMS], off = x->offset;
    memcpy(st, x->strides, sizeof st);
    for (int k = 0; k < a->ni; k++) {
        int d = (int)a->i[k];
        if (d >= x->ndim) continue; /* dim 0 of a 0-dim tensor */
        off += (x->shape[d] - 1) * st[d];
        st[d] = -st[d];
    }
    em_tensor_t *v = emt_view(x, x->shape, st, x->ndim, off);
    if (!v) return em_last_status();
    copy_same(out[0], v);
    em_release(v);
    return EM_OK;
}

EMO_BACKWARD(emo_bw_flip) {
    int dims[EM_MAX_DIMS];
    for (int k = 0; k < c->attrs->ni; k++) dims[k] = (int)c->attrs->i[k];
    gin[0] = em_flip(gout[0], dims, c->attrs->ni);
    return gin[0] ? EM_OK : em_last_status();
}

/* ---- public wrappers --------------------------------------------------------------------------- */
static bool list_ok(const char *op, const void *ts, int n, int min, int max, const char *what) {
    if (n < min || n > max)
        return em_seterr(EM_ERR_ARG, "%s: %s has %d entries; it takes %d..%d", op, what, n, min, max), false;
    if (n > 0 && !ts) return em_seterr(EM_ERR_ARG, "%s: %s is NULL", op, what), false;
    return true;
}

em_tensor_t *em_cat(em_tensor_t *const *ts, int n, int dim) {
    if (!list_ok("em_cat", ts, n, 1, 4096, "the tensor list")) return NULL;
    int ref = 0;
    for (int i = 0; i < n; i++) {
        char what[32];
        snprintf(what, sizeof what, "ts[%d]", i);
        if (!emt_check(ts[i], "em_cat", what)) return NULL;
    }
    for (int i = n - 1; i >= 0; i--)
        if (!(ts[i]->ndim == 1 && ts[i]->shape[0] == 0)) ref = i;
    if (!emt_wrap_dim(&dim, ts[ref]->ndim, "em_cat")) return NULL;
    emo_attrs a = emo_attrs0();
    a.j[1] = dim;
    return emo_call1(EMO_cat, ts, n, &a);
}

em_tensor_t *em_stack(em_tensor_t *const *ts, int n, int dim) {
    if (!list_ok("em_stack", ts, n, 1, 4096, "the tensor list") || !emt_check(ts[0], "em_stack", "ts[0]")) return NULL;
    if (!emt_wrap_dim(&dim, ts[0]->ndim + 1, "em_stack")) return NULL;
    emo_attrs a = emo_attrs0();
    a.j[1] = dim;
    return emo_call1(EMO_stack, ts, n, &a);
}

int em_split(em_tensor_t *x, int64_t split_size, int dim, em_tensor_t **out, int max_out) {
    if (!emt_check(x, "em_split", "x")) return -1;
    if (max_out < 0 || (max_out > 0 && !out))
        return em_seterr(EM_ERR_ARG, "em_split: out is NULL or max_out (%d) is negative", max_out), -1;
    if (x->ndim == 0) return em_seterr(EM_ERR_ARG, "em_split: cannot split a 0-dim tensor"), -1;
    if (!emt_wrap_dim(&dim, x->ndim, "em_split")) return -1;
    emo_attrs a = emo_attrs0();
    a.j[0] = split_size;
    a.j[1] = dim;
    return emo_call(EMO_split, &x, 1, &a, out, max_out);
}

/* (x, index[, src]) with dim normalised against x */
static em_tensor_t *index_op(const char *op, emo_op o, em_tensor_t *x, int dim, em_tensor_t *index, em_tensor_t *src) {
    if (!emt_check(x, op, "x") || !emt_check(index, op, "index") || (o == EMO_scatter_add && !emt_check(src, op, "src")))
        return NULL;
    if (!emt_wrap_dim(&dim, x->ndim, op)) return NULL;
    emo_attrs a = emo_attrs0();
    a.j[1] = dim;
    em_tensor_t *in[3] = {x, index, src};
    return emo_call1(o, in, o == EMO_scatter_add ? 3 : 2, &a);
}

em_tensor_t *em_gather(em_tensor_t *x, int dim, em_tensor_t *index) {
    return index_op("em_gather", EMO_gather, x, dim, index, NULL);
}

em_tensor_t *em_index_select(em_tensor_t *x, int dim, em_tensor_t *index) {
    return index_op("em_index_select", EMO_index_select, x, dim, index, NULL);
}

em_tensor_t *em_scatter_add(em_tensor_t *x, int dim, em_tensor_t *index, em_tensor_t *src) {
    return index_op("em_scatter_add", EMO_scatter_add, x, dim, index, src);
}

static em_tensor_t *tri_op(const char *op, emo_op o, em_tensor_t *x, int64_t diagonal) {
    if (!emt_check(x, op, "x")) return NULL;
    emo_attrs a = emo_attrs0();
    a.j[0] = diagonal;
    return emo_call1(o, &x, 1, &a);
}

em_tensor_t *em_triu(em_tensor_t *x, int64_t diagonal) { return tri_op("em_triu", EMO_triu, x, diagonal); }
em_tensor_t *em_tril(em_tensor_t *x, int64_t diagonal) { return tri_op("em_tril", EMO_tril, x, diagonal); }

em_tensor_t *em_pad(em_tensor_t *x, const int64_t *pads, int npads, double value) {
    if (!emt_check(x, "em_pad", "x") || !list_ok("em_pad", pads, npads, 0, 2 * EM_MAX_DIMS, "pads")) return NULL;
    emo_attrs a = emo_attrs0();
    for (int k = 0; k < npads; k++) a.i[k] = pads[k];
    a.ni = npads;
    a.f[0] = value;
    return emo_call1(EMO_pad, &x, 1, &a);
}

em_tensor_t *em_repeat(em_tensor_t *x, const int64_t *repeats, int n) {
    if (!emt_check(x, "em_repeat", "x") || !list_ok("em_repeat", repeats, n, 0, EM_MAX_DIMS, "repeats")) return NULL;
    emo_attrs a = emo_attrs0();
    for (int k = 0; k < n; k++) a.i[k] = repeats[k];
    a.ni = n;
    return emo_call1(EMO_repeat, &x, 1, &a);
}

em_tensor_t *em_flip(em_tensor_t *x, const int *dims, int ndims) {
    if (!emt_check(x, "em_flip", "x") || !list_ok("em_flip", dims, ndims, 0, EM_MAX_DIMS, "dims")) return NULL;
    emo_attrs a = emo_attrs0();
    for (int k = 0; k < ndims; k++) {
        int d = dims[k];
        if (!emt_wrap_dim(&d, x->ndim, "em_flip")) return NULL;
        a.i[k] = d;
    }
    a.ni = ndims;
    return emo_call1(EMO_flip, &x, 1, &a);
}
