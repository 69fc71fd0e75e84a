/* The one data layer (src/train/dataset.c): every format, the model's stored vocabulary and class
 * names, bad input with its exact status, and the seeded split. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fastlstm/train.h"
#include "internal.h"
#include "npy.h"
#include "testutil.h"

#include <string.h>

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* The error detail contains want. */
static void error_has(const char *want) {
    if (!strstr(fl_last_error(), want)) fail_msg("error '%s' lacks '%s'", fl_last_error(), want);
}

/* A text classifier for vocabulary v: embedding + 1 layer + last-step head over its labels. */
static fl_model *text_classifier(const fl_vocab *v) {
    fl_arch a = {.vocab = fl_vocab_size(v), .input = 4, .hidden = 6, .layers = 1, .head = FL_HEAD_LAST_STEP,
                 .head_out = fl_vocab_num_labels(v)};
    fl_model *m;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 3), FL_OK);
    assert_int_equal(fl_vocab_attach(v, m), FL_OK);
    return m;
}

static void test_labelled_word(void **state) {
    (void)state;
    const char *path = tmp_path("a.tsv");
    /* blank lines skipped, CRLF accepted, labels sorted: neg = 0, pos = 1 */
    write_file(path, "pos\tgood film\r\n\nneg\tbad\nneg\tvery bad film\n");
    fl_data_spec s = {.path = path};
    assert_int_equal(fl_data_format_of(&s, 0), FL_DATA_LABELLED);
    assert_int_equal(fl_data_format_of(&s, 1), FL_DATA_TEXT);
    fl_vocab *v;
    fl_dataset *d;
    assert_int_equal(fl_data_load_new(&s, 0, FL_TOKENS_WORD, 0, 0, &v, &d), FL_OK);
    assert_int_equal(fl_vocab_num_labels(v), 2);
    assert_string_equal(fl_vocab_label(v, 0), "neg");
    assert_string_equal(fl_vocab_label(v, 1), "pos");
    assert_null(fl_vocab_label(v, 2));
    /* <unk> + bad, film, good, very: no <eos> from line ends */
    assert_int_equal(fl_vocab_size(v), 5);
    assert_int_equal(fl_dataset_size(d), 3);
    assert_int_equal(fl_dataset_seq(d), 3);
    assert_int_equal(fl_dataset_dim(d), 0);
    assert_int_equal(fl_dataset_classes(d), 2);
    const int32_t *ids = fl_dataset_ids(d), *lab = fl_dataset_labels(d);
    assert_int_equal(lab[0], 1);
    assert_int_equal(lab[1], 0);
    assert_int_equal(lab[2], 0);
    /* left-padded with <unk> (0): "bad" is (0, 0, id(bad)); its last step is its own token */
    assert_int_equal(ids[3], 0);
    assert_int_equal(ids[4], 0);
    assert_true(ids[5] > 0);
    assert_int_equal(ids[5], ids[7]); /* "very bad film": bad in the middle, */
    assert_int_equal(ids[2], ids[8]); /* film last, as in "good film" */
    assert_int_not_equal(ids[5], ids[8]);

    /* The vocabulary and class names travel with the model; eval-time loading uses them. */
    fl_model *m = text_classifier(v);
    const char *mp = tmp_path("clf.safetensors");
    assert_int_equal(fl_model_save(m, mp), FL_OK);
    fl_model *back;
    assert_int_equal(fl_model_load(mp, &back), FL_OK);
    fl_dataset *d2;
    assert_int_equal(fl_data_load(&s, back, &d2), FL_OK);
    assert_int_equal(fl_dataset_size(d2), 3);
    assert_memory_equal(fl_dataset_ids(d2), ids, 9 * sizeof(int32_t));
    fl_vocab *v2;
    assert_int_equal(fl_vocab_from_model(back, &v2), FL_OK);
    assert_int_equal(fl_vocab_num_labels(v2), 2);
    assert_string_equal(fl_vocab_label(v2, 1), "pos");
    fl_vocab_free(v2);

    /* An unseen word maps to <unk>; an unknown label is an error naming file and line. */
    const char *p2 = tmp_path("b.tsv");
    write_file(p2, "pos\tgood zebra\n");
    fl_data_spec s2 = {.path = p2};
    fl_dataset *d3;
    assert_int_equal(fl_data_load(&s2, back, &d3), FL_OK);
    assert_int_equal(fl_dataset_ids(d3)[1], 0);
    fl_dataset_free(d3);
    write_file(p2, "pos\tgood\nmaybe\tgood\n");
    assert_int_equal(fl_data_load(&s2, back, &d3), FL_ERR_DATA);
    assert_null(d3);
    error_has(":2: label 'maybe' is not one of the model's 2 classes");
    fl_dataset_free(d2);
    fl_model_free(back);
    fl_model_free(m);
    fl_vocab_free(v);
    fl_dataset_free(d);
}

