/* Recurrent step (fl_rec_*): every kernel level this CPU has, against a double-precision reference
 * built from the reconstructed dense W_hh, for dense / SVD / CP storage, awkward hidden sizes,
 * odd batches, strided rows, one and two threads, and several steps in a row. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "recurrent.h"
#include "recurrent_levels.h"
#include "kernels/rec_kernels.h"

static const char *const LEVELS[] = {"ref", "avx2", "avx512"};

/* A one-layer model whose W_hh is stored as `method` at `rank`. */
static fl_model *make_model(int H, fl_method method, int rank, uint64_t seed) {
    fl_arch a = {.vocab = 0, .input = 3, .hidden = H, .layers = 1, .head = FL_HEAD_NONE, .head_out = 0};
    fl_mat_spec specs[2] = {{FL_METHOD_DENSE, 0}, {method, rank}};
    fl_model *m = NULL;
    assert_int_equal(fl_model_create(&a, specs, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, seed), FL_OK);
    return m;
}

static double sigm(double x) { return 1.0 / (1.0 + exp(-x)); }

/* One reference step in double: gates = gx + W h, cell update. gx (B, 4H) stride ldgx,
 * h (B, H) stride ldh (read), c (B, H) updated, ho (B, H) written. */
static void ref_step(const float *W, int H, int B, const float *gx, int ldgx, const double *h,
                     double *c, double *ho) {
    for (int b = 0; b < B; b++)
        for (int j = 0; j < H; j++) {
            double g[4];
            for (int q = 0; q < 4; q++) {
                double s = gx[(size_t)b * ldgx + (size_t)q * H + j];
                const float *row = W + ((size_t)q * H + j) * H;
                for (int k = 0; k < H; k++) s += (double)row[k] * h[(size_t)b * H + k];
                g[q] = s;
            }
            double cn = sigm(g[1]) * c[(size_t)b * H + j] + sigm(g[0]) * tanh(g[2]);
            c[(size_t)b * H + j] = cn;
            ho[(size_t)b * H + j] = sigm(g[3]) * tanh(cn);
        }
}

/* ||x - ref|| / max(||ref||, 1e-3) over n entries. */
static double rel_err(const float *x, size_t ldx, const double *ref, int B, int H) {
    double num = 0, den = 0;
    for (int b = 0; b < B; b++)
        for (int j = 0; j < H; j++) {
            double d = x[(size_t)b * ldx + j] - ref[(size_t)b * H + j];
            num += d * d;
            den += ref[(size_t)b * H + j] * ref[(size_t)b * H + j];
        }
    return sqrt(num) / fmax(sqrt(den), 1e-3);
}

