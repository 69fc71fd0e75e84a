/* Cost model terms measured by the profile for a session's batch > 1 steps: the extra time a step
 * spends reading its input projections (gx) from memory once the sequence's projection buffer has
 * left the last cache level (fl_profile.cold_gx_seconds), and the two-thread speed-up of a dense
 * input projection measured on a W_ih in cache and on one in memory (thread_scale_proj,
 * thread_scale_proj_mem). Hand-written profiles against hand-computed differences, and the
 * profile file round trip of both fields (a profile written without them still loads). Nothing
 * here is timed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fastlstm/plan.h"
#include "internal.h"
#include "tuning_consts.h"
#include "testutil.h"
#include "json_file.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One last level of `cache` bytes at 100 B/s, DRAM 10 B/s, flat flop rates; no cell, bias or
 * overhead terms, so differences are the terms under test alone. */
static fl_profile hand_profile(size_t cache) {
    fl_profile p = {0};
    p.cores = 2;
    p.simd_bits = 256;
    p.n_levels = 1;
    p.level[0] = (fl_cache_level){.level = 3, .bytes = cache, .shared_cpus = 2, .bandwidth = 100.0};
    p.dram_bandwidth = 10.0;
    p.gemm_flops = 1000.0;
    p.gemv_flops = 30.0;
    return p;
}

/* input 4, hidden 16, one layer: per sequence the session streams T B rows of gx (64 floats), input
 * (4) and output (16): 336 T B bytes; the step reads 16 B H = 512 bytes of gx at batch 2. */
static const fl_arch arch = {.input = 4, .hidden = 16, .layers = 1, .head = FL_HEAD_NONE};
#define B 2
#define GX_STEP 512.0
#define CACHE 6720 /* the buffers of T = 10 at batch 2 (usable share: T = 7.5) */

static double predict(const fl_profile *p, fl_method m, int rank, int seq, int threads, const fl_precision *prec) {
    fl_mat_spec specs[2] = {{FL_METHOD_DENSE, 0}, {m, rank}};
    fl_cost c;
    assert_int_equal(fl_cost_predict_prec(p, &arch, specs, prec, B, seq, threads, &c, NULL), FL_OK);
    return c.seconds;
}

/* Fraction of the gx reads from memory for sequence length T (cost.c, cold_fraction): 0 up to
 * half the usable share of the last level, 1 from the usable share. */
static double fraction(int T) {
    double f = 2.0 * 336.0 * T * B / (FL_FIT_FRACTION * CACHE) - 1.0;
    return f < 0 ? 0 : f > 1 ? 1 : f;
}

