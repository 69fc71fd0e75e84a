/* Batch kernels of every level this CPU has (and ref) against double-precision sums, at the shapes
 * that reach each code path of the fast versions:
 *   gate_cell  batches from 1 to 47 (row tiles of 1 to 6 rows, two and four gates per tile, several
 *              tiles and row groups per block), hidden sizes that are not a multiple of the 16-unit block
 *              (one and two ymm halves, a last block of 1 unit), K = 0, K < 8, and K across several K chunks;
 *              a range of blocks [blk0, blk1) inside the panel, padded strides, and units outside
 *              the range untouched.
 *   cp_gate_cell  the same hidden sizes and short K, batches 1 to 9, 20 and 37 (2-row tiles and a lone
 *              row), block ranges inside the panel.
 *   gemm_pk    K = 0 (y = bias) and K on both sides of the fast kernel's K blocks (avx2: <= 128 k up
 *              to 160 rows, else <= 700 k: 1, 127, 128, 129, 257, 700, 701, 1300, 1401; block lengths
 *              not a multiple of its 4-step prefetch stride), row counts with partial 16-column
 *              quarters and 64-column panels, n with every size of row tile (1, 5, 7, 35, 48, 63,
 *              65) and on both sides of the 160-row limit of the prefetching path, more than one X
 *              chunk, with and without the bias.
 * Sums are compared against the sum of |terms| (float summation error scales with it): gates and
 * products to 2e-6 of it, c and h after the cell update to 1e-5 (the nonlinearities add a few ulp). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "kernels/kernels.h"

#define SENTINEL 12345.0f

static const char *const LEVELS[] = {"ref", "avx2", "avx512"};

/* Deterministic uniform in [lo, hi). */
static float uni(uint64_t *s, float lo, float hi) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + (hi - lo) * (float)((*s >> 40) / (double)(1ULL << 24));
}

static double sigm(double x) { return 1.0 / (1.0 + exp(-x)); }

/* W (4H, K) row-major -> gate panel pw (nblk, K, 4, NB), zero past H (kernels.h), written here
 * independently of recurrent.c's packing; 64-byte aligned (fl_malloc) as the kernels need. */
static float *pack_gate(const float *w, int H, int K) {
    const int NB = FL_REC_NB, nblk = (H + NB - 1) / NB;
    float *pw = fl_calloc((size_t)nblk * K * 4 * NB + 1, sizeof(float));
    assert_non_null(pw);
    for (int blk = 0; blk < nblk; blk++)
        for (int k = 0; k < K; k++)
            for (int g = 0; g < 4; g++)
                for (int u = 0; u < NB && blk * NB + u < H; u++)
                    pw[(((size_t)blk * K + k) * 4 + g) * NB + u] = w[((size_t)g * H + blk * NB + u) * K + k];
    return pw;
}

/* The gate products of the kernel under test, in double: gate q of unit j in row b, and the sum
 * of the products' magnitudes (for the tolerance). */
typedef double (*gate_sum_fn)(const void *ctx, int b, int q, int j, double *mag);

/* After one gate_cell / cp_gate_cell call of level k on blocks [blk0, blk1): c and h against the
 * double-precision cell update of gx + the gate products; units outside the range and the pads
 * between rows of h untouched. */
static void verify_cells(const char *what, const fl_kernels *k, int H, int K, int B, int blk0, int blk1,
                         const float *gx, int ldgx, const float *c0, const float *c, const float *h, int ldh,
                         gate_sum_fn sum, const void *ctx) {
    const int NB = FL_REC_NB, j0 = blk0 * NB, j1 = blk1 * NB < H ? blk1 * NB : H;
    for (int b = 0; b < B; b++)
        for (int j = 0; j < H; j++) {
            const float got_c = c[(size_t)b * H + j], got_h = h[(size_t)b * ldh + j];
            if (j < j0 || j >= j1) { /* outside the block range: untouched */
                if (got_c != c0[(size_t)b * H + j] || got_h != SENTINEL)
                    fail_msg("%s %s H %d K %d B %d blocks [%d, %d): row %d unit %d written", k->name, what, H, K, B,
                             blk0, blk1, b, j);
                continue;
            }
            double g[4], mag = 0;
            for (int q = 0; q < 4; q++) {
                double m = 0;
                g[q] = gx[(size_t)b * ldgx + (size_t)q * H + j] + sum(ctx, b, q, j, &m);
                mag = fmax(mag, m + fabs(gx[(size_t)b * ldgx + (size_t)q * H + j]));
            }
            const double cn = sigm(g[1]) * c0[(size_t)b * H + j] + sigm(g[0]) * tanh(g[2]);
            const double hn = sigm(g[3]) * tanh(cn), tol = 1e-5 * (1.0 + mag);
            if (!(fabs(got_c - cn) <= tol) || !(fabs(got_h - hn) <= tol))
                fail_msg("%s %s H %d K %d B %d blocks [%d, %d): row %d unit %d: c %g vs %g, h %g vs %g", k->name, what,
                         H, K, B, blk0, blk1, b, j, (double)got_c, cn, (double)got_h, hn);
        }
    for (int b = 0; b < B; b++) /* pads between rows of h untouched */
        for (int j = H; j < ldh; j++) assert_true(h[(size_t)b * ldh + j] == SENTINEL);
}

