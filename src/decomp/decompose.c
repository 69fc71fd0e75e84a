/* fl_model_decompose: reconstruct each weight matrix, decompose it to its target (SVD or CP), and
 * write a new model holding the factors and each matrix's relative reconstruction error. */
#include "decomp/decomp.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

fl_decomp_opts fl_decomp_opts_default(void) {
    return (fl_decomp_opts){.method = FL_METHOD_SVD, .rank = 0, .tol = 0, .budget = 0,
                            .include_head = 0, .specs = NULL, .cp_max_iter = 200, .cp_tol = 1e-7,
                            .seed = 0};
}

/* Result of one matrix before the output model exists. */
typedef struct mat_result {
    fl_mat_spec spec;  /* final (rank resolved) */
    float *f[3];       /* dense: f[0] (rows, cols); svd: u, v; cp: a, b, c */
    double rel_error;
    int cp_iterations, cp_converged;
} mat_result;

static void result_free(mat_result *r) {
    for (int k = 0; k < 3; k++) {
        fl_free(r->f[k]);
        r->f[k] = NULL;
    }
}

/* Prefix the current error detail with the matrix name (copied first: fl_fail writes the same buffer). */
static fl_status prefix_error(fl_status st, const char *name) {
    char detail[768];
    snprintf(detail, sizeof detail, "%s", fl_last_error());
    return fl_fail(st, "%s: %s", name, detail);
}

static const char *method_name(fl_method m) {
    return m == FL_METHOD_DENSE ? "dense" : m == FL_METHOD_SVD ? "svd" : m == FL_METHOD_CP ? "cp" : "?";
}

/* A temporary fl_mat view over a result's factors, for fl_mat_to_dense. */
static fl_mat result_view(const mat_result *r, int rows, int cols) {
    fl_mat w = {.method = r->spec.method, .rows = rows, .cols = cols, .rank = r->spec.rank};
    if (w.method == FL_METHOD_DENSE) w.w = r->f[0];
    else if (w.method == FL_METHOD_SVD) w.u = r->f[0], w.v = r->f[1];
    else w.a = r->f[0], w.b = r->f[1], w.c = r->f[2];
    return w;
}

/* rel_error of r's float factors against W (rows, cols); tmp holds rows*cols floats. */
static double factor_error(const mat_result *r, int rows, int cols, const float *W, float *tmp) {
    fl_mat w = result_view(r, rows, cols);
    fl_mat_to_dense(&w, tmp);
    return fl_rel_error(W, tmp, (size_t)rows * cols);
}

static fl_status do_svd(const char *name, const float *W, int rows, int cols, int rank, double tol,
                        double budget, mat_result *r, float *tmp) {
    int k = rows < cols ? rows : cols;
    if (rank > k)
        return fl_fail(FL_ERR_ARG, "%s: SVD rank %d exceeds min(%d, %d) = %d", name, rank, rows, cols, k);
    fl_svd *svd;
    fl_status st = fl_svd_compute(W, rows, cols, &svd);
    if (st) return prefix_error(st, name);
    int R = rank > 0 ? rank : tol > 0 ? fl_svd_rank_for_tol(svd, tol) : fl_svd_rank_for_budget(rows, cols, budget);
    r->spec = (fl_mat_spec){FL_METHOD_SVD, R};
    r->f[0] = fl_calloc((size_t)rows * R, sizeof(float));
    r->f[1] = fl_calloc((size_t)R * cols, sizeof(float));
    if (!r->f[0] || !r->f[1]) {
        fl_svd_free(svd);
        return fl_fail(FL_ERR_NOMEM, "%s: out of memory for SVD factors", name);
    }
    st = fl_svd_truncate(svd, R, r->f[0], r->f[1]);
    fl_svd_free(svd);
    if (st) return st;
    r->rel_error = factor_error(r, rows, cols, W, tmp);
    return FL_OK;
}

/* One CP-ALS run at rank R into r (replacing its factors). */
static fl_status cp_run(const char *name, const float *W, int H, int N, int R, const fl_cp_opts *o,
                        mat_result *r) {
    result_free(r);
    r->spec = (fl_mat_spec){FL_METHOD_CP, R};
    r->f[0] = fl_calloc((size_t)4 * R, sizeof(float));
    r->f[1] = fl_calloc((size_t)H * R, sizeof(float));
    r->f[2] = fl_calloc((size_t)N * R, sizeof(float));
    if (!r->f[0] || !r->f[1] || !r->f[2]) return fl_fail(FL_ERR_NOMEM, "%s: out of memory for CP factors", name);
    fl_cp_report rep;
    fl_status st = fl_cp_als(W, H, N, R, o, r->f[0], r->f[1], r->f[2], &rep);
    if (st) return prefix_error(st, name);
    r->rel_error = rep.rel_error;
    r->cp_iterations += rep.iterations;
    r->cp_converged = rep.converged;
    return FL_OK;
}

