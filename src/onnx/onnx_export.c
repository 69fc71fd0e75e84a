/* ONNX export: fastlstm model -> ModelProto (opset 14, IR 7), packed by protobuf-c.
 *
 * The graph, for L layers of hidden size H and dirs directions (B batch, T steps, batch-major "x"):
 *   [Gather(embedding, x)] -> Transpose(1,0,2): (T, B, D)
 *   per layer l: LSTM(W_l, R_l, B_l), layout 0 -> Y (T, dirs, B, H), Y_h, Y_c (dirs, B, H);
 *                forward: Squeeze(Y, axis 1) -> (T, B, H); bidirectional ("direction" attribute):
 *                Transpose(0,2,1,3) -> (T, B, 2, H), Reshape(0,0,-1) -> (T, B, 2H) = [forward,
 *                reverse] per step, as PyTorch; the next layer's X
 *   hn, cn = Concat(Y_h / Y_c of every layer, axis 0): (L*dirs, B, H), rows 2l + d as PyTorch
 *   no head: Transpose -> y (B, T, dirs*H); per-step head: Transpose, MatMul(W^T), Add(b) -> (B, T, V);
 *   last-step head: Gather(index -1, axis 0) -> (B, dirs*H), Gemm(W, b, transB) -> (B, C).
 * A projection (LSTMP) has no ONNX LSTM counterpart: such models are refused.
 * Gates go from fastlstm's i, f, g, o to ONNX's i, o, f, c; b_ih and b_hh become B = [Wb, Rb].
 * Layout 0 with explicit transposes rather than layout 1, which not every runtime implements.
 * Every protobuf object is allocated in one arena, freed after packing. */
#include "lstm_ext.h"
#include "onnx_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ONNX gate k (i, o, f, c) is fastlstm gate fl_gate[k] (i, f, g, o). */
static const int fl_gate[4] = {0, 3, 1, 2};

typedef struct arena {
    void **p;
    size_t n, cap;
    bool failed;
} arena;

static void *alloc(arena *a, size_t bytes) {
    if (a->failed) return NULL;
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 256;
        void **np = fl_calloc(cap, sizeof *np);
        if (!np) {
            a->failed = true;
            return NULL;
        }
        if (a->n) memcpy(np, a->p, a->n * sizeof *np);
        fl_free(a->p);
        a->p = np;
        a->cap = cap;
    }
    void *q = fl_calloc(1, bytes ? bytes : 1);
    if (!q) {
        a->failed = true;
        return NULL;
    }
    a->p[a->n++] = q;
    return q;
}

static void arena_free(arena *a) {
    for (size_t i = 0; i < a->n; i++) fl_free(a->p[i]);
    fl_free(a->p);
}

static char *str(arena *a, const char *s) {
    char *d = alloc(a, strlen(s) + 1);
    if (d) strcpy(d, s);
    return d;
}

/* float32 tensor (dims) holding data, as raw little-endian bytes. */
static Onnx__TensorProto *tensor_f(arena *a, const char *name, int nd, const int64_t *dims, const float *data) {
    Onnx__TensorProto *t = alloc(a, sizeof *t);
    int64_t *d = alloc(a, (size_t)nd * sizeof *d);
    if (!t || !d) return NULL;
    onnx__tensor_proto__init(t);
    size_t n = 1;
    for (int k = 0; k < nd; k++) n *= (size_t)(d[k] = dims[k]);
    uint8_t *raw = alloc(a, n * sizeof(float));
    if (!raw) return NULL;
    memcpy(raw, data, n * sizeof(float));
    t->n_dims = (size_t)nd;
    t->dims = d;
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t->name = str(a, name);
    t->has_raw_data = 1;
    t->raw_data.len = n * sizeof(float);
    t->raw_data.data = raw;
    return t;
}

/* int64 tensor: a scalar (nd 0) or a vector of n. */
static Onnx__TensorProto *tensor_i64(arena *a, const char *name, int nd, size_t n, const int64_t *vals) {
    Onnx__TensorProto *t = alloc(a, sizeof *t);
    int64_t *d = alloc(a, sizeof *d), *v = alloc(a, n * sizeof *v);
    if (!t || !d || !v) return NULL;
    onnx__tensor_proto__init(t);
    d[0] = (int64_t)n;
    memcpy(v, vals, n * sizeof *v);
    t->n_dims = (size_t)nd;
    t->dims = d;
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
    t->name = str(a, name);
    t->n_int64_data = n;
    t->int64_data = v;
    return t;
}

