/* base.h - the bottom of Ember: errors, assertions, logging, aligned allocation, small
 * string helpers. Everything else includes it; it includes nothing of Ember but ember.h.
 *
 * Two kinds of failure (after QBE): a user mistake is reported as a value (em_seterr sets the
 * thread-local message and returns the status; callers return NULL or the status), and a
 * broken internal invariant is a bug that stops the process with file:line (EM_ASSERT,
 * always on). Nothing a user passes may reach an EM_ASSERT.
 */
#ifndef EMBER_BASE_H
#define EMBER_BASE_H

#include "ember.h"
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>

#define EM_UNUSED(x) ((void)(x))
#define EM_ARRAY_LEN(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define EM_MIN(a, b) ((a) < (b) ? (a) : (b))
#define EM_MAX(a, b) ((a) > (b) ? (a) : (b))

#if defined(__GNUC__)
#define EM_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define EM_NORETURN __attribute__((noreturn))
#else
#define EM_PRINTF(f, a)
#define EM_NORETURN
#endif

/* errors: set the thread-local message and return s (so `return em_seterr(...)` reads well) */
em_status em_seterr(em_status s, const char *fmt, ...) EM_PRINTF(2, 3);
/* same, returning NULL for functions that return handles */
void *em_seterr_null(em_status s, const char *fmt, ...) EM_PRINTF(2, 3);

EM_NORETURN void em_die(const char *file, int line, const char *fmt, ...) EM_PRINTF(3, 4);
#define EM_ASSERT(c)                                                                    \
    do {                                                                                \
        if (!(c)) em_die(__FILE__, __LINE__, "internal error: assertion `%s` failed", #c); \
    } while (0)

/* memory: 64-byte aligned, never NULL for size 0; emb_free(NULL) is fine. Blocks of 64 KiB and
   more are cached by size class for reuse (base.c; $EMBER_ALLOC_CACHE=0 turns that off,
   $EMBER_ALLOC_CACHE_MB caps it; SANITIZE builds bypass it). Only emb_free may free them. */
void *emb_alloc(size_t nbytes);   /* NULL when out of memory (caller reports EM_ERR_OOM) */
void *emb_calloc(size_t nbytes);
void  emb_free(void *p);
typedef struct {
    bool caching;              /* false: turned off, or a sanitizer build (plain malloc) */
    size_t cap_bytes, cached_bytes, peak_cached_bytes, large_min;
    int64_t hits, misses, evictions, maps, unmaps;
} emb_alloc_stats;
emb_alloc_stats emb_alloc_get_stats(void);
void emb_alloc_trim(void);        /* unmaps every cached block (tests; memory pressure) */

/* creates a directory and its missing parents (mkdir -p, mode 0755); false when a part cannot be
   made (errno tells why) or the path is longer than 1023 bytes */
bool emb_mkdirs(const char *path);

/* logging: EMBER_LOG=chan1,chan2 (or "all"); emb_log_on is cheap enough for hot paths */
bool emb_log_on(const char *channel);
void emb_log(const char *channel, const char *fmt, ...) EM_PRINTF(2, 3);

/* "(2, 3, 4)" into buf (at least 160 bytes) and returns buf */
#define EMB_SHAPE_BUF 200
char *emb_shape_str(char *buf, const int64_t *shape, int ndim);

/* checked integer helpers for sizes that come from users */
bool emb_mul_overflows(int64_t a, int64_t b, int64_t *out);

/* threads */
int emb_num_threads(void);

#endif
