/* The B > 1 gate_cell of src/kernels/avx2.c as it was at c497d3e (before kern15's changes; refreshed
 * from 1f1d7fb's), copied verbatim under other names (before_, BEFORE_) so that bench_gate_ab can time
 * it and today's kernel in one process, calls alternating (a whole-binary A/B on this shared machine
 * reads identical binaries 30% apart). Included by bench_gate_ab.c only; compiled for AVX2 + FMA by
 * the pragma below. Its sigmoid / tanh are the ones before 2026-12-01's faster cell update
 * (docs/kernels_avx512.md, "Cell update"), so since then an A/B against today's kernel includes that
 * change too (bench_k512 --cell times the cell alone). */
#ifndef FL_GATE_BEFORE_AVX2_H
#define FL_GATE_BEFORE_AVX2_H

#include "cell_before_avx2.h"

#include <immintrin.h>
#include <stdbool.h>
#include <stddef.h>

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#pragma GCC optimize("O3")

#define INL static inline __attribute__((always_inline))

INL __m256i before_tail_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* the sigmoid / tanh of that time: cell_before_avx2.h's (the same maths, one copy) */
#define before_sigmoid8 sigmoid8_old
#define before_tanh8 tanh8_old

/* Cell update of 8 units; gx, c, h point at the first unit, of which n (1..8) are valid. A full
 * vector uses plain loads and stores: a masked store costs ~10 cycles on Zen 3. */
INL void before_cell_store(__m256 ai, __m256 af, __m256 ag, __m256 ao, const float *gx, int H, float *c,
                    float *h, int n) {
    if (n == 8) {
        ai = _mm256_add_ps(ai, _mm256_loadu_ps(gx));
        af = _mm256_add_ps(af, _mm256_loadu_ps(gx + H));
        ag = _mm256_add_ps(ag, _mm256_loadu_ps(gx + 2 * (size_t)H));
        ao = _mm256_add_ps(ao, _mm256_loadu_ps(gx + 3 * (size_t)H));
        __m256 cn = _mm256_fmadd_ps(before_sigmoid8(af), _mm256_loadu_ps(c), _mm256_mul_ps(before_sigmoid8(ai), before_tanh8(ag)));
        _mm256_storeu_ps(c, cn);
        _mm256_storeu_ps(h, _mm256_mul_ps(before_sigmoid8(ao), before_tanh8(cn)));
        return;
    }
    const __m256i m = before_tail_mask(n);
    ai = _mm256_add_ps(ai, _mm256_maskload_ps(gx, m));
    af = _mm256_add_ps(af, _mm256_maskload_ps(gx + H, m));
    ag = _mm256_add_ps(ag, _mm256_maskload_ps(gx + 2 * (size_t)H, m));
    ao = _mm256_add_ps(ao, _mm256_maskload_ps(gx + 3 * (size_t)H, m));
    __m256 cn = _mm256_fmadd_ps(before_sigmoid8(af), _mm256_maskload_ps(c, m),
                                _mm256_mul_ps(before_sigmoid8(ai), before_tanh8(ag)));
    _mm256_maskstore_ps(c, m, cn);
    _mm256_maskstore_ps(h, m, _mm256_mul_ps(before_sigmoid8(ao), before_tanh8(cn)));
}

/* Valid units of half `hf` (0, 1) of the block at j0: 0..8. */
INL int before_half_count(int H, int j0, int hf) {
    int n = H - j0 - 8 * hf;
    return n < 0 ? 0 : n > 8 ? 8 : n;
}

/* Prefetch 8 gate pre-activations per gate of one row at gx (first and last lane), before a tile's
 * K loop, so the epilogue's gx loads (a session's (T, B, 4H) buffer, out of cache) do not stall. */
INL void before_prefetch_gx(const float *gx, int H) {
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) {
        _mm_prefetch((const char *)(gx + (size_t)g * H), _MM_HINT_T0);
        _mm_prefetch((const char *)(gx + (size_t)g * H + 7), _MM_HINT_T0);
    }
}

