/* view.c - view ops (reshape, permute, slice, expand), copies and casts, creation ops, and the
 * in-place writes em_assign and em_fill, with their public wrappers.
 *
 * Views share storage and differ only in (shape, strides, offset); their kernels build the new
 * geometry and never touch data. reshape is a view whenever PyTorch's stride rule allows and a
 * copy otherwise; em_view refuses to copy. Creation ops are table ops with no inputs so that a
 * traced function can create constants and random tensors as graph nodes.
 */
#include "kernels.h"

#include "../capture/capture.h"

#include <math.h>

/* ---- reshape ---------------------------------------------------------------------------------- */
/* strides for viewing (shape, stride) as nshape without a copy, after PyTorch's computeStride */
static bool view_strides(const em_tensor_t *t, const int64_t *nshape, int nnd, int64_t *nstride) {
    if (emt_numel(t) == 0 || t->ndim == 0) {
        emt_contig_strides(nshape, nnd, nstride);
        return true;
    }
    int view_d = nnd - 1;
    int64_t chunk = t->strides[t->ndim - 1], tnumel = 1, vnumel = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        tnumel *= t->shape[d];
        if (d == 0 || (t->shape[d - 1] != 1 && t->strides[d - 1] != tnumel * chunk)) {
            while (view_d >= 0 && (vnumel < tnumel || nshape[view_d] == 1)) {
                nstride[view_d] = vnumel * chunk;
                vnumel *= nshape[view_d];
                view_d--;
            }
            if (vnumel != tnumel) return false;
            if (d > 0) {
                chunk = t->strides[d - 1];
                tnumel = 1;
                vnumel = 1;
            }
        }
    }
    return view_d == -1;
}

EMO_INFER(emo_infer_reshape) {
    EM_UNUSED(n_in);
    if (a->ni > EM_MAX_DIMS) return emo_err(EM_ERR_ARG, NULL, in, 1, "at most %d dims", EM_MAX_DIMS);
    out[0].dtype = in[0].dtype;
    out[0].ndim = a->ni;
    int64_t n = 1;
    for (int d = 0; d < a->ni; d++) {
        if (a->i[d] < 0) return emo_err(EM_ERR_SHAPE, NULL, in, 1, "negative size %lld", (long long)a->i[d]);
        if (emb_mul_overflows(n, a->i[d], &n)) return emo_err(EM_ERR_SHAPE, NULL, in, 1, "size overflows");
        out[0].shape[d] = a->i[d];
    }
    if (n != emt_numel_shape(in[0].shape, in[0].ndim)) {
        char b[EMB_SHAPE_BUF];
        return emo_err(EM_ERR_SHAPE, NULL, in, 1, "cannot reshape to %s: it has %lld elements, the input %lld",
                       emb_shape_str(b, a->i, a->ni), (long long)n,
                       (long long)emt_numel_shape(in[0].shape, in[0].ndim));
    }
    *n_out = 1;
    return EM_OK;
}

EMO_KERNEL(emo_k_reshape) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    em_tensor_t *x = in[0];
    int64_t st[EM_MAX_DIMS];
    if (view_strides(x, a->i, a->ni, st)) {
        out[0] = emt_view(x, a->i, st, a->ni, x->offset);
    } else {
        em_tensor_t *c = emt_contiguous_copy(x, x->dtype);
        if (!c) return em_last_status();
        emt_contig_strides(a->i, a->ni, st);
        out[0] = emt_view(c, a->i, st, a->ni, 0);
        em_release(c);
    }
    return out[0] ? EM_OK : em_last_status();
}

EMO_BACKWARD(emo_bw_reshape) {
    gin[0] = em_reshape(gout[0], c->in_meta[0].shape, c->in_meta[0].ndim);
    return gin[0] ? EM_OK : em_last_status();
}

/* ---- permute ---------------------------------------------------------------------------------- */
EMO_INFER(emo_infer_permute) {
    EM_UNUSED(n_in);
    bool seen[EM_MAX_DIMS] = {0};
    if (a->ni != in[0].ndim)
        return emo_err(EM_ERR_ARG, NULL, in, 1, "perm has %d entries for a tensor with %d dims", a->ni, in[0].ndim);
    out[0] = in[0];
    for (int d = 0; d < a->ni; d++) {
        int64_t p = a->i[d];
        if (p < 0 || p >= in[0].ndim || seen[p])
            return emo_err(EM_ERR_ARG, NULL, in, 1, "perm must list each dim 0..%d once (entry %d is %lld)",
                           in[0].ndim - 1, d, (long long)p);
        seen[p] = true;
        out[0].shape[d] = in[0].shape[p];
    }
    *n_out = 1;
    return EM_OK;
}

