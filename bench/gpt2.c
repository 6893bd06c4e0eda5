/* GPT-2 124M benchmark (issue 5 item 8, issue 6): training step and KV-cache generation for Ember
   compiled, Ember eager and PyTorch, in one run, with the ratios.

   Measurements. A training step is forward + cross-entropy loss, backward, AdamW (lr 6e-4, betas
   0.9/0.95, eps 1e-8, weight decay 0.1 on 2-D weights only) and zero_grad, on random tokens,
   B=4 at T=64 and T=256, GPT-2 124M ("gpt2" preset, random init, f32, dropout 0, no clipping).
   Each figure is the median of --steps timed steps after one warm-up step (the warm-up allocates
   the optimizer state; for the compiled row it also traces and compiles). Generation is greedy:
   a 64-token random prompt (prefill, one call) then 64 single-token steps with a KV cache;
   reported as the median prefill time and the median decode rate over --gen-reps repetitions
   after one warm-up repetition. FLOPs count the matmuls only (2 flops per multiply-add):
   training 6 * tokens * (12 L C^2 + V C) plus attention 12 L B T^2 C (q k^T and att v, the full
   square as every implementation here computes it, forward and twice that backward); prefill
   2 * T * (12 L C^2 + V C) + 4 L T^2 C. Peak RSS is the child process's ru_maxrss. Training rows
   also report the median CPU seconds (user + system, all threads) and minor page faults per step:
   on a shared, loaded machine they show where time goes when the wall clock is noisy.

   Isolation. Every measurement runs in its own child process (fork before the parent touches
   Ember or OpenMP, so no thread pool crosses a fork), which reports "key value" lines through a
   pipe; the parent reads the child's peak RSS with wait4. The PyTorch column runs
   bench/peers/gpt2.py the same way, with PyTorch set up at its best: LD_PRELOAD=libtcmalloc,
   the OpenMP build of OpenBLAS first on LD_LIBRARY_PATH, Ember's OpenMP wait policy (PASSIVE,
   GOMP_SPINCOUNT=10000) and the same thread count; without python3 + torch its column prints n/a.

   The compiled row compiles the whole step with em_compile (fullgraph) twice in one process:
   first with an empty $EMBER_CACHE_DIR (a fresh temporary directory: the cold compile), then,
   after freeing it, again over the same cache (the warm compile, disk cache hits); compile
   times are em_compiled_stats' compile_ms. Generation runs em_generate (greedy): its decode step
   is compiled in the compiled row (compile time, reported by em_generate, is taken out of the
   decode rate; the first repetition compiles) and eager in the eager row. em_generate's prefill
   is always eager, so the compiled row's prefill is a separate em_compile of the same function
   (emn_prefill at positions 0..63: the lm_head on the last position only; fixed positions, so it
   traces). The PyTorch peer's prefill applies its lm_head to the last position only too.

   bf16 mixed precision (issue 6): after each T's table, a row "train ... compiled, bf16 matmuls":
   the same compiled step under em_set_matmul_precision(EM_BF16) (f32 master weights and
   activations, matmul operands rounded to bf16, f32 accumulation) against PyTorch's step with
   torch.autocast("cpu", dtype=torch.bfloat16) around forward + loss (its matmuls take bf16
   operands; autocast keeps f32 master weights too). --no-bf16 leaves it out.
   --curve N (a mode of its own) trains GPT-2 124M for N steps (default 200) at B=4 T=64 three
   times through em_trainer (compiled, AdamW lr 6e-4 with 20 warm-up steps and cosine decay, clip
   1.0) on the bytes of the fortunes corpus (scripts/setup; a synthetic token stream without it):
   f32, bf16 (same init and data) and f32 with another data seed, and prints the max and mean
   |loss difference| bf16 - f32 next to f32 - f32' (run-to-run noise), per 50-step window too.

   Decode with bf16 weights (issue 6): after the generation lines, "decode, KV, bf16
   (tokens/s)": the same greedy generation with the model converted by em_model_to_dtype(EM_BF16)
   (parameters, activations and KV cache in bf16, as model.to(torch.bfloat16)), compiled and eager,
   against PyTorch's model.to(torch.bfloat16) with a bf16 KV cache. Below it, the weight bytes one
   token streams (12 layers' linears + the tied lm_head, 2 bytes each) and the floor they set at the
   plain streaming-read bandwidth measured in a child of this run (sum over 256 MiB, --threads
   threads, best of 5). --no-bf16 leaves it out too.

   OpenMP: unless OMP_WAIT_POLICY or GOMP_SPINCOUNT is set, the program re-executes itself with
   the ember command's policy, PASSIVE after a short spin (GOMP_SPINCOUNT=10000; see main).

   Usage: gpt2 [--rows compiled,eager,torch] [--T 64,256] [--steps N] [--gen-reps N]
               [--no-train] [--no-gen] [--no-bf16] [--threads N] [--peer PATH] [--quick]
         gpt2 --curve [N]
   --quick is --T 64 --steps 2 --gen-reps 1. Threads: --threads, else $EMBER_NUM_THREADS, else 2.
   Build: make BUILD=build bench (or make build/bench/gpt2); run from the repository root so the
   peer script is found (or pass --peer). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ember.h"
#include "nn/nn.h" /* emn_prefill */

