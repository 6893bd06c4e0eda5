/* test_dynamic.c - dynamic shapes: a function whose input sizes change between calls compiles a
 * static specialization first, then one generalised program (compile 2) that serves every later
 * size without compiling; results equal eager at every size, on backend "c" and "interp".
 *
 * Covered: a token-by-token decode loop over the gpt2-tiny forward (T = 1..20, at most two
 * compiles; the count is printed); softmax/matmul and layer_norm chains over a growing dim (the
 * mean's count becomes a floating-point parameter); dims declared dynamic up front
 * (em_mark_dynamic, EM_DYNAMIC_ALL) and EM_DYNAMIC_OFF; a function whose code depends on the size
 * (a branch on the size, a constant that changes at n >= 10) falls back to specializations with
 * correct results; dims that share a symbol must stay equal; sizes 0/1 stay specialized; a
 * training step (backward, gradient write-backs) over a growing batch; the log lines and the
 * debug dump of the generalised source. stderr goes to a file so the log lines can be checked. */
#include "harness.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static char log_path[] = "/tmp/ember-dynlog-XXXXXX";
static long log_pos;

static char *new_log(void) {
    fflush(stderr);
    FILE *f = fopen(log_path, "r");
    if (!f) return calloc(1, 1);
    fseek(f, 0, SEEK_END);
    long end = ftell(f);
    fseek(f, log_pos, SEEK_SET);
    char *s = calloc((size_t)(end - log_pos) + 1, 1);
    if (s && fread(s, 1, (size_t)(end - log_pos), f) != (size_t)(end - log_pos)) s[0] = 0;
    fclose(f);
    log_pos = end;
    return s;
}

static double max_diff(em_tensor_t *a, em_tensor_t *b) {
    if (!a || !b || em_ndim(a) != em_ndim(b)) return 1e30;
    for (int d = 0; d < em_ndim(a); d++)
        if (em_size(a, d) != em_size(b, d)) return 1e30;
    return em_item(em_amax(em_abs(em_sub(em_cast(a, EM_F64), em_cast(b, EM_F64))), NULL, 0, false));
}

static const char *backends[] = {"c", "interp"};

/* ---- the decode loop ------------------------------------------------------------------------ */
static em_status gpt_fwd(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    (void)n_in;
    (void)n_out;
    out[0] = em_model_forward(ctx, in[0], NULL, NULL);
    return out[0] ? EM_OK : em_last_status();
}

static void test_decode_loop(void) {
    em_model_config cfg;
    TH_CHECK(em_model_config_preset("gpt2-tiny", &cfg) == EM_OK, "preset");
    cfg.block_size = 24;
    em_model_t *m = em_model_new(&cfg, 7);
    TH_CHECK(m != NULL, "model: %s", em_last_error());
    for (int b = 0; b < 2 && m; b++) {
        em_compiled_t *f = em_compile(gpt_fwd, m, &(em_compile_opts){.backend = backends[b], .fullgraph = true});
        int32_t ids[24];
        uint32_t r = 12345;
        double worst = 0;
        bool ok = true;
        for (int T = 1; T <= 20 && ok; T++) {
            em_scope_t *s = em_scope_begin();
            r = r * 1103515245u + 12345u;
            ids[T - 1] = (int32_t)((r >> 16) % (uint32_t)cfg.vocab_size); /* the prefix grows by one token */
            em_tensor_t *x = em_from_data(ids, (int64_t[]){1, T}, 2, EM_I32), *o = NULL, *e = NULL;
            ok = em_call(f, &x, 1, &o, 1) == EM_OK;
            TH_CHECK(ok, "[%s] T=%d runs: %s", backends[b], T, em_last_error());
            gpt_fwd(m, &x, 1, &e, 1);
            double d = ok ? max_diff(o, e) : 1e30;
            if (d > worst) worst = d;
            TH_CHECK(d < 1e-5, "[%s] T=%d: compiled equals eager (max diff %g)", backends[b], T, d);
            TH_CHECK(em_compiled_stats(f).compiles <= 2, "[%s] T=%d: at most two compiles so far (%d)", backends[b], T,
                     em_compiled_stats(f).compiles);
            em_scope_end(s);
        }
        em_compile_stats st = em_compiled_stats(f);
        printf("decode loop [%s], T = 1..20: %d compiles (%d generalised program), %d sizes served without "
               "compiling, %d fallbacks, max |compiled - eager| %.3g\n", backends[b], st.compiles,
               st.dynamic_programs, st.dynamic_sizes, st.dynamic_fallbacks, worst);
        TH_CHECK(st.compiles == 2 && st.dynamic_programs == 1 && st.dynamic_sizes == 18 && st.dynamic_fallbacks == 0 &&
                 st.eager_calls == 0, "[%s] T = 1..20: 2 compiles (%d), 18 sizes without compiling (%d)", backends[b],
                 st.compiles, st.dynamic_sizes);
        /* an old size again: a guard hit, nothing traced */
        em_scope_t *s = em_scope_begin();
        em_tensor_t *x = em_from_data(ids, (int64_t[]){1, 7}, 2, EM_I32), *o = NULL, *e = NULL;
        int hits = st.cache_hits;
        TH_CHECK(em_call(f, &x, 1, &o, 1) == EM_OK, "an old size");
        gpt_fwd(m, &x, 1, &e, 1);
        TH_CHECK(max_diff(o, e) < 1e-5 && em_compiled_stats(f).cache_hits == hits + 1 &&
                 em_compiled_stats(f).dynamic_sizes == 18, "[%s] an old size is a cache hit", backends[b]);
        em_scope_end(s);
        em_compiled_free(f);
    }
    em_model_free(m);
}

