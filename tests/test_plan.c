/* Planner: cost-model arithmetic against hand-computed values, profile JSON, the regime-dependent
 * choice on a model whose weights are genuinely low rank, the accuracy budget checked by evaluating
 * the chosen (and the written) model independently, and bad inputs. Every run poses as a given
 * machine (profile overrides) and skips timing, so nothing here is measured. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fastlstm/plan.h"
#include "internal.h"
#include "npy.h"

#include <cjson/cJSON.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* ------------------------------------------------------------ helpers */

/* |a - b| <= tol, printing both values when not (this cmocka has no assert_double_equal). */
static void check_close(double a, double b, double tol, const char *expr, int line) {
    if (!(fabs(a - b) <= tol)) {
        print_error("line %d: %s: %.17g vs %.17g (tol %g)\n", line, expr, a, b, tol);
        fail();
    }
}
#define assert_close(a, b, tol) check_close((a), (b), (tol), #a, __LINE__)

/* Fill every LSTM gate matrix (4H, n) with an exact rank-R CP tensor sum_r a[g,r] b[i,r] c[j,r]
 * (so its matrix rank is <= R too) plus uniform noise of size `noise`. */
static void make_low_rank(fl_model *m, int R, float noise, uint64_t seed) {
    fl_rng r;
    fl_rng_seed(&r, seed);
    const int H = m->arch.hidden;
    for (size_t i = 0; i < (size_t)2 * m->arch.layers; i++) {
        fl_mat *w = fl_model_mat(m, i);
        assert_int_equal(w->method, FL_METHOD_DENSE);
        const int n = w->cols;
        float *a = malloc(sizeof(float) * 4 * R), *b = malloc(sizeof(float) * H * R),
              *c = malloc(sizeof(float) * n * R);
        for (int k = 0; k < 4 * R; k++) a[k] = fl_rng_uniform_range(&r, -1.5f, 1.5f);
        for (int k = 0; k < H * R; k++) b[k] = fl_rng_uniform_range(&r, -1, 1);
        for (int k = 0; k < n * R; k++) c[k] = fl_rng_uniform_range(&r, -1, 1);
        float scale = 3.0f / sqrtf((float)R * n);
        for (int g = 0; g < 4; g++)
            for (int h = 0; h < H; h++)
                for (int j = 0; j < n; j++) {
                    double s = 0;
                    for (int k = 0; k < R; k++) s += (double)a[g * R + k] * b[h * R + k] * c[j * R + k];
                    w->w[((size_t)g * H + h) * n + j] = scale * (float)s + fl_rng_uniform_range(&r, -noise, noise);
                }
        free(a), free(b), free(c);
    }
}

/* Outputs of m on x (n, T, D) batch-major, or tokens (n, T). y: fl_run_output_size(m, n, T). */
static void run_model(const fl_model *m, int n, int T, const float *x, const int32_t *tok, float *y) {
    fl_session_opts so = {.max_batch = n, .max_seq = T, .threads = 1};
    fl_session *s;
    assert_int_equal(fl_session_create(m, &so, &s), FL_OK);
    fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = n, .seq = T, .x = x, .tokens = tok, .y = y};
    assert_int_equal(fl_session_run(s, &io), FL_OK);
    fl_session_free(s);
}

/* Class predictions (argmax of the last-step head) of m on x. */
static void predict(const fl_model *m, int n, int T, const float *x, int32_t *pred) {
    int C = m->arch.head_out;
    float *y = malloc(sizeof(float) * (size_t)n * C);
    run_model(m, n, T, x, NULL, y);
    for (int i = 0; i < n; i++) {
        int best = 0;
        for (int k = 1; k < C; k++)
            if (y[i * C + k] > y[i * C + best]) best = k;
        pred[i] = best;
    }
    free(y);
}

static double accuracy(const fl_model *m, int n, int T, const float *x, const int32_t *labels) {
    int32_t *pred = malloc(sizeof(int32_t) * n);
    predict(m, n, T, x, pred);
    int ok = 0;
    for (int i = 0; i < n; i++) ok += pred[i] == labels[i];
    free(pred);
    return 100.0 * ok / n;
}

static fl_profile posed(double cache_bytes, double bw, double cache_bw, double flops) {
    fl_profile p;
    assert_int_equal(fl_profile_detect(&p), FL_OK);
    assert_int_equal(fl_profile_override(&p, cache_bytes, bw, cache_bw, flops), FL_OK);
    return p;
}

/* The classifier used by the budget tests: input 8, hidden 16, 1 layer, 4 classes, gate matrices of
 * CP rank 4; data x (N, T, 8) and labels from the dense model's own predictions. */
enum { CN = 128, CT = 12, CD = 8 };
typedef struct classifier {
    fl_model *m;
    float *x;
    int32_t labels[CN];
} classifier;

static void classifier_make(classifier *c) {
    fl_arch a = {.vocab = 0, .input = CD, .hidden = 16, .layers = 1, .head = FL_HEAD_LAST_STEP, .head_out = 4};
    assert_int_equal(fl_model_create(&a, NULL, &c->m), FL_OK);
    assert_int_equal(fl_model_init_random(c->m, 7), FL_OK);
    make_low_rank(c->m, 4, 1e-6f, 11);
    /* A head that reads the hidden state strongly and has no bias, so that predictions depend on
     * the LSTM weights (not on the head's bias). */
    for (int i = 0; i < 4 * 16; i++) c->m->head.w[i] *= 16.0f;
    memset(c->m->head_b, 0, 4 * sizeof(float));
    c->x = malloc(sizeof(float) * CN * CT * CD);
    fl_rng r;
    fl_rng_seed(&r, 3);
    for (int i = 0; i < CN * CT * CD; i++) c->x[i] = (float)fl_rng_normal(&r);
    predict(c->m, CN, CT, c->x, c->labels);
}

static void classifier_free(classifier *c) {
    fl_model_free(c->m);
    free(c->x);
}

static void show_progress(void *ctx, const char *msg) {
    (void)ctx;
    fprintf(stderr, "  %s\n", msg);
}

static fl_plan_opts classifier_opts(const fl_plan_data *d, double max_loss) {
    fl_plan_opts o = fl_plan_opts_default();
    o.batch = 1;
    o.seq = 35;
    o.data = d;
    o.max_loss = max_loss;
    o.verify = 0; /* no timing in tests */
    o.cp_max_iter = 100;
    if (getenv("TEST_PLAN_VERBOSE")) o.progress = show_progress;
    return o;
}

