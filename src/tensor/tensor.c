/* tensor.c - tensor handles: construction, reference counts, scopes, geometry, accessors.
 *
 * Scopes are a thread-local stack; each holds the references it owns in a growable array.
 * em_scope_end drops them all, which is how a training loop body frees its temporaries
 * without naming them. Handles made outside every scope belong to the caller.
 */
#include "tensor.h"

#include "../autograd/autograd.h"
#include "../capture/capture.h"

#include <stdio.h>

struct em_scope {
    em_tensor_t **items;
    int64_t n, cap;
    struct em_scope *parent;
};

static _Thread_local em_scope_t *scope_top;
static int64_t live_tensors, live_bytes;
static uint64_t serial_counter = 1;

uint64_t emt_next_serial(void) { return __atomic_load_n(&serial_counter, __ATOMIC_RELAXED); }
static uint64_t new_serial(void) { return __atomic_fetch_add(&serial_counter, 1, __ATOMIC_RELAXED); }

int64_t em_live_tensors(void) { return __atomic_load_n(&live_tensors, __ATOMIC_RELAXED); }
int64_t em_live_bytes(void) { return __atomic_load_n(&live_bytes, __ATOMIC_RELAXED); }

/* ---- construction ------------------------------------------------------------------------ */
static em_tensor_t *alloc_handle(void) {
    em_tensor_t *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->magic = EMT_MAGIC;
    t->refcount = 1;
    t->serial = new_serial();
    __atomic_add_fetch(&live_tensors, 1, __ATOMIC_RELAXED);
    return t;
}

static void storage_release(emt_storage *s) {
    if (!s || --s->refcount > 0) return;
    __atomic_sub_fetch(&live_bytes, (int64_t)s->nbytes, __ATOMIC_RELAXED);
    emb_free(s->data);
    free(s);
}

void emt_contig_strides(const int64_t *shape, int ndim, int64_t *strides) {
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        strides[d] = s;
        s *= shape[d] > 0 ? shape[d] : 1;
    }
}

em_tensor_t *emt_new(em_dtype dt, const int64_t *shape, int ndim) {
    EM_ASSERT(ndim >= 0 && ndim <= EM_MAX_DIMS);
    int64_t numel = 1, nbytes;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || emb_mul_overflows(numel, shape[d], &numel))
            return em_seterr_null(EM_ERR_ARG, "tensor: bad or too large shape");
    }
    if (emb_mul_overflows(numel, (int64_t)emt_esize(dt), &nbytes) || nbytes > ((int64_t)1 << 46))
        return em_seterr_null(EM_ERR_OOM, "tensor: %lld elements of %s is too large",
                              (long long)numel, em_dtype_name(dt));
    emt_storage *s = calloc(1, sizeof *s);
    void *data = emb_alloc((size_t)nbytes);
    em_tensor_t *t = alloc_handle();
    if (!s || !data || !t) {
        free(s);
        emb_free(data);
        if (t) { __atomic_sub_fetch(&live_tensors, 1, __ATOMIC_RELAXED); free(t); }
        return em_seterr_null(EM_ERR_OOM, "tensor: out of memory allocating %lld bytes",
                              (long long)nbytes);
    }
    s->refcount = 1;
    s->serial = new_serial();
    s->data = data;
    s->nbytes = (size_t)nbytes;
    __atomic_add_fetch(&live_bytes, nbytes, __ATOMIC_RELAXED);
    t->storage = s;
    t->dtype = dt;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
    emt_contig_strides(shape, ndim, t->strides);
    return t;
}

em_tensor_t *emt_new_symbolic(void *sym, int id, em_dtype dt, const int64_t *shape, int ndim) {
    em_tensor_t *t = alloc_handle();
    if (!t) return em_seterr_null(EM_ERR_OOM, "tensor: out of memory");
    t->sym = sym;
    t->sym_id = id;
    t->dtype = dt;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
    emt_contig_strides(shape, ndim, t->strides);
    return t;
}

em_tensor_t *emt_new_zeros(em_dtype dt, const int64_t *shape, int ndim) {
    em_tensor_t *t = emt_new(dt, shape, ndim);
    if (t) memset(t->storage->data, 0, t->storage->nbytes);
    return t;
}

