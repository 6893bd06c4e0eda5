/* kv_cache.c - the key/value cache for inference.
 *
 * Per layer, one key and one value tensor (B, NKV, max_T, HS) in the model's dtype: views of one
 * (2, L, B, NKV, max_T, HS) tensor allocated once and owned by the cache. A cached forward computes only the new positions: each attention block
 * writes its new keys and values into the cache with em_assign (under no-grad; the compiler will
 * functionalize these writes, DESIGN 5) and attends over the filled prefix, a view of the cache.
 * Positions are passed explicitly, so "resetting" a cache is starting again from pos 0, and a
 * prompt can be fed in one call and then one token per call. The cache stores keys after RoPE,
 * like llama2.c, so a decode step rotates only its own key.
 *
 * The compiled decode step (emn_decode_step) is a second forward for one token per row whose
 * position is a tensor, so one traced program serves every step (generate.c compiles it). Shapes
 * stay static, and the step only reads the cache: each block scores its query against all max_T
 * cached keys with the positions >= pos masked (-inf, so whatever they hold gets weight exactly
 * 0) and against its own new key, takes one softmax over the max_T + 1 scores, and adds the new
 * value's share to the cached values' (att[:max_T] @ v_cache + att[max_T] * v_new). The new keys
 * and values of all layers leave the step as one (2, L, B, NKV, 1, HS) output that
 * emn_decode_commit writes at pos afterwards: one row per layer. Writing inside the traced step
 * would cost O(max_T) per layer and step: the graph has no in-place write at a tensor position,
 * so an em_assign there is functionalized into a where-blend over the whole cache plus a copy back
 * (an earlier version did that; the blend kernels and copies took about 5% of a bf16 GPT-2 step
 * at max_T = 128, growing with max_T). GPT-2's position row and RoPE's cos/sin rows are
 * em_index_select'ed at pos.
 */
#include "nn.h"

#include <math.h>

em_kv_cache_t *em_kv_cache_new(em_model_t *m, int batch, int max_T) {
    const char *op = "em_kv_cache_new";
    if (!m) return em_seterr_null(EM_ERR_ARG, "%s: the model is NULL", op);
    const em_model_config *c = &m->cfg;
    if (batch < 1 || max_T < 1 || max_T > c->block_size)
        return em_seterr_null(EM_ERR_ARG, "%s: need batch >= 1 and 1 <= max_T <= block_size %d (got batch %d, "
                              "max_T %d)", op, c->block_size, batch, max_T);
    em_kv_cache_t *kv = calloc(1, sizeof *kv);
    if (kv) {
        kv->m = m;
        kv->batch = batch;
        kv->max_T = max_T;
        kv->n_layer = c->n_layer;
        kv->k = calloc((size_t)c->n_layer, sizeof *kv->k);
        kv->v = calloc((size_t)c->n_layer, sizeof *kv->v);
    }
    if (!kv || !kv->k || !kv->v) {
        em_kv_cache_free(kv);
        return em_seterr_null(EM_ERR_OOM, "%s: out of memory", op);
    }
    /* (2, L, B, NKV, max_T, HS) */
    const int64_t shape[6] = {2, c->n_layer, batch, c->n_kv_head, max_T, c->n_embd / c->n_head};
    em_scope_t *s = em_scope_begin();
    em_tensor_t *all = em_zeros(shape, 6, c->dtype);
    bool ok = all != NULL;
    if (ok) kv->all = em_retain(all); /* the cache's references; the scope's go at em_scope_end */
    for (int l = 0; ok && l < c->n_layer; l++) {
        em_tensor_t *k = em_select(em_select(all, 0, 0), 0, l), *v = em_select(em_select(all, 0, 1), 0, l);
        ok = k && v;
        if (ok) { /* (B, NKV, max_T, HS) views */
            kv->k[l] = em_retain(k);
            kv->v[l] = em_retain(v);
        }
    }
    em_scope_end(s);
    if (!ok) {
        em_kv_cache_free(kv);
        return NULL;
    }
    return kv;
}

void em_kv_cache_free(em_kv_cache_t *c) {
    if (!c) return;
    for (int l = 0; c->k && l < c->n_layer; l++) em_release(c->k[l]);
    for (int l = 0; c->v && l < c->n_layer; l++) em_release(c->v[l]);
    em_release(c->all);
    free(c->k);
    free(c->v);
    free(c);
}

