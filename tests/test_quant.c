/* Low-precision kernels (src/kernels/quant.h) and conversions (src/core/quantize.h):
 * - every fast level this CPU has against the scalar reference on awkward shapes (1, 7, 17, 63, 65
 *   rows / units and inputs, batch 1, 3, 20, 67), unaligned pointers and padded strides, both row maps,
 *   split block ranges: int8 int32 sums and results bit-identical, bf16 by relative error; a level
 *   the CPU lacks is a skip;
 * - the reference against the unpacked matrix (so the packing is checked too);
 * - int8 quantization against a NumPy emulation of the same rule (tests/quant_ref.py), bit for bit;
 * - round-trip error bounds, bf16 rounding to nearest even, SVD / CP factor products through the
 *   kernels against f32, NaN/Inf and bad shapes refused with the exact status. */
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
#include "kernels/quant.h"
#include "npy.h"
#include "quantize.h"
#include "testutil.h"

#define SENTINEL 12345.0f

static float uni(uint64_t *s, float lo, float hi) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + (hi - lo) * (float)((*s >> 40) / (double)(1ULL << 24));
}

static float *rand_mat(uint64_t *s, size_t n, float lo, float hi) {
    float *a = malloc(n * sizeof *a + 64);
    for (size_t i = 0; i < n; i++) a[i] = uni(s, lo, hi);
    return a;
}

/* One packed matrix in both precisions, from random f32 weights W (rows, K). */
typedef struct {
    int H, rows, K;
    float *w;       // (rows, K)
    int8_t *q;      // (rows, K)
    int8_t *pq;     // packed
    float *wscale;  // (rows)
    int32_t *wsum;  // (rows)
    uint16_t *pb;   // packed bf16
} qmat;

static void qmat_make(qmat *m, uint64_t *s, int H, int rows, int K) {
    m->H = H, m->rows = rows, m->K = K;
    m->w = rand_mat(s, (size_t)rows * K, -1.0f, 1.0f);
    if (rows > 2 && K > 2) m->w[K + 1] = 3.0f; // one row with an outlier
    m->q = malloc((size_t)rows * K + 1);
    m->pq = fl_malloc(fl_qpack_i8_size(H, rows, K) + 64);
    m->wscale = malloc((size_t)rows * sizeof(float) + 4);
    m->wsum = malloc((size_t)rows * sizeof(int32_t) + 4);
    m->pb = fl_malloc(fl_qpack_bf16_size(H, rows, K) * 2 + 64);
    assert_int_equal(fl_quant_i8_rows("w", rows, K, m->w, K, m->q, K, m->wscale), FL_OK);
    assert_int_equal(fl_qpack_i8("w", H, rows, K, m->w, K, m->pq, m->wscale, m->wsum), FL_OK);
    assert_int_equal(fl_qpack_bf16("w", H, rows, K, m->w, K, m->pb), FL_OK);
}

static void qmat_free(qmat *m) {
    free(m->w), free(m->q), fl_free(m->pq), free(m->wscale), free(m->wsum), fl_free(m->pb);
}

/* Activations x (B, K) row stride ldx, quantized into xq (B, ldxq) at an odd byte offset. */
typedef struct {
    int B, K, ldx, ldxq;
    float *x, *xscale;
    uint8_t *xq_buf, *xq;
} acts;

static void acts_make(acts *a, uint64_t *s, int B, int K) {
    a->B = B, a->K = K, a->ldx = K + 3, a->ldxq = fl_quant_act_ld(K) + 4;
    a->x = rand_mat(s, (size_t)B * a->ldx + 1, -2.0f, 2.0f) + 1; // unaligned
    a->xscale = malloc((size_t)B * sizeof(float));
    a->xq_buf = malloc((size_t)B * a->ldxq + 1);
    a->xq = a->xq_buf + 1;
    fl_quant_act_u8(B, K, a->x, a->ldx, a->xq, a->ldxq, a->xscale);
}

static void acts_free(acts *a) { free(a->x - 1), free(a->xscale), free(a->xq_buf); }

