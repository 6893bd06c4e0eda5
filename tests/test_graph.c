/* test_graph.c - the graph IR (src/graph/): building, the text form (printer, parser, round
 * trips, error messages, mutated input), the verifier on corrupted graphs, each pass on graphs
 * made to exercise it (expected text after the pass, change counts, and the reference
 * interpreter giving the same outputs before and after), and leaks.
 *
 * Graphs are mostly written as text: it is the IR's reading form, and a test that prints the
 * expected graph documents the pass. Parsed constants are zero placeholders; tests that need
 * their data put real tensors in (set_const).
 */
#include "harness.h"

#include "graph/graph.h"

#include <float.h>

/* ---- helpers ----------------------------------------------------------------------------------- */
static emo_meta meta(em_dtype dt, int nd, const int64_t *shape) {
    emo_meta m;
    memset(&m, 0, sizeof m);
    m.dtype = dt;
    m.ndim = nd;
    for (int d = 0; d < nd && d < EM_MAX_DIMS; d++) m.shape[d] = shape[d]; /* nd may be bad on purpose */
    return m;
}

/* structural equality: same values, nodes, tables (constants by type only) */
static bool graph_equal(const emg_graph *a, const emg_graph *b) {
    if (a->n_vals != b->n_vals || a->n_nodes != b->n_nodes || a->n_inputs != b->n_inputs ||
        a->n_consts != b->n_consts || a->n_outputs != b->n_outputs)
        return false;
    for (int v = 0; v < a->n_vals; v++) {
        const emg_value *x = &a->vals[v], *y = &b->vals[v];
        if (x->kind != y->kind || !emg_meta_equal(&x->meta, &y->meta) || x->node != y->node ||
            x->out_idx != y->out_idx || x->index != y->index)
            return false;
    }
    for (int k = 0; k < a->n_nodes; k++) {
        const emg_node *x = &a->nodes[k], *y = &b->nodes[k];
        emo_attrs p = emg_attrs_norm(x->op, &x->attrs), q = emg_attrs_norm(y->op, &y->attrs);
        if (x->op != y->op || x->n_in != y->n_in || x->n_out != y->n_out || x->out0 != y->out0 ||
            memcmp(&p, &q, sizeof p) != 0)
            return false;
        for (int i = 0; i < x->n_in; i++)
            if (x->in[i] != y->in[i]) return false;
    }
    for (int k = 0; k < a->n_inputs; k++)
        if (a->inputs[k] != b->inputs[k]) return false;
    for (int k = 0; k < a->n_outputs; k++)
        if (a->outputs[k] != b->outputs[k]) return false;
    return true;
}

static bool print_is(const emg_graph *g, const char *want) {
    char *s = emg_print(g);
    bool ok = s && strcmp(s, want) == 0;
    if (!ok) fprintf(stderr, "---- printed:\n%s---- expected:\n%s----\n", s ? s : "(NULL)", want);
    free(s);
    return ok;
}

/* replaces constant #k's placeholder by t (same type) */
static void set_const(emg_graph *g, int k, em_tensor_t *t) {
    em_release(g->consts[k]);
    g->consts[k] = em_retain(t);
}

static em_tensor_t *from(const double *v, const int64_t *shape, int nd, em_dtype dt) {
    return em_cast(em_from_data(v, shape, nd, EM_F64), dt);
}

/* a and b hold the same values (type and shape too); NaN equals NaN */
static bool same_values(em_tensor_t *a, em_tensor_t *b, double tol) {
    if (!a || !b || em_type(a) != em_type(b) || em_ndim(a) != em_ndim(b)) return false;
    for (int d = 0; d < em_ndim(a); d++)
        if (em_size(a, d) != em_size(b, d)) return false;
    int64_t n = em_numel(a);
    double *x = malloc((size_t)(n + 1) * sizeof *x), *y = malloc((size_t)(n + 1) * sizeof *y);
    bool ok = em_to_data(em_cast(a, EM_F64), x, (size_t)n * sizeof *x) == EM_OK &&
              em_to_data(em_cast(b, EM_F64), y, (size_t)n * sizeof *y) == EM_OK;
    for (int64_t k = 0; ok && k < n; k++)
        ok = x[k] == y[k] || (isnan(x[k]) && isnan(y[k])) || fabs(x[k] - y[k]) <= tol * (1 + fabs(y[k]));
    free(x);
    free(y);
    return ok;
}

/* random inputs of g's input types (integers small, floats N(0,1)) */
static void random_inputs(const emg_graph *g, em_tensor_t **in) {
    for (int k = 0; k < g->n_inputs; k++) {
        const emo_meta *m = &g->vals[g->inputs[k]].meta;
        th_input spec = {.ndim = m->ndim, .dtype = m->dtype, .gen = emt_is_float(m->dtype) ? TH_NORMAL : TH_SMALLINT};
        for (int d = 0; d < m->ndim; d++) spec.shape[d] = m->shape[d];
        in[k] = th_make_input(&spec, m->dtype);
    }
}

/* runs `before` and `after` on the same random inputs and compares every output */
static bool same_outputs(const emg_graph *before, const emg_graph *after, double tol) {
    em_tensor_t *in[16], *o1[16], *o2[16];
    if (before->n_inputs > 16 || before->n_outputs > 16 || after->n_outputs != before->n_outputs) return false;
    random_inputs(before, in);
    if (emg_run(before, in, before->n_inputs, o1) != EM_OK || emg_run(after, in, after->n_inputs, o2) != EM_OK)
        return false;
    for (int k = 0; k < before->n_outputs; k++)
        if (!same_values(o1[k], o2[k], tol)) {
            fprintf(stderr, "output %d differs\n", k);
            return false;
        }
    return true;
}

