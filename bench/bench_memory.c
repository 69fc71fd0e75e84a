/* Peak resident memory of a model and its sessions (no timing): loads a model file, creates N
 * sessions on it (batch 1, all alive at once), runs each once on a sequence of T steps of zeros, frees
 * them and the model, then prints the model's weight bytes, the peak resident set (VmHWM) and its
 * ratio to the weights. The weights are packed once per model (src/core/packed.c): the peak should
 * stay near the weight bytes, each further session adding only its scratch.
 *
 * usage: bench_memory MODEL.safetensors [--sessions N] [--seq T] [--keep]
 * --keep holds the originals (fl_model_weights_hold) for comparison: the packed copy of W_hh then
 * sits beside them, as before packed.c kept one copy. */
#include "internal.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long v = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, strlen(key))) v = strtol(line + strlen(key), NULL, 10);
    fclose(f);
    return v;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.safetensors [--sessions N] [--seq T] [--keep]\n", argv[0]);
        return 2;
    }
    int n = 1, T = 8;
    bool keep = false;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--keep")) keep = true;
        else if (!strcmp(argv[i], "--sessions") && i + 1 < argc) n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seq") && i + 1 < argc) T = atoi(argv[++i]);
        else {
            fprintf(stderr, "unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (n < 1 || n > 64 || T < 1) {
        fprintf(stderr, "--sessions must be in [1, 64], --seq >= 1\n");
        return 2;
    }
    fl_model *m;
    if (fl_model_load(argv[1], &m)) {
        fprintf(stderr, "%s\n", fl_last_error());
        return 1;
    }
    if (keep) fl_model_weights_hold(m);
    const int in = fl_model_arch(m)->input;
    float *x = fl_calloc((size_t)T * in, sizeof(float)), *y = fl_malloc(fl_run_output_size(m, 1, T) * sizeof(float));
    fl_session **s = fl_calloc((size_t)n, sizeof *s);
    fl_session_opts o = fl_session_opts_default();
    o.max_batch = 1;
    o.max_seq = T;
    int rc = !x || !y || !s;
    for (int i = 0; !rc && i < n; i++) {
        fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = 1, .seq = T, .x = x, .y = y};
        rc = fl_session_create(m, &o, &s[i]) || fl_session_run(s[i], &io);
    }
    if (rc) fprintf(stderr, "%s\n", fl_last_error());
    for (int i = 0; s && i < n; i++) fl_session_free(s[i]);
    const double bytes = (double)m->n_params * sizeof(float);
    if (keep) fl_model_weights_unhold(m);
    fl_model_free(m);
    fl_free(s);
    fl_free(x);
    fl_free(y);
    if (rc) return 1;
    const double peak = (double)status_kb("VmHWM:") * 1024.0;
    printf("sessions %d  weights %.1f MB  peak RSS %.1f MB  ratio %.3f%s\n", n, bytes / 1e6, peak / 1e6,
           peak / bytes, keep ? "  (originals kept)" : "");
    return 0;
}
