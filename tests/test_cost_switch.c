/* Cost model, the runtime's split step as a session runs it (format 4): the profile's
 * thread_sync_seconds (the split step's own cost, timed on the runtime's step) in place of the sync
 * read off the curves, and thread_switch_seconds (the layer switch: a layer on N threads after one
 * whose pool's workers still spin gains nothing over the first W seconds of one thread's work of its
 * run). fl_profile_switch_apply on hand-made passes, the priced loss against hand-computed figures,
 * the profile file's round trip, and a file without the fields loading and predicting as before.
 * Nothing here is timed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fastlstm/plan.h"
#include "internal.h"
#include "testutil.h"
#include "plan/profile_internal.h"

#include "json_file.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* L1 (private, 512 bytes, 1000 B/s), a shared L3 of 64 KiB at 100 B/s (150 with both threads);
 * DRAM 10 B/s; mat-vec 100 flop/s, sgemm 1000; no rule for the threads (every part splits), no
 * curves, efficiencies, cell, bias or overhead terms. */
static fl_profile hand_profile(void) {
    fl_profile p = {0};
    p.cores = 2;
    p.simd_bits = 256;
    p.n_levels = 2;
    p.level[0] = (fl_cache_level){.level = 1, .bytes = 512, .shared_cpus = 1, .bandwidth = 1000.0};
    p.level[1] = (fl_cache_level){.level = 3, .bytes = 1 << 16, .shared_cpus = 2, .bandwidth = 100.0,
                                  .all_cores_bandwidth = 150.0};
    p.dram_bandwidth = 10.0;
    p.gemm_flops = 1000.0;
    p.gemv_flops = 100.0;
    p.curve_all_threads = 2;
    return p;
}

static const fl_arch two = {.input = 4, .hidden = 16, .layers = 2, .head = FL_HEAD_NONE};
static const fl_arch one = {.input = 4, .hidden = 16, .layers = 1, .head = FL_HEAD_NONE};
enum { SEQ = 8 };

/* Prediction of arch a at batch 1 on `threads`, its terms in t (4 at most). */
static fl_cost predict(const fl_profile *p, const fl_arch *a, int threads, fl_cost_term *t) {
    fl_cost c;
    assert_int_equal(fl_cost_predict_terms(p, a, NULL, 1, SEQ, threads, &c, t), FL_OK);
    return c;
}

/* One thread's seconds of a layer's parts (W_ih, then W_hh) inside a window of w, times the share
 * of each that the split would have saved, per step: the loss the header describes, computed here
 * from the two predictions' terms. */
static double loss_of(double w, const fl_cost_term *tn, const fl_cost_term *t1) {
    double lost = 0;
    for (int k = 0; k < 2; k++) {
        const double s1 = t1[k].seconds + t1[k].cell_seconds, sn = tn[k].seconds + tn[k].cell_seconds;
        const double used = fmin(w, SEQ * s1);
        if (s1 > sn) lost += used * (1 - sn / s1);
        w -= used;
    }
    return lost / SEQ;
}

/* sync: the median of tone - t1 / N; the window: T t1 (talt - tone) / (t1 - tone), held to
 * [0, T t1], from the passes whose split gained >= 5% only. */
static void test_switch_apply(void **state) {
    (void)state;
    const double T = 256; /* profile_threads.c's steps per layer run */
    double sw[3][3] = {{5e-6, 3.5e-6, 4.0e-6}, {5e-6, 4.9e-6, 5.0e-6}, {4e-6, 3e-6, 3.1e-6}};
    fl_profile p = {0};
    fl_profile_switch_apply((const double(*)[3])sw, 3, 2, &p);
    /* sync: 1.0, 2.4, 1.0 us: median 1.0 */
    assert_close(p.thread_sync_seconds, 1.0e-6, 1e-15);
    /* the second pass gained 2%: left out; windows T 5e-6 * 0.5 / 1.5 and T 4e-6 * 0.1 / 1: the
     * upper of the two middle ones */
    const double w1 = T * 5e-6 * 0.5e-6 / 1.5e-6, w3 = T * 4e-6 * 0.1e-6 / 1e-6;
    assert_close(p.thread_switch_seconds, fmax(w1, w3), 1e-15);
    /* held to [0, T t1]: an alternation faster than the layer alone, one slower than one thread */
    double lo[1][3] = {{5e-6, 3e-6, 2.9e-6}}, hi[1][3] = {{5e-6, 3e-6, 9e-6}};
    fl_profile_switch_apply((const double(*)[3])lo, 1, 2, &p);
    assert_true(p.thread_switch_seconds == 0);
    fl_profile_switch_apply((const double(*)[3])hi, 1, 2, &p);
    assert_close(p.thread_switch_seconds, T * 5e-6, 1e-15);
    /* one thread, or no pass: nothing */
    fl_profile_switch_apply((const double(*)[3])sw, 3, 1, &p);
    assert_true(p.thread_sync_seconds == 0 && p.thread_switch_seconds == 0);
    fl_profile_switch_apply((const double(*)[3])sw, 0, 2, &p);
    assert_true(p.thread_sync_seconds == 0 && p.thread_switch_seconds == 0);
}