em_tensor_t *emt_view(em_tensor_t *base, const int64_t *shape, const int64_t *strides, int ndim,
                      int64_t offset) {
    EM_ASSERT(ndim >= 0 && ndim <= EM_MAX_DIMS);
    em_tensor_t *t = alloc_handle();
    if (!t) return em_seterr_null(EM_ERR_OOM, "tensor: out of memory");
    t->storage = base->storage;
    if (t->storage) t->storage->refcount++;
    t->sym = base->sym;
    t->sym_id = base->sym_id;
    if (!t->storage && emcap_note_alias(t) != EM_OK) { /* a lazy trace realizes aliases too */
        __atomic_sub_fetch(&live_tensors, 1, __ATOMIC_RELAXED);
        free(t);
        return NULL;
    }
    t->dtype = base->dtype;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) {
        t->shape[d] = shape[d];
        t->strides[d] = strides[d];
    }
    t->offset = offset;
    return t;
}

em_tensor_t *emt_detached(em_tensor_t *t) {
    return emt_view(t, t->shape, t->strides, t->ndim, t->offset);
}

void emt_free(em_tensor_t *t) {
    if (t->grad_fn) {
        if (t->retains_grad) ema_forget_output(t->grad_fn, t->out_idx, t);
        ema_node_release(t->grad_fn);
    }
    if (t->grad) em_release(t->grad);
    storage_release(t->storage);
    t->magic = 0;
    __atomic_sub_fetch(&live_tensors, 1, __ATOMIC_RELAXED);
    free(t);
}

bool emt_valid(em_tensor_t *t) { return t && t->magic == EMT_MAGIC && t->refcount > 0; }

bool emt_check(em_tensor_t *t, const char *op, const char *what) {
    if (!t) {
        /* name the root cause: the message of the call that produced the NULL */
        static const char tag[] = " (an earlier call failed: ";
        char prev[800];
        snprintf(prev, sizeof prev, "%s", em_last_error());
        char *root = strstr(prev, tag);
        if (root) {
            root += sizeof tag - 1;
            size_t n = strlen(root);
            if (n && root[n - 1] == ')') root[n - 1] = 0;
        } else {
            root = prev;
        }
        em_seterr(EM_ERR_ARG, "%s: argument `%s` is NULL%s%s%s", op, what, root[0] ? tag : "", root,
                  root[0] ? ")" : "");
        return false;
    }
    if (t->magic != EMT_MAGIC || t->refcount <= 0) {
        em_seterr(EM_ERR_ARG, "%s: argument `%s` is not a live tensor handle (released already?)",
                  op, what);
        return false;
    }
    return true;
}

/* ---- ownership and scopes ------------------------------------------------------------------ */
em_tensor_t *em_retain(em_tensor_t *t) {
    if (!emt_check(t, "em_retain", "t")) return NULL;
    t->refcount++;
    return t;
}

void em_release(em_tensor_t *t) {
    if (!t) return;
    if (!emt_valid(t)) {
        em_seterr(EM_ERR_ARG, "em_release: not a live tensor handle (released twice?)");
        return;
    }
    if (--t->refcount == 0) emt_free(t);
}

static bool scope_push(em_scope_t *s, em_tensor_t *t) {
    if (s->n == s->cap) {
        int64_t cap = s->cap ? 2 * s->cap : 64;
        em_tensor_t **items = realloc(s->items, (size_t)cap * sizeof *items);
        if (!items) return false;
        s->items = items;
        s->cap = cap;
    }
    s->items[s->n++] = t;
    return true;
}

void emt_scope_add(em_tensor_t *t) {
    if (scope_top && !scope_push(scope_top, t))
        em_die(__FILE__, __LINE__, "out of memory growing a scope");
}

em_tensor_t *emt_own(em_tensor_t *t) {
    if (t) emt_scope_add(t);
    return t;
}

em_scope_t *em_scope_begin(void) {
    em_scope_t *s = calloc(1, sizeof *s);
    if (!s) return em_seterr_null(EM_ERR_OOM, "em_scope_begin: out of memory");
    s->parent = scope_top;
    scope_top = s;
    return s;
}

static void scope_free(em_scope_t *s) {
    for (int64_t i = 0; i < s->n; i++) em_release(s->items[i]);
    free(s->items);
    free(s);
}

