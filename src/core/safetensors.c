/* Model file I/O in the safetensors format.
 *
 * Layout: u64 little-endian header length N | N bytes of JSON (space padded to a multiple of 8) |
 * raw little-endian tensor data. The JSON maps each tensor name to
 * {"dtype":"F32","shape":[..],"data_offsets":[begin,end]} (byte offsets into the data section),
 * and "__metadata__" (string -> string) holds the architecture:
 *   format = "fastlstm", format_version, vocab, input, hidden, layers, head, head_out,
 *   method.<matrix> = dense | svd:<rank> | cp:<rank>, rel_error.<matrix>, tokenizer (optional),
 *   threads and layer_threads (optional: the planned worker threads, the most of any layer and
 *   "t0,t1,..." per layer; a reader that knows only "threads" runs every layer on it),
 *   bidir_schedule = parallel | serial and step_schedule = blocks | rows (optional: the schedules the
 *   planner measured faster; none: sessions run their default),
 *   and per matrix kind.<matrix> = ih | hh | head | hr, direction.<matrix> = 0 | 1,
 *   precision.<matrix> = f32 | bf16 | int8 (written since format version 2 of this library; a file
 *   without them means forward float32). A bf16 matrix's factor tensors are "BF16"; an int8 one's are
 *   "I8" each followed by "<tensor>.scale" (F32, one per row); see qmat.h. format_version is the lowest version that reads the file fully (see
 *   FL_FORMAT_VERSION in internal.h); a file needing more than this library knows is refused.
 * The set of tensors, their names and shapes are exactly those fl_model_create builds from the
 * architecture and the per-matrix methods, so loading is: metadata -> fl_model_create -> fill.
 *
 * Tensor data is copied with memcpy-equivalent fread/fwrite of float arrays, which assumes a
 * little-endian host (checked at compile time below). */
#include "atomic_file.h"
#include "safetensors_internal.h"
#include "session_sched.h"
#include "lstm_ext.h"
#include "memload.h"
#include "qmat.h"
#include "quantize.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "safetensors data is little-endian; this reader copies floats as raw bytes");
_Static_assert(sizeof(float) == 4, "float must be IEEE-754 binary32");

#define HEADER_MAX ((uint64_t)100 * 1000 * 1000) /* 100 MB: far above any real header */
#define DIM_MAX ((1L << 30) - 1) /* largest architecture size read from a file */
#define DATA_SLACK ((double)(1 << 20)) /* see load_from_header */
#define JSON_INT_MAX ((double)((int64_t)1 << 53)) /* integers a double holds exactly */

/* Re-raise the pending error detail with the path in front: "<path>: <what>: <detail>". */
static fl_status rewrap(fl_status st, const char *path, const char *what) {
    char detail[512];
    snprintf(detail, sizeof detail, "%s", fl_last_error());
    return fl_fail(st, "%s: %s: %s", path, what, detail);
}



/* ------------------------------------------------------------------ save */

const char *fl_st_dtype_name(fl_precision p) {
    return p == FL_PRECISION_INT8 ? "I8" : p == FL_PRECISION_BF16 ? "BF16" : "F32";
}

fl_status fl_st_check_finite(const char *path, const char *name, const float *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(p[i]))
            return fl_fail(FL_ERR_NONFINITE, "%s: tensor '%s' element %zu is %s", path, name, i,
                           isnan(p[i]) ? "NaN" : "Inf");
    return FL_OK;
}

static bool parse_long(const char *s, long lo, long hi, long *out) {
    if (!s || !*s) return false;
    const char *p = s;
    bool neg = *p == '-';
    if (neg) p++;
    if (!*p) return false;
    long v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') return false;
        if (v > (LONG_MAX - (*p - '0')) / 10) return false;
        v = v * 10 + (*p - '0');
    }
    if (neg) v = -v;
    if (v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* Metadata value for key, or NULL if absent. Every metadata value has been checked to be a string. */
static const char *meta_get(const cJSON *meta, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, key);
    return v ? v->valuestring : NULL;
}

static fl_status meta_int(const char *path, const cJSON *meta, const char *key, long lo, long hi,
                          int *out) {
    const char *s = meta_get(meta, key);
    if (!s) return fl_fail(FL_ERR_FORMAT, "%s: __metadata__ lacks \"%s\"", path, key);
    long v;
    if (!parse_long(s, lo, hi, &v))
        return fl_fail(FL_ERR_FORMAT, "%s: __metadata__ \"%s\" = \"%s\" is not an integer in [%ld, %ld]",
                       path, key, s, lo, hi);
    *out = (int)v;
    return FL_OK;
}

