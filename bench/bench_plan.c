/* bench_plan: the planner's predicted latency per time step against the measured one.
 *
 * For 2-layer LSTMs of hidden 650 and 1500 (or --hidden H), times dense, SVD and CP configurations
 * with fl_session_run at batch 1 and 20 and 1 and 2 threads (or the --batch and --threads given),
 * and prints the cost model's prediction beside each, with the ratio measured / predicted (goal:
 * within 15%) and where the W_hh term streams from on how many threads.
 *
 * Measured over the run, not at one moment: on the shared 2-vCPU VM the same candidate's time moved
 * 20-40% between two runs 35 minutes apart (session 8), so a single burst of runs per candidate
 * scores the moment it fell in. The candidates are timed in --rounds N interleaved rounds (default
 * 5): each round times every candidate once (a warm-up run, then the median of --reps R runs,
 * default 3), in list order on even rounds and reversed on odd ones; a candidate's measurement is
 * the median of its rounds, the same statistic as the profile's rates (profile.c: the typical
 * latency, not the best), and its min..max over the rounds is printed beside it as that figure's
 * noise. The summary also counts the predictions inside their candidate's min..max. A profile
 * with SVD / CP efficiencies at two ranks (H/16 and H/4) also gets the ratio predicted from its H/4
 * figures alone (the model before the second rank), in the last column and the summary.
 *
 * The profile measured in the same minutes as the candidates: on that VM the machine's speed drifts
 * 10-80% from minute to minute, and with the profile measured first (~30 s) and the rounds after it
 * (~2 min) the score said mostly whether the profile's half-minute fell in a fast or a slow one (a
 * run whose profile met the day's fastest moment measured 45 of 48 candidates 1.05-1.69x their
 * prediction). So when the profile is measured (--refresh, or none saved for this machine) the run
 * interleaves: profile pass i (fl_profile_run_pass: the rate figures, the streaming ladder on one
 * thread and on all cores, the step's rate from memory), then candidate round i, for each of the
 * rounds (up to FL_PROFILE_MAX_PASSES passes); the profile's figures are the medians over those
 * passes, its once-timed figures (level rates, efficiencies, fixed step cost, ...) are taken after
 * the last round, and the predictions are made from the finished profile, which is saved as before.
 * The predictions stay predictions: the model's figures are its generic rates (GEMM, streaming, cell
 * update, kernel efficiencies on its own shapes); no candidate's own timing enters any of them.
 *
 *   bench_plan [--hidden H] [--input D] [--layers L] [--batch B] [--seq T] [--threads N]
 *              [--reps R] [--rounds N] [--profile PATH] [--refresh] [--quick] [--predict-only] [--breakdown]
 * --predict-only: the predictions from the profile alone, nothing timed (the measured column reads
 * 0): to score a saved profile's predictions against the measurements of an earlier run.
 * --breakdown: per candidate, the model's terms (per step, all layers: input projections, W_hh steps and
 * the same at SVD / CP efficiency 1, cell update, overhead, bias pass + gx from memory or the run's
 * activations past the caches (cost_act.c) + the run's x / y passes, t_x) beside the
 * session's time and its parts, each layer's timed alone as the session runs it (median of reps, in
 * one burst per candidate: no rounds): the
 * input projection with its bias pass, the T steps walking the projection's output, the same steps on
 * one gx (as the profile times a step), and the step's kernels alone (rank-R projection with CP's
 * scaling, gate panel at K = R with its cell update, cell update alone, gx copy). One thread's kernels;
 * "other" is the session less its input projections and steps. With --predict-only: the terms alone.
 * The profile is loaded from PATH (default ~/.cache/fastlstm/profile.json; measured again when it
 * is missing or from another machine type) and saved. --quick: hidden 64, seq 4, one repetition,
 * the reported profile (nothing measured): checks that the benchmark runs, its figures mean
 * nothing (one round). */
#include "fastlstm/plan.h"
#include "internal.h"
#include "plan/plan_internal.h"
#include "plan/profile_internal.h"
#include "kernels/kernels.h"
#include "recurrent.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bench_args {
    int hidden, input, layers, seq, reps, rounds, quick, predict_only, breakdown;
    int batches[2], n_batches, threads[2], n_threads;
    const char *profile;
    int refresh;
} bench_args;

/* Scores of predictions against measurements: count() adds one to n and to within (ratio within
 * 15%) and keeps the worst |log ratio|. */
typedef struct tally {
    int n, within;
    double worst; /* the largest |log(measured / predicted)| */
} tally;

static void count(tally *t, double ratio) {
    if (fabs(log(ratio)) > t->worst) t->worst = fabs(log(ratio));
    t->n++;
    if (fabs(ratio - 1) <= 0.15) t->within++;
}

/* ------------------------------------------------------------ --breakdown */

/* Median of `reps` timings of fn(ctx) (each a call), seconds. */
typedef void (*timed_fn)(void *ctx);
static double median_time(timed_fn fn, void *ctx, int reps) {
    double s[64];
    if (reps > 64) reps = 64;
    fn(ctx); /* warm */
    for (int i = 0; i < reps; i++) {
        double t0 = fl_now_seconds();
        fn(ctx);
        s[i] = fl_now_seconds() - t0;
    }
    fl_sort_doubles(s, (size_t)reps);
    return s[reps / 2];
}