/* ---- simple functions over a growing dim ------------------------------------------------------- */
typedef struct {
    em_tensor_t *w, *g, *b;
} params;

/* rows grow: softmax(x W) then a sum over rows */
static em_status rows_fn(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    params *p = ctx;
    (void)n_in;
    (void)n_out;
    em_tensor_t *h = em_softmax(em_matmul(in[0], p->w), -1);
    out[0] = em_add(h, em_sum(h, (int[]){0}, 1, true));
    return out[0] ? EM_OK : em_last_status();
}

/* the normalised dim grows: layer_norm (a mean over the symbolic dim) then softmax and a matmul */
static em_status cols_fn(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    (void)ctx;
    (void)n_in;
    (void)n_out;
    em_tensor_t *x = in[0];
    em_tensor_t *h = em_softmax(em_layer_norm(x, NULL, NULL, 1e-5), -1);
    out[0] = em_matmul(h, em_transpose(x, 0, 1));
    return out[0] ? EM_OK : em_last_status();
}

static void run_sizes(const char *what, em_traceable_fn fn, void *ctx, const em_compile_opts *o, int lo, int hi,
                      bool grow_cols, int want_compiles) {
    em_compiled_t *f = em_compile(fn, ctx, o);
    for (int n = lo; n <= hi; n++) {
        em_scope_t *s = em_scope_begin();
        em_tensor_t *x = th_randn(grow_cols ? (int64_t[]){3, n} : (int64_t[]){n, 8}, 2, EM_F32), *r = NULL, *e = NULL;
        TH_CHECK(em_call(f, &x, 1, &r, 1) == EM_OK, "%s [%s] n=%d runs: %s", what, o->backend, n, em_last_error());
        fn(ctx, &x, 1, &e, 1);
        double d = max_diff(r, e);
        TH_CHECK(d < 1e-5, "%s [%s] n=%d: compiled equals eager (%g)", what, o->backend, n, d);
        em_scope_end(s);
    }
    em_compile_stats st = em_compiled_stats(f);
    TH_CHECK(st.compiles == want_compiles && st.eager_calls == 0, "%s [%s]: %d compiles for sizes %d..%d (want %d)",
             what, o->backend, st.compiles, lo, hi, want_compiles);
    em_compiled_free(f);
}

