/* The one owner of OpenBLAS's thread count, which is process-wide (internal; the rule is stated to
 * users in fastlstm.h at fl_session_create and in train.h at fl_trainer_set_threads).
 *
 * The rule:
 *  - Inference sessions run OpenBLAS on one thread. fl_session_create and fl_session_set_threads set
 *    it to 1 for the whole process and leave it there (fl_blas_for_sessions): the recurrent steps and
 *    the packed input projection use the session's own worker pool, and OpenBLAS's idle threads spin
 *    on the other cores after every call, starving that pool (measured, 2 threads, batch 1: SVD 2x650
 *    50 -> 30 us/step, SVD 2x1500 157 -> 113 us/step; dense unchanged). The cost: BLAS-only work (a
 *    large head, decomposed input projections) runs on one thread.
 *  - Training sets it to the trainer's thread count (fl_trainer_set_threads -> fl_blas_set_threads).
 *  - Measurements that need single-thread rates (the machine profile) set 1 for their duration and
 *    restore the previous count (fl_blas_single_begin / fl_blas_single_end).
 * Nothing else in the library calls openblas_set_num_threads. */
#ifndef FL_BLAS_THREADS_H
#define FL_BLAS_THREADS_H

#include <stdbool.h>

/* OpenBLAS's current thread count. */
int fl_blas_threads(void);

/* Set it (process-wide); n >= 1. */
void fl_blas_set_threads(int n);

/* The session rule above: one thread. */
void fl_blas_for_sessions(void);

/* One thread until fl_blas_single_end(the returned previous count). */
int fl_blas_single_begin(void);
void fl_blas_single_end(int previous);

/* fl_blas_core_advice's rule for a given OpenBLAS core name and CPU: NULL when the core's kernels are
 * AVX2-class or better (Haswell, Zen, SkylakeX, Cooperlake, SapphireRapids, Excavator) or the CPU
 * lacks AVX2 + FMA; else "SkylakeX" (avx512: F, VL, DQ, BW and CD) or "Haswell". */
const char *fl_blas_advice_for(const char *core, bool avx2_fma, bool avx512);

#endif
