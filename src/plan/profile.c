/* Machine profile, measurement: flop and streaming rates of the runtime's own kernels on this
 * machine, and the cache capacities read off a streaming curve (profile_knee.c). Detection of
 * what the machine reports is in profile_detect.c, the JSON file in profile_io.c.
 *
 * Streaming: the runtime's recurrent step (fl_rec_step, batch 1) on a dense W_hh (4H, H) of a
 * given size is timed over a ladder of working sets, 16 KiB to 256 MiB in steps of 2^(1/4), first
 * by one thread, then by two threads together (all cores on the 2-CPU machines this targets; the
 * worker pool splits W_hh between them), the pair repeated FL_PROFILE_PASSES times and each point's
 * rate the median of its passes. Each level's effective capacity is the knee of the curve:
 * the largest working set that still streams at >= 80% of the level's plateau. Because the curve
 * is measured as the machine is, with its co-tenants, a shared L3 that neighbours fill shows up as
 * a knee at the share left to us: that is the capacity the planner should count on (re-measure
 * with `fastlstm profile --refresh` when the load changes). Measured capacities replace reported
 * ones; the reported ones are kept beside them. */
#include "profile_internal.h"
#include "recurrent.h"
#include "blas_threads.h"
#include "kernels/kernels.h"
#include "plan_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Each rate is timed REPS times and the second-fastest sample kept: other processes on a shared
 * machine only ever slow a sample down, so the low end is the stable estimate of what this machine
 * achieves (the fastest alone could be a timer artefact). */
#define REPS 7
#define PICK 1

/* Seconds of one recurrent step of B rows of r (second-fastest of `reps` <= REPS samples), each
 * sample timing enough back-to-back steps to last about 0.2 ms. gx (B, 4H), h0, h1, c (B, H). */
static double time_steps_n(fl_rec *r, int B, const float *gx, float *h0, float *h1, float *c, int H, int reps) {
    fl_rec_step(r, B, gx, 4 * H, h0, H, c, h1, H); /* warm the level */
    int inner = 1;
    for (;;) {
        double t0 = fl_now_seconds();
        for (int k = 0; k < inner; k++) fl_rec_step(r, B, gx, 4 * H, (k & 1) ? h1 : h0, H, c, (k & 1) ? h0 : h1, H);
        double t = fl_now_seconds() - t0;
        if (t > 2e-4 || inner >= (1 << 20)) break;
        inner *= 2;
    }
    double s[REPS];
    for (int i = 0; i < reps; i++) {
        double t0 = fl_now_seconds();
        for (int k = 0; k < inner; k++) fl_rec_step(r, B, gx, 4 * H, (k & 1) ? h1 : h0, H, c, (k & 1) ? h0 : h1, H);
        s[i] = (fl_now_seconds() - t0) / inner;
    }
    fl_sort_doubles(s, (size_t)reps);
    return s[PICK];
}

static double time_steps(fl_rec *r, int B, const float *gx, float *h0, float *h1, float *c, int H) {
    return time_steps_n(r, B, gx, h0, h1, c, H, REPS);
}

/* A step time t less its cell update `cell`, kept at least a fifth of t (the two are measured apart,
 * so noise could otherwise leave nothing or less). */
static double without_cell(double t, double cell) { return t - cell > 0.2 * t ? t - cell : 0.2 * t; }

/* Seconds per hidden unit per row of the cell update alone: the runtime's fused gate kernel with no
 * product (K = 0) over B rows of H = 256 units (second-fastest of REPS samples). B = 1 runs the
 * kernel's batch-1 loop (the one every batch-1 step runs), B > 1 its row tiles, so each batch's
 * measurements subtract the figure of their own loop (on the Zen 3 VM the two read within ~5% of
 * each other). */
static fl_status measure_cell(int B, double *seconds) {
    const int H = 256;
    const fl_kernels *k = fl_kernels_get();
    const int nblk = (H + FL_REC_NB - 1) / FL_REC_NB;
    float *buf = fl_calloc((size_t)B * 6 * H + (size_t)4 * FL_REC_NB, sizeof(float));
    if (!buf) return fl_fail(FL_ERR_NOMEM, "out of memory measuring the cell update");
    /* gx (B, 4H), c (B, H), h (B, H); pw: a dummy panel (K = 0 reads none of it) */
    float *gx = buf, *c = gx + (size_t)B * 4 * H, *h = c + (size_t)B * H, *pw = h + (size_t)B * H;
    for (size_t i = 0; i < (size_t)B * 4 * H; i++) gx[i] = (float)((int)(i % 17) - 8) * 0.25f;
    k->gate_cell(0, nblk, H, 0, B, pw, pw, H, gx, 4 * H, c, h, H);
    int inner = 1;
    for (;;) {
        double t0 = fl_now_seconds();
        for (int r = 0; r < inner; r++) k->gate_cell(0, nblk, H, 0, B, pw, pw, H, gx, 4 * H, c, h, H);
        if (fl_now_seconds() - t0 > 2e-4 || inner >= (1 << 20)) break;
        inner *= 2;
    }
    double s[REPS];
    for (int i = 0; i < REPS; i++) {
        double t0 = fl_now_seconds();
        for (int r = 0; r < inner; r++) k->gate_cell(0, nblk, H, 0, B, pw, pw, H, gx, 4 * H, c, h, H);
        s[i] = (fl_now_seconds() - t0) / inner;
    }
    fl_sort_doubles(s, REPS);
    *seconds = s[PICK] / ((double)B * H);
    fl_free(buf);
    return FL_OK;
}

/* Mat-vec flop rate in L1 (*flops) and its W bytes per second (*rate), the cell update and the step's
 * fixed costs excluded by measuring the product's slope, not by subtracting: the runtime's batch-1
 * gate kernel on one block of 16 units (the batch-1 loop, one stream below K = 128) at K = 32 and
 * K = 96 (an 8 KiB and a 24 KiB panel: both in L1 from 32 KiB), second-fastest of REPS samples
 * each, interleaved; the rate is the extra flops over the extra time. Subtracting an isolated cell
 * from a step at this size does not work: the cell's long exp / divide chains overlap the next
 * block's FMAs inside a step, so the cell alone (~7 ns a unit on the Zen 3 VM, ~220 ns at H = 32)
 * takes more than it adds to a ~290 ns step, and the remainder left mat-vec rates of 29 to 141
 * GFLOP/s (FMA peak ~92) from one profile to the next. Both 0 when the longer product did not time
 * longer. */