/* ------------------------------------------------------------ cost model */

static fl_profile hand_profile(size_t cache, int shared) {
    fl_profile p = {0};
    p.cores = 2;
    p.simd_bits = 256;
    p.n_levels = 1;
    p.level[0] = (fl_cache_level){3, cache, shared, 100.0};
    p.dram_bandwidth = 10.0;
    p.gemm_flops = 1000.0;
    p.gemv_flops = 30.0;
    p.step_overhead = 0.5;
    return p;
}

static void test_cost_dense_in_cache(void **state) {
    (void)state;
    /* input 3, hidden 2, 1 layer, per-step head of 5: W_ih 8x3, W_hh 8x2, head 5x2. batch 2, seq 4. */
    fl_arch a = {.input = 3, .hidden = 2, .layers = 1, .head = FL_HEAD_PER_STEP, .head_out = 5};
    fl_profile p = hand_profile(1000, 2);
    fl_cost c;
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 2, 4, 1, &c), FL_OK);
    assert_int_equal(c.params, 24 + 16 + 10);
    assert_int_equal(c.working_set, 64); /* W_hh: 16 floats */
    assert_int_equal(c.level, 0);
    assert_int_equal(c.regime, FL_REGIME_COMPUTE);
    /* recurrent: 64 B at 100 B/s = 0.64 s; 2 rows x 32 flop = 64 flop at min(1000, 2*30) = 60 -> 1.0667
     * amortised: (24+10)*4/4 = 34 B at 100 -> 0.34; 2*48 + 2*20 = 136 flop at min(1000, 8*30) = 240 */
    assert_close(c.step_bytes, 64.0 + 34.0, 1e-12);
    assert_close(c.step_flops, 64.0 + 136.0, 1e-12);
    assert_close(c.mem_seconds, 0.64 + 0.34, 1e-12);
    assert_close(c.compute_seconds, 64.0 / 60 + 136.0 / 240, 1e-12);
    assert_close(c.seconds, 64.0 / 60 + 136.0 / 240 + 0.5, 1e-12);

    /* With measured GEMM rates at 4, 16, 64, 256 rows, the input projection (seq 16 x batch 2 = 32
     * rows) runs at the log-linear interpolation between 16 and 64 rows: 160 + 0.5 * (320 - 160). */
    double g[4] = {40, 160, 320, 640};
    memcpy(p.gemm_rows_flops, g, sizeof g);
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 2, 16, 1, &c), FL_OK);
    /* amortised: 34*4/16 = 8.5 B at 100; 2*48 + 2*20 = 136 flop at 240 */
    assert_close(c.seconds, 64.0 / 60 + 136.0 / 240 + 0.5, 1e-12);
    assert_close(c.mem_seconds, 0.64 + 8.5 / 100, 1e-12);
    /* seq 1: 2 rows, below the table: 40 * 2 / 4 = 20 flop/s */
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 2, 1, 1, &c), FL_OK);
    assert_close(c.compute_seconds, 64.0 / 60 + 136.0 / 20, 1e-12);
    /* seq 200 (400 rows): the 256-row rate */
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 2, 200, 1, &c), FL_OK);
    assert_close(c.compute_seconds, 64.0 / 60 + 136.0 / 640, 1e-12);

    /* A measured recurrent-step table: batch 2 lies half-way (in log) between batch 1 (gemv 30) and
     * batch 4 (50): 40 flop/s; batch 8 half-way between 4 (50) and 16 (90): 70. */
    double rt[4] = {50, 90, 200, 400};
    memcpy(p.rec_rows_flops, rt, sizeof rt);
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 2, 200, 1, &c), FL_OK);
    assert_close(c.compute_seconds, 64.0 / 40 + 136.0 / 640, 1e-12);
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 8, 200, 1, &c), FL_OK);
    assert_close(c.compute_seconds, 4 * 64.0 / 70 + 4 * 136.0 / 640, 1e-12);
}

static void test_cost_dram_two_threads(void **state) {
    (void)state;
    fl_arch a = {.input = 3, .hidden = 2, .layers = 1, .head = FL_HEAD_PER_STEP, .head_out = 5};
    fl_profile p = hand_profile(50, 2); /* shared 50-byte cache: W_hh (64 B) does not fit */
    fl_cost c;
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 2, 4, 2, &c), FL_OK);
    assert_int_equal(c.level, -1);
    assert_int_equal(c.regime, FL_REGIME_MEMORY);
    double bw = 10.0 * 1.75; /* DRAM, two threads */
    assert_close(c.bandwidth, bw, 1e-12);
    /* recurrent: max(64/17.5, 64/120); amortised: max(34/17.5, 136/480) */
    assert_close(c.seconds, 64.0 / bw + 34.0 / bw + 0.5, 1e-12);
    assert_close(c.compute_seconds, 64.0 / 120 + 136.0 / 480, 1e-12);

    /* A private level of 44 B: two threads hold 88 B, of which 3/4 (66 B) is usable, so W_hh (64 B)
     * fits and streams at 2 x 100. */
    p = hand_profile(44, 1);
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 2, 4, 2, &c), FL_OK);
    assert_int_equal(c.level, 0);
    assert_int_equal(c.regime, FL_REGIME_COMPUTE);
    /* all weights (200 B) exceed 66 B: amortised bytes from DRAM at 17.5 */
    assert_close(c.seconds, fmax(64.0 / 200, 64.0 / 120) + fmax(34.0 / bw, 136.0 / 480) + 0.5, 1e-12);

    /* A measured curve (one thread): 300 B/s at 32 B, 100 B/s at 128 B. W_hh (64 B) is half-way in
     * log(bytes): 200 B/s; all weights (200 B) are past the last point: 100 B/s. */
    p = hand_profile(1000, 2);
    p.n_curve = 2;
    p.curve_bytes[0] = 32, p.curve_bandwidth[0] = 300;
    p.curve_bytes[1] = 128, p.curve_bandwidth[1] = 100;
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 2, 4, 1, &c), FL_OK);
    assert_close(c.bandwidth, 200.0, 1e-9);
    assert_close(c.mem_seconds, 64.0 / 200 + 34.0 / 100, 1e-12);
    /* With two threads the curve is not used: the level's shared rate 100 * 1.75. */
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 2, 4, 2, &c), FL_OK);
    assert_close(c.bandwidth, 175.0, 1e-9);
}

