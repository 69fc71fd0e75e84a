/* Machine profile: cache topology from /sys, SIMD width, and measured flop and streaming rates;
 * saved as JSON so the planner does not measure on every run. */
#include "atomic_file.h"
#include "internal.h"
#include "fastlstm/plan.h"
#include "recurrent.h"
#include "kernels/kernels.h"
#include "plan_internal.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ detection */

/* Read the first line of a small text file into buf; false if absent. */
static bool read_line(const char *path, char *buf, size_t n) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    bool ok = fgets(buf, (int)n, f) != NULL;
    fclose(f);
    if (ok) buf[strcspn(buf, "\r\n")] = 0;
    return ok;
}

/* "48K", "1024K", "32M", "512" -> bytes; 0 when malformed. */
static size_t parse_size(const char *s) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s) return 0;
    if (*end == 'K' || *end == 'k') v <<= 10;
    else if (*end == 'M' || *end == 'm') v <<= 20;
    else if (*end == 'G' || *end == 'g') v <<= 30;
    return (size_t)v;
}

/* "0-1,4,6-7" -> number of CPUs listed; 0 when malformed. */
static int count_cpu_list(const char *s) {
    int count = 0;
    while (*s) {
        char *end;
        long a = strtol(s, &end, 10);
        if (end == s) return 0;
        long b = a;
        s = end;
        if (*s == '-') {
            b = strtol(s + 1, &end, 10);
            if (end == s + 1 || b < a) return 0;
            s = end;
        }
        count += (int)(b - a + 1);
        if (*s == ',') s++;
        else if (*s) return 0;
    }
    return count;
}

static void add_level(fl_profile *p, int level, size_t bytes, int shared) {
    if (bytes == 0 || p->n_levels >= FL_PROFILE_MAX_LEVELS) return;
    for (int i = 0; i < p->n_levels; i++)
        if (p->level[i].level == level) return; /* one entry per level (data, not instruction) */
    p->level[p->n_levels++] = (fl_cache_level){level, bytes, shared > 0 ? shared : 1, 0.0};
}

static int cmp_level(const void *a, const void *b) {
    const fl_cache_level *x = a, *y = b;
    return (x->level > y->level) - (x->level < y->level);
}

static void detect_sysfs(fl_profile *p) {
    char path[128], buf[256];
    for (int idx = 0; idx < 16; idx++) {
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", idx);
        if (!read_line(path, buf, sizeof buf)) continue;
        int level = atoi(buf);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/type", idx);
        if (!read_line(path, buf, sizeof buf) || !strcmp(buf, "Instruction")) continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", idx);
        if (!read_line(path, buf, sizeof buf)) continue;
        size_t bytes = parse_size(buf);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/shared_cpu_list", idx);
        int shared = read_line(path, buf, sizeof buf) ? count_cpu_list(buf) : 1;
        if (level >= 1) add_level(p, level, bytes, shared);
    }
}

static void detect_sysconf(fl_profile *p) {
#ifdef _SC_LEVEL1_DCACHE_SIZE
    long l1 = sysconf(_SC_LEVEL1_DCACHE_SIZE), l2 = sysconf(_SC_LEVEL2_CACHE_SIZE),
         l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (l1 > 0) add_level(p, 1, (size_t)l1, 1);
    if (l2 > 0) add_level(p, 2, (size_t)l2, 1);
    if (l3 > 0) add_level(p, 3, (size_t)l3, p->cores);
#else
    (void)p;
#endif
}

/* Defaults when the rates are not measured: a modest desktop core. */
static void default_rates(fl_profile *p) {
    static const double level_bw[] = {200e9, 120e9, 80e9, 60e9};
    for (int i = 0; i < p->n_levels; i++) p->level[i].bandwidth = level_bw[i < 4 ? i : 3];
    p->dram_bandwidth = 20e9;
    p->gemm_flops = 50e9;
    p->gemv_flops = 20e9;
    p->step_overhead = 0.5e-6;
    p->measured = 0;
}

fl_status fl_profile_detect(fl_profile *out) {
    if (!out) return fl_fail(FL_ERR_ARG, "profile is NULL");
    memset(out, 0, sizeof *out);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    out->cores = cores > 0 ? (int)cores : 1;
    __builtin_cpu_init();
    out->simd_bits = __builtin_cpu_supports("avx512f") ? 512 : __builtin_cpu_supports("avx2") ? 256 : 128;
    detect_sysfs(out);
    if (out->n_levels == 0) detect_sysconf(out);
    if (out->n_levels == 0) {
        add_level(out, 1, 32u << 10, 1);
        add_level(out, 2, 1u << 20, 1);
        add_level(out, 3, 8u << 20, out->cores);
    }
    qsort(out->level, (size_t)out->n_levels, sizeof out->level[0], cmp_level);
    default_rates(out);
    return FL_OK;
}

/* ------------------------------------------------------------ measurement */

/* Each rate is timed REPS times and the second-fastest sample kept: other processes on a shared
 * machine only ever slow a sample down, so the low end is the stable estimate of what this machine
 * achieves (the fastest alone could be a timer artefact). */
