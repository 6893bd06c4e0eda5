/* base.c - errors as values, the internal-bug path, the caching allocator, logging, threads.
 *
 * The error message is thread-local so concurrent users of the library do not see each
 * other's failures; each failing call overwrites it and successful calls leave it alone
 * (like errno), so a caller checks the return value first and reads the message after.
 */
#include "base.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static _Thread_local char err_msg[1024];
static _Thread_local em_status err_status;

const char *em_last_error(void) { return err_msg; }
em_status em_last_status(void) { return err_status; }
void em_clear_error(void) { err_msg[0] = 0; err_status = EM_OK; }

const char *em_status_name(em_status s) {
    static const char *names[] = {"EM_OK", "EM_ERR_SHAPE", "EM_ERR_DTYPE", "EM_ERR_ARG",
                                  "EM_ERR_INDEX", "EM_ERR_IO", "EM_ERR_FORMAT", "EM_ERR_OOM",
                                  "EM_ERR_COMPILE", "EM_ERR_BACKEND", "EM_ERR_AUTOGRAD",
                                  "EM_ERR_STATE"};
    if ((int)s < 0 || (int)s >= EM_ARRAY_LEN(names)) return "EM_ERR_UNKNOWN";
    return names[s];
}

static void vset(em_status s, const char *fmt, va_list ap) {
    vsnprintf(err_msg, sizeof err_msg, fmt, ap);
    err_status = s;
    if (emb_log_on("errors")) fprintf(stderr, "[ember errors] %s: %s\n", em_status_name(s), err_msg);
}

em_status em_seterr(em_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vset(s, fmt, ap);
    va_end(ap);
    return s;
}

void *em_seterr_null(em_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vset(s, fmt, ap);
    va_end(ap);
    return NULL;
}

void em_die(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "ember: %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    abort();
}

/* ---- memory ---------------------------------------------------------------------------------
 * emb_alloc and emb_free are a small caching allocator, like PyTorch's CUDA caching allocator on
 * the CPU. An eager training step allocates and frees the same few hundred large tensors every
 * step; straight from malloc each one is a fresh mapping (glibc mmaps big blocks and trims its
 * heap), so the kernel faults in and zeroes every page of every temporary again, which measured
 * as most of an eager GPT-2 step. Here a block of LARGE_MIN bytes or more is its own mmap and,
 * when freed, goes on a free list for its size class instead of back to the kernel; the next
 * request of that class takes it back with its pages still mapped.
 *
 * - Size classes: four per power of two (2^k, 1.25, 1.5, 1.75 x 2^k), so a block serves every
 *   request that rounds to its class and wastes under 25% of address space (untouched pages of a
 *   mapping cost no memory). Blocks are only ever reused within their class.
 * - Every block starts with a 64-byte header (magic, class, mapping size) so emb_free finds its
 *   class; small blocks (posix_memalign) carry it too, marked small, so one emb_free serves both.
 * - One mutex guards the lists (large allocations are few per op; kernels never allocate in
 *   their inner loops). The cached bytes are capped ($EMBER_ALLOC_CACHE_MB, default a quarter of
 *   physical memory, at most 8 GiB): a block that would push the cache over the cap evicts cached
 *   blocks of other classes, largest class first, then, if still over, is unmapped itself. A
 *   failed mmap empties the cache and tries once more. At exit the cache is unmapped.
 * - Mappings of 4 MiB and more ask for transparent huge pages (madvise), which the kernel grants
 *   where THP is in "madvise" mode: one fault per 2 MiB instead of per 4 KiB.
 * - $EMBER_ALLOC_CACHE=0 turns caching off (large blocks are unmapped when freed).
 * - Under AddressSanitizer (SANITIZE=1 builds) everything goes straight to posix_memalign and
 *   free, so leaks, double frees and use after free stay visible to the sanitizer.
 */
#if defined(__SANITIZE_ADDRESS__)
#define EMB_ALLOC_PLAIN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMB_ALLOC_PLAIN 1
#endif
#endif

#ifdef EMB_ALLOC_PLAIN
void *emb_alloc(size_t nbytes) {
    if (nbytes > ((size_t)1 << 50)) return NULL; /* as below; ASan would abort on such a request */
    size_t n = (nbytes + 63) & ~(size_t)63;
    if (n == 0) n = 64;
    if (n < nbytes) return NULL; /* wrapped */
    void *p = NULL;
    if (posix_memalign(&p, 64, n) != 0) return NULL;
    return p;
}

void emb_free(void *p) { free(p); }

emb_alloc_stats emb_alloc_get_stats(void) {
    return (emb_alloc_stats){.caching = false};
}

void emb_alloc_trim(void) {}
#else

#define HDR 64                     /* header bytes before every block (keeps 64-byte alignment) */
#define LARGE_MIN ((size_t)1 << 16) /* blocks of this many bytes or more are mapped and cached */
#define N_CLASS 256
#define MAGIC_SMALL 0x454d42534d4c4c31ull /* "EMBSMLL1" */
#define MAGIC_LARGE 0x454d424c52474531ull /* "EMBLRGE1" */

