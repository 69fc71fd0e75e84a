/* AVX2 + FMA kernels (this file alone is compiled with -mavx2 -mfma; dispatch.c only hands it
 * out when the CPU has both). Scalar references: ref.c.
 *
 * exp is the Cephes expf scheme: x = n ln2 + r with n = round(x / ln2), |r| <= ln2/2, the
 * constant ln2 split in two (hi part exact in float) so r is exact, a degree-7 polynomial for
 * e^r and 2^n built in the exponent bits; ~1 ulp on the clamped range. Inputs are clamped to
 * [EXP_LO, EXP_HI] first (NaN passes through as NaN), so 2^n stays a normal float and nothing overflows: sigmoid(+-100)
 * gives 1 and ~6e-39 (libm: 1 and 0), tanh(+-100) gives +-1. tanh uses Cephes tanhf's odd
 * polynomial below |x| = 0.625 (no cancellation near 0) and 1 - 2 / (e^{2|x|} + 1) above.
 * Measured against double libm (test_kernels, test_nonlinearity_ulp): sigmoid <= 2.6 ulp on
 * [-20, 20], tanh <= 1.1 ulp on [-10, 10]; glibc's float versions in ref.c: 1.9 and 1.8. */
#include "kernels.h"

#include <immintrin.h>
#include <stdint.h>

#define EXP_HI 88.0f    /* e^88 = 1.65e38 < FLT_MAX even times the polynomial's 1.42 */
#define EXP_LO -87.3f   /* n >= -126: 2^n is normal */

static inline __m256 exp8(__m256 x) {
    // Clamp with x as the second operand of each: min/max return the second operand when either is
    // NaN, so a NaN input stays NaN (as in ref.c) instead of being clamped to a finite value.
    x = _mm256_min_ps(_mm256_set1_ps(EXP_HI), _mm256_max_ps(_mm256_set1_ps(EXP_LO), x));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    // r = x - n ln2, with ln2 = 0.693359375 - 2.12194440e-4 (first part exact in 10 bits)
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 y = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    // 2^n from the exponent field: n in [-126, 127]
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

static inline __m256 sigmoid8(__m256 x) {
    __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

static inline __m256 tanh8(__m256 x) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 a = _mm256_andnot_ps(sign, x);
    // small |x|: x + x z P(z), z = x^2
    __m256 z = _mm256_mul_ps(x, x);
    __m256 p = _mm256_set1_ps(-5.70498872745e-3f);
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954e-2f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531e-2f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036e-1f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422e-1f));
    __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
    // large |x|: sign(x) (1 - 2 / (e^{2|x|} + 1))
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 e = exp8(_mm256_add_ps(a, a));
    __m256 big = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
    big = _mm256_or_ps(big, _mm256_and_ps(sign, x));
    __m256 is_small = _mm256_cmp_ps(a, _mm256_set1_ps(0.625f), _CMP_LT_OQ);
    return _mm256_blendv_ps(big, small, is_small);
}

/* One vector of 8 units: c = f c + i g; h = o tanh(c). */
static inline void cell8(__m256 gi, __m256 gf, __m256 gg, __m256 go, __m256 *c, __m256 *h) {
    __m256 i = sigmoid8(gi), f = sigmoid8(gf), g = tanh8(gg), o = sigmoid8(go);
    __m256 cn = _mm256_fmadd_ps(f, *c, _mm256_mul_ps(i, g));
    *c = cn;
    *h = _mm256_mul_ps(o, tanh8(cn));
}

static void lstm_cell_avx2(int batch, int H, const float *restrict gates, int ldg, float *restrict c,
                           int ldc, float *restrict h, int ldh) {
    for (int b = 0; b < batch; b++) {
        const float *g = gates + (size_t)b * ldg;  // g: (4H) = i | f | g | o
        float *cb = c + (size_t)b * ldc;
        float *hb = h + (size_t)b * ldh;
        int j = 0;
        for (; j + 8 <= H; j += 8) {
            __m256 cv = _mm256_loadu_ps(cb + j), hv;
            cell8(_mm256_loadu_ps(g + j), _mm256_loadu_ps(g + H + j), _mm256_loadu_ps(g + 2 * H + j),
                  _mm256_loadu_ps(g + 3 * H + j), &cv, &hv);
            _mm256_storeu_ps(cb + j, cv);
            _mm256_storeu_ps(hb + j, hv);
        }
        if (j < H) {  // remainder of 1..7 units: masked lanes are neither read nor written
            __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(H - j), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            __m256 cv = _mm256_maskload_ps(cb + j, m), hv;
            cell8(_mm256_maskload_ps(g + j, m), _mm256_maskload_ps(g + H + j, m),
                  _mm256_maskload_ps(g + 2 * H + j, m), _mm256_maskload_ps(g + 3 * H + j, m), &cv, &hv);
            _mm256_maskstore_ps(cb + j, m, cv);
            _mm256_maskstore_ps(hb + j, m, hv);
        }
    }
}

const fl_kernels fl_kernels_avx2 = {
    .name = "avx2",
    .lstm_cell = lstm_cell_avx2,
};
