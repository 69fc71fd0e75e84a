/* Recurrent step: gates = gx + W_hh h_prev, then the cell update, fused per block of hidden units.
 *
 * fl_rec_create packs W_hh once (layouts in kernels/kernels.h) so that each step streams every
 * weight exactly once, with a block's four gate rows side by side: the gate sums of a block never
 * leave registers before the cell update. Per storage method, per step and batch row:
 *   dense  gates = gx + W h                    (W packed as a gate panel, K = H)
 *   SVD    t = V h (R);  gates = gx + U t      (V^T as (H, Rp), U as a gate panel, K = R)
 *   CP     z = C^T h (R); zs[g] = a[g] * z;  gates[g] = gx[g] + B zs[g]   (C as (H, Rp), B panel)
 * The rank-R intermediates are a few KB: they live in a per-thread scratch in L1.
 *
 * Threads split the hidden blocks: a step is cut into chunks of blocks run by the worker pool
 * (pool.h: each thread owns the same range of chunks every step, so its share of the weights stays in
 * its own core's caches). Each thread computes its own copy of t / zs (V and C are small next to U or
 * W), so a step needs no barrier inside it. Steps under MIN_PARALLEL_BYTES of weights run on the
 * caller alone.
 *
 * The input projection of all steps (gx = x W_ih^T + biases, one GEMM per layer and sequence) goes
 * through fl_rec_input_ws: where the level has a packed projection kernel, W_ih is packed here too
 * (once per session) into 64-column panels, biases fused into the GEMM's epilogue. An SVD W_ih = U V
 * is packed as its two factors and runs as two packed products, t (n, R) = x V^T in the caller's
 * workspace, then gx = t U^T + biases (as head.c runs an SVD head). Measured against fl_mat_apply
 * (OpenBLAS 0.3.21 sgemm on the factors) plus the bias pass, in one process alternating the two, 31
 * pairs, median time ratio packed / BLAS, one thread of a shared Zen 3 (load 5-7: noisy, quartiles
 * +-0.1 to 0.3):
 *   in = H = 650,  rank  40 / 81 / 162:  35 rows 0.25 / 0.25 / 0.22;  700 rows 0.53 / 0.84 / 0.79;
 *                  rank 81 at 1 row 0.20; 2 threads (BLAS on one, as in a session) 0.88 at 35 rows,
 *                  0.64 at 700
 *   in = H = 1500, rank  93 / 187 / 375: 35 rows 0.50 / 0.53 / 0.54;  700 rows 0.72 / 0.94 / 1.01-1.04
 *                  (three runs; 0.94 on 2 threads)
 * so an SVD W_ih is always packed: a large factor at many rows ties, everything else wins, most of all
 * the few rows of a batch-1 request. Since the originals' pages are given back, which path runs cannot
 * depend on the rows of a call. A 2 x 650 session with SVD rank 81 everywhere, seq 35, `fastlstm bench`
 * time per step, ABBA against c4296b0, 2 x 6 pairs at load 6 (noisy): batch 1 x0.43 / x0.68, batch 20
 * x0.80 / x0.82, batch 1 on 2 threads x0.73 / x0.90. A CP W_ih (A (4, R), B (H, R), C (in, R)) runs
 * as packed products too (session 11; before, fl_mat_apply: two BLAS calls and a bias pass): B as
 * pk (H, R) and C^T as pv (R, in), z (n, R) = x C in the workspace, zs (n, 4, R) = z scaled per gate
 * by A (cp_scale), then per gate g gx[:, gH:(g+1)H] = zs[:, g, :] B^T + bias[gH:(g+1)H] (x row
 * stride 4R, bias fused). Its factors (R (4 + H + in) floats) stay in place beside the packs. */
#include "recurrent.h"

#include "kernels/kernels.h"
#include "blas_threads.h"
#include "pool.h"
#include "recurrent_levels.h"
#include "tuning_consts.h"

#include <stdint.h>
#include <string.h>

/* Thresholds (tuning_consts.h, described by fl_tuning_get). */
enum {
    MIN_BLOCKS_PER_THREAD = FL_MIN_BLOCKS_PER_THREAD,
    CHUNKS_PER_THREAD = FL_CHUNKS_PER_THREAD,
    MIN_PARALLEL_BYTES = FL_MIN_PARALLEL_BYTES,
    MIN_PARALLEL_MACS = FL_MIN_PARALLEL_MACS,
};

/* The arguments of the step (or input projection) in flight; written by the caller before it
 * publishes a ticket. */
typedef struct job {
    fl_rec_task_fn task; /* non-NULL: chunk idx runs task(task_ctx, thread, idx) (fl_rec_run_tasks) */
    void *task_ctx;
    int proj_n;      /* > 0: a packed projection of proj_n rows (fl_rec_input, fl_rec_gemm_pk), chunks */
    int prows, pK;   /* split panels: py (proj_n, prows) = px (proj_n, pK) W^T + bias, W packed as ppk */
    const float *ppk;
    const float *px; /* x row stride ldpx; bias (prows) or NULL; py row stride ldpy */
    int ldpx;
    const float *bias;
    float *py;
    int ldpy;
    int B;
    const float *gx;
    int ldgx;
    const float *hp;
    int ldhp;
    float *c, *ho;
    int ldho;
} job;