/* (The design and its measurements: the comment above enum { BEFORE_KC in src/kernels/avx2.c at c497d3e.) */
enum { BEFORE_KC = 32, BEFORE_ROWS_PER_GROUP = 36, BEFORE_PART_STRIDE = 64 /* floats per row of part: (4 gates, 16 units) */ };

/* One k of a tile: acc[b][g] += W[k, gate g0 + g, 16 units] x[b, k]; q the k's panel line (at gate
 * g0), xk = &x[0, k], row b at xk + b BEFORE_KC (NR >= 5: the chunk's copy, one pointer and constant offsets)
 * or xk + b xs. */
INL void before_gate_step(const int NR, const int NG, const float *restrict q, const float *restrict xk, size_t xs,
                   __m256 acc[6][4][2]) {
    __m256 w[4][2];
#pragma GCC unroll 4
    for (int g = 0; g < NG; g++) {
        w[g][0] = _mm256_load_ps(q + 16 * g);
        w[g][1] = _mm256_load_ps(q + 16 * g + 8);
    }
#pragma GCC unroll 6
    for (int b = 0; b < NR; b++) {
        const __m256 xv = _mm256_broadcast_ss(xk + (NR >= 5 ? (size_t)b * BEFORE_KC : b * xs));
#pragma GCC unroll 4
        for (int g = 0; g < NG; g++) {
            acc[b][g][0] = _mm256_fmadd_ps(w[g][0], xv, acc[b][g][0]);
            acc[b][g][1] = _mm256_fmadd_ps(w[g][1], xv, acc[b][g][1]);
        }
    }
}

/* NR rows x NG gates from g0 x 16 units over k in [k0, k0 + kn): accumulators from part (row b at
 * part + b BEFORE_PART_STRIDE), zero when k0 == 0, and back into part. p: the block's panel (K, 4, 16); xt:
 * the tile's x from k0 on, rows xs floats apart (NR >= 5: the chunk's copy, xs = BEFORE_KC). Prefetches npf
 * lines from pf (to L1), spread evenly over the kn steps: after step k, floor((k + 1) npf / kn). */
INL void before_gate_tile(const int NR, const int NG, const char *pf, int npf, int k0, int kn, int g0, const float *restrict p,
                   const float *restrict xt, size_t xs, float *restrict part) {
    __m256 acc[6][4][2];
#pragma GCC unroll 6
    for (int b = 0; b < NR; b++)
#pragma GCC unroll 4
        for (int g = 0; g < NG; g++)
#pragma GCC unroll 2
            for (int hf = 0; hf < 2; hf++)
                acc[b][g][hf] = k0 == 0 ? _mm256_setzero_ps()
                                        : _mm256_loadu_ps(part + b * BEFORE_PART_STRIDE + (g0 + g) * 16 + 8 * hf);
    const float *q = p + (size_t)k0 * 64 + 16 * g0, *xk = xt;
    int k = 0, due = 0;
    if (NR >= 5) { /* the prefetch count checked once per 4 k */
        for (; k + 4 <= kn; k += 4, q += 256, xk += 4) {
            for (due += 4 * npf; due >= kn; due -= kn, pf += 64) _mm_prefetch(pf, _MM_HINT_T0);
#pragma GCC unroll 4
            for (int u = 0; u < 4; u++) before_gate_step(NR, NG, q + 64 * u, xk + u, xs, acc);
        }
    }
    for (; k < kn; k++, q += 64, xk++) {
        for (due += npf; due >= kn; due -= kn, pf += 64) _mm_prefetch(pf, _MM_HINT_T0);
        before_gate_step(NR, NG, q, xk, xs, acc);
    }
#pragma GCC unroll 6
    for (int b = 0; b < NR; b++)
#pragma GCC unroll 4
        for (int g = 0; g < NG; g++)
#pragma GCC unroll 2
            for (int hf = 0; hf < 2; hf++) _mm256_storeu_ps(part + b * BEFORE_PART_STRIDE + (g0 + g) * 16 + 8 * hf, acc[b][g][hf]);
}

