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
/* the same with the read's return address (the user code calling em_item); in lazy mode the
   read flushes the pending segment and returns EM_OK with t realized */
em_status emcap_data_read_at(const char *op, em_tensor_t *t, void *site);
/* emt_view made another handle t of a symbolic tensor (autograd's saved copies): in lazy mode
   the tracer keeps it so a flush realizes it with the original */
em_status emcap_note_alias(em_tensor_t *t);
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
    char break_reason[448];
} emcap_trace;

/* runs fn once under a tracer on symbolic copies of in (args keep requires_grad); fills tr.
   On a graph break, tr->has_break is set and EM_OK returned (the caller falls back). */
em_status emcap_trace_fn(em_traceable_fn fn, void *ctx, em_tensor_t *const *in, int n_in, int n_out,
                         bool fullgraph, emcap_trace *tr);
void emcap_trace_free(emcap_trace *tr);

/* ---- lazy mode: graph breaks as compiled segments (lazy.c) -----------------------------------
 * fn runs on its real arguments with a lazy tracer installed: ops record nodes as usual, and a
 * data read (or fn's return) flushes the pending graph. The flush makes every symbolic tensor
 * that is still referenced a graph output, finds the segment's program by the graph's text (a
 * structural hash; random nodes are keyed relative to the generator's offset), compiles it on
 * first sight, runs it, turns those tensors into realized ones in place and applies the writes. */
typedef struct emcap_segment {
    char *text;         /* the key: the printed, normalised segment graph */
    uint64_t hash;
    emg_graph *g;       /* normalised: random nodes have seed 0 and offsets relative to the segment */
    void *prog;         /* emc_program * (NULL: the interpreter) */
    int id, runs;
    bool breaks;        /* ended at a data read (not at fn's return) */
    char reason[256];   /* that read */
    char site[160];     /* and where it was called from */
} emcap_segment;

typedef struct {
    emcap_segment **v;
    int n, cap;
    bool use_c;
    int fn_id;
    int compiles;       /* segments compiled */
    int breaks;         /* distinct segments that end at a data read */
    char *log;          /* explain: a text log of every flush (NULL: none kept) */
    size_t log_len, log_cap;
} emcap_segcache;

/* runs fn lazily on in; out[] get realized tensors in the current scope */
em_status emcap_run_lazy(emcap_segcache *sc, em_traceable_fn fn, void *ctx, em_tensor_t *const *in, int n_in,
                         em_tensor_t **out, int n_out);
void emcap_segcache_free(emcap_segcache *sc);
/* appends printf-style text to a log buffer (explain) */
void emcap_logf(emcap_segcache *sc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* a code address as "fn+0x2c (prog)" or "prog+0x1234" (for addr2line -e prog 0x1234) */
void emcap_site_str(char *buf, size_t n, void *addr);

/* ---- debug dumps and the cache index (explain.c) --------------------------------------------- */
/* EMBER_DEBUG_DIR: writes <dir>/<name>/{graph_traced.txt, graph_optimized.txt,
   graph_decomposed.txt, kernels.txt, source.c}; the name goes in the log lines */
void emcap_dump(const char *name, const emg_graph *traced, const emg_graph *optimized, const void *prog);
/* after a C program is compiled: a disk-cache miss for a graph compiled before logs which part
   of the cache key changed; the index lives in <cache dir>/index/ */
void emcap_cache_note(const emg_graph *g, const void *prog);
/* FNV-1a of a string */
uint64_t emcap_hash_str(const char *s);

/* ---- dynamic shapes (dynamic.c) ---------------------------------------------------------------
 * A template is a generated source whose size-dependent literals are parameters. It is made from
 * the sources of one program at several sizes: src[0] is the reference; a sample whose structure
 * (every token but the numeric literals' values) differs is not used (used[j] false); a literal
 * that differs between the reference and a used sample becomes a parameter. NULL with why when
 * no sample is usable or a parameter would sit outside a kernel. emcap_template_match reads the
 * parameter values s[] (integers) and f[] (floats) off another size's source, or says where that
 * source differs from the template. */
typedef struct emcap_template emcap_template;
emcap_template *emcap_template_new(const char *const *src, int n, bool *used, char *why, size_t nwhy);
bool emcap_template_match(const emcap_template *t, const char *src, int64_t *s, double *f, char *why, size_t nwhy);
const char *emcap_template_source(const emcap_template *t);
int emcap_template_ns(const emcap_template *t);
int emcap_template_nf(const emcap_template *t);
void emcap_template_free(emcap_template *t); /* NULL is fine */
/* the dims em_mark_dynamic marked on t (bit d: dim d) */
uint32_t emcap_marked_dims(const em_tensor_t *t);
/* EMBER_DEBUG_DIR: writes text into <dir>/<name>/<file> (explain.c) */
void emcap_dump_text(const char *name, const char *file, const char *text);

#endif
