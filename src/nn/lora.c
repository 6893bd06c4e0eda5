/* lora.c - LoRA (Hu et al. 2021): low-rank adapters on the linears of a GPT-2 or Llama model,
 * for fine-tuning with only the adapters trained.
 *
 * An adapted linear computes y = x W^T + b + (alpha/r) (drop(x) A^T) B^T, with A (r, in) and
 * B (out, r) new parameters of the model, named after the module ("h.0.attn.c_attn.lora_A",
 * "layers.3.feed_forward.w2.lora_B"). A starts as PEFT's default, Kaiming-uniform with a = sqrt(5),
 * which is U(-1/sqrt(in), 1/sqrt(in)); B starts at 0, so the adapted model computes exactly what
 * the base model did. Adding adapters turns requires_grad off on every base parameter (and drops
 * their gradients), so backward reaches only A and B; em_model_trainable_params lists what still
 * trains, for the optimizer.
 *
 * Adapters live in the model's parameter list after the base parameters (base indices do not
 * move), and in a small table (emn_lora_set) that emn_linear looks the weight up in: every
 * linear of the blocks goes through emn_linear, so the eager forward, em_compile (A and B are
 * tensors the traced function reads, lifted to graph inputs like any parameter) and the KV-cache
 * forward all see the adapters without knowing about them. The table is a linear scan: at most
 * 7 entries per layer, compared by pointer.
 *
 * Merging folds W += (alpha/r) B A (under no-grad) and removes the adapters, restoring the base
 * parameters' requires_grad; emn_lora_export does the same fold into new tensors for a model file
 * (em_model_save writes merged weights and no adapters: "merge on save"), while a training
 * checkpoint keeps the adapters apart with "lora.*" metadata that rebuilds them on resume
 * (emn_lora_state, emn_lora_from_meta; checkpoint.c calls both). em_model_save_lora and
 * em_model_load_lora write and read the adapters alone (safetensors) with the same metadata.
 */
#include "nn.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ---- the linears of a block ----------------------------------------------------------------------- */
typedef struct {
    const char *gpt2, *llama; /* module name inside the block; NULL when the architecture has none */
    size_t w_off;             /* the weight's field in emn_block */
    bool attn;                /* attention (else MLP) */
} lin_desc;

/* in the order of the parameters (gpt.c's make_block) */
static const lin_desc LINEARS[] = {
    {"attn.c_attn", NULL, offsetof(emn_block, qkv_w), true},
    {NULL, "attention.wq", offsetof(emn_block, q_w), true},
    {NULL, "attention.wk", offsetof(emn_block, k_w), true},
    {NULL, "attention.wv", offsetof(emn_block, v_w), true},
    {"attn.c_proj", "attention.wo", offsetof(emn_block, o_w), true},
    {"mlp.c_fc", "feed_forward.w1", offsetof(emn_block, fc_w), false},
    {"mlp.c_proj", "feed_forward.w2", offsetof(emn_block, proj_w), false},
    {NULL, "feed_forward.w3", offsetof(emn_block, gate_w), false},
};
#define NLIN ((int)(sizeof LINEARS / sizeof LINEARS[0]))

typedef struct {
    char name[EMN_NAME_MAX]; /* the module: "h.0.attn.c_attn" */
    em_tensor_t *w;          /* the adapted weight (out, in); borrowed from the model's parameters */
    em_tensor_t *A, *B;      /* (r, in) and (out, r); borrowed from the model's parameters */
} emn_lora;

struct emn_lora_set {
    int rank;
    double alpha, scale, dropout; /* scale = alpha / rank */
    int n;                        /* adapters (0: none) */
    emn_lora *a;                  /* n, in parameter order */
    int n_base;                   /* the parameters before the adapters: params[0 .. n_base) */
    bool *frozen;                 /* n_base: requires_grad was on and em_model_add_lora turned it off */
    em_tensor_t **trainable;      /* em_model_trainable_params' array */
    int cap_trainable;
};

