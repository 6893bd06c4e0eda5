/* nn.c - neural-network composites: softmax, log_softmax, layer_norm, rms_norm, cross_entropy,
 * dropout and embedding, each with a fused eager kernel, a backward rule and a decomposition.
 *
 * Kernels are row-wise: the input is made contiguous in its compute dtype (f32 for f16, bf16
 * and f32; f64 for f64), seen as (outer, n, inner) around the reduced dim, and rows are shared
 * out over OpenMP threads. Each row is a few simple passes (max, sum of exp, scale) that gcc
 * vectorizes; the f32 exp is a branch-free polynomial (exp_f32) because glibc's expf is not
 * vectorized without -ffast-math. Half-precision outputs are written through an f32 scratch
 * tensor and rounded once. The row bodies are macros instantiated for float and double.
 *
 * Backward rules and decompositions use public em_ ops only, so they trace for the compiler;
 * decompositions upcast half inputs to f32 like the kernels and cast the result back. Dropout
 * stores no mask: kernel, backward and decomposition all re-derive element i's uniform from
 * Philox(seed, offset + i), so the three agree bit for bit.
 */
#include "kernels.h"
#include "vecmath.h"

#include <math.h>

#define PAR_WORK 32768 /* elements below which one thread is faster */
#define COL_BLOCK 256  /* inner positions one task of a non-last-dim softmax handles */
#define DROP_BLOCK 4096 /* elements per dropout task (one Philox call each) */

/* ---- helpers --------------------------------------------------------------------------------- */
/* the input as a contiguous tensor in its compute dtype (new reference) */
static em_tensor_t *as_compute(em_tensor_t *t) { return emt_as_contiguous(t, emt_compute_float(t->dtype)); }

/* where a kernel writes: out itself when it has its compute dtype, else an f32 scratch tensor
   that finish() rounds into out */
static em_tensor_t *out_buffer(em_tensor_t *out) {
    em_dtype ct = emt_compute_float(out->dtype);
    if (out->dtype == ct) {
        out->refcount++;
        return out;
    }
    return emt_new(ct, out->shape, out->ndim);
}

static void finish(em_tensor_t *out, em_tensor_t *buf) {
    if (buf != out) emt_copy(out, buf);
    em_release(buf);
}

/* sizes before, at and after dim (a 0-dim tensor is one row of one) */
static void split_at(const em_tensor_t *t, int dim, int64_t *outer, int64_t *n, int64_t *inner) {
    *outer = *inner = 1;
    *n = t->ndim ? t->shape[dim] : 1;
    for (int d = 0; d < dim; d++) *outer *= t->shape[d];
    for (int d = dim + 1; d < t->ndim; d++) *inner *= t->shape[d];
}

static bool float_ok(const emo_meta *in, int n_in, int which, const char *what) {
    if (emt_is_float(in[which].dtype)) return true;
    emo_err(EM_ERR_DTYPE, NULL, in, n_in, "%s must be floating, got %s; convert it with em_cast(t, EM_F32)", what,
            em_dtype_name(in[which].dtype));
    return false;
}

/* result of a chain of public ops: they fail softly, so one check at the end suffices */
static em_status done(em_tensor_t *t) { return t ? EM_OK : em_last_status(); }

static em_tensor_t *to_compute(em_tensor_t *x) { return em_cast(x, emt_compute_float(x->dtype)); }

/* ---- softmax and log_softmax: j[1] dim ---------------------------------------------------------- */
EMO_INFER(emo_infer_softmax) {
    if (!float_ok(in, n_in, 0, "the input")) return em_last_status();
    int rank = in[0].ndim > 0 ? in[0].ndim : 1;
    if (a->j[1] < 0 || a->j[1] >= rank)
        return emo_err(EM_ERR_ARG, NULL, in, 1, "dim %lld is out of range for a tensor with %d dims",
                       (long long)a->j[1], in[0].ndim);
    out[0] = in[0];
    *n_out = 1;
    return EM_OK;
}

/* rows of n contiguous values: x, y are (rows, n) */
#define SOFTMAX_ROWS(T, EXP, LOG)                                                                 \
    do {                                                                                          \
        _Pragma("omp parallel for schedule(static) num_threads(emb_num_threads()) if (rows * n >= PAR_WORK)") \
        for (int64_t r = 0; r < rows; r++) {                                                      \
            const T *xr = x + r * n;                                                              \
            T *yr = y + r * n;                                                                    \
            T m = -INFINITY, s = 0;                                                               \
            _Pragma("omp simd reduction(max : m)")                                                \
            for (int64_t i = 0; i < n; i++) m = xr[i] > m ? xr[i] : m;                            \
            if (want_log) {                                                                            \
                _Pragma("omp simd reduction(+ : s)")                                              \
                for (int64_t i = 0; i < n; i++) s += EXP(xr[i] - m);                              \
                T ls = LOG(s);                                                                    \
                for (int64_t i = 0; i < n; i++) yr[i] = (xr[i] - m) - ls;                         \
            } else {                                                                              \
                _Pragma("omp simd reduction(+ : s)")                                              \
                for (int64_t i = 0; i < n; i++) {                                                 \
                    T e = EXP(xr[i] - m);                                                         \
                    yr[i] = e;                                                                    \
                    s += e;                                                                       \
                }                                                                                 \
                T inv = 1 / s;                                                                    \
                for (int64_t i = 0; i < n; i++) yr[i] *= inv;                                     \
            }                                                                                     \
        }                                                                                         \
    } while (0)

