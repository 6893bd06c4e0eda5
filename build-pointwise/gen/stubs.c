#include "kernels.h"
#pragma GCC diagnostic ignored "-Wunused-parameter"
EMO_KERNEL(emo_k_sum) { return em_seterr(EM_ERR_STATE, "emo_k_sum is not implemented yet"); }
EMO_KERNEL(emo_k_prod) { return em_seterr(EM_ERR_STATE, "emo_k_prod is not implemented yet"); }
EMO_KERNEL(emo_k_amax) { return em_seterr(EM_ERR_STATE, "emo_k_amax is not implemented yet"); }
EMO_KERNEL(emo_k_amin) { return em_seterr(EM_ERR_STATE, "emo_k_amin is not implemented yet"); }
em_tensor_t * em_mean(em_tensor_t *x, const int *dims, int ndims, bool keepdim) { em_seterr(EM_ERR_STATE, "em_mean is not implemented yet"); return NULL; }
em_tensor_t * em_prod(em_tensor_t *x, const int *dims, int ndims, bool keepdim) { em_seterr(EM_ERR_STATE, "em_prod is not implemented yet"); return NULL; }
em_tensor_t * em_amax(em_tensor_t *x, const int *dims, int ndims, bool keepdim) { em_seterr(EM_ERR_STATE, "em_amax is not implemented yet"); return NULL; }
em_tensor_t * em_amin(em_tensor_t *x, const int *dims, int ndims, bool keepdim) { em_seterr(EM_ERR_STATE, "em_amin is not implemented yet"); return NULL; }
em_tensor_t * em_logsumexp(em_tensor_t *x, const int *dims, int ndims, bool keepdim) { em_seterr(EM_ERR_STATE, "em_logsumexp is not implemented yet"); return NULL; }
