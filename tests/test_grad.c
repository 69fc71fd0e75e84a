/* Gradients of the training backward (src/train/bptt.c):
 *  - every parameter against central finite differences of an independent double-precision
 *    reference forward (written here, straight from the nn.LSTM equations), on tiny shapes, for
 *    dense, SVD and CP matrices, language models (with a carried initial state) and classifiers;
 *  - the random-direction check (kann) of full BPTT on the float code, with dropout;
 *  - the factor gradients against the chain rule applied to the dense gradient. */
#define _DEFAULT_SOURCE /* mkdtemp */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "grad_check.h"
#include "testutil.h"

/* ---------------------------------------------------------------- double reference */

/* Mean cross-entropy of the model with parameters p, computed in double. */
static double ref_loss(const problem *pr, const fl_model *m, const double *p, const data *d) {
    const fl_arch *a = &m->arch;
    const int B = pr->B, T = pr->T, H = a->hidden, D = a->input, V = a->head_out, L = a->layers;
    const int mx = D > H ? D : H;
    double *X = calloc((size_t)T * B * mx, sizeof(double));  // (T, B, in) layer input
    double *Y = calloc((size_t)T * B * H, sizeof(double));   // (T, B, H) layer output
    double *W = calloc((size_t)4 * H * mx, sizeof(double));
    double *U = calloc((size_t)4 * H * H, sizeof(double));
    double *h = calloc(H * B, sizeof(double)), *c = calloc(H * B, sizeof(double));
    double *gates = calloc(4 * H, sizeof(double));
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++)
            for (int k = 0; k < D; k++) {
                size_t n = (size_t)t * B + b;
                X[n * D + k] = a->vocab ? p[(m->embed - m->params) + d->tokens[n] * D + k] : d->x[n * D + k];
            }
    int in = D;
    for (int l = 0; l < L; l++) {
        const fl_layer *ly = &m->layer[l];
        ref_dense(m, &ly->wih, p, W);
        ref_dense(m, &ly->whh, p, U);
        const double *bi = p + (ly->b_ih - m->params), *bh = p + (ly->b_hh - m->params);
        for (int b = 0; b < B; b++)
            for (int j = 0; j < H; j++) {
                size_t k = ((size_t)l * B + b) * H + j;
                h[b * H + j] = d->h0 ? d->h0[k] : 0;
                c[b * H + j] = d->c0 ? d->c0[k] : 0;
            }
        for (int t = 0; t < T; t++)
            for (int b = 0; b < B; b++) {
                const double *x = X + ((size_t)t * B + b) * in;
                for (int r = 0; r < 4 * H; r++) {
                    double s = bi[r] + bh[r];
                    for (int k = 0; k < in; k++) s += W[r * in + k] * x[k];
                    for (int k = 0; k < H; k++) s += U[r * H + k] * h[b * H + k];
                    gates[r] = s;
                }
                for (int j = 0; j < H; j++) {
                    double ig = sig(gates[j]), fg = sig(gates[H + j]), gg = tanh(gates[2 * H + j]),
                           og = sig(gates[3 * H + j]);
                    c[b * H + j] = fg * c[b * H + j] + ig * gg;
                    Y[((size_t)t * B + b) * H + j] = og * tanh(c[b * H + j]);
                }
                for (int j = 0; j < H; j++) h[b * H + j] = Y[((size_t)t * B + b) * H + j];
            }
        memcpy(X, Y, (size_t)T * B * H * sizeof(double));
        in = H;
    }
    double *Wh = calloc((size_t)V * H, sizeof(double));
    ref_dense(m, &m->head, p, Wh);
    const double *hb = p + (m->head_b - m->params);
    bool per_step = a->head == FL_HEAD_PER_STEP;
    int rows = per_step ? T * B : B;
    double loss = 0;
    double *z = calloc(V, sizeof(double));
    for (int r = 0; r < rows; r++) {
        const double *x = X + (per_step ? (size_t)r : (size_t)(T - 1) * B + r) * H;
        double mxz = -1e300;
        for (int v = 0; v < V; v++) {
            double s = hb[v];
            for (int k = 0; k < H; k++) s += Wh[v * H + k] * x[k];
            z[v] = s;
            if (s > mxz) mxz = s;
        }
        double se = 0;
        for (int v = 0; v < V; v++) se += exp(z[v] - mxz);
        loss += log(se) + mxz - z[d->targets[r]];
    }
    free(X), free(Y), free(W), free(U), free(h), free(c), free(gates), free(Wh), free(z);
    return loss / rows;
}

