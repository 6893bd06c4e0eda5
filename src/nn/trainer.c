/* trainer.c - the training loop as a library: one optimizer step at a time (compiled by default),
 * validation loss, and checkpoints that resume bit for bit. `ember train` (tools/train.c) is a
 * command-line front end to this file.
 *
 * A step draws `accum` micro-batches of (B, T) tokens at the trainer's data position (data.c:
 * batches are a pure function of the seed and the batch index), runs forward and backward on
 * each with its loss scaled by 1/accum, clips the global gradient norm, sets the learning rate of
 * the cosine schedule and takes an AdamW step (weight decay on 2-D weights only). Compiled, that
 * whole step is one em_compile'd function of (x, y) = ((accum B, T), (accum B, T)) (docs/models.md,
 * "Compiling a training step"); eager, each micro-batch runs in its own scope so its activations
 * are freed before the next.
 *
 * A checkpoint is one safetensors file written atomically (temp file, fsync, rename): the model
 * file's tensors and metadata (checkpoint.c) with "ember.format" = "checkpoint", the optimizer's
 * state tensors as "optimizer.<state name>", and the run's state and settings as "ember.train.*"
 * (step, data position, the optimizer's step count, the global RNG's seed and offset, a hash of
 * the dataset, every field of em_train_config) plus the caller's own keys ("ember.user.*").
 * cfg.precision is the matmul precision of the step and of validation (em_set_matmul_precision):
 * the trainer sets it around each em_trainer_step / em_trainer_eval and puts the caller's setting
 * back after, so a bf16 run leaves the process-wide setting as it found it; checkpoints record it
 * as "ember.train.precision" ("f32" or "bf16"; absent in older files: f32).
 * Resuming builds a fresh model, optimizer and compiled step from it, so training N/2 steps,
 * saving, resuming in a new process and training N/2 more gives the same bits as N straight
 * steps (tested, eager and compiled) -- on the same machine and thread count: reductions split
 * across threads round differently for another count.
 */
#include "nn.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

struct em_trainer {
    em_model_t *m;          /* owned */
    em_optimizer_t *o;      /* owned */
    const em_dataset_t *data; /* borrowed */
    em_train_config cfg;
    int64_t step;           /* optimizer steps taken */
    uint64_t data_pos;      /* index of the next training micro-batch */
    em_compiled_t *train_fn, *eval_fn; /* NULL when eager */
    em_state_dict_t *user;  /* the caller's metadata (keys without the "ember.user." prefix) */
};

void em_train_config_default(em_train_config *c) {
    if (!c) return;
    *c = (em_train_config){.batch = 16, .seq_len = 128, .accum = 1, .max_steps = 1000, .warmup = 100, .lr = 1e-3,
                           .min_lr = 1e-4, .weight_decay = 0.1, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8,
                           .grad_clip = 1.0, .seed = 1337, .eager = false, .precision = EM_F32};
}

static em_status check_config(const em_train_config *c, const em_model_config *mc, const char *op) {
    if (c->batch < 1 || c->seq_len < 1 || c->accum < 1 || c->max_steps < 1 || c->warmup < 0)
        return em_seterr(EM_ERR_ARG, "%s: batch (%d), seq_len (%d), accum (%d) and max_steps (%lld) must be positive "
                         "and warmup (%lld) non-negative", op, c->batch, c->seq_len, c->accum, (long long)c->max_steps,
                         (long long)c->warmup);
    if ((int64_t)c->batch * c->accum * c->seq_len > ((int64_t)1 << 31))
        return em_seterr(EM_ERR_ARG, "%s: batch * accum * seq_len = %lld tokens per step is too many", op,
                         (long long)c->batch * c->accum * c->seq_len);
    if (mc && c->seq_len > mc->block_size)
        return em_seterr(EM_ERR_ARG, "%s: seq_len %d is longer than the model's block_size %d", op, c->seq_len,
                         mc->block_size);
    if (!(c->lr > 0 && c->lr < 10) || !(c->min_lr >= 0 && c->min_lr <= c->lr) || !(c->weight_decay >= 0) ||
        !(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1) || !(c->eps > 0) || !(c->grad_clip >= 0))
        return em_seterr(EM_ERR_ARG, "%s: need 0 < lr < 10 (got %g), 0 <= min_lr <= lr (got %g), weight_decay >= 0 "
                         "(%g), betas in [0, 1) (%g, %g), eps > 0 (%g), grad_clip >= 0 (%g; 0 turns it off)", op, c->lr,
                         c->min_lr, c->weight_decay, c->beta1, c->beta2, c->eps, c->grad_clip);
    if (c->precision != EM_F32 && c->precision != EM_BF16)
        return em_seterr(EM_ERR_ARG, "%s: precision %d is not a matmul precision; use EM_F32 or EM_BF16", op,
                         (int)c->precision);
    return EM_OK;
}

