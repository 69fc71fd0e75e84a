/*
 * fastlstm planner — choose a storage method (dense, SVD, CP) and rank for every weight matrix of a
 * model, from a profile of the machine (caches, bandwidth, flop rate), a roofline cost model of one
 * LSTM time step, and an accuracy budget checked on validation data.
 *
 * Same conventions as fastlstm.h: fl_status returns, out-parameters, opaque handles with *_free
 * accepting NULL, no printing. Times are seconds, bandwidths bytes/s, flop rates flop/s.
 */
#ifndef FASTLSTM_PLAN_H
#define FASTLSTM_PLAN_H

#include "fastlstm/fastlstm.h"
#include "fastlstm/train.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- machine profile */

#define FL_PROFILE_MAX_LEVELS 4
#define FL_PROFILE_ACT_POINTS 5 /* a session's activation cost: footprints measured (cost_act.c) */
#define FL_PROFILE_MAX_CURVE 64 /* the working-set ladder: 16 KiB to 512 MiB in steps of 2^(1/4) */
#define FL_PROFILE_GEMM_POINTS 4 /* matrix-product rates at 4, 16, 64 and 256 rows */
#define FL_PROFILE_LR_RANKS 5    /* the low-rank step's parts at ranks 16, 32, 64, 128, 256 */
#define FL_PROFILE_LR_ROWS 5     /* ... and at 1, 4, 16, 64, 256 rows */
#define FL_PROFILE_REREAD_POINTS 5 /* run_reread: after 1/4, 1/2, 1, 2, 4 last levels of traffic */
#define FL_PROFILE_SPEED_PER_PASS 16 /* speed samples a profile pass takes (fl_profile.speed_*) */
#define FL_PROFILE_SPEED_SLOW 1.15   /* a speed sample this many times the fastest or slower is slow */
#define FL_PROFILE_IH_WALKS 3    /* the input projection's output walks: 1, 2 and 4 x the first buffer */

/* One data (or unified) cache level. */
typedef struct fl_cache_level {
    int level;         /* 1, 2, 3, ... */
    size_t bytes;      /* capacity of one instance the planner uses: the measured effective capacity
                          (the knee of the streaming curve, see fl_profile_measure) when measured,
                          else the reported one */
    int shared_cpus;   /* logical CPUs sharing one instance (1: private) */
    double bandwidth;  /* matrix-vector streaming rate from this level, one thread; 0 unknown */
    size_t reported_bytes;  /* what the OS or CPUID reported for this level; 0: nothing reported */
    size_t all_cores_bytes; /* effective capacity seen by all cores streaming together (a private
                               level: about cores x bytes); 0: not measured */
    double all_cores_bandwidth; /* streaming rate of this level with fl_profile.curve_all_threads
                                   threads together, each on its own part (the all-cores curve
                                   where `bandwidth` was measured); 0: not measured */
} fl_cache_level;

/* What identifies the machine type a profile belongs to. A saved profile is only reused on a
 * machine with the same CPUID vendor, family, model, stepping, core count and kernel level; the
 * measured last-level capacity is part of the key as recorded (it needs a measurement to compare). */
typedef struct fl_machine_id {
    char vendor[16];   /* CPUID vendor string ("AuthenticAMD", "GenuineIntel"); "" unknown */
    int family, model, stepping; /* CPUID leaf 1, display family / model (extended fields added) */
    int cores;         /* online logical CPUs */
    char kernels[16];  /* kernel dispatch level in use: "ref", "avx2", "avx512" */
    size_t llc_bytes;  /* measured effective last-level capacity; 0: not measured */
} fl_machine_id;

