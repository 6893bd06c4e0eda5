/* tokenizer_bpe.c - byte-level BPE trained by Ember, and the tokenizer built from its merges.
 *
 * Vocabulary: ids 0..255 are the bytes, id 256 + i is merge i (the concatenation of two earlier
 * tokens), and the last id is "<|endoftext|>", the BOS/EOS/document separator, recognised when
 * it appears literally in text (as GPT-2 does here). Encoding is GPT-2's: the same regex
 * pre-tokenization (pretokenize.c) and the same lowest-rank-first merging (bpe.c), so a trained
 * tokenizer behaves exactly like GPT-2's with another vocabulary.
 *
 * Training (the classic algorithm, as in minbpe's RegexTokenizer): pre-tokenize the text, count
 * each distinct word once with its frequency, then repeatedly merge the most frequent adjacent
 * pair (ties: the smallest (a, b)) in every word that has it. Pair counts are kept incrementally:
 * each pair remembers which words contain it, a max-heap with lazy deletion finds the most
 * frequent, and a merge only revisits the words it changes. Training stops at the requested
 * vocabulary size or when no pair occurs at least twice.
 */
#include "io.h"

#define MAX_PIECE (1u << 20)
#define MAX_PIECES_TOTAL (1ull << 28)

em_tokenizer_t *emio_bpe_from_merges(const int32_t *pairs, int32_t n_merges, const char *op) {
    if (n_merges < 0 || n_merges > INT32_MAX - 257) return em_seterr_null(EM_ERR_FORMAT, "%s: bad merge count %d", op, n_merges);
    int32_t n = 256 + n_merges + 1;
    em_tokenizer_t *t = emio_tok_new(EM_TOKENIZER_BPE);
    int64_t *plen = malloc((size_t)n * sizeof *plen), *poff = malloc((size_t)n * sizeof *poff);
    const char **pieces = malloc((size_t)n * sizeof *pieces);
    size_t *lens = malloc((size_t)n * sizeof *lens);
    char *blob = NULL;
    if (!t || !plen || !poff || !pieces || !lens) goto oom;
    /* sizes first, so a hostile file cannot make pieces that double in length forever */
    uint64_t total = 256;
    for (int32_t b = 0; b < 256; b++) plen[b] = 1;
    for (int32_t i = 0; i < n_merges; i++) {
        int32_t a = pairs[2 * i], b = pairs[2 * i + 1], id = 256 + i;
        if (a < 0 || a >= id || b < 0 || b >= id) {
            em_seterr(EM_ERR_FORMAT, "%s: merge %d joins tokens %d and %d, but only ids below %d exist then", op, i, a, b, id);
            goto fail;
        }
        plen[id] = plen[a] + plen[b];
        total += (uint64_t)plen[id];
        if (plen[id] > MAX_PIECE || total > MAX_PIECES_TOTAL) {
            em_seterr(EM_ERR_FORMAT, "%s: merge %d makes a token of %lld bytes (or %llu in all): too long", op, i,
                      (long long)plen[id], (unsigned long long)total);
            goto fail;
        }
        bool oom = false;
        if (!emio_pairmap_put(&t->merges, a, b, i, id, &oom)) {
            if (oom) goto oom;
            em_seterr(EM_ERR_FORMAT, "%s: merge %d repeats the pair (%d, %d)", op, i, a, b);
            goto fail;
        }
    }
    blob = malloc((size_t)total + 1);
    if (!blob) goto oom;
    int64_t at = 0;
    for (int32_t id = 0; id < 256 + n_merges; id++) {
        poff[id] = at;
        if (id < 256) {
            blob[at] = (char)id;
        } else {
            int32_t a = pairs[2 * (id - 256)], b = pairs[2 * (id - 256) + 1];
            memcpy(blob + at, blob + poff[a], (size_t)plen[a]);
            memcpy(blob + at + plen[a], blob + poff[b], (size_t)plen[b]);
        }
        at += plen[id];
    }
    for (int32_t id = 0; id < 256 + n_merges; id++) {
        pieces[id] = blob + poff[id];
        lens[id] = (size_t)plen[id];
    }
    pieces[n - 1] = EMIO_ENDOFTEXT;
    lens[n - 1] = strlen(EMIO_ENDOFTEXT);
    if (emio_tok_set_pieces(t, pieces, lens, n)) goto fail;
    t->merge_pairs = malloc((size_t)n_merges * 8 + 8);
    if (!t->merge_pairs) goto oom;
    if (n_merges) memcpy(t->merge_pairs, pairs, (size_t)n_merges * 8);
    t->n_merges = n_merges;
    for (int b = 0; b < 256; b++) t->byte_id[b] = b;
    t->bos = t->eos = t->special = n - 1;
    free(plen); free(poff); free(pieces); free(lens); free(blob);
    return t;
oom:
    em_seterr(EM_ERR_OOM, "%s: out of memory", op);
fail:
    em_tokenizer_free(t);
    free(plen); free(poff); free(pieces); free(lens); free(blob);
    return NULL;
}

