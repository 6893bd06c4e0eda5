/* test_profile.c - the per-kernel profiler (EMBER_LOG=profile, src/backend/cpu/profile.c) and
 * the switch that turns matmul epilogue fusion off (EMBER_NO_EPILOGUE_FUSION, schedule.c).
 *
 * The profiler is a log channel read once per process, so its cases run this binary again as a
 * child (`test_profile --child DIR MODE`) with EMBER_LOG set and a cache directory of their own,
 * and check what the child printed and the C file it generated:
 *   - channel on: one table row per kernel of the program (the child prints the kernel count from
 *     em_compiled_stats), every row with the child's call count and positive times (total, first call, per call), the shares
 *     adding up to 100%, and the generated source holding the clock reads;
 *   - channel off: nothing printed on the channel, and a source with no timing code;
 *   - EMBER_PROFILE_EVERY=2 with 3 calls: the table once "so far" and once when freed;
 *   - a program never freed: the table at exit.
 * EMBER_NO_EPILOGUE_FUSION is read at each compile, so its case runs in this process: a linear +
 * bias + gelu + residual is one kernel with fusion and two without, with bitwise equal results
 * (the epilogue is the same expression, computed from the same stored product).
 * Horizontal fusion (schedule.c) happens only over shared data: two pointwise outputs over
 * unrelated inputs are two kernels, over a shared input one; a value of a matmul's output shape
 * that does not read the product stays out of its epilogue. Each compiled result matches eager.
 */
#include "harness.h"

#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    em_tensor_t *w, *b;
} ctx_t;

/* linear + bias + gelu (a matmul kernel with its epilogue, as h is an output), softmax over rows (a reduce kernel),
   a column sum (column layout) and a residual: a few kernels of each kind */
static em_status prog(void *vc, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    ctx_t *c = vc;
    (void)n_in, (void)n_out;
    em_tensor_t *h = em_gelu(em_linear(in[0], c->w, c->b));
    em_tensor_t *s = em_softmax(em_mul_scalar(h, 0.5), -1);
    out[0] = em_add(s, em_sum(h, (int[]){0}, 1, true));
    out[1] = h; /* stored: the matmul kernel gets bias + gelu as its epilogue */
    return out[0] && out[1] ? EM_OK : em_last_status();
}

static em_status epi_prog(void *vc, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    ctx_t *c = vc;
    (void)n_in, (void)n_out;
    out[0] = em_add(em_gelu(em_linear(in[0], c->w, c->b)), in[1]);
    return out[0] ? EM_OK : em_last_status();
}

/* "nofree" mode: the program is freed by an atexit handler registered before the profiler's, so
   it runs after it (the profiler prints "at exit" first; leak checkers see nothing left) */
static em_compiled_t *late_f;
static em_scope_t *late_s;
static void free_late(void) {
    em_compiled_free(late_f);
    em_scope_end(late_s);
}

static int child_main(const char *dir, const char *mode) {
    setenv("EMBER_CACHE_DIR", dir, 1);
    em_manual_seed(3);
    if (strcmp(mode, "nofree") == 0) atexit(free_late);
    em_scope_t *s = em_scope_begin();
    ctx_t c = {em_randn((int64_t[]){96, 64}, 2, EM_F32), em_randn((int64_t[]){96}, 1, EM_F32)};
    em_tensor_t *x = em_randn((int64_t[]){48, 64}, 2, EM_F32);
    em_compile_opts o = {.fullgraph = true};
    em_compiled_t *f = em_compile(prog, &c, &o);
    for (int i = 0; f && i < 3; i++) {
        em_tensor_t *y[2] = {0};
        if (em_call(f, &x, 1, y, 2) != EM_OK) return 3;
    }
    if (!f) return 2;
    printf("kernels=%d\n", em_compiled_stats(f).kernels);
    fflush(stdout);
    if (strcmp(mode, "nofree") == 0) { /* the table comes from the profiler's atexit handler */
        late_f = f;
        late_s = s;
        return 0;
    }
    em_compiled_free(f);
    em_scope_end(s);
    return 0;
}

/* runs the child with EMBER_LOG=log (NULL: unset) and extra env (NAME=VALUE or NULL); its stdout and
   stderr (malloc'ed) */
