/* Roofline of the LSTM step on this machine: for each shape, the lower bound per time step from
 * measured bandwidth and flop rate, against fastlstm dense, SVD and CP at ranks h/8 and h/16.
 *
 *   bench_roofline [--quick] [--threads n]
 * With one thread, times are this thread's CPU time (set OPENBLAS_NUM_THREADS=1 so the GEMMs run on
 * it too); with more, wall time.
 *
 * Measured first, with the project's own recurrent kernel (dispatched level):
 *   rate   flop/s of the gate kernel at batch 6 on an L2-resident panel (register-blocked, so
 *          compute-bound), and OpenBLAS sgemm 1024^3 for the input projection
 *   bw(S)  bytes/s streaming a packed weight panel of S bytes at batch 1, S = one layer's recurrent
 *          weights (the session runs a layer over all steps, so that is the working set)
 * Per shape and method (1 thread unless --threads):
 *   rec bound  = layers * max(bytes_hh / bw(bytes_hh), flops_hh / rate)
 *   step bound = rec bound + flops_ih / max(rate, sgemm rate)   (input projection: one GEMM over T)
 *   rec        = time of fl_rec_step per step, all layers;  step = fl_session_run / T
 * and prints the fraction of the bound reached, and the speedup vs dense next to the flop and byte
 * reductions. Models are built with fl_model_create + fl_model_init_random (no decomposition). */
#include "internal.h"
#include "kernels/kernels.h"
#include "recurrent.h"
#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One thread: this thread's CPU time (bench_now); more threads: wall time. */
static bool g_thread_cpu = true;

static double now_s(void) { return bench_now(g_thread_cpu); }

static int g_rounds = 5;
static double g_round_s = 0.05;

/* Median seconds per call of fn(arg) over rounds of ~g_round_s. */
static double time_it(void (*fn)(void *), void *arg) {
    fn(arg);
    double t0 = now_s();
    fn(arg);
    double one = now_s() - t0;
    int n = (int)(g_round_s / (one > 1e-8 ? one : 1e-8));
    if (n < 1) n = 1;
    double v[32];
    for (int r = 0; r < g_rounds; r++) {
        t0 = now_s();
        for (int i = 0; i < n; i++) fn(arg);
        v[r] = (now_s() - t0) / n;
    }
    return bench_summarize(v, g_rounds).med;
}

/* ------------------------------------------------------------ machine */

typedef struct panel_run {
    const fl_kernels *k;
    int H, K, B;
    float *pw, *x, *gx, *c, *h;
} panel_run;

static void panel_call(void *p) {
    panel_run *r = p;
    r->k->gate_cell(0, (r->H + 15) / 16, r->H, r->K, r->B, r->pw, r->x, r->K, r->gx, 4 * r->H, r->c, r->h, r->H);
}