/* The parts of one layer's work as a session runs them, and the step's kernels alone. */
typedef struct parts_ctx {
    const fl_layer *ly;
    fl_rec *rec;
    const fl_kernels *k;
    fl_rec_pack pk;
    int B, T, H, R, Rp, nblk;
    float *x, *gx, *ws, *bias, *h0, *h1, *c, *t, *zs, *gxhot;
} parts_ctx;

static void run_input(void *v) { /* gx (T B, 4H) = x W_ih^T + b: the session's projection */
    parts_ctx *p = v;
    const int N = p->T * p->B, G = 4 * p->H, D = p->ly->in;
    /* with the workspace, as the session calls it: an SVD or CP W_ih's packed factors (without it,
     * fl_rec_input declines those and this timed BLAS, which a session no longer runs) */
    if (!fl_rec_input_ws(p->rec, N, p->x, D, p->bias, p->gx, G, p->ws)) {
        fl_mat_apply(&p->ly->wih, N, p->x, D, 0.0f, p->gx, G, p->ws);
        fl_add_bias_rows(p->gx, (size_t)N, G, (size_t)G, p->bias);
    }
}
static void run_steps(void *v) { /* T steps, each on its own B rows of gx (the session's walk) */
    parts_ctx *p = v;
    const int G = 4 * p->H;
    for (int s = 0; s < p->T; s++)
        fl_rec_step(p->rec, p->B, p->gx + (size_t)s * p->B * G, G, (s & 1) ? p->h1 : p->h0, p->H, p->c,
                    (s & 1) ? p->h0 : p->h1, p->H);
}
static void run_steps_hot(void *v) { /* T steps on the same gx rows (as the profile times a step) */
    parts_ctx *p = v;
    for (int s = 0; s < p->T; s++)
        fl_rec_step(p->rec, p->B, p->gx, 4 * p->H, (s & 1) ? p->h1 : p->h0, p->H, p->c, (s & 1) ? p->h0 : p->h1, p->H);
}
static void run_proj(void *v) { /* V h (CP: C^T h, then a o z) alone, T times */
    parts_ctx *p = v;
    for (int s = 0; s < p->T; s++) {
        p->k->proj(p->B, p->H, p->Rp, p->pk.pm, (s & 1) ? p->h1 : p->h0, p->H, p->t, p->Rp);
        if (p->ly->whh.method == FL_METHOD_CP) p->k->cp_scale(p->B, p->R, p->pk.a, p->t, p->Rp, p->zs);
    }
}
static void run_panel(void *v) { /* the gate panel at K = R with its cell update, T times */
    parts_ctx *p = v;
    const int G = 4 * p->H;
    for (int s = 0; s < p->T; s++) {
        float *ho = (s & 1) ? p->h0 : p->h1;
        if (p->ly->whh.method == FL_METHOD_CP)
            p->k->cp_gate_cell(0, p->nblk, p->H, p->R, p->B, p->pk.pw, p->zs, p->gx, G, p->c, ho, p->H);
        else if (p->ly->whh.method == FL_METHOD_SVD)
            p->k->gate_cell(0, p->nblk, p->H, p->R, p->B, p->pk.pw, p->t, p->Rp, p->gx, G, p->c, ho, p->H);
        else
            p->k->gate_cell(0, p->nblk, p->H, p->H, p->B, p->pk.pw, (s & 1) ? p->h1 : p->h0, p->H, p->gx, G, p->c,
                            ho, p->H);
    }
}
static void run_cell(void *v) { /* the cell update alone (K = 0), T times */
    parts_ctx *p = v;
    for (int s = 0; s < p->T; s++)
        p->k->gate_cell(0, p->nblk, p->H, 0, p->B, p->pk.pw, p->h0, p->H, p->gx, 4 * p->H, p->c, p->h1, p->H);
}
static void run_gxcopy(void *v) { /* the step's B rows of gx copied (fl_rec_step at B > 1), T times */
    parts_ctx *p = v;
    const size_t G = 4 * (size_t)p->H;
    for (int s = 0; s < p->T; s++) memcpy(p->gxhot, p->gx + (size_t)s * p->B * G, (size_t)p->B * G * sizeof(float));
}

/* One candidate's step broken into parts: the model's terms (per step, all layers) beside the
 * measured parts (per step, all layers; each layer's parts timed alone, median of reps). */
