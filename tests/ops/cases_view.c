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


/* ---- slice: ia = {dim, start, end, step} (public semantics: negative and clamped bounds) -------- */
static int fwd_slice(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    out[0] = em_slice(in[0], (int)c->ia[0], c->ia[1], c->ia[2], c->ia[3]);
    return out[0] ? 1 : 0;
}
static int ref_slice(const th_rt *in, const th_case *c, th_rt *out) {
    int nd = in[0].ndim, dim = (int)(c->ia[0] < 0 ? c->ia[0] + nd : c->ia[0]);
    int64_t n = in[0].shape[dim], start = c->ia[1], end = c->ia[2], step = c->ia[3];
    if (start < 0) start += n;
    if (end < 0) end += n;
    start = start < 0 ? 0 : start > n ? n : start;
    end = end < start ? start : end > n ? n : end;
    int64_t shape[8], idx[8];
    memcpy(shape, in[0].shape, sizeof shape);
    shape[dim] = (end - start + step - 1) / step;
    th_rt_alloc(&out[0], shape, nd, in[0].dtype);
    for (int64_t i = 0; i < th_numel(&out[0]); i++) {
        th_unravel(i, shape, nd, idx);
        idx[dim] = start + idx[dim] * step;
        out[0].d[i] = in[0].d[th_bidx(&in[0], idx, nd)];
    }
    return 1;
}

/* ---- expand: ia = target shape (-1 keeps) ------------------------------------------------------- */
static int fwd_expand(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    out[0] = em_expand(in[0], c->ia, c->nia);
    return out[0] ? 1 : 0;
}
static int ref_expand(const th_rt *in, const th_case *c, th_rt *out) {
    int64_t shape[8], idx[8];
    for (int d = 0; d < c->nia; d++) {
        int k = d - (c->nia - in[0].ndim);
        shape[d] = c->ia[d] == -1 ? in[0].shape[k] : c->ia[d];
    }
    th_rt_alloc(&out[0], shape, c->nia, in[0].dtype);
    for (int64_t i = 0; i < th_numel(&out[0]); i++) {
        th_unravel(i, shape, c->nia, idx);
        out[0].d[i] = in[0].d[th_bidx(&in[0], idx, c->nia)];
    }
    return 1;
}

/* ---- copy (em_clone) and cast: ia[0] = target dtype -------------------------------------------- */
static int fwd_clone(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    (void)c;
    out[0] = em_clone(in[0]);
    return out[0] && em_is_contiguous(out[0]) && !em_shares_storage(out[0], in[0]) ? 1 : 0;
}
static int ref_same(const th_rt *in, const th_case *c, th_rt *out) {
    (void)c;
    th_rt_alloc(&out[0], in[0].shape, in[0].ndim, in[0].dtype);
    memcpy(out[0].d, in[0].d, (size_t)th_numel(&in[0]) * sizeof(double));
    return 1;
}
static int fwd_cast(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    out[0] = em_cast(in[0], (em_dtype)c->ia[0]);
    return out[0] ? 1 : 0;
}
/* the value a double becomes when stored as dt: round to the target's precision */
static double round_to(double v, em_dtype dt) {
    em_tensor_t *t = em_from_data(&v, NULL, 0, EM_F64), *c = em_cast(t, dt), *b = em_cast(c, EM_F64);
    double r = em_item(b);
    return r;
}
static int ref_cast(const th_rt *in, const th_case *c, th_rt *out) {
    em_dtype dt = (em_dtype)c->ia[0];
    th_rt_alloc(&out[0], in[0].shape, in[0].ndim, dt);
    for (int64_t i = 0; i < th_numel(&in[0]); i++) {
        double v = in[0].d[i];
        if (dt == EM_BOOL) v = v != 0;
        else if (dt == EM_I32 || dt == EM_I64) v = trunc(v);
        else if (dt == EM_U8) v = (double)(uint8_t)(int64_t)trunc(v);
        else if (dt == EM_F32) v = (double)(float)v;
        else if (dt != EM_F64) v = round_to(v, dt); /* f16/bf16 rounding is checked in test_tensor */
        out[0].d[i] = v;
    }
    return 1;
}

