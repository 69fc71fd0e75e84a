/* The SVD / CP kernel efficiencies at two ranks: the profile's figures at rank H/4 (rec_efficiency,
 * gemm_efficiency and their rows tables) and at H/16 (the _lo fields), measured at hidden
 * FL_PROFILE_EFF_HIDDEN, interpolated by the cost model and clamped outside the two: the input
 * projection's linearly in log(R / H), the recurrent step's linearly in log of its W_hh's weights
 * between the two measured W_hh's (the same thing at the measured hidden size, not at others); a
 * profile without the H/16 figures (older files) predicts with the H/4 ones at every rank. The
 * step's efficiency is at most 1. Hand-written profiles, each efficiency read back
 * as the ratio of a matrix's compute term without efficiencies to the same term with them (the
 * model divides by it); and the profile file round trip. Nothing here is timed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fastlstm/plan.h"
#include "internal.h"
#include "plan/plan_internal.h"
#include "testutil.h"
#include "json_file.h"
#include "flat_profile.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The measured shape: input and hidden FL_PROFILE_EFF_HIDDEN (E), one layer, no head: W_ih and W_hh
 * both (4E, E); rank E/16 and E/4 are the measured ranks. */
#define E FL_PROFILE_EFF_HIDDEN
static const fl_arch arch_e = {.input = E, .hidden = E, .layers = 1, .head = FL_HEAD_NONE};
static const fl_arch *arch = &arch_e; /* the shape the helpers below predict (test_size_interpolation changes it) */

/* Compute terms of W_ih (t[0]) and W_hh (t[1]), both `m` at `rank`. */
static void terms(const fl_profile *p, fl_method m, int rank, int batch, int seq, fl_cost_term t[2]) {
    const fl_mat_spec specs[2] = {{m, rank}, {m, rank}};
    fl_cost c;
    assert_int_equal(fl_cost_predict_terms(p, arch, specs, batch, seq, 1, &c, t), FL_OK);
}

/* The efficiencies p gives the recurrent step (*rec) and the input projection (*gemm) of method m
 * at rank, batch, seq (*arch): the terms of a profile without efficiencies over p's. */
static void efficiencies(const fl_profile *p, fl_method m, int rank, int batch, int seq, double *rec, double *gemm) {
    fl_profile p0 = *p;
    memset(p0.rec_efficiency, 0, sizeof p0.rec_efficiency);
    memset(p0.gemm_efficiency, 0, sizeof p0.gemm_efficiency);
    memset(p0.rec_rows_efficiency, 0, sizeof p0.rec_rows_efficiency);
    memset(p0.gemm_rows_efficiency, 0, sizeof p0.gemm_rows_efficiency);
    memset(p0.rec_efficiency_lo, 0, sizeof p0.rec_efficiency_lo);
    fl_cost_term t0[2], t[2];
    terms(&p0, m, rank, batch, seq, t0);
    terms(p, m, rank, batch, seq, t);
    *rec = t0[1].compute_seconds / t[1].compute_seconds;
    *gemm = t0[0].compute_seconds / t[0].compute_seconds;
}

/* H/4 figures: step 0.8 at batch 1 and 0.6 at 4..256; GEMM 0.9 at every rows. H/16 figures: step
 * 0.4 at batch 1, then 0.3, 0.35, 0.4, 0.45 at 4, 16, 64, 256; GEMM 0.5, then 0.5, 0.6, 0.7, 0.8. */
static void set_figures(fl_profile *p, fl_method m) {
    const double hr[4] = {0.6, 0.6, 0.6, 0.6}, hg[4] = {0.9, 0.9, 0.9, 0.9};
    const double lr[4] = {0.3, 0.35, 0.4, 0.45}, lg[4] = {0.5, 0.6, 0.7, 0.8};
    p->rec_efficiency[m] = 0.8, p->gemm_efficiency[m] = 0.9;
    p->rec_efficiency_lo[m] = 0.4, p->gemm_efficiency_lo[m] = 0.5;
    memcpy(p->rec_rows_efficiency[m], hr, sizeof hr);
    memcpy(p->gemm_rows_efficiency[m], hg, sizeof hg);
    memcpy(p->rec_rows_efficiency_lo[m], lr, sizeof lr);
    memcpy(p->gemm_rows_efficiency_lo[m], lg, sizeof lg);
}

