/* fastlstm serve: the inference server behind `fastlstm serve` (cli/cmd_serve.c).
 *
 * Pieces, each in its own file, all on the public API (include/fastlstm/):
 *   decode.c   request bodies (JSON, .npy) -> srv_input, and outputs -> JSON / .npy bytes; no I/O,
 *              no threads (the libFuzzer harness tests/fuzz/fuzz_serve_decode.c drives it).
 *   batcher.c  the bounded queue, the dispatcher that forms batches (dynamic batching, length
 *              buckets, the latency objective), the workers (one fl_session per model each, on the
 *              shared fl_model), and the streams table (state kept between steps).
 *   http.c     libmicrohttpd: routing, limits, suspend/resume around queued work, /metrics.
 *
 * Data flow of a predict: http.c reads the body, decode.c checks it against the model and returns
 * (B, T, D) inputs; the job's B sequences enter the queue as B items; the dispatcher gathers items
 * of one model, of any lengths, into a batch; a worker pads them to the batch's longest and runs it
 * with fl_session_run and per-sequence lengths, and scatters the outputs into each job (stream steps
 * are batched by frame count: fl_session_step has no lengths); the last item of a job resumes its HTTP connection,
 * which encodes the answer. Errors inside the server are HTTP statuses with a message (srv_err),
 * not fl_status: they go to a client, not to a caller. */
#ifndef FL_SERVE_H
#define FL_SERVE_H

#include "fastlstm/fastlstm.h"
#include "fastlstm/train.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- limits and options */

typedef struct srv_opts {
    const char *host;      /* address to bind (default 127.0.0.1) */
    int port;              /* 0: an ephemeral port (printed at start) */
    int workers;           /* worker threads, one session per model each (<= cores) */
    int max_batch;         /* largest batch a worker runs */
    long max_delay_us;     /* how long the dispatcher may hold the oldest request to fill a batch */
    int queue;             /* queued sequences at most; beyond: 503 */
    double slo_ms;         /* latency objective (0: none): never wait past it */
    size_t max_body;       /* request body bytes at most (413) */
    int max_seq;           /* time steps per sequence at most (413) */
    int max_streams;       /* open streams at most (429) */
    double stream_idle_s;  /* idle streams expire after this */
    unsigned client_timeout_s; /* a connection idle this long is closed (slow clients) */
} srv_opts;

/* A decoded request body. Sequences are padded to T; lengths (B) gives each one's own length when
 * the request had ragged rows, texts or a "lengths" field, else NULL. Exactly one of x / tokens is
 * set. texts: the tokens came from "texts" (the answer echoes them). */
typedef struct srv_input {
    int B, T, D;         /* D: feature size (0 for token ids) */
    float *x;            /* (B, T, D) features, zero-padded */
    int32_t *tokens;     /* (B, T) token ids, zero-padded */
    int32_t *lengths;    /* (B) in [1, T], or NULL (every sequence T long) */
    bool state;          /* also answer h_n and c_n */
    bool texts;
} srv_input;

/* An error for the client: HTTP status and a message naming the problem. */
typedef struct srv_err {
    int code;
    char msg[256];
} srv_err;

