/* The output head packed once per model (core/head.c, core/packed.c). Checked here:
 *   - fl_head_apply, packed (gemm_pk, bias fused, on 1 and 3 threads) and unpacked (BLAS), against a
 *     float64 reference on awkward shapes (1, 7, 17, 63, 65, 130 outputs; inner sizes 1, 7, 65; rows
 *     1, 7, 17; strided x and y), dense and SVD heads, with and without a bias;
 *   - packing with release gives the factors' pages back and unpacking writes them back bit-identical;
 *     no pack without gemm_pk, nor for an SVD head with large factors (BLAS does better there);
 *   - language models (per-step head, dense and SVD) and classifiers (last-step head): outputs with the
 *     head's original released equal those with it kept, bit for bit (whole runs, runs with lengths,
 *     streaming steps); the head's pages are given back while a session exists and come back
 *     bit-identical when it goes or when the weights are held; a file saves back byte-identical during
 *     and after sessions; running out of memory while packing leaves every weight intact;
 *   - in a child process, the peak resident memory of loading and running a model whose head is most
 *     of its weights stays within 1.15x its weight bytes plus a fixed margin (two copies of the head
 *     would be about 2x). A bound, not a timing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "testutil.h"
#include "internal.h"
#include "head.h"
#include "kernels/kernels.h"
#include "recurrent.h"
#include "mem_bound.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { B = 3, T = 6 };

static float frand(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((*s >> 40) & 0xffff) / 32768.0f - 1.0f;
}

static float *fl_rand(size_t n, uint64_t seed) {
    float *p = fl_malloc(n * sizeof(float));
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = frand(&seed);
    return p;
}

/* A head (rows, K): dense, or SVD of rank R (U (rows, R), V (R, K)). */
static fl_mat head_mat(int rows, int K, fl_method method, int R, uint64_t seed) {
    fl_mat w = {.method = method, .rows = rows, .cols = K, .rank = method == FL_METHOD_SVD ? R : 0};
    if (method == FL_METHOD_DENSE) {
        w.w = fl_rand((size_t)rows * K, seed);
    } else {
        w.u = fl_rand((size_t)rows * R, seed);
        w.v = fl_rand((size_t)R * K, seed + 1);
    }
    return w;
}

static void head_mat_free(fl_mat *w) {
    fl_free(w->w);
    fl_free(w->u);
    fl_free(w->v);
}

/* y[r] = x . W[r, :] + bias[r] for one row x (K), in float64, and the scale of its rounding error:
 * |bias| + sum |x| |W| (dense), |bias| + sum_q |u[r, q]| sum_k |x[k] v[q, k]| (SVD: t = x V^T first). */
static double ref_entry(const fl_mat *w, const float *x, const float *bias, int r, double *scale) {
    double s = bias ? bias[r] : 0.0;
    *scale = fabs(s);
    if (w->method == FL_METHOD_DENSE) {
        for (int k = 0; k < w->cols; k++) {
            const double p = (double)x[k] * w->w[(size_t)r * w->cols + k];
            s += p;
            *scale += fabs(p);
        }
        return s;
    }
    for (int q = 0; q < w->rank; q++) {
        double t = 0, ta = 0;
        for (int k = 0; k < w->cols; k++) {
            t += (double)x[k] * w->v[(size_t)q * w->cols + k];
            ta += fabs((double)x[k] * w->v[(size_t)q * w->cols + k]);
        }
        s += t * w->u[(size_t)r * w->rank + q];
        *scale += ta * fabs(w->u[(size_t)r * w->rank + q]);
    }
    return s;
}

/* max over y (n, rows), row stride ldy, of |y - ref| / scale, ref = x W^T + bias in float64. */
static double rel_err(const fl_mat *w, int n, const float *x, int ldx, const float *bias, const float *y, int ldy) {
    double e = 0;
    for (int i = 0; i < n; i++)
        for (int r = 0; r < w->rows; r++) {
            double scale;
            const double s = ref_entry(w, x + (size_t)i * ldx, bias, r, &scale);
            e = fmax(e, fabs(y[(size_t)i * ldy + r] - s) / (scale + 1e-30));
        }
    return e;
}

