/* AVX2 + FMA kernels (this file alone is compiled with -mavx2 -mfma; dispatch.c only hands it
 * out when the CPU has both). Scalar references: ref.c.
 *
 * exp is the Cephes expf scheme: x = n ln2 + r with n = round(x / ln2), |r| <= ln2/2, the
 * constant ln2 split in two (hi part exact in float) so r is exact, a degree-7 polynomial for
 * e^r and 2^n built in the exponent bits; ~1 ulp on the clamped range. Inputs are clamped to
 * [EXP_LO, EXP_HI] first (NaN passes through as NaN), so 2^n stays a normal float and nothing overflows: sigmoid(+-100)
 * gives 1 and ~6e-39 (libm: 1 and 0), tanh(+-100) gives +-1. tanh |x| = -m / (2 + m) with m =
 * e^{-2|x|} - 1 from the same reduction (exact near 0, so no cancellation there).
 * Measured against double libm (test_kernels, test_nonlinearity_ulp): sigmoid <= 2.6 ulp on
 * [-20, 20], tanh <= 2.5 ulp on [-10, 10]; glibc's float versions in ref.c: 1.9 and 1.8.
 * One set of these nonlinearities serves every kernel here.
 *
 * Kernels (layouts in kernels.h): lstm_cell; gate_cell / cp_gate_cell (a 16-unit block is two ymm
 * halves per gate); proj; gemm_pk (packed input projection, bias fused: the session's W_ih is
 * packed once, where OpenBLAS would pack it again on every call) is in avx2_pk.c. No gemm_nt: OpenBLAS does
 * unpacked projections at this level. */
#include "avx2_util.h"
#include "kernels.h"

#include <immintrin.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>


#define EXP_HI 88.0f    /* e^88 = 1.65e38 < FLT_MAX even times the polynomial's 1.42 */
#define EXP_LO -87.3f   /* n >= -126: 2^n is normal */

/* e^{-s x} (m1 false) or e^{-s x} - 1 (m1 true) for s = 1 (sigmoid's e^-x) or s = 2 (tanh's
 * e^{-2|x|} - 1, x >= 0 or NaN): avx512.c's scheme (the cell update is bound by these chains' latency
 * and uops: docs/kernels_avx512.md, "Cell update"): -s folded into the range reduction, n =
 * round(-s x / ln2) by adding 1.5 2^23 (the sum's ulp is 1; its low mantissa bits are n, from which
 * 2^n's exponent field comes without a vcvtps2dq) and subtracting it again, the polynomial by Estrin;
 * e^x = 2^n (1 + r + r^2 P(r)), e^x - 1 = 2^n (r + r^2 P(r)) + (2^n - 1). Clamps: -s x in [EXP_LO,
 * EXP_HI], one-sided for s = 2. */
INL __m256 exp8s(__m256 x, const int s, const bool m1) {
    // Clamp with x as the second operand of each: min/max return the second operand when either is
    // NaN, so a NaN input stays NaN (as in ref.c) instead of being clamped to a finite value.
    if (s == 1) x = _mm256_min_ps(_mm256_set1_ps(-EXP_LO), _mm256_max_ps(_mm256_set1_ps(-EXP_HI), x));
    else x = _mm256_min_ps(_mm256_set1_ps(-EXP_LO / 2), x);
    const __m256 magic = _mm256_set1_ps(12582912.0f);  // 1.5 2^23
    __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(-(float)s * 1.44269504088896341f), magic);
    __m256 n = _mm256_sub_ps(t, magic);
    // r = -s x - n ln2, with ln2 = 0.693359375 - 2.12194440e-4 (first part exact in 10 bits)
    __m256 r = _mm256_fnmsub_ps(n, _mm256_set1_ps(0.693359375f), s == 1 ? x : _mm256_add_ps(x, x));
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 r2 = _mm256_mul_ps(r, r);
    __m256 p45 = _mm256_fmadd_ps(_mm256_set1_ps(1.9875691500e-4f), r, _mm256_set1_ps(1.3981999507e-3f));
    __m256 p23 = _mm256_fmadd_ps(_mm256_set1_ps(8.3334519073e-3f), r, _mm256_set1_ps(4.1665795894e-2f));
    __m256 p01 = _mm256_fmadd_ps(_mm256_set1_ps(1.6666665459e-1f), r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 p = _mm256_fmadd_ps(_mm256_fmadd_ps(p45, r2, p23), r2, p01);
    // 2^n from the exponent field: t's bits are those of 1.5 2^23 plus n, whose low 9 bits are 0
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 e = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(127)), 23));
    if (!m1) return _mm256_mul_ps(_mm256_fmadd_ps(p, r2, _mm256_add_ps(r, one)), e);
    return _mm256_fmadd_ps(_mm256_fmadd_ps(p, r2, r), e, _mm256_sub_ps(e, one));
}

/* 1 / d stays a vdivps: vrcp14ps (avx512.c) and here vrcpps, each + a Newton step, measured slower
 * on the Intel Xeon (docs/kernels_avx512.md, "Cell update"); vrcpps is also only good to 12 bits
 * and differs between vendors. */
INL __m256 sigmoid8(__m256 x) {
    __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, exp8s(x, 1, false)));
}

