/* Decode benchmark (issue 6, "decode with a KV cache"): where the time of one GPT-2 124M token
   goes, eager and compiled, and the matmuls alone at the decode shapes.

   Matmuls: y (1 x N) = x (1 x K) @ W^T with W stored (N, K) row-major, as every linear layer of a
   decode step, for the GPT-2 124M layers (qkv 2304x768, attention proj 768x768, fc 3072x768,
   fc proj 768x3072, lm_head 50257x768), through emk_sgemm (src/ops/gemm.c) and OpenBLAS
   cblas_sgemv on the same inputs and thread count. Each is the median of --reps calls after a
   warm-up, with each call's weights evicted from cache first (a 64 MiB scratch sweep), so the
   figure is what a decode step sees: the weights streamed from memory. GB/s counts the weight
   bytes (4 N K). The "per step" line is 12 layers' worth plus the lm_head: the matmul floor of a
   step on this machine.

   Model: GPT-2 124M ("gpt2" preset, random init, f32, dropout off). Prefill of a 64-token random
   prompt at position 0, eager, two ways: em_model_forward_cached (all 64 positions' logits) and
   emn_prefill (the last position's logits only: em_generate's prefill); medians of --reps after a
   warm-up. Decode: --steps single-token steps at positions 64.. into a cache of 64 + --steps
   positions (as em_generate sizes it), run twice after a prefill (the first round warms up and
   compiles, the second is timed), eager (em_model_forward_cached) and compiled (em_compile of
   emn_decode_step, fullgraph, as em_generate runs it). Each line reports the median wall time and
   the median CPU time (user + system, all threads; getrusage): on a loaded machine the CPU time
   shows the work, the wall time adds waiting for a core (and with several threads, OpenMP's
   spin-waiting at barriers while a partner thread waits for a core shows up as CPU time too).
   OpenMP: unless OMP_WAIT_POLICY or GOMP_SPINCOUNT is set, the program re-executes itself with the
   ember command's policy (PASSIVE after a short spin, GOMP_SPINCOUNT=10000).

   --dtype bf16: the model is converted with em_model_to_dtype (parameters, activations and the
   KV cache in bf16, as PyTorch's model.to(torch.bfloat16)) and the matmuls run through emk_gemm
   with bf16 x, W and y (products summed in f32: EMK_MM_BF16), 2 N K weight bytes each; the BLAS
   column stays f32 sgemv (4 N K bytes), a bandwidth reference. The "bytes per token" line counts
   the weights a step must stream (12 layers' linears + the lm_head; norms, biases and one
   embedding row are noise) and the floor is those bytes over the plain streaming read.

   Usage: decode [--threads N] [--reps N] [--steps N] [--dtype f32|bf16] [--no-model] [--no-matmul]
   Threads: --threads, else $EMBER_NUM_THREADS, else 2. Build: make BUILD=build build/bench/decode.
   The machine is usually shared: the load average is printed with the table. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <omp.h>

#include "ember.h"
#include "nn/nn.h"
#include "ops/gemm.h"

void openblas_set_num_threads(int num_threads);

#define MAXR 64

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static struct {
    int threads, reps, steps;
    bool model, matmul, bf16;
} opt;

/* f32 -> bf16 bits, nearest even (what em_cast does) */
static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static float from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---- matmuls at the decode shapes --------------------------------------------------------------- */
static float *scratch;
static const size_t scratch_n = (size_t)16 << 20; /* 64 MiB of floats: larger than any cache here */

static volatile float sink;

/* reads the scratch (read-only, so no dirty lines are written back during the next timing) */
static void evict(void) {
    float s = 0;
    for (size_t i = 0; i < scratch_n; i += 16) s += scratch[i];
    sink = s;
}

/* a plain streaming read now (GB/s): the median of reps sums over the scratch, every thread
   reading its share, hardware prefetch only. A reference for how loaded the memory system is, not
   a ceiling: on the dev VM the GEMMs' software prefetch reads faster than this loop */