struct fl_rec {
    const fl_layer *ly;
    const fl_kernels *k;
    fl_method method;
    int H, K, R, Rp, nblk, max_batch, threads; /* K: size of h_prev (hidden, or the projection P) */
    fl_rec_pack own; /* the packed weights when this fl_rec made them, else all NULL */
    const float *pw; /* dense: (nblk, H, 4, NB); SVD: U panel (nblk, R, 4, NB); CP: B panel (nblk, R, NB) */
    const float *pm; /* SVD: V^T (H, Rp); CP: C (H, Rp); NULL for dense */
    const float *a;  /* CP: a (4, R) */
    const float *pk; /* W_ih packed for k->gemm_pk (ceil(4H / NC), in, NC), or NULL (BLAS path); SVD: U; CP: B */
    const float *pv; /* SVD W_ih: V packed (ceil(R / NC), in, NC); CP: C^T, same shape; else NULL */
    float *scratch;  /* per thread: t (max_batch, Rp) then zs (max_batch, 4, R), then cpad (2, H) */
    size_t scratch_per_thread;
    size_t cpad_off; /* offset of cpad in a thread's scratch: a lone row's c run as 2 (fl_rec_step_rows) */
    size_t bytes_per_row; /* weight bytes one batch row streams per step */
    fl_pool *pool;   /* threads - 1 workers and the caller */
    job jb;          /* the step or projection in flight, read by run_chunk */
    float *qgates;   /* int8 / bf16 W_hh (qmat.h): gates (max_batch, 4H), on the caller's thread */
    float *qws;      /* and fl_mat_apply's workspace for max_batch rows */
    float *gxhot;    /* SVD / CP, max_batch > 1, kernels without gx_in_place: (max_batch, 4H), a step's gx rows copied here first */
};

/* ------------------------------------------------------------ packing */

/* Blocks [jb0, jb1) of a gate panel: w (4H, K) row-major -> pw (nblk, K, 4, NB), zero past H. Every
 * element of those blocks is written. */
static void pack_gate_blocks(const float *w, int H, int K, int jb0, int jb1, float *pw) {
    enum { NB = FL_REC_NB, C = 4 * FL_REC_NB };
    /* k outer: each k's 4 NB outputs are written in order, reading one float of each of the block's
     * 4 NB rows (their lines stay in L1 for 16 k); the (g, jj) rows outer wrote one float per line of
     * a block of 4 NB K floats 4 NB times over, and packed a 512 MB W_hh at 0.4 GB/s */
    for (int jb = jb0; jb < jb1; jb++) {
        float *blk = pw + (size_t)jb * K * C;
        const float *row[C]; /* (g, jj): row g H + jb NB + jj of w, NULL past H (zeros) */
        for (int g = 0; g < 4; g++)
            for (int jj = 0; jj < NB; jj++) {
                const int j = jb * NB + jj;
                row[g * NB + jj] = j < H ? w + ((size_t)g * H + j) * K : NULL;
            }
        for (int k = 0; k < K; k++) {
            float *dst = blk + (size_t)k * C;
            for (int i = 0; i < C; i++) dst[i] = row[i] ? row[i][k] : 0.0f;
        }
    }
}

static void pack_gate_panel(const float *w, int H, int K, int nblk, float *pw) {
    pack_gate_blocks(w, H, K, 0, nblk, pw);
}

/* The inverse of pack_gate_blocks for blocks [jb0, jb1): pw -> the rows of w (4H, K) they hold. */
static void unpack_gate_blocks(const float *pw, int H, int K, int jb0, int jb1, float *w) {
    const int NB = FL_REC_NB;
    for (int jb = jb0; jb < jb1; jb++) {
        const float *blk = pw + (size_t)jb * K * 4 * NB;
        for (int g = 0; g < 4; g++)
            for (int jj = 0; jj < NB && jb * NB + jj < H; jj++) {
                float *row = w + ((size_t)g * H + jb * NB + jj) * K;
                const float *src = blk + (size_t)g * NB + jj;
                for (int k = 0; k < K; k++) row[k] = src[(size_t)k * 4 * NB];
            }
    }
}

static void pack_cp_panel(const float *b, int H, int R, int nblk, float *pb) {
    // b: (H, R) -> pb (nblk, R, NB), zero past H
    const int NB = FL_REC_NB;
    memset(pb, 0, (size_t)nblk * R * NB * sizeof(float));
    for (int j = 0; j < H; j++)
        for (int k = 0; k < R; k++) pb[((size_t)(j / NB) * R + k) * NB + j % NB] = b[(size_t)j * R + k];
}

/* m (K, Rp) from src, where src[k, r] = src[k * sk + r * sr], zero for r >= R. */
static void pack_proj(const float *src, size_t sk, size_t sr, int K, int R, int Rp, float *m) {
    for (int k = 0; k < K; k++)
        for (int r = 0; r < Rp; r++) m[(size_t)k * Rp + r] = r < R ? src[k * sk + r * sr] : 0.0f;
}

/* Panel r0 / NC (rows [r0, r1) of w (rows, K) row-major) of pk (ceil(rows / NC), K, NC), zero
 * past rows. */
static void pack_input(const float *w, int r0, int r1, int K, float *pk) {
    const int NC = FL_PK_NC;
    for (int r = r0; r < r0 + NC; r++)
        for (int k = 0; k < K; k++) pk[((size_t)(r / NC) * K + k) * NC + r % NC] = r < r1 ? w[(size_t)r * K + k] : 0.0f;
}

/* pk (ceil(R / NC), K, NC) of W = C^T (R, K) from C (K, R) row-major, zero past R: a CP W_ih's C
 * (fl_rec_pack_layer), read in place rather than transposed into a copy first. */
