/* Session tests: whole-sequence runs against a double-precision scalar forward pass written here
 * (independent of the library's GEMM and kernels), layouts, streaming, reset, bad input with exact
 * statuses, allocation failure. The PyTorch comparison lives in test_golden.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fastlstm/fastlstm.h"
#include "internal.h"

#define TOL 1e-5

/* ------------------------------------------------------------ reference forward (double) */

static double sigm(double x) { return 1.0 / (1.0 + exp(-x)); }

/* Batch-major inputs x (B, T, D) or tok (B, T); h0, c0 (L, B, H) or NULL. Outputs like
 * fl_session_run in batch-major: y (B, T, H|V) or (B, C); hn, cn (L, B, H). */
static void ref_forward(const fl_model *m, int B, int T, const float *x, const int32_t *tok, const float *h0,
                        const float *c0, double *y, double *hn, double *cn) {
    const fl_arch *a = fl_model_arch(m);
    const int L = a->layers, H = a->hidden, D = a->input, G = 4 * H;
    double *in = calloc((size_t)B * T * (D > H ? D : H), sizeof(double));  // (B, T, in_dim)
    double *out = calloc((size_t)B * T * H, sizeof(double));
    double *h = calloc(H, sizeof(double)), *c = calloc(H, sizeof(double)), *gt = calloc(G, sizeof(double));
    assert_non_null(in);
    assert_non_null(out);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int d = 0; d < D; d++)
                in[((size_t)b * T + t) * D + d] =
                    tok ? m->embed[(size_t)tok[b * T + t] * D + d] : x[((size_t)b * T + t) * D + d];
    int in_dim = D;
    for (int l = 0; l < L; l++) {
        const fl_layer *ly = &m->layer[l];
        float *wih = malloc((size_t)G * in_dim * sizeof(float)), *whh = malloc((size_t)G * H * sizeof(float));
        assert_non_null(wih);
        assert_non_null(whh);
        fl_mat_to_dense(&ly->wih, wih);
        fl_mat_to_dense(&ly->whh, whh);
        for (int b = 0; b < B; b++) {
            for (int j = 0; j < H; j++) {
                h[j] = h0 ? h0[((size_t)l * B + b) * H + j] : 0;
                c[j] = c0 ? c0[((size_t)l * B + b) * H + j] : 0;
            }
            for (int t = 0; t < T; t++) {
                const double *xt = in + ((size_t)b * T + t) * in_dim;
                for (int r = 0; r < G; r++) {
                    double s = (double)ly->b_ih[r] + ly->b_hh[r];
                    for (int k = 0; k < in_dim; k++) s += (double)wih[(size_t)r * in_dim + k] * xt[k];
                    for (int k = 0; k < H; k++) s += (double)whh[(size_t)r * H + k] * h[k];
                    gt[r] = s;
                }
                for (int j = 0; j < H; j++) {
                    c[j] = sigm(gt[H + j]) * c[j] + sigm(gt[j]) * tanh(gt[2 * H + j]);
                    h[j] = sigm(gt[3 * H + j]) * tanh(c[j]);
                    out[((size_t)b * T + t) * H + j] = h[j];
                }
            }
            for (int j = 0; j < H; j++) {
                hn[((size_t)l * B + b) * H + j] = h[j];
                cn[((size_t)l * B + b) * H + j] = c[j];
            }
        }
        memcpy(in, out, (size_t)B * T * H * sizeof(double));
        in_dim = H;
        free(wih);
        free(whh);
    }
    if (a->head == FL_HEAD_NONE) {
        memcpy(y, out, (size_t)B * T * H * sizeof(double));
    } else {
        const int V = a->head_out;
        float *hw = malloc((size_t)V * H * sizeof(float));
        assert_non_null(hw);
        fl_mat_to_dense(&m->head, hw);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                if (a->head == FL_HEAD_LAST_STEP && t != T - 1) continue;
                const double *ht = out + ((size_t)b * T + t) * H;
                double *yo = a->head == FL_HEAD_LAST_STEP ? y + (size_t)b * V : y + ((size_t)b * T + t) * V;
                for (int v = 0; v < V; v++) {
                    double s = m->head_b[v];
                    for (int k = 0; k < H; k++) s += (double)hw[(size_t)v * H + k] * ht[k];
                    yo[v] = s;
                }
            }
        free(hw);
    }
    free(in);
    free(out);
    free(h);
    free(c);
    free(gt);
}

/* ------------------------------------------------------------ fixtures */

