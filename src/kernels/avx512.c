/* AVX-512 kernels (this file alone is compiled with -mavx512f/vl/dq/bw; dispatch.c only hands it
 * out when the CPU has all four). Only AVX-512F intrinsics are used; the other flags merely let
 * the compiler use them. Scalar references: ref.c.
 *
 * Same maths as avx2.c (Cephes expf range reduction + polynomial, ~1 ulp; tanh |x| = -m / (2 + m),
 * m = e^{-2|x|} - 1), with 2^n applied by vscalefps and remainders by lane masks.
 * Inputs to exp are clamped to [EXP_LO, EXP_HI], so nothing overflows or turns into NaN; a NaN
 * input stays NaN, as in ref.c. One set of these nonlinearities serves every kernel here.
 *
 * Kernels (layouts in kernels.h): lstm_cell; gate_cell / cp_gate_cell (one hidden block of 16 units
 * is one zmm per gate, the block's 4 gate accumulators stay in registers through the cell update);
 * proj; gemm_nt (unpacked input projection); gemm_pk (packed input projection, bias fused). */
#include "kernels.h"

#include <immintrin.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INL static inline __attribute__((always_inline))

#define EXP_HI 88.0f
#define EXP_LO -87.3f

/* v[i] = tanh(v[i]) where bit i of tb is set, else sigmoid(v[i]), for N <= 24 vectors in lockstep:
 * each step of the maths applied to all N before the next, so that N independent chains sit side by
 * side in the instruction stream instead of one after another (gate_tile's epilogue, cell_store_n;
 * docs/kernels_avx512.md, "Cell epilogue"). sigmoid16 / tanh16 are N = 1: one copy of the maths, so
 * every kernel here gives the same bits for the same input.
 *   sigmoid x = 1 / (1 + e^{-x});  tanh x = sign(x) (-m / (2 + m)), m = e^{-2|x|} - 1 in (-1, 0] (no
 *   cancellation near 0: m is exact there; the sign by vpternlogd, from x into the quotient).
 *   e^{-s y} (s = 1, y = x) and e^{-s y} - 1 (s = 2, y = |x|): with -s y = n ln2 + r,
 *   e = 2^n (1 + r + r^2 P(r)), e - 1 = 2^n (r + r^2 P(r)) + (2^n - 1). -s is folded into the range
 *   reduction, n = round(-s y / ln2) by adding and subtracting 1.5 2^23 (one fmadd and a sub where
 *   vmulps + vrndscaleps took 12 cycles), P by Estrin (3 dependent fmadds instead of 5). Clamps: -s y
 *   in [EXP_LO, EXP_HI], one-sided for s = 2; min / max take x second, so NaN stays NaN.
 * The cell update is bound by the latency of these chains and by the uops on the two vector ports,
 * not by the divider (docs/kernels_avx512.md, "Cell update"): 1 / d stays a vdivps (vrcp14ps + a
 * Newton step measured slower here: more uops on the same two ports). */
INL void act_n(const int N, __m512 *v, const uint32_t tb) {
    __m512 x[24], n[24], r[24], r2[24], p[24];
    const __m512 one = _mm512_set1_ps(1.0f), magic = _mm512_set1_ps(12582912.0f);
#define EACH _Pragma("GCC unroll 24") for (int i = 0; i < N; i++)
#define T(i) ((tb >> (i)) & 1u)
    EACH x[i] = T(i) ? _mm512_min_ps(_mm512_set1_ps(-EXP_LO / 2), _mm512_abs_ps(v[i]))
                     : _mm512_min_ps(_mm512_set1_ps(-EXP_LO), _mm512_max_ps(_mm512_set1_ps(-EXP_HI), v[i]));
    EACH n[i] = _mm512_fmadd_ps(x[i], _mm512_set1_ps((T(i) ? -2.0f : -1.0f) * 1.44269504088896341f), magic);
    EACH n[i] = _mm512_sub_ps(n[i], magic);
    EACH r[i] = _mm512_fnmsub_ps(n[i], _mm512_set1_ps(0.693359375f), T(i) ? _mm512_add_ps(x[i], x[i]) : x[i]);
    EACH r[i] = _mm512_fnmadd_ps(n[i], _mm512_set1_ps(-2.12194440e-4f), r[i]);
    EACH r2[i] = _mm512_mul_ps(r[i], r[i]);
    EACH {
        __m512 p45 = _mm512_fmadd_ps(_mm512_set1_ps(1.9875691500e-4f), r[i], _mm512_set1_ps(1.3981999507e-3f));
        __m512 p23 = _mm512_fmadd_ps(_mm512_set1_ps(8.3334519073e-3f), r[i], _mm512_set1_ps(4.1665795894e-2f));
        p[i] = _mm512_fmadd_ps(p45, r2[i], p23);
    }
    EACH p[i] = _mm512_fmadd_ps(p[i], r2[i],
                                _mm512_fmadd_ps(_mm512_set1_ps(1.6666665459e-1f), r[i], _mm512_set1_ps(5.0000001201e-1f)));
    EACH p[i] = _mm512_fmadd_ps(p[i], r2[i], T(i) ? r[i] : _mm512_add_ps(r[i], one));
    EACH {
        if (T(i)) {
            __m512 t = _mm512_scalef_ps(one, n[i]);
            p[i] = _mm512_fmadd_ps(p[i], t, _mm512_sub_ps(t, one)); // m = e^{-2|x|} - 1
        } else {
            p[i] = _mm512_scalef_ps(p[i], n[i]); // e^-x
        }
    }
    EACH p[i] = T(i) ? _mm512_div_ps(p[i], _mm512_add_ps(p[i], _mm512_set1_ps(2.0f)))
                     : _mm512_div_ps(one, _mm512_add_ps(one, p[i]));
    EACH if (T(i)) p[i] = _mm512_castsi512_ps(_mm512_ternarylogic_epi32(
        _mm512_castps_si512(p[i]), _mm512_castps_si512(v[i]), _mm512_set1_epi32(INT32_MIN), 0xD8));
    EACH v[i] = p[i];
#undef T
#undef EACH
}

INL __m512 sigmoid16(__m512 x) {
    act_n(1, &x, 0u);
    return x;
}

INL __m512 tanh16(__m512 x) {
    act_n(1, &x, 1u);
    return x;
}

