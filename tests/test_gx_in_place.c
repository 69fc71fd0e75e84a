/* Kernels that read a step's gx in place (fl_kernels.gx_in_place: avx512): the profile's low-rank
 * pass then times no gx copy (its figure 0) and walks the panels' gx through the last level, and the
 * cost model prices no copy. The recurrent step's results with gx read in place, strided rows
 * included, are checked against the scalar reference by test_recurrent. Nothing here is timed: the
 * pass runs, its figures are checked for presence only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fastlstm/plan.h"
#include "internal.h"
#include "kernels/kernels.h"
#include "plan/plan_internal.h"
#include "plan/profile_internal.h"
#include "flat_profile.h"

#include <math.h>
#include <stdlib.h>

enum { N = FL_PROFILE_LR_RANKS * FL_PROFILE_LR_ROWS };

/* One real pass on a hand-made cache layout: a copy figure exactly when the kernels copy. */
static void test_pass(void **state) {
    (void)state;
    fl_profile p = two_core_profile();
    fl_lr_passes *lp = calloc(1, sizeof *lp);
    assert_non_null(lp);
    assert_int_equal(fl_profile_lowrank_pass(&p, lp), FL_OK);
    assert_int_equal(lp->n, 1);
    if (fl_kernels_get()->gx_in_place) assert_true(lp->copy[0] == 0.0);
    else assert_true(lp->copy[0] > 0.0 && isfinite(lp->copy[0]));
    for (int i = 0; i < N; i++) {
        assert_true(lp->proj[0][i] > 0.0 && isfinite(lp->proj[0][i]));
        for (int m = 0; m < 2; m++) assert_true(lp->panel[0][m][i] > 0.0 && isfinite(lp->panel[0][m][i]));
    }
    fl_profile_lowrank_apply(lp, &p);
    assert_true(p.gx_copy_seconds == lp->copy[0]);
    free(lp);
}

/* A profile whose copy figure is 0 prices no copy: one thread, nothing serial; split by blocks, the
 * sync alone. */
static void test_price_without_copy(void **state) {
    (void)state;
    fl_profile p = two_core_profile();
    for (int j = 0; j < FL_PROFILE_LR_RANKS; j++)
        for (int k = 0; k < FL_PROFILE_LR_ROWS; k++) {
            p.lr_proj_seconds[j][k] = 1e-9;
            p.lr_panel_seconds[FL_METHOD_SVD][j][k] = p.lr_panel_seconds[FL_METHOD_CP][j][k] = 5e-9;
        }
    assert_true(fl_cost_has_lowrank(&p));
    fl_lr_cost c;
    p.gx_copy_seconds = 0;
    fl_cost_lowrank_step(&p, FL_METHOD_SVD, 650, 650, 40, 20, 1, false, 0, &c);
    assert_true(c.serial == 0.0);
    fl_cost_lowrank_step(&p, FL_METHOD_CP, 650, 650, 40, 20, 2, false, 3e-6, &c);
    assert_true(c.serial == 3e-6);
    p.gx_copy_seconds = 1e-10; /* copying kernels: 20 rows of 16 H bytes */
    fl_cost_lowrank_step(&p, FL_METHOD_SVD, 650, 650, 40, 20, 1, false, 0, &c);
    assert_true(fabs(c.serial - 20 * 16.0 * 650 * 1e-10) < 1e-15);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pass),
        cmocka_unit_test(test_price_without_copy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