static void test_cost_low_rank(void **state) {
    (void)state;
    /* W_ih CP rank 1: params 1*(4+2+3) = 9, flops 2*3 + 4 + 2*8 = 26; W_hh SVD rank 1: params 10,
     * flops 20; last-step head dense 5x2: params 10, flops 20 counted 1/T. batch 2, seq 4. */
    fl_arch a = {.input = 3, .hidden = 2, .layers = 1, .head = FL_HEAD_LAST_STEP, .head_out = 5};
    fl_mat_spec s[3] = {{FL_METHOD_CP, 1}, {FL_METHOD_SVD, 1}, {FL_METHOD_DENSE, 0}};
    fl_profile p = hand_profile(1000, 2);
    fl_cost c;
    assert_int_equal(fl_cost_predict(&p, &a, s, 2, 4, 1, &c), FL_OK);
    assert_int_equal(c.params, 9 + 10 + 10);
    assert_int_equal(c.working_set, 40);
    double fr = 2 * 20, fa = 2 * 26 + 2 * 20 / 4.0, br = 40, ba = (9 + 10) * 4 / 4.0;
    assert_close(c.step_flops, fr + fa, 1e-12);
    assert_close(c.step_bytes, br + ba, 1e-12);
    /* amortised terms per matrix: W_ih over T*B = 8 rows, max(9/100, 52/min(1000, 8*30)); the
     * last-step head runs once per sequence on B = 2 rows: max(10/100, 10/min(1000, 2*30)) */
    assert_close(c.seconds, fmax(br / 100, fr / 60) + fmax(9.0 / 100, 52.0 / 240) + fmax(10.0 / 100, 10.0 / 60) + 0.5,
                 1e-12);
    /* Kernel efficiencies: SVD recurrent at half speed, CP GEMM at a quarter. */
    p.rec_efficiency[FL_METHOD_SVD] = 0.5;
    p.gemm_efficiency[FL_METHOD_CP] = 0.25;
    assert_int_equal(fl_cost_predict(&p, &a, s, 2, 4, 1, &c), FL_OK);
    assert_close(c.seconds, fmax(br / 50, fr / 30) + fmax(9.0 / 100, 52.0 / 60) + fmax(10.0 / 100, 10.0 / 60) + 0.5,
                 1e-12);
    p.rec_efficiency[FL_METHOD_SVD] = 0;
    p.gemm_efficiency[FL_METHOD_CP] = 0;

    /* Batch 20, seq 35, with measured tables: the recurrent step is a 20-row product (rec table
     * between 16 and 64 rows), W_ih one GEMM over 700 rows (the 256-row rate), the last-step head a
     * 20-row GEMM (gemm table between 16 and 64 rows). All dense: W_ih 8x3, W_hh 8x2, head 5x2. */
    {
        fl_mat_spec dense[3] = {{FL_METHOD_DENSE, 0}, {FL_METHOD_DENSE, 0}, {FL_METHOD_DENSE, 0}};
        double g[4] = {40, 160, 320, 640}, rt[4] = {50, 90, 200, 400};
        memcpy(p.gemm_rows_flops, g, sizeof g);
        memcpy(p.rec_rows_flops, rt, sizeof rt);
        const double u = log(20.0 / 16) / log(4.0); /* 20 rows, in log between 16 and 64 */
        const double rate_r = 90 + u * (200 - 90), rate_h = 160 + u * (320 - 160);
        assert_int_equal(fl_cost_predict(&p, &a, dense, 20, 35, 1, &c), FL_OK);
        const double t_hh = fmax(64.0 / 100, 20 * 32.0 / rate_r);
        const double t_ih = fmax(96.0 / 35 / 100, 20 * 48.0 / 640);
        const double t_head = fmax(40.0 / 35 / 100, 20 * 20.0 / 35 / rate_h);
        assert_close(c.step_flops, 20 * 32.0 + 20 * 48.0 + 20 * 20.0 / 35, 1e-9);
        assert_close(c.compute_seconds, 20 * 32.0 / rate_r + 20 * 48.0 / 640 + 20 * 20.0 / 35 / rate_h, 1e-12);
        assert_close(c.seconds, t_hh + t_ih + t_head + 0.5, 1e-12);
        memset(p.gemm_rows_flops, 0, sizeof p.gemm_rows_flops);
        memset(p.rec_rows_flops, 0, sizeof p.rec_rows_flops);
    }

    /* Two layers run one after the other: each W_hh (64 B) is its own working set and fits 3/4 of a
     * 100-byte cache although both together (128 B) would not. W_ih: 8x3 then 8x2. */
    fl_arch two = {.input = 3, .hidden = 2, .layers = 2, .head = FL_HEAD_NONE};
    p = hand_profile(100, 2);
    assert_int_equal(fl_cost_predict(&p, &two, NULL, 1, 4, 1, &c), FL_OK);
    assert_int_equal(c.working_set, 64);
    assert_int_equal(c.level, 0);
    assert_int_equal(c.regime, FL_REGIME_COMPUTE);
    /* recurrent: 2 x max(64/100, 32/30); amortised: all 320 B exceed 75 B -> DRAM 10 B/s:
     * max((24+16)*4/4 / 10, (48+32) / min(1000, 4*30)) */
    assert_close(c.seconds, 2 * (32.0 / 30) + fmax(40.0 / 10, 80.0 / 120) + 2 * 0.5, 1e-12);
    p = hand_profile(80, 2); /* usable 60 B: W_hh no longer fits */
    assert_int_equal(fl_cost_predict(&p, &two, NULL, 1, 4, 1, &c), FL_OK);
    assert_int_equal(c.level, -1);
    assert_int_equal(c.regime, FL_REGIME_MEMORY);
    assert_close(c.seconds, 2 * (64.0 / 10) + fmax(40.0 / 10, 80.0 / 120) + 2 * 0.5, 1e-12);

    /* Bad specs and sizes. */
    fl_mat_spec bad[3] = {{FL_METHOD_SVD, 4}, {FL_METHOD_DENSE, 0}, {FL_METHOD_DENSE, 0}};
    assert_int_equal(fl_cost_predict(&p, &a, bad, 2, 4, 1, &c), FL_ERR_ARG); /* rank > min(8, 3) */
    fl_mat_spec cphead[3] = {{FL_METHOD_DENSE, 0}, {FL_METHOD_DENSE, 0}, {FL_METHOD_CP, 1}};
    assert_int_equal(fl_cost_predict(&p, &a, cphead, 2, 4, 1, &c), FL_ERR_ARG);
    assert_int_equal(fl_cost_predict(&p, &a, NULL, 0, 4, 1, &c), FL_ERR_ARG);
}

