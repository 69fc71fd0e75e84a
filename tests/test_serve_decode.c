/* fastlstm serve's request decoders and answer encoders (cli/serve/decode.c): every accepted form
 * against the values it must produce, every refusal with its exact HTTP status and a message naming
 * the problem, and the awkward bodies met while fuzzing them (tests/fuzz/fuzz_serve_decode.c) replayed:
 * headers that run past the body, dimensions that would overflow, deep nesting. Also "texts" and the
 * library's string tokenizer under it (fl_vocab_encode), on vocabularies whose ids follow from the
 * documented order (most frequent first, ties by first appearance, "<unk>" = 0). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "serve.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const fl_arch FEAT = {.vocab = 0, .input = 3, .hidden = 4, .layers = 1, .head = FL_HEAD_NONE};
static const fl_arch IDS = {.vocab = 10, .input = 4, .hidden = 4, .layers = 1, .head = FL_HEAD_PER_STEP, .head_out = 10};

static int json(const char *body, const fl_arch *a, bool stream, srv_input *in, srv_err *e) {
    return srv_decode_json(body, strlen(body), a, NULL, stream, 16, 4, in, e);
}

static void refuse_json(const char *body, const fl_arch *a, bool stream, int code, const char *word) {
    srv_input in;
    srv_err e = {0};
    int rc = json(body, a, stream, &in, &e);
    if (rc != code || !strstr(e.msg, word))
        fail_msg("%s: got %d (%s), want %d naming '%s'", body, rc, e.msg, code, word);
    assert_null(in.x);
    assert_null(in.tokens);
    assert_null(in.lengths);
}

static void test_json_features(void **state) {
    srv_input in;
    srv_err e;
    assert_int_equal(json("{\"inputs\": [[[1, 2, 3], [4, 5, 6]], [[-1.5, 0, 1e-3], [7, 8, 9]]], \"state\": true}",
                          &FEAT, false, &in, &e), 0);
    assert_int_equal(in.B, 2);
    assert_int_equal(in.T, 2);
    assert_int_equal(in.D, 3);
    assert_true(in.state);
    assert_null(in.lengths);
    assert_true(in.x[0] == 1 && in.x[5] == 6 && in.x[6] == -1.5f && in.x[8] == 1e-3f && in.x[11] == 9);
    srv_input_free(&in);
    // Ragged rows: padded with zeros, lengths recorded; explicit lengths may shorten further.
    assert_int_equal(json("{\"inputs\": [[[1, 1, 1]], [[2, 2, 2], [3, 3, 3]]], \"lengths\": [1, 1]}", &FEAT, false,
                          &in, &e), 0);
    assert_int_equal(in.T, 2);
    assert_non_null(in.lengths);
    assert_int_equal(in.lengths[0], 1);
    assert_int_equal(in.lengths[1], 1);
    assert_true(in.x[3] == 0 && in.x[6] == 2 && in.x[9] == 3);
    srv_input_free(&in);
    // A stream step: frames [T][D].
    assert_int_equal(json("{\"inputs\": [[1, 2, 3], [4, 5, 6], [7, 8, 9]]}", &FEAT, true, &in, &e), 0);
    assert_int_equal(in.B, 1);
    assert_int_equal(in.T, 3);
    assert_true(in.x[8] == 9);
    srv_input_free(&in);
}

static void test_json_tokens(void **state) {
    srv_input in;
    srv_err e;
    assert_int_equal(json("{\"inputs\": [[1, 2, 9], [0, 0, 3]]}", &IDS, false, &in, &e), 0);
    assert_int_equal(in.D, 0);
    assert_non_null(in.tokens);
    assert_null(in.x);
    assert_int_equal(in.tokens[2], 9);
    assert_int_equal(in.tokens[5], 3);
    srv_input_free(&in);
    assert_int_equal(json("{\"inputs\": [4, 5]}", &IDS, true, &in, &e), 0);
    assert_int_equal(in.T, 2);
    assert_int_equal(in.tokens[1], 5);
    srv_input_free(&in);
}

static void test_json_refusals(void **state) {
    refuse_json("{\"inputs\": [[[1, 2, 3]]", &FEAT, false, 400, "malformed JSON");
    refuse_json("", &FEAT, false, 400, "malformed JSON");
    refuse_json("[1]", &FEAT, false, 400, "JSON object");
    refuse_json("{}", &FEAT, false, 400, "\"inputs\"");
    refuse_json("{\"inputs\": []}", &FEAT, false, 400, "empty");
    refuse_json("{\"inputs\": [[]]}", &FEAT, false, 400, "no time steps");
    refuse_json("{\"inputs\": [[[1, 2]]]}", &FEAT, false, 400, "inputs[0][0]: has 2 features");
    refuse_json("{\"inputs\": [[[1, 2, 3]], [1]]}", &FEAT, false, 400, "inputs[1][0]");
    refuse_json("{\"inputs\": [[[1, \"2\", 3]]]}", &FEAT, false, 400, "inputs[0][0][1]: expected a number");
    refuse_json("{\"inputs\": [[[1, 2, 1e39]]]}", &FEAT, false, 400, "not a finite float32");
    refuse_json("{\"inputs\": [[[1, 2, -1e999]]]}", &FEAT, false, 400, "not a finite");
    refuse_json("{\"inputs\": [[[1, 2, 3]]], \"state\": 1}", &FEAT, false, 400, "\"state\"");
    refuse_json("{\"inputs\": [[[1, 2, 3]]], \"lengths\": [0]}", &FEAT, false, 400, "lengths[0]");
    refuse_json("{\"inputs\": [[[1, 2, 3]]], \"lengths\": [1, 1]}", &FEAT, false, 400, "\"lengths\"");
    refuse_json("{\"inputs\": [[[1, 2, 3]]], \"lengths\": [1.5]}", &FEAT, false, 400, "lengths[0]");
    refuse_json("{\"inputs\": [[1, 2, 3]], \"state\": true}", &FEAT, true, 400, "stream step");
    refuse_json("{\"inputs\": [[0],[0],[0],[0],[0]]}", &IDS, false, 413, "batch");
    refuse_json("{\"inputs\": [[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]]}", &IDS, false, 413, "sequence length");
    refuse_json("{\"inputs\": [[1, 10]]}", &IDS, false, 400, "token id 10");
    refuse_json("{\"inputs\": [[1, -1]]}", &IDS, false, 400, "token id -1");
    refuse_json("{\"inputs\": [[0.5]]}", &IDS, false, 400, "not an integer");
    refuse_json("{\"texts\": [\"hello\"]}", &IDS, false, 400, "no tokenizer");
    // Deep nesting: cJSON's nesting limit refuses it as malformed (no stack exhaustion).
    char deep[6000];
    size_t k = (size_t)snprintf(deep, sizeof deep, "{\"inputs\": ");
    for (int i = 0; i < 2500; i++) deep[k++] = '[';
    deep[k] = '\0';
    refuse_json(deep, &FEAT, false, 400, "malformed JSON");
}

/* A .npy body: magic, version, header (dictionary text, padded), data. */
static size_t npy_bytes(unsigned char *out, int major, const char *dict, const void *data, size_t n) {
    size_t pre = major == 1 ? 10 : 12, dl = strlen(dict);
    memcpy(out, "\x93NUMPY", 6);
    out[6] = (unsigned char)major;
    out[7] = 0;
    if (major == 1) {
        out[8] = (unsigned char)dl;
        out[9] = (unsigned char)(dl >> 8);
    } else {
        for (int i = 0; i < 4; i++) out[8 + i] = (unsigned char)(dl >> (8 * i));
    }
    memcpy(out + pre, dict, dl);
    memcpy(out + pre + dl, data, n);
    return pre + dl + n;
}