static fl_status measure_gemv(double *flops, double *rate) {
    enum { H = 16, K0 = 32, K1 = 96 };
    const fl_kernels *k = fl_kernels_get();
    float *buf = fl_malloc(((size_t)K1 * 4 * H + (size_t)K1 + 6 * H) * sizeof(float));
    if (!buf) return fl_fail(FL_ERR_NOMEM, "out of memory measuring the mat-vec rate");
    /* pw: the block's panel (K1, 4, 16); x (K1); gx (4H); c, h (H) */
    float *pw = buf, *x = pw + (size_t)K1 * 4 * H, *gx = x + K1, *c = gx + 4 * H, *h = c + H;
    for (size_t i = 0; i < (size_t)K1 * 4 * H + K1 + 6 * H; i++) buf[i] = (float)((int)(i % 23) - 11) * 0.01f;
    const int ks[2] = {K0, K1};
    int inner = 1;
    for (;;) {
        double t0 = fl_now_seconds();
        for (int r = 0; r < inner; r++) k->gate_cell(0, 1, H, K0, 1, pw, x, K0, gx, 4 * H, c, h, H);
        if (fl_now_seconds() - t0 > 2e-4 || inner >= (1 << 20)) break;
        inner *= 2;
    }
    double s[2][REPS];
    for (int i = 0; i < REPS; i++)
        for (int j = 0; j < 2; j++) {
            double t0 = fl_now_seconds();
            for (int r = 0; r < inner; r++) k->gate_cell(0, 1, H, ks[j], 1, pw, x, ks[j], gx, 4 * H, c, h, H);
            s[j][i] = (fl_now_seconds() - t0) / inner;
        }
    fl_sort_doubles(s[0], REPS);
    fl_sort_doubles(s[1], REPS);
    fl_free(buf);
    const double dt = s[1][PICK] - s[0][PICK], df = 2.0 * 4 * H * (double)(K1 - K0);
    *flops = dt > 0 ? df / dt : 0; /* 0: no slope (noise); the caller falls back */
    *rate = 2.0 * *flops;           /* 4 bytes of W per multiply-add */
    return FL_OK;
}

/* Seconds of the cell update of a step of B rows of H units on `threads` threads (the runtime
 * splits it with the step's blocks): what each measurement below subtracts, at the figure the cost
 * model adds for that batch (fl_cost_cell_seconds). */
static double cell_of(const fl_profile *p, int B, int H, int threads) {
    return (double)B * H * fl_cost_cell_seconds(p, B) / threads;
}

/* Seconds of one dense recurrent step (hidden H) at batch B on `threads` threads. */
static fl_status time_rec_rows(int H, int B, int threads, double *seconds) {
    const size_t G = (size_t)4 * H;
    float *w = fl_malloc(G * H * sizeof(float));
    float *buf = fl_calloc((size_t)B * (G + 3 * (size_t)H), sizeof(float));
    fl_rec *r = NULL;
    fl_status st = FL_OK;
    if (!w || !buf) {
        st = fl_fail(FL_ERR_NOMEM, "out of memory measuring the recurrent step at batch %d", B);
        goto done;
    }
    for (size_t i = 0; i < G * H; i++) w[i] = (float)((i * 2654435761u) % 1000) * 1e-5f;
    fl_layer ly = {.in = H, .hidden = H};
    ly.whh = (fl_mat){.method = FL_METHOD_DENSE, .rows = (int)G, .cols = H, .w = w};
    ly.wih = ly.whh;
    ly.b_ih = ly.b_hh = buf;
    if ((st = fl_rec_create(&ly, B, threads, &r))) goto done;
    float *gx = buf, *h0 = gx + (size_t)B * G, *h1 = h0 + (size_t)B * H, *c = h1 + (size_t)B * H;
    *seconds = time_steps(r, B, gx, h0, h1, c, H);
done:
    fl_rec_free(r);
    fl_free(w);
    fl_free(buf);
    return st;
}

/* Flop rate of the dense recurrent step (hidden H) at batch B, its cell update (p's figure for B)
 * excluded. */
static fl_status measure_rec_rows(const fl_profile *p, int H, int B, double *flops) {
    double t;
    fl_status st = time_rec_rows(H, B, 1, &t);
    if (!st) *flops = 2.0 * 4.0 * H * (double)H * B / without_cell(t, cell_of(p, B, H, 1));
    return st;
}

/* Seconds of the runtime's input projection (fl_rec_input: packed W_ih (4H, in), split across the
 * pool's threads) on `rows` rows, second-fastest of REPS; *seconds 0 when this kernel level has no
 * packed projection (the runtime then goes through BLAS on one thread). r: an fl_rec of that
 * layer on the thread count wanted; x (rows, in), gx (rows, 4H). */
static void time_proj(fl_rec *r, int rows, int in, int G, const float *x, const float *bias, float *gx,
                      double *seconds) {
    *seconds = 0;
    if (!fl_rec_input(r, rows, x, in, bias, gx, G)) return;
    int inner = 1;
    for (;;) {
        double t0 = fl_now_seconds();
        for (int k = 0; k < inner; k++) fl_rec_input(r, rows, x, in, bias, gx, G);
        if (fl_now_seconds() - t0 > 2e-4 || inner >= (1 << 16)) break;
        inner *= 2;
    }
    double s[REPS];
    for (int i = 0; i < REPS; i++) {
        double t0 = fl_now_seconds();
        for (int k = 0; k < inner; k++) fl_rec_input(r, rows, x, in, bias, gx, G);
        s[i] = (fl_now_seconds() - t0) / inner;
    }
    fl_sort_doubles(s, REPS);
    *seconds = s[PICK];
}

