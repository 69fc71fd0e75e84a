/* AVX2 + FMA low-precision kernels (layouts in quant.h). Compiled with -mavx2 -mfma.
 *
 * int8 without VNNI: vpmaddubsw multiplies unsigned by signed bytes and adds pairs into int16 with
 * saturation, which u8 activations (up to 255) times weights (up to 127) would hit. So the
 * activation is recentred to s8 (x - 128, in [-127, 127]: the quantizer never writes 0), and the
 * kernel multiplies |x - 128| by the weight carrying the activation's sign (vpsignb): a pair sums to
 * at most 2 * 127 * 127 = 32258 < 32767, never saturating, so the int32 sums are exact and equal
 * to every other level's. wsum is not needed here. */
#include "quant.h"

#include <immintrin.h>

#define BT 4 /* batch rows per tile: 4 rows x 2 ymm accumulators + 2 weight registers */

/* Valid rows of sub-panel g of block blk: the 16 rows are consecutive matrix rows from *row0. */
static int sub_rows(int H, int rows, int blk, int g, int *row0) {
    *row0 = fl_qpanel_row(H, rows, blk, g, 0);
    if (*row0 < 0) return 0;
    int n = H > 0 ? H - blk * FL_QNB : rows - *row0;
    return n < FL_QNB ? n : FL_QNB;
}

static __m256i lane_mask(int n, int base) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n - base), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* The activation quad at x (4 u8) broadcast and recentred to s8 (x - 128). */
static inline __attribute__((always_inline)) __m256i i8_quad(const uint8_t *x, __m256i flip) {
    int32_t quad;
    __builtin_memcpy(&quad, x, 4);
    return _mm256_xor_si256(_mm256_set1_epi32(quad), flip);
}

/* The 64 bytes of one k quad of a sub-panel at w, in two registers. */
static inline __attribute__((always_inline)) void i8_load(const int8_t *w, __m256i wv[2]) {
    wv[0] = _mm256_loadu_si256((const __m256i *)w);
    wv[1] = _mm256_loadu_si256((const __m256i *)(w + 32));
}

/* acc[0..1] += the 16 rows' sums of one k quad: wv its weights (i8_load), xs the recentred quad,
 * ax = |xs| (the weight takes the activation's sign). */
static inline __attribute__((always_inline)) void i8_madd(const __m256i wv[2], __m256i xs, __m256i ax, __m256i ones,
                                                          __m256i acc[2]) {
    __m256i p0 = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(wv[0], xs));
    __m256i p1 = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(wv[1], xs));
    acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(p0, ones));
    acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(p1, ones));
}

/* int32 sums of sub-panel g (p: (Kq, 4, NB, 4)) for nb <= BT batch rows: acc[b][0] rows 0-7, [1] 8-15. */
static inline __attribute__((always_inline)) void i8_tile(int nb, int Kq, const int8_t *p, int g,
                                                          const uint8_t *xq, int ldxq, __m256i acc[BT][2]) {
    const __m256i flip = _mm256_set1_epi8((char)0x80), ones = _mm256_set1_epi16(1);
    for (int b = 0; b < nb; b++) acc[b][0] = acc[b][1] = _mm256_setzero_si256();
    const int8_t *w = p + (size_t)g * FL_QNB * 4;
    for (int kq = 0; kq < Kq; kq++, w += 4 * FL_QNB * 4) {
        __m256i wv[2];
        i8_load(w, wv);
        for (int b = 0; b < nb; b++) {
            const __m256i xs = i8_quad(xq + (size_t)b * ldxq + 4 * kq, flip);
            i8_madd(wv, xs, _mm256_abs_epi8(xs), ones, acc[b]);
        }
    }
}

static void i8_tile_n(int nb, int Kq, const int8_t *p, int g, const uint8_t *xq, int ldxq, __m256i acc[BT][2]) {
    switch (nb) {
    case 4: i8_tile(4, Kq, p, g, xq, ldxq, acc); break;
    case 3: i8_tile(3, Kq, p, g, xq, ldxq, acc); break;
    case 2: i8_tile(2, Kq, p, g, xq, ldxq, acc); break;
    default: i8_tile(1, Kq, p, g, xq, ldxq, acc); break;
    }
}

