/* test_lora.c - LoRA adapters (src/nn/lora.c) on the tiny GPT-2 and Llama presets.
 *
 * What is asserted: an adapted model computes exactly what its base does at init (B = 0); after
 * adding, only the adapters require and receive gradients, and those match central finite
 * differences of the f64 model's loss (with B made non-zero, so dL/dA is not trivially 0); AdamW
 * over em_model_trainable_params lowers the loss on a fixed batch and leaves every base parameter
 * bitwise unchanged; merging (em_model_merge_lora, and the merged export a model file is written
 * from) gives the unmerged logits; a compiled training step with adapters equals the eager one;
 * cached decoding with adapters equals the full forward; adapters saved alone load back into a
 * fresh base model; targets select the documented linears; bad arguments and files give clear
 * errors and leave the model unchanged. Every test checks that no tensor leaked.
 */
#include "harness.h"
#include "nn/nn.h" /* emn_lora_export: what em_model_save writes */

#include <sys/wait.h>
#include <unistd.h>

#define CHECK_LIVE(start, what) \
    TH_CHECK(em_live_tensors() == (start), "%s: no tensor leaked (%lld live, %lld at start)", what, \
             (long long)em_live_tensors(), (long long)(start))

/* ---- helpers ------------------------------------------------------------------------------------ */
static em_model_config preset(const char *name, em_dtype dt) {
    em_model_config c;
    em_model_config_preset(name, &c);
    c.dtype = dt;
    return c;
}

static em_tensor_t *tokens(int B, int T, int V, uint64_t seed) {
    th_seed(seed);
    int64_t *d = malloc(sizeof(int64_t) * (size_t)(B * T));
    for (int i = 0; i < B * T; i++) d[i] = (int64_t)(th_uniform() * V);
    em_tensor_t *t = em_from_data(d, (int64_t[]){B, T}, 2, EM_I64);
    free(d);
    return t;
}

/* max |a - b| in f64 (any shapes that broadcast) */
static double diff(em_tensor_t *a, em_tensor_t *b) {
    em_scope_t *s = em_scope_begin();
    double d = em_item(em_amax(em_abs(em_sub(em_cast(a, EM_F64), em_cast(b, EM_F64))), NULL, 0, false));
    em_scope_end(s);
    return d;
}

static double max_abs(em_tensor_t *a) {
    em_scope_t *s = em_scope_begin();
    double d = em_item(em_amax(em_abs(em_cast(a, EM_F64)), NULL, 0, false));
    em_scope_end(s);
    return d;
}

/* gives every lora_B random values (std `sd`, the test's generator) so the adapters change the output */
static void randomize_b(em_model_t *m, uint64_t seed, double sd) {
    th_seed(seed);
    em_scope_t *s = em_scope_begin();
    for (int i = 0; i < em_model_num_params(m); i++) {
        const char *name;
        em_tensor_t *p = em_model_param(m, i, &name);
        if (strstr(name, ".lora_B"))
            em_model_set_param(m, name, em_mul_scalar(th_randn(em_shape(p), 2, EM_F64), sd));
    }
    em_scope_end(s);
}

static double loss_of(em_model_t *m, em_tensor_t *idx, em_tensor_t *tg) {
    em_scope_t *s = em_scope_begin();
    em_tensor_t *loss;
    em_model_forward(m, idx, tg, &loss);
    double v = em_item(loss);
    em_scope_end(s);
    return v;
}

static em_tensor_t *logits_of(em_model_t *m, em_tensor_t *idx) {
    em_no_grad_begin();
    em_tensor_t *l = em_model_forward(m, idx, NULL, NULL);
    em_no_grad_end();
    return l;
}

/* ---- init: shapes, names, values, frozen base ------------------------------------------------------- */
static void check_init(const char *name, em_dtype dt, int rank, int want_n) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    char what[64];
    snprintf(what, sizeof what, "%s %s init", name, em_dtype_name(dt));
    em_model_config cfg = preset(name, dt);
    em_model_t *base = em_model_new(&cfg, 7), *m = em_model_new(&cfg, 7);
    int nb = em_model_num_params(m);
    int64_t count0 = em_model_param_count(m);
    em_tensor_t *idx = tokens(2, 10, cfg.vocab_size, 3);
    TH_CHECK(em_model_num_lora(m) == 0, "%s: no adapters before", what);
    em_lora_config lc = {.rank = rank, .alpha = 16, .seed = 11};
    TH_CHECK(em_model_add_lora(m, &lc) == EM_OK, "%s: add (%s)", what, em_last_error());
    TH_CHECK(em_model_num_lora(m) == want_n, "%s: %d adapted linears (want %d: every linear of every block)", what,
             em_model_num_lora(m), want_n);
    TH_CHECK(em_model_num_params(m) == nb + 2 * want_n, "%s: A and B appended to the parameters", what);
    /* the base indices did not move */
    bool same = true;
    for (int i = 0; i < nb; i++) {
        const char *n0, *n1;
        em_model_param(base, i, &n0);
        em_model_param(m, i, &n1);
        same = same && !strcmp(n0, n1);
    }
    TH_CHECK(same, "%s: base parameters keep their indices and names", what);
    /* names, shapes, values */
    bool gpt2 = cfg.arch == EM_ARCH_GPT2;
    em_tensor_t *w = em_model_param_by_name(m, gpt2 ? "h.1.attn.c_attn.weight" : "layers.1.attention.wk.weight");
    em_tensor_t *A = em_model_param_by_name(m, gpt2 ? "h.1.attn.c_attn.lora_A" : "layers.1.attention.wk.lora_A");
    em_tensor_t *B = em_model_param_by_name(m, gpt2 ? "h.1.attn.c_attn.lora_B" : "layers.1.attention.wk.lora_B");
    TH_CHECK(A && B && em_size(A, 0) == rank && em_size(A, 1) == em_size(w, 1) && em_size(B, 0) == em_size(w, 0) &&
             em_size(B, 1) == rank && em_type(A) == dt && em_type(B) == dt,
             "%s: lora_A (r, in) and lora_B (out, r) in the model's dtype", what);
    TH_CHECK(B && max_abs(B) == 0, "%s: B starts at 0", what);
    double bound = 1.0 / sqrt((double)cfg.n_embd);
    em_tensor_t *A2 = em_model_param_by_name(m, gpt2 ? "h.0.mlp.c_fc.lora_A" : "layers.0.feed_forward.w1.lora_A");
    double mean = A2 ? em_item(em_mean(em_cast(A2, EM_F64), NULL, 0, false)) : 1;
    double sd = A2 ? em_item(em_std(em_cast(A2, EM_F64), NULL, 0, 1, false)) : 0;
    TH_CHECK(A && max_abs(A) <= bound && fabs(sd - bound / sqrt(3.0)) < 0.15 * bound / sqrt(3.0) &&
             fabs(mean) < 0.2 * bound && diff(A, A2) > 0,
             "%s: A ~ U(-1/sqrt(in), 1/sqrt(in)) (max %g <= %g, std %g vs %g), different per module", what,
             A ? max_abs(A) : -1, bound, sd, bound / sqrt(3.0));
    /* requires_grad: only the adapters */
    int n_tr = -1, base_rg = 0, lora_rg = 0;
    em_tensor_t *const *tr = em_model_trainable_params(m, &n_tr);
    for (int i = 0; i < em_model_num_params(m); i++) {
        const char *pn;
        em_tensor_t *p = em_model_param(m, i, &pn);
        if (strstr(pn, ".lora_")) lora_rg += em_requires_grad(p);
        else base_rg += em_requires_grad(p);
    }
    bool tr_ok = tr && n_tr == 2 * want_n;
    for (int i = 0; tr_ok && i < n_tr; i++) tr_ok = tr[i] == em_model_params(m)[nb + i];
    TH_CHECK(base_rg == 0 && lora_rg == 2 * want_n && tr_ok, "%s: base frozen (%d require grad), adapters trainable "
             "(%d), em_model_trainable_params lists exactly the adapters (%d)", what, base_rg, lora_rg, n_tr);
    TH_CHECK(em_model_param_count(m) > count0, "%s: the parameter count includes the adapters", what);
    /* the adapted model computes what the base does: bitwise (x W^T + 0) */
    em_tensor_t *l0 = logits_of(base, idx), *l1 = logits_of(m, idx);
    TH_CHECK(l0 && l1 && diff(l0, l1) == 0, "%s: adapted logits equal the base's exactly at init (%g)", what,
             l0 && l1 ? diff(l0, l1) : -1.0);
    /* deterministic from the seed, and the global generator is left alone */
    em_manual_seed(5);
    em_tensor_t *r0 = em_rand((int64_t[]){4}, 1, EM_F64);
    em_manual_seed(5);
    em_model_t *m2 = em_model_new(&cfg, 7);
    em_model_add_lora(m2, &lc);
    em_tensor_t *r1 = em_rand((int64_t[]){4}, 1, EM_F64);
    TH_CHECK(diff(r0, r1) == 0, "%s: em_model_add_lora leaves the global generator alone", what);
    TH_CHECK(diff(A, em_model_param_by_name(m2, gpt2 ? "h.1.attn.c_attn.lora_A" : "layers.1.attention.wk.lora_A")) == 0,
             "%s: the same seed gives the same A", what);
    em_model_free(m2);
    em_model_free(base);
    em_model_free(m);
    em_scope_end(s);
    CHECK_LIVE(live, what);
}

