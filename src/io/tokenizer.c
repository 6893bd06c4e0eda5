/* tokenizer.c - the one tokenizer type: construction helpers, the public encode/decode calls
 * that dispatch on the kind, and the file format of the tokenizers Ember makes itself
 * (trained BPE and char), which em_tokenizer_save writes and em_tokenizer_load reads.
 *
 * Every kind keeps the same id -> piece table (one blob, offsets, lengths) and a hash map from
 * piece to its lowest id; decoding is the same table walk for all of them except llama2.c's
 * two rules (a leading space dropped after BOS, "<0xXX>" pieces standing for one raw byte).
 *
 * The saved format (little-endian, validated field by field when read):
 *     "EMBERTOK"  u32 version (1)  u32 kind (EM_TOKENIZER_BPE or EM_TOKENIZER_CHAR)  u32 count
 *     BPE:  count merges, each i32 a, i32 b (ids of earlier tokens; merge i makes id 256 + i)
 *     CHAR: count units, each u8 len (1..4) and len bytes, in strictly increasing byte order
 * and nothing after. The special token ("<|endoftext|>", the last id) is implied.
 */
#include "io.h"

#define TOK_MAGIC "EMBERTOK"
#define TOK_VERSION 1u
#define MAX_PIECE (1u << 20)          /* bytes in one piece */
#define MAX_PIECES_TOTAL (1ull << 28) /* bytes in all pieces */

em_tokenizer_t *emio_tok_new(em_tokenizer_kind kind) {
    em_tokenizer_t *t = calloc(1, sizeof *t);
    if (!t) return em_seterr_null(EM_ERR_OOM, "tokenizer: out of memory");
    t->kind = kind;
    t->bos = t->eos = t->special = -1;
    for (int b = 0; b < 256; b++) {
        t->byte_id[b] = -1;
        t->raw[b] = (char)b;
    }
    return t;
}

em_status emio_tok_set_pieces(em_tokenizer_t *tok, const char *const *pieces, const size_t *lens, int32_t n) {
    uint64_t total = 0;
    for (int32_t i = 0; i < n; i++) total += lens[i];
    EM_ASSERT(!tok->blob);
    if (total > MAX_PIECES_TOTAL)
        return em_seterr(EM_ERR_FORMAT, "tokenizer: the vocabulary's pieces take %llu bytes, more than the %llu allowed",
                         (unsigned long long)total, (unsigned long long)MAX_PIECES_TOTAL);
    tok->blob = malloc((size_t)total + 1);
    tok->off = malloc(((size_t)n + 1) * sizeof *tok->off);
    tok->len = malloc(((size_t)n + 1) * sizeof *tok->len);
    if (!tok->blob || !tok->off || !tok->len) return em_seterr(EM_ERR_OOM, "tokenizer: out of memory");
    int64_t at = 0;
    for (int32_t i = 0; i < n; i++) {
        if (lens[i]) memcpy(tok->blob + at, pieces[i], lens[i]);
        tok->off[i] = at;
        tok->len[i] = (int32_t)lens[i];
        at += (int64_t)lens[i];
    }
    tok->off[n] = at;
    tok->n_vocab = n;
    bool oom = false;
    for (int32_t i = 0; i < n && !oom; i++) emio_strmap_put(&tok->map, tok->blob + tok->off[i], lens[i], i, &oom);
    if (oom) return em_seterr(EM_ERR_OOM, "tokenizer: out of memory");
    return EM_OK;
}

void em_tokenizer_free(em_tokenizer_t *tok) {
    if (!tok) return;
    free(tok->blob);
    free(tok->off);
    free(tok->len);
    emio_strmap_free(&tok->map);
    emio_pairmap_free(&tok->merges);
    free(tok->merge_pairs);
    free(tok->scores);
    free(tok->byte_of);
    free(tok);
}

/* ---- queries ---------------------------------------------------------------------------------- */
em_tokenizer_kind em_tokenizer_kind_of(const em_tokenizer_t *tok) {
    if (!tok) { em_seterr(EM_ERR_ARG, "em_tokenizer_kind_of: tokenizer is NULL"); return EM_TOKENIZER_BPE; }
    return tok->kind;
}

int32_t em_tokenizer_vocab_size(const em_tokenizer_t *tok) {
    if (!tok) { em_seterr(EM_ERR_ARG, "em_tokenizer_vocab_size: tokenizer is NULL"); return -1; }
    return tok->n_vocab;
}

int32_t em_tokenizer_bos_id(const em_tokenizer_t *tok) {
    if (!tok) { em_seterr(EM_ERR_ARG, "em_tokenizer_bos_id: tokenizer is NULL"); return -1; }
    return tok->bos;
}

int32_t em_tokenizer_eos_id(const em_tokenizer_t *tok) {
    if (!tok) { em_seterr(EM_ERR_ARG, "em_tokenizer_eos_id: tokenizer is NULL"); return -1; }
    return tok->eos;
}