/* ---- the step -------------------------------------------------------------------------------- */
/* forward and backward of micro-batch a of x, y ((accum B, T)), loss scaled by 1/accum */
static em_tensor_t *micro_step(em_trainer_t *t, em_tensor_t *x, em_tensor_t *y, int a, em_status *st) {
    const int B = t->cfg.batch, A = t->cfg.accum;
    em_tensor_t *xa = A == 1 ? x : em_slice(x, 0, (int64_t)a * B, (int64_t)(a + 1) * B, 1);
    em_tensor_t *ya = A == 1 ? y : em_slice(y, 0, (int64_t)a * B, (int64_t)(a + 1) * B, 1);
    em_tensor_t *loss = NULL;
    em_model_forward(t->m, xa, ya, &loss);
    if (!loss) {
        *st = em_last_status();
        return NULL;
    }
    em_tensor_t *scaled = A == 1 ? loss : em_mul_scalar(loss, 1.0 / A);
    *st = scaled ? em_backward(scaled) : em_last_status();
    return *st ? NULL : scaled;
}

/* the whole step as one traceable function: in = {x, y}, out = {loss, grad norm} (the norm only
   when clipping) */
static em_status train_fn(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    em_trainer_t *t = ctx;
    (void)n_in;
    em_status st = EM_OK;
    em_tensor_t *total = NULL;
    for (int a = 0; a < t->cfg.accum && !st; a++) {
        em_tensor_t *l = micro_step(t, in[0], in[1], a, &st);
        if (l) total = total ? em_add(total, em_detach(l)) : em_detach(l);
    }
    int n = 0; /* what trains: every parameter, or only the LoRA adapters (lora.c) */
    em_tensor_t *const *params = em_model_trainable_params(t->m, &n);
    em_tensor_t *norm = NULL;
    if (!st && t->cfg.grad_clip > 0) {
        norm = em_clip_grad_norm_tensor(params, n, t->cfg.grad_clip);
        if (!norm) st = em_last_status();
    }
    if (!st) st = em_optimizer_step(t->o);
    if (!st) st = em_optimizer_zero_grad(t->o);
    out[0] = total;
    if (n_out > 1) out[1] = norm;
    return st;
}

static em_status eval_fn(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    em_trainer_t *t = ctx;
    (void)n_in;
    (void)n_out;
    em_model_forward(t->m, in[0], in[1], &out[0]);
    return out[0] ? EM_OK : em_last_status();
}

static em_status eager_step(em_trainer_t *t, em_tensor_t *x, em_tensor_t *y, double *loss, double *norm) {
    em_status st = EM_OK;
    double total = 0;
    for (int a = 0; a < t->cfg.accum && !st; a++) {
        em_scope_t *s = em_scope_begin();
        em_tensor_t *l = micro_step(t, x, y, a, &st);
        if (l) total += em_item(l);
        em_scope_end(s);
    }
    *loss = total;
    *norm = NAN;
    if (!st && t->cfg.grad_clip > 0) {
        int n = 0;
        em_tensor_t *const *params = em_model_trainable_params(t->m, &n);
        *norm = em_clip_grad_norm(params, n, t->cfg.grad_clip);
        if (*norm < 0) st = em_last_status();
    }
    if (!st) st = em_optimizer_step(t->o);
    if (!st) st = em_optimizer_zero_grad(t->o);
    return st;
}

