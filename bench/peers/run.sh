#!/usr/bin/env bash
# Peer benchmark: the same LSTM shapes and weights through fastlstm, oneDNN, PyTorch and ONNX Runtime
# in one run, per time step (sequence latency / seq length): median [min..max] over rounds, and each
# peer's ratio to fastlstm (> 1: fastlstm is faster). Plus PyTorch on the same SVD factors as
# fastlstm's low-rank models. A peer that cannot run prints "unavailable: <reason>".
#
#   bash bench/peers/run.sh [--quick] [--build DIR] [--coretype NAME]
#     --quick       smoke run, about a minute: 2 rounds, threads 1, batch 1, no 1500/1500 shape
#     --build DIR   build directory for fastlstm and the oneDNN harness (default build-peers)
#     --coretype N  set OPENBLAS_CORETYPE=N for every side (default: the environment's, printed)
# ONNX Runtime comes from npm (onnxruntime-node, installed once into $FL_PEERS_CACHE, default
# ~/.cache/fastlstm-peers, with ONNXRUNTIME_NODE_INSTALL=skip --ignore-scripts).
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/bench/peers
BUILD=$ROOT/build-peers
QUICK=0 ONLY="dense lowrank bi varlen"
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --build) BUILD=$2; shift ;;
    --coretype) export OPENBLAS_CORETYPE=$2; shift ;;
    --only) ONLY=${2//,/ }; shift ;;
    *) echo "usage: bash bench/peers/run.sh [--quick] [--build DIR] [--coretype NAME] [--only dense,lowrank,bi,varlen]" >&2; exit 2 ;;
  esac
  shift
done
PY=/usr/bin/python3
CACHE=${FL_PEERS_CACHE:-$HOME/.cache/fastlstm-peers}
if [ $QUICK = 1 ]; then ROUNDS=2; FL_REPS=3; THREADS="1"; else ROUNDS=5; FL_REPS=15; THREADS="1 2"; fi
#     --only LIST   these sections only (dense, lowrank, bi, varlen; default all)
# --quick: batch 1 only, no 1500 shape, low rank on the 650 shape only, to stay near a minute.
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

echo "# fastlstm peer benchmark, $(date -u +%FT%TZ), $(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "# OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-<unset>} (same for every side); rounds $ROUNDS; per time step, all layers"

# ---------------------------------------------------------------- builds
if ! { cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DFL_BUILD_TESTS=OFF -DFL_BUILD_BENCH=OFF >"$WORK/cmake.log" 2>&1 &&
       cmake --build "$BUILD" -j2 --target fastlstm_cli >>"$WORK/cmake.log" 2>&1; }; then
  echo "fastlstm build failed:"; tail -20 "$WORK/cmake.log"; exit 1
fi
FL=$BUILD/fastlstm
ONEDNN_WHY=""
gcc -O2 -o "$BUILD/onednn_lstm" "$HERE/onednn_lstm.c" -ldnnl >"$WORK/onednn.log" 2>&1 ||
  ONEDNN_WHY="cannot build the oneDNN harness ($(head -1 "$WORK/onednn.log"))"
TORCH_WHY=""
$PY -c "import torch" >/dev/null 2>&1 || TORCH_WHY="$PY cannot import torch"
ORT_WHY=""
if ! command -v node >/dev/null; then
  ORT_WHY="node not installed"
elif [ ! -d "$CACHE/ort/node_modules/onnxruntime-node" ]; then
  mkdir -p "$CACHE/ort" && echo '{"name":"fl-peers-ort","private":true}' >"$CACHE/ort/package.json"
  (cd "$CACHE/ort" && ONNXRUNTIME_NODE_INSTALL=skip timeout 300 npm install --ignore-scripts --no-audit --no-fund \
     onnxruntime-node >"$WORK/npm.log" 2>&1) || ORT_WHY="npm install onnxruntime-node failed ($(tail -1 "$WORK/npm.log"))"
