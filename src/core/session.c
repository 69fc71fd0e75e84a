/* Inference session: whole-sequence runs (fl_session_run) and streaming steps (fl_session_step).
 *
 * Layer by layer, direction by direction. Sequences are laid out "packed", as PyTorch's
 * PackedSequence: sorted by length (longest first, a permutation of the batch), time-major, and at
 * step t only the bt[t] sequences still active are stored (rows off[t] .. off[t] + bt[t]). Without
 * lengths the permutation is the identity and the packed layout is plain time-major (T, B, *).
 * For each direction of a layer the input projection of every valid step is one fl_mat_apply over
 * the packed rows (gx = x W_ih^T + b_ih + b_hh), then T recurrent steps through fl_rec_step on the
 * active prefix of the batch (gates = gx_t + W_hh h_{t-1}, cell update; an LSTMP layer then applies
 * W_hr). The forward direction walks t up, the reverse direction t down, so each sequence's reverse
 * pass starts at its own last step. A bidirectional layer writes [fwd, rev] into each output row and
 * on a layer of 2 or more threads its directions run on one of two schedules (fl_bidir_sched):
 *   parallel  both directions at once, each on half of the threads (the session's pool, one job per
 *             layer): no sync inside a layer, but both W_hh (6.76 MB each at H 650) stream every step;
 *   serial    the directions in turn, each projection and step split over all the threads (each
 *             direction's fl_rec on the layer's whole count, as a unidirectional layer runs): a pool sync per step, one W_hh hot at a time.
 * Both compute every output element with the same kernel on the same operands, so the results are
 * bit-identical (tests/test_bidir_sched.c). Which is faster depends on the machine's caches and the
 * model, so it is planned and measured (plan_threads.c times both on the chosen candidate and records
 * the faster in the model, fl_model_planned_bidir_sched); a session runs the model's recorded schedule
 * (fl_session_opts.bidir_sched FL_BIDIR_AUTO), parallel when none. bench_bidir --only sched (one
 * process alternating both, median of per-round ratios serial / parallel over 15-21 rounds), 2 x H,
 * T 35, 2 threads of the 2-vCPU Zen 3 VM, 2026-11-30 20:40 and 21:14 UTC, otherwise idle:
 *   H  650, B 1 / 4 / 20:   1.07 / 0.97 / 1.01
 *   H 1024, B 1 / 4 / 20:   0.67 / 0.78-0.82 / 0.93
 * At H 1024 the two W_hh (16.8 MB each) stream from DRAM in parallel, while the serial schedule's
 * halves (8.4 MB per core) nearly fit the last level's share (8-14 MB here); at H 650 (6.76 MB each)
 * what serial saves in traffic its per-step sync and hand-over between directions cost again.
 * (Under load 2.4-5.5 the same harness read H 256 1.04-1.26 at every batch.) `fastlstm plan` of a
 * bidirectional 2 x 1024 model at batch 4 kept serial: 4.83 against 6.39 ms per step.
 * At batch 1 (2 x 650, T 35; bench_bidir pieces, us per step, 1 thread: projection K = H 65, K = 2H
 * 130, steps of one direction 143; uni t1 438, all at load ~3) each thread of the parallel schedule
 * does one direction of a unidirectional model's work plus layer 1's wider projection (its input is
 * [fwd, rev], 2H wide): a floor of ~1.10 x uni t1 before any contention. The rest is memory: per run
 * the bidirectional model streams 40.5 MB of W_ih (the unidirectional 13.5) from DRAM, and both
 * threads stream their W_hh at once. perf (cpu-clock) of bi t2 batch 1: gate_cell 52%, gemm_pk 24%,
 * the pool's waits (worker_main) 3.8%.
 * A layer direction on N >= 2 threads runs its steps by blocks (each step's hidden blocks split over
 * the threads, fl_rec_step) or by rows (each thread all T steps of its own sorted rows with the whole
 * W_hh, fl_rec_run_rows: no sync per step; fl_step_sched), bit-identical (tests/test_rows_sched.c). AUTO:
 * the model's recorded schedule (plan_threads.c times both, fl_model_planned_step_sched), rows only where
 * B >= 2 N; none recorded, the fixed rule set from the figures below (fl_step_rows_chunks, session_sched.c):
 * rows where B >= 2 N, SVD / CP W_hh <= 8 MiB (dense: B >= 32 N and W_hh <= 1 MiB), W_hh x B >=
 * FL_MIN_PARALLEL_BYTES; bench_rows (one
 * process alternating both, median per-round ratio rows / blocks, T 35, 2 threads, load 1-5), 1 layer: dense H 256 / 650 (1 / 6.8 MB) 0.83-1.14, median ~0.92, H 1024 / 1500
 * (17 / 36 MB) 1.00-1.27 / 1.06-1.90; SVD rank H/8, H 650-1500 (1.1-5.6 MB) 0.84-1.18, mostly 0.84-0.90;
 * CP rank H/16 0.71-0.98 from H 650, at H 256 1.3-1.8 for B 4-8 (tiny steps the blocks run on one thread).
 * 2 x 650, B 4 / 20: dense 1.05 / 0.89, bidirectional serial 0.90 / 1.01, SVD 0.81-0.89, CP 0.61-0.81;
 * `fastlstm bench` B 20 t2, ABBA 6 pairs, load ~1 / ~3: uni 0.99 / 0.86, bidirectional serial 1.04 / 0.86.
 * Quiet (23:28 UTC) 2 x 650 B 20: dense 1.08, SVD 0.96, CP 0.98, bi 1.04; 2 x 1500 SVD 0.91; 2 x 256 1.13.
 * Xeon model 207 (2 MiB L2 a core: a 1 MiB W_hh stays in each), bench_rows --L 1, 31 rounds, load ~1,
 * 2026-12-01 05:17 UTC: dense H 256 B 64 0.94, H 128 B 256 0.93, H 128 B 64 0.89, H 256 B 128 1.01,
 * H 200 B 100 0.98; at 10 rows a thread (Zen 3's 2 x 256 B 20 above) dense stays on blocks.
 * The head (per step or on each sequence's last step) runs through the model's packed copy of it
 * where there is one (head.c), on the top layer's threads, biases fused; else through
 * fl_mat_apply. All scratch is one block allocated at create for max_batch x max_seq; a run never
 * allocates. */