static void pack_input_t(const float *c, int K, int R, float *pk) {
    const int NC = FL_PK_NC, Rn = (R + NC - 1) / NC * NC;
    for (int r = 0; r < Rn; r++)
        for (int k = 0; k < K; k++) pk[((size_t)(r / NC) * K + k) * NC + r % NC] = r < R ? c[(size_t)k * R + r] : 0.0f;
}

/* The inverse: rows [r0, r1) of w from pk. */
static void unpack_input(const float *pk, int r0, int r1, int K, float *w) {
    const int NC = FL_PK_NC;
    for (int r = r0; r < r1; r++)
        for (int k = 0; k < K; k++) w[(size_t)r * K + k] = pk[((size_t)(r / NC) * K + k) * NC + r % NC];
}

size_t fl_pk_floats(int rows, int K) {
    return ((size_t)rows + FL_PK_NC - 1) / FL_PK_NC * FL_PK_NC * (size_t)K;
}

void fl_pk_pack(const float *w, int rows, int K, bool release, float *pk) {
    for (int r0 = 0; r0 < rows; r0 += FL_PK_NC) {
        const int r1 = r0 + FL_PK_NC < rows ? r0 + FL_PK_NC : rows;
        pack_input(w, r0, r1, K, pk);
        if (release) fl_pages_release(w, w + (size_t)r0 * K, w + (size_t)r1 * K);
    }
}

void fl_pk_unpack(float *pk, int rows, int K, bool consume, float *w) {
    const size_t pan = (size_t)FL_PK_NC * K; /* floats of a panel */
    for (int r0 = 0; r0 < rows; r0 += FL_PK_NC) {
        const int r1 = r0 + FL_PK_NC < rows ? r0 + FL_PK_NC : rows;
        const size_t pi = (size_t)(r0 / FL_PK_NC);
        unpack_input(pk, r0, r1, K, w);
        if (consume) fl_pages_release(pk, pk + pi * pan, pk + (pi + 1) * pan);
    }
}

/* ------------------------------------------------------------ one chunk of a step */

/* Blocks of chunk idx of n. The rank-R intermediate is computed once per participant and job:
 * *t_gen remembers for which job this participant's scratch holds it. */
static void run_chunk(void *ctx, int id, unsigned idx, unsigned n, unsigned gen, unsigned *t_gen) {
    fl_rec *r = ctx;
    const job *j = &r->jb;
    if (j->task) {
        j->task(j->task_ctx, id, (int)idx);
        return;
    }
    if (j->proj_n > 0) { /* packed projection: 64-column panels [p0, p1) of W */
        const int np = (j->prows + FL_PK_NC - 1) / FL_PK_NC;
        const int p0 = (int)((long)np * idx / n), p1 = (int)((long)np * (idx + 1) / n);
        if (p0 >= p1) return;
        const int c0 = p0 * FL_PK_NC, cols = (p1 * FL_PK_NC < j->prows ? p1 * FL_PK_NC : j->prows) - c0;
        r->k->gemm_pk(j->proj_n, cols, j->pK, j->px, j->ldpx, j->ppk + (size_t)c0 * j->pK,
                      j->bias ? j->bias + c0 : NULL, j->py + c0, j->ldpy);
        return;
    }
    const int blk0 = (int)((long)r->nblk * idx / n), blk1 = (int)((long)r->nblk * (idx + 1) / n);
    if (blk0 >= blk1) return;
    const int H = r->H, R = r->R, Rp = r->Rp, B = j->B;
    float *t = r->scratch ? r->scratch + (size_t)id * r->scratch_per_thread : NULL; // t: (B, Rp); NULL for dense
    const bool fresh = *t_gen != gen;
    *t_gen = gen;
    switch (r->method) {
    case FL_METHOD_DENSE:
        r->k->gate_cell(blk0, blk1, H, r->K, B, r->pw, j->hp, j->ldhp, j->gx, j->ldgx, j->c, j->ho, j->ldho);
        return;
    case FL_METHOD_SVD:
        if (fresh) r->k->proj(B, r->K, Rp, r->pm, j->hp, j->ldhp, t, Rp);
        r->k->gate_cell(blk0, blk1, H, R, B, r->pw, t, Rp, j->gx, j->ldgx, j->c, j->ho, j->ldho);
        return;
    case FL_METHOD_CP: {
        float *zs = t + (size_t)r->max_batch * Rp; // zs: (B, 4, R) = a[g, :] * z
        if (fresh) {
            r->k->proj(B, r->K, Rp, r->pm, j->hp, j->ldhp, t, Rp);
            r->k->cp_scale(B, R, r->a, t, Rp, zs);
        }
        r->k->cp_gate_cell(blk0, blk1, H, R, B, r->pw, zs, j->gx, j->ldgx, j->c, j->ho, j->ldho);
        return;
    }
    }
}

/* ------------------------------------------------------------ lifetime */

void fl_rec_free(fl_rec *r) {
    if (!r) return;
    fl_pool_free(r->pool);
    fl_free(r->scratch);
    fl_free(r->qgates);
    fl_free(r->qws);
    fl_free(r->gxhot);
    fl_rec_pack_free(&r->own);
    fl_free(r);
}

