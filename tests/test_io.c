/* Model file (safetensors) I/O: bit-exact round trips, and every kind of malformed file returning
 * the exact status expected with the path in fl_last_error(), never a crash. Malformed files are
 * made by editing the JSON header of a valid file with cJSON and rewriting it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "internal.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static int setup(void **state) { return tmp_dir_make("fl_test_io"); }

static int teardown(void **state) { return tmp_dir_remove(); }

/* ------------------------------------------------------------------ helpers */

static const fl_arch LM = {.vocab = 11, .input = 5, .hidden = 7, .layers = 2, .head = FL_HEAD_PER_STEP, .head_out = 11};

static fl_model *make_model(const fl_arch *a, const fl_mat_spec *specs, uint64_t seed) {
    fl_model *m = NULL;
    assert_int_equal(fl_model_create(a, specs, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, seed), FL_OK);
    return m;
}

static void set_tokenizer(fl_model *m, const char *text) {
    m->tokenizer = fl_malloc(strlen(text) + 1);
    assert_non_null(m->tokenizer);
    strcpy(m->tokenizer, text);
}

/* Same architecture, tensors (name, shape, every bit), rel_error and tokenizer. */
static void assert_models_equal(const fl_model *a, const fl_model *b) {
    assert_memory_equal(&a->arch, &b->arch, sizeof a->arch);
    assert_int_equal(a->n_tensors, b->n_tensors);
    for (size_t k = 0; k < a->n_tensors; k++) {
        const fl_tensor *x = &a->tensors[k], *y = &b->tensors[k];
        assert_string_equal(x->name, y->name);
        assert_int_equal(x->ndim, y->ndim);
        assert_int_equal(x->shape[0], y->shape[0]);
        assert_int_equal(x->shape[1], y->shape[1]);
        assert_memory_equal(a->params + x->offset, b->params + y->offset, x->count * sizeof(float));
    }
    size_t nmat = fl_model_num_matrices(a);
    assert_int_equal(nmat, fl_model_num_matrices(b));
    for (size_t i = 0; i < nmat; i++) {
        fl_matrix_info p, q;
        assert_int_equal(fl_model_matrix_info(a, i, &p), FL_OK);
        assert_int_equal(fl_model_matrix_info(b, i, &q), FL_OK);
        assert_string_equal(p.name, q.name);
        assert_int_equal(p.method, q.method);
        assert_int_equal(p.rank, q.rank);
        assert_memory_equal(&p.rel_error, &q.rel_error, sizeof(double)); /* %.17g round-trips exactly */
    }
    if (a->tokenizer || b->tokenizer) {
        assert_non_null(a->tokenizer);
        assert_non_null(b->tokenizer);
        assert_string_equal(a->tokenizer, b->tokenizer);
    }
}

/* A parsed valid file: header JSON and a copy of the data section. */
typedef struct image {
    cJSON *hdr;
    unsigned char *data;
    size_t dlen;
} image;

static image image_read(const char *path) {
    unsigned char *b;
    size_t len = file_read(path, &b);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | b[i];
    assert_true(8 + n <= len);
    image im = {cJSON_ParseWithLength((const char *)b + 8, (size_t)n), NULL, len - 8 - (size_t)n};
    assert_non_null(im.hdr);
    im.data = malloc(im.dlen + 1);
    memcpy(im.data, b + 8 + n, im.dlen);
    free(b);
    return im;
}

static void image_free(image *im) {
    cJSON_Delete(im->hdr);
    free(im->data);
}

/* Writes header (space padded to 8) + data. */
static void image_write(const char *path, const image *im) {
    char *js = cJSON_PrintUnformatted(im->hdr);
    size_t jl = strlen(js), n = (jl + 7) & ~(size_t)7;
    size_t len = 8 + n + im->dlen;
    unsigned char *b = malloc(len);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(b + 8, js, jl);
    memset(b + 8 + jl, ' ', n - jl);
    memcpy(b + 8 + n, im->data, im->dlen);
    file_write(path, b, len);
    free(b);
    cJSON_free(js);
}

static cJSON *entry(const image *im, const char *name) {
    cJSON *e = cJSON_GetObjectItemCaseSensitive(im->hdr, name);
    assert_non_null(e);
    return e;
}