static double read_bandwidth(void) {
    double t[MAXR];
    for (int r = 0; r <= opt.reps; r++) {
        double t0 = now_ms(), total = 0;
#pragma omp parallel num_threads(opt.threads) reduction(+ : total)
        {
            int nt = omp_get_num_threads(), me = omp_get_thread_num();
            size_t lo = scratch_n / 16 * (size_t)me / (size_t)nt * 16, hi = scratch_n / 16 * (size_t)(me + 1) / (size_t)nt * 16;
            float s[16] = {0};
            for (size_t i = lo; i < hi; i += 16)
                for (int l = 0; l < 16; l++) s[l] += scratch[i + l];
            for (int l = 0; l < 16; l++) total += s[l];
        }
        sink = (float)total;
        if (r > 0) t[r - 1] = now_ms() - t0;
    }
    return 4.0 * (double)scratch_n / median(t, opt.reps) * 1e-6;
}

typedef struct {
    const char *name;
    int64_t N, K;
    int per_layer; /* 1: once per layer; 0: once per step */
} shape_t;

static const shape_t shapes[] = {
    {"attn qkv", 2304, 768, 1}, {"attn proj", 768, 768, 1}, {"mlp fc", 3072, 768, 1},
    {"mlp proj", 768, 3072, 1}, {"lm_head", 50257, 768, 0},
};
enum { NSHAPES = sizeof shapes / sizeof shapes[0] };

static double time_gemv(const shape_t *s, bool blas, double *max_rel) {
    const int64_t N = s->N, K = s->K;
    float *W = malloc(sizeof(float) * (size_t)(N * K)), *x = malloc(sizeof(float) * (size_t)K);
    float *y = malloc(sizeof(float) * (size_t)N);
    double *ref = malloc(sizeof(double) * (size_t)N);
    unsigned seed = 1234;
    for (int64_t i = 0; i < N * K; i++) W[i] = (float)rand_r(&seed) / (float)RAND_MAX - 0.5f;
    for (int64_t i = 0; i < K; i++) x[i] = (float)rand_r(&seed) / (float)RAND_MAX - 0.5f;
    bool bf = opt.bf16 && !blas;
    uint16_t *W16 = NULL, *x16 = NULL, *y16 = NULL;
    if (bf) { /* bf16 operands; the f32 copies hold the same (rounded) values for the reference */
        W16 = malloc(2 * (size_t)(N * K)), x16 = malloc(2 * (size_t)K), y16 = malloc(2 * (size_t)N);
        for (int64_t i = 0; i < N * K; i++) W[i] = from_bf16(W16[i] = to_bf16(W[i]));
        for (int64_t i = 0; i < K; i++) x[i] = from_bf16(x16[i] = to_bf16(x[i]));
    }
    int par = opt.threads > 1 ? opt.threads : 0;
    double t[MAXR];
    for (int r = 0; r <= opt.reps; r++) {
        evict();
        double t0 = now_ms();
        if (blas)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)N, (int)K, 1.0f, W, (int)K, x, 1, 0.0f, y, 1);
        else if (bf) /* B(k, j) = W[j K + k] */
            emk_gemm(1, N, K, x16, EMK_BF16, K, 1, W16, EMK_BF16, 1, K, y16, EMK_BF16, N, 1, 0, EMK_MM_BF16, par);
        else
            emk_sgemm(1, N, K, x, K, 1, W, 1, K, y, N, 1, 0, par); /* B(k, j) = W[j K + k] */
        double dt = now_ms() - t0;
        if (r > 0) t[r - 1] = dt;
    }
    if (bf) {
        for (int64_t j = 0; j < N; j++) y[j] = from_bf16(y16[j]);
        free(W16), free(x16), free(y16);
    }
    /* accuracy against float64 */
    double worst = 0;
    for (int64_t j = 0; j < N; j++) {
        double acc = 0, mag = 0;
        for (int64_t k = 0; k < K; k++) acc += (double)x[k] * W[j * K + k], mag += fabs((double)x[k] * W[j * K + k]);
        double e = fabs(y[j] - acc) / (mag > 0 ? mag : 1);
        worst = e > worst ? e : worst;
    }
    *max_rel = worst;
    free(W), free(x), free(y), free(ref);
    return median(t, opt.reps);
}

