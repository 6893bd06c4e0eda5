/* Matrix-multiply benchmark: emk_sgemm (src/ops/gemm.c) against OpenBLAS cblas_sgemm on the same
   inputs, same thread count, same process. Each shape is "MxNxK" with an optional layout suffix:
   ":nn" (default, C = A @ B, all row-major), ":nt" (C = A @ W^T with W stored N x K, as in a
   linear layer's forward pass) or ":tn" (C = X^T @ B with X stored K x M, as in a weight
   gradient). Every timing is the median of several runs after a warm-up; the table reports
   GFLOP/s for both libraries, their ratio, the FLOPs (2MNK) and the compulsory bytes moved
   (4 * (MK + KN + MN)) per shape, plus the max relative difference between the two results.
   Threads: $EMBER_NUM_THREADS if set, else 2, applied to both OpenMP and OpenBLAS.
   Build: gcc -std=c11 -O3 -march=native -fopenmp -Isrc bench/matmul.c src/ops/gemm.c
          -lopenblas -lm -o /tmp/bench_matmul
   Usage: bench_matmul [MxNxK[:nn|:nt|:tn] ...]   (no arguments: 1024^3 plus GPT-2 shapes) */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "ops/gemm.h"

void openblas_set_num_threads(int num_threads); /* declared by OpenBLAS's cblas.h as well */

enum layout { NN, NT, TN };

typedef struct {
    int64_t M, N, K;
    enum layout lay;
} shape_t;

/* 1024^3, then GPT-2 small with 256 tokens: forward x @ W for every (N, K) in {768, 2304, 3072,
   50257} x {768, 3072} (the real layers are qkv 2304x768, proj 768x768, fc 3072x768, fc-proj
   768x3072, lm-head 50257x768), forward in nn.Linear layout x @ W^T, and weight gradients
   dW = dY^T @ X. */
static const char *const default_shapes[] = {
    "1024x1024x1024",   "256x768x768",      "256x2304x768",     "256x3072x768",
    "256x50257x768",    "256x768x3072",     "256x2304x3072",    "256x3072x3072",
    "256x50257x3072",   "256x2304x768:nt",  "256x768x3072:nt",  "256x50257x768:nt",
    "768x3072x256:tn",  "2304x768x256:tn",
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void pause_s(double seconds)
{
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&ts, NULL);
}

static int parse_shape(const char *s, shape_t *out)
{
    long long m, n, k;
    char lay[8] = "nn";
    int got = sscanf(s, "%lldx%lldx%lld:%7s", &m, &n, &k, lay);
    if (got < 3 || m < 0 || n < 0 || k < 0)
        return -1;
    out->M = m, out->N = n, out->K = k;
    if (!strcmp(lay, "nn"))
        out->lay = NN;
    else if (!strcmp(lay, "nt"))
        out->lay = NT;
    else if (!strcmp(lay, "tn"))
        out->lay = TN;
    else
        return -1;
    return 0;
}

static float *random_matrix(int64_t n, unsigned *seed)
{
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!p)
        return NULL;
    for (int64_t i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        p[i] = (float)((*seed >> 8) * (1.0 / 16777216.0)) - 0.5f;
    }
    return p;
}

/* The operands of one benchmark case. A is stored M x K (nn, nt) or K x M (tn); B is stored
   K x N (nn, tn) or N x K (nt). */
typedef struct {
    shape_t s;
    float *A, *B, *C_emk, *C_ref;
} bench_case_t;

static void run_ember(const bench_case_t *c)
{
    const shape_t *s = &c->s;
    int64_t rsa = s->K, csa = 1, rsb = s->N, csb = 1;
    if (s->lay == TN)
        rsa = 1, csa = s->M;
    if (s->lay == NT)
        rsb = 1, csb = s->K;
    emk_sgemm(s->M, s->N, s->K, c->A, rsa, csa, c->B, rsb, csb, c->C_emk, s->N, 1, 0, 1);
}

static void run_openblas(const bench_case_t *c)
{
    const shape_t *s = &c->s;
    int M = (int)s->M, N = (int)s->N, K = (int)s->K;
    enum CBLAS_TRANSPOSE ta = s->lay == TN ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE tb = s->lay == NT ? CblasTrans : CblasNoTrans;
    int lda = s->lay == TN ? (M > 1 ? M : 1) : (K > 1 ? K : 1);
    int ldb = s->lay == NT ? (K > 1 ? K : 1) : (N > 1 ? N : 1);
    cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, 1.0f, c->A, lda, c->B, ldb, 0.0f, c->C_ref,
                N > 1 ? N : 1);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median wall time of `fn`: one warm-up, then at least 5 runs and at least ~0.3 s (max 50). */
