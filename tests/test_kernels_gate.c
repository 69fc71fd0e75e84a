/* gate_cell at batches above 1, every level this CPU has, at the shapes the fast kernels' K chunks
 * (avx2: 64 k, copied per chunk into a row buffer; 5- and 6-row tiles run 4 k per step) and row tiles
 * make awkward (test_kernels_batch covers the block ranges, K = 0 and the batch-1 path):
 *   against double   K = 3, 31, 33, 61, 63, 65, 97, 129, 200 (not a multiple of 4 nor of the chunk; a
 *                    last chunk of 1 to 63 k), B = 2, 3, 5, 6, 7, 13, 20, 32, 37 (2- and 3-row groups,
 *                    tiles of 4 to 6 rows, a group of 36 then a lone row), H = 17 and 40 (a half-empty
 *                    last block), x at an odd float offset with a row stride that is not a multiple of 8.
 *   bit for bit      the summation order is a function of K alone: each row's c and h equal, to the
 *                    bit, those of the same row run in batches of other sizes (2, 3, 5, 7 rows) and in
 *                    a call over a sub-range of the blocks (threads split blocks).
 * Tolerance as in test_kernels_batch: 1e-5 of (1 + the sum of |terms|) for c and h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "kernels/kernels.h"

static const char *const LEVELS[] = {"ref", "avx2", "avx512"};

static float uni(uint64_t *s, float lo, float hi) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + (hi - lo) * (float)((*s >> 40) / (double)(1ULL << 24));
}

static double sigm(double x) { return 1.0 / (1.0 + exp(-x)); }

/* A random step: W (4H, K), x (B, ldx) from x0 = xbuf + 1 (an odd float offset: unaligned), gx
 * (B, 4H), c (B, H); pw the gate panel (nblk, K, 4, NB), zero past H (kernels.h). */
typedef struct step {
    int H, K, B, ldx, nblk;
    float *w, *xbuf, *x, *gx, *c0, *pw;
} step;

static step step_new(int H, int K, int B, uint64_t seed) {
    const int NB = FL_REC_NB;
    step t = {.H = H, .K = K, .B = B, .ldx = K + 5, .nblk = (H + NB - 1) / NB};
    uint64_t s = seed;
    t.w = malloc(((size_t)4 * H * K + 1) * sizeof(float));
    t.xbuf = malloc(((size_t)B * t.ldx + 1) * sizeof(float));
    t.gx = malloc((size_t)B * 4 * H * sizeof(float));
    t.c0 = malloc((size_t)B * H * sizeof(float));
    t.pw = fl_calloc((size_t)t.nblk * K * 4 * NB + 1, sizeof(float));
    assert_true(t.w && t.xbuf && t.gx && t.c0 && t.pw);
    t.x = t.xbuf + 1;
    for (size_t i = 0; i < (size_t)4 * H * K; i++) t.w[i] = uni(&s, -0.3f, 0.3f);
    for (size_t i = 0; i < (size_t)B * t.ldx + 1; i++) t.xbuf[i] = uni(&s, -1, 1);
    for (size_t i = 0; i < (size_t)B * 4 * H; i++) t.gx[i] = uni(&s, -2, 2);
    for (size_t i = 0; i < (size_t)B * H; i++) t.c0[i] = uni(&s, -1, 1);
    for (int blk = 0; blk < t.nblk; blk++)
        for (int k = 0; k < K; k++)
            for (int g = 0; g < 4; g++)
                for (int u = 0; u < NB && blk * NB + u < H; u++)
                    t.pw[(((size_t)blk * K + k) * 4 + g) * NB + u] = t.w[((size_t)g * H + blk * NB + u) * K + k];
    return t;
}

static void step_free(step *t) {
    free(t->w), free(t->xbuf), free(t->gx), free(t->c0);
    fl_free(t->pw);
}

/* Rows [r0, r0 + n) of t through level k's gate_cell on blocks [blk0, blk1): c (n, H) from c0, h (n, H). */
static void run_rows(const fl_kernels *k, const step *t, int r0, int n, int blk0, int blk1, float *c, float *h) {
    const int H = t->H;
    memcpy(c, t->c0 + (size_t)r0 * H, (size_t)n * H * sizeof(float));
    k->gate_cell(blk0, blk1, H, t->K, n, t->pw, t->x + (size_t)r0 * t->ldx, t->ldx, t->gx + (size_t)r0 * 4 * H, 4 * H,
                 c, h, H);
}

