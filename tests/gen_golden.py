#!/usr/bin/python3
"""Golden references for the inference runtime, from PyTorch (nn.Embedding -> nn.LSTM -> nn.Linear).

Usage: gen_golden.py OUTDIR

Writes OUTDIR/cases.txt (one case name a line) and per case OUTDIR/<case>/:
  model.safetensors          written by tools/export_torch.py (float32 weights); for the decomposed
                             cases (DECOMPOSED below) the LSTM matrices are stored as their factors:
                             <matrix>.U (rows, r) / .V (r, cols) for "svd:r", <matrix>.A (4, R) /
                             .B (H, R) / .C (cols, R) for "cp:R", and the nn.LSTM that computes the
                             reference gets W = U V or W[g*H + j, k] = sum_r A[g, r] B[j, r] C[k, r]
                             built from those same float32 factors in float64
  x.npy (B, T, D) float32    or tokens.npy (B, T) int32, batch-major
  lengths.npy (B) int32      only for variable-length cases (unsorted, pack_padded_sequence semantics)
  h0.npy (L*dirs, B, out), c0.npy (L*dirs, B, H)   only when the case has a non-zero initial state
  y.npy                      output: (B, T, dirs*out) no head, (B, T, V) per-step head, (B, C) last-step
                             head; zero past each sequence's length (also for a per-step head), and a
                             last-step head reads each sequence's last valid step
  hn.npy (L*dirs, B, out), cn.npy (L*dirs, B, H)   final state (at each sequence's last valid step)
  y_zero.npy                 output of the same inputs from a zero initial state (for streaming)
out = proj_size when the LSTM has a projection, else H; dirs = 2 for a bidirectional LSTM.
Layer cases (LAYER_CASES) cover bidirectional layers, projections, variable lengths, token padding
and SVD / CP factors: a PyTorch model whose matrices are the products of the exported factors.
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

# Decomposed cases: name, vocab, input, hidden, layers, head kind, head_out, batch, seq, state, scale,
# method ("svd" or "cp"), rank of each LSTM matrix (clamped to min(rows, cols) for SVD).
DECOMPOSED = [
    ("svd_feat_l2_r3_state", 0, 6, 16, 2, "none", 0, 3, 5, True, 1.0, "svd", 3),
    ("svd_tok_l1_h37_perstep", 13, 5, 37, 1, "per_step", 13, 2, 6, False, 1.0, "svd", 5),
    ("cp_feat_l2_r4_laststep", 0, 7, 17, 2, "last_step", 3, 4, 6, True, 1.0, "cp", 4),
    ("cp_tok_l1_h9_r11_state", 9, 4, 9, 1, "per_step", 9, 1, 8, True, 1.0, "cp", 11),
]


def factors(method, rank, rows, cols, bound, gen):
    """Random float32 factors of a (rows, cols) gate matrix whose product has entries of about the
    size PyTorch's init gives (U(-bound, bound)), and that product in float64.
    Returns ([(suffix, float32 array)], W float64 (rows, cols))."""
    if method == "svd":
        r = min(rank, rows, cols)
        s = (bound / np.sqrt(r)) ** 0.5
        u = (torch.randn(rows, r, generator=gen) * s).float()
        v = (torch.randn(r, cols, generator=gen) * s).float()
        return [("U", u), ("V", v)], u.double() @ v.double()
    H = rows // 4
    s = (bound / np.sqrt(rank)) ** (1.0 / 3.0)
    a = (torch.randn(4, rank, generator=gen) * s).float()
    b = (torch.randn(H, rank, generator=gen) * s).float()
    c = (torch.randn(cols, rank, generator=gen) * s).float()
    # W[g*H + j, k] = sum_r a[g, r] b[j, r] c[k, r]
    w = torch.einsum("gr,jr,kr->gjk", a.double(), b.double(), c.double()).reshape(rows, cols)
    return [("A", a), ("B", b), ("C", c)], w


def write_decomposed(path, lstm, emb, head, head_kind, method, rank, gen):
    """Replace lstm's weight_ih/weight_hh with products of random factors (in float64: call on the
    .double() module) and write the model with the factors, as fastlstm stores them."""
    H, L = lstm.hidden_size, lstm.num_layers
    bound = 1.0 / np.sqrt(H)
    tensors, meta = [], {"format": "fastlstm", "format_version": export_torch.FORMAT_VERSION,
                         "vocab": emb.num_embeddings if emb is not None else 0, "input": lstm.input_size,
                         "hidden": H, "layers": L, "head": head_kind,
                         "head_out": head.out_features if head is not None else 0}
    if emb is not None:
        tensors.append(("embedding.weight", emb.weight))
    for k in range(L):
        for kind in ("ih", "hh"):
            name = "lstm.weight_%s_l%d" % (kind, k)
            p = getattr(lstm, "weight_%s_l%d" % (kind, k))
            fs, w = factors(method, rank, p.shape[0], p.shape[1], bound, gen)
            with torch.no_grad():
                p.copy_(w)
            r = fs[0][1].shape[1]
            tensors += [("%s.%s" % (name, suf), f) for suf, f in fs]
            meta["method." + name] = "%s:%d" % (method, r)
            meta["rel_error." + name] = "0"
        tensors += [("lstm.bias_ih_l%d" % k, getattr(lstm, "bias_ih_l%d" % k)),
                    ("lstm.bias_hh_l%d" % k, getattr(lstm, "bias_hh_l%d" % k))]
    if head is not None:
        tensors += [("head.weight", head.weight), ("head.bias", head.bias)]
        meta["method.head.weight"] = "dense"
        meta["rel_error.head.weight"] = "0"
    export_torch.write_safetensors(path, tensors, meta)


# name, vocab, input, hidden, layers, head, head_out, batch, seq, state, bidirectional, proj,
# lengths (None: all T), padding_idx (None: none), factors (None, "svd", "cp", "mixed")
LAYER_CASES = [
    ("bi_l1_nohead_state", 0, 5, 8, 1, "none", 0, 3, 6, True, True, 0, None, None, None),
    ("bi_l2_laststep", 0, 4, 9, 2, "last_step", 3, 2, 5, False, True, 0, None, None, None),
    ("bi_l3_perstep_state", 0, 3, 7, 3, "per_step", 4, 2, 4, True, True, 0, None, None, None),
    ("proj_l2_nohead_state", 0, 5, 10, 2, "none", 0, 3, 6, True, False, 4, None, None, None),
    ("proj_l1_tok_perstep", 12, 6, 12, 1, "per_step", 12, 2, 7, False, False, 5, None, None, None),
    ("biproj_l2_laststep_state", 0, 5, 11, 2, "last_step", 3, 3, 5, True, True, 6, None, None, None),
    ("uni_l2_perstep_len", 0, 4, 9, 2, "per_step", 5, 4, 6, True, False, 0, [3, 6, 1, 4], None, None),
    ("uni_tok_laststep_pad_len", 9, 5, 8, 1, "last_step", 3, 4, 7, False, False, 0, [7, 2, 1, 5], 0, None),
    ("bi_l1_nohead_len", 0, 5, 8, 1, "none", 0, 4, 6, False, True, 0, [3, 6, 1, 4], None, None),
    ("bi_l2_laststep_len_state", 0, 4, 9, 2, "last_step", 3, 5, 5, True, True, 0, [2, 5, 1, 5, 3], None, None),
    ("bi_l3_perstep_len", 0, 3, 7, 3, "per_step", 4, 3, 4, False, True, 0, [1, 4, 2], None, None),
    ("bi_tok_lm_pad_len", 10, 6, 8, 2, "per_step", 10, 3, 6, False, True, 0, [6, 1, 3], 2, None),
    ("proj_l2_nohead_len_state", 0, 5, 10, 2, "none", 0, 4, 6, True, False, 4, [6, 2, 1, 5], None, None),
    ("proj_tok_perstep_pad_len", 12, 6, 12, 1, "per_step", 12, 3, 7, False, False, 5, [4, 7, 1], 0, None),
    ("biproj_l2_laststep_len", 0, 5, 11, 2, "last_step", 3, 4, 5, True, True, 6, [5, 1, 3, 2], None, None),
    ("biproj_l1_nohead_len", 0, 4, 9, 1, "none", 0, 3, 6, False, True, 3, [2, 6, 1], None, None),
    ("bi_svd_l2_perstep", 0, 6, 16, 2, "per_step", 4, 2, 5, True, True, 0, None, None, "svd"),
    ("bi_cp_l2_laststep_len", 0, 6, 16, 2, "last_step", 3, 3, 5, False, True, 0, [5, 1, 3], None, "cp"),
    ("proj_svd_l2_nohead_state", 0, 6, 16, 2, "none", 0, 2, 6, True, False, 6, None, None, "svd"),
    ("proj_cp_l1_perstep", 0, 5, 12, 1, "per_step", 4, 2, 5, False, False, 5, None, None, "cp"),
    ("biproj_mixed_l2_len", 0, 6, 16, 2, "per_step", 4, 3, 5, True, True, 7, [3, 5, 1], None, "mixed"),
]


def make_factors(lstm, how, gen):
    """Factors for the LSTM's matrices (see LAYER_CASES); returns {name: ("svd", U, V) | ("cp", A, B, C)}
    as float32 tensors. The caller sets each matrix to the product of its factors."""
    H, dirs = lstm.hidden_size, 2 if lstm.bidirectional else 1
    k = 1.0 / H ** 0.5
    f = {}
    for l in range(lstm.num_layers):
        for d in range(dirs):
            sfx = "_l%d%s" % (l, "_reverse" if d else "")
            names = ["weight_ih" + sfx, "weight_hh" + sfx] + (["weight_hr" + sfx] if lstm.proj_size else [])
            for nm in names:
                rows, cols = getattr(lstm, nm).shape
                gate = not nm.startswith("weight_hr")
                if how == "svd":
                    m = "svd"
                elif how == "cp":
                    m = "cp" if gate else "svd"
                else:  # mixed: forward dense, reverse weight_ih SVD, weight_hh CP, weight_hr SVD
                    m = None if d == 0 else ("cp" if nm.startswith("weight_hh") else "svd")
                if m == "svd":
                    R = max(1, min(rows, cols) // 2)
                    s = (k / R ** 0.5) ** 0.5 * 3 ** 0.5
                    f[nm] = ("svd", (torch.rand(rows, R, generator=gen) * 2 - 1) * s,
                             (torch.rand(R, cols, generator=gen) * 2 - 1) * s)
                elif m == "cp":
                    R = 5
                    s = (k / R ** 0.5) ** (1 / 3) * 3 ** 0.5
                    f[nm] = ("cp", (torch.rand(4, R, generator=gen) * 2 - 1) * s,
                             (torch.rand(rows // 4, R, generator=gen) * 2 - 1) * s,
                             (torch.rand(cols, R, generator=gen) * 2 - 1) * s)
    return f


def product64(fac):
    """The float64 matrix of factors fac."""
    if fac[0] == "svd":
        return fac[1].double() @ fac[2].double()
    A, B, C = (x.double() for x in fac[1:])
    return torch.einsum("gr,ir,jr->gij", A, B, C).reshape(4 * B.shape[0], C.shape[0])


def make_layer_case(outdir, idx, case):
    (name, vocab, D, H, L, head_kind, head_out, B, T, state, bidir, P, lengths, pad, how) = case
    torch.manual_seed(4321 + idx)
    gen = torch.Generator().manual_seed(99 + idx)
    dirs, out = (2 if bidir else 1), (P or H)
    emb = torch.nn.Embedding(vocab, D, padding_idx=pad) if vocab else None
    lstm = torch.nn.LSTM(D, H, num_layers=L, batch_first=True, bidirectional=bidir, proj_size=P)
    head = torch.nn.Linear(dirs * out, head_out) if head_kind != "none" else None
    factors = make_factors(lstm, how, gen) if how else {}
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    model_path = os.path.join(d, "model.safetensors")
    if idx % 3 == 1 and not factors:
        # some cases go through a saved state dict and the exporter's command line
        mods = torch.nn.Module()
        if emb is not None:
            mods.embedding = emb
        mods.lstm = lstm
        if head is not None:
            mods.head = head
        sd_path = os.path.join(d, "state_dict.pt")
        torch.save(mods.state_dict(), sd_path)
        argv = [sd_path, "-o", model_path] + (["--head", head_kind] if head is not None else [])
        argv += ["--padding-idx", str(pad)] if pad is not None else []
        if export_torch.main(argv) != 0:
            raise SystemExit("gen_golden.py: export_torch.py %s failed" % " ".join(argv))
        os.remove(sd_path)
    else:
        export_torch.export(lstm, model_path, embedding=emb, head=head, head_kind=head_kind, factors=factors)

    lens = torch.tensor(lengths if lengths else [T] * B, dtype=torch.int64)
    if lengths:
        np.save(os.path.join(d, "lengths.npy"), np.array(lengths, dtype="<i4"))
    if vocab:
        tokens = torch.randint(0, vocab, (B, T), dtype=torch.int64)
        if pad is not None:
            tokens[torch.arange(T)[None, :] >= lens[:, None]] = pad  # padded steps hold the padding id
        np.save(os.path.join(d, "tokens.npy"), tokens.numpy().astype("<i4"))
    else:
        x = torch.randn(B, T, D).float()
        np.save(os.path.join(d, "x.npy"), x.numpy().astype("<f4"))
    if state:
        h0 = (torch.randn(L * dirs, B, out) * 0.5).float()
        c0 = (torch.randn(L * dirs, B, H) * 0.5).float()
        np.save(os.path.join(d, "h0.npy"), h0.numpy().astype("<f4"))
        np.save(os.path.join(d, "c0.npy"), c0.numpy().astype("<f4"))

    # float64 reference from the float32 parameters (decomposed matrices: products of the factors)
    lstm64 = lstm.double()
    with torch.no_grad():
        for nm, fac in factors.items():
            getattr(lstm64, nm).copy_(product64(fac))
    emb64 = emb.double() if emb is not None else None
    head64 = head.double() if head is not None else None
    valid = (torch.arange(T)[None, :] < lens[:, None]).double()  # (B, T)

    def forward(h0c0):
        with torch.no_grad():
            inp = emb64(tokens) if vocab else x.double()
            packed = torch.nn.utils.rnn.pack_padded_sequence(inp, lens, batch_first=True, enforce_sorted=False)
            if h0c0 is None:
                o, (hn, cn) = lstm64(packed)
            else:
                o, (hn, cn) = lstm64(packed, (h0c0[0].double(), h0c0[1].double()))
            o, _ = torch.nn.utils.rnn.pad_packed_sequence(o, batch_first=True, total_length=T)
            if head_kind == "per_step":
                y = head64(o) * valid[:, :, None]
            elif head_kind == "last_step":
                y = head64(o[torch.arange(B), lens - 1])
            else:
                y = o
        return y, hn, cn

    y, hn, cn = forward((h0, c0) if state else None)
    y0, _, _ = forward(None)
    for fname, a in (("y", y), ("hn", hn), ("cn", cn), ("y_zero", y0)):
        np.save(os.path.join(d, fname + ".npy"), a.numpy().astype("<f4"))
    return name


def make_case(outdir, idx, case):
    name, vocab, D, H, L, head_kind, head_out, B, T, state, scale = case[:11]
    method, rank = case[11:] if len(case) > 11 else ("dense", 0)
    torch.manual_seed(1234 + idx)
    emb = torch.nn.Embedding(vocab, D) if vocab else None
    lstm = torch.nn.LSTM(D, H, num_layers=L, batch_first=True)
    head = torch.nn.Linear(H, head_out) if head_kind != "none" else None
    # non-zero biases everywhere (PyTorch's init already gives them); nothing else to adjust
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    model_path = os.path.join(d, "model.safetensors")
    if method != "dense":
        # the reference runs in float64 on the exact product of the float32 factors
        lstm, emb, head = lstm.double(), emb.double() if emb is not None else None, head.double() if head is not None else None
        gen = torch.Generator().manual_seed(4321 + idx)
        write_decomposed(model_path, lstm, emb, head, head_kind, method, rank, gen)
    elif idx % 2:
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
    names = [make_case(outdir, i, c) for i, c in enumerate(CASES + DECOMPOSED)]
    names += [make_layer_case(outdir, i, c) for i, c in enumerate(LAYER_CASES)]
    with open(os.path.join(outdir, "cases.txt"), "w") as f:
        f.write("\n".join(names) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
