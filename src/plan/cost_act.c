/* A session's activations: what a run moves besides the weights, and what that costs once the run's
 * buffers outgrow the caches (profile format 8).
 *
 * fl_session_run copies the input into its packed time-major buffer (after scanning it for NaN),
 * projects each layer's whole sequence into one (T B, 4H) gx buffer, walks it step by step writing
 * the layer's outputs into one of two (T B, W) sequence buffers, and copies the top layer's
 * outputs into y. The kernels' own figures (the profile's tables) are taken with those rows in
 * cache; the streaming ladder that finds the last level's capacity reads one buffer and writes
 * nothing. On the 2-vCPU Xeon a 2 x 1500 SVD rank-8 session at batch 20 cost 378 / 415 / 592 / 648
 * us a step at seq 5 / 10 / 35 / 70 (buffers 5 / 11 / 38 / 76 MB) while the model read 456-507 flat,
 * though the ladder put the last level at 92 MB; at rank 375 the same lengths cost the same (the
 * traffic hides under the arithmetic); docs/planner.md, "Session 17".
 *
 * So the profile times whole sessions of a small-rank model (SVD rank 8, ACT_H units, 2 layers,
 * batch ACT_B, one thread) at the lengths act_seq (footprints 1.7 to 81 MB), each paired round by round
 * with the shortest (fl_time_interleaved), and keeps, per footprint, the extra seconds a step over
 * the shortest length's, per byte of the step's activation traffic. The cost model adds, to every
 * prediction, its own traffic times that figure at its own footprint (linear in log footprint
 * between the points, 0 below the first, the last point's above the last); on n threads the layers'
 * share of the traffic is split n ways (each thread its rows of gx and of the outputs) and the input
 * and output copies stay the calling thread's (with the whole traffic on every thread, 1500 SVD
 * h/4-h/16 at batch 20 on two threads read 0.72-0.86 of their predictions). The figure is what a
 * step whose arithmetic is small pays; a large-rank step hides some of it (rank 375 above: ~3.5%
 * of its time over-priced), a small-rank one does not. With the figure the cost model drops its
 * older gx-from-memory term (cold_gx_seconds), which these sessions include. Seven profiles read
 * 0 / 1-27 / 30-71 / 47-99 / 62-101 ps per byte at 1.7 / 6.8 / 20 / 40 / 81 MB (the VM's speed of
 * the minute: the figure is a difference of two times); three bench_plan runs
 * with the term alternating with three without: 1500 SVD and CP h/16 and 650 CP h/16 at batch 20 on
 * one thread outside 15% in none of the three against two each, 44 / 43 / 33 of 48 within 15%
 * against 41 / 31 / 36. */
#include "plan_internal.h"
#include "profile_internal.h"

enum { ACT_H = 768, ACT_B = 16, ACT_RANK = 8, ACT_ROUNDS = 9 };
static const int act_seq[FL_PROFILE_ACT_POINTS] = {4, 16, 48, 96, 192};

/* Output width of each layer's sequence buffer, and the input's feature count. */
static double widths(const fl_arch *a, double *in) {
    *in = a->input;
    return (double)fl_arch_dirs(a) * fl_arch_out(a);
}

double fl_act_footprint(const fl_arch *a, int batch, int seq) {
    double in;
    const double W = widths(a, &in), G = 4.0 * a->hidden * fl_arch_dirs(a);
    const double Y = a->head == FL_HEAD_NONE ? W : a->head == FL_HEAD_PER_STEP ? a->head_out : 0.0;
    return 4.0 * batch * seq * (2.0 * in + G + 2.0 * W + Y);
}

double fl_act_traffic(const fl_arch *a, int batch, int threads) {
    double in, layers = 0;
    const double W = widths(a, &in);
    double bytes = 3.0 * in; /* the NaN scan, then the copy's read and write: the calling thread's */
    for (int l = 0; l < a->layers; l++) /* gx written and read; the layer's input read; its output written */
        layers += fl_arch_dirs(a) * (2.0 * 4.0 * a->hidden) + (l ? W : in) + 2.0 * W;
    if (a->head == FL_HEAD_NONE) bytes += 2.0 * W; /* y: read and written */
    return 4.0 * batch * (bytes + layers / (threads > 1 ? threads : 1)); /* the layers' share split */
}

bool fl_profile_has_act(const fl_profile *p) { return p->act_bytes[0] > 0; }

double fl_cost_act_seconds(const fl_profile *p, const fl_arch *a, int batch, int seq, int threads) {
    if (!fl_profile_has_act(p)) return 0.0;
    size_t b[FL_PROFILE_ACT_POINTS]; /* the figures as a measured curve (cost.c reads those) */
    for (int k = 0; k < FL_PROFILE_ACT_POINTS; k++) b[k] = (size_t)p->act_bytes[k];
    const double e = fl_cost_curve_at(b, p->act_seconds, FL_PROFILE_ACT_POINTS, fl_act_footprint(a, batch, seq));
    return e * fl_act_traffic(a, batch, threads);
}

typedef struct act_ctx {
    const fl_model *m;
} act_ctx;

static fl_status time_len(void *ctx, int j, double *s) {
    const act_ctx *c = ctx;
    return fl_plan_time_model(c->m, ACT_B, act_seq[j], 1, 1, 1, s);
}

fl_status fl_profile_measure_act(fl_profile *p) {
    const fl_arch a = {.input = ACT_H, .hidden = ACT_H, .layers = 2, .head = FL_HEAD_NONE};
    fl_mat_spec s[4];
    for (int i = 0; i < 4; i++) s[i] = (fl_mat_spec){FL_METHOD_SVD, ACT_RANK};
    fl_model *m = NULL;
    fl_status st = fl_model_create(&a, s, &m);
    if (!st) st = fl_model_init_random(m, 1);
    double t[FL_PROFILE_ACT_POINTS];
    act_ctx c = {m};
    if (!st) st = fl_time_interleaved(FL_PROFILE_ACT_POINTS, ACT_ROUNDS, time_len, &c, t);
    fl_model_free(m);
    if (st) return st;
    const double traffic = fl_act_traffic(&a, ACT_B, 1);
    double hi = 0; /* a longer run's buffers do not cost less a step than a shorter one's: noise */
    for (int k = 0; k < FL_PROFILE_ACT_POINTS; k++) {
        const double e = k ? (t[k] - t[0]) / traffic : 0.0;
        hi = e > hi ? e : hi;
        p->act_bytes[k] = fl_act_footprint(&a, ACT_B, act_seq[k]);
        p->act_seconds[k] = hi;
    }
    return FL_OK;
}
