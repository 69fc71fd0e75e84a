/* Machine profile, measurement: flop and streaming rates of the runtime's own kernels on this
 * machine, and the cache capacities read off a streaming curve (profile_knee.c). Detection of
 * what the machine reports is in profile_detect.c, the JSON file in profile_io.c.
 *
 * Streaming: the runtime's recurrent step (fl_rec_step, batch 1) on a dense W_hh (4H, H) of a
 * given size is timed over a ladder of working sets, 16 KiB to 512 MiB in steps of 2^(1/4), first
 * by one thread, then by two threads together (all cores on the 2-CPU machines this targets; the
 * worker pool splits W_hh between them), the pair repeated FL_PROFILE_PASSES times and each point's
 * rate the median of its passes. Each level's effective capacity is the knee of the curve:
 * the largest working set that still streams at >= 80% of the level's plateau. Because the curve
 * is measured as the machine is, with its co-tenants, a shared L3 that neighbours fill shows up as
 * a knee at the share left to us: that is the capacity the planner should count on (re-measure
 * with `fastlstm profile --refresh` when the load changes). Measured capacities replace reported
 * ones; the reported ones are kept beside them.
 *
 * The run goes in passes (fl_profile_run_*, profile_internal.h): each pass times the rate figures
 * the batch > 1 and two-thread predictions rest on (gemm_flops, gemv_flops, gemm_rows_flops,
 * rec_rows_flops, thread_scale_*: profile_rates.c, the typical latency, as bench_plan scores it;
 * the low-rank step's parts, lr_*: profile_lowrank.c),
 * the streaming ladder on one thread and on all cores, and the step's rate from memory
 * (rec_memory_factor), each after the cell update it subtracts; each figure is the median of its
 * passes. fl_profile_measure takes FL_PROFILE_PASSES passes back to back; bench_plan takes one
 * before each round of timing its candidates, so the figures and the times it scores them against
 * sample the same minutes. The figures timed once, after the passes (level rates, efficiencies,
 * fixed step cost, bias pass, cold gx, the activations' cost (cost_act.c: whole sessions, paired),
 * quantized rates), and each pass's cell update and ladder
 * points keep their samples' median (REPS below). */
#include "profile_internal.h"
#include "recurrent.h"
#include "blas_threads.h"
#include "kernels/kernels.h"
#include "plan_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The figures timed here (streaming ladder and level rates, cell update, efficiencies, bias pass,
 * cold gx, quantized rates) are timed REPS times and the median sample kept, as profile_rates.c and
 * profile_lowrank.c keep theirs: the predictions are scored against medians, and on a VM that runs at
 * two speeds in spells (profile_speed.c) the low end of the samples reads the fast speed while the
 * candidates' medians read the mix. Until session 16 the second-fastest was kept here; three
 * bench_plan runs each way: within 15% 44, 26, 37 of 48 with it (worst 2.51x), 41, 31, 43 with the
 * median (worst 1.41x; docs/planner.md, "Session 16"). A knee is read off the curve's shape and an
 * efficiency is a ratio of two sides timed alike, so neither rests much on the statistic's level. */
#define REPS 7
#define PICK (REPS / 2)

/* Seconds of one recurrent step of B rows of r, the median of `reps` <= REPS samples. */
static double time_steps_n(fl_rec *r, int B, const float *gx, float *h0, float *h1, float *c, int H, int reps) {
    return fl_profile_time_steps(r, B, gx, h0, h1, c, H, reps, reps / 2);
}

static double time_steps(fl_rec *r, int B, const float *gx, float *h0, float *h1, float *c, int H) {
    return time_steps_n(r, B, gx, h0, h1, c, H, REPS);
}

/* Seconds per hidden unit per row of the cell update alone: the runtime's fused gate kernel with no
 * product (K = 0) over B rows of H = 256 units (the median of REPS samples). B = 1 runs the
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

/* Hidden size of the cold-gx measurement: not a power of two, as most models' are not (at 1024 each
 * row's gate runs start on page boundaries and this VM paid about half the extra per byte that it
 * paid at 650, 768 or 1000). */
