/* The f32 SVD / CP input projection's price beyond its stage tables (cost_lowrank_ih.c, format 5):
 * stage 2's output writes once the last level no longer keeps them (fl_profile.lr_ih_walk_*:
 * interpolated at the projection's bytes, 0 below the first walk and without the figures, held
 * beyond the last), the weights streamed once when they fit the private level but the projection
 * does not (once for CP's four gate products), the file's round trip (version 5 written; version 4
 * loads and prices as before; a partial or malformed pair refused, naming the field). A real
 * pass's walk figures are checked with the other figures of that pass (test_cost_lowrank_ih.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fastlstm/plan.h"
#include "internal.h"
#include "plan/plan_internal.h"
#include "plan/profile_internal.h"
#include "kernels/kernels.h"
#include "testutil.h"
#include "flat_profile.h"

#include "json_file.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NR = FL_PROFILE_LR_RANKS, NK = FL_PROFILE_LR_ROWS };

/* ih_profile (flat_profile.h) and, with walks, stage 2's output walks at 100, 200 and 400 kB: 1,
 * 1.5 and 2.5 s per row and panel. */
static fl_profile walk_profile(bool walks) {
    fl_profile p = ih_profile();
    if (walks) {
        const double b[3] = {1e5, 2e5, 4e5}, s[3] = {1, 1.5, 2.5};
        memcpy(p.lr_ih_walk_bytes, b, sizeof b);
        memcpy(p.lr_ih_walk_seconds, s, sizeof s);
    }
    return p;
}

/* The extra a row and panel: the walk's figure less the first's, linear in bytes between walks. */
static void test_write_extra(void **state) {
    (void)state;
    fl_profile p = walk_profile(true);
    assert_true(fl_cost_lowrank_ih_write(&p, 5e4) == 0);   /* below the first walk */
    assert_true(fl_cost_lowrank_ih_write(&p, 1e5) == 0);   /* at it: the table's own buffer */
    assert_close(fl_cost_lowrank_ih_write(&p, 1.5e5), 0.25, 1e-12);
    assert_close(fl_cost_lowrank_ih_write(&p, 2e5), 0.5, 1e-12);
    assert_close(fl_cost_lowrank_ih_write(&p, 3e5), 1.0, 1e-12);
    assert_close(fl_cost_lowrank_ih_write(&p, 4e5), 1.5, 1e-12);
    assert_close(fl_cost_lowrank_ih_write(&p, 1e9), 1.5, 1e-12); /* held beyond the last */
    p.lr_ih_walk_seconds[1] = 0.5;                                /* a walk faster than the first: none */
    assert_true(fl_cost_lowrank_ih_write(&p, 2e5) == 0);
    const fl_profile none = walk_profile(false);
    assert_true(fl_cost_lowrank_ih_write(&none, 1e9) == 0); /* no walks (format 4) */
}

/* Stage 2 of a (400, 64) W_ih at rank 16 over 160 rows (H 100): the projection's bytes, x (160, 64),
 * gx (160, 400) and the weights (V one panel of 64 x 64, U 7 panels of 16 x 64; CP's B 2 panels),
 * set the extra a row and panel; stage 1 is unchanged. */
static void test_price(void **state) {
    (void)state;
    const fl_profile with = walk_profile(true), without = walk_profile(false);
    const double n = 160, x_gx = 4 * n * (64 + 400), w1 = 4.0 * 64 * 64;
    const double svd = x_gx + w1 + 4.0 * 7 * 64 * 16, cp = x_gx + w1 + 4.0 * 2 * 64 * 16;
    fl_lr_cost a, b;
    fl_cost_lowrank_ih(&with, FL_METHOD_SVD, 100, 64, 16, n, 1, 1, 1, 1, &a);
    fl_cost_lowrank_ih(&without, FL_METHOD_SVD, 100, 64, 16, n, 1, 1, 1, 1, &b);
    assert_close(b.comp, n * 7 * 2.0, 1e-9);
    assert_close(a.comp, n * 7 * (2.0 + fl_cost_lowrank_ih_write(&with, svd)), 1e-9);
    assert_close(fl_cost_lowrank_ih_write(&with, svd), 1.5 + (svd - 2e5) / 2e5 - 1, 1e-12); /* 342016 bytes */
    assert_close(a.dup_comp, b.dup_comp, 1e-12);
    assert_close(a.mem, b.mem, 1e-12);
    fl_cost_lowrank_ih(&with, FL_METHOD_CP, 100, 64, 16, n, 1, 1, 1, 1, &a);
    assert_close(a.comp, n * 4 * 2 * (3.0 + fl_cost_lowrank_ih_write(&with, cp)), 1e-9);
    /* two threads at speed-up 1.5: the busiest thread's 4 of 7 panels, each slowed 2 / 1.5 */
    fl_cost_lowrank_ih(&with, FL_METHOD_SVD, 100, 64, 16, n, 2, 2, 1.5, 1.5, &a);
    assert_close(a.comp, n * 4 * (2.0 + fl_cost_lowrank_ih_write(&with, svd)) * 2 / 1.5, 1e-9);
}

