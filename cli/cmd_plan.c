/* fastlstm plan / compress: choose method and rank per weight matrix for this machine, the serving
 * shape and an accuracy budget; compress also writes the planned model. */
#include "cli.h"
#include "fastlstm/plan.h"
#include "fastlstm/io.h"
#include "fastlstm/tuning.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(const char *cmd, FILE *f) {
    fprintf(f,
            "usage: fastlstm %s MODEL%s [--batch B] [--seq T] [--threads N|0]\n"
            "         [--data VAL [--labels L.npy] [--lengths L.npy] | --text VAL | --labelled VAL] [--max-loss X | --max-dev X]\n"
            "         [--certify-data C [--certify-labels L.npy] | --certify-text C | --certify-labelled C]\n"
            "         [--certify-fraction F] [--confidence P]\n"
            "         [--finetune --train X [--train-labels Y] [--finetune-epochs N] [--finetune-probe E] [--lr X] [--batch-train B]]\n"
            "         [--cache-bytes N --bandwidth GB/s --flops GFLOP/s] [--cache-bandwidth GB/s]\n"
            "         [--profile PATH] [--no-measure] [--no-cp] [--precisions f32,bf16,int8] [--max-evals N] [--seed S]\n"
            "         [--explain] [--json] [--quiet]\n\n"
            "Chooses dense, SVD or CP storage and a rank for every weight matrix: the fastest\n"
            "configuration (roofline cost model of one time step at batch B, sequence length T, N\n"
            "threads; then the best candidates timed for real) whose accuracy stays in the budget.\n"
            "--threads 0 (the default) plans the thread count of each layer too: the fastest of 1 to\n"
            "the CPUs, predicted and then timed; the written model records them and a session with\n"
            "threads 0 runs each layer on its own.\n\n"
            "  --data VAL        validation data, read as every command reads data: .npy features\n"
            "                    (N, T, D) or ids (N, T) for a classifier, token ids (N) or (N, T) for a\n"
            "                    language model (one stream); other files: labelled text (label<TAB>text)\n"
            "                    for a text classifier, a corpus for a language model (--text, --labelled\n"
            "                    force the format); sequences are judged with their lengths as `eval`\n"
            "                    judges them (labelled text: each line's; .npy: --lengths L.npy, valid\n"
            "                    steps first)\n"
            "  --labels L.npy    class ids (N) for a .npy classifier set (default: the dense model's\n"
            "                    own predictions)\n"
            "  --certify-data C  certify the budget on C (same forms: --certify-labels, --certify-text,\n"
            "                    --certify-labelled); without it the validation data is split: the\n"
            "                    search sees 1 - F of it, the certification the other F\n"
            "  --certify-fraction F  held-back share of the validation data (default 0.5; 0: no\n"
            "                    certification); classifier sets split by a permutation of --seed, a\n"
            "                    language model's text by position (its tail)\n"
            "  --confidence P    one-sided level of the certified upper bound on the paired loss\n"
            "                    (default 0.9); a plan whose bound exceeds the budget is passed over\n"
            "  --finetune        judge candidates after a short fine-tune on --train (same data forms:\n"
            "                    --train-labels, --train-text, --train-labelled), fine-tune the chosen\n"
            "                    plan for --finetune-epochs (default 1), certify it after\n"
            "  --finetune-probe E  epochs of fine-tuning per candidate in the search (default: so that\n"
            "                    the search's fine-tuning adds up to 1.5 full fine-tunes)\n"
            "  --lr X, --batch-train B   fine-tuning learning rate (default 1e-4, Adam: a tenth of\n"
            "                    training's, which would throw a converged model off) and batch (32)\n"
            "  --max-loss X      with --data: accuracy points a classifier may lose (default 1.0), or a\n"
            "                    language model's relative perplexity increase (default 0.05)\n"
            "  --max-dev X       without --data: bound on ||y - y_dense|| / ||y_dense|| over random\n"
            "                    inputs (default 0.05)\n"
            "  --cache-bytes N, --bandwidth GB/s (DRAM), --cache-bandwidth GB/s, --flops GFLOP/s\n"
            "                    pose as another machine; with the first three nothing is measured\n"
            "  --profile PATH    machine profile file (default ~/.cache/fastlstm/profile.json)\n"
            "  --no-measure      choose by predicted latency only (no timing runs)\n"
            "  --precisions LIST weight precisions the search may store a matrix in besides the input's\n"
            "                    (f32, bf16, int8, comma-separated; default f32: every matrix keeps its\n"
            "                    precision). A matrix only moves to fewer bytes per weight; each\n"
            "                    candidate is quantized and judged with the int8 / bf16 kernels, costed\n"
            "                    with the profile's measured rates of those kernels\n"
            "  --explain         print cache sizes, roofline numbers and every candidate evaluated\n"
            "%s",
            cmd, !strcmp(cmd, "compress") ? " -o OUT" : "",
            !strcmp(cmd, "compress") ? "  -o OUT            write the planned model (safetensors)\n" : "");
}

typedef struct plan_args {
    const char *model, *data, *labels, *profile, *out;
    fl_data_spec dspec, cspec, tspec; /* validation, certify, fine-tuning data */
    long batch, seq, threads, max_evals, seed, ft_epochs, ft_batch;
    unsigned precisions; /* fl_plan_opts.precisions */
    double max_loss, max_dev, cache_bytes, bandwidth, cache_bw, flops, confidence, cert_fraction, lr, probe;
    bool have_max_loss, have_max_dev, explain, json, quiet, no_measure, no_cp, finetune;
} plan_args;

