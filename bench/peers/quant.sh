#!/usr/bin/env bash
# Precision benchmark (issue 13): the same 2-layer LSTM weights through fastlstm in f32, bf16 and
# int8, dense and SVD at rank h/8 and h/16, against PyTorch dynamic int8 (quantize_dynamic of
# nn.LSTM) and ONNX Runtime's com.microsoft DynamicQuantizeLSTM (bench/peers/ort_qlstm.py), one
# thread, per time step (sequence latency / 35): median [min..max] over rounds, and each entry's
# ratio to fastlstm int8 dense of the same row (xR > 1: slower than it). Before timing, each shape's
# ONNX graph is checked against fastlstm's int8 outputs (ort_qlstm.py check), and every fastlstm
# variant's output deviation from f32 dense is printed (B 4, T 35, seeded inputs).
#
#   bash bench/peers/quant.sh [--quick] [--build DIR]
#     --quick      smoke run: 650 only, batch 1, 2 rounds, few repetitions (about a minute)
#     --build DIR  build directory for fastlstm (default build-peers)
# Full run: 650 and 1500 hidden (input = hidden), batch 1 and 20, 5 rounds: about 5 minutes on one
# quiet core. ONNX Runtime comes from ~/.cache/fastlstm-peers (see run.sh; installed there by it).
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/bench/peers
BUILD=$ROOT/build-peers
QUICK=0
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --build) BUILD=$2; shift ;;
    *) echo "usage: bash bench/peers/quant.sh [--quick] [--build DIR]" >&2; exit 2 ;;
  esac
  shift
done
PY=/usr/bin/python3
CACHE=${FL_PEERS_CACHE:-$HOME/.cache/fastlstm-peers}
export NODE_PATH=$CACHE/ort/node_modules OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
if [ $QUICK = 1 ]; then ROUNDS=2; FL_REPS=3; SIZES="650"; BATCHES="1"; else ROUNDS=5; FL_REPS=10; SIZES="650 1500"; BATCHES="1 20"; fi
T=35
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

echo "# fastlstm precision benchmark, $(date -u +%FT%TZ), $(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "# kernels: $(grep -o -m1 -w -e avx512_vnni -e avx512_bf16 -e avx512f -e avx2 /proc/cpuinfo | sort -u | xargs); 1 thread; rounds $ROUNDS; per time step, both layers"

if ! { cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DFL_BUILD_TESTS=OFF -DFL_BUILD_BENCH=OFF >"$WORK/cmake.log" 2>&1 &&
       cmake --build "$BUILD" -j2 --target fastlstm_cli >>"$WORK/cmake.log" 2>&1; }; then
  echo "fastlstm build failed:"; tail -20 "$WORK/cmake.log"; exit 1
fi
FL=$BUILD/fastlstm
TORCH_WHY="" ORT_WHY=""
$PY -c "import torch" >/dev/null 2>&1 || TORCH_WHY="$PY cannot import torch"
$PY -c "import onnx" >/dev/null 2>&1 || ORT_WHY="$PY cannot import onnx (apt-get install python3-onnx)"
command -v node >/dev/null || ORT_WHY="node not installed"
[ -z "$ORT_WHY" ] && [ ! -d "$NODE_PATH/onnxruntime-node" ] && ORT_WHY="onnxruntime-node not in $NODE_PATH (bash bench/peers/run.sh installs it)"

REF=""
fmt() { # "us_per_step MED MIN MAX" -> "MED [MIN..MAX] xR" (ratio to REF)
  case $1 in
    us_per_step*) set -- $1
      if [ -n "$REF" ]; then printf "%8.1f [%.1f..%.1f] x%.2f" "$2" "$3" "$4" "$(awk "BEGIN{print $2/$REF}")"
      else printf "%8.1f [%.1f..%.1f]" "$2" "$3" "$4"; fi ;;
    *) printf "%s" "${1:-unavailable: no output}" ;;
  esac
}
run_fl() { # model B -> us_per_step line
  local j
  j=$("$FL" bench "$1" --batch "$2" --seq $T --threads 1 --reps $FL_REPS --warmup 2 --json 2>"$WORK/fl.err") ||
    { echo "unavailable: fastlstm bench failed ($(head -1 "$WORK/fl.err"))"; return; }
  $PY -c 'import json,sys; d=json.loads(sys.argv[1]); T=float(sys.argv[2]); print("us_per_step %.3f %.3f %.3f" % (d["median_ms"]*1e3/T, d["min_ms"]*1e3/T, d["max_ms"]*1e3/T))' "$j" $T
}

