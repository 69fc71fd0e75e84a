/* The f32 SVD / CP step priced by its parts (cost_lowrank.c) from a profile's low-rank figures
 * (fl_profile.lr_*, format 3): the grid's interpolation in rank and rows, the step's price from
 * hand-written figures (the projection's passes over V, the panel with its cell update, the gx
 * copy, each part's roofline), a profile without the figures priced by the efficiencies as before,
 * the far tables (weights beyond the private level, format 5) chosen or blended by the step's
 * working set, and the profile file's round trip (version 5 written; versions 2 and 4 still load
 * and price as before; a malformed "lowrank" refused, naming the field). Nothing here is timed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fastlstm/plan.h"
#include "internal.h"
#include "plan/plan_internal.h"
#include "testutil.h"
#include "flat_profile.h"

#include "json_file.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NR = FL_PROFILE_LR_RANKS, NK = FL_PROFILE_LR_ROWS };

/* t[j][k] = rank_j (1 + k): affine in the rank, growing with the rows point. */
static void fill(double (*t)[NK]) {
    for (int j = 0; j < NR; j++)
        for (int k = 0; k < NK; k++) t[j][k] = (double)(16 << j) * (1 + k);
}

static void test_table_interpolation(void **state) {
    (void)state;
    double t[NR][NK];
    fill(t);
    /* the grid's own points */
    for (int j = 0; j < NR; j++)
        for (int k = 0; k < NK; k++)
            assert_close(fl_cost_lr_table(t, 16 << j, k == 0 ? 1 : 1 << (2 * k)), t[j][k], 1e-12);
    /* linear in the rank between grid ranks: 48 is half-way from 32 to 64; 40 a quarter */
    assert_close(fl_cost_lr_table(t, 48, 1), 48, 1e-12);
    assert_close(fl_cost_lr_table(t, 40, 16), 40 * 3, 1e-12);
    /* beyond 256 along the last segment; below 16 the first rank's figure */
    assert_close(fl_cost_lr_table(t, 384, 1), 384, 1e-12);
    assert_close(fl_cost_lr_table(t, 8, 4), 16 * 2, 1e-12);
    /* linear in log rows: 2 is half-way from 1 to 4, 32 half-way from 16 to 64; held outside */
    assert_close(fl_cost_lr_table(t, 64, 2), 64 * 1.5, 1e-12);
    assert_close(fl_cost_lr_table(t, 64, 32), 64 * 3.5, 1e-12);
    assert_close(fl_cost_lr_table(t, 64, 1000), 64 * 5, 1e-12);
    assert_close(fl_cost_lr_table(t, 64, 0.5), 64, 1e-12);
    /* a table falling past its last rank is held at the last figure, not extended below it */
    t[NR - 1][0] = 100; /* rank 128: 128, rank 256: 100 */
    assert_close(fl_cost_lr_table(t, 192, 1), 114, 1e-12);
    assert_close(fl_cost_lr_table(t, 512, 1), 100, 1e-12);
}

/* flat_profile (1 MiB level at 100 B/s, nothing else timed) with uniform low-rank figures: proj 1 s
 * per input and row, SVD panel 2 s and CP panel 3 s per unit and row, the copy 0.01 s per byte. */
static fl_profile lr_profile(void) {
    fl_profile p = flat_profile();
    for (int j = 0; j < NR; j++)
        for (int k = 0; k < NK; k++) {
            p.lr_proj_seconds[j][k] = 1;
            p.lr_panel_seconds[FL_METHOD_SVD][j][k] = 2;
            p.lr_panel_seconds[FL_METHOD_CP][j][k] = 3;
        }
    p.gx_copy_seconds = 0.01;
    p.cell_seconds = p.cell_seconds_b1 = 5; /* priced apart only when the figures are absent */
    return p;
}

/* W_hh's term of a 64/64/1 model of method m at rank R, batch B, one thread. */
static fl_cost_term whh(const fl_profile *p, fl_method m, int R, int B, fl_cost *c) {
    static const fl_arch a = {.input = 64, .hidden = 64, .layers = 1, .head = FL_HEAD_NONE};
    const fl_mat_spec specs[2] = {{FL_METHOD_DENSE, 0}, {m, R}};
    fl_cost_term t[2];
    assert_int_equal(fl_cost_predict_terms(p, &a, specs, B, 8, 1, c, t), FL_OK);
    return t[1];
}

