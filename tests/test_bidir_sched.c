/* The schedules of a bidirectional layer on 2 threads (session.c, session_sched.h): the directions
 * at once, one per thread (FL_BIDIR_PARALLEL, the default), or in turn, each step split over both
 * threads (FL_BIDIR_SERIAL). Whichever runs, y, h_n
 * and c_n are bit-identical to each other and to 1 thread: dense, SVD and CP matrices, an LSTMP
 * layer, a head, with and without lengths, a session re-threaded by fl_session_set_threads. The
 * hidden size is large enough (and not a multiple of the kernels' block) that a step really is split
 * over the two threads. A model records its planned schedule (fl_model_set_planned_bidir_sched,
 * metadata "bidir_schedule", round-tripped through a file; a bad value is refused naming the file
 * and the key) and a session created from it runs that schedule, with the same bits. Nothing is
 * timed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "internal.h"
#include "run_outs.h"
#include "session_sched.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

enum { D = 37, H = 203, MAXB = 9, T = 7 };

static fl_model *make(fl_method method, int rank, int proj, fl_head_kind head) {
    fl_arch a = {.input = D, .hidden = H, .layers = 2, .bidirectional = 1, .proj = proj, .head = head,
                 .head_out = head == FL_HEAD_NONE ? 0 : 5};
    fl_mat_spec specs[32];
    for (int i = 0; i < 32; i++) specs[i] = (fl_mat_spec){FL_METHOD_DENSE, 0};
    fl_model *m = NULL;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    if (method != FL_METHOD_DENSE) {
        // every gate matrix (ih, hh) decomposed; projections and the head stay dense
        size_t n = fl_model_num_matrices(m);
        assert_true(n <= 32);
        for (size_t i = 0; i < n; i++) {
            fl_matrix_info mi;
            assert_int_equal(fl_model_matrix_info(m, i, &mi), FL_OK);
            if (mi.kind == FL_MAT_IH || mi.kind == FL_MAT_HH) specs[i] = (fl_mat_spec){method, rank};
        }
        fl_model_free(m);
        assert_int_equal(fl_model_create(&a, specs, &m), FL_OK);
    }
    assert_int_equal(fl_model_init_random(m, 11), FL_OK);
    return m;
}

static void run(fl_session *s, int B, const float *x, const int32_t *lengths, outs *o) {
    memset(o->y, 0xff, o->ny * sizeof(float)); // NaN: every output must be written
    fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = B, .seq = T, .x = x, .y = o->y, .hn = o->hn, .cn = o->cn,
                    .lengths = lengths};
    fl_status st = fl_session_run(s, &io);
    if (st) fail_msg("fl_session_run: %s", fl_last_error());
}

static void expect_same(const outs *a, const outs *b, const char *what) {
    if (memcmp(a->y, b->y, a->ny * sizeof(float)) || memcmp(a->hn, b->hn, a->nh * sizeof(float)) ||
        memcmp(a->cn, b->cn, a->nc * sizeof(float)))
        fail_msg("%s: results differ from 1 thread", what);
}

static fl_session *open_session(const fl_model *m, int threads) {
    fl_session_opts so = {.max_batch = MAXB, .max_seq = T, .threads = threads};
    fl_session *s = NULL;
    if (fl_session_create(m, &so, &s)) fail_msg("fl_session_create: %s", fl_last_error());
    return s;
}

/* Every schedule on 2 threads equals 1 thread, for batches 1, 4 and 9, with and without lengths. */
static void check_model(const fl_model *m) {
    static const int32_t lens[MAXB] = {3, 7, 1, 7, 5, 2, 6, 4, 7};
    fl_session *s1 = open_session(m, 1), *s2 = open_session(m, 2), *sr = open_session(m, 1), *ss = open_session(m, 1);
    assert_int_equal(fl_session_set_threads(sr, 2), FL_OK);  // re-threaded: the same results too
    assert_int_equal(fl_session_set_bidir_sched(ss, FL_BIDIR_SERIAL), FL_OK);  // serial, then re-threaded
    assert_int_equal(fl_session_set_threads(ss, 2), FL_OK);
    float *x = randoms((size_t)MAXB * T * D, 5);
    static const int batches[] = {1, 4, MAXB};
    for (size_t k = 0; k < sizeof batches / sizeof *batches; k++) {
        const int B = batches[k];
        for (int wl = 0; wl < 2; wl++) {
            const int32_t *lengths = wl ? lens + MAXB - B : NULL;
            outs ref, got;
            outs_alloc(m, B, T, &ref);
            outs_alloc(m, B, T, &got);
            run(s1, B, x, lengths, &ref);
            static const fl_bidir_sched sched[] = {FL_BIDIR_PARALLEL, FL_BIDIR_SERIAL, FL_BIDIR_PARALLEL};
            for (size_t j = 0; j < 3; j++) {  // and back: the default again after the serial runs
                assert_int_equal(fl_session_set_bidir_sched(s2, sched[j]), FL_OK);
                assert_int_equal(fl_session_set_bidir_sched(sr, sched[j]), FL_OK);
                assert_int_equal(fl_session_set_bidir_sched(s1, sched[j]), FL_OK);
                run(s2, B, x, lengths, &got);
                expect_same(&ref, &got, "2 threads");
                run(sr, B, x, lengths, &got);
                expect_same(&ref, &got, "set_threads(2)");
                run(s1, B, x, lengths, &got);  // on 1 thread the schedule changes nothing
                expect_same(&ref, &got, "1 thread");
            }
            run(ss, B, x, lengths, &got);
            expect_same(&ref, &got, "serial, then set_threads(2)");
            outs_free(&ref);
            outs_free(&got);
        }
    }
    free(x);
    fl_session_free(s1);
    fl_session_free(s2);
    fl_session_free(sr);
    fl_session_free(ss);
}

