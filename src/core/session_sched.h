/* The schedules of a session's steps: how a bidirectional layer's directions share its threads
 * (fl_bidir_sched) and how a layer direction's steps split over its threads (fl_step_sched). The enums,
 * the session setters and the model's recorded schedules are public (fastlstm.h); the measurements
 * behind them are in session.c's file comment. Internal: the value checks, the metadata values' parsers
 * (model, session, file reader) and the rule that picks a layer direction's step schedule. */
#ifndef FL_SESSION_SCHED_H
#define FL_SESSION_SCHED_H

#include "internal.h"
#include "recurrent.h"

/* Whether s is one of the enum's values (AUTO, PARALLEL, SERIAL). */
static inline bool fl_bidir_sched_valid(fl_bidir_sched s) {
    return s == FL_BIDIR_AUTO || s == FL_BIDIR_PARALLEL || s == FL_BIDIR_SERIAL;
}

/* Whether s is one of the enum's values (AUTO, BLOCKS, ROWS). */
static inline bool fl_step_sched_valid(fl_step_sched s) {
    return s == FL_STEP_AUTO || s == FL_STEP_BLOCKS || s == FL_STEP_ROWS;
}

/* "parallel" / "serial" (the metadata "bidir_schedule" values) into *out; false for anything else. */
bool fl_bidir_sched_parse(const char *name, fl_bidir_sched *out);

/* "blocks" / "rows" (the metadata "step_schedule" values) into *out; false for anything else. */
bool fl_step_sched_parse(const char *name, fl_step_sched *out);

/* Chunks of sorted rows that layer direction ld of m (its step rec, on fl_rec_threads(rec) threads)
 * runs its steps in at batch B: 0 = by blocks. `asked` is the session's fl_step_sched, `recorded` the
 * model's recorded one as the session took it (FL_STEP_AUTO: none). LSTMP layers, the LSTM extras,
 * int8 / bf16 W_hh and one chunk only always run by blocks; asked ROWS runs by rows, asked BLOCKS by
 * blocks; asked AUTO runs the recorded schedule (rows where the batch has FL_ROWS_MIN_PER_THREAD rows
 * per thread, as the planner measured it), else the fixed rule fl_rows_auto (tuning_consts.h). */
int fl_step_rows_chunks(const fl_model *m, int ld, const fl_rec *rec, fl_step_sched asked, fl_step_sched recorded,
                        int B);

#endif
