/* Planner: cost-model arithmetic against hand-computed values, profile JSON, the regime-dependent
 * choice on a model whose weights are genuinely low rank, the accuracy budget checked by evaluating
 * the chosen (and the written) model independently, and bad inputs. Every run poses as a given
 * machine (profile overrides) and skips timing, so nothing here is measured. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fastlstm/plan.h"
#include "internal.h"
#include "npy.h"
#include "testutil.h"

#include <cjson/cJSON.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* ------------------------------------------------------------ helpers */

/* Fill every LSTM gate matrix (4H, n) with an exact rank-R CP tensor sum_r a[g,r] b[i,r] c[j,r]
 * (so its matrix rank is <= R too) plus uniform noise of size `noise`. */
static void make_low_rank(fl_model *m, int R, float noise, uint64_t seed) {
    fl_rng r;
    fl_rng_seed(&r, seed);
    const int H = m->arch.hidden;
    for (size_t i = 0; i < (size_t)2 * m->arch.layers; i++) {
        fl_mat *w = fl_model_mat(m, i);
        assert_int_equal(w->method, FL_METHOD_DENSE);
        const int n = w->cols;
        float *a = malloc(sizeof(float) * 4 * R), *b = malloc(sizeof(float) * H * R),
              *c = malloc(sizeof(float) * n * R);
        for (int k = 0; k < 4 * R; k++) a[k] = fl_rng_uniform_range(&r, -1.5f, 1.5f);
        for (int k = 0; k < H * R; k++) b[k] = fl_rng_uniform_range(&r, -1, 1);
        for (int k = 0; k < n * R; k++) c[k] = fl_rng_uniform_range(&r, -1, 1);
        float scale = 3.0f / sqrtf((float)R * n);
        for (int g = 0; g < 4; g++)
            for (int h = 0; h < H; h++)
                for (int j = 0; j < n; j++) {
                    double s = 0;
                    for (int k = 0; k < R; k++) s += (double)a[g * R + k] * b[h * R + k] * c[j * R + k];
                    w->w[((size_t)g * H + h) * n + j] = scale * (float)s + fl_rng_uniform_range(&r, -noise, noise);
                }
        free(a), free(b), free(c);
    }
}

/* Outputs of m on x (n, T, D) batch-major, or tokens (n, T). y: fl_run_output_size(m, n, T). */
static void run_model(const fl_model *m, int n, int T, const float *x, const int32_t *tok, float *y) {
    fl_session_opts so = {.max_batch = n, .max_seq = T, .threads = 1};
    fl_session *s;
    assert_int_equal(fl_session_create(m, &so, &s), FL_OK);
    fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = n, .seq = T, .x = x, .tokens = tok, .y = y};
    assert_int_equal(fl_session_run(s, &io), FL_OK);
    fl_session_free(s);
}

/* Class predictions (argmax of the last-step head) of m on x. */
static void predict(const fl_model *m, int n, int T, const float *x, int32_t *pred) {
    int C = m->arch.head_out;
    float *y = malloc(sizeof(float) * (size_t)n * C);
    run_model(m, n, T, x, NULL, y);
    for (int i = 0; i < n; i++) {
        int best = 0;
        for (int k = 1; k < C; k++)
            if (y[i * C + k] > y[i * C + best]) best = k;
        pred[i] = best;
    }
    free(y);
}

static double accuracy(const fl_model *m, int n, int T, const float *x, const int32_t *labels) {
    int32_t *pred = malloc(sizeof(int32_t) * n);
    predict(m, n, T, x, pred);
    int ok = 0;
    for (int i = 0; i < n; i++) ok += pred[i] == labels[i];
    free(pred);
    return 100.0 * ok / n;
}

static fl_profile posed(double cache_bytes, double bw, double cache_bw, double flops) {
    fl_profile p;
    assert_int_equal(fl_profile_detect(&p), FL_OK);
    assert_int_equal(fl_profile_override(&p, cache_bytes, bw, cache_bw, flops), FL_OK);
    return p;
}

/* The classifier used by the budget tests: input 8, hidden 16, 1 layer, 4 classes, gate matrices of
 * CP rank 4; data x (N, T, 8) and labels from the dense model's own predictions. */
