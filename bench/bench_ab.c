/* Two builds of the library on the same sessions, in one process: each build's libfastlstm.so is
 * dlopen'd apart, and for each candidate (2 layers and seq 35 unless it says) the two builds' sessions run
 * alternately, the order flipped every repetition, so both meet the same moments of a shared VM (its
 * slow spells fall on both). Per candidate: each build's median microseconds a step, the median of the
 * per-repetition ratio B / A, each build's fastest, and whether the outputs differ (bit for bit).
 * Session 15 measured gemm_pk's row cap with it (docs/planner.md, "Session 15, the input
 * projection's output").
 *
 *   bench_ab LIB_A.so LIB_B.so REPS H:METHOD:DIV:BATCH:THREADS[:INPUT:LAYERS:SEQ] ...
 * METHOD d (dense, DIV 0), s (SVD) or c (CP), rank H / DIV; INPUT H, LAYERS 2, SEQ 35 unless given.
 * Example:
 *   bench_ab old/libfastlstm.so build/libfastlstm.so 41 1500:c:16:20:1 650:s:16:20:1 128:d:0:256:1:28:1:28 */
#include "fastlstm/fastlstm.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_REPS = 512 };

/* The library calls a session needs, from one build. */
typedef struct api {
    fl_status (*model_create)(const fl_arch *, const fl_mat_spec *, fl_model **);
    fl_status (*init_random)(fl_model *, uint64_t);
    fl_status (*session_create)(const fl_model *, const fl_session_opts *, fl_session **);
    fl_status (*session_run)(fl_session *, const fl_run_io *);
    size_t (*output_size)(const fl_model *, int, int);
    const char *(*last_error)(void);
    void (*session_free)(fl_session *);
    void (*model_free)(fl_model *);
} api;

static int load(const char *path, api *a) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "bench_ab: %s\n", dlerror());
        return 1;
    }
    a->model_create = (fl_status(*)(const fl_arch *, const fl_mat_spec *, fl_model **))dlsym(h, "fl_model_create");
    a->init_random = (fl_status(*)(fl_model *, uint64_t))dlsym(h, "fl_model_init_random");
    a->session_create =
        (fl_status(*)(const fl_model *, const fl_session_opts *, fl_session **))dlsym(h, "fl_session_create");
    a->session_run = (fl_status(*)(fl_session *, const fl_run_io *))dlsym(h, "fl_session_run");
    a->output_size = (size_t(*)(const fl_model *, int, int))dlsym(h, "fl_run_output_size");
    a->last_error = (const char *(*)(void))dlsym(h, "fl_last_error");
    a->session_free = (void (*)(fl_session *))dlsym(h, "fl_session_free");
    a->model_free = (void (*)(fl_model *))dlsym(h, "fl_model_free");
    if (!a->model_create || !a->init_random || !a->session_create || !a->session_run || !a->output_size ||
        !a->last_error || !a->session_free || !a->model_free) {
        fprintf(stderr, "bench_ab: %s lacks a fastlstm symbol\n", path);
        return 1;
    }
    return 0;
}

static double median(const double *v, int n, double *lo) {
    double s[MAX_REPS];
    memcpy(s, v, (size_t)n * sizeof *s);
    fl_sort_doubles(s, (size_t)n);
    *lo = s[0];
    return s[n / 2];
}

