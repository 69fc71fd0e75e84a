/* Cost model, the f32 SVD / CP recurrent step priced by its parts (a profile with the low-rank
 * figures, fl_profile.lr_*: format 3). fl_rec_step runs such a step as
 *   gx copy   B > 1: the step's B rows of gx (4H floats each) copied into a buffer in cache, on the
 *             calling thread (recurrent.c: why);
 *   proj      t = V h (CP: z = C^T h, then zs = a o z): V packed as (K, Rp), Rp = R rounded up to 16,
 *             ceil(B / PROJ_ROWS) passes over V (the kernel's row tiles of 3), every thread its own
 *             whole projection when the step is split;
 *   panel     the gate kernel at K = R over the hidden blocks (SVD's U: R x 4H floats; CP's B: R x H
 *             floats shared by the four gates), the cell update fused, split across the threads by
 *             blocks.
 * Each part's roofline, from the profile's timings of the kernels themselves (lr_proj_seconds,
 * lr_panel_seconds: weights in L2, at ranks 16..256 and rows 1..256; format 5: the panels at rows
 * > 1 writing h walking a sequence's output rows, as a session's steps do) and the streaming curve:
 *   proj:  mem = V / bw_w + (passes - 1) V / bw_1(V),  comp = rows K s_proj(Rp, rows)
 *          (the first pass reads V from where the step's working set W = V + U lives, the others
 *          from where V alone does; a V past the private level (1500 SVD h/4: 2.3 MB) at the last
 *          level's streaming rate, blended by V's size as below: the curve's ~50 GB/s at 2.3 MB, in
 *          its fall from L2 to L3, priced the proj of a batch-20 step at 714 us, both layers,
 *          against 1107 timed alone: 29 GB/s, the last level's rate. Session 14 took the far proj
 *          kernel's one-row figure, K s_proj_far(Rp, 1) a pass, which read 26 GB/s at rank 256
 *          then; it is one cold pass over a fresh copy of V, and in session 16's profiles it read
 *          14-18 GB/s, so six passes at it priced 1500 SVD rank 384 at batch 20 1.14x its time
 *          relative to rank 256 (paired rounds, one thread: ranks 320 / 384 / 448 predicted 1.33 /
 *          1.72 / 2.14 x rank 256's time, measured 1.24 / 1.51 / 1.80; at the last level's rate 1.26 /
 *          1.58 / 1.89));
 *   panel: mem = U / (n bw_w),  comp = B H' s_panel(R, B) / scale_n(B)
 *          (H' = H rounded up to the 16-unit blocks, the cell update inside s_panel);
 *   copy:  rows 16 H gx_copy_seconds (0 where the kernels read gx in place: the panel figures then
 *          carry those reads, profile_lowrank.c),
 *   t = max(proj) + max(panel) + copy (+ sync, split by blocks).
 * s_proj and s_panel are the near tables (weights in L2) plus a share f of the far tables' excess
 * over them (format 5: lr_*_far_seconds, the same kernels with each call's weights from beyond the
 * private level). f is the share of a thread's working set (one thread and by rows: W; split by
 * blocks: V + U / n) that the streaming curve reads from beyond the private level
 * (fl_cost_lr_far_share): 0 up to that level's measured capacity (its knee), then f with
 * 1 / bw(W) = (1 - f) / bw_private + f / bw_last (the curve's time per byte at W between the two
 * levels' plateaus), 1 once the curve is down to the last level's rate. Timed alone, a proj whose
 * V fits keeps V in L2 from call to call; inside a step whose W does not fit, U's stream evicts
 * it, so its first pass reads V from the last level, and U streams from there too (1500 SVD h/16
 * batch 20: W 2.8 MB past a 1.44 MB knee; the near tables priced the steps at 512 us, measured
 * 589 on one gx, 614 walking gx, ~700 in the session). The curve's share, not a ramp from the
 * knee: the L2 keeps part of a cyclic stream somewhat larger than itself, and at batch 1, where
 * the row-1 figures are the streams themselves (near ~120 GB/s, far ~27), the blend then prices
 * the weights as the curve does (a ramp from the knee to twice it read 650 SVD h/4 batch 1, W 2.16
 * MB, 0.73 far where the curve reads 0.47: measured / predicted 0.73 against 0.95).
 * The far excess is the wait on the last level, not compute: on n threads it goes at the rate n
 * threads stream from that level (its all-cores rate over its one-core rate, at most n: 1.92 on
 * the 2-vCPU Xeon), not at the compute speed-up (1.39-1.50). Split by blocks each thread reads its
 * share of U, and V's excess is not paid: the threads' projections read the same V in the same
 * microseconds (the lines one core brings from the last level the other finds in flight or next
 * door), which the mem term's all-cores rate already prices. By rows every thread reads all of V
 * and U, the threads the same lines at once, so for the same reason the excess is paid once, at
 * that rate (as n times one thread's it priced 1500 SVD h/8 batch 20 on two threads at 1258-1289
 * us against 978-1011 measured in session 14's two quiet runs: 0.78; paid once, 41 -> 44 and 47 ->
 * 48 of 48 within 15% there, and 42 -> 43 in lrfar's quiet run, 38 -> 35-39 in its five busy ones). Four bench_plan runs
 * (10:55-11:12, each priced from its own profile) read 1500 SVD h/4, h/8 and CP h/4 at batch 1 on
 * two threads at measured / predicted 0.69-0.89 with V's excess (0.76-0.81 with the panel's at
 * the compute speed-up too), 0.87-1.02 without; 140 of 192 candidates within 15% against 144.
 * One thread at one row takes no far excess (session 16): its step re-reads the same V and U every
 * step, which the mem terms price from the streaming curve, while the far tables' one-row figures
 * are one cold pass over a fresh copy (14-18 GB/s in session 16's profiles, against the curve's
 * 27-30). 1500 CP at batch 1, one thread, paired rounds against rank 256: ranks 64 / 94 / 128 / 192
 * at 0.61 / 0.75 / 0.87 / 0.96 of their measured ratio with it, 1.04 / 1.01 / 0.99 / 0.86 without;
 * seven saved bench_plan runs rescored, the candidates within 10% of each run's median measured /
 * predicted 164 -> 179 of 240, within 15% of the measurement 238 -> 237 of 336 (commit 1e3a150
 * said 239: a miscount). Split over threads the excess stays: without it run H's 1500 SVD h/8, h/16
 * and CP h/4 at batch 1 on two threads read 1.26-1.28 (0.97-1.10 with it).
 * That holds where the far tables' one-row figures are such a cold pass. On the 2-vCPU Zen 5 (session
 * 20) they read the last level instead (the SVD panel at rank 256 and one row at 0.76-1.06 of the last
 * level's rate in ten profiles; DRAM 24-41 GB/s), the runtime's low-rank panel streams from there at
 * that rate, not at the dense step's (the streaming curve: 65-99 GB/s at 5-12 MB, moving with the
 * co-tenants), and the one-thread one-row steps read 1.11-1.17x their prediction in four bench_plan
 * runs; so where the far figures read the last level (far_row1_cached) the excess is taken at one
 * row too: those four runs rescored 146 -> 154 of 192 within 15%, three runs taken after the change
 * was written 124 -> 126 of 144 (1500 SVD h/4, h/8 and CP h/4 at one row, one thread: 1.13, 1.09,
 * 1.13 -> 1.06, 1.07, 1.09), ten runs in all 389 -> 405 of 480.
 * Without far tables (older profiles) the near tables alone, as before.
 * bw_w is one thread's share of the rate at which the step's threads stream their working set: one
 * thread: the one-thread curve at W; split (n threads by blocks): each thread streams its V and
 * its share of U (n V + U in all, each core's private level holding its own part) in the time the
 * n-thread curve gives n V + U less the sync that time includes (fl_cost_thread_sync is read off the
 * same curves: held at half the curve's time), the sync then paid once (before, the split step
 * paid it on the panel's compute and again inside the streaming rate: 650 SVD h/8 batch 1 on two
 * threads priced 10.2 us a layer-step against 7.5 measured); by rows (each thread
 * its ceil(B / n) rows of the whole step, fl_rows_auto): the rate of n threads streaming W each
 * (cost.c's placement) over n, and each thread's parts at its rows on one thread's rates slowed by
 * n / scale_n(B) (n threads computing at once deliver the speed-up the profile measures for a split
 * step, thread_scale_rec, not n: 1.39-1.50 on the 2-vCPU Xeon), its own rows' copy. s_proj and
 * s_panel interpolate linearly in the rank between the grid's ranks (the
 * time per unit is affine in it: a fixed cost per unit and row, then per k), extended along the
 * last segment beyond 256, and linearly in log rows, held beyond 1 and 256. CP's scaling (4 R
 * multiplies a row) is left out, and so is rec_memory_factor (a low-rank W_hh beyond the last
 * level is no candidate the planner meets at batch > 1). */
