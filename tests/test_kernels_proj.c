/* The projection kernel t (B, Rp) = x (B, K) m (K, Rp) of every level this CPU has (and ref) against
 * double-precision sums, at the shapes that reach each code path of the fast versions: B = 1 .. 13
 * (row tiles of 1, 2 and 3 rows, several tiles), K = 1, 2, 3 (odd and even tails of the two k chains), 31 and 650, Rp = 16, 32, 48 and 176 (partial 32- and 64-column
 * chunks), row strides past K and Rp that are not multiples of 8 (unaligned rows), and the pads
 * between rows untouched. Sums are compared against the sum of |terms| (float summation error
 * scales with it), to 2e-6 of it.
 *
 * Every level also sums every output in one order whatever the batch (avx2.c, avx512.c): each row
 * of a batch gives the same bits as that row run alone, which the row and task schedules rely on
 * (test_rows_sched, test_bidir_sched). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
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

/* One shape at one level: t against double sums; pads untouched; each row also against that row
 * computed alone (B = 1), bit for bit. Returns the worst error relative to the sum of |terms|. */
static double check_shape(const fl_kernels *k, int B, int K, int Rp, int ldx, int ldt, uint64_t seed) {
    // m: (K, Rp) 64-byte aligned as recurrent.c packs it; x: (B, K) stride ldx; t: (B, Rp) stride ldt
    float *m = fl_malloc((size_t)K * Rp * sizeof(float));
    float *x = malloc((size_t)B * ldx * sizeof(float)), *t = malloc((size_t)B * ldt * sizeof(float));
    float *t1 = malloc((size_t)(Rp + 1) * sizeof(float));
    assert_true(m && x && t && t1);
    for (size_t i = 0; i < (size_t)K * Rp; i++) m[i] = uni(&seed, -1.0f, 1.0f);
    for (size_t i = 0; i < (size_t)B * ldx; i++) x[i] = uni(&seed, -1.0f, 1.0f);
    for (size_t i = 0; i < (size_t)B * ldt; i++) t[i] = SENTINEL;
    k->proj(B, K, Rp, m, x, ldx, t, ldt);
    double worst = 0;
    for (int b = 0; b < B; b++) {
        for (int r = 0; r < Rp; r++) {
            double s = 0, mag = 0;
            for (int q = 0; q < K; q++) {
                double p = (double)x[(size_t)b * ldx + q] * m[(size_t)q * Rp + r];
                s += p;
                mag += fabs(p);
            }
            worst = fmax(worst, fabs(t[(size_t)b * ldt + r] - s) / fmax(mag, 1e-30));
        }
        for (int r = Rp; r < ldt; r++)
            if (t[(size_t)b * ldt + r] != SENTINEL)
                fail_msg("proj %s B %d K %d Rp %d: pad t[%d, %d] written", k->name, B, K, Rp, b, r);
        t1[Rp] = SENTINEL;
        k->proj(1, K, Rp, m, x + (size_t)b * ldx, ldx, t1, Rp);
        assert_true(t1[Rp] == SENTINEL);
        if (memcmp(t1, t + (size_t)b * ldt, (size_t)Rp * sizeof(float)) != 0)
            fail_msg("proj %s B %d K %d Rp %d: row %d differs from the row alone", k->name, B, K, Rp, b);
    }
    fl_free(m);
    free(x), free(t), free(t1);
    return worst;
}

static void test_proj_shapes(void **state) {
    (void)state;
    static const int KS[] = {1, 2, 3, 31, 650}, RPS[] = {16, 32, 48, 176};
    int levels = 0;
    for (size_t li = 0; li < sizeof LEVELS / sizeof LEVELS[0]; li++) {
        const fl_kernels *k = fl_kernels_by_name(LEVELS[li]);
        if (!k) continue; /* this CPU lacks the level */
        levels++;
        uint64_t seed = 7;
        for (size_t ki = 0; ki < sizeof KS / sizeof KS[0]; ki++)
            for (size_t ri = 0; ri < sizeof RPS / sizeof RPS[0]; ri++)
                for (int B = 1; B <= 13; B++) {
                    const int K = KS[ki], Rp = RPS[ri];
                    // contiguous rows, then strides past K and Rp that are not a multiple of 8
                    for (int pad = 0; pad < 2; pad++) {
                        const int ldx = K + 3 * pad, ldt = Rp + 5 * pad;
                        double e = check_shape(k, B, K, Rp, ldx, ldt, seed++);
                        if (e > 2e-6)
                            fail_msg("proj %s B %d K %d Rp %d ldx %d ldt %d: rel err %.3g", k->name, B, K, Rp,
                                     ldx, ldt, e);
                    }
                }
    }
    assert_true(levels >= 1);
}

/* A row's bits do not depend on the batch it is in: a row of zeros among others gives exactly 0,
 * and a row repeated at every position of a batch gives the same bits at each. */
static void test_proj_rows_independent(void **state) {
    (void)state;
    enum { K = 37, Rp = 48, B = 11 };
    for (size_t li = 0; li < sizeof LEVELS / sizeof LEVELS[0]; li++) {
        const fl_kernels *k = fl_kernels_by_name(LEVELS[li]);
        if (!k) continue;
        uint64_t seed = 99;
        float *m = fl_malloc((size_t)K * Rp * sizeof(float));
        assert_non_null(m);
        float x[B * K], t[B * Rp];
        for (int i = 0; i < K * Rp; i++) m[i] = uni(&seed, -1.0f, 1.0f);
        for (int q = 0; q < K; q++) x[q] = uni(&seed, -2.0f, 2.0f);
        for (int b = 1; b < B; b++) memcpy(x + b * K, x, sizeof(float) * K);
        memset(x + 4 * K, 0, sizeof(float) * K); /* row 4: zeros */
        k->proj(B, K, Rp, m, x, K, t, Rp);
        for (int b = 0; b < B; b++)
            for (int r = 0; r < Rp; r++)
                if (b == 4 ? t[b * Rp + r] != 0.0f : memcmp(&t[b * Rp + r], &t[r], sizeof(float)) != 0)
                    fail_msg("proj %s: row %d column %d = %.9g, row 0 %.9g", k->name, b, r, t[b * Rp + r], t[r]);
        fl_free(m);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proj_shapes),
        cmocka_unit_test(test_proj_rows_independent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