/* softmax over the middle dim of (outer, n, inner) with inner > 1: each task takes a block of
   up to COL_BLOCK inner positions and walks the n dim, so inner loops stay contiguous */
#define SOFTMAX_COLS(T, EXP, LOG)                                                                 \
    do {                                                                                          \
        int64_t nblk = (inner + COL_BLOCK - 1) / COL_BLOCK;                                       \
        _Pragma("omp parallel for schedule(static) num_threads(emb_num_threads()) if (outer * n * inner >= PAR_WORK)") \
        for (int64_t task = 0; task < outer * nblk; task++) {                                     \
            int64_t o = task / nblk, j0 = (task % nblk) * COL_BLOCK;                              \
            int64_t L = EM_MIN(COL_BLOCK, inner - j0);                                            \
            const T *xb = x + o * n * inner + j0;                                                 \
            T *yb = y + o * n * inner + j0;                                                       \
            T m[COL_BLOCK], s[COL_BLOCK];                                                         \
            for (int64_t j = 0; j < L; j++) {                                                     \
                m[j] = -INFINITY;                                                                 \
                s[j] = 0;                                                                         \
            }                                                                                     \
            for (int64_t k = 0; k < n; k++)                                                       \
                for (int64_t j = 0; j < L; j++) m[j] = xb[k * inner + j] > m[j] ? xb[k * inner + j] : m[j]; \
            for (int64_t k = 0; k < n; k++)                                                       \
                for (int64_t j = 0; j < L; j++) {                                                 \
                    T e = EXP(xb[k * inner + j] - m[j]);                                          \
                    if (!want_log) yb[k * inner + j] = e;                                              \
                    s[j] += e;                                                                    \
                }                                                                                 \
            for (int64_t j = 0; j < L; j++) s[j] = want_log ? LOG(s[j]) : 1 / s[j];                    \
            for (int64_t k = 0; k < n; k++)                                                       \
                for (int64_t j = 0; j < L; j++) {                                                 \
                    if (want_log) yb[k * inner + j] = (xb[k * inner + j] - m[j]) - s[j];               \
                    else yb[k * inner + j] *= s[j];                                               \
                }                                                                                 \
        }                                                                                         \
    } while (0)

static void softmax_f32(const float *x, float *y, int64_t outer, int64_t n, int64_t inner, bool want_log) {
    int64_t rows = outer;
    if (inner == 1) SOFTMAX_ROWS(float, exp_f32, logf);
    else SOFTMAX_COLS(float, exp_f32, logf);
}

static void softmax_f64(const double *x, double *y, int64_t outer, int64_t n, int64_t inner, bool want_log) {
    int64_t rows = outer;
    if (inner == 1) SOFTMAX_ROWS(double, exp, log);
    else SOFTMAX_COLS(double, exp, log);
}

static em_status softmax_kernel(const emo_attrs *a, em_tensor_t *x, em_tensor_t *y, bool want_log) {
    int64_t outer, n, inner;
    split_at(x, (int)a->j[1], &outer, &n, &inner);
    if (emt_numel(x) == 0) return EM_OK;
    em_tensor_t *xc = as_compute(x), *yb = out_buffer(y);
    if (!xc || !yb) {
        em_release(xc);
        em_release(yb);
        return em_last_status();
    }
    if (xc->dtype == EM_F32) softmax_f32((const float *)emt_data(xc), (float *)emt_data(yb), outer, n, inner, want_log);
    else softmax_f64((const double *)emt_data(xc), (double *)emt_data(yb), outer, n, inner, want_log);
    finish(y, yb);
    em_release(xc);
    return EM_OK;
}

EMO_KERNEL(emo_k_softmax) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    return softmax_kernel(a, in[0], out[0], false);
}

EMO_KERNEL(emo_k_log_softmax) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    return softmax_kernel(a, in[0], out[0], true);
}

/* dx = y * (g - sum(g * y, dim)) */
EMO_BACKWARD(emo_bw_softmax) {
    int dim = (int)c->attrs->j[1];
    em_tensor_t *y = c->out[0], *g = gout[0];
    em_tensor_t *s = em_sum(em_mul(g, y), &dim, 1, true);
    gin[0] = em_mul(y, em_sub(g, s));
    return done(gin[0]);
}

/* dx = g - exp(y) * sum(g, dim) */
EMO_BACKWARD(emo_bw_log_softmax) {
    int dim = (int)c->attrs->j[1];
    em_tensor_t *y = c->out[0], *g = gout[0];
    gin[0] = em_sub(g, em_mul(em_exp(y), em_sum(g, &dim, 1, true)));
    return done(gin[0]);
}

/* x - max(x, dim) with the max detached: softmax is shift-invariant, so its gradient is zero */
static em_tensor_t *shifted(em_tensor_t *xc, int dim) {
    return em_sub(xc, em_detach(em_amax(xc, &dim, 1, true)));
}

