/* pretokenize.c - GPT-2's pre-tokenization regex, written out by hand, and the UTF-8 and
 * Unicode-class helpers it needs.
 *
 * GPT-2 splits text with regex.findall on
 *     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * and runs BPE on each piece. At every position the alternatives are tried in order and the
 * first that matches wins (the quantifiers are greedy). Every character is a letter (L), a
 * number (N), whitespace (S) or other (O), so some alternative always matches and the pieces
 * tile the text. The two whitespace alternatives amount to: a run of whitespace followed by
 * the end of text is one piece; a run followed by a non-space gives back its last character,
 * which then starts the next piece (" word" when it is a plain space, else a piece of its own).
 *
 * Bytes that are not valid UTF-8 are one "other" character each, so the function is total on
 * arbitrary bytes and pieces always cut at byte boundaries GPT-2 would use on valid text.
 */
#include "io.h"

int emio_utf8_next(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    int k;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) { k = 2; v = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { k = 3; v = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { k = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if ((size_t)k > n) return 0;
    for (int i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = v << 6 | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return k;
}

static bool in_ranges(const uint32_t (*r)[2], int n, uint32_t cp) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < r[mid][0]) hi = mid - 1;
        else if (cp > r[mid][1]) lo = mid + 1;
        else return true;
    }
    return false;
}

bool emio_is_letter(uint32_t cp) {
    if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
    return in_ranges(emio_letter_ranges, emio_n_letter_ranges, cp);
}

bool emio_is_number(uint32_t cp) {
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    return in_ranges(emio_number_ranges, emio_n_number_ranges, cp);
}

bool emio_is_space(uint32_t cp) {
    /* Unicode's White_Space property: what \s matches in the `regex` module GPT-2 used
       (Python's str.isspace would add U+001C..U+001F; regex does not) */
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    if (cp < 0x85) return false;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

enum { C_L, C_N, C_S, C_O };

/* the class and byte length of the character at s[i] (i < n) */
static int cls_at(const uint8_t *s, size_t n, size_t i, int *len) {
    uint32_t cp;
    int k = emio_utf8_next(s + i, n - i, &cp);
    if (!k) { *len = 1; return C_O; }
    *len = k;
    return emio_is_letter(cp) ? C_L : emio_is_number(cp) ? C_N : emio_is_space(cp) ? C_S : C_O;
}

/* end of the run of class c starting at i */
static size_t run_end(const uint8_t *s, size_t n, size_t i, int c) {
    while (i < n) {
        int k;
        if (cls_at(s, n, i, &k) != c) break;
        i += (size_t)k;
    }
    return i;
}

/* the length of a contraction ('s 't 're 've 'm 'll 'd, case-sensitive) at s[i], or 0 */
static size_t contraction(const uint8_t *s, size_t n, size_t i) {
    if (s[i] != '\'' || i + 1 >= n) return 0;
    uint8_t a = s[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (i + 2 >= n) return 0;
    uint8_t b = s[i + 2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* the end of the piece that starts at i */
static size_t piece_end(const uint8_t *s, size_t n, size_t i) {
    size_t k = contraction(s, n, i);
    if (k) return i + k;
    int len, c = cls_at(s, n, i, &len);
    /* " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+": an optional plain space, then a run */
    if (s[i] == ' ' && i + 1 < n) {
        int len2, c2 = cls_at(s, n, i + 1, &len2);
        if (c2 != C_S) return run_end(s, n, i + 1, c2);
    }
    if (c != C_S) return run_end(s, n, i, c);
    /* "\s+(?!\S)" then "\s+" */
    size_t e = run_end(s, n, i, C_S);
    if (e == n) return e;
    size_t last = i; /* the start of the run's last character */
    for (size_t j = i; j < e; j += (size_t)len) {
        last = j;
        cls_at(s, n, j, &len);
    }
    return last > i ? last : e;
}

em_status emio_gpt2_split(const uint8_t *s, size_t n, emio_piece_fn fn, void *ctx) {
    size_t i = 0;
    while (i < n) {
        size_t e = piece_end(s, n, i);
        EM_ASSERT(e > i && e <= n);
        em_status st = fn(ctx, i, e);
        if (st) return st;
        i = e;
    }
    return EM_OK;
}