/* ---- building and printing --------------------------------------------------------------------- */
static void test_build_and_print(void) {
    em_scope_t *s = em_scope_begin();
    emg_graph *g = emg_new();
    emo_meta mx = meta(EM_F32, 2, (int64_t[]){4, 8}), mb = meta(EM_F32, 1, (int64_t[]){8});
    int x = emg_add_input(g, &mx), b = emg_add_input(g, &mb);
    int h = emg_add_node(g, EMO_add, NULL, (int[]){x, b}, 2);
    emo_attrs a = emo_attrs0();
    a.ni = 1;
    a.i[0] = 1;
    a.i[5] = 77; /* beyond ni: normalised away */
    int r = emg_add_node(g, EMO_sum, &a, &h, 1);
    TH_CHECK(x == 0 && b == 1 && h == 2 && r == 3, "value ids in definition order");
    TH_CHECK(g->nodes[1].attrs.i[5] == 0, "attributes are normalised on entry");
    TH_CHECK(emg_set_outputs(g, &r, 1) == EM_OK && emg_verify(g) == EM_OK, "set outputs, verify");
    TH_CHECK(print_is(g, "graph(%0: f32[4, 8], %1: f32[8]) {\n"
                         "  %2: f32[4, 8] = add(%0, %1)\n"
                         "  %3: f32[4] = sum(%2) i=[1]\n"
                         "  return (%3)\n"
                         "}\n"),
             "printed form");
    /* builder errors are values naming the op */
    emo_meta m3 = meta(EM_F32, 1, (int64_t[]){3});
    int y = emg_add_input(g, &m3);
    em_clear_error();
    TH_CHECK(emg_add_node(g, EMO_add, NULL, (int[]){x, y}, 2) == -1, "infer failure");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_add: shapes do not broadcast", "the infer's message, naming add: %s", em_last_error());
    TH_CHECK(emg_add_node(g, EMO_exp, NULL, (int[]){x, y}, 2) == -1, "arity");
    TH_CHECK_ERR(EM_ERR_ARG, "em_exp: takes 1 inputs, got 2", "arity message");
    TH_CHECK(emg_add_node(g, EMO_exp, NULL, (int[]){99}, 1) == -1, "bad value id");
    TH_CHECK_ERR(EM_ERR_ARG, "value 99, which does not exist", "bad id message");
    TH_CHECK(emg_add_node(g, EMO_cat, NULL, NULL, 0) == -1, "variadic needs one input");
    emo_meta bad = meta(EM_F32, 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1});
    TH_CHECK(emg_add_input(g, &bad) == -1, "rank 9 input");
    bad = meta(EM_F32, 1, (int64_t[]){-2});
    TH_CHECK(emg_add_input(g, &bad) == -1, "negative size");
    TH_CHECK(emg_add_const(g, NULL) == -1 && emg_set_outputs(g, (int[]){42}, 1) != EM_OK, "NULL const, bad output");
    TH_CHECK(g->n_nodes == 2 && emg_verify(g) == EM_OK, "failed builds leave the graph as it was");

    /* clone is deep; an input added after nodes still prints first (canonical numbering) */
    emg_graph *c = emg_clone(g);
    TH_CHECK(c && graph_equal(c, g) && c->nodes[0].in != g->nodes[0].in, "clone");
    em_tensor_t *k = em_full((int64_t[]){8}, 1, 2.0, EM_F32);
    int kv = emg_add_const(c, k);
    int z = emg_add_node(c, EMO_mul, NULL, (int[]){r, y}, 2); /* f32[4] * f32[3]: fails */
    TH_CHECK(z == -1, "mul of (4) and (3) fails");
    emo_meta m4 = meta(EM_F32, 1, (int64_t[]){4});
    int late = emg_add_input(c, &m4);
    int z2 = emg_add_node(c, EMO_mul, NULL, (int[]){r, late}, 2);
    int z3 = emg_add_node(c, EMO_add, NULL, (int[]){h, kv}, 2);
    TH_CHECK(emg_set_outputs(c, (int[]){z2, z3}, 2) == EM_OK && emg_verify(c) == EM_OK, "late input verifies");
    TH_CHECK(print_is(c, "graph(%0: f32[4, 8], %1: f32[8], %2: f32[3], %3: f32[4]) {\n"
                         "  %4: f32[8] = const(#0)\n"
                         "  %5: f32[4, 8] = add(%0, %1)\n"
                         "  %6: f32[4] = sum(%5) i=[1]\n"
                         "  %7: f32[4] = mul(%6, %3)\n"
                         "  %8: f32[4, 8] = add(%5, %4)\n"
                         "  return (%7, %8)\n"
                         "}\n"),
             "canonical numbering: inputs, constants, nodes");
    char *text = emg_print(c);
    emg_graph *p = emg_parse(text);
    TH_CHECK(p && emg_dce(c) == 0 && graph_equal(p, c), "after dce (canonical) parse(print(g)) == g");
    free(text);
    /* emg_replace_uses redirects node inputs and outputs alike (c is canonical now: %5 = add,
       %6 = sum, %7 = mul, %8 = add) */
    emg_replace_uses(c, 7, 6);
    emg_replace_uses(c, 5, 0);
    TH_CHECK(emg_verify(c) == EM_OK && c->outputs[0] == 6 && c->nodes[1].in[0] == 0 && c->nodes[3].in[0] == 0,
             "uses of %%5 read %%0, output 0 is %%6");
    emg_replace_uses(c, 6, 0); /* mul(%0, %3): (4, 8) * (4) does not broadcast */
    TH_CHECK(emg_verify(c) == EM_ERR_COMPILE && strstr(em_last_error(), "node 2 (mul): infer rejects it"),
             "a bad redirect is caught by the verifier: %s", em_last_error());
    emg_free(p);
    emg_free(c);
    emg_free(g);
    emg_free(NULL);
    em_scope_end(s);
}

/* ---- round trips ------------------------------------------------------------------------------- */
static const char *round_trip_texts[] = {
    /* views, reductions, float attributes, casts, dtype on an op that ignores it */
    "graph(%0: f32[2, 3, 4], %1: f64[6]) {\n"
    "  %2: f32[6, 4] = reshape(%0) i=[6, 4]\n"
    "  %3: f32[4, 6] = permute(%2) i=[1, 0]\n"
    "  %4: f32[4, 1] = sum(%3) i=[1] j=[1, 0, 0, 0]\n"
    "  %5: f32[4, 2] = slice(%3) j=[1, 0, 6, 3]\n"
    "  %6: f32[4, 6] = clamp(%3) f=[-inf, 0.5, 0, 0]\n"
    "  %7: f64[4, 6] = cast(%6) dtype=f64\n"
    "  %8: f32[4, 6] = cast(%6) dtype=f32\n"
    "  %9: f64[4, 6] = mul(%7, %1)\n"
    "  %10: f32[4] = amax(%8) i=[1] dtype=i64\n"
    "  %11: f32[4, 6] = clamp(%8) f=[0.1, 1e-05, nan, 1e+300]\n"
    "  %12: f32[4, 6] = clamp(%8) f=[0.3333333333333333, -0, 2.5e-310, -1.7976931348623157e+308]\n"
    "  %13: f32[2, 4, 6] = expand(%12) i=[2, 4, 6]\n"
    "  return (%4, %5, %9, %10, %11, %13, %0)\n"
    "}\n",
    /* creation and random ops */
    "graph() {\n"
    "  %0: f32[2, 3] = rand() i=[2, 3] dtype=f32 seed=42 offset=7\n"
    "  %1: i64[5] = randint() i=[5] j=[0, 10, 0, 0] dtype=i64 seed=1 offset=0\n"
    "  %2: f64[2, 3] = randn() i=[2, 3] dtype=f64 seed=18446744073709551615 offset=123\n"
    "  %3: f32[] = full() f=[0.1, 0, 0, 0] dtype=f32\n"
    "  %4: i32[4] = arange() f=[0, 8, 2, 0] dtype=i32\n"
    "  %5: bf16[3] = full() i=[3] f=[-0, 0, 0, 0] dtype=bf16\n"
    "  %6: f32[2, 3] = add(%0, %3)\n"
    "  %7: f32[2, 3] = dropout(%6) f=[0.25, 0, 0, 0] seed=9 offset=100\n"
    "  return (%7, %1, %2, %4, %5)\n"
    "}\n",
    /* constants, variadic cat, multi-output max_dim and split, repeated outputs */
    "graph(%0: f32[4, 6], %1: f32[2, 6]) {\n"
    "  %2: f32[] = const(#0)\n"
    "  %3: i64[2, 2] = const(#1)\n"
    "  %4: f32[10, 6] = cat(%0, %1, %0)\n"
    "  %5: f32[10], %6: i64[10] = max_dim(%4) j=[0, 1, 0, 0]\n"
    "  %7: f32[4, 6], %8: f32[4, 6], %9: f32[2, 6] = split(%4) j=[4, 0, 0, 0]\n"
    "  %10: f32[4, 6] = mul(%7, %2)\n"
    "  %11: f32[4, 12] = cat(%8, %10) j=[0, 1, 0, 0]\n"
    "  %12: f32[4, 6] = layer_norm(%0) f=[0.30000000000000004, 0, 0, 0]\n"
    "  return (%11, %6, %9, %5, %6, %3, %12)\n"
    "}\n",
    /* nothing at all */
    "graph() {\n"
    "  return ()\n"
    "}\n",
};