/* A recurrent step whose pool runs the packed products (fl_rec_gemm_pk); the layer must outlive it. */
static fl_model *tiny_model(void) {
    fl_arch a = {.input = 3, .hidden = 4, .layers = 1};
    fl_model *m;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 1), FL_OK);
    return m;
}

static void test_apply_shapes(void **state) {
    (void)state;
    const bool pk = fl_kernels_get()->gemm_pk != NULL; /* without it (ref) every head takes BLAS */
    fl_model *m = tiny_model();
    fl_rec *r1, *r3;
    assert_int_equal(fl_rec_create(&m->layer[0], 1, 1, &r1), FL_OK);
    assert_int_equal(fl_rec_create(&m->layer[0], 1, 3, &r3), FL_OK);
    const int rows_s[] = {1, 7, 17, 63, 65, 130}, ks[] = {1, 7, 65}, ns[] = {1, 7, 17};
    uint64_t seed = 11;
    for (size_t a = 0; a < sizeof rows_s / sizeof *rows_s; a++)
        for (size_t b = 0; b < sizeof ks / sizeof *ks; b++)
            for (int svd = 0; svd < 2; svd++) {
                const int rows = rows_s[a], K = ks[b], R = 1 + (rows + K) % 9;
                fl_mat w = head_mat(rows, K, svd ? FL_METHOD_SVD : FL_METHOD_DENSE, R, seed++);
                float *bias = fl_rand((size_t)rows, seed++);
                fl_head_pack p;
                assert_int_equal(fl_head_pack_make(&w, pk, false, &p), FL_OK);
                assert_true((p.pk != NULL) == pk);
                assert_true((p.pv != NULL) == (pk && svd));
                for (size_t c = 0; c < sizeof ns / sizeof *ns; c++) {
                    const int n = ns[c], ldx = K + 3, ldy = rows + 5;
                    float *x = fl_rand((size_t)n * ldx, seed++);
                    float *y = fl_malloc((size_t)n * ldy * sizeof(float));
                    float *ws = fl_malloc((fl_mat_apply_workspace(&w, n) + 1) * sizeof(float));
                    assert_non_null(y);
                    assert_non_null(ws);
                    for (int variant = 0; variant < 6; variant++) { /* packed on 1, 3 threads; BLAS; x bias */
                        const fl_head_pack *pp = variant % 3 == 2 ? NULL : &p;
                        fl_rec *r = variant % 3 == 1 ? r3 : r1;
                        const float *bb = variant < 3 ? bias : NULL;
                        for (size_t i = 0; i < (size_t)n * ldy; i++) y[i] = 7.0f;
                        fl_head_apply(pp, &w, r, n, x, ldx, bb, y, ldy, ws);
                        const double e = rel_err(&w, n, x, ldx, bb, y, ldy);
                        if (e > 2e-5) fail_msg("rows %d K %d n %d %s variant %d: rel error %g", rows, K, n,
                                               svd ? "svd" : "dense", variant, e);
                        for (int i = 0; i < n; i++) /* the stride's gap is never written */
                            for (int j = rows; j < ldy && i + 1 < n; j++) assert_true(y[(size_t)i * ldy + j] == 7.0f);
                    }
                    fl_free(x);
                    fl_free(y);
                    fl_free(ws);
                }
                fl_head_pack_free(&p);
                fl_free(bias);
                head_mat_free(&w);
            }
    fl_rec_free(r1);
    fl_rec_free(r3);
    fl_model_free(m);
}

/* The first whole page inside [p, p + n): all zero? (there must be one) */
static bool page_zero(const float *p, size_t n) {
    const uintptr_t P = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t a = ((uintptr_t)p + P - 1) & ~(P - 1);
    assert_true(a + P <= (uintptr_t)(p + n));
    const float *q = (const float *)a;
    for (size_t i = 0; i < P / sizeof(float); i++)
        if (q[i] != 0.0f) return false;
    return true;
}

