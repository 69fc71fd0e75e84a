/* The data options every command shares (one data layer: fl_data_load in the library):
 *   --data FILE [--labels Y.npy] [--lengths L.npy]   .npy classification set (with each sequence's
 *                                  length: padded steps masked), .npy token ids, or text (by the task)
 *   --text FILE                    a text corpus (language model)
 *   --labelled FILE                labelled text, one label<TAB>text per line (classifier)
 * and the same with a prefix for the other roles: --train, --train-labels, --train-lengths,
 * --train-text, --train-labelled; --valid...; --certify-data, --certify-labels, --certify-text, ... */
#include "cli.h"
#include "fastlstm/train.h"

#include <stdio.h>
#include <string.h>

int cli_take_data(const char *cmd, int argc, char **argv, int *i, const char *role, fl_data_spec *spec) {
    char f_data[48], f_labels[48], f_lens[48], f_text[48], f_lab[48];
    bool plain = !strcmp(role, "data");
    snprintf(f_data, sizeof f_data, "--%s%s", role, !strcmp(role, "certify") ? "-data" : "");
    snprintf(f_labels, sizeof f_labels, plain ? "--labels" : "--%s-labels", role);
    snprintf(f_lens, sizeof f_lens, plain ? "--lengths" : "--%s-lengths", role);
    snprintf(f_text, sizeof f_text, plain ? "--text" : "--%s-text", role);
    snprintf(f_lab, sizeof f_lab, plain ? "--labelled" : "--%s-labelled", role);
    const char *v = NULL;
    int r;
    fl_data_format fmt = FL_DATA_AUTO;
    if ((r = cli_take(cmd, argc, argv, i, f_labels, &v))) {
        if (r > 0) spec->labels = v;
        return r;
    }
    if ((r = cli_take(cmd, argc, argv, i, f_lens, &v))) {
        if (r > 0) spec->lengths = v;
        return r;
    }
    if (!(r = cli_take(cmd, argc, argv, i, f_data, &v)) &&
        !(r = cli_take(cmd, argc, argv, i, f_text, &v)) && !(r = cli_take(cmd, argc, argv, i, f_lab, &v)))
        return 0;
    if (r < 0) return r;
    if (!strcmp(argv[*i - 1], f_text)) fmt = FL_DATA_TEXT;
    else if (!strcmp(argv[*i - 1], f_lab)) fmt = FL_DATA_LABELLED;
    if (spec->path) {
        cli_fail(cmd, CLI_USAGE, "%s: the %s data is already given (%s)", argv[*i - 1], role, spec->path);
        return -1;
    }
    spec->path = v;
    spec->format = fmt;
    return 1;
}

bool cli_parse_level(const char *cmd, const char *s, int *out) {
    if (!strcmp(s, "word")) *out = FL_TOKENS_WORD;
    else if (!strcmp(s, "char")) *out = FL_TOKENS_CHAR;
    else {
        cli_fail(cmd, CLI_USAGE, "--level expects word or char, got '%s'", s);
        return false;
    }
    return true;
}
