/* mlp.c - the eager API end to end: fit a two-layer MLP to a generated regression problem.
 *
 * Data: y = sin(3 x0) + 0.5 x1^2 - x0 x2 + noise, x ~ N(0, 1)^4, 4096 training and 1024 held-out
 * points, all drawn from Ember's Philox generator (so every run prints the same numbers).
 * Model: 4 -> 64 (GELU) -> 1. Optimizer: Adam written with plain ops under no_grad, which is
 * what an optimizer step is in Ember: reads of .grad, out-of-place math, em_assign back.
 *
 *   make run            (or: build/examples/mlp [steps])
 */
#include <ember.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define N_TRAIN 4096
#define N_TEST 1024
#define D_IN 4
#define HIDDEN 64
#define BATCH 256

static em_tensor_t *target(em_tensor_t *x) {
    em_tensor_t *x0 = em_select(x, 1, 0), *x1 = em_select(x, 1, 1), *x2 = em_select(x, 1, 2);
    em_tensor_t *y = em_add(em_sin(em_mul_scalar(x0, 3.0)), em_mul_scalar(em_square(x1), 0.5));
    y = em_sub(y, em_mul(x0, x2));
    return em_unsqueeze(y, 1); /* (N, 1) */
}

typedef struct {
    em_tensor_t *p, *m, *v; /* parameter and Adam moments */
} param;

static em_tensor_t *forward(param *ps, em_tensor_t *x) {
    em_tensor_t *h = em_gelu(em_linear(x, ps[0].p, ps[1].p)); /* (B, HIDDEN) */
    return em_linear(h, ps[2].p, ps[3].p);                    /* (B, 1) */
}

static em_tensor_t *mse(em_tensor_t *pred, em_tensor_t *y) {
    return em_mean(em_square(em_sub(pred, y)), NULL, 0, false);
}

static void adam_step(param *ps, int n, int t, double lr) {
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    em_no_grad_begin();
    for (int i = 0; i < n; i++) {
        em_tensor_t *g = em_grad(ps[i].p);
        em_assign(ps[i].m, em_add(em_mul_scalar(ps[i].m, b1), em_mul_scalar(g, 1 - b1)));
        em_assign(ps[i].v, em_add(em_mul_scalar(ps[i].v, b2), em_mul_scalar(em_square(g), 1 - b2)));
        em_tensor_t *mh = em_div_scalar(ps[i].m, 1 - pow(b1, t));
        em_tensor_t *vh = em_div_scalar(ps[i].v, 1 - pow(b2, t));
        em_tensor_t *upd = em_div(mh, em_add_scalar(em_sqrt(vh), eps));
        em_assign(ps[i].p, em_sub(ps[i].p, em_mul_scalar(upd, lr)));
        em_zero_grad(ps[i].p);
    }
    em_no_grad_end();
}

static int fail(const char *what) {
    fprintf(stderr, "mlp: %s failed: %s\n", what, em_last_error());
    return 1;
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 600;
    em_manual_seed(1234);
    em_scope_t *root = em_scope_begin();
    em_tensor_t *xtr = em_randn((int64_t[]){N_TRAIN, D_IN}, 2, EM_F32);
    em_tensor_t *ytr = em_add(target(xtr), em_mul_scalar(em_randn((int64_t[]){N_TRAIN, 1}, 2, EM_F32), 0.05));
    em_tensor_t *xte = em_randn((int64_t[]){N_TEST, D_IN}, 2, EM_F32);
    em_tensor_t *yte = target(xte);
    if (!ytr || !yte) return fail("making data");

    /* PyTorch-style init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
    const int64_t shapes[4][2] = {{HIDDEN, D_IN}, {HIDDEN, 0}, {1, HIDDEN}, {1, 0}};
    const double fan_in[4] = {D_IN, D_IN, HIDDEN, HIDDEN};
    param ps[4];
    for (int i = 0; i < 4; i++) {
        int nd = shapes[i][1] ? 2 : 1;
        double bound = 1.0 / sqrt(fan_in[i]);
        em_tensor_t *u = em_rand(shapes[i], nd, EM_F32);
        ps[i].p = em_detach(em_sub_scalar(em_mul_scalar(u, 2 * bound), bound));
        ps[i].m = em_zeros(shapes[i], nd, EM_F32);
        ps[i].v = em_zeros(shapes[i], nd, EM_F32);
        if (!ps[i].p || em_set_requires_grad(ps[i].p, true) != EM_OK) return fail("init");
    }

    printf("fitting y = sin(3 x0) + 0.5 x1^2 - x0 x2 with a 4-64-1 GELU MLP, Adam lr 1e-2, batch %d\n", BATCH);
    printf("%6s %12s %12s\n", "step", "train mse", "test mse");
    for (int step = 1; step <= steps; step++) {
        em_scope_t *s = em_scope_begin();
        int64_t start = (int64_t)((step - 1) * BATCH) % N_TRAIN;
        em_tensor_t *xb = em_slice(xtr, 0, start, start + BATCH, 1), *yb = em_slice(ytr, 0, start, start + BATCH, 1);
        em_tensor_t *loss = mse(forward(ps, xb), yb);
        if (!loss || em_backward(loss) != EM_OK) return fail("training step");
        adam_step(ps, 4, step, 1e-2);
        if (step == 1 || step % 50 == 0) {
            em_no_grad_begin();
            double test = em_item(mse(forward(ps, xte), yte));
            em_no_grad_end();
            printf("%6d %12.5f %12.5f\n", step, em_item(loss), test);
        }
        em_scope_end(s);
    }
    em_no_grad_begin();
    double var = em_item(em_var(yte, NULL, 0, 0, false)), test = em_item(mse(forward(ps, xte), yte));
    em_no_grad_end();
    printf("held-out mse %.5f vs target variance %.5f (R^2 = %.3f)\n", test, var, 1 - test / var);
    em_scope_end(root);
    return 0;
}