for H in $SIZES; do
  M=$WORK/m$H.safetensors
  "$FL" init --input $H --hidden $H --layers 2 --seed 1 -o "$M" >/dev/null 2>&1 || { echo "$H: fastlstm init failed"; continue; }
  # the variants: dense and SVD h/8, h/16 (the SVD of the same weights), each in f32, bf16, int8
  declare -A MODEL=()
  for v in dense 8 16; do
    if [ $v = dense ]; then src=$M; else
      src=$WORK/m${H}_svd$v.safetensors
      "$FL" decompose "$M" -o "$src" --method svd --rank $((H / v)) >"$WORK/dec.log" 2>&1 || { echo "decompose failed: $(tail -1 "$WORK/dec.log")"; continue; }
    fi
    MODEL[$v.f32]=$src
    for p in bf16 int8; do
      "$FL" quantize "$src" -o "${src%.safetensors}_$p.safetensors" --precision $p >/dev/null 2>&1 && MODEL[$v.$p]=${src%.safetensors}_$p.safetensors
    done
  done
  echo
  echo "## $H/$H/2/$T (input/hidden/layers/seq)"
  ONNX=$WORK/q$H.onnx
  if [ -z "$ORT_WHY" ]; then
    chk=$($PY "$HERE/ort_qlstm.py" check "${MODEL[dense.int8]}" "$FL" 2>&1 | tail -2 | xargs)
    echo "ONNX Runtime graph check: $chk"
    case $chk in *agree*) case $chk in *DISAGREE*) ORT_SKIP="outputs disagree with fastlstm int8" ;; *) ORT_SKIP="" ;; esac ;; *) ORT_SKIP="check failed" ;; esac
    [ -z "$ORT_SKIP" ] && { $PY "$HERE/ort_qlstm.py" export "${MODEL[dense.int8]}" "$ONNX" >/dev/null 2>&1 || ORT_SKIP="export failed"; }
  else
    ORT_SKIP=$ORT_WHY
  fi
  # output deviation of every variant from f32 dense (B 4, T 35)
  $PY - "$FL" "$WORK" "$M" dense.f32="${MODEL[dense.f32]:-}" dense.bf16="${MODEL[dense.bf16]:-}" dense.int8="${MODEL[dense.int8]:-}" \
      svd8.f32="${MODEL[8.f32]:-}" svd8.bf16="${MODEL[8.bf16]:-}" svd8.int8="${MODEL[8.int8]:-}" \
      svd16.f32="${MODEL[16.f32]:-}" svd16.bf16="${MODEL[16.bf16]:-}" svd16.int8="${MODEL[16.int8]:-}" <<'EOF'
import json, subprocess, sys, numpy as np
fl, work, base = sys.argv[1], sys.argv[2], sys.argv[3]
D = json.loads(subprocess.run([fl, "info", base, "--json"], capture_output=True, text=True).stdout)["arch"]["input"]
np.save(work + "/dx.npy", np.random.RandomState(3).uniform(-1, 1, (4, 35, D)).astype(np.float32))
def out(m):
    subprocess.run([fl, "run", m, "--input", work + "/dx.npy", "--output", work + "/dy.npy"], check=True, stdout=subprocess.DEVNULL)
    return np.load(work + "/dy.npy").astype(np.float64)
ref = out(base)
parts = []
for kv in sys.argv[4:]:
    k, m = kv.split("=", 1)
    parts.append("%s %s" % (k, "%.2g" % (np.linalg.norm(out(m) - ref) / np.linalg.norm(ref)) if m else "-"))
print("output deviation from f32 dense: " + ", ".join(parts))
EOF
  for B in $BATCHES; do
    REF=""
    r=$(run_fl "${MODEL[dense.int8]}" $B)
    case $r in us_per_step*) REF=$(echo "$r" | cut -d' ' -f2) ;; esac
    echo "B $B  (us per step; xR = time / fastlstm int8 dense)"
    for v in dense 8 16; do
      [ $v = dense ] && label="dense   " || label="svd h/$v"
      [ $v = 8 ] && label="svd h/8 "
      line="  fastlstm $label"
      for p in f32 bf16 int8; do
        if [ $v = dense ] && [ $p = int8 ]; then s=$r; else
          [ -n "${MODEL[$v.$p]:-}" ] && s=$(run_fl "${MODEL[$v.$p]}" $B) || s="unavailable: no model"
        fi
        line="$line | $p $(fmt "$s")"
      done
      echo "$line"
    done
    if [ -n "$TORCH_WHY" ]; then t="unavailable: $TORCH_WHY"; else t=$($PY "$HERE/ort_qlstm.py" torch-int8 "${MODEL[dense.int8]}" $B $T $ROUNDS 1 2>&1 | tail -1); fi
    if [ -n "$ORT_SKIP" ]; then o="unavailable: $ORT_SKIP"; else o=$(node "$HERE/ort_lstm.js" "$ONNX" $B $T $H $ROUNDS 1 2>&1 | tail -1); fi
    echo "  PyTorch dynamic int8 $(fmt "$t") | ONNX Runtime DynamicQuantizeLSTM $(fmt "$o")"
  done
  unset MODEL
done
