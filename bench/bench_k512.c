/* The AVX-512 kernels against the AVX2 ones at the shapes the runtime uses, in one process, calls
 * interleaved (ABBA...), so that co-tenants of a shared machine slow both alike:
 *
 *   bench_k512 [--only name] [--pairs n] [--sample-ms m] [--cold MB] [--streams | --tiles | --cell]
 *
 *   default    every case below, the library's avx2 and avx512 tables (fl_kernels_by_name,
 *              fl_qkernels_by_name), then the FMA peak of each width and of zmm vpdpbusd (int8)
 *   --only s   only the cases whose name contains s (e.g. "b1", "pk", "svd", "int8")
 *   --streams  gate_cell at batch 1 with 1, 2, 4 and 8 streams (avx512.c's gate_cell_b1_s compiled
 *              into this file) at H 128, 256, 650, 1000, 1500, 2000, next to the library's avx512
 *   --tiles    gate_cell at B 4, 20, 64 and H 650, 1500: the library's avx512 and avx2, and this
 *              file's copies of avx512.c's gate_cell_bn: p0 (the loop before 2026-12-01: whole panel
 *              per tile, no prefetch), p4k (prefetch 4 KB ahead), c64 / c32 (K chunks of 64 / 32
 *              with the next chunk prefetched)
 *   --cell     lstm_cell alone at H 128, 256, 650, 1500 and B 1, 20 (also ns per element): the library's
 *              avx512 and avx2 and copies of both as they were before 2026-12-01 (old512, old256)
 *   --cold MB  walk a buffer of MB megabytes before each timed call (not timed), one call per sample,
 *              so that the weights come from DRAM (the L3 here is 260 MB, shared: try 600)
 *   --pairs n  samples of each variant (default 12); one sample: as many calls as make --sample-ms
 *              (default 3) of this thread's CPU time, the same weights call after call (so a panel
 *              is L1/L2/L3-resident where it fits: one core reads the L3 at ~29 GB/s on the Xeon)
 * Per case: median us per call of each variant, its GB/s (weight bytes read per call / time) and
 * GFLOP/s (2 x multiply-adds), and the median over samples of the ratio avx512 / avx2 (below 1:
 * avx512 faster; with --streams / --tiles: time / the first variant's). Cases (K = H unless said; gate
 * panel = W_hh packed, 4H x K floats):
 *   b1       gate_cell, batch 1           H 128, 256 (L2), 650 (L3, 6.8 MB), 1500 (36 MB)
 *   gate     gate_cell, batch 4, 20, 64   H 650, 1500
 *   svd      proj (t = x V^T, K = H, Rp = R rounded up to 16) + gate_cell on U (K = R), R = H/4, H/16
 *   cp       proj (z = x C) + cp_scale + cp_gate_cell (K = R), R = H/4, H/16
 *   pk       gemm_pk Y (n, 4H) = X (n, H) W^T + b: H 650 at n = 1, 35, 140, 700; H 1500 at n = 1, 35
 *   int8     i8_gemv, gate map, K = H (the quantized W_hh product alone; no activation quantization,
 *            no cell update), batch 1 and 20; bf16 the same with bf16_gemv
 *   cell     lstm_cell alone, batch 1 and 20
 * Weights are random (timing only: no result is checked here; the tests compare every level with
 * ref.c). Needs AVX-512 F/VL/DQ/BW (and VNNI for the int8 lines). */
#include "internal.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"
#include "bench_util.h"
#include "cell_before_avx2.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")
#pragma GCC optimize("O3")
#ifndef K512_LIB_ONLY /* -DK512_LIB_ONLY: the library's tables only (to build this file against an older tree) */
#define fl_kernels_avx512 bench_kernels_avx512
#include "../src/kernels/avx512.c"
#undef fl_kernels_avx512

