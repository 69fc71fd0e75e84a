/* Machine profile, the rate figures the batch > 1 and two-thread predictions rest on: the sgemm and
 * mat-vec rates (gemm_flops, gemv_flops), the dense input projection's rate at 4..256 rows
 * (gemm_rows_flops), the dense recurrent step's at batch 4..256 (rec_rows_flops) and the two-thread
 * speed-ups of both (thread_scale_rec, thread_scale_proj, thread_scale_proj_mem); the dense step's
 * rate and speed-up again with W_hh beyond the private level (rec_rows_flops_far,
 * thread_scale_rec_far, at rec_far_bytes: 4 x the largest private level, at most a quarter of the
 * last, from the sizes the pass sees, the reported ones in bench_plan's passes). Session 14: the 2 x
 * 650 dense step at batch 20 (W_hh 6.8 MB, from L3) ran 1.17x (one thread) and 1.22x (two) its price
 * from the H 256 figures (W_hh 1 MiB, in L2), timers around a session's phases, and the two-thread
 * speed-up read 1.49 there against 1.70-2.02 at H 256.
 *
 * Measured over the profile run, not at one moment. On the shared 2-vCPU VM these figures moved as
 * much as the sessions they predict: two profiles 35 minutes apart (session 8) read sgemm at 76.6 and
 * 49.9 GFLOP/s and the projection's two-thread speed-up at 256 rows at 1.02 and ~1.6-2, each figure
 * having been timed once, in one burst. So fl_profile_measure takes FL_PROFILE_PASSES passes
 * over the whole list (fl_profile_rates_pass: each pass times each figure once), each followed by a
 * pass of the streaming ladder (profile.c: fl_profile_run_pass; bench_plan puts a round of its own
 * timings after each), and each figure is the median of its passes (fl_profile_rates_apply).
 * The statistic is the typical one, on both levels: each pass's sample is
 * the median of REPS timings, and the figure the median of the passes. The planner predicts the
 * latency a session will typically see, and bench_plan scores it against the median of its rounds
 * (each the median of a few runs); a near-best sample (the second-fastest of 7, the statistic
 * before) describes the machine at its quietest, and a prediction from it read 1.1-1.8x fast at
 * batch 20 and two threads whenever the machine was busy. (The streaming ladder, the level rates
 * and the SVD / CP efficiencies kept their near-best samples until session 16; they keep the median
 * too now: profile.c.) */
#include "profile_internal.h"
#include "recurrent.h"
#include "kernels/kernels.h"
#include "plan_internal.h"

#include <math.h>
#include <string.h>

#define REPS 7
#define TYPICAL (REPS / 2) /* the median of REPS sorted samples */

double fl_profile_time_steps(fl_rec *r, int B, const float *gx, float *h0, float *h1, float *c, int H, int reps,
                             int pick) {
    fl_rec_step(r, B, gx, 4 * H, h0, H, c, h1, H); /* warm the level */
    int inner = 1;
    for (;;) {
        double t0 = fl_now_seconds();
        for (int k = 0; k < inner; k++) fl_rec_step(r, B, gx, 4 * H, (k & 1) ? h1 : h0, H, c, (k & 1) ? h0 : h1, H);
        double t = fl_now_seconds() - t0;
        if (t > 2e-4 || inner >= (1 << 20)) break;
        inner *= 2;
    }
    double s[16];
    if (reps > 16) reps = 16;
    for (int i = 0; i < reps; i++) {
        double t0 = fl_now_seconds();
        for (int k = 0; k < inner; k++) fl_rec_step(r, B, gx, 4 * H, (k & 1) ? h1 : h0, H, c, (k & 1) ? h0 : h1, H);
        s[i] = (fl_now_seconds() - t0) / inner;
    }
    fl_sort_doubles(s, (size_t)reps);
    return s[pick < reps ? pick : reps - 1];
}

fl_status fl_profile_time_rec_rows(int H, int B, int threads, double *seconds) {
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
    *seconds = fl_profile_time_steps(r, B, gx, h0, h1, c, H, REPS, TYPICAL);
done:
    fl_rec_free(r);
    fl_free(w);
    fl_free(buf);
    return st;
}

int fl_profile_far_hidden(const fl_profile *p) {
    if (!p || p->n_levels < 2) return 0;
    const size_t far = fl_profile_beyond_private(p);
    if ((double)far < 4 * fl_profile_private_bytes(p)) return 0; /* held to a quarter of the last */
    const int H = (int)(sqrt((double)far / 16.0) / 16.0 + 0.5) * 16;
    return H < 16 ? 16 : H;
}

