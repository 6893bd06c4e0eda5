/* train.c - `ember train`: train (or fine-tune) a GPT-2 or Llama model on a text corpus.
 *
 * A front end to the library's trainer (src/nn/trainer.c); everything it does a C program can do
 * with em_text_read, em_tokenizer_train_bpe, em_dataset_new, em_trainer_new / em_trainer_resume,
 * em_trainer_step, em_trainer_eval, em_trainer_save, em_model_save and em_generate.
 *
 * A run lives in one directory (--out, default runs/<corpus name>):
 *   tokenizer.bin            the tokenizer, trained on the corpus when the run starts
 *   checkpoint.safetensors   model + AdamW state + step, data position, RNG, settings (atomic)
 *   model.safetensors        the model alone, written when training ends (ember generate reads it)
 * Run it again with --resume and it continues from the checkpoint (bit for bit), or, when the run
 * has finished, prints the validation loss and a sample. Without --resume a directory that holds
 * a run is refused, so nothing is overwritten by accident.
 *
 * Options are one table (`flags`): name, type, where the value goes, help. Adding an option is
 * one row and one field of `opts`.
 */
#include <ember.h>

#include "cmd.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *data, *out, *init, *tokenizer, *preset, *arch;
    int vocab;
    int layers, heads, kv_heads, embd, hidden, block;
    double dropout, val_fraction;
    em_train_config tc;
    double time_budget;
    int eval_every, eval_batches, save_every, log_every, sample_tokens, top_k;
    double temperature;
    bool resume, char_tok;
    int lora;                   /* LoRA rank (0: full training) */
    double lora_alpha;
    const char *lora_targets;
    const char *precision;      /* --precision f32|bf16 (NULL: f32, or the checkpoint's on resume) */
} opts;

