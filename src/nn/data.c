/* data.c - text corpora and token datasets for language-model training.
 *
 * em_text_read turns a corpus name into bytes: "fortunes" is Debian's fortune files
 * (/usr/share/games/fortunes), any other directory is read the same way (its fortune files: the
 * plain files that have a .dat index beside them, in byte order of their names), and anything
 * else is one text file read as it is. In fortune files the "%" separator lines are removed and
 * each fortune is followed by "<|endoftext|>", which Ember's BPE and GPT-2 tokenizers turn into
 * their end-of-text id: the model learns where a fortune ends, and a sample started from that id
 * is one fortune.
 *
 * em_dataset_new holds the token ids of a whole corpus and splits them deterministically: the
 * ids are cut into chunks of EMN_SPLIT_CHUNK tokens and every k-th chunk (k = round(1 / val
 * fraction)) goes to validation, so both splits sample every part of a corpus that is sorted by
 * topic (as the fortune files are). Training batches are a pure function of (seed, batch index):
 * sequence b of batch i starts at a Philox(seed, i * B + b) draw over the training split, so a
 * trainer's data position is one integer, the index of its next batch, and a resumed run draws
 * exactly the batches it would have drawn. Validation reads fixed, non-overlapping windows.
 */
#include "nn.h"

#include "../io/io.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define EMN_SPLIT_CHUNK 1024
#define FORTUNE_DIR "/usr/share/games/fortunes"
#define EOT "<|endoftext|>"
#define MAX_TEXT ((size_t)1 << 32)

struct em_dataset {
    int32_t vocab_size;
    int32_t *train, *val; /* the two splits, each the concatenation of its chunks */
    int64_t n_train, n_val;
    uint64_t hash;        /* of both splits, so a checkpoint can tell its data */
};