static problem lm_problem(fl_mat_spec ih, fl_mat_spec hh, fl_mat_spec head) {
    problem p = {.arch = {.vocab = 5, .input = 3, .hidden = 4, .layers = 2, .head = FL_HEAD_PER_STEP,
                          .head_out = 5},
                 .B = 2, .T = 4, .use_state = true};
    for (int l = 0; l < 2; l++) {
        p.specs[2 * l] = ih;
        p.specs[2 * l + 1] = hh;
    }
    p.specs[4] = head;
    return p;
}

static problem cls_problem(fl_mat_spec ih, fl_mat_spec hh, fl_mat_spec head) {
    problem p = {.arch = {.vocab = 0, .input = 3, .hidden = 5, .layers = 2, .head = FL_HEAD_LAST_STEP,
                          .head_out = 3},
                 .B = 3, .T = 5, .use_state = false};
    for (int l = 0; l < 2; l++) {
        p.specs[2 * l] = ih;
        p.specs[2 * l + 1] = hh;
    }
    p.specs[4] = head;
    return p;
}

static void test_lm_dense(void **st) {
    problem p = lm_problem(DN, DN, DN);
    check_elementwise(&p, ref_loss, 11);
}
static void test_lm_svd(void **st) {
    problem p = lm_problem((fl_mat_spec){FL_METHOD_SVD, 2}, (fl_mat_spec){FL_METHOD_SVD, 3},
                           (fl_mat_spec){FL_METHOD_SVD, 2});
    check_elementwise(&p, ref_loss, 11);
}
static void test_lm_cp(void **st) {
    problem p = lm_problem((fl_mat_spec){FL_METHOD_CP, 3}, (fl_mat_spec){FL_METHOD_CP, 2}, DN);
    check_elementwise(&p, ref_loss, 11);
}
static void test_lm_mixed(void **st) {
    problem p = lm_problem(DN, DN, DN);
    p.specs[0] = (fl_mat_spec){FL_METHOD_CP, 2};
    p.specs[1] = (fl_mat_spec){FL_METHOD_SVD, 2};
    p.specs[3] = (fl_mat_spec){FL_METHOD_CP, 5};
    p.arch.layers = 2;
    check_elementwise(&p, ref_loss, 11);
}
static void test_cls_dense(void **st) {
    problem p = cls_problem(DN, DN, DN);
    check_elementwise(&p, ref_loss, 11);
}
static void test_cls_svd(void **st) {
    problem p = cls_problem((fl_mat_spec){FL_METHOD_SVD, 2}, (fl_mat_spec){FL_METHOD_SVD, 4},
                            (fl_mat_spec){FL_METHOD_SVD, 2});
    check_elementwise(&p, ref_loss, 11);
}
static void test_cls_cp(void **st) {
    problem p = cls_problem((fl_mat_spec){FL_METHOD_CP, 4}, (fl_mat_spec){FL_METHOD_CP, 3}, DN);
    p.use_state = true;
    check_elementwise(&p, ref_loss, 11);
}

/* kann-style: perturb all parameters along a random direction u; compare the directional
 * derivative g.u with (L(p + eps u) - L(p - eps u)) / 2 eps on the float code, dropout included
 * (the same masks every evaluation). */
