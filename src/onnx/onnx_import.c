/* ONNX import: ModelProto (protobuf-c, ONNX's onnx.proto) -> fastlstm model.
 *
 * Data flow: unpack the ModelProto; every initializer and feed becomes a constant value, every other
 * graph input an unclassified one; then the nodes run in graph order (ONNX requires topological
 * order), each through the handler of its operator (onnx_ops.c, onnx_lstm.c), which either gives
 * its outputs a meaning (the sequence with labelled axes, an initial or final state, a shape made
 * of the input's symbolic sizes, zeros, a constant) or refuses the node. Finally the graph outputs
 * must be the model's output and final states, and the collected weights become an fl_model.
 * Nothing is executed: the import is a static proof that the graph computes what the model does. */
#include "onnx_graph.h"
#include "lstm_ext.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

fl_status node_fail(ctx *c, fl_status s, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const Onnx__NodeProto *n = c->node;
    if (!n) return fl_fail(s, "%s", msg);
    if (n->name && n->name[0])
        return fl_fail(s, "node '%s' (op %s): %s", n->name, n->op_type ? n->op_type : "?", msg);
    return fl_fail(s, "node #%zu (op %s): %s", c->node_index, n->op_type ? n->op_type : "?", msg);
}

value *find_value(ctx *c, const char *name) {
    if (!name || !name[0]) return NULL;
    for (size_t i = c->n; i-- > 0;)
        if (!strcmp(c->v[i].name, name)) return &c->v[i];
    return NULL;
}

value *new_value(ctx *c, const char *name) {
    if (!name || !name[0]) return NULL;
    if (find_value(c, name)) {
        node_fail(c, FL_ERR_FORMAT, "value '%s' is defined twice", name);
        return NULL;
    }
    if (c->n == c->cap) {  // sized at the start for every name the graph can define: never moves
        node_fail(c, FL_ERR_FORMAT, "more values than the graph declares");
        return NULL;
    }
    value *v = &c->v[c->n++];
    memset(v, 0, sizeof *v);
    v->name = name;
    v->gin = -1;
    return v;
}

value *node_input(ctx *c, size_t k) {
    if (k >= c->node->n_input || !c->node->input[k][0]) return NULL;
    return find_value(c, c->node->input[k]);
}

value *node_input_req(ctx *c, size_t k, const char *what) {
    if (k >= c->node->n_input || !c->node->input[k][0]) {
        node_fail(c, FL_ERR_FORMAT, "input %zu (%s) is missing", k, what);
        return NULL;
    }
    value *v = find_value(c, c->node->input[k]);
    if (!v) node_fail(c, FL_ERR_FORMAT, "input '%s' is not defined before the node", c->node->input[k]);
    return v;
}

const Onnx__AttributeProto *node_attr(ctx *c, const char *name) {
    for (size_t i = 0; i < c->node->n_attribute; i++)
        if (c->node->attribute[i]->name && !strcmp(c->node->attribute[i]->name, name)) return c->node->attribute[i];
    return NULL;
}

bool as_seq(ctx *c, value *v) {
    if (v->kind == V_SEQ) return true;
    if (v->kind != V_GRAPH_IN || v->ndim != 3 || v->elem != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
        node_fail(c, FL_ERR_UNSUPPORTED, "input '%s' is not the sequence (a float graph input of rank 3 "
                  "or what the LSTM layers made of it)", v->name);
        return false;
    }
    if (c->seq_in >= 0 && c->seq_in != v->gin) {
        node_fail(c, FL_ERR_UNSUPPORTED, "a second sequence input '%s' (fastlstm models take one)", v->name);
        return false;
    }
    c->seq_in = v->gin;
    // the feature size, when the graph declares it
    const Onnx__ValueInfoProto *vi = c->g->input[v->gin];
    int64_t d = AX_UNKNOWN;
    if (vi->type && vi->type->tensor_type && vi->type->tensor_type->shape &&
        vi->type->tensor_type->shape->n_dim == 3 && vi->type->tensor_type->shape->dim[2]->value_case ==
        ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE)
        d = vi->type->tensor_type->shape->dim[2]->dim_value;
    v->kind = V_SEQ;
    v->ax[0] = AX_P0;
    v->ax[1] = AX_P1;
    v->ax[2] = d > 0 && d < (1 << 24) ? (int)d : AX_UNKNOWN;
    v->layer = -1;
    return true;
}

