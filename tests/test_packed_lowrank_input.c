/* A low-rank W_ih's input projection through the packed kernel (core/recurrent.c: fl_rec_pack_layer
 * packs the factors with fl_pk_pack, fl_rec_input_ws runs them as gemm_pk products):
 *   SVD W_ih = U V:  t = x V^T, then gx = t U^T + bias;
 *   CP  W_ih (A, B, C): z = x C, zs = z scaled per gate by A (cp_scale), then per gate g
 *       gx[:, gH:(g+1)H] = zs[:, g, :] B^T + bias[gH:(g+1)H] (x row stride 4R).
 * Checked here, for both methods:
 *   - fl_rec_input_ws against fl_mat_apply plus the bias (the path it replaces) and a float64
 *     reference, at awkward shapes (rank 1, 7, 17, 81: not multiples of 16; inputs 7, 65, 130: not
 *     of 64; 4H 20, 132, 260: not of 64), rows 1, 7, 35, strided x and gx, 1 and 2 threads (and a
 *     product large enough to split), at every kernel level this CPU has (fl_rec_create_with: ref has
 *     no gemm_pk and declines); without a workspace (fl_rec_input) it declines and writes nothing;
 *   - SVD: fl_rec_pack_layer with release, then fl_rec_unpack_layer with consume, restores U and V bit
 *     for bit (their pages read as zeros in between); CP: packing with release leaves A, B and C in
 *     place, untouched (they are kept), and unpacking writes nothing; without gemm_pk (ref kernels) no
 *     copy is made;
 *   - a session on models with SVD or CP W_ih (1 and 2 layers, where the second layer's input is the
 *     first's output): whole runs (batch x seq 1x1, 7x1, 1x7, 5x7; CP also 3x5 and 20x7) and
 *     streaming steps equal, within float tolerance, the same steps with gx from fl_mat_apply, on 1
 *     and 2 threads, and the session's packs hold the packed factors (so the path is the one under
 *     test). ctest runs this file again with FL_KERNELS=avx2 and =ref (CMakeLists.txt), so that the
 *     sessions run at each level too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "testutil.h"
#include "internal.h"
#include "kernels/kernels.h"
#include "recurrent.h"
#include "recurrent_levels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static float frand(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((*s >> 40) & 0xffff) / 32768.0f - 1.0f;
}

static float *fl_rand(size_t n, uint64_t seed) {
    float *p = fl_malloc(n * sizeof(float));
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = frand(&seed) * 0.5f;
    return p;
}

/* A layer (in -> H) with a W_ih of `method` (SVD or CP) and rank R, and a W_hh of the same method
 * and rank 3, biases NULL. */
static fl_layer lowrank_layer(fl_method method, int in, int H, int R, uint64_t seed) {
    fl_layer ly = {.in = in, .hidden = H, .out = H};
    if (method == FL_METHOD_SVD) {
        ly.wih = (fl_mat){.method = FL_METHOD_SVD, .rows = 4 * H, .cols = in, .rank = R,
                          .u = fl_rand((size_t)4 * H * R, seed), .v = fl_rand((size_t)R * in, seed + 1)};
        ly.whh = (fl_mat){.method = FL_METHOD_SVD, .rows = 4 * H, .cols = H, .rank = 3,
                          .u = fl_rand((size_t)4 * H * 3, seed + 2), .v = fl_rand((size_t)3 * H, seed + 3)};
    } else {
        ly.wih = (fl_mat){.method = FL_METHOD_CP, .rows = 4 * H, .cols = in, .rank = R, .a = fl_rand((size_t)4 * R, seed),
                          .b = fl_rand((size_t)H * R, seed + 1), .c = fl_rand((size_t)in * R, seed + 2)};
        ly.whh = (fl_mat){.method = FL_METHOD_CP, .rows = 4 * H, .cols = H, .rank = 3, .a = fl_rand(12, seed + 3),
                          .b = fl_rand((size_t)H * 3, seed + 4), .c = fl_rand((size_t)H * 3, seed + 5)};
    }
    return ly;
}