/* ---- training --------------------------------------------------------------------------------- */
typedef struct {
    int32_t *sym;
    int32_t len;
    int64_t count;
} word;

typedef struct {
    int32_t a, b;
    int64_t count, pushed;  /* current count; the count of its newest heap entry */
    int32_t *words;         /* words that contain (or contained) the pair; may repeat */
    int32_t nw, capw;
    int32_t stamp;          /* last merge that changed it */
} pairstat;

typedef struct {
    int64_t count;
    int32_t a, b, idx;
} hentry;

typedef struct {
    word *w;
    int32_t nw, capw;
    emio_strmap wmap;       /* word bytes (in the text) -> word index */
    pairstat *p;
    int32_t np, capp;
    emio_pairmap pmap;      /* (a, b) -> pair index (in the rank slot) */
    hentry *h;
    size_t nh, caph;
    int32_t *changed;       /* pairs changed by the current merge */
    int32_t nchanged, capchanged;
    int32_t *wstamp;        /* last merge that visited each word */
    int64_t *plen;          /* byte length of each token */
    bool oom;
    const uint8_t *text;
} trainer;

static bool hbefore(const hentry *x, const hentry *y) {
    if (x->count != y->count) return x->count > y->count;
    if (x->a != y->a) return x->a < y->a;
    return x->b < y->b;
}

static void hpush(trainer *T, hentry e) {
    if (T->nh == T->caph) {
        size_t cap = T->caph ? T->caph * 2 : 1024;
        hentry *q = realloc(T->h, cap * sizeof *q);
        if (!q) { T->oom = true; return; }
        T->h = q;
        T->caph = cap;
    }
    size_t i = T->nh++;
    while (i > 0 && hbefore(&e, &T->h[(i - 1) / 2])) {
        T->h[i] = T->h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    T->h[i] = e;
}

static hentry hpop(trainer *T) {
    hentry top = T->h[0], x = T->h[--T->nh];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= T->nh) break;
        if (c + 1 < T->nh && hbefore(&T->h[c + 1], &T->h[c])) c++;
        if (!hbefore(&T->h[c], &x)) break;
        T->h[i] = T->h[c];
        i = c;
    }
    if (T->nh) T->h[i] = x;
    return top;
}

static int32_t pair_index(trainer *T, int32_t a, int32_t b) {
    int32_t idx, unused;
    if (emio_pairmap_get(&T->pmap, a, b, &idx, &unused)) return idx;
    if (T->np == T->capp) {
        int32_t cap = T->capp ? T->capp * 2 : 1024;
        pairstat *q = realloc(T->p, (size_t)cap * sizeof *q);
        if (!q) { T->oom = true; return -1; }
        T->p = q;
        T->capp = cap;
    }
    idx = T->np;
    if (!emio_pairmap_put(&T->pmap, a, b, idx, 0, &T->oom)) return -1;
    T->p[T->np++] = (pairstat){.a = a, .b = b, .stamp = -1};
    return idx;
}

