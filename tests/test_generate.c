/* test_generate.c - generation: em_generate, the compiled decode step, the importers, and
 * agreement with llama2.c.
 *
 * Oracles: (1) full recomputation: greedy decoding that reruns em_model_forward on the whole
 * sequence for every token; the eager cached loop and the compiled decode step must give the same
 * tokens, for GPT-2 and Llama (grouped-query) tiny models, and their logits must match the full
 * forward at every step (1e-12 in f64); the decode program compiles once for all steps. (2) A
 * plain-C float32 transcription of llama2.c's run.c (rmsnorm, RoPE as run.c computes it, grouped
 * attention, SwiGLU, argmax, its generate loop) run on a random legacy-format checkpoint written
 * here: em_generate greedy and `ember generate --temperature 0` (a subprocess, when the ember
 * binary sits beside the tests as `make test` builds it) must produce its tokens. (3) Sampling:
 * the same seed gives the same tokens (compiled or eager) without moving the global generator,
 * top-k keeps only the k best, and sampled frequencies over many rows match the softmax.
 * (4) Importers: llama2.c and Hugging Face GPT-2 files round-trip every parameter. (5) The prefill
 * em_generate runs (emn_prefill, last position's logits only) equals em_model_forward_cached's last
 * row bit for bit.
 */
#include "harness.h"

#include "nn/nn.h"

#include <libgen.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK_LIVE(start, what) \
    TH_CHECK(em_live_tensors() == (start), "%s: no tensor leaked (%lld live, %lld at start)", what, \
             (long long)em_live_tensors(), (long long)(start))

static char tmpdir[64];

/* ---- helpers ------------------------------------------------------------------------------------- */
static uint64_t rng_state;
static uint64_t next_u64(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double urand(void) { return (double)(next_u64() >> 11) * (1.0 / 9007199254740992.0); }
static float nrand(void) { return (float)(sqrt(-2 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand())); }

static em_model_config preset(const char *name, em_dtype dt) {
    em_model_config c;
    em_model_config_preset(name, &c);
    c.dtype = dt;
    c.dropout = 0;
    return c;
}

/* parameters with spread-out logits: matrices N(0, 1/in), norms 1 + N(0, 0.1^2), biases N(0, 0.1^2) */
static void randomize(em_model_t *m, uint64_t seed) {
    rng_state = seed;
    em_scope_t *s = em_scope_begin();
    for (int i = 0; i < em_model_num_params(m); i++) {
        const char *name;
        em_tensor_t *p = em_model_param(m, i, &name);
        int64_t n = em_numel(p);
        double *d = malloc(sizeof(double) * (size_t)n);
        bool norm = strstr(name, "norm") || strstr(name, "ln_");
        double sd = em_ndim(p) == 2 ? 1.0 / sqrt((double)em_size(p, 1)) : 0.1;
        if (!strcmp(name, "wte.weight") || !strcmp(name, "tok_embeddings.weight") || !strcmp(name, "wpe.weight"))
            sd = 0.5;
        for (int64_t j = 0; j < n; j++) d[j] = (norm ? 1.0 : 0.0) + sd * nrand();
        em_model_set_param(m, name, em_from_data(d, em_shape(p), em_ndim(p), EM_F64));
        free(d);
    }
    em_scope_end(s);
}

static int32_t host_argmax(const double *z, int64_t V) {
    int64_t b = 0;
    for (int64_t i = 1; i < V; i++)
        if (z[i] > z[b]) b = i;
    return (int32_t)b;
}

/* the logits (V) of the last position of seq (n ids) by the full forward */
static void full_logits(em_model_t *m, const int32_t *seq, int64_t n, double *z) {
    em_scope_t *s = em_scope_begin();
    em_no_grad_begin();
    em_tensor_t *idx = em_from_data(seq, (int64_t[]){1, n}, 2, EM_I32);
    em_tensor_t *lg = em_model_forward(m, idx, NULL, NULL);                       /* (1, n, V) */
    em_no_grad_end();
    em_tensor_t *last = em_contiguous(em_cast(em_select(em_select(lg, 0, 0), 0, n - 1), EM_F64)); /* (V) */
    em_to_data(last, z, sizeof(double) * (size_t)em_numel(last));
    em_scope_end(s);
}

/* greedy decoding by full recomputation: N new tokens after prompt (len ids) into out */
static void greedy_full(em_model_t *m, const int32_t *prompt, int64_t len, int N, int32_t *out) {
    int64_t V = em_model_get_config(m)->vocab_size;
    int32_t *seq = malloc(sizeof(int32_t) * (size_t)(len + N));
    double *z = malloc(sizeof(double) * (size_t)V);
    memcpy(seq, prompt, sizeof(int32_t) * (size_t)len);
    for (int i = 0; i < N; i++) {
        full_logits(m, seq, len + i, z);
        seq[len + i] = out[i] = host_argmax(z, V);
    }
    free(seq);
    free(z);
}

static bool same_tokens(const int32_t *a, const int32_t *b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (a[i] != b[i]) return false;
    return true;
}

/* ---- compiled decode = eager decode = full recomputation ----------------------------------------- */
static void check_decode(const char *name) {
    char what[128];
    snprintf(what, sizeof what, "%s greedy", name);
    int64_t live = em_live_tensors();
    em_model_config cfg = preset(name, EM_F32);
    em_model_t *m = em_model_new(&cfg, 5);
    randomize(m, 17);
    em_model_set_training(m, false);
    enum { B = 3, N = 10 };
    int64_t lens[B] = {3, 5, 1};
    int32_t p[B][5], *prompts[B] = {p[0], p[1], p[2]};
    rng_state = 99;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < 5; t++) p[b][t] = (int32_t)(next_u64() % (uint64_t)cfg.vocab_size);
    int32_t comp[B * N], eager[B * N], ref[N], single[N];
    int64_t lc[B], le[B], l1;
    em_generate_stats sc, se;
    em_generate_opts o = {.max_new_tokens = N};
    TH_CHECK(em_generate(m, (const int32_t *const *)prompts, lens, B, &o, comp, lc, &sc) == EM_OK,
             "%s: compiled generate runs (%s)", what, em_last_error());
    o.eager = true;
    TH_CHECK(em_generate(m, (const int32_t *const *)prompts, lens, B, &o, eager, le, &se) == EM_OK,
             "%s: eager generate runs (%s)", what, em_last_error());
    TH_CHECK(sc.decode_compiles == 1 && sc.decode_steps == 5 + N - 1 - 1,
             "%s: the decode program compiled once for %lld steps (compiles %d)", what, (long long)sc.decode_steps,
             sc.decode_compiles);
    TH_CHECK(se.decode_compiles == 0 && se.new_tokens == B * N, "%s: the eager run compiled nothing", what);
    for (int b = 0; b < B; b++) {
        greedy_full(m, p[b], lens[b], N, ref);
        TH_CHECK(lc[b] == N && le[b] == N, "%s row %d: %d tokens", what, b, N);
        TH_CHECK(same_tokens(comp + b * N, ref, N), "%s row %d (prompt %lld): compiled decode = full recomputation",
                 what, b, (long long)lens[b]);
        TH_CHECK(same_tokens(eager + b * N, ref, N), "%s row %d: eager decode = full recomputation", what, b);
        o.eager = false;
        TH_CHECK(em_generate(m, (const int32_t *const *)&prompts[b], &lens[b], 1, &o, single, &l1, NULL) == EM_OK &&
                 same_tokens(single, ref, N), "%s row %d: alone it gets the same tokens as in the batch", what, b);
    }
    em_model_free(m);
    CHECK_LIVE(live, what);
}

/* the decode step's logits against the full forward, step by step, compiled and eager */
typedef struct {
    em_model_t *m;
    em_kv_cache_t *kv;
} step_ctx;
static em_status step_fn(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    step_ctx *s = ctx;
    (void)n_in;
    (void)n_out;
    out[0] = emn_decode_step(s->m, in[0], in[1], s->kv, &out[1]); /* logits, kv_new */
    return out[0] ? EM_OK : em_last_status();
}

static double max_rel(em_tensor_t *a, em_tensor_t *b) {
    em_scope_t *s = em_scope_begin();
    double d = em_item(em_amax(em_abs(em_sub(em_cast(a, EM_F64), em_cast(b, EM_F64))), NULL, 0, false));
    double sc = em_item(em_amax(em_abs(em_cast(b, EM_F64)), NULL, 0, false));
    em_scope_end(s);
    return d / (1 + sc);
}

