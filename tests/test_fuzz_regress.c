/* Regressions from fuzzing the loaders (tests/fuzz): every input that crashed, hung, leaked or made
 * a loader allocate from an unchecked header value, replayed here in every CI build. Two parts:
 *  - crafted cases, one per fix, each asserting the exact status and the message that only the
 *    fixed loader gives (they fail without the fix, or under ASan crash without it);
 *  - the raw fuzzer inputs committed under tests/fuzz/regress/ (model-*, npy-*, checkpoint-*),
 *    loaded from memory and from a file: each must come back with a status, a message and no
 *    output object, under ASan/UBSan without a report. */
#define _DEFAULT_SOURCE /* mkdtemp */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fastlstm/train.h"
#include "internal.h"
#include "memload.h"
#include "npy.h"
#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int setup(void **state) { return tmp_dir_make("fl_test_fuzz"); }

static int teardown(void **state) { return tmp_dir_remove(); }

typedef struct bytes {
    unsigned char *b;
    size_t n;
} bytes;

static bytes slurp(const char *path) {
    bytes r;
    r.n = file_read(path, &r.b);
    return r;
}

static void expect_msg(fl_status got, fl_status want, const char *substr) {
    if (got != want || (substr && !strstr(fl_last_error(), substr)))
        fail_msg("got %s (%s), want %s with \"%s\"", fl_status_str(got), fl_last_error(), fl_status_str(want),
                 substr ? substr : "");
}

/* ------------------------------------------------------------------ checkpoints */

/* The checkpoint's closing FNV-1a hash of every byte before it (as the fuzz harness fixes it up). */
static void fix_hash(unsigned char *b, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i + 8 < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    memcpy(b + n - 8, &h, 8);
}

static fl_status resume_bytes(const bytes *c) {
    fl_model *m = (fl_model *)(uintptr_t)1;
    fl_trainer *t = (fl_trainer *)(uintptr_t)1;
    fl_status st = fl_trainer_resume_memory(c->b, c->n, "regress.ckpt", &m, &t);
    if (st == FL_OK) {
        fl_trainer_free(t);
        fl_model_free(m);
    } else {
        assert_null(m);
        assert_null(t);
    }
    return st;
}

/* Byte offsets in a version-1 checkpoint with nmat matrices (layout in checkpoint.c). */
static size_t off_specs(void) { return 8 + 4 + 24 + 4; }
static size_t off_opts(uint32_t nmat) { return off_specs() + 16 * (size_t)nmat; }
static size_t off_batch(uint32_t nmat) { return off_opts(nmat) + 4; }          /* i32 opts[1] */
static size_t off_lr(uint32_t nmat) { return off_opts(nmat) + 68 + 4 + 8 + 8; } /* after epoch, step, pos */
static size_t off_tokenizer(uint32_t nmat) { return off_opts(nmat) + 68 + 96; } /* u64 length */

/* A real checkpoint: a classifier (input 2, hidden 3, 2 classes) after `steps` steps on 6
 * sequences (so a shuffle of 6 is stored), or a character LM (per-step head, carried state). */
