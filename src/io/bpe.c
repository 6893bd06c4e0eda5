/* bpe.c - the byte-level BPE engine shared by the GPT-2 tokenizer and the trained one.
 *
 * A word (one pre-tokenized piece) starts as one token per byte. GPT-2's reference loop
 * (encoder.py) repeatedly takes the adjacent pair with the lowest merge rank and merges every
 * occurrence of it, left to right without overlap, until no adjacent pair has a rank. That is
 * O(n^2) on a long word, so this file gets the same result with a heap: symbols form a linked
 * list, every adjacent pair that has a rank sits in a heap ordered by (rank, position), and the
 * entries of the lowest rank are taken as one batch in position order. Inside a batch an entry
 * is stale when either of its symbols has changed (exactly the occurrences the reference skips,
 * like the second "a a" of "a a a"); pairs created by the batch are pushed only after it, because
 * the reference only looks for the next rank once this one is done everywhere. So the result is
 * the reference's for any merge list, not just well-formed ones, in O(n log n).
 */
#include "io.h"

bool emio_ids_push(emio_ids *v, int32_t id) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        int32_t *p = realloc(v->ids, cap * sizeof *p);
        if (!p) return false;
        v->ids = p;
        v->cap = cap;
    }
    v->ids[v->n++] = id;
    return true;
}


typedef struct {
    int32_t *id, *prev, *next; /* next/prev: -1 at the ends; id -1 marks a merged-away symbol */
} symbols;

static bool push_pair(const em_tokenizer_t *tok, emio_heap *h, const symbols *w, int32_t l) {
    if (l < 0) return true;
    int32_t r = w->next[l];
    if (r < 0) return true;
    int32_t rank, id;
    if (!emio_pairmap_get(&tok->merges, w->id[l], w->id[r], &rank, &id)) return true;
    return emio_heap_push(h, (emio_merge){rank, l, r, w->id[l], w->id[r], 0});
}

em_status emio_bpe_word(const em_tokenizer_t *tok, const uint8_t *s, size_t n, emio_ids *out) {
    if (n == 1) return emio_ids_push(out, tok->byte_id[s[0]]) ? EM_OK : em_seterr(EM_ERR_OOM, "em_tokenizer_encode: out of memory");
    if (n > INT32_MAX / 2) return em_seterr(EM_ERR_ARG, "em_tokenizer_encode: one word of %zu bytes is too long", n);
    symbols w = {malloc(n * sizeof(int32_t)), malloc(n * sizeof(int32_t)), malloc(n * sizeof(int32_t))};
    int32_t *touched = malloc(n * sizeof(int32_t));
    emio_heap h = {0};
    em_status st = EM_OK;
    if (!w.id || !w.prev || !w.next || !touched) goto oom;
    for (size_t i = 0; i < n; i++) {
        w.id[i] = tok->byte_id[s[i]];
        w.prev[i] = (int32_t)i - 1;
        w.next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < n; i++)
        if (!push_pair(tok, &h, &w, (int32_t)i)) goto oom;
    while (h.n) {
        double rank = h.e[0].key;
        size_t nt = 0;
        while (h.n && h.e[0].key == rank) { /* one batch: every occurrence of this pair */
            emio_merge e = emio_heap_pop(&h);
            if (w.id[e.left] != e.lid || w.next[e.left] != e.right || w.id[e.right] != e.rid) continue;
            int32_t r_, merged;
            emio_pairmap_get(&tok->merges, e.lid, e.rid, &r_, &merged);
            w.id[e.left] = merged;
            w.id[e.right] = -1;
            w.next[e.left] = w.next[e.right];
            if (w.next[e.right] >= 0) w.prev[w.next[e.right]] = e.left;
            touched[nt++] = e.left;
        }
        for (size_t k = 0; k < nt; k++) {
            int32_t l = touched[k];
            if (w.id[l] < 0) continue;
            if (!push_pair(tok, &h, &w, w.prev[l]) || !push_pair(tok, &h, &w, l)) goto oom;
        }
    }
    for (int32_t i = 0; i >= 0; i = w.next[i])
        if (!emio_ids_push(out, w.id[i])) goto oom;
    goto done;
oom:
    st = em_seterr(EM_ERR_OOM, "em_tokenizer_encode: out of memory");
done:
    free(w.id);
    free(w.prev);
    free(w.next);
    free(touched);
    free(h.e);
    return st;
}

typedef struct {
    const em_tokenizer_t *tok;
    const uint8_t *s;
    emio_ids *out;
} split_ctx;

static em_status on_piece(void *ctx, size_t start, size_t end) {
    split_ctx *c = ctx;
    return emio_bpe_word(c->tok, c->s + start, end - start, c->out);
}

em_status emio_bpe_encode(const em_tokenizer_t *tok, const uint8_t *s, size_t n, emio_ids *out) {
    const uint8_t *sp = NULL;
    size_t sn = 0;
    if (tok->special >= 0) {
        sp = (const uint8_t *)tok->blob + tok->off[tok->special];
        sn = (size_t)tok->len[tok->special];
    }
    size_t i = 0;
    while (i < n) {
        /* the next literal special token ends this segment */
        const uint8_t *hit = sn ? memmem(s + i, n - i, sp, sn) : NULL;
        size_t end = hit ? (size_t)(hit - s) : n;
        split_ctx c = {tok, s + i, out};
        em_status st = emio_gpt2_split(s + i, end - i, on_piece, &c);
        if (st) return st;
        if (!hit) break;
        if (!emio_ids_push(out, tok->special)) return em_seterr(EM_ERR_OOM, "em_tokenizer_encode: out of memory");
        i = end + sn;
    }
    return EM_OK;
}
