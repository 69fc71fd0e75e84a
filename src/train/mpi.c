/* Data-parallel training over MPI (see include/fastlstm/dist.h). Built only with FL_WITH_MPI.
 *
 * Per step: each rank's trainer computes the mean loss and gradient over its slice of the global
 * batch (fl_trainer_set_shard); the hook below weights them by the slice's share n_r / N and sums
 * them over ranks in place (MPI_Allreduce), giving the mean over the whole global batch. Clipping
 * and the optimiser then run on identical data on every rank, so parameters stay equal without
 * being sent again. */
#include "fastlstm/dist.h"
#include "train_internal.h"

#include <limits.h>
#include <mpi.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct fl_dist {
    MPI_Comm comm;     /* a duplicate of MPI_COMM_WORLD, errors returned */
    int rank, size;
    bool owns_mpi;     /* fl_dist_init called MPI_Init */
    fl_trainer *t;     /* attached trainer, or NULL */
    /* Overlap (fl_dist_set_bucket_mb): the flat gradient in buckets of `bucket` floats, bucket k
     * = [k * bucket, (k + 1) * bucket) clipped to n; buckets [next, nb) are posted this step. */
    size_t bucket;     /* 0: one blocking allreduce after backward */
    MPI_Request *req;  /* [nb] */
    size_t nb, next;
    size_t base;       /* buckets cover grad[base, n): base = the embedding's floats when sparse */
    /* Sparse embedding gradient (fl_dist_set_sparse_embedding): only the rows some rank's batch
     * touched are reduced. Buffers grow as needed and are kept. */
    bool sparse;
    int32_t *ids, *all_ids;
    size_t ids_cap, all_cap;
    int *counts, *displs; /* [size] */
    float *rows;
    size_t rows_cap;
    double step_bytes;    /* bytes reduced in the current step */
    fl_dist_stats stats;
    double busy_since; /* when some bucket went in flight with none before, or 0 */
    /* Watchdog (fl_dist_watchdog_start). */
    pthread_t wd;
    bool wd_on;
    double wd_timeout;
    fl_dist_stall_fn on_stall;
    void *stall_user;
    atomic_llong wait_since_us; /* when this rank began waiting on the others; 0: not waiting */
    atomic_long cur_step;
    atomic_int wd_stop;
    /* Fault injection for tests (FL_DIST_FAULT, see dist.h): at step fault_step on rank
     * fault_rank, fault 1 hangs, 2 kills the process. */
    int fault, fault_rank;
    long fault_step;
};

static long long now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Turn an MPI error code into fl_fail's detail. */
static fl_status mpi_fail(int err, const char *what) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(err, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "code %d", err);
    return fl_fail(FL_ERR_IO, "MPI: %s failed: %s", what, msg);
}

/* MPI counts are int: move large float blocks in chunks. */
enum { CHUNK = 1 << 28 };

static int bcast_floats(MPI_Comm comm, float *x, size_t n) {
    for (size_t i = 0; i < n; i += CHUNK) {
        int c = (int)(n - i < CHUNK ? n - i : CHUNK);
        int err = MPI_Bcast(x + i, c, MPI_FLOAT, 0, comm);
        if (err != MPI_SUCCESS) return err;
    }
    return MPI_SUCCESS;
}

static int allreduce_floats(MPI_Comm comm, float *x, size_t n) {
    for (size_t i = 0; i < n; i += CHUNK) {
        int c = (int)(n - i < CHUNK ? n - i : CHUNK);
        int err = MPI_Allreduce(MPI_IN_PLACE, x + i, c, MPI_FLOAT, MPI_SUM, comm);
        if (err != MPI_SUCCESS) return err;
    }
    return MPI_SUCCESS;
}