static void test_labelled_char(void **state) {
    (void)state;
    const char *path = tmp_path("c.tsv");
    write_file(path, "x\tab\ny\t\xc3\xa9" "a\n");
    fl_data_spec s = {.path = path, .format = FL_DATA_LABELLED};
    fl_vocab *v;
    fl_dataset *d;
    assert_int_equal(fl_data_load_new(&s, 0, FL_TOKENS_CHAR, 0, 0, &v, &d), FL_OK);
    assert_int_equal(fl_vocab_mode(v), FL_TOKENS_CHAR);
    assert_int_equal(fl_dataset_seq(d), 2); /* "\xc3\xa9" is one code point */
    assert_int_equal(fl_dataset_ids(d)[0], fl_dataset_ids(d)[3]); /* (a, b) and (\xc3\xa9, a) */
    assert_int_not_equal(fl_dataset_ids(d)[1], fl_dataset_ids(d)[3]);
    fl_vocab_free(v);
    fl_dataset_free(d);
}

static void test_labelled_bad(void **state) {
    (void)state;
    const char *path = tmp_path("bad.tsv");
    fl_data_spec s = {.path = path};
    fl_vocab *v;
    fl_dataset *d;
    static const struct {
        const char *text, *error;
    } cases[] = {
        {"pos\tgood\nneg bad\n", "bad.tsv:2: no tab"},
        {"pos\tgood\n\tbad\n", "bad.tsv:2: empty label"},
        {"pos\tgood\nneg\t  \n", "bad.tsv:2: empty text"},
        {"pos\tgood\npos\tfine\n", "1 distinct label(s)"},
        {"\n\n", "bad.tsv: no labelled lines"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        write_file(path, cases[k].text);
        assert_int_equal(fl_data_load_new(&s, 0, FL_TOKENS_WORD, 0, 0, &v, &d), FL_ERR_DATA);
        assert_null(v);
        assert_null(d);
        error_has(cases[k].error);
    }
    write_file(path, "pos\tgood\nneg\t\xff\n");
    s.format = FL_DATA_LABELLED;
    assert_int_equal(fl_data_load_new(&s, 0, FL_TOKENS_CHAR, 0, 0, &v, &d), FL_ERR_DATA);
    s.path = tmp_path("missing.tsv");
    assert_int_equal(fl_data_load_new(&s, 0, FL_TOKENS_WORD, 0, 0, &v, &d), FL_ERR_IO);
    /* labelled text for a language model, a corpus for a classifier: the wrong task */
    s = (fl_data_spec){.path = path, .format = FL_DATA_LABELLED};
    assert_int_equal(fl_data_load_with(&s, 1, NULL, 0, &d), FL_ERR_SHAPE);
    s.format = FL_DATA_TEXT;
    assert_int_equal(fl_data_load_with(&s, 0, NULL, 0, &d), FL_ERR_SHAPE);
}

/* A language model: corpus text and token-id .npy give the same stream; eval of a .npy reads ids. */
static void test_lm_text_and_npy(void **state) {
    (void)state;
    const char *txt = tmp_path("corpus.txt");
    write_file(txt, "a b a c\nb a\n");
    fl_data_spec s = {.path = txt};
    fl_vocab *v;
    fl_dataset *d;
    assert_int_equal(fl_data_load_new(&s, 1, FL_TOKENS_WORD, 0, 0, &v, &d), FL_OK);
    assert_int_equal(fl_dataset_size(d), 8); /* a b a c <eos> b a <eos> */
    fl_arch a = {.vocab = fl_vocab_size(v), .input = 4, .hidden = 5, .layers = 1, .head = FL_HEAD_PER_STEP,
                 .head_out = fl_vocab_size(v)};
    fl_model *m;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 1), FL_OK);
    assert_int_equal(fl_vocab_attach(v, m), FL_OK);
    /* the same ids as (2, 4) int64 .npy: read in order as one stream */
    const char *np = tmp_path("ids.npy");
    int32_t ids[8];
    memcpy(ids, fl_dataset_tokens(d), sizeof ids);
    int64_t shape[2] = {2, 4};
    assert_int_equal(fl_npy_save_i32(np, ids, 2, shape), FL_OK);
    fl_data_spec sn = {.path = np};
    fl_dataset *dn;
    assert_int_equal(fl_data_load(&sn, m, &dn), FL_OK);
    assert_int_equal(fl_dataset_size(dn), 8);
    assert_memory_equal(fl_dataset_tokens(dn), ids, sizeof ids);
    fl_eval_result e1, e2;
    assert_int_equal(fl_model_evaluate(m, d, 1, 3, &e1), FL_OK);
    assert_int_equal(fl_model_evaluate(m, dn, 1, 3, &e2), FL_OK);
    assert_true(e1.loss == e2.loss);
    fl_dataset_free(dn);
    /* a float .npy is refused for a language model, not read as text */
    float f[4] = {0};
    int64_t fs[1] = {4};
    assert_int_equal(fl_npy_save_f32(np, f, 1, fs), FL_OK);
    assert_int_equal(fl_data_load(&sn, m, &dn), FL_ERR_DATA);
    error_has("integer token ids");
    /* ids beyond the model's vocabulary */
    ids[3] = 99;
    assert_int_equal(fl_npy_save_i32(np, ids, 2, shape), FL_OK);
    assert_int_equal(fl_data_load(&sn, m, &dn), FL_ERR_DATA);
    /* labelled text for this language model */
    fl_data_spec sl = {.path = txt, .format = FL_DATA_LABELLED};
    assert_int_equal(fl_data_load(&sl, m, &dn), FL_ERR_SHAPE);
    fl_model_free(m);
    fl_vocab_free(v);
    fl_dataset_free(d);
}

