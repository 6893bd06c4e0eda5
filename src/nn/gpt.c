/* gpt.c - GPT-2 and Llama-2 as one decoder-only transformer: configs and presets, parameter
 * creation and initialisation, the forward pass, and the named-parameter API that io/ loads
 * checkpoints through.
 *
 * The two architectures share the block structure (pre-norm, x += attn(norm(x)), x += mlp(norm(x)))
 * and differ in four places, each decided by cfg.arch: learned positions (GPT-2) vs RoPE (Llama),
 * LayerNorm vs RMSNorm, a fused c_attn vs separate wq/wk/wv, GELU-tanh vs SwiGLU. Parameters are
 * one allocation each (leaf tensors that require grad, owned by the model), listed in a fixed
 * order under the names the reference checkpoints use, so a state dict maps onto them by name.
 * The forward opens a scope per block and keeps only the residual stream, so a block's
 * temporaries that backward does not need are freed before the next block runs.
 */
#include "nn.h"

#include <math.h>
#include <string.h>

/* ---- configs ------------------------------------------------------------------------------------ */
static em_model_config gpt2_cfg(int n_layer, int n_head, int n_embd) {
    return (em_model_config){.arch = EM_ARCH_GPT2, .vocab_size = 50257, .block_size = 1024, .n_layer = n_layer,
                             .n_head = n_head, .n_kv_head = n_head, .n_embd = n_embd, .ffn_hidden = 4 * n_embd,
                             .norm_eps = 1e-5, .tie_embeddings = true, .bias = true, .dtype = EM_F32};
}

static em_model_config llama_cfg(int n_layer, int n_head, int n_embd, int hidden, int vocab, int block, bool tie) {
    return (em_model_config){.arch = EM_ARCH_LLAMA, .vocab_size = vocab, .block_size = block, .n_layer = n_layer,
                             .n_head = n_head, .n_kv_head = n_head, .n_embd = n_embd, .ffn_hidden = hidden,
                             .norm_eps = 1e-5, .rope_theta = 10000.0, .tie_embeddings = tie, .bias = false,
                             .dtype = EM_F32};
}

em_status em_model_config_preset(const char *name, em_model_config *cfg) {
    if (!name || !cfg) return em_seterr(EM_ERR_ARG, "em_model_config_preset: name and cfg must not be NULL");
    em_model_config c;
    if (!strcmp(name, "gpt2")) c = gpt2_cfg(12, 12, 768);
    else if (!strcmp(name, "gpt2-medium")) c = gpt2_cfg(24, 16, 1024);
    else if (!strcmp(name, "gpt2-large")) c = gpt2_cfg(36, 20, 1280);
    else if (!strcmp(name, "gpt2-xl")) c = gpt2_cfg(48, 25, 1600);
    else if (!strcmp(name, "gpt2-tiny")) {
        c = gpt2_cfg(2, 2, 32);
        c.vocab_size = 64;
        c.block_size = 16;
    } else if (!strcmp(name, "stories15M")) c = llama_cfg(6, 6, 288, 768, 32000, 256, true);
    else if (!strcmp(name, "stories42M")) c = llama_cfg(8, 8, 512, 1376, 32000, 1024, true);
    else if (!strcmp(name, "stories110M")) c = llama_cfg(12, 12, 768, 2048, 32000, 1024, true);
    else if (!strcmp(name, "llama2-7b")) c = llama_cfg(32, 32, 4096, 11008, 32000, 4096, false);
    else if (!strcmp(name, "llama-tiny")) {
        c = llama_cfg(2, 4, 32, 96, 64, 16, false);
        c.n_kv_head = 2;
    } else
        return em_seterr(EM_ERR_ARG, "em_model_config_preset: unknown preset \"%s\" (known: gpt2, gpt2-medium, "
                         "gpt2-large, gpt2-xl, gpt2-tiny, stories15M, stories42M, stories110M, llama2-7b, "
                         "llama-tiny)", name);
    *cfg = c;
    return EM_OK;
}

