/* gate_cell at B > 1: today's AVX2 kernel against the one before kern15's changes (c497d3e, copied in
 * gate_before_avx2.h), both in this one process, calls alternating, so that the co-tenants of a shared
 * machine slow both alike (a whole-binary A/B here read identical binaries 30% apart):
 *
 *   bench_gate_ab [--cold] [--lib] [--pk [--pkbuf floats]] [--pairs n] [--H n] [--B n]
 *
 *   default   H 128, 256, 650, 1000 x B 4, 8, 20, 32 (K = H), the same weights call after call
 *             (L2 / L3-resident where they fit), one sample = enough calls for ~4 ms
 *   --cold    walk a 64 MB buffer before each timed call (not timed), so the panel comes from DRAM
 *             as in a session; one sample = one call
 *   --lib     "after" is the library's avx2 gate_cell (default: today's src/kernels/avx2.c compiled
 *             into this file under the same pragmas as the copy before)
 *   --pk      before = today's kernel, after = gate_cell_pkv below (kern13's experiment: the product
 *             through fl_gemm_pk_avx2 (the library's), --pkbuf floats of its output buffer, default 8192; lost, see avx2.c)
 *   --pairs   samples of each kernel (default 16), in the order ABBA BAAB ...
 * Per shape: the median time and GFLOP/s (2 B K 4H flops) of each, and the median over the pairs of
 * the ratio after / before (below 1: today's is faster), with its quartiles. Both kernels first run
 * once on the same state and must agree bit for bit (the summation order is a function of K alone),
 * else the line says DIFFER. Times are this thread's CPU time. Needs AVX2 + FMA. */
#include "internal.h"
#include "kernels/kernels.h"
#include "bench_util.h"
#include "gate_before_avx2.h"

/* Today's kernels compiled here too, under the same pragmas as the copy before, so that both sides
 * are built alike (the library's own avx2.c, compiled with -falign-functions=64, read 10% apart from
 * an identical copy built here: placement, not code). --lib times the library's instead. */
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#pragma GCC optimize("O3")
#define fl_kernels_avx2 bench_kernels_avx2
#include "../src/kernels/avx2.c"
#undef fl_kernels_avx2

/* kern13's contender (--pk): each few blocks' B > 1 product through gemm_pk's tiles (one call over
 * the blocks' panels side by side, (K, 64) each, bias NULL) into y (rows, 64 nb), then the cell
 * update from y and gx. Same sums as gate_group to the bit (one FMA chain from 0 per sum). */
enum { PKV_BUF = 32768 /* floats of y at most: 128 KB */ };
static int g_pkv_floats = 8192; /* --pkbuf: floats of y used (blocks per gemm_pk call: that / (64 rows)) */
static void gate_cell_pkv(int blk0, int blk1, int H, int K, int B, const float *restrict pw, const float *restrict x,
                          int ldx, const float *restrict gx, int ldgx, float *restrict c, float *restrict h, int ldh) {
    if (B == 1) {
        gate_cell_b1(blk0, blk1, H, K, pw, x, gx, c, h);
        return;
    }
    _Alignas(32) float y[PKV_BUF];
    const int rg = B < ROWS_PER_GROUP ? B : ROWS_PER_GROUP, gb = g_pkv_floats / (64 * rg) > 0 ? g_pkv_floats / (64 * rg) : 1;
    for (int b0 = blk0; b0 < blk1; b0 += gb) {
        const int nb = blk1 - b0 < gb ? blk1 - b0 : gb;
        for (int r0 = 0; r0 < B; r0 += ROWS_PER_GROUP) {
            const int nr = B - r0 < ROWS_PER_GROUP ? B - r0 : ROWS_PER_GROUP;
            fl_gemm_pk_avx2(nr, 64 * nb, K, x + (size_t)r0 * ldx, ldx, pw + (size_t)b0 * K * 64, NULL, y, 64 * nb);
            for (int bl = 0; bl < nb; bl++) {
                const int j0 = (b0 + bl) * 16;
                for (int hf = 0; hf < 2; hf++) {
                    const int n = half_count(H, j0, hf);
                    if (n == 0) break;
                    const int j = j0 + 8 * hf;
                    for (int b = 0; b < nr; b++) {
                        const float *pb = y + (size_t)b * 64 * nb + bl * 64 + 8 * hf;
                        const size_t r = (size_t)(r0 + b);
                        cell_store(_mm256_loadu_ps(pb), _mm256_loadu_ps(pb + 16), _mm256_loadu_ps(pb + 32),
                                   _mm256_loadu_ps(pb + 48), gx + r * ldgx + j, H, c + r * H + j, h + r * ldh + j, n);
                    }
                }
            }
        }
    }
}
#pragma GCC pop_options

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { EVICT_BYTES = 64 << 20, MAX_PAIRS = 256 };

