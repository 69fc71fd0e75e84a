/* ONNX import: one handler per operator around the LSTM nodes (the plumbing exporters write:
 * Gather for the embedding, Transpose / Squeeze / Unsqueeze / Concat / Slice / Shape /
 * ConstantOfShape for layouts and zero initial states, Transpose + Reshape joining a bidirectional
 * output's directions, Cast of the lengths, MatMul + Add or Gemm for the head; the sort / unsort
 * of packed sequences is in onnx_sort.c).
 * Each handler accepts its node only in forms whose meaning it can state exactly (see vkind in
 * onnx_graph.h) and refuses everything else, naming the node and the operator. */
#include "onnx_graph.h"

#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------ helpers */

/* Integer list from attribute `attr` (older opsets) or constant input k (newer); *n = -1 if neither. */
static fl_status get_ints(ctx *c, const char *attr, size_t k, int64_t *out, int max, int *n) {
    *n = -1;
    const Onnx__AttributeProto *a = node_attr(c, attr);
    if (a) {
        if (a->n_ints > (size_t)max) return node_fail(c, FL_ERR_UNSUPPORTED, "attribute %s has %zu entries", attr, a->n_ints);
        for (size_t i = 0; i < a->n_ints; i++) out[i] = a->ints[i];
        *n = (int)a->n_ints;
        return FL_OK;
    }
    if (k == 0 || k >= c->node->n_input || !c->node->input[k][0]) return FL_OK;
    value *v = node_input(c, k);
    value s;
    if (!v || !as_shape(v, &s) || s.scalar || s.n_sv > max)
        return node_fail(c, FL_ERR_UNSUPPORTED, "input %zu (%s) is not a constant integer list", k, attr);
    for (int i = 0; i < s.n_sv; i++) {
        if (s.sym[i]) return node_fail(c, FL_ERR_UNSUPPORTED, "input %zu (%s) depends on the input's shape", k, attr);
        out[i] = s.sv[i];
    }
    *n = s.n_sv;
    return FL_OK;
}

int64_t attr_int(ctx *c, const char *name, int64_t dflt) {
    const Onnx__AttributeProto *a = node_attr(c, name);
    return a && a->has_i ? a->i : dflt;
}

value *out0(ctx *c) {
    if (c->node->n_output < 1) {
        node_fail(c, FL_ERR_FORMAT, "no output");
        return NULL;
    }
    return new_value(c, c->node->output[0]);
}

fl_status pass_through(ctx *c, const value *src) {
    value tmp = *src;
    value *o = out0(c);
    if (!o) return FL_ERR_FORMAT;
    const char *name = o->name;
    *o = tmp;
    o->name = name;
    memset(&o->c, 0, sizeof o->c);
    if (tmp.kind == V_CONST) {
        o->c = tmp.c;
        o->c.f = NULL;
        o->c.i = NULL;
        size_t bytes = tmp.c.count * (tmp.c.f ? sizeof(float) : sizeof(int64_t)) + 1;
        void *p = fl_malloc(bytes);
        if (!p) return node_fail(c, FL_ERR_NOMEM, "out of memory");
        memcpy(p, tmp.c.f ? (void *)tmp.c.f : (void *)tmp.c.i, bytes - 1);
        if (tmp.c.f) o->c.f = p;
        else o->c.i = p;
    }
    return FL_OK;
}

static int norm_axis(int64_t a, int ndim) { return a < 0 ? (int)(a + ndim) : (int)a; }

static bool is_labelled(vkind k) { return k == V_SEQ || k == V_LAST || k == V_STATE_OUT; }

/* Entries along x's num_directions axis: the directions, times the layers for joined final states. */
static int64_t dir_size(const ctx *c, const value *x) {
    return (int64_t)c->dirs * (x->kind == V_STATE_OUT && x->layer < 0 ? x->count : 1);
}

/* ------------------------------------------------------------ handlers */

