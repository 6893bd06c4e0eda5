/* test_memory.c - the compiler's memory: in-place outputs (the new value of a tensor written with
 * em_assign computed straight into that tensor, src/compiler/memplan.c) and the memory plan.
 *
 * Every case runs compiled and eager (or the reference interpreter, where the functional
 * semantics of the trace is what counts) on random inputs and compares the values, and checks the
 * plan through em_compiled_stats / emc_program_stats: an AdamW-like update of lifted tensors
 * keeps no buffer for the new values (inplace_bytes = the three tensors, no fresh outputs, an
 * empty arena), the tensors keep their storage, and views of them see the new values. The cases
 * the plan must refuse (a kernel after the writer still reads the old value; the writer reads the
 * target at other elements) and the ones the run must refuse (a non-contiguous target; another
 * input sharing the target's storage) give the same values as without the optimisation. A small
 * MLP trained with em_adamw (the update of a weight fuses into the epilogue of the GEMM producing
 * its gradient) matches eager to 1e-12 in float64, with its in-place kernels printed without
 * `restrict` on the aliased pair. */
#include "harness.h"

#include "capture/capture.h"
#include "compiler/compiler.h"

static double max_diff(em_tensor_t *a, em_tensor_t *b) {
    return em_item(em_amax(em_abs(em_sub(em_cast(a, EM_F64), em_cast(b, EM_F64))), NULL, 0, false));
}

/* ---- an AdamW-like update of lifted tensors ------------------------------------------------------ */
typedef struct {
    em_tensor_t *p, *m, *v;
} state;

/* in[0] is the gradient; out[0] = sum of the new p (read after the update) */
static em_status adam_like(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    state *s = ctx;
    (void)n_in;
    (void)n_out;
    em_tensor_t *g = in[0];
    em_status st = em_assign(s->m, em_add(em_mul_scalar(s->m, 0.9), em_mul_scalar(g, 0.1)));
    if (!st) st = em_assign(s->v, em_add(em_mul_scalar(s->v, 0.99), em_mul_scalar(em_square(g), 0.01)));
    em_tensor_t *upd = em_div(s->m, em_add_scalar(em_sqrt(s->v), 1e-8));
    if (!st) st = em_assign(s->p, em_sub(s->p, em_mul_scalar(em_add(upd, em_mul_scalar(s->p, 0.1)), 0.01)));
    out[0] = em_sum(s->p, NULL, 0, false);
    return st ? st : out[0] ? EM_OK : em_last_status();
}

static void init_state(state *s, const int64_t *shape, int nd, uint64_t seed) {
    th_seed(seed);
    s->p = th_randn(shape, nd, EM_F32);
    s->m = em_mul_scalar(th_randn(shape, nd, EM_F32), 0.1);
    s->v = em_abs(em_mul_scalar(th_randn(shape, nd, EM_F32), 0.1));
}

static void test_update_in_place(void) {
    /* a small one (one thread) and one large enough for a parallel loop */
    static const int64_t shapes[2][2] = {{7, 33}, {512, 300}};
    for (int c = 0; c < 2; c++) {
        em_scope_t *sc = em_scope_begin();
        state a, b;
        init_state(&a, shapes[c], 2, 11 + (uint64_t)c);
        init_state(&b, shapes[c], 2, 11 + (uint64_t)c);
        void *p_data = emt_data(a.p), *m_data = emt_data(a.m), *v_data = emt_data(a.v);
        em_tensor_t *p_view = em_reshape(a.p, (int64_t[]){-1}, 1); /* a view taken before: sees the writes */
        uint64_t version = emt_version(a.p);
        em_compiled_t *f = em_compile(adam_like, &a, &(em_compile_opts){.fullgraph = true});
        int64_t bytes = shapes[c][0] * shapes[c][1] * 4;
        for (int step = 0; step < 3; step++) {
            th_seed(100 + (uint64_t)step);
            em_tensor_t *g = th_randn(shapes[c], 2, EM_F32), *oc = NULL, *oe = NULL;
            TH_CHECK(em_call(f, &g, 1, &oc, 1) == EM_OK, "[%lld, %lld] step %d runs: %s", (long long)shapes[c][0],
                     (long long)shapes[c][1], step, em_last_error());
            adam_like(&b, &g, 1, &oe, 1);
            double dp = max_diff(a.p, b.p), dm = max_diff(a.m, b.m), dv = max_diff(a.v, b.v);
            TH_CHECK(dp < 1e-6 && dm < 1e-7 && dv < 1e-7, "step %d: p, m, v equal eager (%g, %g, %g)", step, dp, dm, dv);
            double ds = fabs(em_item(oc) - em_item(oe));
            TH_CHECK(ds <= 1e-5 * (1 + fabs(em_item(oe))), "step %d: the output reads the new p (%g vs %g)", step,
                     em_item(oc), em_item(oe));
        }
        em_compile_stats st = em_compiled_stats(f);
        TH_CHECK(st.inplace_bytes == 3 * bytes, "p, m and v are written in place (%lld of %lld bytes)",
                 (long long)st.inplace_bytes, (long long)(3 * bytes));
        TH_CHECK(st.output_bytes == 4, "the only fresh output is the f32 sum (%lld bytes)", (long long)st.output_bytes);
        TH_CHECK(st.planned_peak_bytes == 0, "no buffer holds a new value in between (arena %lld bytes)",
                 (long long)st.planned_peak_bytes);
        TH_CHECK(emt_data(a.p) == p_data && emt_data(a.m) == m_data && emt_data(a.v) == v_data,
                 "the tensors keep their storage");
        TH_CHECK(emt_version(a.p) == version + 3, "each run counts as a write of p (version %llu -> %llu)",
                 (unsigned long long)version, (unsigned long long)emt_version(a.p));
        TH_CHECK(max_diff(p_view, em_reshape(b.p, (int64_t[]){-1}, 1)) < 1e-6, "a view taken before sees the new p");
        em_compiled_free(f);
        em_scope_end(sc);
    }
}

