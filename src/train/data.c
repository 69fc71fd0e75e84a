/* Data sets for training: classification sequences and language-model token streams. */
#include "train_internal.h"

#include "npy.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FL_MAX_INFERRED_CLASSES (1 << 24)

void fl_dataset_free(fl_dataset *d) {
    if (!d) return;
    fl_free(d->x);
    fl_free(d->ids);
    fl_free(d->labels);
    fl_free(d->tokens);
    fl_free(d->lens);
    fl_free(d);
}

fl_status fl_dataset_set_lengths(fl_dataset *d, const int32_t *lengths) {
    if (!d || !lengths) return fl_fail(FL_ERR_ARG, "NULL argument to fl_dataset_set_lengths");
    if (d->kind != DS_CLASSIFY) return fl_fail(FL_ERR_SHAPE, "a token stream has no sequence lengths");
    for (size_t i = 0; i < d->n; i++)
        if (lengths[i] < 1 || lengths[i] > d->seq)
            return fl_fail(FL_ERR_DATA, "length %d of sequence %zu outside [1, %d]", lengths[i], i, d->seq);
    int32_t *l = fl_malloc(d->n * sizeof(int32_t));
    if (!l) return fl_fail(FL_ERR_NOMEM, "out of memory for %zu lengths", d->n);
    memcpy(l, lengths, d->n * sizeof(int32_t));
    fl_free(d->lens);
    d->lens = l;
    d->lens_left = false;
    return FL_OK;
}

const int32_t *fl_dataset_lengths(const fl_dataset *d, int *left_padded) {
    if (left_padded) *left_padded = d && d->lens && d->lens_left;
    return d ? d->lens : NULL;
}

/* Order of a batch by decreasing length; ties by position, so the sort is stable. */
typedef struct len_row {
    int32_t len;
    uint32_t pos;
} len_row;

static int cmp_len_row(const void *a, const void *b) {
    const len_row *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

void fl_dataset_gather(const fl_dataset *d, const fl_model *m, uint32_t *rows, int B, float *x, int32_t *ids,
                       int32_t *labels, int32_t *lens, int *T) {
    const int S = d->seq, D = d->dim;
    if (!d->lens) { /* every row full: copy as stored */
        *T = S;
        for (int b = 0; b < B; b++) {
            size_t r = rows[b];
            labels[b] = d->labels[r];
            for (int t = 0; t < S; t++) {
                if (D > 0) memcpy(x + ((size_t)t * B + b) * D, d->x + (r * S + t) * D, (size_t)D * sizeof(float));
                else ids[(size_t)t * B + b] = d->ids[r * S + t];
            }
        }
        return;
    }
    /* Sort by decreasing length through lens (as scratch) and labels: B is small next to the data. */
    len_row key[64], *k = B <= 64 ? key : fl_malloc((size_t)B * sizeof *k);
    if (k) { /* without memory for the keys the batch stays unsorted: slower, same result */
        for (int b = 0; b < B; b++) k[b] = (len_row){d->lens[rows[b]], rows[b]};
        qsort(k, (size_t)B, sizeof *k, cmp_len_row);
        for (int b = 0; b < B; b++) rows[b] = k[b].pos;
        if (k != key) fl_free(k);
    }
    const int32_t pad = m->arch.has_padding ? m->arch.padding_idx : 0;
    int mx = 1;
    for (int b = 0; b < B; b++) {
        size_t r = rows[b];
        const int len = d->lens[r], first = d->lens_left ? S - len : 0; /* first valid step in the row */
        labels[b] = d->labels[r];
        lens[b] = len;
        if (len > mx) mx = len;
        for (int t = 0; t < S; t++) {
            if (D > 0) {
                float *dst = x + ((size_t)t * B + b) * D;
                if (t < len) memcpy(dst, d->x + (r * S + first + t) * D, (size_t)D * sizeof(float));
                else memset(dst, 0, (size_t)D * sizeof(float));
            } else {
                ids[(size_t)t * B + b] = t < len ? d->ids[r * S + first + t] : pad;
            }
        }
    }
    /* Time-major with B rows per step: the steps past the longest row are simply not read. */
    *T = mx;
}

size_t fl_dataset_size(const fl_dataset *d) { return d ? d->n : 0; }
int fl_dataset_seq(const fl_dataset *d) { return d && d->kind == DS_CLASSIFY ? d->seq : 0; }
int fl_dataset_dim(const fl_dataset *d) { return d && d->kind == DS_CLASSIFY ? d->dim : 0; }
int fl_dataset_classes(const fl_dataset *d) { return d ? d->classes : 0; }
int fl_dataset_vocab(const fl_dataset *d) {
    if (!d) return 0;
    return d->max_id < INT32_MAX ? d->max_id + 1 : INT32_MAX; /* ids may reach INT32_MAX */
}

static fl_status check_labels(const int32_t *labels, size_t n, int classes, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= classes)
            return fl_fail(FL_ERR_DATA, "%s: label %d of sequence %zu outside [0, %d)", what, labels[i], i,
                           classes);
    return FL_OK;
}

