/* Roofline cost model of one LSTM time step.
 *
 * A level holds a working set up to 3/4 of its capacity. With N threads, a private cache level
 * (shared_cpus == 1) offers N times its capacity and rate; a shared level and DRAM keep their
 * capacity, and at N = curve_all_threads threads stream at the measured all-cores curve (N = 1: the
 * one-thread curve). Without a curve for N they stream at the rate measured with curve_all_threads
 * threads together (all_cores_bandwidth, dram_bandwidth_all; linear in N below that count, held
 * above it), and in a profile without those at 1 + 0.75 (N - 1) times one thread's rate. The flop
 * rate of a part the runtime splits across N threads scales by the profile's measured speed-up at that batch or row
 * count (thread_scale_rec for the step, thread_scale_proj for a dense projection whose W_ih fits
 * the usable share of the last level, thread_scale_proj_mem for one beyond it, measured at
 * curve_all_threads threads: two virtual CPUs may share one core's units), else by N; a measured
 * figure above N is held at N, and a projection of >= PROJ_COMPUTE_ROWS rows (compute-bound
 * wherever W lives) takes the larger of the two projection figures.
 * The recurrent step's flop rate at B rows, rate_r(B), interpolates (1, gemv_flops) and the measured
 * rec_rows_flops (at 4, 16, 64, 256 rows) linearly in log B; without those measurements it is
 * min(gemm_flops, B * gemv_flops); a dense W_hh of which a thread streams more than the largest
 * private level holds takes the profile's far figures (rec_rate; format 5). The input
 * projections' GEMM rate at n rows, rate_a(n), interpolates the measured gemm_rows_flops (at 4, 16,
 * 64, 256 rows) linearly in log n, is rate_a(4) * n / 4 below 4 rows and rate_a(256) above 256;
 * without those measurements rate_a = rate_r.
 *
 * Per time step, for `batch` = B sequences of length `seq` = T:
 *   recurrent part: every step streams W_hh of all layers. The runtime runs layer by layer (all T
 *     steps of layer l, then layer l+1), so each W_hh_l is its own working set:
 *     bytes_l = b params(W_hh_l) (b bytes per weight: 4 f32, 2 bf16, 1 int8),  flops_l = B flops(W_hh_l),  bw_l = rate of the smallest level
 *     holding bytes_l (else DRAM), or with one thread and a measured curve, the curve at bytes_l.
 *     t_r = sum_l max(bytes_l / bw_l, flops_l / rate_r(B))
 *   amortised part: the runtime computes the input projections (and a per-step head) for all T
 *     steps as one GEMM of T*B rows, so their weights stream once per sequence. For each such W:
 *     bytes_W = b params(W) / T,  flops_W = B flops(W) (W_ih, per-step head) or B flops(W) / T
 *     (last-step head); bw_a = rate of the level holding all weights (4 x all params).
 *     t_a = sum_W max(bytes_W / bw_a, flops_W / rate_a(n_W)), n_W = T B rows (W_ih, per-step
 *     head) or B rows (a last-step head runs once per sequence, on the last states only)
 *   an f32 SVD / CP W_hh, where the profile has the low-rank step's parts (fl_profile.lr_*, format
 *     3), is priced by those parts instead (cost_lowrank.c: its rank-R projection, its gate panel
 *     with the cell update fused, its gx copy, each from the kernels' own timings on a grid of
 *     ranks and rows and the streaming curve), on one thread, split by blocks or by rows as below;
 *     its t_r is that price and it adds nothing to t_c. An f32 SVD / CP W_ih, where the profile
 *     has the input projection's stages (fl_profile.lr_ih_*, format 4), is likewise priced by its
 *     two products (cost_lowrank_ih.c: each a roofline of gemm_pk's own time per 64-column panel
 *     at the rank and rows, stage 2's with its output written beyond the private level, on the
 *     threads the runtime's rule gives each product), per sequence, over T: its t_a term, without
 *     the efficiencies. Otherwise (older profiles, and every other W_ih / head):
 *   SVD and CP matrices scale those rates by the profile's measured kernel efficiencies, taken at
 *     the batch (recurrent: e_r(B), linear in log B through (1, rec_efficiency) and the measured
 *     rec_rows_efficiency at 4, 16, 64, 256) or rows (GEMM: e_a(n) through gemm_rows_efficiency,
 *     clamped outside 4..256 rows); a missing point falls back to the batch-1 / 64-row figure.
 *     Those figures are measured at rank H/4 and, in newer profiles, at H/16 too (the _lo
 *     fields), H = FL_PROFILE_EFF_HIDDEN: e_a at rank R is linear in log(R / H) between the two,
 *     e_r linear in log(params(W_hh)) between the two measured W_hh's (size_weight), both clamped
 *     outside them; e_r at most 1 (method_efficiency: why).
 *   A W_hh held by no cache level scales rate_r by the profile's rec_memory_factor (the product
 *     streams its operand from memory, so it runs below the in-cache rate even when compute-bound).
 *   cell update: t_c = sum over layers of B * H * cell(B) / N_l (exp and tanh per hidden unit
 *     and row, outside the roofline: the profile's rates are measured with it subtracted; N_l the
 *     threads layer l's step runs on). cell(B) = fl_cost_cell_seconds: the batch-1 figure at 1,
 *     linear in log B to the batch-16 one at 16, that one above.
 *   int8 / bf16 matrices (fl_cost_predict_prec): b = 1 or 2 bytes per weight in every memory term;
 *     the compute terms use the profile's measured rates of the quant kernels (qrec_flops at the
 *     batch, qgemm_flops at the rows, same interpolation), without the f32 SVD / CP efficiencies
 *     (a quantized SVD is two products of the same kernel); a profile without them uses the f32
 *     rates. The runtime runs a quantized step and projection on one thread, and so does the model.
 *   threads: each layer's parts run on that layer's count N (fl_cost_predict_layers; else all on
 *     the one count given), the head on the top layer's.
 *   threads N > 1: a W_hh step is split across the threads only when B rows stream >=
 *     parallel_step_bytes of weights (the runtime's own rule, in the profile); then its streaming rate is the all-cores curve at that
 *     working set (which includes the fork / join), its flop rate the scaled one above plus the fork /
 *     join cost (fl_cost_thread_sync: the profile's thread_sync_seconds, timed on the runtime's own
 *     split of a small step, else read off the curves), and its cell update is split too. Of an
 *     SVD / CP step only the gate panel (U, or B) is split: every thread first computes the whole
 *     rank-R projection of h_prev (V h; C^T h and a o z: K R (+ 4 R) weights, 2 K R (+ 4 R) flops a
 *     row), PROJ_ROWS = 3 rows at a time (the AVX2 proj kernel's row tile): t_p = max(ceil(B / 3)
 *     V's bytes / bw_1(V's bytes), B V's flops / rate_r(min(B, 3), 1)),
 *     at most the one-thread step's time t_1; the rest of t_1 splits as the whole step would:
 *     t_l = t_p + max(s bytes / bw_N, s flops / rate_r(B, N) + sync), s = 1 - t_p / t_1; a smaller
 *     step runs on one thread at one thread's rates. By rows instead (the runtime's FL_STEP_AUTO rule,
 *     fl_rows_auto in tuning_consts.h: B >= 2 N rows, f32 SVD / CP W_hh <= 8 MiB (dense: B >= 32 N, <= 1 MiB), W_hh x B >=
 *     the parallel bytes; not LSTMP nor int8 / bf16): each thread runs one thread's step on its r = ceil(B / N)
 *     rows with the whole W_hh, no sync per step: t_l = max(N bytes / bw_N(ws), r flops(W_hh)
 *     / rate_r(r, 1)) (bw_N of N threads streaming W_hh each, ws = bytes where a shared level holds
 *     that one copy, else N bytes: one copy per core's private level; e and rec_memory_factor at r rows;
 *     an SVD / CP thread projects its own rows only, no whole-batch projection), its cell update
 *     r H cell(r) and gx N-way split. A dense W_ih or dense head of >=
 *     parallel_proj_macs multiply-adds is split (fl_rec_input, fl_head_apply: both packed; a W_ih of
 *     fewer than wake_proj_macs in all is not, its pool's workers asleep by then); an f32
 *     SVD W_ih runs packed too, as two products (n R in, then n 4H R multiply-adds), and an f32 CP
 *     W_ih as five (n R in, then n H R per gate; session 11, before on BLAS), each split by the same
 *     rule: its rate is the stages' flops over the sum of their times at their thread counts (a
 *     format-4 profile: by its stages, above); other
 *     heads run on one thread (single-threaded BLAS; a small SVD head runs packed, on the threads, but
 *     is priced as one). (A profile without the rule: every part scales with N.)
 *   bias pass: t_b = sum over quantized W_ih and any head but a dense f32 one of its output
 *     elements per step (B rows(W); a last-step head B rows(W) / T) times bias_seconds_cached when all
 *     T B rows(W) outputs (4 bytes each) fit the usable share of the largest private level, else
 *     bias_seconds: the runtime adds their biases in a pass of its own, or fills a BLAS head's output
 *     with them before the product (an f32 W_ih, dense, SVD or CP, and a dense head fuse them into
 *     their packed GEMM's epilogue).
 *   input projections from memory: t_g = sum over f32 W_hh_l of f_l * 16 B H * cold_gx(m, R) / N_l,
 *     the profile's measured extra seconds per gx byte a step pays when its gx rows come from
 *     memory (cold_gx_seconds, linear in log R / H between H/16 and H/4), f_l the fraction from
 *     memory: 0 while the layer's per-sequence buffers (4 T B (4H + in_l + H) bytes) fit half the
 *     usable share of the last level, 1 from the usable share, linear between (cold_fraction).
 *     With the profile's activation figures (format 8) t_g gives way to t_act: the run's activation
 *     traffic a step times what whole sessions paid per byte at its footprint (cost_act.c).
 *   run's input and output passes: t_x = (2 B in + B W) times the bias pass's seconds per element
 *     (bias_rate at the bytes of x over the sequence, 4 T B in, and of y, 4 T B W), W = dirs out the
 *     top layer's output width: fl_session_run scans x for NaN / Inf (none for tokens), copies it
 *     into its packed time-major buffer (batch-major input, as the planner times it; a gather of
 *     embedding rows for tokens) and copies the top layer's packed output into y (or the head's
 *     input) in batch-major order (no such pass for a last-step head: B rows per sequence); ~0.6
 *     of what timers around those phases read (docs/planner.md, "Session 11").
 *   overhead: t_o = layers * step_overhead
 *   layer switch (profile with thread_switch_seconds W, format 4; predict): each layer's step has
 *     its own worker pool, whose workers poll ~0.3 ms after its last job (pausing, then yielding
 *     their core: pool.c), so a layer-direction on N > 1 threads that runs after one on N > 1 (the
 *     one before it; the first after the last, as runs follow each other) shares the CPUs with
 *     those polling workers, at what cost the profile measures on the runtime: the first W seconds of
 *     one thread's work of its run, its projection of all T steps then its steps, gain nothing
 *     from the split. t_s = sum over such layer-directions of the one-thread seconds of each part
 *     inside the window times (1 - t_N / t_1) of that part (t_N, t_1: its seconds per step priced
 *     on its threads and on one), over T (docs/planner.md, "Session 13, two threads").
 *   run start (profile with run_reread, format 5; cost_run.c): each run's first read of a W_ih, head
 *     or W_hh finds the fraction of it that the run's traffic has pushed out in memory: t_w = the
 *     sum of those first reads' extra seconds, over T (in each matrix's term).
 *   seconds = t_r + t_a + t_c + t_b + t_g + t_x + t_o + t_s + t_w.
 * Regime: memory-bound iff the last level does not hold the largest W_hh_l (fl_cost_fit: on a
 * measured curve, its rate at those bytes / FL_FIT_FRACTION is below the geometric mean of the last
 * level's and DRAM's; else the (thread-scaled, usable) capacity). The same test places a working set in the last
 * level or DRAM wherever a curve gives its rate (pick_level), so the level a term names, the memory
 * factor and the regime agree. fl_cost.working_set, level and bandwidth describe that largest W_hh_l. */
