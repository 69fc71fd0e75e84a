/* The planner: choose method, rank and precision per weight matrix.
 *
 * 0. Precision (plan_prec.c, only with fl_plan_opts.precisions): before step 2, matrices move to
 *    bf16 / int8 where predicted faster and the budget allows (all at once, then one by one), each
 *    candidate judged on the model quantized as it would be written; step 2 and 3 then search ranks
 *    on top of those precisions (an SVD's factors are quantized too, CP stays f32), and a last pass
 *    tries again for what is left.
 * 1. Reconstruct every weight matrix densely and compute its SVD once (decomp.h); a truncation to
 *    any rank is then cheap and its relative Frobenius error is known from the singular values.
 * 2. Seed: a uniform error tolerance tau for all matrices (each at the smallest rung with truncation
 *    error <= tau), the largest tau of a short list that meets the budget, by binary search.
 *    Greedy search from there (or from the all-dense model). Each matrix has a ladder of SVD ranks (1, 2, 3, 4, 6,
 *    8, 12, ..., powers of two and 3 * 2^k) that store fewer parameters than dense. A move lowers one
 *    matrix to a lower rung; its score is the predicted latency saved (fl_cost_predict) per unit of
 *    added truncation error. The best move is evaluated on the real model (validation data or the
 *    deviation on random inputs). Kept if it meets the budget; otherwise a binary search over the rungs
 *    between the failing rank and the matrix's current one finds the lowest rank that meets it, and
 *    the matrix goes no lower.
 * 3. In the memory-bound regime, gate matrices with an SVD rank r then try CP ranks R >= r that store
 *    fewer parameters (CP-ALS with capped sweeps, at most three ranks per matrix).
 * 4. The best predicted candidates meeting the budget and the dense model are timed for real; the
 *    measured winner among those meeting the budget is chosen (without timing: the best predicted).
 *    Ties in predicted latency go to fewer parameters (memory-bound) or fewer flops (compute-bound).
 * 5. Threads: with opts.threads = 0 every candidate is predicted with each layer on its fastest
 *    count of 1 to max_threads (the cost model knows which parts the runtime splits and what the
 *    fork / join costs, cost.c; plan_threads.c) and timed on those counts; the winner is also timed
 *    with every uniform count and the measured fastest kept. The chosen model records the counts
 *    (metadata "layer_threads"), so a session created with threads = 0 runs each layer on its own.
 * 6. Certification (see plan.h): steps 2-4 judge candidates on the search part of the data only;
 *    the chosen one, then the next best, is certified on held-back data by a one-sided upper
 *    confidence bound on its paired loss. With fine-tuning, every evaluation above first fine-tunes
 *    the candidate briefly on the training data, and the candidate put to certification is
 *    fine-tuned fully. */
#include "plan_internal.h"
#include "qmat.h"

#include "decomp/decomp.h"
#include "train/train_internal.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "plan_state.h"

void plan_progress(fl_plan *p, const char *fmt, ...) {
    if (!p->o.progress) return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    p->o.progress(p->o.progress_ctx, buf);
}

fl_plan_opts fl_plan_opts_default(void) {
    return (fl_plan_opts){.batch = 1, .seq = 35, .threads = 1, .max_loss = NAN, .max_dev = 0.05,
                          .dev_samples = 16, .allow_cp = 1, .cp_max_iter = 40, .max_evals = 200,
                          .verify = 3, .verify_reps = 5, .seed = 1, .certify_fraction = 0.5,
                          .confidence = 0.9, .certify_tries = 4, .finetune_epochs = 1};
}

/* ------------------------------------------------------------ candidates */

/* Predicted cost at `batch`: at the given thread count, or (threads planned) each layer on its
 * fastest count of 1 to max_threads, ties to fewer threads (plan_threads.c). */
static fl_status predict_at(const fl_plan *p, const fl_mat_spec *specs, const fl_precision *prec, int batch,
                            fl_cost *c) {
    return plan_layer_threads(p, specs, prec, batch, p->lt_scratch, c);
}

/* At the serving batch, with the matrices in the current precisions p->prec. */
fl_status plan_predict(const fl_plan *p, const fl_mat_spec *specs, fl_cost *c) {
    return predict_at(p, specs, p->prec, p->o.batch, c);
}

/* a strictly better than b: lower predicted latency; near-ties go to fewer parameters
 * (memory-bound) or fewer flops (compute-bound). */
bool plan_better(const fl_plan *p, const fl_cost *a, const fl_cost *b) {
    double tol = 1e-9 * (a->seconds > b->seconds ? a->seconds : b->seconds);
    if (a->seconds < b->seconds - tol) return true;
    if (a->seconds > b->seconds + tol) return false;
    if (p->regime == FL_REGIME_MEMORY)
        return a->params < b->params || (a->params == b->params && a->step_flops < b->step_flops);
    return a->step_flops < b->step_flops || (a->step_flops == b->step_flops && a->params < b->params);
}

/* The precision matrix i is stored in under spec s: CP factors stay f32. */
static fl_precision stored_prec(const fl_mat_spec *s, fl_precision q) {
    return s->method == FL_METHOD_CP ? FL_PRECISION_F32 : q;
}

