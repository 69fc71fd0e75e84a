/* Bidirectional layers, projections (LSTMP), variable-length batches and padding ids (issue 11):
 * the matrix table, the model file (format version 3, bad files with the exact status naming the
 * tensor), decomposition of the new matrices, length checks, sorted vs unsorted batches, thread
 * counts, streaming and training refusals. Numerics against PyTorch are in test_golden. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "internal.h"
#include "fastlstm/train.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static int setup(void **state) { return tmp_dir_make("fl_test_layers"); }
static int teardown(void **state) { return tmp_dir_remove(); }

/* ------------------------------------------------------------------ helpers */

/* Bidirectional LSTMP classifier: 2 layers, hidden 9, projection 4, features of size 5. */
static const fl_arch BIPROJ = {.input = 5, .hidden = 9, .layers = 2, .head = FL_HEAD_LAST_STEP, .head_out = 3,
                               .bidirectional = 1, .proj = 4};
/* Bidirectional token model with a padding id and a per-step head. */
static const fl_arch BITOK = {.vocab = 7, .input = 4, .hidden = 6, .layers = 2, .head = FL_HEAD_PER_STEP,
                              .head_out = 7, .bidirectional = 1, .has_padding = 1, .padding_idx = 0};

static fl_model *make(const fl_arch *a, const fl_mat_spec *specs, uint64_t seed) {
    fl_model *m = NULL;
    fl_status st = fl_model_create(a, specs, &m);
    if (st) fail_msg("fl_model_create: %s: %s", fl_status_str(st), fl_last_error());
    assert_int_equal(fl_model_init_random(m, seed), FL_OK);
    return m;
}

static char *read_header(const char *path, size_t *n_file, unsigned char **data) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--) h = h << 8 | b[i];
    char *js = malloc(h + 1);
    memcpy(js, b + 8, h);
    js[h] = '\0';
    *n_file = (size_t)n - 8 - h;
    *data = malloc(*n_file + 1);
    memcpy(*data, b + 8 + h, *n_file);
    free(b);
    return js;
}

/* Rewrites path with its header JSON edited by edit(root). */
static void edit_file(const char *src, const char *dst, void (*edit)(cJSON *root)) {
    size_t dlen;
    unsigned char *data;
    char *js = read_header(src, &dlen, &data);
    cJSON *root = cJSON_Parse(js);
    assert_non_null(root);
    edit(root);
    char *out = cJSON_PrintUnformatted(root);
    size_t jl = strlen(out), n = (jl + 7) & ~(size_t)7;
    FILE *f = fopen(dst, "wb");
    assert_non_null(f);
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)n >> (8 * i));
    fwrite(len, 1, 8, f);
    fwrite(out, 1, jl, f);
    for (size_t i = jl; i < n; i++) fputc(' ', f);
    fwrite(data, 1, dlen, f);
    fclose(f);
    cJSON_free(out);
    cJSON_Delete(root);
    free(js);
    free(data);
}

static const char *meta_of(const char *path, const char *key, char *buf, size_t n) {
    size_t dlen;
    unsigned char *data;
    char *js = read_header(path, &dlen, &data);
    cJSON *root = cJSON_Parse(js);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "__metadata__"), key);
    snprintf(buf, n, "%s", v ? v->valuestring : "(absent)");
    cJSON_Delete(root);
    free(js);
    free(data);
    return buf;
}

static void expect_load(const char *path, fl_status want, const char *needle) {
    fl_model *m = NULL;
    fl_status st = fl_model_load(path, &m);
    if (st != want)
        fail_msg("%s: got %s (%s), want %s", needle, fl_status_str(st), fl_last_error(), fl_status_str(want));
    fl_model_free(m);
    if (needle && !strstr(fl_last_error(), needle)) fail_msg("error '%s' lacks '%s'", fl_last_error(), needle);
}

static double max_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d;
    }
    return m;
}

