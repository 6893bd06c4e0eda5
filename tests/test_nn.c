/* test_nn.c - nn/: attention, RoPE, the GPT-2 and Llama models, the KV cache, named parameters.
 *
 * The oracle is a plain-C float64 forward written here with loops (llm.c style): for several tiny
 * configurations the model's logits and loss must match it (to 1e-10 in f64, loosely in f32),
 * and the f64 model's gradients must match central finite differences of its own loss. Cached
 * decoding must equal the full forward; a tiny GPT must overfit a fixed batch. Every test runs
 * inside a scope and checks that em_live_tensors() returns to where it started.
 */
#include "harness.h"

#include <stdarg.h>

#define CHECK_LIVE(start, what) \
    TH_CHECK(em_live_tensors() == (start), "%s: no tensor leaked (%lld live, %lld at start)", what, \
             (long long)em_live_tensors(), (long long)(start))

/* ---- float64 reference pieces ---------------------------------------------------------------- */
/* out (N, OUT) = in (N, IN) @ w^T (w is (OUT, IN)) + b */
static void ref_linear(double *out, const double *in, const double *w, const double *b, int N, int IN, int OUT) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OUT; o++) {
            double s = b ? b[o] : 0;
            for (int i = 0; i < IN; i++) s += in[n * IN + i] * w[o * IN + i];
            out[n * OUT + o] = s;
        }
}

static void ref_layernorm(double *out, const double *x, const double *w, const double *b, int N, int C, double eps) {
    for (int n = 0; n < N; n++) {
        double mean = 0, var = 0;
        for (int i = 0; i < C; i++) mean += x[n * C + i];
        mean /= C;
        for (int i = 0; i < C; i++) var += (x[n * C + i] - mean) * (x[n * C + i] - mean);
        var /= C;
        double r = 1.0 / sqrt(var + eps);
        for (int i = 0; i < C; i++) out[n * C + i] = (x[n * C + i] - mean) * r * w[i] + (b ? b[i] : 0);
    }
}

static void ref_rmsnorm(double *out, const double *x, const double *w, int N, int C, double eps) {
    for (int n = 0; n < N; n++) {
        double ss = 0;
        for (int i = 0; i < C; i++) ss += x[n * C + i] * x[n * C + i];
        double r = 1.0 / sqrt(ss / C + eps);
        for (int i = 0; i < C; i++) out[n * C + i] = x[n * C + i] * r * w[i];
    }
}

/* x (B*T, nh, HS) rotated in interleaved pairs at positions pos0 + t */
static void ref_rope(double *x, int B, int T, int nh, int HS, double theta, int pos0) {
    for (int n = 0; n < B * T; n++)
        for (int h = 0; h < nh; h++)
            for (int i = 0; i < HS / 2; i++) {
                double a = (pos0 + n % T) * pow(theta, -2.0 * i / HS);
                double *p = x + (n * nh + h) * HS + 2 * i, x0 = p[0], x1 = p[1];
                p[0] = x0 * cos(a) - x1 * sin(a);
                p[1] = x0 * sin(a) + x1 * cos(a);
            }
}

/* causal attention, q (B, Tq, NH, HS), k v (B, Tk, NKV, HS) -> out (B, Tq, NH, HS); query t sits at
   position Tk - Tq + t; kv head of query head h is h / (NH / NKV) */
static void ref_attention(double *out, const double *q, const double *k, const double *v, int B, int Tq, int Tk,
                          int NH, int NKV, int HS, bool causal) {
    double *p = malloc(sizeof(double) * (size_t)Tk);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < Tq; t++)
            for (int h = 0; h < NH; h++) {
                int kh = h / (NH / NKV), last = causal ? Tk - Tq + t : Tk - 1;
                const double *qv = q + ((b * Tq + t) * NH + h) * HS;
                double mx = -INFINITY, sum = 0;
                for (int u = 0; u <= last; u++) {
                    const double *kv = k + ((b * Tk + u) * NKV + kh) * HS;
                    double s = 0;
                    for (int d = 0; d < HS; d++) s += qv[d] * kv[d];
                    p[u] = s / sqrt((double)HS);
                    if (p[u] > mx) mx = p[u];
                }
                for (int u = 0; u <= last; u++) sum += (p[u] = exp(p[u] - mx));
                double *o = out + ((b * Tq + t) * NH + h) * HS;
                for (int d = 0; d < HS; d++) o[d] = 0;
                for (int u = 0; u <= last; u++) {
                    const double *vv = v + ((b * Tk + u) * NKV + kh) * HS;
                    for (int d = 0; d < HS; d++) o[d] += p[u] / sum * vv[d];
                }
            }
    free(p);
}

static double gelu_tanh(double x) { return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }
static double silu(double x) { return x / (1 + exp(-x)); }

/* ---- reading model parameters into double arrays ---------------------------------------------- */
static double *pool[512];
static int npool;

