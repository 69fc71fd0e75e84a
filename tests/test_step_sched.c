/* The step schedule recorded in a model (fl_model_planned_step_sched, metadata "step_schedule"; the
 * planner's side is test_plan_step_sched.c): the setter's checks, clone and file round trip (written only
 * when recorded), a bad value in a file refused naming the file and the value, the rule a session applies
 * with FL_STEP_AUTO (fl_step_rows_chunks: the recorded schedule where it applies, its exclusions, else the
 * fixed rule), and sessions on a model with a recorded schedule giving the explicit schedule's outputs
 * bit for bit, as a file of the previous format (no key) runs as before. Nothing is timed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "internal.h"
#include "recurrent.h"
#include "run_outs.h"
#include "session_sched.h"
#include "testutil.h"
#include "tuning_consts.h"

#include <stdlib.h>
#include <string.h>

enum { D = 29, H = 203, MAXB = 20, T = 6 };

static int setup(void **state) {
    (void)state;
    return tmp_dir_make("fl_test_step_sched");
}

static int teardown(void **state) {
    (void)state;
    return tmp_dir_remove();
}

/* 2 x H; every W_ih / W_hh stored as method (rank clamped to the matrix), or an LSTMP of P = 64. */
static fl_model *make(fl_method method, int rank, int proj) {
    fl_arch a = {.input = D, .hidden = H, .layers = 2, .proj = proj};
    fl_model *m = NULL;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    if (method != FL_METHOD_DENSE) {
        fl_mat_spec specs[16];
        const size_t n = fl_model_num_matrices(m);
        assert_true(n <= 16);
        for (size_t i = 0; i < n; i++) {
            fl_matrix_info mi;
            assert_int_equal(fl_model_matrix_info(m, i, &mi), FL_OK);
            const int r = method == FL_METHOD_SVD && rank > mi.cols ? mi.cols : rank;
            specs[i] = mi.kind == FL_MAT_IH || mi.kind == FL_MAT_HH ? (fl_mat_spec){method, r}
                                                                      : (fl_mat_spec){FL_METHOD_DENSE, 0};
        }
        fl_model_free(m);
        assert_int_equal(fl_model_create(&a, specs, &m), FL_OK);
    }
    assert_int_equal(fl_model_init_random(m, 17), FL_OK);
    return m;
}

static void test_model_api(void **state) {
    (void)state;
    assert_int_equal(fl_model_planned_step_sched(NULL), FL_STEP_AUTO);
    assert_int_equal(fl_model_set_planned_step_sched(NULL, FL_STEP_ROWS), FL_ERR_ARG);
    assert_string_equal(fl_step_sched_name(FL_STEP_AUTO), "auto");
    assert_string_equal(fl_step_sched_name(FL_STEP_BLOCKS), "blocks");
    assert_string_equal(fl_step_sched_name(FL_STEP_ROWS), "rows");
    assert_string_equal(fl_step_sched_name((fl_step_sched)7), "unknown");
    fl_model *m = make(FL_METHOD_DENSE, 0, 0);
    assert_int_equal(fl_model_planned_step_sched(m), FL_STEP_AUTO); /* none recorded */
    assert_int_equal(fl_model_set_planned_step_sched(m, FL_STEP_ROWS), FL_OK);
    assert_int_equal(fl_model_planned_step_sched(m), FL_STEP_ROWS);
    assert_int_equal(fl_model_set_planned_step_sched(m, (fl_step_sched)3), FL_ERR_ARG);
    assert_non_null(strstr(fl_last_error(), "unknown schedule 3"));
    assert_int_equal(fl_model_set_planned_step_sched(m, (fl_step_sched)-1), FL_ERR_ARG);
    assert_int_equal(fl_model_planned_step_sched(m), FL_STEP_ROWS); /* unchanged */
    fl_model *c = NULL;
    assert_int_equal(fl_model_clone(m, &c), FL_OK);
    assert_int_equal(fl_model_planned_step_sched(c), FL_STEP_ROWS);
    assert_int_equal(fl_model_set_planned_step_sched(m, FL_STEP_AUTO), FL_OK); /* clears */
    assert_int_equal(fl_model_planned_step_sched(m), FL_STEP_AUTO);
    assert_int_equal(fl_model_planned_step_sched(c), FL_STEP_ROWS); /* the clone's own */
    fl_model_free(c);
    fl_model_free(m);
}