static void test_round_trips(void) {
    em_scope_t *s = em_scope_begin();
    for (int t = 0; t < EM_ARRAY_LEN(round_trip_texts); t++) {
        const char *text = round_trip_texts[t];
        emg_graph *g = emg_parse(text);
        TH_CHECK(g != NULL, "text %d parses", t);
        if (!g) continue;
        TH_CHECK(emg_verify(g) == EM_OK, "text %d verifies", t);
        TH_CHECK(print_is(g, text), "print(parse(text %d)) == text", t);
        char *again = emg_print(g);
        emg_graph *h = emg_parse(again);
        TH_CHECK(h && graph_equal(g, h), "parse(print(g)) == g for text %d", t);
        emg_graph *c = emg_clone(g);
        TH_CHECK(c && emg_dce(c) == 0 && graph_equal(g, c), "dce keeps every node of text %d", t);
        free(again);
        emg_free(g);
        emg_free(h);
        emg_free(c);
    }
    /* the attributes survive exactly, doubles included */
    emg_graph *g = emg_parse(round_trip_texts[0]);
    const emo_attrs *a = &g->nodes[10].attrs, *b = &g->nodes[9].attrs;
    TH_CHECK(a->f[0] == 1.0 / 3.0 && signbit(a->f[1]) && a->f[1] == 0 && a->f[2] == 2.5e-310 && a->f[3] == -DBL_MAX,
             "f values round-trip bit for bit");
    TH_CHECK(isnan(b->f[2]) && b->f[1] == 1e-5 && isinf(g->nodes[4].attrs.f[0]) && g->nodes[4].attrs.f[0] < 0,
             "nan, -inf");
    emg_free(g);
    g = emg_parse(round_trip_texts[1]);
    TH_CHECK(g && g->nodes[2].attrs.seed == UINT64_MAX && g->nodes[2].attrs.offset == 123 && g->nodes[0].attrs.offset == 7,
             "seed and offset");
    emg_free(g);
    /* a parsed constant is a zero placeholder of its type */
    g = emg_parse(round_trip_texts[2]);
    TH_CHECK(g && g->n_consts == 2 && em_type(g->consts[1]) == EM_I64 && em_numel(g->consts[1]) == 4 &&
                 em_item(em_sum(g->consts[1], NULL, 0, false)) == 0,
             "constant placeholders");
    emg_free(g);
    g = emg_parse("graph() {\n  %0: f32[100000, 100000] = const(#0)\n  return (%0)\n}\n");
    TH_CHECK(g && em_numel(g->consts[0]) == 10000000000LL && em_live_bytes() < ((int64_t)1 << 32),
             "a huge constant placeholder costs nothing");
    emg_free(g);
    /* whitespace is free-form */
    g = emg_parse(" graph(%0:f32[2]){%1:f32[2]=neg(%0)return(%1)}  \n\n");
    TH_CHECK(g && print_is(g, "graph(%0: f32[2]) {\n  %1: f32[2] = neg(%0)\n  return (%1)\n}\n"), "compact text");
    emg_free(g);
    em_scope_end(s);
}

/* ---- parser errors ------------------------------------------------------------------------------ */
typedef struct {
    const char *text;
    int line;
    const char *needle;
} bad_text;

#define HDR "graph(%0: f32[2], %1: f32[3]) {\n"
static const bad_text bad_texts[] = {
    {"", 1, "expected 'graph', got end of input"},
    {"graf() {}", 1, "expected 'graph', got 'graf'"},
    {HDR "  %2: f32[2] = frobnicate(%0)\n  return (%2)\n}\n", 2, "unknown op 'frobnicate'"},
    {HDR "  %2: f32[2] = neg(%5)\n  return (%2)\n}\n", 2, "undefined value %5"},
    {HDR "  %2: f32[2] = neg(%0)\n  %2: f32[2] = neg(%0)\n  return (%2)\n}\n", 3, "redefinition of %2"},
    {HDR "  %3: f32[2] = neg(%0)\n  return (%3)\n}\n", 2, "expected %2 (values are numbered in definition order), got %3"},
    {HDR "  %2: f32[3] = neg(%0)\n  return (%2)\n}\n", 2, "%2 is declared f32[3] but neg gives f32[2]"},
    {HDR "  %2: f32[2] = add(%0, %1)\n  return (%2)\n}\n", 2, "em_add: shapes do not broadcast"},
    {HDR "  %2: f33[2] = neg(%0)\n  return (%2)\n}\n", 2, "expected a dtype (f32, f64, f16, bf16, i32, i64, u8, bool), got 'f33'"},
    {"graph(%0: f32[1, 1, 1, 1, 1, 1, 1, 1, 1]) {\n  return ()\n}\n", 1, "more than 8 dims"},
    {HDR "  %2: f32[2] = neg(%0)\n", 3, "expected a definition (%N: type = ...) or 'return', got end of input"},
    {HDR "  return (%0)\n", 3, "expected '}' closing the graph, got end of input"},
    {HDR "  \x01\xff\xfe garbage\n}\n", 2, "expected a definition (%N: type = ...) or 'return', got '\\x01\\xff\\xfe'"},
    {"graph(%0: f32[99999999999999999999]) {\n  return ()\n}\n", 1, "number too large"},
    {"graph(%0: f32[65536, 65536, 65536, 65536]) {\n  return ()\n}\n", 1, "too many elements"},
    {HDR "  %99999999999: f32[2] = neg(%0)\n", 2, "value number too large"},
    {HDR "  %2: f32[2] = neg(%0, %0)\n  return (%2)\n}\n", 2, "em_neg: takes 1 inputs, got 2"},
    {HDR "  %2: f32[] = max_dim(%0)\n  return (%2)\n}\n", 2, "1 values declared but max_dim gives 2"},
    {HDR "  %2: f32[2] = reshape(%0) i=[2] i=[2]\n  return (%2)\n}\n", 2, "attribute i given twice"},
    {HDR "  %2: f32[2] = neg(%0) k=[1]\n  return (%2)\n}\n", 2, "expected an attribute (i, j, f, dtype, seed, offset)"},
    {HDR "  %2: f32[2] = clamp(%0) f=[1.2.3]\n  return (%2)\n}\n", 2, "expected a number"},
    {HDR "  %2: f32[2] = clamp(%0) f=[1, 2, 3, 4, 5]\n  return (%2)\n}\n", 2, "attribute f has more than 4 entries"},
    {HDR "  %2: f32[2] = const(#3)\n  return (%2)\n}\n", 2, "expected constant #0"},
    {HDR "  %2 f32[2] = neg(%0)\n", 2, "expected ':' and a type, got 'f32'"},
    {HDR "  return (%0)\n}\n}", 4, "expected end of input after '}', got '}'"},
    {HDR "  %2: f32[2] = sum(%0) i=[5]\n  return (%2)\n}\n", 2, "em_sum: dim 5 is out of range"},
    {HDR "  %2: f32[2] = reshape(%0) i=[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]\n", 2, "more than 24 entries"},
    {HDR "  %2: f32[2] = rand() i=[2] seed=18446744073709551616\n", 2, "number too large in a seed"},
    {HDR "  %2: f32[2] = neg(%0)\n  return (%2\n", 4, "expected ',' or ')' after an output, got end of input"},
};