/* H = K = 64, R = 16 (Rp 16): V 64 x 16 floats = 4096 B, SVD's U 16 x 256 = 16384 B (CP's B 16 x 64
 * = 4096 B, a 64 B more with a), all in the level at 100 B/s. */
static void test_step_price(void **state) {
    (void)state;
    fl_profile p = lr_profile();
    fl_cost c;
    /* batch 20: 7 passes over V (6 tiles of 3, one of 2) */
    fl_cost_term t = whh(&p, FL_METHOD_SVD, 16, 20, &c);
    const double proj_mem = 7 * 4096 / 100.0, proj = 20 * 64 * 1.0, panel_mem = 16384 / 100.0, panel = 20 * 64 * 2.0;
    const double copy = 20 * 16 * 64 * 0.01;
    assert_close(t.seconds, proj + panel + copy, 1e-9);
    assert_close(t.mem_seconds, proj_mem + panel_mem, 1e-9);
    assert_close(t.compute_seconds, proj + panel, 1e-9);
    assert_close(t.cell_seconds, 0, 0);
    assert_true(t.compute_bound);
    /* the cell update is in the panel's figure: the profile's cell figure does not enter */
    fl_cost c0;
    fl_profile p0 = p;
    p0.cell_seconds = p0.cell_seconds_b1 = 0;
    whh(&p0, FL_METHOD_SVD, 16, 20, &c0);
    assert_close(c.seconds, c0.seconds, 1e-9);
    /* CP: its panel figure, its own weights (V with a: 64 x 16 + 4 x 16 floats; B 16 x 64) */
    t = whh(&p, FL_METHOD_CP, 16, 20, &c);
    assert_close(t.seconds, proj + 20 * 64 * 3.0 + copy, 1e-9);
    assert_close(t.mem_seconds, 7 * 4352 / 100.0 + 4096 / 100.0, 1e-9);
    /* kernels that read gx in place: the profile's copy figure is 0, and so is the copy's price */
    fl_profile pin = p;
    pin.gx_copy_seconds = 0;
    t = whh(&pin, FL_METHOD_SVD, 16, 20, &c);
    assert_close(t.seconds, proj + panel, 1e-9);
    /* batch 1: one pass, no copy */
    t = whh(&p, FL_METHOD_SVD, 16, 1, &c);
    assert_close(t.seconds, 64 * 1.0 + 16384 / 100.0, 1e-9); /* proj compute-, panel memory-bound */
    /* memory-bound parts: the level at 1 B/s; the first pass of V from where V + U lives, the
     * other passes from where V does (the same level here) */
    p.level[0].bandwidth = 1;
    t = whh(&p, FL_METHOD_SVD, 16, 20, &c);
    assert_close(t.seconds, 7 * 4096.0 + 16384.0 + copy, 1e-6);
    assert_false(t.compute_bound);
    /* a level of 4 KiB (3 KiB usable, FL_FIT_FRACTION): V and U from DRAM at 10 B/s */
    p = lr_profile();
    p.level[0].bytes = 4 << 10;
    t = whh(&p, FL_METHOD_SVD, 16, 20, &c);
    assert_close(t.mem_seconds, 7 * 4096 / 10.0 + 16384 / 10.0, 1e-9);
    /* V alone fits (4 KiB of a 6 KiB share) when U does not: the first pass from DRAM, the rest
     * from the level */
    p.level[0].bytes = 8 << 10;
    t = whh(&p, FL_METHOD_SVD, 16, 20, &c);
    assert_close(t.mem_seconds, 4096 / 10.0 + 6 * 4096 / 100.0 + 16384 / 10.0, 1e-9);
}

