/* fastlstm quantize: store a model's weight matrices in int8 or bf16. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *CMD = "quantize";

static void usage(FILE *f) {
    fprintf(f,
            "usage: fastlstm quantize MODEL -o OUT --precision int8|bf16|f32 [--matrices LIST]\n\n"
            "Store weight matrices of MODEL in a lower precision and write OUT. int8: symmetric, one f32\n"
            "scale per output row (stored as an I8 tensor plus '<name>.scale'); inference quantizes the\n"
            "activations to u8 per row and step, sums in int32, and keeps gates and cell state in f32.\n"
            "bf16: bfloat16 weights (BF16 tensors), f32 activations and sums. f32 turns matrices back\n"
            "into float32 (with their dequantized values). Dense and SVD matrices take every precision;\n"
            "CP matrices stay f32 (skipped unless named). Biases and the embedding stay f32. The model\n"
            "file names format version 2 once a matrix is not f32. Prints each matrix's bytes before ->\n"
            "after.\n\n"
            "options:\n"
            "  -o, --output OUT    output model file (safetensors)\n"
            "  --precision P       int8, bf16 or f32\n"
            "  --matrices LIST     comma-separated kinds (ih, hh, head) or matrix names\n"
            "                      (lstm.weight_hh_l0, head.weight); default: every dense or SVD matrix\n"
            "  -h, --help          show this help\n\n"
            "examples:\n"
            "  fastlstm quantize lm.safetensors -o lm-int8.safetensors --precision int8\n"
            "  fastlstm quantize lm.safetensors -o lm-mix.safetensors --precision bf16 --matrices hh,head\n");
}

static bool parse_precision(const char *s, fl_precision *p) {
    if (!strcmp(s, "int8")) *p = FL_PRECISION_INT8;
    else if (!strcmp(s, "bf16")) *p = FL_PRECISION_BF16;
    else if (!strcmp(s, "f32")) *p = FL_PRECISION_F32;
    else return false;
    return true;
}

static const char *kind_name(fl_mat_kind k) {
    return k == FL_MAT_IH ? "ih" : k == FL_MAT_HH ? "hh" : k == FL_MAT_HEAD ? "head" : "hr";
}

/* Marks in sel[nmat] the matrices LIST names; false (after printing) for an item naming none. */
static bool select_matrices(const fl_model *m, const char *list, bool *sel) {
    size_t nmat = fl_model_num_matrices(m);
    char *buf = strdup(list), *save = NULL;
    if (!buf) return cli_fail(CMD, CLI_ERR, "out of memory"), false;
    bool ok = true;
    for (char *item = strtok_r(buf, ",", &save); ok && item; item = strtok_r(NULL, ",", &save)) {
        bool hit = false;
        for (size_t i = 0; i < nmat; i++) {
            fl_matrix_info mi;
            if (fl_model_matrix_info(m, i, &mi)) continue;
            if (!strcmp(item, kind_name(mi.kind)) || !strcmp(item, mi.name)) sel[i] = hit = true;
        }
        if (!hit) {
            cli_fail(CMD, CLI_USAGE, "--matrices: '%s' is neither ih, hh, head nor a matrix of this model", item);
            ok = false;
        }
    }
    free(buf);
    return ok;
}

int cmd_quantize(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *list = NULL, *v;
    fl_precision prec = FL_PRECISION_F32;
    bool have_prec = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int t;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return CLI_OK;
        }
        if ((t = cli_take(CMD, argc, argv, &i, "-o", &v)) || (t = cli_take(CMD, argc, argv, &i, "--output", &v))) {
            if (t < 0) return CLI_USAGE;
            out = v;
        } else if ((t = cli_take(CMD, argc, argv, &i, "--precision", &v))) {
            if (t < 0) return CLI_USAGE;
            if (!parse_precision(v, &prec)) return cli_fail(CMD, CLI_USAGE, "--precision expects int8, bf16 or f32, got '%s'", v);
            have_prec = true;
        } else if ((t = cli_take(CMD, argc, argv, &i, "--matrices", &v))) {
            if (t < 0) return CLI_USAGE;
            list = v;
        } else if ((t = cli_positional(CMD, a, &in))) {
            return t;
        }
    }
    if (!in) return cli_fail(CMD, CLI_USAGE, "MODEL is required (see 'fastlstm quantize --help')");
    if (!out) return cli_fail(CMD, CLI_USAGE, "-o OUT is required (see 'fastlstm quantize --help')");
    if (!have_prec) return cli_fail(CMD, CLI_USAGE, "--precision is required (int8, bf16 or f32)");

    fl_model *m = NULL, *q = NULL;
    fl_status st = fl_model_load(in, &m);
    if (st) return cli_fail_status(CMD, st);
    size_t nmat = fl_model_num_matrices(m);
    bool *sel = calloc(nmat, sizeof *sel);
    fl_precision *p = calloc(nmat, sizeof *p);
    int rc = CLI_OK;
    if (!sel || !p) rc = cli_fail(CMD, CLI_ERR, "out of memory");
    if (!rc && list && !select_matrices(m, list, sel)) rc = CLI_USAGE;
    for (size_t i = 0; !rc && i < nmat; i++) {
        fl_matrix_info mi;
        if ((st = fl_model_matrix_info(m, i, &mi))) {
            rc = cli_fail_status(CMD, st);
            break;
        }
        p[i] = mi.precision;
        if (list ? sel[i] : mi.method != FL_METHOD_CP) p[i] = prec;
    }
    if (!rc && (st = fl_model_quantize(m, p, &q))) rc = cli_fail_status(CMD, st);
    if (!rc && (st = fl_model_save(q, out))) rc = cli_fail_status(CMD, st);
    size_t before = 0, after = 0;
    for (size_t i = 0; !rc && i < nmat; i++) {
        fl_matrix_info a, b;
        if (fl_model_matrix_info(m, i, &a) || fl_model_matrix_info(q, i, &b)) continue;
        printf("%-28s %-5s -> %-5s %12zu -> %12zu bytes\n", a.name, fl_precision_name(a.precision),
               fl_precision_name(b.precision), a.bytes, b.bytes);
        before += a.bytes;
        after += b.bytes;
    }
    if (!rc) printf("weight matrices: %zu -> %zu bytes (%.2fx); wrote %s\n", before, after,
                    after ? (double)before / (double)after : 0.0, out);
    free(sel);
    free(p);
    fl_model_free(q);
    fl_model_free(m);
    return rc;
}
