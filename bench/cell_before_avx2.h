/* avx2.c's lstm_cell as it was before 2026-12-01's faster cell update (exp8, sigmoid8, tanh8: Cephes
 * exp, the small-|x| tanh polynomial and a blend; see avx2.c for today's), renamed *_old, for
 * bench_k512 --cell: one process holds the old and the new cell and alternates calls; its sigmoid /
 * tanh also serve gate_before_avx2.h. Compiled for avx2 + fma by the pragma below (include it
 * before anything compiled for AVX-512, so that immintrin.h's intrinsics carry their own targets);
 * only called when the CPU has both. Bench-only: not part of the library. */
#ifndef FL_BENCH_CELL_BEFORE_AVX2_H
#define FL_BENCH_CELL_BEFORE_AVX2_H

#include <immintrin.h>
#include <stddef.h>

#pragma GCC push_options
#pragma GCC target("avx2,fma")

#define CB_INL static inline __attribute__((always_inline))

CB_INL __m256 exp8_old(__m256 x) {
    x = _mm256_min_ps(_mm256_set1_ps(88.0f), _mm256_max_ps(_mm256_set1_ps(-87.3f), x));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 y = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}
CB_INL __m256 sigmoid8_old(__m256 x) {
    __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, exp8_old(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}
CB_INL __m256 tanh8_old(__m256 x) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 a = _mm256_andnot_ps(sign, x);
    __m256 z = _mm256_mul_ps(x, x);
    __m256 p = _mm256_set1_ps(-5.70498872745e-3f);
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954e-2f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531e-2f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036e-1f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422e-1f));
    __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 e = exp8_old(_mm256_add_ps(a, a));
    __m256 big = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
    big = _mm256_or_ps(big, _mm256_and_ps(sign, x));
    return _mm256_blendv_ps(big, small, _mm256_cmp_ps(a, _mm256_set1_ps(0.625f), _CMP_LT_OQ));
}
/* H a multiple of 8 (the --cell shapes are) */
static inline void cell_old256(int batch, int H, const float *restrict gates, int ldg, float *restrict c, int ldc,
                        float *restrict h, int ldh) {
    for (int b = 0; b < batch; b++) {
        const float *g = gates + (size_t)b * ldg;
        float *cb = c + (size_t)b * ldc, *hb = h + (size_t)b * ldh;
        for (int j = 0; j + 8 <= H; j += 8) {
            __m256 i = sigmoid8_old(_mm256_loadu_ps(g + j)), f = sigmoid8_old(_mm256_loadu_ps(g + H + j));
            __m256 gg = tanh8_old(_mm256_loadu_ps(g + 2 * H + j)), o = sigmoid8_old(_mm256_loadu_ps(g + 3 * H + j));
            __m256 cn = _mm256_fmadd_ps(f, _mm256_loadu_ps(cb + j), _mm256_mul_ps(i, gg));
            _mm256_storeu_ps(cb + j, cn);
            _mm256_storeu_ps(hb + j, _mm256_mul_ps(o, tanh8_old(cn)));
        }
    }
}

#pragma GCC pop_options
#endif
