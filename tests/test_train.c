/* Training: optimiser steps against their formulas, learning small tasks (dense, SVD, CP, token
 * ids, a language model), fine-tuning, learning-rate decay, gradient hooks, frozen dense matrices,
 * allocation failures, and Fashion-MNIST when installed. (Checkpoints: test_checkpoint.c; data sets,
 * vocabularies and the CLI: test_train_data.c.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "fastlstm/train.h"
#include "internal.h"
#include "npy.h"
#include "testutil.h"
#include "train/train_internal.h"
#include "train_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void learn_sign(fl_method method, int rank) {
    fl_dataset *tr = sign_task(1024, 8, 1), *te = sign_task(400, 8, 2);
    fl_model *m = classifier(16, 1, method, rank);
    fl_train_opts o = fl_train_opts_default();
    o.lr = 0.02f;
    o.batch = 32;
    o.clip = 5;
    fl_trainer *t;
    assert_int_equal(fl_trainer_create(m, &o, &t), FL_OK);
    fl_eval_result before, after;
    assert_int_equal(fl_model_evaluate(m, te, 64, 1, &before), FL_OK);
    fl_train_run run = {.train = tr, .epochs = 25};
    assert_int_equal(fl_trainer_run(t, &run), FL_OK);
    assert_int_equal(fl_trainer_epoch(t), 25);
    assert_int_equal(fl_trainer_steps(t), 25 * 32);
    assert_int_equal(fl_model_evaluate(m, te, 64, 1, &after), FL_OK);
    print_message("sign-of-sum, method %d: test accuracy %.3f -> %.3f, loss %.3f -> %.3f\n", (int)method,
                  before.accuracy, after.accuracy, before.loss, after.loss);
    assert_true(after.accuracy >= 0.95);
    assert_true(after.loss < 0.5 * before.loss);
    assert_int_equal(after.count, 400);
    fl_trainer_free(t);
    fl_model_free(m);
    fl_dataset_free(tr);
    fl_dataset_free(te);
}

static void test_learn_dense(void **st) { learn_sign(FL_METHOD_DENSE, 0); }
static void test_learn_svd(void **st) { learn_sign(FL_METHOD_SVD, 4); }
static void test_learn_cp(void **st) { learn_sign(FL_METHOD_CP, 8); }

/* Fine-tuning after decomposition: a dense classifier is trained, its LSTM matrices are replaced by
 * rank-2 SVD factors (fl_model_decompose), and training the factors recovers the loss. */
static void test_finetune_after_decompose(void **st) {
    fl_dataset *tr = sign_task(1024, 8, 1), *te = sign_task(400, 8, 2);
    fl_model *m = classifier(16, 1, FL_METHOD_DENSE, 0), *dm;
    fl_train_opts o = fl_train_opts_default();
    o.lr = 0.02f;
    o.clip = 5;
    fl_trainer *t;
    assert_int_equal(fl_trainer_create(m, &o, &t), FL_OK);
    fl_train_run run = {.train = tr, .epochs = 15};
    assert_int_equal(fl_trainer_run(t, &run), FL_OK);
    fl_trainer_free(t);
    fl_decomp_opts d = fl_decomp_opts_default();
    d.method = FL_METHOD_SVD;
    d.rank = 1; /* W_ih (64 x 1) has rank 1 anyway; W_hh (64 x 16) loses a lot */
    assert_int_equal(fl_model_decompose(m, &d, &dm), FL_OK);
    assert_int_equal(fl_model_mat_spec(dm, 1).method, FL_METHOD_SVD);
    fl_eval_result dense, cut, tuned;
    assert_int_equal(fl_model_evaluate(m, te, 100, 1, &dense), FL_OK);
    assert_int_equal(fl_model_evaluate(dm, te, 100, 1, &cut), FL_OK);
    o.lr = 0.01f;
    o.freeze_dense = 1;
    assert_int_equal(fl_trainer_create(dm, &o, &t), FL_OK);
    run.epochs = 5;
    assert_int_equal(fl_trainer_run(t, &run), FL_OK);
    assert_int_equal(fl_model_evaluate(dm, te, 100, 1, &tuned), FL_OK);
    print_message("dense %.3f (loss %.3f), rank-1 SVD %.3f (%.3f), fine-tuned %.3f (%.3f)\n", dense.accuracy,
                  dense.loss, cut.accuracy, cut.loss, tuned.accuracy, tuned.loss);
    assert_true(tuned.loss < cut.loss);
    assert_true(tuned.accuracy >= 0.93);
    fl_trainer_free(t);
    fl_model_free(m);
    fl_model_free(dm);
    fl_dataset_free(tr);
    fl_dataset_free(te);
}