/* ---- text ------------------------------------------------------------------------------------- */
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool is_regular(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* appends one fortune file's text to b, "%" lines removed, EOT after each fortune */
static void append_fortunes(emio_buf *b, const char *text, size_t n) {
    size_t start = 0; /* start of the current fortune */
    size_t i = 0;
    while (i <= n) {
        size_t e = i;
        while (e < n && text[e] != '\n') e++; /* line [i, e) */
        bool sep = (e - i == 1 && text[i] == '%') || (e - i == 2 && text[i] == '%' && text[i + 1] == '\r');
        if (sep || e >= n) {
            size_t end = sep ? i : n; /* the fortune is [start, end) */
            bool blank = true;
            for (size_t k = start; k < end && blank; k++) blank = text[k] == '\n' || text[k] == '\r' || text[k] == ' ';
            if (!blank) {
                emio_buf_put(b, text + start, end - start);
                if (text[end - 1] != '\n') emio_buf_puts(b, "\n");
                emio_buf_puts(b, EOT);
            }
            start = e + 1;
        }
        i = e + 1;
    }
}

static em_status read_fortune_dir(const char *dir, char **out, size_t *len) {
    const char *op = "em_text_read";
    DIR *d = opendir(dir);
    if (!d) return em_seterr(EM_ERR_IO, "%s: cannot open the directory '%s': %s%s", op, dir, strerror(errno),
                             strcmp(dir, FORTUNE_DIR) ? "" : " (install Debian's package `fortunes`: scripts/setup)");
    char **names = NULL;
    size_t n = 0, cap = 0;
    em_status s = EM_OK;
    struct dirent *e;
    while (!s && (e = readdir(d))) {
        size_t nl = strlen(e->d_name);
        if (e->d_name[0] == '.' || strchr(e->d_name, '.')) continue; /* foo.dat, foo.u8, hidden */
        char *path = malloc(strlen(dir) + nl + 8), *dat = malloc(strlen(dir) + nl + 8);
        if (!path || !dat) s = em_seterr(EM_ERR_OOM, "%s: out of memory", op);
        else {
            sprintf(path, "%s/%s", dir, e->d_name);
            sprintf(dat, "%s/%s.dat", dir, e->d_name);
            if (is_regular(path) && is_regular(dat)) {
                if (n == cap) {
                    cap = cap ? 2 * cap : 64;
                    char **nn = realloc(names, cap * sizeof *names);
                    if (!nn) s = em_seterr(EM_ERR_OOM, "%s: out of memory", op);
                    else names = nn;
                }
                if (!s) {
                    names[n++] = path;
                    path = NULL;
                }
            }
        }
        free(path);
        free(dat);
    }
    closedir(d);
    if (!s && n == 0)
        s = em_seterr(EM_ERR_IO, "%s: '%s' holds no fortune files (a file F with an index F.dat beside it)", op, dir);
    if (!s) qsort(names, n, sizeof *names, cmp_str);
    emio_buf b = {0};
    for (size_t i = 0; !s && i < n; i++) {
        char *text;
        size_t tn;
        s = emio_read_file(op, names[i], MAX_TEXT, &text, &tn);
        if (s) break;
        append_fortunes(&b, text, tn);
        free(text);
        if (b.oom) s = em_seterr(EM_ERR_OOM, "%s: out of memory reading '%s'", op, dir);
        else if (b.n > MAX_TEXT) s = em_seterr(EM_ERR_ARG, "%s: '%s' holds more than 4 GiB of text", op, dir);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    if (!s && b.n == 0) s = em_seterr(EM_ERR_ARG, "%s: the fortune files in '%s' hold no text", op, dir);
    if (s) {
        free(b.p);
        return s;
    }
    emio_buf_put(&b, "", 1); /* NUL */
    if (b.oom) {
        free(b.p);
        return em_seterr(EM_ERR_OOM, "%s: out of memory", op);
    }
    *out = b.p;
    *len = b.n - 1;
    return EM_OK;
}

em_status em_text_read(const char *name, char **text, size_t *len) {
    const char *op = "em_text_read";
    if (!name || !name[0] || !text || !len) return em_seterr(EM_ERR_ARG, "%s: name, text and len must not be NULL", op);
    *text = NULL;
    *len = 0;
    if (!strcmp(name, "fortunes")) return read_fortune_dir(FORTUNE_DIR, text, len);
    struct stat st;
    if (stat(name, &st) != 0)
        return em_seterr(EM_ERR_IO, "%s: cannot read '%s': %s (a text file, a directory of fortune files, or "
                         "\"fortunes\")", op, name, strerror(errno));
    if (S_ISDIR(st.st_mode)) return read_fortune_dir(name, text, len);
    em_status s = emio_read_file(op, name, MAX_TEXT, text, len);
    if (!s && *len == 0) {
        free(*text);
        *text = NULL;
        return em_seterr(EM_ERR_ARG, "%s: '%s' is empty", op, name);
    }
    return s;
}

/* ---- datasets ---------------------------------------------------------------------------------- */
em_dataset_t *em_dataset_new(const int32_t *ids, int64_t n, int32_t vocab_size, double val_fraction) {
    const char *op = "em_dataset_new";
    if (!ids || n < 1 || vocab_size < 1)
        return em_seterr_null(EM_ERR_ARG, "%s: need ids, n >= 1 (got %lld) and vocab_size >= 1 (got %d)", op,
                              (long long)n, vocab_size);
    if (!(val_fraction >= 0 && val_fraction <= 0.5))
        return em_seterr_null(EM_ERR_ARG, "%s: val_fraction must be in [0, 0.5], got %g", op, val_fraction);
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab_size)
            return em_seterr_null(EM_ERR_ARG, "%s: token %lld is id %d, outside the vocabulary [0, %d)", op,
                                  (long long)i, ids[i], vocab_size);
    em_dataset_t *d = calloc(1, sizeof *d);
    int64_t every = val_fraction > 0 ? (int64_t)llround(1.0 / val_fraction) : 0;
    if (d) {
        d->train = malloc(sizeof(int32_t) * (size_t)n);
        d->val = malloc(sizeof(int32_t) * (size_t)n);
    }
    if (!d || !d->train || !d->val) {
        em_dataset_free(d);
        return em_seterr_null(EM_ERR_OOM, "%s: out of memory for %lld tokens", op, (long long)n);
    }
    d->vocab_size = vocab_size;
    for (int64_t c = 0; c * EMN_SPLIT_CHUNK < n; c++) {
        int64_t a = c * EMN_SPLIT_CHUNK, len = EM_MIN(n - a, (int64_t)EMN_SPLIT_CHUNK);
        bool val = every > 0 && c % every == every - 1;
        memcpy(val ? d->val + d->n_val : d->train + d->n_train, ids + a, sizeof(int32_t) * (size_t)len);
        if (val) d->n_val += len;
        else d->n_train += len;
    }
    /* a corpus shorter than `every` chunks: validation takes the last tenth or so of it */
    if (every > 0 && d->n_val == 0 && n >= 4) {
        d->n_val = EM_MAX(n / every, 2);
        d->n_train = n - d->n_val;
        memcpy(d->val, ids + d->n_train, sizeof(int32_t) * (size_t)d->n_val);
    }
    uint64_t h[2] = {emio_hash(d->train, sizeof(int32_t) * (size_t)d->n_train),
                     emio_hash(d->val, sizeof(int32_t) * (size_t)d->n_val)};
    d->hash = emio_hash(h, sizeof h) ^ (uint64_t)vocab_size;
    return d;
}

void em_dataset_free(em_dataset_t *d) {
    if (!d) return;
    free(d->train);
    free(d->val);
    free(d);
}

int64_t em_dataset_num_tokens(const em_dataset_t *d, bool val) { return !d ? -1 : val ? d->n_val : d->n_train; }
int32_t em_dataset_vocab_size(const em_dataset_t *d) { return d ? d->vocab_size : -1; }
uint64_t em_dataset_hash(const em_dataset_t *d) { return d ? d->hash : 0; }

double em_dataset_unigram_entropy(const em_dataset_t *d) {
    if (!d) return NAN;
    int64_t *count = calloc((size_t)d->vocab_size, sizeof *count);
    if (!count) return em_seterr(EM_ERR_OOM, "em_dataset_unigram_entropy: out of memory"), NAN;
    for (int64_t i = 0; i < d->n_train; i++) count[d->train[i]]++;
    for (int64_t i = 0; i < d->n_val; i++) count[d->val[i]]++;
    double n = (double)(d->n_train + d->n_val), h = 0;
    for (int32_t v = 0; v < d->vocab_size; v++)
        if (count[v]) h -= (double)count[v] / n * log((double)count[v] / n);
    free(count);
    return h;
}

/* x and y (B, T) i64 from B windows of T + 1 tokens of src starting at start[b] */
static em_status make_xy(const int32_t *src, const int64_t *start, int B, int T, em_tensor_t **x, em_tensor_t **y) {
    int64_t *bx = malloc(sizeof(int64_t) * (size_t)B * (size_t)T), *by = malloc(sizeof(int64_t) * (size_t)B * (size_t)T);
    if (!bx || !by) {
        free(bx);
        free(by);
        return em_seterr(EM_ERR_OOM, "em_dataset_batch: out of memory");
    }
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            bx[(int64_t)b * T + t] = src[start[b] + t];
            by[(int64_t)b * T + t] = src[start[b] + t + 1];
        }
    const int64_t shape[2] = {B, T};
    *x = em_from_data(bx, shape, 2, EM_I64);
    *y = *x ? em_from_data(by, shape, 2, EM_I64) : NULL;
    free(bx);
    free(by);
    return *x && *y ? EM_OK : em_last_status();
}

