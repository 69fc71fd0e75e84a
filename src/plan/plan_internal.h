/* Internal pieces of the planner: judging a candidate model against the dense one. */
#ifndef FL_PLAN_INTERNAL_H
#define FL_PLAN_INTERNAL_H

#include "internal.h"
#include "fastlstm/plan.h"

typedef struct fl_eval fl_eval;

/* Validate data (NULL: random inputs, the deviation metric) against the reference model ref
 * (shape, ranges, finiteness), pick the metric, and compute the reference outputs / metric. A
 * language model reads data's rows in order as one stream; sequences with lengths (data->lengths)
 * run with them, left-padded rows shifted to valid-steps-first. Keeps pointers into data (borrowed for
 * the life of the evaluator) and to ref. Errors as fl_plan_create. */
fl_status fl_eval_create(const fl_model *ref, const fl_plan_opts *o, const fl_plan_data *data, fl_eval **out);
/* View of a data set as plan data (a token stream: one row; a classification set with its lengths,
 * fl_dataset_lengths). Borrowed from d. */
fl_status fl_plan_data_of(const fl_dataset *d, fl_plan_data *out);
/* Sequences (classifier, deviation) or scored tokens (language model) judged. */
size_t fl_eval_count(const fl_eval *e);

/* Paired comparison of candidate c with the reference on e's data (accuracy or perplexity metric):
 * metric, paired loss (points lost; relative perplexity increase), its standard error and the upper
 * bound loss + z * se (LM: exp(mean + z * se) - 1 on the per-token log-loss difference). */
typedef struct fl_eval_cert {
    double metric, loss, se, bound;
} fl_eval_cert;
fl_status fl_eval_certify(fl_eval *e, const fl_model *c, double z, fl_eval_cert *out);
/* Split validation data into search and certify parts (the rule of fl_dataset_split: a language
 * model's stream by position, its last `fraction` certifying; sequences by a permutation seeded by
 * seed; each keeps its label and length). The parts point into *owned (free with fl_free) or, for a
 * stream, into d. */
fl_status fl_plan_data_split(const fl_plan_data *d, bool stream, double fraction, uint64_t seed,
                             fl_plan_data *first, fl_plan_data *second, void **owned);
/* x with P(N(0,1) <= x) = p. */
double fl_normal_quantile(double p);
void fl_eval_free(fl_eval *e);

fl_plan_metric fl_eval_metric_kind(const fl_eval *e);
double fl_eval_budget(const fl_eval *e);
double fl_eval_ref_metric(const fl_eval *e);

/* Run candidate c (same architecture as the reference) over the data: *metric (accuracy %,
 * perplexity or deviation) and *loss (accuracy points lost, relative perplexity increase, deviation). */
fl_status fl_eval_run(fl_eval *e, const fl_model *c, double *metric, double *loss);

/* Median seconds per time step of fl_session_run on m at (batch, seq) with `threads`, over reps
 * timed runs after one warm-up, on seeded random inputs. */
fl_status fl_plan_time_model(const fl_model *m, int batch, int seq, int threads, int reps, uint64_t seed,
                             double *seconds);

/* One timing of option j of a measured comparison (a model as the plan would run it, on some
 * threads or schedule): seconds per step into *s. */
typedef fl_status (*fl_time_option_fn)(void *ctx, int j, double *s);

/* n options timed in `rounds` interleaved rounds (eval.c): round r times every option once, in
 * order 0..n-1 on even rounds and n-1..0 on odd ones. out[0] is the median of option 0's rounds,
 * out[j] that times the median over rounds of option j's time over option 0's in the same round
 * (medians: the upper middle one for an even count): option j's time paired with option 0's, so
 * comparing out[] compares paired ratios. On a VM that runs at two speeds in spells (its host's
 * other tenants: profile_speed.c), a spell then slows the rounds it covers for every option alike,
 * where a block of timings per option let one spell decide a comparison, and even plain medians
 * over interleaved rounds still flip when a spell covers a round's later options and not its
 * earlier ones. At most 64 rounds. */
fl_status fl_time_interleaved(int n, int rounds, fl_time_option_fn fn, void *ctx, double *out);

/* Cost of splitting one recurrent step across curve_all_threads threads, read off the profile's
 * two streaming curves (cost.c); 0 without both. */
double fl_cost_thread_sync(const fl_profile *p);