static void test_init(void) {
    check_init("gpt2-tiny", EM_F32, 4, 2 * 4);
    check_init("gpt2-tiny", EM_F64, 2, 2 * 4);
    check_init("llama-tiny", EM_F32, 4, 2 * 7);
    check_init("llama-tiny", EM_F64, 16, 2 * 7); /* rank = wk's out (16) is allowed */
}

/* ---- gradients ------------------------------------------------------------------------------------- */
static void check_grads(const char *name, const char *targets) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    char what[96];
    snprintf(what, sizeof what, "%s [%s] gradients", name, targets ? targets : "all");
    em_model_config cfg = preset(name, EM_F64);
    em_model_t *m = em_model_new(&cfg, 5);
    em_lora_config lc = {.rank = 3, .alpha = 6, .targets = targets, .seed = 2};
    TH_CHECK(em_model_add_lora(m, &lc) == EM_OK, "%s: add", what);
    randomize_b(m, 17, 0.5);
    em_tensor_t *idx = tokens(2, 6, cfg.vocab_size, 8), *tg = tokens(2, 6, cfg.vocab_size, 9);
    em_tensor_t *loss;
    em_model_forward(m, idx, tg, &loss);
    TH_CHECK(em_backward(loss) == EM_OK, "%s: backward", what);
    int base_grads = 0, lora_missing = 0, checked = 0;
    double worst = 0;
    const char *worst_name = "";
    th_seed(99);
    for (int i = 0; i < em_model_num_params(m); i++) {
        const char *pname;
        em_tensor_t *p = em_model_param(m, i, &pname);
        em_tensor_t *g = em_grad(p);
        if (!strstr(pname, ".lora_")) {
            base_grads += g != NULL;
            continue;
        }
        if (!g) {
            lora_missing++;
            continue;
        }
        em_tensor_t *flat = em_reshape(p, (int64_t[]){-1}, 1), *gflat = em_reshape(g, (int64_t[]){-1}, 1);
        for (int r = 0; r < 3; r++) {
            int64_t j = (int64_t)(th_uniform() * (double)em_numel(p));
            em_no_grad_begin();
            em_tensor_t *e = em_select(flat, 0, j);
            double x0 = em_item(e), h = 1e-5;
            em_assign(e, em_scalar(x0 + h, EM_F64));
            double fp = loss_of(m, idx, tg);
            em_assign(e, em_scalar(x0 - h, EM_F64));
            double fm = loss_of(m, idx, tg);
            em_assign(e, em_scalar(x0, EM_F64));
            double num = (fp - fm) / (2 * h), ana = em_item(em_select(gflat, 0, j));
            em_no_grad_end();
            double err = fabs(num - ana) / (1e-3 + fabs(ana));
            if (err > worst) {
                worst = err;
                worst_name = pname;
            }
            checked++;
        }
    }
    TH_CHECK(base_grads == 0, "%s: no base parameter got a gradient (%d did)", what, base_grads);
    TH_CHECK(lora_missing == 0 && checked == 6 * em_model_num_lora(m), "%s: every adapter got a gradient", what);
    TH_CHECK(worst < 1e-5, "%s: %d entries of lora_A / lora_B gradients match central differences (worst rel err %g "
             "in %s)", what, checked, worst, worst_name);
    em_model_free(m);
    em_scope_end(s);
    CHECK_LIVE(live, what);
}

static void test_grads(void) {
    check_grads("gpt2-tiny", NULL);
    check_grads("llama-tiny", NULL);
    check_grads("llama-tiny", "wq,wv"); /* the original paper's choice */
}