static int npy(const unsigned char *b, size_t n, const fl_arch *a, bool stream, srv_input *in, srv_err *e) {
    return srv_decode_npy(b, n, a, stream, 16, 4, in, e);
}

static void refuse_npy(const unsigned char *b, size_t n, const fl_arch *a, bool stream, int code, const char *word) {
    srv_input in;
    srv_err e = {0};
    int rc = npy(b, n, a, stream, &in, &e);
    if (rc != code || !strstr(e.msg, word)) fail_msg("got %d (%s), want %d naming '%s'", rc, e.msg, code, word);
    assert_null(in.x);
    assert_null(in.tokens);
}

static void test_npy(void **state) {
    unsigned char b[512];
    float x[6] = {1, 2, 3, 4, 5, 6};
    int64_t ids[3] = {1, 9, 0};
    srv_input in;
    srv_err e;
    size_t n = npy_bytes(b, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3), }\n", x, sizeof x);
    assert_int_equal(npy(b, n, &FEAT, false, &in, &e), 0);
    assert_true(in.B == 1 && in.T == 2 && in.x[5] == 6);
    srv_input_free(&in);
    n = npy_bytes(b, 3, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n", x, sizeof x);
    assert_int_equal(npy(b, n, &FEAT, true, &in, &e), 0);
    assert_true(in.B == 1 && in.T == 2);
    srv_input_free(&in);
    n = npy_bytes(b, 2, "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 3), }\n", ids, sizeof ids);
    assert_int_equal(npy(b, n, &IDS, false, &in, &e), 0);
    assert_true(in.tokens[1] == 9 && in.T == 3);
    srv_input_free(&in);
    // Refusals, and the bodies a fuzzer reaches first.
    refuse_npy(b, 5, &FEAT, false, 400, "magic");
    n = npy_bytes(b, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3), }\n", x, sizeof x);
    refuse_npy(b, n - 1, &FEAT, false, 400, "data bytes");
    b[8] = 0xff; /* header length past the body */
    refuse_npy(b, n, &FEAT, false, 400, "runs past");
    b[6] = 9;
    refuse_npy(b, n, &FEAT, false, 400, "version 9");
    n = npy_bytes(b, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2, 3), }\n", x, sizeof x);
    refuse_npy(b, n, &FEAT, false, 400, "element type");
    n = npy_bytes(b, 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (1, 2, 3), }\n", x, sizeof x);
    refuse_npy(b, n, &FEAT, false, 400, "fortran_order");
    n = npy_bytes(b, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 6), }\n", x, sizeof x);
    refuse_npy(b, n, &FEAT, false, 400, "more than 4");
    n = npy_bytes(b, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999, 2, 3), }\n", x, sizeof x);
    refuse_npy(b, n, &FEAT, false, 400, "too large");
    n = npy_bytes(b, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3", x, 0);
    refuse_npy(b, n, &FEAT, false, 400, "malformed shape");
    // Found by fuzzing: a header that ends right after "'shape':" (the value would be read past it).
    n = npy_bytes(b, 1, "{'descr': '<f4', 'fortran_order': False, 'shape':  ", x, 0);
    refuse_npy(b, n, &FEAT, false, 400, "lacks");
    n = npy_bytes(b, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 2), }\n", x, sizeof x);
    refuse_npy(b, n, &FEAT, false, 400, "features per step");
    n = npy_bytes(b, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (9, 1, 3), }\n", x, sizeof x);
    refuse_npy(b, n, &FEAT, false, 413, "batch");
    n = npy_bytes(b, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 0, 3), }\n", x, 0);
    refuse_npy(b, n, &FEAT, false, 400, "empty");
    n = npy_bytes(b, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3), }\n", x, 12);
    refuse_npy(b, n, &IDS, false, 400, "token ids");
    ids[1] = 10;
    n = npy_bytes(b, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 3), }\n", ids, sizeof ids);
    refuse_npy(b, n, &IDS, false, 400, "token id 10");
    x[4] = 0.0f / 0.0f;
    n = npy_bytes(b, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3), }\n", x, sizeof x);
    refuse_npy(b, n, &FEAT, false, 400, "element 4 is not finite");
}