static bytes real_checkpoint(bool lm, int steps) {
    fl_arch a = lm ? (fl_arch){.vocab = 5, .input = 3, .hidden = 2, .layers = 1, .head = FL_HEAD_PER_STEP, .head_out = 5}
                    : (fl_arch){.vocab = 0, .input = 2, .hidden = 3, .layers = 1, .head = FL_HEAD_LAST_STEP, .head_out = 2};
    fl_model *m;
    assert_int_equal(fl_model_create(&a, NULL, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 3), FL_OK);
    if (lm) {
        const char *tok = "{\"mode\":\"char\",\"tokens\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}";
        m->tokenizer = fl_malloc(strlen(tok) + 1);
        assert_non_null(m->tokenizer);
        strcpy(m->tokenizer, tok);
    }
    fl_dataset *d;
    if (lm) {
        int32_t ids[40];
        for (int i = 0; i < 40; i++) ids[i] = (i * 3) % 5;
        assert_int_equal(fl_dataset_lm(ids, 40, 5, &d), FL_OK);
    } else {
        float x[6 * 4 * 2];
        int32_t y[6];
        for (int i = 0; i < 6 * 4 * 2; i++) x[i] = (float)((i * 37) % 11) / 11.0f - 0.5f;
        for (int i = 0; i < 6; i++) y[i] = i % 2;
        assert_int_equal(fl_dataset_classify(6, 4, 2, x, NULL, y, 2, &d), FL_OK);
    }
    fl_train_opts o = fl_train_opts_default();
    o.batch = 2;
    o.bptt = 4;
    fl_trainer *t;
    assert_int_equal(fl_trainer_create(m, &o, &t), FL_OK);
    for (int s = 0; s < steps; s++) assert_int_equal(fl_trainer_step(t, d, NULL), FL_OK);
    const char *p = tmp_path("real.ckpt");
    assert_int_equal(fl_trainer_save(t, p), FL_OK);
    fl_trainer_free(t);
    fl_model_free(m);
    fl_dataset_free(d);
    bytes c = slurp(p);
    assert_int_equal(resume_bytes(&c), FL_OK); /* the unedited file loads */
    return c;
}

static bytes safetensors_with_header(const char *json, size_t data_bytes);

/* A checkpoint cut short after its specs: magic, version, arch, nmat, nmat dense specs, then `pad`
 * zero bytes and a hash. Enough to reach the architecture checks. */
static bytes crafted_checkpoint(const int32_t arch[6], uint32_t nmat, size_t pad) {
    bytes c;
    c.n = off_opts(nmat) + pad + 8;
    c.b = calloc(1, c.n);
    assert_non_null(c.b);
    memcpy(c.b, "FLCKPT01", 8);
    uint32_t version = 1;
    memcpy(c.b + 8, &version, 4);
    memcpy(c.b + 12, arch, 24);
    memcpy(c.b + 36, &nmat, 4);
    fix_hash(c.b, c.n);
    return c;
}

/* fl_model_create reads one spec per matrix of the architecture, and the count in the file was
 * checked only after it: nmat 1 with 16 layers read 33 specs from a 1-spec buffer (heap overflow). */
static void test_ckpt_nmat_short(void **state) {
    const int32_t arch[6] = {0, 1, 1, 16, FL_HEAD_LAST_STEP, 2};
    bytes c = crafted_checkpoint(arch, 1, 64);
    expect_msg(resume_bytes(&c), FL_ERR_FORMAT, "matrix count does not match");
    free(c.b);
}

/* Found by fuzz_checkpoint: hidden 2130706178 made fl_arch_check compute 4 * hidden * hidden in
 * int64, a signed overflow (UBSan: model.c "8522824712 * 2130706178 cannot be represented"). The
 * loaders now bound every size below 2^30 before fl_arch_check; the same for the model file. */
static void test_arch_overflow(void **state) {
    const int32_t arch[6] = {5, 3, 2130706178, 1761337084, FL_HEAD_PER_STEP, 5};
    bytes c = crafted_checkpoint(arch, 3, 64);
    expect_msg(resume_bytes(&c), FL_ERR_FORMAT, "hidden = 2130706178 is outside [0, 2^30)");
    free(c.b);
    bytes f = safetensors_with_header(
        "{\"__metadata__\":{\"format\":\"fastlstm\",\"format_version\":\"1\",\"vocab\":\"0\",\"input\":\"2130706178\","
        "\"hidden\":\"2130706178\",\"layers\":\"1\",\"head\":\"none\",\"head_out\":\"0\"}}",
        16);
    fl_model *m = (fl_model *)(uintptr_t)1;
    expect_msg(fl_model_load_memory(f.b, f.n, "overflow.safetensors", &m), FL_ERR_FORMAT, "[1, 1073741823]");
    assert_null(m);
    free(f.b);
}

/* The loader re-raised errors as fl_fail("%s: %s", path, fl_last_error()): vsnprintf into the buffer
 * it reads from (undefined; glibc dropped the detail: "x.ckpt: x.ckpt:  method -1094795586"). The
 * detail of fl_model_create's and fl_trainer_create's errors must come through whole. */
