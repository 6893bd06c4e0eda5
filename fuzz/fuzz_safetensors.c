/* fuzz_safetensors.c - libFuzzer target for the safetensors reader: any bytes either load or
 * fail with an error (no crash, no leak, no read out of bounds); whatever loads must write
 * back and re-read to the same bytes. */
#include "io/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    em_state_dict_t *sd = NULL;
    if (emio_safetensors_load_mem(data, size, &sd) != EM_OK) {
        if (sd || !em_last_error()[0]) __builtin_trap(); /* failures return NULL and say why */
        return 0;
    }
    emio_buf a = {0}, b = {0};
    em_state_dict_t *back = NULL;
    if (emio_safetensors_serialize(sd, &a) || emio_safetensors_load_mem(a.p, a.n, &back) ||
        emio_safetensors_serialize(back, &b) || a.n != b.n || memcmp(a.p, b.p, a.n) ||
        em_state_dict_count(back) != em_state_dict_count(sd))
        __builtin_trap();
    free(a.p);
    free(b.p);
    em_state_dict_free(back);
    em_state_dict_free(sd);
    if (em_live_tensors() != 0) __builtin_trap();
    return 0;
}
