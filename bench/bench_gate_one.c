/* One kernel level's gate_cell at one shape, for A/B runs of two builds. CMake builds it against this
 * tree (build/bench_gate_one); for an A/B, link it against each build's static library, then
 * alternate the two binaries under the timing lock:
 *
 *   gcc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -I SRC/src -I SRC/include bench/bench_gate_one.c \
 *       BUILD/libfastlstm.a -lopenblas -llapacke -lm -lpthread -o bench_gate_one_X
 *   bench_gate_one_X LEVEL H K B      (LEVEL avx2 | avx512 | ref; K = 0: the cell update alone)
 *
 * Prints the median over 15 samples (each ~3 ms of this thread's CPU time, the same weights call
 * after call) of the us per call of gate_cell over all blocks: gates = gx + x (B, K) through a random
 * packed panel, then the cell update (gx uniform in [-4, 4], c in [-1, 1]). No result is checked:
 * the tests compare every level with ref.c. */
#include "kernels/kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static float *rbuf(size_t n, float a) {
    float *p = aligned_alloc(64, (n + 16) / 16 * 16 * sizeof(float));
    if (!p) {
        fprintf(stderr, "gate_one: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = a * (2.0f * (float)rand() / (float)RAND_MAX - 1.0f);
    return p;
}

int main(int argc, char **argv) {
    const fl_kernels *k = argc == 5 ? fl_kernels_by_name(argv[1]) : NULL;
    const int H = argc == 5 ? atoi(argv[2]) : 0, K = argc == 5 ? atoi(argv[3]) : -1, B = argc == 5 ? atoi(argv[4]) : 0;
    if (!k || H < 1 || K < 0 || B < 1) {
        fprintf(stderr, "usage: bench_gate_one LEVEL H K B (LEVEL avx2 | avx512 | ref, on this CPU)\n");
        return 2;
    }
    const int nblk = (H + FL_REC_NB - 1) / FL_REC_NB, Kx = K ? K : 1;
    float *pw = rbuf((size_t)nblk * Kx * 4 * FL_REC_NB, 0.04f), *x = rbuf((size_t)B * Kx, 1.0f);
    float *gx = rbuf((size_t)B * 4 * H, 4.0f), *c = rbuf((size_t)B * H, 1.0f), *h = rbuf((size_t)B * H, 1.0f);
    k->gate_cell(0, nblk, H, K, B, pw, x, Kx, gx, 4 * H, c, h, H);
    double t0 = now();
    k->gate_cell(0, nblk, H, K, B, pw, x, Kx, gx, 4 * H, c, h, H);
    const int n = (int)(3e-3 / (now() - t0 + 1e-8)) + 1;
    double t[15];
    for (int s = 0; s < 15; s++) {
        t0 = now();
        for (int i = 0; i < n; i++) k->gate_cell(0, nblk, H, K, B, pw, x, Kx, gx, 4 * H, c, h, H);
        t[s] = (now() - t0) / n;
    }
    qsort(t, 15, sizeof *t, cmp);
    printf("%.3f\n", t[7] * 1e6);
    free(pw), free(x), free(gx), free(c), free(h);
    return 0;
}
