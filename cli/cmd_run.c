/* fastlstm run: run a model over whole sequences read from .npy, write the outputs as .npy. */
#include "cli.h"
#include "fastlstm/io.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *CMD = "run";

static void usage(FILE *f) {
    fprintf(f,
            "usage: fastlstm run MODEL --input X.npy --output Y.npy [--h0 H.npy --c0 C.npy]\n"
            "                    [--lengths L.npy] [--state-out PREFIX] [--time-major] [--threads N]\n\n"
            "Run whole sequences through the model.\n\n"
            "inputs (batch-major by default, like PyTorch batch_first=True):\n"
            "  feature models: X float32 (B, T, D)     token models: X int32/int64 ids (B, T)\n"
            "outputs:\n"
            "  no head: (B, T, dirs*out)   per-step head: (B, T, V)   last-step head: (B, C)\n"
            "  states (--state-out): PREFIX.h.npy (L*dirs, B, out) and PREFIX.c.npy (L*dirs, B, H), float32,\n"
            "  like PyTorch's h_n, c_n (dirs 2 for a bidirectional model; out = projection size or H)\n\n"
            "options:\n"
            "  --input X.npy       input sequences\n"
            "  --output Y.npy      where to write the outputs (float32)\n"
            "  --h0 H.npy          initial hidden state (L*dirs, B, out), float32 (default zeros)\n"
            "  --c0 C.npy          initial cell state (L*dirs, B, H), float32 (default zeros)\n"
            "  --lengths L.npy     valid length of each sequence, int32/int64 (B), each in [1, T]\n"
            "                      (pack_padded_sequence: outputs past a length are zero, states and a\n"
            "                      last-step head are taken at each sequence's last valid step)\n"
            "  --state-out PREFIX  also write the final states to PREFIX.h.npy and PREFIX.c.npy\n"
            "  --time-major        X is (T, B, ...) and Y (T, B, ...) (the last-step output stays (B, C))\n"
            "  --threads N         worker threads (default 1)\n"
            "  -h, --help          show this help\n\n"
            "example:\n"
            "  fastlstm run lm.safetensors --input ids.npy --output logits.npy --state-out final\n");
}

/* Loads an initial state file and checks it is float32 (L*dirs, B, n): n = out for h, hidden for c. */
static fl_status load_state(const char *path, const fl_arch *a, int B, bool cell, fl_npy *s) {
    fl_status st = fl_npy_load(path, s);
    if (st) return st;
    if (s->dtype != 'f') return fl_set_error(FL_ERR_DTYPE, "%s: initial state must be float32", path);
    const int rows = a->layers * (a->bidirectional ? 2 : 1);
    const size_t n = (size_t)(cell || a->proj == 0 ? a->hidden : a->proj);
    if (s->ndim != 3 || s->shape[0] != rows || s->shape[1] != B || s->shape[2] != (int64_t)n)
        return fl_set_error(FL_ERR_SHAPE, "%s: initial state must have shape (%d, %d, %zu) = (layers%s, batch, %s)", path,
                       rows, B, n, a->bidirectional ? " x 2 directions" : "",
                       cell ? "hidden" : a->proj ? "projection" : "hidden");
    // Checked here (fl_session_run checks again) so the error names this file.
    const float *p = s->data;
    for (size_t i = 0; i < s->count; i++)
        if (!isfinite(p[i]))
            return fl_set_error(FL_ERR_NONFINITE, "%s: [layer %zu, batch %zu, unit %zu] is not finite (%g)", path,
                           i / ((size_t)B * n), i / n % B, i % n, (double)p[i]);
    return FL_OK;
}

/* Loads the lengths file: int32 or int64 (B), each in [1, T]; converted to int32 in place. */
static fl_status load_lengths(const char *path, int B, int T, fl_npy *l) {
    fl_status st = fl_npy_load(path, l);
    if (st) return st;
    if (l->dtype == 'f') return fl_set_error(FL_ERR_DTYPE, "%s: lengths must be int32 or int64, got float32", path);
    if (l->ndim != 1 || l->shape[0] != B)
        return fl_set_error(FL_ERR_SHAPE, "%s: lengths must be 1-D with one length per sequence (%d), got %zu values%s", path,
                       B, l->count, l->ndim != 1 ? " in more than one dimension" : "");
    if ((st = fl_npy_ids_to_i32(l, (int64_t)T + 1, path)) && st != FL_ERR_DATA) return st;
    if (st) { /* copied first: fl_set_error writes the buffer fl_last_error() returns */
        char detail[512];
        snprintf(detail, sizeof detail, "%s", fl_last_error());
        return fl_set_error(FL_ERR_ARG, "%s: lengths must lie in [1, %d] (the sequence length): %s", path, T, detail);
    }
    const int32_t *v = l->data;
    for (int b = 0; b < B; b++)
        if (v[b] < 1) return fl_set_error(FL_ERR_ARG, "%s: length %d of sequence %d is outside [1, %d]", path, (int)v[b], b, T);
    return FL_OK;
}

