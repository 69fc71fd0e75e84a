/* CP-ALS of 4 x H x N tensors: recovery of exact-rank tensors, monotone fit, degenerate inputs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "decomp/decomp.h"

/* T (4, H, N) = sum_r A[g, r] B[i, r] C[j, r] with N(0, 1) factors, built by a plain loop. */
static float *exact_tensor(int H, int N, int R, uint64_t seed) {
    fl_rng rng;
    fl_rng_seed(&rng, seed);
    double *A = malloc(sizeof(double) * 4 * R), *B = malloc(sizeof(double) * H * R),
           *C = malloc(sizeof(double) * N * R);
    for (int i = 0; i < 4 * R; i++) A[i] = fl_rng_normal(&rng);
    for (int i = 0; i < H * R; i++) B[i] = fl_rng_normal(&rng);
    for (int i = 0; i < N * R; i++) C[i] = fl_rng_normal(&rng);
    float *T = malloc(sizeof(float) * 4 * H * N);
    for (int g = 0; g < 4; g++)
        for (int i = 0; i < H; i++)
            for (int j = 0; j < N; j++) {
                double s = 0;
                for (int r = 0; r < R; r++) s += A[g * R + r] * B[i * R + r] * C[j * R + r];
                T[(g * H + i) * N + j] = (float)s;
            }
    free(A);
    free(B);
    free(C);
    return T;
}

static float *random_tensor(int H, int N, uint64_t seed) {
    fl_rng rng;
    fl_rng_seed(&rng, seed);
    float *T = malloc(sizeof(float) * 4 * H * N);
    for (int i = 0; i < 4 * H * N; i++) T[i] = (float)fl_rng_normal(&rng);
    return T;
}

/* Independent error of float factors: reconstruct by a plain triple loop in double. */
static double plain_error(const float *T, int H, int N, int R, const float *a, const float *b, const float *c) {
    double num = 0, den = 0;
    for (int g = 0; g < 4; g++)
        for (int i = 0; i < H; i++)
            for (int j = 0; j < N; j++) {
                double s = 0;
                for (int r = 0; r < R; r++) s += (double)a[g * R + r] * b[i * R + r] * c[j * R + r];
                double t = T[(g * H + i) * N + j];
                num += (t - s) * (t - s);
                den += t * t;
            }
    return sqrt(num / den);
}

typedef struct history {
    double err[1024];
    int n;
} history;

static void record(void *ctx, int iter, double rel) {
    history *h = ctx;
    assert_int_equal(iter, h->n + 1);
    if (h->n < 1024) h->err[h->n++] = rel;
}