static cJSON *meta(const image *im) { return entry(im, "__metadata__"); }

static void set_meta(const image *im, const char *key, const char *val) {
    cJSON *m = meta(im);
    cJSON_DeleteItemFromObjectCaseSensitive(m, key);
    if (val) cJSON_AddStringToObject(m, key, val);
}

static void set_offsets(const image *im, const char *name, double b, double e) {
    cJSON *arr = cJSON_CreateArray();
    cJSON_AddItemToArray(arr, cJSON_CreateNumber(b));
    cJSON_AddItemToArray(arr, cJSON_CreateNumber(e));
    cJSON_ReplaceItemInObjectCaseSensitive(entry(im, name), "data_offsets", arr);
}

static uint64_t offset_of(const image *im, const char *name, int which) {
    cJSON *o = cJSON_GetObjectItemCaseSensitive(entry(im, name), "data_offsets");
    return (uint64_t)cJSON_GetArrayItem(o, which)->valuedouble;
}

/* Loads path, expects status want and a detail naming the path (and containing `needle`). */
static void expect_load(const char *path, fl_status want, const char *needle) {
    fl_model *m = (fl_model *)(uintptr_t)1;
    fl_status st = fl_model_load(path, &m);
    if (st != want)
        fail_msg("%s: got %s (%s), want %s", needle ? needle : "", fl_status_str(st), fl_last_error(),
                 fl_status_str(want));
    if (st == FL_OK) {
        fl_model_free(m);
        return;
    }
    assert_null(m);
    if (!strstr(fl_last_error(), path)) fail_msg("error '%s' does not name %s", fl_last_error(), path);
    if (needle && !strstr(fl_last_error(), needle)) fail_msg("error '%s' lacks '%s'", fl_last_error(), needle);
}

/* Writes a valid LM model to path "base.st" and returns it (caller frees). */
static fl_model *write_base(const char *path) {
    fl_model *m = make_model(&LM, NULL, 3);
    set_tokenizer(m, "{\"chars\": \"abc\\\"\\n\"}");
    assert_int_equal(fl_model_save(m, path), FL_OK);
    return m;
}

/* ------------------------------------------------------------------ round trips */

static void roundtrip(fl_model *m, const char *name) {
    const char *p = tmp_path(name);
    assert_int_equal(fl_model_save(m, p), FL_OK);
    fl_model *back = NULL;
    assert_int_equal(fl_model_load(p, &back), FL_OK);
    assert_models_equal(m, back);
    fl_model_free(back);
    /* Saving again gives the same bytes. */
    unsigned char *b1, *b2;
    size_t n1 = file_read(p, &b1);
    assert_int_equal(fl_model_save(m, tmp_path("again.st")), FL_OK);
    size_t n2 = file_read(tmp_path("again.st"), &b2);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);
    /* Header: length a multiple of 8, JSON object padded with spaces, data packed exactly. */
    uint64_t hn = 0;
    for (int i = 7; i >= 0; i--) hn = hn << 8 | b1[i];
    assert_int_equal(hn % 8, 0);
    assert_int_equal(b1[8], '{');
    assert_int_equal(n1, 8 + hn + fl_model_num_params(m) * 4);
    free(b1);
    free(b2);
}

static void test_roundtrip_dense(void **state) {
    fl_model *m = make_model(&LM, NULL, 1);
    set_tokenizer(m, "{\"vocab\": [\"a\", \"\\u00e9\", \"\\n\", \"\\\"\"]}");
    roundtrip(m, "dense.st");
    fl_model_free(m);

    const fl_arch feat = {.vocab = 0, .input = 3, .hidden = 4, .layers = 1, .head = FL_HEAD_NONE};
    m = make_model(&feat, NULL, 2);
    roundtrip(m, "feat.st");
    fl_model_free(m);
}