/* the values of a named parameter (NULL when the model has none); freed by pool_free */
static double *pv(em_model_t *m, const char *fmt, ...) {
    char name[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    em_tensor_t *t = em_model_param_by_name(m, name);
    if (!t) {
        em_clear_error();
        return NULL;
    }
    em_scope_t *s = em_scope_begin();
    double *d = malloc(sizeof(double) * (size_t)em_numel(t));
    em_to_data(em_cast(t, EM_F64), d, sizeof(double) * (size_t)em_numel(t));
    em_scope_end(s);
    return pool[npool++] = d;
}

static void pool_free(void) {
    while (npool > 0) free(pool[--npool]);
}

/* The reference forward: logits (B, T, V) for idx (B, T); returns the mean cross-entropy over
   targets != -1 when tg is given. Written from the architecture descriptions, not from gpt.c. */
static double ref_forward(em_model_t *m, const int64_t *idx, const int64_t *tg, int B, int T, double *logits) {
    const em_model_config *c = em_model_get_config(m);
    const int C = c->n_embd, NH = c->n_head, NKV = c->n_kv_head, HS = C / NH, H = c->ffn_hidden;
    const int V = c->vocab_size, N = B * T;
    const bool gpt = c->arch == EM_ARCH_GPT2;
    double *x = calloc((size_t)N * C, sizeof(double)), *h = calloc((size_t)N * C, sizeof(double));
    double *q = calloc((size_t)N * C, sizeof(double)), *k = calloc((size_t)N * NKV * HS, sizeof(double));
    double *v = calloc((size_t)N * NKV * HS, sizeof(double)), *att = calloc((size_t)N * C, sizeof(double));
    double *o = calloc((size_t)N * C, sizeof(double)), *f1 = calloc((size_t)N * H, sizeof(double));
    double *f3 = calloc((size_t)N * H, sizeof(double));
    const double *wte = pv(m, gpt ? "wte.weight" : "tok_embeddings.weight"), *wpe = gpt ? pv(m, "wpe.weight") : NULL;
    for (int n = 0; n < N; n++)
        for (int i = 0; i < C; i++) x[n * C + i] = wte[idx[n] * C + i] + (wpe ? wpe[(n % T) * C + i] : 0);
    for (int l = 0; l < c->n_layer; l++) {
        if (gpt) {
            ref_layernorm(h, x, pv(m, "h.%d.ln_1.weight", l), pv(m, "h.%d.ln_1.bias", l), N, C, c->norm_eps);
            const double *w = pv(m, "h.%d.attn.c_attn.weight", l), *b = pv(m, "h.%d.attn.c_attn.bias", l);
            ref_linear(q, h, w, b, N, C, NH * HS);
            ref_linear(k, h, w + NH * HS * C, b ? b + NH * HS : NULL, N, C, NKV * HS);
            ref_linear(v, h, w + (NH + NKV) * HS * C, b ? b + (NH + NKV) * HS : NULL, N, C, NKV * HS);
        } else {
            ref_rmsnorm(h, x, pv(m, "layers.%d.attention_norm.weight", l), N, C, c->norm_eps);
            ref_linear(q, h, pv(m, "layers.%d.attention.wq.weight", l), pv(m, "layers.%d.attention.wq.bias", l), N, C,
                       NH * HS);
            ref_linear(k, h, pv(m, "layers.%d.attention.wk.weight", l), pv(m, "layers.%d.attention.wk.bias", l), N, C,
                       NKV * HS);
            ref_linear(v, h, pv(m, "layers.%d.attention.wv.weight", l), pv(m, "layers.%d.attention.wv.bias", l), N, C,
                       NKV * HS);
            ref_rope(q, B, T, NH, HS, c->rope_theta, 0);
            ref_rope(k, B, T, NKV, HS, c->rope_theta, 0);
        }
        ref_attention(att, q, k, v, B, T, T, NH, NKV, HS, true);
        if (gpt) ref_linear(o, att, pv(m, "h.%d.attn.c_proj.weight", l), pv(m, "h.%d.attn.c_proj.bias", l), N, C, C);
        else ref_linear(o, att, pv(m, "layers.%d.attention.wo.weight", l), pv(m, "layers.%d.attention.wo.bias", l), N, C, C);
        for (int i = 0; i < N * C; i++) x[i] += o[i];
        if (gpt) {
            ref_layernorm(h, x, pv(m, "h.%d.ln_2.weight", l), pv(m, "h.%d.ln_2.bias", l), N, C, c->norm_eps);
            ref_linear(f1, h, pv(m, "h.%d.mlp.c_fc.weight", l), pv(m, "h.%d.mlp.c_fc.bias", l), N, C, H);
            for (int i = 0; i < N * H; i++) f1[i] = gelu_tanh(f1[i]);
            ref_linear(o, f1, pv(m, "h.%d.mlp.c_proj.weight", l), pv(m, "h.%d.mlp.c_proj.bias", l), N, H, C);
        } else {
            ref_rmsnorm(h, x, pv(m, "layers.%d.ffn_norm.weight", l), N, C, c->norm_eps);
            ref_linear(f1, h, pv(m, "layers.%d.feed_forward.w1.weight", l), pv(m, "layers.%d.feed_forward.w1.bias", l),
                       N, C, H);
            ref_linear(f3, h, pv(m, "layers.%d.feed_forward.w3.weight", l), pv(m, "layers.%d.feed_forward.w3.bias", l),
                       N, C, H);
            for (int i = 0; i < N * H; i++) f1[i] = silu(f1[i]) * f3[i];
            ref_linear(o, f1, pv(m, "layers.%d.feed_forward.w2.weight", l), pv(m, "layers.%d.feed_forward.w2.bias", l),
                       N, H, C);
        }
        for (int i = 0; i < N * C; i++) x[i] += o[i];
    }
    if (gpt) ref_layernorm(h, x, pv(m, "ln_f.weight"), pv(m, "ln_f.bias"), N, C, c->norm_eps);
    else ref_rmsnorm(h, x, pv(m, "norm.weight"), N, C, c->norm_eps);
    const double *head = c->tie_embeddings ? wte : pv(m, gpt ? "lm_head.weight" : "output.weight");
    ref_linear(logits, h, head, NULL, N, C, V);
    double loss = 0;
    int count = 0;
    for (int n = 0; tg && n < N; n++) {
        if (tg[n] == -1) continue;
        const double *r = logits + (size_t)n * V;
        double mx = -INFINITY, s = 0;
        for (int j = 0; j < V; j++) mx = r[j] > mx ? r[j] : mx;
        for (int j = 0; j < V; j++) s += exp(r[j] - mx);
        loss += mx + log(s) - r[tg[n]];
        count++;
    }
    free(x); free(h); free(q); free(k); free(v); free(att); free(o); free(f1); free(f3);
    pool_free();
    return count ? loss / count : 0;
}

/* ---- helpers ------------------------------------------------------------------------------------ */
static em_model_config preset(const char *name, em_dtype dt) {
    em_model_config c;
    em_model_config_preset(name, &c);
    c.dtype = dt;
    return c;
}

/* replaces every parameter with larger random values (th's generator) through em_model_load_params,
   so attention is far from uniform and every weight matters */
static void randomize(em_model_t *m, uint64_t seed) {
    th_seed(seed);
    int n = em_model_num_params(m);
    const char **names = malloc(sizeof(char *) * (size_t)n);
    em_tensor_t **ts = malloc(sizeof(em_tensor_t *) * (size_t)n);
    em_scope_t *s = em_scope_begin();
    for (int i = 0; i < n; i++) {
        em_tensor_t *p = em_model_param(m, i, &names[i]);
        em_tensor_t *r = th_randn(em_shape(p), em_ndim(p), EM_F64);
        bool norm_w = em_ndim(p) == 1 && strstr(names[i], "weight");
        ts[i] = norm_w ? em_add_scalar(em_mul_scalar(r, 0.1), 1.0) : em_mul_scalar(r, em_ndim(p) == 1 ? 0.1 : 0.3);
    }
    TH_CHECK(em_model_load_params(m, names, ts, n, true) == EM_OK, "load_params with every parameter (strict)");
    em_scope_end(s);
    free(names);
    free(ts);
}

static em_tensor_t *tokens(int B, int T, int V, uint64_t seed) {
    th_seed(seed);
    int64_t *d = malloc(sizeof(int64_t) * (size_t)(B * T));
    for (int i = 0; i < B * T; i++) d[i] = (int64_t)(th_uniform() * V);
    em_tensor_t *t = em_from_data(d, (int64_t[]){B, T}, 2, EM_I64);
    free(d);
    return t;
}

static void data_i64(em_tensor_t *t, int64_t *out) { em_to_data(t, out, sizeof(int64_t) * (size_t)em_numel(t)); }

static double max_diff(em_tensor_t *t, const double *ref, int64_t n, double *scale) {
    em_scope_t *s = em_scope_begin();
    double *d = malloc(sizeof(double) * (size_t)n), md = 0, sc = 0;
    em_to_data(em_cast(t, EM_F64), d, sizeof(double) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(d[i] - ref[i]);
        md = e > md || isnan(e) ? e : md;
        sc = fabs(ref[i]) > sc ? fabs(ref[i]) : sc;
    }
    free(d);
    em_scope_end(s);
    if (scale) *scale = sc;
    return md;
}

/* ---- attention and RoPE on known numbers -------------------------------------------------------- */
static void test_rope(void) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    em_tensor_t *cs, *sn;
    TH_CHECK(em_rope_tables(3, 4, 10000.0, EM_F64, &cs, &sn) == EM_OK, "rope tables");
    /* angle(t, i) = t * 10000^(-2i/4): pair 0 turns by t rad, pair 1 by t/100 */
    double c[6], sv[6];
    em_to_data(cs, c, sizeof c);
    em_to_data(sn, sv, sizeof sv);
    TH_CHECK(c[0] == 1 && c[1] == 1 && sv[0] == 0, "position 0 does not rotate");
    TH_CHECK(fabs(c[2] - cos(1.0)) < 1e-15 && fabs(sv[3] - sin(0.01)) < 1e-15 && fabs(c[5] - cos(0.02)) < 1e-15,
             "angles t * theta^(-2i/HS)");
    /* x at positions 0..2, one head of size 4: (1, 0, 0, 1) everywhere */
    double xv[12] = {1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1};
    em_tensor_t *x = em_from_data(xv, (int64_t[]){1, 3, 1, 4}, 4, EM_F64);
    double y[12];
    em_to_data(em_rope(x, cs, sn), y, sizeof y);
    /* (x0, x1) -> (x0 c - x1 s, x0 s + x1 c): (1, 0) -> (cos a, sin a); (0, 1) -> (-sin b, cos b) */
    double want[12] = {1, 0, 0, 1, cos(1.0), sin(1.0), -sin(0.01), cos(0.01), cos(2.0), sin(2.0), -sin(0.02), cos(0.02)};
    double md = 0;
    for (int i = 0; i < 12; i++) md = fmax(md, fabs(y[i] - want[i]));
    TH_CHECK(md < 1e-15, "em_rope rotates interleaved pairs (max err %g)", md);
    /* f32 tables follow llama2.c's float arithmetic exactly */
    TH_CHECK(em_rope_tables(7, 6, 10000.0, EM_F32, &cs, &sn) == EM_OK, "f32 tables");
    float cf[21], sf[21];
    em_to_data(cs, cf, sizeof cf);
    em_to_data(sn, sf, sizeof sf);
    bool same = true;
    for (int t = 0; t < 7; t++)
        for (int i = 0; i < 3; i++) {
            float freq = 1.0f / powf(10000.0f, (float)(2 * i) / 6.0f), val = (float)t * freq;
            same = same && cf[t * 3 + i] == cosf(val) && sf[t * 3 + i] == sinf(val);
        }
    TH_CHECK(same, "f32 tables equal llama2.c's cosf(pos * 1/powf(theta, head_dim/head_size))");
    /* errors */
    TH_CHECK(em_rope(em_zeros((int64_t[]){1, 3, 1, 5}, 4, EM_F64), cs, sn) == NULL, "odd head size");
    TH_CHECK_ERR(EM_ERR_SHAPE, "HS even", "the message says why");
    TH_CHECK(em_rope(x, cs, sn) == NULL, "tables of the wrong shape");
    TH_CHECK_ERR(EM_ERR_SHAPE, "(T, HS/2)", "the message gives the expected table shape");
    TH_CHECK(em_rope_tables(0, 4, 1e4, EM_F32, &cs, &sn) == EM_ERR_ARG && cs == NULL, "T = 0 is refused");
    em_scope_end(s);
    CHECK_LIVE(live, "rope");
}

