/* The schedule of a bidirectional layer on 2 or more threads: the enum, fl_session_set_bidir_sched and
 * the model's recorded schedule are public (fastlstm.h); the measurements behind them are in
 * session.c's file comment. Internal: the metadata value's parser, shared by the model file reader. */
#ifndef FL_SESSION_SCHED_H
#define FL_SESSION_SCHED_H

#include "internal.h"

/* "parallel" / "serial" (the metadata "bidir_schedule" values) into *out; false for anything else. */
bool fl_bidir_sched_parse(const char *name, fl_bidir_sched *out);

#endif
