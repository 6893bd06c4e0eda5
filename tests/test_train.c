/* test_train.c - model files, training checkpoints, the data loader and `ember train`.
 *
 * Model files: save and load round-trip every parameter bit for bit (GPT-2 and Llama, f32 and
 * f64) and the logits equal; hostile files (truncated, wrong shapes or dtypes, missing or extra
 * tensors, bad or missing metadata, a header claiming a huge model) are refused with an error
 * that names the problem. Writes are atomic: a save that fails part way (a file-size limit, a
 * target that is a directory) leaves the old file as it was and no temporary file behind.
 * Data: fortune directories are read with the separators replaced by end-of-text markers; the
 * split and the batches are deterministic functions of (seed, index). Checkpoints: N steps
 * straight equal N/2 steps, a save, a resume into a fresh model, optimizer and compiled step,
 * and N/2 more, bit for bit, eager and compiled (with gradient accumulation). `ember train` runs
 * as a subprocess on a tiny text: a progress line per step, a checkpoint, and --resume continues.
 */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK_LIVE(before, what) \
    TH_CHECK(em_live_tensors() == (before), "%s: no tensor leaked (%lld live, %lld before)", what, \
             (long long)em_live_tensors(), (long long)(before))

static char tmpdir[256];

static void path_in(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", tmpdir, name); }

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(p, 1, n, f);
    fclose(f);
}

static size_t file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

/* files in tmpdir whose name contains ".tmp." (what an atomic write leaves on failure) */
static int count_temp_files(void) {
    DIR *d = opendir(tmpdir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    if (d) closedir(d);
    return n;
}

/* every parameter of a and b equal bit for bit (same names, shapes, dtypes) */
static bool same_params(em_model_t *a, em_model_t *b) {
    int n = em_model_num_params(a);
    if (n != em_model_num_params(b)) return false;
    bool ok = true;
    for (int i = 0; i < n && ok; i++) {
        const char *na, *nb;
        em_tensor_t *x = em_model_param(a, i, &na), *y = em_model_param(b, i, &nb);
        size_t bytes = (size_t)em_numel(x) * (em_type(x) == EM_F64 ? 8 : 4);
        ok = !strcmp(na, nb) && em_type(x) == em_type(y) && em_numel(x) == em_numel(y);
        if (!ok) break;
        void *px = malloc(bytes), *py = malloc(bytes);
        ok = !em_to_data(x, px, bytes) && !em_to_data(y, py, bytes) && !memcmp(px, py, bytes);
        free(px);
        free(py);
    }
    return ok;
}

static bool same_tensor_bits(em_tensor_t *x, em_tensor_t *y) {
    if (em_type(x) != em_type(y) || em_numel(x) != em_numel(y)) return false;
    size_t bytes = (size_t)em_numel(x) * (em_type(x) == EM_F64 ? 8 : 4);
    void *px = malloc(bytes), *py = malloc(bytes);
    bool ok = !em_to_data(x, px, bytes) && !em_to_data(y, py, bytes) && !memcmp(px, py, bytes);
    free(px);
    free(py);
    return ok;
}

/* ---- model files -------------------------------------------------------------------------------- */
static void check_round_trip(const char *preset, em_dtype dt) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    em_model_config cfg;
    em_model_config_preset(preset, &cfg);
    cfg.dtype = dt;
    em_model_t *m = em_model_new(&cfg, 7);
    char path[512];
    path_in(path, sizeof path, "model.safetensors");
    TH_CHECK(em_model_save(m, path) == EM_OK, "%s %s: em_model_save (%s)", preset, em_dtype_name(dt), em_last_error());
    em_model_t *r = em_model_load(path);
    TH_CHECK(r != NULL, "%s %s: em_model_load (%s)", preset, em_dtype_name(dt), r ? "" : em_last_error());
    if (r) {
        TH_CHECK(!memcmp(em_model_get_config(m), em_model_get_config(r), sizeof cfg), "%s: the config round-trips",
                 preset);
        TH_CHECK(same_params(m, r), "%s %s: every parameter round-trips bit for bit", preset, em_dtype_name(dt));
        em_tensor_t *idx = em_randint(0, cfg.vocab_size, (int64_t[]){2, 8}, 2, EM_I64);
        TH_CHECK(same_tensor_bits(em_model_forward(m, idx, NULL, NULL), em_model_forward(r, idx, NULL, NULL)),
                 "%s %s: the loaded model's logits equal the original's", preset, em_dtype_name(dt));
    }
    em_model_free(r);
    em_model_free(m);
    em_scope_end(s);
    TH_CHECK(count_temp_files() == 0, "%s: no temporary file is left", preset);
    CHECK_LIVE(live, "round trip");
}