static void check_step(const char *name, em_dtype dt, double tol) {
    char what[128];
    snprintf(what, sizeof what, "%s %s decode step", name, em_dtype_name(dt));
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    em_model_config cfg = preset(name, dt);
    em_model_t *m = em_model_new(&cfg, 6);
    randomize(m, 23);
    const int B = 2, T = 12, P = 4;
    int32_t ids[2 * 12];
    rng_state = 5;
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)(next_u64() % (uint64_t)cfg.vocab_size);
    em_tensor_t *idx = em_from_data(ids, (int64_t[]){B, T}, 2, EM_I32);
    em_no_grad_begin();
    em_tensor_t *full = em_model_forward(m, idx, NULL, NULL); /* (B, T, V) */
    em_no_grad_end();
    em_kv_cache_t *ka = em_kv_cache_new(m, B, T), *kb = em_kv_cache_new(m, B, T), *kc = em_kv_cache_new(m, B, T);
    em_tensor_t *pre = em_contiguous(em_slice(idx, 1, 0, P, 1));
    em_model_forward_cached(m, pre, 0, ka);
    em_model_forward_cached(m, pre, 0, kb);
    em_model_forward_cached(m, pre, 0, kc);
    step_ctx ctx = {m, kb};
    step_ctx ctx_eager = {m, kc};
    em_compiled_t *f = em_compile(step_fn, &ctx, &(em_compile_opts){.fullgraph = true});
    double wa = 0, wb = 0, wc = 0;
    bool ok = true;
    for (int64_t pos = P; pos < T; pos++) {
        em_scope_t *ls = em_scope_begin();
        em_tensor_t *tok = em_contiguous(em_cast(em_slice(idx, 1, pos, pos + 1, 1), EM_I64)); /* (B, 1) */
        em_tensor_t *pt = em_from_data(&pos, (int64_t[]){1}, 1, EM_I64);
        em_tensor_t *want = em_select(em_slice(full, 1, pos, pos + 1, 1), 1, 0); /* (B, V) */
        em_tensor_t *la = em_model_forward_cached(m, tok, pos, ka), *rb[2] = {NULL, NULL}, *rc[2] = {NULL, NULL};
        ok = ok && em_call(f, (em_tensor_t *[]){tok, pt}, 2, rb, 2) == EM_OK && emn_decode_commit(kb, rb[1], pos) == EM_OK;
        ok = ok && step_fn(&ctx_eager, (em_tensor_t *[]){tok, pt}, 2, rc, 2) == EM_OK &&
             emn_decode_commit(kc, rc[1], pos) == EM_OK;
        em_tensor_t *lb = rb[0], *lc = rc[0];
        ok = ok && la && lb && lc;
        if (ok) {
            wa = fmax(wa, max_rel(em_select(la, 1, 0), want));
            wb = fmax(wb, max_rel(lb, want));
            wc = fmax(wc, max_rel(lc, want));
        }
        em_scope_end(ls);
    }
    TH_CHECK(ok, "%s: every step ran (%s)", what, em_last_error());
    TH_CHECK(wa <= tol && wb <= tol && wc <= tol, "%s: logits equal the full forward at every position: eager cached "
             "%g, compiled tensor-position step %g, the same step eagerly %g", what, wa, wb, wc);
    em_compile_stats st = em_compiled_stats(f);
    TH_CHECK(st.compiles == 1 && st.cache_hits == T - P - 1 && st.eager_calls == 0 && st.graph_breaks == 0,
             "%s: one compile for %d steps (compiles %d, hits %d, eager %d)", what, T - P, st.compiles, st.cache_hits,
             st.eager_calls);
    double wk = 0;
    for (int l = 0; l < cfg.n_layer; l++) { /* the functionalized writes landed in the cache */
        wk = fmax(wk, max_rel(kb->k[l], ka->k[l]));
        wk = fmax(wk, max_rel(kb->v[l], ka->v[l]));
        wk = fmax(wk, max_rel(kc->k[l], ka->k[l]));
        wk = fmax(wk, max_rel(kc->v[l], ka->v[l]));
    }
    TH_CHECK(wk <= tol, "%s: the cache the compiled steps filled (emn_decode_commit) equals the eager cache (%g)",
             what, wk);
    em_compiled_free(f);
    em_kv_cache_free(ka);
    em_kv_cache_free(kb);
    em_kv_cache_free(kc);
    em_model_free(m);
    em_scope_end(s);
    CHECK_LIVE(live, what);
}

/* emn_prefill (em_generate's prefill: the lm_head on the last position only) equals the last row of
   em_model_forward_cached bit for bit (the GEMM gives a row the same bits however many rows come
   along) and leaves the same cache; out-of-range arguments are errors */
static void check_prefill(const char *name, em_dtype dt) {
    char what[128];
    snprintf(what, sizeof what, "%s %s prefill", name, em_dtype_name(dt));
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    em_model_config cfg = preset(name, dt);
    em_model_t *m = em_model_new(&cfg, 7);
    randomize(m, 29);
    const int B = 2, T = 9;
    int32_t ids[2 * 9];
    rng_state = 11;
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)(next_u64() % (uint64_t)cfg.vocab_size);
    em_tensor_t *idx = em_from_data(ids, (int64_t[]){B, T}, 2, EM_I32);
    em_kv_cache_t *ka = em_kv_cache_new(m, B, T + 2), *kb = em_kv_cache_new(m, B, T + 2);
    em_tensor_t *full = em_model_forward_cached(m, idx, 1, ka);              /* (B, T, V) at positions 1.. */
    em_tensor_t *last = emn_prefill(m, idx, 1, kb);                          /* (B, V) */
    bool ok = full && last && em_ndim(last) == 2 && em_size(last, 0) == B && em_size(last, 1) == cfg.vocab_size;
    TH_CHECK(ok, "%s: runs and returns (B, V) logits (%s)", what, ok ? "" : em_last_error());
    if (ok) {
        size_t n = (size_t)B * (size_t)cfg.vocab_size * em_dtype_size(dt);
        char *a = malloc(n), *b = malloc(n);
        ok = em_to_data(em_contiguous(em_select(full, 1, T - 1)), a, n) == EM_OK && em_to_data(last, b, n) == EM_OK;
        TH_CHECK(ok && !memcmp(a, b, n), "%s: logits equal em_model_forward_cached's last position bit for bit", what);
        free(a);
        free(b);
        double wk = 0;
        for (int l = 0; l < cfg.n_layer; l++) wk = fmax(wk, fmax(max_rel(kb->k[l], ka->k[l]), max_rel(kb->v[l], ka->v[l])));
        TH_CHECK(wk == 0, "%s: the cache equals em_model_forward_cached's (%g)", what, wk);
    }
    TH_CHECK(!emn_prefill(m, idx, 3, kb) && em_last_status() == EM_ERR_SHAPE,
             "%s: positions past the cache's max_T are EM_ERR_SHAPE", what);
    TH_CHECK(!emn_prefill(m, NULL, 0, kb) && !emn_prefill(NULL, idx, 0, kb), "%s: NULL arguments are errors", what);
    em_kv_cache_free(ka);
    em_kv_cache_free(kb);
    em_model_free(m);
    em_scope_end(s);
    CHECK_LIVE(live, what);
}

/* ---- sampling ------------------------------------------------------------------------------------- */
typedef struct {
    int n, stop_row, stop_at;
    int rows[64];
    int32_t toks[64];
} cb_log;
static bool on_token(void *ctx, int row, int64_t i, int32_t token) {
    cb_log *l = ctx;
    if (l->n < 64) {
        l->rows[l->n] = row;
        l->toks[l->n++] = token;
    }
    return !(row == l->stop_row && i == l->stop_at);
}

static void test_sampling(void) {
    const char *what = "sampling";
    int64_t live = em_live_tensors();
    em_model_config cfg = preset("llama-tiny", EM_F32);
    em_model_t *m = em_model_new(&cfg, 7);
    randomize(m, 29);
    enum { B = 2, N = 12 };
    int32_t p0[] = {3, 9}, p1[] = {1, 4, 4}, *prompts[B] = {p0, p1};
    int64_t lens[B] = {2, 3}, l1[B], l2[B];
    int32_t a[B * N], b[B * N], c[B * N], g[B * N];
    em_generate_opts o = {.max_new_tokens = N, .temperature = 0.9, .top_k = 20, .top_p = 0.95, .seed = 11};
    const int32_t *const *pp = (const int32_t *const *)prompts;
    em_manual_seed(1234);
    em_scope_t *rs = em_scope_begin();
    em_randn((int64_t[]){3}, 1, EM_F32); /* move the global generator off its start */
    em_scope_end(rs);
    uint64_t seed0 = em_rng_seed(), off0 = em_rng_offset();
    TH_CHECK(em_generate(m, pp, lens, B, &o, a, l1, NULL) == EM_OK, "%s: runs (%s)", what, em_last_error());
    TH_CHECK(em_rng_seed() == seed0 && em_rng_offset() == off0, "%s: the global generator did not move", what);
    TH_CHECK(em_generate(m, pp, lens, B, &o, b, l2, NULL) == EM_OK && same_tokens(a, b, B * N),
             "%s: the same seed gives the same tokens", what);
    o.eager = true;
    TH_CHECK(em_generate(m, pp, lens, B, &o, b, l2, NULL) == EM_OK && same_tokens(a, b, B * N),
             "%s: eager and compiled sample the same tokens for a seed", what);
    o.seed = 12;
    TH_CHECK(em_generate(m, pp, lens, B, &o, c, l2, NULL) == EM_OK && !same_tokens(a, c, B * N),
             "%s: another seed gives other tokens", what);
    /* top_k = 1 and a tiny top_p are greedy, whatever the temperature */
    em_generate_opts og = {.max_new_tokens = N};
    em_generate(m, pp, lens, B, &og, g, l2, NULL);
    o = (em_generate_opts){.max_new_tokens = N, .temperature = 1.7, .top_k = 1, .seed = 3};
    TH_CHECK(em_generate(m, pp, lens, B, &o, a, l1, NULL) == EM_OK && same_tokens(a, g, B * N),
             "%s: top_k = 1 is greedy", what);
    o = (em_generate_opts){.max_new_tokens = N, .temperature = 1.7, .top_p = 1e-9, .seed = 3};
    TH_CHECK(em_generate(m, pp, lens, B, &o, a, l1, NULL) == EM_OK && same_tokens(a, g, B * N),
             "%s: top_p near 0 is greedy", what);
    /* top_k = 3: every token is among the 3 best logits given the sequence sampled so far */
    o = (em_generate_opts){.max_new_tokens = N, .temperature = 2.0, .top_k = 3, .seed = 8};
    em_generate(m, pp, lens, B, &o, a, l1, NULL);
    bool in_top = true, varied = false;
    double z[64];
    for (int r = 0; r < B; r++) {
        int32_t seq[16];
        memcpy(seq, prompts[r], sizeof(int32_t) * (size_t)lens[r]);
        for (int i = 0; i < N; i++) {
            full_logits(m, seq, lens[r] + i, z);
            int above = 0;
            for (int v = 0; v < cfg.vocab_size; v++) above += z[v] > z[a[r * N + i]];
            in_top = in_top && above < 3;
            varied = varied || above > 0;
            seq[lens[r] + i] = a[r * N + i];
        }
    }
    TH_CHECK(in_top && varied, "%s: top_k = 3 keeps to the 3 best tokens (and does not always take the best)", what);
    em_model_free(m);
    CHECK_LIVE(live, what);
}