/* ---- encode and decode ---------------------------------------------------------------------- */
em_status em_tokenizer_encode(const em_tokenizer_t *tok, const char *text, size_t len, bool bos,
                              int32_t **ids, size_t *n) {
    static const char *op = "em_tokenizer_encode";
    if (!ids || !n) return em_seterr(EM_ERR_ARG, "%s: ids and n must not be NULL", op);
    *ids = NULL;
    *n = 0;
    if (!tok) return em_seterr(EM_ERR_ARG, "%s: tokenizer is NULL", op);
    if (!text && len) return em_seterr(EM_ERR_ARG, "%s: text is NULL", op);
    if (bos && tok->bos < 0) return em_seterr(EM_ERR_ARG, "%s: this tokenizer has no BOS token (pass bos = false)", op);
    emio_ids out = {0};
    em_status s = EM_OK;
    const uint8_t *u = (const uint8_t *)(text ? text : "");
    if (tok->kind == EM_TOKENIZER_LLAMA2C) {
        s = emio_llama2c_tok_encode(tok, u, len, bos, &out);
    } else {
        if (bos && !emio_ids_push(&out, tok->bos)) s = em_seterr(EM_ERR_OOM, "%s: out of memory", op);
        if (!s) s = tok->kind == EM_TOKENIZER_CHAR ? emio_char_encode(tok, u, len, &out) : emio_bpe_encode(tok, u, len, &out);
    }
    if (s) {
        free(out.ids);
        return s;
    }
    if (!out.ids) { /* empty result: still a valid pointer the caller frees */
        out.ids = malloc(sizeof(int32_t));
        if (!out.ids) return em_seterr(EM_ERR_OOM, "%s: out of memory", op);
    }
    *ids = out.ids;
    *n = out.n;
    return EM_OK;
}

const char *em_tokenizer_decode_one(const em_tokenizer_t *tok, int32_t prev, int32_t id, size_t *len) {
    if (len) *len = 0;
    if (!tok) return em_seterr_null(EM_ERR_ARG, "em_tokenizer_decode_one: tokenizer is NULL");
    if (id < 0 || id >= tok->n_vocab)
        return em_seterr_null(EM_ERR_INDEX, "em_tokenizer_decode_one: token id %d is out of range [0, %d)", id, tok->n_vocab);
    const char *p = tok->blob + tok->off[id];
    size_t n = (size_t)tok->len[id];
    if (tok->kind == EM_TOKENIZER_LLAMA2C) {
        if (id == tok->bos || id == tok->eos) { /* control tokens print nothing */
            n = 0;
        } else if (tok->byte_of[id] >= 0) {
            p = &tok->raw[tok->byte_of[id]];
            n = 1;
        } else if (prev == tok->bos && n && p[0] == ' ') { /* sentencepiece drops it after BOS */
            p++;
            n--;
        }
    }
    if (len) *len = n;
    return p;
}

char *em_tokenizer_decode(const em_tokenizer_t *tok, const int32_t *ids, size_t n, size_t *len) {
    if (len) *len = 0;
    if (!tok) return em_seterr_null(EM_ERR_ARG, "em_tokenizer_decode: tokenizer is NULL");
    if (!ids && n) return em_seterr_null(EM_ERR_ARG, "em_tokenizer_decode: ids is NULL");
    emio_buf b = {0};
    emio_buf_put(&b, "", 0);
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tok->n_vocab) {
            free(b.p);
            return em_seterr_null(EM_ERR_INDEX, "em_tokenizer_decode: ids[%zu] = %d is out of range [0, %d)", i, ids[i], tok->n_vocab);
        }
        size_t k;
        const char *p = em_tokenizer_decode_one(tok, i ? ids[i - 1] : -1, ids[i], &k);
        emio_buf_put(&b, p, k);
    }
    if (b.oom) {
        free(b.p);
        return em_seterr_null(EM_ERR_OOM, "em_tokenizer_decode: out of memory");
    }
    if (len) *len = b.n;
    return b.p;
}

/* ---- Ember's own tokenizer files ---------------------------------------------------------------- */
static void put_u32(emio_buf *b, uint32_t v) { emio_buf_put(b, &v, 4); }