/* tanh |x| = -m / (2 + m), m = e^{-2|x|} - 1 in (-1, 0] (no cancellation near 0: m is exact there),
 * then x's sign. */
INL __m256 tanh8(__m256 x) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = exp8s(_mm256_andnot_ps(sign, x), 2, true);
    __m256 q = _mm256_div_ps(m, _mm256_add_ps(m, _mm256_set1_ps(2.0f)));
    return _mm256_or_ps(_mm256_andnot_ps(sign, q), _mm256_and_ps(sign, x));
}

/* One vector of 8 units: c = f c + i g; h = o tanh(c). */
INL void cell8(__m256 gi, __m256 gf, __m256 gg, __m256 go, __m256 *c, __m256 *h) {
    __m256 i = sigmoid8(gi), f = sigmoid8(gf), g = tanh8(gg), o = sigmoid8(go);
    __m256 cn = _mm256_fmadd_ps(f, *c, _mm256_mul_ps(i, g));
    *c = cn;
    *h = _mm256_mul_ps(o, tanh8(cn));
}

static void lstm_cell_avx2(int batch, int H, const float *restrict gates, int ldg, float *restrict c,
                           int ldc, float *restrict h, int ldh) {
    for (int b = 0; b < batch; b++) {
        const float *g = gates + (size_t)b * ldg;  // g: (4H) = i | f | g | o
        float *cb = c + (size_t)b * ldc;
        float *hb = h + (size_t)b * ldh;
        int j = 0;
        for (; j + 8 <= H; j += 8) {
            __m256 cv = _mm256_loadu_ps(cb + j), hv;
            cell8(_mm256_loadu_ps(g + j), _mm256_loadu_ps(g + H + j), _mm256_loadu_ps(g + 2 * H + j),
                  _mm256_loadu_ps(g + 3 * H + j), &cv, &hv);
            _mm256_storeu_ps(cb + j, cv);
            _mm256_storeu_ps(hb + j, hv);
        }
        if (j < H) {  // remainder of 1..7 units: masked lanes are neither read nor written
            __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(H - j), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            __m256 cv = _mm256_maskload_ps(cb + j, m), hv;
            cell8(_mm256_maskload_ps(g + j, m), _mm256_maskload_ps(g + H + j, m),
                  _mm256_maskload_ps(g + 2 * H + j, m), _mm256_maskload_ps(g + 3 * H + j, m), &cv, &hv);
            _mm256_maskstore_ps(cb + j, m, cv);
            _mm256_maskstore_ps(hb + j, m, hv);
        }
    }
}

/* Cell update of 8 units; gx, c, h point at the first unit, of which n (1..8) are valid. A full
 * vector uses plain loads and stores: a masked store costs ~10 cycles on Zen 3. */
INL void cell_store(__m256 ai, __m256 af, __m256 ag, __m256 ao, const float *gx, int H, float *c,
                    float *h, int n) {
    if (n == 8) {
        ai = _mm256_add_ps(ai, _mm256_loadu_ps(gx));
        af = _mm256_add_ps(af, _mm256_loadu_ps(gx + H));
        ag = _mm256_add_ps(ag, _mm256_loadu_ps(gx + 2 * (size_t)H));
        ao = _mm256_add_ps(ao, _mm256_loadu_ps(gx + 3 * (size_t)H));
        __m256 cn = _mm256_fmadd_ps(sigmoid8(af), _mm256_loadu_ps(c), _mm256_mul_ps(sigmoid8(ai), tanh8(ag)));
        _mm256_storeu_ps(c, cn);
        _mm256_storeu_ps(h, _mm256_mul_ps(sigmoid8(ao), tanh8(cn)));
        return;
    }
    const __m256i m = tail_mask(n);
    ai = _mm256_add_ps(ai, _mm256_maskload_ps(gx, m));
    af = _mm256_add_ps(af, _mm256_maskload_ps(gx + H, m));
    ag = _mm256_add_ps(ag, _mm256_maskload_ps(gx + 2 * (size_t)H, m));
    ao = _mm256_add_ps(ao, _mm256_maskload_ps(gx + 3 * (size_t)H, m));
    __m256 cn = _mm256_fmadd_ps(sigmoid8(af), _mm256_maskload_ps(c, m),
                                _mm256_mul_ps(sigmoid8(ai), tanh8(ag)));
    _mm256_maskstore_ps(c, m, cn);
    _mm256_maskstore_ps(h, m, _mm256_mul_ps(sigmoid8(ao), tanh8(cn)));
}

/* Valid units of half `hf` (0, 1) of the block at j0: 0..8. */
INL int half_count(int H, int j0, int hf) {
    int n = H - j0 - 8 * hf;
    return n < 0 ? 0 : n > 8 ? 8 : n;
}

/* Prefetch 8 gate pre-activations per gate of one row at gx (first and last lane), before a tile's
 * K loop, so the epilogue's gx loads (a session's (T, B, 4H) buffer, out of cache) do not stall. */
INL void prefetch_gx(const float *gx, int H) {
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) {
        _mm_prefetch((const char *)(gx + (size_t)g * H), _MM_HINT_T0);
        _mm_prefetch((const char *)(gx + (size_t)g * H + 7), _MM_HINT_T0);
    }
}

/* ------------------------------------------------------------ dense / SVD-U gate panel */

