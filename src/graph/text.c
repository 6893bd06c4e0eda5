/* text.c - the graph's text form: emg_print and emg_parse (graph.h shows an example).
 *
 *     graph(%0: f32[4, 8], %1: f32[8]) {
 *       %2: f32[] = const(#0)
 *       %3: f32[4, 8] = add(%0, %1)
 *       %4: f32[4], %5: i64[4] = max_dim(%3) j=[0, 1, 0, 0]
 *       return (%4, %2)
 *     }
 *
 * The printer numbers values canonically (inputs, then constants, then node outputs) whatever
 * their ids in memory, so printing is deterministic and parse(print(g)) equals g whenever g is
 * numbered canonically (emg_dce leaves it so). Ops go by their op-table names. Attribute fields
 * print only when they differ from zero, in a fixed order:
 *   i=[..]        when ni > 0 (the ni entries);
 *   j=[a, b, c, d] when any j is non-zero (all four);
 *   f=[a, b, c, d] when any f is non-zero, -0.0 included (all four, in the shortest form that
 *                 reads back to the same double; inf, -inf, nan);
 *   dtype=NAME    when dtype is not f32, or the op creates a tensor (EMO_CREATE) or is cast;
 *   seed=S offset=O for EMO_RANDOM ops.
 * So print(parse(text)) == text for text in this canonical form.
 *
 * The parser is a hand-written recursive-descent reader over the bytes, with no recursion deeper
 * than one statement. It will be fuzzed, so it trusts nothing: names, numbers and lists are
 * bounded (at most 8 dims, at most 2^48 elements per declared type, integers within +-2^62,
 * at most 24 i entries, 4 j and f entries, 64 outputs and 4096 inputs per node), every value
 * reference is range-checked, and each node's declared types are checked against what its op's
 * infer gives. Errors are EM_ERR_FORMAT with "line N: expected X, got 'Y'". Whitespace (newlines
 * included) only separates tokens. A parsed constant has no data: it is a zero-filled tensor of
 * the declared type (a broadcast view of one zero when large), a placeholder for the real one.
 */
#include "graph.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>

/* ---- printing ------------------------------------------------------------------------------ */
typedef struct {
    char *s;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) EM_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = true;
            return;
        }
        if (b->s && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap <= b->n + (size_t)k) ncap *= 2;
        char *q = realloc(b->s, ncap);
        if (!q) {
            b->oom = true;
            return;
        }
        b->s = q;
        b->cap = ncap;
    }
}

/* the shortest %g form that reads back as the same double */
static void fmt_double(char *buf, size_t size, double x) {
    if (isnan(x)) {
        snprintf(buf, size, "nan");
        return;
    }
    if (isinf(x)) {
        snprintf(buf, size, x > 0 ? "inf" : "-inf");
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, x);
        if (strtod(buf, NULL) == x) return;
    }
}

static void print_meta(sbuf *b, const emo_meta *m) {
    sb_printf(b, "%s[", em_dtype_name(m->dtype));
    for (int d = 0; d < m->ndim && d < EM_MAX_DIMS; d++) sb_printf(b, "%s%lld", d ? ", " : "", (long long)m->shape[d]);
    sb_printf(b, "]");
}

static void print_ref(sbuf *b, const emg_graph *g, const int *num, int v) {
    if (v < 0 || v >= g->n_vals || num[v] < 0) sb_printf(b, "%%?%d", v); /* only in broken graphs */
    else sb_printf(b, "%%%d", num[v]);
}

static bool any_nonzero(const void *p, size_t n) {
    const unsigned char *c = p;
    for (size_t k = 0; k < n; k++)
        if (c[k]) return true;
    return false;
}

static void print_attrs(sbuf *b, emo_op op, const emo_attrs *a) {
    unsigned flags = emo_table[op].flags;
    if (a->ni > 0) {
        sb_printf(b, " i=[");
        for (int k = 0; k < a->ni && k < EMO_MAX_INTS; k++) sb_printf(b, "%s%lld", k ? ", " : "", (long long)a->i[k]);
        sb_printf(b, "]");
    }
    if (any_nonzero(a->j, sizeof a->j))
        sb_printf(b, " j=[%lld, %lld, %lld, %lld]", (long long)a->j[0], (long long)a->j[1], (long long)a->j[2],
                  (long long)a->j[3]);
    if (any_nonzero(a->f, sizeof a->f)) {
        sb_printf(b, " f=[");
        for (int k = 0; k < EMO_MAX_FLOATS; k++) {
            char buf[40];
            fmt_double(buf, sizeof buf, a->f[k]);
            sb_printf(b, "%s%s", k ? ", " : "", buf);
        }
        sb_printf(b, "]");
    }
    if (a->dtype != EM_F32 || (flags & EMO_CREATE) || op == EMO_cast) sb_printf(b, " dtype=%s", em_dtype_name(a->dtype));
    if (flags & EMO_RANDOM)
        sb_printf(b, " seed=%llu offset=%llu", (unsigned long long)a->seed, (unsigned long long)a->offset);
}

