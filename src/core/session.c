/* Inference session: whole-sequence runs (fl_session_run) and streaming steps (fl_session_step).
 *
 * Layer by layer, time-major inside: for each layer the input projection of every time step is
 * one fl_mat_apply over T*B rows (gx = x W_ih^T + b_ih + b_hh), then T recurrent steps through
 * fl_rec_step (gates = gx_t + W_hh h_{t-1}, cell update). Batch-major inputs are transposed into
 * time-major scratch and outputs transposed back. All scratch is one block allocated at create for
 * max_batch x max_seq; a run never allocates. */
#include "internal.h"
#include "blas_threads.h"
#include "recurrent.h"

#include <limits.h>
#include <math.h>
#include <string.h>

#define MAX_THREADS 1024

struct fl_session {
    const fl_model *m;
    int max_batch, max_seq, threads;
    int L, D, H, out; /* layers, layer-0 input size, hidden size, head outputs (0: no head) */
    fl_rec **rec;     /* [L] recurrent step of each layer */
    const fl_rec_pack *packs; /* [L] the model's packed weights (packed.c), held while the session lives */
    float *bias;      /* (L, 4H): b_ih + b_hh of each layer, summed once at create */
    float *block;     /* the one scratch allocation; the pointers below point into it */
    float *xin;       /* (max_seq * max_batch, D) time-major layer-0 input (embedded or transposed) */
    float *gx;        /* (max_seq * max_batch, 4H) input projections with biases */
    float *seq[2];    /* (max_seq * max_batch, H) each: layer outputs, used in turn */
    float *c;         /* (max_batch, H) cell state of the layer being run */
    float *zero;      /* (max_batch, H) zeros: h_{-1} when the caller gives no h0 */
    float *ws;        /* fl_mat_apply workspace for up to max_seq * max_batch rows */
    float *hstep;     /* (max_batch, H) new top-of-step h in streaming */
    float *sh, *sc;   /* (L, max_batch, H) streaming (h, c) of every stream */
};

/* ------------------------------------------------------------ scratch layout */

/* Offsets (in floats) of every scratch buffer inside the block, and its total size. */
typedef struct scratch {
    size_t xin, gx, seq0, seq1, c, zero, ws, hstep, sh, sc, total;
} scratch;

/* Reserve a*b floats at the end of the block, 64-byte aligned; false on overflow. */
static bool reserve(size_t *total, size_t a, size_t b, size_t *off) {
    size_t n;
    if (!fl_mul_ok(a, b, &n) || n > SIZE_MAX / 8 - *total) return false;
    *off = *total;
    *total += (n + 15) & ~(size_t)15;
    return true;
}

/* The scratch a session for m with max_batch x max_seq needs. false if it cannot be addressed. */
static bool scratch_query(const fl_model *m, int max_batch, int max_seq, scratch *s) {
    const fl_arch *a = &m->arch;
    size_t N = (size_t)max_batch * (size_t)max_seq, MB = (size_t)max_batch, H = (size_t)a->hidden;
    size_t L = (size_t)a->layers, wsn = 0;
    for (int l = 0; l < a->layers; l++) {
        size_t w = fl_mat_apply_workspace(&m->layer[l].wih, (int)N);
        if (w > wsn) wsn = w;
    }
    if (a->head != FL_HEAD_NONE) {
        size_t w = fl_mat_apply_workspace(&m->head, (int)N);
        if (w > wsn) wsn = w;
    }
    memset(s, 0, sizeof *s);
    size_t *t = &s->total;
    return reserve(t, N, (size_t)a->input, &s->xin) && reserve(t, N, 4 * H, &s->gx) &&
           reserve(t, N, H, &s->seq0) && reserve(t, N, H, &s->seq1) && reserve(t, MB, H, &s->c) &&
           reserve(t, MB, H, &s->zero) && reserve(t, wsn, 1, &s->ws) && reserve(t, MB, H, &s->hstep) &&
           reserve(t, L * MB, H, &s->sh) && reserve(t, L * MB, H, &s->sc);
}

