/* Machine profile: cache capacities read off synthetic streaming curves (clean, noisy, no visible
 * L3, a reported 512 MiB L3 that the curve shows falling at 32 MiB), the measured levels replacing
 * the reported ones, the machine identity saved with a profile, and a profile of another CPU
 * refused (library and CLI) with a message that says how to refresh it. Nothing is timed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fastlstm/plan.h"
#include "plan/profile_internal.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)

/* The profile's ladder before session 14: 16 KiB * 2^(k/4), to 256 MiB (test_measured_vm_curve's
 * recorded curve has its 57 points); it now goes to 512 MiB (test_large_l3). */
#define NPTS 57
static size_t ladder(int k) { return (size_t)(16384.0 * pow(2.0, k / 4.0)); }

/* A machine's streaming curve: plateau bw[i] up to capacity cap[i] (n levels), then mem; a level's
 * rate falls over the quarter-octave after its capacity (one ladder point 70% of the way down). */
typedef struct machine {
    int n;
    size_t cap[4];
    double bw[4], mem;
} machine;

static double rate_at(const machine *m, size_t bytes) {
    for (int i = 0; i < m->n; i++) {
        if (bytes <= m->cap[i]) return m->bw[i];
        double next = i + 1 < m->n ? m->bw[i + 1] : m->mem;
        if ((double)bytes <= (double)m->cap[i] * 1.2) return next + 0.3 * (m->bw[i] - next); /* the fall */
    }
    return m->mem;
}

/* Largest ladder size <= cap: the knee a clean curve must give. */
static size_t ladder_floor(size_t cap) {
    size_t best = 0;
    for (int k = 0; k < NPTS; k++)
        if (ladder(k) <= cap) best = ladder(k);
    return best;
}

static void curve(const machine *m, double noise, uint64_t seed, size_t *bytes, double *bw) {
    uint64_t s = seed;
    for (int k = 0; k < NPTS; k++) {
        bytes[k] = ladder(k);
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        double u = (double)(s >> 11) / 9007199254740992.0; /* [0, 1) */
        bw[k] = rate_at(m, bytes[k]) * (1.0 + noise * (2 * u - 1));
    }
}

static const machine three = {3, {48 * KIB, 1 * MIB, 32 * MIB}, {200e9, 120e9, 80e9}, 36e9};

static void test_clean_three_levels(void **state) {
    (void)state;
    size_t b[NPTS];
    double bw[NPTS], mem;
    curve(&three, 0, 1, b, bw);
    fl_knee k[FL_PROFILE_MAX_LEVELS];
    int n = fl_profile_find_levels(b, bw, NPTS, k, FL_PROFILE_MAX_LEVELS, &mem);
    assert_int_equal(n, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(k[i].bytes, ladder_floor(three.cap[i]));
        assert_true(k[i].plateau == three.bw[i]);
    }
    assert_true(mem == three.mem);
}

/* A two-point dip inside L3 (a neighbour's burst seen by most passes) splits the curve, and the
 * rest of L3 streams at its old rate: no new level, L3 goes on to its real end. */
/* A last level that holds most of the 256 MiB ladder (session 14: co-tenants left a 2-vCPU Xeon
 * ~190 MB of its 260 MiB L3): on the old ladder the curve falls at its top point alone, so the L3
 * reads as memory and the last level found is the L2; on the profile's ladder to 512 MiB memory's
 * plateau shows, and the L3's knee is found. */
static void test_large_l3(void **state) {
    (void)state;
    enum { N = 61 };
    const machine big = {2, {1400 * KIB, 190 * MIB}, {130e9, 30e9}, 16e9};
    size_t b[N];
    double bw[N], mem;
    for (int k = 0; k < N; k++) b[k] = ladder(k), bw[k] = rate_at(&big, b[k]);
    fl_knee k[FL_PROFILE_MAX_LEVELS];
    int n = fl_profile_find_levels(b, bw, 57, k, FL_PROFILE_MAX_LEVELS, &mem); /* to 256 MiB */
    assert_int_equal(n, 1);
    assert_true(mem == 30e9);
    n = fl_profile_find_levels(b, bw, N, k, FL_PROFILE_MAX_LEVELS, &mem);
    assert_int_equal(n, 2);
    assert_int_equal(k[1].bytes, ladder_floor(190 * MIB));
    assert_true(k[1].plateau == 30e9 && mem == 16e9);
}

