#!/usr/bin/env python3
"""Golden gradients for tests/test_grad.c, computed by PyTorch autograd in float64.

usage: gen_grad_golden.py OUT_DIR [varlen]

Writes OUT_DIR/<case>.bin for each case below (with "varlen": the variable-length cases only). File format (little-endian):
  magic b"FLGG", u32 version (1), u32 record count, then per record:
  u32 name length, name bytes (UTF-8), u32 dtype (0 float32, 1 int32), u32 ndim, u32 dims[ndim], data.
Records: "tokens" (T, B) or "x" (T, B, D); "targets"; optionally "h0", "c0" (L, B, H); "loss" (1);
every parameter by its fastlstm tensor name, and its gradient as "grad.<name>".
train_sgd.bin / train_adam.bin: a few optimiser steps of a dense LM (see run_training): "tokens",
initial parameters by name, "losses" (steps), final parameters as "final.<name>".
Dense cases use nn.Embedding / nn.LSTM / nn.Linear themselves; decomposed ones the same equations
with W = U V (SVD) or W[g*H+i, j] = sum_r A[g,r] B[i,r] C[j,r] (CP).
Variable-length cases (VARLEN) add "lengths" (B), unsorted, with a length-1 and a full-length
sequence: dense ones run pack_padded_sequence(enforce_sorted=False) through nn.LSTM, decomposed
ones the masked equations; the padded inputs are random (they must not matter), a classifier reads
each sequence's last valid step, a language model's loss is the mean over valid targets
(ignore_index) and its embedding has a padding id (nn.Embedding(padding_idx=0), which also occurs
at valid steps). "padding_idx" (1) is then recorded.
"""
import os
import struct
import sys

import torch
import torch.nn.functional as F

CASES = {
    # name: (vocab, input, hidden, layers, head kind, head_out, B, T, state, specs ih, hh, head)
    "lm_dense": dict(vocab=11, input=6, hidden=8, layers=2, head="lm", out=11, B=3, T=7, state=True,
                     ih=("dense", 0), hh=("dense", 0), hd=("dense", 0)),
    "lm_svd": dict(vocab=11, input=6, hidden=8, layers=2, head="lm", out=11, B=3, T=7, state=True,
                   ih=("svd", 3), hh=("svd", 4), hd=("svd", 5)),
    "cls_dense": dict(vocab=0, input=5, hidden=7, layers=2, head="cls", out=4, B=4, T=6, state=False,
                      ih=("dense", 0), hh=("dense", 0), hd=("dense", 0)),
    "cls_cp": dict(vocab=0, input=5, hidden=7, layers=2, head="cls", out=4, B=4, T=6, state=False,
                   ih=("cp", 3), hh=("cp", 4), hd=("svd", 2)),
}


VARLEN = {
    "cls_varlen": dict(vocab=0, input=5, hidden=7, layers=2, head="cls", out=4, B=5, T=6, state=False,
                       ih=("dense", 0), hh=("dense", 0), hd=("dense", 0), lengths=[3, 6, 1, 4, 6]),
    "lm_varlen_pad": dict(vocab=9, input=4, hidden=6, layers=2, head="lm", out=9, B=4, T=7, state=True,
                          ih=("dense", 0), hh=("dense", 0), hd=("dense", 0), lengths=[5, 1, 7, 3], pad=0),
    "cls_varlen_svd": dict(vocab=0, input=5, hidden=7, layers=2, head="cls", out=4, B=5, T=6, state=False,
                           ih=("svd", 3), hh=("svd", 4), hd=("svd", 2), lengths=[2, 6, 1, 5, 3]),
    "lm_varlen_cp": dict(vocab=9, input=4, hidden=6, layers=1, head="lm", out=9, B=3, T=5, state=True,
                         ih=("cp", 3), hh=("cp", 2), hd=("dense", 0), lengths=[4, 5, 1], pad=0),
    # bidirectional (nn.LSTM(bidirectional=True); parameters "_reverse"; state (2L, B, H))
    "cls_bidir": dict(vocab=0, input=5, hidden=6, layers=2, head="cls", out=4, B=3, T=5, state=True,
                      ih=("dense", 0), hh=("dense", 0), hd=("dense", 0), bidir=True),
    "cls_bidir_varlen": dict(vocab=0, input=4, hidden=5, layers=3, head="cls", out=3, B=4, T=6, state=False,
                             ih=("dense", 0), hh=("dense", 0), hd=("dense", 0), lengths=[4, 6, 1, 3], bidir=True),
    "tag_bidir_varlen_pad": dict(vocab=8, input=4, hidden=5, layers=1, head="lm", out=8, B=3, T=6, state=True,
                                 ih=("dense", 0), hh=("dense", 0), hd=("dense", 0), lengths=[2, 6, 1], pad=0,
                                 bidir=True),
    # projections (nn.LSTM(proj_size=P); weight_hr (P, H); h of size P)
    "cls_proj_varlen": dict(vocab=0, input=4, hidden=5, layers=2, head="cls", out=3, B=4, T=6, state=True,
                            ih=("dense", 0), hh=("dense", 0), hd=("dense", 0), lengths=[6, 2, 1, 4], proj=3),
    "cls_bidir_proj_varlen": dict(vocab=0, input=4, hidden=5, layers=2, head="cls", out=3, B=4, T=5, state=True,
                                  ih=("dense", 0), hh=("dense", 0), hd=("dense", 0), lengths=[3, 5, 1, 2], proj=2,
                                  bidir=True),
    "lm_proj_svd": dict(vocab=7, input=4, hidden=6, layers=2, head="lm", out=7, B=3, T=5, state=True,
                        ih=("svd", 2), hh=("svd", 2), hr=("svd", 2), hd=("dense", 0), proj=4),
    "cls_bidir_svd_varlen": dict(vocab=0, input=4, hidden=5, layers=2, head="cls", out=3, B=4, T=6, state=True,
                                 ih=("svd", 2), hh=("svd", 3), hd=("svd", 2), lengths=[5, 1, 6, 2], bidir=True),
}


