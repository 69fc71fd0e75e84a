"""Int8 peers for the precision benchmark (issue 13): ONNX Runtime's DynamicQuantizeLSTM and
PyTorch's dynamic int8 nn.LSTM, on the weights of a fastlstm model file.

  ort_qlstm.py export MODEL OUT.onnx
      An ONNX graph (opset 13 + com.microsoft 1, built with python3-onnx) of one
      com.microsoft.DynamicQuantizeLSTM node per layer, chained through Squeeze: input "x" (T, B, D)
      float32, output "y" (T, B, H) of the last layer. MODEL: a dense, unidirectional LSTM without
      projection or head (fastlstm init). Its int8 matrices (fastlstm quantize --precision int8) are
      taken exactly as stored, so ONNX Runtime multiplies the same int8 weights as fastlstm; f32 ones
      are quantized here by fastlstm's rule (per output row, symmetric, amax / 127, ties to even).
      Weights go in as DynamicQuantizeLSTM wants them: W (1, D, 4H) and R (1, H, 4H) int8, transposed,
      gates reordered from PyTorch's i, f, g, o to ONNX's i, o, f, c, with per-column scales
      (1, 4H); B = [b_ih, b_hh] (1, 8H). Activations are quantized by ONNX Runtime itself (per
      tensor, u8 with a zero point), fastlstm's per row: outputs agree closely, not exactly.
      Weight type: on a CPU with VNNI (avx512_vnni / avx_vnni in /proc/cpuinfo) int8 with zero point
      0; without, uint8 q + 128 with zero point 128 (the same weight values): ONNX Runtime's u8 x s8
      kernel on AVX2 multiplies with vpmaddubsw, whose int16 pair sums saturate, and its outputs were
      7% off float32 on the same weights (2-layer 24/40 model) against 0.2% with u8 weights.
      FL_ORT_WEIGHTS=s8|u8 overrides.
  ort_qlstm.py check MODEL FASTLSTM [--tol X]
      Output agreement on seeded inputs (B 3, T 7): fastlstm run MODEL (its int8 kernels) against
      ONNX Runtime on the exported graph (node ort_qlstm_run.js; NODE_PATH must reach
      onnxruntime-node), and both against float32 arithmetic on the same dequantized weights (NumPy).
      Prints the three relative deviations ||a - b|| / ||b||; exit 1 when fastlstm and ONNX Runtime
      differ by more than --tol (default 0.02).
  ort_qlstm.py torch-int8 MODEL BATCH SEQ ROUNDS THREADS
      PyTorch dynamic int8 (torch.quantization.quantize_dynamic of nn.LSTM, qint8) on MODEL's float
      weights (int8 matrices dequantized): prints "us_per_step MEDIAN MIN MAX" (sequence latency /
      SEQ, torch_lstm.py's timing) or "unavailable: why".
Run with /usr/bin/python3 (Debian's numpy, torch, onnx)."""
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from torch_lstm import import_torch, read_model, timed  # noqa: E402  (reader, torch import, timing loop)


def quant_rows(v):
    """fastlstm's int8 rule (src/core/quantize.h; tests/quant_ref.py): q (rows, K) int8, scale (rows)."""
    v = v.astype(np.float32)
    amax = np.max(np.abs(v), axis=1)
    with np.errstate(divide="ignore", over="ignore"):
        inv = np.where(amax > 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)
    inv = np.where(np.isfinite(inv), inv, np.float32(0)).astype(np.float32)
    scale = np.where(inv > 0, amax / np.float32(127), np.float32(0)).astype(np.float32)
    return np.clip(np.rint(v * inv[:, None]), -127, 127).astype(np.int8), scale


def arch(meta, t):
    D, H, L = int(meta["input"]), int(meta["hidden"]), int(meta["layers"])
    if meta.get("bidirectional", "0") == "1" or int(meta.get("proj", "0")) or "head.weight" in t or "embedding.weight" in t:
        raise ValueError("needs a unidirectional LSTM without projection, embedding or head (fastlstm init)")
    for l in range(L):
        for k in ("ih", "hh"):
            if meta.get(f"method.lstm.weight_{k}_l{l}", "dense") != "dense":
                raise ValueError(f"lstm.weight_{k}_l{l} is not dense: DynamicQuantizeLSTM takes dense weights")
    return D, H, L


