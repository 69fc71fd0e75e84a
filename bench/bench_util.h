/* Clock and medians shared by the benchmarks (static helpers; benchmarks may use the library's
 * internals): wall time is the library's fl_now_seconds, sorting its fl_sort_doubles. */
#ifndef FL_BENCH_UTIL_H
#define FL_BENCH_UTIL_H

#include "internal.h"

#include <immintrin.h>
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

/* The FMA peak of one core at 256 bits: 12 independent chains x iters FMAs of 8 lanes (2 x 8 x 12 x
 * iters flops), the multiplier close to 1 so nothing overflows; returns a lane of the sum (sink it). */
__attribute__((target("avx2,fma"))) static inline float bench_fma_chains256(long iters) {
    __m256 a[12];
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps((float)i);
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], m, c);
    }
    __m256 s = a[0];
#pragma GCC unroll 12
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, a[i]);
    float v[8];
    _mm256_storeu_ps(v, s);
    return v[0];
}

#endif