/* many rows with one prompt: the first sampled token's frequencies follow softmax(z / T) */
static void test_distribution(void) {
    const char *what = "sampling distribution";
    int64_t live = em_live_tensors();
    em_model_config cfg = preset("gpt2-tiny", EM_F32);
    em_model_t *m = em_model_new(&cfg, 8);
    randomize(m, 31);
    enum { R = 2000 };
    int32_t prompt[] = {7, 1}, *prompts[R], *out = malloc(sizeof(int32_t) * R);
    int64_t lens[R], ol[R];
    for (int r = 0; r < R; r++) prompts[r] = prompt, lens[r] = 2;
    double z[64], p[64], q[64];
    full_logits(m, prompt, 2, z);
    for (int pass = 0; pass < 2; pass++) {
        double T = pass ? 0.7 : 1.3, top_p = pass ? 0.6 : 0, zmax = -INFINITY, sum = 0;
        for (int v = 0; v < 64; v++) zmax = fmax(zmax, z[v] / T);
        for (int v = 0; v < 64; v++) sum += p[v] = exp(z[v] / T - zmax);
        for (int v = 0; v < 64; v++) p[v] /= sum;
        if (top_p > 0) { /* the nucleus: the most probable tokens until 0.6 of the mass */
            int order[64];
            for (int v = 0; v < 64; v++) order[v] = v;
            for (int i = 0; i < 64; i++)
                for (int j = i + 1; j < 64; j++)
                    if (p[order[j]] > p[order[i]]) {
                        int t = order[i];
                        order[i] = order[j];
                        order[j] = t;
                    }
            double acc = 0, kept = 0;
            bool in[64] = {0};
            for (int i = 0; i < 64 && acc < top_p; i++) acc += p[order[i]], in[order[i]] = true;
            for (int v = 0; v < 64; v++) kept += in[v] ? p[v] : 0;
            for (int v = 0; v < 64; v++) p[v] = in[v] ? p[v] / kept : 0;
        }
        em_generate_opts o = {.max_new_tokens = 1, .temperature = T, .top_p = top_p, .seed = 77};
        TH_CHECK(em_generate(m, (const int32_t *const *)prompts, lens, R, &o, out, ol, NULL) == EM_OK, "%s: runs",
                 what);
        for (int v = 0; v < 64; v++) q[v] = 0;
        for (int r = 0; r < R; r++) q[out[r]] += 1;
        double chi2 = 0;
        int df = -1, outside = 0;
        for (int v = 0; v < 64; v++) {
            if (p[v] == 0) {
                outside += q[v] > 0;
                continue;
            }
            chi2 += (q[v] - R * p[v]) * (q[v] - R * p[v]) / (R * p[v]);
            df++;
        }
        /* chi-square with df degrees of freedom: mean df, sd sqrt(2 df); 6 sd is a false alarm < 1e-6 */
        TH_CHECK(outside == 0 && chi2 < df + 6 * sqrt(2.0 * df) + 10,
                 "%s (T %g, top_p %g): %d rows match the probabilities (chi2 %.1f, df %d, %d outside the nucleus)",
                 what, T, top_p, R, chi2, df, outside);
    }
    free(out);
    em_model_free(m);
    CHECK_LIVE(live, what);
}

static void test_stops(void) {
    const char *what = "stops";
    int64_t live = em_live_tensors();
    em_model_config cfg = preset("gpt2-tiny", EM_F32);
    em_model_t *m = em_model_new(&cfg, 9);
    randomize(m, 37);
    enum { B = 2, N = 8 };
    int32_t p0[] = {5}, p1[] = {6, 2}, *prompts[B] = {p0, p1}, out[B * N], g[B * N];
    int64_t lens[B] = {1, 2}, ol[B];
    const int32_t *const *pp = (const int32_t *const *)prompts;
    em_generate_opts o = {.max_new_tokens = N};
    em_generate(m, pp, lens, B, &o, g, ol, NULL);
    cb_log log = {.stop_row = 0, .stop_at = 2};
    o.on_token = on_token;
    o.ctx = &log;
    TH_CHECK(em_generate(m, pp, lens, B, &o, out, ol, NULL) == EM_OK, "%s: runs", what);
    bool streamed = log.n == 3 + N;
    for (int i = 0, k[2] = {0, 0}; streamed && i < log.n; i++) {
        int r = log.rows[i];
        streamed = log.toks[i] == out[r * N + k[r]++];
    }
    TH_CHECK(ol[0] == 3 && ol[1] == N && out[3] == -1 && out[N - 1] == -1 && same_tokens(out, g, 3) &&
             same_tokens(out + N, g + N, N), "%s: on_token returning false stops only its row (lengths %lld, %lld)",
             what, (long long)ol[0], (long long)ol[1]);
    TH_CHECK(streamed, "%s: on_token saw every token, in order, as out holds them", what);
    int e = 1; /* the first position whose token did not appear before */
    for (; e < N; e++) {
        bool seen = false;
        for (int j = 0; j < e; j++) seen = seen || g[j] == g[e];
        if (!seen) break;
    }
    o = (em_generate_opts){.max_new_tokens = N, .stop_at_eos = true, .eos_id = g[e]};
    em_generate(m, pp, lens, 1, &o, out, ol, NULL);
    TH_CHECK(e == N || (ol[0] == e + 1 && out[e] == g[e]), "%s: a row stops after emitting eos_id (kept)", what);
    em_model_free(m);
    CHECK_LIVE(live, what);
}

static void test_errors(void) {
    const char *what = "errors";
    int64_t live = em_live_tensors();
    em_model_config cfg = preset("gpt2-tiny", EM_F32);
    em_model_t *m = em_model_new(&cfg, 9);
    int32_t p0[20] = {0}, bad[] = {64}, *pp[1] = {p0}, out[32];
    int64_t len = 1, ol[1];
    const int32_t *const *cp = (const int32_t *const *)pp;
    em_generate_opts o = {.max_new_tokens = 4};
    TH_CHECK(em_generate(NULL, cp, &len, 1, &o, out, ol, NULL) == EM_ERR_ARG, "%s: NULL model", what);
    TH_CHECK(em_generate(m, cp, &len, 0, &o, out, ol, NULL) == EM_ERR_ARG, "%s: B = 0", what);
    TH_CHECK_ERR(EM_ERR_ARG, "at least one prompt", "%s: the message says why", what);
    int64_t zero = 0;
    TH_CHECK(em_generate(m, cp, &zero, 1, &o, out, ol, NULL) == EM_ERR_ARG, "%s: an empty prompt", what);
    const int32_t *bp[1] = {bad};
    TH_CHECK(em_generate(m, bp, &len, 1, &o, out, ol, NULL) == EM_ERR_INDEX, "%s: a token past the vocabulary", what);
    TH_CHECK_ERR(EM_ERR_INDEX, "outside [0, 64)", "%s: the message names the range", what);
    int64_t long_len = 14;
    TH_CHECK(em_generate(m, cp, &long_len, 1, &o, out, ol, NULL) == EM_ERR_ARG, "%s: past block_size", what);
    TH_CHECK_ERR(EM_ERR_ARG, "block_size 16", "%s: the message names block_size", what);
    o.temperature = -1;
    TH_CHECK(em_generate(m, cp, &len, 1, &o, out, ol, NULL) == EM_ERR_ARG, "%s: negative temperature", what);
    o = (em_generate_opts){.max_new_tokens = 4, .top_p = 1.5};
    TH_CHECK(em_generate(m, cp, &len, 1, &o, out, ol, NULL) == EM_ERR_ARG, "%s: top_p > 1", what);
    o = (em_generate_opts){.max_new_tokens = 4, .top_k = -2};
    TH_CHECK(em_generate(m, cp, &len, 1, &o, out, ol, NULL) == EM_ERR_ARG, "%s: top_k < 0", what);
    o = (em_generate_opts){.max_new_tokens = 0};
    TH_CHECK(em_generate(m, cp, &len, 1, &o, out, ol, NULL) == EM_ERR_ARG, "%s: no new tokens", what);
    o = (em_generate_opts){.max_new_tokens = 4, .stop_at_eos = true, .eos_id = 99};
    TH_CHECK(em_generate(m, cp, &len, 1, &o, out, ol, NULL) == EM_ERR_ARG, "%s: eos_id past the vocabulary", what);
    em_model_free(m);
    CHECK_LIVE(live, what);
}

