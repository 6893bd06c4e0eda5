/* explain.c - observability: em_explain, EMBER_DEBUG_DIR dumps, and the disk-cache index.
 *
 * em_explain runs a function once the way em_call would, without compiling C: it traces it (the
 * guards a specialization would get, and the first graph break with its call site), then runs it
 * in lazy mode on the interpreter, which splits it into segments at every data read. The report
 * lists the graphs (the traced graph, or the segments when the function breaks), every break
 * with its reason and call site, the guards and the op counts.
 *
 * EMBER_DEBUG_DIR=dir makes every compiled program write dir/<name>/ with graph_traced.txt (as
 * captured), graph_optimized.txt (after CSE and DCE: what the compiler gets), graph_decomposed.txt
 * (composites replaced by primitives), kernels.txt (each generated kernel's header: the nodes it
 * fuses), source.c (the generated C) and program.txt (the cache key and the file it lives in).
 * <name> is what the log lines say (f3-spec0, f3-seg1-<hash>), so a log line leads to its files.
 *
 * The cache index: the disk cache is keyed by a hash of the source, compiler, flags and CPU, so a
 * key that changes is just a miss. To say why, every compiled program also writes
 * <cache dir>/index/<graph hash>.txt with the parts of its key; when a later compile of the same
 * graph misses, the index names the part that changed (EMBER_LOG=cache).
 */
#include "capture.h"

#include "../compiler/compiler.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static bool write_text(const char *dir, const char *file, const char *text) {
    char path[1200], tmp[1300];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) return false;
    size_t n = strlen(text);
    bool ok = fwrite(text, 1, n, f) == n;
    ok &= fclose(f) == 0;
    if (ok) ok = rename(tmp, path) == 0;
    if (!ok) unlink(tmp);
    return ok;
}

static void write_graph(const char *dir, const char *file, const emg_graph *g) {
    char *t = g ? emg_print(g) : NULL;
    if (t) write_text(dir, file, t);
    free(t);
}

/* the comment block above each kernel_N function of the generated source */
static char *kernel_headers(const char *src) {
    size_t cap = 4096, n = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    out[0] = 0;
    for (const char *p = src; (p = strstr(p, "/* kernel_")) != NULL;) {
        const char *e = strstr(p, "*/");
        if (!e) break;
        size_t k = (size_t)(e + 2 - p);
        if (n + k + 2 > cap) {
            cap = 2 * (n + k + 2);
            char *q = realloc(out, cap);
            if (!q) break;
            out = q;
        }
        memcpy(out + n, p, k);
        n += k;
        out[n++] = '\n';
        out[n] = 0;
        p = e + 2;
    }
    return out;
}

void emcap_dump(const char *name, const emg_graph *traced, const emg_graph *optimized, const void *prog) {
    const char *root = getenv("EMBER_DEBUG_DIR");
    if (!root || !root[0]) return;
    char dir[1024];
    if (snprintf(dir, sizeof dir, "%s/%s", root, name) >= (int)sizeof dir || !emb_mkdirs(dir)) {
        emb_log("code", "%s: cannot create the debug dump folder %s", name, dir);
        return;
    }
    write_graph(dir, "graph_traced.txt", traced);
    write_graph(dir, "graph_optimized.txt", optimized);
    emg_graph *d = optimized ? emg_clone(optimized) : NULL;
    if (d && emg_decompose(d) >= 0 && emg_cse(d) >= 0 && emg_dce(d) >= 0) write_graph(dir, "graph_decomposed.txt", d);
    emg_free(d);
    const emc_program *p = prog;
    const char *src = emc_program_source(p);
    if (src) {
        write_text(dir, "source.c", src);
        char *k = kernel_headers(src);
        if (k) write_text(dir, "kernels.txt", k);
        free(k);
        const emc_stats *st = emc_program_stats(p);
        char info[2600];
        snprintf(info, sizeof info, "name %s\nkey %s\ncached source %s\nkernels %d (fallbacks %d)\nnodes %d\n"
                 "arena %lld bytes\ndisk hit %d\n", name, st->key, st->source_path, st->kernels, st->fallbacks,
                 st->graph_nodes, (long long)st->planned_peak_bytes, st->disk_hit);
        write_text(dir, "program.txt", info);
    }
    em_clear_error();
    emb_log("code", "%s: debug dump in %s", name, dir);
}

void emcap_dump_text(const char *name, const char *file, const char *text) {
    const char *root = getenv("EMBER_DEBUG_DIR");
    if (!root || !root[0] || !text) return;
    char dir[1024];
    if (snprintf(dir, sizeof dir, "%s/%s", root, name) >= (int)sizeof dir || !emb_mkdirs(dir) || !write_text(dir, file, text))
        emb_log("code", "%s: cannot write %s into the debug dump folder %s", name, file, dir);
    else
        emb_log("code", "%s: debug dump in %s", name, dir);
}