static em_status step_at(em_trainer_t *t, em_train_stats *stats);

/* the step and validation run under the run's matmul precision; the caller's comes back after */
em_status em_trainer_step(em_trainer_t *t, em_train_stats *stats) {
    if (!t) return em_seterr(EM_ERR_ARG, "em_trainer_step: the trainer is NULL");
    em_dtype was = em_get_matmul_precision();
    em_set_matmul_precision(t->cfg.precision);
    em_status st = step_at(t, stats);
    em_set_matmul_precision(was);
    return st;
}

static em_status step_at(em_trainer_t *t, em_train_stats *stats) {
    const em_train_config *c = &t->cfg;
    double lr = em_lr_cosine(t->step, c->warmup, c->max_steps, c->lr, c->min_lr);
    em_status st = em_optimizer_set_lr(t->o, lr);
    if (st) return st;
    em_scope_t *s = em_scope_begin();
    em_tensor_t *x = NULL, *y = NULL;
    st = em_dataset_batch(t->data, c->seed, t->data_pos, c->batch * c->accum, c->seq_len, &x, &y);
    double loss = NAN, norm = NAN;
    em_model_set_training(t->m, true);
    if (!st && t->train_fn) {
        em_tensor_t *in[2] = {x, y}, *out[2] = {NULL, NULL};
        st = em_call(t->train_fn, in, 2, out, c->grad_clip > 0 ? 2 : 1);
        if (!st) {
            loss = em_item(out[0]);
            if (c->grad_clip > 0) norm = em_item(out[1]);
        }
    } else if (!st) {
        st = eager_step(t, x, y, &loss, &norm);
    }
    em_scope_end(s);
    if (st) return st;
    /* the batch index counts micro-batches of B*accum sequences: one per step */
    t->data_pos++;
    t->step++;
    if (stats) {
        stats->step = t->step;
        stats->loss = loss;
        stats->lr = lr;
        stats->grad_norm = norm;
        stats->tokens = (int64_t)c->batch * c->accum * c->seq_len;
    }
    return EM_OK;
}

double em_trainer_eval(em_trainer_t *t, int max_batches) {
    const char *op = "em_trainer_eval";
    if (!t) return em_seterr(EM_ERR_ARG, "%s: the trainer is NULL", op), NAN;
    const int B = t->cfg.batch, T = t->cfg.seq_len;
    int64_t nb = em_dataset_val_windows(t->data, T) / B; /* whole batches of windows */
    if (nb < 1)
        return em_seterr(EM_ERR_ARG, "%s: the validation split (%lld tokens) holds fewer than one batch of %d windows "
                         "of %d tokens", op, (long long)em_dataset_num_tokens(t->data, true), B, T), NAN;
    int64_t k = max_batches > 0 && max_batches < nb ? max_batches : nb;
    bool was = em_model_is_training(t->m);
    em_dtype prec_was = em_get_matmul_precision();
    em_set_matmul_precision(t->cfg.precision);
    em_model_set_training(t->m, false);
    em_no_grad_begin();
    double sum = 0;
    em_status st = EM_OK;
    for (int64_t j = 0; j < k && !st; j++) {
        em_scope_t *s = em_scope_begin();
        em_tensor_t *x = NULL, *y = NULL, *loss = NULL;
        st = em_dataset_val_batch(t->data, (j * nb / k) * B, B, T, &x, &y); /* evenly spaced batches */
        if (!st && t->eval_fn) {
            em_tensor_t *in[2] = {x, y};
            st = em_call(t->eval_fn, in, 2, &loss, 1);
        } else if (!st) {
            em_model_forward(t->m, x, y, &loss);
            if (!loss) st = em_last_status();
        }
        if (!st) sum += em_item(loss);
        em_scope_end(s);
    }
    em_no_grad_end();
    em_model_set_training(t->m, was);
    em_set_matmul_precision(prec_was);
    return st ? NAN : sum / (double)k;
}

