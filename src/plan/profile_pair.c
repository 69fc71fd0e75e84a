/* The profile's projection measurements: the dense projection's rate as the runtime runs it
 * (fl_profile_rows_rate), and the SVD / CP efficiency figures as paired ratios (measure_method,
 * profile.c).
 *
 * An efficiency is the cost model's efficiency-1 prediction of a method's kernel over its measured
 * time. Taken alone, that divides the kernel's time at one moment by dense rates measured at others
 * (seconds to a minute apart), and on a shared VM the moments differ: two profiles of the same 2-core
 * Zen 3 VM an hour apart read the SVD input projection at 16 rows (H = 1024, rank 256) at 0.58 and
 * 1.44 of the dense rate (absolute 21 and 52 GFLOP/s), and bench_plan, run a minute after the second,
 * measured every SVD / CP candidate 1.1-2x slower than predicted (and 1.5-2.5x slower in the input
 * projection alone, bench_plan --breakdown), while the dense candidates stayed within ~20%. So each
 * figure is now timed in alternation with a dense reference the model predicts from the same rates,
 * and is the method's prediction / time over the reference's: a neighbour that slows the machine
 * during the measurement slows both sides and leaves the ratio, which then carries the method's
 * speed relative to dense, not the moment's load. Each side takes its fastest sample (other
 * processes only slow a sample down), as the two-thread speed-ups do. */
#include "plan_internal.h"
#include "recurrent.h"

#include <math.h>

/* Hidden size of the dense reference step for a method's W_hh of `bytes`: its (4 Hr, Hr) f32 W_hh
 * holds about as many bytes (16 Hr^2 ~ bytes), so it streams from the same level at the same rate;
 * a multiple of 16 (the step's block), at least 16. */
int fl_profile_reference_hidden(double bytes) {
    if (!(bytes > 0)) return 16;
    const double h = sqrt(bytes / 16.0);
    const int b = (int)floor(h / 16.0 + 0.5);
    return b < 1 ? 16 : 16 * b;
}

/* Efficiency of a method from paired samples: (pred_m / fastest of tm) / (pred_ref / fastest of tr),
 * pred_* the cost model's efficiency-1 predictions of the method and of the reference, tm and tr the
 * n alternate timings of each (n >= 1). 1 when any figure is not positive (nothing measured). */
double fl_profile_paired_efficiency(double pred_m, const double *tm, double pred_ref, const double *tr, int n) {
    if (!(pred_m > 0) || !(pred_ref > 0) || n < 1) return 1.0;
    double fm = tm[0], fr = tr[0];
    for (int i = 1; i < n; i++) {
        if (tm[i] < fm) fm = tm[i];
        if (tr[i] < fr) fr = tr[i];
    }
    if (!(fm > 0) || !(fr > 0)) return 1.0;
    return (pred_m / fm) / (pred_ref / fr);
}

/* Efficiency of the projection w as a session runs it (fl_rec_input_ws on mr: an SVD W_ih's packed
 * factors since session 7, a CP W_ih's since session 11 (z = x C, the per-gate scaling, a packed
 * product per gate, all in ws); fl_mat_apply where that declines: a level without gemm_pk) on `rows` rows
 * against the dense W_ih refw run as a session runs it (fl_rec_input on ref, an fl_rec of refw's
 * layer: the packed kernel where the kernel level has one, else fl_mat_apply), n alternate samples
 * each, each the second-fastest of 3 calls, weights warm as in measure_rows. Both are predicted at
 * the same GEMM rate (rate_a, cost.c), so the predictions are the flops. The reference is the
 * runtime's dense path, not the BLAS product measure_rows times: the model's rate_a predicts the
 * dense sessions (bench_plan: within ~20%) while the packed kernel runs ~1.4-2.5x BLAS's rate at 35
 * rows on the same shape in the same moment, so an efficiency against BLAS carried that gap into
 * every SVD / CP projection (bench_plan --breakdown: measured 1.5-2.5x their model term).
 * x: (rows, max cols) input, y: (rows, max rows) output, ws: w's workspace for `rows`. */
