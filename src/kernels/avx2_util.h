/* Shared by the AVX2 + FMA kernel files (avx2.c, avx2_pk.c; both compiled with -mavx2 -mfma). */
#ifndef FL_AVX2_UTIL_H
#define FL_AVX2_UTIL_H

#include <immintrin.h>

#define INL static inline __attribute__((always_inline))

/* Lanes [0, n) set. */
INL __m256i tail_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* The packed input projection (kernels.h, gemm_pk), in avx2_pk.c. */
void fl_gemm_pk_avx2(int n, int rows, int K, const float *restrict x, int ldx, const float *restrict pk,
                     const float *restrict bias, float *restrict y, int ldy);

#endif
