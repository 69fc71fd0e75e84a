/* The trainer: batches from a data set, forward/backward (bptt.c), clipping, optimiser step
 * (optim.c), epochs with validation and learning-rate decay on plateau, checkpoints
 * (checkpoint.c), and evaluation. A classification set with lengths gives masked variable-length
 * batches: each batch sorted by decreasing length (fl_dataset_gather), the loss the mean over its
 * sequences as before, so a data-parallel slice still weighs n_r / N of the global batch (mpi.c). */
#include "train_internal.h"
#include "lstm_ext.h"
#include "blas_threads.h"

#include <math.h>
#include <string.h>
#include <time.h>

fl_train_opts fl_train_opts_default(void) {
    return (fl_train_opts){.optim = FL_OPTIM_ADAM, .lr = 1e-3f, .momentum = 0.0f, .beta1 = 0.9f,
                           .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.0f, .clip = 0.0f,
                           .dropout = 0.0f, .batch = 32, .bptt = 35, .lr_decay = 1.0f, .patience = 0,
                           .freeze_dense = 0, .shuffle = 1, .seed = 1};
}

static fl_status check_opts(const fl_train_opts *o) {
    if (o->optim != FL_OPTIM_SGD && o->optim != FL_OPTIM_ADAM)
        return fl_fail(FL_ERR_ARG, "unknown optimiser %d", (int)o->optim);
    if (!(o->lr > 0) || !isfinite(o->lr)) return fl_fail(FL_ERR_ARG, "learning rate must be > 0, got %g", o->lr);
    if (!(o->momentum >= 0 && o->momentum < 1)) return fl_fail(FL_ERR_ARG, "momentum must be in [0, 1), got %g", o->momentum);
    if (!(o->beta1 >= 0 && o->beta1 < 1 && o->beta2 >= 0 && o->beta2 < 1))
        return fl_fail(FL_ERR_ARG, "Adam betas must be in [0, 1)");
    if (!(o->eps > 0)) return fl_fail(FL_ERR_ARG, "Adam eps must be > 0");
    if (!(o->weight_decay >= 0)) return fl_fail(FL_ERR_ARG, "weight decay must be >= 0");
    if (!(o->clip >= 0)) return fl_fail(FL_ERR_ARG, "clip must be >= 0 (0: off), got %g", o->clip);
    if (!(o->dropout >= 0 && o->dropout < 1)) return fl_fail(FL_ERR_ARG, "dropout must be in [0, 1), got %g", o->dropout);
    if (o->batch < 1 || o->batch > 65536) return fl_fail(FL_ERR_ARG, "batch must be in [1, 65536], got %d", o->batch);
    if (o->bptt < 1 || o->bptt > 100000) return fl_fail(FL_ERR_ARG, "bptt must be in [1, 100000], got %d", o->bptt);
    if (!(o->lr_decay > 0 && o->lr_decay <= 1)) return fl_fail(FL_ERR_ARG, "lr decay must be in (0, 1], got %g", o->lr_decay);
    if (o->patience < 0) return fl_fail(FL_ERR_ARG, "patience must be >= 0");
    return FL_OK;
}

/* What training does not cover: a bidirectional language model (its reverse direction would read
 * the tokens it predicts, and has no state to carry between windows). The carried LM state keeps
 * (L, batch, H) buffers; with a projection h uses the first L * batch * P floats as (L, batch, P). */
static fl_status refuse_arch(const fl_model *m) {
    if (m->arch.bidirectional && m->arch.head == FL_HEAD_PER_STEP)
        return fl_fail(FL_ERR_UNSUPPORTED, "a bidirectional language model cannot be trained or evaluated on a "
                       "token stream (its reverse direction reads the tokens it predicts); train a classifier");
    return FL_OK;
}

static bool is_factor(const char *name) {
    size_t n = strlen(name);
    return n > 2 && name[n - 2] == '.' && strchr("UVABC", name[n - 1]);
}