static void test_ckpt_error_detail(void **state) {
    bytes c = real_checkpoint(false, 0);
    const int32_t method = 7;
    memcpy(c.b + off_specs(), &method, 4); /* matrix 0: lstm.weight_ih_l0 */
    fix_hash(c.b, c.n);
    expect_msg(resume_bytes(&c), FL_ERR_FORMAT, "regress.ckpt: lstm.weight_ih_l0: unknown method 7");
    free(c.b);
    c = real_checkpoint(false, 0);
    const float lr = -1.0f; /* fl_trainer_create rejects it: opts f32[0] after the six i32 */
    memcpy(c.b + off_opts(3) + 24, &lr, 4);
    fix_hash(c.b, c.n);
    expect_msg(resume_bytes(&c), FL_ERR_ARG, "regress.ckpt: learning rate must be > 0, got -1");
    free(c.b);
}

/* The architecture sized the model (fl_model_create) before anything compared it with the file:
 * a 100-byte file asked for a 512 MB parameter block (and up to terabytes within fl_arch_check). */
static void test_ckpt_model_larger_than_file(void **state) {
    const int32_t arch[6] = {0, 4000, 4000, 1, FL_HEAD_LAST_STEP, 2};
    bytes c = crafted_checkpoint(arch, 3, 64);
    expect_msg(resume_bytes(&c), FL_ERR_FORMAT, "bytes of parameters, the rest of the file is");
    free(c.b);
}

/* The tokenizer length (up to 1 GiB) was allocated before it was compared with the file. */
static void test_ckpt_tokenizer_longer_than_file(void **state) {
    bytes c = real_checkpoint(true, 1);
    uint64_t tl;
    memcpy(&tl, c.b + off_tokenizer(3), 8);
    assert_true(tl > 0 && tl < 200); /* the offset is right: this is the LM's tokenizer */
    tl = (uint64_t)1 << 30;
    memcpy(c.b + off_tokenizer(3), &tl, 8);
    fix_hash(c.b, c.n);
    expect_msg(resume_bytes(&c), FL_ERR_FORMAT, "tokenizer of 1073741824 bytes is longer than the rest");
    free(c.b);
}

/* fl_trainer_create allocated the LM state (layers, batch, hidden) from the stored options before the
 * file was known to hold it: batch 65536 with 1024 layers and hidden 16383 is terabytes. */
static void test_ckpt_state_larger_than_file(void **state) {
    bytes c = real_checkpoint(true, 1);
    int32_t batch;
    memcpy(&batch, c.b + off_batch(3), 4);
    assert_int_equal(batch, 2);
    batch = 65536;
    memcpy(c.b + off_batch(3), &batch, 4);
    fix_hash(c.b, c.n);
    expect_msg(resume_bytes(&c), FL_ERR_FORMAT, "language-model state need");
    free(c.b);
}

/* Classifier checkpoint after one step: u64 perm_n, perm_n u32 entries, u64 state_n = 0, u64 hash. */
static size_t perm_at(const bytes *c, uint64_t *pn) {
    size_t at = c->n - 8 - 8 - 6 * 4;
    memcpy(pn, c->b + at - 8, 8);
    assert_int_equal(*pn, 6);
    return at;
}

/* A shuffle of 2^32 - 1 entries was allocated (16 GiB) before the file was known to hold it. */
static void test_ckpt_perm_longer_than_file(void **state) {
    bytes c = real_checkpoint(false, 1);
    uint64_t pn;
    size_t at = perm_at(&c, &pn);
    pn = UINT32_MAX;
    memcpy(c.b + at - 8, &pn, 8);
    fix_hash(c.b, c.n);
    expect_msg(resume_bytes(&c), FL_ERR_FORMAT, "shuffle state of 4294967295 entries is longer");
    free(c.b);
}

/* The stored shuffle indexes the data set on resume (gather_classify reads x[perm[i]]): a value out
 * of range read past the data, a repeated one skewed the epoch. It must be a permutation of 0..n-1. */