bool as_shape(const value *v, value *out) {
    memset(out, 0, sizeof *out);
    if (v->kind == V_SHAPE) {
        *out = *v;
        return true;
    }
    if (v->kind != V_CONST || !v->c.i || v->c.ndim > 1 || v->c.count > MAX_AX) return false;
    out->kind = V_SHAPE;
    out->scalar = v->c.ndim == 0;
    out->n_sv = (int)v->c.count;
    for (size_t k = 0; k < v->c.count; k++) out->sv[k] = v->c.i[k];
    return true;
}

/* ------------------------------------------------------------ set-up and finish */

static fl_status add_graph_inputs(ctx *c, const fl_onnx_feed *feeds, size_t n_feeds) {
    const Onnx__GraphProto *g = c->g;
    for (size_t i = 0; i < g->n_initializer; i++) {
        const Onnx__TensorProto *t = g->initializer[i];
        value *v = new_value(c, t->name);
        if (!v) return fl_fail(FL_ERR_FORMAT, "initializer %zu has no name or a duplicate name", i);
        fl_status st = fl_onnx_const_decode(t, t->name, &v->c);
        if (st) return st;
        v->kind = V_CONST;
    }
    for (size_t i = 0; i < n_feeds; i++) {
        const fl_onnx_feed *f = &feeds[i];
        if (!f->name || !f->data || f->ndim < 0 || f->ndim > 8 || (f->ndim && !f->shape))
            return fl_fail(FL_ERR_ARG, "fl_onnx_import: feed %zu is incomplete", i);
        value *v = new_value(c, f->name);
        if (!v) return fl_fail(FL_ERR_ARG, "fl_onnx_import: feed '%s' given twice or names an initializer", f->name);
        size_t n = 1;
        for (int d = 0; d < f->ndim; d++) {
            if (f->shape[d] < 0 || !fl_mul_ok(n, (size_t)f->shape[d], &n) || n > ((size_t)1 << 40))
                return fl_fail(FL_ERR_ARG, "fl_onnx_import: feed '%s' has a bad shape", f->name);
            v->c.shape[d] = f->shape[d];
        }
        v->c.ndim = f->ndim;
        v->c.count = n;
        v->c.f = fl_malloc(n * sizeof(float) + 1);
        if (!v->c.f) return fl_fail(FL_ERR_NOMEM, "fl_onnx_import: out of memory");
        memcpy(v->c.f, f->data, n * sizeof(float));
        v->kind = V_CONST;
    }
    for (size_t i = 0; i < g->n_input; i++) {
        const Onnx__ValueInfoProto *vi = g->input[i];
        if (!vi->name || !vi->name[0]) return fl_fail(FL_ERR_FORMAT, "graph input %zu has no name", i);
        if (find_value(c, vi->name)) continue;  // an initializer listed as an input (IR < 4), or fed
        value *v = new_value(c, vi->name);
        if (!v) return fl_fail(FL_ERR_NOMEM, "out of memory");
        v->kind = V_GRAPH_IN;
        v->gin = (int)i;
        v->ndim = -1;
        if (vi->type && vi->type->tensor_type) {
            v->elem = vi->type->tensor_type->has_elem_type ? vi->type->tensor_type->elem_type : 0;
            if (vi->type->tensor_type->shape) v->ndim = (int)vi->type->tensor_type->shape->n_dim;
        }
    }
    return FL_OK;
}