static char *run_child(const char *dir, const char *mode, const char *log, const char *extra, int *status) {
    char path[] = "/tmp/ember-prof-log-XXXXXX";
    int fd = mkstemp(path);
    *status = -1;
    if (fd < 0) return NULL;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        if (log) setenv("EMBER_LOG", log, 1);
        else unsetenv("EMBER_LOG");
        unsetenv("EMBER_PROFILE_EVERY");
        if (extra) putenv((char *)extra);
        execl("/proc/self/exe", "test_profile", "--child", dir, mode, (char *)NULL);
        _exit(99);
    }
    int st = -1;
    waitpid(pid, &st, 0);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    off_t n = lseek(fd, 0, SEEK_END);
    char *text = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (text && pread(fd, text, (size_t)n, 0) != (ssize_t)n) n = 0;
    if (text) text[n] = 0;
    close(fd);
    unlink(path);
    return text;
}

/* the generated .c files in dir, concatenated (malloc'ed) */
static char *sources_in(const char *dir) {
    DIR *d = opendir(dir);
    size_t n = 0;
    char *all = calloc(1, 1);
    struct dirent *e;
    while (d && all && (e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 3 || strcmp(e->d_name + len - 2, ".c") != 0) continue;
        char p[1200];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        FILE *f = fopen(p, "r");
        if (!f) continue;
        fseek(f, 0, SEEK_END);
        long sz = ftell(f);
        fseek(f, 0, SEEK_SET);
        char *grown = realloc(all, n + (size_t)sz + 1);
        if (grown) {
            all = grown;
            n += fread(all + n, 1, (size_t)sz, f);
            all[n] = 0;
        }
        fclose(f);
    }
    if (d) closedir(d);
    return all;
}

typedef struct {
    int rows, tables, bad_calls, bad_time;
    double pct;
} table_t;

/* the table rows: "[ember profile]  rank kernel_N kind calls total-ms first-ms ms/call share% ..." */
static table_t parse(const char *out, long long want_calls) {
    table_t t = {0};
    for (const char *l = out; l && *l;) {
        const char *e = strchr(l, '\n');
        size_t len = e ? (size_t)(e - l) : strlen(l);
        char ln[512];
        snprintf(ln, sizeof ln, "%.*s", (int)(len < 511 ? len : 511), l);
        int rank, kn;
        char kind[32];
        long long calls;
        double ms, first, per, pct;
        if (strstr(ln, "[ember profile] program ")) t.tables++;
        if (sscanf(ln, "[ember profile] %d kernel_%d %31s %lld %lf %lf %lf %lf%%", &rank, &kn, kind, &calls, &ms, &first,
                   &per, &pct) == 8) {
            t.rows++;
            t.bad_calls += calls != want_calls;
            t.bad_time += !(ms > 0 && first > 0 && per > 0 && first < ms);
            t.pct += pct;
        }
        l = e ? e + 1 : NULL;
    }
    return t;
}

static int kernels_of(const char *out) {
    const char *k = out ? strstr(out, "kernels=") : NULL;
    return k ? atoi(k + 8) : -1;
}

static void rmdir_all(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "test_profile: could not remove %s\n", dir);
}