static void check_direction(const problem *p, float dropout) {
    fl_model *m = make_model(p, 21);
    data d;
    make_data(p, 22, &d);
    fl_bptt_batch in = batch_of(p, &d);
    double loss;
    fl_model *g = grad_of(p, m, &in, dropout, 5, &loss);
    fl_rng r;
    fl_rng_seed(&r, 23);
    float *u = calloc(m->n_params, sizeof(float));
    float *base = malloc(m->n_params * sizeof(float));
    memcpy(base, m->params, m->n_params * sizeof(float));
    double dd = 0;
    for (size_t i = 0; i < m->n_params; i++) {
        u[i] = (float)fl_rng_normal(&r);
        dd += (double)u[i] * g->params[i];
    }
    fl_bptt *w;
    assert_int_equal(fl_bptt_create(m, p->B, p->T, &w), FL_OK);
    const float eps = 2e-3f;
    double l2[2];
    for (int s = 0; s < 2; s++) {
        for (size_t i = 0; i < m->n_params; i++) m->params[i] = base[i] + (s ? -eps : eps) * u[i];
        fl_rng dr;
        fl_rng_seed(&dr, 5);
        assert_int_equal(fl_bptt_forward(w, m, &in, dropout, dropout > 0 ? &dr : NULL, &l2[s], NULL), FL_OK);
    }
    double num = (l2[0] - l2[1]) / (2 * eps);
    if (fabs(num - dd) > 1e-2 * fabs(dd) + 1e-4) fail_msg("directional derivative %.8g, numeric %.8g", dd, num);
    fl_bptt_free(w);
    free(u);
    free(base);
    fl_model_free(g);
    fl_model_free(m);
    free_data(&d);
}

static void test_direction_lm(void **st) {
    problem p = {.arch = {.vocab = 20, .input = 8, .hidden = 16, .layers = 2, .head = FL_HEAD_PER_STEP,
                          .head_out = 20},
                 .B = 3, .T = 12, .use_state = true};
    for (int i = 0; i < 5; i++) p.specs[i] = DN;
    check_direction(&p, 0.3f);
    p.specs[0] = (fl_mat_spec){FL_METHOD_SVD, 4};
    p.specs[1] = (fl_mat_spec){FL_METHOD_SVD, 6};
    p.specs[2] = (fl_mat_spec){FL_METHOD_CP, 8};
    p.specs[3] = (fl_mat_spec){FL_METHOD_CP, 6};
    p.specs[4] = (fl_mat_spec){FL_METHOD_SVD, 5};
    check_direction(&p, 0.3f);
}

static void test_direction_cls(void **st) {
    problem p = {.arch = {.vocab = 0, .input = 7, .hidden = 12, .layers = 3, .head = FL_HEAD_LAST_STEP,
                          .head_out = 4},
                 .B = 4, .T = 9};
    for (int i = 0; i < 7; i++) p.specs[i] = DN;
    check_direction(&p, 0.0f);
    p.specs[2] = (fl_mat_spec){FL_METHOD_CP, 5};
    p.specs[5] = (fl_mat_spec){FL_METHOD_SVD, 3};
    check_direction(&p, 0.25f);
}

/* Chain rule: with W = U V, dU = dW V^T and dV = U^T dW; with CP, dA[g,r] = sum_ij dW[gH+i, j]
 * B[i,r] C[j,r]. dW comes from a dense model holding the reconstructed matrices. */
