/* tokenizer_llama2c.c - the tokenizer.bin of karpathy/llama2.c (Llama 2's sentencepiece
 * vocabulary, exported): int32 max_token_length, then per token float32 score, int32 len and
 * len bytes. The file does not say how many tokens it holds; the model does (vocab_size), so
 * the loader takes it (0 reads every token in the file).
 *
 * Checked: max_token_length in [1, 65536]; every score finite, every len in
 * [0, max_token_length] and inside the file; exactly vocab_size tokens and nothing after.
 *
 * Encoding is run.c's encode(): optional BOS (1), then, for non-empty text, the dummy-prefix
 * token " " (sentencepiece's add_dummy_prefix; skipped when the vocabulary has no " "), then one
 * token per UTF-8 character, or its bytes as byte-fallback tokens (id 3 + byte) when the
 * character is not a token, then greedy merging: while some adjacent pair concatenates to a
 * token, merge the pair whose token has the highest score (the leftmost on ties; scores must
 * beat -1e10 as in run.c). A heap keyed by (score, position) finds the same pair run.c's full
 * rescan finds, so long prompts stay fast. Unlike run.c, text is (pointer, length): a NUL byte
 * is encoded (as byte token 3), not taken as the end.
 *
 * Decoding: BOS and EOS give no text, a piece right after BOS loses its leading space, and a
 * "<0xXX>" piece (exactly six bytes, hex in either case) is the raw byte XX. Unlike run.c's
 * safe_printf, non-printable bytes are returned too: decoding is not printing.
 */
#include "io.h"

#include <math.h>

#define MAX_TOKEN_LENGTH 65536