static void lowrank_layer_free(fl_layer *ly) {
    fl_mat *ws[2] = {&ly->wih, &ly->whh};
    for (int i = 0; i < 2; i++) fl_free(ws[i]->u), fl_free(ws[i]->v), fl_free(ws[i]->a), fl_free(ws[i]->b), fl_free(ws[i]->c);
}

/* y (rows) = x (in) W^T in float64 for an SVD or CP W (rows, in), and mag (rows): the sums of the
 * products' magnitudes (the tolerance's scale); t: R doubles of scratch. */
static void ref_row(const fl_mat *w, const float *x, double *t, double *y, double *mag) {
    const int R = w->rank, in = w->cols, H = w->rows / 4;
    for (int q = 0; q < R; q++) { /* t = V x (SVD), C^T x (CP) */
        t[q] = 0;
        for (int k = 0; k < in; k++)
            t[q] += (double)x[k] * (w->method == FL_METHOD_SVD ? w->v[(size_t)q * in + k] : w->c[(size_t)k * R + q]);
    }
    for (int o = 0; o < w->rows; o++) {
        y[o] = mag[o] = 0;
        for (int q = 0; q < R; q++) { /* SVD: u[o, q]; CP, o = g H + h: a[g, q] b[h, q] */
            const double f = w->method == FL_METHOD_SVD ? (double)w->u[(size_t)o * R + q]
                                                         : (double)w->a[(size_t)(o / H) * R + q] * w->b[(size_t)(o % H) * R + q];
            y[o] += t[q] * f;
            mag[o] += fabs(t[q] * f);
        }
    }
}

static const char *const LEVELS[] = {"ref", "avx2", "avx512"};

/* ------------------------------------------------------------ fl_rec_input_ws */

static void check_input(fl_method method, const char *level, int in, int H, int R, int n, int threads) {
    const int G = 4 * H, ldx = in + 3, ldgx = G + 5;
    const fl_kernels *k = fl_kernels_by_name(level);
    if (!k) return; /* a level this CPU lacks */
    fl_layer ly = lowrank_layer(method, in, H, R, (uint64_t)(in * 131 + H * 17 + R));
    fl_rec *r;
    assert_int_equal(fl_rec_create_with(&ly, 1, threads, level, &r), FL_OK);
    const size_t nws = fl_mat_apply_workspace(&ly.wih, n) + 1; /* what a session gives: n R (SVD), 5 n R (CP) */
    float *x = fl_rand((size_t)n * ldx, 77), *bias = fl_rand(G, 78), *ws = fl_malloc(nws * sizeof(float));
    float *gx = fl_malloc((size_t)n * ldgx * sizeof(float)), *gb = fl_malloc((size_t)n * G * sizeof(float));
    float *wsb = fl_malloc(nws * sizeof(float));
    assert_true(ws && gx && gb && wsb);
    for (size_t i = 0; i < (size_t)n * ldgx; i++) gx[i] = 12345.0f;
    assert_false(fl_rec_input(r, n, x, ldx, bias, gx, ldgx)); /* no workspace: declines, writes nothing */
    const bool packed = k->gemm_pk != NULL;
    assert_int_equal(fl_rec_input_ws(r, n, x, ldx, bias, gx, ldgx, ws), packed);
    for (size_t i = 0; !packed && i < (size_t)n * ldgx; i++) assert_true(gx[i] == 12345.0f);
    if (!packed) goto out;
    fl_mat_apply(&ly.wih, n, x, ldx, 0.0f, gb, G, wsb);
    fl_add_bias_rows(gb, (size_t)n, G, (size_t)G, bias);
    double *t = malloc((size_t)(R + 2 * G) * sizeof(double)), *yr = t + R, *mag = yr + G;
    assert_non_null(t);
    for (int i = 0; i < n; i++) {
        ref_row(&ly.wih, x + (size_t)i * ldx, t, yr, mag);
        for (int o = 0; o < G; o++) {
            const double ref = bias[o] + yr[o];
            const double tol = 1e-5 * (mag[o] + fabs(bias[o]) + 1.0);
            const float got = gx[(size_t)i * ldgx + o];
            if (fabs(got - ref) > tol || fabs(got - gb[(size_t)i * G + o]) > tol)
                fail_msg("%s %s in %d H %d R %d n %d threads %d: gx[%d, %d] = %.8g, fl_mat_apply %.8g, float64 %.8g",
                         fl_method_name(method), level, in, H, R, n, threads, i, o, got, gb[(size_t)i * G + o], ref);
        }
        for (int o = G; o < ldgx; o++) assert_true(gx[(size_t)i * ldgx + o] == 12345.0f); /* past 4H: untouched */
    }
    free(t);
out:
    fl_free(x), fl_free(bias), fl_free(ws), fl_free(gx), fl_free(gb), fl_free(wsb);
    fl_rec_free(r);
    lowrank_layer_free(&ly);
}

