/* fastlstm init: create a model with PyTorch's default initialisation and save it. */
#include "cli.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

static const char *CMD = "init";

static void usage(FILE *f) {
    fprintf(f,
            "usage: fastlstm init --input D --hidden H --layers L [--vocab V] [--classes C | --lm]\n"
            "                     [--bidirectional] [--proj P] [--padding-idx I] [--seed S] -o MODEL\n\n"
            "Create an LSTM model with PyTorch's default random initialisation (dense weights) and\n"
            "write it as a safetensors file.\n\n"
            "options:\n"
            "  --input D      input feature size (embedding size when --vocab is given)\n"
            "  --hidden H     hidden size of every layer\n"
            "  --layers L     number of stacked LSTM layers\n"
            "  --vocab V      inputs are token ids in [0, V), through an embedding (V, D)\n"
            "  --classes C    add a last-step linear head with C outputs (sequence classifier)\n"
            "  --lm           add a per-step head with V outputs (language model; needs --vocab)\n"
            "  --bidirectional  every layer runs forward and reverse (nn.LSTM(bidirectional=True));\n"
            "                 outputs [forward, reverse] per step\n"
            "  --proj P       LSTMP: project each h_t to size P < H (nn.LSTM(proj_size=P))\n"
            "  --padding-idx I  token I is padding: its embedding row is zero (needs --vocab)\n"
            "  --seed S       seed of the deterministic initialisation (default 0)\n"
            "  -o, --output MODEL  file to write\n"
            "  -h, --help     show this help\n\n"
            "Without --classes or --lm the model has no head and outputs the top hidden states.\n\n"
            "example:\n"
            "  fastlstm init --vocab 256 --input 64 --hidden 256 --layers 2 --lm -o lm.safetensors\n");
}

int cmd_init(int argc, char **argv) {
    const char *v_input = NULL, *v_hidden = NULL, *v_layers = NULL, *v_vocab = NULL, *v_classes = NULL,
               *v_seed = NULL, *out = NULL, *v_proj = NULL, *v_pad = NULL;
    bool lm = false, bidir = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return CLI_OK;
        }
        if (!strcmp(a, "--lm")) {
            lm = true;
            continue;
        }
        if (!strcmp(a, "--bidirectional")) {
            bidir = true;
            continue;
        }
        if ((r = cli_take(CMD, argc, argv, &i, "--input", &v_input)) ||
            (r = cli_take(CMD, argc, argv, &i, "--hidden", &v_hidden)) ||
            (r = cli_take(CMD, argc, argv, &i, "--layers", &v_layers)) ||
            (r = cli_take(CMD, argc, argv, &i, "--vocab", &v_vocab)) ||
            (r = cli_take(CMD, argc, argv, &i, "--classes", &v_classes)) ||
            (r = cli_take(CMD, argc, argv, &i, "--seed", &v_seed)) ||
            (r = cli_take(CMD, argc, argv, &i, "--proj", &v_proj)) ||
            (r = cli_take(CMD, argc, argv, &i, "--padding-idx", &v_pad)) ||
            (r = cli_take(CMD, argc, argv, &i, "-o", &out)) ||
            (r = cli_take(CMD, argc, argv, &i, "--output", &out))) {
            if (r < 0) return CLI_USAGE;
            continue;
        }
        return cli_fail(CMD, CLI_USAGE, "unknown option '%s' (see 'fastlstm init --help')", a);
    }
    if (!v_input) return cli_fail(CMD, CLI_USAGE, "--input is required");
    if (!v_hidden) return cli_fail(CMD, CLI_USAGE, "--hidden is required");
    if (!v_layers) return cli_fail(CMD, CLI_USAGE, "--layers is required");
    if (!out) return cli_fail(CMD, CLI_USAGE, "-o MODEL is required");
    if (lm && v_classes) return cli_fail(CMD, CLI_USAGE, "--lm and --classes exclude each other");
    if (lm && !v_vocab) return cli_fail(CMD, CLI_USAGE, "--lm needs --vocab");

    if (v_pad && !v_vocab) return cli_fail(CMD, CLI_USAGE, "--padding-idx needs --vocab");
    long input, hidden, layers, vocab = 0, classes = 0, seed = 0, proj = 0, pad = 0;
    const long big = 1L << 24;
    if (!cli_parse_int(CMD, "--input", v_input, 1, big, &input) ||
        !cli_parse_int(CMD, "--hidden", v_hidden, 1, big, &hidden) ||
        !cli_parse_int(CMD, "--layers", v_layers, 1, 1024, &layers) ||
        (v_vocab && !cli_parse_int(CMD, "--vocab", v_vocab, 1, big, &vocab)) ||
        (v_classes && !cli_parse_int(CMD, "--classes", v_classes, 1, big, &classes)) ||
        (v_seed && !cli_parse_int(CMD, "--seed", v_seed, 0, LONG_MAX, &seed)) ||
        (v_proj && !cli_parse_int(CMD, "--proj", v_proj, 1, big, &proj)) ||
        (v_pad && !cli_parse_int(CMD, "--padding-idx", v_pad, 0, big, &pad)))
        return CLI_USAGE;
    if (proj >= hidden) return cli_fail(CMD, CLI_USAGE, "--proj %ld must be below --hidden %ld", proj, hidden);
    if (v_pad && pad >= vocab) return cli_fail(CMD, CLI_USAGE, "--padding-idx %ld must be below --vocab %ld", pad, vocab);

    fl_arch arch = {.vocab = (int)vocab, .input = (int)input, .hidden = (int)hidden, .layers = (int)layers,
                    .head = FL_HEAD_NONE, .head_out = 0, .bidirectional = bidir, .proj = (int)proj,
                    .has_padding = v_pad != NULL, .padding_idx = (int)pad};
    if (lm) {
        arch.head = FL_HEAD_PER_STEP;
        arch.head_out = (int)vocab;
    } else if (classes) {
        arch.head = FL_HEAD_LAST_STEP;
        arch.head_out = (int)classes;
    }
    fl_model *m = NULL;
    fl_status st = fl_model_create(&arch, NULL, &m);
    if (!st) st = fl_model_init_random(m, (uint64_t)seed);
    if (!st) st = fl_model_save(m, out);
    if (st) {
        fl_model_free(m);
        return cli_fail_status(CMD, st);
    }
    printf("wrote %s: %zu parameters, %zu flops per time step\n", out, fl_model_num_params(m),
           fl_model_flops_per_step(m));
    fl_model_free(m);
    return CLI_OK;
}
