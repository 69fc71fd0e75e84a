/* fastlstm serve: an HTTP inference server with dynamic batching and streams (cli/serve/). This
 * file parses the options, starts the server and waits for SIGTERM / SIGINT, then stops accepting,
 * drains what is queued and exits 0. */
#include "cli.h"
#include "serve/serve.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *CMD = "serve";

static void usage(FILE *f) {
    fprintf(f,
            "usage: fastlstm serve MODEL [MODEL...] [--port P] [--host ADDR] [--threads N] [--max-batch B]\n"
            "                      [--max-delay-us D] [--queue Q] [--slo-ms S] [--max-seq T] [--max-body BYTES]\n"
            "                      [--max-streams N] [--stream-idle-s S] [--client-timeout-s S]\n\n"
            "Serve models over HTTP, each under its file's base name (lm.safetensors -> lm).\n\n"
            "endpoints:\n"
            "  POST   /v1/models/NAME/predict  {\"inputs\": [B][T][D] features or [B][T] token ids,\n"
            "                                   \"lengths\": [B] (optional), \"state\": true (h_n, c_n)}\n"
            "                                  -> {\"outputs\": ...} shaped like `fastlstm run`'s .npy;\n"
            "                                  sequences of any lengths share a batch (each run with its own length);\n"
            "                                  {\"texts\": [\"...\"]} for models with a tokenizer (answer adds \"tokens\");\n"
            "                                  a .npy body (Content-Type: application/x-npy) is answered in .npy\n"
            "  POST   /v1/models/NAME/streams  open a stream -> {\"id\": ...} (not for bidirectional models: 400)\n"
            "  POST   /v1/streams/ID/step      {\"inputs\": [T][D] or [T]} frames -> {\"outputs\": [T][out]}\n"
            "  DELETE /v1/streams/ID           close a stream (idle streams expire)\n"
            "  GET    /v1/models, /healthz, /metrics (Prometheus text)\n\n"
            "options:\n"
            "  --port P             TCP port (default 8080; 0: any free port, printed at start)\n"
            "  --host ADDR          IPv4 address to bind (default 127.0.0.1)\n"
            "  --threads N          worker threads, one session per model each (default and at most: the cores)\n"
            "  --max-batch B        sequences per batch at most, and per request (default 16)\n"
            "  --max-delay-us D     how long a request may wait for others to batch with (default 2000)\n"
            "  --queue Q            queued sequences at most; beyond it 503 + Retry-After (default 256)\n"
            "  --slo-ms S           latency objective: never wait so long that a request misses it (default off)\n"
            "  --max-seq T          time steps per sequence at most (default 256)\n"
            "  --max-body BYTES     request body size at most (default 16777216)\n"
            "  --max-streams N      open streams at most (default 1024)\n"
            "  --stream-idle-s S    close streams idle this long (default 300)\n"
            "  --client-timeout-s S close connections idle this long, e.g. clients that never finish (default 10)\n"
            "  -h, --help           show this help\n\n"
            "SIGTERM or SIGINT: stop accepting, answer what is queued, exit 0.\n\n"
            "example:\n"
            "  fastlstm serve lm.safetensors --port 8080 --max-batch 32 --slo-ms 50\n"
            "  curl -s localhost:8080/v1/models/lm/predict -d '{\"inputs\": [[1, 2, 3]]}'\n");
}

