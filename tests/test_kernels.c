/* Kernel tests: every fast kernel level this CPU has against the scalar reference (ref.c), on
 * awkward sizes, batch 1 and 3, unaligned pointers and padded strides, and extreme inputs.
 * A value passes when |fast - ref| <= 1e-6 or |fast - ref| <= 2e-6 |ref|. Pads between rows must
 * stay untouched. The tests that depend on a level run once per level ("cell_vs_ref/avx512"); a
 * level this CPU lacks is reported as a cmocka skip. */
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

#define ABS_TOL 1e-6
#define REL_TOL 2e-6
#define SENTINEL 12345.0f


/* The kernel table named by the test's state ("ref", "avx2", "avx512"). A level this CPU lacks is a
 * cmocka skip, reported as such, never a silent pass. */
static const fl_kernels *level_or_skip(void **state) {
    const char *name = *state;
    const fl_kernels *k = fl_kernels_by_name(name);
    if (!k) {
        print_message("level %s: not available on this CPU, skipped\n", name);
        skip();
    }
    return k;
}

/* Deterministic uniform in [lo, hi). */
static float uni(uint64_t *s, float lo, float hi) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + (hi - lo) * (float)((*s >> 40) / (double)(1ULL << 24));
}

static float pick(uint64_t *s, int extreme) {
    if (extreme) {
        static const float ext[] = {100.0f, -100.0f, 0.0f, -0.0f, 88.5f, -88.5f, 30.0f, -30.0f,
                                    0.625f, -0.625f, 1e-7f, -1e-7f, 1e30f, -1e30f, 9.0f, -9.0f};
        float r = uni(s, 0.0f, 1.0f);
        if (r < 0.6f) return ext[(int)(uni(s, 0.0f, 16.0f)) & 15];
    }
    return uni(s, -8.0f, 8.0f);
}

typedef struct errs {
    double worst; /* worst normalised error: max over entries of |d| / max(ABS_TOL, REL_TOL |ref|) */
    long bad;
} errs;

static void compare(errs *e, const float *got, const float *want, int n) {
    for (int i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        double lim = fmax(ABS_TOL, REL_TOL * fabs((double)want[i]));
        double r = d / lim;
        if (!(r <= e->worst)) e->worst = r;
        if (!(d <= lim)) e->bad++;
    }
}

/* The cell update through either entry point of a level: lstm_cell, or gate_cell with K = 0 (no
 * recurrent product: gates = gx), which is what the runtime's fused kernels end with. One row. */
static void run_cell(const fl_kernels *k, int via_gate, int H, const float *g, float *c, float *h) {
    static const float dummy[16] __attribute__((aligned(64)));
    if (via_gate) k->gate_cell(0, (H + FL_REC_NB - 1) / FL_REC_NB, H, 0, 1, dummy, dummy, 0, g, 4 * H, c, h, H);
    else k->lstm_cell(1, H, g, 4 * H, c, H, h, H);
}