static void test_roundtrip_decomposed(void **state) {
    const fl_arch a = {.vocab = 0, .input = 6, .hidden = 5, .layers = 2, .head = FL_HEAD_LAST_STEP, .head_out = 3};
    const fl_mat_spec specs[5] = {
        {FL_METHOD_SVD, 3}, {FL_METHOD_CP, 4}, {FL_METHOD_DENSE, 0}, {FL_METHOD_CP, 2}, {FL_METHOD_SVD, 2},
    };
    fl_model *m = make_model(&a, specs, 7);
    const double rel[5] = {0.1234567890123456789, 1.0 / 3.0, 0.0, 2.5e-300, -1.0 /* unknown */};
    for (size_t i = 0; i < 5; i++) fl_model_mat(m, i)->rel_error = rel[i];
    roundtrip(m, "decomp.st");
    fl_model *back = NULL;
    assert_int_equal(fl_model_load(tmp_path("decomp.st"), &back), FL_OK);
    assert_non_null(fl_model_find_tensor(back, "lstm.weight_hh_l0.B"));
    assert_non_null(fl_model_find_tensor(back, "head.weight.V"));
    assert_null(fl_model_find_tensor(back, "head.weight"));
    fl_model_free(back);
    /* A non-finite recorded error is saved as unknown (-1), so the file stays loadable. */
    fl_model_mat(m, 0)->rel_error = NAN;
    assert_int_equal(fl_model_save(m, tmp_path("decomp.st")), FL_OK);
    assert_int_equal(fl_model_load(tmp_path("decomp.st"), &back), FL_OK);
    assert_true(fl_model_mat(back, 0)->rel_error == -1.0);
    fl_model_free(back);
    fl_model_free(m);
}

/* A file whose tensors sit in a different order in the data section and in the JSON loads the same. */
static void test_reordered_file(void **state) {
    const char *p = tmp_path("order.st");
    fl_model *m = write_base(p);
    image im = image_read(p);
    /* Reverse the data layout: tensor k moves to the mirrored position. */
    unsigned char *d = malloc(im.dlen);
    size_t pos = 0;
    cJSON *fresh = cJSON_CreateObject();
    cJSON_AddItemToObject(fresh, "__metadata__", cJSON_Duplicate(meta(&im), 1));
    for (size_t k = m->n_tensors; k-- > 0;) {
        const char *name = m->tensors[k].name;
        uint64_t b = offset_of(&im, name, 0), e = offset_of(&im, name, 1);
        memcpy(d + pos, im.data + b, e - b);
        cJSON *en = cJSON_Duplicate(entry(&im, name), 1);
        cJSON_AddItemToObject(fresh, name, en);
        cJSON *arr = cJSON_CreateArray();
        cJSON_AddItemToArray(arr, cJSON_CreateNumber((double)pos));
        cJSON_AddItemToArray(arr, cJSON_CreateNumber((double)(pos + (e - b))));
        cJSON_ReplaceItemInObjectCaseSensitive(en, "data_offsets", arr);
        pos += e - b;
    }
    cJSON_Delete(im.hdr);
    free(im.data);
    im.hdr = fresh;
    im.data = d;
    image_write(p, &im);
    fl_model *back = NULL;
    assert_int_equal(fl_model_load(p, &back), FL_OK);
    assert_models_equal(m, back);
    fl_model_free(back);
    /* Metadata without method / rel_error keys: dense, rel_error 0. */
    for (size_t i = 0; i < fl_model_num_matrices(m); i++) {
        fl_matrix_info mi;
        fl_model_matrix_info(m, i, &mi);
        char key[96];
        snprintf(key, sizeof key, "method.%s", mi.name);
        set_meta(&im, key, NULL);
        snprintf(key, sizeof key, "rel_error.%s", mi.name);
        set_meta(&im, key, NULL);
    }
    image_write(p, &im);
    assert_int_equal(fl_model_load(p, &back), FL_OK);
    assert_models_equal(m, back);
    fl_model_free(back);
    image_free(&im);
    fl_model_free(m);
}