/* ---- training: AdamW over the adapters only ---------------------------------------------------------- */
static void check_training(const char *name) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    char what[64];
    snprintf(what, sizeof what, "%s AdamW on adapters", name);
    em_model_config cfg = preset(name, EM_F32);
    em_model_t *m = em_model_new(&cfg, 9);
    int nb = em_model_num_params(m);
    em_tensor_t **before = malloc(sizeof *before * (size_t)nb);
    for (int i = 0; i < nb; i++) before[i] = em_clone(em_model_param(m, i, NULL));
    em_lora_config lc = {.rank = 4, .alpha = 8, .seed = 1};
    em_model_add_lora(m, &lc);
    int n = 0;
    em_tensor_t *const *tr = em_model_trainable_params(m, &n);
    em_optimizer_t *o = em_adamw_new(tr, n, 1e-2, 0.9, 0.95, 1e-8, 0.0);
    TH_CHECK(o != NULL, "%s: em_adamw_new over the trainable parameters (%s)", what, em_last_error());
    const char *a_name = cfg.arch == EM_ARCH_GPT2 ? "h.0.mlp.c_fc.lora_A" : "layers.0.feed_forward.w3.lora_A";
    em_tensor_t *A0 = em_clone(em_model_param_by_name(m, a_name));
    em_tensor_t *idx = tokens(4, 12, cfg.vocab_size, 21), *tg = tokens(4, 12, cfg.vocab_size, 22);
    double first = 0, last = 0;
    for (int step = 0; step < 40 && o; step++) {
        em_scope_t *ss = em_scope_begin();
        em_tensor_t *loss;
        em_model_forward(m, idx, tg, &loss);
        last = em_item(loss);
        if (step == 0) first = last;
        em_backward(loss);
        em_clip_grad_norm(tr, n, 1.0);
        em_optimizer_step(o);
        em_optimizer_zero_grad(o);
        em_scope_end(ss);
    }
    /* random targets: a rank-4 update of a frozen random model cannot memorise them, but it must
       fall well below the uniform ln(64) = 4.16 it starts near */
    TH_CHECK(last < first - 0.3, "%s: 40 steps lower the loss on a fixed batch by > 0.3 nats (%.4f -> %.4f)", what,
             first, last);
    double moved = 0;
    for (int i = 0; i < nb; i++) moved = fmax(moved, diff(before[i], em_model_param(m, i, NULL)));
    TH_CHECK(moved == 0, "%s: every base parameter is bitwise unchanged (max change %g)", what, moved);
    TH_CHECK(diff(A0, em_model_param_by_name(m, a_name)) > 0,
             "%s: the adapters moved", what);
    /* the trained adapters merged into a model file give the same logits from a plain model */
    em_state_dict_t *sd = em_state_dict_new();
    TH_CHECK(emn_lora_export(m, sd) == EM_OK && em_state_dict_count(sd) == nb, "%s: the export holds the %d base "
             "parameters and no adapter (%lld)", what, nb, (long long)em_state_dict_count(sd));
    bool no_lora = true;
    for (int64_t i = 0; i < em_state_dict_count(sd); i++)
        no_lora = no_lora && !strstr(em_state_dict_name_at(sd, i), "lora");
    em_model_t *plain = em_model_new(&cfg, 1234);
    const char **names = malloc(sizeof *names * (size_t)nb);
    em_tensor_t **ts = malloc(sizeof *ts * (size_t)nb);
    for (int i = 0; i < nb; i++) {
        names[i] = em_state_dict_name_at(sd, i);
        ts[i] = em_state_dict_tensor_at(sd, i);
    }
    TH_CHECK(no_lora && em_model_load_params(plain, names, ts, nb, true) == EM_OK,
             "%s: the merged export loads strictly into a plain model", what);
    em_model_set_training(m, false);
    double d = diff(logits_of(m, idx), logits_of(plain, idx)), sc = max_abs(logits_of(m, idx));
    TH_CHECK(d <= 2e-5 * (1 + sc), "%s: the plain model from the merged export gives the adapted logits (%g)", what, d);
    TH_CHECK(em_model_num_lora(m) == 4 * (cfg.arch == EM_ARCH_GPT2 ? 2 : 0) + 7 * (cfg.arch == EM_ARCH_LLAMA ? 2 : 0),
             "%s: exporting leaves the adapters in the model", what);
    free(names);
    free(ts);
    em_model_free(plain);
    em_state_dict_free(sd);
    em_optimizer_free(o);
    free(before);
    em_model_free(m);
    em_scope_end(s);
    CHECK_LIVE(live, what);
}

static void test_training(void) {
    check_training("gpt2-tiny");
    check_training("llama-tiny");
}

/* ---- merging ------------------------------------------------------------------------------------------ */
static void check_merge(const char *name, em_dtype dt, double tol) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    char what[64];
    snprintf(what, sizeof what, "%s %s merge", name, em_dtype_name(dt));
    em_model_config cfg = preset(name, dt);
    em_model_t *m = em_model_new(&cfg, 4);
    int nb = em_model_num_params(m);
    em_tensor_t *const *h0 = em_model_params(m);
    em_tensor_t *w0 = em_retain(h0[3]);
    em_lora_config lc = {.rank = 2, .alpha = 5, .targets = "attn,mlp", .seed = 3};
    em_model_add_lora(m, &lc);
    randomize_b(m, 4, 0.3);
    em_tensor_t *idx = tokens(2, 9, cfg.vocab_size, 5);
    em_tensor_t *l1 = logits_of(m, idx);
    TH_CHECK(em_model_merge_lora(m) == EM_OK, "%s: merge (%s)", what, em_last_error());
    em_tensor_t *l2 = logits_of(m, idx);
    double d = diff(l1, l2), sc = max_abs(l1);
    TH_CHECK(d <= tol * (1 + sc), "%s: merged logits equal the unmerged ones (%g, scale %g)", what, d, sc);
    int rg = 0;
    for (int i = 0; i < em_model_num_params(m); i++) rg += em_requires_grad(em_model_param(m, i, NULL));
    em_clear_error();
    TH_CHECK(em_model_num_params(m) == nb && em_model_num_lora(m) == 0 && rg == nb &&
             !em_model_param_by_name(m, cfg.arch == EM_ARCH_GPT2 ? "h.0.attn.c_attn.lora_A"
                                                                  : "layers.0.attention.wq.lora_A"),
             "%s: the adapters are gone and every base parameter trains again", what);
    TH_CHECK(em_model_params(m)[3] == w0 && em_is_contiguous(w0), "%s: merged in place (the same tensors)", what);
    TH_CHECK(em_model_merge_lora(m) != EM_OK, "%s: merging again fails", what);
    TH_CHECK_ERR(EM_ERR_STATE, "no LoRA adapters", "%s: ... saying there are none", what);
    /* a new round of adapters after a merge */
    TH_CHECK(em_model_add_lora(m, &lc) == EM_OK && em_model_num_lora(m) == 8 + 6 * (cfg.arch == EM_ARCH_LLAMA),
             "%s: adapters can be added again after a merge", what);
    em_release(w0);
    em_model_free(m);
    em_scope_end(s);
    CHECK_LIVE(live, what);
}

static void test_merge(void) {
    check_merge("gpt2-tiny", EM_F64, 1e-12);
    check_merge("llama-tiny", EM_F64, 1e-12);
    check_merge("gpt2-tiny", EM_F32, 1e-5);
    check_merge("llama-tiny", EM_F32, 1e-5);
}

/* ---- a compiled training step ----------------------------------------------------------------------------- */
typedef struct {
    em_model_t *m;
    em_optimizer_t *o;
} step_ctx;

