/* ember.h - the whole public API of Ember, a machine-learning framework in C.
 *
 * Ember has two modes that share one tensor handle: eager mode (every em_ call runs now,
 * on CPU reference kernels, and records autograd history) and, in later releases, compiled
 * mode (em_compile traces the same code into a graph). This header is all a program needs:
 * compile against it and link with -lember (pkg-config ember).
 *
 * A worked example (fit y = 3x - 1 with one weight and one bias):
 *
 *     em_manual_seed(0);
 *     int64_t n[2] = {64, 1};
 *     em_tensor_t *w = em_randn((int64_t[]){1, 1}, 2, EM_F32);   // caller-owned
 *     em_tensor_t *b = em_zeros((int64_t[]){1}, 1, EM_F32);
 *     em_set_requires_grad(w, true); em_set_requires_grad(b, true);
 *     for (int step = 0; step < 100; step++) {
 *         em_scope_t *s = em_scope_begin();            // owns every handle made below
 *         em_tensor_t *x = em_randn(n, 2, EM_F32);
 *         em_tensor_t *y = em_sub(em_mul_scalar(x, 3.0), em_scalar(1.0, EM_F32));
 *         em_tensor_t *p = em_add(em_matmul(x, w), b);
 *         em_tensor_t *loss = em_mean(em_square(em_sub(p, y)), NULL, 0, false);
 *         em_backward(loss);
 *         em_no_grad_begin();
 *         em_assign(w, em_sub(w, em_mul_scalar(em_grad(w), 0.1)));
 *         em_assign(b, em_sub(b, em_mul_scalar(em_grad(b), 0.1)));
 *         em_no_grad_end();
 *         em_zero_grad(w); em_zero_grad(b);
 *         em_scope_end(s);                             // frees x, y, p, loss, temporaries
 *     }
 *     em_release(w); em_release(b);
 *
 * Conventions
 *  - Errors are values: a call that fails returns NULL (handles) or a non-zero em_status and
 *    sets a thread-local message, em_last_error(), that names the op, the shapes and the fix.
 *    Passing NULL to an op is such an error (so chains of calls fail softly).
 *  - Ownership: every call that returns a handle returns a new reference. Inside a scope
 *    (em_scope_begin) the innermost scope owns it and em_scope_end releases it; outside any
 *    scope the caller owns it and must em_release it. em_keep moves a handle out of the
 *    innermost scope into the enclosing one (or to the caller when there is none).
 *  - Dims may be negative (counted from the end). Broadcasting and type promotion follow
 *    PyTorch. A 0-dim tensor is a scalar.
 *  - Op names are PyTorch's, prefixed em_.
 */
#ifndef EMBER_H
#define EMBER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EM_VERSION_MAJOR 0
#define EM_VERSION_MINOR 1
#define EM_VERSION_PATCH 0
#define EM_MAX_DIMS 8

/* ---- errors ---------------------------------------------------------------------------- */
typedef enum {
    EM_OK = 0,
    EM_ERR_SHAPE,    /* shapes do not fit the op */
    EM_ERR_DTYPE,    /* dtype not supported by the op */
    EM_ERR_ARG,      /* bad argument: NULL handle, bad dim, bad option */
    EM_ERR_INDEX,    /* an index (gather, embedding, ...) out of range */
    EM_ERR_IO,       /* file system error */
    EM_ERR_FORMAT,   /* malformed file */
    EM_ERR_OOM,      /* allocation failed */
    EM_ERR_COMPILE,  /* the compiler failed */
    EM_ERR_BACKEND,  /* a backend (device, library) failed */
    EM_ERR_AUTOGRAD, /* autograd misuse: backward twice, in-place on a leaf ... */
    EM_ERR_STATE     /* call made in the wrong state (scope mismatch ...) */
} em_status;

const char *em_last_error(void);    /* "" when no error happened on this thread */
em_status   em_last_status(void);
void        em_clear_error(void);
const char *em_status_name(em_status s);

/* ---- dtypes ------------------------------------------------------------------------------ */
typedef enum { EM_F32, EM_F64, EM_F16, EM_BF16, EM_I32, EM_I64, EM_U8, EM_BOOL } em_dtype;
#define EM_NUM_DTYPES 8
const char *em_dtype_name(em_dtype dt);   /* "f32", ... */
size_t      em_dtype_size(em_dtype dt);
bool        em_dtype_is_float(em_dtype dt);
em_dtype    em_promote_types(em_dtype a, em_dtype b);

/* ---- tensors ----------------------------------------------------------------------------- */
typedef struct em_tensor em_tensor_t;