static Onnx__AttributeProto *attr_int(arena *a, const char *name, int64_t v) {
    Onnx__AttributeProto *t = alloc(a, sizeof *t);
    if (!t) return NULL;
    onnx__attribute_proto__init(t);
    t->name = str(a, name);
    t->has_type = 1;
    t->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    t->has_i = 1;
    t->i = v;
    return t;
}

static Onnx__AttributeProto *attr_float(arena *a, const char *name, float v) {
    Onnx__AttributeProto *t = alloc(a, sizeof *t);
    if (!t) return NULL;
    onnx__attribute_proto__init(t);
    t->name = str(a, name);
    t->has_type = 1;
    t->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    t->has_f = 1;
    t->f = v;
    return t;
}

static Onnx__AttributeProto *attr_str(arena *a, const char *name, const char *v) {
    Onnx__AttributeProto *t = alloc(a, sizeof *t);
    char *d = str(a, v);
    if (!t || !d) return NULL;
    onnx__attribute_proto__init(t);
    t->name = str(a, name);
    t->has_type = 1;
    t->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
    t->has_s = 1;
    t->s.len = strlen(v);
    t->s.data = (uint8_t *)d;
    return t;
}

static Onnx__AttributeProto *attr_ints(arena *a, const char *name, size_t n, const int64_t *v) {
    Onnx__AttributeProto *t = alloc(a, sizeof *t);
    int64_t *d = alloc(a, n * sizeof *d);
    if (!t || !d) return NULL;
    onnx__attribute_proto__init(t);
    t->name = str(a, name);
    t->has_type = 1;
    t->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    memcpy(d, v, n * sizeof *d);
    t->n_ints = n;
    t->ints = d;
    return t;
}

/* The graph under construction. */
typedef struct gb {
    arena *a;
    Onnx__NodeProto **node;
    size_t n_node;
    Onnx__TensorProto **init;
    size_t n_init;
} gb;

/* Add a node; in / out are NULL-terminated lists; attrs n_attr entries. */
static void node(gb *g, const char *op, const char *name, const char *const *in, const char *const *out,
                 Onnx__AttributeProto **attrs, size_t n_attr) {
    Onnx__NodeProto *n = alloc(g->a, sizeof *n);
    size_t ni = 0, no = 0;
    while (in[ni]) ni++;
    while (out[no]) no++;
    char **i = alloc(g->a, ni * sizeof *i), **o = alloc(g->a, no * sizeof *o);
    Onnx__AttributeProto **at = alloc(g->a, n_attr * sizeof *at);
    if (!n || !i || !o || !at) return;
    onnx__node_proto__init(n);
    for (size_t k = 0; k < ni; k++) i[k] = str(g->a, in[k]);
    for (size_t k = 0; k < no; k++) o[k] = str(g->a, out[k]);
    for (size_t k = 0; k < n_attr; k++) {
        if (!attrs[k]) g->a->failed = true;
        at[k] = attrs[k];
    }
    n->op_type = str(g->a, op);
    n->name = str(g->a, name);
    n->n_input = ni;
    n->input = i;
    n->n_output = no;
    n->output = o;
    n->n_attribute = n_attr;
    n->attribute = at;
    g->node[g->n_node++] = n;
}

static void init(gb *g, Onnx__TensorProto *t) {
    if (!t) g->a->failed = true;
    else g->init[g->n_init++] = t;
}