/* the saved dict of a gpt2-tiny model, modified by `edit`, saved as a file; loading must fail with
   status EM_ERR_FORMAT and a message containing needle */
typedef void (*edit_fn)(em_state_dict_t *sd);
static void check_hostile(edit_fn edit, const char *needle, const char *what) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    em_model_config cfg;
    em_model_config_preset("gpt2-tiny", &cfg);
    em_model_t *m = em_model_new(&cfg, 3);
    char path[512];
    path_in(path, sizeof path, "hostile.safetensors");
    em_model_save(m, path);
    em_state_dict_t *sd = NULL;
    em_safetensors_load(path, &sd);
    edit(sd);
    TH_CHECK(em_safetensors_save(path, sd) == EM_OK, "%s: the edited file is written", what);
    em_state_dict_free(sd);
    em_model_t *r = em_model_load(path);
    TH_CHECK(r == NULL, "%s: em_model_load refuses it", what);
    TH_CHECK_ERR(EM_ERR_FORMAT, needle, "%s: EM_ERR_FORMAT naming \"%s\" (got: %s)", what, needle, em_last_error());
    em_model_free(r);
    em_model_free(m);
    em_scope_end(s);
    CHECK_LIVE(live, what);
}

static void ed_shape(em_state_dict_t *sd) {
    em_state_dict_set(sd, "h.1.mlp.c_fc.weight", em_zeros((int64_t[]){32, 128}, 2, EM_F32)); /* (H, C) transposed */
}
static void ed_dtype(em_state_dict_t *sd) { em_state_dict_set(sd, "ln_f.bias", em_zeros((int64_t[]){32}, 1, EM_F64)); }
static void ed_missing(em_state_dict_t *sd) { em_state_dict_remove(sd, "h.0.attn.c_attn.bias"); }
static void ed_extra(em_state_dict_t *sd) { em_state_dict_set(sd, "h.7.ln_1.weight", em_zeros((int64_t[]){32}, 1, EM_F32)); }
static void ed_layers_text(em_state_dict_t *sd) { em_state_dict_set_meta(sd, "ember.n_layer", "2x"); }
static void ed_layers_more(em_state_dict_t *sd) { em_state_dict_set_meta(sd, "ember.n_layer", "3"); }
static void ed_huge(em_state_dict_t *sd) { em_state_dict_set_meta(sd, "ember.n_layer", "1000000000"); }
static void ed_heads(em_state_dict_t *sd) { em_state_dict_set_meta(sd, "ember.n_head", "3"); }
static void ed_arch(em_state_dict_t *sd) { em_state_dict_set_meta(sd, "ember.arch", "gpt3"); }
static void ed_version(em_state_dict_t *sd) { em_state_dict_set_meta(sd, "ember.version", "99"); }
static void ed_eps(em_state_dict_t *sd) { em_state_dict_set_meta(sd, "ember.norm_eps", "nan"); }
static void ed_dtype_meta(em_state_dict_t *sd) { em_state_dict_set_meta(sd, "ember.dtype", "i32"); }
static void ed_bool(em_state_dict_t *sd) { em_state_dict_set_meta(sd, "ember.bias", "yes"); }
static void ed_format(em_state_dict_t *sd) { em_state_dict_set_meta(sd, "ember.format", "optimizer"); }
static void ed_no_vocab(em_state_dict_t *sd) {
    /* rebuild the metadata without ember.vocab_size: copy to a new dict */
    em_state_dict_t *n = em_state_dict_new();
    for (int64_t i = 0; i < em_state_dict_meta_count(sd); i++) {
        const char *k = em_state_dict_meta_key_at(sd, i);
        if (strcmp(k, "ember.vocab_size")) em_state_dict_set_meta(n, k, em_state_dict_meta(sd, k));
    }
    /* swap the metadata in: clear sd's by removing and re-adding tensors is not possible, so move
       the tensors to n and the caller's dict gets n's contents through a second copy */
    for (int64_t i = 0; i < em_state_dict_count(sd); i++)
        em_state_dict_set(n, em_state_dict_name_at(sd, i), em_state_dict_tensor_at(sd, i));
    char path[512];
    path_in(path, sizeof path, "novocab.safetensors");
    em_safetensors_save(path, n);
    em_state_dict_free(n);
}