#include "internal.h"
#include "tuning_consts.h"
#include "plan_internal.h"
#include "fastlstm/plan.h"

#include <math.h>
#include <string.h>

/* Batch rows the proj kernel (V h of an SVD / CP step) computes per pass over V: avx2.c's proj_tile
 * (the AVX-512 kernel's tiles hold 4; the model keeps the AVX2 figure, the slower of the two). */
enum { PROJ_ROWS = 3 };

/* Rows from which a split input projection is compute-bound wherever its W_ih lives (64 rows: 32
 * flops per f32 weight byte, past every level's rate over the flop rate on the machines profiled),
 * so that the profile's two measurements of its speed-up (W_ih in the last level, W_ih from memory)
 * measure the same thing and the larger is taken (see gemm_rate). */
enum { PROJ_COMPUTE_ROWS = 64 };

/* Rate of a shared level (or DRAM) on `threads` threads from its one-thread rate `one` and the rate
 * `all` measured with curve_all_threads threads streaming together (0: not measured): `all` from
 * that count on (a shared level and the memory channels saturate: more threads than measured are
 * not assumed to add any), linear in the thread count below it. Without the measurement (older
 * profiles) the assumption of before, 1 + 0.75 (N - 1) times one thread's rate. */
static double shared_rate(const fl_profile *p, double one, double all, int threads) {
    if (threads <= 1) return one;
    const int m = p->curve_all_threads;
    if (!(all > 0) || m < 2) return one * (1.0 + 0.75 * (threads - 1));
    if (threads >= m) return all;
    return one + (all - one) * (threads - 1) / (m - 1);
}

static double level_capacity(const fl_cache_level *l, int threads) {
    return FL_FIT_FRACTION * (double)(l->shared_cpus <= 1 ? l->bytes * (size_t)threads : l->bytes);
}

