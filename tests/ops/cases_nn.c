/* cases_nn.c - op cases for the nn group: softmax, log_softmax, layer_norm, rms_norm,
 * cross_entropy, dropout, embedding (src/ops/nn.c). See tests/lib/harness.h for how a case runs.
 *
 * The references are plain float64 loops. Dropout's reference draws its mask from its own
 * Philox 4x32-10 (th_nn_philox4x32 below, written from Salmon et al. 2011 and checked against
 * Random123's known-answer vectors in test_errors_nn.c), not from the library's generator.
 */
#include "harness.h"

#include <stdint.h>

/* sizes before, at and after dim of a reference tensor (0-dim: one row of one) */
static void split_at(const th_rt *x, int64_t dim, int64_t *outer, int64_t *n, int64_t *inner) {
    *outer = *inner = 1;
    *n = x->ndim ? x->shape[dim] : 1;
    for (int d = 0; d < dim; d++) *outer *= x->shape[d];
    for (int d = (int)dim + 1; d < x->ndim; d++) *inner *= x->shape[d];
}

/* ---- softmax / log_softmax: ia[0] dim; fa[0] != 0 scales the input first (1024: exact) ---------- */
static em_tensor_t *scaled(em_tensor_t *x, const th_case *c) { return c->fa[0] != 0 ? em_mul_scalar(x, c->fa[0]) : x; }

static int fwd_softmax(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    out[0] = em_softmax(scaled(in[0], c), (int)c->ia[0]);
    return out[0] ? 1 : 0;
}
static int fwd_log_softmax(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    out[0] = em_log_softmax(scaled(in[0], c), (int)c->ia[0]);
    return out[0] ? 1 : 0;
}

static int ref_softmax_any(const th_rt *in, const th_case *c, th_rt *out, int want_log) {
    const th_rt *x = &in[0];
    int64_t dim = c->ia[0], outer, n, inner;
    if (dim < 0) dim += x->ndim > 0 ? x->ndim : 1;
    split_at(x, dim, &outer, &n, &inner);
    double s = c->fa[0] != 0 ? c->fa[0] : 1.0;
    th_rt_alloc(&out[0], x->shape, x->ndim, x->dtype);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < inner; j++) {
            const double *xr = x->d + o * n * inner + j;
            double *yr = out[0].d + o * n * inner + j;
            double m = -INFINITY, sum = 0;
            for (int64_t k = 0; k < n; k++) m = fmax(m, s * xr[k * inner]);
            for (int64_t k = 0; k < n; k++) sum += exp(s * xr[k * inner] - m);
            for (int64_t k = 0; k < n; k++)
                yr[k * inner] = want_log ? s * xr[k * inner] - m - log(sum) : exp(s * xr[k * inner] - m) / sum;
        }
    return 1;
}
static int ref_softmax(const th_rt *in, const th_case *c, th_rt *out) { return ref_softmax_any(in, c, out, 0); }
static int ref_log_softmax(const th_rt *in, const th_case *c, th_rt *out) { return ref_softmax_any(in, c, out, 1); }

/* ---- layer_norm / rms_norm: ia[0] has_weight, ia[1] has_bias; fa[0] eps ------------------------- */
static int fwd_layer_norm(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    int k = 1;
    em_tensor_t *w = c->ia[0] ? in[k++] : NULL, *b = c->ia[1] ? in[k++] : NULL;
    out[0] = em_layer_norm(in[0], w, b, c->fa[0]);
    return out[0] ? 1 : 0;
}
static int fwd_rms_norm(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    out[0] = em_rms_norm(in[0], c->ia[0] ? in[1] : NULL, c->fa[0]);
    return out[0] ? 1 : 0;
}