/* ---- creation: full (ia = shape, fa[0] value), arange (fa = start, end, step) ------------------ */
static int fwd_full(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    (void)in;
    out[0] = em_full(c->ia, c->nia, c->fa[0], EM_F32);
    return out[0] ? 1 : 0;
}
static int ref_full(const th_rt *in, const th_case *c, th_rt *out) {
    (void)in;
    th_rt_alloc(&out[0], c->ia, c->nia, EM_F32);
    for (int64_t i = 0; i < th_numel(&out[0]); i++) out[0].d[i] = (float)c->fa[0];
    return 1;
}
static int fwd_arange(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    (void)in;
    out[0] = em_arange(c->fa[0], c->fa[1], c->fa[2], (em_dtype)c->ia[0]);
    return out[0] ? 1 : 0;
}
static int ref_arange(const th_rt *in, const th_case *c, th_rt *out) {
    (void)in;
    int64_t n = (int64_t)ceil((c->fa[1] - c->fa[0]) / c->fa[2]);
    th_rt_alloc(&out[0], &n, 1, (em_dtype)c->ia[0]);
    for (int64_t i = 0; i < n; i++) {
        double v = c->fa[0] + (double)i * c->fa[2];
        out[0].d[i] = c->ia[0] == EM_I64 ? trunc(v) : (double)(float)v;
    }
    return 1;
}

