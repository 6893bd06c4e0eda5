/* modules.c - the layers GPT-2 and Llama are built from: parameters, pre-norms, causal
 * self-attention (multi-head and grouped-query, with RoPE and the KV-cache write), and the two
 * MLPs (GELU and SwiGLU).
 *
 * Modules are functions over weights the model owns (nn.h's emn_block), not objects: Linear,
 * Embedding, LayerNorm and RMSNorm are single ops (em_linear, em_embedding, em_layer_norm,
 * em_rms_norm), so a module struct would only hold pointers. Everything is composed of public
 * em_ ops, so autograd records it and the compiler will trace it; each function opens a scope
 * for its temporaries and em_keeps only its result, so intermediates nobody saved for backward
 * die early. Grouped-query attention never copies keys or values: the NH/NKV query heads that
 * share a kv head are folded into the query-time dim instead ((B, NKV, rep*Tq, HS) @ k^T), which
 * is exact because llama2.c's head h reads kv head h / rep. The causal mask is a bool (Tq, Tk)
 * em_triu with bottom-right alignment, so the same code serves full sequences and cached decode.
 */
#include "nn.h"

#include <math.h>
#include <string.h>

/* ---- parameters ------------------------------------------------------------------------------- */
em_tensor_t *emn_param_new(em_model_t *m, const char *name, const int64_t *shape, int ndim, double std,
                           double fill) {
    EM_ASSERT(m->n_params < m->cap_params); /* em_model_new sized params[] for the config */
    em_scope_t *s = em_scope_begin();
    em_tensor_t *t;
    if (std > 0) {
        /* drawn in f32 whatever the dtype, so an f64 model starts from the f32 model's values */
        t = em_mul_scalar(em_randn(shape, ndim, EM_F32), std);
        t = em_cast(t, m->cfg.dtype);
    } else {
        t = em_full(shape, ndim, fill, m->cfg.dtype);
    }
    t = em_contiguous(t);
    if (!t || em_set_requires_grad(t, true) != EM_OK) {
        em_scope_end(s);
        return NULL;
    }
    em_retain(t); /* the model's reference; the scope's goes at em_scope_end */
    em_scope_end(s);
    emn_param *p = &m->params[m->n_params++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->t = t;
    return t;
}

em_tensor_t *emn_norm(const em_model_t *m, em_tensor_t *x, em_tensor_t *w, em_tensor_t *b) {
    if (m->cfg.arch == EM_ARCH_GPT2) return em_layer_norm(x, w, b, m->cfg.norm_eps); /* (B,T,C) */
    return em_rms_norm(x, w, m->cfg.norm_eps);                                       /* (B,T,C) */
}

em_tensor_t *emn_dropout(em_tensor_t *x, double p) { return p > 0 ? em_dropout(x, p, true) : x; }

/* ---- attention ---------------------------------------------------------------------------------- */
static bool sdpa_args(em_tensor_t *q, em_tensor_t *k, em_tensor_t *v, bool causal, double p) {
    const char *op = "em_scaled_dot_product_attention";
    if (!emt_check(q, op, "q") || !emt_check(k, op, "k") || !emt_check(v, op, "v")) return false;
    char bq[EMB_SHAPE_BUF], bk[EMB_SHAPE_BUF], bv[EMB_SHAPE_BUF];
    emb_shape_str(bq, em_shape(q), em_ndim(q));
    emb_shape_str(bk, em_shape(k), em_ndim(k));
    emb_shape_str(bv, em_shape(v), em_ndim(v));
    if (em_ndim(q) != 4 || em_ndim(k) != 4 || em_ndim(v) != 4) {
        em_seterr(EM_ERR_SHAPE, "%s: q %s, k %s and v %s must be 4-D: (B, heads, T, HS)", op, bq, bk, bv);
        return false;
    }
    const int64_t *qs = em_shape(q), *ks = em_shape(k), *vs = em_shape(v);
    if (ks[0] != qs[0] || vs[0] != qs[0] || ks[1] != vs[1] || ks[2] != vs[2] || ks[3] != qs[3] || ks[1] < 1 ||
        qs[1] % ks[1] != 0) {
        em_seterr(EM_ERR_SHAPE, "%s: q %s, k %s and v %s do not fit: need q (B, NH, Tq, HS), k (B, NKV, Tk, HS), "
                  "v (B, NKV, Tk, HSv) with NH a multiple of NKV", op, bq, bk, bv);
        return false;
    }
    if (causal && ks[2] < qs[2]) {
        em_seterr(EM_ERR_SHAPE, "%s: causal attention needs at least as many keys as queries (q %s, k %s): "
                  "query i sits at position Tk - Tq + i", op, bq, bk);
        return false;
    }
    if (!(p >= 0 && p < 1)) {
        em_seterr(EM_ERR_ARG, "%s: dropout_p must be in [0, 1), got %g", op, p);
        return false;
    }
    return true;
}

em_tensor_t *em_scaled_dot_product_attention(em_tensor_t *q, em_tensor_t *k, em_tensor_t *v, bool causal,
                                             double dropout_p) {
    if (!sdpa_args(q, k, v, causal, dropout_p)) return NULL;
    const int64_t B = em_size(q, 0), NH = em_size(q, 1), Tq = em_size(q, 2), HS = em_size(q, 3);
    const int64_t NKV = em_size(k, 1), Tk = em_size(k, 2), HSv = em_size(v, 3), rep = NH / NKV;
    em_scope_t *s = em_scope_begin();
    /* the rep query heads of one kv head, stacked along time: (B, NKV, rep*Tq, HS) */
    em_tensor_t *qg = rep > 1 ? em_reshape(q, (int64_t[]){B, NKV, rep * Tq, HS}, 4) : q;
    em_tensor_t *att = em_matmul(qg, em_transpose(k, -2, -1));  /* (B, NKV, rep*Tq, Tk) */
    att = em_mul_scalar(att, 1.0 / sqrt((double)HS));
    if (causal && Tq > 1) {
        /* true above the shifted diagonal: key j is after query i's position Tk - Tq + i */
        em_tensor_t *mask = em_triu(em_ones((int64_t[]){Tq, Tk}, 2, EM_BOOL), Tk - Tq + 1); /* (Tq, Tk) */
        em_tensor_t *a5 = em_reshape(att, (int64_t[]){B, NKV, rep, Tq, Tk}, 5);
        att = em_reshape(em_masked_fill(a5, mask, -INFINITY), (int64_t[]){B, NKV, rep * Tq, Tk}, 4);
    }
    att = em_softmax(att, -1);                                 /* (B, NKV, rep*Tq, Tk) */
    if (dropout_p > 0) att = em_dropout(att, dropout_p, true);
    em_tensor_t *y = em_matmul(att, v);                        /* (B, NKV, rep*Tq, HSv) */
    if (rep > 1) y = em_reshape(y, (int64_t[]){B, NH, Tq, HSv}, 4);
    if (y) em_keep(y);
    em_scope_end(s);
    return y;
}

em_tensor_t *em_rope(em_tensor_t *x, em_tensor_t *cos_t, em_tensor_t *sin_t) {
    const char *op = "em_rope";
    if (!emt_check(x, op, "x") || !emt_check(cos_t, op, "cos") || !emt_check(sin_t, op, "sin")) return NULL;
    int nd = em_ndim(x);
    char bx[EMB_SHAPE_BUF], bc[EMB_SHAPE_BUF], bs[EMB_SHAPE_BUF];
    emb_shape_str(bx, em_shape(x), nd);
    emb_shape_str(bc, em_shape(cos_t), em_ndim(cos_t));
    emb_shape_str(bs, em_shape(sin_t), em_ndim(sin_t));
    if (nd < 3 || nd >= EM_MAX_DIMS || em_size(x, -1) % 2 != 0)
        return em_seterr_null(EM_ERR_SHAPE, "%s: x %s must be (..., T, NH, HS) with HS even", op, bx);
    const int64_t T = em_size(x, -3), HS = em_size(x, -1);
    if (em_ndim(cos_t) != 2 || em_ndim(sin_t) != 2 || em_size(cos_t, 0) != T || em_size(cos_t, 1) != HS / 2 ||
        em_size(sin_t, 0) != T || em_size(sin_t, 1) != HS / 2)
        return em_seterr_null(EM_ERR_SHAPE, "%s: cos %s and sin %s must be (T, HS/2) = (%lld, %lld) for x %s", op, bc,
                              bs, (long long)T, (long long)(HS / 2), bx);
    if (!em_dtype_is_float(em_type(x)))
        return em_seterr_null(EM_ERR_DTYPE, "%s: x must be floating, got %s", op, em_dtype_name(em_type(x)));
    em_scope_t *s = em_scope_begin();
    int64_t pshape[EM_MAX_DIMS];
    memcpy(pshape, em_shape(x), sizeof(int64_t) * (size_t)nd);
    pshape[nd - 1] = HS / 2;
    pshape[nd] = 2;
    em_tensor_t *xp = em_reshape(x, pshape, nd + 1);           /* (..., T, NH, HS/2, 2) */
    em_tensor_t *x0 = em_select(xp, -1, 0), *x1 = em_select(xp, -1, 1); /* (..., T, NH, HS/2) */
    em_tensor_t *c = em_reshape(em_cast(cos_t, em_type(x)), (int64_t[]){T, 1, HS / 2}, 3);
    em_tensor_t *sn = em_reshape(em_cast(sin_t, em_type(x)), (int64_t[]){T, 1, HS / 2}, 3);
    em_tensor_t *pair[2] = {em_sub(em_mul(x0, c), em_mul(x1, sn)), em_add(em_mul(x0, sn), em_mul(x1, c))};
    em_tensor_t *y = em_reshape(em_stack(pair, 2, -1), em_shape(x), nd); /* (..., T, NH, HS) */
    if (y) em_keep(y);
    em_scope_end(s);
    return y;
}

em_status em_rope_tables(int64_t T, int64_t HS, double theta, em_dtype dt, em_tensor_t **cos_out, em_tensor_t **sin_out) {
    if (!cos_out || !sin_out) return em_seterr(EM_ERR_ARG, "em_rope_tables: cos and sin must not be NULL");
    *cos_out = *sin_out = NULL;
    if (T < 1 || HS < 2 || HS % 2 || !(theta > 0) || !em_dtype_is_float(dt))
        return em_seterr(EM_ERR_ARG, "em_rope_tables: need T >= 1, an even HS >= 2, theta > 0 and a floating "
                         "dtype (got T %lld, HS %lld, theta %g, %s)", (long long)T, (long long)HS, theta,
                         em_dtype_name(dt));
    int64_t n = T * (HS / 2);
    double *c = malloc(sizeof(double) * (size_t)n), *s = malloc(sizeof(double) * (size_t)n);
    if (!c || !s) {
        free(c);
        free(s);
        return em_seterr(EM_ERR_OOM, "em_rope_tables: out of memory for %lld x %lld tables", (long long)T,
                         (long long)(HS / 2));
    }
    for (int64_t t = 0; t < T; t++) {
        for (int64_t i = 0; i < HS / 2; i++) {
            if (dt == EM_F64) {
                double a = (double)t * pow(theta, -2.0 * (double)i / (double)HS);
                c[t * (HS / 2) + i] = cos(a);
                s[t * (HS / 2) + i] = sin(a);
            } else { /* llama2.c's run.c, operation for operation */
                float freq = 1.0f / powf((float)theta, (float)(2 * i) / (float)HS);
                float a = (float)t * freq;
                c[t * (HS / 2) + i] = cosf(a);
                s[t * (HS / 2) + i] = sinf(a);
            }
        }
    }
    em_scope_t *sc = em_scope_begin();
    const int64_t shape[2] = {T, HS / 2};
    em_tensor_t *tc = em_cast(em_from_data(c, shape, 2, EM_F64), dt);
    em_tensor_t *ts = em_cast(em_from_data(s, shape, 2, EM_F64), dt);
    free(c);
    free(s);
    if (!tc || !ts) {
        em_scope_end(sc);
        return em_last_status();
    }
    *cos_out = em_keep(tc);
    *sin_out = em_keep(ts);
    em_scope_end(sc);
    return EM_OK;
}

/* writes k_new (B, NKV, T, HS) at positions pos.. of one cache tensor and returns the filled part
   (B, NKV, pos+T, HS), a view of the cache */
static em_tensor_t *cache_append(em_tensor_t *cache, em_tensor_t *k_new, int64_t pos) {
    int64_t B = em_size(k_new, 0), T = em_size(k_new, 2);
    em_tensor_t *cb = em_slice(cache, 0, 0, B, 1);            /* (B, NKV, max_T, HS) */
    em_no_grad_begin();
    em_status st = em_assign(em_slice(cb, 2, pos, pos + T, 1), k_new);
    em_no_grad_end();
    if (st != EM_OK) return NULL;
    return em_slice(cb, 2, 0, pos + T, 1);
}

em_tensor_t *emn_attention(const em_model_t *m, const emn_block *blk, em_tensor_t *x, int64_t pos,
                           em_kv_cache_t *cache, int layer, double p) {
    const em_model_config *c = &m->cfg;
    const int64_t B = em_size(x, 0), T = em_size(x, 1), C = c->n_embd;
    const int64_t NH = c->n_head, NKV = c->n_kv_head, HS = C / NH;
    em_scope_t *s = em_scope_begin();
    em_tensor_t *q, *k, *v;
    if (blk->qkv_w) {
        em_tensor_t *qkv = emn_linear(m, x, blk->qkv_w, blk->qkv_b);    /* (B, T, (NH + 2 NKV) HS) */
        q = em_slice(qkv, 2, 0, NH * HS, 1);                            /* (B, T, NH HS) */
        k = em_slice(qkv, 2, NH * HS, (NH + NKV) * HS, 1);              /* (B, T, NKV HS) */
        v = em_slice(qkv, 2, (NH + NKV) * HS, (NH + 2 * NKV) * HS, 1);  /* (B, T, NKV HS) */
    } else {
        q = emn_linear(m, x, blk->q_w, blk->q_b);                       /* (B, T, NH HS) */
        k = emn_linear(m, x, blk->k_w, blk->k_b);                       /* (B, T, NKV HS) */
        v = emn_linear(m, x, blk->v_w, blk->v_b);                       /* (B, T, NKV HS) */
    }
    q = em_reshape(q, (int64_t[]){B, T, NH, HS}, 4);                    /* (B, T, NH, HS) */
    k = em_reshape(k, (int64_t[]){B, T, NKV, HS}, 4);                   /* (B, T, NKV, HS) */
    v = em_reshape(v, (int64_t[]){B, T, NKV, HS}, 4);                   /* (B, T, NKV, HS) */
    if (m->rope_cos) {
        em_tensor_t *cs = em_slice(m->rope_cos, 0, pos, pos + T, 1);    /* (T, HS/2) */
        em_tensor_t *sn = em_slice(m->rope_sin, 0, pos, pos + T, 1);    /* (T, HS/2) */
        q = em_rope(q, cs, sn);
        k = em_rope(k, cs, sn);
    }
    const int perm[4] = {0, 2, 1, 3};
    q = em_permute(q, perm, 4);                                         /* (B, NH, T, HS) */
    k = em_permute(k, perm, 4);                                         /* (B, NKV, T, HS) */
    v = em_permute(v, perm, 4);                                         /* (B, NKV, T, HS) */
    if (cache && q && k && v) {
        k = cache_append(cache->k[layer], k, pos);                      /* (B, NKV, pos+T, HS) */
        v = cache_append(cache->v[layer], v, pos);                      /* (B, NKV, pos+T, HS) */
    }
    em_tensor_t *y = em_scaled_dot_product_attention(q, k, v, true, p); /* (B, NH, T, HS) */
    y = em_reshape(em_permute(y, perm, 4), (int64_t[]){B, T, C}, 3);    /* (B, T, C) */
    y = emn_dropout(emn_linear(m, y, blk->o_w, blk->o_b), p);           /* (B, T, C) */
    if (y) em_keep(y);
    em_scope_end(s);
    return y;
}

/* ---- MLP ---------------------------------------------------------------------------------------- */
em_tensor_t *emn_mlp(const em_model_t *m, const emn_block *blk, em_tensor_t *x, double p) {
    em_scope_t *s = em_scope_begin();
    em_tensor_t *h;
    if (m->cfg.arch == EM_ARCH_GPT2) {
        h = em_gelu_tanh(emn_linear(m, x, blk->fc_w, blk->fc_b));       /* (B, T, H) */
    } else { /* SwiGLU: w2(silu(w1 x) * w3 x) */
        em_tensor_t *a = em_silu(emn_linear(m, x, blk->fc_w, blk->fc_b)); /* (B, T, H) */
        h = em_mul(a, emn_linear(m, x, blk->gate_w, blk->gate_b));      /* (B, T, H) */
    }
    em_tensor_t *y = emn_dropout(emn_linear(m, h, blk->proj_w, blk->proj_b), p); /* (B, T, C) */
    if (y) em_keep(y);
    em_scope_end(s);
    return y;
}