#define REPS 7
#define PICK 1

/* Seconds of one recurrent step of B rows of r (second-fastest of REPS samples), each sample timing
 * enough back-to-back steps to last about 0.2 ms. gx (B, 4H), h0, h1, c (B, H). */
static double time_steps(fl_rec *r, int B, const float *gx, float *h0, float *h1, float *c, int H) {
    fl_rec_step(r, B, gx, 4 * H, h0, H, c, h1, H); /* warm the level */
    int inner = 1;
    for (;;) {
        double t0 = fl_now_seconds();
        for (int k = 0; k < inner; k++) fl_rec_step(r, B, gx, 4 * H, (k & 1) ? h1 : h0, H, c, (k & 1) ? h0 : h1, H);
        double t = fl_now_seconds() - t0;
        if (t > 2e-4 || inner >= (1 << 20)) break;
        inner *= 2;
    }
    double s[REPS];
    for (int i = 0; i < REPS; i++) {
        double t0 = fl_now_seconds();
        for (int k = 0; k < inner; k++) fl_rec_step(r, B, gx, 4 * H, (k & 1) ? h1 : h0, H, c, (k & 1) ? h0 : h1, H);
        s[i] = (fl_now_seconds() - t0) / inner;
    }
    fl_sort_doubles(s, REPS);
    return s[PICK];
}

/* A step time t less its cell update `cell`, kept at least a fifth of t (the two are measured apart,
 * so noise could otherwise leave nothing or less). */
static double without_cell(double t, double cell) { return t - cell > 0.2 * t ? t - cell : 0.2 * t; }

/* Seconds per hidden unit per row of the cell update alone: the runtime's fused gate kernel with no
 * product (K = 0) over B = 16 rows of H = 256 units (second-fastest of REPS samples). */
static fl_status measure_cell(double *seconds) {
    const int H = 256, B = 16;
    const fl_kernels *k = fl_kernels_get();
    const int nblk = (H + FL_REC_NB - 1) / FL_REC_NB;
    float *buf = fl_calloc((size_t)B * 6 * H + (size_t)4 * FL_REC_NB, sizeof(float));
    if (!buf) return fl_fail(FL_ERR_NOMEM, "out of memory measuring the cell update");
    /* gx (B, 4H), c (B, H), h (B, H); pw: a dummy panel (K = 0 reads none of it) */
    float *gx = buf, *c = gx + (size_t)B * 4 * H, *h = c + (size_t)B * H, *pw = h + (size_t)B * H;
    for (size_t i = 0; i < (size_t)B * 4 * H; i++) gx[i] = (float)((int)(i % 17) - 8) * 0.25f;
    k->gate_cell(0, nblk, H, 0, B, pw, pw, H, gx, 4 * H, c, h, H);
    int inner = 1;
    for (;;) {
        double t0 = fl_now_seconds();
        for (int r = 0; r < inner; r++) k->gate_cell(0, nblk, H, 0, B, pw, pw, H, gx, 4 * H, c, h, H);
        if (fl_now_seconds() - t0 > 2e-4 || inner >= (1 << 20)) break;
        inner *= 2;
    }
    double s[REPS];
    for (int i = 0; i < REPS; i++) {
        double t0 = fl_now_seconds();
        for (int r = 0; r < inner; r++) k->gate_cell(0, nblk, H, 0, B, pw, pw, H, gx, 4 * H, c, h, H);
        s[i] = (fl_now_seconds() - t0) / inner;
    }
    fl_sort_doubles(s, REPS);
    *seconds = s[PICK] / ((double)B * H);
    fl_free(buf);
    return FL_OK;
}

/* Flop rate of the dense recurrent step (hidden H) at batch B, its cell update (cell seconds per
 * unit and row) excluded. */
static fl_status measure_rec_rows(int H, int B, double cell, double *flops) {
    const size_t G = (size_t)4 * H;
    float *w = fl_malloc(G * H * sizeof(float));
    float *buf = fl_calloc((size_t)B * (G + 3 * (size_t)H), sizeof(float));
    fl_rec *r = NULL;
    fl_status st = FL_OK;
    if (!w || !buf) {
        st = fl_fail(FL_ERR_NOMEM, "out of memory measuring the recurrent step at batch %d", B);
        goto done;
    }
    for (size_t i = 0; i < G * H; i++) w[i] = (float)((i * 2654435761u) % 1000) * 1e-5f;
    fl_layer ly = {.in = H, .hidden = H};
    ly.whh = (fl_mat){.method = FL_METHOD_DENSE, .rows = (int)G, .cols = H, .w = w};
    ly.wih = ly.whh;
    ly.b_ih = ly.b_hh = buf;
    if ((st = fl_rec_create(&ly, B, 1, &r))) goto done;
    float *gx = buf, *h0 = gx + (size_t)B * G, *h1 = h0 + (size_t)B * H, *c = h1 + (size_t)B * H;
    *flops = 2.0 * (double)G * H * B / without_cell(time_steps(r, B, gx, h0, h1, c, H), (double)B * H * cell);
done:
    fl_rec_free(r);
    fl_free(w);
    fl_free(buf);
    return st;
}

