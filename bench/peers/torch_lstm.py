"""Peer benchmark: PyTorch on the weights of a fastlstm model file (safetensors).

  torch_lstm.py MODEL BATCH SEQ ROUNDS THREADS dense [LENGTHS.npy]
                                                            nn.LSTM forward, inference mode
                                                            (bidirectional when the model is); with
                                                            LENGTHS, packed: pack_padded_sequence
                                                            (enforce_sorted=False) then nn.LSTM, the
                                                            packing counted in the time
  torch_lstm.py MODEL BATCH SEQ ROUNDS THREADS lowrank      hand-written step loop on the model's
                                                            SVD factors (W ~ U V): input projection
                                                            as one matmul over all steps, then
                                                            gates = gx_t + (h V_hh^T) U_hh^T
  torch_lstm.py MODEL BATCH SEQ ROUNDS THREADS export OUT [lens]
                                                            write an ONNX file of the nn.LSTM; with
                                                            "lens", every ONNX LSTM node reads its
                                                            sequence_lens from an int32 (B) graph
                                                            input "lens" (ONNX Runtime skips the
                                                            steps past each length)

Prints "us_per_step MEDIAN MIN MAX" (sequence latency / SEQ) over ROUNDS timed blocks of about 0.2 s
(a tenth of that for ROUNDS <= 2), after a warm-up and a calibration run, or "unavailable: why". Set
OMP_NUM_THREADS and OPENBLAS_NUM_THREADS as well as THREADS (Debian's torch runs both pools).

For bench/peers/run.sh's rounds:
  FL_PEER_BLOCK_MS=M  blocks of about M ms (no tenth); when one run is longer than a block, as many
                      one-run blocks as fit ROUNDS * M ms, at least one.
  FL_PEER_SERVE=1     persistent (dense and lowrank modes): after loading torch and the model, print
                      "ready"; then for every line read on stdin, time once as above (warm-up,
                      calibration, blocks) and print one result line; exit at end of input. The
                      import (1-2 s) is paid once per row, not once per round, and the process idles
                      on stdin while the other sides of the row run."""
import json
import os
import statistics
import struct
import sys
import time


