/* Internal pieces of the machine profile shared by profile_detect.c, profile.c (measurement),
 * profile_knee.c and profile_io.c, and used by the tests. */
#ifndef FL_PROFILE_INTERNAL_H
#define FL_PROFILE_INTERNAL_H

#include "internal.h"
#include "fastlstm/plan.h"

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

/* out[i] = median over the n_passes passes of passes[p * n + i] (the upper one of the middle two
 * for an even count), i < n; 1 <= n_passes <= FL_PROFILE_PASSES + 2, n <= FL_PROFILE_MAX_CURVE. */
void fl_profile_curve_median(const double *passes, int n_passes, int n, double *out);

/* Apply measured levels to p: the levels found on the one-thread curve (knees1, n1) become p's
 * levels 1..n1 with those capacities; the reported level each is paired with (by position when
 * the counts agree and no level is 1.5x larger than its reported one but the last, else the nearest
 * in log size that is not 1.5x smaller than it, the last reported level always allowed) gives its
 * number and reported_bytes; measured levels past the one paired with the last reported level
 * become part of it (one level to the last knee, at the slowest plateau); a level whose capacity grows by >= 1.5x with all cores streaming (knees_all,
 * n_all, matched by position when both curves show the same number of levels) is private
 * (shared_cpus 1), else shared by all cores; a level below p->parallel_step_bytes (where the
 * runtime streams on one thread, so the all-cores curve says nothing) and unmatched curves keep the
 * reported sharing. n1 == 0 leaves p's reported levels alone. */
void fl_profile_apply_levels(fl_profile *p, const fl_knee *knees1, int n1, const fl_knee *knees_all,
                             int n_all);

/* Measure p->qrec_flops[q] and p->qgemm_flops[q] (q BF16 or INT8) with the dispatched quant kernels
 * (profile.c; part of fl_profile_measure). p's cell figures must be set (0: not subtracted). */
fl_status fl_profile_measure_quant(fl_profile *p, fl_precision q);

#endif
