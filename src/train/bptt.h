/* Training forward (storing activations) and full backward through time of a whole model:
 * embedding -> stacked LSTM layers (dense, SVD or CP matrices; bidirectional or not; with a
 * projection W_hr of size P or not, see fl_arch) -> linear head on dirs * P features -> softmax
 * cross-entropy, per step (language model, FL_HEAD_PER_STEP) or on the last step (classifier,
 * FL_HEAD_LAST_STEP). Everything is time-major. Workspaces are allocated once, for batches up to
 * max_batch and sequences up to max_seq. */
#ifndef FL_TRAIN_BPTT_H
#define FL_TRAIN_BPTT_H

#include "internal.h"

typedef struct fl_bptt fl_bptt;

/* One batch, time-major. Exactly one of x / tokens is set (tokens iff the model has an embedding).
 * targets: (T, B) next-token ids for a per-step head, or (B) class labels for a last-step head;
 * each in [0, head_out). h0: (L*dirs, B, P), c0: (L*dirs, B, H) initial state (row l*dirs + d for
 * layer l, direction d, as PyTorch's h_0 / c_0; P = proj or H), or NULL for zeros.
 * lengths: (B) valid length of each sequence in [1, T] (pack_padded_sequence semantics, valid steps
 * first), or NULL for all T. Padded steps contribute nothing: their outputs are zero, the per-step
 * loss is the mean over valid targets only, a last-step head reads each sequence's last valid
 * step, and the final state is each sequence's state at its last valid step. Rows sorted by
 * decreasing length cost only their valid steps (each step runs on the rows still active);
 * unsorted rows give the same result at the cost of the longest row's steps. */
typedef struct fl_bptt_batch {
    int batch, seq;
    const float *x;         /* (T, B, D) */
    const int32_t *tokens;  /* (T, B) */
    const int32_t *targets; /* (T, B) or (B) */
    const float *h0, *c0;   /* (L*dirs, B, P), (L*dirs, B, H), or NULL */
    const int32_t *lengths; /* (B) or NULL */
} fl_bptt_batch;

/* Workspace for model m (kept as a pointer only for shapes: any model with the same architecture
 * and specs may be passed to forward/backward). */
fl_status fl_bptt_create(const fl_model *m, int max_batch, int max_seq, fl_bptt **out);
void fl_bptt_free(fl_bptt *w);

/* Forward over a batch, storing everything backward needs. dropout: probability of zeroing each
 * layer output (inverted dropout, masks drawn from rng); 0 (or rng NULL) disables it.
 * *loss: mean cross-entropy over all (valid) targets (accumulated in double). *correct (may be
 * NULL): number of targets whose argmax matches. Token ids and targets are trusted here (the
 * trainer checks data sets); lengths outside [1, T] are refused with FL_ERR_ARG naming the row.
 * A model with a padding id (arch.has_padding) gets no gradient in that embedding row, as
 * nn.Embedding(padding_idx=...). */
fl_status fl_bptt_forward(fl_bptt *w, const fl_model *m, const fl_bptt_batch *in, float dropout,
                          fl_rng *rng, double *loss, long *correct);

/* Backward of the last forward: ADDS d(loss)/d(params) into grad's parameter block (grad has the
 * same architecture and specs as m). The initial state is treated as a constant (truncated BPTT). */
void fl_bptt_backward(fl_bptt *w, const fl_model *m, fl_model *grad);

/* Overlap hook (distributed training): during fl_bptt_backward, fn(from, user) is called each time
 * a part of the gradient becomes final, with `from` the offset (in floats) into grad's parameter
 * block such that grad[from, n_params) will not change again in this backward; the head finishes
 * first, then each layer from the top, then the embedding (from = 0 at the end). Between chunks of
 * time steps fn is also called with an unchanged `from`, so that non-blocking communication can
 * progress. The parameter layout (embedding, layers, head) makes the finished part a suffix.
 * NULL fn: no calls. Kept by w until changed. */
typedef void (*fl_bptt_progress)(size_t from, void *user);
void fl_bptt_set_progress(fl_bptt *w, fl_bptt_progress fn, void *user);

/* Token ids of the last forward, (T, B) time-major (*n = T * B), or NULL (*n = 0) for a model
 * without an embedding or before any forward. Owned by w, valid until the next forward. */
FL_API const int32_t *fl_bptt_tokens(const fl_bptt *w, size_t *n);

/* Number of targets the last forward's loss averaged over: T * B or the valid steps (per-step
 * head), B (last-step head). */
size_t fl_bptt_count(const fl_bptt *w);

/* Final state of the last forward: hn (L*dirs, B, P), cn (L*dirs, B, H) (either may be NULL),
 * laid out as h0 / c0; with lengths, each row's state at its last valid step (for the reverse
 * direction: after its pass down to step 0). */
void fl_bptt_final_state(const fl_bptt *w, float *hn, float *cn);

#endif
