/* Kernel dispatch table. A kernel is a plain function on raw pointers: no allocation, no error
 * paths, every remainder handled. ref.c holds the scalar reference of each; ISA files hold the
 * fast versions. The table is filled once from CPU detection; FL_KERNELS=ref|avx2|avx512 forces a
 * level (a level the CPU lacks falls back to the best it has). */
#ifndef FL_KERNELS_H
#define FL_KERNELS_H

#include <stddef.h>

typedef struct fl_kernels {
    const char *name; /* "ref", "avx2", "avx512" */

    /* LSTM cell update for `batch` rows, gates i, f, g, o stacked in each row of `gates`:
     *   gates: (batch, 4H) pre-activations, row stride ldg (already include biases)
     *   c: (batch, H) cell state, row stride ldc, updated in place
     *   h: (batch, H) hidden output, row stride ldh
     * i = sigmoid, f = sigmoid, g = tanh, o = sigmoid; c = f c + i g; h = o tanh(c). */
    void (*lstm_cell)(int batch, int H, const float *restrict gates, int ldg, float *restrict c,
                      int ldc, float *restrict h, int ldh);
} fl_kernels;

/* The table for this CPU (chosen once, thread-safe). */
const fl_kernels *fl_kernels_get(void);

/* Tables by name, for tests: NULL if that level is not built or the CPU lacks it. */
const fl_kernels *fl_kernels_by_name(const char *name);

/* Per-ISA tables (each defined in its own file). */
extern const fl_kernels fl_kernels_ref;
extern const fl_kernels fl_kernels_avx2;   /* AVX2 + FMA (src/kernels/avx2.c) */
extern const fl_kernels fl_kernels_avx512; /* AVX-512F (src/kernels/avx512.c) */

#endif
