/* One direction of one LSTM layer in training (bptt_internal.h): the forward recurrence that
 * stores activations, its backward through time, and the time reversal a bidirectional layer's
 * reverse direction runs through (each sequence reversed over its own valid steps, so that the
 * reverse pass starts at the sequence's last step, as PyTorch's packed sequences do).
 *
 * A projection (LSTMP, nn.LSTM(proj_size=P)): the cell's output m_t = o * tanh(c_t) (B, H) goes
 * through W_hr to h_t (B, P), which feeds back into W_hh and up; backward sends the gradient of
 * h_t through W_hr^T to m_t at each step.
 *
 * Variable lengths: step t runs rows [0, act[t]) only (see bptt.c); padded cells get
 * h = c = tanh(c) = m = 0. Nothing here allocates. */
#include "bptt_internal.h"

#include "matgrad.h"

#include <math.h>
#include <string.h>

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

/* Backward of one cell step. act (B, 4H) activations; c_prev, tc (B, H); dyt (B, H), row stride
 * ldy, gradient from above for h_t; dh, dc (B, H) gradients flowing back from step t+1 (dc is
 * updated to the gradient for c_{t-1}; dh is read only). dAt (B, 4H) receives the pre-activation
 * gradients. */
static void cell_backward(int B, int H, const float *act, const float *c_prev, const float *tc,
                          const float *dyt, int ldy, const float *dh, float *dc, float *dAt) {
    const int G = 4 * H;
    for (int b = 0; b < B; b++) {
        const float *g = act + (size_t)b * G;
        const float *dyb = dyt + (size_t)b * ldy;
        float *d = dAt + (size_t)b * G;
        for (int j = 0; j < H; j++) {
            size_t k = (size_t)b * H + j;
            float ig = g[j], fg = g[H + j], gg = g[2 * H + j], og = g[3 * H + j];
            float t = tc[k];
            float dhv = dyb[j] + dh[k];
            float dcv = dc[k] + dhv * og * (1.0f - t * t);
            dc[k] = dcv * fg;
            d[j] = dcv * gg * ig * (1.0f - ig);
            d[H + j] = dcv * c_prev[k] * fg * (1.0f - fg);
            d[2 * H + j] = dcv * ig * (1.0f - gg * gg);
            d[3 * H + j] = dhv * t * og * (1.0f - og);
        }
    }
}

/* Zero rows of a (B, n) block: every row b < rows with len[b] <= t, and rows [rows, B). */
static void zero_padded(const fl_bptt *w, float *x, int n, int t, int rows) {
    for (int b = 0; b < rows; b++)
        if (w->len[b] <= t) memset(x + (size_t)b * n, 0, (size_t)n * sizeof(float));
    memset(x + (size_t)rows * n, 0, (size_t)(w->B - rows) * n * sizeof(float));
}

/* Variable lengths, after step t ran rows [0, n): zero h_t, c_t, tanh(c_t) (and m_t) of every row
 * past its length (rows [n, B) and any shorter row inside an unsorted prefix). */
static void mask_step(const fl_bptt *w, layer_ws *s, int t, int n) {
    const int B = w->B, H = w->arch.hidden, P = w->out;
    const size_t BH = (size_t)B * H;
    zero_padded(w, s->h + (size_t)(t + 1) * B * P, P, t, n);
    zero_padded(w, s->c + (size_t)(t + 1) * BH, H, t, n);
    zero_padded(w, s->tc + (size_t)t * BH, H, t, n);
    if (s->m) zero_padded(w, s->m + (size_t)t * BH, H, t, n);
}

void fl_bptt_dir_forward(fl_bptt *w, layer_ws *s, const fl_layer *ly, const float *X, int in_dim,
                         const float *h0, const float *c0, int idx) {
    const int B = w->B, T = w->T, H = w->arch.hidden, G = 4 * H, P = w->out;
    const size_t TB = (size_t)T * B, BH = (size_t)B * H, BP = (size_t)B * P;
    // gates (T*B, 4H) = X W_ih^T + b_ih + b_hh, for all steps at once
    fl_matg_forward(&ly->wih, (int)TB, X, in_dim, 0.0f, s->gates, G, s->aux_ih, w->scratch);
    for (size_t n = 0; n < TB; n++) {
        float *g = s->gates + n * G;
        for (int j = 0; j < G; j++) g[j] += ly->b_ih[j] + ly->b_hh[j];
    }
    if (h0) memcpy(s->h, h0 + (size_t)idx * BP, BP * sizeof(float));
    else memset(s->h, 0, BP * sizeof(float));
    if (c0) memcpy(s->c, c0 + (size_t)idx * BH, BH * sizeof(float));
    else memset(s->c, 0, BH * sizeof(float));
    const size_t Rhh = fl_matg_aux_per_row(&ly->whh), Rhr = s->m ? fl_matg_aux_per_row(&ly->whr) : 0;
    for (int t = 0; t < T; t++) {
        const int n = w->has_len ? w->act[t] : B; // rows [0, n) run this step
        float *gt = s->gates + (size_t)t * B * G, *ht = s->h + (size_t)(t + 1) * BP;
        // gates_t += h_{t-1} W_hh^T
        fl_matg_forward(&ly->whh, n, s->h + (size_t)t * BP, P, 1.0f, gt, G,
                        s->aux_hh ? s->aux_hh + (size_t)t * B * Rhh : NULL, w->scratch);
        cell_forward(n, H, gt, s->c + (size_t)t * BH, s->c + (size_t)(t + 1) * BH, s->tc + (size_t)t * BH,
                     s->m ? s->m + (size_t)t * BH : ht);
        if (s->m) // h_t (n, P) = m_t W_hr^T
            fl_matg_forward(&ly->whr, n, s->m + (size_t)t * BH, H, 0.0f, ht, P,
                            Rhr ? s->aux_hr + (size_t)t * B * Rhr : NULL, w->scratch);
        if (w->has_len) mask_step(w, s, t, n);
    }
}