/* fl_profile_rates_apply takes its sync from the passes' split step (switch_apply first), and a sync
 * larger than the two-thread step time it is taken from leaves a positive speed-up (the subtraction
 * kept to a fifth of that time), not a negative one the loader would refuse. */
static void test_rates_big_sync(void **state) {
    (void)state;
    fl_profile p = {0};
    p.cell_seconds = 1e-9;
    fl_rate_passes rp;
    memset(&rp, 0, sizeof rp);
    rp.n = 1, rp.threads = 2;
    rp.gemm[0] = rp.gemv[0] = 1e9;
    rp.sw[0][0] = 4e-6, rp.sw[0][1] = 1e-2, rp.sw[0][2] = 1e-2; /* sync 9.998 ms: above every tN */
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) {
        const int B = 4 << (2 * k);
        rp.rows[0][k] = 1e9;
        rp.rec_t1[0][k] = 10e-6 * B + B * 256 * 1e-9;
        rp.rec_tn[0][k] = 6e-6 * B + B * 256 * 1e-9 / 2;
    }
    fl_profile_rates_apply(&rp, &p);
    assert_close(p.thread_sync_seconds, 1e-2 - 2e-6, 1e-15);
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) {
        const int B = 4 << (2 * k);
        const double t1 = 10e-6 * B, tn = 0.2 * rp.rec_tn[0][k], d = tn - B * 256 * 1e-9 / 2;
        assert_close(p.thread_scale_rec[k], t1 / (d > 0.2 * tn ? d : 0.2 * tn), 1e-9);
        assert_true(p.thread_scale_rec[k] > 0);
    }
}

/* fl_cost_thread_sync: the measured figure when there is one, else the curves' (0 without them). */
static void test_sync_measured(void **state) {
    (void)state;
    fl_profile p = hand_profile();
    assert_true(fl_cost_thread_sync(&p) == 0);
    p.thread_sync_seconds = 2.5e-6;
    assert_close(fl_cost_thread_sync(&p), 2.5e-6, 1e-18);
    /* it is the split step's sync: a two-thread W_hh term pays it, a one-thread one does not */
    fl_profile q = hand_profile();
    fl_cost_term ta[2], tb[2];
    predict(&q, &one, 2, ta);
    predict(&p, &one, 2, tb);
    assert_close(tb[1].compute_seconds - ta[1].compute_seconds, 2.5e-6, 1e-12);
    predict(&q, &one, 1, ta);
    predict(&p, &one, 1, tb);
    assert_close(tb[1].seconds, ta[1].seconds, 1e-15);
}

/* The layer switch: two layers on two threads lose the split's gain over the window, each layer
 * after the other (the first after the last); one thread, one layer, a layer after a one-thread
 * layer, and a profile without the figure are priced as before. */