/* canonical numbers (num[v]): inputs, constants (by table index), node outputs (by node); and
   cval[k], the value holding constant #k (-1 when none, in broken graphs) */
static bool canonical_numbers(const emg_graph *g, int **num_out, int **cval_out) {
    int *num = malloc(((size_t)g->n_vals + 1) * sizeof *num), *cv = malloc(((size_t)g->n_consts + 1) * sizeof *cv);
    if (!num || !cv) {
        free(num);
        free(cv);
        return false;
    }
    for (int v = 0; v < g->n_vals; v++) num[v] = -1;
    for (int k = 0; k < g->n_consts; k++) cv[k] = -1;
    int next = 0;
    for (int k = 0; k < g->n_inputs; k++)
        if (g->inputs[k] >= 0 && g->inputs[k] < g->n_vals && num[g->inputs[k]] < 0) num[g->inputs[k]] = next++;
    for (int v = 0; v < g->n_vals; v++)
        if (g->vals[v].kind == EMG_CONST && g->vals[v].index >= 0 && g->vals[v].index < g->n_consts) cv[g->vals[v].index] = v;
    for (int k = 0; k < g->n_consts; k++)
        if (cv[k] >= 0 && num[cv[k]] < 0) num[cv[k]] = next++;
    for (int k = 0; k < g->n_nodes; k++)
        for (int j = 0; j < g->nodes[k].n_out; j++) {
            int v = g->nodes[k].out0 + j;
            if (v >= 0 && v < g->n_vals && num[v] < 0) num[v] = next++;
        }
    *num_out = num;
    *cval_out = cv;
    return true;
}

static void print_node(sbuf *b, const emg_graph *g, const int *num, const emg_node *n) {
    sb_printf(b, "  ");
    for (int j = 0; j < n->n_out; j++) {
        int v = n->out0 + j;
        sb_printf(b, "%s", j ? ", " : "");
        print_ref(b, g, num, v);
        sb_printf(b, ": ");
        if (v >= 0 && v < g->n_vals) print_meta(b, &g->vals[v].meta);
    }
    bool known = (unsigned)n->op < EMO_NUM_OPS;
    sb_printf(b, " = %s(", known ? emo_table[n->op].name : "?");
    for (int i = 0; i < n->n_in; i++) {
        sb_printf(b, "%s", i ? ", " : "");
        print_ref(b, g, num, n->in[i]);
    }
    sb_printf(b, ")");
    if (known) print_attrs(b, n->op, &n->attrs);
    sb_printf(b, "\n");
}

char *emg_print(const emg_graph *g) {
    if (!g) return em_seterr_null(EM_ERR_ARG, "emg_print: graph is NULL");
    int *num, *cval;
    if (!canonical_numbers(g, &num, &cval)) return em_seterr_null(EM_ERR_OOM, "emg_print: out of memory");
    sbuf b = {0};
    sb_printf(&b, "graph(");
    for (int k = 0; k < g->n_inputs; k++) {
        int v = g->inputs[k];
        sb_printf(&b, "%s", k ? ", " : "");
        print_ref(&b, g, num, v);
        sb_printf(&b, ": ");
        if (v >= 0 && v < g->n_vals) print_meta(&b, &g->vals[v].meta);
    }
    sb_printf(&b, ") {\n");
    for (int k = 0; k < g->n_consts; k++) {
        if (cval[k] < 0) continue;
        sb_printf(&b, "  %%%d: ", num[cval[k]]);
        print_meta(&b, &g->vals[cval[k]].meta);
        sb_printf(&b, " = const(#%d)\n", k);
    }
    for (int k = 0; k < g->n_nodes; k++) print_node(&b, g, num, &g->nodes[k]);
    sb_printf(&b, "  return (");
    for (int k = 0; k < g->n_outputs; k++) {
        sb_printf(&b, "%s", k ? ", " : "");
        print_ref(&b, g, num, g->outputs[k]);
    }
    sb_printf(&b, ")\n}\n");
    free(num);
    free(cval);
    if (b.oom) {
        free(b.s);
        return em_seterr_null(EM_ERR_OOM, "emg_print: out of memory");
    }
    return b.s;
}

