/* libFuzzer harness: the trainer checkpoint loader (fl_trainer_resume's parser, from memory).
 *
 * A checkpoint ends with a 64-bit FNV-1a hash of every byte before it, which random mutations
 * almost never get right, so the fuzzer would never get past the checksum. The harness therefore
 * rewrites the last 8 bytes with the correct hash of the rest before loading (a copy of the input),
 * so every field the loader trusts is reached; inputs shorter than 8 bytes are loaded as they are. */
#include "memload.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    if (size >= 8) {
        uint64_t h = 0xcbf29ce484222325ULL;
        for (size_t i = 0; i + 8 < size; i++) h = (h ^ buf[i]) * 0x100000001b3ULL;
        memcpy(buf + size - 8, &h, 8); /* little-endian host, as the checkpoint format */
    }
    fl_model *m = (fl_model *)(uintptr_t)1;
    fl_trainer *t = (fl_trainer *)(uintptr_t)1;
    fl_status st = fl_trainer_resume_memory(buf, size, "fuzz.ckpt", &m, &t);
    if (st == FL_OK) {
        if (!m || !t) abort();
        fl_trainer_free(t);
        fl_model_free(m);
    } else if (m || t || st > 0 || !fl_last_error()[0]) {
        abort(); /* an error must leave both outputs NULL and say what went wrong */
    }
    free(buf);
    return 0;
}
