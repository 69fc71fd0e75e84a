/* Status names, thread-local error detail, invariant failures. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static _Thread_local char last_error[1024];

const char *fl_status_str(fl_status s) {
    switch (s) {
    case FL_OK: return "FL_OK";
    case FL_ERR_NOMEM: return "FL_ERR_NOMEM";
    case FL_ERR_IO: return "FL_ERR_IO";
    case FL_ERR_FORMAT: return "FL_ERR_FORMAT";
    case FL_ERR_SHAPE: return "FL_ERR_SHAPE";
    case FL_ERR_DTYPE: return "FL_ERR_DTYPE";
    case FL_ERR_NONFINITE: return "FL_ERR_NONFINITE";
    case FL_ERR_ARG: return "FL_ERR_ARG";
    case FL_ERR_NUMERIC: return "FL_ERR_NUMERIC";
    case FL_ERR_UNSUPPORTED: return "FL_ERR_UNSUPPORTED";
    case FL_ERR_VERSION: return "FL_ERR_VERSION";
    case FL_ERR_DATA: return "FL_ERR_DATA";
    }
    return "FL_ERR_UNKNOWN";
}

const char *fl_last_error(void) { return last_error; }

const char *fl_version(void) { return "0.1.0"; }

void fl_clear_error(void) { last_error[0] = '\0'; }

fl_status fl_fail(fl_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return s;
}

fl_status fl_set_error(fl_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return s;
}

void fl_assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "fastlstm: internal invariant failed: %s (%s:%d)\n", expr, file, line);
    abort();
}