em_tensor_t *em_empty(const int64_t *shape, int ndim, em_dtype dt);   /* uninitialised */
em_tensor_t *em_zeros(const int64_t *shape, int ndim, em_dtype dt);
em_tensor_t *em_ones(const int64_t *shape, int ndim, em_dtype dt);
em_tensor_t *em_full(const int64_t *shape, int ndim, double value, em_dtype dt);
em_tensor_t *em_scalar(double value, em_dtype dt);                    /* 0-dim */
em_tensor_t *em_arange(double start, double end, double step, em_dtype dt);
em_tensor_t *em_zeros_like(em_tensor_t *t);
em_tensor_t *em_ones_like(em_tensor_t *t);
em_tensor_t *em_full_like(em_tensor_t *t, double value);
em_tensor_t *em_from_data(const void *data, const int64_t *shape, int ndim, em_dtype dt);
em_status    em_to_data(em_tensor_t *t, void *dst, size_t nbytes);   /* exactly numel*size */
double       em_item(em_tensor_t *t);          /* one-element tensors; NaN + error otherwise */

int            em_ndim(em_tensor_t *t);
int64_t        em_size(em_tensor_t *t, int dim);    /* -1 + error on a bad dim */
int64_t        em_stride(em_tensor_t *t, int dim);  /* in elements */
int64_t        em_numel(em_tensor_t *t);
const int64_t *em_shape(em_tensor_t *t);            /* borrowed; valid while t lives */
em_dtype       em_type(em_tensor_t *t);
bool           em_is_contiguous(em_tensor_t *t);
bool           em_shares_storage(em_tensor_t *a, em_tensor_t *b);

/* printing: like PyTorch ("tensor([[ 1.0000, -0.5000], ...])") */
em_status em_print(em_tensor_t *t);
em_status em_fprint(FILE *f, em_tensor_t *t);
char     *em_to_string(em_tensor_t *t);    /* malloc'ed; free() it */

/* ---- random numbers: counter-based Philox 4x32-10 keyed by (seed, offset) -------------- */
void         em_manual_seed(uint64_t seed);       /* also resets the offset to 0 */
uint64_t     em_rng_seed(void);
uint64_t     em_rng_offset(void);                 /* counters consumed so far */
void         em_rng_set_state(uint64_t seed, uint64_t offset);
em_tensor_t *em_rand(const int64_t *shape, int ndim, em_dtype dt);    /* U[0,1) */
em_tensor_t *em_randn(const int64_t *shape, int ndim, em_dtype dt);   /* N(0,1) */
em_tensor_t *em_randint(int64_t low, int64_t high, const int64_t *shape, int ndim, em_dtype dt);

/* ---- memory ------------------------------------------------------------------------------ */
typedef struct em_scope em_scope_t;
em_scope_t  *em_scope_begin(void);
void         em_scope_end(em_scope_t *s);        /* must be the innermost scope */
em_tensor_t *em_keep(em_tensor_t *t);
em_tensor_t *em_retain(em_tensor_t *t);
void         em_release(em_tensor_t *t);         /* NULL is fine */
int64_t      em_live_tensors(void);              /* handles alive in this process */
int64_t      em_live_bytes(void);                /* tensor storage bytes alive */

/* ---- views (no copy; share storage with the input) ---------------------------------------- */
em_tensor_t *em_reshape(em_tensor_t *x, const int64_t *shape, int ndim); /* one -1 allowed; copies
                                                                            only when strides forbid a view */
em_tensor_t *em_view(em_tensor_t *x, const int64_t *shape, int ndim);   /* never copies; error instead */
em_tensor_t *em_flatten(em_tensor_t *x, int start_dim, int end_dim);
em_tensor_t *em_permute(em_tensor_t *x, const int *perm, int ndim);
em_tensor_t *em_transpose(em_tensor_t *x, int dim0, int dim1);
em_tensor_t *em_slice(em_tensor_t *x, int dim, int64_t start, int64_t end, int64_t step);
em_tensor_t *em_select(em_tensor_t *x, int dim, int64_t index);       /* drops dim */
em_tensor_t *em_expand(em_tensor_t *x, const int64_t *shape, int ndim); /* -1 keeps a size */
em_tensor_t *em_squeeze(em_tensor_t *x, int dim);
em_tensor_t *em_unsqueeze(em_tensor_t *x, int dim);
em_tensor_t *em_contiguous(em_tensor_t *x);   /* x itself (new ref) when already contiguous */
em_tensor_t *em_clone(em_tensor_t *x);        /* always copies */
em_tensor_t *em_detach(em_tensor_t *x);       /* shares storage, no autograd history */
em_tensor_t *em_cast(em_tensor_t *x, em_dtype dt);