/* Run level k and ref on one (batch, H) problem with padded strides and a 1-float misalignment. */
static void check_cell(const fl_kernels *k, int batch, int H, int extreme, uint64_t seed) {
    const int ldg = 4 * H + 3, ldc = H + 1, ldh = H + 5;
    const size_t ng = (size_t)batch * ldg + 1, nc = (size_t)batch * ldc + 1, nh = (size_t)batch * ldh + 1;
    float *gb = malloc(ng * sizeof(float)), *c1b = malloc(nc * sizeof(float)), *c2b = malloc(nc * sizeof(float));
    float *h1b = malloc(nh * sizeof(float)), *h2b = malloc(nh * sizeof(float));
    assert_non_null(gb);
    assert_non_null(c1b);
    assert_non_null(c2b);
    assert_non_null(h1b);
    assert_non_null(h2b);
    float *g = gb + 1, *c1 = c1b + 1, *c2 = c2b + 1, *h1 = h1b + 1, *h2 = h2b + 1;  // unaligned
    uint64_t s = seed;
    for (size_t i = 0; i < ng; i++) gb[i] = pick(&s, extreme);
    for (size_t i = 0; i < nc; i++) c1b[i] = c2b[i] = SENTINEL;
    for (size_t i = 0; i < nh; i++) h1b[i] = h2b[i] = SENTINEL;
    for (int b = 0; b < batch; b++)
        for (int j = 0; j < H; j++) c1[(size_t)b * ldc + j] = c2[(size_t)b * ldc + j] = extreme ? pick(&s, 1) : uni(&s, -5, 5);
    // 1e30 cell states overflow f c to +-inf in both versions alike; keep c finite but large
    for (size_t i = 0; i < nc; i++)
        if (fabsf(c1b[i]) > 1e3f && c1b[i] != SENTINEL) c1b[i] = c2b[i] = copysignf(100.0f, c1b[i]);

    fl_kernels_ref.lstm_cell(batch, H, g, ldg, c1, ldc, h1, ldh);
    k->lstm_cell(batch, H, g, ldg, c2, ldc, h2, ldh);

    errs ec = {0}, eh = {0};
    for (int b = 0; b < batch; b++) {
        compare(&ec, c2 + (size_t)b * ldc, c1 + (size_t)b * ldc, H);
        compare(&eh, h2 + (size_t)b * ldh, h1 + (size_t)b * ldh, H);
        for (int j = H; j < ldc && (size_t)b * ldc + j < nc - 1; j++)
            if (c2[(size_t)b * ldc + j] != SENTINEL) fail_msg("%s: c pad overwritten (H %d, row %d)", k->name, H, b);
        for (int j = H; j < ldh && (size_t)b * ldh + j < nh - 1; j++)
            if (h2[(size_t)b * ldh + j] != SENTINEL) fail_msg("%s: h pad overwritten (H %d, row %d)", k->name, H, b);
    }
    if (c2b[0] != SENTINEL || h2b[0] != SENTINEL) fail_msg("%s: wrote before the first row (H %d)", k->name, H);
    if (ec.bad || eh.bad)
        fail_msg("%s: H %d batch %d extreme %d: %ld c and %ld h values outside tolerance (worst %.2f x tol)", k->name,
                 H, batch, extreme, ec.bad, eh.bad, fmax(ec.worst, eh.worst));
    free(gb);
    free(c1b);
    free(c2b);
    free(h1b);
    free(h2b);
}

static void test_cell_vs_ref(void **state) {
    const fl_kernels *k = level_or_skip(state);
    static const int Hs[] = {1, 7, 17, 63, 65, 91, 1500};
    static const int Bs[] = {1, 3};
    for (size_t i = 0; i < sizeof Hs / sizeof *Hs; i++)
        for (size_t j = 0; j < sizeof Bs / sizeof *Bs; j++)
            for (int ext = 0; ext < 2; ext++) check_cell(k, Bs[j], Hs[i], ext, 1000 * i + 10 * j + ext);
    print_message("level %s: matches ref\n", k->name);
}

/* Dense sweep of each nonlinearity through the cell: with c = 0 the new cell state is
 * sigmoid(i) tanh(g) and h = sigmoid(o) tanh(c); gates sweep [-30, 30] in a fine grid. */
static void test_cell_sweep(void **state) {
    const fl_kernels *k = level_or_skip(state);
    const int H = 6001;
    float *g = malloc((size_t)4 * H * sizeof(float));
    float *c1 = calloc(H, sizeof(float)), *c2 = calloc(H, sizeof(float));
    float *h1 = malloc(H * sizeof(float)), *h2 = malloc(H * sizeof(float));
    assert_non_null(g);
    assert_non_null(c1);
    assert_non_null(c2);
    assert_non_null(h1);
    assert_non_null(h2);
    for (int rot = 0; rot < 8; rot++) {
        const int via_gate = rot >= 4;
        for (int gi = 0; gi < 4; gi++)
            for (int j = 0; j < H; j++) {
                int jj = (j + rot * 1499 * (gi + 1)) % H;  // each gate sees the grid in another order
                g[gi * H + j] = -30.0f + 60.0f * (float)jj / (float)(H - 1);
            }
        for (int j = 0; j < H; j++) c1[j] = c2[j] = (rot & 1) ? 0.0f : 2.5f * (float)((j % 7) - 3);
        run_cell(&fl_kernels_ref, via_gate, H, g, c1, h1);
        run_cell(k, via_gate, H, g, c2, h2);
        errs e = {0};
        compare(&e, c2, c1, H);
        compare(&e, h2, h1, H);
        if (e.bad) fail_msg("%s: sweep %d (%s): %ld values outside tolerance (worst %.2f x tol)", k->name, rot, via_gate ? "gate_cell" : "lstm_cell", e.bad, e.worst);
    }
    free(g);
    free(c1);
    free(c2);
    free(h1);
    free(h2);
}

