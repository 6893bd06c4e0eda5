/* jit.c - compiling generated C and loading it, with a content-addressed disk cache (the role of
 * Inductor's codecache).
 *
 * needs: the generated source. fills: an emc_jit with the loaded ember_run.
 *
 * The key is SHA-256 of the source, the compiler's `--version` first line, the flags, the
 * compiler command and the CPU (model and flags from /proc/cpuinfo, because of -march=native).
 * Files live in $EMBER_CACHE_DIR (default $XDG_CACHE_HOME/ember, else ~/.cache/ember) as
 * <key>.c and <key>.so. A hit dlopens <key>.so and compiles nothing, so a second process running
 * the same program pays no C compiler. A miss writes <key>.c and runs
 *
 *     $CC -std=gnu11 -O3 -march=native -fopenmp -fno-math-errno -ffp-contract=off -shared -fPIC
 *
 * into a temporary name that is then rename()d into place: concurrent processes may both
 * compile, but nobody ever loads a half-written file. -ffp-contract=off and -fno-math-errno are
 * what the eager kernels are built with (ISO C mode), so generated loops round like them. The
 * compiler is $EMBER_CC, else $CC, else cc; when it fails, the error names the generated file
 * and carries the compiler's messages (EMBER_LOG=code prints every file's path, =cache hits
 * and misses).
 *
 * Parallel build. A big program (the GPT-2 training step is 1 MB of C, 377 kernels) is compiled
 * in parts at once: split_pieces cuts the source at its top level into shared text (the header
 * comment and prelude, and any other top-level declaration, e.g. dynamic.c's struct
 * ember_rt_dyn) and functions (`static void kernel_N` with its comment, and ember_run). The
 * parts are min(jobs, function bytes / UNIT_BYTES), jobs being $EMBER_JIT_JOBS or the CPUs this
 * process may run on; functions go largest first to the lightest part (deterministic). Each part
 * is the shared text, its functions (kernels made `__attribute__((visibility("hidden")))`
 * instead of static, so the parts link but nothing leaves the .so but ember_run) and, in the
 * part holding ember_run, prototypes of the other kernels; `#line` directives keep every line
 * on its line of <key>.c, so compiler messages (and debuggers) name the whole file. The parts
 * are written to a private folder <key>.so.tmp.<pid>.<n>.<time>.d beside the entry, compiled with
 * `$CC CC_BASE -c` concurrently (one fork/exec each, output to a log file, so no pipe can fill),
 * linked with `$CC -shared -fPIC -fopenmp ... -lm` into the temporary .so, which is renamed into
 * place as before; the folder is removed whether or not it worked. The cache key, <key>.c and
 * <key>.so do not change with the split: the key still hashes the whole source, the compiler
 * and CC_FLAGS (the same code: -c plus -shared is -shared), so a whole and a split build of a
 * program are interchangeable (tests/test_jit.c checks bitwise equal results). Sources that are
 * small, or not shaped like codegen's output, are compiled whole. Splitting also cuts the total
 * work: gcc spends less per function on a 1/2-size unit (whole: 16.8 s user; two parts: 9.5 s
 * user for the training step, see docs/compiler.md).
 */
#include "../../compiler/compiler.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CC_FLAGS "-std=gnu11 -O3 -march=native -fopenmp -fno-math-errno -ffp-contract=off -shared -fPIC"
/* a program built in parts: each part with CC_BASE -c, then one link (the same code as CC_FLAGS) */
#define CC_BASE "-std=gnu11 -O3 -march=native -fopenmp -fno-math-errno -ffp-contract=off -fPIC"
#define LINK_FLAGS "-shared -fPIC -fopenmp"
#define UNIT_BYTES 32768 /* source bytes per part at least (cc takes about 20 us a byte at -O3) */
#define MAX_UNITS 64

/* ---- SHA-256 (FIPS 180-4) ------------------------------------------------------------------------ */
typedef struct {
    uint32_t h[8];
    uint8_t buf[64];
    size_t n;
    uint64_t len;
} sha256;

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
    0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
    0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
    0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