/* q (B, NH, Tq, HS) layout <-> reference layout (B, Tq, NH, HS) */
static void to_bthd(const double *src, double *dst, int B, int nh, int T, int HS) {
    for (int b = 0; b < B; b++)
        for (int h = 0; h < nh; h++)
            for (int t = 0; t < T; t++)
                for (int d = 0; d < HS; d++) dst[((b * T + t) * nh + h) * HS + d] = src[((b * nh + h) * T + t) * HS + d];
}

static void check_sdpa(int B, int NH, int NKV, int Tq, int Tk, int HS, bool causal, const char *what) {
    em_scope_t *s = em_scope_begin();
    th_seed((uint64_t)(NH * 100 + NKV * 10 + Tq + Tk));
    em_tensor_t *q = th_randn((int64_t[]){B, NH, Tq, HS}, 4, EM_F64);
    em_tensor_t *k = th_randn((int64_t[]){B, NKV, Tk, HS}, 4, EM_F64);
    em_tensor_t *v = th_randn((int64_t[]){B, NKV, Tk, HS}, 4, EM_F64);
    em_set_requires_grad(q, true);
    em_set_requires_grad(k, true);
    em_set_requires_grad(v, true);
    em_tensor_t *y = em_scaled_dot_product_attention(q, k, v, causal, 0.0);
    TH_CHECK(y && em_ndim(y) == 4 && em_size(y, 1) == NH && em_size(y, 2) == Tq, "%s: shape (B, NH, Tq, HS)", what);
    int nq = B * NH * Tq * HS, nk = B * NKV * Tk * HS;
    double *qd = malloc(sizeof(double) * nq), *kd = malloc(sizeof(double) * nk), *vd = malloc(sizeof(double) * nk);
    double *q2 = malloc(sizeof(double) * nq), *k2 = malloc(sizeof(double) * nk), *v2 = malloc(sizeof(double) * nk);
    double *o = malloc(sizeof(double) * nq);
    em_to_data(q, qd, sizeof(double) * nq);
    em_to_data(k, kd, sizeof(double) * nk);
    em_to_data(v, vd, sizeof(double) * nk);
    to_bthd(qd, q2, B, NH, Tq, HS);
    to_bthd(kd, k2, B, NKV, Tk, HS);
    to_bthd(vd, v2, B, NKV, Tk, HS);
    ref_attention(o, q2, k2, v2, B, Tq, Tk, NH, NKV, HS, causal);
    const int perm[4] = {0, 2, 1, 3};
    double md = max_diff(em_contiguous(em_permute(y, perm, 4)), o, nq, NULL);
    TH_CHECK(md < 1e-13, "%s: equals the loop reference (max err %g)", what, md);
    /* gradients by central differences on a weighted sum */
    em_tensor_t *wts = th_randn((int64_t[]){B, NH, Tq, HS}, 4, EM_F64);
    TH_CHECK(em_backward(em_sum(em_mul(y, wts), NULL, 0, false)) == EM_OK, "%s: backward", what);
    em_tensor_t *ins[3] = {q, k, v};
    double worst = 0;
    for (int w = 0; w < 3; w++) {
        em_tensor_t *g = em_grad(ins[w]), *flat = em_reshape(ins[w], (int64_t[]){-1}, 1);
        for (int64_t j = 0; j < em_numel(ins[w]); j += 7) {
            em_no_grad_begin();
            em_tensor_t *e = em_select(flat, 0, j);
            double x0 = em_item(e), f[2];
            for (int sgn = 0; sgn < 2; sgn++) {
                em_assign(e, em_scalar(x0 + (sgn ? -1e-6 : 1e-6), EM_F64));
                f[sgn] = em_item(em_sum(em_mul(em_scaled_dot_product_attention(q, k, v, causal, 0.0), wts), NULL, 0, false));
            }
            em_assign(e, em_scalar(x0, EM_F64));
            double num = (f[0] - f[1]) / 2e-6, ana = em_item(em_select(em_reshape(g, (int64_t[]){-1}, 1), 0, j));
            em_no_grad_end();
            worst = fmax(worst, fabs(num - ana) / (1 + fabs(ana)));
        }
    }
    TH_CHECK(worst < 1e-7, "%s: gradients of q, k, v match finite differences (worst %g)", what, worst);
    free(qd); free(kd); free(vd); free(q2); free(k2); free(v2); free(o);
    em_scope_end(s);
}