static void test_release_unpack(void **state) {
    (void)state;
    for (int svd = 0; svd < 2; svd++) {
        const int rows = 1000, K = 77, R = 40;
        fl_mat w = head_mat(rows, K, svd ? FL_METHOD_SVD : FL_METHOD_DENSE, R, 5);
        const size_t n0 = svd ? (size_t)rows * R : (size_t)rows * K, n1 = svd ? (size_t)R * K : 0;
        float *f0 = svd ? w.u : w.w, *f1 = w.v;
        float *c0 = malloc(n0 * sizeof(float)), *c1 = malloc((n1 + 1) * sizeof(float));
        memcpy(c0, f0, n0 * sizeof(float));
        if (n1) memcpy(c1, f1, n1 * sizeof(float));
        fl_head_pack p;
        assert_int_equal(fl_head_pack_make(&w, true, true, &p), FL_OK);
        assert_non_null(p.pk);
        assert_true(page_zero(f0, n0));
        if (n1) assert_true(page_zero(f1, n1));
        assert_true(fl_head_unpack(&p, &w, true));
        assert_memory_equal(f0, c0, n0 * sizeof(float));
        if (n1) assert_memory_equal(f1, c1, n1 * sizeof(float));
        fl_head_pack_free(&p);
        assert_null(p.pk);
        assert_false(fl_head_unpack(&p, &w, false)); /* nothing packed: nothing written */
        free(c0);
        free(c1);
        head_mat_free(&w);
    }
    fl_mat q = head_mat(100, 70, FL_METHOD_DENSE, 0, 9); /* no gemm_pk: no pack */
    fl_head_pack p;
    assert_int_equal(fl_head_pack_make(&q, false, true, &p), FL_OK);
    assert_null(p.pk);
    head_mat_free(&q);
    /* a large SVD head (a word LM's 10000x400 at rank 64) stays on BLAS (head.c), its factors in place */
    q = head_mat(10000, 400, FL_METHOD_SVD, 64, 10);
    float *u = malloc((size_t)10000 * 64 * sizeof(float));
    memcpy(u, q.u, (size_t)10000 * 64 * sizeof(float));
    assert_int_equal(fl_head_pack_make(&q, true, true, &p), FL_OK);
    assert_null(p.pk);
    assert_null(p.pv);
    assert_memory_equal(q.u, u, (size_t)10000 * 64 * sizeof(float));
    free(u);
    head_mat_free(&q);
}

/* ------------------------------------------------------------ whole models */

enum { VOCAB = 600, LM_H = 40 };

/* A 2-layer LM (per-step head VOCAB x LM_H, dense or SVD of rank 9) or a classifier (last-step head
 * of 70 classes over 33 units, dense or SVD of rank 30: 2 panels, each factor over a page). */
static fl_model *model(bool lm, fl_method head_method) {
    fl_arch a = lm ? (fl_arch){.vocab = VOCAB, .input = 6, .hidden = LM_H, .layers = 2, .head = FL_HEAD_PER_STEP,
                               .head_out = VOCAB}
                   : (fl_arch){.input = 5, .hidden = 33, .layers = 1, .head = FL_HEAD_LAST_STEP, .head_out = 70};
    fl_mat_spec specs[5] = {{FL_METHOD_DENSE, 0}, {FL_METHOD_DENSE, 0}, {FL_METHOD_DENSE, 0}, {FL_METHOD_DENSE, 0}};
    specs[2 * a.layers] = (fl_mat_spec){head_method, head_method == FL_METHOD_SVD ? (lm ? 9 : 30) : 0};
    fl_model *m;
    assert_int_equal(fl_model_create(&a, specs, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 3), FL_OK);
    return m;
}

static float *copy_params(const fl_model *m) {
    float *p = malloc(m->n_params * sizeof(float));
    assert_non_null(p);
    memcpy(p, m->params, m->n_params * sizeof(float));
    return p;
}

static fl_session *session(const fl_model *m, int threads) {
    fl_session_opts o = fl_session_opts_default();
    o.max_batch = B;
    o.max_seq = T;
    o.threads = threads;
    fl_session *s;
    assert_int_equal(fl_session_create(m, &o, &s), FL_OK);
    return s;
}