static void input_shapes(fl_method method) {
    static const int INS[] = {7, 65, 130}, HS[] = {5, 33, 65}, RS[] = {1, 7, 17, 81}, NS[] = {1, 7, 35};
    for (int lv = 0; lv < 3; lv++)
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++)
                for (int c = 0; c < 4; c++)
                    for (int d = 0; d < 3; d++)
                        for (int th = 1; th <= 2; th++) check_input(method, LEVELS[lv], INS[a], HS[b], RS[c], NS[d], th);
    for (int lv = 0; lv < 3; lv++) { /* 35 x 800 x 81 MACs (SVD's U), 140 x 200 x 81 (a CP gate): split */
        check_input(method, LEVELS[lv], 650, 200, 81, method == FL_METHOD_CP ? 140 : 35, 2);
        check_input(method, LEVELS[lv], 650, 200, 81, method == FL_METHOD_CP ? 140 : 35, 3);
    }
}

static void test_input_shapes_svd(void **state) {
    (void)state;
    input_shapes(FL_METHOD_SVD);
}

static void test_input_shapes_cp(void **state) {
    (void)state;
    input_shapes(FL_METHOD_CP);
}

/* ------------------------------------------------------------ pack / unpack */

static void test_pack_round_trip_svd(void **state) {
    (void)state;
    const long page = sysconf(_SC_PAGESIZE);
    const int in = 1030, H = 517, R = 81; /* U 2068 x 81, V 81 x 1030: many whole pages each */
    fl_layer ly = lowrank_layer(FL_METHOD_SVD, in, H, R, 9);
    const size_t nu = (size_t)4 * H * R, nv = (size_t)R * in;
    float *u0 = fl_malloc(nu * sizeof(float)), *v0 = fl_malloc(nv * sizeof(float));
    assert_true(u0 && v0);
    memcpy(u0, ly.wih.u, nu * sizeof(float));
    memcpy(v0, ly.wih.v, nv * sizeof(float));
    fl_rec_pack p;
    assert_int_equal(fl_rec_pack_layer(&ly, true, true, &p), FL_OK);
    assert_non_null(p.pk);
    assert_non_null(p.pv);
    /* the originals' whole pages were given back: the page after the first page boundary reads zero */
    const float *pu = (const float *)(((uintptr_t)ly.wih.u + (uintptr_t)page - 1) & ~((uintptr_t)page - 1));
    const float *pv = (const float *)(((uintptr_t)ly.wih.v + (uintptr_t)page - 1) & ~((uintptr_t)page - 1));
    for (size_t i = 0; i < (size_t)page / sizeof(float); i++) assert_true(pu[i] == 0.0f && pv[i] == 0.0f);
    assert_true(fl_rec_unpack_layer(&p, &ly, true));
    assert_memory_equal(ly.wih.u, u0, nu * sizeof(float));
    assert_memory_equal(ly.wih.v, v0, nv * sizeof(float));
    fl_rec_pack_free(&p);
    /* without a packed projection (with_pk false: ref kernels), no copy and nothing given back */
    assert_int_equal(fl_rec_pack_layer(&ly, false, true, &p), FL_OK);
    assert_null(p.pk);
    assert_null(p.pv);
    assert_memory_equal(ly.wih.u, u0, nu * sizeof(float));
    assert_memory_equal(ly.wih.v, v0, nv * sizeof(float));
    fl_rec_pack_free(&p);
    fl_free(u0), fl_free(v0);
    lowrank_layer_free(&ly);
}

