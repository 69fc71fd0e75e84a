/* Internal API of the decomposition module: truncated SVD of a weight matrix and CP-ALS of a gate
 * matrix viewed as a 4 x H x N tensor. The planner computes one SVD per matrix and truncates it at
 * many ranks cheaply; fl_model_decompose (decompose.c) drives both for a whole model. */
#ifndef FL_DECOMP_H
#define FL_DECOMP_H

#include "fastlstm/decompose.h"
#include "internal.h"

/* ---------------------------------------------------------------- SVD */

/* Full thin SVD of an (m, n) matrix in double: W = U diag(s) Vt, k = min(m, n). */
typedef struct fl_svd {
    int m, n, k;
    double *u;    /* (m, k), row-major */
    double *s;    /* (k), descending, >= 0 */
    double *vt;   /* (k, n), row-major */
    double *tail; /* (k + 1): tail[r] = sum_{i >= r} s_i^2 (suffix sums, so no cancellation) */
} fl_svd;

/* Factor W (m, n) (float, row-major) with LAPACKE_dgesdd (divide and conquer, double precision).
 * Errors: FL_ERR_ARG (NULL, m or n < 1, all-zero matrix: relative error is undefined),
 * FL_ERR_NONFINITE (NaN/Inf entry), FL_ERR_NUMERIC (LAPACK failed), FL_ERR_NOMEM.
 * The caller owns *out (free with fl_svd_free). */
fl_status fl_svd_compute(const float *W, int m, int n, fl_svd **out);
void fl_svd_free(fl_svd *svd);

/* Rank-`rank` factors with the singular values split evenly: u (m, rank) = U_r diag(sqrt(s_r)),
 * v (rank, n) = diag(sqrt(s_r)) Vt_r, so W_r = u v and both factors have the same scale (better
 * conditioned in float than folding all of s into one side). FL_ERR_ARG unless 1 <= rank <= k. */
fl_status fl_svd_truncate(const fl_svd *svd, int rank, float *u, float *v);

/* Relative Frobenius error ||W - W_r||_F / ||W||_F of the rank-`rank` truncation, exact from the
 * singular-value tail (in exact arithmetic; ||W||_F^2 = sum s_i^2). rank is clamped to [0, k]. */
double fl_svd_error(const fl_svd *svd, int rank);

/* Smallest rank in [1, k] whose relative error is <= tol (k if none smaller; error(k) = 0). */
int fl_svd_rank_for_tol(const fl_svd *svd, double tol);

/* Largest rank R in [1, min(m, n)] with R (m + n) <= budget m n; at least 1. */
int fl_svd_rank_for_budget(int m, int n, double budget);

/* ---------------------------------------------------------------- CP-ALS */

typedef struct fl_cp_opts {
    int max_iter;     /* ALS sweeps (A, B, C each solved once per sweep); >= 1 */
    double tol;       /* stop when the relative error improves by less than this in one sweep */
    uint64_t seed;    /* for the random columns padding the initial B, C when R > H or R > N */
    /* Optional: called after every sweep with the relative error of the current factors (computed
     * from Gram matrices, so accurate to about sqrt(machine eps) of ||T||). */
    void (*on_iter)(void *ctx, int iter, double rel_error);
    void *ctx;
} fl_cp_opts;

fl_cp_opts fl_cp_opts_default(void); /* max_iter 200, tol 1e-7, seed 0, no callback */

typedef struct fl_cp_report {
    int iterations;   /* sweeps done */
    double rel_error; /* ||T - T~||_F / ||T||_F of the returned float factors, computed directly */
    int converged;    /* 1 if stopped on tol, 0 if on max_iter */
} fl_cp_report;

/* Rank-R CP decomposition of T (4, H, N) (float, row-major: T[g, i, j] = W[g*H + i, j], i.e. an LSTM
 * gate matrix (4H, N)) by alternating least squares in double:
 *   T[g, i, j] ~ sum_r a[g, r] b[i, r] c[j, r],  a (4, R), b (H, R), c (N, R), row-major floats.
 * B and C start from the leading left singular vectors of the mode-2 and mode-3 unfoldings (padded
 * with seeded random columns when R exceeds H or N), A from its least-squares solve. Each step solves
 * the normal equations (Hadamard product of Gram matrices) by Cholesky, or by SVD least squares
 * when that matrix is singular or ill conditioned (reciprocal condition <= 1e-12). On return the
 * column norms are spread evenly over a, b and c.
 * rep may be NULL. Errors: FL_ERR_ARG (NULL, H, N or R < 1, all-zero T), FL_ERR_NONFINITE,
 * FL_ERR_NUMERIC (LAPACK failure), FL_ERR_NOMEM. */
fl_status fl_cp_als(const float *T, int H, int N, int R, const fl_cp_opts *opts, float *a, float *b,
                    float *c, fl_cp_report *rep);

/* Largest CP rank that stores no more parameters than the dense (4H, N) matrix: R (4 + H + N) <= 4HN. */
int fl_cp_max_useful_rank(int H, int N);

/* ---------------------------------------------------------------- model */

/* fl_model_decompose_ex and its progress events: public, include/fastlstm/decompose.h. */

/* Relative Frobenius error ||W - W~||_F / ||W||_F of two (count) float arrays, accumulated in double.
 * Returns 0 when both are zero, +inf when only W is. */
double fl_rel_error(const float *W, const float *Wt, size_t count);

#endif