static void test_switch_prices(void **state) {
    (void)state;
    fl_profile base = hand_profile(), p = base;
    fl_cost_term t1[4], tn[4], tw[4];
    const fl_cost c1 = predict(&base, &two, 1, t1), cn = predict(&base, &two, 2, tn);
    assert_true(cn.seconds < c1.seconds); /* the split gains here */
    /* a window shorter than the projection's one-thread time, then one reaching into the steps,
     * then one beyond the whole run (the split gains nothing) */
    const double proj = SEQ * t1[0].seconds, run = SEQ * (t1[0].seconds + t1[1].seconds + t1[1].cell_seconds);
    const double ws[3] = {0.5 * proj, 0.5 * (proj + run), 2 * run};
    for (int i = 0; i < 3; i++) {
        p.thread_switch_seconds = ws[i];
        const fl_cost cw = predict(&p, &two, 2, tw);
        const double l0 = loss_of(ws[i], &tn[0], &t1[0]), l1 = loss_of(ws[i], &tn[2], &t1[2]);
        assert_true(l0 > 0 && l1 > 0);
        assert_close(cw.seconds, cn.seconds + l0 + l1, 1e-9 * cn.seconds);
        assert_close(tw[1].seconds, tn[1].seconds + l0, 1e-12); /* in the layer's W_hh term */
        assert_close(tw[3].seconds, tn[3].seconds + l1, 1e-12);
        assert_close(tw[0].seconds, tn[0].seconds, 1e-15);
        if (i == 2) /* nothing gained: each layer at its one-thread time */
            for (int l = 0; l < 2; l++)
                assert_close(tw[2 * l].seconds + tw[2 * l + 1].seconds + tw[2 * l + 1].cell_seconds,
                             t1[2 * l].seconds + t1[2 * l + 1].seconds + t1[2 * l + 1].cell_seconds, 1e-12);
        /* one thread: unchanged */
        assert_close(predict(&p, &two, 1, tw).seconds, c1.seconds, 1e-15);
    }
    /* one layer: one pool, nothing spins beside it */
    fl_cost_term o[2];
    assert_close(predict(&p, &one, 2, o).seconds, predict(&base, &one, 2, o).seconds, 1e-15);
    /* layer 0 on one thread: layer 1 follows a pool without workers, and layer 0 runs on one thread */
    const int lt[2] = {1, 2};
    fl_cost a, b;
    assert_int_equal(fl_cost_predict_layers(&p, &two, NULL, NULL, 1, SEQ, lt, &a, NULL), FL_OK);
    assert_int_equal(fl_cost_predict_layers(&base, &two, NULL, NULL, 1, SEQ, lt, &b, NULL), FL_OK);
    assert_close(a.seconds, b.seconds, 1e-15);
    /* NULL terms and bad arguments still answer as before */
    fl_cost c;
    assert_int_equal(fl_cost_predict(&p, &two, NULL, 1, SEQ, 2, &c), FL_OK);
    assert_int_equal(fl_cost_predict(&p, &two, NULL, 0, SEQ, 2, &c), FL_ERR_ARG);
    assert_int_equal(fl_cost_predict(&p, NULL, NULL, 1, SEQ, 2, &c), FL_ERR_ARG);
}

/* The fields round-trip through the profile file (version 5); a version 3 file without them loads
 * with both 0 and predicts as the profile without them; a negative figure is refused, named. */
static void test_file(void **state) {
    (void)state;
    const char *path = tmp_path("switch_profile.json");
    fl_profile p = hand_profile(), q;
    p.thread_sync_seconds = 1.25e-6;
    p.thread_switch_seconds = 2.9e-4;
    p.id.cores = 2; /* a file names its machine */
    assert_int_equal(fl_profile_save(&p, path), FL_OK);
    if (fl_profile_load(path, &q)) fail_msg("%s", fl_last_error());
    assert_close(q.thread_sync_seconds, 1.25e-6, 1e-18);
    assert_close(q.thread_switch_seconds, 2.9e-4, 1e-15);
    cJSON *root = json_file_read(path);
    assert_int_equal(cJSON_GetObjectItem(root, "version")->valuedouble, 8);
    cJSON *neg = cJSON_Duplicate(root, 1);
    cJSON_SetNumberValue(cJSON_GetObjectItem(neg, "thread_switch_seconds"), -1);
    cJSON_DeleteItemFromObject(root, "thread_sync_seconds");
    cJSON_DeleteItemFromObject(root, "thread_switch_seconds");
    cJSON_SetNumberValue(cJSON_GetObjectItem(root, "version"), 3);
    for (int k = 0; k < 2; k++) {
        json_file_write(path, k ? neg : root);
        if (k == 0) {
            assert_int_equal(fl_profile_load(path, &q), FL_OK);
            assert_true(q.thread_sync_seconds == 0 && q.thread_switch_seconds == 0);
            fl_cost a, b;
            const fl_profile old = hand_profile();
            assert_int_equal(fl_cost_predict(&q, &two, NULL, 1, SEQ, 2, &a), FL_OK);
            assert_int_equal(fl_cost_predict(&old, &two, NULL, 1, SEQ, 2, &b), FL_OK);
            assert_close(a.seconds, b.seconds, 1e-15);
        } else {
            assert_int_equal(fl_profile_load(path, &q), FL_ERR_FORMAT);
            assert_non_null(strstr(fl_last_error(), "thread_switch_seconds"));
        }
    }
    cJSON_Delete(root);
    cJSON_Delete(neg);
}

static int setup(void **state) {
    (void)state;
    return tmp_dir_make("test_cost_switch");
}

static int teardown(void **state) {
    (void)state;
    return tmp_dir_remove();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_switch_apply),
        cmocka_unit_test(test_rates_big_sync),
        cmocka_unit_test(test_sync_measured),
        cmocka_unit_test(test_switch_prices),
        cmocka_unit_test(test_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
