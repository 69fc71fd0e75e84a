/* Cost model, a run's cold start (cost_run.c) and its profile figure run_reread
 * (profile_reread.c): the fraction interpolated at the run's traffic, the priced extra of an
 * amortised matrix and of a W_hh against hand-computed figures, a whole prediction's difference
 * with and without the figure, the file's round trip (a version 4 file loads without it and
 * predicts as before), and the measurement's own limits. Nothing here is timed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fastlstm/plan.h"
#include "internal.h"
#include "testutil.h"
#include "plan/plan_internal.h"
#include "plan/profile_internal.h"

#include "json_file.h"
#include <math.h>
#include <string.h>

/* L1 (private, 4 KiB, 1000 B/s), a shared last level of 64 KiB at 100 B/s; DRAM 10 B/s; mat-vec 100
 * flop/s, sgemm 1000; no curves, rules, efficiencies, cell, bias or overhead terms. Usable share
 * of the last level: 48 KiB. */
static fl_profile hand_profile(void) {
    fl_profile p = {0};
    p.cores = 1;
    p.simd_bits = 256;
    p.n_levels = 2;
    p.level[0] = (fl_cache_level){.level = 1, .bytes = 4096, .shared_cpus = 1, .bandwidth = 1000.0};
    p.level[1] = (fl_cache_level){.level = 3, .bytes = 1 << 16, .shared_cpus = 1, .bandwidth = 100.0};
    p.dram_bandwidth = 10.0;
    p.gemm_flops = 1000.0;
    p.gemv_flops = 100.0;
    return p;
}

static const double C = 0.75 * 65536; /* the usable share */

/* The fraction: each point at its traffic, linear in log traffic between, toward 0 below the
 * first (linearly in the traffic), held above the last, clamped to [0, 1]; 0 without the figure. */
static void test_fraction(void **state) {
    (void)state;
    fl_profile p = hand_profile();
    assert_true(fl_cost_run_fraction(&p, 10 * C) == 0);
    const double f[FL_PROFILE_REREAD_POINTS] = {0.1, 0.2, 0.4, 0.6, 0.9};
    memcpy(p.run_reread, f, sizeof f);
    for (int k = 0; k < FL_PROFILE_REREAD_POINTS; k++) {
        assert_close(fl_profile_reread_traffic(k), 0.25 * (1 << k), 1e-15);
        assert_close(fl_cost_run_fraction(&p, C * fl_profile_reread_traffic(k)), f[k], 1e-12);
    }
    assert_close(fl_cost_run_fraction(&p, C * 0.25 * sqrt(2.0)), 0.15, 1e-12); /* half-way in log */
    assert_close(fl_cost_run_fraction(&p, C * 3.0), 0.6 + 0.3 * log2(1.5), 1e-12);
    assert_close(fl_cost_run_fraction(&p, C * 0.125), 0.05, 1e-12); /* toward 0 below */
    assert_close(fl_cost_run_fraction(&p, C * 100), 0.9, 1e-12);
    assert_true(fl_cost_run_fraction(&p, 0) == 0 && fl_cost_run_fraction(NULL, C) == 0);
    p.run_reread[4] = 1.5; /* a figure above 1 (a hand-edited file) prices as 1 */
    assert_close(fl_cost_run_fraction(&p, C * 100), 1.0, 1e-15);
}

/* The extra seconds per step: an amortised matrix f (comp + W / (T dram) - max(mem, comp)), at
 * least 0; a W_hh held by a level f W (1 / dram - 1 / bw_level) / T, none held by no level. */
