/* The one GEMM wrapper, and applying a weight matrix in any storage method. */
#include "internal.h"
#include "kernels/kernels.h"
#include "qmat.h"

#include <cblas.h>
#include <string.h>

void fl_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* BLAS leaves C untouched for K = 0 only when beta == 1; be explicit. */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + j];
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* y (n, rows) = x (n, K) W^T + beta y with W (rows, K) row-major: the project's own kernel where it
 * beats this BLAS (fl_kernels_gemm_nt_choice), else fl_gemm. */
static void apply_nt(int n, int rows, int K, const float *x, int ldx, const float *W, float beta, float *y,
                     int ldy) {
    const fl_kernels *k = fl_kernels_gemm_nt_choice(n, K);
    if (k && rows > 0) k->gemm_nt(n, rows, K, x, ldx, W, K, beta, y, ldy);
    else fl_gemm(false, true, n, rows, K, 1.0f, x, ldx, W, K, beta, y, ldy);
}

size_t fl_mat_apply_workspace(const fl_mat *w, int n) {
    if (w->qf) return fl_mat_qworkspace(w, n);
    switch (w->method) {
    case FL_METHOD_DENSE: return 0;
    case FL_METHOD_SVD: return (size_t)n * w->rank;
    case FL_METHOD_CP: return (size_t)5 * n * w->rank; /* z (n, R) and z scaled per gate (n, 4, R) */
    }
    return 0;
}

void fl_mat_apply(const fl_mat *w, int n, const float *x, int ldx, float beta, float *y, int ldy,
                  float *ws) {
    if (n <= 0) return;
    if (w->qf) { /* int8 / bf16 weights (qmat.h) */
        fl_mat_qapply(w, n, x, ldx, beta, y, ldy, ws);
        return;
    }
    const int R = w->rank;
    switch (w->method) {
    case FL_METHOD_DENSE:
        // y (n, rows) = x (n, cols) W^T
        apply_nt(n, w->rows, w->cols, x, ldx, w->w, beta, y, ldy);
        return;
    case FL_METHOD_SVD:
        // t (n, R) = x V^T;  y (n, rows) = t U^T
        apply_nt(n, R, w->cols, x, ldx, w->v, 0.0f, ws, R);
        apply_nt(n, w->rows, R, ws, R, w->u, beta, y, ldy);
        return;
    case FL_METHOD_CP: {
        const int H = w->rows / 4;
        float *z = ws;                   // z (n, R) = x C
        float *zs = ws + (size_t)n * R;  // zs (n, 4, R): z scaled by a[g, :]
        fl_gemm(false, false, n, R, w->cols, 1.0f, x, ldx, w->c, R, 0.0f, z, R);
        fl_kernels_get()->cp_scale(n, R, w->a, z, R, zs);
        // y[i, g*H + h] = sum_r zs[i, g, r] b[h, r]
        if (ldy == 4 * H) {
            fl_gemm(false, true, 4 * n, H, R, 1.0f, zs, R, w->b, R, beta, y, H);
        } else {
            for (int i = 0; i < n; i++)
                fl_gemm(false, true, 4, H, R, 1.0f, zs + (size_t)i * 4 * R, R, w->b, R, beta,
                        y + (size_t)i * ldy, H);
        }
        return;
    }
    }
}

void fl_add_bias_rows(float *y, size_t n, int cols, size_t ldy, const float *bias) {
    for (size_t i = 0; i < n; i++) {
        float *r = y + i * ldy;
        for (int j = 0; j < cols; j++) r[j] += bias[j];
    }
}

void fl_mat_to_dense(const fl_mat *w, float *out) {
    const int m = w->rows, n = w->cols, R = w->rank;
    switch (w->method) {
    case FL_METHOD_DENSE: memcpy(out, w->w, (size_t)m * n * sizeof(float)); return;
    case FL_METHOD_SVD: fl_gemm(false, false, m, n, R, 1.0f, w->u, R, w->v, n, 0.0f, out, n); return;
    case FL_METHOD_CP: {
        const int H = m / 4;
        for (int g = 0; g < 4; g++)
            for (int i = 0; i < H; i++)
                for (int j = 0; j < n; j++) {
                    double s = 0;
                    for (int r = 0; r < R; r++)
                        s += (double)w->a[g * R + r] * w->b[(size_t)i * R + r] * w->c[(size_t)j * R + r];
                    out[((size_t)g * H + i) * n + j] = (float)s;
                }
        return;
    }
    }
}
