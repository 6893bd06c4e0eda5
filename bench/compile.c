/* compile.c - eager vs compiled (em_compile, backend "c") in one process, on four programs of
 * growing size, with the cold and warm compile time of each.
 *
 *     make -j2 build/bench/compile && build/bench/compile [B]      (also run by `make bench`)
 *
 * B: the GPT-2 batch (default 4). EMBER_NUM_THREADS sets the threads; EMBER_BENCH_ONLY=name runs
 * only the programs whose name contains it. The whole run takes about 5 minutes on 2 busy cores
 * (the training step's cold compile, built in parallel parts, is 12-25 s of it at load 4-6).
 *
 * Programs (f32):
 *   mlp        x (256, 768) -> linear 3072 -> gelu -> linear 768 -> + x
 *   attn       B=4, T=64, C=768, 12 heads: x + proj(sdpa_causal(qkv(layer_norm(x))))
 *   gpt2_fwd   GPT-2 small ("gpt2" preset: 12 layers, 768 wide, 12 heads, V 50257), T=64, batch B,
 *              logits and the mean cross-entropy (dropout off), under em_no_grad (inference)
 *   gpt2_train the same model's whole training step in one function: forward, loss, backward,
 *              AdamW (lr 1e-4, weight decay 0.1) and zero_grad; the compiled one is one program
 *
 * Then the fused-epilogue table (issue 6: "a matmul with a fused epilogue faster than matmul
 * followed by the epilogue"): one linear layer x @ W^T + b followed by gelu, or by a residual add,
 * at GPT-2's shapes (M = 256 rows = B4 x T64; K = 768, N = 3072: the MLP's first layer; K = 768,
 * N = 768: attention's output projection; K = 3072, N = 768: the MLP's second layer; then M = 1024
 * and M = 4096, where the product outgrows the caches), each
 * compiled twice: with the epilogue fused into the GEMM kernel (each thread runs it on its slice
 * of C right after its GEMM call, while the slice is in cache) and with EMBER_NO_EPILOGUE_FUSION=1
 * (the GEMM kernel stores the product; a second, pointwise kernel reads it back and applies the
 * epilogue), and run eagerly (linear, then gelu / add: em_linear's own GEMM, then one more pass).
 * Rows: median ms of 30 alternating calls; the unfused/fused ratio; GFLOP (2MNK) and the fused
 * GFLOP/s; the bytes the unfused version moves in addition (the product written once more and
 * read back: 2 x M x N x 4) and what that costs at 30 GB/s; the max abs difference of the fused
 * and unfused outputs (0: the same bits). EMBER_BENCH_ONLY=epi runs only this table.
 *
 * For each: the median time of one call over several timed repeats after a warm-up, eager and
 * compiled; the speedup; the FLOPs (matmuls only: 2MNK each, attention's two batched products
 * included; a training step counts 3x its forward, AdamW's elementwise work is not counted) and
 * the achieved GFLOP/s; the max relative difference of compiled vs eager outputs (forward
 * programs); the kernels of the compiled program, its planned arena (peak) and what its
 * intermediates take without reuse. Cold compile: trace + passes + codegen + the C compiler,
 * with an empty EMBER_CACHE_DIR (a temporary directory, removed at the end; EMBER_BENCH_KEEP=1
 * keeps it). Warm compile: a new em_compiled_t of the same function on the same directory (a
 * disk hit: what a second process pays). The training step runs eager and compiled on the same
 * model, alternating, so both time real updates. This program replaces bench/codegen.c.
 */
#include <ember.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void die(const char *what) {
    fprintf(stderr, "bench/compile: %s: %s\n", what, em_last_error());
    exit(1);
}

/* ---- the programs ------------------------------------------------------------------------------ */
typedef struct {
    em_tensor_t *w1, *b1, *w2, *b2;            /* mlp */
    em_tensor_t *ln_w, *ln_b, *wqkv, *bqkv, *wo, *bo; /* attn */
    int64_t B, T, C, NH;
    em_model_t *m;
    em_optimizer_t *opt;
} ctx_t;