enum { R_COMPILED, R_EAGER, R_TORCH, NROWS };
static const char *const row_names[NROWS] = {"Ember compiled", "Ember eager", "PyTorch"};

/* GPT-2 124M */
enum { L = 12, C = 768, NH = 12, V = 50257, B = 4, PROMPT = 64, NEW = 64 };

#define MAXV 64
typedef struct {   /* what one child reported */
    bool ran;      /* the child ran and reported something */
    char err[256]; /* "error ..." line, or why it did not run */
    double step_s[MAXV], step_cpu[MAXV], step_sys[MAXV], step_flt[MAXV];
    int n_step, n_cpu, n_sys, n_flt;
    double prefill_ms[MAXV], decode_s[MAXV];
    int n_prefill, n_decode;
    double compile_cold_ms, compile_warm_ms, loss, gen_compile_ms, steps_run;
    int disk_hits;
    double maxrss_gib;
    double read_gbs; /* the streaming-read child's bandwidth */
    double *curve; /* --curve: the loss of each step (malloc'ed), n_curve of them */
    int n_curve;
} result;

static struct {
    bool row_on[NROWS];
    int T[4], nT;
    int steps, gen_reps, threads;
    bool train, gen, bf16;
    int curve; /* --curve N: only the loss-curve comparison, N steps */
    const char *peer;
} opt;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n) {
    if (n <= 0) return NAN;
    double s[MAXV];
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

/* ---- the Ember children: they print "key value" lines on fd 1 (a pipe to the parent) ---------- */
typedef struct {
    em_model_t *m;
    em_optimizer_t *o;
} step_ctx;

static em_status train_step(void *vc, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    step_ctx *c = vc;
    (void)n_in;
    (void)n_out;
    em_tensor_t *loss = NULL;
    if (!em_model_forward(c->m, in[0], in[1], &loss) || !loss) return em_last_status();
    em_status st = em_backward(loss);
    if (st == EM_OK) st = em_optimizer_step(c->o);
    if (st == EM_OK) st = em_optimizer_zero_grad(c->o);
    out[0] = loss;
    return st;
}

static em_model_t *new_model(void) {
    em_model_config cfg;
    if (em_model_config_preset("gpt2", &cfg) != EM_OK) return NULL;
    cfg.dropout = 0;
    return em_model_new(&cfg, 1337);
}

static int fail(const char *what) {
    printf("error %s: %s\n", what, em_last_error());
    fflush(stdout);
    return 1;
}

/* this process's CPU seconds (user, system) and minor page faults so far */
static void usage_now(double *user, double *sys, double *faults) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *user = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec;
    *sys = (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
    *faults = (double)ru.ru_minflt;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static int child_train(bool compiled, int T, bool bf16) {
    if (bf16) em_set_matmul_precision(EM_BF16); /* every matmul of the step, forward and backward */
    em_model_t *m = new_model();
    if (!m) return fail("em_model_new");
    int n = em_model_num_params(m);
    em_tensor_t *const *params = em_model_params(m);
    em_optimizer_t *o = em_adamw_new(params, n, 6e-4, 0.9, 0.95, 1e-8, 0.1);
    if (!o) return fail("em_adamw_new");
    for (int i = 0; i < n; i++)
        if (em_ndim(params[i]) < 2) em_optimizer_set_weight_decay(o, i, 0.0);
    printf("params %lld\n", (long long)em_model_param_count(m));
    em_manual_seed(1);
    em_tensor_t *in[2] = {em_randint(0, V, (int64_t[]){B, T}, 2, EM_I64),
                          em_randint(0, V, (int64_t[]){B, T}, 2, EM_I64)};
    step_ctx ctx = {m, o};
    em_compiled_t *f = NULL;
    char cache[] = "/tmp/ember-bench-cache-XXXXXX";
    if (compiled) {
        if (!mkdtemp(cache)) {
            printf("error mkdtemp: %s\n", strerror(errno));
            return 1;
        }
        setenv("EMBER_CACHE_DIR", cache, 1);
        /* cold: an empty cache; then warm: a second compile over the cache the first one filled */
        for (int pass = 0; pass < 2; pass++) {
            em_compiled_free(f);
            em_compile_opts co = {.fullgraph = true};
            f = em_compile(train_step, &ctx, &co);
            em_tensor_t *out[1] = {0};
            em_scope_t *s = em_scope_begin();
            em_status st = f ? em_call(f, in, 2, out, 1) : em_last_status();
            em_scope_end(s);
            if (st != EM_OK) {
                fail("em_compile/em_call of the training step");
                nftw(cache, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
                return 1;
            }
            em_compile_stats cs = em_compiled_stats(f);
            printf("%s %.1f\n", pass ? "compile_warm_ms" : "compile_cold_ms", cs.compile_ms);
            if (pass) printf("disk_hits %d\n", cs.disk_cache_hits);
            fflush(stdout);
        }
    }
    for (int i = 0; i <= opt.steps; i++) { /* step 0 (eager) warms up; compiled warmed up above */
        if (compiled && i == 0) continue;
        em_scope_t *s = em_scope_begin();
        em_tensor_t *out[1] = {0};
        double u0, s0, f0, u1, s1, f1;
        usage_now(&u0, &s0, &f0);
        double t0 = now_s();
        em_status st = compiled ? em_call(f, in, 2, out, 1) : train_step(&ctx, in, 2, out, 1);
        double dt = now_s() - t0;
        usage_now(&u1, &s1, &f1);
        if (st != EM_OK) {
            em_scope_end(s);
            if (compiled) nftw(cache, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
            return fail("training step");
        }
        if (i > 0)
            printf("step_s %.6f\nstep_cpu_s %.6f\nstep_sys_s %.6f\nstep_faults %.0f\n", dt, u1 - u0 + s1 - s0,
                   s1 - s0, f1 - f0);
        if (i == opt.steps) /* after the warm-up step(s) and the timed ones */
            printf("loss %.6f\nsteps_run %d\n", em_item(out[0]), opt.steps + (compiled ? 2 : 1));
        fflush(stdout);
        em_scope_end(s);
    }
    em_compiled_free(f);
    if (compiled) nftw(cache, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    em_release(in[0]);
    em_release(in[1]);
    em_optimizer_free(o);
    em_model_free(m);
    return 0;
}

typedef struct {
    em_model_t *m;
    em_kv_cache_t *kv;
} prefill_ctx;

static em_status prefill_fn(void *vc, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    prefill_ctx *c = vc;
    (void)n_in;
    (void)n_out;
    out[0] = emn_prefill(c->m, in[0], 0, c->kv); /* em_generate's prefill: logits of the last position */
    return out[0] ? EM_OK : em_last_status();
}

/* the greedy next token of logits (1, Tnew, V): (1, 1) i64 */
static em_tensor_t *next_token(em_tensor_t *logits) {
    em_tensor_t *last = em_select(logits, 1, em_size(logits, 1) - 1);
    return em_unsqueeze(em_argmax(last, -1, false), 0);
}

/* generation through em_generate (greedy, 64 new tokens after a 64-token prompt): its prefill is
   an eager cached forward, its decode step compiled (one program for every position) or eager.
   The compiled row also times a compiled prefill (em_compile of the cached forward at pos 0). */
static int child_gen(bool compiled, bool bf16) {
    em_model_t *m = new_model();
    if (!m) return fail("em_model_new");
    if (bf16 && em_model_to_dtype(m, EM_BF16) != EM_OK) return fail("em_model_to_dtype");
    em_model_set_training(m, false);
    em_manual_seed(1);
    em_tensor_t *prompt = em_randint(0, V, (int64_t[]){1, PROMPT}, 2, EM_I64);
    int32_t ids[PROMPT], out[NEW];
    int64_t len = PROMPT, out_len = 0;
    for (int i = 0; i < PROMPT; i++) ids[i] = (int32_t)em_item(em_select(em_select(prompt, 0, 0), 0, i));
    const int32_t *prompts[1] = {ids};
    em_generate_opts go = {.max_new_tokens = NEW, .temperature = 0, .eager = !compiled};
    for (int r = 0; r <= opt.gen_reps; r++) {
        em_generate_stats gs;
        em_scope_t *s = em_scope_begin();
        em_status st = em_generate(m, prompts, &len, 1, &go, out, &out_len, &gs);
        em_scope_end(s);
        if (st != EM_OK) return fail("em_generate");
        double dec_s = (gs.decode_ms - gs.compile_ms) * 1e-3;
        if (r > 0) { /* rep 0 warms up (and compiles) */
            if (!compiled) printf("prefill_ms %.3f\n", gs.prefill_ms);
            printf("decode_s %.6f\n", dec_s * NEW / (double)(gs.decode_steps > 0 ? gs.decode_steps : 1));
        }
        if (r == 0 && compiled) printf("gen_compile_ms %.1f\n", gs.compile_ms);
        fflush(stdout);
    }
    if (compiled && !bf16) {
        em_kv_cache_t *kv = em_kv_cache_new(m, 1, PROMPT + NEW);
        if (!kv) return fail("em_kv_cache_new");
        prefill_ctx pc = {m, kv};
        em_compile_opts co = {.fullgraph = true};
        em_compiled_t *f = em_compile(prefill_fn, &pc, &co);
        if (!f) return fail("em_compile of the prefill");
        for (int r = 0; r <= opt.gen_reps; r++) {
            em_scope_t *s = em_scope_begin();
            em_tensor_t *logits = NULL;
            double t0 = now_s();
            em_status st = em_call(f, &prompt, 1, &logits, 1);
            em_tensor_t *tok = st == EM_OK ? next_token(em_unsqueeze(logits, 1)) : NULL; /* (1, V) -> (1, 1, V) */
            double t1 = now_s();
            em_scope_end(s);
            if (!tok) {
                printf("note compiled prefill failed: %.150s\n", em_last_error());
                break;
            }
            if (r > 0) printf("prefill_ms %.3f\n", (t1 - t0) * 1e3);
            fflush(stdout);
        }
        em_compiled_free(f);
        em_kv_cache_free(kv);
    }
    em_release(prompt);
    em_model_free(m);
    return 0;
}

/* ---- the parent: run children, parse their lines ------------------------------------------------ */
static void parse_line(result *r, const char *line) {
    double v;
    char key[32];
    if (!strncmp(line, "note ", 5) && !r->err[0]) {
        snprintf(r->err, sizeof r->err, "%.200s", line + 5);
        return;
    }
    if (!strncmp(line, "error ", 6)) {
        snprintf(r->err, sizeof r->err, "%.200s", line + 6);
        return;
    }
    if (sscanf(line, "%31s %lf", key, &v) != 2) return;
    r->ran = true;
    if (!strcmp(key, "step_s") && r->n_step < MAXV) r->step_s[r->n_step++] = v;
    else if (!strcmp(key, "step_cpu_s") && r->n_cpu < MAXV) r->step_cpu[r->n_cpu++] = v;
    else if (!strcmp(key, "step_sys_s") && r->n_sys < MAXV) r->step_sys[r->n_sys++] = v;
    else if (!strcmp(key, "step_faults") && r->n_flt < MAXV) r->step_flt[r->n_flt++] = v;
    else if (!strcmp(key, "prefill_ms") && r->n_prefill < MAXV) r->prefill_ms[r->n_prefill++] = v;
    else if (!strcmp(key, "decode_s") && r->n_decode < MAXV) r->decode_s[r->n_decode++] = v;
    else if (!strcmp(key, "compile_cold_ms")) r->compile_cold_ms = v;
    else if (!strcmp(key, "compile_warm_ms")) r->compile_warm_ms = v;
    else if (!strcmp(key, "disk_hits")) r->disk_hits = (int)v;
    else if (!strcmp(key, "loss")) r->loss = v;
    else if (!strcmp(key, "gen_compile_ms")) r->gen_compile_ms = v;
    else if (!strcmp(key, "steps_run")) r->steps_run = v;
    else if (!strcmp(key, "read_gbs")) r->read_gbs = v;
    else if (!strcmp(key, "curve") && r->n_curve < opt.curve) {
        if (!r->curve) r->curve = calloc((size_t)opt.curve, sizeof *r->curve);
        if (r->curve) r->curve[r->n_curve++] = v;
    }
}

static void clear(result *r) {
    free(r->curve);
    memset(r, 0, sizeof *r);
    r->compile_cold_ms = r->compile_warm_ms = r->loss = r->gen_compile_ms = r->steps_run = r->read_gbs = NAN;
}

/* runs job(arg) in a child (argv == NULL) or execs argv with env additions; fills r */
static void run_child(result *r, int (*job)(int, int), int a1, int a2, char *const *argv) {
    clear(r);
    int fd[2];
    if (pipe(fd) != 0) {
        snprintf(r->err, sizeof r->err, "pipe: %s", strerror(errno));
        return;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(r->err, sizeof r->err, "fork: %s", strerror(errno));
        close(fd[0]), close(fd[1]);
        return;
    }
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], 1);
        close(fd[1]);
        if (argv) {
            execvp(argv[0], argv);
            printf("error cannot run %s: %s\n", argv[0], strerror(errno));
            fflush(stdout);
            _exit(0);
        }
        em_set_num_threads(opt.threads);
        int rc = job(a1, a2);
        fflush(stdout);
        _exit(rc);
    }
    close(fd[1]);
    FILE *in = fdopen(fd[0], "r");
    char line[512];
    while (in && fgets(line, sizeof line, in)) {
        line[strcspn(line, "\n")] = 0;
        parse_line(r, line);
        if (getenv("GPT2_BENCH_VERBOSE")) fprintf(stderr, "  | %s\n", line);
    }
    if (in) fclose(in);
    int status = 0;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) == pid) {
        r->maxrss_gib = (double)ru.ru_maxrss / (1024.0 * 1024.0);
        if (!r->err[0] && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
            snprintf(r->err, sizeof r->err, "child exited with status %d", status);
    }
}

static int job_train(int how, int T) { return child_train(how & 1, T, how & 2); } /* how: 1 compiled, 2 bf16 */

/* --curve: n trainer steps of GPT-2 124M, B=4 T=64, on the fortunes bytes; prints "curve LOSS" per step */
static int child_curve(int how, int n) {
    bool bf16 = how & 1;
    uint64_t data_seed = how & 2 ? 7 : 1337;
    char *text = NULL;
    size_t len = 0;
    int64_t N = 2000000;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)N);
    if (!ids) return fail("malloc");
    if (em_text_read("fortunes", &text, &len) == EM_OK && len > 100000) {
        N = (int64_t)len < N ? (int64_t)len : N;
        for (int64_t i = 0; i < N; i++) ids[i] = (unsigned char)text[i];
    } else { /* no corpus: an order-1 Markov stream over 256 ids */
        printf("note no fortunes corpus (scripts/setup installs it): a synthetic token stream\n");
        uint64_t r = 88172645463325252ull;
        int32_t cur = 0;
        for (int64_t i = 0; i < N; i++) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            int pick = (int)(r % 10);
            cur = pick < 6 ? (cur * 7 + 3) % 256 : pick < 9 ? (cur * 5 + 11) % 256 : (int32_t)((r >> 20) % 256);
            ids[i] = cur;
        }
    }
    free(text);
    em_dataset_t *d = em_dataset_new(ids, N, V, 0.05);
    free(ids);
    em_model_t *m = d ? new_model() : NULL;
    if (!m) return fail("dataset / model");
    em_train_config tc;
    em_train_config_default(&tc);
    tc.batch = B, tc.seq_len = 64, tc.max_steps = n, tc.warmup = 20, tc.lr = 6e-4, tc.min_lr = 6e-5;
    tc.seed = data_seed;
    tc.precision = bf16 ? EM_BF16 : EM_F32;
    em_trainer_t *t = em_trainer_new(m, d, &tc);
    if (!t) return fail("em_trainer_new");
    for (int i = 0; i < n; i++) {
        em_train_stats st;
        if (em_trainer_step(t, &st) != EM_OK) return fail("em_trainer_step");
        printf("curve %.6f\n", st.loss);
        fflush(stdout);
    }
    em_trainer_free(t);
    em_dataset_free(d);
    return 0;
}
static int job_curve(int how, int n) { return child_curve(how, n); }
static int job_gen(int compiled, int bf16) { return child_gen(compiled, bf16); }

