/* Machine profile: the streaming ladder measured in several interleaved passes and combined point by
 * point by their median (fl_profile_curve_median) before the knees are read off it
 * (fl_profile_find_levels). A neighbour's burst that slows some sizes in one pass must not move a
 * knee; a fall that most passes see must. Synthetic curves only: nothing is timed but the cell
 * update a profile run's begin takes (test_run_refusals), and no test reads a time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fastlstm/plan.h"
#include "plan/profile_internal.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)
#define NPTS 61 /* the profile's ladder: 16 KiB * 2^(k/4), to 512 MiB */
#define NP FL_PROFILE_PASSES

static size_t ladder(int k) { return (size_t)(16384.0 * pow(2.0, k / 4.0)); }

/* Index of the largest ladder size <= bytes. */
static int ladder_index(size_t bytes) {
    int best = 0;
    for (int k = 0; k < NPTS; k++)
        if (ladder(k) <= bytes) best = k;
    return best;
}

/* This VM's shape: 32 KiB L1 at 200 GB/s, 512 KiB L2 at 100, an L3 share of 8 MiB at 48, memory at
 * 11.5; each level falls over one ladder point (30% of the way down). A small deterministic
 * wobble per pass (+-3%) keeps the passes from being copies. */
static void pass_curve(int pass, size_t *bytes, double *bw) {
    const size_t cap[3] = {32 * KIB, 512 * KIB, 8 * MIB};
    const double rate[4] = {200e9, 100e9, 48e9, 11.5e9};
    for (int k = 0; k < NPTS; k++) {
        bytes[k] = ladder(k);
        int lv = 0;
        while (lv < 3 && bytes[k] > cap[lv]) lv++;
        double r = rate[lv];
        if (lv > 0 && (double)bytes[k] <= 1.2 * (double)cap[lv - 1]) r = rate[lv] + 0.3 * (rate[lv - 1] - rate[lv]);
        bw[k] = r * (1.0 + 0.03 * sin(1.7 * k + 2.3 * pass));
    }
}

/* Knee of the third cache level found on curve bw; exact: fails the test unless there are exactly
 * 3 levels (a disturbed curve may show a spurious fourth). */
static size_t knee3(const size_t *bytes, const double *bw, double *mem, bool exact) {
    fl_knee k[FL_PROFILE_MAX_LEVELS];
    int n = fl_profile_find_levels(bytes, bw, NPTS, k, FL_PROFILE_MAX_LEVELS, mem);
    if (exact) assert_int_equal(n, 3);
    else assert_true(n >= 3);
    return k[2].bytes;
}

static size_t l3_knee(const size_t *bytes, const double *bw, double *mem) { return knee3(bytes, bw, mem, true); }

/* passes (NP, NPTS) of the clean curve; then bw = their median. */
static void clean_passes(size_t *bytes, double *passes) {
    for (int q = 0; q < NP; q++) pass_curve(q, bytes, passes + q * NPTS);
}

static void test_median_of_passes(void **state) {
    (void)state;
    /* 3 passes: the middle value; 2 passes: the upper of the two; 1 pass: itself */
    const double v[3 * 4] = {1, 5, 9, 2, /* pass 0 */ 3, 4, 8, 7, /* pass 1 */ 2, 6, 7, 1};
    double out[4];
    fl_profile_curve_median(v, 3, 4, out);
    const double want3[4] = {2, 5, 8, 2};
    for (int i = 0; i < 4; i++) assert_true(out[i] == want3[i]);
    fl_profile_curve_median(v, 2, 4, out);
    const double want2[4] = {3, 5, 9, 7};
    for (int i = 0; i < 4; i++) assert_true(out[i] == want2[i]);
    fl_profile_curve_median(v, 1, 4, out);
    for (int i = 0; i < 4; i++) assert_true(out[i] == v[i]);
    /* bench_plan's passes, one per round: 5 (its default) and FL_PROFILE_MAX_PASSES, in any order */
    double w[FL_PROFILE_MAX_PASSES * 2];
    for (int q = 0; q < FL_PROFILE_MAX_PASSES; q++) w[2 * q] = (q * 5) % 8, w[2 * q + 1] = 10.0 - q;
    fl_profile_curve_median(w, 5, 2, out); /* {0, 5, 2, 7, 4} and {10..6} */
    assert_true(out[0] == 4 && out[1] == 8);
    fl_profile_curve_median(w, FL_PROFILE_MAX_PASSES, 2, out); /* 0..7 and 10..3: the upper middle */
    assert_true(out[0] == 4 && out[1] == 7);
}

/* A burst in one pass that slows two neighbouring sizes just below the L3 knee to memory speed:
 * that pass alone reads a knee below the dip (the median-of-3 smoothing inside find_levels cannot
 * remove two points), the median of the passes reads the clean knee. */
