#!/usr/bin/env bash
# The rounds of the peer benchmark (bench/peers/rounds.sh, sourced by bench/peers/run.sh), driven with
# fake sides whose per-round figures are given: the order of the sides rotates from round to round; a
# side's figure is the median [min..max] of its round medians; a ratio is the median of the per-round
# ratios (paired within a round), not the ratio of the medians; a side that fails in some rounds keeps
# the others and says how many; persistent harnesses (FL_PEER_SERVE=1) answer one line per round, a
# harness that cannot start or stops is reported, and none is left running. Then the protocol of the
# real persistent harnesses (torch_lstm.py; ort_lstm.js where onnxruntime-node is installed) on a tiny
# model: "ready", then one result line per request. No timing is checked.
# Environment (set by CTest): FL_CLI = the fastlstm binary, FL_PYTHON = a Python with torch.
set -u
SRC=${FL_SOURCE_DIR:-$(dirname "$0")/..}
PY=${FL_PYTHON:-/usr/bin/python3}
. "$(dirname "$0")/cli_lib.sh" # $T
WORK=$T/work
mkdir -p "$WORK"
ROUNDS=3 BLOCK_MS=1
. "$SRC/bench/peers/rounds.sh"
trap 'for s in "${!SRV_PID[@]}"; do srv_stop "$s"; done; rm -rf "$T"' EXIT

want_eq() { [ "$2" = "$3" ] || { echo "FAIL: $1: got '$2', want '$3'"; failures=$((failures + 1)); }; }

# fake NAME LINE0 LINE1 ...: prints its line of the round it is in (a counter per name) and logs NAME
fake() {
  local name=$1 n
  shift
  n=$(cat "$T/count_$name" 2>/dev/null || echo 0)
  echo $((n + 1)) >"$T/count_$name"
  echo "$name" >>"$T/order"
  local lines=("$@")
  echo "${lines[n]}"
}

# ---- rotation, medians, paired ratios, a side failing in one round, a side failing in all
measure "fake a 'us_per_step 100 90 110' 'us_per_step 200 190 210' 'us_per_step 100 95 105'" \
  "fake b 'us_per_step 150 1 1' 'us_per_step 300 1 1' 'us_per_step 160 1 1'" \
  "fake c 'us_per_step 50 1 1' 'unavailable: boom in round 1' 'us_per_step 80 1 1'" \
  "fake d 'unavailable: no peer here' 'unavailable: no peer here' 'unavailable: no peer here'"
want_eq "order of the rounds" "$(tr '\n' ' ' <"$T/order")" "a b c d b c d a c d a b "
want_eq "ORDER" "${ORDER[*]}" "0 1 2 3  1 2 3 0  2 3 0 1 "
want_eq "side 0" "$(cell 0)" "   100.00 us [100.00..200.00] x1.00"
# b / a per round: 1.5, 1.5, 1.6 -> 1.50 (the ratio of the medians, 160 / 100, would read 1.60)
want_eq "paired ratio" "$(cell 1)" "   160.00 us [150.00..300.00] x1.50"
# c: rounds 0 and 2 (50, 80): median 65; ratios 0.5 and 0.8 -> 0.65
want_eq "partial side" "$(cell 2)" "    65.00 us [50.00..80.00] x0.65 (2/3 rounds; unavailable: boom in round 1)"
want_eq "failed side" "$(cell 3)" "unavailable: no peer here"
want_eq "ratio stats" "$(ratio_stats 1 0)" "1.5 1.5 1.6 3"

# ---- side 0 failing in a round: the peers' ratios pair the rounds both ran
rm -f "$T"/count_* "$T/order"
measure "fake a 'us_per_step 100 1 1' 'unavailable: fl failed' 'us_per_step 200 1 1'" \
  "fake b 'us_per_step 120 1 1' 'us_per_step 999 1 1' 'us_per_step 260 1 1'"
