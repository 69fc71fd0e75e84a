/*
 * fastlstm data-parallel training over MPI: the separate library libfastlstm_dist (built when MPI
 * is found; pkg-config fastlstm-dist, CMake target fastlstm::fastlstm_dist), so that programs that
 * only run models never link MPI.
 *
 * Every process (rank) holds the whole model and trainer; each step every rank computes the
 * gradient on its slice of the same global batch, the slices' gradients and losses are summed with
 * MPI_Allreduce weighted by slice size (so the result is the global-batch mean even for batches not
 * divisible by the number of ranks), and every rank then runs the same optimiser step. Parameters
 * are broadcast from rank 0 once, at attach time, never per step.
 *
 * All ranks must build the same model and trainer (same options, same data, the same checkpoint
 * when resuming) and call these functions in the same order: they are collective. Only rank 0
 * should print, write checkpoints and save the model.
 *
 * Without dropout a run on P ranks matches one process on the same global batch up to float
 * rounding of the summation order. With dropout each rank draws its own masks: equivalent in
 * distribution, not bit for bit.
 */
#ifndef FASTLSTM_DIST_H
#define FASTLSTM_DIST_H

#include "fastlstm/train.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fl_dist fl_dist;

/* Join MPI_COMM_WORLD, calling MPI_Init (with argc/argv, which may be NULL) unless MPI is already
 * initialised; errors on the communicator are returned, not fatal. FL_ERR_IO if MPI fails. */
FL_API fl_status fl_dist_init(int *argc, char ***argv, fl_dist **out);

/* Rank of this process in [0, size) and number of processes. */
FL_API int fl_dist_rank(const fl_dist *d);
FL_API int fl_dist_size(const fl_dist *d);

/* Make t data-parallel: check that every rank has a model of the same size at the same step, with
 * the same optimiser, batch size, shuffle setting and seed (FL_ERR_ARG on every rank otherwise;
 * fl_last_error() names what differs and the values, e.g. both seeds: ranks with different seeds
 * would shuffle differently and train on overlapping slices), broadcast rank 0's parameters and
 * optimiser state, shard every batch by rank and install the gradient hook that allreduces
 * (replacing any hook set with fl_trainer_set_grad_hook). Every step then also checks that all
 * ranks read a data set of the same size: fl_trainer_step returns FL_ERR_DATA on every rank
 * otherwise, before any gradient is mixed. d must outlive t's training (the hook points to it). */
FL_API fl_status fl_dist_attach(fl_dist *d, fl_trainer *t);

/* Undo fl_dist_attach: t trains on whole batches again, without a hook. */
FL_API void fl_dist_detach(fl_dist *d, fl_trainer *t);

/* Bytes one step sends through MPI_Allreduce with a dense embedding gradient (an upper bound when
 * the embedding is sparse, see fl_dist_get_stats for what was sent): the flat gradient block
 * (parameter count with alignment padding, times 4), the loss (8), the data-size check (16) and,
 * for a language model, the carried state (2 x layers x batch x hidden floats, so that every rank
 * and checkpoint holds all streams).
 * Decomposed matrices make it smaller. */
FL_API size_t fl_dist_step_bytes(const fl_trainer *t);

/* Overlap of communication with backward. The flat gradient is cut into buckets of `mb` MiB;
 * as backward finishes the head, then each layer from the top, then the embedding, every bucket
 * wholly finished is reduced with a non-blocking MPI_Iallreduce, and backward calls MPI_Testall
 * between chunks of time steps so the reductions advance; the grad hook posts the rest and waits.
 * 0 turns overlap off (one blocking allreduce after backward). Sums are the same as without
 * overlap, element by element. Default FL_DIST_BUCKET_MB_DEFAULT. Collective in effect: every
 * rank must use the same size. FL_ERR_ARG outside [0, 1024]. */
#define FL_DIST_BUCKET_MB_DEFAULT 4.0
FL_API fl_status fl_dist_set_bucket_mb(fl_dist *d, double mb);

/* Sparse embedding gradient (on by default): for a model with an embedding, each step reduces
 * only the rows some rank's batch touched: the ranks' distinct token ids are gathered
 * (MPI_Allgatherv), their union's rows allreduced; the dense allreduce of the rest of the block
 * (and overlap buckets) then starts after the embedding. Untouched rows are zero on every rank,
 * so the result is the same as the dense allreduce. Every rank must use the same setting. */
FL_API fl_status fl_dist_set_sparse_embedding(fl_dist *d, int on); /* on: nonzero */

/* Communication counters since fl_dist_init, summed over this rank's steps. */
typedef struct fl_dist_stats {
    long steps;         /* training steps reduced */
    double bytes;       /* bytes reduced (message sizes, as fl_dist_step_bytes but with only the
                         * touched embedding rows and their ids when sparse) */
    double wait_s;      /* time spent in the grad hook: communication backward did not hide */
    double grad_wait_s; /* of which waiting for the gradient (MPI_Waitall / blocking allreduce) */
    double grad_busy_s; /* time with some gradient bucket in flight (completion seen at backward's
                         * next poll, so slightly over); without overlap equal to grad_wait_s.
                         * Share of communication hidden = 1 - grad_wait_s / grad_busy_s */
} fl_dist_stats;
FL_API void fl_dist_get_stats(const fl_dist *d, fl_dist_stats *out);

/* Watchdog: a thread that ends the whole job when this rank has waited more than timeout_s
 * seconds for the other ranks inside one step's reduction (a peer died, hangs, or its network
 * link is down, where MPI itself would wait forever). It calls on_stall(message, user) with a
 * message naming this rank, the step and the cause (the library never prints: the caller may),
 * then MPI_Abort(MPI_COMM_WORLD, 3), which ends every rank. Because MPI_Abort itself needs the
 * network (it can block when this rank's link is down), the watchdog first sets alarm(10): the
 * process then ends by SIGALRM if the abort has not. on_stall runs on the watchdog thread.
 * Stopped by fl_dist_finalize. FL_ERR_ARG for a timeout outside (0, 86400] or a second start.
 *
 * Fault injection, for tests: with FL_DIST_FAULT=hang@R:S (or kill@R:S) in the environment at
 * fl_dist_init, rank R hangs forever (or kills itself with SIGKILL) on reaching the reduction of
 * step S (steps counted from 0 over the whole run, as fl_trainer_steps). */
typedef void (*fl_dist_stall_fn)(const char *message, void *user);
FL_API fl_status fl_dist_watchdog_start(fl_dist *d, double timeout_s, fl_dist_stall_fn on_stall, void *user);

/* Collective: the sum over all ranks of x (e.g. to agree on a status). */
FL_API fl_status fl_dist_allreduce_sum(fl_dist *d, double *x);

/* Collective: wait for every rank. */
FL_API fl_status fl_dist_barrier(fl_dist *d);

/* Abort every rank of the job with exit code `code` (MPI_Abort); for fatal errors on one rank,
 * where the others would otherwise wait forever in a collective. Does not return. */
FL_API void fl_dist_abort(fl_dist *d, int code);

/* Free d and call MPI_Finalize if fl_dist_init initialised MPI. Collective. NULL accepted.
 * A trainer still attached is not touched (it may already be freed) and must not step again. */
FL_API fl_status fl_dist_finalize(fl_dist *d);

#ifdef __cplusplus
}
#endif
#endif /* FASTLSTM_DIST_H */
