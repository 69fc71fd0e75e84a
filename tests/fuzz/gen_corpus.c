/* Seed corpora for the fuzz harnesses, written by the library itself: small valid model files
 * (dense, SVD, CP, embedding, every head kind, a tokenizer), .npy arrays (every dtype, 0 to 4
 * dimensions, an empty one) and trainer checkpoints (SGD and Adam, classifier mid-epoch with a
 * shuffle, language model with carried state).
 *
 *   gen_corpus <dir>     writes <dir>/model/, <dir>/npy/, <dir>/checkpoint/ (created if absent)
 *
 * Every file is loaded back through the in-memory loaders as a check that the seeds are valid. */
#include "internal.h"
#include "memload.h"
#include "npy.h"

#include "fastlstm/train.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char root[512];

static void die(const char *what, fl_status st) {
    fprintf(stderr, "gen_corpus: %s: %s (%s)\n", what, fl_status_str(st), fl_last_error());
    exit(1);
}

static const char *out_path(const char *sub, const char *name) {
    static char buf[1024];
    snprintf(buf, sizeof buf, "%s/%s/%s", root, sub, name);
    return buf;
}

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) die(path, FL_ERR_IO);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    if (!b || fread(b, 1, (size_t)len, f) != (size_t)len) die(path, FL_ERR_IO);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static fl_model *make_model(fl_arch a, const fl_mat_spec *specs, uint64_t seed) {
    fl_model *m;
    fl_status st = fl_model_create(&a, specs, &m);
    if (st) die("fl_model_create", st);
    if ((st = fl_model_init_random(m, seed))) die("fl_model_init_random", st);
    return m;
}

static void model_seed(const char *name, fl_arch a, const fl_mat_spec *specs, const char *tokenizer) {
    fl_model *m = make_model(a, specs, 7);
    if (tokenizer) {
        m->tokenizer = fl_malloc(strlen(tokenizer) + 1);
        strcpy(m->tokenizer, tokenizer);
    }
    const char *p = out_path("model", name);
    fl_status st = fl_model_save(m, p);
    if (st) die(p, st);
    fl_model_free(m);
    size_t n;
    unsigned char *b = slurp(p, &n);
    if ((st = fl_model_load_memory(b, n, p, &m))) die(p, st);
    fl_model_free(m);
    free(b);
}

static void npy_seed(const char *name, char dtype, int ndim, const int64_t *shape) {
    size_t count = 1;
    for (int d = 0; d < ndim; d++) count *= (size_t)shape[d];
    int32_t *v = calloc(count ? count : 1, sizeof *v);
    for (size_t i = 0; i < count; i++) v[i] = (int32_t)(i % 5);
    float *f = calloc(count ? count : 1, sizeof *f);
    for (size_t i = 0; i < count; i++) f[i] = 0.25f * (float)i - 1.0f;
    const char *p = out_path("npy", name);
    fl_status st = dtype == 'f' ? fl_npy_save_f32(p, f, ndim, shape) : fl_npy_save_i32(p, v, ndim, shape);
    if (st) die(p, st);
    free(v);
    free(f);
    size_t n;
    unsigned char *b = slurp(p, &n);
    fl_npy a;
    if ((st = fl_npy_load_memory(b, n, p, &a))) die(p, st);
    fl_npy_free(&a);
    free(b);
}

static void ckpt_check(const char *p) {
    size_t n;
    unsigned char *b = slurp(p, &n);
    fl_model *m;
    fl_trainer *t;
    fl_status st = fl_trainer_resume_memory(b, n, p, &m, &t);
    if (st) die(p, st);
    fl_trainer_free(t);
    fl_model_free(m);
    free(b);
}

/* A classifier trained `steps` steps on 6 random sequences, then saved. */
static void ckpt_classify(const char *name, fl_optim optim, const fl_mat_spec *specs, int steps) {
    fl_arch a = {0, 2, 3, 1, FL_HEAD_LAST_STEP, 2};
    fl_model *m = make_model(a, specs, 3);
    float x[6 * 4 * 2];
    int32_t y[6];
    for (int i = 0; i < 6 * 4 * 2; i++) x[i] = (float)((i * 37) % 11) / 11.0f - 0.5f;
    for (int i = 0; i < 6; i++) y[i] = i % 2;
    fl_dataset *d;
    fl_status st = fl_dataset_classify(6, 4, 2, x, NULL, y, 2, &d);
    if (st) die("fl_dataset_classify", st);
    fl_train_opts o = fl_train_opts_default();
    o.optim = optim;
    o.batch = 2;
    fl_trainer *t;
    if ((st = fl_trainer_create(m, &o, &t))) die("fl_trainer_create", st);
    for (int s = 0; s < steps; s++)
        if ((st = fl_trainer_step(t, d, NULL))) die("fl_trainer_step", st);
    const char *p = out_path("checkpoint", name);
    if ((st = fl_trainer_save(t, p))) die(p, st);
    fl_trainer_free(t);
    fl_model_free(m);
    fl_dataset_free(d);
    ckpt_check(p);
}

