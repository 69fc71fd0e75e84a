/* A session's activations (cost_act.c): the footprint and per-step traffic of a run, the profile's
 * activation figures read at a footprint (0 below the first point, linear in log footprint between
 * points, the last point's above it), the cost model adding traffic x figure to a prediction in
 * place of its gx-from-memory term, and the profile file round trip (format 8; a version 7 file
 * loads without the figures; malformed ones are refused, naming the field). Hand-written profiles;
 * nothing here is timed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fastlstm/plan.h"
#include "plan/plan_internal.h"
#include "testutil.h"
#include "json_file.h"
#include "flat_profile.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

/* 2 x 1500, no head: the shape whose batch-20 steps the figures are for (docs/planner.md, "Session 17"). */
static const fl_arch big = {.input = 1500, .hidden = 1500, .layers = 2, .head = FL_HEAD_NONE};

/* Activation figures: 0 at 2 MB, 1e-12 s per byte at 8 MB, 4e-12 from 32 MB. */
static void set_act(fl_profile *p) {
    const double mb = 1 << 20;
    const double b[FL_PROFILE_ACT_POINTS] = {2 * mb, 8 * mb, 32 * mb, 64 * mb, 128 * mb};
    const double s[FL_PROFILE_ACT_POINTS] = {0, 1e-12, 4e-12, 4e-12, 4e-12};
    memcpy(p->act_bytes, b, sizeof b);
    memcpy(p->act_seconds, s, sizeof s);
}

static void test_footprint_and_traffic(void **state) {
    (void)state;
    /* x and its packed copy, gx, two outputs, y: 4 B T (2 D + 4 H + 2 H + H) */
    assert_true(fl_act_footprint(&big, 20, 35) == 4.0 * 20 * 35 * (2 * 1500 + 6000 + 3000 + 1500));
    /* the scan and copy (3 D); per layer gx written and read (8 H), its input read, its output
     * written (2 H); y read and written (2 H) */
    assert_true(fl_act_traffic(&big, 20, 1) == 4.0 * 20 * (4500 + 2 * (12000 + 1500 + 3000) + 3000));
    /* a last-step head keeps no per-step y; a bidirectional layer doubles its gx and outputs */
    fl_arch last = big, bi = big;
    last.head = FL_HEAD_LAST_STEP, last.head_out = 10;
    assert_true(fl_act_footprint(&last, 20, 35) == 4.0 * 20 * 35 * (2 * 1500 + 6000 + 3000));
    assert_true(fl_act_traffic(&last, 20, 1) == 4.0 * 20 * (4500 + 2 * (12000 + 1500 + 3000)));
    /* on two threads the layers' part is split, the copies stay whole */
    assert_true(fl_act_traffic(&big, 20, 2) == 4.0 * 20 * (4500 + (12000 + 1500 + 3000) + 3000));
    bi.bidirectional = 1;
    assert_true(fl_act_footprint(&bi, 1, 1) == 4.0 * (2 * 1500 + 12000 + 6000 + 3000));
}

static void test_figure_at_footprint(void **state) {
    (void)state;
    fl_profile p = flat_profile();
    assert_false(fl_profile_has_act(&p));
    assert_true(fl_cost_act_seconds(&p, &big, 20, 35, 1) == 0);
    set_act(&p);
    assert_true(fl_profile_has_act(&p));
    const double tr = fl_act_traffic(&big, 20, 1);
    /* batch 20, seq 1: 54 KB, below the first point */
    assert_true(fl_cost_act_seconds(&p, &big, 20, 1, 1) == 0);
    /* the footprint at 16 MB: half way (in log) between 8 and 32 MB */
    const double per_seq = fl_act_footprint(&big, 20, 1), mb = 1 << 20;
    const int seq16 = (int)floor(16 * mb / per_seq);
    const double f = fl_act_footprint(&big, 20, seq16), u = log(f / (8 * mb)) / log(4.0);
    assert_true(fabs(fl_cost_act_seconds(&p, &big, 20, seq16, 1) - tr * (1e-12 + u * 3e-12)) < 1e-9 * tr * 1e-12);
    /* past the last point: the last figure */
    assert_true(fl_cost_act_seconds(&p, &big, 20, 10000, 1) == tr * 4e-12);
}

