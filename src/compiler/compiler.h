/* compiler.h - Ember's code-generating compiler (the TorchInductor role, DESIGN boxes compiler/
 * and backend/cpu/): a graph of primitives in, one generated C program out.
 *
 * The pipeline, one file per stage, each saying on top what it needs and what it fills:
 *
 *     program.c   emc_compile_graph: copy, emg_decompose, then the stages below, then the JIT
 *     lower.c     every graph value -> an element expression over its own index (pointwise and
 *                 views), a reduction or scan over an input expression, or an extern call
 *     schedule.c  which values get a buffer, and the kernels: pointwise chains inlined into
 *                 their consumers, reductions over the same rows grouped into one kernel with
 *                 one loop per phase plus an epilogue, matmul epilogues; verified after
 *     memplan.c   buffer lifetimes, reuse, one 64-byte aligned arena; verified after
 *     backend/cpu/codegen.c   one C translation unit: kernel_N functions + ember_run
 *     backend/cpu/jit.c       content-addressed cache, cc, dlopen
 *
 * The loop-level IR is a pool of hash-consed expression nodes (loopir.c). Index arithmetic
 * (affine sums, floor division and modulo by constants) lives in the same pool as value
 * arithmetic, so a view is nothing but a rewritten index and a fused kernel is a set of
 * expressions over the kernel's loop variables. Expressions are walked through an `ops` vtable
 * (emc_ops): the C backend prints them, an analysis counts them.
 */
#ifndef EMBER_COMPILER_H
#define EMBER_COMPILER_H

#include "../graph/graph.h"

/* ---- the program: what the rest of Ember uses (program.c) -------------------------------------- */
typedef struct emc_program emc_program;

typedef struct {
    const char *cache_dir; /* NULL: $EMBER_CACHE_DIR, else $XDG_CACHE_HOME/ember, else ~/.cache/ember */
    const char *cc;        /* NULL: $EMBER_CC, else $CC, else "cc" */
    /* NULL, or one entry per graph output: the graph input that output is the new value of (the
       write-back target of a functionalized em_assign), else -1. Such an output is computed
       straight into that input's buffer when the plan allows it (memplan.c: "in-place outputs"),
       and emc_run then hands back the input tensor itself as that output, already overwritten. */
    const int *out_target;
} emc_opts;

typedef struct {
    int kernels;                /* generated kernel functions (fused loops, matmuls, scans, fallbacks) */
    int fallbacks;              /* of which run an eager kernel through the runtime table */
    int graph_nodes;            /* primitive nodes after decomposition */
    double compile_ms;          /* all of emc_compile_graph */
    double cc_ms;               /* of which the C compiler ran (0 on a disk hit) */
    bool disk_hit;              /* the shared object came from the disk cache */
    int64_t planned_peak_bytes; /* the arena: intermediates after reuse */
    int64_t unplanned_bytes;    /* the same buffers without reuse */
    int64_t inplace_bytes;      /* outputs computed straight into their write-back targets */
    int64_t output_bytes;       /* outputs allocated afresh by each run (inputs, constants, in-place not counted) */
    char key[65];               /* content hash (hex) naming <key>.c and <key>.so */
    char source_path[1024];     /* the generated C file */
} emc_stats;

/* Compiles g (not modified; any ops: composites are decomposed on a copy). NULL with the error
   set (EM_ERR_COMPILE naming the generated file and cc's messages when the C compiler fails). */
emc_program *emc_compile_graph(const emg_graph *g, const emc_opts *opts);
/* Runs the program: inputs in the graph's input order (any strides: non-contiguous ones are
   copied first); outputs[k] get new contiguous tensors owned by the current scope (outputs that
   are graph inputs or constants are new references to them, as emg_run gives). An in-place
   output (emc_opts.out_target, kept by the plan) is written into its target input's storage and
   handed back as a new reference to that input, when the input is contiguous and shares its
   storage with no other input; otherwise it gets a fresh tensor like any output. Not reentrant:
   one program runs on one thread at a time (it owns one arena). */
em_status emc_run(emc_program *p, em_tensor_t *const *inputs, int n_inputs, em_tensor_t **outputs);
/* Random nodes draw from (seed, offset + shift) where offset is what the node had at compile
   time; without this call each node keeps its own (seed, offset). */
void emc_program_set_rng(emc_program *p, uint64_t seed, uint64_t shift);
void emc_program_free(emc_program *p); /* NULL is fine */
const emc_stats *emc_program_stats(const emc_program *p);
const char *emc_program_source(const emc_program *p); /* the generated C */

