/* generate.c - em_generate: batched sampling from a model with a KV cache.
 *
 * One loop drives B rows together (include/ember.h, "generation", has the contract):
 *   prefill   the common prefix of the prompts, (B, min_len), in one eager cached forward at
 *             position 0 (emn_prefill: the lm_head runs on the last position only); its logits
 *             (B, V) choose each row's next token;
 *   decode    per step, one token per row at position pos: a row still inside its prompt is fed
 *             its next prompt token (forced), a row past it samples from the logits and is fed
 *             the sample. Rows that stopped keep being fed a valid token (their last) so the batch
 *             keeps its shape; their logits are ignored.
 * The decode step is emn_decode_step (kv_cache.c) behind em_compile with fullgraph: its inputs
 * are idx (B, 1) and pos (1), both i64 and of fixed shape, so every step after the first is a
 * cache hit of one compiled program; it reads the cache and returns the position's keys and
 * values, which emn_decode_commit writes into the cache after the call (one row per layer). With
 * opts.eager it is em_model_forward_cached at a C position instead. Both fill the same cache, so
 * the eager prefill and the compiled steps share it. Sampling runs on the host in double over the
 * logits (any float dtype: bf16 logits are widened once, (B, V) per step) copied out (em_to_data),
 * with its own Philox stream (emt_philox, keyed by the seed), never the global generator.
 * The cache holds max(lengths) + max_new_tokens - 1 positions: the last token sampled is never
 * fed, so a row needs exactly that many.
 */
#include "nn.h"

#include <math.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* ---- sampling ------------------------------------------------------------------------------------ */
typedef struct {
    double z;    /* logit / temperature, then probability */
    int32_t id;
} cand;

static int by_z_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->z != y->z) return x->z > y->z ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* the uniform in [0, 1) for the i-th sampled token of row b (53 bits of Philox(seed, b 2^32 + i)) */
static double coin(uint64_t seed, int row, int64_t i) {
    uint32_t w[4];
    emt_philox(seed, ((uint64_t)row << 32) + (uint64_t)i, w);
    return ((double)(w[0] >> 5) * 67108864.0 + (double)(w[1] >> 6)) * (1.0 / 9007199254740992.0);
}

static int32_t argmax(const double *z, int64_t V) {
    int64_t best = 0;
    for (int64_t i = 1; i < V; i++)
        if (z[i] > z[best]) best = i;
    return (int32_t)best;
}