/* Two threads (two_core_profile: 32 KiB private L1 at 150 GB/s a core, the profile's rule lowered
 * to split any step, the measured speed-up of a split step 1.5 at every batch): by blocks at batch 1
 * (each thread its whole projection, the panel split: its compute over the speed-up, its bytes at
 * both cores' rate), by rows (each thread 16 rows of the whole step, computing at 1.5 /
 * 2 of one thread's rate, copying its own rows) at batch 32, by blocks again at batch 20. */
static void test_threads(void **state) {
    (void)state;
    fl_profile p = two_core_profile(), l = lr_profile();
    memcpy(p.lr_proj_seconds, l.lr_proj_seconds, sizeof l.lr_proj_seconds);
    memcpy(p.lr_panel_seconds, l.lr_panel_seconds, sizeof l.lr_panel_seconds);
    for (int j = 0; j < NR; j++)
        for (int k = 0; k < NK; k++) p.lr_proj_seconds[j][k] *= 1e-9, p.lr_panel_seconds[FL_METHOD_SVD][j][k] *= 1e-9;
    p.gx_copy_seconds = 1e-11;
    p.parallel_step_bytes = 1024;
    p.curve_all_threads = 2;
    for (int k = 0; k < 4; k++) p.thread_scale_rec[k] = 1.5;
    static const fl_arch a = {.input = 64, .hidden = 64, .layers = 1, .head = FL_HEAD_NONE};
    const fl_mat_spec specs[2] = {{FL_METHOD_DENSE, 0}, {FL_METHOD_SVD, 16}};
    fl_cost c;
    fl_cost_term t[2];
    assert_int_equal(fl_cost_predict_terms(&p, &a, specs, 1, 8, 2, &c, t), FL_OK);
    const double bw = 150e9; /* one core's share: V + U / 2 per core fits its L1 */
    assert_int_equal(t[1].threads, 2);
    assert_close(t[1].seconds, fmax(4096 / bw, 64 * 1e-9) + fmax(16384 / (2 * bw), 64 * 2e-9 / 1.5), 1e-15);
    /* batch 32: by rows (fl_rows_auto: W_hh 20 KiB x 32 rows past the runtime's 512 KiB), 16 a
     * thread, 6 passes over V */
    assert_int_equal(fl_cost_predict_terms(&p, &a, specs, 32, 8, 2, &c, t), FL_OK);
    assert_int_equal(t[1].threads, 2);
    const double slow = 2 / 1.5;
    assert_close(t[1].seconds, fmax(6 * 4096 / bw, 16 * 64 * 1e-9 * slow) + fmax(16384 / bw, 16 * 64 * 2e-9 * slow) +
                                   16 * 16 * 64 * 1e-11,
                 1e-15);
    /* the sync, passed directly: paid once, after the parts; without a curve for two threads the
     * level rates hold none of it to take out */
    fl_lr_cost lc, l0;
    fl_cost_lowrank_step(&p, FL_METHOD_SVD, 64, 64, 16, 1, 2, false, 0, &l0);
    fl_cost_lowrank_step(&p, FL_METHOD_SVD, 64, 64, 16, 1, 2, false, 1e-6, &lc);
    assert_close(lc.serial - l0.serial, 1e-6, 1e-18);
    assert_close(lc.dup_mem, l0.dup_mem, 1e-18);
    assert_close(lc.mem, l0.mem, 1e-18);
    assert_close(lc.comp, l0.comp, 1e-18);
    /* with a two-thread curve (flat at 300 GB/s) its time at 2 V + U = 24 KiB less the sync: 1e-8 s
     * of its 8.2e-8 */
    p.n_curve_all = 2;
    p.curve_all_bytes[0] = 1 << 10, p.curve_all_bytes[1] = 1 << 30;
    p.curve_all_bandwidth[0] = p.curve_all_bandwidth[1] = 300e9;
    fl_cost_lowrank_step(&p, FL_METHOD_SVD, 64, 64, 16, 1, 2, false, 1e-8, &lc);
    const double tc = 24576 / 300e9, r = 24576 / (tc - 1e-8) / 2;
    assert_close(lc.dup_mem, 4096 / r, 1e-18);
    assert_close(lc.mem, 16384 / (2 * r), 1e-18);
    assert_close(lc.serial, 1e-8, 1e-20);
    /* a sync larger than the curve's time is held at half of it */
    fl_cost_lowrank_step(&p, FL_METHOD_SVD, 64, 64, 16, 1, 2, false, 1e-6, &lc);
    assert_close(lc.dup_mem, 4096 / (24576 / (0.5 * tc) / 2), 1e-18);
    p.n_curve_all = 0;
    /* batch 20 (not by rows): split by blocks, the whole batch's copy on the calling thread */
    assert_int_equal(fl_cost_predict_terms(&p, &a, specs, 20, 8, 2, &c, t), FL_OK);
    assert_close(t[1].seconds, fmax(7 * 4096 / bw, 20 * 64 * 1e-9) + fmax(16384 / (2 * bw), 20 * 64 * 2e-9 / 1.5) +
                                   20 * 16 * 64 * 1e-11,
                 1e-15);
}

