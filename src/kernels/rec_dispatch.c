/* Choose the recurrent-step kernel table once, from CPU detection and FL_KERNELS. */
#include "rec_kernels.h"

#include <cblas.h>
#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdbool.h>
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

const fl_rec_kernels *fl_rec_gemm_nt_choice(int n, int K) {
    const fl_rec_kernels *k = fl_rec_kernels_get();
    if (!k->gemm_nt || K < 64 || openblas_get_num_threads() != 1) return NULL;
    pthread_once(&blas_once, probe_blas);
    return (!blas_avx512 || n <= 64) ? k : NULL;
}