/* Which layout a value's (sequence axis, batch axis) pair stands for; -1 if neither. */
static int layout_of(const ctx *c, int a0, int a1) {
    int b_label = c->t_label == AX_P0 ? AX_P1 : AX_P0;
    if (a0 == c->t_label && a1 == b_label) return FL_TIME_MAJOR;
    if (a0 == b_label && a1 == c->t_label) return FL_BATCH_MAJOR;
    return -1;
}

/* Check graph output k and record it in info; sets *head_kind for the sequence output. */
static fl_status check_output(ctx *c, size_t k, fl_onnx_info *info, int *head_kind) {
    const char *name = c->g->output[k]->name;
    value *v = find_value(c, name);
    if (!v) return fl_fail(FL_ERR_FORMAT, "graph output '%s' is not computed by any node", name ? name : "");
    if (v->perm) return fl_fail(FL_ERR_UNSUPPORTED, "graph output '%s' is in the lengths' sorted order, not put back in "
                                "the input's", name);
    int b_label = c->t_label == AX_P0 ? AX_P1 : AX_P0;
    if (v->kind == V_SEQ || v->kind == V_LAST) {
        if (info->y[0]) return fl_fail(FL_ERR_UNSUPPORTED, "graph outputs '%s' and '%s' are both sequence outputs "
                                       "(a fastlstm model has one)", info->y, name);
        bool top = v->head || (v->layer == c->L - 1 && !c->head_w);
        if (!top) return fl_fail(FL_ERR_UNSUPPORTED, "graph output '%s' is not the model's output (the %s)", name,
                                 c->head_w ? "head's output" : "top LSTM layer's output");
        if (v->has_dir && c->dirs > 1)
            return fl_fail(FL_ERR_UNSUPPORTED, "graph output '%s' keeps the bidirectional LSTM's num_directions axis "
                           "(fastlstm's output joins the directions per step: [forward, reverse])", name);
        int ax[MAX_AX], n = 0;
        for (int d = 0; d < v->ndim; d++)
            if (v->ax[d] != AX_DIR) ax[n++] = v->ax[d];
        if (v->kind == V_LAST) {
            if (!v->head) return fl_fail(FL_ERR_UNSUPPORTED, "graph output '%s' is the last step without a head "
                                         "(the same as the top layer's final state: output that instead)", name);
            if (n != 2 || ax[0] != b_label) return fl_fail(FL_ERR_UNSUPPORTED, "graph output '%s' has an axis order fastlstm does not produce", name);
            *head_kind = FL_HEAD_LAST_STEP;
        } else {
            int lay = n == 3 ? layout_of(c, ax[0], ax[1]) : -1;
            if (lay < 0) return fl_fail(FL_ERR_UNSUPPORTED, "graph output '%s' has an axis order fastlstm does not produce", name);
            if ((int)info->layout != lay)
                return fl_fail(FL_ERR_UNSUPPORTED, "graph output '%s' is %s while the input is %s (fastlstm uses one layout for both)",
                               name, lay == FL_TIME_MAJOR ? "time-major" : "batch-major",
                               info->layout == FL_TIME_MAJOR ? "time-major" : "batch-major");
            *head_kind = v->head ? FL_HEAD_PER_STEP : FL_HEAD_NONE;
        }
        snprintf(info->y, sizeof info->y, "%s", name);
        return FL_OK;
    }
    if (v->kind == V_STATE_OUT) {
        bool all = (v->layer < 0 && v->count == c->L) || (v->layer == 0 && c->L == 1);
        if (!all) return fl_fail(FL_ERR_UNSUPPORTED, "graph output '%s' holds the final state of some layers only "
                                 "(fastlstm returns all %d)", name, c->L);
        // (L*dirs, B, H), or (B, 1, H) for one forward layer: the same bytes
        bool ok = v->ndim == 3 && ((v->ax[0] == AX_DIR && v->ax[1] == b_label) ||
                                   (c->L == 1 && c->dirs == 1 && v->ax[0] == b_label && v->ax[1] == AX_DIR));
        if (!ok) return fl_fail(FL_ERR_UNSUPPORTED, "graph output '%s' has an axis order fastlstm does not produce", name);
        char *dst = v->is_c ? info->cn : info->hn;
        if (dst[0]) return fl_fail(FL_ERR_UNSUPPORTED, "graph outputs '%s' and '%s' are the same state", dst, name);
        snprintf(dst, FL_ONNX_NAME_MAX, "%s", name);
        return FL_OK;
    }
    return fl_fail(FL_ERR_UNSUPPORTED, "graph output '%s' is neither the model's output nor its final state", name);
}