/* Architecture from the metadata. */
static fl_status parse_arch(const char *path, const cJSON *meta, fl_arch *a) {
    const char *fmt = meta_get(meta, "format");
    if (!fmt) return fl_fail(FL_ERR_FORMAT, "%s: __metadata__ lacks \"format\" (not a fastlstm model)", path);
    if (strcmp(fmt, FL_FORMAT_NAME) != 0)
        return fl_fail(FL_ERR_FORMAT, "%s: format is \"%s\", expected \"%s\"", path, fmt, FL_FORMAT_NAME);
    const char *ver = meta_get(meta, "format_version");
    long v;
    if (!ver) return fl_fail(FL_ERR_FORMAT, "%s: __metadata__ lacks \"format_version\"", path);
    if (!parse_long(ver, 1, LONG_MAX, &v))
        return fl_fail(FL_ERR_FORMAT, "%s: format_version \"%s\" is not a positive integer", path, ver);
    if (v > FL_FORMAT_VERSION)
        return fl_fail(FL_ERR_VERSION, "%s: file needs format_version %ld, this library reads up to version %d",
                       path, v, FL_FORMAT_VERSION);
    fl_status st;
    memset(a, 0, sizeof *a);
    /* Below 2^30 each: fl_arch_check multiplies sizes in int64 (4 * hidden * input overflows for
     * sizes near 2^31), and it rejects any size from 2^30 on anyway. */
    if ((st = meta_int(path, meta, "vocab", 0, DIM_MAX, &a->vocab)) ||
        (st = meta_int(path, meta, "input", 1, DIM_MAX, &a->input)) ||
        (st = meta_int(path, meta, "hidden", 1, DIM_MAX, &a->hidden)) ||
        (st = meta_int(path, meta, "layers", 1, DIM_MAX, &a->layers)) ||
        (st = meta_int(path, meta, "head_out", 0, DIM_MAX, &a->head_out)))
        return st;
    /* Version 3: optional; absent means unidirectional, no projection, no padding id. */
    if (v >= 3) {
        if ((meta_get(meta, "bidirectional") && (st = meta_int(path, meta, "bidirectional", 0, 1, &a->bidirectional))) ||
            (meta_get(meta, "proj") && (st = meta_int(path, meta, "proj", 0, DIM_MAX, &a->proj))))
            return st;
        if (meta_get(meta, "padding_idx")) {
            if ((st = meta_int(path, meta, "padding_idx", 0, DIM_MAX, &a->padding_idx))) return st;
            a->has_padding = 1;
        }
    } else if (meta_get(meta, "bidirectional") || meta_get(meta, "proj") || meta_get(meta, "padding_idx")) {
        return fl_fail(FL_ERR_FORMAT, "%s: format_version %ld file has \"bidirectional\", \"proj\" or \"padding_idx\", "
                       "which need format_version 3", path, v);
    }
    const char *h = meta_get(meta, "head");
    if (!h) return fl_fail(FL_ERR_FORMAT, "%s: __metadata__ lacks \"head\"", path);
    if (!strcmp(h, "none")) a->head = FL_HEAD_NONE;
    else if (!strcmp(h, "per_step")) a->head = FL_HEAD_PER_STEP;
    else if (!strcmp(h, "last_step")) a->head = FL_HEAD_LAST_STEP;
    else
        return fl_fail(FL_ERR_FORMAT, "%s: head \"%s\" is not none, per_step or last_step", path, h);
    if ((st = fl_arch_check(a))) return rewrap(FL_ERR_FORMAT, path, "metadata describes an invalid architecture");
    return FL_OK;
}

/* The optional per-matrix table entry "<what>.<name>" must say `want` (what the architecture makes of
 * matrix d). */
static fl_status check_table(const char *path, const cJSON *meta, const char *what, const fl_mat_desc *d,
                             const char *want) {
    char key[80];
    snprintf(key, sizeof key, "%s.%s", what, d->name);
    const char *s = meta_get(meta, key);
    if (s && strcmp(s, want) != 0)
        return fl_fail(FL_ERR_FORMAT, "%s: \"%s\" = \"%s\", the architecture needs \"%s\"", path, key, s, want);
    return FL_OK;
}

/* Per-matrix methods ("method.<name>", default dense) into specs[nmat]; checks the kind, direction and
 * precision entries against the architecture. */
