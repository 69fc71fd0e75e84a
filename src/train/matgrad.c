/* Forward/backward of one weight matrix for dense, SVD and CP storage (see matgrad.h). */
#include "matgrad.h"
#include "kernels/kernels.h"

size_t fl_matg_aux_per_row(const fl_mat *w) {
    return w->method == FL_METHOD_DENSE ? 0 : (size_t)w->rank;
}

size_t fl_matg_scratch(const fl_mat *w, int n) {
    if (w->method != FL_METHOD_CP) return 0;
    size_t a = (size_t)4 * n * w->rank, b = (size_t)(w->rows / 4) * w->rank;
    return a > b ? a : b;
}

void fl_matg_forward(const fl_mat *w, int n, const float *x, int ldx, float beta, float *y, int ldy,
                     float *aux, float *scratch) {
    if (n <= 0) return;
    const int R = w->rank;
    switch (w->method) {
    case FL_METHOD_DENSE:
        fl_gemm(false, true, n, w->rows, w->cols, 1.0f, x, ldx, w->w, w->cols, beta, y, ldy);
        return;
    case FL_METHOD_SVD:
        // aux t (n, R) = x V^T;  y (n, rows) = t U^T
        fl_gemm(false, true, n, R, w->cols, 1.0f, x, ldx, w->v, w->cols, 0.0f, aux, R);
        fl_gemm(false, true, n, w->rows, R, 1.0f, aux, R, w->u, R, beta, y, ldy);
        return;
    case FL_METHOD_CP: {
        FL_ASSERT(ldy == w->rows);
        const int H = w->rows / 4;
        // aux z (n, R) = x C;  zs (n, 4, R) = z * a[g, :];  y (n*4, H) = zs B^T
        fl_gemm(false, false, n, R, w->cols, 1.0f, x, ldx, w->c, R, 0.0f, aux, R);
        float *zs = scratch;
        fl_kernels_get()->cp_scale(n, R, w->a, aux, R, zs);
        fl_gemm(false, true, 4 * n, H, R, 1.0f, zs, R, w->b, R, beta, y, H);
        return;
    }
    }
}

void fl_matg_backward_x(const fl_mat *w, int n, const float *dy, int lddy, float beta, float *dx,
                        int lddx, float *baux, float *scratch) {
    if (n <= 0) return;
    const int R = w->rank;
    switch (w->method) {
    case FL_METHOD_DENSE:
        // dx (n, cols) = dy (n, rows) W (rows, cols)
        if (dx) fl_gemm(false, false, n, w->cols, w->rows, 1.0f, dy, lddy, w->w, w->cols, beta, dx, lddx);
        return;
    case FL_METHOD_SVD:
        // s (n, R) = dy U;  dx = s V
        fl_gemm(false, false, n, R, w->rows, 1.0f, dy, lddy, w->u, R, 0.0f, baux, R);
        if (dx) fl_gemm(false, false, n, w->cols, R, 1.0f, baux, R, w->v, w->cols, beta, dx, lddx);
        return;
    case FL_METHOD_CP: {
        FL_ASSERT(lddy == w->rows);
        const int H = w->rows / 4;
        // E (n*4, R) = dy (n*4, H) B;  dz (n, R) = sum_g E[:, g, :] * a[g, :];  dx = dz C^T
        float *E = scratch;
        fl_gemm(false, false, 4 * n, R, H, 1.0f, dy, H, w->b, R, 0.0f, E, R);
        for (int i = 0; i < n; i++)
            for (int r = 0; r < R; r++) {
                float s = 0;
                for (int g = 0; g < 4; g++) s += E[((size_t)i * 4 + g) * R + r] * w->a[g * R + r];
                baux[(size_t)i * R + r] = s;
            }
        if (dx) fl_gemm(false, true, n, w->cols, R, 1.0f, baux, R, w->c, R, beta, dx, lddx);
        return;
    }
    }
}

void fl_matg_backward_w(const fl_mat *w, fl_mat *g, int n, const float *x, int ldx, const float *dy,
                        int lddy, const float *aux, const float *baux, float *scratch) {
    if (n <= 0) return;
    const int R = w->rank;
    switch (w->method) {
    case FL_METHOD_DENSE:
        // dW (rows, cols) += dy^T x
        fl_gemm(true, false, w->rows, w->cols, n, 1.0f, dy, lddy, x, ldx, 1.0f, g->w, w->cols);
        return;
    case FL_METHOD_SVD:
        // dU (rows, R) += dy^T t;  dV (R, cols) += s^T x
        fl_gemm(true, false, w->rows, R, n, 1.0f, dy, lddy, aux, R, 1.0f, g->u, R);
        fl_gemm(true, false, R, w->cols, n, 1.0f, baux, R, x, ldx, 1.0f, g->v, w->cols);
        return;
    case FL_METHOD_CP: {
        const int H = w->rows / 4;
        // Per gate: M_g (H, R) = dy[:, g*H:(g+1)*H]^T z, then
        //   dA[g, r] += sum_i b[i, r] M_g[i, r];   dB[i, r] += a[g, r] M_g[i, r]
        float *M = scratch;
        for (int gt = 0; gt < 4; gt++) {
            fl_gemm(true, false, H, R, n, 1.0f, dy + (size_t)gt * H, lddy, aux, R, 0.0f, M, R);
            for (int r = 0; r < R; r++) {
                double s = 0;
                for (int i = 0; i < H; i++) s += (double)w->b[(size_t)i * R + r] * M[(size_t)i * R + r];
                g->a[gt * R + r] += (float)s;
            }
            for (int i = 0; i < H; i++)
                for (int r = 0; r < R; r++) g->b[(size_t)i * R + r] += w->a[gt * R + r] * M[(size_t)i * R + r];
        }
        // dC (cols, R) += x^T dz
        fl_gemm(true, false, w->cols, R, n, 1.0f, x, ldx, baux, R, 1.0f, g->c, R);
        return;
    }
    }
}