/* A measured curve's rate at `bytes`, linear in log(bytes) between points. */
double fl_cost_curve_at(const size_t *cb, const double *cbw, int n, double bytes) {
    if (bytes <= (double)cb[0]) return cbw[0];
    if (bytes >= (double)cb[n - 1]) return cbw[n - 1];
    int k = 0;
    while (bytes > (double)cb[k + 1]) k++;
    double x0 = log((double)cb[k]), x1 = log((double)cb[k + 1]);
    double t = (log(bytes) - x0) / (x1 - x0);
    return cbw[k] + t * (cbw[k + 1] - cbw[k]);
}

/* Whether p has a measured curve for `threads`: p->curve (one thread) or p->curve_all (its count). */
static bool has_curve(const fl_profile *p, int threads) {
    return threads == 1 ? p->n_curve > 0 : (p->n_curve_all > 0 && threads == p->curve_all_threads);
}

static double curve_rate(const fl_profile *p, double bytes, int threads) {
    return threads == 1 ? fl_cost_curve_at(p->curve_bytes, p->curve_bandwidth, p->n_curve, bytes)
                        : fl_cost_curve_at(p->curve_all_bytes, p->curve_all_bandwidth, p->n_curve_all, bytes);
}

/* Cell update seconds per unit and row at `batch` rows: the batch-1 figure at 1, linear in log B to
 * the batch-16 one (cell_seconds) at 16, that one above; a profile without the batch-1 figure takes
 * cell_seconds at every batch. */
double fl_cost_cell_seconds(const fl_profile *p, int batch) {
    const double c1 = p->cell_seconds_b1, c16 = p->cell_seconds;
    if (!(c1 > 0) || batch >= 16) return c16;
    if (batch <= 1) return c1;
    return c1 + (c16 - c1) * log((double)batch) / log(16.0);
}

/* Cost of splitting one step at curve_all_threads threads beyond its share of the work: the
 * profile's thread_sync_seconds, timed on the runtime's own split of a small step (a dense H 192
 * step at batch 1, its time on N threads less 1/N of one thread's: profile_threads.c), else read off
 * the two curves: the median, over the ladder points from 512 KiB to 4 MiB (split across the
 * threads' private caches), of the all-cores step time less the one-thread time divided by the
 * thread count. 0 without both curves. It is more than the pool's fork / join (empty jobs back to
 * back: 0.07-0.09 us on the 2-core VM): the threads exchange h every step, and a worker waits for
 * its CPU. A profile that took the pool's empty job instead predicted batch-1 two-thread steps
 * further too fast (650 SVD h/8: 2.69x against 2.19x, same measurements). */
double fl_cost_thread_sync(const fl_profile *p) {
    if (p->thread_sync_seconds > 0) return p->thread_sync_seconds; /* measured on the runtime's own split step */
    if (p->n_curve == 0 || p->n_curve_all == 0 || p->curve_all_threads < 2) return 0;
    double v[FL_PROFILE_MAX_CURVE];
    int n = 0;
    for (int k = 0; k < p->n_curve_all; k++) {
        const double b = (double)p->curve_all_bytes[k];
        if (b < 512.0 * 1024 || b > 4.0 * 1024 * 1024) continue;
        double t = b / p->curve_all_bandwidth[k] - b / curve_rate(p, b, 1) / p->curve_all_threads;
        v[n++] = t > 0 ? t : 0;
    }
    if (n == 0) return 0;
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double x = v[j];
            v[j] = v[j - 1], v[j - 1] = x;
        }
    return v[n / 2];
}

/* Threads a part runs on under the runtime's rule in the profile (see fl_profile): a W_hh step of
 * `bytes` x B rows, or (step == false) a projection of `macs` multiply-adds, dense or not. */
static int part_threads(const fl_profile *p, int threads, bool step, double bytes_or_macs, bool dense) {
    if (threads <= 1) return 1;
    if (step) return bytes_or_macs >= p->parallel_step_bytes ? threads : 1;
    if (p->parallel_proj_macs <= 0) return threads; /* no rule recorded: every part scales */
    return dense && bytes_or_macs >= p->parallel_proj_macs ? threads : 1;
}

static double level_rate(const fl_profile *p, const fl_cache_level *l, int threads) {
    return l->shared_cpus <= 1 ? l->bandwidth * threads : shared_rate(p, l->bandwidth, l->all_cores_bandwidth, threads);
}

/* Rates at which the last level and DRAM must differ for a curve to tell them apart. */
#define FIT_MIN_RATIO 1.25

fl_status fl_cost_fit(const fl_profile *p, double bytes, int threads, fl_fit *out) {
    if (!p || !out || !(bytes >= 0) || threads < 1) return fl_fail(FL_ERR_ARG, "fl_cost_fit: NULL argument, bytes < 0 or threads < 1");
    *out = (fl_fit){0};
    if (p->n_levels < 1) return FL_OK; /* no cache: nothing fits */
    const fl_cache_level *last = &p->level[p->n_levels - 1];
    out->capacity = level_capacity(last, threads);
    out->cache_rate = level_rate(p, last, threads);
    out->dram_rate = shared_rate(p, p->dram_bandwidth, p->dram_bandwidth_all, threads);
    if (has_curve(p, threads) && out->dram_rate > 0 && out->cache_rate >= FIT_MIN_RATIO * out->dram_rate) {
        out->by_curve = 1;
        out->curve_bytes = bytes / FL_FIT_FRACTION;
        out->rate = curve_rate(p, out->curve_bytes, threads);
        out->fits = out->rate > sqrt(out->cache_rate * out->dram_rate);
    } else {
        out->fits = bytes <= out->capacity;
    }
    return FL_OK;
}

/* Index of the smallest level holding `bytes`, -1 for DRAM; the streaming rate in *bw (from the
 * measured curve of that thread count when there is one, else the level's rate). With a curve,
 * the last level or DRAM is the one fl_cost_fit finds. */
int fl_cost_pick_level(const fl_profile *p, double bytes, int threads, double *bw) {
    int level = -1;
    for (int i = 0; i < p->n_levels && level < 0; i++)
        if (bytes <= level_capacity(&p->level[i], threads) && p->level[i].bandwidth > 0) level = i;
    fl_fit f;
    if (fl_cost_fit(p, bytes, threads, &f) == FL_OK && f.by_curve) level = !f.fits ? -1 : level >= 0 ? level : p->n_levels - 1;
    if (has_curve(p, threads)) *bw = curve_rate(p, bytes, threads);
    else *bw = level >= 0 ? level_rate(p, &p->level[level], threads)
                          : shared_rate(p, p->dram_bandwidth, p->dram_bandwidth_all, threads);
    return level;
}

/* Rate at n rows from a table at 4, 16, 64, 256 rows (linear in log n), with (1, at1) as the point
 * below the table (at1 = 0: proportional to n below 4 rows). */
static double table_rate(const double *g, double at1, double rows) {
    if (rows >= 256) return g[FL_PROFILE_GEMM_POINTS - 1];
    if (rows <= 4) {
        if (!(at1 > 0)) return g[0] * rows / 4;
        if (rows <= 1) return at1 * rows;
        return at1 + log(rows) / log(4.0) * (g[0] - at1);
    }
    int k = 0;
    while (rows > 4.0 * (1 << (2 * (k + 1)))) k++; /* 4 * 4^k <= rows <= 4 * 4^(k+1) */
    double t = log(rows / (4.0 * (1 << (2 * k)))) / log(4.0);
    return g[k] + t * (g[k + 1] - g[k]);
}

