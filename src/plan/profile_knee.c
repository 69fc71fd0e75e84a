/* Cache capacities from a streaming curve: the pure part of the profile's measurement.
 *
 * The profile streams the runtime's own recurrent step over a ladder of working sets and records
 * the rate at each (profile.c). Reported cache sizes are not trusted: a virtual machine may have no
 * cache directory in sysfs, and glibc's sysconf then reports a 508 MiB L3 on a machine whose L3 is
 * 32 MiB. What the planner needs is the *effective* capacity: the largest working set that still
 * streams at nearly the level's own rate on this machine now, with whatever co-tenants share the
 * last level. That is read off the curve here: plateaus are found by segmenting the curve, and a
 * level's capacity is its knee, the largest working set still at >= 80% of its plateau (the exact
 * definition is at fl_profile_find_levels in profile_internal.h). A co-tenant that occupies part of
 * a shared L3 moves the fall to a smaller working set, so the measured knee is already the share
 * this process can count on; the cost model then keeps a further fit fraction of it (cost.c). */
#include "profile_internal.h"

#include <math.h>
#include <string.h>

static double median3(double a, double b, double c) {
    if (a > b) { double t = a; a = b; b = t; }
    if (b > c) b = c;
    return a > b ? a : b;
}

/* Median of v[0..n), n <= FL_PROFILE_MAX_CURVE (the upper one of the middle two for even n). */
static double median(const double *v, int n) {
    double t[FL_PROFILE_MAX_CURVE];
    memcpy(t, v, (size_t)n * sizeof *t);
    for (int i = 1; i < n; i++) /* insertion sort: n is small */
        for (int j = i; j > 0 && t[j - 1] > t[j]; j--) {
            double x = t[j];
            t[j] = t[j - 1], t[j - 1] = x;
        }
    return t[n / 2];
}

void fl_profile_curve_median(const double *passes, int n_passes, int n, double *out) {
    double v[FL_PROFILE_MAX_DRAWS];
    if (n_passes > FL_PROFILE_MAX_DRAWS) n_passes = FL_PROFILE_MAX_DRAWS;
    for (int i = 0; i < n && i < FL_PROFILE_MAX_CURVE; i++) {
        for (int q = 0; q < n_passes; q++) v[q] = passes[(size_t)q * n + i];
        out[i] = median(v, n_passes);
    }
}

void fl_profile_curve_max(const double *passes, int n_passes, int n, double *out) {
    if (n_passes > FL_PROFILE_MAX_DRAWS) n_passes = FL_PROFILE_MAX_DRAWS;
    for (int i = 0; i < n && i < FL_PROFILE_MAX_CURVE; i++) {
        out[i] = passes[i];
        for (int q = 1; q < n_passes; q++) out[i] = fmax(out[i], passes[(size_t)q * n + i]);
    }
}

void fl_profile_knees_best(fl_knee *kall, int nall, const fl_knee *kbest, int nbest) {
    if (nall != nbest) return; /* the best curve shows other levels: nothing to pair */
    for (int i = 0; i + 1 < nall; i++)
        if (kbest[i].bytes > kall[i].bytes) kall[i].bytes = kbest[i].bytes;
}

void fl_profile_curve_lift_dips(double *bw, int n) {
    /* from the large end: bw[i + 1..] still hold what was measured when bw[i] is lifted, as the
     * window's maximum is kept over the measured values (m), not the lifted ones */
    double m[FL_CURVE_DIP_WINDOW] = {0};
    for (int i = n - 1; i >= 0; i--) {
        double hi = 0;
        for (int j = 0; j < FL_CURVE_DIP_WINDOW; j++) hi = m[j] > hi ? m[j] : hi;
        memmove(m + 1, m, (FL_CURVE_DIP_WINDOW - 1) * sizeof *m);
        m[0] = bw[i];
        if (bw[i] < hi) bw[i] = hi;
    }
}