/* the table the generated code calls back into (keep in step with the copy codegen.c prints) */
#define EMC_RT_ABI 3
struct ember_rt {
    int abi, nthreads;
    void (*sgemm)(int64_t M, int64_t N, int64_t K, const float *A, int64_t rsa, int64_t csa, const float *B,
                  int64_t rsb, int64_t csb, float *C, int64_t rsc, int64_t csc, int accumulate, int parallel);
    void (*dgemm)(int64_t M, int64_t N, int64_t K, const double *A, int64_t rsa, int64_t csa, const double *B,
                  int64_t rsb, int64_t csb, double *C, int64_t rsc, int64_t csc, int accumulate, int parallel);
    int (*fallback)(void *ctx, int k, void **in, void **out); /* runs fallback k; 0 on success */
    void *ctx;
    const uint64_t *rng_seed, *rng_off; /* per random slot */
    double *prof; /* per kernel: seconds, added to by profiled programs (EMBER_LOG=profile), else NULL */
    /* emk_gemm (src/ops/gemm.h) with its enums as ints: ta/tb/tc 0 f32, 1 bf16; mode 0 exact, 1 bf16
       products. What f32 matmuls under bf16 precision and matmuls of bf16 tensors call. */
    void (*gemm)(int64_t M, int64_t N, int64_t K, const void *A, int ta, int64_t rsa, int64_t csa, const void *B,
                 int tb, int64_t rsb, int64_t csb, void *C, int tc, int64_t rsc, int64_t csc, int accumulate,
                 int mode, int parallel);
};
typedef int (*emc_entry_fn)(void **inputs, void **outputs, char *arena, const struct ember_rt *rt);

/* ---- dynamic shapes (src/capture/dynamic.c) ----------------------------------------------------
 * A generalised program is the source of one size with the literals that change with the sizes
 * turned into parameters; its ember_run gets them after the runtime table (rt points at the `rt`
 * member of this struct; the template declares the same struct). emc_prepare_graph runs every
 * stage up to the source without the C compiler; emc_program_bind makes such a program runnable
 * with a template's entry point and the parameter values of its sizes (it takes p: on failure p
 * is freed and NULL returned). The host side (inputs, outputs, fallbacks, the arena) is p's own. */
struct ember_rt_dyn {
    struct ember_rt rt;
    const int64_t *s; /* integer parameters */
    const double *f;  /* floating-point parameters */
};
emc_program *emc_prepare_graph(const emg_graph *g, const emc_opts *opts); /* opts: out_target only */
emc_program *emc_program_bind(emc_program *p, emc_entry_fn entry, const int64_t *s, int ns, const double *f, int nf);

/* ---- loop IR expressions (loopir.c) ------------------------------------------------------------ */
typedef enum { EMC_BOOL, EMC_I64, EMC_F32, EMC_F64 } emc_ty; /* compute types */

typedef enum {
    EMX_CONST,  /* i (BOOL, I64) or f (F32, F64) */
    EMX_VAR,    /* loop variable i in [0, aux) (I64) */
    EMX_AFF,    /* i + sum coef_k * arg_k (I64): the canonical form of index sums */
    EMX_DIV,    /* arg / i (I64, C division; exact floor where arg >= 0) */
    EMX_MOD,    /* arg % i */
    EMX_CLAMP,  /* min(max(arg, i), aux) */
    EMX_LOADV,  /* value i at the multi-index args (one per dim): before scheduling */
    EMX_LOAD,   /* value i's buffer at the flat index arg: after scheduling */
    EMX_ACC,    /* reduction slot i of the current kernel, finished (ty) */
    EMX_UN,     /* op (an emo_op) on arg */
    EMX_BIN,    /* op on two args of one type */
    EMX_WHERE,  /* args c (BOOL), a, b */
    EMX_CAST,   /* arg converted to dtype op as emt_copy would, read back in emc_ctype(op) */
    EMX_RAND,   /* Philox draw: op kind (EMC_RAND_*), slot i, element index arg */
    EMX_CHECK,  /* arg (an index read from data) checked against [0, i): 0 and an error when out */
} emc_xk;

enum { EMC_RAND_UNIFORM, EMC_RAND_NORMAL, EMC_RAND_INT };

typedef struct {
    uint8_t kind, ty;
    int16_t op;
    int n, a;        /* args are argv[a .. a + n) (EMX_AFF: coefficients coefv[a ..]) */
    int64_t i, aux;
    double f;
    int64_t lo, hi;  /* value range of I64 nodes (INT64_MIN/MAX when unknown) */
    uint64_t hash;
} emc_x;

