/* Cost model: the input projections and the measured speed-ups on two threads. An f32 SVD W_ih
 * runs packed as two products (t = x V^T, gx = t U^T), an f32 CP W_ih as five (z = x C, then
 * zs[:, g] B^T per gate), each split across the threads by the dense rule on its own multiply-adds
 * (fl_rec_input_ws, recurrent.c), where the model had them on one thread; a measured speed-up above the thread count is held at the count; a compute-bound split
 * projection (>= 64 rows) takes the larger of the profile's two measurements of its speed-up. Hand
 * profiles against hand-computed terms; nothing here is timed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fastlstm/plan.h"
#include "internal.h"
#include "testutil.h"
#include "flat_profile.h"

/* One private level of 1 MiB at 1e6 B/s (every weight here fits; streaming terms are small),
 * DRAM 10 B/s; mat-vec 100 flop/s, sgemm 1000; projections at 1000 flop/s at every row count;
 * speed-ups measured at 2 threads (set per test); no cell, bias or overhead terms. */
static fl_profile hand_profile(void) {
    fl_profile p = flat_profile();
    p.cores = 2;
    p.level[0].bandwidth = 1e6;
    p.gemv_flops = 100.0;
    p.curve_all_threads = 2;
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) p.gemm_rows_flops[k] = 1000.0;
    return p;
}

/* input 4, hidden 16, one layer: W_ih (64, 4) is matrix 0, W_hh (64, 16) matrix 1 */
static const fl_arch arch = {.input = 4, .hidden = 16, .layers = 1, .head = FL_HEAD_NONE};

/* Term i of a prediction with W_ih as `m` at `rank` (W_hh dense), batch b, seq T, on `threads`. */
static fl_cost_term term(const fl_profile *p, size_t i, fl_method m, int rank, int b, int T, int threads) {
    fl_mat_spec specs[2] = {{m, rank}, {FL_METHOD_DENSE, 0}};
    fl_cost c;
    fl_cost_term t[2];
    assert_int_equal(fl_cost_predict_terms(p, &arch, specs, b, T, threads, &c, t), FL_OK);
    return t[i];
}

/* SVD W_ih at rank 2 over n = 64 rows (batch 1, seq 64): stage 1 (t = x V^T) 64 x 2 x 4 = 512
 * multiply-adds, 16 flops per step; stage 2 (gx = t U^T) 64 x 64 x 2 = 8192, 256 flops per step;
 * 272 flops per step at 1000 flop/s on one thread. With the split threshold between the stages only
 * stage 2 splits (speed-up 2): 16 / 1000 + 256 / 2000; above both, neither; below both, both. A CP
 */
static void test_svd_input_split(void **state) {
    (void)state;
    fl_profile p = hand_profile();
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) p.thread_scale_proj[k] = 2.0;
    p.parallel_proj_macs = 1000;
    fl_cost_term one = term(&p, 0, FL_METHOD_SVD, 2, 1, 64, 1), two = term(&p, 0, FL_METHOD_SVD, 2, 1, 64, 2);
    assert_int_equal(one.threads, 1);
    assert_close(one.compute_seconds, 272 / 1000.0, 1e-12);
    assert_int_equal(two.threads, 2);
    assert_close(two.compute_seconds, 16 / 1000.0 + 256 / 2000.0, 1e-12);
    p.parallel_proj_macs = 10000; /* neither stage is large enough */
    two = term(&p, 0, FL_METHOD_SVD, 2, 1, 64, 2);
    assert_int_equal(two.threads, 1);
    assert_close(two.compute_seconds, 272 / 1000.0, 1e-12);
    p.parallel_proj_macs = 100; /* both */
    two = term(&p, 0, FL_METHOD_SVD, 2, 1, 64, 2);
    assert_int_equal(two.threads, 2);
    assert_close(two.compute_seconds, 272 / 2000.0, 1e-12);
    /* the efficiency still scales both stages */
    p.gemm_efficiency[FL_METHOD_SVD] = 0.5;
    assert_close(term(&p, 0, FL_METHOD_SVD, 2, 1, 64, 2).compute_seconds, 272 / 1000.0, 1e-12);
}

/* The same SVD W_ih under the rule for sleeping workers (wake_proj_macs): a projection below it in
 * all (its two products: 512 + 8192 multiply-adds) runs on one thread whatever parallel_proj_macs
 * says (fl_rec_input_ws, fl_pool_run_if_awake), one above it as before, each product by
 * parallel_proj_macs (stage 1 too, though alone it is below the wake rule); the recurrent step
 * (matrix 1) is not a projection and keeps its split. */
static void test_svd_input_asleep(void **state) {
    (void)state;
    fl_profile p = hand_profile();
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) p.thread_scale_proj[k] = 2.0;
    p.parallel_proj_macs = 100; /* both stages would split */
    p.wake_proj_macs = 1000;    /* under the projection's 8704, above stage 1's 512: both split */
    fl_cost_term two = term(&p, 0, FL_METHOD_SVD, 2, 1, 64, 2);
    assert_int_equal(two.threads, 2);
    assert_close(two.compute_seconds, 272 / 2000.0, 1e-12);
    p.wake_proj_macs = 10000; /* over it: both alone */
    two = term(&p, 0, FL_METHOD_SVD, 2, 1, 64, 2);
    assert_int_equal(two.threads, 1);
    assert_close(two.compute_seconds, 272 / 1000.0, 1e-12);
    p.parallel_step_bytes = 1; /* W_hh's step splits under its own rule */
    assert_int_equal(term(&p, 1, FL_METHOD_SVD, 2, 1, 64, 2).threads, 2);
    fl_profile dense = hand_profile(); /* a dense W_ih of 64 x 64 x 4 = 16384 multiply-adds */
    dense.parallel_proj_macs = 100;
    dense.wake_proj_macs = 20000;
    assert_int_equal(term(&dense, 0, FL_METHOD_DENSE, 0, 1, 64, 2).threads, 1);
    dense.wake_proj_macs = 10000;
    assert_int_equal(term(&dense, 0, FL_METHOD_DENSE, 0, 1, 64, 2).threads, 2);
}