EMO_KERNEL(emo_k_permute) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    em_tensor_t *x = in[0];
    int64_t sh[EM_MAX_DIMS], st[EM_MAX_DIMS];
    for (int d = 0; d < a->ni; d++) {
        sh[d] = x->shape[a->i[d]];
        st[d] = x->strides[a->i[d]];
    }
    out[0] = emt_view(x, sh, st, a->ni, x->offset);
    return out[0] ? EM_OK : em_last_status();
}

EMO_BACKWARD(emo_bw_permute) {
    int inv[EM_MAX_DIMS];
    for (int d = 0; d < c->attrs->ni; d++) inv[c->attrs->i[d]] = d;
    gin[0] = em_permute(gout[0], inv, c->attrs->ni);
    return gin[0] ? EM_OK : em_last_status();
}

/* ---- slice: j[0] dim, j[1] start, j[2] end, j[3] step (already clamped, step > 0) ------------ */
static int64_t slice_len(int64_t start, int64_t end, int64_t step) {
    return end > start ? (end - start + step - 1) / step : 0;
}

EMO_INFER(emo_infer_slice) {
    EM_UNUSED(n_in);
    int64_t dim = a->j[0], start = a->j[1], end = a->j[2], step = a->j[3];
    if (dim < 0 || dim >= in[0].ndim) return emo_err(EM_ERR_ARG, NULL, in, 1, "dim %lld out of range", (long long)dim);
    if (step <= 0) return emo_err(EM_ERR_ARG, NULL, in, 1, "step must be positive, got %lld", (long long)step);
    if (start < 0 || end < start || end > in[0].shape[dim])
        return emo_err(EM_ERR_ARG, NULL, in, 1, "slice [%lld:%lld] outside 0..%lld", (long long)start,
                       (long long)end, (long long)in[0].shape[dim]);
    out[0] = in[0];
    out[0].shape[dim] = slice_len(start, end, step);
    *n_out = 1;
    return EM_OK;
}

EMO_KERNEL(emo_k_slice) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    em_tensor_t *x = in[0];
    int d = (int)a->j[0];
    int64_t sh[EM_MAX_DIMS], st[EM_MAX_DIMS];
    memcpy(sh, x->shape, sizeof sh);
    memcpy(st, x->strides, sizeof st);
    sh[d] = slice_len(a->j[1], a->j[2], a->j[3]);
    st[d] = x->strides[d] * a->j[3];
    out[0] = emt_view(x, sh, st, x->ndim, x->offset + (sh[d] ? a->j[1] * x->strides[d] : 0));
    return out[0] ? EM_OK : em_last_status();
}

/* the gradient of a slice is gout placed back at its positions, zeros elsewhere, written with
   pad (and, for step > 1, interleaving zeros by padding a new dim and flattening it) */
EMO_BACKWARD(emo_bw_slice) {
    const emo_meta *m = &c->in_meta[0];
    int d = (int)c->attrs->j[0];
    int64_t start = c->attrs->j[1], step = c->attrs->j[3], size = m->shape[d];
    em_tensor_t *g = gout[0];
    int64_t n = g->shape[d];
    if (step > 1 && n > 0) {
        g = em_unsqueeze(g, d + 1);
        int64_t pads[2 * EM_MAX_DIMS] = {0};
        int nd = g->ndim;
        pads[2 * (nd - 1 - (d + 1)) + 1] = step - 1; /* after the element along the new dim */
        g = em_pad(g, pads, 2 * nd, 0.0);
        int64_t sh[EM_MAX_DIMS];
        int k = 0;
        for (int e = 0; g && e < nd; e++) {
            if (e == d + 1) continue;
            sh[k++] = e == d ? n * step : g->shape[e];
        }
        if (g) g = em_reshape(g, sh, nd - 1);
        n *= step;
    }
    if (!g) return em_last_status();
    if (start + n > size) {
        g = em_slice(g, d, 0, size - start, 1);
        n = size - start;
    }
    int64_t pads[2 * EM_MAX_DIMS] = {0};
    pads[2 * (m->ndim - 1 - d)] = start;
    pads[2 * (m->ndim - 1 - d) + 1] = size - start - n;
    gin[0] = g ? em_pad(g, pads, 2 * m->ndim, 0.0) : NULL;
    return gin[0] ? EM_OK : em_last_status();
}

