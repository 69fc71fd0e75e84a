/*
 * fastlstm decomposition with progress: fl_model_decompose (fastlstm.h) that reports each matrix as
 * it starts and finishes, for tools that show progress or per-matrix timings (`fastlstm decompose`).
 */
#ifndef FASTLSTM_DECOMPOSE_H
#define FASTLSTM_DECOMPOSE_H

#include "fastlstm/fastlstm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What happened to one matrix during fl_model_decompose_ex; passed to the progress callback. */
typedef struct fl_decomp_event {
    size_t index;        /* matrix number (2l: ih, 2l+1: hh, 2L: head), as fl_model_num_matrices */
    int done;            /* 0: about to start this matrix; 1: finished it */
    fl_mat_spec spec;    /* final target (rank known once done) */
    int cp_iterations;   /* total ALS sweeps spent (all ranks tried for a tol search); 0 if not CP */
    int cp_converged;    /* of the final CP run: 1 if it stopped on cp_tol, 0 on cp_max_iter */
    double rel_error;    /* ||W - W~||_F / ||W||_F, when done */
    double seconds;      /* wall time for this matrix, when done */
} fl_decomp_event;

/* Progress callback: ctx is the pointer given to fl_model_decompose_ex; ev is valid only during the
 * call. It runs on the calling thread and must not free the model being decomposed. */
typedef void (*fl_decomp_progress)(void *ctx, const fl_decomp_event *ev);

/* fl_model_decompose with a progress callback (may be NULL), called before and after each matrix
 * (matrices copied unchanged are reported too). Same options, errors and ownership as
 * fl_model_decompose: the caller owns *out, which is NULL on error. */
FL_API fl_status fl_model_decompose_ex(const fl_model *m, const fl_decomp_opts *opts, fl_decomp_progress progress,
                                       void *ctx, fl_model **out);

#ifdef __cplusplus
}
#endif
#endif /* FASTLSTM_DECOMPOSE_H */