em_tensor_t *em_model_forward_cached(em_model_t *m, em_tensor_t *idx, int64_t pos, em_kv_cache_t *cache) {
    const char *op = "em_model_forward_cached";
    if (!m || !cache) return em_seterr_null(EM_ERR_ARG, "%s: the model and the cache must not be NULL", op);
    if (cache->m != m) return em_seterr_null(EM_ERR_ARG, "%s: the cache was made for another model", op);
    if (!emt_check(idx, op, "idx")) return NULL;
    if (em_ndim(idx) == 2 && (em_size(idx, 0) > cache->batch || pos < 0 || pos + em_size(idx, 1) > cache->max_T))
        return em_seterr_null(EM_ERR_SHAPE, "%s: idx (%lld, %lld) at position %lld does not fit a cache of batch %d "
                              "and max_T %d", op, (long long)em_size(idx, 0), (long long)em_size(idx, 1),
                              (long long)pos, cache->batch, cache->max_T);
    em_no_grad_begin();
    em_tensor_t *logits = emn_forward(m, idx, NULL, NULL, pos, cache);
    em_no_grad_end();
    return logits;
}

/* The prefill of generation: em_model_forward_cached's blocks (the same calls, so the cache gets
   the same keys and values), then the final norm and the lm_head on the last position only. Only
   that row's logits choose the next token; the head over the other T - 1 positions (V C
   multiply-adds each: a third of GPT-2 124M's 64-token prefill) would be thrown away. Every
   per-row op and the GEMM give a row the same bits however many rows come along (gemm.h), so the
   result equals the last row of em_model_forward_cached's logits exactly. */
em_tensor_t *emn_prefill(em_model_t *m, em_tensor_t *idx, int64_t pos, em_kv_cache_t *cache) {
    const char *op = "emn_prefill";
    if (!m || !cache) return em_seterr_null(EM_ERR_ARG, "%s: the model and the cache must not be NULL", op);
    if (cache->m != m) return em_seterr_null(EM_ERR_ARG, "%s: the cache was made for another model", op);
    if (!emt_check(idx, op, "idx")) return NULL;
    if (em_ndim(idx) != 2 || (em_type(idx) != EM_I64 && em_type(idx) != EM_I32) || em_size(idx, 1) < 1 ||
        em_size(idx, 0) > cache->batch || pos < 0 || pos + em_size(idx, 1) > cache->max_T)
        return em_seterr_null(EM_ERR_SHAPE, "%s: idx must be (B, T) i64/i32 ids with B <= %d and T >= 1 fitting a "
                              "cache of max_T %d at position %lld (got %d dims)", op, cache->batch, cache->max_T,
                              (long long)pos, em_ndim(idx));
    const int64_t T = em_size(idx, 1);
    em_no_grad_begin();
    em_scope_t *s = em_scope_begin();
    em_tensor_t *x = em_embedding(m->wte, idx);                                  /* (B, T, C) */
    if (x && m->wpe) x = em_add(x, em_slice(m->wpe, 0, pos, pos + T, 1));        /* + (T, C) */
    for (int l = 0; l < m->cfg.n_layer && x; l++) {
        const emn_block *blk = &m->blocks[l];
        em_scope_t *ls = em_scope_begin();
        em_tensor_t *h = emn_norm(m, x, blk->n1_w, blk->n1_b);                 /* (B, T, C) */
        x = em_add(x, emn_attention(m, blk, h, pos, cache, l, 0.0));           /* (B, T, C) */
        h = emn_norm(m, x, blk->n2_w, blk->n2_b);                             /* (B, T, C) */
        x = em_add(x, emn_mlp(m, blk, h, 0.0));                                /* (B, T, C) */
        if (x) em_keep(x);
        em_scope_end(ls);
    }
    x = emn_norm(m, em_select(x, 1, T - 1), m->nf_w, m->nf_b);                   /* (B, C) */
    em_tensor_t *logits = em_linear(x, m->head, NULL);                           /* (B, V) */
    if (logits) em_keep(logits);
    em_scope_end(s);
    em_no_grad_end();
    return logits;
}

/* ---- the decode step with a tensor position ------------------------------------------------- */
/* one block's attention for x (B, 1, C) at position pos over k_cache, v_cache (B, NKV, max_T, HS),
   read only (positions >= pos masked by `masked`, (max_T) bool: true where masked), plus this
   position's own key and value, which go to *k_out, *v_out (B, NKV, 1, HS) */