static void lstm_cell_avx512(int batch, int H, const float *restrict gates, int ldg, float *restrict c,
                             int ldc, float *restrict h, int ldh) {
    for (int b = 0; b < batch; b++) {
        const float *g = gates + (size_t)b * ldg;  // g: (4H) = i | f | g | o
        float *cb = c + (size_t)b * ldc;
        float *hb = h + (size_t)b * ldh;
        for (int j = 0; j < H; j += 16) {
            // all lanes for full vectors, the first H - j lanes for the remainder
            __mmask16 m = H - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (H - j)) - 1u);
            __m512 i = sigmoid16(_mm512_maskz_loadu_ps(m, g + j));
            __m512 f = sigmoid16(_mm512_maskz_loadu_ps(m, g + H + j));
            __m512 gg = tanh16(_mm512_maskz_loadu_ps(m, g + 2 * H + j));
            __m512 o = sigmoid16(_mm512_maskz_loadu_ps(m, g + 3 * H + j));
            __m512 cn = _mm512_fmadd_ps(f, _mm512_maskz_loadu_ps(m, cb + j), _mm512_mul_ps(i, gg));
            _mm512_mask_storeu_ps(cb + j, m, cn);
            _mm512_mask_storeu_ps(hb + j, m, _mm512_mul_ps(o, tanh16(cn)));
        }
    }
}

INL __mmask16 tail_mask(int n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u); }

/* Cell update of 16 units from the W x parts of their gates; gx, c, h point at unit j0. */
INL void cell_store(__m512 ai, __m512 af, __m512 ag, __m512 ao, const float *gx, int H, float *c,
                    float *h, __mmask16 m) {
    ai = _mm512_add_ps(ai, _mm512_maskz_loadu_ps(m, gx));
    af = _mm512_add_ps(af, _mm512_maskz_loadu_ps(m, gx + H));
    ag = _mm512_add_ps(ag, _mm512_maskz_loadu_ps(m, gx + 2 * (size_t)H));
    ao = _mm512_add_ps(ao, _mm512_maskz_loadu_ps(m, gx + 3 * (size_t)H));
    __m512 cn = _mm512_fmadd_ps(sigmoid16(af), _mm512_maskz_loadu_ps(m, c),
                                _mm512_mul_ps(sigmoid16(ai), tanh16(ag)));
    _mm512_mask_storeu_ps(c, m, cn);
    _mm512_mask_storeu_ps(h, m, _mm512_mul_ps(sigmoid16(ao), tanh16(cn)));
}

/* cell_store for NR rows (NR <= 6) in lockstep (act_n): their 4 NR gate activations side by side,
 * then their NR tanh(c). a[b]: row b's W x sums i, f, g, o; gx, c, h: row 0 at unit j0. */
INL void cell_store_n(const int NR, __m512 a[][4], const float *gx, int ldgx, int H, float *c, float *h,
                      int ldh, __mmask16 m) {
    __m512 v[24], t[6];
#pragma GCC unroll 6
    for (int b = 0; b < NR; b++)
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++)
            v[4 * b + g] = _mm512_add_ps(a[b][g], _mm512_maskz_loadu_ps(m, gx + (size_t)b * ldgx + (size_t)g * H));
    act_n(4 * NR, v, 0x444444u); /* gate g (tanh) of every row */
#pragma GCC unroll 6
    for (int b = 0; b < NR; b++) {
        t[b] = _mm512_fmadd_ps(v[4 * b + 1], _mm512_maskz_loadu_ps(m, c + (size_t)b * H),
                               _mm512_mul_ps(v[4 * b], v[4 * b + 2]));
        _mm512_mask_storeu_ps(c + (size_t)b * H, m, t[b]);
    }
    act_n(NR, t, 0x3Fu);
#pragma GCC unroll 6
    for (int b = 0; b < NR; b++) _mm512_mask_storeu_ps(h + (size_t)b * ldh, m, _mm512_mul_ps(v[4 * b + 3], t[b]));
}

/* cell_store_n over NR rows, CR rows at a time (the last group may be shorter); gx, c, h: row 0. */
INL void cell_store_rows(const int NR, const int CR, __m512 a[][4], const float *gx, int ldgx, int H, float *c,
                         float *h, int ldh, __mmask16 m) {
    int b = 0;
#pragma GCC unroll 6
    for (; b + CR <= NR; b += CR)
        cell_store_n(CR, a + b, gx + (size_t)b * ldgx, ldgx, H, c + (size_t)b * H, h + (size_t)b * ldh, ldh, m);
    if (b < NR) cell_store_n(NR - b, a + b, gx + (size_t)b * ldgx, ldgx, H, c + (size_t)b * H, h + (size_t)b * ldh, ldh, m);
}

/* Prefetch the 16 gate pre-activations per gate of one row at gx (first and last lane: a row need
 * not be 64-byte aligned). Issued before a tile's K loop so that the epilogue's gx loads, which in a
 * session come from a (T, B, 4H) buffer far out of cache, do not stall. Prefetches never fault. */
INL void prefetch_gx(const float *gx, int H) {
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) {
        _mm_prefetch((const char *)(gx + (size_t)g * H), _MM_HINT_T0);
        _mm_prefetch((const char *)(gx + (size_t)g * H + 15), _MM_HINT_T0);
    }
}

/* ------------------------------------------------------------ dense / SVD-U gate panel */

