/* safetensors.c - Hugging Face's safetensors format, read and written.
 *
 * Layout: u64 little-endian N, N bytes of JSON header, then the data section. The header maps
 * each tensor name to {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]} (offsets
 * relative to the data section) and may hold "__metadata__": {string: string}.
 *
 * Reading validates every field before it allocates a tensor: N at most 100 MB (HF's limit)
 * and inside the file; the header strict JSON (UTF-8, no duplicate names) and an object; each
 * entry exactly those three fields; the dtype one Ember has (F32 F64 F16 BF16 I32 I64 U8 BOOL;
 * others are EM_ERR_DTYPE naming the tensor); the shape at most 8 non-negative integers; the
 * offsets integers with begin <= end and end - begin == numel * element size. Sorted by
 * offset, the tensors must tile the data section exactly, as HF's loader requires: no overlap,
 * no gap, nothing after. Only then are tensors made and filled, in file order, straight from
 * the file. BOOL bytes are normalised to 0/1.
 *
 * Writing follows HF's writer (safetensors' serialize), so files compare byte for byte with its
 * own: tensors sorted by its Dtype enum, descending (I64 F64 F32 I32 BF16 F16 U8 BOOL, which
 * keeps every tensor aligned), then by name; "__metadata__" first in the header (its entries
 * in the dict's order, where HF's hash map has none); the header padded with spaces to a
 * multiple of 8. The file is written atomically (file.c).
 */
#include "io.h"

#define MAX_HEADER 100000000ull

static const char *st_names[EM_NUM_DTYPES] = {"F32", "F64", "F16", "BF16", "I32", "I64", "U8", "BOOL"};
static const char *known_other = " F8_E4M3 F8_E5M2 I8 I16 U16 U32 U64 ";

typedef struct {
    const char *name; /* in the JSON doc */
    em_dtype dt;
    int ndim;
    int64_t shape[EM_MAX_DIMS];
    uint64_t begin, end;
} st_entry;

typedef struct {
    const char *op;
    emj_doc doc;
    st_entry *e;
    int64_t n;
    int64_t meta; /* node of "__metadata__", or -1 */
} st_header;

static bool is_key(const emj_doc *d, const emj_node *x, const char *k) {
    return x->klen == strlen(k) && memcmp(emj_key(d, x), k, x->klen) == 0;
}

/* a JSON array of non-negative integers: count and values (up to max) */
static bool int_array(const emj_doc *d, const emj_node *x, int64_t max, int64_t *vals, int64_t *count) {
    if (x->type != EMJ_ARR || x->n > max) return false;
    int64_t k = 0;
    for (int64_t c = x->first; c >= 0; c = d->nodes[c].next) {
        const emj_node *v = &d->nodes[c];
        if (v->type != EMJ_NUM || !v->is_int || v->i < 0) return false;
        vals[k++] = v->i;
    }
    *count = k;
    return true;
}