/* Batch 1 uses each weight once, for one FMA lane, so a step runs at the rate the panel streams from
 * DRAM or L3, and one sequential stream does not get that rate: the hardware prefetchers stop at
 * every 4 KB page and keep too few lines in flight (a plain read of 36 MB on a Zen 3 VM: ~7 GB/s as one
 * stream, ~11 as four). So a block's K is read as B1_STREAMS segments side by side (k = s L + i for
 * s = 0..3, L = K / 4; the last K % 4 k after), all into one set of 8 accumulators: four sequential
 * streams, of which at least three are past a page start at any time. Below K = B1_SPLIT_MIN_K (a
 * block under 32 KB: SVD's U panel at a small rank, an L2 / L3-resident panel) the block is one stream,
 * the single-stream loop (the tail loop, from k = 0): there 4 segments of < 32 k measured 7-13% slower
 * (K 32, 64: 0.87-0.93x), at K 128 equal to 1.14x, at 192 1.27x.
 * Measured on a shared 2-core Zen 3 VM against one stream (8 loads + 8 FMAs per k, nothing else
 * changed), medians of alternating runs, 1 thread unless said:
 *   bench_kernel_rates --cold --B 1   H 1500 (36 MB, DRAM): 4.1-5.0 -> 2.7-3.4 ms (8.3 -> 11.2 GB/s)
 *                                     H 650 (6.8 MB): cold 0.95-1.12 -> 0.61-0.86 ms, warm (L3)
 *                                     155-166 -> 125-132 us (~43 -> ~53 GB/s; a copy of this loop
 *                                     tops out near 62-66 GB/s from L3 with any stream count)
 *   fastlstm bench --batch 1 --seq 35  2x1500: 9305 -> 7330 us per step; 2 threads 5442 -> 3876;
 *                                     2x650: 669 -> 555 us (2 threads: 396 -> 379, noise)
 * What lost (a copy of this loop, two layers' panels): 2 streams (~0.9x of 4), 3 (equal), 5-8 (0.75-
 * 0.9x); two k per stream per turn (equal); software prefetch 256 B - 4 KB ahead in one stream (T0, T1,
 * NTA: within +-5% of none) or in the four (T0 at 256 B equal, further or T1 / NTA 0.65-0.9x);
 * prefetching the next block's segment starts near a block's end (equal). The summation order differs
 * from a single pass over k (and from the B > 1 tiles) by float rounding, within the reference's
 * tolerance; it depends on K alone, not on the block range a thread runs. */
enum { B1_STREAMS = 4, B1_SPLIT_MIN_K = 128 };

static void gate_cell_b1(int blk0, int blk1, int H, int K, const float *restrict pw,
                         const float *restrict x, const float *restrict gx, float *restrict c,
                         float *restrict h) {
    const int L = K >= B1_SPLIT_MIN_K ? K / B1_STREAMS : 0; // k per stream; 0: one stream
    for (int blk = blk0; blk < blk1; blk++) {
        const float *p = pw + (size_t)blk * K * 64; // p: (K, 4, 16)
        prefetch_gx(gx + blk * 16, H);
        prefetch_gx(gx + blk * 16 + 8, H);
        __m256 a[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) a[i] = _mm256_setzero_ps();
        for (int k = 0; k < L; k++) {
#pragma GCC unroll 4
            for (int s = 0; s < B1_STREAMS; s++) {
                const int kk = s * L + k;
                const float *q = p + (size_t)kk * 64;
                __m256 xv = _mm256_set1_ps(x[kk]);
#pragma GCC unroll 8
                for (int i = 0; i < 8; i++) a[i] = _mm256_fmadd_ps(_mm256_load_ps(q + 8 * i), xv, a[i]);
            }
        }
        for (int k = B1_STREAMS * L; k < K; k++) {
            const float *q = p + (size_t)k * 64;
            __m256 xv = _mm256_set1_ps(x[k]);
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) a[i] = _mm256_fmadd_ps(_mm256_load_ps(q + 8 * i), xv, a[i]);
        }
        const int j0 = blk * 16;
        for (int hf = 0; hf < 2; hf++) {
            int n = half_count(H, j0, hf);
            if (n == 0) break;
            const int j = j0 + 8 * hf;
            cell_store(a[hf], a[2 + hf], a[4 + hf], a[6 + hf], gx + j, H, c + j, h + j, n);
        }
    }
}

