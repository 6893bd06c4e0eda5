/* test_jit.c - the JIT's parallel build (src/backend/cpu/jit.c): a program big enough is compiled
 * in several translation units at once and linked into one .so.
 *
 * Checked: the split build gives bitwise the results of the whole-file build of the same program
 * (em_compile with EMBER_JIT_JOBS=1 and =3 in two fresh cache directories), both under one key; the
 * cache holds exactly <key>.c and <key>.so (no temporary part files left); two processes building
 * the same split program at once into one directory both load it; a failing compiler's messages,
 * exit status and the generated file's name reach the error; and a syntax error in a kernel that
 * lands in a later part is reported on its line of the whole <key>.c (#line directives); a
 * dynamic-shape program's generalised source is split as well and matches eager at new sizes.
 * `test_jit --load FILE DIR` is the child process of the concurrency check.
 */
#include "harness.h"

#include "capture/capture.h"
#include "compiler/compiler.h"

#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* twenty layers of layer_norm -> linear -> gelu -> softmax-weighted residual: ~40 kernels, ~90 KB of C, enough
   source for several parts */
#define LAYERS 20
static em_status deep_fn(void *c, em_tensor_t *const *in, int n, em_tensor_t **out, int m) {
    (void)c, (void)n, (void)m;
    em_tensor_t *h = in[0];
    for (int l = 0; l < LAYERS; l++) {
        em_tensor_t *y = em_gelu(em_linear(em_layer_norm(h, NULL, NULL, 1e-5), in[1 + l], NULL));
        h = em_add(h, em_mul(em_softmax(y, -1), em_tanh(y)));
        h = em_sub(h, em_mean(h, (int[]){1}, 1, true));
    }
    out[0] = h;
    return h ? EM_OK : em_last_status();
}

static bool same_bits(em_tensor_t *a, em_tensor_t *b) {
    if (!a || !b || em_numel(a) != em_numel(b)) return false;
    size_t n = (size_t)em_numel(a) * sizeof(float);
    float *x = malloc(n), *y = malloc(n);
    bool ok = x && y && em_to_data(a, x, n) == EM_OK && em_to_data(b, y, n) == EM_OK && !memcmp(x, y, n);
    free(x);
    free(y);
    return ok;
}

/* the names in dir (not . and ..), counted by kind: .so files, .c files, anything else */
static void count_dir(const char *dir, int *so, int *c, int *other, char *first_other, size_t n) {
    *so = *c = *other = 0;
    first_other[0] = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        const char *s = e->d_name;
        size_t l = strlen(s);
        if (!strcmp(s, ".") || !strcmp(s, "..") || !strcmp(s, "index")) continue;
        if (l == 67 && !strcmp(s + 64, ".so")) (*so)++;
        else if (l == 66 && !strcmp(s + 64, ".c")) (*c)++;
        else if ((*other)++ == 0) snprintf(first_other, n, "%s", s);
    }
    if (d) closedir(d);
}

static void rm_rf(const char *dir) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

static char *read_all(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    if (s) s[n] = 0;
    fclose(f);
    return s;
}

/* the only <key>.c in dir, read (malloc'ed), and its key */
static char *cached_source(const char *dir, char key[65]) {
    DIR *d = opendir(dir);
    char path[1200] = {0};
    for (struct dirent *e; d && (e = readdir(d));)
        if (strlen(e->d_name) == 66 && !strcmp(e->d_name + 64, ".c")) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            memcpy(key, e->d_name, 64);
            key[64] = 0;
        }
    if (d) closedir(d);
    return path[0] ? read_all(path) : NULL;
}

static em_tensor_t *run_in(const char *dir, const char *jobs, em_tensor_t **in, int *disk_hits) {
    setenv("EMBER_CACHE_DIR", dir, 1);
    setenv("EMBER_JIT_JOBS", jobs, 1);
    em_compiled_t *f = em_compile(deep_fn, NULL, &(em_compile_opts){.backend = "c", .fullgraph = true});
    em_tensor_t *o = NULL;
    if (em_call(f, in, 1 + LAYERS, &o, 1) != EM_OK) o = NULL;
    *disk_hits = em_compiled_stats(f).disk_cache_hits;
    TH_CHECK(em_compiled_stats(f).kernels >= 40, "the program has many kernels (%d)", em_compiled_stats(f).kernels);
    em_compiled_free(f);
    return o;
}


/* dynamic shapes: the generalised source (struct ember_rt_dyn inserted among the kernels, comments
   dropped) is split too, and serves sizes it was not traced at */
