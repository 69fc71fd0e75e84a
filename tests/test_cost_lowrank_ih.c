/* The f32 SVD / CP input projection priced by its stages (cost_lowrank_ih.c) from a profile's
 * figures (fl_profile.lr_ih_*, format 4): the stage tables' interpolation in rank and rows, a
 * hand-made profile's price stage by stage (panels counted whole, each stage's roofline, CP's four
 * gate products), the split over two threads (the busiest thread's panels, the measured speed-up, a
 * single panel on the caller), a profile without the figures (version 3) priced by the GEMM rate
 * as before, and the file's round trip (version 5 written; version 3 loads; a malformed or partial
 * set of the stage tables refused, naming the field). One profile pass runs the kernels (its
 * figures only checked to be there: positive and finite, or absent without gemm_pk). */
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


/* W_ih's term of a 64-input, 100-hidden, one-layer model (W_ih (400, 64) of method m at rank R,
 * W_hh dense) at batch 20, seq 8 (n = 160 rows), one thread. */
static fl_cost_term wih(const fl_profile *p, fl_method m, int R, fl_cost *c) {
    static const fl_arch a = {.input = 64, .hidden = 100, .layers = 1, .head = FL_HEAD_NONE};
    const fl_mat_spec specs[2] = {{m, R}, {FL_METHOD_DENSE, 0}};
    fl_cost_term t[2];
    assert_int_equal(fl_cost_predict_terms(p, &a, specs, 20, 8, 1, c, t), FL_OK);
    return t[0];
}

/* The stages' tables interpolate as the step's (fl_cost_lr_table): linear in rank, in log rows. */
static void test_interpolation(void **state) {
    (void)state;
    fl_profile p = ih_profile();
    for (int j = 0; j < NR; j++)
        for (int k = 0; k < NK; k++)
            p.lr_ih_in_seconds[j][k] = p.lr_ih_out_seconds[FL_METHOD_SVD][j][k] = (double)(16 << j) * (1 + k);
    fl_lr_cost l;
    /* rank 48 (half-way from 32 to 64) at 16 rows (k = 2): 48 x 3 a row and panel; SVD, H 64, in 64:
     * stage 1 one panel over 64 inputs, stage 2 four panels */
    fl_cost_lowrank_ih(&p, FL_METHOD_SVD, 64, 64, 48, 16, 1, 1, 1, 1, &l);
    assert_close(l.dup_comp, 16 * 64 * 1 * 144.0, 1e-9);
    assert_close(l.comp, 16 * 4 * 144.0, 1e-9);
    /* 32 rows: half-way in log rows from 16 to 64 (48 x 3.5) */
    fl_cost_lowrank_ih(&p, FL_METHOD_SVD, 64, 64, 48, 32, 1, 1, 1, 1, &l);
    assert_close(l.comp, 32 * 4 * 168.0, 1e-9);
    /* beyond 256 rows the 256 figure; rank 100 (two panels in stage 1) between 64 and 128; x and gx
     * (1.28 MB) beyond the 1 MiB level: V (32 KiB) and U (100 KiB) streamed once from DRAM (10 B/s) */
    fl_cost_lowrank_ih(&p, FL_METHOD_SVD, 64, 64, 100, 1000, 1, 1, 1, 1, &l);
    assert_close(l.dup_comp, 1000 * 64 * 2 * 500.0 + 32768 / 10.0, 1e-6);
    assert_close(l.comp, 1000 * 4 * 500.0 + 102400 / 10.0, 1e-6);
}

/* Stage by stage, per sequence over T = 8: stage 1 (one panel at rank 16, 64 inputs), stage 2 (SVD:
 * ceil(400 / 64) = 7 panels; CP: four gates of ceil(100 / 64) = 2), each its own roofline. */
