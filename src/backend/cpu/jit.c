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
 */
#include "../../compiler/compiler.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CC_FLAGS "-std=gnu11 -O3 -march=native -fopenmp -fno-math-errno -ffp-contract=off -shared -fPIC"

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
    uint32_t w[64], a[8];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    memcpy(a, s->h, sizeof a);
    for (int i = 0; i < 64; i++) {
        uint32_t S1 = ror(a[4], 6) ^ ror(a[4], 11) ^ ror(a[4], 25), ch = (a[4] & a[5]) ^ (~a[4] & a[6]);
        uint32_t t1 = a[7] + S1 + ch + K256[i] + w[i];
        uint32_t S0 = ror(a[0], 2) ^ ror(a[0], 13) ^ ror(a[0], 22), mj = (a[0] & a[1]) ^ (a[0] & a[2]) ^ (a[1] & a[2]);
        uint32_t t2 = S0 + mj;
        memmove(a + 1, a, 7 * sizeof *a);
        a[4] += t1;
        a[0] = t1 + t2;
    }
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

static bool mkdirs(const char *path) {
    char tmp[1024];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) return false;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return false;
        *p = '/';
    }
    return mkdir(tmp, 0755) == 0 || errno == EEXIST;
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
    if (!cache_dir(opts, dir, sizeof dir) || !mkdirs(dir))
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
    char tmp[1100], qt[1200], qc[1200], cmd[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d.%ld.so", so, (int)getpid(), (long)(now_ms() * 1000) % 1000000);
    shq(qt, sizeof qt, tmp);
    shq(qc, sizeof qc, cpath);
    snprintf(cmd, sizeof cmd, "%s %s -o %s %s", cc, CC_FLAGS, qt, qc);
    char *msg = malloc(16384);
    if (!msg) return em_seterr(EM_ERR_OOM, "codegen: out of memory");
    double t0 = now_ms();
    int st = run_sh(cmd, msg, 16384);
    out->cc_ms = now_ms() - t0;
    if (st != 0) {
        unlink(tmp);
        em_status e = em_seterr(EM_ERR_COMPILE, "codegen: the C compiler failed (exit %d) on the generated file %s\n"
                                "command: %s\n%s", st, cpath, cmd, msg[0] ? msg : "(no output)");
        free(msg);
        return e;
    }
    free(msg);
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
