/* fastlstm train / finetune: train a classifier or language model from scratch (optionally in
 * decomposed form), or fine-tune a saved (e.g. decomposed) model. Shared driver: cli_train_main. */
#include "cli.h"
#include "train_auto.h"
#include "train_dist.h"

#include "fastlstm/train.h"
#ifdef FL_WITH_MPI
#include "fastlstm/dist.h"
#endif

#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage_train(FILE *f) {
    fprintf(f,
            "usage: fastlstm train --task classify|lm --train DATA [--train-labels Y.npy]\n"
            "                      [--valid DATA [--valid-labels Y.npy]] [model options]\n"
            "                      [training options] -o MODEL\n\n"
            "Train an LSTM classifier (last-step head) on .npy sequences, or a language model on a\n"
            "UTF-8 text corpus, with full / truncated backpropagation through time.\n\n"
            "data:\n"
            "  --train X.npy --train-labels Y.npy   sequences (N,T,D) float32 or (N,T) ids; labels (N)\n"
            "  --train FILE                         other files: labelled text (label<TAB>text per\n"
            "                                       line) for --task classify, a corpus for --task lm\n"
            "  --train-text FILE, --train-labelled FILE   the same, whatever the file's name\n"
            "  --train ids.npy                      token ids (N) or (N,T) for --task lm, as one stream\n"
            "  --train-lengths L.npy                each sequence's length (N) int32/int64, valid steps\n"
            "                                       first: padded steps are masked out of the loss and\n"
            "                                       gradients (labelled text carries its own lengths)\n"
            "  --valid ... [--valid-labels ...]     validation set (--valid-text, --valid-labelled,\n"
            "                                       --valid-lengths too):\n"
            "                                       evaluated every epoch\n"
            "  --level word|char    text tokens (default word; in a corpus a newline ends a sentence:\n"
            "                       <eos>); --tokens is the same. The vocabulary (and the class names\n"
            "                       of labelled text) are kept in the model\n"
            "  --vocab-size N       keep the N-1 most frequent tokens plus <unk> (default 10000)\n"
            "  --classes C          number of classes (default: largest training label + 1)\n"
            "model:\n"
            "  --hidden H (default 128)  --layers L (default 1)\n"
            "  --bidirectional      every layer runs forward and reverse, as nn.LSTM(bidirectional=True)\n"
            "                       (classifiers; the head reads [forward, reverse] of the last step)\n"
            "  --proj P             LSTMP: project each h_t to size P < H, as nn.LSTM(proj_size=P)\n"
            "  --embed E            embedding size for token inputs (default 128)\n"
            "  --decompose svd:R|cp:R   train the LSTM gate matrices in factored form of rank R\n"
            "  --decompose auto     plan it: dense warm-up measures compute and link, then each matrix\n"
            "                       gets dense / SVD / CP and a rank, checked on validation data\n"
            "  --head-rank R        train the head as rank-R SVD factors\n"
            "  --init-seed S        seed of the initial weights (default: --seed)\n");
}

static void usage_common(FILE *f) {
    fprintf(f,
            "training:\n"
            "  --epochs N (default 10)   --max-steps N (stop early; 0: no limit)\n"
            "  --batch B            sequences (classify) or parallel streams (lm) per step (default 32 / 20)\n"
            "  --bptt T             truncated-BPTT window for lm (default 35)\n"
            "  --optim adam|sgd (default adam)  --lr X (default 1e-3 adam, 1 sgd)  --momentum M\n"
            "  --weight-decay W     --clip C (global gradient norm; default 0 = off, 5 for lm)\n"
            "  --dropout P          dropout on LSTM layer outputs while training (default 0)\n"
            "  --lr-decay F         multiply lr by F when the validation loss stops improving (default 1)\n"
            "  --patience N         epochs without improvement before decaying (default 0)\n"
            "  --seed S             shuffling / dropout seed (default 1)\n"
            "  --checkpoint PATH    write a checkpoint every --every N steps and at the end\n"
            "  --resume             continue from --checkpoint if it exists: model, optimiser and\n"
            "                       options come from the checkpoint; pass the same data options\n"
            "                       (--epochs / --max-steps may extend the run)\n"
            "                       Ctrl-C stops after the current step, writing both\n"
            "  --threads N          BLAS threads (default: OpenBLAS's, OPENBLAS_NUM_THREADS)\n"
            "  --quiet              no progress output\n"
            "  --dist               data-parallel over MPI ranks (mpirun -np P fastlstm ...; on by itself\n"
            "                       when mpirun runs more than one rank): each rank takes 1/P of every\n"
            "                       batch, gradients are averaged with MPI_Allreduce; rank 0 prints and\n"
            "                       writes the checkpoint and model\n"
            "  -o, --output MODEL   the trained model (safetensors)\n"
            "  -h, --help\n");
}