#include "plan_internal.h"
#include "fastlstm/plan.h"
#include "tuning_consts.h"

#include <math.h>

enum { PROJ_ROWS = 3, NB = 16 };

bool fl_cost_has_lowrank(const fl_profile *p) {
    return p->lr_proj_seconds[0][0] > 0 && p->lr_panel_seconds[FL_METHOD_SVD][0][0] > 0 &&
           p->lr_panel_seconds[FL_METHOD_CP][0][0] > 0;
}

/* Table t at rows `rows` of rank row j: linear in log rows between 1, 4, 16, 64, 256, held outside. */
static double at_rows(const double *t, double rows) {
    if (rows <= 1) return t[0];
    const double u = log(rows) / log(4.0); /* rows 4^u */
    if (u >= FL_PROFILE_LR_ROWS - 1) return t[FL_PROFILE_LR_ROWS - 1];
    const int k = (int)u;
    return t[k] + (u - k) * (t[k + 1] - t[k]);
}

double fl_cost_lr_table(const double (*t)[FL_PROFILE_LR_ROWS], double rank, double rows) {
    const int n = FL_PROFILE_LR_RANKS;
    int j = 0; /* the segment [16 << j, 16 << (j + 1)] holding the rank, the last one beyond */
    while (j < n - 2 && rank > (double)(16 << (j + 1))) j++;
    const double r0 = 16 << j, r1 = 16 << (j + 1), a = at_rows(t[j], rows), b = at_rows(t[j + 1], rows);
    const double u = rank <= 16 ? 0 : (rank - r0) / (r1 - r0), v = a + u * (b - a);
    return u > 1 && v < b ? b : v; /* extended beyond the last rank: never below its figure */
}