static void test_attention(void) {
    int64_t live = em_live_tensors();
    check_sdpa(2, 2, 2, 5, 5, 4, true, "multi-head causal");
    check_sdpa(1, 4, 2, 4, 4, 3, true, "grouped-query causal (2 query heads per kv head)");
    check_sdpa(2, 6, 1, 3, 7, 2, true, "multi-query, 3 queries after 4 cached keys");
    check_sdpa(1, 2, 2, 3, 4, 4, false, "not causal");
    /* a case small enough to write down: one head, HS 1, q = 1, keys (0, ln 3), values (1, 5).
       The first query sees only key 0: output 1. The second sees both with weights 1/4 and 3/4: 4. */
    em_scope_t *s = em_scope_begin();
    em_tensor_t *q = em_from_data((double[]){1, 1}, (int64_t[]){1, 1, 2, 1}, 4, EM_F64);
    em_tensor_t *k = em_from_data((double[]){0, log(3.0)}, (int64_t[]){1, 1, 2, 1}, 4, EM_F64);
    em_tensor_t *v = em_from_data((double[]){1, 5}, (int64_t[]){1, 1, 2, 1}, 4, EM_F64);
    double y[2];
    em_to_data(em_scaled_dot_product_attention(q, k, v, true, 0), y, sizeof y);
    TH_CHECK(fabs(y[0] - 1) < 1e-15 && fabs(y[1] - 4) < 1e-14, "hand-computed case: (1, 4), got (%g, %g)", y[0], y[1]);
    /* errors */
    em_tensor_t *k3 = em_zeros((int64_t[]){1, 3, 2, 1}, 4, EM_F64);
    em_tensor_t *q2 = em_zeros((int64_t[]){1, 2, 2, 1}, 4, EM_F64);
    TH_CHECK(em_scaled_dot_product_attention(q2, k3, k3, true, 0) == NULL, "NH not a multiple of NKV");
    TH_CHECK_ERR(EM_ERR_SHAPE, "multiple of NKV", "the message explains grouped-query heads");
    TH_CHECK(em_scaled_dot_product_attention(em_zeros((int64_t[]){1, 1, 3, 1}, 4, EM_F64), k, v, true, 0) == NULL,
             "causal with fewer keys than queries");
    TH_CHECK(em_scaled_dot_product_attention(q, k, v, true, 1.5) == NULL, "dropout_p out of range");
    TH_CHECK(em_scaled_dot_product_attention(NULL, k, v, true, 0) == NULL, "NULL q");
    TH_CHECK_ERR(EM_ERR_ARG, "`q` is NULL", "the message names the argument");
    em_scope_end(s);
    CHECK_LIVE(live, "attention");
}

