/* NumPy .npy reader and writer (see include/fastlstm/io.h).
 *
 * File layout: "\x93NUMPY" | major | minor | header length (u16 LE for 1.0, u32 LE for 2.0/3.0) |
 * header: a Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 * padded with spaces and ended by '\n' | raw C-order data. */
#include "npy.h"

#include "atomic_file.h"
#include "internal.h"
#include "memload.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, ".npy data is read and written as raw little-endian bytes");

#define NPY_HEADER_MAX (1u << 20) /* real headers are < 200 bytes */

static size_t item_size(char dtype) { return dtype == 'l' ? 8 : 4; }

/* ------------------------------------------------------------------ header parsing */

typedef struct cursor {
    const char *p, *end;
} cursor;

static void skip_ws(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static bool take(cursor *c, char ch) {
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

/* A quoted Python string without escapes into buf (NUL terminated). */
static bool parse_str(cursor *c, char *buf, size_t n) {
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return false;
    char q = *c->p++;
    size_t k = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || k + 1 >= n) return false;
        buf[k++] = *c->p++;
    }
    if (c->p >= c->end) return false;
    c->p++;
    buf[k] = '\0';
    return true;
}

static bool parse_word(cursor *c, const char *w) {
    skip_ws(c);
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, w, n) != 0) return false;
    c->p += n;
    return true;
}

/* Shape tuple "(a, b, )" into shape[], *ndim; *ndim = -1 when it has more than max dimensions. */
static bool parse_shape(cursor *c, int64_t *shape, int max, int *ndim) {
    if (!take(c, '(')) return false;
    int n = 0;
    for (;;) {
        if (take(c, ')')) break;
        skip_ws(c);
        if (c->p >= c->end || *c->p < '0' || *c->p > '9') return false;
        int64_t v = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            if (v > (INT64_MAX - 9) / 10) return false;
            v = v * 10 + (*c->p++ - '0');
        }
        if (c->p < c->end && *c->p == 'L') c->p++; /* Python 2 long suffix */
        if (n < max) shape[n] = v;
        n++;
        if (take(c, ')')) break;
        if (!take(c, ',')) return false;
    }
    *ndim = n > max ? -1 : n;
    return true;
}

