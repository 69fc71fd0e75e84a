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
 * Model (PyTorch semantics): optional embedding (token ids in) -> `layers` stacked LSTM layers
 * (nn.LSTM, gate order i, f, g, o; optionally bidirectional and/or with a projection, as
 * nn.LSTM(bidirectional=True, proj_size=P)) -> optional linear head, applied per time step
 * (language model) or to the last valid step (sequence classifier).
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

/* Monotonic clock (CLOCK_MONOTONIC) in seconds, for timing runs the way the library's own profile
 * and planner do. */
FL_API double fl_now_seconds(void);

/* Sort n doubles ascending, in place (medians of timing samples). */
FL_API void fl_sort_doubles(double *v, size_t n);

/* Library version string ("0.1.0"); static storage. */
FL_API const char *fl_version(void);

/* The core whose kernels OpenBLAS chose at load time ("Prescott", "Haswell", "SkylakeX", ...; its
 * openblas_get_corename), static storage. */
FL_API const char *fl_blas_core(void);

/* When OpenBLAS runs kernels below this CPU's ISA because it does not know the CPU (OpenBLAS 0.3.21
 * takes Intel family 6 model 207 for a Prescott: sgemm 31.5 GFLOP/s instead of 141.7 with its AVX-512
 * kernels), the OPENBLAS_CORETYPE that matches the CPU ("SkylakeX" with AVX-512 F/VL/DQ/BW/CD,
 * "Haswell" with AVX2 and FMA); NULL when OpenBLAS's choice is already AVX2-class or better, or the
 * CPU has nothing better. OpenBLAS reads OPENBLAS_CORETYPE once, when it is loaded, so a program
 * acts on this by setting it and starting again (the fastlstm CLI does, when it is unset). */
FL_API const char *fl_blas_core_advice(void);

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
    /* Appended fields: zero means a plain unidirectional LSTM without projection or padding id. */
    int bidirectional; /* 1: every layer runs forward and reverse; outputs [fwd, rev] per step (2*out) */
    int proj;          /* P > 0: LSTMP, h_t = W_hr (o * tanh(c_t)) of size P < hidden (nn.LSTM proj_size) */
    int has_padding;   /* 1: padding_idx names the padding token (nn.Embedding(padding_idx=...)) */
    int padding_idx;   /* with has_padding, in [0, vocab): its embedding row is zero at init and in
                          training; at inference the stored row is used, as PyTorch does */
} fl_arch;

/* Sizes that follow from an architecture (PyTorch's nn.LSTM conventions):
 *   out  = proj if proj > 0 else hidden          size of each direction's h_t (and of h_n rows)
 *   dirs = 2 if bidirectional else 1
 *   layer l input: input (l = 0), dirs * out (l > 0); weight_ih (4H, in), weight_hh (4H, out),
 *   weight_hr (P, H); the head reads dirs * out features. */

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
    FL_MAT_PROJ = 3, /* LSTMP projection weight_hr, (P, H): dense or SVD (no gate axis: no CP) */
} fl_mat_kind;

/* Element type a matrix's stored factors use. bf16: bfloat16 weights, f32 activations and sums.
 * int8: symmetric int8 weights with one f32 scale per output row, activations quantized to u8 per
 * row and per call (as PyTorch's dynamic quantization does), int32 sums; gates and cell stay f32.
 * Dense and SVD matrices take every precision; CP factors stay f32. */
typedef enum fl_precision { FL_PRECISION_F32 = 0, FL_PRECISION_BF16 = 1, FL_PRECISION_INT8 = 2 } fl_precision;

/* "f32", "bf16", "int8" (the model file's and CLI's names); "unknown" outside the enum. Static storage. */
FL_API const char *fl_precision_name(fl_precision p);

/* The weight matrices of a model are numbered in PyTorch's state_dict order: per layer l, per
 * direction d (0 forward, 1 reverse when bidirectional), weight_ih, weight_hh and (with a
 * projection) weight_hr; then the head (if the model has one). With k = 2 + (proj > 0) matrices per
 * direction and dirs directions, matrix (l*dirs + d)*k + j is weight_ih (j 0), weight_hh (j 1) or
 * weight_hr (j 2); the head is last. A plain unidirectional model keeps 2*l, 2*l+1, 2*layers.
 * fl_model_matrix_info gives each one's kind, layer and direction. 0 for a NULL model. */
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

