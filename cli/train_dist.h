/* Options and reports of `fastlstm train --dist` that are about the network rather than the model:
 * gradient bucket size (overlap), the progress watchdog, and the energy estimate. */
#ifndef FL_CLI_TRAIN_DIST_H
#define FL_CLI_TRAIN_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct cli_dist_opts {
    const char *v_bucket, *v_watchdog, *v_core_w, *v_nj, *v_embed; /* raw flag values or NULL */
    const char *v_warm, *v_tol, *v_min_rank;
    long auto_warmup;   /* --auto-warmup: dense steps before planning (0: default) */
    long auto_min_rank; /* --auto-min-rank: smallest rank the planner tries (0: hidden / 16) */
    double auto_tol;    /* --auto-tol: accepted rise of the check loss (default 0.02) */
    bool sparse_embed;  /* --embed-grad sparse (default) | dense */
    double bucket_mb;   /* --bucket-mb (default FL_DIST_BUCKET_MB_DEFAULT; 0: no overlap) */
    double watchdog_s;  /* --watchdog (default 30; 0: off) */
    double core_w;      /* --energy-core-w / FL_ENERGY_CORE_W: watts per busy core */
    double nj_per_byte; /* --energy-nj-per-byte / FL_ENERGY_NJ_PER_BYTE: network energy per byte */
} cli_dist_opts;

/* Option loop helper: 1 if argv[*i] was one of ours (value consumed), 0 if not, -1 on error. */
int cli_dist_take(const char *cmd, int argc, char **argv, int *i, cli_dist_opts *o);
/* Defaults, environment, then flags; false (already printed) on a bad value. */
bool cli_dist_parse(const char *cmd, cli_dist_opts *o);
void cli_dist_usage(FILE *f);

/* Energy estimate: core-seconds (this process's CPU time, from getrusage, times the number of
 * ranks, which run the same work) x core_w, plus bytes moved over the network (a ring allreduce
 * moves 2 (P - 1) x the message on all links together) x nj_per_byte; or, where the machine has
 * RAPL counters (/sys/class/powercap/intel-rapl:*), the package energy they count instead. */
typedef struct cli_energy {
    double core_w, j_per_byte;
    double cpu0;              /* CPU seconds at start */
    double wall0;             /* wall-clock seconds at start (monotonic) */
    double rapl0;             /* RAPL joules at start, if rapl */
    bool rapl;
    double msg_bytes;         /* allreduce message per step */
    int ranks;
} cli_energy;
void cli_energy_start(cli_energy *e, const cli_dist_opts *o, size_t msg_bytes, int ranks);
/* Joules since start for `steps` steps of all ranks; *cpu_s (may be NULL): core-seconds. */
double cli_energy_joules(const cli_energy *e, long steps, double *cpu_s);
/* Wall-clock seconds since cli_energy_start. */
double cli_energy_wall(const cli_energy *e);
/* "RAPL" or "estimate (W per core, nJ per byte)" for the log. */
void cli_energy_describe(const cli_energy *e, char *buf, size_t n);

#endif
