/* The one data layer: every command turns its data options into an fl_dataset here.
 *
 * Formats (see train.h): `.npy` classification sets (features or ids + labels), `.npy` token ids
 * as a language-model stream, a UTF-8 corpus (tokenized with the model's vocabulary), and labelled
 * text (`label<TAB>text` per line) for a text classifier, whose class names travel with the
 * vocabulary in the model. Labelled lines become token-id rows (n, seq), left-padded with "<unk>"
 * (id 0) to the longest line so that the last step of every row is the line's last token, and keep
 * each line's length: training masks the padding (fl_dataset_gather moves the valid steps first).
 * Also: splitting a set in two (the planner's search / certify halves). */
#include "train_internal.h"

#include "npy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

fl_data_format fl_data_format_of(const fl_data_spec *s, int lm) {
    if (!s || !s->path) return FL_DATA_AUTO;
    if (s->format != FL_DATA_AUTO) return s->format;
    if (ends_with(s->path, ".npy") || ends_with(s->path, ".NPY")) return FL_DATA_NPY;
    return lm ? FL_DATA_TEXT : FL_DATA_LABELLED;
}

/* ------------------------------------------------------------ labelled text */

/* One non-blank line: label [lab, lab + nlab), text [txt, txt + ntxt). */
typedef struct lline {
    const char *lab, *txt;
    size_t nlab, ntxt;
    long line;
} lline;

/* Next non-blank line of buf[*pos..len) split at its first tab; false at the end. FL_ERR_DATA in
 * *st for a line without a tab, an empty label or an empty text. */
