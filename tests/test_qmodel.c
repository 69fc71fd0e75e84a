/* int8 / bf16 matrices in the model (src/core/qmat.c), the model file and the session:
 * - fl_model_quantize: precision per matrix in fl_model_matrix_info, masters equal to the dequantized
 *   weights, CP refused, f32 back;
 * - file round trips (dense and SVD, int8, bf16, mixed): weights bit-identical, the file rewritten
 *   byte for byte, format_version 2 (1 for an all-f32 model), tensors stored as I8 + .scale / BF16;
 * - a session on a quantized one-layer model against a reference written here from the dequantized
 *   weights with the same activation quantization (fl_quant_act_u8, the rule tests/quant_ref.py
 *   emulates), exact int32 sums, double elsewhere; the head and the all-steps projection through
 *   fl_mat_apply (67 rows). ctest runs this at the CPU's level and again with FL_KERNELS=ref;
 * - bad files refused with the exact status and a message: scale of the wrong shape, NaN scale, I8
 *   where f32 is declared and F32 where int8 is, a weight of -128, a missing scale, int8 in a
 *   version-1 file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "memload.h"
#include "qmat.h"
#include "quantize.h"
#include "testutil.h"
#include "fastlstm/plan.h"

static const fl_arch ARCH2 = {.vocab = 0, .input = 7, .hidden = 17, .layers = 2, .head = FL_HEAD_PER_STEP, .head_out = 5};
static const fl_arch ARCH1 = {.vocab = 0, .input = 7, .hidden = 17, .layers = 1, .head = FL_HEAD_NONE, .head_out = 0};

/* A random model of arch, all matrices SVD rank 5 when svd, then with every matrix in p. */
static fl_model *make(const fl_arch *a, bool svd, fl_precision p) {
    fl_mat_spec specs[8];
    size_t nmat = fl_arch_num_matrices(a);
    for (size_t i = 0; i < nmat; i++) specs[i] = (fl_mat_spec){svd ? FL_METHOD_SVD : FL_METHOD_DENSE, svd ? 5 : 0};
    fl_model *m, *q;
    assert_int_equal(fl_model_create(a, specs, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 11), FL_OK);
    fl_precision prec[8];
    for (size_t i = 0; i < nmat; i++) prec[i] = p;
    assert_int_equal(fl_model_quantize(m, prec, &q), FL_OK);
    fl_model_free(m);
    return q;
}

static unsigned char *read_all(const char *path, size_t *n) {
    unsigned char *b;
    *n = file_read(path, &b);
    return b;
}

/* Whether the binary file at path holds needle. */
static bool holds(const char *path, const char *needle) {
    size_t n;
    unsigned char *b = read_all(path, &n);
    const size_t k = strlen(needle);
    bool found = false;
    for (size_t i = 0; !found && i + k <= n; i++) found = memcmp(b + i, needle, k) == 0;
    free(b);
    return found;
}

/* ------------------------------------------------------------ model and file */

static void check_masters(const fl_model *m) {
    for (size_t i = 0; i < fl_model_num_matrices(m); i++) {
        const fl_mat *w = fl_model_mat_const(m, i);
        for (int j = 0; w->qf && j < fl_mat_num_factors(w); j++) {
            const fl_qfactor *f = &w->qf[j];
            size_t n = (size_t)f->rows * f->K;
            if (w->precision == FL_PRECISION_BF16) {
                for (size_t e = 0; e < n; e++) assert_true(fl_bf16_to_f32(fl_bf16_from_f32(f->master[e])) == f->master[e]);
                continue;
            }
            int8_t *q = malloc(n + 1);
            fl_qfactor_get_i8(f, q);
            for (size_t e = 0; e < n; e++) {
                assert_true(q[e] >= -127);
                assert_true(f->master[e] == f->wscale[e / f->K] * (float)q[e]);
            }
            free(q);
        }
    }
}

