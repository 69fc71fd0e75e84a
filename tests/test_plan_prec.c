/* Planner precision search (issue 13): int8 / bf16 candidates are judged on the really quantized
 * model (run by the int8 / bf16 kernels), chosen when the budget allows and refused when it does
 * not; the plan's model holds those precisions and keeps them through the file; by default nothing
 * changes precision; the CLI's --precisions and the JSON precision field. Every run poses as a
 * memory-bound machine and skips timing, so nothing here is measured. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fastlstm/plan.h"
#include "internal.h"
#include "testutil.h"

#include <cjson/cJSON.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define BIT(q) (1u << (q))

/* input 5, hidden 32, 1 layer, no head: random (full-rank) weights, so low ranks cost accuracy. */
static fl_model *make_model(void) {
    fl_arch a = {.input = 5, .hidden = 32, .layers = 1, .head = FL_HEAD_NONE};
    fl_model *m;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 3), FL_OK);
    return m;
}

/* A machine where the weights stream from a slow memory: bytes per step decide. */
static fl_profile posed(void) {
    fl_profile p;
    assert_int_equal(fl_profile_detect(&p), FL_OK);
    assert_int_equal(fl_profile_override(&p, 4096, 1e9, 0, 1e12), FL_OK);
    return p;
}

static fl_plan_opts opts(double max_dev, unsigned precisions) {
    fl_plan_opts o = fl_plan_opts_default();
    o.max_dev = max_dev;
    o.precisions = precisions;
    o.verify = 0; /* no timing in tests */
    o.allow_cp = 0;
    return o;
}

/* ||y_a - y_b|| / ||y_b|| over n fresh random sequences of length T (not the planner's inputs). */
static double deviation(const fl_model *a, const fl_model *b, int n, int T, uint64_t seed) {
    const int D = fl_model_arch(b)->input, H = fl_model_arch(b)->hidden;
    float *x = malloc(sizeof(float) * n * T * D), *ya = malloc(sizeof(float) * n * T * H),
          *yb = malloc(sizeof(float) * n * T * H);
    fl_rng r;
    fl_rng_seed(&r, seed);
    for (int i = 0; i < n * T * D; i++) x[i] = (float)fl_rng_normal(&r);
    const fl_model *ms[2] = {a, b};
    float *ys[2] = {ya, yb};
    for (int k = 0; k < 2; k++) {
        fl_session_opts so = {.max_batch = n, .max_seq = T, .threads = 1};
        fl_session *s;
        assert_int_equal(fl_session_create(ms[k], &so, &s), FL_OK);
        fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = n, .seq = T, .x = x, .y = ys[k]};
        assert_int_equal(fl_session_run(s, &io), FL_OK);
        fl_session_free(s);
    }
    double num = 0, den = 0;
    for (int i = 0; i < n * T * H; i++) num += ((double)ya[i] - yb[i]) * ((double)ya[i] - yb[i]), den += (double)yb[i] * yb[i];
    free(x), free(ya), free(yb);
    return sqrt(num / den);
}

static int count_prec(const fl_plan_point *pt, size_t nmat, fl_precision q) {
    int n = 0;
    for (size_t i = 0; i < nmat; i++) n += pt->precisions[i] == q;
    return n;
}

/* A budget int8 fits in: int8 is chosen, the plan's model holds int8 weights (packed for the int8
 * kernels), keeps the budget on fresh inputs, and keeps its precisions through the file. */