static void test_price(void **state) {
    (void)state;
    fl_profile p = ih_profile();
    fl_cost c;
    const double n = 160, comp1 = n * 64 * 1 * 1.0;
    /* bytes: stage 1 x (n, 64) and V's one panel (64 x 64); stage 2 t (n, 16) and U's 7 panels */
    const double mem1 = (4 * n * 64 + 4 * 64 * 64) / 100.0, mem2 = (4 * n * 16 + 4 * 7 * 64 * 16) / 100.0;
    fl_cost_term t = wih(&p, FL_METHOD_SVD, 16, &c);
    assert_close(t.seconds, (comp1 + n * 7 * 2.0) / 8, 1e-9);
    assert_close(t.compute_seconds, (comp1 + n * 7 * 2.0) / 8, 1e-9);
    assert_close(t.mem_seconds, (mem1 + mem2) / 8, 1e-9);
    assert_true(t.compute_bound);
    /* CP: 8 panels at 3 s; zs (n, 4 x 16) read, and one B (2 panels) by each gate's product */
    t = wih(&p, FL_METHOD_CP, 16, &c);
    assert_close(t.seconds, (comp1 + n * 8 * 3.0) / 8, 1e-9);
    assert_close(t.mem_seconds, (mem1 + (4 * n * 64 + 4 * 4 * 2 * 64 * 16) / 100.0) / 8, 1e-9);
    /* the level at 10 B/s: stage 1 still compute-bound, stage 2 memory-bound */
    p.level[0].bandwidth = 10;
    t = wih(&p, FL_METHOD_SVD, 16, &c);
    assert_close(t.seconds, (comp1 + mem2 * 10) / 8, 1e-9);
    /* the efficiencies do not enter (they scale the GEMM rate only) */
    p.gemm_efficiency[FL_METHOD_SVD] = 0.25;
    assert_close(wih(&p, FL_METHOD_SVD, 16, &c).seconds, (comp1 + mem2 * 10) / 8, 1e-9);
    /* weights beyond the private level (16 KiB, 12 KiB usable; DRAM at 10 B/s): each of the
     * kernel's row chunks (a quarter of the level, 4 KiB of input rows) streams them, stalling the
     * products: V (16 KiB) 10 chunks of x (40 KiB), U (28 KiB) 3 of t (10 KiB); the rooflines' memory
     * sides stream the same passes */
    p = ih_profile();
    p.level[0].bytes = 16 << 10;
    t = wih(&p, FL_METHOD_SVD, 16, &c);
    const double st1 = comp1 + 10 * 16384 / 10.0, st2 = n * 7 * 2.0 + 3 * 28672 / 10.0;
    assert_close(t.compute_seconds, (st1 + st2) / 8, 1e-9);
    assert_close(t.mem_seconds, ((4 * n * 64 + 10 * 16384) / 10.0 + (4 * n * 16 + 3 * 28672) / 10.0) / 8, 1e-9);
    assert_close(t.seconds, (st1 + st2) / 8, 1e-9);
}

/* Two threads: each product's panels split, the busiest thread's share at the measured speed-up
 * (1.5 here: each thread at 2 / 1.5 of one's time); a product of one panel on the caller alone. */
static void test_threads(void **state) {
    (void)state;
    fl_profile p = two_core_profile(), f = ih_profile();
    memcpy(p.lr_ih_in_seconds, f.lr_ih_in_seconds, sizeof f.lr_ih_in_seconds);
    memcpy(p.lr_ih_out_seconds, f.lr_ih_out_seconds, sizeof f.lr_ih_out_seconds);
    fl_lr_cost l;
    /* SVD rank 100: stage 1 two panels (one each), stage 2 ceil(400 / 64) = 7 (4 on the busiest) */
    fl_cost_lowrank_ih(&p, FL_METHOD_SVD, 100, 64, 100, 160, 2, 2, 1.5, 1.5, &l);
    assert_close(l.dup_comp, 160 * 64 * 1 * 1.0 * 2 / 1.5, 1e-9);
    assert_close(l.comp, 160 * 4 * 2.0 * 2 / 1.5, 1e-9);
    /* rank 16: stage 1 one panel, the caller's alone at one thread's speed; CP: 4 x ceil(2 / 2) */
    fl_cost_lowrank_ih(&p, FL_METHOD_CP, 100, 64, 16, 160, 2, 2, 1.5, 1.5, &l);
    assert_close(l.dup_comp, 160 * 64 * 1.0, 1e-9);
    assert_close(l.comp, 160 * 4 * 1 * 3.0 * 2 / 1.5, 1e-9);
    /* through the model: W_ih (1024, 256) SVD rank 128 on 64 x 64 rows, both products past the
     * runtime's 2 Mi multiply-adds: split, at the profile's measured speed-up of a projection */
    p.curve_all_threads = 2;
    for (int k = 0; k < 4; k++) p.thread_scale_proj[k] = 1.5, p.gemm_rows_flops[k] = 60e9;
    static const fl_arch a = {.input = 256, .hidden = 256, .layers = 1, .head = FL_HEAD_NONE};
    const fl_mat_spec specs[2] = {{FL_METHOD_SVD, 128}, {FL_METHOD_DENSE, 0}};
    fl_cost c;
    fl_cost_term t[2];
    assert_int_equal(fl_cost_predict_terms(&p, &a, specs, 64, 64, 2, &c, t), FL_OK);
    fl_cost_lowrank_ih(&p, FL_METHOD_SVD, 256, 256, 128, 4096, 2, 2, 1.5, 1.5, &l);
    assert_int_equal(t[0].threads, 2);
    assert_close(t[0].seconds, (fmax(l.mem, l.comp) + fmax(l.dup_mem, l.dup_comp)) / 64, 1e-9);
    /* 16 panels, 8 each; U (512 KiB, half a thread's) fits the private level, the projection (21.6 MB:
     * x, gx, V, U) does not: U streamed once at the rate at those bytes */
    double bw;
    fl_cost_pick_level(&p, 4.0 * 4096 * (256 + 1024) + 4.0 * 2 * 64 * 256 + 4.0 * 16 * 64 * 128, 2, &bw);
    assert_close(l.comp, 4096 * 8 * 2.0 * 2 / 1.5 + 4.0 * 16 * 64 * 128 / bw, 1e-9);
}