/* the rule of include/ember.h on logits z (V); c is scratch for V candidates */
static int32_t sample(const double *z, int64_t V, const em_generate_opts *o, double u, cand *c) {
    if (o->temperature == 0) return argmax(z, V);
    int64_t n = V;
    for (int64_t i = 0; i < V; i++) c[i] = (cand){z[i] / o->temperature, (int32_t)i};
    bool top_p = o->top_p > 0 && o->top_p < 1, filter = top_p || (o->top_k > 0 && o->top_k < V);
    if (filter) {
        qsort(c, (size_t)V, sizeof *c, by_z_desc);
        if (o->top_k > 0 && o->top_k < n) n = o->top_k;
    }
    double zmax = c[0].z, sum = 0;
    for (int64_t i = 1; i < n; i++) zmax = c[i].z > zmax ? c[i].z : zmax;
    for (int64_t i = 0; i < n; i++) sum += c[i].z = exp(c[i].z - zmax);
    if (top_p) { /* the shortest prefix (in sorted order) holding top_p of the mass */
        double acc = 0;
        int64_t keep = n;
        for (int64_t i = 0; i < n; i++) {
            acc += c[i].z / sum;
            if (acc >= o->top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
        sum = 0;
        for (int64_t i = 0; i < n; i++) sum += c[i].z;
    }
    double acc = 0;
    for (int64_t i = 0; i < n; i++) {
        acc += c[i].z / sum;
        if (u < acc) return c[i].id;
    }
    return c[n - 1].id; /* rounding left acc just below u */
}

/* ---- the decode step, compiled ----------------------------------------------------------------- */
typedef struct {
    em_model_t *m;
    em_kv_cache_t *cache;
} step_ctx;

static em_status decode_fn(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    step_ctx *s = ctx;
    (void)n_in;
    (void)n_out;
    out[0] = emn_decode_step(s->m, in[0], in[1], s->cache, &out[1]); /* (B, V), (2, L, B, NKV, 1, HS) */
    return out[0] ? EM_OK : em_last_status();
}

/* ---- argument checks ------------------------------------------------------------------------------ */
static em_status check_args(em_model_t *m, const int32_t *const *prompts, const int64_t *lengths, int B,
                            const em_generate_opts *o, int32_t *out, int64_t *out_lengths, int64_t *max_len) {
    const char *op = "em_generate";
    if (!m || !prompts || !lengths || !o || !out || !out_lengths)
        return em_seterr(EM_ERR_ARG, "%s: the model, prompts, lengths, opts, out and out_lengths must not be NULL",
                         op);
    const em_model_config *c = &m->cfg;
    if (B < 1) return em_seterr(EM_ERR_ARG, "%s: need at least one prompt (B = %d)", op, B);
    if (o->max_new_tokens < 1)
        return em_seterr(EM_ERR_ARG, "%s: max_new_tokens must be >= 1, got %d", op, o->max_new_tokens);
    if (!(o->temperature >= 0) || !isfinite(o->temperature))
        return em_seterr(EM_ERR_ARG, "%s: temperature must be finite and >= 0 (0: greedy), got %g", op, o->temperature);
    if (o->top_k < 0) return em_seterr(EM_ERR_ARG, "%s: top_k must be >= 0 (0: off), got %d", op, o->top_k);
    if (!(o->top_p >= 0 && o->top_p <= 1))
        return em_seterr(EM_ERR_ARG, "%s: top_p must be in [0, 1] (0 or 1: off), got %g", op, o->top_p);
    if (o->stop_at_eos && (o->eos_id < 0 || o->eos_id >= c->vocab_size))
        return em_seterr(EM_ERR_ARG, "%s: eos_id %d is not a token id of the model (vocab_size %d)", op, o->eos_id,
                         c->vocab_size);
    *max_len = 0;
    for (int b = 0; b < B; b++) {
        if (!prompts[b] || lengths[b] < 1)
            return em_seterr(EM_ERR_ARG, "%s: prompt %d is %s (every prompt needs at least one token, e.g. BOS)", op,
                             b, prompts[b] ? "empty" : "NULL");
        for (int64_t i = 0; i < lengths[b]; i++)
            if (prompts[b][i] < 0 || prompts[b][i] >= c->vocab_size)
                return em_seterr(EM_ERR_INDEX, "%s: prompt %d token %lld is %d, outside [0, %d)", op, b, (long long)i,
                                 prompts[b][i], c->vocab_size);
        if (lengths[b] > *max_len) *max_len = lengths[b];
    }
    if (*max_len + o->max_new_tokens - 1 > c->block_size)
        return em_seterr(EM_ERR_ARG, "%s: the longest prompt (%lld tokens) plus %d new tokens needs %lld positions, "
                         "more than the model's block_size %d: shorten the prompt or ask for fewer tokens", op,
                         (long long)*max_len, o->max_new_tokens, (long long)(*max_len + o->max_new_tokens - 1),
                         c->block_size);
    return EM_OK;
}

/* ---- the loop --------------------------------------------------------------------------------------- */
/* the logits of the last position of each row, (B, V) or (B, T, V), into z (B x V doubles) */
static em_status logits_out(em_tensor_t *logits, int B, int64_t V, double *z) {
    if (!logits) return em_last_status();
    if (em_ndim(logits) == 3) logits = em_select(logits, 1, em_size(logits, 1) - 1); /* (B, V) */
    logits = em_contiguous(em_cast(logits, EM_F64));
    return logits ? em_to_data(logits, z, sizeof(double) * (size_t)B * (size_t)V) : em_last_status();
}

em_status em_generate(em_model_t *m, const int32_t *const *prompts, const int64_t *lengths, int B,
                      const em_generate_opts *opts, int32_t *out, int64_t *out_lengths, em_generate_stats *stats) {
    const char *op = "em_generate";
    int64_t max_len = 0;
    em_status st = check_args(m, prompts, lengths, B, opts, out, out_lengths, &max_len);
    if (st != EM_OK) return st;
    const em_generate_opts o = *opts;
    const int64_t V = m->cfg.vocab_size, N = o.max_new_tokens;
    int64_t min_len = max_len;
    for (int b = 0; b < B; b++) min_len = lengths[b] < min_len ? lengths[b] : min_len;
    em_generate_stats sx = {0};
    for (int b = 0; b < B; b++) {
        out_lengths[b] = 0;
        for (int64_t i = 0; i < N; i++) out[b * N + i] = -1;
    }

    double *z = malloc(sizeof(double) * (size_t)B * (size_t)V);
    cand *scratch = malloc(sizeof(cand) * (size_t)V);
    int64_t *ids = malloc(sizeof(int64_t) * (size_t)B * (size_t)(min_len > 1 ? min_len : 1));
    bool *done = calloc((size_t)B, sizeof(bool));
    em_kv_cache_t *cache = NULL;
    em_compiled_t *f = NULL;
    if (!z || !scratch || !ids || !done) st = em_seterr(EM_ERR_OOM, "%s: out of memory for %d rows of %lld logits",
                                                        op, B, (long long)V);
    if (st == EM_OK) cache = em_kv_cache_new(m, B, (int)(max_len + N - 1));
    if (st == EM_OK && !cache) st = em_last_status();
    step_ctx sc = {m, cache}; /* lives until f is freed, at the end */
    if (st == EM_OK && !o.eager) {
        f = em_compile(decode_fn, &sc, &(em_compile_opts){.fullgraph = true});
        if (!f) st = em_last_status();
    }

    /* prefill: the common prefix (B, min_len) */
    if (st == EM_OK) {
        for (int b = 0; b < B; b++)
            for (int64_t t = 0; t < min_len; t++) ids[b * min_len + t] = prompts[b][t];
        double t0 = now_ms();
        em_scope_t *s = em_scope_begin();
        em_tensor_t *idx = em_from_data(ids, (int64_t[]){B, min_len}, 2, EM_I64);
        st = idx ? logits_out(emn_prefill(m, idx, 0, cache), B, V, z) : em_last_status(); /* (B, V) */
        em_scope_end(s);
        sx.prefill_ms = now_ms() - t0;
        sx.prefill_tokens = (int64_t)B * min_len;
    }

    /* decode: z holds the logits of position pos - 1 for every row */
    int64_t pos = min_len;
    double t0 = now_ms();
    while (st == EM_OK) {
        int n_live = 0;
        for (int b = 0; b < B; b++) {
            if (done[b]) continue;
            int32_t next;
            if (pos < lengths[b]) {
                next = prompts[b][pos]; /* still inside its prompt: forced */
            } else {
                int64_t i = out_lengths[b];
                next = sample(z + (int64_t)b * V, V, &o, o.temperature > 0 ? coin(o.seed, b, i) : 0, scratch);
                out[b * N + i] = next;
                out_lengths[b] = i + 1;
                sx.new_tokens++;
                bool go = !o.on_token || o.on_token(o.ctx, b, i, next);
                if (!go || out_lengths[b] == N || (o.stop_at_eos && next == o.eos_id)) done[b] = true;
            }
            ids[b] = next;
            n_live += !done[b];
        }
        if (!n_live) break;
        for (int b = 0; b < B; b++) /* stopped rows are fed their last token: any valid id will do */
            if (done[b]) ids[b] = out[b * N + out_lengths[b] - 1] >= 0 ? out[b * N + out_lengths[b] - 1] : 0;
        em_scope_t *s = em_scope_begin();
        em_tensor_t *idx = em_from_data(ids, (int64_t[]){B, 1}, 2, EM_I64);     /* (B, 1) */
        em_tensor_t *logits = NULL;
        if (!idx) {
            st = em_last_status();
        } else if (f) {
            em_tensor_t *pt = em_from_data(&pos, (int64_t[]){1}, 1, EM_I64);   /* (1) */
            em_tensor_t *res[2] = {NULL, NULL};                                  /* logits, kv_new */
            st = pt ? em_call(f, (em_tensor_t *[]){idx, pt}, 2, res, 2) : em_last_status();
            if (st == EM_OK) st = emn_decode_commit(cache, res[1], pos);
            logits = res[0];
        } else {
            logits = em_model_forward_cached(m, idx, pos, cache);             /* (B, 1, V) */
            st = logits ? EM_OK : em_last_status();
        }
        if (st == EM_OK) st = logits_out(logits, B, V, z);
        em_scope_end(s);
        sx.decode_steps++;
        pos++;
    }
    sx.decode_ms = now_ms() - t0;
    if (f) {
        em_compile_stats cs = em_compiled_stats(f);
        sx.decode_compiles = cs.compiles;
        sx.compile_ms = cs.compile_ms;
    }
    if (stats) *stats = sx;
    em_compiled_free(f);
    em_kv_cache_free(cache);
    free(z);
    free(scratch);
    free(ids);
    free(done);
    return st;
}