static fl_status parse_specs(const char *path, const cJSON *meta, const fl_arch *a, fl_mat_spec *specs,
                             size_t nmat) {
    for (size_t i = 0; i < nmat; i++) {
        fl_mat_desc d;
        fl_arch_matrix(a, i, &d);
        const char *name = d.name;
        char key[80], dir[16];
        snprintf(dir, sizeof dir, "%d", d.direction);
        fl_status st;
        /* A file using a kind, direction or precision this library does not build names a newer
         * format_version (refused above); a file claiming one anyway is malformed. */
        if ((st = check_table(path, meta, "kind", &d, fl_mat_kind_name(d.kind))) ||
            (st = check_table(path, meta, "direction", &d, dir)))
            return st;
        snprintf(key, sizeof key, "method.%s", name);
        const char *s = meta_get(meta, key);
        long r = 0;
        specs[i] = (fl_mat_spec){FL_METHOD_DENSE, 0};
        if (!s || !strcmp(s, "dense")) continue;
        if (!strncmp(s, "svd:", 4) && parse_long(s + 4, 1, INT32_MAX, &r))
            specs[i] = (fl_mat_spec){FL_METHOD_SVD, (int)r};
        else if (!strncmp(s, "cp:", 3) && parse_long(s + 3, 1, INT32_MAX, &r))
            specs[i] = (fl_mat_spec){FL_METHOD_CP, (int)r};
        else
            return fl_fail(FL_ERR_FORMAT, "%s: \"%s\" = \"%s\" is not dense, svd:<rank> or cp:<rank>",
                           path, key, s);
    }
    return FL_OK;
}

/* precision.<name> (optional, f32 when absent) into prec[nmat]; a low precision needs format_version 2. */
static fl_status parse_precisions(const char *path, const cJSON *meta, const fl_arch *a, fl_precision *prec,
                                  size_t nmat) {
    long version = 1;
    parse_long(meta_get(meta, "format_version"), 1, LONG_MAX, &version); /* checked by parse_arch */
    for (size_t i = 0; i < nmat; i++) {
        fl_mat_desc d;
        fl_arch_matrix(a, i, &d);
        char key[80];
        snprintf(key, sizeof key, "precision.%s", d.name);
        const char *s = meta_get(meta, key);
        prec[i] = FL_PRECISION_F32;
        if (!s || !strcmp(s, "f32")) continue;
        if (!strcmp(s, "bf16")) prec[i] = FL_PRECISION_BF16;
        else if (!strcmp(s, "int8")) prec[i] = FL_PRECISION_INT8;
        else return fl_fail(FL_ERR_FORMAT, "%s: \"%s\" = \"%s\" is not f32, bf16 or int8", path, key, s);
        if (version < 2)
            return fl_fail(FL_ERR_FORMAT, "%s: \"%s\" = \"%s\" needs format_version 2, the file says %ld", path, key, s,
                           version);
    }
    return FL_OK;
}

/* rel_error.<name> (optional: dense 0, decomposed unknown -1 when absent). */
static fl_status parse_rel_errors(const char *path, const cJSON *meta, fl_model *m) {
    size_t nmat = fl_model_num_matrices(m);
    for (size_t i = 0; i < nmat; i++) {
        fl_mat_desc d;
        fl_arch_matrix(&m->arch, i, &d);
        char key[80];
        snprintf(key, sizeof key, "rel_error.%s", d.name);
        fl_mat *w = fl_model_mat(m, i);
        const char *s = meta_get(meta, key);
        if (!s) {
            w->rel_error = w->method == FL_METHOD_DENSE ? 0.0 : -1.0;
            continue;
        }
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (end == s || *end || errno == ERANGE || !isfinite(v))
            return fl_fail(FL_ERR_FORMAT, "%s: \"%s\" = \"%s\" is not a finite number", path, key, s);
        w->rel_error = v;
    }
    return FL_OK;
}

/* A non-negative integer JSON number that a double holds exactly. */
static bool json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= JSON_INT_MAX) || d != floor(d)) return false;
    *out = (uint64_t)d;
    return true;
}

typedef struct range {
    uint64_t begin, end;
    size_t tensor;
} range;

static int range_cmp(const void *a, const void *b) {
    const range *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : 0;
}

