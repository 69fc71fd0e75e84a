/* Scalar reference of the low-precision kernels (layouts in quant.h): written to be read, always
 * built, the fallback on CPUs without AVX2 and what the fast levels are tested against.
 *
 * Why f32 activations for bf16 weights: rounding the activations to bf16 as well (for AVX-512 BF16
 * vdpbf16ps) adds a second relative error of up to 2^-8 per product on top of the weights' own, for
 * a kernel that at batch 1 is bound by the bytes of weights it streams, which are the same either
 * way. Converting a bf16 weight to f32 is one shift or mask, so the f32 path costs no extra pass. */
#include "quant.h"

#include <math.h>

int fl_qpanel_blocks(int H, int rows) {
    if (H > 0) return (H + FL_QNB - 1) / FL_QNB;
    return (rows + 4 * FL_QNB - 1) / (4 * FL_QNB);
}

/* sum_k Wq[row, k] (x[k] - 128) for the row at sub-panel g, lane u of block panel p (Kq, 4, NB, 4). */
static int32_t dot_i8(const int8_t *p, int g, int u, int K, const uint8_t *x) {
    const int NB = FL_QNB;
    int32_t s = 0;
    for (int k = 0; k < K; k++) s += (int32_t)p[(((size_t)(k / 4) * 4 + g) * NB + u) * 4 + k % 4] * ((int32_t)x[k] - 128);
    return s;
}

static void i8_acc_ref(int blk0, int blk1, int H, int rows, int K, int B, const int8_t *restrict pq,
                       const int32_t *restrict wsum, const uint8_t *restrict xq, int ldxq,
                       int32_t *restrict acc, int ldacc) {
    const int NB = FL_QNB, Kq = (K + 3) / 4;
    for (int blk = blk0; blk < blk1; blk++) {
        const int8_t *p = pq + (size_t)blk * Kq * 4 * NB * 4; // p: (Kq, 4, NB, 4)
        for (int g = 0; g < 4; g++)
            for (int u = 0; u < NB; u++) {
                int row = fl_qpanel_row(H, rows, blk, g, u);
                if (row < 0) continue;
                for (int b = 0; b < B; b++) {
                    int32_t s = dot_i8(p, g, u, K, xq + (size_t)b * ldxq);
                    acc[(size_t)b * ldacc + row] = s;
                }
            }
    }
}

static void i8_gemv_ref(int blk0, int blk1, int H, int rows, int K, int B, const int8_t *restrict pq,
                        const float *restrict wscale, const int32_t *restrict wsum,
                        const uint8_t *restrict xq, int ldxq, const float *restrict xscale,
                        float *restrict y, int ldy) {
    const int NB = FL_QNB, Kq = (K + 3) / 4;
    for (int blk = blk0; blk < blk1; blk++) {
        const int8_t *p = pq + (size_t)blk * Kq * 4 * NB * 4; // p: (Kq, 4, NB, 4)
        for (int g = 0; g < 4; g++)
            for (int u = 0; u < NB; u++) {
                int row = fl_qpanel_row(H, rows, blk, g, u);
                if (row < 0) continue;
                for (int b = 0; b < B; b++) {
                    int32_t s = dot_i8(p, g, u, K, xq + (size_t)b * ldxq);
                    float *yb = y + (size_t)b * ldy + row;
                    *yb = fmaf((float)s, xscale[b] * wscale[row], *yb);
                }
            }
    }
}

/* bf16 -> f32: the bf16 bits are the high half of the f32. */
static float bf16_f32(uint16_t v) {
    union {
        uint32_t u;
        float f;
    } c = {.u = (uint32_t)v << 16};
    return c.f;
}

static void bf16_gemv_ref(int blk0, int blk1, int H, int rows, int K, int B, const uint16_t *restrict pb,
                          const float *restrict x, int ldx, float *restrict y, int ldy) {
    const int NB = FL_QNB, K2 = (K + 1) / 2;
    for (int blk = blk0; blk < blk1; blk++) {
        const uint16_t *p = pb + (size_t)blk * K2 * 4 * NB * 2; // p: (K2, 4, NB, 2)
        for (int g = 0; g < 4; g++)
            for (int u = 0; u < NB; u++) {
                int row = fl_qpanel_row(H, rows, blk, g, u);
                if (row < 0) continue;
                for (int b = 0; b < B; b++) {
                    const float *xb = x + (size_t)b * ldx;
                    float s = 0.0f;
                    for (int k = 0; k < K; k++)
                        s += bf16_f32(p[(((size_t)(k / 2) * 4 + g) * NB + u) * 2 + k % 2]) * xb[k];
                    y[(size_t)b * ldy + row] += s;
                }
            }
    }
}

const fl_qkernels fl_qkernels_ref = {
    .name = "ref",
    .i8_gemv = i8_gemv_ref,
    .i8_acc = i8_acc_ref,
    .bf16_gemv = bf16_gemv_ref,
};
