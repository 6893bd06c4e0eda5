/* harness.h - what Ember's tests share: counting checks, float64 reference tensors, random
 * inputs, and the op-case table that test_ops.c runs (like ggml's test-backend-ops).
 *
 * A test program calls TH_CHECK for each assertion and returns th_summary() from main, which
 * prints "N passed, M failed" and gives a non-zero exit status when anything failed.
 *
 * Op cases: each group file in tests/ops/ defines `const th_case th_cases_<group>[]`, ended by
 * an entry with op == NULL. A case names the op-table row it covers, describes its inputs
 * (shape, dtype, how to draw values), calls the public em_ function in `fwd`, and computes the
 * same thing in float64 with plain loops in `ref` (the oracle). The runner checks forward results
 * for every dtype in `dtypes`, gradients by central finite differences in float64 when `grad`
 * is set, and the op's decomposition too when it has one.
 */
#ifndef EMBER_TEST_HARNESS_H
#define EMBER_TEST_HARNESS_H

#include <ember.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- checks ----------------------------------------------------------------------------------- */
extern int th_passed, th_failed;
void th_check(int ok, const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
#define TH_CHECK(cond, ...) th_check(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
/* prints "N passed, M failed"; returns the exit status */
int th_summary(void);
/* checks that the last call failed with status s and a message containing `needle` */
#define TH_CHECK_ERR(s, needle, ...) \
    th_check(em_last_status() == (s) && strstr(em_last_error(), (needle)) != NULL, __FILE__, __LINE__, __VA_ARGS__)

/* ---- float64 reference tensors (contiguous, row-major) ---------------------------------------- */
#define TH_MAX_DIMS 8
typedef struct {
    int ndim;
    int64_t shape[TH_MAX_DIMS];
    double *d;      /* numel values */
    em_dtype dtype; /* the dtype the result should have */
} th_rt;

int64_t th_numel(const th_rt *t);
void th_rt_alloc(th_rt *t, const int64_t *shape, int ndim, em_dtype dt); /* zero-filled */
void th_rt_free(th_rt *t);
th_rt th_rt_from(em_tensor_t *t); /* copies any tensor's values out; call inside a scope */
/* index helpers: flat index of idx in t, with broadcasting from the right when t has fewer or
   size-1 dims (idx is in the coordinates of an ndim-dim broadcast result) */
int64_t th_bidx(const th_rt *t, const int64_t *idx, int ndim);
void th_unravel(int64_t flat, const int64_t *shape, int ndim, int64_t *idx);
/* broadcast result shape of a and b; returns ndim */
int th_bshape(const th_rt *a, const th_rt *b, int64_t *out);
/* elementwise references with PyTorch broadcasting */
void th_ref_unary(const th_rt *x, th_rt *out, double (*f)(double), em_dtype out_dt);
void th_ref_binary(const th_rt *a, const th_rt *b, th_rt *out, double (*f)(double, double), em_dtype out_dt);

/* ---- random inputs ----------------------------------------------------------------------------- */
typedef enum {
    TH_NORMAL = 0, /* N(0,1) */
    TH_POS,        /* U(0.5, 2) */
    TH_UNIT,       /* U(-0.9, 0.9) */
    TH_AWAY,       /* N(0,1) pushed away from 0 (|x| >= 0.25): no kinks for abs, relu, sign */
    TH_DISTINCT,   /* distinct values (a shuffled grid): no ties for max, argmax, sort */
    TH_INDEX,      /* integers in [0, hi) */
    TH_BOOL,       /* 0/1 */
    TH_SMALLINT,   /* integers in [-5, 5] */
} th_gen;

#define TH_T ((em_dtype)-1) /* "the case's dtype" */
typedef struct {
    int ndim;
    int64_t shape[TH_MAX_DIMS];
    em_dtype dtype;  /* TH_T or a fixed dtype (EM_I64 indices, EM_BOOL masks) */
    th_gen gen;
    int64_t hi;      /* TH_INDEX upper bound */
    int noncontig;   /* pass a non-contiguous view with these values */
    int nodiff;      /* never differentiate w.r.t. this input */
} th_input;

/* a tensor for spec s with values drawn from the test's own generator (srand-style, seeded) */
em_tensor_t *th_make_input(const th_input *s, em_dtype case_dt);
em_tensor_t *th_randn(const int64_t *shape, int ndim, em_dtype dt);   /* test RNG, not Ember's */
void th_seed(uint64_t s);
double th_uniform(void);

/* ---- op cases --------------------------------------------------------------------------------- */
#define TH_MAX_IN 6
#define TH_MAX_OUT 8
#define TH_F32 (1u << EM_F32)
#define TH_F64 (1u << EM_F64)
#define TH_F16 (1u << EM_F16)
#define TH_BF16 (1u << EM_BF16)
#define TH_I32 (1u << EM_I32)
#define TH_I64 (1u << EM_I64)
#define TH_U8 (1u << EM_U8)
#define TH_BOOLS (1u << EM_BOOL)
#define TH_FLOATS (TH_F32 | TH_F64 | TH_F16 | TH_BF16)
#define TH_INTS (TH_I32 | TH_I64 | TH_U8)

typedef struct th_case th_case;
/* fwd: call the public API; write outputs to out, return how many (0 or less: the call failed) */
typedef int (*th_fwd_fn)(em_tensor_t *const *in, const th_case *c, em_tensor_t **out);
/* ref: the float64 oracle; allocate and fill out[] (th_rt_alloc), return how many */
typedef int (*th_ref_fn)(const th_rt *in, const th_case *c, th_rt *out);

struct th_case {
    const char *op;      /* op-table row this case covers (as `ember ops` names it) */
    const char *label;   /* what is special about it: "broadcast", "noncontig", "size0" ... */
    int n_in;
    th_input in[TH_MAX_IN];
    th_fwd_fn fwd;
    th_ref_fn ref;
    unsigned dtypes;     /* dtypes to run the forward check in (TH_F32 | ...); 0 means TH_F32|TH_F64 */
    int grad;            /* check gradients of float inputs by finite differences (in f64) */
    int64_t ia[8];       /* op arguments for fwd and ref: dims, sizes ... */
    int nia;
    double fa[4];        /* op arguments: eps, p, value ... */
    double tol;          /* multiplies the default tolerances (0 means 1) */
};

extern const th_case th_cases_view[], th_cases_pointwise[], th_cases_reduce[], th_cases_nn[],
    th_cases_shape[], th_cases_linalg[];

/* ---- op cases, compiled (compiled_ops.c) -------------------------------------------------------
 * Each group of cases runs as one traced and compiled program per dtype (and one more for the f64
 * gradients), compared with the eager results within th_tol(dtype) x the case's factor (x10 for
 * gradients). cov (may be NULL) counts, per op-table index, the cases that ran compiled and
 * matched: fwd for forward results, grad for gradients. filter: only ops whose name contains it. */
#define TH_MAX_OPS 512
typedef struct {
    int fwd[TH_MAX_OPS], grad[TH_MAX_OPS];
} th_compiled_cov;
void th_compiled_group(const th_case *g, const char *gname, em_dtype dt, int grad, const char *filter,
                       th_compiled_cov *cov);
void th_compiled_cases(const th_case *const *groups, const char *const *names, int n_groups, const char *filter,
                       th_compiled_cov *cov);

/* default relative+absolute tolerance for a result of dtype dt */
double th_tol(em_dtype dt);
/* compares an output with a reference; prints a diagnostic and returns 0 on mismatch */
int th_compare(em_tensor_t *got, const th_rt *want, double tol, const char *what);

#endif
