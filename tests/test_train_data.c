/* Training data and the training CLI: data-set errors name the file, vocabularies, and
 * `fastlstm train / eval / finetune` end to end (resume bit for bit, bad data). */
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

static void test_data_errors(void **st) {
    float x[2 * 3 * 2] = {0};
    int32_t y[3] = {0, 1, 2};
    fl_dataset *d;
    assert_int_equal(fl_dataset_classify(2, 3, 2, x, NULL, y, 2, &d), FL_OK); /* uses y[0..1] only */
    fl_dataset_free(d);
    assert_int_equal(fl_dataset_classify(3, 2, 2, x, NULL, y, 2, &d), FL_ERR_DATA); /* y[2] = 2 */
    assert_non_null(strstr(fl_last_error(), "label 2"));
    int32_t y2[2] = {0, 5};
    assert_int_equal(fl_dataset_classify(2, 3, 2, x, NULL, y2, 2, &d), FL_ERR_DATA);
    assert_int_equal(fl_dataset_classify(0, 3, 2, x, NULL, y2, 2, &d), FL_ERR_DATA);
    int32_t one[1] = {0};
    assert_int_equal(fl_dataset_lm(one, 1, 5, &d), FL_ERR_DATA);
    int32_t toks[3] = {0, 1, 9};
    assert_int_equal(fl_dataset_lm(toks, 3, 5, &d), FL_ERR_DATA);

    /* .npy files */
    const char *xp = tmp_path("x.npy"), *yp = tmp_path("y.npy");
    float xs[4 * 3 * 2];
    for (int i = 0; i < 24; i++) xs[i] = (float)i;
    int64_t sx[3] = {4, 3, 2}, sy[1] = {4}, sy3[1] = {3};
    int32_t lab[4] = {0, 1, 1, 0};
    assert_int_equal(fl_npy_save_f32(xp, xs, 3, sx), FL_OK);
    assert_int_equal(fl_npy_save_i32(yp, lab, 1, sy), FL_OK);
    assert_int_equal(fl_dataset_load_npy(xp, yp, 0, &d), FL_OK);
    assert_int_equal(fl_dataset_size(d), 4);
    assert_int_equal(fl_dataset_seq(d), 3);
    assert_int_equal(fl_dataset_dim(d), 2);
    assert_int_equal(fl_dataset_classes(d), 2);
    /* the data must fit the model: 2 features */
    fl_arch a = {.input = 3, .hidden = 4, .layers = 1, .head = FL_HEAD_LAST_STEP, .head_out = 2};
    fl_model *m;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    fl_trainer *t;
    assert_int_equal(fl_trainer_create(m, NULL, &t), FL_OK);
    assert_int_equal(fl_trainer_step(t, d, NULL), FL_ERR_SHAPE);
    fl_dataset_free(d);
    /* token ids into a model that takes features: a shape error, not a vocabulary of 0 */
    int32_t ids[4 * 3] = {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3};
    assert_int_equal(fl_dataset_classify(4, 3, 0, NULL, ids, lab, 2, &d), FL_OK);
    assert_int_equal(fl_trainer_step(t, d, NULL), FL_ERR_SHAPE);
    assert_non_null(strstr(fl_last_error(), "features of size 3"));
    fl_eval_result ev;
    assert_int_equal(fl_model_evaluate(m, d, 4, 35, &ev), FL_ERR_SHAPE);
    fl_trainer_free(t);
    fl_model_free(m);
    fl_dataset_free(d);
    /* label count mismatch */
    assert_int_equal(fl_npy_save_i32(yp, lab, 1, sy3), FL_OK);
    assert_int_equal(fl_dataset_load_npy(xp, yp, 0, &d), FL_ERR_DATA);
    assert_non_null(strstr(fl_last_error(), "y.npy"));
    /* label out of range for the given class count */
    int32_t lab7[4] = {0, 1, 7, 0};
    assert_int_equal(fl_npy_save_i32(yp, lab7, 1, sy), FL_OK);
    assert_int_equal(fl_dataset_load_npy(xp, yp, 3, &d), FL_ERR_DATA);
    assert_non_null(strstr(fl_last_error(), "y.npy"));
    /* a stray huge label does not size the head by itself (and INT32_MAX + 1 does not overflow) */
    int32_t labbig[4] = {0, 1, 100000000, 0}, labmax[4] = {0, INT32_MAX, 1, 0};
    assert_int_equal(fl_npy_save_i32(yp, labbig, 1, sy), FL_OK);
    assert_int_equal(fl_dataset_load_npy(xp, yp, 0, &d), FL_ERR_DATA);
    assert_non_null(strstr(fl_last_error(), "16777216"));
    assert_int_equal(fl_npy_save_i32(yp, labmax, 1, sy), FL_OK);
    assert_int_equal(fl_dataset_load_npy(xp, yp, 0, &d), FL_ERR_DATA);
    assert_non_null(strstr(fl_last_error(), "y.npy"));
    int32_t idmax[4 * 3] = {0, 1, 2, INT32_MAX, 0, 1, 2, 3, 0, 1, 2, 3};
    assert_int_equal(fl_dataset_classify(4, 3, 0, NULL, idmax, lab, 2, &d), FL_OK);
    assert_int_equal(fl_dataset_vocab(d), INT32_MAX);
    fl_dataset_free(d);
    /* NaN feature */
    xs[5] = NAN;
    assert_int_equal(fl_npy_save_f32(xp, xs, 3, sx), FL_OK);
    assert_int_equal(fl_npy_save_i32(yp, lab, 1, sy), FL_OK);
    assert_int_equal(fl_dataset_load_npy(xp, yp, 0, &d), FL_ERR_NONFINITE);
    assert_non_null(strstr(fl_last_error(), "x.npy"));
    /* wrong rank */
    assert_int_equal(fl_npy_save_f32(xp, xs, 1, sx), FL_OK);
    assert_int_equal(fl_dataset_load_npy(xp, yp, 0, &d), FL_ERR_DATA);
    assert_non_null(strstr(fl_last_error(), "x.npy"));
    remove(xp);
    remove(yp);
}


