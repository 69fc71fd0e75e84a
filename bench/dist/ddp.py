#!/usr/bin/python3
"""The peer for bench/dist/bench.sh: the same LSTM language model (embedding E, L layers of H,
linear head over V words) trained with PyTorch DistributedDataParallel (gloo backend) on the same
global batch split over the ranks, truncated BPTT, SGD, gradient clipping 5 -- as `fastlstm train
--task lm` does. Launched by mpirun (cluster.sh run): rank and size come from Open MPI's
environment, the rendezvous address from FLC_MASTER_ADDR and the interface from FLC_IFNAME.

usage: ddp.py CORPUS --vocab V --hidden H --layers L --embed E --batch B --bptt T --steps N
prints on rank 0: "ddp: R ranks, S s/step over N steps (first step not timed), P parameters, D bytes/step"
"""
import argparse
import collections
import os
import time

import torch
import torch.distributed as dist
import torch.nn as nn


class LM(nn.Module):
    def __init__(self, v, e, h, layers):
        super().__init__()
        self.emb = nn.Embedding(v, e)
        self.lstm = nn.LSTM(e, h, layers)
        self.head = nn.Linear(h, v)

    def forward(self, x, state):
        y, state = self.lstm(self.emb(x), state)
        return self.head(y), state


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    for k, d in (("vocab", 10000), ("hidden", 650), ("layers", 2), ("embed", 650), ("batch", 20), ("bptt", 35),
                 ("steps", 5)):
        ap.add_argument("--" + k, type=int, default=d)
    a = ap.parse_args()
    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", "0"))
    size = int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1"))
    os.environ.setdefault("MASTER_ADDR", os.environ.get("FLC_MASTER_ADDR", "127.0.0.1"))
    os.environ.setdefault("MASTER_PORT", "29517")
    if "FLC_IFNAME" in os.environ:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", os.environ["FLC_IFNAME"])
    torch.set_num_threads(int(os.environ.get("OPENBLAS_NUM_THREADS", "1")))
    torch.manual_seed(1)
    dist.init_process_group("gloo", rank=rank, world_size=size)

    words = open(a.corpus).read().replace("\n", " <eos> ").split()
    keep = [w for w, _ in collections.Counter(words).most_common(a.vocab - 1)]
    ids = {w: i + 1 for i, w in enumerate(keep)}  # 0: <unk>
    tok = torch.tensor([ids.get(w, 0) for w in words], dtype=torch.long)
    S = len(tok) // a.batch
    streams = tok[:S * a.batch].view(a.batch, S).t().contiguous()  # (S, B)
    lo, hi = a.batch * rank // size, a.batch * (rank + 1) // size
    mine = streams[:, lo:hi]

    model = nn.parallel.DistributedDataParallel(LM(a.vocab, a.embed, a.hidden, a.layers))
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    loss_fn = nn.CrossEntropyLoss()
    state = None
    t0 = None
    for step in range(a.steps + 1):
        if step == 1:
            dist.barrier()
            t0 = time.perf_counter()
        s = (step * a.bptt) % (S - 1 - a.bptt)
        x, y = mine[s:s + a.bptt], mine[s + 1:s + 1 + a.bptt]
        out, state = model(x, state)
        state = tuple(z.detach() for z in state)
        # the mean over this slice; DDP averages over ranks (equal slices when B divides evenly)
        loss = loss_fn(out.reshape(-1, a.vocab), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
    dist.barrier()
    el = time.perf_counter() - t0
    n = sum(p.numel() for p in model.parameters())
    if rank == 0:
        print("ddp: %d ranks, %.4g s/step over %d steps (first step not timed), %d parameters, %d bytes/step"
              % (size, el / a.steps, a.steps, n, 4 * n), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
