/* Data-parallel training over MPI, run as `mpirun -np 2 test_mpi` (CTest label mpi).
 *
 * Each case trains with both ranks sharing every global batch (fl_dist_attach), then, on each rank,
 * trains a second copy of the model in this process alone on the same global batches (no MPI) and
 * compares the final weights: they must agree to 1e-5 relative (summation order only). Rank 1
 * starts from different weights on purpose, so the broadcast at attach time is tested too.
 *
 * Every case is collective: assertions are collected per rank and agreed on (allreduce) before
 * cmocka sees them, so a failure on one rank fails the case on both instead of hanging. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef FL_WITH_MPI

#include "fastlstm/dist.h"
#include "fastlstm/train.h"
#include "internal.h"

static fl_dist *D;
static int failures; /* this rank's failed checks in the current case */

#define CHECK(cond)                                                                                    \
    do {                                                                                               \
        if (!(cond)) {                                                                                 \
            failures++;                                                                                \
            print_message("rank %d: check failed at %s:%d: %s (%s)\n", fl_dist_rank(D), __FILE__, __LINE__, \
                          #cond, fl_last_error());                                                     \
        }                                                                                              \
    } while (0)

/* End of a case: every rank fails it if any rank had a failed check. */
static void agree(void) {
    double f = failures;
    assert_int_equal(fl_dist_allreduce_sum(D, &f), FL_OK);
    failures = 0;
    assert_true(f == 0);
}

/* ---------------------------------------------------------------- data and models */

/* Classification: x (n, T, D) ~ N(0, 1) (or ids in [0, vocab) when vocab > 0), label = the index of
 * the largest per-feature sum (or sum of ids mod classes). */
static fl_dataset *classify_set(int n, int T, int D, int vocab, int classes, uint64_t seed) {
    fl_rng r;
    fl_rng_seed(&r, seed);
    float *x = D > 0 ? malloc((size_t)n * T * D * sizeof(float)) : NULL;
    int32_t *ids = D > 0 ? NULL : malloc((size_t)n * T * sizeof(int32_t));
    int32_t *y = malloc((size_t)n * sizeof(int32_t));
    for (int i = 0; i < n; i++) {
        if (D > 0) {
            double best = -INFINITY;
            for (int k = 0; k < D; k++) {
                double s = 0;
                for (int t = 0; t < T; t++) s += x[((size_t)i * T + t) * D + k] = (float)fl_rng_normal(&r);
                if (s > best) best = s, y[i] = k % classes;
            }
        } else {
            long s = 0;
            for (int t = 0; t < T; t++) s += ids[(size_t)i * T + t] = (int32_t)(fl_rng_next(&r) % (uint64_t)vocab);
            y[i] = (int32_t)(s % classes);
        }
    }
    fl_dataset *d = NULL;
    fl_status st = fl_dataset_classify(n, T, D, x, ids, y, classes, &d);
    free(x);
    free(ids);
    free(y);
    assert_int_equal(st, FL_OK);
    return d;
}

static fl_dataset *lm_set(size_t n, int vocab, uint64_t seed) {
    fl_rng r;
    fl_rng_seed(&r, seed);
    int32_t *tok = malloc(n * sizeof(int32_t));
    for (size_t i = 0; i < n; i++) /* a little structure: often the previous token + 1 */
        tok[i] = i > 0 && fl_rng_uniform(&r) < 0.6 ? (tok[i - 1] + 1) % vocab : (int32_t)(fl_rng_next(&r) % (uint64_t)vocab);
    fl_dataset *d = NULL;
    fl_status st = fl_dataset_lm(tok, n, vocab, &d);
    free(tok);
    assert_int_equal(st, FL_OK);
    return d;
}

typedef struct model_desc {
    fl_arch a;
    fl_method method; /* of the gate matrices */
    int rank;         /* their SVD or CP rank */
    int head_rank;    /* > 0: SVD head */
} model_desc;

static fl_model *build(const model_desc *md, uint64_t seed) {
    fl_mat_spec specs[2 * 4 + 1];
    for (int i = 0; i < 2 * md->a.layers; i++) {
        specs[i] = (fl_mat_spec){md->method, md->rank};
        int cols = i == 0 ? md->a.input : md->a.hidden;
        if (md->method == FL_METHOD_SVD && specs[i].rank > cols) specs[i].rank = cols;
    }
    specs[2 * md->a.layers] = md->head_rank > 0 ? (fl_mat_spec){FL_METHOD_SVD, md->head_rank}
                                                : (fl_mat_spec){FL_METHOD_DENSE, 0};
    fl_model *m = NULL;
    assert_int_equal(fl_model_create(&md->a, specs, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, seed), FL_OK);
    return m;
}

/* max |a - b| / max |b| over the parameter blocks. */
static double rel_diff(const fl_model *a, const fl_model *b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < b->n_params; i++) {
        double d = fabs((double)a->params[i] - b->params[i]);
        if (d > num || isnan(d)) num = d;
        if (fabs(b->params[i]) > den) den = fabs(b->params[i]);
    }
    return den > 0 ? num / den : num;
}

