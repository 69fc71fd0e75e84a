/* Model file writer: the safetensors header (architecture, per-matrix table, format version) and the
 * tensors, written through the one atomic writer. The reader is safetensors.c. */
#include "safetensors_internal.h"
#include "atomic_file.h"
#include "lstm_ext.h"
#include "qmat.h"
#include "quantize.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool add_str(cJSON *obj, const char *key, const char *val) {
    return cJSON_AddStringToObject(obj, key, val) != NULL;
}

static bool add_int_str(cJSON *obj, const char *key, long long v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", v);
    return add_str(obj, key, buf);
}

/* safetensors dtype of a tensor in precision p. */

/* Adds {"dtype", "shape", "data_offsets": [*off, *off + bytes]} as root[name]; advances *off. */
static bool add_entry(cJSON *root, const char *name, const char *dtype, const int64_t *dims, int ndim, uint64_t *off,
                      size_t bytes) {
    cJSON *e = cJSON_AddObjectToObject(root, name);
    cJSON *shape = cJSON_AddArrayToObject(e, "shape");
    cJSON *offs = cJSON_AddArrayToObject(e, "data_offsets");
    if (!e || !shape || !offs || !add_str(e, "dtype", dtype)) return false;
    for (int d = 0; d < ndim; d++) {
        cJSON *n = cJSON_CreateNumber((double)dims[d]);
        if (!n || !cJSON_AddItemToArray(shape, n)) return false;
    }
    uint64_t end = *off + (uint64_t)bytes;
    cJSON *b = cJSON_CreateNumber((double)*off), *en = cJSON_CreateNumber((double)end);
    if (!b || !cJSON_AddItemToArray(offs, b)) {
        cJSON_Delete(en);
        return false;
    }
    if (!en || !cJSON_AddItemToArray(offs, en)) return false;
    *off = end;
    return true;
}

/* Builds the header JSON for m; data offsets pack the tensors back to back in table order. */
static cJSON *build_header(const fl_model *m) {
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    if (!root || !meta) goto fail;
    const fl_arch *a = &m->arch;
    size_t nmat = fl_model_num_matrices(m);
    int version = 1;
    for (size_t i = 0; i < nmat; i++) {
        fl_mat_desc d;
        fl_arch_matrix(a, i, &d);
        d.precision = fl_model_mat_const(m, i)->precision;
        int v = fl_mat_format_version(&d);
        if (v > version) version = v;
    }
    if (a->has_padding && version < 3) version = 3; /* "padding_idx" is a version-3 key */
    char num[16];
    if (m->ext && version < 2) version = 2;  // LSTM extras (lstm_ext.h) need a version-2 reader
    snprintf(num, sizeof num, "%d", version);
    bool ok = add_str(meta, "format", FL_FORMAT_NAME) && add_str(meta, "format_version", num) &&
              add_int_str(meta, "vocab", a->vocab) && add_int_str(meta, "input", a->input) &&
              add_int_str(meta, "hidden", a->hidden) && add_int_str(meta, "layers", a->layers) &&
              add_str(meta, "head", fl_head_name(a->head)) && add_int_str(meta, "head_out", a->head_out);
    /* Version-3 keys, written only when used so that other files stay readable by older readers. */
    if (ok && a->bidirectional) ok = add_int_str(meta, "bidirectional", 1);
    if (ok && a->proj > 0) ok = add_int_str(meta, "proj", a->proj);
    if (ok && a->has_padding) ok = add_int_str(meta, "padding_idx", a->padding_idx);
    for (size_t i = 0; ok && i < nmat; i++) {
        const fl_mat *w = fl_model_mat_const(m, i);
        fl_mat_desc d;
        fl_arch_matrix(a, i, &d);
        const char *name = d.name;
        char key[80], val[48];
        snprintf(key, sizeof key, "kind.%s", name);
        ok = add_str(meta, key, fl_mat_kind_name(d.kind));
        snprintf(key, sizeof key, "direction.%s", name);
        ok = ok && add_int_str(meta, key, d.direction);
        snprintf(key, sizeof key, "precision.%s", name);
        ok = ok && add_str(meta, key, fl_precision_name(w->precision));
        if (w->method == FL_METHOD_DENSE) snprintf(val, sizeof val, "dense");
        else snprintf(val, sizeof val, "%s:%d", w->method == FL_METHOD_SVD ? "svd" : "cp", w->rank);
        snprintf(key, sizeof key, "method.%s", name);
        ok = ok && add_str(meta, key, val);
        snprintf(key, sizeof key, "rel_error.%s", name);
        /* %.17g round-trips a double exactly; a non-finite error is stored as unknown (-1). */
        snprintf(val, sizeof val, "%.17g", isfinite(w->rel_error) ? w->rel_error : -1.0);
        ok = ok && add_str(meta, key, val);
    }
    if (ok && m->tokenizer) ok = add_str(meta, "tokenizer", m->tokenizer);
    if (ok && m->ext) {
        char *ext = fl_lstm_ext_to_json(m->ext);
        ok = ext && add_str(meta, "lstm_ext", ext);
        fl_free(ext);
    }
    if (ok && m->planned_threads > 0) ok = add_int_str(meta, "threads", m->planned_threads);
    if (ok && m->layer_threads) { /* "2,1": layer 0 on 2 threads, layer 1 on 1 (readers before it use "threads") */
        char *v = fl_malloc((size_t)m->arch.layers * 12 + 1);
        size_t n = 0;
        for (int l = 0; v && l < m->arch.layers; l++) n += (size_t)sprintf(v + n, l ? ",%d" : "%d", m->layer_threads[l]);
        ok = v && add_str(meta, "layer_threads", v);
        fl_free(v);
    }
    if (ok && m->bidir_sched != FL_BIDIR_AUTO) ok = add_str(meta, "bidir_schedule", fl_bidir_sched_name(m->bidir_sched));
    if (ok && m->step_sched != FL_STEP_AUTO) ok = add_str(meta, "step_schedule", fl_step_sched_name(m->step_sched));
    if (!ok) goto fail;

    uint64_t off = 0;
    for (size_t k = 0; k < m->n_tensors; k++) {
        const fl_tensor *t = &m->tensors[k];
        fl_precision p;
        const fl_qfactor *qf = fl_model_tensor_qfactor(m, t, &p);
        if (!add_entry(root, t->name, fl_st_dtype_name(p), t->shape, t->ndim, &off, t->count * fl_precision_bytes(p)))
            goto fail;
        char sname[FL_TENSOR_NAME_MAX + 8];
        snprintf(sname, sizeof sname, "%s.scale", t->name);
        const int64_t rows[1] = {qf ? qf->rows : 0};
        if (p == FL_PRECISION_INT8 && !add_entry(root, sname, "F32", rows, 1, &off, 4 * (size_t)qf->rows)) goto fail;
    }
    return root;
fail:
    cJSON_Delete(root);
    return NULL;
}


