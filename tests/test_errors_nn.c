/* test_errors_nn.c - error paths of the nn ops (softmax, log_softmax, layer_norm, rms_norm,
 * cross_entropy, dropout, embedding): each mistake fails with the right status and a message
 * naming the op, and nothing leaks. Also checks the tests' own Philox (used as dropout's oracle
 * in cases_nn.c) against Random123's known-answer vectors, and a few numerical properties the
 * table-driven test does not reach (masked rows, eval-mode identity, RNG offsets).
 */
#include "harness.h"

#include <stdint.h>

void th_nn_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]); /* cases_nn.c */

static em_tensor_t *t2(int64_t a, int64_t b, em_dtype dt) { return em_zeros((int64_t[]){a, b}, 2, dt); }
static em_tensor_t *t1(int64_t a, em_dtype dt) { return em_zeros((int64_t[]){a}, 1, dt); }

static void philox_kat(void) {
    static const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e, 0xa20bc7c6,
         0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb, 0x5001e420,
         0x24126ea1},
    };
    for (int v = 0; v < 3; v++) {
        uint32_t out[4];
        th_nn_philox4x32(kat[v], kat[v] + 4, out);
        TH_CHECK(out[0] == kat[v][6] && out[1] == kat[v][7] && out[2] == kat[v][8] && out[3] == kat[v][9],
                 "Philox4x32-10 known-answer vector %d", v);
    }
}

static void softmax_errors(void) {
    em_tensor_t *x = t2(2, 3, EM_F32);
    TH_CHECK(!em_softmax(NULL, 0), "softmax NULL");
    TH_CHECK_ERR(EM_ERR_ARG, "em_softmax", "softmax NULL names the op");
    TH_CHECK(!em_softmax(x, 2), "softmax dim 2 of 2");
    TH_CHECK_ERR(EM_ERR_ARG, "em_softmax", "softmax bad dim");
    TH_CHECK(!em_softmax(x, -3), "softmax dim -3 of 2");
    TH_CHECK_ERR(EM_ERR_ARG, "em_softmax", "softmax bad negative dim");
    TH_CHECK(!em_softmax(t2(2, 3, EM_I64), 1), "softmax of i64");
    TH_CHECK_ERR(EM_ERR_DTYPE, "em_softmax", "softmax int dtype");
    TH_CHECK(!em_log_softmax(NULL, 0), "log_softmax NULL");
    TH_CHECK_ERR(EM_ERR_ARG, "em_log_softmax", "log_softmax NULL names the op");
    TH_CHECK(!em_log_softmax(x, 5), "log_softmax bad dim");
    TH_CHECK_ERR(EM_ERR_ARG, "em_log_softmax", "log_softmax bad dim names the op");
    TH_CHECK(!em_log_softmax(t2(2, 3, EM_BOOL), 0), "log_softmax of bool");
    TH_CHECK_ERR(EM_ERR_DTYPE, "em_log_softmax", "log_softmax bool dtype");
    TH_CHECK(!em_softmax(em_scalar(1, EM_F32), 1), "softmax of 0-dim with dim 1");
    TH_CHECK_ERR(EM_ERR_ARG, "em_softmax", "0-dim accepts only dim 0 / -1");

    /* masked attention rows: -inf entries get exactly 0, a fully masked row is NaN (PyTorch) */
    float v[6] = {0.5f, -INFINITY, 1.0f, -INFINITY, -INFINITY, -INFINITY}, y[6];
    em_tensor_t *m = em_from_data(v, (int64_t[]){2, 3}, 2, EM_F32);
    TH_CHECK(em_to_data(em_softmax(m, 1), y, sizeof y) == EM_OK, "softmax of masked rows");
    TH_CHECK(y[1] == 0.0f && fabsf(y[0] + y[2] - 1.0f) < 1e-6f && isnan(y[3]), "masked softmax: %g %g %g / %g", y[0],
             y[1], y[2], y[3]);
    TH_CHECK(em_to_data(em_log_softmax(m, 1), y, sizeof y) == EM_OK, "log_softmax of masked rows");
    TH_CHECK(isinf(y[1]) && y[1] < 0 && isnan(y[4]), "masked log_softmax: %g / %g", y[1], y[4]);
}