static fl_model *make_model(int vocab, int D, int H, int L, fl_head_kind head, int out, const fl_mat_spec *specs,
                            uint64_t seed) {
    fl_arch a = {.vocab = vocab, .input = D, .hidden = H, .layers = L, .head = head, .head_out = out};
    fl_model *m = NULL;
    fl_status st = fl_model_create(&a, specs, &m);
    if (st) fail_msg("fl_model_create: %s: %s", fl_status_str(st), fl_last_error());
    assert_int_equal(fl_model_init_random(m, seed), FL_OK);
    return m;
}

static fl_session *make_session(const fl_model *m, int max_batch, int max_seq) {
    fl_session_opts o = fl_session_opts_default();
    o.max_batch = max_batch;
    o.max_seq = max_seq;
    fl_session *s = NULL;
    fl_status st = fl_session_create(m, &o, &s);
    if (st) fail_msg("fl_session_create: %s: %s", fl_status_str(st), fl_last_error());
    return s;
}

static float frand(uint64_t *s, float lo, float hi) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + (hi - lo) * (float)((*s >> 40) / (double)(1ULL << 24));
}

static float *rand_floats(size_t n, uint64_t seed, float scale) {
    float *p = malloc(n * sizeof(float) + 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = frand(&seed, -scale, scale);
    return p;
}

static int32_t *rand_tokens(size_t n, int vocab, uint64_t seed) {
    int32_t *p = malloc(n * sizeof(int32_t) + 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = (int32_t)(frand(&seed, 0, 1) * vocab) % vocab;
    return p;
}

static double maxdiff_fd(const float *a, const double *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d;
    }
    return m;
}

static double maxdiff_ff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d;
    }
    return m;
}

/* ------------------------------------------------------------ tests */

/* Session output, h_n, c_n against the double reference, for several architectures (including SVD
 * and CP matrices, which go through fl_mat_apply's other paths). */
static void test_run_matches_reference(void **state) {
    (void)state;
    fl_mat_spec svd[5] = {{FL_METHOD_SVD, 3}, {FL_METHOD_SVD, 4}, {FL_METHOD_CP, 5}, {FL_METHOD_DENSE, 0},
                          {FL_METHOD_SVD, 2}};
    struct {
        int vocab, D, H, L;
        fl_head_kind head;
        int out, B, T, state;
        const fl_mat_spec *specs;
    } cfg[] = {
        {13, 6, 10, 2, FL_HEAD_PER_STEP, 13, 3, 5, 1, NULL},
        {0, 4, 9, 1, FL_HEAD_LAST_STEP, 3, 2, 7, 0, NULL},
        {0, 5, 17, 3, FL_HEAD_NONE, 0, 4, 3, 1, NULL},
        {0, 8, 6, 2, FL_HEAD_PER_STEP, 5, 2, 4, 1, svd},
    };
    for (size_t ci = 0; ci < sizeof cfg / sizeof *cfg; ci++) {
        fl_model *m = make_model(cfg[ci].vocab, cfg[ci].D, cfg[ci].H, cfg[ci].L, cfg[ci].head, cfg[ci].out,
                                 cfg[ci].specs, 100 + ci);
        const int B = cfg[ci].B, T = cfg[ci].T, L = cfg[ci].L, H = cfg[ci].H;
        fl_session *s = make_session(m, B, T);
        float *x = cfg[ci].vocab ? NULL : rand_floats((size_t)B * T * cfg[ci].D, 5 + ci, 2.0f);
        int32_t *tok = cfg[ci].vocab ? rand_tokens((size_t)B * T, cfg[ci].vocab, 9 + ci) : NULL;
        float *h0 = cfg[ci].state ? rand_floats((size_t)L * B * H, 11 + ci, 0.7f) : NULL;
        float *c0 = cfg[ci].state ? rand_floats((size_t)L * B * H, 13 + ci, 0.7f) : NULL;
        size_t ny = fl_run_output_size(m, B, T), ns = (size_t)L * B * H;
        float *y = calloc(ny, sizeof(float)), *hn = calloc(ns, sizeof(float)), *cn = calloc(ns, sizeof(float));
        double *yr = calloc(ny, sizeof(double)), *hr = calloc(ns, sizeof(double)), *cr = calloc(ns, sizeof(double));
        fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = B, .seq = T, .x = x, .tokens = tok, .h0 = h0, .c0 = c0,
                        .y = y, .hn = hn, .cn = cn};
        fl_status st = fl_session_run(s, &io);
        if (st) fail_msg("config %zu: %s: %s", ci, fl_status_str(st), fl_last_error());
        ref_forward(m, B, T, x, tok, h0, c0, yr, hr, cr);
        double ey = maxdiff_fd(y, yr, ny), eh = maxdiff_fd(hn, hr, ns), ec = maxdiff_fd(cn, cr, ns);
        print_message("config %zu: max|err| y %.2e h %.2e c %.2e\n", ci, ey, eh, ec);
        if (!(ey <= TOL && eh <= TOL && ec <= TOL)) fail_msg("config %zu: error above %g", ci, TOL);
        free(x);
        free(tok);
        free(h0);
        free(c0);
        free(y);
        free(hn);
        free(cn);
        free(yr);
        free(hr);
        free(cr);
        fl_session_free(s);
        fl_model_free(m);
    }
}