static void test_factor_chain_rule(void **st) {
    problem pf = lm_problem((fl_mat_spec){FL_METHOD_CP, 3}, (fl_mat_spec){FL_METHOD_SVD, 2},
                            (fl_mat_spec){FL_METHOD_SVD, 3});
    problem pd = lm_problem(DN, DN, DN);
    pd.B = pf.B = 3;
    pd.T = pf.T = 6;
    fl_model *mf = make_model(&pf, 31), *md;
    assert_int_equal(fl_model_create(&pd.arch, NULL, &md), FL_OK);
    for (size_t t = 0; t < md->n_tensors; t++) {
        const fl_tensor *td = &md->tensors[t];
        const fl_tensor *tf = fl_model_find_tensor(mf, td->name);
        if (tf) memcpy(md->params + td->offset, mf->params + tf->offset, td->count * sizeof(float));
    }
    for (size_t i = 0; i < fl_model_num_matrices(md); i++)
        fl_mat_to_dense(fl_model_mat(mf, i), fl_model_mat(md, i)->w);
    data d;
    make_data(&pf, 32, &d);
    fl_bptt_batch in = batch_of(&pf, &d);
    double lf, ld;
    fl_model *gf = grad_of(&pf, mf, &in, 0, 0, &lf);
    fl_model *gd = grad_of(&pd, md, &in, 0, 0, &ld);
    assert_true(fabs(lf - ld) < 1e-5);
    for (size_t i = 0; i < fl_model_num_matrices(md); i++) {
        const fl_mat *w = fl_model_mat(mf, i), *gw = fl_model_mat(gf, i), *G = fl_model_mat(gd, i);
        const int rows = w->rows, cols = w->cols, R = w->rank, H = rows / 4;
        for (int r = 0; r < R; r++) {
            if (w->method == FL_METHOD_SVD) {
                for (int a = 0; a < rows; a++) {
                    double s = 0;
                    for (int j = 0; j < cols; j++) s += (double)G->w[a * cols + j] * w->v[r * cols + j];
                    assert_true(fabs(s - gw->u[a * R + r]) <= 1e-5 + 1e-3 * fabs(s));
                }
            } else if (w->method == FL_METHOD_CP) {
                for (int g = 0; g < 4; g++) {
                    double s = 0;
                    for (int a = 0; a < H; a++)
                        for (int j = 0; j < cols; j++)
                            s += (double)G->w[(g * H + a) * cols + j] * w->b[a * R + r] * w->c[j * R + r];
                    assert_true(fabs(s - gw->a[g * R + r]) <= 1e-5 + 1e-3 * fabs(s));
                }
            }
        }
    }
    /* Biases, embedding and head bias do not depend on the storage method. */
    const fl_tensor *te = fl_model_find_tensor(gd, "embedding.weight");
    const fl_tensor *tf = fl_model_find_tensor(gf, "embedding.weight");
    for (size_t k = 0; k < te->count; k++)
        assert_true(fabs(gd->params[te->offset + k] - gf->params[tf->offset + k]) < 1e-5);
    fl_model_free(gf);
    fl_model_free(gd);
    fl_model_free(mf);
    fl_model_free(md);
    free_data(&d);
}

/* Backward adds into the gradient model: two backward passes give twice the gradient. */
static void test_accumulates(void **st) {
    problem p = cls_problem(DN, (fl_mat_spec){FL_METHOD_SVD, 2}, DN);
    fl_model *m = make_model(&p, 41), *g;
    data d;
    make_data(&p, 42, &d);
    fl_bptt_batch in = batch_of(&p, &d);
    double loss;
    fl_model *g1 = grad_of(&p, m, &in, 0, 0, &loss);
    assert_int_equal(fl_model_create(&p.arch, p.specs, &g), FL_OK);
    fl_bptt *w;
    assert_int_equal(fl_bptt_create(m, p.B, p.T, &w), FL_OK);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(fl_bptt_forward(w, m, &in, 0, NULL, &loss, NULL), FL_OK);
        fl_bptt_backward(w, m, g);
    }
    for (size_t i = 0; i < m->n_params; i++) assert_true(fabs(g->params[i] - 2 * g1->params[i]) < 1e-6);
    /* Shapes outside the workspace are refused. */
    in.batch = p.B + 1;
    assert_int_equal(fl_bptt_forward(w, m, &in, 0, NULL, &loss, NULL), FL_ERR_ARG);
    fl_bptt_free(w);
    fl_model_free(g);
    fl_model_free(g1);
    fl_model_free(m);
    free_data(&d);
}

/* ---------------------------------------------------------------- PyTorch golden */

/* A few optimiser steps of fl_trainer (batching, carried state, epoch reset, clipping, SGD with
 * momentum / Adam) against torch.optim on the same data: losses at every step, and for SGD the
 * final weights. (Adam's final weights are not compared: for gradient entries near zero its
 * normalised step depends on rounding.) */
#include "fastlstm/train.h"

