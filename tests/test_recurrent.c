/* Recurrent step (fl_rec_*): every kernel level this CPU has, against a double-precision reference
 * built from the reconstructed dense W_hh, for dense / SVD / CP storage, awkward hidden sizes,
 * odd batches, strided rows, one and two threads, and several steps in a row. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "recurrent.h"
#include "recurrent_levels.h"
#include "kernels/kernels.h"

static const char *const LEVELS[] = {"ref", "avx2", "avx512"};

/* A one-layer model whose W_hh is stored as `method` at `rank`. */
static fl_model *make_model(int H, fl_method method, int rank, uint64_t seed) {
    fl_arch a = {.vocab = 0, .input = 3, .hidden = H, .layers = 1, .head = FL_HEAD_NONE, .head_out = 0};
    fl_mat_spec specs[2] = {{FL_METHOD_DENSE, 0}, {method, rank}};
    fl_model *m = NULL;
    assert_int_equal(fl_model_create(&a, specs, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, seed), FL_OK);
    return m;
}

static double sigm(double x) { return 1.0 / (1.0 + exp(-x)); }

/* One reference step in double: gates = gx + W h, cell update. gx (B, 4H) stride ldgx,
 * h (B, H) stride ldh (read), c (B, H) updated, ho (B, H) written. */
static void ref_step(const float *W, int H, int B, const float *gx, int ldgx, const double *h,
                     double *c, double *ho) {
    for (int b = 0; b < B; b++)
        for (int j = 0; j < H; j++) {
            double g[4];
            for (int q = 0; q < 4; q++) {
                double s = gx[(size_t)b * ldgx + (size_t)q * H + j];
                const float *row = W + ((size_t)q * H + j) * H;
                for (int k = 0; k < H; k++) s += (double)row[k] * h[(size_t)b * H + k];
                g[q] = s;
            }
            double cn = sigm(g[1]) * c[(size_t)b * H + j] + sigm(g[0]) * tanh(g[2]);
            c[(size_t)b * H + j] = cn;
            ho[(size_t)b * H + j] = sigm(g[3]) * tanh(cn);
        }
}

/* ||x - ref|| / max(||ref||, 1e-3) over n entries. */
static double rel_err(const float *x, size_t ldx, const double *ref, int B, int H) {
    double num = 0, den = 0;
    for (int b = 0; b < B; b++)
        for (int j = 0; j < H; j++) {
            double d = x[(size_t)b * ldx + j] - ref[(size_t)b * H + j];
            num += d * d;
            den += ref[(size_t)b * H + j] * ref[(size_t)b * H + j];
        }
    return sqrt(num) / fmax(sqrt(den), 1e-3);
}

