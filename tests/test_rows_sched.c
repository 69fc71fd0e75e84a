/* The rows schedule of the recurrent steps (fl_step_sched, session.c; fl_rec_step_rows and
 * fl_rec_run_tasks, recurrent.c): each thread runs every step of its own sorted batch rows with the
 * whole W_hh, instead of every step's hidden blocks being split over the threads. Whichever runs, and
 * on 1, 2 or 3 threads, y, h_n and c_n are bit-identical: dense, SVD and CP matrices, unidirectional
 * and bidirectional (serial schedule) models, batches 1, 3 and 20, with and without lengths (unsorted,
 * with a length-1 and a full-length sequence), so that at some steps a thread has a lone active row
 * while others are active too. The hidden size (203: K >= 128, where avx2.c's batch-1 kernel sums in
 * four streams, and not a multiple of the kernels' block) makes a lone row's order matter and a
 * blocks step really split. fl_rec_step_rows is also checked against fl_rec_step directly, row range
 * by row range. Nothing is timed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "internal.h"
#include "run_outs.h"
#include "recurrent.h"

#include <stdlib.h>
#include <string.h>

enum { D = 29, H = 203, MAXB = 20, T = 6 };

static fl_model *make(fl_method method, int rank, bool bidir) {
    fl_arch a = {.input = D, .hidden = H, .layers = 2, .bidirectional = bidir};
    fl_mat_spec specs[32];
    for (int i = 0; i < 32; i++) specs[i] = (fl_mat_spec){FL_METHOD_DENSE, 0};
    fl_model *m = NULL;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    if (method != FL_METHOD_DENSE) { // every gate matrix (ih, hh) decomposed
        size_t n = fl_model_num_matrices(m);
        assert_true(n <= 32);
        for (size_t i = 0; i < n; i++) {
            fl_matrix_info mi;
            assert_int_equal(fl_model_matrix_info(m, i, &mi), FL_OK);
            // W_ih of layer 0 is (4H, D): an SVD rank above D is clamped to it
            const int r = method == FL_METHOD_SVD && rank > mi.cols ? mi.cols : rank;
            if (mi.kind == FL_MAT_IH || mi.kind == FL_MAT_HH) specs[i] = (fl_mat_spec){method, r};
        }
        fl_model_free(m);
        assert_int_equal(fl_model_create(&a, specs, &m), FL_OK);
    }
    assert_int_equal(fl_model_init_random(m, 13), FL_OK);
    return m;
}

static void run(fl_session *s, int B, const float *x, const float *h0, const int32_t *lengths, outs *o) {
    memset(o->y, 0xff, o->ny * sizeof(float)); // NaN: every output must be written
    fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = B, .seq = T, .x = x, .y = o->y, .hn = o->hn, .cn = o->cn,
                    .h0 = h0, .lengths = lengths};
    fl_status st = fl_session_run(s, &io);
    if (st) fail_msg("fl_session_run: %s", fl_last_error());
}

static void expect_same(const outs *a, const outs *b, const char *what, int threads, int B, bool lens) {
    if (memcmp(a->y, b->y, a->ny * sizeof(float)) || memcmp(a->hn, b->hn, a->nh * sizeof(float)) ||
        memcmp(a->cn, b->cn, a->nc * sizeof(float)))
        fail_msg("%s on %d threads, batch %d%s: results differ from 1 thread", what, threads, B,
                 lens ? " with lengths" : "");
}

static fl_session *open_session(const fl_model *m, int threads, fl_step_sched sched) {
    fl_session_opts so = {.max_batch = MAXB, .max_seq = T, .threads = threads, .bidir_sched = FL_BIDIR_SERIAL,
                          .step_sched = sched};
    fl_session *s = NULL;
    if (fl_session_create(m, &so, &s)) fail_msg("fl_session_create: %s", fl_last_error());
    return s;
}

/* Blocks, rows and auto on 2 and 3 threads (and rows set on a running session) equal blocks on 1. */
static void check_model(const fl_model *m) {
    // unsorted; the length-1 and full-length sequences in each batch of 3 and 20
    static const int32_t lens3[3] = {2, 1, T};
    static const int32_t lens20[MAXB] = {3, T, 1, 5, 2, T, 4, 1, 6, 2, 3, T, 5, 1, 4, 2, T, 3, 5, 1};
    const int dirs = fl_model_arch(m)->bidirectional ? 2 : 1;
    fl_session *ref_s = open_session(m, 1, FL_STEP_BLOCKS), *s[3][3];
    static const fl_step_sched sched[3] = {FL_STEP_BLOCKS, FL_STEP_ROWS, FL_STEP_AUTO};
    for (int t = 0; t < 3; t++)
        for (int k = 0; k < 3; k++) s[t][k] = open_session(m, t + 1, sched[k]);
    float *x = randoms((size_t)MAXB * T * D, 5), *h0 = randoms((size_t)2 * dirs * MAXB * H, 6);
    static const int batches[] = {1, 3, MAXB};
    for (size_t b = 0; b < sizeof batches / sizeof *batches; b++) {
        const int B = batches[b];
        for (int wl = 0; wl < 2; wl++) {
            const int32_t *lengths = !wl ? NULL : B == 3 ? lens3 : B == MAXB ? lens20 : NULL;
            if (wl && !lengths) continue;
            outs ref, got;
            outs_alloc(m, B, T, &ref);
            outs_alloc(m, B, T, &got);
            run(ref_s, B, x, wl ? h0 : NULL, lengths, &ref);
            for (int t = 0; t < 3; t++)
                for (int k = 0; k < 3; k++) {
                    run(s[t][k], B, x, wl ? h0 : NULL, lengths, &got);
                    expect_same(&ref, &got, k == 0 ? "blocks" : k == 1 ? "rows" : "auto", t + 1, B, wl);
                }
            // switched on a running session, and back
            assert_int_equal(fl_session_set_step_sched(s[1][0], FL_STEP_ROWS), FL_OK);
            run(s[1][0], B, x, wl ? h0 : NULL, lengths, &got);
            expect_same(&ref, &got, "set_step_sched(rows)", 2, B, wl);
            assert_int_equal(fl_session_set_step_sched(s[1][0], FL_STEP_BLOCKS), FL_OK);
            run(s[1][0], B, x, wl ? h0 : NULL, lengths, &got);
            expect_same(&ref, &got, "set_step_sched(blocks)", 2, B, wl);
            outs_free(&ref);
            outs_free(&got);
        }
    }
    free(x);
    free(h0);
    fl_session_free(ref_s);
    for (int t = 0; t < 3; t++)
        for (int k = 0; k < 3; k++) fl_session_free(s[t][k]);
}

