/* model_dtype.c - em_model_to_dtype: a model's parameters converted to another floating dtype,
 * like PyTorch's model.to(torch.bfloat16).
 *
 * A model's dtype (em_model_config.dtype) is the dtype of every parameter, activation and KV
 * cache; each op computes in f32 (f64 for f64) and rounds its result once to the dtype. So a
 * bf16 model is the f32 model with every parameter rounded to bf16 (nearest even) and every
 * op's output rounded too: half the bytes to stream per decode step. Conversion builds all the
 * new tensors first (contiguous leaves, requires_grad as before, gradients dropped) and swaps
 * them in only when every one exists, so a failure leaves the model as it was. A tied classifier
 * stays tied (head and wte are one tensor before and after). Llama's RoPE tables are rebuilt in
 * the new dtype, exactly what em_model_new makes for that dtype, so a converted model and a model
 * made in the dtype and loaded with the rounded parameters compute the same bits.
 * The parameter handles change: handles taken before (em_model_params, em_model_param, an
 * optimizer over them) refer to the old tensors, which the model no longer holds. Models with
 * LoRA adapters are refused (merge first): the adapter table borrows the parameters.
 */
#include "nn.h"

/* the block's tensor fields, so a swap reaches each one (nn.h's emn_block) */
#define BLOCK_FIELDS(X) \
    X(n1_w) X(n1_b) X(qkv_w) X(qkv_b) X(q_w) X(k_w) X(v_w) X(q_b) X(k_b) X(v_b) X(o_w) X(o_b) X(n2_w) X(n2_b) \
    X(fc_w) X(fc_b) X(gate_w) X(gate_b) X(proj_w) X(proj_b)

/* the new tensor for old (one of the n parameters), or old itself when it is none of them */
static em_tensor_t *swap(em_tensor_t *old, em_tensor_t *const *from, em_tensor_t *const *to, int n) {
    for (int i = 0; old && i < n; i++)
        if (from[i] == old) return to[i];
    return old;
}

em_status em_model_to_dtype(em_model_t *m, em_dtype dt) {
    const char *op = "em_model_to_dtype";
    if (!m) return em_seterr(EM_ERR_ARG, "%s: the model is NULL", op);
    if ((int)dt < 0 || (int)dt >= EM_NUM_DTYPES || !em_dtype_is_float(dt))
        return em_seterr(EM_ERR_DTYPE, "%s: the dtype must be floating (EM_F32, EM_BF16, EM_F16 or EM_F64), got %s", op,
                         (int)dt >= 0 && (int)dt < EM_NUM_DTYPES ? em_dtype_name(dt) : "an unknown dtype");
    if (em_model_num_lora(m) > 0)
        return em_seterr(EM_ERR_STATE, "%s: the model has LoRA adapters on %d linears; merge them first "
                         "(em_model_merge_lora)", op, em_model_num_lora(m));
    if (dt == m->cfg.dtype) return EM_OK;
    const int n = m->n_params;
    em_tensor_t **from = calloc((size_t)(n > 0 ? n : 1), sizeof *from);
    em_tensor_t **to = calloc((size_t)(n > 0 ? n : 1), sizeof *to);
    em_tensor_t *cs = NULL, *sn = NULL;
    em_status st = from && to ? EM_OK : em_seterr(EM_ERR_OOM, "%s: out of memory", op);
    em_scope_t *s = em_scope_begin();
    em_no_grad_begin();
    for (int i = 0; st == EM_OK && i < n; i++) {
        em_tensor_t *p = m->params[i].t;
        em_tensor_t *t = em_contiguous(em_cast(p, dt)); /* a new tensor: the dtypes differ */
        if (t && em_requires_grad(p) && em_set_requires_grad(t, true) != EM_OK) t = NULL;
        if (!t) {
            st = em_last_status();
            break;
        }
        from[i] = p;
        to[i] = em_retain(t); /* the model's reference once swapped in; the scope's goes at its end */
    }
    if (st == EM_OK && m->rope_cos) {
        const int64_t HS = m->cfg.n_embd / m->cfg.n_head;
        st = em_rope_tables(m->cfg.block_size, HS, m->cfg.rope_theta, dt, &cs, &sn);
        if (st == EM_OK) {
            em_retain(cs);
            em_retain(sn);
        }
    }
    em_no_grad_end();
    em_scope_end(s);
    if (st != EM_OK) {
        for (int i = 0; to && i < n; i++) em_release(to[i]);
        em_release(cs);
        em_release(sn);
        free(from);
        free(to);
        return st;
    }
    /* swap: every pointer into the parameters, then the parameter list; the old tensors go last */
    m->wte = swap(m->wte, from, to, n);
    m->wpe = swap(m->wpe, from, to, n);
    m->nf_w = swap(m->nf_w, from, to, n);
    m->nf_b = swap(m->nf_b, from, to, n);
    m->head = swap(m->head, from, to, n);
    for (int l = 0; l < m->cfg.n_layer; l++) {
        emn_block *b = &m->blocks[l];
#define SWAP_FIELD(f) b->f = swap(b->f, from, to, n);
        BLOCK_FIELDS(SWAP_FIELD)
#undef SWAP_FIELD
    }
    for (int i = 0; i < n; i++) m->params[i].t = m->handles[i] = to[i];
    if (cs) {
        em_release(m->rope_cos);
        em_release(m->rope_sin);
        m->rope_cos = cs;
        m->rope_sin = sn;
    }
    for (int i = 0; i < n; i++) em_release(from[i]);
    m->cfg.dtype = dt;
    free(from);
    free(to);
    return EM_OK;
}