static em_status mlp_fn(void *vc, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    ctx_t *c = vc;
    (void)n_in, (void)n_out;
    out[0] = em_add(in[0], em_linear(em_gelu(em_linear(in[0], c->w1, c->b1)), c->w2, c->b2));
    return out[0] ? EM_OK : em_last_status();
}

static em_status attn_fn(void *vc, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    ctx_t *c = vc;
    (void)n_in, (void)n_out;
    int64_t B = c->B, T = c->T, C = c->C, NH = c->NH, HS = C / NH;
    em_tensor_t *x = in[0];
    em_tensor_t *qkv = em_linear(em_layer_norm(x, c->ln_w, c->ln_b, 1e-5), c->wqkv, c->bqkv); /* (B, T, 3C) */
    em_tensor_t *h[3];
    for (int i = 0; i < 3; i++) /* (B, T, C) slice -> (B, T, NH, HS) -> (B, NH, T, HS) */
        h[i] = em_transpose(em_reshape(em_slice(qkv, 2, i * C, (i + 1) * C, 1), (int64_t[]){B, T, NH, HS}, 4), 1, 2);
    em_tensor_t *y = em_scaled_dot_product_attention(h[0], h[1], h[2], true, 0.0);
    y = em_reshape(em_transpose(y, 1, 2), (int64_t[]){B, T, C}, 3);
    out[0] = em_add(x, em_linear(y, c->wo, c->bo));
    return out[0] ? EM_OK : em_last_status();
}

static em_status gpt2_fwd_fn(void *vc, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    ctx_t *c = vc;
    (void)n_in, (void)n_out;
    em_tensor_t *loss = NULL;
    out[0] = em_model_forward(c->m, in[0], in[1], &loss);
    out[1] = loss;
    return out[0] && out[1] ? EM_OK : em_last_status();
}

static em_status gpt2_train_fn(void *vc, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    ctx_t *c = vc;
    (void)n_in, (void)n_out;
    em_tensor_t *loss = NULL;
    if (!em_model_forward(c->m, in[0], in[1], &loss)) return em_last_status();
    em_status st = em_backward(loss);
    if (st == EM_OK) st = em_optimizer_step(c->opt);
    if (st == EM_OK) st = em_optimizer_zero_grad(c->opt);
    out[0] = em_detach(loss);
    return st;
}

typedef em_status (*fn_t)(void *, em_tensor_t *const *, int, em_tensor_t **, int);

/* ---- the fused-epilogue table -------------------------------------------------------------------- */
typedef struct {
    const char *name;
    int64_t M, K, N;
    bool gelu; /* else + residual */
    em_tensor_t *w, *b;
} epi_t;

static em_status epi_fn(void *vc, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    epi_t *e = vc;
    (void)n_in, (void)n_out;
    em_tensor_t *y = em_linear(in[0], e->w, e->b);
    out[0] = e->gelu ? em_gelu_tanh(y) : em_add(y, in[1]);
    return out[0] ? EM_OK : em_last_status();
}

static double epi_call(epi_t *e, em_compiled_t *f, em_tensor_t **in, em_tensor_t **keep) {
    em_scope_t *s = em_scope_begin();
    em_tensor_t *o[1] = {0};
    double t0 = now_ms();
    em_status st = f ? em_call(f, in, 2, o, 1) : epi_fn(e, in, 2, o, 1);
    double t = now_ms() - t0;
    if (st != EM_OK) die(e->name);
    if (keep) *keep = em_keep(o[0]);
    em_scope_end(s);
    return t;
}

