/* Planner, measured verification (fl_plan_opts.verify > 0): the best candidates and the dense
 * model are timed for real, and the plan must choose and write the measured winner among them.
 * The model is tiny (hidden 16, sequences of 6) so the timing takes milliseconds; which candidate
 * wins is whatever this machine measures, so nothing here depends on a timing threshold: only on
 * the choice being consistent with the plan's own measurements. The interleaved rounds the plan
 * times its options in (fl_time_interleaved) are checked on a fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fastlstm/plan.h"
#include "internal.h"
#include "plan/plan_internal.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { VERIFY = 3 };

/* Gate matrices W (4H, n) = U V with U (4H, R), V (R, n) uniform: exactly rank R, so SVD and CP
 * candidates of low rank keep the deviation budget and the search has several to time. */
static void make_rank(fl_model *m, int R, uint64_t seed) {
    fl_rng r;
    fl_rng_seed(&r, seed);
    for (size_t i = 0; i < (size_t)2 * m->arch.layers; i++) {
        fl_mat *w = fl_model_mat(m, i);
        assert_int_equal(w->method, FL_METHOD_DENSE);
        const int rows = w->rows, n = w->cols;
        float *u = malloc(sizeof(float) * rows * R), *v = malloc(sizeof(float) * R * n);
        assert_non_null(u);
        assert_non_null(v);
        for (int k = 0; k < rows * R; k++) u[k] = fl_rng_uniform_range(&r, -1, 1);
        for (int k = 0; k < R * n; k++) v[k] = fl_rng_uniform_range(&r, -1, 1);
        const float scale = 2.0f / sqrtf((float)R * n);
        for (int a = 0; a < rows; a++)
            for (int b = 0; b < n; b++) {
                double s = 0;
                for (int k = 0; k < R; k++) s += (double)u[a * R + k] * v[k * n + b];
                w->w[(size_t)a * n + b] = scale * (float)s;
            }
        free(u);
        free(v);
    }
}

/* Methods and ranks of every matrix of m equal specs. */
static void assert_model_is(const fl_model *m, const fl_mat_spec *specs, const char *what) {
    for (size_t i = 0; i < fl_model_num_matrices(m); i++) {
        fl_matrix_info mi;
        assert_int_equal(fl_model_matrix_info(m, i, &mi), FL_OK);
        const int rank = specs[i].method == FL_METHOD_DENSE ? 0 : specs[i].rank;
        if (mi.method != specs[i].method || mi.rank != rank)
            fail_msg("%s: matrix %s is method %d rank %d, the measured winner has method %d rank %d", what, mi.name,
                     (int)mi.method, mi.rank, (int)specs[i].method, rank);
    }
}

static void test_verify_picks_measured_winner(void **state) {
    (void)state;
    fl_arch a = {.input = 8, .hidden = 16, .layers = 1, .head = FL_HEAD_LAST_STEP, .head_out = 3};
    fl_model *m = NULL;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 5), FL_OK);
    make_rank(m, 3, 9);
    fl_profile p;
    assert_int_equal(fl_profile_detect(&p), FL_OK); /* detected, not measured: fast */

    fl_plan_opts o = fl_plan_opts_default();
    o.batch = 1;
    o.seq = 6;
    o.max_dev = 0.05;
    o.dev_samples = 4;
    o.cp_max_iter = 30;
    o.verify = VERIFY; /* measurement on */
    o.verify_reps = 3;
    fl_plan *plan = NULL;
    fl_status st = fl_plan_create(m, &p, &o, &plan);
    if (st) fail_msg("fl_plan_create: %s: %s", fl_status_str(st), fl_last_error());

    /* The timed points: the input model (point 0) and up to VERIFY candidates within the budget. */
    const size_t n = fl_plan_num_points(plan), chosen = fl_plan_chosen(plan);
    assert_true(chosen < n);
    size_t timed = 0, win = n;
    for (size_t i = 0; i < n; i++) {
        const fl_plan_point *pt = fl_plan_point_at(plan, i);
        if (pt->measured_seconds < 0) continue;
        timed++;
        assert_true(isfinite(pt->measured_seconds) && pt->measured_seconds > 0);
        if (i > 0) assert_true(pt->meets_budget); /* only candidates within the budget are timed */
        if (pt->meets_budget && (win == n || pt->measured_seconds < fl_plan_point_at(plan, win)->measured_seconds))
            win = i;
        print_message("point %zu: predicted %.3g us, measured %.3g us, loss %.3g%s\n", i, pt->cost.seconds * 1e6,
                      pt->measured_seconds * 1e6, pt->loss, i == chosen ? "  <- chosen" : "");
    }
    assert_true(fl_plan_point_at(plan, 0)->measured_seconds > 0); /* the dense baseline is always timed */
    assert_true(timed >= 2);                                       /* at least one candidate against it */
    assert_true(timed <= VERIFY + 1);
    assert_true(win < n);
    if (chosen != win)
        fail_msg("chose point %zu (measured %.3g us), the measured winner is point %zu (%.3g us)", chosen,
                 fl_plan_point_at(plan, chosen)->measured_seconds * 1e6, win,
                 fl_plan_point_at(plan, win)->measured_seconds * 1e6);

    /* The plan's model, and the file written from it, are the winner's configuration. */
    const fl_mat_spec *specs = fl_plan_point_at(plan, win)->specs;
    assert_model_is(fl_plan_model(plan), specs, "fl_plan_model");
    assert_int_equal(tmp_dir_make("fl_test_plan_verify"), 0);
    const char *path = tmp_path("planned.safetensors");
    assert_int_equal(fl_model_save(fl_plan_model(plan), path), FL_OK);
    fl_model *back = NULL;
    assert_int_equal(fl_model_load(path, &back), FL_OK);
    assert_model_is(back, specs, "written plan");
    fl_model_free(back);
    assert_int_equal(tmp_dir_remove(), 0);

    fl_plan_free(plan);
    fl_model_free(m);
}

