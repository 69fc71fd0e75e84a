/* ONNX import and export.
 *
 * External suite: every LSTM case of ONNX's own backend node tests (Debian's libonnx-testdata:
 * model.onnx + test_data_set_0/input_k.pb / output_k.pb, TensorProtos read with the same
 * protobuf-c code): import the model with its weight inputs fed as constants, run the inputs,
 * compare with the expected outputs. test_lstm_with_peepholes passes sequence_lens: it is imported
 * as the model's lengths input and run with its lengths (fl_run_io.lengths) as a model with LSTM
 * extras (peepholes) to the expected outputs; that model also survives save / load and export /
 * import, and decomposition and training refuse it; its sequence_lens input retyped (int64, rank 2)
 * or fed as a constant is refused.
 * Refusals: the node test model edited through protobuf-c (unknown operator, non-default
 * activations, reverse, bidirectional with a forward-only W, wrong hidden_size), ONNX's GRU test
 * model, truncation at every byte, flipped bytes, allocation failure at every allocation.
 * Export: random models (features / tokens, no / per-step / last-step head, SVD) exported, imported
 * back and run: the same outputs. (PyTorch-exported models are covered by test_onnx_torch.sh.) */
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
#include "fastlstm/onnx.h"
#include "fastlstm/train.h"
#include "internal.h" /* fl_alloc_fail_after */
#include "onnx.pb-c.h"
#include "testutil.h"

#define NODE_DIR "/usr/share/libonnx-testdata/data/node"

static const char *case_path(const char *name, const char *file) {
    static char buf[2][512];
    static int k;
    k ^= 1;
    snprintf(buf[k], sizeof buf[k], "%s/test_lstm_%s/%s", NODE_DIR, name, file);
    return buf[k];
}

/* The node test's graph and data set: input k belongs to the graph's input k, output k to output k. */
typedef struct node_case {
    Onnx__ModelProto *mp;
    unsigned char *bytes;
    size_t size;
    fl_onnx_tensor *in[8], *out[4];
    size_t n_in, n_out;
    fl_onnx_feed feeds[8];
    size_t n_feeds;
} node_case;

static bool is_runtime_input(const char *name) {
    return !strcmp(name, "X") || !strcmp(name, "initial_h") || !strcmp(name, "initial_c") || !strcmp(name, "sequence_lens");
}

static void case_load(const char *name, node_case *c) {
    memset(c, 0, sizeof *c);
    if (access(case_path(name, "model.onnx"), R_OK) != 0)
        fail_msg("%s missing: install Debian's libonnx-testdata (scripts/setup.sh does)", case_path(name, "model.onnx"));
    c->size = file_read(case_path(name, "model.onnx"), &c->bytes);
    c->mp = onnx__model_proto__unpack(NULL, c->size, c->bytes);
    assert_non_null(c->mp);
    const Onnx__GraphProto *g = c->mp->graph;
    c->n_in = g->n_input;
    c->n_out = g->n_output;
    assert_true(c->n_in <= 8 && c->n_out <= 4);
    char f[64];
    for (size_t k = 0; k < c->n_in; k++) {
        snprintf(f, sizeof f, "test_data_set_0/input_%zu.pb", k);
        assert_int_equal(fl_onnx_tensor_load(case_path(name, f), &c->in[k]), FL_OK);
        if (!is_runtime_input(g->input[k]->name)) {
            assert_non_null(c->in[k]->f);
            c->feeds[c->n_feeds++] = (fl_onnx_feed){g->input[k]->name, c->in[k]->ndim, c->in[k]->shape, c->in[k]->f};
        }
    }
    for (size_t k = 0; k < c->n_out; k++) {
        snprintf(f, sizeof f, "test_data_set_0/output_%zu.pb", k);
        assert_int_equal(fl_onnx_tensor_load(case_path(name, f), &c->out[k]), FL_OK);
    }
}