static void usage_finetune(FILE *f) {
    fprintf(f,
            "usage: fastlstm finetune MODEL --train DATA [--train-labels Y.npy] [--valid ...]\n"
            "                         [--freeze-dense] [training options] -o OUT\n\n"
            "Continue training a saved model (typically after 'fastlstm decompose') in its own\n"
            "storage: gradients flow into the SVD / CP factors. A text model reuses its vocabulary.\n\n"
            "  --train X.npy --train-labels Y.npy | --train corpus.txt   training data\n"
            "  --valid ... [--valid-labels ...]   validation set, evaluated every epoch\n"
            "  --freeze-dense       train only the factors of decomposed matrices (biases, embedding,\n"
            "                       dense matrices stay fixed)\n");
}

/* Ctrl-C stops training cleanly: the run ends after the current step, writes its checkpoint and
 * the model. A second Ctrl-C kills the process as usual. */
static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
    interrupted = 1;
    signal(sig, SIG_DFL);
}

typedef struct progress_ctx {
    bool tty, quiet;
    bool lm;
    long last_line_step;
    long line_every;  /* steps between plain progress lines (not a terminal): ~10 an epoch */
    long tty_every;   /* steps between redraws of the terminal status line: ~100 an epoch */
    int epochs;
    const cli_energy *energy; /* --dist: energy column (J per step so far), or NULL */
    long step0;               /* steps done before this run (resume) */
} progress_ctx;

static void fmt_time(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 1e8) snprintf(buf, n, "?");
    else if (s >= 3600) snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else if (s >= 60) snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, n, "%.0fs", s);
}

static int on_progress(const fl_train_progress *p, void *user) {
    progress_ctx *c = user;
    if (c->quiet) return interrupted;
    char eta[32];
    fmt_time(eta, sizeof eta, p->eta_s);
    const char *unit = c->lm ? "tok/s" : "seq/s";
    if (c->tty) {
        /* Redrawing on every step of a small model costs more than the step itself. */
        if (!p->epoch_end && p->step - c->last_line_step < c->tty_every) return interrupted;
        c->last_line_step = p->step;
        fprintf(stderr, "\r\033[Kepoch %d/%d  step %ld/%ld  loss %.4f  lr %.3g  %.0f %s  ETA %s", p->epoch + 1,
                c->epochs, p->epoch_step, p->epoch_steps, p->loss, p->lr, p->items_per_s, unit, eta);
        if (c->energy && p->step > c->step0)
            fprintf(stderr, "  %.3g J/step", cli_energy_joules(c->energy, p->step - c->step0, NULL) / (double)(p->step - c->step0));
        if (p->epoch_end) fputc('\n', stderr);
    } else if (!p->epoch_end && p->step - c->last_line_step >= c->line_every) {
        fprintf(stderr, "epoch %d/%d step %ld/%ld loss %.4f lr %.3g %.0f %s ETA %s", p->epoch + 1, c->epochs,
                p->epoch_step, p->epoch_steps, p->loss, p->lr, p->items_per_s, unit, eta);
        if (c->energy && p->step > c->step0)
            fprintf(stderr, " energy %.3g J/step", cli_energy_joules(c->energy, p->step - c->step0, NULL) / (double)(p->step - c->step0));
        fputc('\n', stderr);
        c->last_line_step = p->step;
    }
    if (p->epoch_end) {
        fprintf(stderr, "epoch %d done: train loss %.4f", p->epoch + 1, p->loss);
        if (!isnan(p->valid_loss))
            fprintf(stderr, ", valid loss %.4f, valid %s %.4f", p->valid_loss, c->lm ? "perplexity" : "accuracy",
                    p->valid_metric);
        fprintf(stderr, ", lr %.3g, %.0f %s\n", p->lr, p->items_per_s, unit);
    }
    fflush(stderr);
    return interrupted;
}

#ifdef FL_WITH_MPI
/* Watchdog: the stalled job's last words, on the watchdog thread. */
static void on_stall(const char *msg, void *user) {
    fprintf(stderr, "fastlstm %s: %s\n", (const char *)user, msg);
    fflush(stderr);
}

/* Rank 0's communication and energy summary of a distributed run: `steps` steps since e started,
 * communication since s0 (the stats when e started). `what` names the span ("" for the whole run).
 * `per_epoch`: steps in one epoch, for the per-epoch energy. */
