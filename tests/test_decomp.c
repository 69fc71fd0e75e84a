/* Truncated SVD and model decomposition: singular values against an independent LAPACK call, exact
 * tail errors, rank choice by tol and budget, decomposed fl_mat_apply against a plain loop over the
 * dense reconstruction, full-rank SVD models against the dense model through fl_session_run, and a
 * save/load round trip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "decomp/decomp.h"
#include "testutil.h"

static float *random_matrix(int m, int n, uint64_t seed) {
    fl_rng rng;
    fl_rng_seed(&rng, seed);
    float *W = malloc(sizeof(float) * m * n);
    for (int i = 0; i < m * n; i++) W[i] = (float)fl_rng_normal(&rng);
    return W;
}

/* Singular values of a float (m, n) matrix by LAPACKE_dgesvd (QR iteration; independent of the
 * divide-and-conquer dgesdd under test). s: min(m, n) doubles, descending. */
static void reference_singular_values(const float *W, int m, int n, double *s) {
    int k = m < n ? m : n;
    double *a = malloc(sizeof(double) * m * n), *superb = malloc(sizeof(double) * k);
    for (int i = 0; i < m * n; i++) a[i] = W[i];
    assert_int_equal(LAPACKE_dgesvd(LAPACK_ROW_MAJOR, 'N', 'N', m, n, a, n, s, NULL, 1, NULL, 1, superb), 0);
    free(a);
    free(superb);
}

/* out (m, n) = u (m, R) v (R, n) by a plain loop in double. */
static void plain_product(const float *u, const float *v, int m, int n, int R, float *out) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int r = 0; r < R; r++) s += (double)u[i * R + r] * v[r * n + j];
            out[i * n + j] = (float)s;
        }
}

static void test_svd_singular_values(void **state) {
    (void)state;
    const int shapes[][2] = {{40, 24}, {24, 40}, {32, 32}, {1, 9}, {9, 1}};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        int m = shapes[t][0], n = shapes[t][1], k = m < n ? m : n;
        float *W = random_matrix(m, n, 3 + t);
        fl_svd *svd;
        assert_int_equal(fl_svd_compute(W, m, n, &svd), FL_OK);
        assert_int_equal(svd->k, k);
        double *sref = malloc(sizeof(double) * k);
        reference_singular_values(W, m, n, sref);
        for (int r = 0; r < k; r++) assert_true(fabs(svd->s[r] - sref[r]) <= 1e-10 * sref[0]);
        /* Truncated float factors: the product's singular values are the leading s, the rest ~0. */
        float *u = malloc(sizeof(float) * m * k), *v = malloc(sizeof(float) * k * n);
        float *P = malloc(sizeof(float) * m * n);
        for (int R = 1; R <= k; R = R < 3 ? R + 1 : R + 7) {
            assert_int_equal(fl_svd_truncate(svd, R, u, v), FL_OK);
            plain_product(u, v, m, n, R, P);
            reference_singular_values(P, m, n, sref);
            for (int r = 0; r < k; r++) {
                double want = r < R ? svd->s[r] : 0.0;
                assert_true(fabs(sref[r] - want) <= 1e-5 * svd->s[0]);
            }
            /* sqrt(s) folded into each side: column r of u and row r of v both have norm sqrt(s_r). */
            for (int r = 0; r < R; r++) {
                double nu = 0, nv = 0;
                for (int i = 0; i < m; i++) nu += (double)u[i * R + r] * u[i * R + r];
                for (int j = 0; j < n; j++) nv += (double)v[r * n + j] * v[r * n + j];
                assert_true(fabs(nu - svd->s[r]) <= 1e-5 * svd->s[0]);
                assert_true(fabs(nv - svd->s[r]) <= 1e-5 * svd->s[0]);
            }
        }
        free(u), free(v), free(P), free(sref), free(W);
        fl_svd_free(svd);
    }
}

