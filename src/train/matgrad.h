/* Forward and backward of one weight matrix W (rows x cols) in any storage method, for training.
 * The forward saves the small intermediate each factored method needs for its gradients ("aux"),
 * so backward never recomputes it:
 *   dense: nothing;   SVD (W = U V): t = x V^T (n, R);   CP: z = x C (n, R).
 * The backward with respect to the input saves the matching intermediate ("baux"):
 *   SVD: s = dy U (n, R);   CP: dz (n, R), dz[n,r] = sum_g a[g,r] sum_i dy[n,g*H+i] b[i,r].
 * All GEMMs go through fl_gemm; nothing here allocates. */
#ifndef FL_TRAIN_MATGRAD_H
#define FL_TRAIN_MATGRAD_H

#include "internal.h"

/* Floats of aux (and of baux) per input row: R for SVD and CP, 0 for dense. */
size_t fl_matg_aux_per_row(const fl_mat *w);

/* Floats of scratch any of the calls below needs for n rows. */
size_t fl_matg_scratch(const fl_mat *w, int n);

/* y (n, rows) = x (n, cols) W^T + beta y; aux (n, R) receives the intermediate.
 * CP needs ldy == rows. */
void fl_matg_forward(const fl_mat *w, int n, const float *x, int ldx, float beta, float *y, int ldy,
                     float *aux, float *scratch);

/* dx (n, cols) = dy (n, rows) W + beta dx (dx may be NULL: only baux is computed);
 * baux (n, R) receives the intermediate. CP needs lddy == rows. */
void fl_matg_backward_x(const fl_mat *w, int n, const float *dy, int lddy, float beta, float *dx,
                        int lddx, float *baux, float *scratch);

/* Accumulate the parameter gradients of W into g (same method and shapes as w):
 * dW += dy^T x, expressed in the factors. x (n, cols), dy (n, rows). */
void fl_matg_backward_w(const fl_mat *w, fl_mat *g, int n, const float *x, int ldx, const float *dy,
                        int lddy, const float *aux, const float *baux, float *scratch);

#endif