/* Batch 1: a block's K read as B1_STREAMS segments side by side (k = s L + i, L = K / 4; the last
 * K % 4 k after), segments 0 and 2 into one set of 4 accumulators, 1 and 3 into another (8 FMA
 * chains): four sequential streams, as in avx2.c's gate_cell_b1, whose measurements (one stream
 * does not get the machine's read rate: the hardware prefetchers stop at every 4 KB page; below
 * K = 128 one stream is faster) are on Zen 3. Below B1_SPLIT_MIN_K the tail loop runs the whole K as
 * one stream (even / odd k into the two sets, the loop this replaced). Stream s goes into set s % 2.
 * Measured on the first AVX-512 machine (Xeon family 6 model 207, 2 vCPUs shared, 2026-12-01;
 * `bench_k512 --streams --pairs 16`, medians of interleaved samples, time / the library's 4):
 *   streams      1      2      4      8     (GB/s of the 4-stream loop)
 *   H 128      0.98   0.98   1.00   1.04    115 (L2)
 *   H 256      0.99   0.99   1.00   1.04    118 (L2)
 *   H 650      1.02   1.00   1.01   0.99     29 (L3; one core's L3 read limit ~29 GB/s)
 *   H 1000     1.03   1.01   1.00   1.00     26
 *   H 1500     1.03   1.00   1.00   1.00     28
 *   H 2000     1.03   1.00   1.01   1.00     28
 * From DRAM (`--cold 600`: a 600 MB walk before each call, one call per sample, 16 pairs):
 *   H 650      1.15   1.02   0.93   0.94    12.9 (DRAM; one core ~16 GB/s)
 *   H 1000     1.07   1.02   0.99   0.98    13.1
 *   H 1500     1.16   1.02   0.95   0.97    12.7
 *   H 2000     1.10   0.99   0.97   0.99    12.6
 * (the columns are the bench's copies of the loop; its "4" ran 1-7% faster than the library's own
 * here: placement.) So on this Intel the count hardly matters from L3 (every count reads it at its
 * limit), and from DRAM one stream takes 1.08-1.24x the time of four (same copy), eight no better;
 * on Zen 3 four streams were 1.1-1.4x faster than one (avx2.c). Four is within 1-3% of the best on
 * both machines, and stays. */
enum { B1_STREAMS = 4, B1_SPLIT_MIN_K = 128 };

INL void fma4(const float *q, __m512 xv, __m512 *a0, __m512 *a1, __m512 *a2, __m512 *a3) {
    *a0 = _mm512_fmadd_ps(_mm512_load_ps(q), xv, *a0);
    *a1 = _mm512_fmadd_ps(_mm512_load_ps(q + 16), xv, *a1);
    *a2 = _mm512_fmadd_ps(_mm512_load_ps(q + 32), xv, *a2);
    *a3 = _mm512_fmadd_ps(_mm512_load_ps(q + 48), xv, *a3);
}

/* S streams (S = 1: one stream, the tail loop from k = 0); stream s into accumulator set s % 2. */
INL void gate_cell_b1_s(const int S, int blk0, int blk1, int H, int K, const float *restrict pw,
                        const float *restrict x, const float *restrict gx, float *restrict c,
                        float *restrict h) {
    const int L = S > 1 && K >= B1_SPLIT_MIN_K ? K / S : 0; // k per stream; 0: one stream
    for (int blk = blk0; blk < blk1; blk++) {
        const float *p = pw + (size_t)blk * K * 64; // p: (K, 4, 16)
        prefetch_gx(gx + blk * 16, H);
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        __m512 b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        for (int k = 0; k < L; k++) {
#pragma GCC unroll 8
            for (int s = 0; s < S; s++) {
                const int kk = s * L + k;
                if (s & 1) fma4(p + (size_t)kk * 64, _mm512_set1_ps(x[kk]), &b0, &b1, &b2, &b3);
                else fma4(p + (size_t)kk * 64, _mm512_set1_ps(x[kk]), &a0, &a1, &a2, &a3);
            }
        }
        int k = S * L;
        for (; k + 1 < K; k += 2) { /* even / odd k into the two sets, as before the segments */
            fma4(p + (size_t)k * 64, _mm512_set1_ps(x[k]), &a0, &a1, &a2, &a3);
            fma4(p + (size_t)(k + 1) * 64, _mm512_set1_ps(x[k + 1]), &b0, &b1, &b2, &b3);
        }
        if (k < K) fma4(p + (size_t)k * 64, _mm512_set1_ps(x[k]), &a0, &a1, &a2, &a3);
        const int j0 = blk * 16;
        cell_store(_mm512_add_ps(a0, b0), _mm512_add_ps(a1, b1), _mm512_add_ps(a2, b2),
                   _mm512_add_ps(a3, b3), gx + j0, H, c + j0, h + j0, tail_mask(H - j0));
    }
}

static void gate_cell_b1(int blk0, int blk1, int H, int K, const float *restrict pw,
                         const float *restrict x, const float *restrict gx, float *restrict c,
                         float *restrict h) {
    gate_cell_b1_s(B1_STREAMS, blk0, blk1, H, K, pw, x, gx, c, h);
}

/* NR rows x 16 units x 4 gates of accumulators (NR <= 6: 24 zmm), weights loaded once per k, over
 * k in [k0, k1). first: the sums start at 0, else from part (NR rows of 64 floats); last: the cell
 * update (CR > 0: CR rows at a time in lockstep, cell_store_n; CR = 0: one row after another,
 * cell_store), else the sums go back to part. One FMA chain per sum over k = 0 .. K-1 whatever the
 * chunks, so results depend on K alone; the cell maths is the same either way. PF > 0: prefetch (T0)
 * the panel PF bytes ahead, 4 lines per k; npf > 0: prefetch npf lines per k from pf on (the next
 * chunk's share of this tile). */
INL void gate_tile(const int NR, const int PF, const int CR, int k0, int k1, bool first, bool last, const float *pf,
                   int npf, int j0, int H, const float *restrict p, const float *restrict x, int ldx,
                   float *restrict part, const float *restrict gx, int ldgx, float *restrict c,
                   float *restrict h, int ldh) {
    __m512 acc[6][4];
#pragma GCC unroll 6
    for (int b = 0; b < NR; b++)
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++) acc[b][g] = first ? _mm512_setzero_ps() : _mm512_load_ps(part + b * 64 + g * 16);
    if (last) {
#pragma GCC unroll 6
        for (int b = 0; b < NR; b++) prefetch_gx(gx + (size_t)b * ldgx + j0, H);
    }
    for (int k = k0; k < k1; k++) {
        const float *q = p + (size_t)k * 64;
        if (PF) {
#pragma GCC unroll 4
            for (int l = 0; l < 4; l++) _mm_prefetch((const char *)q + PF + 64 * l, _MM_HINT_T0);
        }
        for (int l = 0; l < npf; l++, pf += 16) _mm_prefetch((const char *)pf, _MM_HINT_T0);
        __m512 w0 = _mm512_load_ps(q), w1 = _mm512_load_ps(q + 16);
        __m512 w2 = _mm512_load_ps(q + 32), w3 = _mm512_load_ps(q + 48);
#pragma GCC unroll 6
        for (int b = 0; b < NR; b++) {
            __m512 xv = _mm512_set1_ps(x[(size_t)b * ldx + k]);
            acc[b][0] = _mm512_fmadd_ps(w0, xv, acc[b][0]);
            acc[b][1] = _mm512_fmadd_ps(w1, xv, acc[b][1]);
            acc[b][2] = _mm512_fmadd_ps(w2, xv, acc[b][2]);
            acc[b][3] = _mm512_fmadd_ps(w3, xv, acc[b][3]);
        }
    }
    if (!last) {
#pragma GCC unroll 6
        for (int b = 0; b < NR; b++)
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) _mm512_store_ps(part + b * 64 + g * 16, acc[b][g]);
        return;
    }
    const __mmask16 m = tail_mask(H - j0);
    if (CR == 0) {
#pragma GCC unroll 6
        for (int b = 0; b < NR; b++)
            cell_store(acc[b][0], acc[b][1], acc[b][2], acc[b][3], gx + (size_t)b * ldgx + j0, H,
                       c + (size_t)b * H + j0, h + (size_t)b * ldh + j0, m);
        return;
    }
    cell_store_rows(NR, CR, acc, gx + j0, ldgx, H, c + j0, h + j0, ldh, m);
}

