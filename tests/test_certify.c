/* Certified budgets (src/plan/plan.c, eval.c): the certified loss is computed on the held-back data
 * only, the bound passes over candidates it does not certify, and plans that count on
 * fine-tuning. Expected figures come from fl_model_evaluate (the trainer's forward pass), not the
 * planner's own evaluator. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fastlstm/plan.h"
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { N = 96, T = 6, D = 5, H = 12, C = 3 };

static fl_model *classifier(uint64_t seed) {
    fl_arch a = {.input = D, .hidden = H, .layers = 1, .head = FL_HEAD_LAST_STEP, .head_out = C};
    fl_model *m;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, seed), FL_OK);
    return m;
}

static void random_x(float *x, size_t n, double scale, uint64_t seed) {
    fl_rng r;
    fl_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = (float)(scale * fl_rng_normal(&r));
}

/* The model's own predictions on x (n, T, D). */
static void predict(const fl_model *m, int n, const float *x, int32_t *out) {
    fl_session *s;
    fl_session_opts so = fl_session_opts_default();
    so.max_batch = n;
    so.max_seq = T;
    assert_int_equal(fl_session_create(m, &so, &s), FL_OK);
    float *y = malloc(sizeof(float) * n * C);
    fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = n, .seq = T, .x = x, .y = y};
    assert_int_equal(fl_session_run(s, &io), FL_OK);
    for (int i = 0; i < n; i++) {
        int b = 0;
        for (int k = 1; k < C; k++)
            if (y[i * C + k] > y[i * C + b]) b = k;
        out[i] = b;
    }
    free(y);
    fl_session_free(s);
}

static double accuracy_pct(const fl_model *m, const fl_dataset *d) {
    fl_eval_result e;
    assert_int_equal(fl_model_evaluate(m, d, 32, 35, &e), FL_OK);
    return 100.0 * e.accuracy;
}

static fl_profile posed(void) {
    fl_profile p;
    assert_int_equal(fl_profile_detect(&p), FL_OK);
    assert_int_equal(fl_profile_override(&p, 256, 1e9, 1e9, 1e15), FL_OK); /* memory-bound */
    return p;
}

/* Search and certify data that differ: the search data is labelled by the dense model (it scores
 * 100 there), the certify data has a third of its labels changed (the dense model scores 66.7).
 * Every certified figure must be the certify data's. */
static void test_certified_on_certify_data_only(void **state) {
    (void)state;
    fl_model *m = classifier(3);
    float *xs = malloc(sizeof(float) * N * T * D), *xc = malloc(sizeof(float) * N * T * D);
    int32_t ys[N], yc[N];
    random_x(xs, (size_t)N * T * D, 1.0, 11);
    random_x(xc, (size_t)N * T * D, 1.0, 12);
    predict(m, N, xs, ys);
    predict(m, N, xc, yc);
    for (int i = 0; i < N; i += 3) yc[i] = (yc[i] + 1) % C;
    fl_dataset *search, *cert;
    assert_int_equal(fl_dataset_classify(N, T, D, xs, NULL, ys, C, &search), FL_OK);
    assert_int_equal(fl_dataset_classify(N, T, D, xc, NULL, yc, C, &cert), FL_OK);
    fl_plan_opts o = fl_plan_opts_default();
    o.dataset = search;
    o.certify = cert;
    o.max_loss = 5.0;
    o.verify = 0;
    fl_profile p = posed();
    fl_plan *plan;
    assert_int_equal(fl_plan_create(m, &p, &o, &plan), FL_OK);
    const fl_plan_certificate *c = fl_plan_certificate_of(plan);
    const fl_plan_point *dense = fl_plan_point_at(plan, 0), *ch = fl_plan_point_at(plan, fl_plan_chosen(plan));
    assert_true(c->available);
    assert_int_equal(c->count, N);
    assert_int_equal(c->search_count, N);
    assert_true(fabs(dense->metric - 100.0) < 1e-9);                    /* search data */
    assert_true(fabs(c->dense_metric - accuracy_pct(m, cert)) < 1e-9); /* certify data */
    assert_true(fabs(c->dense_metric - 100.0 * (N - N / 3) / N) < 1e-9);
    assert_true(c->tried >= 1);
    assert_int_equal(ch->certified, c->certified);
    /* The chosen plan's certified metric and paired loss are the certify data's. */
    double acc = accuracy_pct(fl_plan_model(plan), cert);
    assert_true(fabs(ch->cert_metric - acc) < 1e-9);
    assert_true(fabs(ch->cert_loss - (c->dense_metric - acc)) < 1e-9);
    assert_true(ch->cert_bound >= ch->cert_loss - 1e-12);
    /* z at 90%: 1.2816 */
    assert_true(fabs(c->z - 1.2815515655) < 1e-6);
    assert_true(c->certified);
    assert_true(ch->cert_bound <= 5.0);
    /* Every candidate put to certification: bound = loss + z * se, verdict by the budget. */
    for (size_t k = 1; k < fl_plan_num_points(plan); k++) {
        const fl_plan_point *pt = fl_plan_point_at(plan, k);
        if (pt->certified < 0) continue;
        assert_true(fabs(pt->cert_bound - (pt->cert_loss + c->z * pt->cert_se)) < 1e-9);
        assert_int_equal(pt->certified, pt->cert_bound <= 5.0);
    }
    fl_plan_free(plan);
    fl_dataset_free(search);
    fl_dataset_free(cert);
    free(xs), free(xc);
    fl_model_free(m);
}

