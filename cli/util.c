/* Argument parsing, error printing, timing and test inputs shared by the subcommands. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cli_fail_status(const char *cmd, fl_status st) {
    const char *d = fl_last_error();
    fprintf(stderr, "fastlstm %s: %s%s%s\n", cmd, fl_status_str(st), *d ? ": " : "", d);
    return CLI_ERR;
}

int cli_fail(const char *cmd, int code, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "fastlstm %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

bool cli_parse_int(const char *cmd, const char *flag, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        cli_fail(cmd, CLI_USAGE, "%s expects an integer in [%ld, %ld], got '%s'", flag, lo, hi, s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_double(const char *cmd, const char *flag, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) {
        cli_fail(cmd, CLI_USAGE, "%s expects a number in [%g, %g], got '%s'", flag, lo, hi, s);
        return false;
    }
    *out = v;
    return true;
}

int cli_take(const char *cmd, int argc, char **argv, int *i, const char *flag, const char **val) {
    if (strcmp(argv[*i], flag) != 0) return 0;
    if (*i + 1 >= argc) {
        cli_fail(cmd, CLI_USAGE, "%s needs a value (see 'fastlstm %s --help')", flag, cmd);
        return -1;
    }
    *val = argv[++*i];
    return 1;
}

int cli_positional(const char *cmd, const char *arg, const char **slot) {
    if (arg[0] == '-' && arg[1] != '\0')
        return cli_fail(cmd, CLI_USAGE, "unknown option '%s' (see 'fastlstm %s --help')", arg, cmd);
    if (*slot) return cli_fail(cmd, CLI_USAGE, "unexpected argument '%s' (one input only; already given '%s')", arg, *slot);
    *slot = arg;
    return CLI_OK;
}

uint64_t cli_rand_u64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double cli_rand_unit(uint64_t *state) { return (double)(cli_rand_u64(state) >> 11) * 0x1.0p-53; }