/* Run `steps` steps of one configuration through every level and thread count and compare. */
static void check_config(int H, fl_method method, int rank, int B, int steps) {
    fl_model *m = make_model(H, method, rank, 1000 + (uint64_t)H * 7 + (uint64_t)method);
    const fl_layer *ly = &m->layer[0];
    float *W = malloc((size_t)4 * H * H * sizeof(float));
    assert_non_null(W);
    fl_mat_to_dense(&ly->whh, W);

    // Strided rows: gx (B, 4H + 5), h (B, H + 3), with deterministic inputs of unit scale.
    const int ldgx = 4 * H + 5, ldh = H + 3;
    fl_rng rng;
    fl_rng_seed(&rng, 77 + (uint64_t)H);
    float *gx = malloc((size_t)steps * B * ldgx * sizeof(float));
    float *h0 = malloc((size_t)B * ldh * sizeof(float));
    float *c0 = malloc((size_t)B * H * sizeof(float));
    assert_true(gx && h0 && c0);
    for (size_t i = 0; i < (size_t)steps * B * ldgx; i++) gx[i] = fl_rng_uniform_range(&rng, -2.0f, 2.0f);
    for (size_t i = 0; i < (size_t)B * ldh; i++) h0[i] = fl_rng_uniform_range(&rng, -1.0f, 1.0f);
    for (size_t i = 0; i < (size_t)B * H; i++) c0[i] = fl_rng_uniform_range(&rng, -1.0f, 1.0f);

    // Reference trajectory: href/cref (steps, B, H).
    double *href = malloc((size_t)steps * B * H * sizeof(double));
    double *cref = malloc((size_t)steps * B * H * sizeof(double));
    double *hcur = malloc((size_t)B * H * sizeof(double));
    double *ccur = malloc((size_t)B * H * sizeof(double));
    assert_true(href && cref && hcur && ccur);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < H; j++) {
            hcur[(size_t)b * H + j] = h0[(size_t)b * ldh + j];
            ccur[(size_t)b * H + j] = c0[(size_t)b * H + j];
        }
    for (int t = 0; t < steps; t++) {
        ref_step(W, H, B, gx + (size_t)t * B * ldgx, ldgx, hcur, ccur, href + (size_t)t * B * H);
        memcpy(cref + (size_t)t * B * H, ccur, (size_t)B * H * sizeof(double));
        memcpy(hcur, href + (size_t)t * B * H, (size_t)B * H * sizeof(double));
    }

    float *hbuf[2], *c = malloc((size_t)B * H * sizeof(float));
    hbuf[0] = malloc((size_t)B * ldh * sizeof(float));
    hbuf[1] = malloc((size_t)B * ldh * sizeof(float));
    assert_true(c && hbuf[0] && hbuf[1]);
    int levels_run = 0;
    for (size_t li = 0; li < sizeof LEVELS / sizeof LEVELS[0]; li++)
        for (int threads = 1; threads <= 2; threads++) {
            fl_rec *r = NULL;
            fl_status st = fl_rec_create_with(ly, B + 1, threads, LEVELS[li], &r);
            if (st == FL_ERR_UNSUPPORTED && li > 0) continue; /* this CPU lacks the level */
            assert_int_equal(st, FL_OK);
            levels_run++;
            memcpy(hbuf[0], h0, (size_t)B * ldh * sizeof(float));
            memcpy(c, c0, (size_t)B * H * sizeof(float));
            for (int t = 0; t < steps; t++) {
                float *hp = hbuf[t % 2], *ho = hbuf[(t + 1) % 2];
                fl_rec_step(r, B, gx + (size_t)t * B * ldgx, ldgx, hp, ldh, c, ho, ldh);
                double eh = rel_err(ho, (size_t)ldh, href + (size_t)t * B * H, B, H);
                double ec = rel_err(c, (size_t)H, cref + (size_t)t * B * H, B, H);
                if (eh > 2e-5 || ec > 2e-5)
                    fail_msg("level %s threads %d H %d method %d rank %d B %d step %d: rel err h %.3g c %.3g",
                             LEVELS[li], threads, H, (int)method, rank, B, t, eh, ec);
            }
            fl_rec_free(r);
        }
    assert_true(levels_run >= 2); /* ref at least, with 1 and 2 threads */
    free(W), free(gx), free(h0), free(c0), free(href), free(cref), free(hcur), free(ccur);
    free(c), free(hbuf[0]), free(hbuf[1]);
    fl_model_free(m);
}

static const int HS[] = {1, 7, 17, 63, 65, 91};
static const int BS[] = {1, 2, 3, 5, 8, 13};

static void test_dense(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof HS / sizeof HS[0]; i++)
        for (size_t b = 0; b < sizeof BS / sizeof BS[0]; b++) check_config(HS[i], FL_METHOD_DENSE, 0, BS[b], 3);
}

static void test_svd(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof HS / sizeof HS[0]; i++)
        for (size_t b = 0; b < sizeof BS / sizeof BS[0]; b++) {
            int H = HS[i];
            check_config(H, FL_METHOD_SVD, H / 8 > 0 ? H / 8 : 1, BS[b], 3);
            check_config(H, FL_METHOD_SVD, H, BS[b], 2); /* full rank; rank 17+ spans two r chunks */
        }
}

static void test_cp(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof HS / sizeof HS[0]; i++)
        for (size_t b = 0; b < sizeof BS / sizeof BS[0]; b++) {
            int H = HS[i];
            check_config(H, FL_METHOD_CP, H / 8 > 0 ? H / 8 : 1, BS[b], 3);
            check_config(H, FL_METHOD_CP, 2 * H + 3, BS[b], 2); /* rank above H */
        }
}

