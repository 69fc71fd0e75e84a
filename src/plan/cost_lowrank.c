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
 * lr_panel_seconds: weights in L2, at ranks 16..256 and rows 1..256) and the streaming curve:
 *   proj:  mem = V / bw_w + (passes - 1) V / bw_1(V),  comp = rows K s_proj(Rp, rows)
 *          (the first pass reads V from where the step's working set W = V + U lives, the others
 *          from where V alone does);
 *   panel: mem = U / (n bw_w),  comp = B H' s_panel(R, B) / scale_n(B)
 *          (H' = H rounded up to the 16-unit blocks, the cell update inside s_panel);
 *   copy:  rows 16 H gx_copy_seconds (0 where the kernels read gx in place: the panel figures then
 *          carry those reads, profile_lowrank.c),
 *   t = max(proj) + max(panel) + copy (+ sync, split by blocks).
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
 * step, thread_scale_rec, not n: 1.39-1.50 on the 2-vCPU Xeon), its own rows' copy. s_proj and s_panel interpolate linearly in the rank between the grid's ranks (the
 * time per unit is affine in it: a fixed cost per unit and row, then per k), extended along the
 * last segment beyond 256, and linearly in log rows, held beyond 1 and 256. CP's scaling (4 R
 * multiplies a row) is left out, and so is rec_memory_factor (a low-rank W_hh beyond the last
 * level is no candidate the planner meets at batch > 1). */
#include "plan_internal.h"
#include "fastlstm/plan.h"

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

void fl_cost_lowrank_step(const fl_profile *p, fl_method m, int H, int K, int R, int batch, int tt, bool by_rows,
                          double sync, fl_lr_cost *out) {
    const double Rp = (double)((R + NB - 1) / NB * NB), Hb = (double)((H + NB - 1) / NB * NB);
    const bool cp = m == FL_METHOD_CP;
    const double vb = 4.0 * (K * Rp + (cp ? 4.0 * R : 0.0)), ub = 4.0 * R * (cp ? Hb : 4.0 * Hb), W = vb + ub;
    const int n = tt > 1 ? tt : 1, rows = by_rows ? (batch + n - 1) / n : batch;
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
    out->dup_mem = vb / bw_w + (passes - 1) * vb / bw_v;
    out->dup_comp = rows * (double)K * fl_cost_lr_table(p->lr_proj_seconds, Rp, rows);
    const bool split = n > 1 && !by_rows;
    out->mem = ub / (split ? n * bw_w : bw_w);
    out->comp = rows * Hb * fl_cost_lr_table(p->lr_panel_seconds[m], R, rows);
    if (split) out->comp /= fl_cost_rec_scale(p, n, batch);
    if (n > 1 && by_rows) { /* n threads computing at once deliver the measured speed-up, not n */
        const double slow = n / fl_cost_rec_scale(p, n, batch);
        out->dup_comp *= slow, out->comp *= slow;
    }
    out->serial = (rows > 1 ? rows * 16.0 * H * p->gx_copy_seconds : 0.0) + (split ? sync : 0.0);
}
