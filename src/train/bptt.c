/* Training forward with stored activations and full backpropagation through time (bptt.h).
 * Mirrors PyTorch: nn.Embedding -> nn.LSTM (gates i, f, g, o; b_ih and b_hh) -> nn.Linear ->
 * nn.CrossEntropyLoss (mean). Dropout (inverted) is applied to the output of every LSTM layer,
 * i.e. between layers and before the head.
 *
 * Variable lengths (pack_padded_sequence): step t runs the recurrence on rows [0, act[t]) only,
 * act[t] = 1 + the last row still valid at t (all active rows when the batch is sorted by
 * decreasing length, as the trainer sorts it). Padded cells get h = c = 0, so the layer output is
 * zero there; the head's loss skips them, which leaves their output gradient zero, and with zero
 * gradients flowing in a padded cell's backward yields zero, so no gradient reaches a padded step.
 * Without lengths act[] is not used and the loops are those of equal-length batches. */
#include "bptt.h"

#include "matgrad.h"

#include <math.h>
#include <string.h>

typedef struct layer_ws {
    float *gates;  // (T, B, 4H) gate activations i, f, g, o (after the nonlinearities)
    float *c;      // (T+1, B, H) cell states, c[0] = c0
    float *tc;     // (T, B, H) tanh(c_t)
    float *h;      // (T+1, B, H) hidden states, h[0] = h0
    float *y;      // (T, B, H) output after dropout
    float *mask;   // (T, B, H) dropout mask, 0 or 1/(1-p)
    float *aux_ih; // (T*B, R_ih) saved intermediate of W_ih (NULL for dense)
    float *aux_hh; // (T*B, R_hh) saved intermediate of W_hh (NULL for dense)
    bool dropped;  // the last forward applied dropout to this layer
} layer_ws;

struct fl_bptt {
    fl_arch arch;
    int max_batch, max_seq;
    int B, T;          // shapes of the last forward
    bool have_forward;
    layer_ws *lay;     // [layers]
    int32_t *tok;      // (T, B) tokens of the last forward
    int32_t *tgt;      // (T, B) or (B) targets of the last forward
    int32_t *len;      // (B) lengths of the last forward (meaningful when has_len)
    int *act;          // (T) rows [0, act[t]) run the recurrence at step t
    bool has_len;      // the last forward had lengths
    size_t count;      // targets the last loss averaged over
    float *xlast;      // (B, H) top output at each row's last valid step (classifier with lengths)
    float *x0;         // (T, B, D) layer-0 input
    float *logits;     // (T*B, V) or (B, C); softmax probabilities after forward
    float *aux_head;   // (rows, R_head)
    float *dA;         // (T, B, 4H) gate pre-activation gradients of one layer
    float *dy, *dx;    // (T, B, max(D, H)) output / input gradients of one layer
    float *baux;       // (T*B, R_max)
    float *scratch;    // CP scratch
    float *dh, *dc;    // (B, H) gradients carried backwards in time
    fl_bptt_progress progress; // overlap hook (fl_bptt_set_progress) or NULL
    void *progress_user;
};

void fl_bptt_set_progress(fl_bptt *w, fl_bptt_progress fn, void *user) {
    w->progress = fn;
    w->progress_user = user;
}

// Offset in grad's block of the first tensor of w (the lowest of its factor pointers).
static size_t mat_offset(const fl_model *grad, const fl_mat *w) {
    const float *p = w->method == FL_METHOD_DENSE ? w->w : w->method == FL_METHOD_SVD ? w->u : w->a;
    return (size_t)(p - grad->params);
}