static void check_training(const char *dir, const char *name, fl_optim optim) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.bin", dir, name);
    golden gd = {0};
    if (!golden_load(path, &gd)) fail_msg("cannot read %s", path);
    fl_arch a = {.vocab = 9, .input = 5, .hidden = 6, .layers = 2, .head = FL_HEAD_PER_STEP, .head_out = 9};
    fl_model *m;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    for (size_t t = 0; t < m->n_tensors; t++) {
        const record *r = golden_find(&gd, m->tensors[t].name);
        assert_non_null(r);
        assert_int_equal(r->count, m->tensors[t].count);
        memcpy(m->params + m->tensors[t].offset, r->data, r->count * sizeof(float));
    }
    const record *tok = golden_find(&gd, "tokens"), *losses = golden_find(&gd, "losses");
    fl_dataset *d;
    assert_int_equal(fl_dataset_lm(tok->data, tok->count, 9, &d), FL_OK);
    fl_train_opts o = fl_train_opts_default();
    o.optim = optim;
    o.lr = optim == FL_OPTIM_SGD ? 0.5f : 0.01f;
    o.momentum = optim == FL_OPTIM_SGD ? 0.9f : 0.0f;
    o.clip = 0.5f;
    o.batch = 3;
    o.bptt = 4;
    fl_trainer *t;
    assert_int_equal(fl_trainer_create(m, &o, &t), FL_OK);
    for (size_t s = 0; s < losses->count; s++) {
        double loss, want = ((float *)losses->data)[s];
        assert_int_equal(fl_trainer_step(t, d, &loss), FL_OK);
        if (fabs(loss - want) > 1e-4 * fabs(want)) fail_msg("%s step %zu: loss %.7g, torch %.7g", name, s, loss, want);
    }
    assert_int_equal(fl_trainer_epoch(t), 1); /* 4 windows per epoch: the run crossed an epoch */
    for (size_t k = 0; optim == FL_OPTIM_SGD && k < m->n_tensors; k++) {
        char fname[80];
        snprintf(fname, sizeof fname, "final.%s", m->tensors[k].name);
        const record *r = golden_find(&gd, fname);
        const float *ref = r->data, *our = m->params + m->tensors[k].offset;
        for (size_t i = 0; i < r->count; i++)
            if (fabs(ref[i] - our[i]) > 1e-4 * (1 + fabs(ref[i])))
                fail_msg("%s: %s[%zu] = %.7g, torch %.7g", name, fname, i, our[i], ref[i]);
    }
    fl_trainer_free(t);
    fl_dataset_free(d);
    fl_model_free(m);
    golden_free(&gd);
}

static void test_torch_golden(void **st) {
    const char *dir = tmp_dir;
    golden_generate(dir, "");
    const fl_mat_spec S3 = {FL_METHOD_SVD, 3}, S4 = {FL_METHOD_SVD, 4}, S5 = {FL_METHOD_SVD, 5};
    const fl_mat_spec C3 = {FL_METHOD_CP, 3}, C4 = {FL_METHOD_CP, 4}, S2 = {FL_METHOD_SVD, 2};
    problem lm = {.arch = {.vocab = 11, .input = 6, .hidden = 8, .layers = 2, .head = FL_HEAD_PER_STEP,
                           .head_out = 11},
                  .B = 3, .T = 7, .use_state = true};
    problem cls = {.arch = {.vocab = 0, .input = 5, .hidden = 7, .layers = 2, .head = FL_HEAD_LAST_STEP,
                            .head_out = 4},
                   .B = 4, .T = 6};
    for (int i = 0; i < 5; i++) lm.specs[i] = cls.specs[i] = DN;
    check_golden(dir, "lm_dense", &lm);
    check_golden(dir, "cls_dense", &cls);
    lm.specs[0] = lm.specs[2] = S3;
    lm.specs[1] = lm.specs[3] = S4;
    lm.specs[4] = S5;
    check_golden(dir, "lm_svd", &lm);
    cls.specs[0] = cls.specs[2] = C3;
    cls.specs[1] = cls.specs[3] = C4;
    cls.specs[4] = S2;
    check_golden(dir, "cls_cp", &cls);
    check_training(dir, "train_sgd", FL_OPTIM_SGD);
    check_training(dir, "train_adam", FL_OPTIM_ADAM);
}

/* The golden files live in a scratch directory removed after the group, also when a test failed. */
static int setup(void **st) { return tmp_dir_make("fl_grad_golden"); }

static int teardown(void **st) { return tmp_dir_remove(); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lm_dense),        cmocka_unit_test(test_lm_svd),
        cmocka_unit_test(test_lm_cp),           cmocka_unit_test(test_lm_mixed),
        cmocka_unit_test(test_cls_dense),       cmocka_unit_test(test_cls_svd),
        cmocka_unit_test(test_cls_cp),          cmocka_unit_test(test_direction_lm),
        cmocka_unit_test(test_direction_cls),   cmocka_unit_test(test_factor_chain_rule),
        cmocka_unit_test(test_accumulates),     cmocka_unit_test(test_torch_golden),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