/* 4000 rows: x and gx (7.4 MB) far beyond the 1 MiB level while V (16 KiB) and U (28 KiB) fit it:
 * each stage's weights come from memory (DRAM, 10 B/s) once, for the first row chunk, and stay for
 * the others; CP's B (8 KiB) once for its four gate products. With 40 rows all fits: none. */
static void test_first_pass(void **state) {
    (void)state;
    const fl_profile p = walk_profile(false);
    fl_lr_cost l;
    fl_cost_lowrank_ih(&p, FL_METHOD_SVD, 100, 64, 16, 4000, 1, 1, 1, 1, &l);
    assert_close(l.dup_comp, 4000 * 64 * 1.0 + 16384 / 10.0, 1e-6);
    assert_close(l.comp, 4000 * 7 * 2.0 + 28672 / 10.0, 1e-6);
    fl_cost_lowrank_ih(&p, FL_METHOD_CP, 100, 64, 16, 4000, 1, 1, 1, 1, &l);
    assert_close(l.comp, 4000 * 8 * 3.0 + 8192 / 10.0, 1e-6);
    fl_cost_lowrank_ih(&p, FL_METHOD_SVD, 100, 64, 16, 40, 1, 1, 1, 1, &l);
    assert_close(l.dup_comp, 40 * 64 * 1.0, 1e-9);
    assert_close(l.comp, 40 * 7 * 2.0, 1e-9);
}

/* W_ih's term of a 64-input, 100-hidden, one-layer model (W_ih SVD rank 16, W_hh dense) at batch
 * 20, seq 8, one thread. */
static double wih_seconds(const fl_profile *p) {
    static const fl_arch a = {.input = 64, .hidden = 100, .layers = 1, .head = FL_HEAD_NONE};
    const fl_mat_spec specs[2] = {{FL_METHOD_SVD, 16}, {FL_METHOD_DENSE, 0}};
    fl_cost c;
    fl_cost_term t[2];
    assert_int_equal(fl_cost_predict_terms(p, &a, specs, 20, 8, 1, &c, t), FL_OK);
    return t[0].seconds;
}

/* Version 5 carries the walks; without them (version 4) the file loads and prices as before; one of
 * the two missing, bytes not growing, or a figure 0 is refused, naming the field. */
static void test_file(void **state) {
    (void)state;
    fl_profile p = walk_profile(true), none = walk_profile(false), q;
    p.id.cores = 1;
    const char *path = tmp_path("walk_profile.json");
    assert_int_equal(fl_profile_save(&p, path), FL_OK);
    if (fl_profile_load(path, &q)) fail_msg("%s", fl_last_error());
    assert_memory_equal(q.lr_ih_walk_bytes, p.lr_ih_walk_bytes, sizeof p.lr_ih_walk_bytes);
    assert_memory_equal(q.lr_ih_walk_seconds, p.lr_ih_walk_seconds, sizeof p.lr_ih_walk_seconds);
    assert_close(wih_seconds(&q), wih_seconds(&p), 1e-12);
    assert_true(wih_seconds(&p) > wih_seconds(&none) + 1); /* the walks price the writes */
    cJSON *root = json_file_read(path);
    assert_int_equal(cJSON_GetObjectItem(root, "version")->valuedouble, 8);
    static const char *keys[2] = {"ih_walk_bytes", "ih_walk_seconds"};
    cJSON *v4 = cJSON_Duplicate(root, 1), *lr = cJSON_GetObjectItem(v4, "lowrank");
    for (int i = 0; i < 2; i++) cJSON_DeleteItemFromObject(lr, keys[i]);
    cJSON_SetNumberValue(cJSON_GetObjectItem(v4, "version"), 4);
    json_file_write(path, v4);
    cJSON_Delete(v4);
    if (fl_profile_load(path, &q)) fail_msg("%s", fl_last_error());
    assert_true(q.lr_ih_walk_bytes[0] == 0 && q.lr_ih_walk_seconds[0] == 0);
    assert_true(fl_cost_has_lowrank_ih(&q));
    assert_close(wih_seconds(&q), wih_seconds(&none), 1e-12);
    /* malformed: one missing (either), bytes not growing, a figure 0 */
    for (int i = 0; i < 4; i++) {
        cJSON *r2 = cJSON_Duplicate(root, 1), *l2 = cJSON_GetObjectItem(r2, "lowrank");
        const char *bad = keys[i % 2];
        if (i < 2) cJSON_DeleteItemFromObject(l2, keys[1 - i]), bad = keys[1 - i];
        else if (i == 2) cJSON_SetNumberValue(cJSON_GetArrayItem(cJSON_GetObjectItem(l2, keys[0]), 2), 2e5);
        else cJSON_SetNumberValue(cJSON_GetArrayItem(cJSON_GetObjectItem(l2, keys[1]), 1), 0);
        json_file_write(path, r2);
        cJSON_Delete(r2);
        assert_int_equal(fl_profile_load(path, &q), FL_ERR_FORMAT);
        assert_non_null(strstr(fl_last_error(), bad));
    }
    cJSON_Delete(root);
}

static int setup(void **state) {
    (void)state;
    return tmp_dir_make("test_cost_lowrank_ih_walk");
}

static int teardown(void **state) {
    (void)state;
    return tmp_dir_remove();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_extra), cmocka_unit_test(test_price), cmocka_unit_test(test_first_pass),
        cmocka_unit_test(test_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