/* Without the figures (a version 2 profile) the step is priced by the efficiencies, its cell update
 * apart, exactly as before them. */
static void test_without_figures(void **state) {
    (void)state;
    fl_profile p = lr_profile();
    memset(p.lr_proj_seconds, 0, sizeof p.lr_proj_seconds);
    fl_cost c;
    const fl_cost_term t = whh(&p, FL_METHOD_SVD, 16, 20, &c);
    /* SVD W_hh (4 x 64, 64) at rank 16: 16 (64 + 256) = 5120 weights, 20480 B at 100 B/s; flops
     * 20 x 2 x 5120 at 20 x gemv 30 (no rows table: B x gemv_flops, under gemm_flops 1000) */
    assert_close(t.mem_seconds, 20480 / 100.0, 1e-9);
    assert_close(t.compute_seconds, 20 * 2 * 5120.0 / 600.0, 1e-9);
    assert_close(t.seconds, 20 * 2 * 5120.0 / 600.0, 1e-9);
    assert_close(t.cell_seconds, 20 * 64 * 5.0, 1e-9);
}

/* lr_profile with far tables (weights beyond the private level): proj 3, SVD panel 5, CP panel 7;
 * its levels a private 16 KiB at 100 B/s and a shared 1 MiB at 10 B/s, DRAM 1 B/s, and a one-thread
 * curve at those plateaus that falls from the first to the second between 16 and 32 KiB, through
 * 20 KiB (the SVD step's W below) at the rate of bytes a quarter of which come from the second. */
static fl_profile far_profile(void) {
    fl_profile p = lr_profile();
    for (int j = 0; j < NR; j++)
        for (int k = 0; k < NK; k++) {
            p.lr_proj_far_seconds[j][k] = 3;
            p.lr_panel_far_seconds[FL_METHOD_SVD][j][k] = 5;
            p.lr_panel_far_seconds[FL_METHOD_CP][j][k] = 7;
        }
    p.n_levels = 2;
    p.level[0] = (fl_cache_level){.level = 2, .bytes = 16 << 10, .shared_cpus = 1, .bandwidth = 100.0};
    p.level[1] = (fl_cache_level){.level = 3, .bytes = 1 << 20, .shared_cpus = 2, .bandwidth = 10.0,
                                  .all_cores_bandwidth = 15.0};
    p.dram_bandwidth = 1;
    const size_t b[5] = {1 << 10, 16 << 10, 20 << 10, 32 << 10, 1 << 20};
    const double bw[5] = {100, 100, 1 / (0.75 / 100 + 0.25 / 10), 10, 10};
    p.n_curve = 5;
    for (int i = 0; i < 5; i++) p.curve_bytes[i] = b[i], p.curve_bandwidth[i] = bw[i];
    return p;
}

/* The far tables' share by a thread's working set: 0 up to the private level's capacity (16 KiB),
 * beyond it the share the curve reads from the last level (a quarter at 20 KiB, all from 32 KiB);
 * 0 without far tables. A step that fits is priced from the near tables, one whose W is past the
 * curve's fall from the far ones, one between from both, the split step by its thread's V and
 * half of U; a V past the private level streams its passes after the first from the last level at
 * its streaming rate. SVD at H = K = 64, R = 16: V 4096 B, U 16384 B. */