/* Initial states: every layer from zeros, or every layer l from rows [l*dirs, (l+1)*dirs) of the same
 * graph input (the whole input when there is one layer), as fl_run_io's h0 / c0 give them. */
static fl_status check_states(ctx *c, fl_onnx_info *info) {
    for (int pass = 0; pass < 2; pass++) {
        const char *what = pass ? "initial_c" : "initial_h";
        int src = pass ? c->lay[0].c_src : c->lay[0].h_src;
        for (int l = 0; l < c->L; l++) {
            int s = pass ? c->lay[l].c_src : c->lay[l].h_src, sl = pass ? c->lay[l].c_layer : c->lay[l].h_layer;
            if (s != src)
                return fl_fail(FL_ERR_UNSUPPORTED, "LSTM layer %d takes %s from %s but layer 0 from %s (fastlstm "
                               "takes every layer's initial state from one (L, B, H) input, or zeros)", l, what,
                               s < 0 ? "zeros" : c->g->input[s]->name, src < 0 ? "zeros" : c->g->input[src]->name);
            if (s >= 0 && !(sl == l * c->dirs || (sl < 0 && c->L == 1)))
                return fl_fail(FL_ERR_UNSUPPORTED, "LSTM layer %d takes %s from a slice of '%s' other than [%d:%d]", l,
                               what, c->g->input[s]->name, l * c->dirs, (l + 1) * c->dirs);
        }
        if (src >= 0) snprintf(pass ? info->c0 : info->h0, FL_ONNX_NAME_MAX, "%s", c->g->input[src]->name);
    }
    if (info->h0[0] && !strcmp(info->h0, info->c0))
        return fl_fail(FL_ERR_UNSUPPORTED, "graph input '%s' is both initial_h and initial_c", info->h0);
    return FL_OK;
}

/* sequence_lens: fl_run_io's lengths give the graph's function as long as the per-step outputs are
 * zero past each length in both (no head, or a head without bias) and a last-step head reads the
 * same step (the graph's Y[T-1] is zero for a short sequence; fastlstm reads its last valid step). */
static fl_status check_lengths(ctx *c, int head_kind, fl_onnx_info *info) {
    int g = c->lay[0].lens;
    if (g < 0) return FL_OK;
    const char *name = c->g->input[g]->name;
    if (head_kind == FL_HEAD_LAST_STEP)
        return fl_fail(FL_ERR_UNSUPPORTED, "sequence_lens '%s' with a head on the last time step: the graph reads step T-1, "
                       "zero for a shorter sequence, where fastlstm reads each sequence's last valid step", name);
    for (int k = 0; head_kind == FL_HEAD_PER_STEP && k < c->head_out; k++)
        if (c->head_b[k] != 0.0f)
            return fl_fail(FL_ERR_UNSUPPORTED, "sequence_lens '%s' with a per-step head that has a bias: the graph's "
                           "outputs past a sequence's length are the bias, fastlstm's are zero", name);
    snprintf(info->lengths, sizeof info->lengths, "%s", name);
    return FL_OK;
}

static void copy_mat(fl_model *m, const char *name, const float *src) {
    const fl_tensor *t = fl_model_find_tensor(m, name);
    FL_ASSERT(t);
    memcpy(m->params + t->offset, src, t->count * sizeof(float));
}