static fl_status breakdown(const bench_args *a, const fl_profile *prof, fl_model *m, const fl_mat_spec *specs,
                           const char *name, int B, int threads) {
    const fl_arch *arch = fl_model_arch(m);
    const int L = arch->layers, H = arch->hidden, T = a->seq;
    const size_t nmat = fl_arch_num_matrices(arch);
    fl_cost c, c1;
    fl_cost_term term[16];
    fl_profile e1 = *prof; /* the same profile with every SVD / CP efficiency 1 */
    memset(e1.rec_efficiency, 0, sizeof e1.rec_efficiency);
    memset(e1.rec_efficiency_lo, 0, sizeof e1.rec_efficiency_lo);
    memset(e1.gemm_efficiency, 0, sizeof e1.gemm_efficiency);
    memset(e1.gemm_efficiency_lo, 0, sizeof e1.gemm_efficiency_lo);
    memset(e1.rec_rows_efficiency, 0, sizeof e1.rec_rows_efficiency);
    memset(e1.rec_rows_efficiency_lo, 0, sizeof e1.rec_rows_efficiency_lo);
    memset(e1.gemm_rows_efficiency, 0, sizeof e1.gemm_rows_efficiency);
    memset(e1.gemm_rows_efficiency_lo, 0, sizeof e1.gemm_rows_efficiency_lo);
    fl_cost_term term1[16];
    if (nmat > 16) return fl_fail(FL_ERR_ARG, "--breakdown: at most 8 layers");
    fl_status st = fl_cost_predict_terms(prof, arch, specs, B, T, threads, &c, term);
    if (!st) st = fl_cost_predict_terms(&e1, arch, specs, B, T, threads, &c1, term1);
    if (st) return st;
    double m_ih = 0, m_hh = 0, m_hh1 = 0, m_cell = 0; /* m_cell: the cell update priced apart */
    for (size_t i = 0; i < nmat; i++) {
        if (i % 2) m_hh += term[i].seconds, m_hh1 += term1[i].seconds, m_cell += term[i].cell_seconds;
        else m_ih += term[i].seconds;
    }
    const double m_oh = L * prof->step_overhead, m_rest = c.seconds - m_ih - m_hh - m_cell - m_oh;
    double sess = 0;
    if (!a->predict_only && (st = fl_plan_time_model(m, B, T, threads, a->reps, 1, &sess))) return st;
    double s_in = 0, s_walk = 0, s_hot = 0, s_proj = 0, s_panel = 0, s_cell = 0, s_copy = 0;
    for (int l = 0; l < L && !st && !a->predict_only; l++) {
        parts_ctx p = {.ly = &m->layer[l], .k = fl_kernels_get(), .B = B, .T = T, .H = H};
        const fl_mat *w = &p.ly->whh;
        p.R = w->method == FL_METHOD_DENSE ? 0 : w->rank;
        p.Rp = (p.R + FL_REC_NB - 1) / FL_REC_NB * FL_REC_NB;
        p.nblk = (H + FL_REC_NB - 1) / FL_REC_NB;
        const size_t N = (size_t)T * B, D = (size_t)p.ly->in, G = 4 * (size_t)H, Rp = (size_t)p.Rp;
        const size_t nws = fl_mat_apply_workspace(&p.ly->wih, (int)N) + 1;
        const size_t nf = N * D + N * G + nws + G + 3 * (size_t)B * H + (size_t)B * (Rp + 4 * p.R) + (size_t)B * G;
        float *buf = fl_calloc(nf, sizeof(float));
        if (!buf) return fl_fail(FL_ERR_NOMEM, "--breakdown: out of memory");
        p.x = buf, p.gx = p.x + N * D, p.ws = p.gx + N * G, p.bias = p.ws + nws, p.h0 = p.bias + G;
        p.h1 = p.h0 + (size_t)B * H, p.c = p.h1 + (size_t)B * H, p.t = p.c + (size_t)B * H;
        p.zs = p.t + (size_t)B * Rp, p.gxhot = p.zs + (size_t)B * 4 * p.R;
        for (size_t i = 0; i < N * D; i++) p.x[i] = (float)((int)(i % 29) - 14) * 0.03f;
        for (size_t i = 0; i < (size_t)B * H; i++) p.h0[i] = p.h1[i] = (float)((int)(i % 13) - 6) * 0.05f;
        st = fl_rec_create(p.ly, B, threads, &p.rec);
        if (!st) st = fl_rec_pack_layer(p.ly, false, false, &p.pk);
        if (!st) {
            s_in += median_time(run_input, &p, a->reps) / T;
            s_walk += median_time(run_steps, &p, a->reps) / T;
            s_hot += median_time(run_steps_hot, &p, a->reps) / T;
            if (w->method != FL_METHOD_DENSE) s_proj += median_time(run_proj, &p, a->reps) / T;
            if (w->method != FL_METHOD_DENSE) run_proj(&p);
            s_panel += median_time(run_panel, &p, a->reps) / T;
            s_cell += median_time(run_cell, &p, a->reps) / T;
            if (w->method != FL_METHOD_DENSE && B > 1 && !p.k->gx_in_place) s_copy += median_time(run_gxcopy, &p, a->reps) / T;
        }
        fl_rec_pack_free(&p.pk);
        fl_rec_free(p.rec);
        fl_free(buf);
    }
    if (st) return st;
    const double us = 1e6;
    const fl_mat *w0 = &m->layer[0].whh;
    if (w0->method != FL_METHOD_DENSE && fl_cost_has_lowrank(prof)) { /* the model's parts of one thread's step */
        fl_lr_cost lr;
        fl_cost_lowrank_step(prof, w0->method, H, H, w0->rank, B, 1, false, 0, &lr);
        printf("%-9s B %2d     model parts (one thread, all layers): proj %7.1f (mem %7.1f) panel %7.1f (mem %7.1f) "
               "gxcopy %6.1f\n", name, B, L * us * (lr.dup_comp > lr.dup_mem ? lr.dup_comp : lr.dup_mem),
               L * us * lr.dup_mem, L * us * (lr.comp > lr.mem ? lr.comp : lr.mem), L * us * lr.mem, L * us * lr.serial);
    }
    printf("%-9s B %2d t%d  model %8.1f: ih %7.1f hh %7.1f (at e=1 %7.1f) cell %6.1f oh %5.1f bias+cold/act+io %6.1f | "
           "session %8.1f: input %7.1f steps %8.1f (hot %8.1f; proj %7.1f panel %7.1f cell %6.1f gxcopy %6.1f) "
           "other %6.1f\n",
           name, B, threads, c.seconds * us, m_ih * us, m_hh * us, m_hh1 * us, m_cell * us, m_oh * us, m_rest * us,
           sess * us, s_in * us, s_walk * us, s_hot * us, s_proj * us, s_panel * us, s_cell * us, s_copy * us,
           (sess - s_in - s_walk) * us);
    return FL_OK;
}