/* CP target: explicit rank, else the smallest rank meeting tol (doubling, then bisection; ALS error
 * is not guaranteed monotone in the rank, so this finds a small rank meeting tol, usually the
 * smallest), else the largest rank within the parameter budget. */
static fl_status do_cp(const char *name, const float *W, int rows, int cols, int rank, double tol,
                       double budget, const fl_cp_opts *o, mat_result *r) {
    const int H = rows / 4, N = cols;
    /* Any I x J x K tensor has CP rank <= min(IJ, IK, JK), so no larger rank is ever needed; refusing
     * one also keeps ALS's (R, R) work matrices bounded (rank 65536 would ask for 5 x 32 GiB). */
    int64_t rexact = (int64_t)H * N;
    if (4 * (int64_t)H < rexact) rexact = 4 * (int64_t)H;
    if (4 * (int64_t)N < rexact) rexact = 4 * (int64_t)N;
    if (rank > rexact)
        return fl_fail(FL_ERR_ARG, "%s: CP rank %d exceeds %lld = min(4H, 4N, HN), the most a 4x%dx%d tensor needs",
                       name, rank, (long long)rexact, H, N);
    if (rank > 0) return cp_run(name, W, H, N, rank, o, r);
    if (!(tol > 0)) {
        double lim = budget * 4.0 * H * (double)N;
        int R = (int)floor(lim / (4.0 + H + (double)N));
        return cp_run(name, W, H, N, R < 1 ? 1 : R, o, r);
    }
    const int rmax = fl_cp_max_useful_rank(H, N);
    mat_result best = {0}, cur = {0};
    int lo = 0, hi = 0, iters = 0; /* lo: largest rank known to fail; hi: smallest known to pass */
    fl_status st = FL_OK;
    double last_err = 1;
    for (int R = 1;; R = R * 2 > rmax ? rmax : R * 2) {
        if ((st = cp_run(name, W, H, N, R, o, &cur))) goto out;
        iters += cur.cp_iterations;
        cur.cp_iterations = 0;
        last_err = cur.rel_error;
        if (cur.rel_error <= tol) {
            hi = R;
            best = cur;
            cur = (mat_result){0};
            break;
        }
        lo = R;
        if (R == rmax) {
            st = fl_fail(FL_ERR_NUMERIC, "%s: CP cannot reach relative error %g within the dense parameter "
                         "count (rank %d gives %g)", name, tol, rmax, last_err);
            goto out;
        }
    }
    while (hi - lo > 1) {
        int R = lo + (hi - lo) / 2;
        if ((st = cp_run(name, W, H, N, R, o, &cur))) goto out;
        iters += cur.cp_iterations;
        cur.cp_iterations = 0;
        if (cur.rel_error <= tol) {
            hi = R;
            result_free(&best);
            best = cur;
            cur = (mat_result){0};
        } else {
            lo = R;
        }
    }
out:
    result_free(&cur);
    if (st) {
        result_free(&best);
        return st;
    }
    result_free(r);
    *r = best;
    r->cp_iterations = iters;
    return FL_OK;
}

static fl_status check_opts(const fl_decomp_opts *o) {
    if (o->method != FL_METHOD_DENSE && o->method != FL_METHOD_SVD && o->method != FL_METHOD_CP)
        return fl_fail(FL_ERR_ARG, "decompose: unknown method %d", (int)o->method);
    if (o->rank < 0) return fl_fail(FL_ERR_ARG, "decompose: rank %d must be >= 0", o->rank);
    if (!(o->tol >= 0 && o->tol < 1)) return fl_fail(FL_ERR_ARG, "decompose: tol %g must be in [0, 1)", o->tol);
    if (!(o->budget >= 0 && o->budget <= 1))
        return fl_fail(FL_ERR_ARG, "decompose: budget %g must be in [0, 1]", o->budget);
    if (o->cp_max_iter < 1) return fl_fail(FL_ERR_ARG, "decompose: cp_max_iter %d must be >= 1", o->cp_max_iter);
    if (!(o->cp_tol >= 0)) return fl_fail(FL_ERR_ARG, "decompose: cp_tol %g must be >= 0", o->cp_tol);
    return FL_OK;
}

