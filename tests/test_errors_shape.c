/* test_errors_shape.c - error paths of the shape group (cat, stack, split, gather, index_select,
 * scatter_add, triu, tril, pad, repeat, flip): every user mistake fails with the right status
 * and a message naming the op, nothing leaks, and a few behaviours the op table cannot express
 * (split views share storage, a gradient through one chunk of a split). */
#include "harness.h"

static em_tensor_t *ramp(const int64_t *shape, int nd, em_dtype dt) {
    int64_t n = 1;
    for (int d = 0; d < nd; d++) n *= shape[d];
    em_tensor_t *t = em_arange(0, (double)n, 1, dt);
    return em_reshape(t, shape, nd);
}

static em_tensor_t *idx64(const int64_t *v, int64_t n) { return em_from_data(v, &n, 1, EM_I64); }

static void test_cat_stack(void) {
    em_tensor_t *a = ramp((int64_t[]){2, 3}, 2, EM_F32), *b = ramp((int64_t[]){2, 4}, 2, EM_F32);
    em_tensor_t *s0 = em_scalar(1, EM_F32);

    TH_CHECK(em_cat(NULL, 2, 0) == NULL, "cat NULL list");
    TH_CHECK_ERR(EM_ERR_ARG, "em_cat", "cat NULL list: status and op name");
    TH_CHECK(em_cat((em_tensor_t *[]){a}, 0, 0) == NULL, "cat of no tensors");
    TH_CHECK_ERR(EM_ERR_ARG, "em_cat", "cat of no tensors: message");
    TH_CHECK(em_cat((em_tensor_t *[]){a, NULL}, 2, 0) == NULL, "cat with a NULL entry");
    TH_CHECK_ERR(EM_ERR_ARG, "ts[1]", "cat NULL entry names it");
    TH_CHECK(em_cat((em_tensor_t *[]){a, b}, 2, 0) == NULL, "cat shapes differ outside dim");
    TH_CHECK_ERR(EM_ERR_SHAPE, "input 1", "cat mismatch names the first mismatching input");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_cat", "cat mismatch names the op");
    TH_CHECK(em_cat((em_tensor_t *[]){a, a, b}, 3, 1) != NULL, "cat along the differing dim works");
    TH_CHECK(em_cat((em_tensor_t *[]){a, b}, 2, 2) == NULL, "cat dim out of range");
    TH_CHECK_ERR(EM_ERR_ARG, "em_cat", "cat bad dim");
    TH_CHECK(em_cat((em_tensor_t *[]){s0, s0}, 2, 0) == NULL, "cat of 0-dim tensors");
    TH_CHECK_ERR(EM_ERR_SHAPE, "0-dim", "cat of 0-dim: message says why");
    em_tensor_t *v3 = ramp((int64_t[]){3}, 1, EM_F32);
    TH_CHECK(em_cat((em_tensor_t *[]){a, v3}, 2, 0) == NULL, "cat 2-d with non-empty 1-d");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_cat", "cat ndim mismatch");

    TH_CHECK(em_stack(NULL, 1, 0) == NULL, "stack NULL list");
    TH_CHECK_ERR(EM_ERR_ARG, "em_stack", "stack NULL list: message");
    TH_CHECK(em_stack((em_tensor_t *[]){a, b}, 2, 0) == NULL, "stack different shapes");
    TH_CHECK_ERR(EM_ERR_SHAPE, "input 1", "stack mismatch names the input");
    TH_CHECK(em_stack((em_tensor_t *[]){a, a}, 2, 3) == NULL, "stack dim out of range");
    TH_CHECK_ERR(EM_ERR_ARG, "em_stack", "stack bad dim");
    TH_CHECK(em_stack((em_tensor_t *[]){a, NULL}, 2, 0) == NULL, "stack NULL entry");
    TH_CHECK_ERR(EM_ERR_ARG, "em_stack", "stack NULL entry: message");
    em_tensor_t *big = em_zeros((int64_t[]){1, 1, 1, 1, 1, 1, 1, 1}, 8, EM_F32);
    TH_CHECK(em_stack((em_tensor_t *[]){big, big}, 2, 0) == NULL, "stack beyond 8 dims");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_stack", "stack too many dims");
}