EMO_DECOMP(emo_dc_softmax) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    em_tensor_t *x = in[0];
    int dim = (int)a->j[1];
    if (emt_numel(x) == 0) return done(out[0] = em_clone(x));
    em_tensor_t *e = em_exp(shifted(to_compute(x), dim));
    out[0] = em_cast(em_div(e, em_sum(e, &dim, 1, true)), x->dtype);
    return done(out[0]);
}

EMO_DECOMP(emo_dc_log_softmax) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    em_tensor_t *x = in[0];
    int dim = (int)a->j[1];
    if (emt_numel(x) == 0) return done(out[0] = em_clone(x));
    em_tensor_t *z = shifted(to_compute(x), dim);
    em_tensor_t *lse = em_log(em_sum(em_exp(z), &dim, 1, true));
    out[0] = em_cast(em_sub(z, lse), x->dtype);
    return done(out[0]);
}

/* ---- layer_norm and rms_norm: x[, w][, b], j[2] has_weight, j[3] has_bias, f[0] eps ------------- */
/* checks an optional (C,) parameter at input index i */
static bool param_ok(const emo_meta *in, int n_in, int i, int64_t C, const char *what) {
    if (!float_ok(in, n_in, i, what)) return false;
    if (in[i].ndim != 1 || in[i].shape[0] != C) {
        emo_err(EM_ERR_SHAPE, NULL, in, n_in, "%s must have shape (%lld,), the size of the input's last dim", what,
                (long long)C);
        return false;
    }
    return true;
}

static em_status infer_norm(const emo_attrs *a, const emo_meta *in, int n_in, emo_meta *out, int *n_out,
                            bool has_bias_attr) {
    int hw = a->j[2] != 0, hb = has_bias_attr && a->j[3] != 0;
    if (n_in != 1 + hw + hb)
        return emo_err(EM_ERR_ARG, NULL, in, n_in, "got %d inputs for has_weight=%d, has_bias=%d", n_in, hw, hb);
    if (!float_ok(in, n_in, 0, "the input")) return em_last_status();
    if (in[0].ndim < 1)
        return emo_err(EM_ERR_SHAPE, NULL, in, n_in, "normalises over the last dim; a 0-dim input has none "
                       "(reshape it to (1,))");
    int64_t C = in[0].shape[in[0].ndim - 1];
    if (hw && !param_ok(in, n_in, 1, C, "the weight")) return em_last_status();
    if (hb && !param_ok(in, n_in, 1 + hw, C, "the bias")) return em_last_status();
    out[0] = in[0];
    *n_out = 1;
    return EM_OK;
}

EMO_INFER(emo_infer_layer_norm) { return infer_norm(a, in, n_in, out, n_out, true); }
EMO_INFER(emo_infer_rms_norm) { return infer_norm(a, in, n_in, out, n_out, false); }

/* x, y (rows, C); w, b (C) or NULL. rms: y = x * rsqrt(mean(x^2) + eps) * w, else
   y = (x - mean) * rsqrt(var + eps) * w + b with the two-pass variance */
#define NORM_ROWS(T, SQRT)                                                                        \
    do {                                                                                          \
        T e = (T)eps;                                                                             \
        _Pragma("omp parallel for schedule(static) num_threads(emb_num_threads()) if (rows * C >= PAR_WORK)") \
        for (int64_t r = 0; r < rows; r++) {                                                      \
            const T *xr = x + r * C;                                                              \
            T *yr = y + r * C;                                                                    \
            T mean = 0, ss = 0;                                                                   \
            if (!rms) {                                                                           \
                _Pragma("omp simd reduction(+ : mean)")                                           \
                for (int64_t i = 0; i < C; i++) mean += xr[i];                                    \
                mean /= (T)C;                                                                     \
            }                                                                                     \
            _Pragma("omp simd reduction(+ : ss)")                                                 \
            for (int64_t i = 0; i < C; i++) {                                                     \
                T d = xr[i] - mean;                                                               \
                ss += d * d;                                                                      \
            }                                                                                     \
            T rstd = 1 / SQRT(ss / (T)C + e);                                                     \
            for (int64_t i = 0; i < C; i++) yr[i] = (xr[i] - mean) * rstd;                        \
            if (w)                                                                                \
                for (int64_t i = 0; i < C; i++) yr[i] *= w[i];                                    \
            if (b)                                                                                \
                for (int64_t i = 0; i < C; i++) yr[i] += b[i];                                    \
        }                                                                                         \
    } while (0)

static void norm_f32(const float *x, const float *w, const float *b, float *y, int64_t rows, int64_t C,
                     double eps, bool rms) {
    NORM_ROWS(float, sqrtf);
}

static void norm_f64(const double *x, const double *w, const double *b, double *y, int64_t rows, int64_t C,
                     double eps, bool rms) {
    NORM_ROWS(double, sqrt);
}

