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
/* How f32 matmuls and linears form their products, process-wide (PyTorch's
   torch.set_float32_matmul_precision): EM_F32 (the default) exactly in f32; EM_BF16 rounds both
   operands to bf16 (nearest even) and sums the products in f32 (avx512_bf16 dot products where
   the CPU has them): bf16 mixed precision with f32 master weights. Anything else is EM_ERR_ARG.
   em_matmul / em_linear read the setting when they are called and record it in their graph node,
   so a backward pass records the setting current then, and em_compile guards on it (switching
   it recompiles, never reuses a program traced under the other one). f64 matmuls ignore it;
   matmuls on bf16 tensors always use bf16 products (their result is bf16). */
em_status    em_set_matmul_precision(em_dtype d);
em_dtype     em_get_matmul_precision(void);

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

/* ---- the compiler --------------------------------------------------------------------------
 * em_compile wraps a function that builds its outputs from its inputs with ordinary em_ calls.
 * The first em_call for a given specialization traces fn with symbolic tensors into a graph
 * (guarded by the inputs' dtypes, shapes, strides, requires_grad, the grad mode, and the tensors
 * fn reads that are not arguments, such as parameters, which become graph inputs); later calls
 * that pass the guards run the compiled program without calling fn. em_assign into realized
 * tensors and gradients from an em_backward inside fn are written back after each run, so a
 * whole training step compiles to one program. fn must read the same tensors (through ctx) on
 * every call. Reading tensor data (em_item, em_to_data) inside fn is a graph break: fn then runs
 * as compiled segments split at the reads (or, with fullgraph, em_call fails naming the read).
 * EMBER_LOG=recompiles,guards,breaks,cache and EMBER_DEBUG_DIR show what the compiler did and
 * why (docs/troubleshooting.md). */
typedef em_status (*em_traceable_fn)(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out);
typedef struct em_compiled em_compiled_t;
/* Dynamic shapes (docs/compiler.md, docs/troubleshooting.md). AUTO: an argument dim whose size
   changes between calls (to a size >= 2; sizes 0 and 1 stay specialized) becomes symbolic: one
   generalised program, compiled once, serves every later size of it (each new size is traced and
   its generated code checked against the generalised one, without compiling). Dims marked with
   em_mark_dynamic are symbolic from the first call. OFF: every new size is a new specialization.
   ALL: every argument dim of size >= 2 is symbolic from the first call. */
typedef enum { EM_DYNAMIC_AUTO = 0, EM_DYNAMIC_OFF, EM_DYNAMIC_ALL } em_dynamic_mode;
typedef struct {
    bool fullgraph;        /* a graph break is an error instead of running as compiled segments */
    int recompile_limit;   /* specializations kept before falling back to eager (0: default 8) */
    const char *backend;   /* "c" (default: generated C, JIT-compiled and cached) or "interp" */
    em_dynamic_mode dynamic; /* dynamic shapes (em_dynamic_mode above); 0 is EM_DYNAMIC_AUTO */
} em_compile_opts;
em_compiled_t *em_compile(em_traceable_fn fn, void *ctx, const em_compile_opts *opts); /* opts may be NULL */
em_status      em_call(em_compiled_t *f, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out);
void           em_compiled_free(em_compiled_t *f);
typedef struct {
    int compiles, cache_hits, disk_cache_hits, recompiles, graph_breaks, kernels, eager_calls;
    double compile_ms;
    int graph_nodes;       /* nodes in the most recently compiled graph */
    int segments;          /* graph-break segments compiled (a function with breaks runs as segments) */
    /* the memory plan of the most recently compiled program (backend "c"): intermediates live in
       one arena per program, buffers reused once dead. planned_peak_bytes is the arena's size;
       unplanned_bytes what the same buffers take without reuse (each 64-byte aligned). */
    int64_t planned_peak_bytes, unplanned_bytes;
    /* dynamic shapes: generalised programs made (each is one of `compiles`), sizes they served
       without compiling, and sizes whose code did not match and got their own specialization */
    int dynamic_programs, dynamic_sizes, dynamic_fallbacks;
    /* the outputs of the most recently compiled program (backend "c"): inplace_bytes are new values
       of tensors written with em_assign that the program computes straight into those tensors
       (no separate buffer, no copy after the run); output_bytes the outputs each call allocates */
    int64_t inplace_bytes, output_bytes;
} em_compile_stats;
em_compile_stats em_compiled_stats(const em_compiled_t *f);
/* the most recently compiled graph in Ember's text form (malloc'ed; NULL when none) */
char *em_compiled_graph(const em_compiled_t *f);
/* runs fn once (under the tracer, then as graph-break segments where it reads data) and returns
   a report, like torch._dynamo.explain: the graphs, every graph break with its reason and call
   site, the guards, and the op counts (malloc'ed text; NULL + error on failure). The outputs fn
   makes are released; fn's writes (em_assign, gradients) do happen, once. */