/* fills zero fields with the architecture's defaults and checks the rest */
static em_status resolve(em_model_config *c) {
    const char *op = "em_model_new";
    if (c->arch != EM_ARCH_GPT2 && c->arch != EM_ARCH_LLAMA)
        return em_seterr(EM_ERR_ARG, "%s: unknown arch %d (EM_ARCH_GPT2 or EM_ARCH_LLAMA)", op, (int)c->arch);
    if (c->vocab_size < 1 || c->block_size < 1 || c->n_layer < 1 || c->n_head < 1 || c->n_embd < 1 ||
        c->n_kv_head < 0 || c->ffn_hidden < 0)
        return em_seterr(EM_ERR_ARG, "%s: vocab_size (%d), block_size (%d), n_layer (%d), n_head (%d) and n_embd "
                         "(%d) must be positive, n_kv_head (%d) and ffn_hidden (%d) non-negative", op, c->vocab_size,
                         c->block_size, c->n_layer, c->n_head, c->n_embd, c->n_kv_head, c->ffn_hidden);
    if (c->n_kv_head == 0) c->n_kv_head = c->n_head;
    if (c->n_embd % c->n_head != 0)
        return em_seterr(EM_ERR_ARG, "%s: n_embd %d is not a multiple of n_head %d", op, c->n_embd, c->n_head);
    if (c->n_head % c->n_kv_head != 0)
        return em_seterr(EM_ERR_ARG, "%s: n_head %d is not a multiple of n_kv_head %d", op, c->n_head, c->n_kv_head);
    if (c->ffn_hidden == 0) {
        if (c->arch == EM_ARCH_GPT2) c->ffn_hidden = 4 * c->n_embd;
        else { /* llama2.c's ModelArgs: 2/3 of 4C, rounded up to a multiple of 32 */
            int h = 2 * (4 * c->n_embd) / 3;
            c->ffn_hidden = 32 * ((h + 31) / 32);
        }
    }
    if (c->norm_eps == 0) c->norm_eps = 1e-5;
    if (c->arch == EM_ARCH_LLAMA && c->rope_theta == 0) c->rope_theta = 10000.0;
    if (!(c->norm_eps > 0))
        return em_seterr(EM_ERR_ARG, "%s: norm_eps must be positive, got %g", op, c->norm_eps);
    if (c->arch == EM_ARCH_LLAMA && (!(c->rope_theta > 0) || (c->n_embd / c->n_head) % 2 != 0))
        return em_seterr(EM_ERR_ARG, "%s: RoPE needs rope_theta > 0 (got %g) and an even head size (got %d)", op,
                         c->rope_theta, c->n_embd / c->n_head);
    if (!(c->dropout >= 0 && c->dropout < 1))
        return em_seterr(EM_ERR_ARG, "%s: dropout must be in [0, 1), got %g", op, c->dropout);
    if (!em_dtype_is_float(c->dtype))
        return em_seterr(EM_ERR_DTYPE, "%s: dtype must be floating, got %s", op, em_dtype_name(c->dtype));
    return EM_OK;
}

/* ---- construction ------------------------------------------------------------------------------- */
/* one parameter; std > 0 draws N(0, std), otherwise fills with `fill`; with !init, zeros (a loader
   overwrites every parameter at once, and drawing 124M normals costs seconds) */
static em_tensor_t *param(em_model_t *m, bool init, const char *name, int64_t d0, int64_t d1, double std,
                          double fill) {
    const int64_t shape[2] = {d0, d1};
    return emn_param_new(m, name, shape, d1 > 0 ? 2 : 1, init ? std : 0, init ? fill : 0);
}

