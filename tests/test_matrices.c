/* The one description of a model's matrices (src/core/matrices.c) and the model-file versioning rule:
 * numbering, PyTorch names, shapes, factor tensors and sizes; version-1 files (tests/data/
 * model_v1.safetensors, written by the library before format version 2) keep loading; the per-matrix
 * kind / direction / precision table is written and checked; a file needing a newer version is
 * refused with FL_ERR_VERSION naming both versions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "internal.h"
#include "memload.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static int setup(void **state) { return tmp_dir_make("fl_test_matrices"); }
static int teardown(void **state) { return tmp_dir_remove(); }

static const fl_arch CLS = {.vocab = 0, .input = 3, .hidden = 4, .layers = 2, .head = FL_HEAD_LAST_STEP, .head_out = 3};

/* ------------------------------------------------------------------ the table */

static void test_table_names_shapes(void **state) {
    const fl_arch a = {.vocab = 9, .input = 5, .hidden = 6, .layers = 3, .head = FL_HEAD_PER_STEP, .head_out = 9};
    assert_int_equal(fl_arch_num_matrices(&a), 7);
    const char *names[7] = {"lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.weight_ih_l1", "lstm.weight_hh_l1",
                            "lstm.weight_ih_l2", "lstm.weight_hh_l2", "head.weight"};
    for (size_t i = 0; i < 7; i++) {
        fl_mat_desc d;
        fl_arch_matrix(&a, i, &d);
        assert_int_equal(d.index, i);
        assert_string_equal(d.name, names[i]);
        assert_int_equal(d.direction, 0);
        assert_int_equal(d.precision, FL_PRECISION_F32);
        if (i == 6) {
            assert_int_equal(d.kind, FL_MAT_HEAD);
            assert_int_equal(d.layer, -1);
            assert_false(d.gate);
            assert_int_equal(d.rows, 9);
            assert_int_equal(d.cols, 6);
            assert_int_equal(d.n_bias, 1);
            assert_string_equal(d.bias[0].name, "head.bias");
        } else {
            assert_int_equal(d.kind, i % 2 ? FL_MAT_HH : FL_MAT_IH);
            assert_int_equal(d.layer, (int)i / 2);
            assert_true(d.gate);
            assert_int_equal(d.rows, 24);
            assert_int_equal(d.cols, i == 0 ? 5 : 6);
            assert_int_equal(d.n_bias, i % 2 ? 2 : 0);
        }
    }
    fl_mat_desc d;
    fl_arch_matrix(&a, 3, &d);
    assert_string_equal(d.bias[0].name, "lstm.bias_ih_l1");
    assert_string_equal(d.bias[1].name, "lstm.bias_hh_l1");
    assert_int_equal(d.bias[1].rows, 24);
    fl_arch const none = {.input = 2, .hidden = 2, .layers = 1, .head = FL_HEAD_NONE};
    assert_int_equal(fl_arch_num_matrices(&none), 2);
}

static void test_factors(void **state) {
    fl_mat_desc d;
    fl_arch_matrix(&CLS, 2, &d); /* weight_ih_l1: (16, 4) */
    fl_factor_desc f[3];
    assert_int_equal(fl_mat_factors(&d, (fl_mat_spec){FL_METHOD_DENSE, 0}, f), 1);
    assert_string_equal(f[0].name, "lstm.weight_ih_l1");
    assert_int_equal(f[0].rows, 16);
    assert_int_equal(f[0].cols, 4);
    assert_int_equal(fl_mat_factors(&d, (fl_mat_spec){FL_METHOD_SVD, 3}, f), 2);
    assert_string_equal(f[0].name, "lstm.weight_ih_l1.U");
    assert_string_equal(f[1].name, "lstm.weight_ih_l1.V");
    assert_int_equal(f[0].rows * f[0].cols + f[1].rows * f[1].cols, fl_spec_params(16, 4, (fl_mat_spec){FL_METHOD_SVD, 3}));
    assert_int_equal(fl_mat_factors(&d, (fl_mat_spec){FL_METHOD_CP, 5}, f), 3);
    assert_string_equal(f[2].name, "lstm.weight_ih_l1.C");
    assert_int_equal(f[0].rows, 4);
    assert_int_equal(f[1].rows, 4);
    assert_int_equal(f[2].rows, 4);
    assert_int_equal(f[0].rows * 5 + f[1].rows * 5 + f[2].rows * 5, fl_spec_params(16, 4, (fl_mat_spec){FL_METHOD_CP, 5}));
}

