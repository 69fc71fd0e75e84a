/* Bidirectional layers: where a step's time goes (issue 11's speed goals). One run times, in
 * alternating rounds so that the machine's load drifts over all of them alike:
 *   uni t1   a unidirectional L x H model, fl_session_run on 1 thread (the goal's baseline)
 *   uni t2   the same on 2 threads
 *   bi t1    the same shapes bidirectional, 1 thread
 *   bi t2    bidirectional, 2 threads (goal: bi t2 <= 1.2 x uni t1 at batch 1)
 *   bi t2 par / bi t2 ser   the same on each schedule (session_sched.h): the two directions at once,
 *            one per thread (the default), or in turn, each step on both threads; and the median
 *            over rounds of their ratio ser / par (a round runs both, back to back, in turn first)
 * and the pieces of one direction of one layer, 1 thread:
 *   proj K=H    input projection of all T steps, layer 0 (T*B x H -> 4H), as the session does it
 *   proj K=2H   the same for layer 1 of the bidirectional model (its input is [fwd, rev])
 *   steps       T recurrent steps (fl_rec_step) of one layer direction
 * Figures are microseconds per time step (a whole run / T), medians over rounds with min and max.
 *
 *   bench_bidir [--H n] [--L n] [--B n] [--T n] [--rounds n] [--only uni,uni2,bi1,bi2,sched,pieces] [--cpu]
 * Set OPENBLAS_NUM_THREADS=1. Wall clock, or with --cpu the pieces in thread CPU time (one-thread
 * figures on a loaded machine); on a shared machine compare figures of one run only. */
#include "internal.h"
#include "recurrent.h"
#include "session_sched.h"
#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROUNDS 101

typedef struct ctx {
    int H, L, B, T;
    fl_model *uni, *bi;
    fl_session *s_uni, *s_uni2, *s_bi1, *s_bi2, *s_par, *s_ser;
    float *x, *y;           /* x (B, T, H) inputs; y big enough for either model's output */
    fl_rec *rec;            /* layer 0 forward of the bidirectional model, 1 thread */
    fl_rec *rec1;           /* layer 1 forward (its W_ih packed, K = 2H), 1 thread; NULL when L == 1 */
    float *in2, *gx, *h[2], *c; /* (T*B, 2H) layer-1 input, (T*B, 4H) projections, (B, H) states */
} ctx;

static double run_us(fl_session *s, const ctx *c) {
    fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = c->B, .seq = c->T, .x = c->x, .y = c->y};
    double t0 = fl_now_seconds();
    fl_status st = fl_session_run(s, &io);
    double t = (fl_now_seconds() - t0) * 1e6 / c->T;
    if (st) {
        fprintf(stderr, "bench_bidir: %s\n", fl_last_error());
        exit(1);
    }
    return t;
}

static bool cpu_clock; /* --cpu: the pieces in this thread's CPU time (time given to others does not count) */

static double proj_us(const ctx *c, int layer) {
    const fl_layer *ly = &c->bi->layer[layer * 2];
    const int n = c->B * c->T, K = ly->wih.cols, G = 4 * c->H;
    const float *in = layer == 0 ? c->x : c->in2;
    fl_rec *r = layer == 0 ? c->rec : c->rec1;
    double t0 = bench_now(cpu_clock);
    // as the session does it: the packed projection where the kernel level has one, else BLAS
    if (!fl_rec_input(r, n, in, K, ly->b_ih, c->gx, G))
        fl_mat_apply(&ly->wih, n, in, K, 0.0f, c->gx, G, NULL);
    return (bench_now(cpu_clock) - t0) * 1e6 / c->T;
}

static double steps_us(const ctx *c) {
    const int H = c->H, G = 4 * H, B = c->B;
    double t0 = bench_now(cpu_clock);
    for (int t = 0; t < c->T; t++)
        fl_rec_step(c->rec, B, c->gx + (size_t)t * B * G, G, c->h[t % 2], H, c->c, c->h[(t + 1) % 2], H);
    return (bench_now(cpu_clock) - t0) * 1e6 / c->T;
}