static void test_ckpt_perm_not_permutation(void **state) {
    for (int k = 0; k < 2; k++) {
        bytes c = real_checkpoint(false, 1);
        uint64_t pn;
        size_t at = perm_at(&c, &pn);
        uint32_t v = k == 0 ? 1000000u : 0u; /* out of range; then a duplicate */
        uint32_t other;
        memcpy(&other, c.b + at + 4, 4);
        if (k == 1) v = other;
        memcpy(c.b + at, &v, 4);
        fix_hash(c.b, c.n);
        expect_msg(resume_bytes(&c), FL_ERR_FORMAT, "not a permutation");
        free(c.b);
    }
}

/* NaN relative errors and a NaN or negative learning rate were restored as they were: training then
 * went on with a NaN learning rate. */
static void test_ckpt_bad_numbers(void **state) {
    const double nan_v = NAN, neg = -1.0;
    bytes c = real_checkpoint(false, 1);
    memcpy(c.b + off_specs() + 8, &nan_v, 8); /* rel_error of matrix 0 */
    fix_hash(c.b, c.n);
    expect_msg(resume_bytes(&c), FL_ERR_FORMAT, "non-finite relative error");
    free(c.b);
    for (int k = 0; k < 2; k++) {
        c = real_checkpoint(false, 1);
        double lr;
        memcpy(&lr, c.b + off_lr(3), 8);
        assert_true(lr > 0 && lr < 1); /* the offset is right */
        memcpy(c.b + off_lr(3), k ? &neg : &nan_v, 8);
        fix_hash(c.b, c.n);
        expect_msg(resume_bytes(&c), FL_ERR_FORMAT, "learning rate");
        free(c.b);
    }
}

/* ------------------------------------------------------------------ model files */

static bytes safetensors_with_header(const char *json, size_t data_bytes) {
    size_t len = strlen(json);
    bytes f = {calloc(1, 8 + len + data_bytes), 8 + len + data_bytes};
    assert_non_null(f.b);
    for (int i = 0; i < 8; i++) f.b[i] = (unsigned char)((uint64_t)len >> (8 * i));
    memcpy(f.b + 8, json, len);
    return f;
}

/* The metadata sized the model before the data section was compared with it: 16 bytes of data
 * could ask fl_model_create for terabytes (1024 layers of 4 * 16383 x 16383, inside fl_arch_check). */
static void test_model_larger_than_file(void **state) {
    bytes f = safetensors_with_header(
        "{\"__metadata__\":{\"format\":\"fastlstm\",\"format_version\":\"1\",\"vocab\":\"0\",\"input\":\"16383\","
        "\"hidden\":\"16383\",\"layers\":\"1024\",\"head\":\"none\",\"head_out\":\"0\"}}",
        16);
    fl_model *m = (fl_model *)(uintptr_t)1;
    expect_msg(fl_model_load_memory(f.b, f.n, "big.safetensors", &m), FL_ERR_FORMAT, "describes a model of");
    assert_null(m);
    const char *p = tmp_path("big.safetensors");
    file_write(p, f.b, f.n);
    m = (fl_model *)(uintptr_t)1;
    expect_msg(fl_model_load(p, &m), FL_ERR_FORMAT, "describes a model of");
    assert_null(m);
    free(f.b);
}

/* ------------------------------------------------------------------ .npy */

static bytes npy_with_header(const char *dict, size_t data_bytes) {
    size_t hlen = strlen(dict) + 1; /* + '\n' */
    hlen += (64 - (10 + hlen) % 64) % 64;
    bytes f = {calloc(1, 10 + hlen + data_bytes), 10 + hlen + data_bytes};
    assert_non_null(f.b);
    memcpy(f.b, "\x93NUMPY\x01\x00", 8);
    f.b[8] = (unsigned char)(hlen & 0xff);
    f.b[9] = (unsigned char)(hlen >> 8);
    memset(f.b + 10, ' ', hlen);
    memcpy(f.b + 10, dict, strlen(dict));
    f.b[10 + hlen - 1] = '\n';
    return f;
}