/* Time-major equals batch-major; hn may alias h0 and cn alias c0. */
static void test_layouts_and_aliasing(void **state) {
    (void)state;
    const int B = 3, T = 4, D = 5, H = 7, L = 2, V = 6;
    fl_model *m = make_model(0, D, H, L, FL_HEAD_PER_STEP, V, NULL, 21);
    fl_session *s = make_session(m, 4, 8);
    float *x = rand_floats((size_t)B * T * D, 1, 1.5f), *xt = malloc((size_t)B * T * D * sizeof(float));
    float *h0 = rand_floats((size_t)L * B * H, 2, 0.5f), *c0 = rand_floats((size_t)L * B * H, 3, 0.5f);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) memcpy(xt + ((size_t)t * B + b) * D, x + ((size_t)b * T + t) * D, D * sizeof(float));
    size_t ny = (size_t)B * T * V, ns = (size_t)L * B * H;
    float *y1 = calloc(ny, 4), *y2 = calloc(ny, 4), *hn = calloc(ns, 4), *cn = calloc(ns, 4);
    fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = B, .seq = T, .x = x, .h0 = h0, .c0 = c0, .y = y1, .hn = hn, .cn = cn};
    assert_int_equal(fl_session_run(s, &io), FL_OK);
    io = (fl_run_io){.layout = FL_TIME_MAJOR, .batch = B, .seq = T, .x = xt, .h0 = h0, .c0 = c0, .y = y2, .hn = h0, .cn = c0};
    assert_int_equal(fl_session_run(s, &io), FL_OK);  // writes the final state over h0 / c0
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            assert_true(maxdiff_ff(y1 + ((size_t)b * T + t) * V, y2 + ((size_t)t * B + b) * V, V) <= 1e-6);
    assert_true(maxdiff_ff(hn, h0, ns) <= 1e-6);
    assert_true(maxdiff_ff(cn, c0, ns) <= 1e-6);
    free(x);
    free(xt);
    free(h0);
    free(c0);
    free(y1);
    free(y2);
    free(hn);
    free(cn);
    fl_session_free(s);
    fl_model_free(m);
}

/* Streaming step by step equals a whole-sequence run from zero state; run does not touch the
 * streaming state; reset of all streams and of one stream. */
