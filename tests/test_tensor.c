/* test_tensor.c - the tensor layer: dtype conversions and promotion, views and their storage
 * sharing, the Philox generator (known-answer vectors and reproducibility), scopes and leaks,
 * PyTorch-style printing, and the error paths of the core API. */
#include "harness.h"

#include "tensor/tensor.h"

#include <omp.h>

static void test_philox_kat(void) {
    /* Random123's known-answer vectors for philox4x32_10 */
    static const uint32_t ctr[3][4] = {{0, 0, 0, 0}, {~0u, ~0u, ~0u, ~0u}, {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}};
    static const uint32_t key[3][2] = {{0, 0}, {~0u, ~0u}, {0xa4093822, 0x299f31d0}};
    static const uint32_t want[3][4] = {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
                                        {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
                                        {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}};
    for (int k = 0; k < 3; k++) {
        uint32_t out[4];
        emt_philox4x32(ctr[k], key[k], out);
        TH_CHECK(!memcmp(out, want[k], sizeof out), "philox KAT %d: %08x %08x %08x %08x", k, out[0], out[1], out[2], out[3]);
    }
}

static void test_rng_reproducible(void) {
    em_scope_t *s = em_scope_begin();
    int64_t n = 20000;
    float *a = malloc(sizeof(float) * (size_t)n), *b = malloc(sizeof(float) * (size_t)n);
    em_manual_seed(42);
    em_to_data(em_randn(&n, 1, EM_F32), a, sizeof(float) * (size_t)n);
    em_manual_seed(42);
    em_set_num_threads(1);
    em_to_data(em_randn(&n, 1, EM_F32), b, sizeof(float) * (size_t)n);
    em_set_num_threads(0);
    TH_CHECK(!memcmp(a, b, sizeof(float) * (size_t)n), "randn is identical for one seed at any thread count");
    double mean = 0, var = 0;
    for (int64_t i = 0; i < n; i++) mean += a[i];
    mean /= (double)n;
    for (int64_t i = 0; i < n; i++) var += (a[i] - mean) * (a[i] - mean);
    var /= (double)n;
    TH_CHECK(fabs(mean) < 0.03 && fabs(var - 1) < 0.05, "randn moments: mean %g var %g", mean, var);
    /* offsets continue: two draws of 10 equal one draw of 20 */
    int64_t ten = 10, twenty = 20;
    float x[20], y[20];
    em_manual_seed(7);
    em_to_data(em_rand(&ten, 1, EM_F32), x, sizeof(float) * 10);
    em_to_data(em_rand(&ten, 1, EM_F32), x + 10, sizeof(float) * 10);
    TH_CHECK(em_rng_offset() == 20, "offset advanced by numel: %llu", (unsigned long long)em_rng_offset());
    em_manual_seed(7);
    em_to_data(em_rand(&twenty, 1, EM_F32), y, sizeof y);
    TH_CHECK(!memcmp(x, y, sizeof x), "rand(10), rand(10) == rand(20)");
    int inrange = 1;
    for (int i = 0; i < 20; i++) inrange &= x[i] >= 0 && x[i] < 1;
    TH_CHECK(inrange, "rand in [0, 1)");
    em_manual_seed(8);
    em_to_data(em_rand(&twenty, 1, EM_F32), y, sizeof y);
    TH_CHECK(memcmp(x, y, sizeof x) != 0, "another seed gives other numbers");
    em_rng_set_state(7, 10);
    em_to_data(em_rand(&ten, 1, EM_F32), y, sizeof(float) * 10);
    TH_CHECK(!memcmp(x + 10, y, sizeof(float) * 10), "em_rng_set_state resumes the stream");
    int64_t ri[1000];
    em_to_data(em_randint(-2, 3, (int64_t[]){1000}, 1, EM_I64), ri, sizeof ri);
    int ok = 1, seen[5] = {0};
    for (int i = 0; i < 1000; i++) {
        ok &= ri[i] >= -2 && ri[i] < 3;
        if (ri[i] >= -2 && ri[i] < 3) seen[ri[i] + 2] = 1;
    }
    TH_CHECK(ok && seen[0] && seen[4], "randint covers [low, high)");
    free(a);
    free(b);
    em_scope_end(s);
}

static void test_dtype_conversions(void) {
    /* f16: exact for representable values, round to nearest even, overflow to inf, subnormals */
    TH_CHECK(emt_f16_to_f32(emt_f32_to_f16(1.5f)) == 1.5f, "f16 1.5");
    TH_CHECK(emt_f32_to_f16(65504.f) == 0x7bff && emt_f32_to_f16(1e6f) == 0x7c00, "f16 max and overflow");
    TH_CHECK(emt_f32_to_f16(1.0f + 1.0f / 2048) == 0x3c00, "f16 ties to even (down)");
    TH_CHECK(emt_f32_to_f16(1.0f + 3.0f / 2048) == 0x3c02, "f16 ties to even (up)");
    TH_CHECK(emt_f16_to_f32(0x0001) == 5.9604644775390625e-08f, "f16 smallest subnormal");
    TH_CHECK(emt_f32_to_f16(5.9604644775390625e-08f) == 0x0001, "f32 -> f16 subnormal");
    TH_CHECK(isnan(emt_f16_to_f32(emt_f32_to_f16(NAN))), "f16 NaN");
    TH_CHECK(emt_f32_to_f16(-0.0f) == 0x8000, "f16 -0");
    /* bf16 */
    TH_CHECK(emt_bf16_to_f32(emt_f32_to_bf16(3.0f)) == 3.0f, "bf16 3");
    TH_CHECK(emt_f32_to_bf16(1.0f + 1.0f / 256) == 0x3f80 && emt_f32_to_bf16(1.0f + 3.0f / 256) == 0x3f82, "bf16 ties to even");
    TH_CHECK(isnan(emt_bf16_to_f32(emt_f32_to_bf16(NAN))), "bf16 NaN stays NaN");
    /* every f16 value survives f16 -> f32 -> f16 */
    int ok = 1;
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue; /* NaNs */
        ok &= emt_f32_to_f16(emt_f16_to_f32((uint16_t)h)) == h;
    }
    TH_CHECK(ok, "all f16 values round-trip through f32");
    /* float -> int saturates instead of UB */
    char buf[8];
    emt_store(buf, EM_I32, 1e20);
    TH_CHECK(emt_load_i64(buf, EM_I32) == 2147483647, "f -> i32 saturates");
    emt_store(buf, EM_I64, NAN);
    TH_CHECK(emt_load_i64(buf, EM_I64) == 0, "NaN -> i64 is 0");
}