static em_status norm_kernel(const emo_attrs *a, em_tensor_t *const *in, em_tensor_t *y, bool rms) {
    em_tensor_t *x = in[0];
    int hw = a->j[2] != 0, hb = !rms && a->j[3] != 0;
    if (emt_numel(x) == 0) return EM_OK;
    int64_t C = x->shape[x->ndim - 1], rows = emt_numel(x) / C;
    em_dtype ct = emt_compute_float(x->dtype);
    em_tensor_t *xc = as_compute(x), *yb = out_buffer(y);
    em_tensor_t *wc = hw ? emt_as_contiguous(in[1], ct) : NULL, *bc = hb ? emt_as_contiguous(in[1 + hw], ct) : NULL;
    em_status st = EM_OK;
    if (!xc || !yb || (hw && !wc) || (hb && !bc)) {
        st = em_last_status();
    } else if (ct == EM_F32) {
        norm_f32((const float *)emt_data(xc), wc ? (const float *)emt_data(wc) : NULL,
                 bc ? (const float *)emt_data(bc) : NULL, (float *)emt_data(yb), rows, C, a->f[0], rms);
    } else {
        norm_f64((const double *)emt_data(xc), wc ? (const double *)emt_data(wc) : NULL,
                 bc ? (const double *)emt_data(bc) : NULL, (double *)emt_data(yb), rows, C, a->f[0], rms);
    }
    if (st == EM_OK) finish(y, yb);
    else em_release(yb);
    em_release(xc);
    em_release(wc);
    em_release(bc);
    return st;
}

EMO_KERNEL(emo_k_layer_norm) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    return norm_kernel(a, in, out[0], false);
}

EMO_KERNEL(emo_k_rms_norm) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    return norm_kernel(a, in, out[0], true);
}

/* xhat = (x - mean) * rstd and rstd over the last dim, in the compute dtype */
static em_tensor_t *layer_norm_xhat(em_tensor_t *xc, double eps, em_tensor_t **rstd) {
    int last = xc->ndim - 1;
    em_tensor_t *xm = em_sub(xc, em_mean(xc, &last, 1, true));
    *rstd = em_rsqrt(em_add_scalar(em_mean(em_mul(xm, xm), &last, 1, true), eps));
    return em_mul(xm, *rstd);
}

/* with gy = g * w: dx = rstd * (gy - mean(gy) - xhat * mean(gy * xhat)); dw = sum g * xhat and
   db = sum g over the leading dims (the engine sums gradients down to (C,)) */
EMO_BACKWARD(emo_bw_layer_norm) {
    int hw = c->attrs->j[2] != 0, hb = c->attrs->j[3] != 0;
    em_tensor_t *xc = to_compute(c->in[0]), *g = to_compute(gout[0]), *rstd = NULL;
    em_tensor_t *xhat = xc ? layer_norm_xhat(xc, c->attrs->f[0], &rstd) : NULL;
    if (!xhat) return em_last_status();
    int last = xc->ndim - 1;
    if (c->needs_grad[0]) {
        em_tensor_t *gy = hw ? em_mul(g, c->in[1]) : g;
        em_tensor_t *m1 = em_mean(gy, &last, 1, true), *m2 = em_mean(em_mul(gy, xhat), &last, 1, true);
        gin[0] = em_mul(rstd, em_sub(em_sub(gy, m1), em_mul(xhat, m2)));
        if (!gin[0]) return em_last_status();
    }
    if (hw && c->needs_grad[1] && !(gin[1] = em_mul(g, xhat))) return em_last_status();
    if (hb && c->needs_grad[1 + hw] && !(gin[1 + hw] = g)) return em_last_status();
    return EM_OK;
}

EMO_DECOMP(emo_dc_layer_norm) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    int hw = a->j[2] != 0, hb = a->j[3] != 0;
    em_tensor_t *xc = to_compute(in[0]), *rstd;
    em_tensor_t *y = xc ? layer_norm_xhat(xc, a->f[0], &rstd) : NULL;
    if (hw) y = em_mul(y, in[1]);
    if (hb) y = em_add(y, in[1 + hw]);
    out[0] = em_cast(y, in[0]->dtype);
    return done(out[0]);
}

/* r = rsqrt(mean(x^2) + eps) over the last dim, keepdim */
static em_tensor_t *rms_r(em_tensor_t *xc, double eps) {
    int last = xc->ndim - 1;
    return em_rsqrt(em_add_scalar(em_mean(em_mul(xc, xc), &last, 1, true), eps));
}

/* with gy = g * w: dx = r * gy - x * r^3 * mean(gy * x); dw = sum g * x * r over leading dims */
EMO_BACKWARD(emo_bw_rms_norm) {
    int hw = c->attrs->j[2] != 0;
    em_tensor_t *xc = to_compute(c->in[0]), *g = to_compute(gout[0]);
    em_tensor_t *r = xc ? rms_r(xc, c->attrs->f[0]) : NULL;
    if (!r || !g) return em_last_status();
    int last = xc->ndim - 1;
    if (c->needs_grad[0]) {
        em_tensor_t *gy = hw ? em_mul(g, c->in[1]) : g;
        em_tensor_t *m = em_mean(em_mul(gy, xc), &last, 1, true);
        gin[0] = em_mul(r, em_sub(gy, em_mul(xc, em_mul(em_mul(r, r), m))));
        if (!gin[0]) return em_last_status();
    }
    if (hw && c->needs_grad[1] && !(gin[1] = em_mul(g, em_mul(xc, r)))) return em_last_status();
    return EM_OK;
}

EMO_DECOMP(emo_dc_rms_norm) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    em_tensor_t *xc = to_compute(in[0]);
    em_tensor_t *y = xc ? em_mul(xc, rms_r(xc, a->f[0])) : NULL;
    if (a->j[2]) y = em_mul(y, in[1]);
    out[0] = em_cast(y, in[0]->dtype);
    return done(out[0]);
}