typedef struct blk {
    uint64_t magic;
    size_t map_bytes;  /* the whole mapping, header included (large) */
    int cls;           /* size class (large) */
    struct blk *next;  /* free-list link while cached */
} blk;
_Static_assert(sizeof(blk) <= HDR, "the block header must fit in HDR bytes");

static struct {
    pthread_mutex_t mu;
    bool init, caching;
    size_t cap, cached;
    blk *free_list[N_CLASS];
    int64_t hits, misses, evictions, maps, unmaps;
    size_t peak_cached;
} A = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* the class of a request of n bytes (header included) and that class's block size */
static int class_of(size_t n) {
    int k = 63 - __builtin_clzll((unsigned long long)n); /* 2^k <= n < 2^(k+1) */
    size_t base = (size_t)1 << k, quarter = base >> 2;
    int q = (int)((n - base + quarter - 1) / quarter); /* 0..4 quarters above 2^k, rounded up */
    return 4 * k + q;                                   /* q == 4 is class 4(k+1), the next power */
}
static size_t class_bytes(int cls) {
    int k = cls / 4, q = cls % 4;
    size_t base = (size_t)1 << k;
    return base + (size_t)q * (base >> 2);
}

static void alloc_exit(void) { emb_alloc_trim(); }

static void alloc_init_locked(void) {
    if (A.init) return;
    A.init = true;
    const char *e = getenv("EMBER_ALLOC_CACHE");
    A.caching = !(e && !strcmp(e, "0"));
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    size_t phys = pages > 0 && psz > 0 ? (size_t)pages * (size_t)psz : (size_t)8 << 30;
    A.cap = EM_MIN(phys / 4, (size_t)8 << 30);
    const char *mb = getenv("EMBER_ALLOC_CACHE_MB");
    if (mb && *mb) A.cap = (size_t)strtoull(mb, NULL, 10) << 20;
    if (A.cap == 0) A.caching = false;
    atexit(alloc_exit);
}

static void unmap_block(blk *b) {
    A.unmaps++;
    munmap(b, b->map_bytes);
}

/* drops cached blocks, largest class first, until `need` more bytes fit under the cap (need 0
   with cap 0 empties the cache); returns whether they fit. Caller holds the lock. */
static bool evict_locked(size_t need, size_t cap) {
    for (int c = N_CLASS - 1; c >= 0 && A.cached + need > cap; c--) {
        while (A.free_list[c] && A.cached + need > cap) {
            blk *b = A.free_list[c];
            A.free_list[c] = b->next;
            A.cached -= b->map_bytes;
            A.evictions++;
            unmap_block(b);
        }
    }
    return A.cached + need <= cap;
}

void *emb_alloc(size_t nbytes) {
    if (nbytes > ((size_t)1 << 50)) return NULL; /* also keeps the rounding below from wrapping */
    size_t n = ((nbytes + 63) & ~(size_t)63) + HDR;
    if (n < LARGE_MIN) {
        void *p = NULL;
        if (posix_memalign(&p, 64, n) != 0) return NULL;
        ((blk *)p)->magic = MAGIC_SMALL;
        return (char *)p + HDR;
    }
    int cls = class_of(n);
    size_t bytes = class_bytes(cls);
    EM_ASSERT(cls < N_CLASS && bytes >= n);
    pthread_mutex_lock(&A.mu);
    alloc_init_locked();
    blk *b = A.free_list[cls];
    if (b) {
        A.free_list[cls] = b->next;
        A.cached -= b->map_bytes;
        A.hits++;
    } else {
        A.misses++;
        A.maps++;
    }
    pthread_mutex_unlock(&A.mu);
    if (!b) {
        void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) { /* give the cache back to the kernel and try once more */
            emb_alloc_trim();
            p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED) return NULL;
        }
#ifdef MADV_HUGEPAGE
        /* big blocks in 2 MiB pages where the kernel allows it: 512x fewer faults and TLB misses */
        if (bytes >= ((size_t)4 << 20)) madvise(p, bytes, MADV_HUGEPAGE);
#endif
        b = p;
        b->map_bytes = bytes;
        b->cls = cls;
    }
    b->magic = MAGIC_LARGE;
    b->next = NULL;
    return (char *)b + HDR;
}

void emb_free(void *p) {
    if (!p) return;
    blk *b = (blk *)(void *)((char *)p - HDR);
    if (b->magic == MAGIC_SMALL) {
        b->magic = 0;
        free(b);
        return;
    }
    if (b->magic != MAGIC_LARGE) em_die(__FILE__, __LINE__, "emb_free: %p is not a live emb_alloc block", p);
    b->magic = 0; /* a second emb_free of the block dies above instead of corrupting a list */
    pthread_mutex_lock(&A.mu);
    alloc_init_locked();
    bool keep = A.caching && b->map_bytes <= A.cap && evict_locked(b->map_bytes, A.cap);
    if (keep) {
        b->next = A.free_list[b->cls];
        A.free_list[b->cls] = b;
        A.cached += b->map_bytes;
        if (A.cached > A.peak_cached) A.peak_cached = A.cached;
    } else {
        A.unmaps++;
    }
    pthread_mutex_unlock(&A.mu);
    if (!keep) munmap(b, b->map_bytes);
}

