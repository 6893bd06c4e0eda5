/* profile.c - per-kernel timing of compiled programs (EMBER_LOG=profile).
 *
 * needs: a scheduled, planned emc_ctx (what each kernel is) and the generated program's timing
 * slots. fills: a table on stderr, one row per kernel.
 *
 * Design. Timing costs nothing when the channel is off because it is not in the program: codegen
 * prints the clock reads into ember_run only when `emb_log_on("profile")` was true at compile
 * time, so the source (and therefore the disk-cache key, a hash of the source) differs between a
 * profiled and a plain build of the same graph; a plain program is byte for byte what it was
 * before the profiler existed, apart from the runtime table's `prof` field, which it never reads.
 * A profiled ember_run reads omp_get_wtime() once before the first kernel and once after each
 * kernel (fallbacks included), adding the difference to rt->prof[kernel index]; one clock read
 * per kernel, no branch inside kernels. This module owns those slots (one double per kernel),
 * counts the calls (emc_prof_ran) and, when the program is freed, at process exit for programs
 * still alive, and every EMBER_PROFILE_EVERY calls if that is set, prints the table: kernels
 * sorted by their time per call, with their kind, iteration space and member ops, calls, total
 * ms, the first call's ms, ms per call, share of the program's kernel time and a rate. The
 * first call pays page faults (fresh outputs) and cold caches, so ms per call, the share and the
 * rate are over the calls after the first (the first alone when there was only one). The rate is
 * GFLOP/s for matmuls (2 M N K per product, the epilogue not counted), GB/s for everything else. Bytes are the compulsory traffic
 * of one call: every buffer the kernel writes, whole, plus every buffer it reads, counted once
 * and at most (elements of the iteration space) x (element size), so a gather from a large
 * table (an embedding) counts the rows it can touch, not the table; reads repeated by a
 * multi-loop reduction (softmax reads its row two or three times) are not counted again. A
 * summary gives the time per kernel kind (matmul against the rest).
 * Programs are registered in a list (a mutex) so an atexit handler can print the ones never
 * freed; the timing slots are written by ember_run on the calling thread only (emc_run is not
 * reentrant for one program).
 */
#include "../../compiler/compiler.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define DESC 256 /* room for a 96-char shape, a tag and 96 chars of ops */

typedef struct {
    int kj;
    emc_kkind kind;
    bool epi;          /* matmul with an epilogue */
    double flops;      /* per call (matmuls) */
    double bytes;      /* per call: compulsory reads + writes */
    char desc[DESC];
} kinfo;

struct emc_prof {
    int nk;
    double *slot;      /* seconds per kernel, written by the generated ember_run */
    double *first;     /* slot after the first call (which pays page faults and cold caches) */
    kinfo *k;
    long long calls;
    long long printed; /* calls when the table was last printed (no second table without new calls) */
    long long every;   /* EMBER_PROFILE_EVERY (0: off) */
    char key[17];
    char path[1024];
    struct emc_prof *next, *prev;
};

static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct emc_prof *live;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

bool emc_profile_on(void) { return emb_log_on("profile"); }

static double val_bytes(const emc_ctx *c, int v) {
    const emo_meta *m = &c->g->vals[v].meta;
    return (double)emt_numel_shape(m->shape, m->ndim) * (double)emt_esize(m->dtype);
}

/* the buffers loaded below e: mark them in rd[] */
static void loads_of(const emc_pool *p, int e, uint32_t gen, unsigned char *rd) {
    if (e < 0 || emc_seen(p, e, gen)) return;
    const emc_x *x = &p->x[e];
    if (x->kind == EMX_LOAD) rd[x->i] = 1;
    for (int k = 0; k < x->n; k++) loads_of(p, EMC_ARG(p, e, k), gen, rd);
}

static const char *val_op(const emc_ctx *c, int v) {
    int n = c->lv[v].node;
    return n >= 0 ? emo_table[c->g->nodes[n].op].name : "input";
}

/* "a, b x2, c" from the member ops (at most 6 distinct names) */
static void member_ops(const emc_ctx *c, const emc_kernel *k, char *out, size_t n) {
    const char *name[8];
    int cnt[8], nn = 0, more = 0;
    for (int i = 0; i < k->n_m; i++) {
        const emc_member *m = &k->m[i];
        if (m->role == EMC_M_EXTERN) continue;
        const char *s = val_op(c, m->value2 >= 0 ? m->value2 : m->value);
        int j = 0;
        while (j < nn && strcmp(name[j], s) != 0) j++;
        if (j < nn) cnt[j]++;
        else if (nn < 6) name[nn] = s, cnt[nn++] = 1;
        else more++;
    }
    size_t w = 0;
    out[0] = 0;
    for (int j = 0; j < nn && w < n; j++)
        w += (size_t)snprintf(out + w, n - w, cnt[j] > 1 ? "%s%s x%d" : "%s%s", j ? ", " : "", name[j], cnt[j]);
    if (more && w < n) snprintf(out + w, n - w, ", +%d more", more);
}