typedef struct dense_ctx {
    const float *w, *x;
    int H, K, ldx;
} dense_ctx;

static double dense_sum(const void *ctx, int b, int q, int j, double *mag) {
    const dense_ctx *d = ctx;
    double acc = 0;
    for (int kk = 0; kk < d->K; kk++) {
        const double p = (double)d->w[((size_t)q * d->H + j) * d->K + kk] * d->x[(size_t)b * d->ldx + kk];
        acc += p, *mag += fabs(p);
    }
    return acc;
}

typedef struct cp_ctx {
    const float *bf, *zs;
    int K;
} cp_ctx;

static double cp_sum(const void *ctx, int b, int q, int j, double *mag) {
    const cp_ctx *d = ctx;
    double acc = 0;
    for (int kk = 0; kk < d->K; kk++) {
        const double p = (double)d->bf[(size_t)j * d->K + kk] * d->zs[((size_t)b * 4 + q) * d->K + kk];
        acc += p, *mag += fabs(p);
    }
    return acc;
}

/* One gate_cell call of level k on blocks [blk0, blk1) of a random (H, K) problem with B rows,
 * against the double-precision step. */
static void check_gate_cell(const fl_kernels *k, int H, int K, int B, int blk0, int blk1, uint64_t seed) {
    const int ldx = K + 3, ldgx = 4 * H + 5, ldh = H + 2;
    uint64_t s = seed;
    float *w = malloc(((size_t)4 * H * K + 1) * sizeof(float)), *x = malloc(((size_t)B * ldx + 1) * sizeof(float));
    float *gx = malloc((size_t)B * ldgx * sizeof(float)), *c = malloc((size_t)B * H * sizeof(float));
    float *c0 = malloc((size_t)B * H * sizeof(float)), *h = malloc((size_t)B * ldh * sizeof(float));
    assert_true(w && x && gx && c && c0 && h);
    for (size_t i = 0; i < (size_t)4 * H * K; i++) w[i] = uni(&s, -0.3f, 0.3f);
    for (int i = 0; i < B * ldx; i++) x[i] = uni(&s, -1, 1);
    for (int i = 0; i < B * ldgx; i++) gx[i] = uni(&s, -2, 2);
    for (int i = 0; i < B * H; i++) c[i] = c0[i] = uni(&s, -1, 1);
    for (int i = 0; i < B * ldh; i++) h[i] = SENTINEL;
    float *pw = pack_gate(w, H, K);
    k->gate_cell(blk0, blk1, H, K, B, pw, x, ldx, gx, ldgx, c, h, ldh);
    const dense_ctx d = {w, x, H, K, ldx};
    verify_cells("gate_cell", k, H, K, B, blk0, blk1, gx, ldgx, c0, c, h, ldh, dense_sum, &d);
    fl_free(pw);
    free(w), free(x), free(gx), free(c), free(c0), free(h);
}

/* One cp_gate_cell call of level k on blocks [blk0, blk1) of a random CP problem (H units, rank K,
 * B rows), against the double-precision step: gate q of unit j = gx + sum_k b[j, k] zs[row, q, k]. */
