/* Planner, cost model and machine profile: the roofline arithmetic of fl_cost_predict against
 * hand-computed values on hand-written profiles, and the profile JSON round trip and overrides.
 * Nothing here is measured. (The search itself: test_plan.c; measured verification:
 * test_plan_verify.c.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fastlstm/plan.h"
#include "internal.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ cost model */

static fl_profile hand_profile(size_t cache, int shared) {
    fl_profile p = {0};
    p.cores = 2;
    p.simd_bits = 256;
    p.n_levels = 1;
    p.level[0] = (fl_cache_level){.level = 3, .bytes = cache, .shared_cpus = shared, .bandwidth = 100.0};
    p.dram_bandwidth = 10.0;
    p.gemm_flops = 1000.0;
    p.gemv_flops = 30.0;
    p.step_overhead = 0.5;
    return p;
}

static void test_cost_dense_in_cache(void **state) {
    (void)state;
    /* input 3, hidden 2, 1 layer, per-step head of 5: W_ih 8x3, W_hh 8x2, head 5x2. batch 2, seq 4. */
    fl_arch a = {.input = 3, .hidden = 2, .layers = 1, .head = FL_HEAD_PER_STEP, .head_out = 5};
    fl_profile p = hand_profile(1000, 2);
    fl_cost c;
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 2, 4, 1, &c), FL_OK);
    assert_int_equal(c.params, 24 + 16 + 10);
    assert_int_equal(c.working_set, 64); /* W_hh: 16 floats */
    assert_int_equal(c.level, 0);
    assert_int_equal(c.regime, FL_REGIME_COMPUTE);
    /* recurrent: 64 B at 100 B/s = 0.64 s; 2 rows x 32 flop = 64 flop at min(1000, 2*30) = 60 -> 1.0667
     * amortised: (24+10)*4/4 = 34 B at 100 -> 0.34; 2*48 + 2*20 = 136 flop at min(1000, 8*30) = 240 */
    assert_close(c.step_bytes, 64.0 + 34.0, 1e-12);
    assert_close(c.step_flops, 64.0 + 136.0, 1e-12);
    assert_close(c.mem_seconds, 0.64 + 0.34, 1e-12);
    assert_close(c.compute_seconds, 64.0 / 60 + 136.0 / 240, 1e-12);
    assert_close(c.seconds, 64.0 / 60 + 136.0 / 240 + 0.5, 1e-12);

    /* With measured GEMM rates at 4, 16, 64, 256 rows, the input projection (seq 16 x batch 2 = 32
     * rows) runs at the log-linear interpolation between 16 and 64 rows: 160 + 0.5 * (320 - 160). */
    double g[4] = {40, 160, 320, 640};
    memcpy(p.gemm_rows_flops, g, sizeof g);
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 2, 16, 1, &c), FL_OK);
    /* amortised: 34*4/16 = 8.5 B at 100; 2*48 + 2*20 = 136 flop at 240 */
    assert_close(c.seconds, 64.0 / 60 + 136.0 / 240 + 0.5, 1e-12);
    assert_close(c.mem_seconds, 0.64 + 8.5 / 100, 1e-12);
    /* seq 1: 2 rows, below the table: 40 * 2 / 4 = 20 flop/s */
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 2, 1, 1, &c), FL_OK);
    assert_close(c.compute_seconds, 64.0 / 60 + 136.0 / 20, 1e-12);
    /* seq 200 (400 rows): the 256-row rate */
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 2, 200, 1, &c), FL_OK);
    assert_close(c.compute_seconds, 64.0 / 60 + 136.0 / 640, 1e-12);

    /* A measured recurrent-step table: batch 2 lies half-way (in log) between batch 1 (gemv 30) and
     * batch 4 (50): 40 flop/s; batch 8 half-way between 4 (50) and 16 (90): 70. */
    double rt[4] = {50, 90, 200, 400};
    memcpy(p.rec_rows_flops, rt, sizeof rt);
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 2, 200, 1, &c), FL_OK);
    assert_close(c.compute_seconds, 64.0 / 40 + 136.0 / 640, 1e-12);
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 8, 200, 1, &c), FL_OK);
    assert_close(c.compute_seconds, 4 * 64.0 / 70 + 4 * 136.0 / 640, 1e-12);
}