static void dist_summary(const char *CMD, const fl_dist *d, const fl_dist_stats *s0, const cli_energy *e, long steps,
                         long per_epoch, const char *what) {
    fl_dist_stats s;
    fl_dist_get_stats(d, &s);
    s.steps -= s0->steps;
    s.bytes -= s0->bytes;
    s.grad_wait_s -= s0->grad_wait_s;
    s.grad_busy_s -= s0->grad_busy_s;
    if (s.steps <= 0 || steps <= 0) return;
    double cores;
    double j = cli_energy_joules(e, steps, &cores);
    fprintf(stderr, "%s: %.4g s/step over %ld steps%s (%ld steps an epoch)\n", CMD, cli_energy_wall(e) / (double)steps,
            steps, what, per_epoch);
    char hidden[48] = "one rank: nothing to hide";
    /* waiting longer than anything was in flight: the wait is other ranks' lateness, not the network */
    if (e->ranks > 1)
        snprintf(hidden, sizeof hidden, "%.0f%% hidden behind backward",
                 s.grad_busy_s > 0 && s.grad_wait_s < s.grad_busy_s ? 100.0 * (1 - s.grad_wait_s / s.grad_busy_s) : 0.0);
    fprintf(stderr, "%s: communication%s: %.0f bytes/step allreduced; waited %.3g ms/step for the gradient of %.3g ms/step "
            "in flight (%s); energy %.4g J in all, %.4g J/step (%.3g core-s), %.4g kJ/epoch\n",
            CMD, what, s.bytes / (double)s.steps, 1e3 * s.grad_wait_s / s.steps, 1e3 * s.grad_busy_s / s.steps, hidden, j,
            j / (double)steps, cores, j / (double)steps * (double)per_epoch / 1e3);
}
#endif