/* CP W_ih at rank 2 over n = 64 rows (batch 1, seq 64), packed since session 11: stage 1 (z = x C)
 * 64 x 2 x 4 = 512 multiply-adds, then one product per gate (zs[:, g] B^T) of 64 x 16 x 2 = 2048
 * each, every product split by the rule on its own multiply-adds; 280 flops per step (16 + the
 * scaling's 8 + 256). Threshold 1000: the gates split, stage 1 does not; 3000: none (where the
 * whole second stage, 8192, would have split), 100: all. (Until session 11 a CP W_ih ran on BLAS
 * and was priced on one thread whatever the rule.) */
static void test_cp_input_split(void **state) {
    (void)state;
    fl_profile p = hand_profile();
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) p.thread_scale_proj[k] = 2.0;
    p.parallel_proj_macs = 1000;
    const fl_cost_term one = term(&p, 0, FL_METHOD_CP, 2, 1, 64, 1);
    assert_int_equal(one.threads, 1);
    assert_close(one.compute_seconds, 280 / 1000.0, 1e-12);
    fl_cost_term two = term(&p, 0, FL_METHOD_CP, 2, 1, 64, 2);
    assert_int_equal(two.threads, 2);
    assert_close(two.compute_seconds, 280 * (512 / 1000.0 + 8192 / 2000.0) / 8704.0, 1e-12);
    p.parallel_proj_macs = 3000;
    two = term(&p, 0, FL_METHOD_CP, 2, 1, 64, 2);
    assert_int_equal(two.threads, 1);
    assert_close(two.compute_seconds, 280 / 1000.0, 1e-12);
    p.parallel_proj_macs = 100;
    two = term(&p, 0, FL_METHOD_CP, 2, 1, 64, 2);
    assert_int_equal(two.threads, 2);
    assert_close(two.compute_seconds, 280 / 2000.0, 1e-12);
}

/* A measured speed-up above the thread count (thread_scale_rec 6 at 4 rows on 2 threads: a
 * two-thread time less the split's sync that came out near 0) is held at 2: a dense W_hh at batch 8
 * computes its 8 x 2048 flops at 8 x 100 flop/s x 2, not x 6. */
static void test_scale_held_at_threads(void **state) {
    (void)state;
    fl_profile p = hand_profile();
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) p.thread_scale_rec[k] = 6.0;
    const fl_cost_term t = term(&p, 1, FL_METHOD_DENSE, 0, 8, 64, 2);
    assert_int_equal(t.threads, 2);
    assert_close(t.compute_seconds, 8 * 2048 / 1600.0, 1e-12);
    /* below the count it is used as measured */
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) p.thread_scale_rec[k] = 1.25;
    assert_close(term(&p, 1, FL_METHOD_DENSE, 0, 8, 64, 2).compute_seconds, 8 * 2048 / 1000.0, 1e-12);
}

/* A dense W_ih (64, 4: 512 flops a row) split on 2 threads. The profile measured its speed-up on a
 * W_ih held by the last level (1.5 at 4 and 16 rows, 1.0 at 64 and 256) and on one from memory
 * (1.2, 1.2, 1.9, 1.9). Held (this W_ih is 1 KiB): 1.5 at 16 rows; at 256 rows (compute-bound
 * wherever W lives) the larger, 1.9. Without the memory table, the level's 1.0 as before. */
static void test_proj_scale_compute_bound(void **state) {
    (void)state;
    fl_profile p = hand_profile();
    p.parallel_proj_macs = 1;
    const double held[4] = {1.5, 1.5, 1.0, 1.0}, mem[4] = {1.2, 1.2, 1.9, 1.9};
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) p.thread_scale_proj[k] = held[k];
    fl_profile old = p;
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) p.thread_scale_proj_mem[k] = mem[k];
    assert_close(term(&p, 0, FL_METHOD_DENSE, 0, 1, 16, 2).compute_seconds, 512 / 1500.0, 1e-12);
    assert_close(term(&p, 0, FL_METHOD_DENSE, 0, 4, 64, 2).compute_seconds, 4 * 512 / 1900.0, 1e-12);
    assert_close(term(&old, 0, FL_METHOD_DENSE, 0, 4, 64, 2).compute_seconds, 4 * 512 / 1000.0, 1e-12);
    /* the larger figure is the level's where that one is larger */
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) p.thread_scale_proj[k] = 1.95;
    assert_close(term(&p, 0, FL_METHOD_DENSE, 0, 4, 64, 2).compute_seconds, 4 * 512 / 1950.0, 1e-12);
    /* one thread: no speed-up at all */
    assert_close(term(&p, 0, FL_METHOD_DENSE, 0, 4, 64, 1).compute_seconds, 4 * 512 / 1000.0, 1e-12);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_svd_input_split),
        cmocka_unit_test(test_svd_input_asleep),
        cmocka_unit_test(test_cp_input_split),
        cmocka_unit_test(test_scale_held_at_threads),
        cmocka_unit_test(test_proj_scale_compute_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