fl_status fl_dist_init(int *argc, char ***argv, fl_dist **out) {
    if (!out) return fl_fail(FL_ERR_ARG, "NULL argument to fl_dist_init");
    *out = NULL;
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (finalized) return fl_fail(FL_ERR_ARG, "MPI was already finalized");
    fl_dist *d = fl_calloc(1, sizeof *d);
    if (!d) return fl_fail(FL_ERR_NOMEM, "out of memory creating an MPI context");
    int err;
    if (!inited) {
        if ((err = MPI_Init(argc, argv)) != MPI_SUCCESS) {
            fl_free(d);
            return fl_fail(FL_ERR_IO, "MPI: MPI_Init failed (code %d)", err);
        }
        d->owns_mpi = true;
    }
    if ((err = MPI_Comm_dup(MPI_COMM_WORLD, &d->comm)) != MPI_SUCCESS) {
        if (d->owns_mpi) MPI_Finalize();
        fl_free(d);
        return mpi_fail(err, "MPI_Comm_dup");
    }
    MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(d->comm, &d->rank);
    MPI_Comm_size(d->comm, &d->size);
    d->bucket = (size_t)(FL_DIST_BUCKET_MB_DEFAULT * (1 << 20)) / sizeof(float);
    d->sparse = true;
    d->counts = fl_malloc((size_t)d->size * sizeof(int));
    d->displs = fl_malloc((size_t)d->size * sizeof(int));
    if (!d->counts || !d->displs) {
        fl_free(d->counts);
        fl_free(d->displs);
        MPI_Comm_free(&d->comm);
        if (d->owns_mpi) MPI_Finalize();
        fl_free(d);
        return fl_fail(FL_ERR_NOMEM, "out of memory creating an MPI context");
    }
    const char *f = getenv("FL_DIST_FAULT");
    char kind[8];
    if (f && sscanf(f, "%7[a-z]@%d:%ld", kind, &d->fault_rank, &d->fault_step) == 3)
        d->fault = !strcmp(kind, "hang") ? 1 : !strcmp(kind, "kill") ? 2 : 0;
    *out = d;
    return FL_OK;
}

int fl_dist_rank(const fl_dist *d) { return d ? d->rank : 0; }
int fl_dist_size(const fl_dist *d) { return d ? d->size : 1; }

/* Overlap: backward reports that grad[from, n) is final (fl_bptt_set_progress). Post, top down,
 * every bucket wholly inside that suffix (weighted by this rank's share first), then poke MPI so
 * the posted reductions advance (Open MPI's TCP transport moves bytes only inside MPI calls).
 * Buckets are always posted in the same order (nb-1 down to 0), so the ranks' non-blocking
 * collectives match whatever the timing. */
static void dist_ready(size_t from, void *user) {
    fl_dist *d = user;
    const fl_trainer *t = d->t;
    float *grad = t->grad->params;
    const size_t n = t->m->n_params;
    const double w = t->shard_total > 0 ? (double)t->shard_n / (double)t->shard_total : 0.0;
    while (d->next > 0 && d->base + (d->next - 1) * d->bucket >= from) {
        size_t k = --d->next, lo = d->base + k * d->bucket, hi = lo + d->bucket < n ? lo + d->bucket : n;
        if (w != 1.0)
            for (size_t i = lo; i < hi; i++) grad[i] *= (float)w;
        if (d->busy_since == 0) d->busy_since = fl_now_seconds();
        int err = MPI_Iallreduce(MPI_IN_PLACE, grad + lo, (int)(hi - lo), MPI_FLOAT, MPI_SUM, d->comm, &d->req[k]);
        if (err != MPI_SUCCESS) d->req[k] = MPI_REQUEST_NULL; /* reported by the hook's MPI_Waitall */
    }
    if (d->next < d->nb) {
        int flag = 0;
        MPI_Testall((int)(d->nb - d->next), d->req + d->next, &flag, MPI_STATUSES_IGNORE);
        if (flag && d->busy_since > 0) { /* all posted buckets done (as seen now) */
            d->stats.grad_busy_s += fl_now_seconds() - d->busy_since;
            d->busy_since = 0;
        }
    }
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Sort and deduplicate ids[0, n); returns the new count. */
static size_t sort_unique(int32_t *ids, size_t n) {
    if (n == 0) return 0;
    qsort(ids, n, sizeof *ids, cmp_i32);
    size_t u = 1;
    for (size_t i = 1; i < n; i++)
        if (ids[i] != ids[u - 1]) ids[u++] = ids[i];
    return u;
}

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t c = need > 2 * *cap ? need : 2 * *cap;
    void *q = fl_malloc(c * elem);
    if (!q) return false;
    fl_free(*p);
    *p = q;
    *cap = c;
    return true;
}