static void shape_text(char *b, size_t n, const int64_t *shape, int nd, const bool *mask) {
    size_t w = (size_t)snprintf(b, n, "[");
    for (int d = 0; d < nd && w < n; d++)
        w += (size_t)snprintf(b + w, n - w, "%s%lld%s", d ? "," : "", (long long)shape[d], mask && mask[d] ? "r" : "");
    if (w < n) snprintf(b + w, n - w, "]");
}

static void describe(const emc_ctx *c, int kj, kinfo *ki, unsigned char *rd) {
    const emc_kernel *k = &c->k[kj];
    const emc_pool *p = &c->pool;
    int nv = c->g->n_vals;
    ki->kj = kj;
    ki->kind = k->kind;
    memset(rd, 0, (size_t)nv);
    double iter = (double)emt_numel_shape(k->shape, k->nd), written = 0, read = 0;
    char ops[96], sh[96];
    member_ops(c, k, ops, sizeof ops);
    if (k->kind == EMC_K_FALLBACK) {
        const emg_node *nd = &c->g->nodes[k->node];
        for (int i = 0; i < nd->n_in; i++) read += val_bytes(c, nd->in[i]);
        for (int j = 0; j < nd->n_out; j++) written += val_bytes(c, nd->out0 + j);
        const emo_meta *m = &c->g->vals[nd->out0].meta;
        shape_text(sh, sizeof sh, m->shape, m->ndim, NULL);
        snprintf(ki->desc, DESC, "%s %s (eager kernel)", emo_table[nd->op].name, sh);
        ki->bytes = read + written;
        return;
    }
    uint32_t gen = emc_visit_new(p);
    for (int i = 0; i < k->n_m; i++) {
        const emc_member *m = &k->m[i];
        loads_of(p, m->expr, gen, rd);
        if (m->role == EMC_M_EXTERN || !m->store) continue;
        if (c->mat[m->value]) written += val_bytes(c, m->value);
        if (m->value2 >= 0 && c->mat[m->value2]) written += val_bytes(c, m->value2);
        ki->epi = true;
    }
    for (int v = 0; v < nv; v++) {
        if (!rd[v]) continue;
        double b = val_bytes(c, v), cap = iter * (double)emt_esize(c->g->vals[v].meta.dtype);
        read += b < cap ? b : cap;
    }
    if (k->kind == EMC_K_MATMUL) {
        const emc_view *A = &k->A, *B = &k->B;
        double K = (double)A->shape[A->nd - 1];
        double ea = (double)emt_esize(c->g->vals[A->value].meta.dtype);
        ki->flops = 2.0 * iter * K;
        read += (double)emt_numel_shape(A->shape, A->nd) * ea + (double)emt_numel_shape(B->shape, B->nd) * ea;
        written += iter * (double)emt_esize(c->g->vals[k->mm_value].meta.dtype);
        int64_t M = A->nd >= 2 ? A->shape[A->nd - 2] : 1, N = B->nd >= 2 ? B->shape[B->nd - 1] : 1;
        double items = iter / ((double)M * (double)N > 0 ? (double)M * (double)N : 1);
        int w = snprintf(ki->desc, DESC, "%lldx%lldx%lld", (long long)M, (long long)N, (long long)A->shape[A->nd - 1]);
        if (items > 1 && w < DESC) w += snprintf(ki->desc + w, DESC - (size_t)w, " x%.0f", items);
        if (ki->epi && w < DESC) snprintf(ki->desc + w, DESC - (size_t)w, " + epilogue: %s", ops);
    } else {
        shape_text(sh, sizeof sh, k->shape, k->nd, k->kind == EMC_K_REDUCE || k->kind == EMC_K_SCAN ? k->mask : NULL);
        snprintf(ki->desc, DESC, "%s%s %s", sh, k->kind == EMC_K_REDUCE && k->column ? " col" : "", ops);
        ki->epi = false;
    }
    ki->bytes = read + written;
}

static void print_all_live(void) {
    pthread_mutex_lock(&live_lock);
    for (struct emc_prof *p = live; p; p = p->next) emc_prof_print(p, "at exit");
    pthread_mutex_unlock(&live_lock);
}

static void register_exit(void) { atexit(print_all_live); }

emc_prof *emc_prof_new(const emc_ctx *c, const char *key, const char *source_path) {
    if (!emc_profile_on() || !c || c->n_k <= 0) return NULL;
    emc_prof *p = calloc(1, sizeof *p);
    unsigned char *rd = malloc((size_t)c->g->n_vals + 1);
    if (p) {
        p->slot = calloc((size_t)c->n_k, sizeof *p->slot);
        p->first = calloc((size_t)c->n_k, sizeof *p->first);
        p->k = calloc((size_t)c->n_k, sizeof *p->k);
    }
    if (!p || !rd || !p->slot || !p->first || !p->k) {
        free(rd);
        if (p) free(p->slot), free(p->first), free(p->k);
        free(p);
        emb_log("profile", "out of memory: this program is not profiled");
        return NULL;
    }
    p->nk = c->n_k;
    for (int kj = 0; kj < c->n_k; kj++) describe(c, kj, &p->k[kj], rd);
    free(rd);
    const char *e = getenv("EMBER_PROFILE_EVERY");
    p->every = e && e[0] ? atoll(e) : 0;
    snprintf(p->key, sizeof p->key, "%.16s", key ? key : "");
    snprintf(p->path, sizeof p->path, "%s", source_path ? source_path : "");
    pthread_once(&exit_once, register_exit);
    pthread_mutex_lock(&live_lock);
    p->next = live;
    if (live) live->prev = p;
    live = p;
    pthread_mutex_unlock(&live_lock);
    return p;
}