static void test_model_files(void) {
    check_round_trip("gpt2-tiny", EM_F32);
    check_round_trip("gpt2-tiny", EM_F64);
    check_round_trip("llama-tiny", EM_F32);
    check_round_trip("llama-tiny", EM_F64);

    check_hostile(ed_shape, "h.1.mlp.c_fc.weight", "a transposed weight");
    check_hostile(ed_dtype, "ln_f.bias", "an f64 tensor in an f32 model");
    check_hostile(ed_missing, "h.0.attn.c_attn.bias", "a missing tensor");
    check_hostile(ed_extra, "h.7.ln_1.weight", "an unknown tensor");
    check_hostile(ed_layers_text, "ember.n_layer", "n_layer \"2x\"");
    check_hostile(ed_layers_more, "3 layers", "n_layer 3 with the tensors of 2 layers");
    check_hostile(ed_huge, "needs at least", "a header claiming 10^9 layers");
    check_hostile(ed_heads, "n_head", "n_embd not a multiple of n_head");
    check_hostile(ed_arch, "ember.arch", "an unknown architecture");
    check_hostile(ed_version, "version", "a future format version");
    check_hostile(ed_eps, "ember.norm_eps", "norm_eps NaN");
    check_hostile(ed_dtype_meta, "ember.dtype", "an integer dtype");
    check_hostile(ed_bool, "ember.bias", "a boolean that is not true/false");
    check_hostile(ed_format, "ember.format", "another Ember format");

    int64_t live = em_live_tensors();
    char path[512], p2[512];
    /* a key missing */
    {
        em_scope_t *s = em_scope_begin();
        em_model_config cfg;
        em_model_config_preset("gpt2-tiny", &cfg);
        em_model_t *m = em_model_new(&cfg, 3);
        path_in(path, sizeof path, "m.safetensors");
        em_model_save(m, path);
        em_state_dict_t *sd = NULL;
        em_safetensors_load(path, &sd);
        ed_no_vocab(sd);
        em_state_dict_free(sd);
        path_in(path, sizeof path, "novocab.safetensors");
        TH_CHECK(em_model_load(path) == NULL, "a file without ember.vocab_size is refused");
        TH_CHECK_ERR(EM_ERR_FORMAT, "ember.vocab_size", "the message names the missing key (%s)", em_last_error());

        /* truncated: every prefix length class (inside the length, the header, the data) */
        path_in(path, sizeof path, "m.safetensors");
        size_t n = file_size(path);
        char *buf = malloc(n);
        FILE *f = fopen(path, "rb");
        TH_CHECK(f && fread(buf, 1, n, f) == n, "read the model file back");
        if (f) fclose(f);
        const size_t cuts[] = {0, 5, 8, 100, n / 2, n - 1};
        path_in(p2, sizeof p2, "cut.safetensors");
        for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
            write_file(p2, buf, cuts[i]);
            em_model_t *r = em_model_load(p2);
            TH_CHECK(r == NULL && em_last_error()[0], "a file cut to %zu of %zu bytes is refused (%s)", cuts[i], n,
                     em_last_error());
            em_model_free(r);
        }
        free(buf);
        /* not a model file at all: goes to the importers, which say what they accept */
        write_file(p2, "hello, world\n", 13);
        TH_CHECK(em_model_load(p2) == NULL && em_last_status() == EM_ERR_FORMAT, "a text file is refused (%s)",
                 em_last_error());
        path_in(p2, sizeof p2, "does-not-exist");
        TH_CHECK(em_model_load(p2) == NULL && em_last_status() == EM_ERR_IO, "a missing file is EM_ERR_IO (%s)",
                 em_last_error());
        TH_CHECK(em_model_load(NULL) == NULL && em_last_status() == EM_ERR_ARG, "a NULL path is EM_ERR_ARG");
        TH_CHECK(em_model_save(NULL, path) == EM_ERR_ARG, "saving a NULL model is EM_ERR_ARG");
        em_model_free(m);
        em_scope_end(s);
    }
    CHECK_LIVE(live, "hostile model files");
}

