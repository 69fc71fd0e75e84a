#!/usr/bin/env bash
# CLI for bidirectional / projection models and variable-length batches (issue 11): init and info,
# run --lengths against PyTorch (pack_padded_sequence, float64), bad --lengths files with the exact
# messages, decompose of the new matrices (projections SVD only).
# Environment (set by CTest): FL_CLI = the fastlstm binary, FL_PYTHON = a Python with torch + numpy.
set -u
CLI=${FL_CLI:?FL_CLI must name the fastlstm binary}
PY=${FL_PYTHON:-/usr/bin/python3}
SRC=$(cd "$(dirname "$0")/.." && pwd)
. "$(dirname "$0")/cli_lib.sh"

"$PY" -c 'import torch, numpy' || { echo "FAIL: $PY lacks torch/numpy"; exit 1; }

# ---------------------------------------------------------------- init, info
expect 0 "$CLI" init --input 5 --hidden 9 --layers 2 --bidirectional --proj 4 --classes 3 -o "$T/bp.st"
expect 0 "$CLI" info "$T/bp.st" && has out "bidirectional" && has out "projection 4 (LSTMP)" \
    && has out "lstm.weight_hr_l1_reverse" && has out "rev" && has out "input 8, forward + reverse"
TAB=$'\t'
expect 0 "$CLI" info "$T/bp.st" --json && has out "\"bidirectional\":${TAB}true" && has out "\"proj\":${TAB}4" \
    && has out "\"kind\":${TAB}\"hr\""
expect 2 "$CLI" init --input 5 --hidden 9 --layers 1 --proj 9 -o "$T/x.st" && has err "--proj 9 must be below --hidden 9"
expect 2 "$CLI" init --input 5 --hidden 9 --layers 1 --padding-idx 0 -o "$T/x.st" && has err "--padding-idx needs --vocab"

# ---------------------------------------------------------------- run --lengths against PyTorch
"$PY" - "$T" "$SRC" <<'PYEOF' || fail "reference generation failed"
import sys, numpy as np, torch
T, SRC = sys.argv[1], sys.argv[2]
sys.path.insert(0, SRC + "/tools")
import export_torch
torch.manual_seed(7)
emb = torch.nn.Embedding(11, 6, padding_idx=0)
lstm = torch.nn.LSTM(6, 10, num_layers=2, batch_first=True, bidirectional=True, proj_size=3)
head = torch.nn.Linear(6, 11)
export_torch.export(lstm, T + "/tok.st", embedding=emb, head=head, head_kind="per_step")
B, S = 4, 7
lens = torch.tensor([4, 7, 1, 5])
tok = torch.randint(1, 11, (B, S))
tok[torch.arange(S)[None, :] >= lens[:, None]] = 0
np.save(T + "/tok.npy", tok.numpy().astype("<i8"))
np.save(T + "/len.npy", lens.numpy().astype("<i8"))
np.save(T + "/len32.npy", lens.numpy().astype("<i4"))
with torch.no_grad():
    l64, e64, h64 = lstm.double(), emb.double(), head.double()
    p = torch.nn.utils.rnn.pack_padded_sequence(e64(tok), lens, batch_first=True, enforce_sorted=False)
    o, (hn, cn) = l64(p)
    o, _ = torch.nn.utils.rnn.pad_packed_sequence(o, batch_first=True, total_length=S)
    y = h64(o) * (torch.arange(S)[None, :] < lens[:, None]).double()[:, :, None]
np.save(T + "/ref_y.npy", y.numpy())
np.save(T + "/ref_h.npy", hn.numpy())
np.save(T + "/ref_c.npy", cn.numpy())
np.save(T + "/len_bad_count.npy", np.array([4, 7, 1], "<i4"))
np.save(T + "/len_zero.npy", np.array([4, 0, 1, 5], "<i4"))
np.save(T + "/len_big.npy", np.array([4, 8, 1, 5], "<i8"))
np.save(T + "/len_neg.npy", np.array([4, -2, 1, 5], "<i4"))
np.save(T + "/len_float.npy", np.array([4, 7, 1, 5], "<f4"))
np.save(T + "/len_2d.npy", np.array([[4, 7], [1, 5]], "<i4"))
PYEOF
for l in len len32; do
    expect 0 "$CLI" run "$T/tok.st" --input "$T/tok.npy" --lengths "$T/$l.npy" --output "$T/y_$l.npy" \
        --state-out "$T/s_$l" --threads 2 && has out "(4, 4, 3)" && has out "(4, 4, 10)"
done
"$PY" - "$T" <<'PYEOF' || fail "run --lengths differs from PyTorch"
import sys, numpy as np
T = sys.argv[1]
for l in ("len", "len32"):
    for got, ref in (("y_%s.npy" % l, "ref_y.npy"), ("s_%s.h.npy" % l, "ref_h.npy"), ("s_%s.c.npy" % l, "ref_c.npy")):
        a, b = np.load(T + "/" + got), np.load(T + "/" + ref)
        assert a.shape == b.shape, (got, a.shape, b.shape)
        err = np.abs(a - b).max()
        assert err < 1e-5, (got, err)
print("run --lengths matches PyTorch")
PYEOF
expect 1 "$CLI" run "$T/tok.st" --input "$T/tok.npy" --lengths "$T/len_bad_count.npy" --output "$T/y.npy" \
    && has err "len_bad_count.npy: lengths must be 1-D with one length per sequence (4), got 3 values"
expect 1 "$CLI" run "$T/tok.st" --input "$T/tok.npy" --lengths "$T/len_zero.npy" --output "$T/y.npy" \
    && has err "len_zero.npy: length 0 of sequence 1 is outside [1, 7]"
expect 1 "$CLI" run "$T/tok.st" --input "$T/tok.npy" --lengths "$T/len_big.npy" --output "$T/y.npy" \
    && has err "len_big.npy: lengths must lie in [1, 7]"
expect 1 "$CLI" run "$T/tok.st" --input "$T/tok.npy" --lengths "$T/len_neg.npy" --output "$T/y.npy" \
    && has err "len_neg.npy: lengths must lie in [1, 7]"
expect 1 "$CLI" run "$T/tok.st" --input "$T/tok.npy" --lengths "$T/len_float.npy" --output "$T/y.npy" \
    && has err "len_float.npy: lengths must be int32 or int64, got float32"
expect 1 "$CLI" run "$T/tok.st" --input "$T/tok.npy" --lengths "$T/len_2d.npy" --output "$T/y.npy" \
    && has err "len_2d.npy: lengths must be 1-D"
expect 1 "$CLI" run "$T/tok.st" --input "$T/tok.npy" --lengths "$T/missing.npy" --output "$T/y.npy" \
    && has err "missing.npy"
[ -e "$T/y.npy" ] && fail "a failed run wrote its output"

# ---------------------------------------------------------------- decompose
expect 0 "$CLI" decompose "$T/bp.st" -o "$T/bp_svd.st" --rank 2 --layer 1:hr_reverse=dense,hh_reverse=cp:2 \
    && has out "lstm.weight_hr_l0_reverse" && has out "cp "
expect 0 "$CLI" info "$T/bp_svd.st" --json && has out "\"method\":${TAB}\"cp\"" && has out "\"method\":${TAB}\"svd\""
expect 1 "$CLI" decompose "$T/bp.st" -o "$T/bad.st" --rank 2 --layer 0:hr=cp:2 && has err "no gate axis"
expect 2 "$CLI" decompose "$T/bp.st" -o "$T/bad.st" --rank 2 --layer 0:hx=svd && has err "hr_reverse"

[ "$failures" -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "all CLI layer tests passed"