INL void gate_tile_nr(const int PF, const int CR, int nr, int k0, int k1, bool first, bool last, const float *pf, int npf,
                      int j0, int H, const float *restrict p, const float *restrict x, int ldx,
                      float *restrict part, const float *restrict gx, int ldgx, float *restrict c,
                      float *restrict h, int ldh) {
    switch (nr) {
    case 6: gate_tile(6, PF, CR, k0, k1, first, last, pf, npf, j0, H, p, x, ldx, part, gx, ldgx, c, h, ldh); break;
    case 5: gate_tile(5, PF, CR, k0, k1, first, last, pf, npf, j0, H, p, x, ldx, part, gx, ldgx, c, h, ldh); break;
    case 4: gate_tile(4, PF, CR, k0, k1, first, last, pf, npf, j0, H, p, x, ldx, part, gx, ldgx, c, h, ldh); break;
    case 3: gate_tile(3, PF, CR, k0, k1, first, last, pf, npf, j0, H, p, x, ldx, part, gx, ldgx, c, h, ldh); break;
    case 2: gate_tile(2, PF, CR, k0, k1, first, last, pf, npf, j0, H, p, x, ldx, part, gx, ldgx, c, h, ldh); break;
    default: gate_tile(1, PF, CR, k0, k1, first, last, pf, npf, j0, H, p, x, ldx, part, gx, ldgx, c, h, ldh); break;
    }
}

enum { BN_GROUP = 36 /* rows per group: part (36, 64) floats = 9 KB */ };

/* B > 1: rows in groups of at most BN_GROUP, each cut into tiles of at most 6 rows as even as
 * possible (20 rows: 5+5+5+5, not 6+6+6+2). KC = 0: every tile over the block's whole panel (K x 256
 * bytes, L2-resident; the first tile reads it from L3), each prefetching PF bytes ahead. KC > 0: the
 * block's K in chunks of KC, every tile of the group over a chunk before the next (the first tile
 * reads it from L3 / L2, the others from L1), and while a chunk runs the tiles prefetch the next
 * chunk (contiguous: the next block's first after a block's last), each its share, so that the L3
 * stream overlaps all tiles' FMAs, not only the first's. */
INL void gate_cell_bn(const int KC, const int PF, const int CR, int blk0, int blk1, int H, int K, int B,
                      const float *restrict pw, const float *restrict x, int ldx,
                      const float *restrict gx, int ldgx, float *restrict c, float *restrict h, int ldh) {
    float part[BN_GROUP * 64] __attribute__((aligned(64)));
    for (int g0 = 0; g0 < B; g0 += BN_GROUP) {
        const int G = B - g0 < BN_GROUP ? B - g0 : BN_GROUP;
        const int ntiles = (G + 5) / 6, base = G / ntiles, extra = G % ntiles;
        const int npf = KC ? (4 + ntiles - 1) / ntiles : 0; /* next-chunk lines per k per tile */
        for (int blk = blk0; blk < blk1; blk++) {
            const float *p = pw + (size_t)blk * K * 64;
            const int j0 = blk * 16, kc = KC > 0 ? KC : (K > 0 ? K : 1);
            int k0 = 0;
            do {
                const int k1 = k0 + kc < K ? k0 + kc : K;
                for (int t = 0, b = g0; t < ntiles; t++) {
                    const int nr = base + (t < extra);
                    const float *xb = x + (size_t)b * ldx, *gb = gx + (size_t)b * ldgx;
                    float *cb = c + (size_t)b * H, *hb = h + (size_t)b * ldh, *pt = part + (b - g0) * 64;
                    const float *pf = p + (size_t)k1 * 64 + (size_t)t * npf * kc * 16;
                    gate_tile_nr(PF, CR, nr, k0, k1, k0 == 0, k1 == K, pf, npf, j0, H, p, xb, ldx, pt, gb, ldgx,
                                 cb, hb, ldh);
                    b += nr;
                }
                k0 = k1;
            } while (k0 < K);
        }
    }
}

/* Measured on the first AVX-512 machine (Xeon family 6 model 207, 2 shared vCPUs, 2026-12-01). The
 * tile loop as first written (one pass of every tile over the block's whole panel, no software
 * prefetch) left the L3 stream to the first tile alone: that tile has 4-6 times the instructions per
 * byte of the batch-1 loop, the out-of-order window keeps few lines in flight, and the panel came at
 * 16-26 GB/s of the ~29 one core reads from L3 while the other tiles waited; at H 1500 it was 0.9-1.2x
 * avx2 at B 4 and B 20 over three runs. Now:
 *   B <= 6 (one tile): the whole panel, prefetching BN_PF = 4 KB ahead (4 lines per k).
 *   B > 6: K chunks of BN_KC = 64 (16 KB of panel: L1), each tile prefetching its share of the next
 *          chunk, so the L3 stream overlaps all tiles' FMAs.
 * `bench_k512 --tiles --pairs 12`: medians of interleaved samples in one process, time / the old loop,
 * over three to four runs (03:59-04:12 UTC):
 *   B 4, prefetch 4 KB:           H 650 0.94-0.98, H 1500 0.94-0.95 (chunks here: 0.96-1.11x of it)
 *   B 20, chunks 64 + prefetch:   H 650 0.71-0.82, H 1500 0.57-0.70 (prefetch 4 KB alone: 0.85-1.0)
 *   B 64, chunks 64 + prefetch:   H 650 0.84-0.90, H 1500 0.63-0.76 (prefetch 4 KB alone: 0.83-1.0)
 * H 1500 B 20 went from ~95 to ~146 GFLOP/s (the zmm FMA peak of one core measured 158-169), 2.2x
 * avx2. Prefetch 2 KB or 8 KB ahead: within 3% of 4 KB; chunks of 32: 0.93-1.10x of 64, of 128:
 * 1.01-1.11x. Each sum is still one FMA chain over k = 0 .. K-1, so the bits are the old loop's. */