static const char *lin_name(const em_model_t *m, int k) {
    return m->cfg.arch == EM_ARCH_GPT2 ? LINEARS[k].gpt2 : LINEARS[k].llama;
}

static em_tensor_t *lin_weight(const emn_block *b, int k) {
    return *(em_tensor_t *const *)((const char *)b + LINEARS[k].w_off);
}

static void module_name(const em_model_t *m, int l, int k, char *out) {
    snprintf(out, EMN_NAME_MAX, "%s%d.%s", m->cfg.arch == EM_ARCH_GPT2 ? "h." : "layers.", l, lin_name(m, k));
}

/* ---- the forward ------------------------------------------------------------------------------------ */
em_tensor_t *emn_linear(const em_model_t *m, em_tensor_t *x, em_tensor_t *w, em_tensor_t *b) {
    const struct emn_lora_set *ls = m->lora;
    const emn_lora *a = NULL;
    for (int i = 0; ls && i < ls->n && !a; i++)
        if (ls->a[i].w == w) a = &ls->a[i];
    if (!a) return em_linear(x, w, b);                            /* (..., out) */
    em_scope_t *s = em_scope_begin();
    em_tensor_t *xd = ls->dropout > 0 && m->training && em_is_grad_enabled() ? em_dropout(x, ls->dropout, true) : x;
    em_tensor_t *h = em_mul_scalar(em_linear(xd, a->A, NULL), ls->scale);      /* (..., r) */
    em_tensor_t *y = em_add(em_linear(x, w, b), em_linear(h, a->B, NULL));    /* (..., out) */
    if (y) em_keep(y);
    em_scope_end(s);
    return y;
}

/* ---- bookkeeping ------------------------------------------------------------------------------------ */
static struct emn_lora_set *get_set(em_model_t *m) {
    if (!m->lora) m->lora = calloc(1, sizeof *m->lora);
    if (!m->lora) em_seterr(EM_ERR_OOM, "LoRA: out of memory");
    return m->lora;
}

void emn_lora_free(em_model_t *m) {
    if (!m || !m->lora) return;
    free(m->lora->a);
    free(m->lora->frozen);
    free(m->lora->trainable);
    free(m->lora);
    m->lora = NULL;
}

/* drops the adapters from the model (their values are lost; merge first to keep them) and gives the
   base parameters their requires_grad back */
static void remove_adapters(em_model_t *m) {
    struct emn_lora_set *ls = m->lora;
    if (!ls || ls->n == 0) return;
    for (int i = ls->n_base; i < m->n_params; i++) em_release(m->params[i].t);
    m->n_params = ls->n_base;
    for (int i = 0; i < ls->n_base; i++)
        if (ls->frozen[i]) em_set_requires_grad(m->params[i].t, true);
    for (int i = 0; i < m->n_params; i++) m->handles[i] = m->params[i].t;
    free(ls->a);
    free(ls->frozen);
    ls->a = NULL;
    ls->frozen = NULL;
    ls->n = 0;
}

/* does module `name` ("h.3.attn.c_proj") match target token tok: equal, or a suffix after a '.'
   (PEFT's rule: "c_proj" matches attn.c_proj and mlp.c_proj), or the groups attn / mlp / all */
static bool matches(const char *name, bool attn, const char *tok, size_t n) {
    if ((n == 3 && !strncmp(tok, "all", 3)) || (n == 4 && !strncmp(tok, "attn", 4) && attn) ||
        (n == 3 && !strncmp(tok, "mlp", 3) && !attn))
        return true;
    size_t len = strlen(name);
    if (n > len) return false;
    return !strncmp(name + len - n, tok, n) && (n == len || name[len - n - 1] == '.');
}

