/* serve_loadgen: an open-loop HTTP load generator for `fastlstm serve` (and its peers), loopback only.
 *
 * Requests are issued on a fixed schedule, t_i = t_0 + i / rate, whatever the server does: a request
 * whose turn comes while every connection is busy waits in a backlog, and its latency is counted from
 * its scheduled time. (Closed-loop tools such as wrk send the next request only after an answer, so a
 * slow server slows the offered load and its queueing delay never shows: coordinated omission.)
 * One thread, epoll, keep-alive connections (at most --connections); each answer is read to the end
 * of its Content-Length. The generator pins itself to one core (--cpu, default the last) and reports
 * its own CPU use, since on a small machine it shares the cores with the server.
 *
 * Output: one line of key=value (offered, throughput, p50/p99/p99.9/max latency in ms, ok, errors,
 * statuses, cpu) for scripts, after a readable summary. The plain percentiles are over the answered
 * 2xx requests; p50_all_ms / p99_all_ms are over every scheduled request, one refused (503) or never
 * answered counting as infinitely late ("inf" once more than 1 - p of them failed), which is what a
 * latency objective sees. */
#define _GNU_SOURCE /* sched_setaffinity, CPU_SET */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct conn {
    int fd;
    bool busy;
    double sched;          /* scheduled time of the request in flight */
    char *buf;             /* response bytes so far */
    size_t len, cap;
    size_t sent, total;    /* request bytes sent / to send */
} conn;

typedef struct gen {
    struct sockaddr_in addr;
    char *req;             /* the whole HTTP request */
    size_t req_len;
    conn *c;
    int nconn, maxconn, ep;
    double *lat;           /* seconds, per completed OK request */
    size_t nlat, cap_lat;
    size_t status[6];      /* 1xx..5xx by hundreds; [0]: connection failures */
    double *bq;            /* backlog of scheduled times (FIFO ring) */
    size_t bq_head, bq_len, bq_cap;
} gen;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void die(const char *msg) {
    fprintf(stderr, "serve_loadgen: %s\n", msg);
    exit(2);
}

static int open_conn(gen *g) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&g->addr, sizeof g->addr) < 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static void watch(gen *g, int i, uint32_t ev, int op) {
    struct epoll_event e = {.events = ev, .data.u32 = (uint32_t)i};
    epoll_ctl(g->ep, op, g->c[i].fd, &e);
}