#define COLD_H 1000

/* p->cold_gx_seconds[method] (see fl_profile): a layer of H = COLD_H with W_hh of `method` at rank
 * H/16 and H/4, its step at batch 16 on one thread timed with gx walking `cold` (nb steps of
 * (16, 4H) floats, far beyond the last level: each sample reads 32 steps never read since nb
 * steps back) and with one gx held in cache, samples of the two alternating; the difference of
 * their median (PICK) per gx byte, at least 0. p->cell_seconds
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

/* Largest W_hh the ladder packs afresh, as a session packs its model's: two threads streaming a
 * prefix of one shared buffer, the previous point's, read 13-15% faster at 5-7 MB (between the two
 * cores' L2 and the L3: 65 against 57 GB/s at 5.9 MB, 54 against 47 at 7.0, medians of six passes
 * alternating on the Xeon model 207, 2026-12-01) than on a buffer of their own; the runtime's own
 * steps of a 650-unit layer read the latter (47 GB/s), and the shared figure priced 2 x 650 dense
 * at batch 1 on two threads 1.2-1.4x too fast in every run of sessions 16-17. One thread, or past
 * 10 MB, read the same either way. 64 MiB covers that range with room to spare; packing the
 * ladder's points up to it copies ~0.4 GB a ladder, all of them to 512 MiB would copy ~3.4 GB. */
#define FRESH_PACK_BYTES ((size_t)64 << 20)

/* Weights for the streaming measurements: filled once, at the largest size, and shared. */
typedef struct weights {
    float *w;
    size_t n; /* floats */
} weights;

/* Time the runtime's own recurrent step (fl_rec_step, batch 1, `threads` threads) on a dense layer
 * whose W_hh (4H, H) takes about `bytes`: *rate = W_hh bytes per second, *flops = its flop rate,
 * *seconds the step time, all without the cell update (p's batch-1 figure, whole: below
 * parallel_step_bytes the step runs on one thread, and above it half a cell is noise beside the
 * product); the median (PICK) of `reps` samples. ws: NULL, or weights of at least that size to use
 * (saves filling them again). */