/* ---- construction ------------------------------------------------------------------------------ */
static em_trainer_t *trainer_make(em_model_t *m, const em_dataset_t *data, const em_train_config *cfg, const char *op) {
    if (!m || !data || !cfg) return em_seterr_null(EM_ERR_ARG, "%s: model, data and config must not be NULL", op);
    const em_model_config *mc = em_model_get_config(m);
    if (check_config(cfg, mc, op)) return NULL;
    if (em_dataset_vocab_size(data) > mc->vocab_size)
        return em_seterr_null(EM_ERR_ARG, "%s: the data's vocabulary (%d ids) is larger than the model's (%d)", op,
                              em_dataset_vocab_size(data), mc->vocab_size);
    if (em_dataset_num_tokens(data, false) < (int64_t)cfg->seq_len + 1)
        return em_seterr_null(EM_ERR_ARG, "%s: the training split has %lld tokens, fewer than seq_len + 1 = %d", op,
                              (long long)em_dataset_num_tokens(data, false), cfg->seq_len + 1);
    em_trainer_t *t = calloc(1, sizeof *t);
    if (!t) return em_seterr_null(EM_ERR_OOM, "%s: out of memory", op);
    t->m = m;
    t->data = data;
    t->cfg = *cfg;
    t->user = em_state_dict_new();
    int n = 0; /* every parameter, or only the LoRA adapters when the model has them */
    em_tensor_t *const *params = em_model_trainable_params(m, &n);
    t->o = params ? em_adamw_new(params, n, cfg->lr, cfg->beta1, cfg->beta2, cfg->eps, cfg->weight_decay) : NULL;
    em_status st = t->user && t->o ? EM_OK : em_last_status();
    for (int i = 0; !st && i < n; i++) /* decay only 2-D weights (nanoGPT, llm.c) */
        if (em_ndim(params[i]) < 2) st = em_optimizer_set_weight_decay(t->o, i, 0.0);
    if (!st && !cfg->eager) {
        em_compile_opts opts = {.fullgraph = true};
        t->train_fn = em_compile(train_fn, t, &opts);
        t->eval_fn = t->train_fn ? em_compile(eval_fn, t, &opts) : NULL;
        if (!t->eval_fn) st = em_last_status();
    }
    if (st) {
        t->m = NULL; /* the caller keeps the model on failure */
        em_trainer_free(t);
        return NULL;
    }
    return t;
}

em_trainer_t *em_trainer_new(em_model_t *m, const em_dataset_t *data, const em_train_config *cfg) {
    em_trainer_t *t = trainer_make(m, data, cfg, "em_trainer_new");
    if (t) em_manual_seed(cfg->seed); /* dropout's stream; saved and restored by checkpoints */
    return t;
}

void em_trainer_free(em_trainer_t *t) {
    if (!t) return;
    em_compiled_free(t->train_fn);
    em_compiled_free(t->eval_fn);
    em_optimizer_free(t->o);
    em_model_free(t->m);
    em_state_dict_free(t->user);
    free(t);
}

em_model_t *em_trainer_model(em_trainer_t *t) { return t ? t->m : NULL; }
em_optimizer_t *em_trainer_optimizer(em_trainer_t *t) { return t ? t->o : NULL; }
const em_train_config *em_trainer_config(em_trainer_t *t) { return t ? &t->cfg : NULL; }
int64_t em_trainer_get_step(em_trainer_t *t) { return t ? t->step : -1; }

