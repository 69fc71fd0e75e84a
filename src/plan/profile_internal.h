/* Internal pieces of the machine profile shared by profile_detect.c, profile.c (measurement),
 * profile_knee.c and profile_io.c, and used by the tests. */
#ifndef FL_PROFILE_INTERNAL_H
#define FL_PROFILE_INTERNAL_H

#include "internal.h"
#include "fastlstm/plan.h"
#include "plan_internal.h"
#include "recurrent.h"

/* One cache level found on a streaming curve. */
typedef struct fl_knee {
    size_t bytes;   /* effective capacity: the knee (see fl_profile_find_levels) */
    double plateau; /* the level's plateau bandwidth */
    int first, last; /* indices of the curve points attributed to the level */
} fl_knee;

/* Bandwidth a level must keep, as a fraction of its plateau, for a working set to count as held. */
#define FL_KNEE_FRACTION 0.8
/* Fewest ladder points (2^(1/4) apart: 3 points span half an octave) a plateau needs to count as a
 * level; shorter runs are the transition between two levels. */
#define FL_KNEE_MIN_POINTS 3

/* Least plateau of a cache level as a multiple of memory's: below it a segment just past the last
 * level's knee is the gradual fall from that level to memory (part of the working set still hits
 * the cache), not a level of its own. Saved profiles of the 2-vCPU Zen 3 VM (2026-11, co-tenants
 * sharing its L3) show such segments at 1.24-1.49x memory's rate, ending at 1.7-2.8x the knee
 * before them (8.4 MB), which made the profile count a level too many and read the last level
 * 1.7-2.8x too large; the real last levels there ran at 3.1-7.4x memory (all cores together 2.8-4.5x). */
#define FL_LEVEL_OVER_MEMORY 1.5

/* A reported level inside one measured level's segment is kept where the curve's median rate past
 * it is under this fraction of the median up to it (fl_profile_apply_levels). The 80% rule reads a
 * fall as a knee only where it is steep; this VM's Zen 5 curve falls from 135 GB/s at 40 KiB through
 * ~105 at its 1 MiB L2 to 75 at 14 MB in steps each under 20% at times, one segment then, and a
 * profile without an L2 priced the L2-resident steps as if past the private level (bench_plan run
 * B5, 2026-12-02: 29 of 48 within 15%; 40 with the 1 MiB L2 put back by hand; docs/planner.md,
 * "Session 20"). Medians of three or more points on a flat curve differ by its noise, well inside
 * this. */
#define FL_LEVEL_FALL 0.85

/* Cache levels from a streaming curve: bytes[n] ascending, bw[n] > 0 the streaming rate at each
 * working set. Definition (the contract the tests check):
 *   1. s[i] = median of bw[i-1], bw[i], bw[i+1] (the end points keep their own value), so one
 *      noisy point neither ends a level nor starts one;
 *   2. segment the curve greedily from the small end: a segment's plateau is the median of the s[]
 *      in it so far (robust to a transition point at its start), and it extends while the next
 *      s[] is >= FL_KNEE_FRACTION x that plateau;
 *   3. every segment but the last with at least FL_KNEE_MIN_POINTS points is a cache level; its
 *      effective capacity (knee) is bytes[] of its last point: the largest working set that still
 *      streams at >= 80% of the level's plateau. Shorter segments are transitions and are dropped.
 *      A level whose plateau is >= FL_KNEE_FRACTION x the one before it is no new level (nothing
 *      fell between them: a dip inside one level): the level before extends to its end, its
 *      plateau the median over both;
 *   4. the last segment is memory (its plateau goes to *memory_bw, may be NULL), and so is a
 *      segment followed by fewer than FL_KNEE_MIN_POINTS points (a slow end of the ladder is no
 *      level: the ladder ends far beyond any cache);
 *   5. then the largest levels whose plateau is under FL_LEVEL_OVER_MEMORY x memory's are dropped
 *      (the fall to memory, not levels).
 * Returns the number of levels written to out (at most max_levels, the smallest ones), 0 for a
 * curve with fewer than 2 points or without a fall. */
int fl_profile_find_levels(const size_t *bytes, const double *bw, int n, fl_knee *out, int max_levels,
                           double *memory_bw);

/* Passes of the streaming ladder the profile measures (interleaved: the whole ladder once, then
 * again), combined point by point by fl_profile_curve_median: a co-tenant's burst that slows one
 * pass at some sizes leaves the other passes, and so the median, alone. */