static fl_status measure_stream_t(size_t bytes, int threads, const weights *ws, const fl_profile *p, int reps,
                                  double *rate, double *flops, double *seconds) {
    int H = (int)sqrt((double)bytes / 16.0);
    if (H < 4) H = 4;
    const size_t G = (size_t)4 * H, packed = G * (size_t)((H + FL_REC_NB - 1) / FL_REC_NB * FL_REC_NB);
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
    /* W_hh packed into a buffer of its own, as the runtime packs a model's, up to FRESH_PACK_BYTES;
     * past it, ws large enough for the packed W_hh (4 H rows, H padded to whole blocks) is used as the
     * packed form as it is (the same bytes are streamed; a ladder to 512 MiB packed ~3.4 GB in all) */
    const fl_rec_pack shared = {.pw = ws && ws->n >= packed && bytes > FRESH_PACK_BYTES ? ws->w : NULL};
    if ((st = shared.pw ? fl_rec_create_packed(&ly, &shared, 1, threads, &r) : fl_rec_create(&ly, 1, threads, &r)))
        goto done;
    double t = fl_profile_without_cell(time_steps_n(r, 1, buf, buf + G, buf + G + H, buf + G + 2 * H, H, reps),
                            fl_profile_cell_of(p, 1, H, 1));
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

/* The ladder: 16 KiB * 2^(k/4), k = 0..60 (to 512 MiB). Past the last level's knee it needs
 * enough points for memory's plateau: to 256 MiB only, a 2-vCPU Xeon whose co-tenants left it most
 * of a 260 MiB L3 (session 14, 11:50) streamed at its L3 rate to 190 MB and fell at the top point
 * alone, so the L3 read as memory (30 GB/s), the last level as the 1.2 MB L2, and bench_plan priced
 * 2 x 650 SVD h/16 at batch 1 at 3x its time. */
#define LADDER_POINTS 61
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
        double t = fl_profile_without_cell(time_steps(r, B, gx, h0, h1, c, H), fl_profile_cell_of(p, B, H, 1));
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
    const int H = FL_PROFILE_EFF_HIDDEN, maxb = 256, RM = 2048, RK = 1024; /* reference projection (RM, RK) */
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
    /* the efficiency is against the step priced as a dense one of as many bytes: hide the low-rank
     * parts (cost_lowrank.c would price it by them instead, and the figure would mean nothing) */
    const double lr00 = p->lr_proj_seconds[0][0];
    p->lr_proj_seconds[0][0] = 0;
    double cell[FL_PROFILE_GEMM_POINTS + 1], cell_r[FL_PROFILE_GEMM_POINTS + 1]; /* each batch's cell update */
    for (int k = 0; k <= FL_PROFILE_GEMM_POINTS; k++)
        cell[k] = fl_profile_cell_of(p, 1 << (2 * k), H, 1), cell_r[k] = fl_profile_cell_of(p, 1 << (2 * k), Hr, 1);
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
        for (int i = 0; i < EFF_PAIRS; i++) { /* alternately, each sample itself the median of 3 */
            tm[i] = fl_profile_without_cell(time_steps_n(r, B, gx, h0, h1, cs, H, 3), cell[k]);
            tr[i] = fl_profile_without_cell(time_steps_n(rr, B, gx, h0, h1, cs, Hr, 3), cell_r[k]);
        }
        eff[k] = fl_profile_paired_efficiency(c.seconds - p->step_overhead, tm, cr.seconds - p->step_overhead, tr,
                                              EFF_PAIRS);
    }
    p->cell_seconds = cell16, p->cell_seconds_b1 = cell1;
    p->lr_proj_seconds[0][0] = lr00;
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
    fl_status st = measure_method(p, method, FL_PROFILE_EFF_HIDDEN / 16, &lo);
    if (!st) st = measure_method(p, method, FL_PROFILE_EFF_HIDDEN / 4, &hi);
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
 * (the median of REPS). */
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

/* A profile run (profile_internal.h): the passes' raw figures until finish combines them. */
struct fl_profile_run {
    fl_profile *p;
    fl_rate_passes rp; /* the rate figures of each pass */
    fl_lr_passes lp;   /* the low-rank step's parts of each pass */
    weights ws;        /* the ladder's weights, filled once at its largest size */
    /* v1, vall: (FL_PROFILE_MAX_PASSES, LADDER_POINTS) rates of the one-thread and all-cores ladders */
    double *v1, *vall;
    double mem_rate[FL_PROFILE_MAX_PASSES]; /* the step's flop rate at batch 16 from memory */
    double cell16[FL_PROFILE_MAX_PASSES], cell1[FL_PROFILE_MAX_PASSES]; /* the cell update, batch 16 and 1 */
    fl_speed_probe speed; /* the machine's speed around each pass (profile_speed.c) */
    double speed_s[FL_PROFILE_MAX_PASSES * FL_PROFILE_SPEED_PER_PASS];
    int n_speed;
    size_t mem_bytes; /* its W_hh: twice the last level of the first pass's curve, 32..512 MiB */
    int n;            /* passes taken */
};

fl_status fl_profile_run_begin(fl_profile *p, fl_profile_run **out) {
    if (!p || !out) return fl_fail(FL_ERR_ARG, "profile run: NULL argument");
    *out = NULL;
    fl_status st = fl_profile_detect(p);
    if (st) return st;
    const size_t top = ladder_bytes(LADDER_POINTS - 1);
    fl_profile_run *r = fl_calloc(1, sizeof *r);
    if (r) r->ws = (weights){fl_malloc(top), top / sizeof(float)};
    if (r) r->v1 = fl_malloc((size_t)2 * FL_PROFILE_MAX_PASSES * LADDER_POINTS * sizeof(double));
    if (!r || !r->ws.w || !r->v1) {
        fl_profile_run_free(r);
        return fl_fail(FL_ERR_NOMEM, "out of memory for the %zu-byte streaming ladder", top);
    }
    if ((st = fl_speed_probe_init(&r->speed))) {
        fl_profile_run_free(r);
        return st;
    }
    r->vall = r->v1 + FL_PROFILE_MAX_PASSES * LADDER_POINTS;
    for (size_t i = 0; i < r->ws.n; i++) r->ws.w[i] = (float)((i * 2654435761u) % 1000) * 1e-5f;
    r->p = p;
    *out = r;
    return FL_OK;
}