static bool same_config(const fl_plan *p, const fl_mat_spec *a, const fl_precision *pa, const fl_mat_spec *b,
                        const fl_precision *pb) {
    for (size_t i = 0; i < p->nmat; i++)
        if (a[i].method != b[i].method || (a[i].method != FL_METHOD_DENSE && a[i].rank != b[i].rank) ||
            stored_prec(&a[i], pa[i]) != stored_prec(&b[i], pb[i]))
            return false;
    return true;
}

static size_t find_point(const fl_plan *p, const fl_mat_spec *specs, const fl_precision *prec) {
    for (size_t i = 0; i < p->n_pts; i++)
        if (same_config(p, p->pts[i].specs, p->pts[i].precisions, specs, prec)) return i;
    return NONE;
}

cp_entry *plan_find_cp(mat_state *s, int rank) {
    for (int k = 0; k < s->n_cp; k++)
        if (s->cp[k].rank == rank) return &s->cp[k];
    return NULL;
}

/* Rank-R CP factors of matrix i, computed once. */
static fl_status get_cp(fl_plan *p, size_t i, int R, cp_entry **out) {
    mat_state *s = &p->ms[i];
    if ((*out = plan_find_cp(s, R))) return FL_OK;
    const int H = s->rows / 4, N = s->cols;
    cp_entry *grown = fl_calloc((size_t)s->n_cp + 1, sizeof *grown);
    if (!grown) return fl_fail(FL_ERR_NOMEM, "out of memory for CP factors");
    if (s->n_cp) memcpy(grown, s->cp, (size_t)s->n_cp * sizeof *grown);
    fl_free(s->cp);
    s->cp = grown;
    cp_entry *e = &s->cp[s->n_cp];
    e->rank = R;
    e->a = fl_malloc((size_t)(4 + H + N) * R * sizeof(float));
    if (!e->a) return fl_fail(FL_ERR_NOMEM, "out of memory for CP factors");
    e->b = e->a + (size_t)4 * R;
    e->c = e->b + (size_t)H * R;
    fl_cp_opts co = fl_cp_opts_default();
    co.max_iter = p->o.cp_max_iter;
    co.seed = p->o.seed;
    fl_cp_report rep;
    plan_progress(p, "CP-ALS rank %d of %s (%dx%d, at most %d sweeps)", R, s->name, s->rows, s->cols,
             co.max_iter);
    fl_status st = fl_cp_als(s->dense, H, N, R, &co, e->a, e->b, e->c, &rep);
    if (st) {
        fl_free(e->a);
        return st;
    }
    e->err = rep.rel_error;
    s->n_cp++;
    plan_progress(p, "CP-ALS rank %d of %s: rel. error %.3g after %d sweeps", R, s->name, e->err, rep.iterations);
    *out = e;
    return FL_OK;
}

/* Build the model with matrices stored as specs in precisions prec (all factors must be cached). */
fl_status plan_build_model(fl_plan *p, const fl_mat_spec *specs, const fl_precision *prec, fl_model **out) {
    fl_model *m;
    fl_status st = fl_model_create(&p->arch, specs, &m);
    if (st) return st;
    const fl_model *src = p->src;
    for (size_t k = 0; k < src->n_tensors; k++) { /* embedding and biases */
        const fl_tensor *t = &src->tensors[k];
        if (!strncmp(t->name, "lstm.weight", 11) || !strncmp(t->name, "head.weight", 11)) continue;
        const fl_tensor *d = fl_model_find_tensor(m, t->name);
        FL_ASSERT(d && d->count == t->count);
        memcpy(m->params + d->offset, src->params + t->offset, t->count * sizeof(float));
    }
    for (size_t i = 0; i < p->nmat && !st; i++) {
        fl_mat *w = fl_model_mat(m, i);
        mat_state *s = &p->ms[i];
        switch (specs[i].method) {
        case FL_METHOD_DENSE:
            memcpy(w->w, s->dense, (size_t)s->rows * s->cols * sizeof(float));
            w->rel_error = 0;
            break;
        case FL_METHOD_SVD:
            st = fl_svd_truncate(s->svd, specs[i].rank, w->u, w->v);
            w->rel_error = fl_svd_error(s->svd, specs[i].rank);
            break;
        case FL_METHOD_CP: {
            cp_entry *e = plan_find_cp(s, specs[i].rank);
            FL_ASSERT(e);
            int R = e->rank, H = s->rows / 4;
            memcpy(w->a, e->a, (size_t)4 * R * sizeof(float));
            memcpy(w->b, e->b, (size_t)H * R * sizeof(float));
            memcpy(w->c, e->c, (size_t)s->cols * R * sizeof(float));
            w->rel_error = e->err;
            break;
        }
        }
    }
    /* Quantize (CP stays f32), so the accuracy is judged with the int8 / bf16 kernels the planned
     * model will run, on exactly the weights it will hold. */
    for (size_t i = 0; i < p->nmat && !st; i++) {
        fl_mat_desc d;
        fl_arch_matrix(&p->arch, i, &d);
        if (stored_prec(&specs[i], prec[i]) != FL_PRECISION_F32)
            st = fl_mat_quantize(fl_model_mat(m, i), prec[i], d.name);
    }
    if (!st && src->tokenizer) {
        size_t n = strlen(src->tokenizer) + 1;
        if (!(m->tokenizer = fl_malloc(n))) st = fl_fail(FL_ERR_NOMEM, "out of memory copying the tokenizer");
        else memcpy(m->tokenizer, src->tokenizer, n);
    }
    if (st) {
        fl_model_free(m);
        return st;
    }
    *out = m;
    return FL_OK;
}