/* Speed-up of a part split across `threads` threads at `rows` rows: the profile's measured table s
 * (thread_scale_rec / _proj, at curve_all_threads threads; clamped to 4..256 rows), else threads.
 * Held at `threads`: N threads compute no more than N times one thread's flops (the streaming side
 * has its own all-cores rates); a figure above it is a two-thread time less the split's sync that
 * came out near 0 (the 18:13 profile of 2026-11-30 read 6.05 at 4 rows). */
static double thread_scale(const fl_profile *p, const double *s, int threads, double rows) {
    if (threads <= 1) return 1.0;
    if (threads != p->curve_all_threads || !(s[0] > 0)) return threads;
    const double v = table_rate(s, 0.0, rows < 4 ? 4 : rows);
    return v > threads ? threads : v;
}

double fl_cost_rec_scale(const fl_profile *p, int threads, double rows) {
    return thread_scale(p, p->thread_scale_rec, threads, rows);
}

/* Flop rate of the recurrent step at `rows` = batch rows. */
static double flop_rate(const fl_profile *p, double rows, int threads) {
    double r;
    if (p->rec_rows_flops[0] > 0) {
        r = table_rate(p->rec_rows_flops, p->gemv_flops, rows);
    } else {
        r = rows * p->gemv_flops;
        if (r > p->gemm_flops) r = p->gemm_flops;
    }
    return r * thread_scale(p, p->thread_scale_rec, threads, rows);
}

/* The dense step's flop rate at `rows` on `threads` threads, each streaming `share` bytes of W_hh:
 * flop_rate's (H 256, W_hh in L2) up to the usable share of the largest private level, the far
 * figures' (rec_rows_flops_far, thread_scale_rec_far: W_hh of rec_far_bytes from the last level)
 * from rec_far_bytes on, linear in log share between; flop_rate's without the far figures. */
static double rec_rate(const fl_profile *p, double rows, int threads, double share) {
    const double near = flop_rate(p, rows, threads);
    const double priv = FL_FIT_FRACTION * (double)p->level[fl_profile_private_level(p)].bytes;
    if (!(p->rec_far_bytes > priv) || !(p->rec_rows_flops_far[0] > 0) || !(share > priv)) return near;
    const double far = table_rate(p->rec_rows_flops_far, p->gemv_flops, rows) *
                       thread_scale(p, p->thread_scale_rec_far[0] > 0 ? p->thread_scale_rec_far : p->thread_scale_rec,
                                    threads, rows);
    if (share >= p->rec_far_bytes) return far;
    return near + log(share / priv) / log(p->rec_far_bytes / priv) * (far - near);
}

/* Flop rate of the input projection GEMM at `rows` = T * B rows of a W of `bytes`: split across
 * threads, its speed-up is the one measured on a W held by the last level (thread_scale_proj) or,
 * for a W beyond its usable share, on one streamed from memory (thread_scale_proj_mem, when
 * measured). */
static double gemm_rate(const fl_profile *p, double rows, int threads, double bytes) {
    if (!(p->gemm_rows_flops[0] > 0)) return flop_rate(p, rows, threads);
    const bool has_mem = p->thread_scale_proj_mem[0] > 0;
    const bool mem = has_mem && bytes > level_capacity(&p->level[p->n_levels - 1], 1);
    double s = thread_scale(p, mem ? p->thread_scale_proj_mem : p->thread_scale_proj, threads, rows);
    if (has_mem && rows >= PROJ_COMPUTE_ROWS) { /* compute-bound: where W lives does not matter */
        const double o = thread_scale(p, mem ? p->thread_scale_proj : p->thread_scale_proj_mem, threads, rows);
        if (o > s) s = o;
    }
    return table_rate(p->gemm_rows_flops, 0.0, rows) * s;
}

/* Whether the profile measured the precision-q kernels (see fl_profile.qrec_flops). */
static bool has_qrates(const fl_profile *p, fl_precision q) {
    return q != FL_PRECISION_F32 && (int)q >= 0 && (int)q < 3 && p->qrec_flops[q][0] > 0 && p->qgemm_flops[q][0] > 0;
}

/* Flop rate of a precision-q recurrent step (one thread: the runtime's quantized step runs on the
 * calling thread) at `rows` batch rows: the measured table (1, 4, 16, 64, 256 rows), else f32's. */
static double qflop_rate(const fl_profile *p, fl_precision q, double rows) {
    if (!has_qrates(p, q)) return flop_rate(p, rows, 1);
    return table_rate(&p->qrec_flops[q][1], p->qrec_flops[q][0], rows);
}

/* Rate of a precision-q input projection / head on `rows` rows (one thread), else f32's. */
static double qgemm_rate(const fl_profile *p, fl_precision q, double rows) {
    if (!has_qrates(p, q)) return gemm_rate(p, rows, 1, 0);
    return table_rate(p->qgemm_flops[q], 0.0, rows);
}

/* Seconds per element of the bias pass over an output of `bytes`. */
static double bias_rate(const fl_profile *p, double bytes) {
    int priv = -1;
    for (int i = 0; i < p->n_levels; i++)
        if (p->level[i].shared_cpus <= 1) priv = i;
    if (p->bias_seconds_cached > 0 && priv >= 0 && bytes <= level_capacity(&p->level[priv], 1))
        return p->bias_seconds_cached;
    return p->bias_seconds;
}

/* t_x of the header: seconds per step of fl_session_run's passes over x and y outside the layers. */
static double io_seconds(const fl_profile *p, const fl_arch *a, int batch, int seq) {
    const double x_el = (double)batch * a->input;
    const double y_el = a->head == FL_HEAD_LAST_STEP ? 0.0 : (double)batch * fl_arch_dirs(a) * fl_arch_out(a);
    const double check = a->vocab > 0 ? 0.0 : x_el;
    return bias_rate(p, 4.0 * seq * x_el) * (check + x_el) + bias_rate(p, 4.0 * seq * y_el) * y_el;
}

/* Fraction of a layer-step's reads of its input projections that come from memory: a session
 * streams, per layer and sequence, `ws` bytes of (T B) rows (gx, 4H floats; the layer's input;
 * its output). 0 up to half the usable share (FL_FIT_FRACTION) of the last level's measured capacity,
 * 1 from the usable share on, linear in between: the buffer shares the level with the weights and
 * everything else, and the level does not keep exactly the most recent lines. (Measured at hidden
 * 650, batch 20, CP rank 40, on a VM whose last level measured 11.6 MB: T = 20, buffers of 6 MB,
 * paid about 0.4 of the extra of T = 35, 10.9 MB, which paid all of it.) */
static double cold_fraction(const fl_profile *p, double ws) {
    const double use = FL_FIT_FRACTION * (double)p->level[p->n_levels - 1].bytes;
    const double f = 2.0 * ws / use - 1.0;
    return f < 0 ? 0 : f > 1 ? 1 : f;
}