/* Time the runtime's own recurrent step (fl_rec_step, batch 1, one thread) on a dense layer whose
 * W_hh (4H, H) takes about `bytes`: *rate = W_hh bytes per second, *flops = its flop rate, *seconds
 * the step time, all without the cell update (cell seconds per unit). */
static fl_status measure_stream(size_t bytes, double cell, double *rate, double *flops, double *seconds) {
    int H = (int)sqrt((double)bytes / 16.0);
    if (H < 4) H = 4;
    const size_t G = (size_t)4 * H;
    float *w = fl_malloc(G * H * sizeof(float));
    float *buf = fl_calloc(G + 3 * (size_t)H, sizeof(float)); /* gx (4H), h0, h1, c (H each) */
    fl_rec *r = NULL;
    fl_status st = FL_OK;
    if (!w || !buf) {
        st = fl_fail(FL_ERR_NOMEM, "out of memory measuring bandwidth over %zu bytes", bytes);
        goto done;
    }
    for (size_t i = 0; i < G * H; i++) w[i] = (float)((i * 2654435761u) % 1000) * 1e-5f;
    fl_layer ly = {.in = H, .hidden = H};
    ly.whh = (fl_mat){.method = FL_METHOD_DENSE, .rows = (int)G, .cols = H, .w = w};
    ly.wih = ly.whh;
    ly.b_ih = ly.b_hh = buf; /* unused by the recurrent step */
    if ((st = fl_rec_create(&ly, 1, 1, &r))) goto done;
    double t = without_cell(time_steps(r, 1, buf, buf + G, buf + G + H, buf + G + 2 * H, H), H * cell);
    *rate = (double)(G * H * sizeof(float)) / t;
    if (flops) *flops = 2.0 * (double)G * H / t;
    if (seconds) *seconds = t;
done:
    fl_rec_free(r);
    fl_free(w);
    fl_free(buf);
    return st;
}

