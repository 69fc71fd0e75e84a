/* AVX-512 low-precision kernels (layouts in quant.h). Compiled with -mavx512f -mavx512vl -mavx512bw
 * -mavx512vnni; chosen only where the CPU has all four.
 *
 * int8: vpdpbusd adds four u8 x s8 products into each int32 lane (no saturation, unlike vpmaddubsw),
 * which is why activations are u8 with zero point 128 and weights s8: one zmm of weights is one
 * k-quad of a 16-row sub-panel, the activation quad is broadcast, and the zero point is taken off
 * at the end: sum_k w (x - 128) = sum_k w x - 128 wsum. The sums are exact, equal to every level's.
 * bf16: the weight pair of a lane becomes two f32 by a shift and a mask (quant_ref.c says why the
 * activations stay f32). */
#include "quant.h"

#include <immintrin.h>

#define BT 6    /* batch rows per int8 tile: 24 accumulators + 4 weight registers */
#define BT_BF 4 /* per bf16 tile: 16 accumulators + 8 converted weight registers */

static inline __attribute__((always_inline)) void i8_tile(int nb, int Kq, const int8_t *p, const uint8_t *xq,
                                                          int ldxq, __m512i acc[BT][4]) {
    for (int b = 0; b < nb; b++)
        for (int g = 0; g < 4; g++) acc[b][g] = _mm512_setzero_si512();
    const int8_t *w = p;
    for (int kq = 0; kq < Kq; kq++, w += 4 * FL_QNB * 4) {
        __m512i w0 = _mm512_loadu_si512(w), w1 = _mm512_loadu_si512(w + 64);
        __m512i w2 = _mm512_loadu_si512(w + 128), w3 = _mm512_loadu_si512(w + 192);
        for (int b = 0; b < nb; b++) {
            int32_t quad;
            __builtin_memcpy(&quad, xq + (size_t)b * ldxq + 4 * kq, 4);
            __m512i xb = _mm512_set1_epi32(quad);
            acc[b][0] = _mm512_dpbusd_epi32(acc[b][0], xb, w0);
            acc[b][1] = _mm512_dpbusd_epi32(acc[b][1], xb, w1);
            acc[b][2] = _mm512_dpbusd_epi32(acc[b][2], xb, w2);
            acc[b][3] = _mm512_dpbusd_epi32(acc[b][3], xb, w3);
        }
    }
}

static void i8_tile_n(int nb, int Kq, const int8_t *p, const uint8_t *xq, int ldxq, __m512i acc[BT][4]) {
    switch (nb) {
    case 6: i8_tile(6, Kq, p, xq, ldxq, acc); break;
    case 5: i8_tile(5, Kq, p, xq, ldxq, acc); break;
    case 4: i8_tile(4, Kq, p, xq, ldxq, acc); break;
    case 3: i8_tile(3, Kq, p, xq, ldxq, acc); break;
    case 2: i8_tile(2, Kq, p, xq, ldxq, acc); break;
    default: i8_tile(1, Kq, p, xq, ldxq, acc); break;
    }
}

/* First row and lane mask of each sub-panel of block blk (mask 0: no valid row). */
static void sub_rows(int H, int rows, int blk, int row0[4], __mmask16 m[4]) {
    for (int g = 0; g < 4; g++) {
        row0[g] = fl_qpanel_row(H, rows, blk, g, 0);
        int n = row0[g] < 0 ? 0 : H > 0 ? H - blk * FL_QNB : rows - row0[g];
        m[g] = n >= FL_QNB ? (__mmask16)0xffff : (__mmask16)((1u << (n > 0 ? n : 0)) - 1);
        if (row0[g] < 0) row0[g] = 0;
    }
}

/* The 128 wsum corrections of block blk's sub-panels. */
static void corrections(const int32_t *wsum, const int row0[4], const __mmask16 m[4], __m512i corr[4]) {
    for (int g = 0; g < 4; g++)
        corr[g] = _mm512_slli_epi32(_mm512_maskz_loadu_epi32(m[g], wsum + row0[g]), 7);
}

static void i8_acc_avx512(int blk0, int blk1, int H, int rows, int K, int B, const int8_t *restrict pq,
                          const int32_t *restrict wsum, const uint8_t *restrict xq, int ldxq,
                          int32_t *restrict acc, int ldacc) {
    const int Kq = (K + 3) / 4;
    for (int blk = blk0; blk < blk1; blk++) {
        const int8_t *p = pq + (size_t)blk * Kq * 4 * FL_QNB * 4;
        int row0[4];
        __mmask16 m[4];
        __m512i corr[4];
        sub_rows(H, rows, blk, row0, m);
        corrections(wsum, row0, m, corr);
        for (int b0 = 0; b0 < B; b0 += BT) {
            int nb = B - b0 < BT ? B - b0 : BT;
            __m512i a[BT][4];
            i8_tile_n(nb, Kq, p, xq + (size_t)b0 * ldxq, ldxq, a);
            for (int b = 0; b < nb; b++)
                for (int g = 0; g < 4; g++)
                    _mm512_mask_storeu_epi32(acc + (size_t)(b0 + b) * ldacc + row0[g], m[g],
                                             _mm512_sub_epi32(a[b][g], corr[g]));
        }
    }
}

