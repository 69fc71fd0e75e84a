/* The memory-bound check of the packed tests (test_packed, test_packed_head): in a forked child, the
 * peak resident memory of load + session + run + free of a saved model, over the memory before the
 * load, must stay within 1.15x the model's weights + 4 MB (the packed copy replaces the original, so a
 * model runs in about its own size). Include after cmocka.h and testutil.h. */
#ifndef FL_TEST_MEM_BOUND_H
#define FL_TEST_MEM_BOUND_H

#include "fastlstm/fastlstm.h"

#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs one request on session s of model m; returns 0 on success. */
typedef int (*mem_bound_run_fn)(fl_session *s, const fl_model *m);

/* Resident kilobytes from /proc/self/status ("VmRSS:", "VmHWM:"); -1 when unreadable. */
static inline long mem_status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long v = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, strlen(key))) v = strtol(line + strlen(key), NULL, 10);
    fclose(f);
    return v;
}

enum { MEM_CHILD_OK = 0, MEM_CHILD_OVER = 1, MEM_CHILD_ERR = 2, MEM_CHILD_SKIP = 3 };

/* In the child (no cmocka asserts: it reports through its exit status). */
static inline int mem_bound_child(const char *path, const fl_session_opts *o, mem_bound_run_fn run,
                                  double weight_bytes, double *over_kb) {
    /* A fixed threshold: large blocks are mapped and unmapped, never kept on the heap by the warm-up
     * below (glibc raises its threshold after the first large free), where they would count in the
     * base and hide the peak. */
    if (mallopt(M_MMAP_THRESHOLD, 128 * 1024) != 1) return MEM_CHILD_SKIP;
    fl_model *m;
    fl_session *s;
    if (fl_model_load(path, &m)) return MEM_CHILD_ERR;
    /* warm up what a first session sets up once per process (BLAS buffers, the kernel table) */
    if (fl_session_create(m, o, &s)) return MEM_CHILD_ERR;
    fl_session_free(s);
    fl_model_free(m);
    FILE *f = fopen("/proc/self/clear_refs", "w"); /* "5" resets the peak (Linux 4.0 on) */
    if (!f) return MEM_CHILD_SKIP;
    bool reset = fputs("5", f) >= 0;
    if (fclose(f) != 0 || !reset) return MEM_CHILD_SKIP;
    const long base = mem_status_kb("VmRSS:");
    if (base < 0 || mem_status_kb("VmHWM:") > base + 1024) return MEM_CHILD_SKIP;
    if (fl_model_load(path, &m)) return MEM_CHILD_ERR;
    if (fl_session_create(m, o, &s) || run(s, m)) return MEM_CHILD_ERR;
    fl_session_free(s);
    fl_model_free(m);
    const double peak = (double)(mem_status_kb("VmHWM:") - base) * 1024.0;
    *over_kb = (peak - 1.15 * weight_bytes) / 1024.0;
    return peak <= 1.15 * weight_bytes + 4.0 * 1024 * 1024 ? MEM_CHILD_OK : MEM_CHILD_OVER;
}

/* The check on the model saved at path (weight_bytes of weights): skipped where the peak cannot be
 * read or reset, and under ASan (its shadow memory and quarantine are part of the resident set). */
static inline void mem_bound_check(const char *path, double weight_bytes, const fl_session_opts *o,
                                   mem_bound_run_fn run) {
#if defined(__SANITIZE_ADDRESS__)
    (void)path, (void)weight_bytes, (void)o, (void)run;
    skip();
#else
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        double over = 0;
        int r = mem_bound_child(path, o, run, weight_bytes, &over);
        if (r == MEM_CHILD_OVER) fprintf(stderr, "peak is %.0f KB over 1.15x the weights\n", over);
        _exit(r);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == MEM_CHILD_SKIP) skip();
    assert_int_equal(WEXITSTATUS(status), MEM_CHILD_OK);
#endif
}

#endif