static void test_save_errors(void **state) {
    fl_model *m = make_model(&LM, NULL, 1);
    const char *bad = "/nonexistent-dir-fl/x.st";
    assert_int_equal(fl_model_save(m, bad), FL_ERR_IO);
    assert_non_null(strstr(fl_last_error(), bad));
    assert_int_equal(fl_model_save(NULL, bad), FL_ERR_ARG);
    /* NaN weights: refused, nothing written. */
    m->layer[1].b_hh[3] = NAN;
    const char *p = tmp_path("nan_save.st");
    assert_int_equal(fl_model_save(m, p), FL_ERR_NONFINITE);
    assert_non_null(strstr(fl_last_error(), "lstm.bias_hh_l1"));
    assert_int_equal(access(p, F_OK), -1);
    m->layer[1].b_hh[3] = 0;
    /* Allocation failure while saving. */
    fl_alloc_fail_after(0);
    fl_status st = fl_model_save(m, p);
    fl_alloc_fail_after(-1);
    assert_int_equal(st, FL_ERR_NOMEM);
    assert_int_equal(access(p, F_OK), -1);
    /* Saving leaves no temporary files behind. */
    assert_int_equal(fl_model_save(m, p), FL_OK);
    DIR *d = opendir(tmp_dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));) assert_null(strstr(e->d_name, ".tmp."));
    closedir(d);
    fl_model_free(m);
}

/* ------------------------------------------------------------------ robustness */

static void test_missing_empty_short(void **state) {
    expect_load(tmp_path("does-not-exist.st"), FL_ERR_IO, "does-not-exist.st");
    expect_load(tmp_dir, FL_ERR_IO, NULL); /* a directory */
    const char *p = tmp_path("short.st");
    file_write(p, "", 0);
    expect_load(p, FL_ERR_FORMAT, "empty");
    file_write(p, "\x10\0\0\0", 4);
    expect_load(p, FL_ERR_FORMAT, "shorter");
    fl_model *m = NULL;
    assert_int_equal(fl_model_load(p, NULL), FL_ERR_ARG);
    assert_int_equal(fl_model_load(NULL, &m), FL_ERR_ARG);
}

static void test_header_length(void **state) {
    const char *base = tmp_path("base.st"), *p = tmp_path("hl.st");
    fl_model_free(write_base(base));
    unsigned char *b;
    size_t len = file_read(base, &b);
    unsigned char save[8];
    memcpy(save, b, 8);
    memset(b, 0, 8);
    file_write(p, b, len);
    expect_load(p, FL_ERR_FORMAT, "header length is 0");
    uint64_t big = (uint64_t)200 << 20; /* > 100 MB */
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(big >> (8 * i));
    file_write(p, b, len);
    expect_load(p, FL_ERR_FORMAT, "100 MB");
    uint64_t past = len - 8 + 1;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(past >> (8 * i));
    file_write(p, b, len);
    expect_load(p, FL_ERR_FORMAT, "past end of file");
    memset(b, 0xff, 8);
    file_write(p, b, len);
    expect_load(p, FL_ERR_FORMAT, NULL);
    /* Header shorter than the JSON: cut mid-object. */
    memcpy(b, save, 8);
    b[0] = (unsigned char)(b[0] - 8);
    file_write(p, b, len);
    expect_load(p, FL_ERR_FORMAT, NULL);
    free(b);
}

/* Truncating a valid file anywhere gives FL_ERR_FORMAT: every byte of the header region, and a
 * sample of the data section. */
static void test_truncation(void **state) {
    const char *base = tmp_path("base.st"), *p = tmp_path("trunc.st");
    fl_model_free(write_base(base));
    unsigned char *b;
    size_t len = file_read(base, &b);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | b[i];
    size_t cuts = 0;
    for (size_t k = 0; k < len; k++) {
        if (k > 8 + n && (k - 8 - n) % 29 != 0 && k < len - 8) continue;
        file_write(p, b, k);
        expect_load(p, FL_ERR_FORMAT, NULL);
        cuts++;
    }
    assert_true(cuts > 8 + n);
    free(b);
}