fl_status fl_trainer_create(fl_model *m, const fl_train_opts *o, fl_trainer **out) {
    if (!m || !out) return fl_fail(FL_ERR_ARG, "NULL argument to fl_trainer_create");
    *out = NULL;
    fl_train_opts def = fl_train_opts_default();
    if (!o) o = &def;
    fl_status st = check_opts(o);
    if (!st) st = fl_lstm_ext_refuse(m, "training");
    if (st) return st;
    if (m->arch.head == FL_HEAD_NONE)
        return fl_fail(FL_ERR_UNSUPPORTED, "training needs a model with a head (classifier or language model)");
    if ((st = refuse_arch(m))) return st;
    fl_trainer *t = fl_calloc(1, sizeof *t);
    if (!t) return fl_fail(FL_ERR_NOMEM, "out of memory creating a trainer");
    t->m = m;
    fl_model_weights_hold(m); /* read and written outside any session for the trainer's life (packed.c) */
    t->o = *o;
    t->lr = o->lr;
    t->best = INFINITY;
    fl_rng_seed(&t->rng, o->seed);
    t->shard_count = 1;
    size_t nmat = fl_model_num_matrices(m);
    fl_mat_spec *specs = fl_calloc(nmat, sizeof *specs);
    if (!specs) {
        fl_trainer_free(t);
        return fl_fail(FL_ERR_NOMEM, "out of memory creating a trainer");
    }
    for (size_t i = 0; i < nmat; i++) specs[i] = fl_model_mat_spec(m, i);
    st = fl_model_create(&m->arch, specs, &t->grad);
    fl_free(specs);
    if (st) {
        fl_trainer_free(t);
        return st;
    }
    t->s1 = fl_calloc(m->n_params, sizeof(float));
    t->s2 = o->optim == FL_OPTIM_ADAM ? fl_calloc(m->n_params, sizeof(float)) : NULL;
    t->trainable = fl_calloc(m->n_tensors, sizeof(bool));
    size_t state = (size_t)m->arch.layers * o->batch * m->arch.hidden;
    if (m->arch.head == FL_HEAD_PER_STEP) {
        t->h = fl_calloc(state, sizeof(float));
        t->c = fl_calloc(state, sizeof(float));
    }
    if (!t->s1 || (o->optim == FL_OPTIM_ADAM && !t->s2) || !t->trainable ||
        (m->arch.head == FL_HEAD_PER_STEP && (!t->h || !t->c))) {
        fl_trainer_free(t);
        return fl_fail(FL_ERR_NOMEM, "out of memory creating a trainer");
    }
    size_t ntrain = 0;
    for (size_t k = 0; k < m->n_tensors; k++) {
        t->trainable[k] = !o->freeze_dense || is_factor(m->tensors[k].name);
        ntrain += t->trainable[k];
    }
    if (ntrain == 0) {
        fl_trainer_free(t);
        return fl_fail(FL_ERR_ARG, "freeze_dense: the model has no decomposed matrices to train");
    }
    *out = t;
    return FL_OK;
}

void fl_trainer_free(fl_trainer *t) {
    if (!t) return;
    if (t->m) fl_model_weights_unhold(t->m);
    fl_model_free(t->grad);
    fl_free(t->s1);
    fl_free(t->s2);
    fl_free(t->trainable);
    fl_bptt_free(t->ws);
    fl_free(t->perm);
    fl_free(t->h);
    fl_free(t->c);
    fl_free(t->sh);
    fl_free(t->sc);
    fl_free(t->xb);
    fl_free(t->tb);
    fl_free(t->yb);
    fl_free(t->lb);
    fl_free(t->rows);
    fl_free(t);
}

fl_status fl_trainer_set_threads(fl_trainer *t, int threads) {
    if (!t || threads < 1) return fl_fail(FL_ERR_ARG, "threads must be >= 1, got %d", threads);
    fl_blas_set_threads(threads); /* the BLAS thread rule: core/blas_threads.h */
    return FL_OK;
}

void fl_trainer_set_grad_hook(fl_trainer *t, fl_grad_hook fn, void *user) {
    if (!t) return;
    t->hook = fn;
    t->hook_user = user;
}

void fl_trainer_set_shard(fl_trainer *t, int rank, int count) {
    t->shard_rank = count > 1 ? rank : 0;
    t->shard_count = count > 1 ? count : 1;
}

