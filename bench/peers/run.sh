#!/usr/bin/env bash
# Peer benchmark: the same LSTM shapes and weights through fastlstm, oneDNN, PyTorch and ONNX Runtime
# in one run, per time step (sequence latency / seq length), and each peer's ratio to fastlstm (> 1:
# fastlstm is faster). Plus PyTorch on the same SVD factors as fastlstm's low-rank models. A peer that
# cannot run prints "unavailable: <reason>".
#
# Rounds: every row is measured in N rounds; a round runs each side once (one timing: warm-up runs, then
# 1/N of the whole repetitions), the order of the sides rotating from round to round, so that the
# sides of a round run within seconds of each other. A side's figure is the median over rounds of its
# round medians, [min..max] over rounds; a peer's xR is the median over rounds of the ratio peer /
# fastlstm of the same round (paired, so the machine's drift from minute to minute cancels). A side that
# failed in some rounds shows "(k/N rounds)" and its ratio pairs only those. fastlstm and oneDNN start
# one process per round; PyTorch and ONNX Runtime (1-2 s and ~0.5 s of start-up) one persistent process
# per row (FL_PEER_SERVE=1) that times once per round when asked and idles in between.
#
#   bash bench/peers/run.sh [--quick] [--rounds N] [--build DIR] [--coretype NAME] [--only LIST]
#     --quick       smoke run, about a minute: 2 rounds, short timings, threads 1, batch 1, no 1500/1500
#                   shape, low rank on the 650 shape only
#     --rounds N    rounds per row (default 3; --quick 2): per round fastlstm times ceil(15/N) runs
#                   (--quick ceil(3/N)), each peer 3 blocks of about 1000/(3N) ms (--quick 40/(3N))
#     --build DIR   build directory for fastlstm and the oneDNN harness (default build-peers)
#     --coretype N  set OPENBLAS_CORETYPE=N for every side (default: the environment's, printed)
#     --only LIST   these sections only (dense, lowrank, bi, varlen; default all)
# ONNX Runtime comes from npm (onnxruntime-node, installed once into $FL_PEERS_CACHE, default
# ~/.cache/fastlstm-peers, with ONNXRUNTIME_NODE_INSTALL=skip --ignore-scripts).
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/bench/peers
BUILD=$ROOT/build-peers
QUICK=0 ONLY="dense lowrank bi varlen" ROUNDS=""
usage() { echo "usage: bash bench/peers/run.sh [--quick] [--rounds N] [--build DIR] [--coretype NAME] [--only dense,lowrank,bi,varlen]"; }
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --rounds) [ $# -ge 2 ] || { usage >&2; exit 2; }; ROUNDS=$2; shift ;;
    --build) BUILD=$2; shift ;;
    --coretype) export OPENBLAS_CORETYPE=$2; shift ;;
    --only) ONLY=${2//,/ }; shift ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done
case $ROUNDS in
  "") [ $QUICK = 1 ] && ROUNDS=2 || ROUNDS=3 ;;
  *[!0-9]* | 0*) echo "run.sh: --rounds needs a whole number >= 1, not '$ROUNDS'" >&2; exit 2 ;;
esac
PY=/usr/bin/python3
CACHE=${FL_PEERS_CACHE:-$HOME/.cache/fastlstm-peers}
# The whole repetitions of a side over a row (today's one-process figures): fastlstm FL_REPS runs,
# a peer PEER_MS of timed blocks; each round takes 1/ROUNDS of them.
if [ $QUICK = 1 ]; then FL_REPS=3 PEER_MS=40 THREADS="1"; else FL_REPS=15 PEER_MS=1000 THREADS="1 2"; fi
FL_ROUND_REPS=$(( (FL_REPS + ROUNDS - 1) / ROUNDS ))
BLOCKS=3
SETTLE_S=${FL_PEER_SETTLE_S:-0.3} # pause after each side (rounds.sh): lingering pool threads park
BLOCK_MS=$(awk -v t=$PEER_MS -v b=$BLOCKS -v n=$ROUNDS 'BEGIN { m = t / (b * n); printf "%.1f", m < 1 ? 1 : m }')
WORK=$(mktemp -d)
declare -A SRV_IN=() SRV_OUT=() SRV_PID=() SRV_WHY=()
cleanup() {
  local s
  for s in "${!SRV_PID[@]}"; do srv_stop "$s"; done
  rm -rf "$WORK"
}
trap cleanup EXIT
START=$SECONDS