static void test_streaming(void **state) {
    (void)state;
    const int B = 3, T = 6, V = 11, D = 4, H = 9, L = 2;
    fl_model *m = make_model(V, D, H, L, FL_HEAD_PER_STEP, V, NULL, 33);
    fl_session *s = make_session(m, 4, T);
    int32_t *tok = rand_tokens((size_t)B * T, V, 4);  // (B, T)
    float *y = calloc((size_t)B * T * V, 4), *ys = calloc((size_t)T * B * V, 4), *ys2 = calloc((size_t)T * B * V, 4);
    fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = B, .seq = T, .tokens = tok, .y = y};
    int32_t step_tok[4];
    for (int t = 0; t < T; t++) {
        for (int b = 0; b < B; b++) step_tok[b] = tok[b * T + t];
        assert_int_equal(fl_session_step(s, B, NULL, step_tok, ys + (size_t)t * B * V), FL_OK);
        if (t == 2) assert_int_equal(fl_session_run(s, &io), FL_OK);  // must not disturb the streams
    }
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            assert_true(maxdiff_ff(ys + ((size_t)t * B + b) * V, y + ((size_t)b * T + t) * V, V) <= 1e-6);

    // reset all: the same sequence again gives the same outputs
    assert_int_equal(fl_session_reset(s, -1), FL_OK);
    for (int t = 0; t < T; t++) {
        for (int b = 0; b < B; b++) step_tok[b] = tok[b * T + t];
        assert_int_equal(fl_session_step(s, B, NULL, step_tok, ys2 + (size_t)t * B * V), FL_OK);
    }
    assert_memory_equal(ys, ys2, (size_t)T * B * V * sizeof(float));

    // reset one stream after 3 steps: stream 1 restarts, streams 0 and 2 carry on
    assert_int_equal(fl_session_reset(s, -1), FL_OK);
    float out[4 * 11];
    for (int t = 0; t < 3; t++) {
        for (int b = 0; b < B; b++) step_tok[b] = tok[b * T + t];
        assert_int_equal(fl_session_step(s, B, NULL, step_tok, out), FL_OK);
    }
    assert_int_equal(fl_session_reset(s, 1), FL_OK);
    for (int b = 0; b < B; b++) step_tok[b] = tok[b * T + 3];
    step_tok[1] = tok[1 * T + 0];
    assert_int_equal(fl_session_step(s, B, NULL, step_tok, out), FL_OK);
    assert_true(maxdiff_ff(out + 0 * V, ys + ((size_t)3 * B + 0) * V, V) <= 1e-6);
    assert_true(maxdiff_ff(out + 1 * V, ys + ((size_t)0 * B + 1) * V, V) <= 1e-6);
    assert_true(maxdiff_ff(out + 2 * V, ys + ((size_t)3 * B + 2) * V, V) <= 1e-6);

    // fewer streams than max_batch: stream 0 alone continues unaffected by the others
    assert_int_equal(fl_session_reset(s, -1), FL_OK);
    for (int t = 0; t < T; t++) {
        assert_int_equal(fl_session_step(s, 1, NULL, &tok[t], out), FL_OK);
        assert_true(maxdiff_ff(out, ys + (size_t)t * B * V, V) <= 1e-6);
    }
    assert_int_equal(fl_session_reset(s, 4), FL_ERR_ARG);
    free(tok);
    free(y);
    free(ys);
    free(ys2);
    fl_session_free(s);
    fl_model_free(m);
}

/* get_state / set_state: a run's (h_n, c_n) handed to set_state continue as streams exactly like
 * the rest of the sequence in one run; get_state reads back the run's final state; streams past
 * `batch` are untouched; bad arguments and NaN fail with the state unchanged. */