static panel_run panel_make(int H, int K, int B) {
    panel_run r = {fl_kernels_get(), H, K, B, NULL, NULL, NULL, NULL, NULL};
    int nb = (H + 15) / 16;
    r.pw = fl_calloc((size_t)nb * K * 64, sizeof(float));
    r.x = fl_calloc((size_t)B * K, sizeof(float));
    r.gx = fl_calloc((size_t)B * 4 * H, sizeof(float));
    r.c = fl_calloc((size_t)B * H, sizeof(float));
    r.h = fl_calloc((size_t)B * H, sizeof(float));
    if (!r.pw || !r.x || !r.gx || !r.c || !r.h) {
        fprintf(stderr, "bench_roofline: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < (size_t)nb * K * 64; i++) r.pw[i] = (float)((i * 7) % 13) * 1e-3f;
    for (size_t i = 0; i < (size_t)B * K; i++) r.x[i] = 0.5f;
    return r;
}

static void panel_free(panel_run *r) {
    fl_free(r->pw), fl_free(r->x), fl_free(r->gx), fl_free(r->c), fl_free(r->h);
}

/* Bytes/s streaming a gate panel of about `bytes` at batch 1. */
static double measure_bw(double bytes) {
    int K = 512, H = 16 * (int)(bytes / (512.0 * 256));
    if (H < 16) {
        H = 16;
        K = (int)(bytes / 256);
        if (K < 16) K = 16;
    }
    panel_run r = panel_make(H, K, 1);
    double t = time_it(panel_call, &r);
    double b = (double)((H + 15) / 16) * K * 256;
    panel_free(&r);
    return b / t;
}

static double measure_rate(void) {
    panel_run r = panel_make(16, 512, 6);
    double t = time_it(panel_call, &r);
    panel_free(&r);
    return 2.0 * 64 * 512 * 6 / t;
}

typedef struct gemm_run {
    int n;
    float *a, *b, *c;
} gemm_run;

static void gemm_call(void *p) {
    gemm_run *g = p;
    fl_gemm(false, true, g->n, g->n, g->n, 1.0f, g->a, g->n, g->b, g->n, 0.0f, g->c, g->n);
}

static double measure_sgemm(void) {
    gemm_run g = {1024, NULL, NULL, NULL};
    size_t n2 = (size_t)g.n * g.n;
    g.a = fl_calloc(n2, 4), g.b = fl_calloc(n2, 4), g.c = fl_calloc(n2, 4);
    for (size_t i = 0; i < n2; i++) g.a[i] = g.b[i] = 1e-3f * (float)(i % 17);
    double t = time_it(gemm_call, &g);
    fl_free(g.a), fl_free(g.b), fl_free(g.c);
    return 2.0 * g.n * g.n * g.n / t;
}

/* ------------------------------------------------------------ model runs */

typedef struct rec_run {
    fl_rec **rec;
    int L, H, T;
    float *gx, *h, *c;
} rec_run;

/* One sequence through all layers, layer by layer like the session (gx reused: timing only). */
static void rec_call(void *p) {
    rec_run *r = p;
    for (int l = 0; l < r->L; l++)
        for (int t = 0; t < r->T; t++)
            fl_rec_step(r->rec[l], 1, r->gx, 4 * r->H, r->h + (size_t)(t % 2) * r->H, r->H, r->c,
                        r->h + (size_t)((t + 1) % 2) * r->H, r->H);
}

typedef struct sess_run {
    fl_session *s;
    fl_run_io io;
} sess_run;

static void sess_call(void *p) {
    sess_run *r = p;
    if (fl_session_run(r->s, &r->io) != FL_OK) {
        fprintf(stderr, "bench_roofline: %s\n", fl_last_error());
        exit(1);
    }
}

typedef struct result {
    double rec_s, step_s, rec_bound, step_bound, bytes, flops;
} result;

static result run_model(int D, int H, int L, int T, fl_method method, int rank, int threads, double rate,
                        double sgemm_rate) {
    fl_arch a = {.input = D, .hidden = H, .layers = L, .head = FL_HEAD_NONE};
    fl_mat_spec specs[64];
    for (int i = 0; i < 2 * L && i < 64; i++) specs[i] = (fl_mat_spec){method, rank};
    fl_model *m = NULL;
    if (fl_model_create(&a, specs, &m) != FL_OK || fl_model_init_random(m, 1) != FL_OK) {
        fprintf(stderr, "bench_roofline: %s\n", fl_last_error());
        exit(1);
    }
    result res = {0};
    double ih_flops = 0;
    for (int l = 0; l < L; l++) {
        const fl_mat *hh = &m->layer[l].whh;
        double bytes = fl_mat_params(hh) * 4.0, flops = (double)fl_mat_flops(hh);
        double bw = measure_bw(bytes);
        double tb = bytes / bw, tf = flops / rate;
        res.rec_bound += tb > tf ? tb : tf;
        res.bytes += bytes;
        res.flops += flops;
        ih_flops += (double)fl_mat_flops(&m->layer[l].wih);
    }
    res.step_bound = res.rec_bound + ih_flops / (rate > sgemm_rate ? rate : sgemm_rate);

    rec_run rr = {NULL, L, H, T, NULL, NULL, NULL};
    rr.rec = calloc((size_t)L, sizeof *rr.rec);
    rr.gx = fl_calloc((size_t)4 * H, 4), rr.h = fl_calloc((size_t)2 * H, 4), rr.c = fl_calloc((size_t)H, 4);
    for (int l = 0; l < L; l++)
        if (fl_rec_create(&m->layer[l], 1, threads, &rr.rec[l]) != FL_OK) {
            fprintf(stderr, "bench_roofline: %s\n", fl_last_error());
            exit(1);
        }
    res.rec_s = time_it(rec_call, &rr) / T;
    for (int l = 0; l < L; l++) fl_rec_free(rr.rec[l]);
    free(rr.rec), fl_free(rr.gx), fl_free(rr.h), fl_free(rr.c);

    sess_run sr = {0};
    fl_session_opts o = fl_session_opts_default();
    o.max_batch = 1, o.max_seq = T, o.threads = threads;
    if (fl_session_create(m, &o, &sr.s) != FL_OK) {
        fprintf(stderr, "bench_roofline: %s\n", fl_last_error());
        exit(1);
    }
    float *x = fl_calloc((size_t)T * D, 4), *y = fl_calloc(fl_run_output_size(m, 1, T), 4);
    for (size_t i = 0; i < (size_t)T * D; i++) x[i] = (float)((i * 37) % 19) / 19.0f - 0.5f;
    sr.io = (fl_run_io){.layout = FL_BATCH_MAJOR, .batch = 1, .seq = T, .x = x, .y = y};
    res.step_s = time_it(sess_call, &sr) / T;
    fl_session_free(sr.s);
    fl_free(x), fl_free(y);
    fl_model_free(m);
    return res;
}

int main(int argc, char **argv) {
    int threads = 1;
    bool quick = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = true;
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_roofline [--quick] [--threads n]\n");
            return 2;
        }
    }
    if (threads < 1) threads = 1;
    if (threads > 1) g_thread_cpu = false;
    if (quick) g_rounds = 3, g_round_s = 0.01;
    const double rate = measure_rate(), sg = measure_sgemm();
    printf("# roofline, kernels %s, threads %d, medians of %d rounds of %s; OPENBLAS_CORETYPE=%s\n",
           fl_kernels_get()->name, threads, g_rounds, threads > 1 ? "wall time" : "thread CPU time", getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "<unset>");
    printf("# flop rate: gate kernel (batch 6, L2 panel) %.1f GFLOP/s; OpenBLAS sgemm 1024^3 %.1f GFLOP/s\n", rate / 1e9, sg / 1e9);
    printf("# bandwidth of the gate kernel streaming a panel (batch 1):");
    const double sizes[] = {32e3, 256e3, 1e6, 4e6, 16e6, 64e6};
    for (int i = 0; i < 6; i++)
        if (!quick || sizes[i] <= 16e6) printf(" %.0fKB %.0f GB/s;", sizes[i] / 1e3, measure_bw(sizes[i]) / 1e9);
    printf("\n# rec: recurrent steps only; step: whole fl_session_run / T (adds the input projection GEMM)\n");
    printf("%-16s %-9s %9s %9s | %9s %9s %6s | %9s %9s %6s | %7s %7s %7s %7s\n", "shape D/H/L/T", "method",
           "MB_hh", "MFLOP_hh", "rec us", "bound us", "frac", "step us", "bound us", "frac", "x rec", "x step",
           "flop/", "bytes/");
    const int shapes[4][4] = {{128, 256, 1, 100}, {650, 650, 2, 35}, {1500, 1500, 2, 35}, {28, 128, 1, 28}};
    for (int s = 0; s < 4; s++) {
        const int D = shapes[s][0], H = shapes[s][1], L = shapes[s][2], T = shapes[s][3];
        if (quick && H == 1500) continue;
        result dense = {0};
        struct {
            fl_method m;
            int div;
        } cases[5] = {{FL_METHOD_DENSE, 0}, {FL_METHOD_SVD, 8}, {FL_METHOD_SVD, 16}, {FL_METHOD_CP, 8}, {FL_METHOD_CP, 16}};
        for (int c = 0; c < 5; c++) {
            int rank = cases[c].div ? H / cases[c].div : 0;
            result r = run_model(D, H, L, T, cases[c].m, rank, threads, rate, sg);
            if (c == 0) dense = r;
            char shape[32], meth[16];
            snprintf(shape, sizeof shape, "%d/%d/%d/%d", D, H, L, T);
            snprintf(meth, sizeof meth, "%s%s%d", cases[c].m == FL_METHOD_DENSE ? "dense" : cases[c].m == FL_METHOD_SVD ? "svd" : "cp",
                     cases[c].div ? " h/" : "", cases[c].div);
            if (!cases[c].div) meth[5] = 0;
            printf("%-16s %-9s %9.2f %9.2f | %9.2f %9.2f %5.0f%% | %9.2f %9.2f %5.0f%% | %7.2f %7.2f %7.1f %7.1f\n", shape,
                   meth, r.bytes / 1e6, r.flops / 1e6, r.rec_s * 1e6, r.rec_bound * 1e6, 100 * r.rec_bound / r.rec_s,
                   r.step_s * 1e6, r.step_bound * 1e6, 100 * r.step_bound / r.step_s, dense.rec_s / r.rec_s,
                   dense.step_s / r.step_s, dense.flops / r.flops, dense.bytes / r.bytes);
            fflush(stdout);
        }
    }
    return 0;
}