/* a plain streaming read (GB/s): the sum of 256 MiB of floats on opt.threads threads, best of 5 */
static int job_read(int unused1, int unused2) {
    (void)unused1, (void)unused2;
    const size_t n = (size_t)64 << 20;
    float *a = malloc(n * sizeof *a);
    if (!a) return fail("malloc");
    for (size_t i = 0; i < n; i++) a[i] = (float)(i & 7);
    double best = 0;
    for (int r = 0; r < 5; r++) {
        double t0 = now_s(), total = 0;
#pragma omp parallel for num_threads(opt.threads) reduction(+ : total) schedule(static)
        for (size_t b = 0; b < n / 4096; b++) {
            float acc[16] = {0};
            for (size_t i = b * 4096; i < (b + 1) * 4096; i += 16)
                for (int l = 0; l < 16; l++) acc[l] += a[i + l];
            for (int l = 0; l < 16; l++) total += acc[l];
        }
        double gbs = (double)n * sizeof *a / (now_s() - t0) * 1e-9;
        if (total != 0 && gbs > best) best = gbs;
    }
    printf("read_gbs %.2f\n", best);
    free(a);
    return 0;
}

static void run_peer(result *r, bool train, int T, bool bf16) {
    char a[4][16];
    snprintf(a[0], 16, "%d", train ? T : PROMPT);
    snprintf(a[1], 16, "%d", train ? opt.steps : NEW);
    snprintf(a[2], 16, "%d", opt.gen_reps);
    snprintf(a[3], 16, "%d", opt.threads);
    const char *py = getenv("EMBER_PYTHON") ? getenv("EMBER_PYTHON")
                     : access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
    char *argv_train[] = {(char *)py, (char *)opt.peer, "train", a[0], a[1], a[3], bf16 ? "bf16" : NULL, NULL};
    char *argv_gen[] = {(char *)py, (char *)opt.peer, "gen", a[0], a[1], a[2], a[3], bf16 ? "bf16" : NULL, NULL};
    if (access(opt.peer, R_OK) != 0) {
        clear(r);
        snprintf(r->err, sizeof r->err, "no peer script at %s (run from the repository root or pass --peer)", opt.peer);
        return;
    }
    /* PyTorch at its best: tcmalloc, OpenMP OpenBLAS, passive OpenMP waiting, same thread count */
    const char *tc = "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4";
    if (access(tc, R_OK) == 0) setenv("LD_PRELOAD", tc, 1);
    if (access("/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0", R_OK) == 0)
        setenv("LD_LIBRARY_PATH", "/usr/lib/x86_64-linux-gnu/openblas-openmp", 1);
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    setenv("OMP_NUM_THREADS", a[3], 1);
    run_child(r, NULL, 0, 0, train ? argv_train : argv_gen);
    unsetenv("LD_PRELOAD");
    unsetenv("LD_LIBRARY_PATH");
}

