/* dynamic.c - dynamic shapes: one generated program for every size of the dims that change.
 *
 * The graph IR stays concrete: every trace has plain sizes. What becomes symbolic is the
 * generated C. compile.c traces the function at the new sizes and at one or two probe sizes and
 * generates the source of each (no C compiler); this file compares the sources token by token.
 * They must be the same program except for numeric literals (loop bounds, strides, arena
 * offsets, GEMM sizes, the count of a mean): a literal that differs between the samples becomes a
 * parameter of a generalised source, the "template", which is compiled once. Its kernels and
 * ember_run read the parameters from struct ember_rt_dyn (compiler.h) into local constants of
 * exactly the literal's C type (int, long, float or double), so the template at one size is the
 * specialised source at that size with literals spelled as constants: same types, same values.
 * Soundness does not rest on fitting the literals to formulas: for every new size compile.c
 * generates the specialised source again and emcap_template_match checks that it is the template
 * with some parameter values, reading those values off the source itself (arena offsets rounded
 * to 64 bytes, chunk counts and other non-polynomial sizes are fine). A source that differs
 * anywhere else (a size-dependent choice: a parallel loop above a work threshold, a different
 * lowering) does not match, and that size gets its own static specialization.
 *
 * The lexer is C's, simplified to what codegen prints: comments are dropped (they quote shapes),
 * preprocessor lines are single fixed tokens (a pragma's numbers never become parameters), a
 * minus sign right before a number in a unary position belongs to the literal (so "+ -3" and
 * "+ 4" are the same structure), and pp-numbers are integers (decimal, no suffix), floating
 * literals (decimal, optional f) or fixed tokens (hex, suffixed).
 *
 * em_mark_dynamic keeps its marks in a small table keyed by the tensor's serial number.
 */
#include "capture.h"

#include "../compiler/compiler.h"

#include <ctype.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>

enum { TK_FIXED, TK_INT, TK_FLT };

typedef struct {
    uint8_t kind;
    uint8_t cls;  /* TK_INT: 0 int, 1 long; TK_FLT: 0 double, 1 float; TK_FIXED: 1 + a generated name's prefix */
    int depth;    /* braces around it ('{' counts outside itself) */
    size_t at, len;
    int64_t i;
    double f;
} tok;

typedef struct {
    tok *v;
    int n, cap;
    bool oom;
} toks;

static void push(toks *t, tok k) {
    if (t->oom) return;
    if (t->n == t->cap) {
        int cap = t->cap ? t->cap * 2 : 4096;
        tok *v = realloc(t->v, sizeof *v * (size_t)cap);
        if (!v) {
            t->oom = true;
            return;
        }
        t->v = v;
        t->cap = cap;
    }
    t->v[t->n++] = k;
}

static bool ident_start(char c) { return isalpha((unsigned char)c) || c == '_'; }
static bool ident_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

/* a '-' after this token is a unary minus */
static bool unary_after(const char *s, const toks *t) {
    if (t->n == 0) return true;
    const tok *p = &t->v[t->n - 1];
    if (p->kind != TK_FIXED || p->len != 1) return false;
    return strchr("(,=+-*/%<>?:[{;&|!~^", s[p->at]) != NULL;
}

