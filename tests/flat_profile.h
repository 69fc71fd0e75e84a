/* A hand-written machine profile for cost-model tests: one private level of 1 MiB (every weight of
 * the tests' small models fits), flat rates (100 B/s there, 10 B/s DRAM, mat-vec 30 flop/s, sgemm
 * 1000), no cell, bias or overhead terms unless the test sets them. */
#ifndef FL_TEST_FLAT_PROFILE_H
#define FL_TEST_FLAT_PROFILE_H

#include "fastlstm/plan.h"

static inline fl_profile flat_profile(void) {
    fl_profile p = {0};
    p.cores = 1;
    p.simd_bits = 256;
    p.n_levels = 1;
    p.level[0] = (fl_cache_level){.level = 2, .bytes = 1 << 20, .shared_cpus = 1, .bandwidth = 100.0};
    p.dram_bandwidth = 10.0;
    p.gemm_flops = 1000.0;
    p.gemv_flops = 30.0;
    return p;
}

#endif