/* ------------------------------------------------------------ create / free */

fl_session_opts fl_session_opts_default(void) {
    return (fl_session_opts){.max_batch = 1, .max_seq = 256, .threads = 1};
}

/* OpenBLAS runs on one thread for sessions (the rule and its reason: blas_threads.h). */
static fl_status set_threads(fl_session *s, int threads) {
    for (int l = 0; l < s->L; l++) {
        fl_status st = fl_rec_set_threads(s->rec[l], threads);
        if (st) return st;
    }
    fl_blas_for_sessions();
    s->threads = threads;
    return FL_OK;
}

fl_status fl_session_create(const fl_model *m, const fl_session_opts *opts, fl_session **out) {
    if (!out) return fl_fail(FL_ERR_ARG, "fl_session_create: out is NULL");
    *out = NULL;
    if (!m) return fl_fail(FL_ERR_ARG, "fl_session_create: model is NULL");
    fl_session_opts o = opts ? *opts : fl_session_opts_default();
    if (o.max_batch < 1) return fl_fail(FL_ERR_ARG, "fl_session_create: max_batch must be >= 1, got %d", o.max_batch);
    if (o.max_seq < 1) return fl_fail(FL_ERR_ARG, "fl_session_create: max_seq must be >= 1, got %d", o.max_seq);
    if (o.threads == 0) o.threads = m->planned_threads > 0 ? m->planned_threads : 1; /* planned */
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
    const int L = a->layers, H = a->hidden, G = 4 * H;
    fl_session *s = fl_calloc(1, sizeof *s);
    if (!s) return fl_fail(FL_ERR_NOMEM, "fl_session_create: out of memory");
    s->m = m;
    s->max_batch = o.max_batch;
    s->max_seq = o.max_seq;
    s->L = L;
    s->D = a->input;
    s->H = H;
    s->out = a->head == FL_HEAD_NONE ? 0 : a->head_out;
    s->rec = fl_calloc((size_t)L, sizeof *s->rec);
    s->bias = fl_calloc((size_t)L * G, sizeof(float));
    s->block = fl_calloc(sc.total, sizeof(float));
    if (!s->rec || !s->bias || !s->block) {
        fl_session_free(s);
        return fl_fail(FL_ERR_NOMEM, "fl_session_create: out of memory allocating %zu floats of scratch",
                       sc.total);
    }
    fl_status pst = fl_model_packs_acquire(m, &s->packs);
    if (pst) {
        fl_session_free(s);
        return pst;
    }
    for (int l = 0; l < L; l++) {
        fl_status st = fl_rec_create_packed(&m->layer[l], &s->packs[l], o.max_batch, o.threads, &s->rec[l]);
        if (st) {
            fl_session_free(s);
            return st;
        }
        // bias (4H) = b_ih + b_hh
        for (int j = 0; j < G; j++) s->bias[(size_t)l * G + j] = m->layer[l].b_ih[j] + m->layer[l].b_hh[j];
    }
    float *b = s->block;
    s->xin = b + sc.xin;
    s->gx = b + sc.gx;
    s->seq[0] = b + sc.seq0;
    s->seq[1] = b + sc.seq1;
    s->c = b + sc.c;
    s->zero = b + sc.zero;
    s->ws = b + sc.ws;
    s->hstep = b + sc.hstep;
    s->sh = b + sc.sh;
    s->sc = b + sc.sc;
    fl_blas_for_sessions();  // see set_threads; the fl_recs got o.threads at create
    s->threads = o.threads;
    *out = s;
    return FL_OK;
}