/* y buffers (B, ldy), ldy = rows + 5, pads at SENTINEL, rows filled with a gx-like start value. */
static float *y_make(int B, int rows, int ldy) {
    float *y = malloc(((size_t)B * ldy + 1) * sizeof *y);
    for (int b = 0; b < B; b++)
        for (int r = 0; r < ldy; r++) y[1 + (size_t)b * ldy + r] = r < rows ? 0.25f * (float)((r * 7 + b) % 5) - 0.5f : SENTINEL;
    return y + 1; // unaligned
}

static void check_pads(const float *y, int B, int rows, int ldy) {
    for (int b = 0; b < B; b++)
        for (int r = rows; r < ldy; r++) assert_true(y[(size_t)b * ldy + r] == SENTINEL);
}

static const int SIZES[] = {1, 7, 17, 63, 65};
static const int KS[] = {1, 7, 17, 63, 65, 130};
static const int BATCHES[] = {1, 3, 20, 67}; // 67: T*batch rows of an all-steps input projection

/* For each shape: the (H, rows) of a gate-map case and a plain-map case. */
static void shape_of(int i, int plain, int *H, int *rows) {
    if (plain) *H = 0, *rows = SIZES[i] == 65 ? 129 : SIZES[i];
    else *H = SIZES[i], *rows = 4 * SIZES[i];
}

static void check_i8_level(const fl_qkernels *fast) {
    const fl_qkernels *ref = &fl_qkernels_ref;
    uint64_t s = 17;
    for (int plain = 0; plain < 2; plain++)
        for (size_t i = 0; i < sizeof SIZES / sizeof *SIZES; i++)
            for (size_t ki = 0; ki < sizeof KS / sizeof *KS; ki++)
                for (size_t bi = 0; bi < sizeof BATCHES / sizeof *BATCHES; bi++) {
                    int H, rows, K = KS[ki], B = BATCHES[bi];
                    shape_of((int)i, plain, &H, &rows);
                    qmat m;
                    acts a;
                    qmat_make(&m, &s, H, rows, K);
                    acts_make(&a, &s, B, K);
                    // All blocks in two calls (a split range), as threads would.
                    int nblk = fl_qpanel_blocks(H, rows), mid = nblk / 2, ldy = rows + 5;
                    int32_t *ar = calloc((size_t)B * ldy, 4), *af = calloc((size_t)B * ldy, 4);
                    ref->i8_acc(0, nblk, H, rows, K, B, m.pq, m.wsum, a.xq, a.ldxq, ar, ldy);
                    fast->i8_acc(0, mid, H, rows, K, B, m.pq, m.wsum, a.xq, a.ldxq, af, ldy);
                    fast->i8_acc(mid, nblk, H, rows, K, B, m.pq, m.wsum, a.xq, a.ldxq, af, ldy);
                    if (memcmp(ar, af, (size_t)B * ldy * 4) != 0)
                        fail_msg("%s i8_acc: H %d rows %d K %d B %d differs from ref", fast->name, H, rows, K, B);
                    float *yr = y_make(B, rows, ldy), *yf = y_make(B, rows, ldy);
                    ref->i8_gemv(0, nblk, H, rows, K, B, m.pq, m.wscale, m.wsum, a.xq, a.ldxq, a.xscale, yr, ldy);
                    fast->i8_gemv(0, mid, H, rows, K, B, m.pq, m.wscale, m.wsum, a.xq, a.ldxq, a.xscale, yf, ldy);
                    fast->i8_gemv(mid, nblk, H, rows, K, B, m.pq, m.wscale, m.wsum, a.xq, a.ldxq, a.xscale, yf, ldy);
                    if (memcmp(yr, yf, (size_t)B * ldy * 4) != 0)
                        fail_msg("%s i8_gemv: H %d rows %d K %d B %d not bit-identical to ref", fast->name, H, rows, K, B);
                    check_pads(yf, B, rows, ldy);
                    free(ar), free(af), free(yr - 1), free(yf - 1);
                    qmat_free(&m), acts_free(&a);
                }
}