char *em_explain(em_traceable_fn fn, void *ctx, em_tensor_t *const *in, int n_in, int n_out);
/* declares dim of the argument t dynamic before the first em_call that passes t (negative dims
   count from the end): that call compiles a generalised program for every size >= 2 of it.
   Marks belong to this tensor handle (not to views of it); argument dims with the same size in
   a call share one symbol (they must stay equal, or the call misses). */
em_status em_mark_dynamic(em_tensor_t *t, int dim);

/* ---- io: state dicts, checkpoint formats, tokenizers (src/io/) --------------------------- */
/* (io section: begin) */
/* State dicts: an ordered map from names ("h.0.attn.c_attn.weight") to tensors, plus string
   metadata ("format" -> "pt"); what checkpoints, models and optimizers exchange. The dict holds
   its own reference to each tensor; em_state_dict_get returns a new one (owned by the innermost
   scope, like every em_ call). Names are non-empty, order is insertion order. */
typedef struct em_state_dict em_state_dict_t;
em_state_dict_t *em_state_dict_new(void);
void             em_state_dict_free(em_state_dict_t *sd);   /* releases its tensors; NULL is fine */
/* retains t; a name already present keeps its position and gets the new tensor */
em_status        em_state_dict_set(em_state_dict_t *sd, const char *name, em_tensor_t *t);
em_tensor_t     *em_state_dict_get(const em_state_dict_t *sd, const char *name); /* NULL + EM_ERR_ARG when absent */
bool             em_state_dict_contains(const em_state_dict_t *sd, const char *name);
em_status        em_state_dict_remove(em_state_dict_t *sd, const char *name);
int64_t          em_state_dict_count(const em_state_dict_t *sd);
const char      *em_state_dict_name_at(const em_state_dict_t *sd, int64_t i);   /* borrowed */
em_tensor_t     *em_state_dict_tensor_at(const em_state_dict_t *sd, int64_t i); /* new ref, like get */
em_status        em_state_dict_set_meta(em_state_dict_t *sd, const char *key, const char *value);
const char      *em_state_dict_meta(const em_state_dict_t *sd, const char *key); /* borrowed; NULL when absent */
int64_t          em_state_dict_meta_count(const em_state_dict_t *sd);
const char      *em_state_dict_meta_key_at(const em_state_dict_t *sd, int64_t i);

/* safetensors (Hugging Face): every header field is validated; tensors are copied into fresh
   contiguous tensors; the dict's metadata is the file's "__metadata__". Saving is atomic
   (temp file, fsync, rename) and writes any tensor (views are copied out contiguous). */
em_status em_safetensors_load(const char *path, em_state_dict_t **out);
em_status em_safetensors_save(const char *path, const em_state_dict_t *sd);

/* llama2.c checkpoints (the legacy float32 format of karpathy/llama2.c run.c). Names follow
   Meta's Llama ("tok_embeddings.weight", "layers.0.attention.wq.weight" (out, in), ...,
   "norm.weight", "output.weight" only when the classifier is not shared): docs/formats.md. */
typedef struct {
    int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads;
    int32_t vocab_size;        /* always positive here */
    int32_t seq_len;
    bool shared_classifier;    /* the file's vocab_size was positive: output = tok_embeddings */
} em_llama2c_config;
em_status em_llama2c_load(const char *path, em_llama2c_config *cfg, em_state_dict_t **out);

/* Tokenizers behind one type. Ids are int32. Special tokens: GPT-2 and trained BPE have
   "<|endoftext|>" (recognised when it appears literally in text; it is their BOS and EOS), the
   char tokenizer has it as its last id (BOS/EOS only), llama2.c has BOS = 1 and EOS = 2. */
typedef struct em_tokenizer em_tokenizer_t;
typedef enum { EM_TOKENIZER_GPT2, EM_TOKENIZER_LLAMA2C, EM_TOKENIZER_BPE, EM_TOKENIZER_CHAR } em_tokenizer_kind;
/* GPT-2 byte-level BPE from OpenAI's encoder.json and vocab.bpe, exactly as GPT-2 encodes */
em_tokenizer_t *em_tokenizer_load_gpt2(const char *encoder_json_path, const char *vocab_bpe_path);
/* llama2.c tokenizer.bin; vocab_size is the model's (0: every token in the file) */
em_tokenizer_t *em_tokenizer_load_llama2c(const char *path, int32_t vocab_size);
/* byte-level BPE trained on text: 256 byte tokens, merges, then "<|endoftext|>"; vocab_size
   counts all three (>= 257); training stops early when no pair occurs twice */