static void case_free(node_case *c) {
    for (size_t k = 0; k < c->n_in; k++) fl_onnx_tensor_free(c->in[k]);
    for (size_t k = 0; k < c->n_out; k++) fl_onnx_tensor_free(c->out[k]);
    onnx__model_proto__free_unpacked(c->mp, NULL);
    free(c->bytes);
}

static const fl_onnx_tensor *case_input(const node_case *c, const char *name) {
    for (size_t k = 0; k < c->n_in; k++)
        if (!strcmp(c->mp->graph->input[k]->name, name)) return c->in[k];
    return NULL;
}

static void assert_all_close(const float *got, const float *want, size_t n, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (!(fabsf(got[i] - want[i]) <= 1e-5f + 1e-5f * fabsf(want[i]))) {
            print_error("%s[%zu]: %.9g, expected %.9g\n", what, i, (double)got[i], (double)want[i]);
            fail();
        }
}

/* Run X (and initial states) through m, compare every graph output. */
static void check_outputs(const char *name, const node_case *cp, const fl_model *m, const fl_onnx_info *ip) {
    const node_case c = *cp;
    const fl_onnx_info info = *ip;
    const fl_arch *a = fl_model_arch(m);
    const fl_onnx_tensor *x = case_input(&c, info.input);
    assert_non_null(x);
    assert_int_equal(x->ndim, 3);
    int tm = info.layout == FL_TIME_MAJOR;
    int T = (int)x->shape[tm ? 0 : 1], B = (int)x->shape[tm ? 1 : 0], L = a->layers, H = a->hidden;
    fl_session_opts so = fl_session_opts_default();
    so.max_batch = B;
    so.max_seq = T;
    fl_session *s;
    assert_int_equal(fl_session_create(m, &so, &s), FL_OK);
    float *y = calloc(fl_run_output_size(m, B, T), sizeof(float));
    float *hn = calloc((size_t)L * B * H, sizeof(float)), *cn = calloc((size_t)L * B * H, sizeof(float));
    const fl_onnx_tensor *h0 = info.h0[0] ? case_input(&c, info.h0) : NULL, *c0 = info.c0[0] ? case_input(&c, info.c0) : NULL;
    const fl_onnx_tensor *lt = info.lengths[0] ? case_input(&c, info.lengths) : NULL;
    int32_t *lens = NULL;
    if (lt) {  // sequence_lens (int32, widened to int64 by the loader) -> fl_run_io.lengths
        assert_true(lt->i && lt->count == (size_t)B);
        lens = calloc((size_t)B, sizeof *lens);
        for (int b = 0; b < B; b++) lens[b] = (int32_t)lt->i[b];
    }
    fl_run_io io = {.layout = info.layout, .batch = B, .seq = T, .x = x->f, .h0 = h0 ? h0->f : NULL,
                    .c0 = c0 ? c0->f : NULL, .y = y, .hn = hn, .cn = cn, .lengths = lens};
    assert_int_equal(fl_session_run(s, &io), FL_OK);
    size_t compared = 0;
    for (size_t k = 0; k < c.n_out; k++) {
        const char *on = c.mp->graph->output[k]->name;
        const float *got = !strcmp(on, info.y) ? y : !strcmp(on, info.hn) ? hn : !strcmp(on, info.cn) ? cn : NULL;
        if (!got) fail_msg("%s: output %s is not one the import mapped", name, on);
        assert_all_close(got, c.out[k]->f, c.out[k]->count, on);
        compared++;
    }
    assert_int_equal(compared, c.n_out);
    free(y);
    free(hn);
    free(cn);
    free(lens);
    fl_session_free(s);
}

/* Import the node test (model bytes: the file's, or b / n when b is set), check its outputs. */
static void run_node_case_bytes(const char *name, node_case *c, const void *b, size_t n) {
    fl_model *m;
    fl_onnx_info info;
    fl_status st = fl_onnx_import(b ? b : c->bytes, b ? n : c->size, c->feeds, c->n_feeds, &m, &info);
    if (st) fail_msg("%s: %s: %s", name, fl_status_str(st), fl_last_error());
    check_outputs(name, c, m, &info);
    fl_model_free(m);
}