typedef struct ab_run {
    const fl_kernels *k;
    int H, K, B, nblk;
    float *pw, *x, *gx, *c, *h;
} ab_run;

static unsigned char *g_evict; /* --cold */
static bool g_lib;             /* --lib: the library's avx2 gate_cell as "after" */
static bool g_pk;              /* --pk: before = today's gate_cell, after = gate_cell_pkv */

static void evict(void) {
    for (size_t i = 0; i < EVICT_BYTES; i += 64) g_evict[i]++;
}

static void call(const ab_run *r, bool after) {
    if (g_pk && after)
        gate_cell_pkv(0, r->nblk, r->H, r->K, r->B, r->pw, r->x, r->K, r->gx, 4 * r->H, r->c, r->h, r->H);
    else if (g_pk)
        bench_kernels_avx2.gate_cell(0, r->nblk, r->H, r->K, r->B, r->pw, r->x, r->K, r->gx, 4 * r->H, r->c, r->h, r->H);
    else if (after && g_lib)
        r->k->gate_cell(0, r->nblk, r->H, r->K, r->B, r->pw, r->x, r->K, r->gx, 4 * r->H, r->c, r->h, r->H);
    else if (after)
        bench_kernels_avx2.gate_cell(0, r->nblk, r->H, r->K, r->B, r->pw, r->x, r->K, r->gx, 4 * r->H, r->c, r->h, r->H);
    else
        before_gate_cell_avx2(0, r->nblk, r->H, r->K, r->B, r->pw, r->x, r->K, r->gx, 4 * r->H, r->c, r->h, r->H);
}

/* Seconds per call: m calls timed together (warm), or one call after evict() (cold, m = 1). */
static double sample(const ab_run *r, bool after, int m) {
    if (g_evict) evict();
    const double t0 = bench_now(true);
    for (int i = 0; i < m; i++) call(r, after);
    return (bench_now(true) - t0) / m;
}