/* ---- the table ----------------------------------------------------------------------------------- */
static double train_flops(int T) {
    double tok = (double)B * T, mm = 12.0 * L * C * C + (double)V * C;
    return 6.0 * tok * mm + 12.0 * L * B * (double)T * T * C;
}
static double prefill_flops(void) { /* the lm_head on the last position only, as every row runs it */
    return 2.0 * PROMPT * 12.0 * L * C * C + 2.0 * (double)V * C + 4.0 * L * (double)PROMPT * PROMPT * C;
}

static void cell(char *buf, size_t n, double v, const char *fmt) {
    if (isnan(v)) snprintf(buf, n, "n/a");
    else snprintf(buf, n, fmt, v);
}

/* one table line: label, the three values, then torch/ember ratios for the Ember rows.
   higher_better: ratio = ember/torch (rates), else torch/ember (times): both "x faster" */
static void line(const char *label, const double *v, const char *fmt, bool ratio, bool higher_better) {
    char c[NROWS][32], rc[2][32];
    for (int i = 0; i < NROWS; i++) cell(c[i], sizeof c[i], v[i], fmt);
    for (int i = 0; i < 2; i++) {
        double x = higher_better ? v[i] / v[R_TORCH] : v[R_TORCH] / v[i];
        if (ratio) cell(rc[i], sizeof rc[i], x, "%.2fx");
        else snprintf(rc[i], sizeof rc[i], "%s", "");
    }
    printf("%-30s %14s %14s %14s %10s %10s\n", label, c[0], c[1], c[2], rc[0], rc[1]);
}

