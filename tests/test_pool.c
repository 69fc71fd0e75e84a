/* The worker pool (src/core/pool.c): every chunk of every job runs exactly once, on 1 to 4 threads,
 * whichever phase of their wait the workers are in when it comes: back to back (pausing), after a
 * short gap (polling with yields) and after a long one (asleep, woken). A worker, started on one
 * CPU away from its creator's, runs on all its creator's CPUs once started. */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* sched_getaffinity, CPU_EQUAL */
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pool.h"

#include <stdatomic.h>
#include <string.h>
#include <time.h>

enum { MAXN = 64 };

typedef struct counts {
    _Atomic int hits[MAXN];
    _Atomic int bad_thread;
    int threads;
} counts;

static void chunk(void *ctx, int thread, unsigned idx, unsigned n, unsigned gen, unsigned *t_gen) {
    (void)n, (void)gen, (void)t_gen;
    counts *c = ctx;
    if (thread < 0 || thread >= c->threads) atomic_fetch_add(&c->bad_thread, 1);
    atomic_fetch_add(&c->hits[idx], 1);
}

static void run_and_check(fl_pool *p, counts *c, unsigned n) {
    for (unsigned i = 0; i < MAXN; i++) atomic_store(&c->hits[i], 0);
    fl_pool_run(p, n);
    for (unsigned i = 0; i < MAXN; i++) assert_int_equal(atomic_load(&c->hits[i]), i < n ? 1 : 0);
    assert_int_equal(atomic_load(&c->bad_thread), 0);
}

static void nap(long us) {
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

static void test_jobs(void **state) {
    (void)state;
    for (int threads = 1; threads <= 4; threads++) {
        counts c = {.threads = threads};
        fl_pool *p = NULL;
        assert_int_equal(fl_pool_create(chunk, &c, &p), FL_OK);
        assert_int_equal(fl_pool_set_threads(p, threads), FL_OK);
        assert_int_equal(fl_pool_threads(p), threads);
        for (int round = 0; round < 50; round++) {
            const unsigned n = 1 + (unsigned)(round * 7) % MAXN;
            run_and_check(p, &c, n); /* back to back: the workers spin between these */
            run_and_check(p, &c, MAXN - n + 1);
            if (round % 5 == 1) nap(150);   /* past the pauses, within the polling window */
            if (round % 10 == 3) nap(3000); /* past it: the workers sleep */
        }
        fl_pool_free(p);
    }
}

#ifdef __linux__
#include <pthread.h>
#include <sched.h>

typedef struct masks {
    cpu_set_t seen; /* the CPU set of the worker (thread 1), as it runs a chunk */
    _Atomic int got;
} masks;

static void record_mask(void *ctx, int thread, unsigned idx, unsigned n, unsigned gen, unsigned *t_gen) {
    (void)idx, (void)n, (void)gen, (void)t_gen;
    masks *m = ctx;
    if (thread == 1 && !atomic_load(&m->got) && sched_getaffinity(0, sizeof m->seen, &m->seen) == 0)
        atomic_store(&m->got, 1);
    const double t0 = fl_now_seconds();
    while (fl_now_seconds() - t0 < 20e-6) /* some work: the caller does not take every chunk at once */
        ;
    /* on one CPU the caller hands it over, so that the worker (woken, runnable) gets to a chunk */
    if (thread == 0 && !atomic_load(&m->got)) sched_yield();
}

static int first_cpu_of(const cpu_set_t *s) {
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, s)) return c;
    return -1;
}

/* Jobs of many chunks until the worker has run one (the caller takes chunks too, so it may take a
 * few); the worker's CPU set then, the CPU it first ran on in *first and its creator's in *from. */
static void worker_mask(cpu_set_t *out, int *first, int *from) {
    masks m = {0};
    fl_pool *p = NULL;
    assert_int_equal(fl_pool_create(record_mask, &m, &p), FL_OK);
    assert_int_equal(fl_pool_set_threads(p, 2), FL_OK);
    for (int i = 0; i < 20000 && !atomic_load(&m.got); i++) fl_pool_run(p, 8);
    *first = fl_pool_worker_cpus(p, 0, from);
    fl_pool_free(p);
    assert_true(atomic_load(&m.got));
    *out = m.seen;
}

/* A worker starts on a CPU other than its creator's where the creator may run on two or more, and is
 * then free on the creator's whole CPU set (a worker left pinned to one CPU would fight whatever
 * else the process runs there); a creator confined to one CPU keeps its workers on it. */
static void test_worker_cpus(void **state) {
    (void)state;
    cpu_set_t all, seen, one;
    int first, from;
    assert_int_equal(sched_getaffinity(0, sizeof all, &all), 0);
    worker_mask(&seen, &first, &from);
    assert_true(CPU_EQUAL(&seen, &all));
    assert_true(first >= 0 && from >= 0);
    if (CPU_COUNT(&all) >= 2) {
        assert_true(first != from);
        assert_true(CPU_ISSET(first, &all));
    }
    CPU_ZERO(&one);
    CPU_SET(first_cpu_of(&all), &one);
    assert_int_equal(sched_setaffinity(0, sizeof one, &one), 0);
    worker_mask(&seen, &first, &from);
    assert_int_equal(sched_setaffinity(0, sizeof all, &all), 0);
    assert_true(CPU_EQUAL(&seen, &one));
    assert_int_equal(first, first_cpu_of(&one));
}
#endif

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jobs),
#ifdef __linux__
        cmocka_unit_test(test_worker_cpus),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
