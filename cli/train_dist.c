/* Network-side options and reports of `fastlstm train --dist` (see train_dist.h). */
#include "train_dist.h"

#include "cli.h"

#ifdef FL_WITH_MPI
#include "fastlstm/dist.h"
#define BUCKET_DEFAULT FL_DIST_BUCKET_MB_DEFAULT
#else
#define BUCKET_DEFAULT 4.0
#endif

#include <glob.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double wall_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

double cli_energy_wall(const cli_energy *e) { return wall_seconds() - e->wall0; }

/* Energy constants (docs/distributed.md gives the sources):
 * - 6.25 W per busy core: a server CPU's TDP over its cores, e.g. Intel Xeon Platinum 8480+,
 *   350 W / 56 cores (Intel ARK); a whole-package figure, so it includes uncore and idle share.
 * - 8 nJ per byte on the wire: a 10 GbE NIC port (~5 W) plus a switch port (~5 W) moving
 *   1.25 GB/s at line rate, from vendor data sheets (e.g. Intel X710 and a 48-port 10G switch). */
enum { CORE_W_X100 = 625, NJ_PER_BYTE = 8 };

int cli_dist_take(const char *cmd, int argc, char **argv, int *i, cli_dist_opts *o) {
    int r;
    if ((r = cli_take(cmd, argc, argv, i, "--bucket-mb", &o->v_bucket)) ||
        (r = cli_take(cmd, argc, argv, i, "--watchdog", &o->v_watchdog)) ||
        (r = cli_take(cmd, argc, argv, i, "--energy-core-w", &o->v_core_w)) ||
        (r = cli_take(cmd, argc, argv, i, "--energy-nj-per-byte", &o->v_nj)) ||
        (r = cli_take(cmd, argc, argv, i, "--embed-grad", &o->v_embed)) ||
        (r = cli_take(cmd, argc, argv, i, "--auto-warmup", &o->v_warm)) ||
        (r = cli_take(cmd, argc, argv, i, "--auto-tol", &o->v_tol)) ||
        (r = cli_take(cmd, argc, argv, i, "--auto-min-rank", &o->v_min_rank)))
        return r;
    return 0;
}

bool cli_dist_parse(const char *cmd, cli_dist_opts *o) {
    o->bucket_mb = BUCKET_DEFAULT;
    o->watchdog_s = 30;
    o->core_w = CORE_W_X100 / 100.0;
    o->nj_per_byte = NJ_PER_BYTE;
    o->sparse_embed = !o->v_embed || !strcmp(o->v_embed, "sparse");
    if (o->v_embed && strcmp(o->v_embed, "sparse") && strcmp(o->v_embed, "dense")) {
        cli_fail(cmd, CLI_USAGE, "--embed-grad expects sparse or dense, got '%s'", o->v_embed);
        return false;
    }
    const char *e;
    if ((e = getenv("FL_ENERGY_CORE_W")) && *e && !cli_parse_double(cmd, "FL_ENERGY_CORE_W", e, 0, 1e4, &o->core_w))
        return false;
    if ((e = getenv("FL_ENERGY_NJ_PER_BYTE")) && *e &&
        !cli_parse_double(cmd, "FL_ENERGY_NJ_PER_BYTE", e, 0, 1e6, &o->nj_per_byte))
        return false;
    o->auto_tol = 0.02;
    return !((o->v_warm && !cli_parse_int(cmd, "--auto-warmup", o->v_warm, 1, 1L << 30, &o->auto_warmup)) ||
             (o->v_tol && !cli_parse_double(cmd, "--auto-tol", o->v_tol, 0, 10, &o->auto_tol)) ||
             (o->v_min_rank && !cli_parse_int(cmd, "--auto-min-rank", o->v_min_rank, 1, 1L << 20, &o->auto_min_rank)) ||
             (o->v_bucket && !cli_parse_double(cmd, "--bucket-mb", o->v_bucket, 0, 1024, &o->bucket_mb)) ||
             (o->v_watchdog && !cli_parse_double(cmd, "--watchdog", o->v_watchdog, 0, 86400, &o->watchdog_s)) ||
             (o->v_core_w && !cli_parse_double(cmd, "--energy-core-w", o->v_core_w, 0, 1e4, &o->core_w)) ||
             (o->v_nj && !cli_parse_double(cmd, "--energy-nj-per-byte", o->v_nj, 0, 1e6, &o->nj_per_byte)));
}

