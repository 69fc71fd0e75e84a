/* Cost model on more than one thread: the measured all-cores streaming rates of a shared level and
 * of DRAM (fl_cache_level.all_cores_bandwidth, fl_profile.dram_bandwidth_all) in place of the
 * assumed 1 + 0.75 (N - 1) scaling, and the SVD step's rank-R projection that every thread computes
 * whole (fl_rec_step splits only the gate panel). Hand-written profiles against hand-computed
 * terms; the profile file round trip of the new fields, and a file without them loading and
 * predicting as before. Nothing here is timed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fastlstm/plan.h"
#include "internal.h"
#include "testutil.h"
#include "json_file.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* L1 (private, 512 bytes, 1000 B/s) and a shared L3 of `l3` bytes at 100 B/s one thread; DRAM
 * 10 B/s; mat-vec 100 flop/s, sgemm 1000; all-cores figures measured at 2 threads (set per test);
 * no curves, efficiencies, cell, bias or overhead terms. */
static fl_profile hand_profile(size_t l3) {
    fl_profile p = {0};
    p.cores = 2;
    p.simd_bits = 256;
    p.n_levels = 2;
    p.level[0] = (fl_cache_level){.level = 1, .bytes = 512, .shared_cpus = 1, .bandwidth = 1000.0};
    p.level[1] = (fl_cache_level){.level = 3, .bytes = l3, .shared_cpus = 2, .bandwidth = 100.0};
    p.dram_bandwidth = 10.0;
    p.gemm_flops = 1000.0;
    p.gemv_flops = 100.0;
    p.curve_all_threads = 2;
    return p;
}

/* input 4, hidden 16, one layer; matrix 1 is W_hh (64, 16) */
static const fl_arch arch = {.input = 4, .hidden = 16, .layers = 1, .head = FL_HEAD_NONE};

/* The W_hh term of a prediction at batch b on `threads` threads. */
static fl_cost_term whh_term(const fl_profile *p, fl_method m, int rank, int b, int threads) {
    fl_mat_spec specs[2] = {{FL_METHOD_DENSE, 0}, {m, rank}};
    fl_cost c;
    fl_cost_term t[2];
    assert_int_equal(fl_cost_predict_terms(p, &arch, specs, b, 64, threads, &c, t), FL_OK);
    return t[1];
}

/* A dense W_hh of 4096 bytes streamed from DRAM (the L3 holds 1 KiB) at batch 1: memory-bound
 * (2048 flops at >= 100 flop/s against >= 100 s of streaming). Two threads stream at the measured
 * all-cores DRAM rate, not at 1.75x one thread's; four (more than measured) at the same rate; a
 * shared level likewise at its all_cores_bandwidth. */
static void test_all_cores_rate(void **state) {
    (void)state;
    fl_profile old = hand_profile(1024), p = old;
    p.dram_bandwidth_all = 13.0;
    const double bytes = 4.0 * 64 * 16;
    assert_close(whh_term(&p, FL_METHOD_DENSE, 0, 1, 1).mem_seconds, bytes / 10.0, 1e-9);
    assert_close(whh_term(&p, FL_METHOD_DENSE, 0, 1, 2).mem_seconds, bytes / 13.0, 1e-9);
    assert_close(whh_term(&p, FL_METHOD_DENSE, 0, 1, 4).mem_seconds, bytes / 13.0, 1e-9);
    /* without the measurement (older profiles): 1 + 0.75 (N - 1) */
    assert_close(whh_term(&old, FL_METHOD_DENSE, 0, 1, 2).mem_seconds, bytes / 17.5, 1e-9);
    assert_close(whh_term(&old, FL_METHOD_DENSE, 0, 1, 4).mem_seconds, bytes / 32.5, 1e-9);
    /* the whole prediction moves by the W_hh term's difference alone */
    fl_cost c_old, c_new;
    assert_int_equal(fl_cost_predict(&old, &arch, NULL, 1, 64, 2, &c_old), FL_OK);
    assert_int_equal(fl_cost_predict(&p, &arch, NULL, 1, 64, 2, &c_new), FL_OK);
    /* W_hh and W_ih's per-step share (1 KiB over 64 steps: 16 bytes) both stream from DRAM */
    assert_close(c_new.seconds - c_old.seconds, (bytes + 16.0) * (1 / 13.0 - 1 / 17.5), 1e-9);
    /* W_hh in the shared L3 (64 KiB): 150 B/s measured with both threads */
    fl_profile l3 = hand_profile(1 << 16);
    assert_close(whh_term(&l3, FL_METHOD_DENSE, 0, 1, 2).mem_seconds, bytes / 175.0, 1e-9);
    l3.level[1].all_cores_bandwidth = 150.0;
    assert_close(whh_term(&l3, FL_METHOD_DENSE, 0, 1, 1).mem_seconds, bytes / 100.0, 1e-9);
    assert_close(whh_term(&l3, FL_METHOD_DENSE, 0, 1, 2).mem_seconds, bytes / 150.0, 1e-9);
    /* a measured curve for the thread count still comes first */
    l3.n_curve_all = 2;
    l3.curve_all_bytes[0] = 1024, l3.curve_all_bytes[1] = 1 << 20;
    l3.curve_all_bandwidth[0] = l3.curve_all_bandwidth[1] = 400.0;
    assert_close(whh_term(&l3, FL_METHOD_DENSE, 0, 1, 2).mem_seconds, bytes / 400.0, 1e-9);
}

