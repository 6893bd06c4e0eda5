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
    struct emn_lora_set *lora; /* LoRA adapters (lora.c); NULL when none were ever added */
};

struct em_kv_cache {
    em_model_t *m;
    int batch, max_T, n_layer;
    em_tensor_t *all;     /* (2, L, B, NKV, max_T, HS): keys, then values, of every layer; owned */
    em_tensor_t **k, **v; /* per layer (B, NKV, max_T, HS), views of all; owned */
};

/* ---- modules.c ------------------------------------------------------------------------------ */
/* adds a parameter of the given shape to m, filled with N(0, std) (std > 0) or the constant
   `fill`; NULL + error on failure */
em_tensor_t *emn_param_new(em_model_t *m, const char *name, const int64_t *shape, int ndim, double std,
                           double fill);
/* y = x w^T (+ b): the Linear module, plus the LoRA term (alpha/r) (x A^T) B^T when w has an
   adapter (lora.c); every linear of a block goes through it */
em_tensor_t *emn_linear(const em_model_t *m, em_tensor_t *x, em_tensor_t *w, em_tensor_t *b);
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

/* ---- lora.c --------------------------------------------------------------------------------- */
/* frees the adapter table (not the adapters: they are parameters); em_model_free calls it */
void emn_lora_free(em_model_t *m);
/* what a model file holds ("merge on save"): every base parameter by name into sd, an adapted
   weight as W + (alpha/r) B A (a new tensor; the model is unchanged), no lora_A / lora_B; without
   adapters, the parameters as they are */
em_status emn_lora_export(em_model_t *m, em_state_dict_t *sd);
/* the tensors of a model file (merge: emn_lora_export) or of a training checkpoint (!merge: every
   parameter, adapters included, plus "lora.*" metadata that emn_lora_from_meta reads back) */
em_status emn_lora_state(em_model_t *m, em_state_dict_t *sd, bool merge);
/* adds the adapters that sd's "lora.*" metadata describes (none: EM_OK, nothing done), before a
   strict load of sd's tensors; errors are prefixed with `what` */
em_status emn_lora_from_meta(em_model_t *m, const em_state_dict_t *sd, const char *what);

/* ---- gpt.c ---------------------------------------------------------------------------------- */
/* em_model_new; with init false every parameter starts at 0 instead of its random draw: for
   loaders that overwrite all of them (strict loads) right away */
em_model_t *emn_model_new(const em_model_config *cfg, uint64_t seed, bool init);
/* the forward both public entry points share: cache NULL is the ordinary (training) forward */
em_tensor_t *emn_forward(em_model_t *m, em_tensor_t *idx, em_tensor_t *targets, em_tensor_t **loss, int64_t pos,
                         em_kv_cache_t *cache);

/* ---- checkpoint.c --------------------------------------------------------------------------- */
/* metadata strings: set, and get with range checks (errors name `what` and the key) */
em_status emn_meta_set_int(em_state_dict_t *sd, const char *key, int64_t v);
em_status emn_meta_set_double(em_state_dict_t *sd, const char *key, double v);
em_status emn_meta_get_int(const em_state_dict_t *sd, const char *what, const char *key, int64_t lo, int64_t hi,
                           int64_t *out);
em_status emn_meta_get_u64(const em_state_dict_t *sd, const char *what, const char *key, uint64_t *out);
em_status emn_meta_get_double(const em_state_dict_t *sd, const char *what, const char *key, double lo, double hi,
                              double *out);
/* the model config as "ember.*" metadata, and back (every field validated) */
em_status emn_config_to_meta(const em_model_config *c, em_state_dict_t *sd);
em_status emn_config_from_meta(const em_state_dict_t *sd, const char *what, em_model_config *c);
/* a dict of m's parameters (retained) and config with "ember.format" = format */
em_state_dict_t *emn_model_state_dict(em_model_t *m, const char *format);
/* a model from an Ember model or checkpoint dict ("optimizer." tensors skipped); what names the source */
em_model_t *emn_model_from_state_dict(const em_state_dict_t *sd, const char *what);

/* ---- kv_cache.c ----------------------------------------------------------------------------- */
/* the decode step that compiles once: idx (B, 1) ids (B = the cache's batch) at the position held
   by pos, a (1) i64 tensor. Reads the cache (positions 0 .. pos-1; the rest is masked) and never
   writes it: each block attends over the cached keys plus its own new key and value. Returns
   logits (B, V) and sets *kv_new to this position's keys and values of every layer,
   (2, L, B, NKV, 1, HS), for emn_decode_commit. Runs under no-grad */
em_tensor_t *emn_decode_step(em_model_t *m, em_tensor_t *idx, em_tensor_t *pos, em_kv_cache_t *cache,
                             em_tensor_t **kv_new);
/* writes emn_decode_step's kv_new into the cache at position pos: one eager em_assign of one row
   per layer, after the (compiled) step */
em_status emn_decode_commit(em_kv_cache_t *cache, em_tensor_t *kv_new, int64_t pos);
/* em_model_forward_cached of idx (B, T) at pos, but returning only the last position's logits (B, V)
   (the lm_head skips the other rows; equal to em_model_forward_cached's last row bit for bit);
   generation's prefill. Runs under no-grad */
em_tensor_t *emn_prefill(em_model_t *m, em_tensor_t *idx, int64_t pos, em_kv_cache_t *cache);

/* ---- import.c ------------------------------------------------------------------------------- */
/* a float32 model from a llama2.c checkpoint or a Hugging Face GPT-2 safetensors file, told apart
   by their first bytes, with the config read from the file; NULL + error otherwise */
em_model_t *emn_model_import(const char *path);

#endif