/* Run `steps` steps of one configuration through every level and thread count and compare. */
static void check_config(int H, fl_method method, int rank, int B, int steps) {
    fl_model *m = make_model(H, method, rank, 1000 + (uint64_t)H * 7 + (uint64_t)method);
    const fl_layer *ly = &m->layer[0];
    float *W = malloc((size_t)4 * H * H * sizeof(float));
    assert_non_null(W);
    fl_mat_to_dense(&ly->whh, W);

    // Strided rows: gx (B, 4H + 5), h (B, H + 3), with deterministic inputs of unit scale.
    const int ldgx = 4 * H + 5, ldh = H + 3;
    fl_rng rng;
    fl_rng_seed(&rng, 77 + (uint64_t)H);
    float *gx = malloc((size_t)steps * B * ldgx * sizeof(float));
    float *h0 = malloc((size_t)B * ldh * sizeof(float));
    float *c0 = malloc((size_t)B * H * sizeof(float));
    assert_true(gx && h0 && c0);
    for (size_t i = 0; i < (size_t)steps * B * ldgx; i++) gx[i] = fl_rng_uniform_range(&rng, -2.0f, 2.0f);
    for (size_t i = 0; i < (size_t)B * ldh; i++) h0[i] = fl_rng_uniform_range(&rng, -1.0f, 1.0f);
    for (size_t i = 0; i < (size_t)B * H; i++) c0[i] = fl_rng_uniform_range(&rng, -1.0f, 1.0f);

    // Reference trajectory: href/cref (steps, B, H).
    double *href = malloc((size_t)steps * B * H * sizeof(double));
    double *cref = malloc((size_t)steps * B * H * sizeof(double));
    double *hcur = malloc((size_t)B * H * sizeof(double));
    double *ccur = malloc((size_t)B * H * sizeof(double));
    assert_true(href && cref && hcur && ccur);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < H; j++) {
            hcur[(size_t)b * H + j] = h0[(size_t)b * ldh + j];
            ccur[(size_t)b * H + j] = c0[(size_t)b * H + j];
        }
    for (int t = 0; t < steps; t++) {
        ref_step(W, H, B, gx + (size_t)t * B * ldgx, ldgx, hcur, ccur, href + (size_t)t * B * H);
        memcpy(cref + (size_t)t * B * H, ccur, (size_t)B * H * sizeof(double));
        memcpy(hcur, href + (size_t)t * B * H, (size_t)B * H * sizeof(double));
    }

    float *hbuf[2], *c = malloc((size_t)B * H * sizeof(float));
    hbuf[0] = malloc((size_t)B * ldh * sizeof(float));
    hbuf[1] = malloc((size_t)B * ldh * sizeof(float));
    assert_true(c && hbuf[0] && hbuf[1]);
    int levels_run = 0;
    for (size_t li = 0; li < sizeof LEVELS / sizeof LEVELS[0]; li++)
        for (int threads = 1; threads <= 2; threads++) {
            fl_rec *r = NULL;
            fl_status st = fl_rec_create_with(ly, B + 1, threads, LEVELS[li], &r);
            if (st == FL_ERR_UNSUPPORTED && li > 0) continue; /* this CPU lacks the level */
            assert_int_equal(st, FL_OK);
            levels_run++;
            memcpy(hbuf[0], h0, (size_t)B * ldh * sizeof(float));
            memcpy(c, c0, (size_t)B * H * sizeof(float));
            for (int t = 0; t < steps; t++) {
                float *hp = hbuf[t % 2], *ho = hbuf[(t + 1) % 2];
                fl_rec_step(r, B, gx + (size_t)t * B * ldgx, ldgx, hp, ldh, c, ho, ldh);
                double eh = rel_err(ho, (size_t)ldh, href + (size_t)t * B * H, B, H);
                double ec = rel_err(c, (size_t)H, cref + (size_t)t * B * H, B, H);
                if (eh > 2e-5 || ec > 2e-5)
                    fail_msg("level %s threads %d H %d method %d rank %d B %d step %d: rel err h %.3g c %.3g",
                             LEVELS[li], threads, H, (int)method, rank, B, t, eh, ec);
            }
            fl_rec_free(r);
        }
    assert_true(levels_run >= 2); /* ref at least, with 1 and 2 threads */
    free(W), free(gx), free(h0), free(c0), free(href), free(cref), free(hcur), free(ccur);
    free(c), free(hbuf[0]), free(hbuf[1]);
    fl_model_free(m);
}

static const int HS[] = {1, 7, 17, 63, 65, 91};
static const int BS[] = {1, 2, 3, 5, 8, 13};

static void test_dense(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof HS / sizeof HS[0]; i++)
        for (size_t b = 0; b < sizeof BS / sizeof BS[0]; b++) check_config(HS[i], FL_METHOD_DENSE, 0, BS[b], 3);
}

static void test_svd(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof HS / sizeof HS[0]; i++)
        for (size_t b = 0; b < sizeof BS / sizeof BS[0]; b++) {
            int H = HS[i];
            check_config(H, FL_METHOD_SVD, H / 8 > 0 ? H / 8 : 1, BS[b], 3);
            check_config(H, FL_METHOD_SVD, H, BS[b], 2); /* full rank; rank 17+ spans two r chunks */
        }
}

