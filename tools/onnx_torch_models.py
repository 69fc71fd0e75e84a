#!/usr/bin/python3
"""Test models for `fastlstm import`: PyTorch modules with random weights exported by torch.onnx.export,
with inputs and PyTorch's own outputs on them.

    /usr/bin/python3 tools/onnx_torch_models.py OUTDIR

For each case NAME writes OUTDIR/NAME.onnx, NAME.x.npy (the input, in the graph's layout),
NAME.h0.npy / NAME.c0.npy (when the case passes initial states), and PyTorch's outputs NAME.y.npy,
NAME.hn.npy, NAME.cn.npy; and one line per case to OUTDIR/cases.txt:
    NAME LAYOUT STATES     (LAYOUT: batch or time; STATES: states or none)
Refusal cases (modules the converter must refuse) go to OUTDIR/refuse.txt as NAME EXPECTED-TEXT.
Cases cover 1-3 layers, batch_first or not, features or nn.Embedding, no head / per-step nn.Linear /
last-step nn.Linear, initial states, an LSTM without biases, opsets 9 to 14.
"""
import os
import sys
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")


class Net(torch.nn.Module):
    def __init__(self, vocab, d, h, layers, batch_first, head, bias=True, bidirectional=False):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, d) if vocab else None
        self.lstm = torch.nn.LSTM(d, h, layers, batch_first=batch_first, bias=bias, bidirectional=bidirectional)
        self.head_kind = head
        self.head = torch.nn.Linear(h * (2 if bidirectional else 1), 5) if head != "none" else None
        self.batch_first = batch_first

    def forward(self, x, h0=None, c0=None):
        if self.emb is not None:
            x = self.emb(x)
        y, (hn, cn) = self.lstm(x, None if h0 is None else (h0, c0))
        if self.head_kind == "step":
            y = self.head(y)
        elif self.head_kind == "last":
            y = self.head(y[:, -1] if self.batch_first else y[-1])
        return y, hn, cn


# name, vocab, layers, batch_first, head, initial states, opset, bias
CASES = [
    ("feat1_time_op9", 0, 1, False, "none", False, 9, True),
    ("feat2_batch_states_op14", 0, 2, True, "none", True, 14, True),
    ("tok3_batch_step_op11", 13, 3, True, "step", False, 11, True),
    ("feat2_time_step_states_op13", 0, 2, False, "step", True, 13, True),
    ("feat2_batch_last_op12", 0, 2, True, "last", False, 12, True),
    ("tok1_time_last_op10", 17, 1, False, "last", True, 10, True),
    ("feat1_batch_nobias_op14", 0, 1, True, "none", False, 14, False),
]

REFUSE = [
    # name, module, expected text in the error
    ("bidirectional", Net(0, 4, 6, 1, True, "none", bidirectional=True), "bidirectional"),
    ("gru", torch.nn.GRU(4, 6, 1, batch_first=True), "operator 'GRU'"),
    ("no_lstm", torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU()), "(op MatMul)"),
]


def main(out):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(20261130)
    np.random.seed(1130)
    D, H, B, T = 4, 6, 3, 5
    lines = []
    for name, vocab, layers, bf, head, states, opset, bias in CASES:
        net = Net(vocab, D, H, layers, bf, head, bias).eval()
        with torch.no_grad():  # weights well away from PyTorch's small init, to exercise saturation
            for p in net.parameters():
                p.uniform_(-0.8, 0.8)
        shape = (B, T) if bf else (T, B)
        x = torch.randint(0, vocab, shape) if vocab else torch.randn(*shape, D)
        args, names = (x,), ["x"]
        if states:
            h0, c0 = torch.randn(layers, B, H), torch.randn(layers, B, H)
            args, names = (x, h0, c0), ["x", "h0", "c0"]
            np.save(f"{out}/{name}.h0.npy", h0.numpy())
            np.save(f"{out}/{name}.c0.npy", c0.numpy())
        dyn = {"x": {0: "d0", 1: "d1"}}
        torch.onnx.export(net, args, f"{out}/{name}.onnx", opset_version=opset, input_names=names,
                          output_names=["y", "hn", "cn"], dynamic_axes=dyn)
        with torch.no_grad():
            y, hn, cn = net(*args)
        np.save(f"{out}/{name}.x.npy", x.numpy().astype(np.int64) if vocab else x.numpy())
        np.save(f"{out}/{name}.y.npy", y.numpy())
        np.save(f"{out}/{name}.hn.npy", hn.numpy())
        np.save(f"{out}/{name}.cn.npy", cn.numpy())
        lines.append(f"{name} {'batch' if bf else 'time'} {'states' if states else 'none'}")
    with open(f"{out}/cases.txt", "w") as f:
        f.write("\n".join(lines) + "\n")
    ref = []
    for name, mod, text in REFUSE:
        torch.onnx.export(mod.eval(), (torch.randn(B, T, D),), f"{out}/refuse_{name}.onnx", opset_version=14)
        ref.append(f"refuse_{name} {text}")
    with open(f"{out}/refuse.txt", "w") as f:
        f.write("\n".join(ref) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
