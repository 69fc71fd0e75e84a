/* fl_gemm_pk_avx2 as it was at 592baf0 (src/kernels/avx2_pk.c), renamed pk_before_*, for
 * bench_kernel_rates --pk-ab: one process holds the old and the new kernel and alternates calls,
 * so the pair sees the same co-tenants (whole-binary A/B runs on this shared machine have read
 * byte-identical binaries 30% apart). Compiled for avx2 + fma by the pragma below; only called
 * when the CPU has both. Bench-only: not part of the library. What was measured is in the header
 * comment of src/kernels/avx2_pk.c. */
#ifndef FL_BENCH_PK_BEFORE_AVX2_H
#define FL_BENCH_PK_BEFORE_AVX2_H

#include <immintrin.h>
#include <stdbool.h>
#include <stddef.h>

#pragma GCC push_options
#pragma GCC target("avx2,fma")

#define PKB_INL static inline __attribute__((always_inline))

PKB_INL __m256i pk_before_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

enum { PKB_GROUP = 160, PKB_KB1 = 128, PKB_KB2 = 700, PKB_MC = 48, PKB_PFD = 24 };

/* One k of a tile: acc[b] += W[k, 16 columns] x[b, k], q the k's panel line, xk = &x[0, k]. */
PKB_INL void pk_before_step(const int NR, const float *restrict q, const float *restrict xk, int ldx, __m256 acc[6][2]) {
    const __m256 w0 = _mm256_load_ps(q), w1 = _mm256_load_ps(q + 8);
    const float *x3 = xk + 3 * (size_t)ldx; /* rows 3..5 from a second base: [x + i ldx], i <= 2 */
#pragma GCC unroll 6
    for (int b = 0; b < NR; b++) {
        const __m256 xv = _mm256_broadcast_ss(b < 3 ? xk + (size_t)b * ldx : x3 + (size_t)(b - 3) * ldx);
        acc[b][0] = _mm256_fmadd_ps(w0, xv, acc[b][0]);
        acc[b][1] = _mm256_fmadd_ps(w1, xv, acc[b][1]);
    }
}

/* NR rows of X (<= 6) x 16 columns (a quarter of a 64-column panel) over k in [k0, k0 + kn): 12
 * accumulators started at the bias (k0 == 0) or at y; per k, two aligned panel loads feed 2 NR FMAs.
 * A full quarter (full) loads and stores y with plain moves; a partial one masks the columns past
 * rows with m0, m1 (a masked store costs ~10 cycles on Zen 3). Prefetches npf lines from pf into L2,
 * spread evenly over the kn steps; with npf 0, its own panel lines PKB_PFD k ahead into L1. p: the
 * quarter's first column of the panel. */
PKB_INL void pk_before_tile(const int NR, const bool full, int k0, int kn, const char *pf, int npf,
                 const float *restrict p, const float *restrict x, int ldx, const float *restrict bias,
                 __m256i m0, __m256i m1, float *restrict y, int ldy) {
    __m256 acc[6][2];
    if (k0 == 0) {
        const __m256 b0 = bias ? _mm256_maskload_ps(bias, m0) : _mm256_setzero_ps();
        const __m256 b1 = bias ? _mm256_maskload_ps(bias + 8, m1) : _mm256_setzero_ps();
#pragma GCC unroll 6
        for (int b = 0; b < NR; b++) acc[b][0] = b0, acc[b][1] = b1;
    } else {
#pragma GCC unroll 6
        for (int b = 0; b < NR; b++) {
            const float *yb = y + (size_t)b * ldy;
            acc[b][0] = full ? _mm256_loadu_ps(yb) : _mm256_maskload_ps(yb, m0);
            acc[b][1] = full ? _mm256_loadu_ps(yb + 8) : _mm256_maskload_ps(yb + 8, m1);
        }
    }
    const float *q = p + (size_t)k0 * 64, *xk = x + k0;
    int k = 0;
    if (npf > 0) {
        /* npf lines spread evenly over the kn steps, checked once per 4 steps: a check every step
         * made the loop ~20% slower (paired runs at n = 700, where npf is 0) */
        const char *pf_end = pf + (size_t)npf * 64;
        int due = 0;
        for (; k + 4 <= kn; k += 4, q += 256, xk += 4) {
            for (due += 4 * npf; due >= kn && pf < pf_end; due -= kn, pf += 64) _mm_prefetch(pf, _MM_HINT_T1);
            if (NR >= 4) {
                /* a loop, not unrolled: unrolled, the 4 steps' loads were hoisted and 6-row tiles
                 * spilled accumulators and row offsets to the stack */
#pragma GCC unroll 1
                for (int u = 0; u < 4; u++) pk_before_step(NR, q + 64 * u, xk + u, ldx, acc);
            } else {
#pragma GCC unroll 4
                for (int u = 0; u < 4; u++) pk_before_step(NR, q + 64 * u, xk + u, ldx, acc);
            }
        }
        for (; pf < pf_end; pf += 64) _mm_prefetch(pf, _MM_HINT_T1);
    }
    if (npf == 0) /* no L2 prefetch (the path of n > 160): the quarter's line PKB_PFD k ahead into L1 */
        for (; k < kn - PKB_PFD; k++, q += 64, xk++) {
            _mm_prefetch((const char *)(q + 64 * PKB_PFD), _MM_HINT_T0);
            pk_before_step(NR, q, xk, ldx, acc);
        }
    for (; k < kn; k++, q += 64, xk++) pk_before_step(NR, q, xk, ldx, acc);
#pragma GCC unroll 6
    for (int b = 0; b < NR; b++) {
        if (full) {
            _mm256_storeu_ps(y + (size_t)b * ldy, acc[b][0]);
            _mm256_storeu_ps(y + (size_t)b * ldy + 8, acc[b][1]);
        } else {
            _mm256_maskstore_ps(y + (size_t)b * ldy, m0, acc[b][0]);
            _mm256_maskstore_ps(y + (size_t)b * ldy + 8, m1, acc[b][1]);
        }
    }
}

