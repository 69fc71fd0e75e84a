/* The one description of a model's weight matrices: their numbering, kinds, names, shapes, the
 * tensors that store them and their sizes. Model layout (model.c), the model file (safetensors.c),
 * checkpoints and the planner all read it from here, so a new layer kind or direction (issue 11:
 * bidirectional layers, LSTMP projections) or precision (issue 13) is taught to this file only.
 *
 * Numbering (the public fl_model_num_matrices contract): 2*l is weight_ih of layer l, 2*l+1 is
 * weight_hh of layer l, 2*layers is the head when there is one. Tensors are stored in this order,
 * each matrix's factors followed by the biases it owns (PyTorch's state_dict order). */
#include "internal.h"

#include <stdio.h>

size_t fl_arch_num_matrices(const fl_arch *a) {
    return (size_t)(2 * a->layers) + (a->head != FL_HEAD_NONE ? 1 : 0);
}

/* "lstm.weight_ih_l0", "lstm.weight_ih_l0_reverse": PyTorch's nn.LSTM parameter names. */
static void lstm_name(char *buf, size_t n, const char *what, int layer, int direction) {
    snprintf(buf, n, "lstm.%s_l%d%s", what, layer, direction ? "_reverse" : "");
}

void fl_arch_matrix(const fl_arch *a, size_t i, fl_mat_desc *d) {
    FL_ASSERT(i < fl_arch_num_matrices(a));
    *d = (fl_mat_desc){.index = i, .precision = FL_PRECISION_F32};
    if (i == (size_t)(2 * a->layers)) {
        d->kind = FL_MAT_HEAD;
        d->layer = -1;
        d->rows = a->head_out;
        d->cols = a->hidden;
        snprintf(d->name, sizeof d->name, "head.weight");
        d->n_bias = 1;
        snprintf(d->bias[0].name, sizeof d->bias[0].name, "head.bias");
        d->bias[0].rows = a->head_out;
        d->bias[0].cols = 1;
        return;
    }
    d->layer = (int)(i / 2);
    d->kind = i % 2 == 0 ? FL_MAT_IH : FL_MAT_HH;
    d->gate = true;
    d->rows = 4 * a->hidden;
    d->cols = d->kind == FL_MAT_IH && d->layer == 0 ? a->input : a->hidden;
    lstm_name(d->name, sizeof d->name, d->kind == FL_MAT_IH ? "weight_ih" : "weight_hh", d->layer, d->direction);
    if (d->kind == FL_MAT_HH) { /* a layer's biases follow its weight_hh, as in nn.LSTM */
        d->n_bias = 2;
        lstm_name(d->bias[0].name, sizeof d->bias[0].name, "bias_ih", d->layer, d->direction);
        lstm_name(d->bias[1].name, sizeof d->bias[1].name, "bias_hh", d->layer, d->direction);
        d->bias[0].rows = d->bias[1].rows = 4 * a->hidden;
        d->bias[0].cols = d->bias[1].cols = 1;
    }
}

int fl_mat_factors(const fl_mat_desc *d, fl_mat_spec s, fl_factor_desc f[3]) {
    const int R = s.rank;
    switch (s.method) {
    case FL_METHOD_DENSE:
        f[0] = (fl_factor_desc){.rows = d->rows, .cols = d->cols};
        snprintf(f[0].name, sizeof f[0].name, "%s", d->name);
        return 1;
    case FL_METHOD_SVD: /* W = U V: U (rows, R), V (R, cols) */
        f[0] = (fl_factor_desc){.rows = d->rows, .cols = R};
        f[1] = (fl_factor_desc){.rows = R, .cols = d->cols};
        snprintf(f[0].name, sizeof f[0].name, "%s.U", d->name);
        snprintf(f[1].name, sizeof f[1].name, "%s.V", d->name);
        return 2;
    case FL_METHOD_CP: /* W[g*H + i, j] = sum_r A[g,r] B[i,r] C[j,r]: A (4, R), B (rows/4, R), C (cols, R) */
        f[0] = (fl_factor_desc){.rows = 4, .cols = R};
        f[1] = (fl_factor_desc){.rows = d->rows / 4, .cols = R};
        f[2] = (fl_factor_desc){.rows = d->cols, .cols = R};
        snprintf(f[0].name, sizeof f[0].name, "%s.A", d->name);
        snprintf(f[1].name, sizeof f[1].name, "%s.B", d->name);
        snprintf(f[2].name, sizeof f[2].name, "%s.C", d->name);
        return 3;
    }
    FL_ASSERT(!"unknown method");
    return 0;
}

size_t fl_spec_params(int rows, int cols, fl_mat_spec s) {
    size_t R = s.rank > 0 ? (size_t)s.rank : 0, m = (size_t)rows, n = (size_t)cols;
    switch (s.method) {
    case FL_METHOD_DENSE: return m * n;
    case FL_METHOD_SVD: return R * (m + n);
    case FL_METHOD_CP: return R * (4 + m / 4 + n);
    }
    return 0;
}

size_t fl_precision_bytes(fl_precision p) {
    switch (p) {
    case FL_PRECISION_F32: return 4;
    }
    return 0;
}

const char *fl_mat_kind_name(fl_mat_kind k) {
    switch (k) {
    case FL_MAT_IH: return "ih";
    case FL_MAT_HH: return "hh";
    case FL_MAT_HEAD: return "head";
    case FL_MAT_PROJ: return "hr";
    }
    return "?";
}

const char *fl_precision_name(fl_precision p) {
    switch (p) {
    case FL_PRECISION_F32: return "f32";
    }
    return "?";
}

int fl_mat_format_version(const fl_mat_desc *d) {
    /* Version 1 readers know forward f32 weight_ih / weight_hh / head matrices only. */
    if (d->direction != 0 || d->kind == FL_MAT_PROJ || d->precision != FL_PRECISION_F32) return 2;
    return 1;
}
