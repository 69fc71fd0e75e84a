#!/usr/bin/env bash
# The six applications of issue 12, end to end, in one report (docs/apps.md):
#   data (tools/apps_data.sh) -> PyTorch's own training of the configuration (the baseline metric)
#   -> fastlstm train (dense) -> fastlstm compress within the budget (certified on validation data the
#   search did not use; --finetune where the config says so) -> fastlstm eval of dense and compressed on
#   the untouched test split -> latency per request of the whole model (embedding, LSTM, head), same
#   run, same weights, 1 thread, batch 1 and 16: fastlstm dense / compressed, PyTorch dense / dynamic
#   int8, ONNX Runtime dense, oneDNN dense (LSTM part only) -> bench/apps/report.py writes the report.
#
#   bash bench/apps/run.sh [--quick] [--only APP[,APP]] [--cache DIR] [--out FILE] [--sweep] [--redo-timing] [--no-timing]
#     --quick        tiny subsets, hidden 32, 1 epoch: a smoke run of a few minutes; the report says QUICK
#                    and its figures mean nothing (default cache ~/.cache/fastlstm/apps-quick)
#     --only A,B     these applications only (fmnist wordlm sentiment speech babi charlm); the report
#                    still lists every application, with what the cache holds
#     --cache DIR    data, trained models and results (default ~/.cache/fastlstm/apps, outside git)
#     --data DIR     the data sets (tools/apps_data.sh DIR; default CACHE itself, as apps_data.sh)
#     --out FILE     the report (default docs/apps.md; plots beside it in apps/ when matplotlib exists)
#     --sweep        first run bench/apps/torch_train.py --hidden-sweep 64,128,256,512 for the
#                    classifiers (the dense size is fixed before compression: see CONFIG)
#     --redo-timing  time again (models and metrics stay cached)
#     --no-timing    train, compress and evaluate only; time later (on a quiet machine) with --redo-timing
#     --coretype N   OPENBLAS_CORETYPE=N for every side, training and timing alike (default: the
#                    environment's; unset, the core fastlstm runs by itself, `fastlstm version`, so
#                    PyTorch gets the same kernels)
#     --lengths      variable-length batches in fastlstm's timing: each batch takes the true lengths of the
#                    first B test sequences (speech frames, text tokens; `fastlstm bench --lengths`, issue 11);
#                    the peers still run padded to the request length. Off by default (padded everywhere).
# Resumes: every step writes its output file last (atomically); a file present marks the step done, so
# a stopped run continues per application where it stopped. Delete CACHE/run/APP to redo one.
# Env: FL_CLI (fastlstm binary; default: build it into build-apps), FL_PEERS_CACHE (onnxruntime-node,
# default ~/.cache/fastlstm-peers, shared with bench/peers/run.sh), FL_APPS_EXTRA_<APP> (extra
# `fastlstm train` options for APP, e.g. FL_APPS_EXTRA_SENTIMENT=--bidirectional once layers land).
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/bench/apps
PY=/usr/bin/python3
QUICK=0 ONLY="" CACHE="" DATA="" OUT=$ROOT/docs/apps.md SWEEP=0 REDO_TIMING=0 NO_TIMING=0 LENGTHS=0 CORETYPE=""
ALL_APPS="fmnist wordlm sentiment speech babi charlm"
usage() { sed -n '2,/^set -u$/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --only) ONLY=${2:?--only needs a list}; shift ;;
    --cache) CACHE=${2:?--cache needs a directory}; shift ;;
    --data) DATA=${2:?--data needs a directory}; shift ;;
    --out) OUT=${2:?--out needs a file}; shift ;;
    --sweep) SWEEP=1 ;;
    --redo-timing) REDO_TIMING=1 ;;
    --no-timing) NO_TIMING=1 ;;
    --lengths) LENGTHS=1 ;;
    --coretype) CORETYPE=${2:?--coretype needs an OpenBLAS core name}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
[ -n "$CACHE" ] || { CACHE=$HOME/.cache/fastlstm/apps; [ $QUICK = 1 ] && CACHE=$CACHE-quick; }
APPS=$ALL_APPS
if [ -n "$ONLY" ]; then
  APPS=${ONLY//,/ }
  for a in $APPS; do
    case " $ALL_APPS " in *" $a "*) ;; *) echo "run.sh: --only $a: no such application ($ALL_APPS)" >&2; exit 2 ;; esac
  done