em_tokenizer_t *em_tokenizer_train_bpe(const char *text, size_t len, int32_t vocab_size);
/* one token per distinct UTF-8 code point of text (sorted), then "<|endoftext|>" */
em_tokenizer_t *em_tokenizer_char(const char *text, size_t len);
em_status       em_tokenizer_save(const em_tokenizer_t *tok, const char *path); /* BPE and char kinds */
em_tokenizer_t *em_tokenizer_load(const char *path);                            /* what save wrote */
void            em_tokenizer_free(em_tokenizer_t *tok);
em_tokenizer_kind em_tokenizer_kind_of(const em_tokenizer_t *tok);
int32_t         em_tokenizer_vocab_size(const em_tokenizer_t *tok);
int32_t         em_tokenizer_bos_id(const em_tokenizer_t *tok);   /* -1 when none */
int32_t         em_tokenizer_eos_id(const em_tokenizer_t *tok);   /* -1 when none */
/* text (len bytes, any bytes) -> *ids (malloc'ed, free() it) and *n; bos prepends the BOS id */
em_status em_tokenizer_encode(const em_tokenizer_t *tok, const char *text, size_t len, bool bos,
                              int32_t **ids, size_t *n);
/* ids -> malloc'ed, NUL-terminated bytes (free() it); *len (may be NULL) gets their length */
char       *em_tokenizer_decode(const em_tokenizer_t *tok, const int32_t *ids, size_t n, size_t *len);
/* streaming: the bytes of token id following token prev (-1 at the start), borrowed from tok
   (may be a partial UTF-8 sequence); llama2.c drops a piece's leading space after BOS */
const char *em_tokenizer_decode_one(const em_tokenizer_t *tok, int32_t prev, int32_t id, size_t *len);
/* (io section: end) */

/* ---- nn and optim: modules, GPT-2 and Llama models, optimizers (src/nn/, src/optim/) ------ */
/* (nn section: begin) */
/* Functional building blocks, composed of the ops above (so they record autograd and trace).
 * Linear, Embedding, LayerNorm and RMSNorm are the ops em_linear, em_embedding, em_layer_norm and
 * em_rms_norm; the model below owns their parameters by name. Shapes: B batch, T time, NH query
 * heads, NKV key/value heads, HS head size, C = NH * HS channels, V vocabulary. */

/* softmax(q k^T / sqrt(HS)) v. q is (B, NH, Tq, HS); k and v are (B, NKV, Tk, HS) with NH a
   multiple of NKV (grouped-query attention: query head h reads kv head h / (NH / NKV); no copy of
   k or v is made). causal: query i sits at position Tk - Tq + i and sees keys 0 ..= that position
   (bottom-right alignment, what a KV cache needs; the usual lower triangle when Tq == Tk; needs
   Tk >= Tq). dropout_p > 0 drops attention weights (pass 0 in evaluation). Returns (B, NH, Tq, HS). */
em_tensor_t *em_scaled_dot_product_attention(em_tensor_t *q, em_tensor_t *k, em_tensor_t *v, bool causal,
                                             double dropout_p);
/* rotary position embedding on interleaved pairs, as Meta's Llama and llama2.c: for x (..., T, NH, HS)
   and pair i < HS/2, (x[2i], x[2i+1]) is rotated by the angle whose cosine and sine are
   cos_t[t, i] and sin_t[t, i]; cos_t and sin_t are (T, HS/2). Returns x's shape. */
em_tensor_t *em_rope(em_tensor_t *x, em_tensor_t *cos_t, em_tensor_t *sin_t);
/* the tables for positions 0 .. T-1: angle(t, i) = t * theta^(-2i/HS), computed in float for f32
   and lower (exactly as llama2.c's run.c, so greedy decoding matches it) and in double for f64.
   Writes two new (T, HS/2) tensors to *cos_out and *sin_out. */
em_status em_rope_tables(int64_t T, int64_t HS, double theta, em_dtype dt, em_tensor_t **cos_out,
                         em_tensor_t **sin_out);

/* ---- models: GPT-2 and Llama-2, configurable by size -------------------------------------- */
typedef enum { EM_ARCH_GPT2, EM_ARCH_LLAMA } em_arch;
/* Zero fields take the architecture's default when the model is made (em_model_get_config shows the
   resolved values): n_kv_head = n_head, ffn_hidden = 4 C (GPT-2) or llama2.c's rule (8C/3 rounded
   up to a multiple of 32), norm_eps = 1e-5, rope_theta = 10000. dtype is EM_F32 (0) or another
   floating dtype (EM_F64 for gradient checks). */
typedef struct {
    em_arch arch;
    int vocab_size;      /* V */
    int block_size;      /* the longest sequence (GPT-2's position table; RoPE's tables) */
    int n_layer;
    int n_head;          /* NH */
    int n_kv_head;       /* NKV: < NH is grouped-query attention; must divide NH */
    int n_embd;          /* C; HS = C / NH */
    int ffn_hidden;      /* the MLP's hidden width */
    double norm_eps;
    double rope_theta;   /* Llama only */
    bool tie_embeddings; /* the classifier reuses the token embedding */
    bool bias;           /* biases in every linear and LayerNorm (GPT-2); Llama has none */
    double dropout;      /* embeddings, attention weights, residual branches; 0 turns it off */
    em_dtype dtype;      /* parameters and activations */
} em_model_config;