static void test_parse_errors(void) {
    em_scope_t *s = em_scope_begin();
    for (int t = 0; t < EM_ARRAY_LEN(bad_texts); t++) {
        em_clear_error();
        emg_graph *g = emg_parse(bad_texts[t].text);
        char line[32];
        snprintf(line, sizeof line, "line %d:", bad_texts[t].line);
        TH_CHECK(g == NULL && em_last_status() == EM_ERR_FORMAT && strstr(em_last_error(), line) &&
                     strstr(em_last_error(), bad_texts[t].needle),
                 "bad text %d: want \"%s %s\", got \"%s\"", t, line, bad_texts[t].needle, em_last_error());
        emg_free(g);
    }
    TH_CHECK(emg_parse(NULL) == NULL && em_last_status() == EM_ERR_ARG, "NULL text");
    em_scope_end(s);
}

/* parse never crashes on mangled text; whatever it accepts verifies and prints stably */
static void test_parse_mutations(void) {
    em_scope_t *s = em_scope_begin();
    static const char alphabet[] = "%#:=,()[]{}-+.0123456789e fijnadrs\n\x01\xff";
    int accepted = 0, bad = 0, runs = 0;
    uint64_t r = 12345;
    for (int it = 0; it < 3000; it++) {
        const char *src = round_trip_texts[it % 3];
        size_t n = strlen(src);
        char *t = malloc(n + 8);
        memcpy(t, src, n + 1);
        int edits = 1 + it % 3;
        for (int e = 0; e < edits; e++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            size_t pos = (size_t)(r >> 33) % (n ? n : 1);
            int kind = (int)((r >> 20) % 4);
            char c = alphabet[(r >> 8) % (sizeof alphabet - 1)];
            if (kind == 0) t[pos] = c;                                             /* replace */
            else if (kind == 1) memmove(t + pos, t + pos + 1, n - pos), n--;       /* delete */
            else if (kind == 2) t[pos] = 0, n = pos;                               /* truncate */
            else memmove(t + pos + 1, t + pos, n - pos + 1), t[pos] = c, n++;      /* insert (room: 8) */
            if (n == 0 || kind == 3) break;
        }
        emg_graph *g = emg_parse(t);
        if (g) {
            accepted++;
            char *p = emg_print(g);
            emg_graph *h = p ? emg_parse(p) : NULL;
            if (emg_verify(g) != EM_OK || !h || !graph_equal(g, h)) bad++;
            /* a few accepted mutants also run (small, so cheap) */
            if (runs < 50 && g->n_inputs <= 16 && g->n_outputs <= 16) {
                em_tensor_t *in[16], *out[16];
                em_scope_t *s2 = em_scope_begin();
                random_inputs(g, in);
                if (emg_run(g, in, g->n_inputs, out) == EM_OK) runs++;
                em_scope_end(s2);
            }
            free(p);
            emg_free(h);
        } else if (em_last_status() != EM_ERR_FORMAT) {
            bad++;
        }
        emg_free(g);
        free(t);
    }
    TH_CHECK(bad == 0, "3000 mutated texts: %d accepted, %d misbehaved", accepted, bad);
    TH_CHECK(accepted > 0 && runs > 0, "some mutants are valid graphs (%d) and run (%d)", accepted, runs);
    em_scope_end(s);
}

/* ---- verifier ------------------------------------------------------------------------------------ */
static const char *verify_base = "graph(%0: f32[4], %1: f32[4]) {\n"
                                 "  %2: f32[4] = add(%0, %1)\n"
                                 "  %3: f32[4] = exp(%2)\n"
                                 "  %4: f32[] = sum(%3) i=[0]\n"
                                 "  return (%4)\n"
                                 "}\n";

static void test_verify(void) {
    em_scope_t *s = em_scope_begin();
    emg_graph *base = emg_parse(verify_base);
    TH_CHECK(base && emg_verify(base) == EM_OK, "base verifies");
    for (int c = 0; c < 12; c++) {
        emg_graph *g = emg_clone(base);
        const char *needle = "";
        switch (c) {
        case 0: g->nodes[1].in[0] = 3; needle = "node 1 (exp): input 0 is %3, its own output"; break;
        case 1: g->nodes[0].in[1] = 99; needle = "node 0 (add): input 1 is value 99, out of range"; break;
        case 2: g->vals[3].meta.shape[0] = 5; needle = "node 1 (exp): output 0 (%3) is f32[5] but infer gives f32[4]"; break;
        case 3: g->nodes[2].attrs.i[0] = 3; needle = "node 2 (sum): infer rejects it: em_sum: dim 3 is out of range"; break;
        case 4: g->nodes[0].n_in = 1; needle = "node 0 (add): has 1 inputs, the op takes 2"; break;
        case 5: g->outputs[0] = 42; needle = "output 0 is value 42, out of range"; break;
        case 6: g->vals[2].out_idx = 1; needle = "value %2 claims to be output 1 of node 0"; break;
        case 7: g->inputs[0] = 1; needle = "input 0 is %1, which is not marked as input 0"; break;
        case 8: g->nodes[0].in[0] = 3; needle = "node 0 (add): input 0 is %3, which is defined later (node 1)"; break;
        case 9: g->nodes[1].op = EMO_NUM_OPS; needle = "node 1: unknown op"; break;
        case 10: g->vals[2].meta.dtype = EM_F64; needle = "node 0 (add): output 0 (%2) is f64"; break;
        case 11: g->nodes[1].out0 = 2; needle = "value %3 claims to be output 0 of node 1"; break;
        }
        em_clear_error();
        TH_CHECK(emg_verify(g) == EM_ERR_COMPILE && strstr(em_last_error(), needle), "corruption %d: want \"%s\", got \"%s\"",
                 c, needle, em_last_error());
        emg_free(g);
    }
    emg_free(base);
    em_scope_end(s);
}