/* ---- parsing ------------------------------------------------------------------------------- */
#define MAX_ABS_INT ((int64_t)1 << 62)
#define MAX_NUMEL ((int64_t)1 << 48)
#define MAX_NAME 64

typedef struct {
    const char *s; /* the next unread byte */
    int line;
    bool failed;
    emg_graph *g;
} parser;

static void skip_ws(parser *p) {
    for (;;) {
        char c = *p->s;
        if (c == '\n') p->line++;
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') p->s++;
        else return;
    }
}

/* "'abc'" for the next token (escaped, bounded), or "end of input" */
static const char *near(parser *p, char *buf, size_t size) {
    const unsigned char *s = (const unsigned char *)p->s;
    if (!*s) return "end of input";
    size_t n = 0;
    buf[n++] = '\'';
    for (int k = 0; s[k] && k < 16 && n + 6 < size; k++) {
        if (k > 0 && (isspace(s[k]) || strchr("(),[]{}:=", s[k]) || strchr("(),[]{}:=", s[k - 1]))) break;
        if (s[k] >= 32 && s[k] < 127 && s[k] != '\'') buf[n++] = (char)s[k];
        else n += (size_t)snprintf(buf + n, size - n, "\\x%02x", s[k]);
    }
    buf[n++] = '\'';
    buf[n] = 0;
    return buf;
}

static bool fail(parser *p, const char *fmt, ...) EM_PRINTF(2, 3);
static bool fail(parser *p, const char *fmt, ...) {
    if (p->failed) return false;
    p->failed = true;
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    em_seterr(EM_ERR_FORMAT, "emg_parse: line %d: %s", p->line, msg);
    return false;
}

/* "expected WHAT, got 'TOKEN'" */
static bool expected(parser *p, const char *what) {
    char buf[100];
    return fail(p, "expected %s, got %s", what, near(p, buf, sizeof buf));
}

static bool accept(parser *p, char c) {
    skip_ws(p);
    if (*p->s != c) return false;
    p->s++;
    return true;
}

static bool expect(parser *p, char c, const char *what) { return accept(p, c) || expected(p, what); }

/* an identifier [A-Za-z_][A-Za-z0-9_]* into buf; false (no error) when there is none */
static bool ident(parser *p, char *buf) {
    skip_ws(p);
    const char *s = p->s;
    if (!(isalpha((unsigned char)*s) || *s == '_')) return false;
    int n = 0;
    while (isalnum((unsigned char)s[n]) || s[n] == '_') {
        if (n == MAX_NAME - 1) return fail(p, "name too long (at most %d characters)", MAX_NAME - 1);
        buf[n] = s[n];
        n++;
    }
    buf[n] = 0;
    p->s += n;
    return true;
}

static bool expect_word(parser *p, const char *word) {
    char buf[MAX_NAME];
    skip_ws(p);
    const char *save = p->s;
    if (ident(p, buf) && strcmp(buf, word) == 0) return true;
    if (p->failed) return false;
    p->s = save;
    char what[80];
    snprintf(what, sizeof what, "'%s'", word);
    return expected(p, what);
}

/* a decimal integer with optional '-', |v| <= 2^62 */
static bool integer(parser *p, int64_t *out, const char *what) {
    skip_ws(p);
    const char *s = p->s;
    bool neg = *s == '-';
    if (neg) s++;
    if (!isdigit((unsigned char)*s)) return expected(p, what);
    int64_t v = 0;
    while (isdigit((unsigned char)*s)) {
        int dgt = *s - '0';
        if (v > (MAX_ABS_INT - dgt) / 10) return fail(p, "number too large in %s (at most 2^62 in magnitude)", what);
        v = v * 10 + dgt;
        s++;
    }
    p->s = s;
    *out = neg ? -v : v;
    return true;
}

static bool uinteger(parser *p, uint64_t *out, const char *what) {
    skip_ws(p);
    const char *s = p->s;
    if (!isdigit((unsigned char)*s)) return expected(p, what);
    uint64_t v = 0;
    while (isdigit((unsigned char)*s)) {
        unsigned dgt = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - dgt) / 10) return fail(p, "number too large in %s (at most 2^64 - 1)", what);
        v = v * 10 + dgt;
        s++;
    }
    p->s = s;
    *out = v;
    return true;
}