static void test_transient_dip_keeps_knee(void **state) {
    (void)state;
    size_t b[NPTS];
    double passes[NP * NPTS], bw[NPTS], mem_clean, mem;
    clean_passes(b, passes);
    fl_profile_curve_median(passes, NP, NPTS, bw);
    const size_t clean = l3_knee(b, bw, &mem_clean);
    assert_int_equal(clean, ladder(ladder_index(8 * MIB)));
    const int d = ladder_index(8 * MIB) - 3; /* 4.8 and 5.7 MiB: well inside the L3 share */
    for (int at = 0; at < NP; at++) {
        clean_passes(b, passes);
        double *p = passes + at * NPTS;
        p[d] = p[d + 1] = 11.5e9;
        /* the disturbed pass alone keeps it too: the rate recovers after the dip, so nothing fell
         * (fl_profile_find_levels does not start a level at the L3's own rate) */
        assert_int_equal(knee3(b, p, NULL, true), clean);
        fl_profile_curve_median(passes, NP, NPTS, bw);
        assert_int_equal(l3_knee(b, bw, &mem), clean);
        assert_true(fabs(mem - mem_clean) < 0.05 * mem_clean);
    }
    /* one slow point in every pass, each at a different size: still the clean knee */
    clean_passes(b, passes);
    for (int q = 0; q < NP; q++) passes[q * NPTS + d - q] = 11.5e9;
    fl_profile_curve_median(passes, NP, NPTS, bw);
    assert_int_equal(l3_knee(b, bw, NULL), clean);
}

/* The same dip seen by every pass, or by most of them, is a fall: the knee moves below it. */
static void test_persistent_fall_moves_knee(void **state) {
    (void)state;
    size_t b[NPTS];
    double passes[NP * NPTS], bw[NPTS];
    const int d = ladder_index(8 * MIB) - 3;
    for (int seen = NP / 2 + 1; seen <= NP; seen++) {
        clean_passes(b, passes);
        for (int q = 0; q < seen; q++) {
            double *p = passes + q * NPTS;
            for (int k = d; k < NPTS; k++) p[k] = 11.5e9 * (1.0 + 0.01 * q); /* the share fell to 4 MiB */
        }
        fl_profile_curve_median(passes, NP, NPTS, bw);
        assert_int_equal(l3_knee(b, bw, NULL), ladder(d - 1));
    }
    /* a DRAM figure that one pass reads low (a neighbour streaming at the top of the ladder) does
     * not move the memory plateau */
    clean_passes(b, passes);
    double mem_clean, mem;
    fl_profile_curve_median(passes, NP, NPTS, bw);
    l3_knee(b, bw, &mem_clean);
    for (int k = ladder_index(64 * MIB); k < NPTS; k++) passes[NPTS + k] *= 0.8;
    fl_profile_curve_median(passes, NP, NPTS, bw);
    l3_knee(b, bw, &mem);
    assert_true(fabs(mem - mem_clean) < 0.05 * mem_clean);
}

/* A dip that most passes met and the larger sizes recover from (the other vCPU taken while those
 * sizes were timed) is lifted to the rate after it; a fall to the end of the ladder is kept; one
 * high point lifts at most the FL_CURVE_DIP_WINDOW points before it. */
static void test_lift_dips(void **state) {
    (void)state;
    size_t b[NPTS];
    double passes[NP * NPTS], bw[NPTS], clean[NPTS];
    clean_passes(b, passes);
    fl_profile_curve_median(passes, NP, NPTS, clean);
    memcpy(bw, clean, sizeof bw);
    fl_profile_curve_lift_dips(bw, NPTS);
    for (int k = 0; k < NPTS; k++) { /* the wobble alone: nothing moves by more than it */
        assert_true(bw[k] >= clean[k]);
        assert_true(bw[k] <= 1.07 * clean[k]);
    }
    const int d = ladder_index(8 * MIB) - 3;
    for (int q = 0; q < NP; q++) passes[q * NPTS + d] = passes[q * NPTS + d + 1] = 11.5e9;
    fl_profile_curve_median(passes, NP, NPTS, bw);
    fl_profile_curve_lift_dips(bw, NPTS);
    assert_true(bw[d] >= 0.94 * 48e9 && bw[d + 1] >= 0.94 * 48e9);
    assert_int_equal(l3_knee(b, bw, NULL), ladder(ladder_index(8 * MIB)));
    /* the share fell to 4 MiB for good: the points past the fall stay at memory's rate */
    clean_passes(b, passes);
    for (int q = 0; q < NP; q++)
        for (int k = d; k < NPTS; k++) passes[q * NPTS + k] = 11.5e9;
    fl_profile_curve_median(passes, NP, NPTS, bw);
    fl_profile_curve_lift_dips(bw, NPTS);
    for (int k = d; k < NPTS; k++) assert_true(bw[k] == 11.5e9);
    assert_int_equal(l3_knee(b, bw, NULL), ladder(d - 1));
    /* one high point past the fall lifts the window before it, no further */
    double v[10] = {9, 8, 7, 1, 1, 1, 1, 1, 5, 1};
    fl_profile_curve_lift_dips(v, 10);
    const double want[10] = {9, 8, 7, 1, 1, 5, 5, 5, 5, 1};
    for (int k = 0; k < 10; k++) assert_true(v[k] == want[k]);
}