static void shape_str(char *buf, size_t n, const int64_t *shape, int ndim) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && o < n; d++)
        o += (size_t)snprintf(buf + o, n - o, "%s%" PRId64, d ? ", " : "", shape[d]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

/* Checks one tensor entry `name` against what the model needs: dtype (its precision's), shape
 * (ndim, want) and element size; fills r with its byte range. */
static fl_status check_entry(const char *path, const cJSON *e, const char *name, fl_precision p, int want_ndim,
                             const int64_t *want_shape, size_t count, uint64_t data_size, range *r) {
    if (!cJSON_IsObject(e)) return fl_fail(FL_ERR_FORMAT, "%s: tensor '%s' entry is not an object", path, name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dtype)) return fl_fail(FL_ERR_FORMAT, "%s: tensor '%s' lacks a string \"dtype\"", path, name);
    if (strcmp(dtype->valuestring, fl_st_dtype_name(p)) != 0)
        return fl_fail(FL_ERR_DTYPE, "%s: tensor '%s' has dtype %s, its matrix's precision (%s) needs %s", path, name,
                       dtype->valuestring, fl_precision_name(p), fl_st_dtype_name(p));
    if (!cJSON_IsArray(shape)) return fl_fail(FL_ERR_FORMAT, "%s: tensor '%s' lacks a \"shape\" array", path, name);
    int ndim = cJSON_GetArraySize(shape);
    int64_t dims[8] = {0};
    int i = 0;
    for (const cJSON *d = shape->child; d; d = d->next, i++) {
        uint64_t v;
        if (!json_uint(d, &v)) return fl_fail(FL_ERR_FORMAT, "%s: tensor '%s' shape holds a non-integer", path, name);
        if (i < 8) dims[i] = (int64_t)v;
    }
    bool same = ndim == want_ndim;
    for (int d = 0; same && d < ndim; d++) same = dims[d] == want_shape[d];
    if (!same) {
        char got[96], want[64];
        if (ndim > 8) snprintf(got, sizeof got, "(%d dimensions)", ndim);
        else shape_str(got, sizeof got, dims, ndim);
        shape_str(want, sizeof want, want_shape, want_ndim);
        return fl_fail(FL_ERR_SHAPE, "%s: tensor '%s' has shape %s, the architecture needs %s", path, name,
                       got, want);
    }
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !json_uint(offs->child, &r->begin) ||
        !json_uint(offs->child->next, &r->end))
        return fl_fail(FL_ERR_FORMAT, "%s: tensor '%s' data_offsets is not [begin, end] (two integers)", path, name);
    if (r->begin > r->end)
        return fl_fail(FL_ERR_FORMAT, "%s: tensor '%s' data_offsets [%" PRIu64 ", %" PRIu64 ") has begin > end",
                       path, name, r->begin, r->end);
    if (r->end > data_size)
        return fl_fail(FL_ERR_FORMAT,
                       "%s: tensor '%s' data_offsets [%" PRIu64 ", %" PRIu64 ") past end of file (data section is %" PRIu64
                       " bytes)", path, name, r->begin, r->end, data_size);
    const size_t bytes = count * fl_precision_bytes(p);
    if (r->end - r->begin != (uint64_t)bytes)
        return fl_fail(FL_ERR_FORMAT, "%s: tensor '%s' data_offsets span %" PRIu64 " bytes, shape needs %zu",
                       path, name, r->end - r->begin, bytes);
    return FL_OK;
}

/* Reads tensor t's data (precision p, from its file range) into the model: f32 and bf16 into the
 * master (bf16 widened exactly), int8 into q (count bytes); or, for the scale of an int8 tensor, into
 * scale (rows floats). */
static fl_status read_tensor(const char *path, FILE *f, uint64_t at, const fl_tensor *t, fl_precision p, bool is_scale,
                             fl_model *m, int8_t *q, float *scale, size_t rows) {
    float *dst = m->params + t->offset;
    const char *what = is_scale ? "the scale of tensor" : "tensor";
    size_t n = is_scale ? rows : t->count, got;
    if (fseeko(f, (off_t)at, SEEK_SET) != 0) goto io;
    if (is_scale) got = fread(scale, 4, n, f);
    else if (p == FL_PRECISION_INT8) got = fread(q, 1, n, f);
    else if (p == FL_PRECISION_F32) got = fread(dst, 4, n, f);
    else {
        uint16_t *b = (uint16_t *)(void *)q; /* bf16: the caller's buffer holds 2 bytes per element */
        got = fread(b, 2, n, f);
        for (size_t i = 0; i < got; i++) dst[i] = fl_bf16_to_f32(b[i]);
    }
    if (got != n) goto io;
    if (is_scale || p == FL_PRECISION_INT8) return FL_OK; /* checked by fl_mat_qset_i8 */
    return fl_st_check_finite(path, t->name, dst, t->count);
io:
    return fl_fail(FL_ERR_IO, "%s: cannot read %s '%s' at offset %" PRIu64 ": %s", path, what, t->name, at,
                   ferror(f) ? strerror(errno) : "unexpected end of file");
}

