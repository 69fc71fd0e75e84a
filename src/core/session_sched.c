/* The schedules' names, parsers and the step schedule's rule (session_sched.h). */
#include "session_sched.h"
#include "tuning_consts.h"

#include <string.h>

const char *fl_bidir_sched_name(fl_bidir_sched sched) {
    switch (sched) {
    case FL_BIDIR_AUTO: return "auto";
    case FL_BIDIR_PARALLEL: return "parallel";
    case FL_BIDIR_SERIAL: return "serial";
    }
    return "unknown";
}

bool fl_bidir_sched_parse(const char *name, fl_bidir_sched *out) {
    if (!strcmp(name, "parallel")) *out = FL_BIDIR_PARALLEL;
    else if (!strcmp(name, "serial")) *out = FL_BIDIR_SERIAL;
    else return false;
    return true;
}

const char *fl_step_sched_name(fl_step_sched sched) {
    switch (sched) {
    case FL_STEP_AUTO: return "auto";
    case FL_STEP_BLOCKS: return "blocks";
    case FL_STEP_ROWS: return "rows";
    }
    return "unknown";
}

bool fl_step_sched_parse(const char *name, fl_step_sched *out) {
    if (!strcmp(name, "blocks")) *out = FL_STEP_BLOCKS;
    else if (!strcmp(name, "rows")) *out = FL_STEP_ROWS;
    else return false;
    return true;
}

int fl_step_rows_chunks(const fl_model *m, int ld, const fl_rec *rec, fl_step_sched asked, fl_step_sched recorded,
                        int B) {
    const fl_layer *ly = &m->layer[ld];
    const int nt = fl_rec_threads(rec), n = nt < B ? nt : B;
    const fl_step_sched sched = asked == FL_STEP_AUTO ? recorded : asked;
    if (sched == FL_STEP_BLOCKS || n < 2 || m->ext || ly->whr.rows > 0 || !fl_rec_rows_ok(rec)) return 0;
    if (asked == FL_STEP_ROWS) return n;
    const double whh = (double)fl_mat_params(&ly->whh) * sizeof(float); /* bytes every thread streams per step */
    if (sched == FL_STEP_ROWS) return B >= FL_ROWS_MIN_PER_THREAD * nt ? n : 0; /* recorded: measured faster */
    return fl_rows_auto(B, nt, whh, ly->whh.method == FL_METHOD_DENSE) ? n : 0;
}
