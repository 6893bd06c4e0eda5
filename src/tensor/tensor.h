/* tensor.h - the tensor handle, its storage, dtype helpers, the strided iterator and scopes.
 *
 * A tensor is (storage, dtype, shape, strides in elements, offset in elements). Views share
 * the storage; the storage counts references and carries a version number that in-place writes
 * bump (autograd checks it). The same struct will stand for a symbolic tensor inside a traced
 * function (storage NULL, `sym` set) so user code cannot tell the modes apart (DESIGN 3).
 *
 * Ownership: emt_* constructors return a handle with one reference that nobody owns yet;
 * emt_own() hands that reference to the innermost scope (or leaves it to the caller when no scope
 * is open). Every public entry point returns owned handles; internal code releases what it makes.
 */
#ifndef EMBER_TENSOR_H
#define EMBER_TENSOR_H

#include "../base/base.h"
#include <string.h>

#define EMT_MAGIC 0x454d4254u /* "EMBT" */

typedef struct emt_storage {
    int64_t refcount;
    void *data;
    size_t nbytes;
    uint64_t version; /* bumped by every in-place write */
    uint64_t serial;  /* creation order (capture tells tensors made during a trace apart) */
} emt_storage;

struct ema_node;

struct em_tensor {
    uint32_t magic;
    int32_t refcount;
    em_dtype dtype;
    int ndim;
    int64_t shape[EM_MAX_DIMS];
    int64_t strides[EM_MAX_DIMS]; /* elements; 0 for broadcast dims */
    int64_t offset;               /* elements */
    emt_storage *storage;
    /* autograd */
    bool requires_grad;       /* leaf flag set by the user, or produced by a recorded op */
    bool retains_grad;        /* non-leaf asked to keep its gradient */
    em_tensor_t *grad;        /* owned reference, or NULL */
    struct ema_node *grad_fn; /* owned reference; NULL for leaves */
    int out_idx;              /* which output of grad_fn this is */
    /* capture: a symbolic tensor has storage NULL, sym = its tracer and sym_id = its graph value */
    void *sym;
    int sym_id;
    uint64_t serial; /* creation order */
};

static inline bool emt_is_symbolic(const em_tensor_t *t) { return t->storage == NULL; }
static inline uint64_t emt_version(const em_tensor_t *t) { return t->storage ? t->storage->version : 0; }
uint64_t emt_next_serial(void); /* the serial the next tensor or storage will get */
/* a symbolic tensor of metadata m for value id of tracer sym (contiguous logical strides) */
em_tensor_t *emt_new_symbolic(void *sym, int id, em_dtype dt, const int64_t *shape, int ndim);

/* ---- dtype ------------------------------------------------------------------------------ */
static inline bool emt_is_float(em_dtype d) { return d == EM_F32 || d == EM_F64 || d == EM_F16 || d == EM_BF16; }
static inline bool emt_is_int(em_dtype d) { return d == EM_I32 || d == EM_I64 || d == EM_U8; }
float    emt_f16_to_f32(uint16_t h);
uint16_t emt_f32_to_f16(float f);
static inline float emt_bf16_to_f32(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint16_t emt_f32_to_bf16(float f) { /* round to nearest even, NaN kept quiet */
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}
double   emt_load(const void *p, em_dtype dt);          /* one element as double */
void     emt_store(void *p, em_dtype dt, double v);     /* one element from double (saturates ints) */
int64_t  emt_load_i64(const void *p, em_dtype dt);      /* exact for integer dtypes */
/* the dtype a float op computes in: f64 stays f64, every other dtype computes in f32 */
static inline em_dtype emt_compute_float(em_dtype d) { return d == EM_F64 ? EM_F64 : EM_F32; }
/* PyTorch result_type over tensors: 0-dim tensors only win when of a higher category */
em_dtype emt_result_type(const em_dtype *dts, const int *ndims, int n);

/* ---- construction ------------------------------------------------------------------------ */
em_tensor_t *emt_new(em_dtype dt, const int64_t *shape, int ndim);          /* contiguous, uninit; NULL+OOM */
em_tensor_t *emt_new_zeros(em_dtype dt, const int64_t *shape, int ndim);
/* a view of base's storage with the given geometry (no autograd history) */
em_tensor_t *emt_view(em_tensor_t *base, const int64_t *shape, const int64_t *strides, int ndim,
                      int64_t offset);
em_tensor_t *emt_detached(em_tensor_t *t); /* same geometry and storage, no autograd */
em_tensor_t *emt_own(em_tensor_t *t);      /* give the fresh reference to the innermost scope */
void         emt_free(em_tensor_t *t);     /* called when refcount reaches 0 */
bool         emt_valid(em_tensor_t *t);    /* non-NULL with the right magic */
/* validates a public argument: sets "op: argument `what` is NULL ..." and returns false */
bool         emt_check(em_tensor_t *t, const char *op, const char *what);

/* ---- geometry ----------------------------------------------------------------------------- */
static inline int64_t emt_numel_shape(const int64_t *shape, int ndim) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}
static inline int64_t emt_numel(const em_tensor_t *t) { return emt_numel_shape(t->shape, t->ndim); }
static inline size_t emt_esize(em_dtype d) { return em_dtype_size(d); }
static inline char *emt_data(const em_tensor_t *t) {
    return (char *)t->storage->data + t->offset * (int64_t)emt_esize(t->dtype);
}
bool emt_is_contiguous(const em_tensor_t *t);
void emt_contig_strides(const int64_t *shape, int ndim, int64_t *strides);
/* normalises a possibly negative dim; false + error (naming op) when out of range */
bool emt_wrap_dim(int *dim, int ndim, const char *op);
/* broadcast two shapes; false when they do not broadcast (no error set) */
bool emt_broadcast_shape(const int64_t *a, int na, const int64_t *b, int nb, int64_t *out, int *nout);
/* a stride-0 view of t expanded to shape (t must broadcast to it) */
em_tensor_t *emt_expand_to(em_tensor_t *t, const int64_t *shape, int ndim);