static void test_promotion(void) {
    TH_CHECK(em_promote_types(EM_F32, EM_F64) == EM_F64, "f32+f64");
    TH_CHECK(em_promote_types(EM_I32, EM_F16) == EM_F16, "i32+f16");
    TH_CHECK(em_promote_types(EM_F16, EM_BF16) == EM_F32, "f16+bf16 -> f32");
    TH_CHECK(em_promote_types(EM_U8, EM_I32) == EM_I32, "u8+i32");
    TH_CHECK(em_promote_types(EM_BOOL, EM_U8) == EM_U8, "bool+u8");
    TH_CHECK(em_promote_types(EM_I64, EM_BOOL) == EM_I64, "i64+bool");
    em_dtype d1[2] = {EM_F32, EM_F64};
    int n1[2] = {2, 0};
    TH_CHECK(emt_result_type(d1, n1, 2) == EM_F32, "f32 tensor + f64 0-dim -> f32");
    em_dtype d2[2] = {EM_I64, EM_F64};
    TH_CHECK(emt_result_type(d2, n1, 2) == EM_F64, "i64 tensor + f64 0-dim -> f64 (higher category)");
    em_dtype d3[2] = {EM_I32, EM_I64};
    TH_CHECK(emt_result_type(d3, n1, 2) == EM_I32, "i32 tensor + i64 0-dim -> i32");
    int n0[2] = {0, 0};
    TH_CHECK(emt_result_type(d3, n0, 2) == EM_I64, "two 0-dim tensors promote normally");
}