fi
mkdir -p "$CACHE/run" || exit 1
LOG=$CACHE/run/log.txt
say() { echo "run.sh: $*" | tee -a "$LOG" >&2; }

# ---------------------------------------------------------------- configuration
# The dense size of each application is fixed before any compression (issue 12): the smallest hidden
# size in {64,128,256,512} whose PyTorch model reaches the best PyTorch test metric within noise.
# CACHE/run/APP/sweep.json (torch_train.py --hidden-sweep, run by --sweep) overrides HIDDEN below;
# without it these defaults are used and the report says so. The word LM is the paper's 2x650 only if it
# trains here in about an hour: 2x400 (the issue's floor) is the default; set it here.
# The LMs' training budget is what fits the 2-hour run with one core per trainer (PyTorch's and fastlstm's
# both see the same number of tokens): one pass over the word LM's 750k training tokens, and 2M of the
# char LM's 3.9M characters (LM_TOKENS below); neither LM is trained to convergence.
LM_TOKENS="charlm 2000000"
#      app       kind      hidden layers embed dropout epochs seq(T) budget finetune
CONFIG="fmnist    features  128    1      0     0       10     28     0.5    1
wordlm    lm-word   400    2      200   0.5     1      35     0.02   0
sentiment text-cls  128    1      64    0.2     10     17     0.5    1
speech    features  128    1      0     0       20     90     0.5    1
babi      text-cls  128    1      64    0       20     53     0.5    1
charlm    lm-char   512    1      64    0       1      100    0.02   0"
# seq(T): the application's natural request length (time steps of one request: rows of an image,
# frames of a spoken word, mean tokens of a sentence / story, a 35-token or 100-character LM window).
if [ $QUICK = 1 ]; then  # tiny: every app the same small model, one epoch; LMs capped in steps
  CONFIG=$(echo "$CONFIG" | awk '{ $3 = 32; $4 = 1; if ($5 > 0) $5 = 16; $7 = 1; print }')
fi
cfg() { echo "$CONFIG" | awk -v a="$1" -v f="$2" '$1 == a { print $f }'; }
BATCHES="1 16"
if [ $QUICK = 1 ]; then ROUNDS=2 FL_REPS="--reps 3"; else ROUNDS=5 FL_REPS=""; fi

# ---------------------------------------------------------------- tools
if [ -n "${FL_CLI:-}" ]; then
  FL=$FL_CLI
else
  BUILD=$ROOT/build-apps
  if ! { cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DFL_BUILD_TESTS=OFF -DFL_BUILD_BENCH=OFF >"$CACHE/run/cmake.log" 2>&1 &&
         nice cmake --build "$BUILD" -j2 --target fastlstm_cli >>"$CACHE/run/cmake.log" 2>&1; }; then
    echo "run.sh: fastlstm build failed:" >&2; tail -20 "$CACHE/run/cmake.log" >&2; exit 1
  fi
  FL=$BUILD/fastlstm
fi
[ -x "$FL" ] || { echo "run.sh: no fastlstm binary at $FL" >&2; exit 1; }
# Every side's BLAS runs the same OpenBLAS kernels: the fastlstm CLI sets OPENBLAS_CORETYPE for itself
# where OpenBLAS alone would fall back below the CPU (cli/blas_core.c); PyTorch would not.
[ -n "$CORETYPE" ] && export OPENBLAS_CORETYPE=$CORETYPE
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
  CORETYPE=$("$FL" version 2>/dev/null | sed -n 's/.*OPENBLAS_CORETYPE=\([A-Za-z0-9_]*\) set by fastlstm.*/\1/p' | head -1)
  [ -n "$CORETYPE" ] && export OPENBLAS_CORETYPE=$CORETYPE
fi
TORCH_WHY=""
$PY -c "import torch" >/dev/null 2>&1 || TORCH_WHY="$PY cannot import torch"
ONEDNN=$CACHE/run/onednn_lstm ONEDNN_WHY=""
if [ ! -x "$ONEDNN" ] || [ "$ROOT/bench/peers/onednn_lstm.c" -nt "$ONEDNN" ]; then
  gcc -O2 -o "$ONEDNN" "$ROOT/bench/peers/onednn_lstm.c" -ldnnl >"$CACHE/run/onednn.log" 2>&1 ||
    ONEDNN_WHY="cannot build bench/peers/onednn_lstm.c against oneDNN (apt-get install -y libdnnl-dev)"
