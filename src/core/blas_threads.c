/* OpenBLAS thread policy (see blas_threads.h), and which of its cores it runs (fastlstm.h). */
#include "blas_threads.h"
#include "fastlstm/fastlstm.h"

#include <cblas.h>
#include <ctype.h>
#include <stdbool.h>
#include <string.h>

int fl_blas_threads(void) { return openblas_get_num_threads(); }

void fl_blas_set_threads(int n) { openblas_set_num_threads(n < 1 ? 1 : n); }

void fl_blas_for_sessions(void) { openblas_set_num_threads(1); }

int fl_blas_single_begin(void) {
    int prev = openblas_get_num_threads();
    openblas_set_num_threads(1);
    return prev;
}

void fl_blas_single_end(int previous) { fl_blas_set_threads(previous); }

const char *fl_blas_core(void) {
    const char *c = openblas_get_corename();
    return c ? c : "unknown";
}

/* OpenBLAS cores with AVX2-class kernels or better (lower case; a name that starts with one counts). */
static bool core_is_avx2_class(const char *name) {
    static const char *const good[] = {"haswell", "zen", "skylakex", "cooperlake", "sapphirerapids", "excavator"};
    char c[32] = {0};
    for (int i = 0; name[i] && i < 31; i++) c[i] = (char)tolower((unsigned char)name[i]);
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (!strncmp(c, good[i], strlen(good[i]))) return true;
    return false;
}

const char *fl_blas_advice_for(const char *core, bool avx2_fma, bool avx512) {
    if (!avx2_fma || !core || core_is_avx2_class(core)) return NULL;
    return avx512 ? "SkylakeX" : "Haswell";
}

const char *fl_blas_core_advice(void) {
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512cd");
    return fl_blas_advice_for(fl_blas_core(), avx2, avx512);
}
