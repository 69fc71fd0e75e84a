/* The planner's precision search: which weight matrices to store in bf16 or int8 (fl_plan_opts
 * .precisions says which the search may use). A candidate is (method, rank, precision) per matrix;
 * the precisions of the configuration searched from live in p->prec, which plan.c's prediction
 * (fl_cost_predict_prec: bytes per weight and the profile's measured int8 / bf16 kernel rates) and
 * evaluation read. Every candidate is judged on a model built and quantized exactly as the plan
 * would write it and run by the runtime's int8 / bf16 kernels (plan_build_model), never by a float
 * emulation of the rounding.
 *
 * First pass (before the rank search, on the input's methods): every matrix that can go lower at
 * once, for int8 then bf16 (one evaluation when the budget allows it all); then matrix by matrix,
 * the move with the largest predicted saving per unit of relative quantization error
 * (||W - Q(W)||_F / ||W||_F of the dense matrix), evaluated; a rejected precision (and any with
 * fewer bytes) is not tried again for that matrix. Second pass (after the SVD / CP search, on its
 * result): the same matrix-by-matrix moves for what is left. Precisions only go down in bytes
 * (f32 -> bf16 -> int8); CP factors stay f32. */
#include "plan_state.h"
#include "quantize.h"

#include <math.h>
#include <string.h>

/* Lower precisions, fewest bytes first. */
static const fl_precision lower[2] = {FL_PRECISION_INT8, FL_PRECISION_BF16};

static bool allowed(const fl_plan *p, fl_precision q) { return (p->o.precisions >> q) & 1u; }

/* Whether matrix i (stored as spec s) may move to precision q. */
static bool can_lower(const fl_plan *p, const fl_mat_spec *s, size_t i, fl_precision q) {
    const mat_state *m = &p->ms[i];
    if (!allowed(p, q) || s->method == FL_METHOD_CP) return false;
    if (fl_precision_bytes(q) >= fl_precision_bytes(p->prec[i])) return false;
    return m->prec_fail == FL_PRECISION_F32 || fl_precision_bytes(q) > fl_precision_bytes(m->prec_fail);
}

/* Relative error of storing each matrix's dense form in the lower precisions the search may use. */
static fl_status quant_errors(fl_plan *p) {
    for (size_t i = 0; i < p->nmat; i++) {
        mat_state *s = &p->ms[i];
        const size_t n = (size_t)s->rows * s->cols;
        int8_t *q = fl_malloc(n ? n : 1);
        float *scale = fl_malloc((size_t)s->rows * sizeof(float) + 1);
        if (!q || !scale) {
            fl_free(q), fl_free(scale);
            return fl_fail(FL_ERR_NOMEM, "out of memory measuring the quantization error of %s", s->name);
        }
        double norm = 0, e8 = 0, e16 = 0;
        fl_status st = fl_quant_i8_rows(s->name, s->rows, s->cols, s->dense, s->cols, q, s->cols, scale);
        for (size_t k = 0; k < n && !st; k++) {
            const double w = s->dense[k], d8 = w - (double)scale[k / s->cols] * q[k];
            const double d16 = w - (double)fl_bf16_to_f32(fl_bf16_from_f32(s->dense[k]));
            norm += w * w, e8 += d8 * d8, e16 += d16 * d16;
        }
        fl_free(q), fl_free(scale);
        if (st) return st;
        s->qerr[FL_PRECISION_INT8] = norm > 0 ? sqrt(e8 / norm) : 0;
        s->qerr[FL_PRECISION_BF16] = norm > 0 ? sqrt(e16 / norm) : 0;
    }
    return FL_OK;
}

/* Every matrix that can go to q at once: kept when predicted faster and within the budget.
 * *done: the configuration changed. */
static fl_status all_at_once(fl_plan *p, const fl_mat_spec *cur, fl_precision q, bool *done) {
    *done = false;
    fl_precision *keep = fl_malloc(p->nmat * sizeof *keep);
    if (!keep) return fl_fail(FL_ERR_NOMEM, "out of memory in the precision search");
    memcpy(keep, p->prec, p->nmat * sizeof *keep);
    fl_cost cc, c;
    fl_status st = plan_predict(p, cur, &cc);
    int n = 0;
    for (size_t i = 0; i < p->nmat && !st; i++)
        if (can_lower(p, &cur[i], i, q)) p->prec[i] = q, n++;
    if (!st && n > 1 && !(st = plan_predict(p, cur, &c)) && plan_better(p, &c, &cc)) {
        size_t idx;
        plan_progress(p, "precision: %d matrices in %s at once", n, fl_precision_name(q));
        if (!(st = plan_evaluate(p, cur, NONE, &idx))) *done = p->pts[idx].meets_budget;
    }
    if (!*done) memcpy(p->prec, keep, p->nmat * sizeof *keep);
    fl_free(keep);
    return st;
}

/* One matrix at a time: the best predicted move per unit of quantization error, evaluated; a
 * rejected one is remembered. */
static fl_status one_by_one(fl_plan *p, const fl_mat_spec *cur) {
    fl_status st;
    while (p->evals < p->o.max_evals) {
        fl_cost cc, c;
        if ((st = plan_predict(p, cur, &cc))) return st;
        size_t best_i = NONE;
        fl_precision best_q = FL_PRECISION_F32;
        double best_score = 0;
        for (size_t i = 0; i < p->nmat; i++)
            for (int k = 0; k < 2; k++) {
                const fl_precision q = lower[k], was = p->prec[i];
                if (!can_lower(p, &cur[i], i, q)) continue;
                p->prec[i] = q;
                st = plan_predict(p, cur, &c);
                p->prec[i] = was;
                if (st) return st;
                if (!plan_better(p, &c, &cc)) continue;
                double saved = cc.seconds - c.seconds;
                if (saved < 1e-15) saved = 1e-15;
                double score = saved / (p->ms[i].qerr[q] + 1e-3);
                if (score > best_score) best_score = score, best_i = i, best_q = q;
            }
        if (best_i == NONE) return FL_OK;
        mat_state *s = &p->ms[best_i];
        const fl_precision was = p->prec[best_i];
        p->prec[best_i] = best_q;
        size_t idx;
        if ((st = plan_evaluate(p, cur, best_i, &idx))) return st;
        if (!p->pts[idx].meets_budget) {
            p->prec[best_i] = was;
            s->prec_fail = best_q;
            s->prec_fail_loss = p->pts[idx].loss;
            s->prec_fail_spec = cur[best_i];
        }
    }
    return FL_OK;
}

fl_status plan_search_prec(fl_plan *p, const fl_mat_spec *cur, bool first) {
    fl_status st;
    if (first && (st = quant_errors(p))) return st; /* for the reasons too (a quantized input) */
    if (!(p->o.precisions & ~(1u << FL_PRECISION_F32))) return FL_OK; /* nothing lower to try */
    if (first) {
        for (int k = 0; k < 2 && p->evals < p->o.max_evals; k++) {
            bool done;
            if ((st = all_at_once(p, cur, lower[k], &done))) return st;
            if (done) break;
        }
    }
    return one_by_one(p, cur);
}