fi
PEERS=${FL_PEERS_CACHE:-$HOME/.cache/fastlstm-peers}
ORT_WHY=""
if ! command -v node >/dev/null; then
  ORT_WHY="node not installed"
elif [ ! -d "$PEERS/ort/node_modules/onnxruntime-node" ]; then
  if [ $QUICK = 1 ]; then  # a smoke run (CI) never reaches the network
    ORT_WHY="onnxruntime-node is not in $PEERS/ort (a full run or bench/peers/run.sh installs it)"
  else
    mkdir -p "$PEERS/ort" && echo '{"name":"fl-peers-ort","private":true}' >"$PEERS/ort/package.json"
    (cd "$PEERS/ort" && ONNXRUNTIME_NODE_INSTALL=skip timeout 300 npm install --ignore-scripts --no-audit --no-fund \
       onnxruntime-node >"$CACHE/run/npm.log" 2>&1) || ORT_WHY="npm install onnxruntime-node failed ($(tail -1 "$CACHE/run/npm.log"))"
  fi
fi
[ -n "$TORCH_WHY" ] && [ -z "$ORT_WHY" ] && ORT_WHY="needs PyTorch to export the ONNX model"
export NODE_PATH=$PEERS/ort/node_modules
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

# ---------------------------------------------------------------- data
[ -n "$DATA" ] || DATA=$CACHE  # the layout of tools/apps_data.sh DIR: CACHE/<data set>/, results in CACHE/run/
qflag=""; [ $QUICK = 1 ] && qflag=--quick
say "data in $DATA"
# A data set that cannot be made (a package missing, npm unreachable) stops only its applications.
bash "$ROOT/tools/apps_data.sh" $qflag "$DATA" >>"$LOG" 2>&1 ||
  say "data preparation stopped: $(grep 'apps_data.sh:' "$LOG" | tail -1) — applications without data are skipped"

# ---------------------------------------------------------------- steps
# step OUT CMD...: run CMD (its stdout to OUT) unless OUT exists; OUT appears only when CMD succeeded.
step() {
  local out=$1; shift
  [ -s "$out" ] && return 0
  if "$@" >"$out.tmp" 2>>"$LOG"; then mv "$out.tmp" "$out"; return 0; fi
  say "FAILED: $* (log: $LOG)"; rm -f "$out.tmp"; return 1
}
# model step: CMD writes the model file given by -o itself; MODEL marks the step done.
mstep() {
  local model=$1; shift
  [ -s "$model" ] && return 0
  "$@" >>"$LOG" 2>&1 || { say "FAILED: $* (log: $LOG)"; rm -f "$model"; return 1; }
}

torch_app() { case $1 in wordlm) echo word-lm ;; charlm) echo char-lm ;; *) echo "$1" ;; esac; }
data_dir() { case $1 in wordlm) echo "$DATA/kjv/word" ;; charlm) echo "$DATA/kjv/char" ;; *) echo "$DATA/$1" ;; esac; }
# The data options of each command for data directory D: train_opts, eval_opts, val_opts, ft_opts.
data_opts() { # KIND D WHICH
  local k=$1 d=$2
  case $k:$3 in
    features:train) echo "--train $d/train_x.npy --train-labels $d/train_y.npy --valid $d/valid_x.npy --valid-labels $d/valid_y.npy" ;;
    features:eval)  echo "--data $d/test_x.npy --labels $d/test_y.npy" ;;
    features:val)   echo "--data $d/valid_x.npy --labels $d/valid_y.npy" ;;
    features:ft)    echo "--train $d/train_x.npy --train-labels $d/train_y.npy" ;;
    text-cls:train) echo "--train-labelled $d/train.tsv --valid-labelled $d/valid.tsv" ;;
    text-cls:eval)  echo "--labelled $d/test.tsv" ;;
    text-cls:val)   echo "--labelled $d/valid.tsv" ;;
    text-cls:ft)    echo "--train-labelled $d/train.tsv" ;;
    lm-*:train)     echo "--train-text $d/train.txt --valid-text $d/valid.txt" ;;
    lm-*:eval)      echo "--text $d/test.txt" ;;
    lm-*:val)       echo "--text $d/valid.txt" ;;
    lm-*:ft)        echo "--train-text $d/train.txt" ;;
  esac
}