/* sgemm rate (fl_gemm, one thread) on three 192 x 192 operands (144 KiB each: in L2 on current
 * cores), the median of REPS samples of 4 calls. */
static fl_status measure_gemm(double *flops) {
    const int n = 192;
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
    *flops = 2.0 * n * n * (double)n / s[TYPICAL];
    fl_free(a);
    return FL_OK;
}

/* Mat-vec flop rate in L1, the cell update and the step's fixed costs excluded by measuring the
 * product's slope, not by subtracting: the runtime's batch-1 gate kernel on one block of 16 units
 * (the batch-1 loop, one stream below K = 128) at K = 32 and K = 96 (an 8 KiB and a 24 KiB panel:
 * both in L1 from 32 KiB), REPS samples each, interleaved, the median of each; the rate is the extra
 * flops over the extra time (its W bytes per second, 4 bytes a multiply-add, are twice it).
 * Subtracting an isolated cell from a step at this size does not work: the cell's long exp / divide
 * chains overlap the next block's FMAs inside a step, so the cell alone (~7 ns a unit on the Zen 3
 * VM, ~220 ns at H = 32) takes more than it adds to a ~290 ns step, and the remainder left mat-vec
 * rates of 29 to 141 GFLOP/s (FMA peak ~92) from one profile to the next. 0 when the longer
 * product did not time longer. */
static fl_status measure_gemv(double *flops) {
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
    const double dt = s[1][TYPICAL] - s[0][TYPICAL], df = 2.0 * 4 * H * (double)(K1 - K0);
    *flops = dt > 0 ? df / dt : 0;
    return FL_OK;
}

/* Back-to-back calls of the runtime's input projection (fl_rec_input: packed W_ih (4H, in), split
 * across r's pool threads) on `rows` rows that last ~0.2 ms, or 0 when this kernel level has no packed
 * projection (the runtime then goes through BLAS on one thread). x (rows, in), gx (rows, 4H). */
static int proj_inner(fl_rec *r, int rows, int in, int G, const float *x, const float *bias, float *gx) {
    if (!fl_rec_input(r, rows, x, in, bias, gx, G)) return 0;
    int inner = 1;
    for (;;) {
        double t0 = fl_now_seconds();
        for (int k = 0; k < inner; k++) fl_rec_input(r, rows, x, in, bias, gx, G);
        if (fl_now_seconds() - t0 > 2e-4 || inner >= (1 << 16)) return inner;
        inner *= 2;
    }
}

/* Seconds of one such projection: `inner` calls timed, per call. */
static double proj_sample(fl_rec *r, int inner, int rows, int in, int G, const float *x, const float *bias, float *gx) {
    const double t0 = fl_now_seconds();
    for (int k = 0; k < inner; k++) fl_rec_input(r, rows, x, in, bias, gx, G);
    return (fl_now_seconds() - t0) / inner;
}

double fl_profile_pk_macs(int k) { return (double)(16 << (2 * k)) * 2048.0 * 64.0; }

double fl_profile_paired_scale(const double *t1, const double *tn, int n) {
    double r[FL_PAIRED_MAX];
    if (n < 1) return 0;
    if (n > FL_PAIRED_MAX) n = FL_PAIRED_MAX;
    for (int i = 0; i < n; i++) {
        if (!(t1[i] > 0) || !(tn[i] > 0)) return 0;
        r[i] = t1[i] / tn[i];
    }
    fl_sort_doubles(r, (size_t)n);
    return r[n / 2];
}

/* Speed-up of the runtime's split input projection (fl_rec_input) on `threads` threads over one, on
 * a dense W_ih (4 hid, in), at rows0 4^k rows: out[k] (all 0 when this kernel level has no packed
 * projection). Unpaired: the median of REPS one-thread samples over the median of REPS
 * `threads`-thread ones timed right after them. Paired (thread_scale_pk, rows0 16, in 64, hid 512:
 * fl_profile_pk_macs): the median of REPS pairs' ratios, each a one-thread sample and the
 * `threads`-thread one right after it, the VM's speed of the moment cancelling in each pair's ratio
 * (each sample's worker kept awake by the call before it, as in a layer's run; but an input
 * projection below FL_WAKE_MIN_MACS does not wake it, so thread_scale_proj's 4-row point, timed
 * first on a fresh pool, runs on the caller alone, as a session's projections that size do). */