/* "f32,int8" -> bits 1 << FL_PRECISION_*; nonzero (message printed) for an unknown name. */
static int parse_precisions(const char *cmd, const char *v, unsigned *out) {
    static const fl_precision all[3] = {FL_PRECISION_F32, FL_PRECISION_BF16, FL_PRECISION_INT8};
    *out = 0;
    for (const char *t = v; *t;) {
        size_t n = strcspn(t, ",");
        int k = 0;
        while (k < 3 && !(strlen(fl_precision_name(all[k])) == n && !strncmp(t, fl_precision_name(all[k]), n))) k++;
        if (k == 3)
            return cli_fail(cmd, CLI_USAGE, "--precisions: unknown precision '%.*s' in '%s' (f32, bf16, int8)", (int)n,
                            t, v);
        *out |= 1u << all[k];
        t += n + (t[n] == ',');
    }
    if (!*out) return cli_fail(cmd, CLI_USAGE, "--precisions: empty list");
    return 0;
}

/* Returns -1 to continue, else an exit code. */
static int parse(const char *cmd, int argc, char **argv, bool compress, plan_args *a) {
    memset(a, 0, sizeof *a);
    a->batch = 1, a->seq = 35, a->threads = 0, a->max_evals = 200, a->seed = 1;
    a->confidence = 0.9, a->cert_fraction = 0.5, a->ft_epochs = 1, a->ft_batch = 32, a->lr = FL_PLAN_FINETUNE_LR;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int r = 0;
#define TAKE(flag) ((r = cli_take(cmd, argc, argv, &i, flag, &v)) != 0)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(cmd, stdout);
            return CLI_OK;
        } else if (!strcmp(argv[i], "--explain")) a->explain = true;
        else if (!strcmp(argv[i], "--json")) a->json = true;
        else if (!strcmp(argv[i], "--quiet")) a->quiet = true;
        else if (!strcmp(argv[i], "--no-measure")) a->no_measure = true;
        else if (!strcmp(argv[i], "--no-cp")) a->no_cp = true;
        else if (!strcmp(argv[i], "--finetune")) a->finetune = true;
        else if ((r = cli_take_data(cmd, argc, argv, &i, "data", &a->dspec)) ||
                 (r = cli_take_data(cmd, argc, argv, &i, "certify", &a->cspec)) ||
                 (r = cli_take_data(cmd, argc, argv, &i, "train", &a->tspec))) {
            if (r < 0) return CLI_USAGE;
        } else if (TAKE("--precisions")) {
            if (r < 0 || parse_precisions(cmd, v, &a->precisions)) return CLI_USAGE;
        } else if (TAKE("--confidence")) {
            if (r < 0 || !cli_parse_double(cmd, "--confidence", v, 0.5000001, 0.9999999, &a->confidence)) return CLI_USAGE;
        } else if (TAKE("--certify-fraction")) {
            if (r < 0 || !cli_parse_double(cmd, "--certify-fraction", v, 0, 0.95, &a->cert_fraction)) return CLI_USAGE;
        } else if (TAKE("--finetune-epochs")) {
            if (r < 0 || !cli_parse_int(cmd, "--finetune-epochs", v, 0, 100000, &a->ft_epochs)) return CLI_USAGE;
        } else if (TAKE("--finetune-probe")) {
            if (r < 0 || !cli_parse_double(cmd, "--finetune-probe", v, 1e-6, 1000, &a->probe)) return CLI_USAGE;
        } else if (TAKE("--batch-train")) {
            if (r < 0 || !cli_parse_int(cmd, "--batch-train", v, 1, 65536, &a->ft_batch)) return CLI_USAGE;
        } else if (TAKE("--lr")) {
            if (r < 0 || !cli_parse_double(cmd, "--lr", v, 1e-12, 1e6, &a->lr)) return CLI_USAGE;
        } else if (TAKE("--batch")) {
            if (r < 0 || !cli_parse_int(cmd, "--batch", v, 1, 1 << 20, &a->batch)) return CLI_USAGE;
        } else if (TAKE("--seq")) {
            if (r < 0 || !cli_parse_int(cmd, "--seq", v, 1, 1 << 20, &a->seq)) return CLI_USAGE;
        } else if (TAKE("--threads")) {
            if (r < 0 || !cli_parse_int(cmd, "--threads", v, 0, 1024, &a->threads)) return CLI_USAGE;
        } else if (TAKE("--max-evals")) {
            if (r < 0 || !cli_parse_int(cmd, "--max-evals", v, 1, 100000, &a->max_evals)) return CLI_USAGE;
        } else if (TAKE("--seed")) {
            if (r < 0 || !cli_parse_int(cmd, "--seed", v, 0, 0x7fffffffL, &a->seed)) return CLI_USAGE;
        } else if (TAKE("--max-loss")) {
            if (r < 0 || !cli_parse_double(cmd, "--max-loss", v, 0, 1e9, &a->max_loss)) return CLI_USAGE;
            a->have_max_loss = true;
        } else if (TAKE("--max-dev")) {
            if (r < 0 || !cli_parse_double(cmd, "--max-dev", v, 0, 1e9, &a->max_dev)) return CLI_USAGE;
            a->have_max_dev = true;
        } else if (TAKE("--cache-bytes")) {
            if (r < 0 || !cli_parse_double(cmd, "--cache-bytes", v, 1, 1e15, &a->cache_bytes)) return CLI_USAGE;
        } else if (TAKE("--bandwidth")) {
            if (r < 0 || !cli_parse_double(cmd, "--bandwidth", v, 1e-6, 1e9, &a->bandwidth)) return CLI_USAGE;
        } else if (TAKE("--cache-bandwidth")) {
            if (r < 0 || !cli_parse_double(cmd, "--cache-bandwidth", v, 1e-6, 1e9, &a->cache_bw)) return CLI_USAGE;
        } else if (TAKE("--flops")) {
            if (r < 0 || !cli_parse_double(cmd, "--flops", v, 1e-6, 1e9, &a->flops)) return CLI_USAGE;
        } else if (TAKE("--profile")) {
            if (r < 0) return CLI_USAGE;
            a->profile = v;
        } else if (compress && TAKE("-o")) {
            if (r < 0) return CLI_USAGE;
            a->out = v;
        } else if ((r = cli_positional(cmd, argv[i], &a->model))) {
            return r;
        }