/* The largest shape of the benchmarks: long sums, 94 blocks split over threads. */
static void test_large(void **state) {
    (void)state;
    check_config(1500, FL_METHOD_DENSE, 0, 2, 1);
    check_config(1500, FL_METHOD_SVD, 94, 1, 2);
    check_config(1500, FL_METHOD_SVD, 187, 5, 1);
    check_config(1500, FL_METHOD_CP, 94, 1, 2);
    check_config(1500, FL_METHOD_CP, 94, 3, 1);
    /* batches past one row group of the AVX2 kernel (24 rows), K past several K chunks (32) */
    check_config(70, FL_METHOD_DENSE, 0, 26, 2);
    check_config(33, FL_METHOD_SVD, 33, 49, 2);
}

/* Changing the thread count between steps keeps results (pool torn down and restarted). */
static void test_set_threads(void **state) {
    (void)state;
    const int H = 200, B = 2;
    fl_model *m = make_model(H, FL_METHOD_DENSE, 0, 5);
    float *gx = calloc((size_t)B * 4 * H, sizeof(float)), *h = calloc((size_t)B * H, sizeof(float));
    float *c1 = calloc((size_t)B * H, sizeof(float)), *c2 = calloc((size_t)B * H, sizeof(float));
    float *o1 = calloc((size_t)B * H, sizeof(float)), *o2 = calloc((size_t)B * H, sizeof(float));
    assert_true(gx && h && c1 && c2 && o1 && o2);
    for (int i = 0; i < B * 4 * H; i++) gx[i] = (float)sin(i * 0.37);
    for (int i = 0; i < B * H; i++) h[i] = (float)cos(i * 0.11);
    fl_rec *r = NULL;
    assert_int_equal(fl_rec_create(&m->layer[0], B, 1, &r), FL_OK);
    fl_rec_step(r, B, gx, 4 * H, h, H, c1, o1, H);
    /* 5 and 3 threads: more threads than cores, chunk ranges of uneven sizes, claims stolen from
     * threads the OS has not scheduled. */
    const int THREADS[] = {5, 3, 2, 1};
    for (int ti = 0; ti < 4; ti++) {
        const int threads = THREADS[ti];
        assert_int_equal(fl_rec_set_threads(r, threads), FL_OK);
        for (int rep = 0; rep < 50; rep++) {
            memset(c2, 0, (size_t)B * H * sizeof(float));
            fl_rec_step(r, B, gx, 4 * H, h, H, c2, o2, H);
        }
        /* Same kernel level, same per-unit sums: identical bits whatever the split. */
        assert_memory_equal(o1, o2, (size_t)B * H * sizeof(float));
        assert_memory_equal(c1, c2, (size_t)B * H * sizeof(float));
    }
    assert_int_equal(fl_rec_set_threads(r, 0), FL_ERR_ARG);
    fl_rec_free(r);
    free(gx), free(h), free(c1), free(c2), free(o1), free(o2);
    fl_model_free(m);
}

/* Pool lifetime under stress: STRESS_CYCLES create / step / set_threads toggling / free cycles with
 * two threads, in a helper thread that the test waits for with a deadline, so a lost wake-up
 * (a worker asleep on the condition variable while pool_stop joins it, or a caller waiting on
 * chunks nobody runs) fails the test instead of hanging it. Steps are big enough to use the
 * workers (H 128, B 2: 512 KB of weights per step); every output must equal the one-thread bits.
 * Some cycles pause so that the workers fall asleep before the pool is stopped. */
enum { STRESS_CYCLES = 2000 };

typedef struct stress {
    const fl_layer *ly;
    const float *gx, *h, *o_ref;
    int H, B;
    _Atomic int cycles_done, bad;
} stress;