typedef struct {
    emc_x *x;
    int nx, capx;
    int *argv;
    int64_t *coefv;
    int nargv, capargv;
    int *tab; /* open-addressing table of node ids (-1 empty) */
    int captab;
    bool oom;
    uint32_t *mark; /* scratch for traversals: node visited when mark == gen */
    int nmark;
    uint32_t gen;
} emc_pool;

#define EMC_X(p, id) (&(p)->x[id])
#define EMC_ARG(p, id, k) ((p)->argv[(p)->x[id].a + (k)])

void emc_pool_init(emc_pool *p);
void emc_pool_free(emc_pool *p);
emc_ty emc_ctype(em_dtype d);             /* f64: F64; f32/f16/bf16: F32; ints: I64; bool: BOOL */
em_dtype emc_ty_dtype(emc_ty t);          /* the storage dtype a compute type stands for */
bool emc_is_float_ty(emc_ty t);
/* builders: every one takes and returns node ids, -1 on error (and then propagates -1) */
int emc_const_i(emc_pool *p, emc_ty ty, int64_t v);
int emc_const_f(emc_pool *p, emc_ty ty, double v);
int emc_const_of(emc_pool *p, em_dtype dt, double v); /* v stored into dt as emt_store would */
int emc_var(emc_pool *p, int dim, int64_t extent);    /* extent 1 gives the constant 0 */
int emc_ix_add(emc_pool *p, int a, int b);
int emc_ix_addc(emc_pool *p, int a, int64_t c);
int emc_ix_mul(emc_pool *p, int a, int64_t k);
int emc_ix_div(emc_pool *p, int a, int64_t k);        /* k >= 1 */
int emc_ix_mod(emc_pool *p, int a, int64_t k);
int emc_ix_clamp(emc_pool *p, int a, int64_t lo, int64_t hi);
int emc_ix_flat(emc_pool *p, const int *idx, const int64_t *shape, int nd); /* row-major offset */
int emc_loadv(emc_pool *p, int value, em_dtype dt, const int *idx, int nd); /* op = dt */
int emc_load(emc_pool *p, int value, em_dtype dt, int flat);
int emc_acc(emc_pool *p, int slot, emc_ty ty);
int emc_un(emc_pool *p, int op, int a);
int emc_bin(emc_pool *p, int op, int a, int b);
int emc_where(emc_pool *p, int c, int a, int b);
int emc_cast(emc_pool *p, int a, em_dtype dt);        /* identity when nothing changes */
int emc_conv(emc_pool *p, int a, emc_ty ty);          /* to a compute type: emc_cast to its dtype */
int emc_rand(emc_pool *p, int kind, int slot, int flat, emc_ty ty);
int emc_check(emc_pool *p, int a, int64_t n);
/* rewriting: fn sees each node after its args were rewritten (new ids in args) and returns the
   replacement, or -2 to rebuild the node from the new args (simplifying again) */
typedef int (*emc_rewrite_fn)(void *ctx, emc_pool *p, int node, const int *args);
int emc_rewrite(emc_pool *p, int root, emc_rewrite_fn fn, void *ctx);
int emc_rebuild(emc_pool *p, int node, const int *args); /* same node kind over new args */
int emc_subst(emc_pool *p, int root, const int *vars, int nvars); /* VAR d -> vars[d] */
bool emc_uses(const emc_pool *p, int root, emc_xk kind, int64_t i); /* a node of kind (and i, or any
                                                                        i when i < 0) below root */
int emc_cost(const emc_pool *p, int root); /* weighted count of the distinct value ops below root */
uint64_t emc_acc_mask(const emc_pool *p, int root); /* bit s: EMX_ACC slot s (< 64) is used below root */
/* traversal marks: a new generation, then emc_seen(p, id, gen) is false the first time only */
uint32_t emc_visit_new(const emc_pool *p);
bool emc_seen(const emc_pool *p, int id, uint32_t gen);
char *emc_x_str(const emc_pool *p, int root); /* debugging text (malloc'ed) */

/* ---- the ops interface: walking a loop body (loopir.c) ------------------------------------------
 * emc_walk visits the nodes below roots in dependency order and calls one function per node;
 * each returns a handle (an int the backend chooses) that later calls get for the node's args.
 * Index nodes (VAR, AFF, DIV, MOD, CLAMP) and constants go through `index` and `constant`, which
 * may return handles that print inline. `done` (optional) marks handles already available in an
 * outer scope, so nested loops do not recompute them. */