static void test_dynamic(em_tensor_t **in) {
    char dir[] = "/tmp/ember-jit-dyn-XXXXXX", again[] = "/tmp/ember-jit-dyn2-XXXXXX";
    TH_CHECK(mkdtemp(dir) && mkdtemp(again), "mkdtemp");
    setenv("EMBER_CACHE_DIR", dir, 1);
    setenv("EMBER_JIT_JOBS", "3", 1);
    em_compiled_t *f = em_compile(deep_fn, NULL, &(em_compile_opts){.backend = "c", .dynamic = EM_DYNAMIC_ALL});
    int64_t rows[] = {32, 40, 24, 56};
    for (int i = 0; i < 4; i++) {
        em_tensor_t *x[1 + LAYERS], *o = NULL, *e = NULL;
        memcpy(x, in, sizeof x);
        x[0] = th_randn((int64_t[]){rows[i], 48}, 2, EM_F32);
        TH_CHECK(em_call(f, x, 1 + LAYERS, &o, 1) == EM_OK, "dynamic call at %lld rows", (long long)rows[i]);
        deep_fn(NULL, x, 1 + LAYERS, &e, 1);
        em_tensor_t *d = e && o ? em_amax(em_abs(em_sub(o, e)), NULL, 0, false) : NULL;
        double err = d ? em_item(d) : INFINITY;
        TH_CHECK(err < 1e-4, "%lld rows: close to eager (max abs diff %g)", (long long)rows[i], err);
    }
    TH_CHECK(em_compiled_stats(f).dynamic_programs >= 1, "a generalised program was built (%d)",
             em_compiled_stats(f).dynamic_programs);
    em_compiled_free(f);
    /* the generalised source in the cache: built again elsewhere, it is split */
    char *tmpl = NULL;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d)) && !tmpl;) {
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        char *t = strlen(e->d_name) == 66 ? read_all(path) : NULL;
        if (t && strstr(t, "struct ember_rt_dyn")) tmpl = t;
        else free(t);
    }
    if (d) closedir(d);
    emc_jit j;
    TH_CHECK(tmpl && emc_jit_load(tmpl, &(emc_opts){.cache_dir = again}, &j) == EM_OK && j.units >= 2,
             "the generalised source is compiled in parts (%d)", tmpl ? j.units : -1);
    if (tmpl) emc_jit_unload(&j);
    free(tmpl);
    rm_rf(dir);
    rm_rf(again);
}

static char g_src_file[1100];

/* two processes build the same split program into one directory at once */
static void test_concurrent(const char *src) {
    char dir[] = "/tmp/ember-jit-cc-XXXXXX";
    TH_CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    pid_t pid[2];
    for (int i = 0; i < 2; i++) {
        pid[i] = fork();
        if (pid[i] == 0) {
            execl("/proc/self/exe", "test_jit", "--load", g_src_file, dir, (char *)NULL);
            _exit(127);
        }
    }
    for (int i = 0; i < 2; i++) {
        int status = 0;
        waitpid(pid[i], &status, 0);
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        TH_CHECK(code >= 2 && code < 100, "process %d built the program in parts (units %d) and loaded it", i, code);
    }
    int so, c, other;
    char first[300];
    count_dir(dir, &so, &c, &other, first, sizeof first);
    TH_CHECK(so == 1 && c == 1 && other == 0, "one .so and one .c in the shared cache (%d, %d; other: %d %s)", so, c,
             other, first);
    char key[65] = {0};
    char *back = cached_source(dir, key);
    TH_CHECK(back && !strcmp(back, src), "the cached .c is the whole program's source");
    free(back);
    /* a third load is a disk hit */
    setenv("EMBER_JIT_JOBS", "3", 1);
    emc_jit j;
    TH_CHECK(emc_jit_load(src, &(emc_opts){.cache_dir = dir}, &j) == EM_OK && j.disk_hit && j.units == 0,
             "the next load is a disk hit");
    emc_jit_unload(&j);
    rm_rf(dir);
}

/* a compiler that prints and fails; then a syntax error placed in a kernel of a later part */
static void test_failures(const char *src) {
    char dir[] = "/tmp/ember-jit-fail-XXXXXX";
    TH_CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    setenv("EMBER_JIT_JOBS", "3", 1);
    emc_jit j;
    em_status st = emc_jit_load(src, &(emc_opts){.cache_dir = dir, .cc = "sh -c 'echo cc-says-no >&2; exit 3' x"}, &j);
    TH_CHECK(st == EM_ERR_COMPILE && strstr(em_last_error(), "C compiler failed (exit 3)") &&
             strstr(em_last_error(), "cc-says-no") && strstr(em_last_error(), dir) && strstr(em_last_error(), ".c"),
             "a failing compiler: exit status, messages and the generated file in the error: %s", em_last_error());
    int so, c, other;
    char first[300];
    count_dir(dir, &so, &c, &other, first, sizeof first);
    TH_CHECK(so == 0 && c == 1 && other == 0, "no .so and no temporary files after a failure (%d .so, other %d %s)", so,
             other, first);
    /* the last kernel's body gets a syntax error; LPT puts the heaviest functions first, so with 3
       parts the last kernel is rarely in part 1, and the line must be the whole file's anyway */
    const char *k = src, *p;
    while ((p = strstr(k + 1, "\nstatic void kernel_")) != NULL) k = p;
    const char *body = strstr(k, "{\n");
    TH_CHECK(body != NULL, "the source has kernels");
    if (body) {
        size_t at = (size_t)(body - src) + 2, n = strlen(src);
        char *bad = malloc(n + 64);
        memcpy(bad, src, at);
        strcpy(bad + at, "    int oops = ;\n");
        strcat(bad, src + at);
        int line = 1;
        for (size_t i = 0; i < at; i++) line += src[i] == '\n';
        char want[32];
        snprintf(want, sizeof want, ".c:%d:", line);
        em_clear_error();
        st = emc_jit_load(bad, &(emc_opts){.cache_dir = dir}, &j);
        TH_CHECK(st == EM_ERR_COMPILE && strstr(em_last_error(), want) && strstr(em_last_error(), dir) &&
                 strstr(em_last_error(), "part "), "a syntax error is reported on the whole file's line (%s): %s", want,
                 em_last_error());
        TH_CHECK(j.units >= 2, "that build was split (%d units)", j.units);
        free(bad);
        count_dir(dir, &so, &c, &other, first, sizeof first);
        TH_CHECK(so == 0 && other == 0, "still no .so and no temporary files (other %d %s)", other, first);
    }
    rm_rf(dir);
}

