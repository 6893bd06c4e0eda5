/* codegen.c - eager vs compiled (backend "c") on two transformer blocks, with cold and warm
 * compile times.
 *
 *     make BUILD=build-cg build-cg/libember.a
 *     cc -std=c11 -O2 -fopenmp -Iinclude bench/codegen.c build-cg/libember.a -lm -ldl -lpthread \
 *        -o build-cg/bench-codegen && build-cg/bench-codegen
 *
 * Blocks (f32, B*T = 256 rows, C = 768):
 *   mlp:        x + W2 gelu(W1 x + b1) + b2        (W1: 3072 x 768, W2: 768 x 3072)
 *   ln_softmax: softmax(layer_norm(x, w, b) * 0.125, -1)
 * Times are the best of 5 batches. Cold compile: an empty cache directory (trace + lower + schedule + gcc + dlopen). Warm: the same
 * program again from the disk cache (what a second process pays).
 */
#define _GNU_SOURCE
#include <ember.h>

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

static em_tensor_t *P[8];

static em_status mlp(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    (void)ctx, (void)n_in, (void)n_out;
    em_tensor_t *x = in[0];
    out[0] = em_add(x, em_linear(em_gelu(em_linear(x, P[0], P[1])), P[2], P[3]));
    return out[0] ? EM_OK : em_last_status();
}

static em_status ln_softmax(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    (void)ctx, (void)n_in, (void)n_out;
    out[0] = em_softmax(em_mul_scalar(em_layer_norm(in[0], P[4], P[5], 1e-5), 0.125), -1);
    return out[0] ? EM_OK : em_last_status();
}

typedef em_status (*fn_t)(void *, em_tensor_t *const *, int, em_tensor_t **, int);

static double time_eager(fn_t fn, em_tensor_t *x, int iters) {
    for (int i = 0; i < 3; i++) {
        em_scope_t *s = em_scope_begin();
        em_tensor_t *o;
        fn(NULL, &x, 1, &o, 1);
        em_scope_end(s);
    }
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) { /* the best of 5 batches: robust to a busy machine */
        double t0 = now_ms();
        for (int i = 0; i < iters; i++) {
            em_scope_t *s = em_scope_begin();
            em_tensor_t *o;
            fn(NULL, &x, 1, &o, 1);
            em_scope_end(s);
        }
        double t = (now_ms() - t0) / iters;
        best = t < best ? t : best;
    }
    return best;
}

static double time_compiled(em_compiled_t *f, em_tensor_t *x, int iters) {
    for (int i = 0; i < 3; i++) {
        em_scope_t *s = em_scope_begin();
        em_tensor_t *o;
        em_call(f, &x, 1, &o, 1);
        em_scope_end(s);
    }
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now_ms();
        for (int i = 0; i < iters; i++) {
            em_scope_t *s = em_scope_begin();
            em_tensor_t *o;
            em_call(f, &x, 1, &o, 1);
            em_scope_end(s);
        }
        double t = (now_ms() - t0) / iters;
        best = t < best ? t : best;
    }
    return best;
}

static void bench(const char *name, fn_t fn, em_tensor_t *x, int iters) {
    em_compile_opts o = {.backend = "c", .fullgraph = true};
    em_compiled_t *cold = em_compile(fn, NULL, &o);
    em_scope_t *s = em_scope_begin();
    em_tensor_t *a = NULL, *b = NULL;
    em_call(cold, &x, 1, &a, 1);
    fn(NULL, &x, 1, &b, 1);
    double diff = em_item(em_amax(em_abs(em_sub(a, b)), NULL, 0, false));
    em_scope_end(s);
    em_compile_stats cs = em_compiled_stats(cold);
    em_compiled_t *warm = em_compile(fn, NULL, &o);
    s = em_scope_begin();
    em_call(warm, &x, 1, &a, 1);
    em_scope_end(s);
    em_compile_stats ws = em_compiled_stats(warm);
    double te = time_eager(fn, x, iters), tc = time_compiled(warm, x, iters);
    printf("%-11s eager %8.3f ms   compiled %8.3f ms   speedup %5.2fx   kernels %d   max |diff| %.2g\n", name, te, tc,
           te / tc, ws.kernels, diff);
    printf("%-11s compile: cold %.0f ms (disk hits %d), warm %.1f ms (disk hits %d)\n", "", cs.compile_ms,
           cs.disk_cache_hits, ws.compile_ms, ws.disk_cache_hits);
    em_compiled_free(cold);
    em_compiled_free(warm);
}

int main(void) {
    char dir[] = "/tmp/ember-bench-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    setenv("EMBER_CACHE_DIR", dir, 1);
    em_manual_seed(1);
    int64_t R = 256, C = 768, H = 4 * C;
    P[0] = em_mul_scalar(em_randn((int64_t[]){H, C}, 2, EM_F32), 0.03);
    P[1] = em_mul_scalar(em_randn((int64_t[]){H}, 1, EM_F32), 0.1);
    P[2] = em_mul_scalar(em_randn((int64_t[]){C, H}, 2, EM_F32), 0.03);
    P[3] = em_mul_scalar(em_randn((int64_t[]){C}, 1, EM_F32), 0.1);
    P[4] = em_add_scalar(em_mul_scalar(em_randn((int64_t[]){C}, 1, EM_F32), 0.1), 1.0);
    P[5] = em_mul_scalar(em_randn((int64_t[]){C}, 1, EM_F32), 0.1);
    em_tensor_t *x = em_randn((int64_t[]){R, C}, 2, EM_F32);
    printf("threads: %d, rows %lld, C %lld\n", em_get_num_threads(), (long long)R, (long long)C);
    bench("mlp", mlp, x, 20);
    bench("ln_softmax", ln_softmax, x, 500);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (getenv("EMBER_BENCH_KEEP")) printf("generated sources kept in %s\n", dir);
    else if (system(cmd) != 0) return 1;
    return 0;
}
