#!/usr/bin/env bash
# The int8 peer of the precision benchmark (bench/peers/ort_qlstm.py, bench/peers/quant.sh): the
# com.microsoft DynamicQuantizeLSTM graph it builds from a fastlstm int8 model passes onnx.checker and
# holds exactly the model's int8 weights (transposed, gates in ONNX order, scales per column); models
# it cannot express are refused with the reason. Where onnxruntime-node is installed (optional), ONNX
# Runtime's outputs agree with fastlstm's int8 run (ort_qlstm.py check). No timing.
# Environment (set by CTest): FL_CLI = the fastlstm binary, FL_PYTHON = a Python with numpy + onnx.
set -u
CLI=${FL_CLI:?FL_CLI must name the fastlstm binary}
PY=${FL_PYTHON:-/usr/bin/python3}
SRC=${FL_SOURCE_DIR:-$(dirname "$0")/..}
. "$(dirname "$0")/cli_lib.sh"
Q=$SRC/bench/peers/ort_qlstm.py

"$PY" -c 'import numpy, onnx' || { echo "FAIL: $PY lacks numpy/onnx (python3-onnx)"; exit 1; }
expect 0 "$CLI" init --input 12 --hidden 20 --layers 2 --seed 4 -o "$T/m.st"
expect 0 "$CLI" quantize "$T/m.st" -o "$T/m8.st" --precision int8
for w in s8 u8; do
  FL_ORT_WEIGHTS=$w expect 0 "$PY" "$Q" export "$T/m8.st" "$T/m_$w.onnx" && has out "exported"
  expect 0 "$PY" - "$T/m_$w.onnx" "$T/m8.st" "$Q" $w <<'PYEOF' || fail "graph of $w weights"
import importlib.util, sys, numpy as np, onnx
from onnx import numpy_helper
spec = importlib.util.spec_from_file_location("q", sys.argv[3]); q = importlib.util.module_from_spec(spec); spec.loader.exec_module(q)
m = onnx.load(sys.argv[1]); onnx.checker.check_model(m)
assert [n.op_type for n in m.graph.node] == ["DynamicQuantizeLSTM", "Squeeze"] * 2
init = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
_, t = q.read_model(sys.argv[2])
H, off = 20, 128 if sys.argv[4] == "u8" else 0
for l in range(2):
    for k, key in (("ih", "W"), ("hh", "R")):
        w, s = t[f"lstm.weight_{k}_l{l}"], t[f"lstm.weight_{k}_l{l}.scale"]
        assert w.dtype == np.int8
        got = init[f"{key}_l{l}"][0].T.astype(np.int32) - off          # (4H, in)
        zp = init[f"{key}_l{l}_zp"][0].astype(np.int32)
        assert (zp == off).all()
        for g, src in enumerate([0, 3, 1, 2]):                         # ONNX i, o, f, c <- PyTorch i, f, g, o
            assert (got[g * H:(g + 1) * H] == w[src * H:(src + 1) * H]).all(), (l, k, g)
            assert (init[f"{key}_l{l}_scale"][0][g * H:(g + 1) * H] == s[src * H:(src + 1) * H]).all()
print("same weights")
PYEOF
  has out "same weights"
done
# refused: a decomposed matrix, a head
expect 0 "$CLI" decompose "$T/m.st" -o "$T/svd.st" --method svd --rank 4
expect 1 "$PY" "$Q" export "$T/svd.st" "$T/x.onnx" && has out "not dense"
expect 0 "$CLI" init --input 12 --hidden 20 --layers 1 --classes 3 -o "$T/h.st"
expect 1 "$PY" "$Q" export "$T/h.st" "$T/x.onnx" && has out "head"

ORT_PATH=${FL_ORT_NODE_PATH:-$HOME/.cache/fastlstm-peers/ort/node_modules}
ORT=0
if command -v node >/dev/null && [ -d "$ORT_PATH/onnxruntime-node" ]; then ORT=1; fi
if [ "$ORT" = 1 ]; then
  NODE_PATH=$ORT_PATH expect 0 "$PY" "$Q" check "$T/m8.st" "$CLI" && has out "agree"
else
  echo "note: onnxruntime-node not found at $ORT_PATH: the output agreement check is skipped"
fi

if [ "$failures" -gt 0 ]; then
    echo "$failures failed"
    exit 1
fi
echo "test_plan_prec_peers: DynamicQuantizeLSTM graphs hold fastlstm's int8 weights; ONNX Runtime agreement checked: $([ "$ORT" = 1 ] && echo yes || echo no)"