/* The embedding's gradient, sparsely: the union over ranks of the token ids each batch slice
 * touched (MPI_Allgatherv of each rank's distinct ids), then an allreduce of just those rows,
 * weighted by this rank's share w. Rows no rank touched are zero everywhere and stay zero, so
 * the result equals the dense allreduce. */
static fl_status reduce_embedding(fl_dist *d, float *grad, double w) {
    const fl_trainer *t = d->t;
    const size_t E = (size_t)t->m->arch.input;
    size_t cnt = 0;
    const int32_t *tok = t->shard_n > 0 && t->ws ? fl_bptt_tokens(t->ws, &cnt) : NULL;
    if (!tok) cnt = 0;
    if (cnt > INT_MAX / 2) return fl_fail(FL_ERR_ARG, "too many tokens in one step for the sparse embedding");
    if (!grow((void **)&d->ids, &d->ids_cap, cnt ? cnt : 1, sizeof(int32_t)))
        return fl_fail(FL_ERR_NOMEM, "out of memory for the embedding rows");
    if (cnt) memcpy(d->ids, tok, cnt * sizeof(int32_t));
    int mine = (int)sort_unique(d->ids, cnt);
    int err = MPI_Allgather(&mine, 1, MPI_INT, d->counts, 1, MPI_INT, d->comm);
    if (err != MPI_SUCCESS) return mpi_fail(err, "MPI_Allgather of the embedding row counts");
    size_t total = 0;
    for (int r = 0; r < d->size; r++) {
        d->displs[r] = (int)total;
        total += (size_t)d->counts[r];
    }
    if (total > INT_MAX) return fl_fail(FL_ERR_ARG, "too many embedding rows in one step");
    if (!grow((void **)&d->all_ids, &d->all_cap, total ? total : 1, sizeof(int32_t)))
        return fl_fail(FL_ERR_NOMEM, "out of memory for the embedding rows");
    if ((err = MPI_Allgatherv(d->ids, mine, MPI_INT32_T, d->all_ids, d->counts, d->displs, MPI_INT32_T, d->comm)) !=
        MPI_SUCCESS)
        return mpi_fail(err, "MPI_Allgatherv of the embedding row ids");
    const size_t U = sort_unique(d->all_ids, total);
    if (!grow((void **)&d->rows, &d->rows_cap, U * E > 0 ? U * E : 1, sizeof(float)))
        return fl_fail(FL_ERR_NOMEM, "out of memory for %zu embedding rows", U);
    const float wf = (float)w;
    for (size_t u = 0; u < U; u++) { // rows: (U, E) packed, weighted
        const float *g = grad + (size_t)d->all_ids[u] * E;
        float *r = d->rows + u * E;
        for (size_t k = 0; k < E; k++) r[k] = w != 1.0 ? g[k] * wf : g[k];
    }
    if ((err = allreduce_floats(d->comm, d->rows, U * E)) != MPI_SUCCESS)
        return mpi_fail(err, "MPI_Allreduce of the embedding rows");
    for (size_t u = 0; u < U; u++) memcpy(grad + (size_t)d->all_ids[u] * E, d->rows + u * E, E * sizeof(float));
    d->step_bytes += (double)total * sizeof(int32_t) + (double)U * E * sizeof(float); // ids + rows
    return FL_OK;
}

static void inject_fault(const fl_dist *d) {
    if (!d->fault || d->rank != d->fault_rank || d->t->step != d->fault_step) return;
    if (d->fault == 2) raise(SIGKILL);
    for (;;) sleep(1); /* hang: a stalled rank (or one whose link is down) */
}

/* The hook: weight this rank's slice mean by its share of the batch, then sum over ranks (the
 * buckets backward did not post yet, then wait for all); for a language model also share the
 * carried state of every rank's streams. */
