/* The regime the planner states is what the paper means: memory-bound when the largest layer's
 * recurrent weights do not fit the *measured* last-level cache. A fake profile poses as the VM of
 * issue 10: glibc reports a 512 MiB L3, the streaming curve falls at 32 MiB. Also the roofline term
 * of each matrix, the runtime's thread rule in the cost model, planned threads recorded in the
 * model (and used by a session created with threads = 0), and the choice at other batches. Nothing
 * is timed (verify = 0). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fastlstm/plan.h"
#include "internal.h"
#include "plan/profile_internal.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)
#define NPTS 57

static size_t ladder(int k) { return (size_t)(16384.0 * pow(2.0, k / 4.0)); }

/* Streaming rate of the fake VM, one thread (all cores: private levels twice the capacity and
 * rate, the shared L3 1.6x the rate, memory 1.5x): L1 48 KiB, L2 1 MiB, L3 32 MiB, then DRAM. */
static double vm_rate(size_t b, bool all) {
    const double cap[3] = {48.0 * KIB * (all ? 2 : 1), 1.0 * MIB * (all ? 2 : 1), 32.0 * MIB};
    const double bw[4] = {200e9 * (all ? 2 : 1), 120e9 * (all ? 2 : 1), 80e9 * (all ? 1.6 : 1), 36e9 * (all ? 1.5 : 1)};
    for (int i = 0; i < 3; i++)
        if ((double)b <= cap[i]) return bw[i];
    return bw[3];
}

/* The VM as reported (sysconf: 512 MiB L3) with plausible rates; measured = 0. */
static void reported_vm(fl_profile *p) {
    memset(p, 0, sizeof *p);
    p->cores = 2;
    p->simd_bits = 512;
    const size_t rep[3] = {48 * KIB, 1 * MIB, 512 * MIB};
    const double bw[3] = {200e9, 120e9, 80e9};
    for (int i = 0; i < 3; i++)
        p->level[i] = (fl_cache_level){.level = i + 1, .bytes = rep[i], .shared_cpus = i == 2 ? 2 : 1,
                                       .bandwidth = bw[i], .reported_bytes = rep[i]};
    p->n_levels = 3;
    p->dram_bandwidth = 36e9;
    p->gemm_flops = 200e9;
    p->gemv_flops = 100e9;
    p->step_overhead = 0.3e-6;
    p->parallel_step_bytes = 512.0 * 1024;
    p->parallel_proj_macs = 2.0 * (1 << 20);
}

/* The same VM after fl_profile_measure: the ladder curves and the levels found on them. */
static void measured_vm(fl_profile *p) {
    reported_vm(p);
    for (int k = 0; k < NPTS; k++) {
        p->curve_bytes[k] = p->curve_all_bytes[k] = ladder(k);
        p->curve_bandwidth[k] = vm_rate(ladder(k), false);
        p->curve_all_bandwidth[k] = vm_rate(ladder(k), true);
    }
    p->n_curve = p->n_curve_all = NPTS;
    p->curve_all_threads = 2;
    fl_knee k1[4], k2[4];
    int n1 = fl_profile_find_levels(p->curve_bytes, p->curve_bandwidth, NPTS, k1, 4, &p->dram_bandwidth);
    int n2 = fl_profile_find_levels(p->curve_all_bytes, p->curve_all_bandwidth, NPTS, k2, 4, NULL);
    fl_profile_apply_levels(p, k1, n1, k2, n2);
    p->measured = 1;
}

static const fl_arch big = {.input = 1500, .hidden = 1500, .layers = 2, .head = FL_HEAD_NONE};
static const fl_arch mid = {.input = 650, .hidden = 650, .layers = 2, .head = FL_HEAD_NONE};

static void test_measured_capacity_sets_the_regime(void **state) {
    (void)state;
    fl_profile rep, meas;
    reported_vm(&rep);
    measured_vm(&meas);
    assert_int_equal(meas.n_levels, 3);
    assert_int_equal(meas.level[2].bytes, 32 * MIB);
    assert_int_equal(meas.level[2].reported_bytes, 512 * MIB);
    assert_int_equal(meas.level[2].shared_cpus, 2);
    fl_cost c;
    for (int threads = 1; threads <= 2; threads++) {
        /* 2x1500: W_hh 4 * 6000 * 1500 = 36 MB > 3/4 of 32 MiB: memory-bound, streamed from DRAM */
        assert_int_equal(fl_cost_predict(&meas, &big, NULL, 1, 35, threads, &c), FL_OK);
        assert_int_equal(c.working_set, (size_t)4 * 6000 * 1500);
        assert_int_equal(c.regime, FL_REGIME_MEMORY);
        assert_int_equal(c.level, -1);
        /* 2x650: 6.76 MB fits: compute-bound */
        assert_int_equal(fl_cost_predict(&meas, &mid, NULL, 1, 35, threads, &c), FL_OK);
        assert_int_equal(c.working_set, (size_t)4 * 2600 * 650);
        assert_int_equal(c.regime, FL_REGIME_COMPUTE);
        assert_int_equal(c.level, 2);
    }
    /* as reported, the 512 MiB L3 would hold the 36 MB weights: the wrong regime issue 10 saw */
    assert_int_equal(fl_cost_predict(&rep, &big, NULL, 1, 35, 1, &c), FL_OK);
    assert_int_equal(c.regime, FL_REGIME_COMPUTE);
}