int fl_profile_find_levels(const size_t *bytes, const double *bw, int n, fl_knee *out, int max_levels,
                           double *memory_bw) {
    if (memory_bw) *memory_bw = 0;
    if (n < 2 || max_levels < 1) return 0;
    /* s: (n) the curve with single-point noise removed */
    double s[FL_PROFILE_MAX_CURVE];
    if (n > FL_PROFILE_MAX_CURVE) n = FL_PROFILE_MAX_CURVE;
    for (int i = 0; i < n; i++)
        s[i] = i == 0 || i == n - 1 ? bw[i] : median3(bw[i - 1], bw[i], bw[i + 1]);
    int found = 0, start = 0;
    double mem = 0;
    while (start < n) {
        double plateau = s[start];
        int end = start;
        while (end + 1 < n && s[end + 1] >= FL_KNEE_FRACTION * plateau) {
            end++;
            plateau = median(s + start, end - start + 1);
        }
        /* the last segment is memory; so is one followed by fewer points than a plateau needs (a
         * slow sample at the top of the ladder is no level beyond memory) */
        if (end >= n - FL_KNEE_MIN_POINTS) {
            mem = plateau;
            break;
        }
        if (end - start + 1 >= FL_KNEE_MIN_POINTS && found > 0 && plateau >= FL_KNEE_FRACTION * out[found - 1].plateau) {
            /* no fall from the level before: a dip inside one level (a neighbour's burst in most
             * passes), not a boundary; that level goes on to here */
            fl_knee *k = &out[found - 1];
            k->bytes = bytes[end], k->last = end;
            k->plateau = median(s + k->first, end - k->first + 1);
        } else if (end - start + 1 >= FL_KNEE_MIN_POINTS && found < max_levels) {
            out[found++] = (fl_knee){bytes[end], plateau, start, end};
        }
        start = end + 1;
    }
    /* the fall past the last cache's knee, where part of the working set still hits it, is no level */
    while (found > 0 && mem > 0 && out[found - 1].plateau < FL_LEVEL_OVER_MEMORY * mem) found--;
    if (memory_bw) *memory_bw = mem;
    return found;
}

static double log_ratio(size_t a, size_t b) { return fabs(log((double)a / (double)b)); }

/* Whether measured level i can be reported level j: a level that streams well past 1.5x a reported
 * level's size is served by a larger one (where L2 and L3 stream alike the curve shows one level,
 * whose knee past the L2 is the L3's share), so only the last reported level may be smaller. */
static bool can_be(const fl_knee *k, const fl_cache_level *rep, int nrep, int j) {
    return j == nrep - 1 || (double)k->bytes <= 1.5 * (double)rep[j].bytes;
}

/* Whether p's one-thread curve falls across `size` inside measured level k's segment (a reported
 * level the knees ran through: see fl_profile_apply_levels): FL_KNEE_MIN_POINTS or more points on
 * either side of it, and the median rate past it under FL_LEVEL_FALL x the median up to it. Then
 * *bytes is the largest curve point within `size`, *near the median rate up to it, *far past it. */
static bool fall_across(const fl_profile *p, const fl_knee *k, size_t size, size_t *bytes, double *near,
                        double *far) {
    if (p->n_curve <= k->last || k->first < 0) return false;
    int at = -1;
    for (int i = k->first; i <= k->last; i++)
        if (p->curve_bytes[i] <= size) at = i;
    if (at < 0 || at - k->first + 1 < FL_KNEE_MIN_POINTS || k->last - at < FL_KNEE_MIN_POINTS) return false;
    *near = median(p->curve_bandwidth + k->first, at - k->first + 1);
    *far = median(p->curve_bandwidth + at + 1, k->last - at);
    *bytes = p->curve_bytes[at];
    return *far < FL_LEVEL_FALL * *near;
}

