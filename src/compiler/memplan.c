/* memplan.c - memory planning: one arena per program, buffers reused once they are dead.
 *
 * needs: the schedule (c->k, c->mat, c->kern_of). fills: c->buf[v] for every value with a
 * buffer, c->out_first, c->arena_bytes (the planned peak) and c->unplanned_bytes (the same
 * buffers without reuse). emc_verify_plan checks that no two buffers alive at once overlap.
 *
 * Graph inputs and constants are the caller's buffers and graph outputs are the fresh tensors
 * emc_run hands back, so only intermediates live in the arena. An intermediate lives from the
 * kernel that writes it to the last kernel that reads it. Kernels are walked in run order: a
 * kernel's outputs are placed first (best fit in the free list, else at the end of the arena),
 * then the buffers it read for the last time are freed and merged with free neighbours, so an
 * output never shares bytes with an input of its own kernel (the generated code can use
 * `restrict` on every pointer). Offsets are 64-byte aligned, like every Ember allocation.
 */
#include "compiler.h"

#define ALIGN 64

typedef struct {
    int64_t off, size;
} block;

typedef struct {
    block *b;
    int n, cap;
    int64_t end;
} freelist;

static int64_t align_up(int64_t n) { return (n + ALIGN - 1) / ALIGN * ALIGN; }

static bool fl_insert(freelist *f, int64_t off, int64_t size) {
    if (size <= 0) return true;
    if (f->n == f->cap) {
        int cap = f->cap ? f->cap * 2 : 32;
        block *b = realloc(f->b, sizeof *b * (size_t)cap);
        if (!b) return false;
        f->b = b;
        f->cap = cap;
    }
    int i = f->n;
    while (i > 0 && f->b[i - 1].off > off) {
        f->b[i] = f->b[i - 1];
        i--;
    }
    f->b[i] = (block){off, size};
    f->n++;
    /* merge with the next, then with the previous */
    if (i + 1 < f->n && f->b[i].off + f->b[i].size == f->b[i + 1].off) {
        f->b[i].size += f->b[i + 1].size;
        memmove(&f->b[i + 1], &f->b[i + 2], sizeof(block) * (size_t)(f->n - i - 2));
        f->n--;
    }
    if (i > 0 && f->b[i - 1].off + f->b[i - 1].size == f->b[i].off) {
        f->b[i - 1].size += f->b[i].size;
        memmove(&f->b[i], &f->b[i + 1], sizeof(block) * (size_t)(f->n - i - 1));
        f->n--;
    }
    /* a free block at the end shrinks the arena instead */
    if (f->n > 0 && f->b[f->n - 1].off + f->b[f->n - 1].size == f->end) {
        f->end = f->b[f->n - 1].off;
        f->n--;
    }
    return true;
}

static int64_t fl_alloc(freelist *f, int64_t size, int64_t *peak) {
    int best = -1;
    for (int i = 0; i < f->n; i++)
        if (f->b[i].size >= size && (best < 0 || f->b[i].size < f->b[best].size)) best = i;
    if (best >= 0) {
        int64_t off = f->b[best].off;
        f->b[best].off += size;
        f->b[best].size -= size;
        if (f->b[best].size == 0) {
            memmove(&f->b[best], &f->b[best + 1], sizeof(block) * (size_t)(f->n - best - 1));
            f->n--;
        }
        return off;
    }
    int64_t off = f->end;
    f->end += size;
    if (f->end > *peak) *peak = f->end;
    return off;
}

static void mark_read(emc_ctx *c, int u, int kj) {
    if (c->buf[u].kind == EMC_B_ARENA && kj > c->buf[u].last) c->buf[u].last = kj;
}

static void reads_of(emc_ctx *c, int e, int kj, unsigned char *seen) {
    if (e < 0 || seen[e]) return;
    seen[e] = 1;
    const emc_x *x = &c->pool.x[e];
    if (x->kind == EMX_LOAD) mark_read(c, (int)x->i, kj);
    for (int k = 0; k < x->n; k++) reads_of(c, c->pool.argv[x->a + k], kj, seen);
}