static void *stress_main(void *arg) {
    stress *st = arg;
    const int H = st->H, B = st->B;
    float *c = calloc((size_t)B * H, sizeof(float)), *o = calloc((size_t)B * H, sizeof(float));
    if (!c || !o) {
        atomic_store(&st->bad, 1);
        free(c), free(o);
        return NULL;
    }
    for (int cyc = 0; cyc < STRESS_CYCLES; cyc++) {
        fl_rec *r = NULL;
        if (fl_rec_create(st->ly, B, 2, &r) != FL_OK) {
            atomic_store(&st->bad, 1);
            break;
        }
        const int steps = cyc % 4; // 0: free right after create (workers may not have started yet)
        for (int i = 0; i < steps; i++) {
            if (cyc % 3 == 1 && fl_rec_set_threads(r, i % 2 ? 2 : 1) != FL_OK) atomic_store(&st->bad, 1);
            memset(c, 0, (size_t)B * H * sizeof(float));
            fl_rec_step(r, B, st->gx, 4 * H, st->h, H, c, o, H);
            if (memcmp(o, st->o_ref, (size_t)B * H * sizeof(float)) != 0) atomic_store(&st->bad, 2);
        }
        if (cyc % 5 == 2 && fl_rec_set_threads(r, 2) != FL_OK) atomic_store(&st->bad, 1);
        // Now and then let the workers give up spinning and sleep on the condition variable first,
        // so that free (and set_threads) must wake sleepers, not only spinners.
        if (cyc % 40 == 3) nanosleep(&(struct timespec){0, 3 * 1000 * 1000}, NULL);
        if (cyc % 40 == 23) {
            nanosleep(&(struct timespec){0, 3 * 1000 * 1000}, NULL);
            if (fl_rec_set_threads(r, 2) != FL_OK) atomic_store(&st->bad, 1);
            nanosleep(&(struct timespec){0, 3 * 1000 * 1000}, NULL);
        }
        fl_rec_free(r);
        atomic_fetch_add(&st->cycles_done, 1);
    }
    free(c), free(o);
    return NULL;
}