static fl_status op_constant(ctx *c) {
    value *o = out0(c);
    if (!o) return FL_ERR_FORMAT;
    o->kind = V_CONST;
    if (c->node->n_attribute != 1) return node_fail(c, FL_ERR_UNSUPPORTED, "expects exactly one attribute");
    const Onnx__AttributeProto *a = c->node->attribute[0];
    if (!strcmp(a->name, "value") && a->t) return fl_onnx_const_decode(a->t, o->name, &o->c);
    bool ints = !strcmp(a->name, "value_ints") || !strcmp(a->name, "value_int");
    bool floats = !strcmp(a->name, "value_floats") || !strcmp(a->name, "value_float");
    if (!ints && !floats) return node_fail(c, FL_ERR_UNSUPPORTED, "attribute '%s' is not supported", a->name);
    bool scalar = !strcmp(a->name, "value_int") || !strcmp(a->name, "value_float");
    size_t n = scalar ? 1 : ints ? a->n_ints : a->n_floats;
    o->c.ndim = scalar ? 0 : 1;
    o->c.shape[0] = (int64_t)n;
    o->c.count = n;
    if (ints) {
        o->c.i = fl_malloc(n * sizeof(int64_t) + 1);
        if (!o->c.i) return node_fail(c, FL_ERR_NOMEM, "out of memory");
        for (size_t k = 0; k < n; k++) o->c.i[k] = scalar ? a->i : a->ints[k];
    } else {
        o->c.f = fl_malloc(n * sizeof(float) + 1);
        if (!o->c.f) return node_fail(c, FL_ERR_NOMEM, "out of memory");
        for (size_t k = 0; k < n; k++) o->c.f[k] = scalar ? a->f : a->floats[k];
    }
    return FL_OK;
}

static fl_status op_identity(ctx *c) {
    value *x = node_input_req(c, 0, "input");
    if (!x) return FL_ERR_FORMAT;
    if (!strcmp(c->node->op_type, "Dropout")) {
        // inference: Dropout is the identity unless training_mode (opset 12+) is set
        value *tm = node_input(c, 2);
        if (tm && !(tm->kind == V_CONST && tm->c.count == 1 && ((tm->c.i && !tm->c.i[0]) || (tm->c.f && !tm->c.f[0]))))
            return node_fail(c, FL_ERR_UNSUPPORTED, "training_mode is not a constant false");
        if (attr_int(c, "is_test", 1) == 0 && c->opset < 7)
            return node_fail(c, FL_ERR_UNSUPPORTED, "dropout in training mode");
    }
    return pass_through(c, x);
}

static fl_status op_shape(ctx *c) {
    value *x = node_input_req(c, 0, "data");
    if (!x) return FL_ERR_FORMAT;
    if (node_attr(c, "start") || node_attr(c, "end")) return node_fail(c, FL_ERR_UNSUPPORTED, "start / end are not supported");
    if (x->kind == V_GRAPH_IN && x->ndim == 1 &&
        (x->elem == ONNX__TENSOR_PROTO__DATA_TYPE__INT32 || x->elem == ONNX__TENSOR_PROTO__DATA_TYPE__INT64))
        x->kind = V_LENS;  // a rank-1 integer input: only the lengths are
    if (x->kind == V_GRAPH_IN && !as_seq(c, x)) return FL_ERR_UNSUPPORTED;
    value *o = out0(c);
    if (!o) return FL_ERR_FORMAT;
    o->kind = V_SHAPE;
    if (x->kind == V_LENS || x->kind == V_SORTIDX) {  // (B): the lengths' size
        o->n_sv = 1;
        o->sv[0] = AX_LB;
        o->sym[0] = true;
        return FL_OK;
    }
    if (x->kind == V_CONST) {
        o->n_sv = x->c.ndim;
        for (int d = 0; d < x->c.ndim; d++) o->sv[d] = x->c.shape[d];
        return FL_OK;
    }
    if (!is_labelled(x->kind)) return node_fail(c, FL_ERR_UNSUPPORTED, "shape of '%s' is not known", x->name);
    o->n_sv = x->ndim;
    for (int d = 0; d < x->ndim; d++) {
        int lab = x->ax[d];
        o->sym[d] = lab < 0 && lab != AX_DIR;
        o->sv[d] = lab == AX_DIR ? dir_size(c, x) : lab;
    }
    return FL_OK;
}