static uint32_t ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha_block(sha256 *s, const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    /* the working variables in registers (a memmove per round made a disk hit of a 1 MB source
       cost tens of milliseconds) */
    uint32_t A = s->h[0], B = s->h[1], C = s->h[2], D = s->h[3], E = s->h[4], F = s->h[5], G = s->h[6], H = s->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t S1 = ror(E, 6) ^ ror(E, 11) ^ ror(E, 25), ch = (E & F) ^ (~E & G);
        uint32_t t1 = H + S1 + ch + K256[i] + w[i];
        uint32_t S0 = ror(A, 2) ^ ror(A, 13) ^ ror(A, 22), mj = (A & B) ^ (A & C) ^ (B & C);
        uint32_t t2 = S0 + mj;
        H = G, G = F, F = E, E = D + t1, D = C, C = B, B = A, A = t1 + t2;
    }
    uint32_t a[8] = {A, B, C, D, E, F, G, H};
    for (int i = 0; i < 8; i++) s->h[i] += a[i];
}

static void sha_init(sha256 *s) {
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, h0, sizeof h0);
    s->n = 0;
    s->len = 0;
}

static void sha_add(sha256 *s, const void *data, size_t n) {
    const uint8_t *p = data;
    s->len += n;
    while (n > 0) {
        size_t k = 64 - s->n < n ? 64 - s->n : n;
        memcpy(s->buf + s->n, p, k);
        s->n += k;
        p += k;
        n -= k;
        if (s->n == 64) {
            sha_block(s, s->buf);
            s->n = 0;
        }
    }
}