static void test_profile_on_off(void) {
    char d_on[] = "/tmp/ember-prof-on-XXXXXX", d_off[] = "/tmp/ember-prof-off-XXXXXX";
    TH_CHECK(mkdtemp(d_on) && mkdtemp(d_off), "temporary cache directories");
    int st;
    /* on */
    char *out = run_child(d_on, "free", "profile", NULL, &st);
    TH_CHECK(out && st == 0, "EMBER_LOG=profile: the child runs (exit %d)", st);
    int nk = kernels_of(out);
    table_t t = parse(out, 3);
    TH_CHECK(nk >= 3, "the program has several kernels (%d)", nk);
    TH_CHECK(t.tables == 1, "one table, printed when the program is freed (%d)", t.tables);
    TH_CHECK(t.rows == nk, "one row per kernel: %d rows for %d kernels", t.rows, nk);
    TH_CHECK(t.bad_calls == 0, "every row counts the 3 calls (%d do not)", t.bad_calls);
    TH_CHECK(t.bad_time == 0, "every kernel's time is positive (%d are not)", t.bad_time);
    TH_CHECK(fabs(t.pct - 100) < 1.0, "the shares add up to 100%% (%.2f)", t.pct);
    TH_CHECK(out && strstr(out, "matmul+epi") && strstr(out, "GF/s") && strstr(out, "GB/s"),
             "the matmul row has its epilogue and a GFLOP/s rate, the others GB/s");
    TH_CHECK(out && strstr(out, "[ember profile] per call by kind: "), "a summary per kernel kind");
    if (out && getenv("EMBER_TEST_VERBOSE")) printf("%s", out);
    char *src = sources_in(d_on);
    TH_CHECK(src && strstr(src, "omp_get_wtime()") && strstr(src, "prof[0] += "), "the profiled source reads the clock");
    free(src);
    free(out);
    /* off */
    out = run_child(d_off, "free", NULL, NULL, &st);
    TH_CHECK(out && st == 0, "EMBER_LOG unset: the child runs (exit %d)", st);
    TH_CHECK(kernels_of(out) == nk, "the same kernels without the profiler (%d)", kernels_of(out));
    TH_CHECK(out && !strstr(out, "[ember profile]"), "nothing printed on the profile channel");
    src = sources_in(d_off);
    TH_CHECK(src && strstr(src, "int ember_run(") && !strstr(src, "omp_get_wtime") && !strstr(src, "prof["),
             "the plain source has no timing code");
    free(src);
    free(out);
    /* another channel only: still no profile */
    out = run_child(d_off, "free", "code", NULL, &st);
    TH_CHECK(out && st == 0 && !strstr(out, "[ember profile]") && strstr(out, "[ember code]"),
             "EMBER_LOG=code prints no profile");
    free(out);
    /* every 2 calls: a table after call 2, then the final one */
    static char every[] = "EMBER_PROFILE_EVERY=2";
    out = run_child(d_on, "free", "profile", every, &st);
    t = parse(out, -1);
    TH_CHECK(out && st == 0 && t.tables == 2 && strstr(out, "2 calls (so far)") && strstr(out, "3 calls (program freed)"),
             "EMBER_PROFILE_EVERY=2: a table after 2 calls and one when freed (%d tables)", t.tables);
    TH_CHECK(t.rows == 2 * nk, "both tables have a row per kernel (%d rows)", t.rows);
    free(out);
    /* never freed: at exit */
    out = run_child(d_on, "nofree", "profile", NULL, &st);
    t = parse(out, 3);
    TH_CHECK(out && st == 0 && t.tables == 1 && t.rows == nk && strstr(out, "3 calls (at exit)"),
             "a program alive at exit prints its table then, once (%d tables, %d rows)", t.tables, t.rows);
    free(out);
    rmdir_all(d_on);
    rmdir_all(d_off);
}

static void test_no_epilogue_fusion(void) {
    char dir[] = "/tmp/ember-prof-epi-XXXXXX";
    TH_CHECK(mkdtemp(dir) != NULL, "temporary cache directory");
    setenv("EMBER_CACHE_DIR", dir, 1);
    em_scope_t *s = em_scope_begin();
    em_manual_seed(11);
    ctx_t c = {em_randn((int64_t[]){160, 96}, 2, EM_F32), em_randn((int64_t[]){160}, 1, EM_F32)};
    em_tensor_t *in[2] = {em_randn((int64_t[]){2, 40, 96}, 3, EM_F32), em_randn((int64_t[]){2, 40, 160}, 3, EM_F32)};
    em_compile_opts o = {.fullgraph = true};
    const char *settings[] = {NULL, "1", "0", ""};
    int kernels[4] = {0};
    em_tensor_t *got[4] = {0}, *want[1] = {0};
    TH_CHECK(epi_prog(&c, in, 2, want, 1) == EM_OK, "eager run");
    for (int i = 0; i < 4; i++) {
        if (settings[i]) setenv("EMBER_NO_EPILOGUE_FUSION", settings[i], 1);
        else unsetenv("EMBER_NO_EPILOGUE_FUSION");
        em_compiled_t *f = em_compile(epi_prog, &c, &o);
        em_status st = em_call(f, in, 2, &got[i], 1);
        TH_CHECK(st == EM_OK, "compiled run %d: %s", i, em_last_error());
        kernels[i] = em_compiled_stats(f).kernels;
        em_compiled_free(f);
    }
    unsetenv("EMBER_NO_EPILOGUE_FUSION");
    TH_CHECK(kernels[0] == 1, "fused: one matmul kernel with its epilogue (%d kernels)", kernels[0]);
    TH_CHECK(kernels[1] == 2, "EMBER_NO_EPILOGUE_FUSION=1: the matmul and a pointwise kernel (%d)", kernels[1]);
    TH_CHECK(kernels[2] == 1 && kernels[3] == 1, "\"0\" and \"\" leave fusion on (%d, %d)", kernels[2], kernels[3]);
    if (got[0] && got[1] && em_numel(got[0]) == em_numel(got[1])) {
        int64_t n = em_numel(got[0]), diff = 0;
        float *a = malloc(sizeof *a * (size_t)n), *b = malloc(sizeof *b * (size_t)n);
        TH_CHECK(a && b && em_to_data(got[0], a, sizeof *a * (size_t)n) == EM_OK &&
                 em_to_data(got[1], b, sizeof *b * (size_t)n) == EM_OK, "copy the results out");
        for (int64_t i = 0; a && b && i < n; i++) diff += memcmp(&a[i], &b[i], 4) != 0;
        free(a);
        free(b);
        TH_CHECK(diff == 0, "fused and unfused results are bitwise equal (%lld differ)", (long long)diff);
        em_tensor_t *d = em_amax(em_abs(em_sub(got[0], want[0])), NULL, 0, false);
        TH_CHECK(d && em_item(d) < 1e-4, "and match eager (max abs diff %g)", d ? em_item(d) : -1.0);
    }
    em_scope_end(s);
    rmdir_all(dir);
}

