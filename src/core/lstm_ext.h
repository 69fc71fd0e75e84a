/* Optional per-layer LSTM extras that ONNX's LSTM has and PyTorch's does not: peepholes, cell
 * clipping and coupled input-forget gates. A model carries them in m->ext (NULL for a plain LSTM);
 * sessions run such models through fl_lstm_ext_step, a plain reference-style step of its own, and
 * decomposition and training refuse them (fl_lstm_ext_refuse). Not installed. */
#ifndef FL_LSTM_EXT_H
#define FL_LSTM_EXT_H

#include "internal.h"

typedef struct fl_lstm_ext {
    int layers, hidden;
    float *peep;        /* (L, 3H): ONNX's P per layer, order p_i, p_o, p_f; zeros for none */
    float *clip;        /* (L): threshold applied to every gate pre-activation; 0 for none */
    int *input_forget;  /* (L): 1 couples the gates, f = 1 - i */
} fl_lstm_ext;          /* one fl_malloc block: the arrays point inside it */

/* Zeroed extras for L layers of H units. The caller owns *out (fl_lstm_ext_free). */
fl_status fl_lstm_ext_create(int layers, int hidden, fl_lstm_ext **out);
void fl_lstm_ext_free(fl_lstm_ext *e);
fl_status fl_lstm_ext_clone(const fl_lstm_ext *e, fl_lstm_ext **out);

/* FL_ERR_UNSUPPORTED naming `what` ("decomposition", "training") when m has extras, else FL_OK. */
fl_status fl_lstm_ext_refuse(const fl_model *m, const char *what);

/* The extras as the text of the "lstm_ext" metadata entry (JSON; floats with 9 significant digits,
 * which round-trip float32 exactly); caller frees with fl_free. NULL when out of memory. */
char *fl_lstm_ext_to_json(const fl_lstm_ext *e);
/* Parse the "lstm_ext" metadata entry of model file path for model m (its shapes; every LSTM matrix
 * must be dense). Sets m->ext. FL_ERR_FORMAT / FL_ERR_NONFINITE / FL_ERR_UNSUPPORTED naming path. */
fl_status fl_lstm_ext_parse(const char *path, const char *json, fl_model *m);

/* One time step of layer l of m (which has extras): gx (B, 4H) holds x W_ih^T + b_ih + b_hh and is
 * overwritten; h (B, H) is h_{t-1}; c (B, H) is updated in place; h_out (B, H), not aliasing h.
 *   i = σ(clip(g_i + p_i c)),  f = input_forget ? 1 - i : σ(clip(g_f + p_f c)),  g = tanh(clip(g_g)),
 *   c' = f c + i g,  o = σ(clip(g_o + p_o c')),  h' = o tanh(c')   (ONNX LSTM, default activations). */
void fl_lstm_ext_step(const fl_model *m, int l, int B, float *gx, const float *h, float *c, float *h_out);

#endif