/* The configurations every shape is tried with. */
static const struct {
    const char *name;
    fl_method method;
    int div; /* rank = H / div */
} cfg[] = {{"dense", FL_METHOD_DENSE, 0}, {"svd h/4", FL_METHOD_SVD, 4}, {"svd h/8", FL_METHOD_SVD, 8},
           {"svd h/16", FL_METHOD_SVD, 16}, {"cp h/4", FL_METHOD_CP, 4}, {"cp h/16", FL_METHOD_CP, 16}};
#define N_CFG (sizeof cfg / sizeof cfg[0])

/* One candidate: a configuration of a shape at one batch and thread count, its predictions and its
 * measurement of each round. */
typedef struct cand {
    int shape, k, B, T; /* shape index, cfg[k] */
    fl_model *m;        /* the shape's model of cfg[k] (owned by the run's model table) */
    fl_cost c, c1;      /* prediction; the H/4-figures-alone one (c1.seconds 0 without) */
    fl_cost_term w;     /* the first layer's W_hh term */
    double *t;          /* (rounds) seconds per step, each round's median of reps */
    double *ref;        /* (rounds) the reference beside each round's timing (0: none) */
} cand;

/* Median of n values (the upper one of the middle two for an even count); *lo, *hi: min, max. */
static double median_of(const double *v, int n, double *lo, double *hi) {
    double s[256];
    if (n > 256) n = 256;
    memcpy(s, v, (size_t)n * sizeof *s);
    fl_sort_doubles(s, (size_t)n);
    *lo = s[0], *hi = s[n - 1];
    return s[n / 2];
}

enum { REF_PER_PASS = FL_PROFILE_SPEED_PER_PASS };

/* The VM's speed at a moment (the reference): this VM runs the same kernel ~1.35x slower in spells of
 * 4-40 ms, sometimes a second (a co-tenant on the cores' other hyperthreads, most likely), so a
 * candidate's median says in part how much of its rounds fell in slow spells. The reference is one
 * fixed product in L2 (gemm_pk, 64 x 256 x 256, ~50 us; on two threads twice the columns through a
 * session's pool), the median of 3 calls; it is timed in the profile's passes and beside every candidate's timing in every round (before and after: their
 * geometric mean), and the report gives, per thread count, the share of references that ran slow
 * (1.15x the run's fastest or more) in the profile's passes and beside the rounds: a run whose
 * rounds met more slow spells than its profile reads its candidates slow. (Scaling each candidate by
 * its references was tried in session 15: +3..+7 of 48 in four runs with slow spells, -4 in a quiet
 * one, 45 -> 41: a reference samples a moment where a long candidate's run averages many spells, and
 * the two-thread one reads slow most of the time. A figure that errs both ways was dropped.) No
 * reference on a level without gemm_pk. */
typedef struct ref_probe {
    fl_speed_probe sp;   /* the profile's own probe (profile_speed.c); sp.k NULL: no reference */
    fl_rec *r2;          /* twice the columns on two threads (the pool splits the panels), or NULL */
    double pass[2][FL_PROFILE_MAX_PASSES * REF_PER_PASS]; /* [one thread, two] in the profile's passes */
    int npass[2];
} ref_probe;

static void ref_free(ref_probe *r) {
    fl_speed_probe_free(&r->sp);
    fl_rec_free(r->r2);
    *r = (ref_probe){0};
}

/* ly: a layer whose fl_rec (two threads) runs the two-thread reference, or NULL for one thread. */
static void ref_init(ref_probe *r, const fl_layer *ly) {
    *r = (ref_probe){0};
    if (fl_speed_probe_init(&r->sp) != FL_OK || !r->sp.k || (ly && fl_rec_create(ly, 1, 2, &r->r2) != FL_OK))
        ref_free(r);
}

static void ref_call2(void *v) {
    const ref_probe *r = v;
    fl_rec_gemm_pk(r->r2, FL_SPEED_ROWS, 2 * FL_SPEED_COLS, FL_SPEED_K, r->sp.x, FL_SPEED_K, r->sp.w, NULL, r->sp.y,
                   2 * FL_SPEED_COLS);
}