/* One tile of nr (1..6) rows: the dispatch to constant shapes. */
PKB_INL void pk_before_tile_n(int nr, const bool full, int k0, int kn, const char *pf, int npf, const float *restrict p,
                   const float *restrict x, int ldx, const float *restrict bb, __m256i m0, __m256i m1,
                   float *restrict y, int ldy) {
    switch (nr) {
    case 6: pk_before_tile(6, full, k0, kn, pf, npf, p, x, ldx, bb, m0, m1, y, ldy); break;
    case 5: pk_before_tile(5, full, k0, kn, pf, npf, p, x, ldx, bb, m0, m1, y, ldy); break;
    case 4: pk_before_tile(4, full, k0, kn, pf, npf, p, x, ldx, bb, m0, m1, y, ldy); break;
    case 3: pk_before_tile(3, full, k0, kn, pf, npf, p, x, ldx, bb, m0, m1, y, ldy); break;
    case 2: pk_before_tile(2, full, k0, kn, pf, npf, p, x, ldx, bb, m0, m1, y, ldy); break;
    default: pk_before_tile(1, full, k0, kn, pf, npf, p, x, ldx, bb, m0, m1, y, ldy); break;
    }
}

/* Tiles of rows [i0, i1): as even as possible, at most 6 rows (35: 6 6 6 6 6 5; 8: 4 4). */
static inline int pk_before_tiles(int i0, int i1) { return (i1 - i0 + 5) / 6; }

/* The lines of k block [k0, k0 + kb) of a panel (K, 64) to prefetch while the block before runs:
 * block k0 of pan if k0 < K, else the first block of next; their number in *lines (0 past the last
 * panel, next NULL). */
static inline const char *pk_before_block_lines(const float *pan, const float *next, int K, int k0, int kb, int *lines) {
    *lines = 0;
    if (k0 >= K) {
        if (!next) return (const char *)pan;
        pan = next, k0 = 0;
    }
    *lines = 4 * (K - k0 < kb ? K - k0 : kb);
    return (const char *)(pan + (size_t)k0 * 64);
}

static void gemm_pk_before_avx2(int n, int rows, int K, const float *restrict x, int ldx, const float *restrict pk,
                         const float *restrict bias, float *restrict y, int ldy) {
    if (n <= 0 || rows <= 0) return;
    const int np = (rows + 63) / 64;
    const bool ahead = n <= PKB_GROUP; /* one chunk of rows, the next block prefetched */
    const int kmax = ahead ? PKB_KB1 : PKB_KB2, nkb = (K + kmax - 1) / kmax;
    const int kb = nkb > 0 ? (K + nkb - 1) / nkb : 1; /* equal blocks: K = 650 is 6 x 109 (128: a last one of 10) */
    const int mc = ahead ? n : PKB_MC;
    for (int pi = 0; pi < np; pi++) {
        const float *pan = pk + (size_t)pi * K * 64, *next = pi + 1 < np ? pan + (size_t)K * 64 : NULL;
        const int nq = rows - pi * 64 >= 64 ? 4 : (rows - pi * 64 + 15) / 16;
        int passes = 0; /* tile passes per k block */
        for (int i0 = 0; i0 < n; i0 += mc) passes += nq * pk_before_tiles(i0, i0 + mc < n ? i0 + mc : n);
        int k0 = 0;
        do { /* once with K = 0: y = bias */
            const int kn = K - k0 < kb ? K - k0 : kb;
            int lines = 0;
            const char *pf = ahead ? pk_before_block_lines(pan, next, K, k0 + kn, kb, &lines) : (const char *)pan;
            int pass = 0;
            for (int i0 = 0; i0 < n; i0 += mc) {
                const int i1 = i0 + mc < n ? i0 + mc : n, nt = pk_before_tiles(i0, i1);
                const int base = (i1 - i0) / nt, extra = (i1 - i0) % nt; /* extra tiles of base + 1, then base */
                for (int j = 0; j < nt * nq; j++, pass++) { /* one chunk: tile by tile; else quarter by quarter */
                    const int t = ahead ? j / nq : j % nt, qt = ahead ? j % nq : j / nt;
                    const int nr = base + (t < extra), i = i0 + t * base + (t < extra ? t : extra);
                    const int c0 = pi * 64 + 16 * qt;
                    const bool full = rows - c0 >= 16;
                    const __m256i m0 = pk_before_mask(rows - c0), m1 = pk_before_mask(rows - c0 - 8);
                    const float *p = pan + 16 * qt, *bb = bias ? bias + c0 : NULL, *xi = x + (size_t)i * ldx;
                    const int l0 = (int)((long)lines * pass / passes), le = (int)((long)lines * (pass + 1) / passes);
                    float *yi = y + (size_t)i * ldy + c0;
                    if (full) pk_before_tile_n(nr, true, k0, kn, pf + (size_t)l0 * 64, le - l0, p, xi, ldx, bb, m0, m1, yi, ldy);
                    else pk_before_tile_n(nr, false, k0, kn, pf + (size_t)l0 * 64, le - l0, p, xi, ldx, bb, m0, m1, yi, ldy);
                }
            }
            k0 += kn;
        } while (k0 < K);
    }
}

#undef PKB_INL
#pragma GCC pop_options

#endif