/* The model's tensors are exactly the table's factors and biases, in order, and matrix_info agrees. */
static void test_model_follows_table(void **state) {
    const fl_mat_spec specs[5] = {{FL_METHOD_SVD, 2}, {FL_METHOD_CP, 3}, {FL_METHOD_DENSE, 0}, {FL_METHOD_SVD, 1},
                                  {FL_METHOD_SVD, 2}};
    fl_model *m;
    assert_int_equal(fl_model_create(&CLS, specs, &m), FL_OK);
    size_t k = 0, params = 0;
    for (size_t i = 0; i < fl_model_num_matrices(m); i++) {
        fl_mat_desc d;
        fl_arch_matrix(&CLS, i, &d);
        fl_factor_desc f[3];
        int nf = fl_mat_factors(&d, specs[i], f);
        for (int j = 0; j < nf; j++, k++) {
            assert_string_equal(m->tensors[k].name, f[j].name);
            assert_int_equal(m->tensors[k].shape[0], f[j].rows);
            assert_int_equal(m->tensors[k].shape[1], f[j].cols);
        }
        for (int j = 0; j < d.n_bias; j++, k++) {
            assert_string_equal(m->tensors[k].name, d.bias[j].name);
            params += (size_t)d.bias[j].rows;
        }
        fl_matrix_info info;
        assert_int_equal(fl_model_matrix_info(m, i, &info), FL_OK);
        assert_string_equal(info.name, d.name);
        assert_int_equal(info.kind, d.kind);
        assert_int_equal(info.layer, d.layer);
        assert_int_equal(info.direction, 0);
        assert_int_equal(info.precision, FL_PRECISION_F32);
        assert_int_equal(info.params, fl_spec_params(d.rows, d.cols, specs[i]));
        assert_int_equal(info.bytes, 4 * info.params);
        params += info.params;
    }
    assert_int_equal(k, m->n_tensors);
    assert_int_equal(params, fl_model_num_params(m));
    fl_model_free(m);
}

/* ------------------------------------------------------------------ versions */

/* Whole file into a malloc'd buffer. */
static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

/* The header JSON of a safetensors buffer (caller deletes). */
static cJSON *header_of(const unsigned char *b, size_t n, uint64_t *hlen) {
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--) h = (h << 8) | b[i];
    assert_true(h + 8 <= n);
    *hlen = h;
    cJSON *root = cJSON_ParseWithLength((const char *)b + 8, (size_t)h);
    assert_non_null(root);
    return root;
}

/* The file at path with __metadata__[key] set to val (NULL removes it), as a new buffer. */
static unsigned char *with_meta(const char *path, const char *key, const char *val, size_t *out_n) {
    size_t n;
    unsigned char *b = read_all(path, &n);
    uint64_t h;
    cJSON *root = header_of(b, n, &h);
    cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    cJSON_DeleteItemFromObjectCaseSensitive(meta, key);
    if (val) assert_non_null(cJSON_AddStringToObject(meta, key, val));
    char *json = cJSON_PrintUnformatted(root);
    size_t jl = strlen(json), pad = (jl + 7) & ~(size_t)7, data = n - 8 - (size_t)h;
    unsigned char *o = malloc(8 + pad + data);
    assert_non_null(o);
    for (int i = 0; i < 8; i++) o[i] = (unsigned char)((uint64_t)pad >> (8 * i));
    memcpy(o + 8, json, jl);
    memset(o + 8 + jl, ' ', pad - jl);
    memcpy(o + 8 + pad, b + 8 + h, data);
    *out_n = 8 + pad + data;
    cJSON_free(json);
    cJSON_Delete(root);
    free(b);
    return o;
}

static const char *meta_str(const cJSON *root, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "__metadata__"), key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const char *fixture(void) {
    static char p[512];
    const char *src = getenv("FL_SOURCE_DIR");
    assert_non_null(src); /* set by ctest */
    snprintf(p, sizeof p, "%s/tests/data/model_v1.safetensors", src);
    return p;
}

/* Written by the library before the per-matrix table existed: loads, with its methods, errors, weights. */
static void test_v1_file_loads(void **state) {
    fl_model *m;
    assert_int_equal(fl_model_load(fixture(), &m), FL_OK);
    assert_memory_equal(fl_model_arch(m), &CLS, sizeof CLS);
    const fl_method method[5] = {FL_METHOD_SVD, FL_METHOD_CP, FL_METHOD_SVD, FL_METHOD_SVD, FL_METHOD_SVD};
    const int rank[5] = {2, 3, 2, 2, 2};
    size_t n;
    unsigned char *b = read_all(fixture(), &n);
    uint64_t h;
    cJSON *root = header_of(b, n, &h);
    assert_string_equal(meta_str(root, "format_version"), "1");
    for (size_t i = 0; i < 5; i++) {
        fl_matrix_info info;
        assert_int_equal(fl_model_matrix_info(m, i, &info), FL_OK);
        assert_int_equal(info.method, method[i]);
        assert_int_equal(info.rank, rank[i]);
        char key[96];
        snprintf(key, sizeof key, "rel_error.%s", info.name);
        assert_true(info.rel_error == strtod(meta_str(root, key), NULL));
        assert_null(meta_str(root, "precision.lstm.weight_ih_l0")); /* really a version-1 file */
    }
    /* Every tensor holds the bytes the file stores for it. */
    for (size_t k = 0; k < m->n_tensors; k++) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, m->tensors[k].name);
        const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        assert_non_null(off);
        size_t begin = (size_t)off->child->valuedouble;
        assert_memory_equal(m->params + m->tensors[k].offset, b + 8 + h + begin, m->tensors[k].count * 4);
    }
    /* Saved again (with the table), it reloads to the same model. */
    assert_int_equal(fl_model_save(m, tmp_path("again.safetensors")), FL_OK);
    fl_model *m2;
    assert_int_equal(fl_model_load(tmp_path("again.safetensors"), &m2), FL_OK);
    assert_int_equal(m2->n_params, m->n_params);
    assert_memory_equal(m2->params, m->params, m->n_params * sizeof(float));
    cJSON_Delete(root);
    free(b);
    fl_model_free(m);
    fl_model_free(m2);
}