static double bandwidth; /* the plain streaming read, GB/s (0: not measured) */

static void bench_matmul(double *floor_ms) {
    bandwidth = read_bandwidth();
    printf("\nplain streaming read, %d threads: %.1f GB/s\n", opt.threads, bandwidth);
    printf("\nmatmuls at the decode shapes: y (1 x N) = x (1 x K) @ W^T, W (N, K) row-major, weights cold; "
           "Ember %s, BLAS f32\n", opt.bf16 ? "bf16 (emk_gemm, EMK_MM_BF16)" : "f32 (emk_sgemm)");
    printf("%-10s %6s %5s %9s %10s %8s %10s %8s %9s\n", "layer", "N", "K", "MB", "Ember us", "GB/s", "BLAS us",
           "GB/s", "rel err");
    double step = 0, step_blas = 0;
    for (int i = 0; i < NSHAPES; i++) {
        const shape_t *s = &shapes[i];
        double e_err, b_err;
        double te = time_gemv(s, false, &e_err), tb = time_gemv(s, true, &b_err);
        double mb = (opt.bf16 ? 2.0 : 4.0) * (double)s->N * (double)s->K / 1e6, mb32 = 4.0 * (double)s->N * (double)s->K / 1e6;
        printf("%-10s %6lld %5lld %9.2f %10.1f %8.1f %10.1f %8.1f %9.1e\n", s->name, (long long)s->N,
               (long long)s->K, mb, te * 1e3, mb / te, tb * 1e3, mb32 / tb, e_err);
        step += (s->per_layer ? 12 : 1) * te;
        step_blas += (s->per_layer ? 12 : 1) * tb;
    }
    printf("%-23s %9.1f %10.2f ms %17.2f ms  (12 layers + lm_head)\n", "per step",
           (opt.bf16 ? 2.0 : 4.0) * (12 * 7077888.0 + 38597376.0) / 1e6, step, step_blas);
    *floor_ms = step;
}

/* ---- the model ------------------------------------------------------------------------------------ */
static double cpu_ms(void) { /* user + system time of the process, all threads */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-3;
}

typedef struct {
    em_model_t *m;
    em_kv_cache_t *kv;
} step_ctx;

static em_status step_fn(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    step_ctx *c = ctx;
    (void)n_in, (void)n_out;
    out[0] = emn_decode_step(c->m, in[0], in[1], c->kv, &out[1]); /* logits, kv_new */
    return out[0] ? EM_OK : em_last_status();
}

/* --steps single-token steps at positions P.. after a prefill of ids (P tokens), twice (the first
   round warms up and compiles); compiled through em_compile of emn_decode_step (as em_generate
   runs it) or eager; medians of wall and CPU ms over the second round */
