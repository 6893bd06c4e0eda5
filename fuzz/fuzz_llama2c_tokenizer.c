/* fuzz_llama2c_tokenizer.c - libFuzzer target for the llama2.c tokenizer.bin loader and
 * run.c-style encoder. Input: 2 bytes of vocab_size (little-endian, 0 = every token), the
 * tokenizer.bin bytes, FUZZ_SEP, text. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    int32_t vocab = data[0] | (data[1] << 8);
    size_t at = 2, nf, nt;
    const uint8_t *file = fuzz_part(data, size, &at, &nf);
    const uint8_t *text = fuzz_part(data, size, &at, &nt);
    em_tokenizer_t *t = emio_llama2c_tok_parse(file, nf, vocab);
    if (!t) {
        if (!em_last_error()[0]) __builtin_trap();
        return 0;
    }
    fuzz_roundtrip(t, text, nt, false, false);
    fuzz_roundtrip(t, text, nt, true, false);
    for (int32_t id = 0; id < em_tokenizer_vocab_size(t); id++) {
        size_t len;
        if (!em_tokenizer_decode_one(t, 1, id, &len)) __builtin_trap();
    }
    em_tokenizer_free(t);
    return 0;
}
