/* .npy reader/writer: round trips, files written by NumPy itself (the reference), files we write
 * read back by NumPy, and malformed files, each with the exact status expected. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "internal.h"
#include "npy.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static int setup(void **state) { return tmp_dir_make("fl_test_npy"); }

static int teardown(void **state) { return tmp_dir_remove(); }

/* Path of a Python with numpy, or NULL (tests that need it are skipped). */
static const char *python(void) {
    const char *py = getenv("FL_PYTHON");
    if (!py || !*py) py = "/usr/bin/python3";
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s -c 'import numpy' >/dev/null 2>&1", py);
    return system(cmd) == 0 ? py : NULL;
}

static void expect_fail(const char *path, fl_status want) {
    fl_npy a;
    fl_status st = fl_npy_load(path, &a);
    if (st != want) fail_msg("%s: got %s (%s), want %s", path, fl_status_str(st), fl_last_error(), fl_status_str(want));
    assert_null(a.data);
    assert_non_null(strstr(fl_last_error(), path));
}

/* ------------------------------------------------------------------ round trips */

static void test_roundtrip_f32(void **state) {
    const int64_t shapes[5][4] = {{0}, {7}, {3, 5}, {2, 3, 4}, {2, 1, 3, 2}};
    for (int nd = 0; nd <= 4; nd++) {
        size_t n = 1;
        for (int d = 0; d < nd; d++) n *= (size_t)shapes[nd][d];
        float *x = malloc(n * sizeof *x);
        for (size_t i = 0; i < n; i++) x[i] = (float)i * 0.37f - 1.5f + (i == 1 ? -0.0f : 0.0f);
        if (n > 2) x[2] = 1e-42f; /* denormal survives */
        const char *p = tmp_path("rt.npy");
        assert_int_equal(fl_npy_save_f32(p, x, nd, shapes[nd]), FL_OK);
        fl_npy a;
        assert_int_equal(fl_npy_load(p, &a), FL_OK);
        assert_int_equal(a.dtype, 'f');
        assert_int_equal(a.ndim, nd);
        assert_int_equal(a.count, n);
        for (int d = 0; d < nd; d++) assert_int_equal(a.shape[d], shapes[nd][d]);
        assert_memory_equal(a.data, x, n * sizeof *x);
        fl_npy_free(&a);
        fl_npy_free(&a); /* idempotent */
        assert_null(a.data);
        free(x);
        /* Header + preamble padded to 64 bytes, like numpy. */
        unsigned char *b;
        size_t len = file_read(p, &b);
        size_t hlen = b[8] | (size_t)b[9] << 8;
        assert_int_equal((10 + hlen) % 64, 0);
        assert_int_equal(b[10 + hlen - 1], '\n');
        assert_int_equal(len, 10 + hlen + n * 4);
        free(b);
    }
}

static void test_roundtrip_i32_empty(void **state) {
    int32_t x[6] = {0, -1, 2147483647, -2147483647 - 1, 42, 7};
    int64_t shape[2] = {2, 3};
    assert_int_equal(fl_npy_save_i32(tmp_path("i.npy"), x, 2, shape), FL_OK);
    fl_npy a;
    assert_int_equal(fl_npy_load(tmp_path("i.npy"), &a), FL_OK);
    assert_int_equal(a.dtype, 'i');
    assert_memory_equal(a.data, x, sizeof x);
    fl_npy_free(&a);
    int64_t zshape[2] = {0, 5};
    assert_int_equal(fl_npy_save_f32(tmp_path("z.npy"), NULL, 2, zshape), FL_OK);
    assert_int_equal(fl_npy_load(tmp_path("z.npy"), &a), FL_OK);
    assert_int_equal(a.count, 0);
    assert_int_equal(a.shape[1], 5);
    fl_npy_free(&a);
}

