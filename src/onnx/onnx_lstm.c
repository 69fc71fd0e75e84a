/* ONNX import: the LSTM operator (opsets 7 and 14) as one fastlstm layer.
 *
 * ONNX: X (T, B, I) for layout 0, (B, T, I) for layout 1; W (dirs, 4H, I) and R (dirs, 4H, H) with
 * the gates stacked i, o, f, c; B (dirs, 8H) = [Wb, Rb]; Y (T, dirs, B, H) or (B, T, dirs, H);
 * Y_h, Y_c (dirs, B, H) or (B, dirs, H). fastlstm (like PyTorch) stacks the gates i, f, g, o, with
 * b_ih = Wb and b_hh = Rb. Supported: forward direction, both layouts, initial_h / initial_c
 * (zeros or an (L, B, H) graph input), the default activations, and as LSTM extras (lstm_ext.h:
 * inference only) peepholes P, clip and input_forget. Refused with the feature's name: reverse and
 * bidirectional directions, sequence_lens, other activations. */
#include "onnx_graph.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* fastlstm / PyTorch gate k (i, f, g, o) is ONNX gate onnx_gate[k] (ONNX order i, o, f, c). */
static const int onnx_gate[4] = {0, 2, 3, 1};

static bool is_str(const Onnx__AttributeProto *a, size_t k, const char *s) {
    return k < a->n_strings && a->strings[k].len == strlen(s) && !memcmp(a->strings[k].data, s, a->strings[k].len);
}

/* Check the attributes; sets *layout and *dirs. */
static fl_status lstm_attrs(ctx *c, int *layout, int *dirs, float *clip, int *input_forget) {
    *layout = 0;
    *dirs = 1;
    *clip = 0.0f;
    *input_forget = 0;
    for (size_t i = 0; i < c->node->n_attribute; i++) {
        const Onnx__AttributeProto *a = c->node->attribute[i];
        const char *n = a->name ? a->name : "";
        if (!strcmp(n, "hidden_size")) continue;  // checked against R's shape
        if (!strcmp(n, "layout")) {
            if (a->i != 0 && a->i != 1) return node_fail(c, FL_ERR_FORMAT, "layout %lld", (long long)a->i);
            *layout = (int)a->i;
        } else if (!strcmp(n, "direction")) {
            if (a->s.len == 7 && !memcmp(a->s.data, "forward", 7)) *dirs = 1;
            else if (a->s.len == 7 && !memcmp(a->s.data, "reverse", 7))
                return node_fail(c, FL_ERR_UNSUPPORTED, "direction 'reverse' (reverse-time LSTM layers) is not supported");
            else if (a->s.len == 13 && !memcmp(a->s.data, "bidirectional", 13))
                return node_fail(c, FL_ERR_UNSUPPORTED, "direction 'bidirectional' (bidirectional LSTM layers) is not "
                                 "supported yet");
            else return node_fail(c, FL_ERR_FORMAT, "unknown direction '%.*s'", (int)a->s.len, (const char *)a->s.data);
        } else if (!strcmp(n, "activations")) {
            bool dflt = a->n_strings == 3 * (size_t)*dirs;
            for (size_t k = 0; dflt && k < a->n_strings; k++) dflt = is_str(a, k, k % 3 ? "Tanh" : "Sigmoid");
            if (!dflt) {
                char list[160] = "";
                for (size_t k = 0; k < a->n_strings && k < 6; k++) {
                    size_t used = strlen(list);
                    snprintf(list + used, sizeof list - used, "%s%.*s", k ? ", " : "", (int)a->strings[k].len,
                             (const char *)a->strings[k].data);
                }
                return node_fail(c, FL_ERR_UNSUPPORTED, "activations [%s]: only the defaults (Sigmoid, Tanh, Tanh) "
                                 "are supported", list);
            }
        } else if (!strcmp(n, "activation_alpha") || !strcmp(n, "activation_beta")) {
            return node_fail(c, FL_ERR_UNSUPPORTED, "%s (parameters of non-default activations) is not supported", n);
        } else if (!strcmp(n, "clip")) {
            if (!(a->f > 0.0f) || !isfinite(a->f)) return node_fail(c, FL_ERR_FORMAT, "clip %g is not a positive threshold", (double)a->f);
            *clip = a->f;
        } else if (!strcmp(n, "input_forget")) {
            if (a->i != 0 && a->i != 1) return node_fail(c, FL_ERR_FORMAT, "input_forget %lld", (long long)a->i);
            *input_forget = (int)a->i;
        } else {
            return node_fail(c, FL_ERR_UNSUPPORTED, "attribute '%s' is not supported", n);
        }
    }
    return FL_OK;
}