/* Without certify data the validation data is split by fl_dataset_split's rule: the certified
 * dense figure is the held-back part's, not the whole's nor the search part's. */
static void test_split_holds_back(void **state) {
    (void)state;
    fl_model *m = classifier(5);
    float *x = malloc(sizeof(float) * N * T * D);
    int32_t y[N];
    random_x(x, (size_t)N * T * D, 1.0, 21);
    predict(m, N, x, y);
    for (int i = 0; i < N; i += 2) y[i] = (y[i] + 1) % C; /* dense: 50% overall, not per part */
    fl_dataset *all, *sp, *cp;
    assert_int_equal(fl_dataset_classify(N, T, D, x, NULL, y, C, &all), FL_OK);
    fl_plan_opts o = fl_plan_opts_default();
    o.dataset = all;
    o.certify_fraction = 0.25;
    o.seed = 9;
    o.max_loss = 3.0;
    o.verify = 0;
    fl_profile p = posed();
    fl_plan *plan;
    assert_int_equal(fl_plan_create(m, &p, &o, &plan), FL_OK);
    assert_int_equal(fl_dataset_split(all, 0.25, 9, &sp, &cp), FL_OK);
    const fl_plan_certificate *c = fl_plan_certificate_of(plan);
    assert_int_equal(c->count, N / 4);
    assert_int_equal(c->search_count, N - N / 4);
    double a_search = accuracy_pct(m, sp), a_cert = accuracy_pct(m, cp);
    assert_true(fabs(a_search - a_cert) > 1e-6); /* the parts differ, so the test can tell them apart */
    assert_true(fabs(fl_plan_point_at(plan, 0)->metric - a_search) < 1e-9);
    assert_true(fabs(c->dense_metric - a_cert) < 1e-9);
    const fl_plan_point *ch = fl_plan_point_at(plan, fl_plan_chosen(plan));
    assert_true(fabs(ch->cert_metric - accuracy_pct(fl_plan_model(plan), cp)) < 1e-9);
    fl_plan_free(plan);
    fl_dataset_free(all), fl_dataset_free(sp), fl_dataset_free(cp);
    free(x);
    fl_model_free(m);
}

/* Certify data on which compression loses: inputs far larger than the search data's. Candidates
 * within the budget on the search data are passed over; none certified leaves the input model. */