/* Runs m batch-major on x (B, T, D) with lengths (or NULL) on `threads` threads into y, hn, cn. */
static fl_status run(const fl_model *m, int B, int T, const float *x, const int32_t *tok, const int32_t *lengths,
                     int threads, float *y, float *hn, float *cn) {
    fl_session_opts o = {.max_batch = B, .max_seq = T, .threads = threads};
    fl_session *s = NULL;
    fl_status st = fl_session_create(m, &o, &s);
    if (st) fail_msg("fl_session_create: %s", fl_last_error());
    fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = B, .seq = T, .x = x, .tokens = tok, .y = y, .hn = hn,
                    .cn = cn, .lengths = lengths};
    st = fl_session_run(s, &io);
    fl_session_free(s);
    return st;
}

static float *randoms(size_t n, unsigned seed) {
    float *p = malloc(n * sizeof *p);
    srand(seed);
    for (size_t i = 0; i < n; i++) p[i] = (float)rand() / RAND_MAX * 2.0f - 1.0f;
    return p;
}

/* ------------------------------------------------------------------ the matrix table */

static void test_numbering(void **state) {
    (void)state;
    fl_model *m = make(&BIPROJ, NULL, 1);
    assert_int_equal(fl_model_num_matrices(m), 2 * 2 * 3 + 1);
    const char *names[] = {"lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.weight_hr_l0", "lstm.weight_ih_l0_reverse",
                           "lstm.weight_hh_l0_reverse", "lstm.weight_hr_l0_reverse", "lstm.weight_ih_l1"};
    const int rows[] = {36, 36, 4, 36, 36, 4, 36}, cols[] = {5, 4, 9, 5, 4, 9, 8};
    for (size_t i = 0; i < 7; i++) {
        fl_matrix_info mi;
        assert_int_equal(fl_model_matrix_info(m, i, &mi), FL_OK);
        assert_string_equal(mi.name, names[i]);
        assert_int_equal(mi.rows, rows[i]);
        assert_int_equal(mi.cols, cols[i]);
        assert_int_equal(mi.direction, (int)(i / 3 % 2));
        assert_int_equal(mi.layer, (int)(i / 6));
        assert_int_equal(mi.kind, i % 3 == 2 ? FL_MAT_PROJ : i % 3 == 1 ? FL_MAT_HH : FL_MAT_IH);
    }
    fl_matrix_info mi;
    assert_int_equal(fl_model_matrix_info(m, 12, &mi), FL_OK);
    assert_string_equal(mi.name, "head.weight");
    assert_int_equal(mi.cols, 8); /* [forward, reverse] of size 4 each */
    assert_int_equal(fl_run_state_size(m, 3, 0), (size_t)4 * 3 * 4);
    assert_int_equal(fl_run_state_size(m, 3, 1), (size_t)4 * 3 * 9);
    fl_model_free(m);
    /* a plain model keeps 2l, 2l+1, 2L */
    fl_arch plain = {.input = 3, .hidden = 4, .layers = 2, .head = FL_HEAD_PER_STEP, .head_out = 2};
    m = make(&plain, NULL, 1);
    assert_int_equal(fl_model_num_matrices(m), 5);
    assert_int_equal(fl_model_matrix_info(m, 3, &mi), FL_OK);
    assert_string_equal(mi.name, "lstm.weight_hh_l1");
    fl_model_free(m);
}

static void test_arch_check(void **state) {
    (void)state;
    fl_model *m = NULL;
    fl_arch a = BIPROJ;
    a.proj = 9;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_ERR_ARG);
    assert_non_null(strstr(fl_last_error(), "projection size 9"));
    a = BIPROJ;
    a.bidirectional = 2;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_ERR_ARG);
    a = BIPROJ;
    a.has_padding = 1;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_ERR_ARG); /* no vocabulary */
    a = BITOK;
    a.padding_idx = 7;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_ERR_ARG);
    assert_null(m);
    /* CP on a projection: refused, naming it */
    fl_mat_spec specs[13] = {{0}};
    specs[2] = (fl_mat_spec){FL_METHOD_CP, 2};
    assert_int_equal(fl_model_create(&BIPROJ, specs, &m), FL_ERR_ARG);
    assert_non_null(strstr(fl_last_error(), "lstm.weight_hr_l0"));
    assert_non_null(strstr(fl_last_error(), "no gate axis"));
    /* padding row zero at init */
    m = make(&BITOK, NULL, 5);
    for (int j = 0; j < BITOK.input; j++) assert_true(m->embed[j] == 0.0f);
    fl_model_free(m);
}

