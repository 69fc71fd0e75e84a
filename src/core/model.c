/* Model: architecture, parameter layout in one flat block, initialisation, description. */
#include "internal.h"
#include "qmat.h"
#include "lstm_ext.h"
#include "session_sched.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

fl_status fl_arch_check(const fl_arch *a) {
    if (!a) return fl_fail(FL_ERR_ARG, "architecture is NULL");
    if (a->vocab < 0) return fl_fail(FL_ERR_ARG, "vocab must be >= 0, got %d", a->vocab);
    if (a->input <= 0) return fl_fail(FL_ERR_ARG, "input size must be > 0, got %d", a->input);
    if (a->hidden <= 0) return fl_fail(FL_ERR_ARG, "hidden size must be > 0, got %d", a->hidden);
    if (a->layers <= 0) return fl_fail(FL_ERR_ARG, "layers must be > 0, got %d", a->layers);
    /* Keep every count comfortably inside int arithmetic (4H * n, vocab * input). */
    const int64_t lim = (int64_t)1 << 30;
    /* Each size below 2^30 first, so the products below cannot overflow int64. */
    if (a->vocab >= lim || a->input >= lim || a->hidden >= lim || a->head_out >= lim)
        return fl_fail(FL_ERR_ARG, "architecture too large: vocab %d, input %d, hidden %d, head_out %d (each must "
                       "be below 2^30)", a->vocab, a->input, a->hidden, a->head_out);
    const int in_max = a->input > a->hidden ? a->input : a->hidden;
    if ((int64_t)4 * a->hidden * in_max >= lim)
        return fl_fail(FL_ERR_ARG, "architecture too large: a gate matrix of 4 x hidden %d x max(input %d, hidden) "
                       "needs 2^30 or more entries", a->hidden, a->input);
    if ((int64_t)a->vocab * a->input >= lim)
        return fl_fail(FL_ERR_ARG, "architecture too large: embedding of vocab %d x input %d needs 2^30 or more entries",
                       a->vocab, a->input);
    if (a->layers > 1024) return fl_fail(FL_ERR_ARG, "layers %d must be <= 1024", a->layers);
    if (a->bidirectional != 0 && a->bidirectional != 1)
        return fl_fail(FL_ERR_ARG, "bidirectional must be 0 or 1, got %d", a->bidirectional);
    if (a->proj < 0 || a->proj >= a->hidden)
        return fl_fail(FL_ERR_ARG, "projection size %d must be 0 (none) or in [1, hidden %d) (as nn.LSTM proj_size)",
                       a->proj, a->hidden);
    if (a->has_padding != 0 && a->has_padding != 1)
        return fl_fail(FL_ERR_ARG, "has_padding must be 0 or 1, got %d", a->has_padding);
    if (a->has_padding && a->vocab == 0)
        return fl_fail(FL_ERR_ARG, "a padding id needs token inputs (vocab > 0)");
    if (a->has_padding && (a->padding_idx < 0 || a->padding_idx >= a->vocab))
        return fl_fail(FL_ERR_ARG, "padding_idx %d outside [0, vocab %d)", a->padding_idx, a->vocab);
    if (!a->has_padding && a->padding_idx != 0)
        return fl_fail(FL_ERR_ARG, "padding_idx %d given without has_padding", a->padding_idx);
    /* Layers above the first read dirs * out features. */
    if ((int64_t)4 * a->hidden * fl_arch_dirs(a) * fl_arch_out(a) >= lim)
        return fl_fail(FL_ERR_ARG, "architecture too large: a gate matrix of 4 x hidden %d x %d inputs needs 2^30 "
                       "or more entries", a->hidden, fl_arch_dirs(a) * fl_arch_out(a));
    switch (a->head) {
    case FL_HEAD_NONE:
        if (a->head_out != 0) return fl_fail(FL_ERR_ARG, "head_out must be 0 without a head, got %d", a->head_out);
        break;
    case FL_HEAD_PER_STEP:
    case FL_HEAD_LAST_STEP:
        if (a->head_out <= 0) return fl_fail(FL_ERR_ARG, "head output size must be > 0, got %d", a->head_out);
        if ((int64_t)a->head_out * fl_arch_dirs(a) * fl_arch_out(a) >= lim)
            return fl_fail(FL_ERR_ARG, "head too large: head_out %d x %s %d needs 2^30 or more entries", a->head_out,
                           a->bidirectional || a->proj ? "features" : "hidden", fl_arch_dirs(a) * fl_arch_out(a));
        break;
    default: return fl_fail(FL_ERR_ARG, "unknown head kind %d", (int)a->head);
    }
    return FL_OK;
}

