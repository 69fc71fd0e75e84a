#!/usr/bin/python3
"""Golden references for the inference runtime, from PyTorch (nn.Embedding -> nn.LSTM -> nn.Linear).

Usage: gen_golden.py OUTDIR

Writes OUTDIR/cases.txt (one case name a line) and per case OUTDIR/<case>/:
  model.safetensors          written by tools/export_torch.py (float32 weights)
  x.npy (B, T, D) float32    or tokens.npy (B, T) int32, batch-major
  h0.npy, c0.npy (L, B, H)   only when the case has a non-zero initial state
  y.npy                      output: (B, T, H) no head, (B, T, V) per-step head, (B, C) last-step head
  hn.npy, cn.npy (L, B, H)   final state
  y_zero.npy                 output of the same inputs from a zero initial state (for streaming)
The references are computed in float64 from the float32 weights, so they hold the exact answer
to ~1e-12, not PyTorch's own float32 rounding. Seeds are fixed: the files are reproducible.
Exit code 3 (with a message) when torch cannot be imported.
"""
import os
import sys

try:
    import numpy as np
    import torch
except ImportError as e:  # the C test turns this into a failure with this message
    print("gen_golden.py: cannot import torch/numpy (%s); run with a Python that has torch "
          "(FL_PYTHON, default /usr/bin/python3)" % e, file=sys.stderr)
    sys.exit(3)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import export_torch  # noqa: E402

# name, vocab, input, hidden, layers, head kind, head_out, batch, seq, non-zero initial state, input scale
CASES = [
    ("feat_l1_b1", 0, 5, 8, 1, "none", 0, 1, 7, False, 1.0),
    ("feat_l2_b3_state", 0, 3, 16, 2, "none", 0, 3, 5, True, 1.0),
    ("feat_l3_perstep_state", 0, 10, 7, 3, "per_step", 4, 2, 6, True, 1.0),
    ("feat_h91_laststep", 0, 12, 91, 1, "last_step", 5, 4, 9, False, 1.0),
    ("tok_l2_lm_state", 20, 6, 12, 2, "per_step", 20, 3, 8, True, 1.0),
    ("tok_l1_laststep_b1", 11, 4, 9, 1, "last_step", 3, 1, 12, False, 1.0),
    ("tok_l3_nohead_state", 7, 5, 17, 3, "none", 0, 2, 4, True, 1.0),
    ("feat_h65_perstep_b5", 0, 33, 65, 2, "per_step", 10, 5, 3, True, 1.0),
    ("feat_h1_t1", 0, 1, 1, 1, "none", 0, 2, 1, False, 1.0),
    ("feat_h63_saturated", 0, 9, 63, 1, "per_step", 6, 3, 10, True, 20.0),
]


def make_case(outdir, idx, case):
    name, vocab, D, H, L, head_kind, head_out, B, T, state, scale = case
    torch.manual_seed(1234 + idx)
    emb = torch.nn.Embedding(vocab, D) if vocab else None
    lstm = torch.nn.LSTM(D, H, num_layers=L, batch_first=True)
    head = torch.nn.Linear(H, head_out) if head_kind != "none" else None
    # non-zero biases everywhere (PyTorch's init already gives them); nothing else to adjust
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    model_path = os.path.join(d, "model.safetensors")
    if idx % 2:
        # odd cases go through a saved state dict and the exporter's command line
        mods = torch.nn.Module()
        if emb is not None:
            mods.embedding = emb
        mods.lstm = lstm
        if head is not None:
            mods.head = head
        sd_path = os.path.join(d, "state_dict.pt")
        torch.save(mods.state_dict(), sd_path)
        argv = [sd_path, "-o", model_path] + (["--head", head_kind] if head is not None else [])
        if export_torch.main(argv) != 0:
            raise SystemExit("gen_golden.py: export_torch.py %s failed" % " ".join(argv))
        os.remove(sd_path)
    else:
        export_torch.export(lstm, model_path, embedding=emb, head=head, head_kind=head_kind)

    if vocab:
        tokens = torch.randint(0, vocab, (B, T), dtype=torch.int64)
        np.save(os.path.join(d, "tokens.npy"), tokens.numpy().astype("<i4"))
    else:
        x = (torch.randn(B, T, D) * scale).float()
        np.save(os.path.join(d, "x.npy"), x.numpy().astype("<f4"))
    if state:
        h0 = (torch.randn(L, B, H) * 0.5).float()
        c0 = (torch.randn(L, B, H) * 0.5).float()
        np.save(os.path.join(d, "h0.npy"), h0.numpy().astype("<f4"))
        np.save(os.path.join(d, "c0.npy"), c0.numpy().astype("<f4"))

    # float64 reference from the float32 parameters
    lstm64 = lstm.double()
    emb64 = emb.double() if emb is not None else None
    head64 = head.double() if head is not None else None

    def forward(h0c0):
        with torch.no_grad():
            inp = emb64(tokens) if vocab else x.double()
            if h0c0 is None:
                out, (hn, cn) = lstm64(inp)
            else:
                out, (hn, cn) = lstm64(inp, (h0c0[0].double(), h0c0[1].double()))
            if head_kind == "per_step":
                y = head64(out)
            elif head_kind == "last_step":
                y = head64(out[:, -1, :])
            else:
                y = out
        return y, hn, cn

    y, hn, cn = forward((h0, c0) if state else None)
    y0, _, _ = forward(None)
    for fname, a in (("y", y), ("hn", hn), ("cn", cn), ("y_zero", y0)):
        np.save(os.path.join(d, fname + ".npy"), a.numpy().astype("<f4"))
    return name


def main(argv):
    if len(argv) != 2:
        print("usage: gen_golden.py OUTDIR", file=sys.stderr)
        return 2
    outdir = argv[1]
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)
    names = [make_case(outdir, i, c) for i, c in enumerate(CASES)]
    with open(os.path.join(outdir, "cases.txt"), "w") as f:
        f.write("\n".join(names) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