static void test_far(void **state) {
    (void)state;
    fl_profile p = far_profile();
    assert_close(fl_cost_lr_far_share(&p, 12 << 10), 0, 0);
    assert_close(fl_cost_lr_far_share(&p, 16 << 10), 0, 0);
    assert_close(fl_cost_lr_far_share(&p, 20 << 10), 0.25, 1e-12);
    assert_close(fl_cost_lr_far_share(&p, 32 << 10), 1, 1e-12);
    assert_close(fl_cost_lr_far_share(&p, 4 << 20), 1, 0); /* the curve's last point, DRAM's beyond */
    fl_profile old = p;
    memset(old.lr_proj_far_seconds, 0, sizeof old.lr_proj_far_seconds);
    memset(old.lr_panel_far_seconds, 0, sizeof old.lr_panel_far_seconds);
    assert_close(fl_cost_lr_far_share(&old, 32 << 10), 0, 0);
    fl_profile one = p; /* one level: nothing beyond the private one */
    one.n_levels = 1, one.n_curve = 0;
    assert_close(fl_cost_lr_far_share(&one, 32 << 10), 0, 0);
    fl_lr_cost lc, ln;
    /* CP, W = 4352 + 4096 B: fits, the near tables, as a profile without far ones prices it */
    fl_cost_lowrank_step(&p, FL_METHOD_CP, 64, 64, 16, 20, 1, false, 0, &lc);
    fl_cost_lowrank_step(&old, FL_METHOD_CP, 64, 64, 16, 20, 1, false, 0, &ln);
    assert_close(lc.dup_comp, 20 * 64 * 1.0, 1e-9);
    assert_close(lc.comp, 20 * 64 * 3.0, 1e-9);
    assert_memory_equal(&lc, &ln, sizeof lc);
    /* SVD, W = 20 KiB: a quarter far; without far tables the near ones */
    fl_cost_lowrank_step(&p, FL_METHOD_SVD, 64, 64, 16, 20, 1, false, 0, &lc);
    assert_close(lc.dup_comp, 20 * 64 * 1.5, 1e-9);
    assert_close(lc.comp, 20 * 64 * 2.75, 1e-9);
    fl_cost_lowrank_step(&old, FL_METHOD_SVD, 64, 64, 16, 20, 1, false, 0, &ln);
    assert_close(ln.dup_comp, 20 * 64 * 1.0, 1e-9);
    assert_close(ln.comp, 20 * 64 * 2.0, 1e-9);
    assert_close(lc.dup_mem, ln.dup_mem, 1e-12); /* V (4 KiB) fits: its passes as before */
    /* R = 32: V 8 KiB, U 32 KiB, all far */
    fl_cost_lowrank_step(&p, FL_METHOD_SVD, 64, 64, 32, 20, 1, false, 0, &lc);
    assert_close(lc.dup_comp, 20 * 64 * 3.0, 1e-9);
    assert_close(lc.comp, 20 * 64 * 5.0, 1e-9);
    /* split by blocks on two threads: a thread's V + U / 2 = 12 KiB, near */
    fl_cost_lowrank_step(&p, FL_METHOD_SVD, 64, 64, 16, 1, 2, false, 0, &lc);
    assert_close(lc.dup_comp, 64 * 1.0, 1e-9);
    assert_close(lc.comp, 64 * 2.0 / 2, 1e-9); /* its share of the panel, over the speed-up (2) */
    /* one thread at one row, a quarter far: the far figures read the last level (the SVD panel at
     * rank 256 streams 16 x 256 B in 5 s, above the level's 10 B/s), so the excess as at 20 rows */
    fl_cost_lowrank_step(&p, FL_METHOD_SVD, 64, 64, 16, 1, 1, false, 0, &lc);
    assert_close(lc.dup_comp, 64 * 1.5, 1e-9);
    assert_close(lc.comp, 64 * 2.75, 1e-9);
    /* ... but not where they read slower than the last level (a cold pass from memory: 16 x 256 B in
     * 1024 s, 4 B/s against 10): its step re-reads V and U as the streaming curve does, the mem terms
     * price it; at 20 rows the excess stays */
    fl_profile cold = p;
    for (int j = 0; j < NR; j++)
        for (int k = 0; k < NK; k++) cold.lr_panel_far_seconds[FL_METHOD_SVD][j][k] = 1024;
    fl_cost_lowrank_step(&cold, FL_METHOD_SVD, 64, 64, 16, 1, 1, false, 0, &lc);
    assert_close(lc.dup_comp, 64 * 1.0, 1e-9);
    assert_close(lc.comp, 64 * 2.0, 1e-9);
    fl_cost_lowrank_step(&cold, FL_METHOD_SVD, 64, 64, 16, 20, 1, false, 0, &lc);
    assert_close(lc.dup_comp, 20 * 64 * 1.5, 1e-9);
    assert_close(lc.comp, 20 * 64 * (2 + 0.25 * (1024 - 2)), 1e-9);
    /* on two threads the far excess goes at the last level's two-core rate over one core's (15 / 10):
     * split by blocks at K = 32, R = 32 (V 4 KiB + U / 2 16 KiB: a quarter far) each thread its half
     * of U's excess, none of V's (both threads read the same V at once); the near parts as before
     * (compute over the speed-up, 2 here: no measured one) */
    fl_cost_lowrank_step(&p, FL_METHOD_SVD, 64, 32, 32, 1, 2, false, 0, &lc);
    assert_close(lc.dup_comp, 32 * 1.0, 1e-9);
    assert_close(lc.comp, 64 * (2.0 / 2 + 0.25 * 3 / 1.5), 1e-9);
    /* by rows (40 rows, 20 a thread) each thread holds all of W, a quarter far as one thread's; the
     * threads read the same lines at once, so the excess is paid once, at the two-core rate */
    fl_cost_lowrank_step(&p, FL_METHOD_SVD, 64, 64, 16, 40, 2, true, 0, &lc);
    assert_close(lc.dup_comp, 20 * 64 * (1 + 0.25 * 2 / 1.5), 1e-9);
    assert_close(lc.comp, 20 * 64 * (2 + 0.25 * 3 / 1.5), 1e-9);
    /* the private level reported at 32 KiB (its knee 16 KiB: a kernel's slowdown on the dense curve,
     * not the cache's end): a one-thread step whose W fits 3/4 of the reported size (W 20 KiB of 24)
     * is priced by the near tables alone, no streaming term and no far excess; on two threads as
     * before; one whose W does not fit (R 32: 40 KiB) as before */
    fl_profile rep = p;
    rep.level[0].reported_bytes = 32 << 10;
    fl_cost_lowrank_step(&rep, FL_METHOD_SVD, 64, 64, 16, 20, 1, false, 0, &lc);
    assert_close(lc.dup_comp, 20 * 64 * 1.0, 1e-9);
    assert_close(lc.comp, 20 * 64 * 2.0, 1e-9);
    assert_close(lc.dup_mem, 0, 0);
    assert_close(lc.mem, 0, 0);
    fl_cost_lowrank_step(&rep, FL_METHOD_SVD, 64, 64, 16, 40, 2, true, 0, &lc);
    fl_cost_lowrank_step(&p, FL_METHOD_SVD, 64, 64, 16, 40, 2, true, 0, &ln);
    assert_memory_equal(&lc, &ln, sizeof lc);
    fl_cost_lowrank_step(&rep, FL_METHOD_SVD, 64, 64, 32, 20, 1, false, 0, &lc);
    fl_cost_lowrank_step(&p, FL_METHOD_SVD, 64, 64, 32, 20, 1, false, 0, &ln);
    assert_memory_equal(&lc, &ln, sizeof lc);
    /* K = 1024: V 64 KiB, past the curve's fall: the first pass at the curve's rate at W (10 B/s),
     * the six after it at the last level's streaming rate (10 B/s: V re-read from there, not at the
     * far proj figure's one cold pass, K 3 s); without far tables all seven at the curve's rate at V */
    fl_cost_lowrank_step(&p, FL_METHOD_SVD, 64, 1024, 16, 20, 1, false, 0, &lc);
    assert_close(lc.dup_mem, 65536 / 10.0 + 6 * 65536 / 10.0, 1e-9);
    fl_cost_lowrank_step(&old, FL_METHOD_SVD, 64, 1024, 16, 20, 1, false, 0, &ln);
    assert_close(ln.dup_mem, 7 * 65536 / 10.0, 1e-9);
    /* K = 320: V 20 KiB, in the fall (a quarter far), W 36 KiB past it: the passes after the first at
     * the curve's rate at V, a quarter of the way to the last level's */
    fl_cost_lowrank_step(&p, FL_METHOD_SVD, 64, 320, 16, 20, 1, false, 0, &lc);
    const double v20 = 20480, at_v = v20 / p.curve_bandwidth[2];
    assert_close(lc.dup_mem, v20 / 10.0 + 6 * (at_v + 0.25 * (v20 / 10.0 - at_v)), 1e-9);
}