/* Distance of got from the double value want, in ulps of the float nearest to want. */
static double ulps(float got, double want) {
    float w = (float)want;
    double u = w == 0.0f ? 1.4e-45 : (double)nextafterf(fabsf(w), INFINITY) - fabsf(w);
    return fabs((double)got - want) / u;
}

/* Each level's sigmoid and tanh against double-precision libm, in ulps, read through the cell:
 * with c = 0, f = 0 and g = 30 (tanh(g) = 1 in float) the new c is sigmoid(i) exactly as computed;
 * with i = 100 (sigmoid = 1) it is tanh(g). */
static void test_nonlinearity_ulp(void **state) {
    const fl_kernels *k = level_or_skip(state);
    const int H = 20001;
    float *g = malloc((size_t)4 * H * sizeof(float)), *c = malloc(H * sizeof(float)), *h = malloc(H * sizeof(float));
    assert_non_null(g);
    assert_non_null(c);
    assert_non_null(h);
    for (int via_gate = 0; via_gate < 2; via_gate++) {
        for (int j = 0; j < H; j++) {
            g[j] = -20.0f + 40.0f * (float)j / (float)(H - 1);
            g[H + j] = 0.0f;
            g[2 * H + j] = 30.0f;
            g[3 * H + j] = 0.0f;
            c[j] = 0.0f;
        }
        run_cell(k, via_gate, H, g, c, h);
        double us = 0;
        for (int j = 0; j < H; j++) us = fmax(us, ulps(c[j], 1.0 / (1.0 + exp(-(double)g[j]))));
        for (int j = 0; j < H; j++) {
            g[j] = 100.0f;
            g[2 * H + j] = -10.0f + 20.0f * (float)j / (float)(H - 1);
            c[j] = 0.0f;
        }
        run_cell(k, via_gate, H, g, c, h);
        double ut = 0;
        for (int j = 0; j < H; j++) ut = fmax(ut, ulps(c[j], tanh((double)g[2 * H + j])));
        print_message("%s %s: max error sigmoid [-20, 20] %.2f ulp, tanh [-10, 10] %.2f ulp\n", k->name,
                      via_gate ? "gate_cell" : "lstm_cell", us, ut);
        assert_true(us <= 4.0);
        assert_true(ut <= 4.0);
    }
    free(g);
    free(c);
    free(h);
}

/* The reference itself against the LSTM cell formula in double precision. */
static void test_ref_formula(void **state) {
    (void)state;
    const int H = 5;
    float g[20], c[5], h[5];
    uint64_t s = 7;
    for (int i = 0; i < 20; i++) g[i] = uni(&s, -4, 4);
    for (int i = 0; i < H; i++) c[i] = uni(&s, -2, 2);
    double cd[5];
    for (int i = 0; i < H; i++) cd[i] = c[i];
    fl_kernels_ref.lstm_cell(1, H, g, 4 * H, c, H, h, H);
    for (int j = 0; j < H; j++) {
        double i_ = 1 / (1 + exp(-(double)g[j])), f = 1 / (1 + exp(-(double)g[H + j]));
        double gg = tanh((double)g[2 * H + j]), o = 1 / (1 + exp(-(double)g[3 * H + j]));
        double cn = f * cd[j] + i_ * gg, hn = o * tanh(cn);
        assert_true(fabs(c[j] - cn) < 1e-6);
        assert_true(fabs(h[j] - hn) < 1e-6);
    }
}

/* One cell-update call of kernel `kind` (0 lstm_cell, 1 gate_cell, 2 cp_gate_cell) on B rows of H
 * units with inner size K; gx (B, 4H), c and h (B, H) contiguous; pw, pb, x, zs as in kernels.h. */
static void run_kind(const fl_kernels *k, int kind, int B, int H, int K, const float *pw, const float *pb,
                     const float *x, const float *zs, const float *gx, float *c, float *h) {
    const int nblk = (H + FL_REC_NB - 1) / FL_REC_NB;
    if (kind == 0) k->lstm_cell(B, H, gx, 4 * H, c, H, h, H);
    else if (kind == 1) k->gate_cell(0, nblk, H, K, B, pw, x, K, gx, 4 * H, c, h, H);
    else k->cp_gate_cell(0, nblk, H, K, B, pb, zs, gx, 4 * H, c, h, H);
}

/* A NaN in any gate pre-activation or in c gives NaN where ref gives NaN, at every level and in every
 * kernel that ends in the cell update (lstm_cell, and the fused gate_cell / cp_gate_cell the runtime
 * uses, batch 1 and 3): a clamp inside exp must not turn NaN into a finite value. */