static void norm_errors(void) {
    em_tensor_t *x = t2(4, 5, EM_F32), *w = t1(5, EM_F32), *b = t1(5, EM_F32);
    TH_CHECK(!em_layer_norm(NULL, w, b, 1e-5), "layer_norm NULL x");
    TH_CHECK_ERR(EM_ERR_ARG, "em_layer_norm", "layer_norm NULL x names the op");
    TH_CHECK(!em_layer_norm(x, t1(4, EM_F32), b, 1e-5), "layer_norm weight (4,) for C 5");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_layer_norm", "layer_norm weight shape");
    TH_CHECK(!em_layer_norm(x, w, t2(1, 5, EM_F32), 1e-5), "layer_norm bias (1, 5)");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_layer_norm", "layer_norm bias shape");
    TH_CHECK(!em_layer_norm(em_scalar(1, EM_F32), NULL, NULL, 1e-5), "layer_norm 0-dim x");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_layer_norm", "layer_norm 0-dim");
    TH_CHECK(!em_layer_norm(t2(4, 5, EM_I32), NULL, NULL, 1e-5), "layer_norm int x");
    TH_CHECK_ERR(EM_ERR_DTYPE, "em_layer_norm", "layer_norm int dtype");
    TH_CHECK(!em_layer_norm(x, t1(5, EM_I64), NULL, 1e-5), "layer_norm int weight");
    TH_CHECK_ERR(EM_ERR_DTYPE, "em_layer_norm", "layer_norm int weight dtype");
    TH_CHECK(!em_rms_norm(NULL, w, 1e-6), "rms_norm NULL x");
    TH_CHECK_ERR(EM_ERR_ARG, "em_rms_norm", "rms_norm NULL names the op");
    TH_CHECK(!em_rms_norm(x, t1(6, EM_F32), 1e-6), "rms_norm weight (6,) for C 5");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_rms_norm", "rms_norm weight shape");
    TH_CHECK(!em_rms_norm(t2(4, 5, EM_U8), NULL, 1e-6), "rms_norm u8 x");
    TH_CHECK_ERR(EM_ERR_DTYPE, "em_rms_norm", "rms_norm dtype");
}

static void cross_entropy_errors(void) {
    em_tensor_t *lg = t2(3, 4, EM_F32), *t = t1(3, EM_I64);
    TH_CHECK(!em_cross_entropy(NULL, t), "cross_entropy NULL logits");
    TH_CHECK_ERR(EM_ERR_ARG, "em_cross_entropy", "NULL logits names the op");
    TH_CHECK(!em_cross_entropy(lg, NULL), "cross_entropy NULL targets");
    TH_CHECK_ERR(EM_ERR_ARG, "em_cross_entropy", "NULL targets names the op");
    TH_CHECK(!em_cross_entropy(em_zeros((int64_t[]){2, 3, 4}, 3, EM_F32), t2(2, 3, EM_I64)), "3-d logits");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_cross_entropy", "3-d logits");
    TH_CHECK(!em_cross_entropy(lg, t1(3, EM_F32)), "float targets");
    TH_CHECK_ERR(EM_ERR_DTYPE, "em_cross_entropy", "float targets");
    TH_CHECK(!em_cross_entropy(lg, t1(4, EM_I64)), "4 targets for 3 rows");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_cross_entropy", "target count");
    TH_CHECK(!em_cross_entropy(t1(4, EM_F32), t1(1, EM_I64)), "(C,) logits with 1-d target");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_cross_entropy", "1-d logits need 0-dim target");
    TH_CHECK(!em_cross_entropy(t2(3, 4, EM_I64), t), "int logits");
    TH_CHECK_ERR(EM_ERR_DTYPE, "em_cross_entropy", "int logits");
    TH_CHECK(!em_cross_entropy_ex(lg, t, -100, (em_reduction)7), "bad reduction");
    TH_CHECK_ERR(EM_ERR_ARG, "em_cross_entropy", "bad reduction");
    int64_t bad[3] = {0, 4, 1}, neg[3] = {0, -1, 1}, ign[3] = {-1, 2, -1};
    TH_CHECK(!em_cross_entropy(lg, em_from_data(bad, (int64_t[]){3}, 1, EM_I64)), "target 4 of 4 classes");
    TH_CHECK_ERR(EM_ERR_INDEX, "em_cross_entropy", "target out of range");
    TH_CHECK(!em_cross_entropy(lg, em_from_data(neg, (int64_t[]){3}, 1, EM_I64)), "target -1");
    TH_CHECK_ERR(EM_ERR_INDEX, "em_cross_entropy", "negative target");
    /* -1 is fine when it is the ignore_index: only row 1 counts */
    em_tensor_t *l = em_cross_entropy_ex(lg, em_from_data(ign, (int64_t[]){3}, 1, EM_I64), -1, EM_REDUCE_MEAN);
    TH_CHECK(l && fabs(em_item(l) - log(4.0)) < 1e-6, "ignored -1 targets: loss %g, want log 4", l ? em_item(l) : NAN);
    /* gradient of an all-ignored mean is zero (the loss is NaN), as in PyTorch */
    em_tensor_t *p = t2(2, 4, EM_F64);
    em_set_requires_grad(p, true);
    int64_t all[2] = {-100, -100};
    em_tensor_t *la = em_cross_entropy(p, em_from_data(all, (int64_t[]){2}, 1, EM_I64));
    TH_CHECK(la && isnan(em_item(la)) && em_backward(la) == EM_OK, "all-ignored mean is NaN and differentiable");
    em_tensor_t *g = em_grad(p);
    double gd[8] = {1};
    TH_CHECK(g && em_to_data(g, gd, sizeof gd) == EM_OK && gd[0] == 0 && gd[7] == 0, "all-ignored gradient is 0");
}