/* marks sel[l * NLIN + k] for every linear the comma-separated target list names */
static em_status select_targets(const em_model_t *m, const char *targets, bool *sel, const char *op) {
    const char *t = targets && *targets ? targets : "all";
    char name[EMN_NAME_MAX];
    while (*t) {
        while (*t == ',' || *t == ' ') t++;
        size_t n = strcspn(t, ", ");
        if (n == 0) break;
        bool any = false;
        for (int l = 0; l < m->cfg.n_layer; l++)
            for (int k = 0; k < NLIN; k++) {
                if (!lin_name(m, k)) continue;
                module_name(m, l, k, name);
                if (matches(name, LINEARS[k].attn, t, n)) sel[l * NLIN + k] = any = true;
            }
        if (!any)
            return em_seterr(EM_ERR_ARG, "%s: target \"%.*s\" names no linear of this %s model (targets are "
                             "comma-separated module names or their suffixes: %s; \"h.0.mlp.c_fc\" picks one layer; "
                             "\"attn\", \"mlp\" and \"all\" are groups)", op, (int)(n < 64 ? n : 64), t,
                             m->cfg.arch == EM_ARCH_GPT2 ? "GPT-2" : "Llama",
                             m->cfg.arch == EM_ARCH_GPT2 ? "c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj (c_proj is both)"
                                                         : "wq, wk, wv, wo, w1, w2, w3");
        t += n;
    }
    return EM_OK;
}

static em_status check_config(const em_model_t *m, const em_lora_config *cfg, const char *op) {
    if (m->lora && m->lora->n > 0)
        return em_seterr(EM_ERR_STATE, "%s: the model already has %d LoRA adapters (rank %d); merge them "
                         "(em_model_merge_lora) before adding new ones", op, m->lora->n, m->lora->rank);
    if (cfg->rank < 1) return em_seterr(EM_ERR_ARG, "%s: rank must be >= 1, got %d", op, cfg->rank);
    if (!(cfg->alpha >= 0) || !isfinite(cfg->alpha))
        return em_seterr(EM_ERR_ARG, "%s: alpha must be finite and >= 0 (0 means alpha = rank), got %g", op,
                         cfg->alpha);
    if (!(cfg->dropout >= 0 && cfg->dropout < 1))
        return em_seterr(EM_ERR_ARG, "%s: dropout must be in [0, 1), got %g", op, cfg->dropout);
    return EM_OK;
}

static em_status rethrow(em_model_t *m, em_status st);