int cli_train_main(const char *CMD, int argc, char **argv, bool finetune) {
    const char *task = NULL, *train = NULL, *train_y = NULL, *valid = NULL, *valid_y = NULL, *tokens = "word";
    const char *v_vocab = NULL, *v_classes = NULL, *v_hidden = NULL, *v_layers = NULL, *v_proj = NULL, *v_embed = NULL;
    const char *v_hrank = NULL, *v_decomp = NULL, *v_epochs = NULL, *v_max = NULL, *v_batch = NULL, *v_bptt = NULL;
    const char *v_optim = NULL, *v_lr = NULL, *v_mom = NULL, *v_wd = NULL, *v_clip = NULL, *v_drop = NULL;
    const char *v_decay = NULL, *v_pat = NULL, *v_seed = NULL, *v_iseed = NULL, *ckpt = NULL, *v_every = NULL;
    const char *out = NULL, *model_in = NULL, *v_threads = NULL;
    fl_data_spec tspec = {0}, vspec = {0};
    bool resume = false, quiet = false, freeze = false, dist = false, bidir = false;
    cli_dist_opts dopt = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            if (finetune) usage_finetune(stdout);
            else usage_train(stdout);
            usage_common(stdout);
            cli_dist_usage(stdout);
            return CLI_OK;
        }
        if (!strcmp(a, "--resume")) { resume = true; continue; }
        if (!strcmp(a, "--quiet")) { quiet = true; continue; }
        if (!strcmp(a, "--dist")) { dist = true; continue; }
        if (finetune && !strcmp(a, "--freeze-dense")) { freeze = true; continue; }
        if (!finetune && !strcmp(a, "--bidirectional")) { bidir = true; continue; }
        if ((r = cli_dist_take(CMD, argc, argv, &i, &dopt))) {
            if (r < 0) return CLI_USAGE;
            continue;
        }
        if ((!finetune && (r = cli_take(CMD, argc, argv, &i, "--task", &task))) ||
            (r = cli_take_data(CMD, argc, argv, &i, "train", &tspec)) ||
            (r = cli_take_data(CMD, argc, argv, &i, "valid", &vspec)) ||
            (!finetune && (r = cli_take(CMD, argc, argv, &i, "--tokens", &tokens))) ||
            (!finetune && (r = cli_take(CMD, argc, argv, &i, "--level", &tokens))) ||
            (!finetune && (r = cli_take(CMD, argc, argv, &i, "--vocab-size", &v_vocab))) ||
            (r = cli_take(CMD, argc, argv, &i, "--classes", &v_classes)) ||
            (!finetune && (r = cli_take(CMD, argc, argv, &i, "--hidden", &v_hidden))) ||
            (!finetune && (r = cli_take(CMD, argc, argv, &i, "--layers", &v_layers))) ||
            (!finetune && (r = cli_take(CMD, argc, argv, &i, "--proj", &v_proj))) ||
            (!finetune && (r = cli_take(CMD, argc, argv, &i, "--embed", &v_embed))) ||
            (!finetune && (r = cli_take(CMD, argc, argv, &i, "--decompose", &v_decomp))) ||
            (!finetune && (r = cli_take(CMD, argc, argv, &i, "--head-rank", &v_hrank))) ||
            (!finetune && (r = cli_take(CMD, argc, argv, &i, "--init-seed", &v_iseed))) ||
            (r = cli_take(CMD, argc, argv, &i, "--epochs", &v_epochs)) ||
            (r = cli_take(CMD, argc, argv, &i, "--max-steps", &v_max)) ||
            (r = cli_take(CMD, argc, argv, &i, "--batch", &v_batch)) ||
            (r = cli_take(CMD, argc, argv, &i, "--bptt", &v_bptt)) ||
            (r = cli_take(CMD, argc, argv, &i, "--optim", &v_optim)) ||
            (r = cli_take(CMD, argc, argv, &i, "--lr", &v_lr)) ||
            (r = cli_take(CMD, argc, argv, &i, "--momentum", &v_mom)) ||
            (r = cli_take(CMD, argc, argv, &i, "--weight-decay", &v_wd)) ||
            (r = cli_take(CMD, argc, argv, &i, "--clip", &v_clip)) ||
            (r = cli_take(CMD, argc, argv, &i, "--dropout", &v_drop)) ||
            (r = cli_take(CMD, argc, argv, &i, "--lr-decay", &v_decay)) ||
            (r = cli_take(CMD, argc, argv, &i, "--patience", &v_pat)) ||
            (r = cli_take(CMD, argc, argv, &i, "--seed", &v_seed)) ||
            (r = cli_take(CMD, argc, argv, &i, "--checkpoint", &ckpt)) ||
            (r = cli_take(CMD, argc, argv, &i, "--every", &v_every)) ||
            (r = cli_take(CMD, argc, argv, &i, "--threads", &v_threads)) ||
            (r = cli_take(CMD, argc, argv, &i, "-o", &out)) ||
            (r = cli_take(CMD, argc, argv, &i, "--output", &out))) {
            if (r < 0) return CLI_USAGE;
            continue;
        }
        if (finetune && a[0] != '-' && !model_in) {
            model_in = a;
            continue;
        }
        return cli_fail(CMD, CLI_USAGE, "unknown option '%s' (see 'fastlstm %s --help')", a, CMD);
    }
    if (finetune && !model_in) return cli_fail(CMD, CLI_USAGE, "MODEL is required");
    train = tspec.path, train_y = tspec.labels, valid = vspec.path, valid_y = vspec.labels;
    if (valid_y && !valid) return cli_fail(CMD, CLI_USAGE, "--valid-labels needs --valid");
    if (train_y && !train) return cli_fail(CMD, CLI_USAGE, "--train-labels needs --train");
    if (!train) return cli_fail(CMD, CLI_USAGE, "--train is required");
    if (!out) return cli_fail(CMD, CLI_USAGE, "-o MODEL is required");
    if (resume && !ckpt) return cli_fail(CMD, CLI_USAGE, "--resume needs --checkpoint PATH");
    if (v_every && !ckpt) return cli_fail(CMD, CLI_USAGE, "--every needs --checkpoint PATH");

    /* The task: explicit for train, from the model's head for finetune. */
    fl_model *m = NULL;
    fl_trainer *t = NULL;
    fl_vocab *vocab = NULL;
    fl_dataset *dtrain = NULL, *dvalid = NULL;
    int rc = CLI_ERR;
    fl_status st;
    bool lm;
    if (finetune) {
        if ((st = fl_model_load(model_in, &m))) return cli_fail_status(CMD, st);
        lm = fl_model_arch(m)->head == FL_HEAD_PER_STEP;
        if (fl_model_arch(m)->head == FL_HEAD_NONE) {
            fl_model_free(m);
            return cli_fail(CMD, CLI_ERR, "%s has no head: nothing to train", model_in);
        }
    } else {
        if (!task) return cli_fail(CMD, CLI_USAGE, "--task classify|lm is required");
        if (strcmp(task, "classify") && strcmp(task, "lm"))
            return cli_fail(CMD, CLI_USAGE, "--task expects classify or lm, got '%s'", task);
        lm = !strcmp(task, "lm");
        if (strcmp(tokens, "word") && strcmp(tokens, "char"))
            return cli_fail(CMD, CLI_USAGE, "--level expects word or char, got '%s'", tokens);
    }
    bool tnpy = fl_data_format_of(&tspec, lm) == FL_DATA_NPY, vnpy = valid && fl_data_format_of(&vspec, lm) == FL_DATA_NPY;
    const char *bad = !lm && tnpy && !train_y             ? "--train-labels is required for a .npy classification set"
                      : !lm && vnpy && !valid_y  ? "--valid needs --valid-labels"
                      : lm && (train_y || valid_y) ? "a language model takes no labels"
                                                  : NULL;
    if (bad) {
        fl_model_free(m); /* finetune: the loaded model */
        return cli_fail(CMD, CLI_USAGE, "%s", bad);
    }

    long vocab_cap = 10000, classes = 0, hidden = 128, layers = 1, proj = 0, embed = 128, epochs = 10, max_steps = 0;
    long head_rank = 0, batch = lm ? 20 : 32, bptt = 35, pat = 0, seed = 1, iseed = -1, every = 0, threads = 0;
    double lr = -1, mom = 0, wd = 0, clip = lm ? 5 : 0, drop = 0, decay = 1;
    const long big = 1L << 24;
    if ((v_vocab && !cli_parse_int(CMD, "--vocab-size", v_vocab, 2, big, &vocab_cap)) ||
        (v_classes && !cli_parse_int(CMD, "--classes", v_classes, 2, big, &classes)) ||
        (v_hidden && !cli_parse_int(CMD, "--hidden", v_hidden, 1, big, &hidden)) ||
        (v_layers && !cli_parse_int(CMD, "--layers", v_layers, 1, 1024, &layers)) ||
        (v_proj && !cli_parse_int(CMD, "--proj", v_proj, 1, big, &proj)) ||
        (v_embed && !cli_parse_int(CMD, "--embed", v_embed, 1, big, &embed)) ||
        (v_hrank && !cli_parse_int(CMD, "--head-rank", v_hrank, 1, big, &head_rank)) ||
        (v_epochs && !cli_parse_int(CMD, "--epochs", v_epochs, 0, big, &epochs)) ||
        (v_max && !cli_parse_int(CMD, "--max-steps", v_max, 0, LONG_MAX, &max_steps)) ||
        (v_batch && !cli_parse_int(CMD, "--batch", v_batch, 1, 65536, &batch)) ||
        (v_bptt && !cli_parse_int(CMD, "--bptt", v_bptt, 1, 100000, &bptt)) ||
        (v_pat && !cli_parse_int(CMD, "--patience", v_pat, 0, big, &pat)) ||
        (v_seed && !cli_parse_int(CMD, "--seed", v_seed, 0, LONG_MAX, &seed)) ||
        (v_iseed && !cli_parse_int(CMD, "--init-seed", v_iseed, 0, LONG_MAX, &iseed)) ||
        (v_every && !cli_parse_int(CMD, "--every", v_every, 1, LONG_MAX, &every)) ||
        (v_threads && !cli_parse_int(CMD, "--threads", v_threads, 1, 4096, &threads)) ||
        (v_lr && !cli_parse_double(CMD, "--lr", v_lr, 1e-12, 1e6, &lr)) ||
        (v_mom && !cli_parse_double(CMD, "--momentum", v_mom, 0, 0.999999, &mom)) ||
        (v_wd && !cli_parse_double(CMD, "--weight-decay", v_wd, 0, 1e6, &wd)) ||
        (v_clip && !cli_parse_double(CMD, "--clip", v_clip, 0, 1e9, &clip)) ||
        (v_drop && !cli_parse_double(CMD, "--dropout", v_drop, 0, 0.99, &drop)) ||
        (v_decay && !cli_parse_double(CMD, "--lr-decay", v_decay, 1e-6, 1, &decay)) || !cli_dist_parse(CMD, &dopt)) {
        fl_model_free(m);
        return CLI_USAGE;
    }
    fl_train_opts o = fl_train_opts_default();
    if (v_optim && strcmp(v_optim, "adam") && strcmp(v_optim, "sgd")) {
        fl_model_free(m);
        return cli_fail(CMD, CLI_USAGE, "--optim expects adam or sgd, got '%s'", v_optim);
    }
    o.optim = v_optim && !strcmp(v_optim, "sgd") ? FL_OPTIM_SGD : FL_OPTIM_ADAM;
    o.lr = (float)(lr > 0 ? lr : o.optim == FL_OPTIM_SGD ? 1.0 : 1e-3);
    o.momentum = (float)mom;
    o.weight_decay = (float)wd;
    o.clip = (float)clip;
    o.dropout = (float)drop;
    o.batch = (int)batch;
    o.bptt = (int)bptt;
    o.lr_decay = (float)decay;
    o.patience = (int)pat;
    o.seed = (uint64_t)seed;
    o.freeze_dense = freeze;

    fl_method dmethod = FL_METHOD_DENSE;
    long drank = 0;
    const bool auto_plan = v_decomp && !strcmp(v_decomp, "auto");
    if (auto_plan && (bidir || proj > 0)) {
        fl_model_free(m);
        return cli_fail(CMD, CLI_USAGE, "--decompose auto does not plan bidirectional or projection models yet; use "
                        "svd:R or cp:R");
    }
    if (proj > 0 && proj >= hidden) {
        fl_model_free(m);
        return cli_fail(CMD, CLI_USAGE, "--proj %ld must be below --hidden %ld", proj, hidden);
    }
    if (v_decomp && !auto_plan) {
        const char *colon = strchr(v_decomp, ':');
        if (!colon || (strncmp(v_decomp, "svd", 3) && strncmp(v_decomp, "cp", 2)) ||
            (size_t)(colon - v_decomp) != (strncmp(v_decomp, "svd", 3) ? 2u : 3u))
            return cli_fail(CMD, CLI_USAGE, "--decompose expects svd:R or cp:R, got '%s'", v_decomp);
        dmethod = v_decomp[0] == 's' ? FL_METHOD_SVD : FL_METHOD_CP;
        if (!cli_parse_int(CMD, "--decompose rank", colon + 1, 1, big, &drank)) return CLI_USAGE;
    }

    /* Distributed: --dist, or started by mpirun with more than one rank. */
    const char *wsize = getenv("OMPI_COMM_WORLD_SIZE");
    if (wsize && atoi(wsize) > 1) dist = true;
    int rank = 0, nranks = 1;