static void test_cost_dram_two_threads(void **state) {
    (void)state;
    fl_arch a = {.input = 3, .hidden = 2, .layers = 1, .head = FL_HEAD_PER_STEP, .head_out = 5};
    fl_profile p = hand_profile(50, 2); /* shared 50-byte cache: W_hh (64 B) does not fit */
    fl_cost c;
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 2, 4, 2, &c), FL_OK);
    assert_int_equal(c.level, -1);
    assert_int_equal(c.regime, FL_REGIME_MEMORY);
    double bw = 10.0 * 1.75; /* DRAM, two threads */
    assert_close(c.bandwidth, bw, 1e-12);
    /* recurrent: max(64/17.5, 64/120); amortised: max(34/17.5, 136/480) */
    assert_close(c.seconds, 64.0 / bw + 34.0 / bw + 0.5, 1e-12);
    assert_close(c.compute_seconds, 64.0 / 120 + 136.0 / 480, 1e-12);

    /* A private level of 44 B: two threads hold 88 B, of which 3/4 (66 B) is usable, so W_hh (64 B)
     * fits and streams at 2 x 100. */
    p = hand_profile(44, 1);
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 2, 4, 2, &c), FL_OK);
    assert_int_equal(c.level, 0);
    assert_int_equal(c.regime, FL_REGIME_COMPUTE);
    /* all weights (200 B) exceed 66 B: amortised bytes from DRAM at 17.5 */
    assert_close(c.seconds, fmax(64.0 / 200, 64.0 / 120) + fmax(34.0 / bw, 136.0 / 480) + 0.5, 1e-12);

    /* A measured curve (one thread): 300 B/s at 32 B, 100 B/s at 128 B. W_hh (64 B) is half-way in
     * log(bytes): 200 B/s; all weights (200 B) are past the last point: 100 B/s. */
    p = hand_profile(1000, 2);
    p.n_curve = 2;
    p.curve_bytes[0] = 32, p.curve_bandwidth[0] = 300;
    p.curve_bytes[1] = 128, p.curve_bandwidth[1] = 100;
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 2, 4, 1, &c), FL_OK);
    assert_close(c.bandwidth, 200.0, 1e-9);
    assert_close(c.mem_seconds, 64.0 / 200 + 34.0 / 100, 1e-12);
    /* With two threads the curve is not used: the level's shared rate 100 * 1.75. */
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 2, 4, 2, &c), FL_OK);
    assert_close(c.bandwidth, 175.0, 1e-9);
}

/* A part split across the threads runs at the profile's measured speed-up (thread_scale_rec for the
 * step, thread_scale_proj for a projection, at curve_all_threads threads), not at N x. */
static void test_cost_thread_scale(void **state) {
    (void)state;
    fl_arch a = {.input = 3, .hidden = 2, .layers = 1, .head = FL_HEAD_PER_STEP, .head_out = 5};
    fl_profile p = hand_profile(1000, 2);
    double g[4] = {40, 160, 320, 640};
    memcpy(p.gemm_rows_flops, g, sizeof g);
    fl_cost c;
    /* no measured speed-up: 2 x; step 2 rows x 32 flop at 2 x 60, projections 136 flop on 8 rows at
     * 2 x 100 (log-linear between 40 at 4 rows and 160 at 16) */
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 2, 4, 2, &c), FL_OK);
    assert_close(c.compute_seconds, 64.0 / 120 + 136.0 / 200, 1e-12);
    for (int k = 0; k < 4; k++) p.thread_scale_rec[k] = 1.2, p.thread_scale_proj[k] = 1.5;
    /* measured at another thread count: not used */
    p.curve_all_threads = 4;
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 2, 4, 2, &c), FL_OK);
    assert_close(c.compute_seconds, 64.0 / 120 + 136.0 / 200, 1e-12);
    p.curve_all_threads = 2;
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 2, 4, 2, &c), FL_OK);
    assert_close(c.compute_seconds, 64.0 / 72 + 136.0 / 150, 1e-12);
    assert_close(c.seconds, 64.0 / 72 + 136.0 / 150 + 0.5, 1e-12);
    /* the table is read at the rows (clamped to 4..256): 1.2 at 4 rows, 2.0 at 16, batch 8 half-way */
    p.thread_scale_rec[1] = 2.0;
    fl_cost_term t[3];
    assert_int_equal(fl_cost_predict_terms(&p, &a, NULL, 8, 4, 2, &c, t), FL_OK);
    assert_close(t[1].compute_seconds, 8 * 32.0 / (fmin(1000, 8 * 30.0) * 1.6), 1e-12);
    /* one thread: untouched */
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 2, 4, 1, &c), FL_OK);
    assert_close(c.compute_seconds, 64.0 / 60 + 136.0 / 100, 1e-12);
}

