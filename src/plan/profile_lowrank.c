/* Machine profile, the f32 SVD / CP step's parts (fl_profile.lr_proj_seconds, lr_panel_seconds,
 * gx_copy_seconds): the kernels fl_rec_step runs for such a step, timed alone on a small grid of
 * ranks and rows with their weights in L2, and the copy of a step's gx rows from the last level.
 * Where the kernels read gx in place (fl_kernels.gx_in_place: avx512), no step copies: the panels at
 * B > 1 then take their gx rows from a walk through a buffer the last level holds, as a session's
 * steps do, so the panel figures carry those reads, and the copy figure is 0. At B > 1 the panels
 * also write h walking such a buffer (format 5), as a session's steps write the layer's output
 * sequence ((T B, H): 4.2 MB at 1500 batch 20); timed against a fixed h in one process, the SVD
 * panel at 16-64 rows read 3-7% more (ranks 64, 128), as a session's steps against the same steps
 * writing a small buffer (685 / 649 us, 1500 SVD h/16 batch 20, session 14).
 * The same three kernels again with their weights from beyond the private level (format 5:
 * lr_proj_far_seconds, lr_panel_far_seconds): each call reads the next of the copies of its weights
 * that fill a buffer of beyond_private bytes, as a step whose V + U exceeds the private level reads
 * them (U's stream evicts V between steps; alone, V stays in L2 from call to call). Far / near
 * here (10:55 UTC): proj 3.8-5.3x at one row (a memory-bound pass over V from L3), 1.2-1.3x at 16
 * rows (6 passes, the first from L3), 1.03-1.1x at 64; the SVD panel 2.5-4.4x at one row, 1.1-1.3x
 * at 16. The far table's last rows point (256) is the near one's, not timed (see the pass).
 * The far tables take a draw from ~0.27 s to ~0.31 s (10:55 UTC, this Xeon).
 * The cost model (cost_lowrank.c) prices the step from them and the streaming curve: the kernels'
 * own speed at each rank and batch, where the efficiencies before it scaled a dense step of as
 * many bytes by ratios measured at one hidden size (1024), which left the batch-20 steps of hidden
 * 650 and 1500 1.03-1.75x under-predicted (session 11).
 *
 * Timed FL_PROFILE_LR_DRAWS times in every pass of a profile run (fl_profile_run_pass, seconds
 * apart; bench_plan puts a round of its candidates after each pass), each figure the median of REPS
 * samples of >= 0.1 ms, then the median of all the draws (fl_profile_lowrank_apply), as the other
 * rates the predictions scale by (profile_rates.c: why the typical sample, not the fastest). One draw
 * takes about 0.31 s with the far tables and the input projection's stages. Three draws, not one:
 * this VM runs these kernels 1.3x slower for seconds at a time, and with one draw a pass the median
 * of five passes read either speed (session 13: the SVD panel at rank 64, 16 rows, 6.07 ns in one
 * bench_plan run, 5.06 in the next, the candidates alike).
 *
 * The f32 SVD / CP input projection's two stages (fl_profile.lr_ih_*, format 4) on the same grid:
 * gemm_pk (the packed product fl_rec_input_ws runs) at rank-j outputs over K = PROJ_K inputs
 * (stage 1), and at K = rank j into IH_G outputs, SVD's one product or CP's four of IH_G / 4 at x
 * row stride 4 K (stage 2), the weights in L2 and stage 2's output walking a buffer the size of
 * the gx copy's (beyond the private level, as a sequence's gx, (T B, 4H), is at batch 20: at small K
 * the write stream is most of stage 2's time, 3x the products alone at K 16 measured ad hoc). Each
 * figure per 64-column panel: the kernel computes a partly empty panel whole, so the cost model
 * counts panels, not outputs. About 0.1 s more a pass.
 *
 * Stage 2's output walks (fl_profile.lr_ih_walk_*, format 5): SVD stage 2 at rank 64 on 64 rows of
 * 4000 outputs (a gx row's width, not the table's 1000) a call, its output walking buffers of 1, 2
 * and 4 x the table's (5, 11 and 22 MB here), per row and panel: what the writes cost once the last
 * level no longer keeps them (session 14: on this VM the same kernel took 1.3x as long walking 22 MB
 * as 5, though the read curve is flat to 67 MB). About 0.05-0.1 s more a draw. */
