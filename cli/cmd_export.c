/* fastlstm export: write a model as ONNX (decomposed matrices reconstructed as dense). */
#include "cli.h"
#include "fastlstm/onnx.h"

#include <stdio.h>
#include <string.h>

static const char *CMD = "export";

static void usage(FILE *f) {
    fprintf(f,
            "usage: fastlstm export MODEL -o MODEL.onnx\n\n"
            "Write the model as an ONNX graph (opset 14) so existing ONNX tooling can check it: input 'x'\n"
            "(B, T, D) float32 or (B, T) int64 token ids, batch-major; outputs 'y' (as `fastlstm run`\n"
            "writes them), 'hn' and 'cn' (L, B, H). SVD and CP matrices are multiplied out to dense\n"
            "weights: the graph computes what the decomposed model computes.\n\n"
            "options:\n"
            "  -o PATH      where to write the ONNX model\n"
            "  -h, --help   show this help\n\n"
            "example:\n"
            "  fastlstm export m64.safetensors -o m64.onnx\n");
}

int cmd_export(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *val;
        int r;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return CLI_OK;
        }
        if ((r = cli_take(CMD, argc, argv, &i, "-o", &val)) != 0) {
            if (r < 0) return CLI_USAGE;
            out = val;
        } else if ((r = cli_positional(CMD, argv[i], &in))) {
            return r;
        }
    }
    if (!in || !out) {
        usage(stderr);
        return CLI_USAGE;
    }
    fl_model *m;
    fl_status st = fl_model_load(in, &m);
    if (st) return cli_fail_status(CMD, st);
    st = fl_onnx_export(m, out);
    fl_model_free(m);
    if (st) return cli_fail_status(CMD, st);
    printf("wrote %s\n", out);
    return CLI_OK;
}
