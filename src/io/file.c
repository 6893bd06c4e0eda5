/* file.c - the plumbing under every format: whole-file reads, byte sources, atomic writes,
 * growable buffers, and two open-addressing hash maps (byte string -> id, id pair -> merge).
 *
 * Atomic writes follow the usual recipe: write "<path>.tmp.<pid>", fflush, fsync, close, rename
 * over path, then fsync the directory (best effort). Any failure removes the temp file, so the
 * old file is either fully there or fully replaced, never half-written.
 */
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- reading -------------------------------------------------------------------------------- */
static em_status open_regular(const char *op, const char *path, FILE **out, uint64_t *size) {
    if (!path) return em_seterr(EM_ERR_ARG, "%s: path is NULL", op);
    FILE *f = fopen(path, "rb");
    if (!f) return em_seterr(EM_ERR_IO, "%s: cannot open '%s': %s", op, path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return em_seterr(EM_ERR_IO, "%s: '%s' is not a regular file", op, path);
    }
    *out = f;
    *size = (uint64_t)st.st_size;
    return EM_OK;
}

em_status emio_read_file(const char *op, const char *path, size_t max_bytes, char **buf, size_t *n) {
    FILE *f = NULL;
    uint64_t size = 0;
    *buf = NULL;
    *n = 0;
    em_status s = open_regular(op, path, &f, &size);
    if (s) return s;
    if (size > max_bytes) {
        fclose(f);
        return em_seterr(EM_ERR_FORMAT, "%s: '%s' is %llu bytes, more than the %zu this format allows",
                         op, path, (unsigned long long)size, max_bytes);
    }
    char *p = malloc((size_t)size + 1);
    if (!p) {
        fclose(f);
        return em_seterr(EM_ERR_OOM, "%s: out of memory reading '%s' (%llu bytes)", op, path,
                         (unsigned long long)size);
    }
    size_t got = fread(p, 1, (size_t)size, f);
    bool err = ferror(f);
    fclose(f);
    if (got != size || err) {
        free(p);
        return em_seterr(EM_ERR_IO, "%s: error reading '%s'", op, path);
    }
    p[size] = 0;
    *buf = p;
    *n = (size_t)size;
    return EM_OK;
}

em_status emio_src_open(emio_src *s, const char *op, const char *path) {
    memset(s, 0, sizeof *s);
    s->op = op;
    s->path = path;
    return open_regular(op, path, &s->f, &s->size);
}

void emio_src_mem(emio_src *s, const char *op, const void *buf, size_t n) {
    memset(s, 0, sizeof *s);
    s->op = op;
    s->path = "<memory>";
    s->mem = buf;
    s->size = n;
}

void emio_src_close(emio_src *s) {
    if (s->f) fclose(s->f);
    s->f = NULL;
}

em_status emio_src_read(emio_src *s, void *dst, uint64_t n, const char *what) {
    if (n > s->size - s->pos)
        return em_seterr(EM_ERR_FORMAT, "%s: '%s' is truncated: %s needs %llu bytes at offset %llu but the file has %llu",
                         s->op, s->path, what, (unsigned long long)n, (unsigned long long)s->pos,
                         (unsigned long long)s->size);
    if (s->mem) {
        if (n) memcpy(dst, s->mem + s->pos, (size_t)n);
    } else if (fread(dst, 1, (size_t)n, s->f) != n) {
        return em_seterr(EM_ERR_IO, "%s: error reading %s from '%s'", s->op, what, s->path);
    }
    s->pos += n;
    return EM_OK;
}

em_status emio_src_seek(emio_src *s, uint64_t pos) {
    if (pos > s->size) return em_seterr(EM_ERR_FORMAT, "%s: '%s': offset %llu is past the end", s->op, s->path, (unsigned long long)pos);
    if (s->f && fseeko(s->f, (off_t)pos, SEEK_SET) != 0)
        return em_seterr(EM_ERR_IO, "%s: cannot seek in '%s': %s", s->op, s->path, strerror(errno));
    s->pos = pos;
    return EM_OK;
}

