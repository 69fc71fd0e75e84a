/* CP decomposition of an LSTM gate matrix viewed as a 4 x H x N tensor, by alternating least squares.
 *
 *   T[g, i, j] ~ sum_r A[g, r] B[i, r] C[j, r]      T: (4, H, N) = W (4H, N) row-major
 *
 * Everything runs in double. With X the (4H, N) matrix of T, the MTTKRPs of one sweep take two GEMMs:
 *   P (4H, R) = X C                  ->  M_A[g, r] = sum_i P[gH+i, r] B[i, r],  M_B[i, r] = sum_g P[gH+i, r] A[g, r]
 *   K (4H, R) = A (.) B (row gH+i: A[g,:] * B[i,:])  ->  M_C (N, R) = X^T K
 * and each factor solves  F_new F = M  with F = Hadamard product of the other two Gram matrices. */
#include "decomp/decomp.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <string.h>

fl_cp_opts fl_cp_opts_default(void) {
    return (fl_cp_opts){.max_iter = 200, .tol = 1e-7, .seed = 0, .on_iter = NULL, .ctx = NULL};
}

int fl_cp_max_useful_rank(int H, int N) {
    double R = 4.0 * H * (double)N / (4.0 + H + (double)N);
    return R < 1 ? 1 : (int)R;
}

typedef struct cp_work {
    int H, N, R;
    double *X;        /* (4H, N) */
    double *A, *B, *C;/* (4, R), (H, R), (N, R) */
    double *P;        /* (4H, R): X C, then reused for the Khatri-Rao product A (.) B */
    double *M;        /* (max(H, N, 4), R) MTTKRP result, overwritten by the solve */
    double *GA, *GB, *GC; /* (R, R) Gram matrices */
    double *F, *F2;   /* (R, R) normal-equation matrix and a copy for the fallback */
    double *sv;       /* (R) singular values for dgelsd */
    double *G;        /* (max(H, N), max(H, N)) Gram of an unfolding, for the initialisation */
    double *ev;       /* (max(H, N)) eigenvalues */
} cp_work;

static void work_free(cp_work *w) {
    double **p[] = {&w->X, &w->A, &w->B, &w->C, &w->P, &w->M, &w->GA, &w->GB, &w->GC,
                    &w->F, &w->F2, &w->sv, &w->G, &w->ev};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) {
        fl_free(*p[i]);
        *p[i] = NULL;
    }
}

static fl_status work_alloc(cp_work *w) {
    size_t H = (size_t)w->H, N = (size_t)w->N, R = (size_t)w->R;
    size_t big = H > N ? H : N, mrows = big > 4 ? big : 4;
    w->X = fl_calloc(4 * H * N, sizeof(double));
    w->A = fl_calloc(4 * R, sizeof(double));
    w->B = fl_calloc(H * R, sizeof(double));
    w->C = fl_calloc(N * R, sizeof(double));
    w->P = fl_calloc(4 * H * R, sizeof(double));
    w->M = fl_calloc(mrows * R, sizeof(double));
    w->GA = fl_calloc(R * R, sizeof(double));
    w->GB = fl_calloc(R * R, sizeof(double));
    w->GC = fl_calloc(R * R, sizeof(double));
    w->F = fl_calloc(R * R, sizeof(double));
    w->F2 = fl_calloc(R * R, sizeof(double));
    w->sv = fl_calloc(R, sizeof(double));
    w->G = fl_calloc(big * big, sizeof(double));
    w->ev = fl_calloc(big, sizeof(double));
    if (!w->X || !w->A || !w->B || !w->C || !w->P || !w->M || !w->GA || !w->GB || !w->GC || !w->F ||
        !w->F2 || !w->sv || !w->G || !w->ev) {
        work_free(w);
        return fl_fail(FL_ERR_NOMEM, "cp: out of memory for a 4x%dx%d tensor at rank %d", w->H, w->N, w->R);
    }
    return FL_OK;
}

/* G (R, R) = F^T F for F (rows, R). Full matrix (both triangles). */
static void gram(const double *F, int rows, int R, double *G) {
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, R, R, rows, 1.0, F, R, F, R, 0.0, G, R);
}

/* Set the leading columns of F (n, R) to the eigenvectors of the symmetric G (n, n) (upper triangle,
 * column-major) with the largest eigenvalues; columns past n get seeded N(0, 1/n) entries. */