static bool next_line(const char *path, const char *buf, size_t len, size_t *pos, long *lineno, lline *out,
                      fl_status *st) {
    while (*pos < len) {
        size_t p = *pos, e = p;
        while (e < len && buf[e] != '\n') e++;
        *pos = e < len ? e + 1 : e;
        ++*lineno;
        size_t end = e;
        if (end > p && buf[end - 1] == '\r') end--;
        bool blank = true;
        for (size_t k = p; k < end && blank; k++) blank = buf[k] == ' ' || buf[k] == '\t';
        if (blank) continue;
        const char *tab = memchr(buf + p, '\t', end - p);
        if (!tab) {
            *st = fl_fail(FL_ERR_DATA, "%s:%ld: no tab (expected label<TAB>text)", path, *lineno);
            return false;
        }
        out->lab = buf + p;
        out->nlab = (size_t)(tab - (buf + p));
        out->txt = tab + 1;
        out->ntxt = end - (size_t)(tab + 1 - buf);
        out->line = *lineno;
        if (out->nlab == 0) {
            *st = fl_fail(FL_ERR_DATA, "%s:%ld: empty label", path, *lineno);
            return false;
        }
        return true;
    }
    return false;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Build the vocabulary (texts only, no "<eos>") and the sorted class names of a labelled file. */
static fl_status build_labelled_vocab(const char *path, fl_token_mode mode, int max_vocab, fl_vocab **out) {
    *out = NULL;
    char *buf, *texts = NULL;
    size_t len;
    fl_status st = fl_read_text_file(path, &buf, &len);
    if (st) return st;
    char **labels = NULL;
    int n_labels = 0, cap_labels = 0;
    texts = fl_malloc(len + 1); /* the texts joined by spaces: never longer than the file */
    size_t tn = 0, pos = 0;
    long lineno = 0;
    lline l;
    if (!texts) {
        st = fl_fail(FL_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    while (next_line(path, buf, len, &pos, &lineno, &l, &st)) {
        size_t tp = 0, n1;
        const char *s1;
        bool bad = false;
        if (!fl_text_next_token(l.txt, l.ntxt, &tp, mode, &s1, &n1, &bad) && !bad) {
            st = fl_fail(FL_ERR_DATA, "%s:%ld: empty text after the label", path, l.line);
            break;
        }
        memcpy(texts + tn, l.txt, l.ntxt);
        tn += l.ntxt;
        texts[tn++] = ' ';
        bool known = false;
        for (int i = 0; i < n_labels && !known; i++)
            known = strlen(labels[i]) == l.nlab && !memcmp(labels[i], l.lab, l.nlab);
        if (known) continue;
        if (n_labels == cap_labels) {
            int ncap = cap_labels ? 2 * cap_labels : 16;
            char **nl = fl_calloc((size_t)ncap, sizeof(char *));
            if (!nl) {
                st = fl_fail(FL_ERR_NOMEM, "%s: out of memory for labels", path);
                goto done;
            }
            if (n_labels) memcpy(nl, labels, (size_t)n_labels * sizeof(char *));
            fl_free(labels);
            labels = nl;
            cap_labels = ncap;
        }
        if (!(labels[n_labels] = fl_malloc(l.nlab + 1))) {
            st = fl_fail(FL_ERR_NOMEM, "%s: out of memory for labels", path);
            goto done;
        }
        memcpy(labels[n_labels], l.lab, l.nlab);
        labels[n_labels++][l.nlab] = '\0';
    }
    if (st) goto done;
    if (n_labels == 0) {
        st = fl_fail(FL_ERR_DATA, "%s: no labelled lines", path);
        goto done;
    }
    if (n_labels < 2) {
        st = fl_fail(FL_ERR_DATA, "%s: %d distinct label(s); a classifier needs at least 2", path, n_labels);
        goto done;
    }
    qsort(labels, (size_t)n_labels, sizeof(char *), cmp_str);
    if ((st = fl_vocab_build_buffer(texts, tn, path, mode, max_vocab, out))) goto done;
    if ((st = fl_vocab_set_labels(*out, labels, n_labels))) {
        fl_vocab_free(*out);
        *out = NULL;
    }
done:
    for (int i = 0; i < n_labels; i++) fl_free(labels[i]);
    fl_free(labels);
    fl_free(texts);
    fl_free(buf);
    return st;
}

static fl_status load_labelled(const char *path, const fl_vocab *v, fl_dataset **out) {
    *out = NULL;
    const int nl = fl_vocab_num_labels(v);
    if (nl < 2) return fl_fail(FL_ERR_FORMAT, "%s is labelled text but the model's vocabulary has no class names "
                               "(not a text classifier)", path);
    char *buf;
    size_t len;
    fl_status st = fl_read_text_file(path, &buf, &len);
    if (st) return st;
    /* One pass: every line's ids back to back (ids), its start (start[k]) and label. */
    size_t cap = 1024, n_ids = 0, pos = 0;
    int n = 0, cap_lines = 64, seq = 0;
    long lineno = 0;
    int32_t *ids = fl_malloc(cap * sizeof(int32_t)), *lab = fl_malloc((size_t)cap_lines * sizeof(int32_t));
    size_t *start = fl_malloc((size_t)(cap_lines + 1) * sizeof(size_t));
    int32_t *rows = NULL;
    lline l;
    if (!ids || !lab || !start) goto nomem;
    while (next_line(path, buf, len, &pos, &lineno, &l, &st)) {
        int id = -1;
        for (int i = 0; i < nl && id < 0; i++)
            if (strlen(fl_vocab_label(v, i)) == l.nlab && !memcmp(fl_vocab_label(v, i), l.lab, l.nlab)) id = i;
        if (id < 0) {
            st = fl_fail(FL_ERR_DATA, "%s:%ld: label '%.*s' is not one of the model's %d classes", path, l.line,
                         (int)(l.nlab < 64 ? l.nlab : 64), l.lab, nl);
            break;
        }
        if (n == cap_lines) {
            int32_t *nlab = fl_malloc((size_t)2 * cap_lines * sizeof(int32_t));
            size_t *ns = fl_malloc((size_t)(2 * cap_lines + 1) * sizeof(size_t));
            if (nlab) memcpy(nlab, lab, (size_t)n * sizeof(int32_t));
            if (ns) memcpy(ns, start, (size_t)n * sizeof(size_t));
            fl_free(lab), fl_free(start);
            lab = nlab, start = ns, cap_lines *= 2;
            if (!lab || !start) goto nomem;
        }
        lab[n] = id;
        start[n] = n_ids;
        size_t tp = 0, tn;
        const char *s;
        bool bad = false;
        while (fl_text_next_token(l.txt, l.ntxt, &tp, fl_vocab_mode(v), &s, &tn, &bad)) {
            if (n_ids == cap) {
                int32_t *ni = fl_malloc(2 * cap * sizeof(int32_t));
                if (ni) memcpy(ni, ids, n_ids * sizeof(int32_t));
                fl_free(ids);
                ids = ni, cap *= 2;
                if (!ids) goto nomem;
            }
            int32_t id2 = fl_vocab_find(v, s, tn);
            ids[n_ids++] = id2 < 0 ? 0 : id2;
        }
        if (bad) {
            st = fl_fail(FL_ERR_DATA, "%s:%ld: invalid UTF-8", path, l.line);
            break;
        }
        if (n_ids == start[n]) {
            st = fl_fail(FL_ERR_DATA, "%s:%ld: empty text after the label", path, l.line);
            break;
        }
        if (n_ids - start[n] > (size_t)INT32_MAX / 2) {
            st = fl_fail(FL_ERR_DATA, "%s:%ld: line too long", path, l.line);
            break;
        }
        if ((int)(n_ids - start[n]) > seq) seq = (int)(n_ids - start[n]);
        if (n == INT32_MAX / 2) {
            st = fl_fail(FL_ERR_DATA, "%s: too many lines", path);
            break;
        }
        n++;
    }
    if (st) goto done;
    if (n == 0) {
        st = fl_fail(FL_ERR_DATA, "%s: no labelled lines", path);
        goto done;
    }
    start[n] = n_ids;
    size_t cells;
    if (!fl_mul_ok((size_t)n, (size_t)seq, &cells) || cells > ((size_t)1 << 34)) {
        st = fl_fail(FL_ERR_DATA, "%s: %d lines padded to %d tokens is too large", path, n, seq);
        goto done;
    }
    if (!(rows = fl_calloc(cells, sizeof(int32_t)))) goto nomem; /* 0 = "<unk>": the left padding */
    for (int k = 0; k < n; k++) {
        size_t m = start[k + 1] - start[k];
        memcpy(rows + (size_t)k * seq + (seq - m), ids + start[k], m * sizeof(int32_t));
    }
    st = fl_dataset_classify(n, seq, 0, NULL, rows, lab, nl, out);
    if (!st) { /* each line's length; its tokens are the last of its row */
        for (int k = 0; k < n; k++) lab[k] = (int32_t)(start[k + 1] - start[k]);
        if (!(st = fl_dataset_set_lengths(*out, lab))) (*out)->lens_left = true;
        else {
            fl_dataset_free(*out);
            *out = NULL;
        }
    }
    goto done;
nomem:
    st = fl_fail(FL_ERR_NOMEM, "%s: out of memory reading labelled text", path);
done:
    fl_free(rows);
    fl_free(ids);
    fl_free(lab);
    fl_free(start);
    fl_free(buf);
    return st;
}

/* ------------------------------------------------------------ .npy token stream */

static fl_status load_npy_tokens(const char *path, int vocab, fl_dataset **out) {
    fl_npy a = {0};
    fl_status st = fl_npy_load(path, &a);
    if (st) return st;
    if (a.dtype == 'f') st = fl_fail(FL_ERR_DATA, "%s: a language model reads integer token ids (int32/int64), "
                                     "got float32", path);
    else if (a.ndim != 1 && a.ndim != 2)
        st = fl_fail(FL_ERR_DATA, "%s: token ids must be (N) or (N, T), got %d dimension(s)", path, a.ndim);
    else if (!(st = fl_npy_ids_to_i32(&a, vocab, path)))
        st = fl_dataset_lm(a.data, a.count, vocab, out);
    fl_npy_free(&a);
    return st;
}

/* ------------------------------------------------------------ .npy lengths */

/* Lengths (N) int32/int64 of the sequences of d, valid steps first (pack_padded_sequence). */
static fl_status load_npy_lengths(const char *path, fl_dataset *d) {
    fl_npy a = {0};
    fl_status st = fl_npy_load(path, &a);
    if (st) return st;
    if (a.ndim != 1 || a.dtype == 'f')
        st = fl_fail(FL_ERR_DATA, "%s: lengths must be a 1-D int32/int64 array", path);
    else if ((size_t)a.shape[0] != d->n)
        st = fl_fail(FL_ERR_DATA, "%s has %lld lengths but the data has %zu sequences", path, (long long)a.shape[0],
                     d->n);
    else if (!(st = fl_npy_ids_to_i32(&a, 0, path)) && (st = fl_dataset_set_lengths(d, a.data))) {
        char why[256];
        snprintf(why, sizeof why, "%s", fl_last_error());
        st = fl_fail(st, "%s: %s", path, why);
    }
    fl_npy_free(&a);
    return st;
}

/* ------------------------------------------------------------ entry points */

fl_status fl_data_load_with(const fl_data_spec *s, int lm, const fl_vocab *v, int classes, fl_dataset **out) {
    if (!s || !s->path || !out) return fl_fail(FL_ERR_ARG, "NULL argument to fl_data_load_with");
    *out = NULL;
    if (s->lengths && fl_data_format_of(s, lm) != FL_DATA_NPY)
        return fl_fail(FL_ERR_ARG, "%s: lengths (%s) go with a .npy classification set", s->path, s->lengths);
    switch (fl_data_format_of(s, lm)) {
    case FL_DATA_NPY:
        if (lm) {
            if (s->labels || s->lengths)
                return fl_fail(FL_ERR_ARG, "%s: a language model takes no %s", s->path, s->labels ? "labels" : "lengths");
            if (!v && classes < 2)
                return fl_fail(FL_ERR_ARG, "%s: token ids need the vocabulary size", s->path);
            return load_npy_tokens(s->path, v ? fl_vocab_size(v) : classes, out);
        }
        if (!s->labels)
            return fl_fail(FL_ERR_SHAPE, "%s: a .npy classification set needs its labels (.npy, N)", s->path);
        fl_status st = fl_dataset_load_npy(s->path, s->labels, classes, out);
        if (!st && s->lengths && (st = load_npy_lengths(s->lengths, *out))) {
            fl_dataset_free(*out);
            *out = NULL;
        }
        return st;
    case FL_DATA_TEXT:
        if (!lm) return fl_fail(FL_ERR_SHAPE, "%s: a text corpus is for a language model; a classifier reads "
                                "labelled text (label<TAB>text per line)", s->path);
        if (!v) return fl_fail(FL_ERR_FORMAT, "%s: text needs a vocabulary (the model has none)", s->path);
        return fl_dataset_load_text(s->path, v, out);
    case FL_DATA_LABELLED:
        if (lm) return fl_fail(FL_ERR_SHAPE, "%s: labelled text is for a classifier, not a language model", s->path);
        if (s->labels || s->lengths)
            return fl_fail(FL_ERR_ARG, "%s: labelled text carries its %s; no --%s file", s->path,
                           s->labels ? "labels" : "lengths", s->labels ? "labels" : "lengths");
        if (!v) return fl_fail(FL_ERR_FORMAT, "%s: labelled text needs a vocabulary (the model has none)", s->path);
        return load_labelled(s->path, v, out);
    case FL_DATA_AUTO: break;
    }
    return fl_fail(FL_ERR_ARG, "unknown data format");
}

fl_status fl_data_load(const fl_data_spec *s, const fl_model *m, fl_dataset **out) {
    if (!s || !s->path || !m || !out) return fl_fail(FL_ERR_ARG, "NULL argument to fl_data_load");
    *out = NULL;
    const fl_arch *a = fl_model_arch(m);
    if (a->head == FL_HEAD_NONE) return fl_fail(FL_ERR_SHAPE, "the model has no head: no task to read %s for", s->path);
    int lm = a->head == FL_HEAD_PER_STEP;
    if (lm && a->vocab == 0)
        return fl_fail(FL_ERR_SHAPE, "the model has a per-step head on features: not a language model (%s)", s->path);
    fl_vocab *v = NULL;
    fl_status st = FL_OK;
    fl_data_format f = fl_data_format_of(s, lm);
    if (f != FL_DATA_NPY) {
        if (!m->tokenizer)
            return fl_fail(FL_ERR_FORMAT, "%s is text but the model has no vocabulary (trained on .npy data?)",
                           s->path);
        if ((st = fl_vocab_from_model(m, &v))) return st;
    }
    st = fl_data_load_with(s, lm, v, lm ? a->vocab : a->head_out, out);
    fl_vocab_free(v);
    return st;
}

fl_status fl_data_load_new(const fl_data_spec *s, int lm, fl_token_mode mode, int max_vocab, int classes,
                           fl_vocab **vocab, fl_dataset **out) {
    if (!s || !s->path || !vocab || !out) return fl_fail(FL_ERR_ARG, "NULL argument to fl_data_load_new");
    *vocab = NULL;
    *out = NULL;
    fl_data_format f = fl_data_format_of(s, lm);
    fl_status st = FL_OK;
    if (f == FL_DATA_NPY && lm && !s->labels) {
        /* ids without a vocabulary: the largest id + 1 bounds it */
        fl_npy a = {0};
        if ((st = fl_npy_load(s->path, &a))) return st;
        int64_t mx = 1;
        if (a.dtype != 'f' && !(st = fl_npy_ids_to_i32(&a, 0, s->path)))
            for (size_t i = 0; i < a.count; i++)
                if (((int32_t *)a.data)[i] > mx) mx = ((int32_t *)a.data)[i];
        fl_npy_free(&a);
        if (st) return st;
        return fl_data_load_with(s, lm, NULL, classes > 0 ? classes : (int)(mx + 1), out);
    }
    if (f == FL_DATA_TEXT && lm) st = fl_vocab_build(s->path, mode, max_vocab, vocab);
    else if (f == FL_DATA_LABELLED && !lm) st = build_labelled_vocab(s->path, mode, max_vocab, vocab);
    if (st) return st;
    if ((st = fl_data_load_with(s, lm, *vocab, classes, out))) {
        fl_vocab_free(*vocab);
        *vocab = NULL;
    }
    return st;
}

/* ------------------------------------------------------------ split and views */

fl_status fl_dataset_split(const fl_dataset *d, double fraction, uint64_t seed, fl_dataset **first,
                           fl_dataset **second) {
    if (!d || !first || !second) return fl_fail(FL_ERR_ARG, "NULL argument to fl_dataset_split");
    *first = *second = NULL;
    if (!(fraction > 0 && fraction < 1)) return fl_fail(FL_ERR_ARG, "split fraction %g outside (0, 1)", fraction);
    if (d->kind == DS_LM) {
        size_t k = (size_t)((double)d->n * fraction + 0.5), n1 = d->n - k;
        if (n1 < 2 || k < 2)
            return fl_fail(FL_ERR_DATA, "%zu tokens cannot be split %g / %g with 2 or more in each part", d->n,
                           1 - fraction, fraction);
        fl_status st = fl_dataset_lm(d->tokens, n1, d->classes, first);
        if (!st && (st = fl_dataset_lm(d->tokens + n1, k, d->classes, second))) {
            fl_dataset_free(*first);
            *first = NULL;
        }
        return st;
    }
    size_t k = (size_t)((double)d->n * fraction + 0.5), n1 = d->n - k;
    if (n1 < 1 || k < 1)
        return fl_fail(FL_ERR_DATA, "%zu sequences cannot be split %g / %g with one or more in each part", d->n,
                       1 - fraction, fraction);
    const size_t row = (size_t)d->seq * (d->dim > 0 ? (size_t)d->dim : 1);
    uint32_t *perm = fl_malloc(d->n * sizeof(uint32_t));
    int32_t *lab = fl_malloc(d->n * sizeof(int32_t));
    void *cells = fl_malloc(d->n * row * (d->dim > 0 ? sizeof(float) : sizeof(int32_t)));
    fl_status st = FL_OK;
    if (!perm || !lab || !cells) {
        st = fl_fail(FL_ERR_NOMEM, "out of memory splitting %zu sequences", d->n);
        goto done;
    }
    fl_rng r;
    fl_rng_seed(&r, seed);
    for (size_t i = 0; i < d->n; i++) perm[i] = (uint32_t)i;
    for (size_t i = d->n - 1; i > 0; i--) { /* Fisher-Yates */
        size_t j = (size_t)(fl_rng_next(&r) % (uint64_t)(i + 1));
        uint32_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    for (size_t i = 0; i < d->n; i++) {
        lab[i] = d->labels[perm[i]];
        if (d->dim > 0) memcpy((float *)cells + i * row, d->x + perm[i] * row, row * sizeof(float));
        else memcpy((int32_t *)cells + i * row, d->ids + perm[i] * row, row * sizeof(int32_t));
    }
    const float *x = d->dim > 0 ? cells : NULL;
    const int32_t *ids = d->dim > 0 ? NULL : cells;
    st = fl_dataset_classify((int)n1, d->seq, d->dim, x, ids, lab, d->classes, first);
    if (!st)
        st = fl_dataset_classify((int)k, d->seq, d->dim, x ? x + n1 * row : NULL, ids ? ids + n1 * row : NULL,
                                 lab + n1, d->classes, second);
    if (!st && d->lens) { /* the lengths follow their sequences */
        for (size_t i = 0; i < d->n; i++) lab[i] = d->lens[perm[i]];
        st = fl_dataset_set_lengths(*first, lab);
        if (!st) st = fl_dataset_set_lengths(*second, lab + n1);
        (*first)->lens_left = (*second)->lens_left = d->lens_left;
    }
    if (st) {
        fl_dataset_free(*first);
        fl_dataset_free(*second);
        *first = *second = NULL;
    }
done:
    fl_free(perm);
    fl_free(lab);
    fl_free(cells);
    return st;
}

const float *fl_dataset_features(const fl_dataset *d) { return d ? d->x : NULL; }
const int32_t *fl_dataset_ids(const fl_dataset *d) { return d ? d->ids : NULL; }
const int32_t *fl_dataset_labels(const fl_dataset *d) { return d ? d->labels : NULL; }
const int32_t *fl_dataset_tokens(const fl_dataset *d) { return d ? d->tokens : NULL; }
