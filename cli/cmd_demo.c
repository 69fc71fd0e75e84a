/* fastlstm demo: the main job on a real model. Trains a Fashion-MNIST classifier (28 rows of 28
 * pixels, hidden 128) on first run with a fixed seed and caches it, compresses it (SVD of every gate
 * matrix, then one epoch of fine-tuning, also cached), and shows the dense and compressed test
 * accuracy and the measured batch-1 speedup. `fastlstm demo --random` is the older demo on random
 * weights (2 x 650, output deviation instead of accuracy). */
#include "cli.h"
#include "fastlstm/train.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void random_usage(FILE *f) {
    fprintf(f,
            "usage: fastlstm demo --random [--hidden H] [--layers L] [--seq T] [--batch B] [--rank R] [--method svd|cp]\n"
            "                              [--reps N] [--threads N]\n\n"
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
            "  fastlstm demo --random --hidden 256 --rank 32 --batch 4\n");
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
        double t0 = fl_now_seconds();
        st = fl_session_run(s, io);
        t[i] = fl_now_seconds() - t0;
    }
    if (!st) {
        fl_sort_doubles(t, (size_t)reps);
        *median = t[reps / 2];
    }
    free(t);
    fl_session_free(s);
    return st;
}

/* An integer option of an option loop (needs r, v, i, argc, argv, cmd in scope): parse and continue. */
#define INT_OPT(flag, var, lo, hi)                                                        \
    if ((r = cli_take(cmd, argc, argv, &i, flag, &v)) != 0) {                             \
        if (r < 0 || !cli_parse_int(cmd, flag, v, lo, hi, &var)) return CLI_USAGE;        \
        continue;                                                                         \
    }

/* fastlstm demo --random: the original demo on random weights (argv[0] is "--random"). */
static int demo_random(int argc, char **argv) {
    const char *cmd = "demo --random";
    long hidden = 650, layers = 2, seq = 35, batch = 1, rank = 0, reps = 30, threads = 1;
    fl_method method = FL_METHOD_SVD;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int r;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            random_usage(stdout);
            return CLI_OK;
        }
        INT_OPT("--hidden", hidden, 4, 8192)
        INT_OPT("--layers", layers, 1, 16)
        INT_OPT("--seq", seq, 1, 100000)
        INT_OPT("--batch", batch, 1, 4096)
        INT_OPT("--rank", rank, 1, 8192)
        INT_OPT("--reps", reps, 1, 100000)
        INT_OPT("--threads", threads, 1, 256)
        if ((r = cli_take(cmd, argc, argv, &i, "--method", &v)) != 0) {
            if (r < 0) return CLI_USAGE;
            if (!strcmp(v, "svd")) method = FL_METHOD_SVD;
            else if (!strcmp(v, "cp")) method = FL_METHOD_CP;
            else return cli_fail(cmd, CLI_USAGE, "--method expects svd or cp, got '%s'", v);
            continue;
        }
        random_usage(stderr);
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
    double t0 = fl_now_seconds();
    if ((st = fl_model_decompose(dense, &d, &low))) goto fail;
    printf("  done in %.2f s\n", fl_now_seconds() - t0);

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

/* ---------------------------------------------------------------- the demo on a trained model */

#define FM_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"

static void demo_usage(FILE *f) {
    fprintf(f,
            "usage: fastlstm demo [--retrain] [--hidden H] [--rank R] [--epochs N] [--train-size N]\n"
            "                     [--test-size N] [--data DIR] [--reps N]\n"
            "       fastlstm demo --random [options]   (random weights: fastlstm demo --random --help)\n\n"
            "Trains an LSTM classifier on Fashion-MNIST read row by row (28 steps of 28 pixels; Debian's\n"
            "dataset-fashion-mnist) with a fixed seed, compresses it (SVD of every gate matrix at rank R,\n"
            "then one epoch of fine-tuning), and prints the dense and the compressed model's accuracy on\n"
            "test images training never saw, with the latency of both at batch 1 on one thread (median of\n"
            "--reps runs) and the speedup. Both models are cached in $XDG_CACHE_HOME/fastlstm/demo\n"
            "(default ~/.cache/fastlstm/demo), so later runs only evaluate and time them. The data set is\n"
            "that of bench/apps (fmnist); the full pipeline with the planner is bench/apps/run.sh.\n\n"
            "options:\n"
            "  --retrain        train both models again, ignoring the cache\n"
            "  --hidden H       hidden size (default 128)\n"
            "  --rank R         SVD rank of every gate matrix (default 16)\n"
            "  --epochs N       training epochs of the dense model (default 2; Adam, lr 2e-3)\n"
            "  --train-size N   first N official training images (default 5000)\n"
            "  --test-size N    first N official test images (default 2000)\n"
            "  --data DIR       the IDX files (default " FM_DEFAULT_DIR ")\n"
            "  --reps N         timed runs per model (default 300)\n"
            "  -h, --help       show this help\n\n"
            "example:\n"
            "  fastlstm demo                      # first run: trains for under a minute, then cached\n"
            "  fastlstm demo --hidden 64 --rank 8 --retrain\n");
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The first n items of the gzip'd IDX file dir/name, through `gzip -dc`: images (magic 2051,
 * 28 x 28 bytes each, scaled to [0, 1] into x) or labels (magic 2049, into y). *got: items read
 * (n, or fewer when the file holds fewer). Prints the error and returns CLI_ERR on failure. */