/* The reference's time now on `threads` threads (one, or two where r2 is), median of 3 calls after
 * one; 0 without a reference. */
static double ref_seconds(ref_probe *r, int threads) {
    if (!r->sp.k) return 0;
    return threads > 1 && r->r2 ? median_time(ref_call2, r, 3) : fl_speed_probe_sample(&r->sp);
}

/* REF_PER_PASS / 2 references of each thread count, kept as the profile's (either side of a pass). */
static void ref_sample_pass(ref_probe *r) {
    for (int t = 0; t < 2 && r->sp.k; t++)
        for (int i = 0; i < REF_PER_PASS / 2 && r->npass[t] < FL_PROFILE_MAX_PASSES * REF_PER_PASS; i++)
            r->pass[t][r->npass[t]++] = ref_seconds(r, t + 1);
}

/* After the rounds: per thread count, the report's line on the machine's speed. */
static void ref_report(const ref_probe *r, const cand *cs, int n, int R) {
    for (int t = 0; t < 2; t++) {
        double p0 = 0;
        if (!r->sp.k || (t == 1 && !r->r2)) continue;
        double *v = calloc((size_t)n * R + 1, sizeof *v), fastest = 0, lo, hi;
        int m = 0, slow_p = 0, slow_r = 0;
        if (!v) continue;
        for (int j = 0; j < n; j++)
            for (int q = 0; q < R && (cs[j].T > 1) == t; q++) v[m++] = cs[j].ref[q];
        if (r->npass[t] > 0) p0 = median_of(r->pass[t], r->npass[t], &lo, &hi), fastest = lo;
        for (int i = 0; i < m; i++)
            if (fastest <= 0 || v[i] < fastest) fastest = v[i];
        for (int i = 0; i < r->npass[t]; i++) slow_p += r->pass[t][i] >= 1.15 * fastest;
        for (int i = 0; i < m; i++) slow_r += v[i] >= 1.15 * fastest;
        fl_sort_doubles(v, (size_t)m);
        if (m > 0)
            printf("the machine's speed on %d thread%s (reference: gemm_pk %dx%dx%d in L2, median of 3 calls): fastest "
                   "%.1f us; median %.1f us in the profile's passes, %.1f us beside the rounds; slow (>= 1.15x the "
                   "fastest): %d of %d in the profile's passes, %d of %d beside the rounds\n",
                   t + 1, t ? "s" : "", FL_SPEED_ROWS, (t + 1) * FL_SPEED_COLS, FL_SPEED_K, fastest * 1e6, p0 * 1e6,
                   v[m / 2] * 1e6, slow_p,
                   r->npass[t], slow_r, m);
        free(v);
    }
}

/* --breakdown: every configuration of one shape at every batch and thread count, one at a time. */
static int breakdown_shape(const bench_args *a, const fl_profile *prof, int H) {
    int D = a->input > 0 ? a->input : H;
    fl_arch arch = {.vocab = 0, .input = D, .hidden = H, .layers = a->layers, .head = FL_HEAD_NONE};
    size_t nmat = (size_t)2 * a->layers;
    fl_mat_spec *specs = calloc(nmat, sizeof *specs);
    if (!specs) return 1;
    printf("\n%d/%d/%d (input/hidden/layers), seq %d\n", D, H, a->layers, a->seq);
    fl_status st = FL_OK;
    for (size_t k = 0; k < N_CFG && !st; k++) {
        for (size_t i = 0; i < nmat; i++)
            specs[i] = (fl_mat_spec){cfg[k].method, cfg[k].div ? (H / cfg[k].div > 0 ? H / cfg[k].div : 1) : 0};
        fl_model *m = NULL;
        st = fl_model_create(&arch, specs, &m);
        if (!st) st = fl_model_init_random(m, 1);
        for (int bi = 0; bi < a->n_batches && !st; bi++)
            for (int ti = 0; ti < a->n_threads && !st; ti++)
                st = breakdown(a, prof, m, specs, cfg[k].name, a->batches[bi], a->threads[ti]);
        fl_model_free(m);
        if (st) fprintf(stderr, "bench_plan: %s: %s: %s\n", cfg[k].name, fl_status_str(st), fl_last_error());
    }
    free(specs);
    return st ? 1 : 0;
}

/* The profile's headline figures. */
static void print_profile(const fl_profile *prof) {
    const fl_cache_level *llc = &prof->level[prof->n_levels - 1];
    printf("profile: L%d %zu KiB at %.1f GB/s ... last level %zu KiB (reported %zu KiB) at %.1f GB/s, DRAM %.1f "
           "GB/s, sgemm %.1f GFLOP/s, mat-vec %.1f GFLOP/s%s\n",
           prof->level[0].level, prof->level[0].bytes >> 10, prof->level[0].bandwidth / 1e9, llc->bytes >> 10,
           llc->reported_bytes >> 10, llc->bandwidth / 1e9, prof->dram_bandwidth / 1e9, prof->gemm_flops / 1e9,
           prof->gemv_flops / 1e9, prof->measured ? "" : " (not measured)");
}

