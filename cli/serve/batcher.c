/* fastlstm serve: the bounded queue, dynamic batching, the workers and the streams table.
 *
 * Queue: a list of items, one per sequence of a predict (or one per stream step), at most
 * opts.queue of them; srv_submit refuses a job that does not fit (503). One dispatcher thread forms
 * batches when a worker is idle: it takes the oldest item, waits until max_batch items of the same
 * key are queued or the oldest has waited max_delay_us (less when a latency objective leaves less:
 * arrival + slo - the estimated run time), then hands up to max_batch items of that key to an idle
 * worker. The key of a predict is its model: sequences of any lengths share a batch, padded to the
 * batch's longest and run with per-sequence lengths (fl_run_io.lengths), so each gets what it would
 * alone. The key of a stream step is (model, frame count): fl_session_step advances every stream of
 * a batch by one frame, with no lengths, so steps are bucketed by length. While every worker is
 * busy items keep arriving, so batches grow with the load.
 *
 * Workers each own one fl_session per model, on the shared fl_model (sessions on one model may run
 * concurrently on different threads), with one thread each: workers x 1 <= cores. A predict batch
 * is gathered into (n, T, D), run with fl_session_run and scattered into each job's outputs. A
 * step batch gathers the streams' (h, c) into (L, n, hw) and (L, n, H) with fl_session_set_state,
 * steps frame by frame with fl_session_step, and scatters the states back with
 * fl_session_get_state. Models with bidirectional layers cannot stream (srv_stream_open: 400).
 *
 * Before an item is batched its client socket is checked for a hang-up (a peeked read returning 0):
 * a client that went away has its queued items dropped. Jobs whose last item is done or dropped are
 * finished with their done callback, called without the lock held.
 *
 * Locking: one mutex guards the queue, the workers' hand-off, the streams table and the metrics.
 * A stream is busy while a step on it is queued or running; only that step touches its state. */
#include "serve.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct srv_item {
    srv_job *job;
    int b, len;            /* sequence b of the job, run for len steps */
    struct srv_item *prev, *next;
} srv_item;

struct srv_stream {
    char id[24];
    int model;
    float *h, *c;          /* (L, hw) and (L, H) */
    double last;           /* last use, monotonic seconds */
    bool used, busy;
};

typedef struct worker {
    srv *s;
    pthread_t th;
    bool started;
    fl_session **sess;     /* [nmodels] */
    srv_item **items;      /* [max_batch] the batch handed over */
    int n;                 /* items in the batch; 0: idle */
    float *x, *y, *h, *c;  /* scratch: (B, T, D), outputs, (rows, B, hw), (rows, B, cw) */
    int32_t *tok;          /* (B, T) */
    int32_t *len;          /* (B) each item's length */
} worker;

#define N_BATCH_BUCKETS 9
#define N_LAT_BUCKETS 14
static const double lat_bounds[N_LAT_BUCKETS] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03,
                                                 0.05,   0.1,   0.2,   0.5,   1,    2,    5};

struct srv {
    srv_opts o;
    srv_model *models;
    int nmodels;
    pthread_mutex_t mu;
    pthread_cond_t cv_disp, cv_work, cv_drain;
    srv_item *head, *tail;
    int queued;            /* items in the queue */
    int inflight;          /* jobs submitted, not finished */
    worker *w;
    int nw, idle;
    pthread_t disp;
    bool disp_started, stop, draining;
    srv_stream *streams;   /* [max_streams] */
    int nstreams;
    double *est;           /* [nmodels * 2] seconds per step of a batch, moving average; 0: unknown */
    uint64_t rng;
    uint64_t batch_hist[N_BATCH_BUCKETS], batches, batch_items, cancelled;
    uint64_t lat_hist[N_LAT_BUCKETS], lat_count;
    double lat_sum;
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, double t) {
    struct timespec ts;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L) ts.tv_nsec = 999999999L;
    pthread_cond_timedwait(cv, mu, &ts);
}

