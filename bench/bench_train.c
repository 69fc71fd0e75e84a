/* Training throughput: one step = forward + full BPTT backward + clip + Adam on a language model
 * (default: the "medium" PTB model, 2 layers x 650, vocab 10000, batch 20, bptt 35). Prints the
 * median step time and tokens/s; compare with bench/train_torch.py (same model, batch, steps).
 *
 * usage: bench_train [--hidden H] [--layers L] [--vocab V] [--embed E] [--batch B] [--bptt T]
 *                    [--steps N] [--warmup W] [--decompose svd:R|cp:R] [--head-rank R] [--torch]
 * --head-rank R stores the head as rank-R SVD factors.
 * BLAS threads: OPENBLAS_NUM_THREADS. --torch then runs bench/train_torch.py (with $FL_PYTHON,
 * default /usr/bin/python3) on the same model, batch and steps (dense, with as many threads as
 * OPENBLAS_NUM_THREADS when set) and prints the ratio of the two medians. */
#include "fastlstm/train.h"
#include "internal.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv) {
    int H = 650, L = 2, V = 10000, E = -1, B = 20, T = 35, steps = 20, warmup = 3, rank = 0, head_rank = 0;
    fl_method method = FL_METHOD_DENSE;
    bool torch = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--torch")) {
            torch = true;
            continue;
        }
        if (!v) {
            fprintf(stderr, "bench_train: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--hidden")) H = atoi(v);
        else if (!strcmp(a, "--layers")) L = atoi(v);
        else if (!strcmp(a, "--vocab")) V = atoi(v);
        else if (!strcmp(a, "--embed")) E = atoi(v);
        else if (!strcmp(a, "--batch")) B = atoi(v);
        else if (!strcmp(a, "--bptt")) T = atoi(v);
        else if (!strcmp(a, "--steps")) steps = atoi(v);
        else if (!strcmp(a, "--warmup")) warmup = atoi(v);
        else if (!strcmp(a, "--head-rank")) head_rank = atoi(v);
        else if (!strcmp(a, "--decompose")) {
            method = !strncmp(v, "svd:", 4) ? FL_METHOD_SVD : !strncmp(v, "cp:", 3) ? FL_METHOD_CP : FL_METHOD_DENSE;
            const char *c = strchr(v, ':');
            rank = c ? atoi(c + 1) : 0;
            if (method == FL_METHOD_DENSE || rank < 1) {
                fprintf(stderr, "bench_train: --decompose expects svd:R or cp:R\n");
                return 2;
            }
        } else {
            fprintf(stderr, "bench_train: unknown option %s\n", a);
            return 2;
        }
        i++;
    }
    if (E < 0) E = H;
    if (H < 1 || L < 1 || V < 2 || E < 1 || B < 1 || T < 1 || steps < 1 || warmup < 0) {
        fprintf(stderr, "bench_train: sizes must be positive\n");
        return 2;
    }
    fl_arch a = {.vocab = V, .input = E, .hidden = H, .layers = L, .head = FL_HEAD_PER_STEP, .head_out = V};
    fl_mat_spec *specs = calloc(2 * (size_t)L + 1, sizeof *specs);
    for (int i = 0; i < 2 * L; i++) specs[i] = (fl_mat_spec){method, rank};
    if (head_rank > 0) specs[2 * L] = (fl_mat_spec){FL_METHOD_SVD, head_rank};
    fl_model *m;
    fl_status st = fl_model_create(&a, specs, &m);
    if (!st) st = fl_model_init_random(m, 1);
    if (st) {
        fprintf(stderr, "bench_train: %s: %s\n", fl_status_str(st), fl_last_error());
        return 1;
    }
    /* A random token stream long enough for every step to see new data. */
    size_t n = (size_t)B * ((size_t)(steps + warmup) * T + 1);
    int32_t *tok = malloc(n * sizeof(int32_t));
    fl_rng r;
    fl_rng_seed(&r, 2);
    for (size_t i = 0; i < n; i++) tok[i] = (int32_t)(fl_rng_next(&r) % (uint64_t)V);
    fl_dataset *d;
    fl_train_opts o = fl_train_opts_default();
    o.batch = B;
    o.bptt = T;
    o.clip = 5;
    fl_trainer *t;
    if ((st = fl_dataset_lm(tok, n, V, &d)) || (st = fl_trainer_create(m, &o, &t))) {
        fprintf(stderr, "bench_train: %s: %s\n", fl_status_str(st), fl_last_error());
        return 1;
    }
    double *dt = malloc((size_t)steps * sizeof(double)), loss = 0;
    for (int s = 0; s < warmup + steps; s++) {
        double t0 = fl_now_seconds();
        if ((st = fl_trainer_step(t, d, &loss))) {
            fprintf(stderr, "bench_train: %s: %s\n", fl_status_str(st), fl_last_error());
            return 1;
        }
        if (s >= warmup) dt[s - warmup] = fl_now_seconds() - t0;
    }
    fl_sort_doubles(dt, (size_t)steps);
    double med = dt[steps / 2];
    char how[32];
    if (method == FL_METHOD_DENSE) snprintf(how, sizeof how, "dense");
    else snprintf(how, sizeof how, "%s:%d", method == FL_METHOD_SVD ? "svd" : "cp", rank);
    printf("fastlstm train step: hidden %d, layers %d, vocab %d, embed %d, batch %d, bptt %d, %s, head %s%d, "
           "%zu params\n",
           H, L, V, E, B, T, how, head_rank > 0 ? "svd:" : "dense", head_rank > 0 ? head_rank : 0,
           fl_model_num_params(m));
    printf("median %.2f ms/step (min %.2f, max %.2f over %d steps), %.0f tokens/s, last loss %.4f\n", med * 1e3,
           dt[0] * 1e3, dt[steps - 1] * 1e3, steps, (double)B * T / med, loss);
    if (torch) {
        /* The baseline script sits next to this file. */
        char dir[1024], cmd[2048], line[512];
        snprintf(dir, sizeof dir, "%s", __FILE__);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = '\0';
        else snprintf(dir, sizeof dir, ".");
        const char *py = getenv("FL_PYTHON") ? getenv("FL_PYTHON") : "/usr/bin/python3";
        const char *thr = getenv("OPENBLAS_NUM_THREADS");
        snprintf(cmd, sizeof cmd,
                 "'%s' '%s/train_torch.py' --hidden %d --layers %d --vocab %d --embed %d --batch %d --bptt %d "
                 "--steps %d --warmup %d --threads %d",
                 py, dir, H, L, V, E, B, T, steps, warmup, thr ? atoi(thr) : 0);
        FILE *p = popen(cmd, "r");
        double tmed = 0;
        while (p && fgets(line, sizeof line, p)) {
            fputs(line, stdout);
            if (!strncmp(line, "median ", 7)) tmed = atof(line + 7) * 1e-3;
        }
        if (!p || pclose(p) != 0 || tmed <= 0) {
            fprintf(stderr, "bench_train: the PyTorch baseline failed (%s)\n", cmd);
            return 1;
        }
        printf("ratio: fastlstm step time / torch step time = %.3f (%.2fx %s)\n", med / tmed,
               med < tmed ? tmed / med : med / tmed, med < tmed ? "faster" : "slower");
    }
    fl_trainer_free(t);
    fl_dataset_free(d);
    fl_model_free(m);
    free(specs);
    free(tok);
    free(dt);
    return 0;
}