static void test_pool_stress(void **state) {
    (void)state;
    const int H = 128, B = 2;
    fl_model *m = make_model(H, FL_METHOD_DENSE, 0, 6);
    float *gx = calloc((size_t)B * 4 * H, sizeof(float)), *h = calloc((size_t)B * H, sizeof(float));
    float *c = calloc((size_t)B * H, sizeof(float)), *o = calloc((size_t)B * H, sizeof(float));
    assert_true(gx && h && c && o);
    for (int i = 0; i < B * 4 * H; i++) gx[i] = (float)sin(i * 0.29);
    for (int i = 0; i < B * H; i++) h[i] = (float)cos(i * 0.13);
    fl_rec *r = NULL;
    assert_int_equal(fl_rec_create(&m->layer[0], B, 1, &r), FL_OK);
    fl_rec_step(r, B, gx, 4 * H, h, H, c, o, H);
    fl_rec_free(r);
    stress st = {.ly = &m->layer[0], .gx = gx, .h = h, .o_ref = o, .H = H, .B = B};
    pthread_t tid;
    assert_int_equal(pthread_create(&tid, NULL, stress_main, &st), 0);
    // Deadline: 120 s of wall time (the loop takes well under a second on an idle machine). A helper
    // that has not finished by then is stuck: fail (the process exits with the thread still in it).
    int last = -1;
    for (int waited_ms = 0; atomic_load(&st.cycles_done) < STRESS_CYCLES && !atomic_load(&st.bad); waited_ms += 10) {
        if (waited_ms >= 120000)
            fail_msg("pool stress: no progress, stuck after %d of %d cycles (last seen %d)", atomic_load(&st.cycles_done),
                     STRESS_CYCLES, last);
        last = atomic_load(&st.cycles_done);
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    assert_int_equal(pthread_join(tid, NULL), 0);
    if (atomic_load(&st.bad)) fail_msg("pool stress: %s", atomic_load(&st.bad) == 2 ? "output differs from one thread" : "call failed");
    assert_int_equal(atomic_load(&st.cycles_done), STRESS_CYCLES);
    free(gx), free(h), free(c), free(o);
    fl_model_free(m);
}

/* gemm_nt (input projection) of every level that has one, and its scalar reference, against double
 * sums: awkward n, rows and K (tails of 6 X rows, 4 W rows, 16 lanes), strides, beta 0 and 0.5. */
static void test_gemm_nt(void **state) {
    (void)state;
    const int ns[] = {1, 5, 6, 7, 13, 35}, rowss[] = {1, 3, 4, 7, 64, 300}, Ks[] = {1, 15, 16, 17, 64, 650};
    fl_rng rng;
    fl_rng_seed(&rng, 4);
    for (size_t a = 0; a < 6; a++)
        for (size_t b = 0; b < 6; b++)
            for (size_t q = 0; q < 6; q++) {
                const int n = ns[a], rows = rowss[b], K = Ks[q], ldx = K + 3, ldw = K + 1, ldy = rows + 2;
                float *x = malloc((size_t)n * ldx * 4), *w = malloc((size_t)rows * ldw * 4);
                float *y0 = malloc((size_t)n * ldy * 4), *y = malloc((size_t)n * ldy * 4);
                double *ref = malloc((size_t)n * rows * 8), *mag = malloc((size_t)n * rows * 8);
                assert_true(x && w && y0 && y && ref && mag);
                for (int i = 0; i < n * ldx; i++) x[i] = fl_rng_uniform_range(&rng, -1, 1);
                for (int i = 0; i < rows * ldw; i++) w[i] = fl_rng_uniform_range(&rng, -1, 1);
                for (int i = 0; i < n * ldy; i++) y0[i] = fl_rng_uniform_range(&rng, -1, 1);
                for (int beta_i = 0; beta_i < 2; beta_i++) {
                    const float beta = beta_i ? 0.5f : 0.0f;
                    for (int i = 0; i < n; i++)
                        for (int r = 0; r < rows; r++) {
                            double s = beta * (double)y0[(size_t)i * ldy + r], m = fabs(s);
                            for (int k = 0; k < K; k++) {
                                double p = (double)x[(size_t)i * ldx + k] * w[(size_t)r * ldw + k];
                                s += p;
                                m += fabs(p);
                            }
                            ref[(size_t)i * rows + r] = s;
                            mag[(size_t)i * rows + r] = m; /* float summation error scales with this */
                        }
                    for (size_t li = 0; li < sizeof LEVELS / sizeof LEVELS[0] + 1; li++) {
                        const fl_kernels *k = li < 3 ? fl_kernels_by_name(LEVELS[li]) : NULL;
                        if (li < 3 && (!k || !k->gemm_nt)) continue;
                        memcpy(y, y0, (size_t)n * ldy * 4);
                        if (k) k->gemm_nt(n, rows, K, x, ldx, w, ldw, beta, y, ldy);
                        else fl_kernels_gemm_nt_ref(n, rows, K, x, ldx, w, ldw, beta, y, ldy);
                        double e = 0;
                        for (int i = 0; i < n; i++)
                            for (int r = 0; r < rows; r++) {
                                double d = fabs(y[(size_t)i * ldy + r] - ref[(size_t)i * rows + r]) /
                                           fmax(mag[(size_t)i * rows + r], 1e-30);
                                e = fmax(e, d);
                            }
                        if (e > 1e-5)
                            fail_msg("gemm_nt %s n %d rows %d K %d beta %g: rel err %.3g", k ? k->name : "ref-fn", n,
                                     rows, K, beta, e);
                        for (int i = 0; i < n; i++) /* padding between rows untouched */
                            for (int r = rows; r < ldy; r++)
                                assert_true(y[(size_t)i * ldy + r] == y0[(size_t)i * ldy + r]);
                    }
                }
                free(x), free(w), free(y0), free(y), free(ref), free(mag);
            }
}

/* W (rows, K) row-major -> pk (ceil(rows / NC), K, NC), zero past rows (the layout of kernels.h),
 * written here independently of recurrent.c's packing. */
static float *pack_pk(const float *w, int rows, int K, int ldw) {
    const int NC = FL_PK_NC, np = (rows + NC - 1) / NC;
    float *pk = fl_calloc((size_t)np * K * NC + 1, sizeof(float)); // 64-byte aligned, as the kernels need
    assert_non_null(pk);
    for (int p = 0; p < np; p++)
        for (int k = 0; k < K; k++)
            for (int u = 0; u < NC; u++) {
                const int r = p * NC + u;
                pk[((size_t)p * K + k) * NC + u] = r < rows ? w[(size_t)r * ldw + k] : 0.0f;
            }
    return pk;
}

/* gemm_pk (packed input projection, bias fused) of every level that has one, and its scalar
 * reference, against double sums: tails of 6 X rows, 64-column panels and 16 lanes, small and
 * large K, strides, with and without a bias. Pads between output rows stay untouched. */
static void test_gemm_pk(void **state) {
    (void)state;
    const int ns[] = {1, 5, 6, 7, 13, 40}, rowss[] = {1, 16, 63, 64, 65, 148}, Ks[] = {1, 3, 28, 67, 650};
    fl_rng rng;
    fl_rng_seed(&rng, 14);
    for (size_t a = 0; a < 6; a++)
        for (size_t b = 0; b < 6; b++)
            for (size_t q = 0; q < 5; q++) {
                const int n = ns[a], rows = rowss[b], K = Ks[q], ldx = K + 3, ldw = K + 1, ldy = rows + 2;
                float *x = malloc((size_t)n * ldx * 4), *w = malloc((size_t)rows * ldw * 4), *bias = malloc((size_t)rows * 4);
                float *y0 = malloc((size_t)n * ldy * 4), *y = malloc((size_t)n * ldy * 4);
                double *ref = malloc((size_t)n * rows * 8), *mag = malloc((size_t)n * rows * 8);
                assert_true(x && w && bias && y0 && y && ref && mag);
                for (int i = 0; i < n * ldx; i++) x[i] = fl_rng_uniform_range(&rng, -1, 1);
                for (int i = 0; i < rows * ldw; i++) w[i] = fl_rng_uniform_range(&rng, -1, 1);
                for (int i = 0; i < rows; i++) bias[i] = fl_rng_uniform_range(&rng, -1, 1);
                for (int i = 0; i < n * ldy; i++) y0[i] = fl_rng_uniform_range(&rng, -1, 1);
                float *pk = pack_pk(w, rows, K, ldw);
                for (int with_bias = 0; with_bias < 2; with_bias++) {
                    for (int i = 0; i < n; i++)
                        for (int r = 0; r < rows; r++) {
                            double s0 = with_bias ? bias[r] : 0.0, m = fabs(s0);
                            for (int k = 0; k < K; k++) {
                                double p = (double)x[(size_t)i * ldx + k] * w[(size_t)r * ldw + k];
                                s0 += p;
                                m += fabs(p);
                            }
                            ref[(size_t)i * rows + r] = s0;
                            mag[(size_t)i * rows + r] = m;
                        }
                    for (size_t li = 0; li < sizeof LEVELS / sizeof LEVELS[0] + 1; li++) {
                        const fl_kernels *k = li < 3 ? fl_kernels_by_name(LEVELS[li]) : NULL;
                        if (li < 3 && (!k || !k->gemm_pk)) continue;
                        memcpy(y, y0, (size_t)n * ldy * 4);
                        const float *bb = with_bias ? bias : NULL;
                        if (k) k->gemm_pk(n, rows, K, x, ldx, pk, bb, y, ldy);
                        else fl_kernels_gemm_pk_ref(n, rows, K, x, ldx, pk, bb, y, ldy);
                        double e = 0;
                        for (int i = 0; i < n; i++)
                            for (int r = 0; r < rows; r++) {
                                double d = fabs(y[(size_t)i * ldy + r] - ref[(size_t)i * rows + r]) /
                                           fmax(mag[(size_t)i * rows + r], 1e-30);
                                e = fmax(e, d);
                            }
                        if (!(e <= 1e-5))
                            fail_msg("gemm_pk %s n %d rows %d K %d bias %d: rel err %.3g", k ? k->name : "ref-fn", n,
                                     rows, K, with_bias, e);
                        for (int i = 0; i < n; i++)
                            for (int r = rows; r < ldy; r++)
                                assert_true(y[(size_t)i * ldy + r] == y0[(size_t)i * ldy + r]);
                    }
                }
                fl_free(pk);
                free(x), free(w), free(bias), free(y0), free(y), free(ref), free(mag);
            }
}

/* fl_rec_input against x W_ih^T + bias in double, at every level, one and two threads, small and
 * large n (two threads split W_ih's panels from 2M multiply-adds on): where the packed copy is used
 * (true) the result must match; where it is not (false) nothing may be written. The ref level has
 * no packed projection, so it must decline; with two threads a level that has one must use it. */
static void test_rec_input(void **state) {
    (void)state;
    fl_arch a = {.vocab = 0, .input = 29, .hidden = 37, .layers = 1, .head = FL_HEAD_NONE, .head_out = 0};
    fl_mat_spec specs[2] = {{FL_METHOD_DENSE, 0}, {FL_METHOD_DENSE, 0}};
    fl_model *m = NULL;
    assert_int_equal(fl_model_create(&a, specs, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 21), FL_OK);
    const fl_layer *ly = &m->layer[0];
    const int I = 29, G = 4 * 37, nmax = 700, ldx = I + 2, ldg = G + 3;
    float *x = malloc((size_t)nmax * ldx * 4), *bias = malloc((size_t)G * 4), *gx = malloc((size_t)nmax * ldg * 4);
    assert_true(x && bias && gx);
    fl_rng rng;
    fl_rng_seed(&rng, 22);
    for (int i = 0; i < nmax * ldx; i++) x[i] = fl_rng_uniform_range(&rng, -1, 1);
    for (int i = 0; i < G; i++) bias[i] = fl_rng_uniform_range(&rng, -1, 1);
    for (size_t li = 0; li < sizeof LEVELS / sizeof LEVELS[0]; li++)
        for (int threads = 1; threads <= 2; threads++)
            for (int n = 11; n <= nmax; n += nmax - 11) {
                fl_rec *r = NULL;
                if (fl_rec_create_with(ly, 4, threads, LEVELS[li], &r) != FL_OK) continue;
                for (int i = 0; i < n * ldg; i++) gx[i] = 7.0f;
                const bool used = fl_rec_input(r, n, x, ldx, bias, gx, ldg);
                const fl_kernels *k = fl_kernels_by_name(LEVELS[li]);
                if (!k->gemm_pk) assert_false(used);
                else if (threads == 2) assert_true(used);
                for (int i = 0; i < n; i++)
                    for (int q = 0; q < ldg; q++) {
                        const float got = gx[(size_t)i * ldg + q];
                        if (!used || q >= G) {
                            assert_true(got == 7.0f);
                            continue;
                        }
                        double s0 = bias[q], mg = fabs(s0);
                        for (int kk = 0; kk < I; kk++) {
                            double p = (double)x[(size_t)i * ldx + kk] * ly->wih.w[(size_t)q * I + kk];
                            s0 += p;
                            mg += fabs(p);
                        }
                        if (!(fabs(got - s0) <= 1e-5 * mg))
                            fail_msg("fl_rec_input %s threads %d n %d row %d col %d: %g vs %g", LEVELS[li], threads, n,
                                     i, q, (double)got, s0);
                    }
                fl_rec_free(r);
            }
    free(x), free(bias), free(gx);
    fl_model_free(m);
}

static void test_bad_args(void **state) {
    (void)state;
    fl_model *m = make_model(20, FL_METHOD_SVD, 3, 9);
    fl_rec *r = (fl_rec *)&r;
    assert_int_equal(fl_rec_create(&m->layer[0], 0, 1, &r), FL_ERR_ARG);
    assert_null(r);
    assert_int_equal(fl_rec_create_with(&m->layer[0], 1, 1, "sse9", &r), FL_ERR_UNSUPPORTED);
    assert_null(r);
    // Allocation failure at every point of creation returns FL_ERR_NOMEM and leaks nothing (ASan).
    for (long n = 0; n < 12; n++) {
        fl_alloc_fail_after(n);
        fl_status st = fl_rec_create(&m->layer[0], 2, 2, &r);
        fl_alloc_fail_after(-1);
        if (st == FL_OK) {
            fl_rec_free(r);
            break;
        }
        assert_int_equal(st, FL_ERR_NOMEM);
        assert_null(r);
    }
    fl_rec_free(NULL);
    fl_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dense),       cmocka_unit_test(test_svd),
        cmocka_unit_test(test_cp),          cmocka_unit_test(test_large),
        cmocka_unit_test(test_set_threads), cmocka_unit_test(test_gemm_nt),
        cmocka_unit_test(test_gemm_pk),     cmocka_unit_test(test_rec_input),
        cmocka_unit_test(test_pool_stress),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
