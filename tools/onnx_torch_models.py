#!/usr/bin/python3
"""Test models for `fastlstm import`: PyTorch modules with random weights exported by torch.onnx.export,
with inputs and PyTorch's own outputs on them.

    /usr/bin/python3 tools/onnx_torch_models.py OUTDIR

For each case NAME writes OUTDIR/NAME.onnx, NAME.x.npy (the input, in the graph's layout),
NAME.h0.npy / NAME.c0.npy (when the case passes initial states), NAME.len.npy (int64 (B), when the
case passes lengths), and PyTorch's outputs NAME.y.npy, NAME.hn.npy, NAME.cn.npy, computed in float64
on the same (float32) weights and inputs; and one line per case to OUTDIR/cases.txt:
    NAME LAYOUT STATES LENGTHS   (LAYOUT: batch or time; STATES: states or none; LENGTHS: lengths or none)
Refusal cases (modules the converter must refuse) go to OUTDIR/refuse.txt as NAME EXPECTED-TEXT.
Cases cover 1-3 layers, uni- and bidirectional, batch_first or not, features or nn.Embedding, no
head / per-step nn.Linear / last-step nn.Linear, initial states, an LSTM without biases, variable
lengths (pack_padded_sequence / pad_packed_sequence, exported as LSTM's sequence_lens; the lengths
given at run time are unsorted and include 1 and the full length; exported with enforce_sorted True
and False), opsets 9 to 14.
"""
import os
import sys
import warnings

import numpy as np
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

warnings.filterwarnings("ignore")


class Net(torch.nn.Module):
    def __init__(self, vocab, d, h, layers, batch_first, head, bias=True, bidirectional=False, head_bias=True):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, d) if vocab else None
        self.lstm = torch.nn.LSTM(d, h, layers, batch_first=batch_first, bias=bias, bidirectional=bidirectional)
        self.head_kind = head
        self.head = torch.nn.Linear(h * (2 if bidirectional else 1), 5, bias=head_bias) if head != "none" else None
        self.batch_first = batch_first
        self.sorted = True  # export traces sorted lengths; the reference runs unsorted ones

    def forward(self, x, h0=None, c0=None, lengths=None):
        if self.emb is not None:
            x = self.emb(x)
        state = None if h0 is None else (h0, c0)
        if lengths is None:
            y, (hn, cn) = self.lstm(x, state)
        else:
            t = x.shape[1 if self.batch_first else 0]
            p = pack_padded_sequence(x, lengths, batch_first=self.batch_first, enforce_sorted=self.sorted)
            y, (hn, cn) = self.lstm(p, state)
            y, _ = pad_packed_sequence(y, batch_first=self.batch_first, total_length=t)
        if self.head_kind == "step":
            y = self.head(y)
        elif self.head_kind == "last":
            y = self.head(y[:, -1] if self.batch_first else y[-1])
        return y, hn, cn


# name, vocab, layers, batch_first, head, initial states, opset, bias, bidirectional, lengths
# (a per-step head with lengths has no bias: past a length the graph's outputs are the head's bias,
# fastlstm's are zero, so the importer refuses a biased one; see REFUSE)
CASES = [
    ("feat1_time_op9", 0, 1, False, "none", False, 9, True, False, False),
    ("feat2_batch_states_op14", 0, 2, True, "none", True, 14, True, False, False),
    ("tok3_batch_step_op11", 13, 3, True, "step", False, 11, True, False, False),
    ("feat2_time_step_states_op13", 0, 2, False, "step", True, 13, True, False, False),
    ("feat2_batch_last_op12", 0, 2, True, "last", False, 12, True, False, False),
    ("tok1_time_last_op10", 17, 1, False, "last", True, 10, True, False, False),
    ("feat1_batch_nobias_op14", 0, 1, True, "none", False, 14, False, False, False),
    ("bi1_batch_step_op14", 0, 1, True, "step", False, 14, True, True, False),
    ("bi2_time_states_op11", 0, 2, False, "none", True, 11, True, True, False),
    ("bi3_batch_last_states_op13", 0, 3, True, "last", True, 13, True, True, False),
    ("tokbi2_time_step_op12", 11, 2, False, "step", False, 12, True, True, False),
    ("bi1_time_lens_op14", 0, 1, False, "none", False, 14, True, True, True),
    ("bi2_batch_lens_states_op14", 0, 2, True, "none", True, 14, True, True, True),
    ("bi3_time_lens_step_op12", 0, 3, False, "step0", False, 12, True, True, True),
    ("tokbi2_batch_lens_op13", 9, 2, True, "none", False, 13, True, True, True),
    ("feat2_batch_lens_op11", 0, 2, True, "none", True, 11, True, False, True),
    # "_us": exported with enforce_sorted=False (TopK sort of the lengths, Gather, ScatterElements unsort)
    ("bi2_batch_lens_us_states_op14", 0, 2, True, "none", True, 14, True, True, True),
    ("tokbi1_time_lens_us_op13", 7, 1, False, "step0", False, 13, True, True, True),
    ("feat3_time_lens_us_states_op11", 0, 3, False, "none", True, 11, True, False, True),
]

