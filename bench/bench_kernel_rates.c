/* GFLOP/s of the batch kernels at the shapes a served LSTM runs, against OpenBLAS sgemm of the same
 * product and this core's FMA peak, so that one command says where a step's time goes:
 *
 *   OPENBLAS_NUM_THREADS=1 bench_kernel_rates [--quick] [--cold] [--huge] [--pk] [--pk-ab] [--head] [--level avx2|avx512|ref]
 *                                             [--H n] [--B n] [--n n] [--pairs n]
 *
 *   --cold    walk a 64 MB buffer before each timed call, so the weights come from DRAM (a session's
 *             state: a layer's gate inputs pass through L3 between steps); default: the same
 *             weights call after call, L3-resident where they fit
 *   --pk      the gemm_pk lines only (no gate_cell); --n n: only those of n rows
 *   --pk-ab   gemm_pk against its copy as of 592baf0 (bench/pk_before_avx2.h) in one process:
 *             calls alternate old, new, new, old, ...; per pair the time ratio new / old, the median
 *             over --pairs n pairs (default 24); each pair one call each (--cold: each after evicting),
 *             or with warm weights as many calls as make ~20 ms; also checks y is bit-identical;
 *             the avx2 level unless --level says otherwise (it must be avx2)
 *   --rows r --K k  (with --pk or --pk-ab) gemm_pk at that one shape only, n from --n (default 35)
 *   --head    gemm_pk at output-head shapes too: rows 10000, K 256 and 650, n 1, 35, 560
 *   --huge    madvise(MADV_HUGEPAGE) the gate panel (and gemm_pk's panels) before it is written (this
 *             VM's transparent huge pages are "madvise" only), and print how much of the gate panel got
 *             2 MB pages: with 4 KB pages a streamed panel takes a TLB miss per 4 KB and the hardware prefetchers stop at each page
 *             (measured with --cold at H = 650, B = 20 on a shared 2-core Zen 3 VM, 10 alternating runs
 *             each: 2703 against 2810 us, median; within the noise, so the pages are not the main cost)
 *
 *   peak      a pure-FMA loop (12 independent chains of 8-lane FMAs: 2 FMA pipes x 4-5 cycles
 *             latency need >= 10 in flight), 2 flops per lane per FMA
 *   gate_cell the recurrent step of one layer: gates (B, 4H) = gx + x (B, K) W_hh^T through the
 *             packed gate panel, then the cell update, all blocks on one thread, K = H; flops
 *             2 B K 4H (the cell update is counted as free). sgemm: cblas_sgemm of the same
 *             (B, K) x (K, 4H) product alone (no cell update, no gx), W_hh (4H, K) row-major.
 *   gemm_pk   the input projection over a sequence: Y (n, rows) = X (n, K) W_ih^T + bias through
 *             the packed panels, n = 35 (batch 1 x seq 35), 140 (batch 4) and 700 (batch 20) rows,
 *             rows = 2600 (4H at H = 650), K = 650 (layer 0 of a 650-wide model) and 1300 (a
 *             bidirectional layer 1); sgemm the same product with beta 0 (bias not added).
 * Times are this thread's CPU time (bench_util.h), medians of rounds; each call reuses the same
 * weights, as a session does over the T steps of one layer (one H = 650 layer's W_hh is 6.8 MB:
 * L3 or DRAM depending on the co-tenants; H = 1500's 36 MB always comes from DRAM). */
#define _DEFAULT_SOURCE /* madvise */
#include "internal.h"
#include "kernels/kernels.h"
#include "bench_util.h"
#include "pk_before_avx2.h"

#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static int g_rounds = 7;
static double g_round_s = 0.15;
static bool g_huge;             /* --huge: the gate panel on transparent huge pages */
static unsigned char *g_evict; /* --cold: a buffer larger than L3, walked before every timed call */
enum { EVICT_BYTES = 64 << 20 };

/* Write one byte per line of g_evict: the weights of the call that follows come from DRAM, as in a
 * session, where a layer's (T, B, 4H) gate inputs and outputs pass through L3 between steps. */
static void evict(void) {
    for (size_t i = 0; i < EVICT_BYTES; i += 64) g_evict[i]++;
}

/* Median seconds per call of fn(arg) over g_rounds rounds of about g_round_s of thread CPU time;
 * with --cold, the median of single calls each after evict() (not timed). */