static void run_node_case(const char *name) {
    node_case c;
    case_load(name, &c);
    run_node_case_bytes(name, &c, NULL, 0);
    case_free(&c);
}

static void test_node_lstm_defaults(void **state) { run_node_case("defaults"); }
static void test_node_lstm_with_initial_bias(void **state) { run_node_case("with_initial_bias"); }
static void test_node_lstm_batchwise(void **state) { run_node_case("batchwise"); }

/* Import bytes and require status want with detail containing needle; *out must stay NULL. */
static void expect_refusal(const void *b, size_t n, const fl_onnx_feed *f, size_t nf, fl_status want, const char *needle) {
    fl_model *m = (fl_model *)&m;
    fl_status st = fl_onnx_import(b, n, f, nf, &m, NULL);
    if (st != want || !strstr(fl_last_error(), needle))
        fail_msg("status %s (want %s), detail '%s' (want '%s')", fl_status_str(st), fl_status_str(want), fl_last_error(), needle);
    assert_null(m);
}

/* The with_peepholes model with its graph input sequence_lens retyped (elem) or reshaped (rank). */
static void refuse_lens_type(node_case *c, int elem, int rank, fl_status want, const char *needle) {
    Onnx__TypeProto__Tensor *tt = NULL;
    for (size_t k = 0; k < c->mp->graph->n_input; k++)
        if (!strcmp(c->mp->graph->input[k]->name, "sequence_lens")) tt = c->mp->graph->input[k]->type->tensor_type;
    assert_non_null(tt);
    assert_non_null(tt->shape);
    const int e0 = tt->elem_type;
    const size_t r0 = tt->shape->n_dim;
    Onnx__TensorShapeProto__Dimension *dims[2] = {tt->shape->dim[0], tt->shape->dim[0]}, **d0 = tt->shape->dim;
    tt->elem_type = elem;
    tt->shape->n_dim = (size_t)rank;
    tt->shape->dim = dims;
    size_t sz = onnx__model_proto__get_packed_size(c->mp);
    uint8_t *buf = malloc(sz);
    onnx__model_proto__pack(c->mp, buf);
    tt->elem_type = e0;
    tt->shape->n_dim = r0;
    tt->shape->dim = d0;
    expect_refusal(buf, sz, c->feeds, c->n_feeds, want, needle);
    free(buf);
}

/* test_lstm_with_peepholes: sequence_lens is the lengths input, run with its lengths (peepholes as
 * LSTM extras) to the expected outputs. */
