/* int8 / bf16 weight conversion and packing, activation quantization (rules in quantize.h). */
#include "quantize.h"

#include <math.h>
#include <string.h>

#include "internal.h"
#include "kernels/quant.h"

uint16_t fl_bf16_from_f32(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); // NaN: keep it, quiet
    u += 0x7fffu + ((u >> 16) & 1u); // round to nearest, ties to the even upper half
    return (uint16_t)(u >> 16);
}

float fl_bf16_to_f32(uint16_t v) {
    uint32_t u = (uint32_t)v << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* 127 / amax of a row, or 0 for a row that quantizes to zeros (amax 0, or 127 / amax overflows). */
static float inv_scale(float amax) {
    float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    return isfinite(inv) ? inv : 0.0f;
}

static int q127(float v) {
    float r = nearbyintf(v);
    return r > 127.0f ? 127 : r < -127.0f ? -127 : (int)r;
}

static fl_status check_sizes(const char *name, int H, int rows, int K, const void *w, int ldw, const void *out) {
    if (rows < 0 || K < 0 || ldw < K || (H > 0 && rows != 4 * H) || H < 0)
        return fl_fail(FL_ERR_ARG, "%s: bad shape (H %d, rows %d, K %d, ld %d)", name ? name : "matrix", H, rows, K,
                       ldw);
    if ((size_t)rows * (size_t)K > 0 && (!w || !out))
        return fl_fail(FL_ERR_ARG, "%s: NULL buffer", name ? name : "matrix");
    return FL_OK;
}

fl_status fl_quant_i8_rows(const char *name, int rows, int K, const float *w, int ldw, int8_t *q, int ldq,
                           float *scale) {
    fl_status st = check_sizes(name, 0, rows, K, w, ldw, q);
    if (st != FL_OK) return st;
    if (ldq < K || (rows > 0 && !scale)) return fl_fail(FL_ERR_ARG, "%s: bad output stride or NULL scales", name ? name : "matrix");
    for (int r = 0; r < rows; r++) {
        const float *wr = w + (size_t)r * ldw;
        float amax = 0.0f;
        for (int k = 0; k < K; k++) {
            if (!isfinite(wr[k]))
                return fl_fail(FL_ERR_NONFINITE, "%s: non-finite weight %g at row %d, column %d", name ? name : "matrix",
                               (double)wr[k], r, k);
            amax = fmaxf(amax, fabsf(wr[k]));
        }
        float inv = inv_scale(amax);
        scale[r] = inv > 0.0f ? amax / 127.0f : 0.0f;
        for (int k = 0; k < K; k++) q[(size_t)r * ldq + k] = (int8_t)q127(wr[k] * inv);
    }
    return FL_OK;
}

size_t fl_qpack_i8_size(int H, int rows, int K) {
    if (rows < 0 || K < 0 || H < 0 || (H > 0 && rows != 4 * H)) return 0;
    return (size_t)fl_qpanel_blocks(H, rows) * (size_t)((K + 3) / 4) * 4 * FL_QNB * 4;
}

size_t fl_qpack_bf16_size(int H, int rows, int K) {
    if (rows < 0 || K < 0 || H < 0 || (H > 0 && rows != 4 * H)) return 0;
    return (size_t)fl_qpanel_blocks(H, rows) * (size_t)((K + 1) / 2) * 4 * FL_QNB * 2;
}

fl_status fl_qpack_i8_from_q(const char *name, int H, int rows, int K, const int8_t *q, int ldq, int8_t *pq,
                             int32_t *wsum) {
    fl_status st = check_sizes(name, H, rows, K, q, ldq, pq);
    if (st != FL_OK) return st;
    if (rows > 0 && !wsum) return fl_fail(FL_ERR_ARG, "%s: NULL wsum", name ? name : "matrix");
    for (int r = 0; r < rows; r++)
        for (int k = 0; k < K; k++)
            if (q[(size_t)r * ldq + k] == -128)
                return fl_fail(FL_ERR_DATA, "%s: int8 weight -128 at row %d, column %d (symmetric range is -127..127)",
                               name ? name : "matrix", r, k);
    const int nblk = fl_qpanel_blocks(H, rows), Kq = (K + 3) / 4, NB = FL_QNB;
    size_t n = fl_qpack_i8_size(H, rows, K);
    if (n) memset(pq, 0, n);
    for (int blk = 0; blk < nblk; blk++)
        for (int g = 0; g < 4; g++)
            for (int u = 0; u < NB; u++) {
                int row = fl_qpanel_row(H, rows, blk, g, u);
                if (row < 0) continue;
                int32_t s = 0;
                for (int k = 0; k < K; k++) {
                    int8_t v = q[(size_t)row * ldq + k];
                    pq[((((size_t)blk * Kq + k / 4) * 4 + g) * NB + u) * 4 + k % 4] = v;
                    s += v;
                }
                wsum[row] = s;
            }
    return FL_OK;
}

fl_status fl_qpack_i8(const char *name, int H, int rows, int K, const float *w, int ldw, int8_t *pq,
                      float *wscale, int32_t *wsum) {
    fl_status st = check_sizes(name, H, rows, K, w, ldw, pq);
    if (st != FL_OK) return st;
    if ((size_t)rows * (size_t)K == 0) { // K = 0: every row is zeros, scale 0
        if (rows > 0 && !wscale) return fl_fail(FL_ERR_ARG, "%s: NULL scales", name ? name : "matrix");
        for (int r = 0; r < rows; r++) wscale[r] = 0.0f;
        return fl_qpack_i8_from_q(name, H, rows, K, NULL, K, pq, wsum);
    }
    int8_t *q = fl_malloc((size_t)rows * (size_t)K);
    if (!q) return fl_fail(FL_ERR_NOMEM, "%s: no memory for %d x %d int8 weights", name ? name : "matrix", rows, K);
    st = fl_quant_i8_rows(name, rows, K, w, ldw, q, K, wscale);
    if (st == FL_OK) st = fl_qpack_i8_from_q(name, H, rows, K, q, K, pq, wsum);
    fl_free(q);
    return st;
}

/* Pack bf16 weights from f32 wf (rounded) or, with wf NULL, from bits wb. */
static fl_status pack_bf16(const char *name, int H, int rows, int K, const float *wf, const uint16_t *wb, int ldw,
                           uint16_t *pb) {
    fl_status st = check_sizes(name, H, rows, K, wf ? (const void *)wf : (const void *)wb, ldw, pb);
    if (st != FL_OK) return st;
    const int nblk = fl_qpanel_blocks(H, rows), K2 = (K + 1) / 2, NB = FL_QNB;
    for (int r = 0; r < rows; r++)
        for (int k = 0; k < K; k++) {
            float v = wf ? wf[(size_t)r * ldw + k] : fl_bf16_to_f32(wb[(size_t)r * ldw + k]);
            if (!isfinite(v))
                return fl_fail(FL_ERR_NONFINITE, "%s: non-finite weight %g at row %d, column %d", name ? name : "matrix",
                               (double)v, r, k);
            if (wf && !isfinite(fl_bf16_to_f32(fl_bf16_from_f32(v))))
                return fl_fail(FL_ERR_NONFINITE, "%s: weight %g at row %d, column %d rounds to Inf in bf16",
                               name ? name : "matrix", (double)v, r, k);
        }
    size_t n = fl_qpack_bf16_size(H, rows, K);
    if (n) memset(pb, 0, n * sizeof *pb);
    for (int blk = 0; blk < nblk; blk++)
        for (int g = 0; g < 4; g++)
            for (int u = 0; u < NB; u++) {
                int row = fl_qpanel_row(H, rows, blk, g, u);
                if (row < 0) continue;
                for (int k = 0; k < K; k++) {
                    size_t i = (size_t)row * ldw + k;
                    pb[((((size_t)blk * K2 + k / 2) * 4 + g) * NB + u) * 2 + k % 2] =
                        wf ? fl_bf16_from_f32(wf[i]) : wb[i];
                }
            }
    return FL_OK;
}

fl_status fl_qpack_bf16(const char *name, int H, int rows, int K, const float *w, int ldw, uint16_t *pb) {
    return pack_bf16(name, H, rows, K, w, NULL, ldw, pb);
}

fl_status fl_qpack_bf16_from_bits(const char *name, int H, int rows, int K, const uint16_t *wb, int ldw,
                                  uint16_t *pb) {
    return pack_bf16(name, H, rows, K, NULL, wb, ldw, pb);
}

int fl_quant_act_ld(int K) { return (K + 3) / 4 * 4; }

void fl_quant_act_u8(int B, int K, const float *x, int ldx, uint8_t *xq, int ldxq, float *xscale) {
    const int Kp = fl_quant_act_ld(K);
    for (int b = 0; b < B; b++) {
        const float *xb = x + (size_t)b * ldx;
        uint8_t *q = xq + (size_t)b * ldxq;
        float amax = 0.0f;
        int finite = 1;
        for (int k = 0; k < K; k++) {
            finite &= isfinite(xb[k]) != 0;
            amax = fmaxf(amax, fabsf(xb[k]));
        }
        float inv = finite ? inv_scale(amax) : 0.0f;
        xscale[b] = !finite ? NAN : inv > 0.0f ? amax / 127.0f : 0.0f;
        for (int k = 0; k < K; k++) q[k] = finite ? (uint8_t)(q127(xb[k] * inv) + 128) : 128;
        for (int k = K; k < Kp; k++) q[k] = 128;
    }
}
