/* Machine profile, fl_profile.run_reread: how much of a matrix read once per run a session finds in
 * memory, by the traffic streamed since its last read (the cost model's run cold start,
 * cost_run.c).
 *
 * A session reads each layer's W_ih once per run and its W_hh once per step, so between two runs'
 * reads of one W_ih the machine streams every W_hh T times. Whether the last level still holds the
 * W_ih then is not what the streaming curve says (that is a working set read over and over): it is
 * the level's replacement under that traffic, and its co-tenants'. So it is measured as a session
 * makes it: a matrix W is read once, then a second buffer O ("the W_hh") is streamed over and over
 * until the traffic reaches k times the last level's usable share C (k = 1/4, 1/2, 1, 2, 4:
 * fl_profile_reread_traffic), then W is read again and timed. The same read
 * right after reading W (hot) and after streaming one buffer of 4 C once (cold: no level holds
 * anything of W) bound it: run_reread[k] = (t_k - t_hot) / (t_cold - t_hot), held to [0, 1], the
 * median of REPS rounds (each round times all seven reads; rounds alternate the sides, so a
 * neighbour's moment slows them alike).
 *
 * Sizes: W 8 MiB (beyond a private L2, where a session's weights mostly are; at 4 MiB the hot and
 * cold reads differed by ~60 us, near the noise), O 8 MiB (a W_hh of hidden ~700), each at most
 * C / 8 so that W and O fit the level together on a small one; C from the measured last level
 * (after the knees). Here (knee 78 MB) it read 0.00-0.29 / 0.01-0.20 / 0.01-0.19 / 0.10-0.22 /
 * 0.36-0.49 at 11:10 and 0.00-0.09 / .. / 0.15-0.27 at 11:35 (session 14): the co-tenants' share
 * of the last level moves, and the profile reads it as it is. Not measured (all 0, the cost model then leaves the
 * term out) when that leaves W under 256 KiB, when hot and cold reads do not differ by 10% (the
 * level is no faster than memory for W), or on a profile with one level. About 0.5 s. */
#include "profile_internal.h"
#include "tuning_consts.h"

#include <stdint.h>
#include <string.h>

#define REPS 7

static volatile uint64_t sink;

/* Read n bytes of b (a multiple of 64), every 64-bit word: a streaming read the compiler vectorises. */
static void read_all(const uint64_t *b, size_t n) {
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (size_t i = 0; i < n / 8; i += 4) a0 ^= b[i], a1 ^= b[i + 1], a2 ^= b[i + 2], a3 ^= b[i + 3];
    sink = a0 ^ a1 ^ a2 ^ a3;
}

/* Stream `traffic` bytes through o (ob bytes): whole passes over it, the last one partial. */
static void stream(const uint64_t *o, size_t ob, double traffic) {
    for (double done = 0; done < traffic; done += (double)ob) {
        const double left = traffic - done;
        read_all(o, left < (double)ob ? ((size_t)left + 63) / 64 * 64 : ob);
    }
}

static double timed_read(const uint64_t *w, size_t wb) {
    const double t0 = fl_now_seconds();
    read_all(w, wb);
    return fl_now_seconds() - t0;
}

fl_status fl_profile_measure_reread(fl_profile *p) {
    enum { NK = FL_PROFILE_REREAD_POINTS };
    memset(p->run_reread, 0, sizeof p->run_reread);
    if (p->n_levels < 2) return FL_OK;
    const double C = FL_FIT_FRACTION * (double)p->level[p->n_levels - 1].bytes;
    size_t wb = (size_t)8 << 20, ob = (size_t)8 << 20;
    if ((double)wb > C / 8) wb = (size_t)(C / 8) / 64 * 64;
    if ((double)ob > C / 8) ob = (size_t)(C / 8) / 64 * 64;
    if (wb < ((size_t)256 << 10)) return FL_OK;
    const size_t cb = (size_t)(4 * C) / 64 * 64; /* the cold side's one long stream */
    uint64_t *buf = fl_malloc(wb + ob + cb);
    if (!buf) return fl_fail(FL_ERR_NOMEM, "out of memory measuring the re-read of a run's weights (%zu bytes)", wb + ob + cb);
    uint64_t *w = buf, *o = w + wb / 8, *cold = o + ob / 8;
    for (size_t i = 0; i < (wb + ob + cb) / 8; i++) buf[i] = i * 0x9E3779B97F4A7C15ull;
    double hot[REPS], cl[REPS], at[NK][REPS];
    for (int r = 0; r < REPS; r++) {
        read_all(w, wb);
        hot[r] = timed_read(w, wb);
        for (int k = 0; k < NK; k++) {
            read_all(w, wb);
            stream(o, ob, C * fl_profile_reread_traffic(k));
            at[k][r] = timed_read(w, wb);
        }
        read_all(w, wb);
        read_all(cold, cb);
        cl[r] = timed_read(w, wb);
    }
    double th, tc;
    fl_profile_curve_median(hot, REPS, 1, &th);
    fl_profile_curve_median(cl, REPS, 1, &tc);
    if (tc > 1.1 * th)
        for (int k = 0; k < NK; k++) {
            double tk;
            fl_profile_curve_median(at[k], REPS, 1, &tk);
            const double f = (tk - th) / (tc - th);
            p->run_reread[k] = f < 0 ? 0 : f > 1 ? 1 : f;
        }
    fl_free(buf);
    return FL_OK;
}