static void test_backoff_to_input_model(void **state) {
    (void)state;
    fl_model *m = classifier(7);
    float *xs = malloc(sizeof(float) * N * T * D), *xc = malloc(sizeof(float) * N * T * D);
    int32_t ys[N], yc[N];
    random_x(xs, (size_t)N * T * D, 0.01, 31); /* tiny inputs: any W_ih rank predicts alike */
    random_x(xc, (size_t)N * T * D, 30.0, 32);
    predict(m, N, xs, ys);
    predict(m, N, xc, yc);
    fl_dataset *search, *cert;
    assert_int_equal(fl_dataset_classify(N, T, D, xs, NULL, ys, C, &search), FL_OK);
    assert_int_equal(fl_dataset_classify(N, T, D, xc, NULL, yc, C, &cert), FL_OK);
    fl_plan_opts o = fl_plan_opts_default();
    o.dataset = search;
    o.certify = cert;
    o.max_loss = 0.0;
    o.verify = 0;
    o.certify_tries = 2;
    fl_profile p = posed();
    fl_plan *plan;
    assert_int_equal(fl_plan_create(m, &p, &o, &plan), FL_OK);
    const fl_plan_certificate *c = fl_plan_certificate_of(plan);
    int rejected = 0;
    for (size_t k = 1; k < fl_plan_num_points(plan); k++) {
        const fl_plan_point *pt = fl_plan_point_at(plan, k);
        if (pt->certified == 0) {
            rejected++;
            assert_true(pt->meets_budget);   /* it passed the search ... */
            assert_true(pt->cert_bound > 0); /* ... but not the held-back data */
        }
    }
    assert_true(rejected >= 1);
    assert_true(c->tried <= 2);
    assert_false(c->certified);
    assert_int_equal(fl_plan_chosen(plan), 0);
    fl_matrix_info info;
    assert_int_equal(fl_model_matrix_info(fl_plan_model(plan), 0, &info), FL_OK);
    assert_int_equal(info.method, FL_METHOD_DENSE);
    fl_plan_free(plan);
    fl_dataset_free(search), fl_dataset_free(cert);
    free(xs), free(xc);
    fl_model_free(m);
}

/* compress --finetune through the API on a tiny task: candidates judged after a short fine-tune,
 * the chosen plan fine-tuned and certified on data neither saw. */
static void test_finetune_smoke(void **state) {
    (void)state;
    fl_model *m = classifier(13);
    enum { NT = 192 };
    float *xt = malloc(sizeof(float) * NT * T * D), *xv = malloc(sizeof(float) * N * T * D);
    int32_t yt[NT], yv[N];
    random_x(xt, (size_t)NT * T * D, 1.0, 41);
    random_x(xv, (size_t)N * T * D, 1.0, 42);
    predict(m, NT, xt, yt);
    predict(m, N, xv, yv);
    fl_dataset *train, *valid;
    assert_int_equal(fl_dataset_classify(NT, T, D, xt, NULL, yt, C, &train), FL_OK);
    assert_int_equal(fl_dataset_classify(N, T, D, xv, NULL, yv, C, &valid), FL_OK);
    fl_train_opts to = fl_train_opts_default();
    to.batch = 16;
    fl_plan_opts o = fl_plan_opts_default();
    o.dataset = valid;
    o.finetune = train;
    o.train = &to;
    o.finetune_epochs = 1;
    o.max_loss = 10.0;
    o.verify = 0;
    fl_profile p = posed();
    fl_plan *plan;
    assert_int_equal(fl_plan_create(m, &p, &o, &plan), FL_OK);
    const fl_plan_certificate *c = fl_plan_certificate_of(plan);
    assert_true(c->finetuned);
    assert_true(c->available);
    assert_int_equal(c->count, N / 2);
    const fl_plan_point *ch = fl_plan_point_at(plan, fl_plan_chosen(plan));
    assert_true(c->certified);
    assert_true(fl_plan_chosen(plan) > 0);
    {
        assert_true(c->finetune_seconds > 0);
        /* the plan's model is the fine-tuned one: its held-back accuracy is the certified figure */
        fl_dataset *sp, *cp;
        assert_int_equal(fl_dataset_split(valid, 0.5, o.seed, &sp, &cp), FL_OK);
        assert_true(fabs(ch->cert_metric - accuracy_pct(fl_plan_model(plan), cp)) < 1e-9);
        assert_true(ch->cert_bound <= 10.0);
        fl_dataset_free(sp), fl_dataset_free(cp);
    }
    fl_plan_free(plan);
    /* fine-tuning data that does not fit the model */
    fl_dataset *wrong;
    int32_t ids[4] = {0, 1, 1, 0}, lab[2] = {0, 1};
    assert_int_equal(fl_dataset_classify(2, 2, 0, NULL, ids, lab, 2, &wrong), FL_OK);
    o.finetune = wrong;
    assert_int_equal(fl_plan_create(m, &p, &o, &plan), FL_ERR_SHAPE);
    o.finetune = train;
    o.confidence = 1.0;
    assert_int_equal(fl_plan_create(m, &p, &o, &plan), FL_ERR_ARG);
    fl_dataset_free(wrong);
    fl_dataset_free(train), fl_dataset_free(valid);
    free(xt), free(xv);
    fl_model_free(m);
}