static int ref_norm(const th_rt *in, const th_case *c, th_rt *out, int rms) {
    const th_rt *x = &in[0];
    int k = 1;
    const th_rt *w = c->ia[0] ? &in[k++] : NULL, *b = !rms && c->ia[1] ? &in[k++] : NULL;
    int64_t C = x->shape[x->ndim - 1], rows = C ? th_numel(x) / C : 0;
    th_rt_alloc(&out[0], x->shape, x->ndim, x->dtype);
    for (int64_t r = 0; r < rows; r++) {
        const double *xr = x->d + r * C;
        double mean = 0, var = 0;
        if (!rms) {
            for (int64_t i = 0; i < C; i++) mean += xr[i];
            mean /= (double)C;
        }
        for (int64_t i = 0; i < C; i++) var += (xr[i] - mean) * (xr[i] - mean);
        double rstd = 1.0 / sqrt(var / (double)C + c->fa[0]);
        for (int64_t i = 0; i < C; i++)
            out[0].d[r * C + i] = (xr[i] - mean) * rstd * (w ? w->d[i] : 1.0) + (b ? b->d[i] : 0.0);
    }
    return 1;
}
static int ref_layer_norm(const th_rt *in, const th_case *c, th_rt *out) { return ref_norm(in, c, out, 0); }
static int ref_rms_norm(const th_rt *in, const th_case *c, th_rt *out) { return ref_norm(in, c, out, 1); }

/* ---- cross_entropy: ia[0] ignore_index, ia[1] reduction, ia[2] != 0: targets equal to 0 become
        -100 first, ia[3] != 0: call em_cross_entropy (defaults -100, mean) ---------------------- */
static int fwd_cross_entropy(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    em_tensor_t *t = in[1];
    if (c->ia[2]) t = em_masked_fill(t, em_eq(t, em_scalar(0, em_type(t))), -100);
    out[0] = c->ia[3] ? em_cross_entropy(in[0], t) : em_cross_entropy_ex(in[0], t, c->ia[0], (em_reduction)c->ia[1]);
    return out[0] ? 1 : 0;
}
static int ref_cross_entropy(const th_rt *in, const th_case *c, th_rt *out) {
    const th_rt *x = &in[0], *t = &in[1];
    int64_t ignore = c->ia[3] ? -100 : c->ia[0], red = c->ia[3] ? EM_REDUCE_MEAN : c->ia[1];
    int64_t C = x->shape[x->ndim - 1], N = x->ndim == 2 ? x->shape[0] : 1, count = 0;
    double *loss = calloc((size_t)(N > 0 ? N : 1), sizeof *loss), total = 0;
    for (int64_t r = 0; r < N; r++) {
        int64_t tr = (int64_t)t->d[r];
        if (c->ia[2] && tr == 0) tr = -100;
        if (tr == ignore) continue;
        const double *xr = x->d + r * C;
        double m = -INFINITY, s = 0;
        for (int64_t i = 0; i < C; i++) m = fmax(m, xr[i]);
        for (int64_t i = 0; i < C; i++) s += exp(xr[i] - m);
        loss[r] = m + log(s) - xr[tr];
        total += loss[r];
        count++;
    }
    if (red == EM_REDUCE_NONE) {
        th_rt_alloc(&out[0], t->shape, t->ndim, x->dtype);
        for (int64_t r = 0; r < N; r++) out[0].d[r] = loss[r];
    } else {
        th_rt_alloc(&out[0], NULL, 0, x->dtype);
        out[0].d[0] = red == EM_REDUCE_SUM ? total : total / (double)count;
    }
    free(loss);
    return 1;
}

/* ---- dropout: ia[0] seed, ia[1] offset, ia[2] training; fa[0] p ------------------------------------ */
/* Philox 4x32-10 on a full 4-word counter and 2-word key (Salmon et al., SC'11) */
void th_nn_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);
void th_nn_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t x0 = ctr[0], x1 = ctr[1], x2 = ctr[2], x3 = ctr[3], k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * x0, p1 = (uint64_t)0xCD9E8D57u * x2;
        uint32_t y0 = (uint32_t)(p1 >> 32) ^ x1 ^ k0, y1 = (uint32_t)p1;
        uint32_t y2 = (uint32_t)(p0 >> 32) ^ x3 ^ k1, y3 = (uint32_t)p0;
        x0 = y0, x1 = y1, x2 = y2, x3 = y3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = x0, out[1] = x1, out[2] = x2, out[3] = x3;
}

