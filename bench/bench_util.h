/* Clock and medians shared by the benchmarks (static helpers; benchmarks may use the library's
 * internals): wall time is the library's fl_now_seconds, sorting its fl_sort_doubles. */
#ifndef FL_BENCH_UTIL_H
#define FL_BENCH_UTIL_H

#include "internal.h"

#include <stdbool.h>
#include <time.h>

/* Seconds: this thread's CPU time when thread_cpu (one-thread figures on a shared machine: time the
 * OS gives to other processes does not count, cache sharing still does), else wall time. */
static inline double bench_now(bool thread_cpu) {
    if (!thread_cpu) return fl_now_seconds();
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Median, minimum and maximum of n >= 1 samples; sorts v in place. */
typedef struct bench_stats {
    double med, lo, hi;
} bench_stats;

static inline bench_stats bench_summarize(double *v, int n) {
    fl_sort_doubles(v, (size_t)n);
    return (bench_stats){v[n / 2], v[0], v[n - 1]};
}

#endif
