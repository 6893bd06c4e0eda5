/* json.c - a strict JSON reader for the headers and vocabularies Ember loads (safetensors
 * headers, GPT-2's encoder.json).
 *
 * It builds a flat tree: every value is a node in one array, children are chained through
 * `first`/`next` indices, and every string (keys included) is decoded once into one arena, so a
 * 50,000-entry vocabulary costs two allocations that grow geometrically. It accepts exactly
 * RFC 8259 (no comments, no trailing commas, no NaN), checks that strings are valid UTF-8 with
 * well-formed \u escapes (surrogates must pair up), and limits nesting to EMJ_MAX_DEPTH so a
 * hostile file cannot exhaust the C stack. Numbers are classified, not converted: a plain
 * integer literal that fits int64 gets is_int, anything else is a number no loader accepts.
 */
#include "io.h"

typedef struct {
    const char *s;
    size_t n, pos;
    emj_doc *doc;
    const char *what;
    int depth;
} parser;

static em_status fail(parser *p, const char *msg) {
    return em_seterr(EM_ERR_FORMAT, "%s: JSON error at byte %zu: %s", p->what, p->pos, msg);
}

static void skip_ws(parser *p) {
    while (p->pos < p->n) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static int64_t new_node(parser *p, emj_type t) {
    emj_doc *d = p->doc;
    if (d->n >= d->max_nodes) return -2;
    if (d->n == d->cap) {
        int64_t cap = d->cap ? d->cap * 2 : 64;
        emj_node *nodes = realloc(d->nodes, (size_t)cap * sizeof *nodes);
        if (!nodes) return -1;
        d->nodes = nodes;
        d->cap = cap;
    }
    emj_node *x = &d->nodes[d->n];
    memset(x, 0, sizeof *x);
    x->type = t;
    x->first = x->next = -1;
    return d->n++;
}

static bool str_put(emj_doc *d, const void *src, size_t n) {
    if (d->slen + n + 1 > d->scap) {
        size_t cap = d->scap ? d->scap : 1024;
        while (cap < d->slen + n + 1) cap *= 2;
        char *q = realloc(d->strs, cap);
        if (!q) return false;
        d->strs = q;
        d->scap = cap;
    }
    memcpy(d->strs + d->slen, src, n);
    d->slen += n;
    return true;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool hex4(parser *p, uint32_t *out) {
    if (p->n - p->pos < 4) return false;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p->s[p->pos + (size_t)i]);
        if (h < 0) return false;
        v = v * 16 + (uint32_t)h;
    }
    p->pos += 4;
    *out = v;
    return true;
}