fl_status fl_rec_set_threads(fl_rec *r, int threads) {
    if (threads < 1) return fl_fail(FL_ERR_ARG, "threads must be >= 1, got %d", threads);
    if (threads > 1024) return fl_fail(FL_ERR_ARG, "threads must be <= 1024, got %d", threads);
    // Allocate first: on failure the current threads and scratch stay as they were.
    float *scratch = NULL;
    if (r->scratch_per_thread && !(scratch = fl_calloc((size_t)threads * r->scratch_per_thread, sizeof(float))))
        return fl_fail(FL_ERR_NOMEM, "out of memory for %d recurrent-step threads", threads);
    const int before = fl_pool_threads(r->pool);
    fl_status st = fl_pool_set_threads(r->pool, threads);
    if (st && fl_pool_threads(r->pool) == before && r->scratch) { /* out of memory: nothing changed */
        fl_free(scratch);
        return st;
    }
    fl_free(r->scratch); /* the pool's workers are idle between jobs */
    r->scratch = scratch;
    r->threads = fl_pool_threads(r->pool); /* fewer when a thread could not start */
    return st;
}

void fl_rec_pack_free(fl_rec_pack *p) {
    if (!p) return;
    fl_free(p->pw);
    fl_free(p->pm);
    fl_free(p->a);
    fl_free(p->pk);
    fl_free(p->pv);
    *p = (fl_rec_pack){0};
}

static fl_status check_layer(const fl_layer *ly) {
    const fl_mat *w = &ly->whh;
    const int H = ly->hidden, K = ly->out > 0 ? ly->out : H; /* h_prev: (B, K) */
    if (w->rows != 4 * H || w->cols != K)
        return fl_fail(FL_ERR_SHAPE, "weight_hh is %dx%d, expected %dx%d", w->rows, w->cols, 4 * H, K);
    return FL_OK;
}

/* Pages of the original W_hh (4H, K) that packing blocks [0, done) has fully consumed, from those up
 * to block prev on: the rows g*H + [0, min(done * NB, H)) of each gate g. */
static void release_consumed(const float *w, int H, int K, int prev, int done) {
    const int NB = FL_REC_NB;
    const size_t r0 = (size_t)(prev * NB < H ? prev * NB : H), r1 = (size_t)(done * NB < H ? done * NB : H);
    for (int g = 0; g < 4; g++) {
        const float *gate = w + (size_t)g * H * K;
        fl_pages_release(gate, gate + r0 * K, gate + r1 * K);
    }
}

fl_status fl_rec_pack_layer(const fl_layer *ly, bool with_pk, bool release, fl_rec_pack *out) {
    *out = (fl_rec_pack){0};
    fl_status st = check_layer(ly);
    if (st) return st;
    const fl_mat *w = &ly->whh;
    const int H = ly->hidden, K = ly->out > 0 ? ly->out : H, R = w->method == FL_METHOD_DENSE ? 0 : w->rank;
    const int Rp = (R + FL_REC_NB - 1) / FL_REC_NB * FL_REC_NB, nblk = (H + FL_REC_NB - 1) / FL_REC_NB;
    const size_t nb = (size_t)nblk * FL_REC_NB;
    fl_rec_pack p = {0};
    bool ok = true;
    if (!w->qf) /* int8 / bf16 W_hh: the step reads w->qf instead */
    switch (w->method) {
    case FL_METHOD_DENSE:
        /* fl_malloc, not fl_calloc: pack_gate_blocks writes every element, and untouched pages of a
         * fresh allocation cost no memory until a block is written into them. */
        ok = (p.pw = fl_malloc(nb * K * 4 * sizeof(float))) != NULL;
        break;
    case FL_METHOD_SVD:
        ok = (p.pw = fl_calloc(nb * R * 4, sizeof(float))) && (p.pm = fl_calloc((size_t)K * Rp, sizeof(float)));
        if (ok) {
            pack_gate_panel(w->u, H, R, nblk, p.pw);
            pack_proj(w->v, 1, (size_t)K, K, R, Rp, p.pm); // V (R, K): V^T[k, r] = v[r*K + k]
        }
        break;
    case FL_METHOD_CP:
        ok = (p.pw = fl_calloc(nb * R, sizeof(float))) && (p.pm = fl_calloc((size_t)K * Rp, sizeof(float))) &&
             (p.a = fl_calloc(4 * (size_t)R, sizeof(float)));
        if (ok) {
            pack_cp_panel(w->b, H, R, nblk, p.pw);
            pack_proj(w->c, (size_t)R, 1, K, R, Rp, p.pm); // C (K, R)
            memcpy(p.a, w->a, 4 * (size_t)R * sizeof(float));
        }
        break;
    }
    if (!ok) {
        fl_rec_pack_free(&p);
        return fl_fail(FL_ERR_NOMEM, "out of memory packing a %dx%d recurrent weight", 4 * H, K);
    }
    const fl_mat *wi = &ly->wih;
    const bool pk_ok = with_pk && !wi->qf && wi->rows == 4 * H && wi->cols > 0; /* a quantized CP: none */
    const bool pk_svd = pk_ok && wi->method == FL_METHOD_SVD && wi->rank > 0; /* always: file comment */
    const bool pk_cp = pk_ok && wi->method == FL_METHOD_CP && wi->rank > 0;
    if (pk_ok && (wi->method == FL_METHOD_DENSE || pk_svd || pk_cp)) {
        /* fl_malloc: fl_pk_pack writes every element, and pages are taken as it reaches them.
         * pk: W_ih (4H, in), SVD's U (4H, R) or CP's B (H, R); pv: SVD's V (R, in) or CP's C^T (R, in) */
        const int rows = pk_cp ? H : wi->rows, K = pk_svd || pk_cp ? wi->rank : wi->cols;
        if (!(p.pk = fl_malloc(fl_pk_floats(rows, K) * sizeof(float))) ||
            ((pk_svd || pk_cp) && !(p.pv = fl_malloc(fl_pk_floats(wi->rank, wi->cols) * sizeof(float))))) {
            fl_rec_pack_free(&p);
            return fl_fail(FL_ERR_NOMEM, "out of memory packing a %dx%d input weight", wi->rows, wi->cols);
        }
    }
    /* Last, once nothing can fail: W_ih (or its factors) panel by panel and a dense W_hh block by block,
     * the originals' pages released as they are consumed when asked (packed.c), so that two copies
     * never coexist whole. */
    if (pk_cp) {
        /* CP's factors are small (R (4 + H + in) floats: a few hundred KB against a dense W_ih's
         * 4H in), so their originals stay in place (never released): a = A (4, R) is read from them,
         * and there is nothing to write back (fl_rec_unpack_layer). */
        fl_pk_pack(wi->b, H, wi->rank, false, p.pk);
        pack_input_t(wi->c, wi->cols, wi->rank, p.pv);
    } else if (p.pv) {
        fl_pk_pack(wi->u, wi->rows, wi->rank, release, p.pk);
        fl_pk_pack(wi->v, wi->rank, wi->cols, release, p.pv);
    } else if (p.pk)
        fl_pk_pack(wi->w, wi->rows, wi->cols, release, p.pk);
    if (w->method == FL_METHOD_DENSE && !w->qf) /* a quantized W_hh has no f32 pack */
        for (int jb = 0; jb < nblk; jb++) {
            pack_gate_blocks(w->w, H, K, jb, jb + 1, p.pw);
            if (release) release_consumed(w->w, H, K, jb, jb + 1);
        }
    *out = p;
    return FL_OK;
}