#undef TAKE
    }
    if (!a->model) return cli_fail(cmd, CLI_USAGE, "missing MODEL (see 'fastlstm %s --help')", cmd);
    a->data = a->dspec.path, a->labels = a->dspec.labels;
    if (a->finetune && !a->tspec.path) return cli_fail(cmd, CLI_USAGE, "--finetune needs --train DATA");
    if (a->tspec.path && !a->finetune) return cli_fail(cmd, CLI_USAGE, "--train is for --finetune");
    if (a->finetune && !a->data) return cli_fail(cmd, CLI_USAGE, "--finetune needs validation data (--data)");
    if ((a->cspec.path || a->cspec.labels) && !a->data)
        return cli_fail(cmd, CLI_USAGE, "--certify-data needs validation data (--data)");
    if (a->cspec.labels && !a->cspec.path) return cli_fail(cmd, CLI_USAGE, "--certify-labels needs --certify-data");
    if (compress && !a->out) return cli_fail(cmd, CLI_USAGE, "missing -o OUT");
    if (a->have_max_loss && !a->data)
        return cli_fail(cmd, CLI_USAGE, "--max-loss needs --data (use --max-dev without data)");
    if (a->have_max_loss && a->have_max_dev)
        return cli_fail(cmd, CLI_USAGE, "give only one of --max-loss and --max-dev");
    if (a->labels && !a->data) return cli_fail(cmd, CLI_USAGE, "--labels needs --data");
    return -1;
}

/* A model that is neither a classifier nor a language model is judged by the deviation of its
 * outputs, a classifier without labels by the dense model's own predictions: --data (--labels) as
 * raw .npy arrays into d (owned by the caller's fl_npy structs). Otherwise data goes through the
 * data layer (fl_data_load). */
static fl_status load_data(const plan_args *a, const fl_arch *arch, fl_npy *x, fl_npy *lab, fl_npy *len,
                           fl_plan_data *d) {
    fl_status st = fl_npy_load(a->data, x);
    if (st) return st;
    memset(d, 0, sizeof *d);
    if (arch->vocab > 0) {
        if (x->ndim != 2)
            return fl_set_error(FL_ERR_SHAPE, "%s: token ids must be (N, T), got %d dimensions", a->data, x->ndim);
        if ((st = fl_npy_ids_to_i32(x, arch->vocab, a->data))) return st;
        d->tokens = x->data;
    } else {
        if (x->ndim != 3)
            return fl_set_error(FL_ERR_SHAPE, "%s: features must be (N, T, D), got %d dimensions", a->data, x->ndim);
        if (x->dtype != 'f') return fl_set_error(FL_ERR_DTYPE, "%s: features must be float32", a->data);
        d->x = x->data;
        d->dim = (int)x->shape[2];
    }
    if (x->shape[0] > (1 << 30) || x->shape[1] > (1 << 30))
        return fl_set_error(FL_ERR_SHAPE, "%s: too many sequences", a->data);
    d->n = (int)x->shape[0];
    d->seq = (int)x->shape[1];
    if (a->labels) {
        if ((st = fl_npy_load(a->labels, lab))) return st;
        if (lab->ndim != 1)
            return fl_set_error(FL_ERR_SHAPE, "%s: labels must be (N), got %d dimensions", a->labels, lab->ndim);
        if ((st = fl_npy_ids_to_i32(lab, arch->head_out > 0 ? arch->head_out : 0, a->labels))) return st;
        d->labels = lab->data;
        d->n_labels = (int)lab->shape[0];
    }
    if (a->dspec.lengths) { /* each sequence's valid steps first (the planner checks the values) */
        const char *p = a->dspec.lengths;
        if ((st = fl_npy_load(p, len))) return st;
        if (len->ndim != 1 || len->shape[0] != x->shape[0])
            return fl_set_error(FL_ERR_SHAPE, "%s: lengths must be (N) with N = %d sequences", p, d->n);
        if ((st = fl_npy_ids_to_i32(len, 0, p))) return st;
        d->lengths = len->data;
    }
    return FL_OK;
}

static void on_progress(void *ctx, const char *msg) {
    fprintf(stderr, "fastlstm %s: %s\n", (const char *)ctx, msg);
}

static const char *method_name(fl_method m) {
    return m == FL_METHOD_SVD ? "svd" : m == FL_METHOD_CP ? "cp" : "dense";
}

static const char *metric_name(fl_plan_metric k) {
    return k == FL_METRIC_ACCURACY ? "accuracy %" : k == FL_METRIC_PERPLEXITY ? "perplexity" : "deviation";
}