/* Parses the dict; fills dtype char, ndim, shape. */
static fl_status parse_header(const char *path, const char *h, size_t len, fl_npy *a) {
    cursor c = {h, h + len};
    char key[32], descr[32] = "";
    int fortran = -1, have_shape = 0;
    if (!take(&c, '{')) return fl_fail(FL_ERR_FORMAT, "%s: .npy header is not a dict", path);
    for (;;) {
        if (take(&c, '}')) break;
        if (!parse_str(&c, key, sizeof key) || !take(&c, ':'))
            return fl_fail(FL_ERR_FORMAT, "%s: malformed .npy header near byte %td", path, c.p - h);
        /* A repeated key would overwrite half of an earlier value (a shorter second 'shape' leaves
         * the first one's trailing dimensions behind). */
        if ((!strcmp(key, "descr") && descr[0]) || (!strcmp(key, "fortran_order") && fortran >= 0) ||
            (!strcmp(key, "shape") && have_shape))
            return fl_fail(FL_ERR_FORMAT, "%s: key '%s' appears twice in the .npy header", path, key);
        if (!strcmp(key, "descr")) {
            skip_ws(&c);
            if (c.p < c.end && *c.p == '[')
                return fl_fail(FL_ERR_DTYPE, "%s: structured dtypes are not supported (need <f4, <i4 or <i8)", path);
            if (!parse_str(&c, descr, sizeof descr))
                return fl_fail(FL_ERR_FORMAT, "%s: malformed 'descr' in .npy header", path);
        } else if (!strcmp(key, "fortran_order")) {
            if (parse_word(&c, "True")) fortran = 1;
            else if (parse_word(&c, "False")) fortran = 0;
            else return fl_fail(FL_ERR_FORMAT, "%s: 'fortran_order' is not True or False", path);
        } else if (!strcmp(key, "shape")) {
            if (!parse_shape(&c, a->shape, FL_NPY_MAX_DIMS, &a->ndim))
                return fl_fail(FL_ERR_FORMAT, "%s: malformed 'shape' in .npy header", path);
            have_shape = 1;
        } else {
            return fl_fail(FL_ERR_FORMAT, "%s: unknown key '%s' in .npy header", path, key);
        }
        if (take(&c, '}')) break;
        if (!take(&c, ','))
            return fl_fail(FL_ERR_FORMAT, "%s: malformed .npy header near byte %td", path, c.p - h);
    }
    skip_ws(&c);
    if (c.p != c.end) return fl_fail(FL_ERR_FORMAT, "%s: trailing bytes after the .npy header dict", path);
    if (!descr[0] || fortran < 0 || !have_shape)
        return fl_fail(FL_ERR_FORMAT, "%s: .npy header lacks %s", path,
                       !descr[0] ? "'descr'" : fortran < 0 ? "'fortran_order'" : "'shape'");
    if (!strcmp(descr, "<f4")) a->dtype = 'f';
    else if (!strcmp(descr, "<i4")) a->dtype = 'i';
    else if (!strcmp(descr, "<i8")) a->dtype = 'l';
    else
        return fl_fail(FL_ERR_DTYPE, "%s: dtype '%s' is not supported (need <f4 float32, <i4 int32 or <i8 int64)",
                       path, descr);
    if (fortran)
        return fl_fail(FL_ERR_UNSUPPORTED, "%s: fortran_order True is not supported; save a C-order array "
                       "(numpy.ascontiguousarray)", path);
    if (a->ndim < 0)
        return fl_fail(FL_ERR_UNSUPPORTED, "%s: more than %d dimensions", path, FL_NPY_MAX_DIMS);
    return FL_OK;
}

/* ------------------------------------------------------------------ load */

/* Parses a whole .npy file from f (positioned at its start); `path` names it in errors. */
static fl_status load_stream(const char *path, FILE *f, fl_npy *a) {
    off_t fsize;
    if (fseeko(f, 0, SEEK_END) != 0 || (fsize = ftello(f)) < 0 || fseeko(f, 0, SEEK_SET) != 0)
        return fl_fail(FL_ERR_IO, "%s: cannot determine the file size: %s", path, strerror(errno));
    unsigned char pre[12];
    if (fsize < 10 || fread(pre, 1, 10, f) != 10)
        return fl_fail(FL_ERR_FORMAT, "%s: %lld bytes, too short for a .npy file", path, (long long)fsize);
    if (memcmp(pre, "\x93NUMPY", 6) != 0) return fl_fail(FL_ERR_FORMAT, "%s: not a .npy file (bad magic)", path);
    int major = pre[6];
    uint64_t hlen, pos;
    if (major == 1) {
        hlen = (uint64_t)pre[8] | (uint64_t)pre[9] << 8;
        pos = 10;
    } else if (major == 2 || major == 3) {
        if (fsize < 12 || fread(pre + 10, 1, 2, f) != 2)
            return fl_fail(FL_ERR_FORMAT, "%s: truncated .npy preamble", path);
        hlen = (uint64_t)pre[8] | (uint64_t)pre[9] << 8 | (uint64_t)pre[10] << 16 | (uint64_t)pre[11] << 24;
        pos = 12;
    } else {
        return fl_fail(FL_ERR_VERSION, "%s: .npy format version %d.%d is not supported (1.0, 2.0, 3.0)", path,
                       major, pre[7]);
    }
    if (hlen > NPY_HEADER_MAX) return fl_fail(FL_ERR_FORMAT, "%s: .npy header of %" PRIu64 " bytes is too long", path, hlen);
    if (pos + hlen > (uint64_t)fsize)
        return fl_fail(FL_ERR_FORMAT, "%s: truncated: .npy header of %" PRIu64 " bytes runs past end of file", path, hlen);
    char *h = fl_malloc((size_t)hlen + 1);
    if (!h) return fl_fail(FL_ERR_NOMEM, "%s: out of memory", path);
    fl_status st = FL_OK;
    if (fread(h, 1, (size_t)hlen, f) != (size_t)hlen) st = fl_fail(FL_ERR_IO, "%s: cannot read the .npy header", path);
    else st = parse_header(path, h, (size_t)hlen, a);
    fl_free(h);
    if (st) return st;

    size_t count = 1, bytes;
    for (int d = 0; d < a->ndim; d++)
        if (!fl_mul_ok(count, (size_t)a->shape[d], &count))
            return fl_fail(FL_ERR_FORMAT, "%s: shape overflows the address space", path);
    if (!fl_mul_ok(count, item_size(a->dtype), &bytes))
        return fl_fail(FL_ERR_FORMAT, "%s: shape overflows the address space", path);
    uint64_t have = (uint64_t)fsize - pos - hlen;
    if (have < bytes)
        return fl_fail(FL_ERR_FORMAT, "%s: truncated: shape needs %zu bytes of data, file has %" PRIu64, path, bytes, have);
    if (have > bytes)
        return fl_fail(FL_ERR_FORMAT, "%s: %" PRIu64 " unexpected bytes after the data", path, have - bytes);
    a->data = fl_malloc(bytes);
    if (!a->data) return fl_fail(FL_ERR_NOMEM, "%s: out of memory for %zu bytes", path, bytes);
    a->count = count;
    if (fread(a->data, 1, bytes, f) != bytes) return fl_fail(FL_ERR_IO, "%s: read failed", path);
    return FL_OK;
}