static void test_nan_propagates(void **state) {
    const fl_kernels *k = level_or_skip(state);
    enum { H = 37, K = 5, BMAX = 3, NBLK = (H + FL_REC_NB - 1) / FL_REC_NB };  // full vectors and a remainder
    static float pw[NBLK * K * 4 * FL_REC_NB] __attribute__((aligned(64)));
    static float pb[NBLK * K * FL_REC_NB] __attribute__((aligned(64)));
    float x[BMAX * K], zs[BMAX * 4 * K], g[BMAX * 4 * H], c1[BMAX * H], c2[BMAX * H], h1[BMAX * H], h2[BMAX * H];
    uint64_t s0 = 5;
    for (int blk = 0; blk < NBLK; blk++)
        for (int kk = 0; kk < K; kk++)
            for (int u = 0; u < FL_REC_NB; u++) {
                const int valid = blk * FL_REC_NB + u < H;  // units past H are zero in a packed panel
                pb[(blk * K + kk) * FL_REC_NB + u] = valid ? uni(&s0, -0.5f, 0.5f) : 0.0f;
                for (int gi = 0; gi < 4; gi++)
                    pw[((blk * K + kk) * 4 + gi) * FL_REC_NB + u] = valid ? uni(&s0, -0.5f, 0.5f) : 0.0f;
            }
    for (int i = 0; i < BMAX * K; i++) x[i] = uni(&s0, -1, 1);
    for (int i = 0; i < BMAX * 4 * K; i++) zs[i] = uni(&s0, -1, 1);
    static const char *const kinds[] = {"lstm_cell", "gate_cell", "cp_gate_cell"};
    for (int kind = 0; kind < 3; kind++)
        for (int B = 1; B <= BMAX; B += 2)
            for (int where = 0; where < 5; where++) {  // gate i, f, g, o, or c
                uint64_t s = 11 + (uint64_t)where;
                for (int i = 0; i < B * 4 * H; i++) g[i] = uni(&s, -3, 3);
                for (int i = 0; i < B * H; i++) c1[i] = c2[i] = uni(&s, -2, 2);
                for (int b = 0; b < B; b++)
                    for (int j = 3; j < H; j += 8) {  // lanes 3, 11, 19, 27, 35 (the last in the remainder)
                        if (where < 4) g[b * 4 * H + where * H + j] = NAN;
                        else c1[b * H + j] = c2[b * H + j] = NAN;
                    }
                run_kind(&fl_kernels_ref, kind, B, H, K, pw, pb, x, zs, g, c1, h1);
                run_kind(k, kind, B, H, K, pw, pb, x, zs, g, c2, h2);
                for (int i = 0; i < B * H; i++) {
                    if (isnan(c1[i]) != isnan(c2[i]) || isnan(h1[i]) != isnan(h2[i]))
                        fail_msg("%s %s B %d: NaN in %s at row %d unit %d: ref c %g h %g, fast c %g h %g", k->name,
                                 kinds[kind], B, (const char *[]){"i", "f", "g", "o", "c"}[where], i / H, i % H,
                                 (double)c1[i], (double)h1[i], (double)c2[i], (double)h2[i]);
                    if ((i % H) % 8 == 3) assert_true(isnan(h2[i]));  // every NaN input reaches h
                }
            }
}

/* gate_cell at batch 1 (the fast levels read a block's K as several segments side by side, then the
 * K % segments tail, from K = 128; below that one stream): c and h against the cell update of
 * double-precision gate sums, to 1e-5 of (1 + the sum of |terms|), for K = 0, short K, and K from
 * 128 on with every remainder modulo 4 up to 1503,
 * H with a partial last block (1, 15, 17, 33, 70 units); then the blocks split into ranges as the
 * session's threads split them: each range's call gives the whole call's bits on its units (the
 * summation order depends on K alone) and leaves every other unit untouched. */