static void sha_hex(sha256 *s, char out[65]) {
    uint64_t bits = s->len * 8;
    uint8_t pad = 0x80, zero = 0;
    sha_add(s, &pad, 1);
    while (s->n != 56) sha_add(s, &zero, 1);
    uint8_t lb[8];
    for (int i = 0; i < 8; i++) lb[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha_add(s, lb, 8);
    for (int i = 0; i < 8; i++) snprintf(out + 8 * i, 9, "%08x", s->h[i]);
}

/* ---- the environment ----------------------------------------------------------------------------- */
static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static const char *cc_of(const emc_opts *o) {
    if (o && o->cc && o->cc[0]) return o->cc;
    const char *e = getenv("EMBER_CC");
    if (e && e[0]) return e;
    e = getenv("CC");
    return e && e[0] ? e : "cc";
}

static bool cache_dir(const emc_opts *o, char *out, size_t n) {
    const char *e = o && o->cache_dir ? o->cache_dir : getenv("EMBER_CACHE_DIR");
    if (e && e[0]) return snprintf(out, n, "%s", e) < (int)n;
    e = getenv("XDG_CACHE_HOME");
    if (e && e[0]) return snprintf(out, n, "%s/ember", e) < (int)n;
    e = getenv("HOME");
    return snprintf(out, n, "%s/.cache/ember", e && e[0] ? e : "/tmp") < (int)n;
}

/* single quotes for sh */
static void shq(char *out, size_t n, const char *s) {
    size_t w = 0;
    if (w + 1 < n) out[w++] = '\'';
    for (; *s && w + 5 < n; s++) {
        if (*s == '\'') {
            memcpy(out + w, "'\\''", 4);
            w += 4;
        } else {
            out[w++] = *s;
        }
    }
    if (w + 1 < n) out[w++] = '\'';
    out[w] = 0;
}

/* runs `sh -c cmd`, capturing stdout and stderr into out (truncated); returns the exit status */
static int run_sh(const char *cmd, char *out, size_t n) {
    int fd[2];
    out[0] = 0;
    if (pipe(fd) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fd[1], 1);
        dup2(fd[1], 2);
        close(fd[0]);
        close(fd[1]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    size_t w = 0;
    char buf[4096];
    for (;;) {
        ssize_t k = read(fd[0], buf, sizeof buf);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        for (ssize_t i = 0; i < k && w + 1 < n; i++) out[w++] = buf[i];
    }
    out[w] = 0;
    close(fd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* the compiler's first `--version` line, remembered per compiler command */
static pthread_mutex_t ver_lock = PTHREAD_MUTEX_INITIALIZER;
static char ver_cc[512], ver_line[512];

static void cc_version(const char *cc, char *out, size_t n) {
    pthread_mutex_lock(&ver_lock);
    if (strcmp(ver_cc, cc) != 0 || !ver_line[0]) {
        char cmd[700], buf[2048];
        snprintf(cmd, sizeof cmd, "%s --version", cc);
        int st = run_sh(cmd, buf, sizeof buf);
        char *nl = strchr(buf, '\n');
        if (nl) *nl = 0;
        snprintf(ver_line, sizeof ver_line, "%.500s", st == 0 ? buf : "unknown compiler");
        snprintf(ver_cc, sizeof ver_cc, "%.500s", cc);
    }
    snprintf(out, n, "%s", ver_line);
    pthread_mutex_unlock(&ver_lock);
}

static void cpu_id(sha256 *s) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char ln[8192];
    int got = 0;
    while (got < 2 && fgets(ln, sizeof ln, f)) {
        if (!strncmp(ln, "model name", 10) || !strncmp(ln, "flags", 5)) {
            sha_add(s, ln, strlen(ln));
            got++;
        }
    }
    fclose(f);
}

static bool write_file(const char *path, const char *text) {
    char tmp[1200];
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

static em_status load(const char *so, emc_jit *out) {
    out->dl = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    if (!out->dl) return em_seterr(EM_ERR_COMPILE, "codegen: cannot load %s: %s", so, dlerror());
    out->entry = (emc_entry_fn)dlsym(out->dl, "ember_run");
    if (!out->entry) {
        dlclose(out->dl);
        out->dl = NULL;
        return em_seterr(EM_ERR_COMPILE, "codegen: %s has no ember_run", so);
    }
    return EM_OK;
}

/* ---- splitting a program into translation units ---------------------------------------------------- */
/* A top-level piece of the source: a kernel definition (with the comment above it), ember_run, or
   shared text (the prelude, and any other top-level declaration: every unit gets those). */
enum { P_SHARED, P_KERNEL, P_RUN };
typedef struct {
    int kind, unit;
    size_t a, e;  /* [a, e) in the source */
    size_t kw;    /* P_KERNEL: where "static void kernel_" starts; P_RUN: where "int ember_run(" starts */
    size_t body;  /* the '{' that opens the function's body */
    int line;     /* the line (from 1) at a */
} piece;

typedef struct {
    piece *p;
    int n, cap;
} pieces;

static bool pieces_add(pieces *ps, piece p) {
    if (ps->n == ps->cap) {
        int cap = ps->cap ? 2 * ps->cap : 256;
        piece *v = realloc(ps->p, sizeof *v * (size_t)cap);
        if (!v) return false;
        ps->p = v;
        ps->cap = cap;
    }
    ps->p[ps->n++] = p;
    return true;
}

/* the end of the comment, string or character literal starting at s[i] (i itself when none) */
static size_t skip_lexeme(const char *s, size_t i) {
    if (s[i] == '/' && s[i + 1] == '*') {
        const char *c = strstr(s + i + 2, "*/");
        return c ? (size_t)(c - s) + 2 : strlen(s);
    }
    if (s[i] == '/' && s[i + 1] == '/') {
        while (s[i] && s[i] != '\n') i++;
        return i;
    }
    if (s[i] == '"' || s[i] == '\'') {
        char q = s[i++];
        while (s[i] && s[i] != q && s[i] != '\n') i += s[i] == '\\' && s[i + 1] ? 2 : 1;
        return s[i] == q ? i + 1 : i;
    }
    return i;
}

/* only blanks and comments in [a, e) */
static bool blank(const char *s, size_t a, size_t e) {
    while (a < e) {
        size_t k = skip_lexeme(s, a);
        if (k > a && s[a] == '/') a = k;
        else if (s[a] == ' ' || s[a] == '\t' || s[a] == '\n' || s[a] == '\r') a++;
        else return false;
    }
    return true;
}

/* The pieces of src: functions that start a line at depth 0 with "static void kernel_" or
   "int ember_run(" run to the '}' closing their body; the text between two of them goes with the
   next one when it is only blanks and comments (the kernel's header), else it is shared. False
   when the text is not what codegen prints (no kernel, no ember_run, unbalanced braces): the
   caller then compiles the file whole. */
static bool split_pieces(const char *s, pieces *ps) {
    size_t n = strlen(s), gap = 0, i = 0;
    int depth = 0, line = 1, gap_line = 1, nk = 0, nrun = 0;
    while (i < n) {
        bool bol = i == 0 || s[i - 1] == '\n';
        int kind = !bol || depth ? -1 : !strncmp(s + i, "static void kernel_", 19) ? P_KERNEL
                                        : !strncmp(s + i, "int ember_run(", 14) ? P_RUN : -1;
        if (kind < 0) {
            size_t k = skip_lexeme(s, i);
            if (k == i) k = i + 1, depth += s[i] == '{' ? 1 : s[i] == '}' ? -1 : 0;
            if (depth < 0) return false;
            for (; i < k; i++) line += s[i] == '\n';
            continue;
        }
        /* a function: its header, then its body to the matching '}' */
        piece p = {kind, 0, gap, 0, i, 0, gap_line};
        if (gap < i && !blank(s, gap, i)) {
            if (!pieces_add(ps, (piece){P_SHARED, 0, gap, i, 0, 0, gap_line})) return false;
            p.a = i;
            p.line = line;
        }
        size_t open = 0;
        while (i < n) {
            size_t k = skip_lexeme(s, i);
            if (k == i) {
                k = i + 1;
                if (s[i] == '{' && depth++ == 0 && !open) open = i;
                if (s[i] == '}' && --depth == 0) {
                    for (; i < k; i++) line += s[i] == '\n';
                    break;
                }
                if (depth < 0) return false;
            }
            for (; i < k; i++) line += s[i] == '\n';
        }
        if (depth != 0 || !open) return false;
        p.e = i;
        p.body = open;
        if (!pieces_add(ps, p)) return false;
        nk += kind == P_KERNEL;
        nrun += kind == P_RUN;
        gap = i;
        gap_line = line;
    }
    if (depth != 0 || nk == 0 || nrun != 1) return false;
    return gap == n || blank(s, gap, n) || pieces_add(ps, (piece){P_SHARED, 0, gap, n, 0, 0, gap_line});
}

/* the number of C compilers to run at once: EMBER_JIT_JOBS, else the CPUs this process may use */
static int jit_jobs(void) {
    const char *e = getenv("EMBER_JIT_JOBS");
    if (e && e[0]) {
        int j = atoi(e);
        return j < 1 ? 1 : j > MAX_UNITS ? MAX_UNITS : j;
    }
    cpu_set_t set;
    int c = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    return c < 1 ? 1 : c > MAX_UNITS ? MAX_UNITS : c;
}

static int cmp_weight(const void *a, const void *b, void *ctx) {
    const piece *p = ctx;
    size_t x = p[*(const int *)a].e - p[*(const int *)a].a, y = p[*(const int *)b].e - p[*(const int *)b].a;
    return x != y ? (x < y ? 1 : -1) : *(const int *)a - *(const int *)b;
}

/* how many units src is compiled in (1: whole), with ps[i].unit set when more: the functions go
   largest first to the unit with the fewest bytes so far (a deterministic balance) */
static int plan_units(const char *src, pieces *ps) {
    int jobs = jit_jobs();
    if (jobs < 2 || strlen(src) < UNIT_BYTES || !split_pieces(src, ps)) return 1;
    size_t work = 0;
    int nf = 0;
    for (int i = 0; i < ps->n; i++)
        if (ps->p[i].kind != P_SHARED) work += ps->p[i].e - ps->p[i].a, nf++;
    int units = (int)(work / UNIT_BYTES);
    if (units > jobs) units = jobs;
    if (units > nf) units = nf;
    if (units < 2) return 1;
    int *order = malloc(sizeof *order * (size_t)nf);
    if (!order) return 1;
    for (int i = 0, j = 0; i < ps->n; i++)
        if (ps->p[i].kind != P_SHARED) order[j++] = i;
    qsort_r(order, (size_t)nf, sizeof *order, cmp_weight, ps->p);
    size_t load[MAX_UNITS] = {0};
    for (int j = 0; j < nf; j++) {
        int best = 0;
        for (int u = 1; u < units; u++)
            if (load[u] < load[best]) best = u;
        piece *p = &ps->p[order[j]];
        p->unit = best;
        load[best] += p->e - p->a;
    }
    free(order);
    return units;
}

#define HIDDEN "__attribute__((visibility(\"hidden\"))) "

/* unit u's text: #line directives keep the compiler's messages on the lines of the whole file */
static bool write_unit(FILE *f, const char *s, const pieces *ps, int u, const char *qpath) {
    int run_unit = -1;
    for (int i = 0; i < ps->n; i++)
        if (ps->p[i].kind == P_RUN) run_unit = ps->p[i].unit;
    for (int i = 0; i < ps->n; i++) {
        const piece *p = &ps->p[i];
        if (p->kind == P_SHARED) fprintf(f, "#line %d %s\n%.*s\n", p->line, qpath, (int)(p->e - p->a), s + p->a);
    }
    if (u == run_unit) /* the kernels that other units define */
        for (int i = 0; i < ps->n; i++) {
            const piece *p = &ps->p[i];
            if (p->kind == P_KERNEL && p->unit != u)
                fprintf(f, HIDDEN "%.*s;\n", (int)(p->body - p->kw - 7), s + p->kw + 7);
        }
    for (int i = 0; i < ps->n; i++) {
        const piece *p = &ps->p[i];
        if (p->kind == P_SHARED || p->unit != u) continue;
        fprintf(f, "#line %d %s\n%.*s", p->line, qpath, (int)(p->kw - p->a), s + p->a);
        if (p->kind == P_KERNEL) fprintf(f, HIDDEN "%.*s\n", (int)(p->e - p->kw - 7), s + p->kw + 7);
        else fprintf(f, "%.*s\n", (int)(p->e - p->kw), s + p->kw);
    }
    return !ferror(f);
}

/* `sh -c cmd` with stdout and stderr into the file log; the pid, or -1 */
static pid_t spawn_sh(const char *cmd, const char *log) {
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fd);
    return pid;
}

static int wait_exit(pid_t pid) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void read_log(const char *path, char *out, size_t n) {
    FILE *f = fopen(path, "r");
    size_t k = f ? fread(out, 1, n - 1, f) : 0;
    out[k] = 0;
    if (f) fclose(f);
}

/* Compiles the units of src in parallel (cc -c each, in a private temporary folder beside the
   cache entry), then links them into tmp_so. EM_OK, or the error naming the whole file cpath, the
   failing unit's command and the compiler's messages (on cpath's lines, through #line). */
static em_status build_units(const char *src, const pieces *ps, int units, const char *cc, const char *cpath,
                             const char *so, const char *tmp_so, char *link_cmd, size_t ncmd) {
    static unsigned counter;
    char tdir[1100], qpath[2100], f[1200];
    snprintf(tdir, sizeof tdir, "%s.tmp.%d.%u.%ld.d", so, (int)getpid(), __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED),
             (long)(now_ms() * 1000) % 1000000); /* the time too: a crashed process's folder may remain */
    /* the #line file name: a C string literal */
    size_t w = 0;
    qpath[w++] = '"';
    for (const char *c = cpath; *c && w + 3 < sizeof qpath; c++) {
        if (*c == '"' || *c == '\\') qpath[w++] = '\\';
        qpath[w++] = *c == '\n' ? ' ' : *c;
    }
    qpath[w++] = '"';
    qpath[w] = 0;
    if (mkdir(tdir, 0700) != 0) return em_seterr(EM_ERR_IO, "codegen: cannot create the temporary folder %s", tdir);
    pid_t pid[MAX_UNITS];
    char *cmd[MAX_UNITS] = {0};
    em_status st = EM_OK;
    int started = 0;
    for (int u = 0; u < units && st == EM_OK; u++) {
        char qc[1300], qo[1300];
        snprintf(f, sizeof f, "%s/u%d.c", tdir, u);
        FILE *fp = fopen(f, "w");
        bool ok = fp && write_unit(fp, src, ps, u, qpath);
        if (fp) ok &= fclose(fp) == 0;
        if (!ok) {
            st = em_seterr(EM_ERR_IO, "codegen: cannot write %s", f);
            break;
        }
        shq(qc, sizeof qc, f);
        snprintf(f, sizeof f, "%s/u%d.o", tdir, u);
        shq(qo, sizeof qo, f);
        size_t nc = strlen(cc) + strlen(qc) + strlen(qo) + sizeof CC_BASE + 16;
        if (!(cmd[u] = malloc(nc))) {
            st = em_seterr(EM_ERR_OOM, "codegen: out of memory");
            break;
        }
        snprintf(cmd[u], nc, "%s %s -c -o %s %s", cc, CC_BASE, qo, qc);
        snprintf(f, sizeof f, "%s/u%d.log", tdir, u);
        if ((pid[u] = spawn_sh(cmd[u], f)) < 0) {
            st = em_seterr(EM_ERR_IO, "codegen: cannot start the C compiler (%s)", strerror(errno));
            break;
        }
        started = u + 1;
    }
    int bad = -1, bad_exit = 0;
    for (int u = 0; u < started; u++) {
        int e = wait_exit(pid[u]);
        if (e != 0 && bad < 0) bad = u, bad_exit = e;
    }
    char *msg = malloc(16384);
    if (!msg && st == EM_OK) st = em_seterr(EM_ERR_OOM, "codegen: out of memory");
    if (st == EM_OK && bad >= 0) {
        snprintf(f, sizeof f, "%s/u%d.log", tdir, bad);
        read_log(f, msg, 16384);
        st = em_seterr(EM_ERR_COMPILE, "codegen: the C compiler failed (exit %d) on the generated file %s "
                       "(part %d of the %d it is compiled in; the messages name the file's lines)\n"
                       "command: %s\n%s", bad_exit, cpath, bad + 1, units, cmd[bad], msg[0] ? msg : "(no output)");
    }
    if (st == EM_OK) {
        char qt[1300];
        shq(qt, sizeof qt, tmp_so);
        w = (size_t)snprintf(link_cmd, ncmd, "%s %s -o %s", cc, LINK_FLAGS, qt);
        for (int u = 0; u < units && w < ncmd; u++) {
            char qo[1300];
            snprintf(f, sizeof f, "%s/u%d.o", tdir, u);
            shq(qo, sizeof qo, f);
            w += (size_t)snprintf(link_cmd + w, ncmd - w, " %s", qo);
        }
        if (w < ncmd) w += (size_t)snprintf(link_cmd + w, ncmd - w, " -lm");
        if (w >= ncmd) st = em_seterr(EM_ERR_IO, "codegen: the cache path %s is too long", so);
        int e = st == EM_OK ? run_sh(link_cmd, msg, 16384) : 0;
        if (e != 0) {
            unlink(tmp_so);
            st = em_seterr(EM_ERR_COMPILE, "codegen: the C compiler failed (exit %d) linking the generated file %s\n"
                           "command: %s\n%s", e, cpath, link_cmd, msg[0] ? msg : "(no output)");
        }
    }
    free(msg);
    for (int u = 0; u < units; u++) {
        static const char *const ext[] = {"c", "o", "log"};
        for (int x = 0; x < 3; x++) {
            snprintf(f, sizeof f, "%s/u%d.%s", tdir, u, ext[x]);
            unlink(f);
        }
        free(cmd[u]);
    }
    rmdir(tdir);
    return st;
}

em_status emc_jit_load(const char *src, const emc_opts *opts, emc_jit *out) {
    memset(out, 0, sizeof *out);
    const char *cc = cc_of(opts);
    char ver[512], dir[900], so[1024], cpath[1024];
    cc_version(cc, ver, sizeof ver);
    sha256 s;
    sha_init(&s);
    sha_add(&s, src, strlen(src));
    sha_add(&s, "\n", 1);
    sha_add(&s, ver, strlen(ver));
    sha_add(&s, "\n" CC_FLAGS "\n", strlen(CC_FLAGS) + 2);
    sha_add(&s, cc, strlen(cc));
    cpu_id(&s);
    sha_hex(&s, out->key);
    if (!cache_dir(opts, dir, sizeof dir) || !emb_mkdirs(dir))
        return em_seterr(EM_ERR_IO, "codegen: cannot create the cache directory %s (set EMBER_CACHE_DIR)", dir);
    snprintf(so, sizeof so, "%s/%s.so", dir, out->key);
    snprintf(cpath, sizeof cpath, "%s/%s.c", dir, out->key);
    snprintf(out->source_path, sizeof out->source_path, "%s", cpath);
    if (access(so, R_OK) == 0 && load(so, out) == EM_OK) {
        out->disk_hit = true;
        emb_log("cache", "disk hit: key %s: loaded %s, compiled nothing", out->key, so);
        if (access(cpath, R_OK) != 0) write_file(cpath, src); /* keep the source readable beside it */
        emb_log("code", "generated source: %s (%zu bytes)", cpath, strlen(src));
        return EM_OK;
    }
    emb_log("cache", "miss: key %s: no %s in the cache, compiling", out->key, so);
    if (!write_file(cpath, src)) return em_seterr(EM_ERR_IO, "codegen: cannot write %s", cpath);
    emb_log("code", "generated source: %s (%zu bytes)", cpath, strlen(src));
    char tmp[1100], qt[1200], qc[1200], cmd[8192];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d.%ld.so", so, (int)getpid(), (long)(now_ms() * 1000) % 1000000);
    double t0 = now_ms();
    pieces ps = {0};
    int units = plan_units(src, &ps);
    em_status st = EM_OK;
    if (units > 1) {
        emb_log("cache", "compiling %s in %d parts at once", cpath, units);
        st = build_units(src, &ps, units, cc, cpath, so, tmp, cmd, sizeof cmd);
    } else {
        shq(qt, sizeof qt, tmp);
        shq(qc, sizeof qc, cpath);
        snprintf(cmd, sizeof cmd, "%s %s -o %s %s -lm", cc, CC_FLAGS, qt, qc);
        char *msg = malloc(16384);
        if (!msg) st = em_seterr(EM_ERR_OOM, "codegen: out of memory");
        int e = msg ? run_sh(cmd, msg, 16384) : 0;
        if (msg && e != 0)
            st = em_seterr(EM_ERR_COMPILE, "codegen: the C compiler failed (exit %d) on the generated file %s\n"
                           "command: %s\n%s", e, cpath, cmd, msg[0] ? msg : "(no output)");
        free(msg);
    }
    free(ps.p);
    out->cc_ms = now_ms() - t0;
    out->units = units;
    if (st != EM_OK) {
        unlink(tmp);
        return st;
    }
    if (rename(tmp, so) != 0) {
        unlink(tmp);
        return em_seterr(EM_ERR_IO, "codegen: cannot move the compiled program to %s", so);
    }
    emb_log("cache", "compiled in %.0f ms: %s (command: %s)", out->cc_ms, so, cmd);
    return load(so, out);
}

void emc_jit_unload(emc_jit *j) {
    if (j && j->dl) dlclose(j->dl);
    if (j) {
        j->dl = NULL;
        j->entry = NULL;
    }
}

/* the cache key's parts as short hashes, for capture's index of what a program was compiled with
   (src/capture/explain.c names the part that changed when a program misses the disk cache) */
static void short_hash(const void *p, size_t n, char out[17]) {
    sha256 s;
    char hex[65];
    sha_init(&s);
    sha_add(&s, p, n);
    sha_hex(&s, hex);
    memcpy(out, hex, 16);
    out[16] = 0;
}

bool emc_jit_key_parts(const char *src, const emc_opts *opts, char parts[EMC_KEY_PARTS][17], char *dir, size_t n) {
    const char *cc = cc_of(opts);
    char ver[512], both[1100];
    cc_version(cc, ver, sizeof ver);
    short_hash(src, strlen(src), parts[0]);
    snprintf(both, sizeof both, "%s\n%s", ver, cc);
    short_hash(both, strlen(both), parts[1]);
    short_hash(CC_FLAGS, strlen(CC_FLAGS), parts[2]);
    sha256 s;
    char hex[65];
    sha_init(&s);
    cpu_id(&s);
    sha_hex(&s, hex);
    memcpy(parts[3], hex, 16);
    parts[3][16] = 0;
    return cache_dir(opts, dir, n);
}