static void test_views(void) {
    em_scope_t *s = em_scope_begin();
    float v[24];
    for (int i = 0; i < 24; i++) v[i] = (float)i;
    em_tensor_t *x = em_from_data(v, (int64_t[]){2, 3, 4}, 3, EM_F32);
    em_tensor_t *r = em_reshape(x, (int64_t[]){6, -1}, 2);
    TH_CHECK(r && em_size(r, 1) == 4 && em_shares_storage(r, x), "reshape of a contiguous tensor is a view");
    em_tensor_t *t = em_transpose(x, 0, 2);
    TH_CHECK(t && em_size(t, 0) == 4 && em_stride(t, 0) == 1 && em_stride(t, 2) == 12 && !em_is_contiguous(t),
             "transpose swaps sizes and strides");
    em_tensor_t *tr = em_reshape(t, (int64_t[]){24}, 1);
    TH_CHECK(tr && !em_shares_storage(tr, x) && em_is_contiguous(tr), "reshape of a transposed tensor copies");
    float w[24];
    em_to_data(tr, w, sizeof w);
    TH_CHECK(w[1] == 12.0f && w[2] == 4.0f && w[3] == 16.0f, "the copy is in the view's order");
    TH_CHECK(em_view(t, (int64_t[]){24}, 1) == NULL && em_last_status() == EM_ERR_SHAPE, "em_view refuses to copy");
    em_tensor_t *sl = em_slice(x, 2, 1, 4, 2);
    TH_CHECK(sl && em_size(sl, 2) == 2 && em_stride(sl, 2) == 2 && em_shares_storage(sl, x), "slice with step is a view");
    TH_CHECK(em_item(em_select(em_select(em_select(sl, 0, 1), 0, 2), 0, 1)) == 12 + 8 + 3, "select into a slice");
    em_tensor_t *e = em_expand(em_reshape(x, (int64_t[]){2, 1, 12}, 3), (int64_t[]){2, 5, 12}, 3);
    TH_CHECK(e && em_stride(e, 1) == 0 && em_shares_storage(e, x), "expand gives stride 0");
    em_tensor_t *u = em_unsqueeze(x, -1);
    TH_CHECK(u && em_ndim(u) == 4 && em_size(u, 3) == 1, "unsqueeze(-1)");
    TH_CHECK(em_ndim(em_squeeze(u, 3)) == 3 && em_ndim(em_squeeze(x, 0)) == 3, "squeeze removes only size-1 dims");
    TH_CHECK(em_size(em_flatten(x, 1, 2), 1) == 12, "flatten");
    em_tensor_t *c = em_contiguous(x);
    TH_CHECK(c == x, "contiguous of a contiguous tensor is the same handle");
    em_tensor_t *ct = em_contiguous(t);
    TH_CHECK(ct && ct != t && em_is_contiguous(ct), "contiguous copies a transposed tensor");
    /* writes through a view reach the base */
    TH_CHECK(em_assign(em_select(x, 0, 1), em_scalar(-1, EM_F32)) == EM_OK, "assign into a view");
    TH_CHECK(em_item(em_select(em_select(em_select(x, 0, 1), 0, 2), 0, 3)) == -1.0, "the base sees the write");
    TH_CHECK(em_item(em_select(em_select(em_select(x, 0, 0), 0, 2), 0, 3)) == 11.0, "other rows untouched");
    /* overlapping assign reads before it writes */
    em_tensor_t *row = em_from_data(v, (int64_t[]){2, 2}, 2, EM_F32);
    TH_CHECK(em_assign(row, em_transpose(row, 0, 1)) == EM_OK, "assign a transposed view of itself");
    float rv[4];
    em_to_data(row, rv, sizeof rv);
    TH_CHECK(rv[0] == 0 && rv[1] == 2 && rv[2] == 1 && rv[3] == 3, "overlapping assign transposes correctly");
    TH_CHECK(em_fill(row, 2.5) == EM_OK && em_item(em_select(em_select(row, 0, 1), 0, 1)) == 2.5, "em_fill");
    em_scope_end(s);
}

static void test_scopes(void) {
    int64_t live = em_live_tensors(), bytes = em_live_bytes();
    em_scope_t *outer = em_scope_begin();
    em_tensor_t *kept = NULL;
    em_scope_t *inner = em_scope_begin();
    em_tensor_t *a = em_ones((int64_t[]){100}, 1, EM_F32);
    em_zeros((int64_t[]){100}, 1, EM_F32);
    kept = em_keep(a);
    em_scope_end(inner);
    TH_CHECK(em_numel(kept) == 100, "a kept handle survives its scope");
    TH_CHECK(em_live_tensors() == live + 1, "the other handle was freed (%lld live)", (long long)(em_live_tensors() - live));
    em_scope_end(outer);
    TH_CHECK(em_live_tensors() == live && em_live_bytes() == bytes, "ending the outer scope frees the kept handle");
    /* no scope: the caller owns */
    em_tensor_t *own = em_ones((int64_t[]){3}, 1, EM_F32);
    em_retain(own);
    em_release(own);
    TH_CHECK(em_numel(own) == 3, "retain keeps a handle through one release");
    em_release(own);
    TH_CHECK(em_live_tensors() == live, "released handles are freed");
    /* keep out of the outermost scope hands ownership to the caller */
    em_scope_t *s = em_scope_begin();
    em_tensor_t *k = em_keep(em_ones((int64_t[]){2}, 1, EM_F32));
    em_scope_end(s);
    TH_CHECK(em_live_tensors() == live + 1, "em_keep from the outermost scope gives the handle to the caller");
    em_release(k);
    /* ending an outer scope closes the inner one too; ending twice is an error */
    em_scope_t *o = em_scope_begin();
    em_scope_begin();
    em_ones((int64_t[]){2}, 1, EM_F32);
    em_scope_end(o);
    TH_CHECK(em_live_tensors() == live, "ending an outer scope ends the open inner one");
    em_clear_error();
    em_scope_end(o);
    TH_CHECK_ERR(EM_ERR_STATE, "em_scope_end", "ending a scope twice is an error");
}