/* Candidate j's time over the dense one's of the same shape, batch and threads, measured paired round by
 * round (the median of the rounds' ratios: a round times both within seconds, so the machine's speed
 * then cancels, which the absolute score keeps), over the same ratio of the predictions; 0 for a dense
 * candidate (or none to pair with). It scores the model's relative costs, the ones the planner
 * chooses by, apart from the profile's and the rounds' mix of the VM's two speeds. */
static double relative_ratio(const cand *cs, int n, int j, int R) {
    const cand *c = &cs[j], *d = NULL;
    for (int i = 0; i < n && !d; i++)
        if (cs[i].k == 0 && cs[i].shape == c->shape && cs[i].B == c->B && cs[i].T == c->T) d = &cs[i];
    if (c->k == 0 || !d || !(d->c.seconds > 0) || !(c->c.seconds > 0)) return 0;
    return fl_profile_paired_scale(c->t, d->t, R) / (c->c.seconds / d->c.seconds);
}

/* Every candidate of the shapes hs[0..ns) (unless --predict-only) measured in a->rounds interleaved
 * rounds: round r times every candidate once (fl_plan_time_model: a warm-up run, then the median of
 * a->reps runs), in list order on even rounds and reversed on odd ones, so a slow minute of the
 * machine falls on one round of every candidate rather than on all the rounds of a few; a
 * candidate's measurement is the median of its rounds, printed with their min..max. pr: NULL (prof
 * is ready), or a profile run on prof: one pass of it before each round while it takes them, then
 * finished and saved to a->profile. Then every candidate predicted from prof, and from prof with its
 * H/16 efficiencies dropped where it has them (the last column); tallies into *all and (those)
 * *one, and counts in *in_spread the predictions inside their candidate's min..max. */