/* ---- the cache index ------------------------------------------------------------------------ */
static const char *const part_names[EMC_KEY_PARTS] = {"source", "compiler", "flags", "cpu"};
static const char *const part_what[EMC_KEY_PARTS] = {
    "the generated source (a different Ember version, or a change in the graph's constants' layout)",
    "the C compiler (its --version line or the EMBER_CC / CC command)",
    "the compiler flags (a different Ember version)",
    "the CPU (model or flags: programs are built with -march=native)"};

void emcap_cache_note(const emg_graph *g, const void *prog) {
    const emc_program *p = prog;
    const char *src = emc_program_source(p);
    if (!src || !g) return;
    char parts[EMC_KEY_PARTS][17], dir[900], idx[1000], file[64];
    if (!emc_jit_key_parts(src, NULL, parts, dir, sizeof dir)) return;
    char *text = emg_print(g);
    if (!text) {
        em_clear_error();
        return;
    }
    snprintf(file, sizeof file, "%016llx.txt", (unsigned long long)emcap_hash_str(text));
    free(text);
    snprintf(idx, sizeof idx, "%s/index", dir);
    const emc_stats *st = emc_program_stats(p);
    char path[1100], old[EMC_KEY_PARTS][17] = {{0}}, oldkey[65] = "";
    snprintf(path, sizeof path, "%s/%s", idx, file);
    FILE *f = fopen(path, "r");
    if (f) {
        char ln[256], name[32], val[80];
        while (fgets(ln, sizeof ln, f))
            if (sscanf(ln, "%31s %79s", name, val) == 2) {
                if (!strcmp(name, "key")) snprintf(oldkey, sizeof oldkey, "%.64s", val);
                for (int k = 0; k < EMC_KEY_PARTS; k++)
                    if (!strcmp(name, part_names[k])) snprintf(old[k], sizeof old[k], "%.16s", val);
            }
        fclose(f);
    }
    if (!st->disk_hit && oldkey[0] && strcmp(oldkey, st->key) != 0) {
        char changed[600] = "";
        size_t n = 0;
        for (int k = 0; k < EMC_KEY_PARTS; k++)
            if (strcmp(old[k], parts[k]) != 0)
                n += (size_t)snprintf(changed + n, sizeof changed - n, "%s%s (%s: %s -> %s)", n ? "; " : "",
                                      part_names[k], part_what[k], old[k][0] ? old[k] : "?", parts[k]);
        emb_log("cache", "disk cache miss for a graph compiled before (index %s/%s, old key %.16s, new key %.16s): "
                "changed: %s", idx, file, oldkey, st->key, n ? changed : "nothing in the key (the old files were removed)");
    } else if (!st->disk_hit && !oldkey[0]) {
        emb_log("cache", "disk cache miss for a graph not compiled before (index %s/%s)", idx, file);
    }
    if (!emb_mkdirs(idx)) return;
    char body[400];
    snprintf(body, sizeof body, "key %s\n%s %s\n%s %s\n%s %s\n%s %s\n", st->key, part_names[0], parts[0],
             part_names[1], parts[1], part_names[2], parts[2], part_names[3], parts[3]);
    write_text(idx, file, body);
}

/* ---- em_explain ------------------------------------------------------------------------------ */
static void count_ops(const emg_graph *g, int *counts) {
    for (int i = 0; g && i < g->n_nodes; i++) counts[g->nodes[i].op]++;
}