/* An SVD W_hh (hidden 16, rank 4: V 64 weights = 256 bytes, U 256 weights = 1024 bytes) at batch 8
 * in the shared L3 (64 KiB; 200 B/s with both threads), thread_scale_rec 2. One thread: 12.8 s of
 * streaming (1280 / 100) against 5120 flops / 800 flop/s = 6.4 s. Fully split it would take
 * max(1280 / 200, 5120 / 1600) = 6.4 s. But every thread computes t = V h itself, 3 rows at a
 * time (the proj kernel's row tile): max(3 passes of 256 bytes from L1 at 1000 B/s = 0.768 s,
 * 8 x 128 flops at the 3-row rate 300 = 3.41 s); the rest of the one-thread step (1 - 3.41 / 12.8
 * of it) splits: 0.733 x 6.4 = 4.69 s. */
static void test_svd_projection_not_split(void **state) {
    (void)state;
    fl_profile p = hand_profile(1 << 16);
    p.level[1].all_cores_bandwidth = 200.0;
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) p.thread_scale_rec[k] = 2.0;
    const fl_cost_term one = whh_term(&p, FL_METHOD_SVD, 4, 8, 1), two = whh_term(&p, FL_METHOD_SVD, 4, 8, 2);
    assert_close(fmax(one.mem_seconds, one.compute_seconds), 12.8, 1e-9);
    assert_int_equal(two.threads, 2);
    const double dup = 8 * 128 / 300.0, s = 1 - dup / 12.8;
    assert_close(two.mem_seconds, 3 * 256 / 1000.0 + 1280.0 / 200 * s, 1e-9); /* the projection's streaming, the panel's share */
    assert_close(two.compute_seconds, dup + 5120.0 / 1600 * s, 1e-9); /* the projection's flops bound it */
    /* in the step's time: 3.41 + 4.69 = 8.11 s against 12.8 on one thread (a 1.58x speed-up) */
    assert_close(fmax(two.mem_seconds - 3 * 256 / 1000.0, two.compute_seconds - dup) + dup, dup + 6.4 * s, 1e-9);
    /* a dense W_hh under the same profile splits whole: its speed-up is the full 2 */
    const fl_cost_term d1 = whh_term(&p, FL_METHOD_DENSE, 0, 8, 1), d2 = whh_term(&p, FL_METHOD_DENSE, 0, 8, 2);
    assert_close(fmax(d1.mem_seconds, d1.compute_seconds) / fmax(d2.mem_seconds, d2.compute_seconds), 2.0, 1e-9);
    /* at batch 1 the projection is one pass: 1.28 of the one-thread step's max(12.8, 640 / 100) */
    const fl_cost_term b1 = whh_term(&p, FL_METHOD_SVD, 4, 1, 2);
    assert_close(b1.mem_seconds, 256 / 1000.0 + 0.9 * 1280.0 / 200, 1e-9);
    assert_close(b1.compute_seconds, 1.28 + 0.9 * 640.0 / 200, 1e-9);
}

/* The new fields survive a save and load; a file without them (older versions) loads with them 0
 * and predicts with 1 + 0.75 (N - 1); a negative value is refused, naming the field. */
static void test_round_trip(void **state) {
    (void)state;
    fl_profile p = hand_profile(1024);
    p.id.cores = 2; /* a file's machine identity needs a core count */
    p.dram_bandwidth_all = 13.0;
    p.level[1].all_cores_bandwidth = 150.5;
    const char *path = "test_cost_threads_profile.json";
    assert_int_equal(fl_profile_save(&p, path), FL_OK);
    fl_profile q;
    assert_int_equal(fl_profile_load(path, &q), FL_OK);
    assert_close(q.dram_bandwidth_all, 13.0, 0);
    assert_close(q.level[1].all_cores_bandwidth, 150.5, 0);
    assert_close(q.level[0].all_cores_bandwidth, 0, 0);
    const double bytes = 4.0 * 64 * 16;
    assert_close(whh_term(&q, FL_METHOD_DENSE, 0, 1, 2).mem_seconds, bytes / 13.0, 1e-9);
    /* as older versions wrote it */
    cJSON *saved = json_file_read(path), *root = cJSON_Duplicate(saved, 1);
    assert_non_null(cJSON_GetObjectItemCaseSensitive(root, "dram_bandwidth_all"));
    cJSON_DeleteItemFromObjectCaseSensitive(root, "dram_bandwidth_all");
    cJSON *lv;
    cJSON_ArrayForEach(lv, cJSON_GetObjectItemCaseSensitive(root, "caches")) {
        assert_non_null(cJSON_GetObjectItemCaseSensitive(lv, "all_cores_bandwidth"));
        cJSON_DeleteItemFromObjectCaseSensitive(lv, "all_cores_bandwidth");
    }
    json_file_write(path, root);
    cJSON_Delete(root);
    memset(&q, 0x55, sizeof q);
    assert_int_equal(fl_profile_load(path, &q), FL_OK);
    assert_true(q.dram_bandwidth_all == 0);
    assert_true(q.level[0].all_cores_bandwidth == 0 && q.level[1].all_cores_bandwidth == 0);
    assert_close(whh_term(&q, FL_METHOD_DENSE, 0, 1, 2).mem_seconds, bytes / 17.5, 1e-9);
    /* malformed */
    cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(saved, "dram_bandwidth_all"), -1.0);
    json_file_write(path, saved);
    assert_int_equal(fl_profile_load(path, &q), FL_ERR_FORMAT);
    assert_non_null(strstr(fl_last_error(), "dram_bandwidth_all"));
    cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(saved, "dram_bandwidth_all"), 13.0);
    cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(saved, "caches"), 1),
                                                          "all_cores_bandwidth"),
                         -2.0);
    json_file_write(path, saved);
    cJSON_Delete(saved);
    assert_int_equal(fl_profile_load(path, &q), FL_ERR_FORMAT);
    assert_non_null(strstr(fl_last_error(), "all_cores_bandwidth"));
    remove(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_cores_rate),
        cmocka_unit_test(test_svd_projection_not_split),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
