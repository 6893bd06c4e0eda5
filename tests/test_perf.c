/* test_perf.c - the speed work's correctness: the caching allocator behind emb_alloc/emb_free
 * (src/base/base.c) and the few-rows GEMM path (src/ops/gemm.c, sgemm_gemv_cols).
 *
 * Allocator: alignment and no overlap for sizes across the small/large boundary and many size
 * classes; a freed large block is handed back for the next request of its class (and only then);
 * emb_calloc zeroes a reused, dirty block; the cap on cached bytes holds (a child process with
 * EMBER_ALLOC_CACHE_MB set, since the cap is read once); EMBER_ALLOC_CACHE=0 caches nothing;
 * concurrent allocation from OpenMP threads keeps every block's contents intact; tensors still
 * work on top of it. Under SANITIZE builds the cache is bypassed (plain malloc, so ASan sees every
 * block) and the reuse checks are skipped, which the stats report.
 *
 * GEMM: for 1..4 rows of A against B^T (rsb == 1, a linear layer's weight), the result equals bit
 * for bit the same rows of one call with many rows (the general packed path), for K below, at and
 * above the K block (several blocks), N not a multiple of 16, strided A and C, accumulate, and
 * 1 or 2 threads; and it agrees with a float64 reference.
 */
#include "harness.h"

#include "base/base.h"
#include "ops/gemm.h"

#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t rng = 88172645463325252ull;
static uint64_t next_u64(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}
static float uniform_f(void) { return (float)((double)(next_u64() >> 11) / 9007199254740992.0) * 2.0f - 1.0f; }

/* ---- allocator --------------------------------------------------------------------------------- */
static void check_alignment_and_contents(void) {
    static const size_t sizes[] = {0, 1, 63, 64, 65, 4000, 65472, 65473, 65536, 70000, 100000, 262144,
                                   1000000, 3 << 20, 5 << 20};
    enum { NS = sizeof sizes / sizeof sizes[0] };
    unsigned char *p[NS];
    bool aligned = true, intact = true;
    for (int i = 0; i < NS; i++) {
        p[i] = emb_alloc(sizes[i]);
        aligned &= p[i] != NULL && ((uintptr_t)p[i] & 63) == 0;
        if (p[i]) memset(p[i], i + 1, sizes[i]);
    }
    for (int i = 0; i < NS; i++)
        for (size_t k = 0; p[i] && k < sizes[i]; k += 997) intact &= p[i][k] == (unsigned char)(i + 1);
    TH_CHECK(aligned, "emb_alloc: every block is non-NULL and 64-byte aligned (sizes 0 .. 5 MiB)");
    TH_CHECK(intact, "emb_alloc: blocks do not overlap (each keeps its own fill pattern)");
    for (int i = 0; i < NS; i++) emb_free(p[i]);
    emb_free(NULL);
    TH_CHECK(emb_alloc((size_t)1 << 62) == NULL, "emb_alloc: an impossible size gives NULL, not a crash");
}

static void check_reuse(void) {
    emb_alloc_stats s0 = emb_alloc_get_stats();
    if (!s0.caching) {
        printf("note: the allocation cache is off here (sanitizer build or EMBER_ALLOC_CACHE=0): reuse checks skipped\n");
        return;
    }
    emb_alloc_trim();
    size_t n = (3u << 20) - 4096; /* a large block; n and n - 1000 share the 3 MiB class */
    unsigned char *a = emb_alloc(n);
    memset(a, 0xAB, n);
    emb_free(a);
    emb_alloc_stats s1 = emb_alloc_get_stats();
    TH_CHECK(s1.cached_bytes >= n, "a freed ~3 MiB block is cached (%zu bytes cached)", s1.cached_bytes);
    unsigned char *b = emb_alloc(n - 1000); /* the same size class */
    emb_alloc_stats s2 = emb_alloc_get_stats();
    TH_CHECK(b == a && s2.hits == s1.hits + 1, "the next request of the same class gets that block back (hit)");
    emb_free(b);
    unsigned char *c = emb_calloc(n);
    bool zero = c != NULL;
    for (size_t k = 0; c && k < n; k++) zero &= c[k] == 0;
    TH_CHECK(c == a && zero, "emb_calloc zeroes a reused, dirty block");
    emb_free(c);
    unsigned char *d = emb_alloc(2 * n); /* another class: a fresh block */
    emb_alloc_stats s3 = emb_alloc_get_stats();
    TH_CHECK(d != a && s3.misses == s2.misses + 1, "a request of another class does not take it");
    emb_free(d);
    void *small = emb_alloc(1000);
    emb_alloc_stats s4 = emb_alloc_get_stats();
    TH_CHECK(s4.hits == s3.hits && s4.misses == s3.misses, "small blocks (below %zu bytes) bypass the cache",
             s4.large_min);
    emb_free(small);
    emb_alloc_trim();
    TH_CHECK(emb_alloc_get_stats().cached_bytes == 0, "emb_alloc_trim empties the cache");
}

/* runs this program again as `test_perf MODE` with the environment variable set (the allocator
   reads it once, so a fork of this process would not see it); returns the child's exit status */
static int in_child(const char *var, const char *val, const char *mode) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        setenv(var, val, 1);
        execl("/proc/self/exe", "test_perf", mode, (char *)NULL);
        _exit(98);
    }
    int st = 0;
    return pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) ? WEXITSTATUS(st) : 99;
}

