#!/usr/bin/env bash
# int8 / bf16 weights from the command line: `fastlstm quantize` (all matrices, by kind, by name, f32
# back), `info` (text and JSON precision and bytes), `run` on a quantized model against the f32 model
# (bounded deviation) and at the scalar reference level (FL_KERNELS=ref, same outputs), CP matrices
# kept f32, `finetune` of an int8 model (trains the f32 master, writes int8 again with new weights),
# `compress` of an int8 model (candidates stay int8), and bad options with exit status 2.
# Environment (set by CTest): FL_CLI = the fastlstm binary, FL_PYTHON = a Python with numpy.
set -u
CLI=${FL_CLI:?FL_CLI must name the fastlstm binary}
PY=${FL_PYTHON:-/usr/bin/python3}
. "$(dirname "$0")/cli_lib.sh"

"$PY" - "$T" <<'PYEOF'
import numpy as np, sys
d = sys.argv[1]
r = np.random.default_rng(3)
np.save(f"{d}/x.npy", r.standard_normal((4, 9, 6)).astype(np.float32))
X = r.standard_normal((64, 5, 6)).astype(np.float32)
np.save(f"{d}/tx.npy", X)
np.save(f"{d}/ty.npy", (X[:, :, 0].sum(1) > 0).astype(np.int64) + (X[:, :, 1].sum(1) > 1))
PYEOF

expect 0 "$CLI" init --input 6 --hidden 20 --layers 2 --classes 3 --seed 4 -o "$T/m.st"
expect 0 "$CLI" quantize "$T/m.st" -o "$T/q8.st" --precision int8 && has out "lstm.weight_hh_l1" && has out "-> int8"
expect 0 "$CLI" info "$T/q8.st" && has out "int8" && has out "bytes stored"
expect 0 "$CLI" info "$T/q8.st" --json && cp "$T/out" "$T/q8.json"
"$PY" - "$T/q8.json" <<'PYEOF' >"$T/out" 2>"$T/err" || fail "info --json of an int8 model"
import json, sys
info = json.load(open(sys.argv[1]))
for m in info['matrices']:
    assert m['precision'] == 'int8', m
    assert m['bytes'] == m['params'] + 4 * m['rows'], m
PYEOF
expect 0 "$CLI" quantize "$T/m.st" -o "$T/b16.st" --precision bf16 --matrices hh,head.weight
expect 0 "$CLI" info "$T/b16.st" --json && cp "$T/out" "$T/b16.json"
"$PY" - "$T/b16.json" <<'PYEOF' >"$T/out" 2>"$T/err" || fail "info --json of a partly bf16 model"
import json, sys
p = {m['name']: m['precision'] for m in json.load(open(sys.argv[1]))['matrices']}
assert p == {'lstm.weight_ih_l0': 'f32', 'lstm.weight_hh_l0': 'bf16', 'lstm.weight_ih_l1': 'f32',
             'lstm.weight_hh_l1': 'bf16', 'head.weight': 'bf16'}, p
PYEOF
expect 0 "$CLI" quantize "$T/q8.st" -o "$T/back.st" --precision f32 && has out "int8  -> f32"

# Outputs: each precision close to f32; the reference kernels give the same outputs as this CPU's.
expect 0 "$CLI" run "$T/m.st" --input "$T/x.npy" --output "$T/y32.npy"
for m in q8 b16; do
    expect 0 "$CLI" run "$T/$m.st" --input "$T/x.npy" --output "$T/y_$m.npy"
    expect 0 env FL_KERNELS=ref "$CLI" run "$T/$m.st" --input "$T/x.npy" --output "$T/y_${m}_ref.npy"
done
"$PY" - "$T" <<'PYEOF' >"$T/out" 2>"$T/err" || fail "quantized outputs"
import numpy as np, sys
d = sys.argv[1]
y = np.load(f"{d}/y32.npy")
for m, tol in [("q8", 0.05), ("b16", 0.02)]:
    q, r = np.load(f"{d}/y_{m}.npy"), np.load(f"{d}/y_{m}_ref.npy")
    assert q.shape == y.shape
    dev = np.abs(q - y).max()
    assert 0 < dev < tol, (m, dev)
    assert np.abs(q - r).max() < 1e-5, (m, np.abs(q - r).max())
PYEOF

# CP matrices stay f32 unless named; naming one is refused.
expect 0 "$CLI" decompose "$T/m.st" -o "$T/cp.st" --method cp --rank 3 --layer 0:ih=dense
expect 0 "$CLI" quantize "$T/cp.st" -o "$T/cpq.st" --precision int8 && has out "lstm.weight_ih_l0            f32   -> int8"
has out "lstm.weight_hh_l0            f32   -> f32"
expect 1 "$CLI" quantize "$T/cp.st" -o "$T/x.st" --precision int8 --matrices hh && has err "FL_ERR_UNSUPPORTED" && has err "CP"

# finetune of an int8 model: trained in f32, written as int8 again, with new weights.
expect 0 "$CLI" finetune "$T/q8.st" --train "$T/tx.npy" --train-labels "$T/ty.npy" --epochs 2 --lr 0.01 --quiet -o "$T/ft.st" \
    && has out "wrote"
expect 0 "$CLI" info "$T/ft.st" --json && cp "$T/out" "$T/ft.json"
"$PY" - "$T" <<'PYEOF' >"$T/out" 2>"$T/err" || fail "finetuned int8 model"
import json, sys
d = sys.argv[1]
assert all(m['precision'] == 'int8' for m in json.load(open(f"{d}/ft.json"))['matrices'])
a, b = open(f"{d}/q8.st", "rb").read(), open(f"{d}/ft.st", "rb").read()
assert len(a) == len(b) and a != b
PYEOF

# compress of an int8 model: the planned candidates keep int8 (CP stays f32), judged with int8 kernels.
pose=(--cache-bytes 1000 --bandwidth 10 --flops 10 --no-measure --quiet)
expect 0 "$CLI" compress "$T/q8.st" -o "$T/c8.st" --data "$T/tx.npy" --labels "$T/ty.npy" --max-loss 5 "${pose[@]}" \
    && has out "wrote"
expect 0 "$CLI" info "$T/c8.st" --json && cp "$T/out" "$T/c8.json"
"$PY" - "$T/c8.json" <<'PYEOF' >"$T/out" 2>"$T/err" || fail "compressed int8 model"
import json, sys
ms = json.load(open(sys.argv[1]))['matrices']
assert all(m['precision'] == ('f32' if m['method'] == 'cp' else 'int8') for m in ms), ms
assert any(m['method'] != 'dense' for m in ms), ms
PYEOF

# Bad options.
expect 2 "$CLI" quantize "$T/m.st" -o "$T/x.st" --precision int4 && has err "int8, bf16 or f32"
expect 2 "$CLI" quantize "$T/m.st" -o "$T/x.st" --precision int8 --matrices ih,foo && has err "'foo'"
expect 2 "$CLI" quantize "$T/m.st" --precision int8 && has err "-o OUT"
expect 2 "$CLI" quantize "$T/m.st" -o "$T/x.st" && has err "--precision"
expect 1 "$CLI" quantize "$T/nope.st" -o "$T/x.st" --precision int8 && has err "FL_ERR_IO"

[ "$failures" -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "all quantize CLI checks passed"
