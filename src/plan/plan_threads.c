/* The planner's thread counts, per layer (step 5 of plan.c).
 *
 * With fl_plan_opts.threads = 0 each layer's steps get their own count: the cost model's terms are
 * separate per layer (its W_ih projection, its W_hh steps and cell update run on the layer's threads,
 * the head on the top layer's), so choosing each layer's fastest count from 1 to max_threads, the others fixed,
 * gives the fastest assignment in one pass; ties go to fewer threads. A small decomposed layer then
 * stays on one thread while a large one splits. When the planner times candidates, the chosen one is
 * also timed with its per-layer counts and with every uniform count, and the measured fastest is
 * kept. Every such comparison (these, the schedules below, verify's candidates in plan.c) times its
 * settings in interleaved rounds (fl_time_interleaved), one run of each a round: on a VM that runs
 * at two speeds in spells, a block of runs per setting let a spell decide it. The chosen model
 * records the counts (fl_model_set_planned_threads: metadata "layer_threads"), and a session created
 * with threads = 0 runs each layer on its own.
 *
 * A bidirectional layer on 2 or more threads runs its directions on one of two schedules (parallel:
 * one per half of the threads; serial: in turn, each on all of them; session.c), and which is faster
 * depends on the caches and the model (two W_hh that overflow the last level together favour serial),
 * so there is no cost model for it: every timing above whose counts split a layer (the chosen counts,
 * planned or given, and each uniform count from 2) is taken on both schedules, the faster stands for
 * the counts, and the schedule of the fastest such timing is recorded (fl_model_set_planned_bidir_sched:
 * metadata "bidir_schedule"), the winner's when the winner splits a layer. Not timing: none recorded
 * (sessions run parallel).
 *
 * A layer direction on 2 or more threads runs its steps by blocks (every step's hidden units split,
 * a sync per step) or by rows (each thread all steps of its own batch rows with the whole W_hh; session.c),
 * and which is faster again depends on the caches (every thread streams all of W_hh by rows) and the
 * co-tenants' load, so the runtime's fixed rule (fl_rows_auto, tuning_consts.h, set from this one VM's
 * figures) is only the default. When the planner times, the chosen candidate, at its final counts and
 * bidirectional schedule, is also timed on both step schedules wherever some layer splits its steps over
 * N >= 2 threads, the serving batch has FL_ROWS_MIN_PER_THREAD rows per thread (B >= 2 N) and its W_hh
 * can run by rows (f32 or CP, no projection: fl_rec_rows_ok), and the faster is recorded
 * (fl_model_set_planned_step_sched: metadata "step_schedule"), its time the candidate's measured one; a
 * session with FL_STEP_AUTO then runs it (session_sched.c). Not timing: none recorded (the fixed rule).
 * The cost model (cost.c) still prices the fixed rule, recorded schedule or not: the counts above are
 * chosen on it, and the step schedule only after them. */
#include "plan_state.h"
#include "tuning_consts.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

fl_status plan_layer_threads(const fl_plan *p, const fl_mat_spec *specs, const fl_precision *prec, int batch,
                             int *lt, fl_cost *c) {
    const int L = p->arch.layers;
    if (p->o.threads > 0) {
        for (int l = 0; l < L; l++) lt[l] = p->o.threads;
        return fl_cost_predict_prec(&p->prof, &p->arch, specs, prec, batch, p->o.seq, p->o.threads, c, NULL);
    }
    for (int l = 0; l < L; l++) lt[l] = 1;
    fl_status st = fl_cost_predict_layers(&p->prof, &p->arch, specs, prec, batch, p->o.seq, lt, c, NULL);
    for (int l = 0; l < L && !st; l++) {
        int best = 1;
        for (int t = 2; t <= p->max_threads && !st; t++) {
            fl_cost ct;
            lt[l] = t;
            st = fl_cost_predict_layers(&p->prof, &p->arch, specs, prec, batch, p->o.seq, lt, &ct, NULL);
            if (!st && ct.seconds < c->seconds) *c = ct, best = t;
        }
        lt[l] = best;
    }
    return st;
}

/* Set pt's model m up to run as the plan would run it: each layer on its planned count (threads
 * planned; the timing then asks for p->o.threads = 0), or on the given count. */
fl_status plan_time_setup(fl_plan *p, const fl_plan_point *pt, fl_model *m) {
    if (p->o.threads > 0) return FL_OK;
    fl_cost c;
    fl_status st = plan_layer_threads(p, pt->specs, pt->precisions, p->o.batch, p->lt_scratch, &c);
    return st ? st : fl_model_set_planned_threads(m, p->lt_scratch);
}