def int8_matrix(t, name):
    """(q (rows, K) int8, scale (rows)) of a matrix: as stored when int8, else quantized here."""
    if t[name].dtype == np.int8:
        return t[name], t[name + ".scale"].astype(np.float32)
    return quant_rows(t[name])


ONNX_ORDER = [0, 3, 1, 2]  # ONNX i, o, f, c from PyTorch's i, f, g, o blocks


def gates_onnx(v, H):
    """Reorder the 4H leading axis from PyTorch's gate order to ONNX's."""
    return np.concatenate([v[g * H:(g + 1) * H] for g in ONNX_ORDER], axis=0)


def weight_type():
    """"s8" or "u8" (see the module doc)."""
    forced = os.environ.get("FL_ORT_WEIGHTS", "")
    if forced in ("s8", "u8"):
        return forced
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return "u8"
    return "s8" if (" avx512_vnni" in flags or " avx_vnni" in flags) else "u8"


def export(model, out):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    meta, t = read_model(model)
    D, H, L = arch(meta, t)
    inits, nodes = [], []
    x = "x"
    u8 = weight_type() == "u8"
    for l in range(L):
        names = {}
        for k, key in (("ih", "W"), ("hh", "R")):
            q, s = int8_matrix(t, f"lstm.weight_{k}_l{l}")
            q, s = gates_onnx(q, H), gates_onnx(s, H)
            names[key] = f"{key}_l{l}"
            if u8:  # the same values as uint8 with zero point 128
                q = (q.astype(np.int16) + 128).astype(np.uint8)
            zp = np.full((1, 4 * H), 128, np.uint8) if u8 else np.zeros((1, 4 * H), np.int8)
            inits.append(numpy_helper.from_array(np.ascontiguousarray(q.T[None]), names[key]))            # (1, in, 4H)
            inits.append(numpy_helper.from_array(s[None].astype(np.float32), names[key] + "_scale"))      # (1, 4H)
            inits.append(numpy_helper.from_array(zp, names[key] + "_zp"))
        b = np.concatenate([gates_onnx(t[f"lstm.bias_ih_l{l}"].astype(np.float32), H),
                            gates_onnx(t[f"lstm.bias_hh_l{l}"].astype(np.float32), H)])[None]
        inits.append(numpy_helper.from_array(b, f"B_l{l}"))
        y = f"y4_l{l}"
        nodes.append(helper.make_node(
            "DynamicQuantizeLSTM",
            [x, names["W"], names["R"], f"B_l{l}", "", "", "", "",
             names["W"] + "_scale", names["W"] + "_zp", names["R"] + "_scale", names["R"] + "_zp"],
            [y], domain="com.microsoft", hidden_size=H, name=f"lstm_l{l}"))
        x = "y" if l == L - 1 else f"y_l{l}"
        nodes.append(helper.make_node("Squeeze", [y, "axis1"], [x], name=f"squeeze_l{l}"))
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
    g = helper.make_graph(nodes, "fastlstm_dynamic_quantize_lstm",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "B", D])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["T", "B", H])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)],
                          producer_name="fastlstm bench/peers/ort_qlstm.py")
    m.ir_version = 7
    onnx.save(m, out)
    return D, H, L


def reference(model, x):
    """float32 LSTM (PyTorch's equations) on the model's dequantized weights; x (T, B, D) -> (T, B, H)."""
    meta, t = read_model(model)
    D, H, L = arch(meta, t)

    def w(name):
        q, s = int8_matrix(t, name)
        return q.astype(np.float32) * s[:, None]  # exactly what fastlstm's int8 matrices hold

    def sig(v):
        return 1 / (1 + np.exp(-v))
    inp = x.astype(np.float64)
    for l in range(L):
        wih, whh = w(f"lstm.weight_ih_l{l}"), w(f"lstm.weight_hh_l{l}")
        b = t[f"lstm.bias_ih_l{l}"].astype(np.float64) + t[f"lstm.bias_hh_l{l}"]
        h = np.zeros((x.shape[1], H)); c = np.zeros((x.shape[1], H)); out = []
        for s in range(x.shape[0]):
            g = inp[s] @ wih.T + h @ whh.T + b
            i, f, gg, o = np.split(g, 4, axis=1)
            c = sig(f) * c + sig(i) * np.tanh(gg)
            h = sig(o) * np.tanh(c)
            out.append(h)
        inp = np.stack(out)
    return inp