#define PLAN_WARMUP 50 /* most steps of a fine-tune's linear warm-up of the rate */

/* Training options of the planner's fine-tuning when the caller gives none: training's defaults
 * at the fine-tuning rate FL_PLAN_FINETUNE_LR (why: plan.h). */
static fl_train_opts plan_train_default(void) {
    fl_train_opts to = fl_train_opts_default();
    to.lr = (float)FL_PLAN_FINETUNE_LR;
    return to;
}

/* Linear warm-up of the rate over the first `n` steps of a fine-tune (Adam starts with empty
 * moments, so its first steps are the largest relative to the gradient): step k (from 1) runs at
 * lr * min(1, k / n). Set after each step for the next one. */
typedef struct warmup {
    fl_trainer *t;
    double lr;
    long n;
} warmup;

static int warmup_step(const fl_train_progress *pr, void *user) {
    warmup *w = user;
    long next = pr->step + 1;
    w->t->lr = next >= w->n ? w->lr : w->lr * (double)next / (double)w->n;
    return 0;
}

/* Fine-tune m in place on the training data: `epochs` full epochs, or `steps` steps when > 0;
 * the first tenth of the steps (at most PLAN_WARMUP) warm the rate up linearly. */
fl_status plan_finetune(fl_plan *p, fl_model *m, int epochs, long steps) {
    fl_train_opts to = p->o.train ? *p->o.train : plan_train_default();
    fl_trainer *t;
    fl_status st = fl_trainer_create(m, &to, &t);
    if (st) return st;
    fl_train_run r = {.train = p->o.finetune, .epochs = steps > 0 ? INT_MAX / 2 : epochs, .max_steps = steps};
    long total = steps;
    if (steps <= 0 && !(st = fl_trainer_epoch_steps(t, p->o.finetune, &total))) total *= epochs;
    warmup w = {t, t->lr, total / 10 < PLAN_WARMUP ? total / 10 : PLAN_WARMUP};
    if (w.n > 1) {
        t->lr = w.lr / (double)w.n;
        r.callback = warmup_step;
        r.user = &w;
    }
    if (!st) st = fl_trainer_run(t, &r);
    fl_trainer_free(t);
    return st ? st : fl_model_requantize(m); /* a quantized candidate trained its f32 master */
}

const char *plan_spec_str(const fl_mat_spec *s, char *buf, size_t n) {
    if (s->method == FL_METHOD_DENSE) snprintf(buf, n, "dense");
    else snprintf(buf, n, "%s %d", s->method == FL_METHOD_SVD ? "svd" : "cp", s->rank);
    return buf;
}

/* "svd 16 int8": the spec, with its precision when not f32. */
const char *plan_config_str(const fl_mat_spec *s, fl_precision q, char *buf, size_t n) {
    char b[32];
    plan_spec_str(s, b, sizeof b);
    q = stored_prec(s, q);
    if (q == FL_PRECISION_F32) snprintf(buf, n, "%s", b);
    else snprintf(buf, n, "%s %s", b, fl_precision_name(q));
    return buf;
}

/* Evaluate specs in the current precisions p->prec (once; repeated configurations reuse their
 * point). *idx: its point. */
fl_status plan_evaluate(fl_plan *p, const fl_mat_spec *specs, size_t changed, size_t *idx) {
    if ((*idx = find_point(p, specs, p->prec)) != NONE) return FL_OK;
    if (p->n_pts == p->cap_pts) {
        size_t cap = p->cap_pts ? 2 * p->cap_pts : 32;
        fl_plan_point *n = fl_calloc(cap, sizeof *n);
        if (!n) return fl_fail(FL_ERR_NOMEM, "out of memory recording plan candidates");
        if (p->n_pts) memcpy(n, p->pts, p->n_pts * sizeof *n);
        fl_free(p->pts);
        p->pts = n;
        p->cap_pts = cap;
    }
    fl_plan_point pt = {.measured_seconds = -1};
    fl_mat_spec *copy = fl_malloc(p->nmat * sizeof *copy);
    fl_precision *pcopy = fl_malloc(p->nmat * sizeof *pcopy);
    if (!copy || !pcopy) {
        fl_free(copy), fl_free(pcopy);
        return fl_fail(FL_ERR_NOMEM, "out of memory recording plan candidates");
    }
    memcpy(copy, specs, p->nmat * sizeof *copy);
    for (size_t i = 0; i < p->nmat; i++) pcopy[i] = stored_prec(&specs[i], p->prec[i]);
    fl_model *m = NULL;
    fl_status st = plan_predict(p, specs, &pt.cost);
    if (!st) st = plan_build_model(p, specs, pcopy, &m);
    if (!st && p->probe_steps > 0) st = plan_finetune(p, m, 0, p->probe_steps);
    if (!st) st = fl_eval_run(p->ev, m, &pt.metric, &pt.loss);
    fl_model_free(m);
    if (st) {
        fl_free(copy);
        fl_free(pcopy);
        return st;
    }
    pt.specs = copy;
    pt.precisions = pcopy;
    pt.meets_budget = pt.loss <= p->budget;
    p->pts[p->n_pts] = pt;
    *idx = p->n_pts++;
    p->evals++;
    char b[48];
    plan_progress(p, "eval %d: %s -> %s: loss %.4g (%s), predicted %.3g us/step", p->evals,
             changed == NONE ? "all matrices" : p->ms[changed].name,
             changed == NONE ? "as above" : plan_config_str(&specs[changed], pcopy[changed], b, sizeof b), pt.loss,
             pt.meets_budget ? "within budget" : "over budget", pt.cost.seconds * 1e6);
    return FL_OK;
}

