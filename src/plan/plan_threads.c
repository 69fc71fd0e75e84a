/* The planner's thread counts, per layer (step 5 of plan.c).
 *
 * With fl_plan_opts.threads = 0 each layer's steps get their own count: the cost model's terms are
 * separate per layer (its W_ih projection, its W_hh steps and cell update run on the layer's threads,
 * the head on the top layer's), so choosing each layer's fastest count from 1 to max_threads, the others fixed,
 * gives the fastest assignment in one pass; ties go to fewer threads. A small decomposed layer then
 * stays on one thread while a large one splits. When the planner times candidates, the chosen one is
 * also timed with its per-layer counts and with every uniform count, and the measured fastest is
 * kept. The chosen model records the counts (fl_model_set_planned_threads: metadata
 * "layer_threads"), and a session created with threads = 0 runs each layer on its own. */
#include "plan_state.h"

#include <string.h>

fl_status plan_layer_threads(const fl_plan *p, const fl_mat_spec *specs, const fl_precision *prec, int batch,
                             int *lt, fl_cost *c) {
    const int L = p->arch.layers;
    if (p->o.threads > 0) {
        for (int l = 0; l < L; l++) lt[l] = p->o.threads;
        return fl_cost_predict_prec(&p->prof, &p->arch, specs, prec, batch, p->o.seq, p->o.threads, c, NULL);
    }
    for (int l = 0; l < L; l++) lt[l] = 1;
    fl_status st = fl_cost_predict_layers(&p->prof, &p->arch, specs, prec, batch, p->o.seq, lt, c, NULL);
    for (int l = 0; l < L && !st; l++) {
        int best = 1;
        for (int t = 2; t <= p->max_threads && !st; t++) {
            fl_cost ct;
            lt[l] = t;
            st = fl_cost_predict_layers(&p->prof, &p->arch, specs, prec, batch, p->o.seq, lt, &ct, NULL);
            if (!st && ct.seconds < c->seconds) *c = ct, best = t;
        }
        lt[l] = best;
    }
    return st;
}

/* Time pt's model m as the plan would run it: each layer on its planned count (threads planned),
 * or on the given count. */
fl_status plan_time_point(fl_plan *p, const fl_plan_point *pt, fl_model *m, double *s) {
    if (p->o.threads > 0) return fl_plan_time_model(m, p->o.batch, p->o.seq, p->o.threads, p->o.verify_reps, p->o.seed, s);
    fl_cost c;
    fl_status st = plan_layer_threads(p, pt->specs, pt->precisions, p->o.batch, p->lt_scratch, &c);
    if (!st) st = fl_model_set_planned_threads(m, p->lt_scratch);
    return st ? st : fl_plan_time_model(m, p->o.batch, p->o.seq, 0, p->o.verify_reps, p->o.seed, s);
}

fl_status plan_choose_threads(fl_plan *p) {
    fl_plan_point *pt = &p->pts[p->chosen];
    const int L = p->arch.layers;
    fl_status st = plan_layer_threads(p, pt->specs, pt->precisions, p->o.batch, p->lt, &pt->cost);
    /* timed (at p->lt, plan_time_point) with threads planned: also time every uniform count */
    if (st || p->o.threads > 0 || p->max_threads < 2 || pt->measured_seconds < 0) goto done;
    fl_model *m;
    if ((st = plan_build_model(p, pt->specs, pt->precisions, &m))) return st;
    int *u = p->lt_scratch;
    for (int t = 1; t <= p->max_threads && !st; t++) {
        bool same = true;
        for (int l = 0; l < L; l++) u[l] = t, same &= p->lt[l] == t;
        if (same) continue;
        double s;
        if (!(st = fl_model_set_planned_threads(m, u)))
            st = fl_plan_time_model(m, p->o.batch, p->o.seq, 0, p->o.verify_reps, p->o.seed, &s);
        if (st) break;
        plan_progress(p, "chosen candidate at %d thread(s) for every layer: measured %.3g us/step", t, s * 1e6);
        fl_cost c;
        if (s < pt->measured_seconds &&
            !(st = fl_cost_predict_prec(&p->prof, &p->arch, pt->specs, pt->precisions, p->o.batch, p->o.seq, t, &c, NULL))) {
            memcpy(p->lt, u, (size_t)L * sizeof(int));
            pt->cost = c;
            pt->measured_seconds = s;
        }
    }
    fl_model_free(m);
done:
    p->threads = 1;
    for (int l = 0; l < L; l++)
        if (p->lt[l] > p->threads) p->threads = p->lt[l];
    return st;
}

int fl_plan_layer_threads(const fl_plan *p, int layer) {
    return p && layer >= 0 && layer < p->arch.layers && p->lt ? p->lt[layer] : 0;
}