/* A tile of nr (1..6) rows and ng (1, 2, 4) gates: the dispatch to constant shapes (the
 * shapes the row split of before_gate_group produces). */
static inline void before_gate_tile_n(int nr, int ng, const char *pf, int npf, int k0, int kn, int g0, const float *restrict p,
                               const float *restrict xt, size_t xs, float *restrict part) {
    if (ng == 1) {
        switch (nr) {
        case 6: before_gate_tile(6, 1, pf, npf, k0, kn, g0, p, xt, xs, part); return;
        case 5: before_gate_tile(5, 1, pf, npf, k0, kn, g0, p, xt, xs, part); return;
        case 4: before_gate_tile(4, 1, pf, npf, k0, kn, g0, p, xt, xs, part); return;
        default: before_gate_tile(3, 1, pf, npf, k0, kn, g0, p, xt, xs, part); return;
        }
    }
    if (ng == 2) {
        if (nr == 3) before_gate_tile(3, 2, pf, npf, k0, kn, g0, p, xt, xs, part);
        else before_gate_tile(2, 2, pf, npf, k0, kn, g0, p, xt, xs, part);
        return;
    }
    before_gate_tile(1, 4, pf, npf, k0, kn, 0, p, xt, xs, part);
}

/* xc (nr, BEFORE_KC) = x[0:nr, k0:k0 + kn] (rows ldx apart), kn <= BEFORE_KC: the rows of one K chunk at a
 * stride known when compiling, for tiles of 5 and 6 rows. */
INL void before_copy_chunk(int nr, int kn, const float *restrict x, int ldx, int k0, float *restrict xc) {
    for (int b = 0; b < nr; b++) {
        const float *xb = x + (size_t)b * ldx + k0;
        float *o = xc + b * BEFORE_KC;
        int i = 0;
        for (; i + 8 <= kn; i += 8) _mm256_store_ps(o + i, _mm256_loadu_ps(xb + i));
        for (; i < kn; i++) o[i] = xb[i];
    }
}

/* The lines of chunk `ci` of the panel p (K, 4, 16), chunks counted on past its end into the next panel
 * to stream in (next, next_lines lines of 64 bytes): its first line, and their number in *lines. */
static inline const char *before_chunk_lines(const float *p, int K, const float *next, int next_lines, int ci, int *lines) {
    const int nc = (K + BEFORE_KC - 1) / BEFORE_KC;
    if (ci < nc) {
        *lines = 4 * (K - ci * BEFORE_KC < BEFORE_KC ? K - ci * BEFORE_KC : BEFORE_KC);
        return (const char *)(p + (size_t)ci * BEFORE_KC * 64);
    }
    const int off = 4 * BEFORE_KC * (ci - nc), n = next_lines - off < 4 * BEFORE_KC ? next_lines - off : 4 * BEFORE_KC;
    *lines = n < 0 ? 0 : n;
    return (const char *)next + (size_t)(n < 0 ? 0 : off) * 64;
}

/* Rows [0, nr) of one block (nr <= BEFORE_ROWS_PER_GROUP): every K chunk through the row tiles into part,
 * then the cell update of the block's units from part and gx. next: the panel to stream in after
 * this one (next_lines lines of it; 0: none). */