static fl_status op_gather(ctx *c) {
    value *data = node_input_req(c, 0, "data"), *idx = node_input_req(c, 1, "indices");
    if (!data || !idx) return FL_ERR_FORMAT;
    int64_t axis = attr_int(c, "axis", 0);
    value s, is;
    if (idx->kind == V_SORTIDX || idx->kind == V_UNSORTIDX) return gather_perm(c, data, idx, axis);
    // the embedding: rows of a (vocab, D) table picked by the token ids
    if (data->kind == V_CONST && data->c.f && data->c.ndim == 2 && idx->kind == V_GRAPH_IN) {
        if (axis != 0) return node_fail(c, FL_ERR_UNSUPPORTED, "embedding lookup along axis %lld", (long long)axis);
        if (idx->ndim != 2 || (idx->elem != ONNX__TENSOR_PROTO__DATA_TYPE__INT64 && idx->elem != ONNX__TENSOR_PROTO__DATA_TYPE__INT32))
            return node_fail(c, FL_ERR_UNSUPPORTED, "token ids '%s' are not an integer (B, T) or (T, B) input", idx->name);
        if (c->emb || c->seq_in >= 0) return node_fail(c, FL_ERR_UNSUPPORTED, "a second embedding or sequence input");
        if (data->c.shape[0] < 1 || data->c.shape[1] < 1 || data->c.shape[0] > INT32_MAX || data->c.shape[1] > (1 << 24))
            return node_fail(c, FL_ERR_SHAPE, "embedding of shape (%lld, %lld)", (long long)data->c.shape[0], (long long)data->c.shape[1]);
        c->vocab = (int)data->c.shape[0];
        c->D = (int)data->c.shape[1];
        c->emb = fl_malloc(data->c.count * sizeof(float));
        if (!c->emb) return node_fail(c, FL_ERR_NOMEM, "out of memory");
        memcpy(c->emb, data->c.f, data->c.count * sizeof(float));
        c->tokens = true;
        c->seq_in = idx->gin;
        idx->kind = V_NONE;  // consumed: its only meaning is the token ids
        value *o = out0(c);
        if (!o) return FL_ERR_FORMAT;
        o->kind = V_SEQ;
        o->ndim = 3;
        o->ax[0] = AX_P0;
        o->ax[1] = AX_P1;
        o->ax[2] = c->D;
        o->layer = -1;
        return FL_OK;
    }
    // one element of a shape vector
    if (as_shape(data, &s) && !s.scalar && as_shape(idx, &is) && axis == 0) {
        value *o = out0(c);
        if (!o) return FL_ERR_FORMAT;
        o->kind = V_SHAPE;
        o->scalar = is.scalar;
        o->n_sv = is.n_sv;
        for (int k = 0; k < is.n_sv; k++) {
            int64_t j = is.sv[k] < 0 ? is.sv[k] + s.n_sv : is.sv[k];
            if (is.sym[k] || j < 0 || j >= s.n_sv) return node_fail(c, FL_ERR_UNSUPPORTED, "index out of the shape's range");
            o->sv[k] = s.sv[j];
            o->sym[k] = s.sym[j];
        }
        return FL_OK;
    }
    // the last time step of the sequence: x[:, -1] / x[-1]
    if (data->kind == V_SEQ && idx->kind == V_CONST && idx->c.i && idx->c.ndim == 0 && c->t_label) {
        int a = norm_axis(axis, data->ndim);
        if (a < 0 || a >= data->ndim || data->ax[a] != c->t_label || idx->c.i[0] != -1)
            return node_fail(c, FL_ERR_UNSUPPORTED, "only the last time step (index -1 along the time axis) can be taken");
        if (data->head) return node_fail(c, FL_ERR_UNSUPPORTED, "taking a step after the head");
        value *o = out0(c);
        if (!o) return FL_ERR_FORMAT;
        o->kind = V_LAST;
        o->layer = data->layer;
        o->ndim = 0;
        for (int d = 0; d < data->ndim; d++)
            if (d != a) o->ax[o->ndim++] = data->ax[d];
        return FL_OK;
    }
    return node_fail(c, FL_ERR_UNSUPPORTED, "gathering from '%s' with '%s' is not an embedding lookup, a shape element "
                     "or the last time step", data->name, idx->name);
}

static fl_status op_unsqueeze(ctx *c) {
    value *x = node_input_req(c, 0, "data");
    if (!x) return FL_ERR_FORMAT;
    int64_t axes[MAX_AX];
    int na;
    fl_status st = get_ints(c, "axes", 1, axes, MAX_AX, &na);
    if (st) return st;
    value s;
    if (as_shape(x, &s) && s.scalar && na == 1 && axes[0] == 0) {
        value *o = out0(c);
        if (!o) return FL_ERR_FORMAT;
        *o = (value){.name = o->name, .kind = V_SHAPE, .n_sv = 1, .sv = {s.sv[0]}, .sym = {s.sym[0]}, .gin = -1};
        return FL_OK;
    }
    return node_fail(c, FL_ERR_UNSUPPORTED, "only a scalar shape element can be unsqueezed");
}

