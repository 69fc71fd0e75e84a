/* Sessions on one model on different threads (fastlstm.h): the weights are packed once per model and
 * shared (core/packed.c); each thread with its own session gets bit-identical results to a single
 * session, whether the sessions are created one by one or all at once, with 1 or 2 worker threads
 * each. Run under ASan/TSan in CI like every test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum { NTHREADS = 4, B = 2, T = 9, REPS = 3 };

typedef struct job {
    const fl_model *m;
    int threads;
    const float *x;
    float *y;
    size_t ny;
    fl_status st;
    pthread_barrier_t *start;
} job;

static fl_status run_once(const fl_model *m, int threads, const float *x, float *y) {
    fl_session_opts o = fl_session_opts_default();
    o.max_batch = B;
    o.max_seq = T;
    o.threads = threads;
    fl_session *s;
    fl_status st = fl_session_create(m, &o, &s);
    if (st) return st;
    fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = B, .seq = T, .x = x, .y = y};
    for (int r = 0; r < REPS && !st; r++) st = fl_session_run(s, &io);
    fl_session_free(s);
    return st;
}

static void *thread_main(void *arg) {
    job *j = arg;
    pthread_barrier_wait(j->start); /* create the sessions at the same time: the first packs */
    j->st = run_once(j->m, j->threads, j->x, j->y);
    return NULL;
}

static fl_model *make(const fl_mat_spec *specs) {
    const fl_arch a = {.input = 13, .hidden = 40, .layers = 2, .head = FL_HEAD_PER_STEP, .head_out = 5};
    fl_model *m;
    assert_int_equal(fl_model_create(&a, specs, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 11), FL_OK);
    return m;
}

static void check_model(const fl_model *m, int threads) {
    const size_t nx = (size_t)B * T * 13, ny = fl_run_output_size(m, B, T);
    float *x = malloc(nx * sizeof(float)), *want = malloc(ny * sizeof(float));
    assert_true(x && want);
    for (size_t i = 0; i < nx; i++) x[i] = (float)((i * 7919) % 201) / 100.0f - 1.0f;
    assert_int_equal(run_once(m, 1, x, want), FL_OK);
    assert_null(m->packs); /* the last session freed the shared packing */

    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, NTHREADS), 0);
    job jobs[NTHREADS];
    pthread_t tid[NTHREADS];
    for (int t = 0; t < NTHREADS; t++) {
        jobs[t] = (job){.m = m, .threads = threads, .x = x, .ny = ny, .start = &start};
        jobs[t].y = malloc(ny * sizeof(float));
        assert_non_null(jobs[t].y);
        assert_int_equal(pthread_create(&tid[t], NULL, thread_main, &jobs[t]), 0);
    }
    for (int t = 0; t < NTHREADS; t++) {
        assert_int_equal(pthread_join(tid[t], NULL), 0);
        assert_int_equal(jobs[t].st, FL_OK);
        assert_memory_equal(jobs[t].y, want, ny * sizeof(float));
        free(jobs[t].y);
    }
    pthread_barrier_destroy(&start);
    assert_null(m->packs);
    assert_int_equal(m->pack_users, 0);
    free(x);
    free(want);
}

static void test_dense(void **state) {
    (void)state;
    fl_model *m = make(NULL);
    check_model(m, 1);
    check_model(m, 2);
    fl_model_free(m);
}

static void test_svd_cp(void **state) {
    (void)state;
    const fl_mat_spec specs[5] = {{FL_METHOD_SVD, 6}, {FL_METHOD_CP, 9}, {FL_METHOD_DENSE, 0}, {FL_METHOD_SVD, 17},
                                  {FL_METHOD_SVD, 3}};
    fl_model *m = make(specs);
    check_model(m, 1);
    check_model(m, 2);
    fl_model_free(m);
}

/* Two live sessions share one packing, which goes with the last of them. */
static void test_shared_packing(void **state) {
    (void)state;
    fl_model *m = make(NULL);
    fl_session *a, *b;
    assert_int_equal(fl_session_create(m, NULL, &a), FL_OK);
    const void *packs = m->packs;
    assert_non_null(packs);
    assert_int_equal(fl_session_create(m, NULL, &b), FL_OK);
    assert_ptr_equal(m->packs, packs);
    assert_int_equal(m->pack_users, 2);
    fl_session_free(a);
    assert_ptr_equal(m->packs, packs);
    fl_session_free(b);
    assert_null(m->packs);
    /* A failed create (out of memory while packing) leaves nothing held. */
    for (long n = 0; n < 12; n++) {
        fl_alloc_fail_after(n);
        fl_session *s = NULL;
        fl_status st = fl_session_create(m, NULL, &s);
        fl_alloc_fail_after(-1);
        if (st == FL_OK) {
            fl_session_free(s);
            break;
        }
        assert_int_equal(st, FL_ERR_NOMEM);
        assert_null(s);
        assert_null(m->packs);
        assert_int_equal(m->pack_users, 0);
    }
    fl_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dense),
        cmocka_unit_test(test_svd_cp),
        cmocka_unit_test(test_shared_packing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
