/* Machine ceilings for docs/performance.md: f32 FMA peak and memory bandwidth, on 1 thread and on
   N threads (--threads, else $EMBER_NUM_THREADS, else 2).

   FMA peak: each thread runs a loop of independent fused multiply-adds on 12 vector accumulators
   of the widest width the build targets (AVX-512: 16 floats, AVX2+FMA: 8), enough to cover the
   FMA latency on two pipes; a flop is 2 per lane per FMA. Memory: STREAM-style kernels over
   arrays of 64 Mi floats (256 MiB each, far beyond any cache): "read" sums one array (bytes
   read; an OpenMP simd reduction, so the sum is not bound by the add latency), "copy" a[i] = b[i]
   (8 bytes per element) and "triad" a[i] = b[i] + s c[i] (12 bytes per element, as STREAM counts
   them; write-allocate makes the real traffic of the stores twice that). Every figure is the
   best of 5 runs (ceilings, not typical values), after a first touch of every page by the same
   threads. Build: make build/bench/roofline. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#if defined(__AVX512F__)
#define LANES 16
typedef __m512 vec;
#define VSET1(x) _mm512_set1_ps(x)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VADD(a, b) _mm512_add_ps(a, b)
#define VSUM(a) _mm512_reduce_add_ps(a)
#elif defined(__FMA__)
#define LANES 8
typedef __m256 vec;
#define VSET1(x) _mm256_set1_ps(x)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VADD(a, b) _mm256_add_ps(a, b)
static float VSUM(__m256 a) {
    float t[8];
    _mm256_storeu_ps(t, a);
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
#else
#define LANES 1
typedef float vec;
#define VSET1(x) (x)
#define VFMA(a, b, c) ((a) * (b) + (c))
#define VADD(a, b) ((a) + (b))
#define VSUM(a) (a)
#endif

#define ACC 12
static float fma_loop(long iters, float seed) {
    vec acc[ACC], m = VSET1(0.999999f), d = VSET1(1e-7f);
    for (int k = 0; k < ACC; k++) acc[k] = VSET1(seed + (float)k);
    for (long i = 0; i < iters; i++)
        for (int k = 0; k < ACC; k++) acc[k] = VFMA(acc[k], m, d);
    vec s = acc[0];
    for (int k = 1; k < ACC; k++) s = VADD(s, acc[k]);
    return VSUM(s);
}

static double fma_peak(int nth) {
    const long iters = 20 * 1000 * 1000;
    double best = 0;
    volatile float sink = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now_s();
        float s = 0;
#pragma omp parallel for num_threads(nth) reduction(+ : s)
        for (int t = 0; t < nth; t++) s += fma_loop(iters, (float)t);
        double dt = now_s() - t0;
        sink = sink + s;
        double gf = (double)nth * iters * ACC * LANES * 2 / dt * 1e-9;
        if (gf > best) best = gf;
    }
    return best;
}

#define N (64L * 1024 * 1024)
static double stream(int kind, int nth, float *a, float *b, float *c) {
    double best = 0;
    volatile float sink = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now_s(), bytes;
        if (kind == 0) {
            float s = 0;
#pragma omp parallel for simd num_threads(nth) reduction(+ : s) schedule(static)
            for (long i = 0; i < N; i++) s += b[i];
            sink = sink + s;
            bytes = 4.0 * N;
        } else if (kind == 1) {
#pragma omp parallel for num_threads(nth) schedule(static)
            for (long i = 0; i < N; i++) a[i] = b[i] + 3.0f * c[i];
            bytes = 12.0 * N;
        } else {
#pragma omp parallel for num_threads(nth) schedule(static)
            for (long i = 0; i < N; i++) a[i] = b[i];
            bytes = 8.0 * N;
        }
        double gbs = bytes / (now_s() - t0) * 1e-9;
        if (gbs > best) best = gbs;
    }
    return best;
}

int main(int argc, char **argv) {
    const char *e = getenv("EMBER_NUM_THREADS");
    int nth = e && atoi(e) > 0 ? atoi(e) : 2;
    if (argc == 3 && !strcmp(argv[1], "--threads")) nth = atoi(argv[2]);
    if (nth < 1 || (argc != 1 && argc != 3)) {
        fprintf(stderr, "usage: roofline [--threads N]\n");
        return 2;
    }
    float *a = aligned_alloc(64, N * sizeof(float)), *b = aligned_alloc(64, N * sizeof(float)),
          *c = aligned_alloc(64, N * sizeof(float));
    if (!a || !b || !c) {
        fprintf(stderr, "roofline: cannot allocate 3 x 256 MiB\n");
        return 1;
    }
#pragma omp parallel for num_threads(nth) schedule(static)
    for (long i = 0; i < N; i++) a[i] = 0, b[i] = 1, c[i] = 2; /* first touch, by the same threads */

    FILE *la = fopen("/proc/loadavg", "r");
    char load[128] = "?";
    if (la && fgets(load, sizeof load, la)) load[strcspn(load, "\n")] = 0;
    if (la) fclose(la);
    printf("machine ceilings (best of 5), %d-float vectors; load %s\n", LANES, load);
    printf("%-34s %12s %12s\n", "", "1 thread", "threads");
    printf("%-34s %12.1f %12.1f   (%d threads)\n", "f32 FMA peak (GFLOP/s)", fma_peak(1), fma_peak(nth), nth);
    printf("%-34s %12.1f %12.1f\n", "memory read, sum (GB/s)", stream(0, 1, a, b, c), stream(0, nth, a, b, c));
    printf("%-34s %12.1f %12.1f\n", "memory copy (GB/s, 8 B/elem)", stream(2, 1, a, b, c), stream(2, nth, a, b, c));
    printf("%-34s %12.1f %12.1f\n", "memory triad (GB/s, 12 B/elem)", stream(1, 1, a, b, c), stream(1, nth, a, b, c));
    free(a), free(b), free(c);
    return 0;
}