/* Classification from token ids through an embedding: "does token 3 occur?". */
static void test_learn_ids(void **st) {
    const int n = 1024, T = 10;
    int32_t *ids = malloc((size_t)n * T * sizeof(int32_t)), *y = malloc((size_t)n * sizeof(int32_t));
    fl_rng r;
    fl_rng_seed(&r, 17);
    for (int i = 0; i < n; i++) {
        y[i] = 0;
        for (int t = 0; t < T; t++) {
            ids[i * T + t] = (int32_t)(fl_rng_next(&r) % 12);
            y[i] |= ids[i * T + t] == 3;
        }
    }
    fl_dataset *d;
    assert_int_equal(fl_dataset_classify(n, T, 0, NULL, ids, y, 2, &d), FL_OK);
    assert_int_equal(fl_dataset_vocab(d), 12);
    fl_arch a = {.vocab = 12, .input = 8, .hidden = 16, .layers = 1, .head = FL_HEAD_LAST_STEP, .head_out = 2};
    fl_mat_spec specs[3] = {{FL_METHOD_CP, 6}, {FL_METHOD_SVD, 6}, {FL_METHOD_DENSE, 0}};
    fl_model *m;
    assert_int_equal(fl_model_create(&a, specs, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 2), FL_OK);
    fl_train_opts o = fl_train_opts_default();
    o.lr = 0.02f;
    fl_trainer *t;
    assert_int_equal(fl_trainer_create(m, &o, &t), FL_OK);
    fl_train_run run = {.train = d, .epochs = 15};
    assert_int_equal(fl_trainer_run(t, &run), FL_OK);
    fl_eval_result ev;
    assert_int_equal(fl_model_evaluate(m, d, 128, 1, &ev), FL_OK);
    print_message("token-3 detection (embedding, CP/SVD): accuracy %.3f\n", ev.accuracy);
    assert_true(ev.accuracy >= 0.95);
    fl_trainer_free(t);
    fl_model_free(m);
    fl_dataset_free(d);
    free(ids);
    free(y);
}

/* A language model learns a periodic token stream: perplexity close to 1. */
static void test_learn_lm(void **st) {
    const int V = 8, N = 4000;
    int32_t *tok = malloc(N * sizeof(int32_t));
    const int pattern[6] = {3, 1, 4, 1, 5, 7};
    for (int i = 0; i < N; i++) tok[i] = pattern[i % 6];
    fl_dataset *d;
    assert_int_equal(fl_dataset_lm(tok, N, V, &d), FL_OK);
    fl_arch a = {.vocab = V, .input = 8, .hidden = 24, .layers = 2, .head = FL_HEAD_PER_STEP, .head_out = V};
    fl_mat_spec specs[5] = {{FL_METHOD_SVD, 4}, {FL_METHOD_CP, 8}, {FL_METHOD_DENSE, 0}, {FL_METHOD_SVD, 6},
                            {FL_METHOD_SVD, 4}};
    fl_model *m;
    assert_int_equal(fl_model_create(&a, specs, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 3), FL_OK);
    fl_train_opts o = fl_train_opts_default();
    o.lr = 0.01f;
    o.batch = 8;
    o.bptt = 10;
    o.clip = 1;
    fl_trainer *t;
    assert_int_equal(fl_trainer_create(m, &o, &t), FL_OK);
    fl_train_run run = {.train = d, .epochs = 6};
    assert_int_equal(fl_trainer_run(t, &run), FL_OK);
    fl_eval_result ev;
    assert_int_equal(fl_model_evaluate(m, d, 4, 20, &ev), FL_OK);
    print_message("periodic LM: perplexity %.3f, accuracy %.3f\n", ev.perplexity, ev.accuracy);
    /* "1" is followed by 4 or 5: only two steps need the longer context; the rest are certain. */
    assert_true(ev.perplexity < 1.3);
    assert_true(ev.accuracy > 0.95);
    fl_trainer_free(t);
    fl_model_free(m);
    fl_dataset_free(d);
    free(tok);
}

