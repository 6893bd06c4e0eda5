/* cases_view.c - op cases for views, copies, casts and creation ops (src/ops/view.c).
 * See tests/lib/harness.h for how a case is run. */
#include "harness.h"

/* ---- reshape: ia = target shape ------------------------------------------------------------- */
static int fwd_reshape(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    out[0] = em_reshape(in[0], c->ia, c->nia);
    return out[0] ? 1 : 0;
}
static int ref_reshape(const th_rt *in, const th_case *c, th_rt *out) {
    int64_t shape[8], n = th_numel(&in[0]), known = 1;
    int at = -1;
    for (int d = 0; d < c->nia; d++) {
        shape[d] = c->ia[d];
        if (shape[d] == -1) at = d; else known *= shape[d];
    }
    if (at >= 0) shape[at] = n / known;
    th_rt_alloc(&out[0], shape, c->nia, in[0].dtype);
    memcpy(out[0].d, in[0].d, (size_t)n * sizeof(double)); /* row-major order is kept */
    return 1;
}

/* ---- permute: ia = perm ----------------------------------------------------------------------- */
static int fwd_permute(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    int perm[8];
    for (int d = 0; d < c->nia; d++) perm[d] = (int)c->ia[d];
    out[0] = em_permute(in[0], perm, c->nia);
    return out[0] ? 1 : 0;
}
static int ref_permute(const th_rt *in, const th_case *c, th_rt *out) {
    int64_t shape[8], idx[8], src[8];
    for (int d = 0; d < c->nia; d++) shape[d] = in[0].shape[c->ia[d]];
    th_rt_alloc(&out[0], shape, c->nia, in[0].dtype);
    for (int64_t i = 0; i < th_numel(&out[0]); i++) {
        th_unravel(i, shape, c->nia, idx);
        for (int d = 0; d < c->nia; d++) src[c->ia[d]] = idx[d];
        out[0].d[i] = in[0].d[th_bidx(&in[0], src, in[0].ndim)];
    }
    return 1;
}

#define ALL_DT (TH_FLOATS | TH_INTS | TH_BOOLS)

const th_case th_cases_view[] = {
    {"reshape", "merge", 1, {{3, {2, 3, 4}, TH_T}}, fwd_reshape, ref_reshape, ALL_DT, 1, {6, 4}, 2},
    {"reshape", "infer -1", 1, {{2, {4, 6}, TH_T}}, fwd_reshape, ref_reshape, 0, 1, {2, -1, 3}, 3},
    {"reshape", "noncontig copies", 1, {{2, {3, 4}, TH_T, .noncontig = 1}}, fwd_reshape, ref_reshape, 0, 1, {12}, 1},
    {"reshape", "size0", 1, {{2, {0, 4}, TH_T}}, fwd_reshape, ref_reshape, 0, 1, {4, 0}, 2},
    {"reshape", "to 0-dim", 1, {{1, {1}, TH_T}}, fwd_reshape, ref_reshape, 0, 1, {0}, 0},
    {"permute", "3d", 1, {{3, {2, 3, 4}, TH_T}}, fwd_permute, ref_permute, ALL_DT, 1, {2, 0, 1}, 3},
    {"permute", "noncontig", 1, {{3, {2, 3, 4}, TH_T, .noncontig = 1}}, fwd_permute, ref_permute, 0, 1, {1, 2, 0}, 3},
    {0},
};
