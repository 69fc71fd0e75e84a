/* Cost model, the split packed product's speed-up by its size (profile format 6, thread_scale_pk):
 * an SVD / CP input projection's split stages take it (linear in log multiply-adds between the
 * measured sizes, clamped to them, held at the thread count) where the profile has it, the dense
 * projection's table at the rows where it does not; the paired statistic and the passes' median
 * (fl_profile_paired_scale, fl_profile_rates_apply); the field's save / load, and a version 5 file
 * without it. Hand-made profiles against hand-computed terms. */
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

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

/* Two cores, every rate 1e9 flop/s, streaming so fast that every term is its compute, the runtime's
 * thread rule (a projection splits from 2 Mi multiply-adds; no step splits), the dense projection's
 * two-thread speed-up 2 at every row count. */
static fl_profile hand_profile(void) {
    fl_profile p = {0};
    p.cores = 2;
    p.simd_bits = 512;
    p.n_levels = 2;
    p.level[0] = (fl_cache_level){.level = 2, .bytes = 1 << 20, .shared_cpus = 1, .bandwidth = 1e15};
    p.level[1] = (fl_cache_level){.level = 3, .bytes = 64 << 20, .shared_cpus = 2, .bandwidth = 1e15};
    p.dram_bandwidth = 1e15;
    p.gemm_flops = p.gemv_flops = 1e9;
    p.curve_all_threads = 2;
    p.parallel_step_bytes = 1e12;
    p.parallel_proj_macs = 2.0 * (1 << 20);
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++)
        p.rec_rows_flops[k] = p.gemm_rows_flops[k] = 1e9, p.thread_scale_proj[k] = 2.0;
    return p;
}

/* One layer, input 64, hidden 512, an SVD W_ih of rank 64 (stage 1: n x 64 x 64, stage 2: n x 2048 x
 * 64 multiply-adds) and a dense W_hh: the W_ih term's seconds per step at batch 1, seq n, on
 * `threads`. */
static double ih_seconds(const fl_profile *p, int n, int threads) {
    const fl_arch a = {.input = 64, .hidden = 512, .layers = 1, .head = FL_HEAD_NONE};
    const fl_mat_spec specs[2] = {{FL_METHOD_SVD, 64}, {FL_METHOD_DENSE, 0}};
    fl_cost c;
    fl_cost_term t[2];
    assert_int_equal(fl_cost_predict_terms(p, &a, specs, 1, n, threads, &c, t), FL_OK);
    return t[0].seconds;
}

/* The same, computed by hand: stage 1 (n 64 64 multiply-adds) at 1e9 flop/s times its speed-up s1,
 * stage 2 (n 2048 64) at 1e9 times s2, per step (over n). */
static double ih_expected2(int n, double s1, double s2) {
    const double m1 = (double)n * 64 * 64, m2 = (double)n * 2048 * 64;
    return 2.0 * (m1 / (1e9 * s1) + m2 / (1e9 * s2)) / n;
}

/* Below 512 rows stage 1 is under the split size (2 Mi multiply-adds): one thread. */
static double ih_expected(int n, double s2) { return ih_expected2(n, 1.0, s2); }

static void test_stage_by_size(void **state) {
    (void)state;
    fl_profile p = hand_profile();
    /* without the table: the dense projection's 2 at the rows, as before */
    assert_close(ih_seconds(&p, 64, 2), ih_expected(64, 2.0), 1e-12);
    const double pk[4] = {1.1, 1.3, 1.5, 1.7};
    memcpy(p.thread_scale_pk, pk, sizeof pk);
    /* 64 rows: stage 2 is 64 x 2048 x 64 = fl_profile_pk_macs(1) multiply-adds: the table's 1.3 */
    assert_close(fl_profile_pk_macs(1), 64.0 * 2048 * 64, 0);
    assert_close(ih_seconds(&p, 64, 2), ih_expected(64, 1.3), 1e-12);
    /* 128 rows: halfway in log size between points 1 and 2 */
    assert_close(ih_seconds(&p, 128, 2), ih_expected(128, 1.4), 1e-12);
    /* 40 rows: log(40 / 16) / log 4 of the way from point 0 to point 1; 16 rows (the split size) the
     * first point; 4096 rows (past the last) clamped to the last one */
    assert_close(ih_seconds(&p, 40, 2), ih_expected(40, 1.1 + 0.2 * log(2.5) / log(4.0)), 1e-12);
    assert_close(ih_seconds(&p, 16, 2), ih_expected(16, 1.1), 1e-12);
    /* (there stage 1 splits too: 4096 x 64 x 64, halfway between points 1 and 2) */
    assert_close(ih_seconds(&p, 4096, 2), ih_expected2(4096, 1.4, 1.7), 1e-12);
    /* one thread: no speed-up either way */
    assert_close(ih_seconds(&p, 64, 1), ih_expected(64, 1.0), 1e-12);
    /* a figure above the thread count is held at it */
    p.thread_scale_pk[1] = 2.5;
    assert_close(ih_seconds(&p, 64, 2), ih_expected(64, 2.0), 1e-12);
    /* a thread count the table was not measured at: that count (the rule of thread_scale) */
    p.thread_scale_pk[1] = 1.3;
    p.curve_all_threads = 4;
    p.cores = 4;
    assert_close(ih_seconds(&p, 64, 2), ih_expected(64, 2.0), 1e-12);
}