/* "svd 16 int8" for one matrix: the precision when not f32. */
static void choice_str(const fl_mat_spec *s, fl_precision q, char *buf, size_t cap) {
    const char *qs = q == FL_PRECISION_F32 ? "" : fl_precision_name(q);
    if (s->method == FL_METHOD_DENSE) snprintf(buf, cap, "dense%s%s", *qs ? " " : "", qs);
    else snprintf(buf, cap, "%s %d%s%s", method_name(s->method), s->rank, *qs ? " " : "", qs);
}

/* "svd 16 int8, svd 8, dense" for a point. */
static void specs_str(const fl_plan_point *pt, size_t n, char *buf, size_t cap) {
    size_t len = 0;
    buf[0] = 0;
    for (size_t i = 0; i < n && len < cap; i++) {
        char c[48];
        choice_str(&pt->specs[i], pt->precisions[i], c, sizeof c);
        int w = snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", c);
        if (w < 0) break;
        len += (size_t)w;
    }
}

/* "L2", "L3", "DRAM" for a term's level. */
static void level_name(const fl_profile *prof, int level, char *buf, size_t n) {
    if (level < 0) snprintf(buf, n, "DRAM");
    else snprintf(buf, n, "L%d", prof->level[level].level);
}

/* Terms of the chosen configuration at the serving shape, each layer on its planned threads; NULL
 * on failure (the caller frees the result). */
static fl_cost_term *chosen_terms(const plan_args *a, const fl_model *m, const fl_profile *prof, const fl_plan *plan) {
    const fl_plan_point *ch = fl_plan_point_at(plan, fl_plan_chosen(plan));
    const int L = fl_model_arch(m)->layers;
    fl_cost_term *t = calloc(fl_model_num_matrices(m), sizeof *t);
    int *lt = calloc((size_t)L, sizeof *lt);
    fl_cost c;
    for (int l = 0; lt && l < L; l++) lt[l] = fl_plan_layer_threads(plan, l);
    if (!t || !lt || fl_cost_predict_layers(prof, fl_model_arch(m), ch->specs, ch->precisions, (int)a->batch,
                                            (int)a->seq, lt, &c, t) != FL_OK) {
        free(t);
        t = NULL;
    }
    free(lt);
    return t;
}

/* The roofline term that dominates each matrix of the chosen configuration at the serving shape. */
static void print_terms(const plan_args *a, const fl_model *m, const fl_profile *prof, const fl_plan *plan) {
    size_t nmat = fl_model_num_matrices(m);
    fl_cost_term *t = chosen_terms(a, m, prof, plan);
    if (!t) return;
    printf("\nroofline per step of the chosen configuration (threads per layer as planned):\n");
    printf("  %-20s %10s %6s %10s %9s %9s %7s  %s\n", "matrix", "KB/step", "from", "kflop", "mem us", "flop us",
           "threads", "dominant term");
    for (size_t i = 0; i < nmat; i++) {
        fl_matrix_info info;
        fl_model_matrix_info(m, i, &info);
        char lv[16];
        level_name(prof, t[i].level, lv, sizeof lv);
        char dom[48];
        if (t[i].compute_bound) snprintf(dom, sizeof dom, "flops");
        else snprintf(dom, sizeof dom, "bytes from %s", lv);
        printf("  %-20s %10.4g %6s %10.4g %9.3g %9.3g %7d  %s\n", info.name, t[i].bytes / 1e3, lv, t[i].flops / 1e3,
               t[i].mem_seconds * 1e6, t[i].compute_seconds * 1e6, t[i].threads, dom);
    }
    free(t);
}

/* How the choice changes with the serving batch (among the configurations evaluated). */
static void print_batches(const plan_args *a, const fl_model *m, const fl_plan *plan) {
    static const int batches[] = {1, 8, 32};
    size_t nmat = fl_model_num_matrices(m);
    printf("\nplanned for batch %ld; at other batches the fastest evaluated configuration within budget would be:\n",
           a->batch);
    printf("  %5s %12s %7s %8s  %s\n", "batch", "pred us", "threads", "regime", "matrices");
    for (size_t k = 0; k < sizeof batches / sizeof batches[0]; k++) {
        size_t idx;
        fl_cost c;
        if (fl_plan_choice_at_batch(plan, batches[k], &idx, &c) != FL_OK) continue;
        char s[512];
        specs_str(fl_plan_point_at(plan, idx), nmat, s, sizeof s);
        printf("%c %5d %12.4g %7d %8s  %s\n", idx == fl_plan_chosen(plan) ? '*' : ' ', batches[k], c.seconds * 1e6,
               c.threads, c.regime == FL_REGIME_MEMORY ? "memory" : "compute", s);
    }
}

