/* Weight matrices stored in int8 or bf16 (issue 13): the model side of the low-precision kernels
 * (kernels/quant.h) and conversions (quantize.h). Internal API (not installed).
 *
 * A quantized fl_mat keeps two forms of each stored factor (dense: W; SVD: U then V, the order of
 * fl_mat_factors): its float32 master in the model's parameter block, always equal to the
 * dequantized weights (int8: wscale[r] * q[r, k]; bf16: the bf16 value), which training, the
 * decomposition and the planner read as before; and a packed copy for the kernels (fl_qfactor, plain
 * row map), which inference and the model file use. The master is what fine-tuning updates; calling
 * fl_mat_quantize again re-quantizes from it. CP matrices stay f32 (their C factor is applied
 * transposed, so per-output-row scales would not be per row of the stored tensor). */
#ifndef FL_QMAT_H
#define FL_QMAT_H

#include "internal.h"

#include <stdint.h>

/* One low-precision factor F (rows, K), packed with the plain row map of quant.h. */
typedef struct fl_qfactor {
    int rows, K;
    float *master;      /* F's float32 values (rows, K) in the model's block: dequantized */
    int8_t *pq;         /* int8: panel (fl_qpack_i8_size bytes) */
    float *wscale;      /* int8: (rows) per-row scales */
    int32_t *wsum;      /* int8: (rows) sum_k q[r, k] */
    uint16_t *pb;       /* bf16: panel (fl_qpack_bf16_size elements) */
} fl_qfactor;

/* Number of stored factors of w (dense 1, SVD 2, CP 3). */
int fl_mat_num_factors(const fl_mat *w);

/* Store w in precision p, quantizing every factor from its float32 master (which then holds the
 * dequantized values). p F32 drops the low-precision copy. name: the matrix, for errors.
 * FL_ERR_UNSUPPORTED for CP in int8/bf16, FL_ERR_NONFINITE (a NaN/Inf weight, or one that rounds
 * to Inf in bf16), FL_ERR_NOMEM. On error w is left in f32. */
fl_status fl_mat_quantize(fl_mat *w, fl_precision p, const char *name);

/* For the model file: allocate w's packed factors for p without filling them (then fill each factor
 * with fl_mat_qset_i8 or fl_mat_qset_master). Errors as fl_mat_quantize. */
fl_status fl_mat_qbegin(fl_mat *w, fl_precision p, const char *name);

/* Fill int8 factor j from stored weights q (rows, K) and scales (rows): checks them (a NaN/Inf scale:
 * FL_ERR_NONFINITE; a negative scale or a weight of -128: FL_ERR_DATA, naming `name`, the row and
 * column), packs them and writes the dequantized master. */
fl_status fl_mat_qset_i8(fl_mat *w, int j, const char *name, const int8_t *q, const float *scale);

/* Fill factor j from its master (quantized or rounded to bf16, then written back dequantized). */
fl_status fl_mat_qset_master(fl_mat *w, int j, const char *name);

/* Free w's packed factors; w becomes f32 (its master is kept). */
void fl_mat_qfree(fl_mat *w);

/* The int8 weights (rows, K) of factor f, read back from its panel. */
void fl_qfactor_get_i8(const fl_qfactor *f, int8_t *q);

/* The low-precision factor whose master is the tensor t of m, or NULL (t is f32). */
const fl_qfactor *fl_model_tensor_qfactor(const fl_model *m, const fl_tensor *t, fl_precision *p);

/* Model-wide hooks: copy src's precisions and packed factors into c (a clone with src's params);
 * free them all (before the block). fl_model_requantize (public) re-quantizes from the masters. */
fl_status fl_model_qclone(fl_model *c, const fl_model *src);
void fl_model_qfree(fl_model *m);

/* Floats of workspace fl_mat_qapply needs for n rows. */
size_t fl_mat_qworkspace(const fl_mat *w, int n);

/* Y (n, rows) = X (n, cols) W^T + beta Y through the low-precision kernels (fl_qkernels_get()):
 * int8 quantizes each row of X (and of SVD's intermediate V x) to u8 on the fly. w->qf != NULL. */
void fl_mat_qapply(const fl_mat *w, int n, const float *x, int ldx, float beta, float *y, int ldy, float *ws);

#endif