/* A constant float weight of shape (dirs, rows, cols) (cols 0: (dirs, rows)), finite. */
static fl_status weight(ctx *c, const value *v, const char *what, int dirs, int64_t rows, int64_t cols) {
    if (!v || v->kind != V_CONST)
        return node_fail(c, FL_ERR_UNSUPPORTED, "%s is not a constant (an initializer, a Constant node or a feed)", what);
    if (!v->c.f) return node_fail(c, FL_ERR_DTYPE, "%s '%s' is not float32", what, v->name);
    int nd = cols ? 3 : 2;
    if (v->c.ndim != nd || v->c.shape[0] != dirs || v->c.shape[1] != rows || (cols && v->c.shape[2] != cols))
        return node_fail(c, FL_ERR_SHAPE, "%s '%s' is not (%d, %lld%s%lld)", what, v->name, dirs, (long long)rows,
                         cols ? ", " : "", cols ? (long long)cols : 0LL);
    for (size_t k = 0; k < v->c.count; k++)
        if (!isfinite(v->c.f[k])) return node_fail(c, FL_ERR_NONFINITE, "%s '%s' has %g at offset %zu", what, v->name, (double)v->c.f[k], k);
    return FL_OK;
}

/* Gate rows of src (4H, cols), ONNX order, into dst in PyTorch order. */
static void reorder(float *dst, const float *src, int H, int cols) {
    for (int g = 0; g < 4; g++)
        memcpy(dst + (size_t)g * H * cols, src + (size_t)onnx_gate[g] * H * cols, (size_t)H * cols * sizeof(float));
}

/* initial_h / initial_c: zeros, or one layer's slice of an (L, B, H) graph input. */
static fl_status initial_state(ctx *c, value *v, int layout, const char *what, int *src, int *layer) {
    *src = -1;
    *layer = -1;
    if (!v || v->kind == V_ZEROS) return FL_OK;
    if (v->kind == V_CONST && v->c.f) {
        for (size_t k = 0; k < v->c.count; k++)
            if (v->c.f[k] != 0.0f) return node_fail(c, FL_ERR_UNSUPPORTED, "%s is a non-zero constant", what);
        return FL_OK;
    }
    if (v->kind == V_GRAPH_IN && v->ndim == 3 && v->elem == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
        v->kind = V_STATE_IN;  // the whole input: (1, B, H), or (B, 1, H) for layout 1 (the same bytes)
        v->layer = -1;
    }
    if (v->kind != V_STATE_IN) return node_fail(c, FL_ERR_UNSUPPORTED, "%s '%s' is not zeros or a graph input", what, v->name);
    if (layout == 1 && v->layer >= 0)
        return node_fail(c, FL_ERR_UNSUPPORTED, "%s is a slice of a batch-major state", what);
    *src = v->gin;
    *layer = v->layer;
    return FL_OK;
}