void fl_session_free(fl_session *s) {
    if (!s) return;
    if (s->rec)
        for (int l = 0; l < s->L; l++) fl_rec_free(s->rec[l]);
    if (s->packs) fl_model_packs_release(s->m);
    fl_free(s->rec);
    fl_free(s->bias);
    fl_free(s->block);
    fl_free(s);
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
    case FL_HEAD_NONE: return fl_mul_ok(bt, (size_t)a->hidden, &n) ? n : 0;
    case FL_HEAD_PER_STEP: return fl_mul_ok(bt, (size_t)a->head_out, &n) ? n : 0;
    case FL_HEAD_LAST_STEP: return (size_t)batch * (size_t)a->head_out;
    }
    return 0;
}

/* ------------------------------------------------------------ helpers */

/* y (n, cols) += bias (cols) on every row. */
static void add_bias_rows(float *y, size_t n, int cols, const float *bias) {
    for (size_t i = 0; i < n; i++) {
        float *r = y + i * (size_t)cols;
        for (int j = 0; j < cols; j++) r[j] += bias[j];
    }
}

/* dst (d1, d0, w) = src (d0, d1, w) with the first two axes swapped. */
static void swap_axes(float *dst, const float *src, int d0, int d1, int w) {
    for (int i = 0; i < d0; i++)
        for (int j = 0; j < d1; j++)
            memcpy(dst + ((size_t)j * d0 + i) * w, src + ((size_t)i * d1 + j) * w, (size_t)w * sizeof(float));
}

/* First non-finite entry of p[0..n), or -1. */
static long find_nonfinite(const float *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(p[i])) return (long)i;
    return -1;
}

/* Check h0 or c0 (L, B, H). */
static fl_status check_state(const char *name, const float *p, int L, int B, int H) {
    if (!p) return FL_OK;
    long i = find_nonfinite(p, (size_t)L * B * H);
    if (i < 0) return FL_OK;
    return fl_fail(FL_ERR_NONFINITE, "fl_session_run: %s[layer %ld, batch %ld, unit %ld] is not finite (%g)",
                   name, i / ((long)B * H), i / H % B, i % H, (double)p[i]);
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
        long i = find_nonfinite(io->x, (size_t)B * T * D);
        if (i >= 0) {
            long row = i / (long)D, b = tm ? row % B : row / T, t = tm ? row / B : row % T;
            return fl_fail(FL_ERR_NONFINITE, "fl_session_run: x[batch %ld, step %ld, feature %ld] is not finite (%g)",
                           b, t, i % (long)D, (double)io->x[i]);
        }
    }
    fl_status st = check_state("h0", io->h0, s->L, B, s->H);
    if (!st) st = check_state("c0", io->c0, s->L, B, s->H);
    return st;
}