static void check_cp_gate_cell(const fl_kernels *k, int H, int K, int B, int blk0, int blk1, uint64_t seed) {
    const int NB = FL_REC_NB, nblk = (H + NB - 1) / NB, ldgx = 4 * H + 5, ldh = H + 2;
    uint64_t s = seed;
    float *bf = malloc(((size_t)H * K + 1) * sizeof(float)), *zs = malloc(((size_t)B * 4 * K + 1) * sizeof(float));
    float *gx = malloc((size_t)B * ldgx * sizeof(float)), *c = malloc((size_t)B * H * sizeof(float));
    float *c0 = malloc((size_t)B * H * sizeof(float)), *h = malloc((size_t)B * ldh * sizeof(float));
    float *pb = fl_calloc((size_t)nblk * K * NB + 1, sizeof(float)); /* (nblk, K, NB), zero past H */
    assert_true(bf && zs && gx && c && c0 && h && pb);
    for (size_t i = 0; i < (size_t)H * K; i++) bf[i] = uni(&s, -0.3f, 0.3f); /* b (H, K) */
    for (size_t i = 0; i < (size_t)B * 4 * K; i++) zs[i] = uni(&s, -1, 1);
    for (int i = 0; i < B * ldgx; i++) gx[i] = uni(&s, -2, 2);
    for (int i = 0; i < B * H; i++) c[i] = c0[i] = uni(&s, -1, 1);
    for (int i = 0; i < B * ldh; i++) h[i] = SENTINEL;
    for (int j = 0; j < H; j++)
        for (int kk = 0; kk < K; kk++) pb[((size_t)(j / NB) * K + kk) * NB + j % NB] = bf[(size_t)j * K + kk];
    k->cp_gate_cell(blk0, blk1, H, K, B, pb, zs, gx, ldgx, c, h, ldh);
    const cp_ctx d = {bf, zs, K};
    verify_cells("cp_gate_cell", k, H, K, B, blk0, blk1, gx, ldgx, c0, c, h, ldh, cp_sum, &d);
    fl_free(pb);
    free(bf), free(zs), free(gx), free(c), free(c0), free(h);
}

/* cp_gate_cell: batches 1 to 9 (the fast kernels' 2-row tiles and a lone last row) and 20, 37; hidden
 * sizes with one and two ymm halves in the last block; rank 0, below 8 and long; block ranges. */
static void test_cp_gate_cell_batches(void **state) {
    (void)state;
    static const int Hs[] = {1, 7, 16, 17, 40}, Ks[] = {0, 1, 5, 33, 70}, Bs[] = {1, 2, 3, 4, 5, 8, 9, 20, 37};
    int levels = 0;
    for (size_t li = 0; li < sizeof LEVELS / sizeof *LEVELS; li++) {
        const fl_kernels *k = fl_kernels_by_name(LEVELS[li]);
        if (!k) continue;
        levels++;
        for (size_t hi = 0; hi < sizeof Hs / sizeof *Hs; hi++)
            for (size_t ki = 0; ki < sizeof Ks / sizeof *Ks; ki++)
                for (size_t bi = 0; bi < sizeof Bs / sizeof *Bs; bi++) {
                    const int H = Hs[hi], nblk = (H + FL_REC_NB - 1) / FL_REC_NB;
                    check_cp_gate_cell(k, H, Ks[ki], Bs[bi], 0, nblk, 2000 + (uint64_t)(H * 131 + Ks[ki] * 17 + Bs[bi]));
                }
        check_cp_gate_cell(k, 70, 90, 20, 1, 4, 21); /* a thread's block range */
        check_cp_gate_cell(k, 70, 300, 3, 2, 3, 22);
        check_cp_gate_cell(k, 33, 300, 7, 1, 3, 23);
    }
    assert_true(levels >= 1);
}

static void test_gate_cell_batches(void **state) {
    (void)state;
    static const int Hs[] = {1, 7, 16, 17, 40}, Ks[] = {0, 1, 5, 33, 70};
    int levels = 0;
    for (size_t li = 0; li < sizeof LEVELS / sizeof *LEVELS; li++) {
        const fl_kernels *k = fl_kernels_by_name(LEVELS[li]);
        if (!k) continue;
        levels++;
        for (size_t hi = 0; hi < sizeof Hs / sizeof *Hs; hi++)
            for (size_t ki = 0; ki < sizeof Ks / sizeof *Ks; ki++)
                for (int B = 1; B <= 40; B += (B < 14 ? 1 : 3)) {
                    const int H = Hs[hi], nblk = (H + FL_REC_NB - 1) / FL_REC_NB;
                    check_gate_cell(k, H, Ks[ki], B, 0, nblk, 1000 + (uint64_t)(H * 131 + Ks[ki] * 17 + B));
                }
        /* a block range inside the panel (a thread's share), a long K, batches past 36 rows */
        check_gate_cell(k, 70, 90, 20, 1, 4, 7);
        check_gate_cell(k, 70, 90, 3, 2, 3, 8);
        check_gate_cell(k, 33, 300, 38, 0, 3, 9);
        check_gate_cell(k, 33, 300, 47, 1, 3, 10);
        check_gate_cell(k, 17, 40, 37, 0, 2, 11); /* a group of 36 rows, then a lone row */
    }
    assert_true(levels >= 1);
}