/* Matches every header entry to a model tensor (or the scale of an int8 one), checks offsets, then
 * reads the data and fills the low-precision matrices. Ranges [n, 2n) are the scales of tensors
 * [0, n). */
static fl_status load_tensors(const char *path, FILE *f, const cJSON *root, uint64_t data_start,
                              uint64_t data_size, fl_model *m) {
    const size_t n = m->n_tensors;
    range *rs = fl_calloc(2 * n, sizeof *rs);
    fl_precision *prec = fl_calloc(n, sizeof *prec);
    const fl_qfactor **qfs = fl_calloc(n, sizeof *qfs);
    void **qbuf = fl_calloc(n, sizeof *qbuf); /* int8 weights and scales, bf16 bits, per tensor */
    float **sbuf = fl_calloc(n, sizeof *sbuf);
    fl_status st = rs && prec && qfs && qbuf && sbuf ? FL_OK : fl_fail(FL_ERR_NOMEM, "%s: out of memory", path);
    for (size_t k = 0; k < 2 * n && !st; k++) rs[k].tensor = SIZE_MAX; /* not seen yet */
    for (size_t k = 0; k < n && !st; k++) {
        qfs[k] = fl_model_tensor_qfactor(m, &m->tensors[k], &prec[k]);
        if (prec[k] == FL_PRECISION_F32) continue;
        const size_t cnt = m->tensors[k].count;
        if (!(qbuf[k] = fl_malloc(2 * cnt + 1)) ||
            (prec[k] == FL_PRECISION_INT8 && !(sbuf[k] = fl_malloc(4 * (size_t)qfs[k]->rows + 1))))
            st = fl_fail(FL_ERR_NOMEM, "%s: out of memory", path);
    }
    for (const cJSON *e = root->child; e && !st; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) continue;
        const fl_tensor *t = fl_model_find_tensor(m, e->string);
        size_t slot = SIZE_MAX, len = strlen(e->string);
        if (t) slot = (size_t)(t - m->tensors);
        else if (len > 6 && !strcmp(e->string + len - 6, ".scale")) { /* "<int8 tensor>.scale" */
            char base[FL_TENSOR_NAME_MAX + 8];
            snprintf(base, sizeof base, "%.*s", (int)(len - 6), e->string);
            const fl_tensor *b = len - 6 < sizeof base ? fl_model_find_tensor(m, base) : NULL;
            if (b && prec[b - m->tensors] == FL_PRECISION_INT8) slot = n + (size_t)(b - m->tensors);
        }
        if (slot == SIZE_MAX) {
            st = fl_fail(FL_ERR_FORMAT, "%s: unexpected tensor '%s' (not part of this architecture)", path,
                         e->string);
            break;
        }
        if (rs[slot].tensor != SIZE_MAX) {
            st = fl_fail(FL_ERR_FORMAT, "%s: tensor '%s' appears twice", path, e->string);
            break;
        }
        if (slot < n) {
            t = &m->tensors[slot];
            st = check_entry(path, e, t->name, prec[slot], t->ndim, t->shape, t->count, data_size, &rs[slot]);
        } else {
            const int64_t rows[1] = {qfs[slot - n]->rows};
            st = check_entry(path, e, e->string, FL_PRECISION_F32, 1, rows, (size_t)rows[0], data_size, &rs[slot]);
        }
        rs[slot].tensor = slot;
    }
    for (size_t k = 0; k < n && !st; k++)
        if (rs[k].tensor == SIZE_MAX) st = fl_fail(FL_ERR_FORMAT, "%s: missing tensor '%s'", path, m->tensors[k].name);
        else if (prec[k] == FL_PRECISION_INT8 && rs[n + k].tensor == SIZE_MAX)
            st = fl_fail(FL_ERR_FORMAT, "%s: int8 tensor '%s' lacks its scale tensor '%s.scale'", path, m->tensors[k].name,
                         m->tensors[k].name);
    size_t used = 0;
    for (size_t k = 0; k < 2 * n && !st; k++)
        if (rs[k].tensor != SIZE_MAX) rs[used++] = rs[k];
    if (!st) {
        qsort(rs, used, sizeof *rs, range_cmp);
        for (size_t k = 1; k < used && !st; k++)
            if (rs[k].begin < rs[k - 1].end)
                st = fl_fail(FL_ERR_FORMAT, "%s: tensors '%s' and '%s' have overlapping data_offsets", path,
                             m->tensors[rs[k - 1].tensor % n].name, m->tensors[rs[k].tensor % n].name);
    }
    /* Ranges are now sorted by offset: read the file front to back. */
    for (size_t k = 0; k < used && !st; k++) {
        const size_t i = rs[k].tensor % n;
        st = read_tensor(path, f, data_start + rs[k].begin, &m->tensors[i], prec[i], rs[k].tensor >= n, m, qbuf[i],
                         sbuf[i], qfs[i] ? (size_t)qfs[i]->rows : 0);
    }
    /* The low-precision factors: int8 checked and packed, bf16 packed from the widened master. */
    for (size_t i = 0; i < fl_model_num_matrices(m) && !st; i++) {
        fl_mat *w = fl_model_mat(m, i);
        fl_mat_desc d;
        fl_arch_matrix(&m->arch, i, &d);
        for (int j = 0; w->qf && j < fl_mat_num_factors(w) && !st; j++) {
            size_t k = 0;
            while (qfs[k] != &w->qf[j]) k++;
            if (w->precision == FL_PRECISION_INT8) st = fl_mat_qset_i8(w, j, m->tensors[k].name, qbuf[k], sbuf[k]);
            else st = fl_mat_qset_master(w, j, m->tensors[k].name);
            if (st) st = rewrap(st, path, "bad low-precision weights");
        }
    }
    for (size_t k = 0; qbuf && sbuf && k < n; k++) {
        fl_free(qbuf[k]);
        fl_free(sbuf[k]);
    }
    fl_free(rs);
    fl_free(prec);
    fl_free(qfs);
    fl_free(qbuf);
    fl_free(sbuf);
    return st;
}

