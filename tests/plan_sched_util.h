/* Shared by the planner's schedule tests (test_plan_bidir_sched.c, test_plan_step_sched.c): a small
 * 2-layer model, a plan of it on the fake two-core profile with timing on or off, and the plan's progress
 * messages that name a schedule, kept whole. */
#ifndef FL_TEST_PLAN_SCHED_UTIL_H
#define FL_TEST_PLAN_SCHED_UTIL_H

#include "flat_profile.h"

#include <stdio.h>
#include <string.h>

/* The progress messages that contain `filter`, kept whole (the search's other lines, one per
 * candidate, could fill any fixed buffer). */
typedef struct sched_log {
    const char *filter;
    char text[16384];
    size_t n;
} sched_log;

static inline void sched_on_progress(void *ctx, const char *msg) {
    sched_log *b = ctx;
    if (!strstr(msg, b->filter)) return;
    int k = snprintf(b->text + b->n, sizeof b->text - b->n, "%s\n", msg);
    assert_true(k > 0 && (size_t)k < sizeof b->text - b->n); /* never truncated */
    b->n += (size_t)k;
}

/* input 8, hidden 48, 2 layers, a 3-class last-step head; proj > 0: LSTMP. */
static inline fl_model *sched_model(int bidirectional, int proj) {
    fl_arch a = {.input = 8, .hidden = 48, .layers = 2, .bidirectional = bidirectional, .proj = proj,
                 .head = FL_HEAD_LAST_STEP, .head_out = 3};
    fl_model *m = NULL;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 5), FL_OK);
    return m;
}

/* Plan m at `threads` (0: planned, up to 2), `batch`, seq 6, no CP; verify 0: nothing timed. */
static inline fl_plan *sched_plan(const fl_model *m, int threads, int batch, int verify, sched_log *log) {
    fl_profile p = two_core_profile();
    fl_plan_opts o = fl_plan_opts_default();
    o.seq = 6;
    o.batch = batch;
    o.dev_samples = 2;
    o.max_evals = 3;
    o.allow_cp = 0;
    o.threads = threads;
    o.max_threads = 2;
    o.verify = verify;
    o.verify_reps = 3;
    o.progress = sched_on_progress;
    o.progress_ctx = log;
    fl_plan *plan = NULL;
    fl_status st = fl_plan_create(m, &p, &o, &plan);
    if (st) fail_msg("fl_plan_create: %s: %s", fl_status_str(st), fl_last_error());
    return plan;
}

#endif