/* Train md on data with o for `epochs` (and at most max_steps) on both ranks sharing every batch
 * and, alone, in this process; compare. */
static void compare_case(const char *name, const model_desc *md, const fl_train_opts *o, const fl_dataset *data,
                         int epochs, long max_steps) {
    const uint64_t seed = 11;
    const int rank = fl_dist_rank(D);
    // distributed: rank 1 starts from other weights, which the attach overwrites with rank 0's
    fl_model *md_m = build(md, seed + 1000 * (uint64_t)rank), *init = build(md, seed);
    fl_trainer *t = NULL;
    CHECK(fl_trainer_create(md_m, o, &t) == FL_OK);
    fl_status st = t ? fl_dist_attach(D, t) : FL_ERR_ARG;
    CHECK(st == FL_OK);
    fl_train_run run = {.train = data, .epochs = epochs, .max_steps = max_steps};
    if (st == FL_OK) CHECK(fl_trainer_run(t, &run) == FL_OK); /* collective: same on both ranks */
    long steps = t ? fl_trainer_steps(t) : -1;

    // the same global batches in this process alone
    fl_model *ref = build(md, seed);
    fl_trainer *tr = NULL;
    CHECK(fl_trainer_create(ref, o, &tr) == FL_OK);
    if (tr) CHECK(fl_trainer_run(tr, &run) == FL_OK);
    CHECK(tr && fl_trainer_steps(tr) == steps);

    double rel = rel_diff(md_m, ref), moved = rel_diff(init, ref);
    print_message("%s (rank %d): %ld steps, %zu params; max |dist - single| / max |w| = %.2e "
                  "(training moved the weights by %.2e)\n",
                  name, rank, steps, ref->n_params, rel, moved);
    CHECK(rel <= 1e-5);
    CHECK(moved > 1e-3); /* the comparison means something: the weights did change */
    // the ranks hold bit-identical weights
    double sum = 0, sq = 0;
    for (size_t i = 0; i < md_m->n_params; i++) sum += md_m->params[i];
    sq = sum;
    CHECK(fl_dist_allreduce_sum(D, &sq) == FL_OK);
    CHECK(sq == 2 * sum);

    fl_trainer_free(tr);
    fl_model_free(ref);
    fl_dist_detach(D, t);
    fl_trainer_free(t);
    fl_model_free(md_m);
    fl_model_free(init);
    agree();
}

/* ---------------------------------------------------------------- cases */

/* Dense classifier on features; batch 8 over 22 sequences (last batch 6), Adam, shuffled epochs. */
static void test_classify_dense(void **state) {
    (void)state;
    fl_dataset *d = classify_set(22, 6, 3, 0, 3, 1);
    model_desc md = {.a = {.input = 3, .hidden = 8, .layers = 1, .head = FL_HEAD_LAST_STEP, .head_out = 3}};
    fl_train_opts o = fl_train_opts_default();
    o.lr = 0.01f;
    o.batch = 8;
    compare_case("classify dense, batch 8", &md, &o, d, 2, 0);
    fl_dataset_free(d);
}