/* Extra seconds per gx byte read from memory by a step of method m at rank R of H (see
 * fl_profile.cold_gx_seconds): linear in log(R / H) between the points at H/16 and H/4, clamped. */
/* Where rank R of hidden H lies between the profile's two measured ranks: 0 at H/16 (and below), 1
 * at H/4 (and above), linear in log(R / H) between. */
static double rank_weight(double rank, int H) {
    double u = log(16.0 * rank / H) / log(4.0);
    return u < 0 ? 0 : u > 1 ? 1 : u;
}

static double cold_gx(const fl_profile *p, fl_method m, double rank, int H) {
    const double *c = p->cold_gx_seconds[m];
    if (m == FL_METHOD_DENSE || !(rank > 0)) return c[0];
    return c[0] + rank_weight(rank, H) * (c[1] - c[0]);
}

static double efficiency(const double *e, fl_method m) { return e[m] > 0 ? e[m] : 1.0; }

/* Most a recurrent step's SVD / CP efficiency counts for (method_efficiency: why). */
#define REC_EFFICIENCY_MAX 1.0

static double efficiency_at(double e1, const double *t, bool at1, double rows);

/* Where a W_hh of method m holding `params` weights lies between the two the profile measured the
 * step's efficiencies on (hidden FL_PROFILE_EFF_HIDDEN, ranks H/16 and H/4): 0 at the H/16 one's
 * size (and below), 1 at the H/4 one's (and above), linear in log(params) between. By size, not by
 * R / H: the step's efficiency is its time against a dense step of as many bytes, and what it
 * carries beyond the kernels is where its factors sit (at H = 1024, rank 64, V is 256 KiB, within a
 * 512 KiB L2, U 1 MiB beyond it), which follows their bytes. By R / H, a 1500 rank-93 step (2.8 MB,
 * V alone past L2) took the rank-64 figures of 1.3 MB; the 2026-11-30 23:53 profile read those at
 * 1.44 (SVD) and 1.64 (CP) and predicted the 1500 h/16 and h/8 candidates 1.4-1.55x too fast, 1.2x
 * beyond that run's median error. */
static double size_weight(fl_method m, double params) {
    const int He = FL_PROFILE_EFF_HIDDEN;
    fl_mat lo = {.method = m, .rows = 4 * He, .cols = He, .rank = He / 16}, hi = lo;
    hi.rank = He / 4;
    const double plo = (double)fl_mat_params(&lo), phi = (double)fl_mat_params(&hi);
    if (!(params > plo)) return 0;
    const double u = log(params / plo) / log(phi / plo);
    return u > 1 ? 1 : u;
}

/* Efficiency of method m's recurrent step (rec) or input projection / head GEMM at `rows` rows, u
 * the matrix's place between the two measured shapes (0: the H/16 one, 1: the H/4 one; rec:
 * size_weight, GEMM: rank_weight): the rank-H/4 figures (rec_efficiency and its rows table, or
 * gemm_*) and, where the profile has them, the rank-H/16 ones (the _lo fields), each at the rows,
 * then linear in u between the two. Without the H/16 figures: the H/4 ones at every rank.
 * The step's is at most REC_EFFICIENCY_MAX: above 1 a method's step ran faster than a dense step
 * streaming as many bytes from the same level, which its kernels (a rank-R projection, then the
 * same gate kernel at K = R) do not do; it is where its factors sat at the measured shape (V in a
 * level below U's), and that moves with the co-tenants: two profiles of the 2-vCPU VM an hour
 * apart (2026-11-30) read the rank-64 SVD / CP steps at 1.44 / 1.64 and at 1.03 / 0.82. Offline
 * against the two bench_plan runs of those profiles (bench_plan --predict-only), within 15%: 12 and
 * 8 of 48 with the size placement alone, 15 and 8 capped (each run's median ratio taken out: 35
 * and 40, then 30 and 41; before both changes 14 and 7, 23 and 41). */
static double method_efficiency(const fl_profile *p, fl_method m, bool rec, double rows, double u) {
    const double hi = rec ? efficiency_at(efficiency(p->rec_efficiency, m), p->rec_rows_efficiency[m], true, rows)
                          : efficiency_at(efficiency(p->gemm_efficiency, m), p->gemm_rows_efficiency[m], false, rows);
    double e = hi;
    if (p->rec_efficiency_lo[m] > 0) {
        const double lo = rec ? efficiency_at(p->rec_efficiency_lo[m], p->rec_rows_efficiency_lo[m], true, rows)
                              : efficiency_at(efficiency(p->gemm_efficiency_lo, m), p->gemm_rows_efficiency_lo[m], false, rows);
        e = lo + u * (hi - lo);
    }
    return rec && e > REC_EFFICIENCY_MAX ? REC_EFFICIENCY_MAX : e;
}

/* Efficiency of method m at `rows` from the batch-1 (or 64-row) figure e1 and the table t at 4, 16,
 * 64, 256 rows, linear in log rows; at1: t is extended down to (1, e1) (recurrent), else clamped at
 * 4 rows (GEMM). Missing (0) table points take e1. */
static double efficiency_at(double e1, const double *t, bool at1, double rows) {
    double x[FL_PROFILE_GEMM_POINTS + 1], y[FL_PROFILE_GEMM_POINTS + 1];
    int n = 0;
    if (at1) x[n] = 1, y[n++] = e1;
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) x[n] = 4 << (2 * k), y[n++] = t[k] > 0 ? t[k] : e1;
    if (rows <= x[0]) return y[0];
    if (rows >= x[n - 1]) return y[n - 1];
    int k = 0;
    while (rows > x[k + 1]) k++;
    double u = log(rows / x[k]) / log(x[k + 1] / x[k]);
    return y[k] + u * (y[k + 1] - y[k]);
}

static double max2(double a, double b) { return a > b ? a : b; }

fl_status fl_cost_predict(const fl_profile *p, const fl_arch *a, const fl_mat_spec *specs, int batch,
                          int seq, int threads, fl_cost *out) {
    return fl_cost_predict_terms(p, a, specs, batch, seq, threads, out, NULL);
}

fl_status fl_cost_predict_terms(const fl_profile *p, const fl_arch *a, const fl_mat_spec *specs, int batch,
                                int seq, int threads, fl_cost *out, fl_cost_term *terms) {
    return fl_cost_predict_prec(p, a, specs, NULL, batch, seq, threads, out, terms);
}

static fl_status predict(const fl_profile *p, const fl_arch *a, const fl_mat_spec *specs, const fl_precision *prec,
                         int batch, int seq, int threads, const int *lt, fl_cost *out, fl_cost_term *terms);

fl_status fl_cost_predict_prec(const fl_profile *p, const fl_arch *a, const fl_mat_spec *specs,
                               const fl_precision *prec, int batch, int seq, int threads, fl_cost *out,
                               fl_cost_term *terms) {
    return predict(p, a, specs, prec, batch, seq, threads, NULL, out, terms);
}