static double time_it(void (*fn)(void *), void *arg) {
    if (g_evict) {
        double v[64];
        const int n = 4 * g_rounds < 64 ? 4 * g_rounds : 64;
        for (int r = 0; r < n; r++) {
            evict();
            const double t0 = bench_now(true);
            fn(arg);
            v[r] = bench_now(true) - t0;
        }
        return bench_summarize(v, n).med;
    }
    fn(arg);
    double t0 = bench_now(true);
    fn(arg);
    double one = bench_now(true) - t0;
    int n = (int)(g_round_s / (one > 1e-7 ? one : 1e-7));
    if (n < 1) n = 1;
    double v[32];
    for (int r = 0; r < g_rounds; r++) {
        t0 = bench_now(true);
        for (int i = 0; i < n; i++) fn(arg);
        v[r] = (bench_now(true) - t0) / n;
    }
    return bench_summarize(v, g_rounds).med;
}

/* ------------------------------------------------------------ FMA peak */

enum { PEAK_ITERS = 1 << 20 };

typedef struct peak_run {
    float out;
} peak_run;

static void peak_fn(void *arg) {
    peak_run *p = arg;
    p->out += bench_fma_chains256(PEAK_ITERS);
}

static double peak_gflops(void) {
    peak_run p = {0};
    double t = time_it(peak_fn, &p);
    return 2.0 * 8 * 12 * (double)PEAK_ITERS / t / 1e9;
}

/* ------------------------------------------------------------ recurrent step */

typedef struct rec_run {
    const fl_kernels *k;
    int H, K, B, nblk;
    float *w, *pw, *x, *gx, *c, *h, *y; /* w (4H, K); pw the gate panel; y (B, 4H) for sgemm */
} rec_run;

static void rec_fn(void *arg) {
    rec_run *r = arg;
    r->k->gate_cell(0, r->nblk, r->H, r->K, r->B, r->pw, r->x, r->K, r->gx, 4 * r->H, r->c, r->h, r->H);
}

static void rec_sgemm_fn(void *arg) {
    rec_run *r = arg;
    fl_gemm(false, true, r->B, 4 * r->H, r->K, 1.0f, r->x, r->K, r->w, r->K, 0.0f, r->y, 4 * r->H);
}

