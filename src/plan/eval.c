/* Judging a candidate model on one part of the accuracy data: accuracy of a classifier, perplexity
 * of a language model read as one stream (state carried across windows, as `fastlstm eval` reads
 * text), or the relative deviation of its outputs from the dense model's; the paired statistics
 * that certify a budget; and timing a model for real.
 *
 * Every metric is kept per example (sequence correct, or a token's log-loss), so that a candidate's
 * loss against the reference is a mean of paired differences with a standard error. */
#include "plan_internal.h"
#include "profile_internal.h" /* fl_profile_paired_scale */

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHUNK 32  /* sequences per session run */
#define WINDOW 64 /* language model: tokens per session run (the state is carried across) */
#define BLOCK 35  /* language model: tokens per block of the standard error */

struct fl_eval {
    const fl_model *ref;
    fl_plan_metric kind;
    double budget, ref_metric;
    int n, seq, threads;    /* sequences and their length (classifier, deviation) */
    const float *x;         /* (n, seq, D) features, borrowed or owned_x */
    const int32_t *tokens;  /* (n, seq) ids, borrowed or owned_tok */
    const int32_t *labels;  /* (n) borrowed or owned_labels */
    const int32_t *lens;    /* (n) valid length of each sequence (borrowed), or NULL: all seq */
    int lens_left;          /* 1: a row's valid steps are its last lens[i] (shifted into row_buf) */
    void *row_buf;          /* lens_left: (CHUNK, seq, D) floats or (CHUNK, seq) ids, valid steps first */
    const int32_t *stream;  /* language model: ntok token ids read as one text */
    size_t ntok;
    float *owned_x;
    int32_t *owned_tok, *owned_labels;
    float *y_ref;           /* deviation: (n, per-sequence outputs) of the reference */
    size_t out_per_seq;     /* floats fl_session_run writes per sequence */
    float *y;               /* (CHUNK, out_per_seq) or (WINDOW, V) */
    double *ref_per, *per;  /* per example: correct (0/1) or a token's log-loss; reference, candidate */
};

fl_plan_metric fl_eval_metric_kind(const fl_eval *e) { return e->kind; }
double fl_eval_budget(const fl_eval *e) { return e->budget; }
double fl_eval_ref_metric(const fl_eval *e) { return e->ref_metric; }
size_t fl_eval_count(const fl_eval *e) { return e->kind == FL_METRIC_PERPLEXITY ? e->ntok - 1 : (size_t)e->n; }

void fl_eval_free(fl_eval *e) {
    if (!e) return;
    fl_free(e->owned_x);
    fl_free(e->owned_tok);
    fl_free(e->owned_labels);
    fl_free(e->row_buf);
    fl_free(e->y_ref);
    fl_free(e->y);
    fl_free(e->ref_per);
    fl_free(e->per);
    fl_free(e);
}

/* Left-padded rows (valid steps last) of io's chunk copied to e->row_buf with the valid steps
 * first, as fl_run_io.lengths reads them; io then points there. The steps past a length get zero
 * features or the padding id (the session checks them, and never reads them). */
static void shift_rows(fl_eval *e, fl_run_io *io, int dim) {
    const size_t esz = io->x ? sizeof(float) : sizeof(int32_t), row = (size_t)e->seq * dim * esz;
    const char *src = io->x ? (const char *)io->x : (const char *)io->tokens;
    const int32_t pad = e->ref->arch.has_padding ? e->ref->arch.padding_idx : 0;
    char *dst = e->row_buf;
    for (int b = 0; b < io->batch; b++) {
        size_t skip = (size_t)(e->seq - io->lengths[b]) * dim * esz;
        memcpy(dst + b * row, src + b * row + skip, row - skip);
        if (io->x) memset(dst + b * row + (row - skip), 0, skip);
        else
            for (int t = io->lengths[b]; t < e->seq; t++) ((int32_t *)(dst + b * row))[t] = pad;
    }
    if (io->x) io->x = (const float *)dst;
    else io->tokens = (const int32_t *)dst;
}

/* Run model m over all n sequences (each with its length when the data has them); for each chunk
 * call fn with the outputs. */
typedef void (*chunk_fn)(fl_eval *e, int first, int count, const float *y, double *acc);