static double median_time(void (*fn)(const bench_case_t *), const bench_case_t *c)
{
    double t[50];
    int n = 0;
    fn(c);
    double start = now_s();
    while (n < 50 && (n < 5 || now_s() - start < 0.3)) {
        double t0 = now_s();
        fn(c);
        t[n++] = now_s() - t0;
    }
    qsort(t, (size_t)n, sizeof t[0], cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static double max_rel_diff(const float *x, const float *y, int64_t n)
{
    double worst = 0, scale = 1e-30;
    for (int64_t i = 0; i < n; i++)
        scale = fmax(scale, fabs((double)y[i]));
    for (int64_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)x[i] - (double)y[i]) / scale);
    return worst;
}

/* Benchmarks one shape and prints its table row; returns the ratio ember/openblas (0 on error). */
static double bench_shape(const char *name, shape_t s, double *gf_emk_out)
{
    static const char *const lay_name[] = {"nn", "nt", "tn"};
    unsigned seed = 12345u;
    bench_case_t c = {s, random_matrix(s.M * s.K, &seed), random_matrix(s.K * s.N, &seed),
                      malloc((size_t)(s.M * s.N + 1) * sizeof(float)),
                      malloc((size_t)(s.M * s.N + 1) * sizeof(float))};
    double ratio = 0;
    if (c.A && c.B && c.C_emk && c.C_ref) {
        /* Pauses let the other library's idle threads (OpenMP spin-wait, OpenBLAS's
           pthread pool spins for ~0.1 s after a call) go to sleep before timing starts. */
        pause_s(0.25);
        double t_emk = median_time(run_ember, &c);
        pause_s(0.05);
        double t_ref = median_time(run_openblas, &c);
        double flops = 2.0 * (double)s.M * (double)s.N * (double)s.K;
        double bytes = 4.0 * ((double)s.M * s.K + (double)s.K * s.N + (double)s.M * s.N);
        double gf_emk = flops / t_emk * 1e-9, gf_ref = flops / t_ref * 1e-9;
        ratio = gf_emk / gf_ref;
        *gf_emk_out = gf_emk;
        printf("%-20s %-3s %10.3f %10.1f %10.1f %10.1f %7.2fx %9.2e\n", name, lay_name[s.lay],
               flops * 1e-9, bytes / 1048576.0, gf_emk, gf_ref, ratio,
               max_rel_diff(c.C_emk, c.C_ref, s.M * s.N));
    } else {
        printf("%-20s out of memory\n", name);
    }
    free(c.A), free(c.B), free(c.C_emk), free(c.C_ref);
    return ratio;
}

int main(int argc, char **argv)
{
    int threads = 2;
    const char *env = getenv("EMBER_NUM_THREADS");
    if (env && atoi(env) > 0)
        threads = atoi(env);
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    openblas_set_num_threads(threads);

    int nshapes = argc > 1 ? argc - 1 : (int)(sizeof default_shapes / sizeof default_shapes[0]);
    const char *const *names = argc > 1 ? (const char *const *)(argv + 1) : default_shapes;
    printf("threads=%d  (GFLOP/s: median of >=5 runs; bytes = 4*(MK+KN+MN))\n", threads);
    printf("%-20s %-3s %10s %10s %10s %10s %8s %9s\n", "shape MxNxK", "lay", "GFLOP", "MiB",
           "ember", "openblas", "ratio", "maxrel");
    double log_ratio = 0, log_gf = 0;
    int counted = 0;
    for (int i = 0; i < nshapes; i++) {
        shape_t s;
        if (parse_shape(names[i], &s) != 0) {
            fprintf(stderr, "bad shape '%s' (want MxNxK[:nn|:nt|:tn])\n", names[i]);
            return 2;
        }
        double gf = 0, r = bench_shape(names[i], s, &gf);
        if (r > 0)
            log_ratio += log(r), log_gf += log(gf), counted++;
    }
    if (counted)
        printf("geomean: ember %.1f GFLOP/s, ratio ember/openblas %.2fx\n", exp(log_gf / counted),
               exp(log_ratio / counted));
    return 0;
}