static int idx_read(const char *cmd, const char *dir, const char *name, int n, float *x, int32_t *y, int *got) {
    char path[4096], shell[8300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (access(path, R_OK) != 0)
        return cli_fail(cmd, CLI_ERR, "%s: %s: Fashion-MNIST is missing: apt-get install -y dataset-fashion-mnist "
                        "(or bash scripts/setup.sh), or give --data DIR", path, strerror(errno));
    if (strchr(path, '\''))
        return cli_fail(cmd, CLI_ERR, "%s: a path with a single quote is not supported", path);
    snprintf(shell, sizeof shell, "gzip -dc '%s' 2>/dev/null", path);
    FILE *f = popen(shell, "r");
    if (!f) return cli_fail(cmd, CLI_ERR, "%s: cannot run gzip: %s", path, strerror(errno));
    const int images = x != NULL;
    unsigned char h[16];
    size_t hn = images ? 16 : 8;
    int code = CLI_OK;
    if (fread(h, 1, hn, f) != hn || be32(h) != (images ? 2051u : 2049u) ||
        (images && (be32(h + 8) != 28 || be32(h + 12) != 28))) {
        code = cli_fail(cmd, CLI_ERR, "%s: not a gzip'd IDX %s file of 28 x 28 images (bad or truncated header)",
                        path, images ? "image" : "label");
    } else {
        *got = (int)(be32(h + 4) < (uint32_t)n ? be32(h + 4) : (uint32_t)n);
        unsigned char px[28 * 28];
        for (int i = 0; i < *got && code == CLI_OK; i++) {
            size_t want = images ? sizeof px : 1;
            if (fread(px, 1, want, f) != want) {
                code = cli_fail(cmd, CLI_ERR, "%s: truncated at item %d of %d", path, i, *got);
            } else if (images) {
                for (int k = 0; k < 28 * 28; k++) x[(size_t)i * 784 + k] = px[k] / 255.0f;
            } else if (px[0] > 9) {
                code = cli_fail(cmd, CLI_ERR, "%s: label %d of item %d is not a class 0-9", path, px[0], i);
            } else {
                y[i] = px[0];
            }
        }
    }
    pclose(f); /* gzip may end on SIGPIPE when only the first items were read */
    return code;
}

/* Load n images and labels (prefix "train" or "t10k") as a classification set. */
static int load_split(const char *cmd, const char *dir, const char *prefix, int n, fl_dataset **out) {
    char img[64], lab[64];
    snprintf(img, sizeof img, "%s-images-idx3-ubyte.gz", prefix);
    snprintf(lab, sizeof lab, "%s-labels-idx1-ubyte.gz", prefix);
    float *x = malloc((size_t)n * 784 * sizeof *x);
    int32_t *y = malloc((size_t)n * sizeof *y);
    int gi = 0, gl = 0, code = CLI_ERR;
    if (!x || !y) {
        code = cli_fail(cmd, CLI_ERR, "out of memory for %d images", n);
    } else if ((code = idx_read(cmd, dir, img, n, x, NULL, &gi)) == CLI_OK &&
               (code = idx_read(cmd, dir, lab, n, NULL, y, &gl)) == CLI_OK) {
        fl_status st;
        if (gi != gl) code = cli_fail(cmd, CLI_ERR, "%s/%s: %d images but %d labels", dir, prefix, gi, gl);
        else if ((st = fl_dataset_classify(gi, 28, 28, x, NULL, y, 10, out))) code = cli_fail_status(cmd, st);
    }
    free(x);
    free(y);
    return code;
}

/* The cache directory (created): $XDG_CACHE_HOME/fastlstm/demo or $HOME/.cache/fastlstm/demo.
 * Returns false (nothing cached, a note printed) when there is none. */
static bool cache_dir(char *buf, size_t n) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg) snprintf(buf, n, "%s/fastlstm/demo", xdg);
    else if (home && *home) snprintf(buf, n, "%s/.cache/fastlstm/demo", home);
    else return false;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        int bad = mkdir(buf, 0755) != 0 && errno != EEXIST;
        *p = '/';
        if (bad) return false;
    }
    return mkdir(buf, 0755) == 0 || errno == EEXIST;
}