/* BN_CR: the epilogue's rows in lockstep (gate_tile); BN_L2_PANEL: at B > 6, when the blocks' whole
 * panel (K x 256 bytes a block) is at most this, it stays in L2 from call to call (the L2 here is
 * 2 MB, its knee ~1.7 MB), nothing streams from L3, and every tile runs over its block's whole panel
 * as at B <= 6 (no partial sums stored and reloaded between chunks, one k loop per tile): `bench_epi
 * --pairs 16`, kc0 against the chunks of 64 (both with BN_CR), H 128 K 128 B 256 (256 KB) 0.947 /
 * 0.972 of the per-row epilogue, H 256 K 256 B 64 (1 MB) 0.958 / 0.977; but H 650 K 160 B 20 (1.7 MB)
 * 1.04 / 0.99 and H 650 K 650 B 20 (6.8 MB, L3) 1.30 / 0.99. See docs/kernels_avx512.md, "Cell
 * epilogue". */
enum { BN_KC = 64, BN_PF = 4096, BN_CR = 2, BN_L2_PANEL = 1 << 20 };

static void gate_cell_avx512(int blk0, int blk1, int H, int K, int B, const float *restrict pw,
                             const float *restrict x, int ldx, const float *restrict gx, int ldgx,
                             float *restrict c, float *restrict h, int ldh) {
    if (B == 1) {
        gate_cell_b1(blk0, blk1, H, K, pw, x, gx, c, h);
        return;
    }
    const bool in_l2 = (size_t)(blk1 - blk0) * (size_t)K * 256 <= BN_L2_PANEL;
    if (B <= 6 || in_l2) gate_cell_bn(0, BN_PF, BN_CR, blk0, blk1, H, K, B, pw, x, ldx, gx, ldgx, c, h, ldh);
    else gate_cell_bn(BN_KC, 0, BN_CR, blk0, blk1, H, K, B, pw, x, ldx, gx, ldgx, c, h, ldh);
}

/* ------------------------------------------------------------ CP gate panel */

/* NB2 (1 or 2) blocks x NR rows x 4 gates. One broadcast of zs[b, g, k] feeds the NB2 blocks, so
 * two blocks halve the broadcast loads per FMA (the CP panel has one weight vector per k and block,
 * against four broadcasts). NB2 * NR <= 6: 24 accumulators. */
INL void cp_tile(const int NB2, const int NR, int j0, int H, int K, const float *restrict p,
                 const float *restrict zs, const float *restrict gx, int ldgx, float *restrict c,
                 float *restrict h, int ldh) {
    __m512 acc[2][6][4];
#pragma GCC unroll 2
    for (int q = 0; q < NB2; q++)
#pragma GCC unroll 6
        for (int b = 0; b < NR; b++)
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) acc[q][b][g] = _mm512_setzero_ps();
#pragma GCC unroll 2
    for (int q = 0; q < NB2; q++)
#pragma GCC unroll 6
        for (int b = 0; b < NR; b++) prefetch_gx(gx + (size_t)b * ldgx + j0 + 16 * q, H);
    const size_t pstride = (size_t)K * 16; /* next block's panel */
    for (int k = 0; k < K; k++) {
        __m512 w0 = _mm512_load_ps(p + (size_t)k * 16);
        __m512 w1 = NB2 > 1 ? _mm512_load_ps(p + pstride + (size_t)k * 16) : w0;
#pragma GCC unroll 6
        for (int b = 0; b < NR; b++) {
            const float *z = zs + (size_t)b * 4 * K + k;
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) {
                __m512 zv = _mm512_set1_ps(z[(size_t)g * K]);
                acc[0][b][g] = _mm512_fmadd_ps(w0, zv, acc[0][b][g]);
                if (NB2 > 1) acc[1][b][g] = _mm512_fmadd_ps(w1, zv, acc[1][b][g]);
            }
        }
    }
#pragma GCC unroll 2
    for (int q = 0; q < NB2; q++) { /* the epilogue BN_CR rows at a time in lockstep, as gate_tile's */
        const int j = j0 + 16 * q;
        cell_store_rows(NR, BN_CR, acc[q], gx + j, ldgx, H, c + j, h + j, ldh, tail_mask(H - j));
    }
}

/* All rows of NB2 blocks starting at j0, in tiles of up to 6 / NB2 rows. */
INL void cp_blocks(const int NB2, int j0, int H, int K, int B, const float *restrict p,
                   const float *restrict zs, const float *restrict gx, int ldgx, float *restrict c,
                   float *restrict h, int ldh) {
    const int MR = 6 / NB2;
    int b = 0;
    for (; b + MR <= B; b += MR)
        cp_tile(NB2, MR, j0, H, K, p, zs + (size_t)b * 4 * K, gx + (size_t)b * ldgx, ldgx, c + (size_t)b * H,
                h + (size_t)b * ldh, ldh);
    const float *zb = zs + (size_t)b * 4 * K, *gb = gx + (size_t)b * ldgx;
    float *cb = c + (size_t)b * H, *hb = h + (size_t)b * ldh;
    switch (B - b) { /* B - b < MR: 1..5 rows with one block, 1..2 with two */
    case 5: if (NB2 == 1) cp_tile(1, 5, j0, H, K, p, zb, gb, ldgx, cb, hb, ldh); break;
    case 4: if (NB2 == 1) cp_tile(1, 4, j0, H, K, p, zb, gb, ldgx, cb, hb, ldh); break;
    case 3: if (NB2 == 1) cp_tile(1, 3, j0, H, K, p, zb, gb, ldgx, cb, hb, ldh); break;
    case 2: cp_tile(NB2, 2, j0, H, K, p, zb, gb, ldgx, cb, hb, ldh); break;
    case 1: cp_tile(NB2, 1, j0, H, K, p, zb, gb, ldgx, cb, hb, ldh); break;
    default: break;
    }
}

