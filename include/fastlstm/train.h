/*
 * fastlstm training API: data sets, vocabularies, a trainer (BPTT, SGD/Adam, clipping, dropout,
 * learning-rate decay on plateau, checkpoints with exact resume) and evaluation.
 *
 * Conventions are those of fastlstm.h: fl_status returns, fl_last_error() for detail, opaque
 * handles freed by *_free (NULL accepted), no printing, no exit.
 *
 * Tasks follow from the model's head: FL_HEAD_LAST_STEP trains a sequence classifier on a
 * classification data set, FL_HEAD_PER_STEP a language model on a token stream (truncated BPTT
 * with the state carried between windows). Loss: mean cross-entropy (as nn.CrossEntropyLoss).
 */
#ifndef FASTLSTM_TRAIN_H
#define FASTLSTM_TRAIN_H

#include "fastlstm/fastlstm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- data sets */

typedef struct fl_dataset fl_dataset;

/* Classification set of n sequences of length seq: features x (n, seq, dim) when dim > 0, else
 * token ids (n, seq); labels (n) in [0, classes). Data is copied. FL_ERR_DATA for an empty set or
 * a label or id out of range (ids must be >= 0); FL_ERR_NONFINITE for non-finite features. */
FL_API fl_status fl_dataset_classify(int n, int seq, int dim, const float *x, const int32_t *ids,
                                     const int32_t *labels, int classes, fl_dataset **out);

/* Language-model set: a token stream (n >= 2 tokens, each in [0, vocab)). Data is copied. */
FL_API fl_status fl_dataset_lm(const int32_t *tokens, size_t n, int vocab, fl_dataset **out);

/* Classification set from .npy files: sequences (N, T, D) float32 or (N, T) integer ids, labels
 * (N) int32/int64 (class count = max label + 1, at most 2^24, or `classes` when > 0, which labels
 * must respect).
 * Errors name the file: FL_ERR_DATA for mismatched N, wrong rank or dtype, labels or ids out of
 * range; FL_ERR_NONFINITE for NaN/Inf features; fl_npy_load's codes for unreadable files. */
FL_API fl_status fl_dataset_load_npy(const char *x_path, const char *labels_path, int classes,
                                     fl_dataset **out);

FL_API void fl_dataset_free(fl_dataset *d);

/* Give each sequence of classification set d its valid length (a copy of lengths (n), each in
 * [1, seq]); the valid steps come first in each row and the rest is padding
 * (pack_padded_sequence's layout). Training and evaluation then mask the padding: a padded step
 * adds nothing to the loss or the gradients, and a last-step head reads each sequence's last
 * valid step (see fl_trainer_step). FL_ERR_DATA naming the sequence for a length out of range;
 * FL_ERR_SHAPE for a token stream. */
FL_API fl_status fl_dataset_set_lengths(fl_dataset *d, const int32_t *lengths);

/* The lengths of d (n), or NULL when every sequence fills its row. *left_padded (may be NULL) is 1
 * when the valid steps are the last ones of each row (labelled text, left-padded so that code
 * reading rows without lengths still ends on each line's last token), 0 when they are the first.
 * Valid while d lives. */
FL_API const int32_t *fl_dataset_lengths(const fl_dataset *d, int *left_padded);

/* Number of sequences (classification) or tokens (language model). */
FL_API size_t fl_dataset_size(const fl_dataset *d);
/* Sequence length and feature size (0 for ids) of a classification set; 0 for a token stream. */
FL_API int fl_dataset_seq(const fl_dataset *d);
FL_API int fl_dataset_dim(const fl_dataset *d);
/* Number of classes (classification) or the vocabulary bound (language model). */
FL_API int fl_dataset_classes(const fl_dataset *d);
/* Smallest vocabulary covering the token ids of d (largest id + 1, INT32_MAX when an id is
 * INT32_MAX); 0 for feature sequences. */
FL_API int fl_dataset_vocab(const fl_dataset *d);

/* ---------------------------------------------------------------- text vocabularies */

typedef struct fl_vocab fl_vocab;

typedef enum fl_token_mode { FL_TOKENS_WORD = 0, FL_TOKENS_CHAR = 1 } fl_token_mode;

/* Build a vocabulary from a UTF-8 text file: words (split on white space, with "<eos>" at each
 * line end) or characters (UTF-8 code points, "\n" included). Keeps the max_size - 1 most frequent
 * tokens (ties broken by first appearance; max_size <= 0: no cap) plus "<unk>" (id 0).
 * FL_ERR_DATA for an empty corpus, invalid UTF-8 (char mode) or a vocabulary of one token. */
FL_API fl_status fl_vocab_build(const char *text_path, fl_token_mode mode, int max_size, fl_vocab **out);

