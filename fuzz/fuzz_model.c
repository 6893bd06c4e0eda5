/* fuzz_model.c - libFuzzer target for Ember's model files (nn/checkpoint.c): any bytes either give
 * a model or fail with an error (no crash, no leak, no read out of bounds, no allocation beyond a
 * small multiple of the input: the config is checked against what the file holds before the model
 * is made). A model that loads must save and load back to the same parameters. */
#include "io/io.h"
#include "nn/nn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    em_state_dict_t *sd = NULL;
    if (emio_safetensors_load_mem(data, size, &sd) != EM_OK) return 0; /* fuzz_safetensors covers this */
    em_model_t *m = emn_model_from_state_dict(sd, "fuzz");
    em_state_dict_free(sd);
    if (!m) {
        if (!em_last_error()[0]) __builtin_trap(); /* failures say why */
        return 0;
    }
    /* round trip through the writer and the reader */
    em_state_dict_t *out = emn_model_state_dict(m, "model");
    emio_buf b = {0};
    em_state_dict_t *back = NULL;
    em_model_t *r = NULL;
    if (!out || emio_safetensors_serialize(out, &b) || emio_safetensors_load_mem(b.p, b.n, &back) ||
        !(r = emn_model_from_state_dict(back, "fuzz round trip")) || em_model_num_params(r) != em_model_num_params(m))
        __builtin_trap();
    free(b.p);
    em_state_dict_free(out);
    em_state_dict_free(back);
    em_model_free(r);
    em_model_free(m);
    if (em_live_tensors() != 0) __builtin_trap();
    return 0;
}