static void test_cp(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof HS / sizeof HS[0]; i++)
        for (size_t b = 0; b < sizeof BS / sizeof BS[0]; b++) {
            int H = HS[i];
            check_config(H, FL_METHOD_CP, H / 8 > 0 ? H / 8 : 1, BS[b], 3);
            check_config(H, FL_METHOD_CP, 2 * H + 3, BS[b], 2); /* rank above H */
        }
}

/* The largest shape of the benchmarks: long sums, 94 blocks split over threads. */
static void test_large(void **state) {
    (void)state;
    check_config(1500, FL_METHOD_DENSE, 0, 2, 1);
    check_config(1500, FL_METHOD_SVD, 94, 1, 2);
    check_config(1500, FL_METHOD_SVD, 187, 5, 1);
    check_config(1500, FL_METHOD_CP, 94, 1, 2);
    check_config(1500, FL_METHOD_CP, 94, 3, 1);
}

/* Changing the thread count between steps keeps results (pool torn down and restarted). */
static void test_set_threads(void **state) {
    (void)state;
    const int H = 200, B = 2;
    fl_model *m = make_model(H, FL_METHOD_DENSE, 0, 5);
    float *gx = calloc((size_t)B * 4 * H, sizeof(float)), *h = calloc((size_t)B * H, sizeof(float));
    float *c1 = calloc((size_t)B * H, sizeof(float)), *c2 = calloc((size_t)B * H, sizeof(float));
    float *o1 = calloc((size_t)B * H, sizeof(float)), *o2 = calloc((size_t)B * H, sizeof(float));
    assert_true(gx && h && c1 && c2 && o1 && o2);
    for (int i = 0; i < B * 4 * H; i++) gx[i] = (float)sin(i * 0.37);
    for (int i = 0; i < B * H; i++) h[i] = (float)cos(i * 0.11);
    fl_rec *r = NULL;
    assert_int_equal(fl_rec_create(&m->layer[0], B, 1, &r), FL_OK);
    fl_rec_step(r, B, gx, 4 * H, h, H, c1, o1, H);
    for (int threads = 2; threads >= 1; threads--) {
        assert_int_equal(fl_rec_set_threads(r, threads), FL_OK);
        for (int rep = 0; rep < 50; rep++) {
            memset(c2, 0, (size_t)B * H * sizeof(float));
            fl_rec_step(r, B, gx, 4 * H, h, H, c2, o2, H);
        }
        /* Same kernel level, same per-unit sums: identical bits whatever the split. */
        assert_memory_equal(o1, o2, (size_t)B * H * sizeof(float));
        assert_memory_equal(c1, c2, (size_t)B * H * sizeof(float));
    }
    assert_int_equal(fl_rec_set_threads(r, 0), FL_ERR_ARG);
    fl_rec_free(r);
    free(gx), free(h), free(c1), free(c2), free(o1), free(o2);
    fl_model_free(m);
}

/* gemm_nt (input projection) of every level that has one, and its scalar reference, against double
 * sums: awkward n, rows and K (tails of 6 X rows, 4 W rows, 16 lanes), strides, beta 0 and 0.5. */