/* A CP W_ih's factors are packed (B as pk, C^T as pv) but kept: release gives none of their pages
 * back, and unpacking writes nothing (and says so: its W_hh is CP too, so nothing at all). */
static void test_pack_cp_kept(void **state) {
    (void)state;
    const int in = 1030, H = 517, R = 81; /* B 517 x 81, C 1030 x 81: many whole pages each */
    fl_layer ly = lowrank_layer(FL_METHOD_CP, in, H, R, 9);
    const size_t na = (size_t)4 * R, nb = (size_t)H * R, nc = (size_t)in * R;
    float *a0 = fl_malloc(na * sizeof(float)), *b0 = fl_malloc(nb * sizeof(float)), *c0 = fl_malloc(nc * sizeof(float));
    assert_true(a0 && b0 && c0);
    memcpy(a0, ly.wih.a, na * sizeof(float));
    memcpy(b0, ly.wih.b, nb * sizeof(float));
    memcpy(c0, ly.wih.c, nc * sizeof(float));
    fl_rec_pack p;
    assert_int_equal(fl_rec_pack_layer(&ly, true, true, &p), FL_OK);
    assert_non_null(p.pk);
    assert_non_null(p.pv);
    /* the packed forms hold B (H, R) and C^T (R, in): element (row, k) of panel row / NC */
    for (int h = 0; h < H; h += 37)
        for (int q = 0; q < R; q += 5)
            assert_true(p.pk[((size_t)(h / FL_PK_NC) * R + q) * FL_PK_NC + h % FL_PK_NC] == b0[(size_t)h * R + q]);
    for (int q = 0; q < R; q += 3)
        for (int k = 0; k < in; k += 41)
            assert_true(p.pv[((size_t)(q / FL_PK_NC) * in + k) * FL_PK_NC + q % FL_PK_NC] == c0[(size_t)k * R + q]);
    assert_memory_equal(ly.wih.a, a0, na * sizeof(float));
    assert_memory_equal(ly.wih.b, b0, nb * sizeof(float));
    assert_memory_equal(ly.wih.c, c0, nc * sizeof(float));
    assert_false(fl_rec_unpack_layer(&p, &ly, true));
    assert_memory_equal(ly.wih.b, b0, nb * sizeof(float));
    assert_memory_equal(ly.wih.c, c0, nc * sizeof(float));
    fl_rec_pack_free(&p);
    assert_int_equal(fl_rec_pack_layer(&ly, false, true, &p), FL_OK); /* no gemm_pk: no copy */
    assert_null(p.pk);
    assert_null(p.pv);
    fl_rec_pack_free(&p);
    fl_free(a0), fl_free(b0), fl_free(c0);
    lowrank_layer_free(&ly);
}

/* ------------------------------------------------------------ sessions */

/* Model: input D, hidden H, `layers` layers, every W_ih of `method` (SVD or CP) and rank R, W_hh
 * of hh (dense, or CP of rank 5). */
static fl_model *lowrank_model(fl_method method, fl_method hh, int D, int H, int layers, int R, uint64_t seed) {
    fl_arch a = {.input = D, .hidden = H, .layers = layers, .head = FL_HEAD_NONE};
    const fl_mat_spec wi = {method, R}, wh = {hh, hh == FL_METHOD_DENSE ? 0 : 5};
    fl_mat_spec specs[4] = {wi, wh, wi, wh};
    assert_true(layers <= 2);
    fl_model *m = NULL;
    assert_int_equal(fl_model_create(&a, specs, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, seed), FL_OK);
    return m;
}

