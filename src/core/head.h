/* The output head through the packed projection kernel (gemm_pk), packed once per model (head.c). */
#ifndef FL_HEAD_H
#define FL_HEAD_H

#include "internal.h"
#include "recurrent.h"

/* A head's weights in gemm_pk's packed layout (kernels/kernels.h), made with the layers' packs
 * (packed.c) and read by every session on the model:
 *   dense  pk = W (V, F)
 *   SVD    pk = U (V, R), pv = V (R, F)     (W = U V) */
typedef struct fl_head_pack {
    float *pk, *pv;
} fl_head_pack;

/* Pack head w where it runs packed (f32 dense, or SVD with small factors: head.c; a kernel level with
 * gemm_pk: with_pk); else
 * *out is all NULL and FL_OK. With release, the pages lying wholly inside w's packed factors are given
 * back as packing consumes them (fl_pages_release), until fl_head_unpack writes them back. On error
 * (FL_ERR_NOMEM) *out is all NULL and w is unchanged. */
fl_status fl_head_pack_make(const fl_mat *w, bool with_pk, bool release, fl_head_pack *out);

/* Write w's packed factors back from p, bit-identical; with consume, p's pages are given back as they
 * are read (p is then garbage, to be freed). Returns false, writing nothing, when nothing is packed. */
bool fl_head_unpack(fl_head_pack *p, fl_mat *w, bool consume);

/* Free what fl_head_pack_make allocated and zero *p; NULL and a zeroed pack are accepted. */
void fl_head_pack_free(fl_head_pack *p);

/* y (n, V) = x (n, F) W^T + bias for head w, row strides ldx and ldy: through p on r's threads where
 * p holds w (gemm_pk, bias fused), else fl_mat_apply (BLAS or the quantized kernels) onto y filled
 * with the bias; bias (V) may be NULL.
 * ws: fl_mat_apply_workspace(w, n) floats. */
void fl_head_apply(const fl_head_pack *p, const fl_mat *w, fl_rec *r, int n, const float *x, int ldx,
                   const float *bias, float *y, int ldy, float *ws);

#endif