#include "internal.h"
#include "lstm_ext.h"
#include "blas_threads.h"
#include "head.h"
#include "pool.h"
#include "recurrent.h"
#include "session_sched.h"

#include <limits.h>
#include <math.h>
#include <string.h>

#define MAX_THREADS 1024

/* Scratch of one direction of a layer. */
typedef struct dir_scratch {
    float *gx;  /* (max_seq * max_batch, 4H) input projections with biases */
    float *c;   /* (max_batch, H) cell state, sorted rows */
    float *h;   /* (max_batch, out) h_{t-1}, sorted rows; after the layer: each sequence's h_n */
    float *m;   /* (max_batch, H) o * tanh(c) before the projection (LSTMP) */
    float *ws;  /* fl_mat_apply workspace for up to max_seq * max_batch rows */
} dir_scratch;

struct fl_session {
    const fl_model *m;
    int max_batch, max_seq, threads; /* threads: the most any layer runs on */
    int *lthreads;    /* [L] threads of each layer's steps (fl_session_threads) */
    int L, D, H, P, dirs, W, out; /* layers, input, hidden, h size (out), directions, dirs*P, head outputs */
    fl_rec **rec;     /* [L * dirs] recurrent step of each layer direction, on dir_threads threads */
    bool serial;      /* FL_BIDIR_SERIAL: a bidirectional layer's directions in turn, each on all its threads */
    fl_step_sched step_sched, step_rec; /* asked split of a layer direction's steps over its threads; the
                                           model's recorded one then (fl_step_rows_chunks) */
    const fl_rec_pack *packs; /* [L * dirs] the model's packed weights (packed.c), held while the session lives */
    const fl_head_pack *hpack; /* the model's packed head (head.c; all NULL: fl_mat_apply), held likewise */
    fl_pool *pool;    /* 2 threads: the two directions of a bidirectional layer in parallel; NULL otherwise */
    float *bias;      /* (L * dirs, 4H): b_ih + b_hh, summed once at create */
    float *block;     /* the one scratch allocation; the pointers below point into it */
    float *xin;       /* (max_seq * max_batch, D) packed layer-0 input */
    float *seq[2];    /* (max_seq * max_batch, W) each: packed layer outputs, used in turn */
    dir_scratch ds[2];
    float *hstep;     /* (max_batch, P) new top-of-step h in streaming */
    float *sh, *sc;   /* (L, max_batch, P) and (L, max_batch, H) streaming state of every stream */
    int *ints;        /* the one int allocation: the arrays below */
    int *perm;        /* (max_batch) sorted row i holds sequence perm[i] */
    int *inv;         /* (max_batch) the sorted row of sequence b: perm[inv[b]] == b */
    int *len;         /* (max_batch) length of sorted row i (non-increasing) */
    int *bt;          /* (max_seq) active rows at step t */
    int *off;         /* (max_seq + 1) first packed row of step t */
    /* the layer in flight (read by run_dir, also on the pool's worker) */
    struct {
        const fl_run_io *io;
        int l, T, in_dim;
        const float *in;
        float *out;
    } job;
    bool ext_hold;    /* holds the model's dense weights (LSTM extras: lstm_ext.c) */
};

/* ------------------------------------------------------------ scratch layout */

/* Offsets (in floats) of every scratch buffer inside the block, and its total size. */
typedef struct scratch {
    size_t xin, seq0, seq1, gx[2], c[2], h[2], mm[2], ws[2], hstep, sh, sc, total;
} scratch;

/* Reserve a*b floats at the end of the block, 64-byte aligned; false on overflow. */
static bool reserve(size_t *total, size_t a, size_t b, size_t *off) {
    size_t n;
    if (!fl_mul_ok(a, b, &n) || n > SIZE_MAX / 8 - *total) return false;
    *off = *total;
    *total += (n + 15) & ~(size_t)15;
    return true;
}

static void max_ws(size_t *wsn, const fl_mat *w, int n) {
    size_t x = fl_mat_apply_workspace(w, n);
    if (x > *wsn) *wsn = x;
}

/* The scratch a session for m with max_batch x max_seq needs. false if it cannot be addressed. */
static bool scratch_query(const fl_model *m, int max_batch, int max_seq, scratch *s) {
    const fl_arch *a = &m->arch;
    const int dirs = fl_arch_dirs(a);
    size_t N = (size_t)max_batch * (size_t)max_seq, MB = (size_t)max_batch, H = (size_t)a->hidden;
    size_t P = (size_t)fl_arch_out(a), W = (size_t)dirs * P, L = (size_t)a->layers, wsn = 0;
    for (int l = 0; l < a->layers * dirs; l++) {
        max_ws(&wsn, &m->layer[l].wih, (int)N);
        if (a->proj > 0) max_ws(&wsn, &m->layer[l].whr, (int)MB);
    }
    if (a->head != FL_HEAD_NONE) max_ws(&wsn, &m->head, (int)N);
    memset(s, 0, sizeof *s);
    size_t *t = &s->total;
    bool ok = reserve(t, N, (size_t)a->input, &s->xin) && reserve(t, N, W, &s->seq0) && reserve(t, N, W, &s->seq1) &&
              reserve(t, MB, P, &s->hstep) && reserve(t, L * MB, P, &s->sh) && reserve(t, L * MB, H, &s->sc);
    for (int d = 0; ok && d < dirs; d++)
        ok = reserve(t, N, 4 * H, &s->gx[d]) && reserve(t, MB, H, &s->c[d]) && reserve(t, MB, P, &s->h[d]) &&
             reserve(t, MB, H, &s->mm[d]) && reserve(t, wsn, 1, &s->ws[d]);
    return ok;
}

