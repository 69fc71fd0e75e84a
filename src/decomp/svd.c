/* Truncated SVD of a weight matrix through LAPACKE_dgesdd (divide and conquer), in double. */
#include "decomp/decomp.h"

#include <lapacke.h>
#include <math.h>
#include <string.h>

void fl_svd_free(fl_svd *svd) {
    if (!svd) return;
    fl_free(svd->u);
    fl_free(svd->s);
    fl_free(svd->vt);
    fl_free(svd->tail);
    fl_free(svd);
}

fl_status fl_svd_compute(const float *W, int m, int n, fl_svd **out) {
    if (!out) return fl_fail(FL_ERR_ARG, "svd: out is NULL");
    *out = NULL;
    if (!W) return fl_fail(FL_ERR_ARG, "svd: matrix is NULL");
    if (m < 1 || n < 1) return fl_fail(FL_ERR_ARG, "svd: matrix shape %dx%d must be positive", m, n);
    size_t mn = (size_t)m * (size_t)n;
    int k = m < n ? m : n;
    bool nonzero = false;
    for (size_t i = 0; i < mn; i++) {
        if (!isfinite(W[i]))
            return fl_fail(FL_ERR_NONFINITE, "svd: %dx%d matrix has a non-finite entry at (%zu, %zu)", m,
                           n, i / (size_t)n, i % (size_t)n);
        if (W[i] != 0.0f) nonzero = true;
    }
    if (!nonzero)
        return fl_fail(FL_ERR_ARG, "svd: %dx%d matrix is all zeros (relative error undefined)", m, n);

    fl_svd *svd = fl_calloc(1, sizeof *svd);
    double *a = fl_calloc(mn, sizeof(double)); // a: (m, n) copy, destroyed by dgesdd
    if (svd) {
        svd->m = m;
        svd->n = n;
        svd->k = k;
        svd->u = fl_calloc((size_t)m * k, sizeof(double));
        svd->s = fl_calloc((size_t)k, sizeof(double));
        svd->vt = fl_calloc((size_t)k * n, sizeof(double));
        svd->tail = fl_calloc((size_t)k + 1, sizeof(double));
    }
    if (!svd || !a || !svd->u || !svd->s || !svd->vt || !svd->tail) {
        fl_free(a);
        fl_svd_free(svd);
        return fl_fail(FL_ERR_NOMEM, "svd: out of memory for a %dx%d matrix", m, n);
    }
    for (size_t i = 0; i < mn; i++) a[i] = W[i];
    lapack_int info = LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', m, n, a, n, svd->s, svd->u, k, svd->vt, n);
    fl_free(a);
    if (info != 0) {
        fl_svd_free(svd);
        return fl_fail(FL_ERR_NUMERIC, "svd: LAPACKE_dgesdd failed on a %dx%d matrix (info %d)", m, n,
                       (int)info);
    }
    svd->tail[k] = 0;
    for (int r = k - 1; r >= 0; r--) svd->tail[r] = svd->tail[r + 1] + svd->s[r] * svd->s[r];
    *out = svd;
    return FL_OK;
}

fl_status fl_svd_truncate(const fl_svd *svd, int rank, float *u, float *v) {
    if (!svd || !u || !v) return fl_fail(FL_ERR_ARG, "svd: NULL argument to fl_svd_truncate");
    if (rank < 1 || rank > svd->k)
        return fl_fail(FL_ERR_ARG, "svd: rank %d outside [1, %d] for a %dx%d matrix", rank, svd->k,
                       svd->m, svd->n);
    const int m = svd->m, n = svd->n, k = svd->k, R = rank;
    // u (m, R) = U[:, :R] diag(sqrt s);  v (R, n) = diag(sqrt s) Vt[:R, :]
    for (int i = 0; i < m; i++)
        for (int r = 0; r < R; r++) u[(size_t)i * R + r] = (float)(svd->u[(size_t)i * k + r] * sqrt(svd->s[r]));
    for (int r = 0; r < R; r++) {
        double q = sqrt(svd->s[r]);
        for (int j = 0; j < n; j++) v[(size_t)r * n + j] = (float)(q * svd->vt[(size_t)r * n + j]);
    }
    return FL_OK;
}

double fl_svd_error(const fl_svd *svd, int rank) {
    if (rank < 0) rank = 0;
    if (rank > svd->k) rank = svd->k;
    if (svd->tail[0] <= 0) return 0;
    return sqrt(svd->tail[rank] / svd->tail[0]);
}

int fl_svd_rank_for_tol(const fl_svd *svd, double tol) {
    // tail is non-increasing in r, so the first r meeting tol is the smallest.
    for (int r = 1; r <= svd->k; r++)
        if (fl_svd_error(svd, r) <= tol) return r;
    return svd->k;
}

int fl_svd_rank_for_budget(int m, int n, double budget) {
    int k = m < n ? m : n;
    double lim = budget * (double)m * (double)n;
    int R = (int)floor(lim / ((double)m + (double)n));
    if (R > k) R = k;
    if (R < 1) R = 1;
    return R;
}

double fl_rel_error(const float *W, const float *Wt, size_t count) {
    double num = 0, den = 0;
    for (size_t i = 0; i < count; i++) {
        double d = (double)W[i] - (double)Wt[i];
        num += d * d;
        den += (double)W[i] * W[i];
    }
    if (den == 0) return num == 0 ? 0 : INFINITY;
    return sqrt(num / den);
}