fl_status fl_cost_predict_layers(const fl_profile *p, const fl_arch *a, const fl_mat_spec *specs,
                                 const fl_precision *prec, int batch, int seq, const int *layer_threads,
                                 fl_cost *out, fl_cost_term *terms) {
    if (!a || !layer_threads) return fl_fail(FL_ERR_ARG, "NULL argument to fl_cost_predict_layers");
    int most = 1;
    for (int l = 0; l < a->layers; l++) {
        if (layer_threads[l] < 1) return fl_fail(FL_ERR_ARG, "layer %d: threads must be >= 1, got %d", l, layer_threads[l]);
        if (layer_threads[l] > most) most = layer_threads[l];
    }
    return predict(p, a, specs, prec, batch, seq, most, layer_threads, out, terms);
}

static fl_status predict_parts(const fl_profile *p, const fl_arch *a, const fl_mat_spec *specs,
                               const fl_precision *prec, int batch, int seq, int threads, const int *lt, fl_cost *out,
                               fl_cost_term *terms);

/* One-thread seconds per step of layer-direction ld's W_ih and W_hh terms (with its cell update)
 * that the first `w` seconds of one thread's work of its run do not speed up, given their seconds
 * on their threads (tn) and on one (t1), in the order they run (the projection of all T steps, then
 * the steps): the share of each inside the window loses its gain. Per step (divided by T). */
static double switch_loss(double w, const double *tn, const double *t1, int seq) {
    double lost = 0;
    for (int k = 0; k < 2 && w > 0; k++) {
        const double one = seq * t1[k], used = w < one ? w : one; /* one thread's seconds in the window */
        if (t1[k] > tn[k]) lost += used * (1.0 - tn[k] / t1[k]);
        w -= used;
    }
    return lost / seq;
}

/* predict_parts, then the layer switch (see the header): each layer-direction on N > 1 threads run
 * after one whose pool has workers (the one before it, the last for the first: runs back to back)
 * loses the speed-up of its first thread_switch_seconds of one thread's work. */
static fl_status predict(const fl_profile *p, const fl_arch *a, const fl_mat_spec *specs, const fl_precision *prec,
                         int batch, int seq, int threads, const int *lt, fl_cost *out, fl_cost_term *terms) {
    /* one pool (one layer-direction) has no other pool polling beside it */
    if (!p || !a || threads < 2 || !(p->thread_switch_seconds > 0) || fl_arch_check(a) ||
        a->layers * fl_arch_dirs(a) < 2)
        return predict_parts(p, a, specs, prec, batch, seq, threads, lt, out, terms);
    const size_t nmat = fl_arch_num_matrices(a);
    const int dirs = fl_arch_dirs(a), U = a->layers * dirs, k = (int)((nmat - (a->head != FL_HEAD_NONE)) / (size_t)U);
    fl_status st = FL_OK;
    fl_cost_term *tn = fl_calloc(2 * nmat, sizeof *tn), *t1 = tn ? tn + nmat : NULL;
    int *one = fl_calloc((size_t)a->layers, sizeof *one);
    fl_cost c1;
    if (!tn || !one) st = fl_fail(FL_ERR_NOMEM, "out of memory pricing the layer switch");
    for (int l = 0; !st && l < a->layers; l++) one[l] = 1;
    if (!st) st = predict_parts(p, a, specs, prec, batch, seq, threads, lt, out, tn);
    if (!st) st = predict_parts(p, a, specs, prec, batch, seq, 1, one, &c1, t1);
    for (int u = 0; !st && u < U; u++) {
        const int v = (u + U - 1) % U, tu = lt ? lt[u / dirs] : threads, tv = lt ? lt[v / dirs] : threads;
        if (tu < 2 || tv < 2) continue; /* on one thread, or after a layer whose pool has no workers */
        const size_t ih = (size_t)u * k, hh = ih + 1;
        const double n2[2] = {tn[ih].seconds, tn[hh].seconds + tn[hh].cell_seconds};
        const double o2[2] = {t1[ih].seconds, t1[hh].seconds + t1[hh].cell_seconds};
        const double loss = switch_loss(p->thread_switch_seconds, n2, o2, seq);
        out->seconds += loss;
        tn[hh].seconds += loss;
    }
    if (!st && terms) memcpy(terms, tn, nmat * sizeof *terms);
    fl_free(tn);
    fl_free(one);
    return st;
}

/* threads: the most any layer runs on (the regime's count); lt: each layer's, or NULL (all
 * `threads`). */
