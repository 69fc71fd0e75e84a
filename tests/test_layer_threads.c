/* Threads planned per layer (issue 10): the model records a count for each layer's steps (metadata
 * "layer_threads"), the counts survive a save and load, older files (only "threads", or none) still
 * load, a session created with threads = 0 runs each layer on its own count and one created with a
 * count runs every layer on it (fl_session_threads); the cost model takes per-layer counts and the
 * planner chooses them. Nothing is timed (verify = 0). */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fastlstm/plan.h"
#include "internal.h"
#include "testutil.h"
#include "flat_profile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whether the file holds the bytes of needle (its header starts with a length that has zero bytes,
 * so a string search of the whole would stop there). */
static bool holds(const char *path, const char *needle) {
    unsigned char *buf;
    size_t n = file_read(path, &buf);
    bool found = memmem(buf, n, needle, strlen(needle)) != NULL;
    free(buf);
    return found;
}

static fl_model *make_model(int layers, int input, int hidden) {
    fl_arch a = {.input = input, .hidden = hidden, .layers = layers, .head = FL_HEAD_NONE};
    fl_model *m;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 5), FL_OK);
    return m;
}

/* Counts of a session on m created with `threads`, into got[layers]; the most into *most. */
static void session_counts(const fl_model *m, int threads, int *got, int *most) {
    fl_session_opts so = fl_session_opts_default();
    so.threads = threads;
    fl_session *s;
    assert_int_equal(fl_session_create(m, &so, &s), FL_OK);
    for (int l = 0; l < fl_model_arch(m)->layers; l++) got[l] = fl_session_threads(s, l);
    *most = fl_session_threads(s, -1);
    assert_int_equal(fl_session_threads(s, fl_model_arch(m)->layers), 0);
    fl_session_free(s);
}

static void test_counts_round_trip_and_drive_sessions(void **state) {
    (void)state;
    fl_model *m = make_model(3, 5, 8);
    const int want[3] = {2, 1, 3};
    assert_int_equal(fl_model_set_planned_threads(m, want), FL_OK);
    const char *path = tmp_path("layers.safetensors");
    assert_int_equal(fl_model_save(m, path), FL_OK);
    assert_true(holds(path, "\"layer_threads\":\"2,1,3\""));
    assert_true(holds(path, "\"threads\":\"3\"")); /* what readers before per-layer counts use */
    fl_model *back;
    assert_int_equal(fl_model_load(path, &back), FL_OK);
    for (int l = 0; l < 3; l++) assert_int_equal(fl_model_planned_threads(back, l), want[l]);
    assert_int_equal(fl_model_planned_threads(back, -1), 3);
    assert_int_equal(fl_model_planned_threads(back, 3), 0);
    int got[3], most;
    session_counts(back, 0, got, &most); /* threads 0: the planned count of each layer */
    for (int l = 0; l < 3; l++) assert_int_equal(got[l], want[l]);
    assert_int_equal(most, 3);
    session_counts(back, 2, got, &most); /* a count given: every layer on it */
    for (int l = 0; l < 3; l++) assert_int_equal(got[l], 2);
    assert_int_equal(most, 2);
    /* fl_session_set_threads: every layer on the new count */
    fl_session_opts so = fl_session_opts_default();
    so.threads = 0;
    fl_session *s;
    assert_int_equal(fl_session_create(back, &so, &s), FL_OK);
    assert_int_equal(fl_session_set_threads(s, 1), FL_OK);
    for (int l = 0; l < 3; l++) assert_int_equal(fl_session_threads(s, l), 1);
    fl_session_free(s);
    /* a clone keeps them; NULL clears them */
    fl_model *c;
    assert_int_equal(fl_model_clone(back, &c), FL_OK);
    for (int l = 0; l < 3; l++) assert_int_equal(fl_model_planned_threads(c, l), want[l]);
    assert_int_equal(fl_model_set_planned_threads(c, NULL), FL_OK);
    assert_int_equal(fl_model_planned_threads(c, 0), 0);
    session_counts(c, 0, got, &most);
    for (int l = 0; l < 3; l++) assert_int_equal(got[l], 1);
    fl_model_free(c);
    fl_model_free(back);
    fl_model_free(m);
}