static void test_vocab(void **st) {
    const char *p = tmp_path("corpus.txt");
    const char *txt = "the cat sat\nthe  dog <unk>\n";
    file_write(p, txt, strlen(txt));
    fl_vocab *v, *v2;
    assert_int_equal(fl_vocab_build(p, FL_TOKENS_WORD, 4, &v), FL_OK);
    assert_int_equal(fl_vocab_size(v), 4); /* <unk>, the, <eos>, cat (ties: first appearance) */
    fl_dataset *d;
    assert_int_equal(fl_dataset_load_text(p, v, &d), FL_OK);
    const int32_t expect[8] = {1, 3, 0, 2, 1, 0, 0, 2};
    assert_int_equal(fl_dataset_size(d), 8);
    assert_memory_equal(d->tokens, expect, sizeof expect);
    fl_dataset_free(d);
    /* stored in a model and read back: same tokenization */
    fl_arch a = {.vocab = 4, .input = 2, .hidden = 2, .layers = 1, .head = FL_HEAD_PER_STEP, .head_out = 4};
    fl_model *m;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    assert_int_equal(fl_vocab_from_model(m, &v2), FL_ERR_FORMAT);
    assert_int_equal(fl_vocab_attach(v, m), FL_OK);
    assert_int_equal(fl_vocab_from_model(m, &v2), FL_OK);
    assert_int_equal(fl_dataset_load_text(p, v2, &d), FL_OK);
    assert_memory_equal(d->tokens, expect, sizeof expect);
    fl_dataset_free(d);
    fl_vocab_free(v2);
    fl_vocab_free(v);
    /* no cap: all 6 distinct + <unk> */
    assert_int_equal(fl_vocab_build(p, FL_TOKENS_WORD, 0, &v), FL_OK);
    assert_int_equal(fl_vocab_size(v), 6);
    fl_vocab_free(v);
    fl_model_free(m);
    /* characters, UTF-8 */
    const char *u = "h\xc3\xa9llo\n";
    file_write(p, u, strlen(u));
    assert_int_equal(fl_vocab_build(p, FL_TOKENS_CHAR, 0, &v), FL_OK);
    assert_int_equal(fl_vocab_size(v), 6); /* <unk> l h e-acute o newline */
    assert_int_equal(fl_dataset_load_text(p, v, &d), FL_OK);
    assert_int_equal(fl_dataset_size(d), 6);
    assert_int_equal(d->tokens[2], d->tokens[3]);
    fl_dataset_free(d);
    fl_vocab_free(v);
    /* bad corpora */
    file_write(p, "ab\xff", 3);
    assert_int_equal(fl_vocab_build(p, FL_TOKENS_CHAR, 0, &v), FL_ERR_DATA);
    assert_non_null(strstr(fl_last_error(), "corpus.txt"));
    file_write(p, "", 0);
    assert_int_equal(fl_vocab_build(p, FL_TOKENS_WORD, 0, &v), FL_ERR_DATA);
    assert_non_null(strstr(fl_last_error(), "empty"));
    file_write(p, "aaaa", 4);
    assert_int_equal(fl_vocab_build(p, FL_TOKENS_CHAR, 0, &v), FL_ERR_DATA);
    assert_non_null(strstr(fl_last_error(), "vocabulary of 1"));
    assert_int_equal(fl_vocab_build(tmp_path("nope.txt"), FL_TOKENS_CHAR, 0, &v), FL_ERR_IO);
    remove(p);
}

