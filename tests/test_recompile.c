/* test_recompile.c - recompiles and what they log: the failing guard with its old and new values
 * (EMBER_LOG=recompiles), the guard set of each specialization (guards), the recompile limit with
 * its single warning, and the disk-cache index that names the part of the key that changed.
 *
 * stderr is sent to a file and read back, so the tests check the exact log lines the docs show
 * (docs/troubleshooting.md). */
#include "harness.h"

#include <fcntl.h>
#include <unistd.h>

static char log_path[] = "/tmp/ember-log-XXXXXX";
static long log_pos;

/* the stderr text written since the last call (malloc'ed) */
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

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++) n++;
    return n;
}

static em_status fwd(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    em_tensor_t *w = ctx;
    (void)n_in;
    (void)n_out;
    out[0] = em_relu(em_matmul(in[0], w));
    return out[0] ? EM_OK : em_last_status();
}

static double max_diff(em_tensor_t *a, em_tensor_t *b) {
    return em_item(em_amax(em_abs(em_sub(em_cast(a, EM_F64), em_cast(b, EM_F64))), NULL, 0, false));
}

static void test_recompile_logs(void) {
    em_scope_t *s = em_scope_begin();
    em_tensor_t *w = th_randn((int64_t[]){4, 3}, 2, EM_F32);
    em_compiled_t *f = em_compile(fwd, w, &(em_compile_opts){.backend = "interp"});
    em_tensor_t *x = th_randn((int64_t[]){5, 4}, 2, EM_F32), *o;
    free(new_log());
    TH_CHECK(em_call(f, &x, 1, &o, 1) == EM_OK, "first call");
    char *l = new_log();
    TH_CHECK(strstr(l, "[ember guards] f") && strstr(l, "-spec0: 1 argument guard(s), 1 lifted-tensor guard(s), grad mode 1"),
             "the guard set is logged:\n%s", l);
    TH_CHECK(strstr(l, "-spec0:   in[0]: f32 shape (5, 4) strides (4, 1) requires_grad 0"), "with each guard");
    TH_CHECK(!strstr(l, "[ember recompiles]"), "the first compile is not a recompile");
    free(l);
    em_tensor_t *x7 = th_randn((int64_t[]){7, 4}, 2, EM_F32);
    TH_CHECK(em_call(f, &x7, 1, &o, 1) == EM_OK, "new shape");
    l = new_log();
    TH_CHECK(strstr(l, "recompiling (specialization 2 of at most 8): f") &&
             strstr(l, "-spec0's guard failed: in[0] size(0): 5 -> 7 (shape (5, 4) -> (7, 4))"),
             "the recompile names the guard with old and new values:\n%s", l);
    free(l);
    em_tensor_t *x64 = em_cast(x, EM_F64), *w64 = NULL;
    (void)w64;
    TH_CHECK(em_call(f, &x64, 1, &o, 1) != EM_OK || 1, "a dtype change traces again (matmul of f64 and f32 may fail)");
    l = new_log();
    TH_CHECK(strstr(l, "in[0] dtype: f32 -> f64"), "dtype changes are named:\n%s", l);
    free(l);
    em_tensor_t *xt = em_transpose(th_randn((int64_t[]){4, 5}, 2, EM_F32), 0, 1);
    em_call(f, &xt, 1, &o, 1);
    l = new_log();
    TH_CHECK(strstr(l, "in[0] stride(0): 4 -> 1 (strides (4, 1) -> (1, 5))"), "stride changes are named:\n%s", l);
    free(l);
    em_set_requires_grad(w, true);
    em_call(f, &x, 1, &o, 1);
    l = new_log();
    TH_CHECK(strstr(l, "lifted[0] (a tensor read through ctx) requires_grad: 0 -> 1"), "lifted tensors too:\n%s", l);
    free(l);
    em_compiled_free(f);
    em_scope_end(s);
}