em_status emio_tokenizer_serialize(const em_tokenizer_t *tok, emio_buf *out) {
    static const char *op = "em_tokenizer_save";
    if (tok->kind != EM_TOKENIZER_BPE && tok->kind != EM_TOKENIZER_CHAR)
        return em_seterr(EM_ERR_ARG, "%s: only trained BPE and char tokenizers are saved (GPT-2 and llama2.c ones are "
                                     "their original files)", op);
    emio_buf_put(out, TOK_MAGIC, 8);
    put_u32(out, TOK_VERSION);
    put_u32(out, (uint32_t)tok->kind);
    if (tok->kind == EM_TOKENIZER_BPE) {
        put_u32(out, (uint32_t)tok->n_merges);
        emio_buf_put(out, tok->merge_pairs, (size_t)tok->n_merges * 8);
    } else {
        int32_t units = tok->n_vocab - 1; /* the last id is the special token */
        put_u32(out, (uint32_t)units);
        for (int32_t i = 0; i < units; i++) {
            uint8_t k = (uint8_t)tok->len[i];
            emio_buf_put(out, &k, 1);
            emio_buf_put(out, tok->blob + tok->off[i], k);
        }
    }
    return out->oom ? em_seterr(EM_ERR_OOM, "%s: out of memory", op) : EM_OK;
}

static em_status write_buf(FILE *f, void *ctx) {
    emio_buf *b = ctx;
    return emio_fwrite(f, b->p, b->n, "em_tokenizer_save");
}

em_status em_tokenizer_save(const em_tokenizer_t *tok, const char *path) {
    if (!tok) return em_seterr(EM_ERR_ARG, "em_tokenizer_save: tokenizer is NULL");
    emio_buf b = {0};
    em_status s = emio_tokenizer_serialize(tok, &b);
    if (!s) s = emio_write_atomic("em_tokenizer_save", path, write_buf, &b);
    free(b.p);
    return s;
}

static uint32_t get_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

em_tokenizer_t *emio_tokenizer_parse(const void *buf, size_t n) {
    static const char *op = "em_tokenizer_load";
    const uint8_t *p = buf;
    if (n < 20) return em_seterr_null(EM_ERR_FORMAT, "%s: file is %zu bytes, shorter than the 20-byte header", op, n);
    if (memcmp(p, TOK_MAGIC, 8) != 0)
        return em_seterr_null(EM_ERR_FORMAT, "%s: not an Ember tokenizer file (magic \"EMBERTOK\" missing; GPT-2 and "
                                             "llama2.c tokenizers have their own loaders)", op);
    uint32_t version = get_u32(p + 8), kind = get_u32(p + 12), count = get_u32(p + 16);
    if (version != TOK_VERSION) return em_seterr_null(EM_ERR_FORMAT, "%s: version %u is not supported (expected %u)", op, version, TOK_VERSION);
    size_t at = 20, rest = n - 20;
    if (kind == EM_TOKENIZER_BPE) {
        if (count > (uint32_t)(INT32_MAX - 257) || (uint64_t)count * 8 != rest)
            return em_seterr_null(EM_ERR_FORMAT, "%s: %u merges need %llu bytes after the header, the file has %zu",
                                  op, count, (unsigned long long)count * 8, rest);
        int32_t *pairs = malloc((size_t)count * 8 + 8);
        if (!pairs) return em_seterr_null(EM_ERR_OOM, "%s: out of memory", op);
        if (count) memcpy(pairs, p + at, (size_t)count * 8);
        em_tokenizer_t *t = emio_bpe_from_merges(pairs, (int32_t)count, op);
        free(pairs);
        return t;
    }
    if (kind != EM_TOKENIZER_CHAR)
        return em_seterr_null(EM_ERR_FORMAT, "%s: unknown tokenizer kind %u (2 = BPE, 3 = char)", op, kind);
    if (count > rest / 2) /* each unit takes at least 2 bytes */
        return em_seterr_null(EM_ERR_FORMAT, "%s: %u units cannot fit in the %zu bytes left", op, count, rest);
    const char **units = malloc(((size_t)count + 1) * sizeof *units);
    size_t *lens = malloc(((size_t)count + 1) * sizeof *lens);
    if (!units || !lens) {
        free(units); free(lens);
        return em_seterr_null(EM_ERR_OOM, "%s: out of memory", op);
    }
    em_tokenizer_t *t = NULL;
    for (uint32_t i = 0; i < count; i++) {
        if (at >= n) { em_seterr(EM_ERR_FORMAT, "%s: truncated at unit %u of %u", op, i, count); goto out; }
        size_t k = p[at++];
        if (k < 1 || k > 4 || k > n - at) {
            em_seterr(EM_ERR_FORMAT, "%s: unit %u has length %zu (1..4 bytes expected, %zu left)", op, i, k, n - at);
            goto out;
        }
        units[i] = (const char *)p + at;
        lens[i] = k;
        at += k;
    }
    if (at != n) { em_seterr(EM_ERR_FORMAT, "%s: %zu bytes after the last unit", op, n - at); goto out; }
    t = emio_char_from_units(units, lens, (int32_t)count, op);
out:
    free(units);
    free(lens);
    return t;
}

em_tokenizer_t *em_tokenizer_load(const char *path) {
    char *buf;
    size_t n;
    if (emio_read_file("em_tokenizer_load", path, (size_t)1 << 30, &buf, &n)) return NULL;
    em_tokenizer_t *t = emio_tokenizer_parse(buf, n);
    free(buf);
    return t;
}
