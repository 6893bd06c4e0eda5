#include "kernels.h"
#pragma GCC diagnostic ignored "-Wunused-parameter"
EMO_INFER(emo_infer_reduce) { return em_seterr(EM_ERR_STATE, "emo_infer_reduce is not implemented yet"); }
EMO_INFER(emo_infer_reduce_float) { return em_seterr(EM_ERR_STATE, "emo_infer_reduce_float is not implemented yet"); }
EMO_INFER(emo_infer_reduce_dim) { return em_seterr(EM_ERR_STATE, "emo_infer_reduce_dim is not implemented yet"); }
EMO_INFER(emo_infer_argreduce) { return em_seterr(EM_ERR_STATE, "emo_infer_argreduce is not implemented yet"); }
EMO_INFER(emo_infer_cumsum) { return em_seterr(EM_ERR_STATE, "emo_infer_cumsum is not implemented yet"); }
EMO_INFER(emo_infer_softmax) { return em_seterr(EM_ERR_STATE, "emo_infer_softmax is not implemented yet"); }
EMO_INFER(emo_infer_layer_norm) { return em_seterr(EM_ERR_STATE, "emo_infer_layer_norm is not implemented yet"); }
EMO_INFER(emo_infer_rms_norm) { return em_seterr(EM_ERR_STATE, "emo_infer_rms_norm is not implemented yet"); }
EMO_INFER(emo_infer_cross_entropy) { return em_seterr(EM_ERR_STATE, "emo_infer_cross_entropy is not implemented yet"); }
EMO_INFER(emo_infer_embedding) { return em_seterr(EM_ERR_STATE, "emo_infer_embedding is not implemented yet"); }
EMO_INFER(emo_infer_cat) { return em_seterr(EM_ERR_STATE, "emo_infer_cat is not implemented yet"); }
EMO_INFER(emo_infer_stack) { return em_seterr(EM_ERR_STATE, "emo_infer_stack is not implemented yet"); }
EMO_INFER(emo_infer_split) { return em_seterr(EM_ERR_STATE, "emo_infer_split is not implemented yet"); }
EMO_INFER(emo_infer_gather) { return em_seterr(EM_ERR_STATE, "emo_infer_gather is not implemented yet"); }
EMO_INFER(emo_infer_index_select) { return em_seterr(EM_ERR_STATE, "emo_infer_index_select is not implemented yet"); }
EMO_INFER(emo_infer_scatter_add) { return em_seterr(EM_ERR_STATE, "emo_infer_scatter_add is not implemented yet"); }
EMO_INFER(emo_infer_pad) { return em_seterr(EM_ERR_STATE, "emo_infer_pad is not implemented yet"); }
EMO_INFER(emo_infer_repeat) { return em_seterr(EM_ERR_STATE, "emo_infer_repeat is not implemented yet"); }
EMO_INFER(emo_infer_flip) { return em_seterr(EM_ERR_STATE, "emo_infer_flip is not implemented yet"); }
EMO_KERNEL(emo_k_sum) { return em_seterr(EM_ERR_STATE, "emo_k_sum is not implemented yet"); }
EMO_KERNEL(emo_k_mean) { return em_seterr(EM_ERR_STATE, "emo_k_mean is not implemented yet"); }
EMO_KERNEL(emo_k_prod) { return em_seterr(EM_ERR_STATE, "emo_k_prod is not implemented yet"); }
EMO_KERNEL(emo_k_amax) { return em_seterr(EM_ERR_STATE, "emo_k_amax is not implemented yet"); }
EMO_KERNEL(emo_k_amin) { return em_seterr(EM_ERR_STATE, "emo_k_amin is not implemented yet"); }
EMO_KERNEL(emo_k_logsumexp) { return em_seterr(EM_ERR_STATE, "emo_k_logsumexp is not implemented yet"); }
EMO_KERNEL(emo_k_var) { return em_seterr(EM_ERR_STATE, "emo_k_var is not implemented yet"); }
EMO_KERNEL(emo_k_std) { return em_seterr(EM_ERR_STATE, "emo_k_std is not implemented yet"); }
EMO_KERNEL(emo_k_max_dim) { return em_seterr(EM_ERR_STATE, "emo_k_max_dim is not implemented yet"); }
EMO_KERNEL(emo_k_min_dim) { return em_seterr(EM_ERR_STATE, "emo_k_min_dim is not implemented yet"); }
EMO_KERNEL(emo_k_argmax) { return em_seterr(EM_ERR_STATE, "emo_k_argmax is not implemented yet"); }
EMO_KERNEL(emo_k_argmin) { return em_seterr(EM_ERR_STATE, "emo_k_argmin is not implemented yet"); }
EMO_KERNEL(emo_k_cumsum) { return em_seterr(EM_ERR_STATE, "emo_k_cumsum is not implemented yet"); }
EMO_KERNEL(emo_k_softmax) { return em_seterr(EM_ERR_STATE, "emo_k_softmax is not implemented yet"); }
EMO_KERNEL(emo_k_log_softmax) { return em_seterr(EM_ERR_STATE, "emo_k_log_softmax is not implemented yet"); }
EMO_KERNEL(emo_k_layer_norm) { return em_seterr(EM_ERR_STATE, "emo_k_layer_norm is not implemented yet"); }
EMO_KERNEL(emo_k_rms_norm) { return em_seterr(EM_ERR_STATE, "emo_k_rms_norm is not implemented yet"); }
EMO_KERNEL(emo_k_cross_entropy) { return em_seterr(EM_ERR_STATE, "emo_k_cross_entropy is not implemented yet"); }
EMO_KERNEL(emo_k_dropout) { return em_seterr(EM_ERR_STATE, "emo_k_dropout is not implemented yet"); }
EMO_KERNEL(emo_k_embedding) { return em_seterr(EM_ERR_STATE, "emo_k_embedding is not implemented yet"); }
EMO_KERNEL(emo_k_cat) { return em_seterr(EM_ERR_STATE, "emo_k_cat is not implemented yet"); }
EMO_KERNEL(emo_k_stack) { return em_seterr(EM_ERR_STATE, "emo_k_stack is not implemented yet"); }
EMO_KERNEL(emo_k_split) { return em_seterr(EM_ERR_STATE, "emo_k_split is not implemented yet"); }
EMO_KERNEL(emo_k_gather) { return em_seterr(EM_ERR_STATE, "emo_k_gather is not implemented yet"); }
EMO_KERNEL(emo_k_index_select) { return em_seterr(EM_ERR_STATE, "emo_k_index_select is not implemented yet"); }
EMO_KERNEL(emo_k_scatter_add) { return em_seterr(EM_ERR_STATE, "emo_k_scatter_add is not implemented yet"); }
EMO_KERNEL(emo_k_triu) { return em_seterr(EM_ERR_STATE, "emo_k_triu is not implemented yet"); }
EMO_KERNEL(emo_k_tril) { return em_seterr(EM_ERR_STATE, "emo_k_tril is not implemented yet"); }
EMO_KERNEL(emo_k_pad) { return em_seterr(EM_ERR_STATE, "emo_k_pad is not implemented yet"); }
EMO_KERNEL(emo_k_repeat) { return em_seterr(EM_ERR_STATE, "emo_k_repeat is not implemented yet"); }
EMO_KERNEL(emo_k_flip) { return em_seterr(EM_ERR_STATE, "emo_k_flip is not implemented yet"); }
EMO_BACKWARD(emo_bw_sum) { return em_seterr(EM_ERR_STATE, "emo_bw_sum is not implemented yet"); }
EMO_BACKWARD(emo_bw_mean) { return em_seterr(EM_ERR_STATE, "emo_bw_mean is not implemented yet"); }
EMO_BACKWARD(emo_bw_prod) { return em_seterr(EM_ERR_STATE, "emo_bw_prod is not implemented yet"); }
EMO_BACKWARD(emo_bw_amax) { return em_seterr(EM_ERR_STATE, "emo_bw_amax is not implemented yet"); }
EMO_BACKWARD(emo_bw_amin) { return em_seterr(EM_ERR_STATE, "emo_bw_amin is not implemented yet"); }
EMO_BACKWARD(emo_bw_logsumexp) { return em_seterr(EM_ERR_STATE, "emo_bw_logsumexp is not implemented yet"); }
EMO_BACKWARD(emo_bw_var) { return em_seterr(EM_ERR_STATE, "emo_bw_var is not implemented yet"); }
EMO_BACKWARD(emo_bw_std) { return em_seterr(EM_ERR_STATE, "emo_bw_std is not implemented yet"); }
EMO_BACKWARD(emo_bw_max_dim) { return em_seterr(EM_ERR_STATE, "emo_bw_max_dim is not implemented yet"); }
EMO_BACKWARD(emo_bw_min_dim) { return em_seterr(EM_ERR_STATE, "emo_bw_min_dim is not implemented yet"); }
EMO_BACKWARD(emo_bw_cumsum) { return em_seterr(EM_ERR_STATE, "emo_bw_cumsum is not implemented yet"); }
EMO_BACKWARD(emo_bw_softmax) { return em_seterr(EM_ERR_STATE, "emo_bw_softmax is not implemented yet"); }
EMO_BACKWARD(emo_bw_log_softmax) { return em_seterr(EM_ERR_STATE, "emo_bw_log_softmax is not implemented yet"); }
EMO_BACKWARD(emo_bw_layer_norm) { return em_seterr(EM_ERR_STATE, "emo_bw_layer_norm is not implemented yet"); }
EMO_BACKWARD(emo_bw_rms_norm) { return em_seterr(EM_ERR_STATE, "emo_bw_rms_norm is not implemented yet"); }
EMO_BACKWARD(emo_bw_cross_entropy) { return em_seterr(EM_ERR_STATE, "emo_bw_cross_entropy is not implemented yet"); }
EMO_BACKWARD(emo_bw_dropout) { return em_seterr(EM_ERR_STATE, "emo_bw_dropout is not implemented yet"); }
EMO_BACKWARD(emo_bw_embedding) { return em_seterr(EM_ERR_STATE, "emo_bw_embedding is not implemented yet"); }
EMO_BACKWARD(emo_bw_cat) { return em_seterr(EM_ERR_STATE, "emo_bw_cat is not implemented yet"); }
EMO_BACKWARD(emo_bw_stack) { return em_seterr(EM_ERR_STATE, "emo_bw_stack is not implemented yet"); }
EMO_BACKWARD(emo_bw_split) { return em_seterr(EM_ERR_STATE, "emo_bw_split is not implemented yet"); }
EMO_BACKWARD(emo_bw_gather) { return em_seterr(EM_ERR_STATE, "emo_bw_gather is not implemented yet"); }
EMO_BACKWARD(emo_bw_index_select) { return em_seterr(EM_ERR_STATE, "emo_bw_index_select is not implemented yet"); }
EMO_BACKWARD(emo_bw_scatter_add) { return em_seterr(EM_ERR_STATE, "emo_bw_scatter_add is not implemented yet"); }
EMO_BACKWARD(emo_bw_triu) { return em_seterr(EM_ERR_STATE, "emo_bw_triu is not implemented yet"); }
EMO_BACKWARD(emo_bw_tril) { return em_seterr(EM_ERR_STATE, "emo_bw_tril is not implemented yet"); }
EMO_BACKWARD(emo_bw_pad) { return em_seterr(EM_ERR_STATE, "emo_bw_pad is not implemented yet"); }
EMO_BACKWARD(emo_bw_repeat) { return em_seterr(EM_ERR_STATE, "emo_bw_repeat is not implemented yet"); }
EMO_BACKWARD(emo_bw_flip) { return em_seterr(EM_ERR_STATE, "emo_bw_flip is not implemented yet"); }
EMO_DECOMP(emo_dc_mean) { return em_seterr(EM_ERR_STATE, "emo_dc_mean is not implemented yet"); }
EMO_DECOMP(emo_dc_logsumexp) { return em_seterr(EM_ERR_STATE, "emo_dc_logsumexp is not implemented yet"); }
EMO_DECOMP(emo_dc_var) { return em_seterr(EM_ERR_STATE, "emo_dc_var is not implemented yet"); }
EMO_DECOMP(emo_dc_std) { return em_seterr(EM_ERR_STATE, "emo_dc_std is not implemented yet"); }
EMO_DECOMP(emo_dc_softmax) { return em_seterr(EM_ERR_STATE, "emo_dc_softmax is not implemented yet"); }
EMO_DECOMP(emo_dc_log_softmax) { return em_seterr(EM_ERR_STATE, "emo_dc_log_softmax is not implemented yet"); }
EMO_DECOMP(emo_dc_layer_norm) { return em_seterr(EM_ERR_STATE, "emo_dc_layer_norm is not implemented yet"); }
EMO_DECOMP(emo_dc_rms_norm) { return em_seterr(EM_ERR_STATE, "emo_dc_rms_norm is not implemented yet"); }
EMO_DECOMP(emo_dc_cross_entropy) { return em_seterr(EM_ERR_STATE, "emo_dc_cross_entropy is not implemented yet"); }
EMO_DECOMP(emo_dc_dropout) { return em_seterr(EM_ERR_STATE, "emo_dc_dropout is not implemented yet"); }
EMO_DECOMP(emo_dc_embedding) { return em_seterr(EM_ERR_STATE, "emo_dc_embedding is not implemented yet"); }
EMO_DECOMP(emo_dc_stack) { return em_seterr(EM_ERR_STATE, "emo_dc_stack is not implemented yet"); }
EMO_DECOMP(emo_dc_split) { return em_seterr(EM_ERR_STATE, "emo_dc_split is not implemented yet"); }
EMO_DECOMP(emo_dc_triu) { return em_seterr(EM_ERR_STATE, "emo_dc_triu is not implemented yet"); }
EMO_DECOMP(emo_dc_tril) { return em_seterr(EM_ERR_STATE, "emo_dc_tril is not implemented yet"); }
EMO_DECOMP(emo_dc_repeat) { return em_seterr(EM_ERR_STATE, "emo_dc_repeat is not implemented yet"); }
em_tensor_t * em_sum(em_tensor_t *x, const int *dims, int ndims, bool keepdim) { em_seterr(EM_ERR_STATE, "em_sum is not implemented yet"); return NULL; }
em_tensor_t * em_mean(em_tensor_t *x, const int *dims, int ndims, bool keepdim) { em_seterr(EM_ERR_STATE, "em_mean is not implemented yet"); return NULL; }
em_tensor_t * em_prod(em_tensor_t *x, const int *dims, int ndims, bool keepdim) { em_seterr(EM_ERR_STATE, "em_prod is not implemented yet"); return NULL; }
em_tensor_t * em_amax(em_tensor_t *x, const int *dims, int ndims, bool keepdim) { em_seterr(EM_ERR_STATE, "em_amax is not implemented yet"); return NULL; }
em_tensor_t * em_amin(em_tensor_t *x, const int *dims, int ndims, bool keepdim) { em_seterr(EM_ERR_STATE, "em_amin is not implemented yet"); return NULL; }
em_tensor_t * em_logsumexp(em_tensor_t *x, const int *dims, int ndims, bool keepdim) { em_seterr(EM_ERR_STATE, "em_logsumexp is not implemented yet"); return NULL; }
em_tensor_t * em_var(em_tensor_t *x, const int *dims, int ndims, int64_t correction, bool keepdim) { em_seterr(EM_ERR_STATE, "em_var is not implemented yet"); return NULL; }
em_tensor_t * em_std(em_tensor_t *x, const int *dims, int ndims, int64_t correction, bool keepdim) { em_seterr(EM_ERR_STATE, "em_std is not implemented yet"); return NULL; }
em_tensor_t * em_max(em_tensor_t *x, int dim, bool keepdim, em_tensor_t **indices) { em_seterr(EM_ERR_STATE, "em_max is not implemented yet"); return NULL; }
em_tensor_t * em_min(em_tensor_t *x, int dim, bool keepdim, em_tensor_t **indices) { em_seterr(EM_ERR_STATE, "em_min is not implemented yet"); return NULL; }
em_tensor_t * em_argmax(em_tensor_t *x, int dim, bool keepdim) { em_seterr(EM_ERR_STATE, "em_argmax is not implemented yet"); return NULL; }
em_tensor_t * em_argmin(em_tensor_t *x, int dim, bool keepdim) { em_seterr(EM_ERR_STATE, "em_argmin is not implemented yet"); return NULL; }
em_tensor_t * em_cumsum(em_tensor_t *x, int dim) { em_seterr(EM_ERR_STATE, "em_cumsum is not implemented yet"); return NULL; }
em_tensor_t * em_softmax(em_tensor_t *x, int dim) { em_seterr(EM_ERR_STATE, "em_softmax is not implemented yet"); return NULL; }
em_tensor_t * em_log_softmax(em_tensor_t *x, int dim) { em_seterr(EM_ERR_STATE, "em_log_softmax is not implemented yet"); return NULL; }
em_tensor_t * em_layer_norm(em_tensor_t *x, em_tensor_t *w, em_tensor_t *b, double eps) { em_seterr(EM_ERR_STATE, "em_layer_norm is not implemented yet"); return NULL; }
em_tensor_t * em_rms_norm(em_tensor_t *x, em_tensor_t *w, double eps) { em_seterr(EM_ERR_STATE, "em_rms_norm is not implemented yet"); return NULL; }
em_tensor_t * em_embedding(em_tensor_t *weight, em_tensor_t *indices) { em_seterr(EM_ERR_STATE, "em_embedding is not implemented yet"); return NULL; }
em_tensor_t * em_cross_entropy(em_tensor_t *logits, em_tensor_t *targets) { em_seterr(EM_ERR_STATE, "em_cross_entropy is not implemented yet"); return NULL; }
em_tensor_t * em_cross_entropy_ex(em_tensor_t *logits, em_tensor_t *targets, int64_t ignore_index,
                                 em_reduction reduction) { em_seterr(EM_ERR_STATE, "em_cross_entropy_ex is not implemented yet"); return NULL; }
