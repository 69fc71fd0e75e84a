/* `fastlstm train --decompose auto`: the training planner. Dense warm-up steps measure this
 * machine's compute rate and the link's allreduce bandwidth; then each weight matrix (LSTM gates
 * and head) gets dense, SVD or CP at a rank chosen by a cost model (compute time of the flops
 * plus time to reduce its parameters' gradient over the measured link); the decomposed model is
 * checked on validation data (loss right after decomposition against the dense model's), ranks
 * are doubled while it is too far off, and training continues factored. */
#ifndef FL_CLI_TRAIN_AUTO_H
#define FL_CLI_TRAIN_AUTO_H

#include "fastlstm/train.h"

#include <stdbool.h>
#include <stdio.h>

typedef struct cli_auto_measure {
    double step_s;      /* wall time per warm-up step (this rank) */
    double comm_s;      /* of which waiting for the gradient reduction (0 on one process) */
    double comm_bytes;  /* bytes reduced per step */
    int ranks;
    int tokens_per_rank; /* items through the model per step on one rank (B / P x T) */
} cli_auto_measure;

typedef struct cli_auto_opts {
    double tol;          /* accepted relative rise of the validation loss (default 0.02) */
    double min_gain;     /* decompose only if the estimated step time falls by this share (0.1) */
    int min_rank_div;    /* smallest rank tried: H / min_rank_div (default 16) ... */
    int min_rank;        /* ... or this, when > 0 (--auto-min-rank) */
} cli_auto_opts;

/* Plan and switch: from the dense trained model m and the warm-up measurements, choose per-matrix
 * specs, decompose, check on `check` (validation data, or training data when none) and write the
 * chosen model to *out (NULL: stay dense). Prints its reasoning to `log` (NULL: silent).
 * Returns FL_OK or the failing status. */
fl_status cli_auto_plan(const fl_model *m, const cli_auto_measure *ms, const cli_auto_opts *o,
                        const fl_dataset *check, int batch, int bptt, FILE *log, fl_model **out);

/* The whole auto phase: `warm` dense steps of *t (no checkpoint, no validation), measurements
 * (rank 0's, shared, so every rank plans alike), the plan, and on a switch a new model and
 * trainer in *m / *t (the old ones freed; re-attached to `dist`, an fl_dist or NULL) that
 * continues the old one (fl_trainer_continue_from: step count, data position, LM state), so run's
 * epochs and max_steps count both phases; *switched tells whether it switched. Collective over the
 * ranks. */
fl_status cli_auto_run(fl_model **m, fl_trainer **t, const fl_train_opts *to, fl_train_run *run, void *dist, int rank,
                       int ranks, long warm, const cli_auto_opts *o, FILE *log, bool *switched);

#endif
