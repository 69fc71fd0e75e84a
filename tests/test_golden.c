/* Golden tests: PyTorch (nn.Embedding -> nn.LSTM -> nn.Linear, float64 reference) against
 * fl_session_run in both layouts and against streaming fl_session_step. Dense models, and SVD / CP
 * models whose files hold only the factors while PyTorch runs on their product (gen_golden.py): the
 * decomposed runtime is checked against PyTorch, not against the library's own reconstruction.
 *
 * At start the test runs `$FL_PYTHON $FL_SOURCE_DIR/tests/gen_golden.py <tmpdir>`, then registers one
 * cmocka test per case listed in <tmpdir>/cases.txt. If the generator cannot run (no torch, no
 * python), a single test fails with the reason: a missing reference is a failure, never a skip.
 * CTest runs this twice: test_golden (the fastest kernels this CPU has) and test_golden_ref
 * (FL_KERNELS=ref); both assert every case, and kernel_level asserts which level ran. Tolerance:
 * max abs error 1e-5 on outputs and on the final (h, c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fastlstm/fastlstm.h"
#include "internal.h"
#include "kernels/kernels.h"
#include "npy.h"
#include "testutil.h"

#define TOL 1e-5

static char g_gen_error[4096];

/* ------------------------------------------------------------ helpers */

static int load_opt(const char *dir, const char *file, fl_npy *a) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    if (access(p, F_OK) != 0) {
        memset(a, 0, sizeof *a);
        return 0;
    }
    fl_status st = fl_npy_load(p, a);
    if (st) fail_msg("%s: %s", fl_status_str(st), fl_last_error());
    return 1;
}

static void load_req(const char *dir, const char *file, fl_npy *a) {
    if (!load_opt(dir, file, a)) fail_msg("%s/%s missing", dir, file);
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d; /* NaN propagates as the maximum */
    }
    return m;
}

static void check_arrays(const char *what, const char *c, const float *got, const float *want, size_t n) {
    double e = max_abs_diff(got, want, n);
    if (!(e <= TOL)) fail_msg("%s: %s max abs error %.3g > %g", c, what, e, TOL);
}

/* dst (d1, d0, w) = src (d0, d1, w); w in elements of size es. */
static void swap01(void *dst, const void *src, int d0, int d1, size_t w, size_t es) {
    for (int i = 0; i < d0; i++)
        for (int j = 0; j < d1; j++)
            memcpy((char *)dst + ((size_t)j * d0 + i) * w * es, (const char *)src + ((size_t)i * d1 + j) * w * es,
                   w * es);
}

/* ------------------------------------------------------------ one case */