/* Save m recording sched as path and load it back; the loaded model's schedule. */
static fl_step_sched round_trip(fl_model *m, fl_step_sched sched, const char *path) {
    assert_int_equal(fl_model_set_planned_step_sched(m, sched), FL_OK);
    assert_int_equal(fl_model_save(m, path), FL_OK);
    fl_model *r = NULL;
    if (fl_model_load(path, &r)) fail_msg("fl_model_load %s: %s", path, fl_last_error());
    const fl_step_sched got = fl_model_planned_step_sched(r);
    fl_model_free(r);
    return got;
}

/* Whether the JSON header of the file at path (after its 8-byte length) contains needle. */
static bool header_has(const char *path, const char *needle) {
    unsigned char *b;
    const size_t n = file_read(path, &b);
    assert_true(n > 8);
    const bool found = strstr((const char *)b + 8, needle) != NULL;
    free(b);
    return found;
}

/* Overwrite the value of "step_schedule" in the file at path (4 characters, so the header keeps its
 * length) with val. */
static void patch_value(const char *path, const char *val) {
    unsigned char *b;
    const size_t n = file_read(path, &b);
    char *k = strstr((char *)b + 8, "\"step_schedule\"");
    assert_non_null(k);
    char *v = strstr(k + 15, "\"rows\"");
    assert_true(v && v - k < 24);
    memcpy(v + 1, val, 4);
    file_write(path, b, n);
    free(b);
}

static void test_file(void **state) {
    (void)state;
    fl_model *m = make(FL_METHOD_SVD, 40, 0);
    const char *none = tmp_path("none.st"), *rows = tmp_path("rows.st"), *blocks = tmp_path("blocks.st");
    assert_int_equal(round_trip(m, FL_STEP_AUTO, none), FL_STEP_AUTO);
    assert_true(header_has(none, "\"layers\""));
    assert_false(header_has(none, "step_schedule")); /* written only when recorded */
    assert_int_equal(round_trip(m, FL_STEP_BLOCKS, blocks), FL_STEP_BLOCKS);
    assert_true(header_has(blocks, "\"step_schedule\""));
    assert_int_equal(round_trip(m, FL_STEP_ROWS, rows), FL_STEP_ROWS);
    /* a value other than "blocks" / "rows" ("auto" is the API's, never a file's) */
    static const char *bad[] = {"diag", "auto", "Rows"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *p = tmp_path("bad.st");
        assert_int_equal(fl_model_save(m, p), FL_OK); /* records rows */
        patch_value(p, bad[i]);
        fl_model *r = (fl_model *)1;
        assert_int_equal(fl_model_load(p, &r), FL_ERR_FORMAT);
        assert_null(r);
        char want[64];
        snprintf(want, sizeof want, "\"step_schedule\" is \"%s\", not \"blocks\" or \"rows\"", bad[i]);
        if (!strstr(fl_last_error(), want) || !strstr(fl_last_error(), p))
            fail_msg("expected the file and '%s' in: %s", want, fl_last_error());
    }
    fl_model_free(m);
}

/* fl_step_rows_chunks on layer 0 of m, its step on `threads` threads. */
static int chunks(const fl_model *m, int threads, fl_step_sched asked, fl_step_sched recorded, int B) {
    fl_rec *r = NULL;
    assert_int_equal(fl_rec_create(&m->layer[0], MAXB, threads, &r), FL_OK);
    const int n = fl_step_rows_chunks(m, 0, r, asked, recorded, B);
    fl_rec_free(r);
    return n;
}

static void test_rule(void **state) {
    (void)state;
    fl_model *dense = make(FL_METHOD_DENSE, 0, 0), *svd = make(FL_METHOD_SVD, 150, 0), *small = make(FL_METHOD_SVD, 20, 0);
    fl_model *lstmp = make(FL_METHOD_DENSE, 0, 64);
    const fl_step_sched A = FL_STEP_AUTO, R = FL_STEP_ROWS, K = FL_STEP_BLOCKS;
    /* nothing recorded: the fixed rule (dense W_hh by blocks, a small SVD one by rows) */
    assert_int_equal(chunks(dense, 2, A, A, 20), 0);
    assert_int_equal(chunks(svd, 2, A, A, 20), 2);
    /* recorded: overrides the rule both ways */
    assert_int_equal(chunks(dense, 2, A, R, 20), 2);
    assert_int_equal(chunks(svd, 2, A, K, 20), 0);
    assert_int_equal(chunks(dense, 3, A, R, 6), 3);
    /* ... except below 2 rows per thread; a step too small for the rule to split runs as recorded */
    assert_int_equal(chunks(dense, 2, A, R, 3), 0);
    assert_int_equal(chunks(dense, 3, A, R, 5), 0);
    assert_int_equal(chunks(svd, 2, A, R, 4), 2);
    const double whh = (double)fl_mat_params(&small->layer[0].whh) * sizeof(float);
    assert_true(whh * 4 < FL_MIN_PARALLEL_BYTES && whh * 8 >= FL_MIN_PARALLEL_BYTES);
    assert_int_equal(chunks(small, 2, A, A, 4), 0);
    assert_int_equal(chunks(small, 2, A, A, 8), 2);
    assert_int_equal(chunks(small, 2, A, R, 4), 2);
    assert_int_equal(chunks(svd, 2, A, R, 1), 0);
    assert_int_equal(chunks(dense, 1, A, R, 20), 0); /* one thread */
    /* an explicit schedule is the session's, whatever is recorded */
    assert_int_equal(chunks(dense, 2, R, K, 3), 2);
    assert_int_equal(chunks(svd, 2, K, R, 20), 0);
    /* LSTMP never by rows */
    assert_int_equal(chunks(lstmp, 2, A, R, 20), 0);
    assert_int_equal(chunks(lstmp, 2, R, R, 20), 0);
    fl_model_free(dense), fl_model_free(svd), fl_model_free(small), fl_model_free(lstmp);
}