/* This process's slice [*lo, *lo + *n) of a global batch of B items. */
static void shard_range(const fl_trainer *t, int B, int *lo, int *n) {
    if (t->shard_count <= 1) {
        *lo = 0;
        *n = B;
        return;
    }
    const long r = t->shard_rank, k = t->shard_count;
    *lo = (int)((long)B * r / k);
    *n = (int)((long)B * (r + 1) / k) - *lo;
}

long fl_trainer_steps(const fl_trainer *t) { return t->step; }
int fl_trainer_epoch(const fl_trainer *t) { return t->epoch; }
double fl_trainer_lr(const fl_trainer *t) { return t->lr; }

fl_status fl_trainer_continue_from(fl_trainer *t, const fl_trainer *from) {
    if (!t || !from) return fl_fail(FL_ERR_ARG, "NULL argument to fl_trainer_continue_from");
    const fl_arch *a = &t->m->arch, *b = &from->m->arch;
    if (t->o.batch != from->o.batch || t->o.bptt != from->o.bptt || a->layers != b->layers ||
        a->hidden != b->hidden || a->proj != b->proj || a->head != b->head)
        return fl_fail(FL_ERR_ARG, "cannot continue a trainer of batch %d, bptt %d, %d x %d layers from one of batch "
                       "%d, bptt %d, %d x %d", t->o.batch, t->o.bptt, a->layers, a->hidden, from->o.batch,
                       from->o.bptt, b->layers, b->hidden);
    if (from->perm_n != t->perm_n) {
        uint32_t *perm = from->perm_n ? fl_malloc(from->perm_n * sizeof(uint32_t)) : NULL;
        if (from->perm_n && !perm) return fl_fail(FL_ERR_NOMEM, "out of memory copying a sequence order");
        fl_free(t->perm);
        t->perm = perm;
        t->perm_n = from->perm_n;
    }
    if (t->perm_n) memcpy(t->perm, from->perm, t->perm_n * sizeof(uint32_t));
    if (t->h) { // h, c: (L, batch, H), the carried LM state
        const size_t state = (size_t)a->layers * t->o.batch * a->hidden;
        memcpy(t->h, from->h, state * sizeof(float));
        memcpy(t->c, from->c, state * sizeof(float));
    }
    t->rng = from->rng;
    t->epoch = from->epoch;
    t->step = from->step;
    t->pos = from->pos;
    t->epoch_done = from->epoch_done;
    t->lr = t->o.lr * (from->lr / from->o.lr);
    t->best = from->best;
    t->bad = from->bad;
    t->ep_loss = from->ep_loss;
    t->ep_n = from->ep_n;
    return FL_OK;
}

/* Make sure the workspace and batch buffers fit batch x seq. */
static fl_status ensure_ws(fl_bptt **ws, int *wb, int *wt, const fl_model *m, int batch, int seq) {
    if (*ws && *wb >= batch && *wt >= seq) return FL_OK;
    fl_bptt_free(*ws);
    *ws = NULL;
    fl_status st = fl_bptt_create(m, batch, seq, ws);
    if (st) return st;
    *wb = batch;
    *wt = seq;
    return FL_OK;
}

static fl_status ensure_bufs(fl_trainer *t, size_t nx, size_t nt) {
    if (nx > t->buf_cap_x) {
        fl_free(t->xb);
        t->xb = fl_malloc(nx * sizeof(float));
        t->buf_cap_x = t->xb ? nx : 0;
        if (!t->xb) return fl_fail(FL_ERR_NOMEM, "out of memory for a batch");
    }
    if (nt > t->buf_cap_t) {
        fl_free(t->tb);
        fl_free(t->yb);
        t->tb = fl_malloc(nt * sizeof(int32_t));
        t->yb = fl_malloc(nt * sizeof(int32_t));
        t->buf_cap_t = t->tb && t->yb ? nt : 0;
        if (!t->tb || !t->yb) return fl_fail(FL_ERR_NOMEM, "out of memory for a batch");
    }
    return FL_OK;
}

/* LM: streams of S tokens each; windows of up to bptt steps over S - 1 targets. */
static fl_status lm_geometry(const fl_dataset *d, int B, int bptt, size_t *S, long *windows) {
    *S = d->n / (size_t)B;
    if (*S < 2)
        return fl_fail(FL_ERR_DATA, "%zu tokens are too few for %d parallel streams (need >= 2 per stream)", d->n, B);
    *windows = (long)((*S - 1 + (size_t)bptt - 1) / (size_t)bptt);
    return FL_OK;
}