fl_status fl_npy_load(const char *path, fl_npy *out) {
    if (!out) return fl_fail(FL_ERR_ARG, "fl_npy_load: out is NULL");
    memset(out, 0, sizeof *out);
    if (!path) return fl_fail(FL_ERR_ARG, "fl_npy_load: path is NULL");
    FILE *f = fopen(path, "rb");
    if (!f) return fl_fail(FL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    fl_status st;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) st = fl_fail(FL_ERR_IO, "%s: not a regular file", path);
    else st = load_stream(path, f, out);
    fclose(f);
    if (st) fl_npy_free(out);
    return st;
}

fl_status fl_npy_load_memory(const void *buf, size_t n, const char *name, fl_npy *out) {
    if (!out) return fl_fail(FL_ERR_ARG, "fl_npy_load_memory: out is NULL");
    memset(out, 0, sizeof *out);
    if (!name) name = "<memory>";
    if (!buf && n) return fl_fail(FL_ERR_ARG, "fl_npy_load_memory: buf is NULL");
    if (n == 0) return fl_fail(FL_ERR_FORMAT, "%s: 0 bytes, too short for a .npy file", name); /* fmemopen rejects 0 */
    FILE *f = fmemopen((void *)buf, n, "rb"); /* read-only: the buffer is never written */
    if (!f) return fl_fail(FL_ERR_NOMEM, "%s: cannot open the buffer: %s", name, strerror(errno));
    fl_status st = load_stream(name, f, out);
    fclose(f);
    if (st) fl_npy_free(out);
    return st;
}

void fl_npy_free(fl_npy *a) {
    if (!a) return;
    fl_free(a->data);
    memset(a, 0, sizeof *a);
}

/* ------------------------------------------------------------------ save */

/* What save() hands to the atomic writer: preamble, header dict, padding, data. */
typedef struct npy_out {
    const unsigned char *pre; /* 10 bytes */
    const char *dict;
    size_t dict_len, hlen;
    const void *data;
    size_t bytes;
} npy_out;