/* A speed-up on N threads is the fastest one-thread time over the fastest N-thread time, of
 * SCALE_PAIRS one-thread and N-thread samples taken alternately (each itself the second-fastest of
 * REPS): other processes only ever slow a sample down, so each side's fastest is what this machine
 * achieves, the same rule as every other rate here. The median of per-pair ratios it replaces read
 * 0.88 to 1.24 at 4 to 256 rows in a profile of the busy afternoon of 2026-11-30 (a neighbour held
 * the second virtual CPU for the whole measurement), where the runtime measured 1.8-1.9x minutes
 * later, and 2.1-2.3 in the next one; a ratio of a pair is spoiled by a slow sample on either side
 * (a slowed one-thread time inflates it), the fastest of each side only when every sample of that
 * side was slowed. No prior (such as N for compute-bound work) replaces a low figure: a machine
 * whose second CPU stays busy does gain nothing from it, and the planner should see that. (Load
 * that lasts the whole measurement still shows: the first two profiles measured this way, at
 * loads of 2.3 to 3.4 from other builds, read 0.84 to 1.71 at 4 to 256 rows.) */
#define SCALE_PAIRS 5

/* min(t1) / min(tn) over the pairs (0 when either side has no time). */
static double scale_of(const double *t1, const double *tn, int n) {
    double a = 0, b = 0;
    for (int i = 0; i < n; i++) {
        if (t1[i] > 0 && (!(a > 0) || t1[i] < a)) a = t1[i];
        if (tn[i] > 0 && (!(b > 0) || tn[i] < b)) b = tn[i];
    }
    return a > 0 && b > 0 ? a / b : 0.0;
}

/* Speed-up of the runtime's split input projection (fl_rec_input) on `threads` threads over one,
 * on a dense W_ih (4 hid, in), at 4, 16, 64, 256 rows: out[k] (all 0 when this kernel level has no
 * packed projection). */
static fl_status proj_scales(int threads, int in, int hid, double *out) {
    const int G = 4 * hid, maxr = 256;
    fl_arch a = {.input = in, .hidden = hid, .layers = 1, .head = FL_HEAD_NONE};
    fl_model *m = NULL;
    fl_rec *r1 = NULL, *rn = NULL;
    float *buf = NULL;
    memset(out, 0, FL_PROFILE_GEMM_POINTS * sizeof *out);
    fl_status st = fl_model_create(&a, NULL, &m);
    if (!st) st = fl_model_init_random(m, 1);
    if (!st) st = fl_rec_create(&m->layer[0], maxr, 1, &r1);
    if (!st) st = fl_rec_create(&m->layer[0], maxr, threads, &rn);
    /* x (maxr, in), gx (maxr, 4H), bias (4H) */
    if (!st && !(buf = fl_calloc((size_t)maxr * (in + G) + G, sizeof(float))))
        st = fl_fail(FL_ERR_NOMEM, "out of memory measuring the split projection");
    for (size_t i = 0; !st && i < (size_t)maxr * in; i++) buf[i] = (float)((int)(i % 23) - 11) * 0.05f;
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS && !st; k++) {
        const int rows = 4 << (2 * k);
        float *x = buf, *gx = x + (size_t)maxr * in, *bias = gx + (size_t)maxr * G;
        double t1[SCALE_PAIRS], tn[SCALE_PAIRS];
        for (int i = 0; i < SCALE_PAIRS; i++) {
            time_proj(r1, rows, in, G, x, bias, gx, &t1[i]);
            time_proj(rn, rows, in, G, x, bias, gx, &tn[i]);
        }
        out[k] = scale_of(t1, tn, SCALE_PAIRS);
    }
    if (!(out[0] > 0)) memset(out, 0, FL_PROFILE_GEMM_POINTS * sizeof *out);
    fl_free(buf);
    fl_rec_free(r1);
    fl_rec_free(rn);
    fl_model_free(m);
    return st;
}

/* p->thread_scale_rec, thread_scale_proj and thread_scale_proj_mem (see fl_profile): each shape
 * timed on one thread, then at once on curve_all_threads threads. The recurrent step: dense H = 256
 * (W_hh 1 MiB, split by the runtime from batch 1), cell update (split too) and the fork / join of
 * the curves excluded. The projection through fl_rec_input: W_ih (2048, 512), 4 MiB, held by the
 * last level (the smallest split from 4 rows), and (4096, 2048), 32 MiB, streamed from memory.
 * p's curves and cell figures must be set. */
static fl_status measure_thread_scales(fl_profile *p) {
    const int N = p->curve_all_threads, H = 256;
    memset(p->thread_scale_rec, 0, sizeof p->thread_scale_rec);
    memset(p->thread_scale_proj, 0, sizeof p->thread_scale_proj);
    memset(p->thread_scale_proj_mem, 0, sizeof p->thread_scale_proj_mem);
    if (N < 2) return FL_OK;
    const double sync = fl_cost_thread_sync(p);
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) {
        const int B = 4 << (2 * k);
        const double cell = cell_of(p, B, H, 1);
        double t1[SCALE_PAIRS], tn[SCALE_PAIRS];
        for (int i = 0; i < SCALE_PAIRS; i++) {
            fl_status st = time_rec_rows(H, B, 1, &t1[i]);
            if (!st) st = time_rec_rows(H, B, N, &tn[i]);
            if (st) return st;
            t1[i] = without_cell(t1[i], cell);
            tn[i] = without_cell(tn[i] - sync, cell / N);
        }
        p->thread_scale_rec[k] = scale_of(t1, tn, SCALE_PAIRS);
    }
    fl_status st = proj_scales(N, 512, 512, p->thread_scale_proj);
    return st ? st : proj_scales(N, 2048, 1024, p->thread_scale_proj_mem);
}

/* Hidden size of the cold-gx measurement: not a power of two, as most models' are not (at 1024 each
 * row's gate runs start on page boundaries and this VM paid about half the extra per byte that it
 * paid at 650, 768 or 1000). */
#define COLD_H 1000

/* p->cold_gx_seconds[method] (see fl_profile): a layer of H = COLD_H with W_hh of `method` at rank
 * H/16 and H/4, its step at batch 16 on one thread timed with gx walking `cold` (nb steps of
 * (16, 4H) floats, far beyond the last level: each sample reads 32 steps never read since nb
 * steps back) and with one gx held in cache, samples of the two alternating; the difference of
 * their second-fastest per gx byte, at least 0. p->cell_seconds
 * not needed (the cell update is in both). */