static fl_status run_all(fl_eval *e, const fl_model *m, chunk_fn fn, double *acc) {
    const fl_arch *a = fl_model_arch(m);
    fl_session_opts so = fl_session_opts_default();
    so.max_batch = e->n < CHUNK ? e->n : CHUNK;
    so.max_seq = e->seq;
    so.threads = e->threads;
    fl_session *s;
    fl_status st = fl_session_create(m, &so, &s);
    if (st) return st;
    for (int first = 0; first < e->n && !st; first += CHUNK) {
        int count = e->n - first < CHUNK ? e->n - first : CHUNK;
        fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = count, .seq = e->seq, .y = e->y};
        if (a->vocab > 0) io.tokens = e->tokens + (size_t)first * e->seq;
        else io.x = e->x + (size_t)first * e->seq * a->input;
        if (e->lens) {
            io.lengths = e->lens + first;
            if (e->lens_left) shift_rows(e, &io, a->vocab > 0 ? 1 : a->input);
        }
        st = fl_session_run(s, &io);
        if (!st) fn(e, first, count, e->y, acc);
    }
    fl_session_free(s);
    return st;
}

static int argmax(const float *row, int C) {
    int best = 0;
    for (int k = 1; k < C; k++)
        if (row[k] > row[best]) best = k;
    return best;
}

/* per[i] = 1 when sequence i is classified right; acc[0] += correct predictions. */
static void chunk_accuracy(fl_eval *e, int first, int count, const float *y, double *acc) {
    const int C = e->ref->arch.head_out;
    for (int b = 0; b < count; b++) {
        double ok = argmax(y + (size_t)b * C, C) == e->labels[first + b];
        e->per[first + b] = ok;
        acc[0] += ok;
    }
}

/* Record the argmax of each sequence as its label (dense model's own predictions). */
static void chunk_predict(fl_eval *e, int first, int count, const float *y, double *acc) {
    const int C = e->ref->arch.head_out;
    for (int b = 0; b < count; b++) e->owned_labels[first + b] = argmax(y + (size_t)b * C, C);
}

static void chunk_store(fl_eval *e, int first, int count, const float *y, double *acc) {
    memcpy(e->y_ref + (size_t)first * e->out_per_seq, y, (size_t)count * e->out_per_seq * sizeof(float));
}

/* acc[0] += ||y - y_ref||^2, acc[1] += ||y_ref||^2. */
static void chunk_dev(fl_eval *e, int first, int count, const float *y, double *acc) {
    const float *r = e->y_ref + (size_t)first * e->out_per_seq;
    for (size_t i = 0; i < (size_t)count * e->out_per_seq; i++) {
        double d = (double)y[i] - r[i];
        acc[0] += d * d;
        acc[1] += (double)r[i] * r[i];
    }
}

/* Language model over the stream as one text: windows of WINDOW tokens, the state carried from
 * each to the next. per[t] = log-loss of token t + 1 given tokens 0..t; *nll = their sum. */
static fl_status run_stream(fl_eval *e, const fl_model *m, double *nll) {
    const fl_arch *a = fl_model_arch(m);
    const int V = a->head_out;
    fl_session_opts so = fl_session_opts_default();
    so.max_batch = 1;
    so.max_seq = WINDOW;
    so.threads = e->threads;
    fl_session *s;
    fl_status st = fl_session_create(m, &so, &s);
    if (st) return st;
    size_t state = (size_t)a->layers * a->hidden;
    float *h = fl_calloc(2 * state, sizeof(float)), *c = h ? h + state : NULL;
    if (!h) st = fl_fail(FL_ERR_NOMEM, "out of memory for the language-model state");
    *nll = 0;
    const size_t targets = e->ntok - 1;
    for (size_t pos = 0; pos < targets && !st; pos += WINDOW) {
        int T = targets - pos < WINDOW ? (int)(targets - pos) : WINDOW;
        // inputs stream[pos, pos + T), targets stream[pos + 1, pos + T + 1)
        fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = 1, .seq = T, .tokens = e->stream + pos,
                        .h0 = h, .c0 = c, .hn = h, .cn = c, .y = e->y};
        if ((st = fl_session_run(s, &io))) break;
        for (int t = 0; t < T; t++) {
            const float *row = e->y + (size_t)t * V;
            double mx = row[0], sum = 0;
            for (int k = 1; k < V; k++)
                if (row[k] > mx) mx = row[k];
            for (int k = 0; k < V; k++) sum += exp((double)row[k] - mx);
            double l = log(sum) + mx - (double)row[e->stream[pos + t + 1]];
            e->per[pos + t] = l;
            *nll += l;
        }
    }
    fl_free(h);
    fl_session_free(s);
    return st;
}

