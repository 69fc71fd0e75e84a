/* Cost model: a layer's steps by rows (session.c's FL_STEP_AUTO rule, fl_rows_auto in
 * tuning_consts.h, which the model calls too): on N threads each thread runs one thread's step on
 * its ceil(B / N) rows with the whole W_hh, no sync per step; else by blocks. Hand profiles against
 * hand-computed terms; nothing here is timed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fastlstm/plan.h"
#include "internal.h"
#include "plan/plan_internal.h"
#include "tuning_consts.h"
#include "testutil.h"
#include "flat_profile.h"

/* The flat profile on 2 cores with an 8 MiB private level (usable 6 MiB a thread: a W_hh of H 256,
 * 1 MiB, fits; one of H 1500, 36 MB, does not). */
static fl_profile hand_profile(void) {
    fl_profile p = flat_profile();
    p.cores = 2;
    p.level[0].bytes = 8u << 20;
    return p;
}

/* One unidirectional layer of hidden H (input 4, proj P), W_ih dense, W_hh of method m at `rank`:
 * W_hh's term and the cost at batch b on `threads`. */
static fl_cost_term hh_term_m(const fl_profile *p, int H, int P, fl_method m, int rank, int b, int threads,
                              fl_cost *c) {
    const fl_arch arch = {.input = 4, .hidden = H, .layers = 1, .head = FL_HEAD_NONE, .proj = P};
    const fl_mat_spec specs[3] = {{FL_METHOD_DENSE, 0}, {m, rank}, {FL_METHOD_DENSE, 0}}; /* W_ih, W_hh, W_hr */
    fl_cost_term t[3];
    assert_int_equal(fl_cost_predict_terms(p, &arch, specs, b, 10, threads, c, t), FL_OK);
    return t[1];
}

/* The same, all dense. */
static fl_cost_term hh_term(const fl_profile *p, int H, int P, int b, int threads, fl_cost *c) {
    return hh_term_m(p, H, P, FL_METHOD_DENSE, 0, b, threads, c);
}

static double hh_flops(int H, int P) {
    fl_mat w = {.method = FL_METHOD_DENSE, .rows = 4 * H, .cols = P > 0 ? P : H};
    return (double)fl_mat_flops(&w);
}

static void assert_rel(double a, double b) { assert_true(fabs(a - b) <= 1e-9 * fabs(b)); }

/* The shared rule: B >= 2 N, SVD / CP W_hh <= 8 MiB (dense: B >= 32 N, up to FL_ROWS_MAX_DENSE_BYTES,
 * 1 MiB), W_hh x B >= FL_MIN_PARALLEL_BYTES, N >= 2. */
static void test_rule(void **state) {
    (void)state;
    const double svd = 4.0 * 32 * (1024 + 256), h256 = 4.0 * 1024 * 256, h1500 = 4.0 * 6000 * 1500;
    assert_true(fl_rows_auto(20, 2, svd, false));
    assert_true(fl_rows_auto(4, 2, 2 * svd, false));
    assert_false(fl_rows_auto(3, 2, svd, false));
    assert_false(fl_rows_auto(2, 2, svd, false));
    assert_false(fl_rows_auto(20, 1, svd, false));
    assert_false(fl_rows_auto(20, 2, h1500, false));
    assert_true(fl_rows_auto(20, 2, FL_ROWS_MAX_WHH_BYTES, false));
    assert_false(fl_rows_auto(20, 2, FL_ROWS_MAX_WHH_BYTES + 4.0, false));
    assert_false(fl_rows_auto(20, 2, FL_ROWS_MAX_DENSE_BYTES + 4.0, true));
    assert_false(fl_rows_auto(20, 2, h256, true)); /* dense at 10 rows a thread: blocks (session.c) */
    assert_true(fl_rows_auto(64, 2, h256, true));   /* 32 rows a thread, 1 MiB: rows */
    assert_false(fl_rows_auto(63, 2, h256, true));
    assert_false(fl_rows_auto(256, 2, 4.0 * 1040 * 260, true)); /* H 260: over 1 MiB */
    assert_false(fl_rows_auto(4, 2, 64.0 * 1024, false)); /* 256 KiB a step: below the parallel bytes */
    assert_true(fl_rows_auto(8, 2, 64.0 * 1024, false));
}

/* H 256 with an SVD W_hh of rank 32 at B 20 on 2 threads runs by rows: W_hh's term is one thread's
 * step at 10 rows, the cell update that of 10 rows on one thread. */
static void test_rows_is_one_thread_at_half_batch(void **state) {
    (void)state;
    fl_profile p = hand_profile();
    fl_cost c2, c1;
    const fl_cost_term t2 = hh_term_m(&p, 256, 0, FL_METHOD_SVD, 32, 20, 2, &c2),
                       t1 = hh_term_m(&p, 256, 0, FL_METHOD_SVD, 32, 10, 1, &c1);
    assert_int_equal(t2.threads, 2);
    assert_rel(t2.mem_seconds, t1.mem_seconds);
    assert_rel(t2.compute_seconds, t1.compute_seconds);
    assert_rel(t1.mem_seconds, 4.0 * 32 * (1024 + 256) / 100.0);
    /* the cell update: 10 rows x H at the 10-row figure, not 20 rows halved at the 20-row one */
    p.cell_seconds = 1e-3, p.cell_seconds_b1 = 4e-3;
    fl_cost cc;
    hh_term_m(&p, 256, 0, FL_METHOD_SVD, 32, 20, 2, &cc);
    assert_rel(cc.seconds - c2.seconds, 10.0 * 256 * fl_cost_cell_seconds(&p, 10));
    assert_true(fl_cost_cell_seconds(&p, 10) > fl_cost_cell_seconds(&p, 20));
}

/* By blocks: the W_hh split across both threads (its bytes at the 2-thread rate, the flop rate
 * scaled by 2), as before the rows schedule. */
static void assert_blocks(const fl_cost_term *t, double bytes, double bw2, int b, double nf) {
    assert_int_equal(t->threads, 2);
    assert_rel(t->mem_seconds, bytes / bw2);
    const double r = b * 30.0 > 1000.0 ? 1000.0 : b * 30.0;
    assert_rel(t->compute_seconds, b * nf / (2.0 * r));
}

static void test_blocks_cases(void **state) {
    (void)state;
    const fl_profile p = hand_profile();
    fl_cost c;
    /* H 1500: W_hh 36 MB > 8 MiB, from DRAM at 10 (1 + 0.75) B/s on 2 threads */
    fl_cost_term t = hh_term(&p, 1500, 0, 20, 2, &c);
    assert_blocks(&t, 4.0 * 6000 * 1500, 17.5, 20, hh_flops(1500, 0));
    /* dense H 256 at B 20: blocks (the rule takes no dense W_hh) */
    t = hh_term(&p, 256, 0, 20, 2, &c);
    assert_blocks(&t, 4.0 * 1024 * 256, 200.0, 20, hh_flops(256, 0));
    /* B 2 on 2 threads: one row a thread, below FL_ROWS_MIN_PER_THREAD */
    t = hh_term(&p, 256, 0, 2, 2, &c);
    assert_blocks(&t, 4.0 * 1024 * 256, 200.0, 2, hh_flops(256, 0));
    /* LSTMP (proj 128): the runtime runs it by blocks whatever the batch */
    t = hh_term(&p, 256, 128, 20, 2, &c);
    assert_blocks(&t, 4.0 * 1024 * 128, 200.0, 20, hh_flops(256, 128));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rule),
        cmocka_unit_test(test_rows_is_one_thread_at_half_batch),
        cmocka_unit_test(test_blocks_cases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
