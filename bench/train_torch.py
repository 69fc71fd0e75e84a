#!/usr/bin/env python3
"""PyTorch baseline for bench/bench_train.c: the same LM training step (embedding -> nn.LSTM ->
linear head, cross-entropy, backward, clip_grad_norm_(5), Adam) on CPU, random tokens.

usage: train_torch.py [--hidden 650] [--layers 2] [--vocab 10000] [--embed H] [--batch 20]
                      [--bptt 35] [--steps 20] [--warmup 3] [--threads N]
Prints the median step time and tokens/s in the same form as bench_train.
"""
import argparse
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=650)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=10000)
    ap.add_argument("--embed", type=int, default=-1)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--bptt", type=int, default=35)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    E = a.embed if a.embed > 0 else a.hidden
    torch.manual_seed(1)

    class LM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(a.vocab, E)
            self.lstm = torch.nn.LSTM(E, a.hidden, a.layers)
            self.head = torch.nn.Linear(a.hidden, a.vocab)

        def forward(self, x, state):
            y, state = self.lstm(self.embedding(x), state)
            return self.head(y), state

    m = LM()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    n = a.batch * ((a.steps + a.warmup) * a.bptt + 1)
    data = torch.randint(0, a.vocab, (n,)).view(a.batch, -1).t().contiguous()  # (S, B) streams
    state = None
    times, loss = [], 0.0
    for s in range(a.warmup + a.steps):
        x = data[s * a.bptt:(s + 1) * a.bptt]
        y = data[s * a.bptt + 1:(s + 1) * a.bptt + 1]
        t0 = time.perf_counter()
        if state is not None:
            state = tuple(h.detach() for h in state)
        logits, state = m(x, state)
        l = torch.nn.functional.cross_entropy(logits.reshape(-1, a.vocab), y.reshape(-1))
        opt.zero_grad()
        l.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 5.0)
        opt.step()
        dt = time.perf_counter() - t0
        loss = l.item()
        if s >= a.warmup:
            times.append(dt)
    times.sort()
    med = times[len(times) // 2]
    params = sum(p.numel() for p in m.parameters())
    print(f"torch train step: hidden {a.hidden}, layers {a.layers}, vocab {a.vocab}, embed {E}, batch {a.batch}, "
          f"bptt {a.bptt}, dense, {params} params, {torch.get_num_threads()} threads")
    print(f"median {med * 1e3:.2f} ms/step (min {times[0] * 1e3:.2f}, max {times[-1] * 1e3:.2f} over {a.steps} "
          f"steps), {a.batch * a.bptt / med:.0f} tokens/s, last loss {loss:.4f}")


if __name__ == "__main__":
    main()