/* Metric of m; e->per holds its per-example values after (accuracy, perplexity). */
static fl_status measure(fl_eval *e, const fl_model *m, double *metric) {
    double acc[2] = {0, 0};
    fl_status st;
    switch (e->kind) {
    case FL_METRIC_ACCURACY:
        if ((st = run_all(e, m, chunk_accuracy, acc))) return st;
        *metric = 100.0 * acc[0] / e->n;
        return FL_OK;
    case FL_METRIC_PERPLEXITY:
        if ((st = run_stream(e, m, &acc[0]))) return st;
        *metric = exp(acc[0] / (double)(e->ntok - 1));
        return FL_OK;
    case FL_METRIC_DEVIATION:
        if ((st = run_all(e, m, chunk_dev, acc))) return st;
        *metric = acc[1] > 0 ? sqrt(acc[0] / acc[1]) : (acc[0] > 0 ? INFINITY : 0.0);
        return FL_OK;
    }
    return fl_fail(FL_ERR_ARG, "unknown metric");
}

fl_status fl_eval_run(fl_eval *e, const fl_model *c, double *metric, double *loss) {
    fl_status st = measure(e, c, metric);
    if (st) return st;
    switch (e->kind) {
    case FL_METRIC_ACCURACY: *loss = e->ref_metric - *metric; break;
    case FL_METRIC_PERPLEXITY: *loss = *metric / e->ref_metric - 1.0; break;
    case FL_METRIC_DEVIATION: *loss = *metric; break;
    }
    return FL_OK;
}

double fl_normal_quantile(double p) {
    /* Bisection on the normal CDF 0.5 * erfc(-x / sqrt 2): 80 halvings of [-40, 40]. */
    double lo = -40, hi = 40;
    for (int i = 0; i < 80; i++) {
        double mid = 0.5 * (lo + hi);
        if (0.5 * erfc(-mid / sqrt(2.0)) < p) lo = mid;
        else hi = mid;
    }
    return 0.5 * (lo + hi);
}

/* Mean and standard error of the mean of v[0..n) (se 0 for n < 2). */
static void mean_se(const double *v, size_t n, double *mean, double *se) {
    double s = 0, q = 0;
    for (size_t i = 0; i < n; i++) s += v[i];
    *mean = n ? s / (double)n : 0;
    for (size_t i = 0; i < n; i++) q += (v[i] - *mean) * (v[i] - *mean);
    *se = n > 1 ? sqrt(q / (double)(n - 1) / (double)n) : 0;
}

fl_status fl_eval_certify(fl_eval *e, const fl_model *c, double z, fl_eval_cert *out) {
    if (e->kind == FL_METRIC_DEVIATION) return fl_fail(FL_ERR_ARG, "the deviation metric is not certified");
    fl_status st = measure(e, c, &out->metric);
    if (st) return st;
    if (e->kind == FL_METRIC_ACCURACY) {
        // paired differences in points: 100 * (reference correct - candidate correct)
        for (int i = 0; i < e->n; i++) e->per[i] = 100.0 * (e->ref_per[i] - e->per[i]);
        mean_se(e->per, (size_t)e->n, &out->loss, &out->se);
        out->bound = out->loss + z * out->se;
        return FL_OK;
    }
    // per-token log-loss differences, averaged over blocks of BLOCK tokens (neighbouring tokens
    // are correlated; block means much less so)
    const size_t T = e->ntok - 1, nb = T / BLOCK;
    double total = 0;
    for (size_t t = 0; t < T; t++) total += e->per[t] - e->ref_per[t];
    double mean = total / (double)T, bmean, se;
    if (nb >= 2) {
        for (size_t b = 0; b < nb; b++) {
            double s = 0;
            for (size_t t = b * BLOCK; t < (b + 1) * BLOCK; t++) s += e->per[t] - e->ref_per[t];
            e->per[b] = s / BLOCK;
        }
        mean_se(e->per, nb, &bmean, &se);
    } else {
        for (size_t t = 0; t < T; t++) e->per[t] -= e->ref_per[t];
        mean_se(e->per, T, &bmean, &se);
    }
    out->loss = exp(mean) - 1.0;
    out->se = exp(mean) * se;
    out->bound = exp(mean + z * se) - 1.0;
    return FL_OK;
}