static void test_cost_low_rank(void **state) {
    (void)state;
    /* W_ih CP rank 1: params 1*(4+2+3) = 9, flops 2*3 + 4 + 2*8 = 26; W_hh SVD rank 1: params 10,
     * flops 20; last-step head dense 5x2: params 10, flops 20 counted 1/T. batch 2, seq 4. */
    fl_arch a = {.input = 3, .hidden = 2, .layers = 1, .head = FL_HEAD_LAST_STEP, .head_out = 5};
    fl_mat_spec s[3] = {{FL_METHOD_CP, 1}, {FL_METHOD_SVD, 1}, {FL_METHOD_DENSE, 0}};
    fl_profile p = hand_profile(1000, 2);
    fl_cost c;
    assert_int_equal(fl_cost_predict(&p, &a, s, 2, 4, 1, &c), FL_OK);
    assert_int_equal(c.params, 9 + 10 + 10);
    assert_int_equal(c.working_set, 40);
    double fr = 2 * 20, fa = 2 * 26 + 2 * 20 / 4.0, br = 40, ba = (9 + 10) * 4 / 4.0;
    assert_close(c.step_flops, fr + fa, 1e-12);
    assert_close(c.step_bytes, br + ba, 1e-12);
    /* amortised terms per matrix: W_ih over T*B = 8 rows, max(9/100, 52/min(1000, 8*30)); the
     * last-step head runs once per sequence on B = 2 rows: max(10/100, 10/min(1000, 2*30)) */
    assert_close(c.seconds, fmax(br / 100, fr / 60) + fmax(9.0 / 100, 52.0 / 240) + fmax(10.0 / 100, 10.0 / 60) + 0.5,
                 1e-12);
    /* Kernel efficiencies: SVD recurrent at half speed, CP GEMM at a quarter. */
    p.rec_efficiency[FL_METHOD_SVD] = 0.5;
    p.gemm_efficiency[FL_METHOD_CP] = 0.25;
    assert_int_equal(fl_cost_predict(&p, &a, s, 2, 4, 1, &c), FL_OK);
    assert_close(c.seconds, fmax(br / 50, fr / 30) + fmax(9.0 / 100, 52.0 / 60) + fmax(10.0 / 100, 10.0 / 60) + 0.5,
                 1e-12);
    p.rec_efficiency[FL_METHOD_SVD] = 0;
    p.gemm_efficiency[FL_METHOD_CP] = 0;

    /* Batch 20, seq 35, with measured tables: the recurrent step is a 20-row product (rec table
     * between 16 and 64 rows), W_ih one GEMM over 700 rows (the 256-row rate), the last-step head a
     * 20-row GEMM (gemm table between 16 and 64 rows). All dense: W_ih 8x3, W_hh 8x2, head 5x2. */
    {
        fl_mat_spec dense[3] = {{FL_METHOD_DENSE, 0}, {FL_METHOD_DENSE, 0}, {FL_METHOD_DENSE, 0}};
        double g[4] = {40, 160, 320, 640}, rt[4] = {50, 90, 200, 400};
        memcpy(p.gemm_rows_flops, g, sizeof g);
        memcpy(p.rec_rows_flops, rt, sizeof rt);
        const double u = log(20.0 / 16) / log(4.0); /* 20 rows, in log between 16 and 64 */
        const double rate_r = 90 + u * (200 - 90), rate_h = 160 + u * (320 - 160);
        assert_int_equal(fl_cost_predict(&p, &a, dense, 20, 35, 1, &c), FL_OK);
        const double t_hh = fmax(64.0 / 100, 20 * 32.0 / rate_r);
        const double t_ih = fmax(96.0 / 35 / 100, 20 * 48.0 / 640);
        const double t_head = fmax(40.0 / 35 / 100, 20 * 20.0 / 35 / rate_h);
        assert_close(c.step_flops, 20 * 32.0 + 20 * 48.0 + 20 * 20.0 / 35, 1e-9);
        assert_close(c.compute_seconds, 20 * 32.0 / rate_r + 20 * 48.0 / 640 + 20 * 20.0 / 35 / rate_h, 1e-12);
        assert_close(c.seconds, t_hh + t_ih + t_head + 0.5, 1e-12);
        memset(p.gemm_rows_flops, 0, sizeof p.gemm_rows_flops);
        memset(p.rec_rows_flops, 0, sizeof p.rec_rows_flops);
    }

    /* Two layers run one after the other: each W_hh (64 B) is its own working set and fits 3/4 of a
     * 100-byte cache although both together (128 B) would not. W_ih: 8x3 then 8x2. */
    fl_arch two = {.input = 3, .hidden = 2, .layers = 2, .head = FL_HEAD_NONE};
    p = hand_profile(100, 2);
    assert_int_equal(fl_cost_predict(&p, &two, NULL, 1, 4, 1, &c), FL_OK);
    assert_int_equal(c.working_set, 64);
    assert_int_equal(c.level, 0);
    assert_int_equal(c.regime, FL_REGIME_COMPUTE);
    /* recurrent: 2 x max(64/100, 32/30); amortised: all 320 B exceed 75 B -> DRAM 10 B/s:
     * max((24+16)*4/4 / 10, (48+32) / min(1000, 4*30)) */
    assert_close(c.seconds, 2 * (32.0 / 30) + fmax(40.0 / 10, 80.0 / 120) + 2 * 0.5, 1e-12);
    p = hand_profile(80, 2); /* usable 60 B: W_hh no longer fits */
    assert_int_equal(fl_cost_predict(&p, &two, NULL, 1, 4, 1, &c), FL_OK);
    assert_int_equal(c.level, -1);
    assert_int_equal(c.regime, FL_REGIME_MEMORY);
    assert_close(c.seconds, 2 * (64.0 / 10) + fmax(40.0 / 10, 80.0 / 120) + 2 * 0.5, 1e-12);

    /* Bad specs and sizes. */
    fl_mat_spec bad[3] = {{FL_METHOD_SVD, 4}, {FL_METHOD_DENSE, 0}, {FL_METHOD_DENSE, 0}};
    assert_int_equal(fl_cost_predict(&p, &a, bad, 2, 4, 1, &c), FL_ERR_ARG); /* rank > min(8, 3) */
    fl_mat_spec cphead[3] = {{FL_METHOD_DENSE, 0}, {FL_METHOD_DENSE, 0}, {FL_METHOD_CP, 1}};
    assert_int_equal(fl_cost_predict(&p, &a, cphead, 2, 4, 1, &c), FL_ERR_ARG);
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 0, 4, 1, &c), FL_ERR_ARG);
}