static fl_status leading_vectors(double *G, int n, int R, double *ev, double *F, fl_rng *rng) {
    lapack_int info = LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'V', 'U', n, G, n, ev);
    if (info != 0) return fl_fail(FL_ERR_NUMERIC, "cp: LAPACKE_dsyevd failed initialising (info %d)", (int)info);
    // Eigenvalues ascend; eigenvector k is column k of G (column-major): G[k*n + i].
    for (int r = 0; r < R; r++) {
        if (r < n) {
            const double *e = G + (size_t)(n - 1 - r) * n;
            for (int i = 0; i < n; i++) F[(size_t)i * R + r] = e[i];
        } else {
            for (int i = 0; i < n; i++) F[(size_t)i * R + r] = fl_rng_normal(rng) / sqrt((double)n);
        }
    }
    return FL_OK;
}

/* Solve Fnew F = M for Fnew (rows, R), F (R, R) symmetric positive semi-definite; M is overwritten
 * with the solution. Cholesky when F is well conditioned (reciprocal condition > 1e-12); otherwise
 * (F singular or nearly so, e.g. R above a mode size) minimum-norm least squares via SVD, which
 * still minimises the ALS subproblem, so the fit cannot get worse. */
static fl_status solve(cp_work *w, double *M, int rows) {
    const int R = w->R;
    memcpy(w->F2, w->F, (size_t)R * R * sizeof(double));
    // Row-major M (rows, R) is column-major M^T (R, rows): solve F Z = M^T, Z^T = M F^{-1}.
    double anorm = LAPACKE_dlange(LAPACK_COL_MAJOR, '1', R, R, w->F2, R), rcond = 0;
    lapack_int info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', R, w->F2, R);
    if (info < 0) return fl_fail(FL_ERR_NUMERIC, "cp: LAPACKE_dpotrf argument error (info %d)", (int)info);
    if (info == 0) {
        info = LAPACKE_dpocon(LAPACK_COL_MAJOR, 'U', R, w->F2, R, anorm, &rcond);
        if (info != 0) rcond = 0;
    }
    if (rcond > 1e-12) {
        info = LAPACKE_dpotrs(LAPACK_COL_MAJOR, 'U', R, rows, w->F2, R, M, R);
        if (info != 0) return fl_fail(FL_ERR_NUMERIC, "cp: LAPACKE_dpotrs failed (info %d)", (int)info);
        return FL_OK;
    }
    memcpy(w->F2, w->F, (size_t)R * R * sizeof(double));
    lapack_int rank;
    info = LAPACKE_dgelsd(LAPACK_COL_MAJOR, R, R, rows, w->F2, R, M, R, w->sv, 1e-12, &rank);
    if (info != 0) return fl_fail(FL_ERR_NUMERIC, "cp: LAPACKE_dgelsd failed (info %d)", (int)info);
    return FL_OK;
}

/* F = G1 o G2 (Hadamard). */
static void hadamard(const double *G1, const double *G2, int R, double *F) {
    for (size_t i = 0; i < (size_t)R * R; i++) F[i] = G1[i] * G2[i];
}

/* Normalise the columns of F (rows, R) to unit norm, multiplying the norms into A's columns. */
static void normalise_into_a(double *F, int rows, int R, double *A) {
    for (int r = 0; r < R; r++) {
        double s = 0;
        for (int i = 0; i < rows; i++) s += F[(size_t)i * R + r] * F[(size_t)i * R + r];
        s = sqrt(s);
        if (s == 0) continue;
        for (int i = 0; i < rows; i++) F[(size_t)i * R + r] /= s;
        for (int g = 0; g < 4; g++) A[g * R + r] *= s;
    }
}

static double col_norm(const double *F, int rows, int R, int r) {
    double s = 0;
    for (int i = 0; i < rows; i++) s += F[(size_t)i * R + r] * F[(size_t)i * R + r];
    return sqrt(s);
}

/* P (4H, R): row gH+i = A[g, :] * B[i, :] (Khatri-Rao product, mode-1 index outer). */
static void khatri_rao(const double *A, const double *B, int H, int R, double *P) {
    for (int g = 0; g < 4; g++)
        for (int i = 0; i < H; i++)
            for (int r = 0; r < R; r++) P[((size_t)g * H + i) * R + r] = A[g * R + r] * B[(size_t)i * R + r];
}