/* A repeated key overwrote part of the earlier value: a second, shorter 'shape' left the first one's
 * trailing dimensions in shape[] (npy.h promises zeros there). */
static void test_npy_repeated_key(void **state) {
    const char *dicts[] = {
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3, 4), 'shape': (2,), }",
        "{'descr': '<f4', 'descr': '<i4', 'fortran_order': False, 'shape': (2,), }",
        "{'descr': '<f4', 'fortran_order': False, 'fortran_order': False, 'shape': (2,), }",
    };
    for (size_t k = 0; k < 3; k++) {
        bytes f = npy_with_header(dicts[k], 8);
        fl_npy a;
        expect_msg(fl_npy_load_memory(f.b, f.n, "dup.npy", &a), FL_ERR_FORMAT, "appears twice");
        assert_null(a.data);
        free(f.b);
    }
    /* the same header with the key once loads */
    bytes f = npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 8);
    fl_npy a;
    assert_int_equal(fl_npy_load_memory(f.b, f.n, "once.npy", &a), FL_OK);
    assert_int_equal(a.ndim, 1);
    assert_int_equal(a.shape[0], 2);
    assert_int_equal(a.shape[1], 0);
    fl_npy_free(&a);
    free(f.b);
}

/* ------------------------------------------------------------------ memory loaders = file loaders */

/* The in-memory loaders the harnesses drive parse exactly what the file loaders parse. */
static void test_memory_matches_file(void **state) {
    fl_arch a = {.vocab = 4, .input = 2, .hidden = 3, .layers = 2, .head = FL_HEAD_PER_STEP, .head_out = 4};
    fl_mat_spec specs[5] = {{FL_METHOD_SVD, 1}, {FL_METHOD_CP, 2}, {FL_METHOD_DENSE, 0}, {FL_METHOD_SVD, 2},
                            {FL_METHOD_SVD, 1}};
    fl_model *m, *fm, *mm;
    assert_int_equal(fl_model_create(&a, specs, &m), FL_OK);
    assert_int_equal(fl_model_init_random(m, 11), FL_OK);
    const char *p = tmp_path("m.safetensors");
    assert_int_equal(fl_model_save(m, p), FL_OK);
    bytes f = slurp(p);
    assert_int_equal(fl_model_load(p, &fm), FL_OK);
    assert_int_equal(fl_model_load_memory(f.b, f.n, p, &mm), FL_OK);
    assert_int_equal(fm->n_params, m->n_params);
    assert_int_equal(mm->n_params, m->n_params);
    assert_memory_equal(fm->params, m->params, m->n_params * sizeof(float));
    assert_memory_equal(mm->params, m->params, m->n_params * sizeof(float));
    fl_model_free(fm);
    fl_model_free(mm);
    fl_model_free(m);
    /* every truncation gives the same status from memory and from the file */
    const char *q = tmp_path("cut.safetensors");
    for (size_t n = 0; n < f.n; n += 37) {
        file_write(q, f.b, n);
        fl_status sf = fl_model_load(q, &fm), sm = fl_model_load_memory(f.b, n, q, &mm);
        assert_int_equal(sf, sm);
        assert_int_not_equal(sm, FL_OK);
        assert_null(fm);
        assert_null(mm);
    }
    free(f.b);

    const int64_t shape[2] = {2, 3};
    const float v[6] = {1, 2, 3, 4, 5, 6};
    p = tmp_path("v.npy");
    assert_int_equal(fl_npy_save_f32(p, v, 2, shape), FL_OK);
    f = slurp(p);
    fl_npy x;
    assert_int_equal(fl_npy_load_memory(f.b, f.n, p, &x), FL_OK);
    assert_int_equal(x.count, 6);
    assert_memory_equal(x.data, v, sizeof v);
    fl_npy_free(&x);
    assert_int_equal(fl_npy_load_memory(f.b, 0, p, &x), FL_ERR_FORMAT);
    assert_int_equal(fl_npy_load_memory(f.b, f.n - 1, p, &x), FL_ERR_FORMAT);
    free(f.b);

    bytes c = real_checkpoint(true, 1);
    assert_int_equal(fl_trainer_resume_memory(c.b, 0, "empty", &fm, &(fl_trainer *){NULL}), FL_ERR_FORMAT);
    c.b[c.n - 1] ^= 1; /* checksum */
    expect_msg(resume_bytes(&c), FL_ERR_FORMAT, "checksum");
    free(c.b);
}

