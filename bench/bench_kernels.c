/* Recurrent-step kernels: time per step of fl_rec_step against the generic path it replaced
 * (gates = gx; gates += h W_hh^T through fl_mat_apply / OpenBLAS; dispatched cell kernel), in the
 * same run. Medians over rounds, with min and max; ratios to the generic path.
 *
 *   bench_kernels [--quick] [--levels] [--H n] [--B n] [--threads n]
 *     --levels   also time every kernel level this CPU has (ref, avx2, avx512)
 *     --H/--B    one hidden size / batch instead of the default set
 * Set OPENBLAS_NUM_THREADS=1 for a fair one-thread baseline. Wall-clock medians: on a shared
 * machine prefer bench_roofline (thread CPU time) for one-thread figures. */
#include "internal.h"
#include "kernels/kernels.h"
#include "recurrent.h"
#include "recurrent_levels.h"
#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Wall-clock microseconds. */
static double now_us(void) { return fl_now_seconds() * 1e6; }

typedef struct bufs {
    int H, B;
    float *gx, *h[2], *c, *gates, *ws;
} bufs;

/* Steps per round so that one round takes about target_us. */
static int steps_for(double per_step_us, double target_us) {
    int n = (int)(target_us / (per_step_us > 0.05 ? per_step_us : 0.05));
    return n < 3 ? 3 : n > 200000 ? 200000 : n;
}

static bench_stats time_rec(fl_rec *r, bufs *b, int rounds, double target_us) {
    const int H = b->H, B = b->B;
    double t0 = now_us();
    for (int i = 0; i < 3; i++) fl_rec_step(r, B, b->gx, 4 * H, b->h[i % 2], H, b->c, b->h[(i + 1) % 2], H);
    int n = steps_for((now_us() - t0) / 3, target_us);
    double v[64];
    for (int k = 0; k < rounds; k++) {
        t0 = now_us();
        for (int i = 0; i < n; i++) fl_rec_step(r, B, b->gx, 4 * H, b->h[i % 2], H, b->c, b->h[(i + 1) % 2], H);
        v[k] = (now_us() - t0) / n;
    }
    return bench_summarize(v, rounds);
}

static void generic_step(const fl_layer *ly, bufs *b, int i) {
    const int H = b->H, G = 4 * H;
    for (int r = 0; r < b->B; r++) memcpy(b->gates + (size_t)r * G, b->gx + (size_t)r * G, (size_t)G * sizeof(float));
    fl_mat_apply(&ly->whh, b->B, b->h[i % 2], H, 1.0f, b->gates, G, b->ws);
    fl_kernels_get()->lstm_cell(b->B, H, b->gates, G, b->c, H, b->h[(i + 1) % 2], H);
}

static bench_stats time_generic(const fl_layer *ly, bufs *b, int rounds, double target_us) {
    double t0 = now_us();
    for (int i = 0; i < 3; i++) generic_step(ly, b, i);
    int n = steps_for((now_us() - t0) / 3, target_us);
    double v[64];
    for (int k = 0; k < rounds; k++) {
        t0 = now_us();
        for (int i = 0; i < n; i++) generic_step(ly, b, i);
        v[k] = (now_us() - t0) / n;
    }
    return bench_summarize(v, rounds);
}

static const char *method_name(fl_method m) {
    return m == FL_METHOD_DENSE ? "dense" : m == FL_METHOD_SVD ? "svd" : "cp";
}