void em_scope_end(em_scope_t *s) {
    if (!s) return;
    em_scope_t *p = scope_top;
    while (p && p != s) p = p->parent;
    if (!p) {
        em_seterr(EM_ERR_STATE, "em_scope_end: this scope is not open on this thread (ended twice?)");
        return;
    }
    while (scope_top != s) { /* inner scopes left open: end them too */
        em_scope_t *inner = scope_top;
        emb_log("errors", "em_scope_end: an inner scope was left open; ending it too");
        scope_top = inner->parent;
        scope_free(inner);
    }
    scope_top = s->parent;
    scope_free(s);
}

em_tensor_t *em_keep(em_tensor_t *t) {
    if (!emt_check(t, "em_keep", "t")) return NULL;
    em_scope_t *s = scope_top;
    if (!s) return t;
    for (int64_t i = s->n - 1; i >= 0; i--) {
        if (s->items[i] == t) {
            memmove(s->items + i, s->items + i + 1, (size_t)(s->n - i - 1) * sizeof *s->items);
            s->n--;
            if (s->parent && !scope_push(s->parent, t)) em_die(__FILE__, __LINE__, "out of memory");
            return t;
        }
    }
    /* not owned by this scope: give the enclosing owner a reference of its own */
    t->refcount++;
    if (s->parent && !scope_push(s->parent, t)) em_die(__FILE__, __LINE__, "out of memory");
    return t;
}

/* ---- geometry ------------------------------------------------------------------------------ */
bool emt_is_contiguous(const em_tensor_t *t) {
    if (emt_numel(t) == 0) return true;
    int64_t s = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && t->strides[d] != s) return false;
        s *= t->shape[d];
    }
    return true;
}

bool emt_wrap_dim(int *dim, int ndim, const char *op) {
    int n = ndim > 0 ? ndim : 1; /* a 0-dim tensor accepts dim 0 and -1, like PyTorch */
    if (*dim < -n || *dim >= n)
        return em_seterr(EM_ERR_ARG, "%s: dim %d is out of range for a tensor with %d dims (use %d..%d)",
                         op, *dim, ndim, -n, n - 1), false;
    if (*dim < 0) *dim += n;
    return true;
}

bool emt_broadcast_shape(const int64_t *a, int na, const int64_t *b, int nb, int64_t *out, int *nout) {
    int n = EM_MAX(na, nb);
    for (int i = 0; i < n; i++) {
        int64_t x = i < n - na ? 1 : a[i - (n - na)], y = i < n - nb ? 1 : b[i - (n - nb)];
        if (x != y && x != 1 && y != 1) return false;
        out[i] = x == 1 ? y : x;
    }
    *nout = n;
    return true;
}

em_tensor_t *emt_expand_to(em_tensor_t *t, const int64_t *shape, int ndim) {
    int64_t strides[EM_MAX_DIMS];
    EM_ASSERT(ndim >= t->ndim);
    for (int i = 0; i < ndim; i++) {
        int j = i - (ndim - t->ndim);
        if (j < 0) {
            strides[i] = 0;
        } else {
            EM_ASSERT(t->shape[j] == shape[i] || t->shape[j] == 1);
            strides[i] = t->shape[j] == shape[i] ? t->strides[j] : 0;
        }
    }
    return emt_view(t, shape, strides, ndim, t->offset);
}

em_tensor_t *emt_contiguous_copy(em_tensor_t *t, em_dtype dt) {
    em_tensor_t *o = emt_new(dt, t->shape, t->ndim);
    if (o) emt_copy(o, t);
    return o;
}

em_tensor_t *emt_as_contiguous(em_tensor_t *t, em_dtype dt) {
    if (t->dtype == dt && emt_is_contiguous(t)) {
        t->refcount++;
        return t;
    }
    return emt_contiguous_copy(t, dt);
}

/* ---- public accessors ------------------------------------------------------------------------ */
int em_ndim(em_tensor_t *t) { return emt_check(t, "em_ndim", "t") ? t->ndim : -1; }

int64_t em_size(em_tensor_t *t, int dim) {
    if (!emt_check(t, "em_size", "t") || !emt_wrap_dim(&dim, t->ndim, "em_size")) return -1;
    return t->ndim ? t->shape[dim] : 1;
}