/* t_x, the run's passes over x and y outside the layers, per step at the bias pass's rate: x scanned
 * (not for tokens) and copied (B in each), y written from the top layer's packed output
 * (B dirs out; none behind a last-step head). Dense 1 layer, input 3, hidden 2, batch 2, seq 4. */
static void test_cost_io_passes(void **state) {
    (void)state;
    fl_profile p = hand_profile(1000, 2);
    fl_arch a = {.input = 3, .hidden = 2, .layers = 1, .head = FL_HEAD_NONE};
    fl_cost c, c0;
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 2, 4, 1, &c0), FL_OK); /* bias rates 0: no t_x */
    p.bias_seconds = 0.001;
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 2, 4, 1, &c), FL_OK);
    assert_close(c.seconds - c0.seconds, (2 * 3 * 2 + 2 * 2) * 0.001, 1e-12);
    /* bidirectional: y rows 2 x 2 wide */
    fl_arch bi = a;
    bi.bidirectional = 1;
    p.bias_seconds = 0;
    assert_int_equal(fl_cost_predict(&p, &bi, NULL, 2, 4, 1, &c0), FL_OK);
    p.bias_seconds = 0.001;
    assert_int_equal(fl_cost_predict(&p, &bi, NULL, 2, 4, 1, &c), FL_OK);
    assert_close(c.seconds - c0.seconds, (2 * 3 * 2 + 2 * 4) * 0.001, 1e-12);
    /* tokens: embedding rows gathered (one pass), nothing scanned; per-step head: its input rows */
    fl_arch tok = {.vocab = 7, .input = 3, .hidden = 2, .layers = 1, .head = FL_HEAD_PER_STEP, .head_out = 7};
    p.bias_seconds = 0;
    assert_int_equal(fl_cost_predict(&p, &tok, NULL, 2, 4, 1, &c0), FL_OK);
    p.bias_seconds = 0.001;
    assert_int_equal(fl_cost_predict(&p, &tok, NULL, 2, 4, 1, &c), FL_OK);
    /* the per-step dense f32 head fuses its bias: the difference is t_x alone */
    assert_close(c.seconds - c0.seconds, (2 * 3 + 2 * 2) * 0.001, 1e-12);
    /* the cached rate where the bytes over the sequence fit 3/4 of the private level: x 96 B and y
     * 64 B at seq 4 do; at seq 100 (2400 and 1600 B) neither */
    p.level[0].shared_cpus = 1;
    p.bias_seconds_cached = 0.0001;
    fl_profile q = p;
    q.bias_seconds = q.bias_seconds_cached = 0;
    assert_int_equal(fl_cost_predict(&q, &a, NULL, 2, 4, 1, &c0), FL_OK);
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 2, 4, 1, &c), FL_OK);
    assert_close(c.seconds - c0.seconds, (2 * 3 * 2 + 2 * 2) * 0.0001, 1e-12);
    assert_int_equal(fl_cost_predict(&q, &a, NULL, 2, 100, 1, &c0), FL_OK);
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 2, 100, 1, &c), FL_OK);
    assert_close(c.seconds - c0.seconds, (2 * 3 * 2 + 2 * 2) * 0.001, 1e-12);
}

/* Seconds of the bias pass in the prediction for batch 2, seq T, one thread: with p's bias rates
 * less with both at 0. */
static double bias_part(const fl_profile *p, const fl_arch *a, const fl_mat_spec *s, const fl_precision *prec, int T) {
    fl_profile q = *p;
    fl_cost c, c0;
    assert_int_equal(fl_cost_predict_prec(&q, a, s, prec, 2, T, 1, &c, NULL), FL_OK);
    q.bias_seconds = q.bias_seconds_cached = 0;
    assert_int_equal(fl_cost_predict_prec(&q, a, s, prec, 2, T, 1, &c0, NULL), FL_OK);
    return c.seconds - c0.seconds;
}

/* The batch-dependent terms: cell update per unit and row, bias pass after a non-dense input
 * projection and a head, SVD / CP efficiencies interpolated in log batch (recurrent) or log rows
 * (GEMM). Same model as test_cost_low_rank: W_ih CP rank 1 (8x3: 9 params, 26 flops), W_hh SVD
 * rank 1 (8x2: 10 params, 20 flops), last-step head dense 5x2 (10 params, 20 flops). */