/* Sequences with lengths are judged as fl_model_evaluate judges them (the padding, loud noise here,
 * never read): from a data set with lengths, from fl_plan_data with the valid steps first, and from
 * the same rows left-padded (valid steps last, as labelled text stores them); the split keeps each
 * sequence's length (search and certify parts add up to the whole). Bad lengths: FL_ERR_DATA. */
static void test_lengths_as_evaluate(void **state) {
    (void)state;
    fl_model *m = classifier(9);
    float *x = malloc(sizeof(float) * N * T * D), *xl = malloc(sizeof(float) * N * T * D);
    int32_t y[N], len[N];
    random_x(x, (size_t)N * T * D, 1.0, 21);
    fl_rng r;
    fl_rng_seed(&r, 22);
    for (int i = 0; i < N; i++) {
        len[i] = 1 + (int)(fl_rng_next(&r) % T);
        y[i] = (int32_t)(fl_rng_next(&r) % C);
        for (int k = len[i] * D; k < T * D; k++) x[(size_t)i * T * D + k] *= 6.0f; /* the padding */
        /* left-padded copy: the valid steps last, the padding first */
        memcpy(xl + ((size_t)i * T + T - len[i]) * D, x + (size_t)i * T * D, sizeof(float) * len[i] * D);
        memcpy(xl + (size_t)i * T * D, x + ((size_t)i * T + len[i]) * D, sizeof(float) * (T - len[i]) * D);
    }
    fl_dataset *d, *full;
    assert_int_equal(fl_dataset_classify(N, T, D, x, NULL, y, C, &d), FL_OK);
    assert_int_equal(fl_dataset_classify(N, T, D, x, NULL, y, C, &full), FL_OK);
    assert_int_equal(fl_dataset_set_lengths(d, len), FL_OK);
    const double want = accuracy_pct(m, d);
    assert_true(fabs(want - accuracy_pct(m, full)) > 1e-9); /* reading the padding would change it */
    fl_profile p = posed();
    fl_plan_opts o = fl_plan_opts_default();
    o.max_loss = 50;
    o.verify = 0;
    o.max_evals = 4;
    o.certify_fraction = 0;
    fl_plan *plan;
    o.dataset = d;
    assert_int_equal(fl_plan_create(m, &p, &o, &plan), FL_OK);
    assert_true(fabs(fl_plan_point_at(plan, 0)->metric - want) < 1e-9);
    fl_plan_free(plan);
    fl_plan_data pd = {.n = N, .seq = T, .dim = D, .x = x, .labels = y, .n_labels = N, .lengths = len};
    o.dataset = NULL;
    o.data = &pd;
    assert_int_equal(fl_plan_create(m, &p, &o, &plan), FL_OK);
    assert_true(fabs(fl_plan_point_at(plan, 0)->metric - want) < 1e-9);
    fl_plan_free(plan);
    pd.x = xl;
    pd.left_padded = 1;
    assert_int_equal(fl_plan_create(m, &p, &o, &plan), FL_OK);
    assert_true(fabs(fl_plan_point_at(plan, 0)->metric - want) < 1e-9);
    fl_plan_free(plan);
    o.certify_fraction = 0.5;
    assert_int_equal(fl_plan_create(m, &p, &o, &plan), FL_OK);
    const fl_plan_certificate *c = fl_plan_certificate_of(plan);
    assert_int_equal(c->count + c->search_count, N);
    double right = fl_plan_point_at(plan, 0)->metric * c->search_count + c->dense_metric * c->count;
    assert_true(fabs(right - want * N) < 1e-6);
    fl_plan_free(plan);
    len[7] = T + 1;
    assert_int_equal(fl_plan_create(m, &p, &o, &plan), FL_ERR_DATA);
    assert_non_null(strstr(fl_last_error(), "length"));
    len[7] = 0;
    assert_int_equal(fl_plan_create(m, &p, &o, &plan), FL_ERR_DATA);
    fl_dataset_free(d), fl_dataset_free(full);
    free(x), free(xl);
    fl_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_certified_on_certify_data_only),
        cmocka_unit_test(test_split_holds_back),
        cmocka_unit_test(test_backoff_to_input_model),
        cmocka_unit_test(test_finetune_smoke),
        cmocka_unit_test(test_lengths_as_evaluate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