run_app() {
  local app=$1 R=$CACHE/run/$1
  mkdir -p "$R"
  local kind hidden layers embed dropout epochs T budget ft
  kind=$(cfg $app 2) hidden=$(cfg $app 3) layers=$(cfg $app 4) embed=$(cfg $app 5) dropout=$(cfg $app 6)
  epochs=$(cfg $app 7) T=$(cfg $app 8) budget=$(cfg $app 9) ft=$(cfg $app 10)
  local tapp; tapp=$(torch_app $app)
  local D; D=$(data_dir $app)
  local hsrc="default (no PyTorch sweep in the cache)"
  local dset=$app; case $app in wordlm|charlm) dset=kjv ;; esac
  if [ ! -f "$DATA/$dset/.done" ]; then say "$app: skipped: no data in $DATA/$dset (tools/apps_data.sh)"; return 1; fi
  # Dense size: the sweep's pick (classifiers only; the LMs' sizes are the issue's).
  if [ $SWEEP = 1 ] && [ $QUICK = 0 ] && [ -z "$TORCH_WHY" ] && [ "${kind#lm}" = "$kind" ]; then
    say "$app: PyTorch hidden sweep 64,128,256,512"
    step "$R/sweep.json.out" $PY "$HERE/torch_train.py" --app $tapp --data "$D" --hidden-sweep 64,128,256,512 \
      --layers $layers --embed ${embed/#0/128} --dropout $dropout --epochs $epochs --threads 1 --quiet --json "$R/sweep.json"
  fi
  if [ $QUICK = 0 ] && [ -s "$R/sweep.json" ]; then
    hidden=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["chosen_hidden"])' "$R/sweep.json")
    hsrc="PyTorch sweep (smallest within noise of the best)"
  fi
  local extra_var=FL_APPS_EXTRA_$(echo $app | tr a-z A-Z)
  local extra=${!extra_var:-}
  # Model options of both trainers.
  local fl_model="--hidden $hidden --layers $layers --dropout $dropout --epochs $epochs --seed 1 --threads 1"
  local th_model="--hidden $hidden --layers $layers --dropout $dropout --epochs $epochs --seed 1 --threads 1"
  [ "$embed" != 0 ] && { fl_model="$fl_model --embed $embed"; th_model="$th_model --embed $embed"; }
  local task=classify level=""
  case $kind in
    lm-word) task=lm level="--level word --vocab-size 10000"; th_model="$th_model --vocab-size 10000" ;;
    lm-char) task=lm level="--level char --vocab-size 256"; th_model="$th_model --vocab-size 256" ;;
  esac
  local lm_tokens; lm_tokens=$(echo "$LM_TOKENS" | awk -v a="$app" '$1 == a { print $2 }')
  if [ $QUICK = 0 ] && [ -n "$lm_tokens" ]; then  # the same token budget on both sides: steps of 20 x 35 tokens
    fl_model="$fl_model --max-steps $((lm_tokens / 700))"; th_model="$th_model --limit $lm_tokens"
  fi
  if [ $QUICK = 1 ] && [ $task = lm ]; then  # a few steps only
    fl_model="$fl_model --max-steps 15"; th_model="$th_model --limit 10000"
    [ $kind = lm-word ] && { level="--level word --vocab-size 2000"; th_model="${th_model/--vocab-size 10000/--vocab-size 2000}"; }
  fi
  # The same configuration, as JSON, for the report.
  $PY - "$R/config.json" <<EOF
import json, sys
json.dump({"app": "$app", "kind": "$kind", "hidden": $hidden, "hidden_source": "$hsrc", "layers": $layers,
           "embed": $embed, "dropout": $dropout, "epochs": $epochs, "seq": $T, "budget": $budget,
           "finetune": bool($ft), "quick": bool($QUICK), "extra": "$extra", "lengths": bool($LENGTHS), "train_tokens": ${lm_tokens:-0}}, open(sys.argv[1], "w"), indent=1)
