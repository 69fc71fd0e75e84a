/* Certification of the chosen plan on held-back data (a one-sided upper confidence bound on the
 * paired loss; the next best candidate when one fails), then the Pareto marks and the per-matrix
 * reasons that plan and compress print. Split from plan.c, which searches and verifies. */
#include "plan_state.h"
#include "train/train_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static bool cert_before(const fl_plan *p, size_t a, size_t b) {
    if (a == p->chosen || b == p->chosen) return a == p->chosen;
    const fl_plan_point *x = &p->pts[a], *y = &p->pts[b];
    if (x->measured_seconds >= 0 && y->measured_seconds >= 0) return x->measured_seconds < y->measured_seconds;
    return plan_better(p, &x->cost, &y->cost);
}

/* Certify the chosen candidate on the held-back data; pass over failing ones to the next best
 * meeting the budget on the search data (at most certify_tries); none: the input model (point 0).
 * With fine-tuning, each one tried is fine-tuned fully first and becomes the plan's model. */
fl_status plan_certify(fl_plan *p) {
    fl_plan_certificate *c = &p->cert;
    for (size_t i = 0; i < p->n_pts; i++) {
        p->pts[i].certified = -1;
        p->pts[i].cert_metric = p->pts[i].cert_loss = p->pts[i].cert_se = p->pts[i].cert_bound = NAN;
    }
    if (!p->cev) return FL_OK;
    c->available = 1;
    c->confidence = p->o.confidence;
    c->z = fl_normal_quantile(p->o.confidence);
    c->count = fl_eval_count(p->cev);
    c->dense_metric = fl_eval_ref_metric(p->cev);
    size_t first = p->chosen;
    bool *tried = fl_calloc(p->n_pts, sizeof *tried);
    if (!tried) return fl_fail(FL_ERR_NOMEM, "out of memory certifying the plan");
    fl_status st = FL_OK;
    size_t win = NONE;
    /* with fine-tuning each try is a full fine-tune: at most two keep the whole near 3 of them */
    int tries = p->probe_steps > 0 && p->o.certify_tries > 2 ? 2 : p->o.certify_tries;
    for (int k = 0; k < tries && win == NONE && !st; k++) {
        size_t next = NONE;
        for (size_t i = 1; i < p->n_pts; i++)
            if (!tried[i] && p->pts[i].meets_budget && (next == NONE || cert_before(p, i, next))) next = i;
        if (next == NONE) break;
        tried[next] = true;
        fl_plan_point *pt = &p->pts[next];
        fl_model *m = NULL;
        double t0 = fl_now_seconds();
        if (!(st = plan_build_model(p, pt->specs, pt->precisions, &m)) && p->probe_steps > 0) {
            plan_progress(p, "fine-tuning candidate %zu for %d epoch(s)", next, p->o.finetune_epochs);
            st = plan_finetune(p, m, p->o.finetune_epochs, 0);
            c->finetune_seconds += fl_now_seconds() - t0;
        }
        fl_eval_cert ec;
        if (!st) st = fl_eval_certify(p->cev, m, c->z, &ec);
        if (!st) {
            c->tried++;
            pt->cert_metric = ec.metric, pt->cert_loss = ec.loss, pt->cert_se = ec.se, pt->cert_bound = ec.bound;
            pt->certified = ec.bound <= p->budget;
            plan_progress(p, "certify candidate %zu on %zu held-back %s: loss %.4g (se %.3g), %g%% bound %.4g %s %g",
                     next, c->count, p->kind == FL_METRIC_PERPLEXITY ? "tokens" : "sequences", ec.loss, ec.se,
                     100 * c->confidence, ec.bound, pt->certified ? "<=" : ">", p->budget);
            if (pt->certified) {
                win = next;
                if (p->probe_steps > 0) p->model = m, m = NULL; /* the fine-tuned model is the plan */
            }
        }
        fl_model_free(m);
    }
    fl_free(tried);
    if (st) return st;
    if (win == NONE) { /* the input model: its paired loss is 0 by definition */
        win = 0;
        fl_plan_point *pt = &p->pts[0];
        pt->cert_metric = c->dense_metric, pt->cert_loss = pt->cert_se = pt->cert_bound = 0;
        pt->certified = 0;
        plan_progress(p, "no compressed candidate certified within the budget (first tried: %zu); keeping the input "
                    "model", first);
    }
    c->certified = win != 0;
    p->chosen = win;
    return FL_OK;
}