/* ---- llama2.c: a legacy checkpoint, run.c's forward in plain float32 ------------------------------ */
typedef struct {
    int dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
} l2_config;
typedef struct {
    float *emb, *rms_att, *wq, *wk, *wv, *wo, *rms_ffn, *w1, *w2, *w3, *rms_final, *wcls;
} l2_weights;

/* writes a random legacy checkpoint (shared: positive vocab_size) and points w into data */
static bool write_llama2c(const char *path, l2_config c, bool shared, float **data, l2_weights *w) {
    int kv = c.dim / c.n_heads * c.n_kv_heads, hs = c.dim / c.n_heads, L = c.n_layers;
    size_t sizes[] = {(size_t)c.vocab_size * c.dim, (size_t)L * c.dim, (size_t)L * c.dim * c.dim,
                      (size_t)L * kv * c.dim, (size_t)L * kv * c.dim, (size_t)L * c.dim * c.dim, (size_t)L * c.dim,
                      (size_t)L * c.hidden_dim * c.dim, (size_t)L * c.dim * c.hidden_dim,
                      (size_t)L * c.hidden_dim * c.dim, (size_t)c.dim, (size_t)c.seq_len * hs,
                      shared ? 0 : (size_t)c.vocab_size * c.dim};
    size_t n = 0;
    for (int i = 0; i < 13; i++) n += sizes[i];
    float *d = malloc(sizeof(float) * n), **ptrs[13] = {&w->emb, &w->rms_att, &w->wq, &w->wk, &w->wv, &w->wo,
                                                        &w->rms_ffn, &w->w1, &w->w2, &w->w3, &w->rms_final, NULL,
                                                        &w->wcls};
    size_t at = 0;
    for (int i = 0; i < 13; i++) {
        bool norm = i == 1 || i == 6 || i == 10;
        double sd = i == 0 || i == 12 ? 0.5 : norm ? 0.1 : i == 8 ? 1.0 / sqrt(c.hidden_dim) : 1.0 / sqrt(c.dim);
        for (size_t j = 0; j < sizes[i]; j++) d[at + j] = (float)((norm ? 1.0 : 0.0) + sd * nrand());
        if (ptrs[i]) *ptrs[i] = d + at;
        at += sizes[i];
    }
    if (shared) w->wcls = w->emb;
    int32_t h[7] = {c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, shared ? c.vocab_size : -c.vocab_size,
                    c.seq_len};
    FILE *f = fopen(path, "wb");
    bool ok = f && fwrite(h, sizeof h, 1, f) == 1 && fwrite(d, sizeof(float), n, f) == n;
    if (f) ok = fclose(f) == 0 && ok;
    *data = d;
    return ok;
}

/* run.c, transcribed: rmsnorm, softmax, matmul and forward as karpathy/llama2.c writes them */
static void l2_rmsnorm(float *o, const float *x, const float *weight, int size) {
    float ss = 0.0f;
    for (int j = 0; j < size; j++) ss += x[j] * x[j];
    ss /= size;
    ss += 1e-5f;
    ss = 1.0f / sqrtf(ss);
    for (int j = 0; j < size; j++) o[j] = weight[j] * (ss * x[j]);
}
static void l2_softmax(float *x, int size) {
    float max_val = x[0];
    for (int i = 1; i < size; i++)
        if (x[i] > max_val) max_val = x[i];
    float sum = 0.0f;
    for (int i = 0; i < size; i++) {
        x[i] = expf(x[i] - max_val);
        sum += x[i];
    }
    for (int i = 0; i < size; i++) x[i] /= sum;
}
static void l2_matmul(float *xout, const float *x, const float *w, int n, int d) { /* W (d,n) @ x (n) */
    for (int i = 0; i < d; i++) {
        float val = 0.0f;
        for (int j = 0; j < n; j++) val += w[i * n + j] * x[j];
        xout[i] = val;
    }
}

typedef struct {
    float *x, *xb, *xb2, *hb, *hb2, *q, *att, *logits, *key_cache, *value_cache;
} l2_state;

static float *l2_forward(const l2_config *p, const l2_weights *w, l2_state *s, int token, int pos) {
    int dim = p->dim, kv_dim = (p->dim * p->n_kv_heads) / p->n_heads, kv_mul = p->n_heads / p->n_kv_heads;
    int hidden_dim = p->hidden_dim, head_size = dim / p->n_heads;
    float *x = s->x;
    memcpy(x, w->emb + token * dim, dim * sizeof(*x));
    for (int l = 0; l < p->n_layers; l++) {
        l2_rmsnorm(s->xb, x, w->rms_att + l * dim, dim);
        int loff = l * p->seq_len * kv_dim;
        float *k = s->key_cache + loff + pos * kv_dim, *v = s->value_cache + loff + pos * kv_dim;
        l2_matmul(s->q, s->xb, w->wq + l * dim * dim, dim, dim);
        l2_matmul(k, s->xb, w->wk + l * dim * kv_dim, dim, kv_dim);
        l2_matmul(v, s->xb, w->wv + l * dim * kv_dim, dim, kv_dim);
        for (int i = 0; i < dim; i += 2) { /* RoPE: relative positional encoding, complex rotation per head */
            int head_dim = i % head_size;
            float freq = 1.0f / powf(10000.0f, head_dim / (float)head_size);
            float val = pos * freq, fcr = cosf(val), fci = sinf(val);
            int rotn = i < kv_dim ? 2 : 1;
            for (int vv = 0; vv < rotn; vv++) {
                float *vec = vv == 0 ? s->q : k;
                float v0 = vec[i], v1 = vec[i + 1];
                vec[i] = v0 * fcr - v1 * fci;
                vec[i + 1] = v0 * fci + v1 * fcr;
            }
        }
        for (int h = 0; h < p->n_heads; h++) {
            float *q = s->q + h * head_size, *att = s->att + h * p->seq_len;
            for (int t = 0; t <= pos; t++) {
                float *kk = s->key_cache + loff + t * kv_dim + (h / kv_mul) * head_size;
                float score = 0.0f;
                for (int i = 0; i < head_size; i++) score += q[i] * kk[i];
                att[t] = score / sqrtf(head_size);
            }
            l2_softmax(att, pos + 1);
            float *xb = s->xb + h * head_size;
            memset(xb, 0, head_size * sizeof(float));
            for (int t = 0; t <= pos; t++) {
                float *vv = s->value_cache + loff + t * kv_dim + (h / kv_mul) * head_size;
                for (int i = 0; i < head_size; i++) xb[i] += att[t] * vv[i];
            }
        }
        l2_matmul(s->xb2, s->xb, w->wo + l * dim * dim, dim, dim);
        for (int i = 0; i < dim; i++) x[i] += s->xb2[i];
        l2_rmsnorm(s->xb, x, w->rms_ffn + l * dim, dim);
        l2_matmul(s->hb, s->xb, w->w1 + l * dim * hidden_dim, dim, hidden_dim);
        l2_matmul(s->hb2, s->xb, w->w3 + l * dim * hidden_dim, dim, hidden_dim);
        for (int i = 0; i < hidden_dim; i++) { /* SwiGLU */
            float val = s->hb[i];
            val *= (1.0f / (1.0f + expf(-val)));
            val *= s->hb2[i];
            s->hb[i] = val;
        }
        l2_matmul(s->xb, s->hb, w->w2 + l * dim * hidden_dim, hidden_dim, dim);
        for (int i = 0; i < dim; i++) x[i] += s->xb[i];
    }
    l2_rmsnorm(x, x, w->rms_final, dim);
    l2_matmul(s->logits, x, w->wcls, p->dim, p->vocab_size);
    return s->logits;
}

static int l2_argmax(const float *probabilities, int n) {
    int max_i = 0;
    float max_p = probabilities[0];
    for (int i = 1; i < n; i++)
        if (probabilities[i] > max_p) {
            max_i = i;
            max_p = probabilities[i];
        }
    return max_i;
}