em_status em_trainer_set_config(em_trainer_t *t, const em_train_config *cfg) {
    const char *op = "em_trainer_set_config";
    if (!t || !cfg) return em_seterr(EM_ERR_ARG, "%s: trainer and config must not be NULL", op);
    const em_train_config *c = &t->cfg;
    if (cfg->batch != c->batch || cfg->seq_len != c->seq_len || cfg->accum != c->accum || cfg->seed != c->seed)
        return em_seterr(EM_ERR_ARG, "%s: batch, seq_len, accum and seed must stay as the run began (%d, %d, %d, %llu; "
                         "got %d, %d, %d, %llu): they decide which batches the data position points at", op, c->batch,
                         c->seq_len, c->accum, (unsigned long long)c->seed, cfg->batch, cfg->seq_len, cfg->accum,
                         (unsigned long long)cfg->seed);
    em_status s = check_config(cfg, em_model_get_config(t->m), op);
    if (s) return s;
    int n = 0;
    em_tensor_t *const *params = em_model_trainable_params(t->m, &n);
    for (int i = 0; i < n && cfg->weight_decay != c->weight_decay; i++)
        if (em_ndim(params[i]) >= 2 && (s = em_optimizer_set_weight_decay(t->o, i, cfg->weight_decay)))
            return s;
    if (cfg->beta1 != c->beta1 || cfg->beta2 != c->beta2 || cfg->eps != c->eps)
        return em_seterr(EM_ERR_ARG, "%s: AdamW's betas and eps cannot change during a run", op);
    if (cfg->grad_clip != c->grad_clip || cfg->eager != c->eager) { /* the compiled step bakes both in */
        em_compiled_free(t->train_fn);
        em_compiled_free(t->eval_fn);
        t->train_fn = t->eval_fn = NULL;
        if (!cfg->eager) {
            em_compile_opts opts = {.fullgraph = true};
            t->train_fn = em_compile(train_fn, t, &opts);
            t->eval_fn = t->train_fn ? em_compile(eval_fn, t, &opts) : NULL;
            if (!t->eval_fn) {
                em_compiled_free(t->train_fn);
                t->train_fn = NULL;
                t->cfg.eager = true;
                return em_last_status();
            }
        }
    }
    t->cfg = *cfg;
    return EM_OK;
}

em_status em_trainer_set_meta(em_trainer_t *t, const char *key, const char *value) {
    if (!t || !key || !key[0] || !value) return em_seterr(EM_ERR_ARG, "em_trainer_set_meta: need a trainer, a key and a value");
    return em_state_dict_set_meta(t->user, key, value);
}

const char *em_trainer_meta(em_trainer_t *t, const char *key) {
    return t && key ? em_state_dict_meta(t->user, key) : NULL;
}

/* ---- checkpoints -------------------------------------------------------------------------------- */
#define TRAIN_INTS(X)                                                                   \
    X(batch, 1, 1 << 24) X(seq_len, 1, 1 << 24) X(accum, 1, 1 << 24) X(max_steps, 1, INT64_MAX / 2) \
    X(warmup, 0, INT64_MAX / 2)
#define TRAIN_DOUBLES(X) X(lr) X(min_lr) X(weight_decay) X(beta1) X(beta2) X(eps) X(grad_clip)

