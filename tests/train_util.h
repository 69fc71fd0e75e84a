/* Small models and data sets shared by the training tests (test_train.c, test_checkpoint.c,
 * test_train_data.c); static helpers only. */
#ifndef FL_TESTS_TRAIN_UTIL_H
#define FL_TESTS_TRAIN_UTIL_H

#include "fastlstm/train.h"
#include "internal.h"
#include "train/train_internal.h"

#include <stdlib.h>

/* "Sign of the sum": x (n, T, 1) ~ N(0, 1), label = sum_t x_t > 0. */
static inline fl_dataset *sign_task(int n, int T, uint64_t seed) {
    fl_rng r;
    fl_rng_seed(&r, seed);
    float *x = malloc((size_t)n * T * sizeof(float));
    int32_t *y = malloc((size_t)n * sizeof(int32_t));
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int t = 0; t < T; t++) s += x[i * T + t] = (float)fl_rng_normal(&r);
        y[i] = s > 0;
    }
    fl_dataset *d;
    assert_int_equal(fl_dataset_classify(n, T, 1, x, NULL, y, 2, &d), FL_OK);
    free(x);
    free(y);
    return d;
}

static inline fl_model *classifier(int H, int layers, fl_method method, int rank) {
    fl_arch a = {.vocab = 0, .input = 1, .hidden = H, .layers = layers, .head = FL_HEAD_LAST_STEP, .head_out = 2};
    fl_mat_spec specs[9];
    for (int i = 0; i < 2 * layers; i++) specs[i] = (fl_mat_spec){method, rank};
    if (method == FL_METHOD_SVD) specs[0].rank = 1; /* W_ih of layer 0 is (4H, 1) */
    specs[2 * layers] = (fl_mat_spec){FL_METHOD_DENSE, 0};
    fl_model *m;
    assert_int_equal(fl_model_create(&a, specs, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 7), FL_OK);
    return m;
}

/* Two-layer classifier on one feature with SVD, CP and dense matrices mixed. */
static inline fl_model *make_cls(void) {
    fl_arch a = {.vocab = 0, .input = 1, .hidden = 10, .layers = 2, .head = FL_HEAD_LAST_STEP, .head_out = 2};
    fl_mat_spec specs[5] = {{FL_METHOD_SVD, 1}, {FL_METHOD_CP, 4}, {FL_METHOD_DENSE, 0}, {FL_METHOD_SVD, 3},
                            {FL_METHOD_SVD, 2}};
    fl_model *m;
    assert_int_equal(fl_model_create(&a, specs, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 5), FL_OK);
    return m;
}

/* Two-layer language model over 12 tokens, CP and SVD gate matrices. */
static inline fl_model *make_lm(void) {
    fl_arch a = {.vocab = 12, .input = 6, .hidden = 10, .layers = 2, .head = FL_HEAD_PER_STEP, .head_out = 12};
    fl_mat_spec specs[5] = {{FL_METHOD_CP, 3}, {FL_METHOD_SVD, 4}, {FL_METHOD_DENSE, 0}, {FL_METHOD_DENSE, 0},
                            {FL_METHOD_DENSE, 0}};
    fl_model *m;
    assert_int_equal(fl_model_create(&a, specs, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 6), FL_OK);
    return m;
}

#endif
