/* gemm_pk (packed input projection, Y = X W^T + bias) of every level this CPU has, at the shapes
 * the sessions run and awkward ones around them (test_kernels_batch covers each K block edge):
 *   values     against a double-precision sum, within 2e-6 of the sum of |terms| (float summation
 *              error scales with it), and against fl_kernels_gemm_pk_ref: n = 1, 7, 35, 140, 161
 *              (both sides of avx2's 160-row prefetching path), 701 (at K 651 chunks of 48 rows on AVX2, 198 on AVX-512, and a short
 *              last one); K = 1, 651 and 1299 (not a multiple of any K block); rows 70, 200 and 330
 *              (partial 16-column quarters and 64-column panels; n = 701 not at K = 1299); padded strides, columns past rows
 *              untouched.
 *   the order  each y element's sum is a function of K alone: a row's result does not depend on
 *              how many rows the call has nor where the row sits among them (a lone row equals the
 *              same row in a call of 701), and columns computed panel range by panel range, as
 *              fl_rec_gemm_pk splits them over threads, equal one call over all of them, bit for
 *              bit (the tests of thread splits compare whole sessions bit for bit).
 *   out chunks a call whose outputs exceed 1 MiB at a small K and W (AVX-512 then caps its row chunk
 *              at 48 rows, session 15): n = 301 (six chunks of 48 and one of 13), rows 1500, K 93
 *              (1.8 MB of outputs, W 571 KB), against the reference and a lone row / the first rows
 *              as calls of their own; and a 4-K x stride into a stripe of a 4-rows-wide y (a CP gate
 *              product of fl_rec_input_ws) at a column offset off a cache line's start. */
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

#define SENTINEL 12345.0f

static const char *const LEVELS[] = {"avx2", "avx512"};

/* Deterministic uniform in [lo, hi). */
static float uni(uint64_t *s, float lo, float hi) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + (hi - lo) * (float)((*s >> 40) / (double)(1ULL << 24));
}

/* One problem: x (n, ldx), w (rows, K), bias (rows), pk the packed w (ceil(rows / NC), K, NC). */
typedef struct problem {
    int n, rows, K, ldx, ldy;
    float *x, *w, *bias, *pk;
} problem;

static problem make(int n, int rows, int K, uint64_t seed) {
    const int NC = FL_PK_NC, np = (rows + NC - 1) / NC;
    problem p = {.n = n, .rows = rows, .K = K, .ldx = K + 5, .ldy = rows + 3};
    uint64_t s = seed;
    p.x = malloc((size_t)n * p.ldx * sizeof(float));
    p.w = malloc((size_t)rows * K * sizeof(float));
    p.bias = malloc((size_t)rows * sizeof(float));
    p.pk = fl_calloc((size_t)np * K * NC, sizeof(float));
    assert_true(p.x && p.w && p.bias && p.pk);
    for (size_t i = 0; i < (size_t)n * p.ldx; i++) p.x[i] = uni(&s, -1, 1);
    for (size_t i = 0; i < (size_t)rows * K; i++) p.w[i] = uni(&s, -1, 1);
    for (int i = 0; i < rows; i++) p.bias[i] = uni(&s, -1, 1);
    // pk[(pi K + k) NC + u] = W[pi NC + u, k] (kernels.h)
    for (int pi = 0; pi < np; pi++)
        for (int k = 0; k < K; k++)
            for (int u = 0; u < NC && pi * NC + u < rows; u++)
                p.pk[((size_t)pi * K + k) * NC + u] = p.w[((size_t)pi * NC + u) * K + k];
    return p;
}

static void drop(problem *p) {
    free(p->x), free(p->w), free(p->bias), fl_free(p->pk);
}

static float *sentinels(const problem *p) {
    float *y = malloc((size_t)p->n * p->ldy * sizeof(float));
    assert_non_null(y);
    for (size_t i = 0; i < (size_t)p->n * p->ldy; i++) y[i] = SENTINEL;
    return y;
}

/* y against double sums and against the reference function's y_ref; columns past rows untouched. */
static void check_values(const char *name, const problem *p, bool with_bias, const float *y, const float *y_ref) {
    for (int i = 0; i < p->n; i++) {
        const float *xi = p->x + (size_t)i * p->ldx;
        for (int r = 0; r < p->rows; r++) {
            double acc = with_bias ? p->bias[r] : 0.0, m = fabs(acc);
            for (int k = 0; k < p->K; k++) {
                const double t = (double)xi[k] * p->w[(size_t)r * p->K + k];
                acc += t;
                m += fabs(t);
            }
            const float got = y[(size_t)i * p->ldy + r], ref = y_ref[(size_t)i * p->ldy + r];
            if (!(fabs(got - acc) <= 2e-6 * m + 1e-30) || !(fabs(got - ref) <= 4e-6 * m + 1e-30))
                fail_msg("%s gemm_pk n %d rows %d K %d bias %d: y[%d, %d] %.9g, double %.9g, ref %.9g", name, p->n,
                         p->rows, p->K, (int)with_bias, i, r, (double)got, acc, (double)ref);
        }
        for (int r = p->rows; r < p->ldy; r++)
            if (y[(size_t)i * p->ldy + r] != SENTINEL)
                fail_msg("%s gemm_pk n %d rows %d K %d: y[%d, %d] past rows written", name, p->n, p->rows, p->K, i, r);
    }
}