static void test_rank_interpolation(void **state) {
    (void)state;
    for (int m = FL_METHOD_SVD; m <= FL_METHOD_CP; m++) {
        fl_profile p = flat_profile();
        set_figures(&p, (fl_method)m);
        double r, g;
        /* batch 1, seq 4 (the projection on 4 rows): rank H/16 the low figures, H/4 the high ones,
         * H/8 half-way, clamped below H/16 and above H/4 */
        const int ranks[5] = {E / 32, E / 16, E / 8, E / 4, E / 2};
        const double want_r[5] = {0.4, 0.4, 0.6, 0.8, 0.8}, want_g[5] = {0.5, 0.5, 0.7, 0.9, 0.9};
        for (int k = 0; k < 5; k++) {
            efficiencies(&p, (fl_method)m, ranks[k], 1, 4, &r, &g);
            assert_close(r, want_r[k], 1e-12);
            assert_close(g, want_g[k], 1e-12);
        }
        /* the rows tables interpolate first: batch 2 (half-way in log between 1 and 4) low 0.35,
         * high 0.7; batch 16 low 0.35, high 0.6; seq 4 x batch 16 = 64 rows: GEMM low 0.7, high 0.9 */
        efficiencies(&p, (fl_method)m, E / 8, 2, 4, &r, &g);
        assert_close(r, 0.5 * (0.35 + 0.7), 1e-12);
        efficiencies(&p, (fl_method)m, E / 8, 16, 4, &r, &g);
        assert_close(r, 0.5 * (0.35 + 0.6), 1e-12);
        assert_close(g, 0.5 * (0.7 + 0.9), 1e-12);
        /* part of the way in log rank: rank 6 E / 64 is log(6/4)/log(4) of the way (at the measured
         * hidden size the step's weights grow as R, for SVD and CP alike: the same place) */
        const double u = log(1.5) / log(4.0);
        efficiencies(&p, (fl_method)m, 6 * E / 64, 1, 4, &r, &g);
        assert_close(r, 0.4 + u * 0.4, 1e-12);
        assert_close(g, 0.5 + u * 0.4, 1e-12);
        /* without the H/16 figures (an older profile): the H/4 ones at every rank */
        p.rec_efficiency_lo[m] = 0;
        for (int k = 0; k < 5; k++) {
            efficiencies(&p, (fl_method)m, ranks[k], 1, 4, &r, &g);
            assert_close(r, 0.8, 1e-12);
            assert_close(g, 0.9, 1e-12);
        }
    }
    /* the other method's figures are not touched: SVD figures leave a CP prediction at 1 */
    fl_profile p = flat_profile();
    set_figures(&p, FL_METHOD_SVD);
    double r, g;
    efficiencies(&p, FL_METHOD_CP, E / 16, 1, 4, &r, &g);
    assert_close(r, 1.0, 1e-12);
    assert_close(g, 1.0, 1e-12);
}

/* Weights of a (4 H, K) W_hh of method m at rank R. */
static double whh_params(fl_method m, int H, int K, int R) {
    fl_mat w = {.method = m, .rows = 4 * H, .cols = K, .rank = R};
    return (double)fl_mat_params(&w);
}

/* At another hidden size the recurrent step's figures go by its W_hh's weights against the measured
 * ones (E at ranks E/16 and E/4), the projection's still by R / H: a 1500 rank-93 (H/16) step holds
 * 2.1x the weights of the measured H/16 one and is placed 0.55 of the way to the H/4 figures; a
 * 650 rank-40 step holds fewer than the H/16 one (its figures); a 650 rank-162 (H/4) step sits at
 * 0.34. */
