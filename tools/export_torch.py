#!/usr/bin/python3
"""Export a PyTorch LSTM model to a fastlstm safetensors file.

Model: optional nn.Embedding(vocab, input, padding_idx=...) -> nn.LSTM(input, hidden, num_layers,
bidirectional=..., proj_size=...) -> optional nn.Linear(dirs * out, classes) applied per step
("per_step", language model) or to the last valid step ("last_step", sequence classifier).

The file is plain safetensors, written by hand (json + struct, no safetensors package):
  8-byte little-endian header length | JSON header padded with spaces to a multiple of 8 | F32 LE data
with "__metadata__" holding the architecture as decimal strings:
  format=fastlstm, format_version=1 (3 when bidirectional, proj or padding_idx is used), vocab (0:
  feature inputs), input, hidden, layers, head (none|per_step|last_step), head_out (0 without head),
  bidirectional=1, proj=P, padding_idx (version 3, only when used), method.<matrix>=dense|svd:R|cp:R,
  rel_error.<matrix>=0 for dense matrices.
Tensors, in PyTorch's order: embedding.weight (vocab, input); per layer k and direction (suffix "" or
"_reverse") lstm.weight_ih_l{k} (4H, in), lstm.weight_hh_l{k} (4H, out), lstm.bias_ih_l{k} (4H),
lstm.bias_hh_l{k} (4H), lstm.weight_hr_l{k} (P, H) with a projection; head.weight (out, dirs*out),
head.bias (out); out = P with a projection, else H; in = input (k = 0) or dirs*out. Missing LSTM /
head biases (bias=False) are written as zeros. Decomposed matrices (export(..., factors=...)) are
stored as their factors <name>.U/.V (SVD) or .A/.B/.C (CP).

Use from Python:   export(lstm, "model.safetensors", embedding=emb, head=lin, head_kind="per_step")
                   export_state_dict(torch.load("sd.pt"), "model.safetensors", head_kind="last_step")
Command line:      export_torch.py STATE_DICT.pt -o MODEL [--head per_step|last_step]
                   export_torch.py --demo -o MODEL [--vocab V] [--input D] [--hidden H] [--layers L]
                                   [--head none|per_step|last_step] [--head-out C] [--seed S]
                                   [--bidirectional] [--proj P] [--padding-idx I]
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


def _mat(name, m, rows, cols, gate=True):
    """Tensors and method string of matrix `name` (rows, cols): an array (dense), ("svd", U, V) with
    W = U V, or ("cp", A, B, C) with W[g*H + i, j] = sum_r A[g, r] B[i, r] C[j, r]."""
    if isinstance(m, tuple):
        kind, fac = m[0], [_f32(f, "%s factor %d" % (name, i)) for i, f in enumerate(m[1:])]
        if kind == "svd":
            U, V = fac
            R = U.shape[1] if U.ndim == 2 else -1
            if U.shape != (rows, R) or V.shape != (R, cols):
                raise ValueError("%s: SVD factors U %s, V %s do not make a (%d, %d) matrix" % (name, U.shape, V.shape, rows, cols))
            return [(name + ".U", U), (name + ".V", V)], "svd:%d" % R
        if kind == "cp":
            if not gate:
                raise ValueError("%s: CP applies only to LSTM gate matrices (a projection has no gate axis)" % name)
            A, B, C = fac
            R = A.shape[1] if A.ndim == 2 else -1
            if A.shape != (4, R) or B.shape != (rows // 4, R) or C.shape != (cols, R):
                raise ValueError("%s: CP factors A %s, B %s, C %s do not make a (%d, %d) matrix"
                                 % (name, A.shape, B.shape, C.shape, rows, cols))
            return [(name + ".A", A), (name + ".B", B), (name + ".C", C)], "cp:%d" % R
        raise ValueError("%s: unknown storage %r" % (name, kind))
    w = _f32(m, name)
    if w.shape != (rows, cols):
        raise ValueError("%s must be (%d, %d), got %s" % (name, rows, cols, w.shape))
    return [(name, w)], "dense"


def _rows(m):
    """Rows and columns of a matrix given as an array or as factors."""
    if isinstance(m, tuple):
        f = [np.asarray(x.detach() if isinstance(x, torch.Tensor) else x) for x in m[1:]]
        return (f[0].shape[0], f[1].shape[1]) if m[0] == "svd" else (4 * f[1].shape[0], f[2].shape[0])
    a = np.asarray(m.detach() if isinstance(m, torch.Tensor) else m)
    return a.shape


def export_tensors(path, layers, embedding=None, head=None, head_kind="per_step", bidirectional=False,
                   padding_idx=None):
    """Core writer. layers: per layer either (w_ih, w_hh, b_ih, b_hh) (unidirectional, no projection)
    or a list with one dict per direction (forward, then reverse when bidirectional) with keys w_ih
    (4H, in), w_hh (4H, out), b_ih (4H) or None, b_hh (4H) or None, and w_hr (P, H) for an LSTMP
    layer. A matrix is an array or factors ("svd", U, V) / ("cp", A, B, C) (w_hr: dense or SVD).
    embedding: (vocab, input) or None; head: (weight (out, dirs*out) or ("svd", U, V), bias or None)
    or None; padding_idx: the embedding's padding token or None."""
    if not layers:
        raise ValueError("at least one LSTM layer is needed")
    if head is None:
        head_kind = "none"
    elif head_kind not in ("per_step", "last_step"):
        raise ValueError("head_kind must be 'per_step' or 'last_step', got %r" % (head_kind,))
    dirs = 2 if bidirectional else 1
    layers = [[{"w_ih": l[0], "w_hh": l[1], "b_ih": l[2], "b_hh": l[3]}] if isinstance(l, tuple) else list(l)
              for l in layers]
    for k, l in enumerate(layers):
        if len(l) != dirs:
            raise ValueError("layer %d has %d directions, expected %d" % (k, len(l), dirs))
    rows0, D = _rows(layers[0][0]["w_ih"])
    if rows0 % 4:
        raise ValueError("weight_ih_l0 must be (4H, input), got (%d, %d)" % (rows0, D))
    H = rows0 // 4
    w_hr0 = layers[0][0].get("w_hr")
    P = _rows(w_hr0)[0] if w_hr0 is not None else 0
    out = P if P else H
    tensors = []
    vocab = 0
    if embedding is not None:
        e = _f32(embedding, "embedding.weight")
        if e.ndim != 2 or e.shape[1] != D:
            raise ValueError("embedding must be (vocab, %d), got %s" % (D, e.shape))
        vocab = e.shape[0]
        tensors.append(("embedding.weight", e))
    if padding_idx is not None and not (vocab and 0 <= padding_idx < vocab):
        raise ValueError("padding_idx %r needs an embedding and must be in [0, vocab)" % (padding_idx,))
    v3 = bidirectional or P > 0 or padding_idx is not None
    meta = {"format": "fastlstm", "format_version": "3" if v3 else FORMAT_VERSION, "vocab": vocab, "input": D,
            "hidden": H, "layers": len(layers)}
    if bidirectional:
        meta["bidirectional"] = 1
    if P:
        meta["proj"] = P
    if padding_idx is not None:
        meta["padding_idx"] = padding_idx
    for k, l in enumerate(layers):
        for d, p in enumerate(l):
            sfx = "_l%d%s" % (k, "_reverse" if d else "")
            din = D if k == 0 else dirs * out
            for key, nm, r, c in (("w_ih", "weight_ih", 4 * H, din), ("w_hh", "weight_hh", 4 * H, out)):
                ts, method = _mat("lstm." + nm + sfx, p[key], r, c)
                tensors += ts
                meta["method.lstm.%s%s" % (nm, sfx)] = method
                if method == "dense":
                    meta["rel_error.lstm.%s%s" % (nm, sfx)] = "0"
            for key, nm in (("b_ih", "bias_ih"), ("b_hh", "bias_hh")):
                b = np.zeros(4 * H, "<f4") if p.get(key) is None else _f32(p[key], "lstm." + nm + sfx)
                if b.shape != (4 * H,):
                    raise ValueError("%s%s must be (%d,), got %s" % (nm, sfx, 4 * H, b.shape))
                tensors.append(("lstm." + nm + sfx, b))
            if (p.get("w_hr") is None) != (P == 0):
                raise ValueError("weight_hr%s: every layer direction needs a projection, or none" % sfx)
            if P:
                ts, method = _mat("lstm.weight_hr" + sfx, p["w_hr"], P, H, gate=False)
                tensors += ts
                meta["method.lstm.weight_hr" + sfx] = method
                if method == "dense":
                    meta["rel_error.lstm.weight_hr" + sfx] = "0"
    meta["head"] = head_kind
    meta["head_out"] = 0
    if head is not None:
        hr, hc = _rows(head[0])
        if hc != dirs * out:
            raise ValueError("head.weight must be (out, %d), got (%d, %d)" % (dirs * out, hr, hc))
        ts, method = _mat("head.weight", head[0], hr, hc, gate=False)
        hb = np.zeros(hr, "<f4") if head[1] is None else _f32(head[1], "head.bias")
        if hb.shape != (hr,):
            raise ValueError("head.bias must be (%d,), got %s" % (hr, hb.shape))
        tensors += ts + [("head.bias", hb)]
        meta["head_out"] = hr
        meta["method.head.weight"] = method
        if method == "dense":
            meta["rel_error.head.weight"] = "0"
    write_safetensors(path, tensors, meta)