static fl_status make_classify(int n, int seq, int dim, const float *x, const int32_t *ids,
                               const int32_t *labels, int classes, const char *what, fl_dataset **out) {
    *out = NULL;
    if (n <= 0 || seq <= 0) return fl_fail(FL_ERR_DATA, "%s: empty data set (%d sequences of length %d)", what, n, seq);
    if (dim < 0 || (dim > 0 && !x) || (dim == 0 && !ids) || !labels)
        return fl_fail(FL_ERR_ARG, "%s: features need dim > 0 and x; ids need dim == 0; labels required", what);
    if (classes < 2) return fl_fail(FL_ERR_DATA, "%s: %d class(es); a classifier needs at least 2", what, classes);
    fl_status st = check_labels(labels, (size_t)n, classes, what);
    if (st) return st;
    size_t cells;
    if (!fl_mul_ok((size_t)n, (size_t)seq, &cells) || !fl_mul_ok(cells, dim > 0 ? (size_t)dim : 1, &cells))
        return fl_fail(FL_ERR_DATA, "%s: data set too large", what);
    fl_dataset *d = fl_calloc(1, sizeof *d);
    if (!d) return fl_fail(FL_ERR_NOMEM, "out of memory loading %s", what);
    d->kind = DS_CLASSIFY;
    d->n = (size_t)n;
    d->seq = seq;
    d->dim = dim;
    d->classes = classes;
    d->max_id = -1;
    d->labels = fl_malloc((size_t)n * sizeof(int32_t));
    if (dim > 0) d->x = fl_malloc(cells * sizeof(float));
    else d->ids = fl_malloc(cells * sizeof(int32_t));
    if (!d->labels || (dim > 0 ? !d->x : !d->ids)) {
        fl_dataset_free(d);
        return fl_fail(FL_ERR_NOMEM, "out of memory loading %s", what);
    }
    memcpy(d->labels, labels, (size_t)n * sizeof(int32_t));
    if (dim > 0) {
        for (size_t i = 0; i < cells; i++)
            if (!isfinite(x[i])) {
                fl_dataset_free(d);
                return fl_fail(FL_ERR_NONFINITE, "%s: non-finite value at flat index %zu", what, i);
            }
        memcpy(d->x, x, cells * sizeof(float));
    } else {
        for (size_t i = 0; i < cells; i++) {
            if (ids[i] < 0) {
                fl_dataset_free(d);
                return fl_fail(FL_ERR_DATA, "%s: negative token id %d at flat index %zu", what, ids[i], i);
            }
            if (ids[i] > d->max_id) d->max_id = ids[i];
        }
        memcpy(d->ids, ids, cells * sizeof(int32_t));
    }
    *out = d;
    return FL_OK;
}

fl_status fl_dataset_classify(int n, int seq, int dim, const float *x, const int32_t *ids,
                              const int32_t *labels, int classes, fl_dataset **out) {
    if (!out) return fl_fail(FL_ERR_ARG, "out is NULL");
    return make_classify(n, seq, dim, x, ids, labels, classes, "classification data", out);
}

fl_status fl_dataset_lm(const int32_t *tokens, size_t n, int vocab, fl_dataset **out) {
    if (!out) return fl_fail(FL_ERR_ARG, "out is NULL");
    *out = NULL;
    if (!tokens || n < 2) return fl_fail(FL_ERR_DATA, "language-model data needs at least 2 tokens, got %zu", n);
    if (vocab < 2) return fl_fail(FL_ERR_DATA, "vocabulary of %d token(s); a language model needs at least 2", vocab);
    int32_t mx = 0;
    for (size_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= vocab)
            return fl_fail(FL_ERR_DATA, "token %d at position %zu outside [0, %d)", tokens[i], i, vocab);
        if (tokens[i] > mx) mx = tokens[i];
    }
    fl_dataset *d = fl_calloc(1, sizeof *d);
    if (!d || !(d->tokens = fl_malloc(n * sizeof(int32_t)))) {
        fl_dataset_free(d);
        return fl_fail(FL_ERR_NOMEM, "out of memory for %zu tokens", n);
    }
    d->kind = DS_LM;
    d->n = n;
    d->classes = vocab;
    d->max_id = mx;
    memcpy(d->tokens, tokens, n * sizeof(int32_t));
    *out = d;
    return FL_OK;
}