static fl_status dist_hook(float *grad, size_t n, double *loss, void *user) {
    fl_dist *d = user;
    const fl_trainer *t = d->t;
    inject_fault(d);
    const double w = t->shard_total > 0 ? (double)t->shard_n / (double)t->shard_total : 0.0;
    const double t0 = fl_now_seconds();
    atomic_store(&d->cur_step, t->step);
    atomic_store(&d->wait_since_us, now_us());
    int err;
    d->step_bytes = (double)(n - d->base) * sizeof(float);
    /* Buckets backward did not post go first (all of them for an empty slice), so every rank
     * issues its collectives in the same order: buckets top down, the data-size check, the loss. */
    if (d->bucket > 0) dist_ready(0, d);
    /* Every rank must read the same data set (it shards each global batch of it): compare its size
     * on every step, before the mixed gradients are used. Max of n and of -n: max and -min at once. */
    long long sz[2] = {(long long)t->data_n, -(long long)t->data_n}, szr[2];
    err = MPI_Allreduce(sz, szr, 2, MPI_LONG_LONG, MPI_MAX, d->comm);
    if (err != MPI_SUCCESS || szr[0] != -szr[1]) {
        /* finish the posted buckets first: they write into the gradient, which the caller may
         * free after this error */
        if (d->bucket > 0) MPI_Waitall((int)d->nb, d->req, MPI_STATUSES_IGNORE);
        d->next = d->nb;
        d->busy_since = 0;
        atomic_store(&d->wait_since_us, 0);
    }
    if (err != MPI_SUCCESS) return mpi_fail(err, "MPI_Allreduce checking the data size");
    if (szr[0] != -szr[1]) {
        return fl_fail(FL_ERR_DATA,
                       "distributed training: ranks disagree on the size of the training data (%lld to %lld %s); "
                       "every rank must read the same data",
                       -szr[1], szr[0], t->h ? "tokens" : "sequences");
    }
    if (d->bucket > 0) {
        err = MPI_Waitall((int)d->nb, d->req, MPI_STATUSES_IGNORE);
        d->next = d->nb;
    } else {
        if (w != 1.0) {
            const float wf = (float)w;
            for (size_t i = d->base; i < n; i++) grad[i] *= wf;
        }
        d->busy_since = t0;
        err = allreduce_floats(d->comm, grad + d->base, n - d->base);
    }
    if (err == MPI_SUCCESS && d->sparse && t->m->embed) {
        fl_status st = reduce_embedding(d, grad, w);
        if (st) {
            atomic_store(&d->wait_since_us, 0);
            return st;
        }
    }
    const double t1 = fl_now_seconds();
    if (err != MPI_SUCCESS) {
        atomic_store(&d->wait_since_us, 0);
        return mpi_fail(err, "MPI_Allreduce of the gradient");
    }
    // the loss of an empty slice is 0 (not computed); a NaN elsewhere stays NaN on every rank
    double l = t->shard_n > 0 ? *loss * w : 0.0;
    if ((err = MPI_Allreduce(MPI_IN_PLACE, &l, 1, MPI_DOUBLE, MPI_SUM, d->comm)) != MPI_SUCCESS)
        return mpi_fail(err, "MPI_Allreduce of the loss");
    *loss = l;
    if (t->h && d->size > 1) { /* LM: each rank advanced only its streams' carried state */
        /* h (L, B, P) with P the projection size (or H), c (L, B, H) */
        const size_t L = (size_t)t->m->arch.layers, H = (size_t)t->m->arch.hidden, B = (size_t)t->o.batch;
        const size_t P = (size_t)fl_arch_out(&t->m->arch);
        const size_t lo = (size_t)t->shard_lo, hi = lo + (size_t)t->shard_n;
        for (size_t k = 0; k < L; k++) { /* keep only our slice, then sum: x + 0 is exact */
            float *h = t->h + k * B * P, *c = t->c + k * B * H;
            memset(h, 0, lo * P * sizeof(float));
            memset(c, 0, lo * H * sizeof(float));
            memset(h + hi * P, 0, (B - hi) * P * sizeof(float));
            memset(c + hi * H, 0, (B - hi) * H * sizeof(float));
        }
        if ((err = allreduce_floats(d->comm, t->h, L * B * P)) != MPI_SUCCESS ||
            (err = allreduce_floats(d->comm, t->c, L * B * H)) != MPI_SUCCESS)
            return mpi_fail(err, "MPI_Allreduce of the language-model state");
    }
    atomic_store(&d->wait_since_us, 0);
    const double t2 = fl_now_seconds();
    d->stats.steps++;
    d->step_bytes += sizeof(double) + 2 * sizeof(long long) + (t->h && d->size > 1 ? 2.0 * t->m->arch.layers * t->o.batch *
                                                                  t->m->arch.hidden * sizeof(float) : 0.0);
    d->stats.bytes += d->step_bytes;
    d->stats.wait_s += t2 - t0;
    d->stats.grad_wait_s += t1 - t0;
    if (d->busy_since > 0) d->stats.grad_busy_s += t1 - d->busy_since;
    d->busy_since = 0;
    return FL_OK;
}

