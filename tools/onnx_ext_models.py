#!/usr/bin/python3
"""ONNX LSTM nodes with the features PyTorch cannot export (peepholes P, clip, input_forget), and
bidirectional nodes with sequence_lens written by hand (layout 0 and 1), random weights, built with
onnx.helper, and their outputs from an independent float64 NumPy implementation of the ONNX LSTM
spec (default activations f=Sigmoid, g=h=Tanh; clip bounds every activation's input; sequence_lens:
steps past a sequence's length are skipped and their Y is zero, Y_h / Y_c are the state after its
last valid step, the reverse direction starts at its last valid step).

    /usr/bin/python3 tools/onnx_ext_models.py OUTDIR

Writes OUTDIR/NAME.onnx, NAME.x.npy ((T, B, I), or (B, T, I) for layout 1), NAME.h0.npy / NAME.c0.npy
when the node takes initial states, NAME.len.npy (int32 (B)) when it takes sequence_lens, the
reference NAME.y.npy ((T, B, dirs*H) or (B, T, dirs*H): Y with its directions joined per step),
NAME.hn.npy and NAME.cn.npy (dirs, B, H); one line "NAME STATES LAYOUT LENGTHS" per case in
OUTDIR/cases.txt (LAYOUT time or batch; LENGTHS lengths or none). Nodes the converter must refuse go
to OUTDIR/refuse_NAME.onnx with a line "refuse_NAME EXPECTED-TEXT" in OUTDIR/refuse.txt.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def reference(x, W, R, B, P, clip, input_forget, h0, c0, lens=None):
    """ONNX LSTM, layout 0, gates stacked i, o, f, c, in float64: x (T, B, I), weights (dirs, ...),
    h0 / c0 (dirs, B, H). Returns Y (T, dirs, B, H), Y_h and Y_c (dirs, B, H)."""
    T, Bn, H, dirs = x.shape[0], x.shape[1], R.shape[-1], W.shape[0]
    lens = np.full(Bn, T) if lens is None else lens
    cl = (lambda v: np.clip(v, -clip, clip)) if clip > 0 else (lambda v: v)
    Y, Yh, Yc = np.zeros((T, dirs, Bn, H)), np.zeros((dirs, Bn, H)), np.zeros((dirs, Bn, H))
    for d in range(dirs):
        w, r, b, p = (a[d].astype(np.float64) for a in (W, R, B, P))
        pi, po, pf = p[:H], p[H:2 * H], p[2 * H:]
        for s in range(Bn):  # one sequence at a time: its own steps only
            h, c = h0[d, s].astype(np.float64), c0[d, s].astype(np.float64)
            steps = range(lens[s]) if d == 0 else range(lens[s] - 1, -1, -1)
            for t in steps:
                g = x[t, s].astype(np.float64) @ w.T + h @ r.T + b[:4 * H] + b[4 * H:]
                gi, go, gf, gc = g[:H], g[H:2 * H], g[2 * H:3 * H], g[3 * H:]
                i = sigmoid(cl(gi + pi * c))
                f = 1 - i if input_forget else sigmoid(cl(gf + pf * c))
                c = f * c + i * np.tanh(cl(gc))
                o = sigmoid(cl(go + po * c))
                h = o * np.tanh(c)
                Y[t, d, s] = h
            Yh[d, s], Yc[d, s] = h, c
    return Y, Yh, Yc


def value(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def save_model(out, name, nodes, gin, gout, inits, check=True):
    graph = helper.make_graph(nodes, name, gin, gout, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], producer_name="fastlstm-test")
    model.ir_version = 7
    if check:
        onnx.checker.check_model(model)
    onnx.save(model, f"{out}/{name}.onnx")


def bidir_cases(out, rng, lines):
    """Bidirectional nodes with sequence_lens, joined per step as PyTorch does: layout 0 through
    Transpose(0, 2, 1, 3) + Reshape(0, 0, -1); layout 1 (Y (B, T, 2, H)) through Reshape alone, its
    Y_h / Y_c (B, 2, H) transposed to (2, B, H)."""
    T, Bn, I, H = 6, 4, 3, 5
    lens = np.array([2, 6, 1, 4], np.int32)  # unsorted, with 1 and T
    for name, layout, states in (("bidir_lens_time", 0, True), ("bidir_lens_batch", 1, False)):
        W = rng.uniform(-1, 1, (2, 4 * H, I)).astype(np.float32)
        R = rng.uniform(-1, 1, (2, 4 * H, H)).astype(np.float32)
        B = rng.uniform(-1, 1, (2, 8 * H)).astype(np.float32)
        x = rng.standard_normal((T, Bn, I)).astype(np.float32) * 2
        h0 = rng.standard_normal((2, Bn, H)).astype(np.float32) if states else np.zeros((2, Bn, H), np.float32)
        c0 = rng.standard_normal((2, Bn, H)).astype(np.float32) if states else np.zeros((2, Bn, H), np.float32)
        inits = [numpy_helper.from_array(a, n) for a, n in ((W, "W"), (R, "R"), (B, "B"))]
        inits.append(numpy_helper.from_array(np.array([0, 0, -1], np.int64), "join"))
        ins = ["x", "W", "R", "B", "lens", "h0" if states else "", "c0" if states else ""]
        gin = [value("x", TensorProto.FLOAT, ["T", "B", I] if layout == 0 else ["B", "T", I]),
               value("lens", TensorProto.INT32, ["B"])]
        if states:
            gin += [value(n, TensorProto.FLOAT, [2, "B", H]) for n in ("h0", "c0")]
        if layout == 0:
            nodes = [helper.make_node("LSTM", ins, ["Y4", "Y_h", "Y_c"], name="lstm", hidden_size=H, direction="bidirectional"),
                     helper.make_node("Transpose", ["Y4"], ["Yt"], perm=[0, 2, 1, 3]),
                     helper.make_node("Reshape", ["Yt", "join"], ["Y"])]
            gout = [value("Y", TensorProto.FLOAT, ["T", "B", 2 * H]),
                    value("Y_h", TensorProto.FLOAT, [2, "B", H]), value("Y_c", TensorProto.FLOAT, [2, "B", H])]
        else:
            nodes = [helper.make_node("LSTM", ins, ["Y4", "Yh_b", "Yc_b"], name="lstm", hidden_size=H,
                                      direction="bidirectional", layout=1),
                     helper.make_node("Reshape", ["Y4", "join"], ["Y"]),
                     helper.make_node("Transpose", ["Yh_b"], ["Y_h"], perm=[1, 0, 2]),
                     helper.make_node("Transpose", ["Yc_b"], ["Y_c"], perm=[1, 0, 2])]
            gout = [value("Y", TensorProto.FLOAT, ["B", "T", 2 * H]),
                    value("Y_h", TensorProto.FLOAT, [2, "B", H]), value("Y_c", TensorProto.FLOAT, [2, "B", H])]
        save_model(out, name, nodes, gin, gout, inits)
        y, hn, cn = reference(x, W, R, B, np.zeros((2, 3 * H)), 0.0, 0, h0, c0, lens)
        y = y.transpose(0, 2, 1, 3).reshape(T, Bn, 2 * H)  # (T, B, [forward, reverse])
        np.save(f"{out}/{name}.x.npy", x if layout == 0 else np.ascontiguousarray(x.transpose(1, 0, 2)))
        np.save(f"{out}/{name}.len.npy", lens)
        if states:
            np.save(f"{out}/{name}.h0.npy", h0)
            np.save(f"{out}/{name}.c0.npy", c0)
        np.save(f"{out}/{name}.y.npy", (y if layout == 0 else y.transpose(1, 0, 2)).astype(np.float32))
        np.save(f"{out}/{name}.hn.npy", hn.astype(np.float32))
        np.save(f"{out}/{name}.cn.npy", cn.astype(np.float32))
        lines.append(f"{name} {'states' if states else 'none'} {'time' if layout == 0 else 'batch'} lengths")


def refusals(out, rng):
    """Nodes the converter must refuse, each with the text its message must contain."""
    I, H = 3, 4
    rows = []

    def case(name, text, dirs=1, wdirs=None, attrs=None, lens=None, peep=False, y_raw=False, squeeze=False):
        wd = dirs if wdirs is None else wdirs
        inits = [numpy_helper.from_array(rng.uniform(-1, 1, s).astype(np.float32), n)
                 for n, s in (("W", (wd, 4 * H, I)), ("R", (dirs, 4 * H, H)), ("B", (dirs, 8 * H)))]
        ins = ["x", "W", "R", "B"]
        gin = [value("x", TensorProto.FLOAT, ["T", "B", I])]
        if lens is not None:  # (element type, shape) of a graph input, or "const"
            ins.append("lens")
            if lens == "const":
                inits.append(numpy_helper.from_array(np.array([3, 3], np.int32), "lens"))
            else:
                gin.append(value("lens", lens[0], lens[1]))
        if peep:
            ins += [""] * (7 - len(ins)) + ["P"]
            inits.append(numpy_helper.from_array(rng.uniform(-1, 1, (dirs, 3 * H)).astype(np.float32), "P"))
        a = {"hidden_size": H, **(attrs or {})}
        nodes = [helper.make_node("LSTM", ins, ["Y4"], name="lstm_" + name, **a)]
        if y_raw:
            nodes.append(helper.make_node("Identity", ["Y4"], ["Y"]))
        elif squeeze:
            nodes.append(helper.make_node("Squeeze", ["Y4", "axis1"], ["Y"]))
            inits.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
        else:
            nodes += [helper.make_node("Transpose", ["Y4"], ["Yt"], perm=[0, 2, 1, 3]),
                      helper.make_node("Reshape", ["Yt", "join"], ["Y"])]
            inits.append(numpy_helper.from_array(np.array([0, 0, -1], np.int64), "join"))
        save_model(out, "refuse_" + name, nodes, gin, [value("Y", TensorProto.FLOAT, None)], inits, check=False)
        rows.append(f"refuse_{name} {text}")

    case("reverse", "node 'lstm_reverse' (op LSTM): direction 'reverse' (a reverse-time LSTM on its own)",
         attrs={"direction": "reverse"})
    case("bidir_w_shape", "node 'lstm_bidir_w_shape' (op LSTM): W 'W' is not (2, 16, 3)", dirs=2, wdirs=1,
         attrs={"direction": "bidirectional"})
    case("lens_float", "sequence_lens 'lens' has element type 1, not int32", lens=(TensorProto.FLOAT, ["B"]))
    case("lens_int64", "sequence_lens 'lens' has element type 7, not int32", lens=(TensorProto.INT64, ["B"]))
    case("lens_rank2", "sequence_lens 'lens' has rank 2, not 1", lens=(TensorProto.INT32, ["B", 1]))
    case("lens_const", "sequence_lens 'lens' is a constant", lens="const")
    case("bidir_peep", "peepholes P on a bidirectional layer", dirs=2, peep=True, attrs={"direction": "bidirectional"})
    case("bidir_y_raw", "keeps the bidirectional LSTM's num_directions axis", dirs=2, y_raw=True,
         attrs={"direction": "bidirectional"})
    case("bidir_squeeze", "(num_directions of a bidirectional LSTM): it cannot be squeezed", dirs=2, squeeze=True,
         attrs={"direction": "bidirectional"})

    # PyTorch's enforce_sorted=False plumbing gone wrong: the LSTM takes the sorted batch with the
    # unsorted lengths, or its output is never put back in the input's order
    for name, text, sorted_lens, unsort in (
            ("sort_lens_unsorted", "sequence_lens is not reordered by the lengths' sort but X is reordered", False, True),
            ("sort_output_sorted", "graph output 'Y' is in the lengths' sorted order", True, False)):
        inits = [numpy_helper.from_array(rng.uniform(-1, 1, sh).astype(np.float32), n)
                 for n, sh in (("W", (1, 4 * H, I)), ("R", (1, 4 * H, H)), ("B", (1, 8 * H)))]
        inits.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
        nodes = [helper.make_node("Shape", ["lens"], ["nb"]),
                 helper.make_node("TopK", ["lens", "nb"], ["lens_sorted", "order"]),
                 helper.make_node("Gather", ["x", "order"], ["xs"], axis=1),
                 helper.make_node("LSTM", ["xs", "W", "R", "B", "lens_sorted" if sorted_lens else "lens"], ["Y4"],
                                  name="lstm_" + name, hidden_size=H),
                 helper.make_node("Squeeze", ["Y4", "axis1"], ["Ys"])]
        if unsort:
            inits.append(numpy_helper.from_array(np.array([0], np.int64), "zero"))
            inits.append(numpy_helper.from_array(np.array([1], np.int64), "one"))
            nodes += [helper.make_node("Shape", ["order"], ["no"]),
                      helper.make_node("ConstantOfShape", ["no"], ["zeros"]),
                      helper.make_node("ReduceProd", ["no"], ["n"], keepdims=0),
                      helper.make_node("Range", ["zero", "n", "one"], ["iota"]),
                      helper.make_node("ScatterElements", ["zeros", "order", "iota"], ["back"], axis=0),
                      helper.make_node("Gather", ["Ys", "back"], ["Y"], axis=1)]
        else:
            nodes.append(helper.make_node("Identity", ["Ys"], ["Y"]))
        gin = [value("x", TensorProto.FLOAT, ["T", "B", I]), value("lens", TensorProto.INT32, ["B"])]
        save_model(out, "refuse_" + name, nodes, gin, [value("Y", TensorProto.FLOAT, None)], inits, check=False)
        rows.append(f"refuse_{name} {text}")
    with open(f"{out}/refuse.txt", "w") as f:
        f.write("\n".join(rows) + "\n")


# name, peepholes, clip, input_forget, initial states, sequence_lens
CASES = [
    ("peep", True, 0.0, 0, False, False),
    ("clip", False, 0.7, 0, False, False),
    ("input_forget", False, 0.0, 1, False, False),
    ("all_states", True, 1.5, 1, True, False),
    ("peep_lens", True, 0.0, 0, True, True),
]


def main(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(2611)
    T, Bn, I, H = 6, 3, 4, 5
    lines = []
    for name, peep, clip, inf, states, with_lens in CASES:
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
        lens = np.array([4, 1, 6], np.int32) if with_lens else None  # unsorted, with 1 and T
        inputs = ["x", "W", "R", "B", "lens" if with_lens else "", "h0" if states else "", "c0" if states else "",
                  "P" if peep else ""]
        while inputs[-1] == "":
            inputs.pop()
        node = helper.make_node("LSTM", inputs, ["Y", "Y_h", "Y_c"], name="lstm_" + name, **attrs)
        inits = [numpy_helper.from_array(a, n) for a, n in ((W, "W"), (R, "R"), (B, "B"))]
        if peep:
            inits.append(numpy_helper.from_array(P, "P"))
        gin = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "B", I])]
        if states:
            gin += [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, "B", H]) for n in ("h0", "c0")]
        if with_lens:
            gin.append(value("lens", TensorProto.INT32, ["B"]))
        gout = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["T", 1, "B", H]),
                helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [1, "B", H]),
                helper.make_tensor_value_info("Y_c", TensorProto.FLOAT, [1, "B", H])]
        graph = helper.make_graph([node], name, gin, gout, inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], producer_name="fastlstm-test")
        model.ir_version = 7
        onnx.checker.check_model(model)
        onnx.save(model, f"{out}/{name}.onnx")
        y, hn, cn = reference(x, W, R, B, P, clip, inf, h0, c0, lens)
        y = y[:, 0]
        np.save(f"{out}/{name}.x.npy", x)
        if with_lens:
            np.save(f"{out}/{name}.len.npy", lens)
        if states:
            np.save(f"{out}/{name}.h0.npy", h0)
            np.save(f"{out}/{name}.c0.npy", c0)
        np.save(f"{out}/{name}.y.npy", y.astype(np.float32))
        np.save(f"{out}/{name}.hn.npy", hn.astype(np.float32))
        np.save(f"{out}/{name}.cn.npy", cn.astype(np.float32))
        lines.append(f"{name} {'states' if states else 'none'} time {'lengths' if with_lens else 'none'}")
    bidir_cases(out, rng, lines)
    refusals(out, rng)
    with open(f"{out}/cases.txt", "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