/* ------------------------------------------------------------------ model file */

static void test_file_versions(void **state) {
    (void)state;
    char buf[64];
    fl_arch plain = {.input = 3, .hidden = 4, .layers = 1};
    fl_model *m = make(&plain, NULL, 2);
    assert_int_equal(fl_model_save(m, tmp_path("plain.st")), FL_OK);
    assert_string_equal(meta_of(tmp_path("plain.st"), "format_version", buf, sizeof buf), "1");
    assert_string_equal(meta_of(tmp_path("plain.st"), "bidirectional", buf, sizeof buf), "(absent)");
    fl_model_free(m);
    const fl_arch *archs[] = {&BIPROJ, &BITOK};
    for (int k = 0; k < 2; k++) {
        m = make(archs[k], NULL, 3);
        const char *p = tmp_path("v3.st");
        assert_int_equal(fl_model_save(m, p), FL_OK);
        assert_string_equal(meta_of(p, "format_version", buf, sizeof buf), "3");
        assert_string_equal(meta_of(p, "bidirectional", buf, sizeof buf), "1");
        fl_model *r = NULL;
        assert_int_equal(fl_model_load(p, &r), FL_OK);
        assert_memory_equal(fl_model_arch(r), fl_model_arch(m), sizeof(fl_arch));
        assert_int_equal(r->n_params, m->n_params);
        assert_memory_equal(r->params, m->params, m->n_params * sizeof(float));
        fl_model_free(r);
        fl_model_free(m);
    }
}

static void e_drop_reverse(cJSON *root) { cJSON_DeleteItemFromObjectCaseSensitive(root, "lstm.weight_hh_l1_reverse"); }
static void e_hr_shape(cJSON *root) {
    cJSON *shape = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "lstm.weight_hr_l1"), "shape");
    cJSON_ReplaceItemInArray(shape, 0, cJSON_CreateNumber(5));
}
static void e_meta(cJSON *root, const char *key, const char *val) {
    cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    cJSON_DeleteItemFromObjectCaseSensitive(meta, key);
    if (val) cJSON_AddStringToObject(meta, key, val);
}
static void e_version2(cJSON *root) { e_meta(root, "format_version", "2"); }
static void e_proj_other(cJSON *root) { e_meta(root, "proj", "3"); }
static void e_not_bidir(cJSON *root) { e_meta(root, "bidirectional", NULL); }
static void e_bidir_bad(cJSON *root) { e_meta(root, "bidirectional", "yes"); }
static void e_hr_cp(cJSON *root) { e_meta(root, "method.lstm.weight_hr_l0", "cp:2"); }

static void test_bad_files(void **state) {
    (void)state;
    fl_model *m = make(&BIPROJ, NULL, 4);
    const char *base = tmp_path("base.st"), *bad = tmp_path("bad.st");
    assert_int_equal(fl_model_save(m, base), FL_OK);
    fl_model_free(m);
    struct {
        void (*edit)(cJSON *);
        fl_status want;
        const char *needle;
    } cases[] = {
        {e_drop_reverse, FL_ERR_FORMAT, "missing tensor 'lstm.weight_hh_l1_reverse'"},
        {e_hr_shape, FL_ERR_SHAPE, "tensor 'lstm.weight_hr_l1' has shape [5, 9], the architecture needs [4, 9]"},
        {e_version2, FL_ERR_FORMAT, "need format_version 3"},
        {e_proj_other, FL_ERR_SHAPE, "shape"},
        {e_not_bidir, FL_ERR_FORMAT, "_reverse"},
        {e_bidir_bad, FL_ERR_FORMAT, "bidirectional"},
        {e_hr_cp, FL_ERR_FORMAT, "no gate axis"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        edit_file(base, bad, cases[i].edit);
        expect_load(bad, cases[i].want, cases[i].needle);
    }
}

/* ------------------------------------------------------------------ runtime */

static void test_lengths_checked(void **state) {
    (void)state;
    fl_model *m = make(&BIPROJ, NULL, 6);
    enum { B = 3, T = 4 };
    float *x = randoms((size_t)B * T * 5, 1), y[B * 3];
    const int32_t bad[][B] = {{2, 0, 4}, {1, 5, 4}, {-1, 2, 3}};
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < B * 3; i++) y[i] = 42.0f;
        assert_int_equal(run(m, B, T, x, NULL, bad[k], 1, y, NULL, NULL), FL_ERR_ARG);
        assert_non_null(strstr(fl_last_error(), "lengths["));
        assert_non_null(strstr(fl_last_error(), "outside [1, 4]"));
        for (int i = 0; i < B * 3; i++) assert_true(y[i] == 42.0f); /* nothing written */
    }
    free(x);
    fl_model_free(m);
}