echo "# fastlstm peer benchmark, $(date -u +%FT%TZ), $(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "# OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-<unset>} (same for every side); per time step, all layers"
echo "# $ROUNDS rounds per row, the order of the sides rotating; a round times each side once (fastlstm $FL_ROUND_REPS runs"
echo "# after warm-up runs for 100 ms, at least 2; each peer $BLOCKS blocks of ~$BLOCK_MS ms after a warm-up and a calibration run). Figures: median"
echo "# [min..max] over rounds of each side's round median; xR: median over rounds of the per-round ratio peer / fastlstm"

# ---------------------------------------------------------------- builds
if ! { cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DFL_BUILD_TESTS=OFF -DFL_BUILD_BENCH=OFF >"$WORK/cmake.log" 2>&1 &&
       cmake --build "$BUILD" -j2 --target fastlstm_cli >>"$WORK/cmake.log" 2>&1; }; then
  echo "fastlstm build failed:"; tail -20 "$WORK/cmake.log"; exit 1
fi
FL=$BUILD/fastlstm
ONEDNN_WHY=""
gcc -O2 -o "$BUILD/onednn_lstm" "$HERE/onednn_lstm.c" -ldnnl >"$WORK/onednn.log" 2>&1 ||
  ONEDNN_WHY="cannot build the oneDNN harness ($(head -1 "$WORK/onednn.log"); Debian's libdnnl-dev provides it)"
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
source "$HERE/rounds.sh"

