/* linalg.c - matmul (batched, broadcasting, PyTorch's 1-d rules) and linear, on the GEMM
 * kernels of gemm.c and gemm_bf16.c, and the process-wide matmul precision.
 *
 * Every operand reaches the GEMM as a strided view, so transposed weights (linear's x @ w^T,
 * the backward's a^T @ g) cost no copy. Batches run one GEMM each: when each product is small
 * and there are enough of them (attention heads), threads split the batch and every GEMM runs
 * single-threaded; otherwise the GEMM itself is parallel, on em_get_num_threads() threads (passed as
 * the GEMM's `parallel`). Integer matmul uses a plain exact loop; f16 computes on f32 copies.
 *
 * Precision (em_set_matmul_precision, like torch.set_float32_matmul_precision): em_matmul and
 * em_linear on f32 tensors record the setting current when they are called in attrs j[0] (0: exact
 * f32, EM_BF16: bf16 products), so a graph node, CSE, the graph text and the compiled program all
 * carry it; the backward's matmuls are new calls and record the setting current during backward.
 * f32 with j[0] == EM_BF16 runs emk_gemm(f32 operands, EMK_MM_BF16): operands rounded to bf16,
 * products summed in f32, f32 result. bf16 tensors always run emk_gemm on the bf16 operands in
 * place (no f32 copies) with a bf16 result rounded once at the store; a bf16 linear's bias is
 * added after that rounding and rounded again, exactly as the compiled form (matmul + add) does,
 * so eager and compiled bf16 linears agree to the bit.
 */
#include "kernels.h"

#include "gemm.h"

#include <stdatomic.h>

/* ---- the matmul precision (process-wide) ------------------------------------------------------- */
static atomic_int mm_precision = EM_F32;

em_status em_set_matmul_precision(em_dtype d) {
    if (d != EM_F32 && d != EM_BF16)
        return em_seterr(EM_ERR_ARG, "em_set_matmul_precision: %s is not a matmul precision; use EM_F32 (exact, "
                         "the default) or EM_BF16 (bf16 products summed in f32)",
                         (unsigned)d < EM_NUM_DTYPES ? em_dtype_name(d) : "an unknown dtype");
    atomic_store(&mm_precision, (int)d);
    return EM_OK;
}

em_dtype em_get_matmul_precision(void) { return (em_dtype)atomic_load(&mm_precision); }

/* what a new matmul/linear on dtype dt records in attrs j[0]: EM_BF16 for an f32 product under
   bf16 precision, else 0 (so f32 graphs read as before) */
static int64_t prec_attr(em_dtype dt) {
    return dt == EM_F32 && em_get_matmul_precision() == EM_BF16 ? EM_BF16 : 0;
}

static em_status check_prec_attr(const emo_attrs *a, const emo_meta *in, int n_in) {
    if (a->j[0] != 0 && a->j[0] != EM_BF16)
        return emo_err(EM_ERR_ARG, NULL, in, n_in, "precision attribute j[0] is %lld; it must be 0 (f32) or %d (bf16)",
                       (long long)a->j[0], EM_BF16);
    return EM_OK;
}