static void check_str(em_tensor_t *t, const char *want) {
    char *got = em_to_string(t);
    TH_CHECK(got && !strcmp(got, want), "print: got\n%s\nwant\n%s", got ? got : "(null)", want);
    free(got);
}

static void test_print(void) {
    em_scope_t *s = em_scope_begin();
    check_str(em_from_data((float[]){1, 2, 3}, (int64_t[]){3}, 1, EM_F32), "tensor([1., 2., 3.])");
    check_str(em_from_data((float[]){1.5f, -2, 3.25f, 4}, (int64_t[]){2, 2}, 2, EM_F32),
              "tensor([[ 1.5000, -2.0000],\n        [ 3.2500,  4.0000]])");
    check_str(em_scalar(3.5, EM_F32), "tensor(3.5000)");
    check_str(em_from_data((int64_t[]){1, -20, 3}, (int64_t[]){3}, 1, EM_I64), "tensor([  1, -20,   3])");
    check_str(em_from_data((uint8_t[]){1, 0}, (int64_t[]){2}, 1, EM_BOOL), "tensor([ True, False])");
    check_str(em_zeros((int64_t[]){0, 3}, 2, EM_F32), "tensor([], size=(0, 3))");
    check_str(em_zeros((int64_t[]){0}, 1, EM_F32), "tensor([])");
    check_str(em_from_data((double[]){1, 2}, (int64_t[]){2}, 1, EM_F64), "tensor([1., 2.], dtype=f64)");
    check_str(em_from_data((float[]){1e-5f, 1.0f}, (int64_t[]){2}, 1, EM_F32), "tensor([1.0000e-05, 1.0000e+00])");
    check_str(em_from_data((float[]){NAN, INFINITY, 1.5f}, (int64_t[]){3}, 1, EM_F32), "tensor([   nan,    inf, 1.5000])");
    check_str(em_arange(0, 2000, 1, EM_F32), "tensor([   0.,    1.,    2.,  ..., 1997., 1998., 1999.])");
    check_str(em_from_data((float[]){1, 2, 3, 4, 5, 6, 7, 8}, (int64_t[]){2, 2, 2}, 3, EM_F32),
              "tensor([[[1., 2.],\n         [3., 4.]],\n\n        [[5., 6.],\n         [7., 8.]]])");
    em_tensor_t *g = em_ones((int64_t[]){2}, 1, EM_F32);
    em_set_requires_grad(g, true);
    check_str(g, "tensor([1., 1.], requires_grad=True)");
    em_scope_end(s);
}