/* Check o->data against the model; pick the metric. */
static fl_status check_data(fl_eval *e, const fl_model *m, const fl_plan_data *d) {
    const fl_arch *a = fl_model_arch(m);
    if (d->n < 1 || d->seq < 1)
        return fl_fail(FL_ERR_DATA, "validation data is empty (%d sequences of length %d)", d->n, d->seq);
    if ((d->x != NULL) == (d->tokens != NULL))
        return fl_fail(FL_ERR_ARG, "validation data needs exactly one of features and tokens");
    if (a->vocab > 0 && !d->tokens)
        return fl_fail(FL_ERR_SHAPE, "the model takes token ids (vocab %d) but the data holds features",
                       a->vocab);
    if (a->vocab == 0 && !d->x)
        return fl_fail(FL_ERR_SHAPE, "the model takes %d features per step but the data holds token ids",
                       a->input);
    if (d->x && d->dim != a->input)
        return fl_fail(FL_ERR_SHAPE, "validation data has %d features per step, the model expects %d",
                       d->dim, a->input);
    if ((size_t)d->n * (size_t)d->seq > ((size_t)1 << 40))
        return fl_fail(FL_ERR_SHAPE, "validation data too large");
    if (d->x) {
        size_t cnt = (size_t)d->n * d->seq * d->dim;
        for (size_t i = 0; i < cnt; i++)
            if (!isfinite(d->x[i]))
                return fl_fail(FL_ERR_NONFINITE, "validation data: non-finite feature at index %zu", i);
    } else {
        size_t cnt = (size_t)d->n * d->seq;
        for (size_t i = 0; i < cnt; i++)
            if (d->tokens[i] < 0 || d->tokens[i] >= a->vocab)
                return fl_fail(FL_ERR_DATA, "validation data: token %d at index %zu outside [0, %d)",
                               d->tokens[i], i, a->vocab);
    }
    bool classifier = a->head == FL_HEAD_LAST_STEP;
    bool lm = a->vocab > 0 && a->head == FL_HEAD_PER_STEP && a->head_out == a->vocab;
    if (d->labels && !classifier)
        return fl_fail(FL_ERR_ARG, "labels given but the model is not a last-step classifier");
    if (d->labels) {
        if (d->n_labels != d->n)
            return fl_fail(FL_ERR_SHAPE, "%d labels for %d validation sequences", d->n_labels, d->n);
        for (int i = 0; i < d->n; i++)
            if (d->labels[i] < 0 || d->labels[i] >= a->head_out)
                return fl_fail(FL_ERR_DATA, "label %d at index %d outside [0, %d)", d->labels[i], i,
                               a->head_out);
    }
    if (d->lengths && lm)
        return fl_fail(FL_ERR_ARG, "a language model reads its validation data as one stream: no lengths");
    for (int i = 0; d->lengths && i < d->n; i++)
        if (d->lengths[i] < 1 || d->lengths[i] > d->seq)
            return fl_fail(FL_ERR_DATA, "validation data: length %d of sequence %d outside [1, %d]", d->lengths[i],
                           i, d->seq);
    if (lm && (size_t)d->n * d->seq < 2)
        return fl_fail(FL_ERR_DATA, "language-model data needs >= 2 tokens, got %d", d->n * d->seq);
    e->kind = classifier ? FL_METRIC_ACCURACY : lm ? FL_METRIC_PERPLEXITY : FL_METRIC_DEVIATION;
    e->n = d->n;
    e->seq = d->seq;
    e->x = d->x;
    e->tokens = d->tokens;
    e->labels = d->labels;
    e->lens = d->lengths;
    e->lens_left = d->lengths && d->left_padded;
    if (lm) { /* rows (n, seq) read in order as one text */
        e->stream = d->tokens;
        e->ntok = (size_t)d->n * d->seq;
    }
    return FL_OK;
}