static bool multi(const int *lt, int L) {
    for (int l = 0; l < L; l++)
        if (lt[l] >= 2) return true;
    return false;
}

/* One way to run the chosen model that plan_choose_threads compares by timing: its thread counts (t
 * 0: the planned or given ones, p->lt; else t for every layer, threads planned), its bidirectional
 * schedule and its step schedule (FL_STEP_AUTO: the runtime's rule). */
typedef struct setting {
    int t;
    bool serial;
    fl_step_sched step;
} setting;

typedef struct setting_set {
    fl_plan *p;
    fl_model *m;
    const setting *s;
} setting_set;

/* One timed run of m on setting j (fl_time_interleaved's option). */
static fl_status time_setting(void *ctx, int j, double *sec) {
    const setting_set *ss = ctx;
    fl_plan *p = ss->p;
    const setting *s = &ss->s[j];
    fl_status st = FL_OK;
    if (p->o.threads == 0) {
        for (int l = 0; l < p->arch.layers; l++) p->lt_scratch[l] = s->t ? s->t : p->lt[l];
        st = fl_model_set_planned_threads(ss->m, p->lt_scratch);
    }
    if (!st) st = fl_model_set_planned_bidir_sched(ss->m, s->serial ? FL_BIDIR_SERIAL : FL_BIDIR_AUTO);
    if (!st) st = fl_model_set_planned_step_sched(ss->m, s->step);
    return st ? st : fl_plan_time_model(ss->m, p->o.batch, p->o.seq, p->o.threads, 1, p->o.seed, sec);
}

/* The n settings of pt's model timed in interleaved rounds (fl_time_interleaved: a slow spell of the
 * machine falls on a round of each, not on all the runs of one), each one's median into sec[]. */
static fl_status time_settings(fl_plan *p, const fl_plan_point *pt, const setting *s, int n, double *sec) {
    fl_model *m;
    fl_status st = plan_build_model(p, pt->specs, pt->precisions, &m);
    if (st) return st;
    st = fl_time_interleaved(n, p->o.verify_reps, time_setting, &(setting_set){p, m, s}, sec);
    fl_model_free(m);
    return st;
}

/* The two schedules' timings of the thread counts whose faster one is the fastest seen with a layer
 * on 2 or more threads; its schedule is the plan's (the winner's when the winner splits a layer). */
typedef struct sched_pair {
    double par, ser; /* seconds per step; par < 0: none yet */
    const char *where;
    int t;
} sched_pair;

static void note_pair(sched_pair *b, double par, double ser, const char *where, int t) {
    if (b->par < 0 || fmin(par, ser) < fmin(b->par, b->ser)) *b = (sched_pair){par, ser, where, t};
}

/* Whether pt at the plan's counts splits some layer direction's steps over N >= 2 threads (a
 * bidirectional layer's directions on the parallel schedule get half of its count each) with B >= 2 N
 * rows, on a W_hh that can run by rows (f32 or CP; no projection, no LSTM extras). */
static bool rows_here(const fl_plan *p, const fl_plan_point *pt) {
    if (p->arch.proj > 0 || p->src->ext) return false;
    const bool halves = p->arch.bidirectional && p->bidir_sched != FL_BIDIR_SERIAL;
    for (size_t i = 0; i < p->nmat; i++) {
        fl_mat_desc d;
        fl_arch_matrix(&p->arch, i, &d);
        const int lt = d.kind == FL_MAT_HH ? p->lt[d.layer] : 0, n = halves ? lt / 2 : lt;
        const bool f32 = pt->specs[i].method == FL_METHOD_CP || pt->precisions[i] == FL_PRECISION_F32;
        if (n >= 2 && p->o.batch >= FL_ROWS_MIN_PER_THREAD * n && f32) return true;
    }
    return false;
}

/* Time the chosen pt at its final counts and bidirectional schedule by rows and by blocks; keep the
 * faster (p->step_sched) and its time. */
static fl_status choose_step_sched(fl_plan *p, fl_plan_point *pt) {
    const bool ser = p->bidir_sched == FL_BIDIR_SERIAL;
    const setting s[2] = {{0, ser, FL_STEP_ROWS}, {0, ser, FL_STEP_BLOCKS}};
    double t[2];
    fl_status st = time_settings(p, pt, s, 2, t);
    if (st) return st;
    p->step_sched = t[0] < t[1] ? FL_STEP_ROWS : FL_STEP_BLOCKS;
    pt->measured_seconds = fmin(t[0], t[1]);
    plan_progress(p, "step schedule: %s kept (chosen candidate at its %s threads: rows %.3g us/step, blocks %.3g us/step)",
                  fl_step_sched_name(p->step_sched), p->o.threads > 0 ? "given" : "planned", t[0] * 1e6, t[1] * 1e6);
    return FL_OK;
}