/* the parameters of block l, in the documented order; false on failure */
static bool make_block(em_model_t *m, bool init, int l, emn_block *b) {
    const em_model_config *c = &m->cfg;
    const int64_t C = c->n_embd, HS = C / c->n_head, NQ = c->n_head * HS, NKV = c->n_kv_head * HS;
    const int64_t H = c->ffn_hidden;
    const double std = 0.02, std_res = 0.02 / sqrt(2.0 * c->n_layer);
    char n[EMN_NAME_MAX];
#define P(field, suffix, d0, d1, sd, fill) \
    (snprintf(n, sizeof n, pre "%d." suffix, l), (b->field = param(m, init, n, d0, d1, sd, fill)) != NULL)
    bool ok = true;
    if (c->arch == EM_ARCH_GPT2) {
#define pre "h."
        ok = ok && P(n1_w, "ln_1.weight", C, 0, 0, 1) && (!c->bias || P(n1_b, "ln_1.bias", C, 0, 0, 0));
        ok = ok && P(qkv_w, "attn.c_attn.weight", NQ + 2 * NKV, C, std, 0) &&
             (!c->bias || P(qkv_b, "attn.c_attn.bias", NQ + 2 * NKV, 0, 0, 0));
        ok = ok && P(o_w, "attn.c_proj.weight", C, NQ, std_res, 0) && (!c->bias || P(o_b, "attn.c_proj.bias", C, 0, 0, 0));
        ok = ok && P(n2_w, "ln_2.weight", C, 0, 0, 1) && (!c->bias || P(n2_b, "ln_2.bias", C, 0, 0, 0));
        ok = ok && P(fc_w, "mlp.c_fc.weight", H, C, std, 0) && (!c->bias || P(fc_b, "mlp.c_fc.bias", H, 0, 0, 0));
        ok = ok && P(proj_w, "mlp.c_proj.weight", C, H, std_res, 0) &&
             (!c->bias || P(proj_b, "mlp.c_proj.bias", C, 0, 0, 0));
#undef pre
    } else {
#define pre "layers."
        ok = ok && P(n1_w, "attention_norm.weight", C, 0, 0, 1);
        ok = ok && P(q_w, "attention.wq.weight", NQ, C, std, 0) && (!c->bias || P(q_b, "attention.wq.bias", NQ, 0, 0, 0));
        ok = ok && P(k_w, "attention.wk.weight", NKV, C, std, 0) && (!c->bias || P(k_b, "attention.wk.bias", NKV, 0, 0, 0));
        ok = ok && P(v_w, "attention.wv.weight", NKV, C, std, 0) && (!c->bias || P(v_b, "attention.wv.bias", NKV, 0, 0, 0));
        ok = ok && P(o_w, "attention.wo.weight", C, NQ, std_res, 0) && (!c->bias || P(o_b, "attention.wo.bias", C, 0, 0, 0));
        ok = ok && P(n2_w, "ffn_norm.weight", C, 0, 0, 1);
        ok = ok && P(fc_w, "feed_forward.w1.weight", H, C, std, 0) &&
             (!c->bias || P(fc_b, "feed_forward.w1.bias", H, 0, 0, 0));
        ok = ok && P(proj_w, "feed_forward.w2.weight", C, H, std_res, 0) &&
             (!c->bias || P(proj_b, "feed_forward.w2.bias", C, 0, 0, 0));
        ok = ok && P(gate_w, "feed_forward.w3.weight", H, C, std, 0) &&
             (!c->bias || P(gate_b, "feed_forward.w3.bias", H, 0, 0, 0));
#undef pre
    }
#undef P
    return ok;
}

/* an upper bound on the parameter count of the config: at most 16 per block, 5 outside */
static int max_params(const em_model_config *c) { return 8 + c->n_layer * 16; }