static fl_status write_npy(void *ctx, FILE *f, const char *tmp) {
    const npy_out *o = ctx;
    bool ok = fwrite(o->pre, 1, 10, f) == 10 && fwrite(o->dict, 1, o->dict_len, f) == o->dict_len;
    for (size_t k = o->dict_len; ok && k + 1 < o->hlen; k++) ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF && (o->bytes == 0 || fwrite(o->data, 1, o->bytes, f) == o->bytes);
    if (!ok) return fl_fail(FL_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    return FL_OK;
}

static fl_status save(const char *path, const void *data, const char *descr, size_t isize, int ndim,
                      const int64_t *shape) {
    if (!path) return fl_fail(FL_ERR_ARG, "fl_npy_save: path is NULL");
    if (ndim < 0 || ndim > FL_NPY_MAX_DIMS || (ndim > 0 && !shape))
        return fl_fail(FL_ERR_ARG, "%s: cannot save an array of %d dimensions", path, ndim);
    char dict[256];
    size_t count = 1, bytes;
    int o = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || !fl_mul_ok(count, (size_t)shape[d], &count))
            return fl_fail(FL_ERR_ARG, "%s: bad shape (dimension %d is %" PRId64 ")", path, d, shape[d]);
        o += snprintf(dict + o, sizeof dict - (size_t)o, "%" PRId64 "%s", shape[d], ndim == 1 || d + 1 < ndim ? "," : "");
        if (d + 1 < ndim) o += snprintf(dict + o, sizeof dict - (size_t)o, " ");
    }
    o += snprintf(dict + o, sizeof dict - (size_t)o, "), }");
    if (!fl_mul_ok(count, isize, &bytes)) return fl_fail(FL_ERR_ARG, "%s: array too large", path);
    if (!data && count) return fl_fail(FL_ERR_ARG, "%s: data is NULL", path);
    /* Preamble (10) + dict + padding + '\n' is a multiple of 64, as numpy writes it. */
    size_t hlen = (size_t)o + 1;
    hlen += (64 - (10 + hlen) % 64) % 64;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff), (unsigned char)(hlen >> 8)};

    npy_out o_ = {pre, dict, (size_t)o, hlen, data, bytes};
    return fl_atomic_write(path, write_npy, &o_);
}

fl_status fl_npy_save_f32(const char *path, const float *data, int ndim, const int64_t *shape) {
    return save(path, data, "<f4", 4, ndim, shape);
}

fl_status fl_npy_save_i32(const char *path, const int32_t *data, int ndim, const int64_t *shape) {
    return save(path, data, "<i4", 4, ndim, shape);
}

/* ------------------------------------------------------------------ conversion */

fl_status fl_npy_ids_to_i32(fl_npy *a, int64_t limit, const char *what) {
    if (!a) return fl_fail(FL_ERR_ARG, "fl_npy_ids_to_i32: array is NULL");
    if (!what) what = "array";
    if (a->dtype != 'i' && a->dtype != 'l')
        return fl_fail(FL_ERR_DTYPE, "%s: token ids must be int32 or int64, not float32", what);
    int64_t lo = limit > 0 ? 0 : INT32_MIN, hi = limit > 0 ? limit - 1 : INT32_MAX;
    if (hi > INT32_MAX) hi = INT32_MAX;
    for (size_t i = 0; i < a->count; i++) {
        int64_t v = a->dtype == 'l' ? ((const int64_t *)a->data)[i] : ((const int32_t *)a->data)[i];
        if (v < lo || v > hi)
            return fl_fail(FL_ERR_DATA, "%s: element %zu is %" PRId64 ", outside [%" PRId64 ", %" PRId64 "]", what, i,
                           v, lo, hi);
    }
    if (a->dtype == 'i') return FL_OK;
    int32_t *d = fl_malloc(a->count * sizeof *d);
    if (!d) return fl_fail(FL_ERR_NOMEM, "%s: out of memory", what);
    for (size_t i = 0; i < a->count; i++) d[i] = (int32_t)((const int64_t *)a->data)[i];
    fl_free(a->data);
    a->data = d;
    a->dtype = 'i';
    return FL_OK;
}