static void test_svd_error_exact_and_monotone(void **state) {
    (void)state;
    const int m = 36, n = 20;
    float *W = random_matrix(m, n, 9);
    fl_svd *svd;
    assert_int_equal(fl_svd_compute(W, m, n, &svd), FL_OK);
    float *u = malloc(sizeof(float) * m * n), *v = malloc(sizeof(float) * n * n), *P = malloc(sizeof(float) * m * n);
    double prev = 1.0 + 1e-12;
    assert_true(fabs(fl_svd_error(svd, 0) - 1.0) <= 1e-12);
    for (int R = 1; R <= n; R++) {
        double e = fl_svd_error(svd, R);
        assert_true(e < prev);
        prev = e;
        assert_int_equal(fl_svd_truncate(svd, R, u, v), FL_OK);
        plain_product(u, v, m, n, R, P);
        double direct = fl_rel_error(W, P, (size_t)m * n);
        /* Independent: ||W - W_R||_F^2 / ||W||_F^2 in double by a plain loop. */
        double num = 0, den = 0;
        for (int i = 0; i < m * n; i++) num += ((double)W[i] - P[i]) * ((double)W[i] - P[i]), den += (double)W[i] * W[i];
        assert_true(fabs(direct - sqrt(num / den)) <= 1e-12);
        assert_true(fabs(direct - e) <= 1e-5);
    }
    assert_true(fl_svd_error(svd, n) <= 1e-12);
    free(u), free(v), free(P), free(W);
    fl_svd_free(svd);
}

static void test_svd_rank_for_tol_and_budget(void **state) {
    (void)state;
    const int m = 30, n = 18;
    float *W = random_matrix(m, n, 21);
    fl_svd *svd;
    assert_int_equal(fl_svd_compute(W, m, n, &svd), FL_OK);
    const double tols[] = {0.9, 0.5, 0.31, 0.1, 0.02, 1e-6};
    for (size_t t = 0; t < sizeof tols / sizeof tols[0]; t++) {
        int R = fl_svd_rank_for_tol(svd, tols[t]);
        assert_true(R >= 1 && R <= n);
        assert_true(fl_svd_error(svd, R) <= tols[t]);
        if (R > 1) assert_true(fl_svd_error(svd, R - 1) > tols[t]); /* smallest: one less fails */
    }
    /* A tol exactly at the rank-7 error picks 7. */
    assert_int_equal(fl_svd_rank_for_tol(svd, fl_svd_error(svd, 7)), 7);
    const double budgets[] = {1.0, 0.5, 0.25, 0.1, 0.01};
    for (size_t t = 0; t < sizeof budgets / sizeof budgets[0]; t++) {
        int R = fl_svd_rank_for_budget(m, n, budgets[t]);
        assert_true(R >= 1 && R <= n);
        if (R > 1) assert_true((double)R * (m + n) <= budgets[t] * m * n);
        if (R < n) assert_true((double)(R + 1) * (m + n) > budgets[t] * m * n);
    }
    assert_int_equal(fl_svd_rank_for_budget(m, n, 1e-6), 1);
    free(W);
    fl_svd_free(svd);
}

static void test_svd_degenerate(void **state) {
    (void)state;
    float Z[12] = {0};
    fl_svd *svd = (fl_svd *)1;
    assert_int_equal(fl_svd_compute(Z, 3, 4, &svd), FL_ERR_ARG);
    assert_null(svd);
    assert_non_null(strstr(fl_last_error(), "zero"));
    assert_int_equal(fl_svd_compute(Z, 0, 4, &svd), FL_ERR_ARG);
    assert_int_equal(fl_svd_compute(NULL, 3, 4, &svd), FL_ERR_ARG);
    Z[4] = 2.0f;
    assert_int_equal(fl_svd_compute(Z, 3, 4, &svd), FL_OK);
    float u[3 * 4], v[4 * 4];
    assert_int_equal(fl_svd_truncate(svd, 0, u, v), FL_ERR_ARG);
    assert_int_equal(fl_svd_truncate(svd, 4, u, v), FL_ERR_ARG); /* rank > min(m, n) */
    assert_non_null(strstr(fl_last_error(), "rank 4"));
    assert_int_equal(fl_svd_truncate(svd, 3, u, v), FL_OK);
    fl_svd_free(svd);
    Z[5] = INFINITY;
    assert_int_equal(fl_svd_compute(Z, 3, 4, &svd), FL_ERR_NONFINITE);
}