typedef struct fl_profile {
    int cores;             /* online logical CPUs */
    int simd_bits;         /* widest float SIMD the CPU runs: 512, 256 or 128 */
    int n_levels;          /* data cache levels in level[], smallest first */
    fl_cache_level level[FL_PROFILE_MAX_LEVELS];
    double dram_bandwidth; /* matrix-vector streaming rate from memory, one thread */
    double dram_bandwidth_all; /* the same with curve_all_threads threads together, each on its own
                                  part (the memory plateau of the all-cores curve); 0: not measured
                                  (the cost model then assumes 1 + 0.75 (N - 1) times one thread's) */
    double gemm_flops;     /* single-thread sgemm rate (fl_gemm) on an in-cache problem */
    double gemv_flops;     /* single-thread matrix-vector rate of the recurrent step from L1 (its
                              product's slope in K: the cell update and fixed costs excluded) */
    double rec_rows_flops[FL_PROFILE_GEMM_POINTS];  /* recurrent step (dense, H = 256) flop rate at
                                                       batch 4, 16, 64, 256; all 0: B x gemv_flops
                                                       capped by gemm_flops */
    double gemm_rows_flops[FL_PROFILE_GEMM_POINTS]; /* dense input projection rate as a session runs
                                                       it (packed kernel, else fl_mat_apply) on n = 4,
                                                       16, 64, 256 rows (8 MiB of weights); all 0: use
                                                       gemm_flops */
    double step_overhead;  /* fixed cost per layer per time step (cell update, calls) */
    /* Speed of the SVD and CP kernels relative to dense, indexed by fl_method (entry 0 unused):
     * rec_efficiency scales the recurrent step's streaming and flop rates, gemm_efficiency the input
     * projection's GEMM rate. Measured at H = 1024, rank H/4 (see the _lo figures below); 0 means 1. */
    double rec_efficiency[3];
    double gemm_efficiency[3];
    /* The same efficiencies at batch (recurrent) or rows (GEMM) 4, 16, 64, 256: the model
     * interpolates in log rows between (1, rec_efficiency) and these points (GEMM: clamps below 4).
     * An entry 0 (older profiles): rec_efficiency / gemm_efficiency at every batch. */
    double rec_rows_efficiency[3][FL_PROFILE_GEMM_POINTS];
    double gemm_rows_efficiency[3][FL_PROFILE_GEMM_POINTS];
    /* The four figures above are measured at rank H/4 (H = 1024); these are the same four at rank
     * H/16, indexed by fl_method. At a small rank the step's fixed work (the rank-R projection, CP's
     * scaling, the cell's share) weighs more, so the kernels run further from the dense rates. The
     * cost model interpolates each efficiency linearly in log(R / H) between the H/16 and H/4 figures,
     * clamped outside them. rec_efficiency_lo[m] == 0 (older profiles, whose SVD figures were taken
     * at H/8): the figures above at every rank. */
    double rec_efficiency_lo[3];
    double gemm_efficiency_lo[3];
    double rec_rows_efficiency_lo[3][FL_PROFILE_GEMM_POINTS];
    double gemm_rows_efficiency_lo[3][FL_PROFILE_GEMM_POINTS];
    /* Seconds of the cell update (sigmoid / tanh of the four gates, c and h) per hidden unit per
     * batch row, one thread, at batch 16 (the kernel's row tiles); the flop and streaming rates above
     * exclude it. 0: not modelled. */
    double cell_seconds;
    /* The same at batch 1, which runs the kernel's own batch-1 loop (measured about equal). The cost
     * model takes it at batch 1 and interpolates linearly in log B to cell_seconds at 16 (that figure
     * above 16); the batch-1 measurements (the streaming ladder, the level rates, gemv_flops)
     * subtract it. 0 (profiles before it): cell_seconds at every batch. */
    double cell_seconds_b1;
    /* Seconds per output element of the separate bias pass after an SVD / CP input projection (and
     * a head): the runtime adds the biases to the T*B rows it wrote (a dense W_ih fuses them into
     * its GEMM). The runtime's pass timed alone over an output beyond the private caches
     * (bias_seconds, 4 MiB) and within 3/4 of the largest private level (bias_seconds_cached,
     * 512 KiB; 0: use bias_seconds). 0: not modelled. (Profiles before this took it as what a
     * session of rank-1 SVD matrices spent beyond the model's other terms, about 3x more.) */
    double bias_seconds;
    double bias_seconds_cached;
    /* Flop rate of the dense recurrent step at batch 16 on a W_hh beyond the last cache level
     * (streamed from memory), over rec_rows_flops at batch 16: the recurrent rate scales by it for
     * a W_hh that does not fit the last level. 0: 1. */
    double rec_memory_factor;
    /* Rates of the int8 and bf16 weight kernels (src/kernels/quant.h at the dispatched level; the
     * bf16 kernels of every level widen the weights to f32 by a shift and multiply in f32, so bf16
     * saves bytes, not flops; AVX2's int8 kernel has no VNNI), measured by fl_profile_measure and
     * indexed by fl_precision (the FL_PRECISION_F32 rows unused), one thread, cell update excluded:
     *   qrec_flops[q][k]: the recurrent step of a dense (4H, H) W_hh, H = 256 (in cache), at batch
     *     1, 4, 16, 64, 256 (k = 0..4);
     *   qgemm_flops[q][k]: the input projection (fl_mat_apply) of a (2048, 1024) matrix on 4, 16,
     *     64, 256 rows (k = 0..3).
     * All 0 for a precision (profiles written before these were measured): the cost model takes
     * the float32 rates for that precision's flops (the kernels do the same multiply-adds) and
     * only its bytes per weight (2 or 1 instead of 4) make it cheaper. */
    double qrec_flops[3][FL_PROFILE_GEMM_POINTS + 1];
    double qgemm_flops[3][FL_PROFILE_GEMM_POINTS];
    /* Streaming rate against working-set size, measured at fractions of each level and in DRAM
     * (ascending bytes). One thread only; 0 points (or threads > 1): the per-level rates are used. */
    int n_curve;
    size_t curve_bytes[FL_PROFILE_MAX_CURVE];
    double curve_bandwidth[FL_PROFILE_MAX_CURVE];
    /* The same ladder streamed by curve_all_threads threads at once (all cores together; 0 points:
     * not measured): the cost model uses it at that thread count. */
    int n_curve_all, curve_all_threads;
    size_t curve_all_bytes[FL_PROFILE_MAX_CURVE];
    double curve_all_bandwidth[FL_PROFILE_MAX_CURVE];
    /* The runtime's rule for using its threads (recorded by fl_profile_detect from the runtime): a
     * recurrent step is split only when its rows stream >= parallel_step_bytes of weights, a dense
     * input projection only from parallel_proj_macs multiply-adds, and other projections and the
     * head run single-threaded. Both 0 (a hand-made profile): every part scales with the threads.
     * An input projection of fewer than wake_proj_macs multiply-adds in all (its products together)
     * runs on one thread when its pool's workers sleep (fl_pool_run_if_awake), which the cost model
     * takes them to (0, older profiles: no such rule). */
    double parallel_step_bytes, parallel_proj_macs, wake_proj_macs;
    /* Measured speed-up of the parts the runtime splits, at curve_all_threads threads over one,
     * same code and shapes, a one-thread time and the N-thread time right after it, the median
     * of such ratios over passes spread over the profile run (profile_rates.c): thread_scale_rec[k] the dense recurrent step (H =
     * 256, W_hh in cache) at batch 4, 16, 64, 256, its cell update and fork / join (see cost.c)
     * excluded; thread_scale_proj[k] the split input projection (fl_rec_input, a (2048, 1024)
     * W_ih) on 4, 16, 64, 256 rows. The cost model scales a split part's flop rate by it (linear in
     * log rows, clamped to the table) instead of by the thread count: two virtual CPUs may share
     * one core's units. All 0 (older profiles, one core): the thread count. */
    double thread_scale_rec[FL_PROFILE_GEMM_POINTS];
    double thread_scale_proj[FL_PROFILE_GEMM_POINTS];
    /* thread_scale_proj is measured on a W_ih held by the last cache level (4 MiB); the same speed-up
     * on a (4096, 2048) W_ih of 32 MiB, streamed from memory. The cost model takes this table for a
     * dense W_ih beyond the usable share of the last level, thread_scale_proj for one within it.
     * All 0 (older profiles): thread_scale_proj for both. (Profiles before this measured
     * thread_scale_proj on an 8 MiB W_ih, at the knee of a VM's last level: one thread streamed it
     * from memory, two held their halves, and the speed-up read above 2.) */
    double thread_scale_proj_mem[FL_PROFILE_GEMM_POINTS];
    /* The split packed product's speed-up by its size (format 6, profile_rates.c): a (2048, 64) W_ih
     * (K 64, a rank's width) on 16, 64, 256, 1024 rows (2, 8, 32, 128 Mi multiply-adds:
     * fl_profile_pk_macs), each pass's figure the median of paired samples (a one-thread time and the
     * N-thread time right after it). The stages of an SVD / CP input projection are products of this
     * shape, far smaller than thread_scale_proj's (a 35-row stage 2 of 650 rank 81: 7.4 Mi, against 67
     * Mi at 16 rows there), and gain less when split (session 15: 1.37-1.44 hot, 2 x 650 at batch 1,
     * where that table gives 1.65-1.89). The cost model takes it for those stages (linear in log
     * multiply-adds, clamped to the table). All 0 (older profiles): thread_scale_proj as before.
     * (thread_scale_proj's point at 4 rows, 8 Mi multiply-adds, is below wake_proj_macs: it is timed
     * as the runtime runs such a projection from a sleeping pool, on the caller alone, ~1.) */
    double thread_scale_pk[FL_PROFILE_GEMM_POINTS];
    /* The runtime's own split step as a session runs it (profile_threads.c), at curve_all_threads
     * threads, on two dense layers (H 192, W_hh 576 KiB: split at batch 1) of batch-1 steps:
     * thread_sync_seconds, a split step's time beyond 1/N of one thread's, one layer's steps back to
     * back (the pool's fork / join and what the threads wait for each other); thread_switch_seconds,
     * the seconds of one thread's work at the start of each layer's run that the split does not
     * speed up, the two layers run in turn as a session runs them: each layer's step has its own
     * worker pool, whose workers spin a while after its last job, so the next layer's threads share
     * the CPUs with them. 0: not measured (older profiles: the sync read off the curves, no switch). */
    double thread_sync_seconds, thread_switch_seconds;
    /* Extra seconds per byte of input projections (gx) a recurrent step reads when its sequence's
     * projection buffer has left the last cache level, indexed by fl_method; [m][0] at rank H/16,
     * [m][1] at rank H/4 (dense: both the same). The session projects all T steps of a layer at
     * once into a (T B, 4H) buffer, then each step reads its B rows of it; once the buffer (with
     * the layer's input and output rows) outgrows the last level, those reads come from memory,
     * and the step kernels read gx in short runs per row and gate (at the cell update, after each
     * tile's products), too many streams for the prefetchers: each run waits on memory, well beyond
     * the bytes at DRAM rate. Measured at H = 1000, batch 16, one thread: the step with gx walking
     * a buffer far beyond the last level, less the step on one gx held in cache, per gx byte. The
     * cost model adds it to each f32 W_hh step (see cost.c). All 0 (older profiles): not modelled. */
    double cold_gx_seconds[3][2];
    /* The f32 SVD / CP step's parts as fl_rec_step runs them (profile_lowrank.c), one thread, at
     * rank lr_rank(j) = 16 << j (j < FL_PROFILE_LR_RANKS) and rows 1, 4, 16, 64, 256 (k), each
     * figure the median of its samples and passes:
     *   lr_proj_seconds[j][k]: the proj kernel (t = V h; CP's z = C^T h) per input element and row,
     *     K = 1024 inputs, R = lr_rank(j) outputs (V of 64 KiB to 1 MiB: in L2);
     *   lr_panel_seconds[m][j][k]: the gate panel of method m (gate_cell over U, cp_gate_cell over
     *     CP's B and scaling zs) at K = lr_rank(j), its cell update included, per hidden unit and
     *     row, H = 256 (U of 64 KiB to 1 MiB);
     *   gx_copy_seconds: seconds per byte of the copy of a step's gx rows (B > 1) from a buffer in
     *     the last level (4 x the largest private level, at most a quarter of the last).
     * The cost model prices an f32 SVD / CP step from them and the streaming curve (cost_lowrank.c).
     * All 0 (profiles before format 3): the step is priced by the efficiencies above.
     * Format 5: the panels at rows > 1 write h walking a buffer beyond the private level (a
     * session's output rows), and the same three kernels are timed again with their weights read
     * from beyond the private level (each call a different copy of them: a step whose weights do
     * not fit that level), lr_proj_far_seconds and lr_panel_far_seconds, same units. All 0
     * (profiles before format 5): the step is priced from the near tables alone. */
    double lr_proj_seconds[FL_PROFILE_LR_RANKS][FL_PROFILE_LR_ROWS];
    double lr_panel_seconds[3][FL_PROFILE_LR_RANKS][FL_PROFILE_LR_ROWS];
    double gx_copy_seconds;
    double lr_proj_far_seconds[FL_PROFILE_LR_RANKS][FL_PROFILE_LR_ROWS];
    double lr_panel_far_seconds[3][FL_PROFILE_LR_RANKS][FL_PROFILE_LR_ROWS];
    /* The f32 SVD / CP input projection's two stages as fl_rec_input_ws runs them (gemm_pk over
     * 64-column panels of packed weights; profile_lowrank.c), one thread, same grid (j, k), per
     * 64-column panel of the product's outputs (partly empty panels count whole: the kernel computes
     * them whole):
     *   lr_ih_in_seconds[j][k]: stage 1 (SVD's t = x V^T, CP's z = x C: lr_rank(j) outputs, K = 1024
     *     inputs) per row, input element and panel;
     *   lr_ih_out_seconds[m][j][k]: stage 2 of method m at K = lr_rank(j) (SVD: gx = t U^T + b, one
     *     product of 1000 outputs; CP: gx[:, gate] = zs[:, gate] B^T + b[gate], four of 250 at x row
     *     stride 4 K), bias fused, per row and panel, the output written walking a buffer beyond the
     *     private cache level as a sequence's gx is.
     * The cost model prices an f32 SVD / CP W_ih stage by stage from them (cost_lowrank_ih.c). All 0
     * (profiles before format 4): such a W_ih is priced by the GEMM rate and the efficiencies. */
    double lr_ih_in_seconds[FL_PROFILE_LR_RANKS][FL_PROFILE_LR_ROWS];
    double lr_ih_out_seconds[3][FL_PROFILE_LR_RANKS][FL_PROFILE_LR_ROWS];
    /* The fraction of a matrix read once per run that the next run finds in memory, after k of the
     * last level's usable shares of other traffic (a W_hh streamed over and over, as a session's
     * steps do between two runs' reads of a W_ih), k = 1/4, 1/2, 1, 2, 4 (profile_reread.c); 0 hot,
     * 1 as from memory. The cost model charges each run's first read of its weights by it
     * (cost_run.c). All 0 (older profiles, or a last level no faster than memory): no such term. */
    double run_reread[FL_PROFILE_REREAD_POINTS];
    /* Stage 2's output beyond what the last level keeps (format 5, profile_lowrank.c): SVD stage 2 at
     * rank 64, 64 rows of IH_WIDE outputs (a sequence's gx rows are that wide), per row and panel,
     * its output walking lr_ih_walk_bytes[i] (4 x the largest private level, then twice and four
     * times that). The cost model adds lr_ih_walk_seconds[i] less [0], interpolated at the
     * projection's bytes (input rows, gx and weights), to stage 2's table figure. All 0 (profiles
     * before format 5): not priced. */
    double lr_ih_walk_bytes[FL_PROFILE_IH_WALKS];
    double lr_ih_walk_seconds[FL_PROFILE_IH_WALKS];
    /* The dense step as rec_rows_flops and thread_scale_rec measure it, with its W_hh beyond the
     * private level: rec_far_bytes of W_hh (4 x the largest private level, at most a quarter of the
     * last, at least 1 MiB; none where that quarter is under 4x the private level: profile_rates.c),
     * from the last level. The cost model takes the dense step's rate from
     * these where a thread's share of W_hh is beyond the private level (cost.c). All 0 (profiles
     * before format 5): the H 256 figures for every W_hh. */
    double rec_far_bytes;
    double rec_rows_flops_far[FL_PROFILE_GEMM_POINTS];
    double thread_scale_rec_far[FL_PROFILE_GEMM_POINTS];
    /* The machine's speed while this profile was measured (format 7, profile_speed.c): a fixed
     * product in L2 (the packed product, 64 x 256 x 256, one thread, the median of 3 calls), timed
     * FL_PROFILE_SPEED_PER_PASS times in every pass, half before its figures and half after:
     * speed_fastest, speed_median and speed_p90 its seconds (fastest, median, 90th percentile);
     * speed_slow the share of the samples at FL_PROFILE_SPEED_SLOW x the fastest or slower;
     * speed_samples their count. A VM whose neighbours slow it in spells runs at two speeds (the
     * 2-vCPU Xeon of sessions 11-16: 1.35-2x apart, in spells of milliseconds to tens of seconds);
     * every figure is then typical of its passes' mix of the two, and a timing at another moment
     * may read up to speed_p90 / speed_fastest off either way. All 0: not measured (older
     * profiles, kernels without the packed product). */
    double speed_fastest, speed_median, speed_p90, speed_slow;
    int speed_samples;
    /* What a session's activations cost once its buffers outgrow the caches (format 8, cost_act.c):
     * act_bytes[k] the buffers of a whole session run (input and its packed copy, one layer's gx, two
     * layers' outputs, y: fl_act_footprint), rising; act_seconds[k] the extra seconds per byte of
     * the run's activation traffic per step (fl_act_traffic) at that footprint, over the smallest
     * point's, >= 0 (act_seconds[0] = 0). Measured on whole sessions of a small-rank model at
     * lengths from 4 to 192, paired round by round with the shortest. All 0: not measured. */
    double act_bytes[FL_PROFILE_ACT_POINTS], act_seconds[FL_PROFILE_ACT_POINTS];
    char cache_source[16]; /* where the reported capacities came from: "sysfs", "cpuid", "sysconf",
                              "default" */
    fl_machine_id id;      /* the machine this profile describes */
    int measured;          /* 1 when the rates were measured on this machine */
} fl_profile;

