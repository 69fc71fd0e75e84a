/* The worker pool (src/core/pool.c): every chunk of every job runs exactly once, on 1 to 4 threads,
 * whichever phase of their wait the workers are in when it comes: back to back (pausing), after a
 * short gap (polling with yields) and after a long one (asleep, woken). */
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jobs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
