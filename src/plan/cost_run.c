/* Cost model, a run's cold start: the weights each sequence run reads first from memory.
 *
 * A session runs layer by layer: layer l's input projection reads its W_ih once (all T B rows at
 * once), then its T steps read W_hh T times, then layer l + 1 does the same. Between two runs' reads
 * of the same W_ih the machine streams the whole run's traffic: every W_ih once, every W_hh T times,
 * and the activations. The streaming curve prices a working set read over and over (a W_hh from
 * its second step on); it says nothing of a matrix read once per run after that much other
 * traffic. Measured on the 2-vCPU Xeon (session 14, timers around the session's phases, median of
 * 40 runs in one process, a 256 MB buffer walked before every other run to empty the caches): 2 x 650
 * dense at batch 1, the input projections 70-74 us a step in plain runs and 72 after the walk (the
 * same products timed alone, back to back: 61-63); one layer of 650, 39.2 and 39.5; 2 x 650 SVD
 * rank 81, 31.7 and 32.9 us a run's step; a 1 MB 256 x 256 layer, 5.2 plain and 6.4 after the
 * walk. So a run whose traffic is several times the last level finds its weights in memory (this
 * VM's last level does not keep a matrix read once per 35 passes of a W_hh: its replacement is not
 * LRU, and co-tenants share it); a small one finds them in cache.
 *
 * The fraction from memory, f, is the profile's run_reread (profile_reread.c: a matrix read once
 * after k times the last level's usable share of other traffic, streamed as a session streams its
 * W_hh, k = 1/4 .. 4) at the run's traffic, linear in log k between the points, toward 0 below the
 * first, held above the last; 0 when not measured (older profiles: no term). The price, per step:
 *   W_ih (and a head): read once per run, its first and only pass from memory, not overlapped with
 *     the product (the packed kernel stalls on each panel: 2 x 650 dense, batch 1, the products
 *     alone price 51 us a step, the weights from the last level 13 more and from memory 23 more,
 *     against 61-63 timed alone and 70-74 in the session):
 *     t = (1 - f) max(mem, comp) + f (comp + W / (T bw_mem)), i.e. f (comp + W / (T bw_mem) -
 *     max(mem, comp)) more than the roofline; a stage-priced SVD / CP W_ih (its tables time the
 *     weights in L2, cost_lowrank_ih.c) adds f W / (T bw_mem);
 *   W_hh: its first step reads it from memory, the other T - 1 from the level holding it:
 *     f W (1 / bw_mem - 1 / bw_level) / T more (nothing when no cache level holds it).
 * bw_mem: the DRAM rate of the part's threads. */
#include "plan_internal.h"
#include "tuning_consts.h"

#include <math.h>

double fl_cost_run_fraction(const fl_profile *p, double traffic) {
    enum { NK = FL_PROFILE_REREAD_POINTS };
    if (!p || p->n_levels < 1 || !(traffic > 0)) return 0;
    const double *f = p->run_reread, C = FL_FIT_FRACTION * (double)p->level[p->n_levels - 1].bytes;
    if (!(C > 0)) return 0;
    const double x = traffic / C / fl_profile_reread_traffic(0), u = log2(x); /* u: the point's index */
    const int k = u <= 0 ? 0 : u >= NK - 1 ? NK - 2 : (int)u;
    const double v = u <= 0 ? f[0] * x : u >= NK - 1 ? f[NK - 1] : f[k] + (u - k) * (f[k + 1] - f[k]);
    return v < 0 ? 0 : v > 1 ? 1 : v;
}

double fl_cost_run_start(const fl_profile *p, double f, bool amortised, double bytes, int seq, int threads,
                         double mem, double comp) {
    if (!p || !(f > 0) || !(bytes > 0) || seq < 1 || threads < 1) return 0;
    fl_fit fit;
    if (fl_cost_fit(p, 0, threads, &fit) || !(fit.dram_rate > 0)) return 0;
    const double first = bytes / fit.dram_rate / seq; /* the run's first pass, per step */
    if (amortised) {
        const double e = comp + first - (mem > comp ? mem : comp);
        return e > 0 ? f * e : 0;
    }
    double bw;
    if (fl_cost_pick_level(p, bytes, threads, &bw) < 0 || !(bw > fit.dram_rate)) return 0;
    return f * (first - bytes / bw / seq);
}