/* ---- the models against the reference ------------------------------------------------------------ */
static void check_oracle(em_model_config cfg, const char *what, double tol) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    em_model_t *m = em_model_new(&cfg, 7);
    TH_CHECK(m != NULL, "%s: model", what);
    if (!m) {
        em_scope_end(s);
        return;
    }
    randomize(m, 11);
    const int B = 2, T = 7, V = cfg.vocab_size;
    em_tensor_t *idx = tokens(B, T, V, 3), *tg = tokens(B, T, V, 4);
    int64_t id[14], td[14];
    data_i64(idx, id);
    data_i64(tg, td);
    td[5] = -1; /* an ignored target */
    tg = em_from_data(td, (int64_t[]){B, T}, 2, EM_I64);
    em_tensor_t *loss = NULL;
    em_tensor_t *logits = em_model_forward(m, idx, tg, &loss);
    TH_CHECK(logits && em_ndim(logits) == 3 && em_size(logits, 0) == B && em_size(logits, 1) == T &&
             em_size(logits, 2) == V && em_type(logits) == cfg.dtype, "%s: logits (B, T, V) in the model's dtype", what);
    TH_CHECK(loss && em_ndim(loss) == 0, "%s: a 0-dim loss", what);
    double *ref = malloc(sizeof(double) * (size_t)(B * T * V));
    double want = ref_forward(m, id, td, B, T, ref), scale;
    double md = max_diff(logits, ref, B * T * V, &scale);
    TH_CHECK(md <= tol * (1 + scale), "%s: logits equal the float64 reference (max err %g, max |logit| %g)", what, md,
             scale);
    TH_CHECK(fabs(em_item(loss) - want) <= tol * (1 + want), "%s: loss %.12g, reference %.12g", what, em_item(loss), want);
    free(ref);
    em_model_free(m);
    em_scope_end(s);
    CHECK_LIVE(live, what);
}

static void test_oracle(void) {
    em_model_config c = preset("gpt2-tiny", EM_F64);
    check_oracle(c, "gpt2-tiny f64", 1e-11);
    c.dtype = EM_F32;
    check_oracle(c, "gpt2-tiny f32", 2e-5);
    c = preset("gpt2-tiny", EM_F64);
    c.n_kv_head = 1;
    c.bias = false;
    c.tie_embeddings = false;
    c.n_layer = 3;
    check_oracle(c, "gpt2 variant: multi-query, no bias, untied, 3 layers", 1e-11);
    c = preset("llama-tiny", EM_F64);
    check_oracle(c, "llama-tiny f64 (GQA, untied)", 1e-11);
    c.dtype = EM_F32;
    check_oracle(c, "llama-tiny f32", 2e-5);
    c = preset("llama-tiny", EM_F64);
    c.n_kv_head = 0; /* default: n_head */
    c.tie_embeddings = true;
    c.ffn_hidden = 0; /* default: llama2.c's rule */
    check_oracle(c, "llama variant: MHA, tied, default hidden", 1e-11);
}

/* ---- gradients by finite differences ----------------------------------------------------------- */
static double loss_of(em_model_t *m, em_tensor_t *idx, em_tensor_t *tg) {
    em_scope_t *s = em_scope_begin();
    em_tensor_t *loss;
    em_model_forward(m, idx, tg, &loss);
    double v = em_item(loss);
    em_scope_end(s);
    return v;
}

static void check_grads(const char *name, const char *what) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    em_model_config cfg = preset(name, EM_F64);
    em_model_t *m = em_model_new(&cfg, 5);
    randomize(m, 21);
    em_tensor_t *idx = tokens(2, 6, cfg.vocab_size, 8), *tg = tokens(2, 6, cfg.vocab_size, 9);
    int64_t id0;
    em_to_data(em_select(em_select(idx, 0, 0), 0, 0), &id0, sizeof id0);
    em_tensor_t *loss;
    em_model_forward(m, idx, tg, &loss);
    TH_CHECK(em_backward(loss) == EM_OK, "%s: backward", what);
    double worst = 0;
    const char *worst_name = "";
    int checked = 0, n = em_model_num_params(m);
    th_seed(99);
    for (int i = 0; i < n; i++) {
        const char *pname;
        em_tensor_t *p = em_model_param(m, i, &pname);
        em_tensor_t *g = em_grad(p);
        TH_CHECK(g != NULL, "%s: %s has a gradient", what, pname);
        if (!g) continue;
        em_tensor_t *flat = em_reshape(p, (int64_t[]){-1}, 1), *gflat = em_reshape(g, (int64_t[]){-1}, 1);
        for (int r = 0; r < 3; r++) {
            int64_t j = (int64_t)(th_uniform() * (double)em_numel(p));
            if (r == 0 && (strstr(pname, "embeddings") || strstr(pname, "wte"))) j = id0 * cfg.n_embd + 1;
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
    TH_CHECK(worst < 1e-5, "%s: %d gradient entries over every parameter match central differences (worst rel err %g "
             "in %s)", what, checked, worst, worst_name);
    em_model_free(m);
    em_scope_end(s);
    CHECK_LIVE(live, what);
}

static void test_grads(void) {
    check_grads("gpt2-tiny", "gpt2-tiny gradients");
    check_grads("llama-tiny", "llama-tiny gradients");
}

/* ---- KV cache ------------------------------------------------------------------------------------ */
static void check_cache(em_model_config cfg, const char *what, double tol) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    em_model_t *m = em_model_new(&cfg, 3);
    randomize(m, 31);
    const int B = 2, T = 12, V = cfg.vocab_size;
    em_tensor_t *idx = tokens(B, T, V, 12);
    em_no_grad_begin();
    em_tensor_t *full = em_model_forward(m, idx, NULL, NULL); /* (B, T, V) */
    em_no_grad_end();
    em_kv_cache_t *kv = em_kv_cache_new(m, 3, cfg.block_size); /* a larger batch than used */
    TH_CHECK(kv != NULL, "%s: cache", what);
    /* a prompt of 5, then single tokens up to 9, then a chunk of 3 */
    int64_t starts[] = {0, 5, 6, 7, 8, 9, 12};
    double worst = 0;
    bool grads_off = true;
    for (int c = 0; c + 1 < (int)(sizeof starts / sizeof *starts); c++) {
        int64_t a = starts[c], b = starts[c + 1];
        em_tensor_t *chunk = em_contiguous(em_slice(idx, 1, a, b, 1));
        em_tensor_t *lg = em_model_forward_cached(m, chunk, a, kv); /* (B, b - a, V) */
        TH_CHECK(lg && em_size(lg, 1) == b - a, "%s: cached logits for positions %lld..%lld", what, (long long)a,
                 (long long)b - 1);
        grads_off = grads_off && lg && !em_requires_grad(lg);
        em_tensor_t *want = em_contiguous(em_slice(full, 1, a, b, 1));
        int64_t n = em_numel(want);
        double *w = malloc(sizeof(double) * (size_t)n), scale;
        em_to_data(em_cast(want, EM_F64), w, sizeof(double) * (size_t)n);
        worst = fmax(worst, max_diff(lg, w, n, &scale) / (1 + scale));
        free(w);
    }
    TH_CHECK(worst <= tol, "%s: cached decoding equals the full forward (worst %g)", what, worst);
    TH_CHECK(grads_off, "%s: the cached forward records no autograd history", what);
    /* errors */
    em_tensor_t *one = em_zeros((int64_t[]){B, 1}, 2, EM_I64);
    TH_CHECK(em_model_forward_cached(m, one, cfg.block_size, kv) == NULL, "%s: a position past max_T", what);
    TH_CHECK_ERR(EM_ERR_SHAPE, "does not fit", "%s: the message says the cache is too small", what);
    TH_CHECK(em_model_forward_cached(m, em_zeros((int64_t[]){4, 1}, 2, EM_I64), 0, kv) == NULL, "%s: batch too big",
             what);
    em_model_t *other = em_model_new(&cfg, 4);
    TH_CHECK(em_model_forward_cached(other, one, 0, kv) == NULL, "%s: a cache of another model", what);
    TH_CHECK(em_kv_cache_new(m, 1, cfg.block_size + 1) == NULL, "%s: max_T over block_size", what);
    em_model_free(other);
    em_kv_cache_free(kv);
    em_model_free(m);
    em_scope_end(s);
    CHECK_LIVE(live, what);
}