void fl_profile_apply_levels(fl_profile *p, const fl_knee *knees1, int n1, const fl_knee *kall, int n_all) {
    if (n1 <= 0) return;
    if (n1 > FL_PROFILE_MAX_LEVELS) n1 = FL_PROFILE_MAX_LEVELS;
    fl_knee k1[FL_PROFILE_MAX_LEVELS];
    memcpy(k1, knees1, (size_t)n1 * sizeof *k1);
    fl_cache_level rep[FL_PROFILE_MAX_LEVELS];
    const int nrep = p->n_levels;
    memcpy(rep, p->level, sizeof rep);
    /* match[i]: the reported level paired with measured level i (-1 none), in increasing order:
     * by position when the counts agree and each can be its own (can_be), else each to the nearest
     * remaining one in log size among those it can be */
    bool by_position = nrep == n1;
    for (int i = 0; i < n1 && by_position; i++) by_position = can_be(&k1[i], rep, nrep, i);
    int match[FL_PROFILE_MAX_LEVELS], next = 0;
    for (int i = 0; i < n1; i++) {
        match[i] = -1;
        if (by_position) {
            match[i] = i;
            continue;
        }
        int best = -1;
        for (int j = next; j < nrep; j++) {
            if (!can_be(&k1[i], rep, nrep, j)) continue;
            if (best < 0 || log_ratio(k1[i].bytes, rep[j].bytes) < log_ratio(k1[i].bytes, rep[best].bytes))
                best = j;
        }
        if (best >= 0) match[i] = best, next = best + 1;
    }
    /* measured levels past the one paired with the last reported level are that level with a dip
     * inside it (a co-tenant's share of it changing during the ladder): one level to the last knee,
     * at the slowest of their plateaus */
    for (int i = 0; i < n1 - 1; i++) {
        if (nrep == 0 || match[i] != nrep - 1) continue;
        for (int j = i + 1; j < n1; j++)
            if (k1[j].plateau < k1[i].plateau) k1[i].plateau = k1[j].plateau;
        k1[i].bytes = k1[n1 - 1].bytes, k1[i].last = k1[n1 - 1].last;
        n1 = i + 1;
    }
    fl_cache_level lv[FL_PROFILE_MAX_LEVELS];
    int n = 0;
    /* reported levels below the first match stream like it (the curve could not tell them apart):
     * kept as reported when smaller than the first measured capacity */
    const int first = match[0] >= 0 ? match[0] : 0;
    for (int j = 0; j < first && j < nrep; j++)
        if (rep[j].bytes < k1[0].bytes && n < FL_PROFILE_MAX_LEVELS) lv[n++] = rep[j];
    for (int i = 0; i < n1 && n < FL_PROFILE_MAX_LEVELS; i++) {
        /* a reported level between the one paired with the level before and this one's, which this
         * level's segment runs through while the curve falls across it, is kept (up to the curve's
         * last point within it, at the rate up to there); this level keeps the rate past it */
        for (int j = i > 0 && match[i - 1] >= 0 ? match[i - 1] + 1 : nrep; j < match[i] && n < FL_PROFILE_MAX_LEVELS; j++) {
            size_t b;
            double near, far;
            if (!fall_across(p, &k1[i], rep[j].bytes, &b, &near, &far)) continue;
            if (n && (rep[j].level <= lv[n - 1].level || b <= lv[n - 1].bytes)) continue;
            lv[n] = rep[j], lv[n].bytes = b, lv[n].bandwidth = near, lv[n].all_cores_bytes = 0;
            n++;
            k1[i].plateau = far;
        }
        fl_cache_level l = {0};
        l.level = match[i] >= 0 ? rep[match[i]].level : (n ? lv[n - 1].level + 1 : 1);
        if (n && l.level <= lv[n - 1].level) l.level = lv[n - 1].level + 1;
        l.bytes = k1[i].bytes;
        if (n && l.bytes <= lv[n - 1].bytes) continue; /* capacities must grow */
        l.reported_bytes = match[i] >= 0 ? rep[match[i]].reported_bytes : 0;
        l.bandwidth = k1[i].plateau;
        /* below the runtime's parallel threshold the all-cores ladder runs on one thread: no evidence */
        const bool split = !(p->parallel_step_bytes > 0 && (double)k1[i].bytes < p->parallel_step_bytes);
        if (n_all == n1) l.all_cores_bytes = kall[i].bytes;
        if (n_all == n1 && split) {
            l.shared_cpus = (double)kall[i].bytes >= 1.5 * (double)k1[i].bytes ? 1 : (p->cores > 1 ? p->cores : 1);
        } else {
            l.shared_cpus = match[i] >= 0 ? rep[match[i]].shared_cpus : (i == n1 - 1 && p->cores > 1 ? p->cores : 1);
        }
        lv[n++] = l;
    }
    memcpy(p->level, lv, sizeof lv);
    p->n_levels = n;
}

/* The report is trusted up to this many times the knee: a VM may misreport a level (glibc's sysconf
 * puts this VM's 32 MiB L3 at 508 MiB). On the Zen 5 of session 21 the dense step's curve falls 20-30%
 * past 213 KiB (hidden 115 -> 128), its own slowdown at K >= 128, and stays there to the 1 MiB L2's
 * end; the profile read that fall as the L2's knee in 14 of 31 profiles (4.9x under the report),
 * while the SVD panel timed alone streams at a rate set by its rank up to 768 KiB and falls only
 * past 1 MiB (bench/bench_lr_sizes.c). */
#define PRIVATE_REPORT_MAX 8.0

double fl_profile_private_bytes(const fl_profile *p) {
    if (!p || p->n_levels < 1) return 0;
    const fl_cache_level *l = &p->level[fl_profile_private_level(p)];
    const double knee = (double)l->bytes, rep = (double)l->reported_bytes;
    return rep > knee && rep <= PRIVATE_REPORT_MAX * knee ? rep : knee;
}
