/* Checkpoints: model, tokenizer, options, optimiser state and progress in one file, written
 * atomically (temporary file, fsync, rename, fsync of the directory) and closed by a checksum.
 *
 * Layout (little-endian, as the host; version 1, or 2 for the architectures of issue 11):
 *   "FLCKPT01" u32 version
 *   i32 arch[6] (vocab, input, hidden, layers, head, head_out)
 *   version 2 only: i32 ext[4] (bidirectional, proj, has_padding, padding_idx); version 1 means zeros.
 *   A model without them is written as version 1, which older builds still read.
 *   u32 nmat, then per matrix: i32 method, i32 rank, f64 rel_error
 *   options (field by field, see put_opts), progress (see save), u64 tokenizer bytes + bytes
 *   u64 n_params, params, u8 has_s1 [+ s1], u8 has_s2 [+ s2]
 *   u64 perm_n + u32 perm, u64 state_n + h + c
 *   u64 FNV-1a hash of every byte before it */
#include "train_internal.h"
#include "memload.h"
#include "atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define CK_MAGIC "FLCKPT01"
#define CK_VERSION 2u /* the highest version read */

typedef struct ckio {
    FILE *f;
    uint64_t hash;
    bool err;
} ckio;

static void hash_bytes(uint64_t *h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) *h = (*h ^ b[i]) * 0x100000001b3ULL;
}

static void put(ckio *c, const void *p, size_t n) {
    if (c->err || n == 0) return;
    if (fwrite(p, 1, n, c->f) != n) c->err = true;
    hash_bytes(&c->hash, p, n);
}

static bool get(ckio *c, void *p, size_t n) {
    if (c->err) return false;
    if (n && fread(p, 1, n, c->f) != n) {
        c->err = true;
        return false;
    }
    hash_bytes(&c->hash, p, n);
    return true;
}

#define PUT(c, v) put((c), &(v), sizeof(v))
#define GET(c, v) get((c), &(v), sizeof(v))

typedef struct ck_opts {
    int32_t optim, batch, bptt, patience, freeze_dense, shuffle;
    float lr, momentum, beta1, beta2, eps, weight_decay, clip, dropout, lr_decay;
    uint64_t seed;
} ck_opts;

static void put_opts(ckio *c, const fl_train_opts *o) {
    int32_t i[6] = {(int32_t)o->optim, o->batch, o->bptt, o->patience, o->freeze_dense, o->shuffle};
    float f[9] = {o->lr, o->momentum, o->beta1, o->beta2, o->eps, o->weight_decay, o->clip, o->dropout, o->lr_decay};
    put(c, i, sizeof i);
    put(c, f, sizeof f);
    PUT(c, o->seed);
}

static bool get_opts(ckio *c, fl_train_opts *o) {
    int32_t i[6];
    float f[9];
    if (!get(c, i, sizeof i) || !get(c, f, sizeof f) || !GET(c, o->seed)) return false;
    o->optim = (fl_optim)i[0];
    o->batch = i[1];
    o->bptt = i[2];
    o->patience = i[3];
    o->freeze_dense = i[4];
    o->shuffle = i[5];
    o->lr = f[0];
    o->momentum = f[1];
    o->beta1 = f[2];
    o->beta2 = f[3];
    o->eps = f[4];
    o->weight_decay = f[5];
    o->clip = f[6];
    o->dropout = f[7];
    o->lr_decay = f[8];
    return true;
}

static void put_floats(ckio *c, const float *p, size_t n) { put(c, p, n * sizeof(float)); }