/* Cache topology and core count as reported: /sys (fallback CPUID leaf 0x8000001D or 4, then glibc's
 * sysconf, then defaults: 32 KiB L1, 1 MiB L2, 8 MiB L3), SIMD width and the machine identity from
 * CPUID. Reported sizes can be wrong on virtual machines (sysconf reporting a 508 MiB L3 for a
 * 32 MiB one); fl_profile_measure replaces them with measured capacities. Rates get conservative
 * defaults and measured = 0. */
FL_API fl_status fl_profile_detect(fl_profile *out);

/* Identity of the machine this runs on (CPUID, cores, kernel level; llc_bytes 0). */
FL_API fl_status fl_machine_id_detect(fl_machine_id *out);

/* Whether profile p may be used on the machine `here`: FL_OK when vendor, family, model, stepping,
 * cores and kernel level all match; FL_ERR_UNSUPPORTED otherwise (a profile with no identity
 * included), fl_last_error() naming both machines and saying how to measure this one
 * (`fastlstm profile --refresh`). */
FL_API fl_status fl_profile_check_machine(const fl_profile *p, const fl_machine_id *here);

/* Measure the rates of p (detected first) on this machine, one thread, medians of repeats, a few
 * seconds. Cache capacities come from measurement: the runtime's recurrent step streams W_hh over a
 * ladder of working sets (16 KiB to 256 MiB, steps of 2^(1/4)) with one thread and with two, and
 * each level's effective capacity is the knee of that curve (fl_profile_find_levels); the
 * measured capacities replace the reported ones (kept in reported_bytes). Then: sgemm and input-projection GEMM rates, the runtime's recurrent step streaming from every
 * cache level and DRAM (and a curve over working-set sizes), the fixed cost of a step, the cell
 * update per unit, the bias pass after a non-dense input projection, and the speed of the SVD and
 * CP kernels relative to dense at batch 1 to 256, and the rates of the int8 and bf16 kernels
 * (qrec_flops, qgemm_flops). Sets OpenBLAS to one thread while measuring
 * and restores its thread count after. */