bool fl_rec_unpack_layer(fl_rec_pack *p, fl_layer *ly, bool consume) {
    fl_mat *wi = &ly->wih;
    /* a CP W_ih's originals are never released (fl_rec_pack_layer): nothing to write back */
    const bool wi_written = p->pk && wi->method != FL_METHOD_CP;
    if (wi_written && p->pv) { /* SVD W_ih: U (4H, R), V (R, in) */
        fl_pk_unpack(p->pk, wi->rows, wi->rank, consume, wi->u);
        fl_pk_unpack(p->pv, wi->rank, wi->cols, consume, wi->v);
    } else if (wi_written)
        fl_pk_unpack(p->pk, wi->rows, wi->cols, consume, wi->w); /* W_ih (4H, in) */
    fl_mat *w = &ly->whh;
    if (w->method != FL_METHOD_DENSE || !p->pw) return wi_written;
    const int H = ly->hidden, K = ly->out > 0 ? ly->out : H, nblk = (H + FL_REC_NB - 1) / FL_REC_NB;
    const size_t blk = (size_t)K * 4 * FL_REC_NB; /* floats of one block */
    for (int jb = 0; jb < nblk; jb++) {
        unpack_gate_blocks(p->pw, H, K, jb, jb + 1, w->w);
        if (consume) fl_pages_release(p->pw, p->pw + jb * blk, p->pw + (jb + 1) * blk);
    }
    return true;
}

/* pack: weights packed by fl_rec_pack_layer for ly, borrowed; NULL to pack a copy of its own. */
static fl_status rec_create(const fl_layer *ly, const fl_rec_pack *pack, int max_batch, int threads,
                            const fl_kernels *k, fl_rec **out) {
    *out = NULL;
    if (max_batch < 1) return fl_fail(FL_ERR_ARG, "max_batch must be >= 1, got %d", max_batch);
    fl_status st = check_layer(ly);
    if (st) return st;
    const fl_mat *w = &ly->whh;
    const int H = ly->hidden;
    fl_rec *r = fl_calloc(1, sizeof *r);
    if (!r) return fl_fail(FL_ERR_NOMEM, "out of memory creating a recurrent step");
    r->ly = ly;
    r->k = k;
    r->method = w->method;
    r->H = H;
    r->K = ly->out > 0 ? ly->out : H;
    r->R = w->method == FL_METHOD_DENSE ? 0 : w->rank;
    r->Rp = (r->R + FL_REC_NB - 1) / FL_REC_NB * FL_REC_NB;
    r->nblk = (H + FL_REC_NB - 1) / FL_REC_NB;
    r->max_batch = max_batch;
    r->threads = 1;
    r->bytes_per_row = fl_mat_params(w) * sizeof(float);
    const size_t Rp = (size_t)r->Rp, R = (size_t)r->R;
    if (w->method == FL_METHOD_SVD) r->scratch_per_thread = ((size_t)max_batch * Rp + 15) & ~(size_t)15;
    if (w->method == FL_METHOD_CP) r->scratch_per_thread = ((size_t)max_batch * (Rp + 4 * R) + 15) & ~(size_t)15;
    r->cpad_off = r->scratch_per_thread;
    if (!w->qf && max_batch > 1) r->scratch_per_thread += (2 * (size_t)H + 15) & ~(size_t)15;
    if (!pack) {
        if ((st = fl_rec_pack_layer(ly, k->gemm_pk != NULL, false, &r->own))) {
            fl_rec_free(r);
            return st;
        }
        pack = &r->own;
    }
    r->pw = pack->pw;
    r->pm = pack->pm;
    r->a = pack->a;
    r->pk = k->gemm_pk ? pack->pk : NULL;
    r->pv = k->gemm_pk ? pack->pv : NULL;
    if (w->qf && (!(r->qgates = fl_calloc((size_t)max_batch * 4 * H, sizeof(float))) ||
                  !(r->qws = fl_calloc(fl_mat_apply_workspace(w, max_batch) + 1, sizeof(float))))) {
        fl_rec_free(r);
        return fl_fail(FL_ERR_NOMEM, "out of memory for a %s recurrent step", fl_precision_name(w->precision));
    }
    if (!w->qf && w->method != FL_METHOD_DENSE && max_batch > 1 && !k->gx_in_place &&
        !(r->gxhot = fl_malloc((size_t)max_batch * 4 * H * sizeof(float)))) {
        fl_rec_free(r);
        return fl_fail(FL_ERR_NOMEM, "out of memory for a recurrent step's %d x %d input rows", max_batch, 4 * H);
    }
    st = fl_pool_create(run_chunk, r, &r->pool);
    if (!st) st = fl_rec_set_threads(r, threads);
    if (st != FL_OK) {
        fl_rec_free(r);
        return st;
    }
    *out = r;
    return FL_OK;
}