static void roundtrip(fl_model *q, const char *name) {
    check_masters(q);
    assert_int_equal(fl_model_save(q, tmp_path(name)), FL_OK);
    fl_model *l;
    assert_int_equal(fl_model_load(tmp_path(name), &l), FL_OK);
    assert_int_equal(l->n_params, q->n_params);
    assert_memory_equal(l->params, q->params, q->n_params * sizeof(float));
    for (size_t i = 0; i < fl_model_num_matrices(q); i++) {
        fl_matrix_info a, b;
        assert_int_equal(fl_model_matrix_info(q, i, &a), FL_OK);
        assert_int_equal(fl_model_matrix_info(l, i, &b), FL_OK);
        assert_int_equal(a.precision, b.precision);
        assert_int_equal(a.bytes, b.bytes);
    }
    assert_int_equal(fl_model_save(l, tmp_path("again.safetensors")), FL_OK);
    size_t n1, n2;
    unsigned char *b1 = read_all(tmp_path(name), &n1), *b2 = read_all(tmp_path("again.safetensors"), &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);
    free(b1);
    free(b2);
    fl_model_free(l);
}

static void test_roundtrip(void **state) {
    (void)state;
    const fl_precision ps[2] = {FL_PRECISION_INT8, FL_PRECISION_BF16};
    for (int svd = 0; svd < 2; svd++)
        for (int k = 0; k < 2; k++) {
            fl_model *q = make(&ARCH2, svd, ps[k]);
            fl_matrix_info mi;
            assert_int_equal(fl_model_matrix_info(q, 1, &mi), FL_OK);
            assert_int_equal(mi.precision, ps[k]);
            size_t scales = ps[k] == FL_PRECISION_INT8 ? 4 * (size_t)(svd ? 68 + 5 : 68) : 0;
            assert_int_equal(mi.bytes, mi.params * (ps[k] == FL_PRECISION_INT8 ? 1 : 2) + scales);
            roundtrip(q, "q.safetensors");
            assert_true(holds(tmp_path("q.safetensors"), "\"format_version\":\"2\""));
            assert_true(holds(tmp_path("q.safetensors"), ps[k] == FL_PRECISION_INT8 ? "\"I8\"" : "\"BF16\""));
            if (ps[k] == FL_PRECISION_INT8)
                assert_true(holds(tmp_path("q.safetensors"), svd ? "lstm.weight_hh_l1.U.scale" : "head.weight.scale"));
            fl_model_free(q);
        }
    /* Mixed: ih int8, hh bf16, head f32; then back to f32 (version 1 again). */
    fl_model *m = make(&ARCH2, false, FL_PRECISION_F32), *q, *f;
    fl_precision mix[5] = {FL_PRECISION_INT8, FL_PRECISION_BF16, FL_PRECISION_INT8, FL_PRECISION_BF16, FL_PRECISION_F32};
    assert_int_equal(fl_model_quantize(m, mix, &q), FL_OK);
    roundtrip(q, "mix.safetensors");
    fl_precision f32[5] = {0};
    assert_int_equal(fl_model_quantize(q, f32, &f), FL_OK);
    assert_memory_equal(f->params, q->params, q->n_params * sizeof(float));
    assert_int_equal(fl_model_save(f, tmp_path("f.safetensors")), FL_OK);
    assert_true(holds(tmp_path("f.safetensors"), "\"format_version\":\"1\""));
    fl_model_free(m);
    fl_model_free(q);
    fl_model_free(f);
}

static void test_refused(void **state) {
    (void)state;
    fl_model *m, *q = (fl_model *)1;
    fl_mat_spec specs[5] = {{FL_METHOD_CP, 3}, {FL_METHOD_DENSE, 0}, {FL_METHOD_DENSE, 0}, {FL_METHOD_DENSE, 0}, {FL_METHOD_DENSE, 0}};
    assert_int_equal(fl_model_create(&ARCH2, specs, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 1), FL_OK);
    fl_precision p[5] = {FL_PRECISION_INT8, 0, 0, 0, 0};
    assert_int_equal(fl_model_quantize(m, p, &q), FL_ERR_UNSUPPORTED);
    assert_null(q);
    assert_non_null(strstr(fl_last_error(), "lstm.weight_ih_l0"));
    p[0] = (fl_precision)7;
    assert_int_equal(fl_model_quantize(m, p, &q), FL_ERR_ARG);
    fl_model_free(m);
}

/* ------------------------------------------------------------ runtime */

