/* Cost model, the f32 SVD / CP input projection (W_ih) priced by its stages (a profile with the
 * input projection's figures, fl_profile.lr_ih_*: format 4; the output walks, format 5). fl_rec_input_ws runs such a W_ih, for
 * the n = T B rows of a sequence at once, as packed products (gemm_pk: the weights in 64-column
 * panels, every panel computed whole, the chunks of panels split over the pool's threads when the
 * product has >= parallel_proj_macs multiply-adds, fl_rec_gemm_pk):
 *   stage 1   SVD: t (n, R) = x V^T; CP: z (n, R) = x C: ceil(R / 64) panels over K = in inputs
 *             (a rank of 40 computes a whole panel of 64: 1.6x its outputs' flops);
 *   stage 2   SVD: gx (n, 4H) = t U^T + b, ceil(4H / 64) panels at K = R; CP: zs = z scaled per
 *             gate (on the caller: n 4R multiplies, left out), then for each gate g gx[:, g] =
 *             zs[:, g] B^T + b[g], ceil(H / 64) panels at K = R, four products; the bias fused;
 *             the output, n 4H floats (16.8 MB a layer at 1500 batch 20), written beyond the
 *             private level: at small K the write stream, not the products, sets the time.
 * Each stage its roofline, from the profile's timings of gemm_pk itself (lr_ih_in_seconds per row,
 * input and panel; lr_ih_out_seconds[m] per row and panel at K = R, its output walking a buffer
 * beyond the private level; weights in L2; ranks 16..256 and rows 1..256, interpolated as the
 * step's tables, fl_cost_lr_table) and the streaming curve:
 *   comp_s = n K_s P_s s_s(R, n) x t_s / scale_s + w_s
 *            (P_s: the busiest thread's panels, ceil(panels / t_s) on t_s threads, per product; K_1
 *            = in, K_2 = 1; scale_s the profile's speed-up of a projection split over t_s threads
 *            at n rows, the two vCPUs slowing each other; one panel runs on the caller alone, at
 *            one thread's speed);
 *   w_s    = c_s W_s / bw(W_s, t_s) when a thread's share of the packed weights W_s (CP's B: per
 *            gate product) is beyond the usable share of the private level (the largest below the
 *            last), else 0: the kernel walks its rows in chunks of a quarter of that level's
 *            reported size (PK_CHUNK_BYTES: 512 KB for a 2 MB L2; the AVX2 kernel's 128 KB for Zen
 *            3's 512 KB), c_s = ceil(n 4 K_s / chunk) of them (CP: per gate product), every chunk
 *            streaming all the panels, and the first tile's prefetch of the next panel stalls it
 *            (it does not overlap the products: 1500 SVD h/4 batch 1 measured 87 us a step, the
 *            products alone price 66 and with w_s 88; stage 1 at rank 375 over 1500 inputs
 *            timed ad hoc 0.85 ns a row, input and panel against 0.73 at rank 128); else, when W_s
 *            fits but the whole projection (x, gx and both stages' weights: its bytes F) does not,
 *            c_s W_s / bw(F, t_s) with c_s = 1: the first chunk streams them (CP: the first gate
 *            product) from where the projection's other bytes pushed them, the others find them
 *            (session 14: batch 1, stage 1 ran 1.13-1.33x its table with its weights so streamed,
 *            1500 SVD h/16 2.7-2.9 us a step a layer against 2.2 priced without, 2.9 with);
 *   s_2    also carries e(F), what stage 2's output writes cost once the last level no longer
 *            keeps them: the profile's output walks (lr_ih_walk_*: stage 2 at rank 64 with its
 *            output walking buffers of 1, 2 and 4 x the table's) less the first, linear in F
 *            between them, held beyond (session 14: the gx of 1500 at batch 20, 16.8 MB a layer
 *            with its 4.2 MB of input rows, ran stage 2 1.0-1.3x its table; the same kernel walking
 *            22 MB 1.3x what it takes walking 5 MB, when another walk dirtied the last level);
 *   mem_s  = (t_s X_s + c_s W_s) / bw(t_s X_s + W_s, t_s)   (X_s the stage's input rows, read
 *            by every thread: x (n, in), then t or zs; the output's writes are in s_2),
 *   t = max(mem_1, comp_1) + max(mem_2, comp_2), per sequence; the cost model takes it per step
 *   (/ T). Before (and for profiles without the figures) a W_ih was priced as a dense GEMM of its
 *   flops at the GEMM rate times an efficiency timed at H 1024: 1500 CP h/16 batch 20 344 us a step
 *   against 419-501 measured (session 13). */
#include "plan_internal.h"
#include "kernels/kernels.h"
#include "tuning_consts.h"

#include <math.h>