static void test_kv_cache(void) {
    check_cache(preset("gpt2-tiny", EM_F64), "gpt2-tiny cache f64", 1e-12);
    check_cache(preset("llama-tiny", EM_F64), "llama-tiny cache f64 (GQA)", 1e-12);
    check_cache(preset("llama-tiny", EM_F32), "llama-tiny cache f32", 1e-5);
}

/* ---- parameters, configs, errors -------------------------------------------------------------------- */
static void test_params(void) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    em_model_config c = preset("gpt2-tiny", EM_F32);
    em_model_t *m = em_model_new(&c, 1);
    const char *name;
    int n = em_model_num_params(m);
    /* wte, wpe, 12 per block (2 blocks), ln_f weight and bias; tied head */
    TH_CHECK(n == 2 + 12 * 2 + 2, "gpt2-tiny has 28 parameter tensors (got %d)", n);
    em_model_param(m, 0, &name);
    TH_CHECK(!strcmp(name, "wte.weight"), "first is wte.weight (got %s)", name);
    em_model_param(m, 4, &name);
    TH_CHECK(!strcmp(name, "h.0.attn.c_attn.weight"), "then h.0.ln_1.*, h.0.attn.c_attn.weight (got %s)", name);
    em_model_param(m, n - 1, &name);
    TH_CHECK(!strcmp(name, "ln_f.bias"), "last is ln_f.bias (got %s)", name);
    const int64_t C = 32, V = 64, H = 128, L = 2, BS = 16;
    int64_t want = V * C + BS * C + L * (4 * C + 3 * C * C + 3 * C + C * C + C + H * C + H + C * H + C) + 2 * C;
    TH_CHECK(em_model_param_count(m) == want, "scalar count %lld (want %lld)", (long long)em_model_param_count(m),
             (long long)want);
    em_tensor_t *w = em_model_param_by_name(m, "h.1.mlp.c_fc.weight");
    TH_CHECK(w && em_size(w, 0) == H && em_size(w, 1) == C && em_is_leaf(w) && em_requires_grad(w),
             "c_fc.weight is a (H, C) leaf that requires grad");
    TH_CHECK(em_model_params(m)[4] == em_model_param(m, 4, NULL), "em_model_params lists the same handles");
    /* init: LayerNorm weights 1, biases 0, weights N(0, 0.02), residual projections scaled */
    em_tensor_t *ln = em_model_param_by_name(m, "h.0.ln_1.weight"), *b = em_model_param_by_name(m, "h.0.attn.c_attn.bias");
    TH_CHECK(em_item(em_amin(ln, NULL, 0, false)) == 1 && em_item(em_amax(em_abs(b), NULL, 0, false)) == 0,
             "norm weights start at 1 and biases at 0");
    double sd = em_item(em_std(em_model_param_by_name(m, "wte.weight"), NULL, 0, 1, false));
    double sdp = em_item(em_std(em_model_param_by_name(m, "h.0.mlp.c_proj.weight"), NULL, 0, 1, false));
    TH_CHECK(fabs(sd - 0.02) < 0.002, "weights N(0, 0.02) (std %g)", sd);
    TH_CHECK(fabs(sdp - 0.02 / sqrt(4.0)) < 0.001, "residual projections N(0, 0.02/sqrt(2 n_layer)) (std %g)", sdp);
    /* same seed, same values, global generator untouched */
    em_manual_seed(42);
    uint64_t off = em_rng_offset();
    em_model_t *m2 = em_model_new(&c, 1);
    TH_CHECK(em_rng_offset() == off && em_rng_seed() == 42, "em_model_new leaves the global generator alone");
    TH_CHECK(em_item(em_sum(em_ne(em_model_param(m2, 0, NULL), em_model_param(m, 0, NULL)), NULL, 0, false)) == 0,
             "the same seed gives the same parameters");
    /* set_param */
    em_tensor_t *ones = em_ones((int64_t[]){C}, 1, EM_F64);
    TH_CHECK(em_model_set_param(m, "ln_f.bias", ones) == EM_OK, "set_param casts f64 values into an f32 parameter");
    TH_CHECK(em_item(em_sum(em_model_param_by_name(m, "ln_f.bias"), NULL, 0, false)) == C, "the values arrived");
    TH_CHECK(em_model_set_param(m, "ln_f.bias", em_ones((int64_t[]){C + 1}, 1, EM_F32)) == EM_ERR_SHAPE, "shape check");
    TH_CHECK_ERR(EM_ERR_SHAPE, "ln_f.bias", "the message names the parameter");
    TH_CHECK(em_model_set_param(m, "nope", ones) == EM_ERR_ARG, "unknown name");
    TH_CHECK_ERR(EM_ERR_ARG, "nope", "the message names it");
    /* load_params: checks everything before writing anything */
    const char *names[3] = {"ln_f.weight", "wte.weight", "ln_f.bias"};
    em_tensor_t *vals[3] = {em_zeros((int64_t[]){C}, 1, EM_F32), em_zeros((int64_t[]){V, C}, 2, EM_F32),
                            em_zeros((int64_t[]){C}, 1, EM_F32)};
    em_tensor_t *bad[3] = {vals[0], em_zeros((int64_t[]){V, C + 1}, 2, EM_F32), vals[2]};
    TH_CHECK(em_model_load_params(m, names, bad, 3, false) == EM_ERR_SHAPE, "a shape mismatch fails the load");
    TH_CHECK(em_item(em_sum(em_model_param_by_name(m, "ln_f.weight"), NULL, 0, false)) == C,
             "and nothing was written (ln_f.weight still ones)");
    TH_CHECK(em_model_load_params(m, names, vals, 3, true) == EM_ERR_ARG, "strict: missing parameters");
    TH_CHECK_ERR(EM_ERR_ARG, "missing", "the message says which");
    TH_CHECK(em_model_load_params(m, names, vals, 3, false) == EM_OK, "non-strict: a subset loads");
    TH_CHECK(em_item(em_sum(em_model_param_by_name(m, "ln_f.weight"), NULL, 0, false)) == 0, "the values arrived");
    const char *unk[2] = {"ln_f.weight", "lm_head.weight"};
    TH_CHECK(em_model_load_params(m, unk, vals, 2, true) == EM_ERR_ARG, "strict: an unexpected name");
    TH_CHECK(em_model_load_params(m, unk, vals, 2, false) == EM_OK, "non-strict: unknown names are ignored");
    const char *dup[2] = {"ln_f.weight", "ln_f.weight"};
    TH_CHECK(em_model_load_params(m, dup, vals, 2, false) == EM_ERR_ARG, "a name given twice");
    /* Hugging Face GPT-2 layout: "transformer." prefix, Conv1D weights (in, out), mask buffers */
    n = em_model_num_params(m);
    const char **hn = malloc(sizeof(char *) * (size_t)(n + 2));
    em_tensor_t **ht = malloc(sizeof(em_tensor_t *) * (size_t)(n + 2));
    char (*buf)[96] = malloc(sizeof *buf * (size_t)n);
    for (int i = 0; i < n; i++) {
        em_tensor_t *p = em_model_param(m, i, &name);
        snprintf(buf[i], sizeof buf[i], "transformer.%s", name);
        bool conv = strstr(name, "c_attn.weight") || strstr(name, "c_proj.weight") || strstr(name, "c_fc.weight");
        hn[i] = buf[i];
        ht[i] = conv ? em_contiguous(em_transpose(p, 0, 1)) : p;
    }
    hn[n] = "transformer.h.0.attn.bias";
    ht[n] = em_ones((int64_t[]){1, 1, BS, BS}, 4, EM_F32);
    hn[n + 1] = "lm_head.weight";
    ht[n + 1] = em_model_param(m, 0, NULL);
    TH_CHECK(em_model_load_gpt2_hf(m2, hn, ht, n + 2) == EM_OK, "em_model_load_gpt2_hf loads a Hugging Face layout");
    bool same = true;
    for (int i = 0; i < n; i++)
        same = same && em_item(em_sum(em_ne(em_model_param(m, i, NULL), em_model_param(m2, i, NULL)), NULL, 0, false)) == 0;
    TH_CHECK(same, "every parameter arrived, Conv1D weights transposed back");
    TH_CHECK(em_model_load_gpt2_hf(m2, hn, ht, n - 1) == EM_ERR_ARG, "a missing tensor is an error (strict)");
    free(hn);
    free(ht);
    free(buf);
    em_model_free(m2);
    em_model_free(m);
    /* Llama names */
    c = preset("llama-tiny", EM_F32);
    m = em_model_new(&c, 1);
    n = em_model_num_params(m);
    em_model_param(m, 1, &name);
    TH_CHECK(!strcmp(name, "layers.0.attention_norm.weight"), "llama: layers.0.attention_norm.weight (got %s)", name);
    em_model_param(m, n - 1, &name);
    TH_CHECK(!strcmp(name, "output.weight") && n == 1 + 9 * 2 + 2, "llama: untied output.weight last, %d tensors", n);
    TH_CHECK(em_size(em_model_param_by_name(m, "layers.1.attention.wk.weight"), 0) == 16, "wk is (NKV HS, C)");
    TH_CHECK(em_model_get_config(m)->ffn_hidden == 96 && em_model_get_config(m)->rope_theta == 10000,
             "resolved config");
    em_model_free(m);
    em_scope_end(s);
    CHECK_LIVE(live, "params");
}