static void test_recovers_exact_rank(void **state) {
    (void)state;
    const int shapes[][3] = {{5, 7, 3}, {8, 6, 4}, {12, 10, 5}, {16, 20, 8}, {9, 9, 9}, {1, 6, 1}, {6, 1, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (uint64_t seed = 1; seed <= 3; seed++) {
            int H = shapes[s][0], N = shapes[s][1], R = shapes[s][2];
            float *T = exact_tensor(H, N, R, 100 * seed + s);
            float *a = malloc(sizeof(float) * 4 * R), *b = malloc(sizeof(float) * H * R),
                  *c = malloc(sizeof(float) * N * R);
            fl_cp_opts o = fl_cp_opts_default();
            o.max_iter = 1000;
            o.tol = 1e-13;
            o.seed = seed;
            fl_cp_report rep;
            assert_int_equal(fl_cp_als(T, H, N, R, &o, a, b, c, &rep), FL_OK);
            double e = plain_error(T, H, N, R, a, b, c);
            if (e > 1e-4)
                print_error("shape 4x%dx%d R=%d seed %d: rel error %g after %d sweeps\n", H, N, R,
                            (int)seed, e, rep.iterations);
            assert_true(e <= 1e-4);
            assert_true(fabs(rep.rel_error - e) <= 1e-6 + 1e-6 * e);
            assert_true(rep.iterations >= 1 && rep.iterations <= o.max_iter);
            free(T), free(a), free(b), free(c);
        }
}

/* The squared relative error comes from ||X||^2 - 2<X, X~> + ||X~||^2, so its rounding is a few
 * machine epsilons of ||X||^2 (about 1e-16 here); allow 1e-12 on the squares and nothing more. */
static bool no_worse(double before, double after) { return after * after <= before * before + 1e-12; }

static void test_fit_monotone(void **state) {
    (void)state;
    const int shapes[][3] = {{10, 12, 6}, {7, 5, 9}, {20, 8, 3}};
    for (size_t s = 0; s < 3; s++) {
        int H = shapes[s][0], N = shapes[s][1], R = shapes[s][2];
        float *T = random_tensor(H, N, 7 + s);
        float *a = malloc(sizeof(float) * 4 * R), *b = malloc(sizeof(float) * H * R),
              *c = malloc(sizeof(float) * N * R);
        history h = {.n = 0};
        fl_cp_opts o = fl_cp_opts_default();
        o.max_iter = 150;
        o.tol = 0; /* run every sweep */
        o.on_iter = record;
        o.ctx = &h;
        fl_cp_report rep;
        assert_int_equal(fl_cp_als(T, H, N, R, &o, a, b, c, &rep), FL_OK);
        assert_int_equal(h.n, rep.iterations);
        assert_true(h.n >= 2);
        for (int k = 1; k < h.n; k++) {
            if (!no_worse(h.err[k - 1], h.err[k]))
                print_error("shape %zu: error rose from %.17g to %.17g at sweep %d\n", s, h.err[k - 1], h.err[k], k + 1);
            assert_true(no_worse(h.err[k - 1], h.err[k]));
        }
        /* The Gram-based history agrees with the direct error of the returned factors. */
        double e = plain_error(T, H, N, R, a, b, c);
        assert_true(fabs(h.err[h.n - 1] - e) <= 1e-5);
        assert_true(e < 1.0);
        free(T), free(a), free(b), free(c);
    }
}

static void test_rank_above_mode_sizes(void **state) {
    (void)state;
    /* R exceeds H and N (and the mode-1 size 4): initial B, C are padded with random columns and the
     * normal equations are singular, so the least-squares fallback runs. */
    const int H = 3, N = 5, R = 7;
    float *T = random_tensor(H, N, 11);
    float a[4 * R], b[H * R], c[N * R];
    fl_cp_report rep;
    fl_cp_opts o = fl_cp_opts_default();
    o.max_iter = 50;
    assert_int_equal(fl_cp_als(T, H, N, R, &o, a, b, c, &rep), FL_OK);
    for (int i = 0; i < 4 * R; i++) assert_true(isfinite(a[i]));
    for (int i = 0; i < H * R; i++) assert_true(isfinite(b[i]));
    for (int i = 0; i < N * R; i++) assert_true(isfinite(c[i]));
    double e = plain_error(T, H, N, R, a, b, c);
    assert_true(e < 0.9);
    assert_true(fabs(rep.rel_error - e) <= 1e-5);
    free(T);
    /* 4 x 2 x 2 has generic rank 4, so rank 6 fits exactly though every Gram product is singular. */
    float *T2 = random_tensor(2, 2, 12);
    float a2[4 * 6], b2[2 * 6], c2[2 * 6];
    history h = {.n = 0};
    o.max_iter = 500;
    o.tol = 0;
    o.on_iter = record;
    o.ctx = &h;
    assert_int_equal(fl_cp_als(T2, 2, 2, 6, &o, a2, b2, c2, &rep), FL_OK);
    e = plain_error(T2, 2, 2, 6, a2, b2, c2);
    print_message("4x2x2 rank 6: rel error %g after %d sweeps\n", e, rep.iterations);
    for (int k = 1; k < h.n; k++) assert_true(no_worse(h.err[k - 1], h.err[k]));
    assert_true(e <= 1e-3);
    free(T2);
}

static void test_deterministic_and_balanced(void **state) {
    (void)state;
    const int H = 9, N = 11, R = 4;
    float *T = random_tensor(H, N, 5);
    float a1[4 * R], b1[H * R], c1[N * R], a2[4 * R], b2[H * R], c2[N * R];
    fl_cp_opts o = fl_cp_opts_default();
    o.seed = 42;
    assert_int_equal(fl_cp_als(T, H, N, R, &o, a1, b1, c1, NULL), FL_OK);
    assert_int_equal(fl_cp_als(T, H, N, R, &o, a2, b2, c2, NULL), FL_OK);
    assert_memory_equal(a1, a2, sizeof a1);
    assert_memory_equal(b1, b2, sizeof b1);
    assert_memory_equal(c1, c2, sizeof c1);
    /* Column norms are spread evenly over the three factors. */
    for (int r = 0; r < R; r++) {
        double na = 0, nb = 0, nc = 0;
        for (int g = 0; g < 4; g++) na += (double)a1[g * R + r] * a1[g * R + r];
        for (int i = 0; i < H; i++) nb += (double)b1[i * R + r] * b1[i * R + r];
        for (int j = 0; j < N; j++) nc += (double)c1[j * R + r] * c1[j * R + r];
        na = sqrt(na), nb = sqrt(nb), nc = sqrt(nc);
        assert_true(fabs(na - nb) <= 1e-5 * na && fabs(na - nc) <= 1e-5 * na);
    }
    free(T);
}

static void test_degenerate(void **state) {
    (void)state;
    const int H = 4, N = 3, R = 2;
    float T[4 * 4 * 3] = {0};
    float a[4 * R], b[H * R], c[N * R];
    assert_int_equal(fl_cp_als(T, H, N, R, NULL, a, b, c, NULL), FL_ERR_ARG); /* zero tensor */
    assert_non_null(strstr(fl_last_error(), "zero"));
    T[5] = 1.0f;
    assert_int_equal(fl_cp_als(T, H, N, R, NULL, a, b, c, NULL), FL_OK);
    assert_int_equal(fl_cp_als(T, H, N, 0, NULL, a, b, c, NULL), FL_ERR_ARG);
    assert_non_null(strstr(fl_last_error(), "rank 0"));
    assert_int_equal(fl_cp_als(T, H, N, -3, NULL, a, b, c, NULL), FL_ERR_ARG);
    assert_int_equal(fl_cp_als(T, 0, N, R, NULL, a, b, c, NULL), FL_ERR_ARG);
    assert_int_equal(fl_cp_als(T, H, 0, R, NULL, a, b, c, NULL), FL_ERR_ARG);
    assert_int_equal(fl_cp_als(NULL, H, N, R, NULL, a, b, c, NULL), FL_ERR_ARG);
    assert_int_equal(fl_cp_als(T, H, N, R, NULL, a, NULL, c, NULL), FL_ERR_ARG);
    fl_cp_opts o = fl_cp_opts_default();
    o.max_iter = 0;
    assert_int_equal(fl_cp_als(T, H, N, R, &o, a, b, c, NULL), FL_ERR_ARG);
    T[7] = NAN;
    assert_int_equal(fl_cp_als(T, H, N, R, NULL, a, b, c, NULL), FL_ERR_NONFINITE);
}

static void test_alloc_failure(void **state) {
    (void)state;
    const int H = 6, N = 5, R = 3;
    float *T = random_tensor(H, N, 3);
    float a[4 * R], b[H * R], c[N * R];
    for (long k = 0; k < 14; k++) {
        fl_alloc_fail_after(k);
        fl_status st = fl_cp_als(T, H, N, R, NULL, a, b, c, NULL);
        fl_alloc_fail_after(-1);
        assert_int_equal(st, FL_ERR_NOMEM);
    }
    free(T);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recovers_exact_rank),
        cmocka_unit_test(test_fit_monotone),
        cmocka_unit_test(test_rank_above_mode_sizes),
        cmocka_unit_test(test_deterministic_and_balanced),
        cmocka_unit_test(test_degenerate),
        cmocka_unit_test(test_alloc_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
