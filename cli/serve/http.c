/* fastlstm serve: the HTTP side, on libmicrohttpd (one internal polling thread; connections are
 * suspended while their work is queued, so a slow model never holds the polling thread).
 *
 * A request's life: the first call of the access handler allocates a req (and refuses a body whose
 * Content-Length is over the limit at once: 413); later calls append the body (a chunked body that
 * outgrows the limit is read to its end and discarded, then refused); the last call routes it.
 * GET endpoints answer on the spot. A predict or a step decodes the body (decode.c), submits a job
 * (batcher.c) and suspends the connection; the job's done callback resumes it and the handler,
 * called again, encodes the answer. A job whose client went away is dropped by the dispatcher, and
 * its connection, resumed, is closed without an answer.
 *
 * Routes: POST /v1/models/NAME/predict, POST /v1/models/NAME/streams, POST /v1/streams/ID/step,
 * DELETE /v1/streams/ID, GET /v1/models, GET /healthz, GET /metrics. Errors are JSON
 * {"error": {"code": C, "message": "..."}}; 503 adds Retry-After. */
#include "serve.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { EP_PREDICT, EP_OPEN, EP_STEP, EP_CLOSE, EP_MODELS, EP_HEALTH, EP_METRICS, EP_OTHER, N_EP };
static const char *ep_names[N_EP] = {"predict", "stream_open", "stream_step", "stream_close",
                                     "models",  "healthz",     "metrics",     "other"};
static const int codes[] = {200, 400, 404, 405, 409, 413, 429, 500, 501, 503};
#define N_CODES ((int)(sizeof codes / sizeof codes[0]))

struct srv_http {
    srv *s;
    struct MHD_Daemon *d;
    MHD_socket listen_fd;  /* after quiesce: ours to close */
    atomic_int active;     /* requests between first call and completion */
    atomic_ullong count[N_EP][N_CODES];
};

typedef struct req {
    srv_buf body;
    bool too_big, queued;
    int ep;
    double t0;
    srv_job job;
} req;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void count(srv_http *h, int ep, int code) {
    for (int i = 0; i < N_CODES; i++)
        if (codes[i] == code) atomic_fetch_add(&h->count[ep][i], 1);
}

static enum MHD_Result send_buf(srv_http *h, struct MHD_Connection *c, req *r, int code, const char *type,
                                srv_buf *b) {
    if (b->failed) {
        srv_buf_free(b);
        srv_buf_put(b, "{\"error\":{\"code\":500,\"message\":\"out of memory for the answer\"}}", 62);
        code = 500;
        type = "application/json";
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(b->len, b->p ? b->p : (void *)"", MHD_RESPMEM_MUST_COPY);
    srv_buf_free(b);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (code == 503) MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)code, resp);
    MHD_destroy_response(resp);
    count(h, r->ep, code);
    return ok;
}

static enum MHD_Result send_error(srv_http *h, struct MHD_Connection *c, req *r, const srv_err *e) {
    cJSON *root = cJSON_CreateObject(), *err = cJSON_AddObjectToObject(root, "error");
    cJSON_AddNumberToObject(err, "code", e->code);
    cJSON_AddStringToObject(err, "message", e->msg);
    char *txt = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    srv_buf b = {0};
    if (txt) srv_buf_put(&b, txt, strlen(txt));
    else b.failed = true;
    free(txt);
    return send_buf(h, c, r, e->code, "application/json", &b);
}

static enum MHD_Result send_json(srv_http *h, struct MHD_Connection *c, req *r, int code, cJSON *root) {
    char *txt = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    srv_buf b = {0};
    if (txt) srv_buf_put(&b, txt, strlen(txt));
    else b.failed = true;
    free(txt);
    return send_buf(h, c, r, code, "application/json", &b);
}

/* ---------------------------------------------------------------- GET endpoints */

