/* Shared by the ONNX importer and exporter (src/onnx). Not installed. */
#ifndef FL_ONNX_INTERNAL_H
#define FL_ONNX_INTERNAL_H

#include "fastlstm/onnx.h"
#include "internal.h"
#include "onnx.pb-c.h"

/* protobuf-c allocator over fl_malloc / fl_free, so every allocation goes through the library's hook. */
extern ProtobufCAllocator fl_pb_allocator;

/* Read a whole file into a buffer the caller frees with fl_free. */
fl_status fl_onnx_read_file(const char *path, uint8_t **data, size_t *size);

/* A constant tensor decoded from a TensorProto: float32 in f, or int32/int64 widened into i. */
typedef struct onnx_const {
    int ndim;
    int64_t shape[8];
    size_t count;
    float *f;     /* owned; NULL unless float32 */
    int64_t *i;   /* owned; NULL unless an integer type */
} onnx_const;

/* Decode t (its name for messages: what). Errors FL_ERR_FORMAT, FL_ERR_DTYPE, FL_ERR_UNSUPPORTED
 * (external data), FL_ERR_NOMEM. */
fl_status fl_onnx_const_decode(const Onnx__TensorProto *t, const char *what, onnx_const *out);
void fl_onnx_const_clear(onnx_const *c);

#endif