REFUSE = [
    # name, module, expected text in the error, lengths
    ("gru", torch.nn.GRU(4, 6, 1, batch_first=True), "operator 'GRU'", False),
    ("no_lstm", torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU()), "(op MatMul)", False),
    ("lens_head_bias", Net(0, 4, 6, 1, True, "step", bidirectional=True), "outputs past a sequence's length are the bias", True),
    ("lens_last_step", Net(0, 4, 6, 2, True, "last"), "head on the last time step", True),
]

B, T = 4, 5
LENGTHS_TRACE = [5, 4, 3, 1]  # sorted, as enforce_sorted=True needs at export
LENGTHS_RUN = [3, 5, 1, 4]    # unsorted, with 1 and the full length


def main(out):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(20261130)
    np.random.seed(1130)
    D, H = 4, 6
    lines = []
    for name, vocab, layers, bf, head, states, opset, bias, bi, lens in CASES:
        net = Net(vocab, D, H, layers, bf, head.rstrip("0"), bias, bi, head_bias=head != "step0").eval()
        with torch.no_grad():  # weights well away from PyTorch's small init, to exercise saturation
            for p in net.parameters():
                p.uniform_(-0.8, 0.8)
        shape = (B, T) if bf else (T, B)
        x = torch.randint(0, vocab, shape) if vocab else torch.randn(*shape, D)
        args, names = (x,), ["x"]
        rows = layers * (2 if bi else 1)
        if states:
            h0, c0 = torch.randn(rows, B, H), torch.randn(rows, B, H)
            args, names = (x, h0, c0), ["x", "h0", "c0"]
            np.save(f"{out}/{name}.h0.npy", h0.numpy())
            np.save(f"{out}/{name}.c0.npy", c0.numpy())
        dyn = {"x": {0: "d0", 1: "d1"}}
        kw = {}
        net.sorted = "_us" not in name
        if lens:
            kw = {"lengths": torch.tensor(LENGTHS_TRACE if net.sorted else LENGTHS_RUN)}
            names.append("lengths")
            dyn["lengths"] = {0: "batch"}
            if not states:
                args = args + (None, None)
        torch.onnx.export(net, args + ((kw["lengths"],) if lens else ()), f"{out}/{name}.onnx",
                          opset_version=opset, input_names=names, output_names=["y", "hn", "cn"], dynamic_axes=dyn)
        # the reference: float64, unsorted lengths
        net.sorted = False
        net64 = net.double()
        args64 = tuple(a.double() if a is not None and a.is_floating_point() else a for a in args)
        with torch.no_grad():
            y, hn, cn = net64(*args64, **({"lengths": torch.tensor(LENGTHS_RUN)} if lens else {}))
        np.save(f"{out}/{name}.x.npy", x.numpy().astype(np.int64) if vocab else x.numpy())
        if lens:
            np.save(f"{out}/{name}.len.npy", np.array(LENGTHS_RUN, dtype=np.int64))
        np.save(f"{out}/{name}.y.npy", y.numpy())
        np.save(f"{out}/{name}.hn.npy", hn.numpy())
        np.save(f"{out}/{name}.cn.npy", cn.numpy())
        lines.append(f"{name} {'batch' if bf else 'time'} {'states' if states else 'none'} {'lengths' if lens else 'none'}")
    with open(f"{out}/cases.txt", "w") as f:
        f.write("\n".join(lines) + "\n")
    ref = []
    for name, mod, text, lens in REFUSE:
        args = (torch.randn(B, T, D),) + ((None, None, torch.tensor(LENGTHS_TRACE)) if lens else ())
        names = ["x", "lengths"] if lens else None
        torch.onnx.export(mod.eval(), args, f"{out}/refuse_{name}.onnx", opset_version=14, input_names=names)
        ref.append(f"refuse_{name} {text}")
    with open(f"{out}/refuse.txt", "w") as f:
        f.write("\n".join(ref) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
