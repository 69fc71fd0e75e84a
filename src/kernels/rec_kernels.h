/* Kernels of the recurrent step (gates = gx + W_hh h_prev, then the cell update), one table per ISA.
 * recurrent.c packs W_hh once into the layouts below and calls these per time step. Like the rest of
 * src/kernels: plain functions on raw pointers, no allocation, no error paths, every remainder
 * handled. rec_ref.c holds the scalar reference of each; rec_avx2.c / rec_avx512.c the fast ones.
 *
 * Packed layouts (NB = FL_REC_NB hidden units per block, nblk = ceil(H / NB), units past H are 0):
 *   gate panel  pw (nblk, K, 4, NB): pw[((blk*K + k)*4 + g)*NB + u] = W[g*H + blk*NB + u, k]
 *               so one block streams its 4 gate rows together and keeps them in registers for
 *               the cell update. Dense: W = W_hh, K = H. SVD: W = U (4H, R), K = R.
 *   CP panel    pb (nblk, K, NB): pb[(blk*K + k)*NB + u] = b[blk*NB + u, k], K = R.
 *   projection  m (K, Rp), Rp a multiple of NB, zero past the rank: V^T (SVD) or C (CP). */
#ifndef FL_REC_KERNELS_H
#define FL_REC_KERNELS_H

#define FL_REC_NB 16

typedef struct fl_rec_kernels {
    const char *name; /* "ref", "avx2", "avx512" */

    /* For blocks [blk0, blk1) and B rows:
     *   x: (B, K) row stride ldx; gx: (B, 4H) row stride ldgx (gates i, f, g, o, biases included)
     *   c: (B, H) contiguous, updated in place; h: (B, H) row stride ldh
     *   gates = gx + W x, then c = f c + i g, h = o tanh(c) for the block's units. */
    void (*gate_cell)(int blk0, int blk1, int H, int K, int B, const float *restrict pw,
                      const float *restrict x, int ldx, const float *restrict gx, int ldgx,
                      float *restrict c, float *restrict h, int ldh);

    /* CP version: zs (B, 4, K) contiguous holds z scaled per gate (zs[b, g, r] = a[g, r] z[b, r]);
     * gates[b, g*H + j] = gx[b, g*H + j] + sum_r b[j, r] zs[b, g, r], then the cell update. */
    void (*cp_gate_cell)(int blk0, int blk1, int H, int K, int B, const float *restrict pb,
                         const float *restrict zs, const float *restrict gx, int ldgx,
                         float *restrict c, float *restrict h, int ldh);

    /* t (B, Rp) = x (B, K) m (K, Rp), row strides ldx and ldt; Rp a multiple of FL_REC_NB. */
    void (*proj)(int B, int K, int Rp, const float *restrict m, const float *restrict x, int ldx,
                 float *restrict t, int ldt);

    /* Y (n, rows) = X (n, K) W^T + beta Y, W (rows, K) row-major, unpacked: the input projection
     * over all steps (fl_mat_apply, dense). NULL where BLAS does better at that level (ref, avx2);
     * fl_rec_gemm_nt_ref is its scalar reference. */
    void (*gemm_nt)(int n, int rows, int K, const float *restrict x, int ldx, const float *restrict w,
                    int ldw, float beta, float *restrict y, int ldy);
} fl_rec_kernels;

/* Scalar reference of gemm_nt (tests). */
void fl_rec_gemm_nt_ref(int n, int rows, int K, const float *restrict x, int ldx, const float *restrict w,
                        int ldw, float beta, float *restrict y, int ldy);

extern const fl_rec_kernels fl_rec_kernels_ref;
extern const fl_rec_kernels fl_rec_kernels_avx2;
extern const fl_rec_kernels fl_rec_kernels_avx512;

/* The table for this CPU, chosen once (thread-safe); FL_KERNELS=ref|avx2|avx512 forces a level
 * (one the CPU lacks falls back to the best it has). */
const fl_rec_kernels *fl_rec_kernels_get(void);

/* The table whose gemm_nt should compute an input projection of n rows and inner size K, or NULL
 * to use BLAS (no gemm_nt at this level, K < 64, multi-threaded BLAS, or BLAS with AVX-512 kernels
 * on a tall product). */
const fl_rec_kernels *fl_rec_gemm_nt_choice(int n, int K);

/* A level by name, for tests and benchmarks: NULL if unknown or the CPU lacks it. */
const fl_rec_kernels *fl_rec_kernels_by_name(const char *name);

#endif