static void test_int8_chosen_within_budget(void **state) {
    (void)state;
    fl_model *m = make_model();
    fl_profile p = posed();
    fl_plan_opts o = opts(0.02, BIT(FL_PRECISION_F32) | BIT(FL_PRECISION_INT8));
    fl_plan *plan;
    assert_int_equal(fl_plan_create(m, &p, &o, &plan), FL_OK);
    const size_t nmat = fl_model_num_matrices(m);
    const fl_plan_point *ch = fl_plan_point_at(plan, fl_plan_chosen(plan)), *p0 = fl_plan_point_at(plan, 0);
    assert_true(ch->meets_budget && ch->loss <= 0.02);
    assert_int_equal(count_prec(p0, nmat, FL_PRECISION_F32), (int)nmat);
    assert_true(count_prec(ch, nmat, FL_PRECISION_INT8) >= 1);
    assert_int_equal(count_prec(ch, nmat, FL_PRECISION_BF16), 0);
    assert_true(ch->cost.seconds < p0->cost.seconds);
    const fl_model *pm = fl_plan_model(plan);
    for (size_t i = 0; i < nmat; i++) {
        fl_matrix_info info;
        assert_int_equal(fl_model_matrix_info(pm, i, &info), FL_OK);
        assert_int_equal(info.precision, ch->precisions[i]);
        assert_int_equal(info.method, ch->specs[i].method);
        if (info.precision == FL_PRECISION_INT8) {
            assert_non_null(fl_model_mat_const(pm, i)->qf); /* run by the int8 kernels */
            assert_non_null(strstr(fl_plan_reason(plan, i), "int8"));
        }
    }
    double dev = deviation(pm, m, 16, 24, 99);
    assert_true(dev > 0 && dev <= 0.03);
    /* the written model keeps the precisions and the outputs */
    const char *path = tmp_path("plan_prec.safetensors");
    assert_int_equal(fl_model_save(pm, path), FL_OK);
    fl_model *back;
    assert_int_equal(fl_model_load(path, &back), FL_OK);
    for (size_t i = 0; i < nmat; i++) {
        fl_matrix_info info;
        assert_int_equal(fl_model_matrix_info(back, i, &info), FL_OK);
        assert_int_equal(info.precision, ch->precisions[i]);
    }
    assert_true(deviation(back, pm, 4, 8, 5) < 1e-6);
    fl_model_free(back);
    remove(path);
    fl_plan_free(plan);
    fl_model_free(m);
}

/* A budget smaller than int8's and bf16's rounding error: tried, refused, the plan stays f32 (and
 * says why). */
static void test_tiny_budget_refuses(void **state) {
    (void)state;
    fl_model *m = make_model();
    fl_profile p = posed();
    fl_plan_opts o = opts(1e-7, BIT(FL_PRECISION_F32) | BIT(FL_PRECISION_INT8) | BIT(FL_PRECISION_BF16));
    fl_plan *plan;
    assert_int_equal(fl_plan_create(m, &p, &o, &plan), FL_OK);
    const size_t nmat = fl_model_num_matrices(m);
    const fl_plan_point *ch = fl_plan_point_at(plan, fl_plan_chosen(plan));
    assert_int_equal(count_prec(ch, nmat, FL_PRECISION_F32), (int)nmat);
    int tried = 0;
    for (size_t k = 0; k < fl_plan_num_points(plan); k++) {
        const fl_plan_point *pt = fl_plan_point_at(plan, k);
        if (count_prec(pt, nmat, FL_PRECISION_F32) < (int)nmat) {
            tried++;
            assert_false(pt->meets_budget);
            assert_true(pt->loss > 1e-7);
        }
    }
    assert_true(tried >= 2); /* int8, then bf16 */
    assert_non_null(strstr(fl_plan_reason(plan, 1), "broke the budget"));
    for (size_t i = 0; i < nmat; i++) assert_null(fl_model_mat_const(fl_plan_model(plan), i)->qf);
    fl_plan_free(plan);
    fl_model_free(m);
}

/* Relative deviation ||y_c - y_m|| / ||y_m|| of m stored in precisions q, on x (n, T, D): the
 * planner's deviation metric, computed here through fl_model_quantize and the runtime. */
static double quantized_dev(const fl_model *m, const fl_precision *q, int n, int T, const float *x) {
    fl_model *c;
    assert_int_equal(fl_model_quantize(m, q, &c), FL_OK);
    const int H = fl_model_arch(m)->hidden;
    float *y[2] = {malloc(sizeof(float) * n * T * H), malloc(sizeof(float) * n * T * H)};
    const fl_model *ms[2] = {c, m};
    for (int k = 0; k < 2; k++) {
        fl_session_opts so = {.max_batch = n, .max_seq = T, .threads = 1};
        fl_session *s;
        assert_int_equal(fl_session_create(ms[k], &so, &s), FL_OK);
        fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = n, .seq = T, .x = x, .y = y[k]};
        assert_int_equal(fl_session_run(s, &io), FL_OK);
        fl_session_free(s);
    }
    double num = 0, den = 0;
    for (int i = 0; i < n * T * H; i++) num += ((double)y[0][i] - y[1][i]) * ((double)y[0][i] - y[1][i]), den += (double)y[1][i] * y[1][i];
    free(y[0]), free(y[1]);
    fl_model_free(c);
    return sqrt(num / den);
}