size_t fl_model_num_matrices(const fl_model *m) {
    return m ? fl_arch_num_matrices(&m->arch) : 0;
}

/* The fl_mat of matrix d. */
static fl_mat *mat_of(fl_model *m, const fl_mat_desc *d) {
    fl_layer *ly = d->layer >= 0 ? &m->layer[d->layer * fl_arch_dirs(&m->arch) + d->direction] : NULL;
    switch (d->kind) {
    case FL_MAT_IH: return &ly->wih;
    case FL_MAT_HH: return &ly->whh;
    case FL_MAT_PROJ: return &ly->whr;
    case FL_MAT_HEAD: return &m->head;
    }
    FL_ASSERT(!"matrix kind without storage");
    return NULL;
}

/* Where the pointer to bias j of matrix d lives. */
static float **bias_of(fl_model *m, const fl_mat_desc *d, int j) {
    if (d->kind == FL_MAT_HEAD) return &m->head_b;
    FL_ASSERT(d->kind == FL_MAT_HH);
    fl_layer *ly = &m->layer[d->layer * fl_arch_dirs(&m->arch) + d->direction];
    return j == 0 ? &ly->b_ih : &ly->b_hh;
}

fl_mat *fl_model_mat(fl_model *m, size_t i) {
    fl_mat_desc d;
    fl_arch_matrix(&m->arch, i, &d);
    return mat_of(m, &d);
}

const fl_mat *fl_model_mat_const(const fl_model *m, size_t i) {
    return fl_model_mat((fl_model *)m, i);
}

fl_mat_spec fl_model_mat_spec(const fl_model *m, size_t i) {
    const fl_mat *w = fl_model_mat_const(m, i);
    return (fl_mat_spec){w->method, w->method == FL_METHOD_DENSE ? 0 : w->rank};
}

const fl_arch *fl_model_arch(const fl_model *m) { return m ? &m->arch : NULL; }

/* ------------------------------------------------------------ layout */

/* Collects tensors (name, shape) and assigns offsets, each aligned to 16 floats (64 bytes). */
typedef struct layout {
    fl_tensor *t;
    size_t n, cap;
    size_t total; /* floats, including alignment padding */
    fl_status err;
} layout;