/* run.c's generate() at temperature 0: the tokens it prints (ids after the BOS), steps positions */
static int l2_generate(const l2_config *p, const l2_weights *w, const int *prompt, int n_prompt, int steps, int *out) {
    int kv_dim = (p->dim * p->n_kv_heads) / p->n_heads;
    l2_state s = {calloc(p->dim, 4), calloc(p->dim, 4), calloc(p->dim, 4), calloc(p->hidden_dim, 4),
                  calloc(p->hidden_dim, 4), calloc(p->dim, 4), calloc((size_t)p->n_heads * p->seq_len, 4),
                  calloc(p->vocab_size, 4), calloc((size_t)p->n_layers * p->seq_len * kv_dim, 4),
                  calloc((size_t)p->n_layers * p->seq_len * kv_dim, 4)};
    int next, token = prompt[0], pos = 0, n = 0;
    while (pos < steps) {
        float *logits = l2_forward(p, w, &s, token, pos);
        if (pos < n_prompt - 1) next = prompt[pos + 1];
        else next = l2_argmax(logits, p->vocab_size);
        pos++;
        if (next == 1) break; /* data-dependent terminating condition: the BOS (=1) token delimits sequences */
        out[n++] = next;
        token = next;
    }
    float **all = (float **)&s;
    for (size_t i = 0; i < sizeof s / sizeof(float *); i++) free(all[i]);
    return n;
}

/* a llama2.c tokenizer.bin for V = 40 tokens: <unk>, BOS, EOS, " ", "a" .. "z", " a" .. " j" */
static bool write_l2_tokenizer(const char *path, int V) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    int32_t maxlen = 8;
    bool ok = V == 40 && fwrite(&maxlen, 4, 1, f) == 1;
    for (int i = 0; i < V && ok; i++) {
        char piece[16];
        if (i == 0) snprintf(piece, sizeof piece, "<unk>");
        else if (i == 1) snprintf(piece, sizeof piece, "\n<s>\n");
        else if (i == 2) snprintf(piece, sizeof piece, "\n</s>\n");
        else if (i == 3) snprintf(piece, sizeof piece, " ");
        else if (i < 30) snprintf(piece, sizeof piece, "%c", 'a' + i - 4);
        else snprintf(piece, sizeof piece, " %c", 'a' + i - 30);
        float score = (float)-i;
        int32_t len = (int32_t)strlen(piece);
        ok = fwrite(&score, 4, 1, f) == 1 && fwrite(&len, 4, 1, f) == 1 && fwrite(piece, 1, (size_t)len, f) == (size_t)len;
    }
    return fclose(f) == 0 && ok;
}

/* the ember binary beside this test ($(BUILD)/tests/test_generate -> $(BUILD)/ember), or NULL */
static const char *ember_binary(void) {
    static char path[4096];
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return NULL;
    self[n] = 0;
    snprintf(path, sizeof path, "%s/../ember", dirname(self));
    return access(path, X_OK) == 0 ? path : NULL;
}