static void test_dip_inside_level(void **state) {
    (void)state;
    size_t b[NPTS];
    double bw[NPTS];
    curve(&three, 0, 1, b, bw);
    int d = 0;
    while (b[d] <= 8 * MIB) d++; /* the first ladder point past 8 MiB, well inside the 32 MiB L3 */
    bw[d] *= 0.5, bw[d + 1] *= 0.5;
    fl_knee k[FL_PROFILE_MAX_LEVELS];
    int n = fl_profile_find_levels(b, bw, NPTS, k, FL_PROFILE_MAX_LEVELS, NULL);
    assert_int_equal(n, 3);
    assert_int_equal(k[2].bytes, ladder_floor(three.cap[2]));
    assert_true(k[2].plateau == three.bw[2]);
}

static void test_noisy_three_levels(void **state) {
    (void)state;
    size_t b[NPTS];
    double bw[NPTS];
    for (uint64_t seed = 1; seed <= 20; seed++) {
        curve(&three, 0.08, seed, b, bw);
        bw[20] *= 0.55; /* one outlier deep in L2 (a preempted sample) */
        bw[12] *= 1.5;  /* and one too fast (128 KiB, in L2) */
        fl_knee k[FL_PROFILE_MAX_LEVELS];
        int n = fl_profile_find_levels(b, bw, NPTS, k, FL_PROFILE_MAX_LEVELS, NULL);
        assert_int_equal(n, 3);
        for (int i = 0; i < 3; i++) {
            /* within one ladder step of the true capacity */
            double r = (double)k[i].bytes / (double)three.cap[i];
            if (!(r > 0.8 && r < 1.25)) {
                print_error("seed %d level %d: knee %zu, capacity %zu\n", (int)seed, i + 1, k[i].bytes, three.cap[i]);
                fail();
            }
        }
    }
}

static void test_no_visible_l3(void **state) {
    (void)state;
    const machine two = {2, {48 * KIB, 1 * MIB}, {200e9, 120e9}, 36e9};
    size_t b[NPTS];
    double bw[NPTS], mem;
    curve(&two, 0.03, 7, b, bw);
    fl_knee k[FL_PROFILE_MAX_LEVELS];
    int n = fl_profile_find_levels(b, bw, NPTS, k, FL_PROFILE_MAX_LEVELS, &mem);
    assert_int_equal(n, 2);
    assert_int_equal(k[1].bytes, ladder_floor(1 * MIB));
    assert_true(mem > 30e9 && mem < 40e9);
    /* flat and too-short curves have no levels */
    for (int i = 0; i < NPTS; i++) bw[i] = 50e9;
    assert_int_equal(fl_profile_find_levels(b, bw, NPTS, k, FL_PROFILE_MAX_LEVELS, NULL), 0);
    assert_int_equal(fl_profile_find_levels(b, bw, 1, k, FL_PROFILE_MAX_LEVELS, NULL), 0);
}

/* A curve measured on the 2-vCPU Zen 3 VM (bench_plan's profile, 2026-11-30 20:38 UTC, co-tenants
 * present; GB/s at the ladder's sizes): L1 and L2 stream alike (one plateau to ~3 MB), a dip at
 * 3-8 MB inside the L3 share, the fall at 8 MB, then 11-24 MB at 1.2x memory's rate (the cache
 * still partly hit) before memory. It once gave L1 = 2.9 MB, L2 = 8 MB, L3 = 23.7 MB: the fall
 * counted as a level and the levels paired by position. Now: L1 and L2 as reported, the L3 share
 * 8 MiB, private per core (the all-cores curve falls at 13.5 MiB). */
