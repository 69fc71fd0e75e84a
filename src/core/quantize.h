/* Weight conversion to int8 and bf16, packing into the kernels' layouts (src/kernels/quant.h), and
 * the per-step activation quantizer. Internal API (not installed) for the model, session and CLI.
 * These functions are the checked boundary: NaN or Inf in a weight is refused with
 * FL_ERR_NONFINITE and fl_last_error() names the tensor (`name`), row and column. After them the
 * kernels trust their input. Nothing here allocates: sizes come from the _size queries, the caller
 * owns every buffer (64-byte aligned from fl_malloc is best, not required).
 *
 * int8 (symmetric, per output row): amax = max_k |W[r, k]|; wscale[r] = amax / 127;
 *   Wq[r, k] = clamp(rint(W[r, k] * (127 / amax)), -127, 127) (rint: nearest, ties to even), in
 *   f32 arithmetic. A row of zeros (or with amax so small that 127 / amax overflows) gets scale 0
 *   and Wq 0. tests/quant_ref.py is the same rule in NumPy.
 * Activations (per row of x, each step): the same rule with xscale and xq = Wq + 128 in u8.
 * bf16: round to nearest, ties to even, of the f32 bits; NaN stays NaN (quiet). */
#ifndef FL_QUANTIZE_H
#define FL_QUANTIZE_H

#include <stddef.h>
#include <stdint.h>

#include "fastlstm/fastlstm.h"

/* f32 -> bf16 bits, round to nearest even (overflow rounds to Inf as IEEE does); NaN -> quiet NaN. */
uint16_t fl_bf16_from_f32(float f);
/* bf16 bits -> f32 (exact). */
float fl_bf16_to_f32(uint16_t v);

/* Quantize W (rows, K), row stride ldw, to q (rows, K) row stride ldq and scale (rows), by the rule
 * above. FL_ERR_ARG for negative sizes, NULL pointers (with rows*K > 0) or ld < K;
 * FL_ERR_NONFINITE for a NaN/Inf weight (nothing written past that row). */
fl_status fl_quant_i8_rows(const char *name, int rows, int K, const float *w, int ldw, int8_t *q, int ldq,
                           float *scale);

/* Elements of a packed int8 (bytes) or bf16 (uint16) panel for a matrix of `rows` x K; H > 0 packs
 * with the gate map (rows must be 4H), H = 0 with the plain map. 0 for bad sizes. */
size_t fl_qpack_i8_size(int H, int rows, int K);
size_t fl_qpack_bf16_size(int H, int rows, int K);

/* Quantize W (rows, K) to int8 and pack it: pq (fl_qpack_i8_size bytes), wscale (rows), wsum (rows).
 * Errors as fl_quant_i8_rows, plus FL_ERR_ARG when H > 0 and rows != 4H. */
fl_status fl_qpack_i8(const char *name, int H, int rows, int K, const float *w, int ldw, int8_t *pq,
                      float *wscale, int32_t *wsum);

/* Pack already-quantized int8 weights q (rows, K) (from a model file): pq and wsum. FL_ERR_ARG as
 * above, FL_ERR_DATA for a weight of -128 (outside the symmetric range). */
fl_status fl_qpack_i8_from_q(const char *name, int H, int rows, int K, const int8_t *q, int ldq, int8_t *pq,
                             int32_t *wsum);

/* Round W (rows, K) to bf16 and pack it into pb (fl_qpack_bf16_size elements). FL_ERR_NONFINITE for
 * NaN/Inf in W, FL_ERR_ARG as above. */
fl_status fl_qpack_bf16(const char *name, int H, int rows, int K, const float *w, int ldw, uint16_t *pb);

/* Pack bf16 bits wb (rows, K) row stride ldw (from a model file) into pb. FL_ERR_NONFINITE for a
 * NaN/Inf bit pattern. */
fl_status fl_qpack_bf16_from_bits(const char *name, int H, int rows, int K, const uint16_t *wb, int ldw,
                                  uint16_t *pb);

/* Row stride an activation buffer for K inputs needs at least: K rounded up to a multiple of 4. */
int fl_quant_act_ld(int K);

/* Quantize x (B, K) row stride ldx per row: xq (B, ldxq) u8 with zero point 128 (padding bytes K ..
 * fl_quant_act_ld(K)-1 set to 128), xscale (B). ldxq >= fl_quant_act_ld(K). A row holding NaN or
 * Inf gets xscale NaN and xq 128, so the kernels' outputs for it are NaN, as f32 ones would be. No
 * checks (a per-step kernel): the caller guarantees the sizes. */
void fl_quant_act_u8(int B, int K, const float *x, int ldx, uint8_t *xq, int ldxq, float *xscale);

#endif
