#!/usr/bin/env bash
# Load test of fastlstm serve against ONNX Runtime behind Node's http module, on loopback: the load
# table of issue 15 (throughput and p50 / p99 latency against offered load, dense and compressed,
# batching on and off, and the ORT peer) in one command, about 6-8 minutes with the defaults.
#   bench/serve/run.sh [--model FILE|650] [--compressed FILE] [--rank R] [--rates "10 25 50 100 200"]
#                      [--duration S] [--drain S] [--seq T] [--build DIR] [--out DIR] [--no-ort]
# Model (--model, default auto): the word language model of the applications benchmark when
# bench/apps/run.sh has trained it (~/.cache/fastlstm/apps/run/wordlm/[SPLIT/]dense.safetensors, with
# its comp.safetensors as the compressed model), else the 2-layer 650 LSTM (D = H = 650, no head,
# `fastlstm init`); `--model 650` forces the latter, `--model FILE` takes any model. Compressed:
# --compressed FILE, the apps pipeline's comp.safetensors, or `fastlstm decompose --method svd --rank R`
# of the dense model (R default hidden / 8). One sequence of --seq steps (default 35) per request, as
# a .npy body (features (1, T, D) or token ids (1, T)). Servers, each restarted for every rate so that
# no backlog carries over:
#   fastlstm dense / compressed, batching on  (--max-batch 16 --max-delay-us 2000)
#   fastlstm dense / compressed, batching off (--max-batch 1 --max-delay-us 0)
#   ORT dense: `fastlstm export` -> bench/serve/ort_server.js (skipped without onnxruntime-node)
# all with a bounded queue (--queue 128: overload is refused with 503, not queued without end).
# serve_loadgen drives each at each offered rate for --duration s (open loop, pinned to the last core;
# servers pinned to the others), then waits at most --drain s for answers. p50 / p99 are over every
# scheduled request, a refused or unanswered one counting as infinitely late (what a latency objective
# sees). Writes OUT/serve_load.md (Markdown tables, ready to paste), OUT/serve_load.csv and
# OUT/serve_load.png (with matplotlib); prints the Markdown.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=$ROOT/build RATES="10 25 50 100 200" DUR=8 DRAIN=4 SEQ=35 RANK= OUT=$PWD MODEL=auto COMP= ORT=1
PY=${FL_PYTHON:-/usr/bin/python3}
CACHE=${FL_PEERS_CACHE:-$HOME/.cache/fastlstm-peers}
APPS=${FL_APPS_CACHE:-$HOME/.cache/fastlstm/apps}
while [ $# -gt 0 ]; do
  case $1 in
    --build) BUILD=$2; shift ;;
    --model) MODEL=$2; shift ;;
    --compressed) COMP=$2; shift ;;
    --rank) RANK=$2; shift ;;
    --rates) RATES=$2; shift ;;
    --duration) DUR=$2; shift ;;
    --drain) DRAIN=$2; shift ;;
    --seq) SEQ=$2; shift ;;
    --out) OUT=$2; shift ;;
    --no-ort) ORT=0 ;;
    -h|--help) sed -n 2,25p "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)"; exit 2 ;;
  esac
  shift
done
FL=$BUILD/fastlstm LG=$BUILD/serve_loadgen
[ -x "$FL" ] && [ -x "$LG" ] || { echo "build first (with benchmarks): $FL and $LG"; exit 2; }
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d)
SERVER=
trap '[ -n "$SERVER" ] && kill -KILL $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT
NCPU=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
LG_CPU=$((NCPU - 1))
SRV_CPUS=0-$((NCPU > 1 ? NCPU - 2 : 0))
SRV_THREADS=$((NCPU > 1 ? NCPU - 1 : 1))
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
T_START=$(date +%s)
say() { echo "[$(( $(date +%s) - T_START )) s] $*" >&2; }