enum { CN = 128, CT = 12, CD = 8 };
typedef struct classifier {
    fl_model *m;
    float *x;
    int32_t labels[CN];
} classifier;

static void classifier_make(classifier *c) {
    fl_arch a = {.vocab = 0, .input = CD, .hidden = 16, .layers = 1, .head = FL_HEAD_LAST_STEP, .head_out = 4};
    assert_int_equal(fl_model_create(&a, NULL, &c->m), FL_OK);
    assert_int_equal(fl_model_init_random(c->m, 7), FL_OK);
    make_low_rank(c->m, 4, 1e-6f, 11);
    /* A head that reads the hidden state strongly and has no bias, so that predictions depend on
     * the LSTM weights (not on the head's bias). */
    for (int i = 0; i < 4 * 16; i++) c->m->head.w[i] *= 16.0f;
    memset(c->m->head_b, 0, 4 * sizeof(float));
    c->x = malloc(sizeof(float) * CN * CT * CD);
    fl_rng r;
    fl_rng_seed(&r, 3);
    for (int i = 0; i < CN * CT * CD; i++) c->x[i] = (float)fl_rng_normal(&r);
    predict(c->m, CN, CT, c->x, c->labels);
}

static void classifier_free(classifier *c) {
    fl_model_free(c->m);
    free(c->x);
}

static void show_progress(void *ctx, const char *msg) {
    (void)ctx;
    fprintf(stderr, "  %s\n", msg);
}

static fl_plan_opts classifier_opts(const fl_plan_data *d, double max_loss) {
    fl_plan_opts o = fl_plan_opts_default();
    o.batch = 1;
    o.seq = 35;
    o.data = d;
    o.max_loss = max_loss;
    o.verify = 0; /* no timing in tests */
    o.cp_max_iter = 100;
    if (getenv("TEST_PLAN_VERBOSE")) o.progress = show_progress;
    return o;
}

/* ------------------------------------------------------------ choice by regime */

static void test_memory_bound_picks_cp(void **state) {
    (void)state;
    classifier c;
    classifier_make(&c);
    fl_plan_data d = {.n = CN, .seq = CT, .dim = CD, .x = c.x, .labels = c.labels, .n_labels = CN};
    fl_plan_opts o = classifier_opts(&d, 0.5);
    /* A 256-byte cache (the model's W_hh alone is 4 KiB), slow memory, fast arithmetic. */
    fl_profile p = posed(256, 1e9, 1e9, 1e15);
    fl_plan *plan;
    assert_int_equal(fl_plan_create(c.m, &p, &o, &plan), FL_OK);
    assert_int_equal(fl_plan_metric_kind(plan), FL_METRIC_ACCURACY);
    const fl_plan_point *dense = fl_plan_point_at(plan, 0), *ch = fl_plan_point_at(plan, fl_plan_chosen(plan));
    assert_int_equal(dense->cost.regime, FL_REGIME_MEMORY);
    assert_close(dense->metric, 100.0, 1e-9); /* labels are the dense model's predictions */
    /* Both gate matrices: CP, the parameter-minimising storage, at about the true rank. */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(ch->specs[i].method, FL_METHOD_CP);
        assert_in_range(ch->specs[i].rank, 4, 6);
    }
    /* Among candidates meeting the budget, none stores fewer recurrent-weight parameters. */
    for (size_t k = 0; k < fl_plan_num_points(plan); k++) {
        const fl_plan_point *pt = fl_plan_point_at(plan, k);
        if (pt->meets_budget) assert_true(ch->cost.working_set <= pt->cost.working_set);
    }
    /* Independent check of the budget on the chosen model. */
    double acc = accuracy(fl_plan_model(plan), CN, CT, c.x, c.labels);
    assert_true(100.0 - acc <= 0.5);
    assert_close(acc, ch->metric, 1e-9);
    fl_plan_free(plan);
    classifier_free(&c);
}