static void before_gate_group(int nr, int j0, int H, int K, const float *restrict p, const float *restrict x, int ldx,
                       const float *restrict gx, int ldgx, float *restrict c, float *restrict h, int ldh,
                       float *restrict part, float *restrict xc, const float *next, int next_lines) {
    const int ng = nr >= 4 ? 1 : nr >= 2 ? 2 : 4;
    const int nt = ng == 1 ? (nr + 5) / 6 : 1, base = nr / nt, extra = nr % nt; /* tiles: extra of base + 1, then base */
    const bool pack = base + (extra > 0) >= 5; /* a tile of 5 or 6 rows: x through xc */
    int k0 = 0;
    do { /* once with K = 0: part = 0, the cell update of gx */
        const int kn = K - k0 < BEFORE_KC ? K - k0 : BEFORE_KC;
        if (pack) before_copy_chunk(nr, kn, x, ldx, k0, xc);
        if (k0 + kn == K)
            for (int b = 0; b < nr; b++) {
                before_prefetch_gx(gx + (size_t)b * ldgx + j0, H);
                before_prefetch_gx(gx + (size_t)b * ldgx + j0 + 8, H);
            }
        /* the lines to fetch during this chunk: the next chunk's, past the panel's end the next one's
         * (next, next_lines), shared in order among the tile passes */
        int lines;
        const char *pf = before_chunk_lines(p, K, next, next_lines, k0 / BEFORE_KC + 1, &lines);
        const int passes = (4 / ng) * nt;
        for (int g0 = 0, i = 0; g0 < 4; g0 += ng)
            for (int t = 0, b = 0; t < nt; t++, i++) {
                const int n = base + (t < extra);
                const int l0 = lines * i / passes, l1 = lines * (i + 1) / passes;
                const float *xt = pack ? xc + b * BEFORE_KC : x + (size_t)b * ldx + k0;
                before_gate_tile_n(n, ng, pf + (size_t)l0 * 64, l1 - l0, k0, kn, g0, p, xt, pack ? (size_t)BEFORE_KC : (size_t)ldx,
                            part + b * BEFORE_PART_STRIDE);
                b += n;
            }
        k0 += kn;
    } while (k0 < K);
    for (int hf = 0; hf < 2; hf++) {
        const int n = before_half_count(H, j0, hf);
        if (n == 0) break;
        const int j = j0 + 8 * hf;
        for (int b = 0; b < nr; b++) {
            const float *pb = part + b * BEFORE_PART_STRIDE + 8 * hf;
            before_cell_store(_mm256_loadu_ps(pb), _mm256_loadu_ps(pb + 16), _mm256_loadu_ps(pb + 32), _mm256_loadu_ps(pb + 48),
                       gx + (size_t)b * ldgx + j, H, c + (size_t)b * H + j, h + (size_t)b * ldh + j, n);
        }
    }
}

static void before_gate_cell_avx2(int blk0, int blk1, int H, int K, int B, const float *restrict pw,
                           const float *restrict x, int ldx, const float *restrict gx, int ldgx,
                           float *restrict c, float *restrict h, int ldh) {
    float part[BEFORE_ROWS_PER_GROUP * BEFORE_PART_STRIDE]; /* (rows, 4 gates, 16 units) sums of a group */
    _Alignas(32) float xc[BEFORE_ROWS_PER_GROUP * BEFORE_KC]; /* (rows, BEFORE_KC): a group's x over one K chunk */
    for (int blk = blk0; blk < blk1; blk++) {
        const float *p = pw + (size_t)blk * K * 64;
        const int j0 = blk * 16;
        for (int r0 = 0; r0 < B; r0 += BEFORE_ROWS_PER_GROUP) {
            const int nr = B - r0 < BEFORE_ROWS_PER_GROUP ? B - r0 : BEFORE_ROWS_PER_GROUP;
            /* next panel to stream in: this block's again for a further row group, else the next block's */
            const bool more = r0 + BEFORE_ROWS_PER_GROUP < B;
            const int next_lines = more || blk + 1 < blk1 ? 4 * K : 0;
            before_gate_group(nr, j0, H, K, p, x + (size_t)r0 * ldx, ldx, gx + (size_t)r0 * ldgx, ldgx, c + (size_t)r0 * H,
                       h + (size_t)r0 * ldh, ldh, part, xc, more ? p : p + (size_t)K * 64, next_lines);
        }
    }
}

#undef INL
#pragma GCC pop_options

#endif