/* ---- atomic writes ------------------------------------------------------------------------ */
em_status emio_fwrite(FILE *f, const void *p, size_t n, const char *op) {
    if (n && fwrite(p, 1, n, f) != n) return em_seterr(EM_ERR_IO, "%s: write failed: %s", op, strerror(errno));
    return EM_OK;
}

static void fsync_dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

em_status emio_write_atomic(const char *op, const char *path, emio_write_fn fn, void *ctx) {
    if (!path || !path[0]) return em_seterr(EM_ERR_ARG, "%s: path is NULL or empty", op);
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp) return em_seterr(EM_ERR_OOM, "%s: out of memory", op);
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        em_status s = em_seterr(EM_ERR_IO, "%s: cannot create '%s': %s", op, tmp, strerror(errno));
        free(tmp);
        return s;
    }
    em_status s = fn(f, ctx);
    if (!s && fflush(f) != 0) s = em_seterr(EM_ERR_IO, "%s: cannot write '%s': %s", op, tmp, strerror(errno));
    if (!s && fsync(fileno(f)) != 0) s = em_seterr(EM_ERR_IO, "%s: fsync of '%s' failed: %s", op, tmp, strerror(errno));
    if (fclose(f) != 0 && !s) s = em_seterr(EM_ERR_IO, "%s: cannot close '%s': %s", op, tmp, strerror(errno));
    if (!s && rename(tmp, path) != 0)
        s = em_seterr(EM_ERR_IO, "%s: cannot rename '%s' to '%s': %s", op, tmp, path, strerror(errno));
    if (s) unlink(tmp);
    else fsync_dir_of(path);
    free(tmp);
    return s;
}

/* ---- buffers ---------------------------------------------------------------------------------- */
void emio_buf_put(emio_buf *b, const void *p, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) {
            if (cap > SIZE_MAX / 2) { b->oom = true; return; }
            cap *= 2;
        }
        char *q = realloc(b->p, cap);
        if (!q) { b->oom = true; return; }
        b->p = q;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = 0;
}

void emio_buf_puts(emio_buf *b, const char *s) { emio_buf_put(b, s, strlen(s)); }

void emio_buf_printf(emio_buf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    EM_ASSERT(k >= 0 && (size_t)k < sizeof tmp);
    emio_buf_put(b, tmp, (size_t)k);
}

void emio_buf_json_str(emio_buf *b, const char *s, size_t n) {
    emio_buf_put(b, "\"", 1);
    size_t run = 0; /* bytes copied verbatim, flushed before each escape */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') { run++; continue; }
        emio_buf_put(b, s + i - run, run);
        run = 0;
        if (c == '"') emio_buf_puts(b, "\\\"");
        else if (c == '\\') emio_buf_puts(b, "\\\\");
        else if (c == '\n') emio_buf_puts(b, "\\n");
        else if (c == '\t') emio_buf_puts(b, "\\t");
        else emio_buf_printf(b, "\\u%04x", c);
    }
    emio_buf_put(b, s + n - run, run);
    emio_buf_put(b, "\"", 1);
}

/* ---- hashing ---------------------------------------------------------------------------------- */
uint64_t emio_hash(const void *p, size_t n) { /* FNV-1a, then a final mix */
    const uint8_t *s = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static bool strmap_grow(emio_strmap *m) {
    size_t cap = m->cap ? m->cap * 2 : 64;
    const char **keys = calloc(cap, sizeof *keys);
    uint32_t *lens = calloc(cap, sizeof *lens);
    int32_t *vals = calloc(cap, sizeof *vals);
    if (!keys || !lens || !vals) {
        free(keys); free(lens); free(vals);
        return false;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i]) continue;
        size_t j = emio_hash(m->keys[i], m->lens[i]) & (cap - 1);
        while (keys[j]) j = (j + 1) & (cap - 1);
        keys[j] = m->keys[i];
        lens[j] = m->lens[i];
        vals[j] = m->vals[i];
    }
    free(m->keys); free(m->lens); free(m->vals);
    m->keys = keys;
    m->lens = lens;
    m->vals = vals;
    m->cap = cap;
    return true;
}