/* ------------------------------------------------------------ create / free */

fl_session_opts fl_session_opts_default(void) {
    return (fl_session_opts){.max_batch = 1, .max_seq = 256, .threads = 1};
}

static void run_dir_chunk(void *ctx, int thread, unsigned idx, unsigned n, unsigned gen, unsigned *t_gen);

/* OpenBLAS runs on one thread for sessions (the rule and its reason: blas_threads.h). */
/* Threads of layer direction ld's steps: its layer's count, halved (at least one) for a bidirectional
 * layer whose directions run in parallel, each on one thread of the session's pool. */
static int dir_threads(const fl_session *s, int ld) {
    const int lt = s->lthreads[ld / s->dirs];
    return s->dirs == 2 && !s->serial && lt >= 2 ? lt / 2 : lt;
}

static fl_status set_threads(fl_session *s, int threads) {
    const bool split = s->dirs == 2 && threads >= 2;
    for (int l = 0; l < s->L; l++) s->lthreads[l] = threads;
    for (int l = 0; l < s->L * s->dirs; l++) {
        fl_status st = fl_rec_set_threads(s->rec[l], dir_threads(s, l));
        if (st) return st;
    }
    if (s->pool) {
        fl_status st = fl_pool_set_threads(s->pool, split ? 2 : 1);
        if (st) return st;
    }
    fl_blas_for_sessions();
    s->threads = threads;
    return FL_OK;
}

/* Threads of layer l in a session asked for `threads` (0: the model's planned count of the layer). */
static int layer_threads(const fl_model *m, int threads, int l) {
    if (threads > 0) return threads;
    const int t = fl_model_planned_threads(m, l);
    return t > 0 ? t : 1;
}

fl_status fl_session_create(const fl_model *m, const fl_session_opts *opts, fl_session **out) {
    if (!out) return fl_fail(FL_ERR_ARG, "fl_session_create: out is NULL");
    *out = NULL;
    if (!m) return fl_fail(FL_ERR_ARG, "fl_session_create: model is NULL");
    fl_session_opts o = opts ? *opts : fl_session_opts_default();
    if (o.max_batch < 1) return fl_fail(FL_ERR_ARG, "fl_session_create: max_batch must be >= 1, got %d", o.max_batch);
    if (o.max_seq < 1) return fl_fail(FL_ERR_ARG, "fl_session_create: max_seq must be >= 1, got %d", o.max_seq);
    if (!fl_bidir_sched_valid(o.bidir_sched))
        return fl_fail(FL_ERR_ARG, "fl_session_create: unknown bidir_sched %d", (int)o.bidir_sched);
    if (!fl_step_sched_valid(o.step_sched))
        return fl_fail(FL_ERR_ARG, "fl_session_create: unknown step_sched %d", (int)o.step_sched);
    const int asked = o.threads; /* 0: each layer on its planned count */
    if (o.threads == 0) o.threads = layer_threads(m, 0, -1);
    if (o.threads < 1 || o.threads > MAX_THREADS)
        return fl_fail(FL_ERR_ARG, "fl_session_create: threads must be in [1, %d], got %d", MAX_THREADS, o.threads);
    /* Row counts go to fl_mat_apply / BLAS as int. */
    if ((int64_t)o.max_batch * o.max_seq > INT_MAX / 4)
        return fl_fail(FL_ERR_ARG, "fl_session_create: max_batch %d x max_seq %d is too large", o.max_batch, o.max_seq);
    scratch sc;
    if (!scratch_query(m, o.max_batch, o.max_seq, &sc))
        return fl_fail(FL_ERR_ARG, "fl_session_create: scratch for max_batch %d x max_seq %d overflows",
                       o.max_batch, o.max_seq);

    const fl_arch *a = &m->arch;
    const int L = a->layers, H = a->hidden, G = 4 * H, dirs = fl_arch_dirs(a), LD = L * dirs;
    fl_session *s = fl_calloc(1, sizeof *s);
    if (!s) return fl_fail(FL_ERR_NOMEM, "fl_session_create: out of memory");
    s->m = m;
    s->max_batch = o.max_batch;
    s->max_seq = o.max_seq;
    s->L = L;
    s->D = a->input;
    s->H = H;
    s->P = fl_arch_out(a);
    s->dirs = dirs;
    s->W = dirs * s->P;
    s->out = a->head == FL_HEAD_NONE ? 0 : a->head_out;
    s->rec = fl_calloc((size_t)LD, sizeof *s->rec);
    s->bias = fl_calloc((size_t)LD * G, sizeof(float));
    s->block = fl_calloc(sc.total, sizeof(float));
    s->ints = fl_calloc(3 * (size_t)o.max_batch + 2 * (size_t)o.max_seq + 1, sizeof(int));
    s->lthreads = fl_calloc((size_t)L, sizeof(int));
    if (!s->rec || !s->bias || !s->block || !s->ints || !s->lthreads) {
        fl_session_free(s);
        return fl_fail(FL_ERR_NOMEM, "fl_session_create: out of memory allocating %zu floats of scratch",
                       sc.total);
    }
    // LSTM extras run on the dense W_hh (lstm_ext.c): keep the originals in place for this session
    if (m->ext) fl_model_weights_hold(m);
    s->ext_hold = m->ext != NULL;
    fl_status pst = fl_model_packs_acquire(m, &s->packs, &s->hpack);
    if (pst) {
        fl_session_free(s);
        return pst;
    }
    const bool split = dirs == 2 && o.threads >= 2;
    for (int l = 0; l < L; l++) s->lthreads[l] = layer_threads(m, asked, l);
    // AUTO: the model's recorded schedule (parallel when none)
    const fl_bidir_sched sched = o.bidir_sched == FL_BIDIR_AUTO ? fl_model_planned_bidir_sched(m) : o.bidir_sched;
    s->serial = dirs == 2 && sched == FL_BIDIR_SERIAL;
    s->step_sched = o.step_sched;
    s->step_rec = fl_model_planned_step_sched(m);
    for (int l = 0; l < LD; l++) {
        fl_status st = fl_rec_create_packed(&m->layer[l], &s->packs[l], o.max_batch, dir_threads(s, l), &s->rec[l]);
        if (st) {
            fl_session_free(s);
            return st;
        }
        // bias (4H) = b_ih + b_hh
        for (int j = 0; j < G; j++) s->bias[(size_t)l * G + j] = m->layer[l].b_ih[j] + m->layer[l].b_hh[j];
    }
    if (dirs == 2) {
        fl_status st = fl_pool_create(run_dir_chunk, s, &s->pool);
        if (!st && split) st = fl_pool_set_threads(s->pool, 2);
        if (st) {
            fl_session_free(s);
            return st;
        }
    }
    float *b = s->block;
    s->xin = b + sc.xin;
    s->seq[0] = b + sc.seq0;
    s->seq[1] = b + sc.seq1;
    for (int d = 0; d < dirs; d++)
        s->ds[d] = (dir_scratch){.gx = b + sc.gx[d], .c = b + sc.c[d], .h = b + sc.h[d], .m = b + sc.mm[d],
                                 .ws = b + sc.ws[d]};
    s->hstep = b + sc.hstep;
    s->sh = b + sc.sh;
    s->sc = b + sc.sc;
    s->perm = s->ints;
    s->len = s->perm + o.max_batch;
    s->bt = s->len + o.max_batch;
    s->off = s->bt + o.max_seq;
    s->inv = s->off + o.max_seq + 1;
    fl_blas_for_sessions();  // see set_threads; the fl_recs got their threads at create
    s->threads = o.threads;
    *out = s;
    return FL_OK;
}