/* Batches above 1 run in K chunks of KC so that a block's weights for one chunk (KC x 256 bytes)
 * stay in L1 while every row tile of the batch reads them. A tile is NR rows x NG gates x 16 units
 * (one 64-byte panel line per gate and k): 2 NG aligned loads and NR broadcasts per 2 NR NG FMAs, at
 * NR = 5 or 6, NG = 1 7-8 loads per 10-12 FMAs (4 gates x 8 units x 3 rows needed 17 registers: ~60%
 * of the FMA peak in L1 against ~80%). The gates of a row meet in `part` (rows, 4, 16), which carries
 * the sums from chunk to chunk; each sum still runs k = 0 .. K-1 through one FMA chain, so results
 * depend on K alone. Rows go in groups of at most ROWS_PER_GROUP, cut into tiles of 3 to 6 rows as
 * even as possible (20: 5 + 5 + 5 + 5); groups of 2 or 3 rows run 2 gates per tile, a lone row 4.
 * While a chunk runs, its tile passes prefetch (to L1) the next chunk's lines in address order, the
 * order the hardware prefetchers follow, an even share each spread over its k steps (after a block's
 * last chunk: the next block's first). Groups with a 5- or 6-row tile copy each chunk's x rows into
 * xc (rows, KC) and check the prefetch count once per 4 k (broadcast from x, rows ldx apart, the
 * compiler kept the row strides on the stack); tiles of at most 4 rows read x and check every k.
 * KC = 64 (kern15; was 32): half the tile passes. Chunks of even length, multiples of 4 (K 650: 10 x
 * 60 + 50, not 10 x 64 + 10, whose 10-k last chunk had to fetch the next block's 64-k first one):
 * against 10 x 64 + 10, 16-24 pairs, --cold H 650 B 4 x0.92-0.97, B 8 x0.94, elsewhere x0.97-1.03
 * (noise). perf of bench_gate_ab at 32, H 650 B 20: ~30% of the time outside the 4-k loop (tile
 * entry and exit, each with 20 part loads and stores, ~9%; gate_group ~17%: the cell update about
 * half, a call, two idivs and the prefetch set-up per pass); a 5-row tile over an L1-resident chunk
 * runs at 76-82 GFLOP/s (peak ~92), so at H 650 most of the rest is the panel streaming from L3 /
 * DRAM. perf at 64, H 650 B 20: the 5-row 4-k loop 77% of the samples (6% on its prefetch issue),
 * the cell update 8%, tile entry and exit, copy and set-up the rest; without the prefetches x1.3-1.6
 * slower (the hardware prefetchers do not keep up here).
 * bench_gate_ab, before = this code at c497d3e (KC 32), x = median time ratio after / before over 16
 * ABBA pairs in one process, shared 2-core Zen 3 at load 3-5 (GFLOP/s 50-70% of an idle machine's):
 * warm H 128 B 4 / 8 / 20 / 32 x0.92 / 0.91 / 0.91 / 0.95, H 256 x0.88 / 0.86 / 0.92 / 0.92, H 650
 * x0.89 / 0.88 / 0.91 / 0.95 (B 20 47.7 -> 52.1 GFLOP/s), H 1000 x1.00 / 0.89 / 0.90 / 0.96; --cold
 * H 128 x1.04-1.06 (32 pairs, quartiles 0.89-1.18) / 0.93 / 0.99-1.05 / 1.01, H 256 x1.01 / 0.95 /
 * 0.98 / 0.98, H 650 x1.04-1.07 / 0.87 / 1.01 / 0.97, H 1000 x0.99 / 0.86 / 0.94 / 0.97 (10 x 64 +
 * 10 chunks at H 650; the even chunks, H 650 B 20, 48 pairs: warm x0.92-0.93, 45-47 -> 49-50
 * GFLOP/s; --cold x0.96-0.98; B 4 / 8 / 32 warm x0.98 / 0.91 / 0.90, cold x0.95 / 0.81 / 0.93).
 * Session 2x650 --batch 20 --seq 35 against a c497d3e build, 6 ABBA pairs: load 4-5.5 (10 x 64 + 10
 * chunks), 1 thread x0.96 (pair ratios 0.52-1.20), 2 threads x0.98 (0.89-1.09); load ~1-1.5 (even
 * chunks), 1 thread 5066 -> 4841 us per step x0.96 (0.77-1.10), 2 threads 2754 -> 2618 us x0.95
 * (0.80-1.12): under what this machine can resolve (~10%). Known cost: at B = 4 with the panel in
 * DRAM ~15% slower than the 3-row x 4-gate tiles were (faster in L2/L3); there KC 64 with 10 x 64 +
 * 10 chunks cost ~5% more, the even chunks x0.95 against 32 (16 pairs, quartiles 0.86-1.08).
 * Lost (x: after / before, bench_gate_ab unless named; kern15's against KC 64, 16 pairs):
 * - KC 48: x1.01-1.08 (B 4 x1.4); KC 96 / 128: against 32 x0.85-0.95, no better than 64.
 * - Prefetching in the order the passes read (each gate's lines, 256 bytes apart) one gate group
 *   ahead, against 32: x0.94-1.21 (B 4 x1.2; KC 64 alone x0.87-0.90); that into L1 with the
 *   address-order chunk stream into L2, against 32: x0.99-1.22;
 *   a second address-order stream two chunks ahead into L2: warm x1.06-1.28, cold x0.92-1.09 (kern11:
 *   four chunks ahead, session ~5% slower; 2-8 chunks ahead: no faster). The chunk stream to L2 only
 *   (_MM_HINT_T1): x0.85-0.98 against 32, as T0. All of a chunk's prefetches from its first tile: ~30%
 *   of a session's gate_cell time on that tile's loads (more misses at once than the L1 tracks).
 * - Passes tile by tile (the 4 gates of a tile, then the next tile) instead of gate by gate: x1.01-1.04.
 * - Prefetching c and h with gx before the cell update: x0.86-1.07, no change.
 * - 7-row tiles (20 = 7 + 7 + 6, 14 accumulators): the compiler spilled accumulators to the stack.
 * - Tiles over the whole K, the panel in L2: ~0.9 on an L2-sized panel, ~1.2 at H 650 (bursty reads).
 * - Batch 1's 4 K segments visited round-robin: bench_kernel_rates H 650 B 20 warm x0.76, cold x0.96,
 *   B 4 x1.06, B 32 x0.93, H 1500 x1.09 / cold 1.14, session 2x650 x1.11 (1 thread) / 1.03 (2);
 *   chunks of 4 pieces of 8 k from the 4 segments: x1.16-1.32 everywhere.
 * - kern13: the product through gemm_pk_avx2 (--pk, 24-32 pairs): B 20 warm x0.88-1.09, cold
 *   x1.08-1.14; B 32 x0.86-1.12; B 4 x0.95-1.13; B 8 x0.77-1.04 (pk_tile's 5-row loop reloads the row
 *   strides from the stack every k). */
