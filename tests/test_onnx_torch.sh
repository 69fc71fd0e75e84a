#!/usr/bin/env bash
# ONNX import and export end to end, against PyTorch:
#   tools/onnx_torch_models.py exports nn.Embedding + nn.LSTM (1-3 layers, uni- and bidirectional,
#   batch_first or not, initial states, no biases, pack_padded_sequence lengths -> sequence_lens, with
#   enforce_sorted=False's sort / unsort plumbing too) +
#   nn.Linear (per step / last step) with random weights through torch.onnx.export (opsets 9-14),
#   with PyTorch's float64 outputs on random inputs (unsorted lengths with 1 and T). Each model goes
#   through `fastlstm import` and `fastlstm run` (--lengths where the graph has sequence_lens):
#   outputs and final states equal PyTorch's.
#   `fastlstm export` of each imported model: onnx.checker.check_model accepts it, and importing it
#   again gives the same outputs. Where onnxruntime-node is installed (optional), ONNX Runtime runs
#   both the PyTorch and the fastlstm-exported graphs to the same outputs too.
#   tools/onnx_ext_models.py: LSTM nodes with peepholes, clip and input_forget (which PyTorch cannot
#   export), and bidirectional nodes with sequence_lens in layouts 0 and 1, against a float64 NumPy
#   implementation of the spec; exported back; decomposition of the extras refused. ONNX Runtime
#   (when installed) runs the layout-0 ones too (it does not implement layout 1).
#   Modules the converter must refuse (GRU, no LSTM, lengths with a biased or last-step head) exit 1
#   with the reason; ONNX nodes it must refuse (tools/onnx_ext_models.py: a reverse LSTM, a
#   bidirectional W of the wrong shape, sequence_lens of the wrong type or rank, peepholes on a
#   bidirectional node, a sort of the lengths applied to x but not to the lengths, an output left in
#   the sorted order) too.
# Environment (set by CTest): FL_CLI = the fastlstm binary, FL_PYTHON = a Python with torch + numpy + onnx.
set -u
CLI=${FL_CLI:?FL_CLI must name the fastlstm binary}
PY=${FL_PYTHON:-/usr/bin/python3}
SRC=${FL_SOURCE_DIR:-$(dirname "$0")/..}
. "$(dirname "$0")/cli_lib.sh"

"$PY" -c 'import torch, numpy, onnx' || { echo "FAIL: $PY lacks torch/numpy/onnx (python3-onnx)"; exit 1; }
expect 0 "$PY" "$SRC/tools/onnx_torch_models.py" "$T/m" || { echo "FAIL: model generation"; exit 1; }

ORT_PATH=${FL_ORT_NODE_PATH:-$HOME/.cache/fastlstm-peers/ort/node_modules}
ORT=0
if command -v node >/dev/null && [ -d "$ORT_PATH/onnxruntime-node" ]; then ORT=1; fi
[ "$ORT" = 1 ] || echo "note: onnxruntime-node not found at $ORT_PATH: the ONNX Runtime comparison is skipped"

# compare DIR/PREFIX.{y,hn,cn}.npy (got) with the reference REF.{y,hn,cn}.npy
compare() {
    "$PY" - "$1" "$2" >"$T/out" 2>"$T/err" <<'EOF' || fail "outputs differ: $1 vs $2"
import sys, numpy as np
got, ref = sys.argv[1], sys.argv[2]
for k in ("y", "hn", "cn"):
    a, b = np.load(f"{got}.{k}.npy"), np.load(f"{ref}.{k}.npy")
    a = a.reshape(b.shape) if a.size == b.size else a
    assert a.shape == b.shape, (k, a.shape, b.shape)
    assert np.all(np.abs(a - b) <= 1e-5 + 1e-5 * np.abs(b)), (k, float(np.abs(a - b).max()))
print("ok")
EOF
}

# run MODEL.st on the case's inputs into OUTPREFIX.{y,h,c}.npy, then name the states hn/cn
run_case() { # st name layout states outprefix [lengths]
    local flags=()
    [ "$3" = time ] && flags+=(--time-major)
    [ "$4" = states ] && flags+=(--h0 "$T/m/$2.h0.npy" --c0 "$T/m/$2.c0.npy")
    [ "${6:-none}" = lengths ] && flags+=(--lengths "$T/m/$2.len.npy")
    expect 0 "$CLI" run "$1" --input "$T/m/$2.x.npy" --output "$5.y.npy" --state-out "$5" "${flags[@]}" || return 1
    mv "$5.h.npy" "$5.hn.npy" && mv "$5.c.npy" "$5.cn.npy"
}