/* the uniform Ember's random ops give element i: word 0 of Philox((offset + i, 0, 0), seed) */
static double philox_uniform(uint64_t seed, uint64_t ctr) {
    uint32_t c[4] = {(uint32_t)ctr, (uint32_t)(ctr >> 32), 0, 0}, k[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)}, r[4];
    th_nn_philox4x32(c, k, r);
    return (double)(r[0] >> 8) * (1.0 / 16777216.0);
}

static int fwd_dropout(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    em_rng_set_state((uint64_t)c->ia[0], (uint64_t)c->ia[1]);
    out[0] = em_dropout(in[0], c->fa[0], c->ia[2] != 0);
    return out[0] ? 1 : 0;
}
static int ref_dropout(const th_rt *in, const th_case *c, th_rt *out) {
    const th_rt *x = &in[0];
    double p = c->fa[0];
    th_rt_alloc(&out[0], x->shape, x->ndim, x->dtype);
    for (int64_t i = 0; i < th_numel(x); i++) {
        int keep = !c->ia[2] || p == 0 || philox_uniform((uint64_t)c->ia[0], (uint64_t)c->ia[1] + (uint64_t)i) >= p;
        out[0].d[i] = !keep ? 0.0 : c->ia[2] ? x->d[i] / (1.0 - p) : x->d[i];
    }
    return 1;
}

/* ---- embedding: weight (V, C), indices --------------------------------------------------------- */
static int fwd_embedding(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    (void)c;
    out[0] = em_embedding(in[0], in[1]);
    return out[0] ? 1 : 0;
}
static int ref_embedding(const th_rt *in, const th_case *c, th_rt *out) {
    (void)c;
    const th_rt *w = &in[0], *ix = &in[1];
    int64_t C = w->shape[1], shape[TH_MAX_DIMS];
    for (int d = 0; d < ix->ndim; d++) shape[d] = ix->shape[d];
    shape[ix->ndim] = C;
    th_rt_alloc(&out[0], shape, ix->ndim + 1, w->dtype);
    for (int64_t m = 0; m < th_numel(ix); m++)
        for (int64_t j = 0; j < C; j++) out[0].d[m * C + j] = w->d[(int64_t)ix->d[m] * C + j];
    return 1;
}

#define ALL_DT (TH_FLOATS | TH_INTS | TH_BOOLS)
#define X(nd, ...) {nd, {__VA_ARGS__}, TH_T}
#define IDX(dt, hi, nd, ...) {nd, {__VA_ARGS__}, dt, TH_INDEX, hi, .nodiff = 1}