int fl_profile_run_passes(const fl_profile_run *r) { return r ? r->n : 0; }

void fl_profile_run_free(fl_profile_run *r) {
    if (!r) return;
    fl_speed_probe_free(&r->speed);
    fl_free(r->ws.w);
    fl_free(r->v1);
    fl_free(r);
}

/* Half a pass's samples of the machine's speed (either side of its figures). */
static void speed_samples(fl_profile_run *r) {
    for (int i = 0; i < FL_PROFILE_SPEED_PER_PASS / 2; i++) r->speed_s[r->n_speed++] = fl_speed_probe_sample(&r->speed);
}

/* Working set of the step's rate from memory: twice the last level found on one pass's one-thread
 * ladder v (else the reported one), at least 32 MiB, at most 512 MiB. */
static size_t memory_set(const fl_profile *p, const size_t *bytes, const double *v) {
    fl_knee k[FL_PROFILE_MAX_LEVELS];
    const int n = fl_profile_find_levels(bytes, v, LADDER_POINTS, k, FL_PROFILE_MAX_LEVELS, NULL);
    const double last = n > 0 ? (double)k[n - 1].bytes : (double)p->level[p->n_levels - 1].bytes;
    double want = 2.0 * last > 32.0 * (1 << 20) ? 2.0 * last : 32.0 * (1 << 20);
    return (size_t)(want > 512.0 * (1 << 20) ? 512.0 * (1 << 20) : want);
}

fl_status fl_profile_run_pass(fl_profile_run *r) {
    if (!r) return fl_fail(FL_ERR_ARG, "profile run is NULL");
    if (r->n >= FL_PROFILE_MAX_PASSES) return fl_fail(FL_ERR_ARG, "profile: more than %d passes", r->n);
    fl_profile *p = r->p;
    const int q = r->n, lq = r->lp.n;
    int blas_threads = fl_blas_single_begin();
    const int ns = r->n_speed;
    speed_samples(r);
    /* the cell update first: this pass's ladder subtracts this pass's figure, finish the median */
    fl_status st = measure_cell(16, &r->cell16[q]);
    if (!st) st = measure_cell(1, &r->cell1[q]);
    if (!st) p->cell_seconds = r->cell16[q], p->cell_seconds_b1 = r->cell1[q];
    if (!st) st = fl_profile_rates_pass(p, &r->rp);
    if (!st) st = fl_profile_lowrank_pass(p, &r->lp); /* the low-rank kernels' first draw of this pass */
    if (!st) st = measure_ladder(1, &r->ws, p, p->curve_bytes, r->v1 + q * LADDER_POINTS);
    if (!st) st = fl_profile_lowrank_pass(p, &r->lp); /* a second, seconds later */
    if (!st && p->cores >= 2) st = measure_ladder(2, &r->ws, p, p->curve_all_bytes, r->vall + q * LADDER_POINTS);
    if (!st && q == 0) r->mem_bytes = memory_set(p, p->curve_bytes, r->v1);
    if (!st) {
        const int Hm = (int)sqrt((double)r->mem_bytes / 16.0);
        double t;
        st = fl_profile_time_rec_rows(Hm, 16, 1, &t);
        if (!st) r->mem_rate[q] = 2.0 * 4.0 * Hm * (double)Hm * 16 / fl_profile_without_cell(t, fl_profile_cell_of(p, 16, Hm, 1));
    }
    if (!st) st = fl_profile_lowrank_pass(p, &r->lp); /* and a third (FL_PROFILE_LR_DRAWS) */
    if (!st) speed_samples(r);
    fl_blas_single_end(blas_threads);
    if (st) r->rp.n = q, r->lp.n = lq, r->n_speed = ns; /* the pass is dropped whole */
    else r->n++;
    return st;
}