static em_status parse_entry(st_header *H, const emj_node *x, st_entry *e) {
    const emj_doc *d = &H->doc;
    const char *name = emj_key(d, x);
    if (x->klen == 0) return em_seterr(EM_ERR_FORMAT, "%s: a tensor has an empty name", H->op);
    if (x->klen > (1u << 20)) return em_seterr(EM_ERR_FORMAT, "%s: a tensor name of %zu bytes is too long", H->op, x->klen);
    if (memchr(name, 0, x->klen)) return em_seterr(EM_ERR_FORMAT, "%s: tensor name \"%s...\" contains a NUL character", H->op, name);
    if (x->type != EMJ_OBJ)
        return em_seterr(EM_ERR_FORMAT, "%s: tensor '%s': expected an object {dtype, shape, data_offsets}", H->op, name);
    e->name = name;
    bool has_dt = false, has_shape = false, has_off = false;
    for (int64_t c = x->first; c >= 0; c = d->nodes[c].next) {
        const emj_node *f = &d->nodes[c];
        if (is_key(d, f, "dtype") && !has_dt) {
            has_dt = true;
            if (f->type != EMJ_STR) return em_seterr(EM_ERR_FORMAT, "%s: tensor '%s': dtype must be a string", H->op, name);
            const char *s = emj_str(d, f);
            int k = 0;
            while (k < EM_NUM_DTYPES && !(strlen(st_names[k]) == f->len && memcmp(st_names[k], s, f->len) == 0)) k++;
            if (k == EM_NUM_DTYPES) {
                char pat[40];
                snprintf(pat, sizeof pat, " %.30s ", s);
                if (f->len < 30 && strstr(known_other, pat))
                    return em_seterr(EM_ERR_DTYPE, "%s: tensor '%s' has dtype %s, which Ember does not support (F32 F64 F16 "
                                                   "BF16 I32 I64 U8 BOOL); convert it first", H->op, name, s);
                return em_seterr(EM_ERR_FORMAT, "%s: tensor '%s' has unknown dtype \"%.30s\"", H->op, name, s);
            }
            e->dt = (em_dtype)k;
        } else if (is_key(d, f, "shape") && !has_shape) {
            has_shape = true;
            int64_t nd;
            if (!int_array(d, f, EM_MAX_DIMS, e->shape, &nd))
                return em_seterr(EM_ERR_FORMAT, "%s: tensor '%s': shape must be a list of at most %d non-negative integers",
                                 H->op, name, EM_MAX_DIMS);
            e->ndim = (int)nd;
        } else if (is_key(d, f, "data_offsets") && !has_off) {
            has_off = true;
            int64_t off[2], k;
            if (!int_array(d, f, 2, off, &k) || k != 2 || off[0] > off[1])
                return em_seterr(EM_ERR_FORMAT, "%s: tensor '%s': data_offsets must be [begin, end], integers with "
                                                "0 <= begin <= end", H->op, name);
            e->begin = (uint64_t)off[0];
            e->end = (uint64_t)off[1];
        } else {
            return em_seterr(EM_ERR_FORMAT, "%s: tensor '%s': unexpected or repeated field \"%.40s\" (only dtype, "
                                            "shape and data_offsets, once each)", H->op, name, emj_key(d, f));
        }
    }
    if (!has_dt || !has_shape || !has_off)
        return em_seterr(EM_ERR_FORMAT, "%s: tensor '%s' lacks its %s", H->op, name,
                         !has_dt ? "dtype" : !has_shape ? "shape" : "data_offsets");
    int64_t numel = 1, nbytes;
    for (int i = 0; i < e->ndim; i++)
        if (emb_mul_overflows(numel, e->shape[i], &numel))
            return em_seterr(EM_ERR_FORMAT, "%s: tensor '%s': shape too large", H->op, name);
    if (emb_mul_overflows(numel, (int64_t)em_dtype_size(e->dt), &nbytes) || (uint64_t)nbytes != e->end - e->begin) {
        char sh[EMB_SHAPE_BUF];
        return em_seterr(EM_ERR_FORMAT, "%s: tensor '%s' of shape %s and dtype %s needs %lld bytes, but its data_offsets "
                                        "[%llu, %llu] span %llu", H->op, name, emb_shape_str(sh, e->shape, e->ndim),
                         st_names[e->dt], (long long)nbytes, (unsigned long long)e->begin,
                         (unsigned long long)e->end, (unsigned long long)(e->end - e->begin));
    }
    return EM_OK;
}