static void test_compute_bound_picks_svd(void **state) {
    (void)state;
    classifier c;
    classifier_make(&c);
    fl_plan_data d = {.n = CN, .seq = CT, .dim = CD, .x = c.x, .labels = c.labels, .n_labels = CN};
    fl_plan_opts o = classifier_opts(&d, 0.5);
    /* A 1 GiB cache, very fast memory, slow arithmetic. */
    fl_profile p = posed(1 << 30, 1e12, 1e12, 1e6);
    fl_plan *plan;
    assert_int_equal(fl_plan_create(c.m, &p, &o, &plan), FL_OK);
    const fl_plan_point *dense = fl_plan_point_at(plan, 0), *ch = fl_plan_point_at(plan, fl_plan_chosen(plan));
    assert_int_equal(dense->cost.regime, FL_REGIME_COMPUTE);
    /* SVD at the true rank: fewest flops; CP costs more flops at the same rank. */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(ch->specs[i].method, FL_METHOD_SVD);
        assert_int_equal(ch->specs[i].rank, 4);
    }
    for (size_t k = 0; k < fl_plan_num_points(plan); k++) {
        const fl_plan_point *pt = fl_plan_point_at(plan, k);
        assert_int_not_equal(pt->specs[0].method, FL_METHOD_CP); /* CP never tried when compute-bound */
        if (pt->meets_budget) assert_true(ch->cost.step_flops <= pt->cost.step_flops);
    }
    /* Write, reload and evaluate the planned model independently. */
    const char *path = "test_plan_compute.safetensors";
    assert_int_equal(fl_model_save(fl_plan_model(plan), path), FL_OK);
    fl_model *back;
    assert_int_equal(fl_model_load(path, &back), FL_OK);
    fl_matrix_info info;
    assert_int_equal(fl_model_matrix_info(back, 1, &info), FL_OK);
    assert_int_equal(info.method, FL_METHOD_SVD);
    assert_true(100.0 - accuracy(back, CN, CT, c.x, c.labels) <= 0.5);
    fl_model_free(back);
    remove(path);
    fl_plan_free(plan);
    classifier_free(&c);
}

/* ------------------------------------------------------------ other metrics */

static void test_language_model_budget(void **state) {
    (void)state;
    fl_arch a = {.vocab = 12, .input = 6, .hidden = 16, .layers = 2, .head = FL_HEAD_PER_STEP, .head_out = 12};
    fl_model *m;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 5), FL_OK);
    make_low_rank(m, 3, 1e-3f, 9);
    enum { N = 24, T = 10 };
    int32_t tok[N * T];
    fl_rng r;
    fl_rng_seed(&r, 17);
    for (int i = 0; i < N * T; i++) tok[i] = (int32_t)(fl_rng_next(&r) % 12);
    fl_plan_data d = {.n = N, .seq = T, .tokens = tok};
    fl_plan_opts o = fl_plan_opts_default();
    o.data = &d;
    o.max_loss = 0.02;
    o.verify = 0;
    fl_profile p = posed(256, 1e9, 1e9, 1e15);
    fl_plan *plan;
    assert_int_equal(fl_plan_create(m, &p, &o, &plan), FL_OK);
    assert_int_equal(fl_plan_metric_kind(plan), FL_METRIC_PERPLEXITY);
    const fl_plan_point *ch = fl_plan_point_at(plan, fl_plan_chosen(plan));
    /* Judged as `eval` reads text: the rows as one stream, the state carried; the search reads the
     * first half of it, the certification the second. */
    fl_dataset *half[2];
    fl_eval_result ev[2][2];
    assert_int_equal(fl_dataset_lm(tok, N * T / 2, 12, &half[0]), FL_OK);
    assert_int_equal(fl_dataset_lm(tok + N * T / 2, N * T / 2, 12, &half[1]), FL_OK);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(fl_model_evaluate(m, half[k], 1, 35, &ev[k][0]), FL_OK);
        assert_int_equal(fl_model_evaluate(fl_plan_model(plan), half[k], 1, 35, &ev[k][1]), FL_OK);
        fl_dataset_free(half[k]);
    }
    double ppl_dense = ev[0][0].perplexity, ppl = ev[0][1].perplexity;
    assert_close(fl_plan_point_at(plan, 0)->metric, ppl_dense, 1e-5 * ppl_dense);
    assert_close(ch->metric, ppl, 1e-5 * ppl);
    assert_true(ppl / ppl_dense - 1.0 <= 0.02 + 1e-12);
    const fl_plan_certificate *cert = fl_plan_certificate_of(plan);
    assert_true(cert->available);
    assert_int_equal(cert->count, N * T / 2 - 1);
    assert_close(cert->dense_metric, ev[1][0].perplexity, 1e-5 * ev[1][0].perplexity);
    if (cert->certified) {
        assert_close(ch->cert_metric, ev[1][1].perplexity, 1e-5 * ev[1][1].perplexity);
        assert_close(ch->cert_loss, ev[1][1].perplexity / ev[1][0].perplexity - 1, 1e-5);
        assert_true(ch->cert_bound <= 0.02 && ch->cert_bound >= ch->cert_loss);
    }
    assert_true(ch->cost.params < fl_plan_point_at(plan, 0)->cost.params); /* low rank was found */
    fl_plan_free(plan);
    fl_model_free(m);
}