/* runs cmd and returns its stdout (malloc'ed) and exit status */
static char *run_capture(const char *cmd, int *status) {
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    size_t n = 0, cap = 4096;
    char *buf = malloc(cap);
    size_t k;
    while ((k = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += k;
        if (cap - n < 2) buf = realloc(buf, cap *= 2);
    }
    buf[n] = 0;
    int st = pclose(p);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return buf;
}

static void check_llama2c(l2_config c, bool shared, const char *what) {
    int64_t live = em_live_tensors();
    char path[128], tpath[128];
    snprintf(path, sizeof path, "%s/model_%s.bin", tmpdir, shared ? "shared" : "sep");
    snprintf(tpath, sizeof tpath, "%s/tokenizer.bin", tmpdir);
    rng_state = shared ? 41 : 43;
    float *data;
    l2_weights w;
    TH_CHECK(write_llama2c(path, c, shared, &data, &w) && write_l2_tokenizer(tpath, c.vocab_size),
             "%s: fixture written", what);
    em_model_t *m = emn_model_import(path);
    TH_CHECK(m != NULL, "%s: imported (%s)", what, em_last_error());
    if (!m) {
        free(data);
        return;
    }
    const em_model_config *mc = em_model_get_config(m);
    TH_CHECK(mc->arch == EM_ARCH_LLAMA && mc->n_embd == c.dim && mc->ffn_hidden == c.hidden_dim &&
             mc->n_layer == c.n_layers && mc->n_head == c.n_heads && mc->n_kv_head == c.n_kv_heads &&
             mc->vocab_size == c.vocab_size && mc->block_size == c.seq_len && mc->tie_embeddings == shared,
             "%s: the config comes from the header", what);
    /* every parameter holds the values written */
    em_scope_t *s = em_scope_begin();
    int kv = c.dim / c.n_heads * c.n_kv_heads;
    float *got = malloc(sizeof(float) * (size_t)c.hidden_dim * c.dim);
    bool same = true;
    struct { const char *name; const float *src; size_t n; } chk[] = {
        {"tok_embeddings.weight", w.emb, (size_t)c.vocab_size * c.dim},
        {"layers.1.attention.wk.weight", w.wk + (size_t)kv * c.dim, (size_t)kv * c.dim},
        {"layers.0.feed_forward.w2.weight", w.w2, (size_t)c.dim * c.hidden_dim},
        {"layers.1.ffn_norm.weight", w.rms_ffn + c.dim, (size_t)c.dim},
        {"norm.weight", w.rms_final, (size_t)c.dim},
        {shared ? "norm.weight" : "output.weight", shared ? w.rms_final : w.wcls,
         shared ? (size_t)c.dim : (size_t)c.vocab_size * c.dim},
    };
    for (size_t i = 0; i < sizeof chk / sizeof *chk; i++) {
        em_tensor_t *t = em_model_param_by_name(m, chk[i].name);
        same = same && t && (size_t)em_numel(t) == chk[i].n && em_to_data(t, got, 4 * chk[i].n) == EM_OK &&
               !memcmp(got, chk[i].src, 4 * chk[i].n);
    }
    free(got);
    em_scope_end(s);
    TH_CHECK(same, "%s: the parameters hold the file's values", what);

    /* greedy generation: run.c's loop vs em_generate (compiled and eager), no prompt and a prompt */
    const char *texts[2] = {"", "hid bag"};
    em_tokenizer_t *tok = em_tokenizer_load_llama2c(tpath, c.vocab_size);
    TH_CHECK(tok != NULL, "%s: tokenizer (%s)", what, em_last_error());
    for (int k = 0; k < 2 && tok; k++) {
        int32_t *pr = NULL, out[64];
        size_t np = 0;
        if (k == 0) {
            pr = malloc(sizeof *pr);
            pr[0] = 1;
            np = 1;
        } else
            em_tokenizer_encode(tok, texts[k], strlen(texts[k]), true, &pr, &np);
        int steps = c.seq_len, ref[64], prompt_ids[16], n_prompt = (int)np;
        for (int i = 0; i < n_prompt; i++) prompt_ids[i] = pr[i];
        int n_ref = l2_generate(&c, &w, prompt_ids, n_prompt, steps, ref);
        const int32_t *pp[1] = {pr};
        int64_t len = n_prompt, ol;
        for (int eager = 0; eager < 2; eager++) {
            /* run.c prints `steps` tokens: the prompt's after BOS, then new ones */
            em_generate_opts o = {.max_new_tokens = steps - n_prompt + 1, .stop_at_eos = true, .eos_id = 1,
                                  .eager = eager};
            bool ok = em_generate(m, pp, &len, 1, &o, out, &ol, NULL) == EM_OK;
            int64_t n = ol > 0 && out[ol - 1] == 1 ? ol - 1 : ol; /* run.c does not print the BOS it stops at */
            /* run.c prints the prompt tokens after BOS too: compare what follows them */
            int skip = n_prompt - 1;
            bool eq = ok && n == n_ref - skip;
            for (int i = 0; eq && i < n; i++) eq = out[i] == ref[skip + i];
            TH_CHECK(eq, "%s: em_generate (%s, prompt of %d) = llama2.c's greedy tokens (%lld vs %d tokens)", what,
                     eager ? "eager" : "compiled", n_prompt, (long long)n, n_ref - skip);
        }
        free(pr);
        /* the command: `ember generate --temperature 0`, as text */
        const char *ember = ember_binary();
        if (!ember) {
            printf("  (skipped: no ember binary beside the test for %s)\n", what);
            continue;
        }
        char want[4096] = "", cmd[8192];
        int prev = 1;
        for (int i = 0; i < n_ref; i++) {
            size_t len_piece;
            const char *piece = em_tokenizer_decode_one(tok, prev, ref[i], &len_piece);
            strncat(want, piece, len_piece);
            prev = ref[i];
        }
        strcat(want, "\n");
        snprintf(cmd, sizeof cmd, "'%s' generate --checkpoint '%s' --tokenizer '%s' --temperature 0 --steps %d "
                 "--prompt '%s' 2>/dev/null", ember, path, tpath, steps - n_prompt + 1, texts[k]);
        int status = -1;
        char *got_text = run_capture(cmd, &status);
        TH_CHECK(got_text && status == 0 && !strcmp(got_text, want),
                 "%s: `ember generate --temperature 0 --prompt '%s'` prints llama2.c's tokens (exit %d)\n    got  "
                 "\"%s\"\n    want \"%s\"", what, texts[k], status, got_text ? got_text : "", want);
        free(got_text);
    }
    em_tokenizer_free(tok);
    em_model_free(m);
    free(data);
    CHECK_LIVE(live, what);
}

static void test_llama2c(void) {
    check_llama2c((l2_config){48, 128, 2, 6, 2, 40, 32}, true, "llama2.c GQA, shared classifier");
    check_llama2c((l2_config){32, 64, 2, 4, 4, 40, 24}, false, "llama2.c MHA, separate classifier");
}

/* ---- importers: Hugging Face GPT-2, errors ---------------------------------------------------------- */
static bool is_conv1d(const char *n) {
    return strstr(n, "attn.c_attn.weight") || strstr(n, "attn.c_proj.weight") || strstr(n, "mlp.c_fc.weight") ||
           strstr(n, "mlp.c_proj.weight");
}

/* saves m as Hugging Face stores GPT-2 (Conv1D weights (in, out), "transformer." prefixes, a mask
   buffer) with the given n_head metadata (NULL: none) */
static em_status save_hf(em_model_t *m, const char *path, const char *n_head) {
    em_scope_t *s = em_scope_begin();
    em_state_dict_t *sd = em_state_dict_new();
    for (int i = 0; i < em_model_num_params(m); i++) {
        const char *name;
        em_tensor_t *t = em_model_param(m, i, &name);
        char full[160];
        snprintf(full, sizeof full, "%s%s", i % 2 ? "transformer." : "", name);
        em_state_dict_set(sd, full, is_conv1d(name) ? em_contiguous(em_transpose(t, 0, 1)) : t);
    }
    em_state_dict_set(sd, "h.0.attn.bias", em_ones((int64_t[]){1, 1, 4, 4}, 4, EM_F32));
    if (n_head) em_state_dict_set_meta(sd, "n_head", n_head);
    em_status st = em_safetensors_save(path, sd);
    em_state_dict_free(sd);
    em_scope_end(s);
    return st;
}

static void test_import_gpt2(void) {
    const char *what = "import GPT-2";
    int64_t live = em_live_tensors();
    char path[128];
    snprintf(path, sizeof path, "%s/gpt2.safetensors", tmpdir);
    em_scope_t *s = em_scope_begin();
    for (int variant = 0; variant < 2; variant++) {
        em_model_config cfg = preset("gpt2-tiny", EM_F32);
        if (variant) { /* C = 64 and untied: the head count comes from C / 64 */
            cfg.n_embd = 64;
            cfg.n_head = 1;
            cfg.n_kv_head = 1;
            cfg.ffn_hidden = 96;
            cfg.tie_embeddings = false;
        }
        em_model_t *m = em_model_new(&cfg, 12);
        randomize(m, 51 + variant);
        TH_CHECK(save_hf(m, path, variant ? NULL : "2") == EM_OK, "%s: saved (%s)", what, em_last_error());
        em_model_t *m2 = emn_model_import(path);
        TH_CHECK(m2 != NULL, "%s %d: imported (%s)", what, variant, em_last_error());
        if (m2) {
            const em_model_config *c2 = em_model_get_config(m2);
            TH_CHECK(c2->arch == EM_ARCH_GPT2 && c2->n_head == cfg.n_head && c2->n_embd == cfg.n_embd &&
                     c2->ffn_hidden == cfg.ffn_hidden && c2->block_size == cfg.block_size &&
                     c2->n_layer == cfg.n_layer && c2->tie_embeddings == cfg.tie_embeddings && c2->bias,
                     "%s %d: the config is inferred from the shapes (n_head %d)", what, variant, c2->n_head);
            int32_t ids[2 * 9];
            for (int i = 0; i < 18; i++) ids[i] = (i * 7 + 3) % cfg.vocab_size;
            em_tensor_t *idx = em_from_data(ids, (int64_t[]){2, 9}, 2, EM_I32);
            em_no_grad_begin();
            double d = max_rel(em_model_forward(m2, idx, NULL, NULL), em_model_forward(m, idx, NULL, NULL));
            em_no_grad_end();
            TH_CHECK(d == 0, "%s %d: the imported model's logits equal the original's bitwise (%g)", what, variant, d);
        }
        em_model_free(m2);
        if (!variant) { /* C = 32 without the metadata: the head count cannot be inferred */
            save_hf(m, path, NULL);
            TH_CHECK(emn_model_import(path) == NULL, "%s: C = 32 without n_head is refused", what);
            TH_CHECK_ERR(EM_ERR_FORMAT, "cannot be inferred", "%s: the message says why", what);
        }
        em_model_free(m);
    }
    /* a safetensors file that is not GPT-2 */
    em_state_dict_t *sd = em_state_dict_new();
    em_state_dict_set(sd, "foo", em_zeros((int64_t[]){2}, 1, EM_F32));
    em_safetensors_save(path, sd);
    em_state_dict_free(sd);
    TH_CHECK(emn_model_import(path) == NULL, "%s: an unrelated safetensors file is refused", what);
    TH_CHECK_ERR(EM_ERR_FORMAT, "not a Hugging Face GPT-2", "%s: the message says what is missing", what);
    em_scope_end(s);
    CHECK_LIVE(live, what);
}

static void test_import_errors(void) {
    const char *what = "import errors";
    char path[128];
    TH_CHECK(emn_model_import(NULL) == NULL, "%s: NULL path", what);
    snprintf(path, sizeof path, "%s/missing.bin", tmpdir);
    TH_CHECK(emn_model_import(path) == NULL, "%s: a missing file", what);
    TH_CHECK_ERR(EM_ERR_IO, "cannot open", "%s: the message says so", what);
    snprintf(path, sizeof path, "%s/zeros.bin", tmpdir);
    FILE *f = fopen(path, "wb");
    char zeros[64] = {0};
    fwrite(zeros, 1, sizeof zeros, f);
    fclose(f);
    TH_CHECK(emn_model_import(path) == NULL, "%s: a file of zeros", what);
    TH_CHECK_ERR(EM_ERR_FORMAT, "neither a safetensors file", "%s: the message names both formats", what);
    /* a llama2.c checkpoint cut short */
    char full[128];
    snprintf(full, sizeof full, "%s/model_shared.bin", tmpdir);
    FILE *in = fopen(full, "rb");
    f = fopen(path, "wb");
    char buf[1000];
    size_t n = in ? fread(buf, 1, sizeof buf, in) : 0;
    fwrite(buf, 1, n, f);
    fclose(f);
    if (in) fclose(in);
    TH_CHECK(emn_model_import(path) == NULL && em_last_status() == EM_ERR_FORMAT, "%s: a truncated llama2.c file (%s)",
             what, em_last_error());
}

/* ---- bf16 models: em_model_to_dtype and decoding in bf16 ---------------------------------------- */
/* f32 -> bf16 bits, nearest even (NaN kept quiet): an oracle written apart from the library's */
static uint16_t host_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* every parameter of b holds a's parameter rounded to bf16 (b bf16) or widened from it (b f32 after
   a round trip: then a holds the f32 originals and the check is against their bf16 rounding) */
static bool params_are_bf16_of(em_model_t *orig, em_model_t *m) {
    bool ok = em_model_num_params(orig) == em_model_num_params(m);
    for (int i = 0; ok && i < em_model_num_params(m); i++) {
        em_tensor_t *a = em_model_param(orig, i, NULL), *b = em_model_param(m, i, NULL);
        size_t n = (size_t)em_numel(a);
        float *fa = malloc(4 * n);
        uint16_t *hb = malloc(2 * n);
        float *fb = malloc(4 * n);
        ok = em_type(a) == EM_F32 && em_to_data(a, fa, 4 * n) == EM_OK;
        if (ok && em_type(b) == EM_BF16) {
            ok = em_to_data(b, hb, 2 * n) == EM_OK;
            for (size_t j = 0; ok && j < n; j++) ok = hb[j] == host_bf16(fa[j]);
        } else if (ok) {
            ok = em_type(b) == EM_F32 && em_to_data(b, fb, 4 * n) == EM_OK;
            for (size_t j = 0; ok && j < n; j++) {
                uint32_t u = (uint32_t)host_bf16(fa[j]) << 16, v;
                memcpy(&v, &fb[j], 4);
                ok = u == v;
            }
        }
        free(fa);
        free(hb);
        free(fb);
    }
    return ok;
}