static void test_cost_batch_terms(void **state) {
    (void)state;
    fl_arch a = {.input = 3, .hidden = 2, .layers = 1, .head = FL_HEAD_LAST_STEP, .head_out = 5};
    fl_mat_spec s[3] = {{FL_METHOD_CP, 1}, {FL_METHOD_SVD, 1}, {FL_METHOD_DENSE, 0}};
    fl_profile p = hand_profile(1000, 2);
    fl_cost c;
    /* batch 2, seq 4: cell 1 layer x 2 rows x 2 units x 0.01 = 0.04; no bias pass: the f32 CP W_ih
     * fuses its biases into its last packed product (since session 11; before, a pass over its 2 rows
     * x 8 outputs = 16 elements x 0.001), and so does the dense head */
    p.cell_seconds = 0.01;
    p.bias_seconds = 0.001;
    /* the run's passes over x at the bias rate (t_x): its 2 x 3 values a step scanned and copied;
     * no pass over y behind a last-step head */
    const double io = 2 * 3 * 2 * 0.001;
    const double base = fmax(40.0 / 100, 40.0 / 60) + fmax(9.0 / 100, 52.0 / 240) + fmax(10.0 / 100, 10.0 / 60) + 0.5;
    assert_int_equal(fl_cost_predict(&p, &a, s, 2, 4, 1, &c), FL_OK);
    assert_close(c.seconds, base + 0.04 + io, 1e-12);
    /* two threads: the cell update splits over them; rates x 2 (private flops) and the shared level
     * x 1.75. Of the SVD W_hh step every thread computes t = V h (2 weights, 4 flops a row) whole,
     * both rows in one pass of the proj kernel's 3-row tile at the 2-row rate: 2 x 4 / 60 of its
     * one-thread max(40 / 100, 40 / 60); the rest (0.8 of it) splits. */
    assert_int_equal(fl_cost_predict(&p, &a, s, 2, 4, 2, &c), FL_OK);
    const double vh = 2 * 4.0 / 60, rest = 1 - vh / fmax(40.0 / 100, 40.0 / 60);
    assert_close(c.seconds,
                 vh + rest * fmax(40.0 / 175, 40.0 / 120) + fmax(9.0 / 175, 52.0 / 480) + fmax(10.0 / 175, 10.0 / 120) +
                     0.5 + 0.02 + io,
                 1e-12);
    /* A dense W_ih fuses its bias too. */
    fl_mat_spec d[3] = {{FL_METHOD_DENSE, 0}, {FL_METHOD_SVD, 1}, {FL_METHOD_DENSE, 0}};
    assert_int_equal(fl_cost_predict(&p, &a, d, 2, 4, 1, &c), FL_OK);
    assert_close(c.seconds,
                 fmax(40.0 / 100, 40.0 / 60) + fmax(96.0 / 4 / 100, 2 * 48.0 / 240) + fmax(10.0 / 100, 10.0 / 60) +
                     0.5 + 0.04 + io,
                 1e-12);
    /* An SVD head (a BLAS product, its output filled with the bias first: B rows(W) / T = 2.5
     * elements a step, the head running on the last step only) pays the bias pass; the CP W_ih
     * beside it does not. */
    fl_mat_spec sh[3] = {{FL_METHOD_CP, 1}, {FL_METHOD_SVD, 1}, {FL_METHOD_SVD, 1}};
    fl_cost cb;
    assert_int_equal(fl_cost_predict(&p, &a, sh, 2, 4, 1, &c), FL_OK);
    p.bias_seconds = 0;
    assert_int_equal(fl_cost_predict(&p, &a, sh, 2, 4, 1, &cb), FL_OK);
    p.bias_seconds = 0.001;
    assert_close(c.seconds - cb.seconds, 2.5 * 0.001 + io, 1e-12);
    /* A quantized W_ih (int8, dense) still adds its bias in a pass of its own: 16 elements a step.
     * The cached bias rate applies where the whole output fits 3/4 of the largest private level:
     * none in this profile (its level is shared), so bias_seconds still applies ... (bias_part
     * holds t_x too: 12 elements a step at the same rate, x's 96 bytes over the sequence) */
    const fl_precision i8[3] = {FL_PRECISION_INT8, FL_PRECISION_F32, FL_PRECISION_F32};
    p.bias_seconds_cached = 0.0001;
    assert_close(bias_part(&p, &a, d, i8, 4), (16 + 12) * 0.001, 1e-12);
    /* ... with a private 1000-byte level (750 usable): W_ih's output, 4 x 2 x 8 x 4 = 256
     * bytes, fits; at seq 100 its 6400 bytes do not. */
    p.level[0].shared_cpus = 1;
    assert_close(bias_part(&p, &a, d, i8, 4), (16 + 12) * 0.0001, 1e-12);
    assert_close(bias_part(&p, &a, d, i8, 100), (16 + 12) * 0.001, 1e-12);
    p.level[0].shared_cpus = 2;
    p.cell_seconds = p.bias_seconds = p.bias_seconds_cached = 0;

    /* Efficiency tables. SVD recurrent: batch 1 at rec_efficiency 0.8, then 0.5, 0.4, 0.3, 0.2 at 4,
     * 16, 64, 256. Batch 2 lies half-way (in log) between 1 and 4: 0.65. CP GEMM: 0.2, 0.4, 0.8, 1.0 at
     * 4, 16, 64, 256 rows; T*B = 8 rows is half-way between 4 and 16: 0.3. */
    p.rec_efficiency[FL_METHOD_SVD] = 0.8;
    const double er[4] = {0.5, 0.4, 0.3, 0.2}, eg[4] = {0.2, 0.4, 0.8, 1.0};
    memcpy(p.rec_rows_efficiency[FL_METHOD_SVD], er, sizeof er);
    memcpy(p.gemm_rows_efficiency[FL_METHOD_CP], eg, sizeof eg);
    assert_int_equal(fl_cost_predict(&p, &a, s, 2, 4, 1, &c), FL_OK);
    assert_close(c.seconds,
                 fmax(40.0 / (100 * 0.65), 40.0 / (60 * 0.65)) + fmax(9.0 / 100, 52.0 / (240 * 0.3)) +
                     fmax(10.0 / 100, 10.0 / 60) + 0.5,
                 1e-12);
    /* batch 1, seq 2: recurrent at 0.8 (rows 1); GEMM over 2 rows clamps to the 4-row 0.2 */
    assert_int_equal(fl_cost_predict(&p, &a, s, 1, 2, 1, &c), FL_OK);
    assert_close(c.seconds,
                 fmax(40.0 / 80, 20.0 / (30 * 0.8)) + fmax(9.0 * 4 / 2 / 100, 26.0 / (60 * 0.2)) +
                     fmax(10.0 * 4 / 2 / 100, 10.0 / 30) + 0.5,
                 1e-12);
    /* batch 300, seq 1: both past the table, at its last entries (0.2 and 1.0); rates capped by
     * gemm_flops 1000 */
    assert_int_equal(fl_cost_predict(&p, &a, s, 300, 1, 1, &c), FL_OK);
    assert_close(c.seconds,
                 fmax(40.0 / 20, 300 * 20.0 / 200) + fmax(36.0 / 100, 300 * 26.0 / 1000) +
                     fmax(40.0 / 100, 300 * 20.0 / 1000) + 0.5,
                 1e-12);
    /* A missing table entry (0) takes the batch-1 figure: batch 16 at 0.8. W_ih over 16 x 8 = 128
     * rows: CP half-way (in log) between 0.8 (64 rows) and 1.0 (256): 0.9. */
    p.rec_rows_efficiency[FL_METHOD_SVD][1] = 0;
    assert_int_equal(fl_cost_predict(&p, &a, s, 16, 8, 1, &c), FL_OK);
    assert_close(c.seconds,
                 fmax(40.0 / 80, 16 * 20.0 / (480 * 0.8)) + fmax(36.0 / 8 / 100, 16 * 26.0 / (1000 * 0.9)) +
                     fmax(40.0 / 8 / 100, 16 * 20.0 / 8 / 480) + 0.5,
                 1e-12);

    p.cell_seconds = -1;
    assert_int_equal(fl_cost_predict(&p, &a, s, 2, 4, 1, &c), FL_ERR_ARG);

    /* rec_memory_factor slows the recurrent rate only for a W_hh held by no cache level. Dense
     * input 3, hidden 2, per-step head 5 (W_ih 8x3, W_hh 8x2, head 5x2), batch 2, seq 4. */
    fl_arch d2 = {.input = 3, .hidden = 2, .layers = 1, .head = FL_HEAD_PER_STEP, .head_out = 5};
    p = hand_profile(1000, 2);
    p.rec_memory_factor = 0.1;
    assert_int_equal(fl_cost_predict(&p, &d2, NULL, 2, 4, 1, &c), FL_OK); /* in cache: unchanged */
    assert_close(c.seconds, 64.0 / 60 + 136.0 / 240 + 0.5, 1e-12);
    p = hand_profile(50, 2); /* 37.5 usable bytes: W_hh (64 B) and all weights (200 B) in DRAM at 10 */
    assert_int_equal(fl_cost_predict(&p, &d2, NULL, 2, 4, 1, &c), FL_OK);
    assert_close(c.seconds, 64.0 / 10 + 34.0 / 10 + 0.5, 1e-12);
    p.rec_memory_factor = 0.1; /* 60 flop/s -> 6: 64 flop take 10.67 s, more than the 6.4 s stream */
    assert_int_equal(fl_cost_predict(&p, &d2, NULL, 2, 4, 1, &c), FL_OK);
    assert_close(c.seconds, 64.0 / 6 + 34.0 / 10 + 0.5, 1e-12);
}