#include "profile_internal.h"
#include "kernels/kernels.h"

#include <string.h>

#define REPS 5
#define MIN_SAMPLE 1e-4 /* seconds a sample lasts at least */

enum {
    PROJ_K = 1024, /* the proj kernel's inputs (V: PROJ_K x R floats, 64 KiB to 1 MiB) */
    PANEL_H = 256, /* the gate panel's hidden units (U: R x 4 PANEL_H floats, 64 KiB to 1 MiB) */
    MAX_ROWS = 256,
    IH_G = 1000, /* stage 2's outputs: 16 panels, rows of 4000 bytes (half of them off a line's start) */
    IH_WIDE = 4000, /* the output walks' outputs (63 panels, rows of 16000 bytes: a gx row's width) */
    WALK_ROWS = 64, WALK_K = 64, WALK_REPS = 3,
};

int fl_profile_lr_rank(int j) { return 16 << j; }

int fl_profile_lr_rows(int k) { return k == 0 ? 1 : 1 << (2 * k); }

/* One kernel call to time. */
typedef struct lr_call {
    const fl_kernels *k;
    int part; /* 0 proj, 1 SVD panel, 2 CP panel; W_ih: 3 stage 1, 4 SVD stage 2, 5 CP stage 2 */
    int B, R;
    const float *w, *x; /* weights (packed as the runtime packs them); x: h (proj), t (SVD) or zs (CP) */
    size_t wcopy;       /* > 0: w holds ncopy copies wcopy floats apart, each call the next one */
    int ncopy, wi;
    const float *gx;  /* the panels' gx rows: gx + pos, pos advancing B rows a call through ngx floats
                       * (a session's walk over its projection's output) when ngx > 0, else fixed */
    size_t ngx, pos;
    float *y, *c, *h; /* proj: y = t (B, R); panels: c, h (B, PANEL_H) */
    float *hw;        /* nhw > 0: the panels write h at hw + hpos, advancing B rows a call (a */
    size_t nhw, hpos; /* session's steps writing the layer's output rows), else at h */
    const float *bias; /* stage 2's (IH_G) */
    float *out;        /* stage 2's output buffer: out_n floats, written from out_at on, wrapping */
    size_t out_n, out_at;
} lr_call;

static void call(lr_call *a) {
    const int nblk = PANEL_H / FL_REC_NB;
    if (a->part >= 4) { /* stage 2: (B, IH_G) at the buffer's next rows, as a sequence's gx */
        const size_t n = (size_t)a->B * IH_G;
        if (a->out_at + n > a->out_n) a->out_at = 0;
        float *y = a->out + a->out_at;
        a->out_at += n;
        if (a->part == 4) {
            a->k->gemm_pk(a->B, IH_G, a->R, a->x, a->R, a->w, a->bias, y, IH_G);
            return;
        }
        for (int g = 0; g < 4; g++) /* one packed B (R x IH_G / 4) for the four gates, as fl_rec_input_ws */
            a->k->gemm_pk(a->B, IH_G / 4, a->R, a->x + (size_t)g * a->R, 4 * a->R, a->w, a->bias + g * (IH_G / 4),
                          y + g * (IH_G / 4), IH_G);
        return;
    }
    const size_t rows = (size_t)a->B * 4 * PANEL_H, hrows = (size_t)a->B * PANEL_H;
    const float *gx = a->gx, *w = a->w;
    float *h = a->h;
    if (a->ngx && (a->part == 1 || a->part == 2)) {
        if (a->pos + rows > a->ngx) a->pos = 0;
        gx += a->pos;
        a->pos += rows;
    }
    if (a->nhw && (a->part == 1 || a->part == 2)) {
        if (a->hpos + hrows > a->nhw) a->hpos = 0;
        h = a->hw + a->hpos;
        a->hpos += hrows;
    }
    if (a->wcopy) {
        w += (size_t)a->wi * a->wcopy;
        a->wi = (a->wi + 1) % a->ncopy;
    }
    switch (a->part) {
    case 3: a->k->gemm_pk(a->B, a->R, PROJ_K, a->x, PROJ_K, w, NULL, a->y, a->R); break;
    case 0: a->k->proj(a->B, PROJ_K, a->R, w, a->x, PROJ_K, a->y, a->R); break;
    case 1: a->k->gate_cell(0, nblk, PANEL_H, a->R, a->B, w, a->x, a->R, gx, 4 * PANEL_H, a->c, h, PANEL_H); break;
    default: a->k->cp_gate_cell(0, nblk, PANEL_H, a->R, a->B, w, a->x, gx, 4 * PANEL_H, a->c, h, PANEL_H); break;
    }
}