#define FL_PROFILE_PASSES 3

/* Most passes one profile run takes (fl_profile_run_pass: bench_plan takes one before each of its
 * timing rounds, up to this many). */
#define FL_PROFILE_MAX_PASSES 8

/* Draws of the low-rank kernels' figures per pass (fl_profile_run_pass: after the rates, after the
 * one-thread ladder, at the end), seconds apart, and the most a run holds. This VM runs the same
 * kernel 1.3x slower for seconds at a time (docs/planner.md, "Session 13"): a figure is the median
 * of all draws, so that no single spell sets it. */
#define FL_PROFILE_LR_DRAWS 3
#define FL_PROFILE_MAX_DRAWS (FL_PROFILE_MAX_PASSES * FL_PROFILE_LR_DRAWS)

/* out[i] = median over the n_passes passes of passes[p * n + i] (the upper one of the middle two
 * for an even count), i < n; 1 <= n_passes <= FL_PROFILE_MAX_DRAWS, n <= FL_PROFILE_MAX_CURVE. */
void fl_profile_curve_median(const double *passes, int n_passes, int n, double *out);

/* out[i] = the highest over the n_passes passes of passes[p * n + i], i < n (the same bounds). */
void fl_profile_curve_max(const double *passes, int n_passes, int n, double *out);

/* The all-cores knees a level's sharing is judged by (fl_profile_apply_levels): those of the
 * passes' median curve, kall[0..nall), each level's below the last raised to the knee of the
 * passes' point-wise best curve (kbest[0..nbest), found the same way) when the two show the same
 * levels. Two threads that once streamed twice a level's one-core capacity at its rate had a copy
 * of it each; a co-tenant taking the second vCPU only shortens a pass's curve. A `fastlstm profile`
 * taken while 56% of its speed samples ran slow had the second vCPU taken from 1.75 MB on in two of
 * its three passes: its median all-cores curve fell at the one-core L2 knee, the L2 read as shared,
 * the private level became L1, and 2 x 650 / 1500 priced from it put 26 of 48 bench_plan candidates
 * within 15% where the run's own profile put 43 (docs/planner.md, "Session 18"). The last level keeps
 * the median's knee: the cost model reads its all-cores rate off the curve itself. */
void fl_profile_knees_best(fl_knee *kall, int nall, const fl_knee *kbest, int nbest);

/* Dips lifted out of a streaming curve bw[0..n) (a rate per working set, sizes rising): each point
 * becomes at least the highest of the FL_CURVE_DIP_WINDOW points after it (their values before
 * any lifting). Streaming does not get faster as the working set grows, and a co-tenant only slows
 * a measurement: a point below a larger working set's rate was slowed while it was timed. On the
 * 2-vCPU Xeon the all-cores curve's point-wise median over five passes read 43 GB/s at 2.8 MB and
 * 70 at 3.4 between 143 at 2.4 and 84 at 4.0 (the other vCPU taken in three of the passes at those
 * sizes), and priced 1500 SVD h/16 at batch 1 on two threads at 1.64x its measured time
 * (docs/planner.md, "Session 17"). A real fall is untouched: the points after it are lower. The
 * window bounds what one high outlier past a knee can lift (three ladder steps, a 1.68x size). */
#define FL_CURVE_DIP_WINDOW 3
void fl_profile_curve_lift_dips(double *bw, int n);

/* Apply measured levels to p: the levels found on the one-thread curve (knees1, n1) become p's
 * levels 1..n1 with those capacities; the reported level each is paired with (by position when
 * the counts agree and no level is 1.5x larger than its reported one but the last, else the nearest
 * in log size that is not 1.5x smaller than it, the last reported level always allowed) gives its
 * number and reported_bytes; measured levels past the one paired with the last reported level
 * become part of it (one level to the last knee, at the slowest plateau); a level whose capacity grows by >= 1.5x with all cores streaming (knees_all,
 * n_all, matched by position when both curves show the same number of levels) is private
 * (shared_cpus 1), else shared by all cores; a level below p->parallel_step_bytes (where the
 * runtime streams on one thread, so the all-cores curve says nothing) and unmatched curves keep the
 * reported sharing. A reported level between the ones paired with two consecutive measured levels,
 * paired with neither, and lying inside the second's segment of p's one-thread curve (p->curve_*,
 * the curve knees1 was read off; n_curve 0: none) is kept where that curve falls across it
 * (FL_LEVEL_FALL): its capacity the curve's last point within the reported size, its bandwidth the
 * median up to there; the measured level's plateau is then the median past it. Where the curve is
 * flat across it (L2 and L3 streaming alike) it is dropped. n1 == 0 leaves p's reported levels
 * alone. */
