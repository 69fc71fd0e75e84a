#!/usr/bin/env python3
"""Convert Fashion-MNIST (IDX, gzip) to .npy for `fastlstm train --task classify`.

Each 28x28 image becomes a sequence of 28 steps of 28 pixels scaled to [0, 1]:
  OUT/train_x.npy (60000, 28, 28) float32, OUT/train_y.npy (60000,) int32,
  OUT/test_x.npy  (10000, 28, 28) float32, OUT/test_y.npy  (10000,) int32.

usage: fashion_mnist.py [--src DIR] [--limit N] OUT_DIR
  --src    directory with {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
           (default /usr/share/datasets/fashion-mnist, Debian package dataset-fashion-mnist)
  --limit  keep only the first N examples of each split (quick runs)
  --valid  hold out the last N training examples as OUT/valid_{x,y}.npy (model selection and
           learning-rate decay then never see the test set)

example:
  python3 tools/fashion_mnist.py /tmp/fmnist
  fastlstm train --task classify --train /tmp/fmnist/train_x.npy --train-labels /tmp/fmnist/train_y.npy \\
      --valid /tmp/fmnist/test_x.npy --valid-labels /tmp/fmnist/test_y.npy --hidden 128 --epochs 5 -o fm.safetensors
"""
import argparse
import gzip
import os
import struct
import sys

import numpy as np


def read_idx(path):
    """IDX: big-endian magic (0, 0, dtype 0x08 = ubyte, ndim), ndim big-endian u32 dims, data."""
    with gzip.open(path, "rb") as f:
        head = f.read(4)
        if len(head) != 4 or head[0] != 0 or head[1] != 0 or head[2] != 0x08:
            sys.exit(f"{path}: not an unsigned-byte IDX file")
        ndim = head[3]
        dims = struct.unpack(">" + "I" * ndim, f.read(4 * ndim))
        data = f.read()
    n = int(np.prod(dims))
    if len(data) != n:
        sys.exit(f"{path}: expected {n} bytes of data, found {len(data)}")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--src", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--valid", type=int, default=0)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x = read_idx(os.path.join(a.src, f"{prefix}-images-idx3-ubyte.gz"))
        y = read_idx(os.path.join(a.src, f"{prefix}-labels-idx1-ubyte.gz"))
        if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            sys.exit(f"{split}: images {x.shape} and labels {y.shape} do not match")
        if a.limit > 0:
            x, y = x[: a.limit], y[: a.limit]
        if split == "train" and a.valid > 0:
            if a.valid >= x.shape[0]:
                sys.exit(f"--valid {a.valid} leaves no training data ({x.shape[0]} examples)")
            vx, vy = x[-a.valid:], y[-a.valid:]
            x, y = x[: -a.valid], y[: -a.valid]
            np.save(os.path.join(a.out, "valid_x.npy"), (vx.astype(np.float32) / 255.0))
            np.save(os.path.join(a.out, "valid_y.npy"), vy.astype(np.int32))
            print(f"valid: last {a.valid} training sequences -> {a.out}")
        np.save(os.path.join(a.out, f"{split}_x.npy"), (x.astype(np.float32) / 255.0))
        np.save(os.path.join(a.out, f"{split}_y.npy"), y.astype(np.int32))
        print(f"{split}: {x.shape[0]} sequences of {x.shape[1]} steps x {x.shape[2]} features -> {a.out}")


if __name__ == "__main__":
    main()