static void print_text(const plan_args *a, const fl_model *m, const fl_profile *prof, const fl_plan *plan) {
    const fl_arch *arch = fl_model_arch(m);
    size_t nmat = fl_model_num_matrices(m), np = fl_plan_num_points(plan);
    const fl_plan_point *dense = fl_plan_point_at(plan, 0), *ch = fl_plan_point_at(plan, fl_plan_chosen(plan));
    cli_profile_print(stdout, prof, a->explain);
    const fl_cost *dc = &dense->cost;
    printf("\nserving shape: batch %ld, sequence %ld, %d thread(s)%s; threads per layer:", a->batch, a->seq,
           fl_plan_threads(plan), a->threads == 0 ? " (planned)" : "");
    for (int l = 0; l < arch->layers; l++) printf(" %d", fl_plan_layer_threads(plan, l));
    printf("\n");
    if (arch->bidirectional) {
        const fl_bidir_sched bs = fl_model_planned_bidir_sched(fl_plan_model(plan));
        if (bs == FL_BIDIR_AUTO)
            printf("bidirectional schedule: parallel (not measured: no layer on 2 or more threads, or timing off)\n");
        else
            printf("bidirectional schedule: %s (measured faster than %s on 2 or more threads)\n", fl_bidir_sched_name(bs),
                   fl_bidir_sched_name(bs == FL_BIDIR_SERIAL ? FL_BIDIR_PARALLEL : FL_BIDIR_SERIAL));
    }
    const fl_step_sched ss = fl_model_planned_step_sched(fl_plan_model(plan));
    if (ss != FL_STEP_AUTO) /* none: no layer split with 2 rows per thread, or timing off (the fixed rule) */
        printf("step schedule: %s (measured faster than %s on 2 or more threads)\n", fl_step_sched_name(ss),
               fl_step_sched_name(ss == FL_STEP_ROWS ? FL_STEP_BLOCKS : FL_STEP_ROWS));
    const fl_cache_level *llc = &prof->level[prof->n_levels - 1];
    // how the regime's fit was decided (fl_cost_fit): on the measured curve of the dense cost's
    // thread count, else against the usable capacity (a private level counts once per thread)
    const int per_core = llc->shared_cpus <= 1 && dc->threads > 1 ? dc->threads : 1;
    fl_fit fit = {0};
    fl_cost_fit(prof, (double)dc->working_set, dc->threads, &fit);
    const bool mem = fl_plan_regime(plan) == FL_REGIME_MEMORY;
    printf("regime: %s (the largest layer's recurrent weights, %.3g MB, %s the last-level cache",
           mem ? "memory-bound: minimise parameters" : "compute-bound: minimise flops", dc->working_set / 1e6,
           mem ? "do not fit" : "fit");
    if (fit.by_curve)
        printf(": on the %s streaming curve %.3g MB, the weights and the quarter of the cache other data take, "
               "streams at %.1f GB/s, nearer %s %.1f GB/s than %s %.1f GB/s; the curve's knee",
               dc->threads > 1 ? "all-cores" : "one-thread", fit.curve_bytes / 1e6, fit.rate / 1e9,
               fit.fits ? "the cache's" : "DRAM's", (fit.fits ? fit.cache_rate : fit.dram_rate) / 1e9,
               fit.fits ? "DRAM's" : "the cache's", (fit.fits ? fit.dram_rate : fit.cache_rate) / 1e9);
    else
        printf(": %s 3/4 of its", fit.fits ? "within" : "beyond");
    printf(" %.3g MB", (double)llc->bytes * per_core / 1e6);
    if (per_core > 1) printf(" (%d threads, %.3g MB per core)", per_core, llc->bytes / 1e6);
    printf(", %s", prof->measured && prof->n_curve > 0 ? "measured" : "as reported");
    if (prof->measured && prof->n_curve > 0 && llc->reported_bytes && llc->reported_bytes != llc->bytes)
        printf("; reported %.3g MB", llc->reported_bytes / 1e6);
    printf(")\n");
    if (a->explain)
        printf("roofline of the dense step: %.3g MB streamed, %.3g MFLOP (%.2f flop/byte); memory %.3g us, "
               "compute %.3g us, recurrent weights from %s at %.1f GB/s\n",
               dc->step_bytes / 1e6, dc->step_flops / 1e6, dc->step_flops / dc->step_bytes, dc->mem_seconds * 1e6,
               dc->compute_seconds * 1e6, dc->level < 0 ? "DRAM" : "cache", dc->bandwidth / 1e9);
    if (a->explain) {
        const fl_tuning *t = fl_tuning_get();
        printf("tuning: recurrent blocks of %d units, input-projection panels of %d columns; threads from %zu KB "
               "of step weights (>= %d blocks, %d chunks per thread) and %.3g M projection MACs; own GEMM "
               "from K = %d; cache fit %.2f; steps by rows from %d rows a thread, SVD / CP W_hh up to %zu KB, "
               "dense up to %zu KB from %d rows a thread\n",
               t->rec_block, t->proj_panel, t->min_parallel_bytes / 1024, t->min_blocks_per_thread,
               t->chunks_per_thread, t->min_parallel_macs / 1e6, t->gemm_nt_min_k, t->cache_fit_fraction,
               t->rows_min_per_thread, t->rows_max_whh_bytes / 1024, t->rows_max_dense_bytes / 1024,
               t->rows_dense_min_per_thread);
    }
    printf("metric: %s; dense %.4g; budget: %s <= %g\n", metric_name(fl_plan_metric_kind(plan)), dense->metric,
           fl_plan_metric_kind(plan) == FL_METRIC_ACCURACY     ? "accuracy points lost"
           : fl_plan_metric_kind(plan) == FL_METRIC_PERPLEXITY ? "relative perplexity increase"
                                                               : "relative output deviation",
           fl_plan_budget(plan));
    printf("\n%-20s %-12s %-15s %10s  %s\n", "matrix", "shape", "choice", "params", "reason");
    for (size_t i = 0; i < nmat; i++) {
        fl_matrix_info info;
        fl_model_matrix_info(fl_plan_model(plan), i, &info);
        char shape[32], choice[48];
        snprintf(shape, sizeof shape, "%dx%d", info.rows, info.cols);
        fl_mat_spec sp = {info.method, info.rank};
        choice_str(&sp, info.precision, choice, sizeof choice);
        printf("%-20s %-12s %-15s %10zu  %s\n", info.name, shape, choice, info.params, fl_plan_reason(plan, i));
    }
    print_terms(a, fl_plan_model(plan), prof, plan);
    print_batches(a, m, plan);
    printf("\nlatency per step: predicted %.3g us (dense %.3g us)", ch->cost.seconds * 1e6, dc->seconds * 1e6);
    if (ch->measured_seconds >= 0 && dense->measured_seconds >= 0)
        printf("; measured %.3g us (dense %.3g us, %.2fx faster)", ch->measured_seconds * 1e6,
               dense->measured_seconds * 1e6, dense->measured_seconds / ch->measured_seconds);
    printf("\nparameters: %zu of %zu dense (%.1f%%)\n", ch->cost.params, dc->params,
           100.0 * ch->cost.params / dc->params);
    const fl_plan_certificate *cert = fl_plan_certificate_of(plan);
    printf("accuracy of the plan on the search data (%zu %s): %s %.4g (dense %.4g), loss %.4g <= budget %g\n",
           cert->search_count, fl_plan_metric_kind(plan) == FL_METRIC_PERPLEXITY ? "tokens" : "sequences",
           metric_name(fl_plan_metric_kind(plan)), ch->metric, dense->metric, ch->loss, fl_plan_budget(plan));
    if (cert->available) {
        printf("certified on %zu held-back %s the search never saw%s: %s %.4g (dense %.4g), paired loss %.4g "
               "(se %.3g), %g%% upper bound %.4g %s budget %g: %s\n",
               cert->count, fl_plan_metric_kind(plan) == FL_METRIC_PERPLEXITY ? "tokens" : "sequences",
               cert->finetuned ? " (nor the fine-tuning)" : "", metric_name(fl_plan_metric_kind(plan)),
               ch->cert_metric, cert->dense_metric, ch->cert_loss, ch->cert_se, 100 * cert->confidence,
               ch->cert_bound, ch->cert_bound <= fl_plan_budget(plan) ? "<=" : ">", fl_plan_budget(plan),
               cert->certified ? "CERTIFIED"
                               : "no compressed candidate certified: the plan keeps the input model");
        printf("candidates put to certification: %d\n", cert->tried);
    } else {
        printf("not certified (no held-back data: --certify-fraction 0, or the deviation metric)\n");
    }
    if (cert->finetuned)
        printf("fine-tuning (Adam, lr %g): search %.1f s (candidates judged after a short fine-tune), final "
               "fine-tune %.1f s (ratio of the whole to the final fine-tune: %.2f)\n",
               a->lr, cert->search_seconds, cert->finetune_seconds,
               cert->finetune_seconds > 0 ? (cert->search_seconds + cert->finetune_seconds) / cert->finetune_seconds
                                          : NAN);
    printf("\n%s (%zu configurations evaluated):\n", a->explain ? "candidates" : "Pareto front, latency vs loss", np);
    printf("  %12s %12s %10s %10s  %s\n", "pred us", "meas us", "params", "loss", "matrices");
    for (size_t i = 0; i < np; i++) {
        const fl_plan_point *pt = fl_plan_point_at(plan, i);
        if (!pt->pareto && !a->explain) continue;
        char s[512], meas[32] = "-";
        specs_str(pt, nmat, s, sizeof s);
        if (pt->measured_seconds >= 0) snprintf(meas, sizeof meas, "%.4g", pt->measured_seconds * 1e6);
        printf("%c %12.4g %12s %10zu %10.4g  %s%s%s\n", i == fl_plan_chosen(plan) ? '*' : ' ',
               pt->cost.seconds * 1e6, meas, pt->cost.params, pt->loss, s, pt->meets_budget ? "" : "  (over budget)",
               a->explain && pt->pareto ? "  [pareto]" : "");
    }
    (void)arch;
}