static void cp_gate_cell_avx512(int blk0, int blk1, int H, int K, int B, const float *restrict pb,
                                const float *restrict zs, const float *restrict gx, int ldgx,
                                float *restrict c, float *restrict h, int ldh) {
    int blk = blk0;
    for (; blk + 2 <= blk1; blk += 2)
        cp_blocks(2, blk * 16, H, K, B, pb + (size_t)blk * K * 16, zs, gx, ldgx, c, h, ldh);
    if (blk < blk1) cp_blocks(1, blk * 16, H, K, B, pb + (size_t)blk * K * 16, zs, gx, ldgx, c, h, ldh);
}

/* ------------------------------------------------------------ projection t = x m */

/* NV zmm of t (NV <= 4) for one row; two k per iteration (2 NV FMA chains). */
INL void proj_chunk(const int NV, int K, int Rp, const float *restrict m, const float *restrict x,
                    float *restrict t) {
    __m512 a[4], b[4];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) a[v] = b[v] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 1 < K; k += 2) {
        __m512 x0 = _mm512_set1_ps(x[k]), x1 = _mm512_set1_ps(x[k + 1]);
        const float *q0 = m + (size_t)k * Rp, *q1 = q0 + Rp;
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            a[v] = _mm512_fmadd_ps(_mm512_loadu_ps(q0 + 16 * v), x0, a[v]);
            b[v] = _mm512_fmadd_ps(_mm512_loadu_ps(q1 + 16 * v), x1, b[v]);
        }
    }
    if (k < K) {
        __m512 x0 = _mm512_set1_ps(x[k]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            a[v] = _mm512_fmadd_ps(_mm512_loadu_ps(m + (size_t)k * Rp + 16 * v), x0, a[v]);
    }
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) _mm512_storeu_ps(t + 16 * v, _mm512_add_ps(a[v], b[v]));
}

/* acc[b][v] += m's NV zmm at row k (q) x x[b][k], for NR rows of x. */
INL void proj_fma(const int NR, const int NV, const float *restrict q, const float *restrict x, int ldx, int k,
                  __m512 acc[3][4]) {
    __m512 w[4];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) w[v] = _mm512_loadu_ps(q + 16 * v);
#pragma GCC unroll 3
    for (int b = 0; b < NR; b++) {
        const __m512 xv = _mm512_set1_ps(x[(size_t)b * ldx + k]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[b][v] = _mm512_fmadd_ps(w[v], xv, acc[b][v]);
    }
}

/* NR rows (<= 3) x NV zmm (<= 4) of t: each m load feeds NR rows; even and odd k in two sets of
 * accumulators (24 zmm at 3 x 4), summed at the end as in proj_chunk. */
INL void proj_tile(const int NR, const int NV, int K, int Rp, const float *restrict m,
                   const float *restrict x, int ldx, float *restrict t, int ldt) {
    __m512 a[3][4], b[3][4];
#pragma GCC unroll 3
    for (int i = 0; i < NR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) a[i][v] = b[i][v] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 1 < K; k += 2) {
        proj_fma(NR, NV, m + (size_t)k * Rp, x, ldx, k, a);
        proj_fma(NR, NV, m + (size_t)(k + 1) * Rp, x, ldx, k + 1, b);
    }
    if (k < K) proj_fma(NR, NV, m + (size_t)k * Rp, x, ldx, k, a);
#pragma GCC unroll 3
    for (int i = 0; i < NR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) _mm512_storeu_ps(t + (size_t)i * ldt + 16 * v, _mm512_add_ps(a[i][v], b[i][v]));
}

/* Rows b0.. of NR at a time (NR 2..3), over all r chunks. */
INL void proj_rows(const int NR, int K, int Rp, const float *restrict m, const float *restrict x, int ldx,
                   float *restrict t, int ldt) {
    int r = 0;
    for (; r + 64 <= Rp; r += 64) proj_tile(NR, 4, K, Rp, m + r, x, ldx, t + r, ldt);
    switch ((Rp - r) / 16) {
    case 3: proj_tile(NR, 3, K, Rp, m + r, x, ldx, t + r, ldt); break;
    case 2: proj_tile(NR, 2, K, Rp, m + r, x, ldx, t + r, ldt); break;
    case 1: proj_tile(NR, 1, K, Rp, m + r, x, ldx, t + r, ldt); break;
    default: break;
    }
}

/* Every output is summed in one order whatever the batch or the tile its row falls in (even k,
 * odd k, then their sum, as avx2.c): a row gives the same bits alone as in a batch, so splitting a
 * batch across threads or tasks changes no result (test_kernels_proj, test_rows_sched). */
static void proj_avx512(int B, int K, int Rp, const float *restrict m, const float *restrict x, int ldx,
                        float *restrict t, int ldt) {
    int b = 0;
    for (; b + 3 <= B; b += 3) proj_rows(3, K, Rp, m, x + (size_t)b * ldx, ldx, t + (size_t)b * ldt, ldt);
    if (B - b == 2) {
        proj_rows(2, K, Rp, m, x + (size_t)b * ldx, ldx, t + (size_t)b * ldt, ldt);
        return;
    }
    if (B - b == 1) { /* one row: m read once, 4 zmm wide */
        const float *xb = x + (size_t)b * ldx;
        float *tb = t + (size_t)b * ldt;
        int r = 0;
        for (; r + 64 <= Rp; r += 64) proj_chunk(4, K, Rp, m + r, xb, tb + r);
        switch ((Rp - r) / 16) {
        case 3: proj_chunk(3, K, Rp, m + r, xb, tb + r); break;
        case 2: proj_chunk(2, K, Rp, m + r, xb, tb + r); break;
        case 1: proj_chunk(1, K, Rp, m + r, xb, tb + r); break;
        default: break;
        }
    }
}