/* SVD classifier, 2 layers, odd batch 7 (slices of 3 and 4), SGD momentum, clipping, weight decay. */
static void test_classify_svd_odd_batch(void **state) {
    (void)state;
    fl_dataset *d = classify_set(20, 5, 4, 0, 2, 2);
    model_desc md = {.a = {.input = 4, .hidden = 8, .layers = 2, .head = FL_HEAD_LAST_STEP, .head_out = 2},
                     .method = FL_METHOD_SVD, .rank = 3, .head_rank = 2};
    fl_train_opts o = fl_train_opts_default();
    o.optim = FL_OPTIM_SGD;
    o.lr = 0.2f;
    o.momentum = 0.9f;
    o.clip = 0.5f;
    o.weight_decay = 1e-3f;
    o.batch = 7;
    compare_case("classify SVD, batch 7", &md, &o, d, 2, 0);
    fl_dataset_free(d);
}

/* CP gates (rank 3) on both layers, dense head; batch 6 over 17 sequences (last batch 5: 2 + 3), Adam. */
static void test_classify_cp(void **state) {
    (void)state;
    fl_dataset *d = classify_set(17, 5, 3, 0, 2, 9);
    model_desc md = {.a = {.input = 3, .hidden = 8, .layers = 2, .head = FL_HEAD_LAST_STEP, .head_out = 2},
                     .method = FL_METHOD_CP, .rank = 3};
    fl_train_opts o = fl_train_opts_default();
    o.lr = 0.01f;
    o.batch = 6;
    compare_case("classify CP, batch 6", &md, &o, d, 2, 0);
    fl_dataset_free(d);
}

/* Token ids; batch 3 over 7 sequences: the last batch has 1 sequence, so one rank's slice is empty. */
static void test_classify_empty_slice(void **state) {
    (void)state;
    fl_dataset *d = classify_set(7, 4, 0, 9, 2, 3);
    model_desc md = {.a = {.vocab = 9, .input = 4, .hidden = 6, .layers = 1, .head = FL_HEAD_LAST_STEP, .head_out = 2}};
    fl_train_opts o = fl_train_opts_default();
    o.lr = 0.02f;
    o.batch = 3;
    compare_case("classify ids, batch 3 (an empty slice)", &md, &o, d, 2, 0);
    fl_dataset_free(d);
}

/* Language model, dense: 5 parallel streams (2 + 3), truncated BPTT with carried state. */
static void test_lm_dense(void **state) {
    (void)state;
    fl_dataset *d = lm_set(200, 13, 4);
    model_desc md = {.a = {.vocab = 13, .input = 6, .hidden = 8, .layers = 2, .head = FL_HEAD_PER_STEP, .head_out = 13}};
    fl_train_opts o = fl_train_opts_default();
    o.lr = 0.01f;
    o.batch = 5;
    o.bptt = 4;
    o.clip = 5;
    compare_case("lm dense, 5 streams", &md, &o, d, 1, 0);
    fl_dataset_free(d);
}

/* Language model with SVD gates and head, 3 streams, stopped by max_steps. */
static void test_lm_svd(void **state) {
    (void)state;
    fl_dataset *d = lm_set(150, 11, 5);
    model_desc md = {.a = {.vocab = 11, .input = 5, .hidden = 8, .layers = 1, .head = FL_HEAD_PER_STEP, .head_out = 11},
                     .method = FL_METHOD_SVD, .rank = 4, .head_rank = 3};
    fl_train_opts o = fl_train_opts_default();
    o.lr = 0.01f;
    o.batch = 3;
    o.bptt = 5;
    compare_case("lm SVD, 3 streams", &md, &o, d, 2, 6);
    fl_dataset_free(d);
}

/* A distributed LM run stopped at a checkpoint (written by rank 0: the carried state of every
 * rank's streams must be in it) and resumed on both ranks ends where one uninterrupted
 * single-process run does. */