static fl_model *make(int H, int L, int bidir) {
    fl_arch a = {.input = H, .hidden = H, .layers = L, .bidirectional = bidir};
    fl_model *m = NULL;
    if (fl_model_create(&a, NULL, &m) || fl_model_init_random(m, 1)) {
        fprintf(stderr, "bench_bidir: %s\n", fl_last_error());
        exit(1);
    }
    return m;
}

static fl_session *open_session(const fl_model *m, const ctx *c, int threads) {
    fl_session_opts o = fl_session_opts_default();
    o.max_batch = c->B;
    o.max_seq = c->T;
    o.threads = threads;
    fl_session *s = NULL;
    if (fl_session_create(m, &o, &s)) {
        fprintf(stderr, "bench_bidir: %s\n", fl_last_error());
        exit(1);
    }
    return s;
}

static float *rnd(size_t n, uint64_t *seed) {
    float *p = fl_malloc(n * sizeof *p);
    if (!p) exit(1);
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = (float)((*seed >> 40) / (double)(1 << 24)) * 0.2f - 0.1f;
    }
    return p;
}

int main(int argc, char **argv) {
    ctx c = {.H = 650, .L = 2, .B = 1, .T = 35};
    int rounds = 15;
    const char *only = "uni,uni2,bi1,bi2,sched,pieces";
    for (int i = 1; i < argc; i += 2) {
        if (!strcmp(argv[i], "--cpu")) {
            cpu_clock = true;
            i--;
            continue;
        }
        if (i + 1 >= argc) break;
        int v = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--H")) c.H = v;
        else if (!strcmp(argv[i], "--L")) c.L = v;
        else if (!strcmp(argv[i], "--B")) c.B = v;
        else if (!strcmp(argv[i], "--T")) c.T = v;
        else if (!strcmp(argv[i], "--rounds")) rounds = v < 1 ? 1 : v > MAX_ROUNDS ? MAX_ROUNDS : v;
        else if (!strcmp(argv[i], "--only")) only = argv[i + 1];
        else {
            fprintf(stderr, "usage: bench_bidir [--H n] [--L n] [--B n] [--T n] [--rounds n] [--only uni,uni2,bi1,bi2,sched,pieces] [--cpu]\n");
            return 2;
        }
    }
    const bool do_uni = strstr(only, "uni,") || !strcmp(only, "uni"), do_uni2 = strstr(only, "uni2"), do_bi1 = strstr(only, "bi1"), do_bi2 = strstr(only, "bi2"),
               do_pieces = strstr(only, "pieces"), do_sched = strstr(only, "sched");
    const int H = c.H, B = c.B, T = c.T;
    uint64_t seed = 7;
    c.uni = make(H, c.L, 0);
    c.bi = make(H, c.L, 1);
    c.s_uni = open_session(c.uni, &c, 1);
    c.s_uni2 = open_session(c.uni, &c, 2);
    c.s_bi1 = open_session(c.bi, &c, 1);
    c.s_bi2 = open_session(c.bi, &c, 2);
    c.s_par = open_session(c.bi, &c, 2);
    c.s_ser = open_session(c.bi, &c, 2);
    if (fl_session_set_bidir_sched(c.s_par, FL_BIDIR_PARALLEL) || fl_session_set_bidir_sched(c.s_ser, FL_BIDIR_SERIAL)) {
        fprintf(stderr, "bench_bidir: %s\n", fl_last_error());
        return 1;
    }
    c.x = rnd((size_t)B * T * H, &seed);
    c.in2 = rnd((size_t)B * T * 2 * H, &seed);
    c.y = fl_malloc((size_t)B * T * 2 * H * sizeof(float));
    c.gx = rnd((size_t)B * T * 4 * H, &seed);
    c.h[0] = rnd((size_t)B * H, &seed);
    c.h[1] = rnd((size_t)B * H, &seed);
    c.c = rnd((size_t)B * H, &seed);
    /* The pieces read the original weights, which the sessions' packs have given back: hold them. */
    fl_model_weights_hold(c.bi);
    if (fl_rec_create(&c.bi->layer[0], B, 1, &c.rec) || (c.L > 1 && fl_rec_create(&c.bi->layer[2], B, 1, &c.rec1))) {
        fprintf(stderr, "bench_bidir: %s\n", fl_last_error());
        return 1;
    }
    enum { UNI, UNI2, BI1, BI2, PAR, SER, RATIO, P1, P2, STEPS, N };
    const char *name[N] = {"uni t1", "uni t2", "bi t1", "bi t2", "bi t2 par", "bi t2 ser", "ratio ser / par",
                           "proj K=H (1 dir, 1 thr)", "proj K=2H (1 dir, 1 thr)", "steps (1 dir, 1 thr)"};
    static double v[N][MAX_ROUNDS];
    for (int w = 0; w < 2; w++) { /* warm-up */
        run_us(c.s_uni, &c), run_us(c.s_uni2, &c), run_us(c.s_bi1, &c), run_us(c.s_bi2, &c);
        run_us(c.s_par, &c), run_us(c.s_ser, &c);
    }
    for (int r = 0; r < rounds; r++) {
        if (do_uni) v[UNI][r] = run_us(c.s_uni, &c);
        if (do_uni2) v[UNI2][r] = run_us(c.s_uni2, &c);
        if (do_bi1) v[BI1][r] = run_us(c.s_bi1, &c);
        if (do_bi2) v[BI2][r] = run_us(c.s_bi2, &c);
        if (do_sched) { /* alternate which goes first */
            if (r % 2) v[SER][r] = run_us(c.s_ser, &c), v[PAR][r] = run_us(c.s_par, &c);
            else v[PAR][r] = run_us(c.s_par, &c), v[SER][r] = run_us(c.s_ser, &c);
            v[RATIO][r] = v[SER][r] / v[PAR][r];
        }
        if (do_pieces) {
            v[P1][r] = proj_us(&c, 0);
            v[P2][r] = c.L > 1 ? proj_us(&c, 1) : 0.0;
            v[STEPS][r] = steps_us(&c);
        }
    }
    printf("# bench_bidir: L %d, H %d, B %d, T %d, %d rounds; us per time step (run / T): median [min..max]\n",
           c.L, H, B, T, rounds);
    double med[N] = {0};
    for (int k = 0; k < N; k++) {
        if ((k == UNI && !do_uni) || (k == UNI2 && !do_uni2) || (k == BI1 && !do_bi1) || (k == BI2 && !do_bi2) ||
            (k >= PAR && k <= RATIO && !do_sched) || (k >= P1 && !do_pieces))
            continue;
        bench_stats s = bench_summarize(v[k], rounds);
        med[k] = s.med;
        printf(k == RATIO ? "%-26s %9.3f [%.3f..%.3f]\n" : "%-26s %9.1f [%.1f..%.1f]\n", name[k], s.med, s.lo, s.hi);
    }
    if (do_uni && do_bi2) printf("bi t2 / uni t1 = %.2f (goal <= 1.2)\n", med[BI2] / med[UNI]);
    if (do_uni && do_bi1) printf("bi t1 / uni t1 = %.2f\n", med[BI1] / med[UNI]);
    fl_rec_free(c.rec);
    fl_rec_free(c.rec1);
    fl_model_weights_unhold(c.bi);
    fl_session_free(c.s_uni);
    fl_session_free(c.s_uni2);
    fl_session_free(c.s_bi1);
    fl_session_free(c.s_bi2);
    fl_session_free(c.s_par);
    fl_session_free(c.s_ser);
    fl_model_free(c.uni);
    fl_model_free(c.bi);
    fl_free(c.x), fl_free(c.in2), fl_free(c.y), fl_free(c.gx), fl_free(c.h[0]), fl_free(c.h[1]), fl_free(c.c);
    return 0;
}