/* The prediction adds the activation term, and drops the gx-from-memory term it replaces. */
static void test_prediction_adds_it(void **state) {
    (void)state;
    fl_profile p = flat_profile(), q;
    p.level[0].bytes = 1 << 12; /* gx from memory at once: the cold term counts without the figures */
    for (int m = 0; m < 3; m++) p.cold_gx_seconds[m][0] = p.cold_gx_seconds[m][1] = 1e-9;
    const fl_arch a = {.input = 64, .hidden = 64, .layers = 2, .head = FL_HEAD_NONE};
    fl_cost c0, c1, c2;
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 8, 200, 1, &c0), FL_OK);
    q = p;
    memset(q.cold_gx_seconds, 0, sizeof q.cold_gx_seconds);
    assert_int_equal(fl_cost_predict(&q, &a, NULL, 8, 200, 1, &c1), FL_OK);
    assert_true(c0.seconds > c1.seconds); /* the cold term is there */
    set_act(&p);
    p.act_bytes[0] = 1; /* every footprint past the first point */
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 8, 200, 1, &c2), FL_OK);
    const double act = fl_cost_act_seconds(&p, &a, 8, 200, 1);
    assert_true(act > 0);
    assert_true(fabs(c2.seconds - (c1.seconds + act)) < 1e-9 * c1.seconds);
}

static void test_round_trip(void **state) {
    (void)state;
    fl_profile p, q;
    assert_int_equal(fl_profile_detect(&p), FL_OK);
    set_act(&p);
    const char *path = tmp_path("act_profile.json");
    assert_int_equal(fl_profile_save(&p, path), FL_OK);
    assert_int_equal(fl_profile_load(path, &q), FL_OK);
    for (int k = 0; k < FL_PROFILE_ACT_POINTS; k++)
        assert_true(q.act_bytes[k] == p.act_bytes[k] && q.act_seconds[k] == p.act_seconds[k]);
    cJSON *root = json_file_read(path);
    assert_int_equal(cJSON_GetObjectItem(root, "version")->valuedouble, 8);
    cJSON *old = cJSON_Duplicate(root, 1);
    cJSON_DeleteItemFromObjectCaseSensitive(old, "activations");
    cJSON_SetNumberValue(cJSON_GetObjectItem(old, "version"), 7);
    json_file_write(path, old);
    assert_int_equal(fl_profile_load(path, &q), FL_OK);
    assert_false(fl_profile_has_act(&q));
    cJSON *bytes = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "activations"), "bytes");
    cJSON_SetNumberValue(cJSON_GetArrayItem(bytes, 2), 1.0); /* not rising */
    json_file_write(path, root);
    assert_int_equal(fl_profile_load(path, &q), FL_ERR_FORMAT);
    assert_non_null(strstr(fl_last_error(), "'activations'"));
    cJSON_SetNumberValue(cJSON_GetArrayItem(bytes, 2), 32.0 * (1 << 20));
    cJSON *sec = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "activations"), "seconds_per_byte");
    cJSON_SetNumberValue(cJSON_GetArrayItem(sec, 1), -1.0);
    json_file_write(path, root);
    assert_int_equal(fl_profile_load(path, &q), FL_ERR_FORMAT);
    assert_non_null(strstr(fl_last_error(), "seconds_per_byte"));
    cJSON_Delete(root);
    cJSON_Delete(old);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_footprint_and_traffic),
        cmocka_unit_test(test_figure_at_footprint),
        cmocka_unit_test(test_prediction_adds_it),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