/* classifies the pp-number s[a, b) (sign: a leading '-' at a - 1 belongs to it) */
static tok number(const char *s, size_t st, size_t a, size_t b, bool neg) {
    tok k = {TK_FIXED, 0, 0, st, b - st, 0, 0};
    size_t n = b - a;
    bool digits = true;
    for (size_t i = a; i < b; i++) digits &= isdigit((unsigned char)s[i]) != 0;
    if (digits && (n == 1 || s[a] != '0') && n <= 18) {
        int64_t v = 0;
        for (size_t i = a; i < b; i++) v = v * 10 + (s[i] - '0');
        k.kind = TK_INT;
        k.cls = v > INT_MAX;
        k.i = neg ? -v : v;
        return k;
    }
    /* decimal floating: digits, '.', an exponent, an optional f */
    bool f32 = s[b - 1] == 'f' || s[b - 1] == 'F', seen_pt = false, seen_e = false, ok = n < 64;
    size_t e = f32 ? b - 1 : b;
    for (size_t i = a; ok && i < e; i++) {
        char c = s[i];
        if (isdigit((unsigned char)c)) continue;
        if (c == '.' && !seen_pt && !seen_e) seen_pt = true;
        else if ((c == 'e' || c == 'E') && !seen_e && i + 1 < e) seen_e = true;
        else if ((c == '+' || c == '-') && i > a && (s[i - 1] == 'e' || s[i - 1] == 'E') && i + 1 < e) continue;
        else ok = false;
    }
    if (ok && (seen_pt || seen_e)) {
        char buf[80];
        snprintf(buf, sizeof buf, "%.*s", (int)(e - a), s + a);
        k.kind = TK_FLT;
        k.cls = f32;
        k.f = f32 ? (double)strtof(buf, NULL) : strtod(buf, NULL); /* what the C compiler makes of it */
        if (neg) k.f = -k.f;
    }
    return k;
}

/* the names codegen numbers after expression nodes and buffers (v12, rc556, buf50, acc3, ...):
   they may be numbered differently at another size, so sources are compared up to a consistent
   renaming of them (an alpha-renaming: the same program). No prelude name has these forms. */
static const char *const gen_prefix[] = {"v", "rc", "buf", "acc", "arg", "nan", "oacc", "onan", "part", "pnan", "red"};
#define N_GEN_PREFIX ((int)(sizeof gen_prefix / sizeof gen_prefix[0]))

static void gen_name(const char *s, tok *k) {
    size_t p = 0;
    while (p < k->len && !isdigit((unsigned char)s[k->at + p])) p++;
    if (p == 0 || p == k->len || k->len - p > 12 || (s[k->at + p] == '0' && k->len - p > 1)) return;
    for (int j = 0; j < N_GEN_PREFIX; j++)
        if (strlen(gen_prefix[j]) == p && !memcmp(s + k->at, gen_prefix[j], p)) {
            k->cls = (uint8_t)(1 + j);
            k->i = strtoll(s + k->at + p, NULL, 10);
            return;
        }
}

static void lex(const char *s, toks *t) {
    size_t i = 0;
    int depth = 0;
    bool line_start = true;
    while (s[i] && !t->oom) {
        char c = s[i];
        if (c == '\n') {
            line_start = true;
            i++;
            continue;
        }
        if (isspace((unsigned char)c)) {
            i++;
            continue;
        }
        if (c == '/' && s[i + 1] == '*') {
            const char *e = strstr(s + i + 2, "*/");
            i = e ? (size_t)(e - s) + 2 : strlen(s);
            continue;
        }
        if (c == '/' && s[i + 1] == '/') {
            while (s[i] && s[i] != '\n') i++;
            continue;
        }
        size_t st = i;
        if (c == '#' && line_start) {
            while (s[i] && !(s[i] == '\n' && s[i - 1] != '\\')) i++;
            push(t, (tok){TK_FIXED, 0, depth, st, i - st, 0, 0});
            continue;
        }
        line_start = false;
        if (c == '"' || c == '\'') {
            for (i++; s[i] && s[i] != c; i++)
                if (s[i] == '\\' && s[i + 1]) i++;
            if (s[i]) i++;
            push(t, (tok){TK_FIXED, 0, depth, st, i - st, 0, 0});
            continue;
        }
        if (ident_start(c)) {
            while (ident_char(s[i])) i++;
            tok k = {TK_FIXED, 0, depth, st, i - st, 0, 0};
            gen_name(s, &k);
            push(t, k);
            continue;
        }
        bool neg = false;
        if (c == '-' && (isdigit((unsigned char)s[i + 1]) || (s[i + 1] == '.' && isdigit((unsigned char)s[i + 2]))) &&
            unary_after(s, t)) {
            neg = true;
            c = s[++i];
        }
        if (isdigit((unsigned char)c) || (c == '.' && isdigit((unsigned char)s[i + 1]))) {
            size_t a = i;
            while (ident_char(s[i]) || s[i] == '.' ||
                   ((s[i] == '+' || s[i] == '-') && strchr("eEpP", s[i - 1]) && i > a))
                i++;
            tok k = number(s, st, a, i, neg);
            k.depth = depth;
            push(t, k);
            continue;
        }
        if (c == '}') depth--;
        push(t, (tok){TK_FIXED, 0, depth, st, 1, 0, 0});
        if (c == '{') depth++;
        i++;
    }
}