static int child_cap(void) { /* cap 8 MiB: freeing 4 x 3 MiB keeps at most 8 MiB */
    void *p[4];
    for (int i = 0; i < 4; i++) p[i] = emb_alloc(3u << 20);
    for (int i = 0; i < 4; i++) emb_free(p[i]);
    emb_alloc_stats s = emb_alloc_get_stats();
    return !s.caching ? 0 : s.cap_bytes == (8u << 20) && s.cached_bytes <= s.cap_bytes && s.cached_bytes > 0 ? 0 : 1;
}
static int child_off(void) {
    void *p = emb_alloc(3u << 20);
    emb_free(p);
    emb_alloc_stats s = emb_alloc_get_stats();
    return !s.caching && s.cached_bytes == 0 ? 0 : 1;
}

static void check_env_knobs(void) {
    TH_CHECK(in_child("EMBER_ALLOC_CACHE_MB", "8", "--child-cap") == 0,
             "EMBER_ALLOC_CACHE_MB=8: cached bytes stay under the 8 MiB cap");
    TH_CHECK(in_child("EMBER_ALLOC_CACHE", "0", "--child-off") == 0, "EMBER_ALLOC_CACHE=0: nothing is cached");
}

static void check_threads(void) {
    int bad = 0;
#pragma omp parallel for num_threads(4) reduction(+ : bad) schedule(dynamic, 1)
    for (int t = 0; t < 64; t++) {
        size_t n = ((size_t)(t % 7) + 1) * 50000u; /* 50 KB .. 350 KB: small and large classes */
        for (int r = 0; r < 20; r++) {
            unsigned char *p = emb_alloc(n);
            if (!p) {
                bad++;
                continue;
            }
            memset(p, t, n);
            for (size_t k = 0; k < n; k += 4099) bad += p[k] != (unsigned char)t;
            bad += p[n - 1] != (unsigned char)t;
            emb_free(p);
        }
    }
    TH_CHECK(bad == 0, "4 threads allocating and freeing 1,280 blocks: every block keeps its contents (%d bad)", bad);
}

static void check_tensors(void) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    double worst = 0;
    for (int r = 0; r < 3; r++) { /* the same big shapes again and again: served from the cache */
        em_tensor_t *x = em_randn((int64_t[]){300, 1000}, 2, EM_F32);
        em_tensor_t *y = em_sub(em_add(x, x), em_mul_scalar(x, 2.0));
        worst = fmax(worst, em_item(em_amax(em_abs(y), NULL, 0, false)));
    }
    em_scope_end(s);
    TH_CHECK(worst == 0, "tensors on reused blocks compute right: (x + x) - 2x == 0 exactly (got %g)", worst);
    TH_CHECK(em_live_tensors() == live, "no tensor leaked");
}

/* ---- the few-rows GEMM path -------------------------------------------------------------------- */
/* C (M x N) = A (M x K, row stride lda) @ B^T with B stored N x K (rsb = 1, csb = K) */
static void check_gemv(int64_t N, int64_t K, int rows, int lda_extra, int csc2, int accumulate, int parallel) {
    int64_t M = 24, lda = K + lda_extra, ldc = N * (csc2 ? 2 : 1);
    float *a = malloc(sizeof(float) * (size_t)(M * lda)), *b = malloc(sizeof(float) * (size_t)(N * K));
    float *full = malloc(sizeof(float) * (size_t)(M * ldc)), *few = malloc(sizeof(float) * (size_t)(M * ldc));
    for (int64_t i = 0; i < M * lda; i++) a[i] = uniform_f();
    for (int64_t i = 0; i < N * K; i++) b[i] = uniform_f();
    for (int64_t i = 0; i < M * ldc; i++) full[i] = few[i] = uniform_f(); /* what accumulate adds to */
    int64_t csc = csc2 ? 2 : 1;
    emk_sgemm(M, N, K, a, lda, 1, b, 1, K, full, ldc, csc, accumulate, parallel); /* the packed path */
    for (int64_t i0 = 0; i0 < M; i0 += rows) /* the same rows, a few at a time */
        emk_sgemm(EM_MIN(rows, M - i0), N, K, a + i0 * lda, lda, 1, b, 1, K, few + i0 * ldc, ldc, csc, accumulate,
                  parallel);
    bool same = memcmp(full, few, sizeof(float) * (size_t)(M * ldc)) == 0;
    double worst = 0; /* against float64, relative to sum |a||b| */
    for (int64_t i = 0; i < 3; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0, mag = 0;
            for (int64_t k = 0; k < K; k++) {
                s += (double)a[i * lda + k] * b[j * K + k];
                mag += fabs((double)a[i * lda + k] * b[j * K + k]);
            }
            double got = few[i * ldc + j * csc];
            if (accumulate) continue; /* the old C is gone; the bitwise check covers it */
            worst = fmax(worst, fabs(got - s) / (mag + 1e-30));
        }
    TH_CHECK(same && worst < 1e-5,
             "sgemm, %d row(s) at a time, N=%lld K=%lld%s%s%s, %s: bitwise equal to one %lld-row call (float64 "
             "error %.2g)",
             rows, (long long)N, (long long)K, lda_extra ? ", strided A" : "", csc2 ? ", strided C" : "",
             accumulate ? ", accumulate" : "", parallel ? "parallel" : "serial", (long long)M, worst);
    free(a), free(b), free(full), free(few);
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "--child-cap")) return child_cap();
    if (argc == 2 && !strcmp(argv[1], "--child-off")) return child_off();
    check_alignment_and_contents();
    check_reuse();
    check_env_knobs();
    check_threads();
    check_tensors();
    check_gemv(50, 16, 1, 0, 0, 0, 0);
    check_gemv(777, 768, 1, 0, 0, 0, 1);
    check_gemv(301, 1100, 2, 3, 0, 0, 1); /* K over the 512 block: three K blocks */
    check_gemv(129, 3072, 3, 0, 1, 0, 0);
    check_gemv(200, 515, 4, 5, 0, 1, 1);
    check_gemv(33, 7, 4, 0, 1, 1, 0);
    return th_summary();
}