/* ---- expand: i = target shape ------------------------------------------------------------------ */
EMO_INFER(emo_infer_expand) {
    EM_UNUSED(n_in);
    if (a->ni < in[0].ndim || a->ni > EM_MAX_DIMS)
        return emo_err(EM_ERR_SHAPE, NULL, in, 1, "cannot expand to %d dims", a->ni);
    for (int d = 0; d < a->ni; d++) {
        int k = d - (a->ni - in[0].ndim);
        if (a->i[d] < 0 || (k >= 0 && in[0].shape[k] != 1 && in[0].shape[k] != a->i[d])) {
            char b[EMB_SHAPE_BUF];
            return emo_err(EM_ERR_SHAPE, NULL, in, 1, "cannot expand to %s: only size-1 dims can grow",
                           emb_shape_str(b, a->i, a->ni));
        }
        out[0].shape[d] = a->i[d];
    }
    out[0].ndim = a->ni;
    out[0].dtype = in[0].dtype;
    *n_out = 1;
    return EM_OK;
}

EMO_KERNEL(emo_k_expand) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    out[0] = emt_expand_to(in[0], a->i, a->ni);
    return out[0] ? EM_OK : em_last_status();
}

EMO_BACKWARD(emo_bw_expand) {
    EM_UNUSED(c);
    gin[0] = gout[0]; /* the engine sums it back to the input's shape */
    return EM_OK;
}

/* ---- copy and cast ------------------------------------------------------------------------------ */
EMO_KERNEL(emo_k_copy) {
    EM_UNUSED(a);
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    emt_copy(out[0], in[0]);
    return EM_OK;
}

EMO_BACKWARD(emo_bw_copy) {
    EM_UNUSED(c);
    gin[0] = gout[0];
    return EM_OK;
}

EMO_INFER(emo_infer_cast) {
    EM_UNUSED(n_in);
    if ((unsigned)a->dtype >= EM_NUM_DTYPES) return emo_err(EM_ERR_DTYPE, "cast", in, 1, "unknown dtype %d", (int)a->dtype);
    out[0] = in[0];
    out[0].dtype = a->dtype;
    *n_out = 1;
    return EM_OK;
}

EMO_KERNEL(emo_k_cast) { return emo_k_copy(a, in, n_in, out, n_out); }

EMO_BACKWARD(emo_bw_cast) {
    EM_UNUSED(c);
    gin[0] = gout[0]; /* the engine casts it to the input's dtype */
    return EM_OK;
}

/* ---- creation ---------------------------------------------------------------------------------- */
EMO_INFER(emo_infer_full) {
    if (a->ni > EM_MAX_DIMS) return emo_err(EM_ERR_ARG, NULL, in, n_in, "at most %d dims", EM_MAX_DIMS);
    if ((unsigned)a->dtype >= EM_NUM_DTYPES) return emo_err(EM_ERR_DTYPE, NULL, in, n_in, "unknown dtype");
    int64_t n = 1;
    for (int d = 0; d < a->ni; d++) {
        if (a->i[d] < 0 || emb_mul_overflows(n, a->i[d], &n) || n > ((int64_t)1 << 44))
            return emo_err(EM_ERR_SHAPE, NULL, in, n_in, "bad size %lld at dim %d", (long long)a->i[d], d);
        out[0].shape[d] = a->i[d];
    }
    out[0].ndim = a->ni;
    out[0].dtype = a->dtype;
    *n_out = 1;
    return EM_OK;
}

static void fill(em_tensor_t *t, double v) {
    int64_t n = emt_numel(t);
    size_t es = emt_esize(t->dtype);
    char one[8];
    emt_store(one, t->dtype, v);
    EM_ASSERT(emt_is_contiguous(t));
    char *p = emt_data(t);
    if (t->dtype == EM_F32) {
        float f;
        memcpy(&f, one, 4);
        float *q = (float *)(void *)p;
#pragma omp parallel for if (n > 65536) num_threads(emb_num_threads())
        for (int64_t i = 0; i < n; i++) q[i] = f;
        return;
    }
    for (int64_t i = 0; i < n; i++) memcpy(p + (size_t)i * es, one, es);
}