static fl_status measure_gemm(double *flops) {
    const int n = 192; /* three 144 KiB operands: in L2 on current cores */
    float *a = fl_malloc((size_t)3 * n * n * sizeof(float));
    if (!a) return fl_fail(FL_ERR_NOMEM, "out of memory measuring sgemm");
    float *b = a + (size_t)n * n, *c = b + (size_t)n * n;
    for (size_t i = 0; i < (size_t)2 * n * n; i++) a[i] = (float)(i % 7) * 0.1f;
    fl_gemm(false, false, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    double s[REPS];
    for (int r = 0; r < REPS; r++) {
        double t0 = fl_now_seconds();
        for (int k = 0; k < 4; k++) fl_gemm(false, false, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        s[r] = (fl_now_seconds() - t0) / 4;
    }
    fl_sort_doubles(s, REPS);
    *flops = 2.0 * n * n * (double)n / s[PICK];
    fl_free(a);
    return FL_OK;
}

/* Rate of fl_mat_apply (the runtime's input projection) on n rows against a dense (2048, 1024) matrix. */
static fl_status measure_rows(int n, double *flops) {
    const int M = 2048, K = 1024;
    float *w = fl_malloc(((size_t)M * K + (size_t)n * K + (size_t)n * M) * sizeof(float));
    if (!w) return fl_fail(FL_ERR_NOMEM, "out of memory measuring the matrix-product rate");
    float *x = w + (size_t)M * K, *y = x + (size_t)n * K;
    for (size_t i = 0; i < (size_t)M * K + (size_t)n * K; i++) w[i] = (float)(i % 13) * 0.01f;
    fl_mat m = {.method = FL_METHOD_DENSE, .rows = M, .cols = K, .w = w};
    fl_mat_apply(&m, n, x, K, 0.0f, y, M, NULL);
    double s[REPS];
    int inner = n >= 64 ? 2 : 8;
    for (int r = 0; r < REPS; r++) {
        double t0 = fl_now_seconds();
        for (int k = 0; k < inner; k++) fl_mat_apply(&m, n, x, K, 0.0f, y, M, NULL);
        s[r] = (fl_now_seconds() - t0) / inner;
    }
    fl_sort_doubles(s, REPS);
    *flops = 2.0 * M * K * (double)n / s[PICK];
    fl_free(w);
    return FL_OK;
}

static fl_status measure_all(fl_profile *p);

/* Efficiency of `method` kernels relative to the cost model's dense rates: the recurrent step of a
 * (4H, H) W_hh at batch 1, 4, 16, 64, 256 and the input projection of a (4H, H) W_ih over 4, 16, 64,
 * 256 rows, H = 1024, rank R; each is the predicted time with efficiency 1 over the measured time,
 * the cell update excluded from both. p's other rates (cell_seconds included) must be set. */
static fl_status measure_method(fl_profile *p, fl_method method, int R) {
    const int H = 1024, maxb = 256;
    fl_arch arch = {.input = H, .hidden = H, .layers = 1, .head = FL_HEAD_NONE};
    fl_mat_spec specs[2] = {{method, R}, {method, R}};
    fl_model *m = NULL;
    fl_rec *r = NULL;
    float *buf = NULL;
    fl_status st = fl_model_create(&arch, specs, &m);
    if (!st) st = fl_model_init_random(m, 1);
    if (!st) st = fl_rec_create(&m->layer[0], maxb, 1, &r);
    size_t wsn = st ? 0 : fl_mat_apply_workspace(&m->layer[0].wih, maxb);
    /* recurrent: gx (B, 4H), h0, h1, c (B, H); projection: x (rows, H), y (rows, 4H), workspace */
    if (!st && !(buf = fl_calloc((size_t)maxb * 7 * H + (size_t)maxb * 5 * H + wsn, sizeof(float))))
        st = fl_fail(FL_ERR_NOMEM, "out of memory measuring kernel efficiency");
    if (st) goto done;
    // recurrent step alone: predicted with a 1-feature input over a very long sequence, with
    // efficiency 1 and no cell term
    fl_arch only_hh = {.input = 1, .hidden = H, .layers = 1, .head = FL_HEAD_NONE};
    fl_mat_spec hh[2] = {{FL_METHOD_DENSE, 0}, {method, R}};
    const double cell = p->cell_seconds;
    p->cell_seconds = 0;
    p->rec_efficiency[method] = p->gemm_efficiency[method] = 1.0;
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++)
        p->rec_rows_efficiency[method][k] = p->gemm_rows_efficiency[method][k] = 0;
    double eff[FL_PROFILE_GEMM_POINTS + 1];
    for (int k = 0; k <= FL_PROFILE_GEMM_POINTS && !st; k++) {
        const int B = k == 0 ? 1 : 1 << (2 * k); /* 1, 4, 16, 64, 256 */
        fl_cost c;
        if ((st = fl_cost_predict(p, &only_hh, hh, B, 1 << 30, 1, &c))) break;
        double pred = c.seconds - p->step_overhead;
        float *gx = buf, *h0 = gx + (size_t)B * 4 * H, *h1 = h0 + (size_t)B * H, *cs = h1 + (size_t)B * H;
        double t = without_cell(time_steps(r, B, gx, h0, h1, cs, H), (double)B * H * cell);
        eff[k] = pred > 0 && t > 0 ? pred / t : 1.0;
    }
    p->cell_seconds = cell;
    if (st) goto done;
    p->rec_efficiency[method] = eff[0];
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) p->rec_rows_efficiency[method][k] = eff[k + 1];
    // input projection: x (rows, H) -> y (rows, 4H)
    float *x = buf + (size_t)maxb * 7 * H, *y = x + (size_t)maxb * H, *ws = y + (size_t)maxb * 4 * H;
    const fl_mat *w = &m->layer[0].wih;
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) {
        const int rows = 4 << (2 * k);
        fl_mat_apply(w, rows, x, H, 0.0f, y, 4 * H, ws);
        double s[REPS];
        for (int i = 0; i < REPS; i++) {
            double t0 = fl_now_seconds();
            fl_mat_apply(w, rows, x, H, 0.0f, y, 4 * H, ws);
            s[i] = fl_now_seconds() - t0;
        }
        fl_sort_doubles(s, REPS);
        double flops = (double)fl_mat_flops(w) * rows, rate = p->gemm_rows_flops[k] > 0 ? p->gemm_rows_flops[k] : p->gemm_flops;
        p->gemm_rows_efficiency[method][k] = s[PICK] > 0 ? flops / rate / s[PICK] : 1.0;
    }
    p->gemm_efficiency[method] = p->gemm_rows_efficiency[method][2]; /* 64 rows */
done:
    fl_free(buf);
    fl_rec_free(r);
    fl_model_free(m);
    return st;
}

/* Seconds per element of the bias pass after a non-dense input projection: a session on a model
 * where that pass dominates (input 16, hidden H, SVD rank 1 everywhere, batch B, T steps), its
 * measured step time less the model's prediction without the pass, over the B x 4H elements. p's
 * other rates must be set; p's bias rates are 0 on return. */
static fl_status measure_bias(fl_profile *p, int B, int T, int H, double *seconds) {
    fl_arch arch = {.input = 16, .hidden = H, .layers = 1, .head = FL_HEAD_NONE};
    fl_mat_spec specs[2] = {{FL_METHOD_SVD, 1}, {FL_METHOD_SVD, 1}};
    fl_model *m = NULL;
    fl_cost c;
    double t = 0;
    p->bias_seconds = p->bias_seconds_cached = 0;
    fl_status st = fl_model_create(&arch, specs, &m);
    if (!st) st = fl_model_init_random(m, 1);
    if (!st) st = fl_plan_time_model(m, B, T, 1, REPS, 1, &t);
    if (!st) st = fl_cost_predict(p, &arch, specs, B, T, 1, &c);
    fl_model_free(m);
    if (st) return st;
    double elems = (double)B * 4 * arch.hidden;
    *seconds = t > c.seconds ? (t - c.seconds) / elems : 0.0;
    return FL_OK;
}