static void test_node_lstm_with_peepholes(void **state) {
    node_case c;
    case_load("with_peepholes", &c);
    fl_model *m0;
    fl_onnx_info info0;
    assert_int_equal(fl_onnx_import(c.bytes, c.size, c.feeds, c.n_feeds, &m0, &info0), FL_OK);
    assert_string_equal(info0.lengths, "sequence_lens");
    check_outputs("with_peepholes", &c, m0, &info0);
    fl_model_free(m0);
    // bad sequence_lens: int64 (ONNX says int32), rank 2, a constant
    refuse_lens_type(&c, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 1, FL_ERR_DTYPE, "sequence_lens 'sequence_lens' has element type 7, not int32");
    refuse_lens_type(&c, ONNX__TENSOR_PROTO__DATA_TYPE__INT32, 2, FL_ERR_SHAPE, "has rank 2, not 1");
    refuse_lens_type(&c, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 1, FL_ERR_DTYPE, "has element type 1");
    const fl_onnx_tensor *lt = case_input(&c, "sequence_lens");
    float lensf[16];
    assert_true(lt->count <= 16);
    for (size_t k = 0; k < lt->count; k++) lensf[k] = (float)lt->i[k];
    c.feeds[c.n_feeds] = (fl_onnx_feed){"sequence_lens", lt->ndim, lt->shape, lensf};
    expect_refusal(c.bytes, c.size, c.feeds, c.n_feeds + 1, FL_ERR_UNSUPPORTED, "is a constant (fastlstm takes lengths at run time");
    size_t sz = c.size;
    uint8_t *buf = malloc(sz);
    memcpy(buf, c.bytes, sz);

    // the extras survive save / load and export / import
    fl_model *m, *loaded, *back, *d = (fl_model *)&d;
    fl_onnx_info info, info2;
    assert_int_equal(fl_onnx_import(buf, sz, c.feeds, c.n_feeds, &m, &info), FL_OK);
    assert_int_equal(fl_model_save(m, tmp_path("peep.st")), FL_OK);
    assert_int_equal(fl_model_load(tmp_path("peep.st"), &loaded), FL_OK);
    check_outputs("with_peepholes (loaded)", &c, loaded, &info);
    assert_int_equal(fl_onnx_export(loaded, tmp_path("peep.onnx")), FL_OK);
    assert_int_equal(fl_onnx_import_file(tmp_path("peep.onnx"), NULL, 0, &back, &info2), FL_OK);
    // the export is batch-major with outputs y / hn / cn: only the model's function is compared here
    fl_onnx_info as_node = info;
    check_outputs("with_peepholes (exported)", &c, back, &as_node);
    // inference only
    fl_decomp_opts o = fl_decomp_opts_default();
    o.rank = 1;
    assert_int_equal(fl_model_decompose(m, &o, &d), FL_ERR_UNSUPPORTED);
    assert_non_null(strstr(fl_last_error(), "LSTM extras"));
    assert_null(d);
    fl_trainer *tr = (fl_trainer *)&tr;
    assert_int_equal(fl_trainer_create(m, NULL, &tr), FL_ERR_UNSUPPORTED);
    assert_non_null(strstr(fl_last_error(), "training is not supported"));
    assert_null(tr);
    fl_model_free(m);
    fl_model_free(loaded);
    fl_model_free(back);
    free(buf);
    case_free(&c);
}

/* The defaults model with its LSTM node changed by edit(node, extra attribute), packed, imported. */
static void edited(void (*edit)(Onnx__NodeProto *, Onnx__AttributeProto *), fl_status want, const char *needle) {
    node_case c;
    case_load("defaults", &c);
    Onnx__NodeProto *n = c.mp->graph->node[0];
    Onnx__NodeProto saved = *n;
    Onnx__AttributeProto extra;
    onnx__attribute_proto__init(&extra);
    Onnx__AttributeProto *attrs[8];
    assert_true(n->n_attribute < 7);
    memcpy(attrs, n->attribute, n->n_attribute * sizeof *attrs);
    attrs[n->n_attribute] = &extra;
    n->attribute = attrs;
    n->n_attribute++;
    edit(n, &extra);
    size_t sz = onnx__model_proto__get_packed_size(c.mp);
    uint8_t *buf = malloc(sz);
    onnx__model_proto__pack(c.mp, buf);
    *n = saved;
    if (want == FL_OK) {
        fl_model *m;
        fl_status st = fl_onnx_import(buf, sz, c.feeds, c.n_feeds, &m, NULL);
        if (st) fail_msg("%s: %s", fl_status_str(st), fl_last_error());
        fl_model_free(m);
    } else {
        expect_refusal(buf, sz, c.feeds, c.n_feeds, want, needle);
    }
    free(buf);
    case_free(&c);
}

static ProtobufCBinaryData bin(const char *s) { return (ProtobufCBinaryData){strlen(s), (uint8_t *)s}; }
static ProtobufCBinaryData acts[3];