/* Overwriting header bytes with assorted characters never crashes; any failure names the path. */
static void test_corrupt_header_bytes(void **state) {
    const char *base = tmp_path("base.st"), *p = tmp_path("corrupt.st");
    fl_model_free(write_base(base));
    unsigned char *b;
    size_t len = file_read(base, &b);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | b[i];
    const unsigned char subst[] = {'{', '}', '"', '[', '0', '9', '-', ':', ',', 0x00, 0xff, '\\'};
    size_t failures = 0, total = 0;
    for (size_t k = 8; k < 8 + n; k++) {
        unsigned char orig = b[k];
        for (size_t s = 0; s < sizeof subst; s++) {
            if (subst[s] == orig) continue;
            b[k] = subst[s];
            file_write(p, b, len);
            fl_model *m = NULL;
            fl_status st = fl_model_load(p, &m);
            total++;
            if (st == FL_OK) {
                fl_model_free(m);
                continue;
            }
            failures++;
            assert_null(m);
            assert_true(st == FL_ERR_FORMAT || st == FL_ERR_SHAPE || st == FL_ERR_DTYPE ||
                        st == FL_ERR_VERSION || st == FL_ERR_NONFINITE);
            if (!strstr(fl_last_error(), p)) fail_msg("'%s' does not name the file", fl_last_error());
        }
        b[k] = orig;
    }
    assert_true(failures > total / 2); /* most single-byte damage is caught */
    free(b);
}

/* One header edit and the status it must produce. */
typedef void (*edit_fn)(image *im);

