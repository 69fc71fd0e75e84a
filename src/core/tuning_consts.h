/* Thresholds of the worker pool, the recurrent step and the cost model: defined here once, described
 * to users by fl_tuning (include/fastlstm/tuning.h, tuning.c). The kernels' block sizes FL_REC_NB and
 * FL_PK_NC live in kernels/kernels.h, beside the packed layouts they shape. Internal. */
#ifndef FL_TUNING_CONSTS_H
#define FL_TUNING_CONSTS_H

#define FL_MIN_BLOCKS_PER_THREAD 2
#define FL_CHUNKS_PER_THREAD 4
#define FL_MIN_PARALLEL_BYTES (512 * 1024) /* below this a step takes ~3 us: syncing two threads does not pay */
#define FL_MIN_PARALLEL_MACS (2 << 20)     /* input projections below this (~10 us) run on the caller alone */
/* An input projection (all its packed products together) of fewer multiply-adds runs on the caller
 * alone when its pool's workers all sleep (fl_rec_input_ws, fl_pool_run_if_awake; they do by a
 * layer's next projection unless the layer's steps keep them busy): waking them takes the caller
 * ~30 us (pool.h), and 35-row SVD projections of 2 x 650 after 1 ms idle, one thread against two
 * woken, took (Zen 5 VM, us): rank 40 68 / 120 (4.5M in all), 81 112 / 145 (9.2M), 162 200 / 187
 * (18.4M), 325 468 / 305 (66M). */
#define FL_WAKE_MIN_MACS (16 << 20)
#define FL_GEMM_NT_MIN_K 64                /* own gemm_nt from this inner size; BLAS below */
#define FL_FIT_FRACTION 0.75 /* usable share of a cache: the rest holds activations, other weights, conflict misses */
/* FL_STEP_AUTO (session.c, where the figures behind them are) runs a layer direction's steps by rows
 * where the batch has at least FL_ROWS_MIN_PER_THREAD rows per thread (a dense W_hh:
 * FL_ROWS_DENSE_MIN_PER_THREAD), its W_hh (the f32 weights of the matrix, which every thread streams
 * each step) takes at most FL_ROWS_MAX_WHH_BYTES (SVD / CP) or FL_ROWS_MAX_DENSE_BYTES (dense: each
 * core's copy stays in its L2; on the 2-vCPU Zen 3 2 x 650 ran rows at 1.08x and 2 x 256 at 1.13x the
 * blocks' time at B 20, 10 rows a thread; on the Xeon model 207 H 128 / 256 at B 64-256 0.89-0.94x),
 * and a step's weight traffic (W_hh bytes x batch) reaches FL_MIN_PARALLEL_BYTES */
#define FL_ROWS_MIN_PER_THREAD 2
#define FL_ROWS_DENSE_MIN_PER_THREAD 32
#define FL_ROWS_MAX_WHH_BYTES (8 * 1024 * 1024)
#define FL_ROWS_MAX_DENSE_BYTES (1024 * 1024)

#include <stdbool.h>

/* FL_STEP_AUTO's rule for a layer direction of B rows on `threads` threads whose W_hh stores
 * `whh_bytes` f32 bytes (`dense`: stored whole, else SVD / CP factors): true = by rows. The one rule session.c (rows_chunks, which also excludes
 * LSTMP, the LSTM extras and int8 / bf16 W_hh) and the cost model (cost.c) both call. */
static inline bool fl_rows_auto(int B, int threads, double whh_bytes, bool dense) {
    return threads >= 2 && B >= (dense ? FL_ROWS_DENSE_MIN_PER_THREAD : FL_ROWS_MIN_PER_THREAD) * threads &&
           whh_bytes <= (dense ? FL_ROWS_MAX_DENSE_BYTES : FL_ROWS_MAX_WHH_BYTES) &&
           whh_bytes * B >= FL_MIN_PARALLEL_BYTES;
}

#endif