typedef struct {
    int (*constant)(void *ctx, const emc_pool *p, int node);
    int (*index)(void *ctx, const emc_pool *p, int node, const int *args);
    int (*load)(void *ctx, const emc_pool *p, int node, int flat);
    int (*acc)(void *ctx, const emc_pool *p, int node);
    int (*unary)(void *ctx, const emc_pool *p, int node, int a);
    int (*binary)(void *ctx, const emc_pool *p, int node, int a, int b);
    int (*where)(void *ctx, const emc_pool *p, int node, int c, int a, int b);
    int (*cast)(void *ctx, const emc_pool *p, int node, int a);
    int (*rand)(void *ctx, const emc_pool *p, int node, int flat);
    int (*check)(void *ctx, const emc_pool *p, int node, int a);
} emc_ops;
/* handles[] (p->nx entries, -1 = not yet) is read and filled, so scopes can share it */
em_status emc_walk(const emc_pool *p, const int *roots, int n_roots, const emc_ops *ops, void *ctx, int *handles);
/* an analysis through the same interface: what one evaluation of the roots does */
typedef struct {
    int loads, arith, transcendental, casts;
} emc_counts;
em_status emc_count(const emc_pool *p, const int *roots, int n_roots, emc_counts *out);

/* ---- lowering (lower.c) ------------------------------------------------------------------------ */
typedef enum {
    EMC_L_INPUT,     /* graph input or constant: a buffer the caller passes */
    EMC_L_POINTWISE, /* expr over the value's own dims */
    EMC_L_VIEW,      /* a pointwise that only moves indices (always inlined) */
    EMC_L_REDUCE,    /* expr = the input element over X's dims; rk over the masked dims */
    EMC_L_SCAN,      /* cumsum: expr over X's dims, scanned along `dim` */
    EMC_L_MATMUL,    /* extern template: emk_sgemm / emk_dgemm */
    EMC_L_FALLBACK,  /* the eager kernel, through the runtime table */
} emc_lkind;

typedef enum { EMC_R_SUM, EMC_R_PROD, EMC_R_MAX, EMC_R_MIN, EMC_R_ARGMAX, EMC_R_ARGMIN } emc_rkind;

typedef struct {
    emc_lkind kind;
    int node;            /* defining node, -1 for inputs and constants */
    int out_idx;         /* which output of the node */
    int expr;            /* see emc_lkind; -1 when none */
    int literal;         /* one-element constants: a CONST node used instead of a load; else -1 */
    /* reductions and scans */
    emc_rkind rk;
    bool with_values;    /* argmax-style: the node also has the values output (max_dim) */
    int xnd;
    int64_t xshape[EM_MAX_DIMS];
    bool mask[EM_MAX_DIMS]; /* reduced dims (scan: the scanned dim) */
    emc_ty acc_ty;       /* accumulator (double for float sums and products) */
    int n_uses;          /* reads by nodes (graph outputs not counted) */
    bool is_output;
} emc_lval;

typedef struct {
    int node;
    uint64_t seed, offset; /* as compiled */
    int64_t lo;            /* randint: values lo + w % range */
    uint64_t range;
} emc_rslot;

/* ---- schedule (schedule.c) --------------------------------------------------------------------- */
typedef enum { EMC_K_POINTWISE, EMC_K_REDUCE, EMC_K_MATMUL, EMC_K_SCAN, EMC_K_FALLBACK } emc_kkind;
typedef enum {
    EMC_M_STORE,    /* pointwise value over the kernel's whole space (a reduce kernel: last loops) */
    EMC_M_REDUCE,   /* a reduction over the kernel's reduced dims, one accumulator per row */
    EMC_M_EPILOGUE, /* a value over the kept dims, computed once per row after the loops */
    EMC_M_OUTER,    /* a reduction over all kept dims (accumulated across rows, per thread) */
    EMC_M_FINAL,    /* a one-element value computed after all rows */
    EMC_M_EXTERN,   /* the matmul / scan / fallback node itself */
} emc_role;

typedef struct {
    int value;     /* graph value (EMC_M_REDUCE of argmax style: the indices value) */
    int value2;    /* EMC_M_REDUCE with values and indices: the values value; else -1 */
    emc_role role;
    int expr;      /* resolved element expression in the kernel's loop variables */
    int phase;     /* loop (reduce kernels) */
    int slot;      /* accumulator slot (REDUCE, OUTER) */
    bool store;    /* writes value's buffer */
    int store_ix;  /* flat index of that store */
} emc_member;

typedef struct {           /* a strided operand of a matmul: value's buffer at off + sum i_d st_d */
    int value;
    int64_t off;
    int nd;
    int64_t shape[EM_MAX_DIMS], st[EM_MAX_DIMS];
} emc_view;