static void decode_run(em_model_t *m, const int64_t *ids, int P, bool compiled, double *wall, double *cpu,
                       double *compile_ms) {
    const int steps = opt.steps;
    em_kv_cache_t *kv = em_kv_cache_new(m, 1, P + steps);
    step_ctx sc = {m, kv};
    em_compiled_t *f = compiled ? em_compile(step_fn, &sc, &(em_compile_opts){.fullgraph = true}) : NULL;
    double w[1024], c[1024];
    int n = 0;
    *compile_ms = NAN;
    for (int r = 0; kv && r < 2; r++) {
        em_scope_t *s = em_scope_begin();
        em_tensor_t *idx = em_from_data(ids, (int64_t[]){1, P}, 2, EM_I64);
        if (!emn_prefill(m, idx, 0, kv)) printf("prefill: %s\n", em_last_error());
        em_scope_end(s);
        for (int i = 0; i < steps; i++) {
            s = em_scope_begin();
            int64_t tok = ids[i % P], pos = P + i;
            em_tensor_t *one = em_from_data(&tok, (int64_t[]){1, 1}, 2, EM_I64), *out = NULL;
            em_tensor_t *pt = em_from_data(&pos, (int64_t[]){1}, 1, EM_I64), *res[2] = {NULL, NULL};
            double a0 = now_ms(), c0 = cpu_ms();
            if (f) { /* as em_generate: the compiled step, then its keys and values into the cache */
                if (em_call(f, (em_tensor_t *[]){one, pt}, 2, res, 2) == EM_OK &&
                    emn_decode_commit(kv, res[1], pos) == EM_OK)
                    out = res[0];
            } else {
                out = em_model_forward_cached(m, one, pos, kv);
            }
            double a1 = now_ms(), c1 = cpu_ms();
            if (!out) printf("decode: %s\n", em_last_error());
            if (r > 0 && n < 1024) w[n] = a1 - a0, c[n++] = c1 - c0;
            em_scope_end(s);
        }
    }
    if (f) *compile_ms = em_compiled_stats(f).compile_ms;
    em_compiled_free(f);
    em_kv_cache_free(kv);
    *wall = n ? median(w, n) : NAN;
    *cpu = n ? median(c, n) : NAN;
}

/* prefill of ids (P tokens) at position 0: all logits (em_model_forward_cached) or the last
   position's (emn_prefill, em_generate's); medians of wall and CPU ms over --reps after a warm-up */
static void prefill_run(em_model_t *m, const int64_t *ids, int P, bool last_only, double *wall, double *cpu) {
    em_kv_cache_t *kv = em_kv_cache_new(m, 1, P);
    double w[MAXR], c[MAXR];
    for (int r = 0; kv && r <= opt.reps; r++) {
        em_scope_t *s = em_scope_begin();
        em_tensor_t *idx = em_from_data(ids, (int64_t[]){1, P}, 2, EM_I64);
        double a = now_ms(), b = cpu_ms();
        em_tensor_t *lg = last_only ? emn_prefill(m, idx, 0, kv) : em_model_forward_cached(m, idx, 0, kv);
        if (r > 0) w[r - 1] = now_ms() - a, c[r - 1] = cpu_ms() - b;
        if (!lg) printf("prefill: %s\n", em_last_error());
        em_scope_end(s);
    }
    em_kv_cache_free(kv);
    *wall = median(w, opt.reps);
    *cpu = median(c, opt.reps);
}

static void bench_model(double floor_ms) {
    enum { P = 64 };
    em_model_config cfg;
    if (em_model_config_preset("gpt2", &cfg) != EM_OK) {
        printf("preset: %s\n", em_last_error());
        return;
    }
    cfg.dropout = 0;
    double t0 = now_ms();
    em_model_t *m = em_model_new(&cfg, 1);
    if (!m) {
        printf("em_model_new: %s\n", em_last_error());
        return;
    }
    double t1 = now_ms();
    if (opt.bf16 && em_model_to_dtype(m, EM_BF16) != EM_OK) {
        printf("em_model_to_dtype: %s\n", em_last_error());
        em_model_free(m);
        return;
    }
    char conv[64] = "";
    if (opt.bf16) snprintf(conv, sizeof conv, ", em_model_to_dtype %.0f ms", now_ms() - t1);
    printf("\nGPT-2 124M, %s, random init (em_model_new %.0f ms%s); prompt %d tokens, %d decode steps\n",
           opt.bf16 ? "bf16" : "f32", t1 - t0, conv, P, opt.steps);
    /* the weights a step streams: 12 layers' linears and the lm_head (norms, biases, one embedding
       row and the KV cache are under 1% here) */
    double bytes = (double)em_dtype_size(opt.bf16 ? EM_BF16 : EM_F32) * (12 * 7077888.0 + 38597376.0);
    printf("%-30s %9.1f MB", "weight bytes per token", bytes / 1e6);
    if (bandwidth > 0)
        printf("  floor %.2f ms = %.0f tokens/s at the %.1f GB/s read above", bytes / bandwidth * 1e-6,
               bandwidth * 1e9 / bytes, bandwidth);
    printf("\n");
    em_model_set_training(m, false);
    int64_t ids[P];
    uint32_t s = 7;
    for (int i = 0; i < P; i++) s = s * 1664525u + 1013904223u, ids[i] = (int64_t)((s >> 8) % (uint32_t)cfg.vocab_size);
    double wall, cpu, comp;
    prefill_run(m, ids, P, false, &wall, &cpu);
    printf("%-30s %9.1f ms  CPU %.1f ms\n", "prefill 64, all logits", wall, cpu);
    prefill_run(m, ids, P, true, &wall, &cpu);
    printf("%-30s %9.1f ms  CPU %.1f ms  (em_generate's; target <= 70 ms)\n", "prefill 64, last logits", wall,
           cpu);
    decode_run(m, ids, P, false, &wall, &cpu, &comp);
    printf("%-30s %9.2f ms  %6.1f tokens/s  CPU %.2f ms\n", "decode step, eager", wall, 1e3 / wall, cpu);
    decode_run(m, ids, P, true, &wall, &cpu, &comp);
    printf("%-30s %9.2f ms  %6.1f tokens/s  CPU %.2f ms  (target >= %d tokens/s; compile %.0f ms)\n",
           "decode step, compiled", wall, 1e3 / wall, cpu, opt.bf16 ? 100 : 55, comp);
    if (floor_ms > 0) printf("%-30s %9.2f ms  (the matmuls above, weights cold)\n", "matmul floor of a step", floor_ms);
    em_model_free(m);
}