/* ---- adding, merging -------------------------------------------------------------------------------- */
em_status em_model_add_lora(em_model_t *m, const em_lora_config *cfg) {
    const char *op = "em_model_add_lora";
    if (!m || !cfg) return em_seterr(EM_ERR_ARG, "%s: the model and cfg must not be NULL", op);
    em_status st = check_config(m, cfg, op);
    if (st != EM_OK) return st;
    const int L = m->cfg.n_layer;
    bool *sel = calloc((size_t)L * NLIN, sizeof *sel);
    if (!sel) return em_seterr(EM_ERR_OOM, "%s: out of memory", op);
    st = select_targets(m, cfg->targets, sel, op);
    int n = 0;
    char name[EMN_NAME_MAX];
    for (int i = 0; st == EM_OK && i < L * NLIN; i++) {
        if (!sel[i]) continue;
        em_tensor_t *w = lin_weight(&m->blocks[i / NLIN], i % NLIN);
        int64_t out = em_size(w, 0), in = em_size(w, 1);
        if (cfg->rank > out || cfg->rank > in) {
            module_name(m, i / NLIN, i % NLIN, name);
            st = em_seterr(EM_ERR_ARG, "%s: rank %d is larger than %s (%lld, %lld); the rank must be at most "
                           "min(out, in) of every adapted linear", op, cfg->rank, name, (long long)out, (long long)in);
        }
        n++;
    }
    if (st == EM_OK && n == 0)
        st = em_seterr(EM_ERR_ARG, "%s: targets \"%.64s\" name no linear (give module names, \"attn\", \"mlp\" or "
                       "\"all\")", op, cfg->targets);
    struct emn_lora_set *ls = st == EM_OK ? get_set(m) : NULL;
    if (st == EM_OK && !ls) st = EM_ERR_OOM;
    /* room for 2n more parameters */
    if (st == EM_OK && m->n_params + 2 * n > m->cap_params) {
        int cap = m->n_params + 2 * n;
        emn_param *np = realloc(m->params, sizeof *np * (size_t)cap);
        if (np) m->params = np;
        em_tensor_t **nh = np ? realloc(m->handles, sizeof *nh * (size_t)cap) : NULL;
        if (nh) {
            m->handles = nh;
            m->cap_params = cap;
        } else {
            st = em_seterr(EM_ERR_OOM, "%s: out of memory for %d adapters", op, n);
        }
    }
    if (st == EM_OK) {
        ls->a = calloc((size_t)n, sizeof *ls->a);
        ls->frozen = calloc((size_t)m->n_params, sizeof *ls->frozen);
        if (!ls->a || !ls->frozen) {
            free(ls->a);
            free(ls->frozen);
            ls->a = NULL;
            ls->frozen = NULL;
            st = em_seterr(EM_ERR_OOM, "%s: out of memory for %d adapters", op, n);
        }
    }
    if (st != EM_OK) {
        free(sel);
        return st;
    }
    ls->rank = cfg->rank;
    ls->alpha = cfg->alpha > 0 ? cfg->alpha : cfg->rank;
    ls->scale = ls->alpha / cfg->rank;
    ls->dropout = cfg->dropout;
    ls->n_base = m->n_params;
    /* A ~ U(-1/sqrt(in), 1/sqrt(in)) from Philox(seed), drawn in f32 whatever the dtype (as em_model_new
       does), leaving the global generator where it was; B = 0 */
    uint64_t seed0 = em_rng_seed(), offset0 = em_rng_offset();
    em_manual_seed(cfg->seed);
    const int64_t r = cfg->rank;
    for (int i = 0; st == EM_OK && i < L * NLIN; i++) {
        if (!sel[i]) continue;
        emn_lora *a = &ls->a[ls->n];
        module_name(m, i / NLIN, i % NLIN, a->name);
        a->w = lin_weight(&m->blocks[i / NLIN], i % NLIN);
        const int64_t out = em_size(a->w, 0), in = em_size(a->w, 1);
        snprintf(name, sizeof name, "%.80s.lora_A", a->name);
        a->A = emn_param_new(m, name, (int64_t[]){r, in}, 2, 0, 0);   /* (r, in) */
        snprintf(name, sizeof name, "%.80s.lora_B", a->name);
        a->B = a->A ? emn_param_new(m, name, (int64_t[]){out, r}, 2, 0, 0) : NULL; /* (out, r) */
        if (a->A && a->B) {
            em_scope_t *s = em_scope_begin();
            em_tensor_t *u = em_rand((int64_t[]){r, in}, 2, EM_F32);
            em_no_grad_begin();
            st = em_assign(a->A, em_mul_scalar(em_sub_scalar(em_mul_scalar(u, 2.0), 1.0), 1.0 / sqrt((double)in)));
            em_no_grad_end();
            em_scope_end(s);
        } else {
            st = em_last_status();
        }
        ls->n++;
    }
    em_rng_set_state(seed0, offset0);
    free(sel);
    for (int i = 0; i < m->n_params; i++) m->handles[i] = m->params[i].t;
    if (st != EM_OK) return rethrow(m, st); /* undo: drop what was made (frozen[] is all false yet) */
    for (int i = 0; i < ls->n_base; i++) {
        em_tensor_t *p = m->params[i].t;
        ls->frozen[i] = em_requires_grad(p);
        if (ls->frozen[i]) {
            em_zero_grad(p);
            em_set_requires_grad(p, false);
        }
    }
    return EM_OK;
}

int em_model_num_lora(em_model_t *m) {
    if (!m) {
        em_seterr(EM_ERR_ARG, "em_model_num_lora: the model is NULL");
        return -1;
    }
    return m->lora ? m->lora->n : 0;
}

