/* Choose the kernel table once, from CPU detection and FL_KERNELS.
 *
 * Levels, best first: avx512 (needs AVX-512 F, VL, DQ and BW: avx512.c is compiled with all four,
 * so the compiler may use any of them), avx2 (AVX2 + FMA), ref (scalar, always there).
 * FL_KERNELS=ref|avx2|avx512 forces a level. An unknown name, or a level this CPU lacks, is
 * ignored: the best level the CPU has is used instead (no error, no message: the library never
 * prints). fl_kernels_get()->name tells which table is in use. */
#include "kernels.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static const fl_kernels *chosen;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static bool cpu_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static bool cpu_has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") && cpu_has_avx2();
}

const fl_kernels *fl_kernels_by_name(const char *name) {
    if (!name) return NULL;
    if (strcmp(name, "ref") == 0) return &fl_kernels_ref;
    if (strcmp(name, "avx2") == 0) return cpu_has_avx2() ? &fl_kernels_avx2 : NULL;
    if (strcmp(name, "avx512") == 0) return cpu_has_avx512() ? &fl_kernels_avx512 : NULL;
    return NULL;
}

static void choose(void) {
    const char *want = getenv("FL_KERNELS");
    const fl_kernels *k = NULL;
    if (want && *want) k = fl_kernels_by_name(want);
    if (!k) k = fl_kernels_by_name("avx512");
    if (!k) k = fl_kernels_by_name("avx2");
    chosen = k ? k : &fl_kernels_ref;
}

const fl_kernels *fl_kernels_get(void) {
    pthread_once(&once, choose);
    return chosen;
}