static void check_bf16_level(const fl_qkernels *fast) {
    const fl_qkernels *ref = &fl_qkernels_ref;
    uint64_t s = 23;
    for (int plain = 0; plain < 2; plain++)
        for (size_t i = 0; i < sizeof SIZES / sizeof *SIZES; i++)
            for (size_t ki = 0; ki < sizeof KS / sizeof *KS; ki++)
                for (size_t bi = 0; bi < sizeof BATCHES / sizeof *BATCHES; bi++) {
                    int H, rows, K = KS[ki], B = BATCHES[bi];
                    shape_of((int)i, plain, &H, &rows);
                    qmat m;
                    acts a;
                    qmat_make(&m, &s, H, rows, K);
                    acts_make(&a, &s, B, K);
                    // All blocks in two calls (a split range), as threads would.
                    int nblk = fl_qpanel_blocks(H, rows), mid = nblk / 2, ldy = rows + 5;
                    float *yr = y_make(B, rows, ldy), *yf = y_make(B, rows, ldy);
                    ref->bf16_gemv(0, nblk, H, rows, K, B, m.pb, a.x, a.ldx, yr, ldy);
                    fast->bf16_gemv(0, mid, H, rows, K, B, m.pb, a.x, a.ldx, yf, ldy);
                    fast->bf16_gemv(mid, nblk, H, rows, K, B, m.pb, a.x, a.ldx, yf, ldy);
                    for (int b = 0; b < B; b++)
                        for (int r = 0; r < rows; r++) {
                            // Summation order differs: bound by the sum of |terms| (f32 epsilon per add).
                            double mag = 1.0;
                            for (int k = 0; k < K; k++)
                                mag += fabs(fl_bf16_to_f32(fl_bf16_from_f32(m.w[(size_t)r * K + k])) * a.x[(size_t)b * a.ldx + k]);
                            double d = fabs((double)yr[(size_t)b * ldy + r] - yf[(size_t)b * ldy + r]);
                            if (d > 2.0 * K * 6e-8 * mag)
                                fail_msg("%s bf16: H %d rows %d K %d B %d row %d: %g vs %g", fast->name, H, rows, K, B, r,
                                         (double)yf[(size_t)b * ldy + r], (double)yr[(size_t)b * ldy + r]);
                        }
                    check_pads(yf, B, rows, ldy);
                    free(yr - 1), free(yf - 1);
                    qmat_free(&m), acts_free(&a);
                }
}

static void test_i8_avx2(void **state) {
    const fl_qkernels *k = fl_qkernels_by_name("avx2");
    if (!k) skip();
    check_i8_level(k);
}
static void test_i8_avx512(void **state) {
    const fl_qkernels *k = fl_qkernels_by_name("avx512");
    if (!k) skip();
    check_i8_level(k);
}
static void test_bf16_avx2(void **state) {
    const fl_qkernels *k = fl_qkernels_by_name("avx2");
    if (!k) skip();
    check_bf16_level(k);
}
static void test_bf16_avx512(void **state) {
    const fl_qkernels *k = fl_qkernels_by_name("avx512");
    if (!k) skip();
    check_bf16_level(k);
}

/* The reference on the packed layout against the plain (rows, K) matrix, both row maps. */
static void test_ref_vs_unpacked(void **state) {
    uint64_t s = 5;
    for (int plain = 0; plain < 2; plain++)
        for (size_t i = 0; i < sizeof SIZES / sizeof *SIZES; i++) {
            int H, rows, K = KS[i + 1], B = 3;
            shape_of((int)i, plain, &H, &rows);
            qmat m;
            acts a;
            qmat_make(&m, &s, H, rows, K);
            acts_make(&a, &s, B, K);
            int32_t *acc = malloc((size_t)B * rows * 4);
            float *y = calloc((size_t)B * rows, sizeof *y);
            int nblk = fl_qpanel_blocks(H, rows);
            fl_qkernels_ref.i8_acc(0, nblk, H, rows, K, B, m.pq, m.wsum, a.xq, a.ldxq, acc, rows);
            fl_qkernels_ref.bf16_gemv(0, nblk, H, rows, K, B, m.pb, a.x, a.ldx, y, rows);
            for (int r = 0; r < rows; r++) {
                int32_t ws = 0;
                for (int k = 0; k < K; k++) ws += m.q[(size_t)r * K + k];
                assert_int_equal(ws, m.wsum[r]);
                for (int b = 0; b < B; b++) {
                    int32_t want = 0;
                    double yb = 0, mag = 0;
                    for (int k = 0; k < K; k++) {
                        want += m.q[(size_t)r * K + k] * ((int32_t)a.xq[(size_t)b * a.ldxq + k] - 128);
                        double t = (double)fl_bf16_to_f32(fl_bf16_from_f32(m.w[(size_t)r * K + k])) * a.x[(size_t)b * a.ldx + k];
                        yb += t, mag += fabs(t);
                    }
                    assert_int_equal(acc[(size_t)b * rows + r], want);
                    assert_true(fabs(y[(size_t)b * rows + r] - yb) <= K * 6e-8 * mag + 1e-30);
                }
            }
            free(acc), free(y);
            qmat_free(&m), acts_free(&a);
        }
}