static void i8_acc_avx2(int blk0, int blk1, int H, int rows, int K, int B, const int8_t *restrict pq,
                        const int32_t *restrict wsum, const uint8_t *restrict xq, int ldxq,
                        int32_t *restrict acc, int ldacc) {
    const int Kq = (K + 3) / 4;
    for (int blk = blk0; blk < blk1; blk++) {
        const int8_t *p = pq + (size_t)blk * Kq * 4 * FL_QNB * 4;
        for (int g = 0; g < 4; g++) {
            int row0, n = sub_rows(H, rows, blk, g, &row0);
            if (n <= 0) continue;
            __m256i m0 = lane_mask(n, 0), m1 = lane_mask(n, 8);
            for (int b0 = 0; b0 < B; b0 += BT) {
                int nb = B - b0 < BT ? B - b0 : BT;
                __m256i a[BT][2];
                i8_tile_n(nb, Kq, p, g, xq + (size_t)b0 * ldxq, ldxq, a);
                for (int b = 0; b < nb; b++) {
                    int *o = acc + (size_t)(b0 + b) * ldacc + row0;
                    _mm256_maskstore_epi32(o, m0, a[b][0]);
                    _mm256_maskstore_epi32(o + 8, m1, a[b][1]);
                }
            }
        }
    }
}

/* int32 sums of all 4 sub-panels of one block (p: (Kq, 4, NB, 4)) for one batch row, in one pass: the
 * block's bytes are read as one sequential stream. Sub-panel by sub-panel (i8_tile at nb = 1), each pass
 * read 64 of every 256 bytes, a strided stream: a batch-1 step of a quantized 2x1500 model (9 MB of
 * int8 W_hh per layer, beyond this VM's ~8 MB L3 share) ran at ~3.6 GB/s. Integer sums: the same
 * results in any order. */
static void i8_block_b1(int Kq, const int8_t *p, const uint8_t *xq, __m256i acc[4][2]) {
    const __m256i flip = _mm256_set1_epi8((char)0x80), ones = _mm256_set1_epi16(1);
    for (int g = 0; g < 4; g++) acc[g][0] = acc[g][1] = _mm256_setzero_si256();
    const int8_t *w = p;
    for (int kq = 0; kq < Kq; kq++, w += 4 * FL_QNB * 4) {
        const __m256i xs = i8_quad(xq + 4 * kq, flip), ax = _mm256_abs_epi8(xs);
        for (int g = 0; g < 4; g++) {
            __m256i wv[2];
            i8_load(w + g * FL_QNB * 4, wv);
            i8_madd(wv, xs, ax, ones, acc[g]);
        }
    }
}

static void i8_gemv_avx2(int blk0, int blk1, int H, int rows, int K, int B, const int8_t *restrict pq,
                         const float *restrict wscale, const int32_t *restrict wsum,
                         const uint8_t *restrict xq, int ldxq, const float *restrict xscale,
                         float *restrict y, int ldy) {
    const int Kq = (K + 3) / 4;
    for (int blk = blk0; blk < blk1; blk++) {
        const int8_t *p = pq + (size_t)blk * Kq * 4 * FL_QNB * 4;
        __m256i a1[4][2]; /* B == 1: the block's 4 sub-panels in one pass */
        if (B == 1) i8_block_b1(Kq, p, xq, a1);
        for (int g = 0; g < 4; g++) {
            int row0, n = sub_rows(H, rows, blk, g, &row0);
            if (n <= 0) continue;
            __m256i m0 = lane_mask(n, 0), m1 = lane_mask(n, 8);
            __m256 ws0 = _mm256_maskload_ps(wscale + row0, m0), ws1 = _mm256_maskload_ps(wscale + row0 + 8, m1);
            for (int b0 = 0; b0 < B; b0 += BT) {
                int nb = B - b0 < BT ? B - b0 : BT;
                __m256i a[BT][2];
                if (B == 1) a[0][0] = a1[g][0], a[0][1] = a1[g][1];
                else i8_tile_n(nb, Kq, p, g, xq + (size_t)b0 * ldxq, ldxq, a);
                for (int b = 0; b < nb; b++) {
                    float *o = y + (size_t)(b0 + b) * ldy + row0;
                    __m256 xs = _mm256_set1_ps(xscale[b0 + b]);
                    __m256 y0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a[b][0]), _mm256_mul_ps(xs, ws0),
                                                _mm256_maskload_ps(o, m0));
                    __m256 y1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a[b][1]), _mm256_mul_ps(xs, ws1),
                                                _mm256_maskload_ps(o + 8, m1));
                    _mm256_maskstore_ps(o, m0, y0);
                    _mm256_maskstore_ps(o + 8, m1, y1);
                }
            }
        }
    }
}

