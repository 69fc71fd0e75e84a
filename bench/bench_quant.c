/* Recurrent matrix-vector time per step by weight precision: f32 (OpenBLAS sgemm, one thread, and
 * the f32 gate-panel kernel fused with the cell update), bf16 and int8 (src/kernels/quant.h, at the
 * dispatched level; int8 includes quantizing the activations each step). W (4H, H) for H = 650 and
 * 1500 (2600 x 650, 6000 x 1500), batch 1 and 20. Medians over rounds; ratios to f32 sgemm in the
 * same run.
 *   bench_quant [--rounds n] [--cpu]
 *     --cpu   this thread's CPU time instead of wall time (one thread on a shared machine)
 * Set OPENBLAS_NUM_THREADS=1. Wall-clock figures on a shared machine are noisy. */
#include "bench_util.h"
#include "internal.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"
#include "quantize.h"

#include <cblas.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ctx {
    int H, B;
    const float *w, *pw, *x, *gx;
    float *y, *c, *h;
    const int8_t *pq;
    const float *wscale;
    const int32_t *wsum;
    const uint16_t *pb;
    uint8_t *xq;
    float *xscale;
} ctx;

enum { F32_BLAS, F32_PANEL, BF16, INT8, NKIND };
static const char *const KIND[NKIND] = {"f32 sgemm", "f32 gate panel+cell", "bf16", "int8"};

static void step(const ctx *c, int kind) {
    const int H = c->H, B = c->B, nblk = fl_qpanel_blocks(H, 4 * H);
    switch (kind) {
    case F32_BLAS:
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, 4 * H, H, 1.0f, c->x, H, c->w, H, 0.0f, c->y, 4 * H);
        break;
    case F32_PANEL:
        fl_kernels_get()->gate_cell(0, (H + FL_REC_NB - 1) / FL_REC_NB, H, H, B, c->pw, c->x, H, c->gx, 4 * H, c->c,
                                    c->h, H);
        break;
    case BF16: fl_qkernels_get()->bf16_gemv(0, nblk, H, 4 * H, H, B, c->pb, c->x, H, c->y, 4 * H); break;
    case INT8:
        fl_quant_act_u8(B, H, c->x, H, c->xq, fl_quant_act_ld(H), c->xscale);
        fl_qkernels_get()->i8_gemv(0, nblk, H, 4 * H, H, B, c->pq, c->wscale, c->wsum, c->xq, fl_quant_act_ld(H),
                                   c->xscale, c->y, 4 * H);
        break;
    }
}

static bool cpu_clock; /* --cpu: this thread's CPU time instead of wall time */

static double now_us(void) { return 1e6 * bench_now(cpu_clock); }

static double median_us(const ctx *c, int kind, int rounds) {
    double t0 = now_us();
    for (int i = 0; i < 3; i++) step(c, kind);
    double per = (now_us() - t0) / 3;
    int n = (int)(20000.0 / (per > 0.1 ? per : 0.1));
    n = n < 3 ? 3 : n;
    double v[101];
    for (int r = 0; r < rounds; r++) {
        t0 = now_us();
        for (int i = 0; i < n; i++) step(c, kind);
        v[r] = (now_us() - t0) / n;
    }
    return bench_summarize(v, rounds).med;
}

int main(int argc, char **argv) {
    int rounds = 11;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--cpu")) cpu_clock = true;
    if (rounds < 1 || rounds > 101) rounds = 11;
    printf("kernels: %s, quantized kernels: %s; us per step (median of %d, %s)\n", fl_kernels_get()->name,
           fl_qkernels_get()->name, rounds, cpu_clock ? "thread CPU time" : "wall time");
    printf("%6s %3s %22s %10s %8s\n", "H", "B", "precision", "us/step", "vs f32");
    static const int Hs[] = {650, 1500}, Bs[] = {1, 20};
    for (int hi = 0; hi < 2; hi++) {
        const int H = Hs[hi], rows = 4 * H, NB = FL_REC_NB, nblk = (H + NB - 1) / NB;
        fl_rng r, *rng = &r;
        fl_rng_seed(rng, 1);
        float *w = fl_malloc((size_t)rows * H * sizeof *w), *pw = fl_malloc((size_t)nblk * H * 4 * NB * sizeof *pw);
        for (size_t i = 0; i < (size_t)rows * H; i++) w[i] = (float)(fl_rng_uniform(rng) - 0.5) * 0.1f;
        memset(pw, 0, (size_t)nblk * H * 4 * NB * sizeof *pw);
        for (int blk = 0; blk < nblk; blk++)
            for (int k = 0; k < H; k++)
                for (int g = 0; g < 4; g++)
                    for (int u = 0; u < NB && blk * NB + u < H; u++)
                        pw[(((size_t)blk * H + k) * 4 + g) * NB + u] = w[((size_t)g * H + blk * NB + u) * H + k];
        int8_t *pq = fl_malloc(fl_qpack_i8_size(H, rows, H));
        float *wscale = fl_malloc(rows * sizeof *wscale);
        int32_t *wsum = fl_malloc(rows * sizeof *wsum);
        uint16_t *pb = fl_malloc(fl_qpack_bf16_size(H, rows, H) * sizeof *pb);
        if (fl_qpack_i8("W_hh", H, rows, H, w, H, pq, wscale, wsum) != FL_OK ||
            fl_qpack_bf16("W_hh", H, rows, H, w, H, pb) != FL_OK) {
            fprintf(stderr, "packing failed: %s\n", fl_last_error());
            return 1;
        }
        for (int bi = 0; bi < 2; bi++) {
            const int B = Bs[bi];
            float *x = fl_malloc((size_t)B * H * sizeof *x), *gx = fl_malloc((size_t)B * rows * sizeof *gx);
            float *y = fl_malloc((size_t)B * rows * sizeof *y), *cs = fl_malloc((size_t)B * H * sizeof *cs);
            float *h = fl_malloc((size_t)B * H * sizeof *h), *xscale = fl_malloc(B * sizeof *xscale);
            uint8_t *xq = fl_malloc((size_t)B * fl_quant_act_ld(H));
            for (size_t i = 0; i < (size_t)B * H; i++) x[i] = (float)fl_rng_uniform(rng) * 2 - 1, cs[i] = 0;
            for (size_t i = 0; i < (size_t)B * rows; i++) gx[i] = 0, y[i] = 0;
            ctx c = {H, B, w, pw, x, gx, y, cs, h, pq, wscale, wsum, pb, xq, xscale};
            double t[NKIND];
            for (int k = 0; k < NKIND; k++) t[k] = median_us(&c, k, rounds);
            for (int k = 0; k < NKIND; k++)
                printf("%6d %3d %22s %10.1f %7.2fx\n", H, B, KIND[k], t[k], t[F32_BLAS] / t[k]);
            fl_free(x), fl_free(gx), fl_free(y), fl_free(cs), fl_free(h), fl_free(xscale), fl_free(xq);
        }
        fl_free(w), fl_free(pw), fl_free(pq), fl_free(wscale), fl_free(wsum), fl_free(pb);
    }
    return 0;
}