/* Without the stage figures (a version 3 profile) a low-rank W_ih is priced as before: its flops at
 * the GEMM rate times the efficiency. */
static void test_without_figures(void **state) {
    (void)state;
    fl_profile p = ih_profile();
    memset(p.lr_ih_in_seconds, 0, sizeof p.lr_ih_in_seconds);
    assert_false(fl_cost_has_lowrank_ih(&p));
    fl_cost c;
    const fl_cost_term t = wih(&p, FL_METHOD_SVD, 16, &c);
    /* 16 (64 + 400) weights, 20 x 2 x 7424 flops a step at min(160 x 30, 1000) flop/s; its bytes
     * (29696 / 8 a step) at 100 B/s */
    assert_close(t.compute_seconds, 20 * 2 * 7424.0 / 1000, 1e-9);
    assert_close(t.mem_seconds, 4 * 7424.0 / 8 / 100, 1e-9);
    assert_close(t.seconds, 20 * 2 * 7424.0 / 1000, 1e-9);
}

/* Version 4 files carry the stage tables; the same file as version 3 wrote it (none) loads and is
 * priced the old way; one of the three missing, or an entry 0, is refused, naming the table. */
static void test_file(void **state) {
    (void)state;
    fl_profile p = ih_profile(), q;
    p.lr_ih_in_seconds[1][2] = 0.5, p.lr_ih_out_seconds[FL_METHOD_CP][4][0] = 7.25;
    p.id.cores = 1;
    const char *path = tmp_path("ih_profile.json");
    assert_int_equal(fl_profile_save(&p, path), FL_OK);
    if (fl_profile_load(path, &q)) fail_msg("%s", fl_last_error());
    assert_memory_equal(q.lr_ih_in_seconds, p.lr_ih_in_seconds, sizeof p.lr_ih_in_seconds);
    assert_memory_equal(q.lr_ih_out_seconds, p.lr_ih_out_seconds, sizeof p.lr_ih_out_seconds);
    assert_true(fl_cost_has_lowrank_ih(&q));
    cJSON *root = json_file_read(path);
    assert_int_equal(cJSON_GetObjectItem(root, "version")->valuedouble, 8);
    static const char *keys[3] = {"ih_in_seconds", "ih_svd_out_seconds", "ih_cp_out_seconds"};
    /* version 3: the step's figures, none of the stages' */
    cJSON *v3 = cJSON_Duplicate(root, 1), *lr = cJSON_GetObjectItem(v3, "lowrank");
    for (int i = 0; i < 3; i++) cJSON_DeleteItemFromObject(lr, keys[i]);
    cJSON_SetNumberValue(cJSON_GetObjectItem(v3, "version"), 3);
    json_file_write(path, v3);
    cJSON_Delete(v3);
    if (fl_profile_load(path, &q)) fail_msg("%s", fl_last_error());
    assert_true(fl_cost_has_lowrank(&q));
    assert_false(fl_cost_has_lowrank_ih(&q));
    fl_profile old = p;
    memset(old.lr_ih_in_seconds, 0, sizeof old.lr_ih_in_seconds);
    memset(old.lr_ih_out_seconds, 0, sizeof old.lr_ih_out_seconds);
    fl_cost cq, cold, cnew;
    const fl_cost_term tq = wih(&q, FL_METHOD_CP, 16, &cq), told = wih(&old, FL_METHOD_CP, 16, &cold);
    const fl_cost_term tnew = wih(&p, FL_METHOD_CP, 16, &cnew);
    assert_close(tq.seconds, told.seconds, 1e-12);
    assert_close(cq.seconds, cold.seconds, 1e-12);
    assert_true(fabs(tnew.seconds - tq.seconds) > 1); /* the by-stages price differs */
    /* malformed: one table missing, an entry 0, a short table */
    for (int i = 0; i < 3; i++) {
        cJSON *r2 = cJSON_Duplicate(root, 1), *l2 = cJSON_GetObjectItem(r2, "lowrank");
        cJSON *arr = cJSON_GetObjectItem(l2, keys[i]);
        if (i == 0) cJSON_DeleteItemFromObject(l2, keys[i]);
        else if (i == 1) cJSON_SetNumberValue(cJSON_GetArrayItem(arr, 3), 0);
        else cJSON_DeleteItemFromArray(arr, 0);
        json_file_write(path, r2);
        cJSON_Delete(r2);
        assert_int_equal(fl_profile_load(path, &q), FL_ERR_FORMAT);
        assert_non_null(strstr(fl_last_error(), keys[i]));
    }
    cJSON_Delete(root);
}