static void dropout_errors(void) {
    em_tensor_t *x = t2(3, 4, EM_F32);
    TH_CHECK(!em_dropout(NULL, 0.5, true), "dropout NULL");
    TH_CHECK_ERR(EM_ERR_ARG, "em_dropout", "dropout NULL names the op");
    TH_CHECK(!em_dropout(x, -0.1, true), "dropout p < 0");
    TH_CHECK_ERR(EM_ERR_ARG, "em_dropout", "dropout p < 0");
    TH_CHECK(!em_dropout(x, 1.5, false), "dropout p > 1 (checked in eval mode too)");
    TH_CHECK_ERR(EM_ERR_ARG, "em_dropout", "dropout p > 1");
    TH_CHECK(!em_dropout(x, NAN, true), "dropout p NaN");
    TH_CHECK_ERR(EM_ERR_ARG, "em_dropout", "dropout p NaN");
    TH_CHECK(!em_dropout(t2(3, 4, EM_I32), 0.5, true), "dropout of i32 in training");
    TH_CHECK_ERR(EM_ERR_DTYPE, "em_dropout", "dropout int dtype");
    /* eval mode and p = 0 return x itself; training consumes numel counters */
    em_tensor_t *e = em_dropout(x, 0.5, false);
    TH_CHECK(e == x, "eval-mode dropout returns its input");
    em_manual_seed(11);
    em_tensor_t *d1 = em_dropout(x, 0.5, true);
    TH_CHECK(d1 && em_rng_offset() == 12, "dropout reserves numel counters (offset %llu)",
             (unsigned long long)em_rng_offset());
    em_tensor_t *d0 = em_dropout(x, 0.0, true);
    TH_CHECK(d0 == x && em_rng_offset() == 12, "p = 0 is the identity and draws nothing");
}

static void embedding_errors(void) {
    em_tensor_t *w = t2(10, 4, EM_F32), *ix = em_zeros((int64_t[]){2, 3}, 2, EM_I64);
    TH_CHECK(!em_embedding(NULL, ix), "embedding NULL weight");
    TH_CHECK_ERR(EM_ERR_ARG, "em_embedding", "NULL weight names the op");
    TH_CHECK(!em_embedding(w, NULL), "embedding NULL indices");
    TH_CHECK_ERR(EM_ERR_ARG, "em_embedding", "NULL indices names the op");
    TH_CHECK(!em_embedding(t1(10, EM_F32), ix), "1-d weight");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_embedding", "weight must be 2-d");
    TH_CHECK(!em_embedding(w, em_zeros((int64_t[]){2, 3}, 2, EM_F32)), "float indices");
    TH_CHECK_ERR(EM_ERR_DTYPE, "em_embedding", "float indices");
    int64_t big[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    TH_CHECK(!em_embedding(w, em_zeros(big, 8, EM_I64)), "8-d indices give a 9-d output");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_embedding", "too many dims");
    int64_t hi[3] = {0, 10, 2}, lo[3] = {0, -1, 2};
    TH_CHECK(!em_embedding(w, em_from_data(hi, (int64_t[]){3}, 1, EM_I64)), "index 10 of 10 rows");
    TH_CHECK_ERR(EM_ERR_INDEX, "em_embedding", "index out of range");
    TH_CHECK(!em_embedding(w, em_from_data(lo, (int64_t[]){3}, 1, EM_I64)), "index -1");
    TH_CHECK_ERR(EM_ERR_INDEX, "em_embedding", "negative index");
}

int main(void) {
    int64_t live0 = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    philox_kat();
    softmax_errors();
    norm_errors();
    cross_entropy_errors();
    dropout_errors();
    embedding_errors();
    em_scope_end(s);
    TH_CHECK(em_live_tensors() == live0, "tensors leaked: %lld live, %lld at start", (long long)em_live_tensors(),
             (long long)live0);
    return th_summary();
}