/* Today's models need version 1 and carry the per-matrix table. */
static void test_saved_table(void **state) {
    fl_model *m;
    assert_int_equal(fl_model_create(&CLS, NULL, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 3), FL_OK);
    assert_int_equal(fl_model_save(m, tmp_path("t.safetensors")), FL_OK);
    size_t n;
    unsigned char *b = read_all(tmp_path("t.safetensors"), &n);
    uint64_t h;
    cJSON *root = header_of(b, n, &h);
    assert_string_equal(meta_str(root, "format_version"), "1");
    for (size_t i = 0; i < fl_model_num_matrices(m); i++) {
        fl_mat_desc d;
        fl_arch_matrix(&CLS, i, &d);
        char key[96];
        snprintf(key, sizeof key, "kind.%s", d.name);
        assert_string_equal(meta_str(root, key), i == 4 ? "head" : i % 2 ? "hh" : "ih");
        snprintf(key, sizeof key, "direction.%s", d.name);
        assert_string_equal(meta_str(root, key), "0");
        snprintf(key, sizeof key, "precision.%s", d.name);
        assert_string_equal(meta_str(root, key), "f32");
    }
    cJSON_Delete(root);
    free(b);
    fl_model_free(m);
}

static void expect_load(const unsigned char *b, size_t n, fl_status want, const char *msg1, const char *msg2) {
    fl_model *m = (fl_model *)1;
    assert_int_equal(fl_model_load_memory(b, n, "edited.safetensors", &m), want);
    if (want == FL_OK) {
        assert_non_null(m);
        fl_model_free(m);
        return;
    }
    assert_null(m);
    if (msg1 && !strstr(fl_last_error(), msg1)) fail_msg("'%s' lacks '%s'", fl_last_error(), msg1);
    if (msg2 && !strstr(fl_last_error(), msg2)) fail_msg("'%s' lacks '%s'", fl_last_error(), msg2);
}

static void test_versions(void **state) {
    const char *p = fixture();
    size_t n;
    unsigned char *b;
    char newer[16], known[16];
    snprintf(newer, sizeof newer, "%d", FL_FORMAT_VERSION + 1);
    snprintf(known, sizeof known, "%d", FL_FORMAT_VERSION);
    b = with_meta(p, "format_version", newer, &n);
    char want1[64], want2[64];
    snprintf(want1, sizeof want1, "needs format_version %s", newer);
    snprintf(want2, sizeof want2, "up to version %s", known);
    expect_load(b, n, FL_ERR_VERSION, want1, want2);
    free(b);
    b = with_meta(p, "format_version", known, &n); /* the newest known version, table absent: defaults */
    expect_load(b, n, FL_OK, NULL, NULL);
    free(b);
    b = with_meta(p, "format_version", "0", &n);
    expect_load(b, n, FL_ERR_FORMAT, "format_version", NULL);
    free(b);
}

static void test_table_checked(void **state) {
    const char *p = fixture();
    size_t n;
    unsigned char *b = with_meta(p, "precision.lstm.weight_hh_l1", "bf16", &n);
    expect_load(b, n, FL_ERR_FORMAT, "precision.lstm.weight_hh_l1", "bf16");
    free(b);
    b = with_meta(p, "direction.lstm.weight_ih_l0", "1", &n);
    expect_load(b, n, FL_ERR_FORMAT, "direction.lstm.weight_ih_l0", NULL);
    free(b);
    b = with_meta(p, "kind.head.weight", "hh", &n);
    expect_load(b, n, FL_ERR_FORMAT, "kind.head.weight", "\"head\"");
    free(b);
    b = with_meta(p, "kind.lstm.weight_hh_l0", "hh", &n); /* consistent entries load */
    expect_load(b, n, FL_OK, NULL, NULL);
    free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_names_shapes), cmocka_unit_test(test_factors),
        cmocka_unit_test(test_model_follows_table), cmocka_unit_test(test_v1_file_loads),
        cmocka_unit_test(test_saved_table),         cmocka_unit_test(test_versions),
        cmocka_unit_test(test_table_checked),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