const srv_opts *srv_options(const srv *s) { return &s->o; }
int srv_num_models(const srv *s) { return s->nmodels; }
const srv_model *srv_model_at(const srv *s, int i) { return &s->models[i]; }

int srv_find_model(const srv *s, const char *name) {
    for (int i = 0; i < s->nmodels; i++)
        if (!strcmp(s->models[i].name, name)) return i;
    return -1;
}

/* ---------------------------------------------------------------- queue */

static void unlink_item(srv *s, srv_item *it) {
    if (it->prev) it->prev->next = it->next;
    else s->head = it->next;
    if (it->next) it->next->prev = it->prev;
    else s->tail = it->prev;
    it->prev = it->next = NULL;
    s->queued--;
}

/* Items that may share a batch: predicts of one model at any lengths; steps of one model with the
 * same number of frames. */
static bool same_key(const srv_item *a, const srv_item *b) {
    if (a->job->model != b->job->model || a->job->kind != b->job->kind) return false;
    return a->job->kind == SRV_PREDICT || a->len == b->len;
}

/* One item of j is done (run or dropped). When it was the last, the job joins *done (finished
 * outside the lock by finish_jobs). Lock held. */
static void item_done(srv *s, srv_job *j, srv_job **done) {
    if (--j->pending > 0) return;
    if (j->stream) {
        j->stream->busy = false;
        j->stream->last = now_s();
    }
    j->next_done = *done;
    *done = j;
}

static void finish_jobs(srv *s, srv_job *list) {
    while (list) {
        srv_job *next = list->next_done;
        list->next_done = NULL;
        pthread_mutex_lock(&s->mu);
        if (--s->inflight == 0) pthread_cond_broadcast(&s->cv_drain);
        pthread_mutex_unlock(&s->mu);
        list->done(list, list->done_arg);
        list = next;
    }
}

/* Has the client of j hung up? A peeked read of 0 bytes is an orderly close; data (a pipelined
 * request) or EAGAIN mean it is still there. */
static bool client_gone(srv_job *j) {
    if (j->cancelled) return true;
    if (j->fd < 0) return false;
    char c;
    ssize_t r = recv(j->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) j->cancelled = true;
    return j->cancelled;
}

/* Drop every queued item of cancelled jobs. Lock held. */
static void sweep_cancelled(srv *s, srv_job **done);

/* Check every queued job's client; drop the items of those gone. Returns how many jobs were. Lock held. */
static int drop_gone(srv *s, srv_job **done) {
    int gone = 0;
    for (srv_item *it = s->head; it; it = it->next)
        if (!it->job->cancelled && client_gone(it->job)) gone++;
    if (gone) sweep_cancelled(s, done);
    return gone;
}

static void sweep_cancelled(srv *s, srv_job **done) {
    for (srv_item *it = s->head, *next; it; it = next) {
        next = it->next;
        if (!it->job->cancelled) continue;
        unlink_item(s, it);
        item_done(s, it->job, done);
    }
}