void fl_session_free(fl_session *s) {
    if (!s) return;
    fl_pool_free(s->pool);
    if (s->rec)
        for (int l = 0; l < s->L * s->dirs; l++) fl_rec_free(s->rec[l]);
    if (s->packs) fl_model_packs_release(s->m);
    if (s->ext_hold) fl_model_weights_unhold(s->m);
    fl_free(s->rec);
    fl_free(s->bias);
    fl_free(s->block);
    fl_free(s->ints);
    fl_free(s->lthreads);
    fl_free(s);
}

fl_bidir_sched fl_session_bidir_sched(const fl_session *s) {
    return s && s->serial ? FL_BIDIR_SERIAL : FL_BIDIR_PARALLEL;
}

fl_status fl_session_set_bidir_sched(fl_session *s, fl_bidir_sched sched) {
    if (!s) return fl_fail(FL_ERR_ARG, "fl_session_set_bidir_sched: session is NULL");
    if (!fl_bidir_sched_valid(sched))
        return fl_fail(FL_ERR_ARG, "fl_session_set_bidir_sched: unknown schedule %d", (int)sched);
    if (sched == FL_BIDIR_AUTO) sched = fl_model_planned_bidir_sched(s->m);
    const bool serial = s->dirs == 2 && sched == FL_BIDIR_SERIAL;  // a unidirectional model has one
    if (serial == s->serial) return FL_OK;
    // re-thread every direction's steps; on failure (fl_rec_set_threads leaves that one as it was)
    // the ones done go back, so the session runs as before
    s->serial = serial;
    for (int l = 0; l < s->L * s->dirs; l++) {
        fl_status st = fl_rec_set_threads(s->rec[l], dir_threads(s, l));
        if (st) {
            s->serial = !serial;
            for (int k = 0; k < l; k++) fl_rec_set_threads(s->rec[k], dir_threads(s, k));
            return st;
        }
    }
    return FL_OK;
}

fl_status fl_session_set_step_sched(fl_session *s, fl_step_sched sched) {
    if (!s) return fl_fail(FL_ERR_ARG, "fl_session_set_step_sched: session is NULL");
    if (!fl_step_sched_valid(sched)) return fl_fail(FL_ERR_ARG, "fl_session_set_step_sched: unknown schedule %d", (int)sched);
    s->step_sched = sched;
    s->step_rec = fl_model_planned_step_sched(s->m);
    return FL_OK;
}

int fl_session_threads(const fl_session *s, int layer) {
    if (!s || layer < -1 || layer >= s->L) return 0;
    return layer < 0 ? s->threads : s->lthreads[layer];
}

fl_status fl_session_set_threads(fl_session *s, int threads) {
    if (!s) return fl_fail(FL_ERR_ARG, "fl_session_set_threads: session is NULL");
    if (threads < 1 || threads > MAX_THREADS)
        return fl_fail(FL_ERR_ARG, "fl_session_set_threads: threads must be in [1, %d], got %d", MAX_THREADS, threads);
    return set_threads(s, threads);
}

size_t fl_run_output_size(const fl_model *m, int batch, int seq) {
    if (!m || batch <= 0 || seq <= 0) return 0;
    const fl_arch *a = &m->arch;
    size_t bt = (size_t)batch * (size_t)seq, n = 0;
    switch (a->head) {
    case FL_HEAD_NONE: return fl_mul_ok(bt, (size_t)fl_arch_dirs(a) * fl_arch_out(a), &n) ? n : 0;
    case FL_HEAD_PER_STEP: return fl_mul_ok(bt, (size_t)a->head_out, &n) ? n : 0;
    case FL_HEAD_LAST_STEP: return (size_t)batch * (size_t)a->head_out;
    }
    return 0;
}

size_t fl_run_state_size(const fl_model *m, int batch, int cell) {
    if (!m || batch <= 0) return 0;
    const fl_arch *a = &m->arch;
    size_t n = 0, rows = (size_t)a->layers * fl_arch_dirs(a);
    return fl_mul_ok(rows * (size_t)(cell ? a->hidden : fl_arch_out(a)), (size_t)batch, &n) ? n : 0;
}