void fl_profile_apply_levels(fl_profile *p, const fl_knee *knees1, int n1, const fl_knee *knees_all,
                             int n_all);

/* Measure p->qrec_flops[q] and p->qgemm_flops[q] (q BF16 or INT8) with the dispatched quant kernels
 * (profile.c; part of fl_profile_measure). p's cell figures must be set (0: not subtracted). */
fl_status fl_profile_measure_quant(fl_profile *p, fl_precision q);

/* Hidden size of the dense step whose W_hh (16 H^2 bytes) lies beyond the private level, as
 * fl_profile.rec_far_bytes describes: fl_profile_beyond_private's bytes; 0 when those are under 4x
 * the private level (held to a quarter of a last level under 16x it), or with one level. */
int fl_profile_far_hidden(const fl_profile *p);

/* Bytes of a buffer that the last level holds and the private one does not (profile_lowrank.c): 4 x
 * the largest private level, at most a quarter of the last, at least 1 MiB. p has a level. */
size_t fl_profile_beyond_private(const fl_profile *p);

/* p->run_reread (profile_reread.c), once the last level's capacity is measured. */
fl_status fl_profile_measure_reread(fl_profile *p);

/* p->act_bytes, p->act_seconds: whole sessions of a small-rank model at FL_PROFILE_ACT_POINTS
 * lengths, paired with the shortest (cost_act.c). */
fl_status fl_profile_measure_act(fl_profile *p);

/* The machine's speed at a moment (profile_speed.c): one fixed packed product in L2, gemm_pk
 * FL_SPEED_ROWS x FL_SPEED_COLS x FL_SPEED_K, the median of 3 calls after one. w and y hold twice
 * the columns, so that a caller with a two-thread pool can time the same product split
 * (bench_plan). k is NULL (no probe: every sample 0) on a kernel level without gemm_pk. */
enum { FL_SPEED_ROWS = 64, FL_SPEED_COLS = 256, FL_SPEED_K = 256 };
typedef struct fl_speed_probe {
    const struct fl_kernels *k;
    float *x, *w, *y;
} fl_speed_probe;

/* FL_ERR_NOMEM when the buffers cannot be had; on a level without gemm_pk, FL_OK and k NULL. */
fl_status fl_speed_probe_init(fl_speed_probe *s);
void fl_speed_probe_free(fl_speed_probe *s);

/* One sample: the product's seconds now (0 without a probe). */
double fl_speed_probe_sample(const fl_speed_probe *s);

/* p->speed_* from n samples (seconds; 0s, a probe's "none", are left out): the fastest, median and
 * 90th percentile, and the share at FL_PROFILE_SPEED_SLOW x the fastest or slower. All 0 without
 * samples. */
void fl_profile_speed_stats(const double *v, int n, fl_profile *p);

/* Each pass's raw figures of the rates the batch > 1 and two-thread predictions rest on, [pass][k]
 * with k the batch or row point (4, 16, 64, 256). */
typedef struct fl_rate_passes {
    int n;       /* passes taken */
    int threads; /* N of the speed-ups: 2 on a machine with 2 or more CPUs, else 0 (none) */
    double gemm[FL_PROFILE_MAX_PASSES], gemv[FL_PROFILE_MAX_PASSES]; /* flop rates (gemv 0: no slope) */
    double rows[FL_PROFILE_MAX_PASSES][FL_PROFILE_GEMM_POINTS];        /* dense projection's flop rate */
    /* the dense step, H = 256, at batch k on one thread and on N (0: not timed), cell included, s */
    double rec_t1[FL_PROFILE_MAX_PASSES][FL_PROFILE_GEMM_POINTS];
    double rec_tn[FL_PROFILE_MAX_PASSES][FL_PROFILE_GEMM_POINTS];
    /* the same at H = far_hidden (fl_profile_far_hidden; 0: not timed) */
    int far_hidden;
    double far_t1[FL_PROFILE_MAX_PASSES][FL_PROFILE_GEMM_POINTS];
    double far_tn[FL_PROFILE_MAX_PASSES][FL_PROFILE_GEMM_POINTS];
    /* the projection's speed-up on N threads, W_ih in the last level and from memory (0: none) */
    double proj[FL_PROFILE_MAX_PASSES][FL_PROFILE_GEMM_POINTS];
    double proj_mem[FL_PROFILE_MAX_PASSES][FL_PROFILE_GEMM_POINTS];
    /* the split packed product's speed-up by size (fl_profile.thread_scale_pk; 0: none) */
    double pk[FL_PROFILE_MAX_PASSES][FL_PROFILE_GEMM_POINTS];
    /* the split step as a session runs it (fl_profile_switch_pass), s per layer-step: one thread,
     * one layer alone on N, two layers in turn on N (all 0: not timed) */
    double sw[FL_PROFILE_MAX_PASSES][3];
} fl_rate_passes;

