#!/usr/bin/python3
"""Latency of a whole application model (embedding, LSTM layers, head) in PyTorch, on the weights of a
dense fastlstm model file: the same weights fastlstm times, in the same run (bench/apps/run.sh).

  torch_time.py MODEL BATCHES SEQ ROUNDS THREADS dense      nn.Embedding + nn.LSTM + nn.Linear, inference mode
  torch_time.py MODEL BATCHES SEQ ROUNDS THREADS int8       the same after
                     torch.quantization.quantize_dynamic({nn.LSTM, nn.Linear}, qint8) (engine onednn or
                     fbgemm, whichever this PyTorch has; the LSTM sits inside a module, so it is converted)
  torch_time.py MODEL BATCH SEQ ROUNDS THREADS export OUT   write the float model as ONNX (input "x":
                     (T, B) int64 ids or (T, B, D) float32; output "y")

BATCHES: one batch size or several, comma-separated; MODE: one or several (dense,int8), all in one process
(one PyTorch start-up). Prints a line "MODE BATCH ms MEDIAN MIN MAX" per mode and batch (latency of one
request: BATCH sequences of SEQ steps, ms), or "MODE BATCH unavailable: why". Inputs are fixed-seed random ids / features. Set OMP_NUM_THREADS and
OPENBLAS_NUM_THREADS as well as THREADS (Debian's torch runs both pools)."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "peers"))
sys.path.insert(0, HERE)


def timed(fn, rounds):
    """median, min, max ms of fn over rounds (bench/peers/torch_lstm.py's timing, per call)."""
    import torch_lstm
    return tuple(v / 1e3 for v in torch_lstm.timed(fn, 1, rounds))


def build(path):
    """(torch module, meta) for a dense fastlstm model file."""
    import torch
    import torch_lstm  # bench/peers: the safetensors reader
    import torch_train  # bench/apps: the model class PyTorch's baseline trains
    meta, t = torch_lstm.load(path)
    methods = [v for k, v in meta.items() if k.startswith("method.")]
    if any(m != "dense" for m in methods):
        raise ValueError("PyTorch runs the dense model only")
    if meta.get("bidirectional", "0") not in ("0", "false"):
        raise ValueError("bidirectional models are not wired here yet")
    V, D, H, L = int(meta["vocab"]), int(meta["input"]), int(meta["hidden"]), int(meta["layers"])
    head = meta.get("head", "none")
    if head not in ("last_step", "per_step"):
        raise ValueError("model head %r: an application model has a last-step or per-step head" % head)
    m = torch_train.Net(V, D, H, L, int(meta["head_out"]), 0.0, per_step=head == "per_step")
    sd = {k: torch.from_numpy(v) for k, v in t.items()}
    missing = set(m.state_dict()) - set(sd)
    if missing:
        raise ValueError("tensors missing from the model file: " + " ".join(sorted(missing)))
    m.load_state_dict({k: sd[k] for k in m.state_dict()})
    m.eval()
    return m, meta


class Whole(object):
    """Callable: the model's whole forward on x, output only (per-step head: logits of every step)."""

    def __init__(self, m):
        self.m = m

    def __call__(self, x):
        y = self.m(x)
        return y[0] if isinstance(y, tuple) else y


def main():
    if len(sys.argv) < 7:
        print(__doc__, file=sys.stderr)
        return 2
    path, batches, T, rounds, threads, modes = sys.argv[1], [int(b) for b in sys.argv[2].split(",")], \
        int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6].split(",")
    if modes == ["export"]:
        return measure(path, 1, T, rounds, threads, "export")
    for mode in modes:
        for b in batches:
            print("%s %d %s" % (mode, b, measure(path, b, T, rounds, threads, mode)))
            sys.stdout.flush()
    return 0


def measure(path, B, T, rounds, threads, mode):
    """"ms MEDIAN MIN MAX" or "unavailable: why" (export: writes sys.argv[7], returns 0)."""
    try:
        import torch
    except Exception as e:  # noqa: BLE001
        return "unavailable: cannot import torch (%s)" % e
    torch.set_num_threads(threads)
    try:
        m, meta = build(path)
    except (ValueError, KeyError, OSError) as e:
        return "unavailable: %s" % e
    g = torch.Generator().manual_seed(1)
    V, D = int(meta["vocab"]), int(meta["input"])
    x = torch.randint(0, V, (T, B), generator=g) if V else torch.rand(T, B, D, generator=g) * 2 - 1
    if mode == "export":
        class Out(torch.nn.Module):
            def __init__(self, net):
                super().__init__()
                self.net = net

            def forward(self, x):
                y = self.net(x)
                return y[0] if isinstance(y, tuple) else y
        out_axes = {0: "T", 1: "B"} if meta["head"] == "per_step" else {0: "B"}
        torch.onnx.export(Out(m), (x,), sys.argv[7], input_names=["x"], output_names=["y"], opset_version=14,
                          dynamic_axes={"x": {0: "T", 1: "B"}, "y": out_axes})
        print("exported")
        return 0
    if mode == "int8":
        eng = [e for e in ("onednn", "fbgemm") if e in torch.backends.quantized.supported_engines]
        if not eng:
            return "unavailable: no onednn/fbgemm quantized engine in this PyTorch"
        torch.backends.quantized.engine = eng[0]
        m = torch.quantization.quantize_dynamic(m, {torch.nn.LSTM, torch.nn.Linear}, dtype=torch.qint8)
        if type(m.lstm) is torch.nn.LSTM:
            return "unavailable: quantize_dynamic left the LSTM in float"
    elif mode != "dense":
        return "unavailable: unknown mode %s" % mode
    f = Whole(m)
    with torch.inference_mode():
        r = timed(lambda: f(x), rounds)
    return "ms %.4f %.4f %.4f" % r


if __name__ == "__main__":
    sys.exit(main())
