/* Shared pieces of the fastlstm command-line tool. Each subcommand lives in cli/cmd_<name>.c as
 * `int cmd_<name>(int argc, char **argv)` (argv[0] is the subcommand name), returns the process exit
 * code, prints its own --help, and reports errors as "fastlstm <cmd>: <detail>" on stderr. */
#ifndef FL_CLI_H
#define FL_CLI_H

#include "fastlstm/fastlstm.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>

/* Exit codes. */
enum { CLI_OK = 0, CLI_ERR = 1, CLI_USAGE = 2 };

/* Print "fastlstm <cmd>: <status name>: <fl_last_error()>" and return CLI_ERR. */
int cli_fail_status(const char *cmd, fl_status st);
/* Print "fastlstm <cmd>: <message>" and return code. */
int cli_fail(const char *cmd, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Strict number parsing: the whole string must be a number in [lo, hi]. On failure prints
 * "fastlstm <cmd>: <flag> expects ..." and returns false. */
bool cli_parse_int(const char *cmd, const char *flag, const char *s, long lo, long hi, long *out);
bool cli_parse_double(const char *cmd, const char *flag, const char *s, double lo, double hi, double *out);

/* For option loops: if argv[*i] equals flag, consume its value into *val (error if missing). Returns
 * 1 matched, 0 not this flag, -1 error (already printed). */
int cli_take(const char *cmd, int argc, char **argv, int *i, const char *flag, const char **val);
/* The one positional argument of a command: arg (not an option) goes into *slot. An unknown option
 * ("-x") or a second positional is refused with a message; returns CLI_OK or CLI_USAGE. */
int cli_positional(const char *cmd, const char *arg, const char **slot);

/* Test inputs for bench and demo: a small deterministic generator (splitmix64; *state is the seed,
 * advanced by each call). Timing uses the library's fl_now_seconds / fl_sort_doubles. */
uint64_t cli_rand_u64(uint64_t *state);
double cli_rand_unit(uint64_t *state); /* [0, 1) */

int cmd_demo(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_decompose(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_compress(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_profile(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_finetune(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_serve(int argc, char **argv);
/* Shared by train and finetune (cli/cmd_train.c). */
int cli_train_main(const char *cmd, int argc, char **argv, bool finetune);
/* Shared by plan and compress (cli/cmd_plan.c): compress also writes the planned model (-o). */
int cli_plan_main(const char *cmd, int argc, char **argv, bool compress);
/* Data options shared by every command (cli/data_opts.c): if argv[*i] is one of role's flags
 * ("data": --data, --labels, --text, --labelled; "train": --train, --train-labels, --train-text,
 * --train-labelled; likewise "valid"; "certify": --certify-data, --certify-labels, ...), consume it
 * into spec. Returns 1 matched, 0 not one of them, -1 error (already printed). */
struct fl_data_spec;
int cli_take_data(const char *cmd, int argc, char **argv, int *i, const char *role, struct fl_data_spec *spec);
/* --level word|char. */
bool cli_parse_level(const char *cmd, const char *s, int *out);
/* Machine profile helpers (cli/cmd_profile.c): load the saved profile at path (NULL: default path)
 * or measure and save it (refresh: always measure); print it; or describe it as JSON (cJSON *). */
struct fl_profile;
int cli_profile_get(const char *cmd, const char *path, bool refresh, bool quiet, struct fl_profile *out);
void cli_profile_print(FILE *f, const struct fl_profile *p, bool detail);

/* OpenBLAS's kernels (cli/blas_core.c): restart once with OPENBLAS_CORETYPE set when OpenBLAS runs
 * kernels below this CPU and the variable is unset; print which kernels run. */
void cli_blas_core_start(char **argv);
void cli_blas_print(FILE *f);
struct cJSON *cli_profile_json(const struct fl_profile *p);

#endif
