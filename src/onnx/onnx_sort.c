/* ONNX import: PyTorch's sort / unsort around packed sequences.
 *
 * pack_padded_sequence(x, lengths, enforce_sorted=False) exports as: TopK of the lengths (all B of
 * them, largest first) gives the sorted lengths and the permutation P; x (and h0 / c0) are gathered
 * by P along the batch axis; the LSTMs run on the sorted batch with the sorted lengths; then every
 * output is gathered along its batch axis by the inverse of P, built as
 * ScatterElements(zeros(B), P, Range(0, ReduceProd(Shape(P)), 1)) (out[P[i]] = i).
 *
 * Each sequence's computation depends on that sequence alone, so this round trip is the identity
 * when the sequences, their lengths and their initial states are all reordered by the same P and
 * every output is put back by its inverse. That is what the handlers prove: one TopK per graph; a
 * value in the sorted order carries `perm` (its batch axis reordered by P); the LSTM requires X, the
 * lengths and non-zero initial states to agree (onnx_lstm.c), the graph outputs must be back in the
 * input's order (onnx_import.c). The model then runs the unsorted batch with its own lengths. */
#include "onnx_graph.h"

#include <string.h>

/* v is a scalar or 1-element V_SHAPE equal to the lengths' size B. */
static bool is_lb(const value *v) {
    value s;
    return as_shape(v, &s) && s.n_sv == 1 && s.sym[0] && s.sv[0] == AX_LB;
}

/* TopK(lengths, B), largest first, sorted: the sorted lengths and the permutation. */
fl_status op_topk(ctx *c) {
    value *x = node_input_req(c, 0, "X"), *k = node_input(c, 1);
    if (!x) return FL_ERR_FORMAT;
    if (x->kind == V_GRAPH_IN && x->ndim == 1 &&
        (x->elem == ONNX__TENSOR_PROTO__DATA_TYPE__INT32 || x->elem == ONNX__TENSOR_PROTO__DATA_TYPE__INT64))
        x->kind = V_LENS;
    if (x->kind != V_LENS || x->perm) return node_fail(c, FL_ERR_UNSUPPORTED, "only the lengths input can be sorted");
    if (!k || !is_lb(k)) return node_fail(c, FL_ERR_UNSUPPORTED, "K is not the number of lengths (a partial sort)");
    int64_t axis = attr_int(c, "axis", -1);
    if ((axis != -1 && axis != 0) || attr_int(c, "largest", 1) != 1 || attr_int(c, "sorted", 1) != 1)
        return node_fail(c, FL_ERR_UNSUPPORTED, "only a full descending sort of the lengths is supported");
    if (c->sorted) return node_fail(c, FL_ERR_UNSUPPORTED, "a second sort of the lengths");
    if (c->node->n_output != 2) return node_fail(c, FL_ERR_FORMAT, "TopK has %zu outputs", c->node->n_output);
    c->sorted = true;
    value tmp = *x;
    value *vals = c->node->output[0][0] ? new_value(c, c->node->output[0]) : NULL;
    if (c->node->output[0][0] && !vals) return FL_ERR_FORMAT;
    if (vals) {
        const char *name = vals->name;
        *vals = tmp;
        vals->name = name;
        vals->perm = true;  // lengths[P]
    }
    value *idx = c->node->output[1][0] ? new_value(c, c->node->output[1]) : NULL;
    if (c->node->output[1][0] && !idx) return FL_ERR_FORMAT;
    if (idx) idx->kind = V_SORTIDX;
    return FL_OK;
}

/* ReduceProd of the 1-element shape of P: B. */
fl_status op_reduce_prod(ctx *c) {
    value *x = node_input_req(c, 0, "data"), s;
    if (!x) return FL_ERR_FORMAT;
    if (node_attr(c, "axes") || node_input(c, 1) || !as_shape(x, &s) || s.scalar || s.n_sv != 1)
        return node_fail(c, FL_ERR_UNSUPPORTED, "only the product of a 1-element shape is supported");
    value *o = out0(c);
    if (!o) return FL_ERR_FORMAT;
    *o = (value){.name = o->name, .kind = V_SHAPE, .n_sv = 1, .sv = {s.sv[0]}, .sym = {s.sym[0]},
                 .scalar = attr_int(c, "keepdims", 1) == 0, .gin = -1};
    return FL_OK;
}

