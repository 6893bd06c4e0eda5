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
   Usage: bench_matmul [MxNxK[:nn|:nt|:tn] ...]   (no arguments: 1024^3 plus GPT-2 shapes)

   bf16 tables (src/ops/gemm_bf16.c), after the f32 one when run without arguments, or alone with
   --bf16 [shapes] / --decode:
   - mixed precision at the GPT-2 training shapes (M = 256 tokens; nn, nt = x @ W^T, tn = dW):
     GFLOP/s of emk_gemm EMK_MM_BF16 with f32 operands (rounded to bf16 while packing: how
     training calls it) and with bf16 operands, f32 C; emk_sgemm and OpenBLAS cblas_sgemm in the
     same run, and the ratios of the f32-operand bf16 GEMM to both. Debian's OpenBLAS has no
     sbgemm (bf16 GEMM), so the peer is its f32 sgemm. MiB = the bf16 operand bytes
     2 (MK + KN) + 4 MN; maxrel = max |bf16 GEMM - sgemm| / max |sgemm| (bf16 rounding of the
     inputs, ~2^-8 / sqrt-ish, not an error).
   - decode: y (1 x N) = x (1 x K) @ W^T with W (N x K) in bf16, GB/s of weight streaming
     (2 N K bytes over the call time; each call's weights evicted from cache first by a 64 MiB
     sweep, as bench/decode does) for EMK_MM_BF16 (vdpbf16ps) and EMK_MM_EXACT (widened, f32
     FMAs), against emk_sgemm's f32 gemv on f32 W (4 N K bytes); "speedup" is the f32 time over
     the bf16 (BF16 mode) time. */
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

/* ---- bf16 tables ------------------------------------------------------------------------------ */

static const char *const bf16_shapes[] = {
    "256x768x768",     "256x2304x768",    "256x3072x768",    "256x768x3072",    "256x50257x768",
    "256x2304x768:nt", "256x3072x768:nt", "256x768x3072:nt", "256x50257x768:nt", "768x768x256:tn",
    "2304x768x256:tn", "3072x768x256:tn", "768x3072x256:tn", "50257x768x256:tn",
};

static uint16_t to_bf16(float f) /* nearest even */
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

typedef struct {
    bench_case_t f; /* f32 operands, C_emk: sgemm result, C_ref: OpenBLAS */
    uint16_t *Ah, *Bh;
    float *C_bf;
    int bf16_in;
} bf16_case_t;

static void strides(const shape_t *s, int64_t *rsa, int64_t *csa, int64_t *rsb, int64_t *csb)
{
    *rsa = s->K, *csa = 1, *rsb = s->N, *csb = 1;
    if (s->lay == TN)
        *rsa = 1, *csa = s->M;
    if (s->lay == NT)
        *rsb = 1, *csb = s->K;
}

static void run_bf16(const bench_case_t *c)
{
    const bf16_case_t *b = (const bf16_case_t *)c;
    const shape_t *s = &c->s;
    int64_t rsa, csa, rsb, csb;
    strides(s, &rsa, &csa, &rsb, &csb);
    if (b->bf16_in)
        emk_gemm(s->M, s->N, s->K, b->Ah, EMK_BF16, rsa, csa, b->Bh, EMK_BF16, rsb, csb, b->C_bf,
                 EMK_F32, s->N, 1, 0, EMK_MM_BF16, 1);
    else
        emk_gemm(s->M, s->N, s->K, c->A, EMK_F32, rsa, csa, c->B, EMK_F32, rsb, csb, b->C_bf,
                 EMK_F32, s->N, 1, 0, EMK_MM_BF16, 1);
}