static void check_b1(const fl_kernels *k, int H, int K, uint64_t seed) {
    const int NB = FL_REC_NB, nblk = (H + NB - 1) / NB;
    uint64_t s = seed;
    float *w = malloc(((size_t)4 * H * K + 1) * sizeof(float)), *xm = malloc(((size_t)K + 2) * sizeof(float));
    float *gx = malloc((size_t)4 * H * sizeof(float)), *c0 = malloc((size_t)H * sizeof(float));
    float *c = malloc((size_t)H * sizeof(float)), *h = malloc((size_t)H * sizeof(float));
    float *c2 = malloc((size_t)H * sizeof(float)), *h2 = malloc((size_t)H * sizeof(float));
    float *pw = fl_calloc((size_t)nblk * K * 4 * NB + 1, sizeof(float));
    assert_true(w && xm && gx && c0 && c && h && c2 && h2 && pw);
    float *x = xm + 1; /* not 32-byte aligned */
    for (size_t i = 0; i < (size_t)4 * H * K; i++) w[i] = uni(&s, -0.3f, 0.3f);
    for (int i = 0; i < K; i++) x[i] = uni(&s, -1, 1);
    for (int i = 0; i < 4 * H; i++) gx[i] = uni(&s, -2, 2);
    for (int i = 0; i < H; i++) c0[i] = uni(&s, -1, 1);
    for (int blk = 0; blk < nblk; blk++) /* kernels.h's gate panel, zero past H */
        for (int kk = 0; kk < K; kk++)
            for (int g = 0; g < 4; g++)
                for (int u = 0; u < NB && blk * NB + u < H; u++)
                    pw[(((size_t)blk * K + kk) * 4 + g) * NB + u] = w[((size_t)g * H + blk * NB + u) * K + kk];
    memcpy(c, c0, (size_t)H * sizeof(float));
    k->gate_cell(0, nblk, H, K, 1, pw, x, K, gx, 4 * H, c, h, H);
    for (int j = 0; j < H; j++) {
        double g[4], mag = 0;
        for (int q = 0; q < 4; q++) {
            double acc = gx[q * H + j], m = fabs(gx[q * H + j]);
            for (int kk = 0; kk < K; kk++) {
                const double t = (double)w[((size_t)q * H + j) * K + kk] * x[kk];
                acc += t, m += fabs(t);
            }
            g[q] = acc, mag = fmax(mag, m);
        }
        const double cn = 1 / (1 + exp(-g[1])) * c0[j] + 1 / (1 + exp(-g[0])) * tanh(g[2]);
        const double hn = 1 / (1 + exp(-g[3])) * tanh(cn), tol = 1e-5 * (1 + mag);
        if (!(fabs(c[j] - cn) <= tol) || !(fabs(h[j] - hn) <= tol))
            fail_msg("%s gate_cell B 1 H %d K %d unit %d: c %g vs %g, h %g vs %g (tol %g)", k->name, H, K, j,
                     (double)c[j], cn, (double)h[j], hn, tol);
    }
    for (int cut = 1; cut < nblk; cut++) /* [0, cut) then [cut, nblk), as two threads */
        for (int part = 0; part < 2; part++) {
            const int b0 = part ? cut : 0, b1 = part ? nblk : cut, j0 = b0 * NB, j1 = b1 * NB < H ? b1 * NB : H;
            memcpy(c2, c0, (size_t)H * sizeof(float));
            for (int j = 0; j < H; j++) h2[j] = SENTINEL;
            k->gate_cell(b0, b1, H, K, 1, pw, x, K, gx, 4 * H, c2, h2, H);
            for (int j = 0; j < H; j++) {
                const bool in = j >= j0 && j < j1;
                if (in ? (c2[j] != c[j] || h2[j] != h[j]) : (c2[j] != c0[j] || h2[j] != SENTINEL))
                    fail_msg("%s gate_cell B 1 H %d K %d blocks [%d, %d): unit %d %s", k->name, H, K, b0, b1, j,
                             in ? "differs from the whole call" : "written");
            }
        }
    free(w), free(xm), free(gx), free(c0), free(c), free(h), free(c2), free(h2);
    fl_free(pw);
}

static void test_gate_cell_b1(void **state) {
    const fl_kernels *k = level_or_skip(state);
    static const int Hs[] = {1, 15, 17, 33, 70};
    static const int Ks[] = {0, 1, 2, 3, 5, 8, 13, 64, 127, 128, 129, 130, 131, 257, 1001, 1502, 1503};
    for (size_t hi = 0; hi < sizeof Hs / sizeof *Hs; hi++)
        for (size_t ki = 0; ki < sizeof Ks / sizeof *Ks; ki++)
            if (Hs[hi] <= 17 || Ks[ki] < 1000 || hi == 4) /* long K at H 1, 15, 17 and 70 */
                check_b1(k, Hs[hi], Ks[ki], 300 + (uint64_t)(Hs[hi] * 7919 + Ks[ki]));
}