static size_t utf8_put(uint32_t cp, uint8_t *b) {
    if (cp < 0x80) { b[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) { b[0] = (uint8_t)(0xC0 | cp >> 6); b[1] = (uint8_t)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        b[0] = (uint8_t)(0xE0 | cp >> 12); b[1] = (uint8_t)(0x80 | (cp >> 6 & 63)); b[2] = (uint8_t)(0x80 | (cp & 63));
        return 3;
    }
    b[0] = (uint8_t)(0xF0 | cp >> 18); b[1] = (uint8_t)(0x80 | (cp >> 12 & 63));
    b[2] = (uint8_t)(0x80 | (cp >> 6 & 63)); b[3] = (uint8_t)(0x80 | (cp & 63));
    return 4;
}

/* a string at p->pos (the opening quote): decoded into the arena at *off, *len bytes */
static em_status parse_string(parser *p, size_t *off, size_t *len) {
    emj_doc *d = p->doc;
    p->pos++; /* the quote */
    *off = d->slen;
    for (;;) {
        size_t run = p->pos; /* copy plain bytes in runs */
        while (p->pos < p->n) {
            unsigned char c = (unsigned char)p->s[p->pos];
            if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) break;
            p->pos++;
        }
        if (p->pos > run && !str_put(d, p->s + run, p->pos - run)) return em_seterr(EM_ERR_OOM, "%s: out of memory", p->what);
        if (p->pos >= p->n) return fail(p, "unterminated string");
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c < 0x20) return fail(p, "control character in a string (escape it)");
        if (c >= 0x80) {
            uint32_t cp;
            int k = emio_utf8_next((const uint8_t *)p->s + p->pos, p->n - p->pos, &cp);
            if (!k) return fail(p, "invalid UTF-8 in a string");
            if (!str_put(d, p->s + p->pos, (size_t)k)) return em_seterr(EM_ERR_OOM, "%s: out of memory", p->what);
            p->pos += (size_t)k;
            continue;
        }
        /* an escape */
        p->pos++;
        if (p->pos >= p->n) return fail(p, "unterminated escape");
        char e = p->s[p->pos++];
        char one = 0;
        switch (e) {
        case '"': one = '"'; break;
        case '\\': one = '\\'; break;
        case '/': one = '/'; break;
        case 'b': one = '\b'; break;
        case 'f': one = '\f'; break;
        case 'n': one = '\n'; break;
        case 'r': one = '\r'; break;
        case 't': one = '\t'; break;
        case 'u': {
            uint32_t cp, lo;
            if (!hex4(p, &cp)) return fail(p, "bad \\u escape (four hex digits expected)");
            if (cp >= 0xDC00 && cp <= 0xDFFF) return fail(p, "lone low surrogate in a \\u escape");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (p->n - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
                    return fail(p, "high surrogate not followed by a low surrogate");
                p->pos += 2;
                if (!hex4(p, &lo) || lo < 0xDC00 || lo > 0xDFFF) return fail(p, "high surrogate not followed by a low surrogate");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            uint8_t b[4];
            size_t k = utf8_put(cp, b);
            if (!str_put(d, b, k)) return em_seterr(EM_ERR_OOM, "%s: out of memory", p->what);
            continue;
        }
        default: p->pos--; return fail(p, "unknown escape");
        }
        if (!str_put(d, &one, 1)) return em_seterr(EM_ERR_OOM, "%s: out of memory", p->what);
    }
    *len = d->slen - *off;
    if (!str_put(d, "", 1)) return em_seterr(EM_ERR_OOM, "%s: out of memory", p->what);
    return EM_OK;
}

static em_status parse_number(parser *p, int64_t node) {
    bool neg = false, is_int = true, overflow = false;
    uint64_t v = 0;
    if (p->s[p->pos] == '-') { neg = true; p->pos++; }
    if (p->pos >= p->n || p->s[p->pos] < '0' || p->s[p->pos] > '9') return fail(p, "bad number");
    if (p->s[p->pos] == '0') {
        p->pos++;
    } else {
        while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
            uint64_t dgt = (uint64_t)(p->s[p->pos] - '0');
            if (v > (UINT64_MAX - dgt) / 10) overflow = true;
            else v = v * 10 + dgt;
            p->pos++;
        }
    }
    if (p->pos < p->n && p->s[p->pos] == '.') {
        is_int = false;
        p->pos++;
        if (p->pos >= p->n || p->s[p->pos] < '0' || p->s[p->pos] > '9') return fail(p, "bad number (digits expected after '.')");
        while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
    }
    if (p->pos < p->n && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        is_int = false;
        p->pos++;
        if (p->pos < p->n && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
        if (p->pos >= p->n || p->s[p->pos] < '0' || p->s[p->pos] > '9') return fail(p, "bad number (digits expected in the exponent)");
        while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
    }
    emj_node *x = &p->doc->nodes[node];
    if (is_int && !overflow && v <= (neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX)) {
        x->is_int = true;
        x->i = neg ? (int64_t)(0 - v) : (int64_t)v;
    }
    return EM_OK;
}

static bool literal(parser *p, const char *word) {
    size_t k = strlen(word);
    if (p->n - p->pos < k || memcmp(p->s + p->pos, word, k) != 0) return false;
    p->pos += k;
    return true;
}

static em_status parse_value(parser *p, int64_t *out);

