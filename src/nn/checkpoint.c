/* checkpoint.c - Ember's model files and training checkpoints, both safetensors files.
 *
 * A model file holds every parameter under its name (nn/gpt.c's names, weights (out, in)) and the
 * resolved model config in the safetensors "__metadata__", one string per field:
 *   ember.format = "model" | "checkpoint", ember.version = "1", ember.arch = "gpt2" | "llama",
 *   ember.vocab_size, ember.block_size, ember.n_layer, ember.n_head, ember.n_kv_head,
 *   ember.n_embd, ember.ffn_hidden (decimal integers), ember.norm_eps, ember.rope_theta,
 *   ember.dropout (%.17g, so they round-trip), ember.tie_embeddings, ember.bias ("true" |
 *   "false"), ember.dtype ("f32", ...).
 * A training checkpoint (trainer.c writes it) is a model file with format "checkpoint", the
 * optimizer's state tensors under "optimizer.<state name>" and the run's state under
 * "ember.train.*" keys, so em_model_load reads a checkpoint as a model too.
 *
 * Loading trusts nothing: every key must be present and parse completely (integers in range,
 * finite floats, known names), the config must pass em_model_new's checks, the parameters it
 * implies must fit in what the file holds (a hostile header cannot make it allocate more than a
 * small multiple of the file), and the tensors must match the model's parameters one to one by
 * name, shape and dtype. A file that is not an Ember file (no "ember.format") goes to
 * emn_model_import (llama2.c and Hugging Face files, nn/import.c).
 *
 * Writes are atomic (em_safetensors_save: temp file, fsync, rename), so a crash leaves either
 * the old file or the new one.
 */
#include "nn.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define FORMAT_VERSION "1"

/* ---- metadata helpers ------------------------------------------------------------------------ */
em_status emn_meta_set_int(em_state_dict_t *sd, const char *key, int64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    return em_state_dict_set_meta(sd, key, buf);
}

em_status emn_meta_set_double(em_state_dict_t *sd, const char *key, double v) {
    char buf[40];
    snprintf(buf, sizeof buf, "%.17g", v);
    return em_state_dict_set_meta(sd, key, buf);
}

/* the value of key, or NULL with an error naming the file and the key */
static const char *meta_get(const em_state_dict_t *sd, const char *what, const char *key) {
    const char *v = em_state_dict_meta(sd, key);
    if (!v) em_seterr(EM_ERR_FORMAT, "%s: metadata key \"%s\" is missing (the file is damaged or was not written by "
                      "this version of Ember)", what, key);
    return v;
}

em_status emn_meta_get_int(const em_state_dict_t *sd, const char *what, const char *key, int64_t lo, int64_t hi,
                           int64_t *out) {
    const char *v = meta_get(sd, what, key);
    if (!v) return em_last_status();
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!v[0] || *end || errno || x < lo || x > hi)
        return em_seterr(EM_ERR_FORMAT, "%s: metadata \"%s\" = \"%.40s\" is not an integer in [%lld, %lld]", what, key,
                         v, (long long)lo, (long long)hi);
    *out = x;
    return EM_OK;
}

em_status emn_meta_get_u64(const em_state_dict_t *sd, const char *what, const char *key, uint64_t *out) {
    const char *v = meta_get(sd, what, key);
    if (!v) return em_last_status();
    char *end = NULL;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (!v[0] || v[0] == '-' || *end || errno)
        return em_seterr(EM_ERR_FORMAT, "%s: metadata \"%s\" = \"%.40s\" is not an unsigned 64-bit integer", what, key,
                         v);
    *out = x;
    return EM_OK;
}

em_status emn_meta_get_double(const em_state_dict_t *sd, const char *what, const char *key, double lo, double hi,
                              double *out) {
    const char *v = meta_get(sd, what, key);
    if (!v) return em_last_status();
    char *end = NULL;
    errno = 0;
    double x = strtod(v, &end);
    if (!v[0] || *end || !isfinite(x) || x < lo || x > hi)
        return em_seterr(EM_ERR_FORMAT, "%s: metadata \"%s\" = \"%.40s\" is not a number in [%g, %g]", what, key, v, lo,
                         hi);
    *out = x;
    return EM_OK;
}