static void test_save_bad_args(void **state) {
    float x[2] = {0};
    int64_t neg[1] = {-1}, ok[5] = {1, 1, 1, 1, 2};
    assert_int_equal(fl_npy_save_f32(tmp_path("b.npy"), x, 1, neg), FL_ERR_ARG);
    assert_int_equal(fl_npy_save_f32(tmp_path("b.npy"), x, 5, ok), FL_ERR_ARG);
    assert_int_equal(fl_npy_save_f32(tmp_path("b.npy"), NULL, 1, ok + 4), FL_ERR_ARG);
    assert_int_equal(fl_npy_save_f32(tmp_path("no/such/dir/b.npy"), x, 1, ok + 4), FL_ERR_IO);
    assert_non_null(strstr(fl_last_error(), "no/such/dir/b.npy"));
    assert_int_equal(access(tmp_path("b.npy"), F_OK), -1);
}

/* ------------------------------------------------------------------ NumPy as the reference */

static void test_numpy_written(void **state) {
    const char *py = python();
    if (!py) skip();
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s -c \"\n"
             "import numpy as np, numpy.lib.format as fm\n"
             "d='%s'\n"
             "a=(np.arange(24,dtype=np.float32).reshape(2,3,4)*0.25-3)\n"
             "np.save(d+'/f4.npy', a)\n"
             "np.save(d+'/i4.npy', np.array([[1,-2,3],[4,5,-6]],dtype=np.int32))\n"
             "np.save(d+'/i8.npy', np.array([0,5,2**40,-7],dtype=np.int64))\n"
             "np.save(d+'/scalar.npy', np.float32(2.5))\n"
             "with open(d+'/v2.npy','wb') as f: fm.write_array(f, a, version=(2,0))\n"
             "with open(d+'/v3.npy','wb') as f: fm.write_array(f, a, version=(3,0))\n"
             "np.save(d+'/fortran.npy', np.asfortranarray(np.ones((2,3),dtype=np.float32)))\n"
             "np.save(d+'/f8.npy', np.ones(3))\n"
             "np.save(d+'/u1.npy', np.ones(3,dtype=np.uint8))\n"
             "np.save(d+'/be.npy', np.ones(3,dtype='>f4'))\n"
             "np.save(d+'/rec.npy', np.zeros(2,dtype=[('a','<f4'),('b','<i4')]))\n"
             "np.save(d+'/d5.npy', np.ones((1,1,1,1,2),dtype=np.float32))\n"
             "\"",
             py, tmp_dir);
    assert_int_equal(system(cmd), 0);
    const char *files[3] = {"f4.npy", "v2.npy", "v3.npy"};
    for (int k = 0; k < 3; k++) {
        fl_npy a;
        assert_int_equal(fl_npy_load(tmp_path(files[k]), &a), FL_OK);
        assert_int_equal(a.dtype, 'f');
        assert_int_equal(a.ndim, 3);
        assert_int_equal(a.shape[0], 2);
        assert_int_equal(a.shape[1], 3);
        assert_int_equal(a.shape[2], 4);
        for (size_t i = 0; i < 24; i++) assert_true(((float *)a.data)[i] == (float)i * 0.25f - 3.0f);
        fl_npy_free(&a);
    }
    fl_npy a;
    assert_int_equal(fl_npy_load(tmp_path("i4.npy"), &a), FL_OK);
    int32_t want4[6] = {1, -2, 3, 4, 5, -6};
    assert_int_equal(a.dtype, 'i');
    assert_memory_equal(a.data, want4, sizeof want4);
    fl_npy_free(&a);
    assert_int_equal(fl_npy_load(tmp_path("i8.npy"), &a), FL_OK);
    assert_int_equal(a.dtype, 'l');
    assert_int_equal(((int64_t *)a.data)[2], (int64_t)1 << 40);
    /* Conversion: 2^40 and -7 do not fit token ids. */
    assert_int_equal(fl_npy_ids_to_i32(&a, 100, "i8.npy"), FL_ERR_DATA);
    assert_non_null(strstr(fl_last_error(), "element 2"));
    assert_int_equal(a.dtype, 'l'); /* unchanged on error */
    ((int64_t *)a.data)[2] = 99;
    assert_int_equal(fl_npy_ids_to_i32(&a, 100, "i8.npy"), FL_ERR_DATA);
    assert_non_null(strstr(fl_last_error(), "element 3"));
    ((int64_t *)a.data)[3] = 0;
    assert_int_equal(fl_npy_ids_to_i32(&a, 100, "i8.npy"), FL_OK);
    int32_t want8[4] = {0, 5, 99, 0};
    assert_int_equal(a.dtype, 'i');
    assert_memory_equal(a.data, want8, sizeof want8);
    fl_npy_free(&a);
    assert_int_equal(fl_npy_load(tmp_path("scalar.npy"), &a), FL_OK);
    assert_int_equal(a.ndim, 0);
    assert_int_equal(a.count, 1);
    assert_true(((float *)a.data)[0] == 2.5f);
    assert_int_equal(fl_npy_ids_to_i32(&a, 0, "scalar.npy"), FL_ERR_DTYPE);
    fl_npy_free(&a);

    expect_fail(tmp_path("fortran.npy"), FL_ERR_UNSUPPORTED);
    expect_fail(tmp_path("f8.npy"), FL_ERR_DTYPE);
    expect_fail(tmp_path("u1.npy"), FL_ERR_DTYPE);
    expect_fail(tmp_path("be.npy"), FL_ERR_DTYPE);
    expect_fail(tmp_path("rec.npy"), FL_ERR_DTYPE);
    expect_fail(tmp_path("d5.npy"), FL_ERR_UNSUPPORTED);
}