static void test_stream_state(void **state) {
    (void)state;
    const int B = 2, T = 5, T1 = 2, D = 3, H = 6, L = 2, MB = 3;
    const fl_mat_spec specs[4] = {{FL_METHOD_SVD, 2}, {FL_METHOD_DENSE, 0}, {FL_METHOD_DENSE, 0}, {FL_METHOD_CP, 3}};
    fl_model *m = make_model(0, D, H, L, FL_HEAD_NONE, 0, specs, 21);
    fl_session *s = make_session(m, MB, T);
    const size_t ns = (size_t)L * B * H;
    float *x = rand_floats((size_t)T * B * D, 5, 1.0f);  // (T, B, D) time-major
    float *y = calloc((size_t)T * B * H, 4), *y1 = calloc((size_t)T1 * B * H, 4), *ys = calloc((size_t)B * H, 4);
    float *hn = calloc(ns, 4), *cn = calloc(ns, 4), *h1 = calloc(ns, 4), *c1 = calloc(ns, 4);
    float *hg = calloc(ns, 4), *cg = calloc(ns, 4);
    // the whole sequence in one run, and its first T1 steps
    fl_run_io io = {.layout = FL_TIME_MAJOR, .batch = B, .seq = T, .x = x, .y = y, .hn = hn, .cn = cn};
    assert_int_equal(fl_session_run(s, &io), FL_OK);
    fl_run_io io1 = {.layout = FL_TIME_MAJOR, .batch = B, .seq = T1, .x = x, .y = y1, .hn = h1, .cn = c1};
    assert_int_equal(fl_session_run(s, &io1), FL_OK);

    // stream 2 gets some state of its own first; set_state(B = 2) must leave it alone
    float x3[3 * 3] = {0.5f, -0.25f, 1.0f, 0.1f, 0.2f, 0.3f, -1.0f, 0.75f, 0.5f}, y3[3 * 6];
    assert_int_equal(fl_session_step(s, MB, x3, NULL, y3), FL_OK);
    float *before = calloc((size_t)L * MB * H, 4), *after = calloc((size_t)L * MB * H, 4);
    assert_int_equal(fl_session_get_state(s, MB, before, NULL), FL_OK);

    assert_int_equal(fl_session_set_state(s, B, h1, c1), FL_OK);
    assert_int_equal(fl_session_get_state(s, B, hg, cg), FL_OK);
    assert_memory_equal(hg, h1, ns * sizeof(float));
    assert_memory_equal(cg, c1, ns * sizeof(float));
    assert_int_equal(fl_session_get_state(s, MB, after, NULL), FL_OK);
    for (int l = 0; l < L; l++)  // stream 2 of every layer unchanged
        assert_memory_equal(after + ((size_t)l * MB + 2) * H, before + ((size_t)l * MB + 2) * H, H * sizeof(float));

    // steps T1..T-1 continue the run
    for (int t = T1; t < T; t++) {
        assert_int_equal(fl_session_step(s, B, x + (size_t)t * B * D, NULL, ys), FL_OK);
        assert_true(maxdiff_ff(ys, y + (size_t)t * B * H, (size_t)B * H) <= 1e-6);
    }
    assert_int_equal(fl_session_get_state(s, B, hg, cg), FL_OK);
    assert_true(maxdiff_ff(hg, hn, ns) <= 1e-6);
    assert_true(maxdiff_ff(cg, cn, ns) <= 1e-6);
    assert_int_equal(fl_session_get_state(s, B, NULL, cg), FL_OK);  // one half only
    assert_true(maxdiff_ff(cg, cn, ns) <= 1e-6);

    // errors leave the state as it was
    float *nan_h = calloc(ns, 4);
    nan_h[(size_t)(1 * B + 1) * H + 4] = NAN;  // layer 1, stream 1, unit 4
    assert_int_equal(fl_session_set_state(s, B, h1, nan_h), FL_ERR_NONFINITE);
    assert_non_null(strstr(fl_last_error(), "c[layer 1, stream 1, unit 4]"));
    assert_int_equal(fl_session_set_state(s, 0, h1, c1), FL_ERR_ARG);
    assert_int_equal(fl_session_set_state(s, MB + 1, h1, c1), FL_ERR_ARG);
    assert_non_null(strstr(fl_last_error(), "batch 4 outside [1, 3]"));
    assert_int_equal(fl_session_set_state(NULL, B, h1, c1), FL_ERR_ARG);
    assert_int_equal(fl_session_get_state(s, B, hg, cg), FL_OK);
    assert_true(maxdiff_ff(hg, hn, ns) <= 1e-6);
    assert_true(maxdiff_ff(cg, cn, ns) <= 1e-6);
    assert_int_equal(fl_session_get_state(s, B, NULL, NULL), FL_ERR_ARG);
    assert_int_equal(fl_session_get_state(s, 0, hg, cg), FL_ERR_ARG);
    assert_int_equal(fl_session_get_state(NULL, B, hg, cg), FL_ERR_ARG);

    // NULL halves set zeros: the same as a reset of those streams
    assert_int_equal(fl_session_set_state(s, B, NULL, NULL), FL_OK);
    assert_int_equal(fl_session_step(s, B, x, NULL, ys), FL_OK);
    assert_true(maxdiff_ff(ys, y, (size_t)B * H) <= 1e-6);

    free(before);
    free(after);
    free(nan_h);
    free(x);
    free(y);
    free(y1);
    free(ys);
    free(hn);
    free(cn);
    free(h1);
    free(c1);
    free(hg);
    free(cg);
    fl_session_free(s);
    fl_model_free(m);
}

/* A last-step head gives the per-step head's output at the last step (same weights). */
static void test_last_step_head(void **state) {
    (void)state;
    const int B = 2, T = 5, D = 3, H = 8, C = 4;
    fl_model *mp = make_model(0, D, H, 2, FL_HEAD_PER_STEP, C, NULL, 44);
    fl_model *ml = make_model(0, D, H, 2, FL_HEAD_LAST_STEP, C, NULL, 45);
    assert_int_equal(mp->n_params, ml->n_params);
    memcpy(ml->params, mp->params, mp->n_params * sizeof(float));
    fl_session *sp = make_session(mp, B, T), *sl = make_session(ml, B, T);
    float *x = rand_floats((size_t)B * T * D, 6, 1.0f);
    assert_int_equal(fl_run_output_size(ml, B, T), (size_t)B * C);
    assert_int_equal(fl_run_output_size(mp, B, T), (size_t)B * T * C);
    float *yp = calloc((size_t)B * T * C, 4), *yl = calloc((size_t)B * C, 4);
    fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = B, .seq = T, .x = x, .y = yp};
    assert_int_equal(fl_session_run(sp, &io), FL_OK);
    io.y = yl;
    assert_int_equal(fl_session_run(sl, &io), FL_OK);
    for (int b = 0; b < B; b++) assert_true(maxdiff_ff(yl + (size_t)b * C, yp + ((size_t)b * T + T - 1) * C, C) <= 1e-6);
    free(x);
    free(yp);
    free(yl);
    fl_session_free(sp);
    fl_session_free(sl);
    fl_model_free(mp);
    fl_model_free(ml);
}

