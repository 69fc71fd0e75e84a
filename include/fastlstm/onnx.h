/* fastlstm ONNX interchange: import the LSTM graphs real exporters write, export a model as ONNX.
 *
 * Parsing and writing go through protobuf-c with ONNX's own onnx.proto (generated at build time).
 * The importer reads the graph node by node and tracks what every value means (the sequence, its
 * axes, the initial and final states, shapes derived from the input); every node must be one it
 * understands in the form it appears, or the import is refused with FL_ERR_UNSUPPORTED naming the
 * node and the operator. It never approximates: a graph it accepts computes exactly what the
 * resulting fastlstm model computes (up to float rounding). */
#ifndef FASTLSTM_ONNX_H
#define FASTLSTM_ONNX_H

#include "fastlstm/fastlstm.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FL_ONNX_NAME_MAX 128

/* A graph input bound to a constant at import: weights that a graph takes as inputs rather than
 * initializers (ONNX's node tests pass W, R and B that way). Data is float32, row-major; the
 * importer copies what it needs and keeps no pointer. */
typedef struct fl_onnx_feed {
    const char *name;
    int ndim;
    const int64_t *shape;
    const float *data;
} fl_onnx_feed;

/* What the import found: how to call the model so that it computes the graph. Names are "" when
 * the graph has no such input or output. */
typedef struct fl_onnx_info {
    int64_t opset;                   /* default-domain opset the model imports */
    fl_layout layout;                /* layout of the sequence input and output */
    int tokens;                      /* 1: the sequence input is token ids (embedding), 0: features */
    char input[FL_ONNX_NAME_MAX];    /* the sequence input */
    char h0[FL_ONNX_NAME_MAX];       /* initial hidden state input, (L*dirs, B, H) */
    char c0[FL_ONNX_NAME_MAX];       /* initial cell state input, (L*dirs, B, H) */
    char y[FL_ONNX_NAME_MAX];        /* sequence (or head) output */
    char hn[FL_ONNX_NAME_MAX];       /* final hidden state output, (L*dirs, B, H) */
    char cn[FL_ONNX_NAME_MAX];       /* final cell state output, (L*dirs, B, H) */
    char lengths[FL_ONNX_NAME_MAX];  /* sequence_lens input, int32 (B): pass it as fl_run_io's lengths */
} fl_onnx_info;

/* Convert an ONNX model (serialized ModelProto, `size` bytes) into a fastlstm model. feeds: graph
 * inputs to treat as constants (may be NULL when n_feeds is 0). info: filled on success (may be
 * NULL). The caller owns *out (fl_model_free). A graph whose LSTM nodes take sequence_lens computes
 * what the model computes with that input passed as fl_run_io's lengths (info->lengths names it).
 * On error *out is NULL and fl_last_error() says why:
 * FL_ERR_FORMAT (not a valid ModelProto, a tensor whose data does not match its shape, no graph),
 * FL_ERR_UNSUPPORTED (an operator, attribute or LSTM feature the converter does not support: the
 * message names the node, its operator and the feature), FL_ERR_SHAPE (weights of inconsistent
 * shapes), FL_ERR_DTYPE (weights not float32), FL_ERR_NONFINITE, FL_ERR_NOMEM. */
FL_API fl_status fl_onnx_import(const void *data, size_t size, const fl_onnx_feed *feeds, size_t n_feeds,
                                fl_model **out, fl_onnx_info *info);

/* fl_onnx_import on the contents of a file. FL_ERR_IO when it cannot be read. */
FL_API fl_status fl_onnx_import_file(const char *path, const fl_onnx_feed *feeds, size_t n_feeds,
                                     fl_model **out, fl_onnx_info *info);

/* Write m as an ONNX model (opset 14, IR version 7) to path: graph input "x" (B, T, D) float32 or
 * (B, T) int64 token ids, batch-major; outputs "y" (as fl_session_run's), "hn" and "cn" (L*dirs, B,
 * H). Bidirectional layers become direction="bidirectional" LSTM nodes. Decomposed matrices are
 * reconstructed as dense. The graph has no lengths input. Errors: FL_ERR_ARG, FL_ERR_UNSUPPORTED (a
 * projection, which ONNX's LSTM cannot express), FL_ERR_NOMEM, FL_ERR_IO. */
FL_API fl_status fl_onnx_export(const fl_model *m, const char *path);

/* One tensor read from a serialized ONNX TensorProto (.pb), as the ONNX test data sets store
 * inputs and expected outputs. float32 data lands in f, int32 / int64 in i (the other is NULL). */
typedef struct fl_onnx_tensor {
    char name[FL_ONNX_NAME_MAX];
    int ndim;
    int64_t shape[8];
    size_t count;
    float *f;
    int64_t *i;
} fl_onnx_tensor;

/* Read a TensorProto file. The caller owns *out (fl_onnx_tensor_free). Errors: FL_ERR_IO,
 * FL_ERR_FORMAT (not a TensorProto, data length against shape), FL_ERR_DTYPE (not float32 / int32 /
 * int64), FL_ERR_NOMEM. */
FL_API fl_status fl_onnx_tensor_load(const char *path, fl_onnx_tensor **out);
FL_API void fl_onnx_tensor_free(fl_onnx_tensor *t);

#ifdef __cplusplus
}
#endif
#endif /* FASTLSTM_ONNX_H */