/* The top of the ladder read 20% slow in most passes (a neighbour streaming at that moment): no
 * spurious level between the last cache and memory. */
static void test_slow_top_is_memory(void **state) {
    (void)state;
    size_t b[NPTS];
    double passes[NP * NPTS], bw[NPTS], mem;
    clean_passes(b, passes);
    for (int q = 0; q < NP; q++) passes[q * NPTS + NPTS - 1] *= 0.75, passes[q * NPTS + NPTS - 2] *= q ? 0.75 : 1;
    fl_profile_curve_median(passes, NP, NPTS, bw);
    assert_int_equal(l3_knee(b, bw, &mem), ladder(ladder_index(8 * MIB)));
    assert_true(mem > 10e9 && mem < 13e9);
}

/* The rate figures (profile_rates.c) from hand-made passes: each figure is the median of its passes
 * (a slow or fast pass moves nothing), the step's rate is taken without its cell update, and a
 * two-thread speed-up is the median of each pass's own ratio (one-thread time over the N-thread
 * time timed right after it), not the ratio of the two medians. No curves: the fork / join cost
 * (fl_cost_thread_sync) is 0. */
static void test_rates_median_of_passes(void **state) {
    (void)state;
    enum { NK = FL_PROFILE_GEMM_POINTS };
    fl_profile p;
    memset(&p, 0, sizeof p);
    p.cell_seconds = 1e-9; /* 1 ns a unit and row at every batch (no batch-1 figure) */
    fl_rate_passes rp;
    memset(&rp, 0, sizeof rp);
    rp.n = 3, rp.threads = 2;
    const double gemm[3] = {50e9, 80e9, 60e9}, gemv[3] = {0, 55e9, 70e9};
    const double f[3] = {1.0, 2.0, 0.9}; /* the pass's one-thread product time, x u */
    const double g[3] = {0.5, 2.0, 0.9}; /* its two-thread product time, x u: ratios 2, 1, 1 */
    const double proj[3] = {1.8, 0.9, 1.6}, rows[3] = {1.0, 0.5, 1.2};
    for (int q = 0; q < 3; q++) {
        rp.gemm[q] = gemm[q], rp.gemv[q] = gemv[q];
        for (int k = 0; k < NK; k++) {
            const int B = 4 << (2 * k);
            const double u = 10e-6 * B / 4, cell = B * 256 * 1e-9;
            rp.rows[q][k] = 30e9 * (k + 1) * rows[q];
            rp.rec_t1[q][k] = u * f[q] + cell;
            rp.rec_tn[q][k] = u * g[q] + cell / 2;
            rp.proj[q][k] = proj[q] + 0.01 * k;
        }
    }
    fl_profile_rates_apply(&rp, &p);
    assert_true(fabs(p.gemm_flops - 60e9) < 1);
    assert_true(fabs(p.gemv_flops - 55e9) < 1);
    for (int k = 0; k < NK; k++) {
        const int B = 4 << (2 * k);
        const double u = 10e-6 * B / 4;
        assert_true(fabs(p.gemm_rows_flops[k] - 30e9 * (k + 1)) < 1);
        assert_true(fabs(p.rec_rows_flops[k] / (8.0 * 256 * 256 * B / u) - 1) < 1e-9); /* pass 0's */
        assert_true(fabs(p.thread_scale_rec[k] - 1.0) < 1e-9); /* median of 2, 1, 1 (medians' ratio: 1.11) */
        assert_true(fabs(p.thread_scale_proj[k] - (1.6 + 0.01 * k)) < 1e-12);
        assert_true(p.thread_scale_proj_mem[k] == 0); /* no packed projection in any pass: none */
    }
    /* two passes: the upper one of the middle two, as the ladder's median */
    rp.n = 2;
    fl_profile_rates_apply(&rp, &p);
    assert_true(fabs(p.gemm_flops - 80e9) < 1);
    assert_true(fabs(p.thread_scale_rec[0] - 2.0) < 1e-9);
    /* one CPU: no speed-ups at all */
    rp.n = 3, rp.threads = 0;
    fl_profile_rates_apply(&rp, &p);
    for (int k = 0; k < NK; k++)
        assert_true(p.thread_scale_rec[k] == 0 && p.thread_scale_proj[k] == 0 && p.thread_scale_proj_mem[k] == 0);
    assert_true(fabs(p.gemm_flops - 60e9) < 1);
    /* no passes: p is left alone */
    p.gemm_flops = 1;
    rp.n = 0;
    fl_profile_rates_apply(&rp, &p);
    assert_true(p.gemm_flops == 1);
    /* a pass past the last is refused before anything is timed */
    rp.n = FL_PROFILE_MAX_PASSES;
    assert_int_equal(fl_profile_rates_pass(&p, &rp), FL_ERR_ARG);
    assert_int_equal(rp.n, FL_PROFILE_MAX_PASSES);
}

