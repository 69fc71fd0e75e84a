/* The training planner (see train_auto.h). */
#include "train_auto.h"

#ifdef FL_WITH_MPI
#include "fastlstm/dist.h"
#endif

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Stored parameters and flops (to apply to one vector) of a rows x cols matrix in a form. CP
 * views an LSTM gate matrix (4H x n) as a 4 x H x n tensor: factors (4 + H + n) x r; applying it
 * costs c^T x (n r), the a-b contraction (4 H r) and the sum, about 2 r (n + 4 H) flops. */
static void form_cost(fl_method meth, int rank, int rows, int cols, double *params, double *flops) {
    switch (meth) {
    case FL_METHOD_SVD:
        *params = (double)rank * (rows + cols);
        *flops = 2.0 * rank * (rows + cols);
        break;
    case FL_METHOD_CP:
        *params = (double)rank * (4 + rows / 4 + cols);
        *flops = 2.0 * rank * (cols + rows);
        break;
    default:
        *params = (double)rows * cols;
        *flops = 2.0 * rows * cols;
    }
}

static const char *method_name(fl_method m) { return m == FL_METHOD_SVD ? "svd" : m == FL_METHOD_CP ? "cp" : "dense"; }

typedef struct choice {
    fl_method method;
    int rank;
    double compute_s, comm_s; /* estimated per step */
} choice;

/* Best form of one matrix: the least estimated time among dense and SVD / CP (CP only for LSTM
 * matrices) at ranks H/div .. H/2 (powers of two apart), ranks at least `floor_rank`. */
static choice best_form(const fl_matrix_info *mi, bool lstm, int H, int div, int floor_rank, double s_per_flop,
                        double s_per_byte, int tokens) {
    double p, f;
    form_cost(FL_METHOD_DENSE, 0, mi->rows, mi->cols, &p, &f);
    // 3 x: forward, backward to the input, backward to the weights
    choice best = {FL_METHOD_DENSE, 0, 3.0 * f * tokens * s_per_flop, 4.0 * p * s_per_byte};
    const int maxr = mi->rows < mi->cols ? mi->rows : mi->cols;
    for (int meth = 0; meth < (lstm ? 2 : 1); meth++) {
        fl_method fm = meth == 0 ? FL_METHOD_SVD : FL_METHOD_CP;
        for (int r = H / div > 0 ? H / div : 1; r <= H / 2; r *= 2) {
            int rank = r < floor_rank ? floor_rank : r;
            if (rank > maxr) rank = maxr;
            form_cost(fm, rank, mi->rows, mi->cols, &p, &f);
            choice c = {fm, rank, 3.0 * f * tokens * s_per_flop, 4.0 * p * s_per_byte};
            if (c.compute_s + c.comm_s < best.compute_s + best.comm_s) best = c;
        }
    }
    return best;
}

