/* cases_linalg.c - op cases for matmul and linear (src/ops/linalg.c). The oracle is a plain
 * triple loop in float64 with PyTorch's 1-d and batch-broadcast rules. */
#include "harness.h"

static int fwd_matmul(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    (void)c;
    out[0] = em_matmul(in[0], in[1]);
    return out[0] ? 1 : 0;
}

static int ref_matmul(const th_rt *in, const th_case *c, th_rt *out) {
    (void)c;
    th_rt a = in[0], b = in[1];
    /* 1-d promotion */
    int64_t ash[10], bsh[10];
    int and = a.ndim == 1 ? 2 : a.ndim, bnd = b.ndim == 1 ? 2 : b.ndim;
    if (a.ndim == 1) { ash[0] = 1; ash[1] = a.shape[0]; } else memcpy(ash, a.shape, sizeof(int64_t) * (size_t)a.ndim);
    if (b.ndim == 1) { bsh[0] = b.shape[0]; bsh[1] = 1; } else memcpy(bsh, b.shape, sizeof(int64_t) * (size_t)b.ndim);
    th_rt A = {and, {0}, a.d, a.dtype}, B = {bnd, {0}, b.d, b.dtype};
    memcpy(A.shape, ash, sizeof(int64_t) * (size_t)and);
    memcpy(B.shape, bsh, sizeof(int64_t) * (size_t)bnd);
    int64_t M = ash[and - 2], K = ash[and - 1], N = bsh[bnd - 1];
    /* batch shape */
    th_rt Ab = {and - 2, {0}, NULL, 0}, Bb = {bnd - 2, {0}, NULL, 0};
    memcpy(Ab.shape, ash, sizeof(int64_t) * (size_t)(and - 2));
    memcpy(Bb.shape, bsh, sizeof(int64_t) * (size_t)(bnd - 2));
    int64_t batch[8], idx[10], ia[10], ib[10];
    int nb = th_bshape(&Ab, &Bb, batch);
    int64_t full[10];
    memcpy(full, batch, sizeof(int64_t) * (size_t)nb);
    full[nb] = M;
    full[nb + 1] = N;
    th_rt R;
    th_rt_alloc(&R, full, nb + 2, a.dtype);
    for (int64_t i = 0; i < th_numel(&R); i++) {
        th_unravel(i, full, nb + 2, idx);
        double acc = 0;
        for (int64_t k = 0; k < K; k++) {
            memcpy(ia, idx, sizeof ia);
            ia[nb + 1] = k;               /* (..., m, k) */
            memcpy(ib, idx, sizeof ib);
            ib[nb] = k;                   /* (..., k, n) */
            acc += A.d[th_bidx(&A, ia, nb + 2)] * B.d[th_bidx(&B, ib, nb + 2)];
        }
        R.d[i] = acc;
    }
    /* drop the promoted dims */
    int64_t oshape[10];
    int ond = 0;
    for (int d = 0; d < nb; d++) oshape[ond++] = batch[d];
    if (a.ndim >= 2) oshape[ond++] = M;
    if (b.ndim >= 2) oshape[ond++] = N;
    R.ndim = ond;
    memcpy(R.shape, oshape, sizeof(int64_t) * (size_t)ond);
    out[0] = R;
    return 1;
}

/* ia[0] = has bias */
static int fwd_linear(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    out[0] = em_linear(in[0], in[1], c->ia[0] ? in[2] : NULL);
    return out[0] ? 1 : 0;
}

static int ref_linear(const th_rt *in, const th_case *c, th_rt *out) {
    const th_rt *x = &in[0], *w = &in[1];
    int64_t IN = w->shape[1], OUT = w->shape[0], shape[8];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = OUT;
    th_rt_alloc(&out[0], shape, x->ndim, x->dtype);
    int64_t R = th_numel(&out[0]) / (OUT ? OUT : 1);
    for (int64_t r = 0; r < R; r++)
        for (int64_t o = 0; o < OUT; o++) {
            double acc = c->ia[0] ? in[2].d[o] : 0;
            for (int64_t k = 0; k < IN; k++) acc += x->d[r * IN + k] * w->d[o * IN + k];
            out[0].d[r * OUT + o] = acc;
        }
    return 1;
}