fl_status plan_choose_threads(fl_plan *p) {
    fl_plan_point *pt = &p->pts[p->chosen];
    const int L = p->arch.layers;
    const bool bidir = p->arch.bidirectional, uniform = p->o.threads == 0 && p->max_threads >= 2;
    p->bidir_sched = FL_BIDIR_AUTO;
    fl_status st = plan_layer_threads(p, pt->specs, pt->precisions, p->o.batch, p->lt, &pt->cost);
    /* timed with threads planned: the planned counts against every uniform count; a bidirectional
     * model also on the serial schedule wherever a layer splits; all in interleaved rounds */
    const bool sched_here = bidir && multi(p->lt, L);
    if (st || pt->measured_seconds < 0 || (!uniform && !sched_here)) goto done;
    enum { MAX_SETTINGS = 2 * 64 + 2 };
    setting s[MAX_SETTINGS];
    double sec[MAX_SETTINGS];
    int n = 0;
    s[n++] = (setting){0, false, FL_STEP_AUTO};
    if (sched_here) s[n++] = (setting){0, true, FL_STEP_AUTO};
    for (int t = 1; uniform && t <= p->max_threads && n + 2 <= MAX_SETTINGS; t++) {
        bool same = true;
        for (int l = 0; l < L; l++) same &= p->lt[l] == t;
        if (same) continue;
        s[n++] = (setting){t, false, FL_STEP_AUTO};
        if (bidir && t >= 2) s[n++] = (setting){t, true, FL_STEP_AUTO};
    }
    if ((st = time_settings(p, pt, s, n, sec))) goto done;
    const char *where = p->o.threads > 0 ? "given" : "planned";
    sched_pair best = {.par = -1};
    pt->measured_seconds = sec[0];
    if (sched_here) {
        plan_progress(p, "chosen candidate at its %s threads, bidirectional schedule parallel: %.3g us/step, "
                      "serial: %.3g us/step", where, sec[0] * 1e6, sec[1] * 1e6);
        note_pair(&best, sec[0], sec[1], where, 0);
        pt->measured_seconds = fmin(sec[0], sec[1]);
    } else {
        plan_progress(p, "chosen candidate at its %s threads: measured %.3g us/step", where, sec[0] * 1e6);
    }
    for (int i = sched_here ? 2 : 1; i < n && !st; i++) {
        const int t = s[i].t;
        const bool pair = i + 1 < n && s[i + 1].serial;
        double v = sec[i];
        if (!pair) {
            plan_progress(p, "chosen candidate at %d thread(s) for every layer: measured %.3g us/step", t, v * 1e6);
        } else {
            plan_progress(p, "chosen candidate at %d thread(s) for every layer, bidirectional schedule parallel: "
                          "%.3g us/step, serial: %.3g us/step", t, v * 1e6, sec[i + 1] * 1e6);
            note_pair(&best, v, sec[i + 1], "uniform", t);
            v = fmin(v, sec[++i]);
        }
        fl_cost c;
        if (v < pt->measured_seconds &&
            !(st = fl_cost_predict_prec(&p->prof, &p->arch, pt->specs, pt->precisions, p->o.batch, p->o.seq, t, &c, NULL))) {
            for (int l = 0; l < L; l++) p->lt[l] = t;
            pt->cost = c;
            pt->measured_seconds = v;
        }
    }
    if (!st && best.par >= 0) {
        p->bidir_sched = best.ser < best.par ? FL_BIDIR_SERIAL : FL_BIDIR_PARALLEL;
        char at[48];
        if (best.t > 0) snprintf(at, sizeof at, "%d thread(s) for every layer", best.t);
        else snprintf(at, sizeof at, "its %s threads", best.where);
        plan_progress(p, "bidirectional schedule: %s kept (at %s: serial %.3g us/step, parallel %.3g us/step)",
                      fl_bidir_sched_name(p->bidir_sched), at, best.ser * 1e6, best.par * 1e6);
    }
done:
    p->threads = 1;
    for (int l = 0; l < L; l++)
        if (p->lt[l] > p->threads) p->threads = p->lt[l];
    p->step_sched = FL_STEP_AUTO;
    if (!st && pt->measured_seconds >= 0 && rows_here(p, pt)) st = choose_step_sched(p, pt);
    return st;
}

int fl_plan_layer_threads(const fl_plan *p, int layer) {
    return p && layer >= 0 && layer < p->arch.layers && p->lt ? p->lt[layer] : 0;
}