def mat_params(name, spec, rows, cols, g):
    kind, r = spec
    if kind == "dense":
        return {name: torch.randn(rows, cols, generator=g, dtype=torch.float64) * 0.4}
    if kind == "svd":
        return {name + ".U": torch.randn(rows, r, generator=g, dtype=torch.float64) * 0.5,
                name + ".V": torch.randn(r, cols, generator=g, dtype=torch.float64) * 0.5}
    return {name + ".A": torch.randn(4, r, generator=g, dtype=torch.float64) * 0.8,
            name + ".B": torch.randn(rows // 4, r, generator=g, dtype=torch.float64) * 0.8,
            name + ".C": torch.randn(cols, r, generator=g, dtype=torch.float64) * 0.8}


def dense_of(p, name, spec):
    kind = spec[0]
    if kind == "dense":
        return p[name]
    if kind == "svd":
        return p[name + ".U"] @ p[name + ".V"]
    A, B, C = p[name + ".A"], p[name + ".B"], p[name + ".C"]
    return torch.einsum("gr,ir,jr->gij", A, B, C).reshape(4 * B.shape[0], C.shape[0])


def run_direction(p, c, l, sfx, reverse, xs, h, cc, lens):
    """One direction of layer l by the LSTM equations (decomposed weights): outputs (T, B, P).
    The reverse direction walks t down; with lengths a padded step keeps the state (so the reverse
    pass starts at each sequence's own end) and outputs zero."""
    T = xs.shape[0]
    Wi = dense_of(p, f"lstm.weight_ih_l{l}{sfx}", c["ih"])
    Wh = dense_of(p, f"lstm.weight_hh_l{l}{sfx}", c["hh"])
    Wr = dense_of(p, f"lstm.weight_hr_l{l}{sfx}", c.get("hr", ("dense", 0))) if c.get("proj") else None
    b = p[f"lstm.bias_ih_l{l}{sfx}"] + p[f"lstm.bias_hh_l{l}{sfx}"]
    ys = [None] * T
    for t in (reversed(range(T)) if reverse else range(T)):
        i, f, gg, o = (xs[t] @ Wi.T + h @ Wh.T + b).chunk(4, dim=1)
        cn = torch.sigmoid(f) * cc + torch.sigmoid(i) * torch.tanh(gg)
        hn = torch.sigmoid(o) * torch.tanh(cn)
        if Wr is not None:
            hn = hn @ Wr.T
        if lens is None:
            h, cc = hn, cn
            ys[t] = h
            continue
        m = torch.tensor([[1.0 if t < n else 0.0] for n in lens], dtype=torch.float64)
        h, cc = m * hn + (1 - m) * h, m * cn + (1 - m) * cc
        ys[t] = m * hn
    return torch.stack(ys)


def run_case(c, seed):
    g = torch.Generator().manual_seed(seed)
    V, D, H, L, O, B, T = c["vocab"], c["input"], c["hidden"], c["layers"], c["out"], c["B"], c["T"]
    p = {}
    lens = c.get("lengths")
    pad = c.get("pad")
    if V:
        p["embedding.weight"] = torch.randn(V, D, generator=g, dtype=torch.float64)
        if pad is not None:
            with torch.no_grad():
                p["embedding.weight"][pad] = 0  # as nn.Embedding(padding_idx) initialises it
    dirs = 2 if c.get("bidir") else 1
    sfx = ["", "_reverse"][:dirs]
    P = c.get("proj", 0) or H  # size of h
    for l in range(L):
        n_in = D if l == 0 else dirs * P
        for x in sfx:
            p.update(mat_params(f"lstm.weight_ih_l{l}{x}", c["ih"], 4 * H, n_in, g))
            p.update(mat_params(f"lstm.weight_hh_l{l}{x}", c["hh"], 4 * H, P, g))
            p[f"lstm.bias_ih_l{l}{x}"] = torch.randn(4 * H, generator=g, dtype=torch.float64) * 0.3
            p[f"lstm.bias_hh_l{l}{x}"] = torch.randn(4 * H, generator=g, dtype=torch.float64) * 0.3
            if c.get("proj"):
                p.update(mat_params(f"lstm.weight_hr_l{l}{x}", c.get("hr", ("dense", 0)), P, H, g))
    p.update(mat_params("head.weight", c["hd"], O, dirs * P, g))
    p["head.bias"] = torch.randn(O, generator=g, dtype=torch.float64) * 0.3
    for t in p.values():
        t.requires_grad_(True)

    rec = {}
    if V:
        tokens = torch.randint(0, V, (T, B), generator=g)
        rec["tokens"] = tokens
    else:
        x = torch.randn(T, B, D, generator=g, dtype=torch.float64)
        rec["x"] = x
    targets = torch.randint(0, O, (T, B) if c["head"] == "lm" else (B,), generator=g)
    rec["targets"] = targets
    if c["state"]:
        h0 = torch.randn(L * dirs, B, P, generator=g, dtype=torch.float64) * 0.5
        c0 = torch.randn(L * dirs, B, H, generator=g, dtype=torch.float64)
        rec["h0"], rec["c0"] = h0, c0
    else:
        h0 = torch.zeros(L * dirs, B, P, dtype=torch.float64)
        c0 = torch.zeros(L * dirs, B, H, dtype=torch.float64)

    if lens is not None:
        rec["lengths"] = torch.tensor(lens, dtype=torch.int32)
        if V:  # the padding id at padded steps and at some valid ones
            with torch.no_grad():
                for b in range(B):
                    rec["tokens"][lens[b]:, b] = pad
                rec["tokens"][0, B - 1] = pad
        if pad is not None:
            rec["padding_idx"] = torch.tensor([pad], dtype=torch.int32)
    inp = F.embedding(rec["tokens"], p["embedding.weight"], padding_idx=pad) if V else rec["x"]
    all_dense = c["ih"][0] == "dense" and c["hh"][0] == "dense"
    if all_dense:
        lstm = torch.nn.LSTM(D, H, L, bidirectional=dirs == 2, proj_size=c.get("proj", 0)).double()
        with torch.no_grad():
            for l in range(L):
                for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh") + (("weight_hr",) if c.get("proj") else ()):
                    for x in sfx:
                        getattr(lstm, f"{k}_l{l}{x}").copy_(p[f"lstm.{k}_l{l}{x}"])
        if lens is not None:  # nn.LSTM on a packed sequence
            packed = torch.nn.utils.rnn.pack_padded_sequence(inp, torch.tensor(lens), enforce_sorted=False)
            out, _ = lstm(packed, (h0, c0))
            out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
        else:
            out, _ = lstm(inp, (h0, c0))
            out.retain_grad()
        ours = dict(lstm.named_parameters())
    else:
        xs = inp
        for l in range(L):
            xs = torch.cat([run_direction(p, c, l, x, d == 1, xs, h0[l * dirs + d], c0[l * dirs + d], lens)
                            for d, x in enumerate(sfx)], dim=2)
        out = xs
    Wo = dense_of(p, "head.weight", c["hd"])
    if c["head"] == "lm":
        logits = out @ Wo.T + p["head.bias"]
        tgt = targets.clone()
        if lens is not None:  # padded steps are ignored (mean over valid targets)
            for b in range(B):
                tgt[lens[b]:, b] = -100
        loss = F.cross_entropy(logits.reshape(-1, O), tgt.reshape(-1), ignore_index=-100)
    else:
        last = out[-1] if lens is None else torch.stack([out[lens[b] - 1, b] for b in range(B)])
        logits = last @ Wo.T + p["head.bias"]
        loss = F.cross_entropy(logits, targets)
    loss.backward()
    grads = {}
    for k, t in p.items():
        if all_dense and k.startswith("lstm."):
            grads[k] = ours[k[len("lstm."):]].grad
        else:
            grads[k] = t.grad
    rec["loss"] = loss.detach().reshape(1)
    for k in p:
        rec[k] = p[k].detach()
        rec["grad." + k] = grads[k]
    return rec


TRAIN = dict(vocab=9, input=5, hidden=6, layers=2, B=3, bptt=4, n=51, steps=6, clip=0.5)


def run_training(optim, seed):
    """A dense LM trained for a few steps exactly as fl_trainer does: B parallel streams of
    S = n // B tokens, windows of bptt steps over S - 1 targets, state carried (detached) between
    windows and reset at each epoch, clip_grad_norm_, then SGD (momentum) or Adam. float64."""
    c = TRAIN
    g = torch.Generator().manual_seed(seed)
    V, D, H, L, B, W = c["vocab"], c["input"], c["hidden"], c["layers"], c["B"], c["bptt"]
    emb = torch.nn.Embedding(V, D).double()
    lstm = torch.nn.LSTM(D, H, L).double()
    head = torch.nn.Linear(H, V).double()
    with torch.no_grad():
        for mod in (emb, lstm, head):
            for t in mod.parameters():
                t.copy_(torch.randn(t.shape, generator=g, dtype=torch.float64) * 0.5)
    named = {"embedding.weight": emb.weight, "head.weight": head.weight, "head.bias": head.bias}
    for k, t in lstm.named_parameters():
        named["lstm." + k] = t
    rec = {}
    for k, t in named.items():
        rec[k] = t.detach().clone()
    tokens = torch.randint(0, V, (c["n"],), generator=g)
    rec["tokens"] = tokens
    params = list(named.values())
    if optim == "sgd":
        opt = torch.optim.SGD(params, lr=0.5, momentum=0.9)
    else:
        opt = torch.optim.Adam(params, lr=0.01)
    S = c["n"] // B
    windows = (S - 1 + W - 1) // W
    streams = tokens[: B * S].view(B, S)
    losses = []
    state = None
    for step in range(c["steps"]):
        pos = step % windows
        if pos == 0:
            state = (torch.zeros(L, B, H, dtype=torch.float64), torch.zeros(L, B, H, dtype=torch.float64))
        start = pos * W
        T = min(W, S - 1 - start)
        x = streams[:, start:start + T].t()
        y = streams[:, start + 1:start + 1 + T].t()
        out, state = lstm(emb(x), state)
        state = tuple(s.detach() for s in state)
        loss = F.cross_entropy(head(out).reshape(-1, V), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, c["clip"])
        opt.step()
        losses.append(loss.item())
    rec["losses"] = torch.tensor(losses, dtype=torch.float64)
    for k, t in named.items():
        rec["final." + k] = t.detach().clone()
    return rec


def write(path, rec):
    with open(path + ".tmp", "wb") as f:
        f.write(b"FLGG" + struct.pack("<II", 1, len(rec)))
        for name, t in rec.items():
            nb = name.encode()
            is_int = not torch.is_floating_point(t)
            arr = t.to(torch.int32 if is_int else torch.float32).contiguous()
            f.write(struct.pack("<I", len(nb)) + nb + struct.pack("<II", 1 if is_int else 0, arr.dim()))
            f.write(struct.pack(f"<{arr.dim()}I", *arr.shape))
            f.write(arr.numpy().tobytes())
    os.replace(path + ".tmp", path)


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: gen_grad_golden.py OUT_DIR [varlen]")
    if len(sys.argv) == 3 and sys.argv[2] == "varlen":
        os.makedirs(sys.argv[1], exist_ok=True)
        for k, (name, c) in enumerate(VARLEN.items()):
            write(os.path.join(sys.argv[1], name + ".bin"), run_case(c, 4321 + k))
        return
    os.makedirs(sys.argv[1], exist_ok=True)
    for k, (name, c) in enumerate(CASES.items()):
        write(os.path.join(sys.argv[1], name + ".bin"), run_case(c, 1234 + k))
    for k, optim in enumerate(("sgd", "adam")):
        write(os.path.join(sys.argv[1], f"train_{optim}.bin"), run_training(optim, 99 + k))


if __name__ == "__main__":
    main()