/* Decompose matrix i of m into r. W and tmp hold rows*cols floats each. */
static fl_status decompose_one(const fl_model *m, size_t i, fl_mat_spec target, const fl_decomp_opts *o,
                               float *W, float *tmp, mat_result *r) {
    fl_matrix_info info;
    fl_model_matrix_info(m, i, &info);
    const fl_mat *src = fl_model_mat_const(m, i);
    const int rows = src->rows, cols = src->cols;
    const bool head = info.kind == FL_MAT_HEAD;
    int rank = target.rank > 0 ? target.rank : 0;
    if (target.method != FL_METHOD_DENSE && target.method != FL_METHOD_SVD && target.method != FL_METHOD_CP)
        return fl_fail(FL_ERR_ARG, "%s: unknown method %d", info.name, (int)target.method);
    if (target.rank < 0) return fl_fail(FL_ERR_ARG, "%s: rank %d must be >= 0", info.name, target.rank);
    if (head && target.method == FL_METHOD_CP)
        return fl_fail(FL_ERR_ARG, "%s: the head supports SVD only (CP applies to LSTM gate matrices)", info.name);
    if (target.method != FL_METHOD_DENSE && rank == 0 && !(o->tol > 0) && !(o->budget > 0))
        return fl_fail(FL_ERR_ARG, "%s: %s target needs a rank, a tol or a budget", info.name,
                       method_name(target.method));

    fl_mat_to_dense(src, W); // W: (rows, cols)
    if (target.method == FL_METHOD_DENSE) {
        r->spec = (fl_mat_spec){FL_METHOD_DENSE, 0};
        r->f[0] = fl_malloc((size_t)rows * cols * sizeof(float));
        if (!r->f[0]) return fl_fail(FL_ERR_NOMEM, "%s: out of memory", info.name);
        memcpy(r->f[0], W, (size_t)rows * cols * sizeof(float));
        r->rel_error = 0;
        return FL_OK;
    }
    if (target.method == FL_METHOD_SVD) return do_svd(info.name, W, rows, cols, rank, o->tol, o->budget, r, tmp);
    fl_cp_opts co = fl_cp_opts_default();
    co.max_iter = o->cp_max_iter;
    co.tol = o->cp_tol;
    co.seed = o->seed + i; // distinct, reproducible streams per matrix
    return do_cp(info.name, W, rows, cols, rank, o->tol, o->budget, &co, r);
}

static size_t mat_count(const fl_mat *w) { return (size_t)w->rows * w->cols; }

/* Copy factors of r into matrix w of the new model (same spec). */
static void store(fl_mat *w, const mat_result *r) {
    size_t R = (size_t)w->rank;
    switch (w->method) {
    case FL_METHOD_DENSE: memcpy(w->w, r->f[0], mat_count(w) * sizeof(float)); break;
    case FL_METHOD_SVD:
        memcpy(w->u, r->f[0], (size_t)w->rows * R * sizeof(float));
        memcpy(w->v, r->f[1], R * (size_t)w->cols * sizeof(float));
        break;
    case FL_METHOD_CP:
        memcpy(w->a, r->f[0], 4 * R * sizeof(float));
        memcpy(w->b, r->f[1], (size_t)(w->rows / 4) * R * sizeof(float));
        memcpy(w->c, r->f[2], (size_t)w->cols * R * sizeof(float));
        break;
    }
    w->rel_error = r->rel_error;
}

/* Copy the source matrix's storage verbatim into r (target equals the current storage). */
static fl_status copy_source(const fl_mat *src, const char *name, mat_result *r) {
    size_t R = (size_t)src->rank, H = (size_t)src->rows / 4;
    size_t n[3] = {0};
    const float *p[3] = {0};
    switch (src->method) {
    case FL_METHOD_DENSE: n[0] = mat_count(src), p[0] = src->w; break;
    case FL_METHOD_SVD: n[0] = (size_t)src->rows * R, n[1] = R * src->cols, p[0] = src->u, p[1] = src->v; break;
    case FL_METHOD_CP:
        n[0] = 4 * R, n[1] = H * R, n[2] = (size_t)src->cols * R;
        p[0] = src->a, p[1] = src->b, p[2] = src->c;
        break;
    }
    r->spec = (fl_mat_spec){src->method, src->method == FL_METHOD_DENSE ? 0 : src->rank};
    for (int k = 0; k < 3 && n[k]; k++) {
        r->f[k] = fl_malloc(n[k] * sizeof(float));
        if (!r->f[k]) return fl_fail(FL_ERR_NOMEM, "%s: out of memory", name);
        memcpy(r->f[k], p[k], n[k] * sizeof(float));
    }
    r->rel_error = src->rel_error;
    return FL_OK;
}