em_status em_trainer_save(em_trainer_t *t, const char *path) {
    const char *op = "em_trainer_save";
    if (!t) return em_seterr(EM_ERR_ARG, "%s: the trainer is NULL", op);
    if (!path || !path[0]) return em_seterr(EM_ERR_ARG, "%s: path is NULL or empty", op);
    em_state_dict_t *sd = emn_model_state_dict(t->m, "checkpoint");
    if (!sd) return em_last_status();
    em_status s = EM_OK;
    char key[EMN_NAME_MAX + 16];
    for (int i = 0; !s && i < em_optimizer_num_state(t->o); i++) {
        const char *name;
        em_tensor_t *st = em_optimizer_state(t->o, i, &name);
        snprintf(key, sizeof key, "optimizer.%s", name);
        s = em_state_dict_set(sd, key, st);
    }
    const em_train_config *c = &t->cfg;
#define SET_INT(f, lo, hi) if (!s) s = emn_meta_set_int(sd, "ember.train." #f, (int64_t)c->f);
#define SET_DBL(f) if (!s) s = emn_meta_set_double(sd, "ember.train." #f, c->f);
    TRAIN_INTS(SET_INT)
    TRAIN_DOUBLES(SET_DBL)
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)c->seed);
    if (!s) s = em_state_dict_set_meta(sd, "ember.train.seed", buf);
    if (!s) s = em_state_dict_set_meta(sd, "ember.train.eager", c->eager ? "true" : "false");
    if (!s) s = em_state_dict_set_meta(sd, "ember.train.precision", em_dtype_name(c->precision));
    if (!s) s = emn_meta_set_int(sd, "ember.train.step", t->step);
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)t->data_pos);
    if (!s) s = em_state_dict_set_meta(sd, "ember.train.data_position", buf);
    if (!s) s = emn_meta_set_int(sd, "ember.train.optimizer_step", em_optimizer_get_step(t->o));
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)em_rng_seed());
    if (!s) s = em_state_dict_set_meta(sd, "ember.train.rng_seed", buf);
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)em_rng_offset());
    if (!s) s = em_state_dict_set_meta(sd, "ember.train.rng_offset", buf);
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)em_dataset_hash(t->data));
    if (!s) s = em_state_dict_set_meta(sd, "ember.train.data_hash", buf);
    for (int64_t i = 0; !s && i < em_state_dict_meta_count(t->user); i++) {
        const char *k = em_state_dict_meta_key_at(t->user, i);
        snprintf(key, sizeof key, "ember.user.%s", k);
        s = em_state_dict_set_meta(sd, key, em_state_dict_meta(t->user, k));
    }
    if (!s) s = em_safetensors_save(path, sd);
    em_state_dict_free(sd);
    return s;
}