/* fills *cfg for a named size: "gpt2" (124M), "gpt2-medium", "gpt2-large", "gpt2-xl",
   "stories15M", "stories42M", "stories110M" (llama2.c's TinyStories models), "llama2-7b", and two
   for tests, "gpt2-tiny" and "llama-tiny" (with grouped-query attention). EM_ERR_ARG otherwise. */
em_status em_model_config_preset(const char *name, em_model_config *cfg);

typedef struct em_model em_model_t;
/* A new model with freshly initialised parameters, drawn from Philox(seed) without disturbing the
   global generator: weights N(0, 0.02); the projections that write into the residual stream
   (attn c_proj / wo, mlp c_proj / w2, as nanoGPT and llm.c) N(0, 0.02 / sqrt(2 n_layer)); biases
   0; norm weights 1. The model owns its parameters (no scope does). NULL + error on a bad config. */
em_model_t *em_model_new(const em_model_config *cfg, uint64_t seed);
void        em_model_free(em_model_t *m);                       /* NULL is fine */
/* converts the model to dtype dt, like PyTorch's model.to(dtype): every parameter is rounded to dt
   (nearest even; tied weights stay tied; requires_grad kept, gradients dropped), Llama's RoPE tables
   are rebuilt in dt, and from then on activations and new KV caches are in dt too (every op computes
   in f32 and rounds once). EM_BF16 halves the bytes a decode step streams. Parameter handles taken
   before are no longer the model's: take em_model_params again (and rebuild optimizers). Same dtype:
   nothing to do. EM_ERR_DTYPE for a non-floating dtype, EM_ERR_STATE with LoRA adapters (merge
   first); on error the model is unchanged. */
em_status   em_model_to_dtype(em_model_t *m, em_dtype dt);
const em_model_config *em_model_get_config(em_model_t *m);      /* borrowed; resolved defaults */
void        em_model_set_training(em_model_t *m, bool training); /* dropout on (default) or off */
bool        em_model_is_training(em_model_t *m);
/* idx (B, T) i64 or i32 token ids, T <= block_size. Returns logits (B, T, V) in the model's dtype.
   With targets (B, T) (ids; -1 is ignored), *loss gets the mean cross-entropy (a 0-dim tensor);
   otherwise *loss (when loss is not NULL) is set to NULL. Both are owned like any op result. */
em_tensor_t *em_model_forward(em_model_t *m, em_tensor_t *idx, em_tensor_t *targets, em_tensor_t **loss);

/* Named parameters, in a fixed order. GPT-2 uses Hugging Face's names ("wte.weight", "wpe.weight",
   "h.0.ln_1.weight", "h.0.attn.c_attn.weight", ..., "ln_f.weight", "lm_head.weight" when untied)
   but every linear weight is stored (out, in) as em_linear wants, where Hugging Face's Conv1D
   stores (in, out). Llama uses Meta's and llama2.c's names ("tok_embeddings.weight",
   "layers.0.attention.wq.weight", ..., "norm.weight", "output.weight" when untied). Every
   parameter is a contiguous leaf that requires grad. Handles from these calls are BORROWED: they
   belong to the model and live until em_model_free; do not release them (em_retain one to keep
   it longer). */
int          em_model_num_params(em_model_t *m);                       /* tensors */
int64_t      em_model_param_count(em_model_t *m);                      /* scalars */
em_tensor_t *em_model_param(em_model_t *m, int i, const char **name);  /* name may be NULL */
em_tensor_t *em_model_param_by_name(em_model_t *m, const char *name);  /* NULL + EM_ERR_ARG */
em_tensor_t *const *em_model_params(em_model_t *m);  /* num_params handles, for em_adamw_new */
/* copies src's values (cast to the parameter's dtype) into the named parameter; src must have
   its shape. Runs under no-grad; gradients and optimizer state are left alone. */
em_status em_model_set_param(em_model_t *m, const char *name, em_tensor_t *src);
/* em_model_set_param for n (name, tensor) pairs, checking all of them before writing any. strict:
   every parameter must be given exactly once and no unknown name may appear. */
em_status em_model_load_params(em_model_t *m, const char *const *names, em_tensor_t *const *tensors, int n,
                               bool strict);
/* em_model_load_params (strict) for a GPT-2 state dict as Hugging Face stores it: names may carry
   the "transformer." prefix, Conv1D weights (c_attn, c_proj, c_fc) are (in, out) and are
   transposed, and the causal-mask buffers ("h.N.attn.bias", "h.N.attn.masked_bias") and a tied
   "lm_head.weight" are skipped. */
