/* print.c - em_print: PyTorch's tensor formatting.
 *
 * Follows torch/_tensor_str.py in spirit: one format for the whole tensor chosen from its
 * finite values (integer-valued floats print as "1.", a wide range switches to scientific
 * notation, otherwise 4 decimals), every element padded to the widest, nested brackets indented
 * under "tensor(", tensors over 1000 elements summarised with "..." (3 items each side), and a
 * dtype suffix when it is not the default one for its kind (f32, i64, bool).
 */
#include "tensor.h"

#include "../autograd/autograd.h"

#include <math.h>
#include <stdio.h>

typedef struct {
    char *s;
    size_t n, cap;
    bool oom;
} sbuf;

static void put(sbuf *b, const char *str, size_t len) {
    if (b->oom) return;
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->n + len + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) { b->oom = true; return; }
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->n, str, len);
    b->n += len;
    b->s[b->n] = 0;
}
static void puts_(sbuf *b, const char *s) { put(b, s, strlen(s)); }

enum { F_INT, F_FIXED, F_SCI };

typedef struct {
    em_tensor_t *t;
    int mode, width;
    bool summarize, width_pass;
} fmt;

static double at(em_tensor_t *t, const int64_t *idx) {
    int64_t off = t->offset;
    for (int d = 0; d < t->ndim; d++) off += idx[d] * t->strides[d];
    return emt_load((char *)t->storage->data + off * (int64_t)emt_esize(t->dtype), t->dtype);
}

static int fmt_value(const fmt *f, double v, char *out, size_t cap) {
    em_dtype dt = f->t->dtype;
    if (dt == EM_BOOL) return snprintf(out, cap, "%s", v != 0 ? "True" : "False");
    if (!emt_is_float(dt)) return snprintf(out, cap, "%lld", (long long)v);
    if (isnan(v)) return snprintf(out, cap, "nan");
    if (isinf(v)) return snprintf(out, cap, v > 0 ? "inf" : "-inf");
    if (f->mode == F_INT) return snprintf(out, cap, "%.0f.", v);
    if (f->mode == F_SCI) return snprintf(out, cap, "%.4e", v);
    return snprintf(out, cap, "%.4f", v);
}

/* visits the printed elements (respecting summarisation) to pick the format and width */
static int fmt_value(const fmt *f, double v, char *out, size_t cap);

static void scan(fmt *f, int dim, int64_t *idx, double *mx, double *mn, bool *all_int, bool *any) {
    em_tensor_t *t = f->t;
    if (dim == t->ndim) {
        double v = at(t, idx);
        if (f->width_pass) {
            char tmp[64];
            int len = fmt_value(f, v, tmp, sizeof tmp);
            if (len > f->width) f->width = len;
            return;
        }
        if (!isfinite(v)) return;
        double a = fabs(v);
        if (a > *mx) *mx = a;
        if (a != 0 && a < *mn) *mn = a;
        if (v != floor(v)) *all_int = false;
        *any = true;
        return;
    }
    int64_t n = t->shape[dim];
    for (int64_t i = 0; i < n; i++) {
        if (f->summarize && n > 6 && i == 3) i = n - 3;
        idx[dim] = i;
        scan(f, dim + 1, idx, mx, mn, all_int, any);
    }
}

static void emit(fmt *f, sbuf *b, int dim, int64_t *idx, int indent) {
    em_tensor_t *t = f->t;
    char tmp[64];
    if (dim == t->ndim) {
        int len = fmt_value(f, at(t, idx), tmp, sizeof tmp);
        for (int i = len; i < f->width; i++) put(b, " ", 1);
        puts_(b, tmp);
        return;
    }
    put(b, "[", 1);
    int64_t n = t->shape[dim];
    for (int64_t i = 0; i < n; i++) {
        if (f->summarize && n > 6 && i == 3) {
            if (dim == t->ndim - 1) {
                puts_(b, " ..., "); /* PyTorch's ' ...' item */
            } else {
                puts_(b, "...,\n");
                for (int k = 0; k < indent + 1; k++) put(b, " ", 1);
            }
            i = n - 3;
        }
        idx[dim] = i;
        emit(f, b, dim + 1, idx, indent + 1);
        if (i + 1 < n) {
            if (dim == t->ndim - 1) {
                puts_(b, ", ");
            } else {
                put(b, ",", 1);
                for (int k = dim; k < t->ndim - 1; k++) put(b, "\n", 1);
                for (int k = 0; k < indent + 1; k++) put(b, " ", 1);
            }
        }
    }
    put(b, "]", 1);
}

char *emt_format(em_tensor_t *t) {
    sbuf b = {0};
    if (emt_is_symbolic(t)) { /* inside a traced function: no data yet */
        char sh[EMB_SHAPE_BUF], line[EMB_SHAPE_BUF + 64];
        snprintf(line, sizeof line, "tensor(<symbolic %s %s, value %%%d>)", em_dtype_name(t->dtype),
                 emb_shape_str(sh, t->shape, t->ndim), t->sym_id);
        puts_(&b, line);
        return b.oom ? (free(b.s), NULL) : b.s;
    }
    fmt f = {.t = t, .mode = F_FIXED, .width = 1, .summarize = emt_numel(t) > 1000};
    int64_t idx[EM_MAX_DIMS] = {0};
    double mx = 0, mn = INFINITY;
    bool all_int = true, any = false;
    int64_t numel = emt_numel(t);
    if (numel > 0) scan(&f, 0, idx, &mx, &mn, &all_int, &any);
    if (emt_is_float(t->dtype)) {
        if (any && all_int && mx < 1e8) f.mode = F_INT;
        else if (any && (mx > 1e8 || mx / mn > 1000.0 || mn < 1e-4)) f.mode = F_SCI;
    }
    /* width: the longest printed element */
    if (numel > 0) {
        f.width_pass = true;
        scan(&f, 0, idx, &mx, &mn, &all_int, &any);
    }
    puts_(&b, "tensor(");
    if (numel == 0 && t->ndim != 1) {
        char s[EMB_SHAPE_BUF];
        puts_(&b, "[], size=");
        puts_(&b, emb_shape_str(s, t->shape, t->ndim));
    } else if (t->ndim == 0) {
        f.width = 0;
        emit(&f, &b, 0, idx, 7);
    } else {
        emit(&f, &b, 0, idx, 7);
    }
    if (t->dtype != EM_F32 && t->dtype != EM_I64 && t->dtype != EM_BOOL) {
        puts_(&b, ", dtype=");
        puts_(&b, em_dtype_name(t->dtype));
    }
    if (t->grad_fn) {
        puts_(&b, ", grad_fn=<");
        puts_(&b, ema_node_name(t->grad_fn));
        puts_(&b, "Backward>");
    } else if (t->requires_grad) {
        puts_(&b, ", requires_grad=True");
    }
    puts_(&b, ")");
    if (b.oom) {
        free(b.s);
        return em_seterr_null(EM_ERR_OOM, "em_to_string: out of memory");
    }
    return b.s;
}