EMO_KERNEL(emo_k_full) {
    EM_UNUSED(in);
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    fill(out[0], a->f[0]);
    return EM_OK;
}

/* randint: full's checks plus a non-empty integer range j[0] <= v < j[1] */
EMO_INFER(emo_infer_randint) {
    if (a->j[1] <= a->j[0])
        return emo_err(EM_ERR_ARG, NULL, in, n_in, "high (%lld) must exceed low (%lld)", (long long)a->j[1],
                       (long long)a->j[0]);
    return emo_infer_full(a, in, n_in, out, n_out);
}

static int64_t arange_len(double start, double end, double step) { return (int64_t)ceil((end - start) / step); }

EMO_INFER(emo_infer_arange) {
    double start = a->f[0], end = a->f[1], step = a->f[2];
    if (!isfinite(start) || !isfinite(end) || !isfinite(step) || step == 0 || (end - start) / step < 0)
        return emo_err(EM_ERR_ARG, NULL, in, n_in, "bad range start=%g end=%g step=%g (step must be non-zero "
                       "and point from start to end)", start, end, step);
    if ((end - start) / step > 1e12) return emo_err(EM_ERR_ARG, NULL, in, n_in, "range too long");
    if ((unsigned)a->dtype >= EM_NUM_DTYPES) return emo_err(EM_ERR_DTYPE, NULL, in, n_in, "unknown dtype");
    out[0].ndim = 1;
    out[0].shape[0] = arange_len(start, end, step);
    out[0].dtype = a->dtype;
    *n_out = 1;
    return EM_OK;
}

EMO_KERNEL(emo_k_arange) {
    EM_UNUSED(in);
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    em_tensor_t *t = out[0];
    char *p = emt_data(t);
    size_t es = emt_esize(t->dtype);
    for (int64_t i = 0; i < t->shape[0]; i++) emt_store(p + (size_t)i * es, t->dtype, a->f[0] + (double)i * a->f[2]);
    return EM_OK;
}

/* element i of a random op is a pure function of (seed, offset + i): any thread order gives the
   same tensor */
static void random_fill(em_tensor_t *t, const emo_attrs *a, bool normal) {
    int64_t n = emt_numel(t);
    char *p = emt_data(t);
    size_t es = emt_esize(t->dtype);
    if (normal && t->dtype == EM_F32) { /* the same floats, faster (random.c) */
        emt_normal_fill_f32(a->seed, a->offset, n, (float *)(void *)p);
        return;
    }
#pragma omp parallel for if (n > 16384) num_threads(emb_num_threads())
    for (int64_t i = 0; i < n; i++) {
        uint64_t ctr = a->offset + (uint64_t)i;
        emt_store(p + (size_t)i * es, t->dtype, normal ? emt_normal_at(a->seed, ctr) : emt_uniform_at(a->seed, ctr));
    }
}

EMO_KERNEL(emo_k_rand) {
    EM_UNUSED(in);
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    random_fill(out[0], a, false);
    return EM_OK;
}

EMO_KERNEL(emo_k_randn) {
    EM_UNUSED(in);
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    random_fill(out[0], a, true);
    return EM_OK;
}

EMO_KERNEL(emo_k_randint) {
    EM_UNUSED(in);
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    em_tensor_t *t = out[0];
    int64_t n = emt_numel(t), lo = a->j[0];
    uint64_t range = (uint64_t)(a->j[1] - a->j[0]);
    char *p = emt_data(t);
    size_t es = emt_esize(t->dtype);
    for (int64_t i = 0; i < n; i++) {
        uint32_t r[4];
        emt_philox(a->seed, a->offset + (uint64_t)i, r);
        uint64_t w = ((uint64_t)r[1] << 32) | r[0];
        emt_store(p + (size_t)i * es, t->dtype, (double)(lo + (int64_t)(w % range)));
    }
    return EM_OK;
}