/* ---- cross_entropy: (logits, targets), j[2] ignore_index, j[3] reduction --------------------------- */
EMO_INFER(emo_infer_cross_entropy) {
    const emo_meta *lg = &in[0], *t = &in[1];
    if (!float_ok(in, n_in, 0, "logits")) return em_last_status();
    if (lg->ndim != 1 && lg->ndim != 2)
        return emo_err(EM_ERR_SHAPE, NULL, in, 2, "logits must be (N, C) or (C,); flatten extra dims into N "
                       "(em_reshape(logits, (int64_t[]){-1, C}, 2))");
    if (t->dtype != EM_I64 && t->dtype != EM_I32)
        return emo_err(EM_ERR_DTYPE, NULL, in, 2, "targets must be integer class ids (i64 or i32), got %s; "
                       "probability targets are not supported", em_dtype_name(t->dtype));
    if (lg->ndim == 2 && (t->ndim != 1 || t->shape[0] != lg->shape[0]))
        return emo_err(EM_ERR_SHAPE, NULL, in, 2, "targets must have shape (%lld,) for (N, C) logits",
                       (long long)lg->shape[0]);
    if (lg->ndim == 1 && t->ndim != 0)
        return emo_err(EM_ERR_SHAPE, NULL, in, 2, "targets must be 0-dim for (C,) logits");
    if (a->j[3] != EM_REDUCE_MEAN && a->j[3] != EM_REDUCE_SUM && a->j[3] != EM_REDUCE_NONE)
        return emo_err(EM_ERR_ARG, NULL, in, 2, "unknown reduction %lld (use EM_REDUCE_MEAN, _SUM or _NONE)",
                       (long long)a->j[3]);
    out[0].dtype = lg->dtype;
    out[0].ndim = a->j[3] == EM_REDUCE_NONE ? t->ndim : 0;
    if (out[0].ndim) out[0].shape[0] = t->shape[0];
    *n_out = 1;
    return EM_OK;
}

/* loss[r] = logsumexp(x[r]) - x[r, t[r]] for rows whose target is not ignored, else 0 */
#define CE_ROWS(T, EXP, LOG)                                                                      \
    do {                                                                                          \
        _Pragma("omp parallel for schedule(static) num_threads(emb_num_threads()) if (N * C >= PAR_WORK)") \
        for (int64_t r = 0; r < N; r++) {                                                         \
            const T *xr = x + r * C;                                                              \
            if (t[r] == ignore) {                                                                 \
                loss[r] = 0;                                                                      \
                continue;                                                                         \
            }                                                                                     \
            T m = -INFINITY, s = 0;                                                               \
            _Pragma("omp simd reduction(max : m)")                                                \
            for (int64_t i = 0; i < C; i++) m = xr[i] > m ? xr[i] : m;                            \
            _Pragma("omp simd reduction(+ : s)")                                                  \
            for (int64_t i = 0; i < C; i++) s += EXP(xr[i] - m);                                  \
            loss[r] = (double)(LOG(s) - (xr[t[r]] - m));                                          \
        }                                                                                         \
    } while (0)

static void ce_f32(const float *x, const int64_t *t, double *loss, int64_t N, int64_t C, int64_t ignore) {
    CE_ROWS(float, exp_f32, logf);
}

static void ce_f64(const double *x, const int64_t *t, double *loss, int64_t N, int64_t C, int64_t ignore) {
    CE_ROWS(double, exp, log);
}

EMO_KERNEL(emo_k_cross_entropy) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    em_tensor_t *lg = in[0], *y = out[0];
    int64_t C = lg->shape[lg->ndim - 1], N = lg->ndim == 2 ? lg->shape[0] : 1, ignore = a->j[2];
    em_tensor_t *tc = emt_as_contiguous(in[1], EM_I64);
    if (!tc) return em_last_status();
    const int64_t *t = (const int64_t *)emt_data(tc);
    int64_t count = 0;
    for (int64_t r = 0; r < N; r++) {
        if (t[r] == ignore) continue;
        if (t[r] < 0 || t[r] >= C) {
            em_release(tc);
            return em_seterr(EM_ERR_INDEX, "em_cross_entropy: target %lld at position %lld is out of range for "
                             "%lld classes (valid: 0..%lld, or ignore_index %lld)", (long long)t[r], (long long)r,
                             (long long)C, (long long)C - 1, (long long)ignore);
        }
        count++;
    }
    em_tensor_t *xc = as_compute(lg);
    double *loss = emb_alloc((size_t)N * sizeof *loss);
    if (!xc || !loss) {
        em_release(tc);
        em_release(xc);
        emb_free(loss);
        return xc ? em_seterr(EM_ERR_OOM, "em_cross_entropy: out of memory") : em_last_status();
    }
    if (xc->dtype == EM_F32) ce_f32((const float *)emt_data(xc), t, loss, N, C, ignore);
    else ce_f64((const double *)emt_data(xc), t, loss, N, C, ignore);
    size_t es = emt_esize(y->dtype);
    if (a->j[3] == EM_REDUCE_NONE) {
        for (int64_t r = 0; r < N; r++) emt_store(emt_data(y) + (size_t)r * es, y->dtype, loss[r]);
    } else {
        double s = 0;
        for (int64_t r = 0; r < N; r++) s += loss[r];
        emt_store(emt_data(y), y->dtype, a->j[3] == EM_REDUCE_SUM ? s : s / (double)count); /* 0/0: NaN */
    }
    emb_free(loss);
    em_release(xc);
    em_release(tc);
    return EM_OK;
}

