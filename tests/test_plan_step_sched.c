/* Planner, the step schedule (plan_threads.c): with timing on, where some layer splits its steps over
 * N >= 2 threads and the serving batch has B >= 2 N rows, the chosen candidate is timed by rows and by
 * blocks, the progress names both timings, and the chosen model (and its file) records the one kept.
 * Which one wins is whatever this machine measures: nothing here depends on it, only on the record
 * being one of the two and agreeing with the progress. Without timing, on one thread, below 2 rows per
 * thread, or for an LSTMP model (never by rows), nothing is recorded. */
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
    const fl_step_sched ss = fl_model_planned_step_sched(fl_plan_model(plan));
    if (ss != FL_STEP_ROWS && ss != FL_STEP_BLOCKS) fail_msg("no step schedule recorded; progress:\n%s", log->text);
    char want[64];
    snprintf(want, sizeof want, "step schedule: %s kept (", fl_step_sched_name(ss));
    const char *line = strstr(log->text, want);
    if (!line) fail_msg("expected \"%s\" in the progress:\n%s", want, log->text);
    double rows = -1, blocks = -1;
    const char *at = strstr(line, " kept ("); /* the timings follow */
    const char *r = strstr(at, ": rows "), *b = strstr(at, ", blocks ");
    assert_true(r && b && r < strchr(line, '\n') && b < strchr(line, '\n'));
    if (sscanf(r, ": rows %lf us/step", &rows) != 1 || sscanf(b, ", blocks %lf us/step", &blocks) != 1)
        fail_msg("no timings in the progress:\n%s", log->text);
    assert_true(rows > 0 && blocks > 0);
    assert_true(ss == FL_STEP_ROWS ? rows <= blocks : blocks <= rows); /* as printed (%.3g): a near tie may round equal */
    const char *path = tmp_path("planned.st");
    assert_int_equal(fl_model_save(fl_plan_model(plan), path), FL_OK);
    fl_model *back = NULL;
    assert_int_equal(fl_model_load(path, &back), FL_OK);
    assert_int_equal(fl_model_planned_step_sched(back), ss);
    fl_model_free(back);
}

static void check_none(const fl_plan *plan, const sched_log *log, const char *what) {
    if (fl_model_planned_step_sched(fl_plan_model(plan)) != FL_STEP_AUTO || log->n)
        fail_msg("%s: a step schedule recorded or timed:\n%s", what, log->text);
}

/* A count given (2) with 2 or more rows per thread, uni- and bidirectional: timed on both, recorded. */
static void test_given_threads(void **state) {
    (void)state;
    fl_model *uni = sched_model(0, 0), *bi = sched_model(1, 0);
    static const int batches[] = {4, 5};
    for (int k = 0; k < 2; k++) {
        sched_log log = {.filter = "step schedule"};
        fl_plan *plan = sched_plan(uni, 2, batches[k], 2, &log);
        check_recorded(plan, &log);
        assert_non_null(strstr(log.text, "at its given threads"));
        fl_plan_free(plan);
    }
    /* a bidirectional layer's directions on 2 threads: one thread each on the parallel schedule */
    sched_log log = {.filter = "step schedule"};
    fl_plan *plan = sched_plan(bi, 2, 4, 2, &log);
    if (fl_model_planned_bidir_sched(fl_plan_model(plan)) == FL_BIDIR_SERIAL) check_recorded(plan, &log);
    else check_none(plan, &log, "bidirectional, parallel schedule on 2 threads");
    fl_plan_free(plan);
    log = (sched_log){.filter = "step schedule"};
    plan = sched_plan(bi, 4, 8, 2, &log); /* 2 or 4 threads a direction: B 8 has 2 rows each */
    check_recorded(plan, &log);
    fl_plan_free(plan);
    fl_model_free(uni);
    fl_model_free(bi);
}

/* Threads planned: recorded exactly when the counts kept split some layer with B >= 2 N. */
static void test_planned_threads(void **state) {
    (void)state;
    fl_model *m = sched_model(0, 0);
    static const int batches[] = {1, 4, 16};
    for (int k = 0; k < 3; k++) {
        sched_log log = {.filter = "step schedule"};
        fl_plan *plan = sched_plan(m, 0, batches[k], 2, &log);
        bool splits = false;
        for (int l = 0; l < 2; l++) {
            const int n = fl_plan_layer_threads(plan, l);
            splits |= n >= 2 && batches[k] >= 2 * n;
        }
        if (splits) check_recorded(plan, &log);
        else check_none(plan, &log, "planned threads, no layer split with 2 rows per thread");
        fl_plan_free(plan);
    }
    fl_model_free(m);
}

/* Nothing measured, 1 thread, fewer than 2 rows per thread, or an LSTMP model: none recorded. */
static void test_not_recorded(void **state) {
    (void)state;
    fl_model *uni = sched_model(0, 0), *lstmp = sched_model(0, 16);
    const struct {
        const fl_model *m;
        int threads, batch, verify;
        const char *what;
    } cases[] = {{uni, 2, 4, 0, "not timing"}, {uni, 1, 4, 2, "1 thread"}, {uni, 2, 3, 2, "3 rows on 2 threads"},
                 {lstmp, 2, 4, 2, "LSTMP"}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        sched_log log = {.filter = "step schedule"};
        fl_plan *plan = sched_plan(cases[k].m, cases[k].threads, cases[k].batch, cases[k].verify, &log);
        check_none(plan, &log, cases[k].what);
        fl_plan_free(plan);
    }
    fl_model_free(uni);
    fl_model_free(lstmp);
}

static int setup(void **state) {
    (void)state;
    return tmp_dir_make("fl_plan_step_sched");
}

static int teardown(void **state) {
    (void)state;
    return tmp_dir_remove();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_given_threads),
        cmocka_unit_test(test_planned_threads),
        cmocka_unit_test(test_not_recorded),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