static em_status train_step(void *vc, em_tensor_t *const *in, int n_in, em_tensor_t **out, int n_out) {
    step_ctx *c = vc;
    (void)n_in;
    (void)n_out;
    em_tensor_t *loss;
    em_model_forward(c->m, in[0], in[1], &loss);
    em_status st = em_backward(loss);
    int n = 0;
    em_tensor_t *const *tr = em_model_trainable_params(c->m, &n);
    em_tensor_t *norm = em_clip_grad_norm_tensor(tr, n, 0.5);
    if (st == EM_OK && !norm) st = em_last_status();
    if (st == EM_OK) st = em_optimizer_step(c->o);
    if (st == EM_OK) st = em_optimizer_zero_grad(c->o);
    out[0] = loss;
    return st;
}

static void check_compiled(const char *name) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    char what[64];
    snprintf(what, sizeof what, "%s compiled LoRA step", name);
    em_model_config cfg = preset(name, EM_F64);
    step_ctx a = {em_model_new(&cfg, 1), NULL}, b = {em_model_new(&cfg, 1), NULL};
    em_lora_config lc = {.rank = 2, .alpha = 4, .seed = 8};
    em_model_add_lora(a.m, &lc);
    em_model_add_lora(b.m, &lc);
    int n = 0, nb2 = 0;
    em_tensor_t *const *ta = em_model_trainable_params(a.m, &n);
    a.o = em_adamw_new(ta, n, 2e-2, 0.9, 0.95, 1e-8, 0.1);
    em_tensor_t *const *tb = em_model_trainable_params(b.m, &nb2);
    b.o = em_adamw_new(tb, nb2, 2e-2, 0.9, 0.95, 1e-8, 0.1);
    em_tensor_t *in[2] = {tokens(2, 8, cfg.vocab_size, 40), tokens(2, 8, cfg.vocab_size, 41)};
    em_compiled_t *f = em_compile(train_step, &a, &(em_compile_opts){.fullgraph = true});
    double worst = 0, l_first = 0, l_last = 0;
    bool ok = f != NULL;
    for (int step = 0; step < 4 && ok; step++) {
        em_tensor_t *oc = NULL, *oe = NULL;
        ok = em_call(f, in, 2, &oc, 1) == EM_OK && train_step(&b, in, 2, &oe, 1) == EM_OK;
        if (!ok) break;
        if (step == 0) l_first = em_item(oc);
        l_last = em_item(oc);
        worst = fmax(worst, fabs(em_item(oc) - em_item(oe)));
        for (int i = 0; i < em_model_num_params(a.m); i++)
            worst = fmax(worst, diff(em_model_param(a.m, i, NULL), em_model_param(b.m, i, NULL)));
    }
    em_compile_stats cs = em_compiled_stats(f);
    TH_CHECK(ok && cs.compiles == 1 && cs.graph_breaks == 0, "%s: one graph (fullgraph), replayed (%s)", what,
             ok ? "ok" : em_last_error());
    TH_CHECK(ok && worst < 1e-12, "%s: four compiled steps equal four eager steps (worst %g)", what, worst);
    TH_CHECK(l_last < l_first, "%s: the loss falls (%.5f -> %.5f)", what, l_first, l_last);
    int base_grads = 0;
    for (int i = 0; i < em_model_num_params(a.m); i++) base_grads += em_grad(em_model_param(a.m, i, NULL)) != NULL;
    TH_CHECK(base_grads == 0, "%s: no gradient left on any parameter (%d)", what, base_grads);
    em_compiled_free(f);
    em_optimizer_free(a.o);
    em_optimizer_free(b.o);
    em_model_free(a.m);
    em_model_free(b.m);
    em_scope_end(s);
    CHECK_LIVE(live, what);
}

static void test_compiled(void) {
    check_compiled("gpt2-tiny");
    check_compiled("llama-tiny");
}

/* ---- KV cache ---------------------------------------------------------------------------------------------- */
static void check_cache(const char *name) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    char what[64];
    snprintf(what, sizeof what, "%s cached decoding with adapters", name);
    em_model_config cfg = preset(name, EM_F64);
    em_model_t *m = em_model_new(&cfg, 3), *base = em_model_new(&cfg, 3);
    em_lora_config lc = {.rank = 3, .alpha = 3, .seed = 4, .dropout = 0.3};
    em_model_add_lora(m, &lc);
    randomize_b(m, 6, 0.5);
    em_model_set_training(m, false);
    const int B = 2, T = 10;
    em_tensor_t *idx = tokens(B, T, cfg.vocab_size, 13);
    em_tensor_t *full = logits_of(m, idx);
    em_kv_cache_t *kv = em_kv_cache_new(m, B, cfg.block_size);
    int64_t starts[] = {0, 4, 5, 6, 7, 10};
    double worst = 0;
    for (int c = 0; c + 1 < (int)(sizeof starts / sizeof *starts); c++) {
        int64_t a = starts[c], b = starts[c + 1];
        em_tensor_t *lg = em_model_forward_cached(m, em_contiguous(em_slice(idx, 1, a, b, 1)), a, kv);
        worst = fmax(worst, lg ? diff(lg, em_slice(full, 1, a, b, 1)) : INFINITY);
    }
    TH_CHECK(worst < 1e-12, "%s: equals the full forward (worst %g)", what, worst);
    TH_CHECK(diff(full, logits_of(base, idx)) > 1e-3, "%s: ... and the adapters matter (differs from the base)", what);
    em_kv_cache_free(kv);
    em_model_free(m);
    em_model_free(base);
    em_scope_end(s);
    CHECK_LIVE(live, what);
}

static void test_cache(void) {
    check_cache("gpt2-tiny");
    check_cache("llama-tiny");
}

/* em_generate (compiled decode step and eager) with adapters: greedy tokens equal the argmax of the
   full forward, step by step */
static void check_generate(const char *name) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    char what[64];
    snprintf(what, sizeof what, "%s em_generate with adapters", name);
    em_model_config cfg = preset(name, EM_F64);
    em_model_t *m = em_model_new(&cfg, 12);
    em_lora_config lc = {.rank = 4, .alpha = 8, .seed = 5};
    em_model_add_lora(m, &lc);
    randomize_b(m, 13, 1.0);
    em_model_set_training(m, false);
    enum { P = 3, N = 8 };
    int64_t seq[P + N] = {5, 17, 2};
    for (int i = 0; i < N; i++) { /* the reference: full forward, argmax of the last position */
        em_scope_t *si = em_scope_begin();
        em_tensor_t *lg = logits_of(m, em_from_data(seq, (int64_t[]){1, P + i}, 2, EM_I64));
        seq[P + i] = (int64_t)em_item(em_argmax(em_select(em_select(lg, 0, 0), 0, P + i - 1), 0, false));
        em_scope_end(si);
    }
    int32_t prompt[P] = {5, 17, 2}, out[N];
    const int32_t *prompts[1] = {prompt};
    int64_t len = P, out_len = 0;
    for (int eager = 0; eager < 2; eager++) {
        em_generate_opts go = {.max_new_tokens = N, .temperature = 0, .eager = eager};
        em_status st = em_generate(m, prompts, &len, 1, &go, out, &out_len, NULL);
        bool same = st == EM_OK && out_len == N;
        for (int i = 0; same && i < N; i++) same = out[i] == seq[P + i];
        TH_CHECK(same, "%s (%s decode): greedy tokens equal the full forward's argmax (%s)", what,
                 eager ? "eager" : "compiled", st == EM_OK ? "ok" : em_last_error());
    }
    em_model_free(m);
    em_scope_end(s);
    CHECK_LIVE(live, what);
}