static fl_status measure_cold_gx(fl_profile *p, fl_method method, const float *cold, int nb) {
    const int H = COLD_H, B = 16, S = 32;
    const size_t G = (size_t)4 * H, step = (size_t)B * G;
    float *buf = fl_calloc((size_t)3 * B * H, sizeof(float)); /* h0, h1, c (B, H) */
    if (!buf) return fl_fail(FL_ERR_NOMEM, "out of memory measuring the step on cold input projections");
    float *h0 = buf, *h1 = h0 + (size_t)B * H, *c = h1 + (size_t)B * H;
    fl_status st = FL_OK;
    int pos = 1;
    for (int i = 0; i < 2 && !st; i++) {
        if (method == FL_METHOD_DENSE && i == 1) {
            p->cold_gx_seconds[method][1] = p->cold_gx_seconds[method][0];
            break;
        }
        fl_arch a = {.input = 16, .hidden = H, .layers = 1, .head = FL_HEAD_NONE};
        fl_mat_spec specs[2] = {{FL_METHOD_DENSE, 0}, {method, method == FL_METHOD_DENSE ? 0 : (i ? H / 4 : H / 16)}};
        fl_model *m = NULL;
        fl_rec *r = NULL;
        st = fl_model_create(&a, specs, &m);
        if (!st) st = fl_model_init_random(m, 1);
        if (!st) st = fl_rec_create(&m->layer[0], B, 1, &r);
        if (!st) {
            /* warm and cold samples alternate, so both see the same neighbours */
            double sw[REPS], sc[REPS];
            fl_rec_step(r, B, cold, (int)G, h0, H, c, h1, H);
            for (int k = 0; k < REPS; k++) {
                double t0 = fl_now_seconds();
                for (int j = 0; j < S; j++)
                    fl_rec_step(r, B, cold, (int)G, (j & 1) ? h1 : h0, H, c, (j & 1) ? h0 : h1, H);
                double t1 = fl_now_seconds();
                for (int j = 0; j < S; j++, pos = (pos + 1) % nb)
                    fl_rec_step(r, B, cold + (size_t)pos * step, (int)G, (j & 1) ? h1 : h0, H, c, (j & 1) ? h0 : h1, H);
                sw[k] = (t1 - t0) / S;
                sc[k] = (fl_now_seconds() - t1) / S;
            }
            fl_sort_doubles(sw, REPS);
            fl_sort_doubles(sc, REPS);
            const double extra = (sc[PICK] - sw[PICK]) / (4.0 * (double)step);
            p->cold_gx_seconds[method][i] = extra > 0 ? extra : 0;
        }
        fl_rec_free(r);
        fl_model_free(m);
    }
    fl_free(buf);
    return st;
}

/* All of p->cold_gx_seconds, on one buffer of max(64 MiB, 4 x the measured last level), at most
 * 256 MiB, of input projections. */
static fl_status measure_cold_gx_all(fl_profile *p) {
    const size_t step = (size_t)16 * 4 * COLD_H * sizeof(float);
    size_t bytes = 4 * p->level[p->n_levels - 1].bytes;
    if (bytes < ((size_t)64 << 20)) bytes = (size_t)64 << 20;
    if (bytes > ((size_t)256 << 20)) bytes = (size_t)256 << 20;
    const int nb = (int)(bytes / step);
    float *cold = fl_malloc((size_t)nb * step);
    if (!cold) return fl_fail(FL_ERR_NOMEM, "out of memory for the %zu-byte input-projection buffer", bytes);
    for (size_t i = 0; i < (size_t)nb * step / sizeof(float); i++) cold[i] = (float)((int)(i % 29) - 14) * 0.02f;
    fl_status st = FL_OK;
    for (int m = FL_METHOD_DENSE; m <= FL_METHOD_CP && !st; m++) st = measure_cold_gx(p, (fl_method)m, cold, nb);
    fl_free(cold);
    return st;
}

/* Weights for the streaming measurements: filled once, at the largest size, and shared. */
typedef struct weights {
    float *w;
    size_t n; /* floats */
} weights;

/* Time the runtime's own recurrent step (fl_rec_step, batch 1, `threads` threads) on a dense layer
 * whose W_hh (4H, H) takes about `bytes`: *rate = W_hh bytes per second, *flops = its flop rate,
 * *seconds the step time, all without the cell update (p's batch-1 figure, whole: below
 * parallel_step_bytes the step runs on one thread, and above it half a cell is noise beside the
 * product); second-fastest of `reps` samples. ws: NULL, or weights of at least that size to use
 * (saves filling them again). */
static fl_status measure_stream_t(size_t bytes, int threads, const weights *ws, const fl_profile *p, int reps,
                                  double *rate, double *flops, double *seconds) {
    int H = (int)sqrt((double)bytes / 16.0);
    if (H < 4) H = 4;
    const size_t G = (size_t)4 * H;
    const bool own = !ws || ws->n < G * H;
    float *w = own ? fl_malloc(G * H * sizeof(float)) : ws->w;
    /* gx (4H), h0, h1, c (H each), then W_ih (4H, 1) and its biases */
    float *buf = fl_calloc(2 * G + 3 * (size_t)H, sizeof(float));
    fl_rec *r = NULL;
    fl_status st = FL_OK;
    if (!w || !buf) {
        st = fl_fail(FL_ERR_NOMEM, "out of memory measuring bandwidth over %zu bytes", bytes);
        goto done;
    }
    if (own)
        for (size_t i = 0; i < G * H; i++) w[i] = (float)((i * 2654435761u) % 1000) * 1e-5f;
    /* one input feature: W_ih is tiny, so creating the fl_rec packs W_hh only */
    fl_layer ly = {.in = 1, .hidden = H};
    ly.whh = (fl_mat){.method = FL_METHOD_DENSE, .rows = (int)G, .cols = H, .w = w};
    ly.wih = (fl_mat){.method = FL_METHOD_DENSE, .rows = (int)G, .cols = 1, .w = buf + G + 3 * (size_t)H};
    ly.b_ih = ly.b_hh = buf; /* unused by the recurrent step */
    if ((st = fl_rec_create(&ly, 1, threads, &r))) goto done;
    double t = without_cell(time_steps_n(r, 1, buf, buf + G, buf + G + H, buf + G + 2 * H, H, reps),
                            cell_of(p, 1, H, 1));
    *rate = (double)(G * H * sizeof(float)) / t;
    if (flops) *flops = 2.0 * (double)G * H / t;
    if (seconds) *seconds = t;
done:
    fl_rec_free(r);
    if (own) fl_free(w);
    fl_free(buf);
    return st;
}

