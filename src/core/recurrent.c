/* Recurrent step: generic path through fl_mat_apply and the dispatched cell kernel. */
#include "recurrent.h"

#include "kernels/kernels.h"

#include <string.h>

struct fl_rec {
    const fl_layer *ly;
    int max_batch, threads;
    float *gates; /* (max_batch, 4H) */
    float *ws;    /* fl_mat_apply workspace */
    const fl_kernels *k;
};

fl_status fl_rec_create(const fl_layer *ly, int max_batch, int threads, fl_rec **out) {
    *out = NULL;
    fl_rec *r = fl_calloc(1, sizeof *r);
    if (!r) return fl_fail(FL_ERR_NOMEM, "out of memory creating a recurrent step");
    r->ly = ly;
    r->max_batch = max_batch;
    r->threads = threads;
    r->k = fl_kernels_get();
    r->gates = fl_calloc((size_t)max_batch * 4 * ly->hidden, sizeof(float));
    size_t wsn = fl_mat_apply_workspace(&ly->whh, max_batch);
    r->ws = wsn ? fl_calloc(wsn, sizeof(float)) : NULL;
    if (!r->gates || (wsn && !r->ws)) {
        fl_rec_free(r);
        return fl_fail(FL_ERR_NOMEM, "out of memory creating a recurrent step");
    }
    *out = r;
    return FL_OK;
}

void fl_rec_free(fl_rec *r) {
    if (!r) return;
    fl_free(r->gates);
    fl_free(r->ws);
    fl_free(r);
}

fl_status fl_rec_set_threads(fl_rec *r, int threads) {
    if (threads < 1) return fl_fail(FL_ERR_ARG, "threads must be >= 1, got %d", threads);
    r->threads = threads;
    return FL_OK;
}

void fl_rec_step(fl_rec *r, int B, const float *gx, int ldgx, const float *h_prev, int ldhp, float *c,
                 float *h_out, int ldho) {
    const int H = r->ly->hidden, G = 4 * H;
    // gates (B, 4H) = gx + h_prev W_hh^T
    for (int b = 0; b < B; b++) memcpy(r->gates + (size_t)b * G, gx + (size_t)b * ldgx, (size_t)G * sizeof(float));
    fl_mat_apply(&r->ly->whh, B, h_prev, ldhp, 1.0f, r->gates, G, r->ws);
    r->k->lstm_cell(B, H, r->gates, G, c, H, h_out, ldho);
}