want_eq "ratio without side 0's failed round" "$(cell 1)" "   260.00 us [120.00..999.00] x1.25"
want_eq "side 0 partial" "$(cell 0)" "   150.00 us [100.00..200.00] x1.00 (2/3 rounds; unavailable: fl failed)"

# ---- persistent harnesses (a fake one in bash speaking the protocol)
cat >"$T/srv.sh" <<'EOF'
# fake persistent harness: MODE [N]; ok: answers every request; die: answers N requests then exits;
# refuse: cannot start; checks FL_PEER_SERVE and FL_PEER_BLOCK_MS reach it
[ "${FL_PEER_SERVE:-}" = 1 ] && [ -n "${FL_PEER_BLOCK_MS:-}" ] || { echo "unavailable: no serve env"; exit 0; }
[ "$1" = refuse ] && { echo "unavailable: cannot load the model"; exit 0; }
echo ready
n=0
while read -r _; do
  n=$((n + 1))
  echo "us_per_step $((n * 10)) 0 0"
  [ "$1" = die ] && [ $n -ge "$2" ] && exit 3
done
EOF
srv_start ok "" bash "$T/srv.sh" ok
srv_start dies "" bash "$T/srv.sh" die 1
srv_start refuses "" bash "$T/srv.sh" refuse
srv_start absent "node not installed" bash "$T/srv.sh" ok
pids="${SRV_PID[ok]-} ${SRV_PID[dies]-}"
measure "srv_time ok" "srv_time dies" "srv_time refuses" "srv_time absent"
want_eq "server answers a round each" "$(cell 0)" "    20.00 us [10.00..30.00] x1.00"
case $(cell 1) in
  *"10.00 us [10.00..10.00] x1.00 (1/3 rounds; unavailable: the dies harness stopped"*) ;;
  *) echo "FAIL: a harness that stops: $(cell 1)"; failures=$((failures + 1)) ;;
esac
want_eq "harness that cannot start" "$(cell 2)" "unavailable: cannot load the model"
want_eq "harness not installed" "$(cell 3)" "unavailable: node not installed"
for s in ok dies refuses absent; do srv_stop "$s"; done
for p in $pids; do kill -0 "$p" 2>/dev/null && { echo "FAIL: harness $p still running after srv_stop"; failures=$((failures + 1)); }; done

# ---- the real harnesses' protocol on a tiny model (no timing checked)
if [ -n "${FL_CLI:-}" ] && "$PY" -c "import torch" 2>/dev/null; then
  expect 0 "$FL_CLI" init --input 8 --hidden 16 --layers 2 --bidirectional --seed 3 -o "$T/m.st"
  srv_start torch "" env OMP_NUM_THREADS=1 "$PY" "$SRC/bench/peers/torch_lstm.py" "$T/m.st" 2 5 2 1 dense
  measure "srv_time torch"
  s=$(side_stats 0)
  want_eq "torch_lstm.py serves every round" "${s##* }" "3"
  srv_stop torch
  ORT_PATH=${FL_ORT_NODE_PATH:-$HOME/.cache/fastlstm-peers/ort/node_modules}
  if command -v node >/dev/null && [ -d "$ORT_PATH/onnxruntime-node" ] &&
    expect 0 "$PY" "$SRC/bench/peers/torch_lstm.py" "$T/m.st" 1 5 1 1 export "$T/m.onnx"; then
    srv_start ort "" env NODE_PATH="$ORT_PATH" node "$SRC/bench/peers/ort_lstm.js" "$T/m.onnx" 2 5 8 2 1
    measure "srv_time ort"
    s=$(side_stats 0)
    want_eq "ort_lstm.js serves every round" "${s##* }" "3"
    srv_stop ort
  else
    echo "SKIP: ort_lstm.js (no onnxruntime-node in $ORT_PATH)"
  fi
else
  echo "SKIP: the real harnesses (no FL_CLI or no torch in $PY)"
fi

[ $failures -eq 0 ] && echo "test_peers_rounds: all passed"
exit $((failures > 0))