static void test_cold_gx_term(void **state) {
    (void)state;
    fl_profile p0 = hand_profile(CACHE), p = p0;
    const double svd[2] = {1e-3, 3e-3}, cp[2] = {2e-3, 5e-3};
    p.cold_gx_seconds[FL_METHOD_DENSE][0] = p.cold_gx_seconds[FL_METHOD_DENSE][1] = 4e-4;
    memcpy(p.cold_gx_seconds[FL_METHOD_SVD], svd, sizeof svd);
    memcpy(p.cold_gx_seconds[FL_METHOD_CP], cp, sizeof cp);
    /* the fraction: 0 within half the usable share (T = 3: 2016 bytes <= 0.375 x 6720 = 2520),
     * linear to 1 at the usable share (T = 7.5), 1 beyond */
    assert_true(fraction(3) == 0 && fraction(5) > 0.3 && fraction(5) < 0.35 && fraction(8) == 1 && fraction(40) == 1);
    const int seqs[4] = {3, 5, 8, 40};
    for (int k = 0; k < 4; k++) {
        const int T = seqs[k];
        const double f = fraction(T);
        /* SVD at rank H/16 and H/4: the two measured points; H/8: halfway (linear in log rank) */
        assert_close(predict(&p, FL_METHOD_SVD, 1, T, 1, NULL) - predict(&p0, FL_METHOD_SVD, 1, T, 1, NULL),
                     f * GX_STEP * svd[0], 1e-9);
        assert_close(predict(&p, FL_METHOD_SVD, 4, T, 1, NULL) - predict(&p0, FL_METHOD_SVD, 4, T, 1, NULL),
                     f * GX_STEP * svd[1], 1e-9);
        assert_close(predict(&p, FL_METHOD_SVD, 2, T, 1, NULL) - predict(&p0, FL_METHOD_SVD, 2, T, 1, NULL),
                     f * GX_STEP * 0.5 * (svd[0] + svd[1]), 1e-9);
        /* CP above H/4 keeps the H/4 figure; dense has one figure */
        assert_close(predict(&p, FL_METHOD_CP, 12, T, 1, NULL) - predict(&p0, FL_METHOD_CP, 12, T, 1, NULL),
                     f * GX_STEP * cp[1], 1e-9);
        assert_close(predict(&p, FL_METHOD_DENSE, 0, T, 1, NULL) - predict(&p0, FL_METHOD_DENSE, 0, T, 1, NULL),
                     f * GX_STEP * 4e-4, 1e-9);
        /* a dense step split across 2 threads reads its halves at once; an SVD / CP step at batch > 1
         * first copies its rows on the calling thread alone (fl_rec_step) */
        assert_close(predict(&p, FL_METHOD_DENSE, 0, T, 2, NULL) - predict(&p0, FL_METHOD_DENSE, 0, T, 2, NULL),
                     f * GX_STEP * 4e-4 / 2, 1e-9);
        assert_close(predict(&p, FL_METHOD_CP, 1, T, 2, NULL) - predict(&p0, FL_METHOD_CP, 1, T, 2, NULL),
                     f * GX_STEP * cp[0], 1e-9);
        /* a quantized W_hh copies its gx row by row into its gates (streamed): no term */
        const fl_precision q[2] = {FL_PRECISION_F32, FL_PRECISION_INT8};
        assert_close(predict(&p, FL_METHOD_SVD, 2, T, 1, q) - predict(&p0, FL_METHOD_SVD, 2, T, 1, q), 0, 1e-12);
    }
    /* the term is per layer: two layers (the second's input is the first's output, 16 wide), each
     * with its own buffers */
    fl_arch two = arch;
    two.layers = 2;
    fl_mat_spec specs[4] = {{FL_METHOD_DENSE, 0}, {FL_METHOD_SVD, 1}, {FL_METHOD_DENSE, 0}, {FL_METHOD_SVD, 1}};
    fl_cost c0, c1;
    assert_int_equal(fl_cost_predict(&p0, &two, specs, B, 40, 1, &c0), FL_OK);
    assert_int_equal(fl_cost_predict(&p, &two, specs, B, 40, 1, &c1), FL_OK);
    assert_close(c1.seconds - c0.seconds, 2 * GX_STEP * svd[0], 1e-9);
}

/* A dense W_ih split across two threads speeds up by thread_scale_proj when it fits the usable share
 * of the last level, by thread_scale_proj_mem beyond it (thread_scale_proj when that is not
 * measured), below 64 rows; from 64 rows on, compute-bound wherever W lives, by the larger of the
 * two (test_cost_proj_threads.c). */
static void test_proj_scale_by_residence(void **state) {
    (void)state;
    /* input 64, hidden 16: W_ih (64, 64) = 16 KiB; 16 steps x batch 1 = 16 rows */
    const fl_arch a = {.input = 64, .hidden = 16, .layers = 1, .head = FL_HEAD_NONE};
    fl_profile p = hand_profile(1 << 30);
    p.curve_all_threads = 2;
    p.dram_bandwidth = 1e6; /* so that every projection here is compute-bound, from memory too */
    for (int k = 0; k < 4; k++) p.gemm_rows_flops[k] = 1000.0, p.thread_scale_proj[k] = 2.0, p.thread_scale_rec[k] = 1.0;
    fl_cost in_cache, c;
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 1, 16, 2, &in_cache), FL_OK);
    for (int k = 0; k < 4; k++) p.thread_scale_proj_mem[k] = 1.0;
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 1, 16, 2, &c), FL_OK);
    assert_close(c.seconds, in_cache.seconds, 1e-12); /* W_ih in cache: the memory table is not used */
    /* the last level shrinks below W_ih (and W_hh): the projection takes the memory table's 1.0,
     * twice its in-cache time; its flops: 2 x 64 x 64 per step at 1000 x scale */
    p.level[0].bytes = 8192;
    fl_profile no_mem = p;
    memset(no_mem.thread_scale_proj_mem, 0, sizeof no_mem.thread_scale_proj_mem);
    fl_cost old;
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 1, 16, 2, &c), FL_OK);
    assert_int_equal(fl_cost_predict(&no_mem, &a, NULL, 1, 16, 2, &old), FL_OK);
    const double proj = 2.0 * 64 * 64;
    assert_close(c.seconds - old.seconds, proj / 1000.0 - proj / 2000.0, 1e-9);
    /* at 256 rows (64 steps x batch 4) the larger figure, the level's 2.0, wherever W lives */
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 4, 64, 2, &c), FL_OK);
    assert_int_equal(fl_cost_predict(&no_mem, &a, NULL, 4, 64, 2, &old), FL_OK);
    assert_close(c.seconds, old.seconds, 1e-12);
    /* beyond the last level, the memory table's 1.0 over the level's smaller 0.5 (without it: 0.5) */
    for (int k = 0; k < 4; k++) p.thread_scale_proj[k] = 0.5, no_mem.thread_scale_proj[k] = 0.5;
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 4, 64, 2, &c), FL_OK);
    assert_int_equal(fl_cost_predict(&no_mem, &a, NULL, 4, 64, 2, &old), FL_OK);
    const double proj256 = 2.0 * 64 * 64 * 4;
    assert_close(old.seconds - c.seconds, proj256 / 500.0 - proj256 / 1000.0, 1e-9);
}