/* Mixed precisions: a budget between one matrix in int8 and both. The losses the planner records
 * are those of the really quantized models (the same figures computed here through
 * fl_model_quantize and a session), and the plan keeps one matrix int8 and the other f32. */
static void test_mixed_precisions(void **state) {
    (void)state;
    fl_model *m = make_model();
    enum { N = 32, T = 16, D = 5 };
    float *x = malloc(sizeof(float) * N * T * D);
    fl_rng r;
    fl_rng_seed(&r, 21);
    for (int i = 0; i < N * T * D; i++) x[i] = (float)fl_rng_normal(&r);
    const fl_precision both[2] = {FL_PRECISION_INT8, FL_PRECISION_INT8}, ih[2] = {FL_PRECISION_INT8, FL_PRECISION_F32},
                       hh[2] = {FL_PRECISION_F32, FL_PRECISION_INT8};
    const double d12 = quantized_dev(m, both, N, T, x), d1 = quantized_dev(m, ih, N, T, x),
                 d2 = quantized_dev(m, hh, N, T, x);
    assert_true(d1 > 0 && d2 > 0 && fmax(d1, d2) < d12);
    fl_plan_data data = {.n = N, .seq = T, .dim = D, .x = x};
    fl_profile p = posed();
    fl_plan_opts o = opts(0, BIT(FL_PRECISION_INT8));
    o.data = &data;
    o.max_loss = 0.5 * (fmax(d1, d2) + d12);
    fl_plan *plan;
    assert_int_equal(fl_plan_create(m, &p, &o, &plan), FL_OK);
    int seen = 0;
    for (size_t k = 0; k < fl_plan_num_points(plan); k++) {
        const fl_plan_point *pt = fl_plan_point_at(plan, k);
        if (pt->specs[0].method != FL_METHOD_DENSE || pt->specs[1].method != FL_METHOD_DENSE) continue;
        const double want = pt->precisions[0] == FL_PRECISION_INT8 ? (pt->precisions[1] == FL_PRECISION_INT8 ? d12 : d1)
                                                                   : (pt->precisions[1] == FL_PRECISION_INT8 ? d2 : 0.0);
        assert_true(fabs(pt->loss - want) <= 1e-6 * want + 1e-12);
        seen += pt->precisions[0] != FL_PRECISION_F32 || pt->precisions[1] != FL_PRECISION_F32;
    }
    assert_true(seen >= 2); /* both at once (refused), then one (kept) */
    const fl_plan_point *ch = fl_plan_point_at(plan, fl_plan_chosen(plan));
    assert_int_equal(count_prec(ch, 2, FL_PRECISION_INT8), 1);
    assert_int_equal(count_prec(ch, 2, FL_PRECISION_F32), 1);
    assert_true(ch->meets_budget);
    fl_plan_free(plan);
    free(x);
    fl_model_free(m);
}

/* Default options: no precision changes anywhere (the planner of before); bf16 alone when only it
 * is offered; an unknown precision bit is refused. */