static void test_dense(void **state) {
    (void)state;
    for (int bi = 0; bi < 2; bi++) {
        fl_model *m = make(FL_METHOD_DENSE, 0, bi);
        check_model(m);
        fl_model_free(m);
    }
}

static void test_svd(void **state) {
    (void)state;
    for (int bi = 0; bi < 2; bi++) {
        fl_model *m = make(FL_METHOD_SVD, 150, bi); /* rank >= 128: U's gate panel has K >= 128 too */
        check_model(m);
        fl_model_free(m);
    }
}

static void test_cp(void **state) {
    (void)state;
    for (int bi = 0; bi < 2; bi++) {
        fl_model *m = make(FL_METHOD_CP, 37, bi);
        check_model(m);
        fl_model_free(m);
    }
}

typedef struct step_ctx {
    fl_rec *r;
    int B, n, G;
    const float *gx, *hp;
    float *c, *h;
    int seen[3]; /* tasks run, by index */
} step_ctx;

/* Task idx of n: rows [B idx / n, B (idx + 1) / n) of one step. */
static void step_task(void *ctx, int thread, int idx) {
    step_ctx *sc = ctx;
    const int i0 = sc->B * idx / sc->n, i1 = sc->B * (idx + 1) / sc->n;
    sc->seen[idx]++;
    fl_rec_step_rows(sc->r, thread, i0, i1 - i0, sc->B > 1, sc->gx + (size_t)i0 * sc->G, sc->G,
                     sc->hp + (size_t)i0 * H, H, sc->c + (size_t)i0 * H, sc->h + (size_t)i0 * H, H);
}