static fl_status op_squeeze(ctx *c) {
    value *x = node_input_req(c, 0, "data");
    if (!x) return FL_ERR_FORMAT;
    int64_t axes[MAX_AX];
    int na;
    fl_status st = get_ints(c, "axes", 1, axes, MAX_AX, &na);
    if (st) return st;
    value s;
    if (as_shape(x, &s) && s.n_sv == 1 && !s.scalar && (na < 0 || (na == 1 && (axes[0] == 0 || axes[0] == -1)))) {
        value *o = out0(c);
        if (!o) return FL_ERR_FORMAT;
        s.name = o->name;
        s.scalar = true;
        *o = s;
        return FL_OK;
    }
    if (!is_labelled(x->kind)) return node_fail(c, FL_ERR_UNSUPPORTED, "squeezing '%s' is not supported", x->name);
    if (na < 0) return node_fail(c, FL_ERR_UNSUPPORTED, "squeeze without axes depends on the run-time batch and length");
    bool drop[MAX_AX] = {false}, to_last = false;
    for (int k = 0; k < na; k++) {
        int a = norm_axis(axes[k], x->ndim);
        if (a < 0 || a >= x->ndim || (x->ax[a] != AX_DIR && x->ax[a] != AX_TLAST))
            return node_fail(c, FL_ERR_UNSUPPORTED, "axis %lld is neither the LSTM's num_directions axis nor the "
                             "last time step", (long long)axes[k]);
        if (x->ax[a] == AX_DIR && dir_size(c, x) != 1)
            return node_fail(c, FL_ERR_UNSUPPORTED, "axis %lld has %lld entries (num_directions of a bidirectional LSTM): "
                             "it cannot be squeezed", (long long)axes[k], (long long)dir_size(c, x));
        drop[a] = true;
        if (x->ax[a] == AX_TLAST) to_last = true;
    }
    value tmp = *x;
    value *o = out0(c);
    if (!o) return FL_ERR_FORMAT;
    const char *name = o->name;
    *o = tmp;
    o->name = name;
    o->ndim = 0;
    o->has_dir = false;
    for (int d = 0; d < tmp.ndim; d++)
        if (!drop[d]) {
            o->ax[o->ndim++] = tmp.ax[d];
            o->has_dir = o->has_dir || tmp.ax[d] == AX_DIR;
        }
    if (to_last) {
        if (tmp.kind != V_SEQ || o->ndim != 2) return node_fail(c, FL_ERR_UNSUPPORTED, "the last step keeps extra axes");
        o->kind = V_LAST;
    }
    return FL_OK;
}

static fl_status op_concat(ctx *c) {
    size_t n = c->node->n_input;
    int64_t axis = attr_int(c, "axis", 0);
    value *first = node_input_req(c, 0, "input");
    if (!first) return FL_ERR_FORMAT;
    if (first->kind == V_STATE_OUT) {
        // final states of layers 0..n-1 stacked along the num_directions axis: (L, B, H)
        int a = norm_axis(axis, first->ndim);
        if (a < 0 || a >= first->ndim || first->ax[a] != AX_DIR)
            return node_fail(c, FL_ERR_UNSUPPORTED, "final states are joined along axis %lld, not num_directions", (long long)axis);
        for (size_t k = 0; k < n; k++) {
            value *v = node_input_req(c, k, "input");
            if (!v) return FL_ERR_FORMAT;
            if (v->kind != V_STATE_OUT || v->layer != (int)k || v->is_c != first->is_c || v->ndim != first->ndim ||
                memcmp(v->ax, first->ax, sizeof v->ax))
                return node_fail(c, FL_ERR_UNSUPPORTED, "input %zu is not the final %s state of layer %zu", k,
                                 first->is_c ? "cell" : "hidden", k);
        }
        value tmp = *first;
        value *o = out0(c);
        if (!o) return FL_ERR_FORMAT;
        const char *name = o->name;
        *o = tmp;
        o->name = name;
        o->layer = -1;
        o->count = (int)n;
        return FL_OK;
    }
    value r = {.kind = V_SHAPE};
    for (size_t k = 0; k < n; k++) {
        value *v = node_input_req(c, k, "input"), s;
        if (!v) return FL_ERR_FORMAT;
        if (!as_shape(v, &s) || s.scalar || axis != 0 || r.n_sv + s.n_sv > MAX_AX)
            return node_fail(c, FL_ERR_UNSUPPORTED, "only shape vectors and final states can be concatenated");
        for (int j = 0; j < s.n_sv; j++) {
            r.sv[r.n_sv] = s.sv[j];
            r.sym[r.n_sv++] = s.sym[j];
        }
    }
    value *o = out0(c);
    if (!o) return FL_ERR_FORMAT;
    r.name = o->name;
    r.gin = -1;
    *o = r;
    return FL_OK;
}