typedef enum { F_STR, F_INT, F_I64, F_U64, F_DBL, F_BOOL } ftype;
#define O(f) offsetof(opts, f)
#define T(f) (offsetof(opts, tc) + offsetof(em_train_config, f))
static const struct flag {
    const char *name;
    ftype type;
    size_t off;
    const char *help;
} flags[] = {
    {"data", F_STR, O(data), "corpus: \"fortunes\" (default), a text file, or a directory of fortune files"},
    {"out", F_STR, O(out), "run directory (default runs/<corpus name>)"},
    {"resume", F_BOOL, O(resume), "continue the run in --out (or sample from it when it has finished)"},
    {"init", F_STR, O(init), "fine-tune: start from this model file (Ember, llama2.c .bin or HF GPT-2 safetensors)"},
    {"lora", F_INT, O(lora), "train LoRA adapters of this rank instead of every weight (model.safetensors is merged)"},
    {"lora-alpha", F_DBL, O(lora_alpha), "LoRA scale alpha/rank (default alpha = rank: scale 1)"},
    {"lora-targets", F_STR, O(lora_targets), "linears to adapt: all (default), attn, mlp, or names (c_attn,wq,...)"},
    {"tokenizer", F_STR, O(tokenizer), "use this tokenizer (Ember tokenizer.bin, llama2.c tokenizer.bin, or a "
                                       "directory with GPT-2's encoder.json + vocab.bpe) instead of training one"},
    {"vocab", F_INT, O(vocab), "vocabulary of the byte-level BPE trained on the corpus (default 512)"},
    {"char", F_BOOL, O(char_tok), "a character tokenizer instead of BPE"},
    {"preset", F_STR, O(preset), "model size by name (gpt2, gpt2-tiny, stories15M, ...; vocab from the tokenizer)"},
    {"arch", F_STR, O(arch), "gpt2 (default) or llama"},
    {"layers", F_INT, O(layers), "transformer blocks (default 4)"},
    {"heads", F_INT, O(heads), "attention heads (default 4)"},
    {"kv-heads", F_INT, O(kv_heads), "key/value heads (grouped-query attention; default = heads)"},
    {"embd", F_INT, O(embd), "channels C (default 128)"},
    {"hidden", F_INT, O(hidden), "MLP width (default 4C for gpt2)"},
    {"block", F_INT, O(block), "context length of the model (default seq-len)"},
    {"dropout", F_DBL, O(dropout), "dropout (default 0)"},
    {"batch", F_INT, T(batch), "sequences per micro-batch (default 16)"},
    {"seq-len", F_INT, T(seq_len), "tokens per sequence (default 128)"},
    {"accum", F_INT, T(accum), "micro-batches per step (gradient accumulation; default 1)"},
    {"steps", F_I64, T(max_steps), "optimizer steps of the schedule (default 2000)"},
    {"time", F_DBL, O(time_budget), "stop after this many seconds (a checkpoint is saved; --resume continues)"},
    {"lr", F_DBL, T(lr), "peak learning rate (default 2e-3)"},
    {"min-lr", F_DBL, T(min_lr), "final learning rate of the cosine decay (default lr/10)"},
    {"warmup", F_I64, T(warmup), "linear warm-up steps (default steps/10, at most 100)"},
    {"weight-decay", F_DBL, T(weight_decay), "AdamW weight decay on 2-D weights (default 0.1)"},
    {"clip", F_DBL, T(grad_clip), "clip the global gradient norm to this (default 1; 0: off)"},
    {"seed", F_U64, T(seed), "seed of the initialisation, the data order and the sample (default 1337; with "
                              "--resume only the sample's)"},
    {"eager", F_BOOL, T(eager), "run the training step eagerly (default: compiled with em_compile)"},
    {"precision", F_STR, O(precision), "matmul precision: f32 (default) or bf16 (bf16 products, f32 accumulation "
                                       "and master weights; kept by --resume unless given)"},
    {"val-fraction", F_DBL, O(val_fraction), "share of the tokens held out for validation (default 0.1)"},
    {"eval-every", F_INT, O(eval_every), "validation loss every N steps (default 100; 0: only at the end)"},
    {"eval-batches", F_INT, O(eval_batches), "batches per periodic validation (default 20; the final one uses all)"},
    {"save-every", F_INT, O(save_every), "checkpoint every N steps (default 100; always at the end)"},
    {"log-every", F_INT, O(log_every), "a progress line every N steps when stderr is not a terminal (default 10)"},
    {"sample-tokens", F_INT, O(sample_tokens), "tokens of the sample printed at the end (default 200; 0: none)"},
    {"temperature", F_DBL, O(temperature), "sampling temperature (default 0.8)"},
    {"top-k", F_INT, O(top_k), "sample from the k most likely tokens (default 40; 0: all)"},
};
#define N_FLAGS (int)(sizeof flags / sizeof *flags)

static void usage(FILE *f) {
    fprintf(f, "usage: ember train [--data fortunes|FILE|DIR] [--out DIR] [--resume] [options]\n");
    for (int i = 0; i < N_FLAGS; i++)
        fprintf(f, "  --%-14s %s%s\n", flags[i].name, flags[i].type == F_BOOL ? "" : "V  ", flags[i].help);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* parses argv into o; `given[i]` records which flags appeared. 0, or 2 on a usage error */
static int parse(int argc, char **argv, opts *o, bool *given) {
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            usage(stdout);
            exit(0);
        }
        int k = -1;
        for (int i = 0; i < N_FLAGS && k < 0; i++)
            if (!strncmp(arg, "--", 2) && !strcmp(arg + 2, flags[i].name)) k = i;
        if (k < 0) {
            fprintf(stderr, "ember train: unknown option '%s' (ember train --help lists them)\n", arg);
            return 2;
        }
        given[k] = true;
        void *dst = (char *)o + flags[k].off;
        if (flags[k].type == F_BOOL) {
            *(bool *)dst = true;
            continue;
        }
        if (a + 1 >= argc) {
            fprintf(stderr, "ember train: --%s needs a value\n", flags[k].name);
            return 2;
        }
        const char *v = argv[++a];
        char *end = NULL;
        errno = 0;
        switch (flags[k].type) {
        case F_STR: *(const char **)dst = v; end = (char *)v + strlen(v); break;
        case F_INT: {
            long x = strtol(v, &end, 10);
            if (x < -2147483647L || x > 2147483647L) errno = ERANGE;
            *(int *)dst = (int)x;
            break;
        }
        case F_I64: *(int64_t *)dst = strtoll(v, &end, 10); break;
        case F_U64: *(uint64_t *)dst = strtoull(v, &end, 10); break;
        case F_DBL: *(double *)dst = strtod(v, &end); break;
        case F_BOOL: break;
        }
        if (!v[0] || *end || errno) {
            fprintf(stderr, "ember train: --%s: '%s' is not a valid value\n", flags[k].name, v);
            return 2;
        }
    }
    return 0;
}