int srv_submit(srv *s, srv_job *j, srv_err *e) {
    const srv_model *M = &s->models[j->model];
    int B = j->in.B, T = j->in.T;
    size_t ny = j->kind == SRV_PREDICT ? fl_run_output_size(M->m, B, T) : (size_t)T * (size_t)M->out;
    j->y = calloc(ny ? ny : 1, sizeof *j->y);
    if (j->in.state) {
        j->hn = calloc(fl_run_state_size(M->m, B, 0), sizeof *j->hn);
        j->cn = calloc(fl_run_state_size(M->m, B, 1), sizeof *j->cn);
    }
    j->items = calloc((size_t)B, sizeof *j->items);
    if (!j->y || !j->items || (j->in.state && (!j->hn || !j->cn)))
        return srv_fail(e, 500, "out of memory for the outputs of %d x %d", B, T);
    j->t_arrive = now_s();
    j->pending = B;
    pthread_mutex_lock(&s->mu);
    if (s->draining || s->stop) {
        pthread_mutex_unlock(&s->mu);
        return srv_fail(e, 503, "the server is shutting down");
    }
    if (s->queued + B > s->o.queue) {
        int q = s->queued;
        pthread_mutex_unlock(&s->mu);
        return srv_fail(e, 503, "queue full: %d sequences queued, the limit is %d (--queue)", q, s->o.queue);
    }
    for (int b = 0; b < B; b++) {
        srv_item *it = &j->items[b];
        it->job = j;
        it->b = b;
        it->len = j->in.lengths ? j->in.lengths[b] : T;
        it->prev = s->tail;
        if (s->tail) s->tail->next = it;
        else s->head = it;
        s->tail = it;
    }
    s->queued += B;
    s->inflight++;
    pthread_cond_signal(&s->cv_disp);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void srv_job_release(srv_job *j) {
    srv_input_free(&j->in);
    free(j->y);
    free(j->hn);
    free(j->cn);
    free(j->items);
    j->y = j->hn = j->cn = NULL;
    j->items = NULL;
}

/* ---------------------------------------------------------------- streams */

static void expire_streams(srv *s, double t) {
    for (int i = 0; i < s->o.max_streams; i++) {
        srv_stream *st = &s->streams[i];
        if (st->used && !st->busy && t - st->last > s->o.stream_idle_s) {
            free(st->h);
            free(st->c);
            memset(st, 0, sizeof *st);
            s->nstreams--;
        }
    }
}

int srv_stream_open(srv *s, int model, char *id, size_t idlen, srv_err *e) {
    const srv_model *M = &s->models[model];
    if (M->a->bidirectional)
        return srv_fail(e, 400, "model '%s' is bidirectional: its reverse direction needs the whole sequence, so it "
                                "cannot stream; send whole sequences to /v1/models/%s/predict", M->name, M->name);
    float *h = calloc(fl_run_state_size(M->m, 1, 0), sizeof *h), *c = calloc(fl_run_state_size(M->m, 1, 1), sizeof *c);
    if (!h || !c) {
        free(h);
        free(c);
        return srv_fail(e, 500, "out of memory for a stream's state");
    }
    pthread_mutex_lock(&s->mu);
    expire_streams(s, now_s());
    srv_stream *st = NULL;
    for (int i = 0; i < s->o.max_streams && !st; i++)
        if (!s->streams[i].used) st = &s->streams[i];
    if (!st) {
        pthread_mutex_unlock(&s->mu);
        free(h);
        free(c);
        return srv_fail(e, 429, "streams: %d open, the limit is %d (--max-streams)", s->o.max_streams,
                        s->o.max_streams);
    }
    // xorshift64*: ids need only be unique and hard to guess by accident, not secret.
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    snprintf(st->id, sizeof st->id, "%016llx", (unsigned long long)(s->rng * 2685821657736338717ULL));
    st->model = model;
    st->h = h;
    st->c = c;
    st->used = true;
    st->busy = false;
    st->last = now_s();
    s->nstreams++;
    snprintf(id, idlen, "%s", st->id);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static srv_stream *find_stream(srv *s, const char *id) {
    for (int i = 0; i < s->o.max_streams; i++)
        if (s->streams[i].used && !strcmp(s->streams[i].id, id)) return &s->streams[i];
    return NULL;
}

int srv_stream_acquire(srv *s, const char *id, srv_stream **out, int *model, srv_err *e) {
    pthread_mutex_lock(&s->mu);
    srv_stream *st = find_stream(s, id);
    int rc = 0;
    if (!st) rc = srv_fail(e, 404, "no stream '%.40s' (unknown, closed or expired)", id);
    else if (st->busy) rc = srv_fail(e, 409, "stream '%s' is busy with another step", id);
    else {
        st->busy = true;
        st->last = now_s();
        *out = st;
        *model = st->model;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void srv_stream_release(srv *s, srv_stream *st) {
    pthread_mutex_lock(&s->mu);
    st->busy = false;
    st->last = now_s();
    pthread_mutex_unlock(&s->mu);
}

int srv_stream_close(srv *s, const char *id, srv_err *e) {
    pthread_mutex_lock(&s->mu);
    srv_stream *st = find_stream(s, id);
    int rc = 0;
    if (!st) rc = srv_fail(e, 404, "no stream '%.40s' (unknown, closed or expired)", id);
    else if (st->busy) rc = srv_fail(e, 409, "stream '%s' is busy with a step", id);
    else {
        free(st->h);
        free(st->c);
        memset(st, 0, sizeof *st);
        s->nstreams--;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ---------------------------------------------------------------- running a batch */

static void fail_batch(worker *w, const char *what, fl_status st) {
    for (int i = 0; i < w->n; i++) {
        srv_job *j = w->items[i]->job;
        j->status = srv_fail(&j->err, 500, "%s: %s: %s", what, fl_status_str(st), fl_last_error());
    }
}

/* A predict batch: items gathered into (n, T, D) with T the longest item, each zero-padded past its
 * own length and run with its own length (fl_run_io.lengths), so that each gets what it would get
 * alone; each item's first len steps (or its last-step output) and its states are scattered into
 * its job. */
static void run_predict(worker *w, int mi) {
    const srv_model *M = &w->s->models[mi];
    const fl_arch *a = M->a;
    int n = w->n, D = a->input, O = M->out, R = M->rows, HW = M->hw, CW = M->cw, T = 0;
    for (int i = 0; i < n; i++) {
        w->len[i] = w->items[i]->len;
        if (w->len[i] > T) T = w->len[i];
    }
    for (int i = 0; i < n; i++) {
        const srv_item *it = w->items[i];
        const srv_input *in = &it->job->in;
        size_t src = (size_t)it->b * in->T, len = (size_t)it->len;
        if (a->vocab > 0) {
            memcpy(w->tok + (size_t)i * T, in->tokens + src, len * sizeof *w->tok);
            memset(w->tok + (size_t)i * T + len, 0, (T - len) * sizeof *w->tok);
        } else {
            memcpy(w->x + (size_t)i * T * D, in->x + src * D, len * D * sizeof *w->x);
            memset(w->x + ((size_t)i * T + len) * D, 0, (T - len) * D * sizeof *w->x);
        }
    }
    fl_run_io io = {.layout = FL_BATCH_MAJOR, .batch = n, .seq = T, .x = a->vocab > 0 ? NULL : w->x,
                    .tokens = a->vocab > 0 ? w->tok : NULL, .y = w->y, .hn = w->h, .cn = w->c,
                    .lengths = w->len};
    fl_status st = fl_session_run(w->sess[mi], &io);
    if (st) {
        fail_batch(w, "fl_session_run", st);
        return;
    }
    for (int i = 0; i < n; i++) {
        const srv_item *it = w->items[i];
        srv_job *j = it->job;
        int jB = j->in.B, jT = j->in.T;
        if (a->head == FL_HEAD_LAST_STEP)
            memcpy(j->y + (size_t)it->b * O, w->y + (size_t)i * O, (size_t)O * sizeof *w->y);
        else
            memcpy(j->y + (size_t)it->b * jT * O, w->y + (size_t)i * T * O, (size_t)it->len * O * sizeof *w->y);
        if (!j->in.state) continue;
        for (int r = 0; r < R; r++) {
            memcpy(j->hn + ((size_t)r * jB + it->b) * HW, w->h + ((size_t)r * n + i) * HW, (size_t)HW * sizeof *w->h);
            memcpy(j->cn + ((size_t)r * jB + it->b) * CW, w->c + ((size_t)r * n + i) * CW, (size_t)CW * sizeof *w->c);
        }
    }
}

/* A step batch (unidirectional models only): n streams of T frames each; states (L, n, hw), (L, n, H). */
static void run_steps(worker *w, int mi, int T) {
    const srv_model *M = &w->s->models[mi];
    const fl_arch *a = M->a;
    int n = w->n, D = a->input, HW = M->hw, CW = M->cw, L = M->rows, O = M->out;
    fl_session *ss = w->sess[mi];
    for (int i = 0; i < n; i++) {
        const srv_stream *st = w->items[i]->job->stream;
        for (int l = 0; l < L; l++) {
            memcpy(w->h + ((size_t)l * n + i) * HW, st->h + (size_t)l * HW, (size_t)HW * sizeof *w->h);
            memcpy(w->c + ((size_t)l * n + i) * CW, st->c + (size_t)l * CW, (size_t)CW * sizeof *w->c);
        }
    }
    fl_status st = fl_session_set_state(ss, n, w->h, w->c);
    for (int t = 0; t < T && !st; t++) {
        for (int i = 0; i < n; i++) {
            const srv_input *in = &w->items[i]->job->in;
            if (a->vocab > 0) w->tok[i] = in->tokens[t];
            else memcpy(w->x + (size_t)i * D, in->x + (size_t)t * D, (size_t)D * sizeof *w->x);
        }
        st = fl_session_step(ss, n, a->vocab > 0 ? NULL : w->x, a->vocab > 0 ? w->tok : NULL, w->y);
        for (int i = 0; i < n && !st; i++)
            memcpy(w->items[i]->job->y + (size_t)t * O, w->y + (size_t)i * O, (size_t)O * sizeof *w->y);
    }
    if (!st) st = fl_session_get_state(ss, n, w->h, w->c);
    if (st) {
        fail_batch(w, "fl_session_step", st);
        return;
    }
    for (int i = 0; i < n; i++) {
        srv_stream *sm = w->items[i]->job->stream;
        for (int l = 0; l < L; l++) {
            memcpy(sm->h + (size_t)l * HW, w->h + ((size_t)l * n + i) * HW, (size_t)HW * sizeof *w->h);
            memcpy(sm->c + (size_t)l * CW, w->c + ((size_t)l * n + i) * CW, (size_t)CW * sizeof *w->c);
        }
    }
}

static void *worker_main(void *arg) {
    worker *w = arg;
    srv *s = w->s;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!w->n && !s->stop) pthread_cond_wait(&s->cv_work, &s->mu);
        if (!w->n) break;
        srv_item *first = w->items[0];
        int mi = first->job->model, kind = first->job->kind, T = 0;
        for (int i = 0; i < w->n; i++)
            if (w->items[i]->len > T) T = w->items[i]->len;
        pthread_mutex_unlock(&s->mu);
        double t0 = now_s();
        if (kind == SRV_PREDICT) run_predict(w, mi);
        else run_steps(w, mi, T);
        double dt = now_s() - t0;
        pthread_mutex_lock(&s->mu);
        double *est = &s->est[mi * 2 + kind];
        *est = *est > 0 ? 0.8 * *est + 0.2 * dt / T : dt / T;
        int bucket = 0;
        while (bucket < N_BATCH_BUCKETS - 1 && (1 << bucket) < w->n) bucket++;
        s->batch_hist[bucket]++;
        s->batches++;
        s->batch_items += (uint64_t)w->n;
        srv_job *done = NULL;
        for (int i = 0; i < w->n; i++) item_done(s, w->items[i]->job, &done);
        w->n = 0;
        s->idle++;
        pthread_cond_signal(&s->cv_disp);
        pthread_mutex_unlock(&s->mu);
        finish_jobs(s, done);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---------------------------------------------------------------- the dispatcher */

static int count_key(const srv *s, const srv_item *h, int cap) {
    int n = 0;
    for (const srv_item *it = h; it && n < cap; it = it->next)
        if (same_key(it, h)) n++;
    return n;
}

/* The longest of the first cap queued items that share h's key: a batch runs as long as it. */
static int key_max_len(const srv *s, const srv_item *h, int cap) {
    int n = 0, T = 0;
    for (const srv_item *it = h; it && n < cap; it = it->next)
        if (same_key(it, h)) {
            n++;
            if (it->len > T) T = it->len;
        }
    return T;
}

static void *dispatch_main(void *arg) {
    srv *s = arg;
    pthread_mutex_lock(&s->mu);
    double next_expiry = now_s() + 1;
    while (!s->stop) {
        srv_job *done = NULL;
        double t = now_s();
        if (t >= next_expiry) {
            expire_streams(s, t);
            next_expiry = t + 1;
        }
        if (!s->head || !s->idle) {
            wait_until(&s->cv_disp, &s->mu, next_expiry);
            continue;
        }
        // Wait to fill the batch: until max_delay after the oldest arrived, or less under an SLO. The
        // wait goes in slices so that clients hanging up meanwhile are noticed and their work dropped.
        srv_item *h = s->head;
        double deadline = h->job->t_arrive + 1e-6 * (double)s->o.max_delay_us;
        if (s->o.slo_ms > 0) {
            double run = s->est[h->job->model * 2 + h->job->kind] * key_max_len(s, h, s->o.max_batch);
            double latest = h->job->t_arrive + 1e-3 * s->o.slo_ms - run;
            if (latest < deadline) deadline = latest;
        }
        bool head_gone = false;
        for (;;) {
            int gone = drop_gone(s, &done);
            if (gone) {
                s->cancelled += (uint64_t)gone;
                head_gone = s->head != h;
                if (head_gone) break;
            }
            double t1 = now_s();
            if (s->stop || s->draining || count_key(s, h, s->o.max_batch) >= s->o.max_batch || t1 >= deadline) break;
            wait_until(&s->cv_disp, &s->mu, t1 + 0.02 < deadline ? t1 + 0.02 : deadline);
        }
        if (head_gone || !s->head) {
            pthread_mutex_unlock(&s->mu);
            finish_jobs(s, done);
            pthread_mutex_lock(&s->mu);
            continue;
        }
        worker *w = NULL;
        for (int i = 0; i < s->nw && !w; i++)
            if (!s->w[i].n) w = &s->w[i];
        int n = 0;
        for (srv_item *it = s->head, *next; it && n < s->o.max_batch; it = next) {
            next = it->next;
            if (!same_key(it, h)) continue;
            unlink_item(s, it);
            w->items[n++] = it;
        }
        w->n = n;
        s->idle--;
        pthread_cond_broadcast(&s->cv_work);
        if (done) {
            pthread_mutex_unlock(&s->mu);
            finish_jobs(s, done);
            pthread_mutex_lock(&s->mu);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

void srv_drain(srv *s) {
    pthread_mutex_lock(&s->mu);
    s->draining = true;
    pthread_cond_broadcast(&s->cv_disp);
    while (s->inflight > 0) pthread_cond_wait(&s->cv_drain, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

/* ---------------------------------------------------------------- metrics */

void srv_observe_latency(srv *s, double sec) {
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < N_LAT_BUCKETS; i++)
        if (sec <= lat_bounds[i]) s->lat_hist[i]++;
    s->lat_count++;
    s->lat_sum += sec;
    pthread_mutex_unlock(&s->mu);
}

void srv_metrics(srv *s, srv_buf *b) {
    pthread_mutex_lock(&s->mu);
    srv_buf_printf(b, "# HELP fastlstm_queue_depth Sequences waiting in the queue.\n# TYPE fastlstm_queue_depth gauge\n"
                      "fastlstm_queue_depth %d\n", s->queued);
    srv_buf_printf(b, "# HELP fastlstm_queue_capacity The queue's limit (--queue).\n# TYPE fastlstm_queue_capacity gauge\n"
                      "fastlstm_queue_capacity %d\n", s->o.queue);
    srv_buf_printf(b, "# HELP fastlstm_streams Open streams.\n# TYPE fastlstm_streams gauge\nfastlstm_streams %d\n",
                   s->nstreams);
    srv_buf_printf(b, "# HELP fastlstm_cancelled_total Requests dropped from the queue because the client went away.\n"
                      "# TYPE fastlstm_cancelled_total counter\nfastlstm_cancelled_total %llu\n",
                   (unsigned long long)s->cancelled);
    srv_buf_printf(b, "# HELP fastlstm_batch_size Sequences (or streams) per batch run.\n# TYPE fastlstm_batch_size histogram\n");
    uint64_t cum = 0;
    for (int i = 0; i < N_BATCH_BUCKETS; i++) {
        cum += s->batch_hist[i];
        srv_buf_printf(b, "fastlstm_batch_size_bucket{le=\"%d\"} %llu\n", 1 << i, (unsigned long long)cum);
    }
    srv_buf_printf(b, "fastlstm_batch_size_bucket{le=\"+Inf\"} %llu\nfastlstm_batch_size_sum %llu\nfastlstm_batch_size_count %llu\n",
                   (unsigned long long)s->batches, (unsigned long long)s->batch_items, (unsigned long long)s->batches);
    srv_buf_printf(b, "# HELP fastlstm_request_duration_seconds Time from request to answer (predict and step).\n"
                      "# TYPE fastlstm_request_duration_seconds histogram\n");
    for (int i = 0; i < N_LAT_BUCKETS; i++)
        srv_buf_printf(b, "fastlstm_request_duration_seconds_bucket{le=\"%g\"} %llu\n", lat_bounds[i],
                       (unsigned long long)s->lat_hist[i]);
    srv_buf_printf(b, "fastlstm_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
                      "fastlstm_request_duration_seconds_sum %.6f\nfastlstm_request_duration_seconds_count %llu\n",
                   (unsigned long long)s->lat_count, s->lat_sum, (unsigned long long)s->lat_count);
    pthread_mutex_unlock(&s->mu);
}

/* ---------------------------------------------------------------- create / free */

static void model_name(const char *path, char *name, size_t n) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(name, n, "%s", base);
    char *dot = strrchr(name, '.');
    if (dot && dot != name) *dot = '\0';
}

int srv_create(const srv_opts *o, char **paths, int nm, srv **out, char *err, size_t errlen) {
    *out = NULL;
    srv *s = calloc(1, sizeof *s);
    if (!s) return snprintf(err, errlen, "out of memory"), -1;
    s->o = *o;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv_disp, &ca);
    pthread_cond_init(&s->cv_work, &ca);
    pthread_cond_init(&s->cv_drain, &ca);
    pthread_condattr_destroy(&ca);
    s->rng = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ULL;
    s->models = calloc((size_t)nm, sizeof *s->models);
    s->est = calloc((size_t)nm * 2, sizeof *s->est);
    s->streams = calloc((size_t)o->max_streams, sizeof *s->streams);
    s->w = calloc((size_t)o->workers, sizeof *s->w);
    if (!s->models || !s->est || !s->streams || !s->w) goto nomem;
    size_t max_x = 1, max_y = 1, max_h = 1, max_c = 1;
    for (int i = 0; i < nm; i++) {
        srv_model *M = &s->models[i];
        fl_status st = fl_model_load(paths[i], &M->m);
        if (st) {
            snprintf(err, errlen, "%s: %s", fl_status_str(st), fl_last_error());
            goto fail;
        }
        s->nmodels = i + 1;
        M->a = fl_model_arch(M->m);
        model_name(paths[i], M->name, sizeof M->name);
        if (srv_find_model(s, M->name) != i) {
            snprintf(err, errlen, "two models named '%s' (a model is served under its file's base name)", M->name);
            goto fail;
        }
        const fl_arch *a = M->a;
        // Sizes through the public API: one step of one sequence, and one sequence's h and c.
        M->out = (int)fl_run_output_size(M->m, 1, 1);
        M->rows = a->layers * (a->bidirectional ? 2 : 1);
        M->hw = (int)(fl_run_state_size(M->m, 1, 0) / (size_t)M->rows);
        M->cw = (int)(fl_run_state_size(M->m, 1, 1) / (size_t)M->rows);
        if (a->vocab > 0 && fl_model_tokenizer(M->m)) {
            st = fl_vocab_from_model(M->m, &M->vocab);
            if (!st && fl_vocab_size(M->vocab) > a->vocab)
                st = fl_set_error(FL_ERR_FORMAT, "its tokenizer has %d tokens, the embedding only %d",
                                  fl_vocab_size(M->vocab), a->vocab);
            if (st) {
                snprintf(err, errlen, "%s: tokenizer: %s: %s", paths[i], fl_status_str(st), fl_last_error());
                goto fail;
            }
        }
        size_t bt = (size_t)o->max_batch * o->max_seq;
        if (bt * (size_t)a->input > max_x) max_x = bt * (size_t)a->input;
        size_t ny = fl_run_output_size(M->m, o->max_batch, o->max_seq);
        if ((size_t)o->max_batch * M->out > ny) ny = (size_t)o->max_batch * M->out;
        if (ny > max_y) max_y = ny;
        if (fl_run_state_size(M->m, o->max_batch, 0) > max_h) max_h = fl_run_state_size(M->m, o->max_batch, 0);
        if (fl_run_state_size(M->m, o->max_batch, 1) > max_c) max_c = fl_run_state_size(M->m, o->max_batch, 1);
    }
    for (int k = 0; k < o->workers; k++) {
        worker *w = &s->w[k];
        w->s = s;
        w->sess = calloc((size_t)nm, sizeof *w->sess);
        w->items = calloc((size_t)o->max_batch, sizeof *w->items);
        w->x = malloc(max_x * sizeof *w->x);
        w->y = malloc(max_y * sizeof *w->y);
        w->h = malloc(max_h * sizeof *w->h);
        w->c = malloc(max_c * sizeof *w->c);
        w->tok = malloc((size_t)o->max_batch * o->max_seq * sizeof *w->tok);
        w->len = malloc((size_t)o->max_batch * sizeof *w->len);
        if (!w->sess || !w->items || !w->x || !w->y || !w->h || !w->c || !w->tok || !w->len) goto nomem;
        for (int i = 0; i < nm; i++) {
            fl_session_opts so = fl_session_opts_default();
            so.max_batch = o->max_batch;
            so.max_seq = o->max_seq;
            so.threads = 1;
            fl_status st = fl_session_create(s->models[i].m, &so, &w->sess[i]);
            if (st) {
                snprintf(err, errlen, "session for %s: %s: %s", s->models[i].name, fl_status_str(st), fl_last_error());
                goto fail;
            }
        }
    }
    s->nw = o->workers;
    s->idle = o->workers;
    for (int k = 0; k < s->nw; k++) {
        if (pthread_create(&s->w[k].th, NULL, worker_main, &s->w[k])) {
            snprintf(err, errlen, "cannot start worker thread %d", k);
            goto fail;
        }
        s->w[k].started = true;
    }
    if (pthread_create(&s->disp, NULL, dispatch_main, s)) {
        snprintf(err, errlen, "cannot start the dispatcher thread");
        goto fail;
    }
    s->disp_started = true;
    *out = s;
    return 0;
nomem:
    snprintf(err, errlen, "out of memory");
fail:
    srv_free(s);
    return -1;
}

void srv_free(srv *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_broadcast(&s->cv_disp);
    pthread_cond_broadcast(&s->cv_work);
    pthread_mutex_unlock(&s->mu);
    if (s->disp_started) pthread_join(s->disp, NULL);
    for (int k = 0; s->w && k < s->o.workers; k++) {
        worker *w = &s->w[k];
        if (w->started) pthread_join(w->th, NULL);
        for (int i = 0; w->sess && i < s->nmodels; i++) fl_session_free(w->sess[i]);
        free(w->sess);
        free(w->items);
        free(w->x);
        free(w->y);
        free(w->h);
        free(w->c);
        free(w->tok);
        free(w->len);
    }
    for (int i = 0; s->streams && i < s->o.max_streams; i++) {
        free(s->streams[i].h);
        free(s->streams[i].c);
    }
    for (int i = 0; i < s->nmodels; i++) {
        fl_vocab_free(s->models[i].vocab);
        fl_model_free(s->models[i].m);
    }
    free(s->w);
    free(s->streams);
    free(s->est);
    free(s->models);
    pthread_cond_destroy(&s->cv_disp);
    pthread_cond_destroy(&s->cv_work);
    pthread_cond_destroy(&s->cv_drain);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