static fl_status op_constant_of_shape(ctx *c) {
    value *x = node_input_req(c, 0, "input"), s;
    if (!x) return FL_ERR_FORMAT;
    if (!as_shape(x, &s) || s.scalar) return node_fail(c, FL_ERR_UNSUPPORTED, "the shape is not a known vector");
    const Onnx__AttributeProto *a = node_attr(c, "value");
    if (a && a->t) {
        onnx_const k;
        fl_status st = fl_onnx_const_decode(a->t, "value", &k);
        if (st) return st;
        bool zero = k.count == 1 && ((k.f && k.f[0] == 0.0f) || (k.i && k.i[0] == 0));
        fl_onnx_const_clear(&k);
        if (!zero) return node_fail(c, FL_ERR_UNSUPPORTED, "a fill value other than 0");
    }
    value *o = out0(c);
    if (!o) return FL_ERR_FORMAT;
    o->kind = V_ZEROS;
    o->zshape = true;
    o->n_sv = s.n_sv;
    memcpy(o->sv, s.sv, sizeof s.sv);
    memcpy(o->sym, s.sym, sizeof s.sym);
    return FL_OK;
}

static fl_status op_slice(ctx *c) {
    value *x = node_input_req(c, 0, "data");
    if (!x) return FL_ERR_FORMAT;
    int64_t st_[MAX_AX], en[MAX_AX], ax[MAX_AX], sp[MAX_AX];
    int ns, ne, na, np;
    fl_status st = get_ints(c, "starts", 1, st_, MAX_AX, &ns);
    if (!st) st = get_ints(c, "ends", 2, en, MAX_AX, &ne);
    if (!st) st = get_ints(c, "axes", 3, ax, MAX_AX, &na);
    if (!st) st = get_ints(c, "steps", 4, sp, MAX_AX, &np);
    if (st) return st;
    if (ns != 1 || ne != 1 || (na >= 0 && na != 1) || (np >= 0 && (np != 1 || sp[0] != 1)))
        return node_fail(c, FL_ERR_UNSUPPORTED, "only a step-1 slice along one axis is supported");
    int64_t axis = na < 0 ? 0 : ax[0];
    if (x->kind == V_ZEROS) {
        value *o = out0(c);
        if (!o) return FL_ERR_FORMAT;
        o->kind = V_ZEROS;
        return FL_OK;
    }
    value s;
    if (as_shape(x, &s) && !s.scalar && (axis == 0 || axis == -1)) {
        int64_t b = st_[0] < 0 ? st_[0] + s.n_sv : st_[0], e = en[0] < 0 ? en[0] + s.n_sv : en[0];
        if (b < 0) b = 0;
        if (e > s.n_sv) e = s.n_sv;
        value *o = out0(c);
        if (!o) return FL_ERR_FORMAT;
        value r = {.name = o->name, .kind = V_SHAPE, .gin = -1};
        for (int64_t k = b; k < e; k++) {
            r.sv[r.n_sv] = s.sv[k];
            r.sym[r.n_sv++] = s.sym[k];
        }
        *o = r;
        return FL_OK;
    }
    // the last time step, keeping the axis: x[-1:] (squeezed next)
    if (x->kind == V_SEQ && c->t_label && !x->head) {
        int a = norm_axis(axis, x->ndim);
        if (a < 0 || a >= x->ndim || x->ax[a] != c->t_label || st_[0] != -1 || en[0] < INT32_MAX)
            return node_fail(c, FL_ERR_UNSUPPORTED, "only the last time step (-1 to the end, along the time axis) "
                             "can be sliced from the sequence");
        value tmp = *x;
        value *o = out0(c);
        if (!o) return FL_ERR_FORMAT;
        const char *name = o->name;
        *o = tmp;
        o->name = name;
        o->ax[a] = AX_TLAST;
        return FL_OK;
    }
    // layer l's initial state: h0[l*dirs:(l+1)*dirs] of an (L*dirs, B, H) graph input (1 or 2 rows)
    bool state_in = (x->kind == V_GRAPH_IN && x->ndim == 3 && x->elem == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) ||
                    (x->kind == V_STATE_IN && x->layer < 0);
    if (state_in && axis == 0 && st_[0] >= 0 && st_[0] < 2 * MAX_LAYERS && (en[0] == st_[0] + 1 || en[0] == st_[0] + 2)) {
        if (x->kind == V_GRAPH_IN) {
            if (c->seq_in == x->gin) return node_fail(c, FL_ERR_UNSUPPORTED, "slicing the sequence input");
            x->kind = V_STATE_IN;
            x->layer = -1;
        }
        int gin = x->gin;
        bool perm = x->perm;
        value *o = out0(c);
        if (!o) return FL_ERR_FORMAT;
        o->kind = V_STATE_IN;
        o->gin = gin;
        o->perm = perm;
        o->layer = (int)st_[0];
        o->count = (int)(en[0] - st_[0]);
        return FL_OK;
    }
    return node_fail(c, FL_ERR_UNSUPPORTED, "slicing '%s' is not taking one layer's initial state, part of a "
                     "shape or of zeros", x->name);
}