/* Write the sign-of-sum task as .npy files. */
static void write_sign_npy(const char *xp, const char *yp, int n, int T, uint64_t seed) {
    fl_dataset *d = sign_task(n, T, seed);
    int64_t sx[3] = {n, T, 1}, sy[1] = {n};
    assert_int_equal(fl_npy_save_f32(xp, d->x, 3, sx), FL_OK);
    assert_int_equal(fl_npy_save_i32(yp, d->labels, 1, sy), FL_OK);
    fl_dataset_free(d);
}


static int run_cli(const char *args, const char *log) {
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "'%s' %s > '%s' 2>&1", getenv("FL_CLI"), args, log);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}


/* The CLI: train, eval, resume (bit for bit with an uninterrupted run), finetune, bad data. */
static void test_cli(void **st) {
    if (!getenv("FL_CLI")) {
        print_message("FL_CLI not set; skipping the command-line test\n");
        skip();
    }
    char x[512], y[512], vx[512], vy[512], m1[512], m2[512], ck[512], lg[512], args[4096];
    snprintf(x, sizeof x, "%s", tmp_path("tx.npy"));
    snprintf(y, sizeof y, "%s", tmp_path("ty.npy"));
    snprintf(vx, sizeof vx, "%s", tmp_path("vx.npy"));
    snprintf(vy, sizeof vy, "%s", tmp_path("vy.npy"));
    snprintf(m1, sizeof m1, "%s", tmp_path("m1.safetensors"));
    snprintf(m2, sizeof m2, "%s", tmp_path("m2.safetensors"));
    snprintf(ck, sizeof ck, "%s", tmp_path("cli.ckpt"));
    snprintf(lg, sizeof lg, "%s", tmp_path("log.txt"));
    write_sign_npy(x, y, 512, 8, 1);
    write_sign_npy(vx, vy, 200, 8, 2);
    const char *common = "--task classify --hidden 12 --layers 2 --decompose svd:1 --epochs 4 --batch 32 "
                         "--lr 0.02 --dropout 0.1 --seed 3 --quiet";
    snprintf(args, sizeof args, "train --train %s --train-labels %s --valid %s --valid-labels %s %s -o %s", x, y,
             vx, vy, common, m1);
    assert_int_equal(run_cli(args, lg), 0);
    /* interrupted after 37 steps (mid-epoch), then resumed */
    snprintf(args, sizeof args,
             "train --train %s --train-labels %s --valid %s --valid-labels %s %s --checkpoint %s --every 10 "
             "--max-steps 37 -o %s", x, y, vx, vy, common, ck, m2);
    assert_int_equal(run_cli(args, lg), 0);
    snprintf(args, sizeof args,
             "train --train %s --train-labels %s --valid %s --valid-labels %s %s --checkpoint %s --resume -o %s", x,
             y, vx, vy, common, ck, m2);
    assert_int_equal(run_cli(args, lg), 0);
    fl_model *a, *b;
    assert_int_equal(fl_model_load(m1, &a), FL_OK);
    assert_int_equal(fl_model_load(m2, &b), FL_OK);
    assert_int_equal(a->n_params, b->n_params);
    assert_memory_equal(a->params, b->params, a->n_params * sizeof(float));
    fl_dataset *v;
    assert_int_equal(fl_dataset_load_npy(vx, vy, 0, &v), FL_OK);
    fl_eval_result ev;
    assert_int_equal(fl_model_evaluate(a, v, 50, 1, &ev), FL_OK);
    assert_true(ev.accuracy >= 0.85);
    /* eval --json agrees with the library */
    snprintf(args, sizeof args, "eval %s --data %s --labels %s --json", m1, vx, vy);
    assert_int_equal(run_cli(args, lg), 0);
    char want[64];
    snprintf(want, sizeof want, "\"accuracy\": %.6f", ev.accuracy);
    assert_true(file_contains(lg, want));
    /* finetune only the factors */
    snprintf(args, sizeof args, "finetune %s --train %s --train-labels %s --freeze-dense --epochs 1 --quiet -o %s",
             m1, x, y, m2);
    assert_int_equal(run_cli(args, lg), 0);
    fl_model *c;
    assert_int_equal(fl_model_load(m2, &c), FL_OK);
    const fl_tensor *tb = fl_model_find_tensor(c, "lstm.bias_ih_l0"), *tu = fl_model_find_tensor(c, "lstm.weight_hh_l0.U");
    assert_memory_equal(c->params + tb->offset, a->params + tb->offset, tb->count * sizeof(float));
    assert_memory_not_equal(c->params + tu->offset, a->params + tu->offset, tu->count * sizeof(float));
    /* bad data: labels of another set -> FL_ERR_DATA naming the file, exit 1 */
    snprintf(args, sizeof args, "train --task classify --train %s --train-labels %s -o %s", x, vy, m2);
    assert_int_equal(run_cli(args, lg), 1);
    assert_true(file_contains(lg, "FL_ERR_DATA"));
    assert_true(file_contains(lg, "vy.npy"));
    snprintf(args, sizeof args, "train --task classify --train %s -o %s", x, m2);
    assert_int_equal(run_cli(args, lg), 2);
    /* finetune of a classifier without labels: usage error, after the model was loaded (under
     * ASan a leaked model turns the exit status into LeakSanitizer's) */
    snprintf(args, sizeof args, "finetune %s --train %s -o %s", m1, x, m2);
    assert_int_equal(run_cli(args, lg), 2);
    assert_true(file_contains(lg, "--train-labels"));
    /* On a terminal the status line is redrawn about 100 times an epoch, not on every step
     * (512 steps here); util-linux script(1) provides the terminal. */
    if (access("/usr/bin/script", X_OK) == 0) {
        char cmd[9000];
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/script -qec \"'%s' train --task classify --train %s --train-labels %s --hidden 2 "
                 "--batch 1 --epochs 1 -o %s\" '%s' > /dev/null 2>&1",
                 getenv("FL_CLI"), x, y, m2, lg);
        int rc = system(cmd);
        assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 0);
        FILE *f = fopen(lg, "rb");
        assert_non_null(f);
        int redraws = 0, c, prev = 0;
        while ((c = fgetc(f)) != EOF) {
            if (prev == '\033' && c == '[') redraws++;
            prev = c;
        }
        fclose(f);
        assert_in_range(redraws, 50, 110);
    }
    /* a stray huge token id does not size the embedding (20M rows) by itself: exit 1 */
    {
        char ix[512];
        snprintf(ix, sizeof ix, "%s", tmp_path("big_ids.npy"));
        int32_t ids[4 * 3] = {0, 1, 2, 20000000, 0, 1, 2, 3, 0, 1, 2, 3}, l4[4] = {0, 1, 0, 1};
        int64_t is[2] = {4, 3}, ls4[1] = {4};
        assert_int_equal(fl_npy_save_i32(ix, ids, 2, is), FL_OK);
        assert_int_equal(fl_npy_save_i32(vy, l4, 1, ls4), FL_OK);
        snprintf(args, sizeof args, "train --task classify --train %s --train-labels %s --embed 2 --hidden 2 "
                 "--epochs 0 --quiet -o %s", ix, vy, m2);
        assert_int_equal(run_cli(args, lg), 1);
        assert_true(file_contains(lg, "big_ids.npy"));
        remove(ix);
    }
    /* eval on features of the wrong width: FL_ERR_SHAPE naming the data file, exit 1 */
    char wx[512];
    snprintf(wx, sizeof wx, "%s", tmp_path("wide_x.npy"));
    float wide[4 * 8 * 5] = {0};
    int64_t wshape[3] = {4, 8, 5}, lshape[1] = {4};
    int32_t wl[4] = {0, 1, 0, 1};
    assert_int_equal(fl_npy_save_f32(wx, wide, 3, wshape), FL_OK);
    assert_int_equal(fl_npy_save_i32(vy, wl, 1, lshape), FL_OK);
    snprintf(args, sizeof args, "eval %s --data %s --labels %s", m1, wx, vy);
    assert_int_equal(run_cli(args, lg), 1);
    assert_true(file_contains(lg, "FL_ERR_SHAPE"));
    assert_true(file_contains(lg, "wide_x.npy"));
    remove(wx);
    fl_model_free(a);
    fl_model_free(b);
    fl_model_free(c);
    fl_dataset_free(v);
    const char *files[] = {x, y, vx, vy, m1, m2, ck, lg};
    for (int i = 0; i < 8; i++) remove(files[i]);
}


static int setup(void **st) { return tmp_dir_make("fl_test_train_data"); }

/* Removes whatever a failed test left in the scratch directory too. */
static int teardown(void **st) { return tmp_dir_remove(); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data_errors),
        cmocka_unit_test(test_vocab),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