enum { KC = 64, ROWS_PER_GROUP = 36, PART_STRIDE = 64 /* floats per row of part: (4 gates, 16 units) */ };

/* One k of a tile: acc[b][g] += W[k, gate g0 + g, 16 units] x[b, k]; q the k's panel line (at gate
 * g0), xk = &x[0, k], row b at xk + b KC (NR >= 5: the chunk's copy, one pointer and constant offsets)
 * or xk + b xs. */
INL void gate_step(const int NR, const int NG, const float *restrict q, const float *restrict xk, size_t xs,
                   __m256 acc[6][4][2]) {
    __m256 w[4][2];
#pragma GCC unroll 4
    for (int g = 0; g < NG; g++) {
        w[g][0] = _mm256_load_ps(q + 16 * g);
        w[g][1] = _mm256_load_ps(q + 16 * g + 8);
    }
#pragma GCC unroll 6
    for (int b = 0; b < NR; b++) {
        const __m256 xv = _mm256_broadcast_ss(xk + (NR >= 5 ? (size_t)b * KC : b * xs));
#pragma GCC unroll 4
        for (int g = 0; g < NG; g++) {
            acc[b][g][0] = _mm256_fmadd_ps(w[g][0], xv, acc[b][g][0]);
            acc[b][g][1] = _mm256_fmadd_ps(w[g][1], xv, acc[b][g][1]);
        }
    }
}

/* NR rows x NG gates from g0 x 16 units over k in [k0, k0 + kn): accumulators from part (row b at
 * part + b PART_STRIDE), zero when k0 == 0, and back into part. p: the block's panel (K, 4, 16); xt:
 * the tile's x from k0 on, rows xs floats apart (NR >= 5: the chunk's copy, xs = KC). Prefetches npf
 * lines from pf (to L1), spread evenly over the kn steps: after step k, floor((k + 1) npf / kn). */
INL void gate_tile(const int NR, const int NG, const char *pf, int npf, int k0, int kn, int g0, const float *restrict p,
                   const float *restrict xt, size_t xs, float *restrict part) {
    __m256 acc[6][4][2];
#pragma GCC unroll 6
    for (int b = 0; b < NR; b++)
#pragma GCC unroll 4
        for (int g = 0; g < NG; g++)
#pragma GCC unroll 2
            for (int hf = 0; hf < 2; hf++)
                acc[b][g][hf] = k0 == 0 ? _mm256_setzero_ps()
                                        : _mm256_loadu_ps(part + b * PART_STRIDE + (g0 + g) * 16 + 8 * hf);
    const float *q = p + (size_t)k0 * 64 + 16 * g0, *xk = xt;
    int k = 0, due = 0;
    if (NR >= 5) { /* the prefetch count checked once per 4 k */
        for (; k + 4 <= kn; k += 4, q += 256, xk += 4) {
            for (due += 4 * npf; due >= kn; due -= kn, pf += 64) _mm_prefetch(pf, _MM_HINT_T0);
#pragma GCC unroll 4
            for (int u = 0; u < 4; u++) gate_step(NR, NG, q + 64 * u, xk + u, xs, acc);
        }
    }
    for (; k < kn; k++, q += 64, xk++) {
        for (due += npf; due >= kn; due -= kn, pf += 64) _mm_prefetch(pf, _MM_HINT_T0);
        gate_step(NR, NG, q, xk, xs, acc);
    }
#pragma GCC unroll 6
    for (int b = 0; b < NR; b++)
#pragma GCC unroll 4
        for (int g = 0; g < NG; g++)
#pragma GCC unroll 2
            for (int hf = 0; hf < 2; hf++) _mm256_storeu_ps(part + b * PART_STRIDE + (g0 + g) * 16 + 8 * hf, acc[b][g][hf]);
}

/* A tile of nr (1..6) rows and ng (1, 2, 4) gates: the dispatch to constant shapes (the
 * shapes the row split of gate_group produces). */
static inline void gate_tile_n(int nr, int ng, const char *pf, int npf, int k0, int kn, int g0, const float *restrict p,
                               const float *restrict xt, size_t xs, float *restrict part) {
    if (ng == 1) {
        switch (nr) {
        case 6: gate_tile(6, 1, pf, npf, k0, kn, g0, p, xt, xs, part); return;
        case 5: gate_tile(5, 1, pf, npf, k0, kn, g0, p, xt, xs, part); return;
        case 4: gate_tile(4, 1, pf, npf, k0, kn, g0, p, xt, xs, part); return;
        default: gate_tile(3, 1, pf, npf, k0, kn, g0, p, xt, xs, part); return;
        }
    }
    if (ng == 2) {
        if (nr == 3) gate_tile(3, 2, pf, npf, k0, kn, g0, p, xt, xs, part);
        else gate_tile(2, 2, pf, npf, k0, kn, g0, p, xt, xs, part);
        return;
    }
    gate_tile(1, 4, pf, npf, k0, kn, 0, p, xt, xs, part);
}