static fl_status measure_stream(size_t bytes, const fl_profile *p, double *rate, double *flops, double *seconds) {
    return measure_stream_t(bytes, 1, NULL, p, REPS, rate, flops, seconds);
}

/* The ladder: 16 KiB * 2^(k/4), k = 0..56 (to 256 MiB). */
#define LADDER_POINTS 57
static size_t ladder_bytes(int k) { return (size_t)(16384.0 * pow(2.0, k / 4.0)); }

/* Samples per ladder point and pass: the median over FL_PROFILE_PASSES passes does the rest. */
#define LADDER_REPS 4

/* Stream the ladder with `threads` threads: bytes[] the actual W_hh sizes, bw[] their rates. */
static fl_status measure_ladder(int threads, const weights *ws, const fl_profile *p, size_t *bytes, double *bw) {
    for (int k = 0; k < LADDER_POINTS; k++) {
        int H = (int)sqrt((double)ladder_bytes(k) / 16.0);
        bytes[k] = (size_t)16 * H * H;
        fl_status st = measure_stream_t(bytes[k], threads, ws, p, LADDER_REPS, &bw[k], NULL, NULL);
        if (st) return st;
    }
    return FL_OK;
}

static fl_status measure_gemm(double *flops) {
    const int n = 192; /* three 144 KiB operands: in L2 on current cores */
    float *a = fl_malloc((size_t)3 * n * n * sizeof(float));
    if (!a) return fl_fail(FL_ERR_NOMEM, "out of memory measuring sgemm");
    float *b = a + (size_t)n * n, *c = b + (size_t)n * n;
    for (size_t i = 0; i < (size_t)2 * n * n; i++) a[i] = (float)(i % 7) * 0.1f;
    fl_gemm(false, false, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    double s[REPS];
    for (int r = 0; r < REPS; r++) {
        double t0 = fl_now_seconds();
        for (int k = 0; k < 4; k++) fl_gemm(false, false, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        s[r] = (fl_now_seconds() - t0) / 4;
    }
    fl_sort_doubles(s, REPS);
    *flops = 2.0 * n * n * (double)n / s[PICK];
    fl_free(a);
    return FL_OK;
}

/* Rate of the runtime's dense input projection on n rows (fl_profile_rows_rate, profile_pair.c). */
static fl_status measure_rows(int n, double *flops) { return fl_profile_rows_rate(n, REPS, PICK, flops); }

static fl_status measure_all(fl_profile *p);

/* Rates of the precision-q kernels (see fl_profile.qrec_flops, qgemm_flops): the runtime's own
 * recurrent step on a model whose W_hh is stored in q (the quantized step: activations quantized per
 * step for int8, the quant kernel, then the cell update, which is subtracted), and fl_mat_apply of a
 * W_ih stored in q, both through fl_model_quantize as a planned model would be. */
fl_status fl_profile_measure_quant(fl_profile *p, fl_precision q) {
    const int H = 256, maxb = 256;           /* recurrent: W_hh (1024, 256) */
    const int M = 2048, K = 1024;            /* projection: W_ih (2048, 1024), hidden 512 */
    fl_arch ra = {.input = 1, .hidden = H, .layers = 1, .head = FL_HEAD_NONE};
    fl_arch ga = {.input = K, .hidden = M / 4, .layers = 1, .head = FL_HEAD_NONE};
    fl_precision rp[2] = {FL_PRECISION_F32, q}, gp[2] = {q, FL_PRECISION_F32}; /* ih, hh */
    fl_model *r0 = NULL, *rq = NULL, *g0 = NULL, *gq = NULL;
    fl_rec *r = NULL;
    float *buf = NULL;
    fl_status st = fl_model_create(&ra, NULL, &r0);
    if (!st) st = fl_model_init_random(r0, 1);
    if (!st) st = fl_model_quantize(r0, rp, &rq);
    if (!st) st = fl_model_create(&ga, NULL, &g0);
    if (!st) st = fl_model_init_random(g0, 1);
    if (!st) st = fl_model_quantize(g0, gp, &gq);
    if (!st) st = fl_rec_create(&rq->layer[0], maxb, 1, &r);
    const fl_mat *w = st ? NULL : &gq->layer[0].wih;
    size_t wsn = w ? fl_mat_apply_workspace(w, maxb) : 0;
    /* recurrent: gx (B, 4H), h0, h1, c (B, H); projection: x (rows, K), y (rows, M), workspace */
    size_t nrec = (size_t)maxb * 7 * H, nproj = (size_t)maxb * (K + M);
    if (!st && !(buf = fl_calloc(nrec + nproj + wsn, sizeof(float))))
        st = fl_fail(FL_ERR_NOMEM, "out of memory measuring the %s kernels", fl_precision_name(q));
    if (st) goto done;
    for (size_t i = 0; i < nrec + nproj; i++) buf[i] = (float)((int)(i % 29) - 14) * 0.03f;
    for (int k = 0; k <= FL_PROFILE_GEMM_POINTS; k++) {
        const int B = k == 0 ? 1 : 1 << (2 * k); /* 1, 4, 16, 64, 256 */
        float *gx = buf, *h0 = gx + (size_t)B * 4 * H, *h1 = h0 + (size_t)B * H, *c = h1 + (size_t)B * H;
        double t = without_cell(time_steps(r, B, gx, h0, h1, c, H), cell_of(p, B, H, 1));
        p->qrec_flops[q][k] = 2.0 * 4 * H * (double)H * B / t;
    }
    float *x = buf + nrec, *y = x + (size_t)maxb * K, *ws = buf + nrec + nproj;
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) {
        const int rows = 4 << (2 * k);
        fl_mat_apply(w, rows, x, K, 0.0f, y, M, ws);
        double s[REPS];
        int inner = rows >= 64 ? 1 : 4;
        for (int i = 0; i < REPS; i++) {
            double t0 = fl_now_seconds();
            for (int n = 0; n < inner; n++) fl_mat_apply(w, rows, x, K, 0.0f, y, M, ws);
            s[i] = (fl_now_seconds() - t0) / inner;
        }
        fl_sort_doubles(s, REPS);
        p->qgemm_flops[q][k] = 2.0 * M * (double)K * rows / s[PICK];
    }
done:
    fl_free(buf);
    fl_rec_free(r);
    fl_model_free(r0);
    fl_model_free(rq);
    fl_model_free(g0);
    fl_model_free(gq);
    return st;
}

/* Pairs of method / reference samples behind each efficiency figure (measure_method). */
#define EFF_PAIRS 5

/* One rank's efficiency figures of a method (see fl_profile.rec_efficiency and the _lo fields). */
typedef struct method_eff {
    double rec, gemm;
    double rec_rows[FL_PROFILE_GEMM_POINTS], gemm_rows[FL_PROFILE_GEMM_POINTS];
} method_eff;

/* Efficiency of `method` kernels relative to the cost model's dense rates: the recurrent step of a
 * (4H, H) W_hh at batch 1, 4, 16, 64, 256 and the input projection of a (4H, H) W_ih over 4, 16, 64,
 * 256 rows, H = 1024, rank R; the cell update excluded throughout. p's other rates (cell_seconds
 * included) must be set; its efficiencies of `method` (both ranks) are left at 1 / 0 (not modelled),
 * the figures go to *out.
 *
 * Each figure is paired with a dense reference timed alternately in the same moment
 * (fl_profile_paired_efficiency, profile_pair.c: why): the step with a dense step whose W_hh holds
 * as many bytes as the factors, the projection with a dense (2048, 1024) W_ih (measure_rows' shape)
 * run as a session runs a dense one (fl_rec_input: the packed kernel where there is one). */
static fl_status measure_method(fl_profile *p, fl_method method, int R, method_eff *out) {
    const int H = 1024, maxb = 256, RM = 2048, RK = 1024; /* reference projection (RM, RK) */
    fl_arch arch = {.input = H, .hidden = H, .layers = 1, .head = FL_HEAD_NONE};
    fl_mat_spec specs[2] = {{method, R}, {method, R}};
    fl_model *m = NULL, *ref = NULL, *gref = NULL;
    fl_rec *r = NULL, *rr = NULL, *gr = NULL; /* the method's step, the reference step, projection */
    float *buf = NULL;
    fl_status st = fl_model_create(&arch, specs, &m);
    if (!st) st = fl_model_init_random(m, 1);
    if (!st) st = fl_rec_create(&m->layer[0], maxb, 1, &r);
    /* the dense reference step: hidden Hr with 16 Hr^2 bytes ~ the factors' bytes, a multiple of 16 */
    const fl_mat *whh = st ? NULL : &m->layer[0].whh;
    const int Hr = whh ? fl_profile_reference_hidden((double)fl_mat_params(whh) * sizeof(float)) : 16;
    fl_arch ra = {.input = 1, .hidden = Hr, .layers = 1, .head = FL_HEAD_NONE};
    if (!st) st = fl_model_create(&ra, NULL, &ref);
    if (!st) st = fl_model_init_random(ref, 2);
    if (!st) st = fl_rec_create(&ref->layer[0], maxb, 1, &rr);
    /* the dense reference projection: W_ih (RM, RK), as the session runs it (packed where it can) */
    fl_arch ga = {.input = RK, .hidden = RM / 4, .layers = 1, .head = FL_HEAD_NONE};
    if (!st) st = fl_model_create(&ga, NULL, &gref);
    if (!st) st = fl_model_init_random(gref, 3);
    if (!st) st = fl_rec_create(&gref->layer[0], 1, 1, &gr);
    size_t wsn = st ? 0 : fl_mat_apply_workspace(&m->layer[0].wih, maxb);
    const int Hm = H > Hr ? H : Hr;
    /* recurrent: gx (B, 4Hm), h0, h1, c (B, Hm); projection: x (rows, RK >= H), y (rows, 4H >= RM), ws */
    if (!st && !(buf = fl_calloc((size_t)maxb * 7 * Hm + (size_t)maxb * (RK + 4 * H) + wsn, sizeof(float))))
        st = fl_fail(FL_ERR_NOMEM, "out of memory measuring kernel efficiency");
    if (st) goto done;
    // steps predicted with a 1-feature input over a very long sequence, efficiency 1, no cell term
    fl_arch only_hh = {.input = 1, .hidden = H, .layers = 1, .head = FL_HEAD_NONE};
    fl_mat_spec hh[2] = {{FL_METHOD_DENSE, 0}, {method, R}};
    const double cell16 = p->cell_seconds, cell1 = p->cell_seconds_b1;
    double cell[FL_PROFILE_GEMM_POINTS + 1], cell_r[FL_PROFILE_GEMM_POINTS + 1]; /* each batch's cell update */
    for (int k = 0; k <= FL_PROFILE_GEMM_POINTS; k++)
        cell[k] = cell_of(p, 1 << (2 * k), H, 1), cell_r[k] = cell_of(p, 1 << (2 * k), Hr, 1);
    p->cell_seconds = p->cell_seconds_b1 = 0;
    p->rec_efficiency[method] = p->gemm_efficiency[method] = 1.0;
    p->rec_efficiency_lo[method] = p->gemm_efficiency_lo[method] = 0;
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++)
        p->rec_rows_efficiency[method][k] = p->gemm_rows_efficiency[method][k] =
            p->rec_rows_efficiency_lo[method][k] = p->gemm_rows_efficiency_lo[method][k] = 0;
    double eff[FL_PROFILE_GEMM_POINTS + 1];
    for (int k = 0; k <= FL_PROFILE_GEMM_POINTS && !st; k++) {
        const int B = k == 0 ? 1 : 1 << (2 * k); /* 1, 4, 16, 64, 256 */
        fl_cost c, cr;
        if ((st = fl_cost_predict(p, &only_hh, hh, B, 1 << 30, 1, &c)) ||
            (st = fl_cost_predict(p, &ra, NULL, B, 1 << 30, 1, &cr)))
            break;
        float *gx = buf, *h0 = gx + (size_t)B * 4 * Hm, *h1 = h0 + (size_t)B * Hm, *cs = h1 + (size_t)B * Hm;
        double tm[EFF_PAIRS], tr[EFF_PAIRS];
        for (int i = 0; i < EFF_PAIRS; i++) { /* alternately, each sample itself the second-fastest of 3 */
            tm[i] = without_cell(time_steps_n(r, B, gx, h0, h1, cs, H, 3), cell[k]);
            tr[i] = without_cell(time_steps_n(rr, B, gx, h0, h1, cs, Hr, 3), cell_r[k]);
        }
        eff[k] = fl_profile_paired_efficiency(c.seconds - p->step_overhead, tm, cr.seconds - p->step_overhead, tr,
                                              EFF_PAIRS);
    }
    p->cell_seconds = cell16, p->cell_seconds_b1 = cell1;
    if (st) goto done;
    out->rec = eff[0];
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) out->rec_rows[k] = eff[k + 1];
    // input projection: x (rows, H) -> y (rows, 4H), against x (rows, RK) -> y (rows, RM) dense
    float *x = buf + (size_t)maxb * 7 * Hm, *y = x + (size_t)maxb * RK, *ws = y + (size_t)maxb * 4 * H;
    for (size_t i = 0; i < (size_t)maxb * RK; i++) x[i] = (float)((int)(i % 29) - 14) * 0.03f;
    const fl_mat *w = &m->layer[0].wih;
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++)
        out->gemm_rows[k] = fl_profile_gemm_efficiency(w, r, gr, &gref->layer[0].wih, 4 << (2 * k), x, y, ws, EFF_PAIRS);
    out->gemm = out->gemm_rows[2]; /* 64 rows */