static void test_generate(void) {
    check_generate("gpt2-tiny");
    check_generate("llama-tiny");
}

/* ---- dropout on the adapter input ------------------------------------------------------------------------- */
static void test_dropout(void) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    em_model_config cfg = preset("gpt2-tiny", EM_F64);
    em_model_t *m = em_model_new(&cfg, 3), *ref = em_model_new(&cfg, 3);
    em_lora_config lc = {.rank = 2, .dropout = 0.5, .seed = 4}, lr = {.rank = 2, .seed = 4};
    em_model_add_lora(m, &lc);
    em_model_add_lora(ref, &lr);
    randomize_b(m, 6, 0.5);
    randomize_b(ref, 6, 0.5);
    em_tensor_t *idx = tokens(2, 8, cfg.vocab_size, 1);
    em_tensor_t *lt = em_model_forward(m, idx, NULL, NULL); /* training mode, grad on */
    em_tensor_t *lref = em_model_forward(ref, idx, NULL, NULL);
    em_tensor_t *ln = logits_of(m, idx);                       /* no-grad: no dropout */
    em_model_set_training(m, false);
    em_tensor_t *le = em_model_forward(m, idx, NULL, NULL);   /* evaluation: no dropout */
    TH_CHECK(diff(lt, lref) > 1e-6, "LoRA dropout changes the training forward (%g)", diff(lt, lref));
    TH_CHECK(diff(le, lref) == 0 && diff(ln, lref) == 0, "no LoRA dropout in evaluation mode or under no-grad");
    em_model_free(m);
    em_model_free(ref);
    em_scope_end(s);
    CHECK_LIVE(live, "dropout");
}

/* ---- targets --------------------------------------------------------------------------------------------------- */
static int count_for(const char *name, const char *targets) {
    em_model_config cfg = preset(name, EM_F32);
    em_model_t *m = em_model_new(&cfg, 1);
    em_lora_config lc = {.rank = 1, .targets = targets};
    int n = em_model_add_lora(m, &lc) == EM_OK ? em_model_num_lora(m) : -1;
    em_model_free(m);
    return n;
}

static void test_targets(void) {
    int64_t live = em_live_tensors();
    struct {
        const char *model, *targets;
        int want;
    } cases[] = {
        {"gpt2-tiny", NULL, 8},           {"gpt2-tiny", "", 8},          {"gpt2-tiny", "all", 8},
        {"gpt2-tiny", "c_attn", 2},       {"gpt2-tiny", "c_proj", 4},    {"gpt2-tiny", "attn.c_proj", 2},
        {"gpt2-tiny", "attn", 4},         {"gpt2-tiny", "mlp", 4},       {"gpt2-tiny", "h.1.mlp.c_fc", 1},
        {"gpt2-tiny", "c_attn,c_attn", 2}, {"llama-tiny", NULL, 14},     {"llama-tiny", "wq, wv", 4},
        {"llama-tiny", "attn", 8},        {"llama-tiny", "mlp", 6},      {"llama-tiny", "w1,w2,w3,wo", 8},
        {"llama-tiny", "layers.0.attention.wk", 1}, {"gpt2-tiny", " , ", -1},   {"gpt2-tiny", "c_attn,", 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int n = count_for(cases[i].model, cases[i].targets);
        TH_CHECK(n == cases[i].want, "%s targets \"%s\": %d adapted linears (want %d)", cases[i].model,
                 cases[i].targets ? cases[i].targets : "(NULL)", n, cases[i].want);
    }
    CHECK_LIVE(live, "targets");
}

/* ---- errors ------------------------------------------------------------------------------------------------------ */
static void test_errors(void) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    em_model_config cfg = preset("llama-tiny", EM_F32);
    em_model_t *m = em_model_new(&cfg, 1);
    int nb = em_model_num_params(m);
    em_lora_config lc = {.rank = 0};
    TH_CHECK(em_model_add_lora(m, &lc) == EM_ERR_ARG, "rank 0 is refused");
    TH_CHECK_ERR(EM_ERR_ARG, "rank must be >= 1", "... saying the rank must be >= 1 (%s)", em_last_error());
    lc.rank = 17; /* wk and wv are (16, 32) */
    TH_CHECK(em_model_add_lora(m, &lc) == EM_ERR_ARG, "rank 17 > wk's 16 outputs is refused");
    TH_CHECK_ERR(EM_ERR_ARG, "attention.wk (16, 32)", "... naming the linear and its shape (%s)", em_last_error());
    lc.targets = "wq,w1";
    TH_CHECK(em_model_add_lora(m, &lc) == EM_OK && em_model_num_lora(m) == 4, "rank 17 fits wq (32, 32) and w1 "
             "(96, 32) alone");
    TH_CHECK(em_model_add_lora(m, &lc) == EM_ERR_STATE, "adding twice is refused");
    TH_CHECK_ERR(EM_ERR_STATE, "already has 4 LoRA adapters", "... saying so (%s)", em_last_error());
    TH_CHECK(em_model_load_lora(m, "/nonexistent.safetensors") == EM_ERR_STATE, "loading adapters over adapters");
    em_model_merge_lora(m);
    lc = (em_lora_config){.rank = 2, .targets = "wq,c_attn"};
    TH_CHECK(em_model_add_lora(m, &lc) == EM_ERR_ARG, "a GPT-2 target on a Llama model is refused");
    TH_CHECK_ERR(EM_ERR_ARG, "target \"c_attn\" names no linear of this Llama model", "... naming it (%s)",
             em_last_error());
    TH_CHECK(strstr(em_last_error(), "wq, wk, wv, wo, w1, w2, w3") != NULL, "... and listing the valid ones");
    lc.targets = "q";
    TH_CHECK(em_model_add_lora(m, &lc) == EM_ERR_ARG, "a partial name (\"q\" of \"wq\") matches nothing");
    lc.targets = "layers.9.attention.wq";
    TH_CHECK(em_model_add_lora(m, &lc) == EM_ERR_ARG, "a layer that does not exist");
    lc = (em_lora_config){.rank = 2, .dropout = 1.0};
    TH_CHECK(em_model_add_lora(m, &lc) == EM_ERR_ARG, "dropout 1 is refused");
    TH_CHECK_ERR(EM_ERR_ARG, "dropout must be in [0, 1)", "... saying the range");
    lc = (em_lora_config){.rank = 2, .alpha = -1};
    TH_CHECK(em_model_add_lora(m, &lc) == EM_ERR_ARG, "a negative alpha is refused");
    lc.alpha = NAN;
    TH_CHECK(em_model_add_lora(m, &lc) == EM_ERR_ARG, "a NaN alpha is refused");
    TH_CHECK(em_model_add_lora(NULL, &lc) == EM_ERR_ARG && em_model_add_lora(m, NULL) == EM_ERR_ARG,
             "NULL model or config");
    TH_CHECK(em_model_merge_lora(NULL) == EM_ERR_ARG && em_model_num_lora(NULL) == -1, "NULL model");
    int n = 5;
    TH_CHECK(em_model_trainable_params(NULL, &n) == NULL && n == 0, "trainable params of NULL");
    TH_CHECK(em_model_save_lora(m, "/tmp/x.safetensors") == EM_ERR_STATE, "saving adapters that do not exist");
    /* after all the refusals the model is as it was: no adapters, everything trains */
    int rg = 0;
    for (int i = 0; i < em_model_num_params(m); i++) rg += em_requires_grad(em_model_param(m, i, NULL));
    TH_CHECK(em_model_num_lora(m) == 0 && em_model_num_params(m) == nb && rg == nb,
             "a refused call leaves the model unchanged (%d params, %d train)", em_model_num_params(m), rg);
    em_tensor_t *const *tr = em_model_trainable_params(m, &n);
    TH_CHECK(tr && n == nb, "without adapters every parameter is trainable (%d)", n);
    em_model_free(m);
    em_scope_end(s);
    CHECK_LIVE(live, "errors");
}