static void why(const result *r, int row, const char *what) {
    if (r->err[0] || (!r->ran && opt.row_on[row]))
        printf("  note: %s, %s: %s\n", row_names[row], what, r->err[0] ? r->err : "did not run");
}

static void parse_list(const char *s, int *out, int *n, int max) {
    *n = 0;
    while (*s && *n < max) {
        out[(*n)++] = atoi(s);
        s = strchr(s, ',');
        if (!s) break;
        s++;
    }
}

/* the bf16 row of one T: Ember compiled under EM_BF16 matmul precision vs PyTorch autocast(bfloat16) */
static void bf16_rows(result *res, int T) {
    for (int r = 0; r < NROWS; r++) {
        clear(&res[r]);
        if (!opt.row_on[r] || r == R_EAGER) continue;
        if (r == R_TORCH) run_peer(&res[r], true, T, true);
        else run_child(&res[r], job_train, 1 | 2, T, NULL);
    }
    double s[NROWS], g[NROWS], rss[NROWS], loss[NROWS], cpu[NROWS], cold[NROWS];
    for (int r = 0; r < NROWS; r++) {
        s[r] = median(res[r].step_s, res[r].n_step);
        g[r] = train_flops(T) / s[r] * 1e-9;
        rss[r] = res[r].ran ? res[r].maxrss_gib : NAN;
        loss[r] = res[r].loss;
        cpu[r] = median(res[r].step_cpu, res[r].n_cpu);
        cold[r] = res[r].compile_cold_ms * 1e-3;
    }
    char label[64];
    snprintf(label, sizeof label, "train B=%d T=%d bf16 matmuls (s)", B, T);
    line(label, s, "%.3f", true, false);
    line("  achieved GFLOP/s", g, "%.1f", false, true);
    line("  CPU s per step (user+sys)", cpu, "%.2f", false, false);
    line("  peak RSS (GiB)", rss, "%.2f", false, false);
    line("  compile cold (s)", cold, "%.2f", false, false);
    line("  loss after the steps", loss, "%.4f", false, false);
    printf("  (bf16: Ember compiled under em_set_matmul_precision(EM_BF16); PyTorch under "
           "torch.autocast(\"cpu\", bfloat16))\n");
    for (int r = 0; r < NROWS; r++)
        if (r != R_EAGER) why(&res[r], r, "bf16 training");
    fflush(stdout);
}

