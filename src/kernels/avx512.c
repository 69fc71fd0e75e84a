/* AVX-512 kernels (this file alone is compiled with -mavx512f/vl/dq/bw; dispatch.c only hands it
 * out when the CPU has all four). Only AVX-512F intrinsics are used; the other flags merely let
 * the compiler use them. Scalar references: ref.c.
 *
 * Same maths as avx2.c (Cephes expf range reduction + polynomial, ~1 ulp; Cephes tanhf odd
 * polynomial below |x| = 0.625), with 2^n applied by vscalefps and remainders by lane masks.
 * Inputs to exp are clamped to [EXP_LO, EXP_HI], so nothing overflows or turns into NaN; a NaN
 * input stays NaN, as in ref.c. */
#include "kernels.h"

#include <immintrin.h>
#include <stdint.h>

#define EXP_HI 88.0f
#define EXP_LO -87.3f

static inline __m512 exp16(__m512 x) {
    // x second in both: min/max return the second operand when either is NaN, so NaN stays NaN.
    x = _mm512_min_ps(_mm512_set1_ps(EXP_HI), _mm512_max_ps(_mm512_set1_ps(EXP_LO), x));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    // r = x - n ln2, ln2 split so the first product is exact
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    __m512 y = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(y, n);  // y 2^n
}

static inline __m512 sigmoid16(__m512 x) {
    __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_div_ps(one, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

static inline __m512 tanh16(__m512 x) {
    __m512 a = _mm512_abs_ps(x);
    // small |x|: x + x z P(z), z = x^2
    __m512 z = _mm512_mul_ps(x, x);
    __m512 p = _mm512_set1_ps(-5.70498872745e-3f);
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(2.06390887954e-2f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-5.37397155531e-2f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.33314422036e-1f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-3.33332819422e-1f));
    __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), x, x);
    // large |x|: sign(x) (1 - 2 / (e^{2|x|} + 1))
    __m512 one = _mm512_set1_ps(1.0f);
    __m512 e = exp16(_mm512_add_ps(a, a));
    __m512 big = _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, one)));
    __m512i sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MIN));
    big = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(big), sign));
    __mmask16 is_small = _mm512_cmp_ps_mask(a, _mm512_set1_ps(0.625f), _CMP_LT_OQ);
    return _mm512_mask_blend_ps(is_small, big, small);
}

static void lstm_cell_avx512(int batch, int H, const float *restrict gates, int ldg, float *restrict c,
                             int ldc, float *restrict h, int ldh) {
    for (int b = 0; b < batch; b++) {
        const float *g = gates + (size_t)b * ldg;  // g: (4H) = i | f | g | o
        float *cb = c + (size_t)b * ldc;
        float *hb = h + (size_t)b * ldh;
        for (int j = 0; j < H; j += 16) {
            // all lanes for full vectors, the first H - j lanes for the remainder
            __mmask16 m = H - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (H - j)) - 1u);
            __m512 i = sigmoid16(_mm512_maskz_loadu_ps(m, g + j));
            __m512 f = sigmoid16(_mm512_maskz_loadu_ps(m, g + H + j));
            __m512 gg = tanh16(_mm512_maskz_loadu_ps(m, g + 2 * H + j));
            __m512 o = sigmoid16(_mm512_maskz_loadu_ps(m, g + 3 * H + j));
            __m512 cn = _mm512_fmadd_ps(f, _mm512_maskz_loadu_ps(m, cb + j), _mm512_mul_ps(i, gg));
            _mm512_mask_storeu_ps(cb + j, m, cn);
            _mm512_mask_storeu_ps(hb + j, m, _mm512_mul_ps(o, tanh16(cn)));
        }
    }
}

const fl_kernels fl_kernels_avx512 = {
    .name = "avx512",
    .lstm_cell = lstm_cell_avx512,
};
