/* fuzz_llama2c.c - libFuzzer target for the llama2.c checkpoint reader: any bytes either load
 * (with every tensor the header promises) or fail with an error; nothing leaks. */
#include "io/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    em_llama2c_config c;
    em_state_dict_t *sd = NULL;
    if (emio_llama2c_load_mem(data, size, &c, &sd) != EM_OK) {
        if (sd || !em_last_error()[0]) __builtin_trap();
        return 0;
    }
    int64_t want = 1 + 9 * (int64_t)c.n_layers + 1 + (c.shared_classifier ? 0 : 1);
    if (em_state_dict_count(sd) != want || c.dim <= 0 || c.dim % c.n_heads) __builtin_trap();
    em_state_dict_free(sd);
    if (em_live_tensors() != 0) __builtin_trap();
    return 0;
}
