/*
 * fastlstm — fast LSTM inference and training on CPUs, with low-rank (SVD, CP) weights.
 *
 * Conventions
 *  - Every function that can fail returns fl_status: FL_OK (0) or a negative code.
 *    fl_status_str() names the code; fl_last_error() (thread-local) gives the detail, e.g.
 *    "model.safetensors: tensor 'lstm.weight_ih_l0' data_offsets [0, 4096) past end of file (3000 bytes)".
 *  - Results come back through out-parameters. The library never prints and never exits.
 *  - Objects are opaque handles. Every *_create / *_load has a *_free that accepts NULL.
 *  - The library keeps no caller pointer past a call unless the doc comment says so.
 *  - float32 everywhere; matrices are row-major.
 *
 * Model (PyTorch semantics): optional embedding (token ids in) -> `layers` stacked unidirectional
 * LSTM layers (nn.LSTM, gate order i, f, g, o) -> optional linear head, applied per time step
 * (language model) or to the last step (sequence classifier).
 */
#ifndef FASTLSTM_H
#define FASTLSTM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(FL_BUILDING_LIBRARY)
#define FL_API __attribute__((visibility("default")))
#else
#define FL_API
#endif

/* ---------------------------------------------------------------- status */

typedef enum fl_status {
    FL_OK = 0,
    FL_ERR_NOMEM = -1,       /* allocation failed */
    FL_ERR_IO = -2,          /* missing file, read or write failure */
    FL_ERR_FORMAT = -3,      /* malformed file: header, JSON, offsets, metadata */
    FL_ERR_SHAPE = -4,       /* shapes inconsistent with the architecture or each other */
    FL_ERR_DTYPE = -5,       /* unsupported element type */
    FL_ERR_NONFINITE = -6,   /* NaN or Inf in weights or inputs */
    FL_ERR_ARG = -7,         /* invalid argument */
    FL_ERR_NUMERIC = -8,     /* numerical failure (LAPACK error, no convergence) */
    FL_ERR_UNSUPPORTED = -9, /* valid request this build or model cannot serve */
    FL_ERR_VERSION = -10,    /* file written by an incompatible format version */
    FL_ERR_DATA = -11,       /* bad data set: label out of range, ragged, empty */
} fl_status;

/* Name of a status code ("FL_ERR_FORMAT"). Never NULL; static storage. */
FL_API const char *fl_status_str(fl_status s);

/* Detail of the last error raised on this thread, or "" if none. Valid until the next failing
 * call on this thread. */
FL_API const char *fl_last_error(void);

/* Library version string ("0.1.0"); static storage. */
FL_API const char *fl_version(void);

/* Record `fmt` (printf-style) as this thread's error detail, the text fl_last_error() returns, and
 * return s. For programs that check their own inputs and report them the way the library does, or
 * that prefix the library's detail with context (copy fl_last_error() first: it is the buffer this
 * writes). The detail is truncated at 1023 bytes. */