static void test_split(void) {
    em_tensor_t *x = ramp((int64_t[]){7, 3}, 2, EM_F32), *out[64];
    TH_CHECK(em_split(NULL, 2, 0, out, 8) == -1, "split NULL");
    TH_CHECK_ERR(EM_ERR_ARG, "em_split", "split NULL: message");
    TH_CHECK(em_split(x, 0, 0, out, 8) == -1, "split_size 0");
    TH_CHECK_ERR(EM_ERR_ARG, "split_size", "split_size 0: message");
    TH_CHECK(em_split(x, -2, 0, out, 8) == -1, "split_size negative");
    TH_CHECK_ERR(EM_ERR_ARG, "em_split", "split_size negative: message");
    TH_CHECK(em_split(x, 2, 0, out, 3) == -1, "split with too little room");
    TH_CHECK_ERR(EM_ERR_ARG, "em_split", "split room: message");
    TH_CHECK(em_split(x, 2, 0, NULL, 8) == -1, "split out NULL");
    TH_CHECK_ERR(EM_ERR_ARG, "em_split", "split out NULL: message");
    TH_CHECK(em_split(x, 2, 5, out, 8) == -1, "split bad dim");
    TH_CHECK_ERR(EM_ERR_ARG, "em_split", "split bad dim: message");
    TH_CHECK(em_split(em_scalar(1, EM_F32), 1, 0, out, 8) == -1, "split 0-dim");
    TH_CHECK_ERR(EM_ERR_ARG, "0-dim", "split 0-dim: message");
    em_tensor_t *long1 = em_zeros((int64_t[]){100}, 1, EM_F32);
    TH_CHECK(em_split(long1, 1, 0, out, 64) == -1, "split into more than 64 chunks");
    TH_CHECK_ERR(EM_ERR_ARG, "at most 64", "split chunk limit: message");

    int n = em_split(x, 3, 0, out, 8);
    TH_CHECK(n == 3, "split (7,3) by 3 gives 3 chunks, got %d", n);
    TH_CHECK(n == 3 && em_size(out[2], 0) == 1 && em_shares_storage(out[0], x), "split chunks are views");

    /* a gradient through one chunk: the others get zeros from the engine */
    em_tensor_t *w = em_ones((int64_t[]){7, 3}, 2, EM_F64);
    em_set_requires_grad(w, true);
    n = em_split(w, 3, 0, out, 8);
    TH_CHECK(n == 3 && em_backward(em_sum(out[1], NULL, 0, false)) == EM_OK, "backward through one chunk");
    em_tensor_t *g = em_grad(w);
    double gv[21] = {0};
    TH_CHECK(g && em_to_data(g, gv, sizeof gv) == EM_OK, "split gradient exists");
    TH_CHECK(gv[0] == 0 && gv[9] == 1 && gv[17] == 1 && gv[18] == 0, "split gradient is 1 on chunk 1 only");
}

