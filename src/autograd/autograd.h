/* autograd.h - reverse-mode automatic differentiation over recorded ops.
 *
 * The dispatcher records one node per differentiable op call whose inputs require grad. A node
 * keeps what the op's backward needs (detached aliases of inputs and/or outputs, with the storage
 * versions at save time), the inputs' metadata, and one edge per input: the producing node and
 * output index, or the leaf tensor that accumulates the gradient. Tensors own their grad_fn; nodes
 * own the next nodes and leaves, so the graph is acyclic in references and dies with its outputs.
 */
#ifndef EMBER_AUTOGRAD_H
#define EMBER_AUTOGRAD_H

#include "../ops/op.h"

typedef struct ema_edge {
    struct ema_node *fn; /* producer (owned ref), or NULL */
    int idx;             /* producer's output index */
    em_tensor_t *leaf;   /* leaf that accumulates (owned ref), or NULL */
} ema_edge;

typedef struct ema_node {
    int refcount;
    emo_op op;
    emo_attrs attrs;
    int n_in, n_out;
    ema_edge *next;         /* n_in */
    bool *needs_grad;       /* n_in */
    emo_meta *in_meta;      /* n_in */
    emo_meta *out_meta;     /* n_out */
    em_tensor_t **saved_in; /* n_in, entries NULL when not saved */
    em_tensor_t **saved_out;
    uint64_t *saved_in_ver, *saved_out_ver;
    em_tensor_t **retained; /* n_out weak refs to outputs that asked for retain_grad */
    bool freed;             /* saved tensors were released by a backward */
    /* engine scratch */
    em_tensor_t **gacc;     /* n_out accumulated output gradients */
    int deps;
    uint64_t epoch;         /* the backward pass that last visited it */
} ema_node;

/* records op(in) -> out when grad mode is on and some input requires grad; marks outputs */
em_status ema_record(emo_op op, const emo_attrs *a, em_tensor_t *const *in, int n_in,
                     em_tensor_t *const *out, int n_out);
bool ema_needs_grad(emo_op op, em_tensor_t *const *in, int n_in);
void ema_node_release(ema_node *n);
void ema_forget_output(ema_node *n, int idx, em_tensor_t *t);
const char *ema_node_name(const ema_node *n);

#endif