/* Version 3 and later files carry the figures; a version 2 file (none) loads and is priced the old way; a
 * malformed "lowrank" is refused, naming the field. */
static void test_file(void **state) {
    (void)state;
    fl_profile p = lr_profile(), q;
    fill(p.lr_proj_seconds);
    p.lr_panel_seconds[FL_METHOD_CP][2][3] = 7.5;
    p.id.cores = 1; /* a file names its machine */
    const char *path = tmp_path("lowrank_profile.json");
    assert_int_equal(fl_profile_save(&p, path), FL_OK);
    if (fl_profile_load(path, &q)) fail_msg("%s", fl_last_error());
    assert_memory_equal(q.lr_proj_seconds, p.lr_proj_seconds, sizeof p.lr_proj_seconds);
    assert_memory_equal(q.lr_panel_seconds, p.lr_panel_seconds, sizeof p.lr_panel_seconds);
    assert_close(q.gx_copy_seconds, 0.01, 1e-15);
    for (int j = 0; j < NR; j++) /* no far tables written: none read */
        for (int k = 0; k < NK; k++) assert_true(q.lr_proj_far_seconds[j][k] == 0);
    /* the same file as version 2 wrote it: no "lowrank" */
    cJSON *root = json_file_read(path);
    assert_int_equal(cJSON_GetObjectItem(root, "version")->valuedouble, 8);
    cJSON *lr = cJSON_DetachItemFromObject(root, "lowrank");
    assert_non_null(lr);
    cJSON_SetNumberValue(cJSON_GetObjectItem(root, "version"), 2);
    json_file_write(path, root);
    assert_int_equal(fl_profile_load(path, &q), FL_OK);
    assert_false(fl_cost_has_lowrank(&q));
    fl_profile old = p;
    memset(old.lr_proj_seconds, 0, sizeof old.lr_proj_seconds);
    memset(old.lr_panel_seconds, 0, sizeof old.lr_panel_seconds);
    fl_cost c2, cold;
    const fl_cost_term t2 = whh(&q, FL_METHOD_CP, 16, 20, &c2), told = whh(&old, FL_METHOD_CP, 16, 20, &cold);
    assert_close(t2.seconds, told.seconds, 1e-12);
    assert_close(c2.seconds, cold.seconds, 1e-12);
    /* malformed: an entry 0, a short table, a table missing */
    cJSON_AddItemToObject(root, "lowrank", lr);
    cJSON_SetNumberValue(cJSON_GetObjectItem(root, "version"), 3);
    const char *bad[3] = {"svd_panel_seconds", "proj_seconds", "cp_panel_seconds"};
    for (int i = 0; i < 3; i++) {
        cJSON *r2 = cJSON_Duplicate(root, 1), *l2 = cJSON_GetObjectItem(r2, "lowrank");
        cJSON *arr = cJSON_GetObjectItem(l2, bad[i]);
        if (i == 0) cJSON_SetNumberValue(cJSON_GetArrayItem(arr, 3), 0);
        else if (i == 1) cJSON_DeleteItemFromArray(arr, 0);
        else cJSON_DeleteItemFromObject(l2, bad[i]);
        json_file_write(path, r2);
        cJSON_Delete(r2);
        assert_int_equal(fl_profile_load(path, &q), FL_ERR_FORMAT);
        assert_non_null(strstr(fl_last_error(), bad[i]));
    }
    cJSON_Delete(root);
}