# The models.
if [ "$MODEL" = auto ]; then
  MODEL=650
  for d in "$APPS/run/wordlm" "$APPS"/run/wordlm/*/; do
    if [ -s "$d/dense.safetensors" ]; then
      MODEL=${d%/}/dense.safetensors
      [ -z "$COMP" ] && [ -s "${d%/}/comp.safetensors" ] && COMP=${d%/}/comp.safetensors
      break
    fi
  done
fi
if [ "$MODEL" = 650 ]; then
  say "model: the 2-layer 650 LSTM (fastlstm init)"
  "$FL" init --input 650 --hidden 650 --layers 2 --seed 1 -o "$WORK/dense.safetensors" >/dev/null || exit 1
  DESC="2-layer LSTM, D = H = 650, no head (fastlstm init)"
else
  [ -s "$MODEL" ] || { echo "no model file $MODEL"; exit 2; }
  cp "$MODEL" "$WORK/dense.safetensors" || exit 1
  DESC="$MODEL"
fi
# arch: vocab input hidden layers (from the file's metadata)
read -r VOCAB DIN HID LAY < <($PY - "$WORK/dense.safetensors" <<'PYEOF'
import json, struct, sys
b = open(sys.argv[1], "rb").read(8)
n = struct.unpack("<Q", b)[0]
m = json.loads(open(sys.argv[1], "rb").read(8 + n)[8:])["__metadata__"]
print(m.get("vocab", "0"), m["input"], m["hidden"], m["layers"])
PYEOF
) || exit 1
if [ -n "$COMP" ]; then
  cp "$COMP" "$WORK/comp.safetensors" || exit 1
  CDESC="$COMP"
else
  RANK=${RANK:-$((HID / 8))}
  say "compressed: fastlstm decompose --method svd --rank $RANK"
  "$FL" decompose "$WORK/dense.safetensors" -o "$WORK/comp.safetensors" --method svd --rank "$RANK" >"$WORK/dec.log" 2>&1 ||
    { cat "$WORK/dec.log"; exit 1; }
  CDESC="SVD rank $RANK of every LSTM matrix (fastlstm decompose)"
fi
$PY -c "
import numpy as np
g = np.random.default_rng(0)
x = g.integers(0, $VOCAB, (1, $SEQ)).astype(np.int32) if $VOCAB > 0 else g.standard_normal((1, $SEQ, $DIN)).astype(np.float32)
np.save('$WORK/body.npy', x)" || exit 1

# wait_port LOG PID: the port a server printed ("...127.0.0.1:PORT...") once it is ready.
wait_port() {
  for _ in $(seq 1 600); do
    p=$(grep -o '127.0.0.1:[0-9]*' "$1" 2>/dev/null | head -1 | cut -d: -f2)
    [ -n "$p" ] && { echo "$p"; return 0; }
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

CSV=$OUT/serve_load.csv
echo "server,batching,offered,throughput,p50_ms,p99_ms,p50_ok_ms,p99_ok_ms,failed,requests,gen_cpu" >"$CSV"
# one NAME BATCHING RATE CMD...: start the server (CMD), drive it at RATE, append a CSV row, kill it.
one() {
  local name=$1 batching=$2 rate=$3; shift 3
  taskset -c "$SRV_CPUS" "$@" >"$WORK/srv.log" 2>&1 &
  SERVER=$!
  local port line
  if ! port=$(wait_port "$WORK/srv.log" $SERVER); then
    say "$name did not start: $(tail -3 "$WORK/srv.log")"
    kill -KILL $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; SERVER=
    return 1
  fi
  line=$(taskset -c $LG_CPU "$LG" --port "$port" --path "/v1/models/dense/predict" --body "$WORK/body.npy" \
         --content-type application/x-npy --rate "$rate" --duration "$DUR" --drain "$DRAIN" --cpu "$LG_CPU" | tail -1)
  kill -KILL $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; SERVER=
  get() { echo "$line" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
  local total failed
  total=$($PY -c "print(int($rate * $DUR))")
  failed=$(( $(get err4xx) + $(get err5xx) + $(get connfail) + $(get unanswered) ))
  echo "$name,$batching,$rate,$(get throughput),$(get p50_all_ms),$(get p99_all_ms),$(get p50_ms),$(get p99_ms),$failed,$total,$(get gen_cpu)" >>"$CSV"
  say "$name batching $batching @ $rate req/s: $(get throughput) req/s, p50 $(get p50_all_ms) ms, p99 $(get p99_all_ms) ms, failed $failed"
}

# Each model is served under the name "dense" (its file name) so that one URL fits every server.
mkdir -p "$WORK/c" && cp "$WORK/comp.safetensors" "$WORK/c/dense.safetensors" || exit 1
for model in dense comp; do
  file=$WORK/dense.safetensors
  [ $model = comp ] && file=$WORK/c/dense.safetensors
  for batching in on off; do
    if [ $batching = on ]; then B="--max-batch 16 --max-delay-us 2000"; else B="--max-batch 1 --max-delay-us 0"; fi
    for r in $RATES; do
      # shellcheck disable=SC2086
      one "fastlstm-$model" $batching "$r" "$FL" serve "$file" --port 0 --threads $SRV_THREADS $B --queue 128 \
        --max-seq $((SEQ > 256 ? SEQ : 256))
    done
  done
done

# The peer: ONNX Runtime behind Node's http (bench/peers/run.sh installs onnxruntime-node).
ORT_NOTE=
if [ $ORT = 0 ]; then
  ORT_NOTE="ORT peer skipped (--no-ort)."
elif [ -d "$CACHE/ort/node_modules/onnxruntime-node" ] && command -v node >/dev/null; then
  if "$FL" export "$WORK/dense.safetensors" -o "$WORK/dense.onnx" >"$WORK/export.log" 2>&1; then
    for r in $RATES; do
      one "ort-node-dense" off "$r" env NODE_PATH="$CACHE/ort/node_modules" node "$HERE/ort_server.js" \
        "$WORK/dense.onnx" 0 $SRV_THREADS dense batch
    done
  else
    ORT_NOTE="ORT peer: fastlstm export failed ($(tail -1 "$WORK/export.log"))."
  fi
else
  ORT_NOTE="ORT peer unavailable (onnxruntime-node not in $CACHE/ort; bench/peers/run.sh installs it)."
fi
[ -n "$ORT_NOTE" ] && say "$ORT_NOTE"

CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
$PY - "$CSV" "$OUT/serve_load.md" "$DESC" "$CDESC" "$NCPU" "$CPU" "$DUR" "$SEQ" "$ORT_NOTE" <<'PYEOF' || exit 1
import csv, math, sys
csvp, mdp, desc, cdesc, ncpu, cpu, dur, seq, note = sys.argv[1:10]
rows = list(csv.DictReader(open(csvp)))
def ms(v):
    f = float(v)
    return "∞" if math.isinf(f) else f"{f:.1f}"
L = [f"**fastlstm serve under open-loop load.** Model: {desc}; compressed: {cdesc}. One {seq}-step sequence per "
     f"request (.npy body). {ncpu} cores ({cpu}): servers on all but the last, the load generator on the last; "
     f"{dur} s per offered rate, each server restarted per rate. Batching on: `--max-batch 16 --max-delay-us 2000`; "
     "off: `--max-batch 1 --max-delay-us 0`; `--queue 128`. p50 / p99 are over every scheduled request, one refused "
     "(503) or unanswered counting as infinitely late (∞).", "",
     "| server | batching | offered req/s | throughput req/s | p50 ms | p99 ms | failed |",
     "|---|---|---:|---:|---:|---:|---:|"]
for r in rows:
    L.append(f"| {r['server']} | {r['batching']} | {float(r['offered']):g} | {float(r['throughput']):.1f} | {ms(r['p50_ms'])} "
             f"| {ms(r['p99_ms'])} | {r['failed']}/{r['requests']} |")
L += ["", "Highest offered rate with p99 under 50 ms (and the throughput there):", "",
      "| server | batching | offered req/s at p99 < 50 ms | throughput req/s | p99 ms |", "|---|---|---:|---:|---:|"]
for key in dict.fromkeys((r["server"], r["batching"]) for r in rows):
    ok = [r for r in rows if (r["server"], r["batching"]) == key and float(r["p99_ms"]) < 50]
    best = max(ok, key=lambda r: float(r["offered"])) if ok else None
    L.append(f"| {key[0]} | {key[1]} | " + (f"{float(best['offered']):g} | {float(best['throughput']):.1f} | {ms(best['p99_ms'])} |"
                                             if best else "none | - | - |"))
if note:
    L += ["", note]
open(mdp, "w").write("\n".join(L) + "\n")
print("\n".join(L))
PYEOF

$PY - "$CSV" "$OUT/serve_load.png" <<'PYEOF' 2>/dev/null && echo "plot: $OUT/serve_load.png"
import csv, math, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows = list(csv.DictReader(open(sys.argv[1])))
fig, ax = plt.subplots(1, 2, figsize=(11, 4))
for key in dict.fromkeys((r["server"], r["batching"]) for r in rows):
    rs = [r for r in rows if (r["server"], r["batching"]) == key]
    x = [float(r["offered"]) for r in rs]
    p99 = [float(r["p99_ms"]) if not math.isinf(float(r["p99_ms"])) else float("nan") for r in rs]
    ax[0].plot(x, [float(r["throughput"]) for r in rs], marker="o", label=f"{key[0]} batching {key[1]}")
    ax[1].plot(x, p99, marker="o", label=f"{key[0]} batching {key[1]}")
ax[0].set(xlabel="offered req/s", ylabel="throughput req/s", xscale="log", yscale="log")
ax[1].set(xlabel="offered req/s", ylabel="p99 latency ms (missing: over 1% failed)", xscale="log", yscale="log")
ax[1].axhline(50, color="grey", ls="--")
ax[0].legend(fontsize=7)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
PYEOF
echo "markdown: $OUT/serve_load.md"
echo "csv: $CSV"
say "done"