/* a double: digits with . e E + -, or inf, -inf, nan */
static bool real(parser *p, double *out) {
    skip_ws(p);
    char buf[MAX_NAME];
    int n = 0;
    const char *s = p->s;
    while (s[n] && (isalnum((unsigned char)s[n]) || s[n] == '.' || s[n] == '+' || s[n] == '-')) {
        if (n == MAX_NAME - 1) return fail(p, "number too long");
        buf[n] = s[n];
        n++;
    }
    buf[n] = 0;
    const char *t = buf[0] == '-' || buf[0] == '+' ? buf + 1 : buf;
    double sign = buf[0] == '-' ? -1.0 : 1.0;
    if (strcmp(t, "inf") == 0) *out = sign * INFINITY;
    else if (strcmp(t, "nan") == 0) *out = NAN;
    else {
        bool ok = n > 0 && (isdigit((unsigned char)*t) || *t == '.');
        for (int k = 0; ok && buf[k]; k++) ok = isdigit((unsigned char)buf[k]) || strchr(".eE+-", buf[k]);
        char *end = NULL;
        if (ok) *out = strtod(buf, &end);
        if (!ok || end != buf + n) return expected(p, "a number (digits, inf or nan)");
    }
    p->s += n;
    return true;
}

/* %N with N < 2^30 */
static bool value_name(parser *p, int *out, const char *what) {
    skip_ws(p);
    if (*p->s != '%' || !isdigit((unsigned char)p->s[1])) return expected(p, what);
    p->s++;
    int64_t v = 0;
    while (isdigit((unsigned char)*p->s)) {
        v = v * 10 + (*p->s - '0');
        if (v >= (1 << 30)) return fail(p, "value number too large in %s", what);
        p->s++;
    }
    *out = (int)v;
    return true;
}

/* a use: an existing value */
static bool value_use(parser *p, int *out) {
    if (!value_name(p, out, "a value (%N)")) return false;
    if (*out >= p->g->n_vals) return fail(p, "undefined value %%%d (only %%0 .. %%%d are defined here)", *out, p->g->n_vals - 1);
    return true;
}

/* a definition: must be the next number */
static bool value_def(parser *p, int want) {
    int v = -1;
    if (!value_name(p, &v, "a value definition (%N)")) return false;
    if (v < want) return fail(p, "redefinition of %%%d (values are numbered in definition order; the next is %%%d)", v, want);
    if (v > want) return fail(p, "expected %%%d (values are numbered in definition order), got %%%d", want, v);
    return true;
}

static bool dtype_name(parser *p, em_dtype *out) {
    char buf[MAX_NAME];
    skip_ws(p);
    const char *save = p->s;
    if (ident(p, buf))
        for (int d = 0; d < EM_NUM_DTYPES; d++)
            if (strcmp(buf, em_dtype_name((em_dtype)d)) == 0) {
                *out = (em_dtype)d;
                return true;
            }
    if (p->failed) return false;
    p->s = save;
    return expected(p, "a dtype (f32, f64, f16, bf16, i32, i64, u8, bool)");
}

/* dtype[d0, d1, ...] */
static bool type(parser *p, emo_meta *m) {
    memset(m, 0, sizeof *m);
    if (!dtype_name(p, &m->dtype) || !expect(p, '[', "'[' starting the shape")) return false;
    if (accept(p, ']')) return true;
    int64_t numel = 1;
    do {
        if (m->ndim == EM_MAX_DIMS) return fail(p, "more than %d dims in a shape", EM_MAX_DIMS);
        int64_t s;
        if (!integer(p, &s, "a size")) return false;
        if (s < 0) return fail(p, "negative size %lld in a shape", (long long)s);
        if (emb_mul_overflows(numel, s, &numel) || numel > MAX_NUMEL)
            return fail(p, "shape has too many elements (at most 2^48)");
        m->shape[m->ndim++] = s;
    } while (accept(p, ','));
    return expect(p, ']', "',' or ']' in the shape");
}