/* ---- public wrappers: creation ------------------------------------------------------------------ */
static bool shape_attrs(const char *op, const int64_t *shape, int ndim, emo_attrs *a) {
    if (ndim < 0 || ndim > EM_MAX_DIMS)
        return em_seterr(EM_ERR_ARG, "%s: ndim %d must be 0..%d", op, ndim, EM_MAX_DIMS), false;
    if (ndim > 0 && !shape) return em_seterr(EM_ERR_ARG, "%s: shape is NULL", op), false;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0)
            return em_seterr(EM_ERR_ARG, "%s: size %lld at dim %d is negative", op, (long long)shape[d], d), false;
        a->i[d] = shape[d];
    }
    a->ni = ndim;
    return true;
}

static bool dtype_ok(const char *op, em_dtype dt) {
    if ((unsigned)dt < EM_NUM_DTYPES) return true;
    em_seterr(EM_ERR_DTYPE, "%s: unknown dtype %d", op, (int)dt);
    return false;
}

em_tensor_t *em_full(const int64_t *shape, int ndim, double value, em_dtype dt) {
    emo_attrs a = emo_attrs0();
    if (!shape_attrs("em_full", shape, ndim, &a) || !dtype_ok("em_full", dt)) return NULL;
    a.f[0] = value;
    a.dtype = dt;
    return emo_call1(EMO_full, NULL, 0, &a);
}

em_tensor_t *em_zeros(const int64_t *shape, int ndim, em_dtype dt) { return em_full(shape, ndim, 0.0, dt); }
em_tensor_t *em_ones(const int64_t *shape, int ndim, em_dtype dt) { return em_full(shape, ndim, 1.0, dt); }
em_tensor_t *em_scalar(double value, em_dtype dt) { return em_full(NULL, 0, value, dt); }

em_tensor_t *em_empty(const int64_t *shape, int ndim, em_dtype dt) {
    emo_attrs a = emo_attrs0();
    if (!shape_attrs("em_empty", shape, ndim, &a) || !dtype_ok("em_empty", dt)) return NULL;
    if (emcap_tracing()) return em_zeros(shape, ndim, dt); /* a graph has no uninitialised memory */
    return emt_own(emt_new(dt, shape, ndim));
}

em_tensor_t *em_full_like(em_tensor_t *t, double value) {
    if (!emt_check(t, "em_full_like", "t")) return NULL;
    return em_full(t->shape, t->ndim, value, t->dtype);
}
em_tensor_t *em_zeros_like(em_tensor_t *t) { return em_full_like(t, 0.0); }
em_tensor_t *em_ones_like(em_tensor_t *t) { return em_full_like(t, 1.0); }

em_tensor_t *em_arange(double start, double end, double step, em_dtype dt) {
    emo_attrs a = emo_attrs0();
    if (!dtype_ok("em_arange", dt)) return NULL;
    a.f[0] = start;
    a.f[1] = end;
    a.f[2] = step;
    a.dtype = dt;
    return emo_call1(EMO_arange, NULL, 0, &a);
}

em_tensor_t *em_from_data(const void *data, const int64_t *shape, int ndim, em_dtype dt) {
    emo_attrs a = emo_attrs0();
    if (!shape_attrs("em_from_data", shape, ndim, &a) || !dtype_ok("em_from_data", dt)) return NULL;
    if (!data && emt_numel_shape(shape, ndim) > 0) return em_seterr_null(EM_ERR_ARG, "em_from_data: data is NULL");
    em_tensor_t *t = emt_new(dt, shape, ndim);
    if (!t) return NULL;
    memcpy(t->storage->data, data, (size_t)emt_numel(t) * emt_esize(dt));
    return emt_own(t);
}

static em_tensor_t *random_op(const char *op, emo_op o, const int64_t *shape, int ndim, em_dtype dt, emo_attrs *a) {
    if (!shape_attrs(op, shape, ndim, a) || !dtype_ok(op, dt)) return NULL;
    a->dtype = dt;
    a->offset = emt_rng_reserve((uint64_t)emt_numel_shape(shape, ndim), &a->seed);
    return emo_call1(o, NULL, 0, a);
}

em_tensor_t *em_rand(const int64_t *shape, int ndim, em_dtype dt) {
    emo_attrs a = emo_attrs0();
    if (!emt_is_float(dt)) return em_seterr_null(EM_ERR_DTYPE, "em_rand: dtype must be floating, got %s", em_dtype_name(dt));
    return random_op("em_rand", EMO_rand, shape, ndim, dt, &a);
}