EOF
  # Splits: the sentiment data's folds (each trained, compressed and evaluated; timing on fold 0).
  local splits="."
  [ $app = sentiment ] && splits=$(cd "$D" && ls -d fold_* | tr '\n' ' ')
  # 1. PyTorch's own training of the configuration (all folds at once).
  if [ -z "$TORCH_WHY" ]; then
    [ -s "$R/torch.out" ] || say "$app: PyTorch training (hidden $hidden)"
    step "$R/torch.out" $PY "$HERE/torch_train.py" --app $tapp --data "$D" $th_model --quiet --json "$R/torch.json" || true
  fi
  local s
  for s in $splits; do
    local d=$D/$s o=$R/$s
    mkdir -p "$o"
    # 2. fastlstm dense.
    [ -s "$o/dense.safetensors" ] || say "$app $s: fastlstm train (hidden $hidden x $layers)"
    mstep "$o/dense.safetensors" "$FL" train --task $task $level $(data_opts $kind $d train) $fl_model $extra --quiet \
      -o "$o/dense.safetensors" || return 1
    step "$o/dense_eval.json" "$FL" eval "$o/dense.safetensors" $(data_opts $kind $d eval) --json || return 1
    # 3. compressed within the budget, certified on the held-back half of the validation data.
    local cargs="--batch 1 --seq $T --threads 1 $(data_opts $kind $d val) --max-loss $budget --seed 1 --json"
    # Fine-tuning restarts Adam on a converged model: at the training rate (1e-3) its first steps move every
  # weight by ~lr and cost Fashion-MNIST 0.4 points on the dense model itself; at 1e-4 the search certified
  # a plan there that 1e-3 could not (fmnist: W_hh SVD 64, paired loss -0.44, bound 0.01 <= 0.5).
  [ "$ft" = 1 ] && cargs="$cargs --finetune $(data_opts $kind $d ft) --lr 1e-4"
    [ $QUICK = 1 ] && cargs="$cargs --max-evals 6 --no-measure --cache-bytes 33554432 --bandwidth 40 --flops 100"
    local ftw=""; [ "$ft" = 1 ] && ftw=", fine-tuned"
    [ -s "$o/compress.json" ] || say "$app $s: fastlstm compress (budget $budget$ftw)"
    step "$o/compress.json" "$FL" compress "$o/dense.safetensors" -o "$o/comp.safetensors" $cargs || return 1
    step "$o/comp_eval.json" "$FL" eval "$o/comp.safetensors" $(data_opts $kind $d eval) --json || return 1
    step "$o/dense_info.json" "$FL" info "$o/dense.safetensors" --json || return 1
    step "$o/comp_info.json" "$FL" info "$o/comp.safetensors" --json || return 1
  done
  # 4. timing, on split 0's weights.
  local s0; s0=$(echo $splits | cut -d' ' -f1)
  local M=$R/$s0/dense.safetensors MC=$R/$s0/comp.safetensors
  [ $NO_TIMING = 1 ] && return 0
  [ $REDO_TIMING = 1 ] && rm -f "$R/timing.txt"
  [ -s "$R/timing.txt" ] && return 0
  say "$app: timing (1 thread, batch $BATCHES, seq $T)"
  local vocab input onnx=$R/dense.onnx
  vocab=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["arch"]["vocab"])' "$R/$s0/dense_info.json")
  input=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["arch"]["input"])' "$R/$s0/dense_info.json")
  [ -z "$TORCH_WHY" ] && [ ! -s "$onnx" ] && { $PY "$HERE/torch_time.py" "$M" 1 $T 1 1 export "$onnx" >>"$LOG" 2>&1 || rm -f "$onnx"; }
  local B t=$R/timing.txt.tmp
  echo "blas-core 0 ${OPENBLAS_CORETYPE:-unset}" >"$t"  # the same for every side
  for B in $BATCHES; do
    local lens=""
    if [ $LENGTHS = 1 ] && [ "${kind#lm}" = "$kind" ]; then  # the first B test sequences' true lengths, cut to T
      lens=$R/lengths_b$B.npy
      $PY - "$D/$s0" $B $T "$lens" <<'PYEOF' || { say "$app: no lengths for batch $B"; lens=""; }
import os, sys, numpy as np
d, B, T, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if os.path.exists(os.path.join(d, "test_len.npy")):
    n = np.load(os.path.join(d, "test_len.npy"))
elif os.path.exists(os.path.join(d, "test.tsv")):
    n = np.array([len(l.split("\t", 1)[1].split()) for l in open(os.path.join(d, "test.tsv"), encoding="utf-8") if "\t" in l])
else:
    n = np.full(B, T)  # fixed-length data (image rows)
