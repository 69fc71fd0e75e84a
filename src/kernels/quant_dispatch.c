/* Choose the low-precision kernel table once, from CPU detection and FL_KERNELS (as dispatch.c does
 * for fl_kernels). Levels, best first: avx512 (AVX-512 F, VL, BW and VNNI: quant_avx512.c is
 * compiled with all four), avx2 (AVX2 + FMA), ref. An unknown name or a level the CPU lacks is
 * ignored: the best level the CPU has is used. */
#include "quant.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static const fl_qkernels *chosen;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static bool cpu_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static bool cpu_has_avx512_vnni(void) {
    __builtin_cpu_init();
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");
}

const fl_qkernels *fl_qkernels_by_name(const char *name) {
    if (!name) return NULL;
    if (strcmp(name, "ref") == 0) return &fl_qkernels_ref;
    if (strcmp(name, "avx2") == 0) return cpu_has_avx2() ? &fl_qkernels_avx2 : NULL;
    if (strcmp(name, "avx512") == 0) return cpu_has_avx512_vnni() ? &fl_qkernels_avx512 : NULL;
    return NULL;
}

static void choose(void) {
    const char *want = getenv("FL_KERNELS");
    const fl_qkernels *k = NULL;
    if (want && *want) k = fl_qkernels_by_name(want);
    if (!k) k = fl_qkernels_by_name("avx512");
    if (!k) k = fl_qkernels_by_name("avx2");
    chosen = k ? k : &fl_qkernels_ref;
}

const fl_qkernels *fl_qkernels_get(void) {
    pthread_once(&once, choose);
    return chosen;
}