/* gate_cell at batch 1 with S streams (avx512.c's loop, this file's copy; --streams). */
static void b1_s1(int a, int b, int H, int K, const float *pw, const float *x, const float *gx, float *c, float *h) {
    gate_cell_b1_s(1, a, b, H, K, pw, x, gx, c, h);
}
static void b1_s2(int a, int b, int H, int K, const float *pw, const float *x, const float *gx, float *c, float *h) {
    gate_cell_b1_s(2, a, b, H, K, pw, x, gx, c, h);
}
static void b1_s4(int a, int b, int H, int K, const float *pw, const float *x, const float *gx, float *c, float *h) {
    gate_cell_b1_s(4, a, b, H, K, pw, x, gx, c, h);
}
static void b1_s8(int a, int b, int H, int K, const float *pw, const float *x, const float *gx, float *c, float *h) {
    gate_cell_b1_s(8, a, b, H, K, pw, x, gx, c, h);
}

/* gate_cell at B > 1 with prefetch distance PF (--tiles). */
#define BN(KC, PF)                                                                                  \
    static void bn_##KC##_##PF(int a, int b, int H, int K, int B, const float *pw, const float *x, int ldx, \
                               const float *gx, int ldgx, float *c, float *h, int ldh) {             \
        gate_cell_bn(KC, PF, BN_CR, a, b, H, K, B, pw, x, ldx, gx, ldgx, c, h, ldh);                 \
    }
BN(0, 0)
BN(0, 4096)
BN(32, 0)
BN(64, 0)

/* --cell: avx512.c's lstm_cell as it was before 2026-12-01 (this file's copy): exp by vmulps +
 * vrndscaleps and a Horner polynomial, e^-x and e^{2|x|} from a negated / doubled argument. */
INL __m512 exp16_old(__m512 x) {
    x = _mm512_min_ps(_mm512_set1_ps(EXP_HI), _mm512_max_ps(_mm512_set1_ps(EXP_LO), x));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    __m512 y = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(y, n);
}
INL __m512 sigmoid16_old(__m512 x) {
    __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_div_ps(one, _mm512_add_ps(one, exp16_old(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}
INL __m512 tanh16_old(__m512 x) {
    __m512 a = _mm512_abs_ps(x);
    __m512 z = _mm512_mul_ps(x, x);
    __m512 p = _mm512_set1_ps(-5.70498872745e-3f);
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(2.06390887954e-2f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-5.37397155531e-2f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.33314422036e-1f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-3.33332819422e-1f));
    __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), x, x);
    __m512 one = _mm512_set1_ps(1.0f);
    __m512 e = exp16_old(_mm512_add_ps(a, a));
    __m512 big = _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, one)));
    __m512i sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MIN));
    big = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(big), sign));
    __mmask16 is_small = _mm512_cmp_ps_mask(a, _mm512_set1_ps(0.625f), _CMP_LT_OQ);
    return _mm512_mask_blend_ps(is_small, big, small);
}
static void cell_old512(int batch, int H, const float *restrict gates, int ldg, float *restrict c, int ldc,
                        float *restrict h, int ldh) {
    for (int b = 0; b < batch; b++) {
        const float *g = gates + (size_t)b * ldg;
        float *cb = c + (size_t)b * ldc, *hb = h + (size_t)b * ldh;
        for (int j = 0; j < H; j += 16) {
            __mmask16 m = tail_mask(H - j);
            __m512 i = sigmoid16_old(_mm512_maskz_loadu_ps(m, g + j));
            __m512 f = sigmoid16_old(_mm512_maskz_loadu_ps(m, g + H + j));
            __m512 gg = tanh16_old(_mm512_maskz_loadu_ps(m, g + 2 * H + j));
            __m512 o = sigmoid16_old(_mm512_maskz_loadu_ps(m, g + 3 * H + j));
            __m512 cn = _mm512_fmadd_ps(f, _mm512_maskz_loadu_ps(m, cb + j), _mm512_mul_ps(i, gg));
            _mm512_mask_storeu_ps(cb + j, m, cn);
            _mm512_mask_storeu_ps(hb + j, m, _mm512_mul_ps(o, tanh16_old(cn)));
        }
    }
}

#else
#include <immintrin.h>
#endif

