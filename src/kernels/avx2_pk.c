/* AVX2 + FMA packed input projection Y = X W^T + bias (kernels.h: gemm_pk; W packed once per model
 * as (ceil(rows / 64), K, 64) panels). Compiled like avx2.c (-mavx2 -mfma -O3); split from it for
 * length. Scalar reference: fl_kernels_gemm_pk_ref (ref.c). */
#include "avx2_util.h"
#include "kernels.h"

#include <immintrin.h>
#include <stdbool.h>
#include <stddef.h>

/* Per 64-column panel, K runs in equal blocks; per block, per chunk of X rows, per 16-column
 * quarter and row tile of at most 6 rows (as even as possible: 35 = 6 6 6 6 6 5, 8 = 4 4). Every sum
 * still runs k = 0, 1, ..., K-1 through one FMA chain, carried from one block to the next in y
 * itself, so the results are those of a single pass.
 *   up to PK_GROUP rows (batch 1 x 35 steps, batch 4): blocks of <= PK_KB1 k, all rows one chunk.
 *     The panel is read once per call, by the first tile of each quarter, so unless it is fetched
 *     ahead that tile waits on L3 / DRAM. While a block runs, its tile passes prefetch the next
 *     block's lines (past the panel's last block: the next panel's first) into L2 in address
 *     order, each pass an even share spread over its k steps (as gate_cell does into L1).
 *     Measured against the whole-K kernel before it (63d5cc6), both in one process, calls
 *     alternating, median time ratio over 16-30 pairs, shared 2-core Zen 3: rows 2600, K 650:
 *     n = 35 0.60 (25 -> 43 GFLOP/s; weights evicted before each call: 0.61), K 1300 0.54;
 *     n = 7 0.44; n = 60 0.79 and n = 97 0.90 (as against 48-row chunks without prefetch),
 *     n = 140 0.92; n = 200 and 280 were 7-18% slower this way, so they take the path below.
 *     Blocks of 64 or 256 k, prefetching into L1 (32 k blocks, or _MM_HINT_T0) measured no faster.
 *     Tile by tile, the 4 quarters of a tile in turn (its <= 6 rows of X stay in L1 for the four),
 *     and the 4-step prefetching loop of a tile of 4-6 rows a loop, not unrolled (unrolled, GCC
 *     hoisted the 4 steps' panel loads, and 6-row tiles spilled accumulators and the row offsets to
 *     the stack: 3-5 stack loads per 4 k in perf annotate): against 1f1d7fb (bench_kernel_rates
 *     --pk-ab, one process, calls alternating, median ratio of 24 pairs, weights warm, shared 2-core
 *     Zen 3), rows 2600: n = 35 0.88-0.92 (K 650), 1.00-1.04 (K 1300); n = 140 0.92-0.95 (K 650),
 *     0.93-1.01 (K 1300); head rows 10000: n = 35 0.90 (K 256), 0.97-0.98 (K 650), n = 1 0.96-1.07.
 *   more rows: blocks of <= PK_KB2 k (K = 1300: 2 x 650), chunks of PK_MC rows, no L2 prefetch:
 *     a panel's block (<= 175 KB) and a chunk's X (<= 131 KB) fit in L2 together, where a whole
 *     K = 1300 panel (333 KB) and 48 rows of X (250 KB) did not; paired against 63d5cc6 at
 *     n = 700 0.98 (K 650), 0.99 (K 1300): no gain. Prefetching there measured 16-48% slower.
 *     Tile by tile here too measured 4-6% slower (n = 700, 560); quarter by quarter it stays.
 *     Also paired at n = 700, K 650, none faster (medians 0.96-1.09, most within the +-5% noise):
 *     blocks of 64-160 k (a panel block in L1) tile by tile or quarter by quarter, chunks of 24 or
 *     96 rows, the k loop unrolled by 2 or 4;
 *     row chunks outside the panels (X in L2, W streamed n / 48 times) 1.4-1.8x slower.
 *     X packed per tile into a (k, 6) buffer, so the broadcasts read one pointer (BLIS's packed A),
 *     chunks of 48 rows x blocks of <= 256 k reused across groups of 4 panels, tile by tile, was
 *     8-23% slower at n = 700 (paired as above; 48/96 rows, 96-650 k, 1-8 panels): the scalar pack
 *     cost ~10% in perf, and the loop itself gains nothing: with everything in L1 (48 rows x 64
 *     columns x K 64) both loops ran at the same rate. Timed alternately with the FMA peak loop (a
 *     micro-benchmark outside the tree), that rate was 79-86% of the peak (~80 of ~97 GFLOP/s; 180
 *     rows x 64 x 64, all in L1) and this path at n = 700, K 650 76-90% of it: the 67-74% read by
 *     --pk at other times was mostly co-tenants. The same way: the bare 6 x 16 step (2 loads, 6
 *     broadcasts, 12 FMAs, all from L1) ~90%; this path with W and X in L2 (n 192, rows 64, K 256
 *     or 650) 72-85%. So the loss is the L2 -> L1 streams of W (a line per k) and X, which the
 *     L1-sized blocks above did not win back (y reloaded per block, more tile set-ups).
 *     A tile's W line PK_PFD k ahead prefetched into L1 (_MM_HINT_T0, one per k, none past the
 *     block) wins some: against 1f1d7fb, --pk-ab, median of 24-32 pairs, PK_PFD = 24: n = 700
 *     0.93-0.96 (K 650), 0.93-0.99 (K 1300), cold 0.97 and 0.96; head n = 560 0.94-0.96; PK_PFD 8,
 *     16 and 32 within the same 0.93-0.99.
 *   Issue 11 asked n = 35 and 140 (batch 1 and 4) at >= 1.2x, from --pk readings of 48-52 GFLOP/s
 *   (55-62% of peak) against 68-70 at n = 700. Nothing below won; the kernel stayed as it was. In
 *   quiet moments it already runs n = 35 at 75-81 GFLOP/s (80-87% of the 93 peak, K 650; K 1300
 *   72-80), n = 140 at 65-79, n = 700 at 70-80, all alike, and rows 64 (the panel L2-resident) at
 *   77: the low readings are co-tenant moments (L3 taken, W from DRAM), so 1.2x over the quiet rate
 *   would pass the peak. --pk-ab against 592baf0 (bench/pk_before_avx2.h), rows 2600, median of
 *   24-40 pairs, shared 2-core Zen 3 at load 3-8; the same kernel against its copy read 0.97-1.02
 *   (head 0.99-1.08), so read anything inside ~0.93-1.07 as no change:
 *     this path with its tiles' own lines PK_PFD k ahead into L1 too: n = 35 1.00 (K 650), 1.04
 *     (K 1300); n = 140 1.00, 1.02. Blocks of <= 64 k: n = 35 1.01, 1.06. Quarter by quarter:
 *     n = 35 1.05, 1.05. The path of n > 160 (no L2 prefetch): n = 35 1.24, 1.35; n = 140 0.88,
 *     1.04. That path with this one's next-block L2 prefetch and the L1 prefetch (blocks <= 700,
 *     200 or 350 k, chunks of 48): n = 35 0.96-1.28, n = 140 0.97-1.00, rows 64 0.79-0.97; in one
 *     build n = 700, whose code it left alone, read 1.27 (pk_tile is shared; its code moved, presumably).
 *     The next block's lines: from 2 or 3 blocks ahead 0.95-1.08; all in the first 1/4 or 1/24 of
 *     the passes 1.14-1.26 (cold); _MM_HINT_T0 0.97-1.01; in bursts of 8, 16 or 32 lines
 *     0.94-1.03 in busy moments but 1.06-1.08 in quiet ones. y's lines of the next panel
 *     prefetched during a panel's last block: 0.98-1.04, warm and cold.
 *   Cold (--cold: 64 MB written before each call) n = 35 reads 35-46 GFLOP/s either way, 59-65 at
 *   times; n = 1 cold 920 us, about a bare read of the 6.8 MB (770 us, a loop outside the tree),
 *   and that loop with 72 FMAs per line streamed 13.5 MB cold at 88 GFLOP/s, so DRAM can hide
 *   under this much work. Re-reading x and y (not W) after the eviction, one run each: K 650 46 ->
 *   70, K 1300 59 -> 44: where the cold loss lies is still open (no hardware counters here).
 *   Command: OPENBLAS_NUM_THREADS=1 bench_kernel_rates --pk-ab [--cold] [--n 35] [--rows 64 --K 650]
 *   --pairs 32. */