fi
[ -n "$TORCH_WHY" ] && [ -z "$ORT_WHY" ] && ORT_WHY="needs PyTorch to export the ONNX model"
export NODE_PATH=$CACHE/ort/node_modules

# ---------------------------------------------------------------- helpers
want() { case " $ONLY " in *" $1 "*) return 0 ;; esac; return 1; }
FL_MED=""
fmt() { # "us_per_step MED MIN MAX" -> "MED [MIN..MAX] xRATIO" (ratio to fastlstm)
  local line=$1
  case $line in
    us_per_step*) set -- $line
      if [ -n "$FL_MED" ]; then
        printf "%9.2f us [%.2f..%.2f] x%.2f" "$2" "$3" "$4" "$(awk "BEGIN{print $2/$FL_MED}")"
      else
        printf "%9.2f us [%.2f..%.2f]" "$2" "$3" "$4"
      fi ;;
    *) printf "%s" "${line:-unavailable: no output}" ;;
  esac
}
run_fl() { # model B T threads -> us_per_step line
  local j
  j=$("$FL" bench "$1" --batch "$2" --seq "$3" --threads "$4" --reps $FL_REPS --warmup 2 --json 2>"$WORK/fl.err") ||
    { echo "unavailable: fastlstm bench failed ($(head -1 "$WORK/fl.err"))"; return; }
  $PY -c 'import json,sys; d=json.loads(sys.argv[1]); T=float(sys.argv[2]); print("us_per_step %.3f %.3f %.3f" % (d["median_ms"]*1e3/T, d["min_ms"]*1e3/T, d["max_ms"]*1e3/T))' "$j" "$3"
}
run_onednn() { [ -n "$ONEDNN_WHY" ] && { echo "unavailable: $ONEDNN_WHY"; return; }; "$BUILD/onednn_lstm" "$1" "$2" "$3" $ROUNDS 2>&1 | tail -1; }
run_torch() { [ -n "$TORCH_WHY" ] && { echo "unavailable: $TORCH_WHY"; return; }; $PY "$HERE/torch_lstm.py" "$1" "$2" "$3" $ROUNDS "$4" $5 2>&1 | tail -1; }
run_ort() { # onnx B T D threads
  [ -n "$ORT_WHY" ] && { echo "unavailable: $ORT_WHY"; return; }
  [ -f "$1" ] || { echo "unavailable: ONNX export failed"; return; }
  node "$HERE/ort_lstm.js" "$1" "$2" "$3" "$4" $ROUNDS $5 2>&1 | tail -1
}

# ---------------------------------------------------------------- dense shapes
if want dense; then
echo
echo "## dense LSTM: fastlstm | oneDNN | PyTorch | ONNX Runtime   (xR = peer time / fastlstm time)"
DENSE_SHAPES=("128 256 1 100 64" "650 650 2 35 20" "1500 1500 2 35 20" "28 128 1 28 256")
[ $QUICK = 1 ] && DENSE_SHAPES=("128 256 1 100 64" "650 650 2 35 20" "28 128 1 28 256")
for shape in "${DENSE_SHAPES[@]}"; do
  set -- $shape
  D=$1 H=$2 L=$3 T=$4 BS=$5
  M=$WORK/m_${D}_${H}_${L}.safetensors
  "$FL" init --input $D --hidden $H --layers $L --seed 1 -o "$M" >/dev/null 2>&1 || { echo "$shape: fastlstm init failed"; continue; }
  ONNX=$WORK/m_${D}_${H}_${L}.onnx
  [ -z "$TORCH_WHY" ] && $PY "$HERE/torch_lstm.py" "$M" 1 "$T" 1 1 export "$ONNX" >"$WORK/export.log" 2>&1
  BATCHES="1 $BS"
  [ $QUICK = 1 ] && BATCHES=1
  for B in $BATCHES; do
    for t in $THREADS; do
      export OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t
      FL_MED=""
      fl=$(run_fl "$M" $B $T $t)
      case $fl in us_per_step*) FL_MED=$(echo "$fl" | cut -d' ' -f2) ;; esac
      printf "%-16s B %3d t %d | fastlstm %s | oneDNN %s | PyTorch %s | ORT %s\n" "$D/$H/$L/$T" $B $t \
        "$(fmt "$fl")" "$(fmt "$(run_onednn "$M" $B $T)")" "$(fmt "$(run_torch "$M" $B $T $t dense)")" \
        "$(fmt "$(run_ort "$ONNX" $B $T $D $t)")"
    done
  done