/* ------------------------------------------------------------ gemm_pk */

/* W (rows, K) -> pk (ceil(rows / NC), K, NC), zero past rows (kernels.h). */
static float *pack_pk(const float *w, int rows, int K) {
    const int NC = FL_PK_NC, np = (rows + NC - 1) / NC;
    float *pk = fl_calloc((size_t)np * K * NC + 1, sizeof(float));
    assert_non_null(pk);
    for (int p = 0; p < np; p++)
        for (int k = 0; k < K; k++)
            for (int u = 0; u < NC && p * NC + u < rows; u++) pk[((size_t)p * K + k) * NC + u] = w[((size_t)p * NC + u) * K + k];
    return pk;
}

static void check_gemm_pk(const fl_kernels *k, int n, int rows, int K, int with_bias, uint64_t seed) {
    const int ldx = K + 3, ldy = rows + 2;
    uint64_t s = seed;
    float *x = malloc((size_t)n * ldx * sizeof(float)), *w = malloc(((size_t)rows * K + 1) * sizeof(float)); /* K = 0 too */
    float *bias = malloc((size_t)rows * sizeof(float)), *y = malloc((size_t)n * ldy * sizeof(float));
    assert_true(x && w && bias && y);
    for (int i = 0; i < n * ldx; i++) x[i] = uni(&s, -1, 1);
    for (int i = 0; i < rows * K; i++) w[i] = uni(&s, -1, 1);
    for (int i = 0; i < rows; i++) bias[i] = uni(&s, -1, 1);
    for (int i = 0; i < n * ldy; i++) y[i] = SENTINEL;
    float *pk = pack_pk(w, rows, K);
    if (k) k->gemm_pk(n, rows, K, x, ldx, pk, with_bias ? bias : NULL, y, ldy);
    else fl_kernels_gemm_pk_ref(n, rows, K, x, ldx, pk, with_bias ? bias : NULL, y, ldy);
    for (int i = 0; i < n; i++) {
        for (int r = 0; r < rows; r++) {
            double acc = with_bias ? bias[r] : 0.0, m = fabs(acc);
            for (int kk = 0; kk < K; kk++) {
                const double p = (double)x[(size_t)i * ldx + kk] * w[(size_t)r * K + kk];
                acc += p;
                m += fabs(p);
            }
            const float got = y[(size_t)i * ldy + r];
            if (!(fabs(got - acc) <= 2e-6 * m + 1e-30))
                fail_msg("%s gemm_pk n %d rows %d K %d bias %d: y[%d, %d] %g vs %g", k ? k->name : "ref-fn", n, rows, K,
                         with_bias, i, r, (double)got, acc);
        }
        for (int r = rows; r < ldy; r++) assert_true(y[(size_t)i * ldy + r] == SENTINEL);
    }
    fl_free(pk);
    free(x), free(w), free(bias), free(y);
}

static void test_gemm_pk_kblocks(void **state) {
    (void)state;
    static const int Ks[] = {0, 1, 127, 128, 129, 257, 700, 701}, rowss[] = {5, 64, 100, 150};
    static const int ns[] = {1, 5, 7, 35, 48, 63, 65};
    for (size_t li = 0; li < sizeof LEVELS / sizeof *LEVELS + 1; li++) {
        const fl_kernels *k = li < 3 ? fl_kernels_by_name(LEVELS[li]) : NULL; /* li == 3: the reference function */
        if (li < 3 && (!k || !k->gemm_pk)) continue;
        for (size_t ki = 0; ki < sizeof Ks / sizeof *Ks; ki++)
            for (size_t ri = 0; ri < sizeof rowss / sizeof *rowss; ri++)
                for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++)
                    check_gemm_pk(k, ns[ni], rowss[ri], Ks[ki], (int)((ki + ri + ni) % 2), 50 + ki * 100 + ri * 10 + ni);
        /* more rows than one X chunk of the fast kernel at a long K; two and three K blocks */
        check_gemm_pk(k, 300, 70, 1300, 1, 3);
        check_gemm_pk(k, 35, 130, 1300, 1, 4);
        check_gemm_pk(k, 97, 200, 1401, 0, 5);
        check_gemm_pk(k, 11, 17, 1401, 1, 6);
        check_gemm_pk(k, 160, 100, 257, 1, 7); /* the last n that prefetches, and the first that does not */
        check_gemm_pk(k, 161, 100, 257, 0, 8);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gate_cell_batches),
        cmocka_unit_test(test_cp_gate_cell_batches),
        cmocka_unit_test(test_gemm_pk_kblocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