em_tensor_t *const *em_model_trainable_params(em_model_t *m, int *n) {
    const char *op = "em_model_trainable_params";
    if (n) *n = 0;
    if (!m || !n) return em_seterr_null(EM_ERR_ARG, "%s: the model and n must not be NULL", op);
    struct emn_lora_set *ls = get_set(m);
    if (!ls) return NULL;
    if (ls->cap_trainable < m->n_params) {
        em_tensor_t **t = realloc(ls->trainable, sizeof *t * (size_t)m->n_params);
        if (!t) return em_seterr_null(EM_ERR_OOM, "%s: out of memory", op);
        ls->trainable = t;
        ls->cap_trainable = m->n_params;
    }
    int k = 0;
    for (int i = 0; i < m->n_params; i++)
        if (em_requires_grad(m->params[i].t)) ls->trainable[k++] = m->params[i].t;
    *n = k;
    return ls->trainable;
}

/* W + scale B A for adapter a, a new tensor in the innermost scope (no autograd history) */
static em_tensor_t *merged_weight(const struct emn_lora_set *ls, const emn_lora *a) {
    em_no_grad_begin();
    em_tensor_t *d = em_matmul(em_mul_scalar(a->B, ls->scale), a->A); /* (out, r) @ (r, in) */
    em_tensor_t *w = em_add(a->w, em_cast(d, em_type(a->w)));         /* (out, in) */
    em_no_grad_end();
    return w;
}

em_status em_model_merge_lora(em_model_t *m) {
    const char *op = "em_model_merge_lora";
    if (!m) return em_seterr(EM_ERR_ARG, "%s: the model is NULL", op);
    struct emn_lora_set *ls = m->lora;
    if (!ls || ls->n == 0)
        return em_seterr(EM_ERR_STATE, "%s: the model has no LoRA adapters (em_model_add_lora adds them)", op);
    em_scope_t *s = em_scope_begin();
    em_tensor_t **w = calloc((size_t)ls->n, sizeof *w);
    em_status st = w ? EM_OK : em_seterr(EM_ERR_OOM, "%s: out of memory", op);
    /* compute every merged weight before writing any, so a failure leaves the model as it was */
    for (int i = 0; st == EM_OK && i < ls->n; i++)
        if (!(w[i] = merged_weight(ls, &ls->a[i]))) st = em_last_status();
    em_no_grad_begin();
    for (int i = 0; st == EM_OK && i < ls->n; i++) st = em_assign(ls->a[i].w, w[i]);
    em_no_grad_end();
    free(w);
    em_scope_end(s);
    if (st == EM_OK) remove_adapters(m);
    return st;
}

em_status emn_lora_export(em_model_t *m, em_state_dict_t *sd) {
    const char *op = "em_model_save";
    if (!m || !sd) return em_seterr(EM_ERR_ARG, "%s: the model and the state dict must not be NULL", op);
    const struct emn_lora_set *ls = m->lora && m->lora->n > 0 ? m->lora : NULL;
    int n_base = ls ? ls->n_base : m->n_params;
    em_status st = EM_OK;
    for (int i = 0; st == EM_OK && i < n_base; i++) {
        em_tensor_t *t = m->params[i].t;
        const emn_lora *a = NULL;
        for (int j = 0; ls && j < ls->n && !a; j++)
            if (ls->a[j].w == t) a = &ls->a[j];
        em_scope_t *s = em_scope_begin();
        if (a && !(t = merged_weight(ls, a))) st = em_last_status();
        if (st == EM_OK) st = em_state_dict_set(sd, m->params[i].name, t);
        em_scope_end(s);
    }
    return st;
}

/* ---- metadata: what a file needs to rebuild the adapters ------------------------------------------- */
/* "lora.arch", "lora.rank", "lora.alpha", "lora.dropout" and "lora.targets" (the adapted modules by
   full name, comma-separated: a target list that selects exactly them) */