/* mask of targets that count: (N,) or () bool */
static em_tensor_t *ce_valid(em_tensor_t *t, int64_t ignore) { return em_ne(t, em_scalar((double)ignore, t->dtype)); }

/* dlogits = (softmax(logits) - onehot(t)) * [t counts] * scale, scale = g / count (mean),
   g (sum) or g per row (none) */
EMO_BACKWARD(emo_bw_cross_entropy) {
    if (!c->needs_grad[0]) return EM_OK;
    em_tensor_t *t = c->in[1];
    em_tensor_t *xc = to_compute(c->in[0]);
    if (!xc) return em_last_status();
    em_dtype ct = xc->dtype;
    int64_t C = xc->shape[xc->ndim - 1];
    em_tensor_t *valid = ce_valid(t, c->attrs->j[2]);
    em_tensor_t *onehot = em_cast(em_eq(em_unsqueeze(t, -1), em_arange(0, (double)C, 1, t->dtype)), ct);
    em_tensor_t *d = em_mul(em_sub(em_softmax(xc, -1), onehot), em_cast(em_unsqueeze(valid, -1), ct));
    em_tensor_t *g = to_compute(gout[0]), *scale = g;
    if (c->attrs->j[3] == EM_REDUCE_NONE) {
        scale = em_unsqueeze(g, -1);
    } else if (c->attrs->j[3] == EM_REDUCE_MEAN) {
        /* all ignored: the loss is NaN but the gradient is zero, as in PyTorch */
        em_tensor_t *count = em_sum(em_cast(valid, ct), NULL, 0, false);
        scale = em_div(g, em_clamp(count, 1.0, INFINITY));
    }
    gin[0] = em_mul(d, scale);
    return done(gin[0]);
}

EMO_DECOMP(emo_dc_cross_entropy) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    em_tensor_t *lg = in[0], *t = in[1];
    int last = lg->ndim - 1;
    em_tensor_t *xc = to_compute(lg);
    if (!xc) return em_last_status();
    em_dtype ct = xc->dtype;
    em_tensor_t *z = shifted(xc, last);
    em_tensor_t *logp = em_sub(z, em_log(em_sum(em_exp(z), &last, 1, true)));
    em_tensor_t *valid = ce_valid(t, a->j[2]);
    em_tensor_t *safe = em_cast(em_where(valid, t, em_scalar(0, t->dtype)), EM_I64);
    em_tensor_t *picked = em_squeeze(em_gather(logp, last, em_unsqueeze(safe, -1)), -1); /* (N,) or () */
    em_tensor_t *loss = em_where(valid, em_neg(picked), em_scalar(0, ct));
    if (a->j[3] == EM_REDUCE_SUM) loss = em_sum(loss, NULL, 0, false);
    else if (a->j[3] == EM_REDUCE_MEAN)
        loss = em_div(em_sum(loss, NULL, 0, false), em_sum(em_cast(valid, ct), NULL, 0, false));
    out[0] = em_cast(loss, lg->dtype);
    return done(out[0]);
}

/* ---- dropout: f[0] p, seed/offset ------------------------------------------------------------------ */
EMO_INFER(emo_infer_dropout) {
    if (!float_ok(in, n_in, 0, "the input")) return em_last_status();
    if (!(a->f[0] >= 0 && a->f[0] <= 1))
        return emo_err(EM_ERR_ARG, NULL, in, 1, "p must be in [0, 1], got %g", a->f[0]);
    out[0] = in[0];
    *n_out = 1;
    return EM_OK;
}

/* element i is kept iff u_i >= p, u_i = Philox(seed, offset + i) word 0 >> 8 times 2^-24. As u is
   on the 2^-24 grid this is u >= ceil(p 2^24) 2^-24, a threshold exact in f32, so the f32 rand
   op and the kernel compare exactly as the f64 definition does */
static double dropout_threshold(double p) { return ceil(p * 16777216.0) / 16777216.0; }
static double dropout_scale(double p) { return p < 1 ? 1.0 / (1.0 - p) : 0.0; }

/* the keep mask (bool, shape) re-derived from the op's seed and offset with the rand op */
static em_tensor_t *dropout_keep(const emo_attrs *a, const int64_t *shape, int ndim) {
    emo_attrs r = emo_attrs0();
    for (int d = 0; d < ndim; d++) r.i[d] = shape[d];
    r.ni = ndim;
    r.dtype = EM_F32;
    r.seed = a->seed;
    r.offset = a->offset;
    em_tensor_t *u = emo_call1(EMO_rand, NULL, 0, &r);
    return em_ge(u, em_scalar(dropout_threshold(a->f[0]), EM_F32));
}

