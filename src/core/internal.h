/* Internal definitions shared by the library's modules. Not installed. */
#ifndef FL_INTERNAL_H
#define FL_INTERNAL_H

#include "fastlstm/fastlstm.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- errors */

/* Record the detail of an error on this thread and return the status, so callers can write
 * `return fl_fail(FL_ERR_FORMAT, "%s: bad magic", path);`. */
FL_API fl_status fl_fail(fl_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fl_clear_error(void);

/* Invariant check (never for bad input): prints file:line and aborts. */
#define FL_ASSERT(cond)                                                                  \
    do {                                                                                 \
        if (!(cond)) fl_assert_fail(#cond, __FILE__, __LINE__);                          \
    } while (0)
FL_API void fl_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));

/* ---------------------------------------------------------------- memory */

/* All library allocation goes through these; 64-byte aligned. fl_free accepts NULL.
 * Tests can make allocation fail after n successful calls (fl_alloc_fail_after(-1) disables). */
/* Exported from libfastlstm.so (not in the public headers) for the library's own separate component
 * libfastlstm_dist (src/train/mpi.c), as are fl_fail and fl_trainer_set_shard. */
FL_API void *fl_malloc(size_t bytes);
FL_API void *fl_calloc(size_t count, size_t size); /* zeroed, overflow-checked */
FL_API void fl_free(void *p);
FL_API void fl_alloc_fail_after(long n);

/* a*b without overflow; false on overflow. */
static inline bool fl_mul_ok(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return false;
    *out = a * b;
    return true;
}

/* ---------------------------------------------------------------- timing */

/* fl_now_seconds and fl_sort_doubles are public: fastlstm.h */

/* ---------------------------------------------------------------- random */

/* xoshiro256** seeded by splitmix64: deterministic across platforms. */
typedef struct fl_rng {
    uint64_t s[4];
} fl_rng;
void fl_rng_seed(fl_rng *r, uint64_t seed);
uint64_t fl_rng_next(fl_rng *r);
double fl_rng_uniform(fl_rng *r);              /* [0, 1) */
float fl_rng_uniform_range(fl_rng *r, float lo, float hi);
double fl_rng_normal(fl_rng *r);               /* N(0, 1) */

/* ---------------------------------------------------------------- model */

#define FL_FORMAT_NAME "fastlstm"
/* Model file format versions (safetensors __metadata__ "format_version"). A file names the lowest
 * version whose readers interpret it fully: fl_model_save writes 1 while every matrix is a forward
 * float32 weight_ih / weight_hh / head (all models today: version-1 readers ignore the per-matrix
 * "kind." / "direction." / "precision." keys a version-2 writer adds), and 2 once a matrix uses a
 * reverse direction, a projection or another precision, or the model has LSTM extras (lstm_ext.h). Loading refuses a file that needs a version
 * above FL_FORMAT_VERSION with FL_ERR_VERSION. See README "Model file". */
#define FL_FORMAT_VERSION 3
/* Version 3 (issue 11) adds the architecture keys "bidirectional", "proj" and "padding_idx" and the
 * matrices they bring (weight_*_reverse, weight_hr_l*); a file names it only when it uses one. */

#define FL_MAX_PLANNED_THREADS 1024 /* planned threads per layer (metadata "threads", "layer_threads") */

#define FL_TENSOR_NAME_MAX 48 /* fl_tensor.name */
#define FL_MAT_NAME_MAX 40    /* a matrix name, leaving room for a factor suffix (".U") */

/* One named tensor inside the model's flat parameter block. */
typedef struct fl_tensor {
    char name[FL_TENSOR_NAME_MAX]; /* state_dict name: "lstm.weight_ih_l0", "lstm.weight_ih_l0.U", ... */
    int ndim;          /* 1 or 2 */
    int64_t shape[2];
    size_t offset;     /* in floats, from model->params */
    size_t count;      /* shape[0] * shape[1] */
} fl_tensor;

/* One weight matrix W (rows x cols), applied as y = W x. For the LSTM gate matrices,
 * rows = 4H with the gates stacked i, f, g, o. */