em_status em_model_load_gpt2_hf(em_model_t *m, const char *const *names, em_tensor_t *const *tensors, int n);
em_status em_model_zero_grad(em_model_t *m);

/* ---- LoRA: low-rank adapters for fine-tuning (src/nn/lora.c) --------------------------------
 * An adapted linear computes x W^T + b + (alpha/r) (dropout(x) A^T) B^T with two new parameters,
 * A (r, in) and B (out, r), named after the module: "h.0.attn.c_attn.lora_A", "...lora_B",
 * "layers.0.attention.wq.lora_A", ... They are appended to the model's parameter list (base
 * indices do not move). A starts as PEFT's default (Kaiming-uniform, a = sqrt(5): U(-1/sqrt(in),
 * 1/sqrt(in))) and B at 0, so the adapted model computes exactly what the base did. Adding turns
 * requires_grad off on every base parameter (dropping their gradients): backward reaches only
 * the adapters. The eager forward, em_compile'd functions (the adapters are parameters like any
 * other) and em_model_forward_cached all apply them. Load base weights before adding adapters
 * (a strict load then expects the adapters too). Adding reallocates the parameter list: take
 * em_model_params / em_model_trainable_params again afterwards. */
typedef struct {
    int rank;            /* r >= 1, at most min(out, in) of every adapted linear */
    double alpha;        /* scale = alpha / r; 0 means alpha = r (scale 1) */
    double dropout;      /* on the adapter input, in training mode with grad mode on; [0, 1) */
    /* comma-separated modules to adapt: a name or a suffix of one at a '.' (GPT-2: "c_attn",
       "attn.c_proj", "mlp.c_fc", "mlp.c_proj", "c_proj" = both; Llama: "wq", "wk", "wv", "wo", "w1",
       "w2", "w3"; "h.0.mlp.c_fc" = one layer's), or the groups "attn", "mlp", "all". NULL or "":
       "all" (every linear of every block; never the embeddings or the classifier) */
    const char *targets;
    uint64_t seed;       /* A is drawn from Philox(seed); the global generator is left alone */
} em_lora_config;
/* EM_ERR_ARG on a bad rank, alpha, dropout or a target that names no linear; EM_ERR_STATE when
   the model has adapters already (merge them first). On error the model is unchanged. */
em_status em_model_add_lora(em_model_t *m, const em_lora_config *cfg);
int       em_model_num_lora(em_model_t *m);   /* adapted linears (0: none), -1 on a NULL model */
/* the parameters that require grad, in model order (with adapters: every lora_A and lora_B; without:
   every parameter), for em_adamw_new and em_clip_grad_norm. Borrowed; valid until the next call
   of this function, em_model_add_lora / merge / load_lora, or em_model_free. */
em_tensor_t *const *em_model_trainable_params(em_model_t *m, int *n);
/* folds W += (alpha/r) B A into each adapted weight (under no-grad), removes the adapters from the
   model and turns requires_grad back on where add turned it off. An optimizer built over the
   adapters keeps its own references to them; free it. EM_ERR_STATE when there are none.
   em_model_save merges the same way into the file it writes (the model keeps its adapters), so a
   model file never holds adapters: it loads as a plain model. */
em_status em_model_merge_lora(em_model_t *m);
/* the adapters alone: a safetensors file of every lora_A / lora_B with "ember.format" = "lora" and
   the rank, alpha, dropout, architecture and adapted modules in its metadata (atomic write).
   Loading adds the adapters to a model that has none (EM_ERR_STATE otherwise) and fills them;
   the model must have the base's shapes. A bad file leaves the model unchanged. */
em_status em_model_save_lora(em_model_t *m, const char *path);
em_status em_model_load_lora(em_model_t *m, const char *path);

/* KV cache for inference: per layer, keys and values (B, NKV, max_T, HS) in the model's dtype. */
typedef struct em_kv_cache em_kv_cache_t;
em_kv_cache_t *em_kv_cache_new(em_model_t *m, int batch, int max_T);  /* max_T <= block_size */
void           em_kv_cache_free(em_kv_cache_t *c);
/* forward of idx (B, Tnew) at positions pos .. pos + Tnew - 1: writes their keys and values into
   the cache (em_assign) and attends over positions 0 .. pos + Tnew - 1 (those before pos must have
   been written by earlier calls). Returns logits (B, Tnew, V), equal to the matching rows of the
   full forward. Records no autograd history (runs under no-grad); dropout never applies. */
em_tensor_t *em_model_forward_cached(em_model_t *m, em_tensor_t *idx, int64_t pos, em_kv_cache_t *cache);

/* ---- optimizers ------------------------------------------------------------------------------
 * An optimizer holds a reference to each parameter (leaf, contiguous, floating) and its state
 * tensors (same shape and dtype). A step reads em_grad of each parameter (parameters without a
 * gradient are skipped), updates parameters and state in place under no-grad with public ops, and
 * counts steps. Gradient accumulation: run several forward/backward passes before one step, with
 * each micro-batch's loss multiplied by 1/accum (gradients add up in .grad). */
