/* generate.c - `ember generate`: stream text from a model, like llama2.c's `run`.
 *
 *   ember generate --checkpoint PATH --tokenizer PATH [--prompt TEXT] [--steps N]
 *                  [--temperature T] [--top-k K] [--top-p P] [--seed S] [--dtype D] [--eager]
 *
 * The model comes from em_model_load (an Ember model or training checkpoint, a llama2.c .bin, a
 * Hugging Face GPT-2 safetensors file). The tokenizer is told by its path: a directory holds
 * GPT-2's encoder.json and vocab.bpe; a file named *.json is GPT-2's encoder.json with vocab.bpe
 * beside it; a file starting with "EMBERTOK" is Ember's own (BPE or char); anything else is read as
 * llama2.c's tokenizer.bin (with the model's vocab_size). --dtype converts the loaded model
 * (em_model_to_dtype, like PyTorch's model.to(dtype)): bf16 halves the bytes a decode step streams;
 * without it the model keeps the file's dtype (f32 for llama2.c and Hugging Face files). The prompt is encoded with the BOS token
 * first (no prompt: BOS alone, as run.c starts); generation stops after --steps new tokens, at the
 * end of the context, or when the model emits the delimiter: BOS for llama2.c tokenizers (run.c
 * stops there; TinyStories separate stories with BOS), <|endoftext|> for the others.
 * stdout gets text only: the prompt's pieces after BOS then each token as it arrives (decoded with
 * em_tokenizer_decode_one, as run.c prints them), and a final newline; stderr gets everything
 * else (load time, prefill ms, tokens/s). Exit 0, 1 on a failure (a file that cannot be read), 2 on
 * a usage error. llama2.c's `-n N` counts the prompt's tokens after BOS too; --steps counts new
 * tokens only, so without a prompt the two agree.
 */
#include <ember.h>

#include "cmd.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void usage(FILE *f) {
    fprintf(f, "usage: ember generate --checkpoint PATH --tokenizer PATH [options]\n"
               "  --checkpoint PATH   Ember model/checkpoint, llama2.c .bin, or Hugging Face GPT-2 .safetensors\n"
               "  --tokenizer PATH    Ember tokenizer file, llama2.c tokenizer.bin, GPT-2 encoder.json (vocab.bpe\n"
               "                      beside it) or a directory holding encoder.json and vocab.bpe\n"
               "  --prompt TEXT       start from BOS + TEXT (default: BOS alone)\n"
               "  --steps N           new tokens to generate (default 256; capped by the context)\n"
               "  --temperature T     0 is greedy (argmax); default 1.0\n"
               "  --top-k K           sample among the K most likely tokens (default 0: off)\n"
               "  --top-p P           nucleus sampling in (0, 1) (default 0.9; 0 or 1: off)\n"
               "  --seed S            the sampling stream (default 1337)\n"
               "  --dtype D           convert the model to f32, bf16, f16 or f64 first (default: as stored)\n"
               "  --eager             run the decode step eagerly instead of compiled\n");
}

static int usage_error(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "ember generate: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n(ember generate --help lists the options)\n");
    return 2;
}

static bool parse_double(const char *s, double *v) {
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    return *s && !*end && !errno && isfinite(*v);
}
static bool parse_long(const char *s, long long lo, long long hi, long long *v) {
    char *end;
    errno = 0;
    *v = strtoll(s, &end, 10);
    return *s && !*end && !errno && *v >= lo && *v <= hi;
}
static bool parse_u64(const char *s, uint64_t *v) {
    char *end;
    errno = 0;
    *v = strtoull(s, &end, 10);
    return *s && *s != '-' && !*end && !errno;
}