def read_model(path):
    """(metadata, {name: array}) of a safetensors file (read-only arrays); BF16 tensors widened to
    float32. Also the reader of ort_qlstm.py."""
    import numpy as np
    dtypes = {"F32": np.float32, "I8": np.int8, "I32": np.int32, "I64": np.int64}
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    meta = hdr.pop("__metadata__", {})
    base = 8 + n
    t = {}
    for name, d in hdr.items():
        a, b = d["data_offsets"]
        if d["dtype"] == "BF16":
            bits = np.frombuffer(raw, dtype="<u2", count=(b - a) // 2, offset=base + a).astype(np.uint32) << 16
            t[name] = bits.view(np.float32).reshape(d["shape"])
        else:
            dt = np.dtype(dtypes[d["dtype"]]).newbyteorder("<")
            t[name] = np.frombuffer(raw, dtype=dt, count=(b - a) // dt.itemsize, offset=base + a).reshape(d["shape"])
    return meta, t


def load(path):
    """read_model's tensors as writable float32 copies (torch.from_numpy shares their memory)."""
    import numpy as np
    meta, t = read_model(path)
    return meta, {k: v.astype(np.float32) for k, v in t.items()}


def import_torch(threads):
    """torch running on THREADS threads, or None after printing "unavailable: why". Also ort_qlstm.py's."""
    try:
        import torch
    except Exception as e:  # noqa: BLE001
        print(f"unavailable: cannot import torch ({e})")
        return None
    torch.set_num_threads(threads)
    return torch


def timed(fn, seq, rounds):
    """(median, min, max) us per step of fn over rounds blocks (see the module's doc)."""
    fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-6)
    block = float(os.environ.get("FL_PEER_BLOCK_MS", "0")) / 1e3
    if block > 0:
        reps = max(1, int(block / one))
        if reps == 1:
            rounds = max(1, min(rounds, int(rounds * block / one + 0.5)))
    else:
        reps = max(1, int(0.2 / one))
        if rounds <= 2:
            reps = max(1, reps // 10)
    v = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        v.append((time.perf_counter() - t0) / reps / seq * 1e6)
    return statistics.median(v), min(v), max(v)


def report(fn, seq, rounds):
    """Times fn in inference mode and prints the result line; under FL_PEER_SERVE=1 once per stdin line."""
    def once():
        with torch_mod().inference_mode():
            return "us_per_step %.3f %.3f %.3f" % timed(fn, seq, rounds)
    if os.environ.get("FL_PEER_SERVE") != "1":
        print(once())
        return
    print("ready", flush=True)
    for _ in sys.stdin:
        try:
            line = once()
        except Exception as e:  # noqa: BLE001 (a failed round is reported, the next may run)
            line = "unavailable: %s" % str(e).split("\n")[0]
        print(line, flush=True)


def torch_mod():
    import torch
    return torch


def main():
    path, B, T, rounds, threads, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
    torch = import_torch(threads)
    if torch is None:
        return
    meta, t = load(path)
    D, H, L = int(meta["input"]), int(meta["hidden"]), int(meta["layers"])
    bidir = meta.get("bidirectional", "0") == "1"
    sfx = ["", "_reverse"] if bidir else [""]
    g = torch.Generator().manual_seed(1)
    x = torch.rand(T, B, D, generator=g) * 2 - 1
    if mode in ("dense", "export"):
        if any(meta.get(f"method.lstm.weight_{k}_l{l}{d}", "dense") != "dense" for l in range(L) for k in ("ih", "hh")
               for d in sfx) or int(meta.get("proj", "0")):
            print("unavailable: nn.LSTM needs a dense model without projection")
            return
        lstm = torch.nn.LSTM(D, H, L, bidirectional=bidir)
        sd = {k[len("lstm."):]: torch.from_numpy(v) for k, v in t.items() if k.startswith("lstm.")}
        lstm.load_state_dict(sd)
        lstm.eval()
        if mode == "export":
            torch.onnx.export(lstm, (x,), sys.argv[7], input_names=["x"], output_names=["y", "hn", "cn"], opset_version=14,
                              dynamic_axes={"x": {0: "T", 1: "B"}, "y": {0: "T", 1: "B"}, "hn": {1: "B"}, "cn": {1: "B"}})
            if len(sys.argv) > 8 and sys.argv[8] == "lens":
                import onnx
                m = onnx.load(sys.argv[7])
                m.graph.input.append(onnx.helper.make_tensor_value_info("lens", onnx.TensorProto.INT32, ["B"]))
                n = 0
                for node in m.graph.node:
                    if node.op_type == "LSTM":
                        while len(node.input) < 5:
                            node.input.append("")
                        node.input[4] = "lens"
                        n += 1
                if n == 0:
                    print("unavailable: no LSTM node in the ONNX export")
                    return
                onnx.save(m, sys.argv[7])
            print("exported")
            return
        if len(sys.argv) > 7:  # variable lengths: PyTorch's packed execution
            import numpy as np
            lens = torch.from_numpy(np.load(sys.argv[7]).astype("int64"))
            pack = torch.nn.utils.rnn.pack_padded_sequence

            def run_packed():
                return lstm(pack(x, lens, enforce_sorted=False))

            report(run_packed, T, rounds)
            return
        report(lambda: lstm(x), T, rounds)
        return
    # lowrank: factors straight from the file (U (4H, r), V (r, n)); dense matrices used as they are.
    def mat(name):
        if name + ".U" in t:
            return torch.from_numpy(t[name + ".U"]), torch.from_numpy(t[name + ".V"])
        if name in t:
            return torch.from_numpy(t[name]), None
        raise KeyError(name)
    layers = []
    for l in range(L):
        wih, whh = mat(f"lstm.weight_ih_l{l}"), mat(f"lstm.weight_hh_l{l}")
        b = torch.from_numpy(t[f"lstm.bias_ih_l{l}"] + t[f"lstm.bias_hh_l{l}"])
        layers.append((wih, whh, b))

    def apply(w, x):  # x (n, in) -> (n, 4H)
        U, V = w
        return x @ U.t() if V is None else (x @ V.t()) @ U.t()

    def run():
        inp = x
        for wih, whh, b in layers:
            gx = apply(wih, inp.reshape(T * B, -1)).reshape(T, B, 4 * H) + b
            h = torch.zeros(B, H)
            c = torch.zeros(B, H)
            out = []
            for s in range(T):
                gates = gx[s] + apply(whh, h)
                i, f, gg, o = gates.chunk(4, 1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
                h = torch.sigmoid(o) * torch.tanh(c)
                out.append(h)
            inp = torch.stack(out)
        return inp

    report(run, T, rounds)


if __name__ == "__main__":
    main()