static fl_status op_transpose(ctx *c) {
    value *x = node_input_req(c, 0, "data");
    if (!x) return FL_ERR_FORMAT;
    if (x->kind == V_GRAPH_IN && !as_seq(c, x)) return FL_ERR_UNSUPPORTED;
    if (x->kind == V_ZEROS) {
        value *o = out0(c);
        if (!o) return FL_ERR_FORMAT;
        o->kind = V_ZEROS;
        return FL_OK;
    }
    if (!is_labelled(x->kind)) return node_fail(c, FL_ERR_UNSUPPORTED, "transposing '%s' is not supported", x->name);
    int64_t perm[MAX_AX];
    int np;
    fl_status st = get_ints(c, "perm", 0, perm, MAX_AX, &np);
    if (st) return st;
    if (np < 0) {
        np = x->ndim;
        for (int d = 0; d < np; d++) perm[d] = np - 1 - d;
    }
    bool seen[MAX_AX] = {false};
    if (np != x->ndim) return node_fail(c, FL_ERR_FORMAT, "perm has %d entries for rank %d", np, x->ndim);
    for (int d = 0; d < np; d++) {
        if (perm[d] < 0 || perm[d] >= np || seen[perm[d]]) return node_fail(c, FL_ERR_FORMAT, "perm is not a permutation");
        seen[perm[d]] = true;
    }
    value tmp = *x;
    value *o = out0(c);
    if (!o) return FL_ERR_FORMAT;
    const char *name = o->name;
    *o = tmp;
    o->name = name;
    for (int d = 0; d < np; d++) o->ax[d] = tmp.ax[perm[d]];
    return FL_OK;
}

/* Zeros broadcast to a shape are zeros (PyTorch writes this for zero initial states). */
static fl_status op_expand(ctx *c) {
    value *x = node_input_req(c, 0, "input"), *sh = node_input_req(c, 1, "shape"), s;
    if (!x || !sh) return FL_ERR_FORMAT;
    bool zero = x->kind == V_ZEROS;
    if (x->kind == V_CONST && x->c.f) {
        zero = true;
        for (size_t k = 0; k < x->c.count; k++) zero = zero && x->c.f[k] == 0.0f;
    }
    if (!zero || !as_shape(sh, &s)) return node_fail(c, FL_ERR_UNSUPPORTED, "only zeros can be expanded");
    value *o = out0(c);
    if (!o) return FL_ERR_FORMAT;
    o->kind = V_ZEROS;
    return FL_OK;
}

/* ------------------------------------------------------------ the head */