/* ---- what the plan must refuse ------------------------------------------------------------------- */
/* the new p is written by a pointwise kernel; the reduction after it still reads the old p */
static em_status late_reader(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    state *s = ctx;
    (void)n_in;
    (void)n_out;
    em_tensor_t *y = em_add_scalar(s->p, 1.0);
    em_status st = em_assign(s->p, em_mul_scalar(s->p, 0.5));
    out[0] = em_sum(em_mul(y, in[0]), (int[]){1}, 1, false);
    return st ? st : out[0] ? EM_OK : em_last_status();
}

/* the writer reads the target at other elements */
static em_status transposed(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    state *s = ctx;
    (void)n_out;
    (void)n_in;
    em_status st = em_assign(s->p, em_add(em_transpose(s->p, 0, 1), in[0]));
    out[0] = em_mul_scalar(in[0], 2.0);
    return st ? st : out[0] ? EM_OK : em_last_status();
}

static void test_plan_refuses(void) {
    em_scope_t *sc = em_scope_begin();
    int64_t shape[2] = {24, 24};
    {
        state a, b;
        init_state(&a, shape, 2, 3);
        init_state(&b, shape, 2, 3);
        em_compiled_t *f = em_compile(late_reader, &a, &(em_compile_opts){.fullgraph = true});
        for (int step = 0; step < 2; step++) {
            em_tensor_t *x = th_randn(shape, 2, EM_F32), *oc = NULL, *oe = NULL;
            TH_CHECK(em_call(f, &x, 1, &oc, 1) == EM_OK, "late reader: step %d runs", step);
            late_reader(&b, &x, 1, &oe, 1);
            TH_CHECK(max_diff(oc, oe) < 1e-5 && max_diff(a.p, b.p) < 1e-7,
                     "late reader: step %d equals eager (the reduction sees the old p: %g, %g)", step,
                     max_diff(oc, oe), max_diff(a.p, b.p));
        }
        em_compile_stats st = em_compiled_stats(f);
        TH_CHECK(st.inplace_bytes + st.output_bytes == 24 * 24 * 4 + 24 * 4, "late reader: every output counted once");
        em_compiled_free(f);
    }
    {
        state a, b;
        init_state(&a, shape, 2, 4);
        init_state(&b, shape, 2, 4);
        em_compiled_t *f = em_compile(transposed, &a, &(em_compile_opts){.fullgraph = true});
        for (int step = 0; step < 2; step++) {
            em_tensor_t *x = th_randn(shape, 2, EM_F32), *oc = NULL, *oe = NULL;
            TH_CHECK(em_call(f, &x, 1, &oc, 1) == EM_OK, "transposed: step %d runs", step);
            transposed(&b, &x, 1, &oe, 1);
            TH_CHECK(max_diff(a.p, b.p) == 0, "transposed: step %d equals eager (%g)", step, max_diff(a.p, b.p));
        }
        TH_CHECK(em_compiled_stats(f).inplace_bytes == 0, "transposed: the new p gets its own buffer");
        em_compiled_free(f);
    }
    em_scope_end(sc);
}

/* ---- what the run must refuse --------------------------------------------------------------------- */
typedef struct {
    em_tensor_t *p;
} pair;

/* with a second argument, out[0] reads it after p was written: the trace reads every argument as
   the call found it (the tracer cannot know that an argument is a view of p) */
