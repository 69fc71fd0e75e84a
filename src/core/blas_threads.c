/* OpenBLAS thread policy: see blas_threads.h. */
#include "blas_threads.h"

#include <cblas.h>

int fl_blas_threads(void) { return openblas_get_num_threads(); }

void fl_blas_set_threads(int n) { openblas_set_num_threads(n < 1 ? 1 : n); }

void fl_blas_for_sessions(void) { openblas_set_num_threads(1); }

int fl_blas_single_begin(void) {
    int prev = openblas_get_num_threads();
    openblas_set_num_threads(1);
    return prev;
}

void fl_blas_single_end(int previous) { fl_blas_set_threads(previous); }