/* ---- passes -------------------------------------------------------------------------------------- */
static void test_dce(void) {
    em_scope_t *s = em_scope_begin();
    emg_graph *g = emg_parse("graph(%0: f64[4], %1: f64[4]) {\n"
                             "  %2: f64[4] = const(#0)\n"
                             "  %3: f64[4] = const(#1)\n"
                             "  %4: f64[4] = exp(%0)\n"
                             "  %5: f64[4] = mul(%4, %3)\n"
                             "  %6: f64[4] = add(%0, %2)\n"
                             "  %7: f64[], %8: i64[] = max_dim(%5)\n"
                             "  %9: f64[4] = neg(%6)\n"
                             "  return (%9, %0, %9)\n"
                             "}\n");
    set_const(g, 0, from((double[]){1, 2, 3, 4}, (int64_t[]){4}, 1, EM_F64));
    emg_graph *before = emg_clone(g);
    TH_CHECK(emg_dce(g) == 4 && emg_verify(g) == EM_OK, "dce drops exp, mul, max_dim and constant #1");
    TH_CHECK(print_is(g, "graph(%0: f64[4], %1: f64[4]) {\n"
                         "  %2: f64[4] = const(#0)\n"
                         "  %3: f64[4] = add(%0, %2)\n"
                         "  %4: f64[4] = neg(%3)\n"
                         "  return (%4, %0, %4)\n"
                         "}\n"),
             "after dce: unused input kept, outputs in order");
    TH_CHECK(same_outputs(before, g, 0), "same outputs after dce");
    TH_CHECK(emg_dce(g) == 0, "dce is idempotent");
    emg_free(g);
    emg_free(before);
    em_scope_end(s);
}

static void test_cse(void) {
    em_scope_t *s = em_scope_begin();
    emg_graph *g = emg_new();
    emo_meta m = meta(EM_F64, 1, (int64_t[]){5});
    int x = emg_add_input(g, &m), y = emg_add_input(g, &m);
    int c1 = emg_add_const(g, from((double[]){1, 2, 3, 4, 5}, (int64_t[]){5}, 1, EM_F64));
    int c2 = emg_add_const(g, from((double[]){1, 2, 3, 4, 5}, (int64_t[]){5}, 1, EM_F64));
    int c3 = emg_add_const(g, from((double[]){1, 2, 3, 4, 6}, (int64_t[]){5}, 1, EM_F64));
    int e1 = emg_add_node(g, EMO_exp, NULL, &x, 1), e2 = emg_add_node(g, EMO_exp, NULL, &x, 1);
    int a1 = emg_add_node(g, EMO_add, NULL, (int[]){e1, y}, 2), a2 = emg_add_node(g, EMO_add, NULL, (int[]){e2, y}, 2);
    emo_attrs r = emo_attrs0();
    r.ni = 1;
    r.i[0] = 5;
    r.dtype = EM_F64;
    r.seed = 1;
    int r1 = emg_add_node(g, EMO_rand, &r, NULL, 0), r2 = emg_add_node(g, EMO_rand, &r, NULL, 0);
    r.offset = 5;
    int r3 = emg_add_node(g, EMO_rand, &r, NULL, 0);
    int m1 = emg_add_node(g, EMO_mul, NULL, (int[]){c1, x}, 2), m2 = emg_add_node(g, EMO_mul, NULL, (int[]){c2, x}, 2);
    int m3 = emg_add_node(g, EMO_mul, NULL, (int[]){c3, x}, 2);
    emo_attrs sa = emo_attrs0();
    sa.ni = 1;
    int s1 = emg_add_node(g, EMO_sum, &sa, &x, 1);
    sa.j[0] = 1;
    int s2 = emg_add_node(g, EMO_sum, &sa, &x, 1);
    int outs[] = {a1, a2, r1, r2, r3, m1, m2, m3, s1, s2};
    emg_set_outputs(g, outs, EM_ARRAY_LEN(outs));
    TH_CHECK(emg_verify(g) == EM_OK, "cse input verifies");
    emg_graph *before = emg_clone(g);
    TH_CHECK(emg_cse(g) == 5 && emg_verify(g) == EM_OK, "cse merges constant #1, exp, add (a chain), rand, mul");
    TH_CHECK(emg_dce(g) == 5 && emg_verify(g) == EM_OK, "and dce sweeps the five");
    TH_CHECK(print_is(g, "graph(%0: f64[5], %1: f64[5]) {\n"
                         "  %2: f64[5] = const(#0)\n"
                         "  %3: f64[5] = const(#1)\n"
                         "  %4: f64[5] = exp(%0)\n"
                         "  %5: f64[5] = add(%4, %1)\n"
                         "  %6: f64[5] = rand() i=[5] dtype=f64 seed=1 offset=0\n"
                         "  %7: f64[5] = rand() i=[5] dtype=f64 seed=1 offset=5\n"
                         "  %8: f64[5] = mul(%2, %0)\n"
                         "  %9: f64[5] = mul(%3, %0)\n"
                         "  %10: f64[] = sum(%0) i=[0]\n"
                         "  %11: f64[1] = sum(%0) i=[0] j=[1, 0, 0, 0]\n"
                         "  return (%5, %5, %6, %6, %7, %8, %8, %9, %10, %11)\n"
                         "}\n"),
             "after cse + dce");
    TH_CHECK(same_outputs(before, g, 0), "same outputs after cse (random nodes included)");
    TH_CHECK(emg_cse(g) == 0, "cse finds nothing more");
    emg_free(g);
    emg_free(before);
    em_scope_end(s);
}