/* y (rows) += F x through the rule of the kernels: int8 exact int32 sums of the u8-quantized x. */
static void ref_factor(const fl_qfactor *f, fl_precision p, const float *x, double *y) {
    if (p == FL_PRECISION_BF16) {
        for (int r = 0; r < f->rows; r++)
            for (int k = 0; k < f->K; k++) y[r] += (double)f->master[(size_t)r * f->K + k] * x[k];
        return;
    }
    uint8_t xq[64];
    float xs;
    fl_quant_act_u8(1, f->K, x, f->K, xq, fl_quant_act_ld(f->K), &xs);
    int8_t *q = malloc((size_t)f->rows * f->K);
    fl_qfactor_get_i8(f, q);
    for (int r = 0; r < f->rows; r++) {
        int32_t acc = 0;
        for (int k = 0; k < f->K; k++) acc += q[(size_t)r * f->K + k] * ((int)xq[k] - 128);
        y[r] += (double)xs * f->wscale[r] * acc;
    }
    free(q);
}

/* y (rows) += W x for a quantized dense or SVD matrix (SVD's rank-R intermediate quantized as f32). */
static void ref_apply(const fl_mat *w, const float *x, double *y) {
    if (w->method == FL_METHOD_DENSE) {
        ref_factor(&w->qf[0], w->precision, x, y);
        return;
    }
    double t[64] = {0};
    float tf[64];
    ref_factor(&w->qf[1], w->precision, x, t);
    for (int r = 0; r < w->rank; r++) tf[r] = (float)t[r];
    ref_factor(&w->qf[0], w->precision, tf, y);
}

static double sig(double v) { return 1.0 / (1.0 + exp(-v)); }

static void test_session(void **state) {
    (void)state;
    enum { B = 3, T = 6, D = 7, H = 17 };
    const fl_precision ps[2] = {FL_PRECISION_INT8, FL_PRECISION_BF16};
    for (int svd = 0; svd < 2; svd++)
        for (int k = 0; k < 2; k++) {
            fl_model *m = make(&ARCH1, svd, ps[k]);
            float x[T * B * D], y[T * B * H];
            uint64_t s = 5;
            for (int i = 0; i < T * B * D; i++) {
                s = s * 6364136223846793005ULL + 1442695040888963407ULL;
                x[i] = (float)((s >> 40) / (double)(1 << 24)) * 4 - 2;
            }
            fl_session_opts o = fl_session_opts_default();
            o.max_batch = B;
            o.max_seq = T;
            fl_session *ss;
            assert_int_equal(fl_session_create(m, &o, &ss), FL_OK);
            fl_run_io io = {.layout = FL_TIME_MAJOR, .batch = B, .seq = T, .x = x, .y = y};
            assert_int_equal(fl_session_run(ss, &io), FL_OK);
            fl_session_free(ss);
            const fl_layer *ly = &m->layer[0];
            double c[B][H] = {{0}};
            const float zero[H] = {0};
            for (int t = 0; t < T; t++)
                for (int b = 0; b < B; b++) {
                    double g[4 * H];
                    for (int r = 0; r < 4 * H; r++) g[r] = (double)ly->b_ih[r] + ly->b_hh[r];
                    ref_apply(&ly->wih, x + (size_t)(t * B + b) * D, g);
                    ref_apply(&ly->whh, t ? y + (size_t)((t - 1) * B + b) * H : zero, g); /* the session's h */
                    for (int j = 0; j < H; j++) {
                        c[b][j] = sig(g[H + j]) * c[b][j] + sig(g[j]) * tanh(g[2 * H + j]);
                        double h = sig(g[3 * H + j]) * tanh(c[b][j]);
                        float got = y[(size_t)(t * B + b) * H + j];
                        if (fabs(got - h) > 2e-5)
                            fail_msg("%s %s t %d b %d j %d: %g, reference %g", svd ? "svd" : "dense",
                                     fl_precision_name(ps[k]), t, b, j, (double)got, h);
                    }
                }
            fl_model_free(m);
        }
}