/* c and h of all B rows against the double-precision step. */
static void check_double(const fl_kernels *k, const step *t, const float *c, const float *h) {
    const int H = t->H, K = t->K;
    for (int b = 0; b < t->B; b++)
        for (int j = 0; j < H; j++) {
            double g[4], mag = 0;
            for (int q = 0; q < 4; q++) {
                double acc = t->gx[(size_t)b * 4 * H + (size_t)q * H + j], m = fabs(acc);
                for (int kk = 0; kk < K; kk++) {
                    const double p = (double)t->w[((size_t)q * H + j) * K + kk] * t->x[(size_t)b * t->ldx + kk];
                    acc += p, m += fabs(p);
                }
                g[q] = acc, mag = fmax(mag, m);
            }
            const double cn = sigm(g[1]) * t->c0[(size_t)b * H + j] + sigm(g[0]) * tanh(g[2]);
            const double hn = sigm(g[3]) * tanh(cn), tol = 1e-5 * (1.0 + mag);
            const double gc = c[(size_t)b * H + j], gh = h[(size_t)b * H + j];
            if (!(fabs(gc - cn) <= tol) || !(fabs(gh - hn) <= tol))
                fail_msg("%s gate_cell H %d K %d B %d: row %d unit %d: c %g vs %g, h %g vs %g", k->name, H, K, t->B, b, j,
                         gc, cn, gh, hn);
        }
}

static void assert_same(const fl_kernels *k, const step *t, const char *how, const float *a, const float *b, size_t n) {
    if (memcmp(a, b, n * sizeof(float)) != 0)
        fail_msg("%s gate_cell H %d K %d B %d: %s differs from the whole batch", k->name, t->H, t->K, t->B, how);
}

static void test_gate_cell_chunks(void **state) {
    (void)state;
    static const int Hs[] = {17, 40}, Ks[] = {3, 31, 33, 61, 63, 65, 97, 129, 200},
                     Bs[] = {2, 3, 5, 6, 7, 13, 20, 32, 37};
    int levels = 0;
    for (size_t li = 0; li < sizeof LEVELS / sizeof *LEVELS; li++) {
        const fl_kernels *k = fl_kernels_by_name(LEVELS[li]);
        if (!k) continue;
        levels++;
        for (size_t hi = 0; hi < sizeof Hs / sizeof *Hs; hi++)
            for (size_t ki = 0; ki < sizeof Ks / sizeof *Ks; ki++)
                for (size_t bi = 0; bi < sizeof Bs / sizeof *Bs; bi++) {
                    const int H = Hs[hi], K = Ks[ki], B = Bs[bi];
                    step t = step_new(H, K, B, 5000 + (uint64_t)(H * 131 + K * 17 + B));
                    float *c = malloc((size_t)B * H * sizeof(float)), *h = malloc((size_t)B * H * sizeof(float));
                    assert_true(c && h);
                    run_rows(k, &t, 0, B, 0, t.nblk, c, h);
                    check_double(k, &t, c, h);
                    free(c), free(h);
                    step_free(&t);
                }
    }
    assert_true(levels >= 1);
}

/* Each row in batches of 2, 3, 5 and 7 rows (the last batch of each split may be shorter, but
 * above 1 row), and all rows over two block ranges: bit for bit the whole batch's rows. */
static void test_gate_cell_order(void **state) {
    (void)state;
    static const int Ks[] = {33, 97, 129, 200}, splits[] = {2, 3, 5, 7};
    for (size_t li = 0; li < sizeof LEVELS / sizeof *LEVELS; li++) {
        const fl_kernels *k = fl_kernels_by_name(LEVELS[li]);
        if (!k) continue;
        for (size_t ki = 0; ki < sizeof Ks / sizeof *Ks; ki++) {
            const int H = 40, K = Ks[ki], B = 37;
            step t = step_new(H, K, B, 7000 + (uint64_t)K);
            const size_t n = (size_t)B * H;
            float *c = malloc(n * sizeof(float)), *h = malloc(n * sizeof(float));
            float *c2 = malloc(n * sizeof(float)), *h2 = malloc(n * sizeof(float));
            assert_true(c && h && c2 && h2);
            run_rows(k, &t, 0, B, 0, t.nblk, c, h);
            for (size_t si = 0; si < sizeof splits / sizeof *splits; si++) {
                for (int r0 = 0; r0 < B;) {
                    int m = B - r0 < splits[si] ? B - r0 : splits[si];
                    if (B - r0 - m == 1) m++; /* no lone last row: batch 1 is another kernel */
                    run_rows(k, &t, r0, m, 0, t.nblk, c2 + (size_t)r0 * H, h2 + (size_t)r0 * H);
                    r0 += m;
                }
                assert_same(k, &t, "rows in smaller batches", c, c2, n);
                assert_same(k, &t, "rows in smaller batches (h)", h, h2, n);
            }
            /* blocks [0, 1) then [1, nblk): h of each range written by its own call */
            memcpy(c2, t.c0, n * sizeof(float));
            k->gate_cell(0, 1, H, K, B, t.pw, t.x, t.ldx, t.gx, 4 * H, c2, h2, H);
            k->gate_cell(1, t.nblk, H, K, B, t.pw, t.x, t.ldx, t.gx, 4 * H, c2, h2, H);
            assert_same(k, &t, "a split of the blocks", c, c2, n);
            assert_same(k, &t, "a split of the blocks (h)", h, h2, n);
            free(c), free(h), free(c2), free(h2);
            step_free(&t);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gate_cell_chunks),
        cmocka_unit_test(test_gate_cell_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
