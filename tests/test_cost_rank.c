/* The SVD / CP kernel efficiencies at two ranks: the profile's figures at rank H/4 (rec_efficiency,
 * gemm_efficiency and their rows tables) and at H/16 (the _lo fields), interpolated by the cost model
 * linearly in log(R / H) and clamped outside the two; a profile without the H/16 figures (older
 * files) predicts with the H/4 ones at every rank. Hand-written profiles, each efficiency read back
 * as the ratio of a matrix's compute term without efficiencies to the same term with them (the
 * model divides by it); and the profile file round trip. Nothing here is timed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fastlstm/plan.h"
#include "testutil.h"
#include "json_file.h"
#include "flat_profile.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* input 64, hidden 64, one layer, no head: W_ih and W_hh both (256, 64); rank 4 is H/16, 16 is H/4. */
static const fl_arch arch = {.input = 64, .hidden = 64, .layers = 1, .head = FL_HEAD_NONE};

/* Compute terms of W_ih (t[0]) and W_hh (t[1]), both `m` at `rank`. */
static void terms(const fl_profile *p, fl_method m, int rank, int batch, int seq, fl_cost_term t[2]) {
    const fl_mat_spec specs[2] = {{m, rank}, {m, rank}};
    fl_cost c;
    assert_int_equal(fl_cost_predict_terms(p, &arch, specs, batch, seq, 1, &c, t), FL_OK);
}

/* The efficiencies p gives the recurrent step (*rec) and the input projection (*gemm) of method m
 * at rank, batch, seq: the terms of a profile without efficiencies over p's. */
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
        const int ranks[5] = {2, 4, 8, 16, 32};
        const double want_r[5] = {0.4, 0.4, 0.6, 0.8, 0.8}, want_g[5] = {0.5, 0.5, 0.7, 0.9, 0.9};
        for (int k = 0; k < 5; k++) {
            efficiencies(&p, (fl_method)m, ranks[k], 1, 4, &r, &g);
            assert_close(r, want_r[k], 1e-12);
            assert_close(g, want_g[k], 1e-12);
        }
        /* the rows tables interpolate first: batch 2 (half-way in log between 1 and 4) low 0.35,
         * high 0.7; batch 16 low 0.35, high 0.6; seq 4 x batch 16 = 64 rows: GEMM low 0.7, high 0.9 */
        efficiencies(&p, (fl_method)m, 8, 2, 4, &r, &g);
        assert_close(r, 0.5 * (0.35 + 0.7), 1e-12);
        efficiencies(&p, (fl_method)m, 8, 16, 4, &r, &g);
        assert_close(r, 0.5 * (0.35 + 0.6), 1e-12);
        assert_close(g, 0.5 * (0.7 + 0.9), 1e-12);
        /* a quarter of the way in log rank: rank 4 * 4^(1/4) is not an integer; rank 6 is
         * log(6/4)/log(4) of the way */
        const double u = log(1.5) / log(4.0);
        efficiencies(&p, (fl_method)m, 6, 1, 4, &r, &g);
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
    efficiencies(&p, FL_METHOD_CP, 4, 1, 4, &r, &g);
    assert_close(r, 1.0, 1e-12);
    assert_close(g, 1.0, 1e-12);
}

/* Prediction of p for an SVD and a CP model at ranks H/16, H/8, H/4: equal for equal profiles. */
static void assert_same_predictions(const fl_profile *a, const fl_profile *b) {
    for (int m = FL_METHOD_SVD; m <= FL_METHOD_CP; m++)
        for (int rank = 4; rank <= 16; rank *= 2) {
            const fl_mat_spec specs[2] = {{(fl_method)m, rank}, {(fl_method)m, rank}};
            fl_cost ca, cb;
            assert_int_equal(fl_cost_predict(a, &arch, specs, 3, 5, 1, &ca), FL_OK);
            assert_int_equal(fl_cost_predict(b, &arch, specs, 3, 5, 1, &cb), FL_OK);
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
        cmocka_unit_test(test_rank_profile_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