done:
    fl_free(buf);
    fl_rec_free(r), fl_rec_free(rr), fl_rec_free(gr);
    fl_model_free(m), fl_model_free(ref), fl_model_free(gref);
    return st;
}

/* p's efficiencies of `method` at rank H/4 (rec_efficiency, ...) and H/16 (the _lo fields), H = 1024:
 * the candidates the planner weighs run between the two. */
static fl_status measure_methods(fl_profile *p, fl_method method) {
    method_eff lo, hi;
    fl_status st = measure_method(p, method, 1024 / 16, &lo);
    if (!st) st = measure_method(p, method, 1024 / 4, &hi);
    if (st) return st;
    p->rec_efficiency[method] = hi.rec, p->gemm_efficiency[method] = hi.gemm;
    p->rec_efficiency_lo[method] = lo.rec, p->gemm_efficiency_lo[method] = lo.gemm;
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) {
        p->rec_rows_efficiency[method][k] = hi.rec_rows[k], p->gemm_rows_efficiency[method][k] = hi.gemm_rows[k];
        p->rec_rows_efficiency_lo[method][k] = lo.rec_rows[k], p->gemm_rows_efficiency_lo[method][k] = lo.gemm_rows[k];
    }
    return FL_OK;
}

/* Seconds per element of the runtime's bias pass (fl_add_bias_rows: the biases added to the rows a
 * non-dense input projection or a head wrote) over an output of rows x cols floats, timed alone
 * (second-fastest of REPS). */
