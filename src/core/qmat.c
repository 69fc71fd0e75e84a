/* int8 / bf16 weight matrices of a model: quantizing, the file's view, applying (rules in qmat.h). */
#include "qmat.h"

#include "kernels/quant.h"
#include "quantize.h"

#include <math.h>
#include <string.h>

int fl_mat_num_factors(const fl_mat *w) {
    return w->method == FL_METHOD_DENSE ? 1 : w->method == FL_METHOD_SVD ? 2 : 3;
}

/* Factor j of a dense or SVD matrix: its master and shape, in fl_mat_factors order (U, then V). */
static float *factor(const fl_mat *w, int j, int *rows, int *K) {
    if (w->method == FL_METHOD_DENSE) {
        *rows = w->rows;
        *K = w->cols;
        return w->w;
    }
    FL_ASSERT(w->method == FL_METHOD_SVD);
    *rows = j == 0 ? w->rows : w->rank;
    *K = j == 0 ? w->rank : w->cols;
    return j == 0 ? w->u : w->v;
}

void fl_mat_qfree(fl_mat *w) {
    if (w->qf) {
        for (int j = 0; j < fl_mat_num_factors(w); j++) {
            fl_qfactor *f = &w->qf[j];
            fl_free(f->pq);
            fl_free(f->wscale);
            fl_free(f->wsum);
            fl_free(f->pb);
        }
        fl_free(w->qf);
    }
    w->qf = NULL;
    w->precision = FL_PRECISION_F32;
}

fl_status fl_mat_qbegin(fl_mat *w, fl_precision p, const char *name) {
    fl_mat_qfree(w);
    if (p == FL_PRECISION_F32) return FL_OK;
    if (p != FL_PRECISION_INT8 && p != FL_PRECISION_BF16)
        return fl_fail(FL_ERR_ARG, "%s: unknown precision %d", name, (int)p);
    if (w->method == FL_METHOD_CP)
        return fl_fail(FL_ERR_UNSUPPORTED, "%s: CP factors are kept in f32 (%s requested)", name, fl_precision_name(p));
    const int nf = fl_mat_num_factors(w);
    w->qf = fl_calloc((size_t)nf, sizeof *w->qf);
    bool ok = w->qf != NULL;
    for (int j = 0; ok && j < nf; j++) {
        fl_qfactor *f = &w->qf[j];
        f->master = factor(w, j, &f->rows, &f->K);
        if (p == FL_PRECISION_INT8)
            ok = (f->pq = fl_calloc(fl_qpack_i8_size(0, f->rows, f->K), 1)) &&
                 (f->wscale = fl_calloc((size_t)f->rows, sizeof(float))) &&
                 (f->wsum = fl_calloc((size_t)f->rows, sizeof(int32_t)));
        else
            ok = (f->pb = fl_calloc(fl_qpack_bf16_size(0, f->rows, f->K), sizeof(uint16_t))) != NULL;
    }
    w->precision = p; /* so that qfree frees what was allocated */
    if (!ok) {
        fl_mat_qfree(w);
        return fl_fail(FL_ERR_NOMEM, "%s: out of memory for its %s weights", name, fl_precision_name(p));
    }
    return FL_OK;
}

fl_status fl_mat_qset_i8(fl_mat *w, int j, const char *name, const int8_t *q, const float *scale) {
    FL_ASSERT(w->precision == FL_PRECISION_INT8 && j < fl_mat_num_factors(w));
    fl_qfactor *f = &w->qf[j];
    for (int r = 0; r < f->rows; r++) {
        if (!isfinite(scale[r]))
            return fl_fail(FL_ERR_NONFINITE, "%s: scale of row %d is %s", name, r, isnan(scale[r]) ? "NaN" : "Inf");
        if (scale[r] < 0.0f) return fl_fail(FL_ERR_DATA, "%s: scale of row %d is negative (%g)", name, r, (double)scale[r]);
    }
    fl_status st = fl_qpack_i8_from_q(name, 0, f->rows, f->K, q, f->K, f->pq, f->wsum);
    if (st) return st;
    memcpy(f->wscale, scale, (size_t)f->rows * sizeof(float));
    for (int r = 0; r < f->rows; r++)
        for (int k = 0; k < f->K; k++) {
            const size_t i = (size_t)r * f->K + k;
            f->master[i] = scale[r] * (float)q[i];
        }
    return FL_OK;
}

