/* Kernel dispatch table: one table per ISA level, one dispatcher (dispatch.c). A kernel is a plain
 * function on raw pointers: no allocation, no error paths, every remainder handled. ref.c holds the
 * scalar reference of each; avx2.c / avx512.c the fast versions. The table is filled once from CPU
 * detection; FL_KERNELS=ref|avx2|avx512 forces a level (a level the CPU lacks falls back to the best
 * it has).
 *
 * The recurrent step (recurrent.c) packs W_hh once into the layouts below and calls gate_cell /
 * cp_gate_cell / proj per time step; fl_mat_apply calls gemm_nt for the input projection.
 * Packed layouts (NB = FL_REC_NB hidden units per block, nblk = ceil(H / NB), units past H are 0):
 *   gate panel  pw (nblk, K, 4, NB): pw[((blk*K + k)*4 + g)*NB + u] = W[g*H + blk*NB + u, k]
 *               so one block streams its 4 gate rows together and keeps them in registers for
 *               the cell update. Dense: W = W_hh, K = H. SVD: W = U (4H, R), K = R.
 *   CP panel    pb (nblk, K, NB): pb[(blk*K + k)*NB + u] = b[blk*NB + u, k], K = R.
 *   projection  m (K, Rp), Rp a multiple of NB, zero past the rank: V^T (SVD) or C (CP).
 *   input proj. pk (ceil(rows / NC), K, NC), NC = FL_PK_NC: pk[(p*K + k)*NC + u] = W[p*NC + u, k],
 *               zero past rows; W = W_ih (4H, K) (fl_rec_input) or a head's W or SVD factor
 *               (head.c), packed once per model.
 * Nonlinearities (all levels): i = sigmoid, f = sigmoid, g = tanh, o = sigmoid; c = f c + i g;
 * h = o tanh(c). A NaN pre-activation or cell state gives NaN, as in the scalar reference. */
#ifndef FL_KERNELS_H
#define FL_KERNELS_H

#include <stdbool.h>
#include <stddef.h>

#define FL_REC_NB 16
#define FL_PK_NC 64 /* columns per panel of a packed input projection (gemm_pk) */

typedef struct fl_kernels {
    const char *name; /* "ref", "avx2", "avx512" */

    /* true: gate_cell / cp_gate_cell prefetch each tile's gx rows early enough that a low-rank step
     * at B > 1 reads gx where the input projection left it; false: fl_rec_step first copies the
     * step's B rows into a buffer in cache (recurrent.c: why, and what each level measured). */
    bool gx_in_place;

    /* LSTM cell update for `batch` rows, gates i, f, g, o stacked in each row of `gates`:
     *   gates: (batch, 4H) pre-activations, row stride ldg (already include biases)
     *   c: (batch, H) cell state, row stride ldc, updated in place
     *   h: (batch, H) hidden output, row stride ldh */
    void (*lstm_cell)(int batch, int H, const float *restrict gates, int ldg, float *restrict c,
                      int ldc, float *restrict h, int ldh);

    /* For blocks [blk0, blk1) and B rows:
     *   x: (B, K) row stride ldx; gx: (B, 4H) row stride ldgx (gates i, f, g, o, biases included)
     *   c: (B, H) contiguous, updated in place; h: (B, H) row stride ldh
     *   gates = gx + W x, then the cell update for the block's units. K = 0: cell update of gx. */
    void (*gate_cell)(int blk0, int blk1, int H, int K, int B, const float *restrict pw,
                      const float *restrict x, int ldx, const float *restrict gx, int ldgx,
                      float *restrict c, float *restrict h, int ldh);

    /* CP version: zs (B, 4, K) contiguous holds z scaled per gate (zs[b, g, r] = a[g, r] z[b, r]);
     * gates[b, g*H + j] = gx[b, g*H + j] + sum_r b[j, r] zs[b, g, r], then the cell update. */
    void (*cp_gate_cell)(int blk0, int blk1, int H, int K, int B, const float *restrict pb,
                         const float *restrict zs, const float *restrict gx, int ldgx,
                         float *restrict c, float *restrict h, int ldh);

    /* zs (B, 4, R) contiguous: zs[b, g, r] = a[g, r] z[b, r], a (4, R), z (B, R) row stride ldz: the
     * CP factor A applied per gate (recurrent step, fl_mat_apply, CP gradients). One multiply per
     * element, so every level gives the same bits. */
    void (*cp_scale)(int B, int R, const float *restrict a, const float *restrict z, int ldz,
                     float *restrict zs);

    /* t (B, Rp) = x (B, K) m (K, Rp), row strides ldx and ldt; Rp a multiple of FL_REC_NB. */
    void (*proj)(int B, int K, int Rp, const float *restrict m, const float *restrict x, int ldx,
                 float *restrict t, int ldt);

    /* Y (n, rows) = X (n, K) W^T + beta Y, W (rows, K) row-major, unpacked: the input projection
     * over all steps (fl_mat_apply, dense). NULL where BLAS does better at that level (ref, avx2);
     * fl_kernels_gemm_nt_ref is its scalar reference. */
    void (*gemm_nt)(int n, int rows, int K, const float *restrict x, int ldx, const float *restrict w,
                    int ldw, float beta, float *restrict y, int ldy);

    /* Y (n, rows) = X (n, K) W^T + bias, W packed as pk (layout above), bias (rows) or NULL: the
     * session's input projection over all steps, biases fused. NULL at levels without one (ref:
     * BLAS there); fl_kernels_gemm_pk_ref is its scalar reference. */
    void (*gemm_pk)(int n, int rows, int K, const float *restrict x, int ldx, const float *restrict pk,
                    const float *restrict bias, float *restrict y, int ldy);
} fl_kernels;

/* The table for this CPU (chosen once, thread-safe). */
const fl_kernels *fl_kernels_get(void);

/* Tables by name, for tests and benchmarks: NULL if unknown or the CPU lacks that level. */
const fl_kernels *fl_kernels_by_name(const char *name);

/* The table whose gemm_nt should compute an input projection of n rows and inner size K, or NULL
 * to use BLAS (no gemm_nt at this level, K < 64, multi-threaded BLAS, or BLAS with AVX-512 kernels
 * on a tall product). */
const fl_kernels *fl_kernels_gemm_nt_choice(int n, int K);

/* Scalar reference of gemm_nt (tests). */
void fl_kernels_gemm_nt_ref(int n, int rows, int K, const float *restrict x, int ldx, const float *restrict w,
                            int ldw, float beta, float *restrict y, int ldy);

/* Scalar reference of gemm_pk (tests). */
void fl_kernels_gemm_pk_ref(int n, int rows, int K, const float *restrict x, int ldx, const float *restrict pk,
                            const float *restrict bias, float *restrict y, int ldy);

/* Per-ISA tables (each defined in its own file). */
extern const fl_kernels fl_kernels_ref;
extern const fl_kernels fl_kernels_avx2;   /* AVX2 + FMA (src/kernels/avx2.c) */
extern const fl_kernels fl_kernels_avx512; /* AVX-512F/VL/DQ/BW (src/kernels/avx512.c) */

#endif