enum { PEAK_ITERS = 1 << 18 };
static float peak512(void) {
    __m512 a[12];
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps((float)i);
    const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (int it = 0; it < PEAK_ITERS; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], m, c);
    }
    __m512 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, a[i]);
    return _mm512_reduce_add_ps(s);
}
__attribute__((target("avx512vnni"))) static int peak_vnni(void) {
    __m512i a[12];
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_epi32(i);
    const __m512i u = _mm512_set1_epi32(0x01010101), w = _mm512_set1_epi32(0x01ff01ff);
    for (int it = 0; it < PEAK_ITERS; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm512_dpbusd_epi32(a[i], u, w);
    }
    __m512i s = a[0];
    for (int i = 1; i < 12; i++) s = _mm512_add_epi32(s, a[i]);
    return _mm512_reduce_add_epi32(s);
}
#pragma GCC pop_options


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_pairs = 12;
static double g_sample_s = 3e-3;
static volatile float g_sink;
static double g_elems; /* > 0: also print ns per element (--cell) */
static unsigned char *g_evict; /* --cold MB: a buffer walked before every timed call */
static size_t g_evict_bytes;

static void evict(void) {
    for (size_t i = 0; i < g_evict_bytes; i += 64) g_evict[i]++;
}


/* Everything one case needs; each variant runs `run` with its own kernel tables. */
typedef void (*b1_fn)(int, int, int, int, const float *, const float *, const float *, float *, float *);
typedef void (*bn_fn)(int, int, int, int, int, const float *, const float *, int, const float *, int, float *,
                      float *, int);
typedef void (*cell_fn)(int, int, const float *, int, float *, int, float *, int);

typedef struct cse {
    const fl_kernels *k;
    const fl_qkernels *q;
    b1_fn b1; /* --streams variants */
    bn_fn bn; /* --tiles variants */
    cell_fn cell; /* --cell variants */
    int H, K, B, R, Rp, n, rows, nblk;
    float *pw, *x, *gx, *c, *h, *m, *t, *a, *zs, *y, *bias, *pk, *wscale, *xscale;
    int8_t *pq;
    uint16_t *pb;
    uint8_t *xq;
    int32_t *wsum;
} cse;

typedef void (*run_fn)(cse *);

static void run_gate(cse *s) {
    if (s->b1) s->b1(0, s->nblk, s->H, s->K, s->pw, s->x, s->gx, s->c, s->h);
    else if (s->bn) s->bn(0, s->nblk, s->H, s->K, s->B, s->pw, s->x, s->K, s->gx, 4 * s->H, s->c, s->h, s->H);
    else s->k->gate_cell(0, s->nblk, s->H, s->K, s->B, s->pw, s->x, s->K, s->gx, 4 * s->H, s->c, s->h, s->H);
}
static void run_svd(cse *s) { /* t = x V^T (B, Rp); gates = gx + U t; cell */
    s->k->proj(s->B, s->H, s->Rp, s->m, s->x, s->H, s->t, s->Rp);
    s->k->gate_cell(0, s->nblk, s->H, s->R, s->B, s->pw, s->t, s->Rp, s->gx, 4 * s->H, s->c, s->h, s->H);
}
static void run_cp(cse *s) {
    s->k->proj(s->B, s->H, s->Rp, s->m, s->x, s->H, s->t, s->Rp);
    s->k->cp_scale(s->B, s->R, s->a, s->t, s->Rp, s->zs);
    s->k->cp_gate_cell(0, s->nblk, s->H, s->R, s->B, s->pw, s->zs, s->gx, 4 * s->H, s->c, s->h, s->H);
}
static void run_pk(cse *s) { s->k->gemm_pk(s->n, s->rows, s->K, s->x, s->K, s->pk, s->bias, s->y, s->rows); }
static void run_i8(cse *s) {
    s->q->i8_gemv(0, s->nblk, s->H, 4 * s->H, s->K, s->B, s->pq, s->wscale, s->wsum, s->xq, (s->K + 3) / 4 * 4,
                  s->xscale, s->y, 4 * s->H);
}
static void run_bf16(cse *s) { s->q->bf16_gemv(0, s->nblk, s->H, 4 * s->H, s->K, s->B, s->pb, s->x, s->K, s->y, 4 * s->H); }
static void run_cell(cse *s) { (s->cell ? s->cell : s->k->lstm_cell)(s->B, s->H, s->gx, 4 * s->H, s->c, s->H, s->h, s->H); }