static em_status check_bt(const char *op, const em_dataset_t *d, int B, int T, int64_t n, const char *split) {
    if (!d) return em_seterr(EM_ERR_ARG, "%s: the dataset is NULL", op);
    if (B < 1 || T < 1) return em_seterr(EM_ERR_ARG, "%s: batch (%d) and seq_len (%d) must be positive", op, B, T);
    if (n < (int64_t)T + 1)
        return em_seterr(EM_ERR_ARG, "%s: the %s split has %lld tokens, fewer than seq_len + 1 = %d (use a shorter "
                         "--seq-len or more text)", op, split, (long long)n, T + 1);
    return EM_OK;
}

em_status em_dataset_batch(const em_dataset_t *d, uint64_t seed, uint64_t index, int B, int T, em_tensor_t **x,
                           em_tensor_t **y) {
    const char *op = "em_dataset_batch";
    if (!x || !y) return em_seterr(EM_ERR_ARG, "%s: x and y must not be NULL", op);
    em_status s = check_bt(op, d, B, T, d ? d->n_train : 0, "training");
    if (s) return s;
    int64_t *start = malloc(sizeof(int64_t) * (size_t)B);
    if (!start) return em_seterr(EM_ERR_OOM, "%s: out of memory", op);
    uint64_t span = (uint64_t)(d->n_train - T); /* starts 0 .. n_train - T - 1 */
    for (int b = 0; b < B; b++) {
        uint32_t r[4];
        emt_philox(seed, index * (uint64_t)B + (uint64_t)b, r);
        start[b] = (int64_t)((((uint64_t)r[1] << 32) | r[0]) % span);
    }
    s = make_xy(d->train, start, B, T, x, y);
    free(start);
    return s;
}

int64_t em_dataset_val_windows(const em_dataset_t *d, int T) {
    return !d || T < 1 || d->n_val < (int64_t)T + 1 ? 0 : (d->n_val - 1) / T;
}

em_status em_dataset_val_batch(const em_dataset_t *d, int64_t first, int B, int T, em_tensor_t **x, em_tensor_t **y) {
    const char *op = "em_dataset_val_batch";
    if (!x || !y) return em_seterr(EM_ERR_ARG, "%s: x and y must not be NULL", op);
    em_status s = check_bt(op, d, B, T, d ? d->n_val : 0, "validation");
    if (s) return s;
    int64_t nw = em_dataset_val_windows(d, T);
    if (first < 0 || first + B > nw)
        return em_seterr(EM_ERR_ARG, "%s: windows %lld .. %lld are out of range: the validation split has %lld windows "
                         "of %d tokens", op, (long long)first, (long long)(first + B - 1), (long long)nw, T);
    int64_t *start = malloc(sizeof(int64_t) * (size_t)B);
    if (!start) return em_seterr(EM_ERR_OOM, "%s: out of memory", op);
    for (int b = 0; b < B; b++) start[b] = (first + b) * T;
    s = make_xy(d->val, start, B, T, x, y);
    free(start);
    return s;
}
