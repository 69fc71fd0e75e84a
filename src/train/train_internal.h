/* Internal structures of the training module (src/train). */
#ifndef FL_TRAIN_INTERNAL_H
#define FL_TRAIN_INTERNAL_H

#include "fastlstm/train.h"
#include "internal.h"
#include "train/bptt.h"

typedef enum ds_kind { DS_CLASSIFY = 1, DS_LM = 2 } ds_kind;

struct fl_dataset {
    ds_kind kind;
    size_t n;          /* sequences (classify) or tokens (LM) */
    int seq, dim;      /* classify: sequence length, feature size (0: ids) */
    int classes;       /* classify: number of classes; LM: vocabulary bound */
    int32_t max_id;    /* largest token id (ids / LM), -1 for features */
    float *x;          /* (n, seq, dim) or NULL */
    int32_t *ids;      /* (n, seq) or NULL */
    int32_t *labels;   /* (n) or NULL */
    int32_t *tokens;   /* (n) LM stream or NULL */
    int32_t *lens;     /* classify: (n) valid length of each sequence in [1, seq], or NULL (all seq) */
    bool lens_left;    /* the valid steps are the last lens[i] of a row (left-padded labelled text);
                        * else the first (right-padded, pack_padded_sequence's layout) */
};

struct fl_trainer {
    fl_model *m;       /* trained in place (not owned) */
    fl_model *grad;    /* same layout as m: the flat gradient */
    fl_train_opts o;
    float *s1, *s2;    /* optimiser state over the flat block: Adam m, v; SGD momentum in s1 */
    long adam_t;       /* Adam steps taken */
    bool *trainable;   /* per tensor of m */
    fl_bptt *ws;       /* workspace, (re)created for the data's shape */
    int ws_batch, ws_seq;
    fl_rng rng;        /* shuffling and dropout */
    /* progress */
    int epoch;         /* completed epochs */
    long step;         /* total steps */
    long pos;          /* batches done in the current epoch */
    bool epoch_done;   /* the last step completed an epoch */
    double lr, best;   /* current lr; best validation loss (INFINITY if none yet) */
    int bad;           /* epochs without improvement */
    double ep_loss;    /* sum of batch losses in this epoch */
    long ep_n;         /* batches in ep_loss */
    uint32_t *perm;    /* classify: order of sequences this epoch */
    size_t perm_n;
    float *h, *c;      /* LM: carried state (L, batch, H) */
    /* batch buffers */
    float *xb;         /* (T, B, D) */
    int32_t *tb, *yb;  /* (T, B) tokens, (T, B) or (B) targets */
    int32_t *lb;       /* (B) lengths of a variable-length batch */
    uint32_t *rows;    /* (B) the batch's sequences, sorted by decreasing length */
    size_t buf_cap_x, buf_cap_t;
    fl_grad_hook hook; /* optional, with hook_user */
    void *hook_user;
    /* Data parallelism (src/train/mpi.c): this process takes slice shard_rank of shard_count of
     * every global batch; shard_count <= 1 takes all of it. */
    int shard_rank, shard_count;
    int shard_n, shard_total; /* last step: items of the global batch taken here / in the batch */
    int shard_lo;             /* last step: first item of the slice */
    fl_bptt_progress ready;   /* overlap hook passed to backward (fl_bptt_set_progress), or NULL */
    void *ready_user;
    size_t data_n;            /* last step: sequences (classify) or tokens (LM) in the data set */
    float *sh, *sc;           /* LM sharded: this slice's state (L, shard_n, H); h, c stay global and
                               * the grad hook must refill the other slices of them */
};

/* Steps in one epoch of d for this trainer; FL_ERR_DATA / FL_ERR_SHAPE if d does not fit. */
fl_status fl_trainer_epoch_steps(fl_trainer *t, const fl_dataset *d, long *steps);

/* Gather sequences rows[0..B) of classification set d into time-major buffers: x (T, B, D) or
 * ids (T, B), labels (B). Variable-length data: rows is first sorted (stably) by decreasing
 * length, each row's valid steps are moved to the front (padding after: zero features, or the
 * model's padding id / 0), lens (B) receives the lengths and *T the longest; else lens is left
 * alone and *T = d->seq. */
void fl_dataset_gather(const fl_dataset *d, const fl_model *m, uint32_t *rows, int B, float *x, int32_t *ids,
                       int32_t *labels, int32_t *lens, int *T);

/* Check that d can feed model m (task, shapes, id ranges); `what` names d in errors. */
fl_status fl_dataset_check_model(const fl_dataset *d, const fl_model *m, const char *what);

/* Take slice rank of count of every global batch from now on: classifier sequences or LM streams
 * [B * rank / count, B * (rank + 1) / count). The loss and gradient of a step are then the mean
 * over this slice only (shard_n of shard_total items, possibly 0); a grad hook combines them.
 * LM: h, c keep the global layout (L, batch, H) (as checkpoints store it), but a step updates
 * only streams [shard_lo, shard_lo + shard_n); the hook must gather the others from their ranks.
 * With dropout, ranks draw masks from per-rank streams (the shared RNG advances identically). */
FL_API void fl_trainer_set_shard(fl_trainer *t, int rank, int count); /* exported for libfastlstm_dist */

/* Text helpers (vocab.c), shared with the data layer (dataset.c). */
fl_status fl_read_text_file(const char *path, char **out, size_t *len);
/* Next token of text[*pos..len) in mode: start *s and length *n; false at the end (or on invalid
 * UTF-8 in char mode, which sets *bad). Word mode yields "<eos>" at a newline. */
bool fl_text_next_token(const char *text, size_t len, size_t *pos, fl_token_mode mode, const char **s,
                        size_t *n, bool *bad);
/* Vocabulary from a text buffer (path names it in errors); as fl_vocab_build. */
fl_status fl_vocab_build_buffer(const char *text, size_t len, const char *path, fl_token_mode mode,
                                int max_size, fl_vocab **out);
/* Id of token s[0..n), or -1. */
int32_t fl_vocab_find(const fl_vocab *v, const char *s, size_t n);
/* Replace v's class names by copies of labels[0..n). */
fl_status fl_vocab_set_labels(fl_vocab *v, char **labels, int n);

/* Optimiser over the flat block (optim.c). */
double fl_optim_grad_norm(const fl_trainer *t);
void fl_optim_update(fl_trainer *t, float grad_scale);

#endif