/* the same structure: kind, class, and the text of fixed tokens (a generated name: its prefix) */
static bool same_shape(const char *a, const tok *x, const char *b, const tok *y) {
    if (x->kind != y->kind || x->cls != y->cls) return false;
    return x->kind != TK_FIXED || x->cls || (x->len == y->len && !memcmp(a + x->at, b + y->at, x->len));
}

/* a consistent renaming of generated names, both ways: key (prefix, number) -> number */
typedef struct {
    int64_t *key, *val;
    int cap;
} imap;

static bool imap_init(imap *m, int n) {
    m->cap = 64;
    while (m->cap < 2 * n + 64) m->cap *= 2;
    m->key = malloc(sizeof *m->key * (size_t)m->cap);
    m->val = malloc(sizeof *m->val * (size_t)m->cap);
    if (!m->key || !m->val) return false;
    for (int i = 0; i < m->cap; i++) m->key[i] = -1;
    return true;
}
static void imap_free(imap *m) {
    free(m->key);
    free(m->val);
}
/* false when key is mapped to another value already */
static bool imap_bind(imap *m, int64_t key, int64_t val) {
    uint64_t h = (uint64_t)key * 0x9E3779B97F4A7C15ull;
    for (int i = (int)(h >> 40) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (m->key[i] == key) return m->val[i] == val;
        if (m->key[i] < 0) {
            m->key[i] = key;
            m->val[i] = val;
            return true;
        }
    }
}

/* the first token where o (of text b) is not the reference x (of text a) up to a renaming of
   generated names and the values of literals; -1 when none (and n equal) */
static int structure_diff(const char *a, const toks *x, const char *b, const toks *o) {
    if (x->n != o->n) return x->n < o->n ? x->n : o->n;
    imap fw = {0}, bw = {0};
    int bad = -1;
    if (!imap_init(&fw, x->n) || !imap_init(&bw, x->n)) bad = 0;
    for (int i = 0; bad < 0 && i < x->n; i++) {
        const tok *p = &x->v[i], *q = &o->v[i];
        if (!same_shape(a, p, b, q)) bad = i;
        else if (p->kind == TK_FIXED && p->cls) {
            int64_t kp = ((int64_t)p->cls << 48) | p->i, kq = ((int64_t)q->cls << 48) | q->i;
            if (!imap_bind(&fw, kp, kq) || !imap_bind(&bw, kq, kp)) bad = i;
        }
    }
    imap_free(&fw);
    imap_free(&bw);
    return bad;
}

static bool same_value(const tok *x, const tok *y) {
    if (x->kind == TK_INT) return x->i == y->i;
    if (x->kind == TK_FLT) return !memcmp(&x->f, &y->f, sizeof x->f);
    return true;
}

static int line_of(const char *s, size_t at) {
    int n = 1;
    for (size_t i = 0; i < at && s[i]; i++) n += s[i] == '\n';
    return n;
}

struct emcap_template {
    char *ref;   /* the reference source */
    toks t;      /* its tokens */
    int *param;  /* per token: parameter index (in s[] or f[] by its kind), -1 for fixed ones */
    int ns, nf;
    char *src;   /* the generalised source */
};