#ifdef FL_WITH_MPI
    fl_dist *dctx = NULL;
    if (dist) {
        if ((st = fl_dist_init(NULL, NULL, &dctx))) {
            fl_model_free(m);
            return cli_fail_status(CMD, st);
        }
        rank = fl_dist_rank(dctx);
        nranks = fl_dist_size(dctx);
        if (rank != 0) quiet = true; /* rank 0 reports for all */
        /* Ranks on one machine share its cores: split them unless told otherwise. */
        const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        if (threads == 0 && !getenv("OPENBLAS_NUM_THREADS") && local && atoi(local) > 0 && cores > 0)
            threads = cores / atoi(local) > 0 ? cores / atoi(local) : 1;
    }
#else
    (void)nranks;
    if (dist) {
        fl_model_free(m);
        return cli_fail(CMD, CLI_USAGE, "%s: this build has no MPI (configure with -DFL_WITH_MPI=ON)",
                        wsize ? "started by mpirun" : "--dist");
    }
#endif

    /* Resume: model and trainer come from the checkpoint. */
    bool resumed = false;
    if (resume && access(ckpt, F_OK) != 0 && !quiet)
        fprintf(stderr, "no checkpoint at %s yet: starting a new run\n", ckpt);
    if (resume && access(ckpt, F_OK) == 0) {
        fl_model_free(m);
        m = NULL;
        if ((st = fl_trainer_resume(ckpt, &m, &t))) {
            rc = cli_fail_status(CMD, st);
            goto done;
        }
        resumed = true;
        if ((fl_model_arch(m)->head == FL_HEAD_PER_STEP) != lm) {
            rc = cli_fail(CMD, CLI_ERR, "%s: checkpoint is for a different task", ckpt);
            goto done;
        }
        if (!quiet)
            fprintf(stderr, "resuming from %s at epoch %d, step %ld\n", ckpt, fl_trainer_epoch(t) + 1,
                    fl_trainer_steps(t));
    }

    /* Data (one data layer: fl_data_load_new / fl_data_load_with). A text model (corpus or
     * labelled text) keeps its vocabulary; a saved one is reused. */
    int ncls = (int)classes;
    if (m && !ncls) ncls = lm ? fl_model_arch(m)->vocab : fl_model_arch(m)->head_out;
    if (m && !tnpy) {
        if ((st = fl_vocab_from_model(m, &vocab))) {
            rc = cli_fail(CMD, CLI_ERR, "%s: %s", finetune ? model_in : ckpt, fl_last_error());
            goto done;
        }
        st = fl_data_load_with(&tspec, lm, vocab, ncls, &dtrain);
    } else if (m) {
        st = fl_data_load_with(&tspec, lm, NULL, ncls, &dtrain);
    } else {
        st = fl_data_load_new(&tspec, lm, strcmp(tokens, "char") ? FL_TOKENS_WORD : FL_TOKENS_CHAR, (int)vocab_cap,
                              ncls, &vocab, &dtrain);
    }
    if (st || (valid && (st = fl_data_load_with(&vspec, lm, vnpy ? NULL : vocab,
                                                 ncls ? ncls : fl_dataset_classes(dtrain), &dvalid)))) {
        rc = cli_fail_status(CMD, st);
        goto done;
    }

    if (!m) { /* a new model */
        fl_arch a = {.hidden = (int)hidden, .layers = (int)layers, .bidirectional = bidir, .proj = (int)proj};
        if (lm) {
            a.vocab = vocab ? fl_vocab_size(vocab) : fl_dataset_classes(dtrain);
            a.input = (int)embed;
            a.head = FL_HEAD_PER_STEP;
            a.head_out = a.vocab;
        } else if (vocab) { /* labelled text: its vocabulary and class names */
            a.vocab = fl_vocab_size(vocab);
            a.input = (int)embed;
            a.head = FL_HEAD_LAST_STEP;
            a.head_out = fl_vocab_num_labels(vocab);
        } else {
            int dim = fl_dataset_dim(dtrain);
            a.head = FL_HEAD_LAST_STEP;
            a.head_out = fl_dataset_classes(dtrain); /* the validation set was loaded with this count */
            if (dim > 0) a.input = dim;
            else {
                /* token ids: the vocabulary is the largest id in the training/validation data + 1 */
                a.vocab = fl_dataset_vocab(dtrain);
                if (dvalid && fl_dataset_vocab(dvalid) > a.vocab) a.vocab = fl_dataset_vocab(dvalid);
                if (a.vocab > big) { /* a stray huge id would size the embedding by it */
                    rc = cli_fail(CMD, CLI_ERR, "token ids need a vocabulary of %d or more; at most %ld is supported "
                                  "(%s%s%s)", a.vocab, big, train, dvalid ? ", " : "", dvalid ? valid : "");
                    goto done;
                }
                a.input = (int)embed;
            }
        }
        /* (layer, direction): ih, hh (and hr: dense, or SVD; it has no gate axis for CP); head */
        const int dirs = bidir ? 2 : 1, per = proj > 0 ? 3 : 2, nmat = per * a.layers * dirs;
        const int out = proj > 0 ? (int)proj : a.hidden;
        fl_mat_spec specs[6 * 1024 + 1];
        for (int i = 0; i < nmat; i++)
            specs[i] = (fl_mat_spec){i % per == 2 && dmethod == FL_METHOD_CP ? FL_METHOD_DENSE : dmethod, (int)drank};
        specs[nmat] = (fl_mat_spec){FL_METHOD_DENSE, 0};
        if (head_rank > 0) { /* clamp to the head's shape */
            int maxr = a.head_out < dirs * out ? a.head_out : dirs * out;
            specs[nmat] = (fl_mat_spec){FL_METHOD_SVD, head_rank < maxr ? (int)head_rank : maxr};
        }
        if (dmethod == FL_METHOD_SVD)
            for (int i = 0; i < nmat; i++) {
                const int layer = i / (per * dirs), k = i % per;
                if (k == 2) { /* W_hr (P, H) */
                    if (specs[i].rank > out) specs[i].rank = out;
                    continue;
                }
                const int cols = k == 1 ? out : layer == 0 ? a.input : dirs * out;
                int maxr = cols < 4 * a.hidden ? cols : 4 * a.hidden;
                if (specs[i].rank > maxr) specs[i].rank = maxr;
            }
        if ((st = fl_model_create(&a, specs, &m)) || (st = fl_model_init_random(m, (uint64_t)(iseed >= 0 ? iseed : seed)))) {
            rc = cli_fail_status(CMD, st);
            goto done;
        }
        if (vocab && (st = fl_vocab_attach(vocab, m))) {
            rc = cli_fail_status(CMD, st);
            goto done;
        }
    }
    if (!t && (st = fl_trainer_create(m, &o, &t))) {
        rc = cli_fail_status(CMD, st);
        goto done;
    }
    if (threads > 0 && (st = fl_trainer_set_threads(t, (int)threads))) {
        rc = cli_fail_status(CMD, st);
        goto done;
    }
