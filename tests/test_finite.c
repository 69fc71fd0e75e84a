/* fl_find_nonfinite (finite.c, the blocked vectorised scan behind fl_session_run's input checks)
 * against the scalar loop it replaced: the same index for NaN, +Inf and -Inf at every position of
 * arrays around the block size, for the largest finite values, denormals and negative zeros (all
 * finite), and with two bad values (the first is named). Then fl_session_run names the same
 * position of a NaN in x late in a long input as before. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "internal.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The scalar reference: the loop session.c ran before. */
static long ref_find(const float *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(p[i])) return (long)i;
    return -1;
}

/* p[0..n) finite values, among them the edge cases that are not non-finite */
static void fill(float *p, size_t n) {
    const float edge[] = {FLT_MAX, -FLT_MAX, FLT_MIN, -FLT_MIN, 1e-45f, -1e-45f, 0.0f, -0.0f, 1.0f, -3.5f};
    for (size_t i = 0; i < n; i++) p[i] = edge[i % (sizeof edge / sizeof edge[0])];
}

static void test_matches_scalar(void **state) {
    (void)state;
    const size_t sizes[] = {0, 1, 7, 255, 256, 257, 511, 512, 513, 1000, 4096 + 3};
    const float bad[] = {NAN, -NAN, INFINITY, -INFINITY};
    float *p = malloc(5000 * sizeof *p);
    assert_non_null(p);
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const size_t n = sizes[s];
        fill(p, n);
        assert_int_equal(fl_find_nonfinite(p, n), -1);
        assert_int_equal(ref_find(p, n), -1);
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
                const float keep = p[i];
                p[i] = bad[k];
                const long got = fl_find_nonfinite(p, n), want = ref_find(p, n);
                if (got != want || want != (long)i) fail_msg("n %zu, value %g at %zu: got %ld, want %ld", n, (double)bad[k], i, got, want);
                p[i] = keep;
            }
    }
    // two bad values: the first one is named, in the same block and in different blocks
    fill(p, 5000);
    const size_t pairs[][2] = {{3, 9}, {255, 256}, {300, 4000}, {4999, 4999}};
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        p[pairs[k][0]] = INFINITY;
        p[pairs[k][1]] = NAN;
        assert_int_equal(fl_find_nonfinite(p, 5000), (long)pairs[k][0]);
        assert_int_equal(ref_find(p, 5000), (long)pairs[k][0]);
        fill(p, 5000);
    }
    // only the first n are looked at
    p[100] = NAN;
    assert_int_equal(fl_find_nonfinite(p, 100), -1);
    assert_int_equal(fl_find_nonfinite(p, 101), 100);
    free(p);
}

/* fl_session_run still refuses a NaN in x, naming its batch, step and feature (batch-major). */
static void test_session_names_position(void **state) {
    (void)state;
    const int B = 3, T = 40, D = 9, H = 8;
    fl_arch a = {.vocab = 0, .input = D, .hidden = H, .layers = 1, .head = FL_HEAD_NONE};
    fl_mat_spec sp[2] = {{FL_METHOD_DENSE, 0}, {FL_METHOD_DENSE, 0}};
    fl_model *m = NULL;
    assert_int_equal(fl_model_create(&a, sp, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 3), FL_OK);
    fl_session_opts o = {.max_batch = B, .max_seq = T, .threads = 1};
    fl_session *s = NULL;
    assert_int_equal(fl_session_create(m, &o, &s), FL_OK);
    float *x = calloc((size_t)B * T * D, sizeof *x), *y = calloc((size_t)B * T * H, sizeof *y);
    assert_non_null(x);
    assert_non_null(y);
    fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = B, .seq = T, .x = x, .y = y};
    assert_int_equal(fl_session_run(s, &io), FL_OK);
    x[((size_t)2 * T + 37) * D + 5] = -INFINITY; /* batch 2, step 37, feature 5: past the first blocks */
    x[((size_t)2 * T + 39) * D + 1] = NAN;       /* a later one, not named */
    assert_int_equal(fl_session_run(s, &io), FL_ERR_NONFINITE);
    assert_non_null(strstr(fl_last_error(), "x[batch 2, step 37, feature 5]"));
    free(x), free(y);
    fl_session_free(s);
    fl_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_scalar),
        cmocka_unit_test(test_session_names_position),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