/* The top layer's outputs y (B, T, H) of m on x (B, T, D) through fl_mat_apply for every W_ih and
 * fl_rec_step on fl_recs of the layers' own (m must have no session: its originals are in place). */
static void reference(const fl_model *m, int B, int T, const float *x, float *y) {
    const int H = m->arch.hidden, G = 4 * H, D = m->arch.input, L = m->arch.layers;
    float *in = fl_malloc((size_t)B * T * (D > H ? D : H) * sizeof(float)), *out = fl_malloc((size_t)B * T * H * sizeof(float));
    float *gx = fl_malloc((size_t)B * G * sizeof(float)), *h = fl_calloc((size_t)B * H, sizeof(float));
    float *c = fl_calloc((size_t)B * H, sizeof(float)), *ws = fl_malloc((fl_mat_apply_workspace(&m->layer[0].wih, B) + 1) * sizeof(float));
    float *bias = fl_malloc((size_t)G * sizeof(float));
    assert_true(in && out && gx && h && c && ws && bias);
    memcpy(in, x, (size_t)B * T * D * sizeof(float));
    int in_dim = D;
    for (int l = 0; l < L; l++) {
        const fl_layer *ly = &m->layer[l];
        for (int o = 0; o < G; o++) bias[o] = ly->b_ih[o] + ly->b_hh[o];
        fl_rec *r;
        assert_int_equal(fl_rec_create(ly, B, 1, &r), FL_OK);
        memset(h, 0, (size_t)B * H * sizeof(float));
        memset(c, 0, (size_t)B * H * sizeof(float));
        float *ho = fl_malloc((size_t)B * H * sizeof(float));
        for (int t = 0; t < T; t++) {
            /* x rows of step t: in[b, t, :] with row stride T * in_dim */
            fl_mat_apply(&ly->wih, B, in + (size_t)t * in_dim, T * in_dim, 0.0f, gx, G, ws);
            fl_add_bias_rows(gx, (size_t)B, G, (size_t)G, bias);
            fl_rec_step(r, B, gx, G, h, H, c, ho, H);
            memcpy(h, ho, (size_t)B * H * sizeof(float));
            for (int b = 0; b < B; b++) memcpy(out + ((size_t)b * T + t) * H, ho + (size_t)b * H, (size_t)H * sizeof(float));
        }
        fl_free(ho);
        fl_rec_free(r);
        memcpy(in, out, (size_t)B * T * H * sizeof(float));
        in_dim = H;
    }
    memcpy(y, out, (size_t)B * T * H * sizeof(float));
    fl_free(in), fl_free(out), fl_free(gx), fl_free(h), fl_free(c), fl_free(ws), fl_free(bias);
}

static void check_close_all(const float *got, const float *ref, size_t n, const char *what, int B, int T, int threads) {
    for (size_t i = 0; i < n; i++)
        if (fabsf(got[i] - ref[i]) > 2e-5f + 2e-5f * fabsf(ref[i]))
            fail_msg("%s B %d T %d threads %d: y[%zu] = %.8g, fl_mat_apply path %.8g", what, B, T, threads, i, got[i], ref[i]);
}