static void e_not_object(image *im) {
    cJSON_Delete(im->hdr);
    im->hdr = cJSON_CreateArray();
    cJSON_AddItemToArray(im->hdr, cJSON_CreateNumber(1));
}
static void e_no_meta(image *im) { cJSON_DeleteItemFromObjectCaseSensitive(im->hdr, "__metadata__"); }
static void e_meta_not_object(image *im) {
    cJSON_ReplaceItemInObjectCaseSensitive(im->hdr, "__metadata__", cJSON_CreateString("x"));
}
static void e_meta_number(image *im) { cJSON_AddNumberToObject(meta(im), "hidden2", 3); }
static void e_format_missing(image *im) { set_meta(im, "format", NULL); }
static void e_format_wrong(image *im) { set_meta(im, "format", "pytorch"); }
static void e_version_newer(image *im) { set_meta(im, "format_version", "3"); }
static void e_version_bad(image *im) { set_meta(im, "format_version", "1.0"); }
static void e_version_missing(image *im) { set_meta(im, "format_version", NULL); }
static void e_hidden_missing(image *im) { set_meta(im, "hidden", NULL); }
static void e_hidden_text(image *im) { set_meta(im, "hidden", "seven"); }
static void e_hidden_neg(image *im) { set_meta(im, "hidden", "-7"); }
static void e_hidden_huge(image *im) { set_meta(im, "hidden", "99999999999"); }
static void e_hidden_other(image *im) { set_meta(im, "hidden", "8"); } /* tensors no longer fit */
static void e_layers_zero(image *im) { set_meta(im, "layers", "0"); }
static void e_layers_more(image *im) { set_meta(im, "layers", "3"); }
static void e_head_bad(image *im) { set_meta(im, "head", "sideways"); }
static void e_head_out_mismatch(image *im) { set_meta(im, "head", "none"); }
static void e_method_bad(image *im) { set_meta(im, "method.lstm.weight_ih_l0", "svd:0"); }
static void e_method_word(image *im) { set_meta(im, "method.lstm.weight_ih_l0", "tucker:2"); }
static void e_method_rank_big(image *im) { set_meta(im, "method.lstm.weight_ih_l0", "svd:1000"); }
static void e_method_other(image *im) { set_meta(im, "method.lstm.weight_hh_l1", "svd:2"); }
static void e_rel_error_bad(image *im) { set_meta(im, "rel_error.head.weight", "small"); }
static void e_rel_error_inf(image *im) { set_meta(im, "rel_error.head.weight", "inf"); }
static void e_dtype_f16(image *im) {
    cJSON_ReplaceItemInObjectCaseSensitive(entry(im, "lstm.weight_hh_l0"), "dtype", cJSON_CreateString("F16"));
}
static void e_dtype_missing(image *im) { cJSON_DeleteItemFromObjectCaseSensitive(entry(im, "head.bias"), "dtype"); }
static void e_entry_not_object(image *im) {
    cJSON_ReplaceItemInObjectCaseSensitive(im->hdr, "head.bias", cJSON_CreateNumber(4));
}
static void e_shape_wrong(image *im) {
    cJSON *s = cJSON_GetObjectItemCaseSensitive(entry(im, "lstm.weight_ih_l1"), "shape");
    cJSON_ReplaceItemInArray(s, 1, cJSON_CreateNumber(8));
}
static void e_shape_3d(image *im) {
    cJSON *s = cJSON_GetObjectItemCaseSensitive(entry(im, "lstm.weight_ih_l1"), "shape");
    cJSON_AddItemToArray(s, cJSON_CreateNumber(1));
}
static void e_shape_text(image *im) {
    cJSON *s = cJSON_GetObjectItemCaseSensitive(entry(im, "lstm.weight_ih_l1"), "shape");
    cJSON_ReplaceItemInArray(s, 1, cJSON_CreateString("7"));
}
static void e_shape_missing(image *im) { cJSON_DeleteItemFromObjectCaseSensitive(entry(im, "head.bias"), "shape"); }
static void e_offsets_one(image *im) {
    cJSON *arr = cJSON_CreateArray();
    cJSON_AddItemToArray(arr, cJSON_CreateNumber(0));
    cJSON_ReplaceItemInObjectCaseSensitive(entry(im, "head.bias"), "data_offsets", arr);
}
static void e_offsets_three(image *im) {
    cJSON *o = cJSON_GetObjectItemCaseSensitive(entry(im, "head.bias"), "data_offsets");
    cJSON_AddItemToArray(o, cJSON_CreateNumber(0));
}
static void e_offsets_frac(image *im) {
    uint64_t b = offset_of(im, "head.bias", 0), e = offset_of(im, "head.bias", 1);
    set_offsets(im, "head.bias", (double)b + 0.5, (double)e);
}
static void e_offsets_neg(image *im) { set_offsets(im, "embedding.weight", -4, 216); }
static void e_offsets_reversed(image *im) {
    uint64_t b = offset_of(im, "head.bias", 0), e = offset_of(im, "head.bias", 1);
    set_offsets(im, "head.bias", (double)e, (double)b);
}
static void e_offsets_past_end(image *im) {
    uint64_t b = offset_of(im, "head.bias", 0), e = offset_of(im, "head.bias", 1);
    set_offsets(im, "head.bias", (double)(b + im->dlen), (double)(e + im->dlen));
}
static void e_offsets_huge(image *im) { set_offsets(im, "head.bias", 1e300, 1e300 + 44); }
static void e_offsets_size(image *im) {
    uint64_t b = offset_of(im, "head.bias", 0), e = offset_of(im, "head.bias", 1);
    set_offsets(im, "head.bias", (double)b, (double)e - 4);
}
static void e_offsets_same(image *im) {
    set_offsets(im, "lstm.bias_hh_l0", (double)offset_of(im, "lstm.bias_ih_l0", 0),
                (double)offset_of(im, "lstm.bias_ih_l0", 1));
}
static void e_offsets_partial(image *im) {
    set_offsets(im, "lstm.bias_hh_l0", (double)offset_of(im, "lstm.bias_ih_l0", 0) + 8,
                (double)offset_of(im, "lstm.bias_ih_l0", 1) + 8);
}
static void e_extra_tensor(image *im) {
    cJSON *e = cJSON_Duplicate(entry(im, "head.bias"), 1);
    cJSON_AddItemToObject(im->hdr, "head.extra", e);
}
static void e_duplicate_tensor(image *im) {
    cJSON *e = cJSON_Duplicate(entry(im, "head.bias"), 1);
    cJSON_AddItemToObject(im->hdr, "head.bias", e);
}
static void e_missing_tensor(image *im) { cJSON_DeleteItemFromObjectCaseSensitive(im->hdr, "lstm.bias_hh_l1"); }
static void e_nan(image *im) {
    uint64_t b = offset_of(im, "lstm.weight_hh_l1", 0);
    float v = NAN;
    memcpy(im->data + b + 4 * 13, &v, 4);
}
static void e_inf(image *im) {
    uint64_t b = offset_of(im, "embedding.weight", 0);
    float v = -INFINITY;
    memcpy(im->data + b, &v, 4);
}
static void e_truncate_data(image *im) { im->dlen -= 4; }
static void e_extra_data(image *im) { im->dlen += 0; } /* control: unchanged file loads */

