/* A scratch directory for one test executable (included by test files; static helpers only). */
#ifndef FL_TESTS_TMPDIR_H
#define FL_TESTS_TMPDIR_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char tmp_dir[64];

/* Create it under /dev/shm when writable (tests that rewrite small files thousands of times), else
 * /tmp; name starts with prefix. 0 on success, for a cmocka group setup. */
static int tmp_dir_make(const char *prefix) {
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(tmp_dir, sizeof tmp_dir, "%s/%s_XXXXXX", base, prefix);
    return mkdtemp(tmp_dir) ? 0 : -1;
}

static int tmp_dir_remove(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* tmp_dir/name; the last four results stay valid. */
static const char *tmp_path(const char *name) {
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmp_dir, name);
    return buf[k];
}

#endif
