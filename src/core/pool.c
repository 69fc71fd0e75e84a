/* The worker pool of pool.h. */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* sched_getcpu, pthread_attr_setaffinity_np, sched_setaffinity */
#endif
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* An idle worker polls for the next job in two phases before it sleeps: SPIN_PAUSE pause
 * iterations (~75 us: well past the gap between the back-to-back steps of one layer), then until
 * SPIN_SECONDS after that a poll that yields its core every YIELD_EVERY iterations. Every
 * layer-direction of a session has its own pool, so when layer l + 1 starts on N threads, layer l's
 * workers are still polling: 2N - 1 threads on N cores. Pausing throughout (before: 16384 pauses,
 * ~0.3 ms), they took the cores from the running layer's worker; yielding hands it over, and a job
 * that comes soon still finds the worker awake (no wake-up, which putting the workers to sleep after
 * each layer costs: tried, slower for short sequences). `fastlstm bench`, two threads, the old and new
 * binaries alternating (12-16 rounds of 40 runs, median ratio new / old; Xeon model 207, 2 vCPUs,
 * session 13): 2 x 650 batch 1, seq 35: SVD rank 81 0.88, dense 1.01 (with 1024 pauses first: 0.92 and
 * 1.03-1.04, hence 4096); seq 8: SVD rank 81 1.03, rank 40 0.99 (1024); batch 20 dense 1.00; 128/256
 * batch 1 and 28/128 batch 256 1.00 (1024). Two dense H 192 layers in turn by fl_rec_step alone, batch
 * 1, us per layer-step (one thread 5.0-5.8): seq 8 10.0-13.3 -> 4.7-5.9, seq 35 5.6-6.1 -> 4.8-4.9. */
enum {
    SPIN_PAUSE = 1 << 12, /* pause iterations first */
    YIELD_EVERY = 64,     /* then a sched_yield every this many iterations */
    SPIN_YIELD = 1 << 12, /* pause iterations the caller spins before yielding its core */
};
#define SPIN_SECONDS 3e-4 /* a worker polls this long after its last job, then sleeps */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

typedef struct worker {
    fl_pool *p;
    int id;
    unsigned gen0; /* generation when started: jobs after it are this worker's */
    pthread_t tid;
    int from_cpu;         /* the creating thread's CPU (-1: unknown) */
    _Atomic int first_cpu; /* the CPU this worker first ran on (-1: not yet, or unknown) */
#ifdef __linux__
    bool placed;       /* started on one CPU (start_placed): free it to `allowed` when it runs */
    cpu_set_t allowed; /* the creating thread's CPUs */
#endif
} worker;

/* The ticket: one 64-bit word, so that a claim sees its job's generation, chunk count and chunk
 * index together. gen (bits 44-63) | nchunks (32-43) | next chunk (0-31). */
#define TICKET(gen, n) (((uint64_t)(gen) << 44) | ((uint64_t)(n) << 32))
#define TICKET_GEN(t) ((unsigned)((t) >> 44))
#define TICKET_N(t) ((unsigned)(((t) >> 32) & 0xFFFu))
#define TICKET_IDX(t) ((uint32_t)(t))
#define OWN_STRIDE 16 /* uint64 per owner counter: 128 bytes, no false sharing */
_Static_assert(FL_POOL_MAX_CHUNKS == 0xFFF, "chunk count field of the ticket");

struct fl_pool {
    fl_pool_fn fn;
    void *ctx;
    worker *workers; /* threads - 1 workers; thread 0 is the caller */
    int nworkers;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Atomic uint64_t ticket; /* the generation workers wait on; idx unused */
    _Atomic uint64_t *own;   /* per thread t, at own[t * OWN_STRIDE]: gen | end | next chunk of t's range */
    int nown;                /* threads that own a range of every job */
    unsigned jn;             /* chunks of the job in flight */
    _Atomic int done, sleepers, quit;
};

/* Claim and run chunks until none is left: first this thread's own range (the same chunks every
 * job, so their data stays in this core's caches), then the other threads' ranges. A claim that
 * lands on a newer job than the one this thread woke for is still that job's chunk: it is run like
 * any other (fn reads that job). */
static void participate(fl_pool *p, int id, unsigned *t_gen) {
    const int T = p->nown;
    for (int s = 0; s < T; s++) {
        _Atomic uint64_t *cnt = &p->own[(size_t)((id + s) % T) * OWN_STRIDE];
        for (;;) {
            uint64_t tk = atomic_fetch_add_explicit(cnt, 1, memory_order_acq_rel);
            if (TICKET_IDX(tk) >= TICKET_N(tk)) break; /* N: end of the range */
            p->fn(p->ctx, id, TICKET_IDX(tk), p->jn, TICKET_GEN(tk), t_gen);
            atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
        }
    }
}