fl_status fl_rec_create_packed(const fl_layer *ly, const fl_rec_pack *pack, int max_batch, int threads,
                               fl_rec **out) {
    return rec_create(ly, pack, max_batch, threads, fl_kernels_get(), out);
}

fl_status fl_rec_create(const fl_layer *ly, int max_batch, int threads, fl_rec **out) {
    return rec_create(ly, NULL, max_batch, threads, fl_kernels_get(), out);
}

fl_status fl_rec_create_with(const fl_layer *ly, int max_batch, int threads, const char *kernels,
                             fl_rec **out) {
    *out = NULL;
    const fl_kernels *k = fl_kernels_by_name(kernels);
    if (!k) return fl_fail(FL_ERR_UNSUPPORTED, "recurrent kernels '%s' unknown or not supported by this CPU",
                           kernels ? kernels : "(null)");
    return rec_create(ly, NULL, max_batch, threads, k, out);
}

const char *fl_rec_kernels_name(const fl_rec *r) { return r->k->name; }

/* ------------------------------------------------------------ input projection */

static void run_job(fl_rec *r, unsigned n, const job *j, bool small);

static void gemm_pk_job(fl_rec *r, int n, int rows, int K, const float *x, int ldx, const float *pk,
                        const float *bias, float *y, int ldy, bool small);

bool fl_rec_input_ws(fl_rec *r, int n, const float *x, int ldx, const float *bias, float *gx, int ldgx, float *ws) {
    // Always the packed copy where there is one: a session's packs give the original W_ih's pages
    // back (packed.c), so BLAS on the original is no fallback.
    const fl_mat *wi = &r->ly->wih;
    if (!r->pk) return false;
    if (wi->method == FL_METHOD_DENSE) {
        gemm_pk_job(r, n, wi->rows, wi->cols, x, ldx, r->pk, bias, gx, ldgx,
                    (double)n * wi->rows * wi->cols < FL_WAKE_MIN_MACS);
        return true;
    }
    // Low-rank: without ws the caller's fl_mat_apply runs on the originals, which are only released
    // by a session's packs (SVD; CP's are kept), whose calls all pass ws.
    if (!ws) return false;
    const int R = wi->rank;
    // all the products together: one that leaves a sleeping pool asleep or wakes it for all of them
    const bool small = (double)n * R * ((double)wi->cols + wi->rows) < FL_WAKE_MIN_MACS;
    if (wi->method == FL_METHOD_SVD) { // ws t (n, R) = x V^T;  gx = t U^T + bias
        gemm_pk_job(r, n, R, wi->cols, x, ldx, r->pv, NULL, ws, R, small);
        gemm_pk_job(r, n, wi->rows, R, ws, R, r->pk, bias, gx, ldgx, small);
        return true;
    }
    // CP: z (n, R) = x C;  zs (n, 4, R) = z scaled per gate by A (4, R);
    // gx[:, gH:(g+1)H] = zs[:, g, :] B^T + bias[gH:(g+1)H] for each gate g (x row stride 4R)
    const int H = wi->rows / 4;
    float *z = ws, *zs = ws + (size_t)n * R;
    gemm_pk_job(r, n, R, wi->cols, x, ldx, r->pv, NULL, z, R, small);
    r->k->cp_scale(n, R, wi->a, z, R, zs);
    for (int g = 0; g < 4; g++)
        gemm_pk_job(r, n, H, R, zs + (size_t)g * R, 4 * R, r->pk, bias ? bias + (size_t)g * H : NULL,
                    gx + (size_t)g * H, ldgx, small);
    return true;
}

bool fl_rec_input(fl_rec *r, int n, const float *x, int ldx, const float *bias, float *gx, int ldgx) {
    return fl_rec_input_ws(r, n, x, ldx, bias, gx, ldgx, NULL);
}

/* fl_rec_gemm_pk; small: an input projection below FL_WAKE_MIN_MACS in all, which runs on this
 * thread alone while the pool's workers sleep (fl_pool_run_if_awake). */