/* A trainer that continues another (fl_trainer_continue_from) on a copy of its model takes the
 * same steps as the original would (plain SGD: no optimiser state to lose): same losses, same
 * weights, same step count; a fresh trainer instead starts the epoch over (another batch, zero LM
 * state), so its loss differs. Mismatched batch is FL_ERR_ARG. */
static void test_continue_from(void **st) {
    const int V = 11, N = 3000;
    int32_t *tok = malloc(N * sizeof(int32_t));
    for (int i = 0; i < N; i++) tok[i] = (i * 7 + i / 13) % V;
    fl_dataset *d;
    assert_int_equal(fl_dataset_lm(tok, N, V, &d), FL_OK);
    fl_arch a = {.vocab = V, .input = 6, .hidden = 10, .layers = 2, .head = FL_HEAD_PER_STEP, .head_out = V};
    fl_model *m, *copy, *fresh;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 5), FL_OK);
    fl_train_opts o = fl_train_opts_default();
    o.optim = FL_OPTIM_SGD;
    o.lr = 0.5f;
    o.batch = 4;
    o.bptt = 7;
    o.dropout = 0.25f; // the random stream must carry over too
    fl_trainer *t, *t2, *t3;
    assert_int_equal(fl_trainer_create(m, &o, &t), FL_OK);
    double loss;
    for (int i = 0; i < 5; i++) assert_int_equal(fl_trainer_step(t, d, &loss), FL_OK);
    assert_int_equal(fl_model_clone(m, &copy), FL_OK);
    assert_int_equal(fl_model_clone(m, &fresh), FL_OK);
    assert_int_equal(fl_trainer_create(copy, &o, &t2), FL_OK);
    assert_int_equal(fl_trainer_create(fresh, &o, &t3), FL_OK);
    assert_int_equal(fl_trainer_continue_from(t2, t), FL_OK);
    assert_int_equal(fl_trainer_steps(t2), 5);
    for (int i = 0; i < 3; i++) {
        double l1, l2, l3;
        assert_int_equal(fl_trainer_step(t, d, &l1), FL_OK);
        assert_int_equal(fl_trainer_step(t2, d, &l2), FL_OK);
        assert_int_equal(fl_trainer_step(t3, d, &l3), FL_OK);
        assert_true(l1 == l2);
        if (i == 0) assert_true(fabs(l1 - l3) > 1e-6);
    }
    assert_int_equal(fl_trainer_steps(t2), 8);
    assert_memory_equal(m->params, copy->params, m->n_params * sizeof(float));
    fl_train_opts o2 = o;
    o2.batch = 5;
    fl_trainer *t4;
    assert_int_equal(fl_trainer_create(fresh, &o2, &t4), FL_OK);
    assert_int_equal(fl_trainer_continue_from(t4, t), FL_ERR_ARG);
    fl_trainer_free(t4);
    fl_trainer_free(t3);
    fl_trainer_free(t2);
    fl_trainer_free(t);
    fl_model_free(fresh);
    fl_model_free(copy);
    fl_model_free(m);
    fl_dataset_free(d);
    free(tok);
}

/* One SGD step is p - lr g; with momentum the second is p - lr (mu g1 + g2); one Adam step is
 * p - lr g / (|g| + eps); clipping scales g by clip / ||g||. g comes from a separate backward. */