const th_case th_cases_linalg[] = {
    {"matmul", "2d", 2, {{2, {3, 4}, TH_T}, {2, {4, 5}, TH_T}}, fwd_matmul, ref_matmul, TH_FLOATS | TH_I32 | TH_I64, 1},
    {"matmul", "ragged big", 2, {{2, {37, 70}, TH_T}, {2, {70, 41}, TH_T}}, fwd_matmul, ref_matmul, TH_F32 | TH_F64, 0},
    {"matmul", "batched", 2, {{3, {2, 3, 4}, TH_T}, {3, {2, 4, 2}, TH_T}}, fwd_matmul, ref_matmul, 0, 1},
    {"matmul", "batch broadcast", 2, {{4, {2, 1, 3, 4}, TH_T}, {3, {5, 4, 2}, TH_T}}, fwd_matmul, ref_matmul, 0, 1},
    {"matmul", "2d @ batched", 2, {{2, {3, 4}, TH_T}, {3, {2, 4, 2}, TH_T}}, fwd_matmul, ref_matmul, 0, 1},
    {"matmul", "noncontig a", 2, {{2, {5, 6}, TH_T, .noncontig = 1}, {2, {6, 3}, TH_T}}, fwd_matmul, ref_matmul, 0, 1},
    {"matmul", "1d @ 2d", 2, {{1, {4}, TH_T}, {2, {4, 3}, TH_T}}, fwd_matmul, ref_matmul, 0, 1},
    {"matmul", "2d @ 1d", 2, {{2, {3, 4}, TH_T}, {1, {4}, TH_T}}, fwd_matmul, ref_matmul, 0, 1},
    {"matmul", "1d @ 1d", 2, {{1, {5}, TH_T}, {1, {5}, TH_T}}, fwd_matmul, ref_matmul, 0, 1},
    {"matmul", "1d @ batched", 2, {{1, {4}, TH_T}, {3, {2, 4, 3}, TH_T}}, fwd_matmul, ref_matmul, 0, 1},
    {"matmul", "batched @ 1d", 2, {{3, {2, 3, 4}, TH_T}, {1, {4}, TH_T}}, fwd_matmul, ref_matmul, 0, 1},
    {"matmul", "K = 0", 2, {{2, {3, 0}, TH_T}, {2, {0, 2}, TH_T}}, fwd_matmul, ref_matmul, 0, 0},
    {"matmul", "M = 0", 2, {{2, {0, 4}, TH_T}, {2, {4, 2}, TH_T}}, fwd_matmul, ref_matmul, 0, 0},
    {"matmul", "size-1 dims", 2, {{3, {1, 1, 4}, TH_T}, {2, {4, 1}, TH_T}}, fwd_matmul, ref_matmul, 0, 1},
    {"matmul", "many small heads", 2, {{4, {2, 6, 8, 16}, TH_T}, {4, {2, 6, 16, 8}, TH_T}}, fwd_matmul, ref_matmul, TH_F32, 0},
    {"matmul", "big parallel", 2, {{2, {96, 200}, TH_T}, {2, {200, 120}, TH_T, .noncontig = 1}}, fwd_matmul, ref_matmul, TH_F32, 0, .tol = 5},
    {"linear", "bias", 3, {{2, {4, 5}, TH_T}, {2, {3, 5}, TH_T}, {1, {3}, TH_T}}, fwd_linear, ref_linear,
     TH_FLOATS, 1, {1}, 1},
    {"linear", "no bias 3d", 2, {{3, {2, 3, 5}, TH_T}, {2, {4, 5}, TH_T}}, fwd_linear, ref_linear, 0, 1, {0}, 1},
    {"linear", "noncontig", 3, {{2, {4, 6}, TH_T, .noncontig = 1}, {2, {3, 6}, TH_T, .noncontig = 1}, {1, {3}, TH_T}},
     fwd_linear, ref_linear, 0, 1, {1}, 1},
    {"linear", "1d x", 3, {{1, {6}, TH_T}, {2, {2, 6}, TH_T}, {1, {2}, TH_T}}, fwd_linear, ref_linear, 0, 1, {1}, 1},
    {"linear", "empty batch", 3, {{2, {0, 6}, TH_T}, {2, {2, 6}, TH_T}, {1, {2}, TH_T}}, fwd_linear, ref_linear, 0, 0, {1}, 1},
    {0},
};