static void test_header_edits(void **state) {
    const struct {
        const char *what;
        edit_fn edit;
        fl_status want;
        const char *needle;
    } cases[] = {
        {"control", e_extra_data, FL_OK, NULL},
        {"not an object", e_not_object, FL_ERR_FORMAT, "not an object"},
        {"no metadata", e_no_meta, FL_ERR_FORMAT, "__metadata__"},
        {"metadata not object", e_meta_not_object, FL_ERR_FORMAT, "__metadata__"},
        {"metadata number", e_meta_number, FL_ERR_FORMAT, "hidden2"},
        {"format missing", e_format_missing, FL_ERR_FORMAT, "format"},
        {"format wrong", e_format_wrong, FL_ERR_FORMAT, "pytorch"},
        {"version newer", e_version_newer, FL_ERR_VERSION, "format_version 3"},
        {"version bad", e_version_bad, FL_ERR_FORMAT, "format_version"},
        {"version missing", e_version_missing, FL_ERR_FORMAT, "format_version"},
        {"hidden missing", e_hidden_missing, FL_ERR_FORMAT, "hidden"},
        {"hidden text", e_hidden_text, FL_ERR_FORMAT, "seven"},
        {"hidden negative", e_hidden_neg, FL_ERR_FORMAT, "hidden"},
        {"hidden huge", e_hidden_huge, FL_ERR_FORMAT, "hidden"},
        {"hidden other", e_hidden_other, FL_ERR_SHAPE, "lstm.weight_ih_l0"},
        {"layers zero", e_layers_zero, FL_ERR_FORMAT, "layers"},
        {"layers more", e_layers_more, FL_ERR_FORMAT, "missing tensor 'lstm.weight_ih_l2'"},
        {"head bad", e_head_bad, FL_ERR_FORMAT, "sideways"},
        {"head/head_out", e_head_out_mismatch, FL_ERR_FORMAT, "head_out"},
        {"method bad rank", e_method_bad, FL_ERR_FORMAT, "svd:0"},
        {"method unknown", e_method_word, FL_ERR_FORMAT, "tucker"},
        {"method rank too big", e_method_rank_big, FL_ERR_FORMAT, "rank"},
        {"method vs tensors", e_method_other, FL_ERR_FORMAT, "lstm.weight_hh_l1"},
        {"rel_error text", e_rel_error_bad, FL_ERR_FORMAT, "small"},
        {"rel_error inf", e_rel_error_inf, FL_ERR_FORMAT, "rel_error.head.weight"},
        {"dtype F16", e_dtype_f16, FL_ERR_DTYPE, "F16"},
        {"dtype missing", e_dtype_missing, FL_ERR_FORMAT, "dtype"},
        {"entry not object", e_entry_not_object, FL_ERR_FORMAT, "head.bias"},
        {"shape wrong", e_shape_wrong, FL_ERR_SHAPE, "[28, 8]"},
        {"shape 3d", e_shape_3d, FL_ERR_SHAPE, "lstm.weight_ih_l1"},
        {"shape text", e_shape_text, FL_ERR_FORMAT, "shape"},
        {"shape missing", e_shape_missing, FL_ERR_FORMAT, "shape"},
        {"offsets one", e_offsets_one, FL_ERR_FORMAT, "data_offsets"},
        {"offsets three", e_offsets_three, FL_ERR_FORMAT, "data_offsets"},
        {"offsets fraction", e_offsets_frac, FL_ERR_FORMAT, "data_offsets"},
        {"offsets negative", e_offsets_neg, FL_ERR_FORMAT, "data_offsets"},
        {"offsets reversed", e_offsets_reversed, FL_ERR_FORMAT, "begin > end"},
        {"offsets past end", e_offsets_past_end, FL_ERR_FORMAT, "past end"},
        {"offsets huge", e_offsets_huge, FL_ERR_FORMAT, "data_offsets"},
        {"offsets size", e_offsets_size, FL_ERR_FORMAT, "shape needs"},
        {"offsets same", e_offsets_same, FL_ERR_FORMAT, "overlapping"},
        {"offsets partial", e_offsets_partial, FL_ERR_FORMAT, "overlapping"},
        {"extra tensor", e_extra_tensor, FL_ERR_FORMAT, "head.extra"},
        {"duplicate tensor", e_duplicate_tensor, FL_ERR_FORMAT, "twice"},
        {"missing tensor", e_missing_tensor, FL_ERR_FORMAT, "lstm.bias_hh_l1"},
        {"NaN weight", e_nan, FL_ERR_NONFINITE, "'lstm.weight_hh_l1' element 13 is NaN"},
        {"Inf weight", e_inf, FL_ERR_NONFINITE, "'embedding.weight' element 0 is Inf"},
        {"data truncated", e_truncate_data, FL_ERR_FORMAT, "past end"},
    };
    const char *base = tmp_path("base.st"), *p = tmp_path("edit.st");
    fl_model_free(write_base(base));
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        image im = image_read(base);
        cases[c].edit(&im);
        image_write(p, &im);
        image_free(&im);
        fl_model *m = (fl_model *)(uintptr_t)1;
        fl_status st = fl_model_load(p, &m);
        if (st != cases[c].want)
            fail_msg("%s: got %s (%s), want %s", cases[c].what, fl_status_str(st), fl_last_error(),
                     fl_status_str(cases[c].want));
        if (st == FL_OK) {
            fl_model_free(m);
            continue;
        }
        assert_null(m);
        if (!strstr(fl_last_error(), p)) fail_msg("%s: '%s' does not name the file", cases[c].what, fl_last_error());
        if (cases[c].needle && !strstr(fl_last_error(), cases[c].needle))
            fail_msg("%s: '%s' lacks '%s'", cases[c].what, fl_last_error(), cases[c].needle);
    }
}