static void set_acts(Onnx__AttributeProto *a, const char *f, const char *g, const char *h) {
    a->name = (char *)"activations";
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS;
    acts[0] = bin(f);
    acts[1] = bin(g);
    acts[2] = bin(h);
    a->n_strings = 3;
    a->strings = acts;
}
static void e_op(Onnx__NodeProto *n, Onnx__AttributeProto *a) {
    n->op_type = (char *)"Softsign";
    n->name = (char *)"my_node";
    n->n_attribute--;
}
static void e_acts_relu(Onnx__NodeProto *n, Onnx__AttributeProto *a) { set_acts(a, "Sigmoid", "Relu", "Tanh"); }
static void e_acts_hardsig(Onnx__NodeProto *n, Onnx__AttributeProto *a) { set_acts(a, "HardSigmoid", "Tanh", "Tanh"); }
static void e_acts_default(Onnx__NodeProto *n, Onnx__AttributeProto *a) { set_acts(a, "Sigmoid", "Tanh", "Tanh"); }
static void e_clip(Onnx__NodeProto *n, Onnx__AttributeProto *a) {
    a->name = (char *)"clip";
    a->has_f = 1;
    a->f = 3.0f;
}
static void e_input_forget(Onnx__NodeProto *n, Onnx__AttributeProto *a) {
    a->name = (char *)"input_forget";
    a->has_i = 1;
    a->i = 1;
}
static void e_reverse(Onnx__NodeProto *n, Onnx__AttributeProto *a) {
    a->name = (char *)"direction";
    a->has_s = 1;
    a->s = bin("reverse");
}
static void e_bidir(Onnx__NodeProto *n, Onnx__AttributeProto *a) {
    a->name = (char *)"direction";
    a->has_s = 1;
    a->s = bin("bidirectional");
}
static void e_unknown_attr(Onnx__NodeProto *n, Onnx__AttributeProto *a) {
    a->name = (char *)"mystery";
    a->has_i = 1;
}
static void e_hidden(Onnx__NodeProto *n, Onnx__AttributeProto *a) {
    for (size_t k = 0; k + 1 < n->n_attribute; k++)
        if (!strcmp(n->attribute[k]->name, "hidden_size")) n->attribute[k] = a;
    n->n_attribute--;
    a->name = (char *)"hidden_size";
    a->has_i = 1;
    a->i = 5;
}

static void test_refuse_unknown_operator(void **state) {
    edited(e_op, FL_ERR_UNSUPPORTED, "node 'my_node' (op Softsign): operator 'Softsign' is not supported");
    // ONNX's own GRU node test
    unsigned char *b;
    size_t n = file_read(NODE_DIR "/test_gru_defaults/model.onnx", &b);
    expect_refusal(b, n, NULL, 0, FL_ERR_UNSUPPORTED, "(op GRU): operator 'GRU'");
    free(b);
}
static void test_refuse_activations(void **state) {
    edited(e_acts_relu, FL_ERR_UNSUPPORTED, "activations [Sigmoid, Relu, Tanh]");
    edited(e_acts_hardsig, FL_ERR_UNSUPPORTED, "(op LSTM): activations [HardSigmoid");
    edited(e_acts_default, FL_OK, "");
}
static void test_refuse_lstm_features(void **state) {
    edited(e_clip, FL_OK, "");          // extras: computed (values checked by test_onnx_torch.sh)
    edited(e_input_forget, FL_OK, "");
    edited(e_reverse, FL_ERR_UNSUPPORTED, "(op LSTM): direction 'reverse' (a reverse-time LSTM on its own)");
    edited(e_bidir, FL_ERR_SHAPE, "(op LSTM): W 'W' is not (2, ");  // a bidirectional node needs two directions' W
    edited(e_unknown_attr, FL_ERR_UNSUPPORTED, "attribute 'mystery'");
    edited(e_hidden, FL_ERR_SHAPE, "hidden_size 5");
}

/* Missing weights: W left as a graph input rather than fed. */
static void test_refuse_unfed_weights(void **state) {
    node_case c;
    case_load("defaults", &c);
    expect_refusal(c.bytes, c.size, c.feeds + 1, c.n_feeds - 1, FL_ERR_UNSUPPORTED, "W 'W' is not a constant");
    fl_onnx_feed bad = c.feeds[0];
    bad.data = NULL;
    expect_refusal(c.bytes, c.size, &bad, 1, FL_ERR_ARG, "feed 0");
    case_free(&c);
}