ort_case() { # onnx outprefix NAME=FILE.npy...: ONNX Runtime's outputs to outprefix.{y,hn,cn}.npy
    local onnx=$1 pre=$2; shift 2
    mkdir -p "$pre.d"
    NODE_PATH=$ORT_PATH expect 0 node "$SRC/tests/test_onnx_ort.js" "$onnx" "$pre.d" "$@" && has out "ok" || return 1
    for k in y hn cn; do mv "$pre.d/$k.npy" "$pre.$k.npy" || return 1; done
}

n=0
nb=0
nl=0
while read -r name layout states lens; do
    [ -n "$name" ] || continue
    n=$((n + 1))
    # import: PyTorch's graph
    expect 0 "$CLI" import "$T/m/$name.onnx" -o "$T/$name.st" || continue
    if [ "$layout" = time ]; then has out "time-major"; else has out "batch-major"; fi
    [ "$states" = states ] && has out "h0 'h0', c0 'c0'"
    case "$name" in bi[0-9]* | tokbi[0-9]*) has out "bidirectional LSTM" && nb=$((nb + 1)) ;; esac
    [ "$lens" = lengths ] && has out "lengths:    'lengths'" && nl=$((nl + 1))
    run_case "$T/$name.st" "$name" "$layout" "$states" "$T/$name.fl" "$lens" && compare "$T/$name.fl" "$T/m/$name"
    # export -> checker -> import -> same outputs (the exported graph is batch-major; the function is the same)
    expect 0 "$CLI" export "$T/$name.st" -o "$T/$name.rt.onnx" || continue
    expect 0 "$PY" -c 'import onnx, sys; m = onnx.load(sys.argv[1]); onnx.checker.check_model(m, full_check=True); print("valid")' \
        "$T/$name.rt.onnx" && has out "valid"
    expect 0 "$CLI" import "$T/$name.rt.onnx" -o "$T/$name.rt.st" && has out "batch-major"
    run_case "$T/$name.rt.st" "$name" "$layout" "$states" "$T/$name.rt" "$lens" && compare "$T/$name.rt" "$T/m/$name"
    if [ "$ORT" = 1 ]; then
        # ONNX Runtime on PyTorch's graph: PyTorch's outputs
        feeds=("x=$T/m/$name.x.npy")
        [ "$states" = states ] && feeds+=("h0=$T/m/$name.h0.npy" "c0=$T/m/$name.c0.npy")
        [ "$lens" = lengths ] && feeds+=("lengths=$T/m/$name.len.npy")
        ort_case "$T/m/$name.onnx" "$T/$name.ort" "${feeds[@]}" && compare "$T/$name.ort" "$T/m/$name"
        # ONNX Runtime on fastlstm's export (batch-major input, zero initial states): fastlstm's outputs
        expect 0 "$PY" -c 'import sys, numpy as np; x = np.load(sys.argv[1]); np.save(sys.argv[2], x if sys.argv[3] == "batch" else x.swapaxes(0, 1).copy())' \
            "$T/m/$name.x.npy" "$T/$name.xb.npy" "$layout"
        expect 0 "$CLI" run "$T/$name.rt.st" --input "$T/$name.xb.npy" --output "$T/$name.zb.y.npy" --state-out "$T/$name.zb" &&
            mv "$T/$name.zb.h.npy" "$T/$name.zb.hn.npy" && mv "$T/$name.zb.c.npy" "$T/$name.zb.cn.npy"
        ort_case "$T/$name.rt.onnx" "$T/$name.ortrt" "x=$T/$name.xb.npy" && compare "$T/$name.ortrt" "$T/$name.zb"
    fi
done <"$T/m/cases.txt"
[ "$n" -ge 19 ] || fail "only $n PyTorch cases were generated"
[ "$nb" -ge 8 ] || fail "only $nb bidirectional PyTorch cases were imported"
[ "$nl" -ge 8 ] || fail "only $nl PyTorch cases with lengths were imported"