static void test_size_interpolation(void **state) {
    (void)state;
    const struct {
        int H, R;
    } at[4] = {{1500, 93}, {650, 40}, {650, 162}, {1500, 375}};
    for (int m = FL_METHOD_SVD; m <= FL_METHOD_CP; m++)
        for (int k = 0; k < 4; k++) {
            fl_profile p = flat_profile();
            set_figures(&p, (fl_method)m);
            const fl_arch a = {.input = at[k].H, .hidden = at[k].H, .layers = 1, .head = FL_HEAD_NONE};
            arch = &a;
            const double plo = whh_params((fl_method)m, E, E, E / 16), phi = whh_params((fl_method)m, E, E, E / 4);
            double u = log(whh_params((fl_method)m, at[k].H, at[k].H, at[k].R) / plo) / log(phi / plo);
            u = u < 0 ? 0 : u > 1 ? 1 : u;
            double ur = log(16.0 * at[k].R / at[k].H) / log(4.0);
            ur = ur < 0 ? 0 : ur > 1 ? 1 : ur;
            double r, g;
            efficiencies(&p, (fl_method)m, at[k].R, 1, 4, &r, &g); /* batch 1: 0.4 .. 0.8; 4 rows: 0.5 .. 0.9 */
            assert_close(r, 0.4 + u * 0.4, 1e-12);
            assert_close(g, 0.5 + ur * 0.4, 1e-12);
            arch = &arch_e;
        }
    /* the places themselves, for SVD: a 1500 rank-93 step halfway (0.545), a 650 rank-40 one at the
     * low figures, a 650 rank-162 one at a third (0.342), a 1500 rank-375 one at the high figures */
    const double want[4] = {log(7500.0 * 93 / (5120.0 * 64)) / log(4.0), 0, log(3250.0 * 162 / (5120.0 * 64)) / log(4.0), 1};
    assert_true(want[0] > 0.5 && want[0] < 0.6 && want[2] > 0.3 && want[2] < 0.4);
    for (int k = 0; k < 4; k++) {
        fl_profile p = flat_profile();
        set_figures(&p, FL_METHOD_SVD);
        const fl_arch a = {.input = at[k].H, .hidden = at[k].H, .layers = 1, .head = FL_HEAD_NONE};
        arch = &a;
        double r, g;
        efficiencies(&p, FL_METHOD_SVD, at[k].R, 1, 4, &r, &g);
        assert_close(r, 0.4 + want[k] * 0.4, 1e-12);
        arch = &arch_e;
    }
}

/* A recurrent step's efficiency counts for at most 1 (faster than a dense step on as many bytes is
 * where the measured shape's factors sat, not its kernels); the projection's is not capped. H/16
 * figures above 1 (step 1.6 at batch 1, GEMM 1.5), H/4 ones below (0.8, 0.9). */
static void test_step_efficiency_cap(void **state) {
    (void)state;
    for (int m = FL_METHOD_SVD; m <= FL_METHOD_CP; m++) {
        fl_profile p = flat_profile();
        set_figures(&p, (fl_method)m);
        p.rec_efficiency_lo[m] = 1.6, p.gemm_efficiency_lo[m] = 1.5;
        for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) p.gemm_rows_efficiency_lo[m][k] = 1.5;
        double r, g;
        efficiencies(&p, (fl_method)m, E / 16, 1, 4, &r, &g);
        assert_close(r, 1.0, 1e-12);
        assert_close(g, 1.5, 1e-12);
        efficiencies(&p, (fl_method)m, E / 8, 1, 4, &r, &g); /* half-way: 1.2 and 1.2 */
        assert_close(r, 1.0, 1e-12);
        assert_close(g, 1.2, 1e-12);
        efficiencies(&p, (fl_method)m, E / 4, 1, 4, &r, &g); /* the H/4 figures, below 1: as they are */
        assert_close(r, 0.8, 1e-12);
        assert_close(g, 0.9, 1e-12);
        /* an older profile (H/4 figures only) above 1: capped too */
        p.rec_efficiency_lo[m] = 0, p.rec_efficiency[m] = 1.3;
        efficiencies(&p, (fl_method)m, E / 16, 1, 4, &r, &g);
        assert_close(r, 1.0, 1e-12);
    }
}

/* Prediction of p for an SVD and a CP model at ranks H/16, H/8, H/4: equal for equal profiles. */
static void assert_same_predictions(const fl_profile *a, const fl_profile *b) {
    for (int m = FL_METHOD_SVD; m <= FL_METHOD_CP; m++)
        for (int rank = 4; rank <= 16; rank *= 2) {
            const fl_mat_spec specs[2] = {{(fl_method)m, rank}, {(fl_method)m, rank}};
            fl_cost ca, cb;
            assert_int_equal(fl_cost_predict(a, arch, specs, 3, 5, 1, &ca), FL_OK);
            assert_int_equal(fl_cost_predict(b, arch, specs, 3, 5, 1, &cb), FL_OK);
            assert_close(ca.seconds, cb.seconds, 1e-9 * ca.seconds);
        }
}

/* Rewrites the profile file at path with `edit` applied to its "efficiency" object. */
static void edit_efficiency(const char *path, void (*edit)(cJSON *eff)) {
    cJSON *root = json_file_read(path);
    cJSON *eff = cJSON_GetObjectItemCaseSensitive(root, "efficiency");
    assert_non_null(eff);
    edit(eff);
    json_file_write(path, root);
    cJSON_Delete(root);
}

