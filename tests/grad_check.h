/* The gradient-check harness shared by the training-backward tests (test_grad.c, test_bptt_varlen.c);
 * static helpers only, included after cmocka.h:
 *  - a problem (architecture, matrix specs, batch shape, optional lengths) and random data for it;
 *  - the matrices of a model rebuilt densely in double (for the tests' own reference losses);
 *  - the analytic gradient of one batch (src/train/bptt.c);
 *  - every parameter against central differences of a double reference loss the test supplies;
 *  - the comparison with PyTorch autograd's gradients in a golden file of tests/gen_grad_golden.py.
 * Failures go through cmocka's asserts. */
#ifndef FL_TESTS_GRAD_CHECK_H
#define FL_TESTS_GRAD_CHECK_H

#include "internal.h"
#include "train/bptt.h"
#include "grad_golden.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct problem {
    fl_arch arch;
    fl_mat_spec specs[16]; /* per layer and direction: ih, hh (and hr with a projection); then the head */
    int B, T;
    bool use_state;  /* nonzero initial state (truncated BPTT carry) */
    int32_t lens[8]; /* each sequence's length; all 0: no lengths, every sequence runs T steps */
} problem;

typedef struct data {
    int32_t *tokens, *targets, *lens; /* lens: NULL without lengths */
    float *x, *h0, *c0;
} data;

static const fl_mat_spec DN = {FL_METHOD_DENSE, 0};

/* Tokens (language models) or x ~ N(0, 1), targets, lengths when the problem has them, and with
 * use_state h0 (L*dirs, B, P) and c0 (L*dirs, B, H), all from seed. */
static inline void make_data(const problem *p, uint64_t seed, data *d) {
    fl_rng r;
    fl_rng_seed(&r, seed);
    const fl_arch *a = &p->arch;
    size_t TB = (size_t)p->T * p->B, S = (size_t)a->layers * (a->bidirectional ? 2 : 1) * p->B * a->hidden;
    const size_t SP = S / (size_t)a->hidden * (size_t)(a->proj > 0 ? a->proj : a->hidden); /* h0: (L*dirs, B, P) */
    memset(d, 0, sizeof *d);
    if (a->vocab) {
        d->tokens = malloc(TB * sizeof(int32_t));
        for (size_t i = 0; i < TB; i++) d->tokens[i] = (int32_t)(fl_rng_next(&r) % (uint64_t)a->vocab);
    } else {
        d->x = malloc(TB * a->input * sizeof(float));
        for (size_t i = 0; i < TB * a->input; i++) d->x[i] = (float)fl_rng_normal(&r);
    }
    size_t nt = a->head == FL_HEAD_PER_STEP ? TB : (size_t)p->B;
    d->targets = malloc(nt * sizeof(int32_t));
    for (size_t i = 0; i < nt; i++) d->targets[i] = (int32_t)(fl_rng_next(&r) % (uint64_t)a->head_out);
    if (p->lens[0] > 0) {
        d->lens = malloc((size_t)p->B * sizeof(int32_t));
        memcpy(d->lens, p->lens, (size_t)p->B * sizeof(int32_t));
    }
    if (p->use_state) {
        d->h0 = malloc(SP * sizeof(float));
        d->c0 = malloc(S * sizeof(float));
        for (size_t i = 0; i < SP; i++) d->h0[i] = 0.5f * (float)fl_rng_normal(&r);
        for (size_t i = 0; i < S; i++) d->c0[i] = (float)fl_rng_normal(&r);
    }
}

static inline void free_data(data *d) {
    free(d->tokens), free(d->targets), free(d->lens), free(d->x), free(d->h0), free(d->c0);
}

static inline fl_bptt_batch batch_of(const problem *p, const data *d) {
    return (fl_bptt_batch){p->B, p->T, d->x, d->tokens, d->targets, d->h0, d->c0, d->lens};
}

