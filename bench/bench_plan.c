/* bench_plan: the planner's predicted latency per time step against the measured one.
 *
 * For 2-layer LSTMs of hidden 650 and 1500 (or --hidden H), times dense, SVD and CP configurations
 * with fl_session_run (median of reps) at batch 1 and 20 and 1 and 2 threads (or the --batch and
 * --threads given), and prints the cost model's prediction beside each, with the ratio measured /
 * predicted (goal: within 15%) and where the W_hh term streams from on how many threads. A profile
 * with SVD / CP efficiencies at two ranks (H/16 and H/4) also gets the ratio predicted from its H/4
 * figures alone (the model before the second rank), in the last column and the summary.
 *
 *   bench_plan [--hidden H] [--input D] [--layers L] [--batch B] [--seq T] [--threads N]
 *              [--reps R] [--profile PATH] [--refresh] [--quick] [--predict-only]
 * --predict-only: the predictions from the profile alone, nothing timed (the measured column reads
 * 0): to score a saved profile's predictions against the measurements of an earlier run.
 * The profile is loaded from PATH (default ~/.cache/fastlstm/profile.json; measured again when it
 * is missing or from another machine type) and saved. --quick: hidden 64, seq 4, one repetition,
 * the reported profile (nothing measured): checks that the benchmark runs, its figures mean
 * nothing. */
#include "fastlstm/plan.h"
#include "internal.h"
#include "plan/plan_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bench_args {
    int hidden, input, layers, seq, reps, quick, predict_only;
    int batches[2], n_batches, threads[2], n_threads;
    const char *profile;
    int refresh;
} bench_args;

/* One shape: every candidate at every batch and thread count, predicted beside measured. Adds to
 * *n and *within (ratios within 15%) and keeps the worst |log ratio| in *worst. */
typedef struct tally {
    int n, within;
    double worst; /* the largest |log(measured / predicted)| */
} tally;

static void count(tally *t, double ratio) {
    if (fabs(log(ratio)) > t->worst) t->worst = fabs(log(ratio));
    t->n++;
    if (fabs(ratio - 1) <= 0.15) t->within++;
}

/* prof1: prof with its H/16 efficiencies dropped, or NULL (prof has none); tallies into *all and
 * (prof1's predictions) *one. */
static int run_shape(const bench_args *a, const fl_profile *prof, const fl_profile *prof1, int H, tally *all,
                     tally *one) {
    int D = a->input > 0 ? a->input : H;
    fl_arch arch = {.vocab = 0, .input = D, .hidden = H, .layers = a->layers, .head = FL_HEAD_NONE};
    size_t nmat = (size_t)2 * a->layers;
    fl_mat_spec *specs = calloc(nmat, sizeof *specs);
    if (!specs) return 1;
    struct {
        const char *name;
        fl_method method;
        int div; /* rank = H / div */
    } cfg[] = {{"dense", FL_METHOD_DENSE, 0}, {"svd h/4", FL_METHOD_SVD, 4}, {"svd h/8", FL_METHOD_SVD, 8},
               {"svd h/16", FL_METHOD_SVD, 16}, {"cp h/4", FL_METHOD_CP, 4}, {"cp h/16", FL_METHOD_CP, 16}};
    printf("\n%d/%d/%d (input/hidden/layers), seq %d\n", D, H, a->layers, a->seq);
    printf("%-10s %5s %7s %12s %14s %14s %8s  %-30s %s\n", "config", "batch", "threads", "params", "predicted us",
           "measured us", "ratio", "bound (W_hh: level, threads)", prof1 ? "ratio (H/4 figures alone)" : "");
    for (size_t k = 0; k < sizeof cfg / sizeof cfg[0]; k++) {
        for (size_t i = 0; i < nmat; i++)
            specs[i] = (fl_mat_spec){cfg[k].method, cfg[k].div ? (H / cfg[k].div > 0 ? H / cfg[k].div : 1) : 0};
        fl_model *m = NULL;
        fl_status st = fl_model_create(&arch, specs, &m);
        if (!st) st = fl_model_init_random(m, 1);
        fl_cost_term *t = calloc(nmat, sizeof *t);
        for (int bi = 0; bi < a->n_batches && !st; bi++)
            for (int ti = 0; ti < a->n_threads && !st; ti++) {
                const int B = a->batches[bi], T = a->threads[ti];
                fl_cost c, c1 = {0};
                double meas = 0;
                st = fl_cost_predict_terms(prof, &arch, specs, B, a->seq, T, &c, t);
                if (!st && prof1) st = fl_cost_predict(prof1, &arch, specs, B, a->seq, T, &c1);
                if (!st && !a->predict_only) st = fl_plan_time_model(m, B, a->seq, T, a->reps, 1, &meas);
                if (st) break;
                double ratio = meas / c.seconds;
                if (!a->predict_only) {
                    count(all, ratio);
                    if (prof1) count(one, meas / c1.seconds);
                }
                const fl_cost_term *w = t ? &t[1] : NULL;
                char lv[16] = "?";
                if (w) snprintf(lv, sizeof lv, w->level < 0 ? "DRAM" : "L%d", w->level < 0 ? 0 : prof->level[w->level].level);
                char bound[40];
                snprintf(bound, sizeof bound, "%s (%s, %d)", c.mem_seconds > c.compute_seconds ? "memory" : "compute",
                         lv, w ? w->threads : 0);
                printf("%-10s %5d %7d %12zu %14.2f %14.2f %8.2f  %-30s", cfg[k].name, B, T, c.params, c.seconds * 1e6,
                       meas * 1e6, ratio, bound);
                if (prof1) printf(" %8.2f", meas / c1.seconds);
                printf("\n");
            }
        free(t);
        fl_model_free(m);
        if (st) {
            fprintf(stderr, "bench_plan: %s: %s: %s\n", cfg[k].name, fl_status_str(st), fl_last_error());
            free(specs);
            return 1;
        }
    }
    free(specs);
    return 0;
}