static void test_bad_counts(void **state) {
    (void)state;
    fl_model *m = make_model(2, 3, 4);
    const int ok[2] = {2, 2}, zero[2] = {2, 0}, huge[2] = {1, 1025};
    assert_int_equal(fl_model_set_planned_threads(m, ok), FL_OK);
    assert_int_equal(fl_model_set_planned_threads(m, zero), FL_ERR_ARG);
    assert_int_equal(fl_model_set_planned_threads(m, huge), FL_ERR_ARG);
    assert_int_equal(fl_model_planned_threads(m, 1), 2); /* unchanged */
    assert_int_equal(fl_model_set_planned_threads(NULL, ok), FL_ERR_ARG);
    assert_int_equal(fl_model_planned_threads(NULL, 0), 0);
    assert_int_equal(fl_session_threads(NULL, 0), 0);
    /* the file's value, rewritten in place with strings of the same length */
    const int two_one[2] = {2, 1};
    assert_int_equal(fl_model_set_planned_threads(m, two_one), FL_OK);
    const char *path = tmp_path("bad.safetensors");
    assert_int_equal(fl_model_save(m, path), FL_OK);
    unsigned char *buf;
    size_t n = file_read(path, &buf);
    const char *key = "\"layer_threads\":\"2,1\"";
    char *v = memmem(buf, n, key, strlen(key));
    assert_non_null(v);
    v += strlen("\"layer_threads\":\"");
    const char *bad[] = {"2,0", "0,1", "2,x", "2;1", "2  ", "2,-"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        memcpy(v, bad[k], 3);
        const char *bp = tmp_path("bad2.safetensors");
        file_write(bp, buf, n);
        fl_model *back = NULL;
        assert_int_equal(fl_model_load(bp, &back), FL_ERR_FORMAT);
        assert_null(back);
        assert_non_null(strstr(fl_last_error(), "layer_threads"));
    }
    free(buf);
    fl_model_free(m);
}

/* Files without per-layer counts: one with "threads" only (as written before them) runs every
 * layer on it; the version-1 fixture (no counts at all) runs on one thread. */
static void test_older_files_load(void **state) {
    (void)state;
    fl_model *m = make_model(2, 3, 4);
    m->planned_threads = 2; /* what the planner recorded before per-layer counts */
    const char *path = tmp_path("old.safetensors");
    assert_int_equal(fl_model_save(m, path), FL_OK);
    assert_false(holds(path, "layer_threads"));
    fl_model *back;
    assert_int_equal(fl_model_load(path, &back), FL_OK);
    int got[2], most;
    assert_int_equal(fl_model_planned_threads(back, 0), 2);
    assert_int_equal(fl_model_planned_threads(back, 1), 2);
    session_counts(back, 0, got, &most);
    assert_int_equal(got[0], 2);
    assert_int_equal(got[1], 2);
    fl_model_free(back);
    fl_model_free(m);
    const char *src = getenv("FL_SOURCE_DIR");
    if (!src) src = ".";
    char p[1024];
    snprintf(p, sizeof p, "%s/tests/data/model_v1.safetensors", src);
    fl_model *v1;
    assert_int_equal(fl_model_load(p, &v1), FL_OK);
    assert_int_equal(fl_model_planned_threads(v1, 0), 0);
    assert_int_equal(fl_model_planned_threads(v1, -1), 0);
    session_counts(v1, 0, got, &most);
    assert_int_equal(got[0], 1);
    assert_int_equal(got[1], 1);
    assert_int_equal(most, 1);
    fl_model_free(v1);
}

/* Layer 0 of (input 2048, hidden 64) has a large dense projection the runtime splits; layer 1's
 * parts are all below the thread rule. */
static const fl_arch wide = {.input = 2048, .hidden = 64, .layers = 2, .head = FL_HEAD_NONE};