/* One candidate "H:METHOD:DIV:BATCH:THREADS[:INPUT:LAYERS:SEQ]" through both builds; 0 on success. */
static int run_candidate(const api L[2], const char *spec, int reps) {
    int H, div, B, threads, D = 0, layers = 2, seq = 35;
    char mc;
    const int got = sscanf(spec, "%d:%c:%d:%d:%d:%d:%d:%d", &H, &mc, &div, &B, &threads, &D, &layers, &seq);
    if ((got != 5 && got != 8) || H < 1 || B < 1 || threads < 1 || div < 0 || (mc != 'd' && mc != 's' && mc != 'c') ||
        (mc != 'd' && (div < 1 || H / div < 1)) || layers < 1 || layers > 8 || seq < 1 || (got == 8 && D < 1)) {
        fprintf(stderr, "bench_ab: bad candidate '%s' (H:METHOD:DIV:BATCH:THREADS[:INPUT:LAYERS:seq], METHOD d, s or "
                        "c, at most 8 layers)\n", spec);
        return 1;
    }
    if (got == 5) D = H;
    const fl_method method = mc == 'c' ? FL_METHOD_CP : mc == 's' ? FL_METHOD_SVD : FL_METHOD_DENSE;
    fl_arch arch = {.input = D, .hidden = H, .layers = layers, .head = FL_HEAD_NONE};
    fl_mat_spec specs[16];
    for (int i = 0; i < 2 * layers; i++) specs[i] = (fl_mat_spec){method, method == FL_METHOD_DENSE ? 0 : H / div};
    const size_t nx = (size_t)B * seq * D;
    float *x = malloc(nx * sizeof *x), *y[2] = {NULL, NULL};
    fl_model *m[2] = {NULL, NULL};
    fl_session *s[2] = {NULL, NULL};
    double t[2][MAX_REPS], r[MAX_REPS];
    int rc = !x;
    for (size_t i = 0; x && i < nx; i++) x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    for (int k = 0; k < 2 && !rc; k++) {
        const fl_session_opts so = {.max_batch = B, .max_seq = seq, .threads = threads};
        if (L[k].model_create(&arch, specs, &m[k]) || L[k].init_random(m[k], 1) ||
            L[k].session_create(m[k], &so, &s[k]) || !(y[k] = malloc(L[k].output_size(m[k], B, seq) * sizeof(float)))) {
            fprintf(stderr, "bench_ab: %s, build %c: %s\n", spec, 'A' + k, L[k].last_error());
            rc = 1;
        }
    }
    for (int i = -2; i < reps && !rc; i++) /* two warm-up repetitions */
        for (int j = 0; j < 2 && !rc; j++) {
            const int k = (i & 1) ? 1 - j : j;
            const fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = B, .seq = seq, .x = x, .y = y[k]};
            const double t0 = fl_now_seconds();
            if (L[k].session_run(s[k], &io)) {
                fprintf(stderr, "bench_ab: %s, build %c: %s\n", spec, 'A' + k, L[k].last_error());
                rc = 1;
            } else if (i >= 0) {
                t[k][i] = (fl_now_seconds() - t0) / seq * 1e6;
            }
        }
    if (!rc) {
        for (int i = 0; i < reps; i++) r[i] = t[1][i] / t[0][i];
        double loA, loB, lo;
        const double a = median(t[0], reps, &loA), b = median(t[1], reps, &loB), q = median(r, reps, &lo);
        const bool same = !memcmp(y[0], y[1], L[0].output_size(m[0], B, seq) * sizeof(float));
        printf("%d/%d/%d/%d %c h/%-2d B%-3d t%d  A %9.1f  B %9.1f us/step  B/A %.3f  (fastest A %.1f B %.1f)%s\n", D,
               H, layers, seq, mc, div, B, threads, a, b, q, loA, loB, same ? "" : "  OUTPUTS DIFFER");
        fflush(stdout);
    }
    for (int k = 0; k < 2; k++) {
        if (s[k]) L[k].session_free(s[k]);
        if (m[k]) L[k].model_free(m[k]);
        free(y[k]);
    }
    free(x);
    return rc;
}

int main(int argc, char **argv) {
    const int reps = argc >= 4 ? atoi(argv[3]) : 0;
    if (argc < 5 || reps < 1 || reps > MAX_REPS) {
        fprintf(stderr, "usage: bench_ab LIB_A.so LIB_B.so REPS(1..%d) H:METHOD:DIV:BATCH:THREADS[:INPUT:LAYERS:SEQ] ...\n"
                        "  METHOD d (dense, DIV 0), s (SVD) or c (CP), rank H / DIV; INPUT H, 2 layers, seq 35 unless given\n"
                        "  columns: input/hidden/layers/seq, each build's median us a step, the median per-run ratio B / A\n",
                MAX_REPS);
        return 2;
    }
    api L[2];
    if (load(argv[1], &L[0]) || load(argv[2], &L[1])) return 1;
    printf("A %s\nB %s\n", argv[1], argv[2]);
    int rc = 0;
    for (int i = 4; i < argc; i++) rc |= run_candidate(L, argv[i], reps);
    return rc;
}