/* (Re)size the bucket requests for the attached trainer and install (or remove) the overlap hook. */
static fl_status set_buckets(fl_dist *d) {
    fl_trainer *t = d->t;
    fl_free(d->req);
    d->req = NULL;
    d->nb = d->next = 0;
    t->ready = NULL;
    t->ready_user = NULL;
    /* sparse embedding: the embedding is tensor 0 of the block; buckets start after it */
    d->base = d->sparse && t->m->embed ? t->m->tensors[1].offset : 0;
    if (!d->sparse || !t->m->embed) d->base = 0;
    if (d->bucket == 0) return FL_OK;
    const size_t n = t->m->n_params;
    d->nb = (n - d->base + d->bucket - 1) / d->bucket;
    d->req = fl_malloc((d->nb ? d->nb : 1) * sizeof(MPI_Request));
    if (!d->req) return fl_fail(FL_ERR_NOMEM, "out of memory for %zu gradient buckets", d->nb);
    for (size_t k = 0; k < d->nb; k++) d->req[k] = MPI_REQUEST_NULL;
    d->next = d->nb;
    t->ready = dist_ready;
    t->ready_user = d;
    return FL_OK;
}

fl_status fl_dist_set_bucket_mb(fl_dist *d, double mb) {
    if (!d) return fl_fail(FL_ERR_ARG, "NULL argument to fl_dist_set_bucket_mb");
    if (!(mb >= 0) || mb > 1024)
        return fl_fail(FL_ERR_ARG, "bucket size must be in [0, 1024] MB (0: no overlap), got %g", mb);
    size_t b = (size_t)(mb * (1 << 20)) / sizeof(float);
    if (mb > 0 && b == 0) b = 1;
    if (b > CHUNK) b = CHUNK;
    d->bucket = b;
    return d->t ? set_buckets(d) : FL_OK;
}

fl_status fl_dist_set_sparse_embedding(fl_dist *d, int on) {
    if (!d) return fl_fail(FL_ERR_ARG, "NULL argument to fl_dist_set_sparse_embedding");
    d->sparse = on != 0;
    return d->t ? set_buckets(d) : FL_OK;
}

void fl_dist_get_stats(const fl_dist *d, fl_dist_stats *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (d) *out = d->stats;
}