static fl_status measure_bias(size_t rows, int cols, double *seconds) {
    float *y = fl_calloc(rows * (size_t)cols + (size_t)cols, sizeof(float));
    if (!y) return fl_fail(FL_ERR_NOMEM, "out of memory measuring the bias pass");
    float *bias = y + rows * (size_t)cols;
    for (int j = 0; j < cols; j++) bias[j] = (float)(j % 5) * 1e-3f;
    fl_add_bias_rows(y, rows, cols, (size_t)cols, bias);
    int inner = 1;
    for (;;) {
        double t0 = fl_now_seconds();
        for (int k = 0; k < inner; k++) fl_add_bias_rows(y, rows, cols, (size_t)cols, bias);
        if (fl_now_seconds() - t0 > 2e-4 || inner >= (1 << 16)) break;
        inner *= 2;
    }
    double s[REPS];
    for (int i = 0; i < REPS; i++) {
        double t0 = fl_now_seconds();
        for (int k = 0; k < inner; k++) fl_add_bias_rows(y, rows, cols, (size_t)cols, bias);
        s[i] = (fl_now_seconds() - t0) / inner;
    }
    fl_sort_doubles(s, REPS);
    *seconds = s[PICK] / ((double)rows * cols);
    fl_free(y);
    return FL_OK;
}

fl_status fl_profile_measure(fl_profile *p) {
    if (!p) return fl_fail(FL_ERR_ARG, "profile is NULL");
    /* Single-thread rates: OpenBLAS would otherwise run the GEMMs on every core (sessions set their
     * own thread count before each run). */
    int blas_threads = fl_blas_single_begin();
    fl_status st = measure_all(p);
    fl_blas_single_end(blas_threads);
    return st;
}

/* Cache capacities from measurement: the ladder with one thread (p->curve) and with two together
 * (p->curve_all, on machines with 2 or more CPUs), each FL_PROFILE_PASSES times, interleaved (one
 * thread, two threads, one thread again, ...), and each point's rate the median of its passes: a
 * neighbour's burst that slows a few sizes in one pass does not move a knee, a fall that every pass
 * sees does. Each level's knee (profile_knee.c) is applied to p's levels; *memory_bw: the median of
 * the one-thread curve's memory plateau (0 without a fall). p's cell figures must be set. */
