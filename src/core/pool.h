/* A worker pool for work cut into chunks, tuned for jobs of a few microseconds issued back to back
 * (the recurrent step, recurrent.c). Internal (not installed).
 *
 * A job of n chunks runs on the caller and threads - 1 workers. Thread t owns the same range of
 * chunks [n t / T, n (t + 1) / T) of every job (one atomic counter per thread), so its share of the
 * data stays in its own core's caches; a thread that has finished its range claims chunks from the
 * others' counters, so a worker the OS has not scheduled delays nothing (the caller takes its
 * chunks); the caller then waits only for chunks already claimed. Workers poll the ticket for a
 * while after each job, pausing, then yielding their core (back-to-back jobs cost no system call,
 * and another pool's workers get the core), then sleep on a condition variable.
 * One pool serves one caller thread at a time. */
#ifndef FL_POOL_H
#define FL_POOL_H

#include "internal.h"

typedef struct fl_pool fl_pool;

/* Runs chunk idx of n of the job in flight on participant `thread` (0 is the caller). gen names the
 * job; *t_gen is this participant's own memo, ~0u at first: a chunk function that computes something
 * once per job and participant (a per-thread intermediate) compares gen with it and stores gen. */
typedef void (*fl_pool_fn)(void *ctx, int thread, unsigned idx, unsigned n, unsigned gen, unsigned *t_gen);

/* A pool running fn(ctx, ...) for every chunk, with the caller as its only thread (see
 * fl_pool_set_threads). ctx must outlive the pool. */
fl_status fl_pool_create(fl_pool_fn fn, void *ctx, fl_pool **out);

/* Stops and joins the workers. NULL is accepted. */
void fl_pool_free(fl_pool *p);

/* threads - 1 workers, in [1, 1024]. Allocates first: on FL_ERR_NOMEM for memory nothing changes.
 * When a worker thread cannot start, keeps those that did and returns FL_ERR_NOMEM. Not while a job
 * runs. */
fl_status fl_pool_set_threads(fl_pool *p, int threads);

/* Threads that take part in a job: the caller and the workers that started. */
int fl_pool_threads(const fl_pool *p);

/* Worker i (0-based) of p: the CPU it first ran on (-1: not started yet, or not known), and in *from
 * the CPU of the thread that started it (-1: not known). Where the starting thread may run on two
 * or more CPUs, a worker starts on one of the others (pool.c, start_placed); for tests. */
int fl_pool_worker_cpus(const fl_pool *p, int i, int *from);

/* Run a job of n chunks (1 <= n <= FL_POOL_MAX_CHUNKS) and return when every chunk is done. The
 * caller writes the job's arguments where fn reads them before this call; the call publishes them
 * to the workers. n == 1 runs on the caller alone. */
void fl_pool_run(fl_pool *p, unsigned n);

/* fl_pool_run, except where every worker sleeps: then the job runs on the caller alone, the workers
 * left asleep. For a small job (an input projection below FL_WAKE_MIN_MACS, tuning_consts.h): a
 * wake-up is a system call that took the caller ~30 us on the Zen 5 VM (a job of 10 x 5 us chunks
 * after 1 ms idle: 56-63 us on the caller alone, 86-96 with the workers woken, whether they took
 * chunks or not), more than such a job gains from a second thread. */
void fl_pool_run_if_awake(fl_pool *p, unsigned n);

#define FL_POOL_MAX_CHUNKS 0xFFF

#endif
