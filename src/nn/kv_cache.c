/* kv_cache.c - the key/value cache for inference.
 *
 * Per layer, one key and one value tensor (B, NKV, max_T, HS) in the model's dtype, allocated once
 * and owned by the cache. A cached forward computes only the new positions: each attention block
 * writes its new keys and values into the cache with em_assign (under no-grad; the compiler will
 * functionalize these writes, DESIGN 5) and attends over the filled prefix, a view of the cache.
 * Positions are passed explicitly, so "resetting" a cache is starting again from pos 0, and a
 * prompt can be fed in one call and then one token per call. The cache stores keys after RoPE,
 * like llama2.c, so a decode step rotates only its own key.
 */
#include "nn.h"

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
    const int64_t shape[4] = {batch, c->n_kv_head, max_T, c->n_embd / c->n_head}; /* (B, NKV, max_T, HS) */
    em_scope_t *s = em_scope_begin();
    bool ok = true;
    for (int l = 0; ok && l < c->n_layer; l++) {
        em_tensor_t *k = em_zeros(shape, 4, c->dtype), *v = em_zeros(shape, 4, c->dtype);
        ok = k && v;
        if (ok) { /* the cache's references; the scope's go at em_scope_end */
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