static fl_status predict_parts(const fl_profile *p, const fl_arch *a, const fl_mat_spec *specs,
                               const fl_precision *prec, int batch, int seq, int threads, const int *lt, fl_cost *out,
                               fl_cost_term *terms) {
    if (!p || !a || !out) return fl_fail(FL_ERR_ARG, "NULL argument to fl_cost_predict");
    fl_status st = fl_arch_check(a);
    if (st) return st;
    if (batch < 1 || seq < 1 || threads < 1)
        return fl_fail(FL_ERR_ARG, "batch, seq and threads must be >= 1 (got %d, %d, %d)", batch, seq,
                       threads);
    if (p->n_levels < 1 || p->n_levels > FL_PROFILE_MAX_LEVELS || !(p->dram_bandwidth > 0) ||
        !(p->gemm_flops > 0) || !(p->gemv_flops > 0) || !(p->step_overhead >= 0) ||
        !(p->cell_seconds >= 0) || !(p->cell_seconds_b1 >= 0) ||
        !(p->bias_seconds >= 0) ||
        !(p->bias_seconds_cached >= 0) ||
        !(p->rec_memory_factor >= 0))
        return fl_fail(FL_ERR_ARG, "profile has no cache levels or non-positive rates");
    const int L = a->layers, H = a->hidden;
    const size_t nmat = fl_arch_num_matrices(a);
    fl_cost c = {0};
    c.level = -2;
    const double sync_all = fl_cost_thread_sync(p); /* at curve_all_threads threads */
    double cell = 0; /* cell update seconds, summed over layers */
    double cold = 0; /* steps' extra seconds reading gx from memory, summed over layers */
    /* Pass 0: shapes and total parameters (the amortised weights' level depends on the total). */
    double ws = 0, all_bytes = 0; /* all_bytes: every matrix's stored weights */
    double run_bytes = 0;         /* a run's traffic: weights, W_hh T times, activations (cost_run.c) */
    for (int pass = 0; pass < 2; pass++) {
        double t = 0;
        const double fcold = pass ? fl_cost_run_fraction(p, run_bytes) : 0;
        for (size_t i = 0; i < nmat; i++) {
            fl_mat_desc d;
            fl_arch_matrix(a, i, &d);
            const bool head = d.kind == FL_MAT_HEAD;
            /* its layer's threads; the head runs on the top layer's (fl_head_apply) */
            const int threads_l = lt ? lt[d.layer >= 0 ? d.layer : L - 1] : threads;
            const double sync = threads_l > 1 && threads_l == p->curve_all_threads ? sync_all : 0;
            fl_mat w = {.method = FL_METHOD_DENSE, .rows = d.rows, .cols = d.cols};
            if (specs && specs[i].method != FL_METHOD_DENSE) {
                int maxr = w.rows < w.cols ? w.rows : w.cols;
                if (specs[i].method == FL_METHOD_SVD && (specs[i].rank < 1 || specs[i].rank > maxr))
                    return fl_fail(FL_ERR_ARG, "matrix %zu: SVD rank %d outside [1, %d]", i, specs[i].rank, maxr);
                if (specs[i].method == FL_METHOD_CP && (!d.gate || specs[i].rank < 1))
                    return fl_fail(FL_ERR_ARG, "matrix %zu: CP needs a gate matrix and rank >= 1", i);
                if (specs[i].method != FL_METHOD_SVD && specs[i].method != FL_METHOD_CP)
                    return fl_fail(FL_ERR_ARG, "matrix %zu: unknown method %d", i, (int)specs[i].method);
                w.method = specs[i].method;
                w.rank = specs[i].rank;
            }
            double np = (double)fl_mat_params(&w), nf = (double)fl_mat_flops(&w);
            /* bytes per stored weight: int8 1, bf16 2, f32 4 (CP factors stay f32) */
            const fl_precision q = prec && w.method != FL_METHOD_CP ? prec[i] : FL_PRECISION_F32;
            const double bpw = (double)fl_precision_bytes(q);
            if (!(bpw > 0)) return fl_fail(FL_ERR_ARG, "matrix %zu: unknown precision %d", i, (int)q);
            const bool lowp = q != FL_PRECISION_F32;
            if (pass == 0) {
                c.params += fl_mat_params(&w);
                all_bytes += bpw * np;
                run_bytes += bpw * np * (d.kind == FL_MAT_IH || head ? 1 : seq) +
                             (d.kind == FL_MAT_IH ? 4.0 * seq * batch * (d.rows + d.cols + d.rows / 4.0) : 0);
                continue;
            }
            double bytes, flops, bw, rate, extra = 0;
            bool use_lr = false;
            /* the part of a split SVD / CP step every thread does whole (see below): its bytes,
             * flops and seconds streaming / computing; 0 otherwise */
            double dup_mem = 0, dup_comp = 0, split_share = 1;
            /* an f32 SVD / CP W_hh priced by its parts (cost_lowrank.c): the panel's roofline (mem,
             * comp: split part), the projection's (dup_*), then the gx copy (serial) */
            fl_lr_cost lr = {0};
            double cell_l = 0; /* this W_hh's cell update, priced apart */
            int level, tt;
            if (d.kind == FL_MAT_HH) {
                /* W_hh of one layer: the runtime runs layer by layer, so it alone streams T times;
                 * split across the threads only when large enough (then the fork / join is paid). */
                bytes = bpw * np;
                flops = batch * nf;
                /* by rows (FL_STEP_AUTO's rule, fl_rows_auto; not LSTMP nor int8 / bf16): each of
                 * the N threads runs one thread's step on its ceil(B / N) rows with the whole W_hh,
                 * all N streaming it at once (N W_hh bytes at the N-thread rate of the level
                 * holding them: N copies in private levels, one in a shared one); bw and rate below are the step's bytes and flops over one thread's time */
                const bool by_rows = !lowp && a->proj == 0 && fl_rows_auto(batch, threads_l, bytes, w.method == FL_METHOD_DENSE);
                const int rrows = by_rows ? (batch + threads_l - 1) / threads_l : batch;
                tt = by_rows ? threads_l : lowp ? 1 : part_threads(p, threads_l, true, bytes * batch, true);
                level = fl_cost_pick_level(p, by_rows ? tt * bytes : bytes, tt, &bw);
                if (by_rows) { /* N copies in private levels, but one copy held by a shared level */
                    double bw1;
                    const int l1 = fl_cost_pick_level(p, bytes, tt, &bw1);
                    if (l1 >= 0 && p->level[l1].shared_cpus > 1) level = l1, bw = bw1;
                    bw /= tt;
                }
                if (bytes >= ws) ws = bytes, c.level = level, c.bandwidth = bw;
                /* the f32 SVD / CP kernels' efficiencies; a quantized SVD runs its two factors
                 * through the same quant kernel as a dense matrix, at that kernel's rate */
                double e = w.method == FL_METHOD_DENSE || lowp
                               ? 1.0
                               : method_efficiency(p, w.method, true, rrows, size_weight(w.method, np));
                bw *= e;
                rate = (lowp ? qflop_rate(p, q, batch)
                             : w.method == FL_METHOD_DENSE && level >= 0 /* from memory: rec_memory_factor below */
                                 ? rec_rate(p, rrows, by_rows ? 1 : tt, by_rows ? bytes : bytes / tt)
                                 : flop_rate(p, rrows, by_rows ? 1 : tt)) * e;
                if (by_rows) rate *= (double)batch / rrows;
                if (level < 0 && p->rec_memory_factor > 0) rate *= p->rec_memory_factor;
                if (tt > 1 && !by_rows) extra = sync; /* in the compute term: the all-cores curve includes it */
                use_lr = w.method != FL_METHOD_DENSE && !lowp && fl_cost_has_lowrank(p);
                if (tt > 1 && !by_rows && w.method != FL_METHOD_DENSE && !use_lr) {
                    /* fl_rec_step splits only the gate panel (U, or CP's B) across the threads; each
                     * thread first computes the whole rank-R projection of h_prev itself (t = V h,
                     * or CP's z = C^T h and a o z), PROJ_ROWS batch rows at a time (the proj kernel
                     * streams V once per row tile), so that part takes one thread's time however
                     * many run: ceil(B / PROJ_ROWS) passes over V's bytes at one thread's streaming
                     * rate at V's size (or its flops at the rate of min(B, PROJ_ROWS) rows, if
                     * slower). The rest of the one-thread step, t1, splits as the whole step would
                     * (the split rates above). */
                    const double K = d.cols, R = w.rank, cpx = w.method == FL_METHOD_CP ? 4.0 * R : 0.0;
                    const double vb = bpw * (K * R + cpx), vf = 2.0 * K * R + cpx;
                    double bwv, bw1;
                    fl_cost_pick_level(p, vb, 1, &bwv);
                    const int l1 = fl_cost_pick_level(p, bytes, 1, &bw1);
                    double rate1 = flop_rate(p, batch, 1) * e;
                    if (l1 < 0 && p->rec_memory_factor > 0) rate1 *= p->rec_memory_factor;
                    const double t1 = max2(bytes / (bw1 * e), flops / rate1);
                    const int tile = batch < PROJ_ROWS ? batch : PROJ_ROWS;
                    dup_mem = (double)((batch + PROJ_ROWS - 1) / PROJ_ROWS) * vb / bwv;
                    dup_comp = batch * vf / flop_rate(p, tile, 1);
                    double dup = max2(dup_mem, dup_comp);
                    if (dup > t1) { /* the estimate cannot exceed the whole step's */
                        dup_mem *= t1 / dup, dup_comp *= t1 / dup;
                        dup = t1;
                    }
                    split_share = t1 > 0 ? 1.0 - dup / t1 : 0.0;
                }
                if (use_lr) /* by parts: the cell update is in the panel's figures */
                    fl_cost_lowrank_step(p, w.method, H, d.cols, w.rank, batch, tt, by_rows, tt > 1 && !by_rows ? sync : 0, &lr);
                else
                    cell_l = by_rows ? (double)rrows * H * fl_cost_cell_seconds(p, rrows)
                                     : (double)batch * H * fl_cost_cell_seconds(p, batch) / tt;
                cell += cell_l;
                if (!lowp && !fl_profile_has_act(p)) { /* gx from memory past the last level (else: act) */
                    fl_mat_desc di; /* this layer-direction's W_ih: the matrix before its W_hh */
                    fl_arch_matrix(a, i - 1, &di);
                    const double ws_seq = 4.0 * seq * batch * (4.0 * H + di.cols + H), gx = 16.0 * batch * H;
                    /* a dense step's threads read their own gx rows; an SVD / CP step at batch > 1
                     * first copies its B rows on the calling thread alone (fl_rec_step) */
                    const int gx_threads = w.method == FL_METHOD_DENSE || batch == 1 || by_rows ? tt : 1;
                    cold += cold_fraction(p, ws_seq) * gx * cold_gx(p, w.method, w.rank, H) / gx_threads;
                }
            } else {
                /* A last-step head runs once per sequence on the B last states (B rows); W_ih and a
                 * per-step head run on all T * B rows at once. */
                const bool last = head && a->head == FL_HEAD_LAST_STEP;
                bytes = bpw * np / seq;
                flops = last ? batch * nf / seq : batch * nf;
                const double n = last ? (double)batch : (double)batch * seq;
                /* an f32 SVD W_ih runs as two packed products, t = x V^T then gx = t U^T
                 * (fl_rec_input_ws), each split across the threads by the dense rule on its own
                 * multiply-adds: priced stage by stage, at the same efficiency. An f32 CP W_ih
                 * likewise: z = x C (n R in), then one product per gate (n H R each: zs[:, g] B^T),
                 * each split by the rule on its own multiply-adds (the per-gate scaling between
                 * them, 4 n R multiplies on the caller, is left in the efficiency). */
                const bool lr_ih = d.kind == FL_MAT_IH && w.method != FL_METHOD_DENSE && !lowp;
                /* a W_ih below wake_proj_macs in all: one thread, its pool's workers asleep since the
                 * run before (fl_pool_run_if_awake; 2 x 650 SVD h/16 b1 t2: 149 of 160 found them so) */
                const bool alone = d.kind == FL_MAT_IH && n * nf / 2 < p->wake_proj_macs;
                tt = lowp || alone ? 1 : part_threads(p, threads_l, false, n * nf / 2, w.method == FL_METHOD_DENSE);
                if (lr_ih) {
                    const double gates = w.method == FL_METHOD_CP ? 4.0 : 1.0; /* second-stage products */
                    const double m1 = n * (double)w.rank * d.cols, m2 = n * (double)d.rows / gates * w.rank;
                    const int t1s = alone ? 1 : part_threads(p, threads_l, false, m1, true);
                    tt = alone ? 1 : part_threads(p, threads_l, false, m2, true);
                    /* the rate over both stages: their flops over the sum of their times; a split
                     * stage's speed-up by its own size where the profile measured the split packed
                     * product (thread_scale_pk, format 6: its points 4x apart in multiply-adds, as
                     * thread_scale's tables are in rows), else the dense projection's at the rows */
                    const double r0 = gemm_rate(p, n, 1, bpw * np), pk0 = fl_profile_pk_macs(0) / 4;
                    const bool by_size = p->thread_scale_pk[0] > 0;
                    const double r1 = by_size ? r0 * thread_scale(p, p->thread_scale_pk, t1s, m1 / pk0)
                                              : gemm_rate(p, n, t1s, bpw * np);
                    const double r2 = by_size ? r0 * thread_scale(p, p->thread_scale_pk, tt, m2 / pk0)
                                              : gemm_rate(p, n, tt, bpw * np);
                    rate = (m1 + gates * m2) / (m1 / r1 + gates * m2 / r2);
                    if ((use_lr = fl_cost_has_lowrank_ih(p))) { /* by its stages instead (cost_lowrank_ih.c) */
                        fl_cost_lowrank_ih(p, w.method, d.rows / 4, d.cols, w.rank, n, t1s, tt, r1 / r0, r2 / r0, &lr);
                        lr.mem /= seq, lr.comp /= seq, lr.dup_mem /= seq, lr.dup_comp /= seq; /* per step */
                    }
                    if (t1s > tt) tt = t1s;
                } else {
                    rate = lowp ? qgemm_rate(p, q, n) : gemm_rate(p, n, tt, bpw * np);
                }
                level = fl_cost_pick_level(p, all_bytes, tt, &bw);
                if (w.method != FL_METHOD_DENSE && !lowp && !use_lr)
                    rate *= method_efficiency(p, w.method, false, n, rank_weight(w.rank, H));
            }
            /* the split part's roofline, then the part each thread does whole (0 but for a split
             * SVD / CP step; an SVD / CP W_ih by stages: stage 2, then stage 1), one after the other */
            double mem = split_share * bytes / bw, comp = split_share * flops / rate + extra;
            if (use_lr) mem = lr.mem, comp = lr.comp, dup_mem = lr.dup_mem, dup_comp = lr.dup_comp;
            c.step_bytes += bytes;
            c.step_flops += flops;
            c.mem_seconds += mem + dup_mem;
            c.compute_seconds += comp + dup_comp;
            /* the run's first read of these weights from memory (cost_run.c) */
            const double run0 = d.kind == FL_MAT_PROJ ? 0
                                : fl_cost_run_start(p, fcold, d.kind != FL_MAT_HH, bpw * np, seq, tt,
                                                    use_lr && d.kind == FL_MAT_IH ? 0 : mem, use_lr && d.kind == FL_MAT_IH ? 0 : comp);
            const double ts = max2(mem, comp) + max2(dup_mem, dup_comp) + lr.serial + run0;
            t += ts;
            if (terms)
                terms[i] = (fl_cost_term){bytes, flops, mem + dup_mem, comp + dup_comp, level, tt,
                                          comp + dup_comp >= mem + dup_mem, ts, cell_l};
            /* the bias pass: a quantized W_ih, and a head but a dense f32 one (an f32 W_ih, dense,
             * SVD or CP, fuses its biases into its last packed product) */
            if ((head && (w.method != FL_METHOD_DENSE || lowp)) || (d.kind == FL_MAT_IH && lowp)) {
                const bool last = head && a->head == FL_HEAD_LAST_STEP;
                const double out_bytes = 4.0 * batch * w.rows * (last ? 1 : seq);
                t += bias_rate(p, out_bytes) * batch * w.rows / (last ? seq : 1);
            }
        }
        /* cold: gx from memory; or the run's activations past the caches (cost_act.c, gx included) */
        const double act = fl_cost_act_seconds(p, a, batch, seq, threads);
        c.seconds = t + L * p->step_overhead + cell + cold + act + io_seconds(p, a, batch, seq);
    }
    c.working_set = (size_t)ws;
    c.threads = threads;
    fl_fit fit;
    fl_cost_fit(p, ws, threads, &fit);
    c.regime = fit.fits ? FL_REGIME_COMPUTE : FL_REGIME_MEMORY;
    *out = c;
    return FL_OK;
}