#ifdef FL_WITH_MPI
    if (dctx && (st = fl_dist_attach(dctx, t))) {
        rc = cli_fail_status(CMD, st);
        goto done;
    }
    if (dctx && ((st = fl_dist_set_bucket_mb(dctx, dopt.bucket_mb)) ||
                 (st = fl_dist_set_sparse_embedding(dctx, dopt.sparse_embed)) ||
                 (dopt.watchdog_s > 0 && (st = fl_dist_watchdog_start(dctx, dopt.watchdog_s, on_stall, (void *)CMD))))) {
        rc = cli_fail_status(CMD, st);
        goto done;
    }
    cli_energy energy, energy_switch;
    fl_dist_stats stats_switch = {0};
    bool switched = false;
    long steps_switch = 0;
    if (dctx) cli_energy_start(&energy, &dopt, fl_dist_step_bytes(t), nranks);
    if (dctx && !quiet) {
        char how[160];
        cli_energy_describe(&energy, how, sizeof how);
        fprintf(stderr, "%s: %s%s; watchdog %s; energy %s\n", CMD,
                dopt.bucket_mb > 0 ? "gradients reduced in buckets overlapping backward" : "one allreduce after backward",
                dopt.sparse_embed && fl_model_arch(m)->vocab > 0 ? ", touched embedding rows only" : "",
                dopt.watchdog_s > 0 ? "on" : "off", how);
    }
    if (dctx && !quiet)
        fprintf(stderr, "%s: data-parallel over %d MPI ranks, %d-item global batch (%d per rank or fewer); "
                "each step allreduces %zu bytes (gradients of %zu parameters, the loss%s)\n", CMD, nranks, o.batch,
                (o.batch + nranks - 1) / nranks, fl_dist_step_bytes(t), fl_model_num_params(m),
                lm ? ", the carried LM state" : "");