static float *rand_buf(size_t n, fl_rng *rng, float a) {
    float *p = fl_malloc(n * sizeof(float));
    if (!p) {
        fprintf(stderr, "bench_kernel_rates: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = fl_rng_uniform_range(rng, -a, a);
    return p;
}

/* kB of this process on transparent huge pages (AnonHugePages of /proc/self/smaps_rollup; only the
 * panel is madvised, so they are its); 0 if unknown. */
static size_t huge_kb(void) {
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    if (!f) return 0;
    char line[256];
    size_t kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "AnonHugePages: %zu kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

static void run_rec(const fl_kernels *k, int H, int B, double peak) {
    const int K = H, NB = FL_REC_NB, nblk = (H + NB - 1) / NB;
    fl_rng rng;
    fl_rng_seed(&rng, (uint64_t)H * 31 + (uint64_t)B);
    rec_run r = {.k = k, .H = H, .K = K, .B = B, .nblk = nblk};
    r.w = rand_buf((size_t)4 * H * K, &rng, 0.04f);
    const size_t pw_bytes = (size_t)nblk * K * 4 * NB * sizeof(float);
    /* --huge: the panel from a 2 MB boundary (2 MB more allocated), that range madvised while untouched,
     * so the first touch below (the zeroing) picks the page size */
    const size_t huge = 2u << 20, huge_bytes = (pw_bytes + huge - 1) & ~(huge - 1);
    const size_t slack = g_huge ? huge_bytes - pw_bytes + huge : 0;
    char *pw_mem = fl_malloc(pw_bytes + slack);
    if (!pw_mem) exit(1);
    r.pw = (float *)(g_huge ? (char *)(((uintptr_t)pw_mem + huge - 1) & ~(uintptr_t)(huge - 1)) : pw_mem);
    if (g_huge && madvise(r.pw, huge_bytes, MADV_HUGEPAGE) != 0)
        perror("bench_kernel_rates: madvise");
    memset(r.pw, 0, pw_bytes);
    // pw[((blk K + k) 4 + g) NB + u] = W[g H + blk NB + u, k] (kernels.h)
    for (int blk = 0; blk < nblk; blk++)
        for (int kk = 0; kk < K; kk++)
            for (int g = 0; g < 4; g++)
                for (int u = 0; u < NB && blk * NB + u < H; u++)
                    r.pw[(((size_t)blk * K + kk) * 4 + g) * NB + u] = r.w[((size_t)g * H + blk * NB + u) * K + kk];
    r.x = rand_buf((size_t)B * K, &rng, 1.0f);
    r.gx = rand_buf((size_t)B * 4 * H, &rng, 1.0f);
    r.c = rand_buf((size_t)B * H, &rng, 1.0f);
    r.h = rand_buf((size_t)B * H, &rng, 1.0f);
    r.y = rand_buf((size_t)B * 4 * H, &rng, 1.0f);
    if (g_huge) printf("gate_cell  H %5d: %zu of the panel's %zu kB on huge pages\n", H, huge_kb(), pw_bytes / 1024);
    const double flops = 2.0 * B * K * 4.0 * H;
    const double tk = time_it(rec_fn, &r), tb = time_it(rec_sgemm_fn, &r);
    printf("gate_cell  H %5d K %5d B %3d | %-6s %7.1f us %6.1f GFLOP/s (%4.0f%% peak) | sgemm %7.1f us %6.1f GFLOP/s | x%.2f\n",
           H, K, B, k->name, tk * 1e6, flops / tk / 1e9, 100 * flops / tk / 1e9 / peak, tb * 1e6, flops / tb / 1e9, tb / tk);
    fflush(stdout);
    fl_free(r.w), fl_free(pw_mem), fl_free(r.x), fl_free(r.gx), fl_free(r.c), fl_free(r.h), fl_free(r.y);
}

/* ------------------------------------------------------------ input projection */

typedef struct pk_run {
    const fl_kernels *k;
    int n, rows, K;
    float *w, *pk, *x, *bias, *y;
    void *pk_mem; /* pk's allocation (pk is aligned within it with --huge) */
} pk_run;

static void pk_fn(void *arg) {
    pk_run *r = arg;
    r->k->gemm_pk(r->n, r->rows, r->K, r->x, r->K, r->pk, r->bias, r->y, r->rows);
}

static void pk_sgemm_fn(void *arg) {
    pk_run *r = arg;
    fl_gemm(false, true, r->n, r->rows, r->K, 1.0f, r->x, r->K, r->w, r->K, 0.0f, r->y, r->rows);
}

/* A seeded gemm_pk problem: W (rows, K), its packed copy, x (n, K), bias, y (n, rows); rng left
 * after them for further buffers. */
static pk_run pk_setup(const fl_kernels *k, int n, int rows, int K, fl_rng *rng) {
    const int NC = FL_PK_NC, np = (rows + NC - 1) / NC;
    fl_rng_seed(rng, (uint64_t)K * 7 + (uint64_t)n);
    pk_run r = {.k = k, .n = n, .rows = rows, .K = K};
    r.w = rand_buf((size_t)rows * K, rng, 0.04f);
    /* --huge: the panels from a 2 MB boundary, madvised before the first touch (as the gate panel) */
    const size_t pk_bytes = (size_t)np * K * NC * sizeof(float), huge = 2u << 20;
    const size_t huge_bytes = (pk_bytes + huge - 1) & ~(huge - 1);
    r.pk_mem = fl_malloc(pk_bytes + (g_huge ? huge_bytes - pk_bytes + huge : 0));
    if (!r.pk_mem) exit(1);
    r.pk = (float *)(g_huge ? (char *)(((uintptr_t)r.pk_mem + huge - 1) & ~(uintptr_t)(huge - 1)) : r.pk_mem);
    if (g_huge && madvise(r.pk, huge_bytes, MADV_HUGEPAGE) != 0) perror("bench_kernel_rates: madvise");
    memset(r.pk, 0, pk_bytes);
    // pk[(p K + k) NC + u] = W[p NC + u, k] (kernels.h)
    for (int p = 0; p < np; p++)
        for (int kk = 0; kk < K; kk++)
            for (int u = 0; u < NC && p * NC + u < rows; u++)
                r.pk[((size_t)p * K + kk) * NC + u] = r.w[((size_t)p * NC + u) * K + kk];
    r.x = rand_buf((size_t)n * K, rng, 1.0f);
    r.bias = rand_buf((size_t)rows, rng, 1.0f);
    r.y = rand_buf((size_t)n * rows, rng, 1.0f);
    return r;
}

static void run_pk(const fl_kernels *k, int n, int rows, int K, double peak) {
    fl_rng rng;
    pk_run r = pk_setup(k, n, rows, K, &rng);
    const double flops = 2.0 * n * K * rows;
    const double tk = time_it(pk_fn, &r), tb = time_it(pk_sgemm_fn, &r);
    printf("gemm_pk    n %5d K %5d rows %4d | %-6s %7.1f us %6.1f GFLOP/s (%4.0f%% peak) | sgemm %7.1f us %6.1f GFLOP/s | x%.2f\n",
           n, K, rows, k->name, tk * 1e6, flops / tk / 1e9, 100 * flops / tk / 1e9 / peak, tb * 1e6, flops / tb / 1e9, tb / tk);
    fflush(stdout);
    fl_free(r.w), fl_free(r.pk_mem), fl_free(r.x), fl_free(r.bias), fl_free(r.y);
}

/* --pk-ab: the new gemm_pk_avx2 against gemm_pk_before_avx2, one process, alternating (ABBA). */
static double pk_ab_time(const pk_run *r, bool old, int reps) {
    if (g_evict) evict();
    const double t0 = bench_now(true);
    for (int i = 0; i < reps; i++) {
        if (old) gemm_pk_before_avx2(r->n, r->rows, r->K, r->x, r->K, r->pk, r->bias, r->y, r->rows);
        else r->k->gemm_pk(r->n, r->rows, r->K, r->x, r->K, r->pk, r->bias, r->y, r->rows);
    }
    return (bench_now(true) - t0) / reps;
}

static void run_pk_ab(const fl_kernels *k, int n, int rows, int K, int pairs) {
    fl_rng rng;
    pk_run r = pk_setup(k, n, rows, K, &rng);
    float *y_old = rand_buf((size_t)n * rows, &rng, 1.0f);
    gemm_pk_before_avx2(n, rows, K, r.x, K, r.pk, r.bias, y_old, rows);
    k->gemm_pk(n, rows, K, r.x, K, r.pk, r.bias, r.y, rows);
    const bool same = memcmp(y_old, r.y, (size_t)n * rows * sizeof(float)) == 0;
    const double one = pk_ab_time(&r, false, 1);
    int reps = g_evict ? 1 : (int)(0.02 / (one > 1e-6 ? one : 1e-6));
    if (reps < 1) reps = 1;
    double *ratio = malloc(3 * (size_t)pairs * sizeof(double)), *to = ratio + pairs, *tn = to + pairs;
    if (!ratio) exit(1);
    for (int p = 0; p < pairs; p++) {
        double a, b;
        if (p % 2 == 0) a = pk_ab_time(&r, true, reps), b = pk_ab_time(&r, false, reps);
        else b = pk_ab_time(&r, false, reps), a = pk_ab_time(&r, true, reps);
        ratio[p] = b / a, to[p] = a, tn[p] = b;
    }
    fl_sort_doubles(ratio, (size_t)pairs);
    fl_sort_doubles(to, (size_t)pairs);
    fl_sort_doubles(tn, (size_t)pairs);
    const double flops = 2.0 * n * K * rows, mo = to[pairs / 2], mn = tn[pairs / 2];
    printf("gemm_pk ab n %5d K %5d rows %5d | before %8.1f us %5.1f GFLOP/s | new %8.1f us %5.1f GFLOP/s | new/before median %.3f [q1 %.3f q3 %.3f] of %d pairs%s | y %s\n",
           n, K, rows, mo * 1e6, flops / mo / 1e9, mn * 1e6, flops / mn / 1e9, ratio[pairs / 2], ratio[pairs / 4],
           ratio[3 * pairs / 4], pairs, g_evict ? " (cold)" : "", same ? "bit-identical" : "DIFFERS");
    fflush(stdout);
    free(ratio);
    fl_free(r.w), fl_free(r.pk_mem), fl_free(r.x), fl_free(r.bias), fl_free(r.y), fl_free(y_old);
}

int main(int argc, char **argv) {
    const char *level = NULL;
    int oneH = 0, oneB = 0, oneN = 0, oneRows = 0, oneK = 0;
    int pairs = 24;
    bool cold = false, pk_only = false, head = false, pk_ab = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) g_rounds = 3, g_round_s = 0.03;
        else if (!strcmp(argv[i], "--cold")) cold = true;
        else if (!strcmp(argv[i], "--huge")) g_huge = true;
        else if (!strcmp(argv[i], "--pk")) pk_only = true;
        else if (!strcmp(argv[i], "--pk-ab")) pk_ab = pk_only = true;
        else if (!strcmp(argv[i], "--pairs") && i + 1 < argc) pairs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--head")) head = true;
        else if (!strcmp(argv[i], "--level") && i + 1 < argc) level = argv[++i];
        else if (!strcmp(argv[i], "--H") && i + 1 < argc) oneH = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--B") && i + 1 < argc) oneB = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--n") && i + 1 < argc) oneN = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rows") && i + 1 < argc) oneRows = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--K") && i + 1 < argc) oneK = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: OPENBLAS_NUM_THREADS=1 bench_kernel_rates [--quick] [--cold] [--huge] [--pk] [--pk-ab] [--head] [--level name] [--H n] [--B n] [--n n] [--rows n --K n] [--pairs n]\n");
            return 2;
        }
    }
    if ((oneRows > 0) != (oneK > 0)) {
        fprintf(stderr, "bench_kernel_rates: --rows and --K go together (one gemm_pk shape)\n");
        return 2;
    }
    const fl_kernels *k = level ? fl_kernels_by_name(level) : pk_ab ? fl_kernels_by_name("avx2") : fl_kernels_get();
    if (!k) {
        fprintf(stderr, "bench_kernel_rates: no kernel level '%s' on this CPU\n", level ? level : "avx2");
        return 1;
    }
    const char *bt = getenv("OPENBLAS_NUM_THREADS");
    if (!bt || strcmp(bt, "1") != 0)
        fprintf(stderr, "bench_kernel_rates: OPENBLAS_NUM_THREADS is not 1: the sgemm columns use more threads than the kernels\n");
    const double peak = peak_gflops();
    printf("FMA peak, one thread: %.1f GFLOP/s (12 chains of 8-lane FMAs); times: thread CPU, median of %d %s\n", peak,
           g_rounds, cold ? "x 4 calls, each after evicting the caches (--cold)" : "rounds");
    if (cold && !(g_evict = calloc(EVICT_BYTES, 1))) {
        fprintf(stderr, "bench_kernel_rates: out of memory\n");
        return 1;
    }
    const int Hs[] = {650, 1500}, Bs[] = {1, 4, 8, 20, 32};
    for (int hi = 0; hi < 2 && !pk_only; hi++)
        for (int bi = 0; bi < 5; bi++) {
            if ((oneH && Hs[hi] != oneH) || (oneB && Bs[bi] != oneB)) continue;
            run_rec(k, Hs[hi], Bs[bi], peak);
        }
    if (!pk_only && oneH && oneH != 650 && oneH != 1500) run_rec(k, oneH, oneB ? oneB : 20, peak);
    if (!k->gemm_pk) {
        printf("gemm_pk: none at level %s\n", k->name);
        free(g_evict);
        return 0;
    }
    if (pk_ab) {
        if (strcmp(k->name, "avx2") != 0 || pairs < 2) {
            fprintf(stderr, "bench_kernel_rates: --pk-ab compares avx2 kernels (level %s) over >= 2 pairs\n", k->name);
            free(g_evict);
            return 1;
        }
        const int ns[] = {35, 140, 700}, Ks[] = {650, 1300}, hns[] = {1, 35, 560}, hKs[] = {256, 650};
        if (oneRows > 0 && oneK > 0) { /* one shape: --n (default 35) x --rows x --K */
            run_pk_ab(k, oneN ? oneN : 35, oneRows, oneK, pairs);
            free(g_evict);
            return 0;
        }
        for (int ni = 0; ni < 3; ni++)
            for (int ki = 0; ki < 2; ki++)
                if (!oneN || ns[ni] == oneN) run_pk_ab(k, ns[ni], 2600, Ks[ki], pairs);
        for (int ni = 0; ni < 3 && head; ni++)
            for (int ki = 0; ki < 2; ki++)
                if (!oneN || hns[ni] == oneN) run_pk_ab(k, hns[ni], 10000, hKs[ki], pairs);
        free(g_evict);
        return 0;
    }
    const int ns[] = {35, 140, 700}, Ks[] = {650, 1300};
    if (oneRows > 0 && oneK > 0) {
        run_pk(k, oneN ? oneN : 35, oneRows, oneK, peak);
        free(g_evict);
        return 0;
    }
    for (int ni = 0; ni < 3; ni++)
        for (int ki = 0; ki < 2; ki++)
            if (!oneN || ns[ni] == oneN) run_pk(k, ns[ni], 2600, Ks[ki], peak);
    if (head) {
        const int hns[] = {1, 35, 560}, hKs[] = {256, 650};
        for (int ni = 0; ni < 3; ni++)
            for (int ki = 0; ki < 2; ki++)
                if (!oneN || hns[ni] == oneN) run_pk(k, hns[ni], 10000, hKs[ki], peak);
    }
    free(g_evict);
    return 0;
}