static void test_cost_per_layer(void **state) {
    (void)state;
    fl_profile p;
    p = two_core_profile();
    fl_cost c1, c2, cmix, cu;
    fl_cost_term t[4];
    const int one[2] = {1, 1}, two[2] = {2, 2}, mix[2] = {2, 1};
    assert_int_equal(fl_cost_predict(&p, &wide, NULL, 1, 35, 1, &c1), FL_OK);
    assert_int_equal(fl_cost_predict(&p, &wide, NULL, 1, 35, 2, &c2), FL_OK);
    assert_int_equal(fl_cost_predict_layers(&p, &wide, NULL, NULL, 1, 35, one, &cu, NULL), FL_OK);
    assert_true(cu.seconds == c1.seconds && cu.threads == 1);
    assert_int_equal(fl_cost_predict_layers(&p, &wide, NULL, NULL, 1, 35, two, &cu, NULL), FL_OK);
    assert_true(cu.seconds == c2.seconds && cu.threads == 2);
    assert_int_equal(fl_cost_predict_layers(&p, &wide, NULL, NULL, 1, 35, mix, &cmix, t), FL_OK);
    assert_int_equal(cmix.threads, 2);
    /* matrices: W_ih l0, W_hh l0, W_ih l1, W_hh l1; only layer 0's projection splits */
    assert_int_equal(t[0].threads, 2);
    assert_int_equal(t[1].threads, 1);
    assert_int_equal(t[2].threads, 1);
    assert_int_equal(t[3].threads, 1);
    assert_true(c2.seconds < c1.seconds);
    assert_true(cmix.seconds == c2.seconds); /* layer 1 gains nothing from a second thread */
    const int bad[2] = {2, 0};
    assert_int_equal(fl_cost_predict_layers(&p, &wide, NULL, NULL, 1, 35, bad, &cu, NULL), FL_ERR_ARG);
    assert_int_equal(fl_cost_predict_layers(&p, &wide, NULL, NULL, 1, 35, NULL, &cu, NULL), FL_ERR_ARG);
}

/* The planner gives layer 0 two threads and layer 1 one (ties go to fewer), records them in the
 * chosen model, and a session on it with threads 0 runs so; with a count given, every layer on it. */
static void test_planner_chooses_per_layer(void **state) {
    (void)state;
    fl_profile p;
    p = two_core_profile();
    fl_model *m = make_model(wide.layers, wide.input, wide.hidden);
    fl_plan_opts o = fl_plan_opts_default();
    o.threads = 0;
    o.max_threads = 2;
    o.verify = 0;
    o.max_evals = 2;
    o.dev_samples = 1;
    o.seq = 35;
    o.allow_cp = 0;
    fl_plan *plan;
    assert_int_equal(fl_plan_create(m, &p, &o, &plan), FL_OK);
    assert_int_equal(fl_plan_layer_threads(plan, 0), 2);
    assert_int_equal(fl_plan_layer_threads(plan, 1), 1);
    assert_int_equal(fl_plan_layer_threads(plan, 2), 0);
    assert_int_equal(fl_plan_threads(plan), 2);
    const fl_model *pm = fl_plan_model(plan);
    assert_int_equal(fl_model_planned_threads(pm, 0), 2);
    assert_int_equal(fl_model_planned_threads(pm, 1), 1);
    int got[2], most;
    session_counts(pm, 0, got, &most);
    assert_int_equal(got[0], 2);
    assert_int_equal(got[1], 1);
    fl_plan_free(plan);
    o.threads = 1;
    assert_int_equal(fl_plan_create(m, &p, &o, &plan), FL_OK);
    assert_int_equal(fl_plan_layer_threads(plan, 0), 1);
    assert_int_equal(fl_plan_layer_threads(plan, 1), 1);
    assert_int_equal(fl_model_planned_threads(fl_plan_model(plan), 0), 1);
    fl_plan_free(plan);
    fl_model_free(m);
}

static int setup(void **state) {
    (void)state;
    return tmp_dir_make("fl_layer_threads");
}

static int teardown(void **state) {
    (void)state;
    return tmp_dir_remove();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_round_trip_and_drive_sessions),
        cmocka_unit_test(test_bad_counts),
        cmocka_unit_test(test_older_files_load),
        cmocka_unit_test(test_cost_per_layer),
        cmocka_unit_test(test_planner_chooses_per_layer),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
