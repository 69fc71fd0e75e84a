/* One copy of W_hh per model (core/packed.c): while sessions exist the dense W_hh originals live only
 * in the shared packed form, their pages given back to the system. Checked here: outputs are
 * bit-identical with and without that (a weight hold keeps the originals); the originals come back
 * bit-identical when the last session goes and whenever saving, decomposing or training reads them;
 * a file written by fastlstm saves back byte-identical after runs; decomposing and fine-tuning a model
 * that has had sessions give the results of a fresh one; weights changed by training are never
 * written over from an older packed copy; and, in a child process, the peak resident memory of
 * loading and running a model stays within 1.15x its weight bytes plus a fixed margin (a bound, not a
 * timing: the model there is almost all W_hh, so with two copies the peak would be about 2x). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "testutil.h"
#include "train_util.h"

#include "mem_bound.h"

enum { B = 2, T = 7, H = 80, LAYERS = 2, STEPS = 4 };

static float *copy_params(const fl_model *m) {
    float *p = malloc(m->n_params * sizeof(float));
    assert_non_null(p);
    memcpy(p, m->params, m->n_params * sizeof(float));
    return p;
}

static void inputs(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = (float)((i * 7919) % 201) / 100.0f - 1.0f;
}

static void run(fl_session *s, const float *x, float *y) {
    fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = B, .seq = T, .x = x, .y = y};
    assert_int_equal(fl_session_run(s, &io), FL_OK);
}

static fl_session *session(const fl_model *m) {
    fl_session_opts o = fl_session_opts_default();
    o.max_batch = B;
    o.max_seq = T;
    o.threads = 1;
    fl_session *s;
    assert_int_equal(fl_session_create(m, &o, &s), FL_OK);
    return s;
}

/* A page lying wholly inside layer l's W_hh reads as zero (the original was given back). */
static bool page_released(const fl_model *m, int l) {
    const fl_mat *w = &m->layer[l].whh;
    const uintptr_t P = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t a = ((uintptr_t)w->w + P - 1) & ~(P - 1);
    assert_true(a + P <= (uintptr_t)(w->w + (size_t)w->rows * w->cols));
    const float *p = (const float *)a;
    for (size_t i = 0; i < P / sizeof(float); i++)
        if (p[i] != 0.0f) return false;
    return true;
}

/* Outputs with the original released equal those with it kept, bit for bit; the model's weights are
 * its own again, bit for bit, once the session goes; a hold during a session brings them back. */
static void test_outputs_identical(void **state) {
    (void)state;
    fl_model *m = classifier(H, LAYERS, FL_METHOD_DENSE, 0);
    float *before = copy_params(m);
    const size_t ny = fl_run_output_size(m, B, T);
    float x[B * T], want[64], got[64];
    assert_true(ny <= 64);
    inputs(x, B * T);

    fl_model_weights_hold(m); /* kept: the reference */
    fl_session *s = session(m);
    assert_false(fl_model_weights_released(m));
    run(s, x, want);
    fl_session_free(s);
    fl_model_weights_unhold(m);

    s = session(m);
    assert_true(fl_model_weights_released(m));
    for (int l = 0; l < LAYERS; l++) assert_true(page_released(m, l));
    run(s, x, got);
    assert_memory_equal(got, want, ny * sizeof(float));
    fl_session *s2 = session(m); /* a second session borrows the same packing */
    memset(got, 0, sizeof got);
    run(s2, x, got);
    assert_memory_equal(got, want, ny * sizeof(float));
    fl_session_free(s2);
    assert_true(fl_model_weights_released(m));

    fl_model_weights_hold(m);
    assert_false(fl_model_weights_released(m));
    assert_memory_equal(m->params, before, m->n_params * sizeof(float));
    memset(got, 0, sizeof got);
    run(s, x, got); /* the session still runs on the packing */
    assert_memory_equal(got, want, ny * sizeof(float));
    fl_model_weights_unhold(m);
    assert_false(fl_model_weights_released(m)); /* back for the rest of this packing's life */
    fl_session_free(s);
    assert_memory_equal(m->params, before, m->n_params * sizeof(float));

    s = session(m);
    assert_true(fl_model_weights_released(m));
    fl_session_free(s);
    assert_false(fl_model_weights_released(m));
    assert_memory_equal(m->params, before, m->n_params * sizeof(float));
    free(before);
    fl_model_free(m);
}