typedef struct em_optimizer em_optimizer_t;
/* AdamW (Loshchilov & Hutter; PyTorch's torch.optim.AdamW): p -= lr wd p (decoupled decay, on the
   value before the update), m = b1 m + (1-b1) g, v = b2 v + (1-b2) g^2,
   p -= lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps). State "<i>.exp_avg", "<i>.exp_avg_sq". */
em_optimizer_t *em_adamw_new(em_tensor_t *const *params, int n, double lr, double beta1, double beta2,
                             double eps, double weight_decay);
/* SGD with momentum as torch.optim.SGD (dampening 0, not Nesterov): g += wd p (coupled L2 decay),
   buf = momentum buf + g (buf = g on the first step), p -= lr buf. State "<i>.momentum_buffer"
   when momentum != 0. */
em_optimizer_t *em_sgd_new(em_tensor_t *const *params, int n, double lr, double momentum, double weight_decay);
void      em_optimizer_free(em_optimizer_t *o);   /* NULL is fine */
em_status em_optimizer_step(em_optimizer_t *o);
em_status em_optimizer_zero_grad(em_optimizer_t *o);            /* drops every parameter's .grad */
em_status em_optimizer_set_lr(em_optimizer_t *o, double lr);
double    em_optimizer_get_lr(em_optimizer_t *o);
/* weight decay of parameter i (i = -1: all). The usual LM recipe decays only 2-D weights:
   for each i, if em_ndim(params[i]) < 2, set it to 0. */
em_status em_optimizer_set_weight_decay(em_optimizer_t *o, int i, double weight_decay);
/* state for checkpoints: the step count (AdamW's t) and named state tensors, BORROWED (owned by
   the optimizer; valid until em_optimizer_free). em_optimizer_set_state copies values in by name.
   The step count and the learning rate are kept in 0-dim f64 tensors that a step reads and
   advances, so a compiled training step stays correct; the getters read them (em_item). */
int64_t      em_optimizer_get_step(em_optimizer_t *o);
em_status    em_optimizer_set_step(em_optimizer_t *o, int64_t step);
int          em_optimizer_num_state(em_optimizer_t *o);
em_tensor_t *em_optimizer_state(em_optimizer_t *o, int i, const char **name);
em_status    em_optimizer_set_state(em_optimizer_t *o, const char *name, em_tensor_t *src);

/* scales every gradient by max_norm / (norm + 1e-6) when that is below 1, norm being the global
   L2 norm over all of them (torch.nn.utils.clip_grad_norm_); returns the norm before clipping,
   or -1 with an error on bad arguments. Parameters without a gradient are skipped. A NaN or
   infinite norm is returned as it is and the gradients are left alone (skip that step). */
double em_clip_grad_norm(em_tensor_t *const *params, int n, double max_norm);
/* the same without reading data, so it traces into a compiled training step: returns the norm as
   a 0-dim f64 tensor and always multiplies the gradients by min(1, max_norm / (norm + 1e-6)), as
   PyTorch does (a NaN norm makes every gradient NaN). NULL + error on bad arguments. */
em_tensor_t *em_clip_grad_norm_tensor(em_tensor_t *const *params, int n, double max_norm);
/* linear warm-up then cosine decay (llm.c): step < warmup: max_lr (step + 1) / warmup;
   step >= max_steps: min_lr; between: min_lr + (max_lr - min_lr) (1 + cos(pi r)) / 2 with
   r = (step - warmup) / (max_steps - warmup). */
double em_lr_cosine(int64_t step, int64_t warmup, int64_t max_steps, double max_lr, double min_lr);
/* (nn section: end) */

/* ---- training: model files, checkpoints, data, the trainer (src/nn/checkpoint.c, data.c, trainer.c) */
/* (train section: begin) */
/* Model files: safetensors with every parameter under its name and the config in the metadata
   ("ember.format" = "model", "ember.arch", "ember.vocab_size", ...: docs/models.md). Saving is
   atomic (temp file, fsync, rename). em_model_load validates every field, shape and dtype and
   returns NULL + a message naming the file and the field; it also reads training checkpoints
   (their model part), llama2.c checkpoints and Hugging Face GPT-2 safetensors files. */
em_status   em_model_save(em_model_t *m, const char *path);
em_model_t *em_model_load(const char *path);

/* Text corpora: "fortunes" is Debian's fortune files (/usr/share/games/fortunes, package
   `fortunes`), a directory is read the same way (its files F that have an index F.dat), anything
   else is one text file. In fortune files the "%" separator lines are removed and each fortune is
   followed by "<|endoftext|>" (the BPE and GPT-2 tokenizers' end-of-text id). *text is malloc'ed
   and NUL-terminated (free() it); *len excludes the NUL. */