#endif
    if (!quiet) {
        const fl_arch *a = fl_model_arch(m);
        fprintf(stderr, "%s: %s, %zu parameters, hidden %d x %d layers%s; %zu %s\n", CMD,
                lm ? "language model" : "classifier", fl_model_num_params(m), a->hidden, a->layers,
                resumed ? " (resumed)" : "", fl_dataset_size(dtrain), lm ? "training tokens" : "training sequences");
    }
    progress_ctx pc = {.tty = isatty(2), .quiet = quiet, .lm = lm, .epochs = (int)epochs, .step0 = fl_trainer_steps(t)};
#ifdef FL_WITH_MPI
    if (dctx) pc.energy = &energy;
#endif
    fl_train_run run = {.train = dtrain, .valid = dvalid, .epochs = (int)epochs, .max_steps = max_steps,
                        .checkpoint = rank == 0 ? ckpt : NULL, .every = every, .callback = on_progress,
                        .user = &pc};
    long per_epoch;
    {
        /* plain-line progress about 10 times an epoch */
        size_t n = fl_dataset_size(dtrain);
        per_epoch = lm ? (long)(n / (size_t)o.batch / (size_t)o.bptt) : (long)(n / (size_t)o.batch);
        pc.line_every = per_epoch / 10 > 0 ? per_epoch / 10 : 1;
        pc.tty_every = per_epoch / 100 > 0 ? per_epoch / 100 : 1;
    }
    interrupted = 0;
    struct sigaction sa = {0}, old;
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old);
    st = FL_OK;
    if (auto_plan && !resumed) {
        long per = 0;
        bool switched_now = false;
        {
            size_t n = fl_dataset_size(dtrain);
            per = lm ? (long)(n / (size_t)o.batch / (size_t)o.bptt) : (long)(n / (size_t)o.batch);
        }
        long warm = dopt.auto_warmup > 0 ? dopt.auto_warmup : (max_steps > 0 ? max_steps : per) / 10;
        if (!dopt.auto_warmup) warm = warm < 2 ? 2 : warm > 100 ? 100 : warm;
        cli_auto_opts ao = {.tol = dopt.auto_tol, .min_gain = 0.1, .min_rank_div = 16,
                            .min_rank = (int)dopt.auto_min_rank};
        void *dh = NULL;
#ifdef FL_WITH_MPI
        dh = dctx;
#endif
        st = cli_auto_run(&m, &t, &o, &run, dh, rank, nranks, warm, &ao, quiet ? NULL : stderr, &switched_now);
#ifdef FL_WITH_MPI
        /* switched: the decomposed model's steps get a summary of their own */
        if (dctx && !st && switched_now) {
            switched = true;
            steps_switch = fl_trainer_steps(t);
            fl_dist_get_stats(dctx, &stats_switch);
            cli_energy_start(&energy_switch, &dopt, fl_dist_step_bytes(t), nranks);
        }
#endif
    }
    if (!st) st = fl_trainer_run(t, &run);
    sigaction(SIGINT, &old, NULL);
    if (interrupted && !quiet)
        fprintf(stderr, "\ninterrupted at step %ld%s%s; saving the model\n", fl_trainer_steps(t),
                ckpt ? ", checkpoint written to " : "", ckpt ? ckpt : "");
    if (st) {
        if (pc.tty && !quiet) fputc('\n', stderr);
        /* Errors about a data set's fit to the model say "training data" / "validation data":
         * name the file too. */
        const char *e = fl_last_error();
        if (!strncmp(e, "training data", 13))
            rc = cli_fail(CMD, CLI_ERR, "%s: %s (%s)", fl_status_str(st), e, train);
        else if (!strncmp(e, "validation data", 15))
            rc = cli_fail(CMD, CLI_ERR, "%s: %s (%s)", fl_status_str(st), e, valid);
        else
            rc = cli_fail_status(CMD, st);
        goto done;
    }