/* an array or object at p->pos; children are linked in order */
static em_status parse_container(parser *p, int64_t node, bool obj) {
    if (++p->depth > EMJ_MAX_DEPTH) return fail(p, "nesting deeper than 64 levels");
    p->pos++;
    skip_ws(p);
    char close = obj ? '}' : ']';
    if (p->pos < p->n && p->s[p->pos] == close) {
        p->pos++;
        p->depth--;
        return EM_OK;
    }
    int64_t last = -1;
    for (;;) {
        size_t koff = 0, klen = 0;
        em_status s;
        if (obj) {
            skip_ws(p);
            if (p->pos >= p->n || p->s[p->pos] != '"') return fail(p, "object key (a string) expected");
            if ((s = parse_string(p, &koff, &klen))) return s;
            skip_ws(p);
            if (p->pos >= p->n || p->s[p->pos] != ':') return fail(p, "':' expected after an object key");
            p->pos++;
        }
        int64_t child;
        if ((s = parse_value(p, &child))) return s;
        emj_node *c = &p->doc->nodes[child];
        c->key = koff;
        c->klen = klen;
        if (last < 0) p->doc->nodes[node].first = child;
        else p->doc->nodes[last].next = child;
        last = child;
        p->doc->nodes[node].n++;
        skip_ws(p);
        if (p->pos >= p->n) return fail(p, obj ? "unterminated object" : "unterminated array");
        char c2 = p->s[p->pos++];
        if (c2 == close) break;
        if (c2 != ',') {
            p->pos--;
            return fail(p, obj ? "',' or '}' expected" : "',' or ']' expected");
        }
    }
    p->depth--;
    return EM_OK;
}

static em_status parse_value(parser *p, int64_t *out) {
    skip_ws(p);
    if (p->pos >= p->n) return fail(p, "value expected, found the end");
    char c = p->s[p->pos];
    emj_type t = c == '{' ? EMJ_OBJ : c == '[' ? EMJ_ARR : c == '"' ? EMJ_STR : c == 't' ? EMJ_TRUE
               : c == 'f' ? EMJ_FALSE : c == 'n' ? EMJ_NULL : EMJ_NUM;
    int64_t node = new_node(p, t);
    if (node == -2) return fail(p, "too many values");
    if (node < 0) return em_seterr(EM_ERR_OOM, "%s: out of memory", p->what);
    *out = node;
    switch (t) {
    case EMJ_OBJ: return parse_container(p, node, true);
    case EMJ_ARR: return parse_container(p, node, false);
    case EMJ_STR: {
        size_t off, len;
        em_status s = parse_string(p, &off, &len);
        if (s) return s;
        p->doc->nodes[node].str = off;
        p->doc->nodes[node].len = len;
        return EM_OK;
    }
    case EMJ_TRUE: return literal(p, "true") ? EM_OK : fail(p, "unknown literal");
    case EMJ_FALSE: return literal(p, "false") ? EM_OK : fail(p, "unknown literal");
    case EMJ_NULL: return literal(p, "null") ? EM_OK : fail(p, "unknown literal");
    case EMJ_NUM:
        if (c != '-' && (c < '0' || c > '9')) return fail(p, "unexpected character");
        return parse_number(p, node);
    }
    return fail(p, "unexpected character");
}

em_status emj_parse(emj_doc *doc, const char *text, size_t len, const char *what, int64_t max_nodes) {
    memset(doc, 0, sizeof *doc);
    doc->max_nodes = max_nodes;
    parser p = {.s = text, .n = len, .doc = doc, .what = what};
    int64_t root;
    em_status s = parse_value(&p, &root);
    if (!s) {
        skip_ws(&p);
        if (p.pos != p.n) s = fail(&p, "trailing characters after the value");
    }
    if (s) emj_free(doc);
    return s;
}

void emj_free(emj_doc *doc) {
    free(doc->nodes);
    free(doc->strs);
    memset(doc, 0, sizeof *doc);
}