/* Bad input: the exact status, a message, and nothing written to y. */
static void test_bad_inputs(void **state) {
    (void)state;
    const int V = 10, D = 3, H = 5, L = 2;
    fl_model *mt = make_model(V, D, H, L, FL_HEAD_NONE, 0, NULL, 55);
    fl_model *mf = make_model(0, D, H, L, FL_HEAD_PER_STEP, 4, NULL, 56);
    fl_session *st_ = make_session(mt, 2, 4), *sf = make_session(mf, 2, 4);
    int32_t tok[3 * 5] = {0};
    float x[3 * 5 * 3] = {0}, y[3 * 5 * 5], h0[2 * 2 * 5] = {0};
    for (size_t i = 0; i < sizeof y / sizeof *y; i++) y[i] = 7.0f;
    fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = 2, .seq = 4, .tokens = tok, .y = y};
    assert_int_equal(fl_session_run(st_, &io), FL_OK);

#define EXPECT(sess, status)                                                       \
    do {                                                                           \
        for (size_t i = 0; i < sizeof y / sizeof *y; i++) y[i] = 7.0f;             \
        assert_int_equal(fl_session_run(sess, &io), status);                       \
        assert_true(strlen(fl_last_error()) > 0);                                  \
        for (size_t i = 0; i < sizeof y / sizeof *y; i++) assert_true(y[i] == 7.0f); \
    } while (0)

    io.batch = 3;  // > max_batch
    EXPECT(st_, FL_ERR_ARG);
    assert_non_null(strstr(fl_last_error(), "max_batch"));
    io.batch = 0;
    EXPECT(st_, FL_ERR_ARG);
    io.batch = 2;
    io.seq = 5;  // > max_seq
    EXPECT(st_, FL_ERR_ARG);
    assert_non_null(strstr(fl_last_error(), "max_seq"));
    io.seq = 4;
    tok[1 * 4 + 2] = V;  // out of range at batch 1, step 2
    EXPECT(st_, FL_ERR_ARG);
    assert_non_null(strstr(fl_last_error(), "batch 1, step 2"));
    tok[1 * 4 + 2] = -1;
    EXPECT(st_, FL_ERR_ARG);
    io.layout = FL_TIME_MAJOR;  // same flat index is (step 1, batch 0) in time-major
    EXPECT(st_, FL_ERR_ARG);
    assert_non_null(strstr(fl_last_error(), "batch 0, step 3"));
    tok[1 * 4 + 2] = 0;
    io.layout = (fl_layout)7;
    EXPECT(st_, FL_ERR_ARG);
    io.layout = FL_BATCH_MAJOR;
    io.x = x;  // both x and tokens
    EXPECT(st_, FL_ERR_ARG);
    io.tokens = NULL;  // features to a token model
    EXPECT(st_, FL_ERR_ARG);
    io.tokens = tok;
    io.x = NULL;
    io.y = NULL;
    assert_int_equal(fl_session_run(st_, &io), FL_ERR_ARG);
    io.y = y;
    assert_int_equal(fl_session_run(st_, NULL), FL_ERR_ARG);
    assert_int_equal(fl_session_run(NULL, &io), FL_ERR_ARG);

    // feature model: NaN / Inf in x, h0, c0
    io = (fl_run_io){.layout = FL_BATCH_MAJOR, .batch = 2, .seq = 4, .x = x, .y = y};
    assert_int_equal(fl_session_run(sf, &io), FL_OK);
    x[(1 * 4 + 3) * D + 2] = NAN;  // batch 1, step 3
    EXPECT(sf, FL_ERR_NONFINITE);
    assert_non_null(strstr(fl_last_error(), "batch 1, step 3"));
    x[(1 * 4 + 3) * D + 2] = INFINITY;
    EXPECT(sf, FL_ERR_NONFINITE);
    x[(1 * 4 + 3) * D + 2] = 0;
    io.tokens = tok;  // tokens to a feature model
    EXPECT(sf, FL_ERR_ARG);
    io.tokens = NULL;
    h0[1 * 2 * H + 1 * H + 4] = NAN;  // layer 1, batch 1
    io.h0 = h0;
    EXPECT(sf, FL_ERR_NONFINITE);
    assert_non_null(strstr(fl_last_error(), "h0[layer 1, batch 1"));
    io.h0 = NULL;
    io.c0 = h0;
    EXPECT(sf, FL_ERR_NONFINITE);
    assert_non_null(strstr(fl_last_error(), "c0"));
    io.c0 = NULL;
    assert_int_equal(fl_session_run(sf, &io), FL_OK);
