/* Low-precision weight kernels (issue 13): int8 and bf16 weights, f32 results. A separate table from
 * fl_kernels (kernels.h) so the two can change independently; same rules: plain functions on raw
 * pointers, no allocation, no error paths, every remainder handled. quant_ref.c holds the scalar
 * reference of each; quant_avx2.c, quant_avx512.c (AVX-512 VNNI) the fast versions, chosen once from
 * CPU detection (quant_dispatch.c). FL_KERNELS=ref|avx2|avx512 forces a level as for fl_kernels.
 * Conversion and packing (the checked boundary: NaN/Inf refused) live in src/core/quantize.h.
 *
 * One packed layout serves every matrix shape: blocks of 4 sub-panels of NB = FL_QNB rows. Two row
 * maps say which matrix row sits at (block blk, sub-panel g, lane u):
 *   gate map  (H > 0): row = g*H + blk*NB + u, valid while blk*NB + u < H; nblk = ceil(H / NB).
 *             W (4H, K) is W_hh (K = H), an SVD U (K = R) or W_ih: the 4 gate rows of hidden units
 *             blk*NB .. blk*NB+NB-1 side by side, as in the f32 gate panel of kernels.h, so the
 *             kernels can later be fused with the cell update.
 *   plain map (H = 0): row = (blk*4 + g)*NB + u, valid while row < rows; nblk = ceil(rows / (4 NB)).
 *             Any (rows, K) matrix: an SVD V^T, a CP C^T or B, the head.
 * int8 panel  pq (nblk, Kq, 4, NB, 4) int8, Kq = ceil(K / 4):
 *               pq[(((blk*Kq + kq)*4 + g)*NB + u)*4 + e] = Wq[row, 4 kq + e], 0 past K or an
 *               invalid row. Four consecutive k of one row form the 32-bit lane that VNNI
 *               vpdpbusd multiplies with four activation bytes. Weights are symmetric in [-127, 127].
 *             wscale (rows): per-row scale, W[row, k] ~ wscale[row] Wq[row, k].
 *             wsum (rows): sum_k Wq[row, k], for the zero-point correction below.
 * activations xq (B, Kp) u8, Kp = 4 Kq, row stride ldxq >= Kp: xq = round(x / xscale) + 128 (zero
 *             point 128: vpdpbusd takes its first operand unsigned), in [1, 255]; bytes K .. Kp-1
 *             are padding (any value: their weights are 0). xscale (B): per-row scale.
 * bf16 panel  pb (nblk, K2, 4, NB, 2) uint16, K2 = ceil(K / 2):
 *               pb[(((blk*K2 + k2)*4 + g)*NB + u)*2 + e] = bf16(W[row, 2 k2 + e]), 0 past K.
 *             A 32-bit lane holds two k of one row: its high half, and its low half shifted left
 *             16 bits, are those weights as f32 (no conversion instruction needed), and the pair
 *             is also what AVX-512 BF16 vdpbf16ps takes. Activations stay f32 (see quant_ref.c).
 * All kernels accumulate into y: y[b, row] += (W x_b)[row] for the blocks [blk0, blk1), so a caller
 * puts the bias / input projection (gx) in y first, and threads split the blocks. Several batch
 * rows (B) and many rows (B = T*batch, the all-steps input projection) use the same kernel: the block
 * loop is outermost, so one block's weights (64 K bytes int8) stay in cache over all B rows.
 * Why not oneDNN's dnnl_gemm_u8s8s32 for the all-steps projection: on AVX2 (no VNNI) it multiplies
 * with vpmaddubsw and saturates, so with u8 activations above 128 its int32 sums were wrong in
 * 1819950 of 1820000 outputs (n 700, 2600 x 650); with activations capped at 128 they matched these
 * kernels exactly. It was 2.4-2.8x faster than i8_gemv at n = 700 and even at n = 35 (loaded
 * machine, AVX2). These kernels are exact at every level and keep the gate layout. */
#ifndef FL_QUANT_H
#define FL_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

#define FL_QNB FL_REC_NB /* rows per sub-panel (16) */

typedef struct fl_qkernels {
    const char *name; /* "ref", "avx2", "avx512" */

    /* int8 weights, u8 activations (layouts above), blocks [blk0, blk1):
     *   y[b*ldy + row] += xscale[b] * wscale[row] * acc[b, row], acc the exact int32 sum
     *   sum_k Wq[row, k] (xq[b, k] - 128), converted to f32 and added with one fused multiply-add
     *   (every level gives bit-identical y). H > 0: gate map (rows = 4H); H = 0: plain map. */
    void (*i8_gemv)(int blk0, int blk1, int H, int rows, int K, int B, const int8_t *restrict pq,
                    const float *restrict wscale, const int32_t *restrict wsum,
                    const uint8_t *restrict xq, int ldxq, const float *restrict xscale,
                    float *restrict y, int ldy);

    /* The int32 sums alone: acc[b*ldacc + row] = sum_k Wq[row, k] (xq[b, k] - 128) (tests compare
     * levels on these exactly; also the building block of the kernel above). */
    void (*i8_acc)(int blk0, int blk1, int H, int rows, int K, int B, const int8_t *restrict pq,
                   const int32_t *restrict wsum, const uint8_t *restrict xq, int ldxq,
                   int32_t *restrict acc, int ldacc);

    /* bf16 weights, f32 activations x (B, K) row stride ldx, f32 accumulation:
     *   y[b*ldy + row] += sum_k W[row, k] x[b, k]. Summation order differs per level. */
    void (*bf16_gemv)(int blk0, int blk1, int H, int rows, int K, int B, const uint16_t *restrict pb,
                      const float *restrict x, int ldx, float *restrict y, int ldy);
} fl_qkernels;

/* The table for this CPU (chosen once, thread-safe; FL_KERNELS honoured as in kernels.h). */
const fl_qkernels *fl_qkernels_get(void);

/* Tables by name, for tests and benchmarks: NULL if unknown or the CPU lacks that level
 * ("avx512" needs AVX-512 F, VL, BW and VNNI). */
const fl_qkernels *fl_qkernels_by_name(const char *name);

/* Number of blocks of a packed matrix: ceil(H / NB) (gate map) or ceil(rows / (4 NB)) (plain). */
int fl_qpanel_blocks(int H, int rows);

/* The matrix row at (blk, g, u), or -1 where that slot is padding. */
static inline int fl_qpanel_row(int H, int rows, int blk, int g, int u) {
    if (H > 0) {
        int j = blk * FL_QNB + u;
        return j < H ? g * H + j : -1;
    }
    int r = (blk * 4 + g) * FL_QNB + u;
    return r < rows ? r : -1;
}

extern const fl_qkernels fl_qkernels_ref;
extern const fl_qkernels fl_qkernels_avx2;   /* AVX2 (src/kernels/quant_avx2.c) */
extern const fl_qkernels fl_qkernels_avx512; /* AVX-512 F/VL/BW + VNNI (src/kernels/quant_avx512.c) */

#endif