static cJSON *point_json(const fl_plan_point *pt, size_t nmat) {
    cJSON *o = cJSON_CreateObject(), *mats = cJSON_AddArrayToObject(o, "matrices");
    for (size_t i = 0; i < nmat; i++) {
        cJSON *s = cJSON_CreateObject();
        cJSON_AddStringToObject(s, "method", method_name(pt->specs[i].method));
        cJSON_AddNumberToObject(s, "rank", pt->specs[i].method == FL_METHOD_DENSE ? 0 : pt->specs[i].rank);
        cJSON_AddStringToObject(s, "precision", fl_precision_name(pt->precisions[i]));
        cJSON_AddItemToArray(mats, s);
    }
    cJSON_AddNumberToObject(o, "params", (double)pt->cost.params);
    cJSON_AddNumberToObject(o, "flops_per_step", pt->cost.step_flops);
    cJSON_AddNumberToObject(o, "predicted_us", pt->cost.seconds * 1e6);
    if (pt->measured_seconds >= 0) cJSON_AddNumberToObject(o, "measured_us", pt->measured_seconds * 1e6);
    else cJSON_AddNullToObject(o, "measured_us");
    cJSON_AddNumberToObject(o, "metric", pt->metric);
    cJSON_AddNumberToObject(o, "loss", pt->loss);
    cJSON_AddBoolToObject(o, "meets_budget", pt->meets_budget);
    if (pt->certified >= 0) {
        cJSON_AddNumberToObject(o, "certify_metric", pt->cert_metric);
        cJSON_AddNumberToObject(o, "certify_loss", pt->cert_loss);
        cJSON_AddNumberToObject(o, "certify_se", pt->cert_se);
        cJSON_AddNumberToObject(o, "certify_bound", pt->cert_bound);
        cJSON_AddBoolToObject(o, "certified", pt->certified);
    }
    cJSON_AddBoolToObject(o, "pareto", pt->pareto);
    return o;
}