/* xc (nr, KC) = x[0:nr, k0:k0 + kn] (rows ldx apart), kn <= KC: the rows of one K chunk at a
 * stride known when compiling, for tiles of 5 and 6 rows. */
INL void copy_chunk(int nr, int kn, const float *restrict x, int ldx, int k0, float *restrict xc) {
    for (int b = 0; b < nr; b++) {
        const float *xb = x + (size_t)b * ldx + k0;
        float *o = xc + b * KC;
        int i = 0;
        for (; i + 8 <= kn; i += 8) _mm256_store_ps(o + i, _mm256_loadu_ps(xb + i));
        for (; i < kn; i++) o[i] = xb[i];
    }
}

/* The lines of chunk `ci` (kc k each) of the panel p (K, 4, 16), chunks counted on past its end into
 * the next panel to stream in (next, next_lines lines of 64 bytes): its first line, and their number
 * in *lines. */
static inline const char *chunk_lines(const float *p, int K, int kc, const float *next, int next_lines, int ci,
                                      int *lines) {
    const int nc = (K + kc - 1) / kc;
    if (ci < nc) {
        *lines = 4 * (K - ci * kc < kc ? K - ci * kc : kc);
        return (const char *)(p + (size_t)ci * kc * 64);
    }
    const int off = 4 * kc * (ci - nc), n = next_lines - off < 4 * kc ? next_lines - off : 4 * kc;
    *lines = n < 0 ? 0 : n;
    return (const char *)next + (size_t)(n < 0 ? 0 : off) * 64;
}

/* Rows [0, nr) of one block (nr <= ROWS_PER_GROUP): every K chunk through the row tiles into part,
 * then the cell update of the block's units from part and gx. next: the panel to stream in after
 * this one (next_lines lines of it; 0: none). */
static void gate_group(int nr, int j0, int H, int K, const float *restrict p, const float *restrict x, int ldx,
                       const float *restrict gx, int ldgx, float *restrict c, float *restrict h, int ldh,
                       float *restrict part, float *restrict xc, const float *next, int next_lines) {
    const int ng = nr >= 4 ? 1 : nr >= 2 ? 2 : 4;
    const int nt = ng == 1 ? (nr + 5) / 6 : 1, base = nr / nt, extra = nr % nt; /* tiles: extra of base + 1, then base */
    const bool pack = base + (extra > 0) >= 5; /* a tile of 5 or 6 rows: x through xc */
    const int nc = (K + KC - 1) / KC, kc = nc > 1 ? ((K + nc - 1) / nc + 3) & ~3 : KC; /* chunks of even length */
    int k0 = 0;
    do { /* once with K = 0: part = 0, the cell update of gx */
        const int kn = K - k0 < kc ? K - k0 : kc;
        if (pack) copy_chunk(nr, kn, x, ldx, k0, xc);
        if (k0 + kn == K)
            for (int b = 0; b < nr; b++) {
                prefetch_gx(gx + (size_t)b * ldgx + j0, H);
                prefetch_gx(gx + (size_t)b * ldgx + j0 + 8, H);
            }
        /* the lines to fetch during this chunk: the next chunk's, past the panel's end the next one's
         * (next, next_lines), shared in order among the tile passes */
        int lines;
        const char *pf = chunk_lines(p, K, kc, next, next_lines, k0 / kc + 1, &lines);
        const int passes = (4 / ng) * nt;
        for (int g0 = 0, i = 0; g0 < 4; g0 += ng)
            for (int t = 0, b = 0; t < nt; t++, i++) {
                const int n = base + (t < extra);
                const int l0 = lines * i / passes, l1 = lines * (i + 1) / passes;
                const float *xt = pack ? xc + b * KC : x + (size_t)b * ldx + k0;
                gate_tile_n(n, ng, pf + (size_t)l0 * 64, l1 - l0, k0, kn, g0, p, xt, pack ? (size_t)KC : (size_t)ldx,
                            part + b * PART_STRIDE);
                b += n;
            }
        k0 += kn;
    } while (k0 < K);
    for (int hf = 0; hf < 2; hf++) {
        const int n = half_count(H, j0, hf);
        if (n == 0) break;
        const int j = j0 + 8 * hf;
        for (int b = 0; b < nr; b++) {
            const float *pb = part + b * PART_STRIDE + 8 * hf;
            cell_store(_mm256_loadu_ps(pb), _mm256_loadu_ps(pb + 16), _mm256_loadu_ps(pb + 32), _mm256_loadu_ps(pb + 48),
                       gx + (size_t)b * ldgx + j, H, c + (size_t)b * H + j, h + (size_t)b * ldh + j, n);
        }
    }
}