/* See memload.h. The loaders' headers are untrusted: the file must be able to hold the model before
 * fl_model_create allocates it. In double, exact below 2^53 bytes (anything near that is rejected
 * anyway). A negative rank counts as 0 here; fl_model_create rejects it with its own message. */
double fl_model_data_bytes(const fl_arch *a, const fl_mat_spec *specs, size_t nmat) {
    double floats = (double)a->vocab * a->input;
    FL_ASSERT(nmat == fl_arch_num_matrices(a));
    for (size_t i = 0; i < nmat; i++) {
        fl_mat_desc d;
        fl_arch_matrix(a, i, &d);
        floats += (double)fl_spec_params(d.rows, d.cols, specs[i]);
        for (int j = 0; j < d.n_bias; j++) floats += (double)d.bias[j].rows; /* the biases it owns */
    }
    return 4.0 * floats;
}

/* metadata "layer_threads" = "t0,t1,...": one count in [1, FL_MAX_PLANNED_THREADS] per layer. */
static fl_status parse_layer_threads(const char *path, const char *v, fl_model *m) {
    const int L = m->arch.layers;
    int *t = fl_malloc((size_t)L * sizeof(int));
    if (!t) return fl_fail(FL_ERR_NOMEM, "%s: out of memory", path);
    const char *c = v;
    int n = 0;
    fl_status st = FL_OK;
    for (;;) {
        char *end;
        long x = strtol(c, &end, 10);
        if (end == c || x < 1 || x > FL_MAX_PLANNED_THREADS || n >= L || (*end && *end != ',')) {
            st = fl_fail(FL_ERR_FORMAT, "%s: __metadata__ \"layer_threads\" is \"%s\", not %d comma-separated integers "
                         "in [1, %d]", path, v, L, FL_MAX_PLANNED_THREADS);
            break;
        }
        t[n++] = (int)x;
        if (!*end) break;
        c = end + 1;
    }
    if (!st && n != L)
        st = fl_fail(FL_ERR_FORMAT, "%s: __metadata__ \"layer_threads\" has %d counts for %d layers", path, n, L);
    if (!st) st = fl_model_set_planned_threads(m, t);
    fl_free(t);
    return st;
}

