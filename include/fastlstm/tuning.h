/*
 * fastlstm — the block sizes and thresholds the kernels, the worker pool and the cost model use, in
 * one place. They are compile-time constants (the kernels are built around them); this struct
 * describes them so that tools (`fastlstm plan --explain`) and programs can print or log them.
 */
#ifndef FASTLSTM_TUNING_H
#define FASTLSTM_TUNING_H

#include "fastlstm/fastlstm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fl_tuning {
    int rec_block;             /* hidden units per block of the recurrent kernels (packed W_hh panels) */
    int proj_panel;            /* output columns per panel of the packed input projection (W_ih) */
    int min_blocks_per_thread; /* a threaded recurrent step gives each thread at least this many blocks */
    int chunks_per_thread;     /* a threaded step or projection is cut into this many chunks per thread */
    size_t min_parallel_bytes; /* steps streaming fewer weight bytes (per batch) run on the caller alone */
    double min_parallel_macs;  /* input projections with fewer multiply-adds run on the caller alone */
    int gemm_nt_min_k;         /* the library's own input-projection kernel from this inner size; BLAS below */
    double cache_fit_fraction; /* share of a cache level the cost model counts as usable for weights */
    /* FL_STEP_AUTO (fl_session_opts.step_sched) runs a layer direction's steps by rows where each
     * thread gets at least rows_min_per_thread batch rows and W_hh (f32 bytes) is SVD / CP of at most
     * rows_max_whh_bytes, or at least rows_dense_min_per_thread rows and W_hh dense of at most
     * rows_max_dense_bytes (0: never) */
    int rows_min_per_thread;
    size_t rows_max_whh_bytes;
    size_t rows_max_dense_bytes;
    int rows_dense_min_per_thread;
} fl_tuning;

/* The values this build uses; static storage, never NULL. */
FL_API const fl_tuning *fl_tuning_get(void);

#ifdef __cplusplus
}
#endif
#endif /* FASTLSTM_TUNING_H */