/* ------------------------------------------------------------ helpers */

/* dst (d1, d0, w) = src (d0, d1, w) with the first two axes swapped. */
static void swap_axes(float *dst, const float *src, int d0, int d1, int w) {
    for (int i = 0; i < d0; i++)
        for (int j = 0; j < d1; j++)
            memcpy(dst + ((size_t)j * d0 + i) * w, src + ((size_t)i * d1 + j) * w, (size_t)w * sizeof(float));
}

/* Check h0 or c0 (rows, B, n). */
static fl_status check_state(const char *name, const float *p, int rows, int B, int n) {
    if (!p) return FL_OK;
    long i = fl_find_nonfinite(p, (size_t)rows * B * n);
    if (i < 0) return FL_OK;
    return fl_fail(FL_ERR_NONFINITE, "fl_session_run: %s[layer %ld, batch %ld, unit %ld] is not finite (%g)",
                   name, i / ((long)B * n), i / n % B, i % n, (double)p[i]);
}

/* ------------------------------------------------------------ run */

static fl_status check_run(const fl_session *s, const fl_run_io *io) {
    const fl_arch *a = &s->m->arch;
    if (io->layout != FL_BATCH_MAJOR && io->layout != FL_TIME_MAJOR)
        return fl_fail(FL_ERR_ARG, "fl_session_run: unknown layout %d", (int)io->layout);
    if (io->batch < 1 || io->batch > s->max_batch)
        return fl_fail(FL_ERR_ARG, "fl_session_run: batch %d outside [1, %d] (the session's max_batch)",
                       io->batch, s->max_batch);
    if (io->seq < 1 || io->seq > s->max_seq)
        return fl_fail(FL_ERR_ARG, "fl_session_run: seq %d outside [1, %d] (the session's max_seq)", io->seq,
                       s->max_seq);
    if (!io->y) return fl_fail(FL_ERR_ARG, "fl_session_run: y is NULL");
    const int B = io->batch, T = io->seq;
    const bool tm = io->layout == FL_TIME_MAJOR;
    if (io->lengths)
        for (int b = 0; b < B; b++)
            if (io->lengths[b] < 1 || io->lengths[b] > T)
                return fl_fail(FL_ERR_ARG, "fl_session_run: lengths[%d] = %d outside [1, %d] (the sequence length)", b,
                               (int)io->lengths[b], T);
    if (a->vocab > 0) {
        if (!io->tokens || io->x)
            return fl_fail(FL_ERR_ARG, "fl_session_run: the model has an embedding: set tokens, not x");
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                int32_t id = io->tokens[tm ? (size_t)t * B + b : (size_t)b * T + t];
                if (id < 0 || id >= a->vocab)
                    return fl_fail(FL_ERR_ARG, "fl_session_run: token id %d at [batch %d, step %d] outside [0, %d)",
                                   (int)id, b, t, a->vocab);
            }
    } else {
        if (!io->x || io->tokens)
            return fl_fail(FL_ERR_ARG, "fl_session_run: the model takes features: set x, not tokens");
        const size_t D = (size_t)a->input;
        long i = fl_find_nonfinite(io->x, (size_t)B * T * D);
        if (i >= 0) {
            long row = i / (long)D, b = tm ? row % B : row / T, t = tm ? row / B : row % T;
            return fl_fail(FL_ERR_NONFINITE, "fl_session_run: x[batch %ld, step %ld, feature %ld] is not finite (%g)",
                           b, t, i % (long)D, (double)io->x[i]);
        }
    }
    fl_status st = check_state("h0", io->h0, s->L * s->dirs, B, s->P);
    if (!st) st = check_state("c0", io->c0, s->L * s->dirs, B, s->H);
    return st;
}

/* The packed layout of io: perm, len, bt, off (see the file comment). Sequences sorted by length,
 * longest first, stable (a counting sort: lengths are in [1, T]). */
static void pack_layout(fl_session *s, const fl_run_io *io) {
    const int B = io->batch, T = io->seq;
    int *bt = s->bt, *off = s->off;
    if (!io->lengths) {
        for (int b = 0; b < B; b++) s->perm[b] = b, s->len[b] = T;
        for (int t = 0; t < T; t++) bt[t] = B;
    } else {
        // off[t] = #{b : len_b == t + 1} for now
        memset(off, 0, ((size_t)T + 1) * sizeof(int));
        for (int b = 0; b < B; b++) off[io->lengths[b] - 1]++;
        // bt[t] = first sorted row of the sequences of length t + 1 = #{b : len_b > t + 1}
        bt[T - 1] = 0;
        for (int t = T - 2; t >= 0; t--) bt[t] = bt[t + 1] + off[t + 1];
        for (int b = 0; b < B; b++) {
            const int t = io->lengths[b] - 1, i = bt[t]++;
            s->perm[i] = b;
            s->len[i] = t + 1;
        }
        // now bt[t] = #{len_b > t + 1} + #{len_b == t + 1}: the rows active at step t
    }
    off[0] = 0;
    for (int t = 0; t < T; t++) off[t + 1] = off[t] + bt[t];
    for (int i = 0; i < B; i++) s->inv[s->perm[i]] = i;
}

/* Input row of sequence b at step t: x (B, T, D) or (T, B, D), or the embedding of its token. */
static const float *input_row(const fl_session *s, const fl_run_io *io, int b, int t) {
    const size_t B = (size_t)io->batch, T = (size_t)io->seq, D = (size_t)s->D;
    const size_t r = io->layout == FL_TIME_MAJOR ? (size_t)t * B + (size_t)b : (size_t)b * T + (size_t)t;
    return io->tokens ? s->m->embed + (size_t)io->tokens[r] * D : io->x + r * D;
}