/* Everything after the header has been read and parsed. */
static fl_status load_from_header(const char *path, FILE *f, const cJSON *root, uint64_t data_start,
                                  uint64_t data_size, fl_model **out) {
    if (!cJSON_IsObject(root)) return fl_fail(FL_ERR_FORMAT, "%s: header JSON is not an object", path);
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    if (!meta) return fl_fail(FL_ERR_FORMAT, "%s: header lacks __metadata__ (not a fastlstm model)", path);
    if (!cJSON_IsObject(meta)) return fl_fail(FL_ERR_FORMAT, "%s: __metadata__ is not an object", path);
    for (const cJSON *v = meta->child; v; v = v->next)
        if (!cJSON_IsString(v))
            return fl_fail(FL_ERR_FORMAT, "%s: __metadata__ \"%s\" is not a string", path, v->string);
    fl_arch arch;
    fl_status st = parse_arch(path, meta, &arch);
    if (st) return st;
    size_t nmat = fl_arch_num_matrices(&arch);
    fl_mat_spec *specs = fl_calloc(nmat, sizeof *specs);
    if (!specs) return fl_fail(FL_ERR_NOMEM, "%s: out of memory", path);
    fl_precision *prec = fl_calloc(nmat, sizeof *prec);
    fl_model *m = NULL;
    st = prec ? parse_specs(path, meta, &arch, specs, nmat) : fl_fail(FL_ERR_NOMEM, "%s: out of memory", path);
    if (!st) st = parse_precisions(path, meta, &arch, prec, nmat);
    /* The metadata is untrusted: never allocate a model far larger than the data section. Within
     * DATA_SLACK of it the per-tensor checks below name the first tensor that disagrees. A model with
     * int8 or bf16 matrices stores at least 1 byte per element. */
    double need = fl_model_data_bytes(&arch, specs, nmat);
    for (size_t i = 0; prec && i < nmat; i++)
        if (prec[i] != FL_PRECISION_F32) {
            need /= 4;
            break;
        }
    if (!st && need > (double)data_size + DATA_SLACK)
        st = fl_fail(FL_ERR_FORMAT, "%s: __metadata__ describes a model of %.0f bytes of tensor data, the file holds %" PRIu64,
                     path, need, data_size);
    if (!st && (st = fl_model_create(&arch, specs, &m)))
        st = rewrap(st == FL_ERR_ARG ? FL_ERR_FORMAT : st, path, "cannot build the model");
    for (size_t i = 0; !st && i < nmat; i++) {
        fl_mat_desc d;
        fl_arch_matrix(&arch, i, &d);
        if ((st = fl_mat_qbegin(fl_model_mat(m, i), prec[i], d.name))) st = rewrap(st, path, "cannot build the model");
    }
    fl_free(specs);
    fl_free(prec);
    if (!st) st = parse_rel_errors(path, meta, m);
    if (!st) st = load_tensors(path, f, root, data_start, data_size, m);
    const char *thr = meta_get(meta, "threads"); /* optional: planned worker threads */
    if (!st && thr) {
        char *end;
        long v = strtol(thr, &end, 10);
        if (end == thr || *end || v < 1 || v > 1024)
            st = fl_fail(FL_ERR_FORMAT, "%s: __metadata__ \"threads\" is \"%s\", not an integer in [1, 1024]", path, thr);
        else m->planned_threads = (int)v;
    }
    const char *lthr = meta_get(meta, "layer_threads"); /* optional: planned threads per layer */
    if (!st && lthr) st = parse_layer_threads(path, lthr, m);
    const char *bs = meta_get(meta, "bidir_schedule"); /* optional: the planned schedule; none: parallel */
    if (!st && bs) {
        fl_bidir_sched v;
        if (!fl_bidir_sched_parse(bs, &v))
            st = fl_fail(FL_ERR_FORMAT, "%s: __metadata__ \"bidir_schedule\" is \"%s\", not \"parallel\" or \"serial\"",
                         path, bs);
        else if (!arch.bidirectional)
            st = fl_fail(FL_ERR_FORMAT, "%s: __metadata__ \"bidir_schedule\" is \"%s\" for a model without "
                         "bidirectional layers", path, bs);
        else m->bidir_sched = v;
    }
    const char *ss = meta_get(meta, "step_schedule"); /* optional: the planned step schedule; none: the rule */
    if (!st && ss) {
        fl_step_sched v;
        if (!fl_step_sched_parse(ss, &v))
            st = fl_fail(FL_ERR_FORMAT, "%s: __metadata__ \"step_schedule\" is \"%s\", not \"blocks\" or \"rows\"",
                         path, ss);
        else m->step_sched = v;
    }
    const char *tok = meta_get(meta, "tokenizer");
    if (!st && tok) {
        size_t n = strlen(tok) + 1;
        m->tokenizer = fl_malloc(n);
        if (!m->tokenizer) st = fl_fail(FL_ERR_NOMEM, "%s: out of memory for the tokenizer", path);
        else memcpy(m->tokenizer, tok, n);
    }
    const char *ext = meta_get(meta, "lstm_ext");
    if (!st && ext) st = fl_lstm_ext_parse(path, ext, m);
    if (st) {
        fl_model_free(m);
        return st;
    }
    *out = m;
    return FL_OK;
}