/* The batch-dependent terms: cell update per unit and row, bias pass after a non-dense input
 * projection and a head, SVD / CP efficiencies interpolated in log batch (recurrent) or log rows
 * (GEMM). Same model as test_cost_low_rank: W_ih CP rank 1 (8x3: 9 params, 26 flops), W_hh SVD
 * rank 1 (8x2: 10 params, 20 flops), last-step head dense 5x2 (10 params, 20 flops). */
static void test_cost_batch_terms(void **state) {
    (void)state;
    fl_arch a = {.input = 3, .hidden = 2, .layers = 1, .head = FL_HEAD_LAST_STEP, .head_out = 5};
    fl_mat_spec s[3] = {{FL_METHOD_CP, 1}, {FL_METHOD_SVD, 1}, {FL_METHOD_DENSE, 0}};
    fl_profile p = hand_profile(1000, 2);
    fl_cost c;
    /* batch 2, seq 4: cell 1 layer x 2 rows x 2 units x 0.01 = 0.04; bias pass: W_ih 2 rows x 8
     * outputs + head 2 x 5 / 4 (once per sequence) = 18.5 elements x 0.001 */
    p.cell_seconds = 0.01;
    p.bias_seconds = 0.001;
    const double base = fmax(40.0 / 100, 40.0 / 60) + fmax(9.0 / 100, 52.0 / 240) + fmax(10.0 / 100, 10.0 / 60) + 0.5;
    assert_int_equal(fl_cost_predict(&p, &a, s, 2, 4, 1, &c), FL_OK);
    assert_close(c.seconds, base + 0.04 + 0.0185, 1e-12);
    /* two threads: the cell update splits over them, the bias pass does not; rates x 2 (private
     * flops) and the shared level x 1.75 */
    assert_int_equal(fl_cost_predict(&p, &a, s, 2, 4, 2, &c), FL_OK);
    assert_close(c.seconds,
                 fmax(40.0 / 175, 40.0 / 120) + fmax(9.0 / 175, 52.0 / 480) + fmax(10.0 / 175, 10.0 / 120) + 0.5 +
                     0.02 + 0.0185,
                 1e-12);
    /* A dense W_ih fuses its bias: only the head's 2.5 elements remain. */
    fl_mat_spec d[3] = {{FL_METHOD_DENSE, 0}, {FL_METHOD_SVD, 1}, {FL_METHOD_DENSE, 0}};
    assert_int_equal(fl_cost_predict(&p, &a, d, 2, 4, 1, &c), FL_OK);
    assert_close(c.seconds,
                 fmax(40.0 / 100, 40.0 / 60) + fmax(96.0 / 4 / 100, 2 * 48.0 / 240) + fmax(10.0 / 100, 10.0 / 60) +
                     0.5 + 0.04 + 0.0025,
                 1e-12);
    /* The cached bias rate applies where the whole output fits 3/4 of the largest private level:
     * none in this profile (its level is shared), so bias_seconds still applies ... */
    p.bias_seconds_cached = 0.0001;
    assert_int_equal(fl_cost_predict(&p, &a, s, 2, 4, 1, &c), FL_OK);
    assert_close(c.seconds, base + 0.04 + 0.0185, 1e-12);
    /* ... with a private 1000-byte level (750 usable): W_ih's 4 x 2 x 8 x 4 = 256 bytes and the head's
     * 4 x 2 x 5 = 40 bytes fit; at seq 100 W_ih's 6400 bytes do not (the head's still do). */
    p.level[0].shared_cpus = 1;
    assert_int_equal(fl_cost_predict(&p, &a, s, 2, 4, 1, &c), FL_OK);
    assert_close(c.seconds, base + 0.04 + 18.5 * 0.0001, 1e-12);
    assert_int_equal(fl_cost_predict(&p, &a, s, 2, 100, 1, &c), FL_OK);
    assert_close(c.seconds,
                 fmax(40.0 / 100, 40.0 / 60) + fmax(36.0 / 100 / 100, 52.0 / 1000) +
                     fmax(40.0 / 100 / 100, 2 * 20.0 / 100 / 60) + 0.5 + 0.04 + 16 * 0.001 + 0.1 * 0.0001,
                 1e-12);
    p.level[0].shared_cpus = 2;
    p.cell_seconds = p.bias_seconds = p.bias_seconds_cached = 0;

    /* Efficiency tables. SVD recurrent: batch 1 at rec_efficiency 0.8, then 0.5, 0.4, 0.3, 0.2 at 4,
     * 16, 64, 256. Batch 2 lies half-way (in log) between 1 and 4: 0.65. CP GEMM: 0.2, 0.4, 0.8, 1.0 at
     * 4, 16, 64, 256 rows; T*B = 8 rows is half-way between 4 and 16: 0.3. */
    p.rec_efficiency[FL_METHOD_SVD] = 0.8;
    const double er[4] = {0.5, 0.4, 0.3, 0.2}, eg[4] = {0.2, 0.4, 0.8, 1.0};
    memcpy(p.rec_rows_efficiency[FL_METHOD_SVD], er, sizeof er);
    memcpy(p.gemm_rows_efficiency[FL_METHOD_CP], eg, sizeof eg);
    assert_int_equal(fl_cost_predict(&p, &a, s, 2, 4, 1, &c), FL_OK);
    assert_close(c.seconds,
                 fmax(40.0 / (100 * 0.65), 40.0 / (60 * 0.65)) + fmax(9.0 / 100, 52.0 / (240 * 0.3)) +
                     fmax(10.0 / 100, 10.0 / 60) + 0.5,
                 1e-12);
    /* batch 1, seq 2: recurrent at 0.8 (rows 1); GEMM over 2 rows clamps to the 4-row 0.2 */
    assert_int_equal(fl_cost_predict(&p, &a, s, 1, 2, 1, &c), FL_OK);
    assert_close(c.seconds,
                 fmax(40.0 / 80, 20.0 / (30 * 0.8)) + fmax(9.0 * 4 / 2 / 100, 26.0 / (60 * 0.2)) +
                     fmax(10.0 * 4 / 2 / 100, 10.0 / 30) + 0.5,
                 1e-12);
    /* batch 300, seq 1: both past the table, at its last entries (0.2 and 1.0); rates capped by
     * gemm_flops 1000 */
    assert_int_equal(fl_cost_predict(&p, &a, s, 300, 1, 1, &c), FL_OK);
    assert_close(c.seconds,
                 fmax(40.0 / 20, 300 * 20.0 / 200) + fmax(36.0 / 100, 300 * 26.0 / 1000) +
                     fmax(40.0 / 100, 300 * 20.0 / 1000) + 0.5,
                 1e-12);
    /* A missing table entry (0) takes the batch-1 figure: batch 16 at 0.8. W_ih over 16 x 8 = 128
     * rows: CP half-way (in log) between 0.8 (64 rows) and 1.0 (256): 0.9. */
    p.rec_rows_efficiency[FL_METHOD_SVD][1] = 0;
    assert_int_equal(fl_cost_predict(&p, &a, s, 16, 8, 1, &c), FL_OK);
    assert_close(c.seconds,
                 fmax(40.0 / 80, 16 * 20.0 / (480 * 0.8)) + fmax(36.0 / 8 / 100, 16 * 26.0 / (1000 * 0.9)) +
                     fmax(40.0 / 8 / 100, 16 * 20.0 / 8 / 480) + 0.5,
                 1e-12);

    p.cell_seconds = -1;
    assert_int_equal(fl_cost_predict(&p, &a, s, 2, 4, 1, &c), FL_ERR_ARG);

    /* rec_memory_factor slows the recurrent rate only for a W_hh held by no cache level. Dense
     * input 3, hidden 2, per-step head 5 (W_ih 8x3, W_hh 8x2, head 5x2), batch 2, seq 4. */
    fl_arch d2 = {.input = 3, .hidden = 2, .layers = 1, .head = FL_HEAD_PER_STEP, .head_out = 5};
    p = hand_profile(1000, 2);
    p.rec_memory_factor = 0.1;
    assert_int_equal(fl_cost_predict(&p, &d2, NULL, 2, 4, 1, &c), FL_OK); /* in cache: unchanged */
    assert_close(c.seconds, 64.0 / 60 + 136.0 / 240 + 0.5, 1e-12);
    p = hand_profile(50, 2); /* 37.5 usable bytes: W_hh (64 B) and all weights (200 B) in DRAM at 10 */
    assert_int_equal(fl_cost_predict(&p, &d2, NULL, 2, 4, 1, &c), FL_OK);
    assert_close(c.seconds, 64.0 / 10 + 34.0 / 10 + 0.5, 1e-12);
    p.rec_memory_factor = 0.1; /* 60 flop/s -> 6: 64 flop take 10.67 s, more than the 6.4 s stream */
    assert_int_equal(fl_cost_predict(&p, &d2, NULL, 2, 4, 1, &c), FL_OK);
    assert_close(c.seconds, 64.0 / 6 + 34.0 / 10 + 0.5, 1e-12);
}