/* bf16 rounding: ties to even, carries into the exponent, overflow to Inf, NaN kept. */
static void test_bf16_rounding(void **state) {
    static const struct {
        uint32_t in;
        uint16_t out;
    } cases[] = {
        {0x3f800000u, 0x3f80}, {0x3f808000u, 0x3f80}, {0x3f818000u, 0x3f82}, {0x3f808001u, 0x3f81},
        {0x3f807fffu, 0x3f80}, {0xbf818000u, 0xbf82}, {0x3fffffffu, 0x4000}, {0x7f7fffffu, 0x7f80},
        {0x00000001u, 0x0000}, {0x00008000u, 0x0000}, {0x00018000u, 0x0002}, {0x80000000u, 0x8000},
        {0x7f800000u, 0x7f80}, {0xff800000u, 0xff80}, {0x7f800001u, 0x7fc0}, {0xffc00000u, 0xffc0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        float f;
        memcpy(&f, &cases[i].in, 4);
        if (fl_bf16_from_f32(f) != cases[i].out)
            fail_msg("bf16(0x%08x) = 0x%04x, want 0x%04x", cases[i].in, fl_bf16_from_f32(f), cases[i].out);
    }
    // Round trip: relative error at most 2^-8 (8 significant bits) for normal numbers, and the result
    // is the nearest bf16.
    uint64_t s = 9;
    for (int i = 0; i < 100000; i++) {
        float x = ldexpf(uni(&s, -1.0f, 1.0f), (int)uni(&s, -60.0f, 60.0f));
        uint16_t v = fl_bf16_from_f32(x);
        float r = fl_bf16_to_f32(v);
        assert_true(fabsf(r - x) <= ldexpf(fabsf(x), -8));
        float up = fl_bf16_to_f32((uint16_t)(v + 1)), dn = fl_bf16_to_f32((uint16_t)(v - 1));
        assert_true(fabsf(r - x) <= fabsf(up - x) && fabsf(r - x) <= fabsf(dn - x));
    }
}

/* int8 round trip: |wscale q - w| <= wscale / 2 per element, each row's largest |w| maps to 127. */
static void test_i8_roundtrip(void **state) {
    uint64_t s = 11;
    const int rows = 37, K = 53;
    float *w = rand_mat(&s, (size_t)rows * K, -3.0f, 3.0f);
    for (int k = 0; k < K; k++) w[2 * K + k] = 0.0f;       // a zero row: scale 0
    for (int k = 0; k < K; k++) w[3 * K + k] = 1e-39f;     // 127 / amax overflows: zeros, scale 0
    w[5 * K + 3] = 1e6f;                                   // an outlier
    int8_t *q = malloc((size_t)rows * K);
    float *sc = malloc(rows * sizeof *sc);
    assert_int_equal(fl_quant_i8_rows("w", rows, K, w, K, q, K, sc), FL_OK);
    for (int r = 0; r < rows; r++) {
        int top = 0;
        for (int k = 0; k < K; k++) {
            int v = q[(size_t)r * K + k];
            assert_true(v >= -127 && v <= 127);
            top = abs(v) > top ? abs(v) : top;
            float err = fabsf(sc[r] * (float)v - w[(size_t)r * K + k]);
            assert_true(err <= (0.5f + 1e-4f) * sc[r] + (r == 3 ? 1e-39f : 0.0f));
        }
        assert_int_equal(top, r == 2 || r == 3 ? 0 : 127);
        if (r == 2 || r == 3) assert_true(sc[r] == 0.0f);
    }
    // Activations: codes in [1, 255], padding 128, NaN row -> scale NaN, codes 128.
    float x[2][6] = {{0.5f, -1.0f, 0.25f, 1.0f, 0.0f, -0.3f}, {1.0f, NAN, 2.0f, 0, 0, 0}};
    uint8_t xq[2][8];
    float xs[2];
    fl_quant_act_u8(2, 6, &x[0][0], 6, &xq[0][0], 8, xs);
    assert_true(xs[0] == 1.0f / 127.0f);
    assert_int_equal(xq[0][1], 1);
    assert_int_equal(xq[0][3], 255);
    assert_int_equal(xq[0][4], 128);
    assert_int_equal(xq[0][6], 128);
    assert_int_equal(xq[0][7], 128);
    assert_true(isnan(xs[1]));
    for (int k = 0; k < 8; k++) assert_int_equal(xq[1][k], 128);
    free(w), free(q), free(sc);
}

/* The int8 rule against tests/quant_ref.py: weights, scales, activation codes, int32 sums and
 * results bit for bit, on rows with ties, zeros, denormals and an outlier. */
static const char *python(void) {
    const char *py = getenv("FL_PYTHON");
    if (!py || !*py) py = "/usr/bin/python3";
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s -c 'import numpy' >/dev/null 2>&1", py);
    return system(cmd) == 0 ? py : NULL;
}

static void *load_arr(const char *name, char dtype, size_t count) {
    fl_npy a;
    if (fl_npy_load(tmp_path(name), &a) != FL_OK) fail_msg("%s: %s", name, fl_last_error());
    assert_int_equal(a.dtype, dtype);
    assert_int_equal(a.count, count);
    return a.data; // fl_malloc'd: fl_free
}

static void test_numpy_emulation(void **state) {
    const char *py = python(), *src = getenv("FL_SOURCE_DIR");
    if (!py) skip(); // no NumPy on this machine
    const int H = 17, rows = 4 * H, K = 45, B = 20;
    uint64_t s = 3;
    float *w = rand_mat(&s, (size_t)rows * K, -1.0f, 1.0f), *x = rand_mat(&s, (size_t)B * K, -4.0f, 4.0f);
    for (int k = 0; k < K; k++) w[k] = (float)(k % 9 - 4) * 0.5f; // with amax 127: ties at .5, both ways
    w[K - 1] = 127.0f;
    for (int k = 0; k < K; k++) w[K + k] = 0.0f;
    for (int k = 0; k < K; k++) w[2 * K + k] = (float)k * 1e-41f; // denormals
    w[3 * K] = 50.0f;
    for (int k = 0; k < K; k++) x[k] = (float)(k % 7 - 3) * 0.5f;
    x[K - 1] = -127.0f;
    for (int k = 0; k < K; k++) x[K + k] = 0.0f;
    int64_t ws[2] = {rows, K}, xsh[2] = {B, K};
    assert_int_equal(fl_npy_save_f32(tmp_path("w.npy"), w, 2, ws), FL_OK);
    assert_int_equal(fl_npy_save_f32(tmp_path("x.npy"), x, 2, xsh), FL_OK);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s/tests/quant_ref.py %s", py, src ? src : "..", tmp_dir);
    if (system(cmd) != 0) fail_msg("%s failed", cmd);
    int32_t *wq = load_arr("wq.npy", 'i', (size_t)rows * K), *xq = load_arr("xq.npy", 'i', (size_t)B * K);
    int32_t *acc = load_arr("acc.npy", 'i', (size_t)B * rows);
    float *wsc = load_arr("wscale.npy", 'f', rows), *xsc = load_arr("xscale.npy", 'f', B);
    float *y = load_arr("y.npy", 'f', (size_t)B * rows);

    qmat m = {0};
    m.q = malloc((size_t)rows * K);
    m.wscale = malloc(rows * sizeof(float));
    assert_int_equal(fl_quant_i8_rows("w", rows, K, w, K, m.q, K, m.wscale), FL_OK);
    for (size_t i = 0; i < (size_t)rows * K; i++)
        if (m.q[i] != wq[i]) fail_msg("weight %zu: %d, numpy %d", i, m.q[i], wq[i]);
    assert_memory_equal(m.wscale, wsc, rows * sizeof(float));
    const int ldxq = fl_quant_act_ld(K);
    uint8_t *q = malloc((size_t)B * ldxq);
    float *xs = malloc(B * sizeof *xs);
    fl_quant_act_u8(B, K, x, K, q, ldxq, xs);
    for (int b = 0; b < B; b++)
        for (int k = 0; k < K; k++)
            if (q[(size_t)b * ldxq + k] != xq[(size_t)b * K + k])
                fail_msg("activation (%d, %d): %d, numpy %d", b, k, q[(size_t)b * ldxq + k], xq[(size_t)b * K + k]);
    assert_memory_equal(xs, xsc, B * sizeof *xs);
    // Every level's kernel on the packed weights (gate map), from y = 0.
    int8_t *pq = fl_malloc(fl_qpack_i8_size(H, rows, K));
    int32_t *wsum = malloc(rows * sizeof *wsum), *a = malloc((size_t)B * rows * sizeof *a);
    float *yk = malloc((size_t)B * rows * sizeof *yk);
    assert_int_equal(fl_qpack_i8_from_q("w", H, rows, K, m.q, K, pq, wsum), FL_OK);
    static const char *const levels[] = {"ref", "avx2", "avx512"};
    for (int l = 0; l < 3; l++) {
        const fl_qkernels *k = fl_qkernels_by_name(levels[l]);
        if (!k) continue;
        memset(yk, 0, (size_t)B * rows * sizeof *yk);
        k->i8_acc(0, fl_qpanel_blocks(H, rows), H, rows, K, B, pq, wsum, q, ldxq, a, rows);
        k->i8_gemv(0, fl_qpanel_blocks(H, rows), H, rows, K, B, pq, m.wscale, wsum, q, ldxq, xs, yk, rows);
        if (memcmp(a, acc, (size_t)B * rows * 4) != 0) fail_msg("%s: int32 sums differ from numpy", levels[l]);
        if (memcmp(yk, y, (size_t)B * rows * 4) != 0) fail_msg("%s: results differ from numpy", levels[l]);
    }
    fl_free(wq), fl_free(xq), fl_free(acc), fl_free(wsc), fl_free(xsc), fl_free(y), fl_free(pq);
    free(w), free(x), free(m.q), free(m.wscale), free(q), free(xs), free(wsum), free(a), free(yk);
}

/* NaN / Inf weights, bad shapes and out-of-range codes: the exact status, the tensor named. */
static void test_bad_input(void **state) {
    float w[8 * 3];
    for (int i = 0; i < 24; i++) w[i] = (float)i * 0.1f;
    int8_t q[24], pq[4096];
    float sc[8];
    int32_t wsum[8];
    uint16_t pb[4096];
    const float bad[] = {NAN, INFINITY, -INFINITY};
    for (int i = 0; i < 3; i++) {
        w[17] = bad[i];
        assert_int_equal(fl_quant_i8_rows("layer0.W_hh", 8, 3, w, 3, q, 3, sc), FL_ERR_NONFINITE);
        assert_non_null(strstr(fl_last_error(), "layer0.W_hh"));
        assert_non_null(strstr(fl_last_error(), "row 5, column 2"));
        assert_int_equal(fl_qpack_i8("U", 2, 8, 3, w, 3, pq, sc, wsum), FL_ERR_NONFINITE);
        assert_int_equal(fl_qpack_bf16("V", 0, 8, 3, w, 3, pb), FL_ERR_NONFINITE);
        assert_non_null(strstr(fl_last_error(), "V: non-finite"));
    }
    w[17] = 3.4e38f; // finite, but rounds to Inf in bf16
    assert_int_equal(fl_qpack_bf16("V", 0, 8, 3, w, 3, pb), FL_ERR_NONFINITE);
    assert_int_equal(fl_qpack_i8("U", 2, 8, 3, w, 3, pq, sc, wsum), FL_OK);
    w[17] = 1.0f;
    uint16_t bits[24] = {0};
    bits[4] = 0x7f80;
    assert_int_equal(fl_qpack_bf16_from_bits("B", 0, 8, 3, bits, 3, pb), FL_ERR_NONFINITE);
    bits[4] = 0xffc1;
    assert_int_equal(fl_qpack_bf16_from_bits("B", 0, 8, 3, bits, 3, pb), FL_ERR_NONFINITE);
    bits[4] = 0x3f80;
    assert_int_equal(fl_qpack_bf16_from_bits("B", 0, 8, 3, bits, 3, pb), FL_OK);
    // Shapes: gate map needs rows = 4H; negative sizes; a stride shorter than a row; NULL buffers.
    assert_int_equal(fl_qpack_i8("U", 3, 8, 3, w, 3, pq, sc, wsum), FL_ERR_ARG);
    assert_int_equal(fl_qpack_bf16("U", 0, -1, 3, w, 3, pb), FL_ERR_ARG);
    assert_int_equal(fl_quant_i8_rows("U", 8, 3, w, 2, q, 3, sc), FL_ERR_ARG);
    assert_int_equal(fl_quant_i8_rows("U", 8, 3, w, 3, q, 3, NULL), FL_ERR_ARG);
    assert_int_equal(fl_qpack_bf16("U", 0, 8, 3, NULL, 3, pb), FL_ERR_ARG);
    assert_int_equal(fl_qpack_i8_size(3, 8, 3), 0);
    // -128 is outside the symmetric range the kernels' exactness relies on.
    memset(q, 1, sizeof q);
    q[7] = -128;
    assert_int_equal(fl_qpack_i8_from_q("I8", 0, 8, 3, q, 3, pq, wsum), FL_ERR_DATA);
    assert_non_null(strstr(fl_last_error(), "row 2, column 1"));
    // Empty matrices are fine (nothing to pack).
    assert_int_equal(fl_qpack_i8("E", 0, 0, 5, NULL, 5, NULL, NULL, NULL), FL_OK);
    assert_int_equal(fl_qpack_i8("E", 0, 4, 0, NULL, 0, NULL, sc, wsum), FL_OK);
    assert_true(sc[0] == 0.0f && wsum[3] == 0);
}

/* y (B, rows) += W x through one kernel of table k, in precision prec (0 int8, 1 bf16), W (rows, K)
 * f32 converted here; H > 0 for the gate map. The building block of the factor products below. */
static void apply(const fl_qkernels *k, int prec, int H, int rows, int K, const float *w, int B, const float *x,
                  int ldx, float *y, int ldy) {
    int nblk = fl_qpanel_blocks(H, rows);
    if (prec == 0) {
        int8_t *pq = fl_malloc(fl_qpack_i8_size(H, rows, K));
        float *ws = malloc(rows * sizeof *ws), *xs = malloc(B * sizeof *xs);
        int32_t *sum = malloc(rows * sizeof *sum);
        int ldxq = fl_quant_act_ld(K);
        uint8_t *xq = malloc((size_t)B * ldxq);
        assert_int_equal(fl_qpack_i8("f", H, rows, K, w, K, pq, ws, sum), FL_OK);
        fl_quant_act_u8(B, K, x, ldx, xq, ldxq, xs);
        k->i8_gemv(0, nblk, H, rows, K, B, pq, ws, sum, xq, ldxq, xs, y, ldy);
        fl_free(pq), free(ws), free(xs), free(sum), free(xq);
    } else {
        uint16_t *pb = fl_malloc(fl_qpack_bf16_size(H, rows, K) * 2);
        assert_int_equal(fl_qpack_bf16("f", H, rows, K, w, K, pb), FL_OK);
        k->bf16_gemv(0, nblk, H, rows, K, B, pb, x, ldx, y, ldy);
        fl_free(pb);
    }
}

static double rel_err(const float *a, const double *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) num += (a[i] - ref[i]) * (a[i] - ref[i]), den += ref[i] * ref[i];
    return sqrt(num / den);
}

