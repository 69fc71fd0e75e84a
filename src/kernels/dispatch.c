/* Choose the kernel table once, from CPU detection and FL_KERNELS.
 *
 * Levels, best first: avx512 (needs AVX-512 F, VL, DQ and BW: avx512.c is compiled with all four,
 * so the compiler may use any of them), avx2 (AVX2 + FMA), ref (scalar, always there).
 * FL_KERNELS=ref|avx2|avx512 forces a level. An unknown name, or a level this CPU lacks, is
 * ignored: the best level the CPU has is used instead (no error, no message: the library never
 * prints). fl_kernels_get()->name tells which table is in use.
 *
 * A table may hand out a lower level's kernel where its own is slower; none does today. The avx512
 * table, measured against avx2 on the first AVX-512 machine (docs/kernels_avx512.md, bench_k512),
 * is as fast or faster at every kernel and runtime shape there (batch-1 gate_cell equal, both at the
 * L3 read limit). */
#include "kernels.h"
#include "blas_threads.h"
#include "tuning_consts.h"

#include <cblas.h>
#include <ctype.h>
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

/* OpenBLAS picks its kernels by core (OPENBLAS_CORETYPE can force one): with its AVX-512 kernels it
 * beats gemm_nt on tall products, with the AVX2 ones (Haswell, as these machines set) it does not. */
static bool blas_avx512;
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

static void probe_blas(void) {
    const char *core = openblas_get_corename();
    char c[32] = {0};
    for (int i = 0; core && core[i] && i < 31; i++) c[i] = (char)tolower((unsigned char)core[i]);
    blas_avx512 = strstr(c, "skylakex") || strstr(c, "cooperlake") || strstr(c, "sapphire");
}

const fl_kernels *fl_kernels_gemm_nt_choice(int n, int K) {
    const fl_kernels *k = fl_kernels_get();
    if (!k->gemm_nt || K < FL_GEMM_NT_MIN_K || fl_blas_threads() != 1) return NULL;
    pthread_once(&blas_once, probe_blas);
    return (!blas_avx512 || n <= 64) ? k : NULL;
}