FL_API fl_status fl_profile_measure(fl_profile *p);

/* Save / load a profile as JSON. Load validates every field (FL_ERR_FORMAT naming the field). */
FL_API fl_status fl_profile_save(const fl_profile *p, const char *path);
FL_API fl_status fl_profile_load(const char *path, fl_profile *out);

/* Default profile path: $XDG_CACHE_HOME/fastlstm/profile.json or ~/.cache/fastlstm/profile.json.
 * FL_ERR_ARG when it does not fit in n bytes or no home is known. */
FL_API fl_status fl_profile_default_path(char *buf, size_t n);

/* Bytes of p's private level (the largest level below the last that no two cores share; the first
 * level when there is none) that the cost model counts as a core's own: the larger of its measured
 * knee and its reported size, the reported one only up to 8x the knee. The knee is read off the
 * dense step's streaming curve, whose own speed can fall before the cache ends (docs/planner.md,
 * "Session 21"); it prices the dense step, this size the low-rank step that fits and the profile's
 * buffers meant to lie beyond the level. 0 for NULL or a profile without levels. */
FL_API double fl_profile_private_bytes(const fl_profile *p);

/* Pose as another machine. Any value <= 0 keeps p's own. cache_bytes becomes the capacity of the
 * last level (levels at least as large are dropped); bandwidth is the DRAM rate; cache_bandwidth the
 * rate of the last level (when 0 and the last level has none, 3 x the DRAM rate); flops sets all
 * f32 flop rates and clears the int8 / bf16 ones (which then follow the f32 rates). Any memory override drops the measured bandwidth curve. FL_ERR_ARG for NaN. */