fl_status fl_profile_measure(fl_profile *p) {
    if (!p) return fl_fail(FL_ERR_ARG, "profile is NULL");
    /* Single-thread rates: OpenBLAS would otherwise run the GEMMs on every core (sessions set their
     * own thread count before each run). */
    int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    fl_status st = measure_all(p);
    openblas_set_num_threads(blas_threads);
    return st;
}

static fl_status measure_all(fl_profile *p) {
    fl_status st = fl_profile_detect(p);
    if (st) return st;
    if ((st = measure_cell(&p->cell_seconds))) return st;
    if ((st = measure_gemm(&p->gemm_flops))) return st;
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++)
        if ((st = measure_rows(4 << (2 * k), &p->gemm_rows_flops[k])) ||
            (st = measure_rec_rows(256, 4 << (2 * k), p->cell_seconds, &p->rec_rows_flops[k])))
            return st;
    /* Mat-vec flop rate from a matrix filling half of L1. */
    if ((st = measure_stream(p->level[0].bytes / 2, p->cell_seconds, &p->level[0].bandwidth, &p->gemv_flops, NULL))) return st;
    for (int i = 1; i < p->n_levels; i++) {
        /* Half of a private level; a quarter of a shared one (others use it too). */
        size_t set = p->level[i].shared_cpus > 1 ? p->level[i].bytes / 4 : p->level[i].bytes / 2;
        if (set <= p->level[i - 1].bytes) set = (p->level[i].bytes + p->level[i - 1].bytes) / 2;
        if ((st = measure_stream(set, p->cell_seconds, &p->level[i].bandwidth, NULL, NULL))) return st;
    }
    size_t last = p->level[p->n_levels - 1].bytes;
    size_t dram = last * 4 > ((size_t)128 << 20) ? last * 4 : ((size_t)128 << 20);
    if (dram > ((size_t)512 << 20)) dram = (size_t)512 << 20;
    if ((st = measure_stream(dram, p->cell_seconds, &p->dram_bandwidth, NULL, NULL))) return st;
    /* The curve: 1/4, 1/2 and 3/4 of each level (1/2 of L1 is measured above), then DRAM. */
    p->n_curve = 0;
    for (int i = 0; i < p->n_levels; i++)
        for (int q = 1; q <= 3; q++) {
            size_t set = p->level[i].bytes / 4 * (size_t)q;
            if ((i == 0 && q == 1) || p->n_curve >= FL_PROFILE_MAX_CURVE - 1 ||
                (p->n_curve && set <= p->curve_bytes[p->n_curve - 1]))
                continue;
            double bw;
            if ((st = measure_stream(set, p->cell_seconds, &bw, NULL, NULL))) return st;
            p->curve_bytes[p->n_curve] = set;
            p->curve_bandwidth[p->n_curve++] = bw;
        }
    p->curve_bytes[p->n_curve] = dram;
    p->curve_bandwidth[p->n_curve++] = p->dram_bandwidth;
    /* Recurrent rate at batch 16 on a W_hh (4H, H) of twice the last level (at least 32 MiB). */
    {
        double want = 2.0 * (double)last > 32.0 * (1 << 20) ? 2.0 * (double)last : 32.0 * (1 << 20);
        if (want > 512.0 * (1 << 20)) want = 512.0 * (1 << 20);
        double rate;
        if ((st = measure_rec_rows((int)sqrt(want / 16.0), 16, p->cell_seconds, &rate))) return st;
        p->rec_memory_factor = p->rec_rows_flops[1] > 0 ? rate / p->rec_rows_flops[1] : 0.0;
        if (p->rec_memory_factor > 1) p->rec_memory_factor = 1;
    }
    /* Fixed cost of a layer-step through a whole session: a model too small to be anything else. */
    fl_arch tiny = {.input = 8, .hidden = 8, .layers = 1, .head = FL_HEAD_NONE};
    fl_model *m;
    if ((st = fl_model_create(&tiny, NULL, &m))) return st;
    st = fl_model_init_random(m, 1);
    if (!st) st = fl_plan_time_model(m, 1, 64, 1, REPS, 1, &p->step_overhead);
    fl_model_free(m);
    if (st) return st;
    p->step_overhead = without_cell(p->step_overhead, tiny.hidden * p->cell_seconds);
    /* Bias pass: outputs of 8 x 64 x 256 floats (512 KiB, within a private L2 of 1 MiB or more)
     * and of 64 x 16 x 1024 floats (4 MiB, beyond it). */
    double cached, beyond;
    if ((st = measure_method(p, FL_METHOD_SVD, 128)) || (st = measure_method(p, FL_METHOD_CP, 256)) ||
        (st = measure_bias(p, 64, 8, 64, &cached)) || (st = measure_bias(p, 16, 64, 256, &beyond)))
        return st;
    p->bias_seconds = beyond;
    p->bias_seconds_cached = cached;
    p->measured = 1;
    return FL_OK;
}