char *em_explain(em_traceable_fn fn, void *ctx, em_tensor_t *const *in, int n_in, int n_out) {
    if (!fn) return em_seterr_null(EM_ERR_ARG, "em_explain: fn is NULL");
    if (n_in < 0 || n_out < 0 || n_out > 4096 || (n_in > 0 && !in))
        return em_seterr_null(EM_ERR_ARG, "em_explain: bad input/output counts (n_in %d, n_out %d)", n_in, n_out);
    for (int i = 0; i < n_in; i++) {
        char what[32];
        snprintf(what, sizeof what, "in[%d]", i);
        if (!emt_check(in[i], "em_explain", what)) return NULL;
        if (emt_is_symbolic(in[i])) return em_seterr_null(EM_ERR_COMPILE, "em_explain: in[%d] is symbolic", i);
    }
    emcap_segcache sc = {0};
    sc.log_cap = 4096;
    if (!(sc.log = malloc(sc.log_cap))) return em_seterr_null(EM_ERR_OOM, "em_explain: out of memory");
    sc.log[0] = 0;
    emcap_trace tr;
    em_status st = emcap_trace_fn(fn, ctx, in, n_in, n_out, false, &tr);
    if (st != EM_OK) {
        emcap_segcache_free(&sc);
        return NULL;
    }
    char *graph = NULL;
    if (!tr.has_break && tr.g && emg_verify(tr.g) == EM_OK && emg_cse(tr.g) >= 0 && emg_dce(tr.g) >= 0)
        graph = emg_print(tr.g);
    /* run it once in lazy mode on the interpreter: the segments and every break */
    em_scope_t *s = em_scope_begin();
    em_tensor_t *small[16], **outs = n_out <= 16 ? small : calloc((size_t)n_out, sizeof *outs);
    if (!s || !outs) st = em_seterr(EM_ERR_OOM, "em_explain: out of memory");
    if (st == EM_OK) st = emcap_run_lazy(&sc, fn, ctx, in, n_in, outs, n_out);
    em_scope_end(s);
    if (outs != small) free(outs);
    /* the report */
    emcap_segcache rep = {0};
    rep.log_cap = 8192;
    rep.log = st == EM_OK ? malloc(rep.log_cap) : NULL;
    if (st == EM_OK && !rep.log) st = em_seterr(EM_ERR_OOM, "em_explain: out of memory");
    if (st != EM_OK) {
        char msg[1000];
        snprintf(msg, sizeof msg, "%s", em_last_error());
        em_status e = em_last_status() ? em_last_status() : EM_ERR_STATE;
        free(graph);
        emcap_trace_free(&tr);
        emcap_segcache_free(&sc);
        free(rep.log);
        em_seterr(e, "em_explain: the function failed: %s", msg);
        return NULL;
    }
    rep.log[0] = 0;
    int n_graphs = tr.has_break ? sc.n : 1;
    emcap_logf(&rep, "explain: %d graph(s), %d graph break(s)\n", n_graphs, sc.breaks);
    emcap_logf(&rep, "\nguards (a specialization is reused while these hold):\n");
    emcap_logf(&rep, "  grad mode is %s\n", em_is_grad_enabled() ? "on" : "off");
    for (int i = 0; i < n_in; i++) {
        char a[EMB_SHAPE_BUF], b[EMB_SHAPE_BUF];
        emcap_logf(&rep, "  in[%d]: %s, shape %s, strides %s, requires_grad %d\n", i, em_dtype_name(in[i]->dtype),
                   emb_shape_str(a, in[i]->shape, in[i]->ndim), emb_shape_str(b, in[i]->strides, in[i]->ndim),
                   in[i]->requires_grad);
    }
    for (int i = 0; !tr.has_break && i < tr.n_lifted; i++) {
        char a[EMB_SHAPE_BUF];
        em_tensor_t *t = tr.lifted[i];
        emcap_logf(&rep, "  lifted[%d]: the same tensor (read through ctx), %s, shape %s, requires_grad %d, "
                   "has a gradient %d\n", i, em_dtype_name(t->dtype), emb_shape_str(a, t->shape, t->ndim),
                   t->requires_grad, t->grad != NULL);
    }
    emcap_logf(&rep, "\ngraph breaks:\n");
    if (!sc.breaks) emcap_logf(&rep, "  none\n");
    for (int i = 0, k = 0; i < sc.n; i++)
        if (sc.v[i]->breaks)
            emcap_logf(&rep, "  %d. %s\n     call site: %s\n     instead: compute with tensors (em_where, masks) "
                       "or read the value after em_call\n", ++k, sc.v[i]->reason, sc.v[i]->site);
    emcap_logf(&rep, "\nruns:\n%s", sc.log);
    int *counts = calloc(EMO_NUM_OPS, sizeof *counts);
    emcap_logf(&rep, "\ngraphs:\n");
    if (!tr.has_break) {
        emcap_logf(&rep, "--- graph 0 (the whole function)\n%s", graph ? graph : "(unavailable)\n");
        if (counts) count_ops(tr.g, counts);
    } else {
        for (int i = 0; i < sc.n; i++) {
            emcap_logf(&rep, "--- graph %d (segment %d, %s)\n%s", i, i,
                       sc.v[i]->breaks ? "ends at a graph break" : "ends where the function returns", sc.v[i]->text);
            if (counts) count_ops(sc.v[i]->g, counts);
        }
    }
    emcap_logf(&rep, "\nop counts:\n");
    int total = 0;
    for (int op = 0; counts && op < EMO_NUM_OPS; op++)
        if (counts[op]) {
            emcap_logf(&rep, "  %-16s %d\n", emo_table[op].name, counts[op]);
            total += counts[op];
        }
    emcap_logf(&rep, "  %-16s %d\n", "total", total);
    free(counts);
    free(graph);
    emcap_trace_free(&tr);
    emcap_segcache_free(&sc);
    return rep.log;
}
