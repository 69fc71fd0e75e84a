/* ONNX TensorProto decoding (initializers, Constant nodes, the .pb files of ONNX test data sets) and
 * the protobuf-c allocator. Data comes from raw_data (little-endian, as the ONNX spec fixes it) or
 * from the typed repeated fields; its length is checked against the shape before anything is copied. */
#include "onnx_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void *pb_alloc(void *unused, size_t size) { return fl_malloc(size ? size : 1); }
static void pb_free(void *unused, void *p) { fl_free(p); }
ProtobufCAllocator fl_pb_allocator = {pb_alloc, pb_free, NULL};

fl_status fl_onnx_read_file(const char *path, uint8_t **data, size_t *size) {
    *data = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return fl_fail(FL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return fl_fail(FL_ERR_IO, "%s: cannot determine the file size", path);
    }
    uint8_t *buf = fl_malloc((size_t)n + 1);
    if (!buf) {
        fclose(f);
        return fl_fail(FL_ERR_NOMEM, "%s: cannot allocate %ld bytes", path, n);
    }
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    if (got != (size_t)n) {
        fl_free(buf);
        return fl_fail(FL_ERR_IO, "%s: read %zu of %ld bytes", path, got, n);
    }
    *data = buf;
    *size = (size_t)n;
    return FL_OK;
}

void fl_onnx_const_clear(onnx_const *c) {
    fl_free(c->f);
    fl_free(c->i);
    memset(c, 0, sizeof *c);
}

fl_status fl_onnx_const_decode(const Onnx__TensorProto *t, const char *what, onnx_const *out) {
    memset(out, 0, sizeof *out);
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return fl_fail(FL_ERR_UNSUPPORTED, "tensor '%s': external data is not supported", what);
    if (t->segment) return fl_fail(FL_ERR_UNSUPPORTED, "tensor '%s': segmented tensors are not supported", what);
    if (t->n_dims > 8) return fl_fail(FL_ERR_FORMAT, "tensor '%s': %zu dimensions (at most 8)", what, t->n_dims);
    size_t count = 1;
    for (size_t d = 0; d < t->n_dims; d++) {
        if (t->dims[d] < 0 || !fl_mul_ok(count, (size_t)t->dims[d], &count) || count > ((size_t)1 << 40))
            return fl_fail(FL_ERR_FORMAT, "tensor '%s': bad dimension %zu (%lld)", what, d, (long long)t->dims[d]);
        out->shape[d] = t->dims[d];
    }
    out->ndim = (int)t->n_dims;
    out->count = count;
    int dt = t->has_data_type ? t->data_type : 0;
    size_t esize = dt == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT || dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT32 ? 4
                   : dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ? 8 : 0;
    if (!esize) return fl_fail(FL_ERR_DTYPE, "tensor '%s': element type %d (float32, int32 and int64 only)", what, dt);
    size_t have = t->has_raw_data ? t->raw_data.len / esize
                  : dt == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT ? t->n_float_data
                  : dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT32 ? t->n_int32_data : t->n_int64_data;
    if ((t->has_raw_data && t->raw_data.len % esize) || have != count)
        return fl_fail(FL_ERR_FORMAT, "tensor '%s': %zu elements of data for a shape of %zu", what, have, count);
    if (dt == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
        out->f = fl_malloc(count * sizeof(float) + 1);
        if (!out->f) return fl_fail(FL_ERR_NOMEM, "tensor '%s': out of memory", what);
        if (t->has_raw_data) memcpy(out->f, t->raw_data.data, count * sizeof(float));
        else if (count) memcpy(out->f, t->float_data, count * sizeof(float));
        return FL_OK;
    }
    out->i = fl_malloc(count * sizeof(int64_t) + 1);
    if (!out->i) return fl_fail(FL_ERR_NOMEM, "tensor '%s': out of memory", what);
    for (size_t k = 0; k < count; k++) {
        if (dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT64) {
            int64_t v;
            if (t->has_raw_data) memcpy(&v, t->raw_data.data + 8 * k, 8);
            else v = t->int64_data[k];
            out->i[k] = v;
        } else {
            int32_t v;
            if (t->has_raw_data) memcpy(&v, t->raw_data.data + 4 * k, 4);
            else v = t->int32_data[k];
            out->i[k] = v;
        }
    }
    return FL_OK;
}

fl_status fl_onnx_tensor_load(const char *path, fl_onnx_tensor **out) {
    if (!path || !out) return fl_fail(FL_ERR_ARG, "fl_onnx_tensor_load: NULL argument");
    *out = NULL;
    uint8_t *data;
    size_t size;
    fl_status st = fl_onnx_read_file(path, &data, &size);
    if (st) return st;
    Onnx__TensorProto *t = onnx__tensor_proto__unpack(&fl_pb_allocator, size, data);
    fl_free(data);
    if (!t) return fl_fail(FL_ERR_FORMAT, "%s: not a valid ONNX TensorProto (protobuf decoding failed)", path);
    onnx_const c;
    st = fl_onnx_const_decode(t, path, &c);
    fl_onnx_tensor *r = NULL;
    if (!st) {
        r = fl_calloc(1, sizeof *r);
        if (!r) st = fl_fail(FL_ERR_NOMEM, "%s: out of memory", path);
    }
    if (st) {
        fl_onnx_const_clear(&c);
        onnx__tensor_proto__free_unpacked(t, &fl_pb_allocator);
        return st;
    }
    snprintf(r->name, sizeof r->name, "%s", t->name ? t->name : "");
    r->ndim = c.ndim;
    memcpy(r->shape, c.shape, sizeof r->shape);
    r->count = c.count;
    r->f = c.f;
    r->i = c.i;
    onnx__tensor_proto__free_unpacked(t, &fl_pb_allocator);
    *out = r;
    return FL_OK;
}

void fl_onnx_tensor_free(fl_onnx_tensor *t) {
    if (!t) return;
    fl_free(t->f);
    fl_free(t->i);
    fl_free(t);
}
