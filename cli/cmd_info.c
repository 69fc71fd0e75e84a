/* fastlstm info: describe a model file (architecture, per-matrix storage, parameters, flops). */
#include "cli.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

static const char *CMD = "info";

static void usage(FILE *f) {
    fprintf(f,
            "usage: fastlstm info MODEL [--json]\n\n"
            "Describe a model: architecture, how each weight matrix is stored (dense, SVD or CP, with\n"
            "rank, parameters, flops per step, the relative error recorded at decomposition, and its\n"
            "precision: f32, bf16 or int8 with the bytes it takes), total parameters, bytes and flops per\n"
            "time step, and the worker threads planned for each layer (`fastlstm plan` / `compress`).\n\n"
            "options:\n"
            "  --json       print one JSON object instead of a table\n"
            "  -h, --help   show this help\n\n"
            "example:\n"
            "  fastlstm info lm.safetensors --json\n");
}

static int print_text(const char *path, const fl_model *m) {
    const fl_arch *a = fl_model_arch(m);
    size_t np = fl_model_num_params(m);
    printf("model:        %s\n", path);
    if (a->vocab > 0) printf("inputs:       token ids in [0, %d), embedding (%d, %d)\n", a->vocab, a->vocab, a->input);
    else printf("inputs:       features of size %d\n", a->input);
    const int out = a->proj > 0 ? a->proj : a->hidden, dirs = a->bidirectional ? 2 : 1;
    printf("lstm:         %d layer%s, hidden %d, %s", a->layers, a->layers == 1 ? "" : "s", a->hidden,
           a->bidirectional ? "bidirectional (forward + reverse per layer)" : "unidirectional");
    if (a->proj > 0) printf(", projection %d (LSTMP)", a->proj);
    printf("\n");
    for (int l = 0; l < a->layers; l++)
        printf("  layer %d:    input %d, %s, h size %d%s -> output %d per step\n", l,
               l == 0 ? a->input : dirs * out, a->bidirectional ? "forward + reverse" : "forward", out,
               a->proj > 0 ? " (projected from hidden)" : "", dirs * out);
    if (a->has_padding) printf("padding id:   %d (embedding row zero at init)\n", a->padding_idx);
    if (a->head == FL_HEAD_NONE) printf("head:         none (outputs top hidden states, %d)\n", dirs * out);
    else printf("head:         %s, %d outputs\n", fl_head_name(a->head), a->head_out);
    printf("\n%-26s %-4s %-4s %-6s %-13s %6s %12s %12s  %-9s %-5s %10s\n", "matrix", "kind", "dir", "method", "shape",
           "rank", "params", "flops/step", "rel_error", "prec", "bytes");
    size_t bytes = np * 4;
    size_t nmat = fl_model_num_matrices(m);
    for (size_t i = 0; i < nmat; i++) {
        fl_matrix_info mi;
        fl_status st = fl_model_matrix_info(m, i, &mi);
        if (st) return cli_fail_status(CMD, st);
        char shape[32], rank[16], rel[32];
        snprintf(shape, sizeof shape, "%dx%d", mi.rows, mi.cols);
        if (mi.method == FL_METHOD_DENSE) snprintf(rank, sizeof rank, "-");
        else snprintf(rank, sizeof rank, "%d", mi.rank);
        if (mi.rel_error < 0) snprintf(rel, sizeof rel, "unknown");
        else snprintf(rel, sizeof rel, "%.3g", mi.rel_error);
        const char *kind = mi.kind == FL_MAT_IH ? "ih" : mi.kind == FL_MAT_HH ? "hh" : mi.kind == FL_MAT_PROJ ? "hr" : "head";
        printf("%-26s %-4s %-4s %-6s %-13s %6s %12zu %12zu  %-9s %-5s %10zu\n", mi.name, kind,
               mi.layer < 0 ? "-" : mi.direction ? "rev" : "fwd", fl_method_name(mi.method), shape, rank, mi.params,
               mi.flops, rel, fl_precision_name(mi.precision), mi.bytes);
        bytes = bytes - 4 * mi.params + mi.bytes;
    }
    if (bytes == np * 4)
        printf("\nparameters:   %zu (%zu bytes, %.2f MiB as float32)\n", np, np * 4, (double)np * 4 / (1 << 20));
    else
        printf("\nparameters:   %zu (%zu bytes stored, %.2f MiB; %.2f MiB as float32)\n", np, bytes,
               (double)bytes / (1 << 20), (double)np * 4 / (1 << 20));
    printf("flops/step:   %zu per sequence\n", fl_model_flops_per_step(m));
    if (fl_model_planned_threads(m, -1) > 0) {
        printf("threads:      planned per layer:");
        for (int l = 0; l < a->layers; l++) printf(" %d", fl_model_planned_threads(m, l));
        printf(" (a session with threads 0 runs on them)\n");
    } else {
        printf("threads:      none planned\n");
    }
    if (a->bidirectional) {
        const fl_bidir_sched bs = fl_model_planned_bidir_sched(m);
        if (bs == FL_BIDIR_AUTO) printf("bidir sched:  none planned (parallel: one direction per half of the threads)\n");
        else printf("bidir sched:  %s (planned: the faster measured on 2 or more threads)\n", fl_bidir_sched_name(bs));
    }
    const fl_step_sched ss = fl_model_planned_step_sched(m);
    if (ss == FL_STEP_AUTO) printf("step sched:   none planned (rows or blocks by the fixed rule)\n");
    else printf("step sched:   %s (planned: the faster measured on 2 or more threads)\n", fl_step_sched_name(ss));
    if (fl_model_tokenizer(m)) printf("tokenizer:    yes (%zu bytes)\n", strlen(fl_model_tokenizer(m)));
    else printf("tokenizer:    none\n");
    return CLI_OK;
}