fl_status op_lstm(ctx *c) {
    int layout, dirs, input_forget;
    float clip;
    fl_status st = lstm_attrs(c, &layout, &dirs, &clip, &input_forget);
    if (st) return st;
    if (c->L >= MAX_LAYERS) return node_fail(c, FL_ERR_UNSUPPORTED, "more than %d LSTM layers", MAX_LAYERS);
    value *x = node_input_req(c, 0, "X"), *w = node_input_req(c, 1, "W"), *r = node_input_req(c, 2, "R");
    if (!x || !w || !r) return FL_ERR_FORMAT;
    if (!as_seq(c, x)) return FL_ERR_UNSUPPORTED;
    if (x->layer != c->L - 1 || x->head || x->has_dir || x->ndim != 3)
        return node_fail(c, FL_ERR_UNSUPPORTED, "X is not the %s", c->L ? "previous LSTM layer's output" : "graph's input sequence");
    // which of the input's axes is time is fixed by the first LSTM; the others must agree
    int t_ax = layout ? x->ax[1] : x->ax[0], b_ax = layout ? x->ax[0] : x->ax[1];
    if (!c->t_label) {
        if (!((t_ax == AX_P0 && b_ax == AX_P1) || (t_ax == AX_P1 && b_ax == AX_P0)))
            return node_fail(c, FL_ERR_UNSUPPORTED, "X's axes are not the input's sequence and batch axes");
        c->t_label = t_ax;
    } else if (t_ax != c->t_label) {
        return node_fail(c, FL_ERR_UNSUPPORTED, "X's time and batch axes are swapped against the first layer's");
    }
    if (node_input(c, 4) || (c->node->n_input > 4 && c->node->input[4][0]))
        return node_fail(c, FL_ERR_UNSUPPORTED, "sequence_lens (variable-length batches) is not supported yet");
    if (r->kind != V_CONST || !r->c.f || r->c.ndim != 3)
        return node_fail(c, FL_ERR_UNSUPPORTED, "R '%s' is not a constant float32 (dirs, 4H, H) tensor", r->name);
    int64_t H = r->c.shape[2];
    if (H < 1 || H > (1 << 20)) return node_fail(c, FL_ERR_SHAPE, "R has hidden size %lld", (long long)H);
    const Onnx__AttributeProto *hs = node_attr(c, "hidden_size");
    if (hs && hs->i != H) return node_fail(c, FL_ERR_SHAPE, "hidden_size %lld but R is for %lld", (long long)hs->i, (long long)H);
    if (w->kind != V_CONST || !w->c.f || w->c.ndim != 3)
        return node_fail(c, FL_ERR_UNSUPPORTED, "W '%s' is not a constant float32 (dirs, 4H, I) tensor", w->name);
    int64_t I = w->c.shape[2];
    if (I < 1 || I > (1 << 24) || (x->ax[2] >= 0 && x->ax[2] != I))
        return node_fail(c, FL_ERR_SHAPE, "W takes %lld inputs but X has %d features", (long long)I, x->ax[2]);
    if (c->L && H != c->H)
        return node_fail(c, FL_ERR_UNSUPPORTED, "hidden size %lld differs from the first layer's %d (fastlstm layers share one)",
                         (long long)H, c->H);
    value *b = node_input(c, 3), *p = node_input(c, 7);
    st = weight(c, w, "W", dirs, 4 * H, I);
    if (!st) st = weight(c, r, "R", dirs, 4 * H, H);
    if (!st && b) st = weight(c, b, "B", dirs, 8 * H, 0);
    if (!st && p) st = weight(c, p, "P", dirs, 3 * H, 0);
    if (st) return st;
    if (!b && c->node->n_input > 3 && c->node->input[3][0]) return node_fail(c, FL_ERR_FORMAT, "B is not defined");
    if (!p && c->node->n_input > 7 && c->node->input[7][0]) {
        return node_fail(c, FL_ERR_FORMAT, "P is not defined");
    }
    lstm_layer *ly = &c->lay[c->L];
    st = initial_state(c, node_input(c, 5), layout, "initial_h", &ly->h_src, &ly->h_layer);
    if (!st) st = initial_state(c, node_input(c, 6), layout, "initial_c", &ly->c_src, &ly->c_layer);
    if (st) return st;
    if ((c->node->n_input > 5 && c->node->input[5][0] && !node_input(c, 5)) ||
        (c->node->n_input > 6 && c->node->input[6][0] && !node_input(c, 6)))
        return node_fail(c, FL_ERR_FORMAT, "an initial state is not defined");
    if (c->L == 0 && c->tokens && I != c->D)
        return node_fail(c, FL_ERR_SHAPE, "W takes %lld inputs but the embedding has %d", (long long)I, c->D);

    // weights, PyTorch gate order; direction 0 (the only one until bidirectional layers land)
    size_t G = 4 * (size_t)H;
    ly->in = (int)I;
    ly->wih = fl_malloc(G * (size_t)I * sizeof(float));
    ly->whh = fl_malloc(G * (size_t)H * sizeof(float));
    ly->bih = fl_calloc(G, sizeof(float));
    ly->bhh = fl_calloc(G, sizeof(float));
    if (!ly->wih || !ly->whh || !ly->bih || !ly->bhh) return node_fail(c, FL_ERR_NOMEM, "out of memory");
    reorder(ly->wih, w->c.f, (int)H, (int)I);
    reorder(ly->whh, r->c.f, (int)H, (int)H);
    if (b) {
        reorder(ly->bih, b->c.f, (int)H, 1);
        reorder(ly->bhh, b->c.f + G, (int)H, 1);
    }
    // extras: kept only when they change the function (zero peepholes are none)
    bool peep = false;
    for (size_t k = 0; p && k < p->c.count; k++) peep = peep || p->c.f[k] != 0.0f;
    if (peep) {
        ly->peep = fl_malloc(3 * (size_t)H * sizeof(float));
        if (!ly->peep) return node_fail(c, FL_ERR_NOMEM, "out of memory");
        memcpy(ly->peep, p->c.f, 3 * (size_t)H * sizeof(float));
    }
    ly->clip = clip;
    ly->input_forget = input_forget;
    c->H = (int)H;
    int layer = c->L++;

    // outputs: Y (T, dirs, B, H) / (B, T, dirs, H); Y_h, Y_c (dirs, B, H) / (B, dirs, H)
    int tl = c->t_label, bl = tl == AX_P0 ? AX_P1 : AX_P0;
    for (size_t k = 0; k < c->node->n_output && k < 3; k++) {
        if (!c->node->output[k][0]) continue;
        value *o = new_value(c, c->node->output[k]);
        if (!o) return FL_ERR_FORMAT;
        o->layer = layer;
        if (k == 0) {
            o->kind = V_SEQ;
            o->ndim = 4;
            o->has_dir = true;
            int y0[4] = {tl, AX_DIR, bl, (int)H}, y1[4] = {bl, tl, AX_DIR, (int)H};
            memcpy(o->ax, layout ? y1 : y0, sizeof y0);
        } else {
            o->kind = V_STATE_OUT;
            o->is_c = k == 2;
            o->ndim = 3;
            int s0[3] = {AX_DIR, bl, (int)H}, s1[3] = {bl, AX_DIR, (int)H};
            memcpy(o->ax, layout ? s1 : s0, sizeof s0);
        }
    }
    return FL_OK;
}
