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

/* Bytes one step sends through MPI_Allreduce: the flat gradient block (parameter count with
 * alignment padding, times 4), the loss (8), the data-size check (16) and, for a language model,
 * the carried state (2 x layers x batch x hidden floats, so that every rank and checkpoint holds
 * all streams).
 * Decomposed matrices make it smaller. */
FL_API size_t fl_dist_step_bytes(const fl_trainer *t);

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
