/* Choose the recurrent-step kernel table once, from CPU detection and FL_KERNELS. */
#include "rec_kernels.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const fl_rec_kernels *chosen;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static int has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static int has_avx512(void) {
    __builtin_cpu_init();
    return has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw");
}

const fl_rec_kernels *fl_rec_kernels_by_name(const char *name) {
    if (!name) return NULL;
    if (strcmp(name, "ref") == 0) return &fl_rec_kernels_ref;
    if (strcmp(name, "avx2") == 0) return has_avx2() ? &fl_rec_kernels_avx2 : NULL;
    if (strcmp(name, "avx512") == 0) return has_avx512() ? &fl_rec_kernels_avx512 : NULL;
    return NULL;
}

static void choose(void) {
    const char *want = getenv("FL_KERNELS");
    const fl_rec_kernels *k = (want && *want) ? fl_rec_kernels_by_name(want) : NULL;
    if (!k) k = has_avx512() ? &fl_rec_kernels_avx512 : has_avx2() ? &fl_rec_kernels_avx2 : &fl_rec_kernels_ref;
    chosen = k;
}

const fl_rec_kernels *fl_rec_kernels_get(void) {
    pthread_once(&once, choose);
    return chosen;
}