typedef struct {
    emc_kkind kind;
    int nd;                        /* the iteration space: dims shape[] (VAR d has extent shape[d]) */
    int64_t shape[EM_MAX_DIMS];
    bool mask[EM_MAX_DIMS];        /* reduce: reduced dims */
    bool column;                   /* reduce: the innermost kept dim is vectorized (column layout) */
    emc_member *m;
    int n_m, cap_m;
    int n_phases, n_slots;
    int node;                      /* MATMUL, SCAN, FALLBACK: the graph node */
    int fallback;                  /* FALLBACK: index into the fallback table */
    emc_view A, B;                 /* MATMUL operands */
    int mm_value;                  /* MATMUL: its output value */
    emc_view C;                    /* MATMUL: where the product goes: mm_value's buffer, contiguous;
                                      or, when mm_value's one reader is a chain of reshapes and
                                      permutes that a matmul needs contiguous (attention's heads
                                      back to (B, T, C)), that chain's buffer at strides, and
                                      mm_value has no buffer of its own */
} emc_kernel;

typedef enum { EMC_B_NONE, EMC_B_INPUT, EMC_B_CONST, EMC_B_OUTPUT, EMC_B_ARENA } emc_bkind;
typedef struct {
    emc_bkind kind;
    int index;         /* input index / constant index / output index */
    int64_t offset;    /* ARENA: byte offset */
    int64_t bytes;
    int first, last;   /* kernels writing first and reading last (lifetime) */
} emc_buf;

/* everything the stages share */
typedef struct {
    emg_graph *g;       /* the decomposed graph (owned) */
    emc_pool pool;
    emc_lval *lv;       /* per value */
    bool *mat;          /* per value: has a buffer */
    emc_rslot *rand;
    int n_rand;
    emc_kernel *k;
    int n_k, cap_k;
    int *kern_of;       /* per value: the kernel computing it, -1 for inputs (and inlined values) */
    int *fallback_node; /* fallback index -> node */
    int n_fallback;
    emc_buf *buf;       /* per value */
    int *out_first;     /* per graph output: the first output slot holding the same value */
    int *inplace;       /* per graph output: the graph input it is computed into (its write-back
                           target, emc_opts.out_target, kept where the plan allows), else -1 */
    int64_t arena_bytes, unplanned_bytes, inplace_bytes, output_bytes;
} emc_ctx;

em_status emc_lower(emc_ctx *c);
em_status emc_schedule(emc_ctx *c);
em_status emc_verify_schedule(const emc_ctx *c);
em_status emc_plan_memory(emc_ctx *c);
em_status emc_verify_plan(const emc_ctx *c);
void emc_ctx_free(emc_ctx *c);

/* ---- the CPU backend (backend/cpu) ------------------------------------------------------------ */
char *emc_codegen_c(const emc_ctx *c); /* malloc'ed source, NULL + error */
extern const char emc_c_prelude[];      /* prelude.c: the helpers every generated file starts with */

typedef struct {
    void *dl;
    emc_entry_fn entry;
    bool disk_hit;
    double cc_ms;
    int units;          /* translation units the C compiler built (1: the file whole; 0: a disk hit) */
    char key[65];
    char source_path[1024];
} emc_jit;
/* finds or builds <key>.so for src in the cache and loads it */
em_status emc_jit_load(const char *src, const emc_opts *opts, emc_jit *out);
void emc_jit_unload(emc_jit *j);
/* the parts of the cache key as short hashes: the source, the compiler (version line and
   command), the flags, the CPU; and the cache directory into dir. false when it has no name. */
#define EMC_KEY_PARTS 4
bool emc_jit_key_parts(const char *src, const emc_opts *opts, char parts[EMC_KEY_PARTS][17], char *dir, size_t n);

/* per-kernel profile (profile.c; EMBER_LOG=profile, docs/troubleshooting.md). When the channel is
   on, codegen prints a clock read after every kernel call into ember_run, adding to rt->prof[k];
   emc_prof_new (NULL when the channel is off) owns those slots and what each kernel is; the table
   is printed by emc_prof_free, at exit for programs never freed, and every EMBER_PROFILE_EVERY
   calls. */
typedef struct emc_prof emc_prof;
bool emc_profile_on(void);
emc_prof *emc_prof_new(const emc_ctx *c, const char *key, const char *source_path);
double *emc_prof_slots(emc_prof *p);   /* rt->prof; NULL for NULL */
void emc_prof_ran(emc_prof *p);        /* one more call of the program */
void emc_prof_print(emc_prof *p, const char *when); /* nothing when no call came since the last table */
void emc_prof_free(emc_prof *p);       /* prints the table (when the program ran), then frees */

#endif