static void test_lm_checkpoint_resume(void **state) {
    (void)state;
    fl_dataset *d = lm_set(180, 10, 7);
    model_desc md = {.a = {.vocab = 10, .input = 5, .hidden = 6, .layers = 2, .head = FL_HEAD_PER_STEP, .head_out = 10}};
    fl_train_opts o = fl_train_opts_default();
    o.optim = FL_OPTIM_SGD;
    o.lr = 0.5f;
    o.batch = 5;
    o.bptt = 4;
    char path[64] = "/tmp/fl_test_mpi_XXXXXX";
    int fd = -1;
    if (fl_dist_rank(D) == 0) fd = mkstemp(path);
    double ok = fl_dist_rank(D) == 0 ? fd >= 0 : 0;
    CHECK(fl_dist_allreduce_sum(D, &ok) == FL_OK && ok == 1);
    if (fd >= 0) close(fd);
    // the name travels to rank 1 as a number: the suffix is 6 characters of [A-Za-z0-9]
    double code[6];
    for (int i = 0; i < 6; i++) {
        code[i] = fl_dist_rank(D) == 0 ? (double)(unsigned char)path[17 + i] : 0;
        CHECK(fl_dist_allreduce_sum(D, &code[i]) == FL_OK);
        path[17 + i] = (char)code[i];
    }

    fl_model *m = build(&md, 5);
    fl_trainer *t = NULL;
    CHECK(fl_trainer_create(m, &o, &t) == FL_OK);
    CHECK(t && fl_dist_attach(D, t) == FL_OK);
    fl_train_run part = {.train = d, .epochs = 1, .max_steps = 5};
    CHECK(t && fl_trainer_run(t, &part) == FL_OK);
    if (fl_dist_rank(D) == 0) CHECK(t && fl_trainer_save(t, path) == FL_OK);
    CHECK(fl_dist_barrier(D) == FL_OK);
    fl_dist_detach(D, t);
    fl_trainer_free(t);
    fl_model_free(m);
    m = NULL;
    t = NULL;
    CHECK(fl_trainer_resume(path, &m, &t) == FL_OK);
    CHECK(t && fl_dist_attach(D, t) == FL_OK);
    fl_train_run rest = {.train = d, .epochs = 1, .max_steps = 9};
    CHECK(t && fl_trainer_run(t, &rest) == FL_OK);
    CHECK(fl_dist_barrier(D) == FL_OK);
    if (fl_dist_rank(D) == 0) unlink(path);

    fl_model *ref = build(&md, 5);
    fl_trainer *tr = NULL;
    CHECK(fl_trainer_create(ref, &o, &tr) == FL_OK);
    CHECK(tr && fl_trainer_run(tr, &rest) == FL_OK);
    double rel = m ? rel_diff(m, ref) : INFINITY;
    print_message("lm resume (rank %d): 5 + 4 steps distributed vs 9 alone: %.2e\n", fl_dist_rank(D), rel);
    CHECK(rel <= 1e-5);
    fl_trainer_free(tr);
    fl_model_free(ref);
    fl_dist_detach(D, t);
    fl_trainer_free(t);
    fl_model_free(m);
    fl_dataset_free(d);
    agree();
}

/* With dropout the ranks draw different masks, so no single-process reference; but they must stay
 * in lockstep: identical weights and identical shuffles over several epochs. */
static void test_dropout_lockstep(void **state) {
    (void)state;
    fl_dataset *d = classify_set(15, 4, 2, 0, 2, 6);
    model_desc md = {.a = {.input = 2, .hidden = 6, .layers = 2, .head = FL_HEAD_LAST_STEP, .head_out = 2}};
    fl_train_opts o = fl_train_opts_default();
    o.lr = 0.01f;
    o.batch = 5;
    o.dropout = 0.3f;
    fl_model *m = build(&md, 3);
    fl_trainer *t = NULL;
    CHECK(fl_trainer_create(m, &o, &t) == FL_OK);
    CHECK(t && fl_dist_attach(D, t) == FL_OK);
    fl_train_run run = {.train = d, .epochs = 3};
    CHECK(t && fl_trainer_run(t, &run) == FL_OK);
    // every rank's weights against the others', bit for bit: sum over ranks == 2 w
    double diff = 0;
    for (size_t i = 0; i < m->n_params && i < 256; i++) { /* a sample: each is a round trip */
        double x = m->params[i];
        CHECK(fl_dist_allreduce_sum(D, &x) == FL_OK);
        double e = fabs(x - 2.0 * m->params[i]);
        if (e > diff) diff = e;
    }
    print_message("dropout (rank %d): max |sum over ranks - 2 w| = %g over the first 256 weights\n",
                  fl_dist_rank(D), diff);
    CHECK(diff == 0);
    fl_dist_detach(D, t);
    fl_trainer_free(t);
    fl_model_free(m);
    fl_dataset_free(d);
    agree();
}