static void test_gather_family(void) {
    em_tensor_t *x = ramp((int64_t[]){3, 4}, 2, EM_F32);
    em_tensor_t *ok = em_zeros((int64_t[]){2, 4}, 2, EM_I64);
    em_tensor_t *bad = em_full((int64_t[]){2, 4}, 2, 3, EM_I64);
    em_tensor_t *neg = em_full((int64_t[]){2, 4}, 2, -1, EM_I32);
    em_tensor_t *fidx = em_zeros((int64_t[]){2, 4}, 2, EM_F32);
    em_tensor_t *idx1 = em_zeros((int64_t[]){4}, 1, EM_I64);
    em_tensor_t *wide = em_zeros((int64_t[]){2, 5}, 2, EM_I64);

    TH_CHECK(em_gather(NULL, 0, ok) == NULL, "gather NULL x");
    TH_CHECK_ERR(EM_ERR_ARG, "em_gather", "gather NULL x: message");
    TH_CHECK(em_gather(x, 0, NULL) == NULL, "gather NULL index");
    TH_CHECK_ERR(EM_ERR_ARG, "index", "gather NULL index: message");
    TH_CHECK(em_gather(x, 2, ok) == NULL, "gather bad dim");
    TH_CHECK_ERR(EM_ERR_ARG, "em_gather", "gather bad dim: message");
    TH_CHECK(em_gather(x, 0, fidx) == NULL, "gather float index");
    TH_CHECK_ERR(EM_ERR_DTYPE, "em_gather", "gather float index: message");
    TH_CHECK(em_gather(x, 0, idx1) == NULL, "gather index of other ndim");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_gather", "gather ndim mismatch: message");
    TH_CHECK(em_gather(x, 0, wide) == NULL, "gather index larger outside dim");
    TH_CHECK_ERR(EM_ERR_SHAPE, "dim 1", "gather larger index: message names the dim");
    TH_CHECK(em_gather(x, 0, bad) == NULL, "gather index out of range");
    TH_CHECK_ERR(EM_ERR_INDEX, "em_gather: index 3", "gather out of range: message");
    TH_CHECK(em_gather(x, 0, neg) == NULL, "gather negative index");
    TH_CHECK_ERR(EM_ERR_INDEX, "em_gather", "gather negative index: message");
    TH_CHECK(em_gather(x, 0, ok) != NULL, "gather good index works");

    em_tensor_t *sel_bad = idx64((int64_t[]){0, 3}, 2), *sel_neg = idx64((int64_t[]){-1}, 1);
    TH_CHECK(em_index_select(NULL, 0, idx1) == NULL, "index_select NULL x");
    TH_CHECK_ERR(EM_ERR_ARG, "em_index_select", "index_select NULL: message");
    TH_CHECK(em_index_select(x, 0, ok) == NULL, "index_select 2-d index");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_index_select", "index_select 2-d index: message");
    TH_CHECK(em_index_select(x, 0, em_zeros((int64_t[]){2}, 1, EM_U8)) == NULL, "index_select u8 index");
    TH_CHECK_ERR(EM_ERR_DTYPE, "em_index_select", "index_select u8 index: message");
    TH_CHECK(em_index_select(x, -3, idx1) == NULL, "index_select bad dim");
    TH_CHECK_ERR(EM_ERR_ARG, "em_index_select", "index_select bad dim: message");
    TH_CHECK(em_index_select(x, 0, sel_bad) == NULL, "index_select out of range");
    TH_CHECK_ERR(EM_ERR_INDEX, "em_index_select: index 3", "index_select out of range: message");
    TH_CHECK(em_index_select(x, 1, sel_neg) == NULL, "index_select negative index");
    TH_CHECK_ERR(EM_ERR_INDEX, "em_index_select", "index_select negative: message");
    TH_CHECK(em_index_select(em_scalar(2, EM_F32), 0, idx1) == NULL, "index_select 0-dim with 4 indices");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_index_select", "index_select 0-dim: message");

    em_tensor_t *src = ramp((int64_t[]){2, 4}, 2, EM_F32), *src64 = ramp((int64_t[]){2, 4}, 2, EM_F64);
    em_tensor_t *small = ramp((int64_t[]){2, 3}, 2, EM_F32);
    TH_CHECK(em_scatter_add(x, 0, ok, NULL) == NULL, "scatter_add NULL src");
    TH_CHECK_ERR(EM_ERR_ARG, "em_scatter_add", "scatter_add NULL src: message");
    TH_CHECK(em_scatter_add(x, 0, ok, src64) == NULL, "scatter_add src dtype differs");
    TH_CHECK_ERR(EM_ERR_DTYPE, "em_scatter_add", "scatter_add dtype: message");
    TH_CHECK(em_scatter_add(x, 0, ok, small) == NULL, "scatter_add src smaller than index");
    TH_CHECK_ERR(EM_ERR_SHAPE, "src", "scatter_add small src: message");
    TH_CHECK(em_scatter_add(x, 0, bad, src) == NULL, "scatter_add index out of range");
    TH_CHECK_ERR(EM_ERR_INDEX, "em_scatter_add", "scatter_add out of range: message");
    TH_CHECK(em_scatter_add(x, 5, ok, src) == NULL, "scatter_add bad dim");
    TH_CHECK_ERR(EM_ERR_ARG, "em_scatter_add", "scatter_add bad dim: message");
    TH_CHECK(em_scatter_add(x, 0, fidx, src) == NULL, "scatter_add float index");
    TH_CHECK_ERR(EM_ERR_DTYPE, "em_scatter_add", "scatter_add float index: message");
}