/* a save that fails part way leaves the old file whole and no temporary file */
static void test_atomic(void) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    em_model_config cfg;
    em_model_config_preset("gpt2-tiny", &cfg);
    em_model_t *a = em_model_new(&cfg, 1), *b = em_model_new(&cfg, 2);
    char path[512];
    path_in(path, sizeof path, "atomic.safetensors");
    TH_CHECK(em_model_save(a, path) == EM_OK, "the first save");
    size_t before = file_size(path);
    /* a file-size limit below the file's size makes the write fail part way (EFBIG) */
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 4096;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &lim);
    em_status st = em_model_save(b, path);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    TH_CHECK(st == EM_ERR_IO, "a save cut short by the file-size limit fails with EM_ERR_IO (%s)", em_last_error());
    TH_CHECK(count_temp_files() == 0, "no temporary file is left after the failed save");
    TH_CHECK(file_size(path) == before, "the old file keeps its size (%zu)", before);
    em_model_t *r = em_model_load(path);
    TH_CHECK(r && same_params(r, a), "the old file still loads as the first model");
    em_model_free(r);
    /* a directory in the way of the rename; a directory that does not exist */
    char dir[512];
    path_in(dir, sizeof dir, "a-directory");
    mkdir(dir, 0700);
    TH_CHECK(em_model_save(b, dir) == EM_ERR_IO, "saving over a directory fails (%s)", em_last_error());
    TH_CHECK(count_temp_files() == 0, "no temporary file is left after the failed rename");
    rmdir(dir);
    path_in(dir, sizeof dir, "no/such/dir/model.safetensors");
    TH_CHECK(em_model_save(b, dir) == EM_ERR_IO, "saving into a missing directory fails (%s)", em_last_error());
    em_model_free(a);
    em_model_free(b);
    em_scope_end(s);
    CHECK_LIVE(live, "atomic");
}

/* ---- data ----------------------------------------------------------------------------------------- */
static void test_text(void) {
    char dir[512], p[600];
    path_in(dir, sizeof dir, "fortunes");
    mkdir(dir, 0700);
    snprintf(p, sizeof p, "%s/b", dir);
    write_file(p, "Second file.\n%\n%\n", 17);
    snprintf(p, sizeof p, "%s/b.dat", dir);
    write_file(p, "x", 1);
    snprintf(p, sizeof p, "%s/a", dir);
    write_file(p, "One.\n%\nTwo\nlines.\n%\n100% sure\n", 29);
    snprintf(p, sizeof p, "%s/a.dat", dir);
    write_file(p, "x", 1);
    snprintf(p, sizeof p, "%s/c", dir); /* no index: not a fortune file */
    write_file(p, "ignored\n", 8);
    snprintf(p, sizeof p, "%s/a.u8", dir);
    write_file(p, "ignored\n", 8);
    char *text = NULL;
    size_t len = 0;
    TH_CHECK(em_text_read(dir, &text, &len) == EM_OK, "a directory of fortune files reads (%s)", em_last_error());
    const char *want = "One.\n<|endoftext|>Two\nlines.\n<|endoftext|>100% sure\n<|endoftext|>Second file.\n<|endoftext|>";
    TH_CHECK(text && len == strlen(want) && !strcmp(text, want),
             "separators become <|endoftext|>, files in name order, others skipped (got \"%s\")", text ? text : "");
    free(text);
    snprintf(p, sizeof p, "%s/a", dir);
    TH_CHECK(em_text_read(p, &text, &len) == EM_OK && len == 29 && !memcmp(text, "One.\n%", 6),
             "a plain file reads as it is");
    free(text);
    path_in(p, sizeof p, "nothing-here");
    TH_CHECK(em_text_read(p, &text, &len) == EM_ERR_IO && text == NULL, "a missing file is EM_ERR_IO (%s)",
             em_last_error());
    if (access("/usr/share/games/fortunes/fortunes.dat", R_OK) == 0) {
        TH_CHECK(em_text_read("fortunes", &text, &len) == EM_OK && len > 1000000 && !strstr(text, "\n%\n"),
                 "the Debian corpus reads, %zu bytes, without separators", len);
        free(text);
    }
}

/* ids with some structure: a noisy repeating pattern */
static int32_t *make_ids(int64_t n, int32_t V, uint32_t seed) {
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n);
    uint32_t x = seed;
    for (int64_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        ids[i] = (x >> 28) == 0 ? (int32_t)((x >> 8) % (uint32_t)V) : (int32_t)((i * 7 + i / 13) % V);
    }
    return ids;
}