/* ---- copying ------------------------------------------------------------------------------ */
/* dst[...] = cast(src[...]); src must have dst's shape (expand it first); any strides, any dtypes */
void emt_copy(em_tensor_t *dst, em_tensor_t *src);
em_tensor_t *emt_contiguous_copy(em_tensor_t *t, em_dtype dt); /* fresh contiguous tensor */
/* t itself (new ref) if contiguous with dtype dt, else a contiguous copy */
em_tensor_t *emt_as_contiguous(em_tensor_t *t, em_dtype dt);

/* ---- the strided pointwise iterator -------------------------------------------------------
 * Runs fn over "rows": for nt tensors of one shape (ts[0] is usually the output, inputs are
 * expanded views), dims are coalesced, the innermost becomes the row, and rows are split over
 * OpenMP threads (long single rows are cut into chunks). fn gets the row length n, one base
 * pointer per tensor and the inner strides in bytes. With every inner stride equal to the
 * element size the row is contiguous, and fn should take a plain loop the compiler vectorizes. */
#define EMT_ITER_MAX 4
typedef void (*emt_row_fn)(int64_t n, char **ptrs, const int64_t *bstrides, void *ctx);
void emt_pointwise(int nt, em_tensor_t *const *ts, emt_row_fn fn, void *ctx);

/* ---- scopes -------------------------------------------------------------------------------- */
void emt_scope_add(em_tensor_t *t); /* internal: what emt_own does */

/* ---- random --------------------------------------------------------------------------------- */
/* Philox 4x32-10 on a full 128-bit counter and 64-bit key (Random123's philox4x32_10) */
void emt_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);
/* the words Ember uses: counter (ctr, 0) under key seed; inline so per-element loops vectorize */
static inline void emt_philox(uint64_t seed, uint64_t ctr, uint32_t out[4]) {
    uint32_t c0 = (uint32_t)ctr, c1 = (uint32_t)(ctr >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c1 = (uint32_t)p1;
        c3 = (uint32_t)p0;
        c0 = n0;
        c2 = n2;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}
/* element i of a random op started at (seed, offset) uses counter offset + i */
static inline float emt_uniform_at(uint64_t seed, uint64_t ctr) {
    uint32_t r[4];
    emt_philox(seed, ctr, r);
    return (float)(r[0] >> 8) * (1.0f / 16777216.0f);
}
double emt_normal_at(uint64_t seed, uint64_t ctr);  /* Box-Muller on words 0 and 1 */
/* out[i] = (float)emt_normal_at(seed, ctr0 + i), bit for bit, in parallel and without libm on
   almost every element; returns how many elements needed libm (random.c) */
int64_t emt_normal_fill_f32(uint64_t seed, uint64_t ctr0, int64_t n, float *out);
/* reserves n counters from the global generator and returns the first */
uint64_t emt_rng_reserve(uint64_t n, uint64_t *seed);

/* ---- printing ------------------------------------------------------------------------------ */
char *emt_format(em_tensor_t *t);

#endif
