/* Machine profile, the machine's speed while it is measured (fl_profile.speed_*, format 7).
 *
 * Some VMs run at two speeds: on the 2-vCPU Xeon of sessions 11-16 the same kernel ran ~1.35x
 * slower, at times 2x, in spells of 4 ms to tens of seconds (neighbours on the cores' other
 * hyperthreads, most likely), and at times more than half of the samples fell in them. Every figure
 * of a profile is then typical of its passes' mix of the two speeds, and so is every prediction
 * made from it; a timing at another moment, with another mix, reads up to the ratio of the two off
 * (session 16: three `fastlstm profile --refresh` back to back read sgemm at 101, 105 and 134
 * GFLOP/s). The profile therefore times one fixed product in L2 in each pass, before and after its
 * figures, and keeps how fast it ran and how often it ran slow, so that `profile` and `plan` can
 * say so: a profile taken in a slow spell, or on a machine that keeps changing speed, is reported
 * as such rather than trusted silently. The figures themselves are left as measured (a profile
 * scaled to the fast speed would predict a speed the machine does not keep). About 3 ms a pass. */
#include "profile_internal.h"
#include "kernels/kernels.h"

#include <string.h>

fl_status fl_speed_probe_init(fl_speed_probe *s) {
    *s = (fl_speed_probe){0};
    const fl_kernels *k = fl_kernels_get();
    if (!k->gemm_pk) return FL_OK;
    s->x = fl_calloc((size_t)FL_SPEED_ROWS * FL_SPEED_K, sizeof(float));
    s->w = fl_calloc((size_t)2 * FL_SPEED_COLS * FL_SPEED_K, sizeof(float));
    s->y = fl_calloc((size_t)2 * FL_SPEED_ROWS * FL_SPEED_COLS, sizeof(float));
    if (!s->x || !s->w || !s->y) {
        fl_speed_probe_free(s);
        return fl_fail(FL_ERR_NOMEM, "out of memory for the machine's speed probe");
    }
    for (size_t i = 0; i < (size_t)FL_SPEED_ROWS * FL_SPEED_K; i++) s->x[i] = (float)((int)(i % 7) - 3) * 0.01f;
    for (size_t i = 0; i < (size_t)2 * FL_SPEED_COLS * FL_SPEED_K; i++) s->w[i] = (float)((int)(i % 5) - 2) * 0.01f;
    s->k = k;
    return FL_OK;
}

void fl_speed_probe_free(fl_speed_probe *s) {
    fl_free(s->x), fl_free(s->w), fl_free(s->y);
    *s = (fl_speed_probe){0};
}

double fl_speed_probe_sample(const fl_speed_probe *s) {
    if (!s->k) return 0;
    double t[3];
    s->k->gemm_pk(FL_SPEED_ROWS, FL_SPEED_COLS, FL_SPEED_K, s->x, FL_SPEED_K, s->w, NULL, s->y, FL_SPEED_COLS);
    for (int i = 0; i < 3; i++) {
        const double t0 = fl_now_seconds();
        s->k->gemm_pk(FL_SPEED_ROWS, FL_SPEED_COLS, FL_SPEED_K, s->x, FL_SPEED_K, s->w, NULL, s->y, FL_SPEED_COLS);
        t[i] = fl_now_seconds() - t0;
    }
    fl_sort_doubles(t, 3);
    return t[1];
}

void fl_profile_speed_stats(const double *v, int n, fl_profile *p) {
    enum { MAX = FL_PROFILE_MAX_PASSES * FL_PROFILE_SPEED_PER_PASS };
    double s[MAX];
    int m = 0;
    for (int i = 0; i < n && m < MAX; i++)
        if (v[i] > 0) s[m++] = v[i];
    p->speed_fastest = p->speed_median = p->speed_p90 = p->speed_slow = 0;
    p->speed_samples = m;
    if (m == 0) return;
    fl_sort_doubles(s, (size_t)m);
    int slow = 0;
    for (int i = 0; i < m; i++) slow += s[i] >= FL_PROFILE_SPEED_SLOW * s[0];
    p->speed_fastest = s[0];
    p->speed_median = s[m / 2];
    p->speed_p90 = s[(9 * (m - 1) + 5) / 10]; /* the nearest rank to 0.9 (m - 1) */
    p->speed_slow = (double)slow / m;
}