/* fl_rec_step_rows over 1-3 tasks (row ranges of 0, 1 and more rows) on 1-3 threads equals
 * fl_rec_step on the whole batch, for each storage method; every task runs once. */
static void test_rec_rows(void **state) {
    (void)state;
    static const fl_method methods[] = {FL_METHOD_DENSE, FL_METHOD_SVD, FL_METHOD_CP};
    static const int ranks[] = {0, 150, 37};
    const int G = 4 * H;
    float *gx = randoms((size_t)MAXB * G, 7), *hp = randoms((size_t)MAXB * H, 8), *c0 = randoms((size_t)MAXB * H, 9);
    float *c1 = malloc(sizeof(float) * MAXB * H), *c2 = malloc(sizeof(float) * MAXB * H);
    float *h1 = malloc(sizeof(float) * MAXB * H), *h2 = malloc(sizeof(float) * MAXB * H);
    assert_true(c1 && c2 && h1 && h2);
    for (int mi = 0; mi < 3; mi++) {
        fl_model *m = make(methods[mi], ranks[mi], false);
        for (int threads = 1; threads <= 3; threads++) {
            fl_rec *r = NULL;
            assert_int_equal(fl_rec_create(&m->layer[0], MAXB, threads, &r), FL_OK);
            assert_true(fl_rec_rows_ok(r));
            assert_int_equal(fl_rec_threads(r), threads);
            static const int batches[] = {1, 2, 3, 5, MAXB};
            for (size_t bi = 0; bi < sizeof batches / sizeof *batches; bi++)
                for (int n = 1; n <= 3; n++) {
                    const int B = batches[bi];
                    memcpy(c1, c0, sizeof(float) * B * H);
                    memcpy(c2, c0, sizeof(float) * B * H);
                    fl_rec_step(r, B, gx, G, hp, H, c1, h1, H);
                    step_ctx sc = {.r = r, .B = B, .n = n, .G = G, .gx = gx, .hp = hp, .c = c2, .h = h2};
                    fl_rec_run_tasks(r, n, step_task, &sc);
                    for (int i = 0; i < n; i++) assert_int_equal(sc.seen[i], 1);
                    if (memcmp(c1, c2, sizeof(float) * B * H) || memcmp(h1, h2, sizeof(float) * B * H))
                        fail_msg("method %d, %d threads, batch %d in %d tasks: differs from fl_rec_step", mi,
                                 threads, B, n);
                }
            fl_rec_free(r);
        }
        fl_model_free(m);
    }
    free(gx), free(hp), free(c0), free(c1), free(c2), free(h1), free(h2);
}

static void test_bad_args(void **state) {
    (void)state;
    assert_int_equal(fl_session_set_step_sched(NULL, FL_STEP_ROWS), FL_ERR_ARG);
    fl_model *m = make(FL_METHOD_DENSE, 0, false);
    fl_session *s = open_session(m, 2, FL_STEP_AUTO);
    assert_int_equal(fl_session_set_step_sched(s, (fl_step_sched)5), FL_ERR_ARG);
    assert_non_null(strstr(fl_last_error(), "unknown schedule 5"));
    fl_session_free(s);
    fl_session_opts so = {.max_batch = 2, .max_seq = T, .threads = 2, .step_sched = (fl_step_sched)-1};
    s = NULL;
    assert_int_equal(fl_session_create(m, &so, &s), FL_ERR_ARG);
    assert_null(s);
    assert_non_null(strstr(fl_last_error(), "unknown step_sched -1"));
    fl_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dense), cmocka_unit_test(test_svd),      cmocka_unit_test(test_cp),
        cmocka_unit_test(test_rec_rows), cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