double fl_profile_gemm_efficiency(const fl_mat *w, fl_rec *mr, fl_rec *ref, const fl_mat *refw, int rows,
                                  const float *x, float *y, float *ws, int n) {
    double tm[16], tr[16], s[3];
    if (n > 16) n = 16;
    const bool mpacked = fl_rec_input_ws(mr, rows, x, w->cols, NULL, y, w->rows, ws);
    if (!mpacked) fl_mat_apply(w, rows, x, w->cols, 0.0f, y, w->rows, ws);
    const bool packed = fl_rec_input(ref, rows, x, refw->cols, NULL, y, refw->rows);
    for (int i = 0; i < n; i++)
        for (int side = 0; side < 2; side++) {
            for (int j = 0; j < 3; j++) {
                double t0 = fl_now_seconds();
                if (!side && mpacked) fl_rec_input_ws(mr, rows, x, w->cols, NULL, y, w->rows, ws);
                else if (!side) fl_mat_apply(w, rows, x, w->cols, 0.0f, y, w->rows, ws);
                else if (packed) fl_rec_input(ref, rows, x, refw->cols, NULL, y, refw->rows);
                else fl_mat_apply(refw, rows, x, refw->cols, 0.0f, y, refw->rows, NULL);
                s[j] = fl_now_seconds() - t0;
            }
            fl_sort_doubles(s, 3);
            (side ? tr : tm)[i] = s[1];
        }
    return fl_profile_paired_efficiency((double)fl_mat_flops(w) * rows, tm, (double)fl_mat_flops(refw) * rows, tr, n);
}

/* Rate of the runtime's dense input projection on n rows of a (2048, 1024) W_ih (8 MiB), the pick-th
 * fastest of reps (<= 16) timings: fl_rec_input,
 * the packed kernel a session runs it with (fl_mat_apply, BLAS, where the kernel level has none).
 * Until session 7 this timed fl_mat_apply everywhere, while sessions ran the packed kernel: at 16
 * to 35 rows that runs 1.6-2.5x BLAS's rate on the same shapes in the same moment (2-core Zen 3 VM;
 * 0.8-1.0x from 256 rows on), and BLAS's small-row figure read 5.4 to 36 GFLOP/s across profiles. */
fl_status fl_profile_rows_rate(int n, int reps, int pick, double *flops) {
    const int M = 2048, K = 1024;
    fl_arch a = {.input = K, .hidden = M / 4, .layers = 1, .head = FL_HEAD_NONE};
    fl_model *m = NULL;
    fl_rec *r = NULL;
    float *x = NULL;
    fl_status st = fl_model_create(&a, NULL, &m);
    if (!st) st = fl_model_init_random(m, 1);
    if (!st) st = fl_rec_create(&m->layer[0], 1, 1, &r);
    if (!st && !(x = fl_calloc((size_t)n * (K + M), sizeof(float))))
        st = fl_fail(FL_ERR_NOMEM, "out of memory measuring the matrix-product rate");
    if (st) goto done;
    float *y = x + (size_t)n * K;
    for (size_t i = 0; i < (size_t)n * K; i++) x[i] = (float)(i % 13) * 0.01f;
    const fl_mat *w = &m->layer[0].wih;
    const bool packed = fl_rec_input(r, n, x, K, NULL, y, M);
    if (!packed) fl_mat_apply(w, n, x, K, 0.0f, y, M, NULL);
    double s[16];
    if (reps > 16) reps = 16;
    int inner = n >= 64 ? 2 : 8;
    for (int i = 0; i < reps; i++) {
        double t0 = fl_now_seconds();
        for (int k = 0; k < inner; k++)
            if (!packed || !fl_rec_input(r, n, x, K, NULL, y, M)) fl_mat_apply(w, n, x, K, 0.0f, y, M, NULL);
        s[i] = (fl_now_seconds() - t0) / inner;
    }
    fl_sort_doubles(s, (size_t)reps);
    *flops = 2.0 * M * K * (double)n / s[pick < reps ? pick : reps - 1];
done:
    fl_free(x);
    fl_rec_free(r);
    fl_model_free(m);
    return st;
}