/* int8 / bf16 matrices: 1 or 2 bytes per weight in the memory terms, the measured quant rates in
 * the compute terms (the f32 ones when the profile has none), one thread. */
static void test_cost_precision(void **state) {
    (void)state;
    /* input 3, hidden 2, 1 layer, no head: W_ih 8x3 (24 weights), W_hh 8x2 (16). batch 2, seq 4. */
    fl_arch a = {.input = 3, .hidden = 2, .layers = 1, .head = FL_HEAD_NONE};
    fl_profile p = hand_profile(1000, 2);
    const fl_precision i8[2] = {FL_PRECISION_INT8, FL_PRECISION_INT8}, bf[2] = {FL_PRECISION_F32, FL_PRECISION_BF16};
    fl_cost c, c32;
    fl_cost_term t[2];
    /* No quant rates (an older profile): the f32 rates, int8 bytes. f32: recurrent 64 B at 100,
     * 64 flop at min(1000, 2 * 30) = 60; amortised 24 * 4 / 4 = 24 B, 2 * 48 = 96 flop at 240. */
    assert_int_equal(fl_cost_predict_prec(&p, &a, NULL, NULL, 2, 4, 1, &c32, NULL), FL_OK);
    assert_int_equal(fl_cost_predict_prec(&p, &a, NULL, i8, 2, 4, 1, &c, t), FL_OK);
    assert_close(c.step_bytes, 16.0 + 6.0, 1e-12);
    assert_close(c.mem_seconds, 0.16 + 0.06, 1e-12);
    assert_close(c.compute_seconds, c32.compute_seconds, 1e-12);
    assert_close(t[1].compute_seconds, 64.0 / 60, 1e-12);
    /* Measured int8 rates: step at batch 1, 4, 16, 64, 256 = 20, 80, ...: batch 2 is half-way in
     * log between 20 and 80: 50; projection at 4, 16, 64, 256 rows = 8, 32, 64, 128: 8 rows (batch
     * 2 x seq 4) half-way between 8 and 32: 20. */
    const double qr[5] = {20, 80, 160, 320, 640}, qg[4] = {8, 32, 64, 128};
    memcpy(p.qrec_flops[FL_PRECISION_INT8], qr, sizeof qr);
    memcpy(p.qgemm_flops[FL_PRECISION_INT8], qg, sizeof qg);
    assert_int_equal(fl_cost_predict_prec(&p, &a, NULL, i8, 2, 4, 1, &c, t), FL_OK);
    assert_close(t[1].compute_seconds, 64.0 / 50, 1e-12);
    assert_close(t[0].compute_seconds, 96.0 / 20, 1e-12);
    assert_close(t[1].mem_seconds, 0.16, 1e-12);
    assert_close(c.compute_seconds, 64.0 / 50 + 96.0 / 20, 1e-12);
    /* bf16 W_hh without bf16 rates: the f32 step rate (int8's are not borrowed), 2 bytes a weight */
    assert_int_equal(fl_cost_predict_prec(&p, &a, NULL, bf, 2, 4, 1, &c, t), FL_OK);
    assert_close(t[1].compute_seconds, 64.0 / 60, 1e-12);
    assert_close(t[1].mem_seconds, 0.32, 1e-12);
    /* A quantized step runs on one thread even when 2 are planned (the runtime's quant step does) */
    p.parallel_step_bytes = 1, p.parallel_proj_macs = 1;
    assert_int_equal(fl_cost_predict_prec(&p, &a, NULL, i8, 2, 4, 2, &c, t), FL_OK);
    assert_int_equal(t[1].threads, 1);
    assert_int_equal(t[0].threads, 1);
    assert_int_equal(fl_cost_predict_prec(&p, &a, NULL, NULL, 2, 4, 2, &c, t), FL_OK);
    assert_int_equal(t[1].threads, 2);
    /* CP stays f32: its bytes count 4 per weight whatever the precision says */
    fl_mat_spec cp[2] = {{FL_METHOD_DENSE, 0}, {FL_METHOD_CP, 1}};
    assert_int_equal(fl_cost_predict_prec(&p, &a, cp, i8, 2, 4, 1, &c, t), FL_OK);
    assert_close(t[1].bytes, 4.0 * (4 + 2 + 2), 1e-12);
    /* Posing as another machine's flop rate clears this one's quant rates */
    assert_int_equal(fl_profile_override(&p, 0, 0, 0, 77), FL_OK);
    assert_close(p.qrec_flops[FL_PRECISION_INT8][0], 0, 0);
    assert_close(p.qgemm_flops[FL_PRECISION_INT8][3], 0, 0);
}

