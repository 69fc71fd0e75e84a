/* Weights packed once per model and shared by its sessions, with one copy of W_hh in memory.
 *
 * The recurrent kernels read W_hh (and, where the kernel level has a packed input projection, W_ih
 * and the output head: head.c) in packed layouts. One copy per model serves every session on it, on
 * any thread: the first session packs (under the model's mutex, so sessions may be created
 * concurrently), later ones borrow, and the last one to go frees the copy, so a model changed between
 * sessions (training, then evaluation) is packed afresh. The model must not change while a session
 * exists (fastlstm.h).
 *
 * While the packed copy exists, the original of a dense W_hh (and of a packed W_ih or head; but a CP
 * W_ih's factors, a few hundred KB at most, stay) is not kept beside it: packing gives the original's memory pages back as it consumes them
 * (fl_rec_pack_layer, fl_head_pack_make with release), so a model runs in about its own size. The
 * originals are written back from the packed form (an exact copy, so
 * bit-identical) when the last session goes, or earlier when code that reads or writes the weights
 * holds them (fl_model_weights_hold: saving, cloning, decomposing, planning, training, evaluation).
 * Once written back within a packing cycle they stay until the cycle ends, so a model changed while
 * sessions exist (which fastlstm.h forbids) keeps its changed weights: the packed copy is then dropped
 * at the end, never written over them. Why this rather than mapping the file: it works for every model
 * (loaded from a file or memory, initialised, trained, decomposed), never depends on the file staying
 * unchanged on disk while the model lives, and the weights are only ever restored from the copy made
 * of them, so nothing can revert a model to older values. */
#define _DEFAULT_SOURCE /* madvise, MADV_DONTNEED */
#include "internal.h"
#include "head.h"
#include "kernels/kernels.h"
#include "recurrent.h"

#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

void fl_pages_release(const void *limit, const void *lo, const void *hi) {
    const long page = sysconf(_SC_PAGESIZE);
    const uintptr_t P = page > 0 ? (uintptr_t)page : 4096;
    uintptr_t a = (uintptr_t)lo & ~(P - 1);
    if (a < (uintptr_t)limit) a = (uintptr_t)limit;
    a = (a + P - 1) & ~(P - 1);
    const uintptr_t b = (uintptr_t)hi & ~(P - 1);
    /* A failure (EAGAIN under memory pressure) only leaves the pages in place: they hold the right
     * values, or values about to be written back. */
    if (b > a) (void)madvise((void *)a, b - a, MADV_DONTNEED);
}

/* Write every released original back from m->packs; consume: the packs are about to be freed. */
static void restore(fl_model *m, bool consume) {
    for (int l = 0; l < m->arch.layers * fl_arch_dirs(&m->arch); l++) fl_rec_unpack_layer(&m->packs[l], &m->layer[l], consume);
    if (m->hpack) fl_head_unpack(m->hpack, &m->head, consume);
    m->weights_released = false;
}

static void free_packs(fl_model *m) {
    if (m->packs)
        for (int l = 0; l < m->arch.layers * fl_arch_dirs(&m->arch); l++) fl_rec_pack_free(&m->packs[l]);
    fl_free(m->packs);
    m->packs = NULL;
    fl_head_pack_free(m->hpack);
    fl_free(m->hpack);
    m->hpack = NULL;
}

fl_status fl_model_packs_acquire(const fl_model *cm, const fl_rec_pack **out, const fl_head_pack **head) {
    fl_model *m = (fl_model *)cm; /* only the pack fields and released pages change, under pack_mu */
    *out = NULL;
    *head = NULL;
    fl_status st = FL_OK;
    pthread_mutex_lock(&m->pack_mu);
    if (m->pack_users == 0) {
        FL_ASSERT(!m->packs && !m->hpack && !m->weights_released);
        const bool with_pk = fl_kernels_get()->gemm_pk != NULL;
        const bool release = m->weight_holds == 0;
        m->packs = fl_calloc((size_t)m->arch.layers * fl_arch_dirs(&m->arch), sizeof *m->packs);
        m->hpack = fl_calloc(1, sizeof *m->hpack);
        if (!m->packs || !m->hpack) st = fl_fail(FL_ERR_NOMEM, "out of memory packing the model's weights");
        int l = 0;
        for (; !st && l < m->arch.layers * fl_arch_dirs(&m->arch); l++) { /* every layer direction */
            st = fl_rec_pack_layer(&m->layer[l], with_pk, release, &m->packs[l]);
            const bool wih_released = m->packs[l].pk && m->layer[l].wih.method != FL_METHOD_CP; /* CP's are kept */
            if (!st && release && (m->layer[l].whh.method == FL_METHOD_DENSE || wih_released)) m->weights_released = true;
        }
        if (!st && m->arch.head != FL_HEAD_NONE) { /* the head, last: a failure leaves it all NULL */
            st = fl_head_pack_make(&m->head, with_pk, release, m->hpack);
            if (!st && release && m->hpack->pk) m->weights_released = true;
        }
        if (st) {
            if (m->weights_released) restore(m, true); /* what was packed so far; the failed one is all NULL */
            free_packs(m);
        }
    }
    if (!st) {
        m->pack_users++;
        *out = m->packs;
        *head = m->hpack;
    }
    pthread_mutex_unlock(&m->pack_mu);
    return st;
}

void fl_model_packs_release(const fl_model *cm) {
    fl_model *m = (fl_model *)cm;
    pthread_mutex_lock(&m->pack_mu);
    FL_ASSERT(m->pack_users > 0);
    if (--m->pack_users == 0) {
        if (m->weights_released) restore(m, true);
        free_packs(m);
    }
    pthread_mutex_unlock(&m->pack_mu);
}

void fl_model_weights_hold(const fl_model *cm) {
    fl_model *m = (fl_model *)cm;
    pthread_mutex_lock(&m->pack_mu);
    if (m->weights_released) restore(m, false); /* sessions still read the packs */
    m->weight_holds++;
    pthread_mutex_unlock(&m->pack_mu);
}

void fl_model_weights_unhold(const fl_model *cm) {
    fl_model *m = (fl_model *)cm;
    pthread_mutex_lock(&m->pack_mu);
    FL_ASSERT(m->weight_holds > 0);
    m->weight_holds--;
    pthread_mutex_unlock(&m->pack_mu);
}

bool fl_model_weights_released(const fl_model *cm) {
    fl_model *m = (fl_model *)cm;
    pthread_mutex_lock(&m->pack_mu);
    const bool r = m->weights_released;
    pthread_mutex_unlock(&m->pack_mu);
    return r;
}
