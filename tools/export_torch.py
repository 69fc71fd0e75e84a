#!/usr/bin/python3
"""Export a PyTorch LSTM model to a fastlstm safetensors file.

Model: optional nn.Embedding(vocab, input) -> nn.LSTM(input, hidden, num_layers) (unidirectional,
no projection) -> optional nn.Linear(hidden, out) applied per step ("per_step", language model) or
to the last step ("last_step", sequence classifier).

The file is plain safetensors, written by hand (json + struct, no safetensors package):
  8-byte little-endian header length | JSON header padded with spaces to a multiple of 8 | F32 LE data
with "__metadata__" holding the architecture as decimal strings:
  format=fastlstm, format_version=1, vocab (0: feature inputs), input, hidden, layers,
  head (none|per_step|last_step), head_out (0 without head), method.<matrix>=dense,
  rel_error.<matrix>=0 for lstm.weight_ih_l{k}, lstm.weight_hh_l{k}, head.weight.
Tensors, in this order: embedding.weight (vocab, input); per layer k lstm.weight_ih_l{k} (4H, in),
lstm.weight_hh_l{k} (4H, H), lstm.bias_ih_l{k} (4H), lstm.bias_hh_l{k} (4H); head.weight (out, H),
head.bias (out). Missing LSTM / head biases (bias=False) are written as zeros.

Use from Python:   export(lstm, "model.safetensors", embedding=emb, head=lin, head_kind="per_step")
                   export_state_dict(torch.load("sd.pt"), "model.safetensors", head_kind="last_step")
Command line:      export_torch.py STATE_DICT.pt -o MODEL [--head per_step|last_step]
                   export_torch.py --demo -o MODEL [--vocab V] [--input D] [--hidden H] [--layers L]
                                   [--head none|per_step|last_step] [--head-out C] [--seed S]
A state dict has keys "lstm.weight_ih_l0", ... (or the bare nn.LSTM keys "weight_ih_l0", ...),
optionally "embedding.weight" and "head.weight" / "head.bias".

Run with /usr/bin/python3 (needs torch and numpy).
"""
import argparse
import json
import os
import re
import struct
import sys

import numpy as np
import torch

FORMAT_VERSION = "1"
HEAD_KINDS = ("none", "per_step", "last_step")


def _f32(t, name):
    """A tensor or array as a C-contiguous little-endian float32 numpy array; name is for errors."""
    if isinstance(t, torch.Tensor):
        t = t.detach().to("cpu", torch.float32).numpy()
    a = np.ascontiguousarray(np.asarray(t, dtype="<f4"))
    if not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a))[0]
        raise ValueError("%s: non-finite value %r at index %s" % (name, float(a[tuple(bad)]), tuple(int(i) for i in bad)))
    return a