static void epilogue_table(void) {
    epi_t rows[] = {
        {"epi_gelu_n3072", 256, 768, 3072, true, NULL, NULL},
        {"epi_res_n768", 256, 768, 768, false, NULL, NULL},
        {"epi_res_k3072", 256, 3072, 768, false, NULL, NULL},
        /* T = 256 (M = 1024) and B = 16, T = 256 (M = 4096: the product, 48 MiB, no longer fits the cache) */
        {"epi_gelu_m1024", 1024, 768, 3072, true, NULL, NULL},
        {"epi_gelu_m4096", 4096, 768, 3072, true, NULL, NULL},
        {"epi_res_m4096", 4096, 3072, 768, false, NULL, NULL},
    };
    printf("\n| epilogue       | M x N x K        | eager ms | unfused ms | fused ms | unfused/fused | GFLOP | fused GFLOP/s "
           "| extra MB unfused | at 30 GB/s ms | fused vs unfused max diff |\n");
    printf("|----------------|------------------|---------:|-----------:|---------:|------:|------:|------:|------:|------:|------:|\n");
    em_compile_opts o = {.fullgraph = true};
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        epi_t *e = &rows[i];
        const char *only = getenv("EMBER_BENCH_ONLY");
        if (only && !strstr(e->name, only)) continue;
        em_scope_t *s = em_scope_begin();
        e->w = em_mul_scalar(em_randn((int64_t[]){e->N, e->K}, 2, EM_F32), 0.03);
        e->b = em_mul_scalar(em_randn((int64_t[]){e->N}, 1, EM_F32), 0.1);
        em_tensor_t *in[2] = {em_randn((int64_t[]){e->M, e->K}, 2, EM_F32), em_randn((int64_t[]){e->M, e->N}, 2, EM_F32)};
        em_compiled_t *f[2];
        em_tensor_t *res[2] = {0};
        for (int u = 0; u < 2; u++) { /* 0: fused, 1: EMBER_NO_EPILOGUE_FUSION (read at compile time) */
            if (u) setenv("EMBER_NO_EPILOGUE_FUSION", "1", 1);
            if (!(f[u] = em_compile(epi_fn, e, &o))) die("em_compile");
            epi_call(e, f[u], in, &res[u]); /* the compile */
            unsetenv("EMBER_NO_EPILOGUE_FUSION");
            int want = u ? 2 : 1;
            if (em_compiled_stats(f[u]).kernels != want)
                fprintf(stderr, "bench/compile: %s: %d kernels, expected %d\n", e->name, em_compiled_stats(f[u]).kernels, want);
        }
        double diff = em_item(em_amax(em_abs(em_sub(res[0], res[1])), NULL, 0, false));
        enum { REPS = 30 };
        double t[3][REPS];
        for (int w = 0; w < 3; w++) epi_call(e, w < 2 ? f[w] : NULL, in, NULL);
        for (int r = 0; r < REPS; r++)
            for (int w = 0; w < 3; w++) t[w][r] = epi_call(e, w < 2 ? f[w] : NULL, in, NULL);
        for (int w = 0; w < 3; w++) qsort(t[w], REPS, sizeof **t, cmp_dbl);
        double fused = t[0][REPS / 2], unfused = t[1][REPS / 2], eager = t[2][REPS / 2];
        double flops = 2.0 * (double)e->M * (double)e->N * (double)e->K, extra = 2.0 * (double)e->M * (double)e->N * 4;
        char shape[40];
        snprintf(shape, sizeof shape, "%lldx%lldx%lld", (long long)e->M, (long long)e->N, (long long)e->K);
        printf("| %-14s | %-16s | %8.3f | %10.3f | %8.3f | %5.2fx | %5.2f | %5.1f | %5.1f | %5.3f | %g |\n", e->name, shape,
               eager, unfused, fused, unfused / fused, flops * 1e-9, flops / fused * 1e-6, extra / 1048576.0,
               extra / 30e9 * 1e3, diff);
        fflush(stdout);
        em_compiled_free(f[0]);
        em_compiled_free(f[1]);
        em_scope_end(s);
    }
}

typedef struct {
    const char *name;
    fn_t fn;
    em_tensor_t *in[2];
    int n_in, n_out;
    double flops;
    int reps; /* timed calls (median of these) */
    bool train;
} prog_t;

/* one call, outputs released; returns its time in ms */
static double call_once(prog_t *p, ctx_t *c, em_compiled_t *f) {
    em_scope_t *s = em_scope_begin();
    em_tensor_t *o[2] = {0};
    double t0 = now_ms();
    em_status st = f ? em_call(f, p->in, p->n_in, o, p->n_out) : p->fn(c, p->in, p->n_in, o, p->n_out);
    double t = now_ms() - t0;
    if (st != EM_OK) die(p->name);
    em_scope_end(s);
    return t;
}