/* The head and a 67-row projection through fl_mat_apply, beta 0 and 1. */
static void test_apply(void **state) {
    (void)state;
    enum { N = 67 };
    for (int svd = 0; svd < 2; svd++)
        for (int p = 1; p <= 2; p++) {
            fl_model *m = make(&ARCH2, svd, (fl_precision)p);
            const fl_mat *mats[2] = {&m->head, &m->layer[0].wih};
            for (int i = 0; i < 2; i++) {
                const fl_mat *w = mats[i];
                float *x = malloc(sizeof(float) * N * w->cols), *y = malloc(sizeof(float) * N * w->rows);
                float *ws = malloc(sizeof(float) * (fl_mat_apply_workspace(w, N) + 1));
                for (int e = 0; e < N * w->cols; e++) x[e] = sinf(0.37f * (float)e);
                for (int e = 0; e < N * w->rows; e++) y[e] = 1.0f;
                fl_mat_apply(w, N, x, w->cols, 1.0f, y, w->rows, ws);
                for (int beta = 1; beta >= 0; beta--) {
                    for (int n = 0; n < N; n++) {
                        double ref[128];
                        for (int r = 0; r < w->rows; r++) ref[r] = beta;
                        ref_apply(w, x + (size_t)n * w->cols, ref);
                        for (int r = 0; r < w->rows; r++)
                            if (fabs(y[(size_t)n * w->rows + r] - ref[r]) > 1e-5)
                                fail_msg("matrix %d p %d n %d row %d: %g vs %g", i, p, n, r,
                                         (double)y[(size_t)n * w->rows + r], ref[r]);
                    }
                    fl_mat_apply(w, N, x, w->cols, 0.0f, y, w->rows, ws);
                }
                free(x);
                free(y);
                free(ws);
            }
            fl_model_free(m);
        }
}

/* ------------------------------------------------------------ cost model */

/* The memory term streams 1 (int8), 2 (bf16) or 4 bytes per weight; a CP matrix stays at 4. */
static void test_cost_bytes(void **state) {
    (void)state;
    fl_arch a = {.input = 3, .hidden = 2, .layers = 1, .head = FL_HEAD_PER_STEP, .head_out = 5};
    fl_profile p = {0};
    p.cores = 1;
    p.n_levels = 1;
    p.level[0] = (fl_cache_level){.level = 3, .bytes = 4096, .shared_cpus = 1, .bandwidth = 100.0};
    p.dram_bandwidth = 10.0;
    p.gemm_flops = 1000.0;
    p.gemv_flops = 30.0;
    fl_cost c32, c8, cb;
    fl_cost_term t32[3], t8[3], tb[3];
    const fl_precision i8[3] = {FL_PRECISION_INT8, FL_PRECISION_INT8, FL_PRECISION_INT8};
    const fl_precision mix[3] = {FL_PRECISION_F32, FL_PRECISION_BF16, FL_PRECISION_INT8};
    assert_int_equal(fl_cost_predict_terms(&p, &a, NULL, 2, 4, 1, &c32, t32), FL_OK);
    assert_int_equal(fl_cost_predict_prec(&p, &a, NULL, i8, 2, 4, 1, &c8, t8), FL_OK);
    assert_int_equal(fl_cost_predict_prec(&p, &a, NULL, mix, 2, 4, 1, &cb, tb), FL_OK);
    for (int i = 0; i < 3; i++) {
        assert_true(t8[i].bytes * 4 == t32[i].bytes);
        assert_true(tb[i].bytes * (i == 0 ? 1 : i == 1 ? 2 : 4) == t32[i].bytes);
    }
    assert_true(c8.step_bytes * 4 == c32.step_bytes);
    assert_true(c8.mem_seconds < c32.mem_seconds);
    fl_mat_spec cp[3] = {{FL_METHOD_DENSE, 0}, {FL_METHOD_CP, 2}, {FL_METHOD_DENSE, 0}};
    assert_int_equal(fl_cost_predict_prec(&p, &a, cp, i8, 2, 4, 1, &c8, t8), FL_OK);
    assert_int_equal(fl_cost_predict_terms(&p, &a, cp, 2, 4, 1, &c32, t32), FL_OK);
    assert_true(t8[1].bytes == t32[1].bytes);
    const fl_precision bad[3] = {FL_PRECISION_F32, (fl_precision)9, FL_PRECISION_F32};
    assert_int_equal(fl_cost_predict_prec(&p, &a, NULL, bad, 2, 4, 1, &c8, NULL), FL_ERR_ARG);
}

/* ------------------------------------------------------------ bad files */

/* Rebuild a safetensors buffer from root (header) and data. */
static unsigned char *rebuild(cJSON *root, const unsigned char *data, size_t dn, size_t *out_n) {
    char *json = cJSON_PrintUnformatted(root);
    size_t jl = strlen(json), pad = (jl + 7) & ~(size_t)7;
    unsigned char *o = malloc(8 + pad + dn);
    for (int i = 0; i < 8; i++) o[i] = (unsigned char)((uint64_t)pad >> (8 * i));
    memcpy(o + 8, json, jl);
    memset(o + 8 + jl, ' ', pad - jl);
    memcpy(o + 8 + pad, data, dn);
    *out_n = 8 + pad + dn;
    cJSON_free(json);
    return o;
}

