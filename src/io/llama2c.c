/* llama2c.c - checkpoints in the legacy float32 format of karpathy/llama2.c (run.c's model.bin).
 *
 * Layout: seven int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a
 * negative vocab_size means the classifier is stored separately), then float32 arrays, each
 * covering all layers: token_embedding_table (V, dim), rms_att (L, dim), wq (L, dim, dim),
 * wk (L, kv_dim, dim), wv (L, kv_dim, dim), wo (L, dim, dim), rms_ffn (L, dim),
 * w1 (L, hidden, dim), w2 (L, dim, hidden), w3 (L, hidden, dim), rms_final (dim), two unused
 * RoPE tables (seq_len, head_size / 2) each, skipped, and wcls (V, dim) when not shared.
 * run.c multiplies W (out, in) @ x, so every matrix is already a PyTorch Linear weight
 * (out, in) and loads without a transpose.
 *
 * Checked before anything is allocated: every header field positive (vocab_size non-zero) and
 * at most 2^24, dim divisible by n_heads, n_heads by n_kv_heads, an even head size (RoPE turns
 * pairs), no size overflowing, and the file size exactly what the header implies (with the
 * classifier when vocab_size is negative, without it otherwise; the message says when the
 * other reading would have fit).
 *
 * Names follow Meta's Llama and llama2.c's model.py, one tensor per layer:
 *   tok_embeddings.weight (V, dim)              norm.weight (dim)     output.weight (V, dim)
 *   layers.{i}.attention_norm.weight (dim)      layers.{i}.ffn_norm.weight (dim)
 *   layers.{i}.attention.wq.weight (dim, dim)   layers.{i}.attention.wk.weight (kv_dim, dim)
 *   layers.{i}.attention.wv.weight (kv_dim, dim) layers.{i}.attention.wo.weight (dim, dim)
 *   layers.{i}.feed_forward.w1.weight (hidden, dim)  .w2.weight (dim, hidden)  .w3.weight (hidden, dim)
 * output.weight is present only when the classifier is not shared (cfg.shared_classifier says
 * to tie it to tok_embeddings).
 */
#include "io.h"

#define MAX_FIELD (1 << 24)

enum { A_EMB, A_ATTN_NORM, A_WQ, A_WK, A_WV, A_WO, A_FFN_NORM, A_W1, A_W2, A_W3, A_NORM, A_ROPE, A_OUT, A_COUNT };

static const char *layer_names[] = {
    [A_ATTN_NORM] = "attention_norm.weight", [A_WQ] = "attention.wq.weight", [A_WK] = "attention.wk.weight",
    [A_WV] = "attention.wv.weight", [A_WO] = "attention.wo.weight", [A_FFN_NORM] = "ffn_norm.weight",
    [A_W1] = "feed_forward.w1.weight", [A_W2] = "feed_forward.w2.weight", [A_W3] = "feed_forward.w3.weight",
};

typedef struct {
    int ndim;
    int64_t shape[2];
    bool per_layer;
} array_shape;

/* the shape of one (per-layer) slice of each array */
static void shapes(const em_llama2c_config *c, array_shape a[A_COUNT]) {
    int64_t dim = c->dim, hid = c->hidden_dim, kv = (int64_t)c->dim / c->n_heads * c->n_kv_heads;
    a[A_EMB] = (array_shape){2, {c->vocab_size, dim}, false};
    a[A_ATTN_NORM] = (array_shape){1, {dim}, true};
    a[A_WQ] = (array_shape){2, {dim, dim}, true};
    a[A_WK] = (array_shape){2, {kv, dim}, true};
    a[A_WV] = (array_shape){2, {kv, dim}, true};
    a[A_WO] = (array_shape){2, {dim, dim}, true};
    a[A_FFN_NORM] = (array_shape){1, {dim}, true};
    a[A_W1] = (array_shape){2, {hid, dim}, true};
    a[A_W2] = (array_shape){2, {dim, hid}, true};
    a[A_W3] = (array_shape){2, {hid, dim}, true};
    a[A_NORM] = (array_shape){1, {dim}, false};
    a[A_ROPE] = (array_shape){2, {2 * (int64_t)c->seq_len, dim / c->n_heads / 2}, false};
    a[A_OUT] = (array_shape){2, {c->vocab_size, dim}, false};
}