fl_status fl_trainer_epoch_steps(fl_trainer *t, const fl_dataset *d, long *steps) {
    fl_status st = fl_dataset_check_model(d, t->m, "training data");
    if (st) return st;
    if (d->kind == DS_CLASSIFY) {
        *steps = (long)((d->n + (size_t)t->o.batch - 1) / (size_t)t->o.batch);
        return FL_OK;
    }
    size_t S;
    return lm_geometry(d, t->o.batch, t->o.bptt, &S, steps);
}

fl_status fl_trainer_step(fl_trainer *t, const fl_dataset *d, double *loss_out) {
    if (!t || !d) return fl_fail(FL_ERR_ARG, "NULL argument to fl_trainer_step");
    long nsteps;
    fl_status st = fl_trainer_epoch_steps(t, d, &nsteps);
    if (st) return st;
    fl_model *m = t->m;
    const int L = m->arch.layers, H = m->arch.hidden, P = fl_arch_out(&m->arch);
    int B = t->o.batch, lo, Bl; /* global batch; this process's slice [lo, lo + Bl) of it */
    fl_bptt_batch in = {0};
    t->epoch_done = false;
    if (t->pos >= nsteps) t->pos = 0; /* data set changed size: start a new epoch */
    if (t->pos == 0) {
        t->ep_loss = 0;
        t->ep_n = 0;
    }
    if (d->kind == DS_CLASSIFY) {
        if (t->perm_n != d->n) {
            fl_free(t->perm);
            t->perm = fl_malloc(d->n * sizeof(uint32_t));
            t->perm_n = t->perm ? d->n : 0;
            if (!t->perm) return fl_fail(FL_ERR_NOMEM, "out of memory for a shuffle of %zu sequences", d->n);
            for (size_t i = 0; i < d->n; i++) t->perm[i] = (uint32_t)i;
        }
        if (t->pos == 0 && t->o.shuffle)
            for (size_t i = d->n - 1; i > 0; i--) { /* Fisher-Yates */
                size_t j = (size_t)(fl_rng_next(&t->rng) % (uint64_t)(i + 1));
                uint32_t tmp = t->perm[i];
                t->perm[i] = t->perm[j];
                t->perm[j] = tmp;
            }
        size_t first = (size_t)t->pos * B;
        if (d->n - first < (size_t)B) B = (int)(d->n - first);
        shard_range(t, B, &lo, &Bl);
        if ((st = ensure_ws(&t->ws, &t->ws_batch, &t->ws_seq, m, t->o.batch, d->seq))) return st;
        if ((st = ensure_bufs(t, (size_t)d->seq * B * (d->dim > 0 ? d->dim : 1), (size_t)d->seq * B))) return st;
        if (!t->rows) {
            t->rows = fl_malloc((size_t)t->o.batch * sizeof(uint32_t));
            t->lb = fl_malloc((size_t)t->o.batch * sizeof(int32_t));
            if (!t->rows || !t->lb) return fl_fail(FL_ERR_NOMEM, "out of memory for a batch");
        }
        memcpy(t->rows, t->perm + first + lo, (size_t)Bl * sizeof(uint32_t));
        int T = d->seq;
        fl_dataset_gather(d, m, t->rows, Bl, t->xb, t->tb, t->yb, t->lb, &T);
        in = (fl_bptt_batch){Bl, T, d->dim > 0 ? t->xb : NULL, d->dim > 0 ? NULL : t->tb, t->yb, NULL, NULL,
                             d->lens ? t->lb : NULL};
    } else {
        size_t S;
        long windows;
        if ((st = lm_geometry(d, B, t->o.bptt, &S, &windows))) return st;
        shard_range(t, B, &lo, &Bl); /* streams [lo, lo + Bl); state (L, Bl, H) */
        if (t->pos == 0) {
            memset(t->h, 0, (size_t)L * B * H * sizeof(float));
            memset(t->c, 0, (size_t)L * B * H * sizeof(float));
        }
        size_t start = (size_t)t->pos * t->o.bptt;
        int T = (int)((S - 1 - start) < (size_t)t->o.bptt ? S - 1 - start : (size_t)t->o.bptt);
        if ((st = ensure_ws(&t->ws, &t->ws_batch, &t->ws_seq, m, Bl > 0 ? Bl : 1, t->o.bptt))) return st;
        if ((st = ensure_bufs(t, 1, (size_t)t->o.bptt * B))) return st;
        for (int s = 0; s < T; s++)
            for (int b = 0; b < Bl; b++) {
                size_t k = (size_t)(lo + b) * S + start + s;
                t->tb[(size_t)s * Bl + b] = d->tokens[k];
                t->yb[(size_t)s * Bl + b] = d->tokens[k + 1];
            }
        in = (fl_bptt_batch){Bl, T, NULL, t->tb, t->yb, t->h, t->c, NULL};
        if (t->shard_count > 1) { /* the slice's state, packed: (L, Bl, H) out of (L, B, H) */
            if (!t->sh) {
                t->sh = fl_malloc((size_t)L * B * H * sizeof(float));
                t->sc = fl_malloc((size_t)L * B * H * sizeof(float));
                if (!t->sh || !t->sc) return fl_fail(FL_ERR_NOMEM, "out of memory for the LM state");
            }
            for (int l = 0; l < L; l++) { /* h (L, B, P), c (L, B, H) */
                memcpy(t->sh + (size_t)l * Bl * P, t->h + ((size_t)l * B + lo) * P, (size_t)Bl * P * sizeof(float));
                memcpy(t->sc + (size_t)l * Bl * H, t->c + ((size_t)l * B + lo) * H, (size_t)Bl * H * sizeof(float));
            }
            in.h0 = t->sh;
            in.c0 = t->sc;
        }
    }
    t->shard_lo = lo;
    t->shard_n = Bl;
    t->shard_total = B;
    t->data_n = d->n;

    /* Sharded with dropout: masks from a per-rank stream; the shared RNG (shuffling) advances by
     * one draw on every rank alike. */
    fl_rng drop_rng, *rng = t->o.dropout > 0 ? &t->rng : NULL;
    if (rng && t->shard_count > 1) {
        fl_rng_seed(&drop_rng, fl_rng_next(&t->rng) + 0x9E3779B97F4A7C15ull * (uint64_t)(t->shard_rank + 1));
        rng = &drop_rng;
    }
    double loss = 0;
    memset(t->grad->params, 0, m->n_params * sizeof(float));
    if (Bl > 0) { /* an empty slice contributes a zero gradient */
        if ((st = fl_bptt_forward(t->ws, m, &in, t->o.dropout, rng, &loss, NULL))) return st;
        /* With a hook (e.g. an allreduce) every process must reach it: check the combined loss. */
        if (!isfinite(loss) && !t->hook)
            return fl_fail(FL_ERR_NUMERIC, "training loss is %g at step %ld; try a lower learning rate or --clip",
                           loss, t->step);
        if (d->kind == DS_LM && t->shard_count > 1) {
            fl_bptt_final_state(t->ws, t->sh, t->sc);
            for (int l = 0; l < L; l++) {
                memcpy(t->h + ((size_t)l * B + lo) * P, t->sh + (size_t)l * Bl * P, (size_t)Bl * P * sizeof(float));
                memcpy(t->c + ((size_t)l * B + lo) * H, t->sc + (size_t)l * Bl * H, (size_t)Bl * H * sizeof(float));
            }
        } else if (d->kind == DS_LM) {
            fl_bptt_final_state(t->ws, t->h, t->c);
        }
        fl_bptt_set_progress(t->ws, t->ready, t->ready_user);
        fl_bptt_backward(t->ws, m, t->grad);
    }
    if (t->hook) {
        if ((st = t->hook(t->grad->params, m->n_params, &loss, t->hook_user))) return st;
        if (!isfinite(loss))
            return fl_fail(FL_ERR_NUMERIC, "training loss is %g at step %ld (after the gradient hook); try a "
                           "lower learning rate or --clip", loss, t->step);
    }
    float scale = 1.0f;
    if (t->o.clip > 0) {
        double norm = fl_optim_grad_norm(t);
        if (!isfinite(norm))
            return fl_fail(FL_ERR_NUMERIC, "gradient norm is %g at step %ld", norm, t->step);
        if (norm > t->o.clip) scale = (float)(t->o.clip / (norm + 1e-6));
    }
    fl_optim_update(t, scale);
    t->step++;
    t->pos++;
    t->ep_loss += loss;
    t->ep_n++;
    if (t->pos >= nsteps) {
        t->pos = 0;
        t->epoch++;
        t->epoch_done = true;
    }
    if (loss_out) *loss_out = loss;
    return FL_OK;
}