static em_status bump(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    pair *s = ctx;
    (void)n_out;
    em_status st = em_assign(s->p, em_add(em_mul_scalar(s->p, 2.0), in[0]));
    out[0] = em_mul_scalar(in[n_in - 1], 1.0);
    return st ? st : out[0] ? EM_OK : em_last_status();
}

static void test_run_refuses(void) {
    em_scope_t *sc = em_scope_begin();
    /* a non-contiguous target: the program reads a contiguous copy, so the new values must be
       copied back into the view */
    {
        th_seed(21);
        em_tensor_t *base = th_randn((int64_t[]){16, 12}, 2, EM_F32), *ref = em_clone(base);
        pair a = {em_transpose(base, 0, 1)}, b = {em_transpose(ref, 0, 1)};
        em_compiled_t *f = em_compile(bump, &a, &(em_compile_opts){.fullgraph = true});
        for (int step = 0; step < 2; step++) {
            em_tensor_t *x = th_randn((int64_t[]){12, 16}, 2, EM_F32), *oc = NULL, *oe = NULL;
            TH_CHECK(em_call(f, &x, 1, &oc, 1) == EM_OK, "transposed view: step %d runs", step);
            bump(&b, &x, 1, &oe, 1);
            TH_CHECK(max_diff(base, ref) == 0, "transposed view: step %d writes the base like eager (%g)", step,
                     max_diff(base, ref));
        }
        em_compiled_free(f);
    }
    /* an argument sharing the target's storage: the interpreter (the trace's functional meaning,
       the argument read as the call found it) is the reference */
    {
        th_seed(22);
        em_tensor_t *pa = th_randn((int64_t[]){8, 10}, 2, EM_F32), *pb = em_clone(pa);
        pair a = {pa}, b = {pb};
        em_tensor_t *qa = em_reshape(pa, (int64_t[]){80}, 1), *qb = em_reshape(pb, (int64_t[]){80}, 1);
        em_compiled_t *f = em_compile(bump, &a, &(em_compile_opts){.fullgraph = true});
        em_compiled_t *fi = em_compile(bump, &b, &(em_compile_opts){.fullgraph = true, .backend = "interp"});
        for (int step = 0; step < 2; step++) {
            em_tensor_t *x = th_randn((int64_t[]){8, 10}, 2, EM_F32), *oc = NULL, *oi = NULL;
            em_tensor_t *ina[2] = {x, qa}, *inb[2] = {x, qb};
            TH_CHECK(em_call(f, ina, 2, &oc, 1) == EM_OK && em_call(fi, inb, 2, &oi, 1) == EM_OK,
                     "shared storage: step %d runs: %s", step, em_last_error());
            TH_CHECK(max_diff(oc, oi) == 0 && max_diff(pa, pb) == 0,
                     "shared storage: step %d equals the interpreter (output %g, p %g)", step, max_diff(oc, oi),
                     max_diff(pa, pb));
        }
        em_compiled_free(f);
        em_compiled_free(fi);
    }
    em_scope_end(sc);
}

/* ---- a training step with em_adamw ------------------------------------------------------------------ */
typedef struct {
    em_tensor_t *w1, *b1, *w2;
    em_optimizer_t *o;
} mlp;

static em_status train_step(void *ctx, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    mlp *p = ctx;
    (void)n_in;
    (void)n_out;
    em_tensor_t *h = em_tanh(em_linear(in[0], p->w1, p->b1));
    em_tensor_t *loss = em_mean(em_square(em_sub(em_matmul(h, p->w2), in[1])), NULL, 0, false);
    if (!loss || em_backward(loss) != EM_OK) return em_last_status();
    em_status st = em_optimizer_step(p->o);
    if (!st) st = em_optimizer_zero_grad(p->o);
    out[0] = em_detach(loss);
    return st;
}

static void init_mlp(mlp *p, uint64_t seed) {
    th_seed(seed);
    p->w1 = th_randn((int64_t[]){48, 20}, 2, EM_F64);
    p->b1 = th_randn((int64_t[]){48}, 1, EM_F64);
    p->w2 = th_randn((int64_t[]){48, 1}, 2, EM_F64);
    em_tensor_t *ps[3] = {p->w1, p->b1, p->w2};
    for (int i = 0; i < 3; i++) em_set_requires_grad(ps[i], true);
    p->o = em_adamw_new(ps, 3, 1e-2, 0.9, 0.95, 1e-8, 0.1);
}