/* Median seconds of one call over REPS samples, each of enough calls to last MIN_SAMPLE. */
static double time_call(lr_call *a) {
    call(a); /* warm: the weights into L2 */
    int inner = 1;
    for (;;) {
        double t0 = fl_now_seconds();
        for (int i = 0; i < inner; i++) call(a);
        if (fl_now_seconds() - t0 > MIN_SAMPLE || inner >= (1 << 20)) break;
        inner *= 2;
    }
    double s[REPS];
    for (int r = 0; r < REPS; r++) {
        double t0 = fl_now_seconds();
        for (int i = 0; i < inner; i++) call(a);
        s[r] = (fl_now_seconds() - t0) / inner;
    }
    fl_sort_doubles(s, REPS);
    return s[REPS / 2];
}

/* Bytes of a buffer whose rows, walked in order, come from the last level as a sequence's gx rows do
 * (written long before their step): 4 x the largest private level (fl_profile_private_bytes), at
 * most a quarter of the last level, at least 1 MiB. p has at least one level. With the knee alone
 * (213 KiB on the Zen 5 of session 21, whose L2 is 1 MiB) the buffer was 1 MiB, the L2's own size;
 * at 3.5 MB there the far proj figure at rank 64 reads the same (82-102 GB/s in seven profiles,
 * 80-102 in the 24 before: a 1 MiB cycle already missed the L2), so the size no longer rests on
 * the knee, and no figure moved. */
size_t fl_profile_beyond_private(const fl_profile *p) {
    const size_t priv = (size_t)fl_profile_private_bytes(p), last = p->level[p->n_levels - 1].bytes;
    size_t bytes = 4 * priv;
    if (bytes > last / 4) bytes = last / 4;
    if (bytes < ((size_t)1 << 20)) bytes = (size_t)1 << 20;
    return bytes;
}

/* Seconds per byte of copying 128 KiB of rows (a batch-20 step's gx at hidden 400) from a buffer of
 * beyond_private bytes into one held in cache, walking the buffer (fl_rec_step's copy at B > 1, where
 * the kernels do not read gx in place). Median of REPS samples. */
static fl_status time_copy(const fl_profile *p, double *out) {
    const size_t bytes = fl_profile_beyond_private(p);
    const size_t chunk = (size_t)128 << 10, n = bytes / chunk;
    char *src = fl_malloc(n * chunk + chunk);
    if (!src) return fl_fail(FL_ERR_NOMEM, "out of memory measuring the gx copy");
    char *dst = src + n * chunk;
    memset(src, 1, n * chunk + chunk);
    size_t pos = 0;
    const int per = (int)n; /* copies per sample: the whole buffer once */
    double s[REPS];
    for (int r = -1; r < REPS; r++) { /* r = -1: warm */
        double t0 = fl_now_seconds();
        for (int i = 0; i < per; i++, pos = (pos + 1) % n) memcpy(dst, src + pos * chunk, chunk);
        if (r >= 0) s[r] = (fl_now_seconds() - t0) / ((double)per * chunk);
    }
    fl_sort_doubles(s, REPS);
    *out = s[REPS / 2];
    fl_free(src);
    return FL_OK;
}

/* Stage 2's output walks (fl_profile.lr_ih_walk_*, format 5) into lp's draw q: SVD stage 2 at rank
 * WALK_K, WALK_ROWS rows of IH_WIDE outputs a call, its output walking buffers of 1, 2 and 4 x
 * beyond_private, each the median of WALK_REPS walks through the whole buffer (after one to warm
 * it), per row and panel. w: the packed U (63 panels of WALK_K x 64), x: t (WALK_ROWS, WALK_K). */
