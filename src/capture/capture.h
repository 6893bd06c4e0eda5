/* capture.h - tracing user code into graphs (the TorchDynamo role, DESIGN box capture/).
 *
 * While a tracer is installed on a thread, every op call records a graph node (src/ops/dispatch.c
 * asks emcap_record instead of running a kernel) and returns symbolic tensors: handles with no
 * storage whose sym_id names a graph value. Realized tensors an op reads are lifted to graph
 * inputs (parameters: passed again on every call) or, when they were made during the trace,
 * baked in as constants. In-place writes into realized tensors are functionalized: the new value
 * is a graph value that later reads of the target see, and the compiled program writes it back
 * after it runs (DESIGN decision 5). Gradients that a traced em_backward accumulates into leaves
 * are handled the same way. Reading data (em_item, em_to_data) is a graph break.
 */
#ifndef EMBER_CAPTURE_H
#define EMBER_CAPTURE_H

#include "../graph/graph.h"

typedef struct emcap_tracer emcap_tracer;

extern _Thread_local emcap_tracer *emcap_current; /* NULL when not tracing */
static inline bool emcap_tracing(void) { return emcap_current != NULL; }

/* dispatch's hook: a node for op on in (metadata om already inferred); out[] gets fresh
   symbolic handles that nobody owns yet */
em_status emcap_record(emo_op op, const emo_attrs *a, em_tensor_t *const *in, int n_in, const emo_meta *om,
                       int n_out, em_tensor_t **out);
/* em_assign while tracing (or on symbolic tensors) */
em_status emcap_assign(em_tensor_t *dst, em_tensor_t *src);
/* em_item / em_to_data on a symbolic tensor: a graph break (error under fullgraph) */
em_status emcap_data_read(const char *op, em_tensor_t *t);
/* called before a traced backward or em_zero_grad changes t->grad */
em_status emcap_note_grad(em_tensor_t *t);

/* a tracer that appends to an existing graph (graph rewrites written with public ops, such as
   emg_decompose); emcap_symbolic makes a handle for one of its values; emcap_end uninstalls it.
   Reading a tensor that is not a value of the graph is an error here (nothing may be lifted). */
emcap_tracer *emcap_begin_on(emg_graph *g);
em_tensor_t *emcap_symbolic(emcap_tracer *tr, int value);
void emcap_end(emcap_tracer *tr);

/* ---- what a finished trace hands to the compiler (trace.c) ---------------------------------- */
typedef struct {
    em_tensor_t *target; /* owned reference to the realized tensor written */
    int value;           /* graph output index holding the new contents; -1: grad set to none */
    bool is_grad;        /* writes target->grad instead of target's storage */
} emcap_writeback;

typedef struct {
    emg_graph *g;
    int n_args;                /* graph inputs 0 .. n_args-1 are the arguments */
    em_tensor_t **lifted;      /* owned refs to the tensors fed as inputs n_args .. */
    int n_lifted;
    int n_user_out;            /* graph outputs 0 .. n_user_out-1 are fn's outputs */
    emcap_writeback *wb;       /* the rest: write-backs, in order */
    int n_wb;
    uint64_t rng_count;        /* Philox counters the graph consumes per run */
    uint64_t rng_base;         /* the offset the trace's random nodes were recorded against */
    bool has_break;            /* the trace read data: cannot be compiled whole */
    char break_reason[256];
} emcap_trace;

/* runs fn once under a tracer on symbolic copies of in (args keep requires_grad); fills tr.
   On a graph break, tr->has_break is set and EM_OK returned (the caller falls back). */
em_status emcap_trace_fn(em_traceable_fn fn, void *ctx, em_tensor_t *const *in, int n_in, int n_out,
                         bool fullgraph, emcap_trace *tr);
void emcap_trace_free(emcap_trace *tr);

#endif