static void test_dense(void **state) {
    (void)state;
    fl_model *m = make(FL_METHOD_DENSE, 0, 0, FL_HEAD_NONE);
    check_model(m);
    fl_model_free(m);
}

static void test_dense_head(void **state) {
    (void)state;
    fl_model *m = make(FL_METHOD_DENSE, 0, 0, FL_HEAD_PER_STEP);
    check_model(m);
    fl_model_free(m);
}

static void test_svd(void **state) {
    (void)state;
    fl_model *m = make(FL_METHOD_SVD, 29, 0, FL_HEAD_LAST_STEP);
    check_model(m);
    fl_model_free(m);
}

static void test_cp(void **state) {
    (void)state;
    fl_model *m = make(FL_METHOD_CP, 23, 0, FL_HEAD_NONE);
    check_model(m);
    fl_model_free(m);
}

static void test_proj(void **state) {
    (void)state;
    fl_model *m = make(FL_METHOD_DENSE, 0, 61, FL_HEAD_NONE);
    check_model(m);
    fl_model_free(m);
}

static void test_bad_args(void **state) {
    (void)state;
    assert_int_equal(fl_session_set_bidir_sched(NULL, FL_BIDIR_SERIAL), FL_ERR_ARG);
    fl_model *m = make(FL_METHOD_DENSE, 0, 0, FL_HEAD_NONE);
    fl_session *s = open_session(m, 2);
    assert_int_equal(fl_session_set_bidir_sched(s, (fl_bidir_sched)7), FL_ERR_ARG);
    assert_non_null(strstr(fl_last_error(), "unknown schedule 7"));
    fl_session_free(s);
    fl_model_free(m);
}

/* A session from a model marked serial runs serial (unless told otherwise) and gives the bits of a
 * parallel one and of 1 thread. */