fl_status fl_profile_override(fl_profile *p, double cache_bytes, double bandwidth,
                              double cache_bandwidth, double flops) {
    if (!p) return fl_fail(FL_ERR_ARG, "profile is NULL");
    if (isnan(cache_bytes) || isnan(bandwidth) || isnan(cache_bandwidth) || isnan(flops))
        return fl_fail(FL_ERR_ARG, "profile override is NaN");
    if (cache_bytes > 0 || bandwidth > 0 || cache_bandwidth > 0) p->n_curve = 0;
    if (bandwidth > 0) p->dram_bandwidth = bandwidth;
    if (flops > 0) {
        p->gemm_flops = p->gemv_flops = flops;
        for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) p->gemm_rows_flops[k] = p->rec_rows_flops[k] = flops;
    }
    if (cache_bytes > 0) {
        size_t c = (size_t)cache_bytes;
        int keep = 0;
        while (keep < p->n_levels && p->level[keep].bytes < c) keep++;
        /* keep levels smaller than c; the next (or a new) level becomes the last with capacity c */
        fl_cache_level last = keep < p->n_levels ? p->level[keep]
                                                 : (fl_cache_level){keep + 1, c, p->cores > 1 ? p->cores : 1, 0.0};
        if (keep == FL_PROFILE_MAX_LEVELS) keep--;
        last.bytes = c;
        if (keep == 0) last.level = 1;
        p->level[keep] = last;
        p->n_levels = keep + 1;
    }
    fl_cache_level *ll = &p->level[p->n_levels - 1];
    if (cache_bandwidth > 0) ll->bandwidth = cache_bandwidth;
    else if (ll->bandwidth <= 0) ll->bandwidth = 3.0 * p->dram_bandwidth;
    for (int i = p->n_levels - 2; i >= 0; i--)
        if (p->level[i].bandwidth <= 0) p->level[i].bandwidth = p->level[i + 1].bandwidth;
    return FL_OK;
}

/* ------------------------------------------------------------ JSON */

fl_status fl_profile_default_path(char *buf, size_t n) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int len;
    if (xdg && *xdg) len = snprintf(buf, n, "%s/fastlstm/profile.json", xdg);
    else if (home && *home) len = snprintf(buf, n, "%s/.cache/fastlstm/profile.json", home);
    else return fl_fail(FL_ERR_ARG, "no HOME or XDG_CACHE_HOME to place the profile in");
    if (len < 0 || (size_t)len >= n) return fl_fail(FL_ERR_ARG, "profile path too long");
    return FL_OK;
}

/* mkdir -p of the directory part of path. */
static void make_parent_dirs(const char *path) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) return;
    for (char *s = tmp + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(tmp, 0755);
            *s = '/';
        }
}

static fl_status write_profile_text(void *ctx, FILE *f, const char *tmp) {
    if (fputs((const char *)ctx, f) < 0 || fputc('\n', f) == EOF)
        return fl_fail(FL_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    return FL_OK;
}

fl_status fl_profile_save(const fl_profile *p, const char *path) {
    if (!p || !path) return fl_fail(FL_ERR_ARG, "NULL argument to fl_profile_save");
    cJSON *root = cJSON_CreateObject(), *levels = cJSON_CreateArray();
    if (!root || !levels) {
        cJSON_Delete(root), cJSON_Delete(levels);
        return fl_fail(FL_ERR_NOMEM, "out of memory writing a profile");
    }
    cJSON_AddNumberToObject(root, "version", 1);
    cJSON_AddNumberToObject(root, "cores", p->cores);
    cJSON_AddNumberToObject(root, "simd_bits", p->simd_bits);
    for (int i = 0; i < p->n_levels; i++) {
        cJSON *l = cJSON_CreateObject();
        cJSON_AddNumberToObject(l, "level", p->level[i].level);
        cJSON_AddNumberToObject(l, "bytes", (double)p->level[i].bytes);
        cJSON_AddNumberToObject(l, "shared_cpus", p->level[i].shared_cpus);
        cJSON_AddNumberToObject(l, "bandwidth", p->level[i].bandwidth);
        cJSON_AddItemToArray(levels, l);
    }
    cJSON_AddItemToObject(root, "caches", levels);
    cJSON_AddNumberToObject(root, "dram_bandwidth", p->dram_bandwidth);
    cJSON_AddNumberToObject(root, "gemm_flops", p->gemm_flops);
    cJSON_AddNumberToObject(root, "gemv_flops", p->gemv_flops);
    cJSON *eff = cJSON_AddObjectToObject(root, "efficiency");
    cJSON_AddNumberToObject(eff, "svd_recurrent", p->rec_efficiency[FL_METHOD_SVD]);
    cJSON_AddNumberToObject(eff, "cp_recurrent", p->rec_efficiency[FL_METHOD_CP]);
    cJSON_AddNumberToObject(eff, "svd_gemm", p->gemm_efficiency[FL_METHOD_SVD]);
    cJSON_AddNumberToObject(eff, "cp_gemm", p->gemm_efficiency[FL_METHOD_CP]);
    static const char *const eff_rows[4] = {"svd_recurrent_rows", "cp_recurrent_rows", "svd_gemm_rows", "cp_gemm_rows"};
    for (int t = 0; t < 4; t++) {
        const fl_method m = t % 2 ? FL_METHOD_CP : FL_METHOD_SVD;
        const double *v = t < 2 ? p->rec_rows_efficiency[m] : p->gemm_rows_efficiency[m];
        cJSON *a = cJSON_AddArrayToObject(eff, eff_rows[t]);
        for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[k]));
    }
    cJSON *curve = cJSON_AddArrayToObject(root, "curve");
    for (int k = 0; k < p->n_curve; k++) {
        cJSON *pt = cJSON_CreateObject();
        cJSON_AddNumberToObject(pt, "bytes", (double)p->curve_bytes[k]);
        cJSON_AddNumberToObject(pt, "bandwidth", p->curve_bandwidth[k]);
        cJSON_AddItemToArray(curve, pt);
    }
    cJSON *rows = cJSON_AddArrayToObject(root, "gemm_rows_flops");
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) cJSON_AddItemToArray(rows, cJSON_CreateNumber(p->gemm_rows_flops[k]));
    cJSON *recr = cJSON_AddArrayToObject(root, "rec_rows_flops");
    for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) cJSON_AddItemToArray(recr, cJSON_CreateNumber(p->rec_rows_flops[k]));
    cJSON_AddNumberToObject(root, "step_overhead", p->step_overhead);
    cJSON_AddNumberToObject(root, "cell_seconds", p->cell_seconds);
    cJSON_AddNumberToObject(root, "bias_seconds", p->bias_seconds);
    cJSON_AddNumberToObject(root, "bias_seconds_cached", p->bias_seconds_cached);
    cJSON_AddNumberToObject(root, "rec_memory_factor", p->rec_memory_factor);
    cJSON_AddBoolToObject(root, "measured", p->measured != 0);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return fl_fail(FL_ERR_NOMEM, "out of memory writing a profile");
    make_parent_dirs(path);
    fl_status st = fl_atomic_write(path, write_profile_text, text);
    free(text);
    return st;
}