static fl_rng g_rng;
static float *rbuf(size_t n, float a) {
    float *p = fl_malloc((n ? n : 1) * sizeof(float));
    if (!p) {
        fprintf(stderr, "bench_k512: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = fl_rng_uniform_range(&g_rng, -a, a);
    return p;
}

/* Calls per sample for about g_sample_s of thread CPU time. */
static int calls_for(run_fn fn, cse *s) {
    fn(s);
    double t0 = bench_now(true);
    fn(s);
    double one = bench_now(true) - t0;
    int n = (int)(g_sample_s / (one > 2e-8 ? one : 2e-8));
    return n < 1 ? 1 : n > 1000000 ? 1000000 : n;
}

enum { MAXV = 6, MAXP = 64 };

/* nv variants, g_pairs samples each, order forward then backward in turn. Prints one line. */
static void measure(const char *label, run_fn fn, cse *v, const char **names, int nv, double bytes, double flops) {
    double t[MAXV][MAXP], r[MAXV][MAXP];
    int calls[MAXV];
    for (int i = 0; i < nv; i++) calls[i] = g_evict ? 1 : calls_for(fn, &v[i]);
    int c = calls[0];
    for (int i = 1; i < nv; i++) c = calls[i] < c ? calls[i] : c; /* same count for all: same state drift */
    for (int p = 0; p < g_pairs; p++)
        for (int j = 0; j < nv; j++) {
            const int i = p % 2 ? nv - 1 - j : j;
            if (g_evict) evict();
            double t0 = bench_now(true);
            for (int n = 0; n < c; n++) fn(&v[i]);
            t[i][p] = (bench_now(true) - t0) / c;
        }
    for (int p = 0; p < g_pairs; p++)
        for (int i = 0; i < nv; i++) r[i][p] = t[i][p] / t[0][p];
    printf("%-28s", label);
    for (int i = 0; i < nv; i++) {
        const double med = bench_summarize(t[i], g_pairs).med;
        printf(" | %-6s %8.2f us", names[i], med * 1e6);
        if (g_elems > 0) printf(" %5.2f ns/el", med / g_elems * 1e9);
        if (bytes > 0) printf(" %6.1f GB/s", bytes / med / 1e9);
        if (flops > 0) printf(" %6.1f GF/s", flops / med / 1e9);
        if (i > 0) printf(" x%.3f", bench_summarize(r[i], g_pairs).med);
    }
    printf("\n");
    fflush(stdout);
}

static const fl_kernels *K2, *K5;
static const fl_qkernels *Q2, *Q5;
static const char *g_only;
static const char *lv_names[2] = {"avx2", "avx512"};

static bool want(const char *name) { return !g_only || strstr(name, g_only); }

/* Two variants (avx2, avx512) sharing the buffers of s. */
static void ab(const char *label, run_fn fn, cse s, double bytes, double flops) {
    cse v[2] = {s, s};
    v[0].k = K2, v[0].q = Q2, v[1].k = K5, v[1].q = Q5;
    measure(label, fn, v, lv_names, 2, bytes, flops);
}

static cse gate_case(int H, int K, int B) {
    cse s = {.H = H, .K = K, .B = B, .nblk = (H + 15) / 16};
    s.pw = rbuf((size_t)s.nblk * K * 64, 0.04f);
    s.x = rbuf((size_t)B * (H > K ? H : K), 1.0f);
    s.gx = rbuf((size_t)B * 4 * H, 1.0f);
    s.c = rbuf((size_t)B * H, 1.0f);
    s.h = rbuf((size_t)B * H, 1.0f);
    return s;
}
static void free_case(cse *s) {
    float *f[] = {s->pw, s->x, s->gx, s->c, s->h, s->m, s->t, s->a, s->zs, s->y, s->bias, s->pk, s->wscale, s->xscale};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) fl_free(f[i]);
    fl_free(s->pq), fl_free(s->pb), fl_free(s->xq), fl_free(s->wsum);
}

static void cases(void) {
    char l[96];
    const int b1H[] = {128, 256, 650, 1500};
    for (int i = 0; i < 4; i++) {
        snprintf(l, sizeof l, "b1 gate_cell H %d", b1H[i]);
        if (!want(l)) continue;
        cse s = gate_case(b1H[i], b1H[i], 1);
        ab(l, run_gate, s, (double)s.nblk * s.K * 256, 8.0 * s.H * s.K);
        free_case(&s);
    }
    const int gH[] = {650, 1500}, gB[] = {4, 20, 64};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++) {
            snprintf(l, sizeof l, "gate gate_cell H %d B %d", gH[i], gB[j]);
            if (!want(l)) continue;
            cse s = gate_case(gH[i], gH[i], gB[j]);
            ab(l, run_gate, s, (double)s.nblk * s.K * 256, 8.0 * s.B * s.H * s.K);
            free_case(&s);
        }
    const int lrB[] = {1, 20}, lrDiv[] = {4, 16};
    for (int m = 0; m < 2; m++)
        for (int i = 0; i < 2; i++)
            for (int d = 0; d < 2; d++)
                for (int j = 0; j < 2; j++) {
                    const int H = gH[i], R = H / lrDiv[d], B = lrB[j], Rp = (R + 15) / 16 * 16;
                    snprintf(l, sizeof l, "%s H %d R %d B %d", m ? "cp" : "svd", H, R, B);
                    if (!want(l)) continue;
                    cse s = gate_case(H, R, B);
                    s.R = R, s.Rp = Rp;
                    s.m = rbuf((size_t)H * Rp, 0.04f);
                    s.t = rbuf((size_t)B * Rp, 1.0f);
                    double bytes, flops;
                    if (m) {
                        fl_free(s.pw);
                        s.pw = rbuf((size_t)s.nblk * R * 16, 0.04f);
                        s.a = rbuf((size_t)4 * R, 1.0f);
                        s.zs = rbuf((size_t)B * 4 * R, 1.0f);
                        bytes = 4.0 * ((double)H * Rp + (double)s.nblk * R * 16);
                        flops = 2.0 * B * ((double)H * Rp + 4.0 * H * R);
                    } else {
                        bytes = 4.0 * ((double)H * Rp + (double)s.nblk * R * 64);
                        flops = 2.0 * B * ((double)H * Rp + 4.0 * H * R);
                    }
                    ab(l, m ? run_cp : run_svd, s, bytes, flops);
                    free_case(&s);
                }
    const int pn[] = {1, 35, 140, 700, 1, 35}, prow[] = {2600, 2600, 2600, 2600, 6000, 6000};
    for (int i = 0; i < 6; i++) {
        const int rows = prow[i], K = rows / 4, np = (rows + 63) / 64;
        snprintf(l, sizeof l, "pk gemm_pk n %d %dx%d", pn[i], rows, K);
        if (!want(l)) continue;
        cse s = {.n = pn[i], .rows = rows, .K = K};
        s.pk = rbuf((size_t)np * K * 64, 0.04f);
        s.x = rbuf((size_t)s.n * K, 1.0f);
        s.bias = rbuf((size_t)rows, 0.1f);
        s.y = rbuf((size_t)s.n * rows, 1.0f);
        ab(l, run_pk, s, (double)np * K * 64 * 4, 2.0 * s.n * rows * K);
        free_case(&s);
    }
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++) {
                const int H = gH[i], B = lrB[j], nblk = (H + 15) / 16;
                snprintf(l, sizeof l, "%s gemv H %d B %d", p ? "bf16" : "int8", H, B);
                if (!want(l)) continue;
                cse s = {.H = H, .K = H, .B = B, .nblk = nblk};
                s.y = rbuf((size_t)B * 4 * H, 1.0f);
                double bytes;
                if (p) {
                    const size_t n = (size_t)nblk * ((H + 1) / 2) * 128;
                    s.pb = fl_malloc(n * sizeof(uint16_t));
                    for (size_t e = 0; e < n; e++) {
                        float f = fl_rng_uniform_range(&g_rng, -0.04f, 0.04f);
                        uint32_t u;
                        memcpy(&u, &f, 4);
                        s.pb[e] = (uint16_t)(u >> 16);
                    }
                    s.x = rbuf((size_t)B * H, 1.0f);
                    bytes = 2.0 * n;
                } else {
                    const int Kp = (H + 3) / 4 * 4;
                    const size_t n = (size_t)nblk * Kp * 64;
                    s.pq = fl_malloc(n);
                    for (size_t e = 0; e < n; e++) s.pq[e] = (int8_t)(fl_rng_next(&g_rng) % 255 - 127);
                    s.xq = fl_malloc((size_t)B * Kp);
                    for (size_t e = 0; e < (size_t)B * Kp; e++) s.xq[e] = (uint8_t)(1 + fl_rng_next(&g_rng) % 255);
                    s.wscale = rbuf((size_t)4 * H, 0.01f);
                    s.xscale = rbuf((size_t)B, 0.01f);
                    s.wsum = fl_malloc((size_t)4 * H * sizeof(int32_t));
                    for (int e = 0; e < 4 * H; e++) s.wsum[e] = (int32_t)(fl_rng_next(&g_rng) % 1000);
                    bytes = (double)n;
                }
                ab(l, p ? run_bf16 : run_i8, s, bytes, 8.0 * B * H * H);
                free_case(&s);
            }
    for (int j = 0; j < 2; j++) {
        snprintf(l, sizeof l, "cell lstm_cell H 650 B %d", lrB[j]);
        if (!want(l)) continue;
        cse s = gate_case(650, 650, lrB[j]);
        ab(l, run_cell, s, 0, 0);
        free_case(&s);
    }
}