/* One ALS sweep (A, B, then C). Returns the relative error of the factors after the sweep, from
 * ||X - X~||^2 = ||X||^2 - 2 <X, X~> + ||X~||^2 (Gram matrices; no reconstruction). */
static fl_status sweep(cp_work *w, double normX2, double *rel) {
    const int H = w->H, N = w->N, R = w->R;
    fl_status st;
    // P (4H, R) = X (4H, N) C (N, R)
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 4 * H, R, N, 1.0, w->X, N, w->C, R, 0.0, w->P, R);

    // A: M_A (4, R)[g, r] = sum_i P[gH+i, r] B[i, r];  A (B^T B o C^T C) = M_A
    memset(w->M, 0, (size_t)4 * R * sizeof(double));
    for (int g = 0; g < 4; g++)
        for (int i = 0; i < H; i++)
            for (int r = 0; r < R; r++) w->M[g * R + r] += w->P[((size_t)g * H + i) * R + r] * w->B[(size_t)i * R + r];
    hadamard(w->GB, w->GC, R, w->F);
    if ((st = solve(w, w->M, 4))) return st;
    memcpy(w->A, w->M, (size_t)4 * R * sizeof(double));
    gram(w->A, 4, R, w->GA);

    // B: M_B (H, R)[i, r] = sum_g P[gH+i, r] A[g, r];  B (A^T A o C^T C) = M_B
    for (int i = 0; i < H; i++)
        for (int r = 0; r < R; r++) {
            double s = 0;
            for (int g = 0; g < 4; g++) s += w->P[((size_t)g * H + i) * R + r] * w->A[g * R + r];
            w->M[(size_t)i * R + r] = s;
        }
    hadamard(w->GA, w->GC, R, w->F);
    if ((st = solve(w, w->M, H))) return st;
    memcpy(w->B, w->M, (size_t)H * R * sizeof(double));
    normalise_into_a(w->B, H, R, w->A);
    gram(w->A, 4, R, w->GA);
    gram(w->B, H, R, w->GB);

    // C: M_C (N, R) = X^T (N, 4H) K (4H, R), K = A (.) B;  C (A^T A o B^T B) = M_C
    khatri_rao(w->A, w->B, H, R, w->P);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, R, 4 * H, 1.0, w->X, N, w->P, R, 0.0, w->M, R);
    hadamard(w->GA, w->GB, R, w->F);
    // Keep M_C: <X, X~> = sum_{j,r} M_C[j, r] C[j, r] needs it after the solve.
    memcpy(w->C, w->M, (size_t)N * R * sizeof(double));
    if ((st = solve(w, w->C, N))) return st;
    gram(w->C, N, R, w->GC);
    double inner = 0, fit2 = 0;
    for (size_t i = 0; i < (size_t)N * R; i++) inner += w->M[i] * w->C[i];
    for (size_t i = 0; i < (size_t)R * R; i++) fit2 += w->F[i] * w->GC[i];
    double e2 = normX2 - 2 * inner + fit2;
    *rel = sqrt((e2 > 0 ? e2 : 0) / normX2);
    normalise_into_a(w->C, N, R, w->A);
    gram(w->A, 4, R, w->GA);
    gram(w->C, N, R, w->GC);
    return FL_OK;
}

/* Relative error of the float factors, reconstructing in double: X~ = (A (.) B) C^T. */
static double direct_error(cp_work *w, const float *a, const float *b, const float *c, double normX2) {
    const int H = w->H, N = w->N, R = w->R;
    for (size_t i = 0; i < (size_t)4 * R; i++) w->A[i] = a[i];
    for (size_t i = 0; i < (size_t)H * R; i++) w->B[i] = b[i];
    for (size_t i = 0; i < (size_t)N * R; i++) w->C[i] = c[i];
    khatri_rao(w->A, w->B, H, R, w->P);
    // X (4H, N) <- X - P C^T, in place (X is not needed afterwards).
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, 4 * H, N, R, -1.0, w->P, R, w->C, R, 1.0, w->X, N);
    double e2 = 0;
    for (size_t i = 0; i < (size_t)4 * H * N; i++) e2 += w->X[i] * w->X[i];
    return sqrt(e2 / normX2);
}