static void test_case(void **state) {
    const char *name = *state;
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/%s", tmp_dir, name);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    fl_model *m = NULL;
    fl_status st = fl_model_load(path, &m);
    if (st) fail_msg("fl_model_load(%s): %s: %s", path, fl_status_str(st), fl_last_error());
    const fl_arch *a = fl_model_arch(m);
    const int D = a->input, P = a->proj > 0 ? a->proj : a->hidden;
    /* "svd_*" / "cp_*" cases hold every LSTM gate matrix as factors: the decomposed path is what runs.
     * Layer cases with factors ("*_svd_*", "*_cp_*", "*_mixed_*") mix methods per matrix. */
    const fl_method method = !strncmp(name, "svd_", 4) ? FL_METHOD_SVD : !strncmp(name, "cp_", 3) ? FL_METHOD_CP
                                                                                                  : FL_METHOD_DENSE;
    const bool mixed = strstr(name, "_svd_") || strstr(name, "_cp_") || strstr(name, "_mixed_");
    for (size_t i = 0; !mixed && i < fl_model_num_matrices(m); i++) {
        fl_matrix_info mi;
        assert_int_equal(fl_model_matrix_info(m, i, &mi), FL_OK);
        if (mi.kind != FL_MAT_IH && mi.kind != FL_MAT_HH) continue;
        if (mi.method != method) fail_msg("%s: matrix %s has method %d, expected %d", name, mi.name, mi.method, method);
    }
    fl_npy x = {0}, tok = {0}, h0 = {0}, c0 = {0}, y = {0}, hn = {0}, cn = {0}, y0 = {0}, len = {0};
    if (a->vocab > 0) load_req(dir, "tokens.npy", &tok);
    else load_req(dir, "x.npy", &x);
    load_opt(dir, "h0.npy", &h0);
    load_opt(dir, "c0.npy", &c0);
    load_req(dir, "y.npy", &y);
    load_req(dir, "hn.npy", &hn);
    load_req(dir, "cn.npy", &cn);
    load_req(dir, "y_zero.npy", &y0);
    const int32_t *lengths = load_opt(dir, "lengths.npy", &len) ? len.data : NULL;
    const fl_npy *in = a->vocab > 0 ? &tok : &x;
    assert_int_equal(in->dtype, a->vocab > 0 ? 'i' : 'f');
    const int B = (int)in->shape[0], T = (int)in->shape[1];
    const size_t nh = fl_run_state_size(m, B, 0), nc = fl_run_state_size(m, B, 1);
    assert_int_equal(hn.count, nh);
    assert_int_equal(cn.count, nc);
    if (lengths) assert_int_equal(len.count, (size_t)B);
    const size_t ny = fl_run_output_size(m, B, T);
    assert_int_equal(y.count, ny);
    assert_int_equal(y0.count, ny);

    /* A session larger than needed: max_batch and max_seq are limits, not exact sizes. */
    fl_session_opts o = fl_session_opts_default();
    o.max_batch = B + 1;
    o.max_seq = T + 3;
    fl_session *s = NULL;
    st = fl_session_create(m, &o, &s);
    if (st) fail_msg("fl_session_create: %s: %s", fl_status_str(st), fl_last_error());

    float *yo = calloc(ny, sizeof(float)), *ht = calloc(ny, sizeof(float));
    float *hno = calloc(nh, sizeof(float)), *cno = calloc(nc, sizeof(float));
    assert_non_null(yo);
    assert_non_null(ht);

    /* batch-major */
    fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = B, .seq = T, .h0 = h0.data, .c0 = c0.data,
                    .y = yo, .hn = hno, .cn = cno, .lengths = lengths};
    if (a->vocab > 0) io.tokens = tok.data;
    else io.x = x.data;
    st = fl_session_run(s, &io);
    if (st) fail_msg("fl_session_run: %s: %s", fl_status_str(st), fl_last_error());
    double ey = max_abs_diff(yo, y.data, ny), eh = max_abs_diff(hno, hn.data, hn.count),
           ec = max_abs_diff(cno, cn.data, cn.count);
    print_message("%-24s kernels=%s  batch-major max|err| y %.2e  h_n %.2e  c_n %.2e\n", name,
                  fl_kernels_get()->name, ey, eh, ec);
    check_arrays("batch-major y", name, yo, y.data, ny);
    check_arrays("batch-major h_n", name, hno, hn.data, hn.count);
    check_arrays("batch-major c_n", name, cno, cn.data, cn.count);

    /* time-major: inputs (T, B, *), outputs (T, B, *) except the last-step head (B, C) */
    size_t w = a->vocab > 0 ? 1 : (size_t)D;
    size_t es = a->vocab > 0 ? sizeof(int32_t) : sizeof(float);
    void *tin = malloc((size_t)B * T * w * es);
    assert_non_null(tin);
    swap01(tin, in->data, B, T, w, es);
    /* garbage in y: outputs past a sequence's length must be written as zeros */
    memset(yo, 0x7f, ny * sizeof(float));
    memset(hno, 0, nh * sizeof(float));
    memset(cno, 0, nc * sizeof(float));
    io.layout = FL_TIME_MAJOR;
    /* two threads: a bidirectional layer runs its directions on two threads */
    assert_int_equal(fl_session_set_threads(s, 2), FL_OK);
    if (a->vocab > 0) io.tokens = tin;
    else io.x = tin;
    st = fl_session_run(s, &io);
    if (st) fail_msg("fl_session_run (time-major): %s: %s", fl_status_str(st), fl_last_error());
    if (a->head == FL_HEAD_LAST_STEP) memcpy(ht, yo, ny * sizeof(float));
    else swap01(ht, yo, T, B, ny / ((size_t)B * T), sizeof(float));  // (T, B, *) -> (B, T, *)
    check_arrays("time-major y", name, ht, y.data, ny);
    check_arrays("time-major h_n", name, hno, hn.data, hn.count);
    check_arrays("time-major c_n", name, cno, cn.data, cn.count);
    assert_int_equal(fl_session_set_threads(s, 1), FL_OK);
    if (a->bidirectional) { /* streaming needs the whole sequence: refused */
        float xz[64] = {0}, tmp[64];
        int32_t tk[1] = {0};
        st = fl_session_step(s, 1, a->vocab > 0 ? NULL : xz, a->vocab > 0 ? tk : NULL, tmp);
        assert_int_equal(st, FL_ERR_UNSUPPORTED);
        assert_non_null(strstr(fl_last_error(), "bidirectional"));
        goto done;
    }

    /* streaming from a zero state, step by step, against the zero-state reference */
    const int V = a->head == FL_HEAD_NONE ? P : a->head_out;
    float *xs = malloc((size_t)B * D * sizeof(float) + 1), *ys = malloc((size_t)B * V * sizeof(float));
    int32_t *ts = malloc((size_t)B * sizeof(int32_t));
    assert_non_null(xs);
    assert_non_null(ys);
    assert_non_null(ts);
    assert_int_equal(fl_session_reset(s, -1), FL_OK);
    double es_max = 0;
    for (int t = 0; t < T; t++) {
        for (int b = 0; b < B; b++) {
            if (a->vocab > 0) ts[b] = ((const int32_t *)tok.data)[(size_t)b * T + t];
            else memcpy(xs + (size_t)b * D, (const float *)x.data + ((size_t)b * T + t) * D, (size_t)D * sizeof(float));
        }
        st = fl_session_step(s, B, a->vocab > 0 ? NULL : xs, a->vocab > 0 ? ts : NULL, ys);
        if (st) fail_msg("fl_session_step: %s: %s", fl_status_str(st), fl_last_error());
        const float *ref = y0.data;
        for (int b = 0; b < B; b++) {
            const int lb = lengths ? lengths[b] : T; /* steps past a length are not compared */
            if (t >= lb) continue;
            const float *want;
            if (a->head == FL_HEAD_LAST_STEP) {
                if (t != lb - 1) continue;
                want = ref + (size_t)b * V;
            } else {
                want = ref + ((size_t)b * T + t) * V;
            }
            double e = max_abs_diff(ys + (size_t)b * V, want, (size_t)V);
            if (!(e <= es_max)) es_max = e;
        }
    }
    print_message("%-24s streaming max|err| %.2e\n", name, es_max);
    if (!(es_max <= TOL)) fail_msg("%s: streaming max abs error %.3g > %g", name, es_max, TOL);

    /* streaming from PyTorch's (h0, c0) through fl_session_set_state (zeros when the case has none),
     * against y; then fl_session_get_state against (h_n, c_n) */
    st = fl_session_set_state(s, B, h0.data, c0.data);
    if (st) fail_msg("fl_session_set_state: %s: %s", fl_status_str(st), fl_last_error());
    double ess_max = 0;
    for (int t = 0; t < T; t++) {
        for (int b = 0; b < B; b++) {
            if (a->vocab > 0) ts[b] = ((const int32_t *)tok.data)[(size_t)b * T + t];
            else memcpy(xs + (size_t)b * D, (const float *)x.data + ((size_t)b * T + t) * D, (size_t)D * sizeof(float));
        }
        st = fl_session_step(s, B, a->vocab > 0 ? NULL : xs, a->vocab > 0 ? ts : NULL, ys);
        if (st) fail_msg("fl_session_step: %s: %s", fl_status_str(st), fl_last_error());
        for (int b = 0; b < B; b++) {
            const int lb = lengths ? lengths[b] : T;
            if (t >= lb || (a->head == FL_HEAD_LAST_STEP && t != lb - 1)) continue;
            const float *want = (const float *)y.data + (a->head == FL_HEAD_LAST_STEP ? (size_t)b * V
                                                                                      : ((size_t)b * T + t) * V);
            double e = max_abs_diff(ys + (size_t)b * V, want, (size_t)V);
            if (!(e <= ess_max)) ess_max = e;
        }
    }
    print_message("%-24s streaming from (h0, c0) max|err| %.2e\n", name, ess_max);
    if (!(ess_max <= TOL)) fail_msg("%s: streaming from (h0, c0) max abs error %.3g > %g", name, ess_max, TOL);
    st = fl_session_get_state(s, B, hno, cno);
    if (st) fail_msg("fl_session_get_state: %s: %s", fl_status_str(st), fl_last_error());
    if (!lengths) { /* with lengths, (h_n, c_n) are at each length, the stream went on to T */
        check_arrays("streaming h_n", name, hno, hn.data, hn.count);
        check_arrays("streaming c_n", name, cno, cn.data, cn.count);
    }
    free(xs);
    free(ys);
    free(ts);