static em_status meta_get_bool(const em_state_dict_t *sd, const char *what, const char *key, bool *out) {
    const char *v = meta_get(sd, what, key);
    if (!v) return em_last_status();
    if (!strcmp(v, "true")) *out = true;
    else if (!strcmp(v, "false")) *out = false;
    else return em_seterr(EM_ERR_FORMAT, "%s: metadata \"%s\" = \"%.40s\" is not \"true\" or \"false\"", what, key, v);
    return EM_OK;
}

/* ---- the config in metadata ----------------------------------------------------------------- */
em_status emn_config_to_meta(const em_model_config *c, em_state_dict_t *sd) {
    em_status s = em_state_dict_set_meta(sd, "ember.version", FORMAT_VERSION);
    if (!s) s = em_state_dict_set_meta(sd, "ember.arch", c->arch == EM_ARCH_GPT2 ? "gpt2" : "llama");
    if (!s) s = emn_meta_set_int(sd, "ember.vocab_size", c->vocab_size);
    if (!s) s = emn_meta_set_int(sd, "ember.block_size", c->block_size);
    if (!s) s = emn_meta_set_int(sd, "ember.n_layer", c->n_layer);
    if (!s) s = emn_meta_set_int(sd, "ember.n_head", c->n_head);
    if (!s) s = emn_meta_set_int(sd, "ember.n_kv_head", c->n_kv_head);
    if (!s) s = emn_meta_set_int(sd, "ember.n_embd", c->n_embd);
    if (!s) s = emn_meta_set_int(sd, "ember.ffn_hidden", c->ffn_hidden);
    if (!s) s = emn_meta_set_double(sd, "ember.norm_eps", c->norm_eps);
    if (!s) s = emn_meta_set_double(sd, "ember.rope_theta", c->rope_theta);
    if (!s) s = emn_meta_set_double(sd, "ember.dropout", c->dropout);
    if (!s) s = em_state_dict_set_meta(sd, "ember.tie_embeddings", c->tie_embeddings ? "true" : "false");
    if (!s) s = em_state_dict_set_meta(sd, "ember.bias", c->bias ? "true" : "false");
    if (!s) s = em_state_dict_set_meta(sd, "ember.dtype", em_dtype_name(c->dtype));
    return s;
}

em_status emn_config_from_meta(const em_state_dict_t *sd, const char *what, em_model_config *c) {
    memset(c, 0, sizeof *c);
    const char *v = meta_get(sd, what, "ember.version");
    if (!v) return em_last_status();
    if (strcmp(v, FORMAT_VERSION))
        return em_seterr(EM_ERR_FORMAT, "%s: format version \"%.40s\" is not one this Ember reads (\"%s\")", what, v,
                         FORMAT_VERSION);
    if (!(v = meta_get(sd, what, "ember.arch"))) return em_last_status();
    if (!strcmp(v, "gpt2")) c->arch = EM_ARCH_GPT2;
    else if (!strcmp(v, "llama")) c->arch = EM_ARCH_LLAMA;
    else return em_seterr(EM_ERR_FORMAT, "%s: metadata \"ember.arch\" = \"%.40s\" (expected \"gpt2\" or \"llama\")", what, v);
    static const struct { const char *key; size_t off; } ints[] = {
        {"ember.vocab_size", offsetof(em_model_config, vocab_size)},
        {"ember.block_size", offsetof(em_model_config, block_size)},
        {"ember.n_layer", offsetof(em_model_config, n_layer)},
        {"ember.n_head", offsetof(em_model_config, n_head)},
        {"ember.n_kv_head", offsetof(em_model_config, n_kv_head)},
        {"ember.n_embd", offsetof(em_model_config, n_embd)},
        {"ember.ffn_hidden", offsetof(em_model_config, ffn_hidden)},
    };
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        int64_t x;
        em_status s = emn_meta_get_int(sd, what, ints[i].key, 1, 1 << 30, &x);
        if (s) return s;
        *(int *)((char *)c + ints[i].off) = (int)x;
    }
    em_status s = emn_meta_get_double(sd, what, "ember.norm_eps", 1e-30, 1, &c->norm_eps);
    if (!s) s = emn_meta_get_double(sd, what, "ember.rope_theta", 0, 1e30, &c->rope_theta);
    if (!s) s = emn_meta_get_double(sd, what, "ember.dropout", 0, 0.999, &c->dropout);
    if (!s) s = meta_get_bool(sd, what, "ember.tie_embeddings", &c->tie_embeddings);
    if (!s) s = meta_get_bool(sd, what, "ember.bias", &c->bias);
    if (s) return s;
    if (!(v = meta_get(sd, what, "ember.dtype"))) return em_last_status();
    for (int d = 0; d < EM_NUM_DTYPES; d++)
        if (!strcmp(v, em_dtype_name((em_dtype)d)) && em_dtype_is_float((em_dtype)d)) {
            c->dtype = (em_dtype)d;
            return EM_OK;
        }
    return em_seterr(EM_ERR_FORMAT, "%s: metadata \"ember.dtype\" = \"%.40s\" is not a floating dtype (f32, f64, f16, bf16)",
                     what, v);
}