done

fi

# ---------------------------------------------------------------- low rank
if want lowrank; then
echo
echo "## low rank (SVD of every LSTM matrix, same factors on both sides), batch 1: fastlstm | PyTorch step loop"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
LR_SHAPES=("650 650 2 35" "1500 1500 2 35")
[ $QUICK = 1 ] && LR_SHAPES=("650 650 2 35")
for shape in "${LR_SHAPES[@]}"; do
  set -- $shape
  D=$1 H=$2 L=$3 T=$4
  M=$WORK/m_${D}_${H}_${L}.safetensors
  for div in 8 16; do
    R=$((H / div))
    MS=$WORK/svd_${H}_${R}.safetensors
    if ! "$FL" decompose "$M" -o "$MS" --method svd --rank $R >"$WORK/dec.log" 2>&1; then
      printf "%-16s rank h/%-2d | unavailable: fastlstm decompose failed (%s)\n" "$D/$H/$L/$T" $div "$(tail -1 "$WORK/dec.log")"
      continue
    fi
    for t in $THREADS; do
      export OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t
      FL_MED=""
      fl=$(run_fl "$MS" 1 $T $t)
      case $fl in us_per_step*) FL_MED=$(echo "$fl" | cut -d' ' -f2) ;; esac
      printf "%-16s rank h/%-2d t %d | fastlstm %s | PyTorch low-rank loop %s\n" "$D/$H/$L/$T" $div $t \
        "$(fmt "$fl")" "$(fmt "$(run_torch "$MS" 1 $T $t lowrank)")"
    done
  done
done

fi

# ---------------------------------------------------------------- bidirectional (issue 11)
if want bi; then
echo
echo "## bidirectional LSTM (2 x 650, [fwd, rev] per step): fastlstm | oneDNN (bidirectional_concat) | PyTorch | ONNX Runtime"
D=650 H=650 L=2 T=35
MB=$WORK/bi_${D}_${H}_${L}.safetensors
ONNXB=$WORK/bi_${D}_${H}_${L}.onnx
if "$FL" init --input $D --hidden $H --layers $L --bidirectional --seed 1 -o "$MB" >/dev/null 2>&1; then
  [ -z "$TORCH_WHY" ] && $PY "$HERE/torch_lstm.py" "$MB" 1 "$T" 1 1 export "$ONNXB" >"$WORK/export.log" 2>&1
  BATCHES="1 20"
  [ $QUICK = 1 ] && BATCHES=1
  for B in $BATCHES; do
    for t in $THREADS; do
      export OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t
      FL_MED=""
      fl=$(run_fl "$MB" $B $T $t)
      case $fl in us_per_step*) FL_MED=$(echo "$fl" | cut -d' ' -f2) ;; esac
      printf "%-16s B %3d t %d | fastlstm %s | oneDNN %s | PyTorch %s | ORT %s\n" "bi $D/$H/$L/$T" $B $t \
        "$(fmt "$fl")" "$(fmt "$(run_onednn "$MB" $B $T)")" "$(fmt "$(run_torch "$MB" $B $T $t dense)")" \
        "$(fmt "$(run_ort "$ONNXB" $B $T $D $t)")"
    done
  done
  # the issue's goal: a bidirectional model on 2 threads costs at most 1.2x the unidirectional one on 1
  MU=$WORK/m_${D}_${H}_${L}.safetensors
  [ -f "$MU" ] || "$FL" init --input $D --hidden $H --layers $L --seed 1 -o "$MU" >/dev/null 2>&1
  export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
  uni=$(run_fl "$MU" 1 $T 1)
  export OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2
  bi2=$(run_fl "$MB" 1 $T 2)
  case "$uni/$bi2" in us_per_step*/us_per_step*)
    printf "bi B 1 on 2 threads / uni B 1 on 1 thread: %s / %s us = %.2f (goal <= 1.2)\n" "$(echo "$bi2" | cut -d' ' -f2)" \
      "$(echo "$uni" | cut -d' ' -f2)" "$(awk "BEGIN{print $(echo "$bi2" | cut -d' ' -f2) / $(echo "$uni" | cut -d' ' -f2)}")" ;;
  *) echo "bi/uni ratio: unavailable ($uni; $bi2)" ;;
  esac