/* A vocabulary built by the library from corpus (written to a temporary file). */
static fl_vocab *vocab_of(const char *corpus, fl_token_mode mode) {
    char path[] = "/tmp/fl_serve_vocab_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(corpus, f);
    fclose(f);
    fl_vocab *v = NULL;
    assert_int_equal(fl_vocab_build(path, mode, 0, &v), FL_OK);
    remove(path);
    return v;
}

static void test_vocab_encode(void **state) {
    // Word mode: a 3, b 2, c 1, <eos> 1 (c appears first) -> <unk> 0, a 1, b 2, c 3, <eos> 4.
    fl_vocab *v = vocab_of("a a a b b c\n", FL_TOKENS_WORD);
    int32_t ids[8] = {-7, -7, -7, -7, -7, -7, -7, -7};
    size_t n = 99;
    const char *text = "  b a\nzz\tc ";
    assert_int_equal(fl_vocab_encode(v, text, strlen(text), NULL, 0, &n), FL_OK);
    assert_int_equal(n, 5); /* sizing call */
    assert_int_equal(fl_vocab_encode(v, text, strlen(text), ids, 2, &n), FL_OK);
    assert_int_equal(n, 5);
    assert_true(ids[0] == 2 && ids[1] == 1 && ids[2] == -7); /* only cap ids written */
    assert_int_equal(fl_vocab_encode(v, text, strlen(text), ids, 8, &n), FL_OK);
    int32_t want[5] = {2, 1, 4, 0, 3};
    assert_memory_equal(ids, want, sizeof want);
    assert_int_equal(fl_vocab_encode(v, "", 0, NULL, 0, &n), FL_OK);
    assert_int_equal(n, 0);
    assert_int_equal(fl_vocab_encode(v, NULL, 3, ids, 8, &n), FL_ERR_ARG);
    assert_int_equal(fl_vocab_encode(v, "a", 1, NULL, 8, &n), FL_ERR_ARG);
    assert_int_equal(fl_vocab_encode(NULL, "a", 1, ids, 8, &n), FL_ERR_ARG);
    fl_vocab_free(v);
    // Char mode: a 3, b 2, ' ' 1, '\n' 1 -> a 1, b 2, ' ' 3, '\n' 4; a code point of 2 bytes is one token.
    v = vocab_of("aaab b\n", FL_TOKENS_CHAR);
    text = "ba \xc3\xa9\n";
    assert_int_equal(fl_vocab_encode(v, text, strlen(text), ids, 8, &n), FL_OK);
    int32_t want2[5] = {2, 1, 3, 0, 4};
    assert_int_equal(n, 5);
    assert_memory_equal(ids, want2, sizeof want2);
    assert_int_equal(fl_vocab_encode(v, "a\xff", 2, ids, 8, &n), FL_ERR_DATA);
    assert_int_equal(n, 0);
    assert_non_null(strstr(fl_last_error(), "byte 1"));
    fl_vocab_free(v);
}