static void run(const fl_model *m, int threads, fl_step_sched sched, const float *x, outs *o) {
    fl_session_opts so = {.max_batch = MAXB, .max_seq = T, .threads = threads, .step_sched = sched};
    fl_session *s = NULL;
    if (fl_session_create(m, &so, &s)) fail_msg("fl_session_create: %s", fl_last_error());
    memset(o->y, 0xff, o->ny * sizeof(float)); /* NaN: every output must be written */
    fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = MAXB, .seq = T, .x = x, .y = o->y, .hn = o->hn, .cn = o->cn};
    if (fl_session_run(s, &io)) fail_msg("fl_session_run: %s", fl_last_error());
    fl_session_free(s);
}

static bool same(const outs *a, const outs *b) {
    return !memcmp(a->y, b->y, a->ny * sizeof(float)) && !memcmp(a->hn, b->hn, a->nh * sizeof(float)) &&
           !memcmp(a->cn, b->cn, a->nc * sizeof(float));
}

/* On 2 threads, batch 20: a session with FL_STEP_AUTO on a model recording rows / blocks gives the
 * explicit schedule's outputs bit for bit, a model loaded from a file without the key those of the
 * model it was saved from, and every one those of 1 thread. */
static void check_sessions(fl_model *m, const char *name) {
    float *x = randoms((size_t)MAXB * T * D, 23);
    outs ref, got, exp;
    outs_alloc(m, MAXB, T, &ref), outs_alloc(m, MAXB, T, &got), outs_alloc(m, MAXB, T, &exp);
    run(m, 1, FL_STEP_BLOCKS, x, &ref);
    static const fl_step_sched rec[2] = {FL_STEP_ROWS, FL_STEP_BLOCKS};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(fl_model_set_planned_step_sched(m, rec[k]), FL_OK);
        run(m, 2, FL_STEP_AUTO, x, &got);
        run(m, 2, rec[k], x, &exp);
        if (!same(&got, &exp) || !same(&got, &ref))
            fail_msg("%s recording %s: auto differs from the explicit schedule or 1 thread", name,
                     fl_step_sched_name(rec[k]));
    }
    assert_int_equal(fl_model_set_planned_step_sched(m, FL_STEP_AUTO), FL_OK);
    const char *p = tmp_path("old.st");
    assert_int_equal(fl_model_save(m, p), FL_OK);
    fl_model *old = NULL;
    assert_int_equal(fl_model_load(p, &old), FL_OK);
    assert_int_equal(fl_model_planned_step_sched(old), FL_STEP_AUTO);
    run(m, 2, FL_STEP_AUTO, x, &exp);
    run(old, 2, FL_STEP_AUTO, x, &got);
    if (!same(&got, &exp) || !same(&got, &ref)) fail_msg("%s without a recorded schedule: outputs differ", name);
    fl_model_free(old);
    outs_free(&ref), outs_free(&got), outs_free(&exp);
    free(x);
}

static void test_sessions(void **state) {
    (void)state;
    fl_model *dense = make(FL_METHOD_DENSE, 0, 0), *svd = make(FL_METHOD_SVD, 150, 0), *cp = make(FL_METHOD_CP, 37, 0);
    check_sessions(dense, "dense");
    check_sessions(svd, "svd");
    check_sessions(cp, "cp");
    fl_model_free(dense), fl_model_free(svd), fl_model_free(cp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_api), cmocka_unit_test(test_file), cmocka_unit_test(test_rule),
        cmocka_unit_test(test_sessions),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