/* the training settings and position from a checkpoint's metadata */
static em_status read_train_meta(const em_state_dict_t *sd, const char *what, em_train_config *c, int64_t *step,
                                 uint64_t *pos, int64_t *opt_step, uint64_t *rng_seed, uint64_t *rng_off,
                                 uint64_t *hash) {
    em_status s = EM_OK;
    int64_t v;
#define GET_INT(f, lo, hi) \
    if (!s && !(s = emn_meta_get_int(sd, what, "ember.train." #f, lo, hi, &v))) c->f = v;
#define GET_DBL(f) if (!s) s = emn_meta_get_double(sd, what, "ember.train." #f, 0, 1e30, &c->f);
    TRAIN_INTS(GET_INT)
    TRAIN_DOUBLES(GET_DBL)
    if (!s) s = emn_meta_get_u64(sd, what, "ember.train.seed", &c->seed);
    const char *e = em_state_dict_meta(sd, "ember.train.eager");
    if (!s && (!e || (strcmp(e, "true") && strcmp(e, "false"))))
        s = em_seterr(EM_ERR_FORMAT, "%s: metadata \"ember.train.eager\" is missing or not true/false", what);
    if (!s) c->eager = !strcmp(e, "true");
    const char *pr = em_state_dict_meta(sd, "ember.train.precision"); /* absent before bf16 runs existed */
    if (!s && pr && strcmp(pr, "f32") && strcmp(pr, "bf16"))
        s = em_seterr(EM_ERR_FORMAT, "%s: metadata \"ember.train.precision\" is \"%.40s\", not f32 or bf16", what, pr);
    if (!s) c->precision = pr && !strcmp(pr, "bf16") ? EM_BF16 : EM_F32;
    if (!s) s = emn_meta_get_int(sd, what, "ember.train.step", 0, INT64_MAX / 2, step);
    if (!s) s = emn_meta_get_u64(sd, what, "ember.train.data_position", pos);
    if (!s) s = emn_meta_get_int(sd, what, "ember.train.optimizer_step", 0, INT64_MAX / 2, opt_step);
    if (!s) s = emn_meta_get_u64(sd, what, "ember.train.rng_seed", rng_seed);
    if (!s) s = emn_meta_get_u64(sd, what, "ember.train.rng_offset", rng_off);
    if (!s) s = emn_meta_get_u64(sd, what, "ember.train.data_hash", hash);
    return s;
}

em_trainer_t *em_trainer_resume(const char *path, const em_dataset_t *data) {
    const char *op = "em_trainer_resume";
    if (!path || !data) return em_seterr_null(EM_ERR_ARG, "%s: path and data must not be NULL", op);
    em_state_dict_t *sd = NULL;
    if (em_safetensors_load(path, &sd)) return NULL;
    char what[320];
    snprintf(what, sizeof what, "%s: '%.280s'", op, path);
    em_trainer_t *t = NULL;
    em_model_t *m = NULL;
    em_train_config c;
    int64_t step = 0, opt_step = 0;
    uint64_t pos = 0, rng_seed = 0, rng_off = 0, hash = 0;
    const char *fmt = em_state_dict_meta(sd, "ember.format");
    em_status s = fmt && !strcmp(fmt, "checkpoint") ? EM_OK
                  : em_seterr(EM_ERR_FORMAT, "%s is not a training checkpoint (\"ember.format\" is %s; a model file "
                              "starts a new run with em_trainer_new)", what, fmt ? fmt : "missing");
    if (!s) s = read_train_meta(sd, what, &c, &step, &pos, &opt_step, &rng_seed, &rng_off, &hash);
    if (!s && hash != em_dataset_hash(data))
        s = em_seterr(EM_ERR_ARG, "%s: the checkpoint was trained on other data (dataset hash %llu, this one %llu): "
                      "resume with the same text and tokenizer", what, (unsigned long long)hash,
                      (unsigned long long)em_dataset_hash(data));
    if (!s && !(m = emn_model_from_state_dict(sd, what))) s = em_last_status();
    if (!s && !(t = trainer_make(m, data, &c, op))) s = em_last_status();
    if (!s) m = NULL; /* the trainer owns it */
    char key[EMN_NAME_MAX + 16];
    int n_opt = 0;
    em_scope_t *scope = em_scope_begin();
    for (int i = 0; !s && i < em_optimizer_num_state(t->o); i++) {
        const char *name;
        em_optimizer_state(t->o, i, &name);
        snprintf(key, sizeof key, "optimizer.%s", name);
        em_tensor_t *src = em_state_dict_contains(sd, key) ? em_state_dict_get(sd, key) : NULL;
        if (!src) s = em_seterr(EM_ERR_FORMAT, "%s: optimizer state \"%s\" is missing", what, key);
        else if (em_type(src) != em_type(em_optimizer_state(t->o, i, NULL)))
            s = em_seterr(EM_ERR_FORMAT, "%s: optimizer state \"%s\" is %s, expected %s", what, key,
                          em_dtype_name(em_type(src)), em_dtype_name(em_type(em_optimizer_state(t->o, i, NULL))));
        else if ((s = em_optimizer_set_state(t->o, name, src))) {
            char why[512];
            snprintf(why, sizeof why, "%s", em_last_error()); /* em_seterr overwrites the message it formats */
            em_seterr(s, "%s: %s", what, why);
        }
        n_opt++;
    }
    em_scope_end(scope);
    for (int64_t i = 0; !s && i < em_state_dict_count(sd); i++)
        if (!strncmp(em_state_dict_name_at(sd, i), "optimizer.", 10)) n_opt--;
    if (!s && n_opt != 0)
        s = em_seterr(EM_ERR_FORMAT, "%s: it holds optimizer tensors this AdamW does not have", what);
    if (!s) s = em_optimizer_set_step(t->o, opt_step);
    for (int64_t i = 0; !s && i < em_state_dict_meta_count(sd); i++) {
        const char *k = em_state_dict_meta_key_at(sd, i);
        if (!strncmp(k, "ember.user.", 11)) s = em_state_dict_set_meta(t->user, k + 11, em_state_dict_meta(sd, k));
    }
    em_state_dict_free(sd);
    if (s) {
        em_trainer_free(t);
        em_model_free(m);
        return NULL;
    }
    t->step = step;
    t->data_pos = pos;
    em_rng_set_state(rng_seed, rng_off);
    return t;
}