static void test_dataset(void) {
    int64_t live = em_live_tensors();
    em_scope_t *s = em_scope_begin();
    int64_t n = 10240;
    int32_t *ids = make_ids(n, 64, 5);
    em_dataset_t *d = em_dataset_new(ids, n, 64, 0.1), *d2 = em_dataset_new(ids, n, 64, 0.1);
    TH_CHECK(d && em_dataset_num_tokens(d, false) + em_dataset_num_tokens(d, true) == n,
             "the two splits hold every token");
    TH_CHECK(d && em_dataset_num_tokens(d, true) == 1024, "every 10th chunk of 1024 is validation (%lld)",
             (long long)em_dataset_num_tokens(d, true));
    TH_CHECK(em_dataset_hash(d) == em_dataset_hash(d2), "the split is deterministic (same hash)");
    ids[3] ^= 1;
    em_dataset_t *d3 = em_dataset_new(ids, n, 64, 0.1);
    TH_CHECK(em_dataset_hash(d3) != em_dataset_hash(d), "other data has another hash");
    em_dataset_free(d3);
    ids[3] ^= 1;
    em_tensor_t *x1, *y1, *x2, *y2, *x3, *y3;
    em_dataset_batch(d, 42, 7, 4, 16, &x1, &y1);
    em_dataset_batch(d2, 42, 7, 4, 16, &x2, &y2);
    em_dataset_batch(d, 42, 8, 4, 16, &x3, &y3);
    TH_CHECK(same_tensor_bits(em_cast(x1, EM_F64), em_cast(x2, EM_F64)) && same_tensor_bits(em_cast(y1, EM_F64), em_cast(y2, EM_F64)),
             "batch (seed 42, index 7) is the same from two datasets of the same ids");
    TH_CHECK(!same_tensor_bits(em_cast(x1, EM_F64), em_cast(x3, EM_F64)), "batch 8 differs from batch 7");
    int64_t bx[64], by[64];
    em_to_data(x1, bx, sizeof bx);
    em_to_data(y1, by, sizeof by);
    bool shifted = true;
    for (int b = 0; b < 4; b++)
        for (int t = 0; t + 1 < 16; t++) shifted = shifted && by[b * 16 + t] == bx[b * 16 + t + 1];
    TH_CHECK(shifted && em_size(x1, 0) == 4 && em_size(x1, 1) == 16 && em_type(x1) == EM_I64,
             "x is (4, 16) i64 and y is x shifted by one token");
    int64_t nw = em_dataset_val_windows(d, 16);
    TH_CHECK(nw == (1024 - 1) / 16, "validation windows: %lld", (long long)nw);
    TH_CHECK(em_dataset_val_batch(d, nw - 4, 4, 16, &x2, &y2) == EM_OK, "the last validation batch");
    TH_CHECK(em_dataset_val_batch(d, nw - 3, 4, 16, &x2, &y2) == EM_ERR_ARG, "a batch past the end is refused (%s)",
             em_last_error());
    double h = em_dataset_unigram_entropy(d);
    TH_CHECK(h > 3.0 && h <= log(64.0) + 1e-12, "unigram entropy %.4f nats is in (3, log 64]", h);
    int32_t bad = 64;
    TH_CHECK(em_dataset_new(&bad, 1, 64, 0.1) == NULL && em_last_status() == EM_ERR_ARG,
             "an id outside the vocabulary is refused (%s)", em_last_error());
    TH_CHECK(em_dataset_new(ids, n, 64, 0.9) == NULL, "val_fraction 0.9 is refused");
    TH_CHECK(em_dataset_batch(d, 1, 0, 2, 20000, &x2, &y2) == EM_ERR_ARG, "a window longer than the split is refused");
    em_dataset_free(d);
    em_dataset_free(d2);
    free(ids);
    em_scope_end(s);
    CHECK_LIVE(live, "dataset");
}

/* ---- resume ----------------------------------------------------------------------------------------- */
static em_model_t *tiny_model(void) {
    em_model_config cfg;
    em_model_config_preset("gpt2-tiny", &cfg);
    return em_model_new(&cfg, 11);
}

/* the straight runs' losses by [eager][accum], to compare compiled against eager */
static double run_losses[2][3][8];

