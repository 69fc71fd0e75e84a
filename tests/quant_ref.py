"""NumPy emulation of fastlstm's int8 quantization (src/core/quantize.h), for tests/test_quant.c.

usage: quant_ref.py DIR   reads DIR/w.npy (rows, K) f32 and DIR/x.npy (B, K) f32, writes
  wq.npy (rows, K) i4, wscale.npy (rows,) f4, xq.npy (B, K) i4 (u8 codes, zero point 128),
  xscale.npy (B,) f4, acc.npy (B, rows) i4 = sum_k wq (xq - 128), y.npy (B, rows) f4 =
  f32(acc) * (xscale * wscale) rounded once (as the kernels' fused multiply-add onto 0).
Every step is float32 arithmetic, as in C: amax = max |v|, scale = amax / 127,
q = clip(rint(v * (127 / amax)), -127, 127) (rint: ties to even); a row whose 127 / amax is 0 or
not finite quantizes to zeros with scale 0. Same rule as PyTorch's symmetric per-channel qint8
(scale = amax / 127), written out so the rounding of each step is explicit."""
import sys

import numpy as np


def quant_rows(v):
    v = v.astype(np.float32)
    amax = np.max(np.abs(v), axis=1) if v.shape[1] else np.zeros(v.shape[0], np.float32)
    with np.errstate(divide="ignore", over="ignore"):
        inv = np.where(amax > 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)
    inv = np.where(np.isfinite(inv), inv, np.float32(0)).astype(np.float32)
    scale = np.where(inv > 0, amax / np.float32(127), np.float32(0)).astype(np.float32)
    q = np.clip(np.rint(v * inv[:, None]), -127, 127).astype(np.int32)
    return q, scale


def main():
    d = sys.argv[1]
    w = np.load(d + "/w.npy")
    x = np.load(d + "/x.npy")
    wq, ws = quant_rows(w)
    xc, xs = quant_rows(x)
    acc = (xc.astype(np.int64) @ wq.T.astype(np.int64)).astype(np.int32)
    prod = (xs[:, None] * ws[None, :]).astype(np.float32)
    y = (acc.astype(np.float32).astype(np.float64) * prod.astype(np.float64)).astype(np.float32)
    np.save(d + "/wq.npy", wq)
    np.save(d + "/wscale.npy", ws)
    np.save(d + "/xq.npy", (xc + 128).astype(np.int32))
    np.save(d + "/xscale.npy", xs)
    np.save(d + "/acc.npy", acc)
    np.save(d + "/y.npy", y)


if __name__ == "__main__":
    main()