done:
    free(tin);
    free(yo);
    free(ht);
    free(hno);
    free(cno);
    fl_npy *all[] = {&x, &tok, &h0, &c0, &y, &hn, &cn, &y0, &len};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) fl_npy_free(all[i]);
    fl_session_free(s);
    fl_model_free(m);
}

/* The cases above ran on the level this run is meant to test: with FL_KERNELS naming a level the
 * CPU has (ref for test_golden_ref), that level; otherwise the best the CPU has, the fast kernels. */
static void test_kernel_level(void **state) {
    (void)state;
    const char *want = getenv("FL_KERNELS");
    const fl_kernels *got = fl_kernels_get();
    print_message("kernel level in use: %s (FL_KERNELS=%s)\n", got->name, want ? want : "(unset)");
    const fl_kernels *expect = want ? fl_kernels_by_name(want) : NULL;
    if (!expect) expect = fl_kernels_by_name("avx512");
    if (!expect) expect = fl_kernels_by_name("avx2");
    if (!expect) expect = fl_kernels_by_name("ref");
    assert_non_null(expect);
    assert_string_equal(got->name, expect->name);
}

static void test_generator_failed(void **state) {
    (void)state;
    fail_msg("%s", g_gen_error);
}

/* ------------------------------------------------------------ generation */

