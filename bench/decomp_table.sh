#!/usr/bin/env bash
# Dense vs SVD vs CP on a 2-layer 650-hidden LSTM (input 650, seq 35): parameters, flops per step,
# measured latency at batch 1 and 20 (fastlstm bench medians, same run), and how the measured
# speedup compares with the flop and parameter (byte) reductions.
#   bash bench/decomp_table.sh [BUILD_DIR] [THREADS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
fl=${1:-$root/build}/fastlstm
threads=${2:-1}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OPENBLAS_NUM_THREADS=$threads
echo "# OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-<unset>}, threads $threads, $(date -u +%FT%TZ)"
"$fl" init --input 650 --hidden 650 --layers 2 --seed 1 -o "$work/dense.st" >/dev/null
for v in svd:64 svd:128 cp:64 cp:128; do
  "$fl" decompose "$work/dense.st" -o "$work/${v/:/}.st" --method "${v%:*}" --rank "${v#*:}" >/dev/null 2>&1
done
json() { /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
printf '%-9s %10s %12s %12s %12s %9s %9s %9s %9s\n' model params flops/step 'b1 us/step' 'b20 us/step' 'x params' 'x flops' 'x b1' 'x b20'
for m in dense svd64 svd128 cp64 cp128; do
  p=$("$fl" info "$work/$m.st" --json | json "d['params']")
  f=$("$fl" info "$work/$m.st" --json | json "d['flops_per_step']")
  b1=$("$fl" bench "$work/$m.st" --batch 1 --seq 35 --threads "$threads" --json | json "d['step_us']")
  b20=$("$fl" bench "$work/$m.st" --batch 20 --seq 35 --threads "$threads" --json | json "d['step_us']")
  if [ $m = dense ]; then P0=$p; F0=$f; B10=$b1; B200=$b20; fi
  /usr/bin/python3 -c "print('%-9s %10d %12d %12.2f %12.2f %9.2f %9.2f %9.2f %9.2f' % ('$m', $p, $f, $b1, $b20, $P0/$p, $F0/$f, $B10/$b1, $B200/$b20))"
done