static void test_start(void **state) {
    (void)state;
    const fl_profile p = hand_profile();
    const double W = 2000, T = 4, first = W / 10.0 / T; /* 50 s a step */
    assert_close(fl_cost_run_start(&p, 0.5, true, W, 4, 1, 3.0, 7.0), 0.5 * (7 + first - 7), 1e-12);
    assert_close(fl_cost_run_start(&p, 0.5, true, W, 4, 1, 30.0, 7.0), 0.5 * (7 + first - 30), 1e-12);
    assert_true(fl_cost_run_start(&p, 0.5, true, W, 4, 1, 70.0, 7.0) == 0); /* the first pass hidden */
        assert_close(fl_cost_run_start(&p, 1.0, true, W, 4, 1, 0, 0), first, 1e-12); /* stage-priced */
    /* W_hh of 2000 bytes: in L1 (3/4 of 4 KiB holds it), 1000 B/s */
    assert_close(fl_cost_run_start(&p, 0.5, false, W, 4, 1, 0, 0), 0.5 * (W / 10 - W / 1000) / T, 1e-12);
    /* 40000 bytes: the last level, 100 B/s; 60000: no level */
    assert_close(fl_cost_run_start(&p, 1.0, false, 40000, 4, 1, 0, 0), (40000 / 10.0 - 40000 / 100.0) / T, 1e-9);
    assert_true(fl_cost_run_start(&p, 1.0, false, 60000, 4, 1, 0, 0) == 0);
    /* nothing from memory, or nothing to read */
    assert_true(fl_cost_run_start(&p, 0, true, W, 4, 1, 3, 7) == 0);
    assert_true(fl_cost_run_start(&p, 0.5, true, 0, 4, 1, 3, 7) == 0);
    assert_true(fl_cost_run_start(NULL, 0.5, true, W, 4, 1, 3, 7) == 0);
}

/* A whole prediction: one layer (input 4, hidden 16: W_ih 1 KiB, W_hh 4 KiB), batch 1, seq 8. Its
 * run streams W_ih once, W_hh 8 times and 4 T (4H + in + H) bytes of activations; with the figure,
 * each term grows by the priced extra at that traffic's fraction, and nothing else moves. */
static void test_predict(void **state) {
    (void)state;
    const fl_arch a = {.input = 4, .hidden = 16, .layers = 1, .head = FL_HEAD_NONE};
    enum { T = 8 };
    fl_profile base = hand_profile(), p = base;
    for (int k = 0; k < FL_PROFILE_REREAD_POINTS; k++) p.run_reread[k] = 0.2 * (k + 1);
    fl_cost c0, c1;
    fl_cost_term t0[2], t1[2];
    assert_int_equal(fl_cost_predict_terms(&base, &a, NULL, 1, T, 1, &c0, t0), FL_OK);
    assert_int_equal(fl_cost_predict_terms(&p, &a, NULL, 1, T, 1, &c1, t1), FL_OK);
    const double wih = 4.0 * 64 * 4, whh = 4.0 * 64 * 16;
    const double traffic = wih + T * whh + 4.0 * T * (64 + 4 + 16), f = fl_cost_run_fraction(&p, traffic);
    assert_true(f > 0 && f < 1);
    const double e_ih = fl_cost_run_start(&p, f, true, wih, T, 1, t0[0].mem_seconds, t0[0].compute_seconds);
    const double e_hh = fl_cost_run_start(&p, f, false, whh, T, 1, 0, 0);
    assert_true(e_ih > 0 && e_hh > 0);
    assert_close(t1[0].seconds, t0[0].seconds + e_ih, 1e-12);
    assert_close(t1[1].seconds, t0[1].seconds + e_hh, 1e-12);
    assert_close(c1.seconds, c0.seconds + e_ih + e_hh, 1e-9 * c1.seconds);
    assert_close(c1.mem_seconds, c0.mem_seconds, 1e-15);
    assert_close(c1.compute_seconds, c0.compute_seconds, 1e-15);
}

/* run_reread round-trips through the file (version 5); a version 4 file without it loads with all 0
 * and predicts as the profile without it; a negative entry or a short array is refused, named. */