enum { PK_GROUP = 160, PK_KB1 = 128, PK_KB2 = 700, PK_MC = 48, PK_PFD = 24 };

/* One k of a tile: acc[b] += W[k, 16 columns] x[b, k], q the k's panel line, xk = &x[0, k]. */
INL void pk_step(const int NR, const float *restrict q, const float *restrict xk, int ldx, __m256 acc[6][2]) {
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
 * spread evenly over the kn steps; with npf 0, its own panel lines PK_PFD k ahead into L1. p: the
 * quarter's first column of the panel. */
INL void pk_tile(const int NR, const bool full, int k0, int kn, const char *pf, int npf,
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
                for (int u = 0; u < 4; u++) pk_step(NR, q + 64 * u, xk + u, ldx, acc);
            } else {
#pragma GCC unroll 4
                for (int u = 0; u < 4; u++) pk_step(NR, q + 64 * u, xk + u, ldx, acc);
            }
        }
        for (; pf < pf_end; pf += 64) _mm_prefetch(pf, _MM_HINT_T1);
    }
    if (npf == 0) /* no L2 prefetch (the path of n > 160): the quarter's line PK_PFD k ahead into L1 */
        for (; k < kn - PK_PFD; k++, q += 64, xk++) {
            _mm_prefetch((const char *)(q + 64 * PK_PFD), _MM_HINT_T0);
            pk_step(NR, q, xk, ldx, acc);
        }
    for (; k < kn; k++, q += 64, xk++) pk_step(NR, q, xk, ldx, acc);
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
INL void pk_tile_n(int nr, const bool full, int k0, int kn, const char *pf, int npf, const float *restrict p,
                   const float *restrict x, int ldx, const float *restrict bb, __m256i m0, __m256i m1,
                   float *restrict y, int ldy) {
    switch (nr) {
    case 6: pk_tile(6, full, k0, kn, pf, npf, p, x, ldx, bb, m0, m1, y, ldy); break;
    case 5: pk_tile(5, full, k0, kn, pf, npf, p, x, ldx, bb, m0, m1, y, ldy); break;
    case 4: pk_tile(4, full, k0, kn, pf, npf, p, x, ldx, bb, m0, m1, y, ldy); break;
    case 3: pk_tile(3, full, k0, kn, pf, npf, p, x, ldx, bb, m0, m1, y, ldy); break;
    case 2: pk_tile(2, full, k0, kn, pf, npf, p, x, ldx, bb, m0, m1, y, ldy); break;
    default: pk_tile(1, full, k0, kn, pf, npf, p, x, ldx, bb, m0, m1, y, ldy); break;
    }
}