void plan_mark_pareto(fl_plan *p) {
    for (size_t i = 0; i < p->n_pts; i++) {
        const fl_plan_point *a = &p->pts[i];
        bool dominated = false;
        for (size_t j = 0; j < p->n_pts && !dominated; j++) {
            const fl_plan_point *b = &p->pts[j];
            dominated = j != i && b->cost.seconds <= a->cost.seconds && b->loss <= a->loss &&
                        (b->cost.seconds < a->cost.seconds || b->loss < a->loss);
        }
        p->pts[i].pareto = !dominated;
    }
}

/* The precision part of matrix i's reason, around the method's text r (len characters of n). */
static void write_precision_reason(const fl_plan *p, size_t i, char *r, size_t n, int len) {
    const mat_state *s = &p->ms[i];
    const fl_precision q = p->pts[p->chosen].precisions[i];
    if (len < 0 || (size_t)len >= n) return;
    if (q != FL_PRECISION_F32) {
        char head[96], tail[256];
        snprintf(head, sizeof head, "%s (%zu byte(s) per weight, rel. quantization error %.3g): ",
                 fl_precision_name(q), fl_precision_bytes(q), s->qerr[q]);
        snprintf(tail, sizeof tail, "%s", r);
        len = snprintf(r, n, "%s%s", head, tail);
        if (len < 0 || (size_t)len >= n) return;
    }
    if (s->prec_fail != FL_PRECISION_F32) {
        char f[48];
        snprintf(r + len, n - (size_t)len, "; %s broke the budget (loss %.4g)",
                 plan_config_str(&s->prec_fail_spec, s->prec_fail, f, sizeof f), s->prec_fail_loss);
    }
}

void plan_write_reasons(fl_plan *p) {
    const fl_mat_spec *sp = p->pts[p->chosen].specs;
    const char *bound = p->regime == FL_REGIME_MEMORY ? "memory-bound: fewer bytes per step"
                                                      : "compute-bound: fewer flops per step";
    for (size_t i = 0; i < p->nmat; i++) {
        mat_state *s = &p->ms[i];
        char *r = p->reason[i], f[32];
        size_t n = sizeof p->reason[i], dense = (size_t)s->rows * s->cols;
        int len = 0;
        switch (sp[i].method) {
        case FL_METHOD_DENSE:
            if (!s->svd) len = snprintf(r, n, "dense: all-zero matrix");
            else if (s->n_ladder == 0) len = snprintf(r, n, "dense: no rank stores fewer parameters");
            else if (s->fail.method != FL_METHOD_DENSE)
                len = snprintf(r, n, "dense: %s already breaks the budget (loss %.4g > %.4g)",
                               plan_spec_str(&s->fail, f, sizeof f), s->fail_loss, p->budget);
            else len = snprintf(r, n, "dense: no faster candidate within budget was found");
            break;
        case FL_METHOD_SVD: {
            size_t np = (size_t)sp[i].rank * (s->rows + s->cols);
            len = snprintf(r, n, "svd rank %d: %.1f%% of dense parameters, rel. error %.3g (%s)",
                           sp[i].rank, 100.0 * np / dense, fl_svd_error(s->svd, sp[i].rank), bound);
            break;
        }
        case FL_METHOD_CP: {
            cp_entry *e = plan_find_cp(s, sp[i].rank);
            size_t np = (size_t)sp[i].rank * (4 + s->rows / 4 + s->cols);
            len = snprintf(r, n, "cp rank %d: %.1f%% of dense parameters, fewer than the SVD alternative "
                                 "within budget, rel. error %.3g (%s)",
                           sp[i].rank, 100.0 * np / dense, e ? e->err : -1.0, bound);
            break;
        }
        }
        if (sp[i].method != FL_METHOD_DENSE && s->fail.method != FL_METHOD_DENSE && len > 0 &&
            (size_t)len < n)
            len += snprintf(r + len, n - (size_t)len, "; %s broke the budget (loss %.4g)",
                            plan_spec_str(&s->fail, f, sizeof f), s->fail_loss);
        write_precision_reason(p, i, r, n, len);
    }
}