em_status em_text_read(const char *name, char **text, size_t *len);

/* A tokenized corpus split deterministically into training and validation: the ids are cut into
   chunks of 1024 tokens and every round(1 / val_fraction)-th chunk is validation (val_fraction in
   [0, 0.5]). The dataset copies ids; every id must be in [0, vocab_size). */
typedef struct em_dataset em_dataset_t;
em_dataset_t *em_dataset_new(const int32_t *ids, int64_t n, int32_t vocab_size, double val_fraction);
void          em_dataset_free(em_dataset_t *d);                   /* NULL is fine */
int64_t       em_dataset_num_tokens(const em_dataset_t *d, bool val);
int32_t       em_dataset_vocab_size(const em_dataset_t *d);
uint64_t      em_dataset_hash(const em_dataset_t *d);             /* of both splits' ids */
/* the entropy of the corpus's token frequencies (both splits), nats/token: the loss of a model
   that ignores context */
double        em_dataset_unigram_entropy(const em_dataset_t *d);
/* training batch number `index`: B windows of T + 1 tokens of the training split, window b starting
   at a Philox(seed) draw at counter index * B + b; x is tokens 0..T-1 and y tokens 1..T, (B, T) i64.
   A pure function of (seed, index): the data position of a run is the index of its next batch. */
em_status     em_dataset_batch(const em_dataset_t *d, uint64_t seed, uint64_t index, int B, int T,
                               em_tensor_t **x, em_tensor_t **y);
/* validation: windows [first, first + B) of the non-overlapping windows of T + 1 tokens (window w
   starts at token w T) of the validation split, of which there are em_dataset_val_windows */
int64_t       em_dataset_val_windows(const em_dataset_t *d, int T);
em_status     em_dataset_val_batch(const em_dataset_t *d, int64_t first, int B, int T, em_tensor_t **x,
                                   em_tensor_t **y);

/* The trainer: AdamW (weight decay on 2-D weights only), llm.c's warm-up + cosine schedule, global
   gradient clipping, gradient accumulation, and by default the whole step (forward, backward,
   clipping, AdamW) compiled with em_compile into one program; `ember train` is a front end to it. */
typedef struct {
    int batch;            /* B sequences per micro-batch */
    int seq_len;          /* T, at most the model's block_size */
    int accum;            /* micro-batches per optimizer step (gradient accumulation) */
    int64_t max_steps;    /* the schedule's length (stepping past it keeps min_lr) */
    int64_t warmup;       /* linear warm-up steps */
    double lr, min_lr;    /* peak and final learning rate */
    double weight_decay;  /* AdamW's, on 2-D weights */
    double beta1, beta2, eps;
    double grad_clip;     /* max global gradient norm; 0: no clipping */
    uint64_t seed;        /* the data order (and the global RNG, for dropout) */
    bool eager;           /* run the step eagerly instead of compiled */
    em_dtype precision;   /* matmul precision of the step and of eval (em_set_matmul_precision): EM_F32
                             or EM_BF16 (bf16 mixed precision, f32 master weights); set around each
                             step, the caller's setting restored after; saved in checkpoints */
} em_train_config;
/* B 16, T 128, accum 1, 1000 steps, warm-up 100, lr 1e-3 -> 1e-4, wd 0.1, betas (0.9, 0.95),
   eps 1e-8, clip 1.0, seed 1337, compiled, precision f32 */
void em_train_config_default(em_train_config *c);
typedef struct {
    int64_t step;         /* steps taken, this one included */
    double loss;          /* mean training loss of the step's micro-batches */
    double lr;            /* the learning rate it used */
    double grad_norm;     /* before clipping (NaN without clipping) */
    int64_t tokens;       /* tokens it trained on */
} em_train_stats;
typedef struct em_trainer em_trainer_t;
/* takes ownership of m on success (em_trainer_free frees it); borrows data, which must outlive the
   trainer. Seeds the global RNG with cfg->seed. */
em_trainer_t *em_trainer_new(em_model_t *m, const em_dataset_t *data, const em_train_config *cfg);
/* a trainer from a checkpoint that em_trainer_save wrote, on the same data (checked by hash):
   model, optimizer state, step, data position, global RNG and settings restored, so training
   continues bit for bit. */
em_trainer_t *em_trainer_resume(const char *path, const em_dataset_t *data);
void          em_trainer_free(em_trainer_t *t);                   /* and its model; NULL is fine */
em_status     em_trainer_step(em_trainer_t *t, em_train_stats *stats); /* stats may be NULL */
/* mean validation loss (nats/token) over at most max_batches (<= 0: all) batches of B windows,
   evenly spaced over the validation split; NaN + error on failure */
double        em_trainer_eval(em_trainer_t *t, int max_batches);
/* a checkpoint: one safetensors file, written atomically (temp file, fsync, rename), that
   em_trainer_resume continues and em_model_load reads as a model (docs/models.md) */