/* Tiles of rows [i0, i1): as even as possible, at most 6 rows (35: 6 6 6 6 6 5; 8: 4 4). */
static inline int pk_tiles(int i0, int i1) { return (i1 - i0 + 5) / 6; }

/* The lines of k block [k0, k0 + kb) of a panel (K, 64) to prefetch while the block before runs:
 * block k0 of pan if k0 < K, else the first block of next; their number in *lines (0 past the last
 * panel, next NULL). */
static inline const char *pk_block_lines(const float *pan, const float *next, int K, int k0, int kb, int *lines) {
    *lines = 0;
    if (k0 >= K) {
        if (!next) return (const char *)pan;
        pan = next, k0 = 0;
    }
    *lines = 4 * (K - k0 < kb ? K - k0 : kb);
    return (const char *)(pan + (size_t)k0 * 64);
}

void fl_gemm_pk_avx2(int n, int rows, int K, const float *restrict x, int ldx, const float *restrict pk,
                         const float *restrict bias, float *restrict y, int ldy) {
    if (n <= 0 || rows <= 0) return;
    const int np = (rows + 63) / 64;
    const bool ahead = n <= PK_GROUP; /* one chunk of rows, the next block prefetched */
    const int kmax = ahead ? PK_KB1 : PK_KB2, nkb = (K + kmax - 1) / kmax;
    const int kb = nkb > 0 ? (K + nkb - 1) / nkb : 1; /* equal blocks: K = 650 is 6 x 109 (128: a last one of 10) */
    const int mc = ahead ? n : PK_MC;
    for (int pi = 0; pi < np; pi++) {
        const float *pan = pk + (size_t)pi * K * 64, *next = pi + 1 < np ? pan + (size_t)K * 64 : NULL;
        const int nq = rows - pi * 64 >= 64 ? 4 : (rows - pi * 64 + 15) / 16;
        int passes = 0; /* tile passes per k block */
        for (int i0 = 0; i0 < n; i0 += mc) passes += nq * pk_tiles(i0, i0 + mc < n ? i0 + mc : n);
        int k0 = 0;
        do { /* once with K = 0: y = bias */
            const int kn = K - k0 < kb ? K - k0 : kb;
            int lines = 0;
            const char *pf = ahead ? pk_block_lines(pan, next, K, k0 + kn, kb, &lines) : (const char *)pan;
            int pass = 0;
            for (int i0 = 0; i0 < n; i0 += mc) {
                const int i1 = i0 + mc < n ? i0 + mc : n, nt = pk_tiles(i0, i1);
                const int base = (i1 - i0) / nt, extra = (i1 - i0) % nt; /* extra tiles of base + 1, then base */
                for (int j = 0; j < nt * nq; j++, pass++) { /* one chunk: tile by tile; else quarter by quarter */
                    const int t = ahead ? j / nq : j % nt, qt = ahead ? j % nq : j / nt;
                    const int nr = base + (t < extra), i = i0 + t * base + (t < extra ? t : extra);
                    const int c0 = pi * 64 + 16 * qt;
                    const bool full = rows - c0 >= 16;
                    const __m256i m0 = tail_mask(rows - c0), m1 = tail_mask(rows - c0 - 8);
                    const float *p = pan + 16 * qt, *bb = bias ? bias + c0 : NULL, *xi = x + (size_t)i * ldx;
                    const int l0 = (int)((long)lines * pass / passes), le = (int)((long)lines * (pass + 1) / passes);
                    float *yi = y + (size_t)i * ldy + c0;
                    if (full) pk_tile_n(nr, true, k0, kn, pf + (size_t)l0 * 64, le - l0, p, xi, ldx, bb, m0, m1, yi, ldy);
                    else pk_tile_n(nr, false, k0, kn, pf + (size_t)l0 * 64, le - l0, p, xi, ldx, bb, m0, m1, yi, ldy);
                }
            }
            k0 += kn;
        } while (k0 < K);
    }
}