static void test_fold(void) {
    em_scope_t *s = em_scope_begin();
    emg_graph *g = emg_parse("graph(%0: f32[4]) {\n"
                             "  %1: f32[4] = const(#0)\n"
                             "  %2: f32[] = full() f=[2, 0, 0, 0] dtype=f32\n"
                             "  %3: f32[4] = mul(%1, %2)\n"
                             "  %4: f32[4] = arange() f=[0, 4, 1, 0] dtype=f32\n"
                             "  %5: f32[4] = add(%3, %4)\n"
                             "  %6: f32[4] = rand() i=[4] dtype=f32 seed=3 offset=0\n"
                             "  %7: f32[4] = add(%5, %6)\n"
                             "  %8: f32[300, 300] = full() i=[300, 300] f=[1, 0, 0, 0] dtype=f32\n"
                             "  %9: f32[4] = add(%0, %5)\n"
                             "  %10: f32[] = sum(%8) i=[0, 1]\n"
                             "  %11: i64[2] = const(#1)\n"
                             "  %12: f32[2] = index_select(%1, %11) j=[0, 0, 0, 0]\n"
                             "  return (%9, %7, %10, %12)\n"
                             "}\n");
    set_const(g, 0, from((double[]){1, 2, 3, 4}, (int64_t[]){4}, 1, EM_F32));
    set_const(g, 1, from((double[]){3, 7}, (int64_t[]){2}, 1, EM_I64)); /* 7 is out of range */
    emg_graph *before = emg_clone(g);
    TH_CHECK(emg_fold_constants(g) == 4 && emg_verify(g) == EM_OK, "fold: full, mul, arange, add (not rand, the "
             "big full, or index_select whose kernel fails)");
    TH_CHECK(em_last_status() == EM_OK, "the refused kernel's error is cleared");
    TH_CHECK(emg_dce(g) >= 0 && emg_verify(g) == EM_OK, "dce after fold");
    TH_CHECK(print_is(g, "graph(%0: f32[4]) {\n"
                         "  %1: f32[4] = const(#0)\n"
                         "  %2: i64[2] = const(#1)\n"
                         "  %3: f32[4] = const(#2)\n"
                         "  %4: f32[4] = rand() i=[4] dtype=f32 seed=3 offset=0\n"
                         "  %5: f32[4] = add(%3, %4)\n"
                         "  %6: f32[300, 300] = full() i=[300, 300] f=[1, 0, 0, 0] dtype=f32\n"
                         "  %7: f32[4] = add(%0, %3)\n"
                         "  %8: f32[] = sum(%6) i=[0, 1]\n"
                         "  %9: f32[2] = index_select(%1, %2)\n"
                         "  return (%7, %5, %8, %9)\n"
                         "}\n"),
             "after fold + dce");
    double want[4] = {2, 5, 8, 11}, got[4] = {0};
    TH_CHECK(g->n_consts == 3 && em_to_data(em_cast(g->consts[2], EM_F64), got, sizeof got) == EM_OK &&
                 memcmp(got, want, sizeof got) == 0,
             "folded value 2*[1,2,3,4] + [0,1,2,3] = [%g, %g, %g, %g]", got[0], got[1], got[2], got[3]);
    /* the graph still fails at run time on the bad index, before and after */
    em_tensor_t *in = em_zeros((int64_t[]){4}, 1, EM_F32), *out[4];
    TH_CHECK(emg_run(g, &in, 1, out) == EM_ERR_INDEX, "the bad index_select still fails when run");
    TH_CHECK_ERR(EM_ERR_INDEX, "emg_run: node 5 (index_select)", "run errors name the node: %s", em_last_error());
    set_const(before, 1, from((double[]){3, 0}, (int64_t[]){2}, 1, EM_I64));
    set_const(g, 1, from((double[]){3, 0}, (int64_t[]){2}, 1, EM_I64));
    TH_CHECK(same_outputs(before, g, 0), "same outputs after fold");
    emg_free(g);
    emg_free(before);
    em_scope_end(s);
}

static void test_simplify(void) {
    em_scope_t *s = em_scope_begin();
    emg_graph *g = emg_parse("graph(%0: f32[3, 4], %1: i32[3, 4]) {\n"
                             "  %2: f32[] = const(#0)\n"
                             "  %3: f32[] = const(#1)\n"
                             "  %4: f32[2, 3, 4] = const(#2)\n"
                             "  %5: f32[3, 4] = mul(%0, %2)\n"
                             "  %6: f32[3, 4] = mul(%2, %5)\n"
                             "  %7: f32[3, 4] = add(%6, %3)\n"
                             "  %8: f32[3, 4] = sub(%7, %3)\n"
                             "  %9: f32[3, 4] = div(%8, %2)\n"
                             "  %10: f32[2, 3, 4] = mul(%9, %4)\n"
                             "  %11: f32[3, 4] = mul(%1, %2)\n"
                             "  %12: f32[12] = reshape(%9) i=[12]\n"
                             "  %13: f32[2, 6] = reshape(%12) i=[2, 6]\n"
                             "  %14: f32[3, 4] = reshape(%13) i=[3, 4]\n"
                             "  %15: f32[4, 3] = permute(%14) i=[1, 0]\n"
                             "  %16: f32[3, 4] = permute(%15) i=[1, 0]\n"
                             "  %17: f32[3, 4] = cast(%16) dtype=f32\n"
                             "  %18: f32[3, 4] = exp(%17)\n"
                             "  %19: f32[3, 4] = copy(%18)\n"
                             "  %20: f32[3, 4] = copy(%0)\n"
                             "  %21: f32[3, 4] = neg(%19)\n"
                             "  %22: f32[3, 4] = neg(%21)\n"
                             "  %23: f32[] = full() f=[1, 0, 0, 0] dtype=f32\n"
                             "  %24: f32[3, 4] = mul(%22, %23)\n"
                             "  %25: f32[3, 4] = sub(%3, %24)\n"
                             "  return (%24, %10, %11, %13, %20, %25)\n"
                             "}\n");
    set_const(g, 0, em_ones(NULL, 0, EM_F32));
    set_const(g, 2, em_ones((int64_t[]){2, 3, 4}, 3, EM_F32));
    emg_graph *before = emg_clone(g);
    int n = emg_simplify(g);
    TH_CHECK(n == 14 && emg_verify(g) == EM_OK, "simplify makes 14 rewrites (got %d)", n);
    TH_CHECK(emg_dce(g) >= 0 && emg_verify(g) == EM_OK, "dce after simplify");
    TH_CHECK(print_is(g, "graph(%0: f32[3, 4], %1: i32[3, 4]) {\n"
                         "  %2: f32[] = const(#0)\n"
                         "  %3: f32[] = const(#1)\n"
                         "  %4: f32[2, 3, 4] = const(#2)\n"
                         "  %5: f32[2, 3, 4] = mul(%0, %4)\n"
                         "  %6: f32[3, 4] = mul(%1, %2)\n"
                         "  %7: f32[2, 6] = reshape(%0) i=[2, 6]\n"
                         "  %8: f32[3, 4] = exp(%0)\n"
                         "  %9: f32[3, 4] = copy(%0)\n"
                         "  %10: f32[3, 4] = sub(%3, %8)\n"
                         "  return (%8, %5, %6, %7, %9, %10)\n"
                         "}\n"),
             "after simplify + dce: broadcasting and promoting constants stay, 0 - x stays");
    TH_CHECK(same_outputs(before, g, 0), "same outputs after simplify");
    TH_CHECK(emg_simplify(g) == 0, "nothing more to simplify");
    emg_free(g);
    emg_free(before);

    /* a permutation that composes to a non-identity, and x + 0 on integers */
    g = emg_parse("graph(%0: f64[2, 3, 4], %1: i64[4]) {\n"
                  "  %2: f64[3, 4, 2] = permute(%0) i=[1, 2, 0]\n"
                  "  %3: f64[4, 2, 3] = permute(%2) i=[1, 2, 0]\n"
                  "  %4: i64[] = full() dtype=i64\n"
                  "  %5: i64[4] = add(%4, %1)\n"
                  "  %6: i64[] = full() f=[0.5, 0, 0, 0] dtype=i64\n"
                  "  %7: i64[4] = add(%1, %6)\n"
                  "  %8: f64[4] = add(%1, %6) \n"
                  "  return (%3, %5, %7)\n"
                  "}\n");
    TH_CHECK(g == NULL && strstr(em_last_error(), "line 8: %8 is declared f64[4] but add gives i64[4]"),
             "(typo check) %s", em_last_error());
    g = emg_parse("graph(%0: f64[2, 3, 4], %1: i64[4]) {\n"
                  "  %2: f64[3, 4, 2] = permute(%0) i=[1, 2, 0]\n"
                  "  %3: f64[4, 2, 3] = permute(%2) i=[1, 2, 0]\n"
                  "  %4: i64[] = full() dtype=i64\n"
                  "  %5: i64[4] = add(%4, %1)\n"
                  "  %6: i64[] = full() f=[0.5, 0, 0, 0] dtype=i64\n"
                  "  %7: i64[4] = add(%1, %6)\n"
                  "  return (%3, %5, %7)\n"
                  "}\n");
    before = emg_clone(g);
    TH_CHECK(emg_simplify(g) == 3 && emg_dce(g) == 5, "permute chain composed, 0 + x, x + full(0.5) as i64 == x");
    TH_CHECK(print_is(g, "graph(%0: f64[2, 3, 4], %1: i64[4]) {\n"
                         "  %2: f64[4, 2, 3] = permute(%0) i=[2, 0, 1]\n"
                         "  return (%2, %1, %1)\n"
                         "}\n"),
             "composed permutation");
    TH_CHECK(same_outputs(before, g, 0), "same outputs");
    emg_free(g);
    emg_free(before);
    em_scope_end(s);
}