/* What fl_model_save hands to the atomic writer. */
typedef struct st_out {
    const fl_model *m;
    const char *json;
} st_out;

/* Writes a low-precision factor: bf16 bits of its (exact) master, or int8 weights then the scales. */
static fl_status write_low(FILE *f, const char *tmp, const fl_qfactor *qf, fl_precision p) {
    const size_t n = (size_t)qf->rows * qf->K;
    void *buf = fl_malloc(n * (p == FL_PRECISION_BF16 ? 2 : 1) + 1);
    if (!buf) return fl_fail(FL_ERR_NOMEM, "%s: out of memory writing %s weights", tmp, fl_precision_name(p));
    bool ok;
    if (p == FL_PRECISION_BF16) {
        uint16_t *b = buf;
        for (size_t i = 0; i < n; i++) b[i] = fl_bf16_from_f32(qf->master[i]);
        ok = fwrite(b, 2, n, f) == n;
    } else {
        fl_qfactor_get_i8(qf, buf);
        ok = fwrite(buf, 1, n, f) == n && fwrite(qf->wscale, 4, (size_t)qf->rows, f) == (size_t)qf->rows;
    }
    fl_free(buf);
    return ok ? FL_OK : fl_fail(FL_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
}

/* Writes header + data to f. */
static fl_status write_body(void *ctx, FILE *f, const char *tmp) {
    const fl_model *m = ((const st_out *)ctx)->m;
    const char *json = ((const st_out *)ctx)->json;
    size_t len = strlen(json);
    uint64_t n = ((uint64_t)len + 7) & ~(uint64_t)7;
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(n >> (8 * i));
    static const char spaces[8] = "        ";
    if (fwrite(le, 1, 8, f) != 8 || fwrite(json, 1, len, f) != len ||
        fwrite(spaces, 1, (size_t)(n - len), f) != (size_t)(n - len))
        return fl_fail(FL_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    for (size_t k = 0; k < m->n_tensors; k++) {
        const fl_tensor *t = &m->tensors[k];
        fl_precision p;
        const fl_qfactor *qf = fl_model_tensor_qfactor(m, t, &p);
        fl_status st = FL_OK;
        if (p == FL_PRECISION_F32) {
            if (fwrite(m->params + t->offset, sizeof(float), t->count, f) != t->count)
                st = fl_fail(FL_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
        } else {
            st = write_low(f, tmp, qf, p);
        }
        if (st) return st;
    }
    return FL_OK;
}

static fl_status save_held(const fl_model *m, const char *path) {
    if (!m || !path) return fl_fail(FL_ERR_ARG, "NULL argument to fl_model_save");
    /* A file with NaN/Inf weights could not be loaded back: refuse to write it. */
    for (size_t k = 0; k < m->n_tensors; k++) {
        const fl_tensor *t = &m->tensors[k];
        fl_status st = fl_st_check_finite(path, t->name, m->params + t->offset, t->count);
        if (st) return st;
    }
    cJSON *root = build_header(m);
    char *json = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!json) return fl_fail(FL_ERR_NOMEM, "%s: out of memory building the header", path);

    st_out o = {m, json};
    fl_status st = fl_atomic_write(path, write_body, &o);
    cJSON_free(json);
    return st;
}

/* The weights are read outside any session: hold them (packed.c). */
fl_status fl_model_save(const fl_model *m, const char *path) {
    if (!m) return save_held(m, path);
    fl_model_weights_hold(m);
    fl_status st = save_held(m, path);
    fl_model_weights_unhold(m);
    return st;
}

/* ------------------------------------------------------------------ load */

/* Strict decimal integer in [lo, hi]: digits only (optional leading '-'), nothing else. */
