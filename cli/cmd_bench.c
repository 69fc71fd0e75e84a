/* fastlstm bench: time fl_session_run on random inputs; median, min and max over repetitions. */
#include "cli.h"
#include "fastlstm/io.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *CMD = "bench";

static void usage(FILE *f) {
    fprintf(f,
            "usage: fastlstm bench MODEL [--batch B] [--seq T] [--threads N] [--reps N] [--warmup N]\n"
            "                      [--warmup-ms MS] [--lengths L.npy] [--step-sched S] [--bidir-sched S] [--json]\n\n"
            "Time fl_session_run on random inputs (fixed seed): warm-up runs, then timed runs.\n"
            "Reports the latency of one run of B sequences of T steps (median, min, max, in ms), the\n"
            "same per time step (us), tokens/s (B*T / median) and GFLOP/s (model flops per step).\n\n"
            "options:\n"
            "  --batch B    sequences per run (default 1)\n"
            "  --seq T      steps per sequence (default 64)\n"
            "  --threads N  worker threads (default 1)\n"
            "  --reps N     timed runs (default: as many as fit in about 1.5 s, 5 to 200000)\n"
            "  --warmup N   untimed runs first (default 2)\n"
            "  --warmup-ms MS  go on warming up until MS milliseconds have passed too (default 0;\n"
            "               a process's first ~0.1 s on 2 threads can run slow while the cores wake)\n"
            "  --lengths L.npy  a variable-length batch: int32/int64 (B) lengths in [1, T] (per-step\n"
            "               figures stay run time / T)\n"
            "  --step-sched auto|blocks|rows  split of each layer's steps over the threads (default\n"
            "               auto; fl_step_sched)\n"
            "  --bidir-sched auto|parallel|serial  schedule of bidirectional layers (default auto:\n"
            "               the model's recorded one)\n"
            "  --json       print one JSON object\n"
            "  -h, --help   show this help\n\n"
            "example:\n"
            "  fastlstm bench lm.safetensors --batch 8 --seq 128 --threads 2 --json\n");
}

typedef struct bench_opts {
    int batch, seq, threads, reps, warmup; /* reps 0: automatic */
    double warmup_ms;                      /* warm-up lasts at least this long too */
    bool json;
    const char *lengths; /* .npy of (batch) lengths, or NULL */
    fl_step_sched step_sched;
    fl_bidir_sched bidir_sched;
} bench_opts;

static int report(const char *model, const fl_model *m, const bench_opts *o, double *t, int reps) {
    fl_sort_doubles(t, (size_t)reps);
    double med = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
    double tokens = (double)o->batch * o->seq;
    double step_us = med / o->seq * 1e6, tps = tokens / med;
    double gflops = (double)fl_model_flops_per_step(m) * tokens / med * 1e-9;
    if (!o->json) {
        printf("model:     %s\n", model);
        printf("shape:     batch %d x seq %d, %d thread%s, %d warm-up + %d timed runs\n", o->batch, o->seq,
               o->threads, o->threads == 1 ? "" : "s", o->warmup, reps);
        printf("latency:   median %.3f ms, min %.3f ms, max %.3f ms per run\n", med * 1e3, t[0] * 1e3,
               t[reps - 1] * 1e3);
        printf("per step:  median %.2f us, min %.2f us, max %.2f us (run time / seq)\n", step_us,
               t[0] / o->seq * 1e6, t[reps - 1] / o->seq * 1e6);
        printf("throughput: %.0f tokens/s, %.2f GFLOP/s\n", tps, gflops);
        return CLI_OK;
    }
    cJSON *r = cJSON_CreateObject();
    bool ok = r && cJSON_AddStringToObject(r, "model", model) && cJSON_AddNumberToObject(r, "batch", o->batch) &&
              cJSON_AddNumberToObject(r, "seq", o->seq) && cJSON_AddNumberToObject(r, "threads", o->threads) &&
              cJSON_AddNumberToObject(r, "warmup", o->warmup) && cJSON_AddNumberToObject(r, "reps", reps) &&
              cJSON_AddNumberToObject(r, "median_ms", med * 1e3) && cJSON_AddNumberToObject(r, "min_ms", t[0] * 1e3) &&
              cJSON_AddNumberToObject(r, "max_ms", t[reps - 1] * 1e3) &&
              cJSON_AddNumberToObject(r, "step_us", step_us) &&
              cJSON_AddNumberToObject(r, "step_us_min", t[0] / o->seq * 1e6) &&
              cJSON_AddNumberToObject(r, "step_us_max", t[reps - 1] / o->seq * 1e6) && cJSON_AddNumberToObject(r, "tokens_per_s", tps) &&
              cJSON_AddNumberToObject(r, "gflops", gflops) &&
              cJSON_AddNumberToObject(r, "flops_per_step", (double)fl_model_flops_per_step(m)) &&
              cJSON_AddNumberToObject(r, "params", (double)fl_model_num_params(m));
    char *s = ok ? cJSON_Print(r) : NULL;
    cJSON_Delete(r);
    if (!s) return cli_fail(CMD, CLI_ERR, "out of memory building JSON");
    printf("%s\n", s);
    cJSON_free(s);
    return CLI_OK;
}