/* .npy classification through the layer, and a text file for a model without a vocabulary. */
static void test_npy_classify(void **state) {
    (void)state;
    float x[3 * 2 * 2] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    int32_t y[3] = {0, 1, 1};
    int64_t xs[3] = {3, 2, 2}, ys[1] = {3};
    const char *xp = tmp_path("x.npy"), *yp = tmp_path("y.npy");
    assert_int_equal(fl_npy_save_f32(xp, x, 3, xs), FL_OK);
    assert_int_equal(fl_npy_save_i32(yp, y, 1, ys), FL_OK);
    fl_arch a = {.input = 2, .hidden = 3, .layers = 1, .head = FL_HEAD_LAST_STEP, .head_out = 2};
    fl_model *m;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    fl_data_spec s = {.path = xp, .labels = yp};
    fl_dataset *d;
    assert_int_equal(fl_data_load(&s, m, &d), FL_OK);
    assert_int_equal(fl_dataset_size(d), 3);
    assert_int_equal(fl_dataset_dim(d), 2);
    fl_dataset_free(d);
    s.labels = NULL;
    assert_int_equal(fl_data_load(&s, m, &d), FL_ERR_SHAPE); /* features without labels */
    const char *tp = tmp_path("t.tsv");
    write_file(tp, "a\tb\nc\td\n");
    fl_data_spec st = {.path = tp};
    assert_int_equal(fl_data_load(&st, m, &d), FL_ERR_FORMAT); /* no vocabulary in the model */
    fl_model_free(m);
}

/* The split: seeded, disjoint, complete; a stream by position. */
static void test_split(void **state) {
    (void)state;
    enum { N = 10 };
    int32_t ids[N * 2], lab[N];
    for (int i = 0; i < N; i++) ids[2 * i] = ids[2 * i + 1] = i, lab[i] = i % 2;
    fl_dataset *d, *a, *b, *a2, *b2;
    assert_int_equal(fl_dataset_classify(N, 2, 0, NULL, ids, lab, 2, &d), FL_OK);
    assert_int_equal(fl_dataset_split(d, 0.3, 7, &a, &b), FL_OK);
    assert_int_equal(fl_dataset_size(a), 7);
    assert_int_equal(fl_dataset_size(b), 3);
    int seen[N] = {0};
    for (int i = 0; i < 7; i++) seen[fl_dataset_ids(a)[2 * i]]++;
    for (int i = 0; i < 3; i++) seen[fl_dataset_ids(b)[2 * i]]++;
    for (int i = 0; i < N; i++) assert_int_equal(seen[i], 1);
    for (int i = 0; i < 3; i++) assert_int_equal(fl_dataset_labels(b)[i], fl_dataset_ids(b)[2 * i] % 2);
    assert_int_equal(fl_dataset_split(d, 0.3, 7, &a2, &b2), FL_OK); /* same seed, same split */
    assert_memory_equal(fl_dataset_ids(b), fl_dataset_ids(b2), 6 * sizeof(int32_t));
    fl_dataset_free(a2), fl_dataset_free(b2);
    fl_dataset_free(a), fl_dataset_free(b);
    assert_int_equal(fl_dataset_split(d, 0.0, 7, &a, &b), FL_ERR_ARG);
    assert_int_equal(fl_dataset_split(d, 0.01, 7, &a, &b), FL_ERR_DATA); /* nothing to certify */
    assert_null(a);
    fl_dataset_free(d);
    int32_t tok[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    assert_int_equal(fl_dataset_lm(tok, 8, 8, &d), FL_OK);
    assert_int_equal(fl_dataset_split(d, 0.25, 1, &a, &b), FL_OK);
    assert_int_equal(fl_dataset_size(a), 6);
    assert_int_equal(fl_dataset_tokens(b)[0], 6); /* the tail */
    fl_dataset_free(a), fl_dataset_free(b), fl_dataset_free(d);
}

static int setup(void **state) {
    (void)state;
    return tmp_dir_make("fl_test_data");
}
static int teardown(void **state) {
    (void)state;
    return tmp_dir_remove();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_labelled_word), cmocka_unit_test(test_labelled_char),
        cmocka_unit_test(test_labelled_bad),  cmocka_unit_test(test_lm_text_and_npy),
        cmocka_unit_test(test_npy_classify),  cmocka_unit_test(test_split),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