/* horizontal fusion only over shared data (schedule.c, shares_data) */
static em_status unrelated_pw(void *vc, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    (void)vc, (void)n_in, (void)n_out;
    out[0] = em_mul_scalar(em_exp(in[0]), 2);
    out[1] = em_add_scalar(em_tanh(in[1]), 1);
    return out[0] && out[1] ? EM_OK : em_last_status();
}

static em_status related_pw(void *vc, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    (void)vc, (void)n_in, (void)n_out;
    out[0] = em_mul_scalar(em_exp(in[0]), 2);
    out[1] = em_add(em_tanh(in[0]), in[1]);
    return out[0] && out[1] ? EM_OK : em_last_status();
}

static em_status unrelated_epi(void *vc, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    ctx_t *c = vc;
    (void)n_in, (void)n_out;
    out[0] = em_gelu(em_linear(in[0], c->w, NULL)); /* (40, 160): the epilogue reads the product */
    out[1] = em_mul_scalar(em_exp(in[1]), 3);       /* (40, 160), unrelated to it */
    return out[0] && out[1] ? EM_OK : em_last_status();
}

static void test_shared_data_fusion(void) {
    char dir[] = "/tmp/ember-prof-hf-XXXXXX";
    TH_CHECK(mkdtemp(dir) != NULL, "temporary cache directory");
    setenv("EMBER_CACHE_DIR", dir, 1);
    em_scope_t *s = em_scope_begin();
    em_manual_seed(5);
    ctx_t c = {em_randn((int64_t[]){160, 96}, 2, EM_F32), NULL};
    struct {
        const char *name;
        em_traceable_fn fn;
        em_tensor_t *in[2];
        int kernels;
    } cases[] = {
        {"two pointwise outputs over unrelated inputs", unrelated_pw,
         {em_randn((int64_t[]){64, 80}, 2, EM_F32), em_randn((int64_t[]){64, 80}, 2, EM_F32)}, 2},
        {"two pointwise outputs reading the same input", related_pw,
         {em_randn((int64_t[]){64, 80}, 2, EM_F32), em_randn((int64_t[]){64, 80}, 2, EM_F32)}, 1},
        {"a matmul epilogue and an unrelated value of its shape", unrelated_epi,
         {em_randn((int64_t[]){40, 96}, 2, EM_F32), em_randn((int64_t[]){40, 160}, 2, EM_F32)}, 2},
    };
    em_compile_opts o = {.fullgraph = true};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        em_compiled_t *f = em_compile(cases[i].fn, &c, &o);
        em_tensor_t *got[2] = {0}, *want[2] = {0};
        em_status st = em_call(f, cases[i].in, 2, got, 2);
        TH_CHECK(st == EM_OK && cases[i].fn(&c, cases[i].in, 2, want, 2) == EM_OK, "%s: runs", cases[i].name);
        int nk = em_compiled_stats(f).kernels;
        TH_CHECK(nk == cases[i].kernels, "%s: %d kernel(s) (got %d)", cases[i].name, cases[i].kernels, nk);
        for (int j = 0; st == EM_OK && j < 2; j++) {
            em_tensor_t *d = em_amax(em_abs(em_sub(got[j], want[j])), NULL, 0, false);
            TH_CHECK(d && em_item(d) < 1e-5, "%s: output %d matches eager (%g)", cases[i].name, j, d ? em_item(d) : -1.0);
        }
        em_compiled_free(f);
    }
    em_scope_end(s);
    rmdir_all(dir);
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "--child")) return child_main(argv[2], argv[3]);
    int64_t live = em_live_tensors();
    test_profile_on_off();
    test_no_epilogue_fusion();
    test_shared_data_fusion();
    TH_CHECK(em_live_tensors() == live, "no tensor leaked (%lld live)", (long long)(em_live_tensors() - live));
    return th_summary();
}