/* ------------------------------------------------------------ search */

static double svd_err(const mat_state *s, const fl_mat_spec *sp) {
    return sp->method == FL_METHOD_SVD ? fl_svd_error(s->svd, sp->rank) : 0.0;
}

/* Index of rank in the ladder, or n_ladder when not on it (dense). */
static int rung_of(const mat_state *s, const fl_mat_spec *sp) {
    if (sp->method != FL_METHOD_SVD) return s->n_ladder;
    for (int k = 0; k < s->n_ladder; k++)
        if (s->ladder[k] == sp->rank) return k;
    return s->n_ladder;
}

/* Seed: the configuration where every matrix takes the smallest ladder rank whose truncation error
 * is <= tau, for the largest tau of a fixed list that meets the budget (binary search, assuming the
 * loss grows with tau). Spreads the error evenly before the greedy search refines per matrix. */
static fl_status search_seed(fl_plan *p, fl_mat_spec *cur, fl_mat_spec *cand) {
    static const double taus[] = {0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7};
    const int n = (int)(sizeof taus / sizeof taus[0]);
    int lo = -1, hi = n; /* taus[lo] meets the budget (lo = -1: the start), taus[hi] does not */
    fl_status st = FL_OK;
    fl_cost base, c;
    fl_mat_spec *start = fl_malloc(p->nmat * sizeof *start); /* the configuration we start from */
    if (!start) return fl_fail(FL_ERR_NOMEM, "out of memory in the plan search");
    memcpy(start, cur, p->nmat * sizeof *start);
    if ((st = plan_predict(p, start, &base))) goto done;
    while (hi - lo > 1 && p->evals < p->o.max_evals) {
        int mid = (lo + hi) / 2;
        bool any = false;
        for (size_t i = 0; i < p->nmat; i++) {
            const mat_state *s = &p->ms[i];
            cand[i] = start[i];
            for (int k = 0; s->svd && k < s->n_ladder; k++)
                if (fl_svd_error(s->svd, s->ladder[k]) <= taus[mid]) {
                    /* only where this matrix alone at that rank is predicted faster */
                    fl_mat_spec keep = start[i];
                    start[i] = (fl_mat_spec){FL_METHOD_SVD, s->ladder[k]};
                    st = plan_predict(p, start, &c);
                    start[i] = keep;
                    if (st) goto done;
                    if (plan_better(p, &c, &base)) {
                        cand[i] = (fl_mat_spec){FL_METHOD_SVD, s->ladder[k]};
                        any = true;
                    }
                    break;
                }
        }
        if (!any) { /* nothing compresses at this tau: larger taus may */
            lo = mid;
            continue;
        }
        size_t idx;
        plan_progress(p, "seed: every matrix at relative error <= %g", taus[mid]);
        if ((st = plan_evaluate(p, cand, NONE, &idx))) goto done;
        if (p->pts[idx].meets_budget) {
            lo = mid;
            memcpy(cur, cand, p->nmat * sizeof *cur);
        } else {
            hi = mid;
        }
    }
done:
    fl_free(start);
    return st;
}

