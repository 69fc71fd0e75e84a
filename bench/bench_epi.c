/* The cell-update epilogue of avx512.c's gate_cell at B > 1 (gate_cell_bn), variants compiled into
 * this file from avx512.c itself, samples interleaved in one process (ABBA...), so that co-tenants
 * of a shared machine slow all variants alike:
 *
 *   bench_epi [--pairs n] [--sample-ms m] [H K B ...]
 *
 * Variants (gate_tile's CR): e0 each row's cell_store after the other (the epilogue before
 * 2026-12-01 07:00 UTC); e1, e2, e3, e6: cell_store_n over 1, 2, 3, 6 rows at a time (their gate
 * activations in lockstep); lib: the library's avx512 gate_cell. K chunks and prefetch as the
 * library's (B <= 6 or all panels <= BN_L2_PANEL: whole panel + prefetch, else chunks of BN_KC),
 * except kc0 (the library's epilogue, every tile over the whole panel, prefetch BN_PF ahead) and
 * kc128 (the library's epilogue, chunks of 128 at B > 6).
 * Shapes (default: the list below): K = 0 is the cell update alone. Per shape and variant: median us
 * per call over --pairs samples (default 16; one sample: as many calls as make --sample-ms, default
 * 3, of this thread's CPU time, the same buffers call after call), GFLOP/s (2 x multiply-adds) and
 * the median over samples of the ratio to e0. Before timing, each variant's c and h after one call
 * from the same state are compared with e0's bit for bit; a difference is reported and exits 1. */
#include "internal.h"
#include "kernels/kernels.h"
#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")
#pragma GCC optimize("O3")
#define fl_kernels_avx512 bench_epi_kernels_avx512
#include "../src/kernels/avx512.c"
#undef fl_kernels_avx512

typedef void (*bn_fn)(int, int, int, int, int, const float *, const float *, int, const float *, int, float *,
                      float *, int);
#define EPI(CR)                                                                                              \
    static void epi_##CR(int a, int b, int H, int K, int B, const float *pw, const float *x, int ldx,         \
                         const float *gx, int ldgx, float *c, float *h, int ldh) {                            \
        if (B <= 6 || (size_t)(b - a) * (size_t)K * 256 <= BN_L2_PANEL)                                   \
            gate_cell_bn(0, BN_PF, CR, a, b, H, K, B, pw, x, ldx, gx, ldgx, c, h, ldh);                      \
        else gate_cell_bn(BN_KC, 0, CR, a, b, H, K, B, pw, x, ldx, gx, ldgx, c, h, ldh);                     \
    }
EPI(0)
EPI(1)
EPI(2)
EPI(3)
EPI(6)
/* the library's epilogue (BN_CR) with other K chunks at B > 6: whole panel per tile (prefetch 4 KB
 * ahead, as at B <= 6) or chunks of 128 */
static void kc_0(int a, int b, int H, int K, int B, const float *pw, const float *x, int ldx, const float *gx,
                 int ldgx, float *c, float *h, int ldh) {
    gate_cell_bn(0, BN_PF, BN_CR, a, b, H, K, B, pw, x, ldx, gx, ldgx, c, h, ldh);
}
static void kc_128(int a, int b, int H, int K, int B, const float *pw, const float *x, int ldx, const float *gx,
                   int ldgx, float *c, float *h, int ldh) {
    if (B <= 6) gate_cell_bn(0, BN_PF, BN_CR, a, b, H, K, B, pw, x, ldx, gx, ldgx, c, h, ldh);
    else gate_cell_bn(128, 0, BN_CR, a, b, H, K, B, pw, x, ldx, gx, ldgx, c, h, ldh);
}
#pragma GCC pop_options

enum { NV = 8, MAXP = 64 };
static const char *names[NV] = {"e0", "e1", "e2", "e3", "e6", "lib", "kc0", "kc128"};

typedef struct shape {
    int H, K, B, nblk;
    float *pw, *x, *gx, *c, *h, *c0, *h0;
} shape;