/* A character language model (vocab 5, per-step head) with a tokenizer, one step in. */
static void ckpt_lm(const char *name) {
    fl_arch a = {5, 3, 2, 1, FL_HEAD_PER_STEP, 5};
    fl_model *m = make_model(a, NULL, 5);
    const char *tok = "{\"mode\":\"char\",\"tokens\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}";
    m->tokenizer = fl_malloc(strlen(tok) + 1);
    strcpy(m->tokenizer, tok);
    int32_t ids[40];
    for (int i = 0; i < 40; i++) ids[i] = (i * 3) % 5;
    fl_dataset *d;
    fl_status st = fl_dataset_lm(ids, 40, 5, &d);
    if (st) die("fl_dataset_lm", st);
    fl_train_opts o = fl_train_opts_default();
    o.optim = FL_OPTIM_SGD;
    o.momentum = 0.5f;
    o.batch = 2;
    o.bptt = 4;
    fl_trainer *t;
    if ((st = fl_trainer_create(m, &o, &t))) die("fl_trainer_create", st);
    if ((st = fl_trainer_step(t, d, NULL))) die("fl_trainer_step", st);
    const char *p = out_path("checkpoint", name);
    if ((st = fl_trainer_save(t, p))) die(p, st);
    fl_trainer_free(t);
    fl_model_free(m);
    fl_dataset_free(d);
    ckpt_check(p);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus <dir>\n");
        return 2;
    }
    snprintf(root, sizeof root, "%s", argv[1]);
    const char *subs[] = {"", "/model", "/npy", "/checkpoint"};
    for (int i = 0; i < 4; i++) {
        char d[600];
        snprintf(d, sizeof d, "%s%s", root, subs[i]);
        if (mkdir(d, 0755) != 0 && errno != EEXIST) {
            perror(d);
            return 1;
        }
    }
    /* models: keep them tiny, the fuzzer mutates every byte */
    model_seed("dense.safetensors", (fl_arch){0, 3, 2, 1, FL_HEAD_NONE, 0}, NULL, NULL);
    model_seed("dense2_last.safetensors", (fl_arch){0, 2, 2, 2, FL_HEAD_LAST_STEP, 3}, NULL, NULL);
    fl_mat_spec svd[3] = {{FL_METHOD_SVD, 1}, {FL_METHOD_SVD, 2}, {FL_METHOD_SVD, 1}};
    model_seed("svd_head.safetensors", (fl_arch){0, 3, 2, 1, FL_HEAD_LAST_STEP, 2}, svd, NULL);
    fl_mat_spec cp[3] = {{FL_METHOD_CP, 2}, {FL_METHOD_CP, 1}, {FL_METHOD_DENSE, 0}};
    model_seed("cp_embed_lm.safetensors", (fl_arch){4, 2, 2, 1, FL_HEAD_PER_STEP, 4}, cp,
               "{\"mode\":\"char\",\"tokens\":[\"a\",\"b\",\"c\",\"d\"]}");
    /* .npy */
    const int64_t s0[1] = {0}, s1[1] = {5}, s2[2] = {2, 3}, s3[3] = {2, 1, 3}, s4[4] = {1, 2, 1, 2};
    npy_seed("scalar_f4.npy", 'f', 0, NULL);
    npy_seed("empty_f4.npy", 'f', 1, s0);
    npy_seed("vec_i4.npy", 'i', 1, s1);
    npy_seed("mat_f4.npy", 'f', 2, s2);
    npy_seed("t3_i4.npy", 'i', 3, s3);
    npy_seed("t4_f4.npy", 'f', 4, s4);
    /* int64 ids, which the library reads but does not write: built by hand as NumPy writes them */
    {
        char hdr[118];
        int o = snprintf(hdr, sizeof hdr, "\x93NUMPY\x01%c%c%c{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }",
                         0, 118 - 10, 0);
        memset(hdr + o, ' ', sizeof hdr - (size_t)o);
        hdr[sizeof hdr - 1] = '\n';
        const int64_t ids[3] = {4, 0, 2};
        const char *p = out_path("npy", "vec_i8.npy");
        FILE *f = fopen(p, "wb");
        if (!f || fwrite(hdr, 1, sizeof hdr, f) != sizeof hdr || fwrite(ids, 1, sizeof ids, f) != sizeof ids ||
            fclose(f) != 0)
            die(p, FL_ERR_IO);
        size_t n;
        unsigned char *b = slurp(p, &n);
        fl_npy a;
        fl_status st = fl_npy_load_memory(b, n, p, &a);
        if (st) die(p, st);
        fl_npy_free(&a);
        free(b);
    }
    /* checkpoints */
    ckpt_classify("cls_sgd_fresh.ckpt", FL_OPTIM_SGD, NULL, 0);
    ckpt_classify("cls_adam_mid.ckpt", FL_OPTIM_ADAM, NULL, 1);
    fl_mat_spec csvd[3] = {{FL_METHOD_SVD, 1}, {FL_METHOD_CP, 1}, {FL_METHOD_DENSE, 0}};
    ckpt_classify("cls_svd_cp.ckpt", FL_OPTIM_ADAM, csvd, 2);
    ckpt_lm("lm_sgd.ckpt");
    printf("seed corpora written to %s/{model,npy,checkpoint}\n", root);
    return 0;
}