static fl_status search_svd(fl_plan *p, fl_mat_spec *cur, fl_mat_spec *cand) {
    fl_status st;
    while (p->evals < p->o.max_evals) {
        fl_cost cc, c;
        if ((st = plan_predict(p, cur, &cc))) return st;
        size_t best_i = NONE;
        int best_r = 0;
        double best_score = 0;
        for (size_t i = 0; i < p->nmat; i++) {
            mat_state *s = &p->ms[i];
            if (!s->svd || cur[i].method == FL_METHOD_CP) continue;
            int cur_rank = cur[i].method == FL_METHOD_SVD ? cur[i].rank : s->rows + s->cols;
            memcpy(cand, cur, p->nmat * sizeof *cand);
            for (int k = 0; k < s->n_ladder; k++) {
                int r = s->ladder[k];
                if (r >= cur_rank || r <= s->floor) continue;
                cand[i] = (fl_mat_spec){FL_METHOD_SVD, r};
                if ((st = plan_predict(p, cand, &c))) return st;
                if (!plan_better(p, &c, &cc)) continue;
                double saved = cc.seconds - c.seconds;
                if (saved < 1e-15) saved = 1e-15;
                double derr = fl_svd_error(s->svd, r) - svd_err(s, &cur[i]);
                double score = saved / ((derr > 0 ? derr : 0) + 1e-3);
                if (score > best_score) best_score = score, best_i = i, best_r = r;
            }
        }
        if (best_i == NONE) return FL_OK;
        mat_state *s = &p->ms[best_i];
        memcpy(cand, cur, p->nmat * sizeof *cand);
        cand[best_i] = (fl_mat_spec){FL_METHOD_SVD, best_r};
        size_t idx;
        if ((st = plan_evaluate(p, cand, best_i, &idx))) return st;
        if (p->pts[idx].meets_budget) {
            cur[best_i] = cand[best_i];
            continue;
        }
        /* Binary search the rungs between the failing rank (lo) and the current one (hi). */
        int lo = rung_of(s, &cand[best_i]), hi = rung_of(s, &cur[best_i]);
        double lo_loss = p->pts[idx].loss;
        while (hi - lo > 1 && p->evals < p->o.max_evals) {
            int mid = (lo + hi) / 2;
            cand[best_i] = (fl_mat_spec){FL_METHOD_SVD, s->ladder[mid]};
            if ((st = plan_evaluate(p, cand, best_i, &idx))) return st;
            if (p->pts[idx].meets_budget) hi = mid;
            else lo = mid, lo_loss = p->pts[idx].loss;
        }
        s->floor = s->ladder[lo];
        s->fail = (fl_mat_spec){FL_METHOD_SVD, s->ladder[lo]};
        s->fail_loss = lo_loss;
        if (hi < s->n_ladder) cur[best_i] = (fl_mat_spec){FL_METHOD_SVD, s->ladder[hi]};
    }
    return FL_OK;
}

static fl_status search_cp(fl_plan *p, fl_mat_spec *cur, fl_mat_spec *cand) {
    fl_status st;
    for (size_t i = 0; i < p->nmat && p->evals < p->o.max_evals; i++) {
        mat_state *s = &p->ms[i];
        if (!s->gate || cur[i].method != FL_METHOD_SVD) continue;
        const int H = s->rows / 4, r = cur[i].rank;
        const size_t svd_params = (size_t)r * (s->rows + s->cols);
        int tries = 0;
        for (int k = 0; k < s->n_ladder && tries < CP_TRIES && p->evals < p->o.max_evals; k++) {
            int R = s->ladder[k];
            if (R < r || (size_t)R * (4 + H + s->cols) >= svd_params) continue;
            fl_cost cc, c;
            memcpy(cand, cur, p->nmat * sizeof *cand);
            cand[i] = (fl_mat_spec){FL_METHOD_CP, R};
            if ((st = plan_predict(p, cur, &cc)) || (st = plan_predict(p, cand, &c))) return st;
            if (!plan_better(p, &c, &cc)) continue;
            cp_entry *e;
            if ((st = get_cp(p, i, R, &e))) return st;
            size_t idx;
            if ((st = plan_evaluate(p, cand, i, &idx))) return st;
            tries++;
            if (p->pts[idx].meets_budget) {
                cur[i] = cand[i];
                break;
            }
            s->fail = cand[i];
            s->fail_loss = p->pts[idx].loss;
        }
    }
    return FL_OK;
}

/* The candidates verify() times, each model set up as the plan runs it (plan_time_setup). */
typedef struct timed_set {
    fl_plan *p;
    fl_model **m;
} timed_set;

/* One timed run of candidate j (fl_time_interleaved's option), after its warm-up run. */
static fl_status time_candidate(void *ctx, int j, double *s) {
    const timed_set *ts = ctx;
    const fl_plan *p = ts->p;
    return fl_plan_time_model(ts->m[j], p->o.batch, p->o.seq, p->o.threads, 1, p->o.seed, s);
}

/* Time the best `verify` candidates meeting the budget and point 0, interleaved round by round;
 * choose the measured winner. */
static fl_status verify(fl_plan *p) {
    size_t chosen = 0;
    for (size_t i = 1; i < p->n_pts; i++)
        if (p->pts[i].meets_budget &&
            (!p->pts[chosen].meets_budget || plan_better(p, &p->pts[i].cost, &p->pts[chosen].cost)))
            chosen = i;
    p->chosen = chosen;
    if (p->o.verify <= 0) return FL_OK;
    size_t *pick = fl_calloc((size_t)p->o.verify + 1, sizeof *pick);
    if (!pick) return fl_fail(FL_ERR_NOMEM, "out of memory choosing candidates to time");
    size_t n = 0;
    pick[n++] = 0;
    for (int k = 0; k < p->o.verify; k++) { /* the k-th best predicted, not yet picked */
        size_t best = NONE;
        for (size_t i = 1; i < p->n_pts; i++) {
            bool taken = false;
            for (size_t j = 0; j < n; j++) taken |= pick[j] == i;
            if (!taken && p->pts[i].meets_budget &&
                (best == NONE || plan_better(p, &p->pts[i].cost, &p->pts[best].cost)))
                best = i;
        }
        if (best == NONE) break;
        pick[n++] = best;
    }
    /* every candidate built and set up first, then timed in interleaved rounds (fl_time_interleaved) */
    fl_model **ms = fl_calloc(n, sizeof *ms);
    double *t = fl_calloc(n, sizeof *t);
    fl_status st = ms && t ? FL_OK : fl_fail(FL_ERR_NOMEM, "out of memory timing %zu candidates", n);
    for (size_t j = 0; j < n && !st; j++) {
        const fl_plan_point *pt = &p->pts[pick[j]];
        if (!(st = plan_build_model(p, pt->specs, pt->precisions, &ms[j]))) st = plan_time_setup(p, pt, ms[j]);
    }
    if (!st) {
        plan_progress(p, "timing %zu candidates in %d interleaved rounds", n, p->o.verify_reps);
        st = fl_time_interleaved((int)n, p->o.verify_reps, time_candidate, &(timed_set){p, ms}, t);
    }
    for (size_t j = 0; j < n && !st; j++) {
        fl_plan_point *pt = &p->pts[pick[j]];
        pt->measured_seconds = t[j];
        plan_progress(p, "timed candidate %zu: predicted %.3g us/step, measured %.3g us/step", pick[j],
                      pt->cost.seconds * 1e6, pt->measured_seconds * 1e6);
    }
    for (size_t j = 0; ms && j < n; j++) fl_model_free(ms[j]);
    fl_free(ms);
    fl_free(t);
    if (!st) {
        size_t win = NONE;
        for (size_t j = 0; j < n; j++) {
            const fl_plan_point *pt = &p->pts[pick[j]];
            if (pt->meets_budget && (win == NONE || pt->measured_seconds < p->pts[win].measured_seconds))
                win = pick[j];
        }
        if (win != NONE) p->chosen = win;
    }
    fl_free(pick);
    return st;
}