em_model_t *emn_model_new(const em_model_config *cfg, uint64_t seed, bool init) {
    if (!cfg) return em_seterr_null(EM_ERR_ARG, "em_model_new: cfg is NULL");
    em_model_config c = *cfg;
    if (resolve(&c) != EM_OK) return NULL;
    if (c.n_layer > 100000) return em_seterr_null(EM_ERR_ARG, "em_model_new: n_layer %d is too large", c.n_layer);
    em_model_t *m = calloc(1, sizeof *m);
    if (m) {
        m->cfg = c;
        m->training = true;
        m->cap_params = max_params(&c);
        m->params = calloc((size_t)max_params(&c), sizeof *m->params);
        m->handles = calloc((size_t)max_params(&c), sizeof *m->handles);
        m->blocks = calloc((size_t)c.n_layer, sizeof *m->blocks);
    }
    if (!m || !m->params || !m->handles || !m->blocks) {
        em_model_free(m);
        return em_seterr_null(EM_ERR_OOM, "em_model_new: out of memory");
    }
    /* draw from Philox(seed) and leave the global generator where it was */
    uint64_t seed0 = em_rng_seed(), offset0 = em_rng_offset();
    em_manual_seed(seed);
    const int64_t C = c.n_embd, V = c.vocab_size, HS = C / c.n_head;
    bool gpt2 = c.arch == EM_ARCH_GPT2, ok;
    ok = (m->wte = param(m, init, gpt2 ? "wte.weight" : "tok_embeddings.weight", V, C, 0.02, 0)) != NULL;
    if (ok && gpt2) ok = (m->wpe = param(m, init, "wpe.weight", c.block_size, C, 0.02, 0)) != NULL;
    for (int l = 0; ok && l < c.n_layer; l++) ok = make_block(m, init, l, &m->blocks[l]);
    if (ok) ok = (m->nf_w = param(m, init, gpt2 ? "ln_f.weight" : "norm.weight", C, 0, 0, 1)) != NULL;
    if (ok && gpt2 && c.bias) ok = (m->nf_b = param(m, init, "ln_f.bias", C, 0, 0, 0)) != NULL;
    if (ok) {
        if (c.tie_embeddings) m->head = m->wte;
        else ok = (m->head = param(m, init, gpt2 ? "lm_head.weight" : "output.weight", V, C, 0.02, 0)) != NULL;
    }
    em_rng_set_state(seed0, offset0);
    if (ok && !gpt2) { /* the model owns the tables (one reference each), not the caller's scope */
        em_scope_t *s = em_scope_begin();
        em_tensor_t *cs, *sn;
        ok = em_rope_tables(c.block_size, HS, c.rope_theta, c.dtype, &cs, &sn) == EM_OK;
        if (ok) {
            m->rope_cos = em_retain(cs); /* (block_size, HS/2) */
            m->rope_sin = em_retain(sn); /* (block_size, HS/2) */
        }
        em_scope_end(s);
    }
    if (!ok) {
        em_model_free(m);
        return NULL;
    }
    for (int i = 0; i < m->n_params; i++) m->handles[i] = m->params[i].t;
    return m;
}

em_model_t *em_model_new(const em_model_config *cfg, uint64_t seed) { return emn_model_new(cfg, seed, true); }

void em_model_free(em_model_t *m) {
    if (!m) return;
    for (int i = 0; i < m->n_params; i++) em_release(m->params[i].t);
    em_release(m->rope_cos);
    em_release(m->rope_sin);
    emn_lora_free(m);
    free(m->params);
    free(m->handles);
    free(m->blocks);
    free(m);
}

static bool model_ok(em_model_t *m, const char *op) {
    if (!m) em_seterr(EM_ERR_ARG, "%s: the model is NULL", op);
    return m != NULL;
}

const em_model_config *em_model_get_config(em_model_t *m) {
    return model_ok(m, "em_model_get_config") ? &m->cfg : NULL;
}
void em_model_set_training(em_model_t *m, bool training) {
    if (model_ok(m, "em_model_set_training")) m->training = training;
}
bool em_model_is_training(em_model_t *m) { return model_ok(m, "em_model_is_training") && m->training; }

/* ---- forward -------------------------------------------------------------------------------------- */
static bool is_int(em_dtype d) { return d == EM_I64 || d == EM_I32; }