/* A dense W_ih keeps the dense projection's table. */
static void test_dense_unchanged(void **state) {
    (void)state;
    fl_profile p = hand_profile(), q;
    const fl_arch a = {.input = 64, .hidden = 512, .layers = 1, .head = FL_HEAD_NONE};
    fl_cost c0, c1;
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 1, 64, 2, &c0), FL_OK);
    q = p;
    for (int k = 0; k < 4; k++) q.thread_scale_pk[k] = 1.1;
    assert_int_equal(fl_cost_predict(&q, &a, NULL, 1, 64, 2, &c1), FL_OK);
    assert_close(c1.seconds, c0.seconds, 0);
}

static void test_paired(void **state) {
    (void)state;
    const double t1[5] = {2, 9, 3, 4, 1}, tn[5] = {1, 3, 1, 1, 1}; /* ratios 2 3 3 4 1 */
    assert_close(fl_profile_paired_scale(t1, tn, 5), 3.0, 0);
    assert_close(fl_profile_paired_scale(t1, tn, 4), 3.0, 0); /* 2 3 3 4: the upper middle */
    const double bad[5] = {1, 1, 0, 1, 1};
    assert_close(fl_profile_paired_scale(t1, bad, 5), 0, 0);
    assert_close(fl_profile_paired_scale(t1, tn, 0), 0, 0);
}

/* rates_apply: each point the median of its passes; none from a level without the product (0 in
 * the first point) or with one thread. */
static void test_apply(void **state) {
    (void)state;
    fl_profile p = hand_profile();
    fl_rate_passes rp;
    memset(&rp, 0, sizeof rp);
    rp.n = 3, rp.threads = 2;
    for (int q = 0; q < 3; q++) {
        rp.gemm[q] = rp.gemv[q] = 1e9;
        for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) {
            const int B = 4 << (2 * k);
            rp.rows[q][k] = 1e9;
            rp.rec_t1[q][k] = 2e-3 * B, rp.rec_tn[q][k] = 1.2e-3 * B;
            rp.pk[q][k] = 1.0 + 0.1 * k + 0.2 * q; /* medians 1.2, 1.3, 1.4, 1.5 */
        }
    }
    fl_profile_rates_apply(&rp, &p);
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) assert_close(p.thread_scale_pk[k], 1.2 + 0.1 * k, 1e-12);
    for (int q = 0; q < 3; q++) rp.pk[q][0] = 0;
    fl_profile_rates_apply(&rp, &p);
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) assert_true(p.thread_scale_pk[k] == 0);
    for (int q = 0; q < 3; q++) rp.pk[q][0] = 1.5;
    rp.threads = 0;
    fl_profile_rates_apply(&rp, &p);
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) assert_true(p.thread_scale_pk[k] == 0);
}

/* Saved (version 8 now) with the table; a version 5 file (without it) loads with it 0 and prices as
 * before; a negative entry is refused, naming the field. */
static void test_round_trip(void **state) {
    (void)state;
    fl_profile p;
    assert_int_equal(fl_profile_detect(&p), FL_OK);
    const double pk[4] = {1.05, 1.25, 1.5, 1.75};
    memcpy(p.thread_scale_pk, pk, sizeof pk);
    const char *path = "test_cost_pk_profile.json";
    assert_int_equal(fl_profile_save(&p, path), FL_OK);
    fl_profile q;
    assert_int_equal(fl_profile_load(path, &q), FL_OK);
    for (int k = 0; k < 4; k++) assert_close(q.thread_scale_pk[k], pk[k], 1e-12);
    cJSON *root = json_file_read(path);
    assert_int_equal(cJSON_GetObjectItem(root, "version")->valuedouble, 8);
    cJSON *v5 = cJSON_Duplicate(root, 1);
    cJSON_DeleteItemFromObjectCaseSensitive(v5, "thread_scale_pk");
    cJSON_SetNumberValue(cJSON_GetObjectItem(v5, "version"), 5);
    json_file_write(path, v5);
    cJSON_Delete(v5);
    memset(&q, 0x55, sizeof q);
    assert_int_equal(fl_profile_load(path, &q), FL_OK);
    for (int k = 0; k < 4; k++) assert_true(q.thread_scale_pk[k] == 0);
    cJSON_SetNumberValue(cJSON_GetArrayItem(cJSON_GetObjectItem(root, "thread_scale_pk"), 2), -1.0);
    json_file_write(path, root);
    cJSON_Delete(root);
    assert_int_equal(fl_profile_load(path, &q), FL_ERR_FORMAT);
    assert_non_null(strstr(fl_last_error(), "thread_scale_pk"));
    remove(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stage_by_size), cmocka_unit_test(test_dense_unchanged), cmocka_unit_test(test_paired),
        cmocka_unit_test(test_apply), cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
