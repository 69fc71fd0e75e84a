/* Planner, the schedule of bidirectional layers (plan_threads.c): with timing on and a layer on 2
 * threads, the chosen candidate is timed on both schedules, the progress names both timings, and the
 * chosen model (and its file) records the one kept. Which one wins is whatever this machine
 * measures: nothing here depends on it, only on the record being one of the two and agreeing with the
 * progress. Without timing, or for a unidirectional model, nothing is recorded (parallel). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fastlstm/plan.h"
#include "internal.h"
#include "testutil.h"
#include "plan_sched_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The progress line of the kept schedule names it and both timings; the model and its file carry it. */
static void check_recorded(const fl_plan *plan, const sched_log *log) {
    const fl_bidir_sched bs = fl_model_planned_bidir_sched(fl_plan_model(plan));
    assert_true(bs == FL_BIDIR_PARALLEL || bs == FL_BIDIR_SERIAL);
    const char *line = strstr(log->text, "bidirectional schedule: ");
    if (!line) fail_msg("no schedule line in the progress:\n%s", log->text);
    char want[64];
    snprintf(want, sizeof want, "bidirectional schedule: %s kept", fl_bidir_sched_name(bs));
    if (strncmp(line, want, strlen(want))) fail_msg("expected \"%s\" in the progress:\n%s", want, log->text);
    const char *end = strchr(line, '\n');
    double ser = -1, par = -1;
    const char *at = strstr(line, " kept (at "); /* the timings follow */
    assert_true(at && at < end);
    const char *s = strstr(at, ": serial "), *p = strstr(at, ", parallel ");
    assert_true(s && p && s < end && p < end);
    if (sscanf(s, ": serial %lf us/step", &ser) != 1 || sscanf(p, ", parallel %lf us/step", &par) != 1)
        fail_msg("no timings in the progress:\n%s", log->text);
    assert_true(ser > 0 && par > 0);
    assert_true(bs == FL_BIDIR_SERIAL ? ser <= par : par <= ser); /* as printed (%.3g): a near tie may round equal */
    const char *path = tmp_path("planned.st");
    assert_int_equal(fl_model_save(fl_plan_model(plan), path), FL_OK);
    fl_model *back = NULL;
    assert_int_equal(fl_model_load(path, &back), FL_OK);
    assert_int_equal(fl_model_planned_bidir_sched(back), bs);
    fl_model_free(back);
}

/* Threads planned, timing on: every uniform count from 2 splits a layer, so both schedules are timed. */
static void test_planned_threads(void **state) {
    (void)state;
    fl_model *m = sched_model(1, 0);
    sched_log log = {.filter = "bidirectional"};
    fl_plan *plan = sched_plan(m, 0, 2, 2, &log);
    check_recorded(plan, &log);
    fl_plan_free(plan);
    fl_model_free(m);
}

/* A count given (2): the chosen candidate is timed on both schedules at it. */
static void test_given_threads(void **state) {
    (void)state;
    fl_model *m = sched_model(1, 0);
    sched_log log = {.filter = "bidirectional"};
    fl_plan *plan = sched_plan(m, 2, 2, 2, &log);
    check_recorded(plan, &log);
    assert_non_null(strstr(log.text, "chosen candidate at its given threads, bidirectional schedule parallel: "));
    fl_plan_free(plan);
    fl_model_free(m);
}

/* Nothing measured, 1 thread, or a unidirectional model: no schedule recorded, none in the progress. */
static void test_not_measured(void **state) {
    (void)state;
    fl_model *bi = sched_model(1, 0), *uni = sched_model(0, 0);
    const struct {
        const fl_model *m;
        int threads, verify;
    } cases[] = {{bi, 0, 0}, {bi, 1, 2}, {uni, 0, 2}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        sched_log log = {.filter = "bidirectional"};
        fl_plan *plan = sched_plan(cases[k].m, cases[k].threads, 2, cases[k].verify, &log);
        assert_int_equal(fl_model_planned_bidir_sched(fl_plan_model(plan)), FL_BIDIR_AUTO);
        assert_null(strstr(log.text, "bidirectional schedule"));
        fl_plan_free(plan);
    }
    fl_model_free(bi);
    fl_model_free(uni);
}

static int setup(void **state) {
    (void)state;
    return tmp_dir_make("fl_plan_bidir_sched");
}

static int teardown(void **state) {
    (void)state;
    return tmp_dir_remove();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_planned_threads),
        cmocka_unit_test(test_given_threads),
        cmocka_unit_test(test_not_measured),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