/* ---- pointwise ---------------------------------------------------------------------------- */
em_tensor_t *em_neg(em_tensor_t *x);
em_tensor_t *em_abs(em_tensor_t *x);
em_tensor_t *em_exp(em_tensor_t *x);
em_tensor_t *em_log(em_tensor_t *x);
em_tensor_t *em_log1p(em_tensor_t *x);
em_tensor_t *em_sqrt(em_tensor_t *x);
em_tensor_t *em_rsqrt(em_tensor_t *x);
em_tensor_t *em_sin(em_tensor_t *x);
em_tensor_t *em_cos(em_tensor_t *x);
em_tensor_t *em_tanh(em_tensor_t *x);
em_tensor_t *em_sigmoid(em_tensor_t *x);
em_tensor_t *em_relu(em_tensor_t *x);
em_tensor_t *em_gelu(em_tensor_t *x);          /* exact: x * Phi(x) with erf */
em_tensor_t *em_gelu_tanh(em_tensor_t *x);     /* tanh approximation (GPT-2) */
em_tensor_t *em_silu(em_tensor_t *x);
em_tensor_t *em_sign(em_tensor_t *x);
em_tensor_t *em_reciprocal(em_tensor_t *x);
em_tensor_t *em_square(em_tensor_t *x);
em_tensor_t *em_logical_not(em_tensor_t *x);

em_tensor_t *em_add(em_tensor_t *a, em_tensor_t *b);
em_tensor_t *em_sub(em_tensor_t *a, em_tensor_t *b);
em_tensor_t *em_mul(em_tensor_t *a, em_tensor_t *b);
em_tensor_t *em_div(em_tensor_t *a, em_tensor_t *b);      /* true division: ints give f32 */
em_tensor_t *em_pow(em_tensor_t *a, em_tensor_t *b);
em_tensor_t *em_maximum(em_tensor_t *a, em_tensor_t *b);
em_tensor_t *em_minimum(em_tensor_t *a, em_tensor_t *b);
em_tensor_t *em_eq(em_tensor_t *a, em_tensor_t *b);       /* comparisons give EM_BOOL */
em_tensor_t *em_ne(em_tensor_t *a, em_tensor_t *b);
em_tensor_t *em_lt(em_tensor_t *a, em_tensor_t *b);
em_tensor_t *em_le(em_tensor_t *a, em_tensor_t *b);
em_tensor_t *em_gt(em_tensor_t *a, em_tensor_t *b);
em_tensor_t *em_ge(em_tensor_t *a, em_tensor_t *b);
em_tensor_t *em_logical_and(em_tensor_t *a, em_tensor_t *b);
em_tensor_t *em_logical_or(em_tensor_t *a, em_tensor_t *b);
/* scalar forms: the scalar takes x's dtype when x is floating (PyTorch's "weak" scalars) */
em_tensor_t *em_add_scalar(em_tensor_t *x, double v);
em_tensor_t *em_sub_scalar(em_tensor_t *x, double v);
em_tensor_t *em_mul_scalar(em_tensor_t *x, double v);
em_tensor_t *em_div_scalar(em_tensor_t *x, double v);
em_tensor_t *em_pow_scalar(em_tensor_t *x, double v);

em_tensor_t *em_where(em_tensor_t *cond, em_tensor_t *a, em_tensor_t *b);
em_tensor_t *em_clamp(em_tensor_t *x, double lo, double hi);   /* use +-INFINITY for one side */
em_tensor_t *em_masked_fill(em_tensor_t *x, em_tensor_t *mask, double value);

/* ---- reductions: dims == NULL / ndims == 0 reduces over every dim ------------------------- */
em_tensor_t *em_sum(em_tensor_t *x, const int *dims, int ndims, bool keepdim);
em_tensor_t *em_mean(em_tensor_t *x, const int *dims, int ndims, bool keepdim);
em_tensor_t *em_prod(em_tensor_t *x, const int *dims, int ndims, bool keepdim);
em_tensor_t *em_amax(em_tensor_t *x, const int *dims, int ndims, bool keepdim);
em_tensor_t *em_amin(em_tensor_t *x, const int *dims, int ndims, bool keepdim);
em_tensor_t *em_logsumexp(em_tensor_t *x, const int *dims, int ndims, bool keepdim);
em_tensor_t *em_var(em_tensor_t *x, const int *dims, int ndims, int64_t correction, bool keepdim);
em_tensor_t *em_std(em_tensor_t *x, const int *dims, int ndims, int64_t correction, bool keepdim);
/* max/min along one dim with indices (EM_I64); indices may be NULL */
em_tensor_t *em_max(em_tensor_t *x, int dim, bool keepdim, em_tensor_t **indices);
em_tensor_t *em_min(em_tensor_t *x, int dim, bool keepdim, em_tensor_t **indices);
em_tensor_t *em_argmax(em_tensor_t *x, int dim, bool keepdim);
em_tensor_t *em_argmin(em_tensor_t *x, int dim, bool keepdim);
em_tensor_t *em_cumsum(em_tensor_t *x, int dim);

