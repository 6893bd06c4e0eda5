/* memplan.c - memory planning: one arena per program, buffers reused once they are dead.
 *
 * needs: the schedule (c->k, c->mat, c->kern_of), c->inplace as offered. fills: c->buf[v] for
 * every value with a buffer, c->out_first, c->arena_bytes (the planned peak), c->unplanned_bytes
 * (the same buffers without reuse), c->inplace as kept, c->inplace_bytes and c->output_bytes.
 * emc_verify_plan checks that no two buffers alive at once overlap.
 *
 * Graph inputs and constants are the caller's buffers and graph outputs are the fresh tensors
 * emc_run hands back, so only intermediates live in the arena. An intermediate lives from the
 * kernel that writes it to the last kernel that reads it. Kernels are walked in run order: a
 * kernel's outputs are placed first (best fit in the free list, else at the end of the arena),
 * then the buffers it read for the last time are freed and merged with free neighbours, so an
 * output never shares bytes with an input of its own kernel (the generated code can use
 * `restrict` on every pointer). Offsets are 64-byte aligned, like every Ember allocation.
 *
 * Then the in-place outputs (below): an output that is the new value of a graph input (c->inplace,
 * the write-back targets em_compile offers) is kept there when no kernel can see the difference,
 * so the program writes it straight into the input tensor and the run allocates nothing for it.
 * EMBER_LOG=memory prints the refusals, the totals and the largest buffers alive at the peak.
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

/* the last kernel reading u: the end of an arena buffer's lifetime; for an input, where an
   output written over it may be written at the earliest (in-place outputs, below) */
static void mark_read(emc_ctx *c, int u, int kj) {
    if ((c->buf[u].kind == EMC_B_ARENA || c->buf[u].kind == EMC_B_INPUT) && kj > c->buf[u].last) c->buf[u].last = kj;
}

static void reads_of(emc_ctx *c, int e, int kj, unsigned char *seen) {
    if (e < 0 || seen[e]) return;
    seen[e] = 1;
    const emc_x *x = &c->pool.x[e];
    if (x->kind == EMX_LOAD) mark_read(c, (int)x->i, kj);
    for (int k = 0; k < x->n; k++) reads_of(c, c->pool.argv[x->a + k], kj, seen);
}

static em_status plan_inplace(emc_ctx *c);