/* The checkpoint body, written through fl_atomic_write (temp file, fsync, rename, directory fsync). */
static fl_status write_checkpoint(void *ctx, FILE *f, const char *tmp) {
    const fl_trainer *t = ctx;
    const fl_model *m = t->m;
    ckio c = {.f = f, .hash = 0xcbf29ce484222325ULL};
    put(&c, CK_MAGIC, 8);
    const fl_arch *a = &m->arch;
    int32_t ext[4] = {a->bidirectional, a->proj, a->has_padding, a->padding_idx};
    uint32_t version = ext[0] || ext[1] || ext[2] || ext[3] ? 2u : 1u;
    PUT(&c, version);
    int32_t arch[6] = {a->vocab, a->input, a->hidden, a->layers, (int32_t)a->head, a->head_out};
    put(&c, arch, sizeof arch);
    if (version >= 2) put(&c, ext, sizeof ext);
    uint32_t nmat = (uint32_t)fl_model_num_matrices(m);
    PUT(&c, nmat);
    for (uint32_t i = 0; i < nmat; i++) {
        fl_mat_spec s = fl_model_mat_spec(m, i);
        int32_t sp[2] = {(int32_t)s.method, s.rank};
        double rel = fl_model_mat_const(m, i)->rel_error;
        put(&c, sp, sizeof sp);
        PUT(&c, rel);
    }
    put_opts(&c, &t->o);
    int32_t epoch = t->epoch, bad = t->bad;
    int64_t step = t->step, pos = t->pos, ep_n = t->ep_n, adam_t = t->adam_t;
    PUT(&c, epoch);
    PUT(&c, step);
    PUT(&c, pos);
    PUT(&c, t->lr);
    PUT(&c, t->best);
    PUT(&c, bad);
    PUT(&c, t->ep_loss);
    PUT(&c, ep_n);
    put(&c, t->rng.s, sizeof t->rng.s);
    PUT(&c, adam_t);
    uint64_t tl = m->tokenizer ? strlen(m->tokenizer) : 0;
    PUT(&c, tl);
    put(&c, m->tokenizer, tl);
    uint64_t np = m->n_params;
    PUT(&c, np);
    put_floats(&c, m->params, np);
    uint8_t has1 = t->s1 != NULL, has2 = t->s2 != NULL;
    PUT(&c, has1);
    if (has1) put_floats(&c, t->s1, np);
    PUT(&c, has2);
    if (has2) put_floats(&c, t->s2, np);
    uint64_t pn = t->perm_n;
    PUT(&c, pn);
    put(&c, t->perm, pn * sizeof(uint32_t));
    uint64_t sn = t->h ? (uint64_t)a->layers * t->o.batch * a->hidden : 0;
    PUT(&c, sn);
    if (sn) {
        put_floats(&c, t->h, sn);
        put_floats(&c, t->c, sn);
    }
    uint64_t hash = c.hash;
    PUT(&c, hash);
    if (c.err) return fl_fail(FL_ERR_IO, "%s: writing the checkpoint failed: %s", tmp, strerror(errno));
    return FL_OK;
}

fl_status fl_trainer_save(const fl_trainer *t, const char *path) {
    if (!t || !path) return fl_fail(FL_ERR_ARG, "NULL argument to fl_trainer_save");
    return fl_atomic_write(path, write_checkpoint, (void *)t);
}

static fl_status bad(const char *path, const char *what) {
    return fl_fail(FL_ERR_FORMAT, "%s: %s", path, what);
}

/* Re-raise the pending error detail as "<path>: <what><detail>". The detail is copied first:
 * fl_fail formats into the very buffer fl_last_error() returns, and an overlapping vsnprintf is
 * undefined (glibc garbled the message). */
static fl_status rewrap(fl_status st, const char *path, const char *what) {
    char detail[512];
    snprintf(detail, sizeof detail, "%s", fl_last_error());
    return fl_fail(st, "%s: %s%s", path, what, detail);
}

/* Bytes left to read in c->f (the checkpoint is untrusted: every count read from it is compared
 * with this before it sizes an allocation). */
static uint64_t left(const ckio *c, uint64_t fsize) {
    off_t at = ftello(c->f);
    return at < 0 || (uint64_t)at > fsize ? 0 : fsize - (uint64_t)at;
}