static em_status check_header(const char *op, const char *path, const int32_t h[7], uint64_t file_size, em_llama2c_config *c) {
    static const char *fields[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
    for (int i = 0; i < 7; i++) {
        int64_t v = i == 5 ? (h[i] < 0 ? -(int64_t)h[i] : h[i]) : h[i];
        if (v <= 0 || v > MAX_FIELD)
            return em_seterr(EM_ERR_FORMAT, "%s: '%s': header field %s = %d is not in [1, %d]%s (not a llama2.c checkpoint?)",
                             op, path, fields[i], h[i], MAX_FIELD, i == 5 ? " in absolute value" : "");
    }
    *c = (em_llama2c_config){h[0], h[1], h[2], h[3], h[4], h[5] < 0 ? -h[5] : h[5], h[6], h[5] > 0};
    if (c->dim % c->n_heads)
        return em_seterr(EM_ERR_FORMAT, "%s: '%s': dim %d is not divisible by n_heads %d", op, path, c->dim, c->n_heads);
    if (c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads)
        return em_seterr(EM_ERR_FORMAT, "%s: '%s': n_heads %d is not a multiple of n_kv_heads %d", op, path, c->n_heads, c->n_kv_heads);
    if ((c->dim / c->n_heads) % 2)
        return em_seterr(EM_ERR_FORMAT, "%s: '%s': head size %d is odd (RoPE needs pairs)", op, path, c->dim / c->n_heads);
    array_shape a[A_COUNT];
    shapes(c, a);
    uint64_t floats = 0, out_floats = 0; /* everything but the classifier; the classifier */
    for (int k = 0; k < A_COUNT; k++) {
        int64_t n = 1;
        for (int d = 0; d < a[k].ndim; d++)
            if (emb_mul_overflows(n, a[k].shape[d], &n)) n = INT64_MAX;
        if (a[k].per_layer && emb_mul_overflows(n, c->n_layers, &n)) n = INT64_MAX;
        if (n > ((int64_t)1 << 40)) return em_seterr(EM_ERR_FORMAT, "%s: '%s': the header implies absurd sizes", op, path);
        if (k == A_OUT) out_floats = (uint64_t)n;
        else floats += (uint64_t)n;
    }
    uint64_t without = 28 + 4 * floats, with = without + 4 * out_floats;
    uint64_t want = c->shared_classifier ? without : with;
    if (file_size != want) {
        uint64_t other = c->shared_classifier ? with : without;
        return em_seterr(EM_ERR_FORMAT, "%s: '%s' is %llu bytes, but its header (dim %d, hidden_dim %d, %d layers, %d heads, "
                                        "%d kv heads, vocab %d, seq_len %d, %s classifier) implies %llu%s", op, path,
                         (unsigned long long)file_size, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                         c->vocab_size, c->seq_len, c->shared_classifier ? "shared" : "separate", (unsigned long long)want,
                         file_size == other ? (c->shared_classifier ? " (the size fits a separate classifier: the sign of "
                                                                      "vocab_size is wrong?)"
                                                                    : " (the size fits a shared classifier: the sign of "
                                                                      "vocab_size is wrong?)")
                                            : (file_size < want ? " (truncated?)" : " (trailing bytes?)"));
    }
    return EM_OK;
}

static em_status load(emio_src *src, em_llama2c_config *cfg, em_state_dict_t **out) {
    const char *op = src->op;
    int32_t h[7];
    em_llama2c_config c;
    em_status s = emio_src_read(src, h, sizeof h, "the 28-byte header");
    if (s) return s;
    if ((s = check_header(op, src->path, h, src->size, &c))) return s;
    array_shape a[A_COUNT];
    shapes(&c, a);
    em_state_dict_t *sd = em_state_dict_new();
    em_tensor_t **layer = calloc((size_t)c.n_layers * A_COUNT, sizeof *layer);
    em_tensor_t *emb = NULL, *norm = NULL, *outw = NULL;
    if (!sd || !layer) { s = em_seterr(EM_ERR_OOM, "%s: out of memory", op); goto done; }
    /* tensors in model order (the dict's order), then filled in file order */
    char name[96];
    if (!(emb = emt_new(EM_F32, a[A_EMB].shape, 2)) || (s = em_state_dict_set(sd, "tok_embeddings.weight", emb))) goto fail;
    for (int l = 0; l < c.n_layers; l++) {
        for (int k = A_ATTN_NORM; k <= A_W3; k++) {
            em_tensor_t *t = emt_new(EM_F32, a[k].shape, a[k].ndim);
            if (!t) goto fail;
            layer[(size_t)l * A_COUNT + (size_t)k] = t;
            snprintf(name, sizeof name, "layers.%d.%s", l, layer_names[k]);
            if ((s = em_state_dict_set(sd, name, t))) goto fail;
        }
    }
    if (!(norm = emt_new(EM_F32, a[A_NORM].shape, 1)) || (s = em_state_dict_set(sd, "norm.weight", norm))) goto fail;
    if (!c.shared_classifier &&
        (!(outw = emt_new(EM_F32, a[A_OUT].shape, 2)) || (s = em_state_dict_set(sd, "output.weight", outw)))) goto fail;
    for (int k = 0; k < A_COUNT && !s; k++) {
        if (k == A_OUT && c.shared_classifier) break;
        if (k == A_ROPE) {
            s = emio_src_seek(src, src->pos + 4 * (uint64_t)(a[k].shape[0] * a[k].shape[1]));
            continue;
        }
        for (int l = 0; l < (a[k].per_layer ? c.n_layers : 1) && !s; l++) {
            em_tensor_t *t = k == A_EMB ? emb : k == A_NORM ? norm : k == A_OUT ? outw : layer[(size_t)l * A_COUNT + (size_t)k];
            s = emio_src_read(src, t->storage->data, t->storage->nbytes, k == A_EMB ? "tok_embeddings" : "weights");
        }
    }
    if (s) goto done;
    *cfg = c;
    goto done;
fail:
    if (!s) s = em_last_status();
done:
    if (layer)
        for (size_t i = 0; i < (size_t)c.n_layers * A_COUNT; i++) em_release(layer[i]);
    free(layer);
    em_release(emb);
    em_release(norm);
    em_release(outw);
    if (s) {
        em_state_dict_free(sd);
        return s;
    }
    *out = sd;
    return EM_OK;
}

em_status em_llama2c_load(const char *path, em_llama2c_config *cfg, em_state_dict_t **out) {
    static const char *op = "em_llama2c_load";
    if (!cfg || !out) return em_seterr(EM_ERR_ARG, "%s: cfg and out must not be NULL", op);
    *out = NULL;
    emio_src src;
    em_status s = emio_src_open(&src, op, path);
    if (!s) s = load(&src, cfg, out);
    emio_src_close(&src);
    return s;
}

em_status emio_llama2c_load_mem(const void *buf, size_t n, em_llama2c_config *cfg, em_state_dict_t **out) {
    emio_src src;
    emio_src_mem(&src, "em_llama2c_load", buf, n);
    *out = NULL;
    return load(&src, cfg, out);
}