static void test_gemm_pk_values(void **state) {
    (void)state;
    static const int ns[] = {1, 7, 35, 140, 161, 701}, Ks[] = {1, 651, 1299}, rowss[] = {70, 200, 330};
    for (size_t li = 0; li < sizeof LEVELS / sizeof *LEVELS; li++) {
        const fl_kernels *k = fl_kernels_by_name(LEVELS[li]);
        if (!k || !k->gemm_pk) continue;
        for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++)
            for (size_t ki = 0; ki < sizeof Ks / sizeof *Ks; ki++)
                for (size_t ri = 0; ri < sizeof rowss / sizeof *rowss; ri++) {
                    if (ns[ni] == 701 && Ks[ki] == 1299) continue; /* seconds of double sums under ASan */
                    const bool with_bias = (ni + ki + ri) % 2 == 0;
                    problem p = make(ns[ni], rowss[ri], Ks[ki], 1000 + ni * 100 + ki * 10 + ri);
                    float *y = sentinels(&p), *y_ref = sentinels(&p);
                    const float *b = with_bias ? p.bias : NULL;
                    k->gemm_pk(p.n, p.rows, p.K, p.x, p.ldx, p.pk, b, y, p.ldy);
                    fl_kernels_gemm_pk_ref(p.n, p.rows, p.K, p.x, p.ldx, p.pk, b, y_ref, p.ldy);
                    check_values(k->name, &p, with_bias, y, y_ref);
                    free(y), free(y_ref);
                    drop(&p);
                }
    }
}

/* A lone row, and any row in a call of n, give the same bits: the sum's order depends on K alone. */
static void test_gemm_pk_rows_independent(void **state) {
    (void)state;
    static const int Ks[] = {129, 651, 1299};
    for (size_t li = 0; li < sizeof LEVELS / sizeof *LEVELS; li++) {
        const fl_kernels *k = fl_kernels_by_name(LEVELS[li]);
        if (!k || !k->gemm_pk) continue;
        for (size_t ki = 0; ki < sizeof Ks / sizeof *Ks; ki++) {
            problem p = make(701, 200, Ks[ki], 77 + ki);
            float *y = sentinels(&p), *y1 = malloc((size_t)p.ldy * sizeof(float));
            assert_non_null(y1);
            k->gemm_pk(p.n, p.rows, p.K, p.x, p.ldx, p.pk, p.bias, y, p.ldy);
            static const int ns[] = {1, 7, 35, 140, 161};
            for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++) { /* the first n rows as a call of their own */
                float *yn = sentinels(&p);
                k->gemm_pk(ns[ni], p.rows, p.K, p.x, p.ldx, p.pk, p.bias, yn, p.ldy);
                if (memcmp(yn, y, (size_t)ns[ni] * p.ldy * sizeof(float)) != 0)
                    fail_msg("%s gemm_pk K %d: the first %d rows differ from the same rows of a 701-row call", k->name,
                             p.K, ns[ni]);
                free(yn);
            }
            static const int lone[] = {0, 5, 6, 47, 48, 160, 161, 700};
            for (size_t j = 0; j < sizeof lone / sizeof *lone; j++) {
                const int i = lone[j];
                k->gemm_pk(1, p.rows, p.K, p.x + (size_t)i * p.ldx, p.ldx, p.pk, p.bias, y1, p.ldy);
                if (memcmp(y1, y + (size_t)i * p.ldy, (size_t)p.rows * sizeof(float)) != 0)
                    fail_msg("%s gemm_pk K %d: row %d alone differs from row %d of a 701-row call", k->name, p.K, i, i);
            }
            free(y), free(y1);
            drop(&p);
        }
    }
}