/* The median over i < n of t1[i] / tn[i], each pair timed back to back (a split product's speed-up;
 * fl_time_interleaved's and bench_plan's paired ratios): the machine's speed of the moment cancels in
 * each pair. 0 when n < 1 or any time is not positive; the first FL_PAIRED_MAX pairs at most. */
enum { FL_PAIRED_MAX = 64 };
double fl_profile_paired_scale(const double *t1, const double *tn, int n);

/* Time the runtime's split step as a session runs it on `threads` threads (profile_threads.c): out[0]
 * one thread, out[1] one layer's steps alone on `threads`, out[2] two layers' steps in turn, seconds
 * per layer-step, each the median of its samples. */
fl_status fl_profile_switch_pass(int threads, double out[3]);

/* p's thread_sync_seconds and thread_switch_seconds from n passes of fl_profile_switch_pass on
 * `threads` threads: sync the median of out[1] - out[0] / threads (>= 0); switch the median, over
 * the passes whose split gained (out[0] > out[1]), of the one-thread seconds of the steps run before
 * the alternation reached out[1]'s pace (see profile_threads.c). Both 0 with threads < 2 or no pass.
 * Nothing is timed (the tests call it on hand-made passes). */
void fl_profile_switch_apply(const double (*sw)[3], int n, int threads, fl_profile *p);

/* Time one pass over every rate figure into rp (its pass rp->n, then rp->n + 1); rp zeroed before
 * the first. FL_ERR_ARG past FL_PROFILE_MAX_PASSES passes. */
fl_status fl_profile_rates_pass(const fl_profile *p, fl_rate_passes *rp);

/* p's gemm_flops, gemv_flops, gemm_rows_flops, rec_rows_flops and thread_scale_rec / _proj /
 * _proj_mem from rp's passes: each the median of its passes (fl_profile_curve_median: the upper one
 * of the middle two for an even count). The step's rate at batch B is 8 H^2 B / (t1 less the cell
 * update, fl_profile_without_cell at p's figure for B), H = 256; its speed-up is that time over
 * (tN - fl_cost_thread_sync(p)) less 1/N of the cell update, each subtraction kept to at least a
 * fifth of what it is taken from (fl_profile_without_cell: a sync read under load at 4.8 us once
 * exceeded tN and wrote a speed-up of -12.2 that the profile's own loader refused), computed per
 * pass before the median.
 * Without two-thread figures (rp->threads < 2) the speed-ups are all 0. p's cell figures and
 * curves must be set. Nothing is timed (the tests call it on hand-made passes). */
void fl_profile_rates_apply(const fl_rate_passes *rp, fl_profile *p);

/* Each draw's raw figures of the low-rank step's parts (profile_lowrank.c; fl_profile.lr_*):
 * [draw][j * FL_PROFILE_LR_ROWS + k] at rank fl_profile_lr_rank(j) and rows fl_profile_lr_rows(k). */
typedef struct fl_lr_passes {
    int n; /* draws taken (FL_PROFILE_LR_DRAWS per profile pass) */
    double proj[FL_PROFILE_MAX_DRAWS][FL_PROFILE_LR_RANKS * FL_PROFILE_LR_ROWS];
    double panel[FL_PROFILE_MAX_DRAWS][2][FL_PROFILE_LR_RANKS * FL_PROFILE_LR_ROWS]; /* SVD, CP */
    double copy[FL_PROFILE_MAX_DRAWS];
    double proj_far[FL_PROFILE_MAX_DRAWS][FL_PROFILE_LR_RANKS * FL_PROFILE_LR_ROWS];     /* weights beyond */
    double panel_far[FL_PROFILE_MAX_DRAWS][2][FL_PROFILE_LR_RANKS * FL_PROFILE_LR_ROWS]; /* the private level */
    double ih_in[FL_PROFILE_MAX_DRAWS][FL_PROFILE_LR_RANKS * FL_PROFILE_LR_ROWS];     /* input projection, */
    double ih_out[FL_PROFILE_MAX_DRAWS][2][FL_PROFILE_LR_RANKS * FL_PROFILE_LR_ROWS]; /* its stages */
    double ih_walk[FL_PROFILE_MAX_DRAWS][FL_PROFILE_IH_WALKS]; /* stage 2's output walks (format 5), */
    double ih_walk_bytes[FL_PROFILE_IH_WALKS];                  /* at these buffers' bytes */
} fl_lr_passes;