n = np.resize(n.astype(np.int32), B)
np.save(out, np.clip(n, 1, T).astype(np.int32))
PYEOF
    fi
    fl_time_pair "$M" "$MC" $B $T $lens >>"$t"
    if [ -n "$ORT_WHY" ]; then echo "onnxruntime-dense $B unavailable: $ORT_WHY" >>"$t"
    elif [ ! -s "$onnx" ]; then echo "onnxruntime-dense $B unavailable: ONNX export failed (log: $LOG)" >>"$t"
    else echo "onnxruntime-dense $B $(node "$HERE/ort_app.js" "$onnx" $B $T $input $vocab $ROUNDS 1 2>&1 | tail -1)" >>"$t"
    fi
    if [ -n "$ONEDNN_WHY" ]; then echo "onednn-lstm $B unavailable: $ONEDNN_WHY" >>"$t"
    else echo "onednn-lstm $B $("$ONEDNN" "$M" $B $T $ROUNDS 2>&1 | tail -1 | awk -v T=$T '$1 == "us_per_step" { printf "ms %.4f %.4f %.4f\n", $2*T/1e3, $3*T/1e3, $4*T/1e3; next } { print }')" >>"$t"
    fi
  done
  if [ -n "$TORCH_WHY" ]; then
    for B in $BATCHES; do echo "pytorch-dense $B unavailable: $TORCH_WHY"; echo "pytorch-int8 $B unavailable: $TORCH_WHY"; done >>"$t"
  else  # one PyTorch process for both modes and batches (its start-up is seconds)
    $PY "$HERE/torch_time.py" "$M" "${BATCHES// /,}" $T $ROUNDS 1 dense,int8 2>>"$LOG" | sed 's/^dense /pytorch-dense /; s/^int8 /pytorch-int8 /' >>"$t"
  fi
  mv "$t" "$R/timing.txt"
}

# Dense and compressed alternate over ROUNDS rounds (this VM's neighbours make single runs swing by 1.5x):
# each figure is the median of the rounds' medians, with the smallest min and the largest max.
fl_time_pair() { # DENSE COMPRESSED B T [LENGTHS.npy] -> two lines "fastlstm-dense|compressed B ms MED MIN MAX"
  local r d="" c=""
  for r in $(seq $ROUNDS); do d="$d;$(fl_time "$1" $3 $4 ${5:-})"; c="$c;$(fl_time "$2" $3 $4 ${5:-})"; done
  $PY - "$3" "$d" "$c" <<'PYEOF'
import statistics, sys
B = sys.argv[1]
for name, runs in (("fastlstm-dense", sys.argv[2]), ("fastlstm-compressed", sys.argv[3])):
    rows = [r.split() for r in runs.split(";") if r.startswith("ms ")]
    if not rows:
        print("%s %s %s" % (name, B, next((r for r in runs.split(";") if r), "unavailable: no run"))); continue
    med = statistics.median(float(r[1]) for r in rows)
    print("%s %s ms %.4f %.4f %.4f" % (name, B, med, min(float(r[2]) for r in rows), max(float(r[3]) for r in rows)))
PYEOF
}
fl_time() { # MODEL B T [LENGTHS.npy] -> "ms MED MIN MAX" or "unavailable: why"
  local j
  j=$("$FL" bench "$1" --batch $2 --seq $3 --threads 1 $FL_REPS --warmup 20 ${4:+--lengths "$4"} --json 2>>"$LOG") ||
    { echo "unavailable: fastlstm bench failed"; return; }
  $PY -c 'import json,sys; d=json.loads(sys.argv[1]); print("ms %.4f %.4f %.4f" % (d["median_ms"], d["min_ms"], d["max_ms"]))' "$j"
}

echo "# $(date -u +%FT%TZ) run.sh$([ $QUICK = 1 ] && echo ' --quick') apps: $APPS" >>"$LOG"
failed=""
for app in $APPS; do
  run_app $app || failed="$failed $app"
done
[ -n "$failed" ] && say "these applications stopped early:$failed (rerun to resume; log: $LOG)"
echo "unavailable peers: torch: ${TORCH_WHY:-ok}; onnxruntime: ${ORT_WHY:-ok}; onednn: ${ONEDNN_WHY:-ok}" >"$CACHE/run/peers.txt"
$PY "$HERE/report.py" --run "$CACHE/run" --out "$OUT" $([ $QUICK = 1 ] && echo --quick) || exit 1
say "report: $OUT"
[ -z "$failed" ]