fl_status cli_auto_plan(const fl_model *m, const cli_auto_measure *ms, const cli_auto_opts *o,
                        const fl_dataset *check, int batch, int bptt, FILE *log, fl_model **out) {
    *out = NULL;
    const fl_arch *a = fl_model_arch(m);
    const size_t nmat = fl_model_num_matrices(m);
    const int H = a->hidden;
    // compute rate: the dense model's flops per step over the warm-up step time spent computing
    const double step_flops = 3.0 * (double)fl_model_flops_per_step(m) * ms->tokens_per_rank;
    const double compute = ms->step_s - ms->comm_s > 1e-9 ? ms->step_s - ms->comm_s : 1e-9;
    const double s_per_flop = compute / step_flops;
    // link: seconds per byte of the reduction as measured (0 on one process: nothing to send)
    const double s_per_byte = ms->ranks > 1 && ms->comm_bytes > 0 ? ms->comm_s / ms->comm_bytes : 0.0;
    if (log)
        fprintf(log, "plan: measured over the dense warm-up: %.3g GFLOP/s per rank, %d rank(s)%s; %.3g s/step (%.3g s "
                "waiting for the reduction)\n", 1e-9 / s_per_flop, ms->ranks, ms->ranks > 1 ? "" : " (no link)",
                ms->step_s, ms->comm_s);
    if (log && ms->ranks > 1)
        fprintf(log, "plan: link: %.3g MB/s effective allreduce bandwidth (%.0f bytes in %.3g s per step)\n",
                s_per_byte > 0 ? 1e-6 / s_per_byte : INFINITY, ms->comm_bytes, ms->comm_s);
    fl_mat_spec *specs = calloc(nmat, sizeof *specs);
    if (!specs) return FL_ERR_NOMEM;
    fl_status st = FL_OK;
    double dense_s = 0, plan_s = 0;
    // the cost model favours the smallest rank tried, so this floor is what sets the quality
    int floor_rank = o->min_rank > 0 ? o->min_rank : 0;
    fl_eval_result e0, e1;
    if ((st = fl_model_evaluate(m, check, batch, bptt, &e0))) goto out;
    for (int attempt = 0; attempt < 4; attempt++) {
        dense_s = plan_s = 0;
        bool any = false;
        for (size_t i = 0; i < nmat; i++) {
            fl_matrix_info mi;
            if ((st = fl_model_matrix_info(m, i, &mi))) goto out;
            double p, f;
            form_cost(FL_METHOD_DENSE, 0, mi.rows, mi.cols, &p, &f);
            dense_s += 3.0 * f * ms->tokens_per_rank * s_per_flop + 4.0 * p * s_per_byte;
            choice c = best_form(&mi, i < nmat - 1 || a->head == FL_HEAD_NONE, H, o->min_rank_div, floor_rank, s_per_flop,
                                 s_per_byte, ms->tokens_per_rank);
            specs[i] = (fl_mat_spec){c.method, c.rank};
            plan_s += c.compute_s + c.comm_s;
            any |= c.method != FL_METHOD_DENSE;
            if (log)
                fprintf(log, "plan: %-20s %-5s rank %-4d est. %.3g ms compute + %.3g ms link per step\n", mi.name,
                        method_name(c.method), c.rank, 1e3 * c.compute_s, 1e3 * c.comm_s);
        }
        if (!any || plan_s > (1 - o->min_gain) * dense_s) {
            if (log)
                fprintf(log, "plan: staying dense: decomposing would save %.0f%% of the matrix time (< %.0f%%)\n",
                        dense_s > 0 ? 100 * (1 - plan_s / dense_s) : 0.0, 100 * o->min_gain);
            goto out;
        }
        fl_decomp_opts d = fl_decomp_opts_default();
        d.specs = specs;
        d.include_head = 1;
        fl_model *cand = NULL;
        if ((st = fl_model_decompose(m, &d, &cand))) goto out;
        if ((st = fl_model_evaluate(cand, check, batch, bptt, &e1))) {
            fl_model_free(cand);
            goto out;
        }
        const double rise = (e1.loss - e0.loss) / fabs(e0.loss);
        if (log)
            fprintf(log, "plan: estimated matrix time %.3g ms/step dense -> %.3g ms planned (%.2fx); check loss %.4f "
                    "dense -> %.4f decomposed (%+.2f%%, tolerance %.1f%%)\n", 1e3 * dense_s, 1e3 * plan_s,
                    dense_s / plan_s, e0.loss, e1.loss, 100 * rise, 100 * o->tol);
        if (rise <= o->tol) {
            *out = cand;
            goto out;
        }
        fl_model_free(cand);
        floor_rank = floor_rank ? 2 * floor_rank : (H / o->min_rank_div > 0 ? 2 * (H / o->min_rank_div) : 2);
        if (floor_rank > H) break;
        if (log) fprintf(log, "plan: too far from dense: retrying with ranks >= %d\n", floor_rank);
    }
    if (log) fprintf(log, "plan: no decomposition passed the check: staying dense\n");
out:
    free(specs);
    return st;
}

/* Rank 0's value of x on every rank (each rank adds x or 0), so every rank plans alike. */
static fl_status from_rank0(void *dist, int rank, double *x) {
#ifdef FL_WITH_MPI
    if (!dist) return FL_OK;
    double v = rank == 0 ? *x : 0.0;
    fl_status st = fl_dist_allreduce_sum((fl_dist *)dist, &v);
    if (!st) *x = v;
    return st;
#else
    (void)dist, (void)rank, (void)x;
    return FL_OK;
#endif
}

