/* fastlstm eval: loss and accuracy (classifier) or perplexity (language model) of a model on a
 * data set. */
#include "cli.h"

#include "fastlstm/train.h"

#include <stdio.h>
#include <string.h>

static const char *CMD = "eval";

static void usage(FILE *f) {
    fprintf(f,
            "usage: fastlstm eval MODEL --data X.npy --labels Y.npy [--batch B] [--json]\n"
            "       fastlstm eval MODEL --labelled FILE [--batch B] [--json]\n"
            "       fastlstm eval MODEL --text corpus.txt | --data ids.npy [--batch B] [--bptt T] [--json]\n\n"
            "Evaluate a classifier on .npy sequences (N,T,D) float32 or (N,T) ids with labels (N), or on\n"
            "labelled text (label<TAB>text per line, the model's vocabulary and class names); or a\n"
            "language model on a UTF-8 corpus (its stored vocabulary) or on token ids (.npy, (N) or (N,T)\n"
            "read as one stream): mean cross-entropy loss and accuracy, or perplexity.\n\n"
            "data:\n"
            "  --data FILE [--labels Y.npy]   .npy by its name; other files: labelled text for a\n"
            "                                 classifier, a corpus for a language model\n"
            "  --text FILE, --labelled FILE   a text corpus / labelled text, whatever the name\n"
            "options:\n"
            "  --batch B    sequences per forward (classifier, default 256) or parallel streams (LM,\n"
            "               default 1: the whole corpus as one stream)\n"
            "  --bptt T     LM window; the state is carried across windows (default 35)\n"
            "  --json       print one JSON object\n"
            "  -h, --help\n");
}

int cmd_eval(int argc, char **argv) {
    const char *model = NULL, *v_batch = NULL, *v_bptt = NULL;
    fl_data_spec spec = {0};
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return CLI_OK;
        }
        if (!strcmp(a, "--json")) {
            json = true;
            continue;
        }
        if ((r = cli_take_data(CMD, argc, argv, &i, "data", &spec)) ||
            (r = cli_take(CMD, argc, argv, &i, "--batch", &v_batch)) ||
            (r = cli_take(CMD, argc, argv, &i, "--bptt", &v_bptt))) {
            if (r < 0) return CLI_USAGE;
            continue;
        }
        if (a[0] != '-' && !model) {
            model = a;
            continue;
        }
        return cli_fail(CMD, CLI_USAGE, "unknown option '%s' (see 'fastlstm eval --help')", a);
    }
    if (!model) return cli_fail(CMD, CLI_USAGE, "MODEL is required");
    if (!spec.path) return cli_fail(CMD, CLI_USAGE, "--data (or --text / --labelled) is required");
    const char *data = spec.path, *labels = spec.labels;
    long batch = 0, bptt = 35;
    if ((v_batch && !cli_parse_int(CMD, "--batch", v_batch, 1, 65536, &batch)) ||
        (v_bptt && !cli_parse_int(CMD, "--bptt", v_bptt, 1, 100000, &bptt)))
        return CLI_USAGE;
    fl_model *m;
    fl_status st = fl_model_load(model, &m);
    if (st) return cli_fail_status(CMD, st);
    const fl_arch *a = fl_model_arch(m);
    bool lm = a->head == FL_HEAD_PER_STEP;
    int rc = CLI_ERR;
    fl_dataset *d = NULL;
    if (a->head == FL_HEAD_NONE) {
        rc = cli_fail(CMD, CLI_ERR, "%s has no head: nothing to evaluate", model);
        goto done;
    }
    if (lm && labels) {
        rc = cli_fail(CMD, CLI_USAGE, "a language model takes no --labels");
        goto done;
    }
    if (!lm && fl_data_format_of(&spec, 0) == FL_DATA_NPY && !labels) {
        rc = cli_fail(CMD, CLI_USAGE, "--labels is required for a classifier's .npy data");
        goto done;
    }
    st = fl_data_load(&spec, m, &d);
    if (st) {
        rc = cli_fail_status(CMD, st);
        goto done;
    }
    fl_eval_result ev;
    if ((st = fl_model_evaluate(m, d, batch ? (int)batch : lm ? 1 : 256, (int)bptt, &ev))) {
        /* errors about the data's fit to the model say "evaluation data": name the file too */
        const char *e = fl_last_error();
        if (!strncmp(e, "evaluation data", 15))
            rc = cli_fail(CMD, CLI_ERR, "%s: %s (%s)", fl_status_str(st), e, data);
        else
            rc = cli_fail_status(CMD, st);
        goto done;
    }
    if (json) {
        if (lm)
            printf("{\"task\": \"lm\", \"loss\": %.6f, \"perplexity\": %.6f, \"accuracy\": %.6f, \"tokens\": %zu}\n",
                   ev.loss, ev.perplexity, ev.accuracy, ev.count);
        else
            printf("{\"task\": \"classify\", \"loss\": %.6f, \"accuracy\": %.6f, \"sequences\": %zu}\n", ev.loss,
                   ev.accuracy, ev.count);
    } else if (lm) {
        printf("loss %.4f  perplexity %.3f  next-token accuracy %.4f  (%zu tokens)\n", ev.loss, ev.perplexity,
               ev.accuracy, ev.count);
    } else {
        printf("loss %.4f  accuracy %.4f  (%zu sequences)\n", ev.loss, ev.accuracy, ev.count);
    }
    rc = CLI_OK;
done:
    fl_dataset_free(d);
    fl_model_free(m);
    return rc;
}