em_tensor_t * em_dropout(em_tensor_t *x, double p, bool training) { em_seterr(EM_ERR_STATE, "em_dropout is not implemented yet"); return NULL; }
em_tensor_t * em_cat(em_tensor_t *const *ts, int n, int dim) { em_seterr(EM_ERR_STATE, "em_cat is not implemented yet"); return NULL; }
em_tensor_t * em_stack(em_tensor_t *const *ts, int n, int dim) { em_seterr(EM_ERR_STATE, "em_stack is not implemented yet"); return NULL; }
int em_split(em_tensor_t *x, int64_t split_size, int dim, em_tensor_t **out, int max_out) { em_seterr(EM_ERR_STATE, "em_split is not implemented yet"); return -1; }
em_tensor_t * em_gather(em_tensor_t *x, int dim, em_tensor_t *index) { em_seterr(EM_ERR_STATE, "em_gather is not implemented yet"); return NULL; }
em_tensor_t * em_index_select(em_tensor_t *x, int dim, em_tensor_t *index) { em_seterr(EM_ERR_STATE, "em_index_select is not implemented yet"); return NULL; }
em_tensor_t * em_scatter_add(em_tensor_t *x, int dim, em_tensor_t *index, em_tensor_t *src) { em_seterr(EM_ERR_STATE, "em_scatter_add is not implemented yet"); return NULL; }
em_tensor_t * em_triu(em_tensor_t *x, int64_t diagonal) { em_seterr(EM_ERR_STATE, "em_triu is not implemented yet"); return NULL; }
em_tensor_t * em_tril(em_tensor_t *x, int64_t diagonal) { em_seterr(EM_ERR_STATE, "em_tril is not implemented yet"); return NULL; }
em_tensor_t * em_pad(em_tensor_t *x, const int64_t *pads, int npads, double value) { em_seterr(EM_ERR_STATE, "em_pad is not implemented yet"); return NULL; }
em_tensor_t * em_repeat(em_tensor_t *x, const int64_t *repeats, int n) { em_seterr(EM_ERR_STATE, "em_repeat is not implemented yet"); return NULL; }
em_tensor_t * em_flip(em_tensor_t *x, const int *dims, int ndims) { em_seterr(EM_ERR_STATE, "em_flip is not implemented yet"); return NULL; }