def write_safetensors(path, tensors, metadata):
    """Write [(name, array)] in the given order, with string metadata, to path (atomically)."""
    header = {"__metadata__": {k: str(v) for k, v in metadata.items()}}
    offset = 0
    blobs = []
    for name, a in tensors:
        a = _f32(a, name)
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def export_tensors(path, layers, embedding=None, head=None, head_kind="per_step"):
    """Core writer. layers: [(w_ih (4H, in), w_hh (4H, H), b_ih (4H) or None, b_hh (4H) or None)];
    embedding: (vocab, input) or None; head: (weight (out, H), bias (out) or None) or None."""
    if not layers:
        raise ValueError("at least one LSTM layer is needed")
    if head is None:
        head_kind = "none"
    elif head_kind not in ("per_step", "last_step"):
        raise ValueError("head_kind must be 'per_step' or 'last_step', got %r" % (head_kind,))
    w_ih0 = _f32(layers[0][0], "lstm.weight_ih_l0")
    if w_ih0.ndim != 2 or w_ih0.shape[0] % 4:
        raise ValueError("weight_ih_l0 must be (4H, input), got %s" % (w_ih0.shape,))
    H, D = w_ih0.shape[0] // 4, w_ih0.shape[1]
    tensors = []
    vocab = 0
    if embedding is not None:
        e = _f32(embedding, "embedding.weight")
        if e.ndim != 2 or e.shape[1] != D:
            raise ValueError("embedding must be (vocab, %d), got %s" % (D, e.shape))
        vocab = e.shape[0]
        tensors.append(("embedding.weight", e))
    meta = {"format": "fastlstm", "format_version": FORMAT_VERSION, "vocab": vocab, "input": D, "hidden": H,
            "layers": len(layers)}
    for k, (w_ih, w_hh, b_ih, b_hh) in enumerate(layers):
        w_ih, w_hh = _f32(w_ih, "lstm.weight_ih_l%d" % k), _f32(w_hh, "lstm.weight_hh_l%d" % k)
        din = D if k == 0 else H
        if w_ih.shape != (4 * H, din):
            raise ValueError("weight_ih_l%d must be (%d, %d), got %s" % (k, 4 * H, din, w_ih.shape))
        if w_hh.shape != (4 * H, H):
            raise ValueError("weight_hh_l%d must be (%d, %d), got %s" % (k, 4 * H, H, w_hh.shape))
        b_ih = np.zeros(4 * H, "<f4") if b_ih is None else _f32(b_ih, "lstm.bias_ih_l%d" % k)
        b_hh = np.zeros(4 * H, "<f4") if b_hh is None else _f32(b_hh, "lstm.bias_hh_l%d" % k)
        for nm, b in (("bias_ih", b_ih), ("bias_hh", b_hh)):
            if b.shape != (4 * H,):
                raise ValueError("%s_l%d must be (%d,), got %s" % (nm, k, 4 * H, b.shape))
        tensors += [("lstm.weight_ih_l%d" % k, w_ih), ("lstm.weight_hh_l%d" % k, w_hh),
                    ("lstm.bias_ih_l%d" % k, b_ih), ("lstm.bias_hh_l%d" % k, b_hh)]
        meta["method.lstm.weight_ih_l%d" % k] = "dense"
        meta["rel_error.lstm.weight_ih_l%d" % k] = "0"
        meta["method.lstm.weight_hh_l%d" % k] = "dense"
        meta["rel_error.lstm.weight_hh_l%d" % k] = "0"
    meta["head"] = head_kind
    meta["head_out"] = 0
    if head is not None:
        hw = _f32(head[0], "head.weight")
        if hw.ndim != 2 or hw.shape[1] != H:
            raise ValueError("head.weight must be (out, %d), got %s" % (H, hw.shape))
        hb = np.zeros(hw.shape[0], "<f4") if head[1] is None else _f32(head[1], "head.bias")
        if hb.shape != (hw.shape[0],):
            raise ValueError("head.bias must be (%d,), got %s" % (hw.shape[0], hb.shape))
        tensors += [("head.weight", hw), ("head.bias", hb)]
        meta["head_out"] = hw.shape[0]
        meta["method.head.weight"] = "dense"
        meta["rel_error.head.weight"] = "0"
    write_safetensors(path, tensors, meta)


def export(lstm, path, embedding=None, head=None, head_kind="per_step"):
    """Export nn.LSTM `lstm` (+ optional nn.Embedding `embedding`, nn.Linear `head`) to path."""
    if lstm.bidirectional:
        raise ValueError("bidirectional LSTMs are not supported")
    if getattr(lstm, "proj_size", 0):
        raise ValueError("LSTMs with proj_size are not supported")
    if embedding is not None and embedding.embedding_dim != lstm.input_size:
        raise ValueError("embedding dim %d != LSTM input size %d" % (embedding.embedding_dim, lstm.input_size))
    layers = []
    for k in range(lstm.num_layers):
        b_ih = getattr(lstm, "bias_ih_l%d" % k) if lstm.bias else None
        b_hh = getattr(lstm, "bias_hh_l%d" % k) if lstm.bias else None
        layers.append((getattr(lstm, "weight_ih_l%d" % k), getattr(lstm, "weight_hh_l%d" % k), b_ih, b_hh))
    export_tensors(path, layers, embedding=None if embedding is None else embedding.weight,
                   head=None if head is None else (head.weight, head.bias), head_kind=head_kind)