static fl_status decompose_held(const fl_model *m, const fl_decomp_opts *opts,
                                fl_decomp_progress progress, void *ctx, fl_model **out) {
    if (!out) return fl_fail(FL_ERR_ARG, "decompose: out is NULL");
    *out = NULL;
    if (!m || !opts) return fl_fail(FL_ERR_ARG, "decompose: NULL model or options");
    fl_status st = check_opts(opts);
    if (st) return st;
    const size_t nmat = fl_model_num_matrices(m), L = (size_t)m->arch.layers;
    mat_result *res = fl_calloc(nmat, sizeof *res);
    fl_mat_spec *specs = fl_calloc(nmat, sizeof *specs);
    size_t big = 0;
    for (size_t i = 0; i < nmat; i++)
        if (mat_count(fl_model_mat_const(m, i)) > big) big = mat_count(fl_model_mat_const(m, i));
    float *W = fl_calloc(big, sizeof(float)), *tmp = fl_calloc(big, sizeof(float));
    fl_model *nm = NULL;
    if (!res || !specs || !W || !tmp) {
        st = fl_fail(FL_ERR_NOMEM, "decompose: out of memory");
        goto done;
    }
    for (size_t i = 0; i < nmat; i++) {
        fl_mat_spec target;
        if (opts->specs) target = opts->specs[i];
        else if (i < 2 * L) target = (fl_mat_spec){opts->method, opts->rank};
        else target = (fl_mat_spec){opts->include_head ? FL_METHOD_SVD : FL_METHOD_DENSE, opts->rank};
        if (target.method == FL_METHOD_DENSE) target.rank = 0;
        const fl_mat *src = fl_model_mat_const(m, i);
        fl_decomp_event ev = {.index = i, .done = 0, .spec = target};
        if (progress) progress(ctx, &ev);
        double t0 = fl_now_seconds();
        fl_mat_spec cur = fl_model_mat_spec(m, i);
        if (cur.method == target.method && (target.method == FL_METHOD_DENSE || cur.rank == target.rank)) {
            fl_matrix_info info;
            fl_model_matrix_info(m, i, &info);
            st = copy_source(src, info.name, &res[i]);
        } else {
            st = decompose_one(m, i, target, opts, W, tmp, &res[i]);
        }
        if (st) goto done;
        specs[i] = res[i].spec;
        ev.done = 1;
        ev.spec = res[i].spec;
        ev.cp_iterations = res[i].cp_iterations;
        ev.cp_converged = res[i].cp_converged;
        ev.rel_error = res[i].rel_error;
        ev.seconds = fl_now_seconds() - t0;
        if (progress) progress(ctx, &ev);
    }

    if ((st = fl_model_create(&m->arch, specs, &nm))) goto done;
    const fl_arch *a = &m->arch;
    if (m->embed) memcpy(nm->embed, m->embed, (size_t)a->vocab * a->input * sizeof(float));
    for (size_t l = 0; l < L; l++) {
        memcpy(nm->layer[l].b_ih, m->layer[l].b_ih, 4 * (size_t)a->hidden * sizeof(float));
        memcpy(nm->layer[l].b_hh, m->layer[l].b_hh, 4 * (size_t)a->hidden * sizeof(float));
    }
    if (m->head_b) memcpy(nm->head_b, m->head_b, (size_t)a->head_out * sizeof(float));
    for (size_t i = 0; i < nmat; i++) store(fl_model_mat(nm, i), &res[i]);
    if (m->tokenizer) {
        size_t n = strlen(m->tokenizer) + 1;
        if (!(nm->tokenizer = fl_malloc(n))) {
            st = fl_fail(FL_ERR_NOMEM, "decompose: out of memory copying the tokenizer");
            goto done;
        }
        memcpy(nm->tokenizer, m->tokenizer, n);
    }
    *out = nm;
    nm = NULL;
done:
    fl_model_free(nm);
    if (res)
        for (size_t i = 0; i < nmat; i++) result_free(&res[i]);
    fl_free(res);
    fl_free(specs);
    fl_free(W);
    fl_free(tmp);
    return st;
}

fl_status fl_model_decompose_ex(const fl_model *m, const fl_decomp_opts *opts,
                                fl_decomp_progress progress, void *ctx, fl_model **out) {
    if (!m) return decompose_held(m, opts, progress, ctx, out);
    fl_model_weights_hold(m); /* read outside any session (packed.c) */
    fl_status st = decompose_held(m, opts, progress, ctx, out);
    fl_model_weights_unhold(m);
    return st;
}

fl_status fl_model_decompose(const fl_model *m, const fl_decomp_opts *opts, fl_model **out) {
    return fl_model_decompose_ex(m, opts, NULL, NULL, out);
}