void emcap_template_free(emcap_template *t) {
    if (!t) return;
    free(t->ref);
    free(t->t.v);
    free(t->param);
    free(t->src);
    free(t);
}

int emcap_template_ns(const emcap_template *t) { return t ? t->ns : 0; }
int emcap_template_nf(const emcap_template *t) { return t ? t->nf : 0; }
const char *emcap_template_source(const emcap_template *t) { return t ? t->src : NULL; }

typedef struct {
    char *s;
    size_t n, cap;
    bool oom;
} buf;

static void put(buf *b, const char *p, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 65536;
        while (cap < b->n + n + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->oom = true;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->n, p, n);
    b->n += n;
    b->s[b->n] = 0;
}
static void puts_(buf *b, const char *p) { put(b, p, strlen(p)); }

/* the text between tokens without its comments */
static void put_gap(buf *b, const char *s, size_t a, size_t e) {
    while (a < e) {
        if (s[a] == '/' && a + 1 < e && s[a + 1] == '*') {
            const char *c = strstr(s + a + 2, "*/");
            a = c ? (size_t)(c - s) + 2 : e;
            put(b, " ", 1);
        } else if (s[a] == '/' && a + 1 < e && s[a + 1] == '/') {
            while (a < e && s[a] != '\n') a++;
        } else {
            put(b, s + a, 1);
            a++;
        }
    }
}

static const char *ctype_of(const tok *k) {
    return k->kind == TK_INT ? (k->cls ? "long" : "int") : (k->cls ? "float" : "double");
}

/* writes the generalised source; false (why) when a parameter sits outside a function that has
   the runtime table `rt` in scope */
static bool emit(emcap_template *T, char *why, size_t nwhy) {
    const char *s = T->ref;
    const tok *v = T->t.v;
    int n = T->t.n;
    /* per token: the index of the depth-0 '{' whose body holds it, and each function's header */
    int *body = malloc(sizeof *body * (size_t)(n + 1)), *head = malloc(sizeof *head * (size_t)(n + 1));
    bool *uses = calloc((size_t)(n + 1), 1);
    buf b = {0};
    bool ok = body && head && uses;
    int open = -1, hstart = 0;
    for (int i = 0; ok && i < n; i++) {
        const tok *k = &v[i];
        body[i] = k->depth > 0 ? open : -1;
        if (k->depth == 0 && k->kind == TK_FIXED && k->len == 1 && s[k->at] == '{') {
            open = i;
            head[i] = hstart;
        }
        if (k->depth == 0 && k->kind == TK_FIXED && (s[k->at] == '#' || (k->len == 1 && strchr(";}", s[k->at]))))
            hstart = i + 1;
        if (T->param[i] < 0) continue;
        if (body[i] < 0) {
            snprintf(why, nwhy, "a size-dependent literal at line %d is outside any function", line_of(s, k->at));
            ok = false;
            break;
        }
        int o = body[i];
        const char *h = s + v[head[o]].at, *he = s + v[o].at;
        const char *rt = strstr(h, "const struct ember_rt *rt");
        if (!rt || rt > he) {
            snprintf(why, nwhy, "a size-dependent literal at line %d is in a function without the runtime table",
                     line_of(s, k->at));
            ok = false;
            break;
        }
        uses[o] = true;
    }
    int first = -1;
    for (int i = 0; ok && i < n && first < 0; i++)
        if (uses[i]) first = head[i];
    if (ok) {
        char hdr[512];
        snprintf(hdr, sizeof hdr, "/* Generated by Ember's compiler and generalised over sizes by src/capture/dynamic.c:\n"
                 " * %d integer and %d floating-point literals that change with the sizes are read from\n"
                 " * struct ember_rt_dyn (the specialised sources are this file with those values). */\n",
                 T->ns, T->nf);
        puts_(&b, hdr);
    }
    size_t at = 0;
    for (int i = 0; ok && i < n; i++) {
        const tok *k = &v[i];
        put_gap(&b, s, at, k->at);
        if (i == first)
            puts_(&b, "struct ember_rt_dyn {\n    struct ember_rt rt;\n    const int64_t *s;\n    const double *f;\n};\n\n");
        char nm[48];
        if (T->param[i] >= 0) {
            snprintf(nm, sizeof nm, "dyn_%c%d", k->kind == TK_INT ? 's' : 'f', T->param[i]);
            puts_(&b, nm);
        } else {
            put(&b, s + k->at, k->len);
        }
        at = k->at + k->len;
        if (!uses[i]) continue;
        /* a function body opens: its parameters as constants of the literals' types */
        unsigned char *done = calloc((size_t)(T->ns + T->nf + 1), 1);
        if (!done) {
            b.oom = true;
            break;
        }
        for (int j = i + 1; j < n && (v[j].depth > 0); j++) {
            if (body[j] != i || T->param[j] < 0) continue;
            int key = v[j].kind == TK_INT ? T->param[j] : T->ns + T->param[j];
            if (done[key]) continue;
            done[key] = 1;
            char d[160];
            snprintf(d, sizeof d, "\n    const %s dyn_%c%d = (%s)((const struct ember_rt_dyn *)rt)->%c[%d];",
                     ctype_of(&v[j]), v[j].kind == TK_INT ? 's' : 'f', T->param[j], ctype_of(&v[j]),
                     v[j].kind == TK_INT ? 's' : 'f', T->param[j]);
            puts_(&b, d);
        }
        free(done);
    }
    if (ok) {
        put_gap(&b, s, at, strlen(s));
        put(&b, "\n", 1);
    }
    free(body);
    free(head);
    free(uses);
    if (ok && b.oom) {
        snprintf(why, nwhy, "out of memory");
        ok = false;
    }
    if (!ok) free(b.s);
    else T->src = b.s;
    return ok;
}