static fl_status proj_scales(int threads, int in, int hid, int rows0, bool paired, double *out) {
    const int G = 4 * hid, maxr = rows0 << (2 * (FL_PROFILE_GEMM_POINTS - 1));
    fl_arch a = {.input = in, .hidden = hid, .layers = 1, .head = FL_HEAD_NONE};
    fl_model *m = NULL;
    fl_rec *r[2] = {NULL, NULL};
    float *buf = NULL;
    memset(out, 0, FL_PROFILE_GEMM_POINTS * sizeof *out);
    fl_status st = fl_model_create(&a, NULL, &m);
    if (!st) st = fl_model_init_random(m, 1);
    if (!st) st = fl_rec_create(&m->layer[0], maxr, 1, &r[0]);
    if (!st) st = fl_rec_create(&m->layer[0], maxr, threads, &r[1]);
    /* x (maxr, in), gx (maxr, 4H), bias (4H) */
    if (!st && !(buf = fl_calloc((size_t)maxr * (in + G) + G, sizeof(float))))
        st = fl_fail(FL_ERR_NOMEM, "out of memory measuring the split projection");
    for (size_t i = 0; !st && i < (size_t)maxr * in; i++) buf[i] = (float)((int)(i % 23) - 11) * 0.05f;
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS && !st; k++) {
        const int rows = rows0 << (2 * k);
        float *x = buf, *gx = x + (size_t)maxr * in, *bias = gx + (size_t)maxr * G;
        double t[2][REPS];
        if (paired) {
            const int inner = proj_inner(r[0], rows, in, G, x, bias, gx);
            if (!inner) break; /* no packed projection: none */
            for (int i = 0; i < REPS; i++)
                for (int side = 0; side < 2; side++) {
                    fl_rec_input(r[side], rows, x, in, bias, gx, G); /* the worker awake, the weights warm */
                    t[side][i] = proj_sample(r[side], inner, rows, in, G, x, bias, gx);
                }
            out[k] = fl_profile_paired_scale(t[0], t[1], REPS);
            continue;
        }
        for (int side = 0; side < 2; side++) {
            const int inner = proj_inner(r[side], rows, in, G, x, bias, gx);
            for (int i = 0; i < REPS; i++) t[side][i] = inner ? proj_sample(r[side], inner, rows, in, G, x, bias, gx) : 0;
            fl_sort_doubles(t[side], REPS);
        }
        const double t1 = t[0][TYPICAL], tn = t[1][TYPICAL];
        out[k] = t1 > 0 && tn > 0 ? t1 / tn : 0;
    }
    if (!(out[0] > 0)) memset(out, 0, FL_PROFILE_GEMM_POINTS * sizeof *out);
    fl_free(buf);
    fl_rec_free(r[0]);
    fl_rec_free(r[1]);
    fl_model_free(m);
    return st;
}

fl_status fl_profile_rates_pass(const fl_profile *p, fl_rate_passes *rp) {
    if (rp->n >= FL_PROFILE_MAX_PASSES) return fl_fail(FL_ERR_ARG, "profile: more than %d rate passes", rp->n);
    const int q = rp->n, N = p->cores >= 2 ? 2 : 0, H = 256;
    rp->threads = N;
    if (q == 0) rp->far_hidden = fl_profile_far_hidden(p); /* one size over the passes */
    fl_status st = measure_gemm(&rp->gemm[q]);
    if (!st) st = measure_gemv(&rp->gemv[q]);
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS && !st; k++) {
        const int B = 4 << (2 * k);
        st = fl_profile_rows_rate(B, REPS, TYPICAL, &rp->rows[q][k]);
        /* the dense step at H = 256 on one thread, then on N: the batch-B rate and its speed-up */
        if (!st) st = fl_profile_time_rec_rows(H, B, 1, &rp->rec_t1[q][k]);
        rp->rec_tn[q][k] = 0;
        if (!st && N >= 2) st = fl_profile_time_rec_rows(H, B, N, &rp->rec_tn[q][k]);
        /* and with W_hh beyond the private level (fl_profile.rec_far_bytes) */
        rp->far_t1[q][k] = rp->far_tn[q][k] = 0;
        if (!st && rp->far_hidden) st = fl_profile_time_rec_rows(rp->far_hidden, B, 1, &rp->far_t1[q][k]);
        if (!st && rp->far_hidden && N >= 2) st = fl_profile_time_rec_rows(rp->far_hidden, B, N, &rp->far_tn[q][k]);
    }
    memset(rp->proj[q], 0, sizeof rp->proj[q]);
    memset(rp->proj_mem[q], 0, sizeof rp->proj_mem[q]);
    /* W_ih (2048, 512), 4 MiB, held by the last level (the smallest split from 4 rows), and (4096,
     * 2048), 32 MiB, streamed from memory */
    if (!st && N >= 2) st = proj_scales(N, 512, 512, 4, false, rp->proj[q]);
    if (!st && N >= 2) st = proj_scales(N, 2048, 1024, 4, false, rp->proj_mem[q]);
    memset(rp->pk[q], 0, sizeof rp->pk[q]);
    if (!st && N >= 2) st = proj_scales(N, 64, 512, 16, true, rp->pk[q]); /* thread_scale_pk */
    memset(rp->sw[q], 0, sizeof rp->sw[q]);
    if (!st && N >= 2) st = fl_profile_switch_pass(N, rp->sw[q]); /* profile_threads.c */
    if (!st) rp->n++;
    return st;
}