/* The fewest scalars a model of config c has (token embedding, GPT-2's position table, each
   layer's two MLP matrices and its attention output). A model file must hold at least that many,
   so a header claiming a huge model is refused before anything is allocated. */
static double min_scalars(const em_model_config *c) {
    double C = c->n_embd, H = c->ffn_hidden;
    double n = (double)c->vocab_size * C + (c->arch == EM_ARCH_GPT2 ? (double)c->block_size * C : 0);
    return n + (double)c->n_layer * (2 * C * H + C * C);
}

/* ---- model files ------------------------------------------------------------------------------- */
/* the model's parameters (borrowed by the dict, which retains them) and config, format `format` */
em_state_dict_t *emn_model_state_dict(em_model_t *m, const char *format) {
    em_state_dict_t *sd = em_state_dict_new();
    if (!sd) return NULL;
    em_status s = em_state_dict_set_meta(sd, "ember.format", format);
    if (!s) s = emn_config_to_meta(&m->cfg, sd);
    /* a model file holds merged LoRA weights and no adapters; a checkpoint keeps them (lora.c) */
    if (!s) s = emn_lora_state(m, sd, !strcmp(format, "model"));
    if (s) {
        em_state_dict_free(sd);
        return NULL;
    }
    return sd;
}

em_status em_model_save(em_model_t *m, const char *path) {
    if (!m) return em_seterr(EM_ERR_ARG, "em_model_save: the model is NULL");
    if (!path || !path[0]) return em_seterr(EM_ERR_ARG, "em_model_save: path is NULL or empty");
    em_state_dict_t *sd = emn_model_state_dict(m, "model");
    if (!sd) return em_last_status();
    em_status s = em_safetensors_save(path, sd);
    em_state_dict_free(sd);
    return s;
}