static void test_simple(void) {
    /* W has more columns than x has rows, so the matmul's split (over rows or columns, by the
       larger) is the same at every size (test_fallbacks shows what a switch does) */
    em_scope_t *s0 = em_scope_begin();
    params p = {th_randn((int64_t[]){8, 16}, 2, EM_F32), NULL, NULL};
    for (int b = 0; b < 2; b++) {
        em_compile_opts o = {.backend = backends[b]};
        run_sizes("softmax(x W) rows", rows_fn, &p, &o, 2, 12, false, 2);
        run_sizes("layer_norm/softmax/matmul cols", cols_fn, &p, &o, 3, 14, true, 2);
        /* declared up front: one compile for every size */
        em_compile_opts all = {.backend = backends[b], .dynamic = EM_DYNAMIC_ALL};
        run_sizes("EM_DYNAMIC_ALL", cols_fn, &p, &all, 4, 9, true, 1);
        em_compile_opts off = {.backend = backends[b], .dynamic = EM_DYNAMIC_OFF, .recompile_limit = 20};
        run_sizes("EM_DYNAMIC_OFF", rows_fn, &p, &off, 2, 6, false, 5);
    }
    /* em_mark_dynamic: the first call generalises */
    em_scope_t *s = em_scope_begin();
    em_compiled_t *f = em_compile(rows_fn, &p, NULL);
    for (int n = 5; n <= 9; n++) {
        em_tensor_t *x = th_randn((int64_t[]){n, 8}, 2, EM_F32), *r = NULL, *e = NULL;
        if (n == 5) TH_CHECK(em_mark_dynamic(x, 0) == EM_OK, "mark");
        TH_CHECK(em_call(f, &x, 1, &r, 1) == EM_OK, "marked n=%d", n);
        rows_fn(&p, &x, 1, &e, 1);
        TH_CHECK(max_diff(r, e) < 1e-5, "marked n=%d: equals eager", n);
    }
    TH_CHECK(em_compiled_stats(f).compiles == 1 && em_compiled_stats(f).dynamic_sizes == 4,
             "a dim marked dynamic compiles once for all sizes (%d compiles)", em_compiled_stats(f).compiles);
    em_compiled_free(f);
    em_tensor_t *x = th_randn((int64_t[]){2, 3}, 2, EM_F32);
    em_clear_error();
    TH_CHECK(em_mark_dynamic(x, 2) == EM_ERR_ARG, "a bad dim is refused");
    TH_CHECK_ERR(EM_ERR_ARG, "em_mark_dynamic: dim 2 is out of range", "with the dim in the message: %s",
                 em_last_error());
    TH_CHECK(em_mark_dynamic(x, -1) == EM_OK, "negative dims count from the end");
    TH_CHECK(em_mark_dynamic(NULL, 0) != EM_OK, "NULL is refused");
    TH_CHECK(em_compile(rows_fn, &p, &(em_compile_opts){.dynamic = (em_dynamic_mode)7}) == NULL &&
                 em_last_status() == EM_ERR_ARG, "a bad dynamic mode is refused");
    em_scope_end(s);
    em_scope_end(s0);
}

/* ---- fallbacks: code that depends on the size ------------------------------------------------ */
static em_status parity_fn(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    (void)ctx;
    (void)n_in;
    (void)n_out;
    em_tensor_t *x = in[0];
    /* fn reads its argument's size (concrete in each trace): odd and even sizes trace other ops */
    out[0] = em_size(x, 0) % 2 ? em_exp(em_neg(x)) : em_tanh(x);
    out[0] = em_sum(out[0], (int[]){1}, 1, false);
    return out[0] ? EM_OK : em_last_status();
}

static em_status threshold_fn(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    (void)ctx;
    (void)n_in;
    (void)n_out;
    /* the same ops at every size, but a constant that changes at n >= 10: the probes (n + 1, n + 2)
       cannot see it, so n = 10 must not run the generalised code */
    double c = em_size(in[0], 0) >= 10 ? 5.0 : 3.0;
    out[0] = em_mul_scalar(em_softmax(in[0], -1), c);
    return out[0] ? EM_OK : em_last_status();
}

static void test_fallbacks(void) {
    for (int b = 0; b < 2; b++) {
        em_compiled_t *f = em_compile(parity_fn, NULL, &(em_compile_opts){.backend = backends[b]});
        em_compiled_t *g = em_compile(threshold_fn, NULL, &(em_compile_opts){.backend = backends[b]});
        for (int n = 3; n <= 13; n++) {
            em_scope_t *s = em_scope_begin();
            em_tensor_t *x = th_randn((int64_t[]){n, 6}, 2, EM_F32), *r = NULL, *e = NULL;
            TH_CHECK(em_call(f, &x, 1, &r, 1) == EM_OK, "parity n=%d", n);
            parity_fn(NULL, &x, 1, &e, 1);
            TH_CHECK(max_diff(r, e) < 1e-5, "[%s] parity n=%d equals eager", backends[b], n);
            TH_CHECK(em_call(g, &x, 1, &r, 1) == EM_OK, "threshold n=%d", n);
            threshold_fn(NULL, &x, 1, &e, 1);
            TH_CHECK(max_diff(r, e) < 1e-5, "[%s] threshold n=%d equals eager (%g)", backends[b], n, max_diff(r, e));
            em_scope_end(s);
        }
        em_compile_stats sf = em_compiled_stats(f), sg = em_compiled_stats(g);
        printf("fallbacks [%s]: parity %d compiles %d fallbacks; threshold %d compiles %d fallbacks\n", backends[b],
               sf.compiles, sf.dynamic_fallbacks, sg.compiles, sg.dynamic_fallbacks);
        if (b == 0) {
            char *l = new_log();
            TH_CHECK(strstr(l, "-dyn0: sizes s0 = 10 pass its guards but the source differs from the template at line ") &&
                     strstr(l, ": `5.0f` where the template has `3.0f` (a literal the samples had equal); they get their "
                            "own specialization"), "the fallback is logged with the literal that differs");
            free(l);
            TH_CHECK(sf.dynamic_fallbacks >= 1 && sf.compiles <= 4, "parity: odd and even sizes have their own "
                     "programs (%d compiles, %d fallbacks)", sf.compiles, sf.dynamic_fallbacks);
            TH_CHECK(sg.dynamic_fallbacks >= 1 && sg.compiles >= 3, "threshold: n = 10 is caught (%d compiles, %d "
                     "fallbacks)", sg.compiles, sg.dynamic_fallbacks);
        }
        em_compiled_free(f);
        em_compiled_free(g);
    }
}