static void print_json(const plan_args *a, const fl_model *m, const fl_profile *prof, const fl_plan *plan) {
    size_t nmat = fl_model_num_matrices(m), np = fl_plan_num_points(plan);
    const fl_plan_point *dense = fl_plan_point_at(plan, 0);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddItemToObject(root, "profile", cli_profile_json(prof));
    cJSON_AddNumberToObject(root, "batch", (double)a->batch);
    cJSON_AddNumberToObject(root, "seq", (double)a->seq);
    cJSON_AddNumberToObject(root, "threads", fl_plan_threads(plan));
    cJSON_AddBoolToObject(root, "threads_planned", a->threads == 0);
    cJSON *lt = cJSON_AddArrayToObject(root, "layer_threads");
    for (int l = 0; lt && l < fl_model_arch(m)->layers; l++)
        cJSON_AddItemToArray(lt, cJSON_CreateNumber(fl_plan_layer_threads(plan, l)));
    if (fl_model_arch(m)->bidirectional) /* "auto": not measured (parallel) */
        cJSON_AddStringToObject(root, "bidir_schedule", fl_bidir_sched_name(fl_model_planned_bidir_sched(fl_plan_model(plan))));
    /* "auto": none recorded (no layer split with 2 rows per thread, or timing off: the fixed rule) */
    cJSON_AddStringToObject(root, "step_schedule", fl_step_sched_name(fl_model_planned_step_sched(fl_plan_model(plan))));
    cJSON_AddStringToObject(root, "regime", fl_plan_regime(plan) == FL_REGIME_MEMORY ? "memory" : "compute");
    cJSON_AddNumberToObject(root, "last_level_bytes", (double)prof->level[prof->n_levels - 1].bytes);
    cJSON_AddNumberToObject(root, "last_level_reported_bytes", (double)prof->level[prof->n_levels - 1].reported_bytes);
    cJSON *byb = cJSON_AddArrayToObject(root, "by_batch");
    for (int b = 1; b <= 32; b *= b == 1 ? 8 : 4) {
        size_t idx;
        fl_cost c;
        if (fl_plan_choice_at_batch(plan, b, &idx, &c) != FL_OK) continue;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "batch", b);
        cJSON_AddNumberToObject(e, "candidate", (double)idx);
        cJSON_AddNumberToObject(e, "predicted_us", c.seconds * 1e6);
        cJSON_AddNumberToObject(e, "threads", c.threads);
        cJSON_AddStringToObject(e, "regime", c.regime == FL_REGIME_MEMORY ? "memory" : "compute");
        cJSON_AddItemToArray(byb, e);
    }
    cJSON_AddNumberToObject(root, "working_set_bytes", (double)dense->cost.working_set);
    static const char *names[] = {"deviation", "accuracy", "perplexity"};
    cJSON_AddStringToObject(root, "metric", names[fl_plan_metric_kind(plan)]);
    cJSON_AddNumberToObject(root, "budget", fl_plan_budget(plan));
    cJSON *chosen = point_json(fl_plan_point_at(plan, fl_plan_chosen(plan)), nmat);
    fl_cost_term *terms = chosen_terms(a, m, prof, plan);
    cJSON *mats = cJSON_GetObjectItem(chosen, "matrices"), *it;
    size_t i = 0;
    cJSON_ArrayForEach(it, mats) {
        fl_matrix_info info;
        fl_model_matrix_info(fl_plan_model(plan), i, &info);
        cJSON_AddStringToObject(it, "name", info.name);
        cJSON_AddNumberToObject(it, "rows", info.rows);
        cJSON_AddNumberToObject(it, "cols", info.cols);
        cJSON_AddNumberToObject(it, "rel_error", info.rel_error);
        cJSON_AddStringToObject(it, "reason", fl_plan_reason(plan, i));
        if (terms) {
            char lv[16];
            level_name(prof, terms[i].level, lv, sizeof lv);
            cJSON_AddStringToObject(it, "bytes_from", lv);
            cJSON_AddNumberToObject(it, "mem_us", terms[i].mem_seconds * 1e6);
            cJSON_AddNumberToObject(it, "compute_us", terms[i].compute_seconds * 1e6);
            cJSON_AddNumberToObject(it, "threads", terms[i].threads);
            cJSON_AddStringToObject(it, "dominant", terms[i].compute_bound ? "flops" : "bytes");
        }
        i++;
    }
    free(terms);
    cJSON_AddItemToObject(root, "chosen", chosen);
    const fl_plan_certificate *cert = fl_plan_certificate_of(plan);
    cJSON *cj = cJSON_AddObjectToObject(root, "certification");
    cJSON_AddBoolToObject(cj, "available", cert->available);
    cJSON_AddBoolToObject(cj, "certified", cert->certified);
    cJSON_AddNumberToObject(cj, "confidence", cert->confidence);
    cJSON_AddNumberToObject(cj, "count", (double)cert->count);
    cJSON_AddNumberToObject(cj, "search_count", (double)cert->search_count);
    cJSON_AddNumberToObject(cj, "dense_metric", cert->dense_metric);
    cJSON_AddNumberToObject(cj, "tried", cert->tried);
    cJSON_AddBoolToObject(cj, "finetuned", cert->finetuned);
    if (cert->finetuned) cJSON_AddNumberToObject(cj, "finetune_lr", a->lr);
    cJSON_AddNumberToObject(cj, "search_seconds", cert->search_seconds);
    cJSON_AddNumberToObject(cj, "finetune_seconds", cert->finetune_seconds);
    cJSON_AddItemToObject(root, "dense", point_json(dense, nmat));
    cJSON *pts = cJSON_AddArrayToObject(root, "candidates");
    for (size_t k = 0; k < np; k++) cJSON_AddItemToArray(pts, point_json(fl_plan_point_at(plan, k), nmat));
    char *s = cJSON_Print(root);
    printf("%s\n", s);
    free(s);
    cJSON_Delete(root);
}