static int hexv(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

em_tokenizer_t *emio_llama2c_tok_parse(const void *buf, size_t n, int32_t vocab_size) {
    static const char *op = "em_tokenizer_load_llama2c";
    const uint8_t *p = buf;
    if (vocab_size < 0) return em_seterr_null(EM_ERR_ARG, "%s: vocab_size %d is negative (0 reads every token)", op, vocab_size);
    if (n < 4) return em_seterr_null(EM_ERR_FORMAT, "%s: file is %zu bytes, too short for the max_token_length header", op, n);
    int32_t maxlen;
    memcpy(&maxlen, p, 4);
    if (maxlen < 1 || maxlen > MAX_TOKEN_LENGTH)
        return em_seterr_null(EM_ERR_FORMAT, "%s: max_token_length %d is not in [1, %d] (is this a llama2.c tokenizer.bin?)",
                              op, maxlen, MAX_TOKEN_LENGTH);
    /* first pass: count and check every record */
    size_t at = 4;
    int64_t count = 0;
    while (at < n && (vocab_size == 0 || count < vocab_size)) {
        if (n - at < 8)
            return em_seterr_null(EM_ERR_FORMAT, "%s: truncated in token %lld: its score and length need 8 bytes, %zu left",
                                  op, (long long)count, n - at);
        float score;
        int32_t len;
        memcpy(&score, p + at, 4);
        memcpy(&len, p + at + 4, 4);
        if (!isfinite(score)) return em_seterr_null(EM_ERR_FORMAT, "%s: token %lld has a non-finite score", op, (long long)count);
        if (len < 0 || len > maxlen)
            return em_seterr_null(EM_ERR_FORMAT, "%s: token %lld has length %d, outside [0, max_token_length = %d]",
                                  op, (long long)count, len, maxlen);
        if ((size_t)len > n - at - 8)
            return em_seterr_null(EM_ERR_FORMAT, "%s: truncated in token %lld: %d bytes of text, %zu left",
                                  op, (long long)count, len, n - at - 8);
        at += 8 + (size_t)len;
        count++;
        if (count > INT32_MAX - 1) return em_seterr_null(EM_ERR_FORMAT, "%s: too many tokens", op);
    }
    if (vocab_size > 0 && count < vocab_size)
        return em_seterr_null(EM_ERR_FORMAT, "%s: the file has %lld tokens, the model's vocab_size is %d (wrong tokenizer?)",
                              op, (long long)count, vocab_size);
    if (at != n)
        return em_seterr_null(EM_ERR_FORMAT, "%s: %zu bytes follow the %lld tokens (wrong vocab_size or not a tokenizer.bin?)",
                              op, n - at, (long long)count);
    if (count == 0) return em_seterr_null(EM_ERR_FORMAT, "%s: the file has no tokens", op);

    em_tokenizer_t *t = emio_tok_new(EM_TOKENIZER_LLAMA2C);
    const char **pieces = malloc((size_t)count * sizeof *pieces);
    size_t *lens = malloc((size_t)count * sizeof *lens);
    if (t) {
        t->scores = malloc((size_t)count * sizeof *t->scores);
        t->byte_of = malloc((size_t)count * sizeof *t->byte_of);
    }
    if (!t || !pieces || !lens || !t->scores || !t->byte_of) {
        em_tokenizer_free(t);
        free(pieces); free(lens);
        return em_seterr_null(EM_ERR_OOM, "%s: out of memory", op);
    }
    at = 4;
    for (int64_t i = 0; i < count; i++) {
        int32_t len;
        memcpy(&t->scores[i], p + at, 4);
        memcpy(&len, p + at + 4, 4);
        pieces[i] = (const char *)p + at + 8;
        lens[i] = (size_t)len;
        at += 8 + (size_t)len;
        const char *s = pieces[i];
        t->byte_of[i] = -1;
        if (len == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>' && hexv(s[3]) >= 0 && hexv(s[4]) >= 0)
            t->byte_of[i] = (int16_t)(hexv(s[3]) * 16 + hexv(s[4]));
    }
    em_status s = emio_tok_set_pieces(t, pieces, lens, (int32_t)count);
    free(pieces);
    free(lens);
    if (s) {
        em_tokenizer_free(t);
        return NULL;
    }
    t->max_token_length = maxlen;
    t->bos = count > 1 ? 1 : -1;
    t->eos = count > 2 ? 2 : -1;
    return t;
}

em_tokenizer_t *em_tokenizer_load_llama2c(const char *path, int32_t vocab_size) {
    char *buf;
    size_t n;
    if (emio_read_file("em_tokenizer_load_llama2c", path, (size_t)1 << 30, &buf, &n)) return NULL;
    em_tokenizer_t *t = emio_llama2c_tok_parse(buf, n, vocab_size);
    free(buf);
    return t;
}

/* ---- encode ----------------------------------------------------------------------------------- */

typedef struct {
    const em_tokenizer_t *tok;
    int32_t *id, *next, *prev;
    char *scratch; /* 2 * max_token_length */
    emio_heap h;
} merger;

/* pushes the pair (l, next of l) when it concatenates to a token scoring above -1e10 */
static bool push_pair(merger *M, int32_t l) {
    if (l < 0 || M->next[l] < 0) return true;
    const em_tokenizer_t *t = M->tok;
    int32_t r = M->next[l], a = M->id[l], b = M->id[r];
    size_t la = (size_t)t->len[a], lb = (size_t)t->len[b];
    memcpy(M->scratch, t->blob + t->off[a], la);
    memcpy(M->scratch + la, t->blob + t->off[b], lb);
    int32_t m = emio_strmap_get(&t->map, M->scratch, la + lb);
    if (m < 0 || !(t->scores[m] > -1e10f)) return true;
    return emio_heap_push(&M->h, (emio_merge){-(double)t->scores[m], l, r, a, b, m});
}

em_status emio_llama2c_tok_encode(const em_tokenizer_t *t, const uint8_t *s, size_t n, bool bos, emio_ids *out) {
    static const char *op = "em_tokenizer_encode";
    if (bos && !emio_ids_push(out, t->bos)) return em_seterr(EM_ERR_OOM, "%s: out of memory", op);
    size_t first = out->n; /* the tokens to merge start here */
    if (n) {
        int32_t dummy = emio_strmap_get(&t->map, " ", 1);
        if (dummy >= 0 && !emio_ids_push(out, dummy)) return em_seterr(EM_ERR_OOM, "%s: out of memory", op);
    }
    /* one token per character (run.c groups a lead byte with up to 3 continuation bytes) */
    size_t clen = 0;
    for (size_t i = 0; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) clen = 0;
        clen++;
        if (i + 1 < n && (s[i + 1] & 0xC0) == 0x80 && clen < 4) continue;
        const uint8_t *c = s + i + 1 - clen;
        int32_t id = emio_strmap_get(&t->map, (const char *)c, clen);
        if (id >= 0) {
            if (!emio_ids_push(out, id)) return em_seterr(EM_ERR_OOM, "%s: out of memory", op);
        } else {
            for (size_t k = 0; k < clen; k++) {
                int32_t b = 3 + c[k];
                if (b >= t->n_vocab)
                    return em_seterr(EM_ERR_ARG, "%s: byte 0x%02X needs the byte-fallback token %d, but the vocabulary has %d tokens",
                                     op, c[k], b, t->n_vocab);
                if (!emio_ids_push(out, b)) return em_seterr(EM_ERR_OOM, "%s: out of memory", op);
            }
        }
        clen = 0;
    }
    size_t m = out->n - first;
    if (m < 2) return EM_OK;
    if (m > INT32_MAX / 2) return em_seterr(EM_ERR_ARG, "%s: text too long (%zu tokens)", op, m);
    merger M = {.tok = t, .id = out->ids + first};
    M.next = malloc(m * sizeof(int32_t));
    M.prev = malloc(m * sizeof(int32_t));
    M.scratch = malloc(2 * (size_t)t->max_token_length + 1);
    em_status st = EM_OK;
    if (!M.next || !M.prev || !M.scratch) goto oom;
    for (size_t i = 0; i < m; i++) {
        M.next[i] = i + 1 < m ? (int32_t)i + 1 : -1;
        M.prev[i] = (int32_t)i - 1;
    }
    for (size_t i = 0; i + 1 < m; i++)
        if (!push_pair(&M, (int32_t)i)) goto oom;
    while (M.h.n) {
        emio_merge e = emio_heap_pop(&M.h);
        if (M.id[e.left] != e.lid || M.next[e.left] != e.right || M.id[e.right] != e.rid) continue; /* stale */
        M.id[e.left] = e.merged;
        M.id[e.right] = -1;
        M.next[e.left] = M.next[e.right];
        if (M.next[e.right] >= 0) M.prev[M.next[e.right]] = e.left;
        if (!push_pair(&M, M.prev[e.left]) || !push_pair(&M, e.left)) goto oom;
    }
    size_t o = first;
    for (int32_t i = 0; i >= 0; i = M.next[i]) out->ids[o++] = M.id[i];
    out->n = o;
    goto done;
oom:
    st = em_seterr(EM_ERR_OOM, "%s: out of memory", op);
done:
    free(M.next);
    free(M.prev);
    free(M.scratch);
    free(M.h.e);
    return st;
}