/* ------------------------------------------------------------------ committed fuzzer inputs */

static int n_replayed;

static void replay(const char *path, const char *name) {
    bytes f = slurp(path);
    fl_status sm, sf;
    if (!strncmp(name, "model-", 6)) {
        fl_model *m = (fl_model *)(uintptr_t)1, *m2 = (fl_model *)(uintptr_t)1;
        sm = fl_model_load_memory(f.b, f.n, name, &m);
        sf = fl_model_load(path, &m2);
        assert_true(sm == FL_OK ? m != NULL : m == NULL);
        assert_true(sf == FL_OK ? m2 != NULL : m2 == NULL);
        fl_model_free(m);
        fl_model_free(m2);
    } else if (!strncmp(name, "npy-", 4)) {
        fl_npy a, b;
        sm = fl_npy_load_memory(f.b, f.n, name, &a);
        sf = fl_npy_load(path, &b);
        if (sm) assert_null(a.data);
        if (sf) assert_null(b.data);
        fl_npy_free(&a);
        fl_npy_free(&b);
    } else if (!strncmp(name, "checkpoint-", 11)) {
        if (f.n >= 8) fix_hash(f.b, f.n); /* as the harness loads it */
        sm = resume_bytes(&f);
        const char *p = tmp_path("replay.ckpt");
        file_write(p, f.b, f.n);
        fl_model *m;
        fl_trainer *t;
        sf = fl_trainer_resume(p, &m, &t);
        if (sf == FL_OK) {
            fl_trainer_free(t);
            fl_model_free(m);
        }
    } else {
        fail_msg("tests/fuzz/regress/%s: name must start with model-, npy- or checkpoint-", name);
        return;
    }
    if (sm != sf) fail_msg("%s: memory loader says %s, file loader %s", name, fl_status_str(sm), fl_status_str(sf));
    if (sm != FL_OK && !fl_last_error()[0]) fail_msg("%s: %s without a message", name, fl_status_str(sm));
    n_replayed++;
    free(f.b);
}

static void test_regress_corpus(void **state) {
    const char *src = getenv("FL_SOURCE_DIR");
    if (!src) {
        print_message("FL_SOURCE_DIR is not set (run through ctest): skipping the committed inputs\n");
        skip();
    }
    char d[1024];
    snprintf(d, sizeof d, "%s/tests/fuzz/regress", src);
    DIR *dp = opendir(d);
    assert_non_null(dp);
    struct dirent *e;
    while ((e = readdir(dp))) {
        if (e->d_name[0] == '.' || !strcmp(e->d_name, "README.md")) continue;
        char p[2048];
        snprintf(p, sizeof p, "%s/%s", d, e->d_name);
        replay(p, e->d_name);
    }
    closedir(dp);
    print_message("replayed %d committed fuzzer inputs\n", n_replayed);
    assert_true(n_replayed > 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ckpt_nmat_short),
        cmocka_unit_test(test_arch_overflow),
        cmocka_unit_test(test_ckpt_error_detail),
        cmocka_unit_test(test_ckpt_model_larger_than_file),
        cmocka_unit_test(test_ckpt_tokenizer_longer_than_file),
        cmocka_unit_test(test_ckpt_state_larger_than_file),
        cmocka_unit_test(test_ckpt_perm_longer_than_file),
        cmocka_unit_test(test_ckpt_perm_not_permutation),
        cmocka_unit_test(test_ckpt_bad_numbers),
        cmocka_unit_test(test_model_larger_than_file),
        cmocka_unit_test(test_npy_repeated_key),
        cmocka_unit_test(test_memory_matches_file),
        cmocka_unit_test(test_regress_corpus),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