/* ---- linear algebra ----------------------------------------------------------------------- */
em_tensor_t *em_matmul(em_tensor_t *a, em_tensor_t *b);   /* batched, broadcasting, 1-d rules */
em_tensor_t *em_linear(em_tensor_t *x, em_tensor_t *w, em_tensor_t *b); /* x @ w^T + b; w (out,in); b may be NULL */

/* ---- neural-network ops ------------------------------------------------------------------- */
em_tensor_t *em_softmax(em_tensor_t *x, int dim);
em_tensor_t *em_log_softmax(em_tensor_t *x, int dim);
/* normalise over the last dim; w and b (size C) may be NULL */
em_tensor_t *em_layer_norm(em_tensor_t *x, em_tensor_t *w, em_tensor_t *b, double eps);
em_tensor_t *em_rms_norm(em_tensor_t *x, em_tensor_t *w, double eps);
em_tensor_t *em_embedding(em_tensor_t *weight, em_tensor_t *indices);  /* weight (V,C), indices int */
typedef enum { EM_REDUCE_MEAN, EM_REDUCE_SUM, EM_REDUCE_NONE } em_reduction;
/* logits (N,C) or (C), targets (N) or () integer class ids; mean over non-ignored targets */
em_tensor_t *em_cross_entropy(em_tensor_t *logits, em_tensor_t *targets);
em_tensor_t *em_cross_entropy_ex(em_tensor_t *logits, em_tensor_t *targets, int64_t ignore_index,
                                 em_reduction reduction);
em_tensor_t *em_dropout(em_tensor_t *x, double p, bool training);   /* uses the global Philox */

/* ---- shape and data movement -------------------------------------------------------------- */
em_tensor_t *em_cat(em_tensor_t *const *ts, int n, int dim);
em_tensor_t *em_stack(em_tensor_t *const *ts, int n, int dim);
/* chunks of split_size along dim (the last may be smaller); writes up to max_out handles into
   out and returns how many there are (-1 on error) */
int          em_split(em_tensor_t *x, int64_t split_size, int dim, em_tensor_t **out, int max_out);
em_tensor_t *em_gather(em_tensor_t *x, int dim, em_tensor_t *index);
em_tensor_t *em_index_select(em_tensor_t *x, int dim, em_tensor_t *index);
em_tensor_t *em_scatter_add(em_tensor_t *x, int dim, em_tensor_t *index, em_tensor_t *src);
em_tensor_t *em_triu(em_tensor_t *x, int64_t diagonal);
em_tensor_t *em_tril(em_tensor_t *x, int64_t diagonal);
/* pads = (last_lo, last_hi, prev_lo, prev_hi, ...) as torch.nn.functional.pad, constant value */
em_tensor_t *em_pad(em_tensor_t *x, const int64_t *pads, int npads, double value);
em_tensor_t *em_repeat(em_tensor_t *x, const int64_t *repeats, int n);
em_tensor_t *em_flip(em_tensor_t *x, const int *dims, int ndims);

/* ---- autograd ----------------------------------------------------------------------------- */
em_status    em_set_requires_grad(em_tensor_t *t, bool on);   /* leaves only */
bool         em_requires_grad(em_tensor_t *t);
bool         em_is_leaf(em_tensor_t *t);
em_status    em_retain_grad(em_tensor_t *t);                   /* keep .grad of a non-leaf */
em_status    em_backward(em_tensor_t *loss);                   /* loss must have one element */
/* grad_output may be NULL (ones); retain_graph keeps saved tensors for another backward */
em_status    em_backward_ex(em_tensor_t *out, em_tensor_t *grad_output, bool retain_graph);
em_tensor_t *em_grad(em_tensor_t *t);                          /* NULL (no error) when none */
em_status    em_zero_grad(em_tensor_t *t);                     /* drops the gradient */
void         em_no_grad_begin(void);
void         em_no_grad_end(void);
bool         em_is_grad_enabled(void);

/* in-place: copy src (broadcast, cast) into dst's storage; what optimizer steps and KV caches
   are written with. With grad mode on, neither side may require grad (use em_no_grad_begin). */
em_status    em_assign(em_tensor_t *dst, em_tensor_t *src);
em_status    em_fill(em_tensor_t *dst, double value);

/* ---- io: state dicts, checkpoint formats, tokenizers (src/io/) --------------------------- */
/* (io section: begin) */
/* (io section: end) */

/* ---- nn and optim: modules, GPT-2 and Llama models, optimizers (src/nn/, src/optim/) ------ */
/* (nn section: begin) */
/* (nn section: end) */

/* ---- runtime ------------------------------------------------------------------------------ */
void em_set_num_threads(int n);   /* default: $EMBER_NUM_THREADS, else all cores */
int  em_get_num_threads(void);
const char *em_version(void);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_H */