double fl_cost_lr_far_share(const fl_profile *p, double bytes) {
    if (!(p->lr_proj_far_seconds[0][0] > 0) || p->n_levels < 2) return 0;
    const int ip = fl_profile_private_level(p); /* its measured capacity, the knee */
    const double near = p->level[ip].bandwidth, far = p->level[p->n_levels - 1].bandwidth;
    if (ip == p->n_levels - 1 || !(far > 0) || !(near > far) || bytes <= (double)p->level[ip].bytes) return 0;
    double bw;
    fl_cost_pick_level(p, bytes, 1, &bw);
    const double f = (1 / bw - 1 / near) / (1 / far - 1 / near);
    return f < 0 ? 0 : f > 1 ? 1 : f;
}

/* The far table's excess over the near one, share f of it, at rank and rows (0 at f = 0). */
static double excess(const double (*near)[FL_PROFILE_LR_ROWS], const double (*far)[FL_PROFILE_LR_ROWS], double f,
                     double rank, double rows) {
    return f > 0 ? f * (fl_cost_lr_table(far, rank, rows) - fl_cost_lr_table(near, rank, rows)) : 0;
}

/* n threads streaming from the last level at once: their rate over one thread's (the level's
 * all-cores rate over its one-core rate, else the level rates' 1 + 0.75 (n - 1)), 1..n. */
static double far_gain(const fl_profile *p, int n) {
    if (n <= 1) return 1;
    const fl_cache_level *l = &p->level[p->n_levels - 1];
    const double g = l->all_cores_bandwidth > 0 && l->bandwidth > 0 ? l->all_cores_bandwidth / l->bandwidth
                                                                      : 1 + 0.75 * (n - 1);
    return g > n ? n : g < 1 ? 1 : g;
}

/* Whether the far tables' one-row figures read the last level: the SVD panel at rank 256 and one
 * row streams its U (16 R bytes a unit) at >= FAR_CACHED of the last level's plateau rate (the Zen 5
 * of session 20: 0.76-1.06 in ten profiles; the Xeon of session 16: 14-18 GB/s against 27-30, about
 * 0.5-0.65). Where they read slower, each call's weights came from memory, a cold pass that no step
 * re-reading its weights meets, so a one-thread step at one row takes no far excess (below). */
#define FAR_CACHED 0.7
static bool far_row1_cached(const fl_profile *p) {
    const double s = fl_cost_lr_table(p->lr_panel_far_seconds[FL_METHOD_SVD], 256, 1);
    const double last = p->level[p->n_levels - 1].bandwidth;
    return s > 0 && last > 0 && 16.0 * 256 / s >= FAR_CACHED * last;
}

/* Whether a one-thread step's working set of `bytes` fits the usable share of the private level
 * (fl_profile_private_bytes: the larger of its knee and its reported size, the report up to 8x the
 * knee). The near tables time the kernels with their weights cycling in that level, so such a step
 * is priced by them alone: no streaming term off the dense curve and no far excess. The dense curve
 * is no guide there: it is the dense step at hidden sqrt(bytes / 16), whose own speed falls with its
 * K (the Zen 5 of session 21: 130 GB/s at hidden 112, 98 at 128, to 1 MiB), while the SVD panel's
 * rate is set by its rank up to 768 KiB (rank 32: 111-134 GB/s, rank 96: 123-130, rank 128: 95-102, hidden 64 to 1536;
 * bench/bench_lr_sizes.c); the curve's term priced 2 x 650 SVD h/16 at batch 1 (545 KB a layer)
 * at 1 / 0.84 of its measured time (median of 31 bench_plan runs; 15 outside 15%, 1 now). */