/* ---- relationships and 0/1 -------------------------------------------------------------------- */
static em_status pair_fn(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    (void)ctx;
    (void)n_in;
    (void)n_out;
    out[0] = em_relu(em_matmul(in[0], in[1])); /* (n, 4) x (4, m) */
    return out[0] ? EM_OK : em_last_status();
}

static void test_relations(void) {
    for (int b = 0; b < 2; b++) {
        em_compiled_t *f = em_compile(pair_fn, NULL, &(em_compile_opts){.backend = backends[b]});
        /* n and m grow together, so they share one symbol; then they part, then sizes 1 */
        int64_t sizes[][2] = {{3, 3}, {4, 4}, {6, 6}, {5, 7}, {1, 6}, {8, 8}};
        int want[] = {1, 2, 2, 3, 4, 4};
        for (int k = 0; k < 6; k++) {
            em_scope_t *s = em_scope_begin();
            em_tensor_t *in[2] = {th_randn((int64_t[]){sizes[k][0], 4}, 2, EM_F32),
                                  th_randn((int64_t[]){4, sizes[k][1]}, 2, EM_F32)};
            em_tensor_t *r = NULL, *e = NULL;
            TH_CHECK(em_call(f, in, 2, &r, 1) == EM_OK, "pair %d", k);
            pair_fn(NULL, in, 2, &e, 1);
            TH_CHECK(max_diff(r, e) < 1e-5, "[%s] (%lld, %lld) equals eager", backends[b], (long long)sizes[k][0],
                     (long long)sizes[k][1]);
            TH_CHECK(em_compiled_stats(f).compiles == want[k], "[%s] after (%lld, %lld): %d compiles (want %d)",
                     backends[b], (long long)sizes[k][0], (long long)sizes[k][1], em_compiled_stats(f).compiles,
                     want[k]);
            em_scope_end(s);
        }
        em_compiled_free(f);
    }
}

/* ---- a training step over a growing batch ------------------------------------------------------ */
static em_status train_fn(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    params *p = ctx;
    (void)n_in;
    (void)n_out;
    em_zero_grad(p->w);
    em_tensor_t *h = em_tanh(em_matmul(in[0], p->w));
    em_tensor_t *loss = em_mean(em_square(em_sub(h, in[1])), NULL, 0, false);
    if (!loss || em_backward(loss) != EM_OK) return em_last_status() ? em_last_status() : EM_ERR_STATE;
    out[0] = em_detach(loss);
    return out[0] ? EM_OK : em_last_status();
}