static void test_optimizer_formulas(void **st) {
    fl_dataset *d = sign_task(16, 5, 9);
    for (int mode = 0; mode < 3; mode++) {
        fl_model *m = classifier(6, 2, FL_METHOD_DENSE, 0), *m0, *g;
        assert_int_equal(fl_model_clone(m, &m0), FL_OK);
        fl_train_opts o = fl_train_opts_default();
        o.batch = 16;
        o.shuffle = 0;
        o.optim = mode == 1 ? FL_OPTIM_ADAM : FL_OPTIM_SGD;
        o.lr = 0.1f;
        if (mode == 2) o.clip = 0.01f;
        fl_trainer *t;
        assert_int_equal(fl_trainer_create(m, &o, &t), FL_OK);
        /* Reference gradient on the same batch (the whole set, in order). */
        assert_int_equal(fl_model_create(&m->arch, NULL, &g), FL_OK);
        fl_bptt *w;
        assert_int_equal(fl_bptt_create(m, 16, 5, &w), FL_OK);
        float x[80];
        int32_t y[16];
        for (int b = 0; b < 16; b++) {
            y[b] = d->labels[b];
            for (int s = 0; s < 5; s++) x[s * 16 + b] = d->x[b * 5 + s];
        }
        fl_bptt_batch in = {16, 5, x, NULL, y, NULL, NULL, NULL};
        double loss, loss2;
        assert_int_equal(fl_bptt_forward(w, m, &in, 0, NULL, &loss, NULL), FL_OK);
        fl_bptt_backward(w, m, g);
        assert_int_equal(fl_trainer_step(t, d, &loss2), FL_OK);
        assert_true(loss == loss2);
        double norm = 0;
        for (size_t i = 0; i < m->n_params; i++) norm += (double)g->params[i] * g->params[i];
        norm = sqrt(norm);
        for (size_t i = 0; i < m->n_params; i++) {
            double gi = g->params[i], expect;
            if (mode == 0) expect = m0->params[i] - 0.1 * gi;
            else if (mode == 1) expect = m0->params[i] - 0.1 * gi / (fabs(gi) + 1e-8);
            else expect = m0->params[i] - 0.1 * gi * 0.01 / (norm + 1e-6);
            if (fabs(m->params[i] - expect) > 1e-6 + 1e-5 * fabs(expect))
                fail_msg("mode %d param %zu: %.9g, expected %.9g", mode, i, m->params[i], expect);
        }
        fl_bptt_free(w);
        fl_trainer_free(t);
        fl_model_free(g);
        fl_model_free(m);
        fl_model_free(m0);
    }
    fl_dataset_free(d);
}

/* Three steps of SGD with momentum and of Adam, both with weight decay, against torch.optim's
 * update rules in double: g' = g + wd p; SGD: buf = g' (first step), then mu buf + g'; p -= lr buf.
 * Adam: m = b1 m + (1 - b1) g', v = b2 v + (1 - b2) g'^2,
 * p -= lr / (1 - b1^t) m / (sqrt(v) / sqrt(1 - b2^t) + eps). Each step's gradient is taken at the
 * trainer's own parameters (same batch: the whole set, unshuffled), so the optimiser state is the
 * only thing carried between steps. */
static void test_optimizer_steps(void **st) {
    fl_dataset *d = sign_task(16, 5, 9);
    for (int mode = 0; mode < 2; mode++) {
        fl_model *m = classifier(6, 2, FL_METHOD_DENSE, 0), *g;
        fl_train_opts o = fl_train_opts_default();
        o.batch = 16;
        o.shuffle = 0;
        o.optim = mode ? FL_OPTIM_ADAM : FL_OPTIM_SGD;
        o.lr = mode ? 0.01f : 0.1f;
        o.momentum = 0.9f;
        o.beta1 = 0.8f;
        o.beta2 = 0.95f;
        o.eps = 1e-3f;
        o.weight_decay = 0.05f;
        fl_trainer *t;
        assert_int_equal(fl_trainer_create(m, &o, &t), FL_OK);
        assert_int_equal(fl_model_create(&m->arch, NULL, &g), FL_OK);
        fl_bptt *w;
        assert_int_equal(fl_bptt_create(m, 16, 5, &w), FL_OK);
        float x[80];
        int32_t y[16];
        for (int b = 0; b < 16; b++) {
            y[b] = d->labels[b];
            for (int s = 0; s < 5; s++) x[s * 16 + b] = d->x[b * 5 + s];
        }
        const size_t n = m->n_params;
        double *s1 = calloc(n, sizeof(double)), *s2 = calloc(n, sizeof(double)), *want = malloc(n * sizeof(double));
        for (int step = 1; step <= 3; step++) {
            fl_bptt_batch in = {16, 5, x, NULL, y, NULL, NULL, NULL};
            double loss;
            memset(g->params, 0, n * sizeof(float));
            assert_int_equal(fl_bptt_forward(w, m, &in, 0, NULL, &loss, NULL), FL_OK);
            fl_bptt_backward(w, m, g);
            for (size_t i = 0; i < n; i++) {
                double p = m->params[i], gi = g->params[i] + 0.05 * (double)m->params[i];
                if (mode == 0) {
                    s1[i] = step == 1 ? gi : 0.9 * s1[i] + gi;
                    want[i] = p - 0.1 * s1[i];
                } else {
                    s1[i] = 0.8 * s1[i] + 0.2 * gi;
                    s2[i] = 0.95 * s2[i] + 0.05 * gi * gi;
                    double bc1 = 1 - pow(0.8, step), bc2 = 1 - pow(0.95, step);
                    want[i] = p - 0.01 / bc1 * s1[i] / (sqrt(s2[i]) / sqrt(bc2) + 1e-3);
                }
            }
            assert_int_equal(fl_trainer_step(t, d, NULL), FL_OK);
            for (size_t i = 0; i < n; i++)
                if (fabs(m->params[i] - want[i]) > 1e-6 + 1e-5 * fabs(want[i]))
                    fail_msg("%s step %d param %zu: %.9g, expected %.9g", mode ? "adam" : "sgd", step, i,
                             m->params[i], want[i]);
        }
        free(s1);
        free(s2);
        free(want);
        fl_bptt_free(w);
        fl_trainer_free(t);
        fl_model_free(g);
        fl_model_free(m);
    }
    fl_dataset_free(d);
}