static void test_numpy_reads_ours(void **state) {
    const char *py = python();
    if (!py) skip();
    float x[6] = {1.5f, -2.0f, 0.0f, 3.25f, -0.5f, 1e-3f};
    int32_t t[3] = {7, -1, 2000000000};
    int64_t s2[2] = {2, 3}, s1[1] = {3}, s0[1] = {0};
    assert_int_equal(fl_npy_save_f32(tmp_path("o_f.npy"), x, 2, s2), FL_OK);
    assert_int_equal(fl_npy_save_i32(tmp_path("o_i.npy"), t, 1, s1), FL_OK);
    assert_int_equal(fl_npy_save_f32(tmp_path("o_s.npy"), x, 0, s0), FL_OK);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "%s -c \"\n"
             "import numpy as np\n"
             "d='%s'\n"
             "a=np.load(d+'/o_f.npy'); assert a.dtype==np.float32 and a.shape==(2,3), a\n"
             "assert (a==np.array([[1.5,-2,0],[3.25,-0.5,1e-3]],dtype=np.float32)).all()\n"
             "b=np.load(d+'/o_i.npy'); assert b.dtype==np.int32 and b.shape==(3,) and list(b)==[7,-1,2000000000]\n"
             "c=np.load(d+'/o_s.npy'); assert c.shape==() and c==np.float32(1.5)\n"
             "\"",
             py, tmp_dir);
    assert_int_equal(system(cmd), 0);
}

/* ------------------------------------------------------------------ malformed files */

/* A valid v1.0 file of 6 float32 with the given dict (padded to 64). Returns its length. */
static size_t make_file(unsigned char *buf, const char *dict, int major) {
    size_t pre = major == 1 ? 10 : 12, dl = strlen(dict);
    size_t hlen = dl + 1;
    hlen += (64 - (pre + hlen) % 64) % 64;
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)major;
    buf[7] = 0;
    buf[8] = (unsigned char)(hlen & 0xff);
    buf[9] = (unsigned char)(hlen >> 8);
    if (major != 1) buf[10] = buf[11] = 0;
    memcpy(buf + pre, dict, dl);
    memset(buf + pre + dl, ' ', hlen - dl - 1);
    buf[pre + hlen - 1] = '\n';
    float x[6] = {1, 2, 3, 4, 5, 6};
    memcpy(buf + pre + hlen, x, sizeof x);
    return pre + hlen + sizeof x;
}