/* ------------------------------------------------------------ models */

static fl_model *make_model(const fl_arch *a, uint64_t seed) {
    fl_model *m;
    assert_int_equal(fl_model_create(a, NULL, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, seed), FL_OK);
    return m;
}

/* y (n, rows) = x (n, cols) W^T by a plain loop over the dense reconstruction of w. */
static void plain_apply(const fl_mat *w, int n, const float *x, float *y) {
    float *D = malloc(sizeof(float) * w->rows * w->cols);
    fl_mat_to_dense(w, D);
    for (int b = 0; b < n; b++)
        for (int i = 0; i < w->rows; i++) {
            double s = 0;
            for (int j = 0; j < w->cols; j++) s += (double)D[i * w->cols + j] * x[b * w->cols + j];
            y[b * w->rows + i] = (float)s;
        }
    free(D);
}

/* fl_mat_apply of every matrix of dm against a plain loop over its reconstruction (batch 1 and 5),
 * with a row stride ldy > rows too. */
static void check_apply(const fl_model *dm) {
    for (size_t i = 0; i < fl_model_num_matrices(dm); i++) {
        const fl_mat *w = fl_model_mat_const(dm, i);
        for (int n = 1; n <= 5; n += 4) {
            float *x = random_matrix(n, w->cols, 77 + n);
            int ldy = w->rows + 3;
            float *y = calloc((size_t)n * ldy, sizeof(float)), *ref = malloc(sizeof(float) * n * w->rows);
            float *ws = malloc(sizeof(float) * (fl_mat_apply_workspace(w, n) + 1));
            plain_apply(w, n, x, ref);
            double scale = 0;
            for (int k = 0; k < n * w->rows; k++) scale = fmax(scale, fabs(ref[k]));
            for (int pass = 0; pass < 2; pass++) {
                int ld = pass == 0 ? w->rows : ldy;
                fl_mat_apply(w, n, x, w->cols, 0.0f, y, ld, ws);
                for (int b = 0; b < n; b++)
                    for (int k = 0; k < w->rows; k++)
                        assert_true(fabs(y[b * ld + k] - ref[b * w->rows + k]) <= 1e-5 * (scale + 1));
            }
            free(x), free(y), free(ref), free(ws);
        }
    }
}

/* Recorded rel_error of every decomposed matrix equals an independent computation. */
static void check_rel_errors(const fl_model *orig, const fl_model *dm) {
    for (size_t i = 0; i < fl_model_num_matrices(dm); i++) {
        const fl_mat *w0 = fl_model_mat_const(orig, i), *w1 = fl_model_mat_const(dm, i);
        size_t cnt = (size_t)w0->rows * w0->cols;
        float *A = malloc(sizeof(float) * cnt), *B = malloc(sizeof(float) * cnt);
        fl_mat_to_dense(w0, A);
        fl_mat_to_dense(w1, B);
        double num = 0, den = 0;
        for (size_t k = 0; k < cnt; k++) num += ((double)A[k] - B[k]) * ((double)A[k] - B[k]), den += (double)A[k] * A[k];
        fl_matrix_info info;
        assert_int_equal(fl_model_matrix_info(dm, i, &info), FL_OK);
        assert_true(fabs(info.rel_error - sqrt(num / den)) <= 1e-6);
        free(A), free(B);
    }
}

static const fl_arch ARCH = {.vocab = 0, .input = 12, .hidden = 8, .layers = 2, .head = FL_HEAD_PER_STEP, .head_out = 5};

/* Run model m on fixed features through fl_session_run; returns the output (caller frees). */
static float *run_model(const fl_model *m, int B, int T) {
    fl_session_opts so = fl_session_opts_default();
    so.max_batch = B;
    so.max_seq = T;
    fl_session *s;
    assert_int_equal(fl_session_create(m, &so, &s), FL_OK);
    float *x = random_matrix(B * T, ARCH.input, 99);
    float *y = malloc(sizeof(float) * fl_run_output_size(m, B, T));
    fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = B, .seq = T, .x = x, .y = y};
    assert_int_equal(fl_session_run(s, &io), FL_OK);
    fl_session_free(s);
    free(x);
    return y;
}