double *emc_prof_slots(emc_prof *p) { return p ? p->slot : NULL; }

void emc_prof_ran(emc_prof *p) {
    if (!p) return;
    if (++p->calls == 1) memcpy(p->first, p->slot, sizeof *p->first * (size_t)p->nk);
    if (p->every > 0 && p->calls % p->every == 0) emc_prof_print(p, "so far");
}

static int cmp_time(const void *a, const void *b, void *ctx) {
    const double *s = ctx;
    int x = *(const int *)a, y = *(const int *)b;
    return s[x] != s[y] ? (s[x] < s[y] ? 1 : -1) : x - y;
}

/* Per kernel: total seconds over all calls, the first call's, and the steady time per call (the
   calls after the first; the first alone when there was one call). Rows go by steady time. */
void emc_prof_print(emc_prof *p, const char *when) {
    if (!p || p->calls == 0 || p->calls == p->printed) return;
    p->printed = p->calls;
    int *ord = malloc(sizeof *ord * (size_t)p->nk);
    double *per = malloc(sizeof *per * (size_t)p->nk);
    if (!ord || !per) {
        free(ord);
        free(per);
        return;
    }
    bool steady = p->calls > 1;
    double rest = steady ? (double)(p->calls - 1) : 1;
    double total = 0, first = 0, by_kind[5] = {0}, flops = 0, mm_s = 0;
    int n_kind[5] = {0};
    for (int j = 0; j < p->nk; j++) {
        ord[j] = j;
        per[j] = steady ? (p->slot[j] - p->first[j]) / rest : p->slot[j];
        total += per[j];
        first += p->first[j];
        by_kind[p->k[j].kind] += per[j];
        n_kind[p->k[j].kind]++;
        if (p->k[j].kind == EMC_K_MATMUL) flops += p->k[j].flops, mm_s += per[j];
    }
    qsort_r(ord, (size_t)p->nk, sizeof *ord, cmp_time, per);
    emb_log("profile", "program %s (%s): %d kernels, %lld calls (%s): %.3f ms in kernels per call%s (first call %.3f ms)",
            p->key, p->path, p->nk, p->calls, when, total * 1e3, steady ? " after the first" : "", first * 1e3);
    static const char *kn[] = {"pointwise", "reduce", "matmul", "scan", "fallback"};
    char sum[400];
    int w = 0;
    for (int t = 0; t < 5; t++)
        if (n_kind[t])
            w += snprintf(sum + w, sizeof sum - (size_t)w, "%s%s %d: %.3f ms (%.1f%%)", w ? ", " : "", kn[t], n_kind[t],
                          by_kind[t] * 1e3, total > 0 ? 100 * by_kind[t] / total : 0);
    emb_log("profile", "per call by kind: %s", sum);
    if (mm_s > 0) emb_log("profile", "matmuls: %.2f GFLOP per call at %.1f GFLOP/s", flops * 1e-9, flops / mm_s * 1e-9);
    emb_log("profile", "%5s %-11s %-10s %6s %10s %9s %9s %6s %10s  %s", "rank", "kernel", "kind", "calls", "total ms",
            "first ms", "ms/call", "%", "rate", "what (iteration space, r: reduced; matmul M x N x K; member ops)");
    for (int r = 0; r < p->nk; r++) {
        const kinfo *k = &p->k[ord[r]];
        double s = per[ord[r]];
        char kname[24], rate[24];
        snprintf(kname, sizeof kname, "kernel_%d", k->kj);
        if (s <= 0) snprintf(rate, sizeof rate, "-");
        else if (k->kind == EMC_K_MATMUL) snprintf(rate, sizeof rate, "%.1f GF/s", k->flops / s * 1e-9);
        else snprintf(rate, sizeof rate, "%.1f GB/s", k->bytes / s * 1e-9);
        emb_log("profile", "%5d %-11s %-10s %6lld %10.3f %9.4f %9.4f %5.1f%% %10s  %s", r + 1, kname,
                k->kind == EMC_K_MATMUL && k->epi ? "matmul+epi" : kn[k->kind], p->calls, p->slot[ord[r]] * 1e3,
                p->first[ord[r]] * 1e3, s * 1e3, total > 0 ? 100 * s / total : 0, rate, k->desc);
    }
    free(ord);
    free(per);
}

void emc_prof_free(emc_prof *p) {
    if (!p) return;
    pthread_mutex_lock(&live_lock);
    if (p->prev) p->prev->next = p->next;
    else live = p->next;
    if (p->next) p->next->prev = p->prev;
    pthread_mutex_unlock(&live_lock);
    emc_prof_print(p, "program freed");
    free(p->slot);
    free(p->first);
    free(p->k);
    free(p);
}