static void gate_cell_avx2(int blk0, int blk1, int H, int K, int B, const float *restrict pw,
                           const float *restrict x, int ldx, const float *restrict gx, int ldgx,
                           float *restrict c, float *restrict h, int ldh) {
    if (B == 1) {
        gate_cell_b1(blk0, blk1, H, K, pw, x, gx, c, h);
        return;
    }
    float part[ROWS_PER_GROUP * PART_STRIDE]; /* (rows, 4 gates, 16 units) sums of a group */
    _Alignas(32) float xc[ROWS_PER_GROUP * KC]; /* (rows, KC): a group's x over one K chunk */
    for (int blk = blk0; blk < blk1; blk++) {
        const float *p = pw + (size_t)blk * K * 64;
        const int j0 = blk * 16;
        for (int r0 = 0; r0 < B; r0 += ROWS_PER_GROUP) {
            const int nr = B - r0 < ROWS_PER_GROUP ? B - r0 : ROWS_PER_GROUP;
            /* next panel to stream in: this block's again for a further row group, else the next block's */
            const bool more = r0 + ROWS_PER_GROUP < B;
            const int next_lines = more || blk + 1 < blk1 ? 4 * K : 0;
            gate_group(nr, j0, H, K, p, x + (size_t)r0 * ldx, ldx, gx + (size_t)r0 * ldgx, ldgx, c + (size_t)r0 * H,
                       h + (size_t)r0 * ldh, ldh, part, xc, more ? p : p + (size_t)K * 64, next_lines);
        }
    }
}

/* ------------------------------------------------------------ CP gate panel */

/* NR rows (<= 2) x 8 units x 4 gates; one weight vector per k feeds the 4 gates. */
INL void cp_tile(const int NR, int hf, int j0, int H, int K, const float *restrict p,
                 const float *restrict zs, const float *restrict gx, int ldgx, float *restrict c,
                 float *restrict h, int ldh) {
    __m256 acc[2][4];
#pragma GCC unroll 2
    for (int b = 0; b < NR; b++)
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++) acc[b][g] = _mm256_setzero_ps();
    for (int k = 0; k < K; k++) {
        __m256 w = _mm256_load_ps(p + (size_t)k * 16 + 8 * hf);
#pragma GCC unroll 2
        for (int b = 0; b < NR; b++)
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++)
                acc[b][g] = _mm256_fmadd_ps(w, _mm256_set1_ps(zs[(size_t)b * 4 * K + (size_t)g * K + k]), acc[b][g]);
    }
    const int j = j0 + 8 * hf;
    const int n = half_count(H, j0, hf);
#pragma GCC unroll 2
    for (int b = 0; b < NR; b++)
        cell_store(acc[b][0], acc[b][1], acc[b][2], acc[b][3], gx + (size_t)b * ldgx + j, H,
                   c + (size_t)b * H + j, h + (size_t)b * ldh + j, n);
}

static void cp_gate_cell_avx2(int blk0, int blk1, int H, int K, int B, const float *restrict pb,
                              const float *restrict zs, const float *restrict gx, int ldgx,
                              float *restrict c, float *restrict h, int ldh) {
    for (int blk = blk0; blk < blk1; blk++) {
        const float *p = pb + (size_t)blk * K * 16;
        const int j0 = blk * 16;
        if (B == 1) { /* both halves at once: 8 chains */
            __m256 a[2][4];
            for (int hf = 0; hf < 2; hf++)
                for (int g = 0; g < 4; g++) a[hf][g] = _mm256_setzero_ps();
            for (int k = 0; k < K; k++) {
                __m256 w0 = _mm256_load_ps(p + (size_t)k * 16), w1 = _mm256_load_ps(p + (size_t)k * 16 + 8);
#pragma GCC unroll 4
                for (int g = 0; g < 4; g++) {
                    __m256 z = _mm256_set1_ps(zs[(size_t)g * K + k]);
                    a[0][g] = _mm256_fmadd_ps(w0, z, a[0][g]);
                    a[1][g] = _mm256_fmadd_ps(w1, z, a[1][g]);
                }
            }
            for (int hf = 0; hf < 2; hf++) {
                int n = half_count(H, j0, hf);
                if (n == 0) break;
                const int j = j0 + 8 * hf;
                cell_store(a[hf][0], a[hf][1], a[hf][2], a[hf][3], gx + j, H, c + j, h + j, n);
            }
            continue;
        }
        for (int hf = 0; hf < 2 && half_count(H, j0, hf) > 0; hf++) {
            int b = 0;
            for (; b + 2 <= B; b += 2)
                cp_tile(2, hf, j0, H, K, p, zs + (size_t)b * 4 * K, gx + (size_t)b * ldgx, ldgx,
                        c + (size_t)b * H, h + (size_t)b * ldh, ldh);
            if (b < B)
                cp_tile(1, hf, j0, H, K, p, zs + (size_t)b * 4 * K, gx + (size_t)b * ldgx, ldgx,
                        c + (size_t)b * H, h + (size_t)b * ldh, ldh);
        }
    }
}

/* ------------------------------------------------------------ projection t = x m */

/* Every output t[b, r] is summed in one order whatever the batch size or the tile its row falls in:
 * a = the products of even k in increasing k, b = those of odd k, t = a + b (two FMA chains per
 * output). So a row gives the same bits alone as in a batch (test_kernels_proj). */