static void test_gemm_nt(void **state) {
    (void)state;
    const int ns[] = {1, 5, 6, 7, 13, 35}, rowss[] = {1, 3, 4, 7, 64, 300}, Ks[] = {1, 15, 16, 17, 64, 650};
    fl_rng rng;
    fl_rng_seed(&rng, 4);
    for (size_t a = 0; a < 6; a++)
        for (size_t b = 0; b < 6; b++)
            for (size_t q = 0; q < 6; q++) {
                const int n = ns[a], rows = rowss[b], K = Ks[q], ldx = K + 3, ldw = K + 1, ldy = rows + 2;
                float *x = malloc((size_t)n * ldx * 4), *w = malloc((size_t)rows * ldw * 4);
                float *y0 = malloc((size_t)n * ldy * 4), *y = malloc((size_t)n * ldy * 4);
                double *ref = malloc((size_t)n * rows * 8), *mag = malloc((size_t)n * rows * 8);
                assert_true(x && w && y0 && y && ref && mag);
                for (int i = 0; i < n * ldx; i++) x[i] = fl_rng_uniform_range(&rng, -1, 1);
                for (int i = 0; i < rows * ldw; i++) w[i] = fl_rng_uniform_range(&rng, -1, 1);
                for (int i = 0; i < n * ldy; i++) y0[i] = fl_rng_uniform_range(&rng, -1, 1);
                for (int beta_i = 0; beta_i < 2; beta_i++) {
                    const float beta = beta_i ? 0.5f : 0.0f;
                    for (int i = 0; i < n; i++)
                        for (int r = 0; r < rows; r++) {
                            double s = beta * (double)y0[(size_t)i * ldy + r], m = fabs(s);
                            for (int k = 0; k < K; k++) {
                                double p = (double)x[(size_t)i * ldx + k] * w[(size_t)r * ldw + k];
                                s += p;
                                m += fabs(p);
                            }
                            ref[(size_t)i * rows + r] = s;
                            mag[(size_t)i * rows + r] = m; /* float summation error scales with this */
                        }
                    for (size_t li = 0; li < sizeof LEVELS / sizeof LEVELS[0] + 1; li++) {
                        const fl_rec_kernels *k = li < 3 ? fl_rec_kernels_by_name(LEVELS[li]) : NULL;
                        if (li < 3 && (!k || !k->gemm_nt)) continue;
                        memcpy(y, y0, (size_t)n * ldy * 4);
                        if (k) k->gemm_nt(n, rows, K, x, ldx, w, ldw, beta, y, ldy);
                        else fl_rec_gemm_nt_ref(n, rows, K, x, ldx, w, ldw, beta, y, ldy);
                        double e = 0;
                        for (int i = 0; i < n; i++)
                            for (int r = 0; r < rows; r++) {
                                double d = fabs(y[(size_t)i * ldy + r] - ref[(size_t)i * rows + r]) /
                                           fmax(mag[(size_t)i * rows + r], 1e-30);
                                e = fmax(e, d);
                            }
                        if (e > 1e-5)
                            fail_msg("gemm_nt %s n %d rows %d K %d beta %g: rel err %.3g", k ? k->name : "ref-fn", n,
                                     rows, K, beta, e);
                        for (int i = 0; i < n; i++) /* padding between rows untouched */
                            for (int r = rows; r < ldy; r++)
                                assert_true(y[(size_t)i * ldy + r] == y0[(size_t)i * ldy + r]);
                    }
                }
                free(x), free(w), free(y0), free(y), free(ref), free(mag);
            }
}

static void test_bad_args(void **state) {
    (void)state;
    fl_model *m = make_model(20, FL_METHOD_SVD, 3, 9);
    fl_rec *r = (fl_rec *)&r;
    assert_int_equal(fl_rec_create(&m->layer[0], 0, 1, &r), FL_ERR_ARG);
    assert_null(r);
    assert_int_equal(fl_rec_create_with(&m->layer[0], 1, 1, "sse9", &r), FL_ERR_UNSUPPORTED);
    assert_null(r);
    // Allocation failure at every point of creation returns FL_ERR_NOMEM and leaks nothing (ASan).
    for (long n = 0; n < 4; n++) {
        fl_alloc_fail_after(n);
        fl_status st = fl_rec_create(&m->layer[0], 2, 2, &r);
        fl_alloc_fail_after(-1);
        if (st == FL_OK) {
            fl_rec_free(r);
            break;
        }
        assert_int_equal(st, FL_ERR_NOMEM);
        assert_null(r);
    }
    fl_rec_free(NULL);
    fl_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dense),       cmocka_unit_test(test_svd),
        cmocka_unit_test(test_cp),          cmocka_unit_test(test_large),
        cmocka_unit_test(test_set_threads), cmocka_unit_test(test_gemm_nt),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