/* Direction d of layer l (s->job): input projection, then the steps over the active rows; h_n, c_n. */
static void run_dir(fl_session *s, int d) {
    const fl_run_io *io = s->job.io;
    const int l = s->job.l, T = s->job.T, B = io->batch, H = s->H, G = 4 * H, P = s->P, W = s->W;
    const int ld = l * s->dirs + d, N = s->off[T];
    const fl_layer *ly = &s->m->layer[ld];
    fl_rec *rec = s->rec[ld];
    const dir_scratch *x = &s->ds[d];
    const float *bias = s->bias + (size_t)ld * G;
    // gx (N, 4H) = in W_ih^T + b_ih + b_hh over the packed rows
    if (!fl_rec_input_ws(rec, N, s->job.in, s->job.in_dim, bias, x->gx, G, x->ws)) {
        fl_mat_apply(&ly->wih, N, s->job.in, s->job.in_dim, 0.0f, x->gx, G, x->ws);
        fl_add_bias_rows(x->gx, (size_t)N, G, (size_t)G, bias);
    }
    // h (B, P), c (B, H), sorted rows = h0, c0 of this layer direction, or zeros
    for (int i = 0; i < B; i++) {
        const size_t b = (size_t)s->perm[i];
        if (io->h0) memcpy(x->h + (size_t)i * P, io->h0 + ((size_t)ld * B + b) * P, (size_t)P * sizeof(float));
        else memset(x->h + (size_t)i * P, 0, (size_t)P * sizeof(float));
        if (io->c0) memcpy(x->c + (size_t)i * H, io->c0 + ((size_t)ld * B + b) * H, (size_t)H * sizeof(float));
        else memset(x->c + (size_t)i * H, 0, (size_t)H * sizeof(float));
    }
    const int nrows = fl_step_rows_chunks(s->m, ld, rec, s->step_sched, s->step_rec, B);
    if (nrows >= 2) {
        const fl_rows_seq q = {.T = T, .B = B, .reverse = d == 1, .bt = s->bt, .off = s->off, .len = s->len,
                               .gx = x->gx, .ldgx = G, .h = x->h, .ldh = P, .c = x->c, .out = s->job.out + (size_t)d * P,
                               .ldout = W};
        fl_rec_run_rows(rec, nrows, &q);
    } else {
        for (int k = 0; k < T; k++) {
            const int t = d == 0 ? k : T - 1 - k, n = s->bt[t];
            if (n == 0) continue;
            // ht: (n, P) rows of this step in the packed output, this direction's columns
            float *ht = s->job.out + (size_t)s->off[t] * W + (size_t)d * P;
            const float *gxt = x->gx + (size_t)s->off[t] * G;
            if (s->m->ext) { /* LSTM extras (lstm_ext.c): unidirectional, no projection, so W == P == H */
                fl_lstm_ext_step(s->m, ld, n, x->gx + (size_t)s->off[t] * G, x->h, x->c, ht);
            } else if (ly->whr.rows > 0) { /* LSTMP: m = o * tanh(c), h = m W_hr^T */
                fl_rec_step(rec, n, gxt, G, x->h, P, x->c, x->m, H);
                fl_mat_apply(&ly->whr, n, x->m, H, 0.0f, ht, W, x->ws);
            } else {
                fl_rec_step(rec, n, gxt, G, x->h, P, x->c, ht, W);
            }
            // h_{t-1} of the next step. Rows past n keep their last valid state: each one's h_n.
            for (int i = 0; i < n; i++)
                memcpy(x->h + (size_t)i * P, ht + (size_t)i * W, (size_t)P * sizeof(float));
        }
    }
    // h_n (L*dirs, B, P), c_n (L*dirs, B, H) in batch order; h0/c0 of (l, d) are no longer read
    for (int i = 0; i < B; i++) {
        const size_t b = (size_t)s->perm[i];
        if (io->hn) memcpy(io->hn + ((size_t)ld * B + b) * P, x->h + (size_t)i * P, (size_t)P * sizeof(float));
        if (io->cn) memcpy(io->cn + ((size_t)ld * B + b) * H, x->c + (size_t)i * H, (size_t)H * sizeof(float));
    }
}

static void run_dir_chunk(void *ctx, int thread, unsigned idx, unsigned n, unsigned gen, unsigned *t_gen) {
    (void)thread, (void)n, (void)gen, (void)t_gen;
    run_dir(ctx, (int)idx);
}

/* Row of sorted sequence i at step t in y (B, T, *) or (T, B, *). */
static size_t yrow(const fl_session *s, const fl_run_io *io, int i, int t) {
    const size_t b = (size_t)s->perm[i];
    return io->layout == FL_TIME_MAJOR ? (size_t)t * io->batch + b : b * io->seq + (size_t)t;
}

/* y (n, V) = x (n, W) W_head^T + b, row strides ldx and ldy: packed (head.c) on the top layer's threads. */
static void head(fl_session *s, int n, const float *x, int ldx, float *y, int ldy) {
    fl_head_apply(s->hpack, &s->m->head, s->rec[(s->L - 1) * s->dirs], n, x, ldx, s->m->head_b, y, ldy, s->ds[0].ws);
}

