/* fuzz_common.h - what the tokenizer fuzz targets share: splitting one input into parts and
 * checking that an encode/decode round trip gives the text back. */
#ifndef EMBER_FUZZ_COMMON_H
#define EMBER_FUZZ_COMMON_H

#include "io/io.h"

/* parts of the input are separated by this sequence (invalid UTF-8, rare in seeds) */
#define FUZZ_SEP "\xfe\xff\xfe"
#define FUZZ_SEP_LEN 3

/* the next part of data[*at .. n): its start and length; *at moves past the separator */
static inline const uint8_t *fuzz_part(const uint8_t *data, size_t n, size_t *at, size_t *len) {
    const uint8_t *p = data + *at;
    size_t rest = n - *at;
    const uint8_t *sep = rest >= FUZZ_SEP_LEN ? memmem(p, rest, FUZZ_SEP, FUZZ_SEP_LEN) : NULL;
    *len = sep ? (size_t)(sep - p) : rest;
    *at += *len + (sep ? FUZZ_SEP_LEN : 0);
    return p;
}

/* encodes text; checks ids are in range and decode works; with exact, the bytes come back */
static inline void fuzz_roundtrip(const em_tokenizer_t *t, const uint8_t *text, size_t n, bool bos, bool exact) {
    int32_t *ids = NULL;
    size_t k = 0;
    if (em_tokenizer_encode(t, (const char *)text, n, bos, &ids, &k) != EM_OK) {
        if (ids || !em_last_error()[0]) __builtin_trap();
        return;
    }
    for (size_t i = 0; i < k; i++)
        if (ids[i] < 0 || ids[i] >= em_tokenizer_vocab_size(t)) __builtin_trap();
    size_t m;
    char *back = em_tokenizer_decode(t, ids, k, &m);
    if (!back) __builtin_trap();
    if (exact && (m != n || memcmp(back, text, n))) __builtin_trap();
    free(back);
    free(ids);
}

#endif