/* SVD (t = V h, gates = gx + U t) and CP (z = C^T h, zs = a_g * z, gates = gx + B zs) through the
 * kernels at the chosen level against the same products in double from the f32 factors. */
static void test_factor_products(void **state) {
    const fl_qkernels *k = fl_qkernels_get();
    const int H = 33, R = 5, B = 3;
    uint64_t s = 29;
    float *U = rand_mat(&s, (size_t)4 * H * R, -1, 1), *V = rand_mat(&s, (size_t)R * H, -1, 1);
    float *Ct = rand_mat(&s, (size_t)R * H, -1, 1), *A = rand_mat(&s, (size_t)4 * R, -1, 1);
    float *Bm = rand_mat(&s, (size_t)H * R, -1, 1), *h = rand_mat(&s, (size_t)B * H, -1, 1);
    float *gx = rand_mat(&s, (size_t)B * 4 * H, -1, 1);
    double *want = malloc((size_t)B * 4 * H * sizeof *want), tmp[5];
    float *t = malloc(B * R * sizeof *t), *zs = malloc((size_t)B * 4 * R * sizeof *zs);
    float *y = malloc((size_t)B * 4 * H * sizeof *y);
    for (int prec = 0; prec < 2; prec++) {
        const double tol = prec == 0 ? 4e-2 : 1e-2; // int8: two quantized operands per product, twice
        // SVD
        for (int b = 0; b < B; b++) {
            for (int r = 0; r < R; r++) {
                tmp[r] = 0;
                for (int j = 0; j < H; j++) tmp[r] += (double)V[r * H + j] * h[b * H + j];
            }
            for (int i = 0; i < 4 * H; i++) {
                want[b * 4 * H + i] = gx[b * 4 * H + i];
                for (int r = 0; r < R; r++) want[b * 4 * H + i] += U[i * R + r] * tmp[r];
            }
        }
        memset(t, 0, B * R * sizeof *t);
        memcpy(y, gx, (size_t)B * 4 * H * sizeof *y);
        apply(k, prec, 0, R, H, V, B, h, H, t, R);
        apply(k, prec, H, 4 * H, R, U, B, t, R, y, 4 * H);
        double e = rel_err(y, want, (size_t)B * 4 * H);
        if (e > tol) fail_msg("%s SVD %s: relative error %g > %g", k->name, prec ? "bf16" : "int8", e, tol);
        // CP: B (H, R) applied to the 4 gate-scaled copies of z of each row: output rows (b, g) of H.
        for (int b = 0; b < B; b++) {
            for (int r = 0; r < R; r++) {
                tmp[r] = 0;
                for (int j = 0; j < H; j++) tmp[r] += (double)Ct[r * H + j] * h[b * H + j];
            }
            for (int g = 0; g < 4; g++)
                for (int j = 0; j < H; j++) {
                    double v = gx[b * 4 * H + g * H + j];
                    for (int r = 0; r < R; r++) v += Bm[j * R + r] * (A[g * R + r] * tmp[r]);
                    want[b * 4 * H + g * H + j] = v;
                }
        }
        memset(t, 0, B * R * sizeof *t);
        apply(k, prec, 0, R, H, Ct, B, h, H, t, R);
        for (int b = 0; b < B; b++)
            for (int g = 0; g < 4; g++)
                for (int r = 0; r < R; r++) zs[(b * 4 + g) * R + r] = A[g * R + r] * t[b * R + r];
        memcpy(y, gx, (size_t)B * 4 * H * sizeof *y);
        apply(k, prec, 0, H, R, Bm, 4 * B, zs, R, y, H);
        e = rel_err(y, want, (size_t)B * 4 * H);
        if (e > tol) fail_msg("%s CP %s: relative error %g > %g", k->name, prec ? "bf16" : "int8", e, tol);
    }
    free(U), free(V), free(Ct), free(A), free(Bm), free(h), free(gx), free(want), free(t), free(zs), free(y);
}

static int setup(void **state) { return tmp_dir_make("fl_quant"); }
static int teardown(void **state) { return tmp_dir_remove(); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bf16_rounding),     cmocka_unit_test(test_i8_roundtrip),
        cmocka_unit_test(test_bad_input),         cmocka_unit_test(test_ref_vs_unpacked),
        cmocka_unit_test(test_numpy_emulation),   cmocka_unit_test(test_factor_products),
        cmocka_unit_test(test_i8_avx2),           cmocka_unit_test(test_i8_avx512),
        cmocka_unit_test(test_bf16_avx2),         cmocka_unit_test(test_bf16_avx512),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
