/* Cost model, the dense step with its W_hh beyond the private level (format 5): the size the profile
 * measures it at (fl_profile_far_hidden), the rates and speed-ups fl_profile_rates_apply makes of
 * the passes' timings, the step's rate in a prediction (the H 256 figures up to the private level,
 * the far ones from rec_far_bytes, log-linear between), the file's round trip, a version 4 file and
 * malformed fields. Nothing here is timed. */
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

/* A private L2 of 64 KiB (usable 48 KiB), a shared last level of 16 MiB; all rates high but the
 * step's flop rates, so a dense W_hh at batch 16 is compute-bound: its term is flops / rate. */
static fl_profile hand_profile(void) {
    fl_profile p = {0};
    p.cores = 2;
    p.simd_bits = 256;
    p.n_levels = 2;
    p.level[0] = (fl_cache_level){.level = 2, .bytes = 1 << 16, .shared_cpus = 1, .bandwidth = 1e15};
    p.level[1] = (fl_cache_level){.level = 3, .bytes = 16 << 20, .shared_cpus = 2, .bandwidth = 1e15};
    p.dram_bandwidth = 1e15;
    p.gemm_flops = 1e15;
    p.gemv_flops = 100.0;
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) p.rec_rows_flops[k] = 1000.0, p.gemm_rows_flops[k] = 1e15;
    return p;
}

/* The measured size: 4 x the largest private level (the larger of its knee and its reported size;
 * at least 1 MiB) as a (4H, H) f32 W_hh, H a
 * multiple of 16; none with one level or a last level under 16 x the private one. */
static void test_far_hidden(void **state) {
    (void)state;
    fl_profile p = hand_profile();
    assert_int_equal(fl_profile_far_hidden(&p), 256); /* 4 x 64 KiB, raised to 1 MiB: 16 H^2 */
    p.level[0].bytes = (size_t)2 << 20;                 /* 8 MiB: H 724 -> 720 */
    p.level[1].bytes = (size_t)260 << 20;
    assert_int_equal(fl_profile_far_hidden(&p), 720);
    /* a knee below the reported size (a kernel's slowdown on the dense curve): the reported size,
     * up to 8x the knee; beyond that the report is not trusted */
    p.level[0].bytes = 1 << 18, p.level[0].reported_bytes = (size_t)2 << 20;
    assert_int_equal(fl_profile_far_hidden(&p), 720);
    assert_int_equal(fl_profile_beyond_private(&p), (size_t)8 << 20);
    p.level[0].bytes = 1 << 17; /* 16x: 4 x 128 KiB, raised to 1 MiB */
    assert_int_equal(fl_profile_far_hidden(&p), 256);
    p.level[0].bytes = 1 << 16, p.level[0].reported_bytes = 1 << 15; /* a knee above the report */
    assert_int_equal(fl_profile_far_hidden(&p), 256);
    p.level[0].bytes = (size_t)2 << 20;
    p.level[1].bytes = (size_t)16 << 20; /* 4 x 2 MiB is beyond a quarter of 16 MiB */
    assert_int_equal(fl_profile_far_hidden(&p), 0);
    p.n_levels = 1;
    assert_int_equal(fl_profile_far_hidden(&p), 0);
    assert_int_equal(fl_profile_far_hidden(NULL), 0);
}

/* rates_apply: the far rate 8 H^2 B over the one-thread time less the cell, its speed-up as the
 * H 256 one's, and rec_far_bytes 16 H^2; none without far timings. */
static void test_apply(void **state) {
    (void)state;
    fl_profile p = hand_profile();
    p.cell_seconds = p.cell_seconds_b1 = 1e-9;
    fl_rate_passes rp;
    memset(&rp, 0, sizeof rp);
    rp.n = 1, rp.threads = 2, rp.far_hidden = 128;
    rp.gemm[0] = rp.gemv[0] = 1e9;
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) {
        const int B = 4 << (2 * k);
        rp.rows[0][k] = 1e9;
        rp.rec_t1[0][k] = 2e-3 * B, rp.rec_tn[0][k] = 1.2e-3 * B;
        rp.far_t1[0][k] = 5e-4 * B, rp.far_tn[0][k] = 4e-4 * B;
    }
    fl_profile_rates_apply(&rp, &p);
    assert_close(p.rec_far_bytes, 16.0 * 128 * 128, 1e-9);
    const double sync = fl_cost_thread_sync(&p);
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) {
        const int B = 4 << (2 * k);
        const double cell = fl_profile_cell_of(&p, B, 128, 1), t1 = fl_profile_without_cell(5e-4 * B, cell);
        assert_close(p.rec_rows_flops_far[k], 8.0 * 128 * 128 * B / t1, 1e-6 * p.rec_rows_flops_far[k]);
        const double tn = fl_profile_without_cell(fl_profile_without_cell(4e-4 * B, sync), cell / 2);
        assert_close(p.thread_scale_rec_far[k], t1 / tn, 1e-9);
    }
    rp.far_hidden = 0;
    fl_profile_rates_apply(&rp, &p);
    assert_true(p.rec_far_bytes == 0 && p.rec_rows_flops_far[0] == 0 && p.thread_scale_rec_far[0] == 0);
}