/* ------------------------------------------------------------ profile */

static void test_profile_json_and_override(void **state) {
    (void)state;
    fl_profile p;
    assert_int_equal(fl_profile_detect(&p), FL_OK);
    assert_true(p.n_levels >= 1 && p.cores >= 1);
    for (int i = 1; i < p.n_levels; i++) assert_true(p.level[i].bytes > p.level[i - 1].bytes);
    p.dram_bandwidth = 12.5e9;
    p.gemv_flops = 3.25e10;
    p.cell_seconds = 1.5e-9;
    p.bias_seconds = 4e-10;
    p.bias_seconds_cached = 2.5e-10;
    p.rec_memory_factor = 0.375;
    p.rec_rows_efficiency[FL_METHOD_SVD][2] = 0.75;
    p.gemm_rows_efficiency[FL_METHOD_CP][3] = 0.625;
    p.qrec_flops[FL_PRECISION_INT8][4] = 7.5e10;
    p.qgemm_flops[FL_PRECISION_BF16][0] = 2.5e9;
    p.thread_scale_rec[1] = 1.25;
    p.thread_scale_proj[3] = 1.5;
    const char *path = "test_plan_profile.json";
    assert_int_equal(fl_profile_save(&p, path), FL_OK);
    fl_profile q;
    assert_int_equal(fl_profile_load(path, &q), FL_OK);
    assert_close(q.qrec_flops[FL_PRECISION_INT8][4], 7.5e10, 1e-3);
    assert_close(q.qgemm_flops[FL_PRECISION_BF16][0], 2.5e9, 1e-3);
    assert_close(q.qrec_flops[FL_PRECISION_BF16][0], 0, 0);
    assert_close(q.thread_scale_rec[1], 1.25, 1e-12);
    assert_close(q.thread_scale_rec[0], 0, 0);
    assert_close(q.thread_scale_proj[3], 1.5, 1e-12);
    assert_int_equal(q.n_levels, p.n_levels);
    for (int i = 0; i < p.n_levels; i++) {
        assert_int_equal(q.level[i].bytes, p.level[i].bytes);
        assert_int_equal(q.level[i].shared_cpus, p.level[i].shared_cpus);
        assert_close(q.level[i].bandwidth, p.level[i].bandwidth, 1e-3);
    }
    assert_close(q.dram_bandwidth, 12.5e9, 1e-3);
    assert_close(q.gemv_flops, 3.25e10, 1e-3);
    assert_close(q.cell_seconds, 1.5e-9, 1e-20);
    assert_close(q.bias_seconds, 4e-10, 1e-20);
    assert_close(q.bias_seconds_cached, 2.5e-10, 1e-20);
    assert_close(q.rec_memory_factor, 0.375, 1e-12);
    assert_close(q.rec_rows_efficiency[FL_METHOD_SVD][2], 0.75, 1e-12);
    assert_close(q.rec_rows_efficiency[FL_METHOD_SVD][1], 0.0, 0);
    assert_close(q.gemm_rows_efficiency[FL_METHOD_CP][3], 0.625, 1e-12);

    /* Override: a cache smaller than every level leaves one level of that size. */
    assert_int_equal(fl_profile_override(&q, 1000, 2e9, 0, 5e9), FL_OK);
    assert_int_equal(q.n_levels, 1);
    assert_int_equal(q.level[0].bytes, 1000);
    assert_close(q.dram_bandwidth, 2e9, 0);
    assert_close(q.gemm_flops, 5e9, 0);
    assert_close(q.gemv_flops, 5e9, 0);
    assert_int_equal(fl_profile_override(&q, NAN, 0, 0, 0), FL_ERR_ARG);

    /* A profile written before the quant rates were measured (no "quant") loads with them 0, and
     * the cost model then takes the f32 rates (test_cost_precision); a malformed "quant" is refused. */
    static const char old_profile[] =
        "{\"version\": 2, \"cores\": 2, \"simd_bits\": 256, \"caches\": [{\"level\": 1, \"bytes\": 32768, "
        "\"shared_cpus\": 1, \"bandwidth\": 1e11}], \"dram_bandwidth\": 1e10, \"gemm_flops\": 1e10, "
        "\"gemv_flops\": 1e10, \"step_overhead\": 1e-6%s}";
    FILE *f = fopen(path, "w");
    fprintf(f, old_profile, "");
    fclose(f);
    assert_int_equal(fl_profile_load(path, &q), FL_OK);
    for (int k = 0; k < 5; k++) assert_close(q.qrec_flops[FL_PRECISION_INT8][k] + q.qrec_flops[FL_PRECISION_BF16][k], 0, 0);
    fl_arch a = {.input = 3, .hidden = 2, .layers = 1, .head = FL_HEAD_NONE};
    const fl_precision i8[2] = {FL_PRECISION_INT8, FL_PRECISION_INT8};
    fl_cost c8, c32;
    assert_int_equal(fl_cost_predict_prec(&q, &a, NULL, i8, 1, 4, 1, &c8, NULL), FL_OK);
    assert_int_equal(fl_cost_predict_prec(&q, &a, NULL, NULL, 1, 4, 1, &c32, NULL), FL_OK);
    assert_close(c8.compute_seconds, c32.compute_seconds, 1e-15);
    assert_close(c8.step_bytes, c32.step_bytes / 4, 1e-12);
    f = fopen(path, "w");
    fprintf(f, old_profile, ", \"quant\": {\"int8\": {\"recurrent_rows\": [1, 2, 3]}}");
    fclose(f);
    assert_int_equal(fl_profile_load(path, &q), FL_ERR_FORMAT);
    assert_non_null(strstr(fl_last_error(), "recurrent_rows"));
    f = fopen(path, "w");
    fputs("{\"version\": 1, \"cores\": 2, \"simd_bits\": 256, \"caches\": []}", f);
    fclose(f);
    assert_int_equal(fl_profile_load(path, &q), FL_ERR_FORMAT);
    f = fopen(path, "w");
    fputs("not json", f);
    fclose(f);
    assert_int_equal(fl_profile_load(path, &q), FL_ERR_FORMAT);
    remove(path);
    assert_int_equal(fl_profile_load("no_such_profile.json", &q), FL_ERR_IO);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cost_dense_in_cache),
        cmocka_unit_test(test_cost_dram_two_threads),
        cmocka_unit_test(test_cost_thread_scale),
        cmocka_unit_test(test_cost_low_rank),
        cmocka_unit_test(test_cost_batch_terms),
        cmocka_unit_test(test_cost_io_passes),
        cmocka_unit_test(test_cost_precision),
        cmocka_unit_test(test_profile_json_and_override),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