em_model_t *emn_model_from_state_dict(const em_state_dict_t *sd, const char *what) {
    const char *fmt = em_state_dict_meta(sd, "ember.format");
    if (!fmt || (strcmp(fmt, "model") && strcmp(fmt, "checkpoint")))
        return em_seterr_null(EM_ERR_FORMAT, "%s: \"ember.format\" is %s%.40s%s (expected \"model\" or \"checkpoint\")",
                              what, fmt ? "\"" : "", fmt ? fmt : "missing", fmt ? "\"" : "");
    em_model_config cfg;
    if (emn_config_from_meta(sd, what, &cfg)) return NULL;
    double held = 0;
    int64_t n = em_state_dict_count(sd);
    em_scope_t *scope = em_scope_begin();
    for (int64_t i = 0; i < n; i++) held += (double)em_numel(em_state_dict_tensor_at(sd, i));
    em_scope_end(scope);
    if (min_scalars(&cfg) > held) {
        em_seterr(EM_ERR_FORMAT, "%s: the config (%d layers, n_embd %d, ffn_hidden %d, vocab %d) needs at least %.0f "
                  "parameters but the file holds %.0f values", what, cfg.n_layer, cfg.n_embd, cfg.ffn_hidden,
                  cfg.vocab_size, min_scalars(&cfg), held);
        return NULL;
    }
    if (cfg.block_size > (1 << 24) || (double)cfg.block_size * cfg.n_embd > 4 * held + 1e6) {
        em_seterr(EM_ERR_FORMAT, "%s: block_size %d is implausible for a file of %.0f values", what, cfg.block_size, held);
        return NULL;
    }
    em_model_t *m = emn_model_new(&cfg, 0, false); /* the strict load below sets every parameter */
    char why[512];
    if (!m) {
        snprintf(why, sizeof why, "%s", em_last_error()); /* em_seterr overwrites the message it formats */
        em_seterr(em_last_status() == EM_ERR_OOM ? EM_ERR_OOM : EM_ERR_FORMAT, "%s: bad model config: %s", what, why);
        return NULL;
    }
    if (emn_lora_from_meta(m, sd, what)) { /* a LoRA run's checkpoint: its adapters, before the strict load */
        em_model_free(m);
        return NULL;
    }
    /* the parameters: every one present with its exact shape and dtype; "optimizer." tensors of a
       checkpoint are skipped, any other name is an error */
    const char **names = malloc(sizeof(char *) * (size_t)(n > 0 ? n : 1));
    em_tensor_t **ts = malloc(sizeof(em_tensor_t *) * (size_t)(n > 0 ? n : 1));
    em_status s = names && ts ? EM_OK : em_seterr(EM_ERR_OOM, "%s: out of memory", what);
    int k = 0;
    scope = em_scope_begin();
    for (int64_t i = 0; !s && i < n; i++) {
        const char *name = em_state_dict_name_at(sd, i);
        if (!strncmp(name, "optimizer.", 10)) continue;
        em_tensor_t *t = em_state_dict_tensor_at(sd, i);
        em_tensor_t *p = em_model_param_by_name(m, name);
        if (!p) {
            s = em_seterr(EM_ERR_FORMAT, "%s: tensor \"%.80s\" is not a parameter of this %s model", what, name,
                          cfg.arch == EM_ARCH_GPT2 ? "GPT-2" : "Llama");
            break;
        }
        char a[EMB_SHAPE_BUF], b[EMB_SHAPE_BUF];
        if (em_type(t) != em_type(p) || em_ndim(t) != em_ndim(p) ||
            memcmp(em_shape(t), em_shape(p), sizeof(int64_t) * (size_t)em_ndim(p)))
            s = em_seterr(EM_ERR_FORMAT, "%s: tensor \"%s\" is %s %s but the config makes it %s %s", what, name,
                          em_dtype_name(em_type(t)), emb_shape_str(a, em_shape(t), em_ndim(t)),
                          em_dtype_name(em_type(p)), emb_shape_str(b, em_shape(p), em_ndim(p)));
        names[k] = name;
        ts[k++] = t;
    }
    if (!s) {
        s = em_model_load_params(m, names, ts, k, true);
        if (s) {
            snprintf(why, sizeof why, "%s", em_last_error());
            em_seterr(EM_ERR_FORMAT, "%s: %s", what, why);
        }
    }
    em_scope_end(scope);
    free(names);
    free(ts);
    if (s) {
        em_model_free(m);
        return NULL;
    }
    return m;
}

em_model_t *em_model_load(const char *path) {
    if (!path || !path[0]) return em_seterr_null(EM_ERR_ARG, "em_model_load: path is NULL or empty");
    /* sniff: a safetensors file whose header names "ember.format" is Ember's (the writer puts the
       metadata first, but the whole header is searched); anything else is an import */
    FILE *f = fopen(path, "rb");
    if (!f) return em_seterr_null(EM_ERR_IO, "em_model_load: cannot open '%s': %s", path, strerror(errno));
    uint64_t hn = 0;
    bool ember = false;
    if (fread(&hn, 1, 8, f) == 8 && hn >= 2 && hn <= 100000000ull) {
        char *h = malloc((size_t)hn + 1);
        if (h && fread(h, 1, (size_t)hn, f) == hn && h[0] == '{') {
            h[hn] = 0;
            ember = memmem(h, (size_t)hn, "\"ember.format\"", 14) != NULL;
        }
        free(h);
    }
    fclose(f);
    if (!ember) return emn_model_import(path);
    em_state_dict_t *sd = NULL;
    if (em_safetensors_load(path, &sd)) return NULL;
    char what[320];
    snprintf(what, sizeof what, "em_model_load: '%.280s'", path);
    em_model_t *m = emn_model_from_state_dict(sd, what);
    em_state_dict_free(sd);
    return m;
}
