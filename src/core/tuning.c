/* fl_tuning_get: the one description of the build's block sizes and thresholds. */
#include "fastlstm/tuning.h"

#include "internal.h"
#include "kernels/kernels.h"
#include "tuning_consts.h"

static const fl_tuning tuning = {
    .rec_block = FL_REC_NB,
    .proj_panel = FL_PK_NC,
    .min_blocks_per_thread = FL_MIN_BLOCKS_PER_THREAD,
    .chunks_per_thread = FL_CHUNKS_PER_THREAD,
    .min_parallel_bytes = FL_MIN_PARALLEL_BYTES,
    .min_parallel_macs = FL_MIN_PARALLEL_MACS,
    .gemm_nt_min_k = FL_GEMM_NT_MIN_K,
    .cache_fit_fraction = FL_FIT_FRACTION,
    .rows_min_per_thread = FL_ROWS_MIN_PER_THREAD,
    .rows_max_whh_bytes = FL_ROWS_MAX_WHH_BYTES,
    .rows_max_dense_bytes = FL_ROWS_MAX_DENSE_BYTES,
    .rows_dense_min_per_thread = FL_ROWS_DENSE_MIN_PER_THREAD,
};

const fl_tuning *fl_tuning_get(void) { return &tuning; }