static void test_configs(void) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    em_model_config c;
    TH_CHECK(em_model_config_preset("gpt2", &c) == EM_OK && c.n_layer == 12 && c.n_embd == 768 && c.vocab_size == 50257 &&
             c.block_size == 1024 && c.bias && c.tie_embeddings, "gpt2 preset is the 124M model");
    TH_CHECK(em_model_config_preset("stories15M", &c) == EM_OK && c.n_embd == 288 && c.ffn_hidden == 768 &&
             c.arch == EM_ARCH_LLAMA, "stories15M preset");
    TH_CHECK(em_model_config_preset("gpt3", &c) == EM_ERR_ARG, "unknown preset");
    TH_CHECK_ERR(EM_ERR_ARG, "gpt2-medium", "the message lists the known ones");
    em_model_config_preset("llama-tiny", &c);
    em_model_config b = c;
    b.n_embd = 30;
    TH_CHECK(em_model_new(&b, 0) == NULL, "n_embd not a multiple of n_head");
    TH_CHECK_ERR(EM_ERR_ARG, "multiple of n_head", "message");
    b = c;
    b.n_kv_head = 3;
    TH_CHECK(em_model_new(&b, 0) == NULL, "n_head not a multiple of n_kv_head");
    b = c;
    b.n_embd = 12; /* HS 3 */
    b.n_head = 4;
    b.n_kv_head = 4;
    TH_CHECK(em_model_new(&b, 0) == NULL, "RoPE needs an even head size");
    TH_CHECK_ERR(EM_ERR_ARG, "even head size", "message");
    b = c;
    b.dtype = EM_I32;
    TH_CHECK(em_model_new(&b, 0) == NULL && em_last_status() == EM_ERR_DTYPE, "integer dtype");
    b = c;
    b.dropout = 1.0;
    TH_CHECK(em_model_new(&b, 0) == NULL, "dropout 1");
    b = c;
    b.n_layer = 0;
    TH_CHECK(em_model_new(&b, 0) == NULL, "no layers");
    TH_CHECK(em_model_new(NULL, 0) == NULL, "NULL config");
    /* forward errors */
    em_model_t *m = em_model_new(&c, 0);
    em_tensor_t *loss;
    TH_CHECK(em_model_forward(m, em_zeros((int64_t[]){1, 17}, 2, EM_I64), NULL, NULL) == NULL, "T > block_size");
    TH_CHECK_ERR(EM_ERR_SHAPE, "block_size", "message");
    TH_CHECK(em_model_forward(m, em_zeros((int64_t[]){1, 4}, 2, EM_F32), NULL, NULL) == NULL, "float ids");
    TH_CHECK(em_model_forward(m, em_zeros((int64_t[]){4}, 1, EM_I64), NULL, NULL) == NULL, "1-D ids");
    TH_CHECK(em_model_forward(m, em_full((int64_t[]){1, 4}, 2, 64, EM_I64), NULL, NULL) == NULL, "a token id >= V");
    TH_CHECK(em_last_status() == EM_ERR_INDEX, "is an index error");
    TH_CHECK(em_model_forward(m, em_zeros((int64_t[]){1, 4}, 2, EM_I64), em_zeros((int64_t[]){1, 3}, 2, EM_I64), &loss) ==
                 NULL && loss == NULL, "targets of another shape");
    TH_CHECK(em_model_forward(m, em_zeros((int64_t[]){1, 4}, 2, EM_I64), em_zeros((int64_t[]){1, 4}, 2, EM_I64), NULL) ==
                 NULL, "targets without a loss pointer");
    TH_CHECK(em_model_forward(m, NULL, NULL, NULL) == NULL && em_last_status() == EM_ERR_ARG, "NULL idx");
    TH_CHECK(em_model_forward(NULL, em_zeros((int64_t[]){1, 4}, 2, EM_I64), NULL, NULL) == NULL, "NULL model");
    em_tensor_t *lg = em_model_forward(m, em_zeros((int64_t[]){3, 16}, 2, EM_I32), NULL, &loss);
    TH_CHECK(lg && em_size(lg, 0) == 3 && loss == NULL, "i32 ids and no targets: logits, loss set to NULL");
    em_model_free(m);
    em_model_free(NULL);
    em_scope_end(s);
    CHECK_LIVE(live, "configs");
}

