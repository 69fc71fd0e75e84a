/* gate_cell at batches above 1 over the K shapes of the fast kernels' K chunks (avx2: chunks of 32 k,
 * the next one prefetched during the current one, past the block's end the next block's first):
 * K of fewer than 4 chunks (1 to 128), chunk counts 5, 6, 7, 9 and 21, a short last
 * chunk, and K a multiple of the chunk. For every level this CPU has (and ref):
 *   - c and h against the double-precision cell update (the sum of |terms| sets the tolerance);
 *   - every two-range block split [0, m) + [m, nblk) gives the bits of the whole call (threads split
 *     blocks), and leaves units outside its range untouched;
 *   - each row's bits do not depend on the batch it runs in (rows 0..B-1 of a 37-row call against
 *     calls of 2, 3, 5 and 20 rows): the summation order is a function of K alone. */
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
static const int KS[] = {1, 7, 31, 32, 33, 64, 65, 96, 100, 127, 128, 129, 160, 161, 192, 224, 250, 257, 650};

#define SENTINEL 12345.0f
enum { BMAX = 37, LDPAD = 3 };

/* Deterministic uniform in [lo, hi). */
static float uni(uint64_t *s, float lo, float hi) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + (hi - lo) * (float)((*s >> 40) / (double)(1ULL << 24));
}

static double sigm(double x) { return 1.0 / (1.0 + exp(-x)); }

/* One random problem: W (4H, K) row-major, its panel pw (nblk, K, 4, NB) zero past H, BMAX rows of
 * x (BMAX, K + LDPAD), gx (BMAX, 4H + LDPAD) and c0 (BMAX, H). */
typedef struct problem {
    int H, K, nblk, ldx, ldgx, ldh;
    float *w, *pw, *x, *gx, *c0;
} problem;

static void problem_init(problem *pr, int H, int K, uint64_t seed) {
    const int NB = FL_REC_NB;
    uint64_t s = seed;
    pr->H = H, pr->K = K, pr->nblk = (H + NB - 1) / NB, pr->ldx = K + LDPAD, pr->ldgx = 4 * H + LDPAD, pr->ldh = H + 2;
    pr->w = malloc(((size_t)4 * H * K + 1) * sizeof(float));
    pr->x = malloc((size_t)BMAX * pr->ldx * sizeof(float));
    pr->gx = malloc((size_t)BMAX * pr->ldgx * sizeof(float));
    pr->c0 = malloc((size_t)BMAX * H * sizeof(float));
    pr->pw = fl_calloc((size_t)pr->nblk * K * 4 * NB + 1, sizeof(float)); /* 64-byte aligned, as the kernels need */
    assert_true(pr->w && pr->x && pr->gx && pr->c0 && pr->pw);
    for (size_t i = 0; i < (size_t)4 * H * K; i++) pr->w[i] = uni(&s, -0.3f, 0.3f);
    for (int i = 0; i < BMAX * pr->ldx; i++) pr->x[i] = uni(&s, -1, 1);
    for (int i = 0; i < BMAX * pr->ldgx; i++) pr->gx[i] = uni(&s, -2, 2);
    for (int i = 0; i < BMAX * H; i++) pr->c0[i] = uni(&s, -1, 1);
    for (int blk = 0; blk < pr->nblk; blk++)
        for (int k = 0; k < K; k++)
            for (int g = 0; g < 4; g++)
                for (int u = 0; u < NB && blk * NB + u < H; u++)
                    pr->pw[(((size_t)blk * K + k) * 4 + g) * NB + u] = pr->w[((size_t)g * H + blk * NB + u) * K + k];
}

static void problem_free(problem *pr) {
    fl_free(pr->pw);
    free(pr->w), free(pr->x), free(pr->gx), free(pr->c0);
}

/* Rows [r0, r0 + B) of the problem through one gate_cell call of level k on blocks [blk0, blk1):
 * c (B, H) from c0, h (B, ldh) from SENTINEL. */
static void run_cell(const fl_kernels *k, const problem *pr, int r0, int B, int blk0, int blk1, float *c, float *h) {
    memcpy(c, pr->c0 + (size_t)r0 * pr->H, (size_t)B * pr->H * sizeof(float));
    for (int i = 0; i < B * pr->ldh; i++) h[i] = SENTINEL;
    k->gate_cell(blk0, blk1, pr->H, pr->K, B, pr->pw, pr->x + (size_t)r0 * pr->ldx, pr->ldx,
                 pr->gx + (size_t)r0 * pr->ldgx, pr->ldgx, c, h, pr->ldh);
}

