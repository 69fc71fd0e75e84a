/* fastlstm demo: the main job on a built-in default. Builds a 2-layer 650-hidden LSTM, decomposes
 * it (SVD, rank h/8), and measures both on this machine: latency, speedup, parameter and flop
 * reductions, and how far the decomposed model's outputs move. */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void demo_usage(FILE *f) {
    fprintf(f,
            "usage: fastlstm demo [--hidden H] [--layers L] [--seq T] [--batch B] [--rank R] [--method svd|cp]\n"
            "                     [--reps N] [--threads N]\n\n"
            "Builds a randomly initialised LSTM (default 2 layers, input = hidden = 650, as the medium\n"
            "PTB language model), decomposes its gate matrices (default SVD at rank hidden/8), then times\n"
            "the dense and the decomposed model on this machine (median of --reps runs, after warm-up)\n"
            "and prints the speedup next to the parameter and flop reductions.\n\n"
            "Random weights have a flat singular spectrum, so the decomposed outputs move far from the\n"
            "dense ones: the deviation printed is the honest figure for such weights. Trained weights\n"
            "compress far better, and fine-tuning (fastlstm finetune) wins back the rest.\n\n"
            "options:\n"
            "  --hidden H     input and hidden size (default 650)\n"
            "  --layers L     stacked LSTM layers (default 2)\n"
            "  --seq T        steps per sequence (default 35)\n"
            "  --batch B      sequences per run (default 1)\n"
            "  --rank R       rank of every decomposed matrix (default hidden / 8)\n"
            "  --method M     svd (default) or cp\n"
            "  --reps N       timed runs per model (default 30)\n"
            "  --threads N    worker threads (default 1)\n"
            "  -h, --help     show this help\n\n"
            "example:\n"
            "  fastlstm demo --hidden 256 --rank 32 --batch 4\n");
}

/* Median seconds of `reps` runs after `reps / 4 + 1` warm-up runs. */
static fl_status time_model(const fl_model *m, fl_run_io *io, int threads, int reps, double *median) {
    fl_session_opts o = fl_session_opts_default();
    o.max_batch = io->batch;
    o.max_seq = io->seq;
    o.threads = threads;
    fl_session *s;
    fl_status st = fl_session_create(m, &o, &s);
    if (st) return st;
    double *t = malloc((size_t)reps * sizeof *t);
    if (!t) {
        fl_session_free(s);
        return fl_set_error(FL_ERR_NOMEM, "out of memory for %d timing samples", reps);
    }
    for (int i = 0; i < reps / 4 + 1 && !st; i++) st = fl_session_run(s, io);
    for (int i = 0; i < reps && !st; i++) {
        double t0 = cli_now_seconds();
        st = fl_session_run(s, io);
        t[i] = cli_now_seconds() - t0;
    }
    if (!st) {
        cli_sort_doubles(t, (size_t)reps);
        *median = t[reps / 2];
    }
    free(t);
    fl_session_free(s);
    return st;
}

int cmd_demo(int argc, char **argv) {
    const char *cmd = "demo";
    long hidden = 650, layers = 2, seq = 35, batch = 1, rank = 0, reps = 30, threads = 1;
    fl_method method = FL_METHOD_SVD;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int r;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            demo_usage(stdout);
            return CLI_OK;
        }
#define INT_OPT(flag, var, lo, hi)                                                        \
    if ((r = cli_take(cmd, argc, argv, &i, flag, &v)) != 0) {                             \
        if (r < 0 || !cli_parse_int(cmd, flag, v, lo, hi, &var)) return CLI_USAGE;        \
        continue;                                                                         \
    }
        INT_OPT("--hidden", hidden, 4, 8192)
        INT_OPT("--layers", layers, 1, 16)
        INT_OPT("--seq", seq, 1, 100000)
        INT_OPT("--batch", batch, 1, 4096)
        INT_OPT("--rank", rank, 1, 8192)
        INT_OPT("--reps", reps, 1, 100000)
        INT_OPT("--threads", threads, 1, 256)