emcap_template *emcap_template_new(const char *const *src, int n, bool *used, char *why, size_t nwhy) {
    emcap_template *T = calloc(1, sizeof *T);
    if (!T || !(T->ref = strdup(src[0]))) {
        free(T);
        snprintf(why, nwhy, "out of memory");
        return NULL;
    }
    lex(T->ref, &T->t);
    T->param = malloc(sizeof *T->param * (size_t)(T->t.n + 1));
    bool *vary = calloc((size_t)T->t.n + 1, 1);
    if (T->t.oom || !T->param || !vary) {
        free(vary);
        emcap_template_free(T);
        snprintf(why, nwhy, "out of memory");
        return NULL;
    }
    int n_used = 0;
    why[0] = 0;
    for (int j = 1; j < n; j++) {
        used[j] = false;
        toks o = {0};
        lex(src[j], &o);
        int bad = o.oom ? 0 : structure_diff(T->ref, &T->t, src[j], &o);
        bool same = bad < 0;
        if (same) {
            used[j] = true;
            n_used++;
            for (int i = 0; i < o.n; i++)
                if (!same_value(&T->t.v[i], &o.v[i])) vary[i] = true;
        } else if (!why[0]) {
            if (bad < o.n && bad < T->t.n)
                snprintf(why, nwhy, "sample %d differs in structure at line %d (`%.*s` vs `%.*s`)", j,
                         line_of(src[j], o.v[bad].at), (int)(o.v[bad].len < 40 ? o.v[bad].len : 40), src[j] + o.v[bad].at,
                         (int)(T->t.v[bad].len < 40 ? T->t.v[bad].len : 40), T->ref + T->t.v[bad].at);
            else snprintf(why, nwhy, "sample %d has %d tokens, the reference %d", j, o.n, T->t.n);
        }
        free(o.v);
    }
    used[0] = true;
    /* arena offsets are parameters whatever the samples say: the memory plan may place a buffer
       elsewhere at another size, and a pointer set once per run costs nothing */
    for (int i = 2; i < T->t.n; i++) {
        const tok *p = &T->t.v[i - 2], *q = &T->t.v[i - 1];
        if (T->t.v[i].kind == TK_INT && p->len == 5 && !memcmp(T->ref + p->at, "arena", 5) && q->len == 1 &&
            T->ref[q->at] == '+')
            vary[i] = true;
    }
    for (int i = 0; i < T->t.n; i++)
        T->param[i] = !vary[i] ? -1 : T->t.v[i].kind == TK_INT ? T->ns++ : T->nf++;
    free(vary);
    if (n_used == 0) {
        if (!why[0]) snprintf(why, nwhy, "no sample to compare with");
        emcap_template_free(T);
        return NULL;
    }
    if (!emit(T, why, nwhy)) {
        emcap_template_free(T);
        return NULL;
    }
    return T;
}