static int by_offset(const void *a, const void *b) {
    const st_entry *x = *(st_entry *const *)a, *y = *(st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* parses and checks the whole header against a data section of data_len bytes */
static em_status parse_header(st_header *H, const char *text, size_t n, uint64_t data_len) {
    em_status s = emj_parse(&H->doc, text, n, H->op, (int64_t)1 << 22);
    if (s) return s;
    const emj_doc *d = &H->doc;
    const emj_node *root = &d->nodes[0];
    if (root->type != EMJ_OBJ) return em_seterr(EM_ERR_FORMAT, "%s: the header must be a JSON object", H->op);
    H->meta = -1;
    H->e = calloc((size_t)root->n + 1, sizeof *H->e);
    if (!H->e) return em_seterr(EM_ERR_OOM, "%s: out of memory", H->op);
    emio_strmap names = {0};
    bool oom = false;
    for (int64_t c = root->first; c >= 0 && !s; c = d->nodes[c].next) {
        const emj_node *x = &d->nodes[c];
        if (is_key(d, x, "__metadata__")) {
            if (H->meta >= 0) { s = em_seterr(EM_ERR_FORMAT, "%s: \"__metadata__\" appears twice", H->op); break; }
            H->meta = c;
            if (x->type != EMJ_OBJ) { s = em_seterr(EM_ERR_FORMAT, "%s: __metadata__ must be an object of strings", H->op); break; }
            emio_strmap keys = {0};
            for (int64_t m = x->first; m >= 0 && !s; m = d->nodes[m].next) {
                const emj_node *v = &d->nodes[m];
                if (v->type != EMJ_STR || v->klen == 0 || v->klen > (1u << 20) || memchr(emj_key(d, v), 0, v->klen) || memchr(emj_str(d, v), 0, v->len))
                    s = em_seterr(EM_ERR_FORMAT, "%s: __metadata__ entry \"%.40s\": keys must be non-empty strings and values "
                                                 "strings, without NUL characters", H->op, emj_key(d, v));
                else if (!emio_strmap_put(&keys, emj_key(d, v), v->klen, 0, &oom))
                    s = oom ? em_seterr(EM_ERR_OOM, "%s: out of memory", H->op)
                            : em_seterr(EM_ERR_FORMAT, "%s: __metadata__ key \"%.40s\" appears twice", H->op, emj_key(d, v));
            }
            emio_strmap_free(&keys);
            continue;
        }
        st_entry *e = &H->e[H->n];
        if ((s = parse_entry(H, x, e))) break;
        if (!emio_strmap_put(&names, emj_key(d, x), x->klen, 0, &oom))
            s = oom ? em_seterr(EM_ERR_OOM, "%s: out of memory", H->op)
                    : em_seterr(EM_ERR_FORMAT, "%s: tensor '%s' appears twice in the header", H->op, e->name);
        H->n++;
    }
    emio_strmap_free(&names);
    if (s) return s;
    /* the tensors must tile the data section */
    st_entry **order = malloc(((size_t)H->n + 1) * sizeof *order);
    if (!order) return em_seterr(EM_ERR_OOM, "%s: out of memory", H->op);
    for (int64_t i = 0; i < H->n; i++) order[i] = &H->e[i];
    qsort(order, (size_t)H->n, sizeof *order, by_offset);
    uint64_t at = 0;
    for (int64_t i = 0; i < H->n && !s; i++) {
        const st_entry *e = order[i];
        if (e->begin < at)
            s = em_seterr(EM_ERR_FORMAT, "%s: tensor '%s' [%llu, %llu) overlaps tensor '%s', which ends at %llu", H->op,
                          e->name, (unsigned long long)e->begin, (unsigned long long)e->end, order[i - 1]->name,
                          (unsigned long long)at);
        else if (e->begin > at)
            s = em_seterr(EM_ERR_FORMAT, "%s: bytes [%llu, %llu) of the data section belong to no tensor (before '%s')",
                          H->op, (unsigned long long)at, (unsigned long long)e->begin, e->name);
        else if (e->end > data_len)
            s = em_seterr(EM_ERR_FORMAT, "%s: tensor '%s' data_offsets [%llu, %llu] run past the data section (%llu bytes): "
                                         "the file is truncated or the offsets are wrong", H->op, e->name,
                          (unsigned long long)e->begin, (unsigned long long)e->end, (unsigned long long)data_len);
        at = e->end;
    }
    if (!s && at != data_len)
        s = em_seterr(EM_ERR_FORMAT, "%s: the tensors cover %llu bytes but the data section has %llu (extra bytes at the end)",
                      H->op, (unsigned long long)at, (unsigned long long)data_len);
    free(order);
    return s;
}

static em_status load(emio_src *src, em_state_dict_t **out) {
    const char *op = src->op;
    st_header H = {.op = op};
    em_state_dict_t *sd = NULL;
    char *text = NULL;
    uint64_t n;
    em_status s = emio_src_read(src, &n, 8, "the 8-byte header length");
    if (s) goto done;
    if (n > MAX_HEADER) {
        s = em_seterr(EM_ERR_FORMAT, "%s: '%s': header length %llu is over the 100 MB limit (not a safetensors file?)", op,
                      src->path, (unsigned long long)n);
        goto done;
    }
    if (n > src->size - 8) {
        s = em_seterr(EM_ERR_FORMAT, "%s: '%s': header length %llu runs past the end of the %llu-byte file", op, src->path,
                      (unsigned long long)n, (unsigned long long)src->size);
        goto done;
    }
    if (!(text = malloc((size_t)n + 1))) { s = em_seterr(EM_ERR_OOM, "%s: out of memory", op); goto done; }
    if ((s = emio_src_read(src, text, n, "the header"))) goto done;
    if ((s = parse_header(&H, text, (size_t)n, src->size - 8 - n))) goto done;
    if (!(sd = em_state_dict_new())) { s = em_last_status(); goto done; }
    if (H.meta >= 0) {
        for (int64_t m = H.doc.nodes[H.meta].first; m >= 0 && !s; m = H.doc.nodes[m].next)
            s = em_state_dict_set_meta(sd, emj_key(&H.doc, &H.doc.nodes[m]), emj_str(&H.doc, &H.doc.nodes[m]));
        if (s) goto done;
    }
    for (int64_t i = 0; i < H.n; i++) {
        st_entry *e = &H.e[i];
        em_tensor_t *t = emt_new(e->dt, e->shape, e->ndim);
        if (!t) { s = em_last_status(); goto done; }
        s = emio_src_seek(src, 8 + n + e->begin);
        if (!s) s = emio_src_read(src, t->storage->data, e->end - e->begin, e->name);
        if (!s && e->dt == EM_BOOL) {
            uint8_t *b = t->storage->data;
            for (uint64_t k = 0; k < e->end - e->begin; k++) b[k] = b[k] != 0;
        }
        if (!s) s = em_state_dict_set(sd, e->name, t);
        em_release(t);
        if (s) goto done;
    }
done:
    emj_free(&H.doc);
    free(H.e);
    free(text);
    if (s) {
        em_state_dict_free(sd);
        return s;
    }
    *out = sd;
    return EM_OK;
}

em_status em_safetensors_load(const char *path, em_state_dict_t **out) {
    static const char *op = "em_safetensors_load";
    if (!out) return em_seterr(EM_ERR_ARG, "%s: out is NULL", op);
    *out = NULL;
    emio_src src;
    em_status s = emio_src_open(&src, op, path);
    if (!s) s = load(&src, out);
    emio_src_close(&src);
    return s;
}

em_status emio_safetensors_load_mem(const void *buf, size_t n, em_state_dict_t **out) {
    emio_src src;
    emio_src_mem(&src, "em_safetensors_load", buf, n);
    *out = NULL;
    return load(&src, out);
}

/* ---- writing ---------------------------------------------------------------------------------- */
typedef struct {
    const char *name;
    em_tensor_t *t;
} w_entry;

/* the position of each dtype in safetensors' Dtype enum (BOOL U8 I8 F8_E5M2 F8_E4M3 I16 U16 F16
   BF16 I32 U32 F32 F64 I64 U64), which its writer sorts by, descending, then by name */
static const int hf_rank[EM_NUM_DTYPES] = {[EM_F32] = 11, [EM_F64] = 12, [EM_F16] = 7, [EM_BF16] = 8,
                                           [EM_I32] = 9,  [EM_I64] = 13, [EM_U8] = 1,  [EM_BOOL] = 0};

static int by_dtype_name(const void *a, const void *b) {
    const w_entry *x = a, *y = b;
    int rx = hf_rank[x->t->dtype], ry = hf_rank[y->t->dtype];
    if (rx != ry) return rx > ry ? -1 : 1;
    return strcmp(x->name, y->name);
}

static bool valid_utf8(const char *s) {
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = emio_utf8_next((const uint8_t *)s + i, n - i, &cp);
        if (!k) return false;
        i += (size_t)k;
    }
    return true;
}

typedef struct {
    const em_state_dict_t *sd;
    w_entry *e;
    int64_t n;
    emio_buf header;
} writer;

static em_status prepare(writer *W) {
    static const char *op = "em_safetensors_save";
    const em_state_dict_t *sd = W->sd;
    W->n = em_state_dict_count(sd);
    W->e = calloc((size_t)W->n + 1, sizeof *W->e);
    if (!W->e) return em_seterr(EM_ERR_OOM, "%s: out of memory", op);
    for (int64_t i = 0; i < W->n; i++) {
        em_tensor_t *t = em_state_dict_tensor_at(sd, i); /* scope-owned or ours: released below */
        const char *name = em_state_dict_name_at(sd, i);
        W->e[i] = (w_entry){name, t};
        if (!t->storage)
            return em_seterr(EM_ERR_ARG, "%s: tensor '%s' is symbolic (inside a traced function); save real tensors", op, name);
        if (!valid_utf8(name)) return em_seterr(EM_ERR_ARG, "%s: tensor name '%s' is not valid UTF-8", op, name);
    }
    if (W->n) qsort(W->e, (size_t)W->n, sizeof *W->e, by_dtype_name);
    emio_buf *h = &W->header;
    emio_buf_put(h, "{", 1);
    int64_t nm = em_state_dict_meta_count(sd);
    if (nm > 0) {
        emio_buf_puts(h, "\"__metadata__\":{");
        for (int64_t i = 0; i < nm; i++) {
            const char *k = em_state_dict_meta_key_at(sd, i), *v = em_state_dict_meta(sd, k);
            if (!valid_utf8(k) || !valid_utf8(v)) return em_seterr(EM_ERR_ARG, "%s: metadata '%s' is not valid UTF-8", op, k);
            if (i) emio_buf_put(h, ",", 1);
            emio_buf_json_str(h, k, strlen(k));
            emio_buf_put(h, ":", 1);
            emio_buf_json_str(h, v, strlen(v));
        }
        emio_buf_put(h, "}", 1);
    }
    uint64_t at = 0;
    for (int64_t i = 0; i < W->n; i++) {
        em_tensor_t *t = W->e[i].t;
        if (i || nm > 0) emio_buf_put(h, ",", 1);
        emio_buf_json_str(h, W->e[i].name, strlen(W->e[i].name));
        emio_buf_printf(h, ":{\"dtype\":\"%s\",\"shape\":[", st_names[t->dtype]);
        for (int d = 0; d < t->ndim; d++) emio_buf_printf(h, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        uint64_t nb = (uint64_t)emt_numel(t) * em_dtype_size(t->dtype);
        emio_buf_printf(h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)at, (unsigned long long)(at + nb));
        at += nb;
    }
    emio_buf_put(h, "}", 1);
    while (h->n % 8) emio_buf_put(h, " ", 1);
    if (h->oom) return em_seterr(EM_ERR_OOM, "%s: out of memory", op);
    return EM_OK;
}

/* writes the whole file to f, or appends it to b */
static em_status emit(writer *W, FILE *f, emio_buf *b) {
    static const char *op = "em_safetensors_save";
    uint64_t hn = W->header.n;
    em_status s = EM_OK;
    if (f) s = emio_fwrite(f, &hn, 8, op);
    else emio_buf_put(b, &hn, 8);
    if (!s && f) s = emio_fwrite(f, W->header.p, W->header.n, op);
    else if (!s) emio_buf_put(b, W->header.p, W->header.n);
    for (int64_t i = 0; i < W->n && !s; i++) {
        em_tensor_t *t = W->e[i].t;
        em_tensor_t *c = emt_is_contiguous(t) ? NULL : emt_contiguous_copy(t, t->dtype);
        if (!emt_is_contiguous(t) && !c) return em_last_status();
        em_tensor_t *src = c ? c : t;
        size_t nb = (size_t)emt_numel(src) * em_dtype_size(src->dtype);
        if (f) s = emio_fwrite(f, emt_data(src), nb, op);
        else emio_buf_put(b, emt_data(src), nb);
        if (c) em_release(c);
    }
    if (!s && b && b->oom) s = em_seterr(EM_ERR_OOM, "%s: out of memory", op);
    return s;
}

static em_status write_file(FILE *f, void *ctx) { return emit(ctx, f, NULL); }

static em_status save(const em_state_dict_t *sd, const char *path, emio_buf *b) {
    if (!sd) return em_seterr(EM_ERR_ARG, "em_safetensors_save: state dict is NULL");
    /* tensor_at hands out scope-owned references; a private scope keeps them out of the caller's */
    em_scope_t *scope = em_scope_begin();
    if (!scope) return em_last_status();
    writer W = {.sd = sd};
    em_status s = prepare(&W);
    if (!s) s = path ? emio_write_atomic("em_safetensors_save", path, write_file, &W) : emit(&W, NULL, b);
    free(W.e);
    free(W.header.p);
    em_scope_end(scope);
    return s;
}

em_status em_safetensors_save(const char *path, const em_state_dict_t *sd) {
    if (!path) return em_seterr(EM_ERR_ARG, "em_safetensors_save: path is NULL");
    return save(sd, path, NULL);
}

em_status emio_safetensors_serialize(const em_state_dict_t *sd, emio_buf *out) { return save(sd, NULL, out); }