static void *worker_main(void *arg) {
    worker *w = arg;
    fl_pool *p = w->p;
#ifdef __linux__
    atomic_store(&w->first_cpu, sched_getcpu());
    if (w->placed) sched_setaffinity(0, sizeof w->allowed, &w->allowed); /* free again: see start_placed */
#endif
    unsigned seen = w->gen0, t_gen = ~0u;
    for (;;) {
        int spins = 0;
        double idle_since = 0;
        /* quit is checked here too: a worker that took pool_stop's own wake-up generation as seen
         * (read after its last job) would otherwise spin forever. */
        while (TICKET_GEN(atomic_load_explicit(&p->ticket, memory_order_acquire)) == seen &&
               !atomic_load_explicit(&p->quit, memory_order_acquire)) {
            if (++spins < SPIN_PAUSE) {
                cpu_relax();
                continue;
            }
            if (spins == SPIN_PAUSE) idle_since = fl_now_seconds();
            if (spins % YIELD_EVERY) {
                cpu_relax();
                continue;
            }
            if (fl_now_seconds() - idle_since < SPIN_SECONDS) {
                sched_yield();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (TICKET_GEN(atomic_load(&p->ticket)) == seen && !atomic_load(&p->quit))
                pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
            spins = 0;
        }
        if (atomic_load(&p->quit)) return NULL;
        seen = TICKET_GEN(atomic_load_explicit(&p->ticket, memory_order_acquire));
        participate(p, w->id, &t_gen);
    }
}

/* Publish a job of n chunks (0: wake-up only) under a new generation: thread t owns chunks
 * [n t / T, n (t + 1) / T) of it. */
static void publish(fl_pool *p, unsigned n) {
    unsigned gen = (TICKET_GEN(atomic_load(&p->ticket)) + 1) & 0xFFFFFu;
    const int T = p->nown;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    p->jn = n;
    for (int t = 0; t < T; t++)
        atomic_store_explicit(&p->own[(size_t)t * OWN_STRIDE],
                              TICKET(gen, (unsigned)((long)n * (t + 1) / T)) | (uint64_t)((long)n * t / T),
                              memory_order_release);
    atomic_store(&p->ticket, TICKET(gen, n)); /* seq_cst: publishes the job; ordered before the sleepers load */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
}

static void pool_stop(fl_pool *p) {
    if (p->nworkers == 0) return;
    atomic_store(&p->quit, 1);
    publish(p, 0);
    for (int i = 0; i < p->nworkers; i++) pthread_join(p->workers[i].tid, NULL);
    p->nworkers = 0;
    atomic_store(&p->quit, 0);
}

/* Start worker w on a CPU of the caller's set other than the caller's own (the i-th such CPU, round
 * robin), which it leaves for the whole set as soon as it runs (worker_main). Where the guest kernel
 * sees no cache shared between its CPUs (a VM without cache topology, as this project's Zen 5 VMs),
 * a new thread could be placed on its creator's CPU and stay there for milliseconds: a pool used
 * right after it started (as the profile's measurements use theirs) had its worker run 5 of 808
 * projection chunks, on the caller's CPU (the caller, spinning for them, took the rest), and a split
 * 35 x 2600 x 40 projection took 33.9 us on two threads against 32.6 on one over the first 7 ms;
 * started apart, 22.4 against 39.0. (Sessions' workers were mostly placed apart already: of their
 * chunks in 3 x 20 fresh sessions, 8 ran on the caller's CPU before, 40 after.) A CPU set that
 * cannot be read, a caller alone on its CPUs, a placed start that fails or a non-Linux build start
 * the thread unplaced. Returns pthread_create's result. */
static int start_placed(worker *w, int i) {
    w->from_cpu = -1;
    atomic_store(&w->first_cpu, -1);
#ifdef __linux__
    w->placed = false;
    const int cur = w->from_cpu = sched_getcpu();
    pthread_attr_t attr;
    if (cur >= 0 && sched_getaffinity(0, sizeof w->allowed, &w->allowed) == 0 && CPU_COUNT(&w->allowed) >= 2 &&
        pthread_attr_init(&attr) == 0) {
        const int others = CPU_COUNT(&w->allowed) - (CPU_ISSET(cur, &w->allowed) ? 1 : 0);
        int k = i % others, cpu = -1;
        for (int c = 0; c < CPU_SETSIZE && cpu < 0; c++)
            if (c != cur && CPU_ISSET(c, &w->allowed) && k-- == 0) cpu = c;
        cpu_set_t one;
        CPU_ZERO(&one);
        if (cpu >= 0) CPU_SET(cpu, &one);
        /* set before the thread starts: worker_main reads it */
        w->placed = cpu >= 0 && pthread_attr_setaffinity_np(&attr, sizeof one, &one) == 0;
        const bool started = w->placed && pthread_create(&w->tid, &attr, worker_main, w) == 0;
        pthread_attr_destroy(&attr);
        if (started) return 0;
        w->placed = false;
    }
#else
    (void)i;
#endif
    return pthread_create(&w->tid, NULL, worker_main, w);
}

/* Start n workers (ids 1..n); on failure keeps those that started. */
static fl_status pool_start(fl_pool *p, int n) {
    for (int i = 0; i < n; i++) {
        worker *w = &p->workers[i];
        w->p = p;
        w->id = i + 1;
        w->gen0 = TICKET_GEN(atomic_load(&p->ticket));
        if (start_placed(w, i) != 0)
            return fl_fail(FL_ERR_NOMEM, "worker pool: could not start worker thread %d of %d", i + 1, n);
        p->nworkers = i + 1;
    }
    return FL_OK;
}

fl_status fl_pool_create(fl_pool_fn fn, void *ctx, fl_pool **out) {
    *out = NULL;
    fl_pool *p = fl_calloc(1, sizeof *p);
    if (!p) return fl_fail(FL_ERR_NOMEM, "out of memory creating a worker pool");
    p->fn = fn;
    p->ctx = ctx;
    p->nown = 1;
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        fl_free(p);
        return fl_fail(FL_ERR_NOMEM, "worker pool: could not create a mutex");
    }
    if (pthread_cond_init(&p->cv, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        fl_free(p);
        return fl_fail(FL_ERR_NOMEM, "worker pool: could not create a condition variable");
    }
    *out = p;
    return FL_OK;
}

void fl_pool_free(fl_pool *p) {
    if (!p) return;
    pool_stop(p);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    fl_free(p->workers);
    fl_free((void *)p->own);
    fl_free(p);
}

fl_status fl_pool_set_threads(fl_pool *p, int threads) {
    if (threads < 1) return fl_fail(FL_ERR_ARG, "threads must be >= 1, got %d", threads);
    if (threads > 1024) return fl_fail(FL_ERR_ARG, "threads must be <= 1024, got %d", threads);
    worker *workers = NULL;
    _Atomic uint64_t *own = NULL;
    if (threads > 1 && (!(workers = fl_calloc((size_t)threads - 1, sizeof *workers)) ||
                        !(own = fl_calloc((size_t)threads * OWN_STRIDE, sizeof *own)))) {
        fl_free(workers);
        return fl_fail(FL_ERR_NOMEM, "out of memory for %d worker threads", threads);
    }
    pool_stop(p);
    fl_free(p->workers);
    fl_free((void *)p->own);
    p->workers = workers;
    p->own = own;
    fl_status st = threads > 1 ? pool_start(p, threads - 1) : FL_OK;
    /* Workers read nown only after a publish (release), which comes after this. */
    p->nown = 1 + p->nworkers; /* fewer when a thread could not start */
    return st;
}

int fl_pool_threads(const fl_pool *p) { return 1 + p->nworkers; }

int fl_pool_worker_cpus(const fl_pool *p, int i, int *from) {
    if (i < 0 || i >= p->nworkers) return *from = -1;
    *from = p->workers[i].from_cpu;
    return atomic_load(&p->workers[i].first_cpu);
}

/* A job's chunks on the caller alone (the job with no workers, or none awake). */
static void run_here(fl_pool *p, unsigned n) {
    unsigned t_gen = ~0u;
    for (unsigned i = 0; i < n; i++) p->fn(p->ctx, 0, i, n, 0, &t_gen);
}

void fl_pool_run_if_awake(fl_pool *p, unsigned n) {
    FL_ASSERT(n >= 1 && n <= FL_POOL_MAX_CHUNKS);
    if (p->nworkers > 0 && atomic_load(&p->sleepers) == p->nworkers) run_here(p, n);
    else fl_pool_run(p, n);
}

void fl_pool_run(fl_pool *p, unsigned n) {
    FL_ASSERT(n >= 1 && n <= FL_POOL_MAX_CHUNKS);
    unsigned t_gen = ~0u;
    if (n == 1 || p->nworkers == 0) {
        run_here(p, n);
        return;
    }
    publish(p, n);
    participate(p, 0, &t_gen);
    int spins = 0;
    while (atomic_load_explicit(&p->done, memory_order_acquire) < (int)n) {
        cpu_relax();
        if (++spins >= SPIN_YIELD) {
            sched_yield();
            spins = 0;
        }
    }
}