em_tensor_t *emn_forward(em_model_t *m, em_tensor_t *idx, em_tensor_t *targets, em_tensor_t **loss, int64_t pos,
                         em_kv_cache_t *cache) {
    const char *op = cache ? "em_model_forward_cached" : "em_model_forward";
    if (loss) *loss = NULL;
    if (!model_ok(m, op) || !emt_check(idx, op, "idx")) return NULL;
    const em_model_config *c = &m->cfg;
    char b1[EMB_SHAPE_BUF], b2[EMB_SHAPE_BUF];
    if (em_ndim(idx) != 2 || !is_int(em_type(idx)) || em_size(idx, 1) < 1)
        return em_seterr_null(EM_ERR_SHAPE, "%s: idx must be (B, T) i64 or i32 token ids with T >= 1, got %s %s", op,
                              emb_shape_str(b1, em_shape(idx), em_ndim(idx)), em_dtype_name(em_type(idx)));
    const int64_t B = em_size(idx, 0), T = em_size(idx, 1), V = c->vocab_size;
    if (pos < 0 || pos + T > c->block_size)
        return em_seterr_null(EM_ERR_SHAPE, "%s: positions %lld .. %lld exceed the model's block_size %d", op,
                              (long long)pos, (long long)(pos + T - 1), c->block_size);
    if (targets) {
        if (!emt_check(targets, op, "targets")) return NULL;
        if (!loss) return em_seterr_null(EM_ERR_ARG, "%s: targets given but loss is NULL", op);
        if (em_ndim(targets) != 2 || em_size(targets, 0) != B || em_size(targets, 1) != T ||
            !is_int(em_type(targets)))
            return em_seterr_null(EM_ERR_SHAPE, "%s: targets %s %s must be integer ids shaped like idx %s", op,
                                  emb_shape_str(b1, em_shape(targets), em_ndim(targets)),
                                  em_dtype_name(em_type(targets)), emb_shape_str(b2, em_shape(idx), 2));
    }
    const double p = m->training && !cache ? c->dropout : 0.0;
    em_scope_t *s = em_scope_begin();
    em_tensor_t *x = em_embedding(m->wte, idx);                                  /* (B, T, C) */
    if (!x) { /* a token id out of range: keep em_embedding's EM_ERR_INDEX as the status */
        em_scope_end(s);
        return NULL;
    }
    if (m->wpe) x = em_add(x, em_slice(m->wpe, 0, pos, pos + T, 1));             /* + (T, C) */
    x = emn_dropout(x, p);
    for (int l = 0; l < c->n_layer && x; l++) {
        const emn_block *blk = &m->blocks[l];
        em_scope_t *ls = em_scope_begin();
        em_tensor_t *h = emn_norm(m, x, blk->n1_w, blk->n1_b);                 /* (B, T, C) */
        x = em_add(x, emn_attention(m, blk, h, pos, cache, l, p));             /* (B, T, C) */
        h = emn_norm(m, x, blk->n2_w, blk->n2_b);                             /* (B, T, C) */
        x = em_add(x, emn_mlp(m, blk, h, p));                                  /* (B, T, C) */
        if (x) em_keep(x);
        em_scope_end(ls);
    }
    x = emn_norm(m, x, m->nf_w, m->nf_b);                                        /* (B, T, C) */
    em_tensor_t *logits = em_linear(x, m->head, NULL);                           /* (B, T, V) */
    em_tensor_t *l = NULL;
    if (targets && logits) {
        l = em_cross_entropy_ex(em_reshape(logits, (int64_t[]){B * T, V}, 2),    /* (B*T, V) */
                                em_reshape(targets, (int64_t[]){B * T}, 1), -1, EM_REDUCE_MEAN); /* () */
        if (!l) logits = NULL;
    }
    if (logits) em_keep(logits);
    if (l) em_keep(l);
    em_scope_end(s);
    if (loss) *loss = l;
    return logits;
}

em_tensor_t *em_model_forward(em_model_t *m, em_tensor_t *idx, em_tensor_t *targets, em_tensor_t **loss) {
    return emn_forward(m, idx, targets, loss, 0, NULL);
}

