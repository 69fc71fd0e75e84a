/* The one description of block sizes and thresholds (fl_tuning_get) and the one BLAS thread policy
 * (core/blas_threads.h): sessions set OpenBLAS to one thread for the process, as fastlstm.h says;
 * the profile's single-thread measurement restores the count it found. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fastlstm/tuning.h"
#include "blas_threads.h"
#include "internal.h"
#include "kernels/kernels.h"
#include "tuning_consts.h"

static void test_tuning_describes_build(void **state) {
    (void)state;
    const fl_tuning *t = fl_tuning_get();
    assert_non_null(t);
    assert_ptr_equal(t, fl_tuning_get());
    assert_int_equal(t->rec_block, FL_REC_NB);
    assert_int_equal(t->proj_panel, FL_PK_NC);
    assert_int_equal(t->min_parallel_bytes, FL_MIN_PARALLEL_BYTES);
    assert_true(t->min_parallel_macs == FL_MIN_PARALLEL_MACS);
    assert_int_equal(t->gemm_nt_min_k, FL_GEMM_NT_MIN_K);
    assert_true(t->cache_fit_fraction > 0 && t->cache_fit_fraction <= 1);
    assert_true(t->min_blocks_per_thread >= 1 && t->chunks_per_thread >= 1);
    assert_int_equal(t->rows_min_per_thread, FL_ROWS_MIN_PER_THREAD);
    assert_int_equal(t->rows_max_whh_bytes, FL_ROWS_MAX_WHH_BYTES);
    assert_int_equal(t->rows_max_dense_bytes, FL_ROWS_MAX_DENSE_BYTES);
    /* the rule fl_rows_auto applies is the one described */
    assert_true(fl_rows_auto(2 * t->rows_min_per_thread, 2, (double)t->rows_max_whh_bytes, false));
    assert_false(fl_rows_auto(2 * t->rows_min_per_thread - 1, 2, (double)t->rows_max_whh_bytes, false));
    assert_false(fl_rows_auto(20, 2, (double)t->rows_max_whh_bytes + 4, false));
    assert_false(fl_rows_auto(20, 2, (double)t->rows_max_dense_bytes + 4, true));
    assert_int_equal(t->rows_dense_min_per_thread, FL_ROWS_DENSE_MIN_PER_THREAD);
    const int dn = 2 * t->rows_dense_min_per_thread;
    assert_true(fl_rows_auto(dn, 2, (double)t->rows_max_dense_bytes, true));
    assert_false(fl_rows_auto(dn - 1, 2, (double)t->rows_max_dense_bytes, true));
    assert_false(fl_rows_auto(dn, 2, (double)t->rows_max_dense_bytes + 4, true));
}

static void test_blas_policy(void **state) {
    (void)state;
    fl_blas_set_threads(2);
    if (fl_blas_threads() != 2) skip(); /* a single-threaded OpenBLAS build: nothing to set */
    int prev = fl_blas_single_begin();
    assert_int_equal(prev, 2);
    assert_int_equal(fl_blas_threads(), 1);
    fl_blas_single_end(prev);
    assert_int_equal(fl_blas_threads(), 2);

    const fl_arch a = {.input = 3, .hidden = 5, .layers = 1, .head = FL_HEAD_NONE};
    fl_model *m;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    fl_session *s;
    assert_int_equal(fl_session_create(m, NULL, &s), FL_OK);
    assert_int_equal(fl_blas_threads(), 1); /* documented at fl_session_create */
    fl_blas_set_threads(2);
    assert_int_equal(fl_session_set_threads(s, 2), FL_OK);
    assert_int_equal(fl_blas_threads(), 1);
    fl_session_free(s);
    assert_int_equal(fl_blas_threads(), 1); /* not restored at free */
    fl_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tuning_describes_build),
        cmocka_unit_test(test_blas_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