/* EMBER_LOG=memory: the plan's totals and the biggest buffers alive at its peak */
static void log_peak(const emc_ctx *c, int kp) {
    const emg_graph *g = c->g;
    int n_out = 0;
    for (int o = 0; o < g->n_outputs; o++) n_out += c->inplace[o] >= 0;
    emb_log("memory", "plan: arena %.1f MiB (%.1f MiB of intermediates without reuse); outputs %.1f MiB fresh per "
            "run, %.1f MiB (%d output(s)) written into their write-back targets", (double)c->arena_bytes / 1048576.0,
            (double)c->unplanned_bytes / 1048576.0, (double)c->output_bytes / 1048576.0,
            (double)c->inplace_bytes / 1048576.0, n_out);
    if (kp < 0) return;
    int top[8], nt = 0, n_live = 0;
    int64_t live = 0;
    for (int v = 0; v < g->n_vals; v++) {
        const emc_buf *b = &c->buf[v];
        if (b->kind != EMC_B_ARENA || b->bytes == 0 || b->first > kp || b->last < kp) continue;
        live += b->bytes;
        n_live++;
        if (nt < 8) top[nt++] = v;
        else if (b->bytes > c->buf[top[7]].bytes) top[7] = v;
        else continue;
        for (int j = nt - 1; j > 0 && c->buf[top[j - 1]].bytes < c->buf[top[j]].bytes; j--) {
            int t = top[j];
            top[j] = top[j - 1];
            top[j - 1] = t;
        }
    }
    emb_log("memory", "plan: the peak is at kernel_%d of %d: %d buffer(s) alive, %.1f MiB; the largest:", kp, c->n_k,
            n_live, (double)live / 1048576.0);
    for (int t = 0; t < nt; t++) {
        const emc_buf *b = &c->buf[top[t]];
        const emc_lval *lv = &c->lv[top[t]];
        char tb[EMG_TYPE_BUF];
        emb_log("memory", "  %%%d %s %s: %.1f MiB, written by kernel_%d, last read by kernel_%d", top[t],
                lv->node >= 0 ? emo_table[g->nodes[lv->node].op].name : "input", emg_type_str(tb, &g->vals[top[t]].meta),
                (double)b->bytes / 1048576.0, b->first, b->last);
    }
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
    int peak_k = -1;
    c->unplanned_bytes = 0;
    for (int kj = 0; kj < c->n_k; kj++) {
        int64_t before = peak;
        for (int v = 0; v < g->n_vals; v++) {
            emc_buf *b = &c->buf[v];
            if (b->kind != EMC_B_ARENA || b->first != kj) continue;
            int64_t size = align_up(b->bytes);
            b->offset = size ? fl_alloc(&f, size, &peak) : 0;
            c->unplanned_bytes += size;
        }
        if (peak > before) peak_k = kj;
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
    em_status st = plan_inplace(c);
    if (st != EM_OK) return st;
    if (emb_log_on("memory")) log_peak(c, peak_k);
    if (emb_log_on("fusion")) {
        int n_bufs = 0;
        for (int v = 0; v < g->n_vals; v++) n_bufs += c->buf[v].kind == EMC_B_ARENA && c->buf[v].bytes > 0;
        emb_log("fusion", "memory plan: arena %lld bytes (planned peak) for %lld bytes of intermediates in %d "
                "buffer(s), reuse saves %lld bytes", (long long)peak, (long long)c->unplanned_bytes, n_bufs,
                (long long)(c->unplanned_bytes - peak));
    }
    return emc_verify_plan(c);
}

/* ---- in-place outputs ------------------------------------------------------------------------------
 * An output offered a write-back target (c->inplace[o] = graph input i, from emc_opts.out_target)
 * keeps it when writing the output's buffer over input i's storage cannot change what any kernel
 * reads: every other kernel that reads input i comes before the kernel that writes the output,
 * and that kernel itself reads input i not at all, or (pointwise kernels) only at the element it
 * is about to store (same flat index expression), or copies its inputs before writing (fallbacks).
 * The output must also hold its value alone (no other output slot, not an input or constant) and
 * match input i's dtype and shape. Codegen drops `restrict` on the pair in the writing kernel and
 * emits every load of an element before its stores; emc_run checks what only the call knows (input i
 * is contiguous and shares its storage with no other input) and otherwise uses a fresh tensor. */

/* how kernel kj reads value u: 0 not at all, 1 only through loads at flat index ix, 2 otherwise */
static int read_mode(const emc_ctx *c, int e, int u, int ix, unsigned char *seen) {
    if (e < 0 || seen[e]) return 0;
    seen[e] = 1;
    const emc_x *x = &c->pool.x[e];
    int r = 0;
    if (x->kind == EMX_LOAD && x->i == u) r = x->n == 1 && c->pool.argv[x->a] == ix ? 1 : 2;
    for (int k = 0; k < x->n && r < 2; k++) {
        int q = read_mode(c, c->pool.argv[x->a + k], u, ix, seen);
        if (q > r) r = q;
    }
    return r;
}

static int kernel_reads(const emc_ctx *c, int kj, int u, int ix, unsigned char *seen) {
    const emc_kernel *k = &c->k[kj];
    int r = 0;
    /* a reduce kernel's per-row epilogue runs after the row's loops: u read there at the element
       stored is fine, anywhere else (the loops, the values after all rows) is not */
    emc_role in_place_role = k->kind == EMC_K_REDUCE ? EMC_M_EPILOGUE : EMC_M_STORE;
    memset(seen, 0, (size_t)c->pool.nx + 1);
    for (int i = 0; i < k->n_m && r < 2; i++) {
        int q = read_mode(c, k->m[i].expr, u, k->m[i].role == in_place_role ? ix : -2, seen);
        if (q > r) r = q;
    }
    memset(seen, 0, (size_t)c->pool.nx + 1);
    for (int i = 0; i < k->n_m && r < 2; i++) /* a data-dependent store index reading u */
        if (k->m[i].store && read_mode(c, k->m[i].store_ix, u, -2, seen)) r = 2;
    if (k->kind == EMC_K_MATMUL && (k->A.value == u || k->B.value == u)) r = 2;
    if (k->kind == EMC_K_FALLBACK) {
        const emg_node *n = &c->g->nodes[k->node];
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i] == u) r = 2;
    }
    return r;
}