static int run_shapes(const bench_args *a, fl_profile *prof, fl_profile_run *pr, const int *hs, int ns, tally *all,
                      tally *one, int *in_spread) {
    const int per = (int)N_CFG * a->n_batches * a->n_threads, R = a->predict_only ? 0 : a->rounds;
    const size_t nmat = (size_t)2 * a->layers;
    cand *cs = calloc((size_t)ns * per, sizeof *cs);
    fl_model **models = calloc((size_t)ns * N_CFG, sizeof *models);
    fl_mat_spec *specs = calloc(nmat, sizeof *specs);
    fl_cost_term *terms = calloc(nmat, sizeof *terms);
    double *times = calloc((size_t)2 * ns * per * (R > 0 ? R : 1), sizeof *times); /* then the references */
    ref_probe ref = {0};
    fl_arch *arch = calloc((size_t)ns, sizeof *arch);
    fl_status st = cs && models && specs && terms && times && arch ? FL_OK : fl_fail(FL_ERR_NOMEM, "out of memory");
    int n = 0;
    tally relt = {0}; /* the "vs dense" column's */
    for (int s = 0; s < ns && !st; s++) {
        const int H = hs[s];
        arch[s] = (fl_arch){.vocab = 0, .input = a->input > 0 ? a->input : H, .hidden = H, .layers = a->layers,
                            .head = FL_HEAD_NONE};
        for (size_t k = 0; k < N_CFG && !st; k++) {
            for (size_t i = 0; i < nmat; i++)
                specs[i] = (fl_mat_spec){cfg[k].method, cfg[k].div ? (H / cfg[k].div > 0 ? H / cfg[k].div : 1) : 0};
            fl_model **m = &models[(size_t)s * N_CFG + k];
            st = fl_model_create(&arch[s], specs, m);
            if (!st) st = fl_model_init_random(*m, 1);
            for (int bi = 0; bi < a->n_batches && !st; bi++)
                for (int ti = 0; ti < a->n_threads && !st; ti++, n++)
                    cs[n] = (cand){.shape = s, .k = (int)k, .B = a->batches[bi], .T = a->threads[ti], .m = *m,
                                   .t = times + (size_t)n * (R > 0 ? R : 1),
                                   .ref = times + (size_t)(ns * per + n) * (R > 0 ? R : 1)};
        }
    }
    if (R > 0 && !st) ref_init(&ref, a->n_threads > 1 || a->threads[0] > 1 ? &models[0]->layer[0] : NULL);
    for (int r = 0; r < R && !st; r++) {
        if (pr && fl_profile_run_passes(pr) < FL_PROFILE_MAX_PASSES) {
            fprintf(stderr, "bench_plan: profile pass %d...\n", fl_profile_run_passes(pr) + 1);
            ref_sample_pass(&ref);
            st = fl_profile_run_pass(pr);
            ref_sample_pass(&ref);
            if (st) fprintf(stderr, "bench_plan: profile: %s: %s\n", fl_status_str(st), fl_last_error());
        }
        if (!st) fprintf(stderr, "bench_plan: round %d of %d...\n", r + 1, R);
        for (int j = 0; j < n && !st; j++) {
            cand *c = &cs[r % 2 ? n - 1 - j : j];
            const double before = ref_seconds(&ref, c->T);
            st = fl_plan_time_model(c->m, c->B, a->seq, c->T, a->reps, 1, &c->t[r]);
            c->ref[r] = sqrt(before * ref_seconds(&ref, c->T));
            if (st) fprintf(stderr, "bench_plan: %s: %s: %s\n", cfg[c->k].name, fl_status_str(st), fl_last_error());
        }
    }
    if (pr && !st) {
        fprintf(stderr, "bench_plan: finishing the profile (%d passes)...\n", fl_profile_run_passes(pr));
        st = fl_profile_run_finish(pr);
        if (st) fprintf(stderr, "bench_plan: profile: %s: %s\n", fl_status_str(st), fl_last_error());
        else if (fl_profile_save(prof, a->profile) != FL_OK)
            fprintf(stderr, "bench_plan: could not save the profile: %s\n", fl_last_error());
    }
    if (!st) print_profile(prof);
    /* prof1: prof with its H/16 efficiencies dropped, or NULL (prof has none) */
    fl_profile one1 = *prof;
    memset(one1.rec_efficiency_lo, 0, sizeof one1.rec_efficiency_lo);
    const fl_profile *prof1 =
        prof->rec_efficiency_lo[FL_METHOD_SVD] > 0 || prof->rec_efficiency_lo[FL_METHOD_CP] > 0 ? &one1 : NULL;
    for (int j = 0; j < n && !st; j++) {
        cand *c = &cs[j];
        const int H = hs[c->shape];
        for (size_t i = 0; i < nmat; i++)
            specs[i] = (fl_mat_spec){cfg[c->k].method, cfg[c->k].div ? (H / cfg[c->k].div > 0 ? H / cfg[c->k].div : 1) : 0};
        st = fl_cost_predict_terms(prof, &arch[c->shape], specs, c->B, a->seq, c->T, &c->c, terms);
        if (!st && prof1) st = fl_cost_predict(prof1, &arch[c->shape], specs, c->B, a->seq, c->T, &c->c1);
        c->w = terms[1];
        if (st) fprintf(stderr, "bench_plan: %s: %s: %s\n", cfg[c->k].name, fl_status_str(st), fl_last_error());
    }
    for (int j = 0; j < n && !st; j++) {
        const cand *c = &cs[j];
        if (j == 0 || cs[j - 1].shape != c->shape) {
            printf("\n%d/%d/%d (input/hidden/layers), seq %d\n", arch[c->shape].input, arch[c->shape].hidden,
                   a->layers, a->seq);
            printf("%-10s %5s %7s %12s %14s %14s %21s %8s %9s  %-30s %s\n", "config", "batch", "threads", "params",
                   "predicted us", "measured us", "rounds min..max us", "ratio", "vs dense",
                   "bound (W_hh: level, threads)", prof1 ? "ratio (H/4 figures alone)" : "");
        }
        double meas = 0, lo = 0, hi = 0;
        if (R > 0) meas = median_of(c->t, R, &lo, &hi);
        const double ratio = meas / c->c.seconds;
        const double rel = R > 0 ? relative_ratio(cs, n, j, R) : 0;
        if (R > 0) {
            count(all, ratio);
            if (rel > 0) count(&relt, rel);
            if (prof1) count(one, meas / c->c1.seconds);
            if (c->c.seconds >= lo && c->c.seconds <= hi) ++*in_spread;
        }
        char lv[16], bound[40], spread[32];
        snprintf(lv, sizeof lv, c->w.level < 0 ? "DRAM" : "L%d", c->w.level < 0 ? 0 : prof->level[c->w.level].level);
        snprintf(bound, sizeof bound, "%s (%s, %d)", c->c.mem_seconds > c->c.compute_seconds ? "memory" : "compute", lv,
                 c->w.threads);
        snprintf(spread, sizeof spread, "%.1f..%.1f", lo * 1e6, hi * 1e6);
        char vs[16] = "";
        if (rel > 0) snprintf(vs, sizeof vs, "%.2f", rel);
        printf("%-10s %5d %7d %12zu %14.2f %14.2f %21s %8.2f %9s  %-30s", cfg[c->k].name, c->B, c->T, c->c.params,
               c->c.seconds * 1e6, meas * 1e6, spread, ratio, vs, bound);
        if (prof1) printf(" %8.2f", meas / c->c1.seconds);
        printf("\n");
    }
    if (!st && R > 0) {
        printf("\n%d of %d predictions within 15%% of the measurement; worst off by %.0f%% (measurement: median of %d "
               "rounds of %d runs; %d predictions inside their candidate's min..max over the rounds)\n",
               all->within, all->n, (exp(all->worst) - 1) * 100, R, a->reps, *in_spread);
        if (pr) printf("profile measured in %d passes, one before each of the first rounds\n", fl_profile_run_passes(pr));
        if (prof1)
            printf("from the H/4 efficiencies alone: %d of %d within 15%%; worst off by %.0f%%\n", one->within, one->n,
                   (exp(one->worst) - 1) * 100);
        if (relt.n > 0)
            printf("relative to the dense model of the same shape, batch and threads (\"vs dense\": measured paired round "
                   "by round, the machine's speed in a round cancelling): %d of %d predicted ratios within 15%% of the "
                   "measured; worst off by %.0f%%\n", relt.within, relt.n, (exp(relt.worst) - 1) * 100);
        ref_report(&ref, cs, n, R);
    }
    ref_free(&ref);
    for (size_t i = 0; models && i < (size_t)ns * N_CFG; i++) fl_model_free(models[i]);
    free(cs), free(models), free(specs), free(terms), free(times), free(arch);
    return st ? 1 : 0;
}

