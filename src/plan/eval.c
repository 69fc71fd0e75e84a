/* Judging a candidate model: accuracy of a classifier, perplexity of a language model, or the
 * relative deviation of its outputs from the dense model's; and timing a model for real. */
#include "plan_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHUNK 32 /* sequences per session run */

struct fl_eval {
    const fl_model *ref;
    fl_plan_metric kind;
    double budget, ref_metric;
    int n, seq, threads;    /* sequences, run length (seq - 1 for a language model) */
    const float *x;         /* (n, seq, D) features, borrowed or owned_x */
    const int32_t *tokens;  /* (n, data_seq) ids, borrowed or owned_tok */
    int tok_stride;         /* row stride of tokens */
    const int32_t *labels;  /* (n) borrowed or owned_labels */
    float *owned_x;
    int32_t *owned_tok, *owned_labels;
    float *y_ref;           /* deviation: (n, per-sequence outputs) of the reference */
    size_t out_per_seq;     /* floats fl_session_run writes per sequence */
    float *y;               /* (CHUNK, out_per_seq) */
    int32_t *tok_chunk;     /* (CHUNK, seq) contiguous token rows for a language model */
};

fl_plan_metric fl_eval_metric_kind(const fl_eval *e) { return e->kind; }
double fl_eval_budget(const fl_eval *e) { return e->budget; }
double fl_eval_ref_metric(const fl_eval *e) { return e->ref_metric; }

void fl_eval_free(fl_eval *e) {
    if (!e) return;
    fl_free(e->owned_x);
    fl_free(e->owned_tok);
    fl_free(e->owned_labels);
    fl_free(e->y_ref);
    fl_free(e->y);
    fl_free(e->tok_chunk);
    fl_free(e);
}

/* Run model m over all n sequences; for each chunk call fn with the outputs. */
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
        if (a->vocab > 0) {
            // tok_chunk (count, seq): the first seq ids of each row
            for (int b = 0; b < count; b++)
                memcpy(e->tok_chunk + (size_t)b * e->seq, e->tokens + (size_t)(first + b) * e->tok_stride,
                       (size_t)e->seq * sizeof(int32_t));
            io.tokens = e->tok_chunk;
        } else {
            io.x = e->x + (size_t)first * e->seq * a->input;
        }
        st = fl_session_run(s, &io);
        if (!st) fn(e, first, count, e->y, acc);
    }
    fl_session_free(s);
    return st;
}

/* acc[0] += correct predictions. */
static void chunk_accuracy(fl_eval *e, int first, int count, const float *y, double *acc) {
    const int C = e->ref->arch.head_out;
    for (int b = 0; b < count; b++) {
        const float *row = y + (size_t)b * C;
        int best = 0;
        for (int k = 1; k < C; k++)
            if (row[k] > row[best]) best = k;
        if (best == e->labels[first + b]) acc[0] += 1;
    }
}

/* Record the argmax of each sequence as its label (dense model's own predictions). */
static void chunk_predict(fl_eval *e, int first, int count, const float *y, double *acc) {
    const int C = e->ref->arch.head_out;
    for (int b = 0; b < count; b++) {
        const float *row = y + (size_t)b * C;
        int best = 0;
        for (int k = 1; k < C; k++)
            if (row[k] > row[best]) best = k;
        e->owned_labels[first + b] = best;
    }
}

/* acc[0] += negative log-likelihood of the next tokens, acc[1] += tokens scored.
 * y: (count, seq, V) logits for inputs tokens[:, :seq]; targets tokens[:, 1:seq+1]. */
static void chunk_nll(fl_eval *e, int first, int count, const float *y, double *acc) {
    const int V = e->ref->arch.head_out, T = e->seq;
    for (int b = 0; b < count; b++)
        for (int t = 0; t < T; t++) {
            const float *row = y + ((size_t)b * T + t) * V;
            double mx = row[0];
            for (int k = 1; k < V; k++)
                if (row[k] > mx) mx = row[k];
            double s = 0;
            for (int k = 0; k < V; k++) s += exp((double)row[k] - mx);
            int target = e->tokens[(size_t)(first + b) * e->tok_stride + t + 1];
            acc[0] += log(s) + mx - (double)row[target];
            acc[1] += 1;
        }
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

static fl_status measure(fl_eval *e, const fl_model *m, double *metric) {
    double acc[2] = {0, 0};
    fl_status st;
    switch (e->kind) {
    case FL_METRIC_ACCURACY:
        if ((st = run_all(e, m, chunk_accuracy, acc))) return st;
        *metric = 100.0 * acc[0] / e->n;
        return FL_OK;
    case FL_METRIC_PERPLEXITY:
        if ((st = run_all(e, m, chunk_nll, acc))) return st;
        *metric = exp(acc[0] / acc[1]);
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
    if (lm && d->seq < 2)
        return fl_fail(FL_ERR_DATA, "language-model data needs sequences of >= 2 tokens, got %d", d->seq);
    e->kind = classifier ? FL_METRIC_ACCURACY : lm ? FL_METRIC_PERPLEXITY : FL_METRIC_DEVIATION;
    e->n = d->n;
    e->seq = lm ? d->seq - 1 : d->seq;
    e->x = d->x;
    e->tokens = d->tokens;
    e->tok_stride = d->seq;
    e->labels = d->labels;
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
        e->tok_stride = e->seq;
    } else {
        e->owned_x = fl_malloc(cnt * a->input * sizeof(float));
        if (!e->owned_x) return fl_fail(FL_ERR_NOMEM, "out of memory for random inputs");
        for (size_t i = 0; i < cnt * a->input; i++) e->owned_x[i] = (float)fl_rng_normal(&r);
        e->x = e->owned_x;
    }
    return FL_OK;
}

fl_status fl_eval_create(const fl_model *ref, const fl_plan_opts *o, fl_eval **out) {
    *out = NULL;
    fl_eval *e = fl_calloc(1, sizeof *e);
    if (!e) return fl_fail(FL_ERR_NOMEM, "out of memory creating an evaluator");
    e->ref = ref;
    e->threads = o->threads;
    fl_status st = o->data ? check_data(e, ref, o->data) : make_random(e, ref, o);
    if (st) goto fail;
    if (e->kind == FL_METRIC_DEVIATION) {
        e->budget = o->data && !isnan(o->max_loss) ? o->max_loss : o->max_dev;
    } else if (isnan(o->max_loss)) {
        e->budget = e->kind == FL_METRIC_ACCURACY ? 1.0 : 0.05;
    } else {
        e->budget = o->max_loss;
    }
    const fl_arch *a = fl_model_arch(ref);
    int chunk = e->n < CHUNK ? e->n : CHUNK;
    e->out_per_seq = fl_run_output_size(ref, 1, e->seq);
    e->y = fl_malloc((size_t)chunk * e->out_per_seq * sizeof(float));
    if (a->vocab > 0) e->tok_chunk = fl_malloc((size_t)chunk * e->seq * sizeof(int32_t));
    if (!e->y || (a->vocab > 0 && !e->tok_chunk)) {
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
