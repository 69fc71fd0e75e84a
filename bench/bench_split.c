/* bench_split: where a 2-layer session's two-thread time goes against its price.
 *
 * For one candidate (hidden H = input, 2 layers, a method and rank, batch B, seq T), times in one
 * process, in interleaved rounds, each part of the session on one thread and on two, each sample
 * right after a fixed one-thread reference call (a dense H 256 step at batch 16, a few times): the
 * sample is scaled by the reference's median over its own time (the VM runs the same code ~1.35x
 * slower in spells of milliseconds to seconds: docs/planner.md), and the two-thread speed-up of a
 * part is the median over rounds of its one-thread over its two-thread sample, timed back to back.
 * Parts, per step (layer 0 alone, then both layers summed):
 *   in0 hot, steps0 hot  layer 0's projection / steps right after the same call (its pool's worker awake)
 *   in0, steps0          the same after the reference's one-thread work (its worker asleep, as a
 *                        session's layer finds it at batch 1: pool.c sleeps it ~0.4 ms after its last job)
 *   in      the input projections (fl_rec_input_ws on all T B rows, as run_dir calls it)
 *   steps   the T steps walking gx (by blocks, fl_rec_step, or by rows, fl_rec_run_rows, as the
 *           session's rule picks: fl_step_rows_chunks)
 *   layers  both layers' in and steps in turn, each layer on its own fl_rec (own pool), as a run
 *   session fl_session_run (the layers plus the run's x / y passes)
 * Beside them the model's terms from a saved profile (fl_cost_predict_terms on one and two threads):
 * in = the W_ih terms, steps = the W_hh terms with their cell update, the layer switch apart.
 *
 *   bench_split --profile P [--hidden 650] [--method dense|svd|cp] [--div 4] [--batch 20] [--seq 35]
 *               [--rounds 15]
 * Run with OPENBLAS_CORETYPE=SkylakeX on the Xeon VM (nothing here goes through BLAS, but the
 * session's creation may). */
#include "fastlstm/plan.h"
#include "internal.h"
#include "plan/plan_internal.h"
#include "recurrent.h"
#include "session_sched.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { P_IN0HOT, P_STEPS0HOT, P_IN0, P_STEPS0, P_IN, P_STEPS, P_LAYERS, P_SESSION, NPART, MAXR = 64 };
static const char *part_name[NPART] = {"in0 hot", "steps0 hot", "in0", "steps0", "in", "steps", "layers", "session"};

typedef struct layer_ctx {
    fl_rec *rec;
    const fl_layer *ly;
    int rows; /* fl_step_rows_chunks: 0 by blocks */
} layer_ctx;

typedef struct cand_ctx {
    const fl_model *m;
    int H, B, T;
    layer_ctx l[2][2]; /* [threads - 1][layer] */
    fl_session *s[2];
    float *x, *gx, *ws, *bias, *h, *c, *out, *y;
    int *bt, *off, *len;
    fl_run_io io;
    /* the reference */
    fl_rec *ref;
    float *rgx, *rh0, *rh1, *rc;
} cand_ctx;

/* Layer l's input projection on `t` threads: gx (T B, 4H) from in (T B, in). */
static void run_in(cand_ctx *c, int t, int l) {
    const layer_ctx *L = &c->l[t][l];
    const int N = c->T * c->B, G = 4 * c->H;
    const float *in = l == 0 ? c->x : c->out;
    if (!fl_rec_input_ws(L->rec, N, in, L->ly->in, c->bias, c->gx, G, c->ws)) {
        fl_mat_apply(&L->ly->wih, N, in, L->ly->in, 0.0f, c->gx, G, c->ws);
        fl_add_bias_rows(c->gx, (size_t)N, G, (size_t)G, c->bias);
    }
}