FL_API fl_status fl_profile_override(fl_profile *p, double cache_bytes, double bandwidth,
                                     double cache_bandwidth, double flops);

/* ---------------------------------------------------------------- cost model */

typedef enum fl_regime {
    FL_REGIME_COMPUTE = 0, /* the per-step weights fit the last-level cache: minimise flops */
    FL_REGIME_MEMORY = 1,  /* they do not: minimise parameters (bytes streamed per step) */
} fl_regime;

/* Predicted cost of one time step of `batch` sequences of length `seq` (see plan.c for the model):
 * each step streams every W_hh (flops at `batch` rows); the input projections W_ih and a per-step
 * head run as one GEMM over seq * batch rows, so their bytes count 1/seq per step; a last-step head
 * counts 1/seq of its bytes and flops. */
typedef struct fl_cost {
    size_t params;          /* stored parameters of all weight matrices */
    double step_bytes;      /* weight bytes streamed per step (W_hh + amortised W_ih, head) */
    double step_flops;      /* flops per step (all matrices at their batch) */
    size_t working_set;     /* bytes of the largest layer's W_hh (layers run one after another, so
                               each W_hh is a working set of its own) */
    int level;              /* index in profile level[] the working set fits, -1: DRAM */
    double bandwidth;       /* rate used for that W_hh */
    double mem_seconds;     /* sum of bytes / bandwidth terms */
    double compute_seconds; /* sum of flops / rate terms */
    double seconds;         /* predicted latency per step: per-part max(memory, compute) + cell
                                update + bias pass + overhead */
    fl_regime regime;       /* MEMORY iff the last level does not hold working_set (fl_cost_fit) */
    int threads;            /* the thread count predicted for */
} fl_cost;

