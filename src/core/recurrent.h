/* The recurrent half of an LSTM layer step: gates = gx + W_hh h_prev, then the cell update.
 * This is the per-time-step hot path; session.c calls it and never touches W_hh directly, so the
 * kernels behind it (packing, fusion, threading) can change freely. */
#ifndef FL_RECURRENT_H
#define FL_RECURRENT_H

#include "internal.h"

typedef struct fl_rec fl_rec;

/* Layer weights in the kernels' packed layouts (kernels/kernels.h), made once and read by any number
 * of fl_recs on any threads: W_hh as a gate or CP panel (pw), V^T or C (pm), CP's a, and W_ih for a
 * packed input projection (or NULL): a dense W_ih as pk; an SVD W_ih = U V as pk = U (4H, R) and
 * pv = V (R, in); a CP W_ih (A, B, C) as pk = B (H, R) and pv = C^T (R, in), all in fl_pk_pack's
 * layout. */
typedef struct fl_rec_pack {
    float *pw, *pm, *a, *pk, *pv;
} fl_rec_pack;

/* Pack layer ly (W_ih too when with_pk and W_ih is f32: dense, SVD or CP). On error *out is all NULL
 * and ly is unchanged. With release, the pages lying wholly inside the original of a dense W_hh, and
 * of a dense or SVD W_ih (or its factors U and V) when it is packed (out->pk), are given back to the
 * system (fl_pages_release) as packing consumes them: they read as zeros afterwards, until
 * fl_rec_unpack_layer writes the originals back. A CP W_ih's factors are small and always kept. */
fl_status fl_rec_pack_layer(const fl_layer *ly, bool with_pk, bool release, fl_rec_pack *out);

/* Write a dense W_hh, and a dense or SVD W_ih (or its factors) where p->pk holds it, back from their
 * packed forms (the exact inverse of packing: bit-identical), block by block; with consume, the pages
 * of p->pw, p->pk and p->pv are released as they are read (they are then garbage, to be freed).
 * Returns false, writing nothing, when neither is packed (a CP W_ih, kept, is never written). */
bool fl_rec_unpack_layer(fl_rec_pack *p, fl_layer *ly, bool consume);

/* Give back to the system the memory pages lying wholly inside [max(lo, limit), hi) (madvise
 * MADV_DONTNEED on private memory from fl_malloc: they read as zeros afterwards and cost nothing until
 * written). The page holding lo counts as whole when its part below lo lies at or above limit. */
void fl_pages_release(const void *limit, const void *lo, const void *hi);

/* Packed projections (gemm_pk, layout in kernels/kernels.h) of any matrix w (rows, K) row-major: W_ih
 * here, the output head in head.c. fl_pk_floats: the floats of the packed form (ceil(rows / NC) panels).
 * fl_pk_pack writes every element of pk, panel by panel; with release, the pages of w each panel has
 * consumed are given back (fl_pages_release, limit w). fl_pk_unpack writes w back from pk, bit-identical;
 * with consume, the pages of pk each panel has been read from are given back (pk is then garbage). */
size_t fl_pk_floats(int rows, int K);
void fl_pk_pack(const float *w, int rows, int K, bool release, float *pk);
void fl_pk_unpack(float *pk, int rows, int K, bool consume, float *w);

/* Free what fl_rec_pack_layer allocated and zero *p; NULL and a zeroed pack are accepted. */
void fl_rec_pack_free(fl_rec_pack *p);

/* Prepare layer ly's recurrent product for batches up to max_batch (may copy W_hh into a packed
 * layout; keeps a pointer to ly, which must outlive the fl_rec). */
fl_status fl_rec_create(const fl_layer *ly, int max_batch, int threads, fl_rec **out);

/* As fl_rec_create, on weights already packed for ly (by fl_rec_pack_layer, with W_ih where the
 * dispatched level has a packed projection): borrows pack, which must outlive the fl_rec. */
fl_status fl_rec_create_packed(const fl_layer *ly, const fl_rec_pack *pack, int max_batch, int threads,
                               fl_rec **out);
void fl_rec_free(fl_rec *r);
fl_status fl_rec_set_threads(fl_rec *r, int threads);

/* One time step for B <= max_batch rows:
 *   gx: (B, 4H) input projection of this step with both biases added, row stride ldgx (read only)
 *   h_prev: (B, K), row stride ldhp, K = ly->out (hidden, or the projection size P of an LSTMP layer)
 *   c: (B, H) contiguous, updated in place
 *   h_out: (B, H) o * tanh(c), row stride ldho (must not alias h_prev); an LSTMP layer's caller
 *   then applies weight_hr to it */