/* A copy of m with matrix i stored in precisions[i] (fl_model_num_matrices() entries). A matrix
 * going to int8 or bf16 is quantized from m's float32 values (for int8, per output row as described
 * at fl_precision); one already in that precision is copied unchanged; one going to f32 keeps its
 * dequantized values. The copy keeps a float32 master of every weight, equal to the dequantized
 * low-precision weights, which training reads and updates (re-quantize after training by calling
 * this again). Errors: FL_ERR_ARG (NULL, unknown precision), FL_ERR_UNSUPPORTED (a CP matrix to int8 or
 * bf16), FL_ERR_NONFINITE, FL_ERR_NOMEM. The caller owns *out. */
FL_API fl_status fl_model_quantize(const fl_model *m, const fl_precision *precisions, fl_model **out);

/* Re-quantize every int8 / bf16 matrix of m from its float32 master, after training changed the
 * master (fine-tuning a quantized model trains in float32; call this before saving or running it).
 * Nothing to do for an all-f32 model. No session may exist on m. Errors: FL_ERR_ARG (NULL),
 * FL_ERR_NONFINITE, FL_ERR_NOMEM (the matrix that failed is left in f32). */
FL_API fl_status fl_model_requantize(fl_model *m);

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

/* Threads the planner chose for layer `layer`'s steps (`fastlstm plan` / `compress`, saved in the
 * model file's metadata "layer_threads", or "threads" for every layer in files written before
 * per-layer counts); layer -1: the most any layer runs on. 0: none planned (or m NULL, layer out of
 * range). A session created with threads = 0 runs each layer on this count (1 when 0). */
FL_API int fl_model_planned_threads(const fl_model *m, int layer);

/* Set the planned thread count of every layer: threads[fl_model_arch(m)->layers] entries in
 * [1, 1024], copied; NULL clears them. FL_ERR_ARG for a count out of range (m unchanged),
 * FL_ERR_NOMEM. Sessions already created keep their counts; the model file saves them. */
FL_API fl_status fl_model_set_planned_threads(fl_model *m, const int *threads);

/* How the two directions of a bidirectional layer share the layer's threads (2 or more; on one
 * thread they run in turn in any case). Results are bit-identical whichever runs; the faster one
 * depends on the machine's caches and the model, so `fastlstm plan` / `compress` time both and record
 * the faster in the model (metadata "bidir_schedule"). */
typedef enum fl_bidir_sched {
    FL_BIDIR_AUTO = 0,     /* sessions: the model's recorded schedule (fl_model_planned_bidir_sched);
                              a model: none recorded, which runs as FL_BIDIR_PARALLEL */
    FL_BIDIR_PARALLEL = 1, /* both directions at once, each on half of the layer's threads */
    FL_BIDIR_SERIAL = 2,   /* the directions in turn, each step split over all of the layer's threads:
                              one direction's W_hh hot at a time (faster where two do not fit the cache) */
} fl_bidir_sched;

/* "auto", "parallel", "serial" (the metadata values); "unknown" outside the enum. Static storage. */
FL_API const char *fl_bidir_sched_name(fl_bidir_sched sched);

/* The schedule recorded for the model's bidirectional layers: FL_BIDIR_PARALLEL or FL_BIDIR_SERIAL
 * when the planner (or fl_model_set_planned_bidir_sched) recorded one, FL_BIDIR_AUTO when none is
 * (sessions then run FL_BIDIR_PARALLEL), and for a NULL model. */
FL_API fl_bidir_sched fl_model_planned_bidir_sched(const fl_model *m);

/* Record the schedule of m's bidirectional layers (FL_BIDIR_AUTO clears it); the model file saves it.
 * Sessions already created keep theirs. FL_ERR_ARG (m unchanged) for a NULL model, a value outside
 * the enum, or PARALLEL / SERIAL on a model without bidirectional layers. */
FL_API fl_status fl_model_set_planned_bidir_sched(fl_model *m, fl_bidir_sched sched);

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
 * else `method` for the LSTM gate matrices of both directions, SVD for a projection weight_hr when
 * `method` is SVD (dense otherwise: it has no gate axis for CP), and SVD for the head when
 * include_head. A target's
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
 * head or on a projection, an all-zero matrix), FL_ERR_NUMERIC (LAPACK failure, or a CP
 * tol not reachable within the dense parameter count), FL_ERR_NOMEM; fl_last_error() names the
 * matrix. On error *out is NULL. The caller owns *out. */
FL_API fl_status fl_model_decompose(const fl_model *m, const fl_decomp_opts *opts, fl_model **out);

/* ---------------------------------------------------------------- inference */

typedef struct fl_session fl_session;

/* How a layer direction's recurrent steps are split over its threads (2 or more; a bidirectional
 * layer's directions under FL_BIDIR_SERIAL, or each direction's half under FL_BIDIR_PARALLEL). The
 * results are bit-identical whichever runs. Layers with a projection (LSTMP), the LSTM extras and int8 /
 * bf16 W_hh always run FL_STEP_BLOCKS, and so does a batch of one row. */