fl_status cli_auto_run(fl_model **m, fl_trainer **t, const fl_train_opts *to, fl_train_run *run, void *dist, int rank,
                       int ranks, long warm, const cli_auto_opts *o, FILE *log, bool *switched) {
    *switched = false;
    fl_train_run w = *run;
    w.max_steps = warm;
    w.checkpoint = NULL;
    w.valid = NULL; /* the warm-up ends mid-epoch; validation is the check below */
    cli_auto_measure ms = {0};
    ms.ranks = ranks;
    const bool lm = fl_model_arch(*m)->head == FL_HEAD_PER_STEP;
    ms.tokens_per_rank = (to->batch + ranks - 1) / ranks * (lm ? to->bptt : fl_dataset_seq(run->train));
    double c0 = 0, b0 = 0;
#ifdef FL_WITH_MPI
    fl_dist_stats s0, s1;
    fl_dist_get_stats(dist, &s0);
    c0 = s0.grad_wait_s;
    b0 = s0.bytes;
#endif
    if (log) fprintf(log, "plan: dense warm-up for %ld steps to measure compute and link\n", warm);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    fl_status st = fl_trainer_run(*t, &w);
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (st) return st;
    const long done = fl_trainer_steps(*t);
    if (done <= 0) return FL_OK;
    ms.step_s = ((double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9) / (double)done;
#ifdef FL_WITH_MPI
    if (dist) {
        fl_dist_get_stats(dist, &s1);
        ms.comm_s = (s1.grad_wait_s - c0) / (double)done;
        ms.comm_bytes = (s1.bytes - b0) / (double)done;
    }
#endif
    if ((st = from_rank0(dist, rank, &ms.step_s)) || (st = from_rank0(dist, rank, &ms.comm_s)) ||
        (st = from_rank0(dist, rank, &ms.comm_bytes)))
        return st;
    const fl_dataset *check = run->valid ? run->valid : run->train;
    /* A language model is checked on the first CHECK_BATCHES batches of its text: the check runs
     * up to five times and must stay small next to the training it plans. */
    enum { CHECK_BATCHES = 64 };
    fl_dataset *prefix = NULL;
    const size_t cap = (size_t)CHECK_BATCHES * (size_t)to->batch * (size_t)to->bptt + 1;
    if (lm && fl_dataset_size(check) > cap) {
        if ((st = fl_dataset_lm(fl_dataset_tokens(check), cap, fl_dataset_vocab(check), &prefix))) return st;
        check = prefix;
        if (log) fprintf(log, "plan: the check reads the first %zu tokens of the validation text\n", cap);
    }
    fl_model *next = NULL;
    st = cli_auto_plan(*m, &ms, o, check, to->batch, to->bptt, log, &next);
    fl_dataset_free(prefix);
    if (st) return st;
    if (!next) return FL_OK;
    fl_trainer *t2 = NULL;
    // the factored model continues the run: same step count, data position and LM state, so the
    // run reads the same tokens as one that never switched
    if ((st = fl_trainer_create(next, to, &t2)) || (st = fl_trainer_continue_from(t2, *t))) {
        fl_trainer_free(t2);
        fl_model_free(next);
        return st;
    }
#ifdef FL_WITH_MPI
    if (dist) {
        fl_dist_detach(dist, *t);
        if ((st = fl_dist_attach(dist, t2))) {
            fl_trainer_free(t2);
            fl_model_free(next);
            return st;
        }
    }
#endif
    fl_trainer_free(*t);
    fl_model_free(*m);
    *t = t2;
    *m = next;
    *switched = true;
    if (log)
        fprintf(log, "plan: switched to the decomposed model after %ld dense steps (%zu parameters); training "
                "continues at the same point of the data (and LM state) with fresh optimiser state\n", done,
                fl_model_num_params(*m));
    return FL_OK;
}