/* ---- matmul ------------------------------------------------------------------------------------ */
EMO_INFER(emo_infer_matmul) {
    const emo_meta *x = &in[0], *y = &in[1];
    if (check_prec_attr(a, in, n_in) != EM_OK) return em_last_status();
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

/* one product of the batch through emk_gemm on operands of element type t (f32 or bf16, the same for
   A, B and C); exact f32 is emk_sgemm, which emk_gemm calls itself */
static void gemm_item(const mm_plan *p, emk_type t, emk_mm_mode mode, const char *A, const char *B, char *C,
                      int64_t b, int parallel) {
    size_t es = t == EMK_BF16 ? 2 : 4;
    int64_t oa, ob, oc;
    batch_offsets(p, b, &oa, &ob, &oc);
    A += (size_t)oa * es, B += (size_t)ob * es, C += (size_t)oc * es;
    emk_gemm(p->M, p->N, p->K, A, t, p->rsa, p->csa, B, t, p->rsb, p->csb, C, t, p->rsc, p->csc, 0, mode, parallel);
}

static void run_gemm(const mm_plan *p, emk_type t, emk_mm_mode mode, const char *A, const char *B, char *C) {
    double flops = 2.0 * (double)p->M * (double)p->N * (double)p->K;
    int nth = emb_num_threads();
    bool split_batch = p->count >= nth && flops < 4e6 && nth > 1;
    if (split_batch) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(nth)
        for (int64_t b = 0; b < p->count; b++) gemm_item(p, t, mode, A, B, C, b, 0);
        return;
    }
    for (int64_t b = 0; b < p->count; b++) gemm_item(p, t, mode, A, B, C, b, flops > 2e5 && nth > 1 ? nth : 0);
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
    EM_UNUSED(n_in);
    EM_UNUSED(n_out);
    em_tensor_t *x = in[0], *y = in[1], *o = out[0];
    em_tensor_t *xc = NULL, *yc = NULL, *oc = NULL;
    em_dtype cd = x->dtype;
    if (cd == EM_F16) { /* compute in f32 */
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
    if (x->dtype == EM_F32 || x->dtype == EM_BF16)
        run_gemm(&p, x->dtype == EM_BF16 ? EMK_BF16 : EMK_F32,
                 x->dtype == EM_BF16 || a->j[0] == EM_BF16 ? EMK_MM_BF16 : EMK_MM_EXACT, emt_data(x), emt_data(y),
                 emt_data(o));
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

/* a matmul node with precision attribute prec (linear's decomposition passes its own) */
static em_tensor_t *matmul_prec(em_tensor_t *a, em_tensor_t *b, int64_t prec) {
    emo_attrs at = emo_attrs0();
    at.j[0] = prec;
    em_tensor_t *in[2] = {a, b};
    return emo_call1(EMO_matmul, in, 2, &at);
}

em_tensor_t *em_matmul(em_tensor_t *a, em_tensor_t *b) {
    if (!emt_check(a, "em_matmul", "a") || !emt_check(b, "em_matmul", "b")) return NULL;
    return matmul_prec(a, b, prec_attr(a->dtype));
}

/* ---- linear: x (..., in), w (out, in), optional b (out) -> (..., out) --------------------------- */
EMO_INFER(emo_infer_linear) {
    bool has_b = a->j[3] != 0;
    if (n_in != (has_b ? 3 : 2)) return emo_err(EM_ERR_ARG, NULL, in, n_in, "takes x, w and an optional b");
    if (check_prec_attr(a, in, n_in) != EM_OK) return em_last_status();
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

/* y (R, out) = x (R, in) @ w^T, then + b per row: the bias rides in the same pass over y. f16 runs
   on f32 copies; f32 and bf16 read x and w in place (w transposed through its strides). */
EMO_KERNEL(emo_k_linear) {
    EM_UNUSED(n_out);
    EM_UNUSED(n_in);
    em_tensor_t *x = in[0], *w = in[1], *b = a->j[3] ? in[2] : NULL, *o = out[0];
    em_dtype cd = x->dtype == EM_BF16 ? EM_BF16 : emt_compute_float(x->dtype);
    em_tensor_t *xc = emt_as_contiguous(x, cd), *wc = w->dtype == cd ? (w->refcount++, w) : emt_contiguous_copy(w, cd);
    em_tensor_t *bc = b ? emt_as_contiguous(b, cd) : NULL;
    em_tensor_t *oc = o->dtype == cd ? (o->refcount++, o) : emt_new(cd, o->shape, o->ndim);
    em_status st = EM_OK;
    if (!xc || !wc || (b && !bc) || !oc) {
        st = em_last_status();
        goto done;
    }
    int64_t IN = w->shape[1], OUT = w->shape[0], R = IN ? emt_numel(xc) / IN : emt_numel(oc) / (OUT ? OUT : 1);
    int par = emb_num_threads() > 1 ? emb_num_threads() : 0;
    if (cd == EM_F32 || cd == EM_BF16) {
        emk_type t = cd == EM_BF16 ? EMK_BF16 : EMK_F32;
        emk_mm_mode mode = cd == EM_BF16 || a->j[0] == EM_BF16 ? EMK_MM_BF16 : EMK_MM_EXACT;
        emk_gemm(R, OUT, IN, emt_data(xc), t, IN, 1, emt_data(wc), t, wc->strides[1], wc->strides[0], emt_data(oc), t,
                 OUT, 1, 0, mode, par); /* exact f32: emk_sgemm */
        if (bc && t == EMK_F32) {
            float *y = (float *)(void *)emt_data(oc);
            const float *bias = (const float *)(void *)emt_data(bc);
#pragma omp parallel for num_threads(emb_num_threads()) if (R * OUT > 65536)
            for (int64_t r = 0; r < R; r++)
                for (int64_t j = 0; j < OUT; j++) y[r * OUT + j] += bias[j];
        } else if (bc) { /* bf16: the rounded product plus the bias, rounded again (as matmul + add) */
            uint16_t *y = (uint16_t *)(void *)emt_data(oc);
            const uint16_t *bias = (const uint16_t *)(void *)emt_data(bc);
#pragma omp parallel for num_threads(emb_num_threads()) if (R * OUT > 65536)
            for (int64_t r = 0; r < R; r++)
                for (int64_t j = 0; j < OUT; j++)
                    y[r * OUT + j] = emt_f32_to_bf16(emt_bf16_to_f32(y[r * OUT + j]) + emt_bf16_to_f32(bias[j]));
        }
    } else {
        double *y = (double *)(void *)emt_data(oc);
        emk_dgemm(R, OUT, IN, (const double *)(void *)emt_data(xc), IN, 1, (const double *)(void *)emt_data(wc),
                  wc->strides[1], wc->strides[0], y, OUT, 1, 0, par);
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
    em_tensor_t *y = matmul_prec(in[0], em_transpose(in[1], 0, 1), a->j[0]); /* the linear's own precision */
    if (a->j[3] && n_in == 3) y = em_add(y, in[2]);
    out[0] = y;
    return y ? EM_OK : em_last_status();
}

em_tensor_t *em_linear(em_tensor_t *x, em_tensor_t *w, em_tensor_t *b) {
    if (!emt_check(x, "em_linear", "x") || !emt_check(w, "em_linear", "w")) return NULL;
    if (b && !emt_check(b, "em_linear", "b")) return NULL;
    emo_attrs at = emo_attrs0();
    at.j[0] = prec_attr(x->dtype);
    at.j[3] = b != NULL;
    em_tensor_t *in[3] = {x, w, b};
    return emo_call1(EMO_linear, in, b ? 3 : 2, &at);
}