static double max_rel(em_tensor_t *a, em_tensor_t *b) {
    em_tensor_t *x = em_cast(a, EM_F64), *y = em_cast(b, EM_F64);
    double num = em_item(em_amax(em_abs(em_sub(x, y)), NULL, 0, false));
    double den = em_item(em_amax(em_abs(y), NULL, 0, false));
    return num / (den > 1 ? den : 1);
}

static void run(prog_t *p, ctx_t *c) {
    em_compile_opts o = {.fullgraph = true};
    /* cold: the first call traces and compiles into an empty cache */
    em_compiled_t *cold = em_compile(p->fn, c, &o);
    if (!cold) die("em_compile");
    double diff = NAN;
    em_scope_t *s = em_scope_begin();
    em_tensor_t *a[2] = {0}, *b[2] = {0};
    if (em_call(cold, p->in, p->n_in, a, p->n_out) != EM_OK) die(p->name);
    if (!p->train) {
        if (p->fn(c, p->in, p->n_in, b, p->n_out) != EM_OK) die(p->name);
        diff = max_rel(a[0], b[0]);
    }
    em_scope_end(s);
    em_compile_stats cs = em_compiled_stats(cold);
    /* warm: a new compiled function, same cache directory: a disk hit */
    em_compiled_t *warm = em_compile(p->fn, c, &o);
    call_once(p, c, warm);
    em_compile_stats ws = em_compiled_stats(warm);
    if (cs.eager_calls || cs.graph_breaks || ws.disk_cache_hits != 1)
        fprintf(stderr, "bench/compile: %s: unexpected stats (eager calls %d, breaks %d, warm disk hits %d)\n", p->name,
                cs.eager_calls, cs.graph_breaks, ws.disk_cache_hits);
    /* timing: one warm-up each, then p->reps calls each, alternating eager and compiled */
    call_once(p, c, NULL);
    call_once(p, c, warm);
    double te[64], tc[64];
    for (int r = 0; r < p->reps; r++) {
        te[r] = call_once(p, c, NULL);
        tc[r] = call_once(p, c, warm);
    }
    qsort(te, (size_t)p->reps, sizeof *te, cmp_dbl);
    qsort(tc, (size_t)p->reps, sizeof *tc, cmp_dbl);
    double me = te[p->reps / 2], mc = tc[p->reps / 2];
    char dtxt[32] = "-"; /* a training step changes the model: no single output to compare */
    if (!isnan(diff)) snprintf(dtxt, sizeof dtxt, "%.1g", diff);
    printf("| %-10s | %9.2f | %9.2f | %5.2fx | %7.2f | %6.1f | %6.1f | %4d | %7.1f / %7.1f | %8.0f | %6.1f | %8s |\n",
           p->name, me, mc, me / mc, p->flops * 1e-9, p->flops / me * 1e-6, p->flops / mc * 1e-6, cs.kernels,
           cs.planned_peak_bytes / 1048576.0, cs.unplanned_bytes / 1048576.0, cs.compile_ms, ws.compile_ms, dtxt);
    fflush(stdout);
    em_compiled_free(cold);
    em_compiled_free(warm);
}

static em_tensor_t *param(const int64_t *shape, int nd, double scale, double shift) {
    em_tensor_t *t = em_add_scalar(em_mul_scalar(em_randn(shape, nd, EM_F32), scale), shift);
    if (!t) die("param");
    return t;
}