static void check_session(fl_method method, fl_method hh, int D, int H, int layers, int R, int B, int T, int threads) {
    fl_model *m = lowrank_model(method, hh, D, H, layers, R, (uint64_t)(D + H + R + B));
    const size_t ny = (size_t)B * T * H;
    float *x = fl_rand((size_t)B * T * D, 5), *y = fl_malloc(ny * sizeof(float)), *ys = fl_malloc(ny * sizeof(float));
    float *ref = fl_malloc(ny * sizeof(float)), *xs = fl_malloc((size_t)B * D * sizeof(float));
    assert_true(y && ys && ref && xs);
    fl_session_opts o = fl_session_opts_default();
    o.max_batch = B;
    o.max_seq = T;
    o.threads = threads;
    fl_session *s;
    assert_int_equal(fl_session_create(m, &o, &s), FL_OK);
    if (fl_kernels_get()->gemm_pk)
        for (int l = 0; l < layers; l++) assert_true(m->packs[l].pk && m->packs[l].pv); /* the path under test */
    /* a CP W_ih is packed but kept: with a CP W_hh nothing at all is released */
    if (method == FL_METHOD_CP && hh == FL_METHOD_CP) assert_false(fl_model_weights_released(m));
    fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = B, .seq = T, .x = x, .y = y};
    assert_int_equal(fl_session_run(s, &io), FL_OK);
    for (int t = 0; t < T; t++) { /* streaming: step t of every sequence */
        for (int b = 0; b < B; b++) memcpy(xs + (size_t)b * D, x + ((size_t)b * T + t) * D, (size_t)D * sizeof(float));
        float *yt = fl_malloc((size_t)B * H * sizeof(float));
        assert_int_equal(fl_session_step(s, B, xs, NULL, yt), FL_OK);
        for (int b = 0; b < B; b++) memcpy(ys + ((size_t)b * T + t) * H, yt + (size_t)b * H, (size_t)H * sizeof(float));
        fl_free(yt);
    }
    fl_session_free(s); /* the originals are written back: the reference reads them */
    reference(m, B, T, x, ref);
    char what[96];
    snprintf(what, sizeof what, "%s W_ih, %s W_hh, D %d H %d L %d R %d, run", fl_method_name(method), fl_method_name(hh), D,
             H, layers, R);
    check_close_all(y, ref, ny, what, B, T, threads);
    memcpy(strstr(what, "run"), "steps", 6);
    check_close_all(ys, ref, ny, what, B, T, threads);
    fl_free(x), fl_free(y), fl_free(ys), fl_free(ref), fl_free(xs);
    fl_model_free(m);
}

static void test_sessions_svd(void **state) {
    (void)state;
    static const int BT[][2] = {{1, 1}, {7, 1}, {1, 7}, {5, 7}}; /* 1, 7, 7 and 35 rows */
    for (int i = 0; i < 4; i++)
        for (int th = 1; th <= 2; th++) {
            check_session(FL_METHOD_SVD, FL_METHOD_DENSE, 70, 33, 1, 17, BT[i][0], BT[i][1], th);
            check_session(FL_METHOD_SVD, FL_METHOD_DENSE, 7, 20, 2, 7, BT[i][0], BT[i][1], th);
        }
    check_session(FL_METHOD_SVD, FL_METHOD_DENSE, 130, 163, 2, 81, 5, 7, 2); /* large enough to split the projection */
}

static void test_sessions_cp(void **state) {
    (void)state;
    static const int BT[][2] = {{1, 1}, {7, 1}, {1, 7}, {3, 5}, {20, 7}}; /* batch 1, 3, 7, 20 */
    for (int i = 0; i < 5; i++)
        for (int th = 1; th <= 2; th++) {
            check_session(FL_METHOD_CP, FL_METHOD_DENSE, 70, 33, 1, 17, BT[i][0], BT[i][1], th);
            check_session(FL_METHOD_CP, FL_METHOD_CP, 7, 20, 2, 7, BT[i][0], BT[i][1], th);
            check_session(FL_METHOD_CP, FL_METHOD_CP, 65, 40, 2, 40, BT[i][0], BT[i][1], th); /* rank 40: 16 k + 8 */
        }
    check_session(FL_METHOD_CP, FL_METHOD_CP, 130, 163, 2, 81, 20, 7, 2); /* 140 x 163 x 81 a gate: split */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_input_shapes_svd),
        cmocka_unit_test(test_input_shapes_cp),
        cmocka_unit_test(test_pack_round_trip_svd),
        cmocka_unit_test(test_pack_cp_kept),
        cmocka_unit_test(test_sessions_svd),
        cmocka_unit_test(test_sessions_cp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
