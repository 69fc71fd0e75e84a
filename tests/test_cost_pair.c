/* The profile's SVD / CP efficiencies as paired ratios (src/plan/profile_pair.c): each figure is
 * the method's prediction / time over a dense reference's, timed alternately, each side at its
 * fastest sample; the dense step it is paired with holds as many weight bytes as the factors; the
 * projection is paired with the dense W_ih as the runtime runs it, whose rate (gemm_rows_flops) is
 * timed on that path. Hand figures, and small real projections checked only for a usable figure.
 * Nothing here is timed against a threshold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fastlstm/plan.h"
#include "testutil.h"
#include "internal.h"
#include "plan/plan_internal.h"
#include "recurrent.h"

#include <math.h>

static void test_paired_ratio(void **state) {
    (void)state;
    /* method predicted 2 s, fastest sample 4 s; reference predicted 1 s, fastest 1 s: 0.5 */
    const double tm[3] = {5, 4, 6}, tr[3] = {2, 3, 1};
    assert_close(fl_profile_paired_efficiency(2, tm, 1, tr, 3), 0.5, 1e-12);
    /* a neighbour that slows both sides by the same factor leaves the figure */
    const double tm3[3] = {15, 12, 18}, tr3[3] = {6, 9, 3};
    assert_close(fl_profile_paired_efficiency(2, tm3, 1, tr3, 3), 0.5, 1e-12);
    /* one side slowed alone moves it (the ratio is not a constant): the reference twice as slow */
    const double tr2[3] = {4, 6, 2};
    assert_close(fl_profile_paired_efficiency(2, tm, 1, tr2, 3), 1.0, 1e-12);
    /* each side's fastest, whatever the order; n limits the samples read */
    assert_close(fl_profile_paired_efficiency(2, tm, 1, tr, 1), (2.0 / 5) / (1.0 / 2), 1e-12);
    /* nothing measured or nothing predicted: 1 (not modelled) */
    const double z[2] = {0, 1};
    assert_close(fl_profile_paired_efficiency(2, z, 1, tr, 2), 1.0, 0);
    assert_close(fl_profile_paired_efficiency(0, tm, 1, tr, 3), 1.0, 0);
    assert_close(fl_profile_paired_efficiency(2, tm, -1, tr, 3), 1.0, 0);
    assert_close(fl_profile_paired_efficiency(2, tm, 1, tr, 0), 1.0, 0);
}

static void test_reference_hidden(void **state) {
    (void)state;
    /* 16 Hr^2 bytes ~ the factors' bytes, a multiple of 16: exact squares come back */
    assert_int_equal(fl_profile_reference_hidden(16.0 * 512 * 512), 512);
    assert_int_equal(fl_profile_reference_hidden(16.0 * 256 * 256), 256);
    /* SVD H = 1024, rank 256: (4096 + 1024) x 256 floats = 5 MiB; sqrt(5 MiB / 16) = 572.4 -> 576 */
    assert_int_equal(fl_profile_reference_hidden(4.0 * (4096 + 1024) * 256), 576);
    /* rank 64: 1.25 MiB; sqrt / 16 = 17.9 blocks -> 288 */
    assert_int_equal(fl_profile_reference_hidden(4.0 * (4096 + 1024) * 64), 288);
    /* at least one block */
    assert_int_equal(fl_profile_reference_hidden(100), 16);
    assert_int_equal(fl_profile_reference_hidden(0), 16);
    assert_int_equal(fl_profile_reference_hidden(-5), 16);
    /* the nearest multiple of 16 to sqrt(bytes / 16) */
    for (double b = 1e4; b < 1e8; b *= 1.37) {
        int h = fl_profile_reference_hidden(b);
        assert_int_equal(h % 16, 0);
        assert_true(fabs(h - sqrt(b / 16)) <= 8.0 + 1e-9);
    }
}

/* A real SVD projection paired with a small dense W_ih as a session runs it: a finite, positive
 * figure (its value is the machine's). */
static void test_gemm_pair_runs(void **state) {
    (void)state;
    fl_arch a = {.input = 32, .hidden = 16, .layers = 1, .head = FL_HEAD_NONE};
    fl_mat_spec sp[2] = {{FL_METHOD_SVD, 4}, {FL_METHOD_SVD, 4}};
    fl_model *m = NULL, *d = NULL;
    fl_rec *r = NULL, *mr = NULL;
    assert_int_equal(fl_model_create(&a, sp, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 1), FL_OK);
    assert_int_equal(fl_model_create(&a, NULL, &d), FL_OK);
    assert_int_equal(fl_model_init_random(d, 2), FL_OK);
    assert_int_equal(fl_rec_create(&d->layer[0], 1, 1, &r), FL_OK);
    assert_int_equal(fl_rec_create(&m->layer[0], 8, 1, &mr), FL_OK);
    const int rows = 8;
    float *x = fl_calloc((size_t)rows * 32 + (size_t)rows * 64 + fl_mat_apply_workspace(&m->layer[0].wih, rows) + 1,
                         sizeof(float));
    assert_non_null(x);
    for (int i = 0; i < rows * 32; i++) x[i] = (float)(i % 7) * 0.1f;
    float *y = x + (size_t)rows * 32, *ws = y + (size_t)rows * 64;
    double e = fl_profile_gemm_efficiency(&m->layer[0].wih, mr, r, &d->layer[0].wih, rows, x, y, ws, 3);
    assert_true(isfinite(e) && e > 0);
    fl_free(x);
    fl_rec_free(r);
    fl_rec_free(mr);
    fl_model_free(m);
    fl_model_free(d);
}

/* The projection rate the profile's gemm_rows_flops comes from: the runtime's dense path on n rows,
 * a finite positive rate for any pick (clamped to the samples taken). */
static void test_rows_rate_runs(void **state) {
    (void)state;
    double f = 0, g = 0;
    assert_int_equal(fl_profile_rows_rate(4, 3, 1, &f), FL_OK);
    assert_true(isfinite(f) && f > 0);
    assert_int_equal(fl_profile_rows_rate(4, 1, 5, &g), FL_OK); /* pick past the one sample: that one */
    assert_true(isfinite(g) && g > 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paired_ratio),
        cmocka_unit_test(test_reference_hidden),
        cmocka_unit_test(test_gemm_pair_runs),
        cmocka_unit_test(test_rows_rate_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