static fl_rng g_rng;
static float *rbuf(size_t n, float a) {
    float *p = fl_malloc((n ? n : 1) * sizeof(float));
    if (!p) {
        fprintf(stderr, "bench_epi: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = fl_rng_uniform_range(&g_rng, -a, a);
    return p;
}

static void call(bn_fn f, const shape *s) {
    if (f) f(0, s->nblk, s->H, s->K, s->B, s->pw, s->x, s->K ? s->K : 1, s->gx, 4 * s->H, s->c, s->h, s->H);
    else fl_kernels_by_name("avx512")->gate_cell(0, s->nblk, s->H, s->K, s->B, s->pw, s->x, s->K ? s->K : 1,
                                                 s->gx, 4 * s->H, s->c, s->h, s->H);
}

int main(int argc, char **argv) {
    int pairs = 16;
    double sample_s = 3e-3;
    int dims[64][3], nd = 0, i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--pairs") && i + 1 < argc) pairs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--sample-ms") && i + 1 < argc) sample_s = atof(argv[++i]) * 1e-3;
        else break;
    }
    for (; i + 2 < argc && nd < 64; i += 3, nd++)
        for (int j = 0; j < 3; j++) dims[nd][j] = atoi(argv[i + j]);
    if (i < argc || pairs < 2 || pairs > MAXP || sample_s <= 0) {
        fprintf(stderr, "usage: bench_epi [--pairs n (2..64)] [--sample-ms m] [H K B ...]\n");
        return 2;
    }
    if (!fl_kernels_by_name("avx512")) {
        fprintf(stderr, "bench_epi: this CPU lacks AVX-512 (F/VL/DQ/BW)\n");
        return 1;
    }
    static const int def[][3] = {{128, 128, 256}, {128, 0, 256}, {256, 256, 64}, {256, 0, 64}, {650, 40, 20},
                                 {650, 0, 20}, {650, 160, 20}, {650, 650, 20}, {1500, 1500, 20}, {650, 650, 4}};
    if (nd == 0)
        for (; nd < (int)(sizeof def / sizeof def[0]); nd++) memcpy(dims[nd], def[nd], sizeof def[nd]);
    const bn_fn fns[NV] = {epi_0, epi_1, epi_2, epi_3, epi_6, NULL, kc_0, kc_128};
    fl_rng_seed(&g_rng, 7);
    for (int d = 0; d < nd; d++) {
        shape s = {.H = dims[d][0], .K = dims[d][1], .B = dims[d][2]};
        if (s.H < 1 || s.K < 0 || s.B < 2) {
            fprintf(stderr, "bench_epi: H >= 1, K >= 0, B >= 2 (got %d %d %d)\n", s.H, s.K, s.B);
            return 2;
        }
        s.nblk = (s.H + 15) / 16;
        const size_t nc = (size_t)s.B * s.H, Kx = s.K ? s.K : 1;
        s.pw = rbuf((size_t)s.nblk * Kx * 64, 0.04f), s.x = rbuf((size_t)s.B * Kx, 1.0f);
        s.gx = rbuf(4 * nc, 4.0f), s.c = rbuf(nc, 1.0f), s.h = rbuf(nc, 1.0f);
        s.c0 = fl_malloc(nc * sizeof(float)), s.h0 = fl_malloc(nc * sizeof(float));
        float *cr = fl_malloc(nc * sizeof(float)), *hr = fl_malloc(nc * sizeof(float));
        if (!s.c0 || !s.h0 || !cr || !hr) return 1;
        memcpy(s.c0, s.c, nc * sizeof(float)), memcpy(s.h0, s.h, nc * sizeof(float));
        for (int v = 0; v < NV; v++) { /* same state in, same bits out */
            memcpy(s.c, s.c0, nc * sizeof(float)), memcpy(s.h, s.h0, nc * sizeof(float));
            call(fns[v], &s);
            if (v == 0) memcpy(cr, s.c, nc * sizeof(float)), memcpy(hr, s.h, nc * sizeof(float));
            else if (memcmp(cr, s.c, nc * sizeof(float)) || memcmp(hr, s.h, nc * sizeof(float))) {
                fprintf(stderr, "bench_epi: %s differs from e0 at H %d K %d B %d\n", names[v], s.H, s.K, s.B);
                return 1;
            }
        }
        double t0 = bench_now(true);
        call(fns[0], &s);
        const double one = bench_now(true) - t0;
        int calls = (int)(sample_s / (one > 2e-8 ? one : 2e-8));
        calls = calls < 1 ? 1 : calls;
        double t[NV][MAXP], r[NV][MAXP];
        for (int p = 0; p < pairs; p++)
            for (int j = 0; j < NV; j++) {
                const int v = p % 2 ? NV - 1 - j : j;
                memcpy(s.c, s.c0, nc * sizeof(float));
                t0 = bench_now(true);
                for (int n = 0; n < calls; n++) call(fns[v], &s);
                t[v][p] = (bench_now(true) - t0) / calls;
            }
        for (int p = 0; p < pairs; p++)
            for (int v = 0; v < NV; v++) r[v][p] = t[v][p] / t[0][p];
        const double flops = 8.0 * s.B * s.H * s.K;
        printf("H %4d K %4d B %3d", s.H, s.K, s.B);
        for (int v = 0; v < NV; v++) {
            const double med = bench_summarize(t[v], pairs).med;
            printf(" | %s %7.2f us", names[v], med * 1e6);
            if (flops > 0) printf(" %5.1f GF/s", flops / med / 1e9);
            if (v > 0) printf(" x%.3f", bench_summarize(r[v], pairs).med);
        }
        printf("\n");
        fflush(stdout);
        float *f[] = {s.pw, s.x, s.gx, s.c, s.h, s.c0, s.h0, cr, hr};
        for (size_t q = 0; q < sizeof f / sizeof *f; q++) fl_free(f[q]);
    }
    return 0;
}