int main(int argc, char **argv) {
    /* the ember command's OpenMP policy (tools/ember.c), unless the caller chose one */
    if (!getenv("OMP_WAIT_POLICY") && !getenv("GOMP_SPINCOUNT")) {
        setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
        setenv("GOMP_SPINCOUNT", "10000", 1);
        execv("/proc/self/exe", argv);
    }
    const char *env = getenv("EMBER_NUM_THREADS");
    opt.threads = env && atoi(env) > 0 ? atoi(env) : 2;
    opt.reps = 5, opt.steps = 64, opt.model = opt.matmul = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--threads")) opt.threads = atoi(v), i++;
        else if (!strcmp(a, "--reps")) opt.reps = atoi(v), i++;
        else if (!strcmp(a, "--steps")) opt.steps = atoi(v), i++;
        else if (!strcmp(a, "--dtype") && (!strcmp(v, "bf16") || !strcmp(v, "f32"))) opt.bf16 = !strcmp(v, "bf16"), i++;
        else if (!strcmp(a, "--no-model")) opt.model = false;
        else if (!strcmp(a, "--no-matmul")) opt.matmul = false;
        else {
            fprintf(stderr, "usage: decode [--threads N] [--reps N] [--steps N] [--dtype f32|bf16] [--no-model] "
                    "[--no-matmul]\n");
            return 2;
        }
    }
    if (opt.threads < 1 || opt.reps < 1 || opt.reps >= MAXR || opt.steps < 1 || opt.steps > 900) {
        fprintf(stderr, "decode: need threads >= 1, 1 <= reps < %d, 1 <= steps <= 900\n", MAXR);
        return 2;
    }
    em_set_num_threads(opt.threads);
    omp_set_num_threads(opt.threads);
    openblas_set_num_threads(opt.threads);
    double load[3] = {0};
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = NAN;
        fclose(f);
    }
    printf("decode benchmark: %s, %d threads, medians of %d reps, %d decode steps; load average %.2f %.2f %.2f\n",
           opt.bf16 ? "bf16" : "f32", opt.threads, opt.reps, opt.steps, load[0], load[1], load[2]);
    double floor_ms = 0;
    if (opt.matmul) {
        scratch = malloc(scratch_n * sizeof(float));
        if (!scratch) return 1;
        for (size_t i = 0; i < scratch_n; i++) scratch[i] = (float)(i & 7);
        bench_matmul(&floor_ms);
        free(scratch);
    }
    if (opt.model) bench_model(floor_ms);
    return 0;
}