/* ---- adapters alone: save and load ------------------------------------------------------------------------------ */
static void test_save_load(void) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    char dir[] = "/tmp/ember_lora_XXXXXX", path[128], bad[128];
    TH_CHECK(mkdtemp(dir) != NULL, "temp dir");
    snprintf(path, sizeof path, "%s/adapters.safetensors", dir);
    snprintf(bad, sizeof bad, "%s/plain.safetensors", dir);
    em_model_config cfg = preset("llama-tiny", EM_F32);
    em_model_t *m = em_model_new(&cfg, 2);
    em_lora_config lc = {.rank = 3, .alpha = 7.5, .dropout = 0.1, .targets = "wq,wv,w2", .seed = 3};
    em_model_add_lora(m, &lc);
    randomize_b(m, 8, 0.4);
    em_model_set_training(m, false);
    TH_CHECK(em_model_save_lora(m, path) == EM_OK, "save the adapters (%s)", em_last_error());
    em_state_dict_t *sd = NULL;
    TH_CHECK(em_safetensors_load(path, &sd) == EM_OK && em_state_dict_count(sd) == 12 &&
             !strcmp(em_state_dict_meta(sd, "lora.rank"), "3") && !strcmp(em_state_dict_meta(sd, "lora.alpha"), "7.5"),
             "the file holds 12 tensors and rank / alpha metadata");
    /* into a fresh base model (another seed for the base would change it: use the same base) */
    em_model_t *f = em_model_new(&cfg, 2);
    em_set_requires_grad(em_model_param(f, 0, NULL), false); /* a user's own freeze survives load + merge */
    TH_CHECK(em_model_load_lora(f, path) == EM_OK && em_model_num_lora(f) == 6, "load into a fresh model (%s)",
             em_last_error());
    em_model_set_training(f, false);
    em_tensor_t *idx = tokens(2, 7, cfg.vocab_size, 3);
    TH_CHECK(diff(logits_of(m, idx), logits_of(f, idx)) == 0, "the loaded adapters give the same logits bitwise");
    em_model_merge_lora(f);
    TH_CHECK(!em_requires_grad(em_model_param(f, 0, NULL)) && em_requires_grad(em_model_param(f, 1, NULL)),
             "merge gives requires_grad back only where add took it");
    /* bad files */
    em_model_t *g = em_model_new(&cfg, 2);
    TH_CHECK(em_model_load_lora(g, "/nonexistent/a.safetensors") == EM_ERR_IO, "a missing file");
    em_state_dict_t *plain = em_state_dict_new();
    em_state_dict_set(plain, "x", em_zeros((int64_t[]){2}, 1, EM_F32));
    em_safetensors_save(bad, plain);
    TH_CHECK(em_model_load_lora(g, bad) == EM_ERR_FORMAT, "a safetensors file that is not a LoRA file");
    TH_CHECK_ERR(EM_ERR_FORMAT, "is not a LoRA file", "... saying so (%s)", em_last_error());
    /* a file whose tensors do not match its targets: drop one tensor */
    em_state_dict_remove(sd, "layers.1.feed_forward.w2.lora_B");
    em_safetensors_save(bad, sd);
    TH_CHECK(em_model_load_lora(g, bad) == EM_ERR_FORMAT, "a LoRA file missing a tensor");
    TH_CHECK_ERR(EM_ERR_FORMAT, "11 tensors for 6 adapted modules", "... saying what is missing (%s)", em_last_error());
    em_state_dict_set_meta(sd, "lora.rank", "2.5");
    em_safetensors_save(bad, sd);
    TH_CHECK(em_model_load_lora(g, bad) == EM_ERR_FORMAT, "a fractional rank");
    em_state_dict_set_meta(sd, "lora.arch", "gpt2");
    em_safetensors_save(bad, sd);
    TH_CHECK(em_model_load_lora(g, bad) == EM_ERR_ARG, "adapters for another architecture");
    /* a wrong shape: a model with another width */
    em_model_config c2 = cfg;
    c2.ffn_hidden = 64;
    em_model_t *h = em_model_new(&c2, 2);
    TH_CHECK(em_model_load_lora(h, path) == EM_ERR_SHAPE, "adapters of another model's shapes (%s)", em_last_error());
    int rg = 0;
    for (int i = 0; i < em_model_num_params(g); i++) rg += em_requires_grad(em_model_param(g, i, NULL));
    TH_CHECK(em_model_num_lora(g) == 0 && em_model_num_lora(h) == 0 && rg == em_model_num_params(g),
             "failed loads leave the models without adapters and unfrozen");
    em_model_free(h);
    em_model_free(g);
    em_model_free(f);
    em_model_free(m);
    em_state_dict_free(plain);
    em_state_dict_free(sd);
    unlink(path);
    unlink(bad);
    rmdir(dir);
    em_scope_end(s);
    CHECK_LIVE(live, "save/load");
}