/* Format 5's far tables: written and read back exactly; a version 4 file (none) loads and prices a
 * step past the private level from the near tables, as before; a malformed or partial set of far
 * tables is refused, naming the table. */
static void test_file_far(void **state) {
    (void)state;
    fl_profile p = far_profile(), q;
    fill(p.lr_proj_far_seconds);
    p.lr_panel_far_seconds[FL_METHOD_SVD][3][1] = 9.25;
    p.id.cores = 1;
    const char *path = tmp_path("lowrank_far.json");
    assert_int_equal(fl_profile_save(&p, path), FL_OK);
    if (fl_profile_load(path, &q)) fail_msg("%s", fl_last_error());
    assert_memory_equal(q.lr_proj_far_seconds, p.lr_proj_far_seconds, sizeof p.lr_proj_far_seconds);
    assert_memory_equal(q.lr_panel_far_seconds, p.lr_panel_far_seconds, sizeof p.lr_panel_far_seconds);
    fl_lr_cost lq, lp;
    fl_cost_lowrank_step(&q, FL_METHOD_SVD, 64, 64, 16, 20, 1, false, 0, &lq);
    fl_cost_lowrank_step(&p, FL_METHOD_SVD, 64, 64, 16, 20, 1, false, 0, &lp);
    assert_memory_equal(&lq, &lp, sizeof lq);
    /* version 4: the same file without the far tables */
    cJSON *root = json_file_read(path), *lr = cJSON_GetObjectItem(root, "lowrank");
    static const char *const keys[3] = {"proj_far_seconds", "svd_panel_far_seconds", "cp_panel_far_seconds"};
    cJSON *r4 = cJSON_Duplicate(root, 1), *l4 = cJSON_GetObjectItem(r4, "lowrank");
    for (int i = 0; i < 3; i++) cJSON_DeleteItemFromObject(l4, keys[i]);
    cJSON_SetNumberValue(cJSON_GetObjectItem(r4, "version"), 4);
    json_file_write(path, r4);
    cJSON_Delete(r4);
    if (fl_profile_load(path, &q)) fail_msg("%s", fl_last_error());
    fl_profile near = p;
    memset(near.lr_proj_far_seconds, 0, sizeof near.lr_proj_far_seconds);
    memset(near.lr_panel_far_seconds, 0, sizeof near.lr_panel_far_seconds);
    fl_cost_lowrank_step(&q, FL_METHOD_SVD, 64, 64, 16, 20, 1, false, 0, &lq);
    fl_cost_lowrank_step(&near, FL_METHOD_SVD, 64, 64, 16, 20, 1, false, 0, &lp);
    assert_memory_equal(&lq, &lp, sizeof lq);
    assert_close(lq.comp, 20 * 64 * 2.0, 1e-9); /* a quarter far with the tables, none without */
    /* malformed: an entry 0 in one far table; one far table missing of three */
    assert_non_null(lr);
    for (int i = 0; i < 2; i++) {
        cJSON *r2 = cJSON_Duplicate(root, 1), *l2 = cJSON_GetObjectItem(r2, "lowrank");
        if (i == 0) cJSON_SetNumberValue(cJSON_GetArrayItem(cJSON_GetObjectItem(l2, keys[1]), 2), 0);
        else cJSON_DeleteItemFromObject(l2, keys[2]);
        json_file_write(path, r2);
        cJSON_Delete(r2);
        assert_int_equal(fl_profile_load(path, &q), FL_ERR_FORMAT);
        assert_non_null(strstr(fl_last_error(), keys[i + 1]));
    }
    cJSON_Delete(root);
}

static int setup(void **state) {
    (void)state;
    return tmp_dir_make("test_cost_lowrank");
}

static int teardown(void **state) {
    (void)state;
    return tmp_dir_remove();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_interpolation),
        cmocka_unit_test(test_step_price),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_without_figures),
        cmocka_unit_test(test_far),
        cmocka_unit_test(test_file),
        cmocka_unit_test(test_file_far),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
