/* nn.h - what the files of src/nn share: the model struct, its named parameters, one transformer
 * block's weights, and the building blocks of modules.c.
 *
 * nn/ sits beside the pipeline (DESIGN.md): everything here is composed of public em_ ops, so
 * the eager forward records autograd like user code does and the compiler will trace it
 * unchanged. Files: modules.c (parameters, attention, RoPE, the MLPs), gpt.c (configs, the two
 * architectures, the named-parameter API), kv_cache.c (the inference cache).
 *
 * Shapes (llm.c's names): B batch, T time, C channels (n_embd), NH query heads, NKV key/value
 * heads, HS head size (C / NH), V vocabulary, H the MLP's hidden width.
 */
#ifndef EMBER_NN_H
#define EMBER_NN_H

#include "../base/base.h"
#include "../tensor/tensor.h" /* emt_check only: argument validation with the root cause */

#define EMN_NAME_MAX 96

typedef struct {
    char name[EMN_NAME_MAX];
    em_tensor_t *t; /* owned: one reference, held by the model */
} emn_param;

/* one block's weights; NULL when the architecture or config has none (biases, c_attn vs wq/wk/wv) */
typedef struct {
    em_tensor_t *n1_w, *n1_b;           /* ln_1 / attention_norm (C) */
    em_tensor_t *qkv_w, *qkv_b;         /* GPT-2 fused c_attn ((NH + 2 NKV) HS, C) */
    em_tensor_t *q_w, *k_w, *v_w;       /* Llama wq (NH HS, C), wk and wv (NKV HS, C) */
    em_tensor_t *q_b, *k_b, *v_b;
    em_tensor_t *o_w, *o_b;             /* c_proj / wo (C, C) */
    em_tensor_t *n2_w, *n2_b;           /* ln_2 / ffn_norm (C) */
    em_tensor_t *fc_w, *fc_b;           /* c_fc / w1 (H, C) */
    em_tensor_t *gate_w, *gate_b;       /* Llama w3 (H, C): SwiGLU's linear branch */
    em_tensor_t *proj_w, *proj_b;       /* c_proj / w2 (C, H) */
} emn_block;

struct em_model {
    em_model_config cfg;  /* resolved: no zero defaults left */
    bool training;
    int n_params, cap_params;
    emn_param *params;    /* in the documented order */
    em_tensor_t **handles; /* params[i].t, for em_model_params */
    em_tensor_t *wte;     /* (V, C) token embedding */
    em_tensor_t *wpe;     /* (block_size, C) GPT-2 positions */
    emn_block *blocks;    /* n_layer */
    em_tensor_t *nf_w, *nf_b; /* final norm (C) */
    em_tensor_t *head;    /* (V, C): wte when tied */
    em_tensor_t *rope_cos, *rope_sin; /* (block_size, HS/2) Llama tables; owned, not parameters */
};

struct em_kv_cache {
    em_model_t *m;
    int batch, max_T, n_layer;
    em_tensor_t **k, **v; /* per layer (B, NKV, max_T, HS), owned */
};

/* ---- modules.c ------------------------------------------------------------------------------ */
/* adds a parameter of the given shape to m, filled with N(0, std) (std > 0) or the constant
   `fill`; NULL + error on failure */
em_tensor_t *emn_param_new(em_model_t *m, const char *name, const int64_t *shape, int ndim, double std,
                           double fill);
/* y = x w^T (+ b): the Linear module */
static inline em_tensor_t *emn_linear(em_tensor_t *x, em_tensor_t *w, em_tensor_t *b) { return em_linear(x, w, b); }
/* the pre-norm of a block: LayerNorm (GPT-2) or RMSNorm (Llama) */
em_tensor_t *emn_norm(const em_model_t *m, em_tensor_t *x, em_tensor_t *w, em_tensor_t *b);
/* causal self-attention of one block over x (B, T, C) at positions pos .. pos+T-1; with a cache,
   writes this block's keys and values at those positions and attends over 0 .. pos+T-1;
   p is the dropout probability (0 in evaluation) */
em_tensor_t *emn_attention(const em_model_t *m, const emn_block *blk, em_tensor_t *x, int64_t pos,
                           em_kv_cache_t *cache, int layer, double p);
/* the MLP of one block: GELU (GPT-2) or SwiGLU (Llama) */
em_tensor_t *emn_mlp(const em_model_t *m, const emn_block *blk, em_tensor_t *x, double p);
/* dropout of p when p > 0, else x itself (no new reference) */
em_tensor_t *emn_dropout(em_tensor_t *x, double p);

/* ---- gpt.c ---------------------------------------------------------------------------------- */
/* the forward both public entry points share: cache NULL is the ordinary (training) forward */
em_tensor_t *emn_forward(em_model_t *m, em_tensor_t *idx, em_tensor_t *targets, em_tensor_t **loss, int64_t pos,
                         em_kv_cache_t *cache);

#endif