/* ---- merge on save: em_model_save writes a plain model ------------------------------------------------------ */
static void check_model_file(const char *name) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    char what[64], dir[] = "/tmp/ember_lora_XXXXXX", path[128];
    snprintf(what, sizeof what, "%s em_model_save with adapters", name);
    TH_CHECK(mkdtemp(dir) != NULL, "temp dir");
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    em_model_config cfg = preset(name, EM_F64);
    em_model_t *m = em_model_new(&cfg, 6);
    int nb = em_model_num_params(m);
    em_lora_config lc = {.rank = 2, .alpha = 3, .seed = 9};
    em_model_add_lora(m, &lc);
    randomize_b(m, 10, 0.4);
    em_tensor_t *idx = tokens(2, 8, cfg.vocab_size, 77);
    em_tensor_t *want = logits_of(m, idx);
    TH_CHECK(em_model_save(m, path) == EM_OK, "%s: save (%s)", what, em_last_error());
    TH_CHECK(em_model_num_lora(m) > 0 &&
             diff(logits_of(m, idx), want) == 0, "%s: saving leaves the adapters in the model", what);
    em_state_dict_t *sd = NULL;
    bool no_lora = em_safetensors_load(path, &sd) == EM_OK;
    for (int64_t i = 0; no_lora && i < em_state_dict_count(sd); i++)
        no_lora = !strstr(em_state_dict_name_at(sd, i), "lora");
    no_lora = no_lora && !em_state_dict_meta(sd, "lora.rank");
    TH_CHECK(no_lora && em_state_dict_count(sd) == nb, "%s: the file holds the %d base tensors and no adapter", what,
             nb);
    em_model_t *p = em_model_load(path);
    TH_CHECK(p && em_model_num_lora(p) == 0 && em_model_num_params(p) == nb, "%s: it loads as a plain model (%s)", what,
             p ? "ok" : em_last_error());
    double d = p ? diff(logits_of(p, idx), want) : INFINITY;
    TH_CHECK(d < 1e-12 * (1 + max_abs(want)), "%s: with the adapted model's logits (%g)", what, d);
    em_model_free(p);
    em_model_free(m);
    em_state_dict_free(sd);
    unlink(path);
    rmdir(dir);
    em_scope_end(s);
    CHECK_LIVE(live, what);
}

static void test_model_file(void) {
    check_model_file("gpt2-tiny");
    check_model_file("llama-tiny");
}

/* ---- the trainer with adapters: fine-tuning, resume, the saved model ------------------------------------------ */
/* a corpus a tiny model can learn: runs of a few "words" (fixed token sequences) in random order */
static em_dataset_t *corpus(int V) {
    enum { N = 12000 };
    static const int words[6][5] = {{3, 9, 27, 17, 51}, {2, 4, 8, 16, 32}, {60, 50, 40, 30, 20},
                                    {5, 10, 15, 20, 25}, {7, 14, 21, 28, 35}, {1, 11, 21, 31, 41}};
    int32_t *ids = malloc(sizeof(int32_t) * N);
    th_seed(123);
    for (int n = 0; n < N;) {
        const int *w = words[(int)(th_uniform() * 6)];
        for (int k = 0; k < 5 && n < N; k++) ids[n++] = w[k] % V;
    }
    em_dataset_t *d = em_dataset_new(ids, N, V, 0.1);
    free(ids);
    return d;
}

/* every parameter of a and b bitwise equal */
static bool same_params(em_model_t *a, em_model_t *b) {
    if (em_model_num_params(a) != em_model_num_params(b)) return false;
    for (int i = 0; i < em_model_num_params(a); i++)
        if (diff(em_model_param(a, i, NULL), em_model_param(b, i, NULL)) != 0) return false;
    return true;
}

static void check_trainer(const char *name, bool eager) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    char what[96], dir[] = "/tmp/ember_lora_XXXXXX", ck[128], mp[128];
    snprintf(what, sizeof what, "%s trainer with adapters (%s)", name, eager ? "eager" : "compiled");
    TH_CHECK(mkdtemp(dir) != NULL, "temp dir");
    snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", dir);
    snprintf(mp, sizeof mp, "%s/model.safetensors", dir);
    em_model_config cfg = preset(name, EM_F32);
    em_dataset_t *data = corpus(cfg.vocab_size);
    em_train_config tc;
    em_train_config_default(&tc);
    tc.batch = 4;
    tc.seq_len = 16;
    tc.max_steps = 24;
    tc.warmup = 2;
    tc.lr = 3e-2;
    tc.min_lr = 3e-3;
    tc.eager = eager;
    em_lora_config lc = {.rank = 4, .alpha = 8, .seed = 2};
    /* straight: 24 steps */
    em_model_t *m = em_model_new(&cfg, 1);
    int nb = em_model_num_params(m);
    em_model_t *base = em_model_new(&cfg, 1);
    em_model_add_lora(m, &lc);
    em_trainer_t *t = em_trainer_new(m, data, &tc);
    TH_CHECK(t != NULL, "%s: em_trainer_new takes an adapted model (%s)", what, t ? "ok" : em_last_error());
    if (!t) {
        em_model_free(m);
        em_model_free(base);
        em_dataset_free(data);
        em_scope_end(s);
        return;
    }
    TH_CHECK(em_optimizer_num_state(em_trainer_optimizer(t)) == 2 * 2 * em_model_num_lora(m),
             "%s: AdamW holds state for the adapters only", what);
    double v0 = em_trainer_eval(t, 0);
    for (int i = 0; i < 12; i++) em_trainer_step(t, NULL);
    TH_CHECK(em_trainer_save(t, ck) == EM_OK, "%s: checkpoint at step 12 (%s)", what, em_last_error());
    for (int i = 0; i < 12; i++) em_trainer_step(t, NULL);
    double v1 = em_trainer_eval(t, 0);
    /* the base is random (std 0.02): a rank-4 update of it learns slowly, but surely (exact evaluation) */
    TH_CHECK(v1 < v0 - 0.1, "%s: 24 steps of LoRA fine-tuning lower the validation loss by > 0.1 nats (%.4f -> "
             "%.4f)", what, v0, v1);
    bool base_same = true;
    for (int i = 0; i < nb; i++)
        base_same = base_same && diff(em_model_param(base, i, NULL), em_model_param(em_trainer_model(t), i, NULL)) == 0;
    TH_CHECK(base_same, "%s: the base weights did not move", what);
    /* resumed: 12 + 12, bit for bit */
    em_trainer_t *r = em_trainer_resume(ck, data);
    TH_CHECK(r && em_model_num_lora(em_trainer_model(r)) == em_model_num_lora(m), "%s: resume restores the adapters "
             "(%s)", what, r ? "ok" : em_last_error());
    for (int i = 0; r && i < 12; i++) em_trainer_step(r, NULL);
    TH_CHECK(r && same_params(em_trainer_model(t), em_trainer_model(r)), "%s: resumed at step 12, the parameters "
             "after 24 steps are bitwise those of the straight run", what);
    /* the model file is a plain model with the fine-tuned behaviour */
    TH_CHECK(em_model_save(em_trainer_model(t), mp) == EM_OK, "%s: em_model_save", what);
    em_model_t *p = em_model_load(mp);
    TH_CHECK(p && em_model_num_lora(p) == 0 && em_model_num_params(p) == nb, "%s: the saved model is plain", what);
    em_tensor_t *x = NULL, *y = NULL;
    em_dataset_val_batch(data, 0, 2, 16, &x, &y);
    em_model_set_training(em_trainer_model(t), false);
    double d = p ? diff(logits_of(p, x), logits_of(em_trainer_model(t), x)) : INFINITY;
    TH_CHECK(d < 1e-4, "%s: and computes the fine-tuned logits (%g)", what, d);
    em_model_free(p);
    em_trainer_free(r);
    em_trainer_free(t);
    em_model_free(base);
    em_dataset_free(data);
    unlink(ck);
    unlink(mp);
    rmdir(dir);
    em_scope_end(s);
    CHECK_LIVE(live, what);
}