/* --curve: f32, bf16 and f32 with another data seed; |bf16 - f32| against |f32' - f32| */
static int curve_main(void) {
    static result res[3];
    printf("GPT-2 124M, B=%d T=64, %d trainer steps (compiled) on the fortunes bytes, %d threads; load ", B,
           opt.curve, opt.threads);
    FILE *la = fopen("/proc/loadavg", "r");
    char buf[128] = "?";
    if (la && fgets(buf, sizeof buf, la)) buf[strcspn(buf, "\n")] = 0;
    if (la) fclose(la);
    printf("%s\n", buf);
    const char *names[3] = {"f32", "bf16 (same init, same data)", "f32, another data seed"};
    for (int k = 0; k < 3; k++) {
        double t0 = now_s();
        run_child(&res[k], job_curve, k == 1 ? 1 : k == 2 ? 2 : 0, opt.curve, NULL);
        printf("  %-30s %d steps in %.0f s%s%s\n", names[k], res[k].n_curve, now_s() - t0, res[k].err[0] ? ": " : "",
               res[k].err);
        fflush(stdout);
    }
    int n = res[0].n_curve < res[1].n_curve ? res[0].n_curve : res[1].n_curve;
    if (res[2].n_curve < n) n = res[2].n_curve;
    if (n < 1) return 1;
    printf("%-12s %10s %10s %10s %14s %14s %16s %16s\n", "steps", "f32", "bf16", "f32'", "max|bf16-f32|",
           "mean|bf16-f32|", "max|f32'-f32|", "mean|f32'-f32|");
    for (int w0 = 0; w0 < n; w0 += 50) {
        for (int pass = 0; pass < 2; pass++) {
            int a = pass ? 0 : w0, b = pass ? n : (w0 + 50 < n ? w0 + 50 : n);
            if (pass && w0 + 50 < n) break;
            double dm = 0, ds = 0, nm = 0, ns = 0;
            for (int i = a; i < b; i++) {
                double d = fabs(res[1].curve[i] - res[0].curve[i]), e = fabs(res[2].curve[i] - res[0].curve[i]);
                dm = fmax(dm, d), ds += d, nm = fmax(nm, e), ns += e;
            }
            char lab[32];
            if (pass) snprintf(lab, sizeof lab, "all %d", n);
            else snprintf(lab, sizeof lab, "%d-%d", a + 1, b);
            printf("%-12s %10.4f %10.4f %10.4f %14.4f %14.4f %16.4f %16.4f\n", lab, res[0].curve[b - 1],
                   res[1].curve[b - 1], res[2].curve[b - 1], dm, ds / (b - a), nm, ns / (b - a));
        }
    }
    printf("(f32' differs from f32 only in the data order: its distance is the run-to-run noise)\n");
    return 0;
}

