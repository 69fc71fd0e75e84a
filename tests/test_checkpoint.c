/* Training checkpoints: a run stopped at a checkpoint and resumed ends bit for bit where an
 * uninterrupted one does (classifier and language model); corrupt, truncated and foreign
 * checkpoints are refused with the right status. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "fastlstm/train.h"
#include "internal.h"
#include "npy.h"
#include "testutil.h"
#include "train/train_internal.h"
#include "train_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* 2N steps uninterrupted == N steps, checkpoint, resume, N more: bit for bit. */
static void check_resume(fl_model *(*make)(void), fl_dataset *train, fl_dataset *valid, fl_train_opts o, long N) {
    fl_model *a = make(), *b = make();
    fl_trainer *ta, *tb;
    assert_int_equal(fl_trainer_create(a, &o, &ta), FL_OK);
    assert_int_equal(fl_trainer_create(b, &o, &tb), FL_OK);
    fl_train_run ra = {.train = train, .valid = valid, .epochs = 1000, .max_steps = 2 * N};
    assert_int_equal(fl_trainer_run(ta, &ra), FL_OK);
    const char *ck = tmp_path("resume.ckpt");
    fl_train_run rb = {.train = train, .valid = valid, .epochs = 1000, .max_steps = N, .checkpoint = ck, .every = 3};
    assert_int_equal(fl_trainer_run(tb, &rb), FL_OK);
    fl_trainer_free(tb);
    fl_model_free(b);
    fl_model *c;
    fl_trainer *tc;
    assert_int_equal(fl_trainer_resume(ck, &c, &tc), FL_OK);
    assert_int_equal(fl_trainer_steps(tc), N);
    rb.max_steps = 2 * N;
    rb.checkpoint = NULL;
    assert_int_equal(fl_trainer_run(tc, &rb), FL_OK);
    assert_int_equal(fl_trainer_steps(tc), 2 * N);
    assert_int_equal(c->n_params, a->n_params);
    assert_memory_equal(c->params, a->params, a->n_params * sizeof(float));
    assert_true(fl_trainer_lr(tc) == fl_trainer_lr(ta));
    /* ... and it really moved: not the initial weights. */
    fl_model *init = make();
    assert_memory_not_equal(init->params, a->params, a->n_params * sizeof(float));
    fl_model_free(init);
    fl_trainer_free(ta);
    fl_trainer_free(tc);
    fl_model_free(a);
    fl_model_free(c);
    remove(ck);
}

static void test_resume_classifier(void **st) {
    fl_dataset *tr = sign_task(70, 6, 11), *va = sign_task(30, 6, 12);
    fl_train_opts o = fl_train_opts_default();
    o.batch = 16; /* 5 steps per epoch, the last one partial */
    o.dropout = 0.2f;
    o.lr_decay = 0.5f;
    o.clip = 1.0f;
    check_resume(make_cls, tr, va, o, 7);
    o.optim = FL_OPTIM_SGD;
    o.momentum = 0.9f;
    o.lr = 0.05f;
    check_resume(make_cls, tr, va, o, 6);
    fl_dataset_free(tr);
    fl_dataset_free(va);
}

static void test_resume_lm(void **st) {
    int32_t tok[400];
    fl_rng r;
    fl_rng_seed(&r, 3);
    for (int i = 0; i < 400; i++) tok[i] = (int32_t)(fl_rng_next(&r) % 12);
    fl_dataset *d;
    assert_int_equal(fl_dataset_lm(tok, 400, 12, &d), FL_OK);
    fl_train_opts o = fl_train_opts_default();
    o.batch = 4;
    o.bptt = 30; /* streams of 100 tokens: 4 windows per epoch, the last one 9 steps */
    o.dropout = 0.1f;
    check_resume(make_lm, d, d, o, 5);
    fl_dataset_free(d);
}

/* Issue 11 architectures (checkpoint version 2): a bidirectional LSTMP classifier (SVD and CP
 * factors) on variable-length data, and an LSTMP language model with a padding id; both resume bit
 * for bit and keep their architecture. */
static fl_model *make_bidir_proj(void) {
    fl_arch a = {.input = 1, .hidden = 6, .layers = 2, .head = FL_HEAD_LAST_STEP, .head_out = 2,
                 .bidirectional = 1, .proj = 3};
    fl_mat_spec specs[13];
    for (int i = 0; i < 12; i++) specs[i] = (fl_mat_spec){i % 3 == 1 ? FL_METHOD_CP : i % 3 == 2 ? FL_METHOD_SVD : FL_METHOD_DENSE, 2};
    specs[12] = (fl_mat_spec){FL_METHOD_DENSE, 0};
    fl_model *m;
    assert_int_equal(fl_model_create(&a, specs, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 8), FL_OK);
    return m;
}