/* ------------------------------------------------------------ input projection Y = X W^T + beta Y */

/* NR rows of X (<= 6) x NW rows of W (<= 4): 16-lane partial dot products along K, reduced at the
 * end. W and X are read in place (no packing), each W load feeding NR FMAs. */
INL void nt_tile(const int NR, const int NW, int K, const float *restrict x, int ldx, const float *restrict w,
                 int ldw, float beta, float *restrict y, int ldy) {
    __m512 acc[6][4];
#pragma GCC unroll 6
    for (int i = 0; i < NR; i++)
#pragma GCC unroll 4
        for (int j = 0; j < NW; j++) acc[i][j] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 wv[4];
#pragma GCC unroll 4
        for (int j = 0; j < NW; j++) wv[j] = _mm512_loadu_ps(w + (size_t)j * ldw + k);
#pragma GCC unroll 6
        for (int i = 0; i < NR; i++) {
            __m512 xv = _mm512_loadu_ps(x + (size_t)i * ldx + k);
#pragma GCC unroll 4
            for (int j = 0; j < NW; j++) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    if (k < K) {
        const __mmask16 m = tail_mask(K - k);
        __m512 wv[4];
#pragma GCC unroll 4
        for (int j = 0; j < NW; j++) wv[j] = _mm512_maskz_loadu_ps(m, w + (size_t)j * ldw + k);
#pragma GCC unroll 6
        for (int i = 0; i < NR; i++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, x + (size_t)i * ldx + k);
#pragma GCC unroll 4
            for (int j = 0; j < NW; j++) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
#pragma GCC unroll 6
    for (int i = 0; i < NR; i++)
#pragma GCC unroll 4
        for (int j = 0; j < NW; j++) {
            float s = _mm512_reduce_add_ps(acc[i][j]);
            float *out = &y[(size_t)i * ldy + j];
            *out = beta == 0.0f ? s : s + beta * *out;
        }
}

/* All W rows [r0, r1) for NR rows of X, 4 W rows at a time. */
INL void nt_rows(const int NR, int r0, int r1, int K, const float *restrict x, int ldx, const float *restrict w,
                 int ldw, float beta, float *restrict y, int ldy) {
    int r = r0;
    for (; r + 4 <= r1; r += 4) nt_tile(NR, 4, K, x, ldx, w + (size_t)r * ldw, ldw, beta, y + r, ldy);
    switch (r1 - r) {
    case 3: nt_tile(NR, 3, K, x, ldx, w + (size_t)r * ldw, ldw, beta, y + r, ldy); break;
    case 2: nt_tile(NR, 2, K, x, ldx, w + (size_t)r * ldw, ldw, beta, y + r, ldy); break;
    case 1: nt_tile(NR, 1, K, x, ldx, w + (size_t)r * ldw, ldw, beta, y + r, ldy); break;
    default: break;
    }
}

static void gemm_nt_avx512(int n, int rows, int K, const float *restrict x, int ldx, const float *restrict w,
                           int ldw, float beta, float *restrict y, int ldy) {
    // W in chunks of about 128 KB (stays in L2 while every X row tile passes over it).
    int rc = (int)((128 * 1024 / 4) / (K > 0 ? K : 1)) & ~3;
    if (rc < 4) rc = 4;
    for (int r0 = 0; r0 < rows; r0 += rc) {
        const int r1 = r0 + rc < rows ? r0 + rc : rows;
        int i = 0;
        for (; i + 6 <= n; i += 6) nt_rows(6, r0, r1, K, x + (size_t)i * ldx, ldx, w, ldw, beta, y + (size_t)i * ldy, ldy);
        const float *xi = x + (size_t)i * ldx;
        float *yi = y + (size_t)i * ldy;
        switch (n - i) {
        case 5: nt_rows(5, r0, r1, K, xi, ldx, w, ldw, beta, yi, ldy); break;
        case 4: nt_rows(4, r0, r1, K, xi, ldx, w, ldw, beta, yi, ldy); break;
        case 3: nt_rows(3, r0, r1, K, xi, ldx, w, ldw, beta, yi, ldy); break;
        case 2: nt_rows(2, r0, r1, K, xi, ldx, w, ldw, beta, yi, ldy); break;
        case 1: nt_rows(1, r0, r1, K, xi, ldx, w, ldw, beta, yi, ldy); break;
        default: break;
        }
    }
}

/* ------------------------------------------------------------ packed input projection Y = X W^T + bias */

/* X chunk of gemm_pk: 512 KB (AVX-512 cores have 1-2 MB of L2: the chunk and a 64-column panel of
 * K <= 2000 fit). At 128 KB (the AVX2 kernel's, for Zen 3's 512 KB L2) a 2x1500 layer's 700 rows
 * (batch 20 x 35 steps) made 39 chunks, each streaming the 36 MB W_ih from L3. */
enum { PK_CHUNK_BYTES = 512 * 1024 };
/* But where the writes are much of the work (K <= PK_OUT_K multiply-adds an output), W is small (<=
 * PK_SMALL_W: it stays in L2 whatever the chunk) and the call's outputs are not (> PK_SMALL_W), the
 * chunk is at most PK_OUT_ROWS rows: each panel's pass then writes a few rows' pieces, not all n rows'
 * pieces scattered over the whole output. Session 15 (cpgx), the products alone, one process,
 * interleaved, 41 reps, medians of the ratio to the whole call: 1500 CP h/16 at batch 20 (the four
 * gate products: n 700, 1500 outputs, K 93, W 571 KB, gx 16.8 MB) 48-row chunks 0.88-0.94; 650
 * SVD h/16 (W 420 KB) 0.94-0.95, CP h/16 0.92-0.99, SVD h/8 0.99; where W is large the chunks lose
 * (W streams from beyond L2 once a chunk): 650 SVD h/4 (1.7 MB) 1.04-1.05, 1500 SVD h/16 (U 2.2 MB)
 * 1.11. Whole sessions (2 layers, seq 35, the old and new library dlopen'd in one process,
 * alternating, 15-61 reps), new / old: 1500 CP h/16 B20 t1 0.88-0.98, 650 CP h/16 0.82-0.90, SVD
 * h/16 0.80-0.95, SVD h/8 0.94-0.97, CP h/4 0.95-0.97; two threads (a thread's panel range is one
 * call) 1500 SVD h/16 0.96-0.99, h/8 0.94-0.99; the others untouched (0.96-1.03). */
enum { PK_SMALL_W = 1024 * 1024, PK_OUT_ROWS = 48, PK_OUT_K = 256 };

/* NR rows of X (<= 6) x one 64-column panel: 24 accumulators started at the bias; per k, four
 * aligned panel loads feed 4 NR FMAs (no reductions, unlike gemm_nt). m masks columns past rows.
 * next: another panel (K x 64 floats) to prefetch into L2, one 256-byte row of it per k, or NULL. */
INL void pk_tile(const int NR, int K, const float *restrict p, const float *restrict x, int ldx,
                 const float *restrict bias, const __mmask16 m[4], float *restrict y, int ldy,
                 const float *restrict next) {
    __m512 acc[6][4];
#pragma GCC unroll 4
    for (int v = 0; v < 4; v++) {
        const __m512 b0 = bias ? _mm512_maskz_loadu_ps(m[v], bias + 16 * v) : _mm512_setzero_ps();
#pragma GCC unroll 6
        for (int b = 0; b < NR; b++) acc[b][v] = b0;
    }
    for (int k = 0; k < K; k++) {
        const float *q = p + (size_t)k * 64;
        if (next)
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++) _mm_prefetch((const char *)(next + (size_t)k * 64 + 16 * v), _MM_HINT_T1);
        __m512 w0 = _mm512_load_ps(q), w1 = _mm512_load_ps(q + 16);
        __m512 w2 = _mm512_load_ps(q + 32), w3 = _mm512_load_ps(q + 48);
#pragma GCC unroll 6
        for (int b = 0; b < NR; b++) {
            __m512 xv = _mm512_set1_ps(x[(size_t)b * ldx + k]);
            acc[b][0] = _mm512_fmadd_ps(w0, xv, acc[b][0]);
            acc[b][1] = _mm512_fmadd_ps(w1, xv, acc[b][1]);
            acc[b][2] = _mm512_fmadd_ps(w2, xv, acc[b][2]);
            acc[b][3] = _mm512_fmadd_ps(w3, xv, acc[b][3]);
        }
    }
#pragma GCC unroll 6
    for (int b = 0; b < NR; b++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) _mm512_mask_storeu_ps(y + (size_t)b * ldy + 16 * v, m[v], acc[b][v]);
}

static void gemm_pk_avx512(int n, int rows, int K, const float *restrict x, int ldx, const float *restrict pk,
                           const float *restrict bias, float *restrict y, int ldy) {
    const int np = (rows + 63) / 64;
    // Rows of X in chunks of about PK_CHUNK_BYTES (stay in L2 while every panel passes over them):
    // W is streamed from memory once per chunk, so fewer, larger chunks read it fewer times.
    int mc = (int)((PK_CHUNK_BYTES / 4) / (K > 0 ? K : 1)) / 6 * 6;
    if (mc < 6) mc = 6;
    const double w_bytes = (double)np * K * 64 * 4, out_bytes = (double)n * rows * 4;
    if (mc > PK_OUT_ROWS && K <= PK_OUT_K && w_bytes <= PK_SMALL_W && out_bytes > PK_SMALL_W) mc = PK_OUT_ROWS;
    for (int i0 = 0; i0 < n; i0 += mc) {
        const int i1 = i0 + mc < n ? i0 + mc : n;
        for (int pi = 0; pi < np; pi++) {
            const int c0 = pi * 64;
            __mmask16 m[4];
            for (int v = 0; v < 4; v++) m[v] = rows - c0 - 16 * v <= 0 ? 0 : tail_mask(rows - c0 - 16 * v);
            const float *p = pk + (size_t)pi * K * 64, *bb = bias ? bias + c0 : NULL;
            int i = i0;
            /* the chunk's first tile also fetches the next panel into L2 while it computes: the
             * panel's first pass comes from L3 or DRAM, the others from L2 */
            const float *next = pi + 1 < np ? pk + (size_t)(pi + 1) * K * 64 : NULL;
            if (i + 6 <= i1 && next) {
                pk_tile(6, K, p, x + (size_t)i * ldx, ldx, bb, m, y + (size_t)i * ldy + c0, ldy, next);
                i += 6;
            }
            for (; i + 6 <= i1; i += 6)
                pk_tile(6, K, p, x + (size_t)i * ldx, ldx, bb, m, y + (size_t)i * ldy + c0, ldy, NULL);
            const float *xi = x + (size_t)i * ldx;
            float *yi = y + (size_t)i * ldy + c0;
            switch (i1 - i) {
            case 5: pk_tile(5, K, p, xi, ldx, bb, m, yi, ldy, NULL); break;
            case 4: pk_tile(4, K, p, xi, ldx, bb, m, yi, ldy, NULL); break;
            case 3: pk_tile(3, K, p, xi, ldx, bb, m, yi, ldy, NULL); break;
            case 2: pk_tile(2, K, p, xi, ldx, bb, m, yi, ldy, NULL); break;
            case 1: pk_tile(1, K, p, xi, ldx, bb, m, yi, ldy, NULL); break;
            default: break;
            }
        }
    }
}

static void cp_scale_avx512(int B, int R, const float *restrict a, const float *restrict z, int ldz,
                            float *restrict zs) {
    for (int b = 0; b < B; b++) {
        const float *zb = z + (size_t)b * ldz;
        for (int g = 0; g < 4; g++) {
            const float *ag = a + (size_t)g * R;
            float *o = zs + ((size_t)b * 4 + g) * R;
            for (int r = 0; r < R; r += 16) {
                const __mmask16 m = R - r >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (R - r)) - 1);
                _mm512_mask_storeu_ps(o + r, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, ag + r), _mm512_maskz_loadu_ps(m, zb + r)));
            }
        }
    }
}

const fl_kernels fl_kernels_avx512 = {
    .name = "avx512",
    .gx_in_place = true,
    .lstm_cell = lstm_cell_avx512,
    .gate_cell = gate_cell_avx512,
    .cp_gate_cell = cp_gate_cell_avx512,
    .cp_scale = cp_scale_avx512,
    .proj = proj_avx512,
    .gemm_nt = gemm_nt_avx512,
    .gemm_pk = gemm_pk_avx512,
};