static void test_full_rank_svd_model_matches_dense(void **state) {
    (void)state;
    fl_model *m = make_model(&ARCH, 5);
    /* Full rank: ih0 min(32, 12), hh min(32, 8), ih1 min(32, 8), head min(5, 8). */
    fl_mat_spec specs[5] = {{FL_METHOD_SVD, 12}, {FL_METHOD_SVD, 8}, {FL_METHOD_SVD, 8}, {FL_METHOD_SVD, 8},
                            {FL_METHOD_SVD, 5}};
    fl_decomp_opts o = fl_decomp_opts_default();
    o.specs = specs;
    fl_model *dm;
    assert_int_equal(fl_model_decompose(m, &o, &dm), FL_OK);
    for (size_t i = 0; i < 5; i++) {
        fl_matrix_info info;
        assert_int_equal(fl_model_matrix_info(dm, i, &info), FL_OK);
        assert_int_equal(info.method, FL_METHOD_SVD);
        assert_int_equal(info.rank, specs[i].rank);
        assert_true(info.rel_error >= 0 && info.rel_error <= 1e-6);
    }
    check_rel_errors(m, dm);
    /* Every matrix applied to the same inputs gives the dense result. */
    for (size_t i = 0; i < 5; i++) {
        const fl_mat *w0 = fl_model_mat_const(m, i), *w1 = fl_model_mat_const(dm, i);
        for (int n = 1; n <= 5; n += 4) {
            float *x = random_matrix(n, w0->cols, 7);
            float *y0 = malloc(sizeof(float) * n * w0->rows), *y1 = malloc(sizeof(float) * n * w0->rows);
            float *ws = malloc(sizeof(float) * (fl_mat_apply_workspace(w1, n) + 1));
            fl_mat_apply(w0, n, x, w0->cols, 0.0f, y0, w0->rows, NULL);
            fl_mat_apply(w1, n, x, w1->cols, 0.0f, y1, w1->rows, ws);
            for (int k = 0; k < n * w0->rows; k++) assert_true(fabs(y0[k] - y1[k]) <= 1e-4);
            free(x), free(y0), free(y1), free(ws);
        }
    }
    /* Whole model through the session, batch 1 and 5. */
    for (int B = 1; B <= 5; B += 4) {
        const int T = 6;
        float *y0 = run_model(m, B, T), *y1 = run_model(dm, B, T);
        for (size_t k = 0; k < fl_run_output_size(m, B, T); k++) assert_true(fabs(y0[k] - y1[k]) <= 1e-4);
        free(y0), free(y1);
    }
    fl_model_free(dm);
    fl_model_free(m);
}