/* Cost of model architecture a with matrices stored as specs (fl_model_num_matrices entries, NULL:
 * all dense) under profile p, threads >= 1. FL_ERR_ARG for bad sizes or specs. */
FL_API fl_status fl_cost_predict(const fl_profile *p, const fl_arch *a, const fl_mat_spec *specs,
                                 int batch, int seq, int threads, fl_cost *out);

/* Whether the last cache level holds a working set, and how that was decided (fl_cost_fit). */
typedef struct fl_fit {
    int fits;          /* 1: the last level holds the bytes (compute-bound regime for a W_hh) */
    int by_curve;      /* 1: read off the measured streaming curve of this thread count; 0: the
                          bytes against the usable share of the last level's capacity */
    double curve_bytes; /* by_curve: the working set read on the curve, bytes / the usable share of a
                           cache (fl_tuning.cache_fit_fraction) */
    double rate;       /* by_curve: the curve's rate at curve_bytes (bytes / s) */
    double cache_rate; /* the last level's streaming rate at this thread count */
    double dram_rate;  /* DRAM's */
    double capacity;   /* the usable capacity (cache_fit_fraction of the last level; a private level
                          once per thread) that the capacity rule compares with */
} fl_fit;

/* Does the last level of p hold `bytes` streamed by `threads` threads? With a measured curve for
 * that thread count (the one-thread curve, or the all-cores one at curve_all_threads) the curve
 * decides: the bytes fit when the curve streams a working set of bytes / cache_fit_fraction (the bytes
 * plus the share of the cache that activations and other data take, as the capacity rule keeps)
 * nearer the last level's own rate than DRAM's, i.e. above the geometric mean of the two. This
 * reads the fit off the curve where it happens instead of through the knee, which moves with single
 * noisy points and co-tenants (on the 2-vCPU VM a 5.8 MB knee once called a 6.8 MB W_hh
 * memory-bound that the same curve streamed at 91% of the L3 rate). Without such a curve (a
 * reported or posed profile), or when the two rates are not 1.25x apart, the bytes fit within
 * `capacity`. FL_ERR_ARG for NULL, bytes < 0 or threads < 1. */
FL_API fl_status fl_cost_fit(const fl_profile *p, double bytes, int threads, fl_fit *out);

/* The roofline terms of one weight matrix per time step: which of its two bounds dominates. */
typedef struct fl_cost_term {
    double bytes, flops;      /* per step (amortised over the sequence for W_ih and a head) */
    double mem_seconds;       /* bytes / the rate of the level they stream from */
    double compute_seconds;   /* flops / the flop rate at this batch (kernel efficiency included) */
    int level;                /* index in profile level[] the bytes stream from; -1: DRAM */
    int threads;              /* threads the runtime runs it on (1 when too small to split) */
    int compute_bound;        /* 1: compute_seconds >= mem_seconds */
    double seconds;           /* what the matrix adds to the step: max(mem, compute), or for an f32
                                 SVD / CP W_hh priced by parts (cost_lowrank.c) the sum of its parts'
                                 rooflines, its cell update and gx copy included */
    double cell_seconds;      /* a W_hh's cell update, priced apart from `seconds` (0: inside it) */
} fl_cost_term;

/* fl_cost_predict, and the terms of every matrix into terms[fl_model_num_matrices] (may be NULL). */
FL_API fl_status fl_cost_predict_terms(const fl_profile *p, const fl_arch *a, const fl_mat_spec *specs,
                                       int batch, int seq, int threads, fl_cost *out, fl_cost_term *terms);

/* fl_cost_predict_terms with matrix i's factors stored in precisions[i] (NULL: all f32): its memory
 * term streams 4, 2 or 1 bytes per weight (CP factors stay f32, 4), its compute term runs at the
 * profile's measured int8 / bf16 rates (qrec_flops, qgemm_flops; without them the f32 rates), and a
 * quantized W_hh step, W_ih or head runs on one thread (as the runtime runs them). */
FL_API fl_status fl_cost_predict_prec(const fl_profile *p, const fl_arch *a, const fl_mat_spec *specs,
                                      const fl_precision *precisions, int batch, int seq, int threads, fl_cost *out,
                                      fl_cost_term *terms);

/* fl_cost_predict_prec with layer l's parts (its W_ih and W_hh steps, cell update) on
 * layer_threads[l] threads (fl_arch.layers entries, each >= 1), as a session runs a model with
 * planned per-layer counts; a head and the regime take the most of them (out->threads). */
FL_API fl_status fl_cost_predict_layers(const fl_profile *p, const fl_arch *a, const fl_mat_spec *specs,
                                        const fl_precision *precisions, int batch, int seq,
                                        const int *layer_threads, fl_cost *out, fl_cost_term *terms);

/* ---------------------------------------------------------------- planner */

/* Validation data (all borrowed for the call). Exactly one of x / tokens, matching the model:
 *   x: (n, seq, dim) features with dim == input, or tokens: (n, seq) ids in [0, vocab).
 *   labels: (n_labels == n) class ids in [0, head_out) for a last-step classifier; NULL uses the
 *   dense model's own predictions. A language model (embedding + per-step head) predicts
 *   tokens[:, t+1] from tokens[:, :t+1] and needs seq >= 2; it takes no labels. Other models are
 *   judged by the deviation metric on the data. */