static enum MHD_Result get_models(srv_http *h, struct MHD_Connection *c, req *r) {
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "models");
    const srv_opts *o = srv_options(h->s);
    for (int i = 0; i < srv_num_models(h->s); i++) {
        const srv_model *M = srv_model_at(h->s, i);
        const fl_arch *a = M->a;
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "name", M->name);
        cJSON_AddStringToObject(m, "inputs", a->vocab > 0 ? "token_ids" : "features");
        cJSON_AddNumberToObject(m, "vocab", a->vocab);
        cJSON_AddNumberToObject(m, "input", a->input);
        cJSON_AddNumberToObject(m, "hidden", a->hidden);
        cJSON_AddNumberToObject(m, "layers", a->layers);
        cJSON_AddBoolToObject(m, "bidirectional", a->bidirectional != 0);
        cJSON_AddNumberToObject(m, "proj", a->proj);
        cJSON_AddBoolToObject(m, "streams", a->bidirectional == 0);
        cJSON_AddStringToObject(m, "head", fl_head_name(a->head));
        cJSON_AddNumberToObject(m, "head_out", a->head_out);
        cJSON_AddBoolToObject(m, "tokenizer", fl_model_tokenizer(M->m) != NULL);
        cJSON_AddNumberToObject(m, "params", (double)fl_model_num_params(M->m));
        cJSON_AddNumberToObject(m, "flops_per_step", (double)fl_model_flops_per_step(M->m));
        cJSON *mats = cJSON_AddArrayToObject(m, "plan");
        for (size_t k = 0; k < fl_model_num_matrices(M->m); k++) {
            fl_matrix_info mi;
            if (fl_model_matrix_info(M->m, k, &mi)) continue;
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "matrix", mi.name);
            cJSON_AddStringToObject(x, "method", fl_method_name(mi.method));
            cJSON_AddNumberToObject(x, "rows", mi.rows);
            cJSON_AddNumberToObject(x, "cols", mi.cols);
            cJSON_AddNumberToObject(x, "rank", mi.rank);
            cJSON_AddNumberToObject(x, "params", (double)mi.params);
            cJSON_AddItemToArray(mats, x);
        }
        cJSON_AddItemToArray(arr, m);
    }
    cJSON *lim = cJSON_AddObjectToObject(root, "limits");
    cJSON_AddNumberToObject(lim, "max_batch", o->max_batch);
    cJSON_AddNumberToObject(lim, "max_seq", o->max_seq);
    cJSON_AddNumberToObject(lim, "max_body", (double)o->max_body);
    cJSON_AddNumberToObject(lim, "max_streams", o->max_streams);
    cJSON_AddNumberToObject(lim, "queue", o->queue);
    return send_json(h, c, r, 200, root);
}

static enum MHD_Result get_metrics(srv_http *h, struct MHD_Connection *c, req *r) {
    srv_buf b = {0};
    srv_buf_printf(&b, "# HELP fastlstm_requests_total Requests answered, by endpoint and status.\n"
                       "# TYPE fastlstm_requests_total counter\n");
    unsigned long long errors = 0;
    for (int e = 0; e < N_EP; e++)
        for (int i = 0; i < N_CODES; i++) {
            unsigned long long v = atomic_load(&h->count[e][i]);
            if (codes[i] >= 400) errors += v;
            if (v) srv_buf_printf(&b, "fastlstm_requests_total{endpoint=\"%s\",code=\"%d\"} %llu\n", ep_names[e], codes[i], v);
        }
    srv_buf_printf(&b, "# HELP fastlstm_errors_total Requests answered with a 4xx or 5xx status.\n"
                       "# TYPE fastlstm_errors_total counter\nfastlstm_errors_total %llu\n", errors);
    srv_metrics(h->s, &b);
    return send_buf(h, c, r, 200, "text/plain; version=0.0.4", &b);
}

/* ---------------------------------------------------------------- predict / streams */

static void job_done(srv_job *j, void *arg) { MHD_resume_connection((struct MHD_Connection *)arg); }

static bool is_npy(struct MHD_Connection *c) {
    const char *t = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    return t && !strncmp(t, "application/x-npy", 17);
}

/* Decode the body for model mi and queue the job; on success the connection is suspended. */
static enum MHD_Result submit(srv_http *h, struct MHD_Connection *c, req *r, int mi, int kind, srv_stream *st) {
    srv_err e = {0};
    const srv_opts *o = srv_options(h->s);
    const srv_model *M = srv_model_at(h->s, mi);
    bool npy = is_npy(c);
    int rc = npy ? srv_decode_npy(r->body.p, r->body.len, M->a, kind == SRV_STEP, o->max_seq, o->max_batch, &r->job.in, &e)
                 : srv_decode_json(r->body.p ? r->body.p : "", r->body.len, M->a, M->vocab, kind == SRV_STEP,
                                   o->max_seq, o->max_batch, &r->job.in, &e);
    if (!rc && npy) r->job.in.state = false;
    r->job.kind = kind;
    r->job.model = mi;
    r->job.stream = st;
    r->job.done = job_done;
    r->job.done_arg = c;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    r->job.fd = ci ? ci->connect_fd : -1;
    if (!rc) rc = srv_submit(h->s, &r->job, &e);
    if (rc) {
        if (st) srv_stream_release(h->s, st);
        r->job.stream = NULL;
        srv_job_release(&r->job);
        return send_error(h, c, r, &e);
    }
    r->queued = true;
    MHD_suspend_connection(c);
    return MHD_YES;
}

