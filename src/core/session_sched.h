/* The schedule of a bidirectional layer on 2 or more threads: the enum, fl_session_set_bidir_sched and
 * the model's recorded schedule are public (fastlstm.h); the measurements behind them are in
 * session.c's file comment. Internal: the value check and the metadata value's parser (model, session, file reader). */
#ifndef FL_SESSION_SCHED_H
#define FL_SESSION_SCHED_H

#include "internal.h"

/* Whether s is one of the enum's values (AUTO, PARALLEL, SERIAL). */
static inline bool fl_bidir_sched_valid(fl_bidir_sched s) {
    return s == FL_BIDIR_AUTO || s == FL_BIDIR_PARALLEL || s == FL_BIDIR_SERIAL;
}

/* "parallel" / "serial" (the metadata "bidir_schedule" values) into *out; false for anything else. */
bool fl_bidir_sched_parse(const char *name, fl_bidir_sched *out);

#endif
