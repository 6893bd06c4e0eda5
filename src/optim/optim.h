/* optim.h - what the files of src/optim share: the optimizer struct and the chunked traversal
 * that every update and the gradient clipping use.
 *
 * Files: optimizer.c (construction, state access, zero_grad, the step driver), adamw.c and sgd.c
 * (one update rule each), clip.c (global-norm clipping), schedule.c (learning-rate schedules).
 * Updates are public em_ ops under no-grad written back with em_assign, so a traced training step
 * contains its optimizer step (DESIGN 5 functionalizes the writes).
 */
#ifndef EMBER_OPTIM_H
#define EMBER_OPTIM_H

#include "../base/base.h"
#include "../tensor/tensor.h"   /* emt_check only: argument validation with the root cause */
#include "../capture/capture.h" /* emcap_tracing only: no chunking inside a trace */

typedef enum { EMP_ADAMW, EMP_SGD } emp_kind;

#define EMP_MAX_STATE 2 /* state tensors per parameter */

struct em_optimizer {
    emp_kind kind;
    int n;                 /* parameters */
    em_tensor_t **params;  /* one reference each, held by the optimizer */
    double *wd;            /* per-parameter weight decay */
    double beta1, beta2, eps, momentum;
    /* 0-dim f64 tensors, not host numbers, so that a traced step reads and advances them:
       a compiled training step replays without calling the step function, and host counters
       would freeze the bias correction and the schedule at their values during the trace */
    em_tensor_t *t_step;   /* steps taken (AdamW's t after a step) */
    em_tensor_t *t_lr;     /* the learning rate */
    int n_state;           /* state tensors per parameter: 2 (AdamW), 1 or 0 (SGD) */
    const char *state_kind[EMP_MAX_STATE]; /* "exp_avg", "exp_avg_sq", "momentum_buffer" */
    em_tensor_t **state;   /* n * n_state, parameter-major, owned */
    char (*state_names)[48];
};

/* Elementwise updates walk their tensors in chunks of EMP_CHUNK elements (flat views of
   contiguous tensors), each chunk in its own scope. An out-of-place update of a 38M-element
   embedding would otherwise make a dozen 150 MB temporaries, each a fresh mapping the kernel
   faults in and zeroes. 16384 elements (64 KB in f32) is what measured best on the 2-core
   machine with glibc's malloc, which recycles blocks of this size instead of trimming the heap:
   AdamW over 38.6M f32 elements took 0.2-0.3 s, against 1 s at 32768, 3 s at 65536 and 10 s
   unchunked (and the ops stay under the pointwise threading threshold, so no thread wake-ups).
   While tracing, each tensor is one piece: the compiler fuses the update, and chunks would only
   multiply graph nodes. ts[0..nt) have one element count. */
#ifndef EMP_CHUNK /* -DEMP_CHUNK=n to experiment */
#define EMP_CHUNK 16384
#endif
typedef em_status (*emp_chunk_fn)(em_tensor_t *const *chunks, void *ctx);
em_status emp_foreach_chunk(em_tensor_t *const *ts, int nt, emp_chunk_fn fn, void *ctx);

/* the update rules: parameter i, its gradient g, its state tensors (n_state of them); `shared`
   holds what the rule computed once per step (0-dim tensors, see emp_*_prepare) */
typedef struct {
    em_tensor_t *a, *b; /* AdamW: lr / (1 - b1^t), 1 / sqrt(1 - b2^t); SGD: lr, unused */
} emp_shared;
emp_shared emp_adamw_prepare(em_optimizer_t *o);
em_status emp_adamw_update(em_optimizer_t *o, const emp_shared *sh, int i, em_tensor_t *g, em_tensor_t *const *state);
em_status emp_sgd_update(em_optimizer_t *o, const emp_shared *sh, int i, em_tensor_t *g, em_tensor_t *const *state);

/* shared construction: validates params and takes references; n_state zero tensors per param */
em_optimizer_t *emp_new(const char *op, emp_kind kind, em_tensor_t *const *params, int n, double lr,
                        double weight_decay, int n_state, const char *const *state_kind);

#endif
