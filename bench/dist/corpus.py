#!/usr/bin/python3
"""Synthetic word corpus for the distributed benchmarks: a Zipf(1.1) unigram over `types` word types,
mixed with a fixed bigram rule (with probability 0.5 the next word is perm[previous]) so a language
model has something to learn; lines of 20 words. Deterministic (seed 7).

usage: corpus.py OUT_DIR TOKENS [TYPES [VALID]]  -> OUT_DIR/train.txt (TOKENS words), OUT_DIR/valid.txt (VALID words,
       default TOKENS/10)
"""
import sys
import numpy as np


def write(path, n, rng, types, perm, p):
    w = rng.choice(types, size=n, p=p)
    follow = rng.random(n) < 0.5
    for i in range(1, n):
        if follow[i]:
            w[i] = perm[w[i - 1]]
    words = np.char.add("w", w.astype(str))
    with open(path, "w") as f:
        for i in range(0, n, 20):
            f.write(" ".join(words[i:i + 20]) + "\n")


def main():
    out, n = sys.argv[1], int(sys.argv[2])
    types = int(sys.argv[3]) if len(sys.argv) > 3 else 12000
    valid = int(sys.argv[4]) if len(sys.argv) > 4 else max(n // 10, 1000)
    rng = np.random.default_rng(7)
    p = 1.0 / np.arange(1, types + 1) ** 1.1
    p /= p.sum()
    perm = rng.permutation(types)
    write(out + "/train.txt", n, rng, types, perm, p)
    write(out + "/valid.txt", valid, rng, types, perm, p)


if __name__ == "__main__":
    main()