typedef struct fl_mat {
    fl_method method;
    int rows, cols, rank;
    float *w;           /* dense: w (rows, cols) */
    float *u, *v;       /* svd:   u (rows, rank), v (rank, cols); W = U V */
    float *a, *b, *c;   /* cp:    a (4, rank), b (rows/4, rank), c (cols, rank);
                           W[g*H + i, j] = sum_r a[g,r] b[i,r] c[j,r] */
    double rel_error;   /* recorded at decomposition; 0 for dense; < 0 unknown */
    fl_precision precision; /* of the stored factors; F32 unless quantized (qmat.h) */
    struct fl_qfactor *qf;  /* [factors] the low-precision packed factors when precision != F32, owned;
                               the float pointers above then hold their dequantized values */
} fl_mat;

/* One direction of one LSTM layer. */
typedef struct fl_layer {
    int in, hidden;
    int out;            /* size of h_t: proj if the layer has a projection, else hidden */
    fl_mat wih;         /* (4H, in) */
    fl_mat whh;         /* (4H, out) */
    float *b_ih, *b_hh; /* (4H) each, as in PyTorch */
    fl_mat whr;         /* (P, H) projection weight_hr (h_t = W_hr (o * tanh(c_t))); rows 0 if none */
} fl_layer;

/* out and dirs of an architecture (see fl_arch in the public header). */
static inline int fl_arch_out(const fl_arch *a) { return a->proj > 0 ? a->proj : a->hidden; }
static inline int fl_arch_dirs(const fl_arch *a) { return a->bidirectional ? 2 : 1; }

struct fl_model {
    fl_arch arch;
    float *embed;       /* (vocab, input) or NULL */
    fl_layer *layer;    /* [layers * dirs]: layer l, direction d at l*dirs + d */
    fl_mat head;        /* (head_out, dirs * out); unused when arch.head == FL_HEAD_NONE */
    float *head_b;      /* (head_out) or NULL */
    float *params;      /* one 64-byte aligned block holding every tensor */
    size_t n_params;
    fl_tensor *tensors; /* [n_tensors], in file order */
    size_t n_tensors;
    char *tokenizer;    /* optional JSON text (vocabulary of a text model), owned; NULL if none */
    struct fl_lstm_ext *ext; /* peepholes / clip / input_forget (lstm_ext.h), owned; NULL if none */
    int planned_threads; /* worker threads the planner chose (metadata "threads"); 0: none */
    int *layer_threads;  /* [layers] threads the planner chose for each layer's steps (metadata
                            "layer_threads"), owned; NULL: planned_threads for every layer */
    fl_bidir_sched bidir_sched; /* schedule the planner chose for the bidirectional layers (metadata
                                   "bidir_schedule"); FL_BIDIR_AUTO: none (parallel) */
    fl_step_sched step_sched; /* split of the steps over a layer direction's threads the planner measured
                                 faster (metadata "step_schedule"); FL_STEP_AUTO: none (the fixed rule) */

    /* The layers' weights in the kernels' packed layouts, shared by every session on the model
     * (packed.c): made by the first session, freed with the last. Sessions only read the weights, so
     * these fields are the model's only state that changes through a const fl_model; pack_mu guards
     * them. */
    pthread_mutex_t pack_mu;
    int pack_users;            /* sessions holding packs */
    struct fl_rec_pack *packs; /* [layers], or NULL when no session exists */
    struct fl_head_pack *hpack; /* the head's (head.h), or NULL when no session exists */
    int weight_holds;          /* fl_model_weights_hold calls not yet undone */
    bool weights_released;     /* originals' pages were given back (W_hh, W_ih, head); packs hold them */
};

/* The packed weights of every layer of m ([layers], see fl_rec_pack in recurrent.h) and of its head
 * (*head, see head.h), packing them if no session holds them yet; thread-safe. Each successful call
 * is paired with fl_model_packs_release. */
fl_status fl_model_packs_acquire(const fl_model *m, const struct fl_rec_pack **out,
                                 const struct fl_head_pack **head);
void fl_model_packs_release(const fl_model *m);

/* While sessions exist, the originals of the dense W_hh matrices (and of packed W_ih and heads) live
 * only in the packed copy (packed.c): their memory reads as zeros. Every public function that reads
 * or writes a model's weights other than through a session brackets that access with hold / unhold:
 * hold writes the originals back (bit-identical) and keeps them there until unhold (and, if sessions
 * exist, until the last one goes). Thread-safe; holds nest. fl_model_weights_released tells whether
 * they are out now. */
void fl_model_weights_hold(const fl_model *m);
void fl_model_weights_unhold(const fl_model *m);
bool fl_model_weights_released(const fl_model *m);

/* ---- the one description of a model's matrices (matrices.c) */