/* Everything a session can output for m: a run, runs with lengths in both layouts, 3 streaming steps;
 * y sized by outputs_size. */
static size_t outputs_size(const fl_model *m) { return 3 * fl_run_output_size(m, B, T) + 3 * B * m->arch.head_out; }

static void outputs(const fl_model *m, fl_session *s, float *y) {
    int32_t tok[B * T], len[B] = {T, 2, 5};
    float x[B * T * 5];
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)((i * 37) % VOCAB);
    for (int i = 0; i < B * T * 5; i++) x[i] = (float)((i * 7919) % 201) / 100.0f - 1.0f;
    const bool lm = m->arch.vocab > 0;
    fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = B, .seq = T, .x = lm ? NULL : x, .tokens = lm ? tok : NULL,
                    .y = y};
    assert_int_equal(fl_session_run(s, &io), FL_OK);
    y += fl_run_output_size(m, B, T);
    io.lengths = len;
    for (int tm = 0; tm < 2; tm++, y += fl_run_output_size(m, B, T)) {
        io.layout = tm ? FL_TIME_MAJOR : FL_BATCH_MAJOR;
        io.y = y;
        assert_int_equal(fl_session_run(s, &io), FL_OK);
    }
    assert_int_equal(fl_session_reset(s, -1), FL_OK);
    for (int t = 0; t < 3; t++, y += B * m->arch.head_out)
        assert_int_equal(fl_session_step(s, B, lm ? NULL : x + t * B * 5, lm ? tok + t * B : NULL, y), FL_OK);
}

/* The first whole page of the head's largest factor reads as zero (its original was given back). */
static bool head_released(const fl_model *m) {
    const fl_mat *w = &m->head;
    return w->method == FL_METHOD_DENSE ? page_zero(w->w, (size_t)w->rows * w->cols)
                                        : page_zero(w->u, (size_t)w->rows * w->rank);
}

static void check_model(bool lm, fl_method head_method) {
    fl_model *m = model(lm, head_method);
    float *before = copy_params(m);
    const bool pk = fl_kernels_get()->gemm_pk != NULL;
    const size_t ny = outputs_size(m);
    float *want = calloc(ny, sizeof(float)), *got = calloc(ny, sizeof(float));

    fl_model_weights_hold(m); /* originals kept: the reference */
    fl_session *s = session(m, 1);
    outputs(m, s, want);
    fl_session_free(s);
    fl_model_weights_unhold(m);

    for (int threads = 1; threads <= 3; threads += 2) {
        s = session(m, threads);
        assert_true(fl_model_weights_released(m));
        if (pk) assert_true(head_released(m));
        outputs(m, s, got);
        if (threads == 1) assert_memory_equal(got, want, ny * sizeof(float));
        else
            for (size_t i = 0; i < ny; i++) assert_float_equal(got[i], want[i], 1e-5 * (1 + fabsf(want[i])));
        fl_model_weights_hold(m); /* back, bit for bit, while the session runs on the packs */
        assert_memory_equal(m->params, before, m->n_params * sizeof(float));
        outputs(m, s, got);
        if (threads == 1) assert_memory_equal(got, want, ny * sizeof(float));
        fl_model_weights_unhold(m);
        fl_session_free(s);
        assert_memory_equal(m->params, before, m->n_params * sizeof(float));
    }
    s = session(m, 1);
    fl_session_free(s);
    assert_false(fl_model_weights_released(m));
    assert_memory_equal(m->params, before, m->n_params * sizeof(float));
    free(want);
    free(got);
    free(before);
    fl_model_free(m);
}

static void test_lm_dense(void **state) {
    (void)state;
    check_model(true, FL_METHOD_DENSE);
}

static void test_lm_svd(void **state) {
    (void)state;
    check_model(true, FL_METHOD_SVD);
}

static void test_classifier(void **state) {
    (void)state;
    check_model(false, FL_METHOD_DENSE);
    check_model(false, FL_METHOD_SVD);
}