/* ---- named parameters ------------------------------------------------------------------------------- */
int em_model_num_params(em_model_t *m) { return model_ok(m, "em_model_num_params") ? m->n_params : -1; }

int64_t em_model_param_count(em_model_t *m) {
    if (!model_ok(m, "em_model_param_count")) return -1;
    int64_t n = 0;
    for (int i = 0; i < m->n_params; i++) n += em_numel(m->params[i].t);
    return n;
}

em_tensor_t *em_model_param(em_model_t *m, int i, const char **name) {
    if (!model_ok(m, "em_model_param")) return NULL;
    if (i < 0 || i >= m->n_params)
        return em_seterr_null(EM_ERR_INDEX, "em_model_param: index %d is out of range (the model has %d)", i,
                              m->n_params);
    if (name) *name = m->params[i].name;
    return m->params[i].t;
}

static int find_param(em_model_t *m, const char *name) {
    for (int i = 0; name && i < m->n_params; i++)
        if (!strcmp(m->params[i].name, name)) return i;
    return -1;
}

em_tensor_t *em_model_param_by_name(em_model_t *m, const char *name) {
    if (!model_ok(m, "em_model_param_by_name")) return NULL;
    int i = find_param(m, name);
    if (i < 0)
        return em_seterr_null(EM_ERR_ARG, "em_model_param_by_name: the model has no parameter \"%s\" (%s names "
                              "them like \"%s\")", name ? name : "(null)",
                              m->cfg.arch == EM_ARCH_GPT2 ? "GPT-2" : "Llama", m->params[m->n_params > 2 ? 2 : 0].name);
    return m->params[i].t;
}

em_tensor_t *const *em_model_params(em_model_t *m) { return model_ok(m, "em_model_params") ? m->handles : NULL; }

/* checks that src can be copied into parameter i */
static em_status check_src(em_model_t *m, int i, em_tensor_t *src, const char *op) {
    if (!emt_check(src, op, m->params[i].name)) return em_last_status();
    em_tensor_t *p = m->params[i].t;
    bool same = em_ndim(src) == em_ndim(p);
    for (int d = 0; same && d < em_ndim(p); d++) same = em_size(src, d) == em_size(p, d);
    char b1[EMB_SHAPE_BUF], b2[EMB_SHAPE_BUF];
    if (!same)
        return em_seterr(EM_ERR_SHAPE, "%s: \"%s\" is %s in the model but the tensor given is %s", op,
                         m->params[i].name, emb_shape_str(b1, em_shape(p), em_ndim(p)),
                         emb_shape_str(b2, em_shape(src), em_ndim(src)));
    if (em_type(src) == EM_BOOL)
        return em_seterr(EM_ERR_DTYPE, "%s: \"%s\" cannot be loaded from a bool tensor", op, m->params[i].name);
    return EM_OK;
}

static em_status copy_in(em_tensor_t *p, em_tensor_t *src) {
    em_no_grad_begin();
    em_status st = em_assign(p, src);
    em_no_grad_end();
    return st;
}

em_status em_model_set_param(em_model_t *m, const char *name, em_tensor_t *src) {
    const char *op = "em_model_set_param";
    if (!model_ok(m, op)) return em_last_status();
    int i = find_param(m, name);
    if (i < 0) return em_model_param_by_name(m, name) ? EM_OK : em_last_status();
    em_status st = check_src(m, i, src, op);
    return st != EM_OK ? st : copy_in(m->params[i].t, src);
}