def rel(a, b):
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b))


def check(model, fl, tol):
    meta, _ = read_model(model)
    D = int(meta["input"])
    B, T = 3, 7
    x = np.random.RandomState(5).uniform(-1, 1, (T, B, D)).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        onnx_path = os.path.join(d, "q.onnx")
        export(model, onnx_path)
        np.save(os.path.join(d, "x.npy"), np.ascontiguousarray(x.transpose(1, 0, 2)))  # fastlstm: (B, T, D)
        subprocess.run([fl, "run", model, "--input", os.path.join(d, "x.npy"), "--output", os.path.join(d, "y.npy")],
                       check=True, stdout=subprocess.DEVNULL)
        y_fl = np.load(os.path.join(d, "y.npy")).transpose(1, 0, 2)  # (T, B, H)
        x.tofile(os.path.join(d, "x.bin"))
        r = subprocess.run(["node", os.path.join(HERE, "ort_qlstm_run.js"), onnx_path, os.path.join(d, "x.bin"),
                            str(T), str(B), str(D), os.path.join(d, "y.bin")], capture_output=True, text=True)
        if r.returncode != 0 or not os.path.exists(os.path.join(d, "y.bin")):
            print("unavailable: ONNX Runtime run failed (" + (r.stdout + r.stderr).strip().split("\n")[-1] + ")")
            return 1
        y_ort = np.fromfile(os.path.join(d, "y.bin"), dtype=np.float32).reshape(y_fl.shape)
    ref = reference(model, x)
    d_pair, d_fl, d_ort = rel(y_ort, y_fl), rel(y_fl, ref), rel(y_ort, ref)
    print(f"DynamicQuantizeLSTM ({weight_type()} weights) vs fastlstm: {d_pair:.3g}; vs float32 on the same int8 weights: "
          f"fastlstm {d_fl:.3g}, ONNX Runtime {d_ort:.3g} (relative deviation, B {B}, T {T})")
    ok = d_pair <= tol and np.isfinite(y_ort).all()
    print("agree" if ok else f"DISAGREE (> {tol})")
    return 0 if ok else 1


def torch_int8(model, B, T, rounds, threads):
    torch = import_torch(threads)
    if torch is None:
        return
    meta, t = read_model(model)
    D, H, L = arch(meta, t)
    lstm = torch.nn.LSTM(D, H, L)
    sd = {}
    for l in range(L):
        for k in ("ih", "hh"):
            q, s = int8_matrix(t, f"lstm.weight_{k}_l{l}")
            sd[f"weight_{k}_l{l}"] = torch.from_numpy(q.astype(np.float32) * s[:, None])
            sd[f"bias_{k}_l{l}"] = torch.from_numpy(t[f"lstm.bias_{k}_l{l}"].astype(np.float32))
    lstm.load_state_dict(sd)
    lstm.eval()
    q = torch.quantization.quantize_dynamic(lstm, {torch.nn.LSTM}, dtype=torch.qint8)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(T, B, D, generator=g) * 2 - 1
    with torch.inference_mode():
        r = timed(lambda: q(x), T, rounds)
    print("us_per_step %.3f %.3f %.3f" % r)


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    mode = sys.argv[1]
    try:
        if mode == "export" and len(sys.argv) == 4:
            export(sys.argv[2], sys.argv[3])
            print("exported")
            return 0
        if mode == "check" and len(sys.argv) in (4, 6):
            tol = float(sys.argv[5]) if len(sys.argv) == 6 and sys.argv[4] == "--tol" else 0.02
            return check(sys.argv[2], sys.argv[3], tol)
        if mode == "torch-int8" and len(sys.argv) == 7:
            torch_int8(sys.argv[2], *map(int, sys.argv[3:7]))
            return 0
    except (ValueError, KeyError, OSError, subprocess.CalledProcessError) as e:
        print(f"unavailable: {e}")
        return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