static void test_decomposed_apply_matches_reconstruction(void **state) {
    (void)state;
    fl_model *m = make_model(&ARCH, 8);
    fl_mat_spec specs[5] = {{FL_METHOD_SVD, 5}, {FL_METHOD_CP, 6}, {FL_METHOD_CP, 3}, {FL_METHOD_DENSE, 0},
                            {FL_METHOD_SVD, 2}};
    fl_decomp_opts o = fl_decomp_opts_default();
    o.specs = specs;
    o.cp_max_iter = 50;
    fl_model *dm;
    assert_int_equal(fl_model_decompose(m, &o, &dm), FL_OK);
    for (size_t i = 0; i < 5; i++) {
        fl_mat_spec s = fl_model_mat_spec(dm, i);
        assert_int_equal(s.method, specs[i].method);
        assert_int_equal(s.rank, specs[i].rank);
    }
    check_apply(dm);
    check_rel_errors(m, dm);
    /* Truncation loses something; the dense matrix is copied exactly. */
    fl_matrix_info info;
    fl_model_matrix_info(dm, 0, &info);
    assert_true(info.rel_error > 1e-3 && info.rel_error < 1);
    assert_memory_equal(fl_model_mat_const(dm, 3)->w, fl_model_mat_const(m, 3)->w, sizeof(float) * 32 * 8);
    /* Biases and head bias copied. */
    assert_memory_equal(dm->layer[1].b_ih, m->layer[1].b_ih, sizeof(float) * 32);
    assert_memory_equal(dm->layer[0].b_hh, m->layer[0].b_hh, sizeof(float) * 32);
    assert_memory_equal(dm->head_b, m->head_b, sizeof(float) * 5);
    /* The session on the decomposed model equals the session on its dense reconstruction (a
     * decomposition with every target dense reconstructs each matrix). */
    fl_decomp_opts od = fl_decomp_opts_default();
    fl_mat_spec dense[5] = {{FL_METHOD_DENSE, 0}, {FL_METHOD_DENSE, 0}, {FL_METHOD_DENSE, 0},
                            {FL_METHOD_DENSE, 0}, {FL_METHOD_DENSE, 0}};
    od.specs = dense;
    fl_model *rec;
    assert_int_equal(fl_model_decompose(dm, &od, &rec), FL_OK);
    for (size_t i = 0; i < 5; i++) assert_int_equal(fl_model_mat_spec(rec, i).method, FL_METHOD_DENSE);
    for (int B = 1; B <= 5; B += 4) {
        const int T = 5;
        float *y0 = run_model(rec, B, T), *y1 = run_model(dm, B, T);
        for (size_t k = 0; k < fl_run_output_size(dm, B, T); k++) assert_true(fabs(y0[k] - y1[k]) <= 1e-4);
        free(y0), free(y1);
    }
    fl_model_free(rec);
    /* Decomposing again with the same targets keeps the factors as they are. */
    fl_model *dm2;
    assert_int_equal(fl_model_decompose(dm, &o, &dm2), FL_OK);
    assert_memory_equal(dm2->params, dm->params, dm->n_params * sizeof(float));
    fl_model_free(dm2);
    fl_model_free(dm);
    fl_model_free(m);
}

static void test_tol_and_budget_targets(void **state) {
    (void)state;
    const fl_arch a = {.vocab = 10, .input = 16, .hidden = 12, .layers = 1, .head = FL_HEAD_LAST_STEP, .head_out = 3};
    fl_model *m = make_model(&a, 4);
    fl_decomp_opts o = fl_decomp_opts_default();
    o.method = FL_METHOD_SVD;
    o.tol = 0.4;
    o.include_head = 1;
    fl_model *dm;
    assert_int_equal(fl_model_decompose(m, &o, &dm), FL_OK);
    for (size_t i = 0; i < fl_model_num_matrices(m); i++) {
        const fl_mat *w = fl_model_mat_const(m, i);
        float *W = malloc(sizeof(float) * w->rows * w->cols);
        fl_mat_to_dense(w, W);
        fl_svd *svd;
        assert_int_equal(fl_svd_compute(W, w->rows, w->cols, &svd), FL_OK);
        fl_matrix_info info;
        fl_model_matrix_info(dm, i, &info);
        assert_int_equal(info.method, FL_METHOD_SVD);
        assert_true(info.rel_error <= o.tol + 1e-6);
        /* Smallest: one rank less misses tol. */
        if (info.rank > 1) assert_true(fl_svd_error(svd, info.rank - 1) > o.tol);
        fl_svd_free(svd);
        free(W);
    }
    assert_memory_equal(dm->embed, m->embed, sizeof(float) * 10 * 16);
    fl_model_free(dm);

    /* Budget, CP: largest R with R (4 + H + N) <= budget 4 H N. */
    o = fl_decomp_opts_default();
    o.method = FL_METHOD_CP;
    o.budget = 0.5;
    o.cp_max_iter = 30;
    assert_int_equal(fl_model_decompose(m, &o, &dm), FL_OK);
    fl_matrix_info info;
    fl_model_matrix_info(dm, 0, &info); /* (48, 16): H 12, N 16 */
    assert_int_equal(info.rank, (int)(0.5 * 4 * 12 * 16 / (4 + 12 + 16)));
    assert_true(info.params <= 48 * 16 / 2);
    fl_model_matrix_info(dm, 2, &info); /* head stays dense without include_head */
    assert_int_equal(info.method, FL_METHOD_DENSE);
    fl_model_free(dm);

    /* CP with tol: the chosen rank meets it. */
    o.budget = 0;
    o.tol = 0.6;
    assert_int_equal(fl_model_decompose(m, &o, &dm), FL_OK);
    fl_model_matrix_info(dm, 1, &info);
    assert_int_equal(info.method, FL_METHOD_CP);
    assert_true(info.rel_error <= 0.6);
    check_rel_errors(m, dm);
    fl_model_free(dm);
    fl_model_free(m);

    /* CP with tol on a matrix of exact CP rank 3: the search lands on 3, and rank 2 misses tol. */
    const fl_arch a2 = {.vocab = 0, .input = 6, .hidden = 9, .layers = 1, .head = FL_HEAD_NONE, .head_out = 0};
    fl_mat_spec exact[2] = {{FL_METHOD_DENSE, 0}, {FL_METHOD_CP, 3}};
    assert_int_equal(fl_model_create(&a2, exact, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 6), FL_OK);
    fl_mat_spec want[2] = {{FL_METHOD_DENSE, 0}, {FL_METHOD_CP, 0}};
    o = fl_decomp_opts_default();
    o.specs = want;
    o.tol = 1e-3;
    o.cp_max_iter = 2000;
    o.cp_tol = 1e-12;
    assert_int_equal(fl_model_decompose(m, &o, &dm), FL_OK);
    fl_model_matrix_info(dm, 1, &info);
    assert_int_equal(info.rank, 3);
    assert_true(info.rel_error <= 1e-3);
    float W[36 * 9], fa[4 * 2], fb[9 * 2], fc[9 * 2];
    fl_mat_to_dense(fl_model_mat_const(m, 1), W);
    fl_cp_opts co = fl_cp_opts_default();
    co.max_iter = 2000;
    co.tol = 1e-12;
    fl_cp_report rep;
    assert_int_equal(fl_cp_als(W, 9, 9, 2, &co, fa, fb, fc, &rep), FL_OK);
    assert_true(rep.rel_error > 1e-3);
    fl_model_free(dm);
    fl_model_free(m);
}