static void check_to_dtype(const char *name) {
    char what[128];
    snprintf(what, sizeof what, "%s em_model_to_dtype", name);
    int64_t live = em_live_tensors();
    em_model_config cfg = preset(name, EM_F32);
    em_model_t *orig = em_model_new(&cfg, 31), *m = em_model_new(&cfg, 31);
    randomize(orig, 37);
    randomize(m, 37);
    em_model_set_training(m, false);
    TH_CHECK(em_model_to_dtype(m, EM_BF16) == EM_OK, "%s: f32 -> bf16 (%s)", what, em_last_error());
    TH_CHECK(em_model_get_config(m)->dtype == EM_BF16, "%s: the config says bf16", what);
    TH_CHECK(params_are_bf16_of(orig, m), "%s: every parameter is its f32 value rounded to bf16 (nearest even)", what);
    bool grads = true;
    for (int i = 0; i < em_model_num_params(m); i++) grads = grads && em_requires_grad(em_model_param(m, i, NULL));
    TH_CHECK(grads, "%s: parameters still require grad", what);
    TH_CHECK(m->head == (cfg.tie_embeddings ? m->wte : m->head) && m->wte == em_model_param(m, 0, NULL) &&
             m->blocks[1].o_w == em_model_param_by_name(m, name[0] == 'g' ? "h.1.attn.c_proj.weight"
                                                                            : "layers.1.attention.wo.weight"),
             "%s: the model's pointers follow the new parameters (tied head = wte)", what);
    if (m->rope_cos) {
        em_scope_t *s = em_scope_begin();
        em_tensor_t *cs, *sn;
        em_rope_tables(cfg.block_size, cfg.n_embd / cfg.n_head, cfg.rope_theta, EM_BF16, &cs, &sn);
        TH_CHECK(em_type(m->rope_cos) == EM_BF16 && max_rel(m->rope_cos, cs) == 0 && max_rel(m->rope_sin, sn) == 0,
                 "%s: the RoPE tables are em_model_new's for bf16", what);
        em_scope_end(s);
    }
    /* a model made in bf16 and loaded with the converted parameters computes the same bits */
    em_model_config c16 = preset(name, EM_BF16);
    em_model_t *made = em_model_new(&c16, 3);
    em_model_set_training(made, false);
    em_scope_t *s = em_scope_begin();
    for (int i = 0; i < em_model_num_params(m); i++) {
        const char *pn;
        em_tensor_t *p = em_model_param(m, i, &pn);
        em_model_set_param(made, pn, p);
    }
    int32_t ids[2 * 7];
    for (int i = 0; i < 14; i++) ids[i] = (i * 11 + 5) % cfg.vocab_size;
    em_tensor_t *idx = em_from_data(ids, (int64_t[]){2, 7}, 2, EM_I32);
    em_no_grad_begin();
    em_tensor_t *la = em_model_forward(m, idx, NULL, NULL), *lb = em_model_forward(made, idx, NULL, NULL);
    em_tensor_t *lf = em_model_forward(orig, idx, NULL, NULL);
    em_no_grad_end();
    TH_CHECK(la && lb && em_type(la) == EM_BF16 && max_rel(la, lb) == 0,
             "%s: logits (bf16) equal a bf16-made model's with the same parameters bit for bit", what);
    double d = la ? max_rel(la, lf) : 1;
    TH_CHECK(d < 0.03, "%s: bf16 logits within bf16 tolerance of the f32 model's (%g of 1 + max |z|)", what, d);
    em_scope_end(s);
    em_model_free(made);
    /* back to f32: the bf16 values widened exactly */
    TH_CHECK(em_model_to_dtype(m, EM_F32) == EM_OK && em_model_get_config(m)->dtype == EM_F32,
             "%s: bf16 -> f32 (%s)", what, em_last_error());
    TH_CHECK(params_are_bf16_of(orig, m), "%s: the round trip f32 -> bf16 -> f32 gives each parameter's bf16 "
             "rounding", what);
    em_tensor_t *w0 = em_model_param(m, 0, NULL);
    TH_CHECK(em_model_to_dtype(m, EM_F32) == EM_OK && em_model_param(m, 0, NULL) == w0,
             "%s: the same dtype changes nothing", what);
    em_model_free(orig);
    em_model_free(m);
    CHECK_LIVE(live, what);
}

static void test_to_dtype_errors(void) {
    const char *what = "em_model_to_dtype errors";
    int64_t live = em_live_tensors();
    em_model_config cfg = preset("gpt2-tiny", EM_F32);
    em_model_t *m = em_model_new(&cfg, 8);
    em_tensor_t *w0 = em_model_param(m, 0, NULL);
    TH_CHECK(em_model_to_dtype(NULL, EM_BF16) == EM_ERR_ARG, "%s: a NULL model", what);
    TH_CHECK(em_model_to_dtype(m, EM_I32) == EM_ERR_DTYPE, "%s: an integer dtype", what);
    TH_CHECK_ERR(EM_ERR_DTYPE, "must be floating", "%s: the message says why (%s)", what, em_last_error());
    TH_CHECK_ERR(EM_ERR_DTYPE, "i32", "%s: the message names the dtype", what);
    TH_CHECK(em_model_to_dtype(m, (em_dtype)99) == EM_ERR_DTYPE, "%s: a value that is no dtype", what);
    TH_CHECK(em_model_to_dtype(m, EM_BOOL) == EM_ERR_DTYPE, "%s: bool", what);
    em_lora_config lc = {.rank = 2, .seed = 1};
    TH_CHECK(em_model_add_lora(m, &lc) == EM_OK, "%s: adapters added (%s)", what, em_last_error());
    TH_CHECK(em_model_to_dtype(m, EM_BF16) == EM_ERR_STATE, "%s: a model with LoRA adapters", what);
    TH_CHECK_ERR(EM_ERR_STATE, "merge them first", "%s: the message says what to do", what);
    TH_CHECK(em_model_get_config(m)->dtype == EM_F32 && em_model_param(m, 0, NULL) == w0 && em_type(w0) == EM_F32,
             "%s: a refused conversion leaves the model as it was", what);
    TH_CHECK(em_model_merge_lora(m) == EM_OK && em_model_to_dtype(m, EM_BF16) == EM_OK,
             "%s: after merging, the conversion runs (%s)", what, em_last_error());
    em_model_free(m);
    CHECK_LIVE(live, what);
}

/* a bf16 model's compiled decode step against the same step run eagerly and against the eager cached
   forward, step by step: greedy tokens equal, logits within bf16 tolerance; and em_generate in bf16
   (compiled = eager) follows the f32 model's greedy tokens while the f32 logits have a clear winner */