/* Columns computed panel range by panel range (fl_rec_gemm_pk's thread split) equal one call. */
static void test_gemm_pk_panel_split(void **state) {
    (void)state;
    static const int ns[] = {35, 140, 161, 701};
    const int NC = FL_PK_NC;
    for (size_t li = 0; li < sizeof LEVELS / sizeof *LEVELS; li++) {
        const fl_kernels *k = fl_kernels_by_name(LEVELS[li]);
        if (!k || !k->gemm_pk) continue;
        for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++) {
            problem p = make(ns[ni], 1000, 651, 300 + ni); /* 16 panels, the last of 40 columns */
            const int np = (p.rows + NC - 1) / NC;
            float *y = sentinels(&p), *ys = sentinels(&p);
            k->gemm_pk(p.n, p.rows, p.K, p.x, p.ldx, p.pk, p.bias, y, p.ldy);
            for (int parts = 2; parts <= 5; parts += 3) /* 2 and 5 ranges */
                for (int idx = 0; idx < parts; idx++) {
                    const int p0 = np * idx / parts, p1 = np * (idx + 1) / parts, c0 = p0 * NC;
                    const int cols = (p1 * NC < p.rows ? p1 * NC : p.rows) - c0;
                    k->gemm_pk(p.n, cols, p.K, p.x, p.ldx, p.pk + (size_t)c0 * p.K, p.bias + c0, ys + c0, p.ldy);
                    if (idx == parts - 1 && memcmp(ys, y, (size_t)p.n * p.ldy * sizeof(float)) != 0)
                        fail_msg("%s gemm_pk n %d: %d panel ranges differ from one call", k->name, p.n, parts);
                }
            free(y), free(ys);
            drop(&p);
        }
    }
}

/* Outputs past 1 MiB at a small K (avx512's 48-row chunks): values, rows independent, CP's stripes. */
static void test_gemm_pk_out_chunks(void **state) {
    (void)state;
    for (size_t li = 0; li < sizeof LEVELS / sizeof *LEVELS; li++) {
        const fl_kernels *k = fl_kernels_by_name(LEVELS[li]);
        if (!k || !k->gemm_pk) continue;
        problem p = make(301, 1500, 93, 900 + li);
        float *y = sentinels(&p), *y_ref = sentinels(&p), *yn = sentinels(&p);
        k->gemm_pk(p.n, p.rows, p.K, p.x, p.ldx, p.pk, p.bias, y, p.ldy);
        fl_kernels_gemm_pk_ref(p.n, p.rows, p.K, p.x, p.ldx, p.pk, p.bias, y_ref, p.ldy);
        check_values(k->name, &p, true, y, y_ref);
        static const int ns[] = {1, 47, 49, 200}; /* the first rows as a call: inside, across chunk edges */
        for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++) {
            k->gemm_pk(ns[ni], p.rows, p.K, p.x, p.ldx, p.pk, p.bias, yn, p.ldy);
            if (memcmp(yn, y, (size_t)ns[ni] * p.ldy * sizeof(float)) != 0)
                fail_msg("%s gemm_pk K %d: the first %d rows differ from the same rows of a 301-row call", k->name, p.K, ns[ni]);
        }
        k->gemm_pk(1, p.rows, p.K, p.x + (size_t)300 * p.ldx, p.ldx, p.pk, p.bias, yn, p.ldy);
        if (memcmp(yn, y + (size_t)300 * p.ldy, (size_t)p.rows * sizeof(float)) != 0)
            fail_msg("%s gemm_pk K %d: the last row alone differs from the 301-row call's", k->name, p.K);
        /* a CP gate product: x rows of 4 K (this gate's K at offset K), y a stripe of rows 4 x 1500
         * wide at column 1500 (6000 bytes: off a line's start), the other columns untouched */
        const int G = 4 * p.rows, R4 = 4 * p.K;
        float *xs = calloc((size_t)p.n * R4, sizeof(float)), *ys = malloc((size_t)p.n * G * sizeof(float));
        assert_non_null(xs), assert_non_null(ys);
        for (int i = 0; i < p.n; i++) memcpy(xs + (size_t)i * R4 + p.K, p.x + (size_t)i * p.ldx, (size_t)p.K * sizeof(float));
        for (size_t i = 0; i < (size_t)p.n * G; i++) ys[i] = SENTINEL;
        k->gemm_pk(p.n, p.rows, p.K, xs + p.K, R4, p.pk, p.bias, ys + p.rows, G);
        for (int i = 0; i < p.n; i++) {
            if (memcmp(ys + (size_t)i * G + p.rows, y + (size_t)i * p.ldy, (size_t)p.rows * sizeof(float)) != 0)
                fail_msg("%s gemm_pk K %d: row %d of a strided stripe differs from the plain call's", k->name, p.K, i);
            for (int c = 0; c < G; c++)
                if ((c < p.rows || c >= 2 * p.rows) && ys[(size_t)i * G + c] != SENTINEL)
                    fail_msg("%s gemm_pk: row %d column %d outside the stripe written", k->name, i, c);
        }
        free(xs), free(ys), free(y), free(y_ref), free(yn);
        drop(&p);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_pk_values),
        cmocka_unit_test(test_gemm_pk_rows_independent),
        cmocka_unit_test(test_gemm_pk_panel_split),
        cmocka_unit_test(test_gemm_pk_out_chunks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