void fl_bptt_dir_backward(fl_bptt *w, layer_ws *s, const fl_layer *ly, fl_layer *gl, const float *dY,
                          int ldy, const float *X, int in_dim, float *dX, size_t done) {
    const int B = w->B, T = w->T, H = w->arch.hidden, G = 4 * H, P = w->out;
    const size_t TB = (size_t)T * B, BH = (size_t)B * H, BP = (size_t)B * P;
    memset(w->dh, 0, BP * sizeof(float));
    memset(w->dc, 0, BH * sizeof(float));
    const size_t Rhh = fl_matg_aux_per_row(&ly->whh), Rhr = s->m ? fl_matg_aux_per_row(&ly->whr) : 0;
    for (int t = T - 1; t >= 0; t--) {
        const int n = w->has_len ? w->act[t] : B; // rows [n, B) are padded: zero gradients
        float *dAt = w->dA + (size_t)t * B * G;
        const float *dyt = dY + (size_t)t * B * ldy;
        if (!s->m) {
            cell_backward(n, H, s->gates + (size_t)t * B * G, s->c + (size_t)t * BH, s->tc + (size_t)t * BH, dyt,
                          ldy, w->dh, w->dc, dAt);
        } else { // dhp_t (n, P) = dY_t + dh;  dm (n, H) = dhp_t W_hr, the cell's output gradient
            float *dhp = w->dhp + (size_t)t * BP, *bhr = Rhr ? w->baux_hr + (size_t)t * B * Rhr : NULL;
            for (int b = 0; b < n; b++)
                for (int j = 0; j < P; j++) dhp[(size_t)b * P + j] = dyt[(size_t)b * ldy + j] + w->dh[(size_t)b * P + j];
            memset(dhp + (size_t)n * P, 0, (size_t)(B - n) * P * sizeof(float));
            if (Rhr) memset(bhr + (size_t)n * Rhr, 0, (size_t)(B - n) * Rhr * sizeof(float));
            fl_matg_backward_x(&ly->whr, n, dhp, P, 0.0f, w->dm, H, bhr, w->scratch);
            cell_backward(n, H, s->gates + (size_t)t * B * G, s->c + (size_t)t * BH, s->tc + (size_t)t * BH, w->dm,
                          H, w->zeros, w->dc, dAt);
        }
        if (n < B) {
            memset(dAt + (size_t)n * G, 0, (size_t)(B - n) * G * sizeof(float));
            if (Rhh) memset(w->baux + ((size_t)t * B + n) * Rhh, 0, (size_t)(B - n) * Rhh * sizeof(float));
        }
        // dh_{t-1} (B, P) = dA_t W_hh
        fl_matg_backward_x(&ly->whh, n, dAt, G, 0.0f, w->dh, P, Rhh ? w->baux + (size_t)t * B * Rhh : NULL,
                           w->scratch);
        if (w->progress && (t & 3) == 0) w->progress(done, w->progress_user); // let comm progress
    }
    // dW_hh += dA^T h_{t-1}, all steps at once; dW_hr += dhp^T m; biases
    fl_matg_backward_w(&ly->whh, &gl->whh, (int)TB, s->h, P, w->dA, G, s->aux_hh, w->baux, w->scratch);
    if (s->m) fl_matg_backward_w(&ly->whr, &gl->whr, (int)TB, s->m, H, w->dhp, P, s->aux_hr, w->baux_hr, w->scratch);
    for (size_t n = 0; n < TB; n++) {
        const float *d = w->dA + n * G;
        for (int j = 0; j < G; j++) {
            gl->b_ih[j] += d[j];
            gl->b_hh[j] += d[j];
        }
    }
    // dX (T*B, in) = dA W_ih (only baux when dX is NULL); dW_ih += dA^T X
    fl_matg_backward_x(&ly->wih, (int)TB, w->dA, G, 0.0f, dX, in_dim, w->baux, w->scratch);
    fl_matg_backward_w(&ly->wih, &gl->wih, (int)TB, X, in_dim, w->dA, G, s->aux_ih, w->baux, w->scratch);
}

void fl_bptt_reverse_rows(const fl_bptt *w, const float *src, int lds, float *dst, int ldd, int n, bool add) {
    const int B = w->B, T = w->T;
    for (int b = 0; b < B; b++) {
        const int L = w->has_len ? w->len[b] : T;
        for (int s = 0; s < L; s++) {
            const float *x = src + ((size_t)(L - 1 - s) * B + b) * lds;
            float *y = dst + ((size_t)s * B + b) * ldd;
            if (add)
                for (int k = 0; k < n; k++) y[k] += x[k];
            else
                memcpy(y, x, (size_t)n * sizeof(float));
        }
        for (int s = L; s < T && !add; s++) memset(dst + ((size_t)s * B + b) * ldd, 0, (size_t)n * sizeof(float));
    }
}