/* kernels of src whose parameter list has a pointer without restrict and which call a GEMM */
static int unrestricted_gemm_kernels(const char *src) {
    int n = 0;
    for (const char *k = src ? strstr(src, "static void kernel_") : NULL; k; k = strstr(k + 1, "static void kernel_")) {
        const char *eol = strchr(k, '\n'), *next = strstr(k + 1, "static void kernel_");
        const char *end = next ? next : k + strlen(k);
        bool plain = false;
        for (const char *q = k; q && q < eol && (q = strstr(q, " *")) && q < eol; q += 2)
            if (!strncmp(q + 2, "in", 2) || !strncmp(q + 2, "out", 3) || !strncmp(q + 2, "buf", 3)) plain = true;
        const char *gm = strstr(k, "gemm(");
        if (plain && gm && gm < end) n++;
    }
    return n;
}

static void test_adamw_mlp(void) {
    em_scope_t *sc = em_scope_begin();
    mlp a, b;
    init_mlp(&a, 7);
    init_mlp(&b, 7);
    em_compiled_t *f = em_compile(train_step, &a, &(em_compile_opts){.fullgraph = true});
    for (int step = 0; step < 4; step++) {
        th_seed(500 + (uint64_t)step);
        em_tensor_t *x = th_randn((int64_t[]){32, 20}, 2, EM_F64), *y = th_randn((int64_t[]){32, 1}, 2, EM_F64);
        em_tensor_t *in[2] = {x, y}, *lc = NULL, *le = NULL;
        TH_CHECK(em_call(f, in, 2, &lc, 1) == EM_OK, "adamw step %d runs: %s", step, em_last_error());
        train_step(&b, in, 2, &le, 1);
        double d = max_diff(a.w1, b.w1) + max_diff(a.b1, b.b1) + max_diff(a.w2, b.w2);
        TH_CHECK(fabs(em_item(lc) - em_item(le)) < 1e-12 && d < 1e-12, "adamw step %d equals eager (loss %.3g, params %.3g)",
                 step, fabs(em_item(lc) - em_item(le)), d);
    }
    int64_t pbytes = (48 * 20 + 48 + 48) * 8;
    em_compile_stats st = em_compiled_stats(f);
    TH_CHECK(st.inplace_bytes >= 3 * pbytes, "parameters and both moments are written in place (%lld of %lld bytes)",
             (long long)st.inplace_bytes, (long long)(3 * pbytes));
    TH_CHECK(st.output_bytes <= 64, "fresh outputs: the loss and the step count at most (%lld bytes)",
             (long long)st.output_bytes);
    em_compiled_free(f);
    em_optimizer_free(a.o);
    em_optimizer_free(b.o);

    /* the same step through the compiler's own API: the generated source */
    init_mlp(&a, 7);
    th_seed(500);
    em_tensor_t *in[2] = {th_randn((int64_t[]){32, 20}, 2, EM_F64), th_randn((int64_t[]){32, 1}, 2, EM_F64)};
    emcap_trace tr;
    TH_CHECK(emcap_trace_fn(train_step, &a, in, 2, 1, true, &tr) == EM_OK, "trace the step");
    int *tg = calloc((size_t)tr.g->n_outputs + 1, sizeof *tg);
    for (int o = 0; o < tr.g->n_outputs; o++) tg[o] = -1;
    for (int k = 0; k < tr.n_wb; k++)
        for (int j = 0; j < tr.n_lifted; j++)
            if (!tr.wb[k].is_grad && tr.wb[k].value >= 0 && tr.lifted[j] == tr.wb[k].target) tg[tr.wb[k].value] = tr.n_args + j;
    emc_program *p = emc_compile_graph(tr.g, &(emc_opts){.out_target = tg});
    emc_program *p0 = emc_compile_graph(tr.g, NULL);
    TH_CHECK(p && p0, "compiles with and without write-back targets");
    if (p && p0) {
        TH_CHECK(emc_program_stats(p)->inplace_bytes >= 3 * pbytes && emc_program_stats(p0)->inplace_bytes == 0,
                 "only the program offered targets writes in place");
        TH_CHECK(emc_program_stats(p0)->output_bytes == emc_program_stats(p)->output_bytes + emc_program_stats(p)->inplace_bytes,
                 "without targets the same bytes are fresh outputs");
        int nu = unrestricted_gemm_kernels(emc_program_source(p));
        TH_CHECK(nu >= 1, "an update fused into a GEMM's epilogue drops restrict on the aliased pair (%d kernels)", nu);
        TH_CHECK(unrestricted_gemm_kernels(emc_program_source(p0)) == 0, "every pointer is restrict otherwise");
    }
    emc_program_free(p);
    emc_program_free(p0);
    free(tg);
    emcap_trace_free(&tr);
    em_optimizer_free(a.o);
    em_scope_end(sc);
}

int main(void) {
    int64_t live = em_live_tensors();
    test_update_in_place();
    test_plan_refuses();
    test_run_refuses();
    test_adamw_mlp();
    TH_CHECK(em_live_tensors() == live, "no tensor leaked (%lld live)", (long long)(em_live_tensors() - live));
    return th_summary();
}