/* every pass in a pipeline on a larger graph, in f64 (exact) and f32 (within tolerance) */
static void test_pipeline(em_dtype dt) {
    em_scope_t *s = em_scope_begin();
    const char *name = em_dtype_name(dt);
    static const char *tmpl = /* T stands for the dtype */
        "graph(%0: T[8, 16], %1: T[16, 4], %2: T[4]) {\n"
        "  %3: T[] = const(#0)\n"
        "  %4: T[4] = const(#1)\n"
        "  %5: T[8, 4] = matmul(%0, %1)\n"
        "  %6: T[8, 4] = matmul(%0, %1)\n"
        "  %7: T[8, 4] = add(%5, %2)\n"
        "  %8: T[8, 4] = add(%6, %2)\n"
        "  %9: T[8, 4] = mul(%7, %3)\n"
        "  %10: T[4] = mul(%4, %4)\n"
        "  %11: T[8, 4] = add(%9, %10)\n"
        "  %12: T[8, 4] = gelu(%11)\n"
        "  %13: T[32] = reshape(%12) i=[32]\n"
        "  %14: T[4, 8] = reshape(%13) i=[4, 8]\n"
        "  %15: T[8, 4] = permute(%14) i=[1, 0]\n"
        "  %16: T[8, 4] = softmax(%8) j=[0, 1, 0, 0]\n"
        "  %17: T[8] = sum(%16) i=[1]\n"
        "  %18: T[8, 4] = copy(%12)\n"
        "  %19: T[8, 4] = tanh(%8)\n"
        "  return (%15, %17, %18)\n"
        "}\n";
    char text[4096];
    size_t n = 0;
    for (const char *c = tmpl; *c && n + 8 < sizeof text; c++) {
        if (*c == 'T') n += (size_t)snprintf(text + n, sizeof text - n, "%s", name);
        else text[n++] = *c;
    }
    text[n] = 0;
    emg_graph *g = emg_parse(text);
    TH_CHECK(g != NULL, "pipeline graph parses (%s)", name);
    if (!g) {
        em_scope_end(s);
        return;
    }
    set_const(g, 0, em_ones(NULL, 0, dt));
    set_const(g, 1, em_cast(em_arange(0, 4, 1, EM_F64), dt));
    emg_graph *before = emg_clone(g);
    double tol = dt == EM_F64 ? 1e-12 : 1e-5;
    int c1 = emg_fold_constants(g), c2, c3, c4;
    TH_CHECK(c1 == 1 && emg_verify(g) == EM_OK && same_outputs(before, g, tol), "fold (%s)", name);
    c2 = emg_simplify(g);
    TH_CHECK(c2 == 3 && emg_verify(g) == EM_OK && same_outputs(before, g, tol), "simplify (%s): %d", name, c2);
    c3 = emg_cse(g);
    TH_CHECK(c3 == 2 && emg_verify(g) == EM_OK && same_outputs(before, g, tol), "cse (%s): %d", name, c3);
    c4 = emg_dce(g);
    TH_CHECK(c4 == 9 && emg_verify(g) == EM_OK && same_outputs(before, g, tol), "dce (%s): %d", name, c4);
    TH_CHECK(g->n_nodes == 8, "8 nodes left of 15 (%d)", g->n_nodes);
    emg_free(g);
    emg_free(before);
    em_scope_end(s);
}

/* random graphs built from ops the passes care about (neutral constants, repeats, view chains):
   every pass keeps them verifiable and their outputs unchanged, and their text round-trips */
static uint64_t rng_state = 88172645463325252ull;
static int rnd(int n) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (int)(rng_state % (uint64_t)n);
}