/* ------------------------------------------------------------ profile */

static void test_profile_json_and_override(void **state) {
    (void)state;
    fl_profile p;
    assert_int_equal(fl_profile_detect(&p), FL_OK);
    assert_true(p.n_levels >= 1 && p.cores >= 1);
    for (int i = 1; i < p.n_levels; i++) assert_true(p.level[i].bytes > p.level[i - 1].bytes);
    p.dram_bandwidth = 12.5e9;
    p.gemv_flops = 3.25e10;
    p.cell_seconds = 1.5e-9;
    p.bias_seconds = 4e-10;
    p.bias_seconds_cached = 2.5e-10;
    p.rec_memory_factor = 0.375;
    p.rec_rows_efficiency[FL_METHOD_SVD][2] = 0.75;
    p.gemm_rows_efficiency[FL_METHOD_CP][3] = 0.625;
    const char *path = "test_plan_profile.json";
    assert_int_equal(fl_profile_save(&p, path), FL_OK);
    fl_profile q;
    assert_int_equal(fl_profile_load(path, &q), FL_OK);
    assert_int_equal(q.n_levels, p.n_levels);
    for (int i = 0; i < p.n_levels; i++) {
        assert_int_equal(q.level[i].bytes, p.level[i].bytes);
        assert_int_equal(q.level[i].shared_cpus, p.level[i].shared_cpus);
        assert_close(q.level[i].bandwidth, p.level[i].bandwidth, 1e-3);
    }
    assert_close(q.dram_bandwidth, 12.5e9, 1e-3);
    assert_close(q.gemv_flops, 3.25e10, 1e-3);
    assert_close(q.cell_seconds, 1.5e-9, 1e-20);
    assert_close(q.bias_seconds, 4e-10, 1e-20);
    assert_close(q.bias_seconds_cached, 2.5e-10, 1e-20);
    assert_close(q.rec_memory_factor, 0.375, 1e-12);
    assert_close(q.rec_rows_efficiency[FL_METHOD_SVD][2], 0.75, 1e-12);
    assert_close(q.rec_rows_efficiency[FL_METHOD_SVD][1], 0.0, 0);
    assert_close(q.gemm_rows_efficiency[FL_METHOD_CP][3], 0.625, 1e-12);

    /* Override: a cache smaller than every level leaves one level of that size. */
    assert_int_equal(fl_profile_override(&q, 1000, 2e9, 0, 5e9), FL_OK);
    assert_int_equal(q.n_levels, 1);
    assert_int_equal(q.level[0].bytes, 1000);
    assert_close(q.dram_bandwidth, 2e9, 0);
    assert_close(q.gemm_flops, 5e9, 0);
    assert_close(q.gemv_flops, 5e9, 0);
    assert_int_equal(fl_profile_override(&q, NAN, 0, 0, 0), FL_ERR_ARG);

    FILE *f = fopen(path, "w");
    fputs("{\"version\": 1, \"cores\": 2, \"simd_bits\": 256, \"caches\": []}", f);
    fclose(f);
    assert_int_equal(fl_profile_load(path, &q), FL_ERR_FORMAT);
    f = fopen(path, "w");
    fputs("not json", f);
    fclose(f);
    assert_int_equal(fl_profile_load(path, &q), FL_ERR_FORMAT);
    remove(path);
    assert_int_equal(fl_profile_load("no_such_profile.json", &q), FL_ERR_IO);
}

/* ------------------------------------------------------------ choice by regime */