fl_status fl_profile_measure(fl_profile *p) {
    if (!p) return fl_fail(FL_ERR_ARG, "profile is NULL");
    fl_profile_run *r = NULL;
    fl_status st = fl_profile_run_begin(p, &r);
    for (int q = 0; q < FL_PROFILE_PASSES && !st; q++) st = fl_profile_run_pass(r);
    if (!st) st = fl_profile_run_finish(r);
    fl_profile_run_free(r);
    return st;
}

/* Cache capacities from the passes' ladders: with one thread (p->curve) and with two together
 * (p->curve_all, on machines with 2 or more CPUs), each point's rate the median of its passes: a
 * neighbour's burst that slows a few sizes in one pass does not move a knee, a fall that every pass
 * sees does. Each level's knee (profile_knee.c) is applied to p's levels; *memory_bw: the median
 * curve's memory plateau on one thread (0 without a fall). Then the curves the cost model reads have
 * a dip that most passes met lifted to the next sizes' rate (fl_profile_curve_lift_dips); the knees
 * are read before, off the curves the knee rules were tested on (a lift raises a plateau's median
 * and with it the 80% line). The L2 knee read 1024-1444 KiB in this evening's runs either way. */
static void apply_capacities(fl_profile_run *r, double *memory_bw) {
    fl_profile *p = r->p;
    const bool all = p->cores >= 2;
    fl_profile_curve_median(r->v1, r->n, LADDER_POINTS, p->curve_bandwidth);
    p->n_curve = LADDER_POINTS, p->n_curve_all = p->curve_all_threads = 0;
    if (all) {
        fl_profile_curve_median(r->vall, r->n, LADDER_POINTS, p->curve_all_bandwidth);
        p->n_curve_all = LADDER_POINTS, p->curve_all_threads = 2;
    }
    fl_knee k1[FL_PROFILE_MAX_LEVELS], kall[FL_PROFILE_MAX_LEVELS];
    int n1 = fl_profile_find_levels(p->curve_bytes, p->curve_bandwidth, p->n_curve, k1, FL_PROFILE_MAX_LEVELS, memory_bw);
    double memory_all = 0;
    int nall = fl_profile_find_levels(p->curve_all_bytes, p->curve_all_bandwidth, p->n_curve_all, kall,
                                      FL_PROFILE_MAX_LEVELS, &memory_all);
    if (all) { /* the private levels' sharing by the best pass (fl_profile_knees_best) */
        double best[LADDER_POINTS];
        fl_knee kbest[FL_PROFILE_MAX_LEVELS];
        fl_profile_curve_max(r->vall, r->n, LADDER_POINTS, best);
        const int nbest = fl_profile_find_levels(p->curve_all_bytes, best, LADDER_POINTS, kbest, FL_PROFILE_MAX_LEVELS, NULL);
        fl_profile_knees_best(kall, nall, kbest, nbest);
    }
    /* all cores streaming from memory together, each its own part: the all-cores curve's memory
     * plateau (else its top point) */
    p->dram_bandwidth_all = !all ? 0 : memory_all > 0 ? memory_all : p->curve_all_bandwidth[p->n_curve_all - 1];
    fl_profile_apply_levels(p, k1, n1, kall, nall);
    p->id.llc_bytes = p->level[p->n_levels - 1].bytes;
    fl_profile_curve_lift_dips(p->curve_bandwidth, p->n_curve);
    if (all) fl_profile_curve_lift_dips(p->curve_all_bandwidth, p->n_curve_all);
}

/* p->rec_memory_factor: `rate` (the step's at batch 16 from memory) over rec_rows_flops[1], at most
 * 1 (0 without the latter). */
static void set_memory_factor(fl_profile *p, double rate) {
    p->rec_memory_factor = p->rec_rows_flops[1] > 0 ? rate / p->rec_rows_flops[1] : 0.0;
    if (p->rec_memory_factor > 1) p->rec_memory_factor = 1;
}