static enum MHD_Result answer_job(srv_http *h, struct MHD_Connection *c, req *r) {
    srv_job *j = &r->job;
    if (j->cancelled) return MHD_NO; /* the client is gone: close */
    srv_observe_latency(h->s, now_s() - r->t0);
    if (j->status) return send_error(h, c, r, &j->err);
    const srv_model *M = srv_model_at(h->s, j->model);
    const fl_arch *a = M->a;
    int64_t shape[3], hshape[3] = {M->rows, j->in.B, M->hw}, cshape[3] = {M->rows, j->in.B, M->cw};
    int nd;
    if (j->kind == SRV_STEP) {
        nd = 2;
        shape[0] = j->in.T;
        shape[1] = M->out;
    } else if (a->head == FL_HEAD_LAST_STEP) {
        nd = 2;
        shape[0] = j->in.B;
        shape[1] = a->head_out;
    } else {
        nd = 3;
        shape[0] = j->in.B;
        shape[1] = j->in.T;
        shape[2] = M->out;
    }
    srv_buf b = {0};
    if (is_npy(c)) {
        srv_npy_f32(&b, j->y, nd, shape);
        return send_buf(h, c, r, 200, "application/x-npy", &b);
    }
    srv_buf_printf(&b, "{\"model\":\"%s\",\"outputs\":", M->name);
    srv_json_array(&b, j->y, nd, shape);
    if (j->in.state) {
        srv_buf_put(&b, ",\"h_n\":", 7);
        srv_json_array(&b, j->hn, 3, hshape);
        srv_buf_put(&b, ",\"c_n\":", 7);
        srv_json_array(&b, j->cn, 3, cshape);
    }
    if (j->in.texts) { /* the token ids the texts became: [B][len] ragged ([len] for a step) */
        srv_buf_put(&b, ",\"tokens\":", 10);
        if (j->kind == SRV_PREDICT) srv_buf_put(&b, "[", 1);
        for (int i = 0; i < j->in.B; i++) {
            srv_buf_put(&b, i ? ",[" : "[", i ? 2 : 1);
            for (int t = 0; t < j->in.lengths[i]; t++)
                srv_buf_printf(&b, t ? ",%d" : "%d", (int)j->in.tokens[(size_t)i * j->in.T + t]);
            srv_buf_put(&b, "]", 1);
        }
        if (j->kind == SRV_PREDICT) srv_buf_put(&b, "]", 1);
    }
    srv_buf_put(&b, "}", 1);
    return send_buf(h, c, r, 200, "application/json", &b);
}

/* "/v1/models/NAME/predict" -> NAME in out (false if url does not have that form). */
static bool match(const char *url, const char *pre, const char *post, char *out, size_t n) {
    size_t lp = strlen(pre), ls = strlen(post), lu = strlen(url);
    if (lu <= lp + ls || strncmp(url, pre, lp) || strcmp(url + lu - ls, post)) return false;
    size_t k = lu - lp - ls;
    if (k >= n || memchr(url + lp, '/', k)) return false;
    memcpy(out, url + lp, k);
    out[k] = '\0';
    return true;
}