em_tensor_t *em_randn(const int64_t *shape, int ndim, em_dtype dt) {
    emo_attrs a = emo_attrs0();
    if (!emt_is_float(dt)) return em_seterr_null(EM_ERR_DTYPE, "em_randn: dtype must be floating, got %s", em_dtype_name(dt));
    return random_op("em_randn", EMO_randn, shape, ndim, dt, &a);
}

em_tensor_t *em_randint(int64_t low, int64_t high, const int64_t *shape, int ndim, em_dtype dt) {
    emo_attrs a = emo_attrs0();
    if (high <= low) return em_seterr_null(EM_ERR_ARG, "em_randint: high (%lld) must exceed low (%lld)", (long long)high, (long long)low);
    a.j[0] = low;
    a.j[1] = high;
    return random_op("em_randint", EMO_randint, shape, ndim, dt, &a);
}

/* ---- public wrappers: views -------------------------------------------------------------------- */
static bool resolve_shape(const char *op, em_tensor_t *x, const int64_t *shape, int ndim, emo_attrs *a) {
    if (ndim < 0 || ndim > EM_MAX_DIMS || (ndim > 0 && !shape))
        return em_seterr(EM_ERR_ARG, "%s: bad shape (ndim %d)", op, ndim), false;
    int infer_at = -1;
    int64_t known = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == -1 && infer_at < 0) infer_at = d;
        else if (shape[d] < 0) return em_seterr(EM_ERR_ARG, "%s: size %lld at dim %d (only one -1 allowed)", op, (long long)shape[d], d), false;
        else known *= shape[d];
        a->i[d] = shape[d];
    }
    a->ni = ndim;
    if (infer_at >= 0) {
        int64_t n = emt_numel(x);
        char b1[EMB_SHAPE_BUF], b2[EMB_SHAPE_BUF];
        if (known == 0 || n % known != 0)
            return em_seterr(EM_ERR_SHAPE, "%s: cannot reshape %s into %s", op, emb_shape_str(b1, x->shape, x->ndim),
                             emb_shape_str(b2, shape, ndim)), false;
        a->i[infer_at] = n / known;
    }
    return true;
}

em_tensor_t *em_reshape(em_tensor_t *x, const int64_t *shape, int ndim) {
    emo_attrs a = emo_attrs0();
    if (!emt_check(x, "em_reshape", "x") || !resolve_shape("em_reshape", x, shape, ndim, &a)) return NULL;
    return emo_call1(EMO_reshape, &x, 1, &a);
}

em_tensor_t *em_view(em_tensor_t *x, const int64_t *shape, int ndim) {
    emo_attrs a = emo_attrs0();
    if (!emt_check(x, "em_view", "x") || !resolve_shape("em_view", x, shape, ndim, &a)) return NULL;
    int64_t st[EM_MAX_DIMS];
    if (emt_numel_shape(a.i, a.ni) == emt_numel(x) && !view_strides(x, a.i, a.ni, st))
        return em_seterr_null(EM_ERR_SHAPE, "em_view: the input's strides do not allow this view without a copy; "
                              "use em_reshape (copies) or em_contiguous first");
    return emo_call1(EMO_reshape, &x, 1, &a);
}

em_tensor_t *em_flatten(em_tensor_t *x, int start_dim, int end_dim) {
    if (!emt_check(x, "em_flatten", "x")) return NULL;
    if (x->ndim == 0) return em_reshape(x, (int64_t[]){1}, 1);
    if (!emt_wrap_dim(&start_dim, x->ndim, "em_flatten") || !emt_wrap_dim(&end_dim, x->ndim, "em_flatten")) return NULL;
    if (end_dim < start_dim) return em_seterr_null(EM_ERR_ARG, "em_flatten: end_dim %d is before start_dim %d", end_dim, start_dim);
    int64_t sh[EM_MAX_DIMS];
    int k = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (d > start_dim && d <= end_dim) sh[k - 1] *= x->shape[d];
        else sh[k++] = x->shape[d];
    }
    return em_reshape(x, sh, k);
}

