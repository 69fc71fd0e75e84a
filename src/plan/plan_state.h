/* The planner's search state, shared by plan.c (search, verification) and plan_certify.c
 * (certification on held-back data, Pareto marks, reasons). Internal. */
#ifndef FL_PLAN_STATE_H
#define FL_PLAN_STATE_H

#include "plan_internal.h"

#include "decomp/decomp.h"

#define NONE ((size_t)-1)
#define MAX_LADDER 64
#define CP_TRIES 3

typedef struct cp_entry {
    int rank;
    float *a, *b, *c; /* (4, R), (H, R), (cols, R) */
    double err;
} cp_entry;

typedef struct mat_state {
    char name[48];
    int rows, cols;
    bool gate;
    float *dense;        /* (rows, cols) reconstruction of the source matrix */
    fl_svd *svd;         /* NULL: all-zero matrix, stays dense */
    int ladder[MAX_LADDER], n_ladder;
    cp_entry *cp;
    int n_cp;
    int floor;           /* highest SVD rank known to break the budget (0: none) */
    fl_mat_spec fail;    /* the last rejected target of this matrix (method DENSE: none) */
    double fail_loss;
    double qerr[3];      /* relative Frobenius error of storing the dense matrix in each precision
                            the search may use (plan_prec.c); 0 for f32 and unused ones */
    fl_precision prec_fail; /* the last precision rejected for this matrix (F32: none) */
    double prec_fail_loss;
    fl_mat_spec prec_fail_spec; /* the method and rank it was rejected at */
} mat_state;

struct fl_plan {
    fl_arch arch;
    size_t nmat;
    fl_profile prof;
    fl_plan_opts o;
    fl_plan_metric kind;
    double budget;
    fl_regime regime;
    int threads, max_threads; /* chosen thread count (the most of any layer); the most tried when planning them */
    int *lt;                  /* [layers] the chosen point's threads per layer (plan_threads.c) */
    int *lt_scratch;          /* [layers] scratch of the per-layer choice (pointee written by const users) */
    fl_bidir_sched bidir_sched; /* the bidirectional layers' measured faster schedule (plan_threads.c);
                                   FL_BIDIR_AUTO: not measured (unidirectional, 1 thread, not timing) */
    fl_step_sched step_sched;   /* the steps' measured faster schedule (plan_threads.c); FL_STEP_AUTO: not
                                   measured (no layer split with 2 rows per thread, not timing) */
    fl_plan_point *pts;
    size_t n_pts, cap_pts, chosen;
    char (*reason)[256];
    fl_model *model;
    /* search state */
    const fl_model *src;
    fl_precision *prec; /* [nmat] the precisions of the configuration searched from: the source
                           model's, lowered by plan_search_prec (plan_prec.c) */
    mat_state *ms;
    fl_eval *ev;    /* search data */
    fl_eval *cev;   /* certify data, or NULL */
    int evals;
    long probe_steps; /* fine-tuning steps per candidate (0: no fine-tuning) */
    fl_plan_certificate cert;
};


/* Helpers of plan.c used by plan_certify.c. */
void plan_progress(fl_plan *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool plan_better(const fl_plan *p, const fl_cost *a, const fl_cost *b);
fl_status plan_build_model(fl_plan *p, const fl_mat_spec *specs, const fl_precision *prec, fl_model **out);
fl_status plan_predict(const fl_plan *p, const fl_mat_spec *specs, fl_cost *c);
fl_status plan_evaluate(fl_plan *p, const fl_mat_spec *specs, size_t changed, size_t *idx);
const char *plan_config_str(const fl_mat_spec *s, fl_precision q, char *buf, size_t n);
fl_status plan_finetune(fl_plan *p, fl_model *m, int epochs, long steps);
const char *plan_spec_str(const fl_mat_spec *s, char *buf, size_t n);
cp_entry *plan_find_cp(mat_state *s, int rank);

/* plan_threads.c: per-layer thread counts. plan_layer_threads: the fastest predicted count of each
 * layer (all opts.threads when given) into lt[layers] and the cost at them into *c;
 * plan_time_setup: set pt's model m to run on those counts (time it with p->o.threads, 0 when
 * planned); plan_choose_threads: the chosen point's
 * counts into p->lt (measured against every uniform count when timing), p->threads the most. */
fl_status plan_layer_threads(const fl_plan *p, const fl_mat_spec *specs, const fl_precision *prec, int batch,
                             int *lt, fl_cost *c);
fl_status plan_time_setup(fl_plan *p, const fl_plan_point *pt, fl_model *m);
fl_status plan_choose_threads(fl_plan *p);

/* plan_prec.c: lower matrices' precisions in cur's configuration (p->prec) where the budget allows
 * and the prediction is faster; first: the pass before the rank search (also tries every matrix at
 * once), else the pass after it (matrices not yet known to fail). */
fl_status plan_search_prec(fl_plan *p, const fl_mat_spec *cur, bool first);

/* plan_certify.c */
fl_status plan_certify(fl_plan *p);
void plan_mark_pareto(fl_plan *p);
void plan_write_reasons(fl_plan *p);

#endif
