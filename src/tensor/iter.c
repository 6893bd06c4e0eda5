/* iter.c - the strided pointwise iterator and the any-dtype copy built on it.
 *
 * Like PyTorch's TensorIterator in miniature: nt tensors of one shape (broadcast inputs are
 * stride-0 views) are walked row by row after size-1 dims are dropped and adjacent dims that
 * are contiguous in every tensor are merged, so a contiguous tensor of any rank is one long row.
 * Rows (or chunks of long rows) are shared out over OpenMP threads; the per-row callback keeps
 * the inner loop simple enough for the C compiler to vectorize.
 */
#include "tensor.h"

#include <string.h>

#define PAR_MIN 32768 /* elements below which threads cost more than they save */
#define CHUNK_MIN 4096

typedef struct {
    int nt, nd;
    int64_t size[EM_MAX_DIMS];            /* outer..inner, after coalescing */
    int64_t bs[EMT_ITER_MAX][EM_MAX_DIMS]; /* byte strides */
    char *base[EMT_ITER_MAX];
} plan;

static void make_plan(int nt, em_tensor_t *const *ts, plan *p) {
    const em_tensor_t *t0 = ts[0];
    p->nt = nt;
    p->nd = 0;
    for (int d = 0; d < t0->ndim; d++) {
        if (t0->shape[d] == 1) continue;
        int k = p->nd;
        p->size[k] = t0->shape[d];
        for (int t = 0; t < nt; t++) p->bs[t][k] = ts[t]->strides[d] * (int64_t)emt_esize(ts[t]->dtype);
        /* merge with the previous dim when every tensor steps through both as one */
        bool merge = k > 0;
        for (int t = 0; merge && t < nt; t++)
            if (p->bs[t][k - 1] != p->bs[t][k] * p->size[k]) merge = false;
        if (merge) {
            p->size[k - 1] *= p->size[k];
            for (int t = 0; t < nt; t++) p->bs[t][k - 1] = p->bs[t][k];
        } else {
            p->nd++;
        }
    }
    if (p->nd == 0) { /* a single element */
        p->nd = 1;
        p->size[0] = 1;
        for (int t = 0; t < nt; t++) p->bs[t][0] = (int64_t)emt_esize(ts[t]->dtype);
    }
    for (int t = 0; t < nt; t++) p->base[t] = emt_data(ts[t]);
}

void emt_pointwise(int nt, em_tensor_t *const *ts, emt_row_fn fn, void *ctx) {
    EM_ASSERT(nt >= 1 && nt <= EMT_ITER_MAX);
    int64_t numel = emt_numel(ts[0]);
    if (numel == 0) return;
    plan p;
    make_plan(nt, ts, &p);
    int inner = p.nd - 1;
    int64_t n = p.size[inner], rows = numel / n;
    int nth = numel >= PAR_MIN ? emb_num_threads() : 1;
    /* cut rows into chunks when there are too few rows to keep the threads busy */
    int64_t cpr = 1;
    if (nth > 1 && rows < 4 * nth) {
        cpr = (4 * nth + rows - 1) / rows;
        if (n / cpr < CHUNK_MIN) cpr = n / CHUNK_MIN > 0 ? n / CHUNK_MIN : 1;
    }
    int64_t chunk = (n + cpr - 1) / cpr, tasks = rows * cpr;
    int64_t inner_bs[EMT_ITER_MAX];
    for (int t = 0; t < nt; t++) inner_bs[t] = p.bs[t][inner];

#pragma omp parallel for schedule(static) num_threads(nth) if (nth > 1)
    for (int64_t task = 0; task < tasks; task++) {
        int64_t row = task / cpr, c = task % cpr;
        char *ptrs[EMT_ITER_MAX];
        for (int t = 0; t < nt; t++) ptrs[t] = p.base[t];
        int64_t idx = row;
        for (int d = inner - 1; d >= 0; d--) {
            int64_t i = idx % p.size[d];
            idx /= p.size[d];
            for (int t = 0; t < nt; t++) ptrs[t] += i * p.bs[t][d];
        }
        int64_t start = c * chunk, len = EM_MIN(chunk, n - start);
        if (len <= 0) continue;
        for (int t = 0; t < nt; t++) ptrs[t] += start * inner_bs[t];
        fn(len, ptrs, inner_bs, ctx);
    }
}

