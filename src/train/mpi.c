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
#include <stdio.h>
#include <string.h>

struct fl_dist {
    MPI_Comm comm;     /* a duplicate of MPI_COMM_WORLD, errors returned */
    int rank, size;
    bool owns_mpi;     /* fl_dist_init called MPI_Init */
    fl_trainer *t;     /* attached trainer, or NULL */
};

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
    *out = d;
    return FL_OK;
}

int fl_dist_rank(const fl_dist *d) { return d ? d->rank : 0; }
int fl_dist_size(const fl_dist *d) { return d ? d->size : 1; }

/* The hook: weight this rank's slice mean by its share of the batch, then sum over ranks; for a
 * language model also share the carried state of every rank's streams. */
static fl_status dist_hook(float *grad, size_t n, double *loss, void *user) {
    fl_dist *d = user;
    const fl_trainer *t = d->t;
    /* Every rank must read the same data set (it shards each global batch of it): compare its size
     * on every step, before the gradients are mixed. Max of n and of -n: max and -min at once. */
    long long sz[2] = {(long long)t->data_n, -(long long)t->data_n}, szr[2];
    int err = MPI_Allreduce(sz, szr, 2, MPI_LONG_LONG, MPI_MAX, d->comm);
    if (err != MPI_SUCCESS) return mpi_fail(err, "MPI_Allreduce checking the data size");
    if (szr[0] != -szr[1])
        return fl_fail(FL_ERR_DATA,
                       "distributed training: ranks disagree on the size of the training data (%lld to %lld %s); "
                       "every rank must read the same data",
                       -szr[1], szr[0], t->h ? "tokens" : "sequences");
    const double w = t->shard_total > 0 ? (double)t->shard_n / (double)t->shard_total : 0.0;
    if (w != 1.0) {
        const float wf = (float)w;
        for (size_t i = 0; i < n; i++) grad[i] *= wf;
    }
    // the loss of an empty slice is 0 (not computed); a NaN elsewhere stays NaN on every rank
    double l = t->shard_n > 0 ? *loss * w : 0.0;
    err = allreduce_floats(d->comm, grad, n);
    if (err != MPI_SUCCESS) return mpi_fail(err, "MPI_Allreduce of the gradient");
    if ((err = MPI_Allreduce(MPI_IN_PLACE, &l, 1, MPI_DOUBLE, MPI_SUM, d->comm)) != MPI_SUCCESS)
        return mpi_fail(err, "MPI_Allreduce of the loss");
    *loss = l;
    if (t->h && d->size > 1) { /* LM: each rank advanced only its streams' carried state */
        const size_t L = (size_t)t->m->arch.layers, H = (size_t)t->m->arch.hidden, B = (size_t)t->o.batch;
        const size_t lo = (size_t)t->shard_lo, hi = lo + (size_t)t->shard_n;
        for (size_t k = 0; k < L; k++) { /* keep only our slice, then sum: x + 0 is exact */
            float *h = t->h + k * B * H, *c = t->c + k * B * H;
            memset(h, 0, lo * H * sizeof(float));
            memset(c, 0, lo * H * sizeof(float));
            memset(h + hi * H, 0, (B - hi) * H * sizeof(float));
            memset(c + hi * H, 0, (B - hi) * H * sizeof(float));
        }
        if ((err = allreduce_floats(d->comm, t->h, L * B * H)) != MPI_SUCCESS ||
            (err = allreduce_floats(d->comm, t->c, L * B * H)) != MPI_SUCCESS)
            return mpi_fail(err, "MPI_Allreduce of the language-model state");
    }
    return FL_OK;
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
    return FL_OK;
}

void fl_dist_detach(fl_dist *d, fl_trainer *t) {
    if (!t) return;
    fl_trainer_set_shard(t, 0, 1);
    fl_trainer_set_grad_hook(t, NULL, NULL);
    if (d && d->t == t) d->t = NULL;
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
    MPI_Comm_free(&d->comm);
    int err = d->owns_mpi ? MPI_Finalize() : MPI_SUCCESS;
    fl_free(d);
    return err == MPI_SUCCESS ? FL_OK : fl_fail(FL_ERR_IO, "MPI: MPI_Finalize failed (code %d)", err);
}