static void test_trainer(void) {
    check_trainer("gpt2-tiny", false);
    check_trainer("llama-tiny", true);
}

/* ---- ember train --lora --------------------------------------------------------------------------------------- */
static char ember_bin[1024];

static int run(const char *cmd) {
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = calloc(1, (size_t)n + 1);
    if (fread(p, 1, (size_t)n, f) != (size_t)n) p[0] = 0;
    fclose(f);
    return p;
}

/* the training loss on the progress line of `step` ("step 1/40 | loss 8.6206 | ..."), NaN if absent */
static double loss_at(const char *log, const char *step) {
    const char *p = strstr(log, step);
    double v = NAN;
    if (p && sscanf(p + strlen(step), " | loss %lf", &v) != 1) v = NAN;
    return v;
}

static void test_cli(void) {
    int64_t live = em_live_tensors();
    char dir[] = "/tmp/ember_lora_cli_XXXXXX", cmd[8192], path[512];
    TH_CHECK(mkdtemp(dir) != NULL, "temp dir");
    TH_CHECK(access(ember_bin, X_OK) == 0, "the ember command exists at %s (make builds it)", ember_bin);
    /* two small corpora: the base learns one, the adapters the other */
    char a[300], b[300], log[300];
    snprintf(a, sizeof a, "%s/a.txt", dir);
    snprintf(b, sizeof b, "%s/b.txt", dir);
    snprintf(log, sizeof log, "%s/log", dir);
    FILE *fa = fopen(a, "wb"), *fb = fopen(b, "wb");
    for (int i = 0; fa && fb && i < 300; i++) {
        fprintf(fa, "The %s cat sat on the %s mat, number %d.\n", i % 3 ? "black" : "white", i % 5 ? "red" : "flat", i);
        fprintf(fb, "A %s dog ran to the %s door, twice %d.\n", i % 2 ? "brown" : "grey", i % 7 ? "green" : "blue", i);
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    const char *common = "--batch 4 --seq-len 16 --lr 1e-2 --eval-every 0 --sample-tokens 8 --log-every 10";
    snprintf(cmd, sizeof cmd, "EMBER_NUM_THREADS=1 %s train --data %s --out %s/base --layers 1 --heads 2 --embd 32 "
             "--vocab 300 --steps 60 %s > %s 2>&1", ember_bin, a, dir, common, log);
    int rc = run(cmd);
    char *o = slurp(log);
    TH_CHECK(rc == 0, "the base run trains (exit %d): %s", rc, o);
    free(o);
    snprintf(cmd, sizeof cmd, "EMBER_NUM_THREADS=1 %s train --data %s --out %s/ft --init %s/base/model.safetensors "
             "--tokenizer %s/base/tokenizer.bin --lora 4 --lora-alpha 8 --steps 40 %s > %s 2>&1", ember_bin, b, dir,
             dir, dir, common, log);
    rc = run(cmd);
    o = slurp(log);
    double l0 = loss_at(o, "step 1/40"), l1 = loss_at(o, "step 40/40");
    TH_CHECK(rc == 0 && strstr(o, "LoRA: rank 4, alpha 8 on 4 linears (all)"), "ember train --lora 4 fine-tunes the "
             "base (exit %d): %s", rc, o);
    TH_CHECK(l1 < l0 - 1.0, "the fine-tuning loss falls by more than a nat (%.4f -> %.4f)", l0, l1);
    free(o);
    /* the saved model is plain: no adapter tensors, no LoRA metadata, base names only */
    snprintf(path, sizeof path, "%s/ft/model.safetensors", dir);
    em_state_dict_t *sd = NULL;
    bool plain = em_safetensors_load(path, &sd) == EM_OK && !em_state_dict_meta(sd, "lora.rank");
    for (int64_t i = 0; plain && i < em_state_dict_count(sd); i++)
        plain = !strstr(em_state_dict_name_at(sd, i), "lora");
    TH_CHECK(plain, "ft/model.safetensors holds no adapter");
    em_state_dict_free(sd);
    em_model_t *ft = em_model_load(path);
    snprintf(path, sizeof path, "%s/base/model.safetensors", dir);
    em_model_t *base = em_model_load(path);
    TH_CHECK(ft && base && em_model_num_lora(ft) == 0 && em_model_num_params(ft) == em_model_num_params(base),
             "it loads as a plain model with the base's parameters");
    em_scope_t *s = em_scope_begin();
#define PDIFF(name) diff(em_model_param_by_name(ft, name), em_model_param_by_name(base, name))
    TH_CHECK(ft && base && PDIFF("wte.weight") == 0 && PDIFF("h.0.ln_1.weight") == 0 &&
             PDIFF("h.0.mlp.c_fc.weight") > 1e-6,
             "the embeddings and norms are the base's bit for bit; the adapted linears carry the merged update");
#undef PDIFF
    em_scope_end(s);
    em_model_free(ft);
    em_model_free(base);
    /* a LoRA run resumes from its checkpoint with its adapters */
    snprintf(cmd, sizeof cmd, "EMBER_NUM_THREADS=1 %s train --data %s --out %s/ft --resume --steps 45 %s > %s 2>&1",
             ember_bin, b, dir, common, log);
    rc = run(cmd);
    o = slurp(log);
    TH_CHECK(rc == 0 && strstr(o, "resuming at step 40") && strstr(o, "step 45/45"), "--resume continues the LoRA "
             "run (exit %d): %s", rc, o);
    free(o);
    /* a bad rank is a clear error */
    snprintf(cmd, sizeof cmd, "EMBER_NUM_THREADS=1 %s train --data %s --out %s/bad --init %s/base/model.safetensors "
             "--tokenizer %s/base/tokenizer.bin --lora 40 --steps 2 > %s 2>&1", ember_bin, b, dir, dir, dir, log);
    rc = run(cmd);
    o = slurp(log);
    TH_CHECK(rc == 1 && strstr(o, "rank 40 is larger than h.0.attn.c_attn (96, 32)"), "--lora 40 on a 32-wide model "
             "fails naming the linear (exit %d): %s", rc, o);
    free(o);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    run(cmd);
    CHECK_LIVE(live, "ember train --lora");
}

int main(int argc, char **argv) {
    (void)argc;
    /* build/tests/test_lora -> build/ember */
    snprintf(ember_bin, sizeof ember_bin, "%s", argv[0]);
    char *slash = strrchr(ember_bin, '/');
    if (slash) snprintf(slash, (size_t)(ember_bin + sizeof ember_bin - slash), "/../ember");
    int64_t live = em_live_tensors();
    test_init();
    test_grads();
    test_training();
    test_merge();
    test_compiled();
    test_cache();
    test_generate();
    test_dropout();
    test_targets();
    test_errors();
    test_save_load();
    test_model_file();
    test_trainer();
    test_cli();
    CHECK_LIVE(live, "test_lora");
    return th_summary();
}