/* Dense reconstruction, SVD and rank ladder of every matrix. */
static fl_status prepare(fl_plan *p) {
    for (size_t i = 0; i < p->nmat; i++) {
        mat_state *s = &p->ms[i];
        const fl_mat *w = fl_model_mat_const(p->src, i);
        fl_matrix_info info;
        fl_model_matrix_info(p->src, i, &info);
        snprintf(s->name, sizeof s->name, "%s", info.name);
        s->rows = w->rows;
        s->cols = w->cols;
        s->gate = info.kind == FL_MAT_IH || info.kind == FL_MAT_HH;
        s->dense = fl_malloc((size_t)w->rows * w->cols * sizeof(float));
        if (!s->dense) return fl_fail(FL_ERR_NOMEM, "out of memory reconstructing %s", s->name);
        fl_mat_to_dense(w, s->dense);
        bool zero = true;
        for (size_t k = 0; k < (size_t)w->rows * w->cols && zero; k++) zero = s->dense[k] == 0.0f;
        if (zero) continue;
        plan_progress(p, "SVD of %s (%dx%d)", s->name, s->rows, s->cols);
        fl_status st = fl_svd_compute(s->dense, s->rows, s->cols, &s->svd);
        if (st) return st;
        const size_t full = (size_t)s->rows * s->cols;
        const int maxr = s->rows < s->cols ? s->rows : s->cols;
        for (int k = 0; k < 31 && s->n_ladder < MAX_LADDER - 1; k++)
            for (int mul = 2; mul <= 3; mul++) { /* 2^k and 3 * 2^(k-1), ascending */
                long r = mul == 2 ? (1L << k) : (k >= 1 ? 3L << (k - 1) : 0);
                if (r < 1 || r > maxr || (size_t)r * (s->rows + s->cols) >= full) continue;
                if (s->n_ladder && s->ladder[s->n_ladder - 1] >= r) continue;
                s->ladder[s->n_ladder++] = (int)r;
            }
    }
    return FL_OK;
}

/* Evaluators for the search data (p->ev) and the certify data (p->cev, NULL when not certifying);
 * the fine-tuning probe length. *owned: a split's copy of the data (the caller frees it). */
static fl_status setup_data(fl_plan *p, const fl_model *m, void **owned) {
    const fl_plan_opts *o = &p->o;
    fl_plan_data view, search, cert;
    const fl_plan_data *all = o->data;
    fl_status st;
    if (o->dataset) {
        if ((st = fl_plan_data_of(o->dataset, &view))) return st;
        all = &view;
    }
    const fl_arch *a = &p->arch;
    bool lm = a->vocab > 0 && a->head == FL_HEAD_PER_STEP && a->head_out == a->vocab;
    bool certifiable = all && (a->head == FL_HEAD_LAST_STEP || lm);
    if (o->certify && !certifiable)
        return fl_fail(FL_ERR_ARG, "plan: certification needs a classifier or a language model");
    if (certifiable && o->certify) {
        if ((st = fl_plan_data_of(o->certify, &cert))) return st;
        search = *all;
    } else if (certifiable && o->certify_fraction > 0) {
        /* validate the whole before splitting it (errors name the validation data as given) */
        fl_eval *whole;
        if ((st = fl_eval_create(m, o, all, &whole))) return st;
        fl_eval_free(whole);
        if ((st = fl_plan_data_split(all, lm, o->certify_fraction, o->seed, &search, &cert, owned))) return st;
    } else {
        certifiable = false;
    }
    if ((st = fl_eval_create(m, o, certifiable ? &search : all, &p->ev))) return st;
    if (certifiable && (st = fl_eval_create(m, o, &cert, &p->cev))) return st;
    p->cert.search_count = all ? fl_eval_count(p->ev) : 0;
    if (o->finetune) {
        if ((st = fl_dataset_check_model(o->finetune, m, "fine-tuning data"))) return st;
        fl_train_opts to = o->train ? *o->train : plan_train_default();
        size_t n = fl_dataset_size(o->finetune);
        double per_epoch = lm ? (double)n / ((double)to.batch * to.bptt) : (double)n / to.batch;
        if (per_epoch < 1) per_epoch = 1;
        /* automatic: the search's fine-tuning adds up to about 1.5 full fine-tunes over its evaluations */
        double probe = o->finetune_probe > 0 ? o->finetune_probe * per_epoch
                                             : 1.5 * per_epoch * (o->finetune_epochs > 0 ? o->finetune_epochs : 1) /
                                                   (p->o.max_evals < 24 ? p->o.max_evals : 24);
        p->probe_steps = probe < 1 ? 1 : (long)probe;
        if (p->o.max_evals > 24) p->o.max_evals = 24;
        p->cert.finetuned = 1;
    }
    return FL_OK;
}

