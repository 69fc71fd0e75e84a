/* Scalar reference kernels (layouts in kernels.h): written to be read, always built, never deleted;
 * the fallback on CPUs without AVX2. */
#include "kernels.h"

#include <math.h>
#include <stddef.h>

static void cp_scale_ref(int B, int R, const float *restrict a, const float *restrict z, int ldz,
                         float *restrict zs) {
    for (int b = 0; b < B; b++)
        for (int g = 0; g < 4; g++)
            for (int r = 0; r < R; r++) zs[((size_t)b * 4 + g) * R + r] = a[(size_t)g * R + r] * z[(size_t)b * ldz + r];
}

static float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

static void lstm_cell_ref(int batch, int H, const float *restrict gates, int ldg, float *restrict c,
                          int ldc, float *restrict h, int ldh) {
    for (int b = 0; b < batch; b++) {
        const float *g = gates + (size_t)b * ldg;
        for (int j = 0; j < H; j++) {
            float ig = sigmoid(g[j]);
            float fg = sigmoid(g[H + j]);
            float gg = tanhf(g[2 * H + j]);
            float og = sigmoid(g[3 * H + j]);
            float cn = fg * c[(size_t)b * ldc + j] + ig * gg;
            c[(size_t)b * ldc + j] = cn;
            h[(size_t)b * ldh + j] = og * tanhf(cn);
        }
    }
}

/* The cell update of one unit from its four gate pre-activations. */
static void cell(float gi, float gf, float gg, float go, float *c, float *h) {
    float cn = sigmoid(gf) * *c + sigmoid(gi) * tanhf(gg);
    *c = cn;
    *h = sigmoid(go) * tanhf(cn);
}

static void gate_cell_ref(int blk0, int blk1, int H, int K, int B, const float *restrict pw,
                          const float *restrict x, int ldx, const float *restrict gx, int ldgx,
                          float *restrict c, float *restrict h, int ldh) {
    const int NB = FL_REC_NB;
    for (int blk = blk0; blk < blk1; blk++) {
        const float *p = pw + (size_t)blk * K * 4 * NB; // p: (K, 4, NB)
        for (int b = 0; b < B; b++) {
            const float *xb = x + (size_t)b * ldx;
            for (int u = 0; u < NB && blk * NB + u < H; u++) {
                const int j = blk * NB + u;
                float acc[4];
                for (int g = 0; g < 4; g++) acc[g] = gx[(size_t)b * ldgx + (size_t)g * H + j];
                for (int k = 0; k < K; k++)
                    for (int g = 0; g < 4; g++) acc[g] += p[((size_t)k * 4 + g) * NB + u] * xb[k];
                cell(acc[0], acc[1], acc[2], acc[3], &c[(size_t)b * H + j], &h[(size_t)b * ldh + j]);
            }
        }
    }
}

static void cp_gate_cell_ref(int blk0, int blk1, int H, int K, int B, const float *restrict pb,
                             const float *restrict zs, const float *restrict gx, int ldgx,
                             float *restrict c, float *restrict h, int ldh) {
    const int NB = FL_REC_NB;
    for (int blk = blk0; blk < blk1; blk++) {
        const float *p = pb + (size_t)blk * K * NB; // p: (K, NB)
        for (int b = 0; b < B; b++) {
            const float *z = zs + (size_t)b * 4 * K; // z: (4, K)
            for (int u = 0; u < NB && blk * NB + u < H; u++) {
                const int j = blk * NB + u;
                float acc[4];
                for (int g = 0; g < 4; g++) acc[g] = gx[(size_t)b * ldgx + (size_t)g * H + j];
                for (int k = 0; k < K; k++)
                    for (int g = 0; g < 4; g++) acc[g] += p[(size_t)k * NB + u] * z[(size_t)g * K + k];
                cell(acc[0], acc[1], acc[2], acc[3], &c[(size_t)b * H + j], &h[(size_t)b * ldh + j]);
            }
        }
    }
}

static void proj_ref(int B, int K, int Rp, const float *restrict m, const float *restrict x, int ldx,
                     float *restrict t, int ldt) {
    for (int b = 0; b < B; b++)
        for (int r = 0; r < Rp; r++) {
            float s = 0.0f;
            for (int k = 0; k < K; k++) s += x[(size_t)b * ldx + k] * m[(size_t)k * Rp + r];
            t[(size_t)b * ldt + r] = s;
        }
}

void fl_kernels_gemm_nt_ref(int n, int rows, int K, const float *restrict x, int ldx, const float *restrict w,
                        int ldw, float beta, float *restrict y, int ldy) {
    for (int i = 0; i < n; i++)
        for (int r = 0; r < rows; r++) {
            float s = 0.0f;
            for (int k = 0; k < K; k++) s += x[(size_t)i * ldx + k] * w[(size_t)r * ldw + k];
            float *out = &y[(size_t)i * ldy + r];
            *out = beta == 0.0f ? s : s + beta * *out;
        }
}

void fl_kernels_gemm_pk_ref(int n, int rows, int K, const float *restrict x, int ldx, const float *restrict pk,
                            const float *restrict bias, float *restrict y, int ldy) {
    const int NC = FL_PK_NC;
    for (int i = 0; i < n; i++)
        for (int r = 0; r < rows; r++) {
            const float *p = pk + (size_t)(r / NC) * K * NC + r % NC; // W[r, k] = p[k * NC]
            float s = bias ? bias[r] : 0.0f;
            for (int k = 0; k < K; k++) s += x[(size_t)i * ldx + k] * p[(size_t)k * NC];
            y[(size_t)i * ldy + r] = s;
        }
}

const fl_kernels fl_kernels_ref = {
    .name = "ref",
    .lstm_cell = lstm_cell_ref,
    .gate_cell = gate_cell_ref,
    .cp_gate_cell = cp_gate_cell_ref,
    .cp_scale = cp_scale_ref,
    .proj = proj_ref,
};