fl_status fl_session_run(fl_session *s, const fl_run_io *io) {
    if (!s || !io) return fl_fail(FL_ERR_ARG, "fl_session_run: NULL argument");
    fl_status st = check_run(s, io);
    if (st) return st;
    const fl_model *m = s->m;
    const int B = io->batch, T = io->seq, N = B * T, D = s->D, H = s->H, G = 4 * H, L = s->L;
    const bool tm = io->layout == FL_TIME_MAJOR;

    // x0: (T, B, D) time-major layer-0 input
    const float *x0 = s->xin;
    if (io->tokens) {
        for (int t = 0; t < T; t++)
            for (int b = 0; b < B; b++) {
                int32_t id = io->tokens[tm ? (size_t)t * B + b : (size_t)b * T + t];
                memcpy(s->xin + ((size_t)t * B + b) * D, m->embed + (size_t)id * D, (size_t)D * sizeof(float));
            }
    } else if (tm) {
        x0 = io->x;
    } else {
        swap_axes(s->xin, io->x, B, T, D);  // (B, T, D) -> (T, B, D)
    }

    const float *in = x0;  // in: (T, B, in_dim) input of the current layer
    int in_dim = D;
    for (int l = 0; l < L; l++) {
        const fl_layer *ly = &m->layer[l];
        float *hs = s->seq[l % 2];  // hs: (T, B, H) this layer's outputs; never aliases `in`
        // gx (T*B, 4H) = in W_ih^T + b_ih + b_hh
        if (!fl_rec_input(s->rec[l], N, in, in_dim, s->bias + (size_t)l * G, s->gx, G)) {
            fl_mat_apply(&ly->wih, N, in, in_dim, 0.0f, s->gx, G, s->ws);
            add_bias_rows(s->gx, (size_t)N, G, s->bias + (size_t)l * G);
        }
        // c (B, H) = c0[l] or 0; h_{-1} (B, H) = h0[l] or 0
        if (io->c0) memcpy(s->c, io->c0 + (size_t)l * B * H, (size_t)B * H * sizeof(float));
        else memset(s->c, 0, (size_t)B * H * sizeof(float));
        const float *hprev = io->h0 ? io->h0 + (size_t)l * B * H : s->zero;
        for (int t = 0; t < T; t++) {
            float *ht = hs + (size_t)t * B * H;
            fl_rec_step(s->rec[l], B, s->gx + (size_t)t * B * G, G, hprev, H, s->c, ht, H);
            hprev = ht;
        }
        // h_n, c_n (L, B, H); h0/c0 of layer l are no longer read, so hn == h0 is fine
        if (io->hn) memcpy(io->hn + (size_t)l * B * H, hprev, (size_t)B * H * sizeof(float));
        if (io->cn) memcpy(io->cn + (size_t)l * B * H, s->c, (size_t)B * H * sizeof(float));
        in = hs;
        in_dim = H;
    }

    // top: (T, B, H) last layer's hidden states; spare: the other (T, B, H) buffer, free now
    const float *top = in;
    float *spare = s->seq[L % 2];
    switch (m->arch.head) {
    case FL_HEAD_NONE:  // y: (T, B, H) or (B, T, H)
        if (tm) memcpy(io->y, top, (size_t)N * H * sizeof(float));
        else swap_axes(io->y, top, T, B, H);
        break;
    case FL_HEAD_PER_STEP: {  // y: (T, B, V) or (B, T, V) = rows of top W_head^T + b
        const float *rows = top;
        if (!tm) {
            swap_axes(spare, top, T, B, H);  // (B, T, H)
            rows = spare;
        }
        fl_mat_apply(&m->head, N, rows, H, 0.0f, io->y, s->out, s->ws);
        add_bias_rows(io->y, (size_t)N, s->out, m->head_b);
        break;
    }
    case FL_HEAD_LAST_STEP:  // y: (B, C) = h_{T-1} W_head^T + b
        fl_mat_apply(&m->head, B, top + (size_t)(T - 1) * B * H, H, 0.0f, io->y, s->out, s->ws);
        add_bias_rows(io->y, (size_t)B, s->out, m->head_b);
        break;
    }
    return FL_OK;
}

/* ------------------------------------------------------------ streaming */