/* Every truncation, every byte flipped: an error with *out NULL (or a model), never a crash. */
static void test_corrupt_files(void **state) {
    node_case c;
    case_load("defaults", &c);
    expect_refusal(c.bytes, 0, c.feeds, c.n_feeds, FL_ERR_FORMAT, "no graph");
    unsigned char junk[64];
    memset(junk, 0xff, sizeof junk);
    expect_refusal(junk, sizeof junk, NULL, 0, FL_ERR_FORMAT, "protobuf decoding");
    expect_refusal(c.bytes, c.size / 2, c.feeds, c.n_feeds, FL_ERR_FORMAT, "protobuf decoding");
    for (size_t n = 0; n < c.size; n++) {
        fl_model *m = (fl_model *)&m;
        fl_status st = fl_onnx_import(c.bytes, n, c.feeds, c.n_feeds, &m, NULL);
        if (st != FL_ERR_FORMAT && st != FL_ERR_UNSUPPORTED)
            fail_msg("truncated at %zu: %s (%s)", n, fl_status_str(st), fl_last_error());
        assert_null(m);
    }
    unsigned char *b = malloc(c.size);
    for (size_t k = 0; k < c.size; k++) {
        memcpy(b, c.bytes, c.size);
        b[k] ^= 0xa5;
        fl_model *m = (fl_model *)&m;
        fl_status st = fl_onnx_import(b, c.size, c.feeds, c.n_feeds, &m, NULL);
        assert_true(st == FL_OK ? m != NULL : m == NULL);
        fl_model_free(m);
    }
    free(b);
    // TensorProto files: missing, truncated
    fl_onnx_tensor *t = (fl_onnx_tensor *)&t;
    assert_int_equal(fl_onnx_tensor_load("/nonexistent/x.pb", &t), FL_ERR_IO);
    assert_null(t);
    unsigned char *pb;
    size_t n = file_read(case_path("defaults", "test_data_set_0/input_1.pb"), &pb);
    file_write(tmp_path("cut.pb"), pb, n - 7);
    assert_int_equal(fl_onnx_tensor_load(tmp_path("cut.pb"), &t), FL_ERR_FORMAT);
    free(pb);
    case_free(&c);
}

/* Allocation failing at each allocation in turn: FL_ERR_NOMEM (FL_ERR_FORMAT while protobuf-c
 * decodes: it reports no reason), never a crash or a leak. */