/* Random inputs for the deviation metric. */
static fl_status make_random(fl_eval *e, const fl_model *m, const fl_plan_opts *o) {
    const fl_arch *a = fl_model_arch(m);
    fl_rng r;
    fl_rng_seed(&r, o->seed ^ 0x5eedu);
    e->kind = FL_METRIC_DEVIATION;
    e->n = o->dev_samples;
    e->seq = o->seq < 32 ? o->seq : 32;
    size_t cnt = (size_t)e->n * e->seq;
    if (a->vocab > 0) {
        e->owned_tok = fl_malloc(cnt * sizeof(int32_t));
        if (!e->owned_tok) return fl_fail(FL_ERR_NOMEM, "out of memory for random inputs");
        for (size_t i = 0; i < cnt; i++) e->owned_tok[i] = (int32_t)(fl_rng_next(&r) % (uint64_t)a->vocab);
        e->tokens = e->owned_tok;
    } else {
        e->owned_x = fl_malloc(cnt * a->input * sizeof(float));
        if (!e->owned_x) return fl_fail(FL_ERR_NOMEM, "out of memory for random inputs");
        for (size_t i = 0; i < cnt * a->input; i++) e->owned_x[i] = (float)fl_rng_normal(&r);
        e->x = e->owned_x;
    }
    return FL_OK;
}

fl_status fl_plan_data_of(const fl_dataset *d, fl_plan_data *out) {
    memset(out, 0, sizeof *out);
    const int32_t *stream = fl_dataset_tokens(d);
    if (stream) {
        if (fl_dataset_size(d) > ((size_t)1 << 30))
            return fl_fail(FL_ERR_DATA, "accuracy data: %zu tokens is too many", fl_dataset_size(d));
        *out = (fl_plan_data){.n = 1, .seq = (int)fl_dataset_size(d), .tokens = stream};
        return FL_OK;
    }
    if (fl_dataset_size(d) > ((size_t)1 << 30))
        return fl_fail(FL_ERR_DATA, "accuracy data: too many sequences");
    int left = 0;
    const int32_t *lens = fl_dataset_lengths(d, &left);
    *out = (fl_plan_data){.n = (int)fl_dataset_size(d), .seq = fl_dataset_seq(d), .dim = fl_dataset_dim(d),
                          .x = fl_dataset_features(d), .tokens = fl_dataset_ids(d),
                          .labels = fl_dataset_labels(d), .n_labels = (int)fl_dataset_size(d),
                          .lengths = lens, .left_padded = lens ? left : 0};
    return FL_OK;
}