/* Running out of memory while packing the second layer leaves the first one's original intact. */
static void test_failed_packing_restores(void **state) {
    (void)state;
    fl_model *m = classifier(H, LAYERS, FL_METHOD_DENSE, 0);
    float *before = copy_params(m);
    bool failed = false;
    for (long n = 0; n < 16; n++) {
        fl_alloc_fail_after(n);
        fl_session *s = NULL;
        fl_status st = fl_session_create(m, NULL, &s);
        fl_alloc_fail_after(-1);
        if (st == FL_OK) {
            fl_session_free(s);
            break;
        }
        failed = true;
        assert_int_equal(st, FL_ERR_NOMEM);
        assert_false(fl_model_weights_released(m));
        assert_memory_equal(m->params, before, m->n_params * sizeof(float));
    }
    assert_true(failed);
    assert_memory_equal(m->params, before, m->n_params * sizeof(float));
    free(before);
    fl_model_free(m);
}

/* A file written by fastlstm saves back byte-identical after runs, and during one. */
static void test_save_identical(void **state) {
    (void)state;
    fl_model *m0 = classifier(H, LAYERS, FL_METHOD_DENSE, 0);
    const char *f0 = tmp_path("m0.safetensors"), *f1 = tmp_path("m1.safetensors"), *f2 = tmp_path("m2.safetensors");
    assert_int_equal(fl_model_save(m0, f0), FL_OK);
    fl_model_free(m0);
    fl_model *m;
    assert_int_equal(fl_model_load(f0, &m), FL_OK);
    float x[B * T], y[64];
    inputs(x, B * T);
    fl_session *s = session(m);
    run(s, x, y);
    assert_true(fl_model_weights_released(m));
    assert_int_equal(fl_model_save(m, f2), FL_OK); /* while the session lives */
    run(s, x, y);
    fl_session_free(s);
    assert_int_equal(fl_model_save(m, f1), FL_OK);
    unsigned char *a, *b, *c;
    size_t na = file_read(f0, &a), nb = file_read(f1, &b), nc = file_read(f2, &c);
    assert_int_equal(na, nb);
    assert_int_equal(na, nc);
    assert_memory_equal(a, b, na);
    assert_memory_equal(a, c, na);
    free(a);
    free(b);
    free(c);
    fl_model_free(m);
}

/* Decomposing a model that has had sessions (one still alive) gives the fresh model's result. */
static void test_decompose_after_sessions(void **state) {
    (void)state;
    fl_model *fresh = classifier(H, LAYERS, FL_METHOD_DENSE, 0), *used;
    assert_int_equal(fl_model_clone(fresh, &used), FL_OK);
    float x[B * T], y[64];
    inputs(x, B * T);
    fl_session *s = session(used);
    run(s, x, y);
    fl_session_free(s);
    s = session(used);
    run(s, x, y);
    fl_decomp_opts o = fl_decomp_opts_default();
    const fl_mat_spec specs[2 * LAYERS + 1] = {{FL_METHOD_SVD, 1}, {FL_METHOD_SVD, 6}, {FL_METHOD_CP, 5},
                                               {FL_METHOD_SVD, 6}, {FL_METHOD_DENSE, 0}};
    o.specs = specs; /* layer 0's W_ih is (4H, 1) */
    fl_model *d0, *d1;
    assert_int_equal(fl_model_decompose(fresh, &o, &d0), FL_OK);
    assert_int_equal(fl_model_decompose(used, &o, &d1), FL_OK);
    assert_int_equal(d0->n_params, d1->n_params);
    assert_memory_equal(d0->params, d1->params, d0->n_params * sizeof(float));
    fl_session_free(s);
    fl_model_free(d0);
    fl_model_free(d1);
    fl_model_free(fresh);
    fl_model_free(used);
}