/* Sorted or unsorted lengths, garbage past each length, 1 or 3 threads: the same results. */
static void test_sorted_unsorted(void **state) {
    (void)state;
    fl_arch a = BIPROJ;
    a.head = FL_HEAD_NONE;
    a.head_out = 0;
    fl_model *m = make(&a, NULL, 7);
    enum { B = 5, T = 6, D = 5, W = 8 };
    const int32_t len[B] = {3, 6, 1, 6, 2}, order[B] = {1, 3, 0, 4, 2}; /* order: sorted by length */
    float *x = randoms((size_t)B * T * D, 2), *xs = malloc(sizeof(float) * B * T * D);
    int32_t ls[B];
    for (int i = 0; i < B; i++) {
        memcpy(xs + (size_t)i * T * D, x + (size_t)order[i] * T * D, sizeof(float) * T * D);
        ls[i] = len[order[i]];
        for (int t = ls[i]; t < T; t++) /* garbage past the length of the sorted copy */
            for (int j = 0; j < D; j++) xs[((size_t)i * T + t) * D + j] = 100.0f + (float)j;
    }
    float y[B * T * W], hn[4 * B * 4], cn[4 * B * 9], ys[B * T * W], hs[4 * B * 4], cs[4 * B * 9];
    assert_int_equal(run(m, B, T, x, NULL, len, 1, y, hn, cn), FL_OK);
    assert_int_equal(run(m, B, T, xs, NULL, ls, 3, ys, hs, cs), FL_OK);
    for (int i = 0; i < B; i++) {
        const int b = order[i];
        assert_true(max_diff(ys + (size_t)i * T * W, y + (size_t)b * T * W, (size_t)T * W) <= 1e-6);
        for (int r = 0; r < 4; r++) {
            assert_true(max_diff(hs + ((size_t)r * B + i) * 4, hn + ((size_t)r * B + b) * 4, 4) <= 1e-6);
            assert_true(max_diff(cs + ((size_t)r * B + i) * 9, cn + ((size_t)r * B + b) * 9, 9) <= 1e-6);
        }
        for (int t = len[b]; t < T; t++) /* zero past the length */
            for (int j = 0; j < W; j++) assert_true(y[((size_t)b * T + t) * W + j] == 0.0f);
    }
    /* all lengths T is the same as no lengths */
    const int32_t full[B] = {T, T, T, T, T};
    float y2[B * T * W];
    assert_int_equal(run(m, B, T, x, NULL, full, 1, y, hn, cn), FL_OK);
    assert_int_equal(run(m, B, T, x, NULL, NULL, 2, y2, hs, cs), FL_OK);
    assert_true(max_diff(y, y2, sizeof y / sizeof *y) <= 1e-6);
    assert_true(max_diff(hn, hs, sizeof hn / sizeof *hn) <= 1e-6);
    free(x);
    free(xs);
    fl_model_free(m);
}