fl_status fl_mat_qset_master(fl_mat *w, int j, const char *name) {
    FL_ASSERT(w->precision != FL_PRECISION_F32 && j < fl_mat_num_factors(w));
    fl_qfactor *f = &w->qf[j];
    const size_t n = (size_t)f->rows * f->K;
    if (w->precision == FL_PRECISION_BF16) {
        for (size_t i = 0; i < n; i++) {
            float v = fl_bf16_to_f32(fl_bf16_from_f32(f->master[i]));
            if (!isfinite(v))
                return fl_fail(FL_ERR_NONFINITE, "%s: weight %g at row %zu, column %zu %s", name, (double)f->master[i],
                               i / (size_t)f->K, i % (size_t)f->K, isfinite(f->master[i]) ? "rounds to Inf in bf16" : "is not finite");
            f->master[i] = v;
        }
        return fl_qpack_bf16(name, 0, f->rows, f->K, f->master, f->K, f->pb);
    }
    int8_t *q = fl_malloc(n ? n : 1);
    float *scale = fl_malloc(f->rows ? (size_t)f->rows * sizeof(float) : 1);
    fl_status st = q && scale ? FL_OK : fl_fail(FL_ERR_NOMEM, "%s: out of memory quantizing", name);
    if (!st) st = fl_quant_i8_rows(name, f->rows, f->K, f->master, f->K, q, f->K, scale);
    if (!st) st = fl_mat_qset_i8(w, j, name, q, scale);
    fl_free(q);
    fl_free(scale);
    return st;
}

fl_status fl_mat_quantize(fl_mat *w, fl_precision p, const char *name) {
    fl_status st = fl_mat_qbegin(w, p, name);
    for (int j = 0; !st && w->qf && j < fl_mat_num_factors(w); j++) st = fl_mat_qset_master(w, j, name);
    if (st) fl_mat_qfree(w);
    return st;
}

void fl_qfactor_get_i8(const fl_qfactor *f, int8_t *q) {
    // pq[(((blk*Kq + kq)*4 + g)*NB + u)*4 + e] = q[row, 4 kq + e] (quant.h, plain map)
    const int NB = FL_QNB, Kq = (f->K + 3) / 4, nblk = fl_qpanel_blocks(0, f->rows);
    for (int blk = 0; blk < nblk; blk++)
        for (int g = 0; g < 4; g++)
            for (int u = 0; u < NB; u++) {
                const int row = fl_qpanel_row(0, f->rows, blk, g, u);
                if (row < 0) continue;
                for (int k = 0; k < f->K; k++)
                    q[(size_t)row * f->K + k] =
                        f->pq[((((size_t)blk * Kq + k / 4) * 4 + g) * NB + u) * 4 + k % 4];
            }
}

const fl_qfactor *fl_model_tensor_qfactor(const fl_model *m, const fl_tensor *t, fl_precision *p) {
    const float *data = m->params + t->offset;
    for (size_t i = 0; i < fl_model_num_matrices(m); i++) {
        const fl_mat *w = fl_model_mat_const(m, i);
        for (int j = 0; w->qf && j < fl_mat_num_factors(w); j++)
            if (w->qf[j].master == data) {
                *p = w->precision;
                return &w->qf[j];
            }
    }
    *p = FL_PRECISION_F32;
    return NULL;
}

static fl_status mat_copy(fl_mat *dst, const fl_mat *src, const char *name) {
    fl_status st = fl_mat_qbegin(dst, src->precision, name);
    for (int j = 0; !st && dst->qf && j < fl_mat_num_factors(dst); j++) {
        if (src->precision != FL_PRECISION_INT8) { /* bf16: the master is exact, rounding it is the identity */
            st = fl_mat_qset_master(dst, j, name);
            continue;
        }
        const fl_qfactor *f = &src->qf[j];
        int8_t *q = fl_malloc((size_t)f->rows * f->K + 1);
        if (!q) st = fl_fail(FL_ERR_NOMEM, "%s: out of memory copying int8 weights", name);
        else {
            fl_qfactor_get_i8(f, q);
            st = fl_mat_qset_i8(dst, j, name, q, f->wscale);
        }
        fl_free(q);
    }
    if (st) fl_mat_qfree(dst);
    return st;
}

fl_status fl_model_qclone(fl_model *c, const fl_model *src) {
    for (size_t i = 0; i < fl_model_num_matrices(src); i++) {
        const fl_mat *s = fl_model_mat_const(src, i);
        if (s->precision == FL_PRECISION_F32) continue;
        fl_mat_desc d;
        fl_arch_matrix(&src->arch, i, &d);
        fl_status st = mat_copy(fl_model_mat(c, i), s, d.name);
        if (st) return st;
    }
    return FL_OK;
}