static void test_measured_vm_curve(void **state) {
    (void)state;
    static const double one[NPTS] = {
        65.5, 58.0, 70.4, 60.4, 60.7, 46.1, 53.2, 58.9, 70.5, 80.5, 62.8, 65.1, 62.9, 60.7, 68.4, 63.6, 68.3,
        64.3, 71.1, 59.5, 54.0, 51.4, 46.7, 52.6, 52.0, 51.5, 61.3, 56.1, 50.7, 59.1, 49.3, 45.4, 48.0, 46.3,
        46.0, 43.2, 39.4, 34.5, 18.0, 19.4, 18.5, 16.1, 18.5, 14.7, 14.2, 17.3, 15.5, 15.5, 15.3, 13.2, 15.3,
        14.9, 15.0, 13.9, 14.6, 15.6, 14.5};
    static const double all[NPTS] = {
        61.3, 41.3, 58.7, 53.2, 64.3, 46.0, 51.9, 61.0, 69.2, 59.1, 63.0, 60.7, 73.7, 65.0, 69.0, 64.7, 70.5,
        68.0, 59.1, 65.6, 51.6, 78.5, 86.6, 85.2, 104.3, 82.0, 81.8, 81.9, 83.1, 82.1, 89.6, 89.5, 89.4, 91.5,
        89.7, 84.1, 84.5, 70.9, 73.6, 63.8, 48.3, 36.1, 32.9, 27.9, 24.3, 25.9, 20.2, 20.2, 24.1, 19.1, 19.4,
        20.5, 20.4, 21.3, 18.4, 18.7, 19.3};
    size_t b[NPTS];
    double bw1[NPTS], bwa[NPTS], mem = 0, mem_all = 0;
    for (int k = 0; k < NPTS; k++) b[k] = ladder(k), bw1[k] = one[k] * 1e9, bwa[k] = all[k] * 1e9;
    fl_knee k1[4], ka[4];
    const int n1 = fl_profile_find_levels(b, bw1, NPTS, k1, 4, &mem);
    const int na = fl_profile_find_levels(b, bwa, NPTS, ka, 4, &mem_all);
    assert_true(n1 >= 1 && na >= 1);
    assert_int_equal(k1[n1 - 1].bytes, ladder(36)); /* 8 MiB: the fall, not the 23.7 MB tail */
    assert_true(k1[n1 - 1].plateau >= FL_LEVEL_OVER_MEMORY * mem);
    assert_true(mem > 13e9 && mem < 17e9);
    assert_int_equal(ka[na - 1].bytes, ladder(39));
    fl_profile p;
    memset(&p, 0, sizeof p);
    p.cores = 2;
    const size_t rep[3] = {32 * KIB, 512 * KIB, 32 * MIB};
    for (int i = 0; i < 3; i++)
        p.level[i] = (fl_cache_level){.level = i + 1, .bytes = rep[i], .shared_cpus = i == 2 ? 2 : 1,
                                      .reported_bytes = rep[i]};
    p.n_levels = 3;
    fl_profile_apply_levels(&p, k1, n1, ka, na);
    assert_int_equal(p.n_levels, 3);
    assert_int_equal(p.level[0].bytes, 32 * KIB);
    assert_int_equal(p.level[1].bytes, 512 * KIB);
    assert_int_equal(p.level[2].level, 3);
    assert_int_equal(p.level[2].bytes, ladder(36));
    assert_int_equal(p.level[2].reported_bytes, 32 * MIB);
    assert_int_equal(p.level[2].all_cores_bytes, ladder(39));
    assert_int_equal(p.level[2].shared_cpus, 1);
}

/* A profile as glibc's sysconf reports this VM: 48 KiB L1, 1 MiB L2, 512 MiB L3. */
static void reported_vm(fl_profile *p) {
    memset(p, 0, sizeof *p);
    p->cores = 2;
    const size_t rep[3] = {48 * KIB, 1 * MIB, 512 * MIB};
    for (int i = 0; i < 3; i++)
        p->level[i] = (fl_cache_level){.level = i + 1, .bytes = rep[i], .shared_cpus = i == 2 ? 2 : 1,
                                       .reported_bytes = rep[i]};
    p->n_levels = 3;
}

/* p's one-thread curve: the one the knees applied to p were read off. */
static void set_curve(fl_profile *p, const size_t *b, const double *bw) {
    p->n_curve = NPTS;
    memcpy(p->curve_bytes, b, NPTS * sizeof *b);
    memcpy(p->curve_bandwidth, bw, NPTS * sizeof *bw);
}