static int flag_index(const char *name) {
    for (int i = 0; i < N_FLAGS; i++)
        if (!strcmp(flags[i].name, name)) return i;
    return -1;
}

static volatile sig_atomic_t interrupted = 0;
static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

static bool exists(const char *path) { return access(path, F_OK) == 0; }

static int mkdirs(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
            *p = '/';
        }
    return mkdir(buf, 0777) != 0 && errno != EEXIST ? -1 : 0;
}

static int fail(const char *what) {
    fprintf(stderr, "ember train: %s: %s\n", what, em_last_error());
    return 1;
}

/* a tokenizer from --tokenizer: a GPT-2 directory, an Ember file, else llama2.c's tokenizer.bin */
static em_tokenizer_t *load_tokenizer(const char *path, int32_t model_vocab) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        char enc[4096], bpe[4096];
        snprintf(enc, sizeof enc, "%s/encoder.json", path);
        snprintf(bpe, sizeof bpe, "%s/vocab.bpe", path);
        return em_tokenizer_load_gpt2(enc, bpe);
    }
    FILE *f = fopen(path, "rb");
    char magic[8] = {0};
    if (f) {
        if (fread(magic, 1, 8, f) != 8) magic[0] = 0;
        fclose(f);
    }
    if (!memcmp(magic, "EMBERTOK", 8)) return em_tokenizer_load(path);
    return em_tokenizer_load_llama2c(path, model_vocab);
}

static void fmt_time(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 1e7) snprintf(buf, n, "?");
    else if (s >= 3600) snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
}

/* the sample: sample_tokens tokens from the end-of-text / BOS token, streamed to stdout */
typedef struct {
    const em_tokenizer_t *tok;
    int32_t prev, eos;
} sample_ctx;
static bool on_token(void *vc, int row, int64_t i, int32_t token) {
    sample_ctx *c = vc;
    (void)row;
    (void)i;
    if (token != c->eos) {
        size_t len = 0;
        const char *piece = em_tokenizer_decode_one(c->tok, c->prev, token, &len);
        if (piece) fwrite(piece, 1, len, stdout);
        fflush(stdout);
    }
    c->prev = token;
    return true;
}

static int print_sample(em_model_t *m, const em_tokenizer_t *tok, const opts *o, uint64_t seed) {
    int32_t bos = em_tokenizer_bos_id(tok);
    if (bos < 0) bos = em_tokenizer_eos_id(tok);
    if (bos < 0) bos = 0;
    int block = em_model_get_config(m)->block_size;
    int n = o->sample_tokens < block ? o->sample_tokens : block;
    sample_ctx sc = {tok, bos, em_tokenizer_eos_id(tok)};
    em_generate_opts g = {.max_new_tokens = n, .temperature = o->temperature, .top_k = o->top_k, .seed = seed,
                          .stop_at_eos = sc.eos >= 0, .eos_id = sc.eos, .eager = o->tc.eager, .on_token = on_token,
                          .ctx = &sc};
    const int32_t *prompt = &bos;
    int64_t len = 1, out_len = 0;
    int32_t *out = malloc(sizeof(int32_t) * (size_t)n);
    em_model_set_training(m, false);
    fprintf(stderr, "sample (%d tokens at most, temperature %g, top-k %d, from the end-of-text token):\n", n,
            o->temperature, o->top_k);
    fflush(stderr);
    em_status st = out ? em_generate(m, &prompt, &len, 1, &g, out, &out_len, NULL) : EM_ERR_OOM;
    printf("\n");
    fflush(stdout);
    free(out);
    return st ? fail("generating the sample") : 0;
}

