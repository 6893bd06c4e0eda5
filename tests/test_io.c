/* test_io.c - state dicts, safetensors and llama2.c checkpoints: round trips, byte-exact
 * output against Hugging Face's layout, atomic saves, and every validation error on small
 * hand-made corrupt files. Fixtures are written into a fresh mkdtemp directory and removed. */
#include "harness.h"

#include "io/io.h"

#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[64];
static char paths[64][128];
static int npaths;

static const char *tpath(const char *name) {
    EM_ASSERT(npaths < 64);
    snprintf(paths[npaths], sizeof paths[0], "%s/%s", tmpdir, name);
    return paths[npaths++];
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    EM_ASSERT(f && fwrite(p, 1, n, f) == n);
    fclose(f);
}

static char *read_bytes(const char *path, size_t *n) {
    char *buf;
    if (emio_read_file("test", path, 1 << 26, &buf, n)) return NULL;
    return buf;
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- state dicts -------------------------------------------------------------------------------- */
static void test_state_dict(void) {
    int64_t live0 = em_live_tensors();
    em_state_dict_t *sd = em_state_dict_new();
    em_tensor_t *a = em_ones((int64_t[]){2, 3}, 2, EM_F32), *b = em_zeros((int64_t[]){4}, 1, EM_I64);
    TH_CHECK(!em_state_dict_set(sd, "h.0.attn.c_attn.weight", a), "set a");
    TH_CHECK(!em_state_dict_set(sd, "wte.weight", b), "set b");
    em_release(a);
    em_release(b); /* the dict keeps its own references */
    TH_CHECK(em_state_dict_count(sd) == 2, "count 2");
    TH_CHECK(!strcmp(em_state_dict_name_at(sd, 0), "h.0.attn.c_attn.weight") && !strcmp(em_state_dict_name_at(sd, 1), "wte.weight"),
             "insertion order");
    TH_CHECK(em_state_dict_contains(sd, "wte.weight") && !em_state_dict_contains(sd, "wpe.weight"), "contains");
    em_scope_t *s = em_scope_begin();
    em_tensor_t *g = em_state_dict_get(sd, "h.0.attn.c_attn.weight");
    TH_CHECK(g && em_numel(g) == 6 && em_item(em_sum(g, NULL, 0, false)) == 6.0, "get returns the tensor");
    TH_CHECK(em_state_dict_get(sd, "nope") == NULL, "get of a missing name fails");
    TH_CHECK_ERR(EM_ERR_ARG, "no tensor named 'nope'", "missing-name message");
    TH_CHECK(strstr(em_last_error(), "wte.weight") != NULL, "the message lists the names: %s", em_last_error());
    em_tensor_t *at = em_state_dict_tensor_at(sd, 1);
    TH_CHECK(at && em_type(at) == EM_I64, "tensor_at");
    em_scope_end(s);
    /* replace keeps the position */
    em_tensor_t *c = em_full((int64_t[]){1}, 1, 7.0, EM_F64);
    TH_CHECK(!em_state_dict_set(sd, "h.0.attn.c_attn.weight", c), "replace");
    em_release(c);
    TH_CHECK(em_state_dict_count(sd) == 2 && !strcmp(em_state_dict_name_at(sd, 0), "h.0.attn.c_attn.weight"), "replace keeps the order");
    s = em_scope_begin();
    TH_CHECK(em_item(em_state_dict_get(sd, "h.0.attn.c_attn.weight")) == 7.0, "replaced value");
    em_scope_end(s);
    TH_CHECK(!em_state_dict_remove(sd, "h.0.attn.c_attn.weight") && em_state_dict_count(sd) == 1 &&
             !strcmp(em_state_dict_name_at(sd, 0), "wte.weight") && em_state_dict_contains(sd, "wte.weight"), "remove");
    TH_CHECK(em_state_dict_remove(sd, "h.0.attn.c_attn.weight") == EM_ERR_ARG, "remove of a missing name");
    /* metadata */
    TH_CHECK(!em_state_dict_set_meta(sd, "format", "pt") && !em_state_dict_set_meta(sd, "step", "10"), "set_meta");
    TH_CHECK(!em_state_dict_set_meta(sd, "step", "11") && !strcmp(em_state_dict_meta(sd, "step"), "11"), "meta replace");
    TH_CHECK(em_state_dict_meta_count(sd) == 2 && !strcmp(em_state_dict_meta_key_at(sd, 0), "format"), "meta order");
    TH_CHECK(em_state_dict_meta(sd, "absent") == NULL, "absent meta is NULL");
    /* argument errors */
    s = em_scope_begin();
    TH_CHECK(em_state_dict_set(sd, "", em_scalar(1, EM_F32)) == EM_ERR_ARG, "empty name");
    em_scope_end(s);
    TH_CHECK(em_state_dict_set(sd, NULL, NULL) == EM_ERR_ARG, "NULL name");
    TH_CHECK(em_state_dict_set(sd, "x", NULL) == EM_ERR_ARG, "NULL tensor");
    TH_CHECK(em_state_dict_name_at(sd, 5) == NULL && em_last_status() == EM_ERR_INDEX, "name_at out of range");
    TH_CHECK(em_state_dict_count(NULL) == -1, "count of NULL");
    em_state_dict_free(sd);
    em_state_dict_free(NULL);
    em_clear_error();
    TH_CHECK(em_live_tensors() == live0, "no tensors leak from state dicts (%lld live)", (long long)(em_live_tensors() - live0));
}

/* ---- safetensors ------------------------------------------------------------------------------- */
static em_state_dict_t *all_dtypes_dict(void) {
    em_state_dict_t *sd = em_state_dict_new();
    em_scope_t *s = em_scope_begin();
    for (int d = 0; d < EM_NUM_DTYPES; d++) {
        char name[32];
        snprintf(name, sizeof name, "t_%s", em_dtype_name((em_dtype)d));
        em_tensor_t *t = em_cast(em_arange(0, 6, 1, EM_F32), (em_dtype)d);
        em_state_dict_set(sd, name, em_reshape(t, (int64_t[]){2, 3}, 2));
    }
    em_state_dict_set(sd, "scalar", em_scalar(2.5, EM_F32));
    em_state_dict_set(sd, "empty", em_zeros((int64_t[]){0, 3}, 2, EM_F32));
    /* a non-contiguous view is written contiguous */
    em_state_dict_set(sd, "transposed", em_transpose(em_reshape(em_arange(0, 6, 1, EM_F64), (int64_t[]){2, 3}, 2), 0, 1));
    em_scope_end(s);
    em_state_dict_set_meta(sd, "format", "pt");
    em_state_dict_set_meta(sd, "note", "quote \" backslash \\ newline \n unicode \xc3\xa9");
    return sd;
}

static bool same_tensor(em_tensor_t *a, em_tensor_t *b) {
    if (!a || !b || em_type(a) != em_type(b) || em_ndim(a) != em_ndim(b)) return false;
    for (int d = 0; d < em_ndim(a); d++)
        if (em_size(a, d) != em_size(b, d)) return false;
    size_t n = (size_t)em_numel(a) * em_dtype_size(em_type(a));
    char *x = malloc(n + 1), *y = malloc(n + 1);
    bool ok = !em_to_data(a, x, n) && !em_to_data(b, y, n) && !memcmp(x, y, n);
    free(x);
    free(y);
    return ok;
}

static void test_safetensors_roundtrip(void) {
    int64_t live0 = em_live_tensors();
    const char *path = tpath("all.safetensors");
    em_state_dict_t *sd = all_dtypes_dict();
    TH_CHECK(!em_safetensors_save(path, sd), "save");
    em_state_dict_t *back = NULL;
    TH_CHECK(!em_safetensors_load(path, &back) && back, "load");
    if (!back) return;
    TH_CHECK(em_state_dict_count(back) == em_state_dict_count(sd), "same count");
    em_scope_t *s = em_scope_begin();
    for (int64_t i = 0; i < em_state_dict_count(sd); i++) {
        const char *name = em_state_dict_name_at(sd, i);
        TH_CHECK(same_tensor(em_state_dict_get(sd, name), em_state_dict_get(back, name)), "tensor '%s' round trips", name);
    }
    em_scope_end(s);
    TH_CHECK(em_state_dict_meta_count(back) == 2 && !strcmp(em_state_dict_meta(back, "note"), em_state_dict_meta(sd, "note")),
             "metadata round trips");
    /* HF's order: its Dtype enum descending (I64 F64 F32 I32 BF16 F16 U8 BOOL), then name */
    static const char *order[] = {"t_i64", "t_f64", "transposed", "empty", "scalar", "t_f32", "t_i32",
                                  "t_bf16", "t_f16", "t_u8", "t_bool"};
    bool in_order = em_state_dict_count(back) == EM_ARRAY_LEN(order);
    for (int i = 0; i < EM_ARRAY_LEN(order) && in_order; i++) in_order = !strcmp(em_state_dict_name_at(back, i), order[i]);
    TH_CHECK(in_order, "file order is safetensors' (dtype desc, name)");
    /* saving the loaded dict gives the same bytes */
    const char *path2 = tpath("again.safetensors");
    TH_CHECK(!em_safetensors_save(path2, back), "save again");
    size_t n1, n2;
    char *b1 = read_bytes(path, &n1), *b2 = read_bytes(path2, &n2);
    TH_CHECK(b1 && b2 && n1 == n2 && !memcmp(b1, b2, n1), "save(load(f)) == f byte for byte");
    uint64_t hn;
    memcpy(&hn, b1, 8);
    TH_CHECK(hn % 8 == 0 && b1[8 + hn - 1] != 0 && (b1[8 + hn - 1] == ' ' || b1[8 + hn - 1] == '}'), "header padded to 8 with spaces");
    free(b1);
    free(b2);
    /* the in-memory writer and reader agree with the file ones */
    emio_buf mem = {0};
    em_state_dict_t *m = NULL;
    TH_CHECK(!emio_safetensors_serialize(sd, &mem) && !emio_safetensors_load_mem(mem.p, mem.n, &m) &&
             em_state_dict_count(m) == em_state_dict_count(sd), "serialize / load_mem");
    free(mem.p);
    em_state_dict_free(m);
    em_state_dict_free(back);
    em_state_dict_free(sd);
    TH_CHECK(em_live_tensors() == live0, "no leaks (%lld)", (long long)(em_live_tensors() - live0));
}

static void test_safetensors_exact_bytes(void) {
    /* what huggingface/safetensors writes for {"a": tensor([1., 2.])} with metadata {"format": "pt"} */
    const char *path = tpath("exact.safetensors");
    em_state_dict_t *sd = em_state_dict_new();
    em_tensor_t *a = em_from_data((float[]){1, 2}, (int64_t[]){2}, 1, EM_F32);
    em_state_dict_set(sd, "a", a);
    em_release(a);
    em_state_dict_set_meta(sd, "format", "pt");
    TH_CHECK(!em_safetensors_save(path, sd), "save");
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    char want[256];
    size_t hl = strlen(hdr), padded = (hl + 7) / 8 * 8;
    uint64_t n64 = padded;
    memcpy(want, &n64, 8);
    memcpy(want + 8, hdr, hl);
    memset(want + 8 + hl, ' ', padded - hl);
    float v[2] = {1, 2};
    memcpy(want + 8 + padded, v, 8);
    size_t n;
    char *got = read_bytes(path, &n);
    TH_CHECK(got && n == 16 + padded && !memcmp(got, want, n), "byte-exact safetensors file (%zu bytes)", n);
    free(got);
    em_state_dict_free(sd);
}

/* the byte vectors of huggingface/safetensors' own tests (tensor.rs: test_serialization,
   test_empty, test_serialization_forced_alignement) */
static void check_hf_vector(const char *label, em_state_dict_t *sd, const unsigned char *want, size_t n) {
    emio_buf b = {0};
    TH_CHECK(!emio_safetensors_serialize(sd, &b) && b.n == n && !memcmp(b.p, want, n), "%s: HF's bytes (%zu vs %zu)", label, b.n, n);
    em_state_dict_t *back = NULL;
    TH_CHECK(!emio_safetensors_load_mem(want, n, &back), "%s: HF's bytes load", label);
    free(b.p);
    em_state_dict_free(back);
}

static void test_safetensors_hf_vectors(void) {
    float v[6] = {0, 1, 2, 3, 4, 5};
    em_state_dict_t *sd = em_state_dict_new();
    em_tensor_t *t = em_from_data(v, (int64_t[]){1, 2, 3}, 3, EM_F32);
    em_state_dict_set(sd, "attn.0", t);
    em_release(t);
    static const unsigned char serialization[] = {
        64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100, 116, 121, 112, 101, 34, 58, 34,
        70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95,
        111, 102, 102, 115, 101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0,
        64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64};
    check_hf_vector("test_serialization", sd, serialization, sizeof serialization);
    em_state_dict_free(sd);

    sd = em_state_dict_new();
    t = em_from_data(v, (int64_t[]){1, 1, 2, 3}, 4, EM_F32);
    em_state_dict_set(sd, "attn0", t);
    em_release(t);
    static const unsigned char aligned[] = {
        72, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 48, 34, 58, 123, 34, 100, 116, 121, 112, 101, 34, 58, 34, 70,
        51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58, 91, 49, 44, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97,
        95, 111, 102, 102, 115, 101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 32, 32, 32, 32, 32, 32, 32, 0, 0,
        0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64};
    check_hf_vector("test_serialization_forced_alignement", sd, aligned, sizeof aligned);
    em_state_dict_free(sd);

    sd = em_state_dict_new();
    static const unsigned char empty[] = {8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32};
    check_hf_vector("test_empty", sd, empty, sizeof empty);
    em_state_dict_set_meta(sd, "framework", "pt");
    static const unsigned char meta[] = {40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97, 116, 97, 95,
                                         95, 34, 58, 123, 34, 102, 114, 97, 109, 101, 119, 111, 114, 107, 34, 58, 34, 112,
                                         116, 34, 125, 125, 32, 32, 32, 32, 32};
    check_hf_vector("test_empty with metadata", sd, meta, sizeof meta);
    em_state_dict_free(sd);
}

static void test_safetensors_atomic(void) {
    const char *path = tpath("keep.safetensors");
    em_state_dict_t *sd = em_state_dict_new();
    em_tensor_t *a = em_ones((int64_t[]){3}, 1, EM_F32);
    em_state_dict_set(sd, "a", a);
    em_release(a);
    TH_CHECK(!em_safetensors_save(path, sd), "first save");
    size_t n0;
    char *before = read_bytes(path, &n0);
    /* a save that fails (bad name) leaves the old file as it was and no temp file */
    em_state_dict_t *bad = em_state_dict_new();
    a = em_ones((int64_t[]){5}, 1, EM_F32);
    em_state_dict_set(bad, "bad\xff", a);
    em_release(a);
    TH_CHECK(em_safetensors_save(path, bad) == EM_ERR_ARG, "non-UTF-8 name refused");
    size_t n1;
    char *after = read_bytes(path, &n1);
    TH_CHECK(after && n0 == n1 && !memcmp(before, after, n0), "old file untouched");
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    TH_CHECK(!exists(tmp), "no temp file left");
    /* rename onto a directory fails after the temp file was written: it is removed */
    const char *dir = tpath("adir");
    mkdir(dir, 0700);
    TH_CHECK(em_safetensors_save(dir, sd) == EM_ERR_IO, "save onto a directory fails");
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dir, (long)getpid());
    TH_CHECK(!exists(tmp), "temp file removed after a failed rename");
    rmdir(dir);
    TH_CHECK(em_safetensors_save(tpath("no/such/dir.safetensors"), sd) == EM_ERR_IO, "missing directory is EM_ERR_IO");
    em_state_dict_free(bad);
    free(before);
    free(after);
    em_state_dict_free(sd);
}