static fl_status time_walks(const fl_profile *p, const float *w, const float *x, fl_lr_passes *lp, int q) {
    const fl_kernels *k = fl_kernels_get();
    const size_t call = (size_t)WALK_ROWS * IH_WIDE, base = fl_profile_beyond_private(p) / sizeof(float);
    const size_t most = base << (FL_PROFILE_IH_WALKS - 1);
    float *buf = fl_calloc(most + IH_WIDE, sizeof(float));
    if (!buf) return fl_fail(FL_ERR_NOMEM, "out of memory measuring the input projection's output walks");
    float *bias = buf + most;
    const double np = (IH_WIDE + FL_PK_NC - 1) / FL_PK_NC;
    for (int i = 0; i < FL_PROFILE_IH_WALKS; i++) {
        const size_t calls = (base << i) / call;
        double s[WALK_REPS];
        for (int r = -1; r < WALK_REPS; r++) { /* r = -1: warm */
            const double t0 = fl_now_seconds();
            for (size_t c = 0; c < calls; c++) k->gemm_pk(WALK_ROWS, IH_WIDE, WALK_K, x, WALK_K, w, bias, buf + c * call, IH_WIDE);
            if (r >= 0) s[r] = (fl_now_seconds() - t0) / ((double)calls * WALK_ROWS * np);
        }
        fl_sort_doubles(s, WALK_REPS);
        lp->ih_walk[q][i] = s[WALK_REPS / 2];
        lp->ih_walk_bytes[i] = (double)(calls * call * sizeof(float));
    }
    fl_free(buf);
    return FL_OK;
}

/* Pass q's figures of the input projection's stages (fl_profile.lr_ih_*) into lp; none (all 0: the
 * cost model then prices such a W_ih as before) on a kernel level without gemm_pk, whose sessions
 * project through fl_mat_apply. */
static fl_status time_ih(const fl_profile *p, fl_lr_passes *lp, int q) {
    if (!fl_kernels_get()->gemm_pk) return FL_OK;
    const int Rmax = fl_profile_lr_rank(FL_PROFILE_LR_RANKS - 1);
    /* w: V packed ((Rmax / 64) panels of PROJ_K x 64) or U / B packed (16 panels of Rmax x 64), the
     * larger; x (MAX_ROWS, PROJ_K) or t / zs (MAX_ROWS, 4 Rmax); t out (MAX_ROWS, Rmax); bias */
    const size_t nw = (size_t)FL_PK_NC * (PROJ_K * (Rmax / FL_PK_NC) > 16 * Rmax ? PROJ_K * (Rmax / FL_PK_NC) : 16 * Rmax);
    const size_t nx = (size_t)MAX_ROWS * (PROJ_K > 4 * Rmax ? PROJ_K : 4 * Rmax), ny = (size_t)MAX_ROWS * Rmax;
    const size_t nout = fl_profile_beyond_private(p) / sizeof(float);
    float *buf = fl_calloc(nw + nx + ny + IH_G + nout, sizeof(float));
    if (!buf) return fl_fail(FL_ERR_NOMEM, "out of memory measuring the low-rank input projection");
    float *w = buf, *x = w + nw, *y = x + nx, *bias = y + ny, *out = bias + IH_G; /* w first: 64-byte aligned */
    for (size_t i = 0; i < nw; i++) w[i] = (float)((int)((i * 2654435761u) % 201) - 100) * 1e-4f;
    for (size_t i = 0; i < nx; i++) x[i] = (float)((int)(i % 29) - 14) * 0.03f;
    for (int i = 0; i < IH_G; i++) bias[i] = (float)(i % 7) * 1e-3f;
    lr_call a = {.k = fl_kernels_get(), .w = w, .x = x, .y = y, .bias = bias, .out = out, .out_n = nout};
    for (int j = 0; j < FL_PROFILE_LR_RANKS; j++)
        for (int k = 0; k < FL_PROFILE_LR_ROWS; k++) {
            a.R = fl_profile_lr_rank(j), a.B = fl_profile_lr_rows(k);
            const int i = j * FL_PROFILE_LR_ROWS + k, np1 = (a.R + FL_PK_NC - 1) / FL_PK_NC,
                      np2 = (IH_G / 4 + FL_PK_NC - 1) / FL_PK_NC * 4;
            a.part = 3;
            lp->ih_in[q][i] = time_call(&a) / ((double)a.B * PROJ_K * np1);
            for (a.part = 4; a.part <= 5; a.part++) /* SVD: 16 panels of IH_G; CP: 4 x 4 of IH_G / 4 */
                lp->ih_out[q][a.part - 4][i] = time_call(&a) / ((double)a.B * (a.part == 4 ? (IH_G + FL_PK_NC - 1) / FL_PK_NC : np2));
        }
    FL_ASSERT((size_t)((IH_WIDE + FL_PK_NC - 1) / FL_PK_NC) * FL_PK_NC * WALK_K <= nw && (size_t)WALK_ROWS * WALK_K <= nx);
    const fl_status st = time_walks(p, w, x, lp, q);
    fl_free(buf);
    return st;
}