int64_t em_stride(em_tensor_t *t, int dim) {
    if (!emt_check(t, "em_stride", "t") || !emt_wrap_dim(&dim, t->ndim, "em_stride")) return -1;
    return t->ndim ? t->strides[dim] : 1;
}

int64_t em_numel(em_tensor_t *t) { return emt_check(t, "em_numel", "t") ? emt_numel(t) : -1; }
const int64_t *em_shape(em_tensor_t *t) { return emt_check(t, "em_shape", "t") ? t->shape : NULL; }
em_dtype em_type(em_tensor_t *t) { return emt_check(t, "em_type", "t") ? t->dtype : EM_F32; }
bool em_is_contiguous(em_tensor_t *t) { return emt_check(t, "em_is_contiguous", "t") && emt_is_contiguous(t); }

/* Symbolic tensors (inside a trace) have no storage: what identifies theirs is the tracer and
   the graph value (emt_view copies both, so aliases made by emt_view answer true). A value that a
   traced view op makes is a new graph value, so it answers false against its input: in a
   compiled program every output is a fresh buffer anyway. */
bool em_shares_storage(em_tensor_t *a, em_tensor_t *b) {
    if (!emt_check(a, "em_shares_storage", "a") || !emt_check(b, "em_shares_storage", "b")) return false;
    if (emt_is_symbolic(a) || emt_is_symbolic(b))
        return emt_is_symbolic(a) && emt_is_symbolic(b) && a->sym == b->sym && a->sym_id == b->sym_id;
    return a->storage == b->storage;
}

em_status em_to_data(em_tensor_t *t, void *dst, size_t nbytes) {
    if (!emt_check(t, "em_to_data", "t")) return em_last_status();
    if (emt_is_symbolic(t)) { /* a graph break: an error, or (lazy mode) t is realized by the call */
        em_status br = emcap_data_read_at("em_to_data", t, __builtin_return_address(0));
        if (br != EM_OK || emt_is_symbolic(t)) return br != EM_OK ? br : em_last_status();
    }
    size_t need = (size_t)emt_numel(t) * emt_esize(t->dtype);
    if (!dst && need) return em_seterr(EM_ERR_ARG, "em_to_data: dst is NULL");
    if (nbytes != need) {
        char b[EMB_SHAPE_BUF];
        return em_seterr(EM_ERR_ARG, "em_to_data: tensor %s of %s needs exactly %zu bytes, got %zu",
                         emb_shape_str(b, t->shape, t->ndim), em_dtype_name(t->dtype), need, nbytes);
    }
    if (need == 0) return EM_OK;
    if (emt_is_contiguous(t)) {
        memcpy(dst, emt_data(t), need);
        return EM_OK;
    }
    /* wrap dst in a temporary contiguous handle and copy into it */
    em_tensor_t *c = emt_contiguous_copy(t, t->dtype);
    if (!c) return em_last_status();
    memcpy(dst, c->storage->data, need);
    em_release(c);
    return EM_OK;
}

double em_item(em_tensor_t *t) {
    if (!emt_check(t, "em_item", "t")) return 0.0 / 0.0;
    if (emt_is_symbolic(t) && (emcap_data_read_at("em_item", t, __builtin_return_address(0)) != EM_OK ||
                               emt_is_symbolic(t)))
        return 0.0 / 0.0; /* a graph break (in lazy mode the call realizes t and the read goes on) */
    if (emt_numel(t) != 1) {
        char b[EMB_SHAPE_BUF];
        em_seterr(EM_ERR_SHAPE, "em_item: tensor %s has %lld elements; em_item needs exactly one "
                  "(reduce it first, e.g. em_sum)", emb_shape_str(b, t->shape, t->ndim),
                  (long long)emt_numel(t));
        return 0.0 / 0.0;
    }
    return emt_load(emt_data(t), t->dtype);
}

em_status em_print(em_tensor_t *t) { return em_fprint(stdout, t); }

em_status em_fprint(FILE *f, em_tensor_t *t) {
    if (!f) return em_seterr(EM_ERR_ARG, "em_fprint: FILE is NULL");
    char *s = em_to_string(t);
    if (!s) return em_last_status();
    fputs(s, f);
    fputc('\n', f);
    free(s);
    return EM_OK;
}

char *em_to_string(em_tensor_t *t) {
    if (!emt_check(t, "em_to_string", "t")) return NULL;
    return emt_format(t);
}