/* Hidden size of the layer the profile measures the SVD / CP efficiencies on (W_ih and W_hh (4H, H)),
 * at ranks H/16 and H/4 (measure_methods, profile.c; the cost model places a candidate's W_hh
 * between those two shapes by its bytes, cost.c). */
#define FL_PROFILE_EFF_HIDDEN 1024

/* Seconds of the cell update per hidden unit and batch row at batch `batch` (one thread): p's
 * cell_seconds_b1 at 1, linear in log B to cell_seconds at 16, cell_seconds from 16 on; without a
 * batch-1 figure (0, older profiles) cell_seconds at every batch. */
double fl_cost_cell_seconds(const fl_profile *p, int batch);

/* Multiply-adds of the product fl_profile.thread_scale_pk[k] is measured on (k <
 * FL_PROFILE_GEMM_POINTS): 16 << 2k rows of a (2048, 64) W_ih (profile_rates.c). */
double fl_profile_pk_macs(int k);

/* Index of the smallest level holding `bytes` on `threads` threads (-1: DRAM) and its streaming
 * rate in *bw, as the cost model places a working set (cost.c). */
int fl_cost_pick_level(const fl_profile *p, double bytes, int threads, double *bw);

/* Speed-up of a recurrent step split across `threads` at `rows` rows (the profile's
 * thread_scale_rec, else the thread count; cost.c). */
double fl_cost_rec_scale(const fl_profile *p, int threads, double rows);

/* The f32 SVD / CP step priced by its parts (cost_lowrank.c: the model). */
bool fl_cost_has_lowrank(const fl_profile *p); /* p has the lr_* figures */
/* Table t (fl_profile.lr_proj_seconds or lr_panel_seconds[m]) at `rank` and `rows`: linear in the
 * rank between the grid's ranks (16 << j), along the last segment beyond them (never below the last
 * rank's figure), the first rank's figure below it; linear in log rows between 1, 4, 16, 64, 256,
 * held outside. */
double fl_cost_lr_table(const double (*t)[FL_PROFILE_LR_ROWS], double rank, double rows);
/* The share (0..1) of a low-rank step's kernel figures taken from the far tables
 * (fl_profile.lr_*_far_seconds) for a thread's working set of `bytes`: 0 up to the private level's
 * measured capacity, beyond it the share of the bytes the one-thread curve reads from beyond that
 * level (cost_lowrank.c: why); 0 without far tables or without a level beyond the private one. */
double fl_cost_lr_far_share(const fl_profile *p, double bytes);
typedef struct fl_lr_cost {
    double dup_mem, dup_comp; /* the rank-R projection: every thread its own, at its rows */
    double mem, comp;         /* the gate panel with its cell update (split: each thread's share) */
    double serial;            /* the gx copy, and a split step's sync */
} fl_lr_cost;
/* One f32 step of method m (SVD or CP) at rank R, hidden H, K inputs to V, `batch` rows on tt
 * threads (1: one thread; by_rows: fl_rows_auto's split by rows, else by blocks, paying `sync`). */
void fl_cost_lowrank_step(const fl_profile *p, fl_method m, int H, int K, int R, int batch, int tt, bool by_rows,
                          double sync, fl_lr_cost *out);

/* The f32 SVD / CP input projection priced by its stages (cost_lowrank_ih.c: the model). */
bool fl_cost_has_lowrank_ih(const fl_profile *p); /* p has the lr_ih_* figures */
/* Seconds per sequence of an f32 W_ih of method m (SVD or CP), (4H, in) at rank R, on n = T B rows:
 * stage 1 (x V^T, or x C) on t1 threads into out->dup_mem / dup_comp, stage 2 (t U^T + b, or the
 * four gates' zs B^T + b) on t2 into out->mem / comp (the runtime's thread counts for each, by its
 * rule on each product's multiply-adds); scale1 / scale2 the profile's speed-up of a projection
 * split over t1 / t2 threads at n rows (1 on one thread); out->serial 0. */
void fl_cost_lowrank_ih(const fl_profile *p, fl_method m, int H, int in, int R, double n, int t1, int t2,
                        double scale1, double scale2, fl_lr_cost *out);
/* Seconds a row and 64-column panel stage 2 of an input projection of `bytes` (input rows, gx,
 * weights) takes beyond its table figure: its output's writes once the last level no longer keeps
 * them (p's lr_ih_walk_*, linear between the walks, held beyond the last; 0 without them). */