static void test_backward(void) {
    for (int b = 0; b < 2; b++) {
        em_scope_t *s = em_scope_begin();
        params pc = {th_randn((int64_t[]){6, 12}, 2, EM_F64), NULL, NULL}, pe = {em_clone(pc.w), NULL, NULL};
        em_set_requires_grad(pc.w, true);
        em_set_requires_grad(pe.w, true);
        em_compiled_t *f = em_compile(train_fn, &pc, &(em_compile_opts){.backend = backends[b]});
        for (int n = 2; n <= 9; n++) {
            em_tensor_t *in[2] = {th_randn((int64_t[]){n, 6}, 2, EM_F64), th_randn((int64_t[]){n, 12}, 2, EM_F64)};
            em_tensor_t *lc = NULL, *le = NULL;
            TH_CHECK(em_call(f, in, 2, &lc, 1) == EM_OK, "[%s] train n=%d: %s", backends[b], n, em_last_error());
            train_fn(&pe, in, 2, &le, 1);
            TH_CHECK(max_diff(lc, le) < 1e-12, "[%s] n=%d: the loss equals eager", backends[b], n);
            TH_CHECK(max_diff(em_grad(pc.w), em_grad(pe.w)) < 1e-12, "[%s] n=%d: the gradient equals eager (%g)",
                     backends[b], n, max_diff(em_grad(pc.w), em_grad(pe.w)));
        }
        em_compile_stats st = em_compiled_stats(f);
        /* call 1 makes w's gradient, so call 2 misses on that guard too (a static recompile); call 3
           misses only on sizes and generalises; 5..9 compile nothing */
        TH_CHECK(st.compiles == 3 && st.dynamic_programs == 1 && st.dynamic_sizes == 5,
                 "[%s] a training step over batch sizes 2..9: %d compiles, %d sizes without compiling", backends[b],
                 st.compiles, st.dynamic_sizes);
        em_compiled_free(f);
        em_scope_end(s);
    }
}

/* ---- the log lines and the debug dump --------------------------------------------------------- */
static void test_logs(const char *dump) {
    em_scope_t *s = em_scope_begin();
    params p = {th_randn((int64_t[]){8, 16}, 2, EM_F32), NULL, NULL};
    em_compiled_t *f = em_compile(rows_fn, &p, NULL);
    free(new_log());
    setenv("EMBER_DEBUG_DIR", dump, 1);
    for (int n = 1; n <= 3; n++) {
        em_tensor_t *x = th_randn((int64_t[]){n, 8}, 2, EM_F32), *r;
        TH_CHECK(em_call(f, &x, 1, &r, 1) == EM_OK, "n=%d", n);
    }
    unsetenv("EMBER_DEBUG_DIR");
    char *l = new_log();
    TH_CHECK(strstr(l, "-spec0's guard failed: in[0] size(0): 1 -> 2 (shape (1, 8) -> (2, 8))"),
             "the recompile names the failed guard:\n%s", l);
    TH_CHECK(strstr(l, "[ember recompiles] f") && strstr(l, ": dynamic shapes: in[0] size(0) is s0 (it changed: 1 -> 2); f"),
             "and what became symbolic and why");
    TH_CHECK(strstr(l, "-dyn0: one program for all sizes: ") && strstr(l, "compiled once"), "the generalisation");
    TH_CHECK(strstr(l, "-dyn0:   in[0]: f32 shape (s0, 8) contiguous requires_grad 0"), "its guards");
    TH_CHECK(strstr(l, "-dyn0: new sizes s0 = 3: the generated code matches the generalised program"),
             "and each new size:\n%s", l);
    free(l);
    char path[600];
    int id = 0;
    for (int k = 1; k < 1000 && !id; k++) {
        struct stat sb;
        snprintf(path, sizeof path, "%s/f%d-dyn0/source.c", dump, k);
        if (stat(path, &sb) == 0) id = k;
    }
    FILE *fp = id ? fopen(path, "r") : NULL;
    char text[4096] = "";
    if (fp) {
        size_t got = fread(text, 1, sizeof text - 1, fp);
        text[got] = 0;
        fclose(fp);
    }
    TH_CHECK(strstr(text, "generalised over sizes") && strstr(text, "struct ember_rt_dyn"),
             "EMBER_DEBUG_DIR holds the generalised source (%s)", path);
    em_compiled_free(f);
    em_scope_end(s);
}

int main(void) {
    int fd = mkstemp(log_path);
    if (fd < 0) return 1;
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    close(fd);
    char cache[] = "/tmp/ember-dyncache-XXXXXX", dump[] = "/tmp/ember-dyndump-XXXXXX";
    if (!mkdtemp(cache) || !mkdtemp(dump)) return 1;
    setenv("EMBER_CACHE_DIR", cache, 1);
    setenv("EMBER_LOG", "recompiles,guards,dynamic", 1);
    test_decode_loop();
    test_simple();
    test_fallbacks();
    test_relations();
    test_backward();
    test_logs(dump);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    if (!getenv("TEST_KEEP_LOG")) unlink(log_path);
    else fprintf(stderr, "log kept in %s\n", log_path);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", cache, dump);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", cache);
    return th_summary();
}