/* Ranks with different models: attach fails on every rank with FL_ERR_ARG, without hanging. */
static void test_mismatch_fails_everywhere(void **state) {
    (void)state;
    model_desc md = {.a = {.input = 2, .hidden = 6 + fl_dist_rank(D), .layers = 1, .head = FL_HEAD_LAST_STEP,
                           .head_out = 2}};
    fl_model *m = build(&md, 1);
    fl_trainer *t = NULL;
    CHECK(fl_trainer_create(m, NULL, &t) == FL_OK);
    fl_status st = t ? fl_dist_attach(D, t) : FL_OK;
    CHECK(st == FL_ERR_ARG);
    CHECK(strstr(fl_last_error(), "parameter count") != NULL);
    fl_trainer_free(t);
    fl_model_free(m);
    agree();
}

/* Ranks started with different seeds would shuffle differently and train on overlapping slices:
 * attach refuses on every rank, naming both seeds. */
static void test_seed_mismatch_fails_everywhere(void **state) {
    (void)state;
    model_desc md = {.a = {.input = 2, .hidden = 6, .layers = 1, .head = FL_HEAD_LAST_STEP, .head_out = 2}};
    fl_model *m = build(&md, 1);
    fl_train_opts o = fl_train_opts_default();
    o.seed = 41 + 1000 * (uint64_t)fl_dist_rank(D); /* rank 0: 41, rank 1: 1041 */
    fl_trainer *t = NULL;
    CHECK(fl_trainer_create(m, &o, &t) == FL_OK);
    fl_status st = t ? fl_dist_attach(D, t) : FL_OK;
    print_message("seeds 41 / 1041 (rank %d): %s: %s\n", fl_dist_rank(D), fl_status_str(st), fl_last_error());
    CHECK(st == FL_ERR_ARG);
    CHECK(strstr(fl_last_error(), "seed") != NULL);
    CHECK(strstr(fl_last_error(), "41") != NULL && strstr(fl_last_error(), "1041") != NULL);
    fl_trainer_free(t);
    fl_model_free(m);
    agree();
}

/* One rank shuffling and the other not: refused on every rank. */
static void test_shuffle_mismatch_fails_everywhere(void **state) {
    (void)state;
    model_desc md = {.a = {.input = 2, .hidden = 6, .layers = 1, .head = FL_HEAD_LAST_STEP, .head_out = 2}};
    fl_model *m = build(&md, 1);
    fl_train_opts o = fl_train_opts_default();
    o.shuffle = fl_dist_rank(D) == 0;
    fl_trainer *t = NULL;
    CHECK(fl_trainer_create(m, &o, &t) == FL_OK);
    fl_status st = t ? fl_dist_attach(D, t) : FL_OK;
    CHECK(st == FL_ERR_ARG);
    CHECK(strstr(fl_last_error(), "shuffle") != NULL);
    fl_trainer_free(t);
    fl_model_free(m);
    agree();
}

/* Same trainer, data sets of different sizes (20 and 21 sequences): the first step fails on every
 * rank with FL_ERR_DATA, naming both sizes, before any gradient is mixed. */