/* loads the corpus, tokenizes it; *tok is trained (new run) or given */
static em_dataset_t *load_data(const opts *o, em_tokenizer_t **tok, bool train_tok, size_t *text_bytes) {
    char *text = NULL;
    size_t len = 0;
    if (em_text_read(o->data, &text, &len)) {
        fail("reading the corpus");
        return NULL;
    }
    *text_bytes = len;
    if (train_tok) {
        double t0 = now_s();
        *tok = o->char_tok ? em_tokenizer_char(text, len) : em_tokenizer_train_bpe(text, len, o->vocab);
        if (!*tok) {
            free(text);
            fail("training the tokenizer");
            return NULL;
        }
        fprintf(stderr, "tokenizer: %s, %d tokens, trained on %zu bytes in %.1f s\n",
                o->char_tok ? "characters" : "byte-level BPE", em_tokenizer_vocab_size(*tok), len, now_s() - t0);
    }
    int32_t *ids = NULL;
    size_t n = 0;
    em_status s = em_tokenizer_encode(*tok, text, len, false, &ids, &n);
    free(text);
    if (s) {
        fail("tokenizing the corpus");
        return NULL;
    }
    em_dataset_t *d = em_dataset_new(ids, (int64_t)n, em_tokenizer_vocab_size(*tok), o->val_fraction);
    free(ids);
    if (!d) fail("splitting the corpus");
    return d;
}

/* --lora: adapters on the new run's model (a resumed run gets them from its checkpoint) */
static int add_lora(const opts *o, em_model_t *m) {
    em_lora_config lc = {.rank = o->lora, .alpha = o->lora_alpha, .targets = o->lora_targets, .seed = o->tc.seed};
    if (em_model_add_lora(m, &lc)) return fail("--lora");
    int n = 0;
    int64_t k = 0;
    em_tensor_t *const *tr = em_model_trainable_params(m, &n);
    for (int i = 0; i < n; i++) k += em_numel(tr[i]);
    fprintf(stderr, "LoRA: rank %d, alpha %g on %d linears (%s): %lld of %lld parameters train\n", lc.rank,
            lc.alpha > 0 ? lc.alpha : lc.rank, em_model_num_lora(m), lc.targets ? lc.targets : "all", (long long)k,
            (long long)em_model_param_count(m));
    return 0;
}

/* the model of a new run: --init, --preset or the size flags */
static em_model_t *make_model(const opts *o, int32_t vocab) {
    if (o->init) {
        em_model_t *m = em_model_load(o->init);
        if (!m) fail("loading --init");
        else if (em_model_get_config(m)->vocab_size < vocab) {
            fprintf(stderr, "ember train: the model in %s has %d tokens but the tokenizer %d: pass the model's own "
                    "tokenizer with --tokenizer\n", o->init, em_model_get_config(m)->vocab_size, vocab);
            em_model_free(m);
            return NULL;
        }
        return m;
    }
    em_model_config c = {0};
    if (o->preset && em_model_config_preset(o->preset, &c)) {
        fail("--preset");
        return NULL;
    }
    if (!o->preset) {
        bool llama = o->arch && !strcmp(o->arch, "llama");
        if (o->arch && !llama && strcmp(o->arch, "gpt2")) {
            fprintf(stderr, "ember train: --arch must be gpt2 or llama, not '%s'\n", o->arch);
            return NULL;
        }
        c.arch = llama ? EM_ARCH_LLAMA : EM_ARCH_GPT2;
        c.bias = !llama;
        c.tie_embeddings = true;
        c.n_layer = 4;
        c.n_head = 4;
        c.n_embd = 128;
    }
    c.vocab_size = vocab;
    if (o->layers) c.n_layer = o->layers;
    if (o->heads) c.n_head = o->heads;
    if (o->kv_heads) c.n_kv_head = o->kv_heads;
    if (o->embd) c.n_embd = o->embd;
    if (o->hidden) c.ffn_hidden = o->hidden;
    if (o->block) c.block_size = o->block;
    else if (!o->preset || c.block_size < o->tc.seq_len) c.block_size = o->tc.seq_len;
    c.dropout = o->dropout;
    em_model_t *m = em_model_new(&c, o->tc.seed);
    if (!m) fail("making the model");
    return m;
}