static fl_status finish(fl_profile_run *r);

fl_status fl_profile_run_finish(fl_profile_run *r) {
    if (!r || r->n < 1) return fl_fail(FL_ERR_ARG, "profile run: finish without a pass");
    int blas_threads = fl_blas_single_begin();
    fl_status st = finish(r);
    fl_blas_single_end(blas_threads);
    return st;
}

/* The passes' medians, then the figures timed once (fl_profile_run_finish). */
static fl_status finish(fl_profile_run *r) {
    fl_profile *p = r->p;
    double memory_bw = 0, mem_rate = 0;
    fl_profile_curve_median(r->cell16, r->n, 1, &p->cell_seconds);
    fl_profile_curve_median(r->cell1, r->n, 1, &p->cell_seconds_b1);
    apply_capacities(r, &memory_bw);
    fl_profile_rates_apply(&r->rp, p);
    fl_profile_lowrank_apply(&r->lp, p);
    fl_profile_curve_median(r->mem_rate, r->n, 1, &mem_rate);
    set_memory_factor(p, mem_rate);
    fl_profile_speed_stats(r->speed_s, r->n_speed, p);
    /* the first level's rate: the mat-vec slope within L1 (measure_gemv, profile_rates.c: twice its
     * flop rate in W bytes per second); the first level streamed as the others (a step on half of it,
     * less its cell update) where the slope is no rate for it: no slope (noise), or a first level
     * past 64 KiB (the curve told L1 and L2 apart not), which the slope's 24 KiB panel does not stand
     * for */
    const bool l1_slope = p->gemv_flops > 0 && p->level[0].bytes <= ((size_t)64 << 10);
    double gemv_stream = 0; /* the mat-vec rate of that stream, where the slope gave none */
    fl_status st = FL_OK;
    if (l1_slope) p->level[0].bandwidth = 2.0 * p->gemv_flops;
    else if ((st = measure_stream(p->level[0].bytes / 2, p, &p->level[0].bandwidth, &gemv_stream, NULL)))
        return st;
    if (!(p->gemv_flops > 0)) p->gemv_flops = gemv_stream;
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
    /* the memory plateau of the (median) curve, robust to one slow point; else the top of the
     * ladder, 512 MiB */
    p->dram_bandwidth = memory_bw > 0 ? memory_bw : p->curve_bandwidth[p->n_curve - 1];
    /* Fixed cost of a layer-step through a whole session: a model too small to be anything else. */
    fl_arch tiny = {.input = 8, .hidden = 8, .layers = 1, .head = FL_HEAD_NONE};
    fl_model *m;
    if ((st = fl_model_create(&tiny, NULL, &m))) return st;
    st = fl_model_init_random(m, 1);
    if (!st) st = fl_plan_time_model(m, 1, 64, 1, REPS, 1, &p->step_overhead);
    fl_model_free(m);
    if (st) return st;
    p->step_overhead = fl_profile_without_cell(p->step_overhead, fl_profile_cell_of(p, 1, tiny.hidden, 1));
    /* Bias pass: outputs of 512 rows x 256 floats (512 KiB, within a private L2 of 1 MiB or more)
     * and of 1024 x 1024 floats (4 MiB, beyond it). */
    double cached, beyond;
    if ((st = measure_methods(p, FL_METHOD_SVD)) || (st = measure_methods(p, FL_METHOD_CP)) ||
        (st = measure_bias(512, 256, &cached)) || (st = measure_bias(1024, 1024, &beyond)))
        return st;
    p->bias_seconds = beyond;
    p->bias_seconds_cached = cached;
    if ((st = measure_cold_gx_all(p)) || (st = fl_profile_measure_reread(p)) || (st = fl_profile_measure_act(p)))
        return st;
    if ((st = fl_profile_measure_quant(p, FL_PRECISION_BF16)) || (st = fl_profile_measure_quant(p, FL_PRECISION_INT8)))
        return st;
    p->measured = 1;
    return FL_OK;
}