/* Both fields survive a save and load; a profile written before them loads with them 0. */
static void test_round_trip(void **state) {
    (void)state;
    fl_profile p;
    assert_int_equal(fl_profile_detect(&p), FL_OK);
    p.cold_gx_seconds[FL_METHOD_SVD][1] = 3.5e-10;
    p.cold_gx_seconds[FL_METHOD_CP][0] = 7.25e-10;
    p.thread_scale_proj_mem[2] = 1.375;
    const char *path = "test_cost_gx_profile.json";
    assert_int_equal(fl_profile_save(&p, path), FL_OK);
    fl_profile q;
    assert_int_equal(fl_profile_load(path, &q), FL_OK);
    assert_close(q.cold_gx_seconds[FL_METHOD_SVD][1], 3.5e-10, 1e-22);
    assert_close(q.cold_gx_seconds[FL_METHOD_CP][0], 7.25e-10, 1e-22);
    assert_close(q.cold_gx_seconds[FL_METHOD_DENSE][0], 0, 0);
    assert_close(q.thread_scale_proj_mem[2], 1.375, 1e-12);
    /* the same file without the two fields, as older versions wrote it */
    cJSON *saved = json_file_read(path), *root = cJSON_Duplicate(saved, 1);
    assert_non_null(cJSON_GetObjectItemCaseSensitive(root, "cold_gx_seconds"));
    cJSON_DeleteItemFromObjectCaseSensitive(root, "cold_gx_seconds");
    cJSON_DeleteItemFromObjectCaseSensitive(root, "thread_scale_proj_memory");
    json_file_write(path, root);
    cJSON_Delete(root);
    memset(&q, 0x55, sizeof q);
    assert_int_equal(fl_profile_load(path, &q), FL_OK);
    for (int m = 0; m < 3; m++) assert_true(q.cold_gx_seconds[m][0] == 0 && q.cold_gx_seconds[m][1] == 0);
    for (int k = 0; k < 4; k++) assert_true(q.thread_scale_proj_mem[k] == 0);
    /* malformed: a negative entry, a short array */
    cJSON *bad = cJSON_GetObjectItemCaseSensitive(saved, "cold_gx_seconds");
    cJSON_SetNumberValue(cJSON_GetArrayItem(bad, 4), -1.0);
    json_file_write(path, saved);
    assert_int_equal(fl_profile_load(path, &q), FL_ERR_FORMAT);
    assert_non_null(strstr(fl_last_error(), "cold_gx_seconds"));
    cJSON_SetNumberValue(cJSON_GetArrayItem(bad, 4), 0.0); /* valid again: the short array alone */
    cJSON_DeleteItemFromArray(bad, 5);
    json_file_write(path, saved);
    cJSON_Delete(saved);
    assert_int_equal(fl_profile_load(path, &q), FL_ERR_FORMAT);
    remove(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cold_gx_term),
        cmocka_unit_test(test_proj_scale_by_residence),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