/* Positive finite number field; false (with the error set) otherwise. */
static bool get_num(const cJSON *o, const char *key, const char *path, double lo, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < lo) {
        fl_fail(FL_ERR_FORMAT, "%s: field '%s' missing or not a number >= %g", path, key, lo);
        return false;
    }
    *out = v->valuedouble;
    return true;
}

/* Optional array of FL_PROFILE_GEMM_POINTS numbers >= 0; false (with the error set) if malformed. */
static bool get_table(const cJSON *o, const char *key, const char *path, double *out) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, key), *r;
    if (!t) return true;
    if (!cJSON_IsArray(t) || cJSON_GetArraySize(t) != FL_PROFILE_GEMM_POINTS) {
        fl_fail(FL_ERR_FORMAT, "%s: '%s' must be an array of %d numbers", path, key, FL_PROFILE_GEMM_POINTS);
        return false;
    }
    int k = 0;
    cJSON_ArrayForEach(r, t) {
        if (!cJSON_IsNumber(r) || !isfinite(r->valuedouble) || r->valuedouble < 0) {
            fl_fail(FL_ERR_FORMAT, "%s: '%s' entry %d is not a number >= 0", path, key, k);
            return false;
        }
        out[k++] = r->valuedouble;
    }
    return true;
}

fl_status fl_profile_load(const char *path, fl_profile *out) {
    if (!path || !out) return fl_fail(FL_ERR_ARG, "NULL argument to fl_profile_load");
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return fl_fail(FL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            if (cap > (1u << 20)) {
                fclose(f), fl_free(text);
                return fl_fail(FL_ERR_FORMAT, "%s: profile larger than 1 MiB", path);
            }
            char *t = fl_malloc(cap ? 2 * cap : 8192);
            if (!t) {
                fclose(f), fl_free(text);
                return fl_fail(FL_ERR_NOMEM, "out of memory reading %s", path);
            }
            if (text) memcpy(t, text, len);
            fl_free(text);
            text = t;
            cap = cap ? 2 * cap : 8192;
        }
        size_t got = fread(text + len, 1, 4096, f);
        len += got;
        if (got < 4096) break;
    }
    bool err = ferror(f);
    fclose(f);
    if (err) {
        fl_free(text);
        return fl_fail(FL_ERR_IO, "%s: read failed", path);
    }
    text[len] = 0;
    cJSON *root = cJSON_Parse(text);
    fl_free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return fl_fail(FL_ERR_FORMAT, "%s: not a JSON object", path);
    }
    fl_profile p = {0};
    double v;
    fl_status st = FL_ERR_FORMAT;
    const cJSON *levels = cJSON_GetObjectItemCaseSensitive(root, "caches"), *l;
    if (!get_num(root, "version", path, 1, &v)) goto done;
    if (v != 1) {
        st = fl_fail(FL_ERR_VERSION, "%s: profile version %g, expected 1", path, v);
        goto done;
    }
    if (!get_num(root, "cores", path, 1, &v)) goto done;
    p.cores = (int)v;
    if (!get_num(root, "simd_bits", path, 1, &v)) goto done;
    p.simd_bits = (int)v;
    if (!cJSON_IsArray(levels) || cJSON_GetArraySize(levels) < 1 ||
        cJSON_GetArraySize(levels) > FL_PROFILE_MAX_LEVELS) {
        fl_fail(FL_ERR_FORMAT, "%s: 'caches' must be an array of 1 to %d levels", path,
                FL_PROFILE_MAX_LEVELS);
        goto done;
    }
    cJSON_ArrayForEach(l, levels) {
        fl_cache_level *c = &p.level[p.n_levels];
        double lv, b, s, bw;
        if (!get_num(l, "level", path, 1, &lv) || !get_num(l, "bytes", path, 1, &b) ||
            !get_num(l, "shared_cpus", path, 1, &s) || !get_num(l, "bandwidth", path, 0, &bw))
            goto done;
        *c = (fl_cache_level){(int)lv, (size_t)b, (int)s, bw};
        if (p.n_levels > 0 && c->bytes <= p.level[p.n_levels - 1].bytes) {
            fl_fail(FL_ERR_FORMAT, "%s: cache levels must grow in size", path);
            goto done;
        }
        p.n_levels++;
    }
    if (!get_num(root, "dram_bandwidth", path, 1, &p.dram_bandwidth) ||
        !get_num(root, "gemm_flops", path, 1, &p.gemm_flops) ||
        !get_num(root, "gemv_flops", path, 1, &p.gemv_flops) ||
        !get_num(root, "step_overhead", path, 0, &p.step_overhead))
        goto done;
    const cJSON *r;
    if (!get_table(root, "gemm_rows_flops", path, p.gemm_rows_flops) ||
        !get_table(root, "rec_rows_flops", path, p.rec_rows_flops))
        goto done;
    const cJSON *eff = cJSON_GetObjectItemCaseSensitive(root, "efficiency");
    if (eff && (!get_num(eff, "svd_recurrent", path, 0, &p.rec_efficiency[FL_METHOD_SVD]) ||
                !get_num(eff, "cp_recurrent", path, 0, &p.rec_efficiency[FL_METHOD_CP]) ||
                !get_num(eff, "svd_gemm", path, 0, &p.gemm_efficiency[FL_METHOD_SVD]) ||
                !get_num(eff, "cp_gemm", path, 0, &p.gemm_efficiency[FL_METHOD_CP])))
        goto done; /* optional as a whole */
    if (eff && (!get_table(eff, "svd_recurrent_rows", path, p.rec_rows_efficiency[FL_METHOD_SVD]) ||
                !get_table(eff, "cp_recurrent_rows", path, p.rec_rows_efficiency[FL_METHOD_CP]) ||
                !get_table(eff, "svd_gemm_rows", path, p.gemm_rows_efficiency[FL_METHOD_SVD]) ||
                !get_table(eff, "cp_gemm_rows", path, p.gemm_rows_efficiency[FL_METHOD_CP])))
        goto done; /* each optional */
    if (cJSON_GetObjectItemCaseSensitive(root, "cell_seconds") && /* optional */
        !get_num(root, "cell_seconds", path, 0, &p.cell_seconds))
        goto done;
    if (cJSON_GetObjectItemCaseSensitive(root, "bias_seconds") && /* optional */
        !get_num(root, "bias_seconds", path, 0, &p.bias_seconds))
        goto done;
    if (cJSON_GetObjectItemCaseSensitive(root, "bias_seconds_cached") && /* optional */
        !get_num(root, "bias_seconds_cached", path, 0, &p.bias_seconds_cached))
        goto done;
    if (cJSON_GetObjectItemCaseSensitive(root, "rec_memory_factor") && /* optional */
        !get_num(root, "rec_memory_factor", path, 0, &p.rec_memory_factor))
        goto done;
    const cJSON *curve = cJSON_GetObjectItemCaseSensitive(root, "curve");
    if (curve) { /* optional */
        if (!cJSON_IsArray(curve) || cJSON_GetArraySize(curve) > FL_PROFILE_MAX_CURVE) {
            fl_fail(FL_ERR_FORMAT, "%s: 'curve' must be an array of at most %d points", path,
                    FL_PROFILE_MAX_CURVE);
            goto done;
        }
        cJSON_ArrayForEach(r, curve) {
            double b, bw;
            if (!get_num(r, "bytes", path, 1, &b) || !get_num(r, "bandwidth", path, 1, &bw)) goto done;
            if (p.n_curve && (size_t)b <= p.curve_bytes[p.n_curve - 1]) {
                fl_fail(FL_ERR_FORMAT, "%s: 'curve' points must grow in bytes", path);
                goto done;
            }
            p.curve_bytes[p.n_curve] = (size_t)b;
            p.curve_bandwidth[p.n_curve++] = bw;
        }
    }
    p.measured = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "measured"));
    *out = p;
    st = FL_OK;
done:
    cJSON_Delete(root);
    return st;
}