em_status emc_plan_memory(emc_ctx *c) {
    const emg_graph *g = c->g;
    c->buf = calloc((size_t)g->n_vals + 1, sizeof *c->buf);
    c->out_first = calloc((size_t)g->n_outputs + 1, sizeof *c->out_first);
    unsigned char *seen = calloc((size_t)c->pool.nx + 1, 1);
    if (!c->buf || !c->out_first || !seen) {
        free(seen);
        return em_seterr(EM_ERR_OOM, "compiler: out of memory");
    }
    for (int v = 0; v < g->n_vals; v++) {
        emc_buf *b = &c->buf[v];
        const emo_meta *m = &g->vals[v].meta;
        b->bytes = emt_numel_shape(m->shape, m->ndim) * (int64_t)emt_esize(m->dtype);
        b->first = b->last = -1;
        if (g->vals[v].kind == EMG_INPUT) {
            b->kind = EMC_B_INPUT;
            b->index = g->vals[v].index;
        } else if (g->vals[v].kind == EMG_CONST) {
            b->kind = EMC_B_CONST;
            b->index = g->vals[v].index;
        } else if (c->mat[v]) {
            b->kind = EMC_B_ARENA;
            b->first = b->last = c->kern_of[v];
        }
    }
    for (int o = 0; o < g->n_outputs; o++) {
        int v = g->outputs[o];
        c->out_first[o] = o;
        for (int q = 0; q < o; q++)
            if (g->outputs[q] == v) {
                c->out_first[o] = q;
                break;
            }
        if (c->buf[v].kind == EMC_B_ARENA) {
            c->buf[v].kind = EMC_B_OUTPUT;
            c->buf[v].index = o;
        }
    }
    for (int kj = 0; kj < c->n_k; kj++) {
        const emc_kernel *k = &c->k[kj];
        for (int i = 0; i < k->n_m; i++) reads_of(c, k->m[i].expr, kj, seen);
        memset(seen, 0, (size_t)c->pool.nx + 1);
        if (k->kind == EMC_K_MATMUL) {
            mark_read(c, k->A.value, kj);
            mark_read(c, k->B.value, kj);
        } else if (k->kind == EMC_K_FALLBACK) {
            const emg_node *n = &g->nodes[k->node];
            for (int i = 0; i < n->n_in; i++) mark_read(c, n->in[i], kj);
        }
    }
    free(seen);
    freelist f = {0};
    int64_t peak = 0;
    c->unplanned_bytes = 0;
    for (int kj = 0; kj < c->n_k; kj++) {
        for (int v = 0; v < g->n_vals; v++) {
            emc_buf *b = &c->buf[v];
            if (b->kind != EMC_B_ARENA || b->first != kj) continue;
            int64_t size = align_up(b->bytes);
            b->offset = size ? fl_alloc(&f, size, &peak) : 0;
            c->unplanned_bytes += size;
        }
        for (int v = 0; v < g->n_vals; v++) {
            const emc_buf *b = &c->buf[v];
            if (b->kind != EMC_B_ARENA || b->last != kj || b->bytes == 0) continue;
            if (!fl_insert(&f, b->offset, align_up(b->bytes))) {
                free(f.b);
                return em_seterr(EM_ERR_OOM, "compiler: out of memory");
            }
        }
    }
    free(f.b);
    c->arena_bytes = peak;
    if (emb_log_on("fusion")) {
        int n_bufs = 0;
        for (int v = 0; v < g->n_vals; v++) n_bufs += c->buf[v].kind == EMC_B_ARENA && c->buf[v].bytes > 0;
        emb_log("fusion", "memory plan: arena %lld bytes (planned peak) for %lld bytes of intermediates in %d "
                "buffer(s), reuse saves %lld bytes", (long long)peak, (long long)c->unplanned_bytes, n_bufs,
                (long long)(c->unplanned_bytes - peak));
    }
    return emc_verify_plan(c);
}

em_status emc_verify_plan(const emc_ctx *c) {
    const emg_graph *g = c->g;
    for (int v = 0; v < g->n_vals; v++) {
        const emc_buf *a = &c->buf[v];
        if (a->kind != EMC_B_ARENA || a->bytes == 0) continue;
        if (a->offset % ALIGN || a->offset + a->bytes > c->arena_bytes || a->first < 0 || a->last < a->first)
            return em_seterr(EM_ERR_COMPILE, "compiler: memory plan check failed: buffer of %%%d misplaced", v);
        for (int u = v + 1; u < g->n_vals; u++) {
            const emc_buf *b = &c->buf[u];
            if (b->kind != EMC_B_ARENA || b->bytes == 0) continue;
            bool live = a->first <= b->last && b->first <= a->last;
            bool overlap = a->offset < b->offset + b->bytes && b->offset < a->offset + a->bytes;
            if (live && overlap)
                return em_seterr(EM_ERR_COMPILE, "compiler: memory plan check failed: %%%d and %%%d are alive "
                                 "at once and share bytes", v, u);
        }
    }
    return EM_OK;
}