typedef struct fl_plan_data {
    int n, seq, dim;
    const float *x;
    const int32_t *tokens;
    const int32_t *labels;
    int n_labels;
    /* Appended fields. lengths: (n) valid length of each sequence in [1, seq], or NULL (every row
     * full); sequences (not a language model's stream) are then run with them (fl_run_io.lengths:
     * a last-step head reads each sequence's last valid step), as `fastlstm eval` reads them.
     * left_padded: 1 when the valid steps are the last `lengths[i]` of each row (labelled text, see
     * fl_dataset_lengths), 0 when they are the first (pack_padded_sequence's layout). */
    const int32_t *lengths;
    int left_padded;
} fl_plan_data;

typedef enum fl_plan_metric {
    FL_METRIC_DEVIATION = 0,  /* ||y - y_dense|| / ||y_dense||; budget: max_dev */
    FL_METRIC_ACCURACY = 1,   /* classifier accuracy (%); budget: points lost, max_loss */
    FL_METRIC_PERPLEXITY = 2, /* language model perplexity; budget: relative increase, max_loss */
} fl_plan_metric;

typedef void (*fl_plan_progress)(void *ctx, const char *message);

/* Accuracy data and certification.
 *
 * The search steers by one part of the validation data; the budget is certified on data the search
 * never saw: `certify` when given, else the last `certify_fraction` (default 0.5) of the validation
 * data, split by fl_dataset_split's rule (classification: a permutation seeded by `seed`; a language
 * model's token stream: its tail, so both parts read as text). A candidate is certified when the
 * one-sided upper confidence bound (level `confidence`, default 0.9) of its paired loss on that data
 * is within the budget: classification, the mean of the per-sequence differences (dense correct -
 * plan correct) in points plus z * its standard error; language model, the per-token log-loss
 * difference (plan - dense) averaged over blocks of 35 tokens, bound exp(mean + z * se) - 1 on the
 * relative perplexity. A language model is judged as `fastlstm eval` reads text: one stream, the
 * state carried across windows. The chosen plan is the fastest candidate meeting the budget on the
 * search data whose bound certifies; failing ones are passed over for the next (at most
 * `certify_tries`), and when none certifies the plan is the input model itself (certified = 0).
 * certify_fraction 0 without certify data: no certification (the loss is then the search data's).
 * The deviation metric (models without a classifier or LM head) is not certified.
 *
 * Fine-tuning (`finetune` set): each candidate is judged after a short fine-tune of its factors
 * on that training data (`finetune_probe` of an epoch each, default chosen so the whole search costs
 * about one and a half full fine-tunes: at most 24 evaluations), the chosen plan is fine-tuned for
 * `finetune_epochs` (default 1) with `train` (NULL: fl_train_opts_default() with lr
 * FL_PLAN_FINETUNE_LR; each fine-tune warms its rate up linearly over its first tenth of steps, at
 * most 50), and certified after
 * (at most 2 candidates are put to certification then, each fine-tuned fully, so the whole stays
 * near 3 full fine-tunes). The plan's model is then the fine-tuned one. */
/* Default learning rate of the planner's fine-tuning (Adam, fresh state): a tenth of training's
 * 1e-3. The model fine-tuned is a converged one with a few matrices replaced by their truncation;
 * restarting Adam at the training rate on it first throws the converged weights off (Fashion-MNIST,
 * hidden 128: the unchanged dense model lost 0.4 accuracy points after the search's short probe
 * at 1e-3 and no candidate certified; at 1e-4 W_hh SVD 64 certified). */
#define FL_PLAN_FINETUNE_LR 1e-4

typedef struct fl_plan_opts {
    int batch, seq, threads;   /* serving shape the latency is planned for (default 1, 35, 1);
                                  threads 0: plan the thread count too (1 to max_threads, the
                                  fastest predicted, then the fastest measured when verifying);
                                  the chosen model records it (a session with threads 0 uses it) */
    int max_threads;           /* with threads 0: the most threads tried (default 0: the profile's
                                  logical CPUs) */
    const fl_plan_data *data;  /* validation data, or NULL: random inputs and the deviation metric */
    const fl_dataset *dataset; /* validation data as a data set (instead of data); borrowed */
    const fl_dataset *certify; /* data to certify on (then the validation data is not split) */
    double certify_fraction;   /* default 0.5 */
    double confidence;         /* one-sided level of the bound, in (0.5, 1); default 0.9 */
    int certify_tries;         /* candidates tried for certification (default 4) */
    const fl_dataset *finetune;      /* training data for fine-tuning, or NULL */
    const fl_train_opts *train;      /* fine-tuning options, or NULL */
    int finetune_epochs;             /* default 1 */
    double finetune_probe;           /* epochs of fine-tuning per candidate; 0: automatic */
    double max_loss;           /* budget with data: classifier accuracy points lost (default 1.0),
                                  LM relative perplexity increase (default 0.05), or for other models
                                  the deviation on the data (default max_dev); NaN: default. < 0 or
                                  set without data: FL_ERR_ARG */
    double max_dev;            /* budget of the deviation metric (default 0.05) */
    int dev_samples;           /* random sequences for the deviation metric (default 16) */
    int allow_cp;              /* try CP for gate matrices in the memory-bound regime (default 1) */
    int cp_max_iter;           /* CP-ALS sweep cap during the search (default 40) */
    int max_evals;             /* cap on model evaluations (default 200) */
    int verify;                /* time this many best candidates + dense for real (default 3; 0 off) */
    int verify_reps;           /* timed runs per candidate, one a round, the candidates interleaved
                                * round by round; the median (default 5) */
    uint64_t seed;
    fl_plan_progress progress; /* optional progress messages (long searches) */
    void *progress_ctx;
    unsigned precisions;       /* precisions the search may store a matrix in, as bits
                                  (1u << FL_PRECISION_F32 | 1u << FL_PRECISION_INT8 ...), besides the
                                  one it has in the input model; a matrix only moves to fewer bytes
                                  per weight (f32 -> bf16 -> int8; CP factors stay f32). Default 0:
                                  every matrix keeps the input model's precision (the planner of
                                  before, with f32 models staying f32). Bits above INT8: FL_ERR_ARG.
                                  Last in the struct: bindings lay it out by position */
} fl_plan_opts;