static void test_bad_files(void **state) {
    unsigned char buf[512];
    const char *p = tmp_path("bad.npy");
    const char *good = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    size_t n = make_file(buf, good, 1);
    file_write(p, buf, n);
    fl_npy a;
    assert_int_equal(fl_npy_load(p, &a), FL_OK); /* the template itself is valid */
    fl_npy_free(&a);

    expect_fail(tmp_path("missing.npy"), FL_ERR_IO);
    file_write(p, buf, 0);
    expect_fail(p, FL_ERR_FORMAT);
    /* Truncated at every length. */
    for (size_t k = 1; k < n; k++) {
        file_write(p, buf, k);
        expect_fail(p, FL_ERR_FORMAT);
    }
    /* Trailing data. */
    buf[n] = 0;
    file_write(p, buf, n + 1);
    expect_fail(p, FL_ERR_FORMAT);
    /* Bad magic. */
    buf[1] = 'X';
    file_write(p, buf, n);
    expect_fail(p, FL_ERR_FORMAT);
    buf[1] = 'N';
    /* Unknown major version. */
    buf[6] = 9;
    file_write(p, buf, n);
    expect_fail(p, FL_ERR_VERSION);
    buf[6] = 1;
    /* Header length past end of file. */
    buf[9] = 0x7f;
    file_write(p, buf, n);
    expect_fail(p, FL_ERR_FORMAT);

    struct {
        const char *dict;
        fl_status want;
    } cases[] = {
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", FL_OK},
        {"{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}", FL_OK},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", FL_OK},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), }", FL_ERR_FORMAT}, /* 32 bytes needed */
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3), }", FL_ERR_FORMAT}, /* extra data */
        {"{'descr': '<f2', 'fortran_order': False, 'shape': (2, 3), }", FL_ERR_DTYPE},
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", FL_ERR_UNSUPPORTED},
        {"{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2, 3), }", FL_ERR_FORMAT},
        {"{'descr': '<f4', 'shape': (2, 3), }", FL_ERR_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False}", FL_ERR_FORMAT},
        {"{'fortran_order': False, 'shape': (2, 3)}", FL_ERR_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }", FL_ERR_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2 3), }", FL_ERR_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999, 3), }", FL_ERR_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }", FL_ERR_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'extra': 1}", FL_ERR_FORMAT},
        {"{'descr': '<f4' 'fortran_order': False, 'shape': (2, 3)}", FL_ERR_FORMAT},
        {"['descr', '<f4']", FL_ERR_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)} x", FL_ERR_FORMAT},
        {"{'descr: '<f4', 'fortran_order': False, 'shape': (2, 3)}", FL_ERR_FORMAT},
        {"", FL_ERR_FORMAT},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int major = 1; major <= 2; major++) {
            n = make_file(buf, cases[c].dict, major);
            file_write(p, buf, n);
            fl_status st = fl_npy_load(p, &a);
            if (st != cases[c].want)
                fail_msg("case %zu (v%d) %s: got %s (%s)", c, major, cases[c].dict, fl_status_str(st), fl_last_error());
            if (st) {
                assert_null(a.data);
                assert_non_null(strstr(fl_last_error(), p));
            }
            fl_npy_free(&a);
        }
    }
}

static void test_alloc_failure(void **state) {
    float x[4] = {1, 2, 3, 4};
    int64_t s[1] = {4};
    const char *p = tmp_path("a.npy");
    assert_int_equal(fl_npy_save_f32(p, x, 1, s), FL_OK);
    for (long k = 0; k < 2; k++) {
        fl_alloc_fail_after(k);
        fl_npy a;
        fl_status st = fl_npy_load(p, &a);
        fl_alloc_fail_after(-1);
        assert_int_equal(st, FL_ERR_NOMEM);
        assert_null(a.data);
    }
    fl_alloc_fail_after(0);
    fl_status st = fl_npy_save_f32(p, x, 1, s);
    fl_alloc_fail_after(-1);
    assert_int_equal(st, FL_ERR_NOMEM);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_f32),     cmocka_unit_test(test_roundtrip_i32_empty),
        cmocka_unit_test(test_save_bad_args),     cmocka_unit_test(test_numpy_written),
        cmocka_unit_test(test_numpy_reads_ours),  cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_alloc_failure),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