/* The reported 1 MiB L2 inside a fall too gradual for the 80% rule (each step under 20%: 180 GB/s
 * to 32 KiB, 115 to 213 KiB, 100 to 1 MiB, 93 to 14 MB, then memory): the knees show the L1 and
 * one level to 14 MB; the curve falls across 1 MiB, so the L2 is kept there at the rate up to it
 * and the last level takes the rate past it. */
static void test_reported_level_inside_a_fall(void **state) {
    (void)state;
    size_t b[NPTS];
    double bw[NPTS];
    for (int k = 0; k < NPTS; k++) {
        b[k] = ladder(k);
        const double x = (double)b[k];
        bw[k] = 1e9 * (x <= 32 * KIB ? 180 : x <= 213 * KIB ? 115 : x <= 1 * MIB ? 100 : x <= 14e6 ? 93 : x <= 17e6 ? 55 : 35);
    }
    fl_knee k1[4];
    const int n1 = fl_profile_find_levels(b, bw, NPTS, k1, 4, NULL);
    assert_int_equal(n1, 2);
    assert_int_equal(k1[1].bytes, ladder_floor(14000000));
    fl_profile p;
    reported_vm(&p);
    fl_profile_apply_levels(&p, k1, n1, NULL, 0); /* without the curve: the L2 is not seen */
    assert_int_equal(p.n_levels, 2);
    reported_vm(&p);
    set_curve(&p, b, bw);
    fl_profile_apply_levels(&p, k1, n1, NULL, 0);
    assert_int_equal(p.n_levels, 3);
    assert_int_equal(p.level[0].bytes, ladder_floor(32 * KIB));
    assert_int_equal(p.level[1].level, 2);
    assert_int_equal(p.level[1].bytes, 1 * MIB);
    assert_int_equal(p.level[1].reported_bytes, 1 * MIB);
    assert_int_equal(p.level[1].shared_cpus, 1);
    assert_true(p.level[1].bandwidth == 115e9);
    assert_int_equal(p.level[2].level, 3);
    assert_int_equal(p.level[2].bytes, k1[1].bytes);
    assert_int_equal(p.level[2].reported_bytes, 512 * MIB);
    assert_true(p.level[2].bandwidth == 93e9);
    assert_int_equal(fl_profile_private_level(&p), 1);
}

/* The curve falls at 32 MiB although 512 MiB is reported: the measurement wins; the all-cores
 * curve doubles the private levels and not the shared one, which sets the sharing. */