/* ------------------------------------------------------------ evaluation */

static fl_status evaluate_held(const fl_model *m, const fl_dataset *d, int batch, int bptt, fl_eval_result *out) {
    if (!m || !d || !out) return fl_fail(FL_ERR_ARG, "NULL argument to fl_model_evaluate");
    memset(out, 0, sizeof *out);
    if (batch < 1 || bptt < 1) return fl_fail(FL_ERR_ARG, "batch and bptt must be >= 1");
    fl_status st = fl_dataset_check_model(d, m, "evaluation data");
    if (!st) st = refuse_arch(m);
    if (st) return st;
    const int L = m->arch.layers, H = m->arch.hidden;
    fl_bptt *ws = NULL;
    float *xb = NULL, *h = NULL, *c = NULL;
    int32_t *tb = NULL, *yb = NULL, *lb = NULL;
    uint32_t *rows = NULL;
    double total = 0;
    long right = 0;
    size_t count = 0;
    if (d->kind == DS_CLASSIFY) {
        if ((size_t)batch > d->n) batch = (int)d->n;
        size_t cells = (size_t)d->seq * batch;
        st = fl_bptt_create(m, batch, d->seq, &ws);
        xb = fl_malloc(cells * (d->dim > 0 ? d->dim : 1) * sizeof(float));
        tb = fl_malloc(cells * sizeof(int32_t));
        yb = fl_malloc((size_t)batch * sizeof(int32_t));
        rows = fl_malloc((size_t)batch * sizeof(uint32_t));
        lb = fl_malloc((size_t)batch * sizeof(int32_t));
        if (!st && (!xb || !tb || !yb || !rows || !lb)) st = fl_fail(FL_ERR_NOMEM, "out of memory evaluating");
        for (size_t first = 0; !st && first < d->n; first += (size_t)batch) {
            int B = (int)(d->n - first < (size_t)batch ? d->n - first : (size_t)batch);
            for (int b = 0; b < B; b++) rows[b] = (uint32_t)(first + b);
            int T = d->seq;
            fl_dataset_gather(d, m, rows, B, xb, tb, yb, lb, &T);
            fl_bptt_batch in = {B, T, d->dim > 0 ? xb : NULL, d->dim > 0 ? NULL : tb, yb, NULL, NULL,
                                d->lens ? lb : NULL};
            double loss;
            long ok;
            if ((st = fl_bptt_forward(ws, m, &in, 0, NULL, &loss, &ok))) break;
            total += loss * B;
            right += ok;
            count += (size_t)B;
        }
    } else {
        size_t S = 0;
        long windows = 0;
        if ((size_t)batch > d->n / 2) batch = (int)(d->n / 2 > 0 ? d->n / 2 : 1);
        st = lm_geometry(d, batch, bptt, &S, &windows);
        if (!st) st = fl_bptt_create(m, batch, bptt, &ws);
        size_t state = (size_t)L * batch * H;
        tb = fl_malloc((size_t)bptt * batch * sizeof(int32_t));
        yb = fl_malloc((size_t)bptt * batch * sizeof(int32_t));
        h = fl_calloc(state, sizeof(float));
        c = fl_calloc(state, sizeof(float));
        if (!st && (!tb || !yb || !h || !c)) st = fl_fail(FL_ERR_NOMEM, "out of memory evaluating");
        for (long w = 0; !st && w < windows; w++) {
            size_t start = (size_t)w * bptt;
            int T = (int)((S - 1 - start) < (size_t)bptt ? S - 1 - start : (size_t)bptt);
            for (int s = 0; s < T; s++)
                for (int b = 0; b < batch; b++) {
                    size_t k = (size_t)b * S + start + s;
                    tb[(size_t)s * batch + b] = d->tokens[k];
                    yb[(size_t)s * batch + b] = d->tokens[k + 1];
                }
            fl_bptt_batch in = {batch, T, NULL, tb, yb, h, c, NULL};
            double loss;
            long ok;
            if ((st = fl_bptt_forward(ws, m, &in, 0, NULL, &loss, &ok))) break;
            fl_bptt_final_state(ws, h, c);
            total += loss * T * batch;
            right += ok;
            count += (size_t)T * batch;
        }
    }
    fl_bptt_free(ws);
    fl_free(xb);
    fl_free(tb);
    fl_free(yb);
    fl_free(rows);
    fl_free(lb);
    fl_free(h);
    fl_free(c);
    if (st) return st;
    out->count = count;
    out->loss = total / (double)count;
    out->accuracy = (double)right / (double)count;
    out->perplexity = exp(out->loss);
    return FL_OK;
}