/* Head and output of the packed top layer outputs top (N, W). */
static void write_output(fl_session *s, const fl_run_io *io, const float *top, float *spare) {
    const fl_model *m = s->m;
    const int B = io->batch, T = io->seq, W = s->W, V = s->out;
    const bool tm = io->layout == FL_TIME_MAJOR;
    const size_t N = (size_t)B * T;
    switch (m->arch.head) {
    case FL_HEAD_NONE:  // y: (T, B, W) or (B, T, W), zero past each length
        if (!io->lengths) {
            if (tm) memcpy(io->y, top, N * W * sizeof(float));
            else swap_axes(io->y, top, T, B, W);
            break;
        }
        memset(io->y, 0, N * W * sizeof(float));
        for (int t = 0; t < T; t++)
            for (int i = 0; i < s->bt[t]; i++)
                memcpy(io->y + yrow(s, io, i, t) * W, top + ((size_t)s->off[t] + i) * W, (size_t)W * sizeof(float));
        break;
    case FL_HEAD_PER_STEP:  // y: (T, B, V) or (B, T, V) = rows of top W_head^T + b, zero past each length
        if (!io->lengths) {
            const float *rows = top;
            if (!tm) {
                swap_axes(spare, top, T, B, W);  // (B, T, W)
                rows = spare;
            }
            head(s, (int)N, rows, W, io->y, V);
            break;
        }
        {
            // The valid rows only, in y's row order (y row d = o Q + q, o the outer axis: sequence b or
            // step t), gathered into spare: one head call, so one pass over the head's weights whatever
            // the batch, into y's first n rows. Then, last first, each row moves to its own place
            // (compact row c <= d; the rows not yet moved lie below c, so nothing unmoved is written
            // over) and the rows past each length are zeroed.
            const int O = tm ? T : B, Q = tm ? B : T;
            size_t c = 0;
            for (int o = 0; o < O; o++)
                for (int q = 0; q < Q; q++) {
                    const int b = tm ? q : o, t = tm ? o : q;
                    if (t < io->lengths[b])
                        memcpy(spare + c++ * W, top + ((size_t)s->off[t] + s->inv[b]) * W, (size_t)W * sizeof(float));
                }
            head(s, (int)c, spare, W, io->y, V);
            for (int o = O - 1; o >= 0; o--)
                for (int q = Q - 1; q >= 0; q--) {
                    const int b = tm ? q : o, t = tm ? o : q;
                    const size_t d = (size_t)o * Q + q;
                    if (t >= io->lengths[b]) memset(io->y + d * V, 0, (size_t)V * sizeof(float));
                    else if (--c != d) memmove(io->y + d * V, io->y + c * V, (size_t)V * sizeof(float));
                }
        }
        break;
    case FL_HEAD_LAST_STEP:  // y: (B, C) = top at each sequence's last valid step W_head^T + b
        for (int i = 0; i < B; i++)
            memcpy(spare + (size_t)s->perm[i] * W, top + ((size_t)s->off[s->len[i] - 1] + i) * W,
                   (size_t)W * sizeof(float));
        head(s, B, spare, W, io->y, V);
        break;
    }
}

fl_status fl_session_run(fl_session *s, const fl_run_io *io) {
    if (!s || !io) return fl_fail(FL_ERR_ARG, "fl_session_run: NULL argument");
    fl_status st = check_run(s, io);
    if (st) return st;
    const int T = io->seq, D = s->D;
    pack_layout(s, io);
    // x0: packed layer-0 input (N, D); time-major features without lengths are used in place
    const float *x0 = s->xin;
    if (!io->lengths && !io->tokens && io->layout == FL_TIME_MAJOR) {
        x0 = io->x;
    } else {
        for (int t = 0; t < T; t++)
            for (int i = 0; i < s->bt[t]; i++)
                memcpy(s->xin + ((size_t)s->off[t] + i) * D, input_row(s, io, s->perm[i], t),
                       (size_t)D * sizeof(float));
    }
    const float *in = x0;  // in: packed (N, in_dim) input of the current layer
    int in_dim = D;
    for (int l = 0; l < s->L; l++) {
        float *hs = s->seq[l % 2];  // hs: packed (N, W) this layer's outputs; never aliases `in`
        s->job.io = io;
        s->job.l = l;
        s->job.T = T;
        s->job.in = in;
        s->job.in_dim = in_dim;
        s->job.out = hs;
        if (s->dirs == 2 && !s->serial && s->lthreads[l] >= 2) fl_pool_run(s->pool, 2);  // one direction per thread
        else
            for (int d = 0; d < s->dirs; d++) run_dir(s, d);  // in turn, each on all the layer's threads
        in = hs;
        in_dim = s->W;
    }
    // top: packed last layer outputs; spare: the other buffer, free now
    write_output(s, io, in, s->seq[s->L % 2]);
    return FL_OK;
}
/* ------------------------------------------------------------ streaming */