static void bench_bf16_shape(const char *name, shape_t s, double *log_r1, double *log_r2)
{
    static const char *const lay_name[] = {"nn", "nt", "tn"};
    unsigned seed = 12345u;
    int64_t na = s.M * s.K, nb = s.K * s.N, nc = s.M * s.N;
    bf16_case_t b = {{s, random_matrix(na, &seed), random_matrix(nb, &seed),
                      malloc((size_t)(nc + 1) * sizeof(float)), malloc((size_t)(nc + 1) * sizeof(float))},
                     malloc((size_t)(na + 1) * 2), malloc((size_t)(nb + 1) * 2),
                     malloc((size_t)(nc + 1) * sizeof(float)), 0};
    if (b.f.A && b.f.B && b.f.C_emk && b.f.C_ref && b.Ah && b.Bh && b.C_bf) {
        for (int64_t i = 0; i < na; i++) b.Ah[i] = to_bf16(b.f.A[i]);
        for (int64_t i = 0; i < nb; i++) b.Bh[i] = to_bf16(b.f.B[i]);
        pause_s(0.25);
        double t_bf = median_time(run_bf16, &b.f);
        b.bf16_in = 1;
        double t_bh = median_time(run_bf16, &b.f);
        b.bf16_in = 0;
        run_bf16(&b.f);
        double t_emk = median_time(run_ember, &b.f);
        pause_s(0.05);
        double t_ref = median_time(run_openblas, &b.f);
        double flops = 2.0 * (double)s.M * (double)s.N * (double)s.K;
        double bytes = 2.0 * ((double)s.M * s.K + (double)s.K * s.N) + 4.0 * (double)s.M * s.N;
        double g_bf = flops / t_bf * 1e-9, g_bh = flops / t_bh * 1e-9;
        double g_emk = flops / t_emk * 1e-9, g_ref = flops / t_ref * 1e-9;
        *log_r1 += log(g_bf / g_emk), *log_r2 += log(g_bf / g_ref);
        printf("%-20s %-3s %8.3f %8.1f %9.1f %9.1f %9.1f %9.1f %7.2fx %7.2fx %9.2e\n", name,
               lay_name[s.lay], flops * 1e-9, bytes / 1048576.0, g_bf, g_bh, g_emk, g_ref,
               g_bf / g_emk, g_bf / g_ref, max_rel_diff(b.C_bf, b.f.C_emk, nc));
    } else {
        printf("%-20s out of memory\n", name);
    }
    free(b.f.A), free(b.f.B), free(b.f.C_emk), free(b.f.C_ref), free(b.Ah), free(b.Bh), free(b.C_bf);
}

static int bf16_table(int n, const char *const *names)
{
    printf("\nbf16 mixed precision (emk_gemm EMK_MM_BF16, f32 C; GFLOP/s, median of >=5 runs; "
           "OpenBLAS has no sbgemm: its column is f32 sgemm)\n");
    printf("%-20s %-3s %8s %8s %9s %9s %9s %9s %8s %8s %9s\n", "shape MxNxK", "lay", "GFLOP",
           "MiB", "bf16:f32", "bf16:bf16", "sgemm", "openblas", "/sgemm", "/oblas", "maxrel");
    double l1 = 0, l2 = 0;
    for (int i = 0; i < n; i++) {
        shape_t s;
        if (parse_shape(names[i], &s) != 0) {
            fprintf(stderr, "bad shape '%s' (want MxNxK[:nn|:nt|:tn])\n", names[i]);
            return 2;
        }
        bench_bf16_shape(names[i], s, &l1, &l2);
    }
    if (n)
        printf("geomean ratio of bf16 (f32 operands): %.2fx emk_sgemm, %.2fx OpenBLAS sgemm\n",
               exp(l1 / n), exp(l2 / n));
    return 0;
}

static volatile float evict_sink;

static void evict_caches(float *scratch, size_t n)
{
    float s = 0;
    for (size_t i = 0; i < n; i += 16)
        scratch[i] += 1.0f, s += scratch[i];
    evict_sink = s;
}

