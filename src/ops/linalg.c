/* linalg.c - matmul (batched, broadcasting, PyTorch's 1-d rules) and linear, on the GEMM
 * kernels of gemm.c.
 *
 * Every operand reaches emk_sgemm as a strided view, so transposed weights (linear's x @ w^T,
 * the backward's a^T @ g) cost no copy. Batches run one GEMM each: when each product is small
 * and there are enough of them (attention heads), threads split the batch and every GEMM runs
 * single-threaded; otherwise the GEMM itself is parallel, on em_get_num_threads() threads (passed as
 * emk_sgemm's `parallel`). f16/bf16 compute in f32; integer matmul uses a plain exact loop.
 */
#include "kernels.h"

#include "gemm.h"

/* ---- matmul ------------------------------------------------------------------------------------ */
EMO_INFER(emo_infer_matmul) {
    EM_UNUSED(a);
    EM_UNUSED(n_in);
    const emo_meta *x = &in[0], *y = &in[1];
    if (x->ndim == 0 || y->ndim == 0)
        return emo_err(EM_ERR_SHAPE, NULL, in, 2, "both arguments need at least 1 dim (use em_mul for scalars)");
    if (x->dtype != y->dtype)
        return emo_err(EM_ERR_DTYPE, NULL, in, 2, "both arguments must have the same dtype; em_cast one of them");
    if (x->dtype == EM_BOOL) return emo_err(EM_ERR_DTYPE, NULL, in, 2, "bool matrices are not supported");
    int64_t K1 = x->shape[x->ndim - 1], K2 = y->shape[y->ndim >= 2 ? y->ndim - 2 : 0];
    if (K1 != K2)
        return emo_err(EM_ERR_SHAPE, NULL, in, 2, "inner dims differ (%lld vs %lld): a's last dim must equal "
                       "b's second-to-last (transpose one of them?)", (long long)K1, (long long)K2);
    /* batch dims broadcast */
    int nbx = x->ndim > 2 ? x->ndim - 2 : 0, nby = y->ndim > 2 ? y->ndim - 2 : 0, nb;
    int64_t batch[EM_MAX_DIMS];
    if (!emt_broadcast_shape(x->shape, nbx, y->shape, nby, batch, &nb))
        return emo_err(EM_ERR_SHAPE, NULL, in, 2, "batch dims do not broadcast");
    int nd = 0;
    for (int d = 0; d < nb; d++) out[0].shape[nd++] = batch[d];
    if (x->ndim >= 2) out[0].shape[nd++] = x->shape[x->ndim - 2];
    if (y->ndim >= 2) out[0].shape[nd++] = y->shape[y->ndim - 1];
    out[0].ndim = nd;
    out[0].dtype = x->dtype;
    *n_out = 1;
    return EM_OK;
}

/* a (..., M, K) view of x: 1-d x becomes (1, K) */
static void as_matrix_a(const em_tensor_t *x, int64_t *shape, int64_t *strides, int *nd) {
    *nd = x->ndim == 1 ? 2 : x->ndim;
    if (x->ndim == 1) {
        shape[0] = 1; strides[0] = 0;
        shape[1] = x->shape[0]; strides[1] = x->strides[0];
    } else {
        memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
        memcpy(strides, x->strides, sizeof(int64_t) * (size_t)x->ndim);
    }
}

/* a (..., K, N) view of y: 1-d y becomes (K, 1) */
static void as_matrix_b(const em_tensor_t *y, int64_t *shape, int64_t *strides, int *nd) {
    *nd = y->ndim == 1 ? 2 : y->ndim;
    if (y->ndim == 1) {
        shape[0] = y->shape[0]; strides[0] = y->strides[0];
        shape[1] = 1; strides[1] = 0;
    } else {
        memcpy(shape, y->shape, sizeof(int64_t) * (size_t)y->ndim);
        memcpy(strides, y->strides, sizeof(int64_t) * (size_t)y->ndim);
    }
}

typedef struct {
    int nb;
    int64_t batch[EM_MAX_DIMS], count;
    int64_t sa[EM_MAX_DIMS], sb[EM_MAX_DIMS], sc[EM_MAX_DIMS]; /* batch strides (0 = broadcast) */
    int64_t M, N, K, rsa, csa, rsb, csb, rsc, csc;
} mm_plan;

static void batch_offsets(const mm_plan *p, int64_t b, int64_t *oa, int64_t *ob, int64_t *oc) {
    *oa = *ob = *oc = 0;
    for (int d = p->nb - 1; d >= 0; d--) {
        int64_t i = b % p->batch[d];
        b /= p->batch[d];
        *oa += i * p->sa[d];
        *ob += i * p->sb[d];
        *oc += i * p->sc[d];
    }
}

