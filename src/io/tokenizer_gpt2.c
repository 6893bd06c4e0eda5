/* tokenizer_gpt2.c - GPT-2's tokenizer from OpenAI's encoder.json and vocab.bpe.
 *
 * GPT-2 works on bytes but stores its vocabulary as text: bytes_to_unicode() maps each of the
 * 256 bytes to a printable code point (the printable Latin-1 bytes to themselves, the others to
 * U+0100 and up, in byte order), and every token is the string of its bytes' code points ("Ġ" is
 * a space). Loading undoes that mapping, so the tokenizer holds plain byte strings and the BPE
 * engine (bpe.c) never sees the alphabet.
 *
 * encoder.json: one JSON object, token string -> id. Checked: ids are exactly 0..n-1 (each
 * once), keys are distinct and use only the 256-character alphabet, every single byte has a
 * token. vocab.bpe: an optional first line starting with '#' ("#version: 0.2"), then one merge
 * per line, "left right" (one space), rank = line order. Checked: both parts and their
 * concatenation are tokens, no pair repeats. So encoding can never meet an unknown token.
 *
 * "<|endoftext|>" (50256 in GPT-2) is the special token: when it appears literally in the text
 * it becomes that one id, where OpenAI's encoder.py would spell it out as "<", "|", "endoftext",
 * "|", ">" (Hugging Face and tiktoken treat it as special too). It is also BOS and EOS.
 */
#include "io.h"

/* bytes_to_unicode(): the code point of each byte, and the inverse for code points < 512 */
static void byte_alphabet(uint32_t cp_of[256], int16_t byte_of[512]) {
    int extra = 0;
    for (int i = 0; i < 512; i++) byte_of[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        cp_of[b] = printable ? (uint32_t)b : (uint32_t)(256 + extra++);
        byte_of[cp_of[b]] = (int16_t)b;
    }
}

/* a token string (UTF-8 over the alphabet) -> bytes in out (at least n bytes); -1 on a
   character outside the alphabet, with *bad set to it */
static int64_t to_bytes(const int16_t byte_of[512], const char *s, size_t n, char *out, uint32_t *bad) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = emio_utf8_next((const uint8_t *)s + i, n - i, &cp);
        if (!k) { *bad = (uint8_t)s[i]; return -1; }
        if (cp >= 512 || byte_of[cp] < 0) { *bad = cp; return -1; }
        out[o++] = (char)byte_of[cp];
        i += (size_t)k;
    }
    return (int64_t)o;
}

typedef struct {
    const char *op;
    int16_t byte_of[512];
    uint32_t cp_of[256];
    emj_doc doc;
    char *bytes;       /* every key in bytes, back to back */
    const char **pieces;
    size_t *lens;
    em_tokenizer_t *tok;
} loader;

static em_status load_encoder(loader *L, const char *enc, size_t enc_n) {
    em_status s = emj_parse(&L->doc, enc, enc_n, "encoder.json", (int64_t)1 << 22);
    if (s) return s;
    const emj_node *root = &L->doc.nodes[0];
    if (root->type != EMJ_OBJ) return em_seterr(EM_ERR_FORMAT, "%s: encoder.json must be one JSON object (token -> id)", L->op);
    if (root->n < 256 || root->n > INT32_MAX / 2)
        return em_seterr(EM_ERR_FORMAT, "%s: encoder.json has %lld tokens; a byte-level vocabulary has at least 256",
                         L->op, (long long)root->n);
    int32_t n = (int32_t)root->n;
    L->bytes = malloc(L->doc.slen + 1);
    L->pieces = calloc((size_t)n, sizeof *L->pieces);
    L->lens = calloc((size_t)n, sizeof *L->lens);
    if (!L->bytes || !L->pieces || !L->lens) return em_seterr(EM_ERR_OOM, "%s: out of memory", L->op);
    size_t at = 0;
    int64_t k = 0;
    for (int64_t c = root->first; c >= 0; c = L->doc.nodes[c].next, k++) {
        const emj_node *x = &L->doc.nodes[c];
        uint32_t bad = 0;
        int64_t len = to_bytes(L->byte_of, emj_key(&L->doc, x), x->klen, L->bytes + at, &bad);
        if (len < 0)
            return em_seterr(EM_ERR_FORMAT, "%s: encoder.json entry %lld (\"%.40s\") has character U+%04X, outside "
                                            "GPT-2's byte alphabet", L->op, (long long)k, emj_key(&L->doc, x), bad);
        if (len == 0) return em_seterr(EM_ERR_FORMAT, "%s: encoder.json entry %lld has an empty token", L->op, (long long)k);
        if (x->type != EMJ_NUM || !x->is_int || x->i < 0 || x->i >= n)
            return em_seterr(EM_ERR_FORMAT, "%s: encoder.json entry %lld (\"%.40s\"): the id must be an integer in [0, %d)",
                             L->op, (long long)k, emj_key(&L->doc, x), n);
        if (L->pieces[x->i])
            return em_seterr(EM_ERR_FORMAT, "%s: encoder.json: id %lld is given to two tokens (ids must be 0..%d, each once)",
                             L->op, (long long)x->i, n - 1);
        L->pieces[x->i] = L->bytes + at;
        L->lens[x->i] = (size_t)len;
        at += (size_t)len;
    }
    L->tok = emio_tok_new(EM_TOKENIZER_GPT2);
    if (!L->tok) return em_last_status();
    if ((s = emio_tok_set_pieces(L->tok, L->pieces, L->lens, n))) return s;
    if ((int32_t)L->tok->map.n != n) { /* some piece is shared by two ids: find one to name */
        for (int32_t i = 0; i < n; i++) {
            int32_t first = emio_strmap_get(&L->tok->map, L->pieces[i], L->lens[i]);
            if (first != i)
                return em_seterr(EM_ERR_FORMAT, "%s: encoder.json has the token of id %d twice (again as id %d)", L->op, first, i);
        }
    }
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        L->tok->byte_id[b] = emio_strmap_get(&L->tok->map, &c, 1);
        if (L->tok->byte_id[b] < 0)
            return em_seterr(EM_ERR_FORMAT, "%s: encoder.json has no token for byte 0x%02X (U+%04X); byte-level BPE needs all 256",
                             L->op, b, L->cp_of[b]);
    }
    int32_t eot = emio_strmap_get(&L->tok->map, EMIO_ENDOFTEXT, strlen(EMIO_ENDOFTEXT));
    L->tok->special = L->tok->bos = L->tok->eos = eot;
    return EM_OK;
}