static void random_graph_step(emg_graph *g, int *vals, int *nv) {
    static const emo_op unary[] = {EMO_exp, EMO_neg, EMO_tanh, EMO_abs, EMO_copy, EMO_sin, EMO_neg};
    static const emo_op binary[] = {EMO_add, EMO_sub, EMO_mul, EMO_div, EMO_maximum, EMO_mul, EMO_add};
    static const int64_t shapes[][2] = {{12, 0}, {2, 6}, {3, 4}, {4, 3}};
    int x = vals[rnd(*nv)], y = vals[rnd(*nv)], v = -1;
    emo_attrs a = emo_attrs0();
    switch (rnd(9)) {
    case 0: v = emg_add_node(g, unary[rnd(EM_ARRAY_LEN(unary))], NULL, &x, 1); break;
    case 1:
    case 2: v = emg_add_node(g, binary[rnd(EM_ARRAY_LEN(binary))], NULL, (int[]){x, y}, 2); break;
    case 3: {
        int s = rnd(4);
        a.ni = shapes[s][1] ? 2 : 1;
        a.i[0] = shapes[s][0];
        a.i[1] = shapes[s][1];
        v = emg_add_node(g, EMO_reshape, &a, &x, 1);
        break;
    }
    case 4:
        a.ni = g->vals[x].meta.ndim;
        for (int d = 0; d < a.ni; d++) a.i[d] = a.ni == 2 && rnd(2) ? 1 - d : d;
        v = emg_add_node(g, EMO_permute, &a, &x, 1);
        break;
    case 5:
        a.dtype = rnd(3) ? EM_F64 : EM_F32;
        v = emg_add_node(g, EMO_cast, &a, &x, 1);
        break;
    case 6:
        a.f[0] = rnd(3);
        a.dtype = EM_F64;
        v = emg_add_node(g, EMO_full, &a, NULL, 0);
        break;
    case 7: { /* repeat an existing node exactly */
        const emg_value *xv = &g->vals[x];
        if (xv->kind == EMG_NODE) {
            const emg_node *n = &g->nodes[xv->node];
            emo_attrs na = n->attrs;
            int in[4];
            for (int i = 0; i < n->n_in && i < 4; i++) in[i] = n->in[i];
            if (n->n_in <= 4) v = emg_add_node(g, n->op, &na, in, n->n_in);
        }
        break;
    }
    case 8:
        if (g->vals[x].meta.ndim > 0) {
            a.ni = 1;
            a.i[0] = rnd(g->vals[x].meta.ndim);
            a.j[0] = rnd(2);
            v = emg_add_node(g, EMO_sum, &a, &x, 1);
        }
        break;
    }
    if (v >= 0) vals[(*nv)++] = v;
    else em_clear_error();
}

static void test_random_graphs(void) {
    em_scope_t *s = em_scope_begin();
    int bad_verify = 0, bad_values = 0, bad_text = 0, changes = 0;
    for (int t = 0; t < 150; t++) {
        em_scope_t *s2 = em_scope_begin();
        emg_graph *g = emg_new();
        int vals[128], nv = 0;
        emo_meta m34 = meta(EM_F64, 2, (int64_t[]){3, 4}), m4 = meta(EM_F64, 1, (int64_t[]){4});
        vals[nv++] = emg_add_input(g, &m34);
        vals[nv++] = emg_add_input(g, &m4);
        vals[nv++] = emg_add_const(g, em_ones(NULL, 0, EM_F64));
        vals[nv++] = emg_add_const(g, em_zeros((int64_t[]){4}, 1, EM_F64));
        vals[nv++] = emg_add_const(g, th_randn((int64_t[]){3, 4}, 2, EM_F64));
        for (int k = 0; k < 40; k++) random_graph_step(g, vals, &nv);
        int outs[4] = {vals[nv - 1], vals[nv - 2], vals[nv - 3], vals[rnd(nv)]};
        emg_set_outputs(g, outs, 4);
        emg_graph *before = emg_clone(g);
        int (*passes[])(emg_graph *) = {emg_fold_constants, emg_simplify, emg_cse, emg_dce, emg_simplify, emg_dce};
        for (int p = 0; p < EM_ARRAY_LEN(passes); p++) {
            int c = passes[p](g);
            changes += c > 0 ? c : 0;
            if (c < 0 || emg_verify(g) != EM_OK) bad_verify++;
            if (!same_outputs(before, g, 1e-12)) {
                bad_values++;
                if (getenv("DEBUG_GRAPH")) {
                    char *b1 = emg_print(before), *b2 = emg_print(g);
                    fprintf(stderr, "pass %d\n%s%s", p, b1, b2);
                    free(b1);
                    free(b2);
                }
            }
        }
        char *text = emg_print(g);
        emg_graph *h = text ? emg_parse(text) : NULL;
        char *again = h ? emg_print(h) : NULL;
        if (!h || !graph_equal(g, h) || !again || strcmp(text, again) != 0) bad_text++;
        free(text);
        free(again);
        emg_free(h);
        emg_free(g);
        emg_free(before);
        em_scope_end(s2);
    }
    TH_CHECK(bad_verify == 0, "passes keep 150 random graphs verifiable (%d failures)", bad_verify);
    TH_CHECK(bad_values == 0, "passes keep their outputs (%d failures)", bad_values);
    TH_CHECK(bad_text == 0, "their text round-trips (%d failures)", bad_text);
    TH_CHECK(changes > 1000, "and the passes had work to do (%d changes)", changes);
    em_scope_end(s);
}

/* ---- interpreter ----------------------------------------------------------------------------------- */
static void test_run(void) {
    em_scope_t *s = em_scope_begin();
    emg_graph *g = emg_parse("graph(%0: f64[3], %1: f64[3]) {\n"
                             "  %2: f64[3] = mul(%0, %1)\n"
                             "  %3: f64[] = sum(%2) i=[0]\n"
                             "  return (%3, %0, %3)\n"
                             "}\n");
    em_tensor_t *a = from((double[]){1, 2, 3}, (int64_t[]){3}, 1, EM_F64);
    em_tensor_t *b = from((double[]){4, 5, 6}, (int64_t[]){3}, 1, EM_F64);
    em_tensor_t *out[3] = {0};
    int64_t live = em_live_tensors();
    em_scope_t *s2 = em_scope_begin();
    TH_CHECK(emg_run(g, (em_tensor_t *[]){a, b}, 2, out) == EM_OK, "run");
    TH_CHECK(em_item(out[0]) == 32 && out[1] == a && out[2] == out[0], "dot product 32; an input returned as is");
    em_scope_end(s2);
    TH_CHECK(em_live_tensors() == live, "outputs belong to the caller's scope (%lld live, want %lld)",
             (long long)em_live_tensors(), (long long)live);
    TH_CHECK(emg_run(g, &a, 1, out) == EM_ERR_ARG, "wrong input count");
    TH_CHECK(emg_run(g, (em_tensor_t *[]){a, em_ones((int64_t[]){4}, 1, EM_F64)}, 2, out) == EM_ERR_SHAPE, "wrong shape");
    TH_CHECK_ERR(EM_ERR_SHAPE, "input 1 is f64[4] but the graph declares f64[3]", "message: %s", em_last_error());
    TH_CHECK(emg_run(g, (em_tensor_t *[]){a, NULL}, 2, out) == EM_ERR_ARG, "NULL input");
    em_set_requires_grad(a, true);
    TH_CHECK(emg_run(g, (em_tensor_t *[]){a, b}, 2, out) == EM_OK && !em_requires_grad(out[0]), "runs under no-grad");
    emg_free(g);
    em_scope_end(s);
}

int main(void) {
    int64_t live = em_live_tensors();
    test_build_and_print();
    test_round_trips();
    test_parse_errors();
    test_parse_mutations();
    test_verify();
    test_dce();
    test_cse();
    test_fold();
    test_simplify();
    test_pipeline(EM_F64);
    test_pipeline(EM_F32);
    test_random_graphs();
    test_run();
    TH_CHECK(em_live_tensors() == live, "no tensor leaked (%lld live, %lld at start)", (long long)em_live_tensors(),
             (long long)live);
    return th_summary();
}