static void test_deviation_budget(void **state) {
    (void)state;
    fl_arch a = {.input = 5, .hidden = 16, .layers = 1, .head = FL_HEAD_NONE};
    fl_model *m;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 2), FL_OK);
    make_low_rank(m, 2, 1e-4f, 4);
    fl_plan_opts o = fl_plan_opts_default();
    o.max_dev = 0.01;
    o.verify = 0;
    fl_profile p = posed(1 << 30, 1e12, 1e12, 1e6);
    fl_plan *plan;
    assert_int_equal(fl_plan_create(m, &p, &o, &plan), FL_OK);
    assert_int_equal(fl_plan_metric_kind(plan), FL_METRIC_DEVIATION);
    const fl_plan_point *ch = fl_plan_point_at(plan, fl_plan_chosen(plan));
    assert_true(ch->meets_budget && ch->loss <= 0.01);
    assert_int_equal(ch->specs[1].method, FL_METHOD_SVD);
    assert_int_equal(ch->specs[1].rank, 2);
    /* The Pareto front holds the dense point (loss 0) and the chosen one. */
    assert_true(fl_plan_point_at(plan, 0)->pareto);
    assert_true(ch->pareto);
    fl_plan_free(plan);
    fl_model_free(m);
}

/* A model that is already decomposed: the search starts from its dense reconstruction and judges
 * candidates against the model as given. */
static void test_decomposed_input(void **state) {
    (void)state;
    classifier c;
    classifier_make(&c);
    fl_decomp_opts dop = fl_decomp_opts_default();
    fl_mat_spec specs[3] = {{FL_METHOD_SVD, 6}, {FL_METHOD_SVD, 8}, {FL_METHOD_DENSE, 0}};
    dop.specs = specs;
    fl_model *dm;
    assert_int_equal(fl_model_decompose(c.m, &dop, &dm), FL_OK);
    fl_plan_data d = {.n = CN, .seq = CT, .dim = CD, .x = c.x, .labels = c.labels, .n_labels = CN};
    fl_plan_opts o = classifier_opts(&d, 0.5);
    fl_profile p = posed(1 << 30, 1e12, 1e12, 1e6);
    fl_plan *plan;
    assert_int_equal(fl_plan_create(dm, &p, &o, &plan), FL_OK);
    const fl_plan_point *dense = fl_plan_point_at(plan, 0), *ch = fl_plan_point_at(plan, fl_plan_chosen(plan));
    for (int i = 0; i < 3; i++) assert_int_equal(dense->specs[i].method, FL_METHOD_DENSE);
    assert_int_equal(ch->specs[1].method, FL_METHOD_SVD);
    assert_int_equal(ch->specs[1].rank, 4);
    assert_true(100.0 - accuracy(fl_plan_model(plan), CN, CT, c.x, c.labels) <= 0.5);
    fl_plan_free(plan);
    fl_model_free(dm);
    classifier_free(&c);
}

/* ------------------------------------------------------------ bad inputs */