static void test_default_and_bf16(void **state) {
    (void)state;
    fl_model *m = make_model();
    fl_profile p = posed();
    const size_t nmat = fl_model_num_matrices(m);
    fl_plan_opts o = opts(0.02, 0);
    fl_plan *plan;
    assert_int_equal(fl_plan_create(m, &p, &o, &plan), FL_OK);
    for (size_t k = 0; k < fl_plan_num_points(plan); k++)
        assert_int_equal(count_prec(fl_plan_point_at(plan, k), nmat, FL_PRECISION_F32), (int)nmat);
    fl_plan_free(plan);
    o = opts(0.02, BIT(FL_PRECISION_BF16));
    assert_int_equal(fl_plan_create(m, &p, &o, &plan), FL_OK);
    const fl_plan_point *ch = fl_plan_point_at(plan, fl_plan_chosen(plan));
    assert_true(count_prec(ch, nmat, FL_PRECISION_BF16) >= 1);
    assert_int_equal(count_prec(ch, nmat, FL_PRECISION_INT8), 0);
    assert_true(deviation(fl_plan_model(plan), m, 16, 24, 7) <= 0.03);
    fl_plan_free(plan);
    o = opts(0.02, 1u << 7);
    assert_int_equal(fl_plan_create(m, &p, &o, &plan), FL_ERR_ARG);
    assert_null(plan);
    assert_non_null(strstr(fl_last_error(), "precisions"));
    fl_model_free(m);
}

static int sh(const char *fmt, ...) {
    char cmd[4096], full[4300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "%s >%s 2>%s", cmd, tmp_path("plan_prec_out.txt"), tmp_path("plan_prec_err.txt"));
    int rc = system(full);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* plan --precisions --json: each matrix of the chosen plan and of every candidate names its
 * precision; compress writes the quantized model; a bad list is a usage error. */
static void test_cli(void **state) {
    (void)state;
    const char *cli = getenv("FL_CLI");
    if (!cli) skip();
    fl_model *m = make_model();
    char model[512], out[512];
    snprintf(model, sizeof model, "%s", tmp_path("plan_prec_in.safetensors"));
    snprintf(out, sizeof out, "%s", tmp_path("plan_prec_out.safetensors"));
    assert_int_equal(fl_model_save(m, model), FL_OK);
    const char *pose = "--cache-bytes 4096 --bandwidth 1 --flops 1000 --no-measure --quiet --no-cp";
    assert_int_equal(sh("%s plan %s --precisions f32,int8 --max-dev 0.02 --json %s", cli, model, pose), 0);
    unsigned char *text;
    file_read(tmp_path("plan_prec_out.txt"), &text);
    cJSON *root = cJSON_Parse((const char *)text);
    free(text);
    assert_non_null(root);
    const cJSON *mats = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "chosen"), "matrices"), *it;
    assert_int_equal(cJSON_GetArraySize(mats), 2);
    int int8 = 0;
    cJSON_ArrayForEach(it, mats) {
        const cJSON *q = cJSON_GetObjectItem(it, "precision");
        assert_true(cJSON_IsString(q));
        int8 += !strcmp(q->valuestring, "int8");
    }
    assert_true(int8 >= 1);
    const cJSON *d0 = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(root, "dense"), "matrices"), 0);
    assert_string_equal(cJSON_GetObjectItem(d0, "precision")->valuestring, "f32");
    cJSON_Delete(root);
    assert_int_equal(sh("%s compress %s -o %s --precisions int8 --max-dev 0.02 %s", cli, model, out, pose), 0);
    fl_model *back;
    assert_int_equal(fl_model_load(out, &back), FL_OK);
    int q8 = 0;
    for (size_t i = 0; i < fl_model_num_matrices(back); i++) {
        fl_matrix_info info;
        assert_int_equal(fl_model_matrix_info(back, i, &info), FL_OK);
        q8 += info.precision == FL_PRECISION_INT8;
    }
    assert_true(q8 >= 1);
    assert_true(deviation(back, m, 16, 24, 11) <= 0.03);
    fl_model_free(back);
    assert_int_equal(sh("%s plan %s --precisions f32,int4 %s", cli, model, pose), 2);
    file_read(tmp_path("plan_prec_err.txt"), &text);
    assert_non_null(strstr((const char *)text, "int4"));
    free(text);
    remove(model), remove(out), remove(tmp_path("plan_prec_out.txt")), remove(tmp_path("plan_prec_err.txt"));
    fl_model_free(m);
}

static int setup(void **state) {
    (void)state;
    return tmp_dir_make("test_plan_prec");
}

static int teardown(void **state) {
    (void)state;
    return tmp_dir_remove();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_int8_chosen_within_budget),
        cmocka_unit_test(test_tiny_budget_refuses),
        cmocka_unit_test(test_mixed_precisions),
        cmocka_unit_test(test_default_and_bf16),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