static fl_status plan_create_held(const fl_model *m, const fl_profile *prof, const fl_plan_opts *opts,
                         fl_plan **out) {
    if (!out) return fl_fail(FL_ERR_ARG, "fl_plan_create: out is NULL");
    *out = NULL;
    if (!m || !prof) return fl_fail(FL_ERR_ARG, "fl_plan_create: model or profile is NULL");
    fl_plan_opts o = opts ? *opts : fl_plan_opts_default();
    if (o.batch < 1 || o.seq < 1 || o.threads < 0 || o.max_threads < 0)
        return fl_fail(FL_ERR_ARG, "plan: batch and seq must be >= 1, threads and max_threads >= 0 (0: "
                       "planned; got %d, %d, %d, %d)", o.batch, o.seq, o.threads, o.max_threads);
    if (o.max_loss < 0 || !(o.max_dev >= 0))
        return fl_fail(FL_ERR_ARG, "plan: the accuracy budget must be >= 0 (max_loss %g, max_dev %g)",
                       o.max_loss, o.max_dev);
    if (o.data && o.dataset) return fl_fail(FL_ERR_ARG, "plan: give data or dataset, not both");
    if (!isnan(o.max_loss) && !o.data && !o.dataset)
        return fl_fail(FL_ERR_ARG, "plan: max_loss needs validation data (use max_dev without data)");
    if (!(o.certify_fraction >= 0 && o.certify_fraction < 1) || !(o.confidence > 0.5 && o.confidence < 1) ||
        o.certify_tries < 1 || o.finetune_epochs < 0 || !(o.finetune_probe >= 0))
        return fl_fail(FL_ERR_ARG, "plan: certify_fraction must be in [0, 1), confidence in (0.5, 1), "
                       "certify_tries >= 1, finetune_epochs and finetune_probe >= 0");
    if (o.certify && !o.data && !o.dataset) return fl_fail(FL_ERR_ARG, "plan: certify data needs validation data");
    if (o.finetune && !o.data && !o.dataset) return fl_fail(FL_ERR_ARG, "plan: fine-tuning needs validation data");
    if (o.precisions >> (FL_PRECISION_INT8 + 1))
        return fl_fail(FL_ERR_ARG, "plan: precisions 0x%x has bits beyond FL_PRECISION_INT8 (%d)", o.precisions,
                       (int)FL_PRECISION_INT8);
    if (o.dev_samples < 1 || o.max_evals < 1 || o.cp_max_iter < 0 || o.verify < 0 ||
        (o.verify > 0 && (o.verify_reps < 1 || o.verify_reps > 64)))
        return fl_fail(FL_ERR_ARG, "plan: dev_samples and max_evals must be >= 1, verify_reps 1..64");
    fl_plan *p = fl_calloc(1, sizeof *p);
    if (!p) return fl_fail(FL_ERR_NOMEM, "out of memory creating a plan");
    p->arch = *fl_model_arch(m);
    p->nmat = fl_model_num_matrices(m);
    p->prof = *prof;
    p->o = o;
    p->src = m;
    p->lt = fl_calloc(2 * (size_t)p->arch.layers, sizeof *p->lt);
    p->lt_scratch = p->lt ? p->lt + p->arch.layers : NULL;
    if (!p->lt || !(p->prec = fl_calloc(p->nmat, sizeof *p->prec))) {
        fl_free(p->lt);
        fl_free(p);
        return fl_fail(FL_ERR_NOMEM, "out of memory creating a plan");
    }
    for (size_t j = 0; j < p->nmat; j++) p->prec[j] = fl_model_mat_const(m, j)->precision;
    p->max_threads = o.max_threads > 0 ? o.max_threads : prof->cores > 1 ? prof->cores : 1;
    if (p->max_threads > 64) p->max_threads = 64;
    fl_mat_spec *cur = NULL, *cand = NULL;
    void *owned = NULL;
    fl_status st = FL_OK;
    p->ms = fl_calloc(p->nmat, sizeof *p->ms);
    p->reason = fl_calloc(p->nmat, sizeof *p->reason);
    cur = fl_calloc(p->nmat, sizeof *cur); /* all dense (method 0) */
    cand = fl_calloc(p->nmat, sizeof *cand);
    if (!p->ms || !p->reason || !cur || !cand) {
        st = fl_fail(FL_ERR_NOMEM, "out of memory creating a plan");
        goto done;
    }
    fl_cost dense_cost;
    if ((st = plan_predict(p, cur, &dense_cost))) goto done;
    p->regime = dense_cost.regime;
    double t0 = fl_now_seconds();
    if ((st = setup_data(p, m, &owned))) goto done;
    p->kind = fl_eval_metric_kind(p->ev);
    p->budget = fl_eval_budget(p->ev);
    if ((st = prepare(p))) goto done;
    size_t idx;
    if ((st = plan_evaluate(p, cur, NONE, &idx))) goto done;
    if ((st = plan_search_prec(p, cur, true))) goto done;
    if ((st = search_seed(p, cur, cand)) || (st = search_svd(p, cur, cand))) goto done;
    if (p->regime == FL_REGIME_MEMORY && o.allow_cp && o.cp_max_iter > 0 && (st = search_cp(p, cur, cand)))
        goto done;
    if ((st = plan_search_prec(p, cur, false))) goto done;
    if ((st = verify(p)) || (st = plan_certify(p))) goto done;
    p->cert.search_seconds = fl_now_seconds() - t0 - p->cert.finetune_seconds;
    plan_mark_pareto(p);
    plan_write_reasons(p);
    if ((st = plan_choose_threads(p))) goto done;
    if (!p->model) st = plan_build_model(p, p->pts[p->chosen].specs, p->pts[p->chosen].precisions, &p->model);
    if (!st && p->model) st = fl_model_set_planned_threads(p->model, p->lt);
    if (!st && p->model) st = fl_model_set_planned_bidir_sched(p->model, p->bidir_sched);
    if (!st && p->model) st = fl_model_set_planned_step_sched(p->model, p->step_sched);
done:
    fl_free(cur);
    fl_free(cand);
    fl_free(owned);
    /* The search state is not needed after create. */
    fl_eval_free(p->ev);
    fl_eval_free(p->cev);
    p->ev = p->cev = NULL;
    for (size_t i = 0; p->ms && i < p->nmat; i++) {
        fl_free(p->ms[i].dense);
        fl_svd_free(p->ms[i].svd);
        for (int k = 0; k < p->ms[i].n_cp; k++) fl_free(p->ms[i].cp[k].a);
        fl_free(p->ms[i].cp);
    }
    fl_free(p->ms);
    p->ms = NULL;
    p->src = NULL;
    if (st) {
        fl_plan_free(p);
        return st;
    }
    *out = p;
    return FL_OK;
}