/* The dominant roofline term per matrix: at batch 1 the 650 model's W_hh streams from L3 (bytes
 * dominate although the regime is compute-bound); at batch 256 its flops dominate. */
static void test_roofline_terms(void **state) {
    (void)state;
    fl_profile p;
    measured_vm(&p);
    fl_cost c;
    fl_cost_term t[4];
    assert_int_equal(fl_cost_predict_terms(&p, &mid, NULL, 1, 35, 1, &c, t), FL_OK);
    const double whh = 4.0 * 2600 * 650;
    assert_int_equal(t[1].level, 2);
    assert_false(t[1].compute_bound);
    assert_true(fabs(t[1].mem_seconds - whh / 80e9) <= 1e-9 * t[1].mem_seconds);
    assert_true(fabs(t[1].compute_seconds - 2.0 * 2600 * 650 / 100e9) <= 1e-9 * t[1].compute_seconds);
    assert_true(t[1].bytes == whh && t[1].flops == 2.0 * 2600 * 650);
    /* the sum of the per-matrix terms is the prediction's roofline part */
    double mem = 0;
    for (int i = 0; i < 4; i++) mem += t[i].mem_seconds;
    assert_true(fabs(mem - c.mem_seconds) <= 1e-12 * c.mem_seconds);
    assert_int_equal(fl_cost_predict_terms(&p, &mid, NULL, 256, 35, 1, &c, t), FL_OK);
    assert_true(t[1].compute_bound);
    /* the 1500 model's W_hh streams from DRAM */
    assert_int_equal(fl_cost_predict_terms(&p, &big, NULL, 1, 35, 1, &c, t), FL_OK);
    assert_int_equal(t[3].level, -1);
    assert_false(t[3].compute_bound);
}

/* The runtime's thread rule: a small step runs on one thread (so two threads predict the same
 * recurrent term as one), a large one is split and pays the fork / join read off the curves. */
static void test_thread_rule(void **state) {
    (void)state;
    fl_profile p;
    measured_vm(&p);
    const fl_arch tiny = {.input = 8, .hidden = 64, .layers = 1, .head = FL_HEAD_NONE};
    fl_mat_spec svd[2] = {{FL_METHOD_DENSE, 0}, {FL_METHOD_SVD, 8}};
    fl_cost_term t1[2], t2[2];
    fl_cost c1, c2;
    assert_int_equal(fl_cost_predict_terms(&p, &tiny, svd, 1, 35, 1, &c1, t1), FL_OK);
    assert_int_equal(fl_cost_predict_terms(&p, &tiny, svd, 1, 35, 2, &c2, t2), FL_OK);
    assert_int_equal(t2[1].threads, 1);
    assert_true(t2[1].mem_seconds == t1[1].mem_seconds && t2[1].compute_seconds == t1[1].compute_seconds);
    assert_true(c2.seconds == c1.seconds);
    /* 64 MB of W_hh (past the curve's fall, where it interpolates): split, and streamed from DRAM at
     * the all-cores curve's rate */
    const fl_arch huge = {.input = 8, .hidden = 2000, .layers = 1, .head = FL_HEAD_NONE};
    assert_int_equal(fl_cost_predict_terms(&p, &huge, NULL, 1, 35, 2, &c2, t2), FL_OK);
    assert_int_equal(t2[1].threads, 2);
    assert_int_equal(t2[1].level, -1);
    assert_true(fabs(t2[1].mem_seconds - 4.0 * 8000 * 2000 / (36e9 * 1.5)) <= 1e-9 * t2[1].mem_seconds);
}

/* The planner itself on a one-layer 1500 model (36 MB of W_hh) and a 650 one: memory-bound and
 * compute-bound with the measured 32 MiB; the planned thread count is recorded in the model and a
 * session created with threads = 0 runs on it; the choice at batch 1, 8 and 32 is answered. */