static float *rand_buf(size_t n, fl_rng *rng, float a) {
    float *p = fl_malloc(n * sizeof(float));
    if (!p) {
        fprintf(stderr, "bench_gate_ab: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = fl_rng_uniform_range(rng, -a, a);
    return p;
}

/* Both kernels once from the same c: equal c and h bit for bit? */
static bool same_results(ab_run *r) {
    const size_t n = (size_t)r->B * r->H;
    float *c0 = fl_malloc(n * sizeof(float)), *c1 = fl_malloc(n * sizeof(float)), *h1 = fl_malloc(n * sizeof(float));
    if (!c0 || !c1 || !h1) exit(1);
    memcpy(c0, r->c, n * sizeof(float));
    call(r, false);
    memcpy(c1, r->c, n * sizeof(float));
    memcpy(h1, r->h, n * sizeof(float));
    memcpy(r->c, c0, n * sizeof(float));
    call(r, true);
    const bool same = !memcmp(c1, r->c, n * sizeof(float)) && !memcmp(h1, r->h, n * sizeof(float));
    fl_free(c0), fl_free(c1), fl_free(h1);
    return same;
}

static void run_ab(const fl_kernels *k, int H, int B, int pairs) {
    const int K = H, NB = FL_REC_NB, nblk = (H + NB - 1) / NB;
    fl_rng rng;
    fl_rng_seed(&rng, (uint64_t)H * 31 + (uint64_t)B);
    ab_run r = {.k = k, .H = H, .K = K, .B = B, .nblk = nblk};
    /* the panel (nblk, K, 4, 16) filled directly: the kernels read it the same whatever W it packs */
    r.pw = rand_buf((size_t)nblk * K * 4 * NB, &rng, 0.04f);
    for (int blk = 0; blk < nblk; blk++) /* units past H are 0, as the packing writes them */
        for (int kk = 0; kk < K; kk++)
            for (int g = 0; g < 4; g++)
                for (int u = 0; u < NB; u++)
                    if (blk * NB + u >= H) r.pw[(((size_t)blk * K + kk) * 4 + g) * NB + u] = 0;
    r.x = rand_buf((size_t)B * K, &rng, 1.0f);
    r.gx = rand_buf((size_t)B * 4 * H, &rng, 1.0f);
    r.c = rand_buf((size_t)B * H, &rng, 1.0f);
    r.h = rand_buf((size_t)B * H, &rng, 1.0f);
    const bool same = same_results(&r);
    int m = 1;
    if (!g_evict) { /* calls per sample: ~4 ms */
        call(&r, false), call(&r, true);
        const double one = sample(&r, false, 1);
        m = (int)(4e-3 / (one > 1e-7 ? one : 1e-7));
        if (m < 1) m = 1;
    }
    double tb[MAX_PAIRS], ta[MAX_PAIRS], ratio[MAX_PAIRS];
    for (int i = 0; i < pairs; i++) {
        if ((i ^ (i >> 1)) & 1) { /* ABBA BAAB: orders 0 1 1 0 ... */
            ta[i] = sample(&r, true, m);
            tb[i] = sample(&r, false, m);
        } else {
            tb[i] = sample(&r, false, m);
            ta[i] = sample(&r, true, m);
        }
        ratio[i] = ta[i] / tb[i];
    }
    const double flops = 2.0 * B * K * 4.0 * H;
    const double mb = bench_summarize(tb, pairs).med, ma = bench_summarize(ta, pairs).med;
    bench_summarize(ratio, pairs);
    printf("H %5d B %3d | before %8.1f us %5.1f GFLOP/s | after %8.1f us %5.1f GFLOP/s | after/before %.3f "
           "(quartiles %.3f %.3f) %s\n",
           H, B, mb * 1e6, flops / mb / 1e9, ma * 1e6, flops / ma / 1e9, ratio[pairs / 2], ratio[pairs / 4],
           ratio[(3 * pairs) / 4], same ? "same" : "DIFFER");
    fflush(stdout);
    fl_free(r.pw), fl_free(r.x), fl_free(r.gx), fl_free(r.c), fl_free(r.h);
}

int main(int argc, char **argv) {
    int oneH = 0, oneB = 0, pairs = 16;
    bool cold = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--cold")) cold = true;
        else if (!strcmp(argv[i], "--lib")) g_lib = true;
        else if (!strcmp(argv[i], "--pk")) g_pk = true;
        else if (!strcmp(argv[i], "--pkbuf") && i + 1 < argc) g_pkv_floats = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--pairs") && i + 1 < argc) pairs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--H") && i + 1 < argc) oneH = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--B") && i + 1 < argc) oneB = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_gate_ab [--cold] [--lib] [--pk [--pkbuf floats]] [--pairs n] [--H n] [--B n]\n");
            return 2;
        }
    }
    if (pairs < 1 || pairs > MAX_PAIRS || g_pkv_floats < 64 || g_pkv_floats > PKV_BUF || oneH < 0 || oneB == 1 || oneB < 0) {
        fprintf(stderr, "bench_gate_ab: --pairs 1..%d, --H > 0, --B > 1\n", MAX_PAIRS);
        return 2;
    }
    const fl_kernels *k = fl_kernels_by_name("avx2");
    if (!k) {
        fprintf(stderr, "bench_gate_ab: no avx2 kernels on this CPU\n");
        return 1;
    }
    if (cold && !(g_evict = calloc(EVICT_BYTES, 1))) {
        fprintf(stderr, "bench_gate_ab: out of memory\n");
        return 1;
    }
    printf("gate_cell B > 1, avx2: %s, %d pairs, thread CPU time, %s\n",
           g_pk ? "before = today's, after = through gemm_pk (--pk)" : "before (c497d3e) / after", pairs,
           cold ? "each call after evicting the caches (--cold)" : "warm");
    const int Hs[] = {128, 256, 650, 1000}, Bs[] = {4, 8, 20, 32};
    const int nH = oneH ? 1 : 4, nB = oneB ? 1 : 4;
    for (int hi = 0; hi < nH; hi++)
        for (int bi = 0; bi < nB; bi++) run_ab(k, oneH ? oneH : Hs[hi], oneB ? oneB : Bs[bi], pairs);
    free(g_evict);
    return 0;
}