else
  echo "bi $D/$H/$L/$T: fastlstm init --bidirectional failed"
fi

fi

# ---------------------------------------------------------------- variable lengths (issue 11)
if want varlen; then
echo
echo "## variable-length batch: B 20, lengths uniform in 5..35 (seeded), T_max 35, per step = batch latency / 35"
echo "## fastlstm (--lengths, packed) | oneDNN (no per-sequence lengths: PADDED to 35) | PyTorch (pack_padded_sequence) | ORT (sequence_lens)"
LENS=$WORK/lengths.npy
if $PY -c 'import numpy as np, sys; np.save(sys.argv[1], np.random.RandomState(11).randint(5, 36, 20).astype("<i4"))' "$LENS" 2>/dev/null; then
  LENS_CSV=$($PY -c 'import numpy as np, sys; print(",".join(str(v) for v in np.load(sys.argv[1])))' "$LENS")
  echo "## lengths: $LENS_CSV"
  VL_MODELS="uni bi"
  [ $QUICK = 1 ] && VL_MODELS=uni
  for kind in $VL_MODELS; do
    if [ $kind = uni ]; then MV=$WORK/m_650_650_2.safetensors bi=""; else MV=$WORK/bi_650_650_2.safetensors bi=--bidirectional; fi
    [ -f "$MV" ] || "$FL" init --input 650 --hidden 650 --layers 2 $bi --seed 1 -o "$MV" >/dev/null 2>&1
    ONNXV=$WORK/vl_$kind.onnx
    [ -z "$TORCH_WHY" ] && $PY "$HERE/torch_lstm.py" "$MV" 1 35 1 1 export "$ONNXV" lens >"$WORK/export.log" 2>&1
    for t in $THREADS; do
      export OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t
      FL_MED=""
      j=$("$FL" bench "$MV" --batch 20 --seq 35 --threads $t --lengths "$LENS" --reps $FL_REPS --warmup 2 --json 2>"$WORK/fl.err") &&
        fl=$($PY -c 'import json,sys; d=json.loads(sys.argv[1]); print("us_per_step %.3f %.3f %.3f" % (d["median_ms"]*1e3/35, d["min_ms"]*1e3/35, d["max_ms"]*1e3/35))' "$j") ||
        fl="unavailable: fastlstm bench --lengths failed ($(head -1 "$WORK/fl.err"))"
      case $fl in us_per_step*) FL_MED=$(echo "$fl" | cut -d' ' -f2) ;; esac
      printf "%-16s B  20 t %d | fastlstm %s | oneDNN padded %s | PyTorch packed %s | ORT %s\n" "$kind 650/650/2/5..35" $t \
        "$(fmt "$fl")" "$(fmt "$(run_onednn "$MV" 20 35)")" "$(fmt "$(run_torch "$MV" 20 35 $t "dense $LENS")")" \
        "$(fmt "$(run_ort "$ONNXV" 20 35 650 "$t $LENS_CSV")")"
    done
  done
else
  echo "variable lengths: cannot write the lengths file (numpy)"
fi
fi