/* x (..., M, K) and y (..., K, N) as views; c (batch..., M, N) contiguous f32/f64/int output */
static void plan_mm(const int64_t *ash, const int64_t *ast, int and, const int64_t *bsh, const int64_t *bst,
                    int bnd, mm_plan *p) {
    int nba = and - 2, nbb = bnd - 2;
    emt_broadcast_shape(ash, nba, bsh, nbb, p->batch, &p->nb);
    p->count = emt_numel_shape(p->batch, p->nb);
    p->M = ash[and - 2];
    p->K = ash[and - 1];
    p->N = bsh[bnd - 1];
    p->rsa = ast[and - 2]; p->csa = ast[and - 1];
    p->rsb = bst[bnd - 2]; p->csb = bst[bnd - 1];
    p->rsc = p->N; p->csc = 1;
    int64_t s = p->M * p->N;
    for (int d = p->nb - 1; d >= 0; d--) {
        int ka = d - (p->nb - nba), kb = d - (p->nb - nbb);
        p->sa[d] = ka >= 0 && ash[ka] != 1 ? ast[ka] : 0;
        p->sb[d] = kb >= 0 && bsh[kb] != 1 ? bst[kb] : 0;
        p->sc[d] = s;
        s *= p->batch[d];
    }
}

static void run_f32(const mm_plan *p, const float *A, const float *B, float *C) {
    double flops = 2.0 * (double)p->M * (double)p->N * (double)p->K;
    int nth = emb_num_threads();
    bool split_batch = p->count >= nth && flops < 4e6 && nth > 1;
    if (split_batch) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(nth)
        for (int64_t b = 0; b < p->count; b++) {
            int64_t oa, ob, oc;
            batch_offsets(p, b, &oa, &ob, &oc);
            emk_sgemm(p->M, p->N, p->K, A + oa, p->rsa, p->csa, B + ob, p->rsb, p->csb, C + oc, p->rsc, p->csc, 0, 0);
        }
        return;
    }
    for (int64_t b = 0; b < p->count; b++) {
        int64_t oa, ob, oc;
        batch_offsets(p, b, &oa, &ob, &oc);
        emk_sgemm(p->M, p->N, p->K, A + oa, p->rsa, p->csa, B + ob, p->rsb, p->csb, C + oc, p->rsc, p->csc, 0,
                  flops > 2e5 && nth > 1 ? nth : 0);
    }
}

static void run_f64(const mm_plan *p, const double *A, const double *B, double *C) {
    double flops = 2.0 * (double)p->M * (double)p->N * (double)p->K;
#pragma omp parallel for schedule(dynamic, 1) num_threads(emb_num_threads()) if (p->count > 1 && flops < 4e6)
    for (int64_t b = 0; b < p->count; b++) {
        int64_t oa, ob, oc;
        batch_offsets(p, b, &oa, &ob, &oc);
        emk_dgemm(p->M, p->N, p->K, A + oa, p->rsa, p->csa, B + ob, p->rsb, p->csb, C + oc, p->rsc, p->csc, 0,
                  (p->count == 1 || flops >= 4e6) && emb_num_threads() > 1 ? emb_num_threads() : 0);
    }
}

static void run_int(const mm_plan *p, const em_tensor_t *x, const em_tensor_t *y, em_tensor_t *out) {
    const char *A = emt_data(x), *B = emt_data(y);
    char *C = emt_data(out);
    size_t es = emt_esize(x->dtype);
    for (int64_t b = 0; b < p->count; b++) {
        int64_t oa, ob, oc;
        batch_offsets(p, b, &oa, &ob, &oc);
        for (int64_t i = 0; i < p->M; i++)
            for (int64_t j = 0; j < p->N; j++) {
                int64_t acc = 0;
                for (int64_t k = 0; k < p->K; k++)
                    acc += emt_load_i64(A + (size_t)(oa + i * p->rsa + k * p->csa) * es, x->dtype) *
                           emt_load_i64(B + (size_t)(ob + k * p->rsb + j * p->csb) * es, y->dtype);
                emt_store(C + (size_t)(oc + i * p->rsc + j * p->csc) * es, out->dtype, (double)acc);
            }
    }
}