static void test_streaming_and_training_refused(void **state) {
    (void)state;
    fl_model *m = make(&BITOK, NULL, 8);
    fl_session *s = NULL;
    assert_int_equal(fl_session_create(m, NULL, &s), FL_OK);
    int32_t tok[1] = {3};
    float y[7];
    assert_int_equal(fl_session_step(s, 1, NULL, tok, y), FL_ERR_UNSUPPORTED);
    assert_non_null(strstr(fl_last_error(), "bidirectional"));
    fl_session_free(s);
    /* Training takes bidirectional and projection models (tests/test_bptt_varlen.c), but not a
     * bidirectional language model: its reverse direction would read the tokens it predicts. */
    fl_trainer *t = NULL;
    assert_int_equal(fl_trainer_create(m, NULL, &t), FL_ERR_UNSUPPORTED);
    assert_non_null(strstr(fl_last_error(), "bidirectional language model"));
    assert_null(t);
    fl_model_free(m);
    fl_arch a = BIPROJ;
    m = make(&a, NULL, 9);
    assert_int_equal(fl_trainer_create(m, NULL, &t), FL_OK);
    fl_trainer_free(t);
    fl_model_free(m);
}

/* ------------------------------------------------------------------ decomposition */

static void test_decompose(void **state) {
    (void)state;
    fl_model *m = make(&BIPROJ, NULL, 10), *d = NULL;
    /* SVD at full rank of every matrix (including weight_hr and the reverse ones) reproduces m */
    size_t nmat = fl_model_num_matrices(m);
    fl_mat_spec specs[13];
    for (size_t i = 0; i < nmat; i++) {
        fl_matrix_info mi;
        fl_model_matrix_info(m, i, &mi);
        specs[i] = (fl_mat_spec){FL_METHOD_SVD, mi.rows < mi.cols ? mi.rows : mi.cols};
    }
    fl_decomp_opts o = fl_decomp_opts_default();
    o.specs = specs;
    assert_int_equal(fl_model_decompose(m, &o, &d), FL_OK);
    for (size_t i = 0; i < nmat; i++) {
        fl_matrix_info mi;
        fl_model_matrix_info(d, i, &mi);
        assert_int_equal(mi.method, FL_METHOD_SVD);
        assert_true(mi.rel_error < 1e-5);
    }
    enum { B = 3, T = 5 };
    const int32_t len[B] = {2, 5, 1};
    float *x = randoms((size_t)B * T * 5, 3), y[B * 3], yd[B * 3];
    assert_int_equal(run(m, B, T, x, NULL, len, 1, y, NULL, NULL), FL_OK);
    assert_int_equal(run(d, B, T, x, NULL, len, 2, yd, NULL, NULL), FL_OK);
    assert_true(max_diff(y, yd, B * 3) <= 1e-4);
    fl_model_free(d);
    /* default method CP: gate matrices CP, projections stay dense; CP asked for weight_hr: refused */
    o = fl_decomp_opts_default();
    o.method = FL_METHOD_CP;
    o.rank = 2;
    o.cp_max_iter = 5;
    assert_int_equal(fl_model_decompose(m, &o, &d), FL_OK);
    fl_matrix_info mi;
    fl_model_matrix_info(d, 2, &mi);
    assert_int_equal(mi.method, FL_METHOD_DENSE);
    fl_model_matrix_info(d, 4, &mi);
    assert_int_equal(mi.method, FL_METHOD_CP);
    fl_model_free(d);
    for (size_t i = 0; i < nmat; i++) specs[i] = (fl_mat_spec){FL_METHOD_DENSE, 0};
    specs[5] = (fl_mat_spec){FL_METHOD_CP, 2};
    o = fl_decomp_opts_default();
    o.specs = specs;
    assert_int_equal(fl_model_decompose(m, &o, &d), FL_ERR_ARG);
    assert_non_null(strstr(fl_last_error(), "lstm.weight_hr_l0_reverse"));
    assert_null(d);
    free(x);
    fl_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numbering),
        cmocka_unit_test(test_arch_check),
        cmocka_unit_test(test_file_versions),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_lengths_checked),
        cmocka_unit_test(test_sorted_unsorted),
        cmocka_unit_test(test_streaming_and_training_refused),
        cmocka_unit_test(test_decompose),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