/* A non-finite loss stops the step with FL_ERR_NUMERIC before anything changes: parameters,
 * optimiser state and step count stay as they were. */
static void test_nonfinite_loss(void **st) {
    fl_dataset *d = sign_task(16, 5, 9);
    fl_model *m = classifier(4, 1, FL_METHOD_DENSE, 0), *m0;
    m->head_b[0] = INFINITY; /* every logit row: inf - inf = NaN in the softmax */
    assert_int_equal(fl_model_clone(m, &m0), FL_OK);
    fl_train_opts o = fl_train_opts_default();
    o.batch = 8;
    fl_trainer *t;
    assert_int_equal(fl_trainer_create(m, &o, &t), FL_OK);
    double loss = 0;
    assert_int_equal(fl_trainer_step(t, d, &loss), FL_ERR_NUMERIC);
    assert_non_null(strstr(fl_last_error(), "loss"));
    assert_int_equal(fl_trainer_steps(t), 0);
    for (size_t i = 0; i < m->n_params; i++)
        if (memcmp(&m->params[i], &m0->params[i], sizeof(float)))
            fail_msg("param %zu changed by a failed step", i);
    for (size_t i = 0; i < m->n_params; i++) assert_true(t->s1[i] == 0 && t->s2[i] == 0);
    fl_train_run run = {.train = d, .epochs = 1};
    assert_int_equal(fl_trainer_run(t, &run), FL_ERR_NUMERIC);
    fl_trainer_free(t);
    fl_model_free(m);
    fl_model_free(m0);
    fl_dataset_free(d);
}


/* Learning-rate decay on plateau: with a step too small to change any float weight, the
 * validation loss cannot improve after the first epoch, so lr halves after every later epoch
 * (patience 0), or every other epoch (patience 1). A callback can stop the run. */
static int count_epochs(const fl_train_progress *p, void *user) {
    int *n = user;
    if (p->epoch_end) {
        assert_false(isnan(p->valid_loss));
        assert_true(p->valid_metric >= 0 && p->valid_metric <= 1);
        (*n)++;
    }
    return *n >= 4; /* stop after 4 epochs of the 10 asked for */
}

static void test_lr_decay(void **st) {
    fl_dataset *d = sign_task(40, 4, 13);
    for (int patience = 0; patience < 2; patience++) {
        fl_model *m = classifier(4, 1, FL_METHOD_DENSE, 0);
        fl_train_opts o = fl_train_opts_default();
        o.optim = FL_OPTIM_SGD;
        o.lr = 1e-30f;
        o.lr_decay = 0.5f;
        o.patience = patience;
        o.batch = 20;
        fl_trainer *t;
        assert_int_equal(fl_trainer_create(m, &o, &t), FL_OK);
        int n = 0;
        fl_train_run r = {.train = d, .valid = d, .epochs = 10, .callback = count_epochs, .user = &n};
        assert_int_equal(fl_trainer_run(t, &r), FL_OK);
        assert_int_equal(fl_trainer_epoch(t), 4);
        /* epochs 2, 3, 4 do not improve: 3 decays (patience 0) or 1 (patience 1: after 2 bad) */
        double want = patience == 0 ? 1e-30 * 0.125 : 1e-30 * 0.5;
        assert_true(fabs(fl_trainer_lr(t) - want) < 1e-6 * want);
        fl_trainer_free(t);
        fl_model_free(m);
    }
    fl_dataset_free(d);
}