static fl_model *make_lm_proj(void) {
    fl_arch a = {.vocab = 12, .input = 5, .hidden = 8, .layers = 2, .head = FL_HEAD_PER_STEP, .head_out = 12,
                 .proj = 4, .has_padding = 1, .padding_idx = 0};
    fl_model *m;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 9), FL_OK);
    return m;
}

static void test_resume_issue11(void **st) {
    fl_dataset *tr = sign_task(50, 7, 21);
    int32_t lens[50];
    for (int i = 0; i < 50; i++) lens[i] = 1 + (i * 5) % 7;
    assert_int_equal(fl_dataset_set_lengths(tr, lens), FL_OK);
    fl_train_opts o = fl_train_opts_default();
    o.batch = 16;
    o.dropout = 0.2f;
    check_resume(make_bidir_proj, tr, tr, o, 5);
    int32_t tok[300];
    for (int i = 0; i < 300; i++) tok[i] = (int32_t)((i * 7 + i / 5) % 12);
    fl_dataset *d;
    assert_int_equal(fl_dataset_lm(tok, 300, 12, &d), FL_OK);
    o.batch = 3;
    o.bptt = 20;
    check_resume(make_lm_proj, d, d, o, 4);
    /* the architecture survives the round trip */
    fl_model *m = make_bidir_proj(), *m2;
    fl_trainer *t, *t2;
    assert_int_equal(fl_trainer_create(m, &o, &t), FL_OK);
    const char *ck = tmp_path("arch.ckpt");
    assert_int_equal(fl_trainer_save(t, ck), FL_OK);
    assert_int_equal(fl_trainer_resume(ck, &m2, &t2), FL_OK);
    assert_memory_equal(&m2->arch, &m->arch, sizeof m->arch);
    fl_trainer_free(t2);
    fl_model_free(m2);
    fl_trainer_free(t);
    fl_model_free(m);
    fl_dataset_free(tr);
    fl_dataset_free(d);
}

/* Corrupt, truncated, foreign checkpoints are refused with the right status. */
static void test_checkpoint_errors(void **st) {
    fl_model *m = make_cls();
    fl_trainer *t;
    fl_train_opts o = fl_train_opts_default();
    assert_int_equal(fl_trainer_create(m, &o, &t), FL_OK);
    const char *ck = tmp_path("bad.ckpt");
    assert_int_equal(fl_trainer_save(t, ck), FL_OK);
    unsigned char *buf;
    const long n = (long)file_read(ck, &buf);
    fl_model *m2;
    fl_trainer *t2;
    const char *p = tmp_path("mut.ckpt");
    /* flip one parameter byte */
    buf[n / 2] ^= 0x40;
    file_write(p, buf, (size_t)n);
    assert_int_equal(fl_trainer_resume(p, &m2, &t2), FL_ERR_FORMAT);
    assert_non_null(strstr(fl_last_error(), "checksum"));
    assert_null(m2);
    buf[n / 2] ^= 0x40;
    /* truncated */
    file_write(p, buf, (size_t)n - 5);
    assert_int_equal(fl_trainer_resume(p, &m2, &t2), FL_ERR_FORMAT);
    /* truncated anywhere: header fields, specs, options, parameters, trailer */
    for (long cut = 0; cut < n; cut += cut < 200 ? 3 : n / 40) {
        file_write(p, buf, (size_t)cut);
        fl_status s = fl_trainer_resume(p, &m2, &t2);
        if (s != FL_ERR_FORMAT) fail_msg("checkpoint cut at %ld of %ld bytes: %s", cut, n, fl_status_str(s));
        assert_null(m2);
        assert_null(t2);
    }
    /* wrong magic */
    buf[0] = 'X';
    file_write(p, buf, (size_t)n);
    assert_int_equal(fl_trainer_resume(p, &m2, &t2), FL_ERR_FORMAT);
    assert_non_null(strstr(fl_last_error(), "mut.ckpt"));
    assert_int_equal(fl_trainer_resume(tmp_path("missing.ckpt"), &m2, &t2), FL_ERR_IO);
    /* intact copy loads; no temporary file is left behind */
    assert_int_equal(fl_trainer_resume(ck, &m2, &t2), FL_OK);
    assert_memory_equal(m2->params, m->params, m->n_params * sizeof(float));
    char tmpname[600];
    snprintf(tmpname, sizeof tmpname, "%s.tmp.%ld", ck, (long)getpid());
    assert_int_equal(access(tmpname, F_OK), -1);
    fl_trainer_free(t2);
    fl_model_free(m2);
    remove(p);
    remove(ck);
    free(buf);
    fl_trainer_free(t);
    fl_model_free(m);
}

/* Bad data: clear FL_ERR_DATA naming the file. */

static int setup(void **st) { return tmp_dir_make("fl_test_checkpoint"); }

/* Removes whatever a failed test left in the scratch directory too. */
static int teardown(void **st) { return tmp_dir_remove(); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_classifier),
        cmocka_unit_test(test_resume_lm),
        cmocka_unit_test(test_resume_issue11),
        cmocka_unit_test(test_checkpoint_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