static void test_dropout(void) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    em_model_config c = preset("gpt2-tiny", EM_F32);
    em_model_t *plain = em_model_new(&c, 2);
    c.dropout = 0.2;
    em_model_t *m = em_model_new(&c, 2);
    em_tensor_t *idx = tokens(2, 8, 64, 1), *loss;
    TH_CHECK(em_model_is_training(m), "models start in training mode");
    em_tensor_t *a = em_model_forward(m, idx, idx, &loss);
    TH_CHECK(a && em_backward(loss) == EM_OK, "training forward and backward with dropout");
    em_tensor_t *p = em_model_forward(plain, idx, NULL, NULL);
    TH_CHECK(em_item(em_amax(em_abs(em_sub(a, p)), NULL, 0, false)) > 1e-3, "dropout changes the training forward");
    em_model_set_training(m, false);
    em_tensor_t *e = em_model_forward(m, idx, NULL, NULL);
    TH_CHECK(em_item(em_amax(em_abs(em_sub(e, p)), NULL, 0, false)) == 0, "evaluation mode has no dropout");
    em_model_free(m);
    em_model_free(plain);
    em_scope_end(s);
    CHECK_LIVE(live, "dropout");
}

/* ---- training smoke test ------------------------------------------------------------------------- */
static void test_overfit(const char *name, int steps, double ratio) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    em_model_config c = preset(name, EM_F32);
    em_model_t *m = em_model_new(&c, 1);
    int n = em_model_num_params(m);
    em_optimizer_t *o = em_adamw_new(em_model_params(m), n, 1e-2, 0.9, 0.95, 1e-8, 0.01);
    for (int i = 0; i < n; i++)
        if (em_ndim(em_model_params(m)[i]) < 2) em_optimizer_set_weight_decay(o, i, 0.0);
    em_tensor_t *idx = tokens(4, 16, c.vocab_size, 5), *tg = tokens(4, 16, c.vocab_size, 6);
    double first = 0, last = 0;
    bool ok = true;
    for (int step = 0; step < steps && ok; step++) {
        em_scope_t *ls = em_scope_begin();
        em_tensor_t *loss;
        ok = em_model_forward(m, idx, tg, &loss) && em_backward(loss) == EM_OK;
        ok = ok && em_clip_grad_norm(em_model_params(m), n, 1.0) >= 0;
        em_optimizer_set_lr(o, em_lr_cosine(step, 5, steps, 1e-2, 1e-3));
        ok = ok && em_optimizer_step(o) == EM_OK && em_optimizer_zero_grad(o) == EM_OK;
        if (ok) last = em_item(loss);
        if (step == 0) first = last;
        em_scope_end(ls);
    }
    TH_CHECK(ok, "%s: %d training steps ran", name, steps);
    printf("%s: loss %.3f -> %.3f in %d steps on a fixed batch\n", name, first, last, steps);
    TH_CHECK(last < ratio * first, "%s overfits a fixed batch: loss %.3f -> %.3f in %d steps", name, first, last, steps);
    em_optimizer_free(o);
    em_model_free(m);
    em_scope_end(s);
    CHECK_LIVE(live, name);
}

int main(void) {
    int64_t live = em_live_tensors();
    test_rope();
    test_attention();
    test_oracle();
    test_grads();
    test_kv_cache();
    test_params();
    test_configs();
    test_dropout();
    test_overfit("gpt2-tiny", 50, 0.1);
    test_overfit("llama-tiny", 50, 0.1);
    CHECK_LIVE(live, "test_nn");
    return th_summary();
}