static void test_memory_bound_picks_cp(void **state) {
    (void)state;
    classifier c;
    classifier_make(&c);
    fl_plan_data d = {.n = CN, .seq = CT, .dim = CD, .x = c.x, .labels = c.labels, .n_labels = CN};
    fl_plan_opts o = classifier_opts(&d, 0.5);
    /* A 256-byte cache (the model's W_hh alone is 4 KiB), slow memory, fast arithmetic. */
    fl_profile p = posed(256, 1e9, 1e9, 1e15);
    fl_plan *plan;
    assert_int_equal(fl_plan_create(c.m, &p, &o, &plan), FL_OK);
    assert_int_equal(fl_plan_metric_kind(plan), FL_METRIC_ACCURACY);
    const fl_plan_point *dense = fl_plan_point_at(plan, 0), *ch = fl_plan_point_at(plan, fl_plan_chosen(plan));
    assert_int_equal(dense->cost.regime, FL_REGIME_MEMORY);
    assert_close(dense->metric, 100.0, 1e-9); /* labels are the dense model's predictions */
    /* Both gate matrices: CP, the parameter-minimising storage, at about the true rank. */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(ch->specs[i].method, FL_METHOD_CP);
        assert_in_range(ch->specs[i].rank, 4, 6);
    }
    /* Among candidates meeting the budget, none stores fewer recurrent-weight parameters. */
    for (size_t k = 0; k < fl_plan_num_points(plan); k++) {
        const fl_plan_point *pt = fl_plan_point_at(plan, k);
        if (pt->meets_budget) assert_true(ch->cost.working_set <= pt->cost.working_set);
    }
    /* Independent check of the budget on the chosen model. */
    double acc = accuracy(fl_plan_model(plan), CN, CT, c.x, c.labels);
    assert_true(100.0 - acc <= 0.5);
    assert_close(acc, ch->metric, 1e-9);
    fl_plan_free(plan);
    classifier_free(&c);
}

static void test_compute_bound_picks_svd(void **state) {
    (void)state;
    classifier c;
    classifier_make(&c);
    fl_plan_data d = {.n = CN, .seq = CT, .dim = CD, .x = c.x, .labels = c.labels, .n_labels = CN};
    fl_plan_opts o = classifier_opts(&d, 0.5);
    /* A 1 GiB cache, very fast memory, slow arithmetic. */
    fl_profile p = posed(1 << 30, 1e12, 1e12, 1e6);
    fl_plan *plan;
    assert_int_equal(fl_plan_create(c.m, &p, &o, &plan), FL_OK);
    const fl_plan_point *dense = fl_plan_point_at(plan, 0), *ch = fl_plan_point_at(plan, fl_plan_chosen(plan));
    assert_int_equal(dense->cost.regime, FL_REGIME_COMPUTE);
    /* SVD at the true rank: fewest flops; CP costs more flops at the same rank. */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(ch->specs[i].method, FL_METHOD_SVD);
        assert_int_equal(ch->specs[i].rank, 4);
    }
    for (size_t k = 0; k < fl_plan_num_points(plan); k++) {
        const fl_plan_point *pt = fl_plan_point_at(plan, k);
        assert_int_not_equal(pt->specs[0].method, FL_METHOD_CP); /* CP never tried when compute-bound */
        if (pt->meets_budget) assert_true(ch->cost.step_flops <= pt->cost.step_flops);
    }
    /* Write, reload and evaluate the planned model independently. */
    const char *path = "test_plan_compute.safetensors";
    assert_int_equal(fl_model_save(fl_plan_model(plan), path), FL_OK);
    fl_model *back;
    assert_int_equal(fl_model_load(path, &back), FL_OK);
    fl_matrix_info info;
    assert_int_equal(fl_model_matrix_info(back, 1, &info), FL_OK);
    assert_int_equal(info.method, FL_METHOD_SVD);
    assert_true(100.0 - accuracy(back, CN, CT, c.x, c.labels) <= 0.5);
    fl_model_free(back);
    remove(path);
    fl_plan_free(plan);
    classifier_free(&c);
}

/* ------------------------------------------------------------ other metrics */

static void test_language_model_budget(void **state) {
    (void)state;
    fl_arch a = {.vocab = 12, .input = 6, .hidden = 16, .layers = 2, .head = FL_HEAD_PER_STEP, .head_out = 12};
    fl_model *m;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 5), FL_OK);
    make_low_rank(m, 3, 1e-3f, 9);
    enum { N = 24, T = 10 };
    int32_t tok[N * T];
    fl_rng r;
    fl_rng_seed(&r, 17);
    for (int i = 0; i < N * T; i++) tok[i] = (int32_t)(fl_rng_next(&r) % 12);
    fl_plan_data d = {.n = N, .seq = T, .tokens = tok};
    fl_plan_opts o = fl_plan_opts_default();
    o.data = &d;
    o.max_loss = 0.02;
    o.verify = 0;
    fl_profile p = posed(256, 1e9, 1e9, 1e15);
    fl_plan *plan;
    assert_int_equal(fl_plan_create(m, &p, &o, &plan), FL_OK);
    assert_int_equal(fl_plan_metric_kind(plan), FL_METRIC_PERPLEXITY);
    const fl_plan_point *ch = fl_plan_point_at(plan, fl_plan_chosen(plan));
    /* Judged as `eval` reads text: the rows as one stream, the state carried; the search reads the
     * first half of it, the certification the second. */
    fl_dataset *half[2];
    fl_eval_result ev[2][2];
    assert_int_equal(fl_dataset_lm(tok, N * T / 2, 12, &half[0]), FL_OK);
    assert_int_equal(fl_dataset_lm(tok + N * T / 2, N * T / 2, 12, &half[1]), FL_OK);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(fl_model_evaluate(m, half[k], 1, 35, &ev[k][0]), FL_OK);
        assert_int_equal(fl_model_evaluate(fl_plan_model(plan), half[k], 1, 35, &ev[k][1]), FL_OK);
        fl_dataset_free(half[k]);
    }
    double ppl_dense = ev[0][0].perplexity, ppl = ev[0][1].perplexity;
    assert_close(fl_plan_point_at(plan, 0)->metric, ppl_dense, 1e-5 * ppl_dense);
    assert_close(ch->metric, ppl, 1e-5 * ppl);
    assert_true(ppl / ppl_dense - 1.0 <= 0.02 + 1e-12);
    const fl_plan_certificate *cert = fl_plan_certificate_of(plan);
    assert_true(cert->available);
    assert_int_equal(cert->count, N * T / 2 - 1);
    assert_close(cert->dense_metric, ev[1][0].perplexity, 1e-5 * ev[1][0].perplexity);
    if (cert->certified) {
        assert_close(ch->cert_metric, ev[1][1].perplexity, 1e-5 * ev[1][1].perplexity);
        assert_close(ch->cert_loss, ev[1][1].perplexity / ev[1][0].perplexity - 1, 1e-5);
        assert_true(ch->cert_bound <= 0.02 && ch->cert_bound >= ch->cert_loss);
    }
    assert_true(ch->cost.params < fl_plan_point_at(plan, 0)->cost.params); /* low rank was found */
    fl_plan_free(plan);
    fl_model_free(m);
}