static void gemm_pk_job(fl_rec *r, int n, int rows, int K, const float *x, int ldx, const float *pk,
                        const float *bias, float *y, int ldy, bool small) {
    // One thread: gemm_pk here; more: the pool splits W's panels, each thread running gemm_pk on its
    // own columns.
    FL_ASSERT(r->k->gemm_pk != NULL);
    if (n <= 0 || rows <= 0) return;
    const int np = (rows + FL_PK_NC - 1) / FL_PK_NC;
    job j = {.proj_n = n, .prows = rows, .pK = K, .ppk = pk, .px = x, .ldpx = ldx, .bias = bias, .py = y, .ldpy = ldy};
    unsigned nch = 1;
    if (r->threads > 1 && (double)n * rows * K >= MIN_PARALLEL_MACS) {
        nch = (unsigned)(CHUNKS_PER_THREAD * r->threads);
        if (nch > (unsigned)np) nch = (unsigned)np;
        if (nch > FL_POOL_MAX_CHUNKS) nch = FL_POOL_MAX_CHUNKS;
    }
    run_job(r, nch, &j, small);
}

void fl_rec_gemm_pk(fl_rec *r, int n, int rows, int K, const float *x, int ldx, const float *pk, const float *bias,
                    float *y, int ldy) {
    gemm_pk_job(r, n, rows, K, x, ldx, pk, bias, y, ldy, false);
}

/* ------------------------------------------------------------ the step */

void fl_rec_step(fl_rec *r, int B, const float *gx, int ldgx, const float *h_prev, int ldhp, float *c,
                 float *h_out, int ldho) {
    FL_ASSERT(B >= 0 && B <= r->max_batch);
    if (B == 0) return;
    if (r->qgates) { /* int8 / bf16 W_hh: gates = gx + W_hh h_prev through the quant kernels, then the cell */
        const int G = 4 * r->H;
        for (int b = 0; b < B; b++) memcpy(r->qgates + (size_t)b * G, gx + (size_t)b * ldgx, (size_t)G * sizeof(float));
        fl_mat_apply(&r->ly->whh, B, h_prev, ldhp, 1.0f, r->qgates, G, r->qws);
        r->k->lstm_cell(B, r->H, r->qgates, G, c, r->H, h_out, ldho);
        return;
    }
    if (r->gxhot && B > 1) {
        /* A low-rank kernel reads gx in short runs, one per row, gate and block: more streams than
         * the prefetchers follow, so rows coming from memory (a sequence's projections are written
         * long before their step) cost a miss each. One sequential copy brings them into this core's
         * cache first: a 2 x 650 model at batch 20, seq 35, 1 thread, steps 1.22-1.27x faster with CP
         * rank 40 and 1.11-1.19x with SVD rank 80 (alternating runs, 4 sets; avx2 on Zen 3). A dense
         * step's long products hide the misses: no copy. The avx512 kernels prefetch each tile's gx
         * lines before its multiply-adds (fl_kernels.gx_in_place), so there the copy is only extra
         * traffic and is skipped (no gxhot): `fastlstm bench`, one thread, seq 35, batch 20, the binaries
         * with and without the copy alternating (bench/ab_binaries.sh, 8 rounds, median ratio without /
         * with; Xeon model 207): 2 x 650 SVD rank 40 0.90, CP rank 40 0.93, 2 x 1500 SVD rank 93 1.00,
         * CP rank 93 0.96 (in one process, the copy toggled: 0.95 at batch 4, 0.94-0.98 at 64, two
         * threads 0.99-1.01). */
        const size_t G = 4 * (size_t)r->H;
        if ((size_t)ldgx == G)
            memcpy(r->gxhot, gx, (size_t)B * G * sizeof(float));
        else
            for (int b = 0; b < B; b++) memcpy(r->gxhot + (size_t)b * G, gx + (size_t)b * ldgx, G * sizeof(float));
        gx = r->gxhot;
        ldgx = (int)G;
    }
    job j = {.B = B, .gx = gx, .ldgx = ldgx, .hp = h_prev, .ldhp = ldhp, .c = c, .ho = h_out, .ldho = ldho};
    // Threads pay off only when each has a few blocks and some tens of KB of weights to stream.
    unsigned n = 1;
    if (r->threads > 1 && r->nblk >= 2 * MIN_BLOCKS_PER_THREAD && (double)r->bytes_per_row * B >= MIN_PARALLEL_BYTES) {
        n = (unsigned)(CHUNKS_PER_THREAD * r->threads);
        if (n > (unsigned)r->nblk / MIN_BLOCKS_PER_THREAD) n = (unsigned)r->nblk / MIN_BLOCKS_PER_THREAD;
        if (n > FL_POOL_MAX_CHUNKS) n = FL_POOL_MAX_CHUNKS;
    }
    run_job(r, n, &j, false);
}

/* Run job j in n chunks: on this thread alone when n is 1, else with the pool; a small one (an input
 * projection below FL_WAKE_MIN_MACS) on this thread alone while the pool's workers sleep. */
static void run_job(fl_rec *r, unsigned n, const job *jp, bool small) {
    r->jb = *jp;
    if (small) fl_pool_run_if_awake(r->pool, n);
    else fl_pool_run(r->pool, n);
}

/* ------------------------------------------------------------ the step by rows */

/* Every hidden block of one step for B rows on the calling thread, t / zs in scr (that thread's
 * scratch): the blocks' sums as run_chunk's, with the rank-R intermediate made here. */
