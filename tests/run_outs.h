/* Outputs of whole-sequence runs and seeded random inputs, shared by the schedule tests
 * (test_bidir_sched.c, test_rows_sched.c), which compare the y, h_n and c_n of two runs bit for bit.
 * Include after cmocka.h and fastlstm's headers. */
#ifndef FL_TESTS_RUN_OUTS_H
#define FL_TESTS_RUN_OUTS_H

#include <stdlib.h>

/* y, h_n, c_n of one run and their sizes in floats. */
typedef struct outs {
    float *y, *hn, *cn;
    size_t ny, nh, nc;
} outs;

/* n floats uniform in [-1, 1] from seed; the caller frees them. */
static inline float *randoms(size_t n, unsigned seed) {
    float *p = malloc(n * sizeof *p);
    assert_non_null(p);
    srand(seed);
    for (size_t i = 0; i < n; i++) p[i] = (float)rand() / RAND_MAX * 2.0f - 1.0f;
    return p;
}

/* Zeroed outputs of m for batch B and seq T. */
static inline void outs_alloc(const fl_model *m, int B, int T, outs *o) {
    o->ny = fl_run_output_size(m, B, T);
    o->nh = fl_run_state_size(m, B, 0);
    o->nc = fl_run_state_size(m, B, 1);
    o->y = calloc(o->ny, sizeof(float));
    o->hn = calloc(o->nh, sizeof(float));
    o->cn = calloc(o->nc, sizeof(float));
    assert_true(o->y && o->hn && o->cn);
}

static inline void outs_free(outs *o) { free(o->y), free(o->hn), free(o->cn); }

#endif