static void test_file(void **state) {
    (void)state;
    const char *path = tmp_path("reread_profile.json");
    fl_profile p = hand_profile(), q;
    for (int k = 0; k < FL_PROFILE_REREAD_POINTS; k++) p.run_reread[k] = 0.1 * (k + 1);
    p.id.cores = 1;
    assert_int_equal(fl_profile_save(&p, path), FL_OK);
    if (fl_profile_load(path, &q)) fail_msg("%s", fl_last_error());
    for (int k = 0; k < FL_PROFILE_REREAD_POINTS; k++) assert_close(q.run_reread[k], 0.1 * (k + 1), 1e-12);
    cJSON *root = json_file_read(path);
    assert_int_equal(cJSON_GetObjectItem(root, "version")->valuedouble, 8);
    cJSON *neg = cJSON_Duplicate(root, 1), *shorter = cJSON_Duplicate(root, 1);
    cJSON_SetNumberValue(cJSON_GetArrayItem(cJSON_GetObjectItem(neg, "run_reread"), 2), -0.5);
    cJSON_DeleteItemFromArray(cJSON_GetObjectItem(shorter, "run_reread"), 4);
    cJSON_DeleteItemFromObject(root, "run_reread");
    cJSON_SetNumberValue(cJSON_GetObjectItem(root, "version"), 4);
    json_file_write(path, root);
    assert_int_equal(fl_profile_load(path, &q), FL_OK);
    for (int k = 0; k < FL_PROFILE_REREAD_POINTS; k++) assert_true(q.run_reread[k] == 0);
    const fl_arch a = {.input = 4, .hidden = 16, .layers = 2, .head = FL_HEAD_NONE};
    const fl_profile old = hand_profile();
    fl_cost x, y;
    assert_int_equal(fl_cost_predict(&q, &a, NULL, 1, 8, 1, &x), FL_OK);
    assert_int_equal(fl_cost_predict(&old, &a, NULL, 1, 8, 1, &y), FL_OK);
    assert_close(x.seconds, y.seconds, 1e-15);
    cJSON *bad[2] = {neg, shorter};
    for (int i = 0; i < 2; i++) {
        json_file_write(path, bad[i]);
        assert_int_equal(fl_profile_load(path, &q), FL_ERR_FORMAT);
        assert_non_null(strstr(fl_last_error(), "run_reread"));
    }
    cJSON_Delete(root);
    cJSON_Delete(neg);
    cJSON_Delete(shorter);
}

/* The measurement: one level (nothing to compare), or a last level too small for its buffers,
 * measures nothing (all 0); an 8 MiB last level gives fractions in [0, 1]. */
static void test_measure(void **state) {
    (void)state;
    fl_profile p = hand_profile();
    p.n_levels = 1;
    p.level[0].bytes = (size_t)8 << 20;
    p.run_reread[0] = 0.5;
    assert_int_equal(fl_profile_measure_reread(&p), FL_OK);
    for (int k = 0; k < FL_PROFILE_REREAD_POINTS; k++) assert_true(p.run_reread[k] == 0);
    p = hand_profile(); /* 64 KiB: W would be 6 KiB */
    p.run_reread[0] = 0.5;
    assert_int_equal(fl_profile_measure_reread(&p), FL_OK);
    for (int k = 0; k < FL_PROFILE_REREAD_POINTS; k++) assert_true(p.run_reread[k] == 0);
    p.level[1].bytes = (size_t)8 << 20;
    assert_int_equal(fl_profile_measure_reread(&p), FL_OK);
    for (int k = 0; k < FL_PROFILE_REREAD_POINTS; k++) assert_true(p.run_reread[k] >= 0 && p.run_reread[k] <= 1);
}

static int setup(void **state) {
    (void)state;
    return tmp_dir_make("test_cost_run");
}

static int teardown(void **state) {
    (void)state;
    return tmp_dir_remove();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fraction),  cmocka_unit_test(test_start),   cmocka_unit_test(test_predict),
        cmocka_unit_test(test_file),      cmocka_unit_test(test_measure),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