static void test_errors(void) {
    em_scope_t *s = em_scope_begin();
    em_tensor_t *x = em_ones((int64_t[]){2, 3}, 2, EM_F32);
    em_clear_error();
    TH_CHECK(isnan(em_item(x)), "em_item of 6 elements is NaN");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_item", "em_item names itself");
    float buf[6];
    TH_CHECK(em_to_data(x, buf, 5) == EM_ERR_ARG && strstr(em_last_error(), "24 bytes"), "em_to_data size mismatch");
    TH_CHECK(em_size(x, 2) == -1, "em_size bad dim");
    TH_CHECK_ERR(EM_ERR_ARG, "dim 2 is out of range", "em_size names the range");
    TH_CHECK(em_ndim(NULL) == -1 && em_last_status() == EM_ERR_ARG, "em_ndim(NULL)");
    TH_CHECK(em_reshape(x, (int64_t[]){4, 2}, 2) == NULL, "reshape to the wrong numel");
    TH_CHECK_ERR(EM_ERR_SHAPE, "em_reshape", "reshape error names the op");
    TH_CHECK(em_reshape(x, (int64_t[]){-1, -1}, 2) == NULL && em_last_status() == EM_ERR_ARG, "two -1 in reshape");
    TH_CHECK(em_reshape(x, (int64_t[]){-1, 4}, 2) == NULL && em_last_status() == EM_ERR_SHAPE, "-1 that does not divide");
    TH_CHECK(em_permute(x, (int[]){0, 0}, 2) == NULL, "permute with a repeated dim");
    TH_CHECK_ERR(EM_ERR_ARG, "em_permute", "permute error names the op");
    TH_CHECK(em_permute(x, (int[]){0}, 1) == NULL && em_last_status() == EM_ERR_ARG, "permute with too few dims");
    TH_CHECK(em_slice(x, 1, 0, 2, 0) == NULL, "slice with step 0");
    TH_CHECK_ERR(EM_ERR_ARG, "step must be positive", "slice step message");
    TH_CHECK(em_select(x, 0, 2) == NULL && em_last_status() == EM_ERR_INDEX, "select out of range");
    TH_CHECK(em_expand(x, (int64_t[]){4, 3}, 2) == NULL, "expand a size-2 dim to 4");
    TH_CHECK_ERR(EM_ERR_SHAPE, "only size-1 dims can grow", "expand message");
    TH_CHECK(em_full((int64_t[]){-1}, 1, 0, EM_F32) == NULL && em_last_status() == EM_ERR_ARG, "negative size");
    TH_CHECK(em_zeros(NULL, 9, EM_F32) == NULL && em_last_status() == EM_ERR_ARG, "too many dims");
    TH_CHECK(em_ones((int64_t[]){2}, 1, (em_dtype)42) == NULL && em_last_status() == EM_ERR_DTYPE, "unknown dtype");
    TH_CHECK(em_arange(0, 5, 0, EM_F32) == NULL && em_last_status() == EM_ERR_ARG, "arange step 0");
    TH_CHECK(em_arange(0, 5, -1, EM_F32) == NULL && em_last_status() == EM_ERR_ARG, "arange wrong direction");
    TH_CHECK(em_from_data(NULL, (int64_t[]){2}, 1, EM_F32) == NULL && em_last_status() == EM_ERR_ARG, "from_data NULL");
    TH_CHECK(em_zeros((int64_t[]){1 << 30, 1 << 30, 1 << 30}, 3, EM_F32) == NULL, "absurd sizes fail cleanly");
    TH_CHECK(em_randn((int64_t[]){2}, 1, EM_I32) == NULL && em_last_status() == EM_ERR_DTYPE, "randn of ints");
    TH_CHECK(em_randint(3, 3, (int64_t[]){2}, 1, EM_I64) == NULL && em_last_status() == EM_ERR_ARG, "randint empty range");
    TH_CHECK(em_assign(x, em_ones((int64_t[]){4}, 1, EM_F32)) == EM_ERR_SHAPE, "assign of a non-broadcasting shape");
    TH_CHECK(em_assign(em_expand(em_ones((int64_t[]){1}, 1, EM_F32), (int64_t[]){3}, 1), em_ones((int64_t[]){3}, 1, EM_F32)) == EM_ERR_ARG,
             "assign into an expanded view");
    TH_CHECK(em_cast(x, (em_dtype)-3) == NULL && em_last_status() == EM_ERR_DTYPE, "cast to an unknown dtype");
    TH_CHECK(em_transpose(x, 0, 5) == NULL && em_last_status() == EM_ERR_ARG, "transpose bad dim");
    TH_CHECK(em_unsqueeze(x, 4) == NULL && em_last_status() == EM_ERR_ARG, "unsqueeze bad dim");
    TH_CHECK(em_flatten(x, 1, 0) == NULL && em_last_status() == EM_ERR_ARG, "flatten end before start");
    /* a NULL from a failed call propagates softly and says so */
    em_tensor_t *bad = em_reshape(x, (int64_t[]){7}, 1);
    TH_CHECK(em_reshape(bad, (int64_t[]){7}, 1) == NULL, "NULL input");
    TH_CHECK_ERR(EM_ERR_ARG, "an earlier call failed", "the NULL message mentions the earlier failure");
    em_scope_end(s);
}

/* em_randn(EM_F32) takes random.c's vectorized path; its floats must be today's (libm's
   emt_normal_at, rounded) bit for bit, at any thread count */
