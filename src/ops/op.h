/* op.h - the one op table (DESIGN decision 1).
 *
 * Every op is one row of ops.def: name, arity, flags and up to four functions:
 *   infer     shapes and dtypes of the outputs from the inputs' metadata (no data); it is the
 *             op's argument checker and works on metadata alone so the compiler can use it;
 *   kernel    the eager CPU implementation, writing into outputs the dispatcher allocated
 *             (view ops make their outputs themselves);
 *   backward  vector-Jacobian product written with public em_ ops, so it also traces;
 *   decomp    the op written with simpler public ops (composite ops must have one).
 * Eager mode, autograd, the op test and (later) capture and the compiler read this table;
 * nothing keeps a second list of ops. Adding an op is one row here plus its functions.
 *
 * Attributes are plain data (emo_attrs) so a graph node can hash, compare and print them.
 */
#ifndef EMBER_OP_H
#define EMBER_OP_H

#include "../tensor/tensor.h"

#define EMO_MAX_INTS 24
#define EMO_MAX_FLOATS 4
#define EMO_MAX_OUT 64

/* Attributes: each op documents how it uses them beside its row in ops.def. */
typedef struct {
    int64_t i[EMO_MAX_INTS];
    int ni;
    int64_t j[4];   /* scalar ints: keepdim, dim, ... as the row says */
    double f[EMO_MAX_FLOATS];
    em_dtype dtype; /* target dtype (cast, creation ops) */
    uint64_t seed, offset; /* EMO_RANDOM ops: Philox key and first counter */
} emo_attrs;

/* what infer sees and produces: no data, no strides */
typedef struct {
    em_dtype dtype;
    int ndim;
    int64_t shape[EM_MAX_DIMS];
} emo_meta;

enum {
    EMO_PRIM = 1 << 0,      /* a compiler primitive (else it must have decomp) */
    EMO_POINTWISE = 1 << 1,
    EMO_REDUCTION = 1 << 2,
    EMO_VIEW = 1 << 3,      /* outputs alias input 0's storage; the kernel makes them */
    EMO_EXTERN = 1 << 4,    /* template call in the compiler (matmul) */
    EMO_RANDOM = 1 << 5,    /* reads (seed, offset) from its attrs */
    EMO_NODIFF = 1 << 6,    /* never records autograd (comparisons, argmax, ...) */
    EMO_SAVE_IN = 1 << 7,   /* backward reads the inputs */
    EMO_SAVE_OUT = 1 << 8,  /* backward reads the outputs */
    EMO_CREATE = 1 << 9,    /* no tensor inputs (full, arange, rand ...) */
};

typedef struct {
    const emo_attrs *attrs;
    int n_in, n_out;
    em_tensor_t *const *in;   /* saved inputs (detached) when EMO_SAVE_IN, else NULLs */
    em_tensor_t *const *out;  /* saved outputs (detached) when EMO_SAVE_OUT, else NULLs */
    const emo_meta *in_meta;  /* always available */
    const emo_meta *out_meta;
    const bool *needs_grad;   /* per input */
} emo_bctx;

typedef em_status (*emo_infer_fn)(const emo_attrs *a, const emo_meta *in, int n_in, emo_meta *out,
                                  int *n_out);
typedef em_status (*emo_kernel_fn)(const emo_attrs *a, em_tensor_t *const *in, int n_in,
                                   em_tensor_t **out, int n_out);
/* gout[j] is never NULL (zeros are supplied); set gin[i] (owned by the current scope) or leave
   it NULL for inputs that get no gradient. gin[i] may have a broadcast shape or another float
   dtype: the engine sums and casts it to the input's metadata. */
typedef em_status (*emo_backward_fn)(const emo_bctx *c, em_tensor_t *const *gout, em_tensor_t **gin);
typedef em_status (*emo_decomp_fn)(const emo_attrs *a, em_tensor_t *const *in, int n_in,
                                   em_tensor_t **out, int n_out);

typedef struct {
    const char *name;
    int n_in;   /* -1: variadic (at least 1) */
    int n_out;  /* -1: decided by infer */
    unsigned flags;
    emo_infer_fn infer;
    emo_kernel_fn kernel;
    emo_backward_fn backward;
    emo_decomp_fn decomp;
} emo_def;

typedef enum {
#define EM_OP(name, nin, nout, flags, infer, kernel, backward, decomp) EMO_##name,
#include "ops.def"
#undef EM_OP
    EMO_NUM_OPS
} emo_op;

extern const emo_def emo_table[EMO_NUM_OPS];
int emo_lookup(const char *name); /* -1 when unknown */

/* ---- dispatch (dispatch.c) ---------------------------------------------------------------
 * Runs op on inputs: checks handles, infers, picks kernel or decomposition, records autograd,
 * gives outputs to the current scope. Returns the number of outputs written to out, -1 on
 * error (message set, nothing leaked). */
int emo_call(emo_op op, em_tensor_t *const *in, int n_in, const emo_attrs *a, em_tensor_t **out,
             int max_out);
/* single-output convenience: the output or NULL */
em_tensor_t *emo_call1(emo_op op, em_tensor_t *const *in, int n_in, const emo_attrs *a);
/* tests: when set, every op with a decomposition runs it instead of its kernel */
void emo_set_force_decomp(bool on);
bool emo_force_decomp(void);

static inline emo_attrs emo_attrs0(void) {
    emo_attrs a;
    memset(&a, 0, sizeof a);
    return a;
}

/* ---- helpers shared by op files (infer.c) ---------------------------------------------- */
/* the op being dispatched on this thread (for messages from shared infer functions) */
const char *emo_current_op(void);
/* error "em_<op>: <msg> (inputs: (2, 3) f32, (4,) f32)" naming the inputs' shapes; op NULL
   means the op being dispatched */
em_status emo_err(em_status s, const char *op, const emo_meta *in, int n_in, const char *fmt, ...)
    EM_PRINTF(5, 6);
void emo_meta_of(const em_tensor_t *t, emo_meta *m);
em_status emo_infer_unary(const emo_attrs *a, const emo_meta *in, int n_in, emo_meta *out, int *n_out);
em_status emo_infer_unary_float(const emo_attrs *a, const emo_meta *in, int n_in, emo_meta *out, int *n_out);
em_status emo_infer_binary(const emo_attrs *a, const emo_meta *in, int n_in, emo_meta *out, int *n_out);
/* reduction dims from attrs (i[0..ni-1] = dims, f[0] != 0 keepdim convention is op-specific) */
bool emo_reduce_mask(const char *op /* NULL: current */, const int64_t *dims, int ndims, int rank, bool mask[EM_MAX_DIMS]);
/* sum g down to the shape in m (undoing broadcasting) and cast to m's dtype */
em_tensor_t *emo_sum_to(em_tensor_t *g, const emo_meta *m);

#endif