static void test_deviation_budget(void **state) {
    (void)state;
    fl_arch a = {.input = 5, .hidden = 16, .layers = 1, .head = FL_HEAD_NONE};
    fl_model *m;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 2), FL_OK);
    make_low_rank(m, 2, 1e-4f, 4);
    fl_plan_opts o = fl_plan_opts_default();
    o.max_dev = 0.01;
    o.verify = 0;
    fl_profile p = posed(1 << 30, 1e12, 1e12, 1e6);
    fl_plan *plan;
    assert_int_equal(fl_plan_create(m, &p, &o, &plan), FL_OK);
    assert_int_equal(fl_plan_metric_kind(plan), FL_METRIC_DEVIATION);
    const fl_plan_point *ch = fl_plan_point_at(plan, fl_plan_chosen(plan));
    assert_true(ch->meets_budget && ch->loss <= 0.01);
    assert_int_equal(ch->specs[1].method, FL_METHOD_SVD);
    assert_int_equal(ch->specs[1].rank, 2);
    /* The Pareto front holds the dense point (loss 0) and the chosen one. */
    assert_true(fl_plan_point_at(plan, 0)->pareto);
    assert_true(ch->pareto);
    fl_plan_free(plan);
    fl_model_free(m);
}

/* A model that is already decomposed: the search starts from its dense reconstruction and judges
 * candidates against the model as given. */
static void test_decomposed_input(void **state) {
    (void)state;
    classifier c;
    classifier_make(&c);
    fl_decomp_opts dop = fl_decomp_opts_default();
    fl_mat_spec specs[3] = {{FL_METHOD_SVD, 6}, {FL_METHOD_SVD, 8}, {FL_METHOD_DENSE, 0}};
    dop.specs = specs;
    fl_model *dm;
    assert_int_equal(fl_model_decompose(c.m, &dop, &dm), FL_OK);
    fl_plan_data d = {.n = CN, .seq = CT, .dim = CD, .x = c.x, .labels = c.labels, .n_labels = CN};
    fl_plan_opts o = classifier_opts(&d, 0.5);
    fl_profile p = posed(1 << 30, 1e12, 1e12, 1e6);
    fl_plan *plan;
    assert_int_equal(fl_plan_create(dm, &p, &o, &plan), FL_OK);
    const fl_plan_point *dense = fl_plan_point_at(plan, 0), *ch = fl_plan_point_at(plan, fl_plan_chosen(plan));
    for (int i = 0; i < 3; i++) assert_int_equal(dense->specs[i].method, FL_METHOD_DENSE);
    assert_int_equal(ch->specs[1].method, FL_METHOD_SVD);
    assert_int_equal(ch->specs[1].rank, 4);
    assert_true(100.0 - accuracy(fl_plan_model(plan), CN, CT, c.x, c.labels) <= 0.5);
    fl_plan_free(plan);
    fl_model_free(dm);
    classifier_free(&c);
}

/* ------------------------------------------------------------ bad inputs */

static void test_bad_inputs(void **state) {
    (void)state;
    classifier c;
    classifier_make(&c);
    fl_profile p = posed(256, 1e9, 1e9, 1e15);
    fl_plan *plan = (fl_plan *)&p;
    fl_plan_data d = {.n = CN, .seq = CT, .dim = CD, .x = c.x, .labels = c.labels, .n_labels = CN};
    fl_plan_opts o = classifier_opts(&d, -1.0);
    assert_int_equal(fl_plan_create(c.m, &p, &o, &plan), FL_ERR_ARG); /* budget < 0 */
    assert_null(plan);
    o = classifier_opts(NULL, NAN);
    o.max_dev = -0.5;
    assert_int_equal(fl_plan_create(c.m, &p, &o, &plan), FL_ERR_ARG);
    o = classifier_opts(NULL, 1.0); /* max_loss without data */
    assert_int_equal(fl_plan_create(c.m, &p, &o, &plan), FL_ERR_ARG);

    fl_plan_data bad = d;
    bad.dim = CD - 1; /* features do not fit the model's input */
    o = classifier_opts(&bad, 1.0);
    assert_int_equal(fl_plan_create(c.m, &p, &o, &plan), FL_ERR_SHAPE);
    bad = d;
    bad.n = 0; /* empty */
    o = classifier_opts(&bad, 1.0);
    assert_int_equal(fl_plan_create(c.m, &p, &o, &plan), FL_ERR_DATA);
    int32_t tok[4] = {0};
    bad = (fl_plan_data){.n = 2, .seq = 2, .tokens = tok}; /* ids for a features model */
    o = classifier_opts(&bad, 1.0);
    assert_int_equal(fl_plan_create(c.m, &p, &o, &plan), FL_ERR_SHAPE);
    int32_t labels[CN];
    memcpy(labels, c.labels, sizeof labels);
    labels[5] = 4; /* 4 classes */
    bad = d;
    bad.labels = labels;
    o = classifier_opts(&bad, 1.0);
    assert_int_equal(fl_plan_create(c.m, &p, &o, &plan), FL_ERR_DATA);
    bad = d;
    bad.n_labels = CN - 1;
    o = classifier_opts(&bad, 1.0);
    assert_int_equal(fl_plan_create(c.m, &p, &o, &plan), FL_ERR_SHAPE);
    c.x[7] = NAN;
    o = classifier_opts(&d, 1.0);
    assert_int_equal(fl_plan_create(c.m, &p, &o, &plan), FL_ERR_NONFINITE);
    assert_int_equal(fl_plan_create(c.m, &p, NULL, NULL), FL_ERR_ARG);
    classifier_free(&c);
}

/* Allocation failing at any point of a plan returns FL_ERR_NOMEM and leaks nothing (ASan), with one
 * and with two threads (the sessions' recurrent steps then allocate per-thread scratch and a
 * worker pool: a failure there must leave no NULL scratch behind). */