static int bench(const char *model, bench_opts *o) {
    fl_model *m = NULL;
    fl_session *s = NULL;
    float *x = NULL, *y = NULL;
    int32_t *tok = NULL;
    double *t = NULL;
    fl_npy len = {0};
    int rc = CLI_OK;
    fl_status st = fl_model_load(model, &m);
    if (st) return cli_fail_status(CMD, st);
    const fl_arch *a = fl_model_arch(m);
    size_t n = (size_t)o->batch * o->seq, ny = fl_run_output_size(m, o->batch, o->seq);
    fl_session_opts so = fl_session_opts_default();
    so.max_batch = o->batch;
    so.max_seq = o->seq;
    so.threads = o->threads;
    so.step_sched = o->step_sched;
    so.bidir_sched = o->bidir_sched;
    st = fl_session_create(m, &so, &s);
    if (st) {
        rc = cli_fail_status(CMD, st);
        goto done;
    }
    y = malloc(ny * sizeof *y);
    if (a->vocab > 0) tok = malloc(n * sizeof *tok);
    else x = malloc(n * (size_t)a->input * sizeof *x);
    if (!y || (!tok && !x)) {
        rc = cli_fail(CMD, CLI_ERR, "out of memory for %d x %d inputs", o->batch, o->seq);
        goto done;
    }
    uint64_t r = 12345;
    if (tok)
        for (size_t i = 0; i < n; i++) tok[i] = (int32_t)(cli_rand_u64(&r) % (uint64_t)a->vocab);
    else
        for (size_t i = 0; i < n * (size_t)a->input; i++) x[i] = (float)(2 * cli_rand_unit(&r) - 1);
    if (o->lengths) {
        if ((st = fl_npy_load(o->lengths, &len)) || (st = fl_npy_ids_to_i32(&len, (int64_t)o->seq + 1, o->lengths))) {
            rc = cli_fail_status(CMD, st);
            goto done;
        }
        if (len.ndim != 1 || len.shape[0] != o->batch) {
            rc = cli_fail(CMD, CLI_ERR, "%s: need %d lengths (one per sequence of --batch), got %zu", o->lengths,
                          o->batch, len.count);
            goto done;
        }
    }
    fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = o->batch, .seq = o->seq, .x = x, .tokens = tok, .y = y,
                    .lengths = len.data};

    const double warm_end = fl_now_seconds() + o->warmup_ms * 1e-3;
    int warm = 0;
    for (; !st && (warm < o->warmup || fl_now_seconds() < warm_end); warm++) st = fl_session_run(s, &io);
    o->warmup = warm; /* the runs made: reported */
    /* Automatic repetitions: as many as fit in ~1.5 s, judged from one timed run. */
    if (!st && o->reps == 0) {
        double t0 = fl_now_seconds();
        st = fl_session_run(s, &io);
        double one = fl_now_seconds() - t0;
        double want = one > 0 ? 1.5 / one : 200000;
        o->reps = want < 5 ? 5 : want > 200000 ? 200000 : (int)want;
    }
    if (!st && !(t = malloc((size_t)o->reps * sizeof *t))) {
        rc = cli_fail(CMD, CLI_ERR, "out of memory");
        goto done;
    }
    for (int i = 0; !st && i < o->reps; i++) {
        double t0 = fl_now_seconds();
        st = fl_session_run(s, &io);
        t[i] = fl_now_seconds() - t0;
    }
    if (st) rc = cli_fail_status(CMD, st);
    else rc = report(model, m, o, t, o->reps);