emb_alloc_stats emb_alloc_get_stats(void) {
    pthread_mutex_lock(&A.mu);
    alloc_init_locked();
    emb_alloc_stats s = {.caching = A.caching, .cap_bytes = A.cap, .cached_bytes = A.cached,
                         .peak_cached_bytes = A.peak_cached, .hits = A.hits, .misses = A.misses,
                         .evictions = A.evictions, .maps = A.maps, .unmaps = A.unmaps,
                         .large_min = LARGE_MIN};
    pthread_mutex_unlock(&A.mu);
    return s;
}

void emb_alloc_trim(void) {
    pthread_mutex_lock(&A.mu);
    if (emb_log_on("alloc"))
        fprintf(stderr, "[ember alloc] cache hits %lld, misses %lld, evictions %lld, peak cached %.1f MiB\n",
                (long long)A.hits, (long long)A.misses, (long long)A.evictions, (double)A.peak_cached / 1048576.0);
    evict_locked(0, 0);
    pthread_mutex_unlock(&A.mu);
}
#endif

void *emb_calloc(size_t nbytes) {
    void *p = emb_alloc(nbytes);
    if (p) memset(p, 0, nbytes ? nbytes : 1);
    return p;
}

/* ---- logging ------------------------------------------------------------------------------ */
static bool log_parsed;
static char log_spec[256];

bool emb_log_on(const char *channel) {
    if (!log_parsed) {
        const char *e = getenv("EMBER_LOG");
        snprintf(log_spec, sizeof log_spec, ",%s,", e ? e : "");
        log_parsed = true;
    }
    if (log_spec[1] == ',') return false;
    if (strstr(log_spec, ",all,")) return true;
    char key[64];
    snprintf(key, sizeof key, ",%s,", channel);
    return strstr(log_spec, key) != NULL;
}

void emb_log(const char *channel, const char *fmt, ...) {
    if (!emb_log_on(channel)) return;
    va_list ap;
    fprintf(stderr, "[ember %s] ", channel);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
}

char *emb_shape_str(char *buf, const int64_t *shape, int ndim) {
    int n = 0;
    n += snprintf(buf + n, EMB_SHAPE_BUF - n, "(");
    for (int i = 0; i < ndim && n < EMB_SHAPE_BUF - 24; i++)
        n += snprintf(buf + n, EMB_SHAPE_BUF - n, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (ndim == 1 && n < EMB_SHAPE_BUF - 2) n += snprintf(buf + n, EMB_SHAPE_BUF - n, ",");
    snprintf(buf + n, EMB_SHAPE_BUF - n, ")");
    return buf;
}

bool emb_mul_overflows(int64_t a, int64_t b, int64_t *out) {
    return __builtin_mul_overflow(a, b, out);
}

/* ---- threads -------------------------------------------------------------------------------- */
/* One thread count for every OpenMP region: the library's kernels pass emb_num_threads() as
   num_threads, generated code gets it as rt->nthreads, and it is also OpenMP's own default
   (omp_set_num_threads), which the regions without a num_threads clause use (emk_sgemm called
   with parallel == 1 asks omp_get_max_threads()). The default is $EMBER_NUM_THREADS, else what
   OpenMP had before Ember changed it ($OMP_NUM_THREADS, else all cores). */
static int n_threads, omp_default;

int emb_num_threads(void) {
    if (n_threads <= 0) {
        const char *e = getenv("EMBER_NUM_THREADS");
        int n = e ? atoi(e) : 0;
#ifdef _OPENMP
        if (omp_default <= 0) omp_default = omp_in_parallel() ? omp_get_num_procs() : omp_get_max_threads();
        if (n <= 0) n = omp_default;
        if (n > 0 && !omp_in_parallel()) omp_set_num_threads(n);
#endif
        n_threads = n > 0 ? n : 1;
    }
    return n_threads;
}

void em_set_num_threads(int n) {
    n_threads = n > 0 ? n : 0;
    n = emb_num_threads();
#ifdef _OPENMP
    if (!omp_in_parallel()) omp_set_num_threads(n);
#endif
}
int em_get_num_threads(void) { return emb_num_threads(); }

const char *em_version(void) { return "0.1.0"; }

/* ---- files ---- */

bool emb_mkdirs(const char *path) {
    char tmp[1024];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) return false;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return false;
        *p = '/';
    }
    return mkdir(tmp, 0755) == 0 || errno == EEXIST;
}