static int print_json(const char *path, const fl_model *m) {
    const fl_arch *a = fl_model_arch(m);
    size_t np = fl_model_num_params(m);
    cJSON *root = cJSON_CreateObject(), *arch = cJSON_AddObjectToObject(root, "arch");
    cJSON *mats = cJSON_AddArrayToObject(root, "matrices");
    bool ok = root && arch && mats && cJSON_AddStringToObject(root, "path", path) &&
              cJSON_AddNumberToObject(arch, "vocab", a->vocab) && cJSON_AddNumberToObject(arch, "input", a->input) &&
              cJSON_AddNumberToObject(arch, "hidden", a->hidden) &&
              cJSON_AddNumberToObject(arch, "layers", a->layers) &&
              cJSON_AddStringToObject(arch, "head", fl_head_name(a->head)) &&
              cJSON_AddNumberToObject(arch, "head_out", a->head_out) &&
              cJSON_AddBoolToObject(arch, "bidirectional", a->bidirectional != 0) &&
              cJSON_AddNumberToObject(arch, "proj", a->proj) &&
              (a->has_padding ? cJSON_AddNumberToObject(arch, "padding_idx", a->padding_idx) != NULL
                              : cJSON_AddNullToObject(arch, "padding_idx") != NULL);
    size_t nmat = fl_model_num_matrices(m), bytes = np * 4;
    for (size_t i = 0; ok && i < nmat; i++) {
        fl_matrix_info mi;
        fl_status st = fl_model_matrix_info(m, i, &mi);
        if (st) {
            cJSON_Delete(root);
            return cli_fail_status(CMD, st);
        }
        cJSON *o = cJSON_CreateObject();
        const char *kind = mi.kind == FL_MAT_IH ? "ih" : mi.kind == FL_MAT_HH ? "hh" : mi.kind == FL_MAT_PROJ ? "hr" : "head";
        ok = o && cJSON_AddItemToArray(mats, o) && cJSON_AddStringToObject(o, "name", mi.name) &&
             cJSON_AddStringToObject(o, "kind", kind) && cJSON_AddNumberToObject(o, "layer", mi.layer) &&
             cJSON_AddNumberToObject(o, "direction", mi.direction) &&
             cJSON_AddStringToObject(o, "method", fl_method_name(mi.method)) &&
             cJSON_AddNumberToObject(o, "rows", mi.rows) && cJSON_AddNumberToObject(o, "cols", mi.cols) &&
             cJSON_AddNumberToObject(o, "rank", mi.rank) && cJSON_AddNumberToObject(o, "params", (double)mi.params) &&
             cJSON_AddNumberToObject(o, "flops", (double)mi.flops) &&
             cJSON_AddStringToObject(o, "precision", fl_precision_name(mi.precision)) &&
             cJSON_AddNumberToObject(o, "bytes", (double)mi.bytes) &&
             (mi.rel_error < 0 ? cJSON_AddNullToObject(o, "rel_error") != NULL
                               : cJSON_AddNumberToObject(o, "rel_error", mi.rel_error) != NULL);
        bytes = bytes - 4 * mi.params + mi.bytes;
    }
    ok = ok && cJSON_AddNumberToObject(root, "params", (double)np) &&
         cJSON_AddNumberToObject(root, "bytes", (double)bytes) &&
         cJSON_AddNumberToObject(root, "flops_per_step", (double)fl_model_flops_per_step(m)) &&
         cJSON_AddBoolToObject(root, "tokenizer", fl_model_tokenizer(m) != NULL);
    if (ok && a->bidirectional) /* "auto": none planned (parallel) */
        ok = cJSON_AddStringToObject(root, "bidir_schedule", fl_bidir_sched_name(fl_model_planned_bidir_sched(m)));
    /* "auto": none planned (the fixed rule) */
    ok = ok && cJSON_AddStringToObject(root, "step_schedule", fl_step_sched_name(fl_model_planned_step_sched(m)));
    cJSON *lt = ok ? cJSON_AddArrayToObject(root, "planned_threads") : NULL; /* per layer; [] none */
    ok = lt != NULL;
    for (int l = 0; ok && l < a->layers && fl_model_planned_threads(m, -1) > 0; l++)
        ok = cJSON_AddItemToArray(lt, cJSON_CreateNumber(fl_model_planned_threads(m, l)));
    char *s = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!s) return cli_fail(CMD, CLI_ERR, "out of memory building JSON");
    printf("%s\n", s);
    cJSON_free(s);
    return CLI_OK;
}

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return CLI_OK;
        }
        if (!strcmp(a, "--json")) json = true;
        else if (cli_positional(CMD, a, &path)) return CLI_USAGE;
    }
    if (!path) return cli_fail(CMD, CLI_USAGE, "MODEL is required (see 'fastlstm info --help')");
    fl_model *m = NULL;
    fl_status st = fl_model_load(path, &m);
    if (st) return cli_fail_status(CMD, st);
    int rc = json ? print_json(path, m) : print_text(path, m);
    fl_model_free(m);
    return rc;
}