/* Bytes of one copy of part's weights at rank R (proj: V, PROJ_K x R; SVD panel: U, R x 4 PANEL_H;
 * CP panel: B, R x PANEL_H), rounded up to a cache line. */
static size_t part_bytes(int part, int R) {
    const size_t n = (size_t)R * (part == 0 ? PROJ_K : part == 1 ? 4 * PANEL_H : PANEL_H);
    return (n * sizeof(float) + 63) / 64 * 64;
}

fl_status fl_profile_lowrank_pass(const fl_profile *p, fl_lr_passes *lp) {
    if (!p || !lp) return fl_fail(FL_ERR_ARG, "low-rank pass: NULL argument");
    if (lp->n >= FL_PROFILE_MAX_DRAWS) return fl_fail(FL_ERR_ARG, "profile: more than %d low-rank draws", lp->n);
    if (p->n_levels < 1) return fl_fail(FL_ERR_ARG, "profile: no cache levels to size the gx buffers by");
    const int Rmax = fl_profile_lr_rank(FL_PROFILE_LR_RANKS - 1), G = 4 * PANEL_H;
    /* weights: copies of V (PROJ_K, Rmax) / U panel (Rmax, 4 PANEL_H) spanning far bytes (beyond
     * the private level: the far tables take each call's weights from the next copy; the near
     * ones from the first copy, left in L2 by the call before);
     * x: h (MAX_ROWS, PROJ_K) / t (MAX_ROWS, Rmax) / zs (MAX_ROWS, 4, Rmax); y: t out */
    const size_t far = fl_profile_beyond_private(p), one = part_bytes(0, Rmax) > part_bytes(1, Rmax) ? part_bytes(0, Rmax) : part_bytes(1, Rmax);
    const size_t nw = (far > 2 * one ? far : 2 * one) / sizeof(float);
    const size_t nx = (size_t)MAX_ROWS * (PROJ_K > 4 * Rmax ? PROJ_K : 4 * Rmax);
    const size_t nh = (size_t)MAX_ROWS * PANEL_H, ny = (size_t)MAX_ROWS * Rmax;
    /* gx: one fixed set of rows, or where the kernels read a step's gx in place (no copy), a walk
     * through a buffer held by the last level, as a session's steps walk their projection's output;
     * hw: the output rows the panels walk at B > 1, as a session's steps write the layer's output */
    const fl_kernels *kern = fl_kernels_get();
    size_t ng = (size_t)MAX_ROWS * G, walk = 0;
    if (kern->gx_in_place) {
        walk = far / sizeof(float);
        if (walk < 2 * ng) walk = 2 * ng;
        ng = walk;
    }
    const size_t nhw = far / sizeof(float) > 2 * nh ? far / sizeof(float) : 2 * nh;
    float *buf = fl_calloc(nw + nx + ng + 2 * nh + ny + nhw, sizeof(float));
    if (!buf) return fl_fail(FL_ERR_NOMEM, "out of memory measuring the low-rank step's kernels");
    float *w = buf, *x = w + nw, *gx = x + nx, *c = gx + ng, *h = c + nh, *y = h + nh, *hw = y + ny;
    for (size_t i = 0; i < nw; i++) w[i] = (float)((int)((i * 2654435761u) % 201) - 100) * 1e-4f;
    for (size_t i = 0; i < nx; i++) x[i] = (float)((int)(i % 29) - 14) * 0.03f;
    for (size_t i = 0; i < ng; i++) gx[i] = (float)((int)(i % 17) - 8) * 0.25f;
    const int q = lp->n;
    lr_call a = {.k = kern, .w = w, .x = x, .gx = gx, .y = y, .c = c, .h = h, .hw = hw};
    for (int j = 0; j < FL_PROFILE_LR_RANKS; j++)
        for (int k = 0; k < FL_PROFILE_LR_ROWS; k++) {
            a.R = fl_profile_lr_rank(j), a.B = fl_profile_lr_rows(k);
            a.ngx = a.B > 1 ? walk : 0; /* a step copies or walks its gx at B > 1 only */
            a.nhw = a.B > 1 ? nhw : 0;  /* and writes its h into a sequence's rows */
            const int i = j * FL_PROFILE_LR_ROWS + k;
            for (a.part = 0; a.part < 3; a.part++) {
                double t[2]; /* near, far */
                for (int f = 0; f < 2; f++) {
                    const size_t wb = part_bytes(a.part, a.R);
                    a.wcopy = f ? wb / sizeof(float) : 0, a.ncopy = f ? (int)(nw * sizeof(float) / wb) : 1, a.wi = 0;
                    /* c from 0 for each panel figure: a long run on one gx would drift c, not the timing */
                    memset(c, 0, nh * sizeof(float));
                    /* the far figure at the last rows point is the near one: there a call reads its
                     * weights once in 86 passes (proj) or once for 256 rows (panels), 0.94-1.05x
                     * the near figure when timed (10:55 UTC, session 14), and its calls are half
                     * of the far table's time */
                    t[f] = f && k == FL_PROFILE_LR_ROWS - 1 ? t[0] : time_call(&a);
                }
                for (int f = 0; f < 2; f++)
                    if (a.part == 0) (f ? lp->proj_far : lp->proj)[q][i] = t[f] / ((double)a.B * PROJ_K);
                    else (f ? lp->panel_far : lp->panel)[q][a.part - 1][i] = t[f] / ((double)a.B * PANEL_H);
            }
        }
    fl_free(buf);
    lp->copy[q] = 0; /* reading gx in place, a step copies nothing */
    fl_status st = kern->gx_in_place ? FL_OK : time_copy(p, &lp->copy[q]);
    if (!st) st = time_ih(p, lp, q);
    if (!st) lp->n++;
    return st;
}

