/* The training workspace (bptt.c) and the per-direction recurrence it runs (bptt_dir.c). */
#ifndef FL_TRAIN_BPTT_INTERNAL_H
#define FL_TRAIN_BPTT_INTERNAL_H

#include "bptt.h"

/* One direction of one layer: what its backward needs. P = out: the projection size (LSTMP,
 * h_t = W_hr m_t, m_t = o * tanh(c_t)), or H without a projection (h_t = m_t). */
typedef struct layer_ws {
    float *gates;  // (T, B, 4H) gate activations i, f, g, o (after the nonlinearities)
    float *c;      // (T+1, B, H) cell states, c[0] = c0
    float *tc;     // (T, B, H) tanh(c_t)
    float *h;      // (T+1, B, P) hidden states, h[0] = h0
    float *m;      // projection: (T, B, H) m_t before W_hr; NULL without
    float *aux_hr; // projection: (T*B, R_hr) saved intermediate of W_hr (NULL for dense)
    float *aux_ih; // (T*B, R_ih) saved intermediate of W_ih (NULL for dense)
    float *aux_hh; // (T*B, R_hh) saved intermediate of W_hh (NULL for dense)
    float *xr;     // reverse direction: (T, B, in) its input, each sequence's valid steps reversed
    /* Per layer (direction 0's entry only), over the layer output of width W = dirs * H: */
    float *cat;    // (T, B, W) [forward, reverse] output of a bidirectional layer (W = dirs * P)
    float *y;      // (T, B, W) output after dropout
    float *mask;   // (T, B, W) dropout mask, 0 or 1/(1-p)
    bool dropped;  // the last forward applied dropout to this layer
} layer_ws;

struct fl_bptt {
    fl_arch arch;
    int dirs;          // 2 for a bidirectional model, else 1
    int out;           // P: size of each direction's h_t (the projection, or H)
    int max_batch, max_seq;
    int B, T;          // shapes of the last forward
    bool have_forward;
    layer_ws *lay;     // [layers * dirs], layer l direction d at l * dirs + d (as m->layer)
    int32_t *tok;      // (T, B) tokens of the last forward
    int32_t *tgt;      // (T, B) or (B) targets of the last forward
    int32_t *len;      // (B) lengths of the last forward (meaningful when has_len)
    int *act;          // (T) rows [0, act[t]) run the recurrence at step t
    bool has_len;      // the last forward had lengths
    size_t count;      // targets the last loss averaged over
    float *xlast;      // (B, W) top output at each row's last valid step (classifier with lengths)
    float *x0;         // (T, B, D) layer-0 input
    float *logits;     // (T*B, V) or (B, C); softmax probabilities after forward
    float *aux_head;   // (rows, R_head)
    float *dA;         // (T, B, 4H) gate pre-activation gradients of one direction
    float *dy, *dx;    // (T, B, max(D, W)) output / input gradients of one layer
    float *dyr;        // bidirectional: (T, B, P) the reverse half of dy in the reverse direction's time
    float *dxr;        // bidirectional: (T, B, max(D, W)) the reverse direction's input gradient
    float *baux;       // (T*B, R_max)
    float *scratch;    // CP scratch
    float *dh;         // (B, W) gradient carried backwards in time (also the head's scratch)
    float *dc;         // (B, H)
    float *dhp;        // projection: (T, B, P) gradient of each h_t (from above and from step t+1)
    float *baux_hr;    // projection: (T*B, R_hr)
    float *dm;         // projection: (B, H) gradient of m_t
    float *zeros;      // projection: (B, H) zeros (cell_backward's recurrent input: it comes via dm)
    fl_bptt_progress progress; // overlap hook (fl_bptt_set_progress) or NULL
    void *progress_user;
};

/* Forward of one direction over its input X (T, B, in) (already reversed for the reverse
 * direction): gates, then the recurrence from state idx of h0 (L*dirs, B, P) / c0 (L*dirs, B, H),
 * masking padded cells when the batch has lengths. */
void fl_bptt_dir_forward(fl_bptt *w, layer_ws *s, const fl_layer *ly, const float *X, int in_dim,
                         const float *h0, const float *c0, int idx);

/* Backward of one direction: dY (T, B, P) with row stride ldy is the gradient of its outputs;
 * accumulates the direction's parameter gradients into gl and, when dX is not NULL, writes
 * dX (T, B, in) = the gradient of its input X. */
void fl_bptt_dir_backward(fl_bptt *w, layer_ws *s, const fl_layer *ly, fl_layer *gl, const float *dY,
                          int ldy, const float *X, int in_dim, float *dX, size_t done);

/* src rows (T, B, n) of stride lds into dst (stride ldd), each sequence's valid steps in reverse
 * order: dst[s, b] = src[L_b - 1 - s, b] for s < L_b (L_b its length, or T), zero after when not
 * add; add: dst[s, b] += ... and the padded rows are left alone. Its own inverse. */
void fl_bptt_reverse_rows(const fl_bptt *w, const float *src, int lds, float *dst, int ldd, int n, bool add);

#endif
