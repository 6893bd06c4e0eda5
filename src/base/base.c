/* base.c - errors as values, the internal-bug path, aligned allocation, logging, threads.
 *
 * The error message is thread-local so concurrent users of the library do not see each
 * other's failures; each failing call overwrites it and successful calls leave it alone
 * (like errno), so a caller checks the return value first and reads the message after.
 */
#include "base.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
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

void *emb_alloc(size_t nbytes) {
    size_t n = (nbytes + 63) & ~(size_t)63;
    if (n == 0) n = 64;
    if (n < nbytes) return NULL; /* wrapped */
    void *p = NULL;
    if (posix_memalign(&p, 64, n) != 0) return NULL;
    return p;
}

void *emb_calloc(size_t nbytes) {
    void *p = emb_alloc(nbytes);
    if (p) memset(p, 0, nbytes ? nbytes : 1);
    return p;
}

void emb_free(void *p) { free(p); }

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
static int n_threads;

int emb_num_threads(void) {
    if (n_threads <= 0) {
        const char *e = getenv("EMBER_NUM_THREADS");
        int n = e ? atoi(e) : 0;
#ifdef _OPENMP
        if (n <= 0) n = omp_get_num_procs();
#endif
        n_threads = n > 0 ? n : 1;
    }
    return n_threads;
}

void em_set_num_threads(int n) { n_threads = n > 0 ? n : 0; }
int em_get_num_threads(void) { return emb_num_threads(); }

const char *em_version(void) { return "0.1.0"; }
