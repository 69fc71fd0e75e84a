/* Internal pieces of the planner: judging a candidate model against the dense one. */
#ifndef FL_PLAN_INTERNAL_H
#define FL_PLAN_INTERNAL_H

#include "internal.h"
#include "fastlstm/plan.h"

typedef struct fl_eval fl_eval;

/* Validate the data against the reference model ref (shape, ranges, finiteness), pick the metric,
 * and compute the reference outputs / metric. Keeps pointers into o->data (borrowed for the life of
 * the evaluator) and to ref. Errors as fl_plan_create. */
fl_status fl_eval_create(const fl_model *ref, const fl_plan_opts *o, fl_eval **out);
void fl_eval_free(fl_eval *e);

fl_plan_metric fl_eval_metric_kind(const fl_eval *e);
double fl_eval_budget(const fl_eval *e);
double fl_eval_ref_metric(const fl_eval *e);

/* Run candidate c (same architecture as the reference) over the data: *metric (accuracy %,
 * perplexity or deviation) and *loss (accuracy points lost, relative perplexity increase, deviation). */
fl_status fl_eval_run(fl_eval *e, const fl_model *c, double *metric, double *loss);

/* Median seconds per time step of fl_session_run on m at (batch, seq) with `threads`, over reps
 * timed runs after one warm-up, on seeded random inputs. */
fl_status fl_plan_time_model(const fl_model *m, int batch, int seq, int threads, int reps, uint64_t seed,
                             double *seconds);

#endif