FL_API fl_plan_opts fl_plan_opts_default(void);

/* One configuration the search evaluated: matrix i stored as specs[i] in precisions[i]. */
typedef struct fl_plan_point {
    const fl_mat_spec *specs; /* fl_model_num_matrices entries; owned by the plan */
    fl_cost cost;             /* predicted */
    double measured_seconds;  /* per step, < 0 when not timed */
    double metric;            /* accuracy %, perplexity or deviation */
    double loss;              /* what the budget bounds: points lost, relative ppl increase, deviation */
    int meets_budget;
    int pareto;               /* on the front of predicted latency vs loss */
    int certified;            /* 1: its bound is within the budget; 0: it is not; -1: not certified */
    double cert_metric;       /* on the certify data (NaN when not certified) */
    double cert_loss, cert_se, cert_bound; /* paired loss, its standard error, the upper bound */
    const fl_precision *precisions; /* fl_model_num_matrices entries (CP: always F32); owned by the
                                       plan. Its accuracy was judged on the model quantized so,
                                       run by the int8 / bf16 kernels */
} fl_plan_point;

/* Certification of the chosen plan (see fl_plan_opts). */
typedef struct fl_plan_certificate {
    int available;        /* 0: not certified (deviation metric or certify_fraction 0) */
    int certified;        /* 1: the chosen plan's bound is within the budget; 0: no candidate's was */
    double confidence, z; /* level and its one-sided normal quantile */
    size_t count;         /* sequences (classifier) or scored tokens (LM) certified on */
    size_t search_count;  /* sequences or tokens the search was steered by */
    double dense_metric;  /* the input model's metric on the certify data */
    int tried;            /* candidates put to certification */
    int finetuned;        /* 1 when candidates were judged after fine-tuning */
    double finetune_seconds, search_seconds; /* wall time of the final fine-tune(s), of the search */
} fl_plan_certificate;

typedef struct fl_plan fl_plan;

/* Search for the fastest configuration of m that keeps the budget; see plan.c. m is only read.
 * Errors: FL_ERR_ARG (negative budget, bad options), FL_ERR_SHAPE (data shape not matching the
 * model), FL_ERR_DATA (empty data, labels or tokens out of range), FL_ERR_NONFINITE, plus those of
 * decomposition and sessions. The caller owns *out (fl_plan_free). */
FL_API fl_status fl_plan_create(const fl_model *m, const fl_profile *p, const fl_plan_opts *opts,
                                fl_plan **out);
FL_API void fl_plan_free(fl_plan *plan);

FL_API fl_plan_metric fl_plan_metric_kind(const fl_plan *plan);
FL_API double fl_plan_budget(const fl_plan *plan);
FL_API size_t fl_plan_num_points(const fl_plan *plan);   /* point 0 is the input model */
FL_API const fl_plan_point *fl_plan_point_at(const fl_plan *plan, size_t i);
FL_API size_t fl_plan_chosen(const fl_plan *plan);       /* index of the chosen point */
/* Why matrix i got its method, rank and precision (static or plan-owned text). */
FL_API const char *fl_plan_reason(const fl_plan *plan, size_t i);
/* The chosen model (owned by the plan, valid while it lives). */
FL_API const fl_model *fl_plan_model(const fl_plan *plan);
/* Threads the chosen model is planned to run on (opts.threads, or the most any layer's planned count). */
FL_API int fl_plan_threads(const fl_plan *plan);
/* Threads planned for layer `layer`'s steps (opts.threads when given; recorded in the chosen model,
 * fl_model_planned_threads); 0 for a layer out of range. */
FL_API int fl_plan_layer_threads(const fl_plan *plan, int layer);
/* The regime the plan found (that of the dense model at the serving shape). */
FL_API fl_regime fl_plan_regime(const fl_plan *plan);

/* Which evaluated configuration meeting the budget is fastest at another serving batch (same
 * sequence length; threads as the plan's options: given, or planned): its index in *point, its
 * predicted cost (threads included) in *cost. Predicted only: nothing is evaluated or timed again.
 * FL_ERR_ARG for batch < 1; FL_ERR_DATA when no evaluated configuration meets the budget. */
FL_API fl_status fl_plan_choice_at_batch(const fl_plan *plan, int batch, size_t *point, fl_cost *cost);
/* The certification of the chosen plan (owned by the plan). */
FL_API const fl_plan_certificate *fl_plan_certificate_of(const fl_plan *plan);

#ifdef __cplusplus
}
#endif
#endif /* FASTLSTM_PLAN_H */