/* [n, n, ...] of at most max integers */
static bool int_list(parser *p, int64_t *dst, int max, int *n, const char *attr) {
    *n = 0;
    if (!expect(p, '[', "'[' starting the list")) return false;
    if (accept(p, ']')) return true;
    do {
        if (*n == max) return fail(p, "attribute %s has more than %d entries", attr, max);
        if (!integer(p, &dst[*n], "an integer")) return false;
        (*n)++;
    } while (accept(p, ','));
    return expect(p, ']', "',' or ']' in the list");
}

static bool float_list(parser *p, double *dst) {
    int n = 0;
    if (!expect(p, '[', "'[' starting the list")) return false;
    if (accept(p, ']')) return true;
    do {
        if (n == EMO_MAX_FLOATS) return fail(p, "attribute f has more than %d entries", EMO_MAX_FLOATS);
        if (!real(p, &dst[n++])) return false;
    } while (accept(p, ','));
    return expect(p, ']', "',' or ']' in the list");
}

/* name=value pairs after a node's inputs; stops before the next statement */
static bool attributes(parser *p, emo_attrs *a) {
    static const char *names[] = {"i", "j", "f", "dtype", "seed", "offset"};
    bool seen[6] = {0};
    for (;;) {
        char buf[MAX_NAME];
        const char *save = p->s;
        int save_line = p->line;
        if (!ident(p, buf)) {
            p->s = save; /* the error line of the node is its own, not the next one's */
            p->line = save_line;
            return !p->failed;
        }
        if (strcmp(buf, "return") == 0) {
            p->s = save;
            p->line = save_line;
            return true;
        }
        int k = 0;
        while (k < 6 && strcmp(buf, names[k]) != 0) k++;
        if (k == 6) {
            p->s -= strlen(buf);
            return expected(p, "an attribute (i, j, f, dtype, seed, offset), a new statement or 'return'");
        }
        if (seen[k]) return fail(p, "attribute %s given twice", names[k]);
        seen[k] = true;
        if (!expect(p, '=', "'=' after the attribute name")) return false;
        int n;
        bool ok = k == 0   ? int_list(p, a->i, EMO_MAX_INTS, &a->ni, "i")
                  : k == 1 ? int_list(p, a->j, 4, &n, "j")
                  : k == 2 ? float_list(p, a->f)
                  : k == 3 ? dtype_name(p, &a->dtype)
                  : k == 4 ? uinteger(p, &a->seed, "a seed")
                           : uinteger(p, &a->offset, "an offset");
        if (!ok) return false;
    }
}

/* a zero tensor of type m: contiguous when small, else a broadcast view of one zero */
static em_tensor_t *placeholder(const emo_meta *m) {
    if (emg_numel(m) <= 65536) return emt_new_zeros(m->dtype, m->shape, m->ndim);
    em_tensor_t *z = emt_new_zeros(m->dtype, NULL, 0);
    if (!z) return NULL;
    em_tensor_t *t = emt_expand_to(z, m->shape, m->ndim);
    em_release(z);
    return t;
}

static bool const_rhs(parser *p, const emo_meta *decl, int n_decl) {
    int64_t k;
    if (!expect(p, '(', "'(' after const") || !expect(p, '#', "'#' and a constant number") ||
        !integer(p, &k, "a constant number") || !expect(p, ')', "')' after the constant number"))
        return false;
    if (k != p->g->n_consts) return fail(p, "expected constant #%d (constants are numbered in order), got #%lld", p->g->n_consts, (long long)k);
    if (n_decl != 1) return fail(p, "a constant defines one value, %d are declared", n_decl);
    em_tensor_t *t = placeholder(&decl[0]);
    if (!t) return fail(p, "cannot make constant #%lld: %s", (long long)k, em_last_error());
    int v = emg_add_const(p->g, t);
    em_release(t);
    if (v < 0) return fail(p, "%s", em_last_error());
    return true;
}