static fl_status build_model(ctx *c, int head_kind, fl_model **out) {
    fl_arch a = {0};
    a.vocab = c->tokens ? c->vocab : 0;
    a.input = c->lay[0].in;
    a.hidden = c->H;
    a.layers = c->L;
    a.head = (fl_head_kind)head_kind;
    a.head_out = head_kind == FL_HEAD_NONE ? 0 : c->head_out;
    a.bidirectional = c->dirs > 1;
    fl_model *m;
    fl_status st = fl_model_create(&a, NULL, &m);
    if (st) return st;
    char name[64];
    if (c->tokens) copy_mat(m, "embedding.weight", c->emb);
    for (int l = 0; l < c->L; l++)
        for (int d = 0; d < c->dirs; d++) {
            const char *sfx = d ? "_reverse" : "";
            snprintf(name, sizeof name, "lstm.weight_ih_l%d%s", l, sfx);
            copy_mat(m, name, c->lay[l].wih[d]);
            snprintf(name, sizeof name, "lstm.weight_hh_l%d%s", l, sfx);
            copy_mat(m, name, c->lay[l].whh[d]);
            snprintf(name, sizeof name, "lstm.bias_ih_l%d%s", l, sfx);
            copy_mat(m, name, c->lay[l].bih[d]);
            snprintf(name, sizeof name, "lstm.bias_hh_l%d%s", l, sfx);
            copy_mat(m, name, c->lay[l].bhh[d]);
        }
    if (head_kind != FL_HEAD_NONE) {
        copy_mat(m, "head.weight", c->head_w);
        copy_mat(m, "head.bias", c->head_b);
    }
    bool ext = false;
    for (int l = 0; l < c->L; l++) ext = ext || c->lay[l].peep || c->lay[l].clip > 0 || c->lay[l].input_forget;
    if (ext && (st = fl_lstm_ext_create(c->L, c->H, &m->ext))) {
        fl_model_free(m);
        return st;
    }
    for (int l = 0; ext && l < c->L; l++) {
        if (c->lay[l].peep) memcpy(m->ext->peep + (size_t)l * 3 * c->H, c->lay[l].peep, 3 * (size_t)c->H * sizeof(float));
        m->ext->clip[l] = c->lay[l].clip;
        m->ext->input_forget[l] = c->lay[l].input_forget;
    }
    *out = m;
    return FL_OK;
}

static fl_status convert(ctx *c, const fl_onnx_feed *feeds, size_t n_feeds, fl_model **out, fl_onnx_info *info) {
    const Onnx__ModelProto *mp = c->mp;
    for (size_t i = 0; i < mp->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = mp->opset_import[i];
        if ((!o->domain || !o->domain[0] || !strcmp(o->domain, "ai.onnx")) && o->has_version) c->opset = o->version;
    }
    if (!mp->graph) return fl_fail(FL_ERR_FORMAT, "the model has no graph");
    if (c->opset == 0) c->opset = 1;  // IR without opset_import: the first opset
    if (c->opset < 7) return fl_fail(FL_ERR_UNSUPPORTED, "opset %lld: LSTM is converted from opset 7 on", (long long)c->opset);
    c->g = mp->graph;
    // one slot per name the graph can define, so value pointers stay valid while nodes run
    size_t cap = c->g->n_initializer + n_feeds + c->g->n_input + 1;
    for (size_t i = 0; i < c->g->n_node; i++) cap += c->g->node[i]->n_output;
    c->v = fl_calloc(cap, sizeof *c->v);
    if (!c->v) return fl_fail(FL_ERR_NOMEM, "out of memory for %zu graph values", cap);
    c->cap = cap;
    fl_status st = add_graph_inputs(c, feeds, n_feeds);
    if (st) return st;
    for (size_t i = 0; i < c->g->n_node; i++) {
        c->node = c->g->node[i];
        c->node_index = i;
        if (!c->node->op_type) return node_fail(c, FL_ERR_FORMAT, "no operator type");
        if (c->node->domain && c->node->domain[0] && strcmp(c->node->domain, "ai.onnx"))
            return node_fail(c, FL_ERR_UNSUPPORTED, "operator domain '%s' is not supported", c->node->domain);
        st = op_dispatch(c);
        if (st) return st;
    }
    c->node = NULL;
    if (c->L == 0) return fl_fail(FL_ERR_UNSUPPORTED, "the graph has no LSTM node");
    memset(info, 0, sizeof *info);
    info->opset = c->opset;
    info->tokens = c->tokens;
    info->layout = c->t_label == AX_P1 ? FL_BATCH_MAJOR : FL_TIME_MAJOR;
    if (c->seq_in < 0) return fl_fail(FL_ERR_UNSUPPORTED, "the first LSTM's input is not a graph input");
    snprintf(info->input, sizeof info->input, "%s", c->g->input[c->seq_in]->name);
    int head_kind = FL_HEAD_NONE;
    for (size_t k = 0; k < c->g->n_output; k++) {
        st = check_output(c, k, info, &head_kind);
        if (st) return st;
    }
    if (!info->y[0] && !info->hn[0] && !info->cn[0]) return fl_fail(FL_ERR_UNSUPPORTED, "the graph has no output");
    st = check_states(c, info);
    if (!st) st = check_lengths(c, head_kind, info);
    if (st) return st;
    return build_model(c, head_kind, out);
}