EMO_KERNEL(emo_k_matmul) {
    EM_UNUSED(a);
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    em_tensor_t *x = in[0], *y = in[1], *o = out[0];
    em_tensor_t *xc = NULL, *yc = NULL, *oc = NULL;
    em_dtype cd = x->dtype;
    if (cd == EM_F16 || cd == EM_BF16) { /* compute in f32 */
        xc = x = emt_contiguous_copy(x, EM_F32);
        yc = y = emt_contiguous_copy(y, EM_F32);
        oc = o = emt_new(EM_F32, o->shape, o->ndim);
        if (!xc || !yc || !oc) {
            em_release(xc); em_release(yc); em_release(oc);
            return em_last_status();
        }
    }
    int64_t ash[EM_MAX_DIMS], ast[EM_MAX_DIMS], bsh[EM_MAX_DIMS], bst[EM_MAX_DIMS];
    int and, bnd;
    as_matrix_a(x, ash, ast, &and);
    as_matrix_b(y, bsh, bst, &bnd);
    mm_plan p;
    plan_mm(ash, ast, and, bsh, bst, bnd, &p);
    if (x->dtype == EM_F32) run_f32(&p, (const float *)(void *)emt_data(x), (const float *)(void *)emt_data(y), (float *)(void *)emt_data(o));
    else if (x->dtype == EM_F64) run_f64(&p, (const double *)(void *)emt_data(x), (const double *)(void *)emt_data(y), (double *)(void *)emt_data(o));
    else run_int(&p, x, y, o);
    if (oc) emt_copy(out[0], oc);
    em_release(xc);
    em_release(yc);
    em_release(oc);
    return EM_OK;
}

/* promote 1-d operands to matrices, run the two products, and let the engine sum broadcast batch
   dims (and the unit dim of a promoted 1-d x) back to each input's shape */
EMO_BACKWARD(emo_bw_matmul) {
    em_tensor_t *x = c->in[0], *y = c->in[1], *g = gout[0];
    if (x->ndim == 1 && y->ndim == 1) { /* dot product */
        if (c->needs_grad[0] && !(gin[0] = em_mul(g, y))) return em_last_status();
        if (c->needs_grad[1] && !(gin[1] = em_mul(g, x))) return em_last_status();
        return EM_OK;
    }
    em_tensor_t *x2 = x->ndim == 1 ? em_unsqueeze(x, 0) : x;
    em_tensor_t *y2 = y->ndim == 1 ? em_unsqueeze(y, 1) : y;
    if (x->ndim == 1) g = em_unsqueeze(g, -2);
    if (y->ndim == 1) g = em_unsqueeze(g, -1);
    if (c->needs_grad[0] && !(gin[0] = em_matmul(g, em_transpose(y2, -1, -2)))) return em_last_status();
    if (c->needs_grad[1]) {
        gin[1] = em_matmul(em_transpose(x2, -1, -2), g);
        if (gin[1] && y->ndim == 1) gin[1] = em_squeeze(gin[1], -1);
        if (!gin[1]) return em_last_status();
    }
    return EM_OK;
}

em_tensor_t *em_matmul(em_tensor_t *a, em_tensor_t *b) {
    if (!emt_check(a, "em_matmul", "a") || !emt_check(b, "em_matmul", "b")) return NULL;
    emo_attrs at = emo_attrs0();
    em_tensor_t *in[2] = {a, b};
    return emo_call1(EMO_matmul, in, 2, &at);
}

/* ---- linear: x (..., in), w (out, in), optional b (out) -> (..., out) --------------------------- */
EMO_INFER(emo_infer_linear) {
    bool has_b = a->j[3] != 0;
    if (n_in != (has_b ? 3 : 2)) return emo_err(EM_ERR_ARG, NULL, in, n_in, "takes x, w and an optional b");
    const emo_meta *x = &in[0], *w = &in[1];
    if (x->ndim < 1 || w->ndim != 2)
        return emo_err(EM_ERR_SHAPE, NULL, in, n_in, "x needs at least 1 dim and w must be (out_features, in_features)");
    if (x->shape[x->ndim - 1] != w->shape[1])
        return emo_err(EM_ERR_SHAPE, NULL, in, n_in, "x's last dim (%lld) must equal w's in_features (dim 1, %lld)",
                       (long long)x->shape[x->ndim - 1], (long long)w->shape[1]);
    if (!emt_is_float(x->dtype) || x->dtype != w->dtype || (has_b && in[2].dtype != x->dtype))
        return emo_err(EM_ERR_DTYPE, NULL, in, n_in, "x, w and b must share one floating dtype");
    if (has_b && (in[2].ndim != 1 || in[2].shape[0] != w->shape[0]))
        return emo_err(EM_ERR_SHAPE, NULL, in, n_in, "b must be 1-d of size out_features (%lld)", (long long)w->shape[0]);
    out[0] = *x;
    out[0].shape[x->ndim - 1] = w->shape[0];
    *n_out = 1;
    return EM_OK;
}

