/* ONNX import: the LSTM operator (opsets 7 and 14) as one fastlstm layer.
 *
 * ONNX: X (T, B, I) for layout 0, (B, T, I) for layout 1; W (dirs, 4H, I) and R (dirs, 4H, H) with
 * the gates stacked i, o, f, c; B (dirs, 8H) = [Wb, Rb]; Y (T, dirs, B, H) or (B, T, dirs, H);
 * Y_h, Y_c (dirs, B, H) or (B, dirs, H). fastlstm (like PyTorch) stacks the gates i, f, g, o, with
 * b_ih = Wb and b_hh = Rb; direction 0 is forward, 1 reverse (PyTorch's "_reverse" weights).
 * Supported: forward and bidirectional directions (every layer the same), both layouts,
 * initial_h / initial_c (zeros or rows of an (L*dirs, B, H) graph input), sequence_lens (an int32
 * graph input, fl_run_io's lengths at run time: ONNX and fastlstm agree on padded steps, final
 * states and where the reverse direction starts), the default activations, and as LSTM extras
 * (lstm_ext.h: inference, forward layers only) peepholes P, clip and input_forget. Refused with the
 * feature's name: direction "reverse" alone (fastlstm runs reverse time only as the second half of
 * a bidirectional layer), other activations, a constant sequence_lens. */
#include "onnx_graph.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* fastlstm / PyTorch gate k (i, f, g, o) is ONNX gate onnx_gate[k] (ONNX order i, o, f, c). */
static const int onnx_gate[4] = {0, 2, 3, 1};

static bool is_str(const Onnx__AttributeProto *a, size_t k, const char *s) {
    return k < a->n_strings && a->strings[k].len == strlen(s) && !memcmp(a->strings[k].data, s, a->strings[k].len);
}

/* The direction attribute: *dirs 1 (forward) or 2 (bidirectional). */
static fl_status lstm_direction(ctx *c, int *dirs) {
    *dirs = 1;
    const Onnx__AttributeProto *a = node_attr(c, "direction");
    if (!a || (a->s.len == 7 && !memcmp(a->s.data, "forward", 7))) return FL_OK;
    if (a->s.len == 13 && !memcmp(a->s.data, "bidirectional", 13)) {
        *dirs = 2;
        return FL_OK;
    }
    if (a->s.len == 7 && !memcmp(a->s.data, "reverse", 7))
        return node_fail(c, FL_ERR_UNSUPPORTED, "direction 'reverse' (a reverse-time LSTM on its own) is not supported: "
                         "fastlstm runs reverse time only as the second half of a bidirectional layer");
    return node_fail(c, FL_ERR_FORMAT, "unknown direction '%.*s'", (int)a->s.len, (const char *)a->s.data);
}