typedef enum edit { SCALE_SHAPE, SCALE_NAN, I8_AS_F32, F32_AS_I8, MINUS128, NO_SCALE, VERSION1 } edit;

static void expect_bad(edit what, fl_status want, const char *msg) {
    size_t n;
    unsigned char *b = read_all(tmp_path("bad.safetensors"), &n);
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--) h = (h << 8) | b[i];
    cJSON *root = cJSON_ParseWithLength((const char *)b + 8, (size_t)h);
    unsigned char *data = b + 8 + h;
    cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "lstm.weight_hh_l0");
    cJSON *sc = cJSON_GetObjectItemCaseSensitive(root, "lstm.weight_hh_l0.scale");
    size_t wbeg = (size_t)cJSON_GetObjectItemCaseSensitive(e, "data_offsets")->child->valuedouble;
    size_t sbeg = (size_t)cJSON_GetObjectItemCaseSensitive(sc, "data_offsets")->child->valuedouble;
    const float nan = NAN;
    switch (what) {
    case SCALE_SHAPE:
        cJSON_ReplaceItemInObject(sc, "shape", cJSON_Parse("[68, 1]"));
        break;
    case SCALE_NAN: memcpy(data + sbeg + 4 * 3, &nan, 4); break;
    case I8_AS_F32: cJSON_ReplaceItemInObject(meta, "precision.lstm.weight_hh_l0", cJSON_CreateString("f32")); break;
    case F32_AS_I8: cJSON_ReplaceItemInObject(meta, "precision.lstm.weight_ih_l0", cJSON_CreateString("int8")); break;
    case MINUS128: data[wbeg + 5] = 0x80; break;
    case NO_SCALE: cJSON_DeleteItemFromObjectCaseSensitive(root, "lstm.weight_hh_l0.scale"); break;
    case VERSION1: cJSON_ReplaceItemInObject(meta, "format_version", cJSON_CreateString("1")); break;
    }
    size_t on;
    unsigned char *o = rebuild(root, data, n - 8 - h, &on);
    fl_model *m = (fl_model *)1;
    fl_status st = fl_model_load_memory(o, on, "bad.safetensors", &m);
    if (st != want) fail_msg("edit %d: %s, expected %s: %s", (int)what, fl_status_str(st), fl_status_str(want), fl_last_error());
    assert_null(m);
    if (!strstr(fl_last_error(), msg)) fail_msg("edit %d: '%s' lacks '%s'", (int)what, fl_last_error(), msg);
    cJSON_Delete(root);
    free(o);
    free(b);
}

static void test_bad_files(void **state) {
    (void)state;
    fl_model *m = make(&ARCH2, false, FL_PRECISION_F32), *q;
    fl_precision p[5] = {FL_PRECISION_F32, FL_PRECISION_INT8, FL_PRECISION_F32, FL_PRECISION_F32, FL_PRECISION_F32};
    assert_int_equal(fl_model_quantize(m, p, &q), FL_OK);
    assert_int_equal(fl_model_save(q, tmp_path("bad.safetensors")), FL_OK);
    expect_bad(SCALE_SHAPE, FL_ERR_SHAPE, "lstm.weight_hh_l0.scale");
    expect_bad(SCALE_NAN, FL_ERR_NONFINITE, "scale of row 3 is NaN");
    expect_bad(I8_AS_F32, FL_ERR_DTYPE, "has dtype I8, its matrix's precision (f32) needs F32");
    expect_bad(F32_AS_I8, FL_ERR_DTYPE, "has dtype F32, its matrix's precision (int8) needs I8");
    expect_bad(MINUS128, FL_ERR_DATA, "-128");
    expect_bad(NO_SCALE, FL_ERR_FORMAT, "lacks its scale tensor");
    expect_bad(VERSION1, FL_ERR_FORMAT, "needs format_version 2");
    fl_model_free(m);
    fl_model_free(q);
}

static int setup(void **state) {
    (void)state;
    return tmp_dir_make("fl_qmodel");
}

static int teardown(void **state) {
    (void)state;
    return tmp_dir_remove();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip), cmocka_unit_test(test_refused), cmocka_unit_test(test_session),
        cmocka_unit_test(test_apply),     cmocka_unit_test(test_cost_bytes), cmocka_unit_test(test_bad_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