#ifndef K512_LIB_ONLY
static void streams(void) {
    const int Hs[] = {128, 256, 650, 1000, 1500, 2000};
    const char *names[5] = {"lib", "s1", "s2", "s4", "s8"};
    const b1_fn fns[5] = {NULL, b1_s1, b1_s2, b1_s4, b1_s8};
    for (int i = 0; i < 6; i++) {
        char l[64];
        snprintf(l, sizeof l, "b1 streams H %d", Hs[i]);
        cse s = gate_case(Hs[i], Hs[i], 1);
        cse v[5];
        for (int j = 0; j < 5; j++) v[j] = s, v[j].k = K5, v[j].b1 = fns[j];
        measure(l, run_gate, v, names, 5, (double)s.nblk * s.K * 256, 0);
        free_case(&s);
    }
}

static void tiles(void) {
    const int Hs[] = {650, 1500}, Bs[] = {4, 20, 64};
    const char *names[6] = {"lib", "avx2", "p0", "p4k", "c64", "c32"};
    const bn_fn fns[6] = {NULL, NULL, bn_0_0, bn_0_4096, bn_64_0, bn_32_0};
    for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++) {
                char l[64];
                snprintf(l, sizeof l, "tiles H %d B %d", Hs[i], Bs[j]);
                cse s = gate_case(Hs[i], Hs[i], Bs[j]);
                cse v[6];
                for (int q = 0; q < 6; q++) v[q] = s, v[q].k = K5, v[q].bn = fns[q];
                v[1].k = K2;
                measure(l, run_gate, v, names, 6, 0, 8.0 * s.B * s.H * s.K);
                free_case(&s);
            }
}