/* The dense step's flop rate and speed-up at hidden H from each pass's timings t1, tn (cell included;
 * tn 0: no speed-up) into rate and scale ([pass][k]). */
static void step_rates(const fl_profile *p, int H, const double (*t1)[FL_PROFILE_GEMM_POINTS],
                       const double (*tn)[FL_PROFILE_GEMM_POINTS], int n, int N, double sync,
                       double (*rate)[FL_PROFILE_GEMM_POINTS], double (*scale)[FL_PROFILE_GEMM_POINTS]) {
    for (int q = 0; q < n; q++)
        for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) {
            const int B = 4 << (2 * k);
            const double cell = fl_profile_cell_of(p, B, H, 1), t = fl_profile_without_cell(t1[q][k], cell);
            rate[q][k] = 2.0 * 4.0 * H * (double)H * B / t;
            scale[q][k] = N >= 2 && tn[q][k] > 0
                              ? t / fl_profile_without_cell(fl_profile_without_cell(tn[q][k], sync), cell / N)
                              : 0;
        }
}

void fl_profile_rates_apply(const fl_rate_passes *rp, fl_profile *p) {
    enum { NP = FL_PROFILE_MAX_PASSES, NK = FL_PROFILE_GEMM_POINTS };
    const int n = rp->n, N = rp->threads, Hf = rp->far_hidden;
    if (n < 1) return;
    double rec[NP][NK], scale[NP][NK], far[NP][NK], far_scale[NP][NK];
    fl_profile_switch_apply(rp->sw, n, N, p); /* first: fl_cost_thread_sync takes its sync */
    const double sync = N >= 2 ? fl_cost_thread_sync(p) : 0;
    step_rates(p, 256, rp->rec_t1, rp->rec_tn, n, N, sync, rec, scale);
    fl_profile_curve_median(rp->gemm, n, 1, &p->gemm_flops);
    fl_profile_curve_median(rp->gemv, n, 1, &p->gemv_flops);
    fl_profile_curve_median(&rp->rows[0][0], n, NK, p->gemm_rows_flops);
    fl_profile_curve_median(&rec[0][0], n, NK, p->rec_rows_flops);
    p->rec_far_bytes = 0;
    memset(p->rec_rows_flops_far, 0, sizeof p->rec_rows_flops_far);
    memset(p->thread_scale_rec_far, 0, sizeof p->thread_scale_rec_far);
    if (Hf > 0 && rp->far_t1[0][0] > 0) {
        step_rates(p, Hf, rp->far_t1, rp->far_tn, n, N, sync, far, far_scale);
        p->rec_far_bytes = 16.0 * Hf * (double)Hf;
        fl_profile_curve_median(&far[0][0], n, NK, p->rec_rows_flops_far);
        if (N >= 2) fl_profile_curve_median(&far_scale[0][0], n, NK, p->thread_scale_rec_far);
    }
    memset(p->thread_scale_rec, 0, sizeof p->thread_scale_rec);
    memset(p->thread_scale_proj, 0, sizeof p->thread_scale_proj);
    memset(p->thread_scale_proj_mem, 0, sizeof p->thread_scale_proj_mem);
    memset(p->thread_scale_pk, 0, sizeof p->thread_scale_pk);
    if (N < 2) return;
    fl_profile_curve_median(&scale[0][0], n, NK, p->thread_scale_rec);
    fl_profile_curve_median(&rp->proj[0][0], n, NK, p->thread_scale_proj);
    fl_profile_curve_median(&rp->proj_mem[0][0], n, NK, p->thread_scale_proj_mem);
    /* a kernel level without a packed projection reads 0 in every pass: keep the "none" (all 0) */
    if (!(p->thread_scale_proj[0] > 0)) memset(p->thread_scale_proj, 0, sizeof p->thread_scale_proj);
    fl_profile_curve_median(&rp->pk[0][0], n, NK, p->thread_scale_pk);
    if (!(p->thread_scale_pk[0] > 0)) memset(p->thread_scale_pk, 0, sizeof p->thread_scale_pk);
    if (!(p->thread_scale_proj_mem[0] > 0)) memset(p->thread_scale_proj_mem, 0, sizeof p->thread_scale_proj_mem);
}