static int load_child(const char *file, const char *dir) {
    char *src = read_all(file);
    if (!src) return 101;
    setenv("EMBER_JIT_JOBS", "3", 1);
    emc_jit j;
    em_status st = emc_jit_load(src, &(emc_opts){.cache_dir = dir}, &j);
    free(src);
    if (st != EM_OK) {
        fprintf(stderr, "child: %s\n", em_last_error());
        return 102;
    }
    int u = j.units;
    emc_jit_unload(&j);
    return u;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "--load")) return load_child(argv[2], argv[3]);
    em_scope_t *s = em_scope_begin();
    em_tensor_t *in[1 + LAYERS];
    in[0] = th_randn((int64_t[]){32, 48}, 2, EM_F32);
    for (int l = 0; l < LAYERS; l++) in[1 + l] = th_randn((int64_t[]){48, 48}, 2, EM_F32);
    char whole[] = "/tmp/ember-jit-1-XXXXXX", split[] = "/tmp/ember-jit-3-XXXXXX";
    TH_CHECK(mkdtemp(whole) && mkdtemp(split), "mkdtemp");
    int hits1, hits3;
    em_tensor_t *o1 = run_in(whole, "1", in, &hits1), *o3 = run_in(split, "3", in, &hits3);
    TH_CHECK(o1 && o3 && hits1 == 0 && hits3 == 0, "both built from scratch");
    TH_CHECK(same_bits(o1, o3), "the split build's results are bitwise the whole build's");
    em_tensor_t *e = NULL;
    deep_fn(NULL, in, 1 + LAYERS, &e, 1);
    em_tensor_t *d = e && o3 ? em_amax(em_abs(em_sub(o3, e)), NULL, 0, false) : NULL;
    double err = d ? em_item(d) : INFINITY;
    TH_CHECK(err < 1e-4, "and close to eager (max abs diff %g)", err);
    char k1[65] = {0}, k3[65] = {0};
    char *s1 = cached_source(whole, k1), *s3 = cached_source(split, k3);
    TH_CHECK(s1 && s3 && !strcmp(k1, k3) && !strcmp(s1, s3), "one source, one key for both builds");
    int so, c, other;
    char first[300];
    count_dir(split, &so, &c, &other, first, sizeof first);
    TH_CHECK(so == 1 && c == 1 && other == 0, "the split build's cache entry is one .so beside its .c (%d, %d; other: "
             "%d %s)", so, c, other, first);
    /* the source of the split build is big enough to be split: the concurrency check shows it */
    if (s3) {
        snprintf(g_src_file, sizeof g_src_file, "%s/program.txt", whole);
        FILE *f = fopen(g_src_file, "w");
        TH_CHECK(f && fputs(s3, f) >= 0 && fclose(f) == 0, "write the program's source");
        test_concurrent(s3);
        test_failures(s3);
    }
    test_dynamic(in);
    /* EMBER_JIT_JOBS=1 never splits */
    setenv("EMBER_JIT_JOBS", "1", 1);
    char one[] = "/tmp/ember-jit-one-XXXXXX";
    TH_CHECK(mkdtemp(one) != NULL, "mkdtemp");
    emc_jit j;
    TH_CHECK(s3 && emc_jit_load(s3, &(emc_opts){.cache_dir = one}, &j) == EM_OK && j.units == 1 && j.entry,
             "EMBER_JIT_JOBS=1 compiles the file whole");
    emc_jit_unload(&j);
    free(s1);
    free(s3);
    rm_rf(one);
    rm_rf(whole);
    rm_rf(split);
    unsetenv("EMBER_JIT_JOBS");
    em_scope_end(s);
    return th_summary();
}