/* Threads planned (threads 0) with timing on: each layer's count is the plan's, recorded in the
 * chosen model and its file, whichever counts this machine measures fastest. */
static void test_verify_plans_layer_threads(void **state) {
    (void)state;
    fl_arch a = {.input = 8, .hidden = 16, .layers = 2, .head = FL_HEAD_LAST_STEP, .head_out = 3};
    fl_model *m = NULL;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 5), FL_OK);
    make_rank(m, 3, 9);
    fl_profile p;
    assert_int_equal(fl_profile_detect(&p), FL_OK);
    fl_plan_opts o = fl_plan_opts_default();
    o.seq = 6;
    o.dev_samples = 4;
    o.max_evals = 6;
    o.threads = 0;
    o.max_threads = 2;
    o.verify = 2;
    o.verify_reps = 3;
    fl_plan *plan = NULL;
    fl_status st = fl_plan_create(m, &p, &o, &plan);
    if (st) fail_msg("fl_plan_create: %s: %s", fl_status_str(st), fl_last_error());
    const fl_model *pm = fl_plan_model(plan);
    int most = 0;
    for (int l = 0; l < a.layers; l++) {
        const int t = fl_plan_layer_threads(plan, l);
        assert_true(t >= 1 && t <= 2);
        assert_int_equal(fl_model_planned_threads(pm, l), t);
        if (t > most) most = t;
    }
    assert_int_equal(fl_plan_threads(plan), most);
    assert_true(fl_plan_point_at(plan, fl_plan_chosen(plan))->measured_seconds > 0);
    assert_int_equal(tmp_dir_make("fl_test_plan_verify"), 0);
    const char *path = tmp_path("threads.safetensors");
    assert_int_equal(fl_model_save(pm, path), FL_OK);
    fl_model *back = NULL;
    assert_int_equal(fl_model_load(path, &back), FL_OK);
    for (int l = 0; l < a.layers; l++) assert_int_equal(fl_model_planned_threads(back, l), fl_plan_layer_threads(plan, l));
    fl_model_free(back);
    assert_int_equal(tmp_dir_remove(), 0);
    fl_plan_free(plan);
    fl_model_free(m);
}

/* A fake clock for fl_time_interleaved: option j takes base[j], times `slow` on the calls in
 * [spell0, spell1) (a spell of the machine's slow speed); fail_at: the call that fails (-1: none). */
typedef struct fake_clock {
    double base[4], slow;
    int spell0, spell1, calls, fail_at;
    int order[64];
} fake_clock;

static fl_status fake_time(void *ctx, int j, double *s) {
    fake_clock *c = ctx;
    if (c->calls == c->fail_at) return fl_fail(FL_ERR_NOMEM, "fake clock: call %d fails", c->calls);
    const bool spell = c->calls >= c->spell0 && c->calls < c->spell1;
    c->order[c->calls++] = j;
    *s = c->base[j] * (spell ? c->slow : 1.0);
    return FL_OK;
}

/* Rounds alternate the order; option 0's figure is the median of its rounds, the others' that times
 * their median paired ratio to it. A spell of the slow speed over the first two of five rounds, or
 * over the last five calls (which slows three of option 1's rounds and two of option 0's: their plain
 * medians would put option 1 behind, 1.215 against 1.0, as would blocks of five runs each), leaves
 * the faster option ahead by its own ratio, 0.9; a failing timing is returned; bad counts are
 * refused. */
static void test_interleaved_rounds(void **state) {
    (void)state;
    fake_clock c = {.base = {1.0, 0.9, 1.2}, .slow = 1.0, .fail_at = -1};
    double out[3];
    assert_int_equal(fl_time_interleaved(3, 4, fake_time, &c, out), FL_OK);
    const int order[12] = {0, 1, 2, 2, 1, 0, 0, 1, 2, 2, 1, 0};
    assert_int_equal(c.calls, 12);
    for (int i = 0; i < 12; i++) assert_int_equal(c.order[i], order[i]);
    c = (fake_clock){.base = {1.0, 0.9}, .slow = 1.35, .spell0 = 0, .spell1 = 4, .fail_at = -1};
    assert_int_equal(fl_time_interleaved(2, 5, fake_time, &c, out), FL_OK);
    assert_true(out[0] == 1.0 && fabs(out[1] - 0.9) < 1e-12);
    c = (fake_clock){.base = {1.0, 0.9}, .slow = 1.35, .spell0 = 5, .spell1 = 10, .fail_at = -1};
    assert_int_equal(fl_time_interleaved(2, 5, fake_time, &c, out), FL_OK);
    assert_true(out[0] == 1.0 && fabs(out[1] - 0.9) < 1e-12);
    c = (fake_clock){.base = {1.0, 0.9}, .slow = 1.0, .fail_at = 3};
    assert_int_equal(fl_time_interleaved(2, 5, fake_time, &c, out), FL_ERR_NOMEM);
    assert_int_equal(c.calls, 3);
    assert_int_equal(fl_time_interleaved(0, 5, fake_time, &c, out), FL_ERR_ARG);
    assert_int_equal(fl_time_interleaved(2, 65, fake_time, &c, out), FL_ERR_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_interleaved_rounds),
        cmocka_unit_test(test_verify_picks_measured_winner),
        cmocka_unit_test(test_verify_plans_layer_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