fl_status fl_plan_data_split(const fl_plan_data *d, bool stream, double fraction, uint64_t seed,
                             fl_plan_data *first, fl_plan_data *second, void **owned) {
    *owned = NULL;
    if (stream) { /* the tail of the text, as fl_dataset_split */
        size_t n = (size_t)d->n * d->seq, k = (size_t)((double)n * fraction + 0.5), n1 = n - k;
        if (n1 < 2 || k < 2)
            return fl_fail(FL_ERR_DATA, "%zu tokens cannot be split into search and certify parts (fraction %g) "
                           "with 2 or more each", n, fraction);
        *first = (fl_plan_data){.n = 1, .seq = (int)n1, .tokens = d->tokens};
        *second = (fl_plan_data){.n = 1, .seq = (int)k, .tokens = d->tokens + n1};
        return FL_OK;
    }
    const size_t n = (size_t)d->n, k = (size_t)((double)n * fraction + 0.5), n1 = n - k;
    if (n1 < 1 || k < 1)
        return fl_fail(FL_ERR_DATA, "%zu sequences cannot be split into search and certify parts (fraction %g)", n,
                       fraction);
    const size_t row = (size_t)d->seq * (d->x ? (size_t)d->dim : 1), esz = d->x ? sizeof(float) : sizeof(int32_t);
    size_t bytes = n * sizeof(uint32_t) + n * row * esz + (d->labels ? n * sizeof(int32_t) : 0) +
                   (d->lengths ? n * sizeof(int32_t) : 0);
    char *buf = fl_malloc(bytes);
    if (!buf) return fl_fail(FL_ERR_NOMEM, "out of memory splitting the validation data");
    uint32_t *perm = (uint32_t *)buf;
    char *cells = buf + n * sizeof(uint32_t);
    int32_t *lab = d->labels ? (int32_t *)(cells + n * row * esz) : NULL;
    int32_t *lens = d->lengths ? (int32_t *)(cells + n * row * esz) + (d->labels ? n : 0) : NULL;
    fl_rng r; /* the permutation of fl_dataset_split */
    fl_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) perm[i] = (uint32_t)i;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)(fl_rng_next(&r) % (uint64_t)(i + 1));
        uint32_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    const char *src = d->x ? (const char *)d->x : (const char *)d->tokens;
    for (size_t i = 0; i < n; i++) {
        memcpy(cells + i * row * esz, src + perm[i] * row * esz, row * esz);
        if (lab) lab[i] = d->labels[perm[i]];
        if (lens) lens[i] = d->lengths[perm[i]]; /* each sequence keeps its length */
    }
    *first = *d;
    *second = *d;
    first->n = first->n_labels = (int)n1;
    second->n = second->n_labels = (int)k;
    if (d->x) first->x = (const float *)cells, second->x = (const float *)cells + n1 * row;
    else first->tokens = (const int32_t *)cells, second->tokens = (const int32_t *)cells + n1 * row;
    if (lab) first->labels = lab, second->labels = lab + n1;
    if (lens) first->lengths = lens, second->lengths = lens + n1;
    if (!d->labels) first->n_labels = second->n_labels = 0;
    *owned = buf;
    return FL_OK;
}

fl_status fl_eval_create(const fl_model *ref, const fl_plan_opts *o, const fl_plan_data *data, fl_eval **out) {
    *out = NULL;
    fl_eval *e = fl_calloc(1, sizeof *e);
    if (!e) return fl_fail(FL_ERR_NOMEM, "out of memory creating an evaluator");
    e->ref = ref;
    e->threads = o->threads;
    fl_status st = data ? check_data(e, ref, data) : make_random(e, ref, o);
    if (st) goto fail;
    if (e->kind == FL_METRIC_DEVIATION) {
        e->budget = data && !isnan(o->max_loss) ? o->max_loss : o->max_dev;
    } else if (isnan(o->max_loss)) {
        e->budget = e->kind == FL_METRIC_ACCURACY ? 1.0 : 0.05;
    } else {
        e->budget = o->max_loss;
    }
    const fl_arch *a = fl_model_arch(ref);
    size_t n_per = e->kind == FL_METRIC_PERPLEXITY ? e->ntok : (size_t)e->n;
    if (e->kind == FL_METRIC_PERPLEXITY) {
        e->y = fl_malloc((size_t)WINDOW * a->head_out * sizeof(float));
    } else {
        int chunk = e->n < CHUNK ? e->n : CHUNK;
        e->out_per_seq = fl_run_output_size(ref, 1, e->seq);
        e->y = fl_malloc((size_t)chunk * e->out_per_seq * sizeof(float));
        if (e->lens_left && !(e->row_buf = fl_malloc((size_t)chunk * e->seq * (a->vocab > 0 ? 1 : a->input) *
                                                      (a->vocab > 0 ? sizeof(int32_t) : sizeof(float))))) {
            st = fl_fail(FL_ERR_NOMEM, "out of memory creating an evaluator");
            goto fail;
        }
    }
    e->per = fl_malloc(n_per * sizeof(double));
    e->ref_per = fl_malloc(n_per * sizeof(double));
    if (!e->y || !e->per || !e->ref_per) {
        st = fl_fail(FL_ERR_NOMEM, "out of memory creating an evaluator");
        goto fail;
    }
    double acc[2] = {0, 0};
    if (e->kind == FL_METRIC_DEVIATION) {
        e->y_ref = fl_malloc((size_t)e->n * e->out_per_seq * sizeof(float));
        if (!e->y_ref) {
            st = fl_fail(FL_ERR_NOMEM, "out of memory for %d reference outputs", e->n);
            goto fail;
        }
        if ((st = run_all(e, ref, chunk_store, acc))) goto fail;
        e->ref_metric = 0;
    } else {
        if (e->kind == FL_METRIC_ACCURACY && !e->labels) {
            e->owned_labels = fl_malloc((size_t)e->n * sizeof(int32_t));
            if (!e->owned_labels) {
                st = fl_fail(FL_ERR_NOMEM, "out of memory for labels");
                goto fail;
            }
            if ((st = run_all(e, ref, chunk_predict, acc))) goto fail;
            e->labels = e->owned_labels;
        }
        if ((st = measure(e, ref, &e->ref_metric))) goto fail;
        memcpy(e->ref_per, e->per, n_per * sizeof(double));
    }
    *out = e;
    return FL_OK;
fail:
    fl_eval_free(e);
    return st;
}