/* marks (mark[e] |= bit) the loads of u below e */
static void mark_loads(const emc_ctx *c, int e, int u, unsigned char bit, unsigned char *mark) {
    if (e < 0 || (mark[e] & 4)) return;
    mark[e] |= 4;
    const emc_x *x = &c->pool.x[e];
    if (x->kind == EMX_LOAD && x->i == u) mark[e] |= bit;
    for (int k = 0; k < x->n; k++) mark_loads(c, c->pool.argv[x->a + k], u, bit, mark);
}

/* a matmul's epilogue is printed member by member, each member's loads (the ones not printed by
   an earlier member) right before its store: true when every load of u is printed by member mv
   (the store of the in-place output) or an earlier one */
static bool loads_before_store(const emc_ctx *c, const emc_kernel *k, int mv, int u, unsigned char *mark) {
    memset(mark, 0, (size_t)c->pool.nx + 1);
    for (int i = 0; i <= mv; i++) mark_loads(c, k->m[i].expr, u, 1, mark);
    for (int e = 0; e < c->pool.nx; e++) mark[e] &= 1;
    for (int i = mv + 1; i < k->n_m; i++) mark_loads(c, k->m[i].expr, u, 2, mark);
    for (int e = 0; e < c->pool.nx; e++)
        if ((mark[e] & 2) && !(mark[e] & 1)) return false;
    return true;
}

/* keeps c->inplace[o] where allowed (see above), sets c->inplace_bytes and c->output_bytes */
static em_status plan_inplace(emc_ctx *c) {
    const emg_graph *g = c->g;
    unsigned char *seen = calloc((size_t)c->pool.nx + 1, 1);
    if (!seen) return em_seterr(EM_ERR_OOM, "compiler: out of memory");
    c->inplace_bytes = c->output_bytes = 0;
    bool log = emb_log_on("memory");
    for (int o = 0; o < g->n_outputs; o++) {
        int v = g->outputs[o], i = c->inplace[o];
        const emc_buf *b = &c->buf[v];
        if (b->kind != EMC_B_OUTPUT || c->out_first[o] != o) {
            c->inplace[o] = -1;
            continue;
        }
        const char *why = NULL;
        int kw = c->kern_of[v], late = -1;
        if (i < 0) {
            why = "";
        } else if (i >= g->n_inputs || !emg_meta_equal(&g->vals[v].meta, &g->vals[g->inputs[i]].meta)) {
            why = "its type differs from the target's";
        } else if (kw < 0) {
            why = "no kernel writes it";
        } else {
            for (int q = o + 1; q < g->n_outputs && !why; q++)
                if (g->outputs[q] == v) why = "another output slot holds the same value";
            for (int q = 0; q < g->n_outputs && !why; q++)
                if (q != o && c->inplace[q] == i) why = "another output has the same target";
        }
        int u = i >= 0 && i < g->n_inputs ? g->inputs[i] : -1;
        if (!why) {
            const emc_kernel *k = &c->k[kw];
            int ix = -1, mv = -1;
            emc_role role = k->kind == EMC_K_REDUCE ? EMC_M_EPILOGUE : EMC_M_STORE;
            for (int m = 0; m < k->n_m; m++)
                if (k->m[m].store && k->m[m].value == v && k->m[m].role == role) ix = k->m[m].store_ix, mv = m;
            int r = kernel_reads(c, kw, u, ix, seen);
            if (r == 2 && k->kind != EMC_K_FALLBACK)
                why = "the kernel writing it reads the target at other elements (or before its per-row epilogue)";
            else if (r == 1 && k->kind == EMC_K_MATMUL && !loads_before_store(c, k, mv, u, seen))
                why = "its matmul epilogue reads the target after storing it";
            else if (r == 1 && k->kind != EMC_K_POINTWISE && k->kind != EMC_K_REDUCE && k->kind != EMC_K_MATMUL)
                why = "the kernel writing it reads the target";
            if (!why && c->buf[u].last > kw) {
                late = c->buf[u].last;
                why = "a later kernel reads the target's old value";
            }
        }
        if (why) {
            if (log && i >= 0 && late >= 0)
                emb_log("memory", "output %d (%%%d) gets a fresh buffer, not its write-back target input %d: kernel_%d "
                        "writes it but kernel_%d still reads the input's old value", o, v, i, kw, late);
            else if (log && i >= 0)
                emb_log("memory", "output %d (%%%d) gets a fresh buffer, not its write-back target input %d: %s", o, v,
                        i, why);
            c->inplace[o] = -1;
            c->output_bytes += b->bytes;
        } else {
            c->inplace_bytes += b->bytes;
        }
    }
    free(seen);
    return EM_OK;
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