int main(int argc, char **argv) {
    int64_t GB = argc > 1 ? atoll(argv[1]) : 4;
    if (GB < 1 || GB > 64) {
        fprintf(stderr, "usage: %s [B]   (GPT-2 batch, 1..64)\n", argv[0]);
        return 2;
    }
    char dir[] = "/tmp/ember-bench-compile-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    setenv("EMBER_CACHE_DIR", dir, 1);
    em_manual_seed(1);
    em_scope_t *top = em_scope_begin();
    ctx_t c = {.B = 4, .T = 64, .C = 768, .NH = 12};
    int64_t C = c.C, H = 4 * C, R = 256;
    c.w1 = param((int64_t[]){H, C}, 2, 0.03, 0);
    c.b1 = param((int64_t[]){H}, 1, 0.1, 0);
    c.w2 = param((int64_t[]){C, H}, 2, 0.03, 0);
    c.b2 = param((int64_t[]){C}, 1, 0.1, 0);
    c.ln_w = param((int64_t[]){C}, 1, 0.1, 1);
    c.ln_b = param((int64_t[]){C}, 1, 0.1, 0);
    c.wqkv = param((int64_t[]){3 * C, C}, 2, 0.03, 0);
    c.bqkv = param((int64_t[]){3 * C}, 1, 0.1, 0);
    c.wo = param((int64_t[]){C, C}, 2, 0.03, 0);
    c.bo = param((int64_t[]){C}, 1, 0.1, 0);
    em_model_config cfg;
    if (em_model_config_preset("gpt2", &cfg) != EM_OK) die("preset");
    cfg.dropout = 0;
    if (!(c.m = em_model_new(&cfg, 1))) die("em_model_new");
    em_model_set_training(c.m, false);
    c.opt = em_adamw_new(em_model_params(c.m), em_model_num_params(c.m), 1e-4, 0.9, 0.95, 1e-8, 0.1);
    if (!c.opt) die("em_adamw_new");
    int64_t T = 64, V = cfg.vocab_size, L = cfg.n_layer;
    em_tensor_t *idx = em_randint(0, V, (int64_t[]){GB, T}, 2, EM_I64);
    em_tensor_t *tgt = em_randint(0, V, (int64_t[]){GB, T}, 2, EM_I64);
    if (!idx || !tgt) die("tokens");
    double BT = (double)(c.B * c.T), gBT = (double)(GB * T), Cd = (double)C;
    double attn_flops = 2 * BT * Cd * 3 * Cd + 2 * BT * Cd * Cd + 4 * (double)c.B * (double)c.T * (double)c.T * Cd;
    double fwd_flops = L * (24 * gBT * Cd * Cd + 4 * (double)GB * (double)T * (double)T * Cd) + 2 * gBT * Cd * (double)V;
    prog_t progs[] = {
        {"mlp", mlp_fn, {param((int64_t[]){R, C}, 2, 1, 0)}, 1, 1, 2 * 2 * (double)R * Cd * (double)H, 15, false},
        {"attn", attn_fn, {param((int64_t[]){c.B, c.T, C}, 3, 1, 0)}, 1, 1, attn_flops, 15, false},
        {"gpt2_fwd", gpt2_fwd_fn, {idx, tgt}, 2, 2, fwd_flops, 5, false},
        {"gpt2_train", gpt2_train_fn, {idx, tgt}, 2, 1, 3 * fwd_flops, 3, true},
    };
    char host[256] = "?";
    gethostname(host, sizeof host);
    printf("bench/compile: %d threads, GPT-2 batch B=%lld (T=%lld), f32, cache %s\n", em_get_num_threads(),
           (long long)GB, (long long)T, dir);
    printf("| program    |  eager ms |  comp. ms | speedup |  GFLOP | eager GFLOP/s | comp. GFLOP/s | kernels | "
           "arena / no reuse MiB | cold compile ms | warm ms | max rel diff |\n");
    printf("|------------|----------:|----------:|--------:|-------:|-------:|-------:|-----:|------------------:|"
           "---------:|-------:|---------:|\n");
    for (size_t i = 0; i < sizeof progs / sizeof *progs; i++) {
        const char *only = getenv("EMBER_BENCH_ONLY");
        if (only && !strstr(progs[i].name, only)) continue;
        em_model_set_training(c.m, progs[i].train);
        if (!progs[i].train) em_no_grad_begin(); /* forward programs: inference, no autograd records */
        run(&progs[i], &c);
        if (!progs[i].train) em_no_grad_end();
    }
    em_optimizer_free(c.opt);
    em_model_free(c.m);
    em_scope_end(top);
    epilogue_table();
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (getenv("EMBER_BENCH_KEEP")) printf("generated sources kept in %s\n", dir);
    else if (system(cmd) != 0) return 1;
    return 0;
}
