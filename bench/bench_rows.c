/* The two schedules of the recurrent steps on N threads (fl_step_sched, session.c): every step's
 * hidden blocks split over the threads (BLOCKS, a sync per step) against each thread running all
 * steps of its own batch rows with the whole W_hh (ROWS). One process, two sessions on the same model
 * alternating (which goes first alternates too), so the machine's load drifts over both alike; prints
 * each one's median us per time step (a whole fl_session_run / T) with min and max, and the median
 * with quartiles of the per-round ratio rows / blocks (< 1: rows faster).
 *
 *   bench_rows [--H n] [--L n] [--B n] [--T n] [--threads n] [--rounds n] [--method dense|svd|cp]
 *              [--bidir] [--csv]
 * --method svd: every gate matrix at rank H/8; cp: H/16 (W_ih of layer 0 too). --L 1 times one layer
 * (its projection is the same in both); --bidir runs the directions in turn (FL_BIDIR_SERIAL), each on
 * all threads. --csv prints one line: H,B,L,method,bidir,threads,blocks_us,rows_us,ratio,q1,q3.
 * Set OPENBLAS_NUM_THREADS=1. */
#include "internal.h"
#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROUNDS 201

typedef struct ctx {
    int H, L, B, T, threads;
    float *x, *y;
} ctx;

static void die(void) {
    fprintf(stderr, "bench_rows: %s\n", fl_last_error());
    exit(1);
}

static double run_us(fl_session *s, const ctx *c) {
    fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = c->B, .seq = c->T, .x = c->x, .y = c->y};
    double t0 = fl_now_seconds();
    if (fl_session_run(s, &io)) die();
    return (fl_now_seconds() - t0) * 1e6 / c->T;
}

static fl_model *make(const ctx *c, fl_method method, bool bidir) {
    fl_arch a = {.input = c->H, .hidden = c->H, .layers = c->L, .bidirectional = bidir};
    fl_model *m = NULL;
    if (fl_model_create(&a, NULL, &m)) die();
    if (method != FL_METHOD_DENSE) {
        const int rank = method == FL_METHOD_SVD ? c->H / 8 : c->H / 16;
        fl_mat_spec specs[64];
        size_t n = fl_model_num_matrices(m);
        if (n > 64) exit(2);
        for (size_t i = 0; i < n; i++) {
            fl_matrix_info mi;
            if (fl_model_matrix_info(m, i, &mi)) die();
            specs[i] = (mi.kind == FL_MAT_IH || mi.kind == FL_MAT_HH) ? (fl_mat_spec){method, rank}
                                                                        : (fl_mat_spec){FL_METHOD_DENSE, 0};
        }
        fl_model_free(m);
        if (fl_model_create(&a, specs, &m)) die();
    }
    if (fl_model_init_random(m, 1)) die();
    return m;
}

static fl_session *open_session(const fl_model *m, const ctx *c, fl_step_sched sched) {
    fl_session_opts o = fl_session_opts_default();
    o.max_batch = c->B;
    o.max_seq = c->T;
    o.threads = c->threads;
    o.bidir_sched = FL_BIDIR_SERIAL;
    o.step_sched = sched;
    fl_session *s = NULL;
    if (fl_session_create(m, &o, &s)) die();
    return s;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    ctx c = {.H = 650, .L = 1, .B = 20, .T = 35, .threads = 2};
    int rounds = 16;
    bool bidir = false, csv = false;
    fl_method method = FL_METHOD_DENSE;
    const char *mname = "dense";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--bidir")) bidir = true;
        else if (!strcmp(argv[i], "--csv")) csv = true;
        else if (i + 1 < argc && !strcmp(argv[i], "--method")) {
            mname = argv[++i];
            if (!strcmp(mname, "svd")) method = FL_METHOD_SVD;
            else if (!strcmp(mname, "cp")) method = FL_METHOD_CP;
            else if (strcmp(mname, "dense")) goto usage;
        } else if (i + 1 < argc) {
            const int v = atoi(argv[i + 1]);
            if (!strcmp(argv[i], "--H")) c.H = v;
            else if (!strcmp(argv[i], "--L")) c.L = v;
            else if (!strcmp(argv[i], "--B")) c.B = v;
            else if (!strcmp(argv[i], "--T")) c.T = v;
            else if (!strcmp(argv[i], "--threads")) c.threads = v;
            else if (!strcmp(argv[i], "--rounds")) rounds = v < 1 ? 1 : v > MAX_ROUNDS ? MAX_ROUNDS : v;
            else goto usage;
            i++;
        } else
            goto usage;
    }
    if (c.H < 16 || c.L < 1 || c.B < 1 || c.T < 1 || c.threads < 1) goto usage;
    fl_model *m = make(&c, method, bidir);
    fl_session *blocks = open_session(m, &c, FL_STEP_BLOCKS), *rows = open_session(m, &c, FL_STEP_ROWS);
    const int dirs = bidir ? 2 : 1;
    c.x = fl_malloc((size_t)c.B * c.T * c.H * sizeof(float));
    c.y = fl_malloc((size_t)c.B * c.T * dirs * c.H * sizeof(float));
    if (!c.x || !c.y) return 1;
    uint64_t seed = 7;
    for (size_t i = 0; i < (size_t)c.B * c.T * c.H; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        c.x[i] = (float)((seed >> 40) / (double)(1 << 24)) * 0.2f - 0.1f;
    }
    static double vb[MAX_ROUNDS], vr[MAX_ROUNDS], ratio[MAX_ROUNDS];
    for (int w = 0; w < 2; w++) run_us(blocks, &c), run_us(rows, &c); /* warm-up */
    for (int r = 0; r < rounds; r++) {
        if (r % 2) vr[r] = run_us(rows, &c), vb[r] = run_us(blocks, &c);
        else vb[r] = run_us(blocks, &c), vr[r] = run_us(rows, &c);
        ratio[r] = vr[r] / vb[r];
    }
    bench_stats sb = bench_summarize(vb, rounds), sr = bench_summarize(vr, rounds), sq = bench_summarize(ratio, rounds);
    qsort(ratio, (size_t)rounds, sizeof *ratio, cmp); /* quartiles of the ratio */
    const double q1 = ratio[rounds / 4], q3 = ratio[(3 * rounds) / 4 < rounds ? (3 * rounds) / 4 : rounds - 1];
    if (csv)
        printf("%d,%d,%d,%s,%d,%d,%.1f,%.1f,%.3f,%.3f,%.3f\n", c.H, c.B, c.L, mname, bidir, c.threads, sb.med, sr.med,
               sq.med, q1, q3);
    else {
        printf("# bench_rows: L %d, H %d, B %d, T %d, %s%s, %d threads, %d rounds; us per time step: median [min..max]\n",
               c.L, c.H, c.B, c.T, mname, bidir ? ", bidirectional (serial)" : "", c.threads, rounds);
        printf("blocks          %9.1f [%.1f..%.1f]\n", sb.med, sb.lo, sb.hi);
        printf("rows            %9.1f [%.1f..%.1f]\n", sr.med, sr.lo, sr.hi);
        printf("ratio rows / blocks %7.3f [quartiles %.3f..%.3f]\n", sq.med, q1, q3);
    }
    fl_session_free(blocks);
    fl_session_free(rows);
    fl_model_free(m);
    fl_free(c.x), fl_free(c.y);
    return 0;
usage:
    fprintf(stderr, "usage: bench_rows [--H n] [--L n] [--B n] [--T n] [--threads n] [--rounds n] "
                    "[--method dense|svd|cp] [--bidir] [--csv]\n");
    return 2;
}