/* Layer l's T steps on `t` threads as run_dir runs them, writing out (T B, H). */
static void run_steps(cand_ctx *c, int t, int l) {
    const layer_ctx *L = &c->l[t][l];
    const int B = c->B, H = c->H, G = 4 * H;
    memset(c->h, 0, (size_t)B * H * sizeof(float));
    memset(c->c, 0, (size_t)B * H * sizeof(float));
    if (L->rows >= 2) {
        const fl_rows_seq q = {.T = c->T, .B = B, .bt = c->bt, .off = c->off, .len = c->len, .gx = c->gx, .ldgx = G,
                               .h = c->h, .ldh = H, .c = c->c, .out = c->out, .ldout = H};
        fl_rec_run_rows(L->rec, L->rows, &q);
        return;
    }
    for (int k = 0; k < c->T; k++) {
        float *ht = c->out + (size_t)k * B * H;
        fl_rec_step(L->rec, B, c->gx + (size_t)k * B * G, G, c->h, H, c->c, ht, H);
        memcpy(c->h, ht, (size_t)B * H * sizeof(float));
    }
}

/* Part p on `t` threads, seconds per step. */
static double run_part(cand_ctx *c, int p, int t) {
    if (p == P_IN0HOT) run_in(c, t, 0); /* the same part just before: its pool's worker awake */
    if (p == P_STEPS0HOT) run_steps(c, t, 0);
    const double t0 = fl_now_seconds();
    switch (p) {
    case P_IN0HOT:
    case P_IN0: run_in(c, t, 0); break;
    case P_STEPS0HOT:
    case P_STEPS0: run_steps(c, t, 0); break;
    case P_IN: run_in(c, t, 0), run_in(c, t, 1); break;
    case P_STEPS: run_steps(c, t, 0), run_steps(c, t, 1); break;
    case P_LAYERS: run_in(c, t, 0), run_steps(c, t, 0), run_in(c, t, 1), run_steps(c, t, 1); break;
    default: fl_session_run(c->s[t], &c->io); break;
    }
    return (fl_now_seconds() - t0) / c->T;
}

/* The reference: 8 steps of a dense H 256 layer at batch 16 on one thread (~0.5 ms), seconds. */
static double run_ref(cand_ctx *c) {
    const double t0 = fl_now_seconds();
    for (int k = 0; k < 8; k++) fl_rec_step(c->ref, 16, c->rgx, 1024, (k & 1) ? c->rh1 : c->rh0, 256, c->rc, (k & 1) ? c->rh0 : c->rh1, 256);
    return fl_now_seconds() - t0;
}

static double median(double *v, int n) {
    fl_sort_doubles(v, (size_t)n);
    return v[n / 2];
}