/* Allocation failures anywhere in creating a trainer or a workspace give FL_ERR_NOMEM and leak
 * nothing (checked under ASan). */
static void test_alloc_failures(void **st) {
    fl_model *m = make_lm();
    fl_train_opts o = fl_train_opts_default();
    o.batch = 3;
    o.bptt = 5;
    int32_t tok[64];
    for (int i = 0; i < 64; i++) tok[i] = i % 12;
    fl_dataset *d;
    assert_int_equal(fl_dataset_lm(tok, 64, 12, &d), FL_OK);
    bool done = false;
    for (long n = 0; n < 200 && !done; n++) {
        fl_trainer *t = NULL;
        fl_alloc_fail_after(n);
        fl_status s = fl_trainer_create(m, &o, &t);
        if (!s) s = fl_trainer_step(t, d, NULL);
        fl_alloc_fail_after(-1);
        if (s == FL_OK) done = true;
        else assert_int_equal(s, FL_ERR_NOMEM);
        fl_trainer_free(t);
    }
    assert_true(done);
    fl_dataset_free(d);
    fl_model_free(m);
}

/* The gradient hook sees the flat gradient and loss and may change them: doubling the gradient
 * doubles a plain SGD step; an error status aborts the step. */
static fl_status double_grad(float *g, size_t n, double *loss, void *user) {
    int *calls = user;
    (*calls)++;
    for (size_t i = 0; i < n; i++) g[i] *= 2;
    *loss *= 2;
    return *calls > 1 ? FL_ERR_IO : FL_OK;
}

static void test_grad_hook(void **st) {
    fl_dataset *d = sign_task(16, 5, 9);
    fl_model *a = classifier(5, 1, FL_METHOD_DENSE, 0), *b = classifier(5, 1, FL_METHOD_DENSE, 0), *p0;
    assert_int_equal(fl_model_clone(a, &p0), FL_OK);
    fl_train_opts o = fl_train_opts_default();
    o.optim = FL_OPTIM_SGD;
    o.lr = 0.1f;
    o.batch = 16;
    fl_trainer *ta, *tb;
    assert_int_equal(fl_trainer_create(a, &o, &ta), FL_OK);
    o.lr = 0.2f;
    assert_int_equal(fl_trainer_create(b, &o, &tb), FL_OK);
    int calls = 0;
    fl_trainer_set_grad_hook(ta, double_grad, &calls);
    double la, lb;
    assert_int_equal(fl_trainer_step(ta, d, &la), FL_OK);
    assert_int_equal(fl_trainer_step(tb, d, &lb), FL_OK);
    assert_true(la == 2 * lb);
    for (size_t i = 0; i < a->n_params; i++) /* p - 0.1 (2g) == p - 0.2 g up to rounding */
        assert_true(fabsf(a->params[i] - b->params[i]) <= 1e-6f * (1 + fabsf(p0->params[i])));
    assert_int_equal(fl_trainer_step(ta, d, &la), FL_ERR_IO);
    assert_int_equal(fl_trainer_steps(ta), 1);
    assert_int_equal(fl_trainer_set_threads(ta, 1), FL_OK);
    assert_int_equal(fl_trainer_set_threads(ta, 0), FL_ERR_ARG);
    fl_trainer_free(ta);
    fl_trainer_free(tb);
    fl_model_free(a);
    fl_model_free(b);
    fl_model_free(p0);
    fl_dataset_free(d);
}

/* --freeze-dense: only factor tensors move. */
static void test_freeze_dense(void **st) {
    fl_dataset *d = sign_task(64, 6, 4);
    fl_model *m = classifier(8, 2, FL_METHOD_SVD, 3), *m0;
    assert_int_equal(fl_model_clone(m, &m0), FL_OK);
    fl_train_opts o = fl_train_opts_default();
    o.freeze_dense = 1;
    o.batch = 16;
    fl_trainer *t;
    assert_int_equal(fl_trainer_create(m, &o, &t), FL_OK);
    for (int k = 0; k < 3; k++) assert_int_equal(fl_trainer_step(t, d, NULL), FL_OK);
    for (size_t k = 0; k < m->n_tensors; k++) {
        const fl_tensor *ts = &m->tensors[k];
        bool factor = strstr(ts->name, ".U") || strstr(ts->name, ".V");
        bool same = !memcmp(m->params + ts->offset, m0->params + ts->offset, ts->count * sizeof(float));
        if (factor == same) fail_msg("%s: %s", ts->name, same ? "did not change" : "changed while frozen");
    }
    fl_trainer_free(t);
    /* A dense model has nothing to fine-tune. */
    fl_model *dm = classifier(4, 1, FL_METHOD_DENSE, 0);
    assert_int_equal(fl_trainer_create(dm, &o, &t), FL_ERR_ARG);
    fl_model_free(dm);
    fl_model_free(m);
    fl_model_free(m0);
    fl_dataset_free(d);
}