def export_state_dict(sd, path, head_kind="per_step"):
    """Export a state dict ("lstm.weight_ih_l0"... or bare "weight_ih_l0"..., optional
    "embedding.weight", "head.weight", "head.bias") to path."""
    def get(name):
        if "lstm." + name in sd:
            return sd["lstm." + name]
        return sd.get(name)

    for key in sd:
        if re.search(r"_reverse$", key):
            raise ValueError("bidirectional LSTMs are not supported (key %s)" % key)
    layers = []
    while get("weight_ih_l%d" % len(layers)) is not None:
        k = len(layers)
        w_hh = get("weight_hh_l%d" % k)
        if w_hh is None:
            raise ValueError("state dict has weight_ih_l%d but no weight_hh_l%d" % (k, k))
        layers.append((get("weight_ih_l%d" % k), w_hh, get("bias_ih_l%d" % k), get("bias_hh_l%d" % k)))
    if not layers:
        raise ValueError("state dict has no lstm.weight_ih_l0")
    head = (sd["head.weight"], sd.get("head.bias")) if "head.weight" in sd else None
    export_tensors(path, layers, embedding=sd.get("embedding.weight"), head=head, head_kind=head_kind)


def demo_model(vocab, input_size, hidden, layers, head_kind, head_out, seed):
    """A randomly initialised (embedding, lstm, head) with PyTorch's default initialisation."""
    torch.manual_seed(seed)
    emb = torch.nn.Embedding(vocab, input_size) if vocab > 0 else None
    lstm = torch.nn.LSTM(input_size, hidden, num_layers=layers, batch_first=True)
    head = torch.nn.Linear(hidden, head_out) if head_kind != "none" else None
    return emb, lstm, head


def main(argv=None):
    p = argparse.ArgumentParser(description="Export a PyTorch LSTM state dict to a fastlstm model file.")
    p.add_argument("state_dict", nargs="?", help="torch.save'd state dict (.pt)")
    p.add_argument("-o", "--output", required=True, help="output .safetensors path")
    p.add_argument("--head", choices=HEAD_KINDS, default=None,
                   help="how the head is applied (default per_step if the state dict has one)")
    p.add_argument("--demo", action="store_true", help="export a random model instead of a state dict")
    p.add_argument("--vocab", type=int, default=0, help="demo: vocabulary size (0: feature inputs)")
    p.add_argument("--input", type=int, default=16, help="demo: input size")
    p.add_argument("--hidden", type=int, default=32, help="demo: hidden size")
    p.add_argument("--layers", type=int, default=1, help="demo: LSTM layers")
    p.add_argument("--head-out", type=int, default=0, help="demo: head outputs (0: no head)")
    p.add_argument("--seed", type=int, default=0, help="demo: torch seed")
    a = p.parse_args(argv)
    try:
        if a.demo:
            if a.state_dict:
                p.error("--demo takes no state dict")
            kind = a.head or ("per_step" if a.head_out > 0 else "none")
            if (kind == "none") != (a.head_out == 0):
                p.error("--head-out must be > 0 exactly when --head is per_step or last_step")
            emb, lstm, head = demo_model(a.vocab, a.input, a.hidden, a.layers, kind, a.head_out, a.seed)
            export(lstm, a.output, embedding=emb, head=head, head_kind=kind)
        else:
            if not a.state_dict:
                p.error("a state dict path (or --demo) is required")
            sd = torch.load(a.state_dict, map_location="cpu")
            if hasattr(sd, "state_dict"):
                sd = sd.state_dict()
            if a.head == "none":
                sd = {k: v for k, v in sd.items() if not k.startswith("head.")}
            export_state_dict(sd, a.output, head_kind=a.head or "per_step")
    except (ValueError, OSError) as e:
        print("export_torch.py: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