/* N steps straight vs N/2, save, resume (fresh model, optimizer, compiled step), N/2 */
static void check_resume(bool eager, int accum) {
    int64_t live = em_live_tensors();
    const int N = 6;
    int32_t *ids = make_ids(20000, 64, 9);
    em_dataset_t *d = em_dataset_new(ids, 20000, 64, 0.1);
    free(ids);
    em_train_config c;
    em_train_config_default(&c);
    c.batch = 4;
    c.seq_len = 16;
    c.accum = accum;
    c.max_steps = N;
    c.warmup = 2;
    c.lr = 1e-2;
    c.eager = eager;
    const char *mode = eager ? "eager" : "compiled";
    char path[512];
    path_in(path, sizeof path, "ckpt.safetensors");

    em_trainer_t *a = em_trainer_new(tiny_model(), d, &c);
    TH_CHECK(a != NULL, "%s: em_trainer_new (%s)", mode, a ? "" : em_last_error());
    double la[8] = {0}, lb[8] = {0};
    em_train_stats st;
    bool ok = a != NULL;
    for (int i = 0; i < N && ok; i++) {
        ok = em_trainer_step(a, &st) == EM_OK;
        la[i] = st.loss;
    }
    TH_CHECK(ok, "%s: %d straight steps (%s)", mode, N, ok ? "" : em_last_error());
    memcpy(run_losses[eager][accum], la, sizeof la);
    TH_CHECK(ok && la[N - 1] < la[0], "%s: the loss falls (%.4f -> %.4f)", mode, la[0], la[N - 1]);

    em_trainer_t *b = em_trainer_new(tiny_model(), d, &c);
    for (int i = 0; i < N / 2 && b; i++) {
        ok = ok && em_trainer_step(b, &st) == EM_OK;
        lb[i] = st.loss;
    }
    em_trainer_set_meta(b, "note", "hello");
    TH_CHECK(em_trainer_save(b, path) == EM_OK, "%s: em_trainer_save (%s)", mode, em_last_error());
    em_trainer_free(b);
    em_manual_seed(999); /* the resumed run must not depend on the global generator's state */
    em_trainer_t *r = em_trainer_resume(path, d);
    TH_CHECK(r != NULL, "%s: em_trainer_resume (%s)", mode, r ? "" : em_last_error());
    if (r) {
        TH_CHECK(em_trainer_get_step(r) == N / 2, "%s: resumed at step %d", mode, N / 2);
        const char *note = em_trainer_meta(r, "note");
        TH_CHECK(note && !strcmp(note, "hello"), "%s: the caller's metadata comes back", mode);
        for (int i = N / 2; i < N && ok; i++) {
            ok = em_trainer_step(r, &st) == EM_OK;
            lb[i] = st.loss;
        }
        TH_CHECK(ok && !memcmp(la, lb, sizeof la), "%s accum %d: the losses of the resumed run equal the straight "
                 "run's bit for bit (step %d: %.17g vs %.17g)", mode, accum, N, la[N - 1], lb[N - 1]);
        TH_CHECK(a && same_params(em_trainer_model(a), em_trainer_model(r)),
                 "%s accum %d: after %d steps the parameters are bitwise equal", mode, accum, N);
        em_optimizer_t *oa = a ? em_trainer_optimizer(a) : NULL, *orr = em_trainer_optimizer(r);
        bool same = oa && em_optimizer_num_state(oa) == em_optimizer_num_state(orr) &&
                    em_optimizer_get_step(oa) == em_optimizer_get_step(orr);
        for (int i = 0; same && i < em_optimizer_num_state(oa); i++)
            same = same_tensor_bits(em_optimizer_state(oa, i, NULL), em_optimizer_state(orr, i, NULL));
        TH_CHECK(same, "%s accum %d: the optimizer state (exp_avg, exp_avg_sq, step) is bitwise equal", mode, accum);
        double va = a ? em_trainer_eval(a, 0) : NAN, vr = em_trainer_eval(r, 0);
        TH_CHECK(isfinite(va) && va == vr, "%s: validation losses equal (%.6f, %.6f)", mode, va, vr);
        /* the model part of a checkpoint loads as a model */
        em_model_t *m = em_model_load(path);
        TH_CHECK(m != NULL, "%s: em_model_load reads a checkpoint (%s)", mode, m ? "" : em_last_error());
        em_model_free(m);
    }
    /* other data is refused */
    int32_t *ids2 = make_ids(20000, 64, 10);
    em_dataset_t *d2 = em_dataset_new(ids2, 20000, 64, 0.1);
    free(ids2);
    TH_CHECK(em_trainer_resume(path, d2) == NULL, "%s: resuming on other data is refused", mode);
    TH_CHECK_ERR(EM_ERR_ARG, "other data", "%s: the message says the data differ (%s)", mode, em_last_error());
    em_train_config o = c;
    o.batch = 8;
    TH_CHECK(r && em_trainer_set_config(r, &o) == EM_ERR_ARG, "%s: changing the batch size of a run is refused (%s)",
             mode, em_last_error());
    o = c;
    o.max_steps = 2 * N;
    TH_CHECK(r && em_trainer_set_config(r, &o) == EM_OK && em_trainer_config(r)->max_steps == 2 * N,
             "%s: the schedule's length can change", mode);
    em_dataset_free(d2);
    em_trainer_free(a);
    em_trainer_free(r);
    em_dataset_free(d);
    CHECK_LIVE(live, "resume");
}