/* Store the head weight (V, H) from w (H, V) (trans = false) or (V, H) (trans = true). */
static fl_status set_head(ctx *c, const value *x, const value *w, bool trans) {
    if (c->head_w) return node_fail(c, FL_ERR_UNSUPPORTED, "a second linear layer after the LSTM");
    if (x->head || x->layer != c->L - 1 || c->L == 0)
        return node_fail(c, FL_ERR_UNSUPPORTED, "the linear layer does not take the top LSTM layer's output");
    if (!w || w->kind != V_CONST || !w->c.f || w->c.ndim != 2)
        return node_fail(c, FL_ERR_UNSUPPORTED, "the weight is not a constant float matrix");
    int64_t in = trans ? w->c.shape[1] : w->c.shape[0], outn = trans ? w->c.shape[0] : w->c.shape[1];
    const int feat = c->dirs * c->H;  // [forward, reverse] per step for bidirectional layers
    if (x->has_dir) return node_fail(c, FL_ERR_UNSUPPORTED, "the linear layer reads the LSTM output with its num_directions axis");
    if (x->ax[x->ndim - 1] != feat || in != feat || outn < 1 || outn > (1 << 24))
        return node_fail(c, FL_ERR_SHAPE, "weight (%lld, %lld) does not fit the LSTM's %d output features",
                         (long long)w->c.shape[0], (long long)w->c.shape[1], feat);
    c->head_out = (int)outn;
    c->head_w = fl_malloc(w->c.count * sizeof(float));
    c->head_b = fl_calloc((size_t)outn, sizeof(float));
    if (!c->head_w || !c->head_b) return node_fail(c, FL_ERR_NOMEM, "out of memory");
    for (int64_t v = 0; v < outn; v++)
        for (int64_t h = 0; h < in; h++) c->head_w[v * in + h] = trans ? w->c.f[v * in + h] : w->c.f[h * outn + v];
    return FL_OK;
}

/* Output of the head: the input's axes with the last one now head_out; the bias can still be added. */
static fl_status head_out(ctx *c, const value *x, bool bias_open) {
    value tmp = *x;
    value *o = out0(c);
    if (!o) return FL_ERR_FORMAT;
    const char *name = o->name;
    *o = tmp;
    o->name = name;
    o->ax[o->ndim - 1] = c->head_out;
    o->head = true;
    o->count = bias_open;
    return FL_OK;
}

static fl_status set_bias(ctx *c, const value *b) {
    if (!b || b->kind != V_CONST || !b->c.f || b->c.count != (size_t)c->head_out || b->c.ndim < 1 ||
        b->c.shape[b->c.ndim - 1] != c->head_out)
        return node_fail(c, FL_ERR_UNSUPPORTED, "the bias is not a constant float vector of %d", c->head_out);
    memcpy(c->head_b, b->c.f, (size_t)c->head_out * sizeof(float));
    return FL_OK;
}

static fl_status op_matmul(ctx *c) {
    value *x = node_input_req(c, 0, "A"), *w = node_input_req(c, 1, "B");
    if (!x || !w) return FL_ERR_FORMAT;
    if (x->kind != V_SEQ && x->kind != V_LAST) return node_fail(c, FL_ERR_UNSUPPORTED, "A is not the LSTM's output");
    fl_status st = set_head(c, x, w, false);
    return st ? st : head_out(c, x, true);
}

static fl_status op_add(ctx *c) {
    value *a = node_input_req(c, 0, "A"), *b = node_input_req(c, 1, "B");
    if (!a || !b) return FL_ERR_FORMAT;
    value *x = a->head ? a : b, *bias = a->head ? b : a;
    if (!x->head || !x->count || (x->kind != V_SEQ && x->kind != V_LAST))
        return node_fail(c, FL_ERR_UNSUPPORTED, "only the bias of the linear layer after the LSTM can be added");
    fl_status st = set_bias(c, bias);
    return st ? st : head_out(c, x, false);
}

static fl_status op_gemm(ctx *c) {
    value *x = node_input_req(c, 0, "A"), *w = node_input_req(c, 1, "B"), *b = node_input(c, 2);
    if (!x || !w) return FL_ERR_FORMAT;
    const Onnx__AttributeProto *alpha = node_attr(c, "alpha"), *beta = node_attr(c, "beta");
    if ((alpha && alpha->f != 1.0f) || (beta && beta->f != 1.0f) || attr_int(c, "transA", 0))
        return node_fail(c, FL_ERR_UNSUPPORTED, "alpha, beta other than 1 or transA");
    if (x->kind != V_LAST) return node_fail(c, FL_ERR_UNSUPPORTED, "A is not the LSTM's output at the last step");
    fl_status st = set_head(c, x, w, attr_int(c, "transB", 0) != 0);
    if (!st && b) st = set_bias(c, b);
    return st ? st : head_out(c, x, false);
}

/* The bidirectional output joined per step: Y transposed to (T, B, dirs, H) (or (B, T, dirs, H)),
 * then Reshape to (T, B, dirs*H) with shape [0, 0, -1] (or its sizes): [forward, reverse] features,
 * as PyTorch's nn.LSTM output. Only the num_directions axis directly before the hidden axis can be
 * merged into it; any other reshape would mix steps or sequences. */