fl_status fl_session_step(fl_session *s, int batch, const float *x, const int32_t *tokens, float *y) {
    if (!s) return fl_fail(FL_ERR_ARG, "fl_session_step: session is NULL");
    const fl_model *m = s->m;
    const fl_arch *a = &m->arch;
    const int B = batch, D = s->D, H = s->H, G = 4 * H, P = s->P, MB = s->max_batch;
    if (s->dirs == 2)
        return fl_fail(FL_ERR_UNSUPPORTED, "fl_session_step: the model has bidirectional layers, which need the "
                       "whole sequence (the reverse direction starts at its end): use fl_session_run");
    if (B < 1 || B > MB)
        return fl_fail(FL_ERR_ARG, "fl_session_step: batch %d outside [1, %d] (the session's max_batch)", B, MB);
    if (!y) return fl_fail(FL_ERR_ARG, "fl_session_step: y is NULL");
    // in: (B, D) layer-0 input
    const float *in = x;
    if (a->vocab > 0) {
        if (!tokens || x) return fl_fail(FL_ERR_ARG, "fl_session_step: the model has an embedding: set tokens, not x");
        for (int b = 0; b < B; b++)
            if (tokens[b] < 0 || tokens[b] >= a->vocab)
                return fl_fail(FL_ERR_ARG, "fl_session_step: token id %d of stream %d outside [0, %d)", (int)tokens[b],
                               b, a->vocab);
        for (int b = 0; b < B; b++)
            memcpy(s->xin + (size_t)b * D, m->embed + (size_t)tokens[b] * D, (size_t)D * sizeof(float));
        in = s->xin;
    } else {
        if (!x || tokens) return fl_fail(FL_ERR_ARG, "fl_session_step: the model takes features: set x, not tokens");
        long i = fl_find_nonfinite(x, (size_t)B * D);
        if (i >= 0)
            return fl_fail(FL_ERR_NONFINITE, "fl_session_step: x[stream %ld, feature %ld] is not finite (%g)",
                           i / D, i % D, (double)x[i]);
    }
    int in_dim = D;
    const dir_scratch *ds = &s->ds[0];
    for (int l = 0; l < s->L; l++) {
        float *h = s->sh + (size_t)l * MB * P, *c = s->sc + (size_t)l * MB * H;  // (B, P), (B, H) of layer l
        const fl_layer *ly = &m->layer[l];
        // gx (B, 4H) = in W_ih^T + b_ih + b_hh
        if (!fl_rec_input_ws(s->rec[l], B, in, in_dim, s->bias + (size_t)l * G, ds->gx, G, ds->ws)) {
            fl_mat_apply(&ly->wih, B, in, in_dim, 0.0f, ds->gx, G, ds->ws);
            fl_add_bias_rows(ds->gx, (size_t)B, G, (size_t)G, s->bias + (size_t)l * G);
        }
        if (s->m->ext) {  // LSTM extras (lstm_ext.c): unidirectional, no projection, so P == H
            fl_lstm_ext_step(s->m, l, B, ds->gx, h, c, s->hstep);
        } else if (ly->whr.rows > 0) {  // LSTMP: hstep (B, P) = (o * tanh(c)) W_hr^T
            fl_rec_step(s->rec[l], B, ds->gx, G, h, P, c, ds->m, H);
            fl_mat_apply(&ly->whr, B, ds->m, H, 0.0f, s->hstep, P, ds->ws);
        } else {
            fl_rec_step(s->rec[l], B, ds->gx, G, h, P, c, s->hstep, P);
        }
        memcpy(h, s->hstep, (size_t)B * P * sizeof(float));
        in = h;
        in_dim = P;
    }
    if (a->head == FL_HEAD_NONE) {
        memcpy(y, in, (size_t)B * P * sizeof(float));  // y: (B, P)
    } else {
        head(s, B, in, P, y, s->out);  // y: (B, head_out)
    }
    return FL_OK;
}

/* Check the (batch) argument of get/set_state. */
static fl_status check_state_batch(const char *fn, const fl_session *s, int batch) {
    if (!s) return fl_fail(FL_ERR_ARG, "%s: session is NULL", fn);
    if (batch < 1 || batch > s->max_batch)
        return fl_fail(FL_ERR_ARG, "%s: batch %d outside [1, %d] (the session's max_batch)", fn, batch,
                       s->max_batch);
    return FL_OK;
}

fl_status fl_session_get_state(const fl_session *s, int batch, float *h, float *c) {
    fl_status st = check_state_batch("fl_session_get_state", s, batch);
    if (st) return st;
    if (!h && !c) return fl_fail(FL_ERR_ARG, "fl_session_get_state: h and c are both NULL");
    const size_t H = (size_t)s->H, P = (size_t)s->P, MB = (size_t)s->max_batch, B = (size_t)batch;
    // h (L, B, P), c (L, B, H) <- sh, sc (L, max_batch, *): the first B rows of each layer
    for (int l = 0; l < s->L; l++) {
        if (h) memcpy(h + (size_t)l * B * P, s->sh + (size_t)l * MB * P, B * P * sizeof(float));
        if (c) memcpy(c + (size_t)l * B * H, s->sc + (size_t)l * MB * H, B * H * sizeof(float));
    }
    return FL_OK;
}

fl_status fl_session_set_state(fl_session *s, int batch, const float *h, const float *c) {
    fl_status st = check_state_batch("fl_session_set_state", s, batch);
    if (st) return st;
    const int L = s->L;
    // Check both before writing either, so a failed call leaves the state as it was.
    const char *name[2] = {"h", "c"};
    const float *src[2] = {h, c};
    const long width[2] = {s->P, s->H};
    for (int k = 0; k < 2; k++) {
        if (!src[k]) continue;
        const long n = width[k];
        long i = fl_find_nonfinite(src[k], (size_t)L * batch * n);
        if (i >= 0)
            return fl_fail(FL_ERR_NONFINITE, "fl_session_set_state: %s[layer %ld, stream %ld, unit %ld] is not finite (%g)",
                           name[k], i / ((long)batch * n), i / n % batch, i % n, (double)src[k][i]);
    }
    const size_t H = (size_t)s->H, P = (size_t)s->P, MB = (size_t)s->max_batch, B = (size_t)batch;
    // sh (L, max_batch, P), sc (L, max_batch, H): the first B rows of each layer <- h, c, or zeros
    for (int l = 0; l < L; l++) {
        float *dh = s->sh + (size_t)l * MB * P, *dc = s->sc + (size_t)l * MB * H;
        if (h) memcpy(dh, h + (size_t)l * B * P, B * P * sizeof(float));
        else memset(dh, 0, B * P * sizeof(float));
        if (c) memcpy(dc, c + (size_t)l * B * H, B * H * sizeof(float));
        else memset(dc, 0, B * H * sizeof(float));
    }
    return FL_OK;
}

fl_status fl_session_reset(fl_session *s, int stream) {
    if (!s) return fl_fail(FL_ERR_ARG, "fl_session_reset: session is NULL");
    const size_t H = (size_t)s->H, P = (size_t)s->P, MB = (size_t)s->max_batch;
    if (stream >= s->max_batch)
        return fl_fail(FL_ERR_ARG, "fl_session_reset: stream %d outside [0, %d) (the session's max_batch)", stream,
                       s->max_batch);
    if (stream < 0) {
        memset(s->sh, 0, (size_t)s->L * MB * P * sizeof(float));
        memset(s->sc, 0, (size_t)s->L * MB * H * sizeof(float));
        return FL_OK;
    }
    for (int l = 0; l < s->L; l++) {
        memset(s->sh + ((size_t)l * MB + stream) * P, 0, P * sizeof(float));
        memset(s->sc + ((size_t)l * MB + stream) * H, 0, H * sizeof(float));
    }
    return FL_OK;
}