static fl_trainer *trainer(fl_model *m) {
    fl_train_opts o = fl_train_opts_default();
    o.batch = 4;
    o.seed = 3;
    fl_trainer *t;
    assert_int_equal(fl_trainer_create(m, &o, &t), FL_OK);
    return t;
}

/* Fine-tuning after sessions gives the fresh model's result; sessions made between training steps
 * (evaluation during training) never write older weights over trained ones. */
static void test_training_not_reverted(void **state) {
    (void)state;
    fl_dataset *d = sign_task(32, T, 9);
    fl_model *fresh = classifier(H, LAYERS, FL_METHOD_DENSE, 0), *used;
    assert_int_equal(fl_model_clone(fresh, &used), FL_OK);
    float *orig = copy_params(fresh);
    float x[B * T], y[64];
    inputs(x, B * T);
    fl_session *s = session(used);
    run(s, x, y);
    fl_session_free(s);

    fl_trainer *t0 = trainer(fresh), *t1 = trainer(used);
    double loss;
    for (int i = 0; i < STEPS; i++) {
        assert_int_equal(fl_trainer_step(t0, d, &loss), FL_OK);
        assert_int_equal(fl_trainer_step(t1, d, &loss), FL_OK);
        s = session(used); /* evaluation between steps: the trainer holds the weights */
        assert_false(fl_model_weights_released(used));
        run(s, x, y);
        fl_session_free(s);
    }
    assert_memory_equal(fresh->params, used->params, fresh->n_params * sizeof(float));
    assert_memory_not_equal(used->params, orig, used->n_params * sizeof(float));
    fl_trainer_free(t0);
    fl_trainer_free(t1);

    /* After training: a session packs the trained weights and gives them back unchanged. */
    float *trained = copy_params(used);
    s = session(used);
    assert_true(fl_model_weights_released(used));
    fl_session_free(s);
    assert_memory_equal(used->params, trained, used->n_params * sizeof(float));

    /* A change made while a session exists (which fastlstm.h forbids) still survives it. */
    s = session(used);
    fl_model_weights_hold(used);
    used->layer[1].whh.w[5] += 1.0f;
    fl_model_weights_unhold(used);
    fl_session_free(s);
    assert_true(used->layer[1].whh.w[5] == trained[used->layer[1].whh.w - used->params + 5] + 1.0f);
    free(trained);
    free(orig);
    fl_dataset_free(d);
    fl_model_free(fresh);
    fl_model_free(used);
}

static int run_classifier(fl_session *s, const fl_model *m) {
    (void)m;
    float x[B * T], y[64];
    inputs(x, B * T);
    fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = B, .seq = T, .x = x, .y = y};
    return fl_session_run(s, &io) != FL_OK;
}

static void test_memory_bound(void **state) {
    (void)state;
    const char *path = tmp_path("big.safetensors");
    fl_model *m = classifier(1000, 2, FL_METHOD_DENSE, 0); /* two 16 MB W_hh, 16 KB of W_ih */
    assert_int_equal(fl_model_save(m, path), FL_OK);
    const double bytes = (double)m->n_params * sizeof(float);
    fl_model_free(m);
    fl_session_opts o = fl_session_opts_default();
    o.max_batch = B;
    o.max_seq = T;
    o.threads = 1;
    mem_bound_check(path, bytes, &o, run_classifier);
}

static int setup(void **state) {
    (void)state;
    return tmp_dir_make("fl_packed");
}

static int teardown(void **state) {
    (void)state;
    return tmp_dir_remove();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outputs_identical),      cmocka_unit_test(test_failed_packing_restores),
        cmocka_unit_test(test_save_identical),         cmocka_unit_test(test_decompose_after_sessions),
        cmocka_unit_test(test_training_not_reverted),  cmocka_unit_test(test_memory_bound),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