/* A profile run's calls refuse what they cannot do before timing anything: finishing without a pass
 * (no curve to read), NULL arguments; begin fills p's reported figures (no timing: each pass times
 * its own cell update first) and free releases the run. */
static void test_run_refusals(void **state) {
    (void)state;
    fl_profile p;
    fl_profile_run *r = NULL;
    assert_int_equal(fl_profile_run_begin(NULL, &r), FL_ERR_ARG);
    assert_int_equal(fl_profile_run_begin(&p, NULL), FL_ERR_ARG);
    assert_int_equal(fl_profile_run_pass(NULL), FL_ERR_ARG);
    assert_int_equal(fl_profile_run_finish(NULL), FL_ERR_ARG);
    assert_int_equal(fl_profile_run_passes(NULL), 0);
    fl_profile_run_free(NULL);
    assert_int_equal(fl_profile_run_begin(&p, &r), FL_OK);
    assert_non_null(r);
    assert_true(p.n_levels >= 1 && !p.measured);
    assert_int_equal(fl_profile_run_passes(r), 0);
    assert_int_equal(fl_profile_run_finish(r), FL_ERR_ARG); /* no pass: nothing to take medians of */
    assert_false(p.measured);
    fl_profile_run_free(r);
}

/* The low-rank kernels' figures are the median of every draw a run took (three a pass), not of the
 * first FL_PROFILE_MAX_PASSES: 6 slow draws then 9 fast ones read fast, while the first 8 alone
 * (6 slow) would read slow. */
static void test_lowrank_median_of_draws(void **state) {
    (void)state;
    fl_lr_passes *lp = calloc(1, sizeof *lp);
    assert_non_null(lp);
    enum { DRAWS = 5 * FL_PROFILE_LR_DRAWS, N = FL_PROFILE_LR_RANKS * FL_PROFILE_LR_ROWS };
    assert_true(DRAWS <= FL_PROFILE_MAX_DRAWS && DRAWS > FL_PROFILE_MAX_PASSES);
    lp->n = DRAWS;
    for (int q = 0; q < DRAWS; q++) {
        const double v = q < 6 ? 1.3e-9 : 1.0e-9;
        for (int i = 0; i < N; i++) {
            lp->proj[q][i] = lp->panel[q][0][i] = lp->panel[q][1][i] = v;
            lp->proj_far[q][i] = lp->panel_far[q][0][i] = lp->panel_far[q][1][i] = 2 * v;
            lp->ih_in[q][i] = lp->ih_out[q][0][i] = lp->ih_out[q][1][i] = v;
        }
        lp->copy[q] = v;
    }
    fl_profile p = {0};
    fl_profile_lowrank_apply(lp, &p);
    for (int j = 0; j < FL_PROFILE_LR_RANKS; j++)
        for (int k = 0; k < FL_PROFILE_LR_ROWS; k++) {
            assert_true(p.lr_proj_seconds[j][k] == 1.0e-9);
            assert_true(p.lr_panel_seconds[FL_METHOD_SVD][j][k] == 1.0e-9);
            assert_true(p.lr_panel_seconds[FL_METHOD_CP][j][k] == 1.0e-9);
            assert_true(p.lr_proj_far_seconds[j][k] == 2.0e-9);
            assert_true(p.lr_panel_far_seconds[FL_METHOD_SVD][j][k] == 2.0e-9);
            assert_true(p.lr_panel_far_seconds[FL_METHOD_CP][j][k] == 2.0e-9);
            assert_true(p.lr_ih_in_seconds[j][k] == 1.0e-9);
            assert_true(p.lr_ih_out_seconds[FL_METHOD_CP][j][k] == 1.0e-9);
        }
    assert_true(p.gx_copy_seconds == 1.0e-9);
    free(lp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lowrank_median_of_draws),
        cmocka_unit_test(test_median_of_passes),
        cmocka_unit_test(test_transient_dip_keeps_knee),
        cmocka_unit_test(test_persistent_fall_moves_knee),
        cmocka_unit_test(test_lift_dips),
        cmocka_unit_test(test_slow_top_is_memory),
        cmocka_unit_test(test_rates_median_of_passes),
        cmocka_unit_test(test_run_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