static void add_tensor(layout *L, const char *name, int ndim, int64_t d0, int64_t d1) {
    if (L->err) return;
    if (L->n == L->cap) {
        size_t cap = L->cap ? 2 * L->cap : 16;
        fl_tensor *t = fl_calloc(cap, sizeof *t);
        if (!t) {
            L->err = fl_fail(FL_ERR_NOMEM, "out of memory building the model layout");
            return;
        }
        if (L->t) memcpy(t, L->t, L->n * sizeof *t);
        fl_free(L->t);
        L->t = t;
        L->cap = cap;
    }
    fl_tensor *t = &L->t[L->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = ndim == 2 ? d1 : 1;
    t->count = (size_t)d0 * (size_t)t->shape[1];
    t->offset = L->total;
    L->total += (t->count + 15) & ~(size_t)15;
}

static fl_status check_spec(const fl_mat_spec *s, int rows, int cols, bool gate, fl_mat_kind kind,
                            const char *name) {
    switch (s->method) {
    case FL_METHOD_DENSE: return FL_OK;
    case FL_METHOD_SVD: {
        int maxr = rows < cols ? rows : cols;
        if (s->rank < 1 || s->rank > maxr)
            return fl_fail(FL_ERR_ARG, "%s: SVD rank %d outside [1, %d] for a %dx%d matrix", name,
                           s->rank, maxr, rows, cols);
        return FL_OK;
    }
    case FL_METHOD_CP:
        if (kind == FL_MAT_PROJ)
            return fl_fail(FL_ERR_ARG, "%s: CP does not apply to a projection (weight_hr has no gate axis): use "
                           "dense or SVD", name);
        if (!gate) return fl_fail(FL_ERR_ARG, "%s: CP applies only to LSTM gate matrices", name);
        if (s->rank < 1 || s->rank > 65536)
            return fl_fail(FL_ERR_ARG, "%s: CP rank %d must be in [1, 65536]", name, s->rank);
        return FL_OK;
    }
    return fl_fail(FL_ERR_ARG, "%s: unknown method %d", name, (int)s->method);
}

/* Matrix d stored as s: its factors (2-D), then the biases it owns (1-D). */
static void add_mat(layout *L, fl_mat *w, const fl_mat_spec *s, const fl_mat_desc *d) {
    w->method = s->method;
    w->rows = d->rows;
    w->cols = d->cols;
    w->rank = s->method == FL_METHOD_DENSE ? 0 : s->rank;
    w->rel_error = 0;
    fl_factor_desc f[3];
    int nf = fl_mat_factors(d, *s, f);
    for (int j = 0; j < nf; j++) add_tensor(L, f[j].name, 2, f[j].rows, f[j].cols);
    for (int j = 0; j < d->n_bias; j++) add_tensor(L, d->bias[j].name, 1, d->bias[j].rows, 1);
}

/* Point w's factor pointers into the block, using tensors starting at index *k. */
static void bind_mat(fl_model *m, fl_mat *w, size_t *k) {
    float *p = m->params;
    switch (w->method) {
    case FL_METHOD_DENSE: w->w = p + m->tensors[(*k)++].offset; break;
    case FL_METHOD_SVD:
        w->u = p + m->tensors[(*k)++].offset;
        w->v = p + m->tensors[(*k)++].offset;
        break;
    case FL_METHOD_CP:
        w->a = p + m->tensors[(*k)++].offset;
        w->b = p + m->tensors[(*k)++].offset;
        w->c = p + m->tensors[(*k)++].offset;
        break;
    }
}

fl_status fl_model_create(const fl_arch *arch, const fl_mat_spec *specs, fl_model **out) {
    if (!out) return fl_fail(FL_ERR_ARG, "fl_model_create: out is NULL");
    *out = NULL;
    fl_status st = fl_arch_check(arch);
    if (st) return st;
    fl_model *m = fl_calloc(1, sizeof *m);
    if (!m) return fl_fail(FL_ERR_NOMEM, "out of memory creating a model");
    if (pthread_mutex_init(&m->pack_mu, NULL) != 0) {
        fl_free(m);
        return fl_fail(FL_ERR_NOMEM, "could not create a mutex for a model");
    }
    m->arch = *arch;
    const int dirs = fl_arch_dirs(arch);
    m->layer = fl_calloc((size_t)arch->layers * dirs, sizeof *m->layer);
    if (!m->layer) {
        fl_model_free(m);
        return fl_fail(FL_ERR_NOMEM, "out of memory creating a model");
    }
    size_t nmat = fl_model_num_matrices(m);
    const fl_mat_spec dense = {FL_METHOD_DENSE, 0};
    for (size_t i = 0; i < nmat; i++) {
        fl_mat_desc d;
        fl_arch_matrix(arch, i, &d);
        if ((st = check_spec(specs ? &specs[i] : &dense, d.rows, d.cols, d.gate, d.kind, d.name))) {
            fl_model_free(m);
            return st;
        }
    }
    for (int l = 0; l < arch->layers * dirs; l++) {
        m->layer[l].in = l < dirs ? arch->input : dirs * fl_arch_out(arch);
        m->layer[l].hidden = arch->hidden;
        m->layer[l].out = fl_arch_out(arch);
    }

    layout L = {0};
    if (arch->vocab > 0) add_tensor(&L, "embedding.weight", 2, arch->vocab, arch->input);
    for (size_t i = 0; i < nmat; i++) {
        fl_mat_desc d;
        fl_arch_matrix(arch, i, &d);
        add_mat(&L, mat_of(m, &d), specs ? &specs[i] : &dense, &d);
    }
    if (L.err) {
        fl_free(L.t);
        fl_model_free(m);
        return L.err;
    }
    m->tensors = L.t;
    m->n_tensors = L.n;
    m->n_params = L.total;
    m->params = fl_calloc(L.total, sizeof(float));
    if (!m->params) {
        fl_model_free(m);
        return fl_fail(FL_ERR_NOMEM, "out of memory allocating %zu parameters", L.total);
    }
    size_t k = 0;
    if (arch->vocab > 0) m->embed = m->params + m->tensors[k++].offset;
    for (size_t i = 0; i < nmat; i++) {
        fl_mat_desc d;
        fl_arch_matrix(arch, i, &d);
        bind_mat(m, mat_of(m, &d), &k);
        for (int j = 0; j < d.n_bias; j++) *bias_of(m, &d, j) = m->params + m->tensors[k++].offset;
    }
    FL_ASSERT(k == m->n_tensors);
    *out = m;
    return FL_OK;
}

void fl_model_free(fl_model *m) {
    if (!m) return;
    FL_ASSERT(m->pack_users == 0); /* a session outlives its model */
    pthread_mutex_destroy(&m->pack_mu);
    fl_model_qfree(m);
    fl_free(m->params);
    fl_free(m->tensors);
    fl_free(m->layer);
    fl_free(m->tokenizer);
    fl_free(m->layer_threads);
    fl_lstm_ext_free(m->ext);
    fl_free(m);
}

int fl_model_planned_threads(const fl_model *m, int layer) {
    if (!m) return 0;
    if (layer < 0) return m->planned_threads; /* the most any layer runs on (kept so when set per layer) */
    if (layer >= m->arch.layers) return 0;
    return m->layer_threads ? m->layer_threads[layer] : m->planned_threads;
}

fl_status fl_model_set_planned_threads(fl_model *m, const int *threads) {
    if (!m) return fl_fail(FL_ERR_ARG, "fl_model_set_planned_threads: model is NULL");
    const int L = m->arch.layers;
    if (!threads) {
        fl_free(m->layer_threads);
        m->layer_threads = NULL;
        m->planned_threads = 0;
        return FL_OK;
    }
    int most = 0;
    for (int l = 0; l < L; l++) {
        if (threads[l] < 1 || threads[l] > FL_MAX_PLANNED_THREADS)
            return fl_fail(FL_ERR_ARG, "fl_model_set_planned_threads: layer %d: threads must be in [1, %d], got %d", l,
                           FL_MAX_PLANNED_THREADS, threads[l]);
        if (threads[l] > most) most = threads[l];
    }
    if (!m->layer_threads && !(m->layer_threads = fl_malloc((size_t)L * sizeof(int))))
        return fl_fail(FL_ERR_NOMEM, "fl_model_set_planned_threads: out of memory");
    memcpy(m->layer_threads, threads, (size_t)L * sizeof(int));
    m->planned_threads = most;
    return FL_OK;
}

fl_bidir_sched fl_model_planned_bidir_sched(const fl_model *m) {
    return m ? m->bidir_sched : FL_BIDIR_AUTO;
}

fl_status fl_model_set_planned_bidir_sched(fl_model *m, fl_bidir_sched sched) {
    if (!m) return fl_fail(FL_ERR_ARG, "fl_model_set_planned_bidir_sched: model is NULL");
    if (!fl_bidir_sched_valid(sched))
        return fl_fail(FL_ERR_ARG, "fl_model_set_planned_bidir_sched: unknown schedule %d", (int)sched);
    if (sched != FL_BIDIR_AUTO && !m->arch.bidirectional)
        return fl_fail(FL_ERR_ARG, "fl_model_set_planned_bidir_sched: schedule \"%s\" for a model without "
                       "bidirectional layers", fl_bidir_sched_name(sched));
    m->bidir_sched = sched;
    return FL_OK;
}

fl_step_sched fl_model_planned_step_sched(const fl_model *m) {
    return m ? m->step_sched : FL_STEP_AUTO;
}

fl_status fl_model_set_planned_step_sched(fl_model *m, fl_step_sched sched) {
    if (!m) return fl_fail(FL_ERR_ARG, "fl_model_set_planned_step_sched: model is NULL");
    if (!fl_step_sched_valid(sched))
        return fl_fail(FL_ERR_ARG, "fl_model_set_planned_step_sched: unknown schedule %d", (int)sched);
    m->step_sched = sched;
    return FL_OK;
}

static fl_status clone_held(const fl_model *m, fl_model **out) {
    if (!m || !out) return fl_fail(FL_ERR_ARG, "NULL argument to fl_model_clone");
    *out = NULL;
    size_t nmat = fl_model_num_matrices(m);
    fl_mat_spec *specs = fl_calloc(nmat, sizeof *specs);
    if (!specs) return fl_fail(FL_ERR_NOMEM, "out of memory cloning a model");
    for (size_t i = 0; i < nmat; i++) specs[i] = fl_model_mat_spec(m, i);
    fl_model *c;
    fl_status st = fl_model_create(&m->arch, specs, &c);
    fl_free(specs);
    if (st) return st;
    memcpy(c->params, m->params, m->n_params * sizeof(float));
    for (size_t i = 0; i < nmat; i++) fl_model_mat(c, i)->rel_error = fl_model_mat_const(m, i)->rel_error;
    if ((st = fl_model_qclone(c, m))) {
        fl_model_free(c);
        return st;
    }
    if (m->tokenizer) {
        size_t n = strlen(m->tokenizer) + 1;
        c->tokenizer = fl_malloc(n);
        if (!c->tokenizer) {
            fl_model_free(c);
            return fl_fail(FL_ERR_NOMEM, "out of memory cloning a model");
        }
        memcpy(c->tokenizer, m->tokenizer, n);
    }
    if (m->ext && (st = fl_lstm_ext_clone(m->ext, &c->ext))) {
        fl_model_free(c);
        return st;
    }
    c->planned_threads = m->planned_threads;
    c->bidir_sched = m->bidir_sched;
    c->step_sched = m->step_sched;
    if (m->layer_threads && (st = fl_model_set_planned_threads(c, m->layer_threads))) {
        fl_model_free(c);
        return st;
    }
    *out = c;
    return FL_OK;
}

fl_status fl_model_clone(const fl_model *m, fl_model **out) {
    if (!m) return clone_held(m, out);
    fl_model_weights_hold(m); /* read outside any session (packed.c) */
    fl_status st = clone_held(m, out);
    fl_model_weights_unhold(m);
    return st;
}

const fl_tensor *fl_model_find_tensor(const fl_model *m, const char *name) {
    for (size_t i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

/* ------------------------------------------------------------ init */

static void fill_uniform(fl_rng *r, float *p, size_t n, float bound) {
    for (size_t i = 0; i < n; i++) p[i] = fl_rng_uniform_range(r, -bound, bound);
}

/* Fill matrix w so that its (reconstructed) entries have the variance of U(-k, k). */
static void init_mat(fl_rng *r, fl_mat *w, float k) {
    size_t R = (size_t)w->rank;
    switch (w->method) {
    case FL_METHOD_DENSE: fill_uniform(r, w->w, (size_t)w->rows * w->cols, k); break;
    case FL_METHOD_SVD: {
        /* var(W) = R var(u) var(v) = k^2/3  ->  var(u) = var(v) = k / sqrt(3R). */
        float s = sqrtf(3.0f * k / sqrtf(3.0f * (float)R));
        fill_uniform(r, w->u, (size_t)w->rows * R, s);
        fill_uniform(r, w->v, R * (size_t)w->cols, s);
        break;
    }
    case FL_METHOD_CP: {
        /* var(W) = R var(a) var(b) var(c) = k^2/3  ->  each var = (k^2 / (3R))^(1/3). */
        float s = sqrtf(3.0f * cbrtf(k * k / (3.0f * (float)R)));
        fill_uniform(r, w->a, 4 * R, s);
        fill_uniform(r, w->b, (size_t)(w->rows / 4) * R, s);
        fill_uniform(r, w->c, (size_t)w->cols * R, s);
        break;
    }
    }
}

static fl_status init_random_held(fl_model *m, uint64_t seed) {
    if (!m) return fl_fail(FL_ERR_ARG, "fl_model_init_random: model is NULL");
    fl_rng r;
    fl_rng_seed(&r, seed);
    const fl_arch *a = &m->arch;
    if (m->embed)
        for (size_t i = 0; i < (size_t)a->vocab * a->input; i++) m->embed[i] = (float)fl_rng_normal(&r);
    if (m->embed && a->has_padding) /* nn.Embedding(padding_idx=p): row p starts at zero */
        memset(m->embed + (size_t)a->padding_idx * a->input, 0, (size_t)a->input * sizeof(float));
    float k = 1.0f / sqrtf((float)a->hidden);
    for (int l = 0; l < a->layers * fl_arch_dirs(a); l++) { /* state_dict order, as nn.LSTM */
        fl_layer *ly = &m->layer[l];
        init_mat(&r, &ly->wih, k);
        init_mat(&r, &ly->whh, k);
        fill_uniform(&r, ly->b_ih, 4 * (size_t)a->hidden, k);
        fill_uniform(&r, ly->b_hh, 4 * (size_t)a->hidden, k);
        if (a->proj > 0) init_mat(&r, &ly->whr, k);
    }
    if (a->head != FL_HEAD_NONE) {
        init_mat(&r, &m->head, k);
        fill_uniform(&r, m->head_b, (size_t)a->head_out, k);
    }
    return fl_model_requantize(m); /* low-precision matrices follow their new masters */
}

fl_status fl_model_init_random(fl_model *m, uint64_t seed) {
    if (!m) return init_random_held(m, seed);
    fl_model_weights_hold(m); /* written outside any session (packed.c) */
    fl_status st = init_random_held(m, seed);
    fl_model_weights_unhold(m);
    return st;
}

/* ------------------------------------------------------------ description */

size_t fl_mat_params(const fl_mat *w) {
    return fl_spec_params(w->rows, w->cols, (fl_mat_spec){w->method, w->rank});
}

size_t fl_mat_flops(const fl_mat *w) {
    size_t R = (size_t)w->rank, m = (size_t)w->rows, n = (size_t)w->cols;
    switch (w->method) {
    case FL_METHOD_DENSE: return 2 * m * n;
    case FL_METHOD_SVD: return 2 * R * (m + n);
    case FL_METHOD_CP: return 2 * n * R + 4 * R + 2 * m * R; /* z = C^T x; A o z; B (A o z), 4 gates */
    }
    return 0;
}

fl_status fl_model_matrix_info(const fl_model *m, size_t i, fl_matrix_info *out) {
    if (!m || !out) return fl_fail(FL_ERR_ARG, "NULL argument to fl_model_matrix_info");
    if (i >= fl_model_num_matrices(m))
        return fl_fail(FL_ERR_ARG, "matrix index %zu out of range (model has %zu)", i,
                       fl_model_num_matrices(m));
    const fl_mat *w = fl_model_mat_const(m, i);
    fl_mat_desc d;
    fl_arch_matrix(&m->arch, i, &d);
    memset(out, 0, sizeof *out);
    _Static_assert(sizeof out->name >= sizeof d.name, "fl_matrix_info.name holds every matrix name");
    snprintf(out->name, sizeof out->name, "%s", d.name);
    out->kind = d.kind;
    out->layer = d.layer;
    out->direction = d.direction;
    out->precision = w->precision;
    out->method = w->method;
    out->rows = w->rows;
    out->cols = w->cols;
    out->rank = w->method == FL_METHOD_DENSE ? 0 : w->rank;
    out->params = fl_mat_params(w);
    out->flops = fl_mat_flops(w);
    out->rel_error = w->rel_error;
    out->bytes = out->params * fl_precision_bytes(w->precision);
    if (w->precision == FL_PRECISION_INT8) /* and one f32 scale per row of each factor */
        out->bytes += 4 * (size_t)(w->method == FL_METHOD_DENSE ? w->rows : w->rows + w->rank);
    return FL_OK;
}

size_t fl_model_num_params(const fl_model *m) {
    size_t n = 0;
    if (!m) return 0;
    for (size_t i = 0; i < m->n_tensors; i++) n += m->tensors[i].count;
    return n;
}

size_t fl_model_flops_per_step(const fl_model *m) {
    size_t f = 0;
    if (!m) return 0;
    const fl_arch *a = &m->arch;
    for (int l = 0; l < a->layers * fl_arch_dirs(a); l++) {
        f += fl_mat_flops(&m->layer[l].wih) + fl_mat_flops(&m->layer[l].whh);
        if (a->proj > 0) f += fl_mat_flops(&m->layer[l].whr);
        f += 10 * 4 * (size_t)a->hidden; /* biases, gate nonlinearities, cell update: ~10 flop/unit/gate */
    }
    if (a->head == FL_HEAD_PER_STEP) f += fl_mat_flops(&m->head) + (size_t)a->head_out;
    return f;
}