/* Parses a whole model file from f (positioned at its start); `path` names it in errors. */
static fl_status load_stream(const char *path, FILE *f, fl_model **out) {
    fl_status st = FL_OK;
    char *hdr = NULL;
    cJSON *root = NULL;
    unsigned char le[8];
    off_t fsize = -1;
    if (fseeko(f, 0, SEEK_END) != 0 || (fsize = ftello(f)) < 0 || fseeko(f, 0, SEEK_SET) != 0) {
        st = fl_fail(FL_ERR_IO, "%s: cannot determine the file size: %s", path, strerror(errno));
        goto done;
    }
    if (fsize == 0) {
        st = fl_fail(FL_ERR_FORMAT, "%s: file is empty", path);
        goto done;
    }
    if (fsize < 8) {
        st = fl_fail(FL_ERR_FORMAT, "%s: file is %lld bytes, shorter than the 8-byte header length", path,
                     (long long)fsize);
        goto done;
    }
    if (fread(le, 1, 8, f) != 8) {
        st = fl_fail(FL_ERR_IO, "%s: cannot read the header length", path);
        goto done;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | le[i];
    uint64_t avail = (uint64_t)fsize - 8;
    if (n == 0) st = fl_fail(FL_ERR_FORMAT, "%s: header length is 0", path);
    else if (n > HEADER_MAX)
        st = fl_fail(FL_ERR_FORMAT, "%s: header length %" PRIu64 " exceeds the 100 MB limit", path, n);
    else if (n > avail)
        st = fl_fail(FL_ERR_FORMAT, "%s: header length %" PRIu64 " runs past end of file (%" PRIu64 " bytes follow)",
                     path, n, avail);
    if (st) goto done;
    hdr = fl_malloc((size_t)n + 1);
    if (!hdr) {
        st = fl_fail(FL_ERR_NOMEM, "%s: out of memory for a %" PRIu64 "-byte header", path, n);
        goto done;
    }
    if (fread(hdr, 1, (size_t)n, f) != (size_t)n) {
        st = fl_fail(FL_ERR_IO, "%s: cannot read the %" PRIu64 "-byte header", path, n);
        goto done;
    }
    hdr[n] = '\0';
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(hdr, (size_t)n, &end, 0);
    if (!root) {
        st = fl_fail(FL_ERR_FORMAT, "%s: header JSON is malformed near byte %td", path,
                     end ? (ptrdiff_t)(end - hdr) : (ptrdiff_t)-1);
        goto done;
    }
    for (const char *p = end; p < hdr + n; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            st = fl_fail(FL_ERR_FORMAT, "%s: header has trailing bytes after the JSON at byte %td", path,
                         p - hdr);
            goto done;
        }
    st = load_from_header(path, f, root, 8 + n, avail - n, out);
done:
    cJSON_Delete(root);
    fl_free(hdr);
    return st;
}

fl_status fl_model_load(const char *path, fl_model **out) {
    if (!out) return fl_fail(FL_ERR_ARG, "fl_model_load: out is NULL");
    *out = NULL;
    if (!path) return fl_fail(FL_ERR_ARG, "fl_model_load: path is NULL");
    FILE *f = fopen(path, "rb");
    if (!f) return fl_fail(FL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    fl_status st;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) st = fl_fail(FL_ERR_IO, "%s: not a regular file", path);
    else st = load_stream(path, f, out);
    fclose(f);
    return st;
}

fl_status fl_model_load_memory(const void *buf, size_t n, const char *name, fl_model **out) {
    if (!out) return fl_fail(FL_ERR_ARG, "fl_model_load_memory: out is NULL");
    *out = NULL;
    if (!name) name = "<memory>";
    if (!buf && n) return fl_fail(FL_ERR_ARG, "fl_model_load_memory: buf is NULL");
    if (n == 0) return fl_fail(FL_ERR_FORMAT, "%s: file is empty", name); /* fmemopen rejects size 0 */
    FILE *f = fmemopen((void *)buf, n, "rb"); /* read-only: the buffer is never written */
    if (!f) return fl_fail(FL_ERR_NOMEM, "%s: cannot open the buffer: %s", name, strerror(errno));
    fl_status st = load_stream(name, f, out);
    fclose(f);
    return st;
}
