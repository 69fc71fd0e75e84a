/* Helpers shared by the cmocka tests (included by test files; static helpers only, each used or
 * not by any one test): a scratch directory, whole-file reads and writes, and a close-enough check.
 * Failures go through cmocka's asserts, so a helper that cannot read or write fails the test. */
#ifndef FL_TESTS_TESTUTIL_H
#define FL_TESTS_TESTUTIL_H

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------ scratch directory */

static char tmp_dir[64];

/* Create it under /dev/shm when writable (tests that rewrite small files thousands of times), else
 * /tmp; name starts with prefix. 0 on success, for a cmocka group setup. */
static inline int tmp_dir_make(const char *prefix) {
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(tmp_dir, sizeof tmp_dir, "%s/%s_XXXXXX", base, prefix);
    return mkdtemp(tmp_dir) ? 0 : -1;
}

/* Remove it with whatever a failed test left in it. 0 on success, for a cmocka group teardown. */
static inline int tmp_dir_remove(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* tmp_dir/name; the last four results stay valid. */
static inline const char *tmp_path(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmp_dir, name);
    return buf[k];
}

/* ------------------------------------------------------------ whole files */

/* Read all of path into *out (malloc'd, one extra byte set to 0 so text can be searched; the caller
 * frees it); returns the size. Fails the test when the file cannot be read. */
static inline size_t file_read(const char *path, unsigned char **out) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    assert_int_equal(fseek(f, 0, SEEK_SET), 0);
    *out = malloc((size_t)n + 1);
    assert_non_null(*out);
    assert_int_equal(fread(*out, 1, (size_t)n, f), (size_t)n);
    (*out)[n] = 0;
    fclose(f);
    return (size_t)n;
}

/* Write n bytes of p as the whole of path. Fails the test on any error. */
static inline void file_write(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot create %s", path);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* Size of path in bytes. Fails the test when it cannot be opened. */
static inline long file_size(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    fclose(f);
    return n;
}

/* Whether path exists and contains needle (a missing file contains nothing). */
static inline bool file_contains(const char *path, const char *needle) {
    if (access(path, R_OK) != 0) return false;
    unsigned char *b;
    file_read(path, &b);
    bool found = strstr((const char *)b, needle) != NULL;
    free(b);
    return found;
}

/* ------------------------------------------------------------ numbers */

/* |a - b| <= tol, printing both values when not (this cmocka has no assert_double_equal). */
static inline void check_close(double a, double b, double tol, const char *expr, int line) {
    if (!(fabs(a - b) <= tol)) {
        print_error("line %d: %s: %.17g vs %.17g (tol %g)\n", line, expr, a, b, tol);
        fail();
    }
}
#define assert_close(a, b, tol) check_close((a), (b), (tol), #a, __LINE__)

#endif