done:
    fl_npy_free(&len);
    free(t);
    free(x);
    free(y);
    free(tok);
    fl_session_free(s);
    fl_model_free(m);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    const char *model = NULL, *v_batch = NULL, *v_seq = NULL, *v_threads = NULL, *v_reps = NULL, *v_warm = NULL, *v_warm_ms = NULL;
    const char *v_step = NULL, *v_bidir = NULL;
    bench_opts o = {.batch = 1, .seq = 64, .threads = 1, .reps = 0, .warmup = 2, .json = false, .lengths = NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return CLI_OK;
        }
        if (!strcmp(a, "--json")) {
            o.json = true;
            continue;
        }
        if ((r = cli_take(CMD, argc, argv, &i, "--batch", &v_batch)) ||
            (r = cli_take(CMD, argc, argv, &i, "--seq", &v_seq)) ||
            (r = cli_take(CMD, argc, argv, &i, "--threads", &v_threads)) ||
            (r = cli_take(CMD, argc, argv, &i, "--reps", &v_reps)) ||
            (r = cli_take(CMD, argc, argv, &i, "--warmup", &v_warm)) ||
            (r = cli_take(CMD, argc, argv, &i, "--warmup-ms", &v_warm_ms)) ||
            (r = cli_take(CMD, argc, argv, &i, "--lengths", &o.lengths)) ||
            (r = cli_take(CMD, argc, argv, &i, "--step-sched", &v_step)) ||
            (r = cli_take(CMD, argc, argv, &i, "--bidir-sched", &v_bidir))) {
            if (r < 0) return CLI_USAGE;
            continue;
        }
        if ((r = cli_positional(CMD, a, &model))) return r;
    }
    if (!model) return cli_fail(CMD, CLI_USAGE, "MODEL is required (see 'fastlstm bench --help')");
    long v;
    if (v_batch) {
        if (!cli_parse_int(CMD, "--batch", v_batch, 1, 1 << 16, &v)) return CLI_USAGE;
        o.batch = (int)v;
    }
    if (v_seq) {
        if (!cli_parse_int(CMD, "--seq", v_seq, 1, 1 << 20, &v)) return CLI_USAGE;
        o.seq = (int)v;
    }
    if (v_threads) {
        if (!cli_parse_int(CMD, "--threads", v_threads, 1, 1024, &v)) return CLI_USAGE;
        o.threads = (int)v;
    }
    if (v_reps) {
        if (!cli_parse_int(CMD, "--reps", v_reps, 1, 1000000, &v)) return CLI_USAGE;
        o.reps = (int)v;
    }
    if (v_warm) {
        if (!cli_parse_int(CMD, "--warmup", v_warm, 0, 1000000, &v)) return CLI_USAGE;
        o.warmup = (int)v;
    }
    if (v_warm_ms) {
        if (!cli_parse_int(CMD, "--warmup-ms", v_warm_ms, 0, 600000, &v)) return CLI_USAGE;
        o.warmup_ms = (double)v;
    }
    if (v_step) {
        if (!strcmp(v_step, "auto")) o.step_sched = FL_STEP_AUTO;
        else if (!strcmp(v_step, "blocks")) o.step_sched = FL_STEP_BLOCKS;
        else if (!strcmp(v_step, "rows")) o.step_sched = FL_STEP_ROWS;
        else return cli_fail(CMD, CLI_USAGE, "--step-sched must be auto, blocks or rows, got '%s'", v_step);
    }
    if (v_bidir) {
        if (!strcmp(v_bidir, "auto")) o.bidir_sched = FL_BIDIR_AUTO;
        else if (!strcmp(v_bidir, "parallel")) o.bidir_sched = FL_BIDIR_PARALLEL;
        else if (!strcmp(v_bidir, "serial")) o.bidir_sched = FL_BIDIR_SERIAL;
        else return cli_fail(CMD, CLI_USAGE, "--bidir-sched must be auto, parallel or serial, got '%s'", v_bidir);
    }
    if ((long)o.batch * o.seq > (1L << 26))
        return cli_fail(CMD, CLI_USAGE, "--batch x --seq = %ld is too large", (long)o.batch * o.seq);
    return bench(model, &o);
}
