/* libFuzzer harness: the .npy reader (fl_npy_load's parser, from memory). On success every element
 * is read, so a count larger than the buffer shows up as a heap overflow. */
#include "memload.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fl_npy a;
    fl_status st = fl_npy_load_memory(data, size, "fuzz.npy", &a);
    if (st == FL_OK) {
        size_t isize = a.dtype == 'l' ? 8 : 4;
        const unsigned char *p = a.data;
        unsigned sum = 0;
        for (size_t i = 0; i < a.count * isize; i++) sum += p[i];
        (void)sum;
        if (a.count) (void)fl_npy_ids_to_i32(&a, 0, "fuzz.npy");
        fl_npy_free(&a);
    } else if (a.data || a.count || st > 0 || !fl_last_error()[0]) {
        abort(); /* an error must leave the array zeroed and say what went wrong */
    }
    return 0;
}