static void test_randn_fast_path(void) {
    em_scope_t *s = em_scope_begin();
    int64_t n = 2000000;
    float *a = malloc(sizeof(float) * (size_t)n), *b = malloc(sizeof(float) * (size_t)n);
    em_set_num_threads(1);
    em_manual_seed(42);
    em_status s1 = em_to_data(em_randn(&n, 1, EM_F32), a, sizeof(float) * (size_t)n);
    em_set_num_threads(2);
    em_manual_seed(42);
    em_status s2 = em_to_data(em_randn(&n, 1, EM_F32), b, sizeof(float) * (size_t)n);
    em_set_num_threads(0);
    TH_CHECK(s1 == EM_OK && s2 == EM_OK && !memcmp(a, b, sizeof(float) * (size_t)n),
             "randn(2M, f32) is bitwise the same at 1 and 2 threads");
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += a[i] != (float)emt_normal_at(42, (uint64_t)i);
    TH_CHECK(bad == 0, "randn(2M, f32) == (float)emt_normal_at (libm Box-Muller) everywhere (%lld differ)", (long long)bad);
    /* known values (computed with libm before the fast path existed) */
    static const int64_t at[5] = {0, 1, 777, 123456, 1999999};
    static const uint32_t want[5] = {0xbf785e5c, 0xbd95e030, 0xbf22b76c, 0x3fb6f1f8, 0xbef9e15f};
    for (int k = 0; k < 5; k++) {
        uint32_t got;
        memcpy(&got, &a[at[k]], 4);
        TH_CHECK(got == want[k], "randn seed 42 element %lld: %08x (want %08x)", (long long)at[k], got, want[k]);
    }
    int64_t slow = emt_normal_fill_f32(42, 0, n, b);
    TH_CHECK(!memcmp(a, b, sizeof(float) * (size_t)n) && slow > 0 && slow < n / 1000,
             "emt_normal_fill_f32: same floats, libm on %lld of %lld elements only", (long long)slow, (long long)n);
    free(a);
    free(b);
    em_scope_end(s);
}

/* em_set_num_threads reaches OpenMP's own default (regions without a num_threads clause, and
   emk_sgemm with parallel == 1 asks omp_get_max_threads()), not only Ember's num_threads clauses */
static int threads_in_plain_region(void) {
    int n = 0;
#pragma omp parallel
    {
#pragma omp single
        n = omp_get_num_threads();
    }
    return n;
}

static void test_num_threads(void) {
    em_scope_t *s = em_scope_begin();
    em_set_num_threads(1);
    TH_CHECK(em_get_num_threads() == 1 && omp_get_max_threads() == 1 && threads_in_plain_region() == 1,
             "em_set_num_threads(1): Ember %d, omp_get_max_threads %d, a plain omp region %d threads",
             em_get_num_threads(), omp_get_max_threads(), threads_in_plain_region());
    em_manual_seed(3);
    em_tensor_t *a = em_randn((int64_t[]){96, 200}, 2, EM_F32), *b = em_randn((int64_t[]){200, 300}, 2, EM_F32);
    em_tensor_t *c1 = em_matmul(a, b);
    em_set_num_threads(2);
    TH_CHECK(em_get_num_threads() == 2 && omp_get_max_threads() == 2 && threads_in_plain_region() == 2,
             "em_set_num_threads(2): Ember %d, omp_get_max_threads %d, a plain omp region %d threads",
             em_get_num_threads(), omp_get_max_threads(), threads_in_plain_region());
    em_tensor_t *c2 = em_matmul(a, b);
    TH_CHECK(c1 && c2 && em_item(em_amax(em_abs(em_sub(c1, c2)), NULL, 0, false)) == 0,
             "a matmul is bitwise the same at 1 and 2 threads");
    em_set_num_threads(0);
    TH_CHECK(em_get_num_threads() >= 1 && omp_get_max_threads() == em_get_num_threads(),
             "em_set_num_threads(0): back to the default (%d), OpenMP follows (%d)", em_get_num_threads(),
             omp_get_max_threads());
    em_scope_end(s);
}

int main(void) {
    int64_t live = em_live_tensors();
    test_num_threads();
    test_randn_fast_path();
    test_philox_kat();
    test_rng_reproducible();
    test_dtype_conversions();
    test_promotion();
    test_views();
    test_scopes();
    test_print();
    test_errors();
    TH_CHECK(em_live_tensors() == live, "no tensor leaked (%lld live)", (long long)(em_live_tensors() - live));
    return th_summary();
}