static void test_decompose_degenerate(void **state) {
    (void)state;
    fl_model *m = make_model(&ARCH, 1), *dm = (fl_model *)1;
    fl_decomp_opts o = fl_decomp_opts_default();
    /* No rank, tol or budget. */
    assert_int_equal(fl_model_decompose(m, &o, &dm), FL_ERR_ARG);
    assert_null(dm);
    o.rank = 13; /* > min(32, 12) */
    assert_int_equal(fl_model_decompose(m, &o, &dm), FL_ERR_ARG);
    assert_non_null(strstr(fl_last_error(), "lstm.weight_ih_l0"));
    o.rank = 0;
    o.tol = 1.5;
    assert_int_equal(fl_model_decompose(m, &o, &dm), FL_ERR_ARG);
    o.tol = 0;
    o.budget = -0.1;
    assert_int_equal(fl_model_decompose(m, &o, &dm), FL_ERR_ARG);
    o.budget = 0;
    fl_mat_spec specs[5] = {{FL_METHOD_DENSE, 0}, {FL_METHOD_DENSE, 0}, {FL_METHOD_DENSE, 0},
                            {FL_METHOD_DENSE, 0}, {FL_METHOD_CP, 2}};
    o.specs = specs; /* CP on the head */
    assert_int_equal(fl_model_decompose(m, &o, &dm), FL_ERR_ARG);
    assert_non_null(strstr(fl_last_error(), "head"));
    specs[4] = (fl_mat_spec){FL_METHOD_SVD, -1};
    assert_int_equal(fl_model_decompose(m, &o, &dm), FL_ERR_ARG);
    /* CP above min(4H, 4n, Hn) = min(32, 32, 64) for weight_hh (H = 8): never needed, refused before
     * ALS sizes its (R, R) work matrices by it. */
    specs[4] = (fl_mat_spec){FL_METHOD_DENSE, 0};
    specs[1] = (fl_mat_spec){FL_METHOD_CP, 33};
    assert_int_equal(fl_model_decompose(m, &o, &dm), FL_ERR_ARG);
    assert_non_null(strstr(fl_last_error(), "lstm.weight_hh_l0: CP rank 33 exceeds 32 = min(4H, 4N, HN)"));
    specs[1] = (fl_mat_spec){FL_METHOD_CP, 65536};
    assert_int_equal(fl_model_decompose(m, &o, &dm), FL_ERR_ARG);
    specs[1] = (fl_mat_spec){FL_METHOD_CP, 32};
    o.cp_max_iter = 2;
    assert_int_equal(fl_model_decompose(m, &o, &dm), FL_OK);
    fl_model_free(dm);
    o.cp_max_iter = fl_decomp_opts_default().cp_max_iter;
    o.specs = NULL;
    o.rank = 2;
    o.cp_max_iter = 0;
    assert_int_equal(fl_model_decompose(m, &o, &dm), FL_ERR_ARG);
    assert_int_equal(fl_model_decompose(NULL, &o, &dm), FL_ERR_ARG);
    fl_model_free(m);
    /* An all-zero model (created, never initialised): relative error undefined. */
    assert_int_equal(fl_model_create(&ARCH, NULL, &m), FL_OK);
    o = fl_decomp_opts_default();
    o.rank = 2;
    assert_int_equal(fl_model_decompose(m, &o, &dm), FL_ERR_ARG);
    assert_non_null(strstr(fl_last_error(), "zero"));
    o.method = FL_METHOD_CP;
    assert_int_equal(fl_model_decompose(m, &o, &dm), FL_ERR_ARG);
    fl_model_free(m);
}