#undef EXPECT

    // streaming
    float ys[2 * 5];
    assert_int_equal(fl_session_step(st_, 3, NULL, tok, ys), FL_ERR_ARG);
    assert_int_equal(fl_session_step(st_, 0, NULL, tok, ys), FL_ERR_ARG);
    tok[1] = V;
    assert_int_equal(fl_session_step(st_, 2, NULL, tok, ys), FL_ERR_ARG);
    tok[1] = 0;
    assert_int_equal(fl_session_step(st_, 2, x, NULL, ys), FL_ERR_ARG);
    assert_int_equal(fl_session_step(st_, 2, NULL, tok, NULL), FL_ERR_ARG);
    assert_int_equal(fl_session_step(st_, 2, NULL, tok, ys), FL_OK);
    x[4] = -INFINITY;  // stream 1, feature 1
    assert_int_equal(fl_session_step(sf, 2, x, NULL, ys), FL_ERR_NONFINITE);
    assert_non_null(strstr(fl_last_error(), "stream 1"));
    x[4] = 0;
    assert_int_equal(fl_session_step(sf, 2, x, NULL, ys), FL_OK);
    assert_int_equal(fl_session_step(NULL, 1, x, NULL, ys), FL_ERR_ARG);
    assert_int_equal(fl_session_reset(NULL, 0), FL_ERR_ARG);

    // threads
    assert_int_equal(fl_session_set_threads(sf, 0), FL_ERR_ARG);
    assert_int_equal(fl_session_set_threads(NULL, 1), FL_ERR_ARG);
    assert_int_equal(fl_session_set_threads(sf, 2), FL_OK);
    assert_int_equal(fl_session_set_threads(sf, 1), FL_OK);

    fl_session_free(st_);
    fl_session_free(sf);
    fl_model_free(mt);
    fl_model_free(mf);
}

/* More threads give the same results (H large enough for the recurrent step to split). */
static void test_threads(void **state) {
    (void)state;
    const int B = 2, T = 3, D = 7, H = 160, L = 2;
    fl_model *m = make_model(0, D, H, L, FL_HEAD_NONE, 0, NULL, 88);
    fl_session *s = make_session(m, B, T);
    float *x = rand_floats((size_t)B * T * D, 8, 1.0f);
    size_t ny = (size_t)B * T * H;
    float *y1 = calloc(ny, 4), *y2 = calloc(ny, 4), *s1 = calloc((size_t)B * H, 4), *s2 = calloc((size_t)B * H, 4);
    fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = B, .seq = T, .x = x, .y = y1};
    assert_int_equal(fl_session_run(s, &io), FL_OK);
    assert_int_equal(fl_session_step(s, B, x, NULL, s1), FL_OK);
    assert_int_equal(fl_session_set_threads(s, 2), FL_OK);
    io.y = y2;
    assert_int_equal(fl_session_run(s, &io), FL_OK);
    assert_int_equal(fl_session_reset(s, -1), FL_OK);
    assert_int_equal(fl_session_step(s, B, x, NULL, s2), FL_OK);
    assert_int_equal(fl_session_set_threads(s, 1), FL_OK);
    assert_true(maxdiff_ff(y1, y2, ny) <= 1e-6);
    assert_true(maxdiff_ff(s1, s2, (size_t)B * H) <= 1e-6);
    free(x);
    free(y1);
    free(y2);
    free(s1);
    free(s2);
    fl_session_free(s);
    fl_model_free(m);
}