fl_status fl_dist_attach(fl_dist *d, fl_trainer *t) {
    if (!d || !t) return fl_fail(FL_ERR_ARG, "NULL argument to fl_dist_attach");
    fl_model *m = t->m;
    /* Every rank must train the same thing: compare sizes, positions and the shuffle before any
     * broadcast (a broadcast of mismatched sizes would fail or hang). Ranks with different seeds
     * or shuffle settings would take different permutations of the data, so their slices of the
     * "same" global batch would overlap and miss sequences. */
    enum { NCHECK = 9 };
    static const char *what[NCHECK] = {"parameter count", "optimiser", "batch size", "step", "position in the epoch",
                                       "epoch", "Adam step", "shuffle setting (0 off, 1 on)", "seed"};
    /* The seed is a uint64: compared as its two 32-bit halves, reported whole. */
    long long mine[NCHECK + 1] = {(long long)m->n_params, (long long)t->o.optim, t->o.batch, t->step, t->pos,
                                  t->epoch, t->adam_t, t->o.shuffle != 0, (long long)(t->o.seed >> 32),
                                  (long long)(t->o.seed & 0xffffffffu)};
    long long both[2 * (NCHECK + 1)], hi[2 * (NCHECK + 1)]; /* max of x and of -x: max and -min at once */
    for (int k = 0; k <= NCHECK; k++) {
        both[k] = mine[k];
        both[NCHECK + 1 + k] = -mine[k];
    }
    int err = MPI_Allreduce(both, hi, 2 * (NCHECK + 1), MPI_LONG_LONG, MPI_MAX, d->comm);
    if (err != MPI_SUCCESS) return mpi_fail(err, "MPI_Allreduce checking the ranks agree");
    for (int k = 0; k < NCHECK - 1; k++)
        if (hi[k] != -hi[NCHECK + 1 + k])
            return fl_fail(FL_ERR_ARG,
                           "distributed training: ranks disagree on the %s (%lld to %lld); every rank must build "
                           "the same model and trainer (same options, data and checkpoint)",
                           what[k], -hi[NCHECK + 1 + k], hi[k]);
    const int s_hi = NCHECK - 1, s_lo = NCHECK;
    if (hi[s_hi] != -hi[NCHECK + 1 + s_hi] || hi[s_lo] != -hi[NCHECK + 1 + s_lo]) {
        /* Name two different seeds: rank 0's and the largest one that differs from it. */
        unsigned long long seed0 = t->o.seed, other = 0;
        if ((err = MPI_Bcast(&seed0, 1, MPI_UNSIGNED_LONG_LONG, 0, d->comm)) != MPI_SUCCESS)
            return mpi_fail(err, "MPI_Bcast of the seed");
        unsigned long long cand = t->o.seed != seed0 ? t->o.seed : 0;
        if ((err = MPI_Allreduce(&cand, &other, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, d->comm)) != MPI_SUCCESS)
            return mpi_fail(err, "MPI_Allreduce of the seeds");
        return fl_fail(FL_ERR_ARG,
                       "distributed training: ranks disagree on the seed (rank 0 has %llu, another rank %llu); every "
                       "rank must use the same seed (--seed), or their shuffles would hand them overlapping data",
                       seed0, other);
    }
    /* Start equal: rank 0's parameters and optimiser state. */
    if ((err = bcast_floats(d->comm, m->params, m->n_params)) != MPI_SUCCESS ||
        (err = bcast_floats(d->comm, t->s1, m->n_params)) != MPI_SUCCESS ||
        (t->s2 && (err = bcast_floats(d->comm, t->s2, m->n_params)) != MPI_SUCCESS))
        return mpi_fail(err, "MPI_Bcast of the parameters");
    double lr = t->lr;
    if ((err = MPI_Bcast(&lr, 1, MPI_DOUBLE, 0, d->comm)) != MPI_SUCCESS) return mpi_fail(err, "MPI_Bcast of the lr");
    t->lr = lr;
    fl_trainer_set_shard(t, d->rank, d->size);
    fl_trainer_set_grad_hook(t, dist_hook, d);
    d->t = t;
    return set_buckets(d);
}

void fl_dist_detach(fl_dist *d, fl_trainer *t) {
    if (!t) return;
    fl_trainer_set_shard(t, 0, 1);
    fl_trainer_set_grad_hook(t, NULL, NULL);
    t->ready = NULL;
    t->ready_user = NULL;
    if (d && d->t == t) {
        d->t = NULL;
        fl_free(d->req);
        d->req = NULL;
        d->nb = d->next = 0;
    }
}

/* ---------------------------------------------------------------- watchdog */