/* adds delta occurrences of every adjacent pair of word wi (which is listed under each pair) */
static void count_pairs(trainer *T, int32_t wi, int64_t sign, int32_t merge) {
    word *w = &T->w[wi];
    for (int32_t i = 0; i + 1 < w->len && !T->oom; i++) {
        int32_t idx = pair_index(T, w->sym[i], w->sym[i + 1]);
        if (idx < 0) return;
        pairstat *p = &T->p[idx];
        p->count += sign * w->count;
        if (sign > 0 && (p->nw == 0 || p->words[p->nw - 1] != wi)) {
            if (p->nw == p->capw) {
                int32_t cap = p->capw ? p->capw * 2 : 4;
                int32_t *q = realloc(p->words, (size_t)cap * sizeof *q);
                if (!q) { T->oom = true; return; }
                p->words = q;
                p->capw = cap;
            }
            p->words[p->nw++] = wi;
        }
        if (p->stamp != merge) {
            p->stamp = merge;
            if (T->nchanged == T->capchanged) {
                int32_t cap = T->capchanged ? T->capchanged * 2 : 1024;
                int32_t *q = realloc(T->changed, (size_t)cap * sizeof *q);
                if (!q) { T->oom = true; return; }
                T->changed = q;
                T->capchanged = cap;
            }
            T->changed[T->nchanged++] = idx;
        }
    }
}

static em_status on_word(void *ctx, size_t start, size_t end) {
    trainer *T = ctx;
    size_t n = end - start;
    if (n > INT32_MAX / 2) return em_seterr(EM_ERR_ARG, "em_tokenizer_train_bpe: a word of %zu bytes is too long", n);
    int32_t wi = emio_strmap_get(&T->wmap, (const char *)T->text + start, n);
    if (wi >= 0) {
        T->w[wi].count++;
        return EM_OK;
    }
    if (T->nw == T->capw) {
        int32_t cap = T->capw ? T->capw * 2 : 1024;
        word *q = realloc(T->w, (size_t)cap * sizeof *q);
        if (!q) return em_seterr(EM_ERR_OOM, "em_tokenizer_train_bpe: out of memory");
        T->w = q;
        T->capw = cap;
    }
    word w = {malloc(n * sizeof(int32_t)), (int32_t)n, 1};
    if (!w.sym || !emio_strmap_put(&T->wmap, (const char *)T->text + start, n, T->nw, &T->oom)) {
        free(w.sym);
        return em_seterr(EM_ERR_OOM, "em_tokenizer_train_bpe: out of memory");
    }
    for (size_t i = 0; i < n; i++) w.sym[i] = T->text[start + i];
    T->w[T->nw++] = w;
    return EM_OK;
}

static void free_trainer(trainer *T) {
    for (int32_t i = 0; i < T->nw; i++) free(T->w[i].sym);
    for (int32_t i = 0; i < T->np; i++) free(T->p[i].words);
    free(T->w); free(T->p); free(T->h); free(T->changed); free(T->wstamp); free(T->plen);
    emio_strmap_free(&T->wmap);
    emio_pairmap_free(&T->pmap);
}

/* merge (a, b) -> id in word w, in place, left to right */
static void merge_word(word *w, int32_t a, int32_t b, int32_t id) {
    int32_t o = 0;
    for (int32_t i = 0; i < w->len; i++) {
        if (i + 1 < w->len && w->sym[i] == a && w->sym[i + 1] == b) {
            w->sym[o++] = id;
            i++;
        } else {
            w->sym[o++] = w->sym[i];
        }
    }
    w->len = o;
}