double fl_cost_lowrank_ih_write(const fl_profile *p, double bytes);

/* Index of the largest private level (no two cores share it) below the last, the level a core's
 * working set spills out of; 0 when there is none (the last level itself when it is the only one).
 * Levels grow; p has at least one. */
static inline int fl_profile_private_level(const fl_profile *p) {
    int priv = 0;
    for (int i = 1; i < p->n_levels - 1; i++)
        if (p->level[i].shared_cpus <= 1) priv = i;
    return priv;
}

/* A run's cold start (cost_run.c): the fraction f of a run's weights that its first reads find in
 * memory, from the run's traffic (bytes streamed between two runs' reads of one matrix) and the
 * profile's run_reread (0 without it); and the
 * extra seconds per step that costs a matrix of `bytes` on `threads` threads: amortised (W_ih, head:
 * read once per run, mem / comp its roofline terms per step; 0, 0 for one priced with its weights in
 * cache) or a W_hh (its first step of the run). */
double fl_cost_run_fraction(const fl_profile *p, double traffic);
/* The traffic of fl_profile.run_reread[k], in the last level's usable shares: 1/4 .. 4. */
static inline double fl_profile_reread_traffic(int k) { return 0.25 * (double)(1 << k); }
double fl_cost_run_start(const fl_profile *p, double f, bool amortised, double bytes, int seq, int threads,
                         double mem, double comp);

/* A session run's activations (cost_act.c): fl_act_footprint, the bytes of its buffers at (batch,
 * seq) (input and its packed copy, one layer's gx per direction, two layers' outputs, y);
 * fl_act_traffic, the bytes a step moves through them on one of `threads` threads (the input's scan
 * and copy, each layer's gx written and read, its input read, its output written, y; the layers'
 * part split over the threads); fl_cost_act_seconds, the extra seconds a step pays for that traffic
 * at that footprint (the profile's act_* figures, 0 without them). */
double fl_act_footprint(const fl_arch *a, int batch, int seq);
double fl_act_traffic(const fl_arch *a, int batch, int threads);
bool fl_profile_has_act(const fl_profile *p);
double fl_cost_act_seconds(const fl_profile *p, const fl_arch *a, int batch, int seq, int threads);

/* A measured curve's rate at `bytes` (cb ascending, n >= 1 points): linear in log(bytes) between
 * points, the end points' rates beyond them (cost.c). */
double fl_cost_curve_at(const size_t *cb, const double *cbw, int n, double bytes);

/* Flop rate of the runtime's dense input projection (fl_rec_input: packed where the kernel level can,
 * else fl_mat_apply) on n rows of a (2048, 1024) W_ih, the pick-th fastest of reps <= 16 timings
 * (profile_pair.c; the profile's gemm_rows_flops). */
fl_status fl_profile_rows_rate(int n, int reps, int pick, double *flops);

/* Hidden size Hr of the dense step the profile pairs an SVD / CP step with: 16 Hr^2 ~ `bytes` (the
 * method's W_hh factors), a multiple of 16, at least 16 (profile_pair.c). */
int fl_profile_reference_hidden(double bytes);

/* A method's efficiency from n >= 1 alternate timings of it (tm) and of a dense reference (tr):
 * (pred_m / min tm) / (pred_ref / min tr), pred_* the cost model's efficiency-1 predictions of each;
 * 1.0 when any figure is not positive (profile_pair.c). */
double fl_profile_paired_efficiency(double pred_m, const double *tm, double pred_ref, const double *tr, int n);

/* Efficiency of the input projection w as a session runs it (fl_rec_input_ws on mr, an fl_rec of w's
 * layer: an SVD W_ih's packed factors; fl_mat_apply where that declines, e.g. CP) on `rows` rows,
 * paired with the dense W_ih refw as the runtime runs it (fl_rec_input on ref, an fl_rec of refw's layer; fl_mat_apply without a
 * packed kernel), n <= 16 alternate samples of each; x (rows, max(cols)), y (rows, max(rows)), ws w's
 * fl_mat_apply workspace for rows: fl_profile_paired_efficiency with the flops as predictions
 * (profile_pair.c). */
typedef struct fl_rec fl_rec;
double fl_profile_gemm_efficiency(const fl_mat *w, fl_rec *mr, fl_rec *ref, const fl_mat *refw, int rows,
                                  const float *x, float *y, float *ws, int n);

#endif
