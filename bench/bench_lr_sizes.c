/* Where a low-rank step's weights stop streaming from the private cache: the SVD gate panel
 * (gate_cell at K = R, batch 1, one thread, the cell update fused) timed alone over a grid of ranks
 * and hidden sizes, its U (R x 4H floats) cycling in cache call after call, printed as GB/s of U;
 * and the dense step (K = H) at the same hidden sizes, the kernel the profile's streaming curve
 * times. A rate that changes along a row (one rank, growing U) is the cache; one that changes down
 * a column (one size, another rank) is the kernel. On the 2-vCPU Zen 5 of session 21 the panel's
 * rate was set by its rank up to 768 KiB and fell only past 1 MiB (the L2), while the dense step's
 * fell past hidden 115 (213 KiB), which the profile read as the L2's knee (cost_lowrank.c,
 * in_private).
 *
 *   bench_lr_sizes [--reps n] [--level avx2|avx512|ref]
 *
 * Each figure: the median of --reps samples (default 9), each of enough calls to last 0.2 ms. */
#include "bench_util.h"
#include "kernels/kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int HS[] = {64, 128, 256, 512, 1024, 1536};
static const int RS[] = {16, 32, 48, 64, 96, 128, 256};
#define NH (int)(sizeof HS / sizeof *HS)
#define NR (int)(sizeof RS / sizeof *RS)
#define MAX_REPS 101

typedef struct panel {
    const fl_kernels *k;
    int H, K;
    float *w, *x, *gx, *c, *h;
} panel;

static void call(const panel *p) {
    p->k->gate_cell(0, p->H / FL_REC_NB, p->H, p->K, 1, p->w, p->x, p->K, p->gx, 4 * p->H, p->c, p->h, p->H);
}

static double time_panel(const panel *p, int reps) {
    call(p); /* the weights into cache */
    int inner = 1;
    for (;;) {
        double t0 = fl_now_seconds();
        for (int i = 0; i < inner; i++) call(p);
        if (fl_now_seconds() - t0 > 2e-4 || inner >= (1 << 20)) break;
        inner *= 2;
    }
    double s[MAX_REPS];
    for (int r = 0; r < reps; r++) {
        double t0 = fl_now_seconds();
        for (int i = 0; i < inner; i++) call(p);
        s[r] = (fl_now_seconds() - t0) / inner;
    }
    return bench_summarize(s, reps).med;
}

/* GB/s of the panel's weights (K x 4H floats) at hidden H, K inputs; exits with a message when out
 * of memory (no figure is better than a made-up one). */
static double rate(const fl_kernels *k, int H, int K, int reps) {
    const size_t nw = (size_t)K * 4 * H;
    panel p = {.k = k, .H = H, .K = K};
    p.w = fl_malloc(nw * sizeof(float));
    float *buf = fl_calloc((size_t)K + 6 * (size_t)H, sizeof(float));
    if (!p.w || !buf) {
        fprintf(stderr, "bench_lr_sizes: out of memory for hidden %d, K %d (%zu bytes of weights)\n", H, K,
                nw * sizeof(float));
        exit(1);
    }
    p.x = buf, p.gx = buf + K, p.c = p.gx + 4 * H, p.h = p.c + H;
    for (size_t i = 0; i < nw; i++) p.w[i] = (float)(i % 7) * 1e-3f;
    for (int i = 0; i < K; i++) p.x[i] = 0.01f;
    for (int i = 0; i < 4 * H; i++) p.gx[i] = 0.1f;
    const double r = (double)nw * sizeof(float) / time_panel(&p, reps) / 1e9;
    fl_free(p.w);
    fl_free(buf);
    return r;
}

int main(int argc, char **argv) {
    int reps = 9;
    const char *level = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            char *end;
            const long v = strtol(argv[++i], &end, 10);
            reps = *end || v < 1 || v > MAX_REPS ? 0 : (int)v;
        } else if (!strcmp(argv[i], "--level") && i + 1 < argc) {
            level = argv[++i];
        } else {
            fprintf(stderr, "usage: bench_lr_sizes [--reps n] [--level avx2|avx512|ref]\n");
            return !strcmp(argv[i], "--help") ? 0 : 2;
        }
    }
    if (reps < 1 || reps > MAX_REPS) {
        fprintf(stderr, "bench_lr_sizes: --reps must be a whole number 1..%d\n", MAX_REPS);
        return 2;
    }
    const fl_kernels *k = level ? fl_kernels_by_name(level) : fl_kernels_get();
    if (!k) {
        fprintf(stderr, "bench_lr_sizes: no kernel level '%s' on this machine\n", level);
        return 2;
    }
    printf("kernels %s; GB/s of the weights streamed by one call at batch 1 (KiB of weights in parentheses)\n", k->name);
    printf("%-10s", "");
    for (int a = 0; a < NH; a++) printf("  H %-9d", HS[a]);
    printf("\n");
    for (int b = 0; b < NR; b++) {
        printf("SVD R %-4d", RS[b]);
        for (int a = 0; a < NH; a++)
            printf(" %5.0f (%5zu)", rate(k, HS[a], RS[b], reps), (size_t)RS[b] * 16 * HS[a] / 1024);
        printf("\n");
        fflush(stdout);
    }
    static const int DH[] = {64, 96, 112, 128, 144, 176, 256, 352, 512};
    printf("dense (K = H), GB/s (KiB):");
    for (int a = 0; a < (int)(sizeof DH / sizeof *DH); a++)
        printf("  H %d %.0f (%zu)", DH[a], rate(k, DH[a], DH[a], reps), (size_t)DH[a] * 16 * DH[a] / 1024);
    printf("\n");
    return 0;
}