static void test_data_size_mismatch_fails_everywhere(void **state) {
    (void)state;
    fl_dataset *d = classify_set(20 + fl_dist_rank(D), 4, 2, 0, 2, 8);
    model_desc md = {.a = {.input = 2, .hidden = 6, .layers = 1, .head = FL_HEAD_LAST_STEP, .head_out = 2}};
    fl_model *m = build(&md, 1);
    fl_train_opts o = fl_train_opts_default();
    o.batch = 4;
    fl_trainer *t = NULL;
    CHECK(fl_trainer_create(m, &o, &t) == FL_OK);
    CHECK(t && fl_dist_attach(D, t) == FL_OK);
    fl_status st = t ? fl_trainer_step(t, d, NULL) : FL_OK;
    print_message("data of 20 / 21 sequences (rank %d): %s: %s\n", fl_dist_rank(D), fl_status_str(st),
                  fl_last_error());
    CHECK(st == FL_ERR_DATA);
    CHECK(strstr(fl_last_error(), "20 to 21 sequences") != NULL);
    fl_dist_detach(D, t);
    fl_trainer_free(t);
    fl_model_free(m);
    fl_dataset_free(d);
    agree();
}

/* What one step sends: the gradient block plus the loss and the data-size check. Decomposition shrinks it; the figures for
 * a 2 x 650 classifier on 650 features, dense and SVD rank 64. */
static void test_step_bytes(void **state) {
    (void)state;
    model_desc dense = {.a = {.input = 650, .hidden = 650, .layers = 2, .head = FL_HEAD_LAST_STEP, .head_out = 10}};
    model_desc svd = dense;
    svd.method = FL_METHOD_SVD;
    svd.rank = 64;
    fl_model *md = build(&dense, 1), *ms = build(&svd, 1);
    fl_trainer *td = NULL, *ts = NULL;
    fl_train_opts o = fl_train_opts_default();
    o.optim = FL_OPTIM_SGD;
    CHECK(fl_trainer_create(md, &o, &td) == FL_OK);
    CHECK(fl_trainer_create(ms, &o, &ts) == FL_OK);
    size_t bd = fl_dist_step_bytes(td), bs = fl_dist_step_bytes(ts);
    if (fl_dist_rank(D) == 0)
        print_message("bytes per step (allreduce), 2x650 classifier: dense %zu (%zu params), SVD r64 %zu "
                      "(%zu params): %.2fx less\n",
                      bd, md->n_params, bs, ms->n_params, (double)bd / (double)bs);
    CHECK(bd == md->n_params * sizeof(float) + sizeof(double) + 16);
    CHECK(bs == ms->n_params * sizeof(float) + sizeof(double) + 16);
    CHECK(bs < bd / 4);
    fl_trainer_free(td);
    fl_trainer_free(ts);
    fl_model_free(md);
    fl_model_free(ms);
    agree();
}

int main(int argc, char **argv) {
    if (fl_dist_init(&argc, &argv, &D) != FL_OK) {
        fprintf(stderr, "test_mpi: MPI initialisation failed: %s\n", fl_last_error());
        return 1;
    }
    if (fl_dist_size(D) != 2) {
        fprintf(stderr,
                "test_mpi: FAILED: must run on 2 MPI ranks (mpirun --allow-run-as-root --oversubscribe -np 2 "
                "test_mpi), got %d; was mpirun found when CMake was configured (MPIEXEC_EXECUTABLE)?\n",
                fl_dist_size(D));
        fl_dist_finalize(D);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify_dense),       cmocka_unit_test(test_classify_svd_odd_batch),
        cmocka_unit_test(test_classify_empty_slice), cmocka_unit_test(test_lm_dense),
        cmocka_unit_test(test_lm_svd),               cmocka_unit_test(test_lm_checkpoint_resume),
        cmocka_unit_test(test_dropout_lockstep),
        cmocka_unit_test(test_classify_cp),
        cmocka_unit_test(test_mismatch_fails_everywhere), cmocka_unit_test(test_seed_mismatch_fails_everywhere),
        cmocka_unit_test(test_shuffle_mismatch_fails_everywhere),
        cmocka_unit_test(test_data_size_mismatch_fails_everywhere), cmocka_unit_test(test_step_bytes),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    fl_dist_finalize(D);
    return rc;
}

#else /* built without MPI (FL_WITH_MPI=OFF or MPI not found) */

int main(void) {
    fprintf(stderr, "test_mpi: built without MPI (configure with -DFL_WITH_MPI=ON and Open MPI installed)\n");
    return 77;
}

#endif
