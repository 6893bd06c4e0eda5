/* infer.c - shape and dtype inference shared by many ops, and the error helper.
 *
 * Infer functions see only metadata (emo_meta), never data, so the compiler can run them on
 * graph nodes. They are each op's argument checker: every user mistake about shapes, dims or
 * dtypes is reported here with the op's name and the input shapes.
 */
#include "kernels.h"

#include <stdio.h>

em_status emo_err(em_status s, const char *op, const emo_meta *in, int n_in, const char *fmt, ...) {
    char msg[700], shapes[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int n = 0;
    shapes[0] = 0;
    for (int i = 0; i < n_in && i < 6 && n < (int)sizeof shapes - 60; i++) {
        char b[EMB_SHAPE_BUF];
        n += snprintf(shapes + n, sizeof shapes - (size_t)n, "%s%s %s", i ? ", " : "",
                      emb_shape_str(b, in[i].shape, in[i].ndim), em_dtype_name(in[i].dtype));
    }
    return em_seterr(s, "em_%s: %s (inputs: %s)", op ? op : emo_current_op(), msg, shapes);
}

em_status emo_infer_unary(const emo_attrs *a, const emo_meta *in, int n_in, emo_meta *out, int *n_out) {
    EM_UNUSED(a);
    EM_UNUSED(n_in);
    out[0] = in[0];
    *n_out = 1;
    return EM_OK;
}

/* float functions of integer or bool tensors give f32, like torch.exp(int_tensor) */
em_status emo_infer_unary_float(const emo_attrs *a, const emo_meta *in, int n_in, emo_meta *out,
                                int *n_out) {
    EM_UNUSED(a);
    EM_UNUSED(n_in);
    out[0] = in[0];
    if (!emt_is_float(in[0].dtype)) out[0].dtype = EM_F32;
    *n_out = 1;
    return EM_OK;
}

em_status emo_infer_binary(const emo_attrs *a, const emo_meta *in, int n_in, emo_meta *out, int *n_out) {
    EM_UNUSED(a);
    EM_UNUSED(n_in);
    int nd;
    if (!emt_broadcast_shape(in[0].shape, in[0].ndim, in[1].shape, in[1].ndim, out[0].shape, &nd))
        return emo_err(EM_ERR_SHAPE, NULL, in, 2,
                       "shapes do not broadcast: sizes must match or be 1, aligned from the last dim");
    out[0].ndim = nd;
    em_dtype dts[2] = {in[0].dtype, in[1].dtype};
    int nds[2] = {in[0].ndim, in[1].ndim};
    out[0].dtype = emt_result_type(dts, nds, 2);
    *n_out = 1;
    return EM_OK;
}

bool emo_reduce_mask(const char *op, const int64_t *dims, int ndims, int rank, bool mask[EM_MAX_DIMS]) {
    for (int d = 0; d < EM_MAX_DIMS; d++) mask[d] = ndims == 0;
    for (int k = 0; k < ndims; k++) {
        int64_t d = dims[k];
        if (d < 0) d += rank;
        if (d < 0 || d >= (rank > 0 ? rank : 1)) {
            em_seterr(EM_ERR_ARG, "em_%s: dim %lld is out of range for a tensor with %d dims", op ? op : emo_current_op(),
                      (long long)dims[k], rank);
            return false;
        }
        if (rank > 0 && mask[d]) {
            em_seterr(EM_ERR_ARG, "em_%s: dim %lld appears twice in the reduction dims", op ? op : emo_current_op(), (long long)d);
            return false;
        }
        if (rank > 0) mask[d] = true;
    }
    return true;
}

em_tensor_t *emo_sum_to(em_tensor_t *g, const emo_meta *m) {
    if (!g) return NULL;
    int lead = g->ndim - m->ndim;
    EM_ASSERT(lead >= 0);
    int dims[EM_MAX_DIMS], nd = 0;
    for (int d = 0; d < g->ndim; d++) {
        if (d < lead) dims[nd++] = d;
        else if (m->shape[d - lead] == 1 && g->shape[d] != 1) dims[nd++] = d;
        else EM_ASSERT(m->shape[d - lead] == g->shape[d]);
    }
    em_tensor_t *r = g;
    if (nd > 0) {
        r = em_sum(g, dims, nd, true);
        if (r && lead > 0) r = em_reshape(r, m->shape, m->ndim);
    }
    if (r && r->dtype != m->dtype) r = em_cast(r, m->dtype);
    return r;
}