static void *watchdog_main(void *arg) {
    fl_dist *d = arg;
    const struct timespec tick = {0, 100 * 1000 * 1000};
    while (!atomic_load(&d->wd_stop)) {
        nanosleep(&tick, NULL);
        long long since = atomic_load(&d->wait_since_us);
        if (since == 0 || (double)(now_us() - since) * 1e-6 < d->wd_timeout) continue;
        char msg[512];
        snprintf(msg, sizeof msg,
                 "distributed training stalled: rank %d of %d has waited %.0f s for the other ranks at step %ld "
                 "(gradient allreduce); a peer rank has stopped, died or lost its network link. Aborting the job "
                 "(the last checkpoint can be resumed, on any number of ranks, with --resume)",
                 d->rank, d->size, d->wd_timeout, atomic_load(&d->cur_step));
        if (d->on_stall) d->on_stall(msg, d->stall_user);
        /* MPI_Abort goes through Open MPI's daemons; with this rank's link down it can block
         * forever. SIGALRM (default action: terminate) ends this process 10 s later anyway. */
        alarm(10);
        MPI_Abort(MPI_COMM_WORLD, 3);
        return NULL;
    }
    return NULL;
}

fl_status fl_dist_watchdog_start(fl_dist *d, double timeout_s, fl_dist_stall_fn on_stall, void *user) {
    if (!d) return fl_fail(FL_ERR_ARG, "NULL argument to fl_dist_watchdog_start");
    if (!(timeout_s > 0) || timeout_s > 86400)
        return fl_fail(FL_ERR_ARG, "watchdog timeout must be in (0, 86400] s, got %g", timeout_s);
    if (d->wd_on) return fl_fail(FL_ERR_ARG, "the watchdog is already running");
    d->wd_timeout = timeout_s;
    d->on_stall = on_stall;
    d->stall_user = user;
    atomic_store(&d->wd_stop, 0);
    if (pthread_create(&d->wd, NULL, watchdog_main, d) != 0)
        return fl_fail(FL_ERR_IO, "cannot start the watchdog thread");
    d->wd_on = true;
    return FL_OK;
}

static void watchdog_stop(fl_dist *d) {
    if (!d->wd_on) return;
    atomic_store(&d->wd_stop, 1);
    pthread_join(d->wd, NULL);
    d->wd_on = false;
}

size_t fl_dist_step_bytes(const fl_trainer *t) {
    if (!t) return 0;
    size_t state = t->h ? 2 * (size_t)t->m->arch.layers * t->o.batch * t->m->arch.hidden : 0;
    /* + the loss, + the data-size check (two long longs) */
    return (t->m->n_params + state) * sizeof(float) + sizeof(double) + 2 * sizeof(long long);
}

fl_status fl_dist_allreduce_sum(fl_dist *d, double *x) {
    if (!d || !x) return fl_fail(FL_ERR_ARG, "NULL argument to fl_dist_allreduce_sum");
    int err = MPI_Allreduce(MPI_IN_PLACE, x, 1, MPI_DOUBLE, MPI_SUM, d->comm);
    return err == MPI_SUCCESS ? FL_OK : mpi_fail(err, "MPI_Allreduce");
}

fl_status fl_dist_barrier(fl_dist *d) {
    if (!d) return fl_fail(FL_ERR_ARG, "NULL argument to fl_dist_barrier");
    int err = MPI_Barrier(d->comm);
    return err == MPI_SUCCESS ? FL_OK : mpi_fail(err, "MPI_Barrier");
}

void fl_dist_abort(fl_dist *d, int code) {
    MPI_Abort(d ? d->comm : MPI_COMM_WORLD, code);
    FL_ASSERT(!"MPI_Abort returned");
}

fl_status fl_dist_finalize(fl_dist *d) {
    if (!d) return FL_OK;
    /* An attached trainer is not touched (it may be freed already); it must not step again. */
    watchdog_stop(d);
    fl_free(d->req);
    fl_free(d->ids);
    fl_free(d->all_ids);
    fl_free(d->rows);
    fl_free(d->counts);
    fl_free(d->displs);
    MPI_Comm_free(&d->comm);
    int err = d->owns_mpi ? MPI_Finalize() : MPI_SUCCESS;
    fl_free(d);
    return err == MPI_SUCCESS ? FL_OK : fl_fail(FL_ERR_IO, "MPI: MPI_Finalize failed (code %d)", err);
}