typedef enum fl_step_sched {
    FL_STEP_AUTO = 0,   /* sessions: the model's recorded schedule (fl_model_planned_step_sched), rows
                           only where the batch has at least 2 rows per thread; when none is recorded,
                           FL_STEP_ROWS where the batch has 2 rows per thread, W_hh takes at most 8 MiB
                           and is decomposed (it stays in the last-level cache while every thread
                           streams all of it) and a step is large enough to be split at all, else
                           FL_STEP_BLOCKS (the rule and the measurements behind it:
                           src/core/session.c). A model: none recorded */
    FL_STEP_BLOCKS = 1, /* every step's hidden units split over the threads: one sync per step, each thread
                           streams its share of W_hh */
    FL_STEP_ROWS = 2,   /* the batch rows split over the threads (sorted by length, about equal steps each),
                           each thread running every step of its rows with the whole W_hh: no sync until
                           the layer direction ends */
} fl_step_sched;

/* "auto", "blocks", "rows" (the metadata "step_schedule" values); "unknown" outside the enum. Static
 * storage. */
FL_API const char *fl_step_sched_name(fl_step_sched sched);

/* The step schedule recorded in the model: FL_STEP_BLOCKS or FL_STEP_ROWS when the planner (`fastlstm
 * plan` / `compress` with timing on, which times the chosen plan on both where a layer splits its
 * steps over 2 or more threads and the serving batch has 2 rows per thread) or
 * fl_model_set_planned_step_sched recorded one; FL_STEP_AUTO when none is (sessions then apply the
 * fixed rule above), and for a NULL model. The model file saves it (metadata "step_schedule"). */
FL_API fl_step_sched fl_model_planned_step_sched(const fl_model *m);

/* Record m's step schedule (FL_STEP_AUTO clears it); sessions created later with step_sched
 * FL_STEP_AUTO run it where it applies. Sessions already created keep theirs. FL_ERR_ARG (m unchanged)
 * for a NULL model or a value outside the enum. */
FL_API fl_status fl_model_set_planned_step_sched(fl_model *m, fl_step_sched sched);

