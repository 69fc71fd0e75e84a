/* Monotonic clock and sorting of timing samples, shared by the benchmarks, the planner and the CLI. */
#include "internal.h"

#include <stdlib.h>
#include <time.h>

double fl_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void fl_sort_doubles(double *v, size_t n) { qsort(v, n, sizeof *v, cmp_double); }
