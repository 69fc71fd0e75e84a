/* libFuzzer harness: the safetensors model loader (fl_model_load's parser, from memory).
 * Any input must give FL_OK and a model, or an error status, no model and an error text. */
#include "memload.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fl_model *m = (fl_model *)(uintptr_t)1;
    fl_status st = fl_model_load_memory(data, size, "fuzz.safetensors", &m);
    if (st == FL_OK) {
        if (!m) abort();
        fl_model_free(m);
    } else if (m || st > 0 || !fl_last_error()[0]) {
        abort(); /* an error must leave *out NULL and say what went wrong */
    }
    return 0;
}
