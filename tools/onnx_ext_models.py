#!/usr/bin/python3
"""ONNX LSTM nodes with the features PyTorch cannot export (peepholes P, clip, input_forget), random
weights, built with onnx.helper, and their outputs from an independent float64 NumPy implementation
of the ONNX LSTM spec (default activations f=Sigmoid, g=h=Tanh; clip bounds every activation's input).

    /usr/bin/python3 tools/onnx_ext_models.py OUTDIR

Writes OUTDIR/NAME.onnx, NAME.x.npy (T, B, I), NAME.h0.npy / NAME.c0.npy when the node takes initial
states, the reference NAME.y.npy (T, B, H) (Y without its num_directions axis), NAME.hn.npy and
NAME.cn.npy (1, B, H); one line "NAME STATES" per case in OUTDIR/cases.txt.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def reference(x, W, R, B, P, clip, input_forget, h0, c0):
    """ONNX LSTM, one direction, layout 0, gates stacked i, o, f, c, in float64."""
    H = R.shape[-1]
    W, R, B, P = (a.astype(np.float64) for a in (W[0], R[0], B[0], P[0]))
    wb, rb = B[:4 * H], B[4 * H:]
    pi, po, pf = P[:H], P[H:2 * H], P[2 * H:]
    cl = (lambda v: np.clip(v, -clip, clip)) if clip > 0 else (lambda v: v)
    h, c, ys = h0.astype(np.float64), c0.astype(np.float64), []
    for t in range(x.shape[0]):
        g = x[t].astype(np.float64) @ W.T + h @ R.T + wb + rb
        gi, go, gf, gc = g[:, :H], g[:, H:2 * H], g[:, 2 * H:3 * H], g[:, 3 * H:]
        i = sigmoid(cl(gi + pi * c))
        f = 1 - i if input_forget else sigmoid(cl(gf + pf * c))
        c = f * c + i * np.tanh(cl(gc))
        o = sigmoid(cl(go + po * c))
        h = o * np.tanh(c)
        ys.append(h)
    return np.stack(ys), h[None], c[None]


# name, peepholes, clip, input_forget, initial states
CASES = [
    ("peep", True, 0.0, 0, False),
    ("clip", False, 0.7, 0, False),
    ("input_forget", False, 0.0, 1, False),
    ("all_states", True, 1.5, 1, True),
]


def main(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(2611)
    T, Bn, I, H = 6, 3, 4, 5
    lines = []
    for name, peep, clip, inf, states in CASES:
        W = rng.uniform(-1, 1, (1, 4 * H, I)).astype(np.float32)
        R = rng.uniform(-1, 1, (1, 4 * H, H)).astype(np.float32)
        B = rng.uniform(-1, 1, (1, 8 * H)).astype(np.float32)
        P = (rng.uniform(-1, 1, (1, 3 * H)) if peep else np.zeros((1, 3 * H))).astype(np.float32)
        x = rng.standard_normal((T, Bn, I)).astype(np.float32) * 2
        h0 = rng.standard_normal((1, Bn, H)).astype(np.float32) if states else np.zeros((1, Bn, H), np.float32)
        c0 = rng.standard_normal((1, Bn, H)).astype(np.float32) if states else np.zeros((1, Bn, H), np.float32)
        attrs = {"hidden_size": H}
        if clip > 0:
            attrs["clip"] = clip
        if inf:
            attrs["input_forget"] = inf
        inputs = ["x", "W", "R", "B", "", "h0" if states else "", "c0" if states else "", "P" if peep else ""]
        while inputs[-1] == "":
            inputs.pop()
        node = helper.make_node("LSTM", inputs, ["Y", "Y_h", "Y_c"], name="lstm_" + name, **attrs)
        inits = [numpy_helper.from_array(a, n) for a, n in ((W, "W"), (R, "R"), (B, "B"))]
        if peep:
            inits.append(numpy_helper.from_array(P, "P"))
        gin = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "B", I])]
        if states:
            gin += [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, "B", H]) for n in ("h0", "c0")]
        gout = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["T", 1, "B", H]),
                helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [1, "B", H]),
                helper.make_tensor_value_info("Y_c", TensorProto.FLOAT, [1, "B", H])]
        graph = helper.make_graph([node], name, gin, gout, inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], producer_name="fastlstm-test")
        model.ir_version = 7
        onnx.checker.check_model(model)
        onnx.save(model, f"{out}/{name}.onnx")
        y, hn, cn = reference(x, W, R, B, P, clip, inf, h0[0], c0[0])
        np.save(f"{out}/{name}.x.npy", x)
        if states:
            np.save(f"{out}/{name}.h0.npy", h0)
            np.save(f"{out}/{name}.c0.npy", c0)
        np.save(f"{out}/{name}.y.npy", y.astype(np.float32))
        np.save(f"{out}/{name}.hn.npy", hn.astype(np.float32))
        np.save(f"{out}/{name}.cn.npy", cn.astype(np.float32))
        lines.append(f"{name} {'states' if states else 'none'}")
    with open(f"{out}/cases.txt", "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
