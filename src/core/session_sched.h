/* The schedule of a bidirectional layer on 2 or more threads (session.c; the measurements that chose
 * the default are in its file comment). Internal (not installed): tests and benchmarks force the
 * other schedule to compare the two. */
#ifndef FL_SESSION_SCHED_H
#define FL_SESSION_SCHED_H

#include "internal.h"

typedef enum fl_bidir_sched {
    FL_BIDIR_PARALLEL = 0, /* the default: the two directions at once, each on half of the layer's threads */
    FL_BIDIR_SERIAL = 1,   /* the directions in turn, each on all of the layer's threads (as a unidirectional
                              layer runs): fl_recs of their own, made by this call, sharing the packed weights */
} fl_bidir_sched;

/* Sets the schedule of every later fl_session_run of s; results are bit-identical whichever runs.
 * FL_BIDIR_SERIAL starts each layer direction's own worker threads (freed by FL_BIDIR_PARALLEL or
 * fl_session_free). FL_ERR_ARG for a NULL session or an unknown schedule; FL_ERR_NOMEM (nothing
 * changed) when the threads or their scratch cannot be had. */
fl_status fl_session_set_bidir_sched(fl_session *s, fl_bidir_sched sched);

#endif