static void test_reported_512_measured_32(void **state) {
    (void)state;
    fl_profile p;
    reported_vm(&p);
    const machine all = {3, {96 * KIB, 2 * MIB, 32 * MIB}, {380e9, 230e9, 140e9}, 60e9};
    size_t b[NPTS], b2[NPTS];
    double bw[NPTS], bw2[NPTS];
    curve(&three, 0.05, 3, b, bw);
    curve(&all, 0.05, 4, b2, bw2);
    fl_knee k1[4], k2[4];
    int n1 = fl_profile_find_levels(b, bw, NPTS, k1, 4, NULL), n2 = fl_profile_find_levels(b2, bw2, NPTS, k2, 4, NULL);
    assert_int_equal(n1, 3);
    assert_int_equal(n2, 3);
    fl_profile_apply_levels(&p, k1, n1, k2, n2);
    assert_int_equal(p.n_levels, 3);
    assert_int_equal(p.level[2].level, 3);
    assert_int_equal(p.level[2].bytes, 32 * MIB);
    assert_int_equal(p.level[2].reported_bytes, 512 * MIB);
    assert_int_equal(p.level[2].shared_cpus, 2);
    assert_int_equal(p.level[0].shared_cpus, 1);
    assert_int_equal(p.level[1].shared_cpus, 1);
    assert_int_equal(p.level[1].reported_bytes, 1 * MIB);
    assert_true(p.level[1].all_cores_bytes >= 2 * p.level[1].bytes * 8 / 10);
    /* no L3 on the curve: the reported 512 MiB level is dropped, L1 and L2 keep their numbers */
    reported_vm(&p);
    const machine two = {2, {48 * KIB, 1 * MIB}, {200e9, 120e9}, 36e9};
    curve(&two, 0, 5, b, bw);
    n1 = fl_profile_find_levels(b, bw, NPTS, k1, 4, NULL);
    fl_profile_apply_levels(&p, k1, n1, NULL, 0);
    assert_int_equal(p.n_levels, 2);
    assert_int_equal(p.level[1].level, 2);
    assert_int_equal(p.level[1].bytes, ladder_floor(1 * MIB));
    /* L2 and L3 stream alike (a VM's co-tenants leave 4 MiB of the L3): one level at 4 MiB, past the
     * reported 1 MiB L2, is the L3, whose reported size it keeps */
    reported_vm(&p);
    const machine flat = {2, {48 * KIB, 4 * MIB}, {200e9, 120e9}, 12e9};
    curve(&flat, 0.03, 5, b, bw);
    n1 = fl_profile_find_levels(b, bw, NPTS, k1, 4, NULL);
    assert_int_equal(n1, 2);
    set_curve(&p, b, bw); /* flat across the reported 1 MiB: no L2 kept */
    fl_profile_apply_levels(&p, k1, n1, NULL, 0);
    assert_int_equal(p.n_levels, 2);
    assert_int_equal(p.level[1].level, 3);
    assert_int_equal(p.level[1].bytes, ladder_floor(4 * MIB));
    assert_int_equal(p.level[1].reported_bytes, 512 * MIB);
    /* nothing found: the reported levels stay */
    reported_vm(&p);
    fl_profile_apply_levels(&p, k1, 0, NULL, 0);
    assert_int_equal(p.n_levels, 3);
    assert_int_equal(p.level[2].bytes, 512 * MIB);
}

/* Sharing judged by the best pass: three passes of the all-cores ladder on a machine whose two cores
 * have a private 1 MiB L2 each; in two the second vCPU is taken from the L2 on (that stretch
 * streams as one core does), in one it is not. The median curve falls at one core's L2, the best
 * pass at both cores': the L2 stays private. Three passes that all fall at 1 MiB (one L2 for both)
 * keep it shared, and the last level keeps the median's knee. */
static void test_sharing_by_best_pass(void **state) {
    (void)state;
    const machine all = {3, {96 * KIB, 2 * MIB, 32 * MIB}, {380e9, 230e9, 140e9}, 60e9};
    const machine taken = {3, {96 * KIB, 1 * MIB, 32 * MIB}, {380e9, 230e9, 80e9}, 36e9};
    const machine one_l2 = {3, {96 * KIB, 1 * MIB, 48 * MIB}, {380e9, 230e9, 140e9}, 60e9};
    size_t b[NPTS];
    double bw1[NPTS], passes[3 * NPTS], med[NPTS], best[NPTS];
    curve(&three, 0.03, 7, b, bw1);
    fl_knee k1[4], km[4], kb[4];
    const int n1 = fl_profile_find_levels(b, bw1, NPTS, k1, 4, NULL);
    assert_int_equal(n1, 3);
    for (int shared = 0; shared < 2; shared++) {
        for (int q = 0; q < 3; q++) /* pass 1 clean unless the L2 is one for both */
            curve(shared ? &one_l2 : q == 1 ? &all : &taken, 0.03, 11 + (uint64_t)q, b, passes + q * NPTS);
        fl_profile_curve_median(passes, 3, NPTS, med);
        fl_profile_curve_max(passes, 3, NPTS, best);
        for (int k = 0; k < NPTS; k++) assert_true(best[k] >= med[k]);
        const int nm = fl_profile_find_levels(b, med, NPTS, km, 4, NULL), nb = fl_profile_find_levels(b, best, NPTS, kb, 4, NULL);
        assert_int_equal(nm, 3);
        assert_int_equal(nb, 3);
        assert_true(km[1].bytes < 3 * MIB / 2); /* the median alone says one L2 for both */
        const size_t last = km[2].bytes;
        fl_profile_knees_best(km, nm, kb, nb);
        assert_int_equal(km[2].bytes, last);
        fl_profile p;
        reported_vm(&p);
        fl_profile_apply_levels(&p, k1, n1, km, nm);
        assert_int_equal(p.n_levels, 3);
        assert_int_equal(p.level[1].shared_cpus, shared ? 2 : 1);
        assert_int_equal(p.level[1].all_cores_bytes, shared ? ladder_floor(1 * MIB) : ladder_floor(2 * MIB));
    }
    /* curves showing other levels are not paired: the median's knees stay */
    fl_knee a[2] = {{.bytes = 1 * MIB}, {.bytes = 32 * MIB}}, c[3] = {{.bytes = 2 * MIB}, {.bytes = 8 * MIB}, {.bytes = 64 * MIB}};
    fl_profile_knees_best(a, 2, c, 3);
    assert_int_equal(a[0].bytes, 1 * MIB);
    assert_int_equal(a[1].bytes, 32 * MIB);
}

