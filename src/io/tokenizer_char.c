/* tokenizer_char.c - the character tokenizer: one token per distinct UTF-8 code point of a text.
 *
 * Units are code points, not bytes, so "héllo" has five tokens and a model never has to learn
 * to spell é from two bytes; tinyshakespeare gives the usual 65. Ids follow the units' UTF-8
 * byte order, which is code point order, so the same text always gives the same vocabulary. A
 * byte that is not part of valid UTF-8 is a unit of its own, so any text can be tokenized and
 * decoded back byte for byte. After the units comes one special token, "<|endoftext|>", used as
 * BOS and EOS (and never recognised inside text: the char tokenizer only sees characters).
 * Encoding a character the vocabulary lacks is an error that names it.
 */
#include "io.h"

static int unit_cmp(const char *a, size_t na, const char *b, size_t nb) {
    int c = memcmp(a, b, na < nb ? na : nb);
    return c ? c : (na > nb) - (na < nb);
}

/* the byte length of the unit at s[0..n) */
static size_t unit_len(const uint8_t *s, size_t n) {
    uint32_t cp;
    int k = emio_utf8_next(s, n, &cp);
    return k ? (size_t)k : 1;
}

em_tokenizer_t *emio_char_from_units(const char *const *units, const size_t *lens, int32_t n, const char *op) {
    if (n < 0 || n > 0x110000 + 256) return em_seterr_null(EM_ERR_FORMAT, "%s: %d units is not a character vocabulary", op, n);
    for (int32_t i = 0; i < n; i++) {
        if (lens[i] < 1 || lens[i] > 4 || (lens[i] > 1 && unit_len((const uint8_t *)units[i], lens[i]) != lens[i]))
            return em_seterr_null(EM_ERR_FORMAT, "%s: unit %d is not one UTF-8 character or one byte", op, i);
        if (i && unit_cmp(units[i - 1], lens[i - 1], units[i], lens[i]) >= 0)
            return em_seterr_null(EM_ERR_FORMAT, "%s: units %d and %d are not in strictly increasing order", op, i - 1, i);
    }
    em_tokenizer_t *t = emio_tok_new(EM_TOKENIZER_CHAR);
    const char **pieces = malloc(((size_t)n + 1) * sizeof *pieces);
    size_t *plens = malloc(((size_t)n + 1) * sizeof *plens);
    if (!t || !pieces || !plens) {
        em_tokenizer_free(t);
        free(pieces); free(plens);
        return em_seterr_null(EM_ERR_OOM, "%s: out of memory", op);
    }
    for (int32_t i = 0; i < n; i++) {
        pieces[i] = units[i];
        plens[i] = lens[i];
    }
    pieces[n] = EMIO_ENDOFTEXT;
    plens[n] = strlen(EMIO_ENDOFTEXT);
    em_status s = emio_tok_set_pieces(t, pieces, plens, n + 1);
    free(pieces);
    free(plens);
    if (s) {
        em_tokenizer_free(t);
        return NULL;
    }
    t->bos = t->eos = n;
    return t;
}

typedef struct {
    const char *p;
    size_t n;
} unit;

static int cmp_units(const void *a, const void *b) {
    const unit *x = a, *y = b;
    return unit_cmp(x->p, x->n, y->p, y->n);
}

em_tokenizer_t *em_tokenizer_char(const char *text, size_t len) {
    static const char *op = "em_tokenizer_char";
    if (!text && len) return em_seterr_null(EM_ERR_ARG, "%s: text is NULL", op);
    const uint8_t *s = (const uint8_t *)text;
    emio_strmap seen = {0};
    unit *u = NULL;
    size_t nu = 0, cap = 0;
    bool oom = false;
    for (size_t i = 0; i < len && !oom;) {
        size_t k = unit_len(s + i, len - i);
        if (emio_strmap_put(&seen, text + i, k, 0, &oom)) {
            if (nu == cap) {
                cap = cap ? cap * 2 : 256;
                unit *q = realloc(u, cap * sizeof *u);
                if (!q) { oom = true; break; }
                u = q;
            }
            u[nu++] = (unit){text + i, k};
        }
        i += k;
    }
    emio_strmap_free(&seen);
    em_tokenizer_t *t = NULL;
    const char **units = NULL;
    size_t *lens = NULL;
    if (!oom) {
        if (nu) qsort(u, nu, sizeof *u, cmp_units);
        units = malloc((nu + 1) * sizeof *units);
        lens = malloc((nu + 1) * sizeof *lens);
        oom = !units || !lens;
    }
    if (oom) {
        em_seterr(EM_ERR_OOM, "%s: out of memory", op);
    } else {
        for (size_t i = 0; i < nu; i++) {
            units[i] = u[i].p;
            lens[i] = u[i].n;
        }
        t = emio_char_from_units(units, lens, (int32_t)nu, op);
    }
    free(u);
    free(units);
    free(lens);
    return t;
}

em_status emio_char_encode(const em_tokenizer_t *tok, const uint8_t *s, size_t n, emio_ids *out) {
    for (size_t i = 0; i < n;) {
        size_t k = unit_len(s + i, n - i);
        int32_t id = emio_strmap_get(&tok->map, (const char *)s + i, k);
        if (id < 0 || id == tok->bos) {
            uint32_t cp = 0;
            if (k > 1 || s[i] < 0x80) emio_utf8_next(s + i, n - i, &cp);
            if (k == 1 && s[i] >= 0x80)
                return em_seterr(EM_ERR_ARG, "em_tokenizer_encode: byte 0x%02X at offset %zu (not valid UTF-8) is not in "
                                             "this char tokenizer's vocabulary", s[i], i);
            return em_seterr(EM_ERR_ARG, "em_tokenizer_encode: character U+%04X ('%.*s') at byte %zu is not in this "
                                         "char tokenizer's vocabulary (build it from a text that has it)",
                             cp, (int)k, (const char *)s + i, i);
        }
        if (!emio_ids_push(out, id)) return em_seterr(EM_ERR_OOM, "em_tokenizer_encode: out of memory");
        i += k;
    }
    return EM_OK;
}