em_status em_model_load_params(em_model_t *m, const char *const *names, em_tensor_t *const *tensors, int n,
                               bool strict) {
    const char *op = "em_model_load_params";
    if (!model_ok(m, op)) return em_last_status();
    if (n < 0 || (n > 0 && (!names || !tensors)))
        return em_seterr(EM_ERR_ARG, "%s: need n >= 0 names and tensors (got n = %d)", op, n);
    int *slot = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    int *seen = calloc((size_t)m->n_params, sizeof(int));
    em_status st = slot && seen ? EM_OK : em_seterr(EM_ERR_OOM, "%s: out of memory", op);
    /* check everything before writing anything */
    for (int j = 0; st == EM_OK && j < n; j++) {
        slot[j] = find_param(m, names[j]);
        if (slot[j] < 0) {
            if (strict)
                st = em_seterr(EM_ERR_ARG, "%s: unexpected name \"%s\" (the model has no such parameter; pass "
                               "strict = false to ignore it)", op, names[j] ? names[j] : "(null)");
            continue;
        }
        if (seen[slot[j]]++)
            st = em_seterr(EM_ERR_ARG, "%s: \"%s\" is given twice", op, names[j]);
        else
            st = check_src(m, slot[j], tensors[j], op);
    }
    for (int i = 0; st == EM_OK && strict && i < m->n_params; i++)
        if (!seen[i])
            st = em_seterr(EM_ERR_ARG, "%s: parameter \"%s\" is missing (pass strict = false to leave it as it is)",
                           op, m->params[i].name);
    for (int j = 0; st == EM_OK && j < n; j++)
        if (slot[j] >= 0) st = copy_in(m->params[slot[j]].t, tensors[j]);
    free(slot);
    free(seen);
    return st;
}

em_status em_model_zero_grad(em_model_t *m) {
    if (!model_ok(m, "em_model_zero_grad")) return em_last_status();
    for (int i = 0; i < m->n_params; i++) em_zero_grad(m->params[i].t);
    return EM_OK;
}

/* ---- Hugging Face GPT-2 ---------------------------------------------------------------------------- */
static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

em_status em_model_load_gpt2_hf(em_model_t *m, const char *const *names, em_tensor_t *const *tensors, int n) {
    const char *op = "em_model_load_gpt2_hf";
    if (!model_ok(m, op)) return em_last_status();
    if (m->cfg.arch != EM_ARCH_GPT2) return em_seterr(EM_ERR_ARG, "%s: the model is not a GPT-2", op);
    if (n < 0 || (n > 0 && (!names || !tensors)))
        return em_seterr(EM_ERR_ARG, "%s: need n >= 0 names and tensors (got n = %d)", op, n);
    const char **nm = malloc(sizeof(char *) * (size_t)(n > 0 ? n : 1));
    em_tensor_t **ts = malloc(sizeof(em_tensor_t *) * (size_t)(n > 0 ? n : 1));
    if (!nm || !ts) {
        free(nm);
        free(ts);
        return em_seterr(EM_ERR_OOM, "%s: out of memory", op);
    }
    em_scope_t *s = em_scope_begin();
    int k = 0;
    em_status st = EM_OK;
    for (int j = 0; j < n && st == EM_OK; j++) {
        const char *name = names[j];
        if (!name) {
            st = em_seterr(EM_ERR_ARG, "%s: names[%d] is NULL", op, j);
            break;
        }
        if (!strncmp(name, "transformer.", 12)) name += 12;
        if (ends_with(name, ".attn.bias") || ends_with(name, ".attn.masked_bias") ||
            (m->cfg.tie_embeddings && !strcmp(name, "lm_head.weight")))
            continue; /* buffers, and the tied head (it is wte) */
        em_tensor_t *t = tensors[j];
        bool conv1d = ends_with(name, "attn.c_attn.weight") || ends_with(name, "attn.c_proj.weight") ||
                      ends_with(name, "mlp.c_fc.weight") || ends_with(name, "mlp.c_proj.weight");
        if (conv1d && t && em_ndim(t) == 2) t = em_transpose(t, 0, 1); /* (in, out) -> (out, in), a view */
        nm[k] = name;
        ts[k++] = t;
    }
    if (st == EM_OK) st = em_model_load_params(m, nm, ts, k, true);
    em_scope_end(s);
    free(nm);
    free(ts);
    return st;
}