static void ctx_clear(ctx *c) {
    for (size_t i = 0; i < c->n; i++) fl_onnx_const_clear(&c->v[i].c);
    fl_free(c->v);
    for (int l = 0; l < MAX_LAYERS; l++) {
        for (int d = 0; d < 2; d++) {
            fl_free(c->lay[l].wih[d]);
            fl_free(c->lay[l].whh[d]);
            fl_free(c->lay[l].bih[d]);
            fl_free(c->lay[l].bhh[d]);
        }
        fl_free(c->lay[l].peep);
    }
    fl_free(c->emb);
    fl_free(c->head_w);
    fl_free(c->head_b);
}

fl_status fl_onnx_import(const void *data, size_t size, const fl_onnx_feed *feeds, size_t n_feeds,
                         fl_model **out, fl_onnx_info *info) {
    if (!out) return fl_fail(FL_ERR_ARG, "fl_onnx_import: out is NULL");
    *out = NULL;
    if (!data && size) return fl_fail(FL_ERR_ARG, "fl_onnx_import: data is NULL");
    if (n_feeds && !feeds) return fl_fail(FL_ERR_ARG, "fl_onnx_import: feeds is NULL");
    Onnx__ModelProto *mp = onnx__model_proto__unpack(&fl_pb_allocator, size, data);
    if (!mp) return fl_fail(FL_ERR_FORMAT, "not a valid ONNX model (protobuf decoding of ModelProto failed "
                            "on %zu bytes: truncated or not ONNX)", size);
    ctx c;
    memset(&c, 0, sizeof c);
    c.mp = mp;
    c.seq_in = -1;
    fl_onnx_info local;
    fl_status st = convert(&c, feeds, n_feeds, out, info ? info : &local);
    ctx_clear(&c);
    onnx__model_proto__free_unpacked(mp, &fl_pb_allocator);
    return st;
}

fl_status fl_onnx_import_file(const char *path, const fl_onnx_feed *feeds, size_t n_feeds, fl_model **out,
                              fl_onnx_info *info) {
    if (!path || !out) return fl_fail(FL_ERR_ARG, "fl_onnx_import_file: NULL argument");
    *out = NULL;
    uint8_t *data;
    size_t size;
    fl_status st = fl_onnx_read_file(path, &data, &size);
    if (st) return st;
    st = fl_onnx_import(data, size, feeds, n_feeds, out, info);
    fl_free(data);
    if (st) {
        char msg[768];
        snprintf(msg, sizeof msg, "%s", fl_last_error());
        return fl_fail(st, "%s: %s", path, msg);
    }
    return FL_OK;
}