/* ---- copy with cast ------------------------------------------------------------------------ */
typedef struct {
    em_dtype dd, sd;
} copy_ctx;

#define ROW_LOOP(TD, TS, EXPR)                                                                  \
    do {                                                                                        \
        if (bs[0] == (int64_t)sizeof(TD) && bs[1] == (int64_t)sizeof(TS)) {                     \
            TD *restrict o = (TD *)p[0];                                                        \
            const TS *restrict s = (const TS *)p[1];                                            \
            for (int64_t i = 0; i < n; i++) { TS x = s[i]; o[i] = (EXPR); }                     \
        } else {                                                                                \
            for (int64_t i = 0; i < n; i++) {                                                   \
                TS x;                                                                           \
                memcpy(&x, p[1] + i * bs[1], sizeof x);                                         \
                TD y = (EXPR);                                                                  \
                memcpy(p[0] + i * bs[0], &y, sizeof y);                                         \
            }                                                                                   \
        }                                                                                       \
    } while (0)

static void copy_row(int64_t n, char **p, const int64_t *bs, void *vctx) {
    const copy_ctx *c = vctx;
    em_dtype dd = c->dd, sd = c->sd;
    if (dd == sd) {
        size_t es = emt_esize(dd);
        if (bs[0] == (int64_t)es && bs[1] == (int64_t)es) {
            memcpy(p[0], p[1], (size_t)n * es);
            return;
        }
        /* strided: a fixed-size copy per element, so each compiles to one load and one store */
        switch (es) {
        case 1: for (int64_t i = 0; i < n; i++) memcpy(p[0] + i * bs[0], p[1] + i * bs[1], 1); break;
        case 2: for (int64_t i = 0; i < n; i++) memcpy(p[0] + i * bs[0], p[1] + i * bs[1], 2); break;
        case 4: for (int64_t i = 0; i < n; i++) memcpy(p[0] + i * bs[0], p[1] + i * bs[1], 4); break;
        default: for (int64_t i = 0; i < n; i++) memcpy(p[0] + i * bs[0], p[1] + i * bs[1], 8); break;
        }
        return;
    }
    if (dd == EM_F32 && sd == EM_BF16) { ROW_LOOP(float, uint16_t, emt_bf16_to_f32(x)); return; }
    if (dd == EM_BF16 && sd == EM_F32) { ROW_LOOP(uint16_t, float, emt_f32_to_bf16(x)); return; }
    if (dd == EM_F32 && sd == EM_F16) { ROW_LOOP(float, uint16_t, emt_f16_to_f32(x)); return; }
    if (dd == EM_F16 && sd == EM_F32) { ROW_LOOP(uint16_t, float, emt_f32_to_f16(x)); return; }
    if (dd == EM_F64 && sd == EM_F32) { ROW_LOOP(double, float, (double)x); return; }
    if (dd == EM_F32 && sd == EM_F64) { ROW_LOOP(float, double, (float)x); return; }
    if (emt_is_int(dd) && !emt_is_float(sd)) { /* exact integer path */
        for (int64_t i = 0; i < n; i++) {
            int64_t v = emt_load_i64(p[1] + i * bs[1], sd);
            char *o = p[0] + i * bs[0];
            if (dd == EM_I64) memcpy(o, &v, 8);
            else if (dd == EM_I32) { int32_t w = (int32_t)(uint32_t)v; memcpy(o, &w, 4); }
            else *(uint8_t *)o = (uint8_t)v;
        }
        return;
    }
    if (dd == EM_I64 && emt_is_float(sd)) {
        for (int64_t i = 0; i < n; i++) {
            int64_t v = emt_load_i64(p[1] + i * bs[1], sd);
            memcpy(p[0] + i * bs[0], &v, 8);
        }
        return;
    }
    for (int64_t i = 0; i < n; i++) emt_store(p[0] + i * bs[0], dd, emt_load(p[1] + i * bs[1], sd));
}

void emt_copy(em_tensor_t *dst, em_tensor_t *src) {
    EM_ASSERT(dst->ndim == src->ndim);
    for (int d = 0; d < dst->ndim; d++) EM_ASSERT(dst->shape[d] == src->shape[d]);
    copy_ctx c = {dst->dtype, src->dtype};
    em_tensor_t *ts[2] = {dst, src};
    emt_pointwise(2, ts, copy_row, &c);
}