#ifdef FL_WITH_MPI
    if (dctx && !quiet) {
        const fl_dist_stats zero = {0};
        dist_summary(CMD, dctx, &zero, &energy, fl_trainer_steps(t) - pc.step0, per_epoch, "");
        if (switched)
            dist_summary(CMD, dctx, &stats_switch, &energy_switch, fl_trainer_steps(t) - steps_switch, per_epoch,
                         " after the switch to the planned model");
    }
#endif
    if (rank != 0) { /* rank 0 saves and reports */
        rc = CLI_OK;
        goto done;
    }
    /* A quantized model trained its float32 master: store it quantized again. */
    if ((st = fl_model_requantize(m)) || (st = fl_model_save(m, out))) {
        rc = cli_fail_status(CMD, st);
        goto done;
    }
    fl_eval_result ev;
    const fl_dataset *evd = dvalid ? dvalid : dtrain;
    if ((st = fl_model_evaluate(m, evd, lm ? o.batch : 256, o.bptt, &ev))) {
        rc = cli_fail_status(CMD, st);
        goto done;
    }
    printf("wrote %s after %d epoch(s), %ld step(s); %s loss %.4f, %s %.4f\n", out, fl_trainer_epoch(t),
           fl_trainer_steps(t), dvalid ? "valid" : "train", ev.loss, lm ? "perplexity" : "accuracy",
           lm ? ev.perplexity : ev.accuracy);
    rc = CLI_OK;
done:
#ifdef FL_WITH_MPI
    /* A failing rank would leave the others waiting in a collective: end the whole job. */
    if (dctx && rc != CLI_OK && nranks > 1) fl_dist_abort(dctx, rc);
#endif
    fl_trainer_free(t);
    fl_model_free(m);
    fl_vocab_free(vocab);
    fl_dataset_free(dtrain);
    fl_dataset_free(dvalid);
#ifdef FL_WITH_MPI
    fl_dist_finalize(dctx);
#endif
    return rc;
}

int cmd_train(int argc, char **argv) { return cli_train_main("train", argc, argv, false); }