/* dst (N) = each entry's median over the n draws of a table whose draw q starts at first + q stride. */
static void median_table(const double *first, size_t stride, int n, double *dst) {
    enum { N = FL_PROFILE_LR_RANKS * FL_PROFILE_LR_ROWS };
    double v[FL_PROFILE_MAX_DRAWS * N];
    for (int q = 0; q < n; q++) memcpy(v + q * N, first + q * stride, N * sizeof *v);
    fl_profile_curve_median(v, n, N, dst);
}

void fl_profile_lowrank_apply(const fl_lr_passes *lp, fl_profile *p) {
    if (!lp || lp->n < 1) return;
    const int n = lp->n;
    const size_t one = FL_PROFILE_LR_RANKS * FL_PROFILE_LR_ROWS, two = 2 * one; /* a draw's doubles */
    median_table(lp->proj[0], one, n, &p->lr_proj_seconds[0][0]);
    median_table(lp->proj_far[0], one, n, &p->lr_proj_far_seconds[0][0]);
    median_table(lp->ih_in[0], one, n, &p->lr_ih_in_seconds[0][0]);
    for (int m = 0; m < 2; m++) { /* SVD, CP */
        const fl_method fm = m == 0 ? FL_METHOD_SVD : FL_METHOD_CP;
        median_table(lp->panel[0][m], two, n, &p->lr_panel_seconds[fm][0][0]);
        median_table(lp->panel_far[0][m], two, n, &p->lr_panel_far_seconds[fm][0][0]);
        median_table(lp->ih_out[0][m], two, n, &p->lr_ih_out_seconds[fm][0][0]);
    }
    fl_profile_curve_median(lp->copy, n, 1, &p->gx_copy_seconds);
    if (lp->ih_walk_bytes[0] > 0) { /* stage 2's output walks (none without gemm_pk) */
        fl_profile_curve_median(&lp->ih_walk[0][0], n, FL_PROFILE_IH_WALKS, p->lr_ih_walk_seconds);
        memcpy(p->lr_ih_walk_bytes, lp->ih_walk_bytes, sizeof p->lr_ih_walk_bytes);
    }
}