# One round of each side: a "us_per_step MED MIN MAX" line or "unavailable: why".
run_fl() { # model B T threads [bench options] (fastlstm, one process)
  local m=$1 b=$2 t=$3 th=$4
  shift 4
  local j
  j=$(OMP_NUM_THREADS=$th OPENBLAS_NUM_THREADS=$th "$FL" bench "$m" --batch "$b" --seq "$t" --threads "$th" "$@" \
        --reps $FL_ROUND_REPS --warmup 2 --warmup-ms 100 --json 2>"$WORK/fl.err") ||
    { echo "unavailable: fastlstm bench failed ($(head -1 "$WORK/fl.err"))"; return; }
  $PY -c 'import json,sys; d=json.loads(sys.argv[1]); T=float(sys.argv[2]); print("us_per_step %.3f %.3f %.3f" % (d["median_ms"]*1e3/T, d["min_ms"]*1e3/T, d["max_ms"]*1e3/T))' "$j" "$t"
}
run_onednn() { # model B T (one process; threads from OMP_NUM_THREADS)
  [ -n "$ONEDNN_WHY" ] && { echo "unavailable: $ONEDNN_WHY"; return; }
  FL_PEER_BLOCK_MS=$BLOCK_MS "$BUILD/onednn_lstm" "$1" "$2" "$3" $BLOCKS 2>&1 | tail -1
}
# The persistent peers of a row (started before its rounds, stopped after): torch_start model B T
# threads MODE [lengths.npy]; ort_start onnx B T D threads [lengths csv]; a round: srv_time torch|ort.
torch_start() {
  srv_start torch "$TORCH_WHY" env OMP_NUM_THREADS=$4 OPENBLAS_NUM_THREADS=$4 \
    $PY "$HERE/torch_lstm.py" "$1" "$2" "$3" $BLOCKS "$4" "${@:5}"
}
ort_start() {
  local why=$ORT_WHY
  [ -z "$why" ] && [ ! -f "$1" ] && why="ONNX export failed"
  srv_start ort "$why" env OMP_NUM_THREADS=$5 node "$HERE/ort_lstm.js" "$1" "$2" "$3" "$4" $BLOCKS "$5" "${@:6}"
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
      torch_start "$M" $B $T $t dense
      ort_start "$ONNX" $B $T $D $t
      measure "run_fl '$M' $B $T $t" "run_onednn '$M' $B $T" "srv_time torch" "srv_time ort"
      srv_stop torch
      srv_stop ort
      printf "%-16s B %3d t %d | fastlstm %s | oneDNN %s | PyTorch %s | ORT %s\n" "$D/$H/$L/$T" $B $t \
        "$(cell 0)" "$(cell 1)" "$(cell 2)" "$(cell 3)"
    done
  done
done

fi

# ---------------------------------------------------------------- low rank
if want lowrank; then
echo
echo "## low rank (SVD of every LSTM matrix, same factors on both sides), batch 1: fastlstm | PyTorch step loop"
LR_SHAPES=("650 650 2 35" "1500 1500 2 35")
[ $QUICK = 1 ] && LR_SHAPES=("650 650 2 35")
for shape in "${LR_SHAPES[@]}"; do
  set -- $shape
  D=$1 H=$2 L=$3 T=$4
  M=$WORK/m_${D}_${H}_${L}.safetensors
  [ -f "$M" ] || "$FL" init --input $D --hidden $H --layers $L --seed 1 -o "$M" >/dev/null 2>&1
  for div in 8 16; do
    R=$((H / div))
    MS=$WORK/svd_${H}_${R}.safetensors
    if ! "$FL" decompose "$M" -o "$MS" --method svd --rank $R >"$WORK/dec.log" 2>&1; then
      printf "%-16s rank h/%-2d | unavailable: fastlstm decompose failed (%s)\n" "$D/$H/$L/$T" $div "$(tail -1 "$WORK/dec.log")"
      continue
    fi
    for t in $THREADS; do
      export OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t
      torch_start "$MS" 1 $T $t lowrank
      measure "run_fl '$MS' 1 $T $t" "srv_time torch"
      srv_stop torch
      printf "%-16s rank h/%-2d t %d | fastlstm %s | PyTorch low-rank loop %s\n" "$D/$H/$L/$T" $div $t \
        "$(cell 0)" "$(cell 1)"
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
      torch_start "$MB" $B $T $t dense
      ort_start "$ONNXB" $B $T $D $t
      measure "run_fl '$MB' $B $T $t" "run_onednn '$MB' $B $T" "srv_time torch" "srv_time ort"
      srv_stop torch
      srv_stop ort
      printf "%-16s B %3d t %d | fastlstm %s | oneDNN %s | PyTorch %s | ORT %s\n" "bi $D/$H/$L/$T" $B $t \
        "$(cell 0)" "$(cell 1)" "$(cell 2)" "$(cell 3)"
    done
  done
  # the issue's goal: a bidirectional model on 2 threads costs at most 1.2x the unidirectional one on 1;
  # both timed in the same rounds, the ratio the median of the per-round ratios
  MU=$WORK/m_${D}_${H}_${L}.safetensors
  [ -f "$MU" ] || "$FL" init --input $D --hidden $H --layers $L --seed 1 -o "$MU" >/dev/null 2>&1
  measure "run_fl '$MU' 1 $T 1" "run_fl '$MB' 1 $T 2"
  uni=$(side_stats 0) bi2=$(side_stats 1) q=$(ratio_stats 1 0)
  if [ -n "$uni" ] && [ -n "$bi2" ] && [ -n "$q" ]; then
    set -- $q
    printf "bi B 1 on 2 threads / uni B 1 on 1 thread: %.3f / %.3f us = %.2f (goal <= 1.2; median of %d per-round ratios, %.2f..%.2f)\n" \
      "${bi2%% *}" "${uni%% *}" $1 $4 $2 $3
  else
    echo "bi/uni ratio: unavailable ($(first_failure 0); $(first_failure 1))"
  fi
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
      torch_start "$MV" 20 35 $t dense "$LENS"
      ort_start "$ONNXV" 20 35 650 $t "$LENS_CSV"
      measure "run_fl '$MV' 20 35 $t --lengths '$LENS'" "run_onednn '$MV' 20 35" "srv_time torch" "srv_time ort"
      srv_stop torch
      srv_stop ort
      printf "%-16s B  20 t %d | fastlstm %s | oneDNN padded %s | PyTorch packed %s | ORT %s\n" "$kind 650/650/2/5..35" $t \
        "$(cell 0)" "$(cell 1)" "$(cell 2)" "$(cell 3)"
    done
  done
else
  echo "variable lengths: cannot write the lengths file (numpy)"
fi
fi

echo
echo "# done in $((SECONDS - START)) s"