static void test_limit(void) {
    em_scope_t *s = em_scope_begin();
    em_tensor_t *w = th_randn((int64_t[]){4, 3}, 2, EM_F32);
    em_compiled_t *f = em_compile(fwd, w, &(em_compile_opts){.recompile_limit = 3, .backend = "interp",
                                                                     .dynamic = EM_DYNAMIC_OFF}); /* sizes specialize */
    free(new_log());
    for (int n = 1; n <= 6; n++) {
        em_tensor_t *x = th_randn((int64_t[]){n, 4}, 2, EM_F32), *o, *r;
        TH_CHECK(em_call(f, &x, 1, &o, 1) == EM_OK, "call with %d rows", n);
        fwd(w, &x, 1, &r, 1);
        TH_CHECK(max_diff(o, r) == 0, "right values before and past the limit (n=%d)", n);
    }
    em_compile_stats st = em_compiled_stats(f);
    TH_CHECK(st.compiles == 3 && st.recompiles == 2 && st.eager_calls == 3, "3 compiles, then eager: %d %d %d",
             st.compiles, st.recompiles, st.eager_calls);
    char *l = new_log();
    TH_CHECK(count(l, "hit its recompile limit (3 specializations;") == 1, "exactly one warning:\n%s", l);
    TH_CHECK(strstr(l, "-spec2's guard failed: in[0] size(0): 3 -> 4"), "naming the last guard failure");
    TH_CHECK(count(l, "[ember recompiles]") == 2, "and two recompile lines");
    free(l);
    /* specializations still hit after the limit */
    em_tensor_t *x2 = th_randn((int64_t[]){2, 4}, 2, EM_F32), *o;
    em_call(f, &x2, 1, &o, 1);
    TH_CHECK(em_compiled_stats(f).eager_calls == 3 && em_compiled_stats(f).cache_hits == 1, "old shapes still hit");
    TH_CHECK(em_compile(fwd, w, &(em_compile_opts){.recompile_limit = -1}) == NULL && em_last_status() == EM_ERR_ARG,
             "a negative limit is refused");
    em_compiled_free(f);
    em_scope_end(s);
}

/* a program compiled with one compiler command, then (cache emptied) with another: the index
   says that the compiler part of the key changed */
static void test_cache_index(const char *cache) {
    em_scope_t *s = em_scope_begin();
    em_tensor_t *w = th_randn((int64_t[]){4, 3}, 2, EM_F32), *x = th_randn((int64_t[]){2, 4}, 2, EM_F32), *o;
    free(new_log());
    for (int round = 0; round < 2; round++) {
        if (round == 1) {
            char cmd[600];
            snprintf(cmd, sizeof cmd, "rm -f %s/*.so", cache);
            TH_CHECK(system(cmd) == 0, "cache emptied");
            setenv("EMBER_CC", "cc -DEMBER_TEST_OTHER_COMMAND", 1); /* another compiler command */
        }
        em_compiled_t *f = em_compile(fwd, w, NULL);
        TH_CHECK(em_call(f, &x, 1, &o, 1) == EM_OK, "round %d compiles: %s", round, em_last_error());
        em_compiled_free(f);
    }
    unsetenv("EMBER_CC");
    char *l = new_log();
    TH_CHECK(strstr(l, "disk cache miss for a graph not compiled before"), "the first miss is new:\n%s", l);
    TH_CHECK(strstr(l, "disk cache miss for a graph compiled before") && strstr(l, "changed: compiler (the C compiler"),
             "the second names the compiler:\n%s", l);
    TH_CHECK(!strstr(l, "changed: source"), "and not the source");
    free(l);
    em_scope_end(s);
}

int main(void) {
    int fd = mkstemp(log_path);
    if (fd < 0) return 1;
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    close(fd);
    char cache[] = "/tmp/ember-cache-XXXXXX";
    if (!mkdtemp(cache)) return 1;
    setenv("EMBER_CACHE_DIR", cache, 1);
    setenv("EMBER_LOG", "recompiles,guards,cache", 1); /* before the first log line: read once */
    test_recompile_logs();
    test_limit();
    test_cache_index(cache);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    if (!getenv("TEST_KEEP_LOG")) unlink(log_path);
    else fprintf(stderr, "log kept in %s\n", log_path);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", cache);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", cache);
    return th_summary();
}