static void test_trainer_errors(void) {
    int64_t live = em_live_tensors();
    int32_t *ids = make_ids(5000, 64, 1);
    em_dataset_t *d = em_dataset_new(ids, 5000, 64, 0.1);
    free(ids);
    em_train_config c;
    em_train_config_default(&c);
    c.seq_len = 64; /* gpt2-tiny's block_size is 16 */
    em_model_t *m = tiny_model();
    TH_CHECK(em_trainer_new(m, d, &c) == NULL, "seq_len above block_size is refused");
    TH_CHECK_ERR(EM_ERR_ARG, "block_size", "the message names block_size (%s)", em_last_error());
    c.seq_len = 16;
    c.lr = -1;
    TH_CHECK(em_trainer_new(m, d, &c) == NULL && em_last_status() == EM_ERR_ARG, "a negative lr is refused");
    em_model_free(m); /* still the caller's after a failure */
    char path[512];
    path_in(path, sizeof path, "model-only.safetensors");
    m = tiny_model();
    em_model_save(m, path);
    em_model_free(m);
    TH_CHECK(em_trainer_resume(path, d) == NULL, "a model file is not a checkpoint");
    TH_CHECK_ERR(EM_ERR_FORMAT, "not a training checkpoint", "the message says so (%s)", em_last_error());
    em_dataset_free(d);
    CHECK_LIVE(live, "trainer errors");
}

/* ---- ember train ------------------------------------------------------------------------------------ */
static char ember_bin[1024];

/* runs cmd with stderr and stdout to out_path; returns the exit status */
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