static fl_status op_reshape(ctx *c) {
    value *x = node_input_req(c, 0, "data"), *sh = node_input_req(c, 1, "shape"), s;
    if (!x || !sh) return FL_ERR_FORMAT;
    if (attr_int(c, "allowzero", 0)) return node_fail(c, FL_ERR_UNSUPPORTED, "allowzero 1");
    if (x->kind != V_SEQ || !x->has_dir || x->ndim != 4 || x->ax[2] != AX_DIR || x->ax[3] < 0)
        return node_fail(c, FL_ERR_UNSUPPORTED, "only the LSTM output with its num_directions axis just before the hidden "
                         "axis, (T, B, dirs, H) or (B, T, dirs, H), can be reshaped");
    if (!as_shape(sh, &s) || s.scalar || s.n_sv != 3)
        return node_fail(c, FL_ERR_UNSUPPORTED, "the target shape is not a 3-element vector");
    const int64_t feat = dir_size(c, x) * x->ax[3];
    for (int k = 0; k < 2; k++)  // 0 copies the axis; the same symbolic size does too
        if (!(!s.sym[k] && s.sv[k] == 0) && !(s.sym[k] && s.sv[k] == x->ax[k]))
            return node_fail(c, FL_ERR_UNSUPPORTED, "the target shape changes axis %d", k);
    if (s.sym[2] || !(s.sv[2] == -1 || s.sv[2] == feat))
        return node_fail(c, FL_ERR_UNSUPPORTED, "the last target axis is not -1 or %lld", (long long)feat);
    value tmp = *x;
    value *o = out0(c);
    if (!o) return FL_ERR_FORMAT;
    const char *name = o->name;
    *o = tmp;
    o->name = name;
    o->ndim = 3;
    o->ax[2] = (int)feat;
    o->has_dir = false;
    return FL_OK;
}

/* Casts between integer types of the lengths input (PyTorch writes int64 -> int32 for sequence_lens);
 * a float sequence cast to float. Values stay the same: lengths are small. */
static fl_status op_cast(ctx *c) {
    value *x = node_input_req(c, 0, "input");
    if (!x) return FL_ERR_FORMAT;
    int64_t to = attr_int(c, "to", 0);
    bool to_int = to == ONNX__TENSOR_PROTO__DATA_TYPE__INT32 || to == ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
    if (x->kind == V_GRAPH_IN && x->ndim == 1 &&
        (x->elem == ONNX__TENSOR_PROTO__DATA_TYPE__INT32 || x->elem == ONNX__TENSOR_PROTO__DATA_TYPE__INT64) && to_int) {
        x->kind = V_LENS;  // a rank-1 integer input cast to an integer type: only the lengths are used so
    }
    if ((x->kind == V_LENS || x->kind == V_SORTIDX) && to_int) return pass_through(c, x);
    value s;
    if (to_int && as_shape(x, &s) && x->kind == V_SHAPE) return pass_through(c, x);
    if (x->kind == V_SEQ && to == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) return pass_through(c, x);
    return node_fail(c, FL_ERR_UNSUPPORTED, "only casting the lengths input between integer types is supported");
}

/* ------------------------------------------------------------ dispatch */

typedef struct op_entry {
    const char *op;
    fl_status (*fn)(ctx *c);
} op_entry;

static const op_entry ops[] = {
    {"LSTM", op_lstm},          {"Constant", op_constant}, {"Identity", op_identity},   {"Dropout", op_identity},
    {"Shape", op_shape},        {"Gather", op_gather},     {"Unsqueeze", op_unsqueeze}, {"Squeeze", op_squeeze},
    {"Concat", op_concat},      {"Slice", op_slice},       {"Transpose", op_transpose}, {"MatMul", op_matmul},
    {"Add", op_add},            {"Gemm", op_gemm},         {"ConstantOfShape", op_constant_of_shape},
    {"Expand", op_expand},      {"Reshape", op_reshape},   {"Cast", op_cast},           {"TopK", op_topk},
    {"Range", op_range},        {"ReduceProd", op_reduce_prod}, {"ScatterElements", op_scatter_elements},
};

fl_status op_dispatch(ctx *c) {
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (!strcmp(c->node->op_type, ops[i].op)) return ops[i].fn(c);
    return node_fail(c, FL_ERR_UNSUPPORTED, "operator '%s' is not supported by the converter", c->node->op_type);
}
