/* import.c - models from other projects' files: llama2.c checkpoints and Hugging Face GPT-2
 * safetensors, behind one entry point, emn_model_import(path).
 *
 * The format is told by the first bytes, not the file name: a safetensors file starts with a
 * little-endian u64 header length whose high 32 bits are 0 (no header is 4 GiB) followed by '{';
 * a llama2.c file starts with seven positive int32 (dim, hidden_dim, ...), so its bytes 4..7
 * (hidden_dim) are never all zero. Everything else is EM_ERR_FORMAT naming both formats.
 *
 * The architecture comes from the file, never from the caller:
 *   llama2.c: the header gives every size (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 *     vocab_size, seq_len -> block_size; a positive vocab_size ties the classifier); the weights
 *     are already (out, in) and load by their Meta names.
 *   GPT-2 (Hugging Face names, with or without "transformer."): V and C from wte (V, C),
 *     block_size from wpe, n_layer from the highest h.N present, ffn_hidden from c_fc (C, H)
 *     (Conv1D layout), biases from the presence of h.0.ln_1.bias, tied unless an lm_head.weight
 *     that differs from wte is stored. The head count is not in any shape: it is read from the
 *     metadata key "n_head" when present, else C / 64 (every OpenAI GPT-2 size has head size 64).
 * The model is float32, made with emn_model_new without the random initialisation (the strict
 * load overwrites every value), so a missing or misshapen tensor is an error naming it.
 * Ember's own checkpoints (safetensors with the config in the metadata) are em_model_load's; it
 * calls this function for anything else.
 */
#include "nn.h"

#include "../io/io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { FMT_UNKNOWN, FMT_SAFETENSORS, FMT_LLAMA2C } file_format;

static em_status sniff(const char *op, const char *path, file_format *fmt) {
    *fmt = FMT_UNKNOWN;
    FILE *f = fopen(path, "rb");
    if (!f) return em_seterr(EM_ERR_IO, "%s: cannot open '%s' (check the path)", op, path);
    unsigned char h[9] = {0};
    size_t n = fread(h, 1, sizeof h, f);
    fclose(f);
    if (n == sizeof h && !h[4] && !h[5] && !h[6] && !h[7] && h[8] == '{') *fmt = FMT_SAFETENSORS;
    else if (n >= 8 && (h[4] | h[5] | h[6] | h[7])) *fmt = FMT_LLAMA2C; /* em_llama2c_load checks the rest */
    if (*fmt == FMT_UNKNOWN)
        return em_seterr(EM_ERR_FORMAT, "%s: '%s' (%zu bytes read) is neither a safetensors file (u64 header "
                         "length, then '{') nor a llama2.c checkpoint (seven positive int32)", op, path, n);
    return EM_OK;
}

/* loads every tensor of sd into m by name (strict); gpt2_hf goes through em_model_load_gpt2_hf */
static em_status load_dict(em_model_t *m, const em_state_dict_t *sd, bool gpt2_hf) {
    int n = (int)em_state_dict_count(sd);
    const char **names = malloc(sizeof(char *) * (size_t)(n > 0 ? n : 1));
    em_tensor_t **ts = malloc(sizeof(em_tensor_t *) * (size_t)(n > 0 ? n : 1));
    if (!names || !ts) {
        free(names);
        free(ts);
        return em_seterr(EM_ERR_OOM, "emn_model_import: out of memory");
    }
    em_scope_t *s = em_scope_begin();
    em_status st = EM_OK;
    for (int i = 0; i < n && st == EM_OK; i++) {
        names[i] = em_state_dict_name_at(sd, i);
        ts[i] = em_state_dict_tensor_at(sd, i);
        if (!ts[i]) st = em_last_status();
    }
    if (st == EM_OK)
        st = gpt2_hf ? em_model_load_gpt2_hf(m, names, ts, n) : em_model_load_params(m, names, ts, n, true);
    em_scope_end(s);
    free(names);
    free(ts);
    return st;
}

static em_model_t *import_llama2c(const char *op, const char *path) {
    em_llama2c_config lc;
    em_state_dict_t *sd = NULL;
    if (em_llama2c_load(path, &lc, &sd) != EM_OK) return NULL;
    em_model_config c = {.arch = EM_ARCH_LLAMA, .vocab_size = lc.vocab_size, .block_size = lc.seq_len,
                         .n_layer = lc.n_layers, .n_head = lc.n_heads, .n_kv_head = lc.n_kv_heads,
                         .n_embd = lc.dim, .ffn_hidden = lc.hidden_dim, .norm_eps = 1e-5, .rope_theta = 10000.0,
                         .tie_embeddings = lc.shared_classifier, .bias = false, .dtype = EM_F32};
    em_model_t *m = emn_model_new(&c, 0, false); /* load_dict sets every parameter */
    if (m && load_dict(m, sd, false) != EM_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", em_last_error());
        em_model_free(m);
        m = em_seterr_null(em_last_status(), "%s: '%s': %s", op, path, msg);
    }
    em_state_dict_free(sd);
    return m;
}