em_tensor_t *em_permute(em_tensor_t *x, const int *perm, int ndim) {
    emo_attrs a = emo_attrs0();
    if (!emt_check(x, "em_permute", "x")) return NULL;
    if (ndim != x->ndim || (ndim > 0 && !perm))
        return em_seterr_null(EM_ERR_ARG, "em_permute: perm has %d entries for a tensor with %d dims", ndim, x->ndim);
    for (int d = 0; d < ndim; d++) {
        int p = perm[d];
        if (!emt_wrap_dim(&p, ndim, "em_permute")) return NULL;
        a.i[d] = p;
    }
    a.ni = ndim;
    return emo_call1(EMO_permute, &x, 1, &a);
}

em_tensor_t *em_transpose(em_tensor_t *x, int dim0, int dim1) {
    if (!emt_check(x, "em_transpose", "x")) return NULL;
    if (x->ndim == 0) return em_retain(x) ? emt_own(x) : NULL;
    if (!emt_wrap_dim(&dim0, x->ndim, "em_transpose") || !emt_wrap_dim(&dim1, x->ndim, "em_transpose")) return NULL;
    int perm[EM_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) perm[d] = d;
    perm[dim0] = dim1;
    perm[dim1] = dim0;
    return em_permute(x, perm, x->ndim);
}

em_tensor_t *em_slice(em_tensor_t *x, int dim, int64_t start, int64_t end, int64_t step) {
    if (!emt_check(x, "em_slice", "x")) return NULL;
    if (x->ndim == 0) return em_seterr_null(EM_ERR_ARG, "em_slice: cannot slice a 0-dim tensor");
    if (!emt_wrap_dim(&dim, x->ndim, "em_slice")) return NULL;
    if (step <= 0) return em_seterr_null(EM_ERR_ARG, "em_slice: step must be positive, got %lld (use em_flip to reverse)", (long long)step);
    int64_t n = x->shape[dim];
    /* Python slice semantics: negative counts from the end, out-of-range clamps */
    if (start < 0) start += n;
    if (end < 0) end += n;
    start = start < 0 ? 0 : start > n ? n : start;
    end = end < start ? start : end > n ? n : end;
    emo_attrs a = emo_attrs0();
    a.j[0] = dim;
    a.j[1] = start;
    a.j[2] = end;
    a.j[3] = step;
    return emo_call1(EMO_slice, &x, 1, &a);
}

em_tensor_t *em_select(em_tensor_t *x, int dim, int64_t index) {
    if (!emt_check(x, "em_select", "x")) return NULL;
    if (x->ndim == 0) return em_seterr_null(EM_ERR_ARG, "em_select: cannot index a 0-dim tensor");
    if (!emt_wrap_dim(&dim, x->ndim, "em_select")) return NULL;
    int64_t n = x->shape[dim];
    if (index < -n || index >= n)
        return em_seterr_null(EM_ERR_INDEX, "em_select: index %lld is out of range for dim %d of size %lld",
                              (long long)index, dim, (long long)n);
    if (index < 0) index += n;
    em_tensor_t *s = em_slice(x, dim, index, index + 1, 1);
    return s ? em_squeeze(s, dim) : NULL;
}

em_tensor_t *em_expand(em_tensor_t *x, const int64_t *shape, int ndim) {
    emo_attrs a = emo_attrs0();
    if (!emt_check(x, "em_expand", "x")) return NULL;
    if (ndim < x->ndim || ndim > EM_MAX_DIMS || (ndim > 0 && !shape))
        return em_seterr_null(EM_ERR_SHAPE, "em_expand: cannot expand %d dims to %d", x->ndim, ndim);
    for (int d = 0; d < ndim; d++) {
        int k = d - (ndim - x->ndim);
        a.i[d] = shape[d] == -1 && k >= 0 ? x->shape[k] : shape[d];
    }
    a.ni = ndim;
    return emo_call1(EMO_expand, &x, 1, &a);
}

em_tensor_t *em_squeeze(em_tensor_t *x, int dim) {
    if (!emt_check(x, "em_squeeze", "x")) return NULL;
    if (!emt_wrap_dim(&dim, x->ndim, "em_squeeze")) return NULL;
    int64_t sh[EM_MAX_DIMS];
    int k = 0;
    for (int d = 0; d < x->ndim; d++)
        if (d != dim || x->shape[d] != 1) sh[k++] = x->shape[d];
    return em_reshape(x, sh, k);
}