static void check_bf16_decode(const char *name) {
    char what[128];
    snprintf(what, sizeof what, "%s bf16 decode", name);
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    em_model_config cfg = preset(name, EM_F32);
    em_model_t *m32 = em_model_new(&cfg, 6), *m = em_model_new(&cfg, 6);
    randomize(m32, 23);
    randomize(m, 23);
    em_model_set_training(m32, false);
    em_model_set_training(m, false);
    em_model_to_dtype(m, EM_BF16);
    const int B = 2, T = 12, P = 4;
    const int64_t V = cfg.vocab_size;
    int32_t ids[2 * 12];
    rng_state = 5;
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)(next_u64() % (uint64_t)V);
    em_tensor_t *idx = em_from_data(ids, (int64_t[]){B, T}, 2, EM_I32);
    em_kv_cache_t *ka = em_kv_cache_new(m, B, T), *kb = em_kv_cache_new(m, B, T), *kc = em_kv_cache_new(m, B, T);
    TH_CHECK(ka && em_type(ka->k[0]) == EM_BF16, "%s: the cache is bf16", what);
    em_tensor_t *pre = em_contiguous(em_slice(idx, 1, 0, P, 1));
    em_model_forward_cached(m, pre, 0, ka);
    em_model_forward_cached(m, pre, 0, kb);
    em_model_forward_cached(m, pre, 0, kc);
    step_ctx ctx = {m, kb}, ctx_eager = {m, kc};
    em_compiled_t *f = em_compile(step_fn, &ctx, &(em_compile_opts){.fullgraph = true});
    double wce = 0, wca = 0;
    bool ok = true, same_argmax = true, bf16_out = true;
    for (int64_t pos = P; pos < T; pos++) {
        em_scope_t *ls = em_scope_begin();
        em_tensor_t *tok = em_contiguous(em_cast(em_slice(idx, 1, pos, pos + 1, 1), EM_I64)); /* (B, 1) */
        em_tensor_t *pt = em_from_data(&pos, (int64_t[]){1}, 1, EM_I64);
        em_tensor_t *la = em_model_forward_cached(m, tok, pos, ka), *rb[2] = {NULL, NULL}, *rc[2] = {NULL, NULL};
        ok = ok && em_call(f, (em_tensor_t *[]){tok, pt}, 2, rb, 2) == EM_OK && emn_decode_commit(kb, rb[1], pos) == EM_OK;
        ok = ok && step_fn(&ctx_eager, (em_tensor_t *[]){tok, pt}, 2, rc, 2) == EM_OK &&
             emn_decode_commit(kc, rc[1], pos) == EM_OK;
        em_tensor_t *lb = rb[0], *lc = rc[0];
        ok = ok && la && lb && lc;
        if (ok) {
            la = em_select(la, 1, 0); /* (B, V) */
            bf16_out = bf16_out && em_type(lb) == EM_BF16 && em_type(lc) == EM_BF16;
            wce = fmax(wce, max_rel(lb, lc));
            wca = fmax(wca, max_rel(lb, la));
            em_tensor_t *ab = em_argmax(lb, -1, false), *ac = em_argmax(lc, -1, false);
            for (int b = 0; b < B; b++)
                same_argmax = same_argmax && em_item(em_select(ab, 0, b)) == em_item(em_select(ac, 0, b));
        }
        em_scope_end(ls);
    }
    TH_CHECK(ok, "%s: every step ran (%s)", what, em_last_error());
    TH_CHECK(bf16_out, "%s: the logits are bf16", what);
    TH_CHECK(same_argmax && wce == 0, "%s: compiled step = the same step eagerly, bit for bit (greedy tokens "
             "equal, logits differ by %g)", what, wce);
    TH_CHECK(wca <= 3e-2, "%s: compiled step within bf16 tolerance of the eager cached forward (%g)", what, wca);
    em_compile_stats st = em_compiled_stats(f);
    TH_CHECK(st.compiles == 1 && st.graph_breaks == 0 && st.eager_calls == 0, "%s: one compiled program (compiles "
             "%d, breaks %d, eager %d)", what, st.compiles, st.graph_breaks, st.eager_calls);
    double wk = 0, wkc = 0;
    for (int l = 0; l < cfg.n_layer; l++) {
        wk = fmax(wk, fmax(max_rel(kb->k[l], ka->k[l]), max_rel(kb->v[l], ka->v[l])));
        wkc = fmax(wkc, fmax(max_rel(kb->k[l], kc->k[l]), max_rel(kb->v[l], kc->v[l])));
    }
    TH_CHECK(wkc == 0 && wk <= 3e-2, "%s: the committed cache equals the eager step's bit for bit and the eager "
             "cached forward's within bf16 tolerance (%g)", what, wk);
    em_compiled_free(f);
    em_kv_cache_free(ka);
    em_kv_cache_free(kb);
    em_kv_cache_free(kc);

    /* greedy generation: bf16 compiled = bf16 eager; bf16 follows f32 while f32's top two logits are
       apart by more than bf16's error (a closer call may go either way; after a difference the
       sequences part, so the comparison stops there) */
    enum { N = 8 };
    int32_t prompt[3] = {3, 17, 42}, t32[N], t16[N], t16e[N];
    const int32_t *pp[1] = {prompt};
    int64_t len = 3, l32, l16, l16e;
    em_generate_opts o = {.max_new_tokens = N};
    ok = em_generate(m32, pp, &len, 1, &o, t32, &l32, NULL) == EM_OK &&
         em_generate(m, pp, &len, 1, &o, t16, &l16, NULL) == EM_OK;
    o.eager = true;
    ok = ok && em_generate(m, pp, &len, 1, &o, t16e, &l16e, NULL) == EM_OK;
    TH_CHECK(ok, "%s: em_generate runs in bf16 (%s)", what, em_last_error());
    TH_CHECK(ok && same_tokens(t16, t16e, N), "%s: bf16 greedy tokens, compiled = eager", what);
    int agree = 0;
    bool explained = true;
    int32_t seq[3 + N];
    memcpy(seq, prompt, sizeof prompt);
    double *z = malloc(sizeof(double) * (size_t)V);
    for (int i = 0; ok && i < N; i++) {
        if (t16[i] == t32[i]) {
            agree++;
            seq[3 + i] = t32[i];
            continue;
        }
        full_logits(m32, seq, 3 + i, z); /* the f32 margin at the first difference */
        double top = -INFINITY, second = -INFINITY, zmax = 0;
        for (int64_t v = 0; v < V; v++) {
            zmax = fmax(zmax, fabs(z[v]));
            if (z[v] > top) second = top, top = z[v];
            else if (z[v] > second) second = z[v];
        }
        explained = top - second <= 0.05 * (1 + zmax);
        break;
    }
    free(z);
    TH_CHECK(ok && explained && agree >= 3, "%s: bf16 greedy follows f32's tokens (%d of %d agree; a difference "
             "only where f32's top two logits are within bf16 tolerance)", what, agree, N);
    em_model_free(m32);
    em_model_free(m);
    em_scope_end(s);
    CHECK_LIVE(live, what);
}

/* `ember generate --dtype bf16` on a llama2.c file prints the tokens em_generate gives the model
   converted to bf16 (greedy), and a bad --dtype is a usage error (exit 2) naming the value */
static void test_cli_bf16(void) {
    const char *what = "ember generate --dtype bf16";
    const char *ember = ember_binary();
    if (!ember) {
        printf("  (skipped: no ember binary beside the test for %s)\n", what);
        return;
    }
    int64_t live = em_live_tensors();
    l2_config c = {48, 128, 2, 6, 2, 40, 32};
    char path[128], tpath[128];
    snprintf(path, sizeof path, "%s/model_bf16.bin", tmpdir);
    snprintf(tpath, sizeof tpath, "%s/tokenizer_bf16.bin", tmpdir);
    rng_state = 47;
    float *data;
    l2_weights w;
    TH_CHECK(write_llama2c(path, c, true, &data, &w) && write_l2_tokenizer(tpath, c.vocab_size), "%s: fixture", what);
    em_model_t *m = emn_model_import(path);
    em_tokenizer_t *tok = em_tokenizer_load_llama2c(tpath, c.vocab_size);
    bool ok = m && tok && em_model_to_dtype(m, EM_BF16) == EM_OK;
    TH_CHECK(ok, "%s: model, tokenizer, conversion (%s)", what, em_last_error());
    int32_t *pr = NULL, out[64];
    size_t np = 0;
    if (ok) ok = em_tokenizer_encode(tok, "hid bag", 7, true, &pr, &np) == EM_OK;
    const int steps = 20;
    int64_t len = (int64_t)np, ol = 0;
    em_generate_opts o = {.max_new_tokens = steps, .stop_at_eos = true, .eos_id = 1};
    const int32_t *pp[1] = {pr};
    ok = ok && em_generate(m, pp, &len, 1, &o, out, &ol, NULL) == EM_OK;
    TH_CHECK(ok, "%s: em_generate on the bf16 model (%s)", what, em_last_error());
    char want[4096] = "", cmd[8192];
    int32_t prev = ok ? pr[0] : 0;
    for (int64_t i = 1; ok && i < (int64_t)np + ol; i++) { /* the prompt after BOS, then the new tokens */
        int32_t t = i < (int64_t)np ? pr[i] : out[i - (int64_t)np];
        if (t == 1 && i >= (int64_t)np) break; /* the stop token is not printed */
        size_t lp;
        const char *piece = em_tokenizer_decode_one(tok, prev, t, &lp);
        strncat(want, piece, lp);
        prev = t;
    }
    strcat(want, "\n");
    snprintf(cmd, sizeof cmd, "'%s' generate --checkpoint '%s' --tokenizer '%s' --temperature 0 --steps %d "
             "--prompt 'hid bag' --dtype bf16 2>/dev/null", ember, path, tpath, steps);
    int status = -1;
    char *got = ok ? run_capture(cmd, &status) : NULL;
    TH_CHECK(got && status == 0 && !strcmp(got, want), "%s: prints the bf16 model's greedy tokens (exit %d)\n    got  "
             "\"%s\"\n    want \"%s\"", what, status, got ? got : "", want);
    free(got);
    snprintf(cmd, sizeof cmd, "'%s' generate --checkpoint '%s' --tokenizer '%s' --dtype i32 2>&1", ember, path, tpath);
    got = run_capture(cmd, &status);
    TH_CHECK(got && status == 2 && strstr(got, "--dtype 'i32'") && strstr(got, "bf16"),
             "%s: --dtype i32 is a usage error naming the value and the choices (exit %d: %s)", what, status,
             got ? got : "");
    free(got);
    free(pr);
    em_tokenizer_free(tok);
    em_model_free(m);
    free(data);
    CHECK_LIVE(live, what);
}

static double t_start;
static void lap(const char *name) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double t = ts.tv_sec + ts.tv_nsec * 1e-9;
    if (getenv("EMBER_TEST_TIMES")) fprintf(stderr, "  %-28s %.2f s\n", name, t - t_start);
    t_start = t;
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ember_test_gen_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    lap("start");
    check_step("gpt2-tiny", EM_F64, 1e-12);
    lap("check_step gpt2-tiny");
    check_step("llama-tiny", EM_F64, 1e-12);
    lap("check_step llama-tiny");
    check_step("llama-tiny", EM_F32, 1e-5);
    lap("check_step llama-tiny");
    check_prefill("gpt2-tiny", EM_F32);
    check_prefill("llama-tiny", EM_F32);
    check_prefill("gpt2-tiny", EM_F64);
    lap("check_prefill");
    check_decode("gpt2-tiny");
    lap("check_decode gpt2-tiny");
    check_decode("llama-tiny");
    lap("check_decode llama-tiny");
    test_sampling();
    lap("test_sampling");
    test_distribution();
    lap("test_distribution");
    test_stops();
    lap("test_stops");
    test_errors();
    lap("test_errors");
    test_llama2c();
    lap("test_llama2c");
    test_import_gpt2();
    lap("test_import_gpt2");
    test_import_errors();
    lap("test_import_errors");
    check_to_dtype("gpt2-tiny");
    check_to_dtype("llama-tiny");
    test_to_dtype_errors();
    lap("to_dtype");
    check_bf16_decode("gpt2-tiny");
    check_bf16_decode("llama-tiny");
    lap("bf16 decode");
    test_cli_bf16();
    lap("ember generate --dtype bf16");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return th_summary();
}