static void test_model_marked_serial(void **state) {
    (void)state;
    static const int32_t lens[MAXB] = {3, 7, 1, 7, 5, 2, 6, 4, 7};
    fl_model *m = make(FL_METHOD_SVD, 29, 0, FL_HEAD_PER_STEP);
    fl_session *s1 = open_session(m, 1), *par = open_session(m, 2);
    assert_int_equal(fl_model_planned_bidir_sched(m), FL_BIDIR_AUTO);
    assert_int_equal(fl_session_bidir_sched(par), FL_BIDIR_PARALLEL);
    assert_int_equal(fl_model_set_planned_bidir_sched(m, FL_BIDIR_SERIAL), FL_OK);
    assert_int_equal(fl_model_planned_bidir_sched(m), FL_BIDIR_SERIAL);
    fl_session *ser = open_session(m, 2);
    assert_int_equal(fl_session_bidir_sched(ser), FL_BIDIR_SERIAL);
    assert_int_equal(fl_session_bidir_sched(par), FL_BIDIR_PARALLEL); /* created before: keeps its own */
    fl_session_opts so = {.max_batch = MAXB, .max_seq = T, .threads = 2, .bidir_sched = FL_BIDIR_PARALLEL};
    fl_session *forced = NULL;
    assert_int_equal(fl_session_create(m, &so, &forced), FL_OK);
    assert_int_equal(fl_session_bidir_sched(forced), FL_BIDIR_PARALLEL);
    float *x = randoms((size_t)MAXB * T * D, 9);
    for (int wl = 0; wl < 2; wl++) {
        outs ref, got;
        outs_alloc(m, MAXB, T, &ref);
        outs_alloc(m, MAXB, T, &got);
        run(s1, MAXB, x, wl ? lens : NULL, &ref);
        run(ser, MAXB, x, wl ? lens : NULL, &got);
        expect_same(&ref, &got, "model marked serial");
        run(par, MAXB, x, wl ? lens : NULL, &got);
        expect_same(&ref, &got, "parallel");
        run(forced, MAXB, x, wl ? lens : NULL, &got);
        expect_same(&ref, &got, "forced parallel");
        outs_free(&ref);
        outs_free(&got);
    }
    /* AUTO switches back to the model's schedule */
    assert_int_equal(fl_session_set_bidir_sched(forced, FL_BIDIR_AUTO), FL_OK);
    assert_int_equal(fl_session_bidir_sched(forced), FL_BIDIR_SERIAL);
    free(x);
    fl_session_free(s1);
    fl_session_free(par);
    fl_session_free(ser);
    fl_session_free(forced);
    so.bidir_sched = (fl_bidir_sched)9;
    assert_int_equal(fl_session_create(m, &so, &forced), FL_ERR_ARG);
    assert_non_null(strstr(fl_last_error(), "unknown bidir_sched 9"));
    assert_int_equal(fl_model_set_planned_bidir_sched(m, (fl_bidir_sched)9), FL_ERR_ARG);
    assert_int_equal(fl_model_planned_bidir_sched(m), FL_BIDIR_SERIAL); /* unchanged */
    assert_int_equal(fl_model_set_planned_bidir_sched(NULL, FL_BIDIR_SERIAL), FL_ERR_ARG);
    assert_int_equal(fl_model_planned_bidir_sched(NULL), FL_BIDIR_AUTO);
    fl_model_free(m);
    /* a unidirectional model has one schedule */
    fl_arch a = {.input = D, .hidden = 16, .layers = 1};
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    assert_int_equal(fl_model_set_planned_bidir_sched(m, FL_BIDIR_SERIAL), FL_ERR_ARG);
    assert_non_null(strstr(fl_last_error(), "without bidirectional layers"));
    assert_int_equal(fl_model_set_planned_bidir_sched(m, FL_BIDIR_AUTO), FL_OK);
    fl_model_free(m);
}

/* The schedule goes through a file and a clone; a file without it is parallel (AUTO); a bad value
 * is refused with the file and the key named. */
static void test_file_round_trip(void **state) {
    (void)state;
    fl_model *m = make(FL_METHOD_DENSE, 0, 0, FL_HEAD_NONE), *back = NULL, *c = NULL;
    const char *plain = tmp_path("plain.st"), *marked = tmp_path("marked.st"), *bad = tmp_path("bad.st");
    assert_int_equal(fl_model_save(m, plain), FL_OK);
    assert_int_equal(fl_model_load(plain, &back), FL_OK);
    assert_int_equal(fl_model_planned_bidir_sched(back), FL_BIDIR_AUTO);
    fl_model_free(back);
    static const fl_bidir_sched both[] = {FL_BIDIR_SERIAL, FL_BIDIR_PARALLEL};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(fl_model_set_planned_bidir_sched(m, both[k]), FL_OK);
        assert_int_equal(fl_model_save(m, marked), FL_OK);
        assert_int_equal(fl_model_load(marked, &back), FL_OK);
        assert_int_equal(fl_model_planned_bidir_sched(back), both[k]);
        assert_int_equal(fl_model_clone(back, &c), FL_OK);
        assert_int_equal(fl_model_planned_bidir_sched(c), both[k]);
        fl_model_free(c);
        fl_model_free(back);
    }
    /* "parallel" -> "paralle!" in the header: same length, the rest of the file unchanged */
    unsigned char *buf;
    size_t n = file_read(marked, &buf);
    assert_true(n > 0);
    char *at = strstr((char *)buf + 8, "\"parallel\""); /* in the JSON header, after its 8-byte length */
    assert_non_null(at);
    at[8] = '!';
    file_write(bad, buf, n);
    free(buf);
    back = NULL;
    assert_int_equal(fl_model_load(bad, &back), FL_ERR_FORMAT);
    assert_null(back);
    assert_non_null(strstr(fl_last_error(), bad));
    assert_non_null(strstr(fl_last_error(), "\"bidir_schedule\" is \"paralle!\""));
    fl_model_free(m);
}

static int setup(void **state) {
    (void)state;
    return tmp_dir_make("fl_bidir_sched");
}

static int teardown(void **state) {
    (void)state;
    return tmp_dir_remove();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dense), cmocka_unit_test(test_dense_head), cmocka_unit_test(test_svd),
        cmocka_unit_test(test_cp),    cmocka_unit_test(test_proj),       cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_model_marked_serial), cmocka_unit_test(test_file_round_trip),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
