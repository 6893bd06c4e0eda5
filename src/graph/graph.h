/* graph.h - Ember's graph IR: what capture produces and the compiler consumes (DESIGN box graph/).
 *
 * A graph is a list of nodes in topological order over SSA values. A value is a graph input
 * (a traced argument or a lifted tensor such as a parameter), a constant (a realized tensor the
 * graph owns), or one output of a node. Nodes are ops from the one op table (src/ops/ops.def)
 * with their plain-data attributes, so everything the table knows (infer, flags, decompositions)
 * applies to graph nodes too. Sizes are concrete int64 for now; symbolic sizes arrive with
 * dynamic shapes (a later issue) as a parallel annotation, not a change of this layout.
 *
 * The text form (emg_print / emg_parse) round-trips:
 *
 *     graph(%0: f32[4, 8], %1: f32[8]) {
 *       %2: f32[] = const(#0)
 *       %3: f32[4, 8] = add(%0, %1)
 *       %4: f32[4, 8] = mul(%3, %2)
 *       %5: f32[4, 1] = sum(%4) i=[1] j=[1, 0, 0, 0]
 *       %6: f32[4], %7: i64[4] = max_dim(%3) j=[0, 1, 0, 0]
 *       %8: f32[4, 8] = randn() i=[4, 8] dtype=f32 seed=7 offset=0
 *       return (%5, %7, %8)
 *     }
 *
 * The printer numbers values canonically: inputs first (in input order), then constants (in
 * constant-table order), then node outputs (in node order); the parser wants definitions in
 * increasing consecutive order. Only attribute fields that differ from zero are printed (see
 * text.c for the exact rules). Constants print as `%5: f32[3] = const(#0)` with their data kept
 * aside in the graph's constant table: data does not round-trip through text, a parsed constant
 * is a zero-filled placeholder of the declared type.
 *
 * Invariants (emg_verify checks them): value ids are in range; a node's outputs are the values
 * out0 .. out0 + n_out - 1 and point back at it; a node reads only inputs, constants and outputs
 * of earlier nodes; n_in matches the table (variadic: at least 1); every value's metadata is what
 * the op's infer gives now; inputs[k] is the value with kind EMG_INPUT and index k, and likewise
 * for constants; outputs name existing values. Value ids need not follow kinds: capture may add
 * an input (a lifted parameter) after nodes. emg_dce renumbers values canonically.
 */
#ifndef EMBER_GRAPH_H
#define EMBER_GRAPH_H

#include "../ops/op.h"

typedef enum { EMG_INPUT, EMG_CONST, EMG_NODE } emg_value_kind;

typedef struct {
    emg_value_kind kind;
    emo_meta meta;
    int node;    /* EMG_NODE: defining node index (else -1) */
    int out_idx; /* EMG_NODE: which output of that node (else -1) */
    int index;   /* EMG_INPUT: position among inputs; EMG_CONST: index in consts; EMG_NODE: -1 */
} emg_value;

typedef struct {
    emo_op op;
    emo_attrs attrs; /* normalised on entry: i[k] = 0 for k >= ni, seed = offset = 0 unless
                        the op is EMO_RANDOM */
    int n_in, n_out;
    int *in;   /* value ids (malloc'ed; NULL when n_in == 0) */
    int out0;  /* outputs are values out0 .. out0 + n_out - 1 */
} emg_node;

typedef struct emg_graph {
    emg_value *vals;
    int n_vals, cap_vals;
    emg_node *nodes;
    int n_nodes, cap_nodes;
    int *inputs; /* value ids of the inputs, in order */
    int n_inputs, cap_inputs;
    em_tensor_t **consts; /* owned references */
    int n_consts, cap_consts;
    int *outputs; /* value ids returned, in order (may repeat, may be inputs) */
    int n_outputs, cap_outputs;
} emg_graph;

emg_graph *emg_new(void);
void emg_free(emg_graph *g); /* NULL is fine */
emg_graph *emg_clone(const emg_graph *g);

/* building (each returns a value id, or -1 with the error set) */
int emg_add_input(emg_graph *g, const emo_meta *m);
int emg_add_const(emg_graph *g, em_tensor_t *t); /* retains t, which must be realized */
/* appends a node; infers output metadata with the op's infer (its error, naming the op, on
   failure); a may be NULL (all-zero attributes); returns its first output value (for an op with
   no outputs, the id the next value will get) */
int emg_add_node(emg_graph *g, emo_op op, const emo_attrs *a, const int *in, int n_in);
em_status emg_set_outputs(emg_graph *g, const int *vals, int n);

/* text form */
char *emg_print(const emg_graph *g);          /* malloc'ed; NULL + error on OOM */
emg_graph *emg_parse(const char *text);       /* NULL + EM_ERR_FORMAT naming the line on bad
                                                 text; constants parse as zero placeholders */

/* checks the invariants (SSA, order, arity, metadata = infer's); EM_OK or EM_ERR_COMPILE with a
   message naming the node; cheap enough to run between every pass in debug builds */
em_status emg_verify(const emg_graph *g);

/* passes, one file each (dce.c, cse.c, fold.c, simplify.c): each returns the number of changes
   it made, -1 on error. cse, fold and simplify redirect uses and leave the nodes they made dead
   for emg_dce; every pass leaves the graph verifiable. */
int emg_dce(emg_graph *g);                  /* drops nodes and constants no output depends on
                                               (returns how many) and renumbers canonically */
int emg_cse(emg_graph *g);                  /* merges nodes with equal op, attrs and inputs, and
                                               small constants with equal data */
int emg_fold_constants(emg_graph *g);       /* evaluates nodes whose inputs are all constants */
int emg_simplify(emg_graph *g);             /* x*1, x+0, reshape of reshape, identity permute ... */
int emg_decompose(emg_graph *g);            /* replaces ops that have a decomposition and are not
                                               compiler primitives (no EMO_PRIM) by it */

/* runs the graph eagerly on realized inputs (the reference interpreter); outputs are new
   references owned by the current scope */
em_status emg_run(const emg_graph *g, em_tensor_t *const *inputs, int n_inputs, em_tensor_t **outputs);

/* ---- helpers shared by the passes (graph.c) ------------------------------------------------ */
#define EMG_MAX_IN 4096 /* most inputs a node may have (emo_call's limit) */
bool emg_meta_equal(const emo_meta *a, const emo_meta *b); /* dtype, ndim and the ndim sizes */
int64_t emg_numel(const emo_meta *m);                      /* -1 when it overflows int64 */
#define EMG_TYPE_BUF 224
char *emg_type_str(char *buf, const emo_meta *m);          /* "f32[4, 8]" into buf (EMG_TYPE_BUF) */
/* a copy with i[k] for k >= ni, seed and offset (unless the op is EMO_RANDOM) and the struct's
   padding zeroed, so two attribute sets compare with memcmp */
emo_attrs emg_attrs_norm(emo_op op, const emo_attrs *a);
/* runs op's infer on metadata; the error (if any) names op. Returns n_out or -1. */
int emg_infer(emo_op op, const emo_attrs *a, const emo_meta *in, int n_in, emo_meta out[EMO_MAX_OUT]);
/* every use of value `from` (node inputs, graph outputs) becomes `to`; both must exist */
void emg_replace_uses(emg_graph *g, int from, int to);

#endif