/* Dense W (rows, cols) of matrix w, in double, from parameters p laid out like m->params. */
static inline void ref_dense(const fl_model *m, const fl_mat *w, const double *p, double *W) {
    const int rows = w->rows, cols = w->cols, R = w->rank;
    if (w->method == FL_METHOD_DENSE) {
        const double *q = p + (w->w - m->params);
        for (int i = 0; i < rows * cols; i++) W[i] = q[i];
    } else if (w->method == FL_METHOD_SVD) {
        const double *U = p + (w->u - m->params), *V = p + (w->v - m->params);
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++) {
                double s = 0;
                for (int r = 0; r < R; r++) s += U[i * R + r] * V[r * cols + j];
                W[i * cols + j] = s;
            }
    } else {
        const double *A = p + (w->a - m->params), *Bf = p + (w->b - m->params), *C = p + (w->c - m->params);
        const int H = rows / 4;
        for (int g = 0; g < 4; g++)
            for (int i = 0; i < H; i++)
                for (int j = 0; j < cols; j++) {
                    double s = 0;
                    for (int r = 0; r < R; r++) s += A[g * R + r] * Bf[i * R + r] * C[j * R + r];
                    W[(g * H + i) * cols + j] = s;
                }
    }
}

static inline double sig(double x) { return 1.0 / (1.0 + exp(-x)); }

/* A random model for p, its weights scaled up so that every gate is far from trivial. */
static inline fl_model *make_model(const problem *p, uint64_t seed) {
    fl_model *m;
    assert_int_equal(fl_model_create(&p->arch, p->specs, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, seed), FL_OK);
    for (size_t i = 0; i < m->n_params; i++) m->params[i] *= 1.5f;
    return m;
}

/* The gradient of batch in (a new model the caller frees) and its loss; dropout > 0 draws its
 * masks from dseed. */
static inline fl_model *grad_of(const problem *p, const fl_model *m, const fl_bptt_batch *in, float dropout,
                                uint64_t dseed, double *loss) {
    fl_model *g;
    fl_bptt *w;
    assert_int_equal(fl_model_create(&p->arch, p->specs, &g), FL_OK);
    assert_int_equal(fl_bptt_create(m, p->B, p->T, &w), FL_OK);
    fl_rng r;
    fl_rng_seed(&r, dseed);
    assert_int_equal(fl_bptt_forward(w, m, in, dropout, dropout > 0 ? &r : NULL, loss, NULL), FL_OK);
    fl_bptt_backward(w, m, g);
    fl_bptt_free(w);
    return g;
}

/* Mean loss of the model with parameters p (laid out like m->params), computed in double. */
typedef double (*ref_loss_fn)(const problem *pr, const fl_model *m, const double *p, const data *d);

/* Every parameter's gradient against double central differences of ref_loss, on a model from seed
 * and data from seed + 1. nn.Embedding(padding_idx) gives the padding row no gradient. */
static inline void check_elementwise(const problem *p, ref_loss_fn ref_loss, uint64_t seed) {
    fl_model *m = make_model(p, seed);
    data d;
    make_data(p, seed + 1, &d);
    fl_bptt_batch in = batch_of(p, &d);
    double loss;
    fl_model *g = grad_of(p, m, &in, 0.0f, 0, &loss);
    double *q = malloc(m->n_params * sizeof(double));
    for (size_t i = 0; i < m->n_params; i++) q[i] = m->params[i];
    double ref = ref_loss(p, m, q, &d);
    if (fabs(ref - loss) > 1e-5 * (1 + fabs(ref))) fail_msg("loss %.8g, reference %.8g", loss, ref);
    const size_t pad0 = p->arch.has_padding && m->embed
                            ? (size_t)(m->embed - m->params) + (size_t)p->arch.padding_idx * p->arch.input
                            : SIZE_MAX;
    size_t checked = 0;
    for (size_t t = 0; t < m->n_tensors; t++) {
        const fl_tensor *ts = &m->tensors[t];
        for (size_t k = 0; k < ts->count; k++) {
            size_t i = ts->offset + k;
            const double eps = 1e-5, s = q[i];
            q[i] = s + eps;
            double lp = ref_loss(p, m, q, &d);
            q[i] = s - eps;
            double lm = ref_loss(p, m, q, &d);
            q[i] = s;
            double num = (lp - lm) / (2 * eps), an = g->params[i];
            if (i >= pad0 && i < pad0 + (size_t)p->arch.input) num = 0;
            if (fabs(num - an) > 2e-5 + 2e-3 * fabs(num))
                fail_msg("%s[%zu]: analytic %.8g, numeric %.8g", ts->name, k, an, num);
            checked++;
        }
    }
    assert_true(checked == fl_model_num_params(m));
    free(q);
    fl_model_free(g);
    fl_model_free(m);
    free_data(&d);
}