/* Set *e and return e->code (printf-style message). */
int srv_fail(srv_err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---------------------------------------------------------------- decode.c */

/* Decode a JSON body for a model of architecture a. stream: the body is one stream's frames,
 * inputs [T][D] or [T] (B = 1), else a predict: inputs [B][T][D] or [B][T], optional lengths [B]
 * and "state": true. Checks nesting, shapes, numbers (finite, float range; ids integral and in
 * [0, vocab)), and the limits max_seq / max_batch. Instead of "inputs", "texts": [B] strings (one
 * for a stream step) tokenized with vocab (fl_vocab_encode), the model's tokenizer; vocab NULL
 * (the model has none) refuses texts with 400. Returns 0 and fills *out (release with
 * srv_input_free), or an HTTP status with *e filled (and *out zeroed). */
int srv_decode_json(const char *body, size_t n, const fl_arch *a, const fl_vocab *vocab, bool stream, int max_seq,
                    int max_batch, srv_input *out, srv_err *e);

/* Decode a .npy body (format 1.0 / 2.0 / 3.0; <f4 features, <i4 / <i8 ids; C order): (B, T, D) or
 * (B, T) for a predict, (T, D) or (T) for a stream step. Same checks and results as srv_decode_json. */
int srv_decode_npy(const void *body, size_t n, const fl_arch *a, bool stream, int max_seq, int max_batch,
                   srv_input *out, srv_err *e);

void srv_input_free(srv_input *in);

/* A growable byte buffer (malloc'd). */
typedef struct srv_buf {
    char *p;
    size_t len, cap;
    bool failed; /* an allocation failed: the content is incomplete */
} srv_buf;

void srv_buf_put(srv_buf *b, const void *p, size_t n);
void srv_buf_printf(srv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void srv_buf_free(srv_buf *b);

/* Append a float array of ndim dimensions as nested JSON arrays ("%.9g": float32 round-trips). */
void srv_json_array(srv_buf *b, const float *v, int ndim, const int64_t *shape);
/* Append a whole .npy file (format 1.0, <f4, C order) holding v. */
void srv_npy_f32(srv_buf *b, const float *v, int ndim, const int64_t *shape);

/* ---------------------------------------------------------------- batcher.c */

typedef struct srv srv;     /* the server: models, queue, workers, streams, metrics */
typedef struct srv_job srv_job;
typedef struct srv_stream srv_stream;

/* One served model. State sizes come from fl_run_state_size: h is (rows, B, hw) and c (rows, B, cw)
 * with rows = layers x directions, hw the projection size (or hidden), cw hidden. */
typedef struct srv_model {
    char name[64];
    fl_model *m;
    const fl_arch *a;
    fl_vocab *vocab;     /* the model's tokenizer (texts), or NULL */
    int out;             /* floats per step of fl_run_output_size (one step of one sequence) */
    int rows, hw, cw;    /* state layout, as above */
} srv_model;

enum { SRV_PREDICT = 0, SRV_STEP = 1 };

/* A request's work: B sequences (predict) or one stream's T frames (step). Owned by the HTTP
 * request that made it; the queue holds its items until they are run or dropped. */
struct srv_job {
    int kind, model;
    srv_input in;
    srv_stream *stream;  /* SRV_STEP: the stream (marked busy until the job is done) */
    float *y;            /* predict: fl_run_output_size(B, T) floats; step: (T, out) */
    float *hn, *cn;      /* predict with state: (rows, B, hw) and (rows, B, cw) */
    double t_arrive;     /* monotonic seconds */
    int pending;         /* items queued or running; 0: done (resume the connection) */
    bool cancelled;      /* the client went away: queued items were dropped */
    int status;          /* 0 ok, else an HTTP status with err */
    srv_err err;
    int fd;              /* client socket (checked for a hang-up while queued), or -1 */
    void (*done)(srv_job *j, void *arg); /* called once, without the server lock, when pending hits 0 */
    void *done_arg;
    struct srv_item *items; /* (B) queue entries */
    srv_job *next_done;  /* link in the list of jobs finished by one batch */
};

/* Create the server's models, workers and dispatcher (threads start at once). models: paths. */
int srv_create(const srv_opts *o, char **paths, int n, srv **out, char *err, size_t errlen);
/* Stop the threads and free everything. The queue must be empty (see srv_drain). */
void srv_free(srv *s);
const srv_opts *srv_options(const srv *s);
int srv_num_models(const srv *s);
const srv_model *srv_model_at(const srv *s, int i);
int srv_find_model(const srv *s, const char *name);

/* Queue a job (its in, kind, model and stream set; fd and done set). Allocates y / hn / cn.
 * Returns 0, or 503 (queue full, or draining), 500 (out of memory) with *e filled. */
int srv_submit(srv *s, srv_job *j, srv_err *e);
/* Release what srv_submit allocated and the input. */
void srv_job_release(srv_job *j);

/* Streams. */
int srv_stream_open(srv *s, int model, char *id, size_t idlen, srv_err *e);
/* Find a stream by id and mark it busy (409 if it already is, 404 if unknown). */
int srv_stream_acquire(srv *s, const char *id, srv_stream **st, int *model, srv_err *e);
/* Undo srv_stream_acquire without running a step (the request failed before it was queued). */
void srv_stream_release(srv *s, srv_stream *st);
int srv_stream_close(srv *s, const char *id, srv_err *e);

/* Stop taking jobs (srv_submit answers 503) and wait until nothing is queued or running. */
void srv_drain(srv *s);

/* Metrics (Prometheus text) appended to b; http.c adds its request counters. */
void srv_metrics(srv *s, srv_buf *b);
void srv_observe_latency(srv *s, double seconds);

/* ---------------------------------------------------------------- http.c */

typedef struct srv_http srv_http;

/* Start the HTTP daemon (its own polling thread) on opts host:port; *port gets the bound port. */
int srv_http_start(srv *s, srv_http **out, int *port, char *err, size_t errlen);
/* Stop accepting new connections (open ones are still served). */
void srv_http_quiesce(srv_http *h);
/* Wait until no request is being read or answered, at most max_s seconds. */
void srv_http_wait_idle(srv_http *h, double max_s);
/* Stop the daemon (closing every connection) and free h. Accepts NULL. */
void srv_http_stop(srv_http *h);

#endif