fl_status fl_dataset_load_npy(const char *x_path, const char *labels_path, int classes, fl_dataset **out) {
    if (!x_path || !labels_path || !out) return fl_fail(FL_ERR_ARG, "NULL argument to fl_dataset_load_npy");
    *out = NULL;
    fl_npy x = {0}, y = {0};
    fl_status st = fl_npy_load(x_path, &x);
    if (!st) st = fl_npy_load(labels_path, &y);
    if (st) goto done;
    if (x.ndim != 2 && x.ndim != 3) {
        st = fl_fail(FL_ERR_DATA, "%s: sequences must be (N, T, D) float32 or (N, T) ids, got %d dimension(s)",
                     x_path, x.ndim);
        goto done;
    }
    if (x.ndim == 3 && x.dtype != 'f') {
        st = fl_fail(FL_ERR_DATA, "%s: (N, T, D) features must be float32", x_path);
        goto done;
    }
    if (x.ndim == 2 && x.dtype == 'f') {
        st = fl_fail(FL_ERR_DATA, "%s: (N, T) token ids must be int32 or int64 (got float32)", x_path);
        goto done;
    }
    if (y.ndim != 1 || y.dtype == 'f') {
        st = fl_fail(FL_ERR_DATA, "%s: labels must be a 1-D int32/int64 array", labels_path);
        goto done;
    }
    if (y.shape[0] != x.shape[0]) {
        st = fl_fail(FL_ERR_DATA, "%s has %lld labels but %s has %lld sequences", labels_path,
                     (long long)y.shape[0], x_path, (long long)x.shape[0]);
        goto done;
    }
    if (x.shape[0] > INT32_MAX || x.shape[1] > INT32_MAX || (x.ndim == 3 && x.shape[2] > INT32_MAX)) {
        st = fl_fail(FL_ERR_DATA, "%s: too large", x_path);
        goto done;
    }
    if ((st = fl_npy_ids_to_i32(&y, classes > 0 ? classes : 0, labels_path))) goto done;
    if (x.ndim == 2 && (st = fl_npy_ids_to_i32(&x, 0, x_path))) goto done;
    int ncls = classes;
    if (ncls <= 0) {
        int32_t mx = -1;
        for (size_t i = 0; i < y.count; i++) {
            if (((int32_t *)y.data)[i] < 0) {
                st = fl_fail(FL_ERR_DATA, "%s: negative label %d at index %zu", labels_path,
                             ((int32_t *)y.data)[i], i);
                goto done;
            }
            if (((int32_t *)y.data)[i] > mx) mx = ((int32_t *)y.data)[i];
        }
        /* A stray huge label would size the head by it: infer at most FL_MAX_INFERRED_CLASSES. */
        if (mx >= FL_MAX_INFERRED_CLASSES) {
            st = fl_fail(FL_ERR_DATA, "%s: largest label %d implies more than %d classes; pass the class count "
                         "explicitly if that is meant", labels_path, mx, FL_MAX_INFERRED_CLASSES);
            goto done;
        }
        ncls = mx + 1;
    }
    if (ncls < 2 && y.count > 0) {
        st = fl_fail(FL_ERR_DATA, "%s: all labels are %d; a classifier needs at least 2 classes", labels_path, ncls - 1);
        goto done;
    }
    {
        char what[1100];
        snprintf(what, sizeof what, "%s", x_path);
        int dim = x.ndim == 3 ? (int)x.shape[2] : 0;
        if (x.ndim == 3 && dim == 0) {
            st = fl_fail(FL_ERR_DATA, "%s: feature size is 0", x_path);
            goto done;
        }
        st = make_classify((int)x.shape[0], (int)x.shape[1], dim, x.ndim == 3 ? x.data : NULL,
                           x.ndim == 2 ? x.data : NULL, y.data, ncls, what, out);
    }
done:
    fl_npy_free(&x);
    fl_npy_free(&y);
    return st;
}

fl_status fl_dataset_check_model(const fl_dataset *d, const fl_model *m, const char *what) {
    const fl_arch *a = &m->arch;
    if (d->kind == DS_CLASSIFY) {
        if (a->head != FL_HEAD_LAST_STEP)
            return fl_fail(FL_ERR_SHAPE, "%s is classification data but the model is not a classifier", what);
        if (d->classes > a->head_out)
            return fl_fail(FL_ERR_DATA, "%s has %d classes but the model predicts %d", what, d->classes, a->head_out);
        if (d->dim > 0 && (a->vocab > 0 || d->dim != a->input))
            return fl_fail(FL_ERR_SHAPE, "%s has %d features per step; the model takes %s %d", what, d->dim,
                           a->vocab > 0 ? "token ids, vocabulary" : "features of size",
                           a->vocab > 0 ? a->vocab : a->input);
        if (d->dim == 0 && a->vocab == 0)
            return fl_fail(FL_ERR_SHAPE, "%s holds token ids; the model takes features of size %d", what,
                           a->input);
        if (d->dim == 0 && d->max_id >= a->vocab)
            return fl_fail(FL_ERR_DATA, "%s holds token ids up to %d; the model's vocabulary is %d", what,
                           d->max_id, a->vocab);
    } else {
        if (a->head != FL_HEAD_PER_STEP || a->vocab == 0)
            return fl_fail(FL_ERR_SHAPE, "%s is a token stream but the model is not a language model", what);
        if (d->max_id >= a->vocab || d->max_id >= a->head_out)
            return fl_fail(FL_ERR_DATA, "%s holds token ids up to %d; the model's vocabulary is %d", what,
                           d->max_id, a->vocab < a->head_out ? a->vocab : a->head_out);
    }
    return FL_OK;
}