static void drop_lo(cJSON *eff) {
    assert_non_null(cJSON_GetObjectItemCaseSensitive(eff, "rank_h16"));
    cJSON_DeleteItemFromObjectCaseSensitive(eff, "rank_h16");
}

static void break_lo(cJSON *eff) {
    cJSON *lo = cJSON_CreateObject();
    cJSON_AddNumberToObject(lo, "svd_recurrent", 0.5);
    cJSON_AddNumberToObject(lo, "cp_recurrent", 0.5);
    cJSON_AddNumberToObject(lo, "svd_gemm", 0.5); /* no cp_gemm */
    cJSON_AddItemToObject(eff, "rank_h16", lo);
}

static void test_rank_profile_file(void **state) {
    (void)state;
    fl_profile p;
    assert_int_equal(fl_profile_detect(&p), FL_OK);
    set_figures(&p, FL_METHOD_SVD);
    set_figures(&p, FL_METHOD_CP);
    p.rec_rows_efficiency_lo[FL_METHOD_CP][2] = 0.125; /* the two methods' tables differ */
    p.gemm_efficiency_lo[FL_METHOD_SVD] = 0.375;
    const char *path = "test_cost_rank_profile.json";
    assert_int_equal(fl_profile_save(&p, path), FL_OK);
    fl_profile q;
    assert_int_equal(fl_profile_load(path, &q), FL_OK);
    for (int m = FL_METHOD_SVD; m <= FL_METHOD_CP; m++) {
        assert_close(q.rec_efficiency[m], p.rec_efficiency[m], 1e-12);
        assert_close(q.gemm_efficiency[m], p.gemm_efficiency[m], 1e-12);
        assert_close(q.rec_efficiency_lo[m], p.rec_efficiency_lo[m], 1e-12);
        assert_close(q.gemm_efficiency_lo[m], p.gemm_efficiency_lo[m], 1e-12);
        for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) {
            assert_close(q.rec_rows_efficiency[m][k], p.rec_rows_efficiency[m][k], 1e-12);
            assert_close(q.gemm_rows_efficiency[m][k], p.gemm_rows_efficiency[m][k], 1e-12);
            assert_close(q.rec_rows_efficiency_lo[m][k], p.rec_rows_efficiency_lo[m][k], 1e-12);
            assert_close(q.gemm_rows_efficiency_lo[m][k], p.gemm_rows_efficiency_lo[m][k], 1e-12);
        }
    }
    assert_close(q.rec_rows_efficiency_lo[FL_METHOD_CP][2], 0.125, 0);
    assert_close(q.gemm_efficiency_lo[FL_METHOD_SVD], 0.375, 0);
    assert_same_predictions(&p, &q);

    /* A profile written before the H/16 figures (no "rank_h16") loads with them 0 and predicts as
     * the H/4 figures alone. */
    edit_efficiency(path, drop_lo);
    assert_int_equal(fl_profile_load(path, &q), FL_OK);
    for (int m = FL_METHOD_SVD; m <= FL_METHOD_CP; m++) {
        assert_close(q.rec_efficiency_lo[m] + q.gemm_efficiency_lo[m], 0, 0);
        for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++)
            assert_close(q.rec_rows_efficiency_lo[m][k] + q.gemm_rows_efficiency_lo[m][k], 0, 0);
        assert_close(q.rec_efficiency[m], p.rec_efficiency[m], 1e-12);
    }
    fl_profile hi_only = p;
    memset(hi_only.rec_efficiency_lo, 0, sizeof hi_only.rec_efficiency_lo);
    assert_same_predictions(&hi_only, &q);
    /* and saved again, it still has none */
    assert_int_equal(fl_profile_save(&q, path), FL_OK);
    fl_profile r;
    assert_int_equal(fl_profile_load(path, &r), FL_OK);
    assert_close(r.rec_efficiency_lo[FL_METHOD_SVD] + r.rec_efficiency_lo[FL_METHOD_CP], 0, 0);

    /* A "rank_h16" missing one of its four numbers is refused, naming it. */
    edit_efficiency(path, break_lo);
    assert_int_equal(fl_profile_load(path, &q), FL_ERR_FORMAT);
    assert_non_null(strstr(fl_last_error(), "cp_gemm"));
    remove(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rank_interpolation),
        cmocka_unit_test(test_size_interpolation),
        cmocka_unit_test(test_step_efficiency_cap),
        cmocka_unit_test(test_rank_profile_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