/* True when p[0, n) holds each of 0 .. n-1 exactly once (the trainer indexes the data with it). */
static bool is_permutation(const uint32_t *p, uint64_t n) {
    unsigned char *seen = fl_calloc((size_t)(n / 8 + 1), 1);
    bool ok = seen != NULL;
    for (uint64_t i = 0; ok && i < n; i++) {
        uint32_t v = p[i];
        ok = v < n && !(seen[v / 8] & (1u << (v % 8)));
        if (ok) seen[v / 8] |= (unsigned char)(1u << (v % 8));
    }
    fl_free(seen);
    return ok;
}

/* Reads a whole checkpoint from f (positioned at its start); `path` names it in errors. */
static fl_status resume_stream(const char *path, FILE *f, fl_model **model, fl_trainer **out) {
    ckio c = {.f = f, .hash = 0xcbf29ce484222325ULL};
    fl_model *m = NULL;
    fl_trainer *t = NULL;
    fl_mat_spec *specs = NULL;
    double *rel = NULL;
    char *tok = NULL;
    fl_status st = FL_OK;
    char magic[8];
    uint32_t version, nmat;
    int32_t arch[6], ext[4] = {0, 0, 0, 0};
    off_t fsz = -1;
    if (fseeko(f, 0, SEEK_END) != 0 || (fsz = ftello(f)) < 0 || fseeko(f, 0, SEEK_SET) != 0) {
        st = fl_fail(FL_ERR_IO, "%s: cannot determine the file size", path);
        goto done;
    }
    const uint64_t fsize = (uint64_t)fsz;
    if (!get(&c, magic, 8) || memcmp(magic, CK_MAGIC, 8)) {
        st = bad(path, "not a fastlstm checkpoint (bad magic)");
        goto done;
    }
    if (!GET(&c, version) || version < 1 || version > CK_VERSION) {
        st = c.err ? bad(path, "truncated header")
                   : fl_fail(FL_ERR_VERSION, "%s: checkpoint version %u, this build reads %u", path, version, CK_VERSION);
        goto done;
    }
    if (!get(&c, arch, sizeof arch) || (version >= 2 && !get(&c, ext, sizeof ext)) || !GET(&c, nmat)) {
        st = bad(path, "truncated or invalid architecture");
        goto done;
    }
    /* Each field below 2^30 before fl_arch_check, which multiplies sizes in int64 (4 * hidden * input
     * overflows for sizes near 2^31) and rejects any size from 2^30 on anyway. */
    static const char *const field[6] = {"vocab", "input", "hidden", "layers", "head", "head_out"};
    for (int k = 0; k < 6; k++)
        if (arch[k] < 0 || arch[k] >= (1 << 30)) {
            st = fl_fail(FL_ERR_FORMAT, "%s: invalid architecture: %s = %" PRId32 " is outside [0, 2^30)", path,
                         field[k], arch[k]);
            goto done;
        }
    fl_arch a = {.vocab = arch[0], .input = arch[1], .hidden = arch[2], .layers = arch[3],
                 .head = (fl_head_kind)arch[4], .head_out = arch[5], .bidirectional = ext[0], .proj = ext[1],
                 .has_padding = ext[2], .padding_idx = ext[3]};
    if (fl_arch_check(&a)) {
        st = rewrap(FL_ERR_FORMAT, path, "invalid architecture: ");
        goto done;
    }
    /* fl_model_create reads one spec per matrix of the architecture: nmat must be that count. */
    const uint32_t want_nmat = (uint32_t)fl_arch_num_matrices(&a);
    if (nmat != want_nmat) {
        st = bad(path, "matrix count does not match the architecture");
        goto done;
    }
    specs = fl_calloc(nmat, sizeof *specs);
    rel = fl_calloc(nmat, sizeof *rel);
    if (!specs || !rel) {
        st = fl_fail(FL_ERR_NOMEM, "out of memory reading %s", path);
        goto done;
    }
    for (uint32_t i = 0; i < nmat; i++) {
        int32_t sp[2];
        if (!get(&c, sp, sizeof sp) || !GET(&c, rel[i])) {
            st = bad(path, "truncated matrix specs");
            goto done;
        }
        if (!isfinite(rel[i])) {
            st = bad(path, "non-finite relative error in the matrix specs");
            goto done;
        }
        specs[i] = (fl_mat_spec){(fl_method)sp[0], sp[1]};
    }
    /* The parameters follow in the file: do not allocate a model the file cannot hold. */
    if (fl_model_data_bytes(&a, specs, nmat) > (double)left(&c, fsize)) {
        st = fl_fail(FL_ERR_FORMAT, "%s: the architecture needs %.0f bytes of parameters, the rest of the file is %" PRIu64,
                     path, fl_model_data_bytes(&a, specs, nmat), left(&c, fsize));
        goto done;
    }
    if ((st = fl_model_create(&a, specs, &m))) {
        st = rewrap(FL_ERR_FORMAT, path, "");
        goto done;
    }
    for (uint32_t i = 0; i < nmat; i++) fl_model_mat(m, i)->rel_error = rel[i];
    fl_train_opts o;
    int32_t epoch, bad_epochs;
    int64_t step, pos, ep_n, adam_t;
    double lr, best, ep_loss;
    uint64_t rs[4], tl, np;
    if (!get_opts(&c, &o) || !GET(&c, epoch) || !GET(&c, step) || !GET(&c, pos) || !GET(&c, lr) ||
        !GET(&c, best) || !GET(&c, bad_epochs) || !GET(&c, ep_loss) || !GET(&c, ep_n) ||
        !get(&c, rs, sizeof rs) || !GET(&c, adam_t) || !GET(&c, tl)) {
        st = bad(path, "truncated or invalid training state");
        goto done;
    }
    if (tl > left(&c, fsize)) {
        st = fl_fail(FL_ERR_FORMAT, "%s: tokenizer of %" PRIu64 " bytes is longer than the rest of the file", path, tl);
        goto done;
    }
    if (tl) {
        tok = fl_malloc(tl + 1);
        if (!tok) {
            st = fl_fail(FL_ERR_NOMEM, "out of memory reading %s", path);
            goto done;
        }
        if (!get(&c, tok, tl)) {
            st = bad(path, "truncated tokenizer");
            goto done;
        }
        tok[tl] = '\0';
        m->tokenizer = tok;
        tok = NULL;
    }
    if (!GET(&c, np) || np != m->n_params || !get(&c, m->params, np * sizeof(float))) {
        st = bad(path, "parameter block missing, truncated or of the wrong size");
        goto done;
    }
    for (size_t i = 0; i < np; i++)
        if (!isfinite(m->params[i])) {
            st = fl_fail(FL_ERR_NONFINITE, "%s: non-finite parameter at index %zu", path, i);
            goto done;
        }
    /* What fl_trainer_create allocates and the rest of the file must hold: optimiser state (s1, and
     * s2 for Adam) and, for a language model, the carried state h and c of (layers, batch, hidden). */
    double need = 4.0 * (double)np * (o.optim == FL_OPTIM_ADAM ? 2 : 1) + 1 + 1 + 8 + 8 + 8;
    if (a.head == FL_HEAD_PER_STEP && o.batch > 0) need += 8.0 * a.layers * o.batch * a.hidden;
    if (need > (double)left(&c, fsize)) {
        st = fl_fail(FL_ERR_FORMAT, "%s: optimiser and language-model state need %.0f bytes, the rest of the file is %" PRIu64,
                     path, need, left(&c, fsize));
        goto done;
    }
    if ((st = fl_trainer_create(m, &o, &t))) {
        st = rewrap(st, path, "");
        goto done;
    }
    uint8_t has1, has2;
    if (!GET(&c, has1) || has1 != (t->s1 != NULL) || (has1 && !get(&c, t->s1, np * sizeof(float))) ||
        !GET(&c, has2) || has2 != (t->s2 != NULL) || (has2 && !get(&c, t->s2, np * sizeof(float)))) {
        st = bad(path, "optimiser state missing or truncated");
        goto done;
    }
    uint64_t pn, sn;
    if (!GET(&c, pn) || pn > UINT32_MAX) {
        st = bad(path, "truncated shuffle state");
        goto done;
    }
    if (pn * sizeof(uint32_t) > left(&c, fsize)) {
        st = fl_fail(FL_ERR_FORMAT, "%s: shuffle state of %" PRIu64 " entries is longer than the rest of the file", path, pn);
        goto done;
    }
    if (pn) {
        t->perm = fl_malloc(pn * sizeof(uint32_t));
        if (!t->perm) {
            st = fl_fail(FL_ERR_NOMEM, "out of memory reading %s", path);
            goto done;
        }
        t->perm_n = pn;
        if (!get(&c, t->perm, pn * sizeof(uint32_t))) {
            st = bad(path, "truncated shuffle state");
            goto done;
        }
        if (!is_permutation(t->perm, pn)) {
            st = bad(path, "shuffle state is not a permutation");
            goto done;
        }
    }
    uint64_t want = t->h ? (uint64_t)a.layers * o.batch * a.hidden : 0;
    if (!GET(&c, sn) || sn != want || (sn && (!get(&c, t->h, sn * sizeof(float)) || !get(&c, t->c, sn * sizeof(float))))) {
        st = bad(path, "language-model state missing or truncated");
        goto done;
    }
    uint64_t expect = c.hash, hash;
    if (!GET(&c, hash) || hash != expect) {
        st = bad(path, "checksum mismatch (corrupt or truncated file)");
        goto done;
    }
    if (fgetc(c.f) != EOF) {
        st = bad(path, "trailing bytes after the checksum");
        goto done;
    }
    t->epoch = epoch;
    t->step = step;
    t->pos = pos;
    t->lr = lr;
    t->best = best;
    t->bad = bad_epochs;
    t->ep_loss = ep_loss;
    t->ep_n = ep_n;
    memcpy(t->rng.s, rs, sizeof rs);
    t->adam_t = adam_t;
    if (epoch < 0 || step < 0 || pos < 0 || ep_n < 0 || adam_t < 0 || bad_epochs < 0) st = bad(path, "negative counters");
    else if (!(lr > 0) || !isfinite(lr) || isnan(best) || !isfinite(ep_loss))
        st = bad(path, "learning rate, best loss or epoch loss is not a valid number");
done:
    fl_free(specs);
    fl_free(rel);
    fl_free(tok);
    if (st) {
        fl_trainer_free(t);
        fl_model_free(m);
        return st;
    }
    *model = m;
    *out = t;
    return FL_OK;
}

fl_status fl_trainer_resume(const char *path, fl_model **model, fl_trainer **out) {
    if (!path || !model || !out) return fl_fail(FL_ERR_ARG, "NULL argument to fl_trainer_resume");
    *model = NULL;
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return fl_fail(FL_ERR_IO, "%s: cannot open checkpoint", path);
    fl_status st = resume_stream(path, f, model, out);
    fclose(f);
    return st;
}

fl_status fl_trainer_resume_memory(const void *buf, size_t n, const char *name, fl_model **model,
                                   fl_trainer **out) {
    if (!model || !out || (!buf && n)) return fl_fail(FL_ERR_ARG, "NULL argument to fl_trainer_resume_memory");
    *model = NULL;
    *out = NULL;
    if (!name) name = "<memory>";
    if (n == 0) return bad(name, "not a fastlstm checkpoint (bad magic)"); /* fmemopen rejects size 0 */
    FILE *f = fmemopen((void *)buf, n, "rb"); /* read-only: the buffer is never written */
    if (!f) return fl_fail(FL_ERR_NOMEM, "%s: cannot open the buffer", name);
    fl_status st = resume_stream(name, f, model, out);
    fclose(f);
    return st;
}