em_status     em_trainer_save(em_trainer_t *t, const char *path);
/* the caller's own string settings, saved in checkpoints and restored by em_trainer_resume */
em_status     em_trainer_set_meta(em_trainer_t *t, const char *key, const char *value);
const char   *em_trainer_meta(em_trainer_t *t, const char *key);  /* borrowed; NULL when absent */
em_model_t     *em_trainer_model(em_trainer_t *t);                /* borrowed */
em_optimizer_t *em_trainer_optimizer(em_trainer_t *t);            /* borrowed */
const em_train_config *em_trainer_config(em_trainer_t *t);        /* borrowed */
int64_t       em_trainer_get_step(em_trainer_t *t);
/* changes the settings of a run (say max_steps, to train longer after a resume); batch, seq_len,
   accum, seed, betas and eps must stay as they are */
em_status     em_trainer_set_config(em_trainer_t *t, const em_train_config *cfg);
/* (train section: end) */

/* ---- generation: sampling from a model with a KV cache (src/nn/generate.c) ------------------ */
/* (generation section: begin) */
/* B prompts of unequal lengths go in one batch without padding: rows start together, each row is
   fed its own prompt tokens while they last (forced, nothing is sampled) and samples after that,
   so every row sees exactly its own sequence and gets the tokens it would get alone. The common
   prefix (the shortest prompt) is one eager cached forward (the prefill); then one token per row
   per step through the decode step: compiled by default (one program for every step: the
   position is a tensor and the cache writes are functionalized, docs/models.md "Generation"), or
   em_model_forward_cached eagerly with opts.eager.
   Sampling, per row and token, on the float logits z of the last position (in double):
   temperature 0 is greedy: the first id with the largest logit (llama2.c's argmax). Otherwise
   z / temperature; with top_k > 0 only the k largest survive (ties: the lower id first); with
   0 < top_p < 1 the survivors are sorted by probability (softmax over them; ties: lower id) and
   the shortest prefix whose probabilities sum to >= top_p is kept; probabilities are renormalised
   over what is kept and the token is the first in that order (ascending id when neither filter
   is on) whose cumulative probability exceeds u, where u in [0, 1) for the i-th sampled token of
   row b is Philox4x32-10 (key seed, counter b * 2^32 + i): u = ((w0 >> 5) * 2^26 + (w1 >> 6)) /
   2^53. The global generator (em_manual_seed) is neither read nor moved. */
typedef bool (*em_token_fn)(void *ctx, int row, int64_t i, int32_t token); /* false: stop this row */
typedef struct {
    int max_new_tokens;   /* per row, >= 1 */
    double temperature;   /* 0: greedy */
    int top_k;            /* 0: off */
    double top_p;         /* 0 or 1: off; else in (0, 1) */
    uint64_t seed;        /* the sampling stream (unused when greedy) */
    bool stop_at_eos;     /* a row stops after emitting eos_id (which is kept in its output) */
    int32_t eos_id;
    bool eager;           /* the decode step runs eagerly instead of compiled */
    em_token_fn on_token; /* called for each new token as it is chosen (streaming); may be NULL */
    void *ctx;            /* passed to on_token */
} em_generate_opts;
typedef struct {
    int64_t prefill_tokens;  /* B x the shortest prompt */
    double prefill_ms;
    int64_t decode_steps;    /* decode-step calls (each one token for every row) */
    double decode_ms;        /* all of them, compile time included */
    int64_t new_tokens;      /* generated, all rows */
    int decode_compiles;     /* compiles of the decode program (1 when compiled, 0 eager) */
    double compile_ms;
} em_generate_stats;
/* prompts[b] holds lengths[b] >= 1 ids in [0, V); needs max(lengths) + max_new_tokens - 1 <=
   block_size. out is (B, max_new_tokens) row-major; row b gets out_lengths[b] tokens (fewer than
   max_new_tokens when it stopped at EOS or on_token said stop; the rest of the row is -1).
   stats may be NULL. EM_ERR_* with a message on bad arguments. */
em_status em_generate(em_model_t *m, const int32_t *const *prompts, const int64_t *lengths, int B,
                      const em_generate_opts *opts, int32_t *out, int64_t *out_lengths, em_generate_stats *stats);
/* (generation section: end) */

/* ---- runtime ------------------------------------------------------------------------------ */
/* The threads of every parallel region: Ember's kernels, generated code, and OpenMP's default
   (em_set_num_threads calls omp_set_num_threads, so regions without a num_threads clause follow
   too). n <= 0: back to the default, $EMBER_NUM_THREADS, else OpenMP's ($OMP_NUM_THREADS, else
   all cores). Call it outside parallel regions. */
void em_set_num_threads(int n);
int  em_get_num_threads(void);
const char *em_version(void);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_H */
