#!/usr/bin/env bash
# Load test of fastlstm serve against ONNX Runtime behind Node's http module, on loopback.
#   bench/serve/run.sh [--build DIR] [--rates "10 20 50 ..."] [--duration S] [--rank R] [--out DIR]
# Model: the 2-layer 650 LSTM (D = H = 650, no head; 35-step sequences, one per request, as .npy
# bodies), dense and SVD-compressed (rank R of every LSTM matrix, default 81 = 650/8). Servers:
#   fastlstm dense, batching on  (--max-batch 16 --max-delay-us 2000)
#   fastlstm dense, batching off (--max-batch 1 --max-delay-us 0)
#   fastlstm SVD,   batching on / off
#   ORT dense (bench/serve/ort_server.js; the model exported by bench/peers/torch_lstm.py)
# Each is swept over the offered rates with serve_loadgen (open loop, pinned to the last core; the
# server is pinned to the other cores). Prints a table (throughput, p50, p99 per offered rate) and
# writes OUT/serve_load.csv, and OUT/serve_load.png when matplotlib is there.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=$ROOT/build RATES="10 20 50 100 200 400" DUR=10 RANK=81 OUT=$PWD
PY=${FL_PYTHON:-/usr/bin/python3}
CACHE=${FL_PEERS_CACHE:-$HOME/.cache/fastlstm-peers}
while [ $# -gt 0 ]; do
  case $1 in
    --build) BUILD=$2; shift ;;
    --rates) RATES=$2; shift ;;
    --duration) DUR=$2; shift ;;
    --rank) RANK=$2; shift ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n 2,13p "$0"; exit 0 ;;
    *) echo "unknown option $1"; exit 2 ;;
  esac
  shift
done
FL=$BUILD/fastlstm LG=$BUILD/serve_loadgen
[ -x "$FL" ] && [ -x "$LG" ] || { echo "build first: $FL and $LG"; exit 2; }
WORK=$(mktemp -d)
SERVER=
trap '[ -n "$SERVER" ] && kill $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT
NCPU=$(nproc)
LG_CPU=$((NCPU - 1))
SRV_CPUS=0-$((NCPU > 1 ? NCPU - 2 : 0))
SRV_THREADS=$((NCPU > 1 ? NCPU - 1 : 1))
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

"$FL" init --input 650 --hidden 650 --layers 2 --seed 1 -o "$WORK/dense.safetensors" >/dev/null || exit 1
"$FL" decompose "$WORK/dense.safetensors" -o "$WORK/svd.safetensors" --method svd --rank "$RANK" >"$WORK/dec.log" 2>&1 || { cat "$WORK/dec.log"; exit 1; }
$PY -c "import numpy as np; np.save('$WORK/body.npy', np.random.default_rng(0).standard_normal((1, 35, 650)).astype(np.float32))" || exit 1

# wait_port LOG: the port a server printed ("...127.0.0.1:PORT...") once it is ready.
wait_port() {
  for _ in $(seq 1 300); do
    p=$(grep -o '127.0.0.1:[0-9]*' "$1" 2>/dev/null | head -1 | cut -d: -f2)
    [ -n "$p" ] && { echo "$p"; return 0; }
    sleep 0.1
  done
  return 1
}

echo "server,batching,offered,throughput,p50_ms,p99_ms,p999_ms,errors,gen_cpu" >"$OUT/serve_load.csv"
printf "%-14s %-8s %8s %10s %9s %9s %9s %6s\n" server batching offered "req/s" "p50 ms" "p99 ms" "p99.9 ms" errors
sweep() { # NAME BATCHING PORT NAME_IN_URL
  for r in $RATES; do
    line=$(taskset -c $LG_CPU "$LG" --port "$3" --path "/v1/models/$4/predict" --body "$WORK/body.npy" \
           --content-type application/x-npy --rate "$r" --duration "$DUR" --cpu "$LG_CPU" | tail -1)
    get() { echo "$line" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
    err=$(( $(get err4xx) + $(get err5xx) + $(get connfail) + $(get unanswered) ))
    printf "%-14s %-8s %8s %10s %9s %9s %9s %6s\n" "$1" "$2" "$r" "$(get throughput)" "$(get p50_ms)" "$(get p99_ms)" \
      "$(get p999_ms)" "$err"
    echo "$1,$2,$r,$(get throughput),$(get p50_ms),$(get p99_ms),$(get p999_ms),$err,$(get gen_cpu)" >>"$OUT/serve_load.csv"
  done
}

for model in dense svd; do
  for batching in on off; do
    if [ $batching = on ]; then B="--max-batch 16 --max-delay-us 2000"; else B="--max-batch 1 --max-delay-us 0"; fi
    taskset -c $SRV_CPUS "$FL" serve "$WORK/$model.safetensors" --port 0 --threads $SRV_THREADS $B --queue 1024 \
      >"$WORK/srv.log" 2>&1 &
    SERVER=$!
    port=$(wait_port "$WORK/srv.log") || { echo "fastlstm serve did not start: $(cat "$WORK/srv.log")"; exit 1; }
    sweep "fastlstm-$model" $batching "$port" "$model"
    kill -TERM $SERVER; wait $SERVER 2>/dev/null; SERVER=
  done
done

# The peer: ONNX Runtime behind Node's http (see bench/peers/run.sh for installing onnxruntime-node).
if [ -d "$CACHE/ort/node_modules/onnxruntime-node" ] && command -v node >/dev/null; then
  if $PY "$ROOT/bench/peers/torch_lstm.py" "$WORK/dense.safetensors" 1 35 1 1 export "$WORK/dense.onnx" >"$WORK/export.log" 2>&1; then
    NODE_PATH=$CACHE/ort/node_modules taskset -c $SRV_CPUS node "$HERE/ort_server.js" "$WORK/dense.onnx" 0 $SRV_THREADS dense \
      >"$WORK/ort.log" 2>&1 &
    SERVER=$!
    if port=$(wait_port "$WORK/ort.log"); then
      sweep "ort-node-dense" off "$port" dense
    else
      echo "ORT server did not start: $(tail -3 "$WORK/ort.log")"
    fi
    kill -TERM $SERVER; wait $SERVER 2>/dev/null; SERVER=
  else
    echo "ORT: ONNX export failed ($(tail -1 "$WORK/export.log"))"
  fi
else
  echo "ORT: unavailable (onnxruntime-node not in $CACHE/ort; bench/peers/run.sh installs it)"
fi

$PY - "$OUT/serve_load.csv" "$OUT/serve_load.png" <<'PYEOF' 2>/dev/null && echo "plot: $OUT/serve_load.png"
import csv, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows = list(csv.DictReader(open(sys.argv[1])))
fig, ax = plt.subplots(1, 2, figsize=(11, 4))
for key in sorted({(r["server"], r["batching"]) for r in rows}):
    rs = [r for r in rows if (r["server"], r["batching"]) == key]
    x = [float(r["offered"]) for r in rs]
    ax[0].plot(x, [float(r["throughput"]) for r in rs], marker="o", label=f"{key[0]} batching {key[1]}")
    ax[1].plot(x, [float(r["p99_ms"]) for r in rs], marker="o", label=f"{key[0]} batching {key[1]}")
ax[0].set(xlabel="offered req/s", ylabel="throughput req/s", xscale="log", yscale="log")
ax[1].set(xlabel="offered req/s", ylabel="p99 latency ms", xscale="log", yscale="log")
ax[1].axhline(50, color="grey", ls="--")
ax[0].legend(fontsize=7)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
PYEOF
echo "csv: $OUT/serve_load.csv"