static int usage(void) {
    fprintf(stderr, "usage: gpt2 [--rows compiled,eager,torch] [--T 64,256] [--steps N] [--gen-reps N]\n"
                    "            [--no-train] [--no-gen] [--no-bf16] [--threads N] [--peer PATH] [--quick]\n"
                    "       gpt2 --curve [N]   (the bf16-vs-f32 loss curves, N steps, default 200)\n");
    return 2;
}

int main(int argc, char **argv) {
    /* libgomp reads its policy once, when it loads: unless the caller chose one, run again under
       the ember command's (tools/ember.c: PASSIVE after a short spin, GOMP_SPINCOUNT=10000; the
       PyTorch column gets the same). Workers that spin ~3 ms after every parallel region cost an
       eager step 3x its CPU time on a loaded 2-core machine. */
    if (!getenv("OMP_WAIT_POLICY") && !getenv("GOMP_SPINCOUNT")) {
        setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
        setenv("GOMP_SPINCOUNT", "10000", 1);
        execv("/proc/self/exe", argv);
    }
    for (int i = 0; i < NROWS; i++) opt.row_on[i] = true;
    opt.T[0] = 64, opt.T[1] = 256, opt.nT = 2;
    opt.steps = 3, opt.gen_reps = 2, opt.train = opt.gen = opt.bf16 = true;
    const char *e = getenv("EMBER_NUM_THREADS");
    opt.threads = e && atoi(e) > 0 ? atoi(e) : 2;
    static char peer[1024];
    snprintf(peer, sizeof peer, "%s", __FILE__); /* bench/gpt2.c -> bench/peers/gpt2.py */
    char *slash = strrchr(peer, '/');
    snprintf(slash ? slash + 1 : peer, sizeof peer - (size_t)(slash ? slash + 1 - peer : 0), "peers/gpt2.py");
    opt.peer = peer;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--quick")) opt.nT = 1, opt.steps = 2, opt.gen_reps = 1;
        else if (!strcmp(a, "--no-train")) opt.train = false;
        else if (!strcmp(a, "--no-gen")) opt.gen = false;
        else if (!strcmp(a, "--no-bf16")) opt.bf16 = false;
        else if (!strcmp(a, "--curve")) {
            opt.curve = v && atoi(v) > 0 ? atoi(v) : 200;
            if (v && atoi(v) > 0) i++;
        }
        else if (!v) return usage();
        else if (!strcmp(a, "--rows")) {
            for (int r = 0; r < NROWS; r++) opt.row_on[r] = false;
            opt.row_on[R_COMPILED] = strstr(v, "compiled") != NULL;
            opt.row_on[R_EAGER] = strstr(v, "eager") != NULL;
            opt.row_on[R_TORCH] = strstr(v, "torch") != NULL;
            i++;
        } else if (!strcmp(a, "--T")) parse_list(v, opt.T, &opt.nT, 4), i++;
        else if (!strcmp(a, "--steps")) opt.steps = atoi(v), i++;
        else if (!strcmp(a, "--gen-reps")) opt.gen_reps = atoi(v), i++;
        else if (!strcmp(a, "--threads")) opt.threads = atoi(v), i++;
        else if (!strcmp(a, "--peer")) opt.peer = v, i++;
        else return usage();
    }
    if (opt.steps < 1 || opt.steps >= MAXV || opt.gen_reps < 1 || opt.gen_reps >= MAXV || opt.threads < 1 ||
        opt.nT < 1)
        return usage();
    for (int t = 0; t < opt.nT; t++)
        if (opt.T[t] < 1 || opt.T[t] > 1024) return usage();

    if (opt.curve) return curve_main();
    char host[128] = "?";
    FILE *la = fopen("/proc/loadavg", "r");
    if (la && fgets(host, sizeof host, la)) host[strcspn(host, "\n")] = 0;
    if (la) fclose(la);
    printf("GPT-2 124M, f32, random init, %d threads, OMP_WAIT_POLICY=%s GOMP_SPINCOUNT=%s; medians of %d steps / %d "
           "generation reps; load %s\n", opt.threads, getenv("OMP_WAIT_POLICY") ? getenv("OMP_WAIT_POLICY") : "(unset)",
           getenv("GOMP_SPINCOUNT") ? getenv("GOMP_SPINCOUNT") : "(unset)", opt.steps, opt.gen_reps, host);
    printf("%-30s %14s %14s %14s %10s %10s\n", "", row_names[0], row_names[1], row_names[2], "comp/torch",
           "eager/torch");

    result res[NROWS];
    memset(res, 0, sizeof res);
    for (int t = 0; opt.train && t < opt.nT; t++) {
        int T = opt.T[t];
        for (int r = 0; r < NROWS; r++) {
            if (!opt.row_on[r]) {
                clear(&res[r]);
                continue;
            }
            if (r == R_TORCH) run_peer(&res[r], true, T, false);
            else run_child(&res[r], job_train, r == R_COMPILED, T, NULL);
        }
        double s[NROWS], g[NROWS], rss[NROWS], cold[NROWS], warm[NROWS], loss[NROWS], cpu[NROWS], sys[NROWS],
            flt[NROWS], nrun[NROWS];
        for (int r = 0; r < NROWS; r++) {
            s[r] = median(res[r].step_s, res[r].n_step);
            g[r] = train_flops(T) / s[r] * 1e-9;
            rss[r] = res[r].ran ? res[r].maxrss_gib : NAN;
            cold[r] = res[r].compile_cold_ms * 1e-3;
            warm[r] = res[r].compile_warm_ms * 1e-3;
            loss[r] = res[r].loss;
            cpu[r] = median(res[r].step_cpu, res[r].n_cpu);
            sys[r] = median(res[r].step_sys, res[r].n_sys);
            flt[r] = median(res[r].step_flt, res[r].n_flt) * 1e-3;
            nrun[r] = res[r].steps_run;
        }
        char label[64];
        snprintf(label, sizeof label, "train B=%d T=%d step (s)", B, T);
        line(label, s, "%.3f", true, false);
        printf("%-30s %.1f GFLOP per step\n", "  FLOPs", train_flops(T) * 1e-9);
        line("  achieved GFLOP/s", g, "%.1f", false, true);
        line("  CPU s per step (user+sys)", cpu, "%.2f", false, false);
        line("  of which system (s)", sys, "%.2f", false, false);
        line("  page faults per step (k)", flt, "%.1f", false, false);
        line("  peak RSS (GiB)", rss, "%.2f", false, false);
        line("  compile cold (s)", cold, "%.2f", false, false);
        line("  compile warm (s)", warm, "%.3f", false, false);
        line("  loss after the steps", loss, "%.4f", false, false);
        line("  steps run (equal: equal loss)", nrun, "%.0f", false, false);
        if (res[R_COMPILED].ran && res[R_COMPILED].disk_hits == 0 && opt.row_on[R_COMPILED])
            printf("  note: the warm compile had no disk cache hits\n");
        for (int r = 0; r < NROWS; r++) why(&res[r], r, "training");
        fflush(stdout);
        if (opt.bf16) bf16_rows(res, T);
    }
    if (opt.gen) {
        for (int r = 0; r < NROWS; r++) {
            if (!opt.row_on[r]) {
                clear(&res[r]);
                continue;
            }
            if (r == R_TORCH) run_peer(&res[r], false, 0, false);
            else run_child(&res[r], job_gen, r == R_COMPILED, 0, NULL);
        }
        double pf[NROWS], tps[NROWS], g[NROWS], rss[NROWS], gc[NROWS];
        for (int r = 0; r < NROWS; r++) {
            pf[r] = median(res[r].prefill_ms, res[r].n_prefill);
            double d = median(res[r].decode_s, res[r].n_decode);
            tps[r] = NEW / d;
            g[r] = prefill_flops() / (pf[r] * 1e-3) * 1e-9;
            rss[r] = res[r].ran ? res[r].maxrss_gib : NAN;
            gc[r] = res[r].gen_compile_ms * 1e-3;
        }
        line("prefill 64 tokens (ms)", pf, "%.1f", true, false);
        printf("%-30s %.1f GFLOP\n", "  FLOPs", prefill_flops() * 1e-9);
        line("  achieved GFLOP/s", g, "%.1f", false, true);
        line("decode, KV cache (tokens/s)", tps, "%.1f", true, true);
        line("  decode-step compile (s)", gc, "%.2f", false, false);
        line("  peak RSS (GiB)", rss, "%.2f", false, false);
        for (int r = 0; r < NROWS; r++) why(&res[r], r, "generation");
        if (opt.bf16) { /* the same generation with bf16 weights, KV cache and activations */
            for (int r = 0; r < NROWS; r++) {
                clear(&res[r]);
                if (!opt.row_on[r]) continue;
                if (r == R_TORCH) run_peer(&res[r], false, 0, true);
                else run_child(&res[r], job_gen, r == R_COMPILED, 1, NULL);
            }
            result rd;
            run_child(&rd, job_read, 0, 0, NULL);
            double t16[NROWS], rss16[NROWS];
            for (int r = 0; r < NROWS; r++) {
                t16[r] = NEW / median(res[r].decode_s, res[r].n_decode);
                rss16[r] = res[r].ran ? res[r].maxrss_gib : NAN;
            }
            line("decode, KV, bf16 (tokens/s)", t16, "%.1f", true, true);
            line("  peak RSS (GiB)", rss16, "%.2f", false, false);
            double bytes = 2.0 * (12.0 * L * C * C + (double)V * C); /* per token: the linears + lm_head */
            printf("%-30s %.1f MB of bf16 weights; floor %.1f tokens/s at the %.1f GB/s streaming read "
                   "(%d threads, this run)\n", "  bytes per token", bytes * 1e-6, rd.read_gbs * 1e9 / bytes,
                   rd.read_gbs, opt.threads);
            for (int r = 0; r < NROWS; r++) why(&res[r], r, "bf16 generation");
        }
    }
    printf("ratios: PyTorch's time over Ember's (above 1: Ember is faster)\n");
    return 0;
}