static void step_whole(fl_rec *r, float *scr, int B, const float *gx, int ldgx, const float *hp, int ldhp,
                       float *c, float *ho, int ldho) {
    const int H = r->H, R = r->R, Rp = r->Rp;
    switch (r->method) {
    case FL_METHOD_DENSE:
        r->k->gate_cell(0, r->nblk, H, r->K, B, r->pw, hp, ldhp, gx, ldgx, c, ho, ldho);
        return;
    case FL_METHOD_SVD:
        r->k->proj(B, r->K, Rp, r->pm, hp, ldhp, scr, Rp); // t: (B, Rp)
        r->k->gate_cell(0, r->nblk, H, R, B, r->pw, scr, Rp, gx, ldgx, c, ho, ldho);
        return;
    case FL_METHOD_CP: {
        float *zs = scr + (size_t)r->max_batch * Rp; // zs: (B, 4, R)
        r->k->proj(B, r->K, Rp, r->pm, hp, ldhp, scr, Rp);
        r->k->cp_scale(B, R, r->a, scr, Rp, zs);
        r->k->cp_gate_cell(0, r->nblk, H, R, B, r->pw, zs, gx, ldgx, c, ho, ldho);
        return;
    }
    }
}

bool fl_rec_rows_ok(const fl_rec *r) { return !r->qgates; }

int fl_rec_threads(const fl_rec *r) { return r->threads; }

void fl_rec_step_rows(fl_rec *r, int thread, int row0, int B, bool wide, const float *gx, int ldgx,
                      const float *h_prev, int ldhp, float *c, float *h_out, int ldho) {
    FL_ASSERT(!r->qgates && thread >= 0 && thread < r->threads && row0 >= 0 && B >= 0 && row0 + B <= r->max_batch);
    if (B == 0) return;
    float *scr = r->scratch ? r->scratch + (size_t)thread * r->scratch_per_thread : NULL;
    const size_t G = 4 * (size_t)r->H;
    if (B == 1 && wide) {
        /* A kernel may sum a lone row in another order than the rows of a batch (avx2.c's
         * gate_cell_b1 splits K into four streams): run the row as a tile of two equal rows (strides
         * 0 for the inputs and h, its c twice in cpad) so that it gets the bits of the step it is part
         * of. The rows of a tile are summed independently, each in the same order whatever the tile
         * (avx2.c, avx512.c, ref.c). */
        float *cp = scr + r->cpad_off;
        memcpy(cp, c, (size_t)r->H * sizeof(float));
        memcpy(cp + r->H, c, (size_t)r->H * sizeof(float));
        step_whole(r, scr, 2, gx, 0, h_prev, 0, cp, h_out, 0);
        memcpy(c, cp, (size_t)r->H * sizeof(float));
        return;
    }
    if (r->gxhot && B > 1) { /* as fl_rec_step; each thread's rows are its own part of gxhot */
        float *hot = r->gxhot + (size_t)row0 * G;
        for (int b = 0; b < B; b++) memcpy(hot + (size_t)b * G, gx + (size_t)b * ldgx, G * sizeof(float));
        gx = hot;
        ldgx = (int)G;
    }
    step_whole(r, scr, B, gx, ldgx, h_prev, ldhp, c, h_out, ldho);
}

void fl_rec_run_tasks(fl_rec *r, int n, fl_rec_task_fn fn, void *ctx) {
    FL_ASSERT(n >= 1 && n <= FL_POOL_MAX_CHUNKS && fn);
    job j = {.task = fn, .task_ctx = ctx};
    run_job(r, (unsigned)n, &j, false);
}

/* The first sorted row of chunk k of n: the least i with n * (len[0] + .. + len[i - 1]) >= k * (the
 * sum over all B rows), so each chunk's rows sum to about the same number of steps. */
static int rows_cut(const int *len, int B, int n, int k) {
    long long S = 0, acc = 0;
    for (int i = 0; i < B; i++) S += len[i];
    int i = 0;
    while (i < B && acc * n < S * k) acc += len[i++];
    return i;
}

typedef struct rows_job {
    fl_rec *r;
    const fl_rows_seq *q;
    int n;
} rows_job;

/* Chunk idx of fl_rec_run_rows: every step of sorted rows [i0, i1) on this thread; at step t the
 * active ones are those below bt[t] (a prefix: rows are sorted by length, longest first). */
static void rows_task(void *ctx, int thread, int idx) {
    const rows_job *rj = ctx;
    const fl_rows_seq *q = rj->q;
    const int i0 = rows_cut(q->len, q->B, rj->n, idx), i1 = rows_cut(q->len, q->B, rj->n, idx + 1);
    for (int k = 0; k < q->T && i0 < i1; k++) {
        const int t = q->reverse ? q->T - 1 - k : k, n = q->bt[t], e = n < i1 ? n : i1;
        if (e <= i0) continue;
        // ht: (e - i0, K) this chunk's active rows of step t in the packed output
        float *ht = q->out + ((size_t)q->off[t] + i0) * q->ldout, *h = q->h + (size_t)i0 * q->ldh;
        fl_rec_step_rows(rj->r, thread, i0, e - i0, n > 1, q->gx + ((size_t)q->off[t] + i0) * q->ldgx, q->ldgx, h,
                         q->ldh, q->c + (size_t)i0 * rj->r->H, ht, q->ldout);
        for (int i = 0; i < e - i0; i++)
            memcpy(h + (size_t)i * q->ldh, ht + (size_t)i * q->ldout, (size_t)rj->r->K * sizeof(float));
    }
}

void fl_rec_run_rows(fl_rec *r, int n, const fl_rows_seq *q) {
    FL_ASSERT(r->K == r->H && n >= 1 && n <= q->B);
    rows_job rj = {.r = r, .q = q, .n = n};
    fl_rec_run_tasks(r, n, rows_task, &rj);
}