static void test_tri_pad_repeat_flip(void) {
    em_tensor_t *v = ramp((int64_t[]){4}, 1, EM_F32), *x = ramp((int64_t[]){2, 3}, 2, EM_F32);
    TH_CHECK(em_triu(v, 0) == NULL, "triu of 1-d");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_triu", "triu 1-d: message");
    TH_CHECK(em_tril(em_scalar(1, EM_F32), 0) == NULL, "tril of 0-dim");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_tril", "tril 0-dim: message");
    TH_CHECK(em_triu(NULL, 0) == NULL, "triu NULL");
    TH_CHECK_ERR(EM_ERR_ARG, "em_triu", "triu NULL: message");
    TH_CHECK(em_triu(x, INT64_MAX) != NULL && em_tril(x, INT64_MIN) != NULL, "triu/tril with extreme diagonals");

    TH_CHECK(em_pad(x, (int64_t[]){1, 2, 3}, 3, 0) == NULL, "pad odd count");
    TH_CHECK_ERR(EM_ERR_ARG, "pairs", "pad odd count: message");
    TH_CHECK(em_pad(x, (int64_t[]){1, 1, 1, 1, 1, 1}, 6, 0) == NULL, "pad more dims than the input");
    TH_CHECK_ERR(EM_ERR_ARG, "em_pad", "pad too many: message");
    TH_CHECK(em_pad(x, (int64_t[]){-2, -2}, 2, 0) == NULL, "pad crops more than the dim");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_pad", "pad crop: message");
    TH_CHECK(em_pad(x, NULL, 2, 0) == NULL, "pad NULL pads");
    TH_CHECK_ERR(EM_ERR_ARG, "em_pad", "pad NULL pads: message");
    TH_CHECK(em_pad(x, (int64_t[2 * 9]){0}, 18, 0) == NULL, "pad 18 values");
    TH_CHECK_ERR(EM_ERR_ARG, "em_pad", "pad 18 values: message");
    em_tensor_t *p = em_pad(x, (int64_t[]){-3, 1}, 2, 5);
    float pv[2] = {0};
    TH_CHECK(p && em_size(p, 1) == 1 && em_to_data(p, pv, sizeof pv) == EM_OK && pv[0] == 5 && pv[1] == 5,
             "pad cropping a dim to 0 then padding gives the pad value");

    TH_CHECK(em_repeat(x, (int64_t[]){2}, 1) == NULL, "repeat with fewer repeats than dims");
    TH_CHECK_ERR(EM_ERR_ARG, "em_repeat", "repeat too few: message");
    TH_CHECK(em_repeat(x, (int64_t[]){2, -1}, 2) == NULL, "repeat negative");
    TH_CHECK_ERR(EM_ERR_ARG, "negative", "repeat negative: message");
    TH_CHECK(em_repeat(x, NULL, 2) == NULL, "repeat NULL repeats");
    TH_CHECK_ERR(EM_ERR_ARG, "em_repeat", "repeat NULL: message");
    TH_CHECK(em_repeat(x, (int64_t[9]){1, 1, 1, 1, 1, 1, 1, 1, 1}, 9) == NULL, "repeat 9 dims");
    TH_CHECK_ERR(EM_ERR_ARG, "em_repeat", "repeat 9 dims: message");
    TH_CHECK(em_repeat(x, (int64_t[]){INT64_MAX / 2, 4}, 2) == NULL, "repeat overflowing");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_repeat", "repeat overflow: message");

    TH_CHECK(em_flip(x, (int[]){2}, 1) == NULL, "flip bad dim");
    TH_CHECK_ERR(EM_ERR_ARG, "em_flip", "flip bad dim: message");
    TH_CHECK(em_flip(x, (int[]){1, -1}, 2) == NULL, "flip duplicate dims");
    TH_CHECK_ERR(EM_ERR_ARG, "twice", "flip duplicate: message");
    TH_CHECK(em_flip(NULL, (int[]){0}, 1) == NULL, "flip NULL");
    TH_CHECK_ERR(EM_ERR_ARG, "em_flip", "flip NULL: message");
    TH_CHECK(em_flip(x, NULL, 1) == NULL, "flip NULL dims");
    TH_CHECK_ERR(EM_ERR_ARG, "em_flip", "flip NULL dims: message");
}

int main(void) {
    int64_t live0 = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    test_cat_stack();
    test_split();
    test_gather_family();
    test_tri_pad_repeat_flip();
    em_scope_end(s);
    TH_CHECK(em_live_tensors() == live0, "tensors leaked: %lld live, %lld at start", (long long)em_live_tensors(),
             (long long)live0);
    return th_summary();
}