/* writes u64 len + header + data */
static void write_st(const char *path, const char *header, const void *data, size_t n) {
    size_t hl = strlen(header);
    char *buf = malloc(8 + hl + n + 1);
    uint64_t h = hl;
    memcpy(buf, &h, 8);
    memcpy(buf + 8, header, hl);
    if (n) memcpy(buf + 8 + hl, data, n);
    write_bytes(path, buf, 8 + hl + n);
    free(buf);
}

static void expect_st_error(const char *label, const char *header, size_t ndata, em_status want, const char *needle) {
    const char *path = tpath("bad.safetensors");
    npaths--; /* reuse the slot */
    char data[64] = {0};
    write_st(path, header, data, ndata);
    int64_t live0 = em_live_tensors();
    em_state_dict_t *sd = (em_state_dict_t *)1;
    em_status s = em_safetensors_load(path, &sd);
    if (want == EM_OK) {
        TH_CHECK(s == EM_OK && sd != NULL, "%s: loads: %s", label, em_last_error());
        em_state_dict_free(s == EM_OK ? sd : NULL);
    } else {
        TH_CHECK(s == want && sd == NULL && strstr(em_last_error(), needle), "%s: got %s '%s'", label, em_status_name(s), em_last_error());
    }
    TH_CHECK(em_live_tensors() == live0, "%s: nothing leaks", label);
    unlink(path);
}