static void plan_regime(int hidden, fl_regime want) {
    fl_profile p;
    measured_vm(&p);
    fl_arch a = {.input = 4, .hidden = hidden, .layers = 1, .head = FL_HEAD_NONE};
    fl_model *m;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 3), FL_OK);
    fl_plan_opts o = fl_plan_opts_default();
    o.threads = 0;
    o.max_threads = 2;
    o.verify = 0;
    o.max_evals = 2;
    o.dev_samples = 1;
    o.seq = 4;
    o.allow_cp = 0;
    fl_plan *plan;
    assert_int_equal(fl_plan_create(m, &p, &o, &plan), FL_OK);
    assert_int_equal(fl_plan_regime(plan), want);
    const int th = fl_plan_threads(plan);
    assert_true(th >= 1 && th <= 2);
    /* the planned count is the predicted fastest for the chosen configuration */
    const fl_plan_point *ch = fl_plan_point_at(plan, fl_plan_chosen(plan));
    fl_cost c1, c2;
    assert_int_equal(fl_cost_predict(&p, &a, ch->specs, 1, 4, 1, &c1), FL_OK);
    assert_int_equal(fl_cost_predict(&p, &a, ch->specs, 1, 4, 2, &c2), FL_OK);
    assert_int_equal(th, c2.seconds < c1.seconds ? 2 : 1);
    assert_int_equal(ch->cost.threads, th);
    const fl_model *pm = fl_plan_model(plan);
    assert_int_equal(pm->planned_threads, th);
    /* saved and loaded, the count survives; a session with threads = 0 uses it */
    const char *path = tmp_path("planned.safetensors");
    assert_int_equal(fl_model_save(pm, path), FL_OK);
    fl_model *back;
    assert_int_equal(fl_model_load(path, &back), FL_OK);
    assert_int_equal(back->planned_threads, th);
    fl_session_opts so = fl_session_opts_default();
    so.threads = 0;
    fl_session *s;
    assert_int_equal(fl_session_create(back, &so, &s), FL_OK);
    fl_session_free(s);
    for (int b = 1; b <= 32; b *= b == 1 ? 8 : 4) {
        size_t idx;
        fl_cost cb;
        assert_int_equal(fl_plan_choice_at_batch(plan, b, &idx, &cb), FL_OK);
        assert_true(idx < fl_plan_num_points(plan) && fl_plan_point_at(plan, idx)->meets_budget);
        assert_true(cb.threads >= 1 && cb.threads <= 2);
    }
    size_t idx;
    fl_cost cb;
    assert_int_equal(fl_plan_choice_at_batch(plan, 0, &idx, &cb), FL_ERR_ARG);
    fl_model_free(back);
    fl_plan_free(plan);
    fl_model_free(m);
}

static void test_planner_states_the_regime(void **state) {
    (void)state;
    plan_regime(1500, FL_REGIME_MEMORY);
    plan_regime(650, FL_REGIME_COMPUTE);
}

/* `fastlstm plan` with the fake measured profile saved as this machine's: it states the regime with
 * the measured capacity beside the reported one, the roofline term per matrix and the batch table. */
static void test_cli_plan_prints_regime(void **state) {
    (void)state;
    const char *cli = getenv("FL_CLI");
    if (!cli) skip();
    fl_profile p;
    measured_vm(&p);
    assert_int_equal(fl_machine_id_detect(&p.id), FL_OK);
    p.cores = p.id.cores;
    p.id.llc_bytes = p.level[p.n_levels - 1].bytes;
    const char *prof = tmp_path("vm_profile.json");
    assert_int_equal(fl_profile_save(&p, prof), FL_OK);
    fl_arch a = {.input = 4, .hidden = 650, .layers = 1, .head = FL_HEAD_NONE};
    fl_model *m;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 5), FL_OK);
    const char *model = tmp_path("m650.safetensors");
    assert_int_equal(fl_model_save(m, model), FL_OK);
    fl_model_free(m);
    char cmd[2048];
    const char *out = tmp_path("plan_out.txt");
    snprintf(cmd, sizeof cmd, "%s plan %s --profile %s --no-measure --quiet --max-evals 1 --seq 4 --no-cp > %s 2>&1",
             cli, model, prof, out);
    assert_int_equal(system(cmd), 0);
    FILE *f = fopen(out, "r");
    assert_non_null(f);
    static char text[1 << 16];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = 0;
    if (!strstr(text, "regime: compute-bound") || !strstr(text, "33.6 MB last-level cache, measured; reported 537 MB") ||
        !strstr(text, "dominant term") || !strstr(text, "bytes from L3") || !strstr(text, "batch") ||
        !strstr(text, "(planned)")) {
        print_error("%s\n", text);
        fail();
    }
}

static int setup(void **state) {
    (void)state;
    return tmp_dir_make("test_regime");
}

static int teardown(void **state) {
    (void)state;
    return tmp_dir_remove();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_measured_capacity_sets_the_regime),
        cmocka_unit_test(test_roofline_terms),
        cmocka_unit_test(test_thread_rule),
        cmocka_unit_test(test_planner_states_the_regime),
        cmocka_unit_test(test_cli_plan_prints_regime),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