/* The grid's rank j (16 << j) and rows k (1, 4, 16, 64, 256). */
int fl_profile_lr_rank(int j);
int fl_profile_lr_rows(int k);

/* Time one pass of the low-rank step's parts into lp (its pass lp->n, then lp->n + 1; lp zeroed
 * before the first). p's levels must be set (the gx copy's buffer is sized from them). */
fl_status fl_profile_lowrank_pass(const fl_profile *p, fl_lr_passes *lp);

/* p's lr_proj_seconds, lr_panel_seconds, their _far tables, gx_copy_seconds and lr_ih_*: each the
 * median of lp's passes. */
void fl_profile_lowrank_apply(const fl_lr_passes *lp, fl_profile *p);

/* Seconds of one recurrent step of B rows of r: the pick-th fastest of `reps` (<= 16) samples, each
 * timing enough back-to-back steps to last about 0.2 ms. gx (B, 4H), h0, h1, c (B, H). */
double fl_profile_time_steps(fl_rec *r, int B, const float *gx, float *h0, float *h1, float *c, int H, int reps,
                             int pick);

/* Seconds of one dense recurrent step (hidden H, W_hh (4H, H)) at batch B on `threads` threads,
 * cell update included: the median of 7 samples (fl_profile_time_steps). */
fl_status fl_profile_time_rec_rows(int H, int B, int threads, double *seconds);

/* A step time t less its cell update `cell`, kept at least a fifth of t (the two are measured apart,
 * so noise could otherwise leave nothing or less). */
static inline double fl_profile_without_cell(double t, double cell) {
    return t - cell > 0.2 * t ? t - cell : 0.2 * t;
}

/* Seconds of the cell update of a step of B rows of H units on `threads` threads (the runtime
 * splits it with the step's blocks): what each measurement subtracts, at the figure the cost model
 * adds for that batch (fl_cost_cell_seconds). */
static inline double fl_profile_cell_of(const fl_profile *p, int B, int H, int threads) {
    return (double)B * H * fl_cost_cell_seconds(p, B) / threads;
}

/* A profile measured in passes, so that a caller can put its own work between them (bench_plan: a
 * round of timing its candidates after each pass, so that the profile's rates and the candidates'
 * times sample the same minutes of a machine whose speed drifts). fl_profile_measure is begin,
 * FL_PROFILE_PASSES passes, finish, free.
 *   begin:  fl_profile_detect into p (kept by the run until free) and the ladder's weights; each
 *           call below runs BLAS on one thread for its own timings (restored before it returns);
 *   pass:   one pass of the cell update (the pass's own measurements subtract it), of every rate
 *           figure (fl_profile_rates_pass), of the streaming ladder on one thread and on all cores,
 *           and the step's rate at batch 16 from memory; FL_ERR_ARG past FL_PROFILE_MAX_PASSES;
 *   finish: each figure the median of its passes (the cell update; the curves point by point, then
 *           their knees and levels; the rates; the rate from memory), then the figures timed once
 *           (level rates, the fixed step cost, SVD / CP efficiencies, bias pass, cold input
 *           projections, quantized rates); p->measured = 1. FL_ERR_ARG without a pass.
 * Between calls the run holds the ladder's weights (256 MiB) and restores BLAS's thread count. */
typedef struct fl_profile_run fl_profile_run;
fl_status fl_profile_run_begin(fl_profile *p, fl_profile_run **out);
fl_status fl_profile_run_pass(fl_profile_run *r);
fl_status fl_profile_run_finish(fl_profile_run *r);
int fl_profile_run_passes(const fl_profile_run *r); /* passes taken so far */
void fl_profile_run_free(fl_profile_run *r);        /* NULL: nothing */

#endif