static void test_safetensors_errors(void) {
    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    expect_st_error("valid control", ok, 8, EM_OK, "");
    em_clear_error();
    /* hand-made files */
    const char *path = tpath("raw.safetensors");
    em_state_dict_t *sd;
    write_bytes(path, "\x10\x00\x00", 3);
    TH_CHECK(em_safetensors_load(path, &sd) == EM_ERR_FORMAT && strstr(em_last_error(), "truncated"), "3-byte file: %s", em_last_error());
    uint64_t huge = (uint64_t)1 << 40;
    write_bytes(path, &huge, 8);
    TH_CHECK(em_safetensors_load(path, &sd) == EM_ERR_FORMAT && strstr(em_last_error(), "100 MB"), "huge header length: %s", em_last_error());
    char past[16] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    write_bytes(path, past, 10);
    TH_CHECK(em_safetensors_load(path, &sd) == EM_ERR_FORMAT && strstr(em_last_error(), "past the end"), "header past the end: %s", em_last_error());
    TH_CHECK(em_safetensors_load(tpath("missing.safetensors"), &sd) == EM_ERR_IO, "missing file is EM_ERR_IO");
    TH_CHECK(em_safetensors_load(tmpdir, &sd) == EM_ERR_IO, "a directory is EM_ERR_IO");
    TH_CHECK(em_safetensors_load(path, NULL) == EM_ERR_ARG, "NULL out");

    expect_st_error("empty header", "", 0, EM_ERR_FORMAT, "JSON error");
    expect_st_error("bad JSON", "{\"a\":", 0, EM_ERR_FORMAT, "JSON error");
    expect_st_error("trailing comma", "{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},}", 4, EM_ERR_FORMAT, "JSON error");
    expect_st_error("not an object", "[]", 0, EM_ERR_FORMAT, "JSON object");
    expect_st_error("bad UTF-8", "{\"a\xff\":{}}", 0, EM_ERR_FORMAT, "UTF-8");
    expect_st_error("deep nesting", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
                    0, EM_ERR_FORMAT, "nesting");
    expect_st_error("unknown dtype", "{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, EM_ERR_FORMAT, "unknown dtype");
    expect_st_error("unsupported dtype", "{\"a\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, EM_ERR_DTYPE, "I8");
    expect_st_error("dtype not a string", "{\"a\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, EM_ERR_FORMAT, "dtype must be");
    expect_st_error("negative shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, EM_ERR_FORMAT, "shape must be");
    expect_st_error("fractional shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8, EM_ERR_FORMAT, "shape must be");
    expect_st_error("rank 9", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1, EM_ERR_FORMAT, "at most 8");
    expect_st_error("huge shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, EM_ERR_FORMAT, "too large");
    expect_st_error("size mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, EM_ERR_FORMAT, "needs 8 bytes");
    expect_st_error("begin > end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8, EM_ERR_FORMAT, "begin <= end");
    expect_st_error("offsets out of range", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, EM_ERR_FORMAT, "past the data section");
    expect_st_error("one offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8]}}", 8, EM_ERR_FORMAT, "data_offsets must be");
    expect_st_error("huge offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[18446744073709551608,18446744073709551616]}}", 8,
                    EM_ERR_FORMAT, "data_offsets must be");
    expect_st_error("overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                    12, EM_ERR_FORMAT, "overlaps");
    expect_st_error("gap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                    12, EM_ERR_FORMAT, "belong to no tensor");
    expect_st_error("extra bytes", ok, 12, EM_ERR_FORMAT, "extra bytes");
    expect_st_error("truncated data", ok, 6, EM_ERR_FORMAT, "past the data section");
    expect_st_error("duplicate name", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                    8, EM_ERR_FORMAT, "appears twice");
    expect_st_error("empty name", "{\"\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, EM_ERR_FORMAT, "empty name");
    expect_st_error("NUL in name", "{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, EM_ERR_FORMAT, "NUL");
    expect_st_error("missing field", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 0, EM_ERR_FORMAT, "lacks its data_offsets");
    expect_st_error("unknown field", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8, EM_ERR_FORMAT, "unexpected or repeated field");
    expect_st_error("repeated field", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, EM_ERR_FORMAT, "repeated");
    expect_st_error("entry not an object", "{\"a\":[1,2]}", 0, EM_ERR_FORMAT, "expected an object");
    expect_st_error("metadata value", "{\"__metadata__\":{\"k\":1}}", 0, EM_ERR_FORMAT, "__metadata__ entry");
    expect_st_error("metadata not an object", "{\"__metadata__\":\"x\"}", 0, EM_ERR_FORMAT, "__metadata__ must be");
    expect_st_error("metadata twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, EM_ERR_FORMAT, "twice");
    expect_st_error("metadata key twice", "{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, EM_ERR_FORMAT, "appears twice");
    /* valid corner cases */
    expect_st_error("zero tensors", "{}", 0, EM_OK, "");
    expect_st_error("metadata only, padded", "{\"__metadata__\":{\"k\":\"v\"}}      ", 0, EM_OK, "");
    expect_st_error("zero-size tensors share an offset",
                    "{\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"b\":{\"dtype\":\"BOOL\",\"shape\":[4],\"data_offsets\":[4,8]}}", 8, EM_OK, "");
    em_clear_error();
    /* BOOL bytes other than 0/1 read as true */
    unsigned char bools[3] = {0, 7, 1};
    write_st(path, "{\"b\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[0,3]}}", bools, 3);
    TH_CHECK(!em_safetensors_load(path, &sd), "bool file");
    em_scope_t *s = em_scope_begin();
    uint8_t got[3];
    em_to_data(em_state_dict_get(sd, "b"), got, 3);
    TH_CHECK(got[0] == 0 && got[1] == 1 && got[2] == 1, "bool bytes normalised");
    em_scope_end(s);
    em_state_dict_free(sd);
}

/* ---- llama2.c ----------------------------------------------------------------------------------- */
typedef struct {
    int32_t h[7];
} l2_header;

/* writes a llama2.c checkpoint whose floats count up from 0 (float i at index i); returns its size */
static size_t write_l2(const char *path, l2_header hd, int64_t nfloats_delta) {
    int32_t dim = hd.h[0], hid = hd.h[1], L = hd.h[2], nh = hd.h[3], nkv = hd.h[4], V = abs(hd.h[5]), T = hd.h[6];
    int64_t hs = dim / nh, kv = nkv * hs;
    int64_t n = (int64_t)V * dim + L * dim + L * dim * dim + 2 * L * dim * kv + L * dim * dim + L * dim + 3 * L * dim * hid + dim + T * hs;
    if (hd.h[5] < 0) n += (int64_t)V * dim;
    n += nfloats_delta;
    size_t bytes = 28 + 4 * (size_t)n;
    char *buf = malloc(bytes);
    memcpy(buf, hd.h, 28);
    for (int64_t i = 0; i < n; i++) {
        float f = (float)i;
        memcpy(buf + 28 + 4 * i, &f, 4);
    }
    write_bytes(path, buf, bytes);
    free(buf);
    return bytes;
}

static float first_value(em_state_dict_t *sd, const char *name) {
    em_scope_t *s = em_scope_begin();
    em_tensor_t *t = em_state_dict_get(sd, name);
    float v = -1;
    if (t) {
        size_t n = (size_t)em_numel(t);
        float *buf = malloc(4 * n);
        if (!em_to_data(t, buf, 4 * n)) v = buf[0];
        free(buf);
    }
    em_scope_end(s);
    return v;
}

static void test_llama2c(void) {
    int64_t live0 = em_live_tensors();
    const char *path = tpath("model.bin");
    /* dim 8, hidden 12, 2 layers, 2 heads, 1 kv head (kv_dim 4), vocab 10, seq_len 4 */
    l2_header hd = {{8, 12, 2, 2, 1, 10, 4}};
    write_l2(path, hd, 0);
    em_llama2c_config c;
    em_state_dict_t *sd = NULL;
    TH_CHECK(!em_llama2c_load(path, &c, &sd) && sd, "load (shared classifier)");
    if (!sd) return;
    TH_CHECK(c.dim == 8 && c.hidden_dim == 12 && c.n_layers == 2 && c.n_heads == 2 && c.n_kv_heads == 1 && c.vocab_size == 10 &&
             c.seq_len == 4 && c.shared_classifier, "config");
    TH_CHECK(em_state_dict_count(sd) == 1 + 2 * 9 + 1, "20 tensors (no output.weight when shared): %lld", (long long)em_state_dict_count(sd));
    TH_CHECK(!strcmp(em_state_dict_name_at(sd, 0), "tok_embeddings.weight") &&
             !strcmp(em_state_dict_name_at(sd, 1), "layers.0.attention_norm.weight") &&
             !strcmp(em_state_dict_name_at(sd, 2), "layers.0.attention.wq.weight") &&
             !strcmp(em_state_dict_name_at(sd, 19), "norm.weight"), "names in model order");
    em_scope_t *s = em_scope_begin();
    em_tensor_t *wk = em_state_dict_get(sd, "layers.1.attention.wk.weight");
    TH_CHECK(wk && em_size(wk, 0) == 4 && em_size(wk, 1) == 8, "wk is (kv_dim, dim)");
    em_tensor_t *w2 = em_state_dict_get(sd, "layers.0.feed_forward.w2.weight");
    TH_CHECK(w2 && em_size(w2, 0) == 8 && em_size(w2, 1) == 12, "w2 is (dim, hidden)");
    em_scope_end(s);
    /* float index in the file: emb 80, rms_att 16, wq 128, wk 64, wv 64, wo 128, rms_ffn 16, w1 192, w2 192, w3 192, norm 8 */
    TH_CHECK(first_value(sd, "tok_embeddings.weight") == 0, "emb starts at 0");
    TH_CHECK(first_value(sd, "layers.1.attention_norm.weight") == 80 + 8, "layer 1 rms_att");
    TH_CHECK(first_value(sd, "layers.0.attention.wq.weight") == 96, "wq");
    TH_CHECK(first_value(sd, "layers.1.attention.wk.weight") == 96 + 128 + 32, "layer 1 wk");
    TH_CHECK(first_value(sd, "layers.0.attention.wv.weight") == 96 + 128 + 64, "wv");
    TH_CHECK(first_value(sd, "layers.1.attention.wo.weight") == 96 + 128 + 128 + 64, "layer 1 wo");
    TH_CHECK(first_value(sd, "layers.1.ffn_norm.weight") == 480 + 8, "layer 1 rms_ffn");
    TH_CHECK(first_value(sd, "layers.1.feed_forward.w3.weight") == 496 + 192 + 192 + 96, "layer 1 w3");
    TH_CHECK(first_value(sd, "norm.weight") == 496 + 3 * 192, "norm");
    em_state_dict_free(sd);

    /* separate classifier: after the skipped RoPE tables (4 * 2 * 2 floats) */
    hd.h[5] = -10;
    write_l2(path, hd, 0);
    TH_CHECK(!em_llama2c_load(path, &c, &sd) && sd && !c.shared_classifier && c.vocab_size == 10, "load (separate classifier)");
    TH_CHECK(em_state_dict_count(sd) == 21 && first_value(sd, "output.weight") == 496 + 3 * 192 + 8 + 16, "output.weight after RoPE tables");
    em_state_dict_free(sd);

    /* every header check */
    struct {
        const char *label;
        l2_header h;
        int64_t delta;
        const char *needle;
    } bad[] = {
        {"zero dim", {{0, 12, 2, 2, 1, 10, 4}}, 0, "dim = 0"},
        {"negative layers", {{8, 12, -2, 2, 1, 10, 4}}, 0, "n_layers = -2"},
        {"zero vocab", {{8, 12, 2, 2, 1, 0, 4}}, 0, "vocab_size = 0"},
        {"huge seq_len", {{8, 12, 2, 2, 1, 10, 1 << 30}}, 0, "seq_len"},
        {"dim % n_heads", {{8, 12, 2, 3, 1, 10, 4}}, 0, "not divisible"},
        {"n_heads % n_kv_heads", {{8, 12, 2, 4, 3, 10, 4}}, 0, "not a multiple"},
        {"more kv heads", {{8, 12, 2, 2, 4, 10, 4}}, 0, "not a multiple"},
        {"odd head size", {{6, 12, 2, 2, 1, 10, 4}}, 0, "odd"},
        {"one float short", {{8, 12, 2, 2, 1, 10, 4}}, -1, "truncated"},
        {"one float extra", {{8, 12, 2, 2, 1, 10, 4}}, 1, "trailing"},
        {"classifier but positive vocab", {{8, 12, 2, 2, 1, 10, 4}}, 80, "sign of vocab_size"},
        {"no classifier but negative vocab", {{8, 12, 2, 2, 1, -10, 4}}, -80, "sign of vocab_size"},
    };
    for (int i = 0; i < EM_ARRAY_LEN(bad); i++) {
        /* a valid body (separate classifier when the case's vocab is negative), then the header under test */
        l2_header body = {{8, 12, 2, 2, 1, bad[i].h.h[5] < 0 ? -10 : 10, 4}};
        write_l2(path, body, bad[i].delta);
        FILE *f = fopen(path, "r+b");
        fwrite(bad[i].h.h, 4, 7, f);
        fclose(f);
        sd = (em_state_dict_t *)1;
        em_status st = em_llama2c_load(path, &c, &sd);
        TH_CHECK(st == EM_ERR_FORMAT && sd == NULL && strstr(em_last_error(), bad[i].needle), "%s: %s", bad[i].label, em_last_error());
    }
    write_bytes(path, "\x08\x00\x00\x00", 4);
    TH_CHECK(em_llama2c_load(path, &c, &sd) == EM_ERR_FORMAT && strstr(em_last_error(), "truncated"), "4-byte file: %s", em_last_error());
    TH_CHECK(em_llama2c_load(tpath("none.bin"), &c, &sd) == EM_ERR_IO, "missing file");
    TH_CHECK(em_llama2c_load(path, NULL, &sd) == EM_ERR_ARG, "NULL cfg");
    TH_CHECK(em_live_tensors() == live0, "no leaks (%lld)", (long long)(em_live_tensors() - live0));
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ember_test_io_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_state_dict();
    test_safetensors_roundtrip();
    test_safetensors_exact_bytes();
    test_safetensors_hf_vectors();
    test_safetensors_atomic();
    test_safetensors_errors();
    test_llama2c();
    for (int i = 0; i < npaths; i++) unlink(paths[i]);
    rmdir(tmpdir);
    return th_summary();
}