typedef struct fl_session_opts {
    int max_batch;  /* largest batch (and number of streams) the session serves; default 1 */
    int max_seq;    /* largest sequence length for fl_session_run; default 256 */
    int threads;    /* worker threads; default 1; 0: the counts `fastlstm plan` / `compress` chose
                       for each layer of the model (saved in its metadata, see
                       fl_model_planned_threads), 1 when it has none */
    fl_bidir_sched bidir_sched; /* schedule of the bidirectional layers on 2 or more threads; default
                                   FL_BIDIR_AUTO: the model's recorded one (parallel when none) */
    fl_step_sched step_sched;   /* split of each layer direction's steps over its threads; default
                                   FL_STEP_AUTO */
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

/* Threads session s runs layer `layer`'s steps (and input projection) on: the session's count when
 * it was created with threads > 0 or set by fl_session_set_threads, else the model's planned count
 * for that layer (fl_model_planned_threads, 1 when none); layer -1: the most any layer uses. A
 * bidirectional layer's count covers both directions. 0 for a NULL session or a layer out of range. */
FL_API int fl_session_threads(const fl_session *s, int layer);

/* Switch the schedule of s's bidirectional layers for every later fl_session_run (FL_BIDIR_AUTO: the
 * model's recorded one); results are bit-identical whichever runs. A unidirectional model has one
 * schedule: FL_OK, nothing changes. FL_BIDIR_SERIAL starts each layer direction's own worker threads
 * (freed by a switch back or fl_session_free). FL_ERR_ARG for a NULL session or a value outside the
 * enum; FL_ERR_NOMEM (nothing changed) when the threads or their scratch cannot be had. */
FL_API fl_status fl_session_set_bidir_sched(fl_session *s, fl_bidir_sched sched);

/* Switch how s splits each layer direction's steps over its threads, for every later fl_session_run
 * (fl_session_step, one step at a time, always splits the hidden units); FL_STEP_AUTO: the model's
 * recorded schedule as it is now, else the rule. Results are bit-identical whichever runs. FL_ERR_ARG for a NULL session or a value outside the enum. */
FL_API fl_status fl_session_set_step_sched(fl_session *s, fl_step_sched sched);

/* The schedule s runs its bidirectional layers on: FL_BIDIR_PARALLEL or FL_BIDIR_SERIAL (PARALLEL for a
 * unidirectional model or a NULL session). */
FL_API fl_bidir_sched fl_session_bidir_sched(const fl_session *s);

typedef enum fl_layout {
    FL_BATCH_MAJOR = 0, /* x (B, T, D), tokens (B, T), y (B, T, *) — PyTorch batch_first=True */
    FL_TIME_MAJOR = 1,  /* x (T, B, D), tokens (T, B), y (T, B, *) */
} fl_layout;

/* One call of fl_session_run. Exactly one of x / tokens is set (tokens iff the model has an
 * embedding). States are shaped like PyTorch's h_n / c_n: h (L*dirs, B, out) and c (L*dirs, B, H),
 * row 2*l + d for layer l, direction d of a bidirectional model (l for a unidirectional one);
 * out = proj when the model has a projection, else H (see fl_arch). Outputs of a model without a
 * head are (B, T, dirs*out), forward then reverse features of each step, as PyTorch.
 *
 * lengths (B) gives each sequence's valid length in [1, T] (pack_padded_sequence semantics): steps
 * past a sequence's length are ignored, their outputs (no head or a per-step head) are zero, h_n / c_n
 * hold each sequence's state at its last valid step, the reverse direction starts at each sequence's
 * own last step, and a last-step head reads each sequence's last valid step. Sorted or unsorted
 * lengths give the same results; the work is that of the valid steps only (sequences sorted by
 * length internally, each step runs on the sequences still active). NULL: every length is T. */
typedef struct fl_run_io {
    fl_layout layout;
    int batch, seq;
    const float *x;         /* features, (B, T, D) or (T, B, D) */
    const int32_t *tokens;  /* token ids, (B, T) or (T, B); each in [0, vocab) */
    const float *h0, *c0;   /* (L, B, H) initial state, or NULL for zeros */
    float *y;               /* output, fl_run_output_size() floats (see below) */
    float *hn, *cn;         /* final state, or NULL; hn may be h0 and cn may be c0 */
    const int32_t *lengths; /* (B) valid length of each sequence, or NULL (all T); appended field */
} fl_run_io;

/* Number of floats fl_session_run writes to y: B*T*dirs*out (no head), B*T*V (per-step head),
 * B*C (last-step head). */
FL_API size_t fl_run_output_size(const fl_model *m, int batch, int seq);

/* Floats of one state array for a batch: h (L*dirs, B, out) when `cell` is 0, c (L*dirs, B, H) when
 * it is 1 (see fl_run_io). 0 for a NULL model or batch < 1. */
FL_API size_t fl_run_state_size(const fl_model *m, int batch, int cell);

/* Run whole sequences. Does not touch the streaming state. Inputs are checked (token range,
 * finite features, lengths in [1, T]: FL_ERR_ARG naming the sequence); on error nothing is written
 * to y. A bidirectional layer with threads >= 2 runs its two directions on two threads. */
FL_API fl_status fl_session_run(fl_session *s, const fl_run_io *io);

/* Streaming: advance streams 0..batch-1 by one time step, keeping (h, c) per stream (all zero at
 * create; see fl_session_reset, fl_session_set_state and fl_session_get_state).
 * x: (batch, D) features or tokens: (batch) ids. y: (batch, out) top hidden state when the model has
 * no head, else (batch, head_out) head output for this step. A model with bidirectional layers
 * cannot stream (the reverse direction needs the whole sequence): FL_ERR_UNSUPPORTED. */
FL_API fl_status fl_session_step(fl_session *s, int batch, const float *x, const int32_t *tokens,
                                 float *y);

/* Zero the streaming state of one stream, or of all streams when stream < 0. */
FL_API fl_status fl_session_reset(fl_session *s, int stream);

/* Read the streaming state of streams 0..batch-1 into h (L, B, out) and c (L, B, H), B = batch, the
 * layout of fl_run_io's hn / cn; either may be NULL (not both). Streams >= batch are not read.
 * Errors: FL_ERR_ARG (NULL session, batch outside [1, max_batch], h and c both NULL). */
FL_API fl_status fl_session_get_state(const fl_session *s, int batch, float *h, float *c);

/* Set the streaming state of streams 0..batch-1 from h (L, B, out) and c (L, B, H), B = batch (so the
 * hn / cn of an fl_session_run continue as a stream); NULL sets that half to zeros. Streams >= batch
 * keep their state. The arrays are copied; the session keeps no pointer.
 * Errors: FL_ERR_ARG (NULL session, batch outside [1, max_batch]), FL_ERR_NONFINITE (NaN or Inf in
 * h or c; fl_last_error() names the array and [layer, stream, unit]). On error the state is unchanged. */
FL_API fl_status fl_session_set_state(fl_session *s, int batch, const float *h, const float *c);

#ifdef __cplusplus
}
#endif
#endif /* FASTLSTM_H */