def export(lstm, path, embedding=None, head=None, head_kind="per_step", factors=None):
    """Export nn.LSTM `lstm` (+ optional nn.Embedding `embedding`, nn.Linear `head`) to path.
    Bidirectional LSTMs, proj_size and the embedding's padding_idx are exported. factors: optional
    {parameter name ("weight_hh_l0_reverse", "weight_hr_l1", "head.weight"): ("svd", U, V) or
    ("cp", A, B, C)} stored in place of those dense matrices (the caller makes them agree)."""
    factors = factors or {}
    if embedding is not None and embedding.embedding_dim != lstm.input_size:
        raise ValueError("embedding dim %d != LSTM input size %d" % (embedding.embedding_dim, lstm.input_size))
    dirs = 2 if lstm.bidirectional else 1
    P = getattr(lstm, "proj_size", 0)
    layers = []
    for k in range(lstm.num_layers):
        l = []
        for d in range(dirs):
            sfx = "_l%d%s" % (k, "_reverse" if d else "")
            p = {}
            for key, nm in (("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("w_hr", "weight_hr")):
                if nm == "weight_hr" and not P:
                    continue
                p[key] = factors.get(nm + sfx, getattr(lstm, nm + sfx))
            p["b_ih"] = getattr(lstm, "bias_ih" + sfx) if lstm.bias else None
            p["b_hh"] = getattr(lstm, "bias_hh" + sfx) if lstm.bias else None
            l.append(p)
        layers.append(l)
    pad = embedding.padding_idx if embedding is not None else None
    export_tensors(path, layers, embedding=None if embedding is None else embedding.weight,
                   head=None if head is None else (factors.get("head.weight", head.weight), head.bias),
                   head_kind=head_kind, bidirectional=lstm.bidirectional, padding_idx=pad)


def export_state_dict(sd, path, head_kind="per_step", padding_idx=None):
    """Export a state dict ("lstm.weight_ih_l0"... or bare "weight_ih_l0"..., "_reverse" keys of a
    bidirectional LSTM, "weight_hr_l*" of an LSTMP, optional "embedding.weight", "head.weight",
    "head.bias") to path."""
    def get(name):
        if "lstm." + name in sd:
            return sd["lstm." + name]
        return sd.get(name)

    bidir = get("weight_ih_l0_reverse") is not None
    dirs = 2 if bidir else 1
    layers = []
    while get("weight_ih_l%d" % len(layers)) is not None:
        k = len(layers)
        l = []
        for d in range(dirs):
            sfx = "_l%d%s" % (k, "_reverse" if d else "")
            for nm in ("weight_ih", "weight_hh"):
                if get(nm + sfx) is None:
                    raise ValueError("state dict has weight_ih_l%d but no %s%s" % (k, nm, sfx))
            p = {"w_ih": get("weight_ih" + sfx), "w_hh": get("weight_hh" + sfx), "b_ih": get("bias_ih" + sfx),
                 "b_hh": get("bias_hh" + sfx)}
            if get("weight_hr" + sfx) is not None:
                p["w_hr"] = get("weight_hr" + sfx)
            l.append(p)
        layers.append(l)
    if not layers:
        raise ValueError("state dict has no lstm.weight_ih_l0")
    head = (sd["head.weight"], sd.get("head.bias")) if "head.weight" in sd else None
    export_tensors(path, layers, embedding=sd.get("embedding.weight"), head=head, head_kind=head_kind,
                   bidirectional=bidir, padding_idx=padding_idx)


def demo_model(vocab, input_size, hidden, layers, head_kind, head_out, seed, bidirectional=False, proj=0,
               padding_idx=None):
    """A randomly initialised (embedding, lstm, head) with PyTorch's default initialisation."""
    torch.manual_seed(seed)
    emb = torch.nn.Embedding(vocab, input_size, padding_idx=padding_idx) if vocab > 0 else None
    lstm = torch.nn.LSTM(input_size, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional,
                         proj_size=proj)
    feats = (2 if bidirectional else 1) * (proj or hidden)
    head = torch.nn.Linear(feats, head_out) if head_kind != "none" else None
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
    p.add_argument("--bidirectional", action="store_true", help="demo: bidirectional LSTM")
    p.add_argument("--proj", type=int, default=0, help="demo: projection size (proj_size; 0: none)")
    p.add_argument("--padding-idx", type=int, default=None,
                   help="the embedding's padding token (a state dict does not record it)")
    a = p.parse_args(argv)
    try:
        if a.demo:
            if a.state_dict:
                p.error("--demo takes no state dict")
            kind = a.head or ("per_step" if a.head_out > 0 else "none")
            if (kind == "none") != (a.head_out == 0):
                p.error("--head-out must be > 0 exactly when --head is per_step or last_step")
            emb, lstm, head = demo_model(a.vocab, a.input, a.hidden, a.layers, kind, a.head_out, a.seed,
                                         a.bidirectional, a.proj, a.padding_idx)
            export(lstm, a.output, embedding=emb, head=head, head_kind=kind)
        else:
            if not a.state_dict:
                p.error("a state dict path (or --demo) is required")
            sd = torch.load(a.state_dict, map_location="cpu")
            if hasattr(sd, "state_dict"):
                sd = sd.state_dict()
            if a.head == "none":
                sd = {k: v for k, v in sd.items() if not k.startswith("head.")}
            export_state_dict(sd, a.output, head_kind=a.head or "per_step", padding_idx=a.padding_idx)
    except (ValueError, OSError) as e:
        print("export_torch.py: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