/* a floating dtype by name (em_dtype_name's spelling, or PyTorch's) */
static bool parse_dtype(const char *s, em_dtype *d) {
    static const struct { const char *name; em_dtype d; } names[] = {
        {"f32", EM_F32}, {"float32", EM_F32}, {"bf16", EM_BF16}, {"bfloat16", EM_BF16},
        {"f16", EM_F16}, {"float16", EM_F16}, {"f64", EM_F64}, {"float64", EM_F64},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(s, names[i].name)) {
            *d = names[i].d;
            return true;
        }
    return false;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* the tokenizer by path (the rule at the top); NULL + em_last_error */
static em_tokenizer_t *load_tokenizer(const char *path, int32_t model_vocab) {
    struct stat st;
    char enc[4096], bpe[4096];
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(enc, sizeof enc, "%s/encoder.json", path);
        snprintf(bpe, sizeof bpe, "%s/vocab.bpe", path);
        return em_tokenizer_load_gpt2(enc, bpe);
    }
    if (ends_with(path, ".json")) {
        snprintf(bpe, sizeof bpe, "%s", path);
        char *slash = strrchr(bpe, '/');
        snprintf(slash ? slash + 1 : bpe, sizeof bpe - (size_t)(slash ? slash + 1 - bpe : 0), "vocab.bpe");
        return em_tokenizer_load_gpt2(path, bpe);
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        em_tokenizer_load_llama2c(path, model_vocab); /* for its message naming the path */
        return NULL;
    }
    char magic[8] = {0};
    size_t n = fread(magic, 1, 8, f);
    fclose(f);
    if (n == 8 && !memcmp(magic, "EMBERTOK", 8)) return em_tokenizer_load(path);
    return em_tokenizer_load_llama2c(path, model_vocab);
}

typedef struct {
    const em_tokenizer_t *tok;
    int32_t prev, stop;
    int64_t printed;
} stream_ctx;

static void put_piece(stream_ctx *c, int32_t token) {
    size_t len = 0;
    const char *piece = em_tokenizer_decode_one(c->tok, c->prev, token, &len);
    if (piece && len) fwrite(piece, 1, len, stdout);
    fflush(stdout);
    c->prev = token;
}

static bool on_token(void *vc, int row, int64_t i, int32_t token) {
    stream_ctx *c = vc;
    (void)row;
    (void)i;
    if (token != c->stop) put_piece(c, token);
    c->printed++;
    return true;
}

