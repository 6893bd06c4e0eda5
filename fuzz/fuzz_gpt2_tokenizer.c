/* fuzz_gpt2_tokenizer.c - libFuzzer target for the GPT-2 tokenizer loader and encoder. Input:
 * encoder.json, FUZZ_SEP, vocab.bpe, FUZZ_SEP, text. A vocabulary that loads must encode any
 * text to ids that decode back to exactly the same bytes. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t at = 0, ne, nb, nt;
    const uint8_t *enc = fuzz_part(data, size, &at, &ne);
    const uint8_t *bpe = fuzz_part(data, size, &at, &nb);
    const uint8_t *text = fuzz_part(data, size, &at, &nt);
    em_tokenizer_t *t = emio_gpt2_parse((const char *)enc, ne, (const char *)bpe, nb);
    if (!t) {
        if (!em_last_error()[0]) __builtin_trap();
        return 0;
    }
    fuzz_roundtrip(t, text, nt, false, true);
    if (em_tokenizer_bos_id(t) >= 0) fuzz_roundtrip(t, text, nt, true, false);
    em_tokenizer_free(t);
    return 0;
}