/* Range(0, B, 1): the identity index of the batch. */
fl_status op_range(ctx *c) {
    value *st = node_input_req(c, 0, "start"), *lim = node_input_req(c, 1, "limit"), *d = node_input_req(c, 2, "delta");
    if (!st || !lim || !d) return FL_ERR_FORMAT;
    value a, b;
    bool ok = as_shape(st, &a) && a.n_sv == 1 && !a.sym[0] && a.sv[0] == 0 && as_shape(d, &b) && b.n_sv == 1 &&
              !b.sym[0] && b.sv[0] == 1 && is_lb(lim);
    if (!ok) return node_fail(c, FL_ERR_UNSUPPORTED, "only Range(0, number of lengths, 1) is supported");
    value *o = out0(c);
    if (!o) return FL_ERR_FORMAT;
    o->kind = V_RANGE;
    return FL_OK;
}

/* ScatterElements(zeros(B), P, Range(0, B, 1)): P's inverse. */
fl_status op_scatter_elements(ctx *c) {
    value *z = node_input_req(c, 0, "data"), *i = node_input_req(c, 1, "indices"), *u = node_input_req(c, 2, "updates");
    if (!z || !i || !u) return FL_ERR_FORMAT;
    const Onnx__AttributeProto *red = node_attr(c, "reduction");
    bool ok = z->kind == V_ZEROS && z->zshape && z->n_sv == 1 && z->sym[0] && z->sv[0] == AX_LB &&
              i->kind == V_SORTIDX && u->kind == V_RANGE && attr_int(c, "axis", 0) == 0 &&
              (!red || (red->s.len == 4 && !memcmp(red->s.data, "none", 4)));
    if (!ok) return node_fail(c, FL_ERR_UNSUPPORTED, "only the inverse of the lengths' sort (0..B-1 scattered to the "
                              "sort's indices in B zeros) is supported");
    value *o = out0(c);
    if (!o) return FL_ERR_FORMAT;
    o->kind = V_UNSORTIDX;
    return FL_OK;
}

fl_status gather_perm(ctx *c, value *data, const value *idx, int64_t axis) {
    const bool sort = idx->kind == V_SORTIDX;
    // the sequence: x (or the embedded tokens) reordered along what the LSTM must take as its batch
    if (sort && data->kind == V_GRAPH_IN && data->ndim == 3 && data->elem == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT &&
        (axis == 1 || axis == -2) && (c->seq_in >= 0 || c->tokens)) {
        // h0 / c0: (L*dirs, B, H) along B, once the sequence input is known
        int gin = data->gin;
        data->kind = V_STATE_IN;
        data->layer = -1;
        value *o = out0(c);
        if (!o) return FL_ERR_FORMAT;
        o->kind = V_STATE_IN;
        o->gin = gin;
        o->layer = -1;
        o->perm = true;
        return FL_OK;
    }
    if (sort && data->kind == V_GRAPH_IN && !as_seq(c, data)) return FL_ERR_UNSUPPORTED;
    int a = (int)(axis < 0 ? axis + data->ndim : axis);
    if (sort) {
        if (data->kind != V_SEQ || data->layer != -1 || data->perm || data->ndim != 3 || (a != 0 && a != 1))
            return node_fail(c, FL_ERR_UNSUPPORTED, "reordering '%s' by the lengths' sort: only the input sequence "
                             "(along its batch axis) and h0 / c0 (along axis 1) can be", data->name);
        value tmp = *data;
        value *o = out0(c);
        if (!o) return FL_ERR_FORMAT;
        const char *name = o->name;
        *o = tmp;
        o->name = name;
        o->perm = true;
        o->perm_ax = o->ax[a];  // the LSTM checks that this is its batch axis
        return FL_OK;
    }
    // back to the input's order: an LSTM output or final state along its batch axis
    int b_label = c->t_label == AX_P0 ? AX_P1 : AX_P0;
    bool labelled = data->kind == V_SEQ || data->kind == V_STATE_OUT || data->kind == V_LAST;
    if (!labelled || !data->perm || !c->t_label || a < 0 || a >= data->ndim || data->ax[a] != b_label)
        return node_fail(c, FL_ERR_UNSUPPORTED, "undoing the lengths' sort on '%s': only an output in the sorted order, "
                         "along its batch axis, can be", data->name);
    value tmp = *data;
    value *o = out0(c);
    if (!o) return FL_ERR_FORMAT;
    const char *name = o->name;
    *o = tmp;
    o->name = name;
    o->perm = false;
    return FL_OK;
}