/* NV ymm of t (NV <= 4) for one row: m read once per row. */
INL void proj_chunk(const int NV, int K, int Rp, const float *restrict m, const float *restrict x,
                    float *restrict t) {
    __m256 a[4], b[4];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) a[v] = b[v] = _mm256_setzero_ps();
    int k = 0;
    for (; k + 1 < K; k += 2) {
        __m256 x0 = _mm256_set1_ps(x[k]), x1 = _mm256_set1_ps(x[k + 1]);
        const float *q0 = m + (size_t)k * Rp, *q1 = q0 + Rp;
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            a[v] = _mm256_fmadd_ps(_mm256_loadu_ps(q0 + 8 * v), x0, a[v]);
            b[v] = _mm256_fmadd_ps(_mm256_loadu_ps(q1 + 8 * v), x1, b[v]);
        }
    }
    if (k < K) {
        __m256 x0 = _mm256_set1_ps(x[k]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            a[v] = _mm256_fmadd_ps(_mm256_loadu_ps(m + (size_t)k * Rp + 8 * v), x0, a[v]);
    }
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) _mm256_storeu_ps(t + 8 * v, _mm256_add_ps(a[v], b[v]));
}

/* acc[i] += m's 16 columns at row k (q) x x[i][k], for NR rows of x. */
INL void proj_fma(const int NR, const float *restrict q, const float *restrict x, int ldx, int k, __m256 acc[3][2]) {
    const __m256 w0 = _mm256_loadu_ps(q), w1 = _mm256_loadu_ps(q + 8);
#pragma GCC unroll 3
    for (int i = 0; i < NR; i++) {
        const __m256 xv = _mm256_set1_ps(x[(size_t)i * ldx + k]);
        acc[i][0] = _mm256_fmadd_ps(w0, xv, acc[i][0]);
        acc[i][1] = _mm256_fmadd_ps(w1, xv, acc[i][1]);
    }
}

/* NR rows (<= 3) x 16 columns of t: per k, 2 loads of m feed 2 NR FMAs (12 accumulators at NR = 3,
 * even and odd k apart as in proj_chunk). */
INL void proj_tile(const int NR, int K, int Rp, const float *restrict m, const float *restrict x, int ldx,
                   float *restrict t, int ldt) {
    __m256 a[3][2], b[3][2];
#pragma GCC unroll 3
    for (int i = 0; i < NR; i++) a[i][0] = a[i][1] = b[i][0] = b[i][1] = _mm256_setzero_ps();
    int k = 0;
    for (; k + 1 < K; k += 2) {
        proj_fma(NR, m + (size_t)k * Rp, x, ldx, k, a);
        proj_fma(NR, m + (size_t)(k + 1) * Rp, x, ldx, k + 1, b);
    }
    if (k < K) proj_fma(NR, m + (size_t)k * Rp, x, ldx, k, a);
#pragma GCC unroll 3
    for (int i = 0; i < NR; i++) {
        _mm256_storeu_ps(t + (size_t)i * ldt, _mm256_add_ps(a[i][0], b[i][0]));
        _mm256_storeu_ps(t + (size_t)i * ldt + 8, _mm256_add_ps(a[i][1], b[i][1]));
    }
}

/* Rows of 3 (then 2) at a time, each group over all 16-column strips: m is read ceil(B / 3) times
 * instead of B. One row alone: proj_chunk, 4 ymm wide. */
static void proj_avx2(int B, int K, int Rp, const float *restrict m, const float *restrict x, int ldx,
                      float *restrict t, int ldt) {
    int b = 0;
    for (; b + 3 <= B; b += 3)
        for (int r = 0; r < Rp; r += 16) /* Rp is a multiple of 16 */
            proj_tile(3, K, Rp, m + r, x + (size_t)b * ldx, ldx, t + (size_t)b * ldt + r, ldt);
    if (B - b == 2)
        for (int r = 0; r < Rp; r += 16)
            proj_tile(2, K, Rp, m + r, x + (size_t)b * ldx, ldx, t + (size_t)b * ldt + r, ldt);
    else if (B - b == 1) {
        const float *xb = x + (size_t)b * ldx;
        float *tb = t + (size_t)b * ldt;
        int r = 0;
        for (; r + 32 <= Rp; r += 32) proj_chunk(4, K, Rp, m + r, xb, tb + r);
        if (r < Rp) proj_chunk(2, K, Rp, m + r, xb, tb + r);
    }
}

static void cp_scale_avx2(int B, int R, const float *restrict a, const float *restrict z, int ldz,
                          float *restrict zs) {
    for (int b = 0; b < B; b++) {
        const float *zb = z + (size_t)b * ldz;
        for (int g = 0; g < 4; g++) {
            const float *ag = a + (size_t)g * R;
            float *o = zs + ((size_t)b * 4 + g) * R;
            int r = 0;
            for (; r + 8 <= R; r += 8) _mm256_storeu_ps(o + r, _mm256_mul_ps(_mm256_loadu_ps(ag + r), _mm256_loadu_ps(zb + r)));
            for (; r < R; r++) o[r] = ag[r] * zb[r];
        }
    }
}

const fl_kernels fl_kernels_avx2 = {
    .name = "avx2",
    .lstm_cell = lstm_cell_avx2,
    .gate_cell = gate_cell_avx2,
    .cp_gate_cell = cp_gate_cell_avx2,
    .cp_scale = cp_scale_avx2,
    .proj = proj_avx2,
    .gemm_pk = fl_gemm_pk_avx2,
};