static void test_alloc_failure(void **state) {
    node_case c;
    case_load("with_initial_bias", &c);
    fl_status st = FL_ERR_NOMEM;
    for (long k = 0; k < 100000 && st != FL_OK; k++) {
        fl_alloc_fail_after(k);
        fl_model *m = NULL;
        st = fl_onnx_import(c.bytes, c.size, c.feeds, c.n_feeds, &m, NULL);
        fl_alloc_fail_after(-1);
        if (st != FL_OK && st != FL_ERR_NOMEM && st != FL_ERR_FORMAT)
            fail_msg("allocation %ld failing: %s (%s)", k, fl_status_str(st), fl_last_error());
        assert_true(st == FL_OK ? m != NULL : m == NULL);
        fl_model_free(m);
    }
    assert_int_equal(st, FL_OK);
    case_free(&c);
    // a bidirectional model: export, then import, with each allocation failing in turn
    fl_arch a = {.vocab = 7, .input = 3, .hidden = 4, .layers = 2, .head = FL_HEAD_PER_STEP, .head_out = 5, .bidirectional = 1};
    fl_model *m;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 3), FL_OK);
    const char *path = tmp_path("bi_alloc.onnx");
    st = FL_ERR_NOMEM;
    for (long k = 0; k < 100000 && st != FL_OK; k++) {
        fl_alloc_fail_after(k);
        st = fl_onnx_export(m, path);
        fl_alloc_fail_after(-1);
        if (st != FL_OK && st != FL_ERR_NOMEM) fail_msg("export, allocation %ld failing: %s (%s)", k, fl_status_str(st), fl_last_error());
    }
    fl_model_free(m);
    unsigned char *b;
    size_t n = file_read(path, &b);
    st = FL_ERR_NOMEM;
    for (long k = 0; k < 100000 && st != FL_OK; k++) {
        fl_alloc_fail_after(k);
        fl_model *back = NULL;
        st = fl_onnx_import(b, n, NULL, 0, &back, NULL);
        fl_alloc_fail_after(-1);
        if (st != FL_OK && st != FL_ERR_NOMEM && st != FL_ERR_FORMAT)
            fail_msg("import, allocation %ld failing: %s (%s)", k, fl_status_str(st), fl_last_error());
        assert_true(st == FL_OK ? back != NULL : back == NULL);
        if (back) assert_int_equal(fl_model_arch(back)->bidirectional, 1);
        fl_model_free(back);
    }
    assert_int_equal(st, FL_OK);
    for (size_t cut = 0; cut < n; cut++) {  // truncated: refused, never a crash
        fl_model *back = (fl_model *)&back;
        st = fl_onnx_import(b, cut, NULL, 0, &back, NULL);
        if (st != FL_ERR_FORMAT && st != FL_ERR_UNSUPPORTED) fail_msg("truncated at %zu: %s (%s)", cut, fl_status_str(st), fl_last_error());
        assert_null(back);
    }
    free(b);
}

/* ------------------------------------------------------------ export round trip */

static void round_trip(const fl_arch *a, bool svd) {
    fl_model *m, *d = NULL, *back;
    assert_int_equal(fl_model_create(a, NULL, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 7), FL_OK);
    if (svd) {
        fl_decomp_opts o = fl_decomp_opts_default();
        o.rank = 3;
        o.include_head = a->head != FL_HEAD_NONE;
        assert_int_equal(fl_model_decompose(m, &o, &d), FL_OK);
        fl_model_free(m);
        m = d;
    }
    const char *path = tmp_path("rt.onnx");
    assert_int_equal(fl_onnx_export(m, path), FL_OK);
    fl_onnx_info info;
    fl_status st = fl_onnx_import_file(path, NULL, 0, &back, &info);
    if (st) fail_msg("%s: %s", fl_status_str(st), fl_last_error());
    assert_int_equal(info.layout, FL_BATCH_MAJOR);
    assert_string_equal(info.input, "x");
    assert_string_equal(info.y, "y");
    assert_string_equal(info.hn, "hn");
    assert_string_equal(info.cn, "cn");
    assert_int_equal(info.tokens, a->vocab > 0);
    const fl_arch *b = fl_model_arch(back);
    assert_true(b->vocab == a->vocab && b->input == a->input && b->hidden == a->hidden && b->layers == a->layers &&
                b->head == a->head && b->head_out == a->head_out && b->bidirectional == a->bidirectional);
    const int B = 3, T = 5, L = a->layers * (a->bidirectional ? 2 : 1), H = a->hidden;
    float *x = malloc(sizeof(float) * B * T * a->input);
    int32_t *tok = malloc(sizeof(int32_t) * B * T);
    for (int i = 0; i < B * T * a->input; i++) x[i] = (float)sin(0.37 * i);
    for (int i = 0; i < B * T; i++) tok[i] = (i * 7 + 3) % (a->vocab > 0 ? a->vocab : 1);
    size_t ny = fl_run_output_size(m, B, T), ns = (size_t)L * B * H;
    float *out[2][3];
    fl_model *models[2] = {m, back};
    for (int k = 0; k < 2; k++) {
        fl_session_opts so = fl_session_opts_default();
        so.max_batch = B;
        so.max_seq = T;
        fl_session *s;
        assert_int_equal(fl_session_create(models[k], &so, &s), FL_OK);
        out[k][0] = malloc(ny * sizeof(float));
        out[k][1] = malloc(ns * sizeof(float));
        out[k][2] = malloc(ns * sizeof(float));
        fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = B, .seq = T, .x = a->vocab ? NULL : x,
                        .tokens = a->vocab ? tok : NULL, .y = out[k][0], .hn = out[k][1], .cn = out[k][2]};
        assert_int_equal(fl_session_run(s, &io), FL_OK);
        fl_session_free(s);
    }
    // decomposed: the exported graph holds the reconstructed products, rounded to float
    for (size_t i = 0; i < ny; i++) assert_close(out[1][0][i], out[0][0][i], 1e-5 + 1e-5 * fabsf(out[0][0][i]));
    for (size_t i = 0; i < ns; i++) assert_close(out[1][1][i], out[0][1][i], 2e-5);
    for (size_t i = 0; i < ns; i++) assert_close(out[1][2][i], out[0][2][i], 2e-5);
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < 3; j++) free(out[k][j]);
    free(x);
    free(tok);
    fl_model_free(m);
    fl_model_free(back);
}