em_tokenizer_t *em_tokenizer_train_bpe(const char *text, size_t len, int32_t vocab_size) {
    static const char *op = "em_tokenizer_train_bpe";
    if (!text && len) return em_seterr_null(EM_ERR_ARG, "%s: text is NULL", op);
    if (vocab_size < 257 || vocab_size > (1 << 20))
        return em_seterr_null(EM_ERR_ARG, "%s: vocab_size %d must be in [257, 2^20] (256 bytes + merges + <|endoftext|>)", op, vocab_size);
    int32_t want = vocab_size - 257;
    trainer T = {.text = (const uint8_t *)text};
    int32_t *merges = malloc((size_t)want * 8 + 8);
    T.plen = malloc(((size_t)vocab_size) * sizeof *T.plen);
    em_tokenizer_t *tok = NULL;
    if (!merges || !T.plen) { em_seterr(EM_ERR_OOM, "%s: out of memory", op); goto out; }
    for (int b = 0; b < 256; b++) T.plen[b] = 1;
    /* distinct words with their counts; literal <|endoftext|> separates documents */
    const size_t sn = strlen(EMIO_ENDOFTEXT);
    for (size_t i = 0; i < len;) {
        const char *hit = memmem(text + i, len - i, EMIO_ENDOFTEXT, sn);
        size_t end = hit ? (size_t)(hit - text) : len;
        T.text = (const uint8_t *)text + i; /* on_word's offsets are relative to the segment */
        if (emio_gpt2_split(T.text, end - i, on_word, &T)) goto out;
        i = hit ? end + sn : len;
    }
    T.wstamp = malloc(((size_t)T.nw + 1) * sizeof *T.wstamp);
    if (!T.wstamp) { em_seterr(EM_ERR_OOM, "%s: out of memory", op); goto out; }
    for (int32_t i = 0; i < T.nw; i++) {
        T.wstamp[i] = -1;
        count_pairs(&T, i, +1, -1);
    }
    for (int32_t i = 0; i < T.np && !T.oom; i++) {
        T.p[i].pushed = T.p[i].count;
        hpush(&T, (hentry){T.p[i].count, T.p[i].a, T.p[i].b, i});
    }
    int32_t m = 0;
    while (m < want && T.nh && !T.oom) {
        hentry e = hpop(&T);
        pairstat *p = &T.p[e.idx];
        if (e.count != p->count) continue; /* stale */
        if (p->count < 2) break;
        int32_t id = 256 + m;
        if (T.plen[e.a] + T.plen[e.b] > MAX_PIECE) continue; /* never make absurdly long tokens */
        T.plen[id] = T.plen[e.a] + T.plen[e.b];
        merges[2 * m] = e.a;
        merges[2 * m + 1] = e.b;
        T.nchanged = 0;
        int32_t nw = p->nw;
        for (int32_t k = 0; k < nw && !T.oom; k++) {
            int32_t wi = T.p[e.idx].words[k]; /* re-read: count_pairs may move T.p */
            if (T.wstamp[wi] == m) continue;
            T.wstamp[wi] = m;
            word *w = &T.w[wi];
            bool has = false;
            for (int32_t i = 0; i + 1 < w->len && !has; i++) has = w->sym[i] == e.a && w->sym[i + 1] == e.b;
            if (!has) continue;
            count_pairs(&T, wi, -1, m);
            merge_word(w, e.a, e.b, id);
            count_pairs(&T, wi, +1, m);
        }
        for (int32_t k = 0; k < T.nchanged && !T.oom; k++) {
            pairstat *q = &T.p[T.changed[k]];
            if (q->count != q->pushed && q->count > 0) {
                q->pushed = q->count;
                hpush(&T, (hentry){q->count, q->a, q->b, T.changed[k]});
            }
        }
        m++;
    }
    if (T.oom) { em_seterr(EM_ERR_OOM, "%s: out of memory", op); goto out; }
    tok = emio_bpe_from_merges(merges, m, op);
out:
    free(merges);
    free_trainer(&T);
    return tok;
}