static void refuse_texts(const char *body, const fl_vocab *v, bool stream, int code, const char *word) {
    srv_input in;
    srv_err e = {0};
    int rc = srv_decode_json(body, strlen(body), &IDS, v, stream, 16, 4, &in, &e);
    if (rc != code || !strstr(e.msg, word))
        fail_msg("%s: got %d (%s), want %d naming '%s'", body, rc, e.msg, code, word);
    assert_null(in.tokens);
    assert_null(in.lengths);
}

static void test_json_texts(void **state) {
    fl_vocab *v = vocab_of("a a a b b c\n", FL_TOKENS_WORD);
    srv_input in;
    srv_err e;
    const char *body = "{\"texts\": [\"a b c\", \"c\"], \"state\": true}";
    assert_int_equal(srv_decode_json(body, strlen(body), &IDS, v, false, 16, 4, &in, &e), 0);
    assert_true(in.B == 2 && in.T == 3 && in.texts && in.state);
    int32_t want[6] = {1, 2, 3, 3, 0, 0}, lens[2] = {3, 1};
    assert_memory_equal(in.tokens, want, sizeof want);
    assert_memory_equal(in.lengths, lens, sizeof lens);
    srv_input_free(&in);
    body = "{\"texts\": [\"b\\nx\"]}"; /* a JSON newline escape: "<eos>", and an unknown word */
    assert_int_equal(srv_decode_json(body, strlen(body), &IDS, v, true, 16, 4, &in, &e), 0);
    assert_true(in.B == 1 && in.T == 3 && in.tokens[0] == 2 && in.tokens[1] == 4 && in.tokens[2] == 0);
    srv_input_free(&in);
    refuse_texts("{\"texts\": [\"a\"]}", NULL, false, 400, "no tokenizer");
    refuse_texts("{\"texts\": \"a\"}", v, false, 400, "array of strings");
    refuse_texts("{\"texts\": []}", v, false, 400, "empty");
    refuse_texts("{\"texts\": [\"a\", 1]}", v, false, 400, "texts[1]: expected a string");
    refuse_texts("{\"texts\": [\"a\", \" \\t \"]}", v, false, 400, "texts[1]: no tokens");
    refuse_texts("{\"texts\": [\"a a a a a a a a a a a a a a a a a\"]}", v, false, 413, "sequence length");
    refuse_texts("{\"texts\": [\"a\", \"a\", \"a\", \"a\", \"a\"]}", v, false, 413, "batch");
    refuse_texts("{\"texts\": [\"a\"], \"inputs\": [[1]]}", v, false, 400, "alone");
    refuse_texts("{\"texts\": [\"a\"], \"lengths\": [1]}", v, false, 400, "alone");
    refuse_texts("{\"texts\": [\"a\"], \"state\": 2}", v, false, 400, "\"state\"");
    refuse_texts("{\"texts\": [\"a\", \"b\"]}", v, true, 400, "one text");
    fl_vocab_free(v);
}

static void test_encoders(void **state) {
    float v[6] = {1, -2.5f, 3, 0.1f, 5, 6};
    int64_t shape[3] = {1, 2, 3};
    srv_buf b = {0};
    srv_json_array(&b, v, 3, shape);
    assert_string_equal(b.p, "[[[1,-2.5,3],[0.100000001,5,6]]]");
    srv_buf_free(&b);
    srv_npy_f32(&b, v, 3, shape);
    assert_int_equal(b.len % 4, 0);
    assert_int_equal((b.len - sizeof v) % 64, 0); /* the data starts on a 64-byte boundary */
    srv_input in;
    srv_err e;
    assert_int_equal(srv_decode_npy(b.p, b.len, &FEAT, false, 16, 4, &in, &e), 0);
    assert_memory_equal(in.x, v, sizeof v);
    srv_input_free(&in);
    srv_buf_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_features), cmocka_unit_test(test_json_tokens), cmocka_unit_test(test_json_refusals),
        cmocka_unit_test(test_npy),           cmocka_unit_test(test_encoders),
        cmocka_unit_test(test_vocab_encode),  cmocka_unit_test(test_json_texts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
