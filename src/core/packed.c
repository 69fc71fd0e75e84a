/* Weights packed once per model and shared by its sessions.
 *
 * The recurrent kernels read W_hh (and, where the kernel level has a packed input projection, W_ih)
 * in packed layouts. One copy per model serves every session on it, on any thread: the first session
 * packs (under the model's mutex, so sessions may be created concurrently), later ones borrow, and the
 * last one to go frees the copy, so a model changed between sessions (training, then evaluation) is
 * packed afresh. The model must not change while a session exists (fastlstm.h). */
#include "internal.h"
#include "kernels/kernels.h"
#include "recurrent.h"

static void free_packs(fl_model *m) {
    if (!m->packs) return;
    for (int l = 0; l < m->arch.layers; l++) fl_rec_pack_free(&m->packs[l]);
    fl_free(m->packs);
    m->packs = NULL;
}

fl_status fl_model_packs_acquire(const fl_model *cm, const fl_rec_pack **out) {
    fl_model *m = (fl_model *)cm; /* only the pack fields change, under pack_mu */
    *out = NULL;
    fl_status st = FL_OK;
    pthread_mutex_lock(&m->pack_mu);
    if (m->pack_users == 0) {
        FL_ASSERT(!m->packs);
        const bool with_pk = fl_kernels_get()->gemm_pk != NULL;
        m->packs = fl_calloc((size_t)m->arch.layers, sizeof *m->packs);
        if (!m->packs) st = fl_fail(FL_ERR_NOMEM, "out of memory packing the model's weights");
        for (int l = 0; !st && l < m->arch.layers; l++) st = fl_rec_pack_layer(&m->layer[l], with_pk, &m->packs[l]);
        if (st) free_packs(m);
    }
    if (!st) {
        m->pack_users++;
        *out = m->packs;
    }
    pthread_mutex_unlock(&m->pack_mu);
    return st;
}

void fl_model_packs_release(const fl_model *cm) {
    fl_model *m = (fl_model *)cm;
    pthread_mutex_lock(&m->pack_mu);
    FL_ASSERT(m->pack_users > 0);
    if (--m->pack_users == 0) free_packs(m);
    pthread_mutex_unlock(&m->pack_mu);
}