static bool in_private(const fl_profile *p, double bytes) {
    return p->n_levels >= 2 && bytes <= FL_FIT_FRACTION * fl_profile_private_bytes(p);
}

void fl_cost_lowrank_step(const fl_profile *p, fl_method m, int H, int K, int R, int batch, int tt, bool by_rows,
                          double sync, fl_lr_cost *out) {
    const double Rp = (double)((R + NB - 1) / NB * NB), Hb = (double)((H + NB - 1) / NB * NB);
    const bool cp = m == FL_METHOD_CP;
    const double vb = 4.0 * (K * Rp + (cp ? 4.0 * R : 0.0)), ub = 4.0 * R * (cp ? Hb : 4.0 * Hb), W = vb + ub;
    const int n = tt > 1 ? tt : 1, rows = by_rows ? (batch + n - 1) / n : batch;
    /* the share of the far tables: by a thread's working set, its V and its share of U (by rows:
     * all of U, each thread its own copy in its own private level) */
    const bool near = n == 1 && in_private(p, W);
    const double f = near ? 0 : fl_cost_lr_far_share(p, n > 1 && !by_rows ? vb + ub / n : W);
    double bw_w, bw_v;
    if (n == 1) {
        fl_cost_pick_level(p, W, 1, &bw_w);
    } else if (by_rows) {
        double bw1;
        const int l1 = fl_cost_pick_level(p, W, n, &bw1);
        fl_cost_pick_level(p, n * W, n, &bw_w); /* n copies, one per core's private level ... */
        if (l1 >= 0 && p->level[l1].shared_cpus > 1) bw_w = bw1; /* ... or one held by a shared one */
        bw_w /= n;
    } else { /* the n-thread curve's time at n V + U less the sync it includes (held at half of it) */
        const double tot = n * vb + ub;
        fl_cost_pick_level(p, tot, n, &bw_w);
        const bool curve = p->n_curve_all > 0 && n == p->curve_all_threads; /* else level rates: no sync in them */
        const double tc = tot / bw_w, ts = !curve ? tc : tc - sync > 0.5 * tc ? tc - sync : 0.5 * tc;
        bw_w = tot / ts / n;
    }
    fl_cost_pick_level(p, vb, 1, &bw_v);
    const int passes = (rows + PROJ_ROWS - 1) / PROJ_ROWS;
    /* the passes after the first read V from where V alone lives: past the private level, at the
     * last level's streaming rate, blended as the tables are by V's size */
    const double fv = fl_cost_lr_far_share(p, vb), pass_v = vb / bw_v, bw_last = p->level[p->n_levels - 1].bandwidth;
    const double pass = fv > 0 && bw_last > 0 ? pass_v + fv * (vb / bw_last - pass_v) : pass_v;
    out->dup_mem = near ? 0 : vb / bw_w + (passes - 1) * pass;
    out->dup_comp = rows * (double)K * fl_cost_lr_table(p->lr_proj_seconds, Rp, rows);
    const bool split = n > 1 && !by_rows;
    out->mem = near ? 0 : ub / (split ? n * bw_w : bw_w);
    out->comp = rows * Hb * fl_cost_lr_table(p->lr_panel_seconds[m], R, rows);
    if (split) out->comp /= fl_cost_rec_scale(p, n, batch);
    if (n > 1 && by_rows) { /* n threads computing at once deliver the measured speed-up, not n */
        const double slow = n / fl_cost_rec_scale(p, n, batch);
        out->dup_comp *= slow, out->comp *= slow;
    }
    /* the far tables' excess: the wait on the last level, at n threads' rate from it; for one
     * thread at one row only where the far figures read the last level: where they are one cold
     * pass over a fresh copy of the weights (14-18 GB/s in session 16's profiles, the curve 27-30)
     * the step, which re-reads the same V and U every step as the streaming curve does, is priced by
     * the mem terms alone */
    if (f > 0 && (rows > 1 || n > 1 || far_row1_cached(p))) {
        const double g = far_gain(p, n);
        const double xv = rows * (double)K * excess(p->lr_proj_seconds, p->lr_proj_far_seconds, f, Rp, rows);
        const double xu = rows * Hb * excess(p->lr_panel_seconds[m], p->lr_panel_far_seconds[m], f, R, rows);
        if (!split) out->dup_comp += xv / g; /* by rows: all read all of V and U at once, the wait paid once */
        out->comp += xu / g;                  /* split: each thread its share of U */
    }
    out->serial = (rows > 1 ? rows * 16.0 * H * p->gx_copy_seconds : 0.0) + (split ? sync : 0.0);
}