/* cases: op, label, n_in, inputs, fwd, ref, dtypes, grad, ia, nia, fa, tol */
const th_case th_cases_nn[] = {
    /* softmax */
    {"softmax", "last dim", 1, {X(2, 4, 7)}, fwd_softmax, ref_softmax, TH_FLOATS, 1, {1}, 1},
    {"softmax", "dim 0", 1, {X(3, 5, 3, 4)}, fwd_softmax, ref_softmax, TH_FLOATS, 1, {0}, 1},
    {"softmax", "middle dim", 1, {X(3, 2, 6, 5)}, fwd_softmax, ref_softmax, 0, 1, {1}, 1},
    {"softmax", "negative dim", 1, {X(3, 2, 3, 4)}, fwd_softmax, ref_softmax, 0, 1, {-2}, 1},
    {"softmax", "noncontig", 1, {{2, {5, 6}, TH_T, .noncontig = 1}}, fwd_softmax, ref_softmax, TH_FLOATS, 1, {1}, 1},
    {"softmax", "noncontig dim 0", 1, {{3, {4, 3, 2}, TH_T, .noncontig = 1}}, fwd_softmax, ref_softmax, 0, 1, {0}, 1},
    {"softmax", "size-1 dim", 1, {X(2, 3, 1)}, fwd_softmax, ref_softmax, 0, 1, {1}, 1},
    {"softmax", "size0 batch", 1, {X(2, 0, 5)}, fwd_softmax, ref_softmax, TH_FLOATS, 0, {1}, 1},
    {"softmax", "size0 dim", 1, {X(2, 3, 0)}, fwd_softmax, ref_softmax, 0, 0, {1}, 1},
    {"softmax", "0-dim", 1, {X(0, 0)}, fwd_softmax, ref_softmax, 0, 1, {0}, 1},
    {"softmax", "1-d", 1, {X(1, 9)}, fwd_softmax, ref_softmax, 0, 1, {-1}, 1},
    {"softmax", "large x1024", 1, {X(2, 6, 50)}, fwd_softmax, ref_softmax, TH_FLOATS, 0, {1}, 1, {1024}},
    {"softmax", "large x1024 dim 0", 1, {X(2, 40, 3)}, fwd_softmax, ref_softmax, TH_FLOATS, 0, {0}, 1, {1024}},
    {"softmax", "long rows", 1, {X(2, 3, 700)}, fwd_softmax, ref_softmax, TH_FLOATS, 0, {1}, 1},
    {"softmax", "parallel rows", 1, {X(2, 64, 600)}, fwd_softmax, ref_softmax, TH_F32, 0, {1}, 1},
    {"softmax", "parallel cols", 1, {X(3, 4, 50, 200)}, fwd_softmax, ref_softmax, TH_F32, 0, {1}, 1},
    {"softmax", "wide inner", 1, {X(3, 2, 5, 300)}, fwd_softmax, ref_softmax, TH_FLOATS, 0, {1}, 1},
    /* log_softmax */
    {"log_softmax", "last dim", 1, {X(2, 4, 7)}, fwd_log_softmax, ref_log_softmax, TH_FLOATS, 1, {1}, 1},
    {"log_softmax", "dim 0", 1, {X(3, 5, 3, 4)}, fwd_log_softmax, ref_log_softmax, TH_FLOATS, 1, {0}, 1},
    {"log_softmax", "negative dim", 1, {X(3, 2, 3, 4)}, fwd_log_softmax, ref_log_softmax, 0, 1, {-3}, 1},
    {"log_softmax", "noncontig", 1, {{2, {5, 6}, TH_T, .noncontig = 1}}, fwd_log_softmax, ref_log_softmax, 0, 1, {1}, 1},
    {"log_softmax", "size-1 dim", 1, {X(2, 1, 3)}, fwd_log_softmax, ref_log_softmax, 0, 1, {0}, 1},
    {"log_softmax", "size0 batch", 1, {X(2, 0, 5)}, fwd_log_softmax, ref_log_softmax, 0, 0, {-1}, 1},
    {"log_softmax", "0-dim", 1, {X(0, 0)}, fwd_log_softmax, ref_log_softmax, 0, 1, {-1}, 1},
    {"log_softmax", "large x1024", 1, {X(2, 6, 50)}, fwd_log_softmax, ref_log_softmax, TH_FLOATS, 0, {1}, 1, {1024}},
    {"log_softmax", "large x1024 dim 0", 1, {X(2, 40, 3)}, fwd_log_softmax, ref_log_softmax, TH_FLOATS, 0, {0}, 1, {1024}},
    {"log_softmax", "wide inner", 1, {X(3, 2, 5, 300)}, fwd_log_softmax, ref_log_softmax, 0, 0, {1}, 1},
    /* layer_norm: x, [w], [b] */
    {"layer_norm", "w b", 3, {X(2, 4, 8), X(1, 8), X(1, 8)}, fwd_layer_norm, ref_layer_norm, TH_FLOATS, 1, {1, 1}, 2, {1e-5}},
    {"layer_norm", "rank 3 w b", 3, {X(3, 2, 3, 5), X(1, 5), X(1, 5)}, fwd_layer_norm, ref_layer_norm, 0, 1, {1, 1}, 2, {1e-5}},
    {"layer_norm", "no w b", 1, {X(3, 2, 3, 6)}, fwd_layer_norm, ref_layer_norm, TH_FLOATS, 1, {0, 0}, 2, {1e-5}},
    {"layer_norm", "w only", 2, {X(2, 3, 6), X(1, 6)}, fwd_layer_norm, ref_layer_norm, 0, 1, {1, 0}, 2, {1e-5}},
    {"layer_norm", "b only", 2, {X(2, 3, 6), X(1, 6)}, fwd_layer_norm, ref_layer_norm, 0, 1, {0, 1}, 2, {1e-5}},
    {"layer_norm", "noncontig", 3, {{2, {4, 5}, TH_T, .noncontig = 1}, X(1, 5), {1, {5}, TH_T, .noncontig = 1}},
     fwd_layer_norm, ref_layer_norm, 0, 1, {1, 1}, 2, {1e-5}},
    {"layer_norm", "1-d", 3, {X(1, 7), X(1, 7), X(1, 7)}, fwd_layer_norm, ref_layer_norm, 0, 1, {1, 1}, 2, {1e-3}},
    {"layer_norm", "size-1 norm dim", 3, {X(2, 3, 1), X(1, 1), X(1, 1)}, fwd_layer_norm, ref_layer_norm, 0, 1, {1, 1}, 2, {1e-5}},
    {"layer_norm", "size0 batch", 3, {X(2, 0, 4), X(1, 4), X(1, 4)}, fwd_layer_norm, ref_layer_norm, TH_FLOATS, 0, {1, 1}, 2, {1e-5}},
    {"layer_norm", "parallel", 3, {X(2, 40, 1000), X(1, 1000), X(1, 1000)}, fwd_layer_norm, ref_layer_norm, TH_F32, 0, {1, 1}, 2, {1e-5}},
    {"layer_norm", "long rows", 3, {X(2, 3, 1000), X(1, 1000), X(1, 1000)}, fwd_layer_norm, ref_layer_norm, TH_FLOATS, 0, {1, 1}, 2, {1e-5}},
    /* rms_norm: x, [w] */
    {"rms_norm", "w", 2, {X(2, 4, 8), X(1, 8)}, fwd_rms_norm, ref_rms_norm, TH_FLOATS, 1, {1}, 1, {1e-6}},
    {"rms_norm", "rank 3 w", 2, {X(3, 2, 3, 5), X(1, 5)}, fwd_rms_norm, ref_rms_norm, 0, 1, {1}, 1, {1e-6}},
    {"rms_norm", "no w", 1, {X(3, 2, 3, 6)}, fwd_rms_norm, ref_rms_norm, TH_FLOATS, 1, {0}, 1, {1e-6}},
    {"rms_norm", "noncontig", 2, {{2, {4, 5}, TH_T, .noncontig = 1}, {1, {5}, TH_T, .noncontig = 1}}, fwd_rms_norm,
     ref_rms_norm, 0, 1, {1}, 1, {1e-6}},
    {"rms_norm", "1-d", 2, {X(1, 7), X(1, 7)}, fwd_rms_norm, ref_rms_norm, 0, 1, {1}, 1, {1e-5}},
    {"rms_norm", "size-1 norm dim", 2, {{2, {3, 1}, TH_T, TH_AWAY}, X(1, 1)}, fwd_rms_norm, ref_rms_norm, 0, 1, {1}, 1, {1e-5}},
    {"rms_norm", "size0 batch", 2, {X(2, 0, 4), X(1, 4)}, fwd_rms_norm, ref_rms_norm, TH_FLOATS, 0, {1}, 1, {1e-6}},
    {"rms_norm", "parallel", 2, {X(2, 40, 1000), X(1, 1000)}, fwd_rms_norm, ref_rms_norm, TH_F32, 0, {1}, 1, {1e-6}},
    {"rms_norm", "long rows", 2, {X(2, 3, 1000), X(1, 1000)}, fwd_rms_norm, ref_rms_norm, TH_FLOATS, 0, {1}, 1, {1e-6}},
    /* cross_entropy: logits, targets */
    {"cross_entropy", "default mean i64", 2, {X(2, 6, 5), IDX(EM_I64, 5, 1, 6)}, fwd_cross_entropy, ref_cross_entropy,
     TH_FLOATS, 1, {0, 0, 0, 1}, 4},
    {"cross_entropy", "mean i32", 2, {X(2, 6, 5), IDX(EM_I32, 5, 1, 6)}, fwd_cross_entropy, ref_cross_entropy,
     TH_FLOATS, 1, {-100, EM_REDUCE_MEAN}, 4},
    {"cross_entropy", "sum", 2, {X(2, 6, 5), IDX(EM_I64, 5, 1, 6)}, fwd_cross_entropy, ref_cross_entropy, 0, 1,
     {-100, EM_REDUCE_SUM}, 4},
    {"cross_entropy", "none", 2, {X(2, 6, 5), IDX(EM_I64, 5, 1, 6)}, fwd_cross_entropy, ref_cross_entropy,
     TH_FLOATS, 1, {-100, EM_REDUCE_NONE}, 4},
    {"cross_entropy", "ignore in range mean", 2, {X(2, 8, 4), IDX(EM_I64, 4, 1, 8)}, fwd_cross_entropy,
     ref_cross_entropy, 0, 1, {1, EM_REDUCE_MEAN}, 4},
    {"cross_entropy", "ignore -100 present", 2, {X(2, 8, 4), IDX(EM_I64, 4, 1, 8)}, fwd_cross_entropy,
     ref_cross_entropy, 0, 1, {-100, EM_REDUCE_MEAN, 1}, 4},
    {"cross_entropy", "ignore -100 none", 2, {X(2, 8, 4), IDX(EM_I32, 4, 1, 8)}, fwd_cross_entropy,
     ref_cross_entropy, 0, 1, {-100, EM_REDUCE_NONE, 1}, 4},
    {"cross_entropy", "all ignored: nan", 2, {X(2, 3, 4), IDX(EM_I64, 1, 1, 3)}, fwd_cross_entropy,
     ref_cross_entropy, 0, 0, {0, EM_REDUCE_MEAN}, 4},
    {"cross_entropy", "1-d logits 0-dim target", 2, {X(1, 7), IDX(EM_I64, 7, 0, 0)}, fwd_cross_entropy,
     ref_cross_entropy, TH_FLOATS, 1, {-100, EM_REDUCE_MEAN}, 4},
    {"cross_entropy", "1-d none", 2, {X(1, 7), IDX(EM_I32, 7, 0, 0)}, fwd_cross_entropy, ref_cross_entropy, 0, 1,
     {-100, EM_REDUCE_NONE}, 4},
    {"cross_entropy", "noncontig", 2, {{2, {5, 6}, TH_T, .noncontig = 1}, {1, {5}, EM_I64, TH_INDEX, 6, 1, 1}},
     fwd_cross_entropy, ref_cross_entropy, 0, 1, {-100, EM_REDUCE_MEAN}, 4},
    {"cross_entropy", "one class", 2, {X(2, 3, 1), IDX(EM_I64, 1, 1, 3)}, fwd_cross_entropy, ref_cross_entropy, 0, 1,
     {-100, EM_REDUCE_SUM}, 4},
    {"cross_entropy", "size0 batch none", 2, {X(2, 0, 5), IDX(EM_I64, 5, 1, 0)}, fwd_cross_entropy,
     ref_cross_entropy, 0, 0, {-100, EM_REDUCE_NONE}, 4},
    {"cross_entropy", "size0 batch sum", 2, {X(2, 0, 5), IDX(EM_I64, 5, 1, 0)}, fwd_cross_entropy,
     ref_cross_entropy, 0, 0, {-100, EM_REDUCE_SUM}, 4},
    {"cross_entropy", "parallel none", 2, {X(2, 40, 1000), IDX(EM_I64, 1000, 1, 40)}, fwd_cross_entropy, ref_cross_entropy,
     TH_F32, 0, {-100, EM_REDUCE_NONE}, 4},
    {"cross_entropy", "long rows", 2, {X(2, 4, 900), IDX(EM_I64, 900, 1, 4)}, fwd_cross_entropy, ref_cross_entropy,
     TH_FLOATS, 0, {-100, EM_REDUCE_MEAN}, 4},
    /* dropout: x; ia = seed, offset, training; fa = p */
    {"dropout", "p 0.5", 1, {X(2, 6, 7)}, fwd_dropout, ref_dropout, TH_FLOATS, 1, {1234, 0, 1}, 3, {0.5}},
    {"dropout", "p 0.3 offset", 1, {X(3, 2, 5, 4)}, fwd_dropout, ref_dropout, 0, 1, {7, 1000, 1}, 3, {0.3}},
    {"dropout", "p 0.1 big seed", 1, {X(1, 300)}, fwd_dropout, ref_dropout, TH_FLOATS, 1,
     {0x123456789abcdefLL, (1LL << 32) - 100, 1}, 3, {0.1}},
    {"dropout", "noncontig", 1, {{2, {5, 6}, TH_T, .noncontig = 1}}, fwd_dropout, ref_dropout, 0, 1, {99, 5, 1}, 3, {0.4}},
    {"dropout", "p 0", 1, {X(2, 3, 4)}, fwd_dropout, ref_dropout, TH_FLOATS, 0, {1, 0, 1}, 3, {0.0}},
    {"dropout", "eval", 1, {X(2, 3, 4)}, fwd_dropout, ref_dropout, TH_FLOATS, 0, {1, 0, 0}, 3, {0.5}},
    {"dropout", "p 1", 1, {X(2, 3, 4)}, fwd_dropout, ref_dropout, 0, 1, {3, 0, 1}, 3, {1.0}},
    {"dropout", "0-dim", 1, {X(0, 0)}, fwd_dropout, ref_dropout, 0, 1, {5, 2, 1}, 3, {0.5}},
    {"dropout", "size0", 1, {X(2, 0, 3)}, fwd_dropout, ref_dropout, 0, 0, {5, 2, 1}, 3, {0.5}},
    {"dropout", "large", 1, {X(2, 300, 200)}, fwd_dropout, ref_dropout, TH_F32, 0, {42, 17, 1}, 3, {0.25}},
    /* embedding: weight (V, C), indices */
    {"embedding", "(2,3) i64", 2, {X(2, 10, 4), IDX(EM_I64, 10, 2, 2, 3)}, fwd_embedding, ref_embedding, ALL_DT, 1},
    {"embedding", "i32", 2, {X(2, 10, 4), IDX(EM_I32, 10, 1, 7)}, fwd_embedding, ref_embedding, TH_FLOATS, 1},
    {"embedding", "repeated indices", 2, {X(2, 3, 5), IDX(EM_I64, 3, 2, 4, 4)}, fwd_embedding, ref_embedding, 0, 1},
    {"embedding", "0-dim index", 2, {X(2, 6, 3), IDX(EM_I64, 6, 0, 0)}, fwd_embedding, ref_embedding, 0, 1},
    {"embedding", "noncontig", 2, {{2, {10, 4}, TH_T, .noncontig = 1}, {2, {3, 2}, EM_I64, TH_INDEX, 10, 1, 1}},
     fwd_embedding, ref_embedding, ALL_DT, 1},
    {"embedding", "size0 indices", 2, {X(2, 10, 4), IDX(EM_I64, 10, 1, 0)}, fwd_embedding, ref_embedding, 0, 1},
    {"embedding", "parallel", 2, {X(2, 100, 64), IDX(EM_I64, 100, 2, 16, 40)}, fwd_embedding, ref_embedding, TH_F32, 0},
    {"embedding", "size0 dim", 2, {X(2, 10, 0), IDX(EM_I64, 10, 1, 3)}, fwd_embedding, ref_embedding, 0, 0},
    {0},
};