/* Start the request scheduled at `sched` on connection i (opened if need be). */
static bool start(gen *g, int i, double sched) {
    conn *c = &g->c[i];
    if (c->fd < 0) {
        if ((c->fd = open_conn(g)) < 0) {
            g->status[0]++;
            return false;
        }
        watch(g, i, EPOLLIN, EPOLL_CTL_ADD);
    }
    c->busy = true;
    c->sched = sched;
    c->len = 0;
    c->sent = 0;
    c->total = g->req_len;
    ssize_t k = send(c->fd, g->req, g->req_len, MSG_NOSIGNAL);
    if (k > 0) c->sent = (size_t)k;
    if (c->sent < c->total) watch(g, i, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
    return true;
}

static void reset_conn(gen *g, int i) {
    conn *c = &g->c[i];
    if (c->fd >= 0) {
        epoll_ctl(g->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->busy = false;
}

/* A complete response in c->buf? Returns its status (and whether the server closes), or 0. */
static int complete(conn *c, bool *closes) {
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end) return 0;
    size_t head = (size_t)(end - c->buf) + 4, body = 0;
    int status = 0;
    sscanf(c->buf, "HTTP/1.%*d %d", &status);
    *closes = false;
    for (char *p = c->buf; p < end; p++) {
        if (*p != '\n') continue;
        if (!strncasecmp(p + 1, "Content-Length:", 15)) body = strtoul(p + 16, NULL, 10);
        if (!strncasecmp(p + 1, "Connection: close", 17)) *closes = true;
    }
    return c->len >= head + body ? (status ? status : 599) : 0;
}

static void finished(gen *g, int i, int status, double t) {
    conn *c = &g->c[i];
    g->status[status / 100 <= 5 ? status / 100 : 5]++;
    if (status == 200) {
        if (g->nlat == g->cap_lat) {
            g->cap_lat = g->cap_lat ? 2 * g->cap_lat : 4096;
            g->lat = realloc(g->lat, g->cap_lat * sizeof *g->lat);
            if (!g->lat) die("out of memory");
        }
        g->lat[g->nlat++] = t - c->sched;
    }
    c->busy = false;
}

/* Hand the oldest waiting request to an idle or new connection. */
static void dispatch(gen *g, double t) {
    while (g->bq_len) {
        int idle = -1;
        for (int i = 0; i < g->nconn && idle < 0; i++)
            if (!g->c[i].busy) idle = i;
        if (idle < 0 && g->nconn < g->maxconn) idle = g->nconn++;
        if (idle < 0) return;
        double sched = g->bq[g->bq_head];
        g->bq_head = (g->bq_head + 1) % g->bq_cap;
        g->bq_len--;
        if (!start(g, idle, sched)) reset_conn(g, idle);
    }
    (void)t;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *v, size_t n, double p) {
    if (!n) return 0;
    size_t k = (size_t)(p * (double)(n - 1) + 0.5);
    return v[k < n ? k : n - 1];
}

/* The p-quantile over all `total` scheduled requests, of which the n answered ones took v (sorted);
 * the others count as infinitely late. */
static double pct_all(const double *v, size_t n, size_t total, double p) {
    if (!total) return 0;
    size_t k = (size_t)(p * (double)(total - 1) + 0.5);
    return k < n ? v[k] : INFINITY;
}

static void usage(void) {
    printf("usage: serve_loadgen --port P --path /v1/models/NAME/predict --body FILE [--content-type T]\n"
           "                     --rate R [--duration S] [--connections N] [--cpu K] [--drain S]\n\n"
           "Open-loop load on 127.0.0.1:P: R requests per second on a fixed schedule for S seconds (default 10),\n"
           "the body read from FILE (Content-Type default application/json). Latency is counted from each\n"
           "request's scheduled time. --cpu pins the generator to core K (default the last; -1: no pinning).\n");
}

int main(int argc, char **argv) {
    const char *path = NULL, *body_file = NULL, *ctype = "application/json";
    int port = 0, maxconn = 256, cpu = -2;
    double rate = 0, duration = 10, drain = 10;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(), 0;
        if (!v) die("every option takes a value (see --help)");
        if (!strcmp(a, "--port")) port = atoi(v);
        else if (!strcmp(a, "--path")) path = v;
        else if (!strcmp(a, "--body")) body_file = v;
        else if (!strcmp(a, "--content-type")) ctype = v;
        else if (!strcmp(a, "--rate")) rate = atof(v);
        else if (!strcmp(a, "--duration")) duration = atof(v);
        else if (!strcmp(a, "--connections")) maxconn = atoi(v);
        else if (!strcmp(a, "--cpu")) cpu = atoi(v);
        else if (!strcmp(a, "--drain")) drain = atof(v);
        else die("unknown option (see --help)");
        i++;
    }
    if (port <= 0 || port > 65535 || !path || !body_file || rate <= 0 || duration <= 0 || maxconn < 1)
        die("need --port, --path, --body, --rate > 0 (see --help)");
    FILE *f = fopen(body_file, "rb");
    if (!f) die("cannot open --body");
    fseek(f, 0, SEEK_END);
    long blen = ftell(f);
    fseek(f, 0, SEEK_SET);
    gen g = {0};
    char head[512];
    int hl = snprintf(head, sizeof head,
                      "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: %s\r\nContent-Length: %ld\r\n\r\n", path,
                      ctype, blen);
    g.req_len = (size_t)hl + (size_t)blen;
    g.req = malloc(g.req_len);
    if (!g.req || blen < 0) die("out of memory");
    memcpy(g.req, head, (size_t)hl);
    if (fread(g.req + hl, 1, (size_t)blen, f) != (size_t)blen) die("cannot read --body");
    fclose(f);
    g.addr.sin_family = AF_INET;
    g.addr.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, "127.0.0.1", &g.addr.sin_addr);
    g.maxconn = maxconn;
    g.c = calloc((size_t)maxconn, sizeof *g.c);
    g.bq_cap = (size_t)(rate * duration) + 2;
    g.bq = malloc(g.bq_cap * sizeof *g.bq);
    g.ep = epoll_create1(0);
    if (!g.c || !g.bq || g.ep < 0) die("out of memory");
    for (int i = 0; i < maxconn; i++) g.c[i].fd = -1;

    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpu == -2) cpu = (int)ncpu - 1;
    bool pinned = false;
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        pinned = sched_setaffinity(0, sizeof set, &set) == 0;
    }

    size_t total = (size_t)(rate * duration), issued = 0;
    double t0 = now_s() + 0.05, stop_at = t0 + duration + drain, last_done = t0;
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    struct epoll_event ev[64];
    for (;;) {
        double t = now_s();
        while (issued < total && t0 + (double)issued / rate <= t) {
            g.bq[(g.bq_head + g.bq_len) % g.bq_cap] = t0 + (double)issued / rate;
            g.bq_len++;
            issued++;
        }
        dispatch(&g, t);
        bool busy = g.bq_len > 0;
        for (int i = 0; i < g.nconn && !busy; i++) busy = g.c[i].busy;
        if ((issued == total && !busy) || t > stop_at) break;
        double next = issued < total ? t0 + (double)issued / rate : t + 0.01;
        int wait_ms = next > t ? (int)((next - t) * 1000) : 0;
        int n = epoll_wait(g.ep, ev, 64, wait_ms);
        for (int k = 0; k < n; k++) {
            int i = (int)ev[k].data.u32;
            conn *c = &g.c[i];
            if (c->fd < 0) continue;
            if ((ev[k].events & EPOLLOUT) && c->sent < c->total) {
                ssize_t s = send(c->fd, g.req + c->sent, c->total - c->sent, MSG_NOSIGNAL);
                if (s > 0) c->sent += (size_t)s;
                if (c->sent == c->total) watch(&g, i, EPOLLIN, EPOLL_CTL_MOD);
            }
            if (!(ev[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            for (;;) {
                if (c->len + 65536 > c->cap) {
                    c->cap = c->len + 65536 * 2;
                    if (!(c->buf = realloc(c->buf, c->cap))) die("out of memory");
                }
                ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
                if (r > 0) {
                    c->len += (size_t)r;
                    continue;
                }
                if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
                    if (c->busy) g.status[0]++;
                    reset_conn(&g, i);
                }
                break;
            }
            bool closes;
            int st = c->fd >= 0 && c->busy ? complete(c, &closes) : 0;
            if (st) {
                double tn = now_s();
                finished(&g, i, st, tn);
                last_done = tn;
                if (closes) reset_conn(&g, i);
            }
        }
    }
    getrusage(RUSAGE_SELF, &ru1);
    double wall = (last_done > t0 ? last_done : now_s()) - t0;
    double cpu_s = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) + 1e-6 * (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) +
                   (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) + 1e-6 * (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec);
    size_t answered = 0;
    for (int i = 0; i < 6; i++) answered += g.status[i];
    size_t unfinished = total > answered ? total - answered : 0;
    qsort(g.lat, g.nlat, sizeof *g.lat, cmp);
    double p50 = 1e3 * pct(g.lat, g.nlat, 0.5), p99 = 1e3 * pct(g.lat, g.nlat, 0.99),
           p999 = 1e3 * pct(g.lat, g.nlat, 0.999), mx = g.nlat ? 1e3 * g.lat[g.nlat - 1] : 0;
    double thr = wall > 0 ? (double)g.nlat / wall : 0;
    printf("offered %.1f req/s for %.1f s: %zu ok, throughput %.1f req/s; latency ms p50 %.2f p99 %.2f p99.9 %.2f "
           "max %.2f\n", rate, duration, g.nlat, thr, p50, p99, p999, mx);
    printf("statuses: 2xx %zu, 4xx %zu, 5xx %zu, connection failures %zu, unanswered %zu; generator cpu %.0f%% of one "
           "core (%s)\n", g.status[2], g.status[4], g.status[5], g.status[0], unfinished, 100 * cpu_s / (wall > 0 ? wall : 1),
           pinned ? "pinned" : "not pinned");
    printf("offered=%.1f throughput=%.1f ok=%zu p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f err4xx=%zu err5xx=%zu "
           "connfail=%zu unanswered=%zu gen_cpu=%.3f pinned_cpu=%d p50_all_ms=%.3f p99_all_ms=%.3f\n", rate, thr,
           g.nlat, p50, p99, p999, mx, g.status[4], g.status[5], g.status[0], unfinished, cpu_s / (wall > 0 ? wall : 1),
           pinned ? cpu : -1, 1e3 * pct_all(g.lat, g.nlat, total, 0.5), 1e3 * pct_all(g.lat, g.nlat, total, 0.99));
    for (int i = 0; i < g.nconn; i++) {
        if (g.c[i].fd >= 0) close(g.c[i].fd);
        free(g.c[i].buf);
    }
    free(g.c);
    free(g.bq);
    free(g.lat);
    free(g.req);
    close(g.ep);
    return 0;
}