static em_status write_meta(const em_model_t *m, em_state_dict_t *sd, const char *op) {
    const struct emn_lora_set *ls = m->lora;
    size_t cap = (size_t)ls->n * (EMN_NAME_MAX + 1) + 1, len = 0;
    char *targets = malloc(cap), buf[64];
    if (!targets) return em_seterr(EM_ERR_OOM, "%s: out of memory", op);
    for (int i = 0; i < ls->n; i++)
        len += (size_t)snprintf(targets + len, cap - len, "%s%s", i ? "," : "", ls->a[i].name);
    em_status st = em_state_dict_set_meta(sd, "lora.arch", m->cfg.arch == EM_ARCH_GPT2 ? "gpt2" : "llama");
    snprintf(buf, sizeof buf, "%d", ls->rank);
    if (st == EM_OK) st = em_state_dict_set_meta(sd, "lora.rank", buf);
    snprintf(buf, sizeof buf, "%.17g", ls->alpha);
    if (st == EM_OK) st = em_state_dict_set_meta(sd, "lora.alpha", buf);
    snprintf(buf, sizeof buf, "%.17g", ls->dropout);
    if (st == EM_OK) st = em_state_dict_set_meta(sd, "lora.dropout", buf);
    if (st == EM_OK) st = em_state_dict_set_meta(sd, "lora.targets", targets);
    free(targets);
    return st;
}

/* a metadata number; false + error when absent or malformed */
static bool meta_num(const em_state_dict_t *sd, const char *key, double *v, const char *what) {
    const char *s = em_state_dict_meta(sd, key);
    char *end = NULL;
    *v = s ? strtod(s, &end) : 0;
    if (!s || end == s || *end || !isfinite(*v)) {
        em_seterr(EM_ERR_FORMAT, "%s: no valid \"%s\" in the metadata (got %s%.40s%s)", what, key, s ? "\"" : "",
                  s ? s : "nothing", s ? "\"" : "");
        return false;
    }
    return true;
}

/* the em_lora_config write_meta described (targets borrowed from sd) */
static em_status read_meta(const em_model_t *m, const em_state_dict_t *sd, const char *what, em_lora_config *c) {
    const char *arch = em_state_dict_meta(sd, "lora.arch");
    const char *want = m->cfg.arch == EM_ARCH_GPT2 ? "gpt2" : "llama";
    double rank = 0, alpha = 0, dropout = 0;
    if (!arch || strcmp(arch, want))
        return em_seterr(EM_ERR_ARG, "%s: the adapters are for a %.16s model, not this %s", what,
                         arch ? arch : "(unknown)", want);
    if (!meta_num(sd, "lora.rank", &rank, what) || !meta_num(sd, "lora.alpha", &alpha, what) ||
        !meta_num(sd, "lora.dropout", &dropout, what))
        return em_last_status();
    if (rank != floor(rank) || rank < 1 || rank > 1e9)
        return em_seterr(EM_ERR_FORMAT, "%s: \"lora.rank\" is %g, not a positive integer", what, rank);
    *c = (em_lora_config){.rank = (int)rank, .alpha = alpha, .dropout = dropout,
                          .targets = em_state_dict_meta(sd, "lora.targets")};
    if (!c->targets || !*c->targets)
        return em_seterr(EM_ERR_FORMAT, "%s: \"lora.targets\" lists no adapted module", what);
    return EM_OK;
}

/* the error status and message of a failure, kept across clean-up calls that may overwrite them */
static em_status rethrow(em_model_t *m, em_status st) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", em_last_error());
    remove_adapters(m);
    return em_seterr(st, "%s", msg);
}

/* ---- model files and training checkpoints (checkpoint.c) --------------------------------------------- */
em_status emn_lora_state(em_model_t *m, em_state_dict_t *sd, bool merge) {
    if (merge) return emn_lora_export(m, sd);
    em_status st = EM_OK;
    for (int i = 0; st == EM_OK && i < m->n_params; i++) st = em_state_dict_set(sd, m->params[i].name, m->params[i].t);
    if (st == EM_OK && m->lora && m->lora->n > 0) st = write_meta(m, sd, "em_trainer_save");
    return st;
}