/* One low-rank pass (the step's parts and the input projection's stages) on a profile with a 48 KiB
 * L1, 1 MiB L2 and 32 MiB L3: every step figure (near and far) positive and finite, a gx copy figure exactly when
 * the kernels copy (not fl_kernels.gx_in_place), and every stage figure positive and finite where
 * the kernel level has gemm_pk, else none (such a W_ih then priced as before). */
static void test_pass(void **state) {
    (void)state;
    fl_profile p = flat_profile();
    const size_t cap[3] = {48 << 10, 1 << 20, 32 << 20};
    for (int i = 0; i < 3; i++) p.level[i] = (fl_cache_level){.level = i + 1, .bytes = cap[i], .shared_cpus = 1, .bandwidth = 1e10};
    p.n_levels = 3;
    static fl_lr_passes lp;
    memset(&lp, 0, sizeof lp);
    assert_int_equal(fl_profile_lowrank_pass(&p, &lp), FL_OK);
    assert_int_equal(lp.n, 1);
    fl_profile_lowrank_apply(&lp, &p);
    for (int j = 0; j < NR; j++)
        for (int k = 0; k < NK; k++) {
            const double v[6] = {p.lr_proj_seconds[j][k],     p.lr_panel_seconds[FL_METHOD_SVD][j][k],
                                 p.lr_panel_seconds[FL_METHOD_CP][j][k], p.lr_proj_far_seconds[j][k],
                                 p.lr_panel_far_seconds[FL_METHOD_SVD][j][k], p.lr_panel_far_seconds[FL_METHOD_CP][j][k]};
            for (int i = 0; i < 6; i++) assert_true(v[i] > 0 && isfinite(v[i]));
        }
    if (fl_kernels_get()->gx_in_place) assert_true(p.gx_copy_seconds == 0);
    else assert_true(p.gx_copy_seconds > 0 && isfinite(p.gx_copy_seconds));
    const bool pk = fl_kernels_get()->gemm_pk != NULL;
    assert_int_equal(fl_cost_has_lowrank_ih(&p), pk);
    for (int j = 0; j < NR; j++)
        for (int k = 0; k < NK; k++) {
            const double v[3] = {p.lr_ih_in_seconds[j][k], p.lr_ih_out_seconds[FL_METHOD_SVD][j][k],
                                 p.lr_ih_out_seconds[FL_METHOD_CP][j][k]};
            for (int i = 0; i < 3; i++) assert_true(pk ? v[i] > 0 && isfinite(v[i]) : v[i] == 0);
        }
    /* stage 2's output walks (format 5): buffers growing, 4 x the private level doubling (4, 8, 16
     * MiB at most), each figure positive and finite; none without gemm_pk */
    for (int i = 0; i < FL_PROFILE_IH_WALKS; i++) {
        const double b = p.lr_ih_walk_bytes[i], s = p.lr_ih_walk_seconds[i];
        if (!pk) {
            assert_true(b == 0 && s == 0);
            continue;
        }
        assert_true(b > (i ? p.lr_ih_walk_bytes[i - 1] : 0) && b <= (double)(4u << 20 << i));
        assert_true(s > 0 && isfinite(s));
    }
}

static int setup(void **state) {
    (void)state;
    return tmp_dir_make("test_cost_lowrank_ih");
}

static int teardown(void **state) {
    (void)state;
    return tmp_dir_remove();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_interpolation),
        cmocka_unit_test(test_price),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_without_figures),
        cmocka_unit_test(test_file),
        cmocka_unit_test(test_pass),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