/* y (R, out) = x (R, in) @ w^T, then + b per row: the bias rides in the same pass over y */
EMO_KERNEL(emo_k_linear) {
    EM_UNUSED(n_out);
    em_tensor_t *x = in[0], *w = in[1], *b = a->j[3] ? in[2] : NULL, *o = out[0];
    em_dtype cd = emt_compute_float(x->dtype);
    em_tensor_t *xc = emt_as_contiguous(x, cd), *wc = w->dtype == cd ? (w->refcount++, w) : emt_contiguous_copy(w, cd);
    em_tensor_t *bc = b ? emt_as_contiguous(b, cd) : NULL;
    em_tensor_t *oc = o->dtype == cd ? (o->refcount++, o) : emt_new(cd, o->shape, o->ndim);
    em_status st = EM_OK;
    if (!xc || !wc || (b && !bc) || !oc) {
        st = em_last_status();
        goto done;
    }
    (void)n_in;
    int64_t IN = w->shape[1], OUT = w->shape[0], R = IN ? emt_numel(xc) / IN : emt_numel(oc) / (OUT ? OUT : 1);
    if (cd == EM_F32) {
        float *y = (float *)(void *)emt_data(oc);
        emk_sgemm(R, OUT, IN, (const float *)(void *)emt_data(xc), IN, 1, (const float *)(void *)emt_data(wc),
                  wc->strides[1], wc->strides[0], y, OUT, 1, 0, emb_num_threads() > 1 ? emb_num_threads() : 0);
        if (bc) {
            const float *bias = (const float *)(void *)emt_data(bc);
#pragma omp parallel for num_threads(emb_num_threads()) if (R * OUT > 65536)
            for (int64_t r = 0; r < R; r++)
                for (int64_t j = 0; j < OUT; j++) y[r * OUT + j] += bias[j];
        }
    } else {
        double *y = (double *)(void *)emt_data(oc);
        emk_dgemm(R, OUT, IN, (const double *)(void *)emt_data(xc), IN, 1, (const double *)(void *)emt_data(wc),
                  wc->strides[1], wc->strides[0], y, OUT, 1, 0, emb_num_threads() > 1 ? emb_num_threads() : 0);
        if (bc) {
            const double *bias = (const double *)(void *)emt_data(bc);
            for (int64_t r = 0; r < R; r++)
                for (int64_t j = 0; j < OUT; j++) y[r * OUT + j] += bias[j];
        }
    }
    if (oc != o) emt_copy(o, oc);
done:
    em_release(xc);
    em_release(wc);
    em_release(bc);
    em_release(oc);
    return st;
}

EMO_BACKWARD(emo_bw_linear) {
    em_tensor_t *x = c->in[0], *w = c->in[1], *g = gout[0];
    if (c->needs_grad[0] && !(gin[0] = em_matmul(g, w))) return em_last_status();
    if (c->needs_grad[1]) {
        /* dw (out, in) = g^T (out, R) @ x (R, in) over all leading dims flattened */
        em_tensor_t *g2 = em_reshape(g, (int64_t[]){-1, g->shape[g->ndim - 1]}, 2);
        em_tensor_t *x2 = em_reshape(x, (int64_t[]){-1, x->shape[x->ndim - 1]}, 2);
        if (!(gin[1] = em_matmul(em_transpose(g2, 0, 1), x2))) return em_last_status();
    }
    if (c->n_in == 3 && c->needs_grad[2]) gin[2] = g; /* summed over leading dims by the engine */
    return EM_OK;
}

EMO_DECOMP(emo_dc_linear) {
    EM_UNUSED(n_out);
    em_tensor_t *y = em_matmul(in[0], em_transpose(in[1], 0, 1));
    if (a->j[3] && n_in == 3) y = em_add(y, in[2]);
    out[0] = y;
    return y ? EM_OK : em_last_status();
}

em_tensor_t *em_linear(em_tensor_t *x, em_tensor_t *w, em_tensor_t *b) {
    if (!emt_check(x, "em_linear", "x") || !emt_check(w, "em_linear", "w")) return NULL;
    if (b && !emt_check(b, "em_linear", "b")) return NULL;
    emo_attrs at = emo_attrs0();
    at.j[3] = b != NULL;
    em_tensor_t *in[3] = {x, w, b};
    return emo_call1(EMO_linear, in, b ? 3 : 2, &at);
}