bool emcap_template_match(const emcap_template *T, const char *src, int64_t *s, double *f, char *why, size_t nwhy) {
    toks o = {0};
    lex(src, &o);
    bool ok = !o.oom;
    if (!ok) snprintf(why, nwhy, "out of memory");
    if (ok && o.n != T->t.n) {
        snprintf(why, nwhy, "the source has %d tokens, the template %d", o.n, T->t.n);
        ok = false;
    }
    int bad = ok ? structure_diff(T->ref, &T->t, src, &o) : -1;
    for (int i = 0; ok && i < o.n; i++) {
        const tok *x = &T->t.v[i], *y = &o.v[i];
        bool shape = i != bad, value = T->param[i] >= 0 || same_value(x, y);
        if (!shape || !value) {
            snprintf(why, nwhy, "the source differs from the template at line %d: `%.*s` where the template has `%.*s`%s",
                     line_of(src, y->at), (int)(y->len < 40 ? y->len : 40), src + y->at, (int)(x->len < 40 ? x->len : 40),
                     T->ref + x->at, shape ? " (a literal the samples had equal)" : "");
            ok = false;
            break;
        }
        if (T->param[i] < 0) continue;
        if (x->kind == TK_INT) s[T->param[i]] = y->i;
        else f[T->param[i]] = y->f;
    }
    free(o.v);
    return ok;
}

/* ---- em_mark_dynamic ---------------------------------------------------------------------------- */
#define N_MARKS 1024
static pthread_mutex_t mark_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    uint64_t serial;
    uint32_t dims;
} marks[N_MARKS];
static int n_marks, next_mark;

em_status em_mark_dynamic(em_tensor_t *t, int dim) {
    if (!emt_check(t, "em_mark_dynamic", "t")) return em_last_status();
    if (dim < -t->ndim || dim >= t->ndim)
        return em_seterr(EM_ERR_ARG, "em_mark_dynamic: dim %d is out of range for a tensor with %d dims (use 0..%d, or "
                         "negative from the end)", dim, t->ndim, t->ndim - 1);
    if (dim < 0) dim += t->ndim;
    pthread_mutex_lock(&mark_lock);
    int k = 0;
    while (k < n_marks && marks[k].serial != t->serial) k++;
    if (k == n_marks) {
        if (n_marks < N_MARKS) n_marks++;
        else k = next_mark, next_mark = (next_mark + 1) % N_MARKS; /* the oldest mark goes */
        marks[k].serial = t->serial;
        marks[k].dims = 0;
    }
    marks[k].dims |= 1u << dim;
    pthread_mutex_unlock(&mark_lock);
    return EM_OK;
}

uint32_t emcap_marked_dims(const em_tensor_t *t) {
    uint32_t d = 0;
    pthread_mutex_lock(&mark_lock);
    for (int k = 0; k < n_marks; k++)
        if (marks[k].serial == t->serial) d = marks[k].dims;
    pthread_mutex_unlock(&mark_lock);
    return d;
}