static void test_export_round_trip(void **state) {
    fl_arch a1 = {.input = 4, .hidden = 6, .layers = 2};
    round_trip(&a1, false);
    fl_arch a2 = {.vocab = 11, .input = 5, .hidden = 7, .layers = 3, .head = FL_HEAD_PER_STEP, .head_out = 11};
    round_trip(&a2, false);
    fl_arch a3 = {.input = 3, .hidden = 8, .layers = 1, .head = FL_HEAD_LAST_STEP, .head_out = 4};
    round_trip(&a3, false);
    fl_arch a4 = {.input = 6, .hidden = 8, .layers = 2, .head = FL_HEAD_PER_STEP, .head_out = 5};
    round_trip(&a4, true);
    // bidirectional: per-step and last-step heads, no head, SVD
    fl_arch b1 = {.input = 4, .hidden = 5, .layers = 2, .bidirectional = 1};
    round_trip(&b1, false);
    fl_arch b2 = {.vocab = 9, .input = 3, .hidden = 6, .layers = 3, .head = FL_HEAD_PER_STEP, .head_out = 7, .bidirectional = 1};
    round_trip(&b2, false);
    fl_arch b3 = {.input = 5, .hidden = 4, .layers = 1, .head = FL_HEAD_LAST_STEP, .head_out = 3, .bidirectional = 1};
    round_trip(&b3, false);
    fl_arch b4 = {.input = 6, .hidden = 8, .layers = 2, .head = FL_HEAD_PER_STEP, .head_out = 5, .bidirectional = 1};
    round_trip(&b4, true);
    // a projection has no ONNX counterpart
    fl_arch p1 = {.input = 4, .hidden = 8, .layers = 1, .proj = 3};
    fl_model *m;
    assert_int_equal(fl_model_create(&p1, NULL, &m), FL_OK);
    assert_int_equal(fl_onnx_export(m, tmp_path("proj.onnx")), FL_ERR_UNSUPPORTED);
    assert_non_null(strstr(fl_last_error(), "projection (LSTMP, proj 3)"));
    fl_model_free(m);
    assert_int_equal(fl_onnx_export(NULL, tmp_path("x.onnx")), FL_ERR_ARG);
}

static int setup(void **state) { return tmp_dir_make("fl_test_onnx"); }
static int teardown(void **state) { return tmp_dir_remove(); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node_lstm_defaults),
        cmocka_unit_test(test_node_lstm_with_initial_bias),
        cmocka_unit_test(test_node_lstm_batchwise),
        cmocka_unit_test(test_node_lstm_with_peepholes),
        cmocka_unit_test(test_refuse_unknown_operator),
        cmocka_unit_test(test_refuse_activations),
        cmocka_unit_test(test_refuse_lstm_features),
        cmocka_unit_test(test_refuse_unfed_weights),
        cmocka_unit_test(test_corrupt_files),
        cmocka_unit_test(test_alloc_failure),
        cmocka_unit_test(test_export_round_trip),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