static void test_save_load_round_trip(void **state) {
    (void)state;
    fl_model *m = make_model(&ARCH, 12), *dm, *back;
    fl_mat_spec specs[5] = {{FL_METHOD_CP, 4}, {FL_METHOD_SVD, 3}, {FL_METHOD_DENSE, 0}, {FL_METHOD_CP, 7},
                            {FL_METHOD_SVD, 4}};
    fl_decomp_opts o = fl_decomp_opts_default();
    o.specs = specs;
    o.cp_max_iter = 20;
    assert_int_equal(fl_model_decompose(m, &o, &dm), FL_OK);
    char path[64];
    snprintf(path, sizeof path, "test_decomp_%ld.safetensors", (long)getpid());
    assert_int_equal(fl_model_save(dm, path), FL_OK);
    assert_int_equal(fl_model_load(path, &back), FL_OK);
    remove(path);
    assert_int_equal(back->n_params, dm->n_params);
    for (size_t i = 0; i < fl_model_num_matrices(dm); i++) {
        fl_matrix_info a, b;
        fl_model_matrix_info(dm, i, &a);
        fl_model_matrix_info(back, i, &b);
        assert_int_equal(a.method, b.method);
        assert_int_equal(a.rank, b.rank);
        assert_true(a.rel_error == b.rel_error);
    }
    for (size_t t = 0; t < dm->n_tensors; t++) {
        const fl_tensor *x = &dm->tensors[t], *y = fl_model_find_tensor(back, x->name);
        assert_non_null(y);
        assert_int_equal(x->count, y->count);
        assert_memory_equal(dm->params + x->offset, back->params + y->offset, x->count * sizeof(float));
    }
    fl_model_free(back);
    fl_model_free(dm);
    fl_model_free(m);
}

static void test_alloc_failure(void **state) {
    (void)state;
    fl_model *m = make_model(&ARCH, 2), *dm;
    fl_mat_spec specs[5] = {{FL_METHOD_SVD, 4}, {FL_METHOD_CP, 3}, {FL_METHOD_DENSE, 0}, {FL_METHOD_SVD, 2},
                            {FL_METHOD_SVD, 3}};
    fl_decomp_opts o = fl_decomp_opts_default();
    o.specs = specs;
    o.cp_max_iter = 5;
    bool ok = false;
    for (long k = 0; k < 400 && !ok; k++) {
        fl_alloc_fail_after(k);
        fl_status st = fl_model_decompose(m, &o, &dm);
        fl_alloc_fail_after(-1);
        if (st == FL_OK) {
            fl_model_free(dm);
            ok = true;
            break;
        }
        assert_int_equal(st, FL_ERR_NOMEM);
        assert_null(dm);
    }
    assert_true(ok);
    fl_model_free(m);
}