int cmd_train(int argc, char **argv) {
    opts o = {.data = "fortunes", .vocab = 512, .val_fraction = 0.1, .eval_every = 100, .eval_batches = 20,
              .save_every = 100, .log_every = 10, .sample_tokens = 200, .temperature = 0.8, .top_k = 40};
    em_train_config_default(&o.tc);
    o.tc.max_steps = 2000; /* the main job's schedule (docs/models.md): about 3 minutes on two quiet cores */
    o.tc.lr = 2e-3;
    bool given[N_FLAGS] = {0};
    int rc = parse(argc, argv, &o, given);
    if (rc) return rc;
    if (o.precision && strcmp(o.precision, "f32") && strcmp(o.precision, "bf16")) {
        fprintf(stderr, "ember train: --precision: '%s' is not f32 or bf16\n", o.precision);
        return 2;
    }
    o.tc.precision = o.precision && !strcmp(o.precision, "bf16") ? EM_BF16 : EM_F32;
    uint64_t sample_seed = o.tc.seed;
    if (!given[flag_index("min-lr")]) o.tc.min_lr = o.tc.lr / 10;
    if (!given[flag_index("warmup")] && o.tc.warmup > o.tc.max_steps / 10) o.tc.warmup = o.tc.max_steps / 10;

    /* the run directory */
    char out[4096], ckpt[4200], tokp[4200], modelp[4200];
    if (o.out) snprintf(out, sizeof out, "%s", o.out);
    else {
        const char *base = strrchr(o.data, '/');
        base = base && base[1] ? base + 1 : o.data;
        snprintf(out, sizeof out, "runs/%.*s", (int)strcspn(base, "."), base);
    }
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.safetensors", out);
    snprintf(tokp, sizeof tokp, "%s/tokenizer.bin", out);
    snprintf(modelp, sizeof modelp, "%s/model.safetensors", out);
    if (mkdirs(out) != 0) {
        fprintf(stderr, "ember train: cannot create the run directory '%s': %s\n", out, strerror(errno));
        return 1;
    }
    bool resuming = exists(ckpt);
    if (resuming && !o.resume) {
        fprintf(stderr, "ember train: '%s' holds a run already: pass --resume to continue it (or sample from it), or "
                "choose another --out\n", out);
        return 1;
    }

    em_tokenizer_t *tok = NULL;
    em_dataset_t *data = NULL;
    em_trainer_t *tr = NULL;
    size_t text_bytes = 0;
    rc = 1;
    if (resuming) {
        /* the corpus, tokenizer and split of the run, from its checkpoint */
        em_state_dict_t *sd = NULL;
        /* read the settings the tool saved (ember.user.*) without loading the model twice: the
           metadata comes with the tensors, which the trainer reloads below */
        if (em_safetensors_load(ckpt, &sd)) return fail("reading the checkpoint");
        const char *d = em_state_dict_meta(sd, "ember.user.data");
        const char *vf = em_state_dict_meta(sd, "ember.user.val_fraction");
        const char *tk = em_state_dict_meta(sd, "ember.user.tokenizer");
        static char data_buf[4096], tok_buf[4096];
        if (d && !given[flag_index("data")]) snprintf(data_buf, sizeof data_buf, "%s", d), o.data = data_buf;
        if (vf) o.val_fraction = strtod(vf, NULL);
        if (tk && !o.tokenizer) snprintf(tok_buf, sizeof tok_buf, "%s", tk), o.tokenizer = tok_buf;
        em_state_dict_free(sd);
        tok = load_tokenizer(o.tokenizer ? o.tokenizer : tokp, 0);
        if (!tok) return fail("loading the run's tokenizer");
        fprintf(stderr, "resuming the run in %s (corpus %s)\n", out, o.data);
        data = load_data(&o, &tok, false, &text_bytes);
        if (!data) goto done;
        tr = em_trainer_resume(ckpt, data);
        if (!tr) {
            fail("resuming from the checkpoint");
            goto done;
        }
        /* settings that may change on resume: the schedule's length, eager/compiled, the matmul precision */
        em_train_config c = *em_trainer_config(tr);
        if (given[flag_index("steps")]) c.max_steps = o.tc.max_steps;
        if (given[flag_index("eager")]) c.eager = true;
        if (given[flag_index("precision")]) c.precision = o.tc.precision;
        if (em_trainer_set_config(tr, &c)) {
            fail("--steps/--eager/--precision on resume");
            goto done;
        }
        o.tc = c;
        fprintf(stderr, "resuming at step %lld of %lld\n", (long long)em_trainer_get_step(tr),
                (long long)c.max_steps);
    } else {
        if (o.init && !o.tokenizer) {
            fprintf(stderr, "ember train: --init needs the model's own tokenizer: pass --tokenizer PATH (for a model "
                    "that ember train made, the run directory's tokenizer.bin)\n");
            return 2;
        }
        if (o.tokenizer) {
            tok = load_tokenizer(o.tokenizer, 0);
            if (!tok) return fail("loading --tokenizer");
        }
        data = load_data(&o, &tok, !o.tokenizer, &text_bytes);
        if (!data) goto done;
        if (!o.tokenizer && em_tokenizer_save(tok, tokp)) {
            fail("saving the tokenizer");
            goto done;
        }
        em_model_t *m = make_model(&o, em_tokenizer_vocab_size(tok));
        if (m && (o.lora || o.lora_alpha || o.lora_targets) && add_lora(&o, m)) em_model_free(m), m = NULL;
        if (!m) goto done;
        tr = em_trainer_new(m, data, &o.tc);
        if (!tr) {
            em_model_free(m);
            fail("starting the trainer");
            goto done;
        }
        char buf[64];
        snprintf(buf, sizeof buf, "%.17g", o.val_fraction);
        em_trainer_set_meta(tr, "data", o.data);
        em_trainer_set_meta(tr, "val_fraction", buf);
        if (o.tokenizer) em_trainer_set_meta(tr, "tokenizer", o.tokenizer);
        if (o.init) em_trainer_set_meta(tr, "init", o.init);
    }

    em_model_t *m = em_trainer_model(tr);
    const em_model_config *mc = em_model_get_config(m);
    const em_train_config *c = em_trainer_config(tr);
    double unigram = em_dataset_unigram_entropy(data);
    fprintf(stderr, "corpus: %s, %zu bytes, %lld training and %lld validation tokens; unigram entropy %.3f "
            "nats/token\n", o.data, text_bytes, (long long)em_dataset_num_tokens(data, false),
            (long long)em_dataset_num_tokens(data, true), unigram);
    fprintf(stderr, "model: %s, %d layers, %d heads, n_embd %d, vocab %d, block %d: %lld parameters\n",
            mc->arch == EM_ARCH_GPT2 ? "GPT-2" : "Llama", mc->n_layer, mc->n_head, mc->n_embd, mc->vocab_size,
            mc->block_size, (long long)em_model_param_count(m));
    fprintf(stderr, "training: %lld steps of %d x %d x %d tokens, lr %g -> %g (warm-up %lld), weight decay %g, "
            "clip %g, seed %llu, %s, %s matmuls, %d threads\n", (long long)c->max_steps, c->accum, c->batch,
            c->seq_len, c->lr, c->min_lr, (long long)c->warmup, c->weight_decay, c->grad_clip,
            (unsigned long long)c->seed, c->eager ? "eager" : "compiled", em_dtype_name(c->precision),
            em_get_num_threads());

    /* the loop */
    signal(SIGINT, on_sigint);
    bool tty = isatty(2);
    double t_start = now_s(), t_first = 0, deadline = o.time_budget > 0 ? t_start + o.time_budget : INFINITY;
    int64_t first_step = em_trainer_get_step(tr), timed_from = -1, timed_tokens = 0;
    bool stopped_early = false;
    while (em_trainer_get_step(tr) < c->max_steps) {
        em_train_stats st;
        if (em_trainer_step(tr, &st)) {
            if (tty) fprintf(stderr, "\n");
            fail("training step");
            goto done;
        }
        double t = now_s();
        if (timed_from < 0) { /* the first step compiles: measure speed from the second on */
            timed_from = st.step;
            t_first = t;
        } else {
            timed_tokens += st.tokens;
        }
        double rate = timed_tokens > 0 ? timed_tokens / (t - t_first) : 0;
        double per_step = st.tokens > 0 && rate > 0 ? st.tokens / rate : NAN;
        char eta[32];
        fmt_time(eta, sizeof eta, per_step * (double)(c->max_steps - st.step));
        bool last = st.step == c->max_steps;
        bool line = tty || last || st.step == first_step + 1 || st.step % (o.log_every > 0 ? o.log_every : 1) == 0;
        if (line)
            fprintf(stderr, "%sstep %lld/%lld | loss %.4f | lr %.2e | norm %.3f | %.0f tok/s | ETA %s%s",
                    tty ? "\r" : "", (long long)st.step, (long long)c->max_steps, st.loss, st.lr, st.grad_norm, rate,
                    eta, tty ? "\033[K" : "\n");
        if (!isfinite(st.loss)) {
            fprintf(stderr, "%sember train: the loss is %g at step %lld: lower --lr or raise --warmup\n",
                    tty ? "\n" : "", st.loss, (long long)st.step);
            goto done;
        }
        if (o.eval_every > 0 && st.step % o.eval_every == 0 && !last) {
            double v = em_trainer_eval(tr, o.eval_batches);
            fprintf(stderr, "%sstep %lld: val loss %.4f (unigram entropy %.4f) nats/token\n", tty ? "\n" : "",
                    (long long)st.step, v, unigram);
        }
        bool stop = interrupted || now_s() >= deadline;
        if ((o.save_every > 0 && st.step % o.save_every == 0) || last || stop) {
            if (em_trainer_save(tr, ckpt)) {
                fail("saving the checkpoint");
                goto done;
            }
        }
        if (stop && !last) {
            fprintf(stderr, "%s%s at step %lld: checkpoint saved in %s; run again with --resume to continue\n",
                    tty ? "\n" : "", interrupted ? "interrupted" : "time budget reached", (long long)st.step, ckpt);
            stopped_early = true;
            break;
        }
    }
    if (tty && em_trainer_get_step(tr) > first_step) fprintf(stderr, "\n");
    if (stopped_early) {
        rc = 0;
        goto done;
    }
    if (em_trainer_get_step(tr) > first_step || !exists(modelp)) {
        if (em_model_save(m, modelp)) {
            fail("saving the model");
            goto done;
        }
        fprintf(stderr, "trained %lld steps in %.1f s; model saved to %s\n",
                (long long)(em_trainer_get_step(tr) - first_step), now_s() - t_start, modelp);
    } else {
        fprintf(stderr, "the run in %s has finished (%lld steps): validation and a sample\n", out,
                (long long)em_trainer_get_step(tr));
    }
    double v = em_trainer_eval(tr, 0);
    if (!isfinite(v)) {
        fail("validation");
        goto done;
    }
    fprintf(stderr, "val loss %.4f nats/token (unigram entropy of the corpus %.4f nats/token) over %lld validation "
            "tokens\n", v, unigram, (long long)(em_dataset_val_windows(data, c->seq_len) / c->batch) * c->batch *
            c->seq_len);
    /* the sample's seed: the run's, or --seed on a resumed run (a new sample from a finished run) */
    rc = o.sample_tokens > 0 ? print_sample(m, tok, &o, given[flag_index("seed")] ? sample_seed : c->seed) : 0;
done:
    em_trainer_free(tr);
    em_dataset_free(data);
    em_tokenizer_free(tok);
    return rc;
}
