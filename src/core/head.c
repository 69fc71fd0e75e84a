/* The output head through the packed projection kernel, packed once per model.
 *
 * A language model's head is often its largest matrix (a 10k-word vocabulary over 400 units: 16 MB)
 * and runs over every step's output. Through BLAS each call re-packs all of it into BLAS's own
 * panels before computing; packed once here instead, a call streams gemm_pk's panels once with the
 * bias fused into the epilogue:
 *   dense  y (n, V) = x (n, F) W^T + b            W (V, F) as pk
 *   SVD    t (n, R) = x V^T;  y = t U^T + b       V (R, F) as pv, U (V, R) as pk
 * The pack lives with the layers' packs (packed.c: the first session makes it, the last one frees it,
 * the originals' pages are given back while it exists and written back bit-identical), and is read by
 * every session on the model; the product runs on the session's top-layer threads (fl_rec_gemm_pk).
 * Heads stay on fl_mat_apply where no packed form is made: int8 / bf16 heads (their own kernels), CP,
 * and kernel levels without gemm_pk (ref: BLAS there).
 *
 * What runs packed, from measurements on one thread of a Zen 3 core against OpenBLAS 0.3.21 sgemm
 * plus the bias pass (gemm_pk's time / BLAS's, today's gemm_pk_avx2):
 *   dense 10000x400 (a word LM)          0.58 at 1 row, 0.9 at 35, 1.0 at 560: packed
 *   64x512 (a char LM), 10x128 (a classifier) and their SVD factors: 0.2 to 0.9 from 1 to 1600 rows: packed
 *   SVD of 10000x400 at rank 256: U (10000, 256) 0.68 at 1 row, 1.0 at 35, 1.1 to 1.2 at 560; the
 *   word LM's requests (35 and 560 rows) came out 1.0x and 0.85x: such an SVD head stays on BLAS.
 * So an SVD head is packed only while its factors are small (SVD_PACK_MAX_FLOATS: at most a few
 * times this machine's L2), where BLAS's per-call packing and overhead dominate; a dense head always,
 * as its original cannot stay beside the packed copy (the model would run at nearly twice its size)
 * and the two tie at worst. */
#include "head.h"

#include "kernels/kernels.h"

#include <string.h>

enum { SVD_PACK_MAX_FLOATS = 256 * 1024 }; /* an SVD head's U and V together (1 MB), see above */

/* Pack w (rows, K) into a fresh pk; NULL when out of memory. */
static float *pack_new(int rows, int K) {
    /* fl_malloc, not fl_calloc: fl_pk_pack writes every element, and pages are taken as it reaches them */
    return fl_malloc(fl_pk_floats(rows, K) * sizeof(float));
}

fl_status fl_head_pack_make(const fl_mat *w, bool with_pk, bool release, fl_head_pack *out) {
    *out = (fl_head_pack){0};
    if (!with_pk || w->qf || w->rows <= 0 || w->cols <= 0) return FL_OK;
    fl_head_pack p = {0};
    switch (w->method) {
    case FL_METHOD_DENSE:
        if (!(p.pk = pack_new(w->rows, w->cols))) break;
        fl_pk_pack(w->w, w->rows, w->cols, release, p.pk);
        break;
    case FL_METHOD_SVD:
        if ((size_t)w->rank * ((size_t)w->rows + w->cols) > SVD_PACK_MAX_FLOATS) return FL_OK;
        if (w->rank <= 0 || !(p.pk = pack_new(w->rows, w->rank)) || !(p.pv = pack_new(w->rank, w->cols))) break;
        /* last, once nothing can fail */
        fl_pk_pack(w->u, w->rows, w->rank, release, p.pk);
        fl_pk_pack(w->v, w->rank, w->cols, release, p.pv);
        break;
    case FL_METHOD_CP: return FL_OK; /* no gate axis in a head: not expected, and fl_mat_apply runs it */
    }
    if (!p.pk || (w->method == FL_METHOD_SVD && !p.pv)) {
        fl_head_pack_free(&p);
        return fl_fail(FL_ERR_NOMEM, "out of memory packing the %dx%d head", w->rows, w->cols);
    }
    *out = p;
    return FL_OK;
}

bool fl_head_unpack(fl_head_pack *p, fl_mat *w, bool consume) {
    if (!p->pk) return false;
    if (w->method == FL_METHOD_DENSE) {
        fl_pk_unpack(p->pk, w->rows, w->cols, consume, w->w);
    } else {
        fl_pk_unpack(p->pk, w->rows, w->rank, consume, w->u);
        fl_pk_unpack(p->pv, w->rank, w->cols, consume, w->v);
    }
    return true;
}

void fl_head_pack_free(fl_head_pack *p) {
    if (!p) return;
    fl_free(p->pk);
    fl_free(p->pv);
    *p = (fl_head_pack){0};
}

void fl_head_apply(const fl_head_pack *p, const fl_mat *w, fl_rec *r, int n, const float *x, int ldx,
                   const float *bias, float *y, int ldy, float *ws) {
    if (n <= 0) return;
    if (!p || !p->pk) {
        // y = bias, then y += x W^T (beta 1): the bias costs the one write pass over y that BLAS would
        // spend zeroing it (beta 0), not a second read-and-write pass of its own
        if (!bias) {
            fl_mat_apply(w, n, x, ldx, 0.0f, y, ldy, ws);
            return;
        }
        for (int i = 0; i < n; i++) memcpy(y + (size_t)i * ldy, bias, (size_t)w->rows * sizeof(float));
        fl_mat_apply(w, n, x, ldx, 1.0f, y, ldy, ws);
        return;
    }
    if (w->method == FL_METHOD_DENSE) {
        fl_rec_gemm_pk(r, n, w->rows, w->cols, x, ldx, p->pk, bias, y, ldy);
        return;
    }
    // SVD: ws t (n, R) = x V^T;  y = t U^T + bias
    const int R = w->rank;
    fl_rec_gemm_pk(r, n, R, w->cols, x, ldx, p->pv, NULL, ws, R);
    fl_rec_gemm_pk(r, n, w->rows, R, ws, R, p->pk, bias, y, ldy);
}