/* Write the golden files of tests/gen_grad_golden.py (cases: its argument, "" for the default set)
 * into dir; skips the test when FL_PYTHON / FL_SOURCE_DIR are not set (outside CTest). */
static inline void golden_generate(const char *dir, const char *cases) {
    const char *py = getenv("FL_PYTHON"), *src = getenv("FL_SOURCE_DIR");
    if (!py || !src) {
        print_message("FL_PYTHON / FL_SOURCE_DIR not set; skipping the PyTorch comparison\n");
        skip();
    }
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' '%s/tests/gen_grad_golden.py' '%s'%s%s", py, src, dir, *cases ? " " : "", cases);
    assert_int_equal(system(cmd), 0);
}

/* Compare our loss and gradients with PyTorch autograd's (float64) for the weights and batch in
 * dir/name.bin (lengths when the file has them). */
static inline void check_golden(const char *dir, const char *name, const problem *p) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.bin", dir, name);
    golden gd = {0};
    if (!golden_load(path, &gd)) fail_msg("cannot read %s", path);
    fl_model *m, *g;
    assert_int_equal(fl_model_create(&p->arch, p->specs, &m), FL_OK);
    assert_int_equal(fl_model_create(&p->arch, p->specs, &g), FL_OK);
    for (size_t t = 0; t < m->n_tensors; t++) {
        const fl_tensor *ts = &m->tensors[t];
        const record *r = golden_find(&gd, ts->name);
        if (!r || r->count != ts->count) fail_msg("%s: tensor %s missing or wrong size", name, ts->name);
        memcpy(m->params + ts->offset, r->data, ts->count * sizeof(float));
    }
    const record *rt = golden_find(&gd, "tokens"), *rx = golden_find(&gd, "x"), *ry = golden_find(&gd, "targets");
    const record *rh = golden_find(&gd, "h0"), *rc = golden_find(&gd, "c0"), *rl = golden_find(&gd, "lengths");
    assert_true(!rl || rl->count == (size_t)p->B);
    fl_bptt_batch in = {p->B, p->T, rx ? rx->data : NULL, rt ? rt->data : NULL, ry->data,
                        rh ? rh->data : NULL, rc ? rc->data : NULL, rl ? rl->data : NULL};
    fl_bptt *w;
    assert_int_equal(fl_bptt_create(m, p->B, p->T, &w), FL_OK);
    double loss;
    assert_int_equal(fl_bptt_forward(w, m, &in, 0, NULL, &loss, NULL), FL_OK);
    fl_bptt_backward(w, m, g);
    double tl = ((float *)golden_find(&gd, "loss")->data)[0];
    if (fabs(loss - tl) > 1e-5 * fabs(tl)) fail_msg("%s: loss %.8g, torch %.8g", name, loss, tl);
    for (size_t t = 0; t < g->n_tensors; t++) {
        const fl_tensor *ts = &g->tensors[t];
        char gname[80];
        snprintf(gname, sizeof gname, "grad.%s", ts->name);
        const record *r = golden_find(&gd, gname);
        assert_non_null(r);
        const float *ref = r->data, *our = g->params + ts->offset;
        double mx = 0, diff = 0;
        for (size_t k = 0; k < ts->count; k++) {
            if (fabs(ref[k]) > mx) mx = fabs(ref[k]);
            if (fabs(ref[k] - our[k]) > diff) diff = fabs(ref[k] - our[k]);
        }
        if (diff > 1e-4 * mx + 1e-9)
            fail_msg("%s: %s differs from torch by %.3g (max |grad| %.3g)", name, gname, diff, mx);
    }
    fl_bptt_free(w);
    fl_model_free(m);
    fl_model_free(g);
    golden_free(&gd);
}

#endif