static int parse_int(const char *s, int lo, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > (1 << 20)) return 0;
    *out = (int)v;
    return 1;
}

int main(int argc, char **argv) {
    bench_args a = {.layers = 2, .seq = 35, .reps = 7, .batches = {1, 20}, .n_batches = 2, .threads = {1, 2},
                    .n_threads = 2};
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1;
        if (!strcmp(f, "--predict-only")) {
            a.predict_only = 1;
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
        else if (!strcmp(f, "--profile")) a.profile = v;
        else ok = 0;
        if (!ok) {
            fprintf(stderr, "usage: bench_plan [--hidden H] [--input D] [--layers L] [--batch B] [--seq T] "
                            "[--threads N] [--reps R] [--profile PATH] [--refresh] [--quick] "
                            "[--predict-only]\n");
            return 2;
        }
        i++;
    }
    fl_profile prof;
    fl_machine_id here;
    fl_machine_id_detect(&here);
    if (a.quick) {
        /* a smoke run: small shapes, one repetition, the reported (not measured) profile */
        if (!a.hidden) a.hidden = 64;
        a.seq = 4, a.reps = 1;
        if (fl_profile_detect(&prof)) {
            fprintf(stderr, "bench_plan: %s\n", fl_last_error());
            return 1;
        }
    } else {
        char path[4096];
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
            fprintf(stderr, "bench_plan: measuring the machine profile...\n");
            fl_status st = fl_profile_measure(&prof);
            if (st) {
                fprintf(stderr, "bench_plan: %s: %s\n", fl_status_str(st), fl_last_error());
                return 1;
            }
            if (fl_profile_save(&prof, a.profile) != FL_OK)
                fprintf(stderr, "bench_plan: could not save the profile: %s\n", fl_last_error());
        }
    }
    const fl_cache_level *llc = &prof.level[prof.n_levels - 1];
    printf("profile: L%d %zu KiB at %.1f GB/s ... last level %zu KiB (reported %zu KiB) at %.1f GB/s, DRAM %.1f "
           "GB/s, sgemm %.1f GFLOP/s, mat-vec %.1f GFLOP/s%s\n",
           prof.level[0].level, prof.level[0].bytes >> 10, prof.level[0].bandwidth / 1e9, llc->bytes >> 10,
           llc->reported_bytes >> 10, llc->bandwidth / 1e9, prof.dram_bandwidth / 1e9, prof.gemm_flops / 1e9,
           prof.gemv_flops / 1e9, prof.measured ? "" : " (not measured)");
    fl_profile one = prof;
    memset(one.rec_efficiency_lo, 0, sizeof one.rec_efficiency_lo);
    const fl_profile *prof1 = prof.rec_efficiency_lo[FL_METHOD_SVD] > 0 || prof.rec_efficiency_lo[FL_METHOD_CP] > 0 ? &one : NULL;
    tally all = {0}, t1 = {0};
    int rc = a.hidden ? run_shape(&a, &prof, prof1, a.hidden, &all, &t1)
                      : run_shape(&a, &prof, prof1, 650, &all, &t1) || run_shape(&a, &prof, prof1, 1500, &all, &t1);
    if (!rc && !a.predict_only) {
        printf("\n%d of %d predictions within 15%% of the measurement; worst off by %.0f%%\n", all.within, all.n,
               (exp(all.worst) - 1) * 100);
        if (prof1)
            printf("from the H/4 efficiencies alone: %d of %d within 15%%; worst off by %.0f%%\n", t1.within, t1.n,
                   (exp(t1.worst) - 1) * 100);
    }
    return rc;
}