/* Vocabulary stored in a model (as JSON, see fl_vocab_attach); FL_ERR_FORMAT when the model has
 * none or it is malformed. */
FL_API fl_status fl_vocab_from_model(const fl_model *m, fl_vocab **out);

/* Store v in m as JSON (saved with the model's metadata), replacing any previous one. */
FL_API fl_status fl_vocab_attach(const fl_vocab *v, fl_model *m);

FL_API int fl_vocab_size(const fl_vocab *v);
FL_API void fl_vocab_free(fl_vocab *v);

/* Tokenize a text file with v into a language-model set (unknown tokens -> "<unk>").
 * FL_ERR_DATA for a file with fewer than 2 tokens. */
FL_API fl_status fl_dataset_load_text(const char *path, const fl_vocab *v, fl_dataset **out);

/* Tokenize the string text[0..len) with v as the data layer tokenizes a corpus: word mode splits on
 * white space with "<eos>" at each newline, char mode takes UTF-8 code points; unknown tokens ->
 * "<unk>" (id 0). Writes the first min(count, cap) ids to ids (which may be NULL when cap is 0) and
 * the full count to *n, so a first call with cap 0 sizes the buffer. Keeps no pointer.
 * Errors: FL_ERR_ARG (NULL v or n, NULL text with len > 0, NULL ids with cap > 0), FL_ERR_DATA
 * (invalid UTF-8 in char mode; fl_last_error() gives the byte offset). On error *n is 0. */
FL_API fl_status fl_vocab_encode(const fl_vocab *v, const char *text, size_t len, int32_t *ids, size_t cap,
                                 size_t *n);

/* Class names of a text classifier's vocabulary (labelled text), in class-id order; 0 / NULL for a
 * language model's vocabulary or i out of range. The string is owned by v. */
FL_API int fl_vocab_num_labels(const fl_vocab *v);
FL_API const char *fl_vocab_label(const fl_vocab *v, int i);
FL_API fl_token_mode fl_vocab_mode(const fl_vocab *v);

/* ---------------------------------------------------------------- one data layer
 *
 * Every command reads its data through these (train, finetune, eval, plan, compress), so a file
 * means the same everywhere. Formats:
 *   FL_DATA_NPY       `.npy`: features (N, T, D) float32 or token ids (N, T) int32/int64 with
 *                     labels (N) for a classifier; token ids (N) or (N, T) int32/int64 without
 *                     labels for a language model (rows read in order as one stream).
 *   FL_DATA_TEXT      a UTF-8 corpus for a language model (word or character tokens, the
 *                     vocabulary kept in the model).
 *   FL_DATA_LABELLED  labelled text for a classifier: one `label<TAB>text` per line (blank lines
 *                     skipped, a trailing '\r' dropped), text as word or character tokens. The
 *                     vocabulary and the class names (sorted, class id = index) are kept in the
 *                     model. Sequences are left-padded with "<unk>" (id 0) to the longest line, so
 *                     a last-step head reads every line's own last token, and carry their
 *                     lengths (fl_dataset_lengths): training and evaluation mask the padding.
 *   FL_DATA_AUTO      `.npy` by the file name's ending; otherwise labelled text for a classifier
 *                     and a corpus for a language model.
 * Errors name the file (and the line, for labelled text): FL_ERR_DATA for a line without a tab,
 * an empty label or text, invalid UTF-8, a label the model does not know, fewer than 2 classes;
 * FL_ERR_IO for an unreadable file; those of fl_dataset_load_npy for `.npy`. */

typedef enum fl_data_format {
    FL_DATA_AUTO = 0,
    FL_DATA_NPY = 1,
    FL_DATA_TEXT = 2,
    FL_DATA_LABELLED = 3,
} fl_data_format;

typedef struct fl_data_spec {
    const char *path;      /* the data file (required) */
    const char *labels;    /* `.npy` labels (N) of a `.npy` classification set, else NULL */
    fl_data_format format; /* default FL_DATA_AUTO */
    const char *lengths;   /* `.npy` lengths (N) int32/int64 of a `.npy` classification set (valid
                              steps first, see fl_dataset_set_lengths), else NULL; appended field */
} fl_data_spec;

/* The format path resolves to for a classifier (lm = 0) or a language model (lm = 1). */
FL_API fl_data_format fl_data_format_of(const fl_data_spec *s, int lm);

/* Load data for an existing model m: its head decides the task (last-step: classification,
 * per-step with an embedding: language model), its stored vocabulary tokenizes text and names the
 * classes of labelled text. FL_ERR_SHAPE for a model with no head or a format that does not fit
 * the task (a text corpus for a classifier, labelled text for a language model, `.npy` features
 * without labels); FL_ERR_FORMAT when text needs a vocabulary the model lacks. */