em_tensor_t *em_unsqueeze(em_tensor_t *x, int dim) {
    if (!emt_check(x, "em_unsqueeze", "x")) return NULL;
    if (x->ndim >= EM_MAX_DIMS) return em_seterr_null(EM_ERR_ARG, "em_unsqueeze: already %d dims", EM_MAX_DIMS);
    if (!emt_wrap_dim(&dim, x->ndim + 1, "em_unsqueeze")) return NULL;
    int64_t sh[EM_MAX_DIMS];
    for (int d = 0, k = 0; d <= x->ndim; d++) sh[d] = d == dim ? 1 : x->shape[k++];
    return em_reshape(x, sh, x->ndim + 1);
}

em_tensor_t *em_clone(em_tensor_t *x) {
    if (!emt_check(x, "em_clone", "x")) return NULL;
    emo_attrs a = emo_attrs0();
    return emo_call1(EMO_copy, &x, 1, &a);
}

em_tensor_t *em_contiguous(em_tensor_t *x) {
    if (!emt_check(x, "em_contiguous", "x")) return NULL;
    if (emt_is_contiguous(x)) {
        x->refcount++;
        return emt_own(x);
    }
    return em_clone(x);
}

em_tensor_t *em_detach(em_tensor_t *x) {
    if (!emt_check(x, "em_detach", "x")) return NULL;
    return emt_own(emt_detached(x));
}

em_tensor_t *em_cast(em_tensor_t *x, em_dtype dt) {
    if (!emt_check(x, "em_cast", "x") || !dtype_ok("em_cast", dt)) return NULL;
    if (x->dtype == dt) {
        x->refcount++;
        return emt_own(x);
    }
    emo_attrs a = emo_attrs0();
    a.dtype = dt;
    return emo_call1(EMO_cast, &x, 1, &a);
}

/* ---- in-place writes --------------------------------------------------------------------------- */
em_status em_assign(em_tensor_t *dst, em_tensor_t *src) {
    if (!emt_check(dst, "em_assign", "dst") || !emt_check(src, "em_assign", "src")) return em_last_status();
    char b1[EMB_SHAPE_BUF], b2[EMB_SHAPE_BUF];
    int64_t sh[EM_MAX_DIMS];
    int nd;
    if (!emt_broadcast_shape(dst->shape, dst->ndim, src->shape, src->ndim, sh, &nd) || nd != dst->ndim ||
        memcmp(sh, dst->shape, sizeof(int64_t) * (size_t)nd) != 0)
        return em_seterr(EM_ERR_SHAPE, "em_assign: src %s does not broadcast to dst %s",
                         emb_shape_str(b1, src->shape, src->ndim), emb_shape_str(b2, dst->shape, dst->ndim));
    if (emcap_tracing() || emt_is_symbolic(dst) || emt_is_symbolic(src)) return emcap_assign(dst, src);
    if (em_is_grad_enabled() && (dst->requires_grad || src->requires_grad))
        return em_seterr(EM_ERR_AUTOGRAD, "em_assign: in-place writes are not recorded by autograd; a tensor "
                         "here requires grad. Wrap the update in em_no_grad_begin()/em_no_grad_end() "
                         "(as optimizer steps do) or use out-of-place ops");
    for (int d = 0; d < dst->ndim; d++)
        if (dst->strides[d] == 0 && dst->shape[d] > 1)
            return em_seterr(EM_ERR_ARG, "em_assign: dst is an expanded view (stride 0 at dim %d); several "
                             "elements share memory. Assign into a contiguous tensor instead", d);
    em_tensor_t *s = src, *tmp = NULL;
    if (src->storage == dst->storage) { /* overlapping: read everything before writing */
        tmp = emt_contiguous_copy(src, src->dtype);
        if (!tmp) return em_last_status();
        s = tmp;
    }
    em_tensor_t *e = emt_expand_to(s, dst->shape, dst->ndim);
    if (!e) {
        em_release(tmp);
        return em_last_status();
    }
    emt_copy(dst, e);
    dst->storage->version++;
    em_release(e);
    em_release(tmp);
    return EM_OK;
}

em_status em_fill(em_tensor_t *dst, double value) {
    if (!emt_check(dst, "em_fill", "dst")) return em_last_status();
    em_tensor_t *v = emt_new(dst->dtype, NULL, 0);
    if (!v) return em_last_status();
    emt_store(v->storage->data, v->dtype, value);
    em_status st = em_assign(dst, v);
    em_release(v);
    return st;
}