/* Create: bad options, NULL arguments, defaults. */
static void test_create_args(void **state) {
    (void)state;
    fl_model *m = make_model(0, 3, 4, 1, FL_HEAD_NONE, 0, NULL, 66);
    fl_session *s = (fl_session *)&s;
    fl_session_opts o = fl_session_opts_default();
    assert_int_equal(o.max_batch, 1);
    assert_int_equal(o.max_seq, 256);
    assert_int_equal(o.threads, 1);
    o.max_batch = 0;
    assert_int_equal(fl_session_create(m, &o, &s), FL_ERR_ARG);
    assert_null(s);
    o = fl_session_opts_default();
    o.max_seq = -1;
    assert_int_equal(fl_session_create(m, &o, &s), FL_ERR_ARG);
    o = fl_session_opts_default();
    o.threads = -1; /* 0 means the model's planned count (none here: 1) */
    assert_int_equal(fl_session_create(m, &o, &s), FL_ERR_ARG);
    o = fl_session_opts_default();
    o.max_batch = 1 << 20;
    o.max_seq = 1 << 20;
    assert_int_equal(fl_session_create(m, &o, &s), FL_ERR_ARG);
    assert_int_equal(fl_session_create(NULL, NULL, &s), FL_ERR_ARG);
    assert_int_equal(fl_session_create(m, NULL, NULL), FL_ERR_ARG);
    assert_int_equal(fl_session_create(m, NULL, &s), FL_OK);  // defaults
    float x[256 * 3] = {0}, y[256 * 4];
    fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = 1, .seq = 256, .x = x, .y = y};
    assert_int_equal(fl_session_run(s, &io), FL_OK);
    io.batch = 2;
    assert_int_equal(fl_session_run(s, &io), FL_ERR_ARG);
    fl_session_free(s);
    fl_session_free(NULL);
    assert_int_equal(fl_run_output_size(m, 2, 3), (size_t)2 * 3 * 4);
    assert_int_equal(fl_run_output_size(m, 0, 3), 0);
    assert_int_equal(fl_run_output_size(NULL, 1, 1), 0);
    fl_model_free(m);
}

/* Model description functions accept NULL; too-large architectures say which size is too large. */
static void test_model_args(void **state) {
    (void)state;
    assert_int_equal(fl_model_num_matrices(NULL), 0);
    assert_null(fl_model_arch(NULL));
    assert_int_equal(fl_model_num_params(NULL), 0);
    assert_int_equal(fl_model_flops_per_step(NULL), 0);
    fl_model *m = (fl_model *)&m;
    fl_arch a = {.vocab = 0, .input = 8, .hidden = 1 << 14, .layers = 1, .head = FL_HEAD_NONE, .head_out = 0};
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_ERR_ARG);
    assert_null(m);
    assert_non_null(strstr(fl_last_error(), "hidden 16384"));
    a = (fl_arch){.vocab = 1 << 20, .input = 1 << 10, .hidden = 4, .layers = 1, .head = FL_HEAD_NONE, .head_out = 0};
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_ERR_ARG);
    assert_non_null(strstr(fl_last_error(), "embedding of vocab 1048576 x input 1024"));
    a = (fl_arch){.vocab = 0, .input = 4, .hidden = 4, .layers = 1025, .head = FL_HEAD_NONE, .head_out = 0};
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_ERR_ARG);
    assert_non_null(strstr(fl_last_error(), "layers 1025"));
    a = (fl_arch){.vocab = 0, .input = 4, .hidden = 4, .layers = 1, .head = FL_HEAD_LAST_STEP, .head_out = 1 << 29};
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_ERR_ARG);
    assert_non_null(strstr(fl_last_error(), "head_out 536870912 x hidden 4"));
    /* Sizes near 2^31: 4 * hidden * input would overflow int64 if multiplied before checking. */
    a = (fl_arch){.vocab = 0, .input = 2130706178, .hidden = 2130706178, .layers = 1, .head = FL_HEAD_NONE, .head_out = 0};
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_ERR_ARG);
    assert_non_null(strstr(fl_last_error(), "below 2^30"));
}

/* Every allocation failure during create returns FL_ERR_NOMEM, sets *out = NULL and leaks nothing
 * (ASan checks the last part). */
static void test_alloc_failure(void **state) {
    (void)state;
    fl_model *m = make_model(7, 3, 5, 3, FL_HEAD_PER_STEP, 7, NULL, 77);
    fl_session_opts o = fl_session_opts_default();
    o.max_batch = 2;
    o.max_seq = 3;
    int failures = 0;
    for (long n = 0; n < 1000; n++) {
        fl_session *s = (fl_session *)&s;
        fl_alloc_fail_after(n);
        fl_status st = fl_session_create(m, &o, &s);
        fl_alloc_fail_after(-1);
        if (st == FL_OK) {
            assert_non_null(s);
            fl_session_free(s);
            break;
        }
        assert_int_equal(st, FL_ERR_NOMEM);
        assert_null(s);
        failures++;
    }
    print_message("%d allocation points in fl_session_create\n", failures);
    assert_true(failures >= 3);
    fl_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_matches_reference),
        cmocka_unit_test(test_layouts_and_aliasing),
        cmocka_unit_test(test_streaming),
        cmocka_unit_test(test_stream_state),
        cmocka_unit_test(test_last_step_head),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_create_args),
        cmocka_unit_test(test_model_args),
        cmocka_unit_test(test_alloc_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
