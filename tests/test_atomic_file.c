/* The one atomic file writer (src/core/atomic_file.c) and the four writers that use it (.npy,
 * safetensors, checkpoints, the machine profile): a write replaces the file whole; a failing write
 * leaves the old file and no temporary file; a path too long for the temporary name is an error,
 * never truncated; a missing directory gives FL_ERR_IO naming the path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "atomic_file.h"
#include "fastlstm/io.h"
#include "fastlstm/plan.h"
#include "fastlstm/train.h"
#include "internal.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testutil.h"

static int setup(void **state) { return tmp_dir_make("fl_test_atomic"); }

static int teardown(void **state) { return tmp_dir_remove(); }

/* Clean the scratch directory between tests, so that entry counts mean something. */
static int clean(void **state) {
    DIR *d = opendir(tmp_dir);
    if (!d) return -1;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(path, sizeof path, "%s/%.255s", tmp_dir, e->d_name);
            remove(path);
        }
    closedir(d);
    return 0;
}

/* Entries of the scratch directory (no temporary file may be left behind). */
static int count_entries(void) {
    DIR *d = opendir(tmp_dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

/* path holds exactly text. */
static void expect_content(const char *path, const char *text) {
    unsigned char *buf;
    size_t n = file_read(path, &buf);
    assert_int_equal(n, strlen(text));
    assert_string_equal((const char *)buf, text);
    free(buf);
}

static void test_write_and_replace(void **state) {
    const char *p = tmp_path("a.txt");
    assert_int_equal(fl_atomic_write_buffer(p, "first", 5), FL_OK);
    expect_content(p, "first");
    assert_int_equal(fl_atomic_write_buffer(p, "second, longer", 14), FL_OK);
    expect_content(p, "second, longer");
    assert_int_equal(fl_atomic_write_buffer(p, "", 0), FL_OK);
    expect_content(p, "");
    assert_int_equal(count_entries(), 1);
    /* The mode a plain fopen would give (mkstemp makes 0600). */
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    mode_t mask = umask(0);
    umask(mask);
    assert_int_equal(sb.st_mode & 0777, 0666 & ~mask);
}

/* Writes half the content, then fails like a full disk would. */
static fl_status write_then_fail(void *ctx, FILE *f, const char *tmp) {
    fputs("partial new cont", f);
    return fl_fail(FL_ERR_IO, "%s: simulated failure", tmp);
}

static void test_failed_write_keeps_old(void **state) {
    const char *p = tmp_path("keep.txt");
    assert_int_equal(fl_atomic_write_buffer(p, "old content", 11), FL_OK);
    assert_int_equal(fl_atomic_write(p, write_then_fail, NULL), FL_ERR_IO);
    assert_non_null(strstr(fl_last_error(), "simulated failure"));
    expect_content(p, "old content");
    assert_int_equal(count_entries(), 1);
}

/* Allocation failure (the temporary name) leaves the old file too. */
static void test_nomem_keeps_old(void **state) {
    const char *p = tmp_path("nomem.txt");
    assert_int_equal(fl_atomic_write_buffer(p, "old", 3), FL_OK);
    fl_alloc_fail_after(0);
    fl_status st = fl_atomic_write_buffer(p, "new", 3);
    fl_alloc_fail_after(-1);
    assert_int_equal(st, FL_ERR_NOMEM);
    expect_content(p, "old");
    assert_int_equal(count_entries(), 1);
}

/* A path of 5000 bytes: an error that says so, nothing written, never a truncated name. */
static void test_long_path(void **state) {
    size_t n = strlen(tmp_dir) + 1 + 5000;
    char *p = malloc(n + 1);
    assert_non_null(p);
    int k = snprintf(p, n + 1, "%s/", tmp_dir);
    memset(p + k, 'x', n - (size_t)k);
    p[n] = '\0';
    assert_int_equal(fl_atomic_write_buffer(p, "x", 1), FL_ERR_ARG);
    assert_non_null(strstr(fl_last_error(), "too long"));
    /* The same rule in every writer. */
    int64_t shape[1] = {2};
    const float v[2] = {1, 2};
    assert_int_equal(fl_npy_save_f32(p, v, 1, shape), FL_ERR_ARG);
    fl_profile prof;
    memset(&prof, 0, sizeof prof);
    assert_int_equal(fl_profile_save(&prof, p), FL_ERR_ARG);
    assert_non_null(strstr(fl_last_error(), "too long"));
    fl_model *m = NULL;
    fl_arch a = {.vocab = 0, .input = 3, .hidden = 4, .layers = 1, .head = FL_HEAD_LAST_STEP, .head_out = 2};
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    assert_int_equal(fl_model_save(m, p), FL_ERR_ARG);
    assert_non_null(strstr(fl_last_error(), "too long"));
    fl_trainer *t = NULL;
    fl_train_opts o = fl_train_opts_default();
    assert_int_equal(fl_trainer_create(m, &o, &t), FL_OK);
    assert_int_equal(fl_trainer_save(t, p), FL_ERR_ARG);
    assert_non_null(strstr(fl_last_error(), "too long"));
    fl_trainer_free(t);
    fl_model_free(m);
    free(p);
    assert_int_equal(count_entries(), 0);
}

/* A directory that does not exist: FL_ERR_IO naming the path, from every writer. */
static void test_missing_directory(void **state) {
    const char *p = tmp_path("no/such/dir/file.bin");
    assert_int_equal(fl_atomic_write_buffer(p, "x", 1), FL_ERR_IO);
    assert_non_null(strstr(fl_last_error(), p));
    int64_t shape[1] = {2};
    const int32_t v[2] = {1, 2};
    assert_int_equal(fl_npy_save_i32(p, v, 1, shape), FL_ERR_IO);
    assert_non_null(strstr(fl_last_error(), p));
    fl_model *m = NULL;
    fl_arch a = {.vocab = 0, .input = 3, .hidden = 4, .layers = 1, .head = FL_HEAD_LAST_STEP, .head_out = 2};
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    assert_int_equal(fl_model_save(m, p), FL_ERR_IO);
    assert_non_null(strstr(fl_last_error(), p));
    fl_trainer *t = NULL;
    fl_train_opts o = fl_train_opts_default();
    assert_int_equal(fl_trainer_create(m, &o, &t), FL_OK);
    assert_int_equal(fl_trainer_save(t, p), FL_ERR_IO);
    assert_non_null(strstr(fl_last_error(), p));
    fl_trainer_free(t);
    fl_model_free(m);
    assert_int_equal(count_entries(), 0);
}

/* Each writer replaces an existing file whole, leaving no temporary file, and the result loads. */
static void test_writers_replace(void **state) {
    const char *np = tmp_path("x.npy");
    int64_t shape[2] = {2, 3};
    const float a1[6] = {1, 2, 3, 4, 5, 6}, a2[6] = {-1, -2, -3, -4, -5, -6};
    assert_int_equal(fl_npy_save_f32(np, a1, 2, shape), FL_OK);
    assert_int_equal(fl_npy_save_f32(np, a2, 2, shape), FL_OK);
    fl_npy x;
    assert_int_equal(fl_npy_load(np, &x), FL_OK);
    assert_int_equal(x.count, 6);
    assert_memory_equal(x.data, a2, sizeof a2);
    fl_npy_free(&x);

    const char *mp = tmp_path("m.safetensors");
    fl_model *m = NULL, *back = NULL;
    fl_arch a = {.vocab = 0, .input = 3, .hidden = 4, .layers = 1, .head = FL_HEAD_LAST_STEP, .head_out = 2};
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    assert_int_equal(fl_model_save(m, mp), FL_OK);
    assert_int_equal(fl_model_init_random(m, 7), FL_OK);
    assert_int_equal(fl_model_save(m, mp), FL_OK);
    assert_int_equal(fl_model_load(mp, &back), FL_OK);
    assert_int_equal(fl_model_num_params(back), fl_model_num_params(m));
    fl_model_free(back);

    const char *cp = tmp_path("t.ckpt");
    fl_trainer *t = NULL, *t2 = NULL;
    fl_train_opts o = fl_train_opts_default();
    assert_int_equal(fl_trainer_create(m, &o, &t), FL_OK);
    assert_int_equal(fl_trainer_save(t, cp), FL_OK);
    assert_int_equal(fl_trainer_save(t, cp), FL_OK);
    fl_model *m2 = NULL;
    assert_int_equal(fl_trainer_resume(cp, &m2, &t2), FL_OK);
    assert_int_equal(fl_model_num_params(m2), fl_model_num_params(m));
    fl_trainer_free(t2);
    fl_model_free(m2);
    fl_trainer_free(t);
    fl_model_free(m);
    assert_int_equal(count_entries(), 3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_write_and_replace, clean),
        cmocka_unit_test_setup(test_failed_write_keeps_old, clean),
        cmocka_unit_test_setup(test_nomem_keeps_old, clean),
        cmocka_unit_test_setup(test_long_path, clean),
        cmocka_unit_test_setup(test_missing_directory, clean),
        cmocka_unit_test_setup(test_writers_replace, clean),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