static void test_dispatch(void **state) {
    (void)state;
    assert_non_null(fl_kernels_by_name("ref"));
    assert_string_equal(fl_kernels_by_name("ref")->name, "ref");
    assert_null(fl_kernels_by_name("sse9"));
    assert_null(fl_kernels_by_name(""));
    const fl_kernels *k = fl_kernels_get();
    assert_non_null(k);
    assert_ptr_equal(k, fl_kernels_get());  // chosen once
    const char *want = getenv("FL_KERNELS");
    print_message("in use: %s (FL_KERNELS=%s)\n", k->name, want ? want : "(unset)");
    if (want && fl_kernels_by_name(want)) {
        assert_string_equal(k->name, want);  // a level the CPU has is honoured
    } else {
        // unset, unknown or unsupported: the best level available
        const fl_kernels *best = fl_kernels_by_name("avx512");
        if (!best) best = fl_kernels_by_name("avx2");
        if (!best) best = &fl_kernels_ref;
        assert_ptr_equal(k, best);
    }
    // avx512 implies avx2 in this library's detection
    if (fl_kernels_by_name("avx512")) assert_non_null(fl_kernels_by_name("avx2"));
}

/* cp_scale: one multiply per element, so every level must give ref's bits exactly; strided z,
 * unaligned pointers, nothing written past zs. */
static void test_cp_scale_vs_ref(void **state) {
    const fl_kernels *k = level_or_skip(state);
    static const int Rs[] = {1, 7, 16, 17, 63, 65};
    {
        for (size_t i = 0; i < sizeof Rs / sizeof *Rs; i++)
            for (int B = 1; B <= 3; B += 2) {
                const int R = Rs[i], ldz = R + 3;
                const size_t nz = (size_t)B * 4 * R;
                float *a = malloc((4 * (size_t)R + 1) * sizeof(float)), *z = malloc(((size_t)B * ldz + 1) * sizeof(float));
                float *z1 = malloc((nz + 2) * sizeof(float)), *z2 = malloc((nz + 2) * sizeof(float));
                assert_true(a && z && z1 && z2);
                uint64_t s = 77 + (uint64_t)R * 3 + (uint64_t)B;
                for (int q = 0; q < 4 * R + 1; q++) a[q] = uni(&s, -2, 2);
                for (int q = 0; q < B * ldz + 1; q++) z[q] = uni(&s, -3, 3);
                for (size_t q = 0; q < nz + 2; q++) z1[q] = z2[q] = SENTINEL;
                fl_kernels_ref.cp_scale(B, R, a + 1, z + 1, ldz, z1 + 1);
                k->cp_scale(B, R, a + 1, z + 1, ldz, z2 + 1);
                assert_memory_equal(z1, z2, (nz + 2) * sizeof(float));
                assert_true(z2[0] == SENTINEL && z2[nz + 1] == SENTINEL);
                free(a);
                free(z);
                free(z1);
                free(z2);
            }
    }
}

int main(void) {
    /* The level-dependent tests run once per fast level (the ulp test also on ref), named
     * "<test>/<level>"; a level the CPU lacks shows up as skipped. */
    typedef struct per_level {
        const char *name;
        CMUnitTestFunction fn;
        int with_ref;
    } per_level;
    static const per_level per[] = {
        {"cell_vs_ref", test_cell_vs_ref, 0},
        {"nonlinearity_ulp", test_nonlinearity_ulp, 1},
        {"cell_sweep", test_cell_sweep, 0},
        {"nan_propagates", test_nan_propagates, 0},
        {"cp_scale_vs_ref", test_cp_scale_vs_ref, 0},
        {"gate_cell_b1", test_gate_cell_b1, 0},
    };
    static const char *const all_levels[] = {"ref", "avx2", "avx512"};
    static char names[16][48];
    struct CMUnitTest tests[24];
    size_t n = 0, nn = 0;
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_ref_formula);
    for (size_t t = 0; t < sizeof per / sizeof *per; t++)
        for (size_t l = per[t].with_ref ? 0 : 1; l < sizeof all_levels / sizeof *all_levels; l++) {
            snprintf(names[nn], sizeof names[nn], "%s/%s", per[t].name, all_levels[l]);
            tests[n++] = (struct CMUnitTest){names[nn++], per[t].fn, NULL, NULL, (void *)all_levels[l]};
        }
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_dispatch);
    return _cmocka_run_group_tests("kernels", tests, n, NULL, NULL);
}