EMO_KERNEL(emo_k_dropout) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    em_tensor_t *x = in[0], *y = out[0];
    int64_t n = emt_numel(x);
    if (n == 0) return EM_OK;
    em_tensor_t *xc = as_compute(x), *yb = out_buffer(y);
    if (!xc || !yb) {
        em_release(xc);
        em_release(yb);
        return em_last_status();
    }
    uint64_t seed = a->seed, off = a->offset;
    double thr = dropout_threshold(a->f[0]), sc = dropout_scale(a->f[0]);
    /* blocks of simd loops: they vectorize once emt_philox can be inlined */
    int64_t nblk = (n + DROP_BLOCK - 1) / DROP_BLOCK;
    if (xc->dtype == EM_F32) {
        const float *xp = (const float *)emt_data(xc);
        float *yp = (float *)emt_data(yb), tf = (float)thr, sf = (float)sc;
#pragma omp parallel for schedule(static) num_threads(emb_num_threads()) if (nblk > 1)
        for (int64_t blk = 0; blk < nblk; blk++) {
            int64_t end = EM_MIN(n, (blk + 1) * DROP_BLOCK);
#pragma omp simd
            for (int64_t i = blk * DROP_BLOCK; i < end; i++)
                yp[i] = emt_uniform_at(seed, off + (uint64_t)i) >= tf ? xp[i] * sf : 0.0f;
        }
    } else {
        const double *xp = (const double *)emt_data(xc);
        double *yp = (double *)emt_data(yb);
#pragma omp parallel for schedule(static) num_threads(emb_num_threads()) if (nblk > 1)
        for (int64_t blk = 0; blk < nblk; blk++) {
            int64_t end = EM_MIN(n, (blk + 1) * DROP_BLOCK);
#pragma omp simd
            for (int64_t i = blk * DROP_BLOCK; i < end; i++)
                yp[i] = emt_uniform_at(seed, off + (uint64_t)i) >= thr ? xp[i] * sc : 0.0;
        }
    }
    finish(y, yb);
    em_release(xc);
    return EM_OK;
}

/* dx = g / (1 - p) where kept, 0 elsewhere; the mask is recomputed, never stored */
EMO_BACKWARD(emo_bw_dropout) {
    const emo_meta *m = &c->out_meta[0];
    em_tensor_t *g = gout[0];
    em_tensor_t *keep = dropout_keep(c->attrs, m->shape, m->ndim);
    gin[0] = em_where(keep, em_mul_scalar(g, dropout_scale(c->attrs->f[0])), em_scalar(0, g->dtype));
    return done(gin[0]);
}

EMO_DECOMP(emo_dc_dropout) {
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    em_tensor_t *x = in[0];
    em_tensor_t *keep = dropout_keep(a, x->shape, x->ndim);
    out[0] = em_where(keep, em_mul_scalar(x, dropout_scale(a->f[0])), em_scalar(0, x->dtype));
    return done(out[0]);
}

/* ---- embedding: (weight (V, C), indices int) -> (*indices, C) -------------------------------------- */
EMO_INFER(emo_infer_embedding) {
    EM_UNUSED(a);
    EM_UNUSED(n_in);
    const emo_meta *w = &in[0], *ix = &in[1];
    if (w->ndim != 2)
        return emo_err(EM_ERR_SHAPE, NULL, in, 2, "weight must be 2-D (num_embeddings, embedding_dim)");
    if (ix->dtype != EM_I64 && ix->dtype != EM_I32)
        return emo_err(EM_ERR_DTYPE, NULL, in, 2, "indices must be i64 or i32, got %s (em_cast them)",
                       em_dtype_name(ix->dtype));
    if (ix->ndim + 1 > EM_MAX_DIMS)
        return emo_err(EM_ERR_SHAPE, NULL, in, 2, "the output would have %d dims, more than %d", ix->ndim + 1,
                       EM_MAX_DIMS);
    out[0].dtype = w->dtype;
    out[0].ndim = ix->ndim + 1;
    for (int d = 0; d < ix->ndim; d++) out[0].shape[d] = ix->shape[d];
    out[0].shape[ix->ndim] = w->shape[1];
    *n_out = 1;
    return EM_OK;
}

EMO_KERNEL(emo_k_embedding) {
    EM_UNUSED(a);
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    em_tensor_t *w = in[0], *y = out[0];
    int64_t V = w->shape[0], C = w->shape[1], M = emt_numel(in[1]);
    em_tensor_t *ic = emt_as_contiguous(in[1], EM_I64);
    if (!ic) return em_last_status();
    const int64_t *ix = (const int64_t *)emt_data(ic);
    for (int64_t m = 0; m < M; m++) {
        if (ix[m] < 0 || ix[m] >= V) {
            em_release(ic);
            return em_seterr(EM_ERR_INDEX, "em_embedding: index %lld at position %lld is out of range for a "
                             "weight with %lld rows", (long long)ix[m], (long long)m, (long long)V);
        }
    }
    em_tensor_t *wc = emt_as_contiguous(w, w->dtype);
    if (!wc) {
        em_release(ic);
        return em_last_status();
    }
    size_t row = (size_t)C * emt_esize(w->dtype);
    const char *src = emt_data(wc);
    char *dst = emt_data(y);
#pragma omp parallel for schedule(static) num_threads(emb_num_threads()) if (M * C >= PAR_WORK)
    for (int64_t m = 0; m < M; m++) memcpy(dst + (size_t)m * row, src + (size_t)ix[m] * row, row);
    em_release(wc);
    em_release(ic);
    return EM_OK;
}