static void test_alloc_failures(void **state) {
    (void)state;
    classifier c;
    classifier_make(&c);
    fl_plan_data d = {.n = 8, .seq = 4, .dim = CD, .x = c.x, .labels = c.labels, .n_labels = 8};
    fl_profile p = posed(256, 1e9, 1e9, 1e15);
    for (int threads = 1; threads <= 2; threads++) {
        fl_plan_opts o = classifier_opts(&d, 0.5);
        o.max_evals = 6;
        o.threads = threads;
        int failures = 0;
        fl_status st = FL_ERR_NOMEM;
        for (long n = 0; n < 100000 && st != FL_OK; n += 1 + n / 16) {
            fl_plan *plan = NULL;
            fl_alloc_fail_after(n);
            st = fl_plan_create(c.m, &p, &o, &plan);
            fl_alloc_fail_after(-1);
            if (st != FL_OK) {
                assert_int_equal(st, FL_ERR_NOMEM);
                assert_null(plan);
                failures++;
            }
            fl_plan_free(plan);
        }
        assert_int_equal(st, FL_OK);
        assert_true(failures > 10);
    }
    classifier_free(&c);
}

/* ------------------------------------------------------------ CLI */

/* Run a shell command; return its exit status, stderr text in err. */
static int sh(char *err, size_t n, const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[4200];
    snprintf(full, sizeof full, "%s >test_plan_out.txt 2>test_plan_err.txt", cmd);
    int rc = system(full);
    FILE *f = fopen("test_plan_err.txt", "r");
    size_t got = f ? fread(err, 1, n - 1, f) : 0;
    err[got] = 0;
    if (f) fclose(f);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void test_cli(void **state) {
    (void)state;
    const char *cli = getenv("FL_CLI");
    if (!cli) skip();
    classifier c;
    classifier_make(&c);
    assert_int_equal(fl_model_save(c.m, "test_plan_model.safetensors"), FL_OK);
    int64_t xs[3] = {CN, CT, CD}, ls[1] = {CN}, es[3] = {0, CT, CD};
    assert_int_equal(fl_npy_save_f32("test_plan_x.npy", c.x, 3, xs), FL_OK);
    assert_int_equal(fl_npy_save_i32("test_plan_y.npy", c.labels, 1, ls), FL_OK);
    assert_int_equal(fl_npy_save_f32("test_plan_empty.npy", c.x, 3, es), FL_OK);
    const char *pose = "--cache-bytes 256 --bandwidth 1 --flops 1000000 --no-measure --quiet";
    char err[4096];
    /* compress writes a model that keeps the budget, checked here independently */
    int rc = sh(err, sizeof err, "%s compress test_plan_model.safetensors -o test_plan_out.safetensors "
                                 "--data test_plan_x.npy --labels test_plan_y.npy --max-loss 1 %s",
                cli, pose);
    assert_int_equal(rc, 0);
    fl_model *back;
    assert_int_equal(fl_model_load("test_plan_out.safetensors", &back), FL_OK);
    assert_true(fl_model_num_params(back) < fl_model_num_params(c.m));
    assert_true(100.0 - accuracy(back, CN, CT, c.x, c.labels) <= 1.0);
    fl_model_free(back);
    /* --json: the chosen plan, with one entry per matrix, and the regime of the posed machine */
    rc = sh(err, sizeof err, "%s plan test_plan_model.safetensors --json %s", cli, pose);
    assert_int_equal(rc, 0);
    FILE *f = fopen("test_plan_out.txt", "r");
    assert_non_null(f);
    static char text[1 << 20];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = 0;
    cJSON *root = cJSON_Parse(text);
    assert_non_null(root);
    assert_string_equal(cJSON_GetObjectItem(root, "regime")->valuestring, "memory");
    const cJSON *mats = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "chosen"), "matrices");
    assert_int_equal(cJSON_GetArraySize(mats), 3);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(mats, 1), "name")->valuestring, "lstm.weight_hh_l0");
    assert_true(cJSON_GetArraySize(cJSON_GetObjectItem(root, "candidates")) >= 2);
    cJSON_Delete(root);
    /* empty data file -> FL_ERR_DATA; features of the wrong width -> FL_ERR_SHAPE; budget < 0 -> usage */
    rc = sh(err, sizeof err, "%s plan test_plan_model.safetensors --data test_plan_empty.npy %s", cli, pose);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "FL_ERR_DATA"));
    int64_t ws[3] = {CN, CT * 2, CD / 2};
    assert_int_equal(fl_npy_save_f32("test_plan_wide.npy", c.x, 3, ws), FL_OK);
    rc = sh(err, sizeof err, "%s plan test_plan_model.safetensors --data test_plan_wide.npy %s", cli, pose);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "FL_ERR_SHAPE"));
    rc = sh(err, sizeof err, "%s plan test_plan_model.safetensors --data test_plan_x.npy --max-loss -1 %s", cli, pose);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(err, "--max-loss"));
    /* A --profile file that exists but does not load is an error naming it, and is left as it
     * was (not measured over and overwritten). */
    f = fopen("test_plan_badprof.json", "w");
    assert_non_null(f);
    fputs("{\"cores\": 2}", f);
    fclose(f);
    rc = sh(err, sizeof err, "%s profile --profile test_plan_badprof.json --json", cli);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "FL_ERR_FORMAT"));
    assert_non_null(strstr(err, "test_plan_badprof.json"));
    f = fopen("test_plan_badprof.json", "r");
    assert_non_null(f);
    len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = 0;
    assert_string_equal(text, "{\"cores\": 2}");
    const char *files[] = {"test_plan_model.safetensors", "test_plan_out.safetensors", "test_plan_x.npy",
                           "test_plan_y.npy", "test_plan_empty.npy", "test_plan_wide.npy",
                           "test_plan_out.txt", "test_plan_err.txt", "test_plan_badprof.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) remove(files[i]);
    classifier_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cost_dense_in_cache),
        cmocka_unit_test(test_cost_dram_two_threads),
        cmocka_unit_test(test_cost_low_rank),
        cmocka_unit_test(test_cost_batch_terms),
        cmocka_unit_test(test_profile_json_and_override),
        cmocka_unit_test(test_memory_bound_picks_cp),
        cmocka_unit_test(test_compute_bound_picks_svd),
        cmocka_unit_test(test_language_model_budget),
        cmocka_unit_test(test_deviation_budget),
        cmocka_unit_test(test_decomposed_input),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