/* Run gen_golden.py into tmp_dir; on failure fill g_gen_error and return 0. */
static int generate(void) {
    const char *py = getenv("FL_PYTHON"), *src = getenv("FL_SOURCE_DIR");
    if (!py || !*py) py = "/usr/bin/python3";
    if (!src || !*src) {
        snprintf(g_gen_error, sizeof g_gen_error, "FL_SOURCE_DIR is not set (run through ctest)");
        return 0;
    }
    if (tmp_dir_make("fl_golden") != 0) {
        snprintf(g_gen_error, sizeof g_gen_error, "cannot create a scratch directory %s", tmp_dir);
        tmp_dir[0] = '\0';
        return 0;
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' '%s/tests/gen_golden.py' '%s'", py, src, tmp_dir);
    int rc = system(cmd);
    if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) != 0) {
        int code = rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
        snprintf(g_gen_error, sizeof g_gen_error,
                 "golden reference generator failed (exit %d): %s%s", code, cmd,
                 code == 3 ? " -- PyTorch is missing: install python3-torch or point FL_PYTHON at a "
                             "Python that has torch; the golden test cannot pass without it"
                           : "");
        return 0;
    }
    return 1;
}

int main(void) {
    enum { MAX_CASES = 64 };
    static char names[MAX_CASES][128];
    struct CMUnitTest tests[MAX_CASES + 1];
    size_t n = 0;
    tests[n++] = (struct CMUnitTest){"kernel_level", test_kernel_level, NULL, NULL, NULL};
    if (!generate()) {
        tests[n++] = (struct CMUnitTest){"generate_golden", test_generator_failed, NULL, NULL, NULL};
    } else {
        char p[1024];
        snprintf(p, sizeof p, "%s/cases.txt", tmp_dir);
        FILE *f = fopen(p, "r");
        size_t k = 0;
        while (f && k < MAX_CASES - 1 && fgets(names[k], sizeof names[k], f)) {
            names[k][strcspn(names[k], "\r\n")] = '\0';
            if (!names[k][0]) continue;
            tests[n++] = (struct CMUnitTest){names[k], test_case, NULL, NULL, names[k]};
            k++;
        }
        if (f) fclose(f);
        if (k < 14) {
            snprintf(g_gen_error, sizeof g_gen_error, "%s lists %zu cases, expected at least 14", p, k);
            tests[n++] = (struct CMUnitTest){"golden_cases", test_generator_failed, NULL, NULL, NULL};
        }
    }
    int rc = _cmocka_run_group_tests("golden", tests, n, NULL, NULL);
    if (tmp_dir[0] && tmp_dir_remove() != 0) fprintf(stderr, "warning: could not remove %s\n", tmp_dir);
    return rc;
}