static fl_status measure_capacities(fl_profile *p, double *memory_bw) {
    const size_t top = ladder_bytes(LADDER_POINTS - 1);
    const int np = FL_PROFILE_PASSES;
    weights ws = {fl_malloc(top), top / sizeof(float)};
    /* v1, vall: (passes, LADDER_POINTS) rates of the one-thread and all-cores ladders */
    double *v1 = fl_malloc((size_t)2 * np * LADDER_POINTS * sizeof(double)), *vall = v1 + np * LADDER_POINTS;
    fl_status st = FL_OK;
    if (!ws.w || !v1) {
        st = fl_fail(FL_ERR_NOMEM, "out of memory for the %zu-byte streaming ladder", top);
        goto done;
    }
    for (size_t i = 0; i < ws.n; i++) ws.w[i] = (float)((i * 2654435761u) % 1000) * 1e-5f;
    const bool all = p->cores >= 2;
    for (int q = 0; q < np && !st; q++) {
        st = measure_ladder(1, &ws, p, p->curve_bytes, v1 + q * LADDER_POINTS);
        if (!st && all) st = measure_ladder(2, &ws, p, p->curve_all_bytes, vall + q * LADDER_POINTS);
    }
    p->n_curve = p->n_curve_all = p->curve_all_threads = 0;
    if (st) goto done;
    fl_profile_curve_median(v1, np, LADDER_POINTS, p->curve_bandwidth);
    p->n_curve = LADDER_POINTS;
    if (all) {
        fl_profile_curve_median(vall, np, LADDER_POINTS, p->curve_all_bandwidth);
        p->n_curve_all = LADDER_POINTS, p->curve_all_threads = 2;
    }
    fl_knee k1[FL_PROFILE_MAX_LEVELS], kall[FL_PROFILE_MAX_LEVELS];
    int n1 = fl_profile_find_levels(p->curve_bytes, p->curve_bandwidth, p->n_curve, k1, FL_PROFILE_MAX_LEVELS, memory_bw);
    double memory_all = 0;
    int nall = fl_profile_find_levels(p->curve_all_bytes, p->curve_all_bandwidth, p->n_curve_all, kall,
                                      FL_PROFILE_MAX_LEVELS, &memory_all);
    /* all cores streaming from memory together, each its own part: the all-cores curve's memory
     * plateau (else its top point) */
    p->dram_bandwidth_all = !all ? 0 : memory_all > 0 ? memory_all : p->curve_all_bandwidth[p->n_curve_all - 1];
    fl_profile_apply_levels(p, k1, n1, kall, nall);
    p->id.llc_bytes = p->level[p->n_levels - 1].bytes;
done:
    fl_free(ws.w);
    fl_free(v1);
    return st;
}

static fl_status measure_all(fl_profile *p) {
    fl_status st = fl_profile_detect(p);
    if (st) return st;
    if ((st = measure_cell(16, &p->cell_seconds)) || (st = measure_cell(1, &p->cell_seconds_b1))) return st;
    if ((st = measure_gemm(&p->gemm_flops))) return st;
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++)
        if ((st = measure_rows(4 << (2 * k), &p->gemm_rows_flops[k])) ||
            (st = measure_rec_rows(p, 256, 4 << (2 * k), &p->rec_rows_flops[k])))
            return st;
    double memory_bw = 0;
    if ((st = measure_capacities(p, &memory_bw)) || (st = measure_thread_scales(p))) return st;
    /* Mat-vec flop rate and L1 rate from the product's slope within L1 (measure_gemv). */
    double l1_rate = 0;
    if ((st = measure_gemv(&p->gemv_flops, &l1_rate))) return st;
    /* the first level streamed as the others (a step on half of it, less its cell update) where the
     * slope is no rate for it: no slope (noise), or a first level past 64 KiB (the curve told L1 and
     * L2 apart not), which the slope's 24 KiB panel does not stand for */
    if (p->gemv_flops > 0 && p->level[0].bytes <= ((size_t)64 << 10))
        p->level[0].bandwidth = l1_rate;
    else if ((st = measure_stream(p->level[0].bytes / 2, p, &p->level[0].bandwidth,
                                  p->gemv_flops > 0 ? NULL : &p->gemv_flops, NULL)))
        return st;
    for (int i = 1; i < p->n_levels; i++) {
        /* Half of a private level; a quarter of a shared one (others use it too). */
        size_t set = p->level[i].shared_cpus > 1 ? p->level[i].bytes / 4 : p->level[i].bytes / 2;
        if (set <= p->level[i - 1].bytes) set = (p->level[i].bytes + p->level[i - 1].bytes) / 2;
        if ((st = measure_stream(set, p, &p->level[i].bandwidth, NULL, NULL))) return st;
        /* the same working set streamed by all cores together, each its own part, off the
         * all-cores curve (the cost model's rate for N threads where it has no curve for N) */
        p->level[i].all_cores_bandwidth =
            p->n_curve_all ? fl_cost_curve_at(p->curve_all_bytes, p->curve_all_bandwidth, p->n_curve_all, (double)set) : 0;
    }
    size_t last = p->level[p->n_levels - 1].bytes;
    /* the memory plateau of the (median) curve, robust to one slow point; else the top of the
     * ladder, 256 MiB */
    p->dram_bandwidth = memory_bw > 0 ? memory_bw : p->curve_bandwidth[p->n_curve - 1];
    /* Recurrent rate at batch 16 on a W_hh (4H, H) of twice the last level (at least 32 MiB). */
    {
        double want = 2.0 * (double)last > 32.0 * (1 << 20) ? 2.0 * (double)last : 32.0 * (1 << 20);
        if (want > 512.0 * (1 << 20)) want = 512.0 * (1 << 20);
        double rate;
        if ((st = measure_rec_rows(p, (int)sqrt(want / 16.0), 16, &rate))) return st;
        p->rec_memory_factor = p->rec_rows_flops[1] > 0 ? rate / p->rec_rows_flops[1] : 0.0;
        if (p->rec_memory_factor > 1) p->rec_memory_factor = 1;
    }
    /* Fixed cost of a layer-step through a whole session: a model too small to be anything else. */
    fl_arch tiny = {.input = 8, .hidden = 8, .layers = 1, .head = FL_HEAD_NONE};
    fl_model *m;
    if ((st = fl_model_create(&tiny, NULL, &m))) return st;
    st = fl_model_init_random(m, 1);
    if (!st) st = fl_plan_time_model(m, 1, 64, 1, REPS, 1, &p->step_overhead);
    fl_model_free(m);
    if (st) return st;
    p->step_overhead = without_cell(p->step_overhead, cell_of(p, 1, tiny.hidden, 1));
    /* Bias pass: outputs of 512 rows x 256 floats (512 KiB, within a private L2 of 1 MiB or more)
     * and of 1024 x 1024 floats (4 MiB, beyond it). */
    double cached, beyond;
    if ((st = measure_methods(p, FL_METHOD_SVD)) || (st = measure_methods(p, FL_METHOD_CP)) ||
        (st = measure_bias(512, 256, &cached)) || (st = measure_bias(1024, 1024, &beyond)))
        return st;
    p->bias_seconds = beyond;
    p->bias_seconds_cached = cached;
    if ((st = measure_cold_gx_all(p))) return st;
    if ((st = fl_profile_measure_quant(p, FL_PRECISION_BF16)) || (st = fl_profile_measure_quant(p, FL_PRECISION_INT8)))
        return st;
    p->measured = 1;
    return FL_OK;
}