/* Prints the training loss at each epoch's end. */
static int progress(const fl_train_progress *p, void *user) {
    (void)user;
    if (p->epoch_end) printf("  epoch %d: training loss %.4f\n", p->epoch + 1, p->loss);
    fflush(stdout);
    return 0;
}

/* Train m in place for `epochs` epochs on d (Adam at lr, batch 32, seed 1). */
static fl_status train(fl_model *m, const fl_dataset *d, int epochs, float lr) {
    fl_train_opts o = fl_train_opts_default();
    o.seed = 1;
    o.lr = lr;
    fl_trainer *t;
    fl_status st = fl_trainer_create(m, &o, &t);
    if (st) return st;
    fl_train_run r = {.train = d, .epochs = epochs, .callback = progress};
    st = fl_trainer_run(t, &r);
    fl_trainer_free(t);
    return st;
}

int cmd_demo(int argc, char **argv) {
    const char *cmd = "demo";
    if (argc > 1 && !strcmp(argv[1], "--random")) return demo_random(argc - 1, argv + 1);
    long hidden = 128, rank = 16, epochs = 2, ntrain = 5000, ntest = 2000, reps = 300;
    bool retrain = false;
    const char *dir = FM_DEFAULT_DIR;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int r;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            demo_usage(stdout);
            return CLI_OK;
        }
        if (!strcmp(argv[i], "--retrain")) {
            retrain = true;
            continue;
        }
        if (!strcmp(argv[i], "--random")) return cli_fail(cmd, CLI_USAGE, "--random must come first");
        INT_OPT("--hidden", hidden, 4, 2048)
        INT_OPT("--rank", rank, 1, 2048)
        INT_OPT("--epochs", epochs, 1, 1000)
        INT_OPT("--train-size", ntrain, 10, 60000)
        INT_OPT("--test-size", ntest, 10, 10000)
        INT_OPT("--reps", reps, 1, 1000000)
        if ((r = cli_take(cmd, argc, argv, &i, "--data", &v)) != 0) {
            if (r < 0) return CLI_USAGE;
            dir = v;
            continue;
        }
        demo_usage(stderr);
        return cli_fail(cmd, CLI_USAGE, "unknown option '%s'", argv[i]);
    }
    if (rank > 28 || rank > hidden)
        return cli_fail(cmd, CLI_USAGE, "--rank %ld exceeds min(28, --hidden %ld): the input matrices have 28 columns",
                        rank, hidden);
    double t_start = fl_now_seconds();
    fl_dataset *tr = NULL, *te = NULL;
    fl_model *dense = NULL, *low = NULL;
    float *x = NULL, *y = NULL;
    fl_status st = FL_OK;
    int code = CLI_ERR;
    if (load_split(cmd, dir, "train", (int)ntrain, &tr) != CLI_OK || load_split(cmd, dir, "t10k", (int)ntest, &te) != CLI_OK)
        goto out;
    printf("fastlstm demo: Fashion-MNIST read row by row (28 steps of 28 pixels), an LSTM of hidden %ld, 10 classes\n",
           hidden);
    printf("data: the first %zu training and %zu test images of %s\n", fl_dataset_size(tr), fl_dataset_size(te), dir);

    char cdir[4096], dpath[4200], lpath[4300];
    bool cached = cache_dir(cdir, sizeof cdir);
    if (!cached) printf("note: no cache directory ($XDG_CACHE_HOME / $HOME): nothing is cached\n");
    snprintf(dpath, sizeof dpath, "%s/fmnist_h%ld_n%zu_e%ld_seed1.safetensors", cdir, hidden, fl_dataset_size(tr), epochs);
    snprintf(lpath, sizeof lpath, "%s/fmnist_h%ld_n%zu_e%ld_seed1_svd%ld_ft1.safetensors", cdir, hidden,
             fl_dataset_size(tr), epochs, rank);
    fflush(stdout);
    if (!retrain && cached && fl_model_load(dpath, &dense) == FL_OK) {
        printf("dense model: cached %s\n", dpath);
    } else {
        retrain = true; /* a new dense model invalidates its compressed one */
        printf("dense model: training %ld epoch(s), Adam (lr 2e-3), batch 32, seed 1 (first run; cached after)\n", epochs);
        fflush(stdout);
        double t0 = fl_now_seconds();
        fl_arch arch = {.vocab = 0, .input = 28, .hidden = (int)hidden, .layers = 1, .head = FL_HEAD_LAST_STEP,
                        .head_out = 10};
        if ((st = fl_model_create(&arch, NULL, &dense)) || (st = fl_model_init_random(dense, 1)) ||
            (st = train(dense, tr, (int)epochs, 2e-3f)))
            goto fail;
        printf("  trained in %.1f s\n", fl_now_seconds() - t0);
        if (cached && (st = fl_model_save(dense, dpath))) goto fail;
    }
    if (!retrain && cached && fl_model_load(lpath, &low) == FL_OK) {
        printf("compressed model: cached %s\n", lpath);
    } else {
        printf("compressed model: SVD rank %ld of every gate matrix, then 1 epoch of fine-tuning\n", rank);
        fflush(stdout);
        double t0 = fl_now_seconds();
        fl_decomp_opts d = fl_decomp_opts_default();
        d.rank = (int)rank;
        if ((st = fl_model_decompose(dense, &d, &low)) || (st = train(low, tr, 1, 1e-3f))) goto fail;
        printf("  compressed and fine-tuned in %.1f s\n", fl_now_seconds() - t0);
        if (cached && (st = fl_model_save(low, lpath))) goto fail;
    }

    fl_eval_result ed, el;
    if ((st = fl_model_evaluate(dense, te, 256, 35, &ed)) || (st = fl_model_evaluate(low, te, 256, 35, &el))) goto fail;
    x = malloc(28 * 28 * sizeof *x);
    y = malloc(10 * sizeof *y);
    if (!x || !y) {
        cli_fail(cmd, CLI_ERR, "out of memory");
        goto out;
    }
    memcpy(x, fl_dataset_features(te), 28 * 28 * sizeof *x);
    fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = 1, .seq = 28, .x = x, .y = y};
    double td, tl;
    if ((st = time_model(dense, &io, 1, (int)reps, &td)) || (st = time_model(low, &io, 1, (int)reps, &tl))) goto fail;
    size_t pd = fl_model_num_params(dense), pl = fl_model_num_params(low);
    size_t fd = fl_model_flops_per_step(dense), fll = fl_model_flops_per_step(low);
    printf("\n%-16s %14s %10s %11s %21s\n", "model", "test accuracy", "params", "flops/step", "latency (batch 1)");
    printf("%-16s %13.2f%% %10zu %11zu %14.1f us/image\n", "dense", 100 * ed.accuracy, pd, fd, td * 1e6);
    char name[32];
    snprintf(name, sizeof name, "compressed r%ld", rank);
    printf("%-16s %13.2f%% %10zu %11zu %14.1f us/image\n", name, 100 * el.accuracy, pl, fll, tl * 1e6);
    printf("\nspeedup %.2fx at batch 1, 1 thread (median of %ld runs each); accuracy %+.2f points on %zu test images;"
           " parameters %.2fx fewer, flops %.2fx fewer\n", td / tl, reps, 100 * (el.accuracy - ed.accuracy),
           fl_dataset_size(te), (double)pd / pl, (double)fd / fll);
    if (el.accuracy > ed.accuracy)
        printf("(the dense model is trained briefly here; the compressed model's fine-tuning epoch is extra training)\n");
    printf("done in %.1f s. Six applications, the planner and every peer: bash bench/apps/run.sh (docs/apps.md)\n",
           fl_now_seconds() - t_start);
    code = CLI_OK;
    goto out;
fail:
    code = cli_fail_status(cmd, st);
out:
    free(x);
    free(y);
    fl_dataset_free(tr);
    fl_dataset_free(te);
    fl_model_free(dense);
    fl_model_free(low);
    return code;
}

#undef INT_OPT