/* One stored tensor of a matrix (a factor, or a bias it owns): state_dict name and shape. */
typedef struct fl_factor_desc {
    char name[FL_TENSOR_NAME_MAX]; /* "lstm.weight_ih_l0.U", "lstm.bias_hh_l0", "head.bias" */
    int rows, cols;                /* cols 1 for a bias (stored as a 1-D tensor) */
} fl_factor_desc;

/* Matrix i of an architecture. */
typedef struct fl_mat_desc {
    size_t index;          /* numbered as fl_model_num_matrices documents */
    fl_mat_kind kind;
    int layer;             /* LSTM layer; -1 for the head */
    int direction;         /* 0 forward, 1 reverse */
    fl_precision precision;
    int rows, cols;        /* the dense matrix W (rows, cols), applied as y = W x */
    bool gate;             /* rows are the 4 stacked gates i, f, g, o: CP applies */
    char name[FL_MAT_NAME_MAX]; /* "lstm.weight_ih_l0", "lstm.weight_hh_l1_reverse", "head.weight" */
    int n_bias;            /* biases stored right after this matrix's factors (0, 1 or 2) */
    fl_factor_desc bias[2];
} fl_mat_desc;

/* Number of weight matrices of architecture a (a checked by fl_arch_check, or at least layers >= 0). */
size_t fl_arch_num_matrices(const fl_arch *a);

/* Describe matrix i < fl_arch_num_matrices(a). */
void fl_arch_matrix(const fl_arch *a, size_t i, fl_mat_desc *d);

/* The tensors storing matrix d as spec s (dense: 1, SVD: U, V, CP: A, B, C), in file order, into f;
 * returns how many. s.method must be valid. */
int fl_mat_factors(const fl_mat_desc *d, fl_mat_spec s, fl_factor_desc f[3]);

/* Stored parameters of a rows x cols matrix kept as s (a negative rank counts as 0). */
size_t fl_spec_params(int rows, int cols, fl_mat_spec s);

/* Bytes of one stored element. */
size_t fl_precision_bytes(fl_precision p);

/* Names used in the model file: "ih", "hh", "head", "hr"; "f32", "bf16", "int8" (public). */
const char *fl_mat_kind_name(fl_mat_kind k);
const char *fl_precision_name(fl_precision p);

/* Lowest model-file format version that describes matrix d (see FL_FORMAT_VERSION). */
int fl_mat_format_version(const fl_mat_desc *d);

/* Validate an architecture (positive sizes, head consistent). */
fl_status fl_arch_check(const fl_arch *a);

/* Spec of matrix i of a model (method, rank). */
fl_mat_spec fl_model_mat_spec(const fl_model *m, size_t i);

/* Pointer to matrix i (numbered as in the public header). */
fl_mat *fl_model_mat(fl_model *m, size_t i);
const fl_mat *fl_model_mat_const(const fl_model *m, size_t i);

/* Find a tensor by name; NULL if absent. */
const fl_tensor *fl_model_find_tensor(const fl_model *m, const char *name);

/* Parameters and flops of one matrix applied to one vector. */
size_t fl_mat_params(const fl_mat *w);
size_t fl_mat_flops(const fl_mat *w);

/* Reconstruct the dense matrix of w into out (rows, cols). */
void fl_mat_to_dense(const fl_mat *w, float *out);

/* ---------------------------------------------------------------- compute */

/* C (M, N) = alpha * op(A) op(B) + beta * C, row-major, through CBLAS. The one GEMM entry point. */
void fl_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc);

/* y (n, cols), row stride ldy: every row += bias (cols). The runtime's bias pass after a projection
 * that cannot fuse its biases (SVD / CP / quantized W_ih, the head); the profile times it. */
void fl_add_bias_rows(float *y, size_t n, int cols, size_t ldy, const float *bias);
/* Index of the first NaN / Inf in p[0..n), or -1 (finite.c). */
long fl_find_nonfinite(const float *p, size_t n);

/* Floats of scratch fl_mat_apply needs for n input rows. */
size_t fl_mat_apply_workspace(const fl_mat *w, int n);

/* Y (n, rows) = X (n, cols) W^T + beta Y, for any storage method. ws: fl_mat_apply_workspace()
 * floats, may be NULL when that is 0. */
void fl_mat_apply(const fl_mat *w, int n, const float *x, int ldx, float beta, float *y, int ldy,
                  float *ws);

#endif