/* Check the attributes; sets *layout and *dirs. */
static fl_status lstm_attrs(ctx *c, int *layout, int *dirs, float *clip, int *input_forget) {
    *layout = 0;
    *clip = 0.0f;
    *input_forget = 0;
    fl_status st = lstm_direction(c, dirs);
    if (st) return st;
    for (size_t i = 0; i < c->node->n_attribute; i++) {
        const Onnx__AttributeProto *a = c->node->attribute[i];
        const char *n = a->name ? a->name : "";
        if (!strcmp(n, "hidden_size") || !strcmp(n, "direction")) continue;  // R's shape; lstm_direction
        if (!strcmp(n, "layout")) {
            if (a->i != 0 && a->i != 1) return node_fail(c, FL_ERR_FORMAT, "layout %lld", (long long)a->i);
            *layout = (int)a->i;
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

/* initial_h / initial_c: zeros, or rows of an (L*dirs, B, H) graph input (the whole input for one
 * layer). Layout 1 states are (B, dirs, H): the same bytes as (dirs, B, H) only when dirs is 1. */
static fl_status initial_state(ctx *c, value *v, int layout, int dirs, bool perm, const char *what, int *src,
                               int *layer) {
    *src = -1;
    *layer = -1;
    if (!v || v->kind == V_ZEROS) return FL_OK;
    if (v->kind == V_CONST && v->c.f) {
        for (size_t k = 0; k < v->c.count; k++)
            if (v->c.f[k] != 0.0f) return node_fail(c, FL_ERR_UNSUPPORTED, "%s is a non-zero constant", what);
        return FL_OK;
    }
    if (v->kind == V_GRAPH_IN && v->ndim == 3 && v->elem == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
        v->kind = V_STATE_IN;  // the whole input: (dirs, B, H), or (B, 1, H) for layout 1 (the same bytes)
        v->layer = -1;
    }
    if (v->kind != V_STATE_IN) return node_fail(c, FL_ERR_UNSUPPORTED, "%s '%s' is not zeros or a graph input", what, v->name);
    if (layout == 1 && (v->layer >= 0 || dirs > 1))
        return node_fail(c, FL_ERR_UNSUPPORTED, "%s is a batch-major state %s", what,
                         dirs > 1 ? "(B, 2, H) of a bidirectional layer (fastlstm takes (2L, B, H))" : "slice");
    if (v->layer >= 0 && v->count != dirs)
        return node_fail(c, FL_ERR_UNSUPPORTED, "%s takes %d rows of '%s' for %d direction%s", what, v->count,
                         c->g->input[v->gin]->name, dirs, dirs > 1 ? "s" : "");
    if (v->perm != perm)
        return node_fail(c, FL_ERR_UNSUPPORTED, "%s is %s by the lengths' sort but X is %s", what, v->perm ? "reordered" : "not reordered",
                         perm ? "reordered" : "not");
    *src = v->gin;
    *layer = v->layer;
    return FL_OK;
}

/* sequence_lens: an int32 (B) graph input (directly or through Casts), the same for every layer. */
static fl_status sequence_lens(ctx *c, bool perm, int *lens) {
    *lens = -1;
    bool named = c->node->n_input > 4 && c->node->input[4][0];
    value *v = node_input(c, 4);
    if (!named) {
        if (perm) return node_fail(c, FL_ERR_UNSUPPORTED, "X is reordered by the lengths' sort but the node takes no sequence_lens");
        if (c->L && c->lay[0].lens >= 0)
            return node_fail(c, FL_ERR_UNSUPPORTED, "this layer has no sequence_lens but the first has (fastlstm applies "
                             "the lengths to every layer)");
        return FL_OK;
    }
    if (!v) return node_fail(c, FL_ERR_FORMAT, "sequence_lens '%s' is not defined", c->node->input[4]);
    if (v->kind == V_GRAPH_IN) {
        if (v->elem != ONNX__TENSOR_PROTO__DATA_TYPE__INT32)
            return node_fail(c, FL_ERR_DTYPE, "sequence_lens '%s' has element type %d, not int32", v->name, v->elem);
        if (v->ndim != 1)
            return node_fail(c, FL_ERR_SHAPE, "sequence_lens '%s' has rank %d, not 1 (batch)", v->name, v->ndim);
        v->kind = V_LENS;
    }
    if (v->kind == V_CONST)
        return node_fail(c, FL_ERR_UNSUPPORTED, "sequence_lens '%s' is a constant (fastlstm takes lengths at run time: "
                         "make it a graph input)", v->name);
    if (v->kind != V_LENS) return node_fail(c, FL_ERR_UNSUPPORTED, "sequence_lens '%s' is not a graph input", v->name);
    if (c->L && c->lay[0].lens != v->gin)
        return node_fail(c, FL_ERR_UNSUPPORTED, "sequence_lens '%s' differs from the first layer's (fastlstm applies one "
                         "set of lengths to every layer)", v->name);
    if (v->perm != perm)
        return node_fail(c, FL_ERR_UNSUPPORTED, "sequence_lens is %s by the lengths' sort but X is %s",
                         v->perm ? "reordered" : "not reordered", perm ? "reordered" : "not");
    *lens = v->gin;
    return FL_OK;
}

/* Direction d of the node's weights into ly (PyTorch gate order). */
static fl_status take_weights(ctx *c, lstm_layer *ly, int d, const value *w, const value *r, const value *b, int64_t H, int64_t I) {
    size_t G = 4 * (size_t)H;
    ly->wih[d] = fl_malloc(G * (size_t)I * sizeof(float));
    ly->whh[d] = fl_malloc(G * (size_t)H * sizeof(float));
    ly->bih[d] = fl_calloc(G, sizeof(float));
    ly->bhh[d] = fl_calloc(G, sizeof(float));
    if (!ly->wih[d] || !ly->whh[d] || !ly->bih[d] || !ly->bhh[d]) return node_fail(c, FL_ERR_NOMEM, "out of memory");
    reorder(ly->wih[d], w->c.f + (size_t)d * G * I, (int)H, (int)I);
    reorder(ly->whh[d], r->c.f + (size_t)d * G * H, (int)H, (int)H);
    if (b) {
        reorder(ly->bih[d], b->c.f + (size_t)d * 2 * G, (int)H, 1);
        reorder(ly->bhh[d], b->c.f + (size_t)d * 2 * G + G, (int)H, 1);
    }
    return FL_OK;
}

fl_status op_lstm(ctx *c) {
    int layout, dirs, input_forget;
    float clip;
    fl_status st = lstm_attrs(c, &layout, &dirs, &clip, &input_forget);
    if (st) return st;
    if (c->L >= MAX_LAYERS) return node_fail(c, FL_ERR_UNSUPPORTED, "more than %d LSTM layers", MAX_LAYERS);
    if (c->L && dirs != c->dirs)
        return node_fail(c, FL_ERR_UNSUPPORTED, "a %s layer after %s ones (fastlstm layers are all bidirectional or none)",
                         dirs > 1 ? "bidirectional" : "forward", c->dirs > 1 ? "bidirectional" : "forward");
    value *x = node_input_req(c, 0, "X"), *w = node_input_req(c, 1, "W"), *r = node_input_req(c, 2, "R");
    if (!x || !w || !r) return FL_ERR_FORMAT;
    if (!as_seq(c, x)) return FL_ERR_UNSUPPORTED;
    if (x->layer != c->L - 1 || x->head || x->has_dir || x->ndim != 3)
        return node_fail(c, FL_ERR_UNSUPPORTED, "X is not the %s", c->L ? "previous LSTM layer's output (its directions "
                         "joined per step)" : "graph's input sequence");
    // which of the input's axes is time is fixed by the first LSTM; the others must agree
    int t_ax = layout ? x->ax[1] : x->ax[0], b_ax = layout ? x->ax[0] : x->ax[1];
    if (!c->t_label) {
        if (!((t_ax == AX_P0 && b_ax == AX_P1) || (t_ax == AX_P1 && b_ax == AX_P0)))
            return node_fail(c, FL_ERR_UNSUPPORTED, "X's axes are not the input's sequence and batch axes");
        c->t_label = t_ax;
    } else if (t_ax != c->t_label) {
        return node_fail(c, FL_ERR_UNSUPPORTED, "X's time and batch axes are swapped against the first layer's");
    }
    lstm_layer *ly = &c->lay[c->L];
    if (x->perm && x->perm_ax != b_ax)
        return node_fail(c, FL_ERR_UNSUPPORTED, "X was reordered by the lengths' sort along its time axis");
    st = sequence_lens(c, x->perm, &ly->lens);
    if (st) return st;
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
    const bool perm = x->perm;
    st = initial_state(c, node_input(c, 5), layout, dirs, perm, "initial_h", &ly->h_src, &ly->h_layer);
    if (!st) st = initial_state(c, node_input(c, 6), layout, dirs, perm, "initial_c", &ly->c_src, &ly->c_layer);
    if (st) return st;
    if ((c->node->n_input > 5 && c->node->input[5][0] && !node_input(c, 5)) ||
        (c->node->n_input > 6 && c->node->input[6][0] && !node_input(c, 6)))
        return node_fail(c, FL_ERR_FORMAT, "an initial state is not defined");
    if (c->L == 0 && c->tokens && I != c->D)
        return node_fail(c, FL_ERR_SHAPE, "W takes %lld inputs but the embedding has %d", (long long)I, c->D);

    // weights, PyTorch gate order, per direction
    ly->in = (int)I;
    for (int d = 0; d < dirs; d++)
        if ((st = take_weights(c, ly, d, w, r, b, H, I))) return st;
    // extras: kept only when they change the function (zero peepholes are none)
    bool peep = false;
    for (size_t k = 0; p && k < p->c.count; k++) peep = peep || p->c.f[k] != 0.0f;
    if (dirs > 1 && (peep || clip > 0 || input_forget))
        return node_fail(c, FL_ERR_UNSUPPORTED, "%s on a bidirectional layer is not supported (fastlstm runs LSTM extras "
                         "on forward layers only)", peep ? "peepholes P" : clip > 0 ? "clip" : "input_forget");
    if (peep) {
        ly->peep = fl_malloc(3 * (size_t)H * sizeof(float));
        if (!ly->peep) return node_fail(c, FL_ERR_NOMEM, "out of memory");
        memcpy(ly->peep, p->c.f, 3 * (size_t)H * sizeof(float));
    }
    ly->clip = clip;
    ly->input_forget = input_forget;
    c->H = (int)H;
    c->dirs = dirs;
    int layer = c->L++;

    // outputs: Y (T, dirs, B, H) / (B, T, dirs, H); Y_h, Y_c (dirs, B, H) / (B, dirs, H)
    int tl = c->t_label, bl = tl == AX_P0 ? AX_P1 : AX_P0;
    for (size_t k = 0; k < c->node->n_output && k < 3; k++) {
        if (!c->node->output[k][0]) continue;
        value *o = new_value(c, c->node->output[k]);
        if (!o) return FL_ERR_FORMAT;
        o->layer = layer;
        o->perm = perm;  // outputs stay in the sorted order until gathered back
        o->perm_ax = bl;
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
