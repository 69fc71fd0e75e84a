/* fastlstm import: convert an ONNX model (the LSTM graphs real exporters write) into a model file. */
#include "cli.h"
#include "fastlstm/onnx.h"

#include <stdio.h>
#include <string.h>

static const char *CMD = "import";

#define MAX_FEEDS 16

static void usage(FILE *f) {
    fprintf(f,
            "usage: fastlstm import MODEL.onnx -o MODEL.safetensors [--feed NAME=TENSOR.pb ...]\n\n"
            "Convert an ONNX model into a fastlstm model: LSTM nodes (forward or bidirectional, layout 0\n"
            "or 1, initial states, sequence_lens, default activations; peepholes, clip and input_forget on\n"
            "forward layers), with an nn.Embedding (Gather) in front and an nn.Linear (MatMul + Add or\n"
            "Gemm) behind, and the Transpose / Squeeze / Reshape / Concat / Slice / Shape / Cast plumbing\n"
            "torch.onnx.export writes around them (with pack_padded_sequence's TopK / ScatterElements sort\n"
            "and unsort). Anything else is refused with the node and operator named: nothing is\n"
            "converted into a different function. Prints how to run the result: the\n"
            "layout of the graph's input (run with --time-major if it is time-major) and which graph\n"
            "inputs and outputs are the initial and final states and the lengths (run with --lengths).\n\n"
            "options:\n"
            "  -o PATH                where to write the model (safetensors)\n"
            "  --feed NAME=FILE.pb    bind graph input NAME to a constant float32 TensorProto file (weights\n"
            "                         a graph takes as inputs, as ONNX's node tests do); repeatable\n"
            "  -h, --help             show this help\n\n"
            "example:\n"
            "  fastlstm import lm.onnx -o lm.safetensors\n");
}

static void print_info(const fl_model *m, const fl_onnx_info *in, const char *out) {
    const fl_arch *a = fl_model_arch(m);
    printf("imported:   opset %lld, %d %sLSTM layer%s, hidden %d, %s %d%s\n", (long long)in->opset, a->layers,
           a->bidirectional ? "bidirectional " : "", a->layers == 1 ? "" : "s", a->hidden,
           a->vocab ? "embedding" : "features", a->input,
           a->head == FL_HEAD_NONE ? "" : a->head == FL_HEAD_PER_STEP ? ", per-step head" : ", last-step head");
    printf("input:      '%s', %s%s\n", in->input, in->tokens ? "token ids, " : "",
           in->layout == FL_TIME_MAJOR ? "time-major (run with --time-major)" : "batch-major");
    if (in->lengths[0]) printf("lengths:    '%s' (--lengths: outputs past a length are zero)\n", in->lengths);
    if (in->h0[0] || in->c0[0]) printf("states in:  h0 '%s', c0 '%s' (--h0, --c0)\n", in->h0, in->c0);
    if (in->y[0]) printf("output:     '%s'\n", in->y);
    if (in->hn[0] || in->cn[0]) printf("states out: h_n '%s', c_n '%s' (--state-out)\n", in->hn, in->cn);
    printf("wrote:      %s\n", out);
}

int cmd_import(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    const char *feed_arg[MAX_FEEDS];
    int n_feeds = 0;
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
        } else if ((r = cli_take(CMD, argc, argv, &i, "--feed", &val)) != 0) {
            if (r < 0) return CLI_USAGE;
            if (n_feeds == MAX_FEEDS) return cli_fail(CMD, CLI_USAGE, "at most %d --feed", MAX_FEEDS);
            if (!strchr(val, '=') || val[0] == '=') return cli_fail(CMD, CLI_USAGE, "--feed expects NAME=FILE.pb, got '%s'", val);
            feed_arg[n_feeds++] = val;
        } else if ((r = cli_positional(CMD, argv[i], &in))) {
            return r;
        }
    }
    if (!in || !out) {
        usage(stderr);
        return CLI_USAGE;
    }
    fl_onnx_tensor *t[MAX_FEEDS] = {0};
    fl_onnx_feed feeds[MAX_FEEDS];
    char names[MAX_FEEDS][FL_ONNX_NAME_MAX];
    int rc = CLI_OK;
    fl_status st = FL_OK;
    for (int k = 0; k < n_feeds && !st; k++) {
        const char *eq = strchr(feed_arg[k], '=');
        snprintf(names[k], sizeof names[k], "%.*s", (int)(eq - feed_arg[k]), feed_arg[k]);
        st = fl_onnx_tensor_load(eq + 1, &t[k]);
        if (!st && !t[k]->f) {
            rc = cli_fail(CMD, CLI_ERR, "%s: --feed takes float32 tensors", eq + 1);
            break;
        }
        if (!st) feeds[k] = (fl_onnx_feed){names[k], t[k]->ndim, t[k]->shape, t[k]->f};
    }
    fl_model *m = NULL;
    fl_onnx_info info;
    if (!st && rc == CLI_OK) st = fl_onnx_import_file(in, feeds, (size_t)n_feeds, &m, &info);
    if (!st && rc == CLI_OK) st = fl_model_save(m, out);
    if (st) rc = cli_fail_status(CMD, st);
    else if (rc == CLI_OK) print_info(m, &info, out);
    fl_model_free(m);
    for (int k = 0; k < n_feeds; k++) fl_onnx_tensor_free(t[k]);
    return rc;
}