/* Prefix the library's error detail with the input file (copied first: fl_set_error writes that buffer). */
static fl_status name_input(fl_status st, const char *path) {
    char detail[768];
    snprintf(detail, sizeof detail, "%s", fl_last_error());
    return fl_set_error(st, "%s: %s", path, detail);
}

/* Checks the input against the model; sets B and T. Token ids are converted to int32 in place. */
static fl_status check_input(const char *path, const fl_arch *a, bool tm, fl_npy *x, int *B, int *T) {
    const char *order = tm ? "(T, B" : "(B, T";
    if (a->vocab > 0) {
        if (x->dtype == 'f')
            return fl_set_error(FL_ERR_DTYPE, "%s: the model takes token ids: need int32 or int64 %s), got float32", path,
                           order);
        if (x->ndim != 2)
            return fl_set_error(FL_ERR_SHAPE, "%s: token ids must be 2-D %s), got %d dimensions", path, order, x->ndim);
    } else {
        if (x->dtype != 'f')
            return fl_set_error(FL_ERR_DTYPE, "%s: the model takes float32 features %s, %d), got integers", path, order,
                           a->input);
        if (x->ndim != 3 || x->shape[2] != a->input)
            return fl_set_error(FL_ERR_SHAPE, "%s: features must have shape %s, %d) for this model", path, order,
                           a->input);
    }
    int64_t b = tm ? x->shape[1] : x->shape[0], t = tm ? x->shape[0] : x->shape[1];
    if (b < 1 || t < 1) return fl_set_error(FL_ERR_SHAPE, "%s: batch and sequence length must be >= 1", path);
    if (b > INT_MAX || t > INT_MAX || b * t > INT_MAX)
        return fl_set_error(FL_ERR_SHAPE, "%s: %" PRId64 " x %" PRId64 " sequences x steps is too large", path, b, t);
    *B = (int)b;
    *T = (int)t;
    if (a->vocab > 0) return fl_npy_ids_to_i32(x, a->vocab, path);
    return FL_OK;
}

