/* The importer's view of an ONNX graph: what every value means (src/onnx/onnx_import.c runs the
 * nodes, src/onnx/onnx_ops.c holds one handler per operator). Not installed. */
#ifndef FL_ONNX_GRAPH_H
#define FL_ONNX_GRAPH_H

#include "onnx_internal.h"

#define MAX_LAYERS 16
#define MAX_AX 8

/* Axis labels. A label >= 0 is a fixed size (features, hidden units); the others are symbols.
 * P0 / P1 are axes 0 and 1 of the graph's sequence input: the first LSTM decides which of them is
 * time (ctx.t_label) and which is batch. */
enum { AX_P0 = -1, AX_P1 = -2, AX_DIR = -3, AX_L = -4, AX_UNKNOWN = -5, AX_TLAST = -6, AX_LB = -7 };
/* AX_TLAST: the time axis cut to its last step (x[-1:]), size 1; squeezing it gives V_LAST.
 * AX_LB: the size of the lengths input (the batch, when the graph runs at all). */

typedef enum vkind {
    V_NONE = 0,
    V_CONST,     /* constant tensor (initializer, Constant node, feed) */
    V_SHAPE,     /* small integer vector, some elements symbolic (from Shape of the sequence) */
    V_ZEROS,     /* all zeros, of any shape (ConstantOfShape 0, or slices of it) */
    V_GRAPH_IN,  /* graph input not yet classified */
    V_SEQ,       /* the sequence: labelled axes; output of layer `layer` (-1: input or embedding) */
    V_LAST,      /* the sequence at its last time step: (B, F) */
    V_STATE_IN,  /* initial state: rows [layer, layer + count) of graph input `gin` (layer -1: all) */
    V_STATE_OUT, /* final state of layer `layer`, or of layers [0, count) when layer is -1 */
    V_HEAD_MM,   /* sequence times the head weight, bias not yet added */
    V_LENS,      /* per-sequence lengths: graph input `gin` (B) of integers, or a Cast of it */
    V_SORTIDX,   /* the permutation that sorts the lengths (TopK's indices; onnx_sort.c) */
    V_UNSORTIDX, /* its inverse (ScatterElements of 0..B-1 at those indices) */
    V_RANGE,     /* 0, 1, ..., B-1 with B the lengths' size */
} vkind;

typedef struct value {
    const char *name; /* points into the parsed model */
    vkind kind;
    int ndim;
    int ax[MAX_AX];         /* V_SEQ, V_LAST, V_HEAD_MM, V_STATE_*: axis labels */
    onnx_const c;           /* V_CONST (owned) */
    int64_t sv[MAX_AX];     /* V_SHAPE elements: a size, or an axis label when sym[k] */
    bool sym[MAX_AX];
    int n_sv;
    bool scalar;            /* V_SHAPE: rank 0 */
    int layer, count;       /* see vkind */
    bool is_c;              /* V_STATE_*: cell (1) or hidden (0) */
    bool head;              /* V_SEQ / V_LAST: the head has been applied */
    bool has_dir;           /* V_SEQ: still carries LSTM's num_directions axis (of c->dirs entries) */
    int gin;                /* V_STATE_IN: index of the graph input; V_GRAPH_IN: its own index */
    int elem;               /* V_GRAPH_IN: ONNX element type */
    bool perm;              /* V_SEQ / V_STATE_* / V_LENS: sequences in the sorted order (V_SORTIDX) */
    int perm_ax;            /* V_SEQ with perm: label of the reordered axis */
    bool zshape;            /* V_ZEROS: its shape is sv / sym / n_sv */
} value;

typedef struct lstm_layer {
    int in;
    float *wih[2], *whh[2], *bih[2], *bhh[2]; /* per direction (forward, reverse), PyTorch order i, f, g, o; owned */
    int h_src, c_src;             /* initial states: -1 zeros, else graph input index */
    int h_layer, c_layer;         /* first row of the slice (dirs rows) taken of it, -1: the whole input */
    int lens;                     /* sequence_lens: -1 none, else graph input index */
    float *peep;                  /* (3H) ONNX's P (i, o, f), owned; NULL: none */
    float clip;                   /* 0: none */
    int input_forget;
} lstm_layer;

typedef struct ctx {
    const Onnx__ModelProto *mp;
    const Onnx__GraphProto *g;
    const Onnx__NodeProto *node; /* node being converted (for messages) */
    size_t node_index;
    value *v;
    size_t n, cap;
    int64_t opset;
    int seq_in;      /* graph input index of the sequence, -1 none yet */
    bool sorted;     /* the one TopK that sorts the lengths has been seen */
    int t_label;     /* AX_P0 or AX_P1 once an LSTM has run, 0 before */
    bool tokens;
    float *emb;      /* (vocab, D), owned */
    int vocab, D;
    int L, H;
    int dirs;        /* 1, or 2 for bidirectional layers (every layer the same), 0 before the first */
    lstm_layer lay[MAX_LAYERS];
    float *head_w, *head_b; /* (V, H), (V); owned */
    int head_out;
} ctx;

/* "node 'name' (op X): ..." with status s. */
fl_status node_fail(ctx *c, fl_status s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The value called name; NULL when absent (or name is ""). */
value *find_value(ctx *c, const char *name);
/* A new value for output name of the current node. NULL (error recorded) on failure. */
value *new_value(ctx *c, const char *name);
/* Input k of the current node, or NULL if it is absent or empty. */
value *node_input(ctx *c, size_t k);
/* The value stored for an absent input k is an error: */
value *node_input_req(ctx *c, size_t k, const char *what);
/* The attribute called name of the current node, or NULL. */
const Onnx__AttributeProto *node_attr(ctx *c, const char *name);
/* Make v (a graph input of rank 3 or the sequence) the sequence. false (error recorded) otherwise. */
bool as_seq(ctx *c, value *v);
/* Read v (V_SHAPE or small integer V_CONST) as a vector. false when it is neither. */
bool as_shape(const value *v, value *out);

/* Operator handlers (src/onnx/onnx_ops.c): convert the current node. */
fl_status op_dispatch(ctx *c);
/* LSTM (src/onnx/onnx_lstm.c). */
fl_status op_lstm(ctx *c);
/* PyTorch's sort / unsort around packed sequences (src/onnx/onnx_sort.c). */
fl_status op_topk(ctx *c);
fl_status op_range(ctx *c);
fl_status op_reduce_prod(ctx *c);
fl_status op_scatter_elements(ctx *c);
/* Gather(data, idx) where idx is V_SORTIDX or V_UNSORTIDX: the batch reordered. */
fl_status gather_perm(ctx *c, value *data, const value *idx, int64_t axis);
/* Copy of src named by output 0 (constants deep-copied) (onnx_ops.c). */
fl_status pass_through(ctx *c, const value *src);
/* Output 0 of the current node as a fresh value; NULL (error recorded) on failure. */
value *out0(ctx *c);
int64_t attr_int(ctx *c, const char *name, int64_t dflt);

#endif