static em_tensor_t *decode_attention(const em_model_t *m, const emn_block *blk, em_tensor_t *x, em_tensor_t *pos,
                                     em_tensor_t *masked, em_tensor_t *k_cache, em_tensor_t *v_cache,
                                     em_tensor_t **k_out, em_tensor_t **v_out) {
    const em_model_config *c = &m->cfg;
    const int64_t B = em_size(x, 0), C = c->n_embd, NH = c->n_head, NKV = c->n_kv_head, HS = C / NH;
    const int64_t rep = NH / NKV, max_T = em_size(k_cache, 2);
    em_scope_t *s = em_scope_begin();
    em_tensor_t *q, *k, *v;
    if (blk->qkv_w) {
        em_tensor_t *qkv = emn_linear(m, x, blk->qkv_w, blk->qkv_b);    /* (B, 1, (NH + 2 NKV) HS) */
        q = em_slice(qkv, 2, 0, NH * HS, 1);                            /* (B, 1, NH HS) */
        k = em_slice(qkv, 2, NH * HS, (NH + NKV) * HS, 1);              /* (B, 1, NKV HS) */
        v = em_slice(qkv, 2, (NH + NKV) * HS, (NH + 2 * NKV) * HS, 1);  /* (B, 1, NKV HS) */
    } else {
        q = emn_linear(m, x, blk->q_w, blk->q_b);                       /* (B, 1, NH HS) */
        k = emn_linear(m, x, blk->k_w, blk->k_b);                       /* (B, 1, NKV HS) */
        v = emn_linear(m, x, blk->v_w, blk->v_b);                       /* (B, 1, NKV HS) */
    }
    q = em_reshape(q, (int64_t[]){B, 1, NH, HS}, 4);                    /* (B, 1, NH, HS) */
    k = em_reshape(k, (int64_t[]){B, 1, NKV, HS}, 4);                   /* (B, 1, NKV, HS) */
    if (m->rope_cos) {
        em_tensor_t *cs = em_index_select(m->rope_cos, 0, pos);         /* (1, HS/2) */
        em_tensor_t *sn = em_index_select(m->rope_sin, 0, pos);         /* (1, HS/2) */
        q = em_rope(q, cs, sn);
        k = em_rope(k, cs, sn);
    }
    q = em_reshape(q, (int64_t[]){B, NKV, rep, HS}, 4);                 /* (B, NKV, rep, HS): T = 1 */
    k = em_reshape(k, (int64_t[]){B, NKV, 1, HS}, 4);                   /* (B, NKV, 1, HS) */
    v = em_reshape(v, (int64_t[]){B, NKV, 1, HS}, 4);                   /* (B, NKV, 1, HS) */
    const double scale = 1.0 / sqrt((double)HS);
    em_tensor_t *sc = em_matmul(q, em_transpose(k_cache, -2, -1));      /* (B, NKV, rep, max_T) */
    sc = em_masked_fill(em_mul_scalar(sc, scale), masked, -INFINITY);
    em_tensor_t *sn = em_mul_scalar(em_matmul(q, em_transpose(k, -2, -1)), scale); /* (B, NKV, rep, 1) */
    em_tensor_t *att = em_softmax(em_cat((em_tensor_t *[]){sc, sn}, 2, -1), -1); /* (B, NKV, rep, max_T + 1) */
    em_tensor_t *y = em_add(em_matmul(em_slice(att, -1, 0, max_T, 1), v_cache), /* (B, NKV, rep, HS) */
                            em_mul(em_slice(att, -1, max_T, max_T + 1, 1), v));
    y = em_reshape(y, (int64_t[]){B, 1, C}, 3);                         /* (B, 1, C): head h = kv * rep + r */
    y = emn_linear(m, y, blk->o_w, blk->o_b);                           /* (B, 1, C) */
    if (y && k && v) {
        em_keep(y);
        *k_out = em_keep(k);
        *v_out = em_keep(v);
    } else {
        y = NULL;
    }
    em_scope_end(s);
    return y;
}