/* ------------------------------------------------------------ identity */

static void test_identity_saved_and_checked(void **state) {
    (void)state;
    fl_profile p, q;
    fl_machine_id here;
    assert_int_equal(fl_machine_id_detect(&here), FL_OK);
    assert_int_equal(fl_profile_detect(&p), FL_OK);
    assert_string_equal(p.id.kernels, here.kernels);
    assert_int_equal(p.id.cores, here.cores);
    assert_true(p.level[p.n_levels - 1].reported_bytes > 0);
    p.id.llc_bytes = 32 * MIB;
    p.n_curve_all = 2, p.curve_all_threads = 2;
    p.curve_all_bytes[0] = 1000, p.curve_all_bytes[1] = 2000;
    p.curve_all_bandwidth[0] = 5e10, p.curve_all_bandwidth[1] = 4e10;
    const char *path = tmp_path("profile.json");
    assert_int_equal(fl_profile_save(&p, path), FL_OK);
    assert_int_equal(fl_profile_load(path, &q), FL_OK);
    assert_int_equal(fl_profile_check_machine(&q, &here), FL_OK);
    assert_string_equal(q.id.vendor, p.id.vendor);
    assert_int_equal(q.id.model, p.id.model);
    assert_int_equal(q.id.llc_bytes, 32 * MIB);
    assert_int_equal(q.n_curve_all, 2);
    assert_int_equal(q.curve_all_bytes[1], 2000);
    for (int i = 0; i < p.n_levels; i++) assert_int_equal(q.level[i].reported_bytes, p.level[i].reported_bytes);
    /* the runtime's thread rules, the sleeping workers' among them, recorded and kept */
    assert_true(p.wake_proj_macs > p.parallel_proj_macs && p.parallel_proj_macs > 0);
    assert_true(q.wake_proj_macs == p.wake_proj_macs && q.parallel_proj_macs == p.parallel_proj_macs);
    /* another CPU model, another core count, another kernel level, no identity: refused */
    fl_profile other = q;
    other.id.model = q.id.model + 1;
    assert_int_equal(fl_profile_check_machine(&other, &here), FL_ERR_UNSUPPORTED);
    assert_non_null(strstr(fl_last_error(), "fastlstm profile --refresh"));
    assert_non_null(strstr(fl_last_error(), "another machine type"));
    other = q, other.id.cores = q.id.cores + 2;
    assert_int_equal(fl_profile_check_machine(&other, &here), FL_ERR_UNSUPPORTED);
    other = q, snprintf(other.id.kernels, sizeof other.id.kernels, "%s", strcmp(here.kernels, "ref") ? "ref" : "avx2");
    assert_int_equal(fl_profile_check_machine(&other, &here), FL_ERR_UNSUPPORTED);
    other = q, other.id.vendor[0] = 0;
    assert_int_equal(fl_profile_check_machine(&other, &here), FL_ERR_UNSUPPORTED);
    assert_non_null(strstr(fl_last_error(), "--refresh"));
    /* malformed identity: a format error naming the field */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"version\": 2, \"cores\": 2, \"simd_bits\": 256, \"caches\": [{\"level\": 1, \"bytes\": 32768, "
          "\"shared_cpus\": 1, \"bandwidth\": 1e11}], \"dram_bandwidth\": 1e10, \"gemm_flops\": 1e10, "
          "\"gemv_flops\": 1e10, \"step_overhead\": 1e-6, \"machine\": {\"vendor\": \"X\", \"kernels\": \"ref\", "
          "\"family\": 1, \"model\": 2, \"stepping\": 3, \"cores\": 2}}",
          f);
    fclose(f);
    assert_int_equal(fl_profile_load(path, &q), FL_ERR_FORMAT);
    assert_non_null(strstr(fl_last_error(), "llc_bytes"));
}