/* A file written by fastlstm saves back byte-identical during and after sessions. */
static void test_save_identical(void **state) {
    (void)state;
    for (int svd = 0; svd < 2; svd++) {
        fl_model *m0 = model(true, svd ? FL_METHOD_SVD : FL_METHOD_DENSE), *m;
        const char *f0 = tmp_path("h0.safetensors"), *f1 = tmp_path("h1.safetensors"), *f2 = tmp_path("h2.safetensors");
        assert_int_equal(fl_model_save(m0, f0), FL_OK);
        fl_model_free(m0);
        assert_int_equal(fl_model_load(f0, &m), FL_OK);
        float *y = calloc(outputs_size(m), sizeof(float));
        fl_session *s = session(m, 1);
        outputs(m, s, y);
        assert_int_equal(fl_model_save(m, f2), FL_OK); /* while the session lives */
        outputs(m, s, y);
        fl_session_free(s);
        assert_int_equal(fl_model_save(m, f1), FL_OK);
        unsigned char *a, *b, *c;
        size_t na = file_read(f0, &a), nb = file_read(f1, &b), nc = file_read(f2, &c);
        assert_int_equal(na, nb);
        assert_int_equal(na, nc);
        assert_memory_equal(a, b, na);
        assert_memory_equal(a, c, na);
        free(a);
        free(b);
        free(c);
        free(y);
        fl_model_free(m);
    }
}

/* Running out of memory anywhere in packing (the head is packed last) leaves every weight intact. */
static void test_failed_packing_restores(void **state) {
    (void)state;
    fl_model *m = model(true, FL_METHOD_SVD);
    float *before = copy_params(m);
    bool failed = false;
    for (long n = 0; n < 40; n++) {
        fl_alloc_fail_after(n);
        fl_session *s = NULL;
        fl_status st = fl_session_create(m, NULL, &s);
        fl_alloc_fail_after(-1);
        if (st == FL_OK) {
            fl_session_free(s);
            break;
        }
        failed = true;
        assert_int_equal(st, FL_ERR_NOMEM);
        assert_false(fl_model_weights_released(m));
        assert_null(m->packs);
        assert_null(m->hpack);
        assert_memory_equal(m->params, before, m->n_params * sizeof(float));
    }
    assert_true(failed);
    free(before);
    fl_model_free(m);
}

/* ------------------------------------------------------------ memory bound */

static int run_tokens(fl_session *s, const fl_model *m) {
    const int32_t tok[2] = {1, 2};
    float *y = malloc(2 * (size_t)m->arch.head_out * sizeof(float));
    fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = 1, .seq = 2, .tokens = tok, .y = y};
    const int r = !y || fl_session_run(s, &io) != FL_OK;
    free(y);
    return r;
}

static void test_memory_bound(void **state) {
    (void)state;
    if (!fl_kernels_get()->gemm_pk) skip(); /* no packed head at this level: nothing to bound */
    const char *path = tmp_path("bighead.safetensors");
    fl_arch a = {.vocab = 16000, .input = 4, .hidden = 256, .layers = 1, .head = FL_HEAD_PER_STEP, .head_out = 16000};
    fl_model *m; /* a 16 MB head, 1 MB of W_hh */
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 2), FL_OK);
    assert_int_equal(fl_model_save(m, path), FL_OK);
    const double bytes = (double)m->n_params * sizeof(float);
    fl_model_free(m);
    fl_session_opts o = fl_session_opts_default();
    o.max_batch = 1;
    o.max_seq = 2;
    mem_bound_check(path, bytes, &o, run_tokens);
}

static int setup(void **state) {
    (void)state;
    return tmp_dir_make("fl_packed_head");
}

static int teardown(void **state) {
    (void)state;
    return tmp_dir_remove();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_shapes),    cmocka_unit_test(test_release_unpack),
        cmocka_unit_test(test_lm_dense),        cmocka_unit_test(test_lm_svd),
        cmocka_unit_test(test_classifier),      cmocka_unit_test(test_save_identical),
        cmocka_unit_test(test_failed_packing_restores), cmocka_unit_test(test_memory_bound),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
