/* Hand-written machine profiles for cost-model tests. flat_profile: one private level of 1 MiB (every weight of
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

/* flat_profile with the low-rank step's figures (any: the tests' W_hh are dense) and uniform input
 * projection stage figures: stage 1 1 s per row, input and panel; stage 2 2 s (SVD) / 3 s (CP) per
 * row and panel; gx copy 0.01 s per byte. */
static inline fl_profile ih_profile(void) {
    fl_profile p = flat_profile();
    for (int j = 0; j < FL_PROFILE_LR_RANKS; j++)
        for (int k = 0; k < FL_PROFILE_LR_ROWS; k++) {
            p.lr_proj_seconds[j][k] = p.lr_panel_seconds[FL_METHOD_SVD][j][k] = p.lr_panel_seconds[FL_METHOD_CP][j][k] = 1;
            p.lr_ih_in_seconds[j][k] = 1;
            p.lr_ih_out_seconds[FL_METHOD_SVD][j][k] = 2;
            p.lr_ih_out_seconds[FL_METHOD_CP][j][k] = 3;
        }
    p.gx_copy_seconds = 0.01;
    return p;
}

/* A 2-core profile with the runtime's thread rule (a step splits from 512 KiB of weights, a dense
 * projection from 2 Mi multiply-adds), three cache levels (32 KiB, 512 KiB private; 32 MiB shared)
 * and no measured curves: for tests of the planner's thread counts and schedules. */
static inline fl_profile two_core_profile(void) {
    fl_profile p = {0};
    p.cores = 2;
    p.simd_bits = 256;
    const size_t cap[3] = {32 << 10, 512 << 10, 32 << 20};
    const double bw[3] = {150e9, 90e9, 40e9};
    for (int i = 0; i < 3; i++)
        p.level[i] = (fl_cache_level){.level = i + 1, .bytes = cap[i], .shared_cpus = i == 2 ? 2 : 1,
                                      .bandwidth = bw[i], .reported_bytes = cap[i]};
    p.n_levels = 3;
    p.dram_bandwidth = 15e9;
    p.gemm_flops = 60e9;
    p.gemv_flops = 30e9;
    p.step_overhead = 0.2e-6;
    p.parallel_step_bytes = 512.0 * 1024;
    p.parallel_proj_macs = 2.0 * (1 << 20);
    return p;
}

#endif