static void test_bad_inputs(void **state) {
    (void)state;
    classifier c;
    classifier_make(&c);
    fl_profile p = posed(256, 1e9, 1e9, 1e15);
    fl_plan *plan = (fl_plan *)&p;
    fl_plan_data d = {.n = CN, .seq = CT, .dim = CD, .x = c.x, .labels = c.labels, .n_labels = CN};
    fl_plan_opts o = classifier_opts(&d, -1.0);
    assert_int_equal(fl_plan_create(c.m, &p, &o, &plan), FL_ERR_ARG); /* budget < 0 */
    assert_null(plan);
    o = classifier_opts(NULL, NAN);
    o.max_dev = -0.5;
    assert_int_equal(fl_plan_create(c.m, &p, &o, &plan), FL_ERR_ARG);
    o = classifier_opts(NULL, 1.0); /* max_loss without data */
    assert_int_equal(fl_plan_create(c.m, &p, &o, &plan), FL_ERR_ARG);

    fl_plan_data bad = d;
    bad.dim = CD - 1; /* features do not fit the model's input */
    o = classifier_opts(&bad, 1.0);
    assert_int_equal(fl_plan_create(c.m, &p, &o, &plan), FL_ERR_SHAPE);
    bad = d;
    bad.n = 0; /* empty */
    o = classifier_opts(&bad, 1.0);
    assert_int_equal(fl_plan_create(c.m, &p, &o, &plan), FL_ERR_DATA);
    int32_t tok[4] = {0};
    bad = (fl_plan_data){.n = 2, .seq = 2, .tokens = tok}; /* ids for a features model */
    o = classifier_opts(&bad, 1.0);
    assert_int_equal(fl_plan_create(c.m, &p, &o, &plan), FL_ERR_SHAPE);
    int32_t labels[CN];
    memcpy(labels, c.labels, sizeof labels);
    labels[5] = 4; /* 4 classes */
    bad = d;
    bad.labels = labels;
    o = classifier_opts(&bad, 1.0);
    assert_int_equal(fl_plan_create(c.m, &p, &o, &plan), FL_ERR_DATA);
    bad = d;
    bad.n_labels = CN - 1;
    o = classifier_opts(&bad, 1.0);
    assert_int_equal(fl_plan_create(c.m, &p, &o, &plan), FL_ERR_SHAPE);
    c.x[7] = NAN;
    o = classifier_opts(&d, 1.0);
    assert_int_equal(fl_plan_create(c.m, &p, &o, &plan), FL_ERR_NONFINITE);
    assert_int_equal(fl_plan_create(c.m, &p, NULL, NULL), FL_ERR_ARG);
    classifier_free(&c);
}

/* Allocation failing at any point of a plan returns FL_ERR_NOMEM and leaks nothing (ASan), with one
 * and with two threads (the sessions' recurrent steps then allocate per-thread scratch and a
 * worker pool: a failure there must leave no NULL scratch behind). */
static void test_alloc_failures(void **state) {
    (void)state;
    classifier c;
    classifier_make(&c);
    fl_plan_data d = {.n = 8, .seq = 4, .dim = CD, .x = c.x, .labels = c.labels, .n_labels = 8};
    fl_profile p = posed(256, 1e9, 1e9, 1e15);
    for (int threads = 1; threads <= 2; threads++) {
        fl_plan_opts o = classifier_opts(&d, 0.5);
        o.max_evals = 6;
        o.threads = threads;
        int failures = 0;
        fl_status st = FL_ERR_NOMEM;
        for (long n = 0; n < 100000 && st != FL_OK; n += 1 + n / 16) {
            fl_plan *plan = NULL;
            fl_alloc_fail_after(n);
            st = fl_plan_create(c.m, &p, &o, &plan);
            fl_alloc_fail_after(-1);
            if (st != FL_OK) {
                assert_int_equal(st, FL_ERR_NOMEM);
                assert_null(plan);
                failures++;
            }
            fl_plan_free(plan);
        }
        assert_int_equal(st, FL_OK);
        assert_true(failures > 10);
    }
    classifier_free(&c);
}

/* ------------------------------------------------------------ CLI */