void cli_dist_usage(FILE *f) {
    fprintf(f,
            "training planner (--decompose auto):\n"
            "  --auto-warmup N      dense steps that measure compute and link before planning\n"
            "                       (default: a tenth of --max-steps or of an epoch, 2 to 100)\n"
            "  --auto-tol X         accepted relative rise of the validation loss at the switch (0.02)\n"
            "  --auto-min-rank R    smallest rank the planner tries (default hidden / 16); it picks the\n"
            "                       smallest it tries that passes the check: this sets the quality\n"
            "                       of its choice (and the bytes it sends)\n"
            "distributed (with --dist):\n"
            "  --bucket-mb X        reduce gradients in X MiB buckets while backward runs, overlapping\n"
            "                       communication with computation (default %g; 0: one allreduce after)\n"
            "  --embed-grad sparse|dense  reduce only the embedding rows some rank's batch touched\n"
            "                       (default sparse; same result) or the whole embedding\n"
            "  --watchdog S         end the whole job with an error naming the rank and step when a rank\n"
            "                       waits more than S seconds for the others (default 30; 0: off)\n"
            "  --energy-core-w W    watts per busy core for the energy column (default %.2f;\n"
            "                       env FL_ENERGY_CORE_W); RAPL counters are used instead when present\n"
            "  --energy-nj-per-byte E  network energy per byte moved (default %d; env FL_ENERGY_NJ_PER_BYTE)\n",
            BUCKET_DEFAULT, CORE_W_X100 / 100.0, NJ_PER_BYTE);
}

static double cpu_seconds(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

/* Sum of the RAPL package counters in joules; false where there are none (or unreadable). */
static bool rapl_joules(double *j) {
    glob_t g;
    if (glob("/sys/class/powercap/intel-rapl:[0-9]*/energy_uj", 0, NULL, &g) != 0) return false;
    double s = 0;
    bool ok = g.gl_pathc > 0;
    for (size_t k = 0; ok && k < g.gl_pathc; k++) {
        FILE *f = fopen(g.gl_pathv[k], "r");
        unsigned long long uj;
        if (!f || fscanf(f, "%llu", &uj) != 1) ok = false;
        else s += (double)uj * 1e-6;
        if (f) fclose(f);
    }
    globfree(&g);
    if (ok) *j = s;
    return ok;
}

void cli_energy_start(cli_energy *e, const cli_dist_opts *o, size_t msg_bytes, int ranks) {
    memset(e, 0, sizeof *e);
    e->core_w = o->core_w;
    e->j_per_byte = o->nj_per_byte * 1e-9;
    e->cpu0 = cpu_seconds();
    e->wall0 = wall_seconds();
    e->rapl = rapl_joules(&e->rapl0);
    e->msg_bytes = (double)msg_bytes;
    e->ranks = ranks > 0 ? ranks : 1;
}

double cli_energy_joules(const cli_energy *e, long steps, double *cpu_s) {
    const double cores = (cpu_seconds() - e->cpu0) * e->ranks;
    if (cpu_s) *cpu_s = cores;
    const double wire = 2.0 * (e->ranks - 1) * e->msg_bytes * (double)steps * e->j_per_byte;
    double j;
    if (e->rapl && rapl_joules(&j)) return j - e->rapl0 + wire; /* counter wrap ignored: runs are short */
    return cores * e->core_w + wire;
}

void cli_energy_describe(const cli_energy *e, char *buf, size_t n) {
    if (e->rapl) snprintf(buf, n, "RAPL package counters + %.3g nJ/byte on the wire", e->j_per_byte * 1e9);
    else
        snprintf(buf, n, "estimate: %.3g W per busy core (no RAPL counters here) + %.3g nJ/byte on the wire",
                 e->core_w, e->j_per_byte * 1e9);
}