# LSTM extras PyTorch cannot export (peepholes, clip, input_forget): ONNX nodes built with onnx.helper,
# against a float64 NumPy implementation of the ONNX spec (and ONNX Runtime when installed)
expect 0 "$PY" "$SRC/tools/onnx_ext_models.py" "$T/e" || fail "ext model generation"
ne=0
while read -r name states layout lens; do
    [ -n "$name" ] || continue
    ne=$((ne + 1))
    flags=()
    [ "$layout" = time ] && flags+=(--time-major)
    [ "$states" = states ] && flags+=(--h0 "$T/e/$name.h0.npy" --c0 "$T/e/$name.c0.npy")
    [ "$lens" = lengths ] && flags+=(--lengths "$T/e/$name.len.npy")
    expect 0 "$CLI" import "$T/e/$name.onnx" -o "$T/e_$name.st" || continue
    for st in "$T/e_$name.st" "$T/e_$name.rt.st"; do
        expect 0 "$CLI" run "$st" --input "$T/e/$name.x.npy" --output "$st.y.npy" --state-out "$st" "${flags[@]}" &&
            mv "$st.h.npy" "$st.hn.npy" && mv "$st.c.npy" "$st.cn.npy" && compare "$st" "$T/e/$name"
        [ "$st" = "$T/e_$name.rt.st" ] && break
        expect 0 "$CLI" export "$st" -o "$T/e_$name.rt.onnx" &&
            expect 0 "$PY" -c 'import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)' "$T/e_$name.rt.onnx" &&
            expect 0 "$CLI" import "$T/e_$name.rt.onnx" -o "$T/e_$name.rt.st"
    done
    if [ "$ORT" = 1 ] && [ "$layout" = time ]; then
        feeds=("x=$T/e/$name.x.npy")
        [ "$states" = states ] && feeds+=("h0=$T/e/$name.h0.npy" "c0=$T/e/$name.c0.npy")
        [ "$lens" = lengths ] && feeds+=("lens=$T/e/$name.len.npy")
        mkdir -p "$T/e_$name.ort.d"
        NODE_PATH=$ORT_PATH expect 0 node "$SRC/tests/test_onnx_ort.js" "$T/e/$name.onnx" "$T/e_$name.ort.d" "${feeds[@]}" &&
            mv "$T/e_$name.ort.d/Y.npy" "$T/e_$name.ort.y.npy" && mv "$T/e_$name.ort.d/Y_h.npy" "$T/e_$name.ort.hn.npy" &&
            mv "$T/e_$name.ort.d/Y_c.npy" "$T/e_$name.ort.cn.npy" && compare "$T/e_$name.ort" "$T/e/$name"
    fi
    # inference only: decomposition refuses models with extras
    case "$name" in bidir*) continue ;; esac
    expect 1 "$CLI" decompose "$T/e_$name.st" -o "$T/e_$name.svd.st" --method svd --rank 2 && has err "LSTM extras"
done <"$T/e/cases.txt"
[ "$ne" -ge 7 ] || fail "only $ne hand-written ONNX cases were generated"

# refusals: exit 1, the reason named, no output file
while read -r name text; do
    [ -n "$name" ] || continue
    expect 1 "$CLI" import "$T/m/$name.onnx" -o "$T/$name.st" && has err "FL_ERR_UNSUPPORTED" && has err "$text"
    [ -e "$T/$name.st" ] && fail "$name: a refused import wrote a model"
done <"$T/m/refuse.txt"
nr=0
while read -r name text; do
    [ -n "$name" ] || continue
    nr=$((nr + 1))
    expect 1 "$CLI" import "$T/e/$name.onnx" -o "$T/$name.st" && has err "$text"
    [ -e "$T/$name.st" ] && fail "$name: a refused import wrote a model"
done <"$T/e/refuse.txt"
[ "$nr" -ge 11 ] || fail "only $nr hand-written refusal cases were generated"

# a truncated file, a missing file, bad usage
head -c 300 "$T/m/feat1_time_op9.onnx" >"$T/cut.onnx"
expect 1 "$CLI" import "$T/cut.onnx" -o "$T/cut.st" && has err "FL_ERR_FORMAT" && has err "cut.onnx"
expect 1 "$CLI" import "$T/none.onnx" -o "$T/x.st" && has err "FL_ERR_IO"
expect 2 "$CLI" import "$T/m/feat1_time_op9.onnx" && has err "usage"
expect 2 "$CLI" import "$T/m/feat1_time_op9.onnx" -o "$T/x.st" --feed nofile && has err "NAME=FILE.pb"
expect 1 "$CLI" export "$T/none.st" -o "$T/x.onnx" && has err "FL_ERR_IO"
for c in import export; do expect 0 "$CLI" "$c" --help && has out "usage: fastlstm $c" && has out "example"; done

if [ "$failures" -gt 0 ]; then
    echo "$failures failed"
    exit 1
fi
echo "test_onnx_torch: $ne hand-written ONNX graphs (peepholes / clip / input_forget, bidirectional with sequence_lens) against NumPy; $nr refused; $n PyTorch models imported, run, exported and re-imported; ONNX Runtime compared: $([ "$ORT" = 1 ] && echo yes || echo no)"