int cmd_serve(int argc, char **argv) {
    const char *v[13] = {0};
    static const char *flags[13] = {"--port", "--host", "--threads", "--max-batch", "--max-delay-us", "--queue",
                                    "--slo-ms", "--max-seq", "--max-body", "--max-streams", "--stream-idle-s",
                                    "--client-timeout-s", NULL};
    char **models = calloc((size_t)argc, sizeof *models);
    int nm = 0;
    if (!models) return cli_fail(CMD, CLI_ERR, "out of memory");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            free(models);
            return CLI_OK;
        }
        int r = 0;
        for (int k = 0; flags[k] && !r; k++) r = cli_take(CMD, argc, argv, &i, flags[k], &v[k]);
        if (r < 0) goto usage_err;
        if (r) continue;
        if (a[0] == '-' && a[1]) {
            cli_fail(CMD, CLI_USAGE, "unknown option '%s' (see 'fastlstm serve --help')", a);
            goto usage_err;
        }
        models[nm++] = argv[i];
    }
    if (!nm) {
        cli_fail(CMD, CLI_USAGE, "give at least one MODEL (see 'fastlstm serve --help')");
        goto usage_err;
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1) cores = 1;
    long port = 8080, threads = cores, batch = 16, delay = 2000, queue = 256, seq = 256, body = 16 << 20,
         streams = 1024, ctimeout = 10;
    double slo = 0, idle = 300;
    if ((v[0] && !cli_parse_int(CMD, "--port", v[0], 0, 65535, &port)) ||
        (v[2] && !cli_parse_int(CMD, "--threads", v[2], 1, 1024, &threads)) ||
        (v[3] && !cli_parse_int(CMD, "--max-batch", v[3], 1, 4096, &batch)) ||
        (v[4] && !cli_parse_int(CMD, "--max-delay-us", v[4], 0, 10000000, &delay)) ||
        (v[5] && !cli_parse_int(CMD, "--queue", v[5], 1, 1000000, &queue)) ||
        (v[6] && !cli_parse_double(CMD, "--slo-ms", v[6], 0, 1e6, &slo)) ||
        (v[7] && !cli_parse_int(CMD, "--max-seq", v[7], 1, 1000000, &seq)) ||
        (v[8] && !cli_parse_int(CMD, "--max-body", v[8], 64, 1L << 34, &body)) ||
        (v[9] && !cli_parse_int(CMD, "--max-streams", v[9], 1, 1000000, &streams)) ||
        (v[10] && !cli_parse_double(CMD, "--stream-idle-s", v[10], 0, 1e9, &idle)) ||
        (v[11] && !cli_parse_int(CMD, "--client-timeout-s", v[11], 1, 86400, &ctimeout)))
        goto usage_err;
    if (threads > cores) {
        fprintf(stderr, "fastlstm serve: --threads %ld is more than the %ld cores: using %ld\n", threads, cores, cores);
        threads = cores;
    }
    srv_opts o = {.host = v[1] ? v[1] : "127.0.0.1", .port = (int)port, .workers = (int)threads,
                  .max_batch = (int)batch, .max_delay_us = delay, .queue = (int)queue, .slo_ms = slo,
                  .max_body = (size_t)body, .max_seq = (int)seq, .max_streams = (int)streams,
                  .stream_idle_s = idle, .client_timeout_s = (unsigned)ctimeout};
    // Block the stop signals in every thread (they inherit the mask); this one takes them with sigwait.
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
    char err[512];
    srv *s = NULL;
    srv_http *h = NULL;
    int bound = 0;
    if (srv_create(&o, models, nm, &s, err, sizeof err) || srv_http_start(s, &h, &bound, err, sizeof err)) {
        srv_free(s);
        free(models);
        return cli_fail(CMD, CLI_ERR, "%s", err);
    }
    printf("fastlstm serve: %d model%s on http://%s:%d (%d workers, max batch %d, max delay %ld us",
           nm, nm > 1 ? "s" : "", o.host, bound, o.workers, o.max_batch, o.max_delay_us);
    if (slo > 0) printf(", SLO %g ms", slo);
    printf(")\n");
    for (int i = 0; i < srv_num_models(s); i++) printf("  /v1/models/%s  <- %s\n", srv_model_at(s, i)->name, models[i]);
    fflush(stdout);
    int sig = 0;
    sigwait(&stop, &sig);
    printf("fastlstm serve: %s: draining\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    fflush(stdout);
    srv_http_quiesce(h);
    srv_drain(s);
    srv_http_wait_idle(h, (double)o.client_timeout_s + 1);
    srv_http_stop(h);
    srv_free(s);
    free(models);
    printf("fastlstm serve: stopped\n");
    return CLI_OK;
usage_err:
    free(models);
    return CLI_USAGE;
}
