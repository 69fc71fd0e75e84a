/* bench_plan: the planner's predicted latency per time step against the measured one.
 *
 * For 2-layer LSTMs of hidden 650 and 1500 (or --hidden H), times dense, SVD and CP configurations
 * with fl_session_run (median of reps) and prints the cost model's prediction beside each, with the
 * ratio measured / predicted (goal: within 25%).
 *
 *   bench_plan [--hidden H] [--input D] [--layers L] [--batch B] [--seq T] [--threads N]
 *              [--reps R] [--profile PATH] [--refresh]
 * The profile is loaded from PATH (default ~/.cache/fastlstm/profile.json) or measured and saved. */
#include "fastlstm/plan.h"
#include "internal.h"
#include "plan/plan_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bench_args {
    int hidden, input, layers, batch, seq, threads, reps;
    const char *profile;
    int refresh;
} bench_args;

static int run_shape(const bench_args *a, const fl_profile *prof, int H) {
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
    printf("\n%d/%d/%d (input/hidden/layers), batch %d, seq %d, %d thread(s)\n", D, H, a->layers, a->batch,
           a->seq, a->threads);
    printf("%-10s %12s %14s %14s %8s  %s\n", "config", "params", "predicted us", "measured us", "ratio",
           "bound");
    double worst = 0;
    for (size_t k = 0; k < sizeof cfg / sizeof cfg[0]; k++) {
        for (size_t i = 0; i < nmat; i++)
            specs[i] = (fl_mat_spec){cfg[k].method, cfg[k].div ? H / cfg[k].div : 0};
        fl_cost c;
        fl_model *m = NULL;
        double meas = 0;
        fl_status st = fl_cost_predict(prof, &arch, specs, a->batch, a->seq, a->threads, &c);
        if (!st) st = fl_model_create(&arch, specs, &m);
        if (!st) st = fl_model_init_random(m, 1);
        if (!st) st = fl_plan_time_model(m, a->batch, a->seq, a->threads, a->reps, 1, &meas);
        fl_model_free(m);
        if (st) {
            fprintf(stderr, "bench_plan: %s: %s: %s\n", cfg[k].name, fl_status_str(st), fl_last_error());
            free(specs);
            return 1;
        }
        double ratio = meas / c.seconds;
        if (fabs(log(ratio)) > worst) worst = fabs(log(ratio));
        printf("%-10s %12zu %14.2f %14.2f %8.2f  %s%s\n", cfg[k].name, c.params, c.seconds * 1e6, meas * 1e6,
               ratio, c.mem_seconds > c.compute_seconds ? "memory" : "compute",
               c.level < 0 ? " (DRAM)" : "");
    }
    printf("worst ratio off by %.0f%% (goal: within 25%%)\n", (exp(worst) - 1) * 100);
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
    bench_args a = {.hidden = 0, .input = 0, .layers = 2, .batch = 1, .seq = 35, .threads = 1, .reps = 7};
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1;
        if (!strcmp(f, "--refresh")) {
            a.refresh = 1;
            continue;
        }
        if (!v) ok = 0;
        else if (!strcmp(f, "--hidden")) ok = parse_int(v, 1, &a.hidden);
        else if (!strcmp(f, "--input")) ok = parse_int(v, 1, &a.input);
        else if (!strcmp(f, "--layers")) ok = parse_int(v, 1, &a.layers);
        else if (!strcmp(f, "--batch")) ok = parse_int(v, 1, &a.batch);
        else if (!strcmp(f, "--seq")) ok = parse_int(v, 1, &a.seq);
        else if (!strcmp(f, "--threads")) ok = parse_int(v, 1, &a.threads);
        else if (!strcmp(f, "--reps")) ok = parse_int(v, 1, &a.reps);
        else if (!strcmp(f, "--profile")) a.profile = v;
        else ok = 0;
        if (!ok) {
            fprintf(stderr, "usage: bench_plan [--hidden H] [--input D] [--layers L] [--batch B] [--seq T] "
                            "[--threads N] [--reps R] [--profile PATH] [--refresh]\n");
            return 2;
        }
        i++;
    }
    char path[4096];
    if (!a.profile) {
        if (fl_profile_default_path(path, sizeof path)) {
            fprintf(stderr, "bench_plan: %s\n", fl_last_error());
            return 1;
        }
        a.profile = path;
    }
    fl_profile prof;
    if (a.refresh || fl_profile_load(a.profile, &prof) != FL_OK) {
        fprintf(stderr, "bench_plan: measuring the machine profile...\n");
        fl_status st = fl_profile_measure(&prof);
        if (st) {
            fprintf(stderr, "bench_plan: %s: %s\n", fl_status_str(st), fl_last_error());
            return 1;
        }
        if (fl_profile_save(&prof, a.profile) != FL_OK)
            fprintf(stderr, "bench_plan: could not save the profile: %s\n", fl_last_error());
    }
    printf("profile: L%d %zu KiB at %.1f GB/s ... last level %zu KiB at %.1f GB/s, DRAM %.1f GB/s, "
           "sgemm %.1f GFLOP/s, mat-vec %.1f GFLOP/s%s\n",
           prof.level[0].level, prof.level[0].bytes >> 10, prof.level[0].bandwidth / 1e9,
           prof.level[prof.n_levels - 1].bytes >> 10, prof.level[prof.n_levels - 1].bandwidth / 1e9,
           prof.dram_bandwidth / 1e9, prof.gemm_flops / 1e9, prof.gemv_flops / 1e9,
           prof.measured ? "" : " (not measured)");
    if (a.hidden) return run_shape(&a, &prof, a.hidden);
    return run_shape(&a, &prof, 650) || run_shape(&a, &prof, 1500);
}