static em_status load_merges(loader *L, const char *bpe, size_t n) {
    em_tokenizer_t *t = L->tok;
    char *buf = malloc(n + 1);
    if (!buf) return em_seterr(EM_ERR_OOM, "%s: out of memory", L->op);
    em_status s = EM_OK;
    size_t pos = 0;
    int64_t line = 0;
    int32_t rank = 0;
    while (pos < n && !s) {
        const char *p = bpe + pos;
        const char *nl = memchr(p, '\n', n - pos);
        size_t len = nl ? (size_t)(nl - p) : n - pos;
        pos += len + (nl ? 1 : 0);
        line++;
        if (len == 0 || (line == 1 && p[0] == '#')) continue;
        const char *sp = memchr(p, ' ', len);
        if (!sp || sp == p || sp == p + len - 1 || memchr(sp + 1, ' ', len - (size_t)(sp + 1 - p))) {
            s = em_seterr(EM_ERR_FORMAT, "%s: vocab.bpe line %lld: expected \"left right\" (two tokens, one space), got \"%.*s\"",
                          L->op, (long long)line, (int)(len > 60 ? 60 : len), p);
            break;
        }
        size_t la = (size_t)(sp - p), lb = len - la - 1;
        uint32_t bad = 0;
        int64_t na = to_bytes(L->byte_of, p, la, buf, &bad);
        int64_t nb = na < 0 ? -1 : to_bytes(L->byte_of, sp + 1, lb, buf + na, &bad);
        if (na < 0 || nb < 0) {
            s = em_seterr(EM_ERR_FORMAT, "%s: vocab.bpe line %lld has character U+%04X, outside GPT-2's byte alphabet",
                          L->op, (long long)line, bad);
            break;
        }
        int32_t a = emio_strmap_get(&t->map, buf, (size_t)na), b = emio_strmap_get(&t->map, buf + na, (size_t)nb);
        int32_t m = emio_strmap_get(&t->map, buf, (size_t)(na + nb));
        if (a < 0 || b < 0 || m < 0) {
            s = em_seterr(EM_ERR_FORMAT, "%s: vocab.bpe line %lld (\"%.*s\"): %s is not in encoder.json", L->op,
                          (long long)line, (int)(len > 60 ? 60 : len), p,
                          a < 0 ? "the left token" : b < 0 ? "the right token" : "the merged token");
            break;
        }
        if (rank == INT32_MAX) {
            s = em_seterr(EM_ERR_FORMAT, "%s: vocab.bpe has too many merges", L->op);
            break;
        }
        bool oom = false;
        if (!emio_pairmap_put(&t->merges, a, b, rank, m, &oom))
            s = oom ? em_seterr(EM_ERR_OOM, "%s: out of memory", L->op)
                    : em_seterr(EM_ERR_FORMAT, "%s: vocab.bpe line %lld repeats an earlier merge", L->op, (long long)line);
        rank++;
    }
    t->n_merges = rank;
    free(buf);
    return s;
}

em_tokenizer_t *emio_gpt2_parse(const char *enc, size_t enc_n, const char *bpe, size_t bpe_n) {
    loader L = {.op = "em_tokenizer_load_gpt2"};
    byte_alphabet(L.cp_of, L.byte_of);
    em_status s = load_encoder(&L, enc, enc_n);
    if (!s) s = load_merges(&L, bpe, bpe_n);
    emj_free(&L.doc);
    free(L.bytes);
    free(L.pieces);
    free(L.lens);
    if (s) {
        em_tokenizer_free(L.tok);
        return NULL;
    }
    return L.tok;
}

em_tokenizer_t *em_tokenizer_load_gpt2(const char *encoder_json_path, const char *vocab_bpe_path) {
    static const char *op = "em_tokenizer_load_gpt2";
    char *enc = NULL, *bpe = NULL;
    size_t enc_n, bpe_n;
    em_tokenizer_t *t = NULL;
    if (!emio_read_file(op, encoder_json_path, (size_t)64 << 20, &enc, &enc_n) &&
        !emio_read_file(op, vocab_bpe_path, (size_t)64 << 20, &bpe, &bpe_n))
        t = emio_gpt2_parse(enc, enc_n, bpe, bpe_n);
    free(enc);
    free(bpe);
    return t;
}