int main(int argc, char **argv) {
    const char *prof_path = NULL, *method = "dense";
    int H = 650, div = 4, B = 20, T = 35, rounds = 15;
    if (argc % 2 == 0) {
        fprintf(stderr, "bench_split: %s needs a value\n", argv[argc - 1]);
        return 2;
    }
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--profile")) prof_path = argv[i + 1];
        else if (!strcmp(argv[i], "--hidden")) H = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--method")) method = argv[i + 1];
        else if (!strcmp(argv[i], "--div")) div = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) B = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seq")) T = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rounds")) rounds = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "bench_split: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (strcmp(method, "dense") && strcmp(method, "svd") && strcmp(method, "cp")) {
        fprintf(stderr, "bench_split: --method %s: expected dense, svd or cp\n", method);
        return 2;
    }
    if (H < 16 || div < 1 || B < 1 || T < 1 || rounds < 1 || rounds > MAXR) {
        fprintf(stderr, "bench_split: bad sizes (rounds 1..%d)\n", MAXR);
        return 2;
    }
    fl_method m_ = !strcmp(method, "svd") ? FL_METHOD_SVD : !strcmp(method, "cp") ? FL_METHOD_CP : FL_METHOD_DENSE;
    const int R = m_ == FL_METHOD_DENSE ? 0 : H / div;
    fl_arch arch = {.input = H, .hidden = H, .layers = 2, .head = FL_HEAD_NONE};
    fl_mat_spec specs[4];
    for (int i = 0; i < 4; i++) specs[i] = (fl_mat_spec){m_, R};
    fl_model *m = NULL;
    fl_status st = fl_model_create(&arch, specs, &m);
    if (!st) st = fl_model_init_random(m, 1);
    cand_ctx c = {.m = m, .H = H, .B = B, .T = T};
    const size_t N = (size_t)T * B, G = 4 * (size_t)H;
    const size_t nws = fl_mat_apply_workspace(&m->layer[0].wih, (int)N) + 1;
    c.x = fl_calloc(N * H, sizeof(float));
    c.gx = fl_calloc(N * G, sizeof(float));
    c.ws = fl_calloc(nws, sizeof(float));
    c.bias = fl_calloc(G, sizeof(float));
    c.h = fl_calloc((size_t)B * H, sizeof(float));
    c.c = fl_calloc((size_t)B * H, sizeof(float));
    c.out = fl_calloc(N * H, sizeof(float));
    c.y = fl_calloc(N * H, sizeof(float));
    c.bt = fl_calloc((size_t)T, sizeof(int));
    c.off = fl_calloc((size_t)T + 1, sizeof(int));
    c.len = fl_calloc((size_t)B, sizeof(int));
    c.rgx = fl_calloc(16 * 1024 + 3 * 16 * 256, sizeof(float));
    if (!st && !(c.x && c.gx && c.ws && c.bias && c.h && c.c && c.out && c.y && c.bt && c.off && c.len && c.rgx))
        st = fl_fail(FL_ERR_NOMEM, "out of memory");
    if (st) goto done;
    c.rh0 = c.rgx + 16 * 1024, c.rh1 = c.rh0 + 16 * 256, c.rc = c.rh1 + 16 * 256;
    for (int t = 0; t < T; t++) c.bt[t] = B, c.off[t] = t * B;
    c.off[T] = T * B;
    for (int b = 0; b < B; b++) c.len[b] = T;
    for (size_t i = 0; i < N * H; i++) c.x[i] = c.out[i] = (float)((int)(i % 29) - 14) * 0.03f;
    for (int t = 0; t < 2 && !st; t++) {
        for (int l = 0; l < 2 && !st; l++) {
            c.l[t][l].ly = &m->layer[l];
            st = fl_rec_create(&m->layer[l], B, t + 1, &c.l[t][l].rec);
            if (!st) c.l[t][l].rows = fl_step_rows_chunks(m, l, c.l[t][l].rec, FL_STEP_AUTO, FL_STEP_AUTO, B);
        }
        fl_session_opts so = {.max_batch = B, .max_seq = T, .threads = t + 1};
        if (!st) st = fl_session_create(m, &so, &c.s[t]);
    }
    fl_model *rm = NULL; /* the reference: a dense H 256 step, one thread */
    fl_arch ra = {.input = 256, .hidden = 256, .layers = 1, .head = FL_HEAD_NONE};
    if (!st) st = fl_model_create(&ra, NULL, &rm);
    if (!st) st = fl_model_init_random(rm, 2);
    if (!st) st = fl_rec_create(&rm->layer[0], 16, 1, &c.ref);
    if (st) goto done;
    c.io = (fl_run_io){.layout = FL_BATCH_MAJOR, .batch = B, .seq = T, .x = c.x, .y = c.y};
    fl_profile prof;
    fl_cost pc[2], pc0[2];
    fl_cost_term term[2][4], term0[2][4];
    const bool have_prof = prof_path && fl_profile_load(prof_path, &prof) == FL_OK;
    if (have_prof) {
        fl_profile nosw = prof;
        nosw.thread_switch_seconds = 0;
        for (int t = 0; t < 2 && !st; t++) {
            st = fl_cost_predict_terms(&prof, &arch, specs, B, T, t + 1, &pc[t], term[t]);
            if (!st) st = fl_cost_predict_terms(&nosw, &arch, specs, B, T, t + 1, &pc0[t], term0[t]);
        }
        if (st) goto done;
    }
    /* warm every part once */
    for (int p = 0; p < NPART; p++)
        for (int t = 0; t < 2; t++) run_part(&c, p, t);
    run_ref(&c);
    static double raw[NPART][2][MAXR], ref[NPART][2][MAXR], sp[NPART][MAXR];
    for (int r = 0; r < rounds; r++)
        for (int p = 0; p < NPART; p++)
            for (int k = 0; k < 2; k++) {
                const int t = (r + p) % 2 ? 1 - k : k; /* alternate which side goes first */
                ref[p][t][r] = run_ref(&c);
                raw[p][t][r] = run_part(&c, p, t);
            }
    double allref[NPART * 2 * MAXR];
    int nr = 0;
    for (int p = 0; p < NPART; p++)
        for (int t = 0; t < 2; t++)
            for (int r = 0; r < rounds; r++) allref[nr++] = ref[p][t][r];
    const double refmed = median(allref, nr);
    printf("%d/%d/2 %s%s%d batch %d seq %d, %d rounds; reference (dense H 256 B 16, 8 steps, one thread) median "
           "%.1f us\n", H, H, method, R ? " rank " : "", R, B, T, rounds, refmed * 1e6);
    for (int l = 0; l < 2; l++)
        printf("layer %d on two threads: steps %s\n", l, c.l[1][l].rows >= 2 ? "by rows" : "by blocks");
    printf("%-8s %9s %9s %9s %7s %7s | %9s %9s %7s\n", "part", "t1 us", "t2 us", "t2 raw", "t1/t2", "(scaled)", "model t1",
           "model t2", "t1/t2");
    for (int p = 0; p < NPART; p++) {
        double s1[MAXR], s2[MAXR], r2[MAXR];
        for (int r = 0; r < rounds; r++) {
            s1[r] = raw[p][0][r] * refmed / ref[p][0][r];
            s2[r] = raw[p][1][r] * refmed / ref[p][1][r];
            sp[p][r] = raw[p][0][r] / raw[p][1][r];
            r2[r] = raw[p][1][r];
        }
        const double m1 = median(s1, rounds), m2 = median(s2, rounds), mr = median(r2, rounds), msp = median(sp[p], rounds);
        double p1 = 0, p2 = 0;
        if (have_prof) {
            for (int i = 0; i < 4; i++) {
                const bool ih = i % 2 == 0;
                const double a1 = term0[0][i].seconds + term0[0][i].cell_seconds, a2 = term0[1][i].seconds + term0[1][i].cell_seconds;
                if ((p == P_IN && ih) || (p == P_STEPS && !ih)) p1 += a1, p2 += a2;
                if (i < 2 && (((p == P_IN0 || p == P_IN0HOT) && ih) || ((p == P_STEPS0 || p == P_STEPS0HOT) && !ih))) p1 += a1, p2 += a2;
            }
            if (p == P_LAYERS) p1 = pc[0].seconds, p2 = pc[1].seconds;
            if (p == P_SESSION) p1 = pc[0].seconds, p2 = pc[1].seconds;
        }
        printf("%-8s %9.1f %9.1f %9.1f %7.2f %7.2f | %9.1f %9.1f %7.2f\n", part_name[p], m1 * 1e6, m2 * 1e6, mr * 1e6, msp,
               m1 / m2, p1 * 1e6, p2 * 1e6, p2 > 0 ? p1 / p2 : 0);
    }
    if (have_prof)
        printf("model: layer switch on two threads %.1f us a step; the rest (cell, bias, cold gx, io, overhead) "
               "t1 %.1f t2 %.1f\n", (pc[1].seconds - pc0[1].seconds) * 1e6,
               (pc0[0].seconds - term0[0][0].seconds - term0[0][1].seconds - term0[0][2].seconds - term0[0][3].seconds -
                term0[0][1].cell_seconds - term0[0][3].cell_seconds) * 1e6,
               (pc0[1].seconds - term0[1][0].seconds - term0[1][1].seconds - term0[1][2].seconds - term0[1][3].seconds -
                term0[1][1].cell_seconds - term0[1][3].cell_seconds) * 1e6);
done:
    if (st) fprintf(stderr, "bench_split: %s: %s\n", fl_status_str(st), fl_last_error());
    for (int t = 0; t < 2; t++) {
        for (int l = 0; l < 2; l++) fl_rec_free(c.l[t][l].rec);
        fl_session_free(c.s[t]);
    }
    fl_rec_free(c.ref);
    fl_model_free(rm);
    fl_model_free(m);
    fl_free(c.x), fl_free(c.gx), fl_free(c.ws), fl_free(c.bias), fl_free(c.h), fl_free(c.c), fl_free(c.out);
    fl_free(c.y), fl_free(c.bt), fl_free(c.off), fl_free(c.len), fl_free(c.rgx);
    return st ? 1 : 0;
}