/* The cell update alone (lstm_cell, gates uniform in [-4, 4], c in [-1, 1]): the library's avx512 and
 * avx2 against copies of both as they were before 2026-12-01 (old512 here, old256 cell_before_avx2.h). */
static void cells(void) {
    const int Hs[] = {128, 256, 650, 1500}, Bs[] = {1, 20};
    const char *names[4] = {"avx512", "old512", "avx2", "old256"};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 2; j++) {
            char l[64];
            snprintf(l, sizeof l, "cell H %d B %d", Hs[i], Bs[j]);
            cse s = {.H = Hs[i], .B = Bs[j]};
            s.gx = rbuf((size_t)s.B * 4 * s.H, 4.0f);
            s.c = rbuf((size_t)s.B * s.H, 1.0f);
            s.h = rbuf((size_t)s.B * s.H, 1.0f);
            cse v[4] = {s, s, s, s};
            v[0].k = v[1].k = K5, v[2].k = v[3].k = K2;
            v[1].cell = cell_old512, v[3].cell = cell_old256;
            g_elems = (double)s.B * s.H;
            measure(l, run_cell, v, names, 4, 0, 0);
            g_elems = 0;
            free_case(&s);
        }
}

#endif

int main(int argc, char **argv) {
    bool do_streams = false, do_tiles = false, do_cells = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--only") && i + 1 < argc) g_only = argv[++i];
        else if (!strcmp(argv[i], "--pairs") && i + 1 < argc) g_pairs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--sample-ms") && i + 1 < argc) g_sample_s = atof(argv[++i]) * 1e-3;
        else if (!strcmp(argv[i], "--cold") && i + 1 < argc) g_evict_bytes = (size_t)atoi(argv[++i]) << 20;
        else if (!strcmp(argv[i], "--streams")) do_streams = true;
        else if (!strcmp(argv[i], "--tiles")) do_tiles = true;
        else if (!strcmp(argv[i], "--cell")) do_cells = true;
        else {
            fprintf(stderr, "usage: bench_k512 [--only name] [--pairs n] [--sample-ms m] [--cold MB] [--streams | --tiles | --cell]\n");
            return 2;
        }
    }
    if (g_pairs < 2 || g_pairs > MAXP) g_pairs = 12;
    K2 = fl_kernels_by_name("avx2"), K5 = fl_kernels_by_name("avx512");
    Q2 = fl_qkernels_by_name("avx2"), Q5 = fl_qkernels_by_name("avx512");
    if (!K2 || !K5 || !Q5) {
        fprintf(stderr, "bench_k512: this CPU lacks AVX-512 (F/VL/DQ/BW/VNNI)\n");
        return 1;
    }
    fl_rng_seed(&g_rng, 512);
    if (g_evict_bytes) {
        g_evict = fl_malloc(g_evict_bytes);
        if (!g_evict) {
            fprintf(stderr, "bench_k512: out of memory\n");
            return 1;
        }
        memset(g_evict, 0, g_evict_bytes);
    }
#ifndef K512_LIB_ONLY
    if (do_tiles) {
        tiles();
        return 0;
    }
    if (do_streams) {
        streams();
        return 0;
    }
    if (do_cells) {
        cells();
        return 0;
    }
#else
    if (do_tiles || do_streams || do_cells) return 2;
#endif
    cases();
    if (!g_only || strstr("peak", g_only)) {
        double t0 = bench_now(true);
        g_sink += bench_fma_chains256(PEAK_ITERS);
        double t1 = bench_now(true);
        g_sink += peak512();
        double t2 = bench_now(true);
        g_sink += (float)peak_vnni();
        double t3 = bench_now(true);
        printf("FMA peak (12 chains, 1 thread): ymm %.1f GFLOP/s, zmm %.1f GFLOP/s; vpdpbusd zmm %.1f GOP/s\n",
               2.0 * 8 * 12 * PEAK_ITERS / (t1 - t0) / 1e9, 2.0 * 16 * 12 * PEAK_ITERS / (t2 - t1) / 1e9,
               2.0 * 64 * 12 * PEAK_ITERS / (t3 - t2) / 1e9);
    }
    return 0;
}