/* tools/fashion_mnist.py converts the Debian dataset (when installed) into .npy sequences that
 * load as a 10-class classification set of 28 steps x 28 pixels in [0, 1], and a classifier
 * trained on a few hundred of them beats chance on held-out ones. */
static void test_fashion_mnist(void **st) {
    const char *py = getenv("FL_PYTHON"), *src = getenv("FL_SOURCE_DIR");
    if (!py || !src || access("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz", R_OK)) {
        print_message("Fashion-MNIST or FL_PYTHON / FL_SOURCE_DIR not available; skipping\n");
        skip();
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' '%s/tools/fashion_mnist.py' --limit 600 '%s' > /dev/null", py, src, tmp_dir);
    assert_int_equal(system(cmd), 0);
    fl_dataset *tr, *te;
    assert_int_equal(fl_dataset_load_npy(tmp_path("train_x.npy"), tmp_path("train_y.npy"), 10, &tr), FL_OK);
    assert_int_equal(fl_dataset_load_npy(tmp_path("test_x.npy"), tmp_path("test_y.npy"), 10, &te), FL_OK);
    assert_int_equal(fl_dataset_size(tr), 600);
    assert_int_equal(fl_dataset_seq(tr), 28);
    assert_int_equal(fl_dataset_dim(tr), 28);
    double mean = 0;
    float lo = 1, hi = 0;
    for (size_t i = 0; i < 600 * 28 * 28; i++) {
        mean += tr->x[i];
        lo = tr->x[i] < lo ? tr->x[i] : lo;
        hi = tr->x[i] > hi ? tr->x[i] : hi;
    }
    mean /= 600 * 28 * 28;
    assert_true(lo == 0.0f && hi == 1.0f && mean > 0.15 && mean < 0.5);
    int seen[10] = {0};
    for (int i = 0; i < 600; i++) seen[tr->labels[i]] = 1;
    for (int k = 0; k < 10; k++) assert_true(seen[k]);
    fl_arch a = {.input = 28, .hidden = 32, .layers = 1, .head = FL_HEAD_LAST_STEP, .head_out = 10};
    fl_model *m;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 1), FL_OK);
    fl_train_opts o = fl_train_opts_default();
    o.lr = 0.01f;
    fl_trainer *t;
    assert_int_equal(fl_trainer_create(m, &o, &t), FL_OK);
    fl_train_run run = {.train = tr, .epochs = 4};
    assert_int_equal(fl_trainer_run(t, &run), FL_OK);
    fl_eval_result ev;
    assert_int_equal(fl_model_evaluate(m, te, 200, 1, &ev), FL_OK);
    print_message("Fashion-MNIST (600 train, 4 epochs, hidden 32): test accuracy %.3f\n", ev.accuracy);
    assert_true(ev.accuracy > 0.4); /* chance is 0.1 */
    fl_trainer_free(t);
    fl_model_free(m);
    fl_dataset_free(tr);
    fl_dataset_free(te);
}


static int setup(void **st) { return tmp_dir_make("fl_test_train"); }

/* Removes whatever a failed test left in the scratch directory too. */
static int teardown(void **st) { return tmp_dir_remove(); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_optimizer_formulas), cmocka_unit_test(test_optimizer_steps),
        cmocka_unit_test(test_nonfinite_loss),
        cmocka_unit_test(test_freeze_dense),
        cmocka_unit_test(test_learn_dense),        cmocka_unit_test(test_learn_svd),
        cmocka_unit_test(test_learn_cp),           cmocka_unit_test(test_learn_lm),
        cmocka_unit_test(test_lr_decay),           cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_finetune_after_decompose), cmocka_unit_test(test_learn_ids),
        cmocka_unit_test(test_grad_hook),          cmocka_unit_test(test_fashion_mnist),
        cmocka_unit_test(test_continue_from),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
