/* fuzz_bpe.c - libFuzzer target for Ember's own tokenizers: the saved-file reader, the BPE
 * trainer and the char tokenizer. Input: one mode byte, then
 *   mode 0: a saved tokenizer file, FUZZ_SEP, text (the file must load or fail cleanly)
 *   mode 1: a training text; the trained tokenizer (vocab 257 + next byte % 200) must round
 *           trip its text and any text, and save/load to the same ids
 *   mode 2: a text for the char tokenizer, which must round trip it. */
#include "fuzz_common.h"

/* a and b encode text the same way (or both refuse it: a char tokenizer may lack a character) */
static void same_ids(const em_tokenizer_t *a, const em_tokenizer_t *b, const uint8_t *text, size_t n) {
    int32_t *x, *y;
    size_t nx, ny;
    em_status sx = em_tokenizer_encode(a, (const char *)text, n, true, &x, &nx);
    em_status sy = em_tokenizer_encode(b, (const char *)text, n, true, &y, &ny);
    if (sx != sy || (!sx && (nx != ny || (nx && memcmp(x, y, nx * sizeof *x))))) __builtin_trap();
    free(x);
    free(y);
}

static void save_load(const em_tokenizer_t *t, const uint8_t *text, size_t n) {
    emio_buf f = {0};
    if (emio_tokenizer_serialize(t, &f)) __builtin_trap();
    em_tokenizer_t *u = emio_tokenizer_parse(f.p, f.n);
    if (!u) __builtin_trap();
    same_ids(t, u, text, n);
    em_tokenizer_free(u);
    free(f.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    int mode = data[0] % 3;
    if (mode == 0) {
        size_t at = 1, nf, nt;
        const uint8_t *file = fuzz_part(data, size, &at, &nf);
        const uint8_t *text = fuzz_part(data, size, &at, &nt);
        em_tokenizer_t *t = emio_tokenizer_parse(file, nf);
        if (!t) {
            if (!em_last_error()[0]) __builtin_trap();
            return 0;
        }
        /* char tokenizers may lack characters of the text: then encode fails cleanly */
        fuzz_roundtrip(t, text, nt, false, em_tokenizer_kind_of(t) == EM_TOKENIZER_BPE);
        save_load(t, text, nt);
        em_tokenizer_free(t);
    } else if (mode == 1) {
        const uint8_t *text = data + 2;
        size_t n = size - 2;
        em_tokenizer_t *t = em_tokenizer_train_bpe((const char *)text, n, 257 + data[1] % 200);
        if (!t) __builtin_trap();
        fuzz_roundtrip(t, text, n, false, true);
        static const char other[] = "the quick \xc3\xa9 \xff <|endoftext|>";
        fuzz_roundtrip(t, (const uint8_t *)other, sizeof other - 1, true, false);
        save_load(t, text, n);
        em_tokenizer_free(t);
    } else {
        const uint8_t *text = data + 1;
        size_t n = size - 1;
        em_tokenizer_t *t = em_tokenizer_char((const char *)text, n);
        if (!t) __builtin_trap();
        fuzz_roundtrip(t, text, n, true, false);
        fuzz_roundtrip(t, text, n, false, true);
        save_load(t, text, n);
        em_tokenizer_free(t);
    }
    return 0;
}