void fl_rec_step(fl_rec *r, int B, const float *gx, int ldgx, const float *h_prev, int ldhp, float *c,
                 float *h_out, int ldho);

/* The "rows" schedule (session.c): each thread of r's pool runs every step of its own rows with
 * the whole W_hh, no sync per step. fl_rec_run_tasks runs fn(ctx, thread, idx) for idx in [0, n),
 * n <= FL_POOL_MAX_CHUNKS, over r's own pool (each on one participant `thread`, 0 the caller, in
 * [0, fl_rec_threads(r))) and returns when all are done. Inside fn, fl_rec_step_rows runs one step
 * (every hidden block) for B rows on the calling participant with its own scratch: rows row0 ..
 * row0 + B - 1 of a step, the pointers at row row0 (arguments as fl_rec_step); the tasks' rows must
 * be disjoint. wide: the whole step has more than one active row (a lone row then gets the bits a
 * step of several rows gives it). The results are bit-identical to fl_rec_step's. Not for an int8 /
 * bf16 W_hh: fl_rec_rows_ok. */
typedef void (*fl_rec_task_fn)(void *ctx, int thread, int idx);
void fl_rec_run_tasks(fl_rec *r, int n, fl_rec_task_fn fn, void *ctx);
void fl_rec_step_rows(fl_rec *r, int thread, int row0, int B, bool wide, const float *gx, int ldgx,
                      const float *h_prev, int ldhp, float *c, float *h_out, int ldho);
bool fl_rec_rows_ok(const fl_rec *r);

/* A whole layer direction's steps on the rows schedule, after its input projection, for a batch in
 * session.c's packed layout (sorted by length, longest first; at step t the first bt[t] rows are
 * active, stored from packed row off[t]; len[i] the length of sorted row i). The B rows are cut into n
 * (2 <= n <= B, at most r's threads) contiguous chunks of about equal total length, each run on one
 * thread for all T steps (t up, or down when reverse). Not for an LSTMP layer (K must be H).
 *   gx: (N, 4H) packed projections with biases, row stride ldgx
 *   h: (B, H) h_{t-1} of the sorted rows, row stride ldh; afterwards each row's h at its last step
 *   c: (B, H) contiguous, updated in place
 *   out: (N, H) packed outputs, row stride ldout (a direction's columns of the layer's output) */
typedef struct fl_rows_seq {
    int T, B;
    bool reverse;
    const int *bt, *off, *len;
    const float *gx;
    int ldgx;
    float *h;
    int ldh;
    float *c, *out;
    int ldout;
} fl_rows_seq;
void fl_rec_run_rows(fl_rec *r, int n, const fl_rows_seq *q);
/* Threads r's steps run on (fewer than asked when a worker could not start). */
int fl_rec_threads(const fl_rec *r);

/* gx (n, 4H) = x (n, in) W_ih^T + bias (4H, may be NULL), row strides ldx and ldgx, through a packed
 * copy of W_ih made at fl_rec_create (f32 dense, SVD or CP W_ih, a kernel level with a packed
 * projection), split over r's threads. An SVD W_ih runs t (n, R) = x V^T, then gx = t U^T + bias: t
 * lives in ws, which must hold n * R floats. A CP W_ih runs z (n, R) = x C, zs (n, 4, R) = z scaled
 * per gate by A, then gx[:, gate g] = zs[:, g, :] B^T + bias[gate g], z and zs in ws, which must hold
 * 5 n R floats. fl_mat_apply_workspace(&ly->wih, n) is enough for both. Returns false and writes
 * nothing where there is no such copy, or (SVD, CP) ws is NULL: the caller then projects with
 * fl_mat_apply and adds the bias. */
bool fl_rec_input_ws(fl_rec *r, int n, const float *x, int ldx, const float *bias, float *gx, int ldgx, float *ws);

/* fl_rec_input_ws without a workspace: a dense W_ih's packed copy only. */
bool fl_rec_input(fl_rec *r, int n, const float *x, int ldx, const float *bias, float *gx, int ldgx);

/* y (n, rows) = x (n, K) W^T + bias (rows, may be NULL), row strides ldx and ldy, W packed as pk by
 * fl_pk_pack, through the gemm_pk of r's kernel level (which must have one), split over r's
 * threads by panels of W where the product is large enough: the output head (head.c) runs on its
 * session's top layer this way. */
void fl_rec_gemm_pk(fl_rec *r, int n, int rows, int K, const float *x, int ldx, const float *pk, const float *bias,
                    float *y, int ldy);

#endif