em_tensor_t *emn_decode_step(em_model_t *m, em_tensor_t *idx, em_tensor_t *pos, em_kv_cache_t *cache,
                             em_tensor_t **kv_new) {
    const char *op = "emn_decode_step";
    if (kv_new) *kv_new = NULL;
    if (!m || !cache || cache->m != m || !kv_new)
        return em_seterr_null(EM_ERR_ARG, "%s: need a model, its cache and kv_new", op);
    if (!emt_check(idx, op, "idx") || !emt_check(pos, op, "pos")) return NULL;
    if (em_ndim(idx) != 2 || em_size(idx, 0) != cache->batch || em_size(idx, 1) != 1 || em_ndim(pos) != 1 ||
        em_size(pos, 0) != 1 || em_type(pos) != EM_I64)
        return em_seterr_null(EM_ERR_SHAPE, "%s: need idx (%d, 1) and pos (1) i64 (got idx of %d dims, pos of %d)",
                              op, cache->batch, em_ndim(idx), em_ndim(pos));
    const int L = m->cfg.n_layer;
    const int64_t B = cache->batch, max_T = cache->max_T;
    em_tensor_t **kvs = calloc((size_t)(2 * L), sizeof *kvs); /* every layer's k, then every layer's v */
    if (!kvs) return em_seterr_null(EM_ERR_OOM, "%s: out of memory", op);
    em_no_grad_begin();
    em_scope_t *s = em_scope_begin();
    em_tensor_t *t = em_arange(0, (double)max_T, 1, EM_I64);                     /* (max_T) */
    em_tensor_t *masked = em_ge(t, pos);                                         /* (max_T): not yet cached */
    em_tensor_t *x = em_embedding(m->wte, idx);                                  /* (B, 1, C) */
    if (x && m->wpe) x = em_add(x, em_index_select(m->wpe, 0, pos));             /* + (1, C) */
    for (int l = 0; l < L && x; l++) {
        const emn_block *blk = &m->blocks[l];
        em_scope_t *ls = em_scope_begin();
        em_tensor_t *h = emn_norm(m, x, blk->n1_w, blk->n1_b);                 /* (B, 1, C) */
        x = em_add(x, decode_attention(m, blk, h, pos, masked, cache->k[l], cache->v[l], &kvs[l], &kvs[L + l]));
        h = emn_norm(m, x, blk->n2_w, blk->n2_b);                             /* (B, 1, C) */
        x = em_add(x, emn_mlp(m, blk, h, 0.0));                                /* (B, 1, C) */
        if (x && kvs[l] && kvs[L + l]) { /* they outlive the layer's temporaries */
            em_keep(x);
            em_keep(kvs[l]);
            em_keep(kvs[L + l]);
        } else {
            x = NULL;
        }
        em_scope_end(ls);
    }
    x = emn_norm(m, x, m->nf_w, m->nf_b);                                        /* (B, 1, C) */
    em_tensor_t *logits = em_reshape(em_linear(x, m->head, NULL), (int64_t[]){B, m->cfg.vocab_size}, 2); /* (B, V) */
    em_tensor_t *kv = NULL;
    if (logits) { /* (2 L, B, NKV, 1, HS) -> (2, L, B, NKV, 1, HS) */
        kv = em_stack(kvs, 2 * L, 0);
        kv = em_reshape(kv, (int64_t[]){2, L, B, m->cfg.n_kv_head, 1, m->cfg.n_embd / m->cfg.n_head}, 6);
    }
    if (logits && kv) {
        em_keep(logits);
        *kv_new = em_keep(kv);
    } else {
        logits = NULL;
    }
    em_scope_end(s);
    em_no_grad_end();
    free(kvs);
    return logits;
}

em_status emn_decode_commit(em_kv_cache_t *cache, em_tensor_t *kv_new, int64_t pos) {
    const char *op = "emn_decode_commit";
    if (!cache) return em_seterr(EM_ERR_ARG, "%s: the cache is NULL", op);
    if (!emt_check(kv_new, op, "kv_new")) return em_last_status();
    if (pos < 0 || pos >= cache->max_T)
        return em_seterr(EM_ERR_SHAPE, "%s: position %lld is outside the cache's 0 .. %d", op, (long long)pos,
                         cache->max_T - 1);
    em_scope_t *s = em_scope_begin();
    em_no_grad_begin();
    em_tensor_t *row = em_slice(cache->all, 4, pos, pos + 1, 1);                 /* (2, L, B, NKV, 1, HS) */
    em_status st = row ? em_assign(row, kv_new) : em_last_status();
    em_no_grad_end();
    em_scope_end(s);
    return st;
}