int cli_plan_main(const char *cmd, int argc, char **argv, bool compress) {
    plan_args a;
    int rc = parse(cmd, argc, argv, compress, &a);
    if (rc >= 0) return rc;
    fl_model *m = NULL;
    fl_plan *plan = NULL;
    fl_npy x = {0}, lab = {0}, len = {0};
    fl_plan_data data;
    fl_dataset *dval = NULL, *dcert = NULL, *dtrain = NULL;
    fl_profile prof;
    fl_status st = fl_model_load(a.model, &m);
    if (st) return cli_fail_status(cmd, st);
    rc = CLI_ERR;
    if (a.cache_bytes > 0 && a.bandwidth > 0 && a.flops > 0) {
        st = fl_profile_detect(&prof); /* posing as another machine: nothing measured */
        if (st) {
            cli_fail_status(cmd, st);
            goto done;
        }
    } else if ((rc = cli_profile_get(cmd, a.profile, false, a.quiet, &prof))) {
        goto done;
    }
    rc = CLI_ERR;
    if ((st = fl_profile_override(&prof, a.cache_bytes, a.bandwidth * 1e9, a.cache_bw * 1e9, a.flops * 1e9))) {
        cli_fail_status(cmd, st);
        goto done;
    }
    /* neither a classifier nor a language model: judged by the deviation of its outputs */
    const fl_arch *ar = fl_model_arch(m);
    bool headless = !(ar->head == FL_HEAD_LAST_STEP || (ar->head == FL_HEAD_PER_STEP && ar->vocab > 0));
    if (headless && (a.cspec.path || a.finetune)) {
        rc = cli_fail(cmd, CLI_USAGE, "%s is neither a classifier nor a language model: nothing to certify or "
                      "fine-tune", a.model);
        goto done;
    }
    /* a classifier's .npy without labels: judged against the dense model's own predictions */
    bool raw = a.data && (headless || (ar->head == FL_HEAD_LAST_STEP && !a.labels &&
                                       fl_data_format_of(&a.dspec, 0) == FL_DATA_NPY));
    if (raw && (st = load_data(&a, fl_model_arch(m), &x, &lab, &len, &data))) {
        cli_fail_status(cmd, st);
        goto done;
    }
    if ((a.data && !raw && (st = fl_data_load(&a.dspec, m, &dval))) ||
        (a.cspec.path && (st = fl_data_load(&a.cspec, m, &dcert))) ||
        (a.finetune && (st = fl_data_load(&a.tspec, m, &dtrain)))) {
        cli_fail_status(cmd, st);
        goto done;
    }
    fl_plan_opts o = fl_plan_opts_default();
    o.batch = (int)a.batch;
    o.seq = (int)a.seq;
    o.threads = (int)a.threads;
    o.data = raw ? &data : NULL;
    o.dataset = dval;
    o.certify = dcert;
    o.certify_fraction = a.cert_fraction;
    o.confidence = a.confidence;
    fl_train_opts to = fl_train_opts_default();
    to.lr = (float)a.lr;
    to.batch = (int)a.ft_batch;
    if (a.finetune) {
        o.finetune = dtrain;
        o.train = &to;
        o.finetune_epochs = (int)a.ft_epochs;
        o.finetune_probe = a.probe;
    }
    if (a.have_max_loss) o.max_loss = a.max_loss;
    if (a.have_max_dev) o.max_dev = a.max_dev;
    o.allow_cp = !a.no_cp;
    o.precisions = a.precisions;
    o.max_evals = (int)a.max_evals;
    o.verify = a.no_measure ? 0 : 3;
    o.seed = (uint64_t)a.seed;
    if (!a.quiet) {
        o.progress = on_progress;
        o.progress_ctx = (void *)cmd;
    }
    if ((st = fl_plan_create(m, &prof, &o, &plan))) {
        cli_fail_status(cmd, st);
        goto done;
    }
    if (a.json) print_json(&a, m, &prof, plan);
    else print_text(&a, m, &prof, plan);
    if (compress) {
        if ((st = fl_model_save(fl_plan_model(plan), a.out))) {
            cli_fail_status(cmd, st);
            goto done;
        }
        if (!a.json) printf("\nwrote %s\n", a.out);
    }
    rc = CLI_OK;
done:
    fl_plan_free(plan);
    fl_npy_free(&x);
    fl_npy_free(&lab);
    fl_npy_free(&len);
    fl_dataset_free(dval);
    fl_dataset_free(dcert);
    fl_dataset_free(dtrain);
    fl_model_free(m);
    return rc;
}

int cmd_plan(int argc, char **argv) { return cli_plan_main("plan", argc, argv, false); }