static bool node_rhs(parser *p, const char *opname, const emo_meta *decl, int n_decl, int first) {
    int op = emo_lookup(opname);
    if (op < 0) return fail(p, "unknown op '%s'", opname);
    if (!expect(p, '(', "'(' after the op name")) return false;
    int *in = NULL, n_in = 0, cap = 0;
    bool ok = true;
    if (!accept(p, ')')) {
        do {
            if (n_in == EMG_MAX_IN) {
                ok = fail(p, "more than %d inputs", EMG_MAX_IN);
                break;
            }
            if (n_in == cap) {
                cap = cap ? 2 * cap : 8;
                int *q = realloc(in, (size_t)cap * sizeof *q);
                if (!q) {
                    ok = fail(p, "out of memory");
                    break;
                }
                in = q;
            }
            ok = value_use(p, &in[n_in++]);
        } while (ok && accept(p, ','));
        ok = ok && expect(p, ')', "',' or ')' after an input");
    }
    emo_attrs a = emo_attrs0();
    ok = ok && attributes(p, &a);
    int v = ok ? emg_add_node(p->g, (emo_op)op, &a, in, n_in) : -1;
    free(in);
    if (!ok) return false;
    if (v < 0) return fail(p, "%s", em_last_error());
    const emg_node *n = &p->g->nodes[p->g->n_nodes - 1];
    if (n->n_out != n_decl) return fail(p, "%d values declared but %s gives %d", n_decl, opname, n->n_out);
    for (int j = 0; j < n_decl; j++) {
        const emo_meta *got = &p->g->vals[v + j].meta;
        if (!emg_meta_equal(got, &decl[j])) {
            char b1[EMG_TYPE_BUF], b2[EMG_TYPE_BUF];
            return fail(p, "%%%d is declared %s but %s gives %s", first + j, emg_type_str(b1, &decl[j]), opname,
                        emg_type_str(b2, got));
        }
    }
    return true;
}

/* %a: T, %b: T ... = const(#k) | op(%x, ...) attrs */
static bool statement(parser *p) {
    emo_meta decl[EMO_MAX_OUT];
    int n_decl = 0, first = p->g->n_vals;
    do {
        if (n_decl == EMO_MAX_OUT) return fail(p, "more than %d values defined by one statement", EMO_MAX_OUT);
        if (!value_def(p, first + n_decl) || !expect(p, ':', "':' and a type") || !type(p, &decl[n_decl])) return false;
        n_decl++;
    } while (accept(p, ','));
    if (!expect(p, '=', "'=' or ',' after a definition")) return false;
    char name[MAX_NAME];
    if (!ident(p, name)) return p->failed ? false : expected(p, "an op name or const");
    if (strcmp(name, "const") == 0) return const_rhs(p, decl, n_decl);
    return node_rhs(p, name, decl, n_decl, first);
}

static bool header(parser *p) {
    if (!expect_word(p, "graph") || !expect(p, '(', "'(' after graph")) return false;
    if (accept(p, ')')) return expect(p, '{', "'{' after the inputs");
    do {
        emo_meta m;
        if (!value_def(p, p->g->n_vals) || !expect(p, ':', "':' and a type") || !type(p, &m)) return false;
        if (emg_add_input(p->g, &m) < 0) return fail(p, "%s", em_last_error());
    } while (accept(p, ','));
    return expect(p, ')', "',' or ')' after an input") && expect(p, '{', "'{' after the inputs");
}

static bool returns(parser *p) {
    if (!expect(p, '(', "'(' after return")) return false;
    int *out = NULL, n = 0, cap = 0;
    bool ok = true;
    if (!accept(p, ')')) {
        do {
            if (n == cap) {
                cap = cap ? 2 * cap : 8;
                int *q = cap <= (1 << 24) ? realloc(out, (size_t)cap * sizeof *q) : NULL;
                if (!q) {
                    ok = fail(p, "too many outputs");
                    break;
                }
                out = q;
            }
            ok = value_use(p, &out[n++]);
        } while (ok && accept(p, ','));
        ok = ok && expect(p, ')', "',' or ')' after an output");
    }
    if (ok && emg_set_outputs(p->g, out, n) != EM_OK) ok = fail(p, "%s", em_last_error());
    free(out);
    return ok && expect(p, '}', "'}' closing the graph");
}

emg_graph *emg_parse(const char *text) {
    if (!text) return em_seterr_null(EM_ERR_ARG, "emg_parse: text is NULL");
    parser p = {text, 1, false, emg_new()};
    if (!p.g) return NULL;
    bool ok = header(&p);
    while (ok) {
        skip_ws(&p);
        char name[MAX_NAME];
        const char *save = p.s;
        if (*p.s == '%') {
            ok = statement(&p);
        } else if (ident(&p, name) && strcmp(name, "return") == 0) {
            ok = returns(&p);
            break;
        } else {
            if (!p.failed) {
                p.s = save;
                expected(&p, "a definition (%N: type = ...) or 'return'");
            }
            ok = false;
        }
    }
    skip_ws(&p);
    if (ok && *p.s) ok = expected(&p, "end of input after '}'");
    if (!ok) {
        emg_free(p.g);
        return NULL;
    }
    return p.g;
}