/* Run a shell command; return its exit status, stderr text in err. */
static int sh(char *err, size_t n, const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[4200];
    snprintf(full, sizeof full, "%s >test_plan_out.txt 2>test_plan_err.txt", cmd);
    int rc = system(full);
    FILE *f = fopen("test_plan_err.txt", "r");
    size_t got = f ? fread(err, 1, n - 1, f) : 0;
    err[got] = 0;
    if (f) fclose(f);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void test_cli(void **state) {
    (void)state;
    const char *cli = getenv("FL_CLI");
    if (!cli) skip();
    classifier c;
    classifier_make(&c);
    assert_int_equal(fl_model_save(c.m, "test_plan_model.safetensors"), FL_OK);
    int64_t xs[3] = {CN, CT, CD}, ls[1] = {CN}, es[3] = {0, CT, CD};
    assert_int_equal(fl_npy_save_f32("test_plan_x.npy", c.x, 3, xs), FL_OK);
    assert_int_equal(fl_npy_save_i32("test_plan_y.npy", c.labels, 1, ls), FL_OK);
    assert_int_equal(fl_npy_save_f32("test_plan_empty.npy", c.x, 3, es), FL_OK);
    const char *pose = "--cache-bytes 256 --bandwidth 1 --flops 1000000 --no-measure --quiet";
    char err[4096];
    /* compress writes a model that keeps the budget, checked here independently */
    int rc = sh(err, sizeof err, "%s compress test_plan_model.safetensors -o test_plan_out.safetensors "
                                 "--data test_plan_x.npy --labels test_plan_y.npy --max-loss 1 %s",
                cli, pose);
    assert_int_equal(rc, 0);
    fl_model *back;
    assert_int_equal(fl_model_load("test_plan_out.safetensors", &back), FL_OK);
    assert_true(fl_model_num_params(back) < fl_model_num_params(c.m));
    assert_true(100.0 - accuracy(back, CN, CT, c.x, c.labels) <= 1.0);
    fl_model_free(back);
    /* --json: the chosen plan, with one entry per matrix, and the regime of the posed machine */
    rc = sh(err, sizeof err, "%s plan test_plan_model.safetensors --json %s", cli, pose);
    assert_int_equal(rc, 0);
    unsigned char *text;
    file_read("test_plan_out.txt", &text);
    cJSON *root = cJSON_Parse((const char *)text);
    free(text);
    assert_non_null(root);
    assert_string_equal(cJSON_GetObjectItem(root, "regime")->valuestring, "memory");
    const cJSON *mats = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "chosen"), "matrices");
    assert_int_equal(cJSON_GetArraySize(mats), 3);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(mats, 1), "name")->valuestring, "lstm.weight_hh_l0");
    assert_true(cJSON_GetArraySize(cJSON_GetObjectItem(root, "candidates")) >= 2);
    cJSON_Delete(root);
    /* empty data file -> FL_ERR_DATA; features of the wrong width -> FL_ERR_SHAPE; budget < 0 -> usage */
    rc = sh(err, sizeof err, "%s plan test_plan_model.safetensors --data test_plan_empty.npy %s", cli, pose);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "FL_ERR_DATA"));
    int64_t ws[3] = {CN, CT * 2, CD / 2};
    assert_int_equal(fl_npy_save_f32("test_plan_wide.npy", c.x, 3, ws), FL_OK);
    rc = sh(err, sizeof err, "%s plan test_plan_model.safetensors --data test_plan_wide.npy %s", cli, pose);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "FL_ERR_SHAPE"));
    rc = sh(err, sizeof err, "%s plan test_plan_model.safetensors --data test_plan_x.npy --max-loss -1 %s", cli, pose);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(err, "--max-loss"));
    /* A --profile file that exists but does not load is an error naming it, and is left as it
     * was (not measured over and overwritten). */
    static const char badprof[] = "{\"cores\": 2}";
    file_write("test_plan_badprof.json", badprof, sizeof badprof - 1);
    rc = sh(err, sizeof err, "%s profile --profile test_plan_badprof.json --json", cli);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "FL_ERR_FORMAT"));
    assert_non_null(strstr(err, "test_plan_badprof.json"));
    file_read("test_plan_badprof.json", &text);
    assert_string_equal((const char *)text, badprof);
    free(text);
    const char *files[] = {"test_plan_model.safetensors", "test_plan_out.safetensors", "test_plan_x.npy",
                           "test_plan_y.npy", "test_plan_empty.npy", "test_plan_wide.npy",
                           "test_plan_out.txt", "test_plan_err.txt", "test_plan_badprof.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) remove(files[i]);
    classifier_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_bound_picks_cp),
        cmocka_unit_test(test_compute_bound_picks_svd),
        cmocka_unit_test(test_language_model_budget),
        cmocka_unit_test(test_deviation_budget),
        cmocka_unit_test(test_decomposed_input),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