/* the tensor called name or "transformer." name; a new reference in the current scope, or NULL */
static em_tensor_t *hf_get(const em_state_dict_t *sd, const char *name) {
    char full[EMN_NAME_MAX + 16];
    if (em_state_dict_contains(sd, name)) return em_state_dict_get(sd, name);
    snprintf(full, sizeof full, "transformer.%s", name);
    if (em_state_dict_contains(sd, full)) return em_state_dict_get(sd, full);
    return NULL;
}

/* a GPT-2 config from the shapes of a Hugging Face state dict (the rules at the top) */
static em_status gpt2_config(const char *op, const char *path, const em_state_dict_t *sd, em_model_config *c) {
    em_tensor_t *wte = hf_get(sd, "wte.weight"), *wpe = hf_get(sd, "wpe.weight");
    em_tensor_t *fc = hf_get(sd, "h.0.mlp.c_fc.weight");
    if (!wte || !wpe || !fc || em_ndim(wte) != 2 || em_ndim(wpe) != 2 || em_ndim(fc) != 2)
        return em_seterr(EM_ERR_FORMAT, "%s: '%s' is a safetensors file but not a Hugging Face GPT-2 state dict (need "
                         "2-D wte.weight, wpe.weight and h.0.mlp.c_fc.weight; an Ember checkpoint is read by "
                         "em_model_load)", op, path);
    const int64_t V = em_size(wte, 0), C = em_size(wte, 1);
    int n_layer = 0;
    for (;; n_layer++) {
        char name[EMN_NAME_MAX];
        snprintf(name, sizeof name, "h.%d.ln_1.weight", n_layer);
        if (!hf_get(sd, name)) break;
    }
    int64_t n_head = C % 64 == 0 ? C / 64 : 0;
    const char *meta = em_state_dict_meta(sd, "n_head");
    if (meta) {
        char *end;
        long v = strtol(meta, &end, 10);
        if (*end || v < 1 || v > C)
            return em_seterr(EM_ERR_FORMAT, "%s: '%s': metadata n_head = \"%s\" is not an integer in [1, %lld]", op,
                             path, meta, (long long)C);
        n_head = v;
    }
    if (n_head < 1 || C % n_head)
        return em_seterr(EM_ERR_FORMAT, "%s: '%s': n_embd %lld is not a multiple of 64 and the metadata has no "
                         "\"n_head\": the head count cannot be inferred", op, path, (long long)C);
    if (V > (1 << 24) || C > (1 << 20) || em_size(wpe, 0) > (1 << 24) || em_size(wpe, 1) != C ||
        em_size(fc, 0) != C || n_layer < 1)
        return em_seterr(EM_ERR_FORMAT, "%s: '%s': inconsistent GPT-2 shapes: wte (%lld, %lld), wpe (%lld, %lld), "
                         "h.0.mlp.c_fc.weight (%lld, %lld) (Conv1D: (C, H)), %d layers", op, path, (long long)V,
                         (long long)C, (long long)em_size(wpe, 0), (long long)em_size(wpe, 1),
                         (long long)em_size(fc, 0), (long long)em_size(fc, 1), n_layer);
    bool tied = true;
    em_tensor_t *head = hf_get(sd, "lm_head.weight");
    if (head) { /* stored: tied only when it equals wte */
        em_tensor_t *diff = em_ndim(head) == 2 && em_size(head, 0) == V && em_size(head, 1) == C
                                ? em_amax(em_abs(em_sub(em_cast(head, EM_F32), em_cast(wte, EM_F32))), NULL, 0, false)
                                : NULL;
        tied = diff && em_item(diff) == 0;
    }
    *c = (em_model_config){.arch = EM_ARCH_GPT2, .vocab_size = (int)V, .block_size = (int)em_size(wpe, 0),
                           .n_layer = n_layer, .n_head = (int)n_head, .n_kv_head = (int)n_head, .n_embd = (int)C,
                           .ffn_hidden = (int)em_size(fc, 1), .norm_eps = 1e-5, .tie_embeddings = tied,
                           .bias = hf_get(sd, "h.0.ln_1.bias") != NULL, .dtype = EM_F32};
    return EM_OK;
}

static em_model_t *import_safetensors(const char *op, const char *path) {
    em_state_dict_t *sd = NULL;
    if (em_safetensors_load(path, &sd) != EM_OK) return NULL;
    em_model_config c;
    em_scope_t *s = em_scope_begin();
    em_status st = gpt2_config(op, path, sd, &c);
    em_scope_end(s);
    em_model_t *m = st == EM_OK ? emn_model_new(&c, 0, false) : NULL; /* load_dict sets every parameter */
    if (m && load_dict(m, sd, true) != EM_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", em_last_error());
        em_model_free(m);
        m = em_seterr_null(em_last_status(), "%s: '%s': %s", op, path, msg);
    }
    em_state_dict_free(sd);
    return m;
}

em_model_t *emn_model_import(const char *path) {
    const char *op = "emn_model_import";
    if (!path) return em_seterr_null(EM_ERR_ARG, "%s: path is NULL", op);
    file_format fmt;
    if (sniff(op, path, &fmt) != EM_OK) return NULL;
    return fmt == FMT_SAFETENSORS ? import_safetensors(op, path) : import_llama2c(op, path);
}
