/* Training forward (storing activations) and full backward through time of a whole model:
 * embedding -> stacked LSTM layers (dense, SVD or CP matrices) -> linear head -> softmax
 * cross-entropy, per step (language model, FL_HEAD_PER_STEP) or on the last step (classifier,
 * FL_HEAD_LAST_STEP). Everything is time-major. Workspaces are allocated once, for batches up to
 * max_batch and sequences up to max_seq. */
#ifndef FL_TRAIN_BPTT_H
#define FL_TRAIN_BPTT_H

#include "internal.h"

typedef struct fl_bptt fl_bptt;

/* One batch, time-major. Exactly one of x / tokens is set (tokens iff the model has an embedding).
 * targets: (T, B) next-token ids for a per-step head, or (B) class labels for a last-step head;
 * each in [0, head_out). h0, c0: (L, B, H) initial state, or NULL for zeros. */
typedef struct fl_bptt_batch {
    int batch, seq;
    const float *x;         /* (T, B, D) */
    const int32_t *tokens;  /* (T, B) */
    const int32_t *targets; /* (T, B) or (B) */
    const float *h0, *c0;   /* (L, B, H) or NULL */
} fl_bptt_batch;

/* Workspace for model m (kept as a pointer only for shapes: any model with the same architecture
 * and specs may be passed to forward/backward). */
fl_status fl_bptt_create(const fl_model *m, int max_batch, int max_seq, fl_bptt **out);
void fl_bptt_free(fl_bptt *w);

/* Forward over a batch, storing everything backward needs. dropout: probability of zeroing each
 * layer output (inverted dropout, masks drawn from rng); 0 (or rng NULL) disables it.
 * *loss: mean cross-entropy over all targets (accumulated in double). *correct (may be NULL):
 * number of targets whose argmax matches. Inputs are trusted here (the trainer checks data sets). */
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

/* Final state of the last forward: (L, B, H) each, copied into hn / cn (either may be NULL). */
void fl_bptt_final_state(const fl_bptt *w, float *hn, float *cn);

#endif
