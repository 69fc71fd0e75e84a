/* Scalar reference kernels: written to be read, always built, never deleted. */
#include "kernels.h"

#include <math.h>

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

const fl_kernels fl_kernels_ref = {
    .name = "ref",
    .lstm_cell = lstm_cell_ref,
};