static void test_cli(void) {
    TH_CHECK(access(ember_bin, X_OK) == 0, "the ember command exists at %s (make builds it)", ember_bin);
    char text[512], out[512], log[512], cmd[4096];
    path_in(text, sizeof text, "tiny.txt");
    FILE *f = fopen(text, "wb");
    for (int i = 0; f && i < 300; i++)
        fprintf(f, "The %s cat sat on the %s mat, number %d.\n", i % 3 ? "black" : "white", i % 5 ? "red" : "flat", i);
    if (f) fclose(f);
    path_in(out, sizeof out, "run");
    path_in(log, sizeof log, "train.log");
    const char *flags = "--layers 1 --heads 2 --embd 16 --vocab 300 --batch 2 --seq-len 16 --eval-every 2 "
                        "--eval-batches 2 --sample-tokens 8 --eager";
    snprintf(cmd, sizeof cmd, "EMBER_NUM_THREADS=1 %s train --data %s --out %s %s --steps 3 > %s 2>&1", ember_bin,
             text, out, flags, log);
    int rc = run(cmd);
    char *o = slurp(log);
    TH_CHECK(rc == 0, "ember train runs 3 steps (exit %d): %s", rc, o);
    TH_CHECK(strstr(o, "step 3/3") && strstr(o, "loss") && strstr(o, "tok/s") && strstr(o, "ETA"),
             "the progress line shows step, loss, tok/s and ETA");
    TH_CHECK(strstr(o, "val loss") != NULL && strstr(o, "unigram") != NULL,
             "it prints the validation loss beside the unigram entropy");
    free(o);
    char p[600];
    snprintf(p, sizeof p, "%s/checkpoint.safetensors", out);
    TH_CHECK(access(p, R_OK) == 0, "the run directory holds checkpoint.safetensors");
    snprintf(p, sizeof p, "%s/tokenizer.bin", out);
    TH_CHECK(access(p, R_OK) == 0, "and tokenizer.bin");
    snprintf(p, sizeof p, "%s/model.safetensors", out);
    em_model_t *m = em_model_load(p);
    TH_CHECK(m != NULL, "and model.safetensors, which em_model_load reads (%s)", m ? "" : em_last_error());
    em_model_free(m);
    /* a second run into the same directory without --resume is refused */
    rc = run(cmd);
    TH_CHECK(rc != 0, "training into a directory that holds a run without --resume is refused");
    snprintf(cmd, sizeof cmd, "EMBER_NUM_THREADS=1 %s train --data %s --out %s %s --steps 5 --resume > %s 2>&1",
             ember_bin, text, out, flags, log);
    rc = run(cmd);
    o = slurp(log);
    TH_CHECK(rc == 0 && strstr(o, "resuming") && strstr(o, "at step 3") && strstr(o, "step 5/5") &&
             !strstr(o, "step 1/5"), "--resume continues from step 3 to step 5: %s", o);
    free(o);
    /* a time budget stops after the current step with a checkpoint */
    char timed[512];
    path_in(timed, sizeof timed, "timed");
    snprintf(cmd, sizeof cmd, "EMBER_NUM_THREADS=1 %s train --data %s --out %s %s --steps 100 --time 0.001 > %s 2>&1",
             ember_bin, text, timed, flags, log);
    rc = run(cmd);
    o = slurp(log);
    snprintf(p, sizeof p, "%s/checkpoint.safetensors", timed);
    TH_CHECK(rc == 0 && strstr(o, "time budget reached at step 1") && access(p, R_OK) == 0,
             "--time stops after one step and leaves a checkpoint: %s", o);
    free(o);
    /* fine-tuning: a new run that starts from the finished run's model and tokenizer */
    char tuned[512];
    path_in(tuned, sizeof tuned, "tuned");
    snprintf(cmd, sizeof cmd, "EMBER_NUM_THREADS=1 %s train --data %s --out %s --init %s/model.safetensors "
             "--tokenizer %s/tokenizer.bin --batch 2 --seq-len 16 --steps 2 --eval-every 0 --sample-tokens 4 --eager "
             "--lr 1e-4 > %s 2>&1", ember_bin, text, tuned, out, out, log);
    rc = run(cmd);
    o = slurp(log);
    TH_CHECK(rc == 0 && strstr(o, "step 2/2") && strstr(o, "1 layers, 2 heads, n_embd 16, vocab 300"),
             "--init with --tokenizer fine-tunes the trained model (its config, not the default one): %s", o);
    free(o);
    snprintf(cmd, sizeof cmd, "%s train --data %s --out %s-2 --init %s/model.safetensors > %s 2>&1", ember_bin, text,
             tuned, out, log);
    TH_CHECK(run(cmd) == 2, "--init without --tokenizer is a usage error");
    snprintf(cmd, sizeof cmd, "%s train --bogus > %s 2>&1", ember_bin, log);
    TH_CHECK(run(cmd) == 2, "an unknown flag is a usage error (exit 2)");
}

int main(int argc, char **argv) {
    (void)argc;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ember_test_train_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    /* build/tests/test_train -> build/ember */
    snprintf(ember_bin, sizeof ember_bin, "%s", argv[0]);
    char *slash = strrchr(ember_bin, '/');
    if (slash) snprintf(slash, ember_bin + sizeof ember_bin - slash, "/../ember");
    em_manual_seed(1);
    test_model_files();
    test_atomic();
    test_text();
    test_dataset();
    check_resume(true, 1);
    check_resume(true, 2);
    check_resume(false, 1);
    check_resume(false, 2);
    for (int accum = 1; accum <= 2; accum++) {
        double worst = 0;
        for (int i = 0; i < 6; i++) worst = fmax(worst, fabs(run_losses[0][accum][i] - run_losses[1][accum][i]));
        TH_CHECK(worst < 1e-4, "accum %d: the compiled step's losses follow the eager step's over 6 steps (worst %.2e)",
                 accum, worst);
    }
    test_trainer_errors();
    test_cli();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return th_summary();
}