/* bf16 sums of sub-panel g (p: (K2, 4, NB, 2)) for nb <= BT batch rows, f32 x. A 32-bit lane holds
 * the pair (k even: low half, k odd: high half); as f32 they are lane << 16 and lane & 0xffff0000. */
static inline __attribute__((always_inline)) void bf16_tile(int nb, int K, const uint16_t *p, int g,
                                                            const float *x, int ldx, __m256 acc[BT][2]) {
    const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
    for (int b = 0; b < nb; b++) acc[b][0] = acc[b][1] = _mm256_setzero_ps();
    const uint16_t *w = p + (size_t)g * FL_QNB * 2;
    int k = 0;
    for (; k + 1 < K; k += 2, w += 4 * FL_QNB * 2) {
        __m256i v0 = _mm256_loadu_si256((const __m256i *)w), v1 = _mm256_loadu_si256((const __m256i *)(w + 16));
        __m256 e0 = _mm256_castsi256_ps(_mm256_slli_epi32(v0, 16)), o0 = _mm256_castsi256_ps(_mm256_and_si256(v0, hi));
        __m256 e1 = _mm256_castsi256_ps(_mm256_slli_epi32(v1, 16)), o1 = _mm256_castsi256_ps(_mm256_and_si256(v1, hi));
        for (int b = 0; b < nb; b++) {
            __m256 xe = _mm256_set1_ps(x[(size_t)b * ldx + k]), xo = _mm256_set1_ps(x[(size_t)b * ldx + k + 1]);
            acc[b][0] = _mm256_fmadd_ps(o0, xo, _mm256_fmadd_ps(e0, xe, acc[b][0]));
            acc[b][1] = _mm256_fmadd_ps(o1, xo, _mm256_fmadd_ps(e1, xe, acc[b][1]));
        }
    }
    if (k < K) { // odd K: the last pair has its even half only (x[K] is not there to read)
        __m256i v0 = _mm256_loadu_si256((const __m256i *)w), v1 = _mm256_loadu_si256((const __m256i *)(w + 16));
        __m256 e0 = _mm256_castsi256_ps(_mm256_slli_epi32(v0, 16)), e1 = _mm256_castsi256_ps(_mm256_slli_epi32(v1, 16));
        for (int b = 0; b < nb; b++) {
            __m256 xe = _mm256_set1_ps(x[(size_t)b * ldx + k]);
            acc[b][0] = _mm256_fmadd_ps(e0, xe, acc[b][0]);
            acc[b][1] = _mm256_fmadd_ps(e1, xe, acc[b][1]);
        }
    }
}

static void bf16_gemv_avx2(int blk0, int blk1, int H, int rows, int K, int B, const uint16_t *restrict pb,
                           const float *restrict x, int ldx, float *restrict y, int ldy) {
    const int K2 = (K + 1) / 2;
    for (int blk = blk0; blk < blk1; blk++) {
        const uint16_t *p = pb + (size_t)blk * K2 * 4 * FL_QNB * 2;
        for (int g = 0; g < 4; g++) {
            int row0, n = sub_rows(H, rows, blk, g, &row0);
            if (n <= 0) continue;
            __m256i m0 = lane_mask(n, 0), m1 = lane_mask(n, 8);
            for (int b0 = 0; b0 < B; b0 += BT) {
                int nb = B - b0 < BT ? B - b0 : BT;
                const float *xb = x + (size_t)b0 * ldx;
                __m256 a[BT][2];
                switch (nb) {
                case 4: bf16_tile(4, K, p, g, xb, ldx, a); break;
                case 3: bf16_tile(3, K, p, g, xb, ldx, a); break;
                case 2: bf16_tile(2, K, p, g, xb, ldx, a); break;
                default: bf16_tile(1, K, p, g, xb, ldx, a); break;
                }
                for (int b = 0; b < nb; b++) {
                    float *o = y + (size_t)(b0 + b) * ldy + row0;
                    _mm256_maskstore_ps(o, m0, _mm256_add_ps(_mm256_maskload_ps(o, m0), a[b][0]));
                    _mm256_maskstore_ps(o + 8, m1, _mm256_add_ps(_mm256_maskload_ps(o + 8, m1), a[b][1]));
                }
            }
        }
    }
}

const fl_qkernels fl_qkernels_avx2 = {
    .name = "avx2",
    .i8_gemv = i8_gemv_avx2,
    .i8_acc = i8_acc_avx2,
    .bf16_gemv = bf16_gemv_avx2,
};