fl_status fl_session_step(fl_session *s, int batch, const float *x, const int32_t *tokens, float *y) {
    if (!s) return fl_fail(FL_ERR_ARG, "fl_session_step: session is NULL");
    const fl_model *m = s->m;
    const fl_arch *a = &m->arch;
    const int B = batch, D = s->D, H = s->H, G = 4 * H, MB = s->max_batch;
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
        long i = find_nonfinite(x, (size_t)B * D);
        if (i >= 0)
            return fl_fail(FL_ERR_NONFINITE, "fl_session_step: x[stream %ld, feature %ld] is not finite (%g)",
                           i / D, i % D, (double)x[i]);
    }
    int in_dim = D;
    for (int l = 0; l < s->L; l++) {
        float *h = s->sh + (size_t)l * MB * H, *c = s->sc + (size_t)l * MB * H;  // (B, H) of layer l
        // gx (B, 4H) = in W_ih^T + b_ih + b_hh
        if (!fl_rec_input(s->rec[l], B, in, in_dim, s->bias + (size_t)l * G, s->gx, G)) {
            fl_mat_apply(&m->layer[l].wih, B, in, in_dim, 0.0f, s->gx, G, s->ws);
            add_bias_rows(s->gx, (size_t)B, G, s->bias + (size_t)l * G);
        }
        fl_rec_step(s->rec[l], B, s->gx, G, h, H, c, s->hstep, H);
        memcpy(h, s->hstep, (size_t)B * H * sizeof(float));
        in = h;
        in_dim = H;
    }
    if (a->head == FL_HEAD_NONE) {
        memcpy(y, in, (size_t)B * H * sizeof(float));  // y: (B, H)
    } else {
        fl_mat_apply(&m->head, B, in, H, 0.0f, y, s->out, s->ws);  // y: (B, head_out)
        add_bias_rows(y, (size_t)B, s->out, m->head_b);
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
    const size_t H = (size_t)s->H, MB = (size_t)s->max_batch, B = (size_t)batch;
    // h, c (L, B, H) <- sh, sc (L, max_batch, H): the first B rows of each layer
    for (int l = 0; l < s->L; l++) {
        if (h) memcpy(h + (size_t)l * B * H, s->sh + (size_t)l * MB * H, B * H * sizeof(float));
        if (c) memcpy(c + (size_t)l * B * H, s->sc + (size_t)l * MB * H, B * H * sizeof(float));
    }
    return FL_OK;
}

fl_status fl_session_set_state(fl_session *s, int batch, const float *h, const float *c) {
    fl_status st = check_state_batch("fl_session_set_state", s, batch);
    if (st) return st;
    const int L = s->L, Hi = s->H;
    // Check both before writing either, so a failed call leaves the state as it was.
    const char *name[2] = {"h", "c"};
    const float *src[2] = {h, c};
    for (int k = 0; k < 2; k++) {
        if (!src[k]) continue;
        long i = find_nonfinite(src[k], (size_t)L * batch * Hi);
        if (i >= 0)
            return fl_fail(FL_ERR_NONFINITE, "fl_session_set_state: %s[layer %ld, stream %ld, unit %ld] is not finite (%g)",
                           name[k], i / ((long)batch * Hi), i / Hi % batch, i % Hi, (double)src[k][i]);
    }
    const size_t H = (size_t)Hi, MB = (size_t)s->max_batch, B = (size_t)batch;
    // sh, sc (L, max_batch, H): the first B rows of each layer <- h, c (L, B, H), or zeros
    for (int l = 0; l < L; l++) {
        float *dh = s->sh + (size_t)l * MB * H, *dc = s->sc + (size_t)l * MB * H;
        if (h) memcpy(dh, h + (size_t)l * B * H, B * H * sizeof(float));
        else memset(dh, 0, B * H * sizeof(float));
        if (c) memcpy(dc, c + (size_t)l * B * H, B * H * sizeof(float));
        else memset(dc, 0, B * H * sizeof(float));
    }
    return FL_OK;
}

fl_status fl_session_reset(fl_session *s, int stream) {
    if (!s) return fl_fail(FL_ERR_ARG, "fl_session_reset: session is NULL");
    const size_t H = (size_t)s->H, MB = (size_t)s->max_batch;
    if (stream >= s->max_batch)
        return fl_fail(FL_ERR_ARG, "fl_session_reset: stream %d outside [0, %d) (the session's max_batch)", stream,
                       s->max_batch);
    if (stream < 0) {
        memset(s->sh, 0, (size_t)s->L * MB * H * sizeof(float));
        memset(s->sc, 0, (size_t)s->L * MB * H * sizeof(float));
        return FL_OK;
    }
    for (int l = 0; l < s->L; l++) {
        memset(s->sh + ((size_t)l * MB + stream) * H, 0, H * sizeof(float));
        memset(s->sc + ((size_t)l * MB + stream) * H, 0, H * sizeof(float));
    }
    return FL_OK;
}