/* ---- random ops: an independent Philox 4x32-10 (Salmon et al., SC'11) as the oracle ------------ */
static void philox_ref(uint64_t seed, uint64_t ctr, uint32_t out[4]) {
    uint32_t c[4] = {(uint32_t)ctr, (uint32_t)(ctr >> 32), 0, 0}, k[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c[0], p1 = (uint64_t)0xCD9E8D57u * c[2];
        uint32_t n[4] = {(uint32_t)(p1 >> 32) ^ c[1] ^ k[0], (uint32_t)p1, (uint32_t)(p0 >> 32) ^ c[3] ^ k[1], (uint32_t)p0};
        memcpy(c, n, sizeof c);
        k[0] += 0x9E3779B9u;
        k[1] += 0xBB67AE85u;
    }
    memcpy(out, c, sizeof c);
}
/* ia[0] = seed; ia[1..] shape; fa[0] = 0 rand, 1 randn, 2 randint(ia[6], ia[7]) */
static int fwd_random(em_tensor_t *const *in, const th_case *c, em_tensor_t **out) {
    (void)in;
    em_manual_seed((uint64_t)c->ia[0]);
    em_tensor_t *skip = em_rand((int64_t[]){3}, 1, EM_F32); /* offset 3: counters continue */
    (void)skip;
    int nd = c->nia - 1;
    if (c->fa[0] == 0) out[0] = em_rand(c->ia + 1, nd, EM_F64);
    else if (c->fa[0] == 1) out[0] = em_randn(c->ia + 1, nd, EM_F64);
    else out[0] = em_randint(-3, 5, c->ia + 1, nd, EM_I64);
    return out[0] ? 1 : 0;
}
static int ref_random(const th_rt *in, const th_case *c, th_rt *out) {
    (void)in;
    int nd = c->nia - 1;
    th_rt_alloc(&out[0], c->ia + 1, nd, c->fa[0] == 2 ? EM_I64 : EM_F64);
    for (int64_t i = 0; i < th_numel(&out[0]); i++) {
        uint32_t r[4];
        philox_ref((uint64_t)c->ia[0], 3 + (uint64_t)i, r);
        if (c->fa[0] == 0) out[0].d[i] = (double)(float)((r[0] >> 8) * (1.0 / 16777216.0));
        else if (c->fa[0] == 1)
            out[0].d[i] = sqrt(-2.0 * log((r[0] + 1.0) / 4294967296.0)) * cos(6.283185307179586 * (r[1] / 4294967296.0));
        else out[0].d[i] = (double)(-3 + (int64_t)((((uint64_t)r[1] << 32) | r[0]) % 8));
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
    {"reshape", "grad", 1, {{3, {2, 3, 4}, TH_T}}, fwd_reshape, ref_reshape, TH_F64, 1, {4, 6}, 2},
    {"slice", "step 2", 1, {{2, {5, 4}, TH_T}}, fwd_slice, ref_slice, ALL_DT, 1, {0, 1, 5, 2}, 4},
    {"slice", "negative bounds", 1, {{3, {2, 6, 3}, TH_T}}, fwd_slice, ref_slice, 0, 1, {-2, -5, -1, 1}, 4},
    {"slice", "clamped, step 3", 1, {{2, {3, 10}, TH_T, .noncontig = 1}}, fwd_slice, ref_slice, 0, 1, {1, 2, 100, 3}, 4},
    {"slice", "empty", 1, {{2, {3, 4}, TH_T}}, fwd_slice, ref_slice, 0, 1, {1, 3, 2, 1}, 4},
    {"expand", "broadcast", 1, {{2, {3, 1}, TH_T}}, fwd_expand, ref_expand, ALL_DT, 1, {2, 3, 4}, 3},
    {"expand", "keep -1", 1, {{2, {1, 4}, TH_T, .noncontig = 1}}, fwd_expand, ref_expand, 0, 1, {5, -1}, 2},
    {"expand", "0-dim", 1, {{0, {0}, TH_T}}, fwd_expand, ref_expand, 0, 1, {2, 2}, 2},
    {"copy", "noncontig", 1, {{3, {2, 3, 4}, TH_T, .noncontig = 1}}, fwd_clone, ref_same, ALL_DT, 1},
    {"copy", "size0", 1, {{2, {0, 3}, TH_T}}, fwd_clone, ref_same, 0, 1},
    {"cast", "to f64", 1, {{2, {3, 5}, TH_T}}, fwd_cast, ref_cast, TH_FLOATS | TH_INTS | TH_BOOLS, 1, {EM_F64}, 1},
    {"cast", "to f32", 1, {{2, {3, 5}, TH_T, .noncontig = 1}}, fwd_cast, ref_cast, TH_F64 | TH_INTS, 0, {EM_F32}, 1},
    {"cast", "to i64", 1, {{1, {7}, TH_T, TH_SMALLINT}}, fwd_cast, ref_cast, TH_FLOATS | TH_I32 | TH_U8, 0, {EM_I64}, 1},
    {"cast", "to bool", 1, {{1, {9}, TH_T, TH_SMALLINT}}, fwd_cast, ref_cast, TH_FLOATS | TH_INTS, 0, {EM_BOOL}, 1},
    {"cast", "to bf16", 1, {{1, {9}, TH_T}}, fwd_cast, ref_cast, TH_F32 | TH_F64, 0, {EM_BF16}, 1},
    {"cast", "to f16", 1, {{1, {9}, TH_T}}, fwd_cast, ref_cast, TH_F32 | TH_F64, 0, {EM_F16}, 1},
    {"full", "2d", 0, {{0}}, fwd_full, ref_full, TH_F32, 0, {2, 3}, 2, {2.5}},
    {"full", "0-dim", 0, {{0}}, fwd_full, ref_full, TH_F32, 0, {0}, 0, {-1.25}},
    {"full", "size0", 0, {{0}}, fwd_full, ref_full, TH_F32, 0, {4, 0}, 2, {7}},
    {"arange", "f32", 0, {{0}}, fwd_arange, ref_arange, TH_F32, 0, {EM_F32}, 1, {0.5, 3.7, 0.4}},
    {"arange", "i64 descending", 0, {{0}}, fwd_arange, ref_arange, TH_F32, 0, {EM_I64}, 1, {10, -3, -3}},
    {"rand", "philox", 0, {{0}}, fwd_random, ref_random, TH_F32, 0, {1234, 3, 5}, 3, {0}},
    {"randn", "philox", 0, {{0}}, fwd_random, ref_random, TH_F32, 0, {77, 4, 2, 3}, 4, {1}},
    {"randint", "philox", 0, {{0}}, fwd_random, ref_random, TH_F32, 0, {5, 40}, 2, {2}},
    {0},
};