/* Run a shell command; returns its exit status (-1 if it did not exit normally). */
static int shell(const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* fastlstm decompose end to end: per-layer overrides, head rank, table, and usage errors. */
static void test_cli(void **state) {
    (void)state;
    const char *cli = getenv("FL_CLI");
    if (!cli || !*cli) skip();
    long pid = (long)getpid();
    char in[64], outp[64], txt[64], err[64];
    snprintf(in, sizeof in, "decomp_cli_%ld_in.safetensors", pid);
    snprintf(outp, sizeof outp, "decomp_cli_%ld_out.safetensors", pid);
    snprintf(txt, sizeof txt, "decomp_cli_%ld.txt", pid);
    snprintf(err, sizeof err, "decomp_cli_%ld.err", pid);
    assert_int_equal(shell("'%s' init --input 12 --hidden 8 --layers 2 --vocab 20 --lm --seed 3 -o %s > /dev/null",
                           cli, in), 0);
    assert_int_equal(shell("'%s' decompose %s -o %s --rank 4 --head-rank 3 --layer 1:hh=cp:5,ih=dense "
                           "--max-iter 30 > %s 2> %s", cli, in, outp, txt, err), 0);
    assert_true(file_contains(txt, "lstm.weight_hh_l1"));
    assert_true(file_contains(txt, "params"));
    assert_true(file_contains(err, "[5/5] head.weight"));
    fl_model *m, *dm;
    assert_int_equal(fl_model_load(in, &m), FL_OK);
    assert_int_equal(fl_model_load(outp, &dm), FL_OK);
    const fl_mat_spec want[5] = {{FL_METHOD_SVD, 4}, {FL_METHOD_SVD, 4}, {FL_METHOD_DENSE, 0}, {FL_METHOD_CP, 5},
                                 {FL_METHOD_SVD, 3}};
    for (size_t i = 0; i < 5; i++) {
        fl_mat_spec s = fl_model_mat_spec(dm, i);
        assert_int_equal(s.method, want[i].method);
        assert_int_equal(s.rank, want[i].rank);
    }
    check_rel_errors(m, dm);
    assert_memory_equal(dm->embed, m->embed, sizeof(float) * 20 * 12);
    fl_model_free(dm);
    fl_model_free(m);
    /* Usage errors exit 2, library errors 1. */
    assert_int_equal(shell("'%s' decompose %s -o %s --rank 4 --tol 0.1 2> /dev/null", cli, in, outp), 2);
    assert_int_equal(shell("'%s' decompose %s -o %s --layer 7:ih=svd 2> /dev/null", cli, in, outp), 2);
    assert_int_equal(shell("'%s' decompose %s -o %s --method tucker --rank 2 2> /dev/null", cli, in, outp), 2);
    assert_int_equal(shell("'%s' decompose %s --rank 2 2> /dev/null", cli, in), 2);
    assert_int_equal(shell("'%s' decompose %s -o %s --rank 13 > /dev/null 2> %s", cli, in, outp, err), 1);
    assert_true(file_contains(err, "exceeds"));
    assert_int_equal(shell("'%s' decompose --help > /dev/null", cli), 0);
    remove(in), remove(outp), remove(txt), remove(err);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_svd_singular_values),
        cmocka_unit_test(test_svd_error_exact_and_monotone),
        cmocka_unit_test(test_svd_rank_for_tol_and_budget),
        cmocka_unit_test(test_svd_degenerate),
        cmocka_unit_test(test_full_rank_svd_model_matches_dense),
        cmocka_unit_test(test_decomposed_apply_matches_reconstruction),
        cmocka_unit_test(test_tol_and_budget_targets),
        cmocka_unit_test(test_decompose_degenerate),
        cmocka_unit_test(test_save_load_round_trip),
        cmocka_unit_test(test_alloc_failure),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