/* dweight = zeros (V, C) with each gout row added at its index: scatter_add over dim 0 */
EMO_BACKWARD(emo_bw_embedding) {
    if (!c->needs_grad[0]) return EM_OK;
    const emo_meta *w = &c->in_meta[0];
    int64_t V = w->shape[0], C = w->shape[1], M = emt_numel_shape(c->in_meta[1].shape, c->in_meta[1].ndim);
    em_tensor_t *g = gout[0];
    em_tensor_t *ix = em_reshape(em_cast(c->in[1], EM_I64), (int64_t[]){M, 1}, 2);
    em_tensor_t *idx = em_expand(ix, (int64_t[]){M, C}, 2);
    em_tensor_t *src = em_reshape(g, (int64_t[]){M, C}, 2);
    gin[0] = em_scatter_add(em_zeros((int64_t[]){V, C}, 2, g->dtype), 0, idx, src);
    return done(gin[0]);
}

EMO_DECOMP(emo_dc_embedding) {
    EM_UNUSED(a);
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    em_tensor_t *w = in[0], *ix = in[1];
    int64_t M = emt_numel(ix), shape[EM_MAX_DIMS];
    for (int d = 0; d < ix->ndim; d++) shape[d] = ix->shape[d];
    shape[ix->ndim] = w->shape[1];
    em_tensor_t *flat = em_reshape(em_cast(ix, EM_I64), &M, 1);
    out[0] = em_reshape(em_index_select(w, 0, flat), shape, ix->ndim + 1);
    return done(out[0]);
}

/* ---- public wrappers ------------------------------------------------------------------------------- */
static em_tensor_t *softmax_call(emo_op op, const char *name, em_tensor_t *x, int dim) {
    if (!emt_check(x, name, "x") || !emt_wrap_dim(&dim, x->ndim, name)) return NULL;
    emo_attrs a = emo_attrs0();
    a.j[1] = dim;
    return emo_call1(op, &x, 1, &a);
}

em_tensor_t *em_softmax(em_tensor_t *x, int dim) { return softmax_call(EMO_softmax, "em_softmax", x, dim); }

em_tensor_t *em_log_softmax(em_tensor_t *x, int dim) {
    return softmax_call(EMO_log_softmax, "em_log_softmax", x, dim);
}

em_tensor_t *em_layer_norm(em_tensor_t *x, em_tensor_t *w, em_tensor_t *b, double eps) {
    if (!emt_check(x, "em_layer_norm", "x") || (w && !emt_check(w, "em_layer_norm", "w")) ||
        (b && !emt_check(b, "em_layer_norm", "b")))
        return NULL;
    em_tensor_t *ts[3] = {x};
    int n = 1;
    if (w) ts[n++] = w;
    if (b) ts[n++] = b;
    emo_attrs a = emo_attrs0();
    a.j[2] = w != NULL;
    a.j[3] = b != NULL;
    a.f[0] = eps;
    return emo_call1(EMO_layer_norm, ts, n, &a);
}

em_tensor_t *em_rms_norm(em_tensor_t *x, em_tensor_t *w, double eps) {
    if (!emt_check(x, "em_rms_norm", "x") || (w && !emt_check(w, "em_rms_norm", "w"))) return NULL;
    em_tensor_t *ts[2] = {x, w};
    emo_attrs a = emo_attrs0();
    a.j[2] = w != NULL;
    a.f[0] = eps;
    return emo_call1(EMO_rms_norm, ts, w ? 2 : 1, &a);
}

em_tensor_t *em_embedding(em_tensor_t *weight, em_tensor_t *indices) {
    if (!emt_check(weight, "em_embedding", "weight") || !emt_check(indices, "em_embedding", "indices")) return NULL;
    em_tensor_t *ts[2] = {weight, indices};
    emo_attrs a = emo_attrs0();
    return emo_call1(EMO_embedding, ts, 2, &a);
}

em_tensor_t *em_cross_entropy_ex(em_tensor_t *logits, em_tensor_t *targets, int64_t ignore_index,
                                 em_reduction reduction) {
    if (!emt_check(logits, "em_cross_entropy", "logits") || !emt_check(targets, "em_cross_entropy", "targets"))
        return NULL;
    em_tensor_t *ts[2] = {logits, targets};
    emo_attrs a = emo_attrs0();
    a.j[2] = ignore_index;
    a.j[3] = (int64_t)reduction;
    return emo_call1(EMO_cross_entropy, ts, 2, &a);
}

em_tensor_t *em_cross_entropy(em_tensor_t *logits, em_tensor_t *targets) {
    return em_cross_entropy_ex(logits, targets, -100, EM_REDUCE_MEAN);
}

em_tensor_t *em_dropout(em_tensor_t *x, double p, bool training) {
    if (!emt_check(x, "em_dropout", "x")) return NULL;
    if (!(p >= 0 && p <= 1)) return em_seterr_null(EM_ERR_ARG, "em_dropout: p must be in [0, 1], got %g", p);
    if (!training || p == 0) { /* the identity: x itself, like PyTorch */
        x->refcount++;
        return emt_own(x);
    }
    emo_attrs a = emo_attrs0();
    a.f[0] = p;
    a.offset = emt_rng_reserve((uint64_t)emt_numel(x), &a.seed);
    return emo_call1(EMO_dropout, &x, 1, &a);
}