fl_status fl_cp_als(const float *T, int H, int N, int R, const fl_cp_opts *opts, float *a, float *b,
                    float *c, fl_cp_report *rep) {
    if (!T || !a || !b || !c) return fl_fail(FL_ERR_ARG, "cp: NULL tensor or factor buffer");
    if (H < 1 || N < 1) return fl_fail(FL_ERR_ARG, "cp: tensor shape 4x%dx%d must be positive", H, N);
    if (R < 1) return fl_fail(FL_ERR_ARG, "cp: rank %d must be >= 1", R);
    fl_cp_opts o = opts ? *opts : fl_cp_opts_default();
    if (o.max_iter < 1) return fl_fail(FL_ERR_ARG, "cp: max_iter %d must be >= 1", o.max_iter);
    if (!(o.tol >= 0)) return fl_fail(FL_ERR_ARG, "cp: tol %g must be >= 0", o.tol);
    size_t count = (size_t)4 * H * N;
    double normX2 = 0;
    for (size_t i = 0; i < count; i++) {
        if (!isfinite(T[i]))
            return fl_fail(FL_ERR_NONFINITE, "cp: 4x%dx%d tensor has a non-finite entry at flat index %zu", H, N, i);
        normX2 += (double)T[i] * T[i];
    }
    if (normX2 == 0) return fl_fail(FL_ERR_ARG, "cp: 4x%dx%d tensor is all zeros (relative error undefined)", H, N);

    cp_work w = {.H = H, .N = N, .R = R};
    fl_status st = work_alloc(&w);
    if (st) return st;
    for (size_t i = 0; i < count; i++) w.X[i] = T[i];
    fl_rng rng;
    fl_rng_seed(&rng, o.seed);

    // B: leading left singular vectors of the mode-2 unfolding (H, 4N) = eigenvectors of
    // sum_g X_g X_g^T, X_g (H, N) the g-th gate block (column-major: X_g^T (N, H), ld N).
    for (int g = 0; g < 4; g++)
        cblas_dsyrk(CblasColMajor, CblasUpper, CblasTrans, H, N, 1.0, w.X + (size_t)g * H * N, N,
                    g == 0 ? 0.0 : 1.0, w.G, H);
    if ((st = leading_vectors(w.G, H, R, w.ev, w.B, &rng))) goto done;
    // C: leading left singular vectors of the mode-3 unfolding (N, 4H) = X^T: eigenvectors of X^T X
    // (column-major, X^T is (N, 4H) with ld N).
    cblas_dsyrk(CblasColMajor, CblasUpper, CblasNoTrans, N, 4 * H, 1.0, w.X, N, 0.0, w.G, N);
    if ((st = leading_vectors(w.G, N, R, w.ev, w.C, &rng))) goto done;
    gram(w.B, H, R, w.GB);
    gram(w.C, N, R, w.GC);

    int it = 0, converged = 0;
    double prev = INFINITY, err = INFINITY;
    while (it < o.max_iter) {
        if ((st = sweep(&w, normX2, &err))) goto done;
        it++;
        if (!isfinite(err)) {
            st = fl_fail(FL_ERR_NUMERIC, "cp: ALS diverged (non-finite error) at sweep %d on a 4x%dx%d tensor, rank %d",
                         it, H, N, R);
            goto done;
        }
        if (o.on_iter) o.on_iter(o.ctx, it, err);
        if (prev - err < o.tol) {
            converged = 1;
            break;
        }
        prev = err;
    }

    // Spread each component's weight evenly: every column gets norm lambda^(1/3), sign kept in A.
    for (int r = 0; r < R; r++) {
        double na = col_norm(w.A, 4, R, r), nb = col_norm(w.B, H, R, r), nc = col_norm(w.C, N, R, r);
        double lam = na * nb * nc, q = cbrt(lam);
        double sa = lam > 0 ? q / na : 0, sb = lam > 0 ? q / nb : 0, sc = lam > 0 ? q / nc : 0;
        for (int g = 0; g < 4; g++) a[g * R + r] = (float)(w.A[g * R + r] * sa);
        for (int i = 0; i < H; i++) b[(size_t)i * R + r] = (float)(w.B[(size_t)i * R + r] * sb);
        for (int j = 0; j < N; j++) c[(size_t)j * R + r] = (float)(w.C[(size_t)j * R + r] * sc);
    }
    if (rep) {
        rep->iterations = it;
        rep->converged = converged;
        rep->rel_error = direct_error(&w, a, b, c, normX2);
    }
done:
    work_free(&w);
    return st;
}