bool fl_cost_has_lowrank_ih(const fl_profile *p) {
    return p->lr_ih_in_seconds[0][0] > 0 && p->lr_ih_out_seconds[FL_METHOD_SVD][0][0] > 0 &&
           p->lr_ih_out_seconds[FL_METHOD_CP][0][0] > 0;
}

/* Panels the busiest of `threads` threads computes of a product of `panels`, and the slow-down of
 * each (threads / scale: n threads computing at once deliver the measured speed-up, not n). One
 * panel, or one thread: the caller's, at one thread's speed. */
static double busiest(int panels, int threads, double scale, double *slow) {
    *slow = 1.0;
    if (threads <= 1 || panels <= 1) return panels;
    const int t = threads < panels ? threads : panels;
    if (scale > 0 && scale < t) *slow = t / scale;
    return (double)((panels + t - 1) / t);
}

/* One stage: `prods` products of the same packed weights (w bytes, np panels), each over the n rows
 * of kx inputs (x bytes of input rows in all), on t threads at speed-up `scale`, `per` seconds a row
 * and panel; ws the whole projection's bytes (both stages' weights, x and the output): its comp and
 * mem (header). */
static void stage(const fl_profile *p, int np, int prods, double kx, double n, double per, int t, double scale,
                  double x, double w, double ws, double *comp, double *mem) {
    double slow, bw;
    const double busy = prods * busiest(np, t, scale, &slow);
    const int tt = t > 1 && np > 1 ? t : 1;
    /* the private level a core streams its chunks through: its capacity and, for the kernel's chunk,
     * the size the system reports (what the kernel's constant was chosen for), else the measured one */
    const fl_cache_level *l = &p->level[fl_profile_private_level(p)];
    const double chunk = (double)(l->reported_bytes > 0 ? l->reported_bytes : l->bytes) / 4;
    const double passes = prods * fmax(1.0, ceil(n * 4.0 * kx / chunk)), usable = FL_FIT_FRACTION * (double)l->bytes;
    *comp = n * busy * per * slow;
    if (w / tt > usable) { /* every chunk streams w */
        fl_cost_pick_level(p, w, tt, &bw);
        *comp += passes * w / bw;
    } else if (ws / tt > usable) { /* w fits, the projection does not: the first chunk streams w once
                                       * (CP's later gate products find it in the private level) */
        fl_cost_pick_level(p, ws, tt, &bw);
        *comp += w / bw;
    }
    fl_cost_pick_level(p, tt * x + w, tt, &bw);
    *mem = (tt * x + passes * w) / bw;
}

double fl_cost_lowrank_ih_write(const fl_profile *p, double bytes) {
    const double *b = p->lr_ih_walk_bytes, *s = p->lr_ih_walk_seconds;
    const int n = FL_PROFILE_IH_WALKS;
    if (!(b[0] > 0) || bytes <= b[0]) return 0;
    int i = 1;
    while (i < n - 1 && bytes > b[i]) i++;
    const double u = fmin(1.0, (bytes - b[i - 1]) / (b[i] - b[i - 1])), v = s[i - 1] + u * (s[i] - s[i - 1]);
    return fmax(0.0, v - s[0]);
}

void fl_cost_lowrank_ih(const fl_profile *p, fl_method m, int H, int in, int R, double n, int t1, int t2,
                        double scale1, double scale2, fl_lr_cost *out) {
    const bool cp = m == FL_METHOD_CP;
    const int np1 = (R + FL_PK_NC - 1) / FL_PK_NC, np2 = cp ? (H + FL_PK_NC - 1) / FL_PK_NC : (4 * H + FL_PK_NC - 1) / FL_PK_NC;
    *out = (fl_lr_cost){0};
    const double w1 = 4.0 * np1 * FL_PK_NC * (double)in, w2 = 4.0 * np2 * FL_PK_NC * (double)R;
    const double ws = 4.0 * n * (in + 4.0 * H) + w1 + w2; /* x, gx and the weights */
    /* stage 1 (in the fields a step's price holds its projection in: here simply the first stage) */
    stage(p, np1, 1, in, n, in * fl_cost_lr_table(p->lr_ih_in_seconds, R, n), t1, scale1, 4.0 * n * in, w1, ws,
          &out->dup_comp, &out->dup_mem);
    /* stage 2, its output's writes beyond what the last level keeps dirty at the projection's bytes */
    const double per2 = fl_cost_lr_table(p->lr_ih_out_seconds[m], R, n) + fl_cost_lowrank_ih_write(p, ws);
    stage(p, np2, cp ? 4 : 1, R, n, per2, t2, scale2, 4.0 * n * R * (cp ? 4.0 : 1.0), w2, ws, &out->comp, &out->mem);
}