/* median seconds of one decode GEMV (M = 1 against W^T), weights evicted before each call */
static double decode_time(int64_t N, int64_t K, const void *W, emk_type tw, emk_mm_mode mode,
                          const float *x, float *y, float *scratch, size_t nscratch)
{
    double t[15];
    for (int r = 0; r < 15; r++) {
        evict_caches(scratch, nscratch);
        double t0 = now_s();
        if (tw == EMK_F32 && mode == EMK_MM_EXACT)
            emk_sgemm(1, N, K, x, K, 1, W, 1, K, y, N, 1, 0, 1);
        else
            emk_gemm(1, N, K, x, EMK_F32, K, 1, W, tw, 1, K, y, EMK_F32, N, 1, 0, mode, 1);
        t[r] = now_s() - t0;
    }
    qsort(t + 1, 14, sizeof t[0], cmp_double);
    return 0.5 * (t[7] + t[8]);
}

static int decode_table(void)
{
    static const struct { const char *name; int64_t N, K; } layers[] = {
        {"qkv", 2304, 768}, {"fc", 3072, 768}, {"fc-proj", 768, 3072}, {"lm-head", 50257, 768},
    };
    size_t nscratch = (size_t)64 << 18; /* 64 MiB of floats */
    float *scratch = calloc(nscratch, sizeof(float));
    if (!scratch)
        return 2;
    printf("\ndecode: y = x @ W^T, M = 1, W (N x K) bf16 vs f32; weight GB/s, cold weights (64 MiB "
           "sweep before each call), median of 14\n");
    printf("%-8s %-12s %10s %10s %10s %10s %8s\n", "layer", "W NxK", "bf16 MiB", "BF16 GB/s",
           "EXACT GB/s", "f32 GB/s", "speedup");
    for (size_t l = 0; l < sizeof layers / sizeof layers[0]; l++) {
        int64_t N = layers[l].N, K = layers[l].K;
        unsigned seed = 777u;
        float *W = random_matrix(N * K, &seed), *x = random_matrix(K, &seed);
        float *y = malloc((size_t)N * sizeof(float));
        uint16_t *Wh = malloc((size_t)(N * K) * 2);
        if (!W || !x || !y || !Wh) {
            printf("%-8s out of memory\n", layers[l].name);
        } else {
            for (int64_t i = 0; i < N * K; i++) Wh[i] = to_bf16(W[i]);
            double tb = decode_time(N, K, Wh, EMK_BF16, EMK_MM_BF16, x, y, scratch, nscratch);
            double te = decode_time(N, K, Wh, EMK_BF16, EMK_MM_EXACT, x, y, scratch, nscratch);
            double tf = decode_time(N, K, W, EMK_F32, EMK_MM_EXACT, x, y, scratch, nscratch);
            double hb = 2.0 * (double)N * (double)K;
            char dims[32];
            snprintf(dims, sizeof dims, "%lldx%lld", (long long)N, (long long)K);
            printf("%-8s %-12s %10.1f %10.1f %10.1f %10.1f %7.2fx\n", layers[l].name, dims,
                   hb / 1048576.0, hb / tb * 1e-9, hb / te * 1e-9, 2.0 * hb / tf * 1e-9, tf / tb);
        }
        free(W), free(x), free(y), free(Wh);
    }
    free(scratch);
    return 0;
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

    if (argc > 1 && !strcmp(argv[1], "--bf16")) {
        printf("threads=%d\n", threads);
        return argc > 2 ? bf16_table(argc - 2, (const char *const *)(argv + 2))
                        : bf16_table((int)(sizeof bf16_shapes / sizeof bf16_shapes[0]), bf16_shapes);
    }
    if (argc > 1 && !strcmp(argv[1], "--decode")) {
        printf("threads=%d\n", threads);
        return decode_table();
    }
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
    if (argc == 1) {
        int rc = bf16_table((int)(sizeof bf16_shapes / sizeof bf16_shapes[0]), bf16_shapes);
        return rc ? rc : decode_table();
    }
    return 0;
}