static float *falloc(size_t n, bool *ok) {
    if (n == 0) return NULL;
    float *p = fl_calloc(n, sizeof(float));
    if (!p) *ok = false;
    return p;
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

fl_status fl_bptt_create(const fl_model *m, int max_batch, int max_seq, fl_bptt **out) {
    if (!m || !out) return fl_fail(FL_ERR_ARG, "NULL argument to fl_bptt_create");
    *out = NULL;
    if (m->arch.bidirectional || m->arch.proj > 0) /* issue 11: BPTT of these layers comes later */
        return fl_fail(FL_ERR_UNSUPPORTED, "%s layers are not yet supported in training (inference only)",
                       m->arch.bidirectional ? "bidirectional" : "projection (LSTMP)");
    const fl_arch *a = &m->arch;
    if (a->head == FL_HEAD_NONE)
        return fl_fail(FL_ERR_UNSUPPORTED, "training needs a model with a head (classifier or language model)");
    if (max_batch < 1 || max_seq < 1)
        return fl_fail(FL_ERR_ARG, "batch (%d) and sequence length (%d) must be >= 1", max_batch, max_seq);
    size_t TB;
    if (!fl_mul_ok((size_t)max_batch, (size_t)max_seq, &TB) || TB > ((size_t)1 << 31))
        return fl_fail(FL_ERR_ARG, "batch x sequence length too large");
    fl_bptt *w = fl_calloc(1, sizeof *w);
    if (!w) return fl_fail(FL_ERR_NOMEM, "out of memory creating a training workspace");
    w->arch = *a;
    w->max_batch = max_batch;
    w->max_seq = max_seq;
    const size_t B = (size_t)max_batch, H = (size_t)a->hidden, G = 4 * H, D = (size_t)a->input;
    const size_t V = (size_t)a->head_out;
    bool ok = true;
    w->lay = fl_calloc((size_t)a->layers, sizeof *w->lay);
    if (!w->lay) ok = false;
    size_t rmax = fl_matg_aux_per_row(&m->head), scratch = 0;
    for (int l = 0; ok && l < a->layers; l++) {
        layer_ws *s = &w->lay[l];
        const fl_layer *ly = &m->layer[l];
        s->gates = falloc(TB * G, &ok);
        s->c = falloc(TB * H + B * H, &ok);
        s->tc = falloc(TB * H, &ok);
        s->h = falloc(TB * H + B * H, &ok);
        s->y = falloc(TB * H, &ok);
        s->mask = falloc(TB * H, &ok);
        s->aux_ih = falloc(TB * fl_matg_aux_per_row(&ly->wih), &ok);
        s->aux_hh = falloc(TB * fl_matg_aux_per_row(&ly->whh), &ok);
        rmax = max_sz(rmax, max_sz(fl_matg_aux_per_row(&ly->wih), fl_matg_aux_per_row(&ly->whh)));
        scratch = max_sz(scratch, max_sz(fl_matg_scratch(&ly->wih, (int)TB), fl_matg_scratch(&ly->whh, (int)TB)));
    }
    size_t head_rows = a->head == FL_HEAD_PER_STEP ? TB : B;
    if (ok) {
        w->tok = fl_calloc(TB, sizeof(int32_t));
        w->tgt = fl_calloc(TB, sizeof(int32_t));
        w->len = fl_calloc(B, sizeof(int32_t));
        w->act = fl_calloc((size_t)max_seq, sizeof(int));
        if (!w->tok || !w->tgt || !w->len || !w->act) ok = false;
        w->xlast = falloc(B * H, &ok);
        w->x0 = falloc(TB * D, &ok);
        w->logits = falloc(head_rows * V, &ok);
        w->aux_head = falloc(head_rows * fl_matg_aux_per_row(&m->head), &ok);
        w->dA = falloc(TB * G, &ok);
        w->dy = falloc(TB * max_sz(D, H), &ok);
        w->dx = falloc(TB * max_sz(D, H), &ok);
        w->baux = falloc(TB * rmax, &ok);
        w->scratch = falloc(scratch, &ok);
        w->dh = falloc(B * H, &ok);
        w->dc = falloc(B * H, &ok);
    }
    if (!ok) {
        fl_bptt_free(w);
        return fl_fail(FL_ERR_NOMEM, "out of memory creating a training workspace (batch %d, seq %d)",
                       max_batch, max_seq);
    }
    *out = w;
    return FL_OK;
}

void fl_bptt_free(fl_bptt *w) {
    if (!w) return;
    if (w->lay)
        for (int l = 0; l < w->arch.layers; l++) {
            layer_ws *s = &w->lay[l];
            fl_free(s->gates);
            fl_free(s->c);
            fl_free(s->tc);
            fl_free(s->h);
            fl_free(s->y);
            fl_free(s->mask);
            fl_free(s->aux_ih);
            fl_free(s->aux_hh);
        }
    fl_free(w->lay);
    fl_free(w->tok);
    fl_free(w->tgt);
    fl_free(w->len);
    fl_free(w->act);
    fl_free(w->xlast);
    fl_free(w->x0);
    fl_free(w->logits);
    fl_free(w->aux_head);
    fl_free(w->dA);
    fl_free(w->dy);
    fl_free(w->dx);
    fl_free(w->baux);
    fl_free(w->scratch);
    fl_free(w->dh);
    fl_free(w->dc);
    fl_free(w);
}

static float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

/* One LSTM cell step for B rows. gates (B, 4H): pre-activations in, activations out.
 * c_prev, c, tc, h: (B, H). */
static void cell_forward(int B, int H, float *gates, const float *c_prev, float *c, float *tc, float *h) {
    const int G = 4 * H;
    for (int b = 0; b < B; b++) {
        float *g = gates + (size_t)b * G;
        for (int j = 0; j < H; j++) {
            float ig = sigmoidf(g[j]), fg = sigmoidf(g[H + j]);
            float gg = tanhf(g[2 * H + j]), og = sigmoidf(g[3 * H + j]);
            g[j] = ig;
            g[H + j] = fg;
            g[2 * H + j] = gg;
            g[3 * H + j] = og;
            size_t k = (size_t)b * H + j;
            float cn = fg * c_prev[k] + ig * gg;
            float t = tanhf(cn);
            c[k] = cn;
            tc[k] = t;
            h[k] = og * t;
        }
    }
}

/* Backward of one cell step. act (B, 4H) activations; c_prev, tc (B, H); dyt (B, H) gradient
 * from above for h_t; dh, dc (B, H) gradients flowing back from step t+1 (dc is updated to the
 * gradient for c_{t-1}; dh is read only). dAt (B, 4H) receives the pre-activation gradients. */
static void cell_backward(int B, int H, const float *act, const float *c_prev, const float *tc,
                          const float *dyt, const float *dh, float *dc, float *dAt) {
    const int G = 4 * H;
    for (int b = 0; b < B; b++) {
        const float *g = act + (size_t)b * G;
        float *d = dAt + (size_t)b * G;
        for (int j = 0; j < H; j++) {
            size_t k = (size_t)b * H + j;
            float ig = g[j], fg = g[H + j], gg = g[2 * H + j], og = g[3 * H + j];
            float t = tc[k];
            float dhv = dyt[k] + dh[k];
            float dcv = dc[k] + dhv * og * (1.0f - t * t);
            dc[k] = dcv * fg;
            d[j] = dcv * gg * ig * (1.0f - ig);
            d[H + j] = dcv * c_prev[k] * fg * (1.0f - fg);
            d[2 * H + j] = dcv * ig * (1.0f - gg * gg);
            d[3 * H + j] = dhv * t * og * (1.0f - og);
        }
    }
}

/* Variable lengths, after step t ran rows [0, n): zero h_t, c_t and tanh(c_t) of every row past
 * its length (rows [n, B) and any shorter row inside an unsorted prefix). */
static void mask_step(const fl_bptt *w, layer_ws *s, int t, int n) {
    const int B = w->B, H = w->arch.hidden;
    const size_t BH = (size_t)B * H;
    float *h = s->h + (size_t)(t + 1) * BH, *c = s->c + (size_t)(t + 1) * BH, *tc = s->tc + (size_t)t * BH;
    for (int b = 0; b < n; b++)
        if (w->len[b] <= t) {
            memset(h + (size_t)b * H, 0, (size_t)H * sizeof(float));
            memset(c + (size_t)b * H, 0, (size_t)H * sizeof(float));
            memset(tc + (size_t)b * H, 0, (size_t)H * sizeof(float));
        }
    const size_t k = (size_t)n * H, rest = BH - k;
    memset(h + k, 0, rest * sizeof(float));
    memset(c + k, 0, rest * sizeof(float));
    memset(tc + k, 0, rest * sizeof(float));
}

/* Output of layer l as seen by the next layer / head: (T, B, H). */
static const float *layer_out(const fl_bptt *w, int l) {
    const layer_ws *s = &w->lay[l];
    return s->dropped ? s->y : s->h + (size_t)w->B * w->arch.hidden;
}

fl_status fl_bptt_forward(fl_bptt *w, const fl_model *m, const fl_bptt_batch *in, float dropout,
                          fl_rng *rng, double *loss, long *correct) {
    const fl_arch *a = &m->arch;
    const int B = in->batch, T = in->seq, H = a->hidden, G = 4 * H, D = a->input, V = a->head_out;
    if (B < 1 || T < 1 || B > w->max_batch || T > w->max_seq)
        return fl_fail(FL_ERR_ARG, "batch %d x seq %d outside the workspace (%d x %d)", B, T,
                       w->max_batch, w->max_seq);
    if ((a->vocab > 0) != (in->tokens != NULL) || (a->vocab == 0 && !in->x) || !in->targets)
        return fl_fail(FL_ERR_ARG, "batch inputs do not match the model (tokens iff embedding; targets required)");
    if (dropout < 0 || dropout >= 1) return fl_fail(FL_ERR_ARG, "dropout %g outside [0, 1)", dropout);
    for (int b = 0; in->lengths && b < B; b++)
        if (in->lengths[b] < 1 || in->lengths[b] > T)
            return fl_fail(FL_ERR_ARG, "sequence %d: length %d outside [1, %d]", b, (int)in->lengths[b], T);
    w->B = B;
    w->T = T;
    w->have_forward = false;
    const size_t TB = (size_t)T * B, BH = (size_t)B * H;
    const bool per_step = a->head == FL_HEAD_PER_STEP;
    const size_t rows = per_step ? TB : (size_t)B;
    memcpy(w->tgt, in->targets, rows * sizeof(int32_t));
    w->has_len = in->lengths != NULL;
    if (w->has_len) {
        memcpy(w->len, in->lengths, (size_t)B * sizeof(int32_t));
        for (int t = 0; t < T; t++) w->act[t] = 0;
        for (int b = 0; b < B; b++)
            for (int t = 0; t < w->len[b]; t++) w->act[t] = b + 1;
    }

    // x0 (T, B, D): embedding rows or the features
    if (a->vocab > 0) {
        memcpy(w->tok, in->tokens, TB * sizeof(int32_t));
        for (size_t n = 0; n < TB; n++)
            memcpy(w->x0 + n * D, m->embed + (size_t)in->tokens[n] * D, (size_t)D * sizeof(float));
    } else {
        memcpy(w->x0, in->x, TB * D * sizeof(float));
    }

    const float *X = w->x0;
    int in_dim = D;
    for (int l = 0; l < a->layers; l++) {
        layer_ws *s = &w->lay[l];
        const fl_layer *ly = &m->layer[l];
        // gates (T*B, 4H) = X W_ih^T + b_ih + b_hh, for all steps at once
        fl_matg_forward(&ly->wih, (int)TB, X, in_dim, 0.0f, s->gates, G, s->aux_ih, w->scratch);
        for (size_t n = 0; n < TB; n++) {
            float *g = s->gates + n * G;
            for (int j = 0; j < G; j++) g[j] += ly->b_ih[j] + ly->b_hh[j];
        }
        if (in->h0) memcpy(s->h, in->h0 + (size_t)l * BH, BH * sizeof(float));
        else memset(s->h, 0, BH * sizeof(float));
        if (in->c0) memcpy(s->c, in->c0 + (size_t)l * BH, BH * sizeof(float));
        else memset(s->c, 0, BH * sizeof(float));
        const size_t Rhh = fl_matg_aux_per_row(&ly->whh);
        for (int t = 0; t < T; t++) {
            const int n = w->has_len ? w->act[t] : B; // rows [0, n) run this step
            float *gt = s->gates + (size_t)t * B * G;
            // gates_t += h_{t-1} W_hh^T
            fl_matg_forward(&ly->whh, n, s->h + (size_t)t * BH, H, 1.0f, gt, G,
                            s->aux_hh ? s->aux_hh + (size_t)t * B * Rhh : NULL, w->scratch);
            cell_forward(n, H, gt, s->c + (size_t)t * BH, s->c + (size_t)(t + 1) * BH,
                         s->tc + (size_t)t * BH, s->h + (size_t)(t + 1) * BH);
            if (w->has_len) mask_step(w, s, t, n);
        }
        s->dropped = dropout > 0 && rng;
        if (s->dropped) {
            const float keep = 1.0f / (1.0f - dropout);
            const float *hs = s->h + BH;
            for (size_t k = 0; k < TB * H; k++) {
                s->mask[k] = fl_rng_uniform(rng) < dropout ? 0.0f : keep;
                s->y[k] = hs[k] * s->mask[k];
            }
        }
        X = layer_out(w, l);
        in_dim = H;
    }

    // head: logits (rows, V) from every step (LM) or the last (valid) step (classifier)
    const float *Xh = per_step ? X : X + (size_t)(T - 1) * BH;
    if (!per_step && w->has_len) {
        for (int b = 0; b < B; b++)
            memcpy(w->xlast + (size_t)b * H, X + ((size_t)(w->len[b] - 1) * B + b) * H, (size_t)H * sizeof(float));
        Xh = w->xlast;
    }
    fl_matg_forward(&m->head, (int)rows, Xh, H, 0.0f, w->logits, V, w->aux_head, w->scratch);
    double sum = 0;
    long right = 0;
    size_t count = 0;
    for (size_t r = 0; r < rows; r++) {
        float *z = w->logits + r * V;
        if (per_step && w->has_len && (int)(r / (size_t)B) >= w->len[r % (size_t)B]) {
            memset(z, 0, (size_t)V * sizeof(float)); // padded step: no loss, zero gradient
            continue;
        }
        count++;
        int best = 0;
        for (int v = 0; v < V; v++) {
            z[v] += m->head_b[v];
            if (z[v] > z[best]) best = v;
        }
        const float mx = z[best];
        const int y = w->tgt[r];
        const double zy = (double)z[y] - mx; /* before exp: no log(0) when p_y underflows */
        double se = 0;
        for (int v = 0; v < V; v++) {
            z[v] = expf(z[v] - mx);
            se += z[v];
        }
        sum += log(se) - zy;
        right += best == y;
        float inv = (float)(1.0 / se);
        for (int v = 0; v < V; v++) z[v] *= inv;  // probabilities, kept for backward
    }
    w->count = count;
    *loss = sum / (double)count;
    if (correct) *correct = right;
    w->have_forward = true;
    return FL_OK;
}

void fl_bptt_backward(fl_bptt *w, const fl_model *m, fl_model *grad) {
    FL_ASSERT(w->have_forward);
    const fl_arch *a = &m->arch;
    const int B = w->B, T = w->T, H = a->hidden, G = 4 * H, D = a->input, V = a->head_out;
    const size_t TB = (size_t)T * B, BH = (size_t)B * H;
    const bool per_step = a->head == FL_HEAD_PER_STEP;
    const size_t rows = per_step ? TB : (size_t)B;

    // dlogits (rows, V) = (softmax - onehot) / count, in place; padded rows are zero already
    const float inv = 1.0f / (float)w->count;
    for (size_t r = 0; r < rows; r++) {
        float *z = w->logits + r * V;
        if (per_step && w->has_len && (int)(r / (size_t)B) >= w->len[r % (size_t)B]) continue;
        for (int v = 0; v < V; v++) z[v] *= inv;
        z[w->tgt[r]] -= inv;
        for (int v = 0; v < V; v++) grad->head_b[v] += z[v];
    }
    // head: dY_top (T, B, H); only the last step is nonzero for a classifier
    const float *Xtop = layer_out(w, a->layers - 1);
    float *dY = w->dy, *dX = w->dx;
    if (!per_step) memset(dY, 0, TB * H * sizeof(float));
    const size_t off = per_step ? 0 : (size_t)(T - 1) * BH;
    if (!per_step && w->has_len) { // through dh (B, H) as scratch, to each row's last valid step
        fl_matg_backward_x(&m->head, B, w->logits, V, 0.0f, w->dh, H, w->baux, w->scratch);
        fl_matg_backward_w(&m->head, &grad->head, B, w->xlast, H, w->logits, V, w->aux_head, w->baux,
                           w->scratch);
        for (int b = 0; b < B; b++)
            memcpy(dY + ((size_t)(w->len[b] - 1) * B + b) * H, w->dh + (size_t)b * H, (size_t)H * sizeof(float));
    } else {
        fl_matg_backward_x(&m->head, (int)rows, w->logits, V, 0.0f, dY + off, H, w->baux, w->scratch);
        fl_matg_backward_w(&m->head, &grad->head, (int)rows, Xtop + off, H, w->logits, V, w->aux_head,
                           w->baux, w->scratch);
    }
    if (w->progress) w->progress(mat_offset(grad, &grad->head), w->progress_user);
    size_t done = mat_offset(grad, &grad->head); // grad[done, n) is final

    for (int l = a->layers - 1; l >= 0; l--) {
        layer_ws *s = &w->lay[l];
        const fl_layer *ly = &m->layer[l];
        fl_layer *gl = &grad->layer[l];
        if (s->dropped)
            for (size_t k = 0; k < TB * H; k++) dY[k] *= s->mask[k];
        memset(w->dh, 0, BH * sizeof(float));
        memset(w->dc, 0, BH * sizeof(float));
        const size_t Rhh = fl_matg_aux_per_row(&ly->whh);
        for (int t = T - 1; t >= 0; t--) {
            const int n = w->has_len ? w->act[t] : B; // rows [n, B) are padded: zero gradients
            float *dAt = w->dA + (size_t)t * B * G;
            cell_backward(n, H, s->gates + (size_t)t * B * G, s->c + (size_t)t * BH,
                          s->tc + (size_t)t * BH, dY + (size_t)t * BH, w->dh, w->dc, dAt);
            if (n < B) {
                memset(dAt + (size_t)n * G, 0, (size_t)(B - n) * G * sizeof(float));
                if (Rhh) memset(w->baux + ((size_t)t * B + n) * Rhh, 0, (size_t)(B - n) * Rhh * sizeof(float));
            }
            // dh_{t-1} (B, H) = dA_t W_hh
            fl_matg_backward_x(&ly->whh, n, dAt, G, 0.0f, w->dh, H,
                               Rhh ? w->baux + (size_t)t * B * Rhh : NULL, w->scratch);
            if (w->progress && (t & 3) == 0) w->progress(done, w->progress_user); // let comm progress
        }
        // dW_hh += dA^T h_{t-1}, all steps at once; biases
        fl_matg_backward_w(&ly->whh, &gl->whh, (int)TB, s->h, H, w->dA, G, s->aux_hh, w->baux, w->scratch);
        for (size_t n = 0; n < TB; n++) {
            const float *d = w->dA + n * G;
            for (int j = 0; j < G; j++) {
                gl->b_ih[j] += d[j];
                gl->b_hh[j] += d[j];
            }
        }
        // dX (T*B, in) = dA W_ih (not needed for raw features); dW_ih += dA^T X
        const float *X = l == 0 ? w->x0 : layer_out(w, l - 1);
        const int in_dim = l == 0 ? D : H;
        const bool need_dx = l > 0 || a->vocab > 0;
        fl_matg_backward_x(&ly->wih, (int)TB, w->dA, G, 0.0f, need_dx ? dX : NULL, in_dim, w->baux, w->scratch);
        fl_matg_backward_w(&ly->wih, &gl->wih, (int)TB, X, in_dim, w->dA, G, s->aux_ih, w->baux, w->scratch);
        float *tmp = dY;
        dY = dX;
        dX = tmp;
        done = mat_offset(grad, &gl->wih);
        if (w->progress) w->progress(done, w->progress_user);
    }
    if (a->vocab > 0)
        for (size_t n = 0; n < TB; n++) {
            if (a->has_padding && w->tok[n] == a->padding_idx) continue; // nn.Embedding(padding_idx)
            float *ge = grad->embed + (size_t)w->tok[n] * D;
            const float *d = dY + n * D;
            for (int k = 0; k < D; k++) ge[k] += d[k];
        }
    if (w->progress) w->progress(0, w->progress_user);
}

const int32_t *fl_bptt_tokens(const fl_bptt *w, size_t *n) {
    const bool ok = w->have_forward && w->arch.vocab > 0 && w->tok;
    *n = ok ? (size_t)w->T * w->B : 0;
    return ok ? w->tok : NULL;
}

size_t fl_bptt_count(const fl_bptt *w) { return w->have_forward ? w->count : 0; }

void fl_bptt_final_state(const fl_bptt *w, float *hn, float *cn) {
    const int B = w->B, H = w->arch.hidden;
    const size_t BH = (size_t)B * H;
    for (int l = 0; l < w->arch.layers; l++) {
        if (!w->has_len) {
            if (hn) memcpy(hn + l * BH, w->lay[l].h + (size_t)w->T * BH, BH * sizeof(float));
            if (cn) memcpy(cn + l * BH, w->lay[l].c + (size_t)w->T * BH, BH * sizeof(float));
            continue;
        }
        for (int b = 0; b < B; b++) { // state after step len[b] - 1: index len[b] of h / c
            const size_t src = (size_t)w->len[b] * BH + (size_t)b * H, dst = l * BH + (size_t)b * H;
            if (hn) memcpy(hn + dst, w->lay[l].h + src, (size_t)H * sizeof(float));
            if (cn) memcpy(cn + dst, w->lay[l].c + src, (size_t)H * sizeof(float));
        }
    }
}