FL_API fl_status fl_data_load(const fl_data_spec *s, const fl_model *m, fl_dataset **out);

/* Load data for a new model (train): builds the vocabulary from a text file (word or char tokens,
 * at most max_vocab entries; for labelled text also the class names), returned in *vocab (NULL for
 * `.npy`; attach it to the new model with fl_vocab_attach). classes > 0 fixes a `.npy` class count. */
FL_API fl_status fl_data_load_new(const fl_data_spec *s, int lm, fl_token_mode mode, int max_vocab,
                                  int classes, fl_vocab **vocab, fl_dataset **out);

/* Load with a given vocabulary (as fl_data_load, v from a model or fl_data_load_new; NULL for
 * `.npy`). classes > 0: the class count of a `.npy` classification set. */
FL_API fl_status fl_data_load_with(const fl_data_spec *s, int lm, const fl_vocab *v, int classes,
                                   fl_dataset **out);

/* Split d into two sets: a classification set by a seeded permutation (the last
 * round(fraction * n) sequences of it go to *second), a token stream by position (the last
 * fraction of the tokens, so both halves read as text). fraction in (0, 1); each half must get at
 * least one sequence (two tokens): else FL_ERR_DATA. The caller owns both. */
FL_API fl_status fl_dataset_split(const fl_dataset *d, double fraction, uint64_t seed, fl_dataset **first,
                                  fl_dataset **second);

/* Read-only views of a data set's arrays (NULL where not held): features (n, seq, dim), token ids
 * (n, seq), labels (n), or the language-model token stream (n). Valid while d lives. */
FL_API const float *fl_dataset_features(const fl_dataset *d);
FL_API const int32_t *fl_dataset_ids(const fl_dataset *d);
FL_API const int32_t *fl_dataset_labels(const fl_dataset *d);
FL_API const int32_t *fl_dataset_tokens(const fl_dataset *d);

/* ---------------------------------------------------------------- training */

typedef enum fl_optim { FL_OPTIM_SGD = 0, FL_OPTIM_ADAM = 1 } fl_optim;

typedef struct fl_train_opts {
    fl_optim optim;      /* default FL_OPTIM_ADAM */
    float lr;            /* learning rate; default 1e-3 */
    float momentum;      /* SGD momentum; default 0 */
    float beta1, beta2;  /* Adam; defaults 0.9, 0.999 */
    float eps;           /* Adam; default 1e-8 */
    float weight_decay;  /* L2 penalty added to the gradient; default 0 */
    float clip;          /* clip the global gradient norm to this (0: off); default 0 */
    float dropout;       /* inverted dropout on every LSTM layer output in training; default 0 */
    int batch;           /* sequences (classifier) or parallel streams (LM) per step; default 32 */
    int bptt;            /* LM truncation window; default 35 */
    float lr_decay;      /* multiply lr by this when the validation loss stops improving; default 1 (off) */
    int patience;        /* epochs without improvement before decaying; default 0 */
    int freeze_dense;    /* train only the factors of decomposed matrices; default 0 */
    int shuffle;         /* reshuffle classification data every epoch; default 1 */
    uint64_t seed;       /* shuffling and dropout; default 1 */
} fl_train_opts;

FL_API fl_train_opts fl_train_opts_default(void);

typedef struct fl_trainer fl_trainer;

/* Create a trainer for m, which it updates in place: m must outlive the trainer and not be
 * changed by anyone else meanwhile. Bidirectional layers, projections (LSTMP) and a padding id
 * are trained as nn.LSTM / nn.Embedding(padding_idx) define them. FL_ERR_UNSUPPORTED for a model
 * without a head, a bidirectional language model (its reverse direction would read the tokens it
 * predicts) or LSTM extras (peepholes, clip, input_forget); FL_ERR_ARG for bad options or
 * freeze_dense on a model without decomposed matrices. */
FL_API fl_status fl_trainer_create(fl_model *m, const fl_train_opts *o, fl_trainer **out);
FL_API void fl_trainer_free(fl_trainer *t);

/* One optimisation step on the next batch of d (advancing the trainer's position in the epoch;
 * a new epoch reshuffles / resets the LM state). *loss (may be NULL): the batch's loss.
 * A classification set with lengths (fl_dataset_lengths) trains on masked variable-length
 * batches (pack_padded_sequence semantics): padded steps add nothing to the loss or gradients,
 * the head reads each sequence's last valid step, the padding id (arch.has_padding) gets no
 * embedding gradient; the loss stays the mean over the batch's sequences. fl_model_evaluate
 * masks the same way.
 * FL_ERR_SHAPE if d does not fit the model, FL_ERR_NUMERIC if the loss is not finite. */