/* c and h of rows [0, B) after a whole-panel call against the double-precision step. */
static void verify(const fl_kernels *k, const problem *pr, int B, const float *c, const float *h) {
    const int H = pr->H, K = pr->K;
    for (int b = 0; b < B; b++)
        for (int j = 0; j < H; j++) {
            double g[4], mag = 0;
            for (int q = 0; q < 4; q++) {
                const double gxv = pr->gx[(size_t)b * pr->ldgx + (size_t)q * H + j];
                double acc = gxv, m = fabs(gxv);
                for (int kk = 0; kk < K; kk++) {
                    const double p = (double)pr->w[((size_t)q * H + j) * K + kk] * pr->x[(size_t)b * pr->ldx + kk];
                    acc += p, m += fabs(p);
                }
                g[q] = acc, mag = fmax(mag, m);
            }
            const double c0 = pr->c0[(size_t)b * H + j];
            const double cn = sigm(g[1]) * c0 + sigm(g[0]) * tanh(g[2]), hn = sigm(g[3]) * tanh(cn);
            const double tol = 1e-5 * (1.0 + mag);
            const float got_c = c[(size_t)b * H + j], got_h = h[(size_t)b * pr->ldh + j];
            if (!(fabs(got_c - cn) <= tol) || !(fabs(got_h - hn) <= tol))
                fail_msg("%s gate_cell H %d K %d B %d: row %d unit %d: c %g vs %g, h %g vs %g", k->name, H, K, B, b, j,
                         (double)got_c, cn, (double)got_h, hn);
        }
}

/* Bits of c and h in rows [0, B), units [j0, j1), against want_c / want_h; units outside, when
 * untouched_c0 (the rows' c0) is given, must be c0 and SENTINEL. ldw: want's row stride of h. */
static void same_bits(const char *what, const fl_kernels *k, const problem *pr, int B, int j0, int j1, const float *c,
                      const float *h, const float *want_c, const float *want_h, const float *untouched_c0) {
    const int H = pr->H, ldh = pr->ldh;
    for (int b = 0; b < B; b++)
        for (int j = 0; j < H; j++) {
            const float gc = c[(size_t)b * H + j], gh = h[(size_t)b * ldh + j];
            if (j >= j0 && j < j1) {
                if (memcmp(&gc, &want_c[(size_t)b * H + j], sizeof gc) || memcmp(&gh, &want_h[(size_t)b * ldh + j], sizeof gh))
                    fail_msg("%s gate_cell H %d K %d B %d %s: row %d unit %d: c %a vs %a, h %a vs %a", k->name, H, pr->K, B,
                             what, b, j, (double)gc, (double)want_c[(size_t)b * H + j], (double)gh,
                             (double)want_h[(size_t)b * ldh + j]);
            } else if (untouched_c0 && (gc != untouched_c0[(size_t)b * H + j] || gh != SENTINEL)) {
                fail_msg("%s gate_cell H %d K %d B %d %s: row %d unit %d written", k->name, H, pr->K, B, what, b, j);
            }
        }
}

static void test_segment_shapes(void **state) {
    (void)state;
    static const int Hs[] = {17, 40};
    int levels = 0;
    float *c = malloc((size_t)BMAX * 40 * sizeof(float)), *h = malloc((size_t)BMAX * 42 * sizeof(float));
    float *wc = malloc((size_t)BMAX * 40 * sizeof(float)), *wh = malloc((size_t)BMAX * 42 * sizeof(float));
    assert_true(c && h && wc && wh);
    for (size_t li = 0; li < sizeof LEVELS / sizeof *LEVELS; li++) {
        const fl_kernels *k = fl_kernels_by_name(LEVELS[li]);
        if (!k) continue;
        levels++;
        for (size_t hi = 0; hi < sizeof Hs / sizeof *Hs; hi++)
            for (size_t ki = 0; ki < sizeof KS / sizeof *KS; ki++) {
                problem pr;
                problem_init(&pr, Hs[hi], KS[ki], 77 + hi * 1000 + ki);
                const int H = pr.H, nblk = pr.nblk;
                /* the whole panel, 37 rows (a group of 36 and a lone row): against double precision */
                run_cell(k, &pr, 0, BMAX, 0, nblk, wc, wh);
                verify(k, &pr, BMAX, wc, wh);
                /* the same rows in smaller batches: the same bits */
                static const int Bs[] = {2, 3, 5, 20};
                for (size_t bi = 0; bi < sizeof Bs / sizeof *Bs; bi++)
                    for (int r0 = 0; r0 + Bs[bi] <= BMAX; r0 += Bs[bi] + 7) {
                        run_cell(k, &pr, r0, Bs[bi], 0, nblk, c, h);
                        same_bits("rows in a smaller batch", k, &pr, Bs[bi], 0, H, c, h, wc + (size_t)r0 * H,
                                  wh + (size_t)r0 * pr.ldh, NULL);
                    }
                /* every two-range block split of a 20-row batch: the whole call's bits */
                float *c20 = malloc((size_t)20 * H * sizeof(float)), *h20 = malloc((size_t)20 * pr.ldh * sizeof(float));
                assert_true(c20 && h20);
                run_cell(k, &pr, 0, 20, 0, nblk, c20, h20);
                for (int m = 1; m < nblk; m++) {
                    const int jm = m * FL_REC_NB;
                    run_cell(k, &pr, 0, 20, 0, m, c, h);
                    same_bits("blocks [0, m)", k, &pr, 20, 0, jm, c, h, c20, h20, pr.c0);
                    run_cell(k, &pr, 0, 20, m, nblk, c, h);
                    same_bits("blocks [m, nblk)", k, &pr, 20, jm, H, c, h, c20, h20, pr.c0);
                }
                free(c20), free(h20);
                problem_free(&pr);
            }
    }
    free(c), free(h), free(wc), free(wh);
    assert_true(levels >= 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_segment_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