static int run(const char *model, const char *in, const char *out, const char *h0p, const char *c0p,
               const char *lenp, const char *prefix, bool tm, int threads) {
    fl_model *m = NULL;
    fl_session *s = NULL;
    fl_npy x = {0}, h0 = {0}, c0 = {0}, len = {0};
    float *y = NULL, *hn = NULL, *cn = NULL;
    char *path = NULL;
    int B = 0, T = 0;
    fl_status st = fl_model_load(model, &m);
    const fl_arch *a = m ? fl_model_arch(m) : NULL;
    if (!st) st = fl_npy_load(in, &x);
    if (!st) st = check_input(in, a, tm, &x, &B, &T);
    if (!st && h0p) st = load_state(h0p, a, B, false, &h0);
    if (!st && c0p) st = load_state(c0p, a, B, true, &c0);
    if (!st && lenp) st = load_lengths(lenp, B, T, &len);
    size_t ny = st ? 0 : fl_run_output_size(m, B, T), nh = st ? 0 : fl_run_state_size(m, B, 0),
           nc = st ? 0 : fl_run_state_size(m, B, 1);
    if (!st && ny == 0) st = fl_set_error(FL_ERR_SHAPE, "%s: output of %d x %d is too large", in, B, T);
    if (!st && !(y = malloc(ny * sizeof *y))) st = fl_set_error(FL_ERR_NOMEM, "out of memory for the output");
    if (!st && prefix && (!(hn = malloc(nh * sizeof *hn)) || !(cn = malloc(nc * sizeof *cn))))
        st = fl_set_error(FL_ERR_NOMEM, "out of memory for the states");
    if (!st) {
        fl_session_opts o = fl_session_opts_default();
        o.max_batch = B;
        o.max_seq = T;
        o.threads = threads;
        st = fl_session_create(m, &o, &s);
    }
    if (!st) {
        fl_run_io io = {.layout = tm ? FL_TIME_MAJOR : FL_BATCH_MAJOR, .batch = B, .seq = T,
                        .x = a->vocab > 0 ? NULL : x.data, .tokens = a->vocab > 0 ? x.data : NULL,
                        .h0 = h0.data, .c0 = c0.data, .y = y, .hn = hn, .cn = cn, .lengths = len.data};
        st = fl_session_run(s, &io);
        // The states were checked by load_state, so a finiteness error here is about X.
        if (st == FL_ERR_NONFINITE) st = name_input(st, in);
    }
    if (!st) {
        int64_t shape[3];
        int nd;
        if (a->head == FL_HEAD_LAST_STEP) {
            nd = 2;
            shape[0] = B;
            shape[1] = a->head_out;
        } else {
            nd = 3;
            shape[0] = tm ? T : B;
            shape[1] = tm ? B : T;
            shape[2] = a->head == FL_HEAD_NONE ? (int64_t)(ny / ((size_t)B * T)) : a->head_out;
        }
        st = fl_npy_save_f32(out, y, nd, shape);
        if (!st && nd == 2) printf("wrote %s: float32 (%" PRId64 ", %" PRId64 ")\n", out, shape[0], shape[1]);
        if (!st && nd == 3)
            printf("wrote %s: float32 (%" PRId64 ", %" PRId64 ", %" PRId64 ")\n", out, shape[0], shape[1], shape[2]);
    }
    if (!st && prefix) {
        int64_t shape[3] = {a->layers * (a->bidirectional ? 2 : 1), B, a->proj > 0 ? a->proj : a->hidden};
        size_t n = strlen(prefix) + 8;
        if (!(path = malloc(n))) st = fl_set_error(FL_ERR_NOMEM, "out of memory");
        if (!st) {
            snprintf(path, n, "%s.h.npy", prefix);
            st = fl_npy_save_f32(path, hn, 3, shape);
        }
        if (!st) {
            snprintf(path, n, "%s.c.npy", prefix);
            printf("wrote %s.h.npy: float32 (%" PRId64 ", %d, %" PRId64 ")\n", prefix, shape[0], B, shape[2]);
            shape[2] = a->hidden;
            st = fl_npy_save_f32(path, cn, 3, shape);
        }
        if (!st) printf("wrote %s.c.npy: float32 (%" PRId64 ", %d, %d)\n", prefix, shape[0], B, a->hidden);
    }
    int rc = st ? cli_fail_status(CMD, st) : CLI_OK;
    free(path);
    free(y);
    free(hn);
    free(cn);
    fl_npy_free(&x);
    fl_npy_free(&h0);
    fl_npy_free(&c0);
    fl_npy_free(&len);
    fl_session_free(s);
    fl_model_free(m);
    return rc;
}

int cmd_run(int argc, char **argv) {
    const char *model = NULL, *in = NULL, *out = NULL, *h0 = NULL, *c0 = NULL, *prefix = NULL, *v_threads = NULL,
               *lengths = NULL;
    bool tm = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return CLI_OK;
        }
        if (!strcmp(a, "--time-major")) {
            tm = true;
            continue;
        }
        if ((r = cli_take(CMD, argc, argv, &i, "--input", &in)) ||
            (r = cli_take(CMD, argc, argv, &i, "--output", &out)) ||
            (r = cli_take(CMD, argc, argv, &i, "-o", &out)) ||
            (r = cli_take(CMD, argc, argv, &i, "--h0", &h0)) ||
            (r = cli_take(CMD, argc, argv, &i, "--c0", &c0)) ||
            (r = cli_take(CMD, argc, argv, &i, "--lengths", &lengths)) ||
            (r = cli_take(CMD, argc, argv, &i, "--state-out", &prefix)) ||
            (r = cli_take(CMD, argc, argv, &i, "--threads", &v_threads))) {
            if (r < 0) return CLI_USAGE;
            continue;
        }
        if ((r = cli_positional(CMD, a, &model))) return r;
    }
    if (!model) return cli_fail(CMD, CLI_USAGE, "MODEL is required (see 'fastlstm run --help')");
    if (!in) return cli_fail(CMD, CLI_USAGE, "--input is required");
    if (!out) return cli_fail(CMD, CLI_USAGE, "--output is required");
    long threads = 1;
    if (v_threads && !cli_parse_int(CMD, "--threads", v_threads, 1, 1024, &threads)) return CLI_USAGE;
    return run(model, in, out, h0, c0, lengths, prefix, tm, (int)threads);
}
