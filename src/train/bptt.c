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
 * Without lengths act[] is not used and the loops are those of equal-length batches.
 *
 * Each direction of each layer runs in bptt_dir.c. A bidirectional layer runs its reverse
 * direction on its input with each sequence's valid steps reversed, and writes [forward, reverse]
 * of every step into cat (T, B, 2P); its backward reverses the reverse half of the output gradient
 * the same way and adds the un-reversed input gradient. Backward takes the reverse direction first,
 * since its parameters follow the forward direction's in the block (the overlap hook reports
 * suffixes). */
#include "bptt_internal.h"

#include "matgrad.h"

#include <math.h>
#include <string.h>

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
    w->dirs = fl_arch_dirs(a);
    w->out = fl_arch_out(a);
    w->max_batch = max_batch;
    w->max_seq = max_seq;
    const size_t B = (size_t)max_batch, H = (size_t)a->hidden, G = 4 * H, D = (size_t)a->input;
    const size_t P = (size_t)w->out, V = (size_t)a->head_out, W = (size_t)w->dirs * P;
    const size_t nl = (size_t)a->layers * w->dirs;
    size_t rhr = 0;
    bool ok = true;
    w->lay = fl_calloc(nl, sizeof *w->lay);
    if (!w->lay) ok = false;
    size_t rmax = fl_matg_aux_per_row(&m->head), scratch = 0;
    for (size_t l = 0; ok && l < nl; l++) {
        layer_ws *s = &w->lay[l];
        const fl_layer *ly = &m->layer[l];
        s->gates = falloc(TB * G, &ok);
        s->c = falloc(TB * H + B * H, &ok);
        s->tc = falloc(TB * H, &ok);
        s->h = falloc(TB * P + B * P, &ok);
        if (a->proj > 0) {
            s->m = falloc(TB * H, &ok);
            s->aux_hr = falloc(TB * fl_matg_aux_per_row(&ly->whr), &ok);
            rhr = max_sz(rhr, fl_matg_aux_per_row(&ly->whr));
        }
        s->aux_ih = falloc(TB * fl_matg_aux_per_row(&ly->wih), &ok);
        s->aux_hh = falloc(TB * fl_matg_aux_per_row(&ly->whh), &ok);
        if (l % (size_t)w->dirs == 0) { /* the layer's output */
            s->y = falloc(TB * W, &ok);
            s->mask = falloc(TB * W, &ok);
            if (w->dirs == 2) s->cat = falloc(TB * W, &ok);
        } else {
            s->xr = falloc(TB * (size_t)ly->in, &ok);
        }
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
        w->xlast = falloc(B * W, &ok);
        w->x0 = falloc(TB * D, &ok);
        w->logits = falloc(head_rows * V, &ok);
        w->aux_head = falloc(head_rows * fl_matg_aux_per_row(&m->head), &ok);
        w->dA = falloc(TB * G, &ok);
        w->dy = falloc(TB * max_sz(D, W), &ok);
        w->dx = falloc(TB * max_sz(D, W), &ok);
        if (w->dirs == 2) {
            w->dyr = falloc(TB * P, &ok);
            w->dxr = falloc(TB * max_sz(D, W), &ok);
        }
        w->baux = falloc(TB * rmax, &ok);
        w->scratch = falloc(scratch, &ok);
        w->dh = falloc(B * W, &ok);
        w->dc = falloc(B * H, &ok);
        if (a->proj > 0) {
            w->dhp = falloc(TB * P, &ok);
            w->baux_hr = falloc(TB * rhr, &ok);
            w->dm = falloc(B * H, &ok);
            w->zeros = falloc(B * H, &ok);
        }
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
        for (int l = 0; l < w->arch.layers * w->dirs; l++) {
            layer_ws *s = &w->lay[l];
            fl_free(s->gates);
            fl_free(s->c);
            fl_free(s->tc);
            fl_free(s->h);
            fl_free(s->m);
            fl_free(s->aux_hr);
            fl_free(s->aux_ih);
            fl_free(s->aux_hh);
            fl_free(s->xr);
            fl_free(s->cat);
            fl_free(s->y);
            fl_free(s->mask);
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
    fl_free(w->dyr);
    fl_free(w->dxr);
    fl_free(w->baux);
    fl_free(w->scratch);
    fl_free(w->dh);
    fl_free(w->dc);
    fl_free(w->dhp);
    fl_free(w->baux_hr);
    fl_free(w->dm);
    fl_free(w->zeros);
    fl_free(w);
}

/* Output of layer l as seen by the next layer / head: (T, B, W), W = dirs * P. */
static const float *layer_out(const fl_bptt *w, int l) {
    const layer_ws *s = &w->lay[l * w->dirs];
    return s->dropped ? s->y : s->cat ? s->cat : s->h + (size_t)w->B * w->out;
}

fl_status fl_bptt_forward(fl_bptt *w, const fl_model *m, const fl_bptt_batch *in, float dropout,
                          fl_rng *rng, double *loss, long *correct) {
    const fl_arch *a = &m->arch;
    const int B = in->batch, T = in->seq, P = w->out, D = a->input, V = a->head_out;
    const int dirs = w->dirs, W = dirs * P;
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
    const size_t TB = (size_t)T * B, BP = (size_t)B * P;
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
        layer_ws *s = &w->lay[l * dirs];
        fl_bptt_dir_forward(w, s, &m->layer[l * dirs], X, in_dim, in->h0, in->c0, l * dirs);
        if (dirs == 2) { // reverse direction on the reversed input; out (T, B, 2H) = [fwd, rev]
            layer_ws *r = &w->lay[l * dirs + 1];
            fl_bptt_reverse_rows(w, X, in_dim, r->xr, in_dim, in_dim, false);
            fl_bptt_dir_forward(w, r, &m->layer[l * dirs + 1], r->xr, in_dim, in->h0, in->c0, l * dirs + 1);
            for (size_t n = 0; n < TB; n++)
                memcpy(s->cat + n * W, s->h + BP + n * P, (size_t)P * sizeof(float));
            fl_bptt_reverse_rows(w, r->h + BP, P, s->cat + P, W, P, false);
        }
        s->dropped = dropout > 0 && rng;
        if (s->dropped) {
            const float keep = 1.0f / (1.0f - dropout);
            const float *hs = dirs == 2 ? s->cat : s->h + BP;
            for (size_t k = 0; k < TB * W; k++) {
                s->mask[k] = fl_rng_uniform(rng) < dropout ? 0.0f : keep;
                s->y[k] = hs[k] * s->mask[k];
            }
        }
        X = layer_out(w, l);
        in_dim = W;
    }

    // head: logits (rows, V) from every step (LM) or the last (valid) step (classifier)
    const float *Xh = per_step ? X : X + (size_t)(T - 1) * B * W;
    if (!per_step && w->has_len) {
        for (int b = 0; b < B; b++)
            memcpy(w->xlast + (size_t)b * W, X + ((size_t)(w->len[b] - 1) * B + b) * W, (size_t)W * sizeof(float));
        Xh = w->xlast;
    }
    fl_matg_forward(&m->head, (int)rows, Xh, W, 0.0f, w->logits, V, w->aux_head, w->scratch);
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
    const int B = w->B, T = w->T, P = w->out, D = a->input, V = a->head_out;
    const int dirs = w->dirs, W = dirs * P;
    const size_t TB = (size_t)T * B;
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
    // head: dY_top (T, B, W); only the last (valid) step is nonzero for a classifier
    const float *Xtop = layer_out(w, a->layers - 1);
    float *dY = w->dy, *dX = w->dx;
    if (!per_step) memset(dY, 0, TB * W * sizeof(float));
    const size_t off = per_step ? 0 : (size_t)(T - 1) * B * W;
    if (!per_step && w->has_len) { // through dh (B, W) as scratch, to each row's last valid step
        fl_matg_backward_x(&m->head, B, w->logits, V, 0.0f, w->dh, W, w->baux, w->scratch);
        fl_matg_backward_w(&m->head, &grad->head, B, w->xlast, W, w->logits, V, w->aux_head, w->baux,
                           w->scratch);
        for (int b = 0; b < B; b++)
            memcpy(dY + ((size_t)(w->len[b] - 1) * B + b) * W, w->dh + (size_t)b * W, (size_t)W * sizeof(float));
    } else {
        fl_matg_backward_x(&m->head, (int)rows, w->logits, V, 0.0f, dY + off, W, w->baux, w->scratch);
        fl_matg_backward_w(&m->head, &grad->head, (int)rows, Xtop + off, W, w->logits, V, w->aux_head,
                           w->baux, w->scratch);
    }
    if (w->progress) w->progress(mat_offset(grad, &grad->head), w->progress_user);
    size_t done = mat_offset(grad, &grad->head); // grad[done, n) is final

    for (int l = a->layers - 1; l >= 0; l--) {
        layer_ws *s = &w->lay[l * dirs];
        if (s->dropped)
            for (size_t k = 0; k < TB * W; k++) dY[k] *= s->mask[k];
        // dX (T*B, in) = the layer input's gradient (not needed for raw features)
        const float *X = l == 0 ? w->x0 : layer_out(w, l - 1);
        const int in_dim = l == 0 ? D : W;
        const bool need_dx = l > 0 || a->vocab > 0;
        if (dirs == 2) { // reverse direction first: its parameters follow the forward direction's
            layer_ws *r = &w->lay[l * dirs + 1];
            fl_layer *gr = &grad->layer[l * dirs + 1];
            fl_bptt_reverse_rows(w, dY + P, W, w->dyr, P, P, false);
            fl_bptt_dir_backward(w, r, &m->layer[l * dirs + 1], gr, w->dyr, P, r->xr, in_dim,
                                 need_dx ? w->dxr : NULL, done);
            done = mat_offset(grad, &gr->wih);
            if (w->progress) w->progress(done, w->progress_user);
        }
        fl_layer *gl = &grad->layer[l * dirs];
        fl_bptt_dir_backward(w, s, &m->layer[l * dirs], gl, dY, W, X, in_dim, need_dx ? dX : NULL, done);
        if (dirs == 2 && need_dx) fl_bptt_reverse_rows(w, w->dxr, in_dim, dX, in_dim, in_dim, true);
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
    const int B = w->B, H = w->arch.hidden, P = w->out;
    const size_t BH = (size_t)B * H, BP = (size_t)B * P;
    for (int l = 0; l < w->arch.layers * w->dirs; l++) { // h (L*dirs, B, P), c (L*dirs, B, H), row l*dirs + d
        if (!w->has_len) { // every row ends at step T - 1
            if (hn) memcpy(hn + l * BP, w->lay[l].h + (size_t)w->T * BP, BP * sizeof(float));
            if (cn) memcpy(cn + l * BH, w->lay[l].c + (size_t)w->T * BH, BH * sizeof(float));
            continue;
        }
        for (int b = 0; b < B; b++) { // state after step len[b] - 1: index len[b] of h / c
            const size_t k = (size_t)w->len[b];
            if (hn) memcpy(hn + l * BP + (size_t)b * P, w->lay[l].h + k * BP + (size_t)b * P, (size_t)P * sizeof(float));
            if (cn) memcpy(cn + l * BH + (size_t)b * H, w->lay[l].c + k * BH + (size_t)b * H, (size_t)H * sizeof(float));
        }
    }
}