int cmd_generate(int argc, char **argv) {
    const char *ckpt = NULL, *tok_path = NULL, *prompt = NULL;
    long long steps = 256, top_k = 0;
    double temperature = 1.0, top_p = 0.9;
    uint64_t seed = 1337;
    bool eager = false, convert = false;
    em_dtype dtype = EM_F32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--eager")) {
            eager = true;
            continue;
        }
        if (strncmp(a, "--", 2)) return usage_error("unexpected argument '%s'%s", a, "");
        if (i + 1 >= argc) return usage_error("%s needs a value%s", a, "");
        const char *v = argv[++i];
        if (!strcmp(a, "--checkpoint")) ckpt = v;
        else if (!strcmp(a, "--tokenizer")) tok_path = v;
        else if (!strcmp(a, "--prompt")) prompt = v;
        else if (!strcmp(a, "--steps")) {
            if (!parse_long(v, 1, 1 << 30, &steps)) return usage_error("--steps '%s' is not an integer >= 1%s", v, "");
        } else if (!strcmp(a, "--temperature")) {
            if (!parse_double(v, &temperature) || temperature < 0)
                return usage_error("--temperature '%s' is not a number >= 0 (0: greedy)%s", v, "");
        } else if (!strcmp(a, "--top-k")) {
            if (!parse_long(v, 0, 1 << 30, &top_k)) return usage_error("--top-k '%s' is not an integer >= 0%s", v, "");
        } else if (!strcmp(a, "--top-p")) {
            if (!parse_double(v, &top_p) || top_p < 0 || top_p > 1)
                return usage_error("--top-p '%s' is not a number in [0, 1]%s", v, "");
        } else if (!strcmp(a, "--dtype")) {
            if (!parse_dtype(v, &dtype))
                return usage_error("--dtype '%s' is not one of f32, bf16, f16, f64%s", v, "");
            convert = true;
        } else if (!strcmp(a, "--seed")) {
            if (!parse_u64(v, &seed)) return usage_error("--seed '%s' is not a non-negative integer%s", v, "");
        } else
            return usage_error("unknown option '%s'%s", a, "");
    }
    if (!ckpt || !tok_path) return usage_error("--checkpoint and --tokenizer are required%s%s", "", "");

    double t0 = now_ms();
    em_model_t *m = em_model_load(ckpt);
    if (!m) {
        fprintf(stderr, "ember generate: cannot load the model: %s\n", em_last_error());
        return 1;
    }
    em_model_set_training(m, false);
    if (convert && em_model_to_dtype(m, dtype) != EM_OK) {
        fprintf(stderr, "ember generate: cannot convert the model to %s: %s\n", em_dtype_name(dtype), em_last_error());
        em_model_free(m);
        return 1;
    }
    const em_model_config *c = em_model_get_config(m);
    em_tokenizer_t *tok = load_tokenizer(tok_path, c->vocab_size);
    if (!tok) {
        fprintf(stderr, "ember generate: cannot load the tokenizer: %s\n", em_last_error());
        em_model_free(m);
        return 1;
    }
    bool l2c = em_tokenizer_kind_of(tok) == EM_TOKENIZER_LLAMA2C;
    int status = 0;
    if (em_tokenizer_vocab_size(tok) > c->vocab_size) {
        fprintf(stderr, "ember generate: the tokenizer has %d tokens but the model only %d: they do not belong "
                "together\n", em_tokenizer_vocab_size(tok), c->vocab_size);
        status = 1;
    }
    fprintf(stderr, "model: %s, %d layers, %d heads (%d kv), C %d, V %d, context %d, %.2fM parameters in %s; "
            "loaded in %.0f ms\n", c->arch == EM_ARCH_GPT2 ? "GPT-2" : "Llama", c->n_layer, c->n_head, c->n_kv_head,
            c->n_embd, c->vocab_size, c->block_size, (double)em_model_param_count(m) / 1e6, em_dtype_name(c->dtype),
            now_ms() - t0);

    int32_t bos = em_tokenizer_bos_id(tok), *ids = NULL, *out = NULL;
    if (bos < 0) bos = em_tokenizer_eos_id(tok) >= 0 ? em_tokenizer_eos_id(tok) : 0;
    size_t n_ids = 0;
    if (!status) {
        if (prompt && prompt[0]) {
            if (em_tokenizer_encode(tok, prompt, strlen(prompt), true, &ids, &n_ids) != EM_OK) {
                fprintf(stderr, "ember generate: cannot encode the prompt: %s\n", em_last_error());
                status = 1;
            }
        } else if ((ids = malloc(sizeof *ids))) {
            ids[0] = bos;
            n_ids = 1;
        }
    }
    if (!status && (int64_t)n_ids > c->block_size) {
        fprintf(stderr, "ember generate: the prompt is %zu tokens, longer than the model's context %d\n", n_ids,
                c->block_size);
        status = 1;
    }
    if (!status && (long long)n_ids + steps - 1 > c->block_size) {
        long long fit = c->block_size - (long long)n_ids + 1;
        fprintf(stderr, "--steps %lld capped to %lld: the context holds %d positions\n", steps, fit, c->block_size);
        steps = fit;
    }
    if (!status && !(out = malloc(sizeof(int32_t) * (size_t)steps))) status = 1;
    if (!status) {
        /* stop at the delimiter: BOS for llama2.c (run.c's rule), <|endoftext|> otherwise */
        int32_t stop = l2c ? bos : em_tokenizer_eos_id(tok);
        stream_ctx sc = {tok, ids[0], stop, 0};
        for (size_t i = 1; i < n_ids; i++) put_piece(&sc, ids[i]); /* the prompt, as run.c prints it */
        em_generate_opts g = {.max_new_tokens = (int)steps, .temperature = temperature, .top_k = (int)top_k,
                              .top_p = top_p, .seed = seed, .stop_at_eos = stop >= 0 && stop < c->vocab_size,
                              .eos_id = stop, .eager = eager, .on_token = on_token, .ctx = &sc};
        const int32_t *pp = ids;
        int64_t len = (int64_t)n_ids, out_len = 0;
        em_generate_stats st;
        em_status s = em_generate(m, &pp, &len, 1, &g, out, &out_len, &st);
        printf("\n");
        fflush(stdout);
        if (s != EM_OK) {
            fprintf(stderr, "ember generate: %s\n", em_last_error());
            status = 1;
        } else {
            double steps_s = st.decode_ms > 0 ? (double)st.decode_steps / (st.decode_ms / 1e3) : 0;
            fprintf(stderr, "%lld new tokens; prefill: %lld tokens in %.1f ms; decode: %lld steps in %.1f ms = %.1f "
                    "tokens/s (%s)\n", (long long)st.new_tokens, (long long)st.prefill_tokens, st.prefill_ms,
                    (long long)st.decode_steps, st.decode_ms, steps_s, eager ? "eager" : "compiled");
            if (!eager)
                fprintf(stderr, "decode program: %d compile(s) taking %.0f ms of the above; %.1f tokens/s without "
                        "them\n", st.decode_compiles, st.compile_ms,
                        st.decode_ms > st.compile_ms ? (double)st.decode_steps / ((st.decode_ms - st.compile_ms) / 1e3)
                                                     : 0.0);
        }
    }
    free(ids);
    free(out);
    em_tokenizer_free(tok);
    em_model_free(m);
    return status;
}