FL_API fl_status fl_set_error(fl_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---------------------------------------------------------------- model */

typedef struct fl_model fl_model;

typedef enum fl_head_kind {
    FL_HEAD_NONE = 0,      /* output: top layer hidden states */
    FL_HEAD_PER_STEP = 1,  /* output: head(h_t) for every t (language model logits) */
    FL_HEAD_LAST_STEP = 2, /* output: head(h_T) (sequence classifier) */
} fl_head_kind;

typedef struct fl_arch {
    int vocab;         /* > 0: inputs are token ids and an embedding (vocab, input) is used; 0: features */
    int input;         /* input feature size D (embedding dimension when vocab > 0) */
    int hidden;        /* hidden size H of every layer */
    int layers;        /* number of stacked LSTM layers, >= 1 */
    fl_head_kind head; /* linear head, if any */
    int head_out;      /* head output size (classes, or vocabulary for a language model); 0 if no head */
} fl_arch;

typedef enum fl_method { FL_METHOD_DENSE = 0, FL_METHOD_SVD = 1, FL_METHOD_CP = 2 } fl_method;

/* How one weight matrix is stored. rank is ignored for FL_METHOD_DENSE. CP applies only to the
 * LSTM gate matrices (4h x n viewed as a 4 x h x n tensor). */
typedef struct fl_mat_spec {
    fl_method method;
    int rank;
} fl_mat_spec;

/* What a weight matrix does in the network. */
typedef enum fl_mat_kind {
    FL_MAT_IH = 0,   /* LSTM weight_ih: layer input -> 4 gates, (4H, input or H) */
    FL_MAT_HH = 1,   /* LSTM weight_hh: previous hidden state -> 4 gates, (4H, H) */
    FL_MAT_HEAD = 2, /* linear head, (head_out, H) */
    FL_MAT_PROJ = 3, /* LSTMP projection weight_hr (reserved for projection layers; none yet) */
} fl_mat_kind;

/* Element type a matrix is stored in. Only float32 today. */
typedef enum fl_precision { FL_PRECISION_F32 = 0 } fl_precision;

/* The weight matrices of a model are numbered: 2*l is weight_ih of layer l, 2*l+1 is weight_hh of
 * layer l, and 2*layers is the head (if the model has one). 0 for a NULL model. */
FL_API size_t fl_model_num_matrices(const fl_model *m);

/* Create a model with zeroed weights. specs: NULL (all dense) or fl_model_num_matrices() entries
 * in the order above. The caller owns *out (free with fl_model_free). */
FL_API fl_status fl_model_create(const fl_arch *arch, const fl_mat_spec *specs, fl_model **out);

/* Fill every parameter with PyTorch's default initialisation (nn.LSTM: U(-1/sqrt(H), 1/sqrt(H));
 * nn.Embedding: N(0, 1); nn.Linear: U(-1/sqrt(in), 1/sqrt(in))), from a deterministic generator.
 * Decomposed matrices get factors whose product has the same scale. */
FL_API fl_status fl_model_init_random(fl_model *m, uint64_t seed);

/* Load a model from a safetensors file. Validates header bounds, JSON, dtypes, offsets (inside
 * the file, non-overlapping), shapes against the architecture in __metadata__, and finiteness.
 * The caller owns *out. On error *out is NULL and fl_last_error() names the file and the problem. */
FL_API fl_status fl_model_load(const char *path, fl_model **out);

/* Save a model as safetensors (written to a temporary file, fsync'd, then renamed). */
FL_API fl_status fl_model_save(const fl_model *m, const char *path);

/* Deep copy. The caller owns *out. */
FL_API fl_status fl_model_clone(const fl_model *m, fl_model **out);

FL_API void fl_model_free(fl_model *m);

/* The architecture; valid while m lives. NULL for a NULL model. */
FL_API const fl_arch *fl_model_arch(const fl_model *m);

typedef struct fl_matrix_info {
    char name[48];         /* "lstm.weight_ih_l0", "head.weight" */
    fl_method method;
    int rows, cols, rank;  /* dense shape (rows x cols); rank 0 for dense */
    size_t params;         /* stored parameters of this matrix */
    size_t flops;          /* multiply-adds x 2 to apply it to one vector */
    double rel_error;      /* ||W - W~||_F / ||W||_F recorded at decomposition; 0 dense; < 0 unknown */
    fl_mat_kind kind;      /* weight_ih, weight_hh, head (, projection) */
    int layer;             /* LSTM layer it belongs to; -1 for the head */
    int direction;         /* 0 forward; 1 reverse (bidirectional layers, "..._reverse" names) */
    fl_precision precision;
    size_t bytes;          /* bytes its stored parameters take in the model file */
} fl_matrix_info;

/* Describe matrix i (numbered as above). */
FL_API fl_status fl_model_matrix_info(const fl_model *m, size_t i, fl_matrix_info *out);

/* The tokenizer stored with a text model (JSON text, as written in the model file's metadata), or
 * NULL if the model has none (or m is NULL). Owned by the model; valid while m lives. */
FL_API const char *fl_model_tokenizer(const fl_model *m);

/* Names used in model files and by the CLI: "dense", "svd", "cp"; "none", "per_step", "last_step".
 * Static storage; "unknown" for a value outside the enum. */
FL_API const char *fl_method_name(fl_method method);
FL_API const char *fl_head_name(fl_head_kind head);

/* All stored parameters (weights, biases, embedding, head). 0 for a NULL model. */
FL_API size_t fl_model_num_params(const fl_model *m);

/* Floating-point operations for one time step of one sequence through all layers, with
 * input projections, plus the head if it is applied per step. 0 for a NULL model. */
FL_API size_t fl_model_flops_per_step(const fl_model *m);

/* ---------------------------------------------------------------- decomposition */

/* How to decompose a model. Each weight matrix gets a target: its entry in `specs` if given,
 * else `method` for the LSTM gate matrices (and SVD for the head when include_head). A target's
 * rank is its explicit rank if > 0, else the smallest rank with relative Frobenius error <= tol
 * (if tol > 0), else the largest rank that keeps the matrix within `budget` x its dense
 * parameters (if budget > 0). Biases and the embedding stay dense. */
typedef struct fl_decomp_opts {
    fl_method method;          /* default for LSTM matrices; FL_METHOD_DENSE keeps them dense */
    int rank;                  /* explicit rank for every decomposed matrix, or 0 */
    double tol;                /* relative Frobenius error target, or 0 */
    double budget;             /* fraction of dense parameters per matrix in (0, 1], or 0 */
    int include_head;          /* also SVD-decompose the head */
    const fl_mat_spec *specs;  /* optional: fl_model_num_matrices() per-matrix targets; a spec with
                                  method != DENSE and rank 0 takes its rank from tol / budget */
    int cp_max_iter;           /* CP-ALS iteration cap (default 200) */
    double cp_tol;             /* CP-ALS stop when the fit improves less than this (default 1e-7) */
    uint64_t seed;             /* CP-ALS seed */
} fl_decomp_opts;

/* method SVD, rank/tol/budget 0 (the caller must set one, or give ranks in specs), no head,
 * specs NULL, cp_max_iter 200, cp_tol 1e-7, seed 0. */
FL_API fl_decomp_opts fl_decomp_opts_default(void);

/* Decompose m (dense or partly decomposed; decomposed matrices are reconstructed first) into a
 * new model. SVD: truncated SVD in double (LAPACK dgesdd) with sqrt(s) folded into each factor;
 * the tol rank is exact (singular-value tail). CP: alternating least squares on the 4 x H x n
 * tensor (seeded; deterministic); a tol rank is searched by doubling then bisection over ALS runs
 * (slow for large matrices). The head takes SVD only. A matrix whose target equals its current
 * storage (same method and rank) is copied unchanged, with its recorded error. Otherwise its
 * fl_matrix_info.rel_error is recorded as ||W - W~||_F / ||W||_F, W the matrix of m, W~ the
 * product of the stored float factors. Embedding, biases and tokenizer are copied.
 * Errors: FL_ERR_ARG (bad options, no rank/tol/budget for a decomposed target, SVD rank above
 * min(rows, cols), CP rank above min(4H, 4n, Hn) (the most any 4 x H x n tensor needs), CP on the
 * head, an all-zero matrix), FL_ERR_NUMERIC (LAPACK failure, or a CP
 * tol not reachable within the dense parameter count), FL_ERR_NOMEM; fl_last_error() names the
 * matrix. On error *out is NULL. The caller owns *out. */
FL_API fl_status fl_model_decompose(const fl_model *m, const fl_decomp_opts *opts, fl_model **out);

/* ---------------------------------------------------------------- inference */

typedef struct fl_session fl_session;

typedef struct fl_session_opts {
    int max_batch;  /* largest batch (and number of streams) the session serves; default 1 */
    int max_seq;    /* largest sequence length for fl_session_run; default 256 */
    int threads;    /* worker threads; default 1; 0: the count `fastlstm plan` / `compress` chose
                       for the model (saved in its metadata), 1 when it has none */
} fl_session_opts;

FL_API fl_session_opts fl_session_opts_default(void);

/* Create a session: scratch buffers (allocated once) and per-stream (h, c) state, all zero.
 * The model must outlive the session and must not change while the session exists.
 * The caller owns *out.
 * Threads: a session is used by one thread at a time. Any number of sessions on one model may be
 * created, run and freed concurrently on different threads; they give the same results as one
 * session. The model's weights are packed for the kernels once, by the first session, and shared by
 * every session on the model; each further session adds only its scratch and state. The packed copy
 * is freed with the model's last session (so a model changed while it has no session is repacked).
 * Memory: while sessions exist, a dense recurrent matrix W_hh is kept once, in the packed form (the
 * pages of the model's own copy are given back), so a model runs in about its own size. The library's
 * functions that read or write weights outside a session (fl_model_save, fl_model_clone,
 * fl_model_init_random, decomposition, planning, evaluation, a trainer for its whole life) write the
 * originals back first, bit-identical, and keep them until the last session goes; the last session
 * writes them back in any case. A program must not read a model's weight memory by other means while
 * it has sessions.
 * Effect on the process: OpenBLAS's thread count is process-wide, and fl_session_create and
 * fl_session_set_threads set it to 1 (a session's parallel work runs on its own `threads` worker
 * threads; OpenBLAS's idle threads would spin on the same cores). It is not restored by
 * fl_session_free. Other BLAS calls in the process (the program's own, decomposition, training) then
 * run on one thread until something sets it again (fl_trainer_set_threads sets it to the trainer's
 * count; a program calls openblas_set_num_threads itself after creating its sessions). */
FL_API fl_status fl_session_create(const fl_model *m, const fl_session_opts *opts, fl_session **out);
FL_API void fl_session_free(fl_session *s);
FL_API fl_status fl_session_set_threads(fl_session *s, int threads);

typedef enum fl_layout {
    FL_BATCH_MAJOR = 0, /* x (B, T, D), tokens (B, T), y (B, T, *) — PyTorch batch_first=True */
    FL_TIME_MAJOR = 1,  /* x (T, B, D), tokens (T, B), y (T, B, *) */
} fl_layout;

/* One call of fl_session_run. Exactly one of x / tokens is set (tokens iff the model has an
 * embedding). States are always (L, B, H), like PyTorch's h_n / c_n. */
typedef struct fl_run_io {
    fl_layout layout;
    int batch, seq;
    const float *x;         /* features, (B, T, D) or (T, B, D) */
    const int32_t *tokens;  /* token ids, (B, T) or (T, B); each in [0, vocab) */
    const float *h0, *c0;   /* (L, B, H) initial state, or NULL for zeros */
    float *y;               /* output, fl_run_output_size() floats (see below) */
    float *hn, *cn;         /* (L, B, H) final state, or NULL; hn may be h0 and cn may be c0 */
} fl_run_io;

/* Number of floats fl_session_run writes to y: B*T*H (no head), B*T*V (per-step head),
 * B*C (last-step head). */
FL_API size_t fl_run_output_size(const fl_model *m, int batch, int seq);

/* Run whole sequences. Does not touch the streaming state. Inputs are checked (token range,
 * finite features); on error nothing is written to y. */
FL_API fl_status fl_session_run(fl_session *s, const fl_run_io *io);

/* Streaming: advance streams 0..batch-1 by one time step, keeping (h, c) per stream (all zero at
 * create; see fl_session_reset, fl_session_set_state and fl_session_get_state).
 * x: (batch, D) features or tokens: (batch) ids. y: (batch, H) top hidden state when the model has
 * no head, else (batch, head_out) head output for this step. */
FL_API fl_status fl_session_step(fl_session *s, int batch, const float *x, const int32_t *tokens,
                                 float *y);

/* Zero the streaming state of one stream, or of all streams when stream < 0. */
FL_API fl_status fl_session_reset(fl_session *s, int stream);

/* Read the streaming state of streams 0..batch-1 into h and c, each (L, B, H) with B = batch, the
 * layout of fl_run_io's hn / cn; either may be NULL (not both). Streams >= batch are not read.
 * Errors: FL_ERR_ARG (NULL session, batch outside [1, max_batch], h and c both NULL). */
FL_API fl_status fl_session_get_state(const fl_session *s, int batch, float *h, float *c);

/* Set the streaming state of streams 0..batch-1 from h and c, each (L, B, H) with B = batch (so the
 * hn / cn of an fl_session_run continue as a stream); NULL sets that half to zeros. Streams >= batch
 * keep their state. The arrays are copied; the session keeps no pointer.
 * Errors: FL_ERR_ARG (NULL session, batch outside [1, max_batch]), FL_ERR_NONFINITE (NaN or Inf in
 * h or c; fl_last_error() names the array and [layer, stream, unit]). On error the state is unchanged. */
FL_API fl_status fl_session_set_state(fl_session *s, int batch, const float *h, const float *c);

#ifdef __cplusplus
}
#endif
#endif /* FASTLSTM_H */