fl_status fl_model_evaluate(const fl_model *m, const fl_dataset *d, int batch, int bptt, fl_eval_result *out) {
    if (!m) return evaluate_held(m, d, batch, bptt, out);
    fl_model_weights_hold(m); /* read outside any session (packed.c) */
    fl_status st = evaluate_held(m, d, batch, bptt, out);
    fl_model_weights_unhold(m);
    return st;
}

/* ------------------------------------------------------------ the loop */

fl_status fl_trainer_run(fl_trainer *t, const fl_train_run *r) {
    if (!t || !r || !r->train) return fl_fail(FL_ERR_ARG, "fl_trainer_run needs a trainer and training data");
    if (r->epochs < 0 || r->max_steps < 0 || r->every < 0)
        return fl_fail(FL_ERR_ARG, "epochs, max_steps and every must be >= 0");
    long per_epoch;
    fl_status st = fl_trainer_epoch_steps(t, r->train, &per_epoch);
    if (st) return st;
    if (r->valid && (st = fl_dataset_check_model(r->valid, t->m, "validation data"))) return st;
    const double t0 = fl_now_seconds();
    const long step0 = t->step;
    const size_t items = r->train->kind == DS_CLASSIFY ? (size_t)t->o.batch : (size_t)t->o.batch * t->o.bptt;
    long end = (long)r->epochs * per_epoch;
    if (r->max_steps > 0 && r->max_steps < end) end = r->max_steps;
    bool stop = false;
    while (!stop && t->epoch < r->epochs && (r->max_steps == 0 || t->step < r->max_steps)) {
        double loss;
        if ((st = fl_trainer_step(t, r->train, &loss))) return st;
        fl_train_progress p = {.epoch = t->epoch_done ? t->epoch - 1 : t->epoch, .step = t->step,
                               .epoch_step = t->epoch_done ? per_epoch : t->pos, .epoch_steps = per_epoch,
                               .loss = t->ep_loss / (double)t->ep_n, .lr = t->lr,
                               .valid_loss = NAN, .valid_metric = NAN};
        double el = fl_now_seconds() - t0;
        long done = t->step - step0;
        p.items_per_s = el > 0 ? (double)done * items / el : 0;
        long global = (long)t->epoch * per_epoch + t->pos;
        p.eta_s = done > 0 && end > global ? el / done * (double)(end - global) : 0;
        if (t->epoch_done) {
            p.epoch_end = 1;
            if (r->valid) {
                fl_eval_result ev;
                int eb = r->valid->kind == DS_LM ? t->o.batch : (t->o.batch > 256 ? t->o.batch : 256);
                if ((st = fl_model_evaluate(t->m, r->valid, eb, t->o.bptt, &ev))) return st;
                p.valid_loss = ev.loss;
                p.valid_metric = r->valid->kind == DS_LM ? ev.perplexity : ev.accuracy;
                if (ev.loss < t->best) {
                    t->best = ev.loss;
                    t->bad = 0;
                } else if (++t->bad > t->o.patience && t->o.lr_decay < 1) {
                    t->lr *= t->o.lr_decay;
                    t->bad = 0;
                }
                p.lr = t->lr;
            }
        }
        if (r->callback && r->callback(&p, r->user)) stop = true;
        if (r->checkpoint && r->every > 0 && t->step % r->every == 0 && (st = fl_trainer_save(t, r->checkpoint)))
            return st;
    }
    if (r->checkpoint && (st = fl_trainer_save(t, r->checkpoint))) return st;
    return FL_OK;
}
