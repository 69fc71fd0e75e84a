/* Machine profile, the runtime's split step as a session runs it: fl_profile.thread_sync_seconds and
 * thread_switch_seconds (format 4, optional).
 *
 * A session runs layer by layer, each layer's T steps on that layer's own fl_rec, and each fl_rec
 * has its own worker pool (pool.c), whose workers poll a while after their last job before they
 * sleep. So when layer l + 1 starts, layer l's workers are still polling: on N CPUs, 2N - 1
 * threads want to run, and the split steps of the first part of layer l + 1 gain less. On the
 * 2-vCPU Xeon (session 13), a dense H 192 step at batch 1 (W_hh 576 KiB, split, each thread's half
 * in its L2), while the workers paused throughout their ~0.3 ms wait: one thread 5.0 us, split
 * alone 3.5-3.6, two layers in turn 4.7-4.9 (T 35), 4.8 (T 140), 3.9-4.4 (T 400); H 256: 8.8,
 * 6.5-6.9, 8.6-8.8 (T 35). Since the workers yield their core after ~75 us of pausing (pool.c: the
 * figures), less of the gain is lost; the cost that remains is the runtime's, and the model prices
 * it from what this file measures.
 *
 * Each pass times, interleaved, REPS samples of: one thread (t1), one layer's steps back to back on
 * N threads (tone), and two such layers in turn, T_SW steps each (talt), every sample 4 runs of the
 * pair, seconds per layer-step, the median of the samples. From them (fl_profile_switch_apply):
 *   sync = tone - t1 / N: the split step's own cost beyond its share of the work (the fork / join,
 *     the exchange of h, a worker waiting for its CPU), the "runtime's own split of a tiny step";
 *   switch W: if the first W seconds of one thread's work of each layer's run are not sped up,
 *     T_SW talt = T_SW tone + W (1 - tone / t1), so W = T_SW t1 (talt - tone) / (t1 - tone),
 *     held to [0, T_SW t1]; a pass whose split gained under 5% (t1 < 1.05 tone) says nothing of W.
 * T_SW is long enough (~1 ms a layer) that W (~0.3-0.6 ms) does not cover the whole run. */
#include "profile_internal.h"
#include "recurrent.h"

#include <string.h>

enum { H_SW = 192, T_SW = 256, REPS = 7, RUNS = 4 };

/* Seconds per layer-step of RUNS runs of the layers r[0..nl-1] in turn, T_SW steps each. */
static double run_layers(fl_rec **r, int nl, const float *gx, float *h0, float *h1, float *c) {
    const double t0 = fl_now_seconds();
    for (int it = 0; it < RUNS; it++)
        for (int l = 0; l < nl; l++)
            for (int k = 0; k < T_SW; k++)
                fl_rec_step(r[l], 1, gx, 4 * H_SW, (k & 1) ? h1 : h0, H_SW, c, (k & 1) ? h0 : h1, H_SW);
    return (fl_now_seconds() - t0) / ((double)RUNS * nl * T_SW);
}

fl_status fl_profile_switch_pass(int threads, double out[3]) {
    const size_t G = 4 * (size_t)H_SW;
    memset(out, 0, 3 * sizeof *out);
    float *w = fl_malloc(G * H_SW * sizeof(float));
    float *buf = fl_calloc(G + 3 * (size_t)H_SW, sizeof(float));
    fl_rec *one = NULL, *two[2] = {NULL, NULL};
    fl_status st = FL_OK;
    if (!w || !buf) {
        st = fl_fail(FL_ERR_NOMEM, "out of memory measuring the split step");
        goto done;
    }
    for (size_t i = 0; i < G * H_SW; i++) w[i] = (float)((i * 2654435761u) % 1000) * 1e-5f;
    fl_layer ly = {.in = H_SW, .hidden = H_SW};
    ly.whh = (fl_mat){.method = FL_METHOD_DENSE, .rows = (int)G, .cols = H_SW, .w = w};
    ly.wih = ly.whh;
    ly.b_ih = ly.b_hh = buf;
    if ((st = fl_rec_create(&ly, 1, 1, &one)) || (st = fl_rec_create(&ly, 1, threads, &two[0])) ||
        (st = fl_rec_create(&ly, 1, threads, &two[1])))
        goto done;
    float *gx = buf, *h0 = gx + G, *h1 = h0 + H_SW, *c = h1 + H_SW;
    double s[3][REPS];
    run_layers(&one, 1, gx, h0, h1, c); /* warm: weights in cache, workers started */
    run_layers(two, 2, gx, h0, h1, c);
    for (int i = 0; i < REPS; i++) {
        s[0][i] = run_layers(&one, 1, gx, h0, h1, c);
        s[1][i] = run_layers(two, 1, gx, h0, h1, c);
        s[2][i] = run_layers(two, 2, gx, h0, h1, c);
    }
    for (int j = 0; j < 3; j++) {
        fl_sort_doubles(s[j], REPS);
        out[j] = s[j][REPS / 2];
    }
done:
    fl_rec_free(one);
    fl_rec_free(two[0]);
    fl_rec_free(two[1]);
    fl_free(w);
    fl_free(buf);
    return st;
}

void fl_profile_switch_apply(const double (*sw)[3], int n, int threads, fl_profile *p) {
    p->thread_sync_seconds = p->thread_switch_seconds = 0;
    if (threads < 2 || n < 1) return;
    double sy[FL_PROFILE_MAX_PASSES], wi[FL_PROFILE_MAX_PASSES];
    int ns = 0, nw = 0;
    for (int q = 0; q < n && q < FL_PROFILE_MAX_PASSES; q++) {
        const double t1 = sw[q][0], tone = sw[q][1], talt = sw[q][2];
        if (!(t1 > 0 && tone > 0 && talt > 0)) continue;
        const double y = tone - t1 / threads;
        sy[ns++] = y > 0 ? y : 0;
        if (!(t1 >= 1.05 * tone)) continue; /* no gain to lose: says nothing of the window */
        double w = T_SW * t1 * (talt - tone) / (t1 - tone);
        wi[nw++] = w < 0 ? 0 : w > T_SW * t1 ? T_SW * t1 : w;
    }
    if (ns > 0) fl_profile_curve_median(sy, ns, 1, &p->thread_sync_seconds);
    if (nw > 0) fl_profile_curve_median(wi, nw, 1, &p->thread_switch_seconds);
}