/* ------------------------------------------------------------ timing */

fl_status fl_plan_time_model(const fl_model *m, int batch, int seq, int threads, int reps, uint64_t seed,
                             double *seconds) {
    if (reps < 1) return fl_fail(FL_ERR_ARG, "timing needs reps >= 1");
    const fl_arch *a = fl_model_arch(m);
    fl_session_opts so = {.max_batch = batch, .max_seq = seq, .threads = threads};
    fl_session *s = NULL;
    fl_status st = fl_session_create(m, &so, &s);
    if (st) return st;
    size_t nin = (size_t)batch * seq * (a->vocab > 0 ? 1 : (size_t)a->input);
    float *x = a->vocab > 0 ? NULL : fl_malloc(nin * sizeof(float));
    int32_t *tok = a->vocab > 0 ? fl_malloc(nin * sizeof(int32_t)) : NULL;
    float *y = fl_malloc(fl_run_output_size(m, batch, seq) * sizeof(float));
    double *t = fl_malloc((size_t)reps * sizeof(double));
    if ((!x && !tok) || !y || !t) {
        st = fl_fail(FL_ERR_NOMEM, "out of memory timing a model");
        goto done;
    }
    fl_rng r;
    fl_rng_seed(&r, seed);
    for (size_t i = 0; i < nin; i++) {
        if (x) x[i] = (float)fl_rng_normal(&r);
        else tok[i] = (int32_t)(fl_rng_next(&r) % (uint64_t)a->vocab);
    }
    fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = batch, .seq = seq, .x = x, .tokens = tok, .y = y};
    if ((st = fl_session_run(s, &io))) goto done; /* warm-up */
    for (int k = 0; k < reps && !st; k++) {
        double t0 = fl_now_seconds();
        st = fl_session_run(s, &io);
        t[k] = (fl_now_seconds() - t0) / seq;
    }
    if (!st) {
        fl_sort_doubles(t, (size_t)reps);
        *seconds = t[reps / 2];
    }
done:
    fl_free(x);
    fl_free(tok);
    fl_free(y);
    fl_free(t);
    fl_session_free(s);
    return st;
}

fl_status fl_time_interleaved(int n, int rounds, fl_time_option_fn fn, void *ctx, double *out) {
    enum { MAX_ROUNDS = FL_PAIRED_MAX };
    if (n < 1 || rounds < 1 || rounds > MAX_ROUNDS)
        return fl_fail(FL_ERR_ARG, "interleaved timing: %d options in %d rounds (1..%d)", n, rounds, MAX_ROUNDS);
    double *t = fl_malloc((size_t)n * rounds * sizeof(double));
    if (!t) return fl_fail(FL_ERR_NOMEM, "out of memory timing %d options", n);
    fl_status st = FL_OK;
    for (int r = 0; r < rounds && !st; r++)
        for (int i = 0; i < n && !st; i++) {
            const int j = r % 2 ? n - 1 - i : i;
            st = fn(ctx, j, &t[(size_t)j * rounds + r]);
        }
    for (int j = 0; j < n && !st; j++) /* option j's paired ratio to option 0, for now */
        if (!((out[j] = fl_profile_paired_scale(t + (size_t)j * rounds, t, rounds)) > 0))
            st = fl_fail(FL_ERR_ARG, "interleaved timing: option %d or 0 timed no time", j);
    if (!st) {
        fl_sort_doubles(t, (size_t)rounds); /* option 0's rounds, last: the ratios divide by them */
        for (int j = 0; j < n; j++) out[j] *= t[rounds / 2];
    }
    fl_free(t);
    return st;
}