static int run_case(int H, int B, fl_method method, int rank, int max_threads, bool levels, int rounds,
                    double target_us) {
    fl_arch a = {.input = H, .hidden = H, .layers = 1, .head = FL_HEAD_NONE};
    fl_mat_spec specs[2] = {{FL_METHOD_DENSE, 0}, {method, rank}};
    fl_model *m = NULL;
    if (fl_model_create(&a, specs, &m) != FL_OK || fl_model_init_random(m, 1) != FL_OK) {
        fprintf(stderr, "bench_kernels: %s\n", fl_last_error());
        return 1;
    }
    const fl_layer *ly = &m->layer[0];
    bufs b = {.H = H, .B = B};
    b.gx = fl_calloc((size_t)B * 4 * H, sizeof(float));
    b.gates = fl_calloc((size_t)B * 4 * H, sizeof(float));
    b.h[0] = fl_calloc((size_t)B * H, sizeof(float));
    b.h[1] = fl_calloc((size_t)B * H, sizeof(float));
    b.c = fl_calloc((size_t)B * H, sizeof(float));
    size_t wsn = fl_mat_apply_workspace(&ly->whh, B);
    b.ws = fl_calloc(wsn ? wsn : 1, sizeof(float));
    fl_rng rng;
    fl_rng_seed(&rng, 3);
    for (size_t i = 0; i < (size_t)B * 4 * H; i++) b.gx[i] = fl_rng_uniform_range(&rng, -1, 1);
    for (size_t i = 0; i < (size_t)B * H; i++) b.h[0][i] = fl_rng_uniform_range(&rng, -1, 1);

    bench_stats g = time_generic(ly, &b, rounds, target_us);
    double mb = fl_mat_params(&ly->whh) * 4.0 / 1e6;
    printf("H %5d B %3d %-5s r %4d  W_hh %7.2f MB | generic 1t %9.2f us", H, B, method_name(method), rank, mb, g.med);
    const char *names[] = {"ref", "avx2", "avx512"};
    for (int li = levels ? 0 : 2; li < 3; li++) {
        for (int t = 1; t <= max_threads; t++) {
            fl_rec *r = NULL;
            fl_status st = levels ? fl_rec_create_with(ly, B, t, names[li], &r) : fl_rec_create(ly, B, t, &r);
            if (st != FL_OK) continue;
            bench_stats s = time_rec(r, &b, rounds, li == 0 ? target_us / 4 : target_us);
            printf(" | %s %dt %8.2f us [%.2f..%.2f] x%.2f", fl_rec_kernels_name(r), t, s.med, s.lo, s.hi, g.med / s.med);
            fl_rec_free(r);
        }
    }
    printf("\n");
    fflush(stdout);
    fl_free(b.gx), fl_free(b.gates), fl_free(b.h[0]), fl_free(b.h[1]), fl_free(b.c), fl_free(b.ws);
    fl_model_free(m);
    return 0;
}

int main(int argc, char **argv) {
    bool quick = false, levels = false;
    int oneH = 0, oneB = 0, threads = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = true;
        else if (!strcmp(argv[i], "--levels")) levels = true;
        else if (!strcmp(argv[i], "--H") && i + 1 < argc) oneH = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--B") && i + 1 < argc) oneB = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_kernels [--quick] [--levels] [--H n] [--B n] [--threads n]\n");
            return 2;
        }
    }
    const int rounds = quick ? 3 : 7;
    const double target_us = quick ? 3000 : 30000;
    const int Hs[] = {128, 256, 650, 1500}, Bserve[] = {256, 64, 20, 20};
    printf("recurrent step per layer, medians of %d rounds [min..max]; generic = fl_mat_apply + cell (before)\n", rounds);
    for (int i = 0; i < 4; i++) {
        int H = Hs[i];
        if (oneH && H != oneH) continue;
        int batches[2] = {1, Bserve[i]};
        for (int bi = 0; bi < 2; bi++) {
            int B = oneB ? oneB : batches[bi];
            if (oneB && bi == 1) break;
            run_case(H, B, FL_METHOD_DENSE, 0, threads, levels, rounds, target_us);
            for (int d = 8; d <= 16; d *= 2) {
                run_case(H, B, FL_METHOD_SVD, H / d, threads, levels, rounds, target_us);
                run_case(H, B, FL_METHOD_CP, H / d, threads, levels, rounds, target_us);
            }
        }
    }
    if (oneH && oneH != 128 && oneH != 256 && oneH != 650 && oneH != 1500) {
        int B = oneB ? oneB : 1;
        run_case(oneH, B, FL_METHOD_DENSE, 0, threads, levels, rounds, target_us);
    }
    return 0;
}