fl_status fl_model_requantize(fl_model *m) {
    if (!m) return fl_fail(FL_ERR_ARG, "fl_model_requantize: model is NULL");
    for (size_t i = 0; i < fl_model_num_matrices(m); i++) {
        fl_mat *w = fl_model_mat(m, i);
        if (w->precision == FL_PRECISION_F32) continue;
        fl_mat_desc d;
        fl_arch_matrix(&m->arch, i, &d);
        fl_status st = fl_mat_quantize(w, w->precision, d.name);
        if (st) return st;
    }
    return FL_OK;
}

void fl_model_qfree(fl_model *m) {
    for (int l = 0; m->layer && l < m->arch.layers; l++) {
        fl_mat_qfree(&m->layer[l].wih);
        fl_mat_qfree(&m->layer[l].whh);
    }
    fl_mat_qfree(&m->head);
}

fl_status fl_model_quantize(const fl_model *m, const fl_precision *prec, fl_model **out) {
    if (!out) return fl_fail(FL_ERR_ARG, "fl_model_quantize: out is NULL");
    *out = NULL;
    if (!m || !prec) return fl_fail(FL_ERR_ARG, "NULL argument to fl_model_quantize");
    const size_t nmat = fl_model_num_matrices(m);
    for (size_t i = 0; i < nmat; i++)
        if (prec[i] != FL_PRECISION_F32 && prec[i] != FL_PRECISION_BF16 && prec[i] != FL_PRECISION_INT8)
            return fl_fail(FL_ERR_ARG, "fl_model_quantize: matrix %zu: unknown precision %d", i, (int)prec[i]);
    fl_model *c = NULL;
    fl_status st = fl_model_clone(m, &c);
    for (size_t i = 0; !st && i < nmat; i++) {
        fl_mat *w = fl_model_mat(c, i);
        if (w->precision == prec[i]) continue;
        fl_mat_desc d;
        fl_arch_matrix(&c->arch, i, &d);
        st = fl_mat_quantize(w, prec[i], d.name);
    }
    if (st) {
        fl_model_free(c);
        return st;
    }
    *out = c;
    return FL_OK;
}

/* ------------------------------------------------------------ applying */

/* Floats of scratch one factor with K inputs needs for n rows: xscale (n), then xq (n, ld) bytes. */
static size_t factor_ws(const fl_mat *w, int K, int n) {
    if (w->precision != FL_PRECISION_INT8) return 0;
    return (size_t)n + ((size_t)n * (size_t)fl_quant_act_ld(K) + 3) / 4;
}

size_t fl_mat_qworkspace(const fl_mat *w, int n) {
    if (w->method == FL_METHOD_DENSE) return factor_ws(w, w->cols, n);
    size_t a = factor_ws(w, w->cols, n), b = factor_ws(w, w->rank, n);
    return (size_t)n * w->rank + (a > b ? a : b);
}

/* y (n, rows) += x (n, K) F^T. */
static void factor_apply(const fl_qfactor *f, fl_precision p, int n, const float *x, int ldx, float *y, int ldy,
                         float *ws) {
    const fl_qkernels *k = fl_qkernels_get();
    const int nblk = fl_qpanel_blocks(0, f->rows);
    if (p == FL_PRECISION_BF16) {
        k->bf16_gemv(0, nblk, 0, f->rows, f->K, n, f->pb, x, ldx, y, ldy);
        return;
    }
    const int ldxq = fl_quant_act_ld(f->K);
    float *xscale = ws;                  // xscale: (n)
    uint8_t *xq = (uint8_t *)(ws + n);   // xq: (n, ldxq) u8, zero point 128
    fl_quant_act_u8(n, f->K, x, ldx, xq, ldxq, xscale);
    k->i8_gemv(0, nblk, 0, f->rows, f->K, n, f->pq, f->wscale, f->wsum, xq, ldxq, xscale, y, ldy);
}

void fl_mat_qapply(const fl_mat *w, int n, const float *x, int ldx, float beta, float *y, int ldy, float *ws) {
    FL_ASSERT(w->qf);
    if (beta != 1.0f)
        for (int i = 0; i < n; i++)
            for (int r = 0; r < w->rows; r++) y[(size_t)i * ldy + r] = beta == 0.0f ? 0.0f : beta * y[(size_t)i * ldy + r];
    if (w->method == FL_METHOD_DENSE) {
        factor_apply(&w->qf[0], w->precision, n, x, ldx, y, ldy, ws);
        return;
    }
    // SVD: t (n, R) = x V^T, then y += t U^T
    const int R = w->rank;
    float *t = ws;
    memset(t, 0, (size_t)n * R * sizeof(float));
    factor_apply(&w->qf[1], w->precision, n, x, ldx, t, R, ws + (size_t)n * R);
    factor_apply(&w->qf[0], w->precision, n, t, R, y, ldy, ws + (size_t)n * R);
}