static enum MHD_Result route(srv_http *h, struct MHD_Connection *c, const char *url, const char *method, req *r) {
    srv_err e = {0};
    char name[128];
    bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST"), del = !strcmp(method, "DELETE");
    if (r->too_big) {
        srv_fail(&e, 413, "body: more than %zu bytes (--max-body)", srv_options(h->s)->max_body);
        return send_error(h, c, r, &e);
    }
    if (!strcmp(url, "/healthz") || !strcmp(url, "/metrics") || !strcmp(url, "/v1/models")) {
        r->ep = url[1] == 'h' ? EP_HEALTH : url[1] == 'm' ? EP_METRICS : EP_MODELS;
        if (!get) return send_error(h, c, r, (srv_fail(&e, 405, "%s takes GET", url), &e));
        if (r->ep == EP_METRICS) return get_metrics(h, c, r);
        if (r->ep == EP_MODELS) return get_models(h, c, r);
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "status", "ok");
        return send_json(h, c, r, 200, root);
    }
    bool is_pred = match(url, "/v1/models/", "/predict", name, sizeof name);
    if (is_pred || match(url, "/v1/models/", "/streams", name, sizeof name)) {
        r->ep = is_pred ? EP_PREDICT : EP_OPEN;
        if (!post) return send_error(h, c, r, (srv_fail(&e, 405, "%s takes POST", url), &e));
        int mi = srv_find_model(h->s, name);
        if (mi < 0) return send_error(h, c, r, (srv_fail(&e, 404, "no model named '%s' (see GET /v1/models)", name), &e));
        if (is_pred) return submit(h, c, r, mi, SRV_PREDICT, NULL);
        char id[24];
        if (srv_stream_open(h->s, mi, id, sizeof id, &e)) return send_error(h, c, r, &e);
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "id", id);
        cJSON_AddStringToObject(root, "model", name);
        return send_json(h, c, r, 200, root);
    }
    if (match(url, "/v1/streams/", "/step", name, sizeof name)) {
        r->ep = EP_STEP;
        if (!post) return send_error(h, c, r, (srv_fail(&e, 405, "%s takes POST", url), &e));
        srv_stream *st;
        int mi;
        if (srv_stream_acquire(h->s, name, &st, &mi, &e)) return send_error(h, c, r, &e);
        return submit(h, c, r, mi, SRV_STEP, st);
    }
    if (!strncmp(url, "/v1/streams/", 12) && url[12] && !strchr(url + 12, '/')) {
        r->ep = EP_CLOSE;
        if (!del) return send_error(h, c, r, (srv_fail(&e, 405, "%s takes DELETE", url), &e));
        if (srv_stream_close(h->s, url + 12, &e)) return send_error(h, c, r, &e);
        cJSON *root = cJSON_CreateObject();
        cJSON_AddBoolToObject(root, "closed", 1);
        return send_json(h, c, r, 200, root);
    }
    r->ep = EP_OTHER;
    return send_error(h, c, r, (srv_fail(&e, 404, "no such endpoint: %s %.100s", method, url), &e));
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    srv_http *h = cls;
    req *r = *con_cls;
    if (!r) {
        if (!(r = calloc(1, sizeof *r))) return MHD_NO;
        r->t0 = now_s();
        r->ep = EP_OTHER;
        r->job.fd = -1;
        *con_cls = r;
        atomic_fetch_add(&h->active, 1);
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > srv_options(h->s)->max_body) {
            r->too_big = true;
            return route(h, c, url, method, r); /* 413 before reading the body; MHD then closes */
        }
        return MHD_YES;
    }
    if (r->queued) return answer_job(h, c, r);
    if (*upload_size) {
        if (!r->too_big && r->body.len + *upload_size <= srv_options(h->s)->max_body)
            srv_buf_put(&r->body, upload, *upload_size);
        else
            r->too_big = true;
        *upload_size = 0;
        if (r->body.failed) return MHD_NO;
        return MHD_YES;
    }
    return route(h, c, url, method, r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    srv_http *h = cls;
    req *r = *con_cls;
    if (!r) return;
    srv_buf_free(&r->body);
    srv_job_release(&r->job);
    free(r);
    *con_cls = NULL;
    atomic_fetch_sub(&h->active, 1);
}

int srv_http_start(srv *s, srv_http **out, int *port, char *err, size_t errlen) {
    const srv_opts *o = srv_options(s);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    if (inet_pton(AF_INET, o->host, &addr.sin_addr) != 1)
        return snprintf(err, errlen, "--host expects an IPv4 address, got '%s'", o->host), -1;
    srv_http *h = calloc(1, sizeof *h);
    if (!h) return snprintf(err, errlen, "out of memory"), -1;
    h->s = s;
    h->listen_fd = MHD_INVALID_SOCKET;
    h->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC,
                            (uint16_t)o->port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, &addr,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_CONNECTION_TIMEOUT,
                            o->client_timeout_s, MHD_OPTION_CONNECTION_LIMIT, (unsigned)1000, MHD_OPTION_END);
    if (!h->d) {
        free(h);
        return snprintf(err, errlen, "cannot listen on %s:%d (in use, or not an address of this machine)", o->host,
                        o->port), -1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    *port = di ? di->port : o->port;
    *out = h;
    return 0;
}

void srv_http_quiesce(srv_http *h) {
    if (h->listen_fd == MHD_INVALID_SOCKET) h->listen_fd = MHD_quiesce_daemon(h->d);
}

void srv_http_wait_idle(srv_http *h, double max_s) {
    double end = now_s() + max_s;
    struct timespec tick = {0, 10000000L};
    while (atomic_load(&h->active) > 0 && now_s() < end) nanosleep(&tick, NULL);
}

void srv_http_stop(srv_http *h) {
    if (!h) return;
    MHD_stop_daemon(h->d);
    if (h->listen_fd != MHD_INVALID_SOCKET) close(h->listen_fd);
    free(h);
}