/* ValueInfo for a tensor: dims > 0 fixed, else the symbolic name in params[k]. */
static Onnx__ValueInfoProto *vinfo(arena *a, const char *name, int elem, int nd, const int64_t *dims,
                                   const char *const *params) {
    Onnx__ValueInfoProto *v = alloc(a, sizeof *v);
    Onnx__TypeProto *tp = alloc(a, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = alloc(a, sizeof *tt);
    Onnx__TensorShapeProto *sh = alloc(a, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **dd = alloc(a, (size_t)nd * sizeof *dd);
    if (!v || !tp || !tt || !sh || !dd) return NULL;
    onnx__value_info_proto__init(v);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sh);
    for (int k = 0; k < nd; k++) {
        dd[k] = alloc(a, sizeof **dd);
        if (!dd[k]) return NULL;
        onnx__tensor_shape_proto__dimension__init(dd[k]);
        if (dims[k] > 0) {
            dd[k]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dd[k]->dim_value = dims[k];
        } else {
            dd[k]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dd[k]->dim_param = str(a, params[k]);
        }
    }
    sh->n_dim = (size_t)nd;
    sh->dim = dd;
    tt->has_elem_type = 1;
    tt->elem_type = elem;
    tt->shape = sh;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    v->name = str(a, name);
    v->type = tp;
    return v;
}

/* The dense matrix i of m, (rows, cols); NULL on allocation failure. */
static float *dense(arena *a, const fl_model *m, size_t i) {
    const fl_mat *w = fl_model_mat_const(m, i);
    float *d = alloc(a, (size_t)w->rows * w->cols * sizeof(float));
    if (d) fl_mat_to_dense(w, d);
    return d;
}

/* Gate rows of src (4H, cols), fastlstm order, into dst in ONNX order. */
static void to_onnx(float *dst, const float *src, int H, int cols) {
    for (int g = 0; g < 4; g++)
        memcpy(dst + (size_t)g * H * cols, src + (size_t)fl_gate[g] * H * cols, (size_t)H * cols * sizeof(float));
}

static fl_status build_graph(arena *a, const fl_model *m, Onnx__GraphProto *gp) {
    const fl_arch *ar = &m->arch;
    const int L = ar->layers, H = ar->hidden, G = 4 * H, V = ar->head_out, dirs = fl_arch_dirs(ar), F = dirs * H;
    gb g = {.a = a};
    g.node = alloc(a, (size_t)(4 * L + 8) * sizeof *g.node);
    g.init = alloc(a, (size_t)(4 * L + 8) * sizeof *g.init);
    if (!g.node || !g.init) return FL_ERR_NOMEM;
    char nm[8][64];
    const char *cur = "x";
    if (ar->vocab > 0) {
        int64_t d[2] = {ar->vocab, ar->input};
        init(&g, tensor_f(a, "embedding.weight", 2, d, m->embed));
        node(&g, "Gather", "embedding", (const char *[]){"embedding.weight", "x", NULL},
             (const char *[]){"x_embedded", NULL}, NULL, 0);
        cur = "x_embedded";
    }
    int64_t perm[3] = {1, 0, 2}, one[1] = {1}, last[1] = {-1}, join[3] = {0, 0, -1}, perm4[4] = {0, 2, 1, 3};
    node(&g, "Transpose", "to_time_major", (const char *[]){cur, NULL}, (const char *[]){"x_time_major", NULL},
         (Onnx__AttributeProto *[]){attr_ints(a, "perm", 3, perm)}, 1);
    init(&g, tensor_i64(a, "axis_1", 1, 1, one));
    if (dirs > 1) init(&g, tensor_i64(a, "join_directions", 1, 3, join));
    cur = "x_time_major";
    const char **yh = alloc(a, (size_t)(L + 1) * sizeof *yh), **yc = alloc(a, (size_t)(L + 1) * sizeof *yc);
    if (!yh || !yc) return FL_ERR_NOMEM;
    for (int l = 0; l < L; l++) {
        const int in = l ? F : ar->input;
        float *w = alloc(a, (size_t)dirs * G * in * sizeof(float)), *r = alloc(a, (size_t)dirs * G * H * sizeof(float));
        float *b = alloc(a, (size_t)dirs * 2 * G * sizeof(float));
        if (!w || !r || !b) return FL_ERR_NOMEM;
        for (int d = 0; d < dirs; d++) {  // matrices (l*dirs + d)*2 (+1): weight_ih, weight_hh (no projection)
            const size_t k = (size_t)l * dirs + (size_t)d;
            float *wih = dense(a, m, 2 * k), *whh = dense(a, m, 2 * k + 1);
            if (!wih || !whh) return FL_ERR_NOMEM;
            to_onnx(w + (size_t)d * G * in, wih, H, in);
            to_onnx(r + (size_t)d * G * H, whh, H, H);
            to_onnx(b + (size_t)d * 2 * G, m->layer[k].b_ih, H, 1);
            to_onnx(b + (size_t)d * 2 * G + G, m->layer[k].b_hh, H, 1);
        }
        snprintf(nm[0], 64, "W_l%d", l);
        snprintf(nm[1], 64, "R_l%d", l);
        snprintf(nm[2], 64, "B_l%d", l);
        snprintf(nm[3], 64, "lstm_l%d", l);
        snprintf(nm[4], 64, "Y_l%d", l);
        snprintf(nm[5], 64, "Y_h_l%d", l);
        snprintf(nm[6], 64, "Y_c_l%d", l);
        snprintf(nm[7], 64, "h_l%d", l);
        init(&g, tensor_f(a, nm[0], 3, (int64_t[]){dirs, G, in}, w));
        init(&g, tensor_f(a, nm[1], 3, (int64_t[]){dirs, G, H}, r));
        init(&g, tensor_f(a, nm[2], 2, (int64_t[]){dirs, 2 * G}, b));
        const fl_lstm_ext *e = m->ext;  // extras exist on forward models only (lstm_ext.h)
        Onnx__AttributeProto *at[4] = {attr_int(a, "hidden_size", H)};
        size_t nat = 1;
        if (dirs > 1) at[nat++] = attr_str(a, "direction", "bidirectional");
        char pname[64];
        snprintf(pname, sizeof pname, "P_l%d", l);
        if (e) {  // LSTM extras: peepholes as P, clip and input_forget as attributes
            init(&g, tensor_f(a, pname, 2, (int64_t[]){1, 3 * H}, e->peep + (size_t)l * 3 * H));
            if (e->clip[l] > 0) at[nat++] = attr_float(a, "clip", e->clip[l]);
            if (e->input_forget[l]) at[nat++] = attr_int(a, "input_forget", 1);
        }
        node(&g, "LSTM", nm[3], (const char *[]){cur, nm[0], nm[1], nm[2], e ? "" : NULL, "", "", pname, NULL},
             (const char *[]){nm[4], nm[5], nm[6], NULL}, at, nat);
        if (dirs == 1) {
            node(&g, "Squeeze", nm[7], (const char *[]){nm[4], "axis_1", NULL}, (const char *[]){nm[7], NULL}, NULL, 0);
        } else {
            char tn[64];
            snprintf(tn, sizeof tn, "Y_steps_l%d", l);
            node(&g, "Transpose", tn, (const char *[]){nm[4], NULL}, (const char *[]){tn, NULL},
                 (Onnx__AttributeProto *[]){attr_ints(a, "perm", 4, perm4)}, 1);
            node(&g, "Reshape", nm[7], (const char *[]){tn, "join_directions", NULL}, (const char *[]){nm[7], NULL}, NULL, 0);
        }
        yh[l] = str(a, nm[5]);
        yc[l] = str(a, nm[6]);
        cur = str(a, nm[7]);
        if (!cur || !yh[l] || !yc[l]) return FL_ERR_NOMEM;
    }
    Onnx__AttributeProto *ax0 = attr_int(a, "axis", 0);
    node(&g, "Concat", "final_h", yh, (const char *[]){"hn", NULL}, &ax0, 1);
    node(&g, "Concat", "final_c", yc, (const char *[]){"cn", NULL}, &ax0, 1);
    if (ar->head == FL_HEAD_NONE) {
        node(&g, "Transpose", "to_batch_major", (const char *[]){cur, NULL}, (const char *[]){"y", NULL},
             (Onnx__AttributeProto *[]){attr_ints(a, "perm", 3, perm)}, 1);
    } else {
        float *hw = dense(a, m, 2 * (size_t)L * dirs);
        if (!hw) return FL_ERR_NOMEM;
        init(&g, tensor_f(a, "head.bias", 1, (int64_t[]){V}, m->head_b));
        if (ar->head == FL_HEAD_PER_STEP) {
            float *wt = alloc(a, (size_t)V * F * sizeof(float));  // (dirs*H, V) for MatMul
            if (!wt) return FL_ERR_NOMEM;
            for (int v = 0; v < V; v++)
                for (int h = 0; h < F; h++) wt[(size_t)h * V + v] = hw[(size_t)v * F + h];
            init(&g, tensor_f(a, "head.weight_t", 2, (int64_t[]){F, V}, wt));
            node(&g, "Transpose", "to_batch_major", (const char *[]){cur, NULL}, (const char *[]){"h_batch_major", NULL},
                 (Onnx__AttributeProto *[]){attr_ints(a, "perm", 3, perm)}, 1);
            node(&g, "MatMul", "head_matmul", (const char *[]){"h_batch_major", "head.weight_t", NULL},
                 (const char *[]){"head_mm", NULL}, NULL, 0);
            node(&g, "Add", "head_bias", (const char *[]){"head_mm", "head.bias", NULL}, (const char *[]){"y", NULL}, NULL, 0);
        } else {
            init(&g, tensor_f(a, "head.weight", 2, (int64_t[]){V, F}, hw));
            init(&g, tensor_i64(a, "last_step", 0, 1, last));
            node(&g, "Gather", "last_step", (const char *[]){cur, "last_step", NULL}, (const char *[]){"h_last", NULL},
                 (Onnx__AttributeProto *[]){attr_int(a, "axis", 0)}, 1);
            node(&g, "Gemm", "head", (const char *[]){"h_last", "head.weight", "head.bias", NULL},
                 (const char *[]){"y", NULL}, (Onnx__AttributeProto *[]){attr_int(a, "transB", 1)}, 1);
        }
    }
    // inputs and outputs with symbolic batch and sequence sizes
    static const char *const bt[3] = {"batch", "seq", ""}, *const lbh[3] = {"", "batch", ""}, *const bc[2] = {"batch", ""};
    Onnx__ValueInfoProto **gi = alloc(a, sizeof *gi), **go = alloc(a, 3 * sizeof *go);
    if (!gi || !go) return FL_ERR_NOMEM;
    if (ar->vocab > 0) gi[0] = vinfo(a, "x", ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 2, (int64_t[]){0, 0}, bt);
    else gi[0] = vinfo(a, "x", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 3, (int64_t[]){0, 0, ar->input}, bt);
    int yout = ar->head == FL_HEAD_NONE ? F : V;
    if (ar->head == FL_HEAD_LAST_STEP) go[0] = vinfo(a, "y", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 2, (int64_t[]){0, V}, bc);
    else go[0] = vinfo(a, "y", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 3, (int64_t[]){0, 0, yout}, bt);
    go[1] = vinfo(a, "hn", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 3, (int64_t[]){(int64_t)L * dirs, 0, H}, lbh);
    go[2] = vinfo(a, "cn", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 3, (int64_t[]){(int64_t)L * dirs, 0, H}, lbh);
    if (a->failed || !gi[0] || !go[0] || !go[1] || !go[2]) return FL_ERR_NOMEM;
    gp->name = str(a, "fastlstm");
    gp->n_node = g.n_node;
    gp->node = g.node;
    gp->n_initializer = g.n_init;
    gp->initializer = g.init;
    gp->n_input = 1;
    gp->input = gi;
    gp->n_output = 3;
    gp->output = go;
    return a->failed ? FL_ERR_NOMEM : FL_OK;
}

static fl_status write_atomic(const char *path, const uint8_t *buf, size_t n) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) return fl_fail(FL_ERR_ARG, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return fl_fail(FL_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    bool ok = fwrite(buf, 1, n, f) == n;
    ok = fflush(f) == 0 && ok;
    ok = fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return fl_fail(FL_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    }
    return FL_OK;
}

fl_status fl_onnx_export(const fl_model *m, const char *path) {
    if (!m || !path) return fl_fail(FL_ERR_ARG, "fl_onnx_export: NULL argument");
    if (m->arch.proj > 0)
        return fl_fail(FL_ERR_UNSUPPORTED, "fl_onnx_export: the model has a projection (LSTMP, proj %d), which ONNX's "
                       "LSTM operator cannot express", m->arch.proj);
    arena a = {0};
    Onnx__ModelProto mp;
    Onnx__GraphProto gp;
    Onnx__OperatorSetIdProto op;
    onnx__model_proto__init(&mp);
    onnx__graph_proto__init(&gp);
    onnx__operator_set_id_proto__init(&op);
    op.domain = (char *)"";
    op.has_version = 1;
    op.version = 14;
    Onnx__OperatorSetIdProto *ops[1] = {&op};
    mp.has_ir_version = 1;
    mp.ir_version = 7;
    mp.producer_name = (char *)"fastlstm";
    mp.producer_version = (char *)fl_version();
    mp.n_opset_import = 1;
    mp.opset_import = ops;
    mp.graph = &gp;
    fl_model_weights_hold(m);  // the dense W_hh originals, even while sessions run
    fl_status st = build_graph(&a, m, &gp);
    fl_model_weights_unhold(m);
    if (st) {
        arena_free(&a);
        return fl_fail(st, "fl_onnx_export: out of memory building the graph");
    }
    size_t n = onnx__model_proto__get_packed_size(&mp);
    uint8_t *buf = fl_malloc(n + 1);
    if (!buf) {
        arena_free(&a);
        return fl_fail(FL_ERR_NOMEM, "fl_onnx_export: cannot allocate %zu bytes", n);
    }
    size_t packed = onnx__model_proto__pack(&mp, buf);
    FL_ASSERT(packed == n);
    arena_free(&a);
    st = write_atomic(path, buf, n);
    fl_free(buf);
    return st;
}