/* The dense W_hh's compute term at batch 16 on one thread (flops 16 * 8 H^2): the H 256 rate (1000)
 * while W_hh fits 48 KiB, the far rate (400) from rec_far_bytes (1 MiB) on, log-linear between, and
 * the H 256 rate again for a W_hh no cache level holds (64 MiB: rec_memory_factor's case, 0 here); the
 * same without the far figures at every size. */
static void test_rate(void **state) {
    (void)state;
    fl_profile p = hand_profile(), base = hand_profile();
    p.rec_far_bytes = 1 << 20;
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) p.rec_rows_flops_far[k] = 400.0;
    const int Hs[4] = {48, 128, 512, 2048}; /* W_hh 36 KiB, 256 KiB, 4 MiB, 64 MiB */
    for (int i = 0; i < 4; i++) {
        const fl_arch a = {.input = 8, .hidden = Hs[i], .layers = 1, .head = FL_HEAD_NONE};
        const double bytes = 16.0 * Hs[i] * Hs[i], flops = 16 * 8.0 * Hs[i] * Hs[i];
        fl_cost c;
        fl_cost_term t[2], t0[2];
        assert_int_equal(fl_cost_predict_terms(&p, &a, NULL, 16, 4, 1, &c, t), FL_OK);
        assert_int_equal(fl_cost_predict_terms(&base, &a, NULL, 16, 4, 1, &c, t0), FL_OK);
        const double priv = 0.75 * 65536, u = log(bytes / priv) / log((1 << 20) / priv);
        const double rate = bytes <= priv || i == 3 ? 1000.0 : bytes >= (1 << 20) ? 400.0 : 1000.0 + u * (400.0 - 1000.0);
        assert_close(t[1].compute_seconds, flops / rate, 1e-9 * flops / rate);
        assert_close(t0[1].compute_seconds, flops / 1000.0, 1e-9 * flops / 1000.0);
    }
}

/* recurrent_far round-trips (version 5); without it (version 4) every figure is 0 and the model
 * prices as before; a missing table, a zero rate or no bytes is refused, named. */
static void test_file(void **state) {
    (void)state;
    const char *path = tmp_path("far_profile.json");
    fl_profile p = hand_profile(), q;
    p.rec_far_bytes = 8294400;
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) p.rec_rows_flops_far[k] = 1e11 * (k + 1), p.thread_scale_rec_far[k] = 1.5;
    p.id.cores = 2;
    assert_int_equal(fl_profile_save(&p, path), FL_OK);
    if (fl_profile_load(path, &q)) fail_msg("%s", fl_last_error());
    assert_close(q.rec_far_bytes, 8294400, 1e-6);
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) {
        assert_close(q.rec_rows_flops_far[k], 1e11 * (k + 1), 1e-3);
        assert_close(q.thread_scale_rec_far[k], 1.5, 1e-12);
    }
    cJSON *root = json_file_read(path);
    cJSON *bad[3] = {cJSON_Duplicate(root, 1), cJSON_Duplicate(root, 1), cJSON_Duplicate(root, 1)};
    cJSON_DeleteItemFromObject(cJSON_GetObjectItem(bad[0], "recurrent_far"), "thread_scale");
    cJSON_SetNumberValue(cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(bad[1], "recurrent_far"), "rows_flops"), 1), 0);
    cJSON_SetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(bad[2], "recurrent_far"), "bytes"), 0);
    cJSON_DeleteItemFromObject(root, "recurrent_far");
    cJSON_SetNumberValue(cJSON_GetObjectItem(root, "version"), 4);
    json_file_write(path, root);
    assert_int_equal(fl_profile_load(path, &q), FL_OK);
    assert_true(q.rec_far_bytes == 0 && q.rec_rows_flops_far[0] == 0);
    const fl_arch a = {.input = 8, .hidden = 512, .layers = 1, .head = FL_HEAD_NONE};
    const fl_profile old = hand_profile();
    fl_cost x, y;
    assert_int_equal(fl_cost_predict(&q, &a, NULL, 16, 4, 1, &x), FL_OK);
    assert_int_equal(fl_cost_predict(&old, &a, NULL, 16, 4, 1, &y), FL_OK);
    assert_close(x.seconds, y.seconds, 1e-12 * y.seconds);
    for (int i = 0; i < 3; i++) {
        json_file_write(path, bad[i]);
        assert_int_equal(fl_profile_load(path, &q), FL_ERR_FORMAT);
        assert_non_null(strstr(fl_last_error(), "recurrent_far"));
        cJSON_Delete(bad[i]);
    }
    cJSON_Delete(root);
}

static int setup(void **state) {
    (void)state;
    return tmp_dir_make("test_cost_far");
}

static int teardown(void **state) {
    (void)state;
    return tmp_dir_remove();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_far_hidden),
        cmocka_unit_test(test_apply),
        cmocka_unit_test(test_rate),
        cmocka_unit_test(test_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