static void i8_gemv_avx512(int blk0, int blk1, int H, int rows, int K, int B, const int8_t *restrict pq,
                           const float *restrict wscale, const int32_t *restrict wsum,
                           const uint8_t *restrict xq, int ldxq, const float *restrict xscale,
                           float *restrict y, int ldy) {
    const int Kq = (K + 3) / 4;
    for (int blk = blk0; blk < blk1; blk++) {
        const int8_t *p = pq + (size_t)blk * Kq * 4 * FL_QNB * 4;
        int row0[4];
        __mmask16 m[4];
        __m512i corr[4];
        __m512 ws[4];
        sub_rows(H, rows, blk, row0, m);
        corrections(wsum, row0, m, corr);
        for (int g = 0; g < 4; g++) ws[g] = _mm512_maskz_loadu_ps(m[g], wscale + row0[g]);
        for (int b0 = 0; b0 < B; b0 += BT) {
            int nb = B - b0 < BT ? B - b0 : BT;
            __m512i a[BT][4];
            i8_tile_n(nb, Kq, p, xq + (size_t)b0 * ldxq, ldxq, a);
            for (int b = 0; b < nb; b++) {
                __m512 xs = _mm512_set1_ps(xscale[b0 + b]);
                for (int g = 0; g < 4; g++) {
                    float *o = y + (size_t)(b0 + b) * ldy + row0[g];
                    __m512 s = _mm512_cvtepi32_ps(_mm512_sub_epi32(a[b][g], corr[g]));
                    __m512 r = _mm512_fmadd_ps(s, _mm512_mul_ps(xs, ws[g]), _mm512_maskz_loadu_ps(m[g], o));
                    _mm512_mask_storeu_ps(o, m[g], r);
                }
            }
        }
    }
}

static inline __attribute__((always_inline)) void bf16_tile(int nb, int K, const uint16_t *p, const float *x,
                                                            int ldx, __m512 acc[BT][4]) {
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
    for (int b = 0; b < nb; b++)
        for (int g = 0; g < 4; g++) acc[b][g] = _mm512_setzero_ps();
    const uint16_t *w = p;
    int k = 0;
    for (; k + 1 < K; k += 2, w += 4 * FL_QNB * 2) {
        __m512 e[4], o[4];
        for (int g = 0; g < 4; g++) {
            __m512i v = _mm512_loadu_si512(w + g * FL_QNB * 2);
            e[g] = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
            o[g] = _mm512_castsi512_ps(_mm512_and_si512(v, hi));
        }
        for (int b = 0; b < nb; b++) {
            __m512 xe = _mm512_set1_ps(x[(size_t)b * ldx + k]), xo = _mm512_set1_ps(x[(size_t)b * ldx + k + 1]);
            for (int g = 0; g < 4; g++) acc[b][g] = _mm512_fmadd_ps(o[g], xo, _mm512_fmadd_ps(e[g], xe, acc[b][g]));
        }
    }
    if (k < K) { // odd K: the last pair has its even half only (x[K] is not there to read)
        __m512 e[4];
        for (int g = 0; g < 4; g++)
            e[g] = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_loadu_si512(w + g * FL_QNB * 2), 16));
        for (int b = 0; b < nb; b++) {
            __m512 xe = _mm512_set1_ps(x[(size_t)b * ldx + k]);
            for (int g = 0; g < 4; g++) acc[b][g] = _mm512_fmadd_ps(e[g], xe, acc[b][g]);
        }
    }
}

static void bf16_gemv_avx512(int blk0, int blk1, int H, int rows, int K, int B, const uint16_t *restrict pb,
                             const float *restrict x, int ldx, float *restrict y, int ldy) {
    const int K2 = (K + 1) / 2;
    for (int blk = blk0; blk < blk1; blk++) {
        const uint16_t *p = pb + (size_t)blk * K2 * 4 * FL_QNB * 2;
        int row0[4];
        __mmask16 m[4];
        sub_rows(H, rows, blk, row0, m);
        for (int b0 = 0; b0 < B; b0 += BT_BF) {
            int nb = B - b0 < BT_BF ? B - b0 : BT_BF;
            const float *xb = x + (size_t)b0 * ldx;
            __m512 a[BT][4];
            switch (nb) {
            case 4: bf16_tile(4, K, p, xb, ldx, a); break;
            case 3: bf16_tile(3, K, p, xb, ldx, a); break;
            case 2: bf16_tile(2, K, p, xb, ldx, a); break;
            default: bf16_tile(1, K, p, xb, ldx, a); break;
            }
            for (int b = 0; b < nb; b++)
                for (int g = 0; g < 4; g++) {
                    float *o = y + (size_t)(b0 + b) * ldy + row0[g];
                    _mm512_mask_storeu_ps(o, m[g], _mm512_add_ps(_mm512_maskz_loadu_ps(m[g], o), a[b][g]));
                }
        }
    }
}

const fl_qkernels fl_qkernels_avx512 = {
    .name = "avx512",
    .i8_gemv = i8_gemv_avx512,
    .i8_acc = i8_acc_avx512,
    .bf16_gemv = bf16_gemv_avx512,
};