bool emio_strmap_put(emio_strmap *m, const char *key, size_t len, int32_t val, bool *oom) {
    EM_ASSERT(key && len <= UINT32_MAX);
    if ((m->n + 1) * 2 > m->cap && !strmap_grow(m)) {
        *oom = true;
        return false;
    }
    size_t j = emio_hash(key, len) & (m->cap - 1);
    while (m->keys[j]) {
        if (m->lens[j] == len && memcmp(m->keys[j], key, len) == 0) return false;
        j = (j + 1) & (m->cap - 1);
    }
    m->keys[j] = key;
    m->lens[j] = (uint32_t)len;
    m->vals[j] = val;
    m->n++;
    return true;
}

int32_t emio_strmap_get(const emio_strmap *m, const char *key, size_t len) {
    if (!m->cap) return -1;
    size_t j = emio_hash(key, len) & (m->cap - 1);
    while (m->keys[j]) {
        if (m->lens[j] == len && memcmp(m->keys[j], key, len) == 0) return m->vals[j];
        j = (j + 1) & (m->cap - 1);
    }
    return -1;
}

void emio_strmap_free(emio_strmap *m) {
    free(m->keys); free(m->lens); free(m->vals);
    memset(m, 0, sizeof *m);
}

static uint64_t pair_key(int32_t a, int32_t b) { return (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1; }
static size_t pair_slot(uint64_t k, size_t cap) {
    k ^= k >> 31;
    k *= 0x9e3779b97f4a7c15ull;
    k ^= k >> 29;
    return (size_t)k & (cap - 1);
}

static bool pairmap_grow(emio_pairmap *m) {
    size_t cap = m->cap ? m->cap * 2 : 64;
    uint64_t *keys = calloc(cap, sizeof *keys);
    int32_t *rank = calloc(cap, sizeof *rank), *id = calloc(cap, sizeof *id);
    if (!keys || !rank || !id) {
        free(keys); free(rank); free(id);
        return false;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i]) continue;
        size_t j = pair_slot(m->keys[i], cap);
        while (keys[j]) j = (j + 1) & (cap - 1);
        keys[j] = m->keys[i];
        rank[j] = m->rank[i];
        id[j] = m->id[i];
    }
    free(m->keys); free(m->rank); free(m->id);
    m->keys = keys;
    m->rank = rank;
    m->id = id;
    m->cap = cap;
    return true;
}

bool emio_pairmap_put(emio_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id, bool *oom) {
    if ((m->n + 1) * 2 > m->cap && !pairmap_grow(m)) {
        *oom = true;
        return false;
    }
    uint64_t k = pair_key(a, b);
    size_t j = pair_slot(k, m->cap);
    while (m->keys[j]) {
        if (m->keys[j] == k) return false;
        j = (j + 1) & (m->cap - 1);
    }
    m->keys[j] = k;
    m->rank[j] = rank;
    m->id[j] = id;
    m->n++;
    return true;
}

bool emio_pairmap_get(const emio_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *id) {
    if (!m->cap) return false;
    uint64_t k = pair_key(a, b);
    size_t j = pair_slot(k, m->cap);
    while (m->keys[j]) {
        if (m->keys[j] == k) {
            *rank = m->rank[j];
            *id = m->id[j];
            return true;
        }
        j = (j + 1) & (m->cap - 1);
    }
    return false;
}

void emio_pairmap_free(emio_pairmap *m) {
    free(m->keys); free(m->rank); free(m->id);
    memset(m, 0, sizeof *m);
}

/* ---- merge heap ------------------------------------------------------------------------------ */
static bool merge_before(const emio_merge *a, const emio_merge *b) {
    return a->key != b->key ? a->key < b->key : a->left < b->left;
}

bool emio_heap_push(emio_heap *h, emio_merge x) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        emio_merge *p = realloc(h->e, cap * sizeof *p);
        if (!p) return false;
        h->e = p;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0 && merge_before(&x, &h->e[(i - 1) / 2])) {
        h->e[i] = h->e[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->e[i] = x;
    return true;
}

emio_merge emio_heap_pop(emio_heap *h) {
    emio_merge top = h->e[0], x = h->e[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && merge_before(&h->e[c + 1], &h->e[c])) c++;
        if (!merge_before(&h->e[c], &x)) break;
        h->e[i] = h->e[c];
        i = c;
    }
    if (h->n) h->e[i] = x;
    return top;
}