static int parse_int(const char *s, int lo, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > (1 << 20)) return 0;
    *out = (int)v;
    return 1;
}

int main(int argc, char **argv) {
    bench_args a = {.layers = 2, .seq = 35, .reps = 3, .rounds = 5, .batches = {1, 20}, .n_batches = 2, .threads = {1, 2},
                    .n_threads = 2};
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1;
        if (!strcmp(f, "--predict-only") || !strcmp(f, "--breakdown")) {
            *(!strcmp(f, "--breakdown") ? &a.breakdown : &a.predict_only) = 1;
            continue;
        }
        if (!strcmp(f, "--refresh") || !strcmp(f, "--quick")) {
            *(!strcmp(f, "--quick") ? &a.quick : &a.refresh) = 1;
            continue;
        }
        if (!v) ok = 0;
        else if (!strcmp(f, "--hidden")) ok = parse_int(v, 1, &a.hidden);
        else if (!strcmp(f, "--input")) ok = parse_int(v, 1, &a.input);
        else if (!strcmp(f, "--layers")) ok = parse_int(v, 1, &a.layers);
        else if (!strcmp(f, "--batch")) ok = parse_int(v, 1, &a.batches[0]), a.n_batches = 1;
        else if (!strcmp(f, "--seq")) ok = parse_int(v, 1, &a.seq);
        else if (!strcmp(f, "--threads")) ok = parse_int(v, 1, &a.threads[0]), a.n_threads = 1;
        else if (!strcmp(f, "--reps")) ok = parse_int(v, 1, &a.reps);
        else if (!strcmp(f, "--rounds")) ok = parse_int(v, 1, &a.rounds) && a.rounds <= 256;
        else if (!strcmp(f, "--profile")) a.profile = v;
        else ok = 0;
        if (!ok) {
            fprintf(stderr, "usage: bench_plan [--hidden H] [--input D] [--layers L] [--batch B] [--seq T] "
                            "[--threads N] [--reps R] [--rounds N] [--profile PATH] [--refresh] [--quick] "
                            "[--predict-only] [--breakdown]\n");
            return 2;
        }
        i++;
    }
    fl_profile prof;
    fl_profile_run *run = NULL; /* the profile measured between the rounds (run_shapes) */
    char path[4096];            /* the default profile path (a.profile points here) */
    fl_machine_id here;
    fl_machine_id_detect(&here);
    if (a.quick) {
        /* a smoke run: small shapes, one repetition, the reported (not measured) profile */
        if (!a.hidden) a.hidden = 64;
        a.seq = 4, a.reps = 1, a.rounds = 1;
        if (fl_profile_detect(&prof)) {
            fprintf(stderr, "bench_plan: %s\n", fl_last_error());
            return 1;
        }
    } else {
        if (!a.profile) {
            if (fl_profile_default_path(path, sizeof path)) {
                fprintf(stderr, "bench_plan: %s\n", fl_last_error());
                return 1;
            }
            a.profile = path;
        }
        if (a.predict_only && !a.refresh && fl_profile_load(a.profile, &prof) != FL_OK) {
            fprintf(stderr, "bench_plan: --predict-only needs a profile: %s\n", fl_last_error());
            return 1;
        }
        if (a.predict_only && !a.refresh) {
            /* nothing measured: the saved profile as it is, whatever machine it describes */
        } else if (a.refresh || fl_profile_load(a.profile, &prof) != FL_OK || fl_profile_check_machine(&prof, &here) != FL_OK) {
            /* with candidates to time, the profile's passes go between their rounds (run_shapes) */
            const bool interleave = !a.predict_only && !a.breakdown;
            fl_status st = FL_OK;
            if (interleave) {
                fprintf(stderr, "bench_plan: measuring the machine profile, a pass before each round...\n");
                st = fl_profile_run_begin(&prof, &run);
            } else {
                fprintf(stderr, "bench_plan: measuring the machine profile...\n");
                if (!(st = fl_profile_measure(&prof)) && fl_profile_save(&prof, a.profile) != FL_OK)
                    fprintf(stderr, "bench_plan: could not save the profile: %s\n", fl_last_error());
            }
            if (st) {
                fprintf(stderr, "bench_plan: %s: %s\n", fl_status_str(st), fl_last_error());
                return 1;
            }
        }
    }
    tally all = {0}, t1 = {0};
    int in_spread = 0, rc;
    const int hs[2] = {a.hidden ? a.hidden : 650, 1500}, ns = a.hidden ? 1 : 2;
    if (a.breakdown) {
        print_profile(&prof);
        rc = breakdown_shape(&a, &prof, hs[0]) || (ns > 1 && breakdown_shape(&a, &prof, hs[1]));
    } else {
        rc = run_shapes(&a, &prof, run, hs, ns, &all, &t1, &in_spread);
    }
    fl_profile_run_free(run);
    return rc;
}