FL_API fl_status fl_trainer_step(fl_trainer *t, const fl_dataset *d, double *loss);

/* Progress report to the caller of fl_trainer_run. */
typedef struct fl_train_progress {
    int epoch;              /* current epoch, from 0 */
    long step;              /* optimisation steps done in total */
    long epoch_step, epoch_steps; /* position within the epoch */
    double loss;            /* mean training loss so far in this epoch */
    double lr;              /* current learning rate */
    double items_per_s;     /* sequences (classifier) or tokens (LM) per second in this run */
    double eta_s;           /* estimated seconds to the end of the run */
    int epoch_end;          /* 1 when this report closes an epoch (valid_* are then set) */
    double valid_loss;      /* validation loss, or NaN without a validation set */
    double valid_metric;    /* accuracy (classifier) or perplexity (LM), or NaN */
} fl_train_progress;

/* Called after every step and at every epoch end; return nonzero to stop training (the run then
 * returns FL_OK after writing the final checkpoint, if any). */
typedef int (*fl_train_callback)(const fl_train_progress *p, void *user);

typedef struct fl_train_run {
    const fl_dataset *train;   /* required */
    const fl_dataset *valid;   /* optional: evaluated at each epoch end, drives lr decay */
    int epochs;                /* train until this many epochs are complete (counting resumed ones) */
    long max_steps;            /* also stop when the total step count reaches this (0: no limit) */
    const char *checkpoint;    /* optional path: written every `every` steps and at the end */
    long every;                /* 0: only at the end */
    fl_train_callback callback;/* optional */
    void *user;
} fl_train_run;

FL_API fl_status fl_trainer_run(fl_trainer *t, const fl_train_run *r);

/* Write a checkpoint (model, tokenizer, options, optimiser state, epoch / step / position, RNG and
 * LM state) atomically: temporary file, fsync, rename. */
FL_API fl_status fl_trainer_save(const fl_trainer *t, const char *path);

/* Recreate the model and trainer from a checkpoint; training continues exactly where it stopped
 * (bit for bit, given the same data). The caller owns both; free the trainer first.
 * FL_ERR_FORMAT / FL_ERR_VERSION / FL_ERR_IO for a bad file (checksum, truncation, magic). */
FL_API fl_status fl_trainer_resume(const char *path, fl_model **model, fl_trainer **out);

/* BLAS threads used by training (OpenBLAS is process-wide: this also affects other users). */
FL_API fl_status fl_trainer_set_threads(fl_trainer *t, int threads);

/* Optional hook called after every backward pass with the flat gradient (n floats, laid out like
 * the model's parameter block, alignment padding zero) and the batch loss, before clipping and the
 * optimiser step. It may change both, e.g. average them across processes (MPI_Allreduce); a
 * nonzero return aborts the step with that status. fn NULL removes the hook. */
typedef fl_status (*fl_grad_hook)(float *grad, size_t n, double *loss, void *user);
FL_API void fl_trainer_set_grad_hook(fl_trainer *t, fl_grad_hook fn, void *user);

/* Steps done, completed epochs, and the current learning rate. */
FL_API long fl_trainer_steps(const fl_trainer *t);
FL_API int fl_trainer_epoch(const fl_trainer *t);
FL_API double fl_trainer_lr(const fl_trainer *t);

/* Make t continue where `from` stopped, as when a model is replaced mid-run (the training planner
 * decomposes a dense model and trains on): t takes over from's step and epoch counts, position in
 * the epoch, this epoch's sequence order and loss sum, an LM's carried state, the random stream,
 * the plateau count and the learning rate's decay (t keeps its own base rate), so its next step
 * reads the batch from's next step would have read. The optimiser state is not taken over (the
 * models' parameters may differ in form); neither is a shard (fl_trainer_set_shard). Both trainers
 * must have the same batch and bptt and their models the same layers and hidden size;
 * FL_ERR_ARG otherwise, FL_ERR_NOMEM if the sequence order cannot be copied. from is not changed. */
FL_API fl_status fl_trainer_continue_from(fl_trainer *t, const fl_trainer *from);

/* ---------------------------------------------------------------- evaluation */

typedef struct fl_eval_result {
    double loss;       /* mean cross-entropy */
    double accuracy;   /* fraction of correct argmax predictions */
    double perplexity; /* exp(loss) */
    size_t count;      /* targets evaluated */
} fl_eval_result;

/* Evaluate m on d (no dropout). batch: sequences per forward (classifier) or parallel streams (LM,
 * state carried across windows of bptt steps). */
FL_API fl_status fl_model_evaluate(const fl_model *m, const fl_dataset *d, int batch, int bptt,
                                   fl_eval_result *out);

#ifdef __cplusplus
}
#endif
#endif /* FASTLSTM_TRAIN_H */
