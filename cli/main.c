/* fastlstm: command-line entry; dispatches to cli/cmd_<name>.c. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static int cmd_version(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: fastlstm version\n\nPrint the version of fastlstm and which OpenBLAS kernels it runs (OPENBLAS_CORETYPE:\n"
               "set by fastlstm where OpenBLAS on its own would fall back below this CPU).\n\nexample:\n  fastlstm version\n");
        return CLI_OK;
    }
    if (argc > 1) return cli_fail("version", CLI_USAGE, "unexpected argument '%s'", argv[1]);
    printf("fastlstm %s\n", fl_version());
    cli_blas_print(stdout);
    return CLI_OK;
}

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} command;

/* One entry per subcommand; add yours here. */
static const command commands[] = {
    {"demo", cmd_demo, "train (first run, cached) and compress a Fashion-MNIST classifier: accuracy and speedup"},
    {"version", cmd_version, "print the version"},
    {"init", cmd_init, "create a randomly initialised model file"},
    {"info", cmd_info, "describe a model file (architecture, matrices, params, flops)"},
    {"run", cmd_run, "run a model over sequences from .npy, write outputs as .npy"},
    {"bench", cmd_bench, "time inference on random inputs (latency, tokens/s)"},
    {"decompose", cmd_decompose, "replace LSTM weight matrices by SVD or CP factors"},
    {"profile", cmd_profile, "measure or show this machine's cache, bandwidth and flop profile"},
    {"plan", cmd_plan, "choose method and rank per matrix for this machine and an accuracy budget"},
    {"quantize", cmd_quantize, "store weight matrices in int8 or bf16"},
    {"compress", cmd_compress, "plan, then write the decomposed model"},
    {"train", cmd_train, "train a classifier or language model (BPTT; dense, SVD or CP)"},
    {"finetune", cmd_finetune, "continue training a saved (e.g. decomposed) model"},
    {"eval", cmd_eval, "loss and accuracy / perplexity of a model on a data set"},
    {"import", cmd_import, "convert an ONNX model (LSTM graphs from PyTorch and others) into a model file"},
    {"export", cmd_export, "write a model as ONNX (decomposed matrices as dense)"},
    {"serve", cmd_serve, "serve models over HTTP (dynamic batching, streams, metrics)"},
};

static void usage(FILE *f) {
    fprintf(f, "fastlstm %s — fast LSTM inference and training with low-rank weights\n\n"
               "usage: fastlstm <command> [options]   (fastlstm <command> --help for details)\n\ncommands:\n",
            fl_version());
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv) {
    cli_blas_core_start(argv);
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return CLI_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("fastlstm %s\n", fl_version());
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "fastlstm: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return CLI_USAGE;
}