fl_status fl_plan_create(const fl_model *m, const fl_profile *prof, const fl_plan_opts *opts,
                         fl_plan **out) {
    if (!m) return plan_create_held(m, prof, opts, out);
    fl_model_weights_hold(m); /* read outside any session (packed.c) */
    fl_status st = plan_create_held(m, prof, opts, out);
    fl_model_weights_unhold(m);
    return st;
}

void fl_plan_free(fl_plan *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n_pts; i++) fl_free((void *)p->pts[i].specs), fl_free((void *)p->pts[i].precisions);
    fl_free(p->pts);
    fl_free(p->reason);
    fl_free(p->prec);
    fl_free(p->lt);
    fl_model_free(p->model);
    fl_free(p);
}

fl_plan_metric fl_plan_metric_kind(const fl_plan *p) { return p->kind; }
double fl_plan_budget(const fl_plan *p) { return p->budget; }
size_t fl_plan_num_points(const fl_plan *p) { return p->n_pts; }
const fl_plan_point *fl_plan_point_at(const fl_plan *p, size_t i) { return i < p->n_pts ? &p->pts[i] : NULL; }
size_t fl_plan_chosen(const fl_plan *p) { return p->chosen; }
const char *fl_plan_reason(const fl_plan *p, size_t i) { return i < p->nmat ? p->reason[i] : ""; }
const fl_model *fl_plan_model(const fl_plan *p) { return p->model; }
int fl_plan_threads(const fl_plan *p) { return p->threads; }
fl_regime fl_plan_regime(const fl_plan *p) { return p->regime; }

fl_status fl_plan_choice_at_batch(const fl_plan *p, int batch, size_t *point, fl_cost *cost) {
    if (!p || !point || !cost) return fl_fail(FL_ERR_ARG, "NULL argument to fl_plan_choice_at_batch");
    if (batch < 1) return fl_fail(FL_ERR_ARG, "fl_plan_choice_at_batch: batch must be >= 1, got %d", batch);
    size_t best = NONE;
    for (size_t i = 0; i < p->n_pts; i++) {
        if (!p->pts[i].meets_budget) continue;
        fl_cost c;
        fl_status st = predict_at(p, p->pts[i].specs, p->pts[i].precisions, batch, &c);
        if (st) return st;
        if (best == NONE || plan_better(p, &c, cost)) best = i, *cost = c;
    }
    if (best == NONE) return fl_fail(FL_ERR_DATA, "no evaluated configuration meets the budget");
    *point = best;
    return FL_OK;
}
const fl_plan_certificate *fl_plan_certificate_of(const fl_plan *p) { return &p->cert; }