em_status emn_lora_from_meta(em_model_t *m, const em_state_dict_t *sd, const char *what) {
    if (!em_state_dict_meta(sd, "lora.rank")) return EM_OK;
    em_lora_config c;
    em_status st = read_meta(m, sd, what, &c);
    if (st == EM_OK && (st = em_model_add_lora(m, &c)) != EM_OK) em_seterr(st, "%s: %s", what, em_last_error());
    return st;
}

/* ---- adapters alone -------------------------------------------------------------------------------- */
em_status em_model_save_lora(em_model_t *m, const char *path) {
    const char *op = "em_model_save_lora";
    if (!m || !path) return em_seterr(EM_ERR_ARG, "%s: the model and path must not be NULL", op);
    const struct emn_lora_set *ls = m->lora;
    if (!ls || ls->n == 0)
        return em_seterr(EM_ERR_STATE, "%s: the model has no LoRA adapters to save", op);
    em_state_dict_t *sd = em_state_dict_new();
    if (!sd) return em_last_status();
    em_status st = em_state_dict_set_meta(sd, "ember.format", "lora");
    for (int i = ls->n_base; st == EM_OK && i < m->n_params; i++)
        st = em_state_dict_set(sd, m->params[i].name, m->params[i].t);
    if (st == EM_OK) st = write_meta(m, sd, op);
    if (st == EM_OK) st = em_safetensors_save(path, sd);
    em_state_dict_free(sd);
    return st;
}

em_status em_model_load_lora(em_model_t *m, const char *path) {
    const char *op = "em_model_load_lora";
    if (!m || !path) return em_seterr(EM_ERR_ARG, "%s: the model and path must not be NULL", op);
    if (m->lora && m->lora->n > 0)
        return em_seterr(EM_ERR_STATE, "%s: the model already has LoRA adapters; load into a model without "
                         "them (merge or start from the base model)", op);
    em_state_dict_t *sd = NULL;
    em_status st = em_safetensors_load(path, &sd);
    if (st != EM_OK) return st;
    char what[320];
    snprintf(what, sizeof what, "%s: '%.280s'", op, path);
    const char *fmt = em_state_dict_meta(sd, "ember.format");
    em_lora_config c;
    if (!fmt || strcmp(fmt, "lora"))
        st = em_seterr(EM_ERR_FORMAT, "%s is not a LoRA file (its \"ember.format\" is %s%.40s%s; "
                       "em_model_save_lora writes \"lora\")", what, fmt ? "\"" : "", fmt ? fmt : "absent",
                       fmt ? "\"" : "");
    else if ((st = read_meta(m, sd, what, &c)) == EM_OK && (st = em_model_add_lora(m, &c)) != EM_OK)
        em_seterr(st, "%s: %s", what, em_last_error());
    /* the file must hold exactly the adapters its targets made, with their shapes */
    if (st == EM_OK && em_state_dict_count(sd) != 2 * (int64_t)m->lora->n)
        st = rethrow(m, em_seterr(EM_ERR_FORMAT, "%s holds %lld tensors for %d adapted modules (want lora_A and "
                                  "lora_B of each)", what, (long long)em_state_dict_count(sd), m->lora->n));
    if (st == EM_OK) {
        int n = m->n_params - m->lora->n_base;
        const char **names = malloc(sizeof *names * (size_t)n);
        em_tensor_t **ts = malloc(sizeof *ts * (size_t)n);
        em_scope_t *s = em_scope_begin();
        st = names && ts ? EM_OK : em_seterr(EM_ERR_OOM, "%s: out of memory", op);
        for (int i = 0; st == EM_OK && i < n; i++) {
            names[i] = m->params[m->lora->n_base + i].name;
            ts[i] = em_state_dict_contains(sd, names[i]) ? em_state_dict_get(sd, names[i]) : NULL;
            if (!ts[i]) st = em_seterr(EM_ERR_FORMAT, "%s lacks \"%s\"", what, names[i]);
        }
        if (st == EM_OK) st = em_model_load_params(m, names, ts, n, false);
        em_scope_end(s);
        free(names);
        free(ts);
        if (st != EM_OK) st = rethrow(m, st);
    }
    em_state_dict_free(sd);
    return st;
}