static int sh(char *err, size_t n, const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[2300];
    snprintf(full, sizeof full, "%s 2>%s >/dev/null", cmd, tmp_path("err.txt"));
    int rc = system(full);
    FILE *f = fopen(tmp_path("err.txt"), "r");
    size_t len = f ? fread(err, 1, n - 1, f) : 0;
    if (f) fclose(f);
    err[len] = 0;
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* The CLI refuses a profile from another CPU model (given with --profile, or in the default cache)
 * and says how to refresh it; this machine's own profile is used. */
static void test_cli_refuses_other_machine(void **state) {
    (void)state;
    const char *cli = getenv("FL_CLI");
    if (!cli) skip();
    fl_profile p;
    assert_int_equal(fl_profile_detect(&p), FL_OK);
    char err[4096];
    const char *mine = tmp_path("mine.json");
    assert_int_equal(fl_profile_save(&p, mine), FL_OK);
    assert_int_equal(sh(err, sizeof err, "%s profile --profile %s", cli, mine), 0);
    p.id.model += 1;
    p.id.family += 1;
    const char *other = tmp_path("other.json");
    assert_int_equal(fl_profile_save(&p, other), FL_OK);
    assert_int_equal(sh(err, sizeof err, "%s profile --profile %s", cli, other), 1);
    assert_non_null(strstr(err, "another machine type"));
    assert_non_null(strstr(err, "fastlstm profile --refresh"));
    assert_non_null(strstr(err, other));
    /* the default cache too: refused, not measured over */
    char dir[300];
    snprintf(dir, sizeof dir, "%s/fastlstm", tmp_dir);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp %s %s/profile.json", dir, other, dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(sh(err, sizeof err, "XDG_CACHE_HOME=%s %s profile", tmp_dir, cli), 1);
    assert_non_null(strstr(err, "fastlstm profile --refresh"));
}

/* The int8 / bf16 kernel rates are measured through the runtime (a quantized step, a quantized
 * projection) at every batch and row count of the table: all positive and finite. (Values are not
 * checked: no timings in tests.) */
static void test_quant_rates_measured(void **state) {
    (void)state;
    fl_profile p;
    assert_int_equal(fl_profile_detect(&p), FL_OK);
    p.cell_seconds = 0;
    for (int q = FL_PRECISION_BF16; q <= FL_PRECISION_INT8; q++) {
        assert_int_equal(fl_profile_measure_quant(&p, (fl_precision)q), FL_OK);
        for (int k = 0; k <= FL_PROFILE_GEMM_POINTS; k++) assert_true(isfinite(p.qrec_flops[q][k]) && p.qrec_flops[q][k] > 0);
        for (int k = 0; k < FL_PROFILE_GEMM_POINTS; k++) assert_true(isfinite(p.qgemm_flops[q][k]) && p.qgemm_flops[q][k] > 0);
    }
}

static int setup(void **state) {
    (void)state;
    return tmp_dir_make("test_profile");
}

static int teardown(void **state) {
    (void)state;
    return tmp_dir_remove();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_three_levels), cmocka_unit_test(test_dip_inside_level),
        cmocka_unit_test(test_noisy_three_levels),
        cmocka_unit_test(test_no_visible_l3),
        cmocka_unit_test(test_large_l3),
        cmocka_unit_test(test_reported_512_measured_32),
        cmocka_unit_test(test_reported_level_inside_a_fall),
        cmocka_unit_test(test_sharing_by_best_pass),
        cmocka_unit_test(test_measured_vm_curve),
        cmocka_unit_test(test_identity_saved_and_checked),
        cmocka_unit_test(test_cli_refuses_other_machine),
        cmocka_unit_test(test_quant_rates_measured),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