/* Trailing garbage inside the header region after the JSON. */
static void test_header_trailing(void **state) {
    const char *base = tmp_path("base.st"), *p = tmp_path("trail.st");
    fl_model_free(write_base(base));
    unsigned char *b;
    size_t len = file_read(base, &b);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | b[i];
    size_t k = 8 + n - 1;
    while (b[k] == ' ') k--;
    if (k + 1 < 8 + n) { /* there is padding: put junk in it */
        b[8 + n - 1] = 'x';
        file_write(p, b, len);
        expect_load(p, FL_ERR_FORMAT, "trailing");
    }
    /* Not JSON at all. */
    memset(b + 8, 'z', n);
    file_write(p, b, len);
    expect_load(p, FL_ERR_FORMAT, "malformed");
    free(b);
}

/* Allocation failures at every point of a load: FL_ERR_NOMEM, *out NULL, no leak (ASan). */
static void test_load_nomem(void **state) {
    const fl_mat_spec specs[5] = {
        {FL_METHOD_SVD, 2}, {FL_METHOD_CP, 3}, {FL_METHOD_DENSE, 0}, {FL_METHOD_DENSE, 0}, {FL_METHOD_SVD, 2},
    };
    const char *p = tmp_path("nomem.st");
    fl_model *m = make_model(&LM, specs, 5);
    set_tokenizer(m, "[\"tok\"]");
    assert_int_equal(fl_model_save(m, p), FL_OK);
    long k;
    for (k = 0; k < 1000; k++) {
        fl_alloc_fail_after(k);
        fl_model *back = (fl_model *)(uintptr_t)1;
        fl_status st = fl_model_load(p, &back);
        fl_alloc_fail_after(-1);
        if (st == FL_OK) {
            assert_models_equal(m, back);
            fl_model_free(back);
            break;
        }
        assert_int_equal(st, FL_ERR_NOMEM);
        assert_null(back);
        assert_non_null(strstr(fl_last_error(), p));
    }
    assert_true(k >= 4 && k < 1000); /* header, specs, model pieces, ranges, tokenizer */
    fl_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_dense),      cmocka_unit_test(test_roundtrip_decomposed),
        cmocka_unit_test(test_reordered_file),       cmocka_unit_test(test_save_errors),
        cmocka_unit_test(test_missing_empty_short),  cmocka_unit_test(test_header_length),
        cmocka_unit_test(test_truncation),           cmocka_unit_test(test_corrupt_header_bytes),
        cmocka_unit_test(test_header_edits),         cmocka_unit_test(test_header_trailing),
        cmocka_unit_test(test_load_nomem),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