#undef INT_OPT
        if ((r = cli_take(cmd, argc, argv, &i, "--method", &v)) != 0) {
            if (r < 0) return CLI_USAGE;
            if (!strcmp(v, "svd")) method = FL_METHOD_SVD;
            else if (!strcmp(v, "cp")) method = FL_METHOD_CP;
            else return cli_fail(cmd, CLI_USAGE, "--method expects svd or cp, got '%s'", v);
            continue;
        }
        demo_usage(stderr);
        return cli_fail(cmd, CLI_USAGE, "unknown option '%s'", argv[i]);
    }
    if (rank == 0) rank = hidden / 8 > 0 ? hidden / 8 : 1;
    if (rank > hidden) return cli_fail(cmd, CLI_USAGE, "--rank %ld exceeds --hidden %ld", rank, hidden);

    fl_arch arch = {.vocab = 0, .input = (int)hidden, .hidden = (int)hidden, .layers = (int)layers,
                    .head = FL_HEAD_NONE, .head_out = 0};
    fl_model *dense = NULL, *low = NULL;
    float *x = NULL, *y0 = NULL, *y1 = NULL;
    int code = CLI_ERR;
    fl_status st;
    printf("fastlstm demo: %ld-layer LSTM, input = hidden = %ld, seq %ld, batch %ld, %ld thread(s)\n", layers,
           hidden, seq, batch, threads);
    if ((st = fl_model_create(&arch, NULL, &dense)) || (st = fl_model_init_random(dense, 1))) goto fail;

    fl_decomp_opts d = fl_decomp_opts_default();
    d.method = method;
    d.rank = (int)rank;
    printf("decomposing every gate matrix: %s rank %ld ...\n", method == FL_METHOD_SVD ? "SVD" : "CP", rank);
    fflush(stdout);
    double t0 = cli_now_seconds();
    if ((st = fl_model_decompose(dense, &d, &low))) goto fail;
    printf("  done in %.2f s\n", cli_now_seconds() - t0);

    size_t n = (size_t)batch * seq * hidden, ny = fl_run_output_size(dense, (int)batch, (int)seq);
    x = malloc(n * sizeof *x);
    y0 = malloc(ny * sizeof *y0);
    y1 = malloc(ny * sizeof *y1);
    if (!x || !y0 || !y1) {
        cli_fail(cmd, CLI_ERR, "out of memory");
        goto out;
    }
    unsigned s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)((s >> 8) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
    }
    fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = (int)batch, .seq = (int)seq, .x = x, .y = y0};
    double td, tl;
    if ((st = time_model(dense, &io, (int)threads, (int)reps, &td))) goto fail;
    io.y = y1;
    if ((st = time_model(low, &io, (int)threads, (int)reps, &tl))) goto fail;

    double num = 0, den = 0;
    for (size_t i = 0; i < ny; i++) {
        num += (double)(y1[i] - y0[i]) * (y1[i] - y0[i]);
        den += (double)y0[i] * y0[i];
    }
    size_t pd = fl_model_num_params(dense), pl = fl_model_num_params(low);
    size_t fd = fl_model_flops_per_step(dense), fll = fl_model_flops_per_step(low);
    printf("\n%-12s %12s %14s %14s %12s\n", "model", "params", "flops/step", "latency/seq", "per step");
    printf("%-12s %12zu %14zu %11.3f ms %9.2f us\n", "dense", pd, fd, td * 1e3, td * 1e6 / seq);
    printf("%-12s %12zu %14zu %11.3f ms %9.2f us\n", method == FL_METHOD_SVD ? "svd" : "cp", pl, fll,
           tl * 1e3, tl * 1e6 / seq);
    printf("\nspeedup %.2fx  (parameters %.2fx fewer, flops %.2fx fewer)\n", td / tl, (double)pd / pl,
           (double)fd / fll);
    printf("relative output deviation ||y - y_dense|| / ||y_dense|| = %.4f (random weights; see --help)\n",
           den > 0 ? sqrt(num / den) : 0.0);
    code = CLI_OK;
    goto out;
fail:
    code = cli_fail_status(cmd, st);
out:
    free(x);
    free(y0);
    free(y1);
    fl_model_free(dense);
    fl_model_free(low);
    return code;
}
